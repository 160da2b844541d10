-- fused_norms.lua - the kernels that fuse a norm into its neighbour
-- against the launches they replace and a plain Lua reference:
-- rope.tile head_norm_rope (each head's RMSNorm times a weight, then rope)
-- equal bit for bit to head_rmsnorm + rope (weight ones: the queries) and
-- to rmsnorm_f32 + rope (one head, kv_norm's weight: the KV rows), on odd
-- shapes (3 heads of 70 dims, 8 rope pairs), positions 0 .. P - 1; bf16
-- within its rounding of the reference. mhc.tile hc_pre_fused with NORM
-- (mHC's pre and the sub-layer's RMSNorm) equal bit for bit to
-- hc_pre_fused + rmsnorm_f32; sparse_attn.tile sparse_attn_merge with
-- ROPE equal bit for bit to the merge + rope's inverse; hadamard.tile
-- rope_hadamard to rope + hadamard; rope.tile kv_norm_rope_pack to
-- head_norm_rope + quant.tile kv_pack. On the CPU and the GPU simulator
-- (tests/CMakeLists.txt runs it again in the CUDA C lowering).
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check

local function kern(file, name, params, d) return ts.kernel("kernels/" .. file, name, params, d) end

-- The reference in doubles: x [T, H, D] flat, w [D], tab [P, HALF, 2] flat.
local function want_norm_rope(x, w, tab, pos, T, H, D, HALF, eps)
  local y, base = {}, D - 2 * HALF
  for t = 0, T - 1 do
    for h = 0, H - 1 do
      local o, ss = (t * H + h) * D, 0
      for j = 1, D do ss = ss + x[o + j] ^ 2 end
      local r = 1 / math.sqrt(ss / D + eps)
      for j = 1, D do y[o + j] = w[j] * x[o + j] * r end
      for i = 0, HALF - 1 do
        local j = o + base + 2 * i + 1
        local c, s = tab[(pos[t + 1] * HALF + i) * 2 + 1], tab[(pos[t + 1] * HALF + i) * 2 + 2]
        local a, b = y[j], y[j + 1]
        y[j], y[j + 1] = a * c - b * s, a * s + b * c
      end
    end
  end
  return y
end

-- A rope table [P, HALF, 2] (base 10000) and positions [T] on device d:
-- (t * step + 1) mod P, the first 0 and the last P - 1; also their values.
local function rope_inputs(T, P, HALF, step, d)
  local tabv, posv = {}, {}
  for p = 0, P - 1 do
    for i = 0, HALF - 1 do
      local a = p * 10000.0 ^ (-2 * i / (2 * HALF))
      tabv[#tabv + 1], tabv[#tabv + 2] = C.f32(math.cos(a)), C.f32(math.sin(a))
    end
  end
  for t = 1, T do posv[t] = (t * step + 1) % P end
  posv[1], posv[T] = 0, P - 1
  return ts.tensor("f32", {P, HALF, 2}, tabv, d), ts.tensor("i32", {T}, posv, d), tabv, posv
end

local F32 = {XT = "f32"}
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{1, 4, 128, 32, 300}, {5, 3, 70, 8, 9}, {3, 1, 512, 32, 40},
                        {2, 64, 128, 32, 7}, {4, 1, 130, 16, 5}} do
    local T, H, D, HALF, P = table.unpack(case)
    local what = string.format("%s T %d H %d D %d HALF %d", dev, T, H, D, HALF)
    local xv, wv = C.spread(T * H * D, 11 + T, 3.0), C.spread(D, 5 + D, 1.5)
    local ones = {}
    for j = 1, D do ones[j] = 1.0 end
    local tab, pos, tabv, posv = rope_inputs(T, P, HALF, 7, d)
    local x = ts.tensor("f32", {T, H, D}, xv, d)
    local function fused(w, xt)
      local xi = xt and x:cast(xt) or x
      local y = ts.empty(xt or "f32", {T, H, D}, d)
      kern("rope.tile", "head_norm_rope", {XT = xt or "f32"}, d)
        :launch{xi, ts.tensor("f32", {D}, w, d), tab, pos, y}
      return y
    end
    -- the queries: head_rmsnorm + rope
    local n = ts.empty("f32", {T, H, D}, d)
    kern("rmsnorm.tile", "head_rmsnorm", F32, d):launch{x, n}
    local two = ts.empty("f32", {T, H, D}, d)
    kern("rope.tile", "rope", F32, d):launch{n, tab, pos, two}
    local got = fused(ones):to_table()
    local nd, total = C.differ({got}, {two:to_table()})
    check(nd == 0, string.format("%s: ones == head_rmsnorm + rope (%d of %d differ)", what, nd,
                                 total))
    check(C.relerr(got, want_norm_rope(xv, ones, tabv, posv, T, H, D, HALF, 1e-6)) < 1e-6,
          what .. ": ones against the reference")
    -- weighted: rmsnorm_f32 over the T H rows + rope
    local nw = ts.empty("f32", {T * H, D}, d)
    kern("rmsnorm.tile", "rmsnorm_f32", {}, d)
      :launch{x:reshape{T * H, D}, ts.tensor("f32", {D}, wv, d), nw}
    kern("rope.tile", "rope", F32, d):launch{nw:reshape{T, H, D}, tab, pos, two}
    got = fused(wv):to_table()
    nd = C.differ({got}, {two:to_table()})
    check(nd == 0, string.format("%s: weighted == rmsnorm_f32 + rope (%d of %d differ)", what,
                                 nd, total))
    local want = want_norm_rope(xv, wv, tabv, posv, T, H, D, HALF, 1e-6)
    check(C.relerr(got, want) < 1e-6, what .. ": weighted against the reference")
    -- bf16 in and out (f32 inside): within bf16's rounding
    local g16 = fused(wv, "bf16"):cast("f32"):to_table()
    local xr = x:cast("bf16"):cast("f32"):to_table()
    check(C.relerr(g16, want_norm_rope(xr, wv, tabv, posv, T, H, D, HALF, 1e-6)) < 2 ^ -8,
          what .. ": bf16 against the reference")
    -- f32 in, bf16 out (the bf16 attention's queries): the bits of the
    -- f32 result converted by convert_rows
    local q16 = ts.empty("bf16", {T, H, D}, d)
    kern("rope.tile", "head_norm_rope", {XT = "f32", YT = "bf16"}, d)
      :launch{x, ts.tensor("f32", {D}, wv, d), tab, pos, q16}
    local c16 = ts.empty("bf16", {T * H, D}, d)
    kern("embed.tile", "convert_rows", {XT = "f32", YT = "bf16"}, d)
      :launch{ts.tensor("f32", {T * H, D}, got, d), c16}
    nd = C.differ({q16:cast("f32"):to_table()}, {c16:cast("f32"):to_table()})
    check(nd == 0, string.format("%s: YT bf16 == f32 + convert_rows (%d of %d differ)", what,
                                 nd, total))
  end
end

-- mhc.tile hc_pre_fused with NORM (the model's decode form): pre, post,
-- comb and the normalised u equal bit for bit to hc_pre_fused (one token
-- a block, and the GPU's 16, d in blocks) + rmsnorm_f32; DM 37, 96, 256,
-- 1-5 tokens, slices of 25 (with the sum of squares) and 24 (finished)
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{1, 256, 25, 2}, {3, 37, 25, 3}, {5, 96, 24, 1}, {2, 256, 24, 1}} do
    local T, DM, NP, KS = table.unpack(case)
    local what = string.format("%s hc_pre_fused NORM T %d DM %d NP %d", dev, T, DM, NP)
    local pv = C.spread(KS * T * NP, 3 + DM, 2.0)
    if NP == 25 then -- sums of squares are positive
      for i = 25, #pv, 25 do pv[i] = math.abs(pv[i]) * 40 end
    end
    local part = ts.tensor("f32", {KS, T, NP}, pv, d)
    local x = ts.tensor("f32", {T, 4, DM}, C.spread(T * 4 * DM, 4 + T, 2.0), d)
    local sc = ts.tensor("f32", {3}, {0.5, 0.7, 0.9}, d)
    local bs = ts.tensor("f32", {24}, C.spread(24, 5, 1.0), d)
    local wv = C.spread(DM, 6 + DM, 1.0)
    local w = ts.tensor("f32", {DM}, wv, d)
    local function run(p)
      local o = {ts.empty("f32", {T, 4}, d), ts.empty("f32", {T, 4}, d),
                 ts.empty("f32", {T, 4, 4}, d), ts.empty("f32", {T, DM}, d)}
      kern("mhc.tile", "hc_pre_fused", p, d):launch{part, x, sc, bs, w, o[1], o[2], o[3], o[4]}
      return o
    end
    local fused = run{BT = 1, BD = DM, NORM = true}
    local fv = fused[4]:to_table()
    for _, form in ipairs{{BT = 1}, {BT = 16, BD = 32}} do
      local two = run(form)
      local y = ts.empty("f32", {T, DM}, d)
      kern("rmsnorm.tile", "rmsnorm_f32", {}, d):launch{two[4], w, y}
      local nd, total = C.differ({fused[1]:to_table(), fused[2]:to_table(), fused[3]:to_table(),
                                  fv}, {two[1]:to_table(), two[2]:to_table(),
                                        two[3]:to_table(), y:to_table()})
      check(nd == 0, string.format("%s == BT %d + rmsnorm_f32 (%d of %d differ)", what, form.BT,
                                   nd, total))
    end
    -- u against the gates: sum_j pre_j x_j, normalised, times w (doubles)
    local pre, xv, want = fused[1]:to_table(), x:to_table(), {}
    for t = 0, T - 1 do
      local ss, u = 0, {}
      for j = 1, DM do
        local v = 0
        for s = 0, 3 do v = v + pre[t * 4 + s + 1] * xv[(t * 4 + s) * DM + j] end
        u[j], ss = v, ss + v * v
      end
      for j = 1, DM do want[t * DM + j] = wv[j] * u[j] / math.sqrt(ss / DM + 1e-6) end
    end
    check(C.relerr(fv, want) < 1e-6, what .. ": u against the reference")
  end
end
-- sparse_attn.tile sparse_attn_merge with ROPE (the attention output's
-- inverse rope in the merge) equal bit for bit to the merge (OT f32) then
-- rope.tile rope with INVERSE: 1-3 ranges (one with no valid entry), 3
-- heads of 70 dims and 8 pairs, 2 of 128 and 32; bf16 output within its
-- rounding of that
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{2, 3, 3, 70, 8, 9}, {1, 1, 2, 128, 32, 300}, {4, 2, 1, 64, 4, 5}} do
    local T, P, H, CD, HALF, TP = table.unpack(case)
    local what = string.format("%s merge ROPE T %d P %d H %d C %d HALF %d", dev, T, P, H, CD, HALF)
    local r = C.lcg(CD + P)
    local mv, lv = {}, {}
    for i = 1, T * P * H do
      mv[i] = i == 2 and -math.huge or r() * 4 - 2 -- range 1 of head 1: no valid entry
      lv[i] = r() * 3 + 0.1
    end
    local po = ts.tensor("f32", {T, P, H, CD}, C.spread(T * P * H * CD, 21 + CD, 2.0), d)
    local pm, pl = ts.tensor("f32", {T, P, H}, mv, d), ts.tensor("f32", {T, P, H}, lv, d)
    local sink = ts.tensor("f32", {H}, C.spread(H, 22, 1.0), d)
    local tab, pos = rope_inputs(T, TP, HALF, 5, d)
    local function merge(params, dt)
      local o = ts.empty(dt, {T, H, CD}, d)
      kern("sparse_attn.tile", "sparse_attn_merge", params, d):launch{po, pm, pl, sink, tab, pos, o}
      return o
    end
    local two = ts.empty("f32", {T, H, CD}, d)
    kern("rope.tile", "rope", {XT = "f32", INVERSE = true}, d)
      :launch{merge({OT = "f32"}, "f32"), tab, pos, two}
    local want = two:to_table()
    local nd, total = C.differ({merge({OT = "f32", ROPE = true}, "f32"):to_table()}, {want})
    check(nd == 0, string.format("%s == merge + inverse rope (%d of %d differ)", what, nd, total))
    local g16 = merge({ROPE = true}, "bf16"):cast("f32"):to_table()
    check(C.relerr(g16, want) < 2 ^ -8, what .. ": bf16 within its rounding")
  end
end
do -- ROPE's positions are one a query
  local d = ts.device("cpu")
  local k = kern("sparse_attn.tile", "sparse_attn_merge", {OT = "f32", ROPE = true}, d)
  local ok, err = pcall(k.launch, k, {
    ts.tensor("f32", {2, 1, 1, 8}, nil, d), ts.tensor("f32", {2, 1, 1}, nil, d),
    ts.tensor("f32", {2, 1, 1}, nil, d), ts.tensor("f32", {1}, nil, d),
    ts.tensor("f32", {4, 2, 2}, nil, d), ts.tensor("i32", {1}, nil, d),
    ts.empty("f32", {2, 1, 8}, d)})
  check(not ok and tostring(err):find("ROPE takes pos") ~= nil,
        "ROPE with one position for 2 queries refused: " .. tostring(err))
end
-- hadamard.tile rope_hadamard (the indexer's queries) equal bit for bit to
-- rope + hadamard (XT f32), within 1e-6 of a double reference; bf16
-- within its rounding; 1, 3 and 64 heads, 8 and 32 rope pairs
local function want_hadamard(v)
  local a = table.move(v, 1, 128, 1, {})
  local h = 1
  while h < 128 do
    local b = {}
    for j = 0, 127 do
      local p = a[(j ~ h) + 1]
      b[j + 1] = (j & h) == 0 and a[j + 1] + p or p - a[j + 1]
    end
    a, h = b, h * 2
  end
  for j = 1, 128 do a[j] = a[j] / math.sqrt(128) end
  return a
end
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{3, 3, 8, 11}, {1, 64, 32, 300}, {2, 1, 32, 4}} do
    local T, H, HALF, P = table.unpack(case)
    local what = string.format("%s rope_hadamard T %d H %d HALF %d", dev, T, H, HALF)
    local xv = C.spread(T * H * 128, 31 + H, 3.0)
    local tab, pos = rope_inputs(T, P, HALF, 3, d)
    local x = ts.tensor("f32", {T, H, 128}, xv, d)
    local function fused(xt)
      local y = ts.empty(xt, {T, H, 128}, d)
      kern("hadamard.tile", "rope_hadamard", {XT = xt}, d)
        :launch{xt == "f32" and x or x:cast(xt), tab, pos, y}
      return y
    end
    local r = ts.empty("f32", {T, H, 128}, d)
    kern("rope.tile", "rope", F32, d):launch{x, tab, pos, r}
    local two = ts.empty("f32", {T * H, 128}, d)
    kern("hadamard.tile", "hadamard", F32, d):launch{r:reshape{T * H, 128}, two}
    local got = fused("f32"):to_table()
    local nd, total = C.differ({got}, {two:to_table()})
    check(nd == 0, string.format("%s == rope + hadamard (%d of %d differ)", what, nd, total))
    -- the reference: rope's rows transformed in doubles
    local roped, want = r:to_table(), {}
    for row = 0, T * H - 1 do
      local hv = want_hadamard(table.move(roped, row * 128 + 1, row * 128 + 128, 1, {}))
      for j = 1, 128 do want[row * 128 + j] = hv[j] end
    end
    check(C.relerr(got, want) < 1e-6, what .. ": against the reference")
    check(C.relerr(fused("bf16"):cast("f32"):to_table(), want) < 2 ^ -7,
          what .. ": bf16 within its rounding")
    -- rope_hadamard_fp4 (the "fp8" format's queries): the bytes fp4_pack
    -- makes of rope_hadamard's f32 rows, into rows of a wider tensor's
    -- slice (a head of zeros: the smallest scale)
    for j = 1, 128 do xv[j] = 0 end
    local xz = ts.tensor("f32", {T, H, 128}, xv, d)
    local y = ts.empty("f32", {T, H, 128}, d)
    kern("hadamard.tile", "rope_hadamard", F32, d):launch{xz, tab, pos, y}
    local packed = ts.empty("i8", {T * H, 68}, d)
    kern("quant.tile", "fp4_pack", nil, d):launch{y:reshape{T * H, 128}, packed}
    local wide = ts.tensor("i8", {T + 2, H, 68}, nil, d)
    kern("hadamard.tile", "rope_hadamard_fp4", nil, d):launch{xz, tab, pos, wide:slice(0, 1, T)}
    local gb, wb = wide:slice(0, 1, T):to_table(), packed:to_table()
    local nb = 0
    for i = 1, #wb do
      if gb[i] ~= wb[i] then nb = nb + 1 end
    end
    check(#gb == #wb and nb == 0,
          string.format("%s: rope_hadamard_fp4 == rope_hadamard + fp4_pack (%d of %d bytes differ)",
                        what, nb, #wb))
    local rest = wide:slice(0, 0, 1):to_table()
    for _, b in ipairs(wide:slice(0, T + 1, 1):to_table()) do rest[#rest + 1] = b end
    local untouched = true
    for _, b in ipairs(rest) do untouched = untouched and b == 0 end
    check(untouched, what .. ": rope_hadamard_fp4 writes its rows only")
  end
end
do -- heads of 128 only
  local d = ts.device("cpu")
  local k = kern("hadamard.tile", "rope_hadamard", F32, d)
  local ok, err = pcall(k.launch, k, {ts.tensor("f32", {1, 2, 64}, nil, d),
                                      ts.tensor("f32", {4, 4, 2}, nil, d),
                                      ts.tensor("i32", {1}, {0}, d), ts.empty("f32", {1, 2, 64}, d)})
  check(not ok, "rope_hadamard of heads of 64 refused: " .. tostring(err))
  local k4 = kern("hadamard.tile", "rope_hadamard_fp4", nil, d)
  local ok4, err4 = pcall(k4.launch, k4, {ts.tensor("f32", {1, 2, 128}, nil, d),
                                          ts.tensor("f32", {4, 4, 2}, nil, d),
                                          ts.tensor("i32", {1}, {0}, d),
                                          ts.empty("i8", {1, 2, 64}, d)})
  check(not ok4 and tostring(err4):find("64 %+ 128 / B bytes") ~= nil,
        "rope_hadamard_fp4 into rows of 64 bytes refused: " .. tostring(err4))
end
do -- NORM is one token a block
  local d = ts.device("cpu")
  local k = kern("mhc.tile", "hc_pre_fused", {BT = 4, BD = 64, NORM = true}, d)
  local ok, err = pcall(k.launch, k, {
    ts.tensor("f32", {1, 2, 25}, nil, d), ts.tensor("f32", {2, 4, 64}, nil, d),
    ts.tensor("f32", {3}, nil, d), ts.tensor("f32", {24}, nil, d), ts.tensor("f32", {64}, nil, d),
    ts.empty("f32", {2, 4}, d), ts.empty("f32", {2, 4}, d), ts.empty("f32", {2, 4, 4}, d),
    ts.empty("f32", {2, 64}, d)})
  check(not ok and tostring(err):find("one token a block") ~= nil,
        "NORM with BT 4 refused: " .. tostring(err))
end

-- rope.tile kv_norm_rope_pack (a decode step's KV row normed, roped and
-- stored in the "fp8" cache's bytes): the bytes equal bit for bit those
-- kv_pack writes of head_norm_rope's f32 rows, V4's 448 + 64 dims (1-3
-- rows), odd widths (2 blocks of 32 + 16 rope dims, padding bytes after
-- the scales), written into rows of a larger cache; a row of several
-- heads, of dims no whole number of blocks, or too few bytes refused
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{1, 512, 32, 64, 584, 300}, {3, 512, 32, 64, 584, 40},
                        {2, 80, 8, 32, 104, 9}} do
    local T, D, HALF, B, E, P = table.unpack(case)
    local what = string.format("%s kv_norm_rope_pack T %d D %d HALF %d B %d E %d", dev, T, D,
                               HALF, B, E)
    local tab, pos = rope_inputs(T, P, HALF, 5, d)
    local x = ts.tensor("f32", {T, 1, D}, C.spread(T * D, 17 + T, 4.0), d)
    local w = ts.tensor("f32", {D}, C.spread(D, 3 + D, 1.5), d)
    local y = ts.empty("f32", {T, 1, D}, d)
    kern("rope.tile", "head_norm_rope", F32, d):launch{x, w, tab, pos, y}
    local want = ts.tensor("i8", {T + 2, E}, nil, d)
    kern("quant.tile", "kv_pack", {ROPE = 2 * HALF, B = B}, d)
      :launch{y:reshape{T, D}, want:slice(0, 1, T)}
    local got = ts.tensor("i8", {T + 2, E}, nil, d)
    kern("rope.tile", "kv_norm_rope_pack", {B = B}, d):launch{x, w, tab, pos, got:slice(0, 1, T)}
    local nd, total = C.differ({got:to_table()}, {want:to_table()})
    check(nd == 0, string.format("%s: == head_norm_rope + kv_pack (%d of %d bytes differ)",
                                 what, nd, total))
  end
  local k = kern("rope.tile", "kv_norm_rope_pack", {}, d)
  local tab, pos = rope_inputs(1, 4, 32, 1, d)
  for _, bad in ipairs{{2, 512, 584, "one head"}, {1, 520, 600, "whole blocks"},
                       {1, 512, 582, "too short"}} do
    local H, D, E, why = table.unpack(bad)
    local ok, err = pcall(k.launch, k, {ts.tensor("f32", {1, H, D}, nil, d),
                                        ts.tensor("f32", {D}, nil, d), tab, pos,
                                        ts.empty("i8", {1, E}, d)})
    check(not ok and tostring(err):find("kv_norm_rope_pack") ~= nil,
          string.format("%s: %d heads of %d dims into %d bytes refused (%s): %s", dev, H, D, E,
                        why, tostring(err)))
  end
end

-- a weight of the wrong length is refused
local d = ts.device("cpu")
local k = kern("rope.tile", "head_norm_rope", F32, d)
local x, tab = ts.tensor("f32", {1, 2, 16}, nil, d), ts.tensor("f32", {4, 4, 2}, nil, d)
local ok, err = pcall(k.launch, k, {x, ts.tensor("f32", {15}, nil, d), tab,
                                    ts.tensor("i32", {1}, {0}, d), ts.empty("f32", {1, 2, 16}, d)})
check(not ok and tostring(err):find("w") ~= nil, "a weight of 15 for 16 dims refused: " ..
      tostring(err))
C.finish()
