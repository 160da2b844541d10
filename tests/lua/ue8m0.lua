-- ue8m0.lua - quant.tile ue8m0_scales decodes every F8_E8M0 byte as the
-- format defines it (2^(byte - 127); byte 0 is 2^-127, a subnormal f32;
-- byte 255 is NaN), on the CPU and on the GPU simulator with both
-- lowerings; the model's two users of checkpoint scales (the FP8 linears'
-- M:file_scales and the experts' stacking) both go through it.
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check

local bytes = {}
for b = 0, 255 do bytes[b + 1] = b < 128 and b or b - 256 end
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local k = ts.kernel("kernels/quant.tile", "ue8m0_scales", {B = 64}, dev)
  local b = ts.tensor("i8", {256}, bytes, dev)
  local s = ts.tensor("f32", {256}, nil, dev)
  k:launch{b, s}
  local v = s:to_table()
  local bad = 0
  for e = 0, 254 do
    if v[e + 1] ~= 2.0 ^ (e - 127) then bad = bad + 1 end
  end
  check(bad == 0, name .. ": bytes 0-254 are 2^(byte - 127) (" .. bad .. " differ)")
  check(v[1] == 2.0 ^ -127 and v[1] > 0, name .. ": byte 0 is 2^-127, not 0")
  check(v[256] ~= v[256], name .. ": byte 255 is NaN")
end
local src = assert(io.open("model/v4.lua")):read("a")
check(src:find("O.scale_values(", 1, true) ~= nil and not src:find("2.0 ^ ((v[i] & 255) - 127)", 1, true),
      "model/v4.lua's file_scales decodes with the kernel (O.scale_values), not a second decoder")
C.finish()
