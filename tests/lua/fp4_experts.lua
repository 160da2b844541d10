-- fp4_experts.lua - V4's quantised routed experts (V4-SPEC 1.9, 1.11): the
-- FP4 weight format (quant.tile fp4_block_quant: e2m1 codes two a byte, the
-- lower K index in the low nibble, a ue8m0 scale per 1 x 32 block of a row)
-- and the grouped expert GEMMs that read it (moe.tile moe_up_fp4,
-- moe_down_fp4), and the Base checkpoints' FP8 experts (fp8_block_quant per
-- expert, moe_up_fp8, moe_down_fp8), against references written here from
-- the spec: FP4 codes and scales equal, each block's products summed and
-- scaled by the activation's and the weight's scales, within the f32
-- rounding of those sums. Widths with partial 128-wide activation blocks,
-- weights whose 128 x 128 blocks differ in magnitude, tile tables made with
-- BM 1, 4 and 16, a slot routed nowhere (-1); both formats' tensor-core
-- forms (moe_up_fp4_tc, moe_up_fp8_tc and their down GEMMs: e4m3 codes)
-- within the same bounds; the ACT forms (the activations quantised as
-- they are loaded) equal act_quant + the GEMMs bit for bit; the CPU and
-- the GPU simulator (tests/CMakeLists.txt runs
-- it in the CUDA C lowering too).
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local f32, ue8m0, randoms = C.f32, C.ue8m0, C.spread

-- v (|v| <= 6) rounded to the nearest e2m1 magnitude, ties to the even code
local E2M1 = {0, 0.5, 1, 1.5, 2, 3, 4, 6}
local function e2m1(v)
  local a, best = math.abs(v), 1
  for i = 2, 8 do
    local d, bd = math.abs(a - E2M1[i]), math.abs(a - E2M1[best])
    if d < bd or (d == bd and (i - 1) % 2 == 0) then best = i end
  end
  return (v < 0 and -1 or 1) * E2M1[best]
end

-- the value of a 4-bit code (bit 3 the sign)
local function decode(c) return (c & 8 ~= 0 and -1 or 1) * E2M1[(c & 7) + 1] end

-- w [G, N, K] (flat) as the spec quantises it: values q (code values) and
-- scales s [G, N, K / 32]
local function quant_ref(w, G, N, K)
  local q, s = {}, {}
  for r = 0, G * N - 1 do
    for b = 0, K // 32 - 1 do
      local amax = 0
      for k = b * 32, b * 32 + 31 do amax = math.max(amax, math.abs(w[r * K + k + 1])) end
      local sc = ue8m0(f32(math.max(amax, f32(6 * 2.0 ^ -126)) / 6))
      s[r * (K // 32) + b + 1] = sc
      for k = b * 32, b * 32 + 31 do
        q[r * K + k + 1] = e2m1(math.max(-6, math.min(6, w[r * K + k + 1] / sc)))
      end
    end
  end
  return q, s
end


-- a weight [G, N, K] quantised by the kernel: the codes and scales (device
-- tensors), the count of codes and scales that differ from the reference,
-- and the reference's values and scales
local function quantise(dev, wv, G, N, K, params)
  local q = ts.tensor("i8", {G, N, K // 2}, nil, dev)
  local s = ts.tensor("f32", {G, N, K // 32}, nil, dev)
  ts.kernel("kernels/quant.tile", "fp4_block_quant", params or {}, dev):launch{
    ts.tensor("f32", {G, N, K}, wv):copy_to(dev), q, s}
  local qr, sr = quant_ref(wv, G, N, K)
  local qv, sv, bad = q:to_table(), s:to_table(), 0
  for i = 1, G * N * K // 2 do
    local b = qv[i] & 255
    if decode(b & 15) ~= qr[2 * i - 1] or decode(b >> 4) ~= qr[2 * i] then bad = bad + 1 end
  end
  for i = 1, G * N * K // 32 do if sv[i] ~= sr[i] then bad = bad + 1 end end
  return q, s, bad, qr, sr
end

local function silu(x) return x / (1 + math.exp(-x)) end
local LIMIT = 10.0

-- y[j] = sum over B-wide blocks b of (x[b] . w[j, b]) * sx[b * B // 128] *
-- sw(b), and the same over |products| (the size its f32 rounding is
-- bounded by)
local function blocks(x, xo, sx, so, w, wo, sw, K, B)
  local y, size = 0, 0
  for b = 0, (K + B - 1) // B - 1 do
    local part, psize = 0, 0
    for k = b * B, math.min(K, b * B + B) - 1 do
      local p = x[xo + k + 1] * w[wo + k + 1]
      part, psize = part + p, psize + math.abs(p)
    end
    local sc = sx[so + b * B // 128 + 1] * sw(b)
    y, size = y + part * sc, size + psize * sc
  end
  return y, size
end

-- a weight [G, N, K] in the FP8 format (fp8_block_quant, checked against
-- the spec by fp8_linear.lua): codes, scales, and their values as tables
local function quantise8(dev, wv, G, N, K)
  local q = ts.tensor("fp8e4m3", {G, N, K}, nil, dev)
  local s = ts.tensor("f32", {G, (N + 127) // 128, (K + 127) // 128}, nil, dev)
  ts.kernel("kernels/quant.tile", "fp8_block_quant", {}, dev):launch{
    ts.tensor("f32", {G, N, K}, wv):copy_to(dev), q, s}
  return q, s, q:cast("f32"):to_table(), s:to_table()
end

local function run(devname)
  local dev = ts.device(devname)
  local function T_(dtype, shape, v) return ts.tensor(dtype, shape, v):copy_to(dev) end
  -- the weight format alone: rows that are not a whole block of BR
  for n, cs in ipairs{{3, 37, 96, 32}, {1, 64, 64, 8}} do
    local G, N, K, BR = cs[1], cs[2], cs[3], cs[4]
    local _, _, bad = quantise(dev, randoms(G * N * K, 5 * n, 0.3), G, N, K, {BR = BR})
    C.check(bad == 0, string.format("%s fp4_block_quant %dx%dx%d BR %d: %d bytes or scales differ",
                                    devname, G, N, K, BR, bad))
  end
  -- the experts: DM = 160 and I = 288 (partial 128-wide activation blocks),
  -- in FP4 and in FP8 (the Base checkpoints': 128 x 128 blocks per expert)
  local E, K, DM, I = 5, 3, 160, 288
  local IB, DB = (I + 127) // 128, (DM + 127) // 128
  local wv = {randoms(E * I * DM, 21, 0.2), randoms(E * DM * I, 23, 0.2), randoms(E * I * DM, 22, 0.2)}
  -- magnitudes by 128 x 128 block too, so that FP8's block scales differ
  for m = 1, 3 do
    local N, KK = m == 2 and DM or I, m == 2 and I or DM
    for e = 0, E - 1 do
      for j = 0, N - 1 do
        for k = 0, KK - 1 do
          local at = (e * N + j) * KK + k + 1
          wv[m][at] = f32(wv[m][at] * 2.0 ^ ((e + j // 128 + 2 * (k // 128)) % 4 - 1))
        end
      end
    end
  end
  local forms, bad = {}, 0
  do -- FP4: a scale per 1 x 32 block of a row
    local f = {name = "fp4", B = 32, q = {}, s = {}, r = {}, t = {}}
    for m = 1, 3 do
      local N, KK = m == 2 and DM or I, m == 2 and I or DM
      local b
      f.q[m], f.s[m], b, f.r[m], f.t[m] = quantise(dev, wv[m], E, N, KK)
      bad = bad + b
      local t, kb = f.t[m], KK // 32
      f[m] = function(e, j) return function(b) return t[(e * N + j) * kb + b + 1] end end
    end
    forms[1] = f
  end
  do -- FP8: a scale per 128 x 128 block of an expert's matrix
    local f = {name = "fp8", B = 128, q = {}, s = {}, r = {}, t = {}}
    for m = 1, 3 do
      local N, KK = m == 2 and DM or I, m == 2 and I or DM
      f.q[m], f.s[m], f.r[m], f.t[m] = quantise8(dev, wv[m], E, N, KK)
      local t, nb, kb = f.t[m], (N + 127) // 128, (KK + 127) // 128
      f[m] = function(e, j) return function(b) return t[(e * nb + j // 128) * kb + b + 1] end end
    end
    forms[2] = f
  end
  C.check(bad == 0, devname .. " fp4_block_quant of the experts' weights")
  for n, cs in ipairs{{1, 1}, {5, 4}, {19, 16}} do
    local T, BM = cs[1], cs[2]
    local TK = T * K
    -- each token's K distinct experts (token 1's last slot routed nowhere)
    local r, ev, wt = C.lcg(100 + n), {}, {}
    for t = 0, T - 1 do
      local pick = {}
      for k = 0, K - 1 do
        local e
        repeat e = math.floor(r() * E) until not pick[e]
        pick[e] = true
        ev[t * K + k + 1] = (t == 1 and k == K - 1) and -1 or e
        wt[t * K + k + 1] = f32(0.2 + r())
      end
    end
    local experts, weights = T_("i32", {T, K}, ev), T_("f32", {T, K}, wt)
    local MT = (TK + BM - 1) // BM + E
    local counts, offsets, cursor = ts.tensor("i32", {E}, nil, dev), ts.tensor("i32", {E}, nil, dev),
      ts.tensor("i32", {E}, nil, dev)
    local tiles, sorted = ts.tensor("i32", {MT, 3}, nil, dev), ts.tensor("i32", {TK}, nil, dev)
    ts.kernel("kernels/moe.tile", "moe_count", {}, dev):launch{experts, counts}
    ts.kernel("kernels/moe.tile", "moe_offsets", {BM = BM}, dev):launch{counts, offsets, tiles}
    ts.kernel("kernels/moe.tile", "moe_scatter", {}, dev):launch{experts, offsets, cursor, sorted}
    local x = T_("f32", {T, 1, DM}, randoms(T * DM, 30 + n, 2))
    local xq, sx = ts.tensor("f32", {T, 1, DM}, nil, dev), ts.tensor("f32", {T, 1, DB}, nil, dev)
    ts.kernel("kernels/quant.tile", "act_quant", {}, dev):launch{x, xq, sx}
    local xqv, sxv = xq:to_table(), sx:to_table()
    -- the activations as e4m3 codes, for the tensor-core forms
    local codes = ts.kernel("kernels/quant.tile", "act_quant", {XQ = "fp8e4m3"}, dev)
    local xc = ts.tensor("fp8e4m3", {T, 1, DM}, nil, dev)
    codes:launch{x, xc, ts.tensor("f32", {T, 1, DB}, nil, dev)}
    -- each format's kernels, and their tensor-core forms (moe_up_fp4_tc:
    -- e4m3 GEMMs of 32-wide steps; moe_up_fp8_tc: of 128-wide blocks;
    -- wgmma on sm_90a; their own BM, 64, over tables of any smaller BM)
    local variants = {}
    for _, f in ipairs(forms) do
      variants[#variants + 1] = {f = f, name = f.name, params = {BM = BM}}
      variants[#variants + 1] = {f = f, name = f.name .. "_tc", params = {}}
    end
    for _, v in ipairs(variants) do
      local f, tc = v.f, v.name:match("_tc$")
      local h = ts.tensor("f32", {TK, I}, nil, dev)
      ts.kernel("kernels/moe.tile", "moe_up_" .. v.name, v.params, dev):launch{
        (tc and xc or xq):reshape{T, DM}, sx:reshape{T, DB}, sorted, offsets, tiles, weights,
        f.q[1], f.s[1], f.q[3], f.s[3], h}
      local hq, sh = ts.tensor("f32", {TK, 1, I}, nil, dev), ts.tensor("f32", {TK, 1, IB}, nil, dev)
      ts.kernel("kernels/quant.tile", "act_quant", {}, dev):launch{h:reshape{TK, 1, I}, hq, sh}
      local hin = hq
      if tc then
        hin = ts.tensor("fp8e4m3", {TK, 1, I}, nil, dev)
        codes:launch{h:reshape{TK, 1, I}, hin, ts.tensor("f32", {TK, 1, IB}, nil, dev)}
      end
      local out = ts.tensor("f32", {TK, DM}, nil, dev)
      -- (moe_down_fp8's add, not read without ADD)
      local fp8 = v.name == "fp8" and x:reshape{T, DM} or nil
      ts.kernel("kernels/moe.tile", "moe_down_" .. v.name, v.params, dev):launch{
        hin:reshape{TK, I}, sh:reshape{TK, IB}, sorted, offsets, tiles, f.q[2], f.s[2], out, fp8}
      local hv, hqv, shv, ov = h:to_table(), hq:to_table(), sh:to_table(), out:to_table()
      if fp8 then
        -- with ADD = 3 each slot's row plus its 3 rows of add, in order:
        -- moe_combine's sums of out and add, bit for bit
        local add = T_("f32", {TK * 3, DM}, randoms(TK * 3 * DM, 60 + n, 4))
        local oadd, want = ts.tensor("f32", {TK, DM}, nil, dev), ts.tensor("f32", {TK, DM}, nil, dev)
        ts.kernel("kernels/moe.tile", "moe_down_fp8", {BM = BM, ADD = 3}, dev):launch{
          hin:reshape{TK, I}, sh:reshape{TK, IB}, sorted, offsets, tiles, f.q[2], f.s[2], oadd,
          add}
        ts.kernel("kernels/moe.tile", "moe_combine", {K = 3}, dev):launch{out, add, want}
        local got, exp = oadd:to_table(), want:to_table()
        for c = 1, T > 1 and DM or 0 do -- (the unrouted slot's row is not written)
          got[(K + K - 1) * DM + c], exp[(K + K - 1) * DM + c] = 0, 0
        end
        local nd, td = C.differ({got}, {exp})
        C.check(nd == 0, string.format("%s fp8 T %d BM %d ADD: == moe_combine (%d of %d differ)",
                                       devname, T, BM, nd, td))
      end
      if not tc then
        -- ACT (a GPU decode's form): x and h as they are, quantised as each
        -- tile is loaded; the scales' place is not read: the same bits
        local p = {BM = BM, ACT = true}
        local ha, oa = ts.tensor("f32", {TK, I}, nil, dev), ts.tensor("f32", {TK, DM}, nil, dev)
        ts.kernel("kernels/moe.tile", "moe_up_" .. v.name, {BM = BM, ACT = true}, dev):launch{
          x:reshape{T, DM}, ts.empty("f32", {T, DB}, dev), sorted, offsets, tiles, weights,
          f.q[1], f.s[1], f.q[3], f.s[3], ha}
        ts.kernel("kernels/moe.tile", "moe_down_" .. v.name, p, dev):launch{
          h, ts.empty("f32", {TK, IB}, dev), sorted, offsets, tiles, f.q[2], f.s[2], oa, fp8}
        local nh, th = C.differ({ha:to_table()}, {hv})
        local no, to = C.differ({oa:to_table()}, {ov})
        C.check(nh == 0 and no == 0, string.format(
          "%s %s T %d BM %d ACT: == act_quant + the GEMMs (%d of %d, %d of %d differ)", devname,
          v.name, T, BM, nh, th, no, to))
      end
      local hworst, oworst, zeros = 0, 0, 0
      for slot = 0, TK - 1 do
        local t, e = slot // K, ev[slot + 1]
        if e < 0 then
          for j = 0, I - 1 do if hv[slot * I + j + 1] ~= 0 then zeros = zeros + 1 end end
          for c = 0, DM - 1 do if ov[slot * DM + c + 1] ~= 0 then zeros = zeros + 1 end end
        else
          for j = 0, I - 1 do
            local row = (e * I + j) * DM
            local g, gs = blocks(xqv, t * DM, sxv, t * DB, f.r[1], row, f[1](e, j), DM, f.B)
            local u, us = blocks(xqv, t * DM, sxv, t * DB, f.r[3], row, f[3](e, j), DM, f.B)
            local w = wt[slot + 1]
            local gc, uc = math.min(g, LIMIT), math.max(-LIMIT, math.min(LIMIT, u))
            local want = silu(gc) * uc * w
            -- the sums' f32 rounding through swiglu (silu' <= 1.1), and the
            -- result's own few roundings
            local bound = w * (1.1 * math.abs(uc) * gs + math.abs(silu(gc)) * us) * 2 ^ -24 * 64
              + math.abs(want) * 2 ^ -20 + 1e-30
            hworst = math.max(hworst, math.abs(hv[slot * I + j + 1] - want) / bound)
          end
          for c = 0, DM - 1 do
            local want, size = blocks(hqv, slot * I, shv, slot * IB, f.r[2], (e * DM + c) * I,
                                      f[2](e, c), I, f.B)
            local err = math.abs(ov[slot * DM + c + 1] - want)
            oworst = math.max(oworst, err / (size * 2 ^ -24 * 64 + 1e-30))
          end
        end
      end
      local what = string.format("%s %s T %d BM %d", devname, v.name, T, BM)
      C.check(zeros == 0, string.format("%s: %d values written for the slot routed nowhere",
                                        what, zeros))
      C.check(hworst <= 1, string.format("%s: moe_up: %.3g of the bound", what, hworst))
      C.check(oworst <= 1, string.format("%s: moe_down: %.3g of the bound", what, oworst))
    end
  end
  local q2 = forms[1].q[2]
  -- scales of the wrong shape are refused, named
  local ok, msg = pcall(function()
    ts.kernel("kernels/moe.tile", "moe_down_fp4", {}, dev):launch{
      ts.tensor("f32", {3, I}, nil, dev), ts.tensor("f32", {3, 1}, nil, dev),
      ts.tensor("i32", {3}, nil, dev), ts.tensor("i32", {E}, nil, dev),
      ts.tensor("i32", {E + 1, 3}, nil, dev), q2, ts.tensor("f32", {E, DM, I // 128 + 1}, nil, dev),
      ts.tensor("f32", {3, DM}, nil, dev)}
  end)
  C.check(not ok and tostring(msg):find("moe_down_fp4: w2"), devname .. " bad scales: " .. tostring(msg))
end

run("cpu")
run("gpusim")
C.finish()
