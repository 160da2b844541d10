-- linear_w16.lua - kernels/gemm.tile linear_w16 (a linear layer reading its
-- weights as the checkpoint's bf16) on odd shapes (rows, outputs and K no
-- multiple of the tiles), on the CPU and the GPU simulator: against an f64
-- reference over the bf16 values, and bit for bit equal to linear_f32 over
-- the same weights cast to f32 at the same tiles (the model's decode, batch
-- and prefill tilings and the defaults), which is what lets the model keep
-- its weights in bf16 without changing a logit.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local M, K, N = 11, 300, 70
local u = C.lcg(11)
local function r() return u() * 2 - 1 end
local xv, wv = {}, {}
for i = 1, M * K do xv[i] = r() end
for i = 1, N * K do wv[i] = r() end
local w16 = ts.tensor("f32", {N, K}, wv):cast("bf16")
local wq = w16:cast("f32"):to_table() -- the weights as bf16 holds them
local want = {}
for m = 0, M - 1 do
  for n = 0, N - 1 do
    local acc = 0
    for k = 0, K - 1 do acc = acc + xv[m * K + k + 1] * wq[n * K + k + 1] end
    want[m * N + n + 1] = acc
  end
end
C.check(C.relerr(wq, wv) > 1e-4, "the weights are not bf16-exact (the test would prove nothing)")

for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local x = ts.tensor("f32", {M, K}, xv):copy_to(dev)
  local wb = w16:copy_to(dev)
  local wf = w16:cast("f32"):copy_to(dev)
  for _, tiles in ipairs{{BM = 1, BN = 32, BK = 128}, {BM = 8, BN = 32, BK = 128},
                         {BM = 32, BN = 32, BK = 128}, {}} do
    local y16 = ts.tensor("f32", {M, N}, nil, dev)
    local y32 = ts.tensor("f32", {M, N}, nil, dev)
    ts.kernel("kernels/gemm.tile", "linear_w16", tiles, dev):launch{x, wb, y16}
    ts.kernel("kernels/gemm.tile", "linear_f32", tiles, dev):launch{x, wf, y32}
    local a, b = y16:to_table(), y32:to_table()
    local what = string.format("%s BM %s", name, tiles.BM or "default")
    C.check(C.relerr(a, want) < 1e-6, what .. ": against f64")
    local same = true
    for i = 1, #a do if a[i] ~= b[i] then same = false end end
    C.check(same, what .. ": linear_w16 differs from linear_f32 over the cast weights")
  end
end

C.finish()
