-- moe.lua - DeepSeekMoE (V4-SPEC 1.9): the router and the experts.
local ts = require "tessera"
local O = require "model.ops"
local kernel = O.kernel

-- The tensors `suffix` of a layer's routed experts (p .. "experts.E." ..
-- suffix for E = 0 .. n - 1) stacked [n, ...] on the model's device, in
-- the file's dtype: each copied into its slice, not through Lua values (a
-- V4-Flash layer's experts are 3 x 256 matrices of 8M weights).
local function stack(self, p, suffix, n)
  local dtype, s = self.file:info(p .. "experts.0." .. suffix)
  local out = O.tensor(dtype, {n, s[1], s[2]})
  for e = 0, n - 1 do -- (from the mapped file into the slice: one copy)
    self.file:read_into(p .. "experts." .. e .. "." .. suffix, out:slice(0, e, 1))
  end
  return out
end

-- (the kernels' params, each table made once: O.memo)
local gate_params = O.memo(function(hash, scale, route, BM)
  return {HASH = hash, ROUTE_SCALE = scale, ROUTE = route, BM = BM}
end)
local route_params = O.memo(function(BM) return {GATE = false, ROUTE = true, BM = BM} end)
local up_params = O.memo(function(BM, LIMIT, act, W, BN)
  return {BM = BM, LIMIT = LIMIT, ACT = act, W = W, BN = BN}
end)
local down_params = O.memo(function(BM, act, ADD, W, BN)
  return {BM = BM, ACT = act, ADD = ADD, W = W, BN = BN}
end)
local up_tc_params = O.memo(function(BM, LIMIT) return {BM = BM, LIMIT = LIMIT} end)
local down_tc_params = O.memo(function(BM) return {BM = BM} end)
local shared_one -- (below)

-- The shared expert's tile columns for a decode step's few rows (T, in
-- tiles of BM) on a GPU, its matrices I x DM of `bytes` a weight (on the
-- CPU O.experts_bn's, the routed experts'): 8 where the default 32
-- would leave it too few blocks for its weight stream (one expert: I / 32
-- blocks, 64 at V4-Flash's width 2048, each reading its rows tile after
-- tile; the routed experts' K of them are K times as many) and the
-- weights are large (O.gemv_blocks, O.gemv_split_bytes: a GPU's decode
-- linears split K instead, model/ops.lua); else nil (the default). The
-- sums step K by 128 whatever BN: the same bits.
local function shared_bn(T, BM, I, DM, bytes)
  if not O.on_gpu() then return O.experts_bn(BM, bytes == 1 and "fp8" or "bf16") end
  if T > 8 or I * DM * bytes < O.gemv_split_bytes or
     (I + 31) // 32 >= O.gemv_blocks then
    return nil
  end
  return 8
end

-- The router and the routing of x's T tokens: their logits by a GEMM
-- (O.linear over the bf16 gate weight as stored: linear_f32, f32 sums,
-- many blocks, where moe_router's one a token read all of it), moe_gate's
-- experts and weights, and the slots (t, k) sorted by expert with the tile
-- table of BM rows of one expert (moe.tile's grouped form). One token (a
-- decode step's) is gated and routed by one launch of moe_gate (GATE and
-- ROUTE: one block); more are gated a block a token, and up to 64 slots (a
-- batch's) routed by a second launch (ROUTE alone: a block scans them, no
-- counters to zero; gating several tokens one after another in that block
-- would cost more than the launch), more by moe_count, moe_offsets and
-- moe_scatter. Returns experts, weights, sorted, offsets, tiles.
local function route(x, gate, bias, ids, t2e, hash, scale, K, E, BM)
  local T = x:shape(1)
  local TK = T * K
  local MT = (TK + BM - 1) // BM + E
  local experts, weights = O.out({T, K}, "i32"), O.out{T, K}
  local lg = O.linear(x, gate)
  local args = {lg, bias, ids, t2e, experts, weights}
  local few = TK <= 64
  local offsets, tiles, sorted
  if few then
    offsets, tiles, sorted = O.out({E}, "i32"), O.out({MT, 3}, "i32"), O.out({TK}, "i32")
  else
    offsets, tiles, sorted = O.tensor("i32", {E}), O.tensor("i32", {MT, 3}), O.tensor("i32", {TK})
  end
  args[7], args[8], args[9] = offsets, tiles, sorted
  kernel("moe.tile", "moe_gate", gate_params(hash, scale, T == 1, BM)):launch(args)
  if T == 1 then return experts, weights, sorted, offsets, tiles end
  if few then
    kernel("moe.tile", "moe_gate", route_params(BM)):launch(args)
  else
    local counts, cursor = O.tensor("i32", {E}), O.tensor("i32", {E})
    kernel("moe.tile", "moe_count"):launch{experts, counts}
    kernel("moe.tile", "moe_offsets", {BM = BM}):launch{counts, offsets, tiles}
    kernel("moe.tile", "moe_scatter"):launch{experts, offsets, cursor, sorted}
  end
  return experts, weights, sorted, offsets, tiles
end

-- The quantised experts' grouped GEMMs moe_up_NAME + moe_down_NAME over
-- the table g = {sorted, offsets, tiles, weights} into out [R, DM] (R
-- slots): up = {w1, s1, w3, s3}, down = {w2, s2}. The activations are
-- quantised per 1 x 128 block by act_quant first (x once, unless the
-- caller hands its xq, sx in; then each slot's hidden row), as e4m3 codes
-- for the tensor-core forms (codes); with act the kernels quantise them as
-- they load them instead (ACT: the same bits, a launch fewer each, and the
-- scales' place is not read). With add (moe_down_fp8's: the routed slots'
-- rows, K a slot) the down GEMM adds them to each row (moe_combine's
-- sums). BN: the GEMMs' tile columns (nil: their default). Returns x's
-- quantisation xq, sx (xq nil with act).
local function quant_up_down(name, BM, LIMIT, act, codes, x, xq, sx, g, up, down, out, add, K,
                             BN)
  local T, DM, R, I = x:shape(1), x:shape(2), out:shape(1), up[1]:shape(2)
  local DB, IB = (DM + 127) // 128, (I + 127) // 128
  local aq, dt = codes and O.codes_params or nil, codes and "fp8e4m3" or "f32"
  local h, sh = O.out{R, I}, O.out{R, 1, IB}
  local xa, hq = x, h
  sx = sx or O.out{T, 1, DB}
  if not act then
    if not xq then
      xq = O.out({T, 1, DM}, dt)
      kernel("quant.tile", "act_quant", aq):launch{x:reshape{T, 1, DM}, xq, sx}
    end
    xa = xq
  end
  kernel("moe.tile", "moe_up_" .. name, up_params(BM, LIMIT, act, nil, BN)):launch{
    xa:reshape{T, DM}, sx:reshape{T, DB}, g[1], g[2], g[3], g[4], up[1], up[2], up[3], up[4], h}
  if not act then
    hq = O.out({R, 1, I}, dt)
    kernel("quant.tile", "act_quant", aq):launch{h:reshape{R, 1, I}, hq, sh}
  end
  local args = {hq:reshape{R, I}, sh:reshape{R, IB}, g[1], g[2], g[3], down[1], down[2], out}
  -- (moe_down_fp8 takes an add, read only with ADD > 0: else x stands in)
  if name == "fp8" then args[9] = add or x end
  kernel("moe.tile", "moe_down_" .. name, down_params(BM, act, add and K or nil, nil, BN))
    :launch(args)
  return xq, sx
end

-- The bf16 experts' grouped GEMMs on tensor cores (moe_up_tc + moe_down_tc:
-- xb [T, DM] in bf16, the hidden rows rounded to bf16, the sums in f32)
-- over the table g = {sorted, offsets, tiles of O.moe_tc_rows rows,
-- weights} and the stacked w = {w1, w2, w3} into out [R, DM].
local function tc_up_down(xb, g, w, out, LIMIT)
  local h = O.out({out:shape(1), w[1]:shape(2)}, "bf16")
  local BM = O.moe_tc_rows
  kernel("moe.tile", "moe_up_tc", up_tc_params(BM, LIMIT)):launch{
    xb, g[1], g[2], g[3], g[4], w[1], w[3], h}
  kernel("moe.tile", "moe_down_tc", down_tc_params(BM)):launch{h, g[1], g[2], g[3], w[2], out}
end

-- The shared expert's three bf16 matrices as one expert's stack [1, ...]
-- (made once, kept in its record r).
function shared_one(r, DM)
  if not r.one then
    local I = r[1]:shape(1)
    r.one = {r[1]:reshape{1, I, DM}, r[2]:reshape{1, DM, I}, r[3]:reshape{1, I, DM}}
  end
  return r.one
end

return function(M)

-- Whether a prefill's bf16 experts (8 tokens or more) run on the tensor
-- cores with bf16 activations (moe_up_tc + moe_down_tc, the shared expert
-- too; the hidden rows rounded to bf16, the sums in f32, as the
-- reference's bf16 experts): by default on a GPU with bf16 tensor cores
-- (O.bf16_tensor_cores) unless the model was loaded with tf32 = false; the
-- option moe = "f32" turns it off, "bf16" on, on any device (the CPU runs
-- the same kernels). A decode step's few rows keep the f32 forms (read
-- bound: the weights' bytes are the same).
function M:bf16_moe()
  local a = self.moe_dtype
  if a == nil then return self.tf32 and O.bf16_tensor_cores() end
  return a == "bf16"
end

-- The routed experts' weights stacked [E, ...] in bf16, as the file holds
-- them: w1, w2, w3.
function M:bf16_experts(p, E)
  if not self.w[p .. "w1"] then
    for m = 1, 3 do self.w[p .. "w" .. m] = stack(self, p, "w" .. m .. ".weight", E) end
  end
  return self.w[p .. "w1"], self.w[p .. "w2"], self.w[p .. "w3"]
end

-- The format the routed experts of ffn prefix p run in: the file's when it
-- holds them quantised, else the experts option ("bf16", "fp8", "fp4").
function M:routed_format(p)
  return self.quant[p .. "experts.0.w1.weight"] or self.experts
end

-- The routed experts quantised (fmt "fp4": the released instruct
-- checkpoints' format, quant.tile fp4_block_quant: e2m1 codes, a ue8m0
-- scale per 1 x 32 block of a row; "fp8": the Base checkpoints',
-- fp8_block_quant per expert: e4m3 codes, a scale per 128 x 128 block):
-- the file's codes and scales when it holds them, else quantised from its
-- values at first use: {q1, s1, q2, s2, q3, s3}, stacked [E, ...].
function M:quant_experts(p, E, fmt)
  local key = fmt .. ":" .. p
  if not self.w[key] then
    local t = {}
    for m = 1, 3 do
      local w = "w" .. m .. ".weight"
      local codes = stack(self, p, w, E)
      local shape = codes:shape()
      if self.quant[p .. "experts.0." .. w] then
        -- the file's codes and scales (ue8m0 bytes decoded)
        t[2 * m - 1], t[2 * m] = codes, O.scale_values(stack(self, p, (w:gsub("weight$", "scale")), E))
      else
        local N, K = shape[2], shape[3]
        local q = O.tensor(fmt == "fp4" and "i8" or "fp8e4m3",
                           fmt == "fp4" and {E, N, K // 2} or shape)
        local s = O.f32(fmt == "fp4" and {E, N, K // 32} or {E, (N + 127) // 128, (K + 127) // 128})
        kernel("quant.tile", fmt .. "_block_quant"):launch{codes:cast("f32", self.dev), q, s}
        t[2 * m - 1], t[2 * m] = q, s
      end
    end
    self.w[key] = t
  end
  return self.w[key]
end

-- The table of T tokens' one slot each (weight 1) through one expert, in
-- tiles of BM rows: sorted, weights, offsets, tiles (kept for the few-token
-- calls of decode steps, by BM then T).
function M:shared_table(T, BM)
  local kept = T <= 64 and self:records("shared_tables")
  local by_T = kept and (kept[BM] or {})
  if kept then kept[BM] = by_T end
  local tab = by_T and by_T[T]
  if not tab then
    local all, ones = {}, {}
    for t = 1, T do all[t], ones[t] = t - 1, 1.0 end
    tab = {O.tensor("i32", {T}, all), O.tensor("f32", {T, 1}, ones), O.tensor("i32", {1}),
           O.tensor("i32", {(T + BM - 1) // BM + 1, 3})}
    kernel("moe.tile", "moe_offsets", {BM = BM}):launch{O.tensor("i32", {1}, {T}), tab[3], tab[4]}
    if by_T then by_T[T] = tab end
  end
  return tab[1], tab[2], tab[3], tab[4]
end

-- The shared expert: every token's one slot, weight 1, through the
-- routed experts' kernels (one expert, tiles of BM tokens). In FP8
-- (M:is_fp8: the file holds it so, or linears = "fp8") through the FP8
-- experts' (moe_up_fp8, moe_down_fp8 over its linears' weights, which are
-- one expert's format: the same bits as its three FP8 linears and
-- moe_swiglu, a power-of-two scale applied before the block sums instead
-- of after), with x's quantisation xq, sx when the routed experts made it
-- (else its own, or with act true none: the kernels' ACT form quantises as
-- it loads); a prefill on FP8 tensor cores keeps the linears (gemm_fp8).
-- With out (the routed slots' rows [T K, DM], K a token) the down GEMM
-- adds each token's K rows to its row, as moe_combine would (the same
-- bits, a launch fewer): returns the layer's y and true; the linears' form
-- returns the shared expert's rows alone.
function M:shared_expert(p, x, BM, LIMIT, tc, act, xq, sx, out, K, xb)
  local T, DM = x:shape(1), x:shape(2)
  local r = self:shared_weights(p)
  if xb and not r.fp8 then -- (bf16 on the tensor cores, as the routed experts)
    local sorted, weights, offsets, tiles = self:shared_table(T, O.moe_tc_rows)
    local y = O.out{T, DM}
    tc_up_down(xb, {sorted, offsets, tiles, weights}, shared_one(r, DM), y, LIMIT)
    return y, false
  end
  if r.fp8 then
    if tc then
      local g, u = O.linear(x, r[1]), O.linear(x, r[3])
      local h = O.out(g:shape())
      kernel("moe.tile", "moe_swiglu", {LIMIT = LIMIT}):launch{g, u, h}
      return O.linear(h, r[2]), false
    end
    local w1, w2, w3 = r[1], r[2], r[3]
    local sorted, weights, offsets, tiles = self:shared_table(T, BM)
    local y = O.out{T, DM}
    quant_up_down("fp8", BM, LIMIT, act, false, x, xq, sx, {sorted, offsets, tiles, weights},
                  {w1.q, w1.s, w3.q, w3.s}, {w2.q, w2.s}, y, out, K, shared_bn(T, BM, w1.n, DM, 1))
    return y, out ~= nil
  end
  local one = shared_one(r, DM)
  local sorted, weights, offsets, tiles = self:shared_table(T, BM)
  local I, W = one[1]:shape(2), one[1]:dtype()
  local BN = shared_bn(T, BM, I, DM, W == "bf16" and 2 or 4)
  local h, y = O.out{T, I}, O.out{T, DM}
  kernel("moe.tile", "moe_up", up_params(BM, LIMIT, nil, W, BN)):launch{
    x, sorted, offsets, tiles, weights, one[1], one[3], h}
  kernel("moe.tile", "moe_down", down_params(BM, nil, out and K or nil, one[2]:dtype(), BN))
    :launch{h, sorted, offsets, tiles, one[2], y, out or x}
  return y, out ~= nil
end

-- Layer L's MoE weights, looked up once (M:moe runs once a layer each
-- decode step; names built per call were a part of its host time): p (the
-- ffn prefix), hash, fmt (M:routed_format's), the router's gate, bias and
-- t2e (M:constants' stand-ins in the layers that do not read them), then
-- at first use experts (the routed experts' tensors). Kept by the model (a
-- sequence's are its model's).
function M:moe_layer(L)
  local recs = self:records("moe")
  local r = recs[L]
  if not r then
    local cfg, p = self.cfg, self:prefix(L) .. "ffn."
    local hash = L < cfg.n_hash_layers and L < cfg.n_layers
    local none = self:constants()
    r = {p = p, hash = hash, fmt = self:routed_format(p), gate = self:raw(p .. "gate.weight"),
         bias = hash and none.zero_bias or self:weight(p .. "gate.bias"),
         t2e = hash and self:ints(p .. "gate.tid2eid") or none.no_t2e}
    recs[L] = r
  end
  return r
end

-- The shared expert of ffn prefix p, looked up once: {fp8 = M:is_fp8's
-- answer, its w1, w2, w3} (M:lweight's FP8 weights, else M:raw's).
function M:shared_weights(p)
  local recs = self:records("shared")
  local r = recs[p]
  if not r then
    local n = p .. "shared_experts.w"
    local fp8 = self:is_fp8(n .. "1.weight")
    local get = fp8 and self.lweight or self.raw
    r = {fp8 = fp8, get(self, n .. "1.weight"), get(self, n .. "2.weight"),
         get(self, n .. "3.weight")}
    recs[p] = r
  end
  return r
end

-- DeepSeekMoE (V4-SPEC 1.9): the router's K experts and weights of each
-- token, then the grouped form (kernels/moe.tile): the routed slots sorted
-- by expert, BM rows of one expert a tile (one-row tiles for a single
-- token: each expert has at most one of its rows), moe_up + moe_down over
-- the bf16 weights (K in steps of 128, so that a row's sums do not depend
-- on the tiles: prefill + decode gives prefill's bits), or with experts =
-- "fp4" / "fp8" (or such experts in the file) moe_up_FMT + moe_down_FMT
-- over the quantised weights, the activations quantised per 1 x 128 block
-- before each (x once for W1 and W3, each slot's swiglu output for W2), as
-- the reference's linears do; on a GPU with FP8 tensor cores
-- (O.fp8_tensor_cores) a prefill (8 tokens or more) runs them through
-- moe_up_FMT_tc + moe_down_FMT_tc instead (the activations as
-- e4m3 codes, tensor-core GEMMs over tiles of 64 rows: the same exact
-- products, summed per scale block as the reference's fp4_gemm and
-- fp8_gemm do). y = shared + slot 0 + ... + slot K - 1, which the shared
-- expert's down GEMM adds (ADD) where it runs in the grouped form, else
-- moe_combine. Returns y, the experts and their weights.
function M:moe(L, x, ids)
  local cfg, r = self.cfg, self:moe_layer(L)
  local p = r.p
  local T, K, DM = x:shape(1), cfg.n_activated_experts, x:shape(2)
  local E = cfg.n_routed_experts
  local LIMIT = cfg.swiglu_limit * 1.0
  -- (BM: the shared expert's tile rows, whose tiles every token fills)
  local BM, TK = T == 1 and 1 or O.moe_rows, T * K
  local fmt = r.fmt
  -- a GPU's prefill runs FP4 and FP8 experts on the tensor cores
  -- (moe_up_fp4_tc, _fp8_tc: e4m3 GEMMs, tiles of 64 rows, wgmma's M); its
  -- few rows otherwise (a decode step's, a batch's) quantise the
  -- activations as the GEMMs load them (ACT: the same bits as act_quant
  -- before, a launch fewer each), as O.linear_fp8 does
  local tc8 = T >= 8 and O.fp8_tensor_cores()
  local act = O.quantise_in_gemm(T, tc8) or nil
  local tc = fmt ~= "bf16" and tc8
  -- and bf16 experts on the tensor cores with bf16 activations (M:bf16_moe)
  local tc16 = fmt == "bf16" and T >= 8 and self:bf16_moe()
  local RB = tc and 64 or tc16 and O.moe_tc_rows or O.routed_rows(T, K, E)
  local xb -- (x in bf16, for the tensor-core forms)
  local experts, weights, sorted, offsets, tiles =
    route(x, r.gate, r.bias, ids, r.t2e, r.hash, cfg.route_scale * 1.0, K, E, RB)
  local out = O.out{TK, DM}
  local xq, sx -- (x's quantisation in f32, which the shared expert may take)
  if fmt ~= "bf16" then
    r.experts = r.experts or self:quant_experts(p, E, fmt)
    local w = r.experts
    xq, sx = quant_up_down(tc and fmt .. "_tc" or fmt, RB, LIMIT, act, tc, x, nil, nil,
                           {sorted, offsets, tiles, weights}, {w[1], w[2], w[5], w[6]},
                           {w[3], w[4]}, out, nil, nil, O.experts_bn(RB, fmt))
    if tc then xq = nil end -- (e4m3 codes: the shared expert keeps its linears then)
  elseif tc16 then
    r.experts = r.experts or {self:bf16_experts(p, E)}
    xb = O.convert(x, "bf16")
    tc_up_down(xb, {sorted, offsets, tiles, weights}, r.experts, out, LIMIT)
  else
    r.experts = r.experts or {self:bf16_experts(p, E)}
    local w1, w2, w3 = r.experts[1], r.experts[2], r.experts[3]
    local h = O.out{TK, w1:shape(2)}
    local BN = O.experts_bn(RB, fmt)
    kernel("moe.tile", "moe_up", up_params(RB, LIMIT, nil, nil, BN)):launch{
      x, sorted, offsets, tiles, weights, w1, w3, h}
    kernel("moe.tile", "moe_down", down_params(RB, nil, nil, nil, BN))
      :launch{h, sorted, offsets, tiles, w2, out, x}
  end
  -- the shared expert's down GEMM adds the routed rows (else moe_combine)
  local y, combined = self:shared_expert(p, x, BM, LIMIT, tc8, act, xq, sx, out, K, xb)
  if not combined then
    local sh = y
    y = O.out{T, DM}
    kernel("moe.tile", "moe_combine", {K = K}):launch{sh, out, y}
  end
  return y, experts, weights
end


end
