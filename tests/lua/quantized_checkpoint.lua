-- quantized_checkpoint.lua - a checkpoint in the released instruct formats
-- (V4-SPEC 1.11: FP8 linears with a scale per 128 x 128 block, FP4 routed
-- experts with one per 1 x 32 block; model/quantize.lua writes it from the
-- golden tiny model's bf16 file): V4.load runs it in those formats whatever
-- its options, with the scales as F8_E8M0 bytes or f32, and its logits
-- (a prefill, then decode steps) equal those of the bf16 file loaded with
-- linears = "fp8" and experts = "fp4" bit for bit (both quantise the same
-- way: the whole weight's blocks, then mapped onto wo_a's groups); the
-- same for the Base checkpoints' format (FP8 routed experts). Files
-- with missing or misshapen scales, or a layer's experts in two formats,
-- are refused naming the tensor; ts.save refuses an F8_E8M0 that is not i8.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check = C.check
local dir, ids = C.golden()
if not dir then return end

local function quantize(scales, out, experts)
  arg = {[0] = "model/quantize.lua", "-c", dir .. "/config.json", "-i",
         dir .. "/weights.safetensors", "-o", out, "--scales", scales, "--experts", experts}
  dofile("model/quantize.lua")
end

local N = 40
local function logits(m) return C.logits(m, ids, N) end
local function differ(a, b) return (C.differ(a, b)) end

local want = logits(V4.load(dir, nil, {kv_format = "fp8", linears = "fp8", experts = "fp4"}))
local bf16 = logits(V4.load(dir, nil, {kv_format = "fp8"}))
check(differ(want, bf16) > 0, "the quantised formats change the logits")

-- the Base checkpoints' format: the routed experts in FP8 too
local path = os.tmpname()
quantize("e8m0", path, "fp8")
check(ts.load(path):get("layers.2.ffn.experts.4.w3.weight"):dtype() == "fp8e4m3" and
      ts.load(path):get("layers.2.ffn.experts.4.w3.scale"):dtype() == "i8",
      "the Base format's experts are FP8")
local n8 = differ(logits(V4.load(dir, path, {kv_format = "fp8"})),
                  logits(V4.load(dir, nil, {kv_format = "fp8", linears = "fp8", experts = "fp8"})))
print(string.format("FP8 experts: the quantised file vs quantising at load: %d logits differ", n8))
check(n8 == 0, "FP8 experts: the quantised checkpoint gives the logits of quantising at load")

for _, sc in ipairs{"e8m0", "f32"} do
  quantize(sc, path, "fp4")
  local f = ts.load(path)
  local sdt = sc == "e8m0" and "i8" or "f32"
  check(f:get("layers.1.attn.wq_a.weight"):dtype() == "fp8e4m3" and
        f:get("layers.1.attn.wq_a.scale"):dtype() == sdt and
        f:get("layers.1.ffn.shared_experts.w2.weight"):dtype() == "fp8e4m3" and
        f:get("layers.1.ffn.experts.3.w2.weight"):dtype() == "i8" and
        f:get("layers.1.ffn.experts.3.w2.scale"):dtype() == sdt and
        f:get("layers.1.ffn.gate.weight"):dtype() == "bf16" and
        f:get("head.weight"):dtype() == "f32",
        sc .. ": the file holds the released formats")
  -- the file's formats run whatever the options (these ask for f32 / bf16)
  local got = logits(V4.load(dir, path, {kv_format = "fp8"}))
  local n = differ(got, want)
  print(string.format("%s scales: the quantised file vs the bf16 file quantised at load, " ..
                      "prefill %d + decode 3: %d logits differ", sc, N, n))
  check(n == 0, sc .. ": the quantised checkpoint gives the logits of quantising at load")
  -- damaged files, refused naming the tensor
  local all, dtypes = {}, {}
  for _, name in ipairs(f:names()) do
    all[name] = f:get(name)
    if name:match("%.scale$") and sc == "e8m0" then dtypes[name] = "F8_E8M0" end
  end
  local function refused(edit, expect, what)
    local t, d = {}, {}
    for k, v in pairs(all) do t[k] = v end
    for k, v in pairs(dtypes) do d[k] = v end
    edit(t, d)
    local bad = os.tmpname()
    ts.save(bad, t, nil, d)
    local ok, msg = pcall(V4.load, dir, bad)
    os.remove(bad)
    check(not ok and tostring(msg):find(expect, 1, true) ~= nil,
          sc .. ": " .. what .. ": " .. tostring(msg))
  end
  refused(function(t, d) t["layers.2.attn.wkv.scale"], d["layers.2.attn.wkv.scale"] = nil, nil end,
          "'layers.2.attn.wkv.weight' is FP8 (e4m3), its scales 'layers.2.attn.wkv.scale' " ..
          "are missing", "a missing scale")
  refused(function(t, d)
    t["layers.0.ffn.experts.1.w3.scale"] = ts.tensor(sdt, {64, 4})
  end, "'layers.0.ffn.experts.1.w3.scale' is " .. sdt .. "[64, 4]", "a misshapen scale")
  refused(function(t, d)
    t["layers.3.ffn.experts.5.w1.weight"] = ts.load(dir .. "/weights.safetensors"):get(
      "layers.3.ffn.experts.5.w1.weight")
  end, "another expert of 'layers.3.ffn.' fp4", "a layer's experts in two formats")
end
os.remove(path)

local ok, msg = pcall(ts.save, os.tmpname(), {x = ts.tensor("f32", {2})}, nil, {x = "F8_E8M0"})
check(not ok and tostring(msg):find("must be an i8 tensor"), "F8_E8M0 of an f32: " .. tostring(msg))
C.finish()
