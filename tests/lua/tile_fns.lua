-- tile_fns.lua - tile functions (docs/language.md "Tile functions"): the
-- kernel `with_fns` of tests/lua/tile_fns.tile, built from four tile
-- functions (one inlined twice, one calling another; tensor, frag, shared
-- and scalar parameters; shape names bound to constants and to a dim),
-- gives the same bits as `by_hand`, the same statements written out, and
-- both agree with a plain reference; on odd row counts (tail blocks), at two
-- block sizes, on the CPU and the GPU simulator (run again with
-- TESSERA_GPU_LOWERING=cuda for the CUDA C lowering). `typed_fns`, made of
-- tile functions with dtype parameters, against `typed_by_hand` and the
-- reference for each pair of its kernel's dtype params; `view_fns`, whose
-- tile functions take views of tensors (`q[t, :, :]`), passed on to a
-- nested call, against `view_by_hand` and the reference; `result_fns`, whose
-- tile functions return values (a let and a var of them, one in a type the
-- call names, one through a nested call), against `result_by_hand`;
-- `expr_fns`, whose results stand inside expressions (a value, conditions,
-- an else-if's computed only where it is evaluated, a loop bound, an
-- argument, a return), against `expr_by_hand`.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/tile_fns.tile"
local u = C.lcg(5)
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  for _, n in ipairs{13, 40} do
    local xv, zv = {}, {}
    for i = 1, n * 48 do xv[i] = u() * 2 - 1; zv[i] = u() * 2 - 1 end
    -- the reference, in f64
    local yr, wr = {}, {}
    for r = 0, n - 1 do
      local sx, sz = 0, 0
      for j = 0, 47 do sx = sx + xv[r * 48 + j + 1]; sz = sz + zv[r * 48 + j + 1] end
      yr[r + 1] = 2 * sx + 0.5 * sz
      for j = 0, 47 do wr[r * 48 + j + 1] = xv[r * 48 + j + 1] * yr[r + 1] end
    end
    for _, bm in ipairs{4, 8} do
      local x = ts.tensor("f32", {n, 48}, xv):copy_to(dev)
      local z = ts.tensor("f32", {n, 48}, zv):copy_to(dev)
      local out = {}
      for _, k in ipairs{"with_fns", "by_hand"} do
        local y = ts.tensor("f32", {n}, nil, dev)
        local w = ts.tensor("f32", {n, 48}, nil, dev)
        ts.kernel(file, k, {BM = bm}, dev):launch{x, z, y, w}
        out[k] = {y = y:to_table(), w = w:to_table()}
      end
      local what = string.format("%s N %d BM %d", name, n, bm)
      local a, b = out.with_fns, out.by_hand
      C.check(C.same(a.y, b.y) and C.same(a.w, b.w),
              what .. ": with_fns differs from by_hand")
      C.check(C.relerr(a.y, yr) < 1e-5, what .. ": y against the reference")
      C.check(C.relerr(a.w, wr) < 1e-5, what .. ": w against the reference")
    end
  end
end

-- Runs NAME_fns and NAME_by_hand (an input x, an output y of dtype dt and
-- shape, params) on dev, checks that they agree bit for bit and returns
-- NAME_fns's y.
local function pair(name, what, dev, x, dt, shape, params)
  local out = {}
  for _, k in ipairs{name .. "_fns", name .. "_by_hand"} do
    local y = ts.tensor(dt, shape, nil, dev)
    ts.kernel(file, k, params, dev):launch{x, y}
    out[#out + 1] = y:to_table()
  end
  C.check(C.same(out[1], out[2]), what .. ": " .. name .. "_fns differs from " .. name ..
          "_by_hand")
  return out[1]
end

-- y = YT(bf16(x) * 0.5), rounded through tensors of those dtypes
local function rounded(dt, v) return ts.tensor(dt, {#v}, v):to_table() end
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  for _, n in ipairs{13, 40} do
    local xv = {}
    for i = 1, n * 24 do xv[i] = (u() * 2 - 1) * 3 end
    for _, xt in ipairs{"f32", "bf16"} do
      for _, yt in ipairs{"bf16", "f32"} do
        local xr = rounded(xt, xv)
        local yr = rounded(yt, rounded("bf16", xr))
        for i = 1, #yr do yr[i] = yr[i] * 0.5 end
        yr = rounded(yt, yr)
        local x = ts.tensor(xt, {n, 24}, xv):copy_to(dev)
        local what = string.format("%s N %d XT %s YT %s", name, n, xt, yt)
        local y = pair("typed", what, dev, x, yt, {n, 24}, {XT = xt, YT = yt, BM = 8})
        C.check(C.same(y, yr), what .. ": typed_fns against the reference")
      end
    end
  end
end

-- y[t, h] = 2 sum_c q[t, h, c] + q[t, h, 0]
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  for _, n in ipairs{5, 13} do
    local qv = {}
    for i = 1, n * 4 * 24 do qv[i] = u() * 2 - 1 end
    local yr = {}
    for r = 0, n * 4 - 1 do
      local sum = 0
      for c = 0, 23 do sum = sum + qv[r * 24 + c + 1] end
      yr[r + 1] = 2 * sum + qv[r * 24 + 1]
    end
    local q = ts.tensor("f32", {n, 4, 24}, qv):copy_to(dev)
    local what = string.format("%s T %d", name, n)
    local y = pair("view", what, dev, q, "f32", {n, 4}, {})
    C.check(C.relerr(y, yr) < 1e-5, what .. ": view_fns against the reference")
  end
end

-- y[r] = 2 max |x[r, :]| + bf16(max |x[r, :]|)
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  for _, n in ipairs{5, 13} do
    local xv = {}
    for i = 1, n * 24 do xv[i] = C.f32((u() * 2 - 1) * 3) end
    local mx = {}
    for r = 1, n do
      local m = 0
      for j = 1, 24 do m = math.max(m, math.abs(xv[(r - 1) * 24 + j])) end
      mx[r] = m
    end
    local mb = rounded("bf16", mx)
    local yr = {}
    for r = 1, n do yr[r] = 2 * mx[r] + mb[r] end
    yr = rounded("f32", yr)
    local x = ts.tensor("f32", {n, 24}, xv):copy_to(dev)
    local what = string.format("%s N %d", name, n)
    local y = pair("result", what, dev, x, "f32", {n}, {})
    C.check(C.same(y, yr), what .. ": result_fns against the reference")
  end
end

-- results inside expressions: expr_fns against expr_by_hand (y and c bit
-- for bit) and the reference; c[r] is written only by rows whose if's
-- condition is false (the else-if's call computed there, not before)
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  for _, n in ipairs{5, 13} do
    local xv = {}
    for i = 1, n * 24 do xv[i] = C.f32((u() * 2 - 1) * 3) end
    local yr, cr = {}, {}
    for r = 1, n do
      local m, k = 0, 0
      for j = 1, 24 do
        local a = math.abs(xv[(r - 1) * 24 + j])
        m = math.max(m, a)
        if a > 2 then k = k + 1 end
      end
      local s = 2 * m + rounded("bf16", {m})[1]
      s = s + (m > 2.5 and 1 or -1) + 0.25 * k + (2 * m - 1) * xv[(r - 1) * 24 + 1]
      yr[r], cr[r] = s, m > 2.5 and 0 or 1
    end
    local what = string.format("%s N %d", name, n)
    local out = {}
    for _, k in ipairs{"expr_fns", "expr_by_hand"} do
      local x = ts.tensor("f32", {n, 24}, xv):copy_to(dev)
      local c, y = ts.tensor("i32", {n}, nil, dev), ts.tensor("f32", {n}, nil, dev)
      ts.kernel(file, k, {}, dev):launch{x, c, y}
      out[#out + 1] = {y = y:to_table(), c = c:to_table()}
    end
    C.check(C.same(out[1].y, out[2].y) and C.same(out[1].c, out[2].c),
            what .. ": expr_fns gives expr_by_hand's bits")
    C.check(C.relerr(out[1].y, yr) < 1e-5 and C.same(out[1].c, cr),
            what .. ": expr_fns against the reference (c: the rows of the else-if)")
  end
end
C.finish()
