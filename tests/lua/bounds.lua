-- bounds.lua - on the CPU a parallel statement runs its element accesses
-- unchecked where interval arithmetic bounds them inside their extents
-- for every index of the statement (compiler/gen_bounds.c), and as written
-- elsewhere. tests/lua/bounds.tile's kernels (neighbours, strided, halved,
-- remainder, shifted, masked, min/max/select indices, a loop bounded by
-- the index, 2-d, a gather, tiles read under an `if` and past their end,
-- an index whose block origin cancels)
-- against a plain reference with the language's rule (out of range reads
-- 0, writes nothing), on sizes where every block lies inside, where the
-- first and last blocks' accesses go past either end, and single-block
-- ones. Each tensor is a slice of one three times its size filled with
-- other values: an access let through unchecked past either end would
-- read them (a wrong value) or write over them (checked). The generated
-- MLIR carries each statement's count of bounded accesses.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/bounds.tile"
local cpu = ts.device("cpu")
local exe = arg[-1]

-- the count of bounded accesses in each kernel's generated MLIR
local counts = {neighbours = 4, forms = 11, window = 3, grid2 = 3, gather = 2, tile = 4,
                past = 2, guards = 3, exprs = 3, cancel = 2}
for k, want in pairs(counts) do
  local p = io.popen(exe .. " compile " .. file .. " --kernel " .. k .. " --emit mlir 2>&1")
  local out = p:read("a")
  p:close()
  local got = tonumber(out:match("tessera%.unchecked = (%d+)"))
  C.check(got == want, string.format("%s: %s accesses bounded, want %d", k, tostring(got), want))
end
-- TESSERA_CPU_BOUNDS=off: the statements as written alone
do
  local p = io.popen("TESSERA_CPU_BOUNDS=off " .. exe .. " compile " .. file ..
                     " --kernel forms --emit mlir 2>&1")
  local out = p:read("a")
  p:close()
  C.check(out:find("func.func") and not out:find("tessera.unchecked"),
          "TESSERA_CPU_BOUNDS=off: no unchecked copy")
end

local function framed(n, w, vals, fill) return C.framed(n, w, vals, fill, cpu) end

local function frame_kept(big, n, w, fill, what)
  local v = big:to_table()
  local ok = true
  for i = 1, n * w do
    if v[i] ~= fill + i or v[2 * n * w + i] ~= fill + 2 * n * w + i then ok = false end
  end
  C.check(ok, what .. ": wrote outside its tensor")
end

local u = C.lcg(11)
local function values(n)
  local v = {}
  for i = 1, n do v[i] = math.floor(u() * 64) - 32 end
  return v
end

local function same(got, want, what)
  local ok = #got == #want
  for i = 1, #want do
    if got[i] ~= want[i] then
      ok = false
      print(string.format("  %s: [%d] %s, want %s", what, i - 1, got[i], want[i]))
      break
    end
  end
  C.check(ok, what)
end

-- element j (0-based) of x, 0 past either end
local function at(x, n, j) return (j >= 0 and j < n) and x[j + 1] or 0 end

-- element j of each kernel's y (B: its block's size; y0: y before)
local ref = {}
function ref.neighbours(x, n, j) return at(x, n, j - 1) + 2 * at(x, n, j) + 4 * at(x, n, j + 1) end
function ref.forms(x, n, j)
  local s = at(x, n, n - 1 - j) + 0.5 * at(x, n, 2 * j)
  s = s + 0.25 * at(x, n, j // 2) + 0.125 * at(x, n, j % 5)
  s = s + 3 * at(x, n, (j >> 1) << 1) + 5 * at(x, n, j & 7)
  s = s + 7 * at(x, n, math.min(j + 3, n)) + 11 * at(x, n, math.max(j - 3, 0))
  return s + 13 * at(x, n, j > 5 and j - 6 or j + 6) + 17 * at(x, n, j)
end
function ref.window(x, n, j)
  local s = 0
  for k = 0, math.min(j, 3) do s = s + at(x, n, j - k) end
  for k = 0, 3 do s = s + 0.5 * at(x, n, j - k) end
  return s
end
-- (the tile holds x[i0 .. i0 + B), zeros past N)
function ref.tile(x, n, j, B)
  return j % B < B - 1 and at(x, n, j) * 10 + at(x, n, j + 1) + at(x, n, j) * 100 or -1
end
function ref.past(x, n, j, B)
  return at(x, n, j) + 10 * (j % B + 1 < B and at(x, n, j + 1) or 0)
end
function ref.guards(x, n, j) return 100 * at(x, n, j + 1) + 1000 * at(x, n, j - 1) end
function ref.exprs(x, n, j, _, y0) return j > 0 and x[j + 1] + 3 * x[j] or y0[1] end
function ref.cancel(x, n, j, B) return at(x, n, j % B - 4) end

for _, B in ipairs{16, 5} do
  for _, n in ipairs{48, 45, 16, 3} do
    for _, k in ipairs{"neighbours", "forms", "window", "tile", "past", "guards", "exprs",
                       "cancel"} do
      local xv, yv = values(n), values(n)
      local xbig, x = framed(n, 1, xv, 1000)
      local ybig, y = framed(n, 1, yv, -5000)
      x = x:reshape{n}
      y = y:reshape{n}
      ts.kernel(file, k, {B = B}, cpu):launch{x, y}
      local what = string.format("%s B %d N %d", k, B, n)
      local want = {}
      for j = 0, n - 1 do want[j + 1] = ref[k](xv, n, j, B, yv) end
      same(y:to_table(), want, what)
      frame_kept(ybig, n, 1, -5000, what)
      frame_kept(xbig, n, 1, 1000, what .. " (x)")
    end
  end
end

-- 2-d: a column ahead reads the next row's first element if let through
for _, shape in ipairs{{8, 16}, {7, 13}, {4, 8}} do
  local R, Cn = shape[1], shape[2]
  local xv = values(R * Cn)
  local _, x = framed(R, Cn, xv, 1000)
  local ybig, y = framed(R, Cn, values(R * Cn), -5000)
  ts.kernel(file, "grid2", {}, cpu):launch{x, y}
  local want = {}
  for r = 0, R - 1 do
    for c = 0, Cn - 1 do
      local nxt = c + 1 < Cn and xv[r * Cn + c + 2] or 0
      want[r * Cn + c + 1] = nxt - xv[r * Cn + c + 1]
    end
  end
  local what = string.format("grid2 %d x %d", R, Cn)
  same(y:to_table(), want, what)
  frame_kept(ybig, R, Cn, -5000, what)
end

-- a gather: its loaded indices (some past either end) stay checked
for _, n in ipairs{48, 45} do
  local xv = values(n)
  local _, x = framed(n, 1, xv, 1000)
  x = x:reshape{n}
  local iv = {}
  for j = 1, n do iv[j] = (j * 7) % (n + 10) - 5 end
  local idx = ts.tensor("i64", {n}, iv, cpu)
  local y = ts.tensor("f32", {n}, nil, cpu)
  ts.kernel(file, "gather", {}, cpu):launch{x, idx, y}
  local want = {}
  for j = 0, n - 1 do want[j + 1] = at(xv, n, iv[j + 1]) + 0.5 * xv[j + 1] end
  same(y:to_table(), want, "gather N " .. n)
end

C.finish()
