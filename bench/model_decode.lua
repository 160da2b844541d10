-- model_decode.lua - prefill and decode speed of the tiny V4 config on the
-- CPU (kernels compiled before timing), of sequences prefilled together
-- (prefill_batch) and decoding together (decode_batch), decode steps
-- past the window and a short prompt's (before it fills) plain and
-- replayed as graphs, and the time per layer kind of a decode step; run
-- from the source root:
--   build/tessera run bench/model_decode.lua [weights.safetensors]
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"

local layers = require "bench.v4_layers"

local cfg = json.read("model/configs/tiny.json")
local weights = layers.tiny_weights(arg[1] or "build/tiny.safetensors")
local ids = layers.prompt

local results, layers, batches, prefills, graphs = {}, {}, {}, {}, {}
for _, fmt in ipairs{"fp8", "f32"} do
  local model = V4.load(cfg, weights, {kv_format = fmt})
  -- warm up: compiles every kernel once (256 tokens make HCA entries)
  model:prefill(ids(256))
  model:decode(1)
  for _, n in ipairs{64, 256} do
    local t0 = ts.clock()
    model:prefill(ids(n))
    local t1 = ts.clock()
    local steps = 32
    for s = 1, steps do model:decode(s % 256) end
    local t2 = ts.clock()
    results[#results + 1] = string.format("| %s | %d | %.1f | %.1f |", fmt, n, n / (t1 - t0),
                                          steps / (t2 - t1))
  end
  -- B sequences (64-token prompts) decoding together: tokens/s of all of
  -- them against B decoding one at a time
  for _, B in ipairs{4, 8} do
    local seqs, id = {}, {}
    for b = 1, B do
      seqs[b] = model:sequence()
      seqs[b]:prefill(ids(64))
      id[b] = b
    end
    model:decode_batch(seqs, id) -- warm-up: compiles the batch's tilings
    local steps = 16
    local t0 = ts.clock()
    for s = 1, steps do model:decode_batch(seqs, id) end
    local t1 = ts.clock()
    for s = 1, steps do
      for b = 1, B do seqs[b]:decode(b) end
    end
    local t2 = ts.clock()
    batches[#batches + 1] = string.format("| %s | %d | %.1f | %.1f | %.2fx |", fmt, B,
                                          B * steps / (t1 - t0), B * steps / (t2 - t1),
                                          (t2 - t1) / (t1 - t0))
  end
  -- B prompts of n tokens prefilled together against one at a time
  -- (tokens/s of all of them; best of 3 each, alternated)
  for _, B in ipairs{4, 8} do
    for _, n in ipairs{16, 64} do
      local seqs, prompts = {}, {}
      for b = 1, B do seqs[b], prompts[b] = model:sequence(), ids(n) end
      model:prefill_batch(seqs, prompts) -- warm-up: compiles the batch's tilings
      local tb, ta = math.huge, math.huge
      for _ = 1, 3 do
        local t0 = ts.clock()
        model:prefill_batch(seqs, prompts)
        local t1 = ts.clock()
        for b = 1, B do seqs[b]:prefill(prompts[b]) end
        local t2 = ts.clock()
        tb, ta = math.min(tb, t1 - t0), math.min(ta, t2 - t1)
      end
      prefills[#prefills + 1] = string.format("| %s | %d | %d | %.1f | %.1f | %.2fx |", fmt, B, n,
                                              B * n / tb, B * n / ta, ta / tb)
    end
  end
  -- decode steps past the window plain and replayed as graphs
  -- (model/graphs.lua), the two models at the same positions: tokens/s,
  -- best of 3 runs of 48 steps each (one sequence, 256 + 8 tokens on), of
  -- 24 (4 sequences together), alternated (each replayed step's logits the
  -- plain step's, tests/lua/graph_decode.lua)
  do
    local g = V4.load(cfg, weights, {kv_format = fmt, graphs = true})
    model:prefill(ids(256))
    g:prefill(ids(256))
    for s = 1, 8 do model:decode(s); g:decode(s) end -- (records the phases' graphs)
    -- the table's row of `steps` steps of B sequences on each model
    -- (plain(s), graphed(s); after prep()), alternated, the best of 3 runs
    local function race(B, what, steps, plain, graphed, counts, prep)
      local tp, tg = math.huge, math.huge
      for _ = 1, 3 do
        if prep then prep() end
        local t0 = ts.clock()
        for s = 1, steps do plain(s) end
        local t1 = ts.clock()
        for s = 1, steps do graphed(s) end
        local t2 = ts.clock()
        tp, tg = math.min(tp, t1 - t0), math.min(tg, t2 - t1)
      end
      local n = counts()
      graphs[#graphs + 1] = string.format("| %s | %d | %s | %.1f | %.1f | %.2fx | %d / %d |", fmt,
                                          B, what, B * steps / tp, B * steps / tg, tp / tg,
                                          n.recorded, n.recorded + n.replayed + n.planned)
    end
    local function plain(s) model:decode(s) end
    local function graphed(s) g:decode(s) end
    local function counts() return g:graph_counts() end
    race(1, "past the window", 48, plain, graphed, counts)
    -- a short prompt's reply: 64 steps from a 20-token prompt, before the
    -- window (128) fills (a prefill drops the sequence's graphs: each run
    -- records its keys' graphs again, as a new prompt's reply does)
    race(1, "64 steps from a 20-token prompt", 64, plain, graphed, counts, function()
      model:prefill(ids(20))
      g:prefill(ids(20))
    end)
    -- 4 sequences decoding together (decode_batch), prompts of 130-190
    local sp, sg, id = {}, {}, {}
    for b = 1, 4 do
      sp[b], sg[b], id[b] = model:sequence(), g:sequence(), b
      sp[b]:prefill(ids(110 + 20 * b))
      sg[b]:prefill(ids(110 + 20 * b))
    end
    for _ = 1, 8 do model:decode_batch(sp, id); g:decode_batch(sg, id) end
    race(4, "past the window", 24, function() model:decode_batch(sp, id) end,
         function() g:decode_batch(sg, id) end, function() return g:batch_graph_counts() end)
  end
  -- time per layer of one decode step (after a 256-token prefill)
  model:prefill(ids(256))
  local layer_time = {}
  local orig = model.attention_step
  model.attention_step = function(self, L, x, t)
    local t0 = ts.clock()
    local y = orig(self, L, x, t)
    layer_time[L] = (layer_time[L] or 0) + ts.clock() - t0
    return y
  end
  local steps = 16
  for s = 1, steps do model:decode(s) end
  for L = 0, cfg.n_layers - 1 do
    layers[L] = (layers[L] or "") .. string.format(" %.2f |", layer_time[L] / steps * 1e3)
  end
end

print("# tiny V4 config on the CPU (" .. ts.default_device():threads() .. " threads)")
print("caches: fp8 = V4's production formats (FP8/FP4 simulations on), f32 = exact math")
print("")
print("| caches | prompt tokens | prefill tokens/s | decode tokens/s (32 steps) |")
print("|---|---|---|---|")
for _, r in ipairs(results) do print(r) end
print("")
print("| caches | sequences | prompt tokens | prefill_batch tokens/s | one at a time tokens/s | ratio |")
print("|---|---|---|---|---|---|")
for _, r in ipairs(prefills) do print(r) end
print("")
print("| caches | sequences | decode_batch tokens/s | one at a time tokens/s | ratio |")
print("|---|---|---|---|---|")
for _, r in ipairs(batches) do print(r) end
print("")
print("| caches | sequences | steps | plain decode tokens/s | replayed as graphs | " ..
      "ratio | steps recorded / all |")
print("|---|---|---|---|---|---|---|")
for _, r in ipairs(graphs) do print(r) end
print("")
print("| layer | ratio | attention per decode step, fp8 (ms) | f32 (ms) |")
print("|---|---|---|---|")
for L = 0, cfg.n_layers - 1 do
  print(string.format("| %d | %d |%s", L, cfg.compress_ratios[L + 1], layers[L]))
end
