-- speculate.lua - speculative decoding's speed on the tiny config on the
-- CPU (kernels compiled before timing): tokens/s of a plain greedy decode
-- against model:speculate with the MTP block's drafts (random weights: its
-- drafts are almost never the main model's next token, so this is the
-- cost side) and with drafts that are always right (the plain decode's
-- tokens: every step keeps its draft, the bound a trained MTP block
-- approaches), three right drafts a step (four rows a step: the bound of
-- several drafts), prompt lookup's drafts (model.prompt_lookup, else the
-- block's), and the drafts kept; the same tokens each way (exits
-- non-zero otherwise). Best of --runs runs each, alternated. On a GPU
-- (--device cuda) the step is launches and weight reads, where two rows
-- cost about one: scripts/gpu.sh runs it there.
-- --batch B: B sequences together (prefill_batch, then decode_batch
-- against speculate_batch). --graphs on: steps replay graphs
-- (model/graphs.lua): one sequence's plain and speculative steps and its
-- MTP block's, a batch's plain ones and its speculative steps' rounds
-- and MTP block's rounds.
--   build/tessera run bench/speculate.lua [--tokens N] [--prompt N] [--runs R]
--       [--kv fp8|f32] [--device cpu|cuda|gpusim] [--batch B] [--weights F]
--       [--graphs on|off]
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local layers = require "bench.v4_layers"

local opts = layers.options({tokens = "48", prompt = "64", runs = "3", kv = "fp8",
                             device = "cpu", batch = "1", weights = "build/tiny.safetensors",
                             graphs = "off"},
                            "speculate.lua [--tokens N] [--prompt N] [--runs R] [--kv fp8|f32] " ..
                            "[--device D] [--batch B] [--weights F] [--graphs on|off]")
if opts.graphs ~= "on" and opts.graphs ~= "off" then error("--graphs: on or off", 0) end
local N, P, runs = tonumber(opts.tokens), tonumber(opts.prompt), tonumber(opts.runs)
local dev = ts.device(opts.device)
local cfg = json.read("model/configs/tiny.json")
local model = V4.load(cfg, layers.tiny_weights(opts.weights), {kv_format = opts.kv, device = dev,
                                                               graphs = opts.graphs == "on"})
local B = math.tointeger(tonumber(opts.batch))
local prompts = {}
for b = 1, B do
  prompts[b] = {}
  for i = 1, P do prompts[b][i] = (i * 37 + 11 * (b - 1)) % 256 end
end
local argmax = ts.kernel("kernels/argmax.tile", "argmax", {}, dev)
local function pick(logits)
  local out = ts.tensor("i32", {1}, nil, dev)
  argmax:launch{logits:reshape{1, logits:numel()}, out}
  return out:to_table()[1]
end

-- each way's tokens (a list a sequence), decode seconds (after the
-- prefill), drafts, kept: one sequence (prefill, decode; speculate), or B
-- together (prefill_batch, decode_batch; speculate_batch)
local function start()
  local seqs = {}
  for b = 1, B do seqs[b] = model:sequence() end
  if B == 1 then return seqs, seqs[1]:prefill(ts.tensor("i32", {P}, prompts[1])) end
  return seqs, model:prefill_batch(seqs, prompts)
end
local function plain()
  local seqs, logits = start()
  local toks = {}
  for b = 1, B do toks[b] = {} end
  dev:sync()
  local t0 = ts.clock()
  for k = 1, N do
    local ids = {}
    for b = 1, B do
      toks[b][k] = pick(logits:slice(0, b - 1, 1))
      ids[b] = toks[b][k]
    end
    if k < N then
      logits = B == 1 and seqs[1]:decode(ids[1]) or model:decode_batch(seqs, ids)
    end
  end
  return toks, ts.clock() - t0, 0, 0
end
local want
-- drafts: nil (the MTP block's), k (k right drafts a step: the plain
-- decode's next tokens) or "lookup" (prompt lookup's, 3 at most, else the
-- block's)
local function spec(drafts)
  local seqs, logits = start()
  dev:sync()
  local t0 = ts.clock()
  local lookups = {}
  for b = 1, B do lookups[b] = drafts == "lookup" and model.lookup_drafter(prompts[b], 3) end
  local draft_of = drafts and function(b, new, m)
    if drafts == "lookup" then return lookups[b](new, m) end
    local d = {}
    for i = 1, drafts do d[i] = want[b][#new + i] or 0 end
    return d
  end
  local toks, made, kept
  if B == 1 then
    local one = draft_of and function(new, m) return draft_of(1, new, m) end
    toks, made, kept = seqs[1]:speculate(logits, prompts[1], N, pick, -1, one)
    toks = {toks}
  else
    toks, made, kept = model:speculate_batch(seqs, logits, prompts, N, pick, -1, draft_of)
  end
  return toks, ts.clock() - t0, made, kept
end

local ways = {{"plain decode", plain}, {"MTP drafts", function() return spec(nil) end},
              {"drafts always right", function() return spec(1) end},
              {"3 drafts a step, always right", function() return spec(3) end},
              {"prompt lookup (3), else MTP", function() return spec("lookup") end}}
want = plain() -- (warm-up: compiles; the tokens the others must give)
for _, w in ipairs(ways) do w[2]() end
local best, info, same = {}, {}, true
for _ = 1, runs do
  for k, w in ipairs(ways) do
    local toks, secs, made, kept = w[2]()
    best[k] = math.min(best[k] or math.huge, secs)
    info[k] = {made, kept}
    for b = 1, B do
      for i = 1, N do same = same and toks[b][i] == want[b][i] end
    end
  end
end
print(string.format("# speculative decoding, tiny config, %s caches, %s: %d sequence(s), " ..
                    "prompts %d, %d tokens each, best of %d%s", opts.kv, dev:name(), B, P, N, runs,
                    opts.graphs == "on" and ", graphs on" or ""))
print("")
print("| drafts | decode tokens/s | drafts made | kept | vs plain |")
print("|---|---|---|---|---|")
for k, w in ipairs(ways) do
  print(string.format("| %s | %.1f | %d | %d | %.2fx |", w[1], B * (N - 1) / best[k], info[k][1],
                      info[k][2], best[1] / best[k]))
end
if not same then
  print("FAILED: a speculative run's tokens differ from the plain decode's")
  os.exit(1)
end
