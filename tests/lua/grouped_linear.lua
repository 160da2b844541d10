-- grouped_linear.lua - kernels/gemm.tile grouped_linear_f32 (the attention's
-- grouped output projection) on odd shapes (rows, outputs and K no multiple
-- of the tiles), on the CPU and the GPU simulator, against an f64
-- reference; and with K stepped by 128 its rows do not depend on the tiles
-- (1, 8 or 32 rows a block: the model's decode, batch and prefill forms),
-- bit for bit on the CPU. With W = bf16 (the weights as the checkpoint
-- stores them) it equals W = f32 over the same weights cast, bit for bit.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local T, G, KI, NO = 11, 3, 300, 70
local u = C.lcg(7)
local function r() return u() * 2 - 1 end
local xv, wv = {}, {}
for i = 1, T * G * KI do xv[i] = r() end
for i = 1, G * NO * KI do wv[i] = r() end
local want = {}
for t = 0, T - 1 do
  for g = 0, G - 1 do
    for n = 0, NO - 1 do
      local acc = 0
      for k = 0, KI - 1 do
        acc = acc + xv[(t * G + g) * KI + k + 1] * wv[(g * NO + n) * KI + k + 1]
      end
      want[(t * G + g) * NO + n + 1] = acc
    end
  end
end

for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local x = ts.tensor("f32", {T, G, KI}, xv):copy_to(dev)
  local w = ts.tensor("f32", {G, NO, KI}, wv):copy_to(dev)
  local w16 = w:cast("bf16")
  local w16f = w16:cast("f32")
  local outs = {}
  for _, tiles in ipairs{{BM = 1, BN = 32, BK = 128}, {BM = 8, BN = 32, BK = 128},
                         {BM = 32, BN = 32, BK = 128}, {}} do
    local y = ts.tensor("f32", {T, G, NO}, nil, dev)
    ts.kernel("kernels/gemm.tile", "grouped_linear_f32", tiles, dev):launch{x, w, y}
    local got = y:to_table()
    local y16, y32 = ts.tensor("f32", {T, G, NO}, nil, dev), ts.tensor("f32", {T, G, NO}, nil, dev)
    local t16 = {W = "bf16"}
    for k, v in pairs(tiles) do t16[k] = v end
    ts.kernel("kernels/gemm.tile", "grouped_linear_f32", t16, dev):launch{x, w16, y16}
    ts.kernel("kernels/gemm.tile", "grouped_linear_f32", tiles, dev):launch{x, w16f, y32}
    local a, b, same16 = y16:to_table(), y32:to_table(), true
    for i = 1, #a do if a[i] ~= b[i] then same16 = false end end
    C.check(same16 and C.relerr(a, got) > 1e-6,
            name .. ": W = bf16 equals W = f32 over the cast weights (and they are not the f32 weights)")
    local err = C.relerr(got, want)
    C.check(err < 1e-6, string.format("%s BM %s: %.2e against f64", name, tiles.BM or "default",
                                      err))
    outs[#outs + 1] = got
  end
  if name == "cpu" then
    local same = true
    for i = 1, #want do
      if outs[1][i] ~= outs[2][i] or outs[1][i] ~= outs[3][i] then same = false end
    end
    C.check(same, "cpu: rows differ between 1, 8 and 32 rows a block")
  end
end

C.finish()
