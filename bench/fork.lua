-- fork.lua - a shared prefix prefilled once and forked (model:fork) for B
-- continuations of M tokens each (fork + extend), against B prefills of
-- the whole prefix + continuation, tiny config: the best time of --runs
-- runs of each, alternated, the device synchronised around each, and the
-- logits of each continuation the same either way (bit for bit on the CPU;
-- within 1e-5 elsewhere; exits non-zero otherwise). What a server saves
-- by keeping a system prompt's or a conversation's state instead of
-- prefilling it again.
--   build/tessera run bench/fork.lua [--prefix N,N...] [--tokens M] [--forks B]
--       [--runs R] [--kv fp8|f32] [--device cpu|cuda|gpusim] [--weights F]
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local layers = require "bench.v4_layers"
local C = require "tests.lua.lib.check"

local opts = layers.options({prefix = "256,1024", tokens = "16", forks = "4", runs = "3",
                             kv = "fp8", device = "cpu", weights = "build/tiny.safetensors"},
                            "fork.lua [--prefix N,...] [--tokens M] [--forks B] [--runs R] " ..
                            "[--kv fp8|f32] [--device D] [--weights F]")
local dev = ts.device(opts.device)
local cfg = json.read("model/configs/tiny.json")
local model = V4.load(cfg, layers.tiny_weights(opts.weights), {kv_format = opts.kv, device = dev})
local M, B = math.tointeger(tonumber(opts.tokens)), math.tointeger(tonumber(opts.forks))
local runs = math.tointeger(tonumber(opts.runs))
local tol = dev:name() == "cpu" and 0 or 1e-5

local function timed(f) return layers.timed(dev, f) end

print(string.format("# a shared prefix forked for %d continuations of %d tokens (%s, %s " ..
                    "caches, tiny config)", B, M, dev:name(), opts.kv))
print("")
print("| prefix tokens | prefills of prefix + continuation ms | prefix once + forks + extends " ..
      "ms | speed-up | logits apart |")
print("|---|---|---|---|---|")
local same = true
for n in opts.prefix:gmatch("%d+") do
  local N = math.tointeger(n)
  local prefix, conts = {}, {}
  for i = 1, N do prefix[i] = (i * 37) % 256 end
  for b = 1, B do
    conts[b] = {}
    for i = 1, M do conts[b][i] = (i * 13 + b * 29) % 256 end
  end
  local function whole()
    local out = {}
    for b = 1, B do
      local all = table.move(conts[b], 1, M, N + 1, table.move(prefix, 1, N, 1, {}))
      out[b] = model:sequence():prefill(ts.tensor("i32", {N + M}, all)):to_table()
    end
    return out
  end
  local function forked()
    local base, out = model:sequence(), {}
    base:prefill(ts.tensor("i32", {N}, prefix))
    for b = 1, B do
      out[b] = base:fork():extend(ts.tensor("i32", {M}, conts[b])):to_table()
    end
    return out
  end
  whole() -- (warm-up: compiles both paths' kernels)
  forked()
  local tw, tf, worst = math.huge, math.huge, 0
  for _ = 1, runs do
    local s1, w = timed(whole)
    local s2, f = timed(forked)
    tw, tf = math.min(tw, s1), math.min(tf, s2)
    for b = 1, B do worst = math.max(worst, C.relerr(f[b], w[b])) end
  end
  same = same and worst <= tol
  print(string.format("| %d | %.1f | %.1f | %.2fx | %.1e |", N, tw * 1e3, tf * 1e3, tw / tf, worst))
  collectgarbage()
end
if not same then
  print("FAILED: a fork's logits differ from the whole prefill's")
  os.exit(1)
end
