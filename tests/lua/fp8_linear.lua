-- fp8_linear.lua - V4's FP8 linear (gemm.tile linear_fp8) and the formats
-- it reads (quant.tile act_quant, fp8_block_quant), against references written
-- here from V4-SPEC 1.11: ue8m0 scales per 128 x 128 weight block and per
-- 1 x 128 activation block, e4m3 rounding to nearest even, each block's
-- products summed and scaled by both scales. Shapes with N and K no
-- multiple of 128 (partial blocks), one and three groups, 1, 3 and 37 rows
-- with the tilings the model uses; the CPU and the GPU simulator
-- (tests/CMakeLists.txt runs it in the CUDA C lowering too). The fused
-- forms: linear_fp8_act (the quantisation as the tiles load) equal to
-- act_quant + linear_fp8 bit for bit, and with NORM to rmsnorm_f32 +
-- linear_fp8_act.
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local f32, ue8m0, randoms = C.f32, C.ue8m0, C.spread

-- v rounded to e4m3 (|v| <= 448): 3 mantissa bits, exponents from -6
local function e4m3(v)
  if v == 0 then return 0 end
  local a = math.abs(v)
  local e = math.floor(math.log(a, 2))
  if 2.0 ^ e > a then e = e - 1 end
  if 2.0 ^ (e + 1) <= a then e = e + 1 end
  if e < -6 then e = -6 end
  local q = 2.0 ^ (e - 3)
  local n = a / q
  local f = math.floor(n)
  local d = n - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then f = f + 1 end
  return (v < 0 and -1 or 1) * math.min(f * q, 448)
end

local function clamp(v) return math.max(-448, math.min(448, v)) end

-- the weight's codes (as values) and block scales
local function quant_ref(w, N, K)
  local NB, KB = (N + 127) // 128, (K + 127) // 128
  local q, s = {}, {}
  for nb = 0, NB - 1 do
    for kb = 0, KB - 1 do
      local amax = 0
      for n = nb * 128, math.min(N, nb * 128 + 128) - 1 do
        for k = kb * 128, math.min(K, kb * 128 + 128) - 1 do
          amax = math.max(amax, math.abs(w[n * K + k + 1]))
        end
      end
      local sc = ue8m0(f32(math.max(amax, f32(1e-4)) / 448))
      s[nb * KB + kb + 1] = sc
      for n = nb * 128, math.min(N, nb * 128 + 128) - 1 do
        for k = kb * 128, math.min(K, kb * 128 + 128) - 1 do
          q[n * K + k + 1] = e4m3(clamp(w[n * K + k + 1] / sc))
        end
      end
    end
  end
  return q, s
end


-- A norm weight [K] for the row x [1, K] under which rmsnorm_f32's
-- outputs lie on e4m3 rounding midpoints (2^e (1 + (m + 1/2) / 8), e 0..7,
-- each 128-block's first 248: an absmax that gives the block scale 1):
-- x's normalised values a (rmsnorm_f32 with a weight of ones: 1 (v r))
-- divided into them, rounded to f32.
local function midpoints(dev, x, K)
  local a, ones = ts.empty("f32", {1, K}, dev), {}
  for k = 1, K do ones[k] = 1.0 end
  ts.kernel("kernels/rmsnorm.tile", "rmsnorm_f32", {}, dev):launch{
    x, ts.tensor("f32", {K}, ones):copy_to(dev), a}
  local av, w, lcg = a:to_table(), {}, C.lcg(K)
  for k = 1, K do
    local e, m = math.floor(lcg() * 8), math.floor(lcg() * 8)
    if (k - 1) % 128 == 0 then e, m = 7, 7 end
    local t = 2.0 ^ e * (1 + (m + 0.5) / 8) * (lcg() < 0.5 and -1 or 1)
    w[k] = f32(t / av[k])
  end
  return ts.tensor("f32", {K}, w):copy_to(dev)
end

local function run(devname)
  local dev = ts.device(devname)
  local none = ts.tensor("f32", {1}, nil, dev) -- (linear_fp8_act's norm weight, NORM off)
  -- {N, K, G}: the groups quantised and multiplied each on its own (the
  -- model's wo_a, whose groups' rows need not be whole blocks)
  for n, cs in ipairs{{200, 300, 1}, {128, 256, 1}, {96, 130, 1}, {64, 200, 3}} do
    local N, K, G = cs[1], cs[2], cs[3]
    local NB, KB = (N + 127) // 128, (K + 127) // 128
    local wv = randoms(G * N * K, 11 * n, 0.05)
    local qr, sr = {}, {}
    for g = 0, G - 1 do
      local q1, s1 = quant_ref(table.move(wv, g * N * K + 1, (g + 1) * N * K, 1, {}), N, K)
      table.move(q1, 1, N * K, g * N * K + 1, qr)
      table.move(s1, 1, NB * KB, g * NB * KB + 1, sr)
    end
    local w = ts.tensor("f32", {G, N, K}, wv):copy_to(dev)
    local q = ts.tensor("fp8e4m3", {G, N, K}, nil, dev)
    local s = ts.tensor("f32", {G, NB, KB}, nil, dev)
    ts.kernel("kernels/quant.tile", "fp8_block_quant", {}, dev):launch{w, q, s}
    local qv, sv = q:cast("f32"):to_table(), s:to_table()
    local bad = 0
    for i = 1, G * N * K do if qv[i] ~= qr[i] then bad = bad + 1 end end
    for i = 1, G * NB * KB do if sv[i] ~= sr[i] then bad = bad + 1 end end
    C.check(bad == 0, string.format("%s fp8_block_quant %dx%dx%d: %d of %d codes and scales differ",
                                    devname, G, N, K, bad, G * (N * K + NB * KB)))
    for _, case in ipairs{{1, {BM = 1, BN = 32}}, {3, {BM = 8, BN = 32}},
                          {37, {BM = 32, BN = 32}}, {37, {BM = 16, BN = 64}}} do
      local M, tiles = case[1], case[2]
      local xv = randoms(M * G * K, 7 * n + M, 3)
      local x = ts.tensor("f32", {M, G, K}, xv):copy_to(dev)
      local xq, sx = ts.tensor("f32", {M, G, K}, nil, dev), ts.tensor("f32", {M, G, KB}, nil, dev)
      ts.kernel("kernels/quant.tile", "act_quant", {}, dev):launch{x, xq, sx}
      local y = ts.tensor("f32", {M, G, N}, nil, dev)
      ts.kernel("kernels/gemm.tile", "linear_fp8", tiles, dev):launch{xq, sx, q, s, y}
      local yv, worst, xqv, sxv, qbad = y:to_table(), 0, xq:to_table(), sx:to_table(), 0
      -- the quantisation fused (linear_fp8_act, a decode step's form): the same bits
      local y2 = ts.empty("f32", {M, G, N}, dev)
      ts.kernel("kernels/gemm.tile", "linear_fp8_act", tiles, dev):launch{x, q, s, y2, none}
      local y2v, fbad = y2:to_table(), 0
      for i = 1, M * G * N do if y2v[i] ~= yv[i] then fbad = fbad + 1 end end
      C.check(fbad == 0, string.format("%s linear_fp8_act %dx%dx%dx%d BM %d BN %d: %d of %d " ..
                                       "outputs differ from act_quant + linear_fp8", devname, M, G,
                                       N, K, tiles.BM, tiles.BN, fbad, M * G * N))
      -- with NORM (one row a block, one group: a decode step's query LoRA
      -- row into wq_b) the same bits as rmsnorm_f32, then linear_fp8_act
      -- (and with R 1 a weight that puts each normalised value on an e4m3
      -- rounding midpoint, so that an ulp of difference in the row's
      -- factor changes codes: nearby ones would round alike)
      if G == 1 and tiles.BM == 1 then
        for _, R in ipairs{1, 3} do
          local xr = ts.tensor("f32", {R, K}, randoms(R * K, 5 * n + R, 2)):copy_to(dev)
          local nw = ts.tensor("f32", {K}, randoms(K, 3 * n, 1)):copy_to(dev)
          if R == 1 then nw = midpoints(dev, xr, K) end
          local xn = ts.empty("f32", {R, K}, dev)
          ts.kernel("kernels/rmsnorm.tile", "rmsnorm_f32", {}, dev):launch{xr, nw, xn}
          local ya, yb = ts.empty("f32", {R, 1, N}, dev), ts.empty("f32", {R, 1, N}, dev)
          ts.kernel("kernels/gemm.tile", "linear_fp8_act", tiles, dev):launch{
            xn:reshape{R, 1, K}, q, s, ya, none}
          ts.kernel("kernels/gemm.tile", "linear_fp8_act", {BM = 1, BN = 32, NORM = true}, dev)
            :launch{xr:reshape{R, 1, K}, q, s, yb, nw}
          local nb, total = C.differ({yb:to_table()}, {ya:to_table()})
          C.check(nb == 0 and total == R * N, string.format(
            "%s linear_fp8_act NORM %d rows N %d K %d: %d of %d outputs differ from " ..
            "rmsnorm_f32 + linear_fp8_act", devname, R, N, K, nb, total))
        end
      end
      -- the same activations as e4m3 codes (XQ = fp8e4m3, gemm_fp8's input)
      local codes, sx2 = ts.tensor("fp8e4m3", {M, G, K}, nil, dev), ts.tensor("f32", {M, G, KB}, nil, dev)
      ts.kernel("kernels/quant.tile", "act_quant", {XQ = "fp8e4m3"}, dev):launch{x, codes, sx2}
      local cv, s2v = codes:cast("f32"):to_table(), sx2:to_table()
      for i = 1, M * G * K do if cv[i] ~= xqv[i] then qbad = qbad + 1 end end
      for i = 1, M * G * KB do if s2v[i] ~= sxv[i] then qbad = qbad + 1 end end
      for m = 0, M - 1 do
        for g = 0, G - 1 do
          local row = (m * G + g) * K -- x[m, g, :]
          -- this row's activation blocks: scale and values
          local xs, xq = {}, {}
          for kb = 0, KB - 1 do
            local amax = 0
            for k = kb * 128, math.min(K, kb * 128 + 128) - 1 do
              amax = math.max(amax, math.abs(xv[row + k + 1]))
            end
            xs[kb] = ue8m0(f32(math.max(amax, f32(1e-4)) / 448))
            if sxv[(m * G + g) * KB + kb + 1] ~= xs[kb] then qbad = qbad + 1 end
            for k = kb * 128, math.min(K, kb * 128 + 128) - 1 do
              xq[k] = e4m3(clamp(xv[row + k + 1] / xs[kb]))
              if xqv[row + k + 1] ~= xq[k] then qbad = qbad + 1 end
            end
          end
          for j = 0, N - 1 do
            local want, size = 0, 0
            for kb = 0, KB - 1 do
              local part, psize = 0, 0
              for k = kb * 128, math.min(K, kb * 128 + 128) - 1 do
                local p = xq[k] * qr[(g * N + j) * K + k + 1]
                part, psize = part + p, psize + math.abs(p)
              end
              local sc = xs[kb] * sr[(g * NB + j // 128) * KB + kb + 1]
              want, size = want + part * sc, size + psize * sc
            end
            -- f32 sums: within a few roundings of the sizes summed
            local got = yv[(m * G + g) * N + j + 1]
            worst = math.max(worst, math.abs(got - want) / (size * 2 ^ -24 * 256 + 1e-30))
          end
        end
      end
      C.check(qbad == 0, string.format("%s act_quant %dx%dx%d: %d values or scales differ",
                                       devname, M, G, K, qbad))
      C.check(worst <= 1, string.format("%s linear_fp8 %dx%dx%dx%d BM %d BN %d: %.2f of the bound",
                                        devname, M, G, N, K, tiles.BM, tiles.BN, worst))
    end
  end
  -- scales of the wrong shape are refused
  local ok, msg = pcall(function()
    ts.kernel("kernels/gemm.tile", "linear_fp8", {}, dev):launch{
      ts.tensor("f32", {1, 1, 256}, nil, dev), ts.tensor("f32", {1, 1, 2}, nil, dev),
      ts.tensor("fp8e4m3", {1, 64, 256}, nil, dev), ts.tensor("f32", {1, 2, 2}, nil, dev),
      ts.tensor("f32", {1, 1, 64}, nil, dev)}
  end)
  C.check(not ok and tostring(msg):find("linear_fp8: sx is"), devname .. " bad scales: " .. tostring(msg))
  local function act(p, sw, nw, rows)
    return pcall(function()
      ts.kernel("kernels/gemm.tile", "linear_fp8_act", p, dev):launch{
        ts.tensor("f32", {rows or 1, 1, 256}, nil, dev),
        ts.tensor("fp8e4m3", {1, 64, 256}, nil, dev), ts.tensor("f32", sw, nil, dev),
        ts.tensor("f32", {rows or 1, 1, 64}, nil, dev), ts.tensor("f32", {nw}, nil, dev)}
    end)
  end
  ok, msg = act({}, {1, 2, 2}, 1)
  C.check(not ok and tostring(msg):find("linear_fp8_act: sw is"),
          devname .. " linear_fp8_act bad scales: " .. tostring(msg))
  -- NORM: a norm weight of K, one row a block
  for _, case in ipairs{{{NORM = true}, 200}, {{NORM = true, BM = 2}, 256, 2}} do
    ok, msg = act(case[1], {1, 1, 2}, case[2], case[3])
    C.check(not ok and tostring(msg):find("NORM is one row", 1, true),
            devname .. " linear_fp8_act NORM refused: " .. tostring(msg))
  end
end

run("cpu")
run("gpusim")
C.finish()
