-- state_pools.lua - the decode state's pools (model/cache.lua Cache.pool:
-- a layer's window rings or compressor buffers of every sequence in one
-- tensor, a slot each) and the kernel that writes a batch's rows into them
-- (kernels/embed.tile put_rows): rows in any order land in their rows of
-- y and nowhere else, in f32 and as bytes, on the CPU and the GPU
-- simulator; a row outside y is refused; a pool's tensor grows with the
-- slots bound before re-pointed to it, their rows kept; a slot bound again
-- starts zeroed; a slot grows alone (the others keep their rows), a
-- released one's rows are taken again, and random binds, growths, releases
-- and writes keep every slot's rows; a pool left mostly empty by a long
-- slot is made smaller; pooled caches grow in their slot; the slots of
-- a model's sequences (model/v4.lua M:slot) are taken once each and given
-- back when a sequence is collected.
local ts = require "tessera"
local O = require "model.ops"
local Cache = require "model.cache"
local C = require "tests.lua.lib.check"
local check = C.check

for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local k = function(dt) return ts.kernel("kernels/embed.tile", "put_rows", {XT = dt}, dev) end
  for _, dt in ipairs{"f32", "i8"} do
    local N, D, R = 11, 37, 4
    local xv = {}
    for i = 1, R * D do xv[i] = dt == "i8" and (i * 7) % 251 - 125 or i * 0.25 - 3 end
    local x = ts.tensor(dt, {R, D}, xv):copy_to(dev)
    local y0 = {}
    for i = 1, N * D do y0[i] = dt == "i8" and -(i % 100) or -i end
    local y = ts.tensor(dt, {N, D}, y0):copy_to(dev)
    local rows = {9, 0, 4, 10}
    k(dt):launch{x, ts.tensor("i32", {R}, rows):copy_to(dev), y}
    local got, want = y:to_table(), {}
    for i = 1, N * D do want[i] = y0[i] end
    for r = 1, R do
      for j = 1, D do want[rows[r] * D + j] = xv[(r - 1) * D + j] end
    end
    local same = true
    for i = 1, N * D do same = same and got[i] == want[i] end
    check(same, string.format("%s put_rows %s: each row in its row of y, the others kept", name,
                              dt))
    local ok, err = pcall(function()
      k(dt):launch{x, ts.tensor("i32", {R}, {1, 2, 11, 3}):copy_to(dev), y}
      dev:sync()
    end)
    check(not ok and tostring(err):find("a row outside y", 1, true),
          name .. " put_rows: a row past y refused: " .. tostring(err))
  end
end

-- a pool: slots of 3 rows of 5 f32s, each slot its own extent of the
-- pool's tensor, which is made again (larger) as slots are bound
O.use(ts.device("cpu"), false)
local pool = Cache.pool("f32", 3, 5)
local holders = {}
local function fill(s, v)
  local t = {}
  for i = 1, 15 do t[i] = v + i end
  holders[s].rows:assign(ts.tensor("f32", {3, 5}, t))
end
for s = 0, 4 do
  holders[s] = {}
  pool:bind(s, holders[s], "rows")
  fill(s, 100 * s)
end
check(pool:capacity() >= 15 and pool.moves > 0,
      string.format("the pool's tensor grew to %d rows", pool:capacity()))
local kept = true
for s = 0, 4 do
  -- each holder's view is the new tensor's rows (a write through the pool
  -- shows in the view) and still holds what was written before growing
  local v = holders[s].rows:to_table()
  kept = kept and v[1] == 100 * s + 1 and v[15] == 100 * s + 15
  pool.data:slice(0, pool:base(s), 1):assign(ts.tensor("f32", {1, 5}, {-s, -s, -s, -s, -s}))
  kept = kept and holders[s].rows:to_table()[1] == -s
end
check(kept, "after growing, every slot's view is the new tensor's rows, their values kept")
local again = {}
pool:bind(2, again, "rows")
local zero = true
for _, v in ipairs(again.rows:to_table()) do zero = zero and v == 0 end
check(zero, "a slot bound again starts zeroed")
holders[2] = again
fill(2, 200)
-- one slot growing leaves the others' rows as they were: the pool holds
-- its rows and theirs, not every slot the longest one's
pool:grow(1, 40)
local held, cap = pool:rows_held()
local others = true
for s = 0, 4 do
  local v = holders[s].rows:to_table()
  others = others and #v == (s == 1 and 40 or 3) * 5 and v[15] == (s == 1 and 115 or 100 * s + 15)
  if s == 1 then for i = 16, #v do others = others and v[i] == 0 end end
end
check(others and held == 4 * 3 + 40, string.format(
      "a slot grown to 40 rows: the others keep 3 (held %d rows of %d), every value kept", held,
      cap))
-- a slot given back leaves its rows to the next one bound
pool:release(1)
holders[1] = nil
local cap1 = pool:capacity()
holders[7] = {}
pool:bind(7, holders[7], "rows", 30)
check(pool:capacity() == cap1 and holders[7].rows:shape(1) == 30,
      string.format("a released slot's rows taken again (%d rows, %d before)", pool:capacity(),
                    cap1))

-- a long slot gone, the tensor is made smaller (Pool:shrink): the other
-- slots' rows kept, their views re-pointed; a pool still mostly held is
-- left as it is
do
  local P, views = Cache.pool("f32", 2, 3), {}
  for s = 0, 3 do
    views[s] = {}
    P:bind(s, views[s], "v")
    views[s].v:assign(ts.tensor("f32", {2, 3}, {s, s, s, s + 0.5, s + 0.5, s + 0.5}))
  end
  P:grow(1, 300)
  local big = P:capacity()
  P:shrink()
  check(P:capacity() == big, "a pool mostly held is not made smaller")
  P:release(1)
  views[1] = nil
  P:shrink()
  local kept = P:capacity() < big / 4
  for _, s in ipairs{0, 2, 3} do
    local v = views[s].v:to_table()
    kept = kept and #v == 6 and v[1] == s and v[6] == s + 0.5 and
           P.data:slice(0, P:base(s), 1):to_table()[1] == s
  end
  check(kept, string.format("a long slot released: %d rows -> %d, the others' rows kept", big,
                            P:capacity()))
end

-- many binds, growths, releases and writes in a random order: every bound
-- slot's view holds exactly what was written to it (a row each value), its
-- extent inside the tensor and apart from every other slot's and the
-- free ones
do
  local P, mirror, views = Cache.pool("f32", 2, 3), {}, {}
  local seed = 12345
  local function rand(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
  local ok, why = true, nil
  for op = 1, 300 do
    local s, what = rand(8), rand(10)
    if not mirror[s] or what == 0 then
      local n = 1 + rand(6)
      views[s] = {}
      P:bind(s, views[s], "v", n)
      mirror[s] = {}
      for r = 1, n do mirror[s][r] = 0 end
    elseif what <= 2 then
      local n = #mirror[s] + 1 + rand(9)
      P:grow(s, n)
      for r = #mirror[s] + 1, math.max(n, 2 * #mirror[s]) do mirror[s][r] = 0 end
    elseif what == 3 then
      P:release(s)
      mirror[s], views[s] = nil, nil
    else
      local r, v = rand(#mirror[s]), op + s / 8
      views[s].v:slice(0, r, 1):assign(ts.tensor("f32", {1, 3}, {v, v, v}))
      mirror[s][r + 1] = v
    end
    -- the check: contents, and extents (held and free) apart, inside
    local spans = {}
    for t, m in pairs(mirror) do
      local got = views[t].v:to_table()
      if #got ~= 3 * #m then ok, why = false, string.format("op %d: slot %d's rows", op, t) end
      for r = 1, #m do
        if got[3 * r] ~= m[r] then
          ok, why = false, string.format("op %d: slot %d row %d", op, t, r)
        end
      end
      spans[#spans + 1] = {P:base(t), #m}
    end
    for _, f in ipairs(P.free) do spans[#spans + 1] = f end
    table.sort(spans, function(x, y) return x[1] < y[1] end)
    for i, sp in ipairs(spans) do
      local next_at = spans[i + 1] and spans[i + 1][1] or P:capacity()
      if sp[1] < 0 or sp[1] + sp[2] > next_at then
        ok, why = false, string.format("op %d: extents overlap at row %d", op, sp[1])
      end
    end
    if not ok then break end
  end
  check(ok, "300 random binds, growths, releases and writes: " .. (why or "every row kept"))
end

-- pooled caches grow in their slot: the rows move to their new place
-- (kept), the view re-pointed, the other slots' rows left
local kv = Cache.pool("i8", 2, Cache.row_bytes("fp8", "kv", 128, 64))
local c0 = Cache.pooled(kv, 0, "fp8", "kv", 128, 64)
local c1 = Cache.pooled(kv, 1, "fp8", "kv", 128, 64)
check(c1.data:shape(1) == 2 and c1.data:shape(2) == c1.rb, "a pooled cache: its slot's 2 rows")
local function rows_of(n, v)
  local t = {}
  for i = 1, n * 128 do t[i] = v * ((i % 7) - 3) end
  return ts.tensor("f32", {n, 128}, t)
end
c0:put(rows_of(2, 1), 0)
c1:put(rows_of(2, 2), 0)
local before0, before1 = c0:get(0, 2):to_table(), c1:get(0, 2):to_table()
c1:put(rows_of(3, 3), 2) -- rows 2 .. 4: slot 1 grows to 5 rows
local after0, after1 = c0:get(0, 2):to_table(), c1:get(0, 2):to_table()
local same = #after0 == #before0
for i = 1, #before0 do same = same and after0[i] == before0[i] and after1[i] == before1[i] end
check(c1.data:shape(1) == 5 and c0.data:shape(1) == 2 and c1.n == 5 and same,
      string.format("a pooled cache grown (%d rows; the other %d) keeps every slot's rows",
                    c1.data:shape(1), c0.data:shape(1)))
local third = c1:get(2, 3):to_table()
local want = Cache.simulate("fp8", "kv", rows_of(3, 3), 64):to_table()
local ok3 = #third == #want
for i = 1, #want do ok3 = ok3 and third[i] == want[i] end
check(ok3, "the rows put past the old width read back")

-- a model's slots (no weights read: the methods alone)
local V4 = require "model.v4"
local root = setmetatable({pools = {}, free_slots = {}, slots_taken = 0}, {__index = V4})
local a, b = V4.sequence(root), V4.sequence(root)
check(a:slot() == 0 and b:slot() == 1 and a:slot() == 0 and root:slot() == 2,
      "slots taken once each, in order")
local bs = b:slot()
b = nil
collectgarbage()
collectgarbage()
local c = V4.sequence(root)
check(c:slot() == bs and root.slots_taken == 3, "a collected sequence's slot is taken again")
-- a collected sequence's rows are freed in the model's pools when the next
-- slot is taken, and a pool it had grown is made smaller
do
  local pool = Cache.pool("f32", 4, 2)
  root.pools[0] = {keys = pool}
  local long, short = V4.sequence(root), V4.sequence(root)
  local hl, hs = {}, {}
  pool:bind(long:slot(), hl, "rows", 400)
  pool:bind(short:slot(), hs, "rows")
  hs.rows:assign(ts.tensor("f32", {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}))
  local big = pool:capacity()
  long, hl = nil, nil
  collectgarbage()
  collectgarbage()
  local next_seq = V4.sequence(root)
  next_seq:slot()
  local v = hs.rows:to_table()
  check(pool:rows_held() == 4 and pool:capacity() < big / 4 and v[1] == 1 and v[8] == 8,
        string.format("a collected long sequence: the pool %d rows -> %d, a survivor's kept", big,
                      pool:capacity()))
end
C.finish()
