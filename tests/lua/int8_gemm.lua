-- int8_gemm.lua - i8 GEMMs into i32 equal the plain integer sums exactly,
-- b as [K, N] and transposed, with and without accumulating into c, on
-- the CPU and the GPU simulator. The shapes include ones the CPU's VNNI
-- micro-kernel takes where the host has it (K % 4 == 0, N % 16 == 0: a's
-- words with 128 added to each byte, M x K / 4 of them a multiple of 16 or
-- not, and b's column sums taken off again, R = 1, 2, 4 rows a block, 1, 2,
-- 4 vectors of columns) and ones it leaves
-- to the plain loops; the operands hold -128 and 127 (the packing's and
-- the correction's edges). tests/cli/run.sh checks that the micro-kernel
-- is the one compiled on a VNNI host.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local shapes = {
  {8, 32, 12}, {4, 16, 4}, {12, 64, 128}, {5, 48, 36}, {3, 16, 8},
  {64, 64, 32}, {6, 96, 20}, {7, 20, 12}, {4, 16, 6}, {1, 1, 1},
}

-- a [M, K], b (N x K values) with -128 and 127 among them, c in +-cmax
local function operands(r, M, N, K, cmax)
  local av, bv, cv = {}, {}, {}
  for i = 1, M * K do
    av[i] = i % 11 == 0 and -128 or i % 13 == 0 and 127 or math.floor(r() * 256) - 128
  end
  for i = 1, N * K do
    bv[i] = i % 7 == 0 and -128 or i % 5 == 0 and 127 or math.floor(r() * 256) - 128
  end
  for i = 1, M * N do cv[i] = math.floor(r() * (2 * cmax + 1)) - cmax end
  return av, bv, cv
end

-- how many of c's M x N entries differ from (c +) a b, b as [K, N] or
-- (tb) [N, K]
local function wrong(out, av, bv, cv, M, N, K, tb, acc)
  local bad = 0
  for i = 0, M - 1 do
    for j = 0, N - 1 do
      local s = acc == 1 and cv[i * N + j + 1] or 0
      for k = 0, K - 1 do
        s = s + av[i * K + k + 1] * (tb and bv[j * K + k + 1] or bv[k * N + j + 1])
      end
      if out[i * N + j + 1] ~= s then bad = bad + 1 end
    end
  end
  return bad
end

for _, devname in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(devname)
  for n, cs in ipairs(shapes) do
    if devname == "cpu" or n <= 3 then
      local M, N, K = table.unpack(cs)
      local r = C.lcg(n * 31 + 7)
      for _, tb in ipairs{false, true} do
        for acc = 0, 1 do
          local av, bv, cv = operands(r, M, N, K, 1000)
          local c = ts.tensor("i32", {M, N}, cv):copy_to(dev)
          ts.kernel("tests/lua/int8_gemm.tile", tb and "gemm_i8_t" or "gemm_i8",
                    {TM = M, TN = N, TK = K, ACC = acc}, dev)
            :launch{ts.tensor("i8", {M, K}, av):copy_to(dev),
                    ts.tensor("i8", tb and {N, K} or {K, N}, bv):copy_to(dev), c}
          local bad = wrong(c:to_table(), av, bv, cv, M, N, K, tb, acc)
          C.check(bad == 0, string.format("%s %dx%dx%d%s%s: %d of %d wrong", devname, M, N, K,
                                          tb and " trans_b" or "", acc == 1 and " acc" or "",
                                          bad, M * N))
        end
      end
    end
  end
end

-- the tensor-core forms on the GPU simulator (tests/CMakeLists.txt runs
-- this file in both GPU lowerings, for sm_90a and sm_80): wgmma m64nNk32
-- s8 where the tiles are swizzled (rows of 32, 64 or 128k bytes) and c
-- fits in registers, mma.sync m16n8k32 s8 otherwise (sm_80: always), c
-- in shared memory past 128 registers a thread ({128, 256, 32})
local tc = {{64, 32, 64}, {128, 64, 128}, {128, 48, 96}, {128, 256, 32}, {64, 8, 32}}
local dev = ts.device("gpusim")
for n, cs in ipairs(tc) do
  local M, N, K = table.unpack(cs)
  local r = C.lcg(n * 17 + 3)
  for acc = 0, 1 do
    local av, bv, cv = operands(r, M, N, K, 1000000)
    local c = ts.tensor("i32", {M, N}, cv):copy_to(dev)
    ts.kernel("tests/lua/int8_gemm.tile", "gemm_i8_tc", {TM = M, TN = N, TK = K, ACC = acc}, dev)
      :launch{ts.tensor("i8", {M, K}, av):copy_to(dev), ts.tensor("i8", {N, K}, bv):copy_to(dev), c}
    local bad = wrong(c:to_table(), av, bv, cv, M, N, K, true, acc)
    C.check(bad == 0, string.format("gpusim tensor cores %dx%dx%d%s: %d of %d wrong", M, N, K,
                                    acc == 1 and " acc" or "", bad, M * N))
  end
end
C.finish()
