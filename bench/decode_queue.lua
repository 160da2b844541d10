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
-- steps above in the same run.
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
local prompt = {}
for i = 1, 64 do prompt[i] = (i * 37) % 256 end
m:prefill(ts.tensor("i32", {#prompt}, prompt))
for s = 1, 4 do m:decode(s) end -- compiles the step's kernels
dev:sync()
local steps = math.tointeger(opts.steps)
local runs = steps >= 4 and 4 or 1
local per_run = steps // runs
steps = per_run * runs
local a, secs = dev:stats(), math.huge
for r = 1, runs do
  local t0 = ts.clock()
  for s = 1, per_run do m:decode((r * per_run + s) % 256) end
  dev:sync()
  secs = math.min(secs, (ts.clock() - t0) / per_run)
end
local b = dev:stats()
print(string.format("# tiny V4 config (%d layers), %s caches, %s linears, %s experts, " ..
                    "decode steps on %s (%s)", cfg.n_layers, opts.kv, opts.linears,
                    opts.experts, dev:name(), dev:arch() or
                    (dev:threads() .. " threads")))
print("")
print("| per step | launches | waits | reads | writes | copies within | memsets | cuMemAlloc | ms | us a launch |")
print("|---|---|---|---|---|---|---|---|---|---|")
local function per(k) return (b[k] - a[k]) / steps end
local launches = per("launches")
print(string.format("| %d steps | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | %s |", steps,
                    launches, math.max(0, per("waits") - runs / steps), per("reads"),
                    per("writes"), per("copies"), per("zeroes"), per("driver_allocs"), secs * 1e3,
                    launches > 0 and string.format("%.2f", secs * 1e6 / launches) or "-"))

-- one step as a graph, replayed (the same counts; its time against the
-- steps' above)
local g, logits = ts.capture(function() return m:decode(7) end, dev)
local want = logits:to_table()
local c, gsecs = dev:stats(), math.huge
for r = 1, runs do
  local t0 = ts.clock()
  for s = 1, per_run do g:replay() end
  dev:sync()
  gsecs = math.min(gsecs, (ts.clock() - t0) / per_run)
end
local d = dev:stats()
local got = logits:to_table()
for i = 1, #want do
  if got[i] ~= want[i] then error("a replay's logits differ from the recorded step's at " .. i) end
end
local n = g:counts()
local function gper(k) return (d[k] - c[k]) / steps end
print(string.format("| one step replayed as a graph (%d launches, %d writes of %d bytes) | " ..
                    "%.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.3f | %.2f |", n.launches,
                    n.writes, n.write_bytes, gper("launches"), math.max(0, gper("waits") - runs / steps),
                    gper("reads"), gper("writes"), gper("copies"), gper("zeroes"),
                    gper("driver_allocs"), gsecs * 1e3, gsecs * 1e6 / n.launches))
print("")
print(string.format("A replayed step takes %.2fx the time of a step (%.3f against %.3f ms); " ..
                    "%s; its logits are the recorded step's, bit for bit.", gsecs / secs,
                    gsecs * 1e3, secs * 1e3, dev:name() == "cuda" and
                    string.format("%d CUDA graph launches", d.graphs - c.graphs) or
                    "the graph's nodes run in a loop in C"))
