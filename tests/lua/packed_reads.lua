-- packed_reads.lua - the GPU kernels that read the caches' bytes
-- (kernels/quant.tile formats) and decode them into bf16 tiles on the way:
-- sparse_attn_split_kv8, sparse_attn_split_kv8_ring and hca_attn_split_kv8
-- (the KV cache, kv_pack) and indexer_scores_fp4_tc
-- (the indexer's keys, fp4_pack), and the exact model's
-- indexer_scores_fp4_f32 and sparse_attn_f32_kv8. Each equals its twin over the unpacked rows
-- (rounded to bf16 for the tensor-core forms: the decoded values are exact
-- in bf16), bit for bit, on the CPU and the GPU simulator: attention over ranges,
-- invalid (-1) entries, a K that is no multiple of the block and blocks of
-- two warpgroups (merged, it also agrees with sparse_attn), the rows'
-- decode as one statement or two (DEC2); the indexer
-- over a key count that is no multiple of its block; sparse_attn_f32_pool
-- and pool_list_bf16 over the same rows where they lie in "f32" pools (the
-- batch's decode). Rows too short are refused.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local rand = C.lcg

-- x [S, c] with each 64-wide block at its own magnitude (its own scale)
local function rows(S, c, seed)
  local r, v = rand(seed), {}
  for i = 0, S - 1 do
    for j = 0, c - 1 do
      local mag = 2 ^ ((i * 7 + j // 64 * 3) % 11 - 5)
      v[#v + 1] = (r() * 2 - 1) * mag
    end
  end
  return ts.tensor("f32", {S, c}, v)
end

local function bitwise(a, b)
  a, b = a:to_table(), b:to_table()
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] and not (a[i] ~= a[i] and b[i] ~= b[i]) then return false end
  end
  return true
end

local ROPE = 64
-- A KV row's bytes at head dim c (kv_pack's, rounded up to 8).
local function row_bytes(c)
  local nope = c - ROPE
  return (nope + 2 * ROPE + nope // 64 + 7) // 8 * 8
end

-- ts.kernel on dev, by file under kernels/
local function kernels_on(dev)
  return function(file, name, params) return ts.kernel("kernels/" .. file, name, params or {}, dev) end
end

-- S rows of c dims packed by kv_pack on dev, and kv_unpack's XT of them
local function kv_rows(dev, S, c, seed, XT)
  local kernel = kernels_on(dev)
  local bytes = ts.tensor("i8", {S, row_bytes(c)}, nil, dev)
  kernel("quant.tile", "kv_pack", {ROPE = ROPE}):launch{rows(S, c, seed):copy_to(dev), bytes}
  local unpacked = ts.tensor(XT, {S, c}, nil, dev)
  kernel("quant.tile", "kv_unpack", {ROPE = ROPE, XT = XT}):launch{bytes, unpacked}
  return bytes, unpacked
end

local cases = {
  -- device, heads, head dim, CH, WG, T, S, K, P
  {"cpu", 16, 128, 64, 1, 3, 70, 45, 2},
  {"cpu", 16, 128, 128, 2, 2, 33, 64, 3},
  {"gpusim", 16, 128, 64, 1, 2, 40, 45, 2},
  {"gpusim", 16, 128, 128, 2, 1, 37, 35, 1},
}
for n, cs in ipairs(cases) do
  local dev = ts.device(cs[1])
  local H, c, CH, WG, T, S, K, P = table.unpack(cs, 2)
  -- (the rows' decode as one statement or two, quant.tile kv8_rows: the same
  -- values)
  local dec2 = n % 2 == 0
  local what = string.format("case %d (%s, WG %d, P %d, DEC2 %s)", n, cs[1], WG, P, dec2)
  local E, kernel = row_bytes(c), kernels_on(dev)
  local bytes, unpacked = kv_rows(dev, S, c, 11 + n, "f32")
  local kvb = unpacked:cast("bf16")
  local r, qv, iv, sv = rand(97 + n), {}, {}, {}
  for i = 1, T * H * c do qv[i] = r() * 2 - 1 end
  for i = 1, T * K do iv[i] = r() < 0.15 and -1 or math.floor(r() * S) end
  for i = 1, H do sv[i] = r() - 0.5 end
  local q = ts.tensor("f32", {T, H, c}, qv):cast("bf16", dev)
  local idx = ts.tensor("i32", {T, K}, iv):copy_to(dev)
  local sink = ts.tensor("f32", {H}, sv):copy_to(dev)
  -- the merge's rope table and positions (not read without ROPE)
  local no_tab, no_pos = ts.tensor("f32", {1, 1, 2}, nil, dev), ts.tensor("i32", {1}, nil, dev)
  local function run(name, kv)
    local params = {NH = H, DC = c, CH = CH, BK = 16, WG = WG}
    if name == "sparse_attn_split_kv8" then params.EB, params.DEC2 = E, dec2 end
    local po = ts.tensor("f32", {T, P, H, c}, nil, dev)
    local pm = ts.tensor("f32", {T, P, H}, nil, dev)
    local pl = ts.tensor("f32", {T, P, H}, nil, dev)
    kernel("sparse_attn.tile", name, params):launch{q, kv, idx, po, pm, pl}
    local o = ts.tensor("bf16", {T, H, c}, nil, dev)
    kernel("sparse_attn.tile", "sparse_attn_merge")
      :launch{po, pm, pl, sink, no_tab, no_pos, o}
    return po, pm, pl, o
  end
  local a = {run("sparse_attn_split", kvb)}
  local b = {run("sparse_attn_split_kv8", bytes)}
  C.check(bitwise(b[1], a[1]) and bitwise(b[2], a[2]) and bitwise(b[3], a[3]),
          what .. ": partial states differ from sparse_attn_split's")
  C.check(bitwise(b[4], a[4]), what .. ": merged outputs differ")
  -- merged, against the one-pass bf16 kernel (other rescaling order)
  local o1 = ts.tensor("bf16", {T, H, c}, nil, dev)
  kernel("sparse_attn.tile", "sparse_attn"):launch{q, kvb, idx, sink, o1}
  local err = C.relerr(b[4]:to_table(), o1:to_table())
  C.check(err < 1e-2, string.format("%s: merged vs sparse_attn %.2e", what, err))
end

-- HCA's: hca_attn_split_kv8 (the window gathered from a ring's bytes by
-- slot, the compressed entries read in place from theirs) against
-- hca_attn_split over the same rows unpacked in bf16; tokens with fewer
-- complete entries than the cache holds, a window with unused (-1) slots
-- and W no multiple of the block, more ranges than blocks (empty ranges);
-- and the entries at each token's own rows of a pool (cbase), in a grid
-- with more ranges than the tokens' own (nr)
local hcases = {
  -- device, heads, head dim, CH, WG, T, W, N, P
  {"cpu", 16, 128, 64, 1, 3, 21, 50, 3},
  {"cpu", 16, 128, 128, 2, 2, 16, 7, 9},
  {"gpusim", 16, 128, 64, 1, 2, 21, 37, 2},
  {"gpusim", 16, 128, 128, 2, 1, 40, 19, 1},
}
for n, cs in ipairs(hcases) do
  local dev = ts.device(cs[1])
  local H, c, CH, WG, T, W, N, P = table.unpack(cs, 2)
  local what = string.format("HCA case %d (%s, WG %d, P %d, DEC2 %s)", n, cs[1], WG, P,
                             n % 2 == 1)
  local E, kernel = row_bytes(c), kernels_on(dev)
  local ring8, ring = kv_rows(dev, W, c, 31 + n, "bf16")
  local comp8, comp = kv_rows(dev, N, c, 41 + n, "bf16")
  local r, qv, wv, nv = rand(57 + n), {}, {}, {}
  for i = 1, T * H * c do qv[i] = r() * 2 - 1 end
  for i = 1, T * W do wv[i] = r() < 0.2 and -1 or math.floor(r() * W) end
  for t = 1, T do nv[t] = t == 1 and N or math.floor(r() * N) end
  local q = ts.tensor("f32", {T, H, c}, qv):cast("bf16", dev)
  local win = ts.tensor("i32", {T, W}, wv):copy_to(dev)
  local ncomp = ts.tensor("i32", {T}, nv):copy_to(dev)
  -- (cb: each token's first entry row, zeros if nil; PG: the grid's
  -- ranges, P if nil; each token's own ranges P)
  local function run(name, kv, cm, cb, PG)
    PG = PG or P
    local params = {NH = H, DC = c, CH = CH, BK = 16, WG = WG}
    if name == "hca_attn_split_kv8" then
      params.EB, params.ROPE, params.DEC2 = E, ROPE, n % 2 == 1
    end
    local po = ts.tensor("f32", {T, PG, H, c}, nil, dev)
    local pm = ts.tensor("f32", {T, PG, H}, nil, dev)
    local pl = ts.tensor("f32", {T, PG, H}, nil, dev)
    local nr = {}
    for t = 1, T do nr[t] = P end
    kernel("hca_attn.tile", name, params):launch{q, kv, win, cm, ncomp,
      ts.tensor("i32", {T}, cb, dev), ts.tensor("i32", {T}, nr, dev), po, pm, pl}
    return po, pm, pl
  end
  local a = {run("hca_attn_split", ring, comp)}
  local b = {run("hca_attn_split_kv8", ring8, comp8)}
  C.check(bitwise(b[1], a[1]) and bitwise(b[2], a[2]) and bitwise(b[3], a[3]),
          what .. ": partial states differ from hca_attn_split's")
  -- and not all empty: every token has valid entries in range 0
  local m = b[2]:to_table()
  C.check(m[1] > -math.huge and m[1] == m[1], what .. ": range 0 of token 0 saw no entry")
  -- the entries where a batch's state pool holds them: token t's at its
  -- own first row of a larger tensor (other rows around them), in a grid
  -- of P + 2 ranges: the same states in its P ranges, the others empty
  local gap, bases = 5, {}
  local pool8 = kv_rows(dev, T * (N + gap) + gap, c, 51 + n, "bf16")
  for t = 1, T do
    bases[t] = gap + (t - 1) * (N + gap)
    pool8:slice(0, bases[t], N):assign(comp8)
  end
  local g = {run("hca_attn_split_kv8", ring8, pool8, bases, P + 2)}
  local same, empty = true, true
  for k = 1, 3 do
    local got, want = g[k]:to_table(), b[k]:to_table()
    local per = #want // (T * P) -- (values a range)
    for t = 0, T - 1 do
      for p = 0, P + 1 do
        for i = 1, per do
          local v = got[(t * (P + 2) + p) * per + i]
          if p < P then
            same = same and v == want[(t * P + p) * per + i]
          else
            empty = empty and v == (k == 2 and -math.huge or 0)
          end
        end
      end
    end
  end
  C.check(same, what .. ": entries at their own rows of a pool: other partial states")
  C.check(empty, what .. ": the ranges past a token's own are not empty")
end

-- CSA's: sparse_attn_split_kv8_ring (the window gathered from a ring's
-- bytes by slot, the selected entries from the cache's bytes by index)
-- against sparse_attn_split_kv8 over the one list quant.tile kv_list
-- makes of them, with ring_index's list (window slots, then W + k for a
-- valid selection k): W a multiple of the block, a selection of no multiple
-- of it with unused (-1) entries, 1-3 ranges, one and two warpgroups
local rcases = {
  -- device, heads, head dim, CH, WG, T, W, N, KS, P
  {"cpu", 16, 128, 64, 1, 2, 32, 50, 21, 3},
  {"cpu", 16, 128, 128, 2, 1, 16, 9, 40, 2},
  {"gpusim", 16, 128, 64, 1, 2, 16, 37, 21, 2},
  {"gpusim", 16, 128, 128, 2, 1, 32, 19, 16, 1},
}
for n, cs in ipairs(rcases) do
  local dev = ts.device(cs[1])
  local H, c, CH, WG, T, W, N, KS, P = table.unpack(cs, 2)
  local what = string.format("ring case %d (%s, WG %d, P %d, ring DEC2 %s)", n, cs[1], WG, P,
                             n % 2 == 0)
  local E, kernel = row_bytes(c), kernels_on(dev)
  local ring = kv_rows(dev, W, c, 71 + n, "bf16")
  local comp = kv_rows(dev, N, c, 81 + n, "bf16")
  local r, qv, wv, sv = rand(91 + n), {}, {}, {}
  for i = 1, T * H * c do qv[i] = r() * 2 - 1 end
  for i = 1, T * W do wv[i] = r() < 0.2 and -1 or math.floor(r() * W) end
  for i = 1, T * KS do sv[i] = r() < 0.25 and -1 or math.floor(r() * N) end
  local q = ts.tensor("f32", {T, H, c}, qv):cast("bf16", dev)
  local win = ts.tensor("i32", {T, W}, wv):copy_to(dev)
  local sel = ts.tensor("i32", {T, KS}, sv):copy_to(dev)
  local params = {NH = H, DC = c, CH = CH, BK = 16, WG = WG, EB = E, ROPE = ROPE}
  -- the ring kernel decodes in one statement or two, the list's in the other
  -- (quant.tile kv8_rows: the same values)
  local ring_params = {DEC2 = n % 2 == 0}
  for k, v in pairs(params) do ring_params[k] = v end
  params.DEC2 = not ring_params.DEC2
  local function states(rows)
    return ts.tensor("f32", {rows, P, H, c}, nil, dev), ts.tensor("f32", {rows, P, H}, nil, dev),
      ts.tensor("f32", {rows, P, H}, nil, dev)
  end
  local po, pm, pl = states(T)
  kernel("sparse_attn.tile", "sparse_attn_split_kv8_ring", ring_params)
    :launch{q, ring, win, comp, sel, po, pm, pl}
  for t = 0, T - 1 do
    local list = ts.tensor("i8", {W + KS, E}, nil, dev)
    kernel("quant.tile", "kv_list"):launch{ring, comp, sel:slice(0, t, 1):reshape{KS}, list}
    local iv = {}
    for j = 1, W do iv[j] = wv[t * W + j] end
    for k = 1, KS do iv[W + k] = sv[t * KS + k] >= 0 and W + k - 1 or -1 end
    local a, b, d = states(1)
    kernel("sparse_attn.tile", "sparse_attn_split_kv8", params):launch{
      q:slice(0, t, 1), list, ts.tensor("i32", {1, W + KS}, iv):copy_to(dev), a, b, d}
    C.check(bitwise(po:slice(0, t, 1), a) and bitwise(pm:slice(0, t, 1), b) and
            bitwise(pl:slice(0, t, 1), d),
            string.format("%s token %d: partial states differ from sparse_attn_split_kv8 " ..
                          "over kv_list's list", what, t))
  end
end

-- The exact model's: sparse_attn_f32_kv8 (the window's rows from a ring's
-- bytes by slot, the selected entries' from the cache's by index, decoded
-- in f32) against sparse_attn_f32 over the f32 list a step made of them
-- (kv_unpack of the ring, kv_unpack_rows of the selection) with the same
-- index list: window slots with holes, W + k for a selection k (also one
-- whose entry is -1: a row of zeros that counts), -1, K no multiple of
-- the block; bit for bit; and sparse_attn_f32_pool over the same rows as
-- f32 at their rows of larger pools (the "f32" caches' batch), bit for bit
local fcases = {
  -- device, heads, head dim, T, W, N, KS, BK
  {"cpu", 4, 128, 3, 24, 50, 21, 16},
  {"cpu", 2, 192, 2, 16, 9, 40, 64},
  {"gpusim", 4, 128, 2, 16, 37, 21, 16},
  {"cpu", 32, 64, 2, 16, 30, 21, 16},
  {"gpusim", 32, 64, 1, 16, 30, 21, 16},
}
for n, cs in ipairs(fcases) do
  local dev = ts.device(cs[1])
  local H, c, T, W, N, KS, BK = table.unpack(cs, 2)
  local what = string.format("f32 case %d (%s)", n, cs[1])
  local kernel, K = kernels_on(dev), W + KS
  local ring8, ring = kv_rows(dev, W, c, 61 + n, "f32")
  local comp8 = kv_rows(dev, N, c, 67 + n, "f32")
  local r, qv, sv, iv, hv = rand(73 + n), {}, {}, {}, {}
  for i = 1, T * H * c do qv[i] = r() * 2 - 1 end
  for i = 1, T * KS do sv[i] = r() < 0.25 and -1 or math.floor(r() * N) end
  for t = 0, T - 1 do
    for j = 1, W do iv[t * K + j] = r() < 0.2 and -1 or math.floor(r() * W) end
    for k = 1, KS do
      -- a selection of -1 listed now and then (its row zeros, counted)
      local ok = sv[t * KS + k] >= 0 or r() < 0.3
      iv[t * K + W + k] = ok and W + k - 1 or -1
    end
  end
  for i = 1, H do hv[i] = r() - 0.5 end
  local q = ts.tensor("f32", {T, H, c}, qv):copy_to(dev)
  local sel = ts.tensor("i32", {T, KS}, sv):copy_to(dev)
  local idx = ts.tensor("i32", {T, K}, iv):copy_to(dev)
  local sink = ts.tensor("f32", {H}, hv):copy_to(dev)
  local params = {NH = H, DC = c, BK = BK, SCALE = c ^ -0.5}
  local want = ts.tensor("f32", {T, H, c}, nil, dev)
  -- sparse_attn_f32 (params p) over token t's list gathered and unpacked
  local function over_list(t, p, out)
    local list = ts.tensor("f32", {K, c}, nil, dev)
    list:slice(0, 0, W):assign(ring)
    kernel("quant.tile", "kv_unpack_rows", {ROPE = ROPE})
      :launch{comp8, sel:slice(0, t, 1):reshape{KS}, list:slice(0, W, KS)}
    kernel("sparse_attn.tile", "sparse_attn_f32", p)
      :launch{q:slice(0, t, 1), list, idx:slice(0, t, 1), sink, out:slice(0, t, 1)}
  end
  for t = 0, T - 1 do over_list(t, params, want) end
  params.ROPE = ROPE
  local got = ts.tensor("f32", {T, H, c}, nil, dev)
  kernel("sparse_attn.tile", "sparse_attn_f32_kv8", params)
    :launch{q, ring8, comp8, sel, idx, sink, got}
  C.check(bitwise(got, want), what .. ": differs from sparse_attn_f32 over the unpacked list")
  local g = got:to_table()
  C.check(g[1] == g[1] and g[1] ~= 0, what .. ": no output")
  -- sparse_attn_f32_pool: the same rows in f32 where they lie in pools
  -- (the ring's at rows rb .. of RR, the entries' from cb; the window's
  -- list entries as pool rows, a selection k as RR + k with its entry
  -- from cb on): the same bits
  local rb, cb, RR = 3, 5, W + 7
  local ringp = ts.tensor("f32", {RR, c}, nil, dev)
  ringp:slice(0, rb, W):assign(ring)
  local comp32 = ts.tensor("f32", {N, c}, nil, dev)
  kernel("quant.tile", "kv_unpack", {ROPE = ROPE, XT = "f32"}):launch{comp8, comp32}
  local compp = ts.tensor("f32", {N + cb + 2, c}, nil, dev)
  compp:slice(0, cb, N):assign(comp32)
  local iv2, sv2 = {}, {}
  for t = 0, T - 1 do
    for j = 1, W do
      local e = iv[t * K + j]
      iv2[t * K + j] = e >= 0 and e + rb or -1
    end
    for k = 1, KS do iv2[t * K + W + k] = iv[t * K + W + k] >= 0 and RR + k - 1 or -1 end
  end
  for i = 1, T * KS do sv2[i] = sv[i] >= 0 and sv[i] + cb or -1 end
  local got2 = ts.tensor("f32", {T, H, c}, nil, dev)
  kernel("sparse_attn.tile", "sparse_attn_f32_pool", {NH = H, DC = c, BK = BK, SCALE = c ^ -0.5})
    :launch{q, ringp, compp, ts.tensor("i32", {T, KS}, sv2):copy_to(dev),
            ts.tensor("i32", {T, K}, iv2):copy_to(dev), sink, got2}
  C.check(bitwise(got2, want), what .. ": sparse_attn_f32_pool differs from sparse_attn_f32 " ..
          "over the gathered list")
  -- HB: the heads in blocks of 16 or 8 (grid (T, H / HB)), what a decode
  -- step's token takes on the CPU (model/ops.lua O.attn_heads): each
  -- head's output the same bits, all three kernels
  for _, hb in ipairs{16, 8, 2, 1} do
    if H > hb and H % hb == 0 then
      local ph = {HB = hb}
      for k, v in pairs(params) do ph[k] = v end
      local a, b, d = ts.tensor("f32", {T, H, c}, nil, dev), ts.tensor("f32", {T, H, c}, nil, dev),
        ts.tensor("f32", {T, H, c}, nil, dev)
      kernel("sparse_attn.tile", "sparse_attn_f32_kv8", ph)
        :launch{q, ring8, comp8, sel, idx, sink, a}
      ph.ROPE = nil
      kernel("sparse_attn.tile", "sparse_attn_f32_pool", ph)
        :launch{q, ringp, compp, ts.tensor("i32", {T, KS}, sv2):copy_to(dev),
                ts.tensor("i32", {T, K}, iv2):copy_to(dev), sink, b}
      local t0 = T - 1 -- (sparse_attn_f32 over the last token's list)
      over_list(t0, ph, d)
      C.check(bitwise(a, want) and bitwise(b, want) and
              bitwise(d:slice(0, t0, 1), want:slice(0, t0, 1)),
              string.format("%s: HB %d differs from all %d heads a block", what, hb, H))
    end
  end
  -- pool_list_bf16 (the bf16 attention's batch over "f32" pools): token
  -- t's list entries, in order, as rows t K + j of one bf16 list (each the
  -- bf16 of the row it lists, zeros for a selection of -1), and its list
  -- lst[t, j] = t K + j, -1 where it lists none
  local list, lst = ts.tensor("bf16", {T * K, c}, nil, dev), ts.tensor("i32", {T, K}, nil, dev)
  kernel("sparse_attn.tile", "pool_list_bf16"):launch{ringp, compp,
    ts.tensor("i32", {T, K}, iv2):copy_to(dev), ts.tensor("i32", {T, KS}, sv2):copy_to(dev),
    list, lst}
  local lv, gv = list:to_table(), lst:to_table()
  local rv, cv, same = ring:to_table(), comp32:to_table(), true
  local function bf16(x) return ts.tensor("f32", {1}, {x}):cast("bf16"):to_table()[1] end
  for t = 0, T - 1 do
    for j = 1, K do
      local e, at = iv[t * K + j], t * K + j - 1
      same = same and gv[at + 1] == (e >= 0 and at or -1)
      local src = nil -- (the listed row's values, or zeros)
      if e >= 0 and j <= W then
        src = function(d) return rv[e * c + d] end
      elseif e >= 0 and sv[t * KS + j - W] >= 0 then
        src = function(d) return cv[sv[t * KS + j - W] * c + d] end
      end
      for d = 1, c, 17 do
        same = same and lv[at * c + d] == (src and bf16(src(d)) or 0)
      end
    end
  end
  C.check(same, what .. ": pool_list_bf16's list differs from the rows its tokens list")
end

-- a row too short for C and ROPE is refused by the kernel's assert
do
  local dev = ts.device("cpu")
  local q = ts.tensor("bf16", {1, 16, 128})
  local ok, msg = pcall(function()
    ts.kernel("kernels/sparse_attn.tile", "sparse_attn_split_kv8",
              {NH = 16, DC = 128, CH = 64, BK = 16, WG = 1, EB = 150}, dev):launch{
      q, ts.tensor("i8", {8, 150}), ts.tensor("i32", {1, 8}),
      ts.tensor("f32", {1, 1, 16, 128}), ts.tensor("f32", {1, 1, 16}),
      ts.tensor("f32", {1, 1, 16})}
  end)
  C.check(not ok and tostring(msg):find("too short"), "short rows: " .. tostring(msg))
end

-- the indexer over FP4 keys against indexer_scores_tc over the unpacked
-- keys in bf16 (tensor-core sizes: 64 heads x 128); query t sees keys
-- s <= t (RATIO 1), so T = S queries score every key
for n, cs in ipairs{{"cpu", 133, 133, 64}, {"cpu", 70, 70, 128}, {"gpusim", 75, 75, 64}} do
  local dev = ts.device(cs[1])
  local T, S, BS = cs[2], cs[3], cs[4]
  local HI, D = 64, 128
  local what = string.format("indexer case %d (%s, S %d, BS %d)", n, cs[1], S, BS)
  local function kernel(file, name, params)
    return ts.kernel("kernels/" .. file, name, params or {}, dev)
  end
  local x = rows(S, D, 40 + n):copy_to(dev)
  local bytes = ts.tensor("i8", {S, D // 2 + D // 32}, nil, dev)
  kernel("quant.tile", "fp4_pack"):launch{x, bytes}
  local unpacked = ts.tensor("f32", {S, D}, nil, dev)
  kernel("quant.tile", "fp4_unpack"):launch{bytes, unpacked}
  local r, qv, wv = rand(7 + n), {}, {}
  for i = 1, T * HI * D do qv[i] = r() * 2 - 1 end
  for i = 1, T * HI do wv[i] = r() - 0.3 end
  local q = ts.tensor("f32", {T, HI, D}, qv):cast("bf16", dev)
  local w = ts.tensor("f32", {T, HI}, wv):copy_to(dev)
  local params = {RATIO = 1, BS = BS}
  local o16 = ts.tensor("f32", {T, S}, nil, dev)
  kernel("indexer.tile", "indexer_scores_tc", params):launch{q, unpacked:cast("bf16"), w, o16}
  local o4 = ts.tensor("f32", {T, S}, nil, dev)
  kernel("indexer.tile", "indexer_scores_fp4_tc", params):launch{q, bytes, w, o4}
  C.check(bitwise(o4, o16), what .. ": scores differ from indexer_scores_tc's")
  -- the exact model's f32 form (decode: queries at their positions)
  local qf = ts.tensor("f32", {T, HI, D}, qv):copy_to(dev)
  local pv = {}
  for i = 1, T do pv[i] = (i * 37) % (S + 9) end
  local pos = ts.tensor("i32", {T}, pv):copy_to(dev)
  local f1 = ts.tensor("f32", {T, S}, nil, dev)
  local kb0 = ts.tensor("i32", {T}, nil, dev) -- (each query's keys from row 0)
  kernel("indexer.tile", "indexer_scores_f32", params):launch{qf, unpacked, w, pos, kb0, f1}
  local f2 = ts.tensor("f32", {T, S}, nil, dev)
  kernel("indexer.tile", "indexer_scores_fp4_f32", params):launch{qf, bytes, w, pos, f2}
  C.check(bitwise(f2, f1), what .. ": fp4_f32 scores differ from indexer_scores_f32's")
  -- and against f64 sums over the unpacked keys, at every 7th score
  local kv, fv, worst = unpacked:to_table(), f1:to_table(), 0
  for i = 0, T * S - 1, 7 do
    local t, s = i // S, i % S
    local want = -math.huge
    if s < pv[t + 1] + 1 then
      want = 0
      for h = 0, HI - 1 do
        local dot = 0
        for c = 0, D - 1 do dot = dot + qv[(t * HI + h) * D + c + 1] * kv[s * D + c + 1] end
        want = want + wv[t * HI + h + 1] * math.max(dot, 0)
      end
    end
    local got = fv[i + 1]
    if want == -math.huge then
      if got ~= want then worst = math.huge end
    else
      worst = math.max(worst, math.abs(got - want) / (math.abs(want) + 1e-3))
    end
  end
  C.check(worst < 1e-4, string.format("%s: indexer_scores_f32 vs f64: %.2e", what, worst))
  -- the queries in FP4 too (indexer_scores_fp4: exact integer sums a scale
  -- block): against f64 sums of the packed queries' and keys' values, and
  -- against indexer_scores_fp4_f32 over the same query values: each head's
  -- score is exact in both (these values' f32 sums need at most ~22 bits),
  -- so on the CPU, where both sum the heads in one order, they are equal
  -- bit for bit; on the GPU the tensor-core form sums the heads in wgmma's
  -- register layout (sm_90a), so there the two differ by at most the two
  -- orders' rounding: 2 (HI - 1) 2^-24 of the sum of the terms' sizes
  local P = D // 2 + D // 32
  local qb = ts.tensor("i8", {T * HI, P}, nil, dev)
  kernel("quant.tile", "fp4_pack"):launch{qf:reshape{T * HI, D}, qb}
  local qu = ts.tensor("f32", {T * HI, D}, nil, dev)
  kernel("quant.tile", "fp4_unpack"):launch{qb, qu}
  local f3 = ts.tensor("f32", {T, S}, nil, dev)
  kernel("indexer.tile", "indexer_scores_fp4", params)
    :launch{qb:reshape{T, HI, P}, bytes, w, pos, kb0, f3}
  -- FUSE (the CPU's form: the scale blocks' GEMMs, then one pass): each
  -- head's score the loop's, its block sums in the same order; the sum over
  -- the heads is reduce_sum's, whose order is the compiled code's (it may
  -- reassociate), so the two agree within two orders' rounding, 2 (HI - 1)
  -- 2^-24 of the sum of the terms' sizes (they are equal where the compiler
  -- chose one order: DK 128 on the CPU so far); 128- and 64-wide queries
  -- (four and two blocks)
  local quv0, kv0 = qu:to_table(), unpacked:to_table()
  for _, DK in ipairs{128, 64} do
    local fp = {FUSE = 1, DK = DK}
    for k, v in pairs(params) do fp[k] = v end
    local qd, kd = qb, bytes
    if DK ~= 128 then -- the first DK values of each row, packed again
      local P2 = DK // 2 + DK // 32
      local function head(t, n)
        local v, out = t:to_table(), {}
        for r = 0, n - 1 do
          for c = 1, DK do out[r * DK + c] = v[r * D + c] end
        end
        return ts.tensor("f32", {n, DK}, out):copy_to(dev)
      end
      qd = ts.tensor("i8", {T * HI, P2}, nil, dev)
      kd = ts.tensor("i8", {S, P2}, nil, dev)
      kernel("quant.tile", "fp4_pack"):launch{head(qu, T * HI), qd}
      kernel("quant.tile", "fp4_pack"):launch{head(unpacked, S), kd}
    end
    local loop, fused = ts.tensor("f32", {T, S}, nil, dev), ts.tensor("f32", {T, S}, nil, dev)
    local lp = {DK = DK, FUSE = 0}
    for k, v in pairs(params) do lp[k] = v end
    kernel("indexer.tile", "indexer_scores_fp4", lp)
      :launch{qd:reshape{T, HI, qd:shape(2)}, kd, w, pos, kb0, loop}
    kernel("indexer.tile", "indexer_scores_fp4", fp)
      :launch{qd:reshape{T, HI, qd:shape(2)}, kd, w, pos, kb0, fused}
    local lv, fv, worst = loop:to_table(), fused:to_table(), 0
    for i = 0, T * S - 1 do
      if lv[i + 1] ~= fv[i + 1] then
        local t, s = i // S, i % S
        local size = 0
        if s < pv[t + 1] + 1 and i % 7 == 0 then
          for h = 0, HI - 1 do
            local dot = 0
            for c = 0, DK - 1 do dot = dot + quv0[(t * HI + h) * D + c + 1] * kv0[s * D + c + 1] end
            size = size + math.abs(wv[t * HI + h + 1] * math.max(dot, 0))
          end
          worst = math.max(worst, math.abs(lv[i + 1] - fv[i + 1]) / (2 * (HI - 1) * 2 ^ -24 * size))
        elseif s >= pv[t + 1] + 1 or lv[i + 1] ~= lv[i + 1] or fv[i + 1] ~= fv[i + 1] then
          worst = math.huge -- (a masked score differs, or a NaN)
        end
      end
    end
    C.check(worst <= 1, string.format("%s: FUSE scores vs the loop's, DK %d: %.2f of the bound",
                                      what, DK, worst))
    -- (the default: FUSE on the CPU, the loop on a GPU: the kernel's
    -- params by `arch`)
    if DK == 128 then
      C.check(bitwise(cs[1] == "cpu" and fused or loop, f3), what .. ": DK 128 given")
    end
  end
  -- each query's keys at its own rows of a larger tensor (a batch's state
  -- pool, other keys around them): the same scores
  do
    local gap, bases = 3, {}
    local pool = ts.tensor("i8", {T * (S + gap) + gap, P}, nil, dev)
    kernel("quant.tile", "fp4_pack"):launch{rows(T * (S + gap) + gap, D, 5):copy_to(dev), pool}
    for t = 1, T do
      bases[t] = gap + (t - 1) * (S + gap) + (t % 2) -- (odd rows too)
      if bases[t] + S > T * (S + gap) + gap then bases[t] = bases[t] - 1 end
      pool:slice(0, bases[t], S):assign(bytes)
    end
    local f5 = ts.tensor("f32", {T, S}, nil, dev)
    kernel("indexer.tile", "indexer_scores_fp4", params)
      :launch{qb:reshape{T, HI, P}, pool, w, pos, ts.tensor("i32", {T}, bases, dev), f5}
    C.check(bitwise(f5, f3), what .. ": keys at each query's own rows of a pool: other scores")
    -- and the f32 keys (the "f32" caches' pool) so, into a wider out
    local pool32 = rows(T * (S + gap) + gap, D, 6):copy_to(dev)
    for t = 1, T do pool32:slice(0, bases[t], S):assign(unpacked) end
    local f6 = ts.tensor("f32", {T, S + 70}, nil, dev)
    kernel("indexer.tile", "indexer_scores_f32", params)
      :launch{qf, pool32, w, pos, ts.tensor("i32", {T}, bases, dev), f6}
    local f1v, f6v, same32 = f1:to_table(), f6:to_table(), true
    for t = 0, T - 1 do
      for s = 0, S - 1 do same32 = same32 and f6v[t * (S + 70) + s + 1] == f1v[t * S + s + 1] end
    end
    C.check(same32, what .. ": f32 keys at each query's own rows of a pool: other scores")
  end
  local f4 = ts.tensor("f32", {T, S}, nil, dev)
  kernel("indexer.tile", "indexer_scores_fp4_f32", params)
    :launch{qu:reshape{T, HI, D}, bytes, w, pos, f4}
  local quv, f3v, f4v = qu:to_table(), f3:to_table(), f4:to_table()
  local worst3, worst4, same, order = 0, 0, 0, 0
  for i = 0, T * S - 1 do
    local t, s = i // S, i % S
    if f3v[i + 1] == f4v[i + 1] then same = same + 1 end
    if i % 7 == 0 then
      if s < pv[t + 1] + 1 then
        local want, size = 0, 0
        for h = 0, HI - 1 do
          local dot = 0
          for c = 0, D - 1 do dot = dot + quv[(t * HI + h) * D + c + 1] * kv[s * D + c + 1] end
          want = want + wv[t * HI + h + 1] * math.max(dot, 0)
          size = size + math.abs(wv[t * HI + h + 1] * math.max(dot, 0))
        end
        local den = math.abs(want) + 1e-3
        order = math.max(order, math.abs(f3v[i + 1] - f4v[i + 1]) / (2 * (HI - 1) * 2 ^ -24 * size + 1e-30))
        worst3 = math.max(worst3, math.abs(f3v[i + 1] - want) / den)
        worst4 = math.max(worst4, math.abs(f4v[i + 1] - want) / den)
      elseif f3v[i + 1] ~= -math.huge then
        worst3 = math.huge
      end
    end
  end
  C.check(worst3 < 1e-5, string.format("%s: indexer_scores_fp4 vs f64: %.2e (fp4_f32 %.2e)",
                                       what, worst3, worst4))
  if cs[1] == "cpu" then
    C.check(same == T * S, string.format("%s: indexer_scores_fp4 equals fp4_f32 at %d of %d",
                                         what, same, T * S))
  end
  C.check(order <= 1, string.format("%s: indexer_scores_fp4 vs fp4_f32: %.2f of the head sums' "
                                    .. "rounding (%d of %d equal)", what, order, same, T * S))
  -- WSCALE (the model's DI^-1/2 HI^-1/2 on the weights as they are read):
  -- the bits of the weights scaled by convert_rows' SCALE first, both forms
  local sc = D ^ -0.5 * HI ^ -0.5
  local ws = ts.tensor("f32", {T, HI}, nil, dev)
  kernel("embed.tile", "convert_rows", {XT = "f32", YT = "f32", SCALE = sc}):launch{w, ws}
  local scaled = {RATIO = 1, BS = BS, WSCALE = sc}
  for _, form in ipairs{{"indexer_scores_f32", qf, unpacked, kb0},
                        {"indexer_scores_fp4", qb:reshape{T, HI, P}, bytes, kb0}} do
    local a, b = ts.tensor("f32", {T, S}, nil, dev), ts.tensor("f32", {T, S}, nil, dev)
    local function args(wt, o)
      if form[4] then return {form[2], form[3], wt, pos, form[4], o} end
      return {form[2], form[3], wt, pos, o}
    end
    kernel("indexer.tile", form[1], scaled):launch(args(w, a))
    kernel("indexer.tile", form[1], params):launch(args(ws, b))
    C.check(bitwise(a, b), what .. ": " .. form[1] .. " WSCALE differs from the scaled weights'")
  end
  local finite = 0
  for _, v in ipairs(o4:to_table()) do if v > -math.huge then finite = finite + 1 end end
  C.check(finite == T * (T + 1) // 2, what .. ": " .. finite .. " scores")
end

do
  local ok, msg = pcall(function()
    ts.kernel("kernels/indexer.tile", "indexer_scores_fp4_tc", {RATIO = 1}, ts.device("cpu")):launch{
      ts.tensor("bf16", {1, 64, 128}), ts.tensor("i8", {4, 64}), ts.tensor("f32", {1, 64}),
      ts.tensor("f32", {1, 4})}
  end)
  C.check(not ok and tostring(msg):find("FP4 key"), "short FP4 keys: " .. tostring(msg))
end

C.finish()
