-- decode_queue.lua - what a decode step of the tiny V4 config asks of a
-- device, and how long it takes the host: launches, waits for the GPU,
-- reads, writes, copies within, memsets and driver allocations per step
-- (dev:stats(); all 0 on the CPU, whose calls are done when they return),
-- and the milliseconds a step from sync to sync (the best of 4 runs of
-- steps / 4, less noisy than one mean on a shared host) and per launch.
-- On the mock driver (tests/cuda_mock) the counts are the runtime's
-- requests and the time is the host's alone (the mock's own checks
-- included): what a step costs the host between launches, which a GPU's
-- step cannot go below while its kernels are shorter; on a GPU the time
-- is the step's. Run from the source root:
--   build/tessera run bench/decode_queue.lua [--device cuda|cpu|gpusim] [--steps 16]
--     [--kv fp8|f32] [--linears f32|fp8] [--experts bf16|fp4|fp8]
--     [--weights build/tiny.safetensors]
-- (--linears fp8 --experts fp4: the released checkpoints' formats)
-- Then one step recorded as a graph (ts.capture) and replayed: the same
-- kernels over the same tensors without the Lua between them (a replay
-- recomputes the step it recorded, writing the same rows again: its logits
-- must be the step's, bit for bit, which is checked), a CUDA graph launch
-- on a GPU - what a step costs once the host's part is gone, against the
-- steps above in the same run. Then steps past the window and
-- speculative steps (two positions and the MTP block's two a step), plain
-- and with graphs on (model/graphs.lua).
-- (bench/results/decode-queue.md; scripts/gpu.sh runs it on a GPU)
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local layers = require "bench.v4_layers"
local opts = layers.options({device = "cuda", steps = "16", kv = "fp8", linears = "f32",
                             experts = "bf16", weights = "build/tiny.safetensors"},
                            "decode_queue.lua [--device D] [--steps N] [--kv fp8|f32] " ..
                            "[--linears f32|fp8] [--experts bf16|fp4|fp8] " ..
                            "[--weights F (made by model/init.lua when missing)]")

local weights = layers.tiny_weights(opts.weights)
local dev = ts.device(opts.device)
local cfg = json.read("model/configs/tiny.json")
local m = V4.load(cfg, weights, {kv_format = opts.kv, linears = opts.linears,
                                 experts = opts.experts, device = dev})
local function prefill(model, n)
  local v = {}
  for i = 1, n do v[i] = (i * 37) % 256 end
  return model:prefill(ts.tensor("i32", {n}, v))
end
prefill(m, 64)
for s = 1, 4 do m:decode(s) end -- compiles the step's kernels
dev:sync()
local steps = math.tointeger(opts.steps)
local runs = steps >= 4 and 4 or 1
local per_run = steps // runs
steps = per_run * runs

print(string.format("# tiny V4 config (%d layers), %s caches, %s linears, %s experts, " ..
                    "decode steps on %s (%s)", cfg.n_layers, opts.kv, opts.linears,
                    opts.experts, dev:name(), dev:arch() or
                    (dev:threads() .. " threads")))
print("")
print("| per step | launches | waits | reads | writes | copies within | memsets | cuMemAlloc | ms | us a launch |")
print("|---|---|---|---|---|---|---|---|---|---|")
-- `step()` `steps` times (runs of per_run, the best run's time a step) and
-- the row of the counts a step; returns the seconds a step
local function row(what, step, nlaunch)
  local a, secs = dev:stats(), math.huge
  for r = 1, runs do
    local t0 = ts.clock()
    for s = 1, per_run do step(r * per_run + s) end
    dev:sync()
    secs = math.min(secs, (ts.clock() - t0) / per_run)
  end
  local b = dev:stats()
  local function per(k) return (b[k] - a[k]) / steps end
  local launches = nlaunch or per("launches")
  print(string.format("| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | %s |", what,
                      per("launches"), math.max(0, per("waits") - runs / steps), per("reads"),
                      per("writes"), per("copies"), per("zeroes"), per("driver_allocs"),
                      secs * 1e3,
                      launches > 0 and string.format("%.2f", secs * 1e6 / launches) or "-"))
  return secs
end
local secs = row(steps .. " steps", function(s) m:decode(s % 256) end)

-- one step as a graph, replayed (its logits checked against the step's)
local g, logits = ts.capture(function() return m:decode(7) end, dev)
local want = logits:to_table()
local n = g:counts()
local gsecs = row(string.format("one step replayed as a graph (%d launches, %d writes of %d " ..
                                "bytes)", n.launches, n.writes, n.write_bytes),
                  function() g:replay() end, n.launches)
local got = logits:to_table()
for i = 1, #want do
  if got[i] ~= want[i] then error("a replay's logits differ from the recorded step's at " .. i) end
end

-- steps past the window (a 130-token prompt), plain and with graphs
-- (model/graphs.lua: each a plan write and a replay once its phase is
-- recorded), the two models at the same positions
local mg = V4.load(cfg, weights, {kv_format = opts.kv, linears = opts.linears,
                                  experts = opts.experts, device = dev, graphs = true})
prefill(m, 130)
prefill(mg, 130)
for s = 1, 8 do m:decode(s); mg:decode(s) end -- (the phases recorded)
local psecs = row(steps .. " steps past the window", function(s) m:decode(s % 256) end)
local before = mg:graph_counts()
local dsecs = row(steps .. " steps past the window, graphs on",
                  function(s) mg:decode(s % 256) end)
local after = mg:graph_counts()
print("")
print(string.format("A replayed step takes %.2fx the time of a step (%.3f against %.3f ms); " ..
                    "%s; its logits are the recorded step's, bit for bit. Past the window, a " ..
                    "step with graphs on takes %.2fx a plain step's time (%.3f against %.3f ms; " ..
                    "%d of its %d steps replayed).", gsecs / secs, gsecs * 1e3, secs * 1e3,
                    dev:name() == "cuda" and "a CUDA graph launch each"
                    or "the graph's nodes run in a loop in C", dsecs / psecs, dsecs * 1e3,
                    psecs * 1e3, after.replayed - before.replayed,
                    after.replayed + after.recorded + after.planned - before.replayed -
                    before.recorded - before.planned))

-- speculative steps (M:speculate with its drafts given - each right, so
-- two positions a step - and its picks fixed: the host's time and the
-- device's calls, not the tokens), plain and with graphs on (the step and
-- its MTP block's step each a replay once recorded): from a 130-token
-- prompt, 2 x steps tokens a run (each run's prefill drops the graphs, so
-- every run records its keys again, as a new reply does), the best run
local function speculate(model)
  local p = {}
  for i = 1, 130 do p[i] = (i * 37) % 256 end
  local best, calls = math.huge, nil
  for _ = 1, runs do
    local logits = model:prefill(ts.tensor("i32", {#p}, p), nil, true)
    dev:sync()
    local a, t0 = dev:stats(), ts.clock()
    local _, _, _, n = model:speculate(logits, p, 2 * steps, function() return 7 end, -1,
                                       function() return {7} end)
    dev:sync()
    local secs, b = (ts.clock() - t0) / n, dev:stats()
    if secs < best then
      best, calls = secs, {}
      for _, k in ipairs{"launches", "graphs", "writes", "waits"} do calls[k] = (b[k] - a[k]) / n end
    end
  end
  return best, calls
end
local sp, cp = speculate(m)
local sg, cg = speculate(mg)
local mn = mg:graph_counts().mtp
print(string.format("Speculative steps (two positions each, drafts given; the last run's MTP " ..
                    "steps %d replayed, %d recorded): %.3f ms a step plain (%.1f launches, " ..
                    "%.1f writes, %.1f waits a step), %.3f ms with graphs on (%.1f launches " ..
                    "counting the graphs' kernels, %.1f graph launches, %.1f writes, %.1f " ..
                    "waits): %.2fx.", mn.replayed,
                    mn.recorded, sp * 1e3, cp.launches, cp.writes, cp.waits, sg * 1e3,
                    cg.launches, cg.graphs, cg.writes, cg.waits, sg / sp))
