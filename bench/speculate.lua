-- speculate.lua - speculative decoding's speed on the tiny config on the
-- CPU (kernels compiled before timing): tokens/s of a plain greedy decode
-- against model:speculate with the MTP block's drafts (random weights: its
-- drafts are almost never the main model's next token, so this is the
-- cost side) and with drafts that are always right (the plain decode's
-- tokens: every step keeps its draft, the bound a trained MTP block
-- approaches), and the drafts kept; the same tokens each way (exits
-- non-zero otherwise). Best of --runs runs each, alternated.
--   build/tessera run bench/speculate.lua [--tokens N] [--prompt N] [--runs R]
--       [--kv fp8|f32] [--weights F]
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local layers = require "bench.v4_layers"

local opts = {tokens = "48", prompt = "64", runs = "3", kv = "fp8",
              weights = "build/tiny.safetensors"}
for i = 1, #arg, 2 do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil or arg[i + 1] == nil then
    error("usage: speculate.lua [--tokens N] [--prompt N] [--runs R] [--kv fp8|f32] " ..
          "[--weights F]", 0)
  end
  opts[k] = arg[i + 1]
end
local N, P, runs = tonumber(opts.tokens), tonumber(opts.prompt), tonumber(opts.runs)
local cfg = json.read("model/configs/tiny.json")
local model = V4.load(cfg, layers.tiny_weights(opts.weights), {kv_format = opts.kv})
local prompt = {}
for i = 1, P do prompt[i] = (i * 37) % 256 end
local argmax = ts.kernel("kernels/argmax.tile", "argmax", {}, ts.default_device())
local function pick(logits)
  local out = ts.tensor("i32", {1})
  argmax:launch{logits:reshape{1, logits:numel()}, out}
  return out:to_table()[1]
end

-- each way's tokens, decode seconds (after the prefill), drafts, kept
local function plain()
  local s = model:sequence()
  local logits, toks = s:prefill(ts.tensor("i32", {P}, prompt)), {}
  local t0 = ts.clock()
  for k = 1, N do
    toks[k] = pick(logits)
    if k < N then logits = s:decode(toks[k]) end
  end
  return toks, ts.clock() - t0, 0, 0
end
local want
local function spec(oracle)
  local s = model:sequence()
  local logits = s:prefill(ts.tensor("i32", {P}, prompt))
  local t0 = ts.clock()
  local toks, made, kept = s:speculate(logits, prompt, N, pick, -1, oracle and function(new)
    return want[#new + 1] or 0
  end)
  return toks, ts.clock() - t0, made, kept
end

local ways = {{"plain decode", plain}, {"MTP drafts", function() return spec(false) end},
              {"drafts always right", function() return spec(true) end}}
want = plain() -- (warm-up: compiles; the tokens the others must give)
for _, w in ipairs(ways) do w[2]() end
local best, info, same = {}, {}, true
for _ = 1, runs do
  for k, w in ipairs(ways) do
    local toks, secs, made, kept = w[2]()
    best[k] = math.min(best[k] or math.huge, secs)
    info[k] = {made, kept}
    for i = 1, N do same = same and toks[i] == want[i] end
  end
end
print(string.format("# speculative decoding, tiny config, %s caches, CPU (%d threads): " ..
                    "prompt %d, %d tokens, best of %d", opts.kv, ts.default_device():threads(),
                    P, N, runs))
print("")
print("| drafts | decode tokens/s | drafts made | kept | vs plain |")
print("|---|---|---|---|---|")
for k, w in ipairs(ways) do
  print(string.format("| %s | %.1f | %d | %d | %.2fx |", w[1], (N - 1) / best[k], info[k][1],
                      info[k][2], best[1] / best[k]))
end
if not same then
  print("FAILED: a speculative run's tokens differ from the plain decode's")
  os.exit(1)
end
