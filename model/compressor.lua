-- compressor.lua - the token-level compressors (V4-SPEC 1.4): all entries of a
-- prefill, and the one entry a decode step may complete (4.3).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard
local rows, from_rows, concat_rows = O.rows, O.from_rows, O.concat_rows

return function(M)

-- The compressor of layer L (which: "compressor" or "indexer.compressor"):
-- entries of all complete windows, normalised and rotated.
function M:compress(L, which, x, ratio, tab, first)
  local p = self:prefix(L) .. "attn." .. which .. "."
  local T = x:shape()[1]
  local c = linear(x, self:weight(p .. "wkv.weight"))
  local z = linear(x, self:weight(p .. "wgate.weight"))
  local E = self:weight(p .. "norm.weight"):shape()[1]
  local N = T // ratio
  local comp, out = f32{N, E}, f32{N, E}
  kernel("compressor.tile", "compress_pool", {OVERLAP = ratio == 4})
    :launch{c, z, self:weight(p .. "ape"), comp}
  kernel("compressor.tile", "compress_norm_rope_f32", {RATIO = ratio})
    :launch{comp, self:weight(p .. "norm.weight"), tab, out, first or 0}
  return out
end


-- One step of the compressor `which` of layer L, after the layer's input
-- history st.x gained position t: when t completes a window, the new entry
-- (from the window's tokens, and for CSA the previous window's), else nil.
function M:compress_step(L, which, st, t, ratio, tab)
  if (t + 1) % ratio ~= 0 then return nil end
  local g = (t + 1) // ratio - 1
  local first = (ratio == 4 and g > 0) and t + 1 - 2 * ratio or t + 1 - ratio
  local x = from_rows(st.x, first + 1, t + 1, self.cfg.dim)
  local n = x:shape()[1] // ratio
  local out = self:compress(L, which, x, ratio, tab, g - (n - 1))
  local all = rows(out)
  return all[#all]
end


end
