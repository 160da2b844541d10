-- fp8_gating.lua - the model takes the e4m3 tensor-core forms (gemm_fp8
-- for the FP8 linears' prefill, moe_up_fp4_tc for the FP4 experts')
-- exactly where the GPU has FP8 tensor cores: device:arch() is "sm_90a"
-- (the simulator's default), not on sm_80/86 (TESSERA_GPUSIM_ARCH=sm_80:
-- tests/CMakeLists.txt runs this file that way too), nor on the CPU
-- (arch nil); the prefill's logits stay the CPU's either way.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check
local dir, ids = C.golden()
if not dir then return end

-- count the launches of the tensor-core forms
local take = C.launch_counter()
local V4 = require "model.v4"

local env = os.getenv("TESSERA_GPUSIM_ARCH")
local want = (env == "sm_80" or env == "sm_86") and env or "sm_90a"
check(ts.device("cpu"):arch() == nil, "the CPU has no arch")
check(ts.device("gpusim"):arch() == want, "the simulator stands for " .. want .. ": " ..
      tostring(ts.device("gpusim"):arch()))

local prompt = C.ids(ids, 1, 9)
local function run(d)
  local m = V4.load(dir, nil, {kv_format = "f32", tf32 = false, device = d, linears = "fp8",
                               experts = "fp4"})
  take()
  local logits = m:prefill(prompt):to_table()
  return logits, take()
end
local cpu, on_cpu = run("cpu")
local sim, on_sim = run("gpusim")
check(not on_cpu.gemm_fp8 and not on_cpu.moe_up_fp4_tc, "the CPU takes neither")
local tc = want == "sm_90a"
check((on_sim.gemm_fp8 ~= nil) == tc and (on_sim.moe_up_fp4_tc ~= nil) == tc,
      string.format("%s: gemm_fp8 %d, moe_up_fp4_tc %d launches (wanted %s)", want,
                    on_sim.gemm_fp8 or 0, on_sim.moe_up_fp4_tc or 0, tc and "some" or "none"))
local e = C.relerr(sim, cpu)
print(string.format("%s: gemm_fp8 %d, moe_up_fp4_tc %d launches; logits vs the CPU %.2e", want,
                    on_sim.gemm_fp8 or 0, on_sim.moe_up_fp4_tc or 0, e))
check(e < 1e-4, "the simulator's prefill gives the CPU's logits: " .. e)
C.finish()
