-- shared_fp8.lua - the shared expert in FP8 (linears = "fp8", the released
-- checkpoints' format) runs through the FP8 experts' kernels (moe.tile
-- moe_up_fp8, moe_down_fp8 over one expert: its linears' weights are that
-- format), equal bit for bit to its three FP8 linears and moe_swiglu (what
-- a prefill on FP8 tensor cores still runs): with its own act_quant, with
-- the routed experts' quantisation of x handed in, and in the ACT form (x
-- and h quantised as loaded), every layer of the golden tiny model, 1, 3
-- and 7 tokens (9 on the CPU; 8 or more take the FP8 tensor cores on the
-- simulator, as a prefill does, where the model keeps the linears), on
-- the CPU and the GPU simulator (tests/CMakeLists.txt runs it in the CUDA
-- C lowering too). Its down GEMM adds the routed slots' rows as
-- moe_combine would, bit for bit (FP8 and bf16 weights). Then a decode
-- step in the released formats (FP8 linears, FP4 experts) on the simulator
-- launches no act_quant, no moe_swiglu, no linear for the shared expert
-- (the ACT forms) and no moe_combine.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check
local dir, ids = C.golden()
if not dir then return end

local take = C.launch_counter()
local V4 = require "model.v4"
local O = require "model.ops"

for _, dev in ipairs{"cpu", "gpusim"} do
  local m = V4.load(dir, nil, {kv_format = "f32", device = dev, linears = "fp8"})
  local cfg = m.cfg
  local LIMIT = cfg.swiglu_limit * 1.0
  O.use(m.dev, m.tf32)
  for _, T in ipairs(dev == "cpu" and {1, 3, 9} or {1, 3, 7}) do
    local BM = T == 1 and 1 or O.moe_rows
    local x = O.tensor("f32", {T, cfg.dim}, C.spread(T * cfg.dim, 40 + T, 3.0))
    local DB = (cfg.dim + 127) // 128
    local xq, sx = O.out{T, 1, cfg.dim}, O.out{T, 1, DB}
    O.kernel("quant.tile", "act_quant"):launch{x:reshape{T, 1, cfg.dim}, xq, sx}
    for L = 0, cfg.n_layers - 1 do
      local p = m:prefix(L) .. "ffn."
      local want = m:shared_expert(p, x, BM, LIMIT, true):to_table()
      for _, form in ipairs{{"own act_quant"}, {"x's handed in", nil, xq, sx},
                            {"ACT", true}} do
        local got = m:shared_expert(p, x, BM, LIMIT, false, form[2], form[3], form[4])
        local nd, total = C.differ({got:to_table()}, {want})
        check(nd == 0, string.format("%s T %d layer %d, %s: == the FP8 linears + moe_swiglu " ..
                                     "(%d of %d differ)", dev, T, L, form[1], nd, total))
      end
    end
  end
end

-- with the routed slots' rows handed in, the shared expert's down GEMM
-- (moe_down_fp8, moe_down over the bf16 weights of f32 linears) adds them
-- to its rows: moe_combine's sums of its rows and them, bit for bit
for _, dev in ipairs{"cpu", "gpusim"} do
  for _, lin in ipairs{"fp8", "f32"} do
    local m = V4.load(dir, nil, {kv_format = "f32", device = dev, linears = lin})
    local cfg = m.cfg
    local LIMIT, K = cfg.swiglu_limit * 1.0, cfg.n_activated_experts
    O.use(m.dev, m.tf32)
    for _, T in ipairs{1, 3} do
      local BM = T == 1 and 1 or O.moe_rows
      local x = O.tensor("f32", {T, cfg.dim}, C.spread(T * cfg.dim, 50 + T, 3.0))
      local out = O.tensor("f32", {T * K, cfg.dim}, C.spread(T * K * cfg.dim, 60 + T, 2.0))
      for L = 0, cfg.n_layers - 1 do
        local p = m:prefix(L) .. "ffn."
        for _, act in ipairs{false, true} do
          local sh = m:shared_expert(p, x, BM, LIMIT, false, act)
          local want = O.out{T, cfg.dim}
          O.kernel("moe.tile", "moe_combine", {K = K}):launch{sh, out, want}
          local got, fused = m:shared_expert(p, x, BM, LIMIT, false, act, nil, nil, out, K)
          local nd, total = C.differ({got:to_table()}, {want:to_table()})
          check(fused and nd == 0,
                string.format("%s %s linears T %d layer %d%s: the down GEMM's sums == " ..
                              "moe_combine's (%d of %d differ)", dev, lin, T, L,
                              act and " ACT" or "", nd, total))
        end
      end
    end
  end
end

-- a decode step in the released formats on the simulator
local m = V4.load(dir, nil, {kv_format = "fp8", device = "gpusim", linears = "fp8",
                             experts = "fp4"})
m:prefill(C.ids(ids, 1, 9))
take()
m:decode(ids[10])
local seen, n = take(), m.cfg.n_layers
check(not seen.act_quant and not seen.moe_swiglu and seen.moe_up_fp4 == n and
      seen.moe_down_fp4 == n and seen.moe_up_fp8 == n and seen.moe_down_fp8 == n and
      not seen.moe_combine,
      string.format("a GPU decode step's MoE: act_quant %s, moe_swiglu %s, moe_up_fp4 %s, " ..
                    "moe_down_fp4 %s, moe_up_fp8 %s, moe_down_fp8 %s, moe_combine %s for %d " ..
                    "layers", seen.act_quant, seen.moe_swiglu, seen.moe_up_fp4,
                    seen.moe_down_fp4, seen.moe_up_fp8, seen.moe_down_fp8, seen.moe_combine, n))
C.finish()
