-- serve.lua - continuous batching (model/scheduler.lua, what model/serve.lua
-- runs) against serving the same requests one at a time (max batch 1),
-- tiny config: R requests of random prompts (8-200 tokens) and replies
-- (8-48 tokens, greedy), arriving every --gap steps, served with each
-- --batch; the generated tokens a second, the steps, the decode steps'
-- rows, and the time to first token (from the step a request arrived).
-- --system N: every prompt begins with the same N tokens (a system
-- prompt), served with each --prefix-cache K (0: off; the scheduler's kept
-- prefixes: model/scheduler.lua).
-- Each batch's tokens are checked against the first's (every request's
-- tokens are its own alone; exits non-zero otherwise). A first pass over
-- the same requests compiles the kernels, untimed.
--   build/tessera run bench/serve.lua [--requests R] [--gap G] [--batch 1,4,16]
--       [--system N] [--prefix-cache 0,8]
--       [--prefill-tokens N] [--kv fp8|f32] [--graphs on|off] [--device D] [--weights F]
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local Sched = require "model.scheduler"
local layers = require "bench.v4_layers"
local C = require "tests.lua.lib.check"

local opts = layers.options({requests = "24", gap = "1", batch = "1,4,16", system = "0",
                             ["prefix-cache"] = "0",
                             ["prefill-tokens"] = "256", kv = "fp8", graphs = "on",
                             device = "cpu", weights = "build/tiny.safetensors"},
                            "serve.lua [--requests R] [--gap G] [--batch B,...] [--system N] " ..
                            "[--prefix-cache K,...] " ..
                            "[--prefill-tokens N] [--kv fp8|f32] [--graphs on|off] [--device D] " ..
                            "[--weights F]")
local dev = ts.device(opts.device)
local cfg = json.read("model/configs/tiny.json")
local model = V4.load(cfg, layers.tiny_weights(opts.weights),
                      {kv_format = opts.kv, device = dev, graphs = opts.graphs == "on"})
local R, gap = math.tointeger(tonumber(opts.requests)), math.tointeger(tonumber(opts.gap))
local budget = math.tointeger(tonumber(opts["prefill-tokens"]))

local rnd = C.lcg(17)
local system = {}
for t = 1, math.tointeger(tonumber(opts.system)) do
  system[t] = math.floor(rnd() * cfg.vocab_size)
end
local reqs = {}
for i = 1, R do
  local ids = table.move(system, 1, #system, 1, {})
  for _ = 1, 8 + math.floor(rnd() * 193) do ids[#ids + 1] = math.floor(rnd() * cfg.vocab_size) end
  reqs[i] = {ids = ids, max_tokens = 8 + math.floor(rnd() * 41), arrive = (i - 1) * gap}
end

-- the requests served with max batch B: the seconds, the scheduler, each
-- request's tokens and times to first token (ms)
local function serve(B, K)
  local s = Sched.new(model, {max_batch = B, prefill_tokens = budget, prefix_cache = K})
  local mine = {}
  for i, r in ipairs(reqs) do
    mine[i] = {id = i, ids = r.ids, max_tokens = r.max_tokens, arrive = r.arrive}
    assert(s:submit(mine[i]))
  end
  dev:sync()
  local t0 = ts.clock()
  while s:busy() do s:step() end
  dev:sync()
  local secs = ts.clock() - t0
  local ttft = table.move(s.stats.ttft_ms, 1, #s.stats.ttft_ms, 1, {})
  table.sort(ttft)
  return secs, s, mine, ttft
end

local batches, caches = {}, {}
for b in opts.batch:gmatch("%d+") do batches[#batches + 1] = math.tointeger(b) end
for k in opts["prefix-cache"]:gmatch("%d+") do caches[#caches + 1] = math.tointeger(k) end
for _, B in ipairs(batches) do -- (the kernels each batch shape needs, compiled)
  for _, K in ipairs(caches) do serve(B, K) end
end

local sys_text = #system > 0 and "a " .. #system .. "-token system prompt + " or ""
print(string.format("# %d requests (%s8-200 prompt tokens, 8-48 generated, greedy) arriving " ..
                    "every %d steps, %d prompt tokens a step (%s, %s caches, graphs %s, tiny " ..
                    "config)", R, sys_text, gap, budget, dev:name(), opts.kv, opts.graphs))
print("")
print("| max batch | prefix cache | s | generated tokens/s | vs the first row | steps | decode " ..
      "steps | rows a decode step | prompt tokens from kept prefixes | time to first token " ..
      "median / max ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
local first, base, same = nil, nil, true
local function row(B, K)
  local secs, s, mine, ttft = serve(B, K)
  for i, r in ipairs(first or {}) do same = same and C.same(mine[i].tokens, r.tokens) end
  first = first or mine
  local rate = s.stats.generated / secs
  base = base or rate
  local st = s.stats
  print(string.format("| %d | %d | %.2f | %.1f | %.2fx | %d | %d | %.2f | %d | %.1f / %.1f |", B,
                      K, secs, rate, rate / base, st.steps, st.decode_steps,
                      st.decode_rows / math.max(st.decode_steps, 1), st.cached_tokens,
                      ttft[(#ttft + 1) // 2], ttft[#ttft]))
end
for _, B in ipairs(batches) do
  for _, K in ipairs(caches) do row(B, K) end
end
if not same then
  print("FAIL: a request's tokens differ between batch sizes and prefix caches")
  os.exit(1)
end
