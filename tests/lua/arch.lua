-- arch.lua - the built-in constant `arch` (docs/language.md): 0 for the
-- CPU, a GPU's SM version (90 for sm_90a, 80 for sm_80) where the kernel is
-- compiled for one, the simulator's included. tests/lua/arch.tile's kernel
-- writes what its params' defaults (`V = arch`, `BS = select(arch == 0,
-- 256, 64)`, `TWO = arch == 0`), a folded `if arch >= 90` and a tile shaped
-- by `select(arch == 0, 3, 5)` came to, on each device given (arg[1], "cpu"
-- and "gpusim" unless given; TESSERA_GPUSIM_ARCH=sm_80 makes the simulator
-- an sm_80, TESSERA_GPU_LOWERING=cuda its CUDA C). With arg[2] "mock" the
-- CUDA device (tests/cuda_mock, which runs no kernel) compiles the kernel
-- first: its host program (the launch's grid and scratch functions) is
-- checked for the GPU's arch, and goes into the same disk cache as the
-- CPU's code, so the CPU's run after it says whether the cache keeps the
-- two apart. k:params() shows the values a kernel took (the FP4 indexer's
-- defaults by target).
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/arch.tile"
local function run(dev, params)
  local x = ts.tensor("i32", {5}, nil, dev)
  ts.kernel(file, "arch_of", params or {}, dev):launch{x}
  return x:to_table()
end

if arg[2] == "mock" then
  local ok, cuda = pcall(ts.device, "cuda")
  C.check(ok, "the mock CUDA device: " .. tostring(cuda))
  if ok then
    C.check(cuda:arch() == "sm_90a", "the mock's arch: " .. tostring(cuda:arch()))
    -- (compiled, not run: the mock runs none)
    local p = ts.kernel(file, "arch_of", {}, cuda):params()
    C.check(p.V == 90 and p.BS == 64 and p.TWO == false,
            string.format("the CUDA device's params: V %s BS %s", p.V, p.BS))
    ts.kernel(file, "arch_body", {}, cuda)
  end
end

for name in (arg[1] or "cpu,gpusim"):gmatch("[^,]+") do
  local dev = ts.device(name)
  local a = dev:arch()
  local n = a and math.tointeger(tonumber(a:match("^sm_(%d+)a?$"))) or 0
  C.check(name == "cpu" and n == 0 or name ~= "cpu" and n >= 80,
          name .. ": arch " .. tostring(a))
  local want = {n, n == 0 and 256 or 64, n == 0 and 1 or 2, n >= 90 and 3 or 4,
                n == 0 and 3 or 5}
  local got = run(dev)
  for i = 1, 5 do
    C.check(got[i] == want[i], string.format("%s (arch %d): element %d is %d, not %d", name, n,
                                             i - 1, got[i], want[i]))
  end
  local x = ts.tensor("i32", {1}, nil, dev)
  ts.kernel(file, "arch_body", {}, dev):launch{x}
  C.check(x:to_table()[1] == n, string.format("%s: arch in a body: %d", name, x:to_table()[1]))
  -- k:params(): the values a kernel was compiled with; the FP4 indexer's
  -- defaults by target (its CPU form: blocks of 256 keys, FUSE up to 4
  -- scale blocks; a GPU's 64 keys, the loop)
  local ip = ts.kernel("kernels/indexer.tile", "indexer_scores_fp4", {}, dev):params()
  C.check(ip.BS == (n == 0 and 256 or 64) and ip.FUSE == (n == 0 and 1 or 0) and ip.DK == 128,
          string.format("%s: indexer_scores_fp4 BS %s FUSE %s", name, ip.BS, ip.FUSE))
  ip = ts.kernel("kernels/indexer.tile", "indexer_scores_fp4", {DK = 256}, dev):params()
  C.check(ip.FUSE == 0 and ip.DK == 256 and math.type(ip.BS) == "integer",
          name .. ": FUSE off for 8 scale blocks")
  -- params given override the defaults `arch` made
  got = run(dev, {V = 7, BS = 32, TWO = n ~= 0})
  C.check(got[1] == 7 and got[2] == 32 and got[3] == (n ~= 0 and 1 or 2) and got[4] == want[4],
          string.format("%s: params given: %d %d %d %d", name, got[1], got[2], got[3], got[4]))
end
C.finish()
