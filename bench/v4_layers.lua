-- v4_layers.lua - attention layers at V4-Flash width (d 4096, 64 heads of
-- 512, top-k 512, window 128) with random weights, as model/init.lua makes
-- them, for the benchmarks that run the model's own attention
-- (long_context.lua's decode steps, prefill_attention.lua's prefill).
-- model/v4.lua is required on the first call, so that a benchmark can wrap
-- O.kernel before the model's files copy it.
local ts = require "tessera"
local json = require "model.json"
local O = require "model.ops"

local L = {}

-- The options of a benchmark's command line: arg's "--name value" pairs
-- over `opts` (the defaults; a name not in it is refused with `usage`, and
-- so is a value that is not whole numbers where the default is).
function L.options(opts, usage)
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if not k or opts[k] == nil or arg[i + 1] == nil then error("usage: " .. usage, 0) end
    -- (a number's default: whole numbers, a list of them where the usage says)
    if tostring(opts[k]):match("^[%d,]+$") and not arg[i + 1]:match("^%d+[%d,]*$") then
      error("--" .. k .. ": whole numbers, not " .. arg[i + 1] .. "; usage: " .. usage, 0)
    end
    opts[k] = arg[i + 1]
    i = i + 2
  end
  return opts
end

-- A model of layers with the compression ratios `ratios` (0 window-only, 4
-- CSA, 128 HCA) on device dev; `fields` are set on it (kv_format, tf32,
-- linears, attn_dtype, join: model/v4.lua's load options as its fields). Returns
-- the model, its config and random(shape, scale): a new f32 tensor of
-- values in [-scale, scale) (bench/gpu.tile rand_f32, a new seed a call).
function L.model(ratios, dev, fields)
  local V4 = require "model.v4"
  local weights = require "model.weights"
  local cfg = json.read("model/configs/v4-flash.json")
  cfg.n_layers, cfg.n_mtp_layers, cfg.compress_ratios = #ratios, 0, ratios
  local model = {cfg = cfg, w = {}, kv_format = "fp8", tf32 = false, dev = dev,
                 linears = "f32", experts = "bf16", quant = {}, join = true, joined = {}}
  for k, v in pairs(fields or {}) do model[k] = v end
  setmetatable(model, {__index = V4})
  O.use(dev, model.tf32)
  local rand = ts.kernel("bench/gpu.tile", "rand_f32", {}, dev)
  local seed = 0
  local function random(shape, scale)
    local t, n = O.f32(shape), 1
    for _, s in ipairs(shape) do n = n * s end
    seed = seed + 1
    rand:launch{t:reshape{n}, seed, scale}
    return t
  end
  for _, w in ipairs(weights.list(cfg)) do
    local name, shape = w[1], w[3]
    if name:find("^layers%.%d+%.attn%.") then
      if name:find("norm%.weight$") then
        local ones = {}
        for k = 1, shape[1] do ones[k] = 1.0 end
        model.w[name] = O.tensor("f32", shape, ones)
      elseif name:find("attn_sink$") then
        model.w[name] = random(shape, 0.05)
      else
        model.w[name] = random(shape, name:find("ape$") and 0.1 or shape[#shape] ^ -0.5)
        -- a linear layer's weight as the checkpoint stores it (M:lweight)
        model.w["raw:" .. name] = w[2] == "bf16" and model.w[name]:cast("bf16") or model.w[name]
      end
    end
  end
  return model, cfg, random
end

-- Wraps O.kernel so that every launch's time is added to spent[name]
-- (seconds). A GPU's launch returns once queued, so there each timed
-- launch waits for the device before and after it (dev:sync()): the sums
-- are the kernels' own times, and such a run is slower than an untimed
-- one. Returns timing(on): after timing(false) launches pass through
-- untimed, for a run timed as a whole from sync to sync. Every launch,
-- timed or not, counts in L.launches. Call before model/v4.lua is first
-- required.
L.launches = 0
function L.time_kernels(spent)
  local compile, wrapped, on = O.kernel, {}, true
  O.kernel = function(file, name, params)
    local k = compile(file, name, params)
    if not wrapped[k] then
      wrapped[k] = {launch = function(_, args)
        L.launches = L.launches + 1
        if not on then return k:launch(args) end
        local dev = O.device or ts.default_device()
        dev:sync()
        local t0 = ts.clock()
        k:launch(args)
        dev:sync()
        spent[name] = (spent[name] or 0) + ts.clock() - t0
      end}
    end
    return wrapped[k]
  end
  return function(v) on = v end
end

-- The benchmarks' prompt of n tokens, (i * 37) % 256 for i = 1 .. n: an
-- i32 tensor.
function L.prompt(n)
  local v = {}
  for i = 1, n do v[i] = (i * 37) % 256 end
  return ts.tensor("i32", {n}, v)
end

-- The tiny config's weights at `path`, made by model/init.lua (seed 1)
-- when the file is missing; returns path.
function L.tiny_weights(path)
  local probe = io.open(path, "rb")
  if probe then probe:close() else
    arg = {[0] = "model/init.lua", "--config", "tiny", "--seed", "1", "-o", path}
    dofile("model/init.lua")
  end
  return path
end

-- The runs of a benchmark timed both ways with timing (L.time_kernels's
-- switch): on a GPU, which queues its launches, whole(true) runs untimed
-- by kernel (for a time taken as a whole, sync to sync), then again()
-- once more with each launch timed; elsewhere whole(false) alone, timed
-- by kernel as it runs (a CPU's launch is done when it returns). Returns
-- what whole returns.
function L.timed_runs(dev, timing, whole, again)
  local queued = dev:name() == "cuda"
  timing(not queued)
  local r = table.pack(whole(queued))
  timing(true)
  if queued then again() end
  return table.unpack(r, 1, r.n)
end

-- f()'s seconds on dev, synchronised before and after (a GPU queues its
-- launches), and what it returns.
function L.timed(dev, f)
  dev:sync()
  local t0 = ts.clock()
  local out = f()
  dev:sync()
  return ts.clock() - t0, out
end

return L
