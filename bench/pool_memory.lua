-- pool_memory.lua - the bytes a batch's decode state pools hold when its
-- sequences differ in length: each slot an extent of its own rows
-- (model/cache.lua Cache.pool) against every slot holding the longest
-- sequence's rows (the pools' layout before extents: slots x the widest
-- extent, a lower bound of what it allocated). Tiny config, "fp8" caches:
--   build/tessera run bench/pool_memory.lua [--long N] [--short N] [--batch B]
--       [--weights F]
-- Then the long sequence is dropped and a new short one prefilled: the
-- pools' bytes before and after (made smaller when their slots hold under
-- a quarter of them). Exits non-zero if the extents hold more than the
-- uniform layout would.
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local layers = require "bench.v4_layers"

local opts = {long = "1000", short = "64", batch = "8", weights = "build/tiny.safetensors"}
for i = 1, #arg, 2 do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil or arg[i + 1] == nil then
    error("usage: pool_memory.lua [--long N] [--short N] [--batch B] [--weights F]", 0)
  end
  opts[k] = arg[i + 1]
end
local long, short, B = tonumber(opts.long), tonumber(opts.short), tonumber(opts.batch)
local cfg = json.read("model/configs/tiny.json")
local model = V4.load(cfg, layers.tiny_weights(opts.weights), {kv_format = "fp8"})
local ids = layers.prompt
local seqs = {}
for b = 1, B do
  seqs[b] = model:sequence()
  seqs[b]:prefill(ids(b == 1 and long or short))
end
for s = 1, 4 do
  local t = {}
  for b = 1, B do t[b] = s end
  model:decode_batch(seqs, t)
end
-- bytes a kind: rows held by the slots' extents, rows of the pools'
-- tensors, and slots x the widest extent
local kinds, names = {}, {}
for _, pools in pairs(model.pools) do
  for name, p in pairs(pools) do
    local k = kinds[name]
    if not k then
      k = {held = 0, tensor = 0, uniform = 0}
      kinds[name], names[#names + 1] = k, name
    end
    local row = p.width * (p.dtype == "f32" and 4 or 1)
    local held, cap = p:rows_held()
    local n, widest = 0, 0
    for _, e in pairs(p.ext) do n, widest = n + 1, math.max(widest, e[2]) end
    k.held, k.tensor = k.held + held * row, k.tensor + cap * row
    k.uniform = k.uniform + n * widest * row
  end
end
table.sort(names)
print(string.format("# State pools, one %d-token and %d %d-token sequences (tiny config, fp8)\n",
                    long, B - 1, short))
print("| pool | held by the slots (B) | the pools' tensors (B) | every slot the widest (B) " ..
      "| held / widest |")
print("|---|---|---|---|---|")
local worse = false
for _, name in ipairs(names) do
  local k = kinds[name]
  print(string.format("| %s | %d | %d | %d | %.2f |", name, k.held, k.tensor, k.uniform,
                      k.held / k.uniform))
  worse = worse or k.held > k.uniform
end
if worse then error("a pool's extents hold more than every slot the widest would", 0) end
-- the long sequence gone: its rows are freed when the next slot is taken,
-- and the pools it had grown are made smaller (Pool:shrink)
local function tensors(name)
  local n = 0
  for _, pools in pairs(model.pools) do
    local p = pools[name]
    if p then n = n + p:capacity() * p.width * (p.dtype == "f32" and 4 or 1) end
  end
  return n
end
local before = tensors("comp") + tensors("keys")
seqs[1] = nil
collectgarbage()
collectgarbage()
model:sequence():prefill(ids(short))
local after = tensors("comp") + tensors("keys")
print(string.format("\nthe %d-token sequence gone, a new %d-token one: entries' and keys' " ..
                    "tensors %d -> %d B", long, short, before, after))
print("(a pool is made smaller when its slots hold under a quarter of it)")
