-- launch.lua - what the model's command-line scripts (generate.lua,
-- serve.lua) share: `--name value` options read against the names a script
-- knows, and the options that name a model and say how it runs, checked,
-- then the model, its device and its tokenizer made from them.
--   local launch = require "model.launch"
--   local opts, lists = launch.options(arg, defaults, known, usage, repeated)
--   local cfg, model, device, tk = launch.open(opts)
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local checkpoint = require "model.checkpoint"
local tokenizer = require "model.tokenizer"

local M = {}

-- The model's options and their defaults (launch.open reads them).
M.model_defaults = {config = "tiny", kv = "fp8", linears = "f32", experts = "bf16",
                    device = "cpu"}
M.model_names = {"model", "weights", "attention", "moe", "tokenizer", "graphs"}
M.model_usage = "--config NAME | --model FOLDER [--weights F] [--kv fp8|f32] " ..
                "[--linears f32|fp8] [--experts bf16|fp8|fp4] [--device D] " ..
                "[--attention bf16|f32] [--moe bf16|f32] [--tokenizer F] [--graphs on|off]"

-- The options in argv as `--name value` pairs over `defaults` (a new table):
-- names in `known` (a set), the model's, or defaults'; an unknown one, a
-- missing value or a stray argument is an error that gives `usage`. The
-- names in `repeated` (a set) also collect every value in order, lists[name].
function M.options(argv, defaults, known, usage, repeated)
  local opts, lists, ok = {}, {}, {}
  for k, v in pairs(M.model_defaults) do opts[k] = v end
  for k, v in pairs(defaults) do opts[k] = v end
  for k in pairs(known) do ok[k] = true end
  for k in pairs(opts) do ok[k] = true end
  for _, k in ipairs(M.model_names) do ok[k] = true end
  for k in pairs(repeated or {}) do lists[k] = {} end
  local i = 1
  while i <= #argv do
    local k = argv[i]:match("^%-%-(.+)$")
    if not k or argv[i + 1] == nil or not ok[k] then
      error((k and not ok[k] and "unknown option --" .. k .. "; " or "") .. "usage: " .. usage, 0)
    end
    opts[k] = argv[i + 1]
    if lists[k] then lists[k][#lists[k] + 1] = argv[i + 1] end
    i = i + 2
  end
  return opts, lists
end

-- The sampling options --temperature (0: greedy), --top-p and --seed,
-- checked: temperature, top_p, seed.
function M.sampling(opts)
  local temperature, top_p = tonumber(opts.temperature), tonumber(opts["top-p"])
  if not (temperature and temperature >= 0) then
    error("--temperature: a number, 0 (greedy) or more", 0)
  end
  if not (top_p and top_p > 0 and top_p <= 1) then error("--top-p: a number in (0, 1]", 0) end
  local seed = math.tointeger(tonumber(opts.seed))
  if not seed then error("--seed: an integer", 0) end
  return temperature, top_p, seed
end

local function one_of(opts, name, ...)
  local v = opts[name]
  if v == nil then return end
  for _, w in ipairs{...} do
    if v == w then return end
  end
  error("--" .. name .. ": " .. table.concat({...}, ", "):gsub(", ([^,]*)$", " or %1"), 0)
end

-- The model the options name, on their device: --model's folder (its
-- config and weights, DeepSeek's released layout too: model/checkpoint.lua),
-- else --config's (model/configs/NAME.json) with --weights or
-- build/NAME.safetensors, made by model/init.lua (seed 1) when missing;
-- and its tokenizer (--tokenizer's, else the folder's, else byte-level ids).
-- Returns cfg, model, device, tokenizer.
function M.open(opts)
  one_of(opts, "kv", "fp8", "f32")
  one_of(opts, "linears", "f32", "fp8")
  one_of(opts, "experts", "bf16", "fp8", "fp4")
  one_of(opts, "attention", "bf16", "f32")
  one_of(opts, "moe", "bf16", "f32")
  one_of(opts, "graphs", "on", "off")
  local cfg, weights
  if opts.model then
    cfg, weights = checkpoint.config(opts.model), opts.weights or opts.model
  else
    cfg = json.read("model/configs/" .. opts.config .. ".json")
    weights = opts.weights or ("build/" .. opts.config .. ".safetensors")
  end
  local probe = not opts.model and io.open(weights, "rb")
  if probe then probe:close() end
  if not (probe or opts.model) then
    print("creating " .. weights .. " (model/init.lua, seed 1)")
    local saved = arg
    arg = {[0] = "model/init.lua", "--config", opts.config, "--seed", "1", "-o", weights}
    dofile("model/init.lua")
    arg = saved
  end
  local device = ts.device(opts.device)
  local model = V4.load(cfg, weights, {kv_format = opts.kv, device = device,
                                       linears = opts.linears, experts = opts.experts,
                                       attention = opts.attention, moe = opts.moe,
                                       graphs = opts.graphs ~= "off"})
  local tk = tokenizer.open(opts.tokenizer or opts.model, cfg.vocab_size, opts.tokenizer ~= nil)
  return cfg, model, device, tk
end

return M
