-- model_weights.lua - the weight list of a config matches DeepSeek's
-- checkpoint layout (the golden tiny model, when present); init.lua is
-- deterministic and its files load and validate; a weights file that lacks
-- a tensor or has a wrong shape, and a malformed config (its JSON, its
-- layers' compression ratios), are refused with the tensor, the byte or the
-- field named.
local ts = require "tessera"
local json = require "model.json"
local W = require "model.weights"
local V4 = require "model.v4"
local passed, failed = 0, 0
local function check(c, what)
  if c then passed = passed + 1 else failed = failed + 1; print("FAIL: " .. what) end
end
local function errors_with(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true), what .. " (got " .. tostring(err) .. ")")
end

local golden = "../shared/golden/tiny"
local gh = io.open(golden .. "/config.json", "rb")
if gh then
  gh:close()
  local cfg = json.read(golden .. "/config.json")
  local f = ts.load(golden .. "/weights.safetensors")
  check(#W.list(cfg) == #f:names(), "the list names every tensor of the checkpoint")
  check(pcall(W.validate, cfg, f), "the golden checkpoint validates")
  -- on the CPU the linears take their bf16 weights as stored, the f32 ones
  -- (the head) as f32; the others (norms, the grouped projection) get f32
  local model = V4.load(golden)
  check(model:lweight("layers.0.attn.wq_a.weight"):dtype() == "bf16", "a bf16 linear weight stays bf16")
  check(model:lweight("head.weight"):dtype() == "f32", "an f32 linear weight stays f32")
  check(model:weight("layers.0.attn.wq_a.weight"):dtype() == "f32", "M:weight still gives f32")
else
  print("skipped: no golden folder")
end

local path = os.tmpname()
arg = {[0] = "model/init.lua", "--config", "tiny", "--seed", "7", "-o", path}
dofile("model/init.lua")
local cfg = json.read("model/configs/tiny.json")
local m = V4.load(cfg, path)
check(m ~= nil, "init weights load and validate")
local a = io.open(path, "rb"):read("a")
dofile("model/init.lua")
check(io.open(path, "rb"):read("a") == a, "init is deterministic")

-- a file without one tensor, and one with a wrong shape
local f = ts.load(path)
local t = {}
for _, n in ipairs(f:names()) do t[n] = f:get(n) end
t["layers.1.attn.wkv.weight"] = nil
ts.save(path, t)
errors_with(function() V4.load(cfg, path) end,
            "tensor 'layers.1.attn.wkv.weight' is missing", "missing tensor")
t["layers.1.attn.wkv.weight"] = ts.tensor("bf16", {2, 2})
ts.save(path, t)
errors_with(function() V4.load(cfg, path) end,
            "'layers.1.attn.wkv.weight' is bf16[2, 2], the config needs bf16[128, 256]",
            "wrong shape")
os.remove(path)
errors_with(function() json.decode('{"dim": 256,,}') end, "at byte 13", "bad config JSON")
errors_with(function() json.decode('{"dim": 256') end, "expected ',' or '}'", "truncated JSON")
-- a config whose layers and compression ratios do not agree, or a ratio
-- the kernels are not built for, is refused by name before any weight
local more = json.read("model/configs/tiny.json")
more.n_layers = 9
errors_with(function() V4.load(more, "/nonexistent") end,
            "config: compress_ratios has 6 entries, n_layers + n_mtp_layers (10) need one each",
            "fewer ratios than layers")
local odd = json.read("model/configs/tiny.json")
odd.compress_ratios[2] = 7
errors_with(function() V4.load(odd, "/nonexistent") end,
            "config: compress_ratios[2] is 7: 0 (the window), 4 (CSA) or 128 (HCA)", "ratio 7")
local none = json.read("model/configs/tiny.json")
none.n_layers = 0
errors_with(function() V4.load(none, "/nonexistent") end, "n_layers 1 or more", "no layers")

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
