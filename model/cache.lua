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

-- Rows in the cache's format, zeroed (or with `empty` not: O.out's).
local function alloc(self, rows, empty)
  local make = empty and O.out or function(shape, dt) return O.tensor(dt, shape) end
  if self.format == "f32" then return make({rows, self.width}, "f32") end
  return make({rows, self.rb}, "i8")
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

-- ---- pools ---------------------------------------------------------------------------------

-- A pool: one kind of a layer's state (its window rings, compressed
-- entries or indexer keys, or one compressor's partial-window buffers) for
-- every sequence of a model in one tensor [rows, width] of dtype, so that a
-- batch's decode step writes each sequence's new row with one launch
-- (embed.tile put_rows) where it made one a sequence. Sequence slot s holds
-- its own extent of rows base(s) .. base(s) + cap - 1: a growing cache's
-- slot gets a new extent of twice its rows (its rows copied, the old
-- extent freed for others), so a slot holds about its own sequence's rows,
-- not the longest one's. Extents are taken first-fit from the freed ones,
-- else past the last; when the tensor is full it is made again, twice as
-- large, every extent moved down in slot order (the holes dropped), and
-- smaller when its slots hold under a quarter of it (Pool:shrink). The
-- views handed out are then re-pointed (the objects that hold them,
-- weakly), and `moves` counts the times any extent moved.
local Pool = {}
Pool.__index = Pool

function Cache.pool(dtype, rows, width)
  return setmetatable({dtype = dtype, rows = rows, width = width, used = 0, moves = 0,
                       ext = {}, free = {}, holders = setmetatable({}, {__mode = "v"}),
                       fields = {}}, Pool)
end

-- Rows in the pool's tensor (0 before the first bind).
function Pool:capacity()
  return self.data and self.data:shape(1) or 0
end

-- Slot s's first row.
function Pool:base(s)
  return assert(self.ext[s], "Pool:base: an unbound slot")[1]
end

-- Zeros rows at .. at + n - 1.
function Pool:zero(at, n)
  if n > 0 then self.data:slice(0, at, n):assign(O.tensor(self.dtype, {n, self.width})) end
end

-- Points slot s's holder at its extent.
function Pool:point(s)
  local h, e = self.holders[s], self.ext[s]
  if h then h[self.fields[s]] = self.data:slice(0, e[1], e[2]) end
end

-- The tensor made again with `rows` rows (nil: room for `extra` more past
-- its extents, at least twice as many as before), the extents moved down
-- in slot order, their rows kept; the views re-pointed.
function Pool:regrow(extra, rows)
  local slots, live = {}, 0
  for s, e in pairs(self.ext) do
    slots[#slots + 1] = s
    live = live + e[2]
  end
  table.sort(slots)
  rows = rows or math.max(2 * self:capacity(), live + extra, 2 * self.rows)
  local grown, at = O.tensor(self.dtype, {rows, self.width}), 0
  for _, s in ipairs(slots) do
    local e = self.ext[s]
    grown:slice(0, at, e[2]):assign(self.data:slice(0, e[1], e[2]))
    e[1], at = at, at + e[2]
  end
  self.data, self.used, self.free, self.moves = grown, at, {}, self.moves + 1
  for _, s in ipairs(slots) do self:point(s) end
end

-- The tensor made again smaller when its extents hold under a quarter of
-- it (a long sequence gone): twice their rows (at least two slots'), the
-- rest given back to the device.
function Pool:shrink()
  local live = self:rows_held()
  local floor = 2 * math.max(live, self.rows)
  if self:capacity() > 2 * floor then self:regrow(0, floor) end
end

-- An extent of n rows: {base, n}, the first freed one that fits (split),
-- else past the last (the tensor made again when full; the extents held
-- may move).
function Pool:take(n)
  for i, f in ipairs(self.free) do
    if f[2] >= n then
      local e = {f[1], n}
      if f[2] == n then table.remove(self.free, i) else f[1], f[2] = f[1] + n, f[2] - n end
      return e
    end
  end
  if self.used + n > self:capacity() then self:regrow(n) end
  local e = {self.used, n}
  self.used = self.used + n
  return e
end

-- Gives back extent e: kept in base order, joined to its neighbours, and
-- past the last one it lowers the end in use.
function Pool:give(e)
  local free, i = self.free, 1
  while free[i] and free[i][1] < e[1] do i = i + 1 end
  table.insert(free, i, {e[1], e[2]})
  if free[i + 1] and free[i][1] + free[i][2] == free[i + 1][1] then
    free[i][2] = free[i][2] + free[i + 1][2]
    table.remove(free, i + 1)
  end
  if i > 1 and free[i - 1][1] + free[i - 1][2] == free[i][1] then
    free[i - 1][2] = free[i - 1][2] + free[i][2]
    table.remove(free, i)
    i = i - 1
  end
  if free[i][1] + free[i][2] == self.used then
    self.used = free[i][1]
    table.remove(free, i)
  end
end

-- Sets holder[field] to slot s's rows: a new extent of `rows` rows (the
-- pool's rows a slot when nil; a view [rows, width], zeroed), the slot's
-- earlier one given back.
function Pool:bind(s, holder, field, rows)
  self:release(s)
  local e = self:take(rows or self.rows)
  self.ext[s], self.holders[s], self.fields[s] = e, holder, field
  self:zero(e[1], e[2])
  self:point(s)
end

-- Gives slot s's extent back (a sequence gone; nothing when unbound).
function Pool:release(s)
  local e = self.ext[s]
  if not e then return end
  self.ext[s], self.holders[s], self.fields[s] = nil, nil, nil
  self:give(e)
end

-- Room for `rows` rows in slot s (at least twice its rows when it grows):
-- a new extent, the rows held copied (the rest zeros), the old one given
-- back.
function Pool:grow(s, rows)
  local cap = self.ext[s][2]
  if rows <= cap then return end
  local e = self:take(math.max(rows, 2 * cap))
  local old = self.ext[s] -- (after take: a regrow moves it)
  self.data:slice(0, e[1], cap):assign(self.data:slice(0, old[1], cap))
  self:zero(e[1] + cap, e[2] - cap)
  self.ext[s], self.moves = e, self.moves + 1
  self:give({old[1], cap})
  self:point(s)
end

-- Rows held by slots, and rows of the tensor.
function Pool:rows_held()
  local n = 0
  for _, e in pairs(self.ext) do n = n + e[2] end
  return n, self:capacity()
end

-- x [B, width]'s rows into the pool's rows rows [B] (an i32 tensor), one
-- launch (embed.tile put_rows).
function Pool:put(x, rows) O.put_rows(x, rows, self.data) end

-- A cache in slot s of pool (its dtype and width this format's rows,
-- e.g. a layer's window rings: rows a slot = the window), `rows` rows
-- (the pool's rows a slot when nil); it grows in its slot.
function Cache.pooled(pool, s, format, kind, width, rope, rows)
  local self = setmetatable({format = format, kind = kind, width = width, rope = rope, n = 0,
                             pool = pool, slot = s}, Cache)
  self.rb = Cache.row_bytes(format, kind, width, rope)
  assert(pool.width == (format == "f32" and width or self.rb), "Cache.pooled: the pool's width")
  pool:bind(s, self, "data", rows)
  return self
end

-- Room for `rows` rows, keeping the rows held.
function Cache:reserve(rows)
  local cap = self.data:shape(1)
  if rows <= cap then return end
  if self.pool then
    self.pool:grow(self.slot, rows) -- (self.data re-pointed)
    return
  end
  local grown = alloc(self, math.max(rows, 2 * cap))
  if self.n > 0 then grown:slice(0, 0, self.n):assign(self.data:slice(0, 0, self.n)) end
  self.data = grown
end

local rope_params = O.memo(function(rope) return {ROPE = rope} end)

-- rows' form of a put: the rows made in a tensor of their own, then placed
-- at the rows the device tensor `rows` [n] names (embed.tile put_rows):
-- the same bytes, at rows a recorded step (model/graphs.lua) finds on the
-- device, where a view at `at` would fix them in the graph.
local function put_at_rows(self, make, n, rows)
  local dst = alloc(self, n, true)
  make(dst)
  O.put_rows(dst, rows, self.data)
end

-- Stores the rows of x [n, width] (f32) as rows at .. at + n - 1 (with
-- `rows`, a device i32 [n] holding those rows, put there by put_rows).
function Cache:put(x, at, rows)
  local n = x:shape(1)
  if n == 0 then return end
  self:reserve(at + n)
  if rows then
    put_at_rows(self, function(dst) self:pack(x, dst) end, n, rows)
  else
    self:pack(x, self.data:slice(0, at, n))
  end
  self.n = math.max(self.n, at + n)
end

-- x [n, width] (f32) in the cache's format into dst [n, row].
function Cache:pack(x, dst)
  if self.format == "f32" then
    dst:assign(x)
  elseif self.kind == "kv" then
    O.kernel("quant.tile", "kv_pack", rope_params(self.rope)):launch{x, dst}
  else
    O.kernel("quant.tile", "fp4_pack"):launch{x, dst}
  end
end

function Cache:append(x, rows) self:put(x, self.n, rows) end

-- Stores KV rows x [n, width] (f32, before kv_norm and rope) as rows at ..
-- at + n - 1 after each is RMS-normalised (times w) and its rope dims
-- rotated to positions pos [n] by tab: rope.tile head_norm_rope into the
-- rows (f32), or kv_norm_rope_pack straight into their bytes ("fp8"), one
-- launch where the norm + rope and put made two (the same bits: the values
-- head_norm_rope computes, packed as kv_pack packs them).
function Cache:put_norm_rope(x, w, tab, pos, at, rows)
  local n = x:shape(1)
  if n == 0 then return end
  if self.kind ~= "kv" or tab:shape(2) * 2 ~= self.rope then
    error("put_norm_rope: a KV cache whose rope dims are the table's", 2)
  end
  self:reserve(at + n)
  local xs = x:reshape{n, 1, self.width}
  local function make(dst)
    if self.format == "f32" then
      O.kernel("rope.tile", "head_norm_rope", O.f32_params)
        :launch{xs, w, tab, pos, dst:reshape{n, 1, self.width}}
    else
      O.kernel("rope.tile", "kv_norm_rope_pack"):launch{xs, w, tab, pos, dst}
    end
  end
  if rows then
    put_at_rows(self, make, n, rows)
  else
    make(self.data:slice(0, at, n))
  end
  self.n = math.max(self.n, at + n)
end

-- put_norm_rope of row b of x [B, width] into caches[b] at row at[b], for
-- pooled caches of one pool (rows: the pool's row of each, an i32 tensor
-- [B]): the rows normed, roped (and packed) by one launch into a tensor of
-- their own, then placed by one more (embed.tile put_rows), where each
-- cache's put_norm_rope made one. The same bytes.
function Cache.put_norm_rope_batch(pool, caches, x, w, tab, pos, at, rows)
  local B, c = x:shape(1), caches[1]
  local ys = O.out({B, pool.width}, pool.dtype)
  local xs = x:reshape{B, 1, c.width}
  if c.format == "f32" then
    O.kernel("rope.tile", "head_norm_rope", O.f32_params):launch{xs, w, tab, pos,
                                                                  ys:reshape{B, 1, c.width}}
  else
    O.kernel("rope.tile", "kv_norm_rope_pack"):launch{xs, w, tab, pos, ys}
  end
  pool:put(ys, rows)
  for b, cache in ipairs(caches) do
    assert(cache.pool == pool, "put_norm_rope_batch: caches of one pool")
    cache.n = math.max(cache.n, at[b] + 1)
  end
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
-- simulation in "fp8"; x itself in "f32"), and the rows as the cache holds
-- them (Cache.packed's).
function Cache.simulate(format, kind, x, rope)
  if format == "f32" then return x, x end
  local tmp = Cache.new(format, kind, x:shape(2), rope, x:shape(1))
  tmp:put(x, 0)
  return tmp:get(0, x:shape(1)), tmp.data
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
