-- init.lua - deterministic random weights for a config:
--   tessera run model/init.lua --config tiny --seed 1 -o tiny.safetensors
-- Linear weights are uniform in +-1/sqrt(fan_in) (rounded to their bf16
-- storage), norms 1, gates and biases small, tid2eid a seeded random
-- routing table; the same seed gives the same file.
local ts = require "tessera"
local json = require "model.json"
local W = require "model.weights"

local opts = {config = "tiny", seed = 1, o = nil}
local known = {config = true, seed = true, o = true}
local i = 1
while i <= #arg do
  local k = arg[i]:match("^%-%-?(.+)$")
  if not k or not arg[i + 1] or not known[k] then
    error((k and not known[k] and "unknown option " .. arg[i] .. "; " or "") ..
          "usage: init.lua --config NAME --seed N -o FILE", 0)
  end
  opts[k] = arg[i + 1]
  i = i + 2
end
local seed = math.tointeger(tonumber(opts.seed))
if not seed then error("--seed: an integer", 0) end
local path = opts.config:find("/") and opts.config or ("model/configs/" .. opts.config .. ".json")
local cfg = json.read(path)
local out = opts.o or (opts.config .. ".safetensors")

-- a 64-bit LCG, as the tests' C helpers use, from the seed
local state = seed
local function rnd()
  state = state * 6364136223846793005 + 1442695040888963407
  return ((state >> 11) & ((1 << 53) - 1)) / 9007199254740992.0
end

local tensors = {}
for _, w in ipairs(W.list(cfg)) do
  local name, dtype, shape = w[1], w[2], w[3]
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  if dtype == "i32" then -- tid2eid: K distinct experts per token
    local K, E = shape[2], cfg.n_routed_experts
    for r = 0, shape[1] - 1 do
      local used = {}
      for k = 1, K do
        local e
        repeat e = math.floor(rnd() * E) until not used[e]
        used[e] = true
        v[r * K + k] = e
      end
    end
  elseif name:find("norm%.weight$") then
    for k = 1, n do v[k] = 1.0 end
  elseif name:find("attn_sink$") or name:find("gate%.bias$") or name:find("_base$") then
    for k = 1, n do v[k] = (rnd() - 0.5) * 0.1 end
  elseif name:find("_scale$") then
    for k = 1, n do v[k] = 0.5 + rnd() * 0.5 end
  else
    local fan_in = shape[#shape]
    local a = 1 / math.sqrt(fan_in)
    if name:find("ape$") then a = 0.1 end
    for k = 1, n do v[k] = (rnd() * 2 - 1) * a end
  end
  tensors[name] = ts.tensor(dtype, shape, v)
end
ts.save(out, tensors, {config = opts.config, seed = tostring(opts.seed)})
print(string.format("%s: %d tensors for config '%s', seed %s", out, #W.list(cfg),
                    opts.config, opts.seed))
