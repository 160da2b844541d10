-- moe_route.lua - a batch's MoE routing in one launch (kernels/moe.tile
-- moe_gate with ROUTE and not GATE: the experts given) against the three
-- kernels it replaces (moe_count, moe_offsets, moe_scatter) and a plain
-- Lua construction: the offsets and
-- the tile table equal, the sorted slots each expert's in slot order; for
-- one token and a few, slots routed nowhere (-1) or past the experts,
-- experts chosen by nobody, more experts than the block's threads, tiles
-- of 1, 4 and 32 rows; on the CPU and the GPU simulator. A table too
-- small for the tiles, or a sorted list that is not a row a slot, is
-- refused.
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check

-- How many entries of two flat tables of one length differ.
local function differ(got, want) return (C.differ({got}, {want})) end

-- The routing written out: offsets, the tile table (each expert's rows in
-- tiles of BM, then (-1, 0, 0)) and the slots of each expert in order.
local function want_route(ev, E, BM, MT)
  local slots = {}
  for e = 0, E - 1 do slots[e] = {} end
  for s, e in ipairs(ev) do
    if e >= 0 and e < E then table.insert(slots[e], s - 1) end
  end
  local offsets, tiles, sorted = {}, {}, {}
  for e = 0, E - 1 do
    offsets[e + 1] = #sorted
    local n = #slots[e]
    for r = 0, n - 1, BM do
      for _, v in ipairs{e, r, math.min(BM, n - r)} do tiles[#tiles + 1] = v end
    end
    for _, s in ipairs(slots[e]) do sorted[#sorted + 1] = s end
  end
  while #tiles < MT * 3 do
    for _, v in ipairs{-1, 0, 0} do tiles[#tiles + 1] = v end
  end
  return offsets, tiles, sorted
end

-- moe_gate routing the slots of experts [T, K] alone, into offsets
-- [E], tiles [MT, 3] and sorted (the gate's inputs and weights, not read,
-- made to their shapes)
local function route(d, BM, experts, offsets, tiles, sorted)
  local T, K, E = experts:shape(1), experts:shape(2), offsets:shape(1)
  ts.kernel("kernels/moe.tile", "moe_gate", {GATE = false, ROUTE = true, BM = BM}, d):launch{
    ts.empty("f32", {T, E}, d), ts.empty("f32", {E}, d), ts.empty("i32", {T}, d),
    ts.empty("i32", {1, K}, d), experts, ts.empty("f32", {T, K}, d), offsets, tiles, sorted}
end

local lcg = C.lcg(7)
local function rand(n) return math.floor(lcg() * n) end

for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{1, 6, 256, 1}, {1, 6, 256, 32}, {3, 6, 20, 4}, {8, 6, 300, 1},
                        {37, 3, 5, 4}, {2, 8, 9, 32}} do
    local T, K, E, BM = case[1], case[2], case[3], case[4]
    local TK, MT = T * K, (T * K + BM - 1) // BM + E
    local ev = {}
    for s = 1, TK do
      local r = rand(13)
      -- mostly experts 0 .. E / 2 (some chosen twice, the rest by nobody),
      -- some slots routed nowhere or past the experts
      ev[s] = r == 0 and -1 or r == 1 and E + rand(3) or rand(E // 2 + 1)
    end
    local what = string.format("%s T %d K %d E %d BM %d", dev, T, K, E, BM)
    local experts = ts.tensor("i32", {T, K}, ev, d)
    local offsets, tiles = ts.empty("i32", {E}, d), ts.empty("i32", {MT, 3}, d)
    local sorted = ts.tensor("i32", {TK}, nil, d)
    route(d, BM, experts, offsets, tiles, sorted)
    local wo, wt, ws = want_route(ev, E, BM, MT)
    check(differ(offsets:to_table(), wo) == 0, what .. ": offsets")
    check(differ(tiles:to_table(), wt) == 0, what .. ": tile table")
    local sv = sorted:to_table()
    check(differ(table.move(sv, 1, #ws, 1, {}), ws) == 0, what .. ": sorted slots")
    -- the three kernels: the same offsets and table, the same slots of
    -- each expert (in the order their atomics took them)
    local counts, cursor = ts.tensor("i32", {E}, nil, d), ts.tensor("i32", {E}, nil, d)
    local o3, t3 = ts.tensor("i32", {E}, nil, d), ts.tensor("i32", {MT, 3}, nil, d)
    local s3 = ts.tensor("i32", {TK}, nil, d)
    ts.kernel("kernels/moe.tile", "moe_count", {}, d):launch{experts, counts}
    ts.kernel("kernels/moe.tile", "moe_offsets", {BM = BM}, d):launch{counts, o3, t3}
    ts.kernel("kernels/moe.tile", "moe_scatter", {}, d):launch{experts, o3, cursor, s3}
    check(differ(o3:to_table(), wo) == 0 and differ(t3:to_table(), wt) == 0,
          what .. ": the three kernels' offsets and table")
    local s3v, ov = s3:to_table(), o3:to_table()
    for e = 0, E - 1 do
      local a, b = ov[e + 1], (ov[e + 2] or #ws)
      local got = table.move(s3v, a + 1, b, 1, {})
      table.sort(got)
      if differ(got, table.move(ws, a + 1, b, 1, {})) > 0 then
        check(false, what .. ": the three kernels' slots of expert " .. e)
      end
    end
  end
  -- refused: a table with too few rows; a sorted list not a row a slot
  local ex = ts.tensor("i32", {1, 6}, {0, 1, 2, 3, 4, 5}, d)
  local ok, msg = pcall(route, d, 4, ex, ts.tensor("i32", {8}, nil, d),
                        ts.tensor("i32", {5, 3}, nil, d), ts.tensor("i32", {6}, nil, d))
  check(not ok and tostring(msg):find("tiles has fewer rows"), dev .. " small table: " .. tostring(msg))
  ok, msg = pcall(route, d, 4, ex, ts.tensor("i32", {8}, nil, d),
                  ts.tensor("i32", {16, 3}, nil, d), ts.tensor("i32", {5}, nil, d))
  check(not ok and tostring(msg):find("a row per slot"), dev .. " short sorted: " .. tostring(msg))
end
C.finish()
