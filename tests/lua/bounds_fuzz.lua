-- bounds_fuzz.lua - random index expressions through the CPU's bounds
-- pass (compiler/gen_bounds.c), which runs a parallel statement's element
-- accesses unchecked where interval arithmetic proves them inside. Each
-- seeded kernel has six parallel statements; each makes one access at a
-- random index (an x read, an x read in a loop, the tile read, a y write,
-- an x read into a tile a reduce then sums: the CPU runs that pair fused)
-- besides its row of z, the first four maybe under an `if` comparing the
-- index or a part of it; an index is mostly the statement's own (j, or i for the tile)
-- plus one or two operations with constants over i, a `let` or the loop's
-- index (+ - * / % >> << &, min, max, select, unary minus, the first
-- mostly shifting the range across 0), else any expression of the names
-- in scope. They run on sizes where blocks lie inside and where they pass
-- either end (blocks of 2 to 16), against a plain Lua reference of the
-- language's rules (i64 arithmetic, / and % truncating, >> arithmetic; out
-- of range reads 0 and writes nothing). Each tensor lies in the middle of
-- one three times its size filled with other values, so an access let
-- through unchecked out of range reads a wrong value or writes over them.
-- Nine unsound changes to the pass (a bound one off or a corner dropped:
-- + - * << >> % & and the if's facts, both sides) each fail it at the
-- default seed and count. A failure prints the kernel.
-- arg[1]: the seed (default 1), arg[2]: how many kernels (default 120).
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local seed, count = tonumber(arg[1]) or 1, tonumber(arg[2]) or 120
local rnd = C.lcg(seed)
local cpu = ts.device("cpu")
local function pick(list) return list[math.floor(rnd() * #list) + 1] end

-- i64 division and remainder truncating toward zero, shifts as arith's
local function tdiv(a, b)
  local q = math.abs(a) // math.abs(b)
  return (a < 0) ~= (b < 0) and -q or q
end
local function trem(a, b) return a - tdiv(a, b) * b end
local function shr(a, s) return a // (1 << s) end

-- Expressions: their text and a function of env (the names' values)
-- computing them as the language does.
local function name(v) return {s = v, f = function(env) return env[v] end} end
local function const(c)
  return {s = c < 0 and "(" .. c .. ")" or tostring(c), f = function() return c end}
end
local binary = {["+"] = function(p, q) return p + q end, ["-"] = function(p, q) return p - q end,
                ["*"] = function(p, q) return p * q end, ["/"] = tdiv, ["%"] = trem,
                [">>"] = shr, ["<<"] = function(p, q) return p << q end,
                ["&"] = function(p, q) return p & q end}
local function bin(op, a, b)
  local fn = binary[op]
  return {s = "(" .. a.s .. " " .. op .. " " .. b.s .. ")",
          f = function(e) return fn(a.f(e), b.f(e)) end}
end
local function minmax(op, a, b)
  local m = op == "min" and math.min or math.max
  return {s = op .. "(" .. a.s .. ", " .. b.s .. ")", f = function(e) return m(a.f(e), b.f(e)) end}
end
local function neg(a) return {s = "(-" .. a.s .. ")", f = function(e) return -a.f(e) end} end
local cmps = {
  ["<"] = function(a, b) return a < b end, ["<="] = function(a, b) return a <= b end,
  [">"] = function(a, b) return a > b end, [">="] = function(a, b) return a >= b end,
  ["=="] = function(a, b) return a == b end, ["!="] = function(a, b) return a ~= b end}
local cmp_ops = {"<", "<=", ">", ">=", "==", "!="}
local function compare(op, a, b)
  local f = cmps[op]
  return {s = a.s .. " " .. op .. " " .. b.s, f = function(e) return f(a.f(e), b.f(e)) end}
end
local function choose(c, a, b)
  return {s = "select(" .. c.s .. ", " .. a.s .. ", " .. b.s .. ")",
          f = function(e) if c.f(e) then return a.f(e) end return b.f(e) end}
end

-- A random i64 expression over the names in `vars`, of depth at most
-- `depth`.
local expr
local function leaf(vars)
  if rnd() < 0.7 then return name(pick(vars)) end
  return const(pick{-3, -2, -1, 0, 1, 2, 3, 5, 9})
end
local function cond(vars, depth)
  local a, b, op = expr(vars, depth), expr(vars, depth), pick(cmp_ops)
  return compare(op, a, b)
end
local forms = {
  function(v, d) -- a + b, a - b
    local a, b, op = expr(v, d), expr(v, d), pick{"+", "-"}
    return bin(op, a, b)
  end,
  function(v, d) return bin("*", expr(v, d), expr(v, d)) end,
  function(v, d) -- a / c, a % c
    local a, c, op = expr(v, d), pick{1, 2, 3, 4, 7, -2, -3}, pick{"/", "%"}
    return bin(op, a, const(c))
  end,
  function(v, d) -- a >> c, a << c
    local a, c, op = expr(v, d), pick{0, 1, 2, 3}, pick{">>", "<<"}
    return bin(op, a, const(c))
  end,
  function(v, d) return bin("&", expr(v, d), const(pick{1, 3, 7, 15, 31, -4})) end,
  function(v, d) -- min, max
    local a, b, op = expr(v, d), expr(v, d), pick{"min", "max"}
    return minmax(op, a, b)
  end,
  function(v, d)
    local c, a, b = cond(v, d), expr(v, d), expr(v, d)
    return choose(c, a, b)
  end,
  function(v, d) return neg(expr(v, d)) end,
}
function expr(vars, depth)
  if depth <= 0 or rnd() < 0.35 then return leaf(vars) end
  return pick(forms)(vars, depth - 1)
end
-- op(x, c) or op(c, x) for a random operation and a constant suited to it
-- (divisors and masks mostly positive, shifts 0 .. 3)
local function with_const(x, ops)
  local op = pick(ops or {"+", "-", "*", "/", "%", ">>", "<<", "&", "min", "max", "select", "neg"})
  local c = pick{-4, -3, -2, -1, 0, 1, 2, 3, 5}
  if op == "/" or op == "%" then c = pick{1, 2, 3, 4, 5, -2} end
  if op == ">>" or op == "<<" then c = pick{0, 1, 2, 3} end
  if op == "&" then c = pick{1, 3, 7, -4} end
  local k = const(c)
  local a, b = x, k
  if (op == "+" or op == "-" or op == "*" or op == "min" or op == "max") and rnd() < 0.4 then
    a, b = k, x
  end
  if op == "neg" then return neg(x) end
  if op == "select" then return choose(compare(pick(cmp_ops), x, k), x, k) end
  if op == "min" or op == "max" then return minmax(op, a, b) end
  return bin(op, a, b)
end
-- an index: `own` (j, or i for the tile) plus one or two operations with
-- constants over i (or the let a, or the loop's k), mostly: where a bound
-- one off decides whether the last block reads past the end; else any
-- expression. Also the expressions a guard may compare (an `if` bounds
-- them where they recur in the index): the index, own, the first
-- operation and its operand.
local function index(own, var)
  local r = rnd()
  local o = name(own)
  if r < 0.85 then
    local v = name(var or pick{"i", "i", "i", "a"})
    -- (two: the first mostly shifts the range to straddle 0, where
    -- / % >> * & and select have their signs to get right)
    local d1 = with_const(v, r < 0.6 and rnd() < 0.6 and {"+", "-"} or nil)
    local d = d1
    if r < 0.6 and rnd() < 0.25 then
      -- (times another straddling range: the product's four corners)
      local c = pick{-3, -2, -1, 1, 2}
      local w = {s = "(" .. v.s .. " + (" .. c .. "))", f = function(e) return v.f(e) + c end}
      d = bin("*", d1, w)
    elseif r < 0.6 then
      d = with_const(d1)
    end
    local ix = {s = own .. " + " .. d.s, f = function(e) return o.f(e) + d.f(e) end}
    return ix, {ix, o, d1, v}
  end
  local ix = expr({"i", "j", "i0", "N", "M", "B", "a"}, 3)
  return ix, {ix, o}
end
-- a guard on index e: e against a dim, 0 or a constant, or any comparison
local function guard_on(e)
  if rnd() < 0.3 then return cond({"i", "j", "i0", "N", "M", "B", "a"}, 1) end
  local op = pick(cmp_ops)
  local rhs = pick{name("N"), name("M"), {s = "0", f = function() return 0 end},
                   {s = "N - 1", f = function(v) return v.N - 1 end},
                   {s = "M - 1", f = function(v) return v.M - 1 end}, name("B"),
                   {s = "1", f = function() return 1 end},
                   {s = "N - 2", f = function(v) return v.N - 2 end}}
  return compare(op, e, rhs)
end

-- One parallel statement (number q of its kernel): its text and its
-- reference (e: the names' values; xv, n: x; the tile's origin i0): z[q,
-- j]'s value or nil, y[q, w]'s index and value or nil, and for the
-- reduce's form element i's part of the block's sum. It makes one access
-- of a random index (x read, x read in a loop, the tile read, y written,
-- x read into the reduced tile), the first four maybe under an `if`.
local function statement(q)
  local a = expr({"i", "B", "i0"}, 2)
  local kind = pick{"read", "loop", "tile", "write", "reduce"}
  if kind == "reduce" then
    -- a parallel statement filling a tile that a reduce sums, which the
    -- CPU runs fused (gen_fused_reduce) and versions as one: z[q, i0] =
    -- 9 x the sum of the block's reads
    local ix = index("j")
    local text = table.concat({
      "  parallel (r, i) in (2, B) {",
      "    let j = i0 + i;",
      "    let a = " .. a.s .. ";",
      "    tt[r, i] = x[" .. ix.s .. "] * f32(r + 1);",
      "  }",
      "  reduce_sum(tt, rr, dim=1);",
      "  z[" .. q .. ", i0] = rr[0] + 4.0 * rr[1];"}, "\n")
    return text, function(e, xv, n)
      e.a = a.f(e)
      local p = ix.f(e)
      return nil, nil, nil, (p >= 0 and p < n) and xv[p + 1] or 0
    end
  end
  -- (the loop's count)
  local kk = pick{const(1), const(2), const(3),
                  {s = "min(i, 2) + 1", f = function(e) return math.min(e.i, 2) + 1 end}}
  local ix, parts
  if kind == "tile" then
    ix, parts = index("i")
  elseif kind == "loop" then
    ix, parts = index("j", pick{"i", "k", "k"})
  else
    ix, parts = index("j")
  end
  local guard
  if rnd() < 0.5 then
    -- (on the access's index or a part of it, not one of the loop's k)
    local function target()
      if kind == "loop" or rnd() < 0.2 then return (index("j")) end
      return pick(parts)
    end
    guard = guard_on(target())
    if rnd() < 0.5 then
      local g1, g2 = guard, guard_on(target())
      guard = {s = g1.s .. " && " .. g2.s, f = function(e) return g1.f(e) and g2.f(e) end}
    end
  end
  local body
  if kind == "read" then
    body = {"z[" .. q .. ", j] = x[" .. ix.s .. "];"}
  elseif kind == "loop" then
    body = {"var s = 0.0;", "for k in 0.." .. kk.s .. " {", "  s += x[" .. ix.s .. "];", "}",
            "z[" .. q .. ", j] = s;"}
  elseif kind == "tile" then
    body = {"z[" .. q .. ", j] = t[" .. ix.s .. "];"}
  else
    body = {"y[" .. q .. ", " .. ix.s .. "] = f32(" .. ix.s .. ") + 0.5;"}
  end
  if guard then
    for r = 1, #body do body[r] = "  " .. body[r] end
    table.insert(body, 1, "if " .. guard.s .. " {")
    body[#body + 1] = "}"
  end
  table.insert(body, 1, "let j = i0 + i;")
  table.insert(body, 2, "let a = " .. a.s .. ";")
  for r = 1, #body do body[r] = "    " .. body[r] end
  local text = "  parallel (i) in (B) {\n" .. table.concat(body, "\n") .. "\n  }"
  local function ref(e, xv, n)
    local function at(p) return (p >= 0 and p < n) and xv[p + 1] or 0 end
    e.a = a.f(e)
    if guard and not guard.f(e) then return nil end
    if kind == "read" then return at(ix.f(e)) end
    if kind == "loop" then
      local v = 0
      for k = 0, kk.f(e) - 1 do
        e.k = k
        v = v + at(ix.f(e))
      end
      return v
    end
    if kind == "tile" then
      -- (the tile: x[i0 .. i0 + B), zeros past N)
      local ti = ix.f(e)
      return (ti >= 0 and ti < e.B) and at(e.i0 + ti) or 0
    end
    local w = ix.f(e)
    return nil, w, w + 0.5
  end
  return text, ref
end

-- One kernel of S statements: its text and its reference (x, n, m, B: y,
-- z [S, M] as the kernel leaves them from yv, zv, flat).
local S = 6
local function make(id)
  local texts, refs = {}, {}
  for q = 1, S do texts[q], refs[q] = statement(q - 1) end
  local text = table.concat({
    "kernel fz" .. id .. "(x: f32[N], y: f32[S, M], z: f32[S, M])",
    "  params(B: int = 8)",
    "  grid(ceildiv(M, B))",
    "{",
    "  let i0 = block_id(0) * B;",
    "  frag t: f32[B];",
    "  copy(x[i0:i0 + B], t);",
    "  frag tt: f32[2, B];",
    "  frag rr: f32[2];",
    table.concat(texts, "\n"),
    "}", ""}, "\n")
  local function ref(xv, n, m, B, yv, zv)
    for q = 1, S do
      for i0 = 0, (m + B - 1) // B * B - 1, B do
        local sum
        for i = 0, B - 1 do
          local e = {i = i, j = i0 + i, i0 = i0, N = n, M = m, B = B}
          local zj, w, wv, part = refs[q](e, xv, n)
          if zj and e.j < m then zv[(q - 1) * m + e.j + 1] = zj end
          if w and w >= 0 and w < m then yv[(q - 1) * m + w + 1] = wv end
          if part then sum = (sum or 0) + part end
        end
        if sum then zv[(q - 1) * m + i0 + 1] = 9 * sum end
      end
    end
  end
  return text, ref
end

local function framed(rows, m, vals, fill) return C.framed(rows, m, vals, fill, cpu) end

local function values(n)
  local v = {}
  for i = 1, n do v[i] = math.floor(rnd() * 64) - 32 end
  return v
end

local path = os.tmpname() .. ".tile"
local bad = 0
-- kernel id's text and reference; one that the checker refuses (a tile
-- index it finds out of range at every index: a constant) made again
local function compiled(id)
  for _ = 1, 20 do
    local text, ref = make(id)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    local ok, err = true, nil
    for _, B in ipairs{2, 3, 4, 8, 16} do
      if ok then ok, err = pcall(ts.kernel, path, "fz" .. id, {B = B}, cpu) end
    end
    if ok then return text, ref end
    if not tostring(err):find("is out of range for a dim") then error(err) end
  end
  error("no kernel the checker takes in 20 tries")
end

for id = 1, count do
  local text, ref = compiled(id)
  local ok_all = true
  for _, sz in ipairs{{40, 40, 8}, {37, 40, 8}, {48, 40, 8}, {16, 16, 16}, {64, 61, 16},
                     {5, 16, 8}, {3, 4, 4}, {20, 20, 4}, {13, 12, 4}, {11, 12, 3},
                     {9, 8, 2}} do
    local n, m, B = sz[1], sz[2], sz[3]
    local xv, yv, zv = values(n), values(S * m), values(S * m)
    local xbig, x, wx = framed(1, n, xv, 1000)
    local ybig, y = framed(S, m, yv, -5000)
    local zbig, z = framed(S, m, zv, 9000)
    ts.kernel(path, "fz" .. id, {B = B}, cpu):launch{x:reshape{n}, y, z}
    ref(xv, n, m, B, yv, zv)
    local _, _, wy = framed(S, m, yv, -5000)
    local _, _, wz = framed(S, m, zv, 9000)
    for name, pair in pairs{y = {ybig, wy}, z = {zbig, wz}, x = {xbig, wx}} do
      local got, want, w = pair[1]:to_table(), pair[2], pair[1]:shape(2)
      for i = 1, #want do
        if got[i] ~= want[i] then
          print(string.format("fz%d N %d M %d B %d: %s's [%d, %d] (its rows framed by as " ..
                              "many above and below) is %s, want %s", id, n, m, B, name,
                              (i - 1) // w, (i - 1) % w, got[i], want[i]))
          ok_all = false
          break
        end
      end
    end
  end
  if not ok_all then
    bad = bad + 1
    print(text)
  end
  C.check(ok_all, "kernel fz" .. id)
end
os.remove(path)
print(string.format("%d random kernels of %d statements (seed %d), %d wrong", count, S, seed,
                    bad))
C.finish()
