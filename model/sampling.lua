-- sampling.lua - the next token from a model's logits, as generate.lua and
-- serve.lua pick it: greedy (the largest logit, the smallest id of equal
-- ones: kernels/argmax.tile, a row a block) when the temperature is 0,
-- else temperature + top-p from a seeded generator.
--   local S = require "model.sampling"
--   local gen = S.generator(seed)          -- numbers in [0, 1)
--   S.sample(v, temperature, top_p, gen)   -- v: a row of logits (a table)
--   local pick = S.picker(device)
--   pick(logits, rows) -> ids              -- logits [B, V] (or [V]); rows[b]
--     = {temperature = T, top_p = P, gen = G} for row b (nil: greedy)
local ts = require "tessera"

local S = {}

-- A generator of numbers in [0, 1) from an integer seed (an LCG's top 53
-- bits): the same draws for the same seed on every host.
function S.generator(seed)
  local state = seed
  return function()
    state = state * 6364136223846793005 + 1442695040888963407
    return ((state >> 11) & ((1 << 53) - 1)) / 9007199254740992.0
  end
end

-- The id (0-based) drawn from logits v (a table, v[1] id 0's) at
-- `temperature` (> 0) from the smallest set of the most likely ids whose
-- probability reaches top_p (ties in probability: the smaller id first),
-- one draw of gen.
function S.sample(v, temperature, top_p, gen)
  local mx = -math.huge
  for k = 1, #v do mx = math.max(mx, v[k]) end
  local probs, sum = {}, 0
  for k = 1, #v do
    local p = math.exp((v[k] - mx) / temperature)
    probs[#probs + 1] = {k - 1, p}
    sum = sum + p
  end
  table.sort(probs, function(a, b) return a[2] > b[2] or (a[2] == b[2] and a[1] < b[1]) end)
  local kept, cum = {}, 0
  for _, e in ipairs(probs) do
    kept[#kept + 1] = e
    cum = cum + e[2] / sum
    if cum >= top_p then break end
  end
  local r, acc = gen() * cum * sum, 0
  for _, e in ipairs(kept) do
    acc = acc + e[2]
    if acc >= r then return e[1] end
  end
  return kept[#kept][1]
end

-- A function picking the next token of each row of logits on `device`:
-- pick(logits, rows) with rows[b] = {temperature, top_p, gen} for row b
-- (a temperature of 0 or no entry: greedy); the ids as a list. Greedy rows
-- come from one argmax launch over all rows, sampled ones from the logits
-- read back.
function S.picker(device)
  local argmax = ts.kernel("kernels/argmax.tile", "argmax", {}, device)
  return function(logits, rows)
    rows = rows or {}
    local shape = logits:shape()
    local V = shape[#shape]
    local B = logits:numel() // V
    local picks, greedy, sampled = {}, false, false
    for b = 1, B do
      local r = rows[b]
      if r and r.temperature > 0 then sampled = true else greedy = true end
    end
    if greedy then
      local out = ts.tensor("i32", {B}, nil, device)
      argmax:launch{logits:reshape{B, V}, out}
      picks = out:to_table()
    end
    if sampled then
      local all = logits:to_table()
      for b = 1, B do
        local r = rows[b]
        if r and r.temperature > 0 then
          picks[b] = S.sample(table.move(all, (b - 1) * V + 1, b * V, 1, {}), r.temperature,
                              r.top_p, r.gen)
        end
      end
    end
    return picks
  end
end

return S
