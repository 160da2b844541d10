-- bf16_attention.lua - a prefill's sparse and HCA attention on tensor cores
-- in bf16 (sparse_attn_tc, hca_attn_tc; model/attention.lua): taken by
-- default on a GPU whose tensor cores take them (the simulator's sm_90a,
-- and sm_80: tests/CMakeLists.txt runs this file as both and as an sm_86,
-- which takes none), for 8 tokens or more, not by a decode step, not with
-- tf32 = false or attention = "f32"; attention = "bf16" asks for them on
-- the CPU too. The logits stay within bf16's rounding of the f32
-- attention's, and the CPU's and the simulator's bf16 runs agree.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

-- count the launches of the tensor-core forms (wrapping O.kernel before
-- the model's modules take it)
local seen = {}
local kernel = O.kernel
O.kernel = function(file, name, ...)
  seen[name] = (seen[name] or 0) + 1
  return kernel(file, name, ...)
end
local V4 = require "model.v4"

local env = os.getenv("TESSERA_GPUSIM_ARCH")
local arch = (env == "sm_80" or env == "sm_86") and env or "sm_90a"
local tc_gpu = arch ~= "sm_86"

local function prompt(n) return ts.tensor("i32", {n}, table.move(ids, 1, n, 1, {})) end
local P9 = prompt(9)

-- the launches of sparse_attn_tc and hca_attn_tc in a prefill of n tokens
-- (the tiny model has window, CSA and HCA layers) and, with `decode`, in
-- one decode step after it, and the prefill's logits
local function run(d, opts, n, decode)
  opts.device, opts.kv_format = d, opts.kv_format or "f32"
  local m = V4.load(dir, nil, opts)
  seen = {}
  local logits = m:prefill(n and prompt(n) or P9):to_table()
  local pre = {sparse = seen.sparse_attn_tc or 0, hca = seen.hca_attn_tc or 0}
  if not decode then return logits, pre end
  seen = {}
  m:decode(ids[(n or 9) + 1])
  return logits, pre, (seen.sparse_attn_tc or 0) + (seen.hca_attn_tc or 0)
end

local function none(pre) return pre.sparse == 0 and pre.hca == 0 end
local function some(pre) return pre.sparse > 0 and pre.hca > 0 end

-- ---- the conversion (embed.tile convert_rows) ----------------------------------------------

-- f32 -> bf16 on the device rounds as the host's cast does (to nearest,
-- ties to even; infinities, NaN, -0, subnormals, the largest finite values)
-- and bf16 -> f32 gives the values back exactly; an empty tensor converts
do
  local v = {1.0, -0.0, 1 / 0, -1 / 0, 3.4028234663852886e38, 1.00390625, 1.01171875,
             -1.00390625, 2 ^ -130, 2 ^ -149, 65504.5, 0.1}
  for i = #v + 1, 3 * 37 do v[i] = math.sin(i * 1.7) * 10 ^ (i % 9 - 4) end
  for _, d in ipairs{"cpu", "gpusim"} do
    local dev = ts.device(d)
    O.use(dev, false)
    local x = ts.tensor("f32", {3, 37}, v, dev)
    local got, want = O.convert(x, "bf16"):to_table(), x:cast("bf16"):to_table()
    local same = true
    for i = 1, #want do
      if got[i] ~= want[i] and not (got[i] ~= got[i] and want[i] ~= want[i]) then same = false end
    end
    check(same and 1 / got[2] < 0, d .. ": convert_rows to bf16 equals the host's cast")
    local back = O.convert(O.convert(x, "bf16"), "f32"):to_table()
    check(back[6] == 1.0 and back[7] == 1.015625 and back[8] == -1.0 and back[1] == 1.0,
          d .. ": ties go to even and bf16 -> f32 is exact")
    check(O.convert(ts.tensor("f32", {0, 8}, nil, dev), "bf16"):numel() == 0,
          d .. ": an empty tensor converts")
  end
  O.use(nil, false)
end

-- ---- where they are taken ---------------------------------------------------------------

local cpu32, pre = run("cpu", {})
check(none(pre), "the CPU's default takes the f32 attention")
local sim, spre, sdec = run("gpusim", {}, 9, true)
print(string.format("%s default: prefill of 9 launched sparse_attn_tc %d, hca_attn_tc %d; " ..
                    "decode %d", arch, spre.sparse, spre.hca, sdec))
check(tc_gpu and some(spre) or not tc_gpu and none(spre),
      arch .. ": the prefill takes the tensor-core attention " ..
      (tc_gpu and "by default" or "never (its shared memory)"))
check(sdec == 0, "a decode step keeps the f32 split kernels")
local _, p5 = run("gpusim", {}, 5)
check(none(p5), "a prefill of 5 tokens keeps the f32 kernels")
local _, poff = run("gpusim", {tf32 = false})
check(none(poff), "tf32 = false keeps the f32 attention")
local _, pf32 = run("gpusim", {attention = "f32"})
check(none(pf32), "attention = 'f32' keeps the f32 attention")
local ok, err = pcall(V4.load, dir, nil, {attention = "fp16"})
check(not ok and tostring(err):find("attention 'fp16': 'bf16' or 'f32'", 1, true),
      "a bad attention option is refused: " .. tostring(err))

-- ---- what they give ----------------------------------------------------------------------

-- the same kernels on the CPU when asked for (the CPU's checks once, in the
-- simulator's default run of this file)
local cpu16, cpre = run("cpu", {attention = "bf16"})
check(some(cpre), "attention = 'bf16' takes them on the CPU")
if arch == "sm_90a" then
  local e = relerr(cpu16, cpu32)
  print(string.format("CPU, f32 caches: bf16 attention vs f32 logits %.3e", e))
  check(e > 0 and e < 2e-2, "bf16 attention's logits within 2e-2 of the f32 attention's")
  local fp8_16 = run("cpu", {attention = "bf16", kv_format = "fp8"})
  local fp8_32 = run("cpu", {kv_format = "fp8"})
  local e8 = relerr(fp8_16, fp8_32)
  print(string.format("CPU, fp8 caches: bf16 attention vs f32 logits %.3e", e8))
  check(e8 > 0 and e8 < 2e-2, "fp8 caches: bf16 attention's logits within 2e-2")
end

-- the simulator's (tf32 = false: only the attention rounds) against the
-- CPU's: the kernels agree bit for bit on the same inputs
-- (tests/numerics), but the inputs' last-bit differences flip a few bf16
-- roundings, which the later layers carry on (~2e-3 measured)
local sim16 = run("gpusim", {attention = "bf16", tf32 = false})
local es = relerr(sim16, cpu16)
print(string.format("%s vs CPU, both bf16 attention: logits %.3e", arch, es))
check(es < 1e-2, "the simulator's bf16 attention gives the CPU's")
-- and the GPU's default (TF32 linears too) stays near the f32 CPU
local ed = relerr(sim, cpu32)
print(string.format("%s default (TF32, bf16 attention) vs CPU f32: logits %.3e", arch, ed))
check(ed < 2e-2, "the GPU's default within 2e-2 of the CPU's f32 logits")
C.finish()
