-- release_layout.lua - a model folder laid out as DeepSeek's released
-- checkpoints are (model/checkpoint.lua): shards named by
-- model.safetensors.index.json, the config at inference/config.json beside
-- a HuggingFace-style config.json, the f32 modules the release does not
-- keep in F32 stored in BF16 (compressors' projections and norms, norms,
-- head: weights.f32_in_checkpoint), tid2eid as
-- i64, FP8 linears and FP4 experts with F8_E8M0 scales. V4.load(folder)
-- gives the logits of the same values in one file, bit for bit (a prefill
-- and decode steps). A shard missing, a tensor not in the shard the index
-- names, an index without weight_map, a folder without weights and a
-- config in neither format are refused naming the file.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local weights = require "model.weights"
local C = require "tests.lua.lib.check"
local check = C.check
local dir, ids = C.golden()
if not dir then return end
local cfg = json.read(dir .. "/config.json")

-- The tensors the release holds in BF16 that the model lists as f32.
local listed = {}
for _, w in ipairs(weights.list(cfg)) do listed[w[1]] = w[2] end
local function bf16_module(name)
  return listed[name] == "f32" and not weights.f32_in_checkpoint(name)
end

-- 1. one file of the golden weights with those rounded to bf16 (as f32),
-- quantised as the instruct checkpoints are (model/quantize.lua)
local src = ts.load(dir .. "/weights.safetensors")
local rounded, n_rounded = {}, 0
for _, name in ipairs(src:names()) do
  local t = src:get(name)
  if bf16_module(name) then
    t, n_rounded = t:cast("bf16"):cast("f32"), n_rounded + 1
  end
  rounded[name] = t
end
local plain, single = os.tmpname(), os.tmpname()
ts.save(plain, rounded)
arg = {[0] = "model/quantize.lua", "-c", dir .. "/config.json", "-i", plain, "-o", single,
       "--scales", "e8m0", "--experts", "fp4"}
dofile("model/quantize.lua")
os.remove(plain)

-- 2. the same in the release's layout: three shards and an index
local root = os.tmpname()
os.remove(root)
local function sh(cmd) assert(os.execute(cmd), cmd) end
sh("mkdir -p " .. root .. "/inference")
local q = ts.load(single)
local names = q:names()
local shards, map, dtypes = {{}, {}, {}}, {}, {{}, {}, {}}
for i, name in ipairs(names) do
  local k = i % 3 + 1
  local t = q:get(name)
  if bf16_module(name) then t = t:cast("bf16") end
  if name:match("tid2eid$") then t = t:cast("i64") end
  if name:match("%.scale$") then dtypes[k][name] = "F8_E8M0" end
  shards[k][name] = t
  map[name] = string.format("model-%05d-of-00003.safetensors", k)
end
for k = 1, 3 do
  ts.save(string.format("%s/model-%05d-of-00003.safetensors", root, k), shards[k], nil, dtypes[k])
end
local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end
local function index_json(m)
  local lines = {}
  for _, name in ipairs(names) do
    if m[name] then lines[#lines + 1] = string.format('    "%s": "%s"', name, m[name]) end
  end
  return '{\n  "metadata": {"total_size": 0},\n  "weight_map": {\n' ..
    table.concat(lines, ",\n") .. "\n  }\n}\n"
end
write(root .. "/model.safetensors.index.json", index_json(map))
local cf = assert(io.open(dir .. "/config.json", "rb"))
write(root .. "/inference/config.json", cf:read("a"))
cf:close()
write(root .. "/config.json", '{"architectures": ["DeepseekV4ForCausalLM"], "hidden_size": ' ..
      cfg.dim .. ', "num_hidden_layers": ' .. cfg.n_layers .. "}\n")

check(n_rounded >= 10, "the f32 modules to store in BF16: " .. n_rounded)

-- 3. the same logits, bit for bit
local N = 40
local prompt = C.ids(ids, 1, N)
local released = V4.load(root, nil, {kv_format = "fp8"})
check(released.file:get("head.weight"):dtype() == "bf16" and
      released.file:get("layers.0.ffn.gate.tid2eid"):dtype() == "i64" and
      released.file:get("layers.1.attn.compressor.wkv.weight"):dtype() == "bf16" and
      released.file:get("layers.1.ffn.experts.3.w2.scale"):dtype() == "i8",
      "the folder holds the release's dtypes")
check(released.quant["layers.1.ffn.experts.3.w2.weight"] == "fp4" and
      released.quant["layers.1.attn.wq_a.weight"] == "fp8", "the folder's formats are found")
local n, total = C.differ(C.logits(released, ids, N),
                          C.logits(V4.load(cfg, single, {kv_format = "fp8"}), ids, N))
print(string.format("release layout (3 shards, BF16 modules, i64 tid2eid) vs one file: " ..
                    "%d of %d logits differ", n, total))
check(total > 0 and n == 0, "the release layout gives the one file's logits")
check(#released.file:names() == #names, "the index lists every tensor")

-- the folder on the GPU simulator: the stacked codes and the decoded
-- scales on the device (quant.tile ue8m0_scales), the CPU's logits (f32
-- caches and no TF32, so that only the sums' order differs: in V4's fp8
-- caches an ulp can flip an e4m3 rounding, tests/lua/model_device.lua)
local few = prompt:slice(0, 0, 9)
local function on(d)
  return V4.load(root, nil, {kv_format = "f32", tf32 = false, device = d}):prefill(few):to_table()
end
local e = C.relerr(on("gpusim"), on("cpu"))
print(string.format("release layout on the GPU simulator vs the CPU, prefill 9: %.2e", e))
check(e < 1e-4, "the simulator runs the release layout: " .. e)

-- 4. refused, naming the file
local function refused(setup, expect, what)
  local bad = os.tmpname()
  os.remove(bad)
  sh("cp -r " .. root .. " " .. bad)
  setup(bad)
  local ok, msg = pcall(V4.load, bad)
  sh("rm -rf " .. bad)
  check(not ok and tostring(msg):find(expect, 1, true) ~= nil, what .. ": " .. tostring(msg))
end
refused(function(p) os.remove(p .. "/model-00002-of-00003.safetensors") end,
        "model-00002-of-00003.safetensors', which is not there", "a shard missing")
refused(function(p)
  local m = {}
  for k, v in pairs(map) do m[k] = v end
  m["layers.1.attn.wq_a.weight"] = map["layers.1.attn.wq_a.weight"] ==
    "model-00001-of-00003.safetensors" and "model-00002-of-00003.safetensors" or
    "model-00001-of-00003.safetensors"
  write(p .. "/model.safetensors.index.json", index_json(m))
end, "puts tensor 'layers.1.attn.wq_a.weight' in", "a tensor in the wrong shard")
refused(function(p)
  local m = {}
  for k, v in pairs(map) do m[k] = v end
  m["layers.2.attn.wkv.scale"] = nil
  write(p .. "/model.safetensors.index.json", index_json(m))
end, "its scales 'layers.2.attn.wkv.scale' are missing", "a tensor the index leaves out")
refused(function(p) write(p .. "/model.safetensors.index.json", '{"metadata": {}}') end,
        "has no weight_map object", "an index without weight_map")
refused(function(p) write(p .. "/model.safetensors.index.json", '{"weight_map": {"a": ') end,
        "model.safetensors.index.json: JSON:", "a truncated index")
refused(function(p) os.remove(p .. "/model.safetensors.index.json") end,
        "checkpoint: no weights at", "a folder without weights")
refused(function(p) os.remove(p .. "/inference/config.json") end,
        "is not in DeepSeek's inference/config.json format", "an HF config only")

-- a tensor stored in a dtype that does not convert exactly is still refused
local f32head = {}
for _, name in ipairs(src:names()) do f32head[name] = src:get(name) end
f32head["embed.weight"] = src:get("embed.weight"):cast("f32")
local p = os.tmpname()
ts.save(p, f32head)
local ok, msg = pcall(V4.load, cfg, p)
os.remove(p)
check(not ok and tostring(msg):find("'embed.weight' is f32[", 1, true) ~= nil,
      "an f32 embed (the model reads it as bf16) is refused: " .. tostring(msg))

sh("rm -rf " .. root)
os.remove(single)
C.finish()
