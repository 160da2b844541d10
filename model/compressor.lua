-- compressor.lua - the token-level compressors (V4-SPEC 1.4): all entries of a
-- prefill, and the one entry a decode step may complete (4.3).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard
local rows, from_rows, concat_rows = O.rows, O.from_rows, O.concat_rows

return function(M)

-- The compressor of layer L (which: "compressor" or "indexer.compressor"):
-- its two projections of the inputs x [T, d]: the values c and the gate
-- scores z, [T, KE] each.
function M:project(L, which, x)
  local p = self:prefix(L) .. "attn." .. which .. "."
  return linear(x, self:lweight(p .. "wkv.weight")), linear(x, self:lweight(p .. "wgate.weight"))
end

-- The entries of every complete window of the projected rows c, z (the
-- first entry being number `first`), pooled, normalised and rotated.
function M:pool(L, which, c, z, ratio, tab, first)
  local p = self:prefix(L) .. "attn." .. which .. "."
  local E = self:weight(p .. "norm.weight"):shape()[1]
  local N = c:shape()[1] // ratio
  local comp, out = f32{N, E}, f32{N, E}
  kernel("compressor.tile", "compress_pool", {OVERLAP = ratio == 4})
    :launch{c, z, self:weight(p .. "ape"), comp}
  kernel("compressor.tile", "compress_norm_rope_f32", {RATIO = ratio})
    :launch{comp, self:weight(p .. "norm.weight"), tab, out, first or 0}
  return out
end

-- All entries of a prefill over x [T, d]; also the projections, whose last
-- rows seed the decode buffer.
function M:compress(L, which, x, ratio, tab)
  local c, z = self:project(L, which, x)
  return self:pool(L, which, c, z, ratio, tab, 0), c, z
end

-- How many projected rows the decode buffer keeps (V4-SPEC 4.3): one window,
-- and for CSA (overlapping windows) the previous one too.
function M.buffer_rows(ratio)
  return ratio == 4 and 2 * ratio or ratio
end

-- One decode step of the compressor `which` of layer L for the input x
-- [1, d] at position t: its projections join the partial-window buffer
-- st.buf[which] (the last buffer_rows rows); when t completes a window,
-- the new entry [1, E] (from the window, and for CSA the previous one),
-- else nil.
function M:compress_step(L, which, st, t, ratio, tab, x)
  local buf = st.buf[which]
  local c, z = self:project(L, which, x)
  buf.c[#buf.c + 1] = c:to_table()
  buf.z[#buf.z + 1] = z:to_table()
  while #buf.c > M.buffer_rows(ratio) do
    table.remove(buf.c, 1)
    table.remove(buf.z, 1)
  end
  if (t + 1) % ratio ~= 0 then return nil end
  local g = (t + 1) // ratio - 1
  local n = (ratio == 4 and g > 0) and 2 * ratio or ratio
  local KE = #buf.c[1]
  local out = self:pool(L, which, from_rows(buf.c, #buf.c - n + 1, #buf.c, KE),
                        from_rows(buf.z, #buf.z - n + 1, #buf.z, KE), ratio, tab,
                        g - (n // ratio - 1))
  return out:slice(0, out:shape()[1] - 1, 1)
end


end
