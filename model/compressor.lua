-- compressor.lua - the token-level compressors (V4-SPEC 1.4): all entries of a
-- prefill, and the one entry a decode step may complete (4.3).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard

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
  local comp, out = O.out{N, E}, O.out{N, E}
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
-- st.buf[which] (a ring of the last buffer_rows rows on the device, c and z
-- [R, KE], position p in row p mod R: no round trip through the host);
-- when t completes a window, the new entry [1, E] (from the window, and
-- for CSA the previous one), else nil.
function M:compress_step(L, which, st, t, ratio, tab, x)
  local buf, R = st.buf[which], M.buffer_rows(ratio)
  local c, z = self:project(L, which, x)
  buf.c:slice(0, t % R, 1):assign(c)
  buf.z:slice(0, t % R, 1):assign(z)
  if (t + 1) % ratio ~= 0 then return nil end
  local g = (t + 1) // ratio - 1
  local n = (ratio == 4 and g > 0) and 2 * ratio or ratio
  -- the window's rows in order: positions t - n + 1 .. t
  local idx = {}
  for k = 1, n do idx[k] = (t - n + k) % R end
  local rows_of = O.tensor("i32", {n}, idx)
  local KE = buf.c:shape()[2]
  local wc, wz = O.out{n, KE}, O.out{n, KE}
  kernel("embed.tile", "rows_f32"):launch{buf.c, rows_of, wc}
  kernel("embed.tile", "rows_f32"):launch{buf.z, rows_of, wz}
  local out = self:pool(L, which, wc, wz, ratio, tab, g - (n // ratio - 1))
  return out:slice(0, out:shape()[1] - 1, 1)
end

-- A compressor's empty decode buffer (the ring compress_step fills) for
-- projections KE wide.
function M.new_buffer(ratio, KE)
  local R = M.buffer_rows(ratio)
  return {c = f32{R, KE}, z = f32{R, KE}}
end

end
