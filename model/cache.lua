-- cache.lua - a layer's decode caches (V4-SPEC 4.1) held as tensors, in one
-- of two formats:
--   "f32": rows of floats (the exact-math model that golden's f32 file
--          records);
--   "fp8": V4-SPEC 3's production bytes (kernels/quant.tile): a KV entry of
--          e4m3 codes + bf16 rope dims + ue8m0 scales (584 B at V4 width),
--          an indexer key of e2m1 pairs + scales (68 B). Storing a row is
--          the model's FP8/FP4 simulation; reading it back gives exactly
--          the simulated values.
-- Rows go in and come out as f32 tensors; the bytes a cache holds are those
-- of its tensor.
local ts = require "tessera"
local O = require "model.ops"

local Cache = {}
Cache.__index = Cache

-- Bytes of one row of `kind` ("kv": `width` dims, the last `rope` rotated;
-- "key": an indexer key) in `format`.
function Cache.row_bytes(format, kind, width, rope)
  if format == "f32" then return 4 * width end
  if kind == "kv" then
    local nope = width - rope
    return (nope + 2 * rope + nope // 64 + 7) // 8 * 8
  end
  return width // 2 + width // 32
end

local function alloc(self, rows)
  if self.format == "f32" then return O.tensor("f32", {rows, self.width}) end
  return O.tensor("i8", {rows, self.rb})
end

-- An empty cache with room for `capacity` rows (it grows when needed).
function Cache.new(format, kind, width, rope, capacity)
  if format ~= "f32" and format ~= "fp8" then
    error("cache format '" .. tostring(format) .. "': 'f32' or 'fp8'", 2)
  end
  local self = setmetatable({format = format, kind = kind, width = width, rope = rope,
                             n = 0}, Cache)
  self.rb = Cache.row_bytes(format, kind, width, rope)
  self.data = alloc(self, math.max(capacity or 0, 1))
  return self
end

-- Room for `rows` rows, keeping the rows held.
function Cache:reserve(rows)
  local cap = self.data:shape(1)
  if rows <= cap then return end
  local grown = alloc(self, math.max(rows, 2 * cap))
  if self.n > 0 then grown:slice(0, 0, self.n):assign(self.data:slice(0, 0, self.n)) end
  self.data = grown
end

local rope_params = O.memo(function(rope) return {ROPE = rope} end)

-- Stores the rows of x [n, width] (f32) as rows at .. at + n - 1.
function Cache:put(x, at)
  local n = x:shape(1)
  if n == 0 then return end
  self:reserve(at + n)
  local dst = self.data:slice(0, at, n)
  if self.format == "f32" then
    dst:assign(x)
  elseif self.kind == "kv" then
    O.kernel("quant.tile", "kv_pack", rope_params(self.rope)):launch{x, dst}
  else
    O.kernel("quant.tile", "fp4_pack"):launch{x, dst}
  end
  self.n = math.max(self.n, at + n)
end

function Cache:append(x) self:put(x, self.n) end

-- Stores KV rows x [n, width] (f32, before kv_norm and rope) as rows at ..
-- at + n - 1 after each is RMS-normalised (times w) and its rope dims
-- rotated to positions pos [n] by tab: rope.tile head_norm_rope into the
-- rows (f32), or kv_norm_rope_pack straight into their bytes ("fp8"), one
-- launch where the norm + rope and put made two (the same bits: the values
-- head_norm_rope computes, packed as kv_pack packs them).
function Cache:put_norm_rope(x, w, tab, pos, at)
  local n = x:shape(1)
  if n == 0 then return end
  if self.kind ~= "kv" or tab:shape(2) * 2 ~= self.rope then
    error("put_norm_rope: a KV cache whose rope dims are the table's", 2)
  end
  self:reserve(at + n)
  local dst, xs = self.data:slice(0, at, n), x:reshape{n, 1, self.width}
  if self.format == "f32" then
    O.kernel("rope.tile", "head_norm_rope", O.f32_params)
      :launch{xs, w, tab, pos, dst:reshape{n, 1, self.width}}
  else
    O.kernel("rope.tile", "kv_norm_rope_pack"):launch{xs, w, tab, pos, dst}
  end
  self.n = math.max(self.n, at + n)
end

-- The unpacking kernels' params for an output of dtype dt (f32; bf16 from
-- the "fp8" KV format, whose values bf16 holds exactly).
function Cache:unpack_params(dt)
  local p = self.unpack and self.unpack[dt]
  if not p then
    self.unpack = self.unpack or {}
    p = {ROPE = self.rope, XT = dt}
    self.unpack[dt] = p
  end
  return p
end

-- Rows first .. first + n - 1 as f32, into `out` ([n, width], e.g. a slice
-- of a larger tensor; bf16 from an "fp8" KV cache) or a new tensor.
function Cache:get(first, n, out)
  out = out or O.out{n, self.width}
  if n == 0 then return out end
  local src = self.data:slice(0, first, n)
  if self.format == "f32" then
    out:assign(src)
  elseif self.kind == "kv" then
    O.kernel("quant.tile", "kv_unpack", self:unpack_params(out:dtype())):launch{src, out}
  else
    O.kernel("quant.tile", "fp4_unpack"):launch{src, out}
  end
  return out
end

-- Rows first .. first + n - 1 as they are held (f32, or the packed bytes):
-- a view, for kernels that read the format itself.
function Cache:view(first, n)
  return self.data:slice(0, first, n)
end

-- The rows rows[r] (an i32 tensor [R]; -1: none, a row of zeros) as f32
-- into out [R, width] (bf16 from an "fp8" KV cache): a decode step reads
-- only the entries it attends to.
function Cache:gather(rows, out)
  if self.format == "f32" then
    O.kernel("embed.tile", "rows_f32"):launch{self.data, rows, out}
  elseif self.kind == "kv" then
    O.kernel("quant.tile", "kv_unpack_rows", self:unpack_params(out:dtype()))
      :launch{self.data, rows, out}
  else
    error("Cache:gather: KV caches only")
  end
  return out
end

-- x [n, width] as it reads back from a cache of this format (the FP8/FP4
-- simulation in "fp8"; x itself in "f32").
function Cache.simulate(format, kind, x, rope)
  if format == "f32" then return x end
  local tmp = Cache.new(format, kind, x:shape(2), rope, x:shape(1))
  tmp:put(x, 0)
  return tmp:get(0, x:shape(1))
end

-- x [n, width] in `format`'s rows as a cache holds them ([n, row bytes] for
-- "fp8"), in a tensor of its own.
function Cache.packed(format, kind, x, rope)
  local n = x:shape(1)
  local c = Cache.new(format, kind, x:shape(2), rope, n)
  c:put(x, 0)
  return n > 0 and c.data or c:view(0, 0)
end

-- The bytes of the rows held, and of the allocation.
function Cache:bytes()
  return self.n * self.rb, self.data:shape(1) * self.rb
end

return Cache
