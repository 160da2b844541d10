-- bf16_gemm.lua - the order of a CPU gemm's sums over bf16 tiles into f32
-- (compiler/gen_bf16.c). On a host with AVX-512 BF16 (vdpbf16ps: element
-- 2l + 1's product and then 2l's added to f32 lane l, each rounded):
--   x w (w [K, N]): one element at a time, k = 1, 0, 3, 2, ... (`ab`);
--   x w^T: 16 lanes, lane l taking k = 32 s + 2 l + 1 then 32 s + 2 l, lane
--     l + 8 added to lane l, then the halving tree
--     ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)) added to y (`abt`).
-- Elsewhere, and for tiles the micro-kernels do not take (N % 16, K odd,
-- BK % 32 with w^T), the plain loops: x w one fused multiply-add a product
-- in k order (a product of two bf16 is exact in f32, so that is one f32
-- rounding a product: computed here), x w^T summed in an order LLVM picks
-- (within f32 rounding of f64). `wide` reads w as a slice of a wider tile
-- at a run-time column c0: where a block's slice lies inside the tile the
-- micro-kernel, else the plain loops with the outside columns as zeros. The
-- values are bf16 with 8 significant bits over a 2^7 range, so every
-- product and two-term sum is exact in a double and each f32 sum rounds:
-- the orders differ on them (checked), and each result is checked bit for
-- bit against its order computed here, on M, N, K no multiple of the tiles.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/bf16_gemm.tile"
local cpu = ts.device("cpu")
local u = C.lcg(58)
local f32 = C.f32

-- whether the compiled code takes vdpbf16ps (the JIT's target is the host)
local function host_bf16()
  local env = (os.getenv("TESSERA_CPU_BF16") or ""):lower()
  if env == "0" or env == "off" or env == "false" or env == "no" then return false end
  local f = io.open("/proc/cpuinfo")
  if not f then return false end
  local info = f:read("a")
  f:close()
  return info:find("avx512_bf16", 1, true) ~= nil and info:find("avx512bw", 1, true) ~= nil
end
local dp = host_bf16()
print("host takes vdpbf16ps: " .. tostring(dp))

local function bf16_values(n)
  local v = {}
  for i = 1, n do
    local m = 128 + math.floor(u() * 128)
    local e = math.floor(u() * 8) - 4
    v[i] = (u() < 0.5 and -1 or 1) * m / 128 * 2.0 ^ e
  end
  return v
end

-- y0 + x w in k order (one rounding a product), or by pairs (k + 1, then k)
local function want_ab(xv, wv, y0, M, N, K, pairs)
  local y = {}
  for m = 0, M - 1 do
    for n = 0, N - 1 do
      local s = y0[m * N + n + 1]
      local function add(k)
        if k < K then s = f32(s + xv[m * K + k + 1] * wv[k * N + n + 1]) end
      end
      for k = 0, K - 1, 2 do
        if pairs then add(k + 1); add(k) else add(k); add(k + 1) end
      end
      y[m * N + n + 1] = s
    end
  end
  return y
end

-- y0 + x w^T by vdpbf16ps lanes, a tree a step of BK added to y in turn
local function want_abt(xv, wv, y0, M, N, K, BK)
  local y = {}
  for m = 0, M - 1 do
    for n = 0, N - 1 do
      local s = y0[m * N + n + 1]
      for k0 = 0, K - 1, BK do
        local l = {}
        for q = 1, 16 do l[q] = 0 end
        for k = k0, k0 + BK - 1, 2 do
          local q = (k - k0) % 32 // 2 + 1
          for _, kk in ipairs{k + 1, k} do
            if kk < K then l[q] = f32(l[q] + xv[m * K + kk + 1] * wv[n * K + kk + 1]) end
          end
        end
        local v = {}
        for q = 1, 8 do v[q] = f32(l[q] + l[q + 8]) end
        local t = f32(f32(f32(v[1] + v[5]) + f32(v[3] + v[7])) +
                      f32(f32(v[2] + v[6]) + f32(v[4] + v[8])))
        s = f32(s + t)
      end
      y[m * N + n + 1] = s
    end
  end
  return y
end

local function run(name, M, N, K, t, xv, wv, y0, c0)
  local x = ts.tensor("bf16", {M, K}, xv, cpu)
  local w = ts.tensor("bf16", name == "abt" and {N, K} or {K, N}, wv, cpu)
  local y = ts.tensor("f32", {M, N}, nil, cpu)
  local args = {x, w}
  if name == "wide" then
    args[3], args[4] = y, c0
  else
    args[3], args[4] = ts.tensor("f32", {M, N}, y0, cpu), y
  end
  local p = {BM = t[1], BN = t[2], BK = t[3]}
  if name == "wide" then p.WB = 32 end
  ts.kernel(file, name, p, cpu):launch(args)
  return y:to_table()
end

for _, shape in ipairs{{5, 20, 100}, {8, 32, 64}, {3, 40, 70}} do
  local M, N, K = shape[1], shape[2], shape[3]
  local xv, wv, y0 = bf16_values(M * K), bf16_values(N * K), bf16_values(M * N)
  local ordered, paired = want_ab(xv, wv, y0, M, N, K, false), want_ab(xv, wv, y0, M, N, K, true)
  C.check(not C.same_bits(ordered, paired),
          string.format("M %d N %d K %d: the two orders of x w differ", M, N, K))
  local wt = {} -- w [K, N] as [N, K]
  for k = 0, K - 1 do
    for n = 0, N - 1 do wt[n * K + k + 1] = wv[k * N + n + 1] end
  end
  local f64 = {}
  for i = 1, M * N do f64[i] = y0[i] end
  local prod = C.matmul_bt(xv, wt, M, N, K)
  for i = 1, M * N do f64[i] = f64[i] + prod[i] end
  -- tiles BM x BN x BK: the micro-kernels' (BN % 16 == 0, BK even), then
  -- BN 8 (x w in the plain loops) and BK 16 (x w^T in the plain loops)
  for _, t in ipairs{{4, 16, 32}, {2, 32, 64}, {1, 16, 32}, {4, 8, 32}, {4, 16, 16}} do
    local what = string.format("M %d N %d K %d, %d x %d x %d tiles", M, N, K, t[1], t[2], t[3])
    local micro = dp and t[2] % 16 == 0
    local y = run("ab", M, N, K, t, xv, wv, y0)
    C.check(C.same_bits(y, micro and paired or ordered),
            what .. ": x w " .. (micro and "by pairs (vdpbf16ps)" or "in k order"))
    C.check(C.relerr(y, f64) < 1e-5, what .. ": x w near f64")
    y = run("abt", M, N, K, t, xv, wt, y0)
    if dp and t[2] % 16 == 0 and t[3] % 32 == 0 then
      C.check(C.same_bits(y, want_abt(xv, wt, y0, M, N, K, t[3])), what .. ": x w^T by lanes")
    end
    C.check(C.relerr(y, f64) < 1e-5, what .. ": x w^T near f64")
  end
  -- a slice of a 32-column tile at c0: inside for every block of N 20 and
  -- 32 (0), for the first alone (8: the next reach past column 31), for all
  -- but the first (-4: it starts before column 0), for none (100); the
  -- outside columns read as 0
  local zero = {}
  for i = 1, M * N do zero[i] = 0 end
  for _, c0 in ipairs{0, 8, -4, 100} do
    local t = {4, 16, 32}
    local y = run("wide", M, N, K, t, xv, wv, nil, c0)
    local ok = true
    for n0 = 0, N - 1, t[2] do
      local inside = n0 + c0 >= 0 and n0 + c0 + t[2] <= 32
      -- w's columns shifted by c0, zero outside [0, min(N, 32))
      local ws = {}
      for k = 0, K - 1 do
        for n = 0, N - 1 do
          local col = n + c0
          ws[k * N + n + 1] = (col >= 0 and col < N and col < 32) and wv[k * N + col + 1] or 0
        end
      end
      local want = want_ab(xv, ws, zero, M, N, K, dp and inside)
      for m = 0, M - 1 do
        for n = n0, math.min(N, n0 + t[2]) - 1 do
          local i = m * N + n + 1
          if string.pack("<f", y[i]) ~= string.pack("<f", want[i]) then ok = false end
        end
      end
    end
    C.check(ok, string.format("M %d N %d K %d: w's slice at column %d", M, N, K, c0))
  end
end

C.finish()
