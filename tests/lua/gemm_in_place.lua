-- gemm_in_place.lua - on the CPU a gemm whose operand tiles are copies of
-- tensor slices used by it alone reads those slices in place where they
-- lie wholly inside their tensors (compiler/gen_tile.c gen_gemm_in_place),
-- the copies as written elsewhere. tests/lua/gemm_in_place.tile's
-- dot_in_place (that form) against dot_copied (the same loop, its tiles
-- read after it too, so copied every step): bit for bit equal, on shapes
-- where every tile is inside, where none of the edge ones are (M, N, K no
-- multiple of the tiles) and with a group stride (G > 1), for f32, bf16 and
-- FP8 (e4m3) weights, the decode, batch and prefill tilings, accumulating
-- or not; and near an f64 reference. FP8 weights read in place are decoded
-- in registers by table lookups on a host with AVX-512 VBMI (K tiles a
-- multiple of 64): every code but the NaNs among the weights, and the NaN
-- codes of either sign in their own case, each output's bits the copy's.
-- The copied form's tiles end as the last step left them. FP4 weights
-- (copy with format="e2m1", with and without scale=): on an AVX-512 CPU a
-- decode step's gemm decodes the codes and scales in registers as it reads
-- them; every byte value, scales that round their products, blocks of 16,
-- 32 and 64 (8: decoded into the tile), edge tiles and rows past M, each
-- output's bits the copied form's (dot_fp4 READ 0 against READ 1). Two gemms after
-- three copies, each reading its own tiles in place (dot2_*: moe.tile
-- moe_up's form). The model's linears take the same path (gemm.tile
-- linear_f32, linear_fp8, linear_fp8_act).
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/gemm_in_place.tile"
local u = C.lcg(5)
local function r() return u() * 2 - 1 end
local cpu = ts.device("cpu")

-- the value of e4m3 code c (NaN for 0x7f and 0xff, of the code's sign)
local function e4m3(c)
  local e, m, v = (c >> 3) & 15, c & 7, nil
  if e == 15 and m == 7 then
    v = 0 / 0
  else
    v = e == 0 and m * 2.0 ^ -9 or (1 + m / 8) * 2.0 ^ (e - 7)
  end
  return c >= 128 and -v or v
end

-- weights: random values, or (FP8) random finite codes, and the NaN codes
-- at the positions `nans` lists
local function weights(n, W, nans)
  local wv = {}
  for i = 1, n do
    if W ~= "fp8e4m3" then
      wv[i] = r()
    else -- codes 0 .. 253 without 0x7f (one of the codes 0x80 .. 0xfe then)
      local c = math.floor(u() * 254)
      wv[i] = e4m3(c >= 127 and c + 1 or c)
    end
  end
  for q, i in ipairs(nans or {}) do wv[i] = e4m3(q % 2 == 1 and 0x7f or 0xff) end
  return wv
end

local function case(M, G, N, K, tiles, W, acc, nans)
  local xv = {}
  for i = 1, M * G * K do xv[i] = r() end
  local wv = weights(G * N * K, W, nans)
  local x = ts.tensor("f32", {M, G, K}, xv)
  local w = ts.tensor("f32", {G, N, K}, wv)
  if W ~= "f32" then w = w:cast(W) end
  local p = {W = W, ACC = acc and 1 or 0}
  for k, v in pairs(tiles) do p[k] = v end
  local a = ts.tensor("f32", {M, G, N}, nil, cpu)
  local b = ts.tensor("f32", {M, G, N}, nil, cpu)
  local seen = ts.tensor("f32", {2}, nil, cpu)
  ts.kernel(file, "dot_in_place", p, cpu):launch{x, w, a}
  ts.kernel(file, "dot_copied", p, cpu):launch{x, w, b, seen}
  local what = string.format("M %d G %d N %d K %d BM %d %s%s", M, G, N, K, tiles.BM, W,
                             acc and "" or " (accumulate=false)")
  local av, bv = a:to_table(), b:to_table()
  C.check(#av == M * G * N and C.same_bits(av, bv), what .. ": read in place differs from copied")
  if nans then -- the outputs whose sums meet a NaN code are NaN; the rest finite
    local bad = {}
    for _, i in ipairs(nans) do
      local gn = (i - 1) // K
      for m = 0, M - 1 do bad[m * G * N + (gn // N) * N + gn % N + 1] = true end
    end
    local ok = true
    for i = 1, #av do if (av[i] ~= av[i]) ~= (bad[i] or false) then ok = false end end
    C.check(ok, what .. ": NaN where a NaN weight is, only there")
    return
  end
  -- against f64: the sum over every K step, or the last step's alone
  local wq = w:cast("f32"):to_table()
  local BK = tiles.BK
  local k0 = acc and 0 or ((K + BK - 1) // BK - 1) * BK
  local want = {}
  for m = 0, M - 1 do
    for g = 0, G - 1 do
      for n = 0, N - 1 do
        local s = 0
        for k = k0, K - 1 do
          s = s + xv[(m * G + g) * K + k + 1] * wq[(g * N + n) * K + k + 1]
        end
        want[(m * G + g) * N + n + 1] = s
      end
    end
  end
  C.check(C.relerr(av, want) < 1e-5, what .. ": against f64")
  -- the copied form's tiles: block (0, 0, 0)'s last step
  local last = ((K + BK - 1) // BK - 1) * BK
  local sv = seen:to_table()
  C.check(sv[1] == x:to_table()[last + 1] and sv[2] == wq[last + 1], what .. ": the copied tiles")
end

-- two gemms after three copies (moe_up's form): x copied (both read it),
-- each weight's tile read in place by its gemm
local function case2(M, N, K, tiles, W)
  local xv, v1, v3 = {}, {}, {}
  for i = 1, M * K do xv[i] = r() end
  for i = 1, N * K do v1[i], v3[i] = r(), r() end
  local x = ts.tensor("f32", {M, K}, xv)
  local w1, w3 = ts.tensor("f32", {N, K}, v1), ts.tensor("f32", {N, K}, v3)
  if W == "bf16" then w1, w3 = w1:cast("bf16"), w3:cast("bf16") end
  local p = {W = W}
  for k, v in pairs(tiles) do p[k] = v end
  local out = {}
  for i = 1, 4 do out[i] = ts.tensor("f32", {M, N}, nil, cpu) end
  ts.kernel(file, "dot2_in_place", p, cpu):launch{x, w1, w3, out[1], out[2]}
  ts.kernel(file, "dot2_copied", p, cpu):launch{x, w1, w3, out[3], out[4],
                                                ts.tensor("f32", {3}, nil, cpu)}
  local what = string.format("two gemms: M %d N %d K %d BM %d %s", M, N, K, tiles.BM, W)
  C.check(C.same(out[1], out[3]) and C.same(out[2], out[4]),
          what .. ": read in place differs from copied")
  local xq, q1, q3 = x:to_table(), w1:cast("f32"):to_table(), w3:cast("f32"):to_table()
  local want1, want3 = {}, {}
  for m = 0, M - 1 do
    for n = 0, N - 1 do
      local a, b = 0, 0
      for k = 0, K - 1 do
        a = a + xq[m * K + k + 1] * q1[n * K + k + 1]
        b = b + xq[m * K + k + 1] * q3[n * K + k + 1]
      end
      want1[m * N + n + 1], want3[m * N + n + 1] = a, b
    end
  end
  C.check(C.relerr(out[1]:to_table(), want1) < 1e-5 and C.relerr(out[2]:to_table(), want3) < 1e-5,
          what .. ": against f64")
end

for _, W in ipairs{"f32", "bf16"} do
  for _, tiles in ipairs{{BM = 1, BN = 32, BK = 128}, {BM = 8, BN = 32, BK = 128}} do
    case2(tiles.BM * 2, 64, 256, tiles, W)
    case2(7, 45, 200, tiles, W)
  end
end
-- the copy before a loop of gemms (hc_post_mix's form): loop_in_place
-- against loop_copied, bit for bit, and against f64; then with y sharing
-- w's memory (rows of one tensor), where the tile must be the copy (the
-- loop's writes to y change w's rows before later groups read them)
local function loop_case(M, N, K, tiles, alias)
  local p = {}
  for k, v in pairs(tiles) do p[k] = v end
  local xv = {}
  for i = 1, M * K do xv[i] = r() end
  local x = ts.tensor("f32", {M, K}, xv)
  local rows, wv = alias and N + M - alias or N, {}
  for i = 1, rows * K do wv[i] = r() end
  -- w: rows 0 .. N - 1 of one tensor; y: its own, or rows N - alias ..
  local function operands()
    if not alias then
      return ts.tensor("f32", {N, K}, wv, cpu), ts.tensor("f32", {M, N}, nil, cpu)
    end
    local big = ts.tensor("f32", {rows, K}, wv, cpu)
    return big:slice(0, 0, N), big:slice(0, N - alias, M), big
  end
  local w1, y1, big1 = operands()
  local w2, y2, big2 = operands()
  ts.kernel(file, "loop_in_place", p, cpu):launch{x, w1, y1}
  ts.kernel(file, "loop_copied", p, cpu):launch{x, w2, y2, ts.tensor("f32", {1}, nil, cpu)}
  local what = string.format("loop: M %d N %d K %d BM %d TB %d%s", M, N, K, tiles.BM, tiles.TB,
                             alias and (" (y shares " .. alias .. " rows of w)") or "")
  C.check(C.same(big1 or y1, big2 or y2), what .. ": read in place differs from copied")
  if alias then return end
  local want = {}
  for m = 0, M - 1 do
    for n = 0, N - 1 do
      local a = 0
      for k = 0, math.min(K, tiles.BK) - 1 do a = a + xv[m * K + k + 1] * wv[n * K + k + 1] end
      want[m * N + n + 1] = a
    end
  end
  C.check(C.relerr(y1:to_table(), want) < 1e-5, what .. ": against f64")
end

for _, tiles in ipairs{{BM = 1, BN = 16, BK = 16, TB = 4}, {BM = 2, BN = 8, BK = 16, TB = 3}} do
  loop_case(tiles.BM * tiles.TB * 2, 32, 16, tiles)  -- every tile inside
  loop_case(13, 21, 16, tiles)                       -- edge tiles outside
  loop_case(tiles.BM * tiles.TB * 2, 16, 16, tiles, 8)  -- y over w's last 8 rows
end

for _, tiles in ipairs{{BM = 1, BN = 8, BK = 128}, {BM = 4, BN = 16, BK = 64}} do
  case(tiles.BM, 1, 24, 256, tiles, "fp8e4m3", true, {5, 300, 511, 1000, 1801, 4000})
end
for _, W in ipairs{"f32", "bf16", "fp8e4m3"} do
  for _, tiles in ipairs{{BM = 1, BN = 32, BK = 128}, {BM = 8, BN = 32, BK = 128},
                         {BM = 32, BN = 32, BK = 128}, {BM = 4, BN = 16, BK = 64},
                         {BM = 1, BN = 8, BK = 128}, {BM = 2, BN = 8, BK = 64}} do
    case(tiles.BM * 2, 1, 64, 256, tiles, W, true)  -- every tile inside
    case(11, 1, 70, 300, tiles, W, true)            -- edge tiles outside
    case(5, 3, 33, 200, tiles, W, true)             -- a group stride
    case(tiles.BM, 2, 32, 384, tiles, W, false)     -- accumulate=false
  end
end
-- FP4 weights (format="e2m1"): every byte value among the codes, scales
-- powers of two and others; dot_fp4 READ 0 (in place: decoded in the gemm
-- on an AVX-512 CPU where a block's tiles lie inside) against READ 1 (the
-- tile decoded every step), bit for bit, and near an f64 reference of the
-- decoded values
local E2M1 = {0.0, 0.5, 1, 1.5, 2, 3, 4, 6}
local function nibble(b, h)
  local c = (b & 0xff) >> (4 * h) & 15
  local v = E2M1[(c & 7) + 1]
  return c & 8 ~= 0 and -v or v
end
local function fp4_case(M, G, N, K, tiles, BLK)
  local what = string.format("fp4 M %d G %d N %d K %d BM %d BN %d BLK %s", M, G, N, K, tiles.BM,
                             tiles.BN, tostring(BLK))
  local KH, xv, cv, sv = K // 2, {}, {}, {}
  for i = 1, M * G * K do xv[i] = r() end
  for i = 1, G * N * KH do cv[i] = i <= 256 and i - 129 or math.floor(u() * 256) - 128 end
  local KS = BLK and K // BLK or 1
  for i = 1, G * N * KS do sv[i] = i % 4 == 0 and C.f32(u() + 0.25) or 2.0 ^ (i % 7 - 3) end
  local x = ts.tensor("f32", {M, G, K}, xv, cpu)
  local w = ts.tensor("i8", BLK and {G, N, KH} or {N, KH}, cv, cpu)
  local s = ts.tensor("f32", {G, N, KS}, sv, cpu)
  local ys = {}
  for READ = 0, 1 do
    local p = {BM = tiles.BM, BN = tiles.BN, BK = tiles.BK, READ = READ, BLK = BLK}
    local y = ts.tensor("f32", BLK and {M, G, N} or {M, N}, nil, cpu)
    local seen = ts.tensor("f32", {1}, nil, cpu)
    if BLK then
      ts.kernel(file, "dot_fp4", p, cpu):launch{x, w, s, y, seen}
    else
      ts.kernel(file, "dot_fp4_plain", p, cpu):launch{x:reshape{M, K}, w, y, seen}
    end
    ys[READ] = y:to_table()
  end
  C.check(C.same_bits(ys[0], ys[1]), what .. ": read in place differs from copied")
  local want = {}
  for m = 0, M - 1 do
    for g = 0, G - 1 do
      for n = 0, N - 1 do
        local a = 0
        for k = 0, K - 1 do
          local wk = nibble(cv[(g * N + n) * KH + k // 2 + 1], k % 2)
          if BLK then wk = wk * sv[(g * N + n) * KS + k // BLK + 1] end
          a = a + xv[(m * G + g) * K + k + 1] * wk
        end
        want[(m * G + g) * N + n + 1] = a
      end
    end
  end
  C.check(C.relerr(ys[0], want) < 1e-5, what .. ": against f64")
end
for _, tiles in ipairs{{BM = 1, BN = 8, BK = 128}, {BM = 2, BN = 32, BK = 128},
                       {BM = 1, BN = 16, BK = 64}} do
  for _, BLK in ipairs{32, 16, 64} do
    fp4_case(tiles.BM, 2, 24, 384, tiles, BLK)      -- every tile inside
    fp4_case(tiles.BM, 1, 21, 256, tiles, BLK)      -- an edge tile outside
  end
  fp4_case(tiles.BM, 1, 24, 256, tiles, nil)        -- no scales
end
fp4_case(3, 2, 20, 256, {BM = 2, BN = 8, BK = 128}, 32)  -- rows past M
fp4_case(1, 1, 16, 256, {BM = 1, BN = 8, BK = 128}, 8)   -- BLK 8: decoded in the tile
C.finish()
