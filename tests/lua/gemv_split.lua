-- gemv_split.lua - a decode step's linears on a GPU split K when their
-- blocks would leave most SMs idle (model/ops.lua O.gemv_blocks: SPLIT
-- slices of linear_f32 / linear_fp8_act write partial sums that
-- gemm_splitk_sum adds in order): on the GPU simulator, for 1, 3 and 8
-- rows, f32, bf16 and FP8 weights (one group and three), odd N and K (a
-- tail tile, a tail K step, slices that do not divide the steps), the
-- split result equals the unsplit one to the sums' order (1e-6) and the
-- CPU's; the split form is taken (gemm_splitk_sum launched) below the
-- blocks' threshold and not above it nor for a weight under
-- O.gemv_split_bytes, never on the CPU. The model's decode steps with the
-- split linears and the shared expert's narrower tiles give its logits.
-- Run reversed too (lua-reverse/gemv_split): a slice's stores that spill
-- past its M rows onto the next slice's are overwritten forward, not so.
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr

local take = C.launch_counter()
O.gemv_split_bytes = 0 -- (small weights split too: the shapes here are odd, not large)
local rnd = C.lcg(7)
local function values(n, scale)
  local v = {}
  for i = 1, n do v[i] = (rnd() - 0.5) * scale end
  return v
end

local gpu, cpu = ts.device("gpusim"), ts.device("cpu")
-- y = x w^T on device d: w's values as f32, or as bf16 ("bf16"), or as V4's
-- FP8 weight in G groups ("fp8"); returns the values and the launches
local function run(d, kind, xv, wv, T, N, K, G)
  O.use(d, false)
  local x = O.tensor("f32", {T, G * K}, xv)
  local w = O.tensor("f32", {G * N, K}, wv)
  take()
  local y
  if kind == "fp8" then
    local fw = O.fp8_weight(w, G)
    y = O.out{T, G, N}
    O.linear_fp8(x:reshape{T, G, K}, fw, y)
  else
    y = O.linear(x, kind == "bf16" and w:cast("bf16") or w)
  end
  local got = y:to_table()
  return got, take()
end

local worst, split_seen, unsplit_seen, cpu_split = 0, 0, 0, 0
for _, kind in ipairs{"f32", "bf16", "fp8"} do
  for _, T in ipairs{1, 3, 8} do
    for _, shape in ipairs{{200, 520, 1}, {96, 130, 3}, {600, 1000, 1}, {2000, 1000, 1}} do
      local N, K, G = shape[1], shape[2], shape[3]
      if kind ~= "fp8" and G > 1 then goto next end
      local xv, wv = values(T * G * K, 2), values(G * N * K, 0.1)
      O.gemv_blocks = 256
      local split, ls = run(gpu, kind, xv, wv, T, N, K, G)
      O.gemv_blocks = 0
      local whole, lw = run(gpu, kind, xv, wv, T, N, K, G)
      O.gemv_blocks = 256
      local on_cpu, lc = run(cpu, kind, xv, wv, T, N, K, G)
      local e = math.max(relerr(split, whole), relerr(split, on_cpu))
      worst = math.max(worst, e)
      if (ls.gemm_splitk_sum or 0) > 0 then split_seen = split_seen + 1 end
      if (lw.gemm_splitk_sum or 0) == 0 then unsplit_seen = unsplit_seen + 1 end
      cpu_split = cpu_split + (lc.gemm_splitk_sum or 0)
      if e > 1e-6 then
        print(string.format("%s %d x %d x %d (G %d): split vs whole %.3e, vs the CPU %.3e", kind,
                            T, N, K, G, relerr(split, whole), relerr(split, on_cpu)))
      end
      ::next::
    end
  end
end
-- (30 cases: f32 and bf16 three shapes of one group, fp8 four, 3 row
-- counts; FP8 with 8 rows and one group is a prefill-sized input there,
-- gemm_fp8 on the tensor cores: 27 split; 2000 x 1000 splits its 8 K
-- steps 5 ways, 2 a slice, the last slice empty)
check(worst <= 1e-6, string.format("split-K linears equal the whole ones and the CPU's: %.3e",
                                   worst))
check(split_seen == 27 and unsplit_seen == 30 and cpu_split == 0, string.format(
      "split below the threshold (%d of 27), not with it off (%d of 30), never on the CPU (%d)",
      split_seen, unsplit_seen, cpu_split))
-- above the threshold no split: 8 rows of N = 9000 (282 blocks of 32);
-- nor a weight under O.gemv_split_bytes
O.use(gpu, false)
take()
O.linear(O.tensor("f32", {8, 256}, values(8 * 256, 1)), O.tensor("f32", {9000, 256}))
check((take().gemm_splitk_sum or 0) == 0, "enough blocks: no split")
O.gemv_split_bytes = 4 * 2 ^ 20
O.linear(O.tensor("f32", {1, 1024}, values(1024, 1)), O.tensor("f32", {1023, 1024}))
local small = take().gemm_splitk_sum or 0
O.linear(O.tensor("f32", {1, 1024}, values(1024, 1)), O.tensor("f32", {1024, 1024}))
check(small == 0 and (take().gemm_splitk_sum or 0) == 1,
      "a weight just under 4 MiB is not split, one of 4 MiB is")
-- the model's decode steps on the simulator with every weight counted
-- large (O.gemv_split_bytes = 0: the linears split, the shared expert's
-- GEMMs in 8-column tiles) against none: within the sums' order, and the
-- shared expert's moe_up / moe_up_fp8 launched with BN 8 (the bf16 shared
-- expert with f32 linears, the FP8 one with FP8 linears)
local dir, ids = C.golden()
if dir then
  -- (the params the MoE's GEMMs are compiled with: O.kernel wrapped before
  -- the model's files take it)
  local seen = {}
  local kernel = O.kernel
  O.kernel = function(file, name, params)
    if name == "moe_up" or name == "moe_up_fp8" then
      seen[name .. ":" .. tostring(params and params.BN)] = true
    end
    return kernel(file, name, params)
  end
  local V4 = require "model.v4"
  for _, lin in ipairs{"f32", "fp8"} do
    local function steps(bytes)
      O.gemv_split_bytes = bytes
      local m = V4.load(dir, nil, {kv_format = "f32", device = "gpusim", tf32 = false,
                                   linears = lin})
      m:prefill(C.ids(ids, 1, 9))
      m:decode(ids[10])
      return m:decode(ids[11]):to_table()
    end
    seen = {}
    local narrow = steps(0)
    local up = lin == "fp8" and "moe_up_fp8" or "moe_up"
    local took = seen[up .. ":8"]
    seen = {}
    local whole = steps(math.huge)
    local e = relerr(narrow, whole)
    check(took and not seen[up .. ":8"] and e < 1e-5, string.format(
          "%s linears: decode steps with the split linears and the shared expert's 8-column " ..
          "tiles (%s) vs none: %.3e", lin, tostring(took), e))
  end
  O.kernel = kernel
  O.gemv_split_bytes = 4 * 2 ^ 20
end
C.finish()
