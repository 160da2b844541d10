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
-- the writer (serve.lua's replies): read back as written; keys sorted;
-- escapes; a byte that begins no UTF-8 character as U+FFFD; refusals
local v = {id = "a\"b\\c\n\1", n = 42, x = 0.1, big = -9007199254740993, ok = true,
           list = {1, 2.5, "z"}, nested = {e = {}, k = {"\u{3b1}"}}}
local text = json.encode(v)
local back = json.decode(text)
check(back.id == v.id and back.n == 42 and back.x == 0.1 and back.big == v.big and
      back.ok == true and back.list[3] == "z" and back.list[2] == 2.5 and
      back.nested.k[1] == "\u{3b1}" and #back.nested.e == 0, "json.encode reads back: " .. text)
check(text:sub(1, 7) == '{"big":' and text:find('"id":"a\\"b\\\\c\\n\\u0001"', 1, true) and
      text:find('"x":0.1}', 1, true),
      "json.encode sorts keys and escapes: " .. text)
check(json.encode("ok\xff\xe2\x82") == '"ok\u{fffd}\u{fffd}\u{fffd}"' and
      json.encode("\xe2\x82\xac") == '"\u{20ac}"' and
      json.encode("\u{fffd}\x82\xc3\xa9\xbf") == '"\u{fffd}\u{fffd}\u{e9}\u{fffd}"',
      "json.encode: invalid UTF-8 bytes as U+FFFD (a stray continuation byte too)")
errors_with(function() json.encode(0 / 0) end, "is not a number JSON has", "NaN refused")
errors_with(function() json.encode({[true] = 1}) end, "is not a string",
            "a key not a string refused")
errors_with(function() json.encode(print) end, "has no JSON form", "a function refused")
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
errors_with(function() V4.load(none, "/nonexistent") end,
            "config: n_layers is 0: a whole number of 1 or more", "no layers")
-- each field the model and kernels are built for, refused by name (a hash
-- layer's random routing table of more experts than there are looped
-- forever in model/init.lua; a window of 0 failed inside the caches, 0
-- indexer heads in a kernel's compile, 3 heads in 2 output groups in a
-- reshape)
for _, c in ipairs{
    {"window_size", 0, "window_size is 0: a whole number of 1 or more"},
    {"n_activated_experts", 9, "n_activated_experts is 9: a whole number from 1 to 8"},
    {"index_n_heads", 0, "index_n_heads is 0: a whole number of 1 or more"},
    {"index_topk", 0, "index_topk is 0"}, {"dim", 2.5, "dim is 2.5: a whole number"},
    {"vocab_size", 1 << 31, "vocab_size is 2147483648: a whole number from 1 to 2147483647"},
    {"n_hash_layers", -1, "n_hash_layers is -1: a whole number of 0 or more"},
    {"index_head_dim", 64, "index_head_dim is 64: 128 (the indexer's Hadamard"},
    {"rope_head_dim", 7, "rope_head_dim is 7: even"},
    {"rope_head_dim", 130, "rope_head_dim is 130: a whole number from 2 to 128"},
    {"n_heads", 3, "o_groups is 2: a divisor of n_heads (3)"},
    {"hc_mult", 3, "hc_mult is 3: 4 (mHC's four residual streams)"},
    {"n_shared_experts", 2, "n_shared_experts is 2: 1"},
    {"score_func", "softmax", "score_func is softmax: sqrtsoftplus"},
    {"norm_eps", -1, "norm_eps is -1: a number above 0"},
    {"swiglu_limit", 0, "swiglu_limit is 0: a number above 0"},
    {"rope_theta", "big", "rope_theta is big: a number above 0"},
    {"hc_eps", 1 / 0, "hc_eps is inf"},
    {"max_seq_len", nil, "max_seq_len is nil"}} do
  local bent = json.read("model/configs/tiny.json")
  bent[c[1]] = c[2]
  errors_with(function() V4.load(bent, "/nonexistent") end, "config: " .. c[3],
              c[1] .. " " .. tostring(c[2]))
  -- (model/init.lua's list of weights checks it too, at the caller's line)
  local ok, err = pcall(function() local l = W.list(bent); return l end)
  check(not ok and err:find("model_weights.lua:%d+: config: ") ~= nil, "W.list: " .. tostring(err))
end
for _, name in ipairs{"tiny", "v4-flash", "v4-pro"} do
  check(pcall(W.list, json.read("model/configs/" .. name .. ".json")), name .. " passes the checks")
end

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
