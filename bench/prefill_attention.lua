-- prefill_attention.lua - the model's prefill of one attention layer at
-- V4-Flash width (d 4096, 64 heads of 512, top-k 512, window 128; random
-- weights: bench/v4_layers.lua) with its attention in f32 (sparse_attn_f32,
-- hca_attn_split_f32 + merge: the baseline) and in bf16 on tensor cores
-- (sparse_attn_tc, hca_attn_tc, the operands converted by convert_rows: what
-- a GPU prefill takes by default, model/attention.lua), the same run: the
-- layer's whole prefill (projections, compressors, indexer, top-k,
-- attention, output projection) per token, the attention kernels' share,
-- their speed-up, and how far the two layer outputs are apart. For a
-- window-only, a CSA and an HCA layer. Run from the source root:
--   build/tessera run bench/prefill_attention.lua [--tokens 256,1024]
--     [--device cpu|cuda|gpusim] [--runs 2]
-- (the CPU runs the tensor-core kernels' CPU form: the ratio there says
-- nothing about a GPU; scripts/gpu.sh runs this with --device cuda)
local ts = require "tessera"

local layers = require "bench.v4_layers"
local opts = layers.options({tokens = "256", device = "cpu", runs = "2"},
                            "prefill_attention.lua [--tokens N,N,...] [--device D] [--runs N]")
local contexts = {}
for n in opts.tokens:gmatch("%d+") do contexts[#contexts + 1] = math.tointeger(n) end
local runs = math.tointeger(opts.runs)

local spent = {}
local timing = layers.time_kernels(spent)
local O = require "model.ops"
local C = require "tests.lua.lib.check"

local dev = ts.device(opts.device)
local ratios = {0, 4, 128}
local model, cfg, random = layers.model(ratios, dev, {tf32 = true})
local kinds = {[0] = "window", [4] = "CSA", [128] = "HCA"}
local attn_kernels = {sparse_attn_f32 = true, hca_attn_split_f32 = true, sparse_attn_merge = true,
                      sparse_attn_tc = true, hca_attn_tc = true, convert_rows = true}

-- layer L's prefill of x [T, d] with the attention in `dtype`: the best of
-- `runs` timed runs after a warm-up (which compiles), in seconds, the
-- attention kernels' part of it, and the output as a table
local function prefill(L, x, pos, dtype)
  model.attn_dtype = dtype
  local out = model:attention(L, x, pos):to_table()
  local function run() -- (to_table waits for a GPU's queue)
    for k in pairs(spent) do spent[k] = nil end
    local t0 = ts.clock()
    model:attention(L, x, pos):to_table()
    return ts.clock() - t0
  end
  local function attn_time()
    local s = 0
    for name, secs in pairs(spent) do
      if attn_kernels[name] then s = s + secs end
    end
    return s
  end
  -- the best of the runs; on a GPU one more timed by kernel, for the
  -- attention kernels' part
  local best, best_attn = math.huge, 0
  layers.timed_runs(dev, timing, function()
    for _ = 1, runs do
      local secs = run()
      if secs < best then best, best_attn = secs, attn_time() end
    end
  end, function()
    run()
    best_attn = attn_time()
  end)
  return best, best_attn, out
end

print(string.format("# one V4-Flash-width attention layer's prefill on %s (%s)", dev:name(),
                    dev:arch() or (dev:threads() .. " threads")))
print("random weights and inputs; the linears in TF32 on a GPU (f32 on the CPU); the best of "
      .. runs .. " runs after a warm-up;")
print("attention = the attention kernels' time (f32: sparse_attn_f32 or hca_attn_split_f32 +")
print("merge; bf16: sparse_attn_tc or hca_attn_tc + convert_rows); rel. diff = the layer")
print("outputs' distance")
print("")
print("| tokens | layer | f32 us/token | f32 attention us/token | bf16 us/token | " ..
      "bf16 attention us/token | attention speed-up | layer speed-up | rel. diff |")
print("|---|---|---|---|---|---|---|---|---|")
for _, T in ipairs(contexts) do
  local x = random({T, cfg.dim}, 1.0)
  local pv = {}
  for t = 0, T - 1 do pv[t + 1] = t end
  local pos = O.tensor("i32", {T}, pv)
  for L = 0, #ratios - 1 do
    local s32, a32, o32 = prefill(L, x, pos, "f32")
    local s16, a16, o16 = prefill(L, x, pos, "bf16")
    local us = 1e6 / T
    print(string.format("| %d | %s | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2fx | %.1e |", T,
                        kinds[ratios[L + 1]], s32 * us, a32 * us, s16 * us, a16 * us,
                        a32 / a16, s32 / s16, C.relerr(o16, o32)))
  end
end
