-- quantize.lua - a V4 checkpoint in the formats of DeepSeek's released
-- instruct checkpoints (V4-SPEC 1.9, 1.11) from one with bf16 linears:
-- the linears those hold in FP8 (model/weights.lua fp8_in_checkpoint) as
-- e4m3 codes with a ue8m0 scale per 128 x 128 block of the whole weight
-- (quant.tile fp8_block_quant), the routed experts as FP4 (e2m1 codes two
-- a byte, the lower K index in the low nibble, a ue8m0 scale per 1 x 32
-- block of a row: fp4_block_quant), or with --experts fp8 as the Base
-- checkpoints hold them (FP8 as the linears), each with its `.scale`;
-- every other tensor as it is. The scales are written as F8_E8M0 bytes (the instruct
-- checkpoints' scale_dtype fp8) or f32 (--scales f32). V4.load runs such a
-- file in its formats, with the same logits as the bf16 file loaded with
-- linears = "fp8" and experts = "fp4" / "fp8"
-- (tests/lua/quantized_checkpoint.lua).
--   tessera run model/quantize.lua -c CONFIG.json -i IN.safetensors
--       -o OUT.safetensors [--scales e8m0|f32] [--experts fp4|fp8]
-- (IN may also be a safetensors index or a folder: model/checkpoint.lua)
local ts = require "tessera"
local json = require "model.json"
local weights = require "model.weights"
local checkpoint = require "model.checkpoint"

local opts = {scales = "e8m0", experts = "fp4"}
local i = 1
while i <= #arg do
  local k = arg[i]:match("^%-%-?(.+)$")
  if not k or arg[i + 1] == nil or not ({c = 1, i = 1, o = 1, scales = 1, experts = 1})[k] then
    error("usage: quantize.lua -c CONFIG.json -i IN.safetensors -o OUT.safetensors " ..
          "[--scales e8m0|f32] [--experts fp4|fp8]", 0)
  end
  opts[k] = arg[i + 1]
  i = i + 2
end
if not opts.c or not opts.i or not opts.o then
  error("quantize.lua: -c, -i and -o are needed", 0)
end
if opts.scales ~= "e8m0" and opts.scales ~= "f32" then error("--scales: e8m0 or f32", 0) end
if opts.experts ~= "fp4" and opts.experts ~= "fp8" then error("--experts: fp4 or fp8", 0) end
local cfg = json.read(opts.c)
local file = checkpoint.open(opts.i)
local held = weights.validate(cfg, file)
if next(held) then
  error(string.format("quantize.lua: %s already holds quantised weights ('%s')", opts.i,
                      next(held)), 0)
end
local cpu = ts.device("cpu")
local fp8q = ts.kernel("kernels/quant.tile", "fp8_block_quant", {}, cpu)
local fp4q = ts.kernel("kernels/quant.tile", "fp4_block_quant", {}, cpu)

-- f32 scales (powers of two) as ue8m0 bytes: the exponent field
local function e8m0(s)
  local v = s:to_table()
  for j = 1, #v do
    local b = (string.unpack("<I4", string.pack("<f", v[j])) >> 23) & 255
    v[j] = b > 127 and b - 256 or b
  end
  return ts.tensor("i8", s:shape(), v)
end

local out, dtypes, n8, n4 = {}, {}, 0, 0
for _, name in ipairs(file:names()) do
  local t = file:get(name)
  local expert = weights.routed_expert(name)
  local fp8 = weights.fp8_in_checkpoint(name) or (expert and opts.experts == "fp8")
  local fp4 = expert and opts.experts == "fp4"
  if fp8 or fp4 then
    local N, K = t:shape(1), t:shape(2)
    local w = (t:dtype() == "f32" and t or t:cast("f32")):reshape{1, N, K}
    local q, s
    if fp8 then
      q = ts.tensor("fp8e4m3", {1, N, K})
      s = ts.tensor("f32", {1, (N + 127) // 128, (K + 127) // 128})
      fp8q:launch{w, q, s}
      q, s, n8 = q:reshape{N, K}, s:reshape{(N + 127) // 128, (K + 127) // 128}, n8 + 1
    else
      q, s = ts.tensor("i8", {1, N, K // 2}), ts.tensor("f32", {1, N, K // 32})
      fp4q:launch{w, q, s}
      q, s, n4 = q:reshape{N, K // 2}, s:reshape{N, K // 32}, n4 + 1
    end
    local sn = weights.scale_name(name)
    out[name] = q
    if opts.scales == "e8m0" then
      out[sn], dtypes[sn] = e8m0(s), "F8_E8M0"
    else
      out[sn] = s
    end
  else
    out[name] = t
  end
end
ts.save(opts.o, out, {format = opts.experts == "fp4" and "v4-instruct" or "v4-base",
                      scales = opts.scales}, dtypes)
print(string.format("%s: %d FP8 matrices, %d FP4 ones, scales %s", opts.o, n8, n4, opts.scales))
