-- attention.lua - the attention of the three layer kinds (window-only, CSA
-- with the lightning indexer, HCA; V4-SPEC 1.3-1.7): prefill over a prompt,
-- and one decode step against the layer's state (4.2).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard
local concat_rows = O.concat_rows
local Cache = require "model.cache"

return function(M)

-- Whether the attention runs on tensor cores with bf16 queries and KV rows
-- (the softmax and the sums in f32, as the reference's bf16 kernels): a
-- prefill's window/CSA attention through sparse_attn_tc and its HCA
-- attention through hca_attn_tc (the output rounded to bf16), a decode
-- step's window/CSA attention through sparse_attn_split + the f32 merge
-- and its HCA attention, over the "fp8" caches, through
-- hca_attn_split_kv8 + the merge (over f32 caches it stays on
-- hca_attn_split_f32, split already). By default on a GPU
-- whose tensor cores take them (O.attn_tensor_cores) unless the model was
-- loaded with tf32 = false; the option attention = "f32" turns them off,
-- "bf16" on, on any device (the CPU runs the same kernels:
-- tests/lua/bf16_attention.lua). In the "fp8" cache format the KV rows are
-- exact in bf16 (e4m3 values times a power of two, rope dims bf16), so
-- only the queries and the probabilities round.
function M:bf16_attention()
  local a = self.attn_dtype
  if a == nil then
    return self.tf32 and O.attn_tensor_cores(self.cfg.n_heads, self.cfg.head_dim)
  end
  return a == "bf16"
end

-- The tensor-core attention kernels' params at this model's width: NH
-- heads as the GEMMs' M, CH of the DC output dims a block on two
-- warpgroups: all of them while the [NH, CH] f32 accumulator is at most
-- 128 KiB (V4-Flash: 64 x 512, in registers), else halves (V4-Pro's 128
-- heads: two blocks a query, each 128 x 256; at 128 x 512 the accumulator
-- would not fit the registers).
function M:tc_params()
  if not self.tc_attn then
    local c, H = self.cfg.head_dim, self.cfg.n_heads
    local CH = c
    while H * CH > 32768 and CH % 2 == 0 and CH > 64 do CH = CH // 2 end
    self.tc_attn = {NH = H, DC = c, CH = CH, SCALE = c ^ -0.5}
  end
  return self.tc_attn
end

-- (the f32 attention kernels' params, each table made once)
-- (hb: the heads a block, O.attn_heads; nil all)
local f32_attn_params = O.memo(function(H, c, hb)
  return {SCALE = c ^ -0.5, NH = H, DC = c, HB = hb}
end)
local f32_kv8_params = O.memo(function(H, c, rope, hb)
  return {SCALE = c ^ -0.5, NH = H, DC = c, ROPE = rope, HB = hb}
end)
local hca_f32_params = O.memo(function(H, c, R, kv8, rope)
  return {SCALE = c ^ -0.5, R = R, BK = math.min(R, 64), KV8 = kv8, ROPE = rope, NH = H, DC = c}
end)

-- sparse_attn_split_kv8's params: tc_params' with the "fp8" cache's row
-- bytes and rope dims (its blocks of 16 entries: sparse_attn_split's 32
-- took it past 255 registers on sm_90a; the rows' decode, DEC2, is the
-- kernels' default for the target)
function M:kv8_params()
  if not self.kv8_attn then
    local p = {}
    for k, v in pairs(self:tc_params()) do p[k] = v end
    local cfg = self.cfg
    p.EB = Cache.row_bytes("fp8", "kv", cfg.head_dim, cfg.rope_head_dim)
    p.ROPE = cfg.rope_head_dim
    self.kv8_attn = p
  end
  return self.kv8_attn
end

-- Each head of x [T, H, c] RMS-normalised (times w, or unweighted: the
-- queries), its rope dims rotated to positions pos: one launch
-- (rope.tile head_norm_rope; the same bits as head_rmsnorm or rmsnorm_f32,
-- then rope). In f32, or with bf16 true in bf16 (the bf16 attention's
-- queries: the bits O.convert of the f32 result gives, without its launch).
function M:norm_rope(x, w, tab, pos, bf16)
  if not w then
    if not self.ones then
      local v = {}
      for i = 1, x:shape(3) do v[i] = 1.0 end
      self.ones = O.tensor("f32", {#v}, v)
    end
    w = self.ones
  end
  local y = O.out(x:shape(), bf16 and "bf16" or "f32")
  kernel("rope.tile", "head_norm_rope", bf16 and O.bf16_out_params or O.f32_params)
    :launch{x, w, tab, pos, y}
  return y
end

-- Where a prefill's spans ({first row, rows} each; P > 0: one span
-- continuing a sequence after P positions) put their compressed entries
-- at compression ratio `ratio`: span k makes new[k] entries, rows eoff[k]
-- .. of the layer's new ones, and its tokens see held[k] (those before P
-- too); most: the largest held.
local function span_layout(spans, ratio, P)
  local lay = {P = P, eoff = {}, new = {}, held = {}, most = 0}
  local e = 0
  for k, sp in ipairs(spans) do
    local n = ratio > 0 and (P + sp[2]) // ratio - P // ratio or 0
    lay.eoff[k], lay.new[k], lay.held[k] = e, n, n + (ratio > 0 and P // ratio or 0)
    lay.most = math.max(lay.most, lay.held[k])
    e = e + n
  end
  return lay
end

-- An i32 tensor of f(k, t) for each token t (from 0) of each span k, in the
-- spans' rows; made once for a prefill's layers when `key` names it (kept
-- in the table `memo`: the prefill's spans, which every layer gets).
local function span_tokens(spans, f, memo, key)
  local made = memo and memo.tokens and memo.tokens[key]
  if made then return made end
  local v = {}
  for k, sp in ipairs(spans) do
    for t = 0, sp[2] - 1 do v[#v + 1] = f(k, t) end
  end
  made = O.tensor("i32", {#v}, v)
  if memo then
    memo.tokens = memo.tokens or {}
    memo.tokens[key] = made
  end
  return made
end

-- The spans' runs (k0 .. k1, rows first .. first + rows - 1) whose indexer
-- scores are one launch, [rows, N]: N the most keys of its spans; a run
-- takes the next span while its padding (a row's scores past its own
-- span's keys) stays within its own scores or O.score_pad of them.
local function score_runs(spans, lay)
  local runs, r = {}, nil
  for k, sp in ipairs(spans) do
    local n, N = sp[2], lay.held[k]
    if r then
      local rows, most, used = r.rows + n, math.max(r.N, N), r.used + n * N
      if rows * most - used <= math.max(used, O.score_pad) then
        r.rows, r.N, r.used, r.k1 = rows, most, used, k
      else
        r = nil
      end
    end
    if not r then
      r = {k0 = k, k1 = k, first = sp[1], rows = n, N = N, used = n * N}
      runs[#runs + 1] = r
    end
  end
  return runs
end

-- Attention of layer L over a prefill's rows x [T, d] at positions pos;
-- returns [T, d] and what it made (for the golden comparisons and the
-- decode caches, M:hand_off). With `spans` ({first row, rows} each) the
-- rows are the prompts of several sequences, each from position 0
-- (prefill_batch): every launch runs over all the rows at once (the
-- projections; each compressor pools every prompt's windows, compress_pool_at;
-- the indexer scores each prompt's queries against its own keys where
-- they lie, kbase; one top-k; one index-list launch and one attention over
-- one KV list of all the prompts' rows, then all their entries), each token
-- reading only its own prompt's rows and entries, so that each prompt's
-- results are its prefill's alone bit for bit; what it made is then a list,
-- one a span (views of the batch's tensors). With `P` > 0 the rows
-- continue this sequence after its first P positions (M:extend; pos P .. P
-- + T - 1, no spans): its state of layer L is the prefix (M:prefix_rows):
-- the window's rows before P, the entries and keys so far, and the
-- compressors' buffered rows of the windows the new rows complete; what
-- it made is then what the rows add to the state.
function M:attention(L, x, pos, spans, P)
  O.use(self.dev, self.tf32)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = self:pname(L, "attn.")
  local ratio = cfg.compress_ratios[L + 1]
  local T, H, W = x:shape(1), cfg.n_heads, cfg.window_size
  local tab = self:rope_table(ratio)
  local qr = rmsnorm(linear(x, self:lweight(p .. "wq_a.weight")),
                     self:weight(p .. "q_norm.weight"))
  -- (the queries in bf16 for the bf16 attention, which reads them so)
  local bf = self:bf16_attention()
  local q = self:norm_rope(linear(qr, self:lweight(p .. "wq_b.weight")):reshape{T, H, c}, nil,
                           tab, pos, bf)
  local kv = self:norm_rope(linear(x, self:lweight(p .. "wkv.weight")):reshape{T, 1, c},
                            self:weight(p .. "kv_norm.weight"), tab, pos):reshape{T, c}
  -- attention reads the entries as the caches hold them (in the "fp8"
  -- format: after the FP8 simulation, rope dims in bf16)
  local F, rd = self.kv_format, cfg.rope_head_dim
  local one = spans == nil
  spans = spans or {{0, T}}
  local pre = P and P > 0 and self:prefix_rows(L, P) or nil
  local lay = span_layout(spans, ratio, pre and P or 0)
  local made = {}
  local function rows(t, k) return one and t or t:slice(0, spans[k][1], spans[k][2]) end
  local function entries(t, k) return t:slice(0, lay.eoff[k], lay.new[k]) end
  for k in ipairs(spans) do made[k] = {kv = rows(kv, k)} end
  made.all = {kv = kv} -- (the batch's tensors, for M:hand_off_batch: entries and keys held)
  -- the KV list: the window's rows (the np before P, then the T new ones),
  -- then the compressed entries (those before P, then the new)
  local np = pre and pre.window:shape(1) or 0
  local list = Cache.simulate(F, "kv", kv, rd)
  if pre then list = concat_rows(pre.window, list) end
  local comps, sel
  if ratio > 0 then
    local cz = self:project(L, "compressor", x)
    local comp = self:pool_spans(L, "compressor", cz, spans, ratio, tab, pre, P)
    for k, m in ipairs(made) do
      m.projected, m.compressed = {compressor = rows(cz, k)}, entries(comp, k)
    end
    made.all.projected, comps = {compressor = cz}, comp
    if comp:shape(1) > 0 then comps, made.all.comp = Cache.simulate(F, "kv", comp, rd) end
    if pre then comps = concat_rows(pre.entries, comps) end
  end
  if ratio == 4 then
    -- the lightning indexer: each token's scores over its own keys, top-k
    -- (its buffer even before its first key)
    local icz = self:project(L, "indexer.compressor", x)
    for k, m in ipairs(made) do m.projected["indexer.compressor"] = rows(icz, k) end
    made.all.projected["indexer.compressor"] = icz
    if comps:shape(1) > 0 then
      local qi, w = self:indexer_inputs(L, qr, x, tab, pos)
      local keys = hadamard(self:pool_spans(L, "indexer.compressor", icz, spans, ratio, tab,
                                            pre, P))
      local held = F == "f32" and keys or Cache.packed(F, "key", keys)
      made.all.keys = held
      if pre then held = concat_rows(pre.keys, held) end
      sel = self:select_spans(ratio, qi, held, w, pos, spans, lay)
      for k, m in ipairs(made) do m.indexer_keys, m.topk = entries(keys, k), rows(sel, k) end
      list = concat_rows(list, comps)
    end
  end
  local sink = self:weight(p .. "attn_sink")
  local o = bf and O.out({T, H, c}, "bf16") or f32{T, H, c}
  local roped = false
  if ratio == 128 then
    -- HCA: the window gathered from the list, then each token's complete
    -- compressed entries read in place (hca_attn.tile) from its prompt's
    local win = self:span_lists(pos, nil, nil, W, np)
    local ncomp = span_tokens(spans, function(k, t)
      return math.min((lay.P + t + 1) // ratio, lay.held[k])
    end, spans, "ncomp" .. ratio)
    local cbase = span_tokens(spans, function(k) return lay.eoff[k] end, spans, "cbase" .. ratio)
    if bf then
      kernel("hca_attn.tile", "hca_attn_tc", self:tc_params()):launch{
        q, O.convert(list, "bf16"), win, O.convert(comps, "bf16"), ncomp, cbase, sink, o}
    else
      self:hca_attend(L, q, list, win, comps, ncomp, o, tab, pos, cbase, lay.most)
      roped = true
    end
  else
    -- index lists: the window (token t and the W - 1 before it), then the
    -- selected (CSA) compressed entries (rows from np + T on), -1 padded
    local K = W + (ratio == 4 and cfg.index_topk or 0)
    local ebase = sel and span_tokens(spans, function(k) return np + T + lay.eoff[k] end, spans,
                                      "ebase" .. ratio)
    local idx = self:span_lists(pos, sel, ebase, K, np)
    if bf then
      kernel("sparse_attn.tile", "sparse_attn_tc", self:tc_params())
        :launch{q, O.convert(list, "bf16"), idx, sink, o}
    else
      kernel("sparse_attn.tile", "sparse_attn_f32", f32_attn_params(H, c, O.attn_heads(T, H)))
        :launch{q, list, idx, sink, o}
    end
  end
  if bf then o = O.convert(o, "f32") end
  return self:attention_out(L, o, tab, pos, T, roped), one and made[1] or made
end

-- HCA attention of layer L into o [T, H, c]: the queries q [T, H, c] over
-- their windows (win [T, W], rows of kv, -1 = none) and over the first
-- ncomp[t] compressed entries (comp): kv [S, c] and comp [N, c] f32, or
-- both [., E] bytes as the "fp8" caches hold them, read in place. Split over ranges of
-- O.attn_range() entries (hca_attn_split_f32, then the merge; blocks of
-- up to 64 entries dividing a range), so that a long context's decode step
-- runs on every core (one block otherwise); the ranges are fixed by their
-- size, so a prefill and a decode step agree bit for bit. The merge
-- applies the output's inverse rope (tab, positions pos), which
-- attention_out then skips. Token t's entries are comp's rows from
-- cbase[t] (a batch's state pools; nil: from row 0), at most nmax of them
-- (nil: comp's rows).
function M:hca_attend(L, q, kv, win, comp, ncomp, o, tab, pos, cbase, nmax)
  local cfg, c, T = self.cfg, q:shape(3), q:shape(1)
  local N, R = nmax or comp:shape(1), O.attn_range()
  local kv8 = kv:dtype() == "i8"
  local none = self:constants() -- (the inputs of the format not held)
  local f, b = none.rows_f32, none.rows_i8
  self:split_attend(L, "hca_attn.tile", "hca_attn_split_f32",
                    hca_f32_params(q:shape(2), c, R, kv8, cfg.rope_head_dim),
                    math.max(1, (N + R - 1) // R),
                    {q, kv8 and f or kv, kv8 and kv or b, win, kv8 and f or comp, kv8 and comp or b,
                     ncomp, cbase or O.tensor("i32", {T})}, o, tab, pos)
end

-- hca_attn_split_kv8's ranges for a token over n compressed entries (and
-- the window's W rows): ranges of about O.attn_range() entries.
local function kv8_ranges(W, n) return math.max(1, (W + n) // O.attn_range()) end
M.kv8_ranges = kv8_ranges

-- Split attention of layer L into o [T, H, c]: kernel `name` of `file`
-- over P ranges of each query's entries (args, then its partial states
-- po, pm, pl), merged with the layer's sink by sparse_attn_merge, which
-- applies the inverse rope (tab, positions pos).
function M:split_attend(L, file, name, params, P, args, o, tab, pos)
  local T, H, c = o:shape(1), o:shape(2), o:shape(3)
  local po, pm, pl = O.out{T, P, H, c}, O.out{T, P, H}, O.out{T, P, H}
  local n = #args
  args[n + 1], args[n + 2], args[n + 3] = po, pm, pl
  kernel(file, name, params):launch(args)
  kernel("sparse_attn.tile", "sparse_attn_merge", O.merge_rope)
    :launch{po, pm, pl, self:weight(self:pname(L, "attn.attn_sink")), tab, pos, o}
end

-- The [T, K] index lists of a prefill's T tokens at positions pos (row
-- r0 + t of the KV list, its span's rows before it): token t's window,
-- then the rows ebase[t] + e of the selected compressed entries e (sel,
-- topk's [T, k] output) if any, -1 padded (kernels/sparse_attn.tile
-- sparse_index).
function M:span_lists(pos, sel, ebase, K, r0)
  local T = pos:shape(1)
  if not sel then
    local none = {}
    for i = 1, T do none[i] = -1 end
    sel = O.tensor("i32", {T, 1}, none)
  end
  local idx = O.out({T, K}, "i32")
  kernel("sparse_attn.tile", "sparse_index", {W = self.cfg.window_size})
    :launch{pos, sel, ebase or pos, idx, r0}
  return idx
end

-- The indexer's selection [T, index_topk] of a prefill's spans (lay:
-- span_layout's): each token's queries (qi, w; positions pos) scored
-- against its own span's keys where they lie in held (from row eoff[k]),
-- the top k of the first (position + 1) / ratio; a run of spans
-- (score_runs) one scores launch and one top-k.
function M:select_spans(ratio, qi, held, w, pos, spans, lay)
  local KS, T = self.cfg.index_topk, qi:shape(1)
  local runs = score_runs(spans, lay)
  local sel = #runs > 1 and O.out({T, KS}, "i32") or nil
  for _, r in ipairs(runs) do
    local part = {table.unpack(spans, r.k0, r.k1)}
    local function rows(t) return #runs > 1 and t:slice(0, r.first, r.rows) or t end
    local scores = f32{r.rows, math.max(r.N, 1)}
    self:index_scores(ratio, rows(qi), held, rows(w), rows(pos), scores,
                      #spans > 1 and span_tokens(part, function(k)
                        return lay.eoff[r.k0 + k - 1]
                      end, spans, "kbase" .. ratio .. ":" .. r.k0))
    local len = span_tokens(part, function(_, t) return (lay.P + t + 1) // ratio end, spans,
                            "len" .. ratio .. ":" .. r.k0)
    local s = O.topk(scores, len, KS, sel and rows(sel))
    sel = sel or s
  end
  return sel
end

-- The attention output o [T, H, c] of layer L: inverse RoPE (unless
-- `roped`: the merge applied it), then the grouped output projection.
function M:attention_out(L, o, tab, pos, T, roped)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = self:pname(L, "attn.")
  local H = cfg.n_heads
  if not roped then o = rope(o, tab, pos, true) end
  local G, dg = cfg.o_groups, cfg.o_lora_rank
  local z = O.out{T, G, dg}
  -- the tiles O.linear takes for T rows (prefill and decode round alike),
  -- the weights as M:lweight gives them (bf16 on the CPU)
  local w, tiles = self:lweight(p .. "wo_a.weight", G), O.linear_tiles(T)
  if O.is_fp8(w) then
    O.linear_fp8(o:reshape{T, G, H // G * c}, w, z)
  elseif O.tf32 and O.on_gpu() and T >= 8 and w:dtype() == "f32" then
    -- a GPU prefill's, as O.linear's: TF32 on tensor cores
    kernel("gemm.tile", "grouped_linear_tf32")
      :launch{o:reshape{T, G, H // G * c}, w:reshape{G, dg, H // G * c}, z}
  else
    kernel("gemm.tile", "grouped_linear_f32", w:dtype() == "bf16" and O.with_w16(tiles) or tiles)
      :launch{o:reshape{T, G, H // G * c}, w:reshape{G, dg, H // G * c}, z}
  end
  return linear(z:reshape{T, G * dg}, self:lweight(p .. "wo_b.weight"))
end


-- The lightning indexer's inputs for the rows of x [T, d] (qr its query
-- LoRA rows, at positions pos): the queries (RoPE, Hadamard) in the form
-- the scores read, and the head weights [T, HI] (index_scores scales them
-- by DI^-1/2 HI^-1/2 as it reads them). The queries: f32 [T, HI, DI] in
-- the "f32" format (hadamard.tile rope_hadamard, one launch); in "fp8"
-- the key cache's FP4 bytes [T, HI, DI / 2 + DI / 32], which is their
-- FP4 simulation (rope_hadamard_fp4: the same bytes as rope_hadamard and
-- fp4_pack, one launch where they made two). qrows and wrows: wq_b's
-- and weights_proj's rows when made already (M:linear_set'; qr is then
-- not read).
function M:indexer_inputs(L, qr, x, tab, pos, qrows, wrows)
  local cfg, p = self.cfg, self:pname(L, "attn.indexer.")
  local HI, DI = cfg.index_n_heads, cfg.index_head_dim
  local T = x:shape(1)
  local qi = (qrows or linear(qr, self:lweight(p .. "wq_b.weight"))):reshape{T, HI, DI}
  local qh
  if self.kv_format == "f32" then
    qh = O.out(qi:shape())
    kernel("hadamard.tile", "rope_hadamard", O.f32_params):launch{qi, tab, pos, qh}
  else
    qh = O.out({T, HI, Cache.row_bytes(self.kv_format, "key", DI)}, "i8")
    kernel("hadamard.tile", "rope_hadamard_fp4"):launch{qi, tab, pos, qh}
  end
  return qh, wrows or linear(x, self:lweight(p .. "weights_proj.weight"))
end

-- The indexer's scores [T, N] (compression ratio `ratio`) of the queries qi
-- and head weights w [T, HI] (both from indexer_inputs; the kernels scale
-- w by DI^-1/2 HI^-1/2, WSCALE) at positions pos over N keys as the key
-- cache holds them (f32 rows, or in "fp8" the FP4 bytes, as the queries
-- are: the scores are exact integer sums a scale block,
-- indexer_scores_fp4). Prefill and decode both score here, so a decode
-- step's scores are the prefill's. In "fp8" query t's keys start at row
-- kbase[t] of keys (a batch's state pool; nil: row 0).
function M:index_scores(ratio, qi, keys, w, pos, scores, kbase)
  local cfg = self.cfg
  local params = self.index_params
  if not params or params.RATIO ~= ratio then
    local HI, DI = cfg.index_n_heads, cfg.index_head_dim
    -- (indexer_scores_fp4's key blocks and FUSE: the kernel's defaults,
    -- which differ by target)
    params = {RATIO = ratio, NH = HI, DK = DI, WSCALE = DI ^ -0.5 * HI ^ -0.5}
    self.index_params = params
  end
  kernel("indexer.tile", self.kv_format == "f32" and "indexer_scores_f32" or "indexer_scores_fp4",
         params):launch{qi, keys, w, pos, kbase or O.tensor("i32", {pos:shape(1)}), scores}
end

-- fn(p, n) for each run of positions p .. p + n - 1 in a .. b - 1 whose
-- ring rows (position p in row p mod R) are contiguous: at most two when
-- b - a <= R.
local function ring_runs(a, b, R, fn)
  while a < b do
    local n = math.min(b - a, R - a % R)
    fn(a, n)
    a = a + n
  end
end

-- A cache of layer L in this sequence's slot of the model's pool `name`
-- (model/cache.lua Cache.pooled, in the model's format): `rows` rows to
-- begin with (R, the pool's rows a slot, when nil), so that a batch's
-- decode step writes every sequence's rows with one launch.
function M:pooled_cache(L, name, kind, width, rope, R, rows)
  local F = self.kv_format
  local pool = self:state_pool(L, name, F == "f32" and "f32" or "i8", R,
                               F == "f32" and width or Cache.row_bytes(F, kind, width, rope))
  return Cache.pooled(pool, self:slot(), F, kind, width, rope, rows)
end

-- A compressor's partial-window buffer of layer L (which) in this
-- sequence's slot of the model's pool: {pool, cz [R, width]} (f32).
function M:pooled_buffer(L, which, R, width)
  local b = {pool = self:state_pool(L, which, "f32", R, width)}
  b.pool:bind(self:slot(), b, "cz")
  return b
end

-- A sequence's new state of layer L after a prefill of T tokens (made:
-- M:attention's, for the entries' count and the compressors' widths): its
-- window ring, compressed entries and indexer keys, and each compressor's
-- buffer, in its slots of the model's pools, empty (M:hand_off and
-- M:hand_off_batch put the rows).
function M:new_state(L, T, made)
  local cfg = self.cfg
  local c, rd, ratio = cfg.head_dim, cfg.rope_head_dim, cfg.compress_ratios[L + 1]
  local st = {ring = self:pooled_cache(L, "ring", "kv", c, rd, cfg.window_size), buf = {}}
  if ratio > 0 then
    st.comp = self:pooled_cache(L, "comp", "kv", c, rd, 64, made.compressed:shape(1) + 64)
  end
  if ratio == 4 then
    st.keys = self:pooled_cache(L, "keys", "key", cfg.index_head_dim, 0, 64, T // ratio + 64)
  end
  for which, cz in pairs(made.projected or {}) do
    st.buf[which] = self:pooled_buffer(L, which, self.buffer_rows(ratio), cz:shape(2))
  end
  return st
end

-- The decode caches of layer L after a prefill (V4-SPEC 4.4's hand-off):
-- the window ring holds the last W KV rows at slot position mod W; the
-- compressed entries and indexer keys all made; each compressor's
-- partial-window buffer the last projected rows (4.3). With P > 0 the T
-- rows made continue the sequence after its first P positions (M:extend):
-- the layer's state takes what they add.
function M:hand_off(L, made, T, P)
  local W, ratio = self.cfg.window_size, self.cfg.compress_ratios[L + 1]
  P = P or 0
  -- rows of positions max(P, P + T - R) .. P + T - 1 of rows (made from
  -- position P) into put(first row, count, at), each at its ring row p mod
  -- R
  local function last_rows(R, put)
    ring_runs(math.max(P, P + T - R), P + T, R, function(p, n) put(p - P, n, p % R) end)
  end
  local st = P > 0 and self.state[L] or self:new_state(L, T, made)
  last_rows(W, function(first, n, at) st.ring:put(made.kv:slice(0, first, n), at) end)
  if ratio > 0 then st.comp:put(made.compressed, st.comp.n) end
  if ratio == 4 and made.indexer_keys then st.keys:put(made.indexer_keys, st.keys.n) end
  for which, cz in pairs(made.projected or {}) do
    -- the last rows, each in its ring row (position p in row p mod R)
    local b = st.buf[which]
    last_rows(self.buffer_rows(ratio), function(first, n, at)
      b.cz:slice(0, at, n):assign(cz:slice(0, first, n))
    end)
  end
  return st
end

-- M:hand_off of a prefill_batch's prompts, layer L (made: M:attention's
-- list over the spans, made.all the batch's tensors): each sequence's
-- caches made in its slots of the pools first, then each kind of row put
-- for all of them by one launch (embed.tile put_rows; the window's last
-- rows and the buffers' gathered first, rows_f32, and packed as the caches
-- hold them; the entries and the keys as the attention held them), where
-- each sequence's hand_off made its own: the same bytes.
function M:hand_off_batch(L, seqs, made, spans)
  local cfg, all = self.cfg, made.all
  local rd, W = cfg.rope_head_dim, cfg.window_size
  local ratio, F = cfg.compress_ratios[L + 1], self.kv_format
  local R = self.buffer_rows(ratio)
  for b, s in ipairs(seqs) do
    local n, m = spans[b][2], made[b]
    local st = s:new_state(L, n, m)
    st.ring.n = math.min(n, W)
    if st.comp then st.comp.n = m.compressed:shape(1) end
    if st.keys then st.keys.n = all.keys and m.indexer_keys:shape(1) or 0 end
    s.state[L] = st
  end
  -- (the pools' rows once every slot is bound: a bind may move a tensor)
  -- each span's rows of positions max(0, n - ring) .. n - 1 of x into
  -- row base + p mod ring of its slot in the pool of state field f
  local function last_rows(x, ring, f, pack)
    local src, dst = {}, {}
    for b, s in ipairs(seqs) do
      local first, n = spans[b][1], spans[b][2]
      local base = f(s.state[L]).pool:base(s:slot())
      for p = math.max(0, n - ring), n - 1 do
        src[#src + 1], dst[#dst + 1] = first + p, base + p % ring
      end
    end
    local rows = O.out{#src, x:shape(2)}
    kernel("embed.tile", "rows_f32"):launch{x, O.tensor("i32", {#src}, src), rows}
    f(seqs[1].state[L]).pool:put(pack and pack(rows) or rows, O.tensor("i32", {#dst}, dst))
  end
  last_rows(all.kv, W, function(st) return st.ring end,
            F ~= "f32" and function(x) return Cache.packed(F, "kv", x, rd) end)
  for which, cz in pairs(all.projected or {}) do
    last_rows(cz, R, function(st) return st.buf[which] end)
  end
  -- the entries (and keys), each span's in turn, from its slot's row 0
  local function entries(x, field)
    local dst = {}
    for b, s in ipairs(seqs) do
      local cache = s.state[L][field]
      for j = 0, cache.n - 1 do dst[#dst + 1] = cache.pool:base(cache.slot) + j end
    end
    if #dst > 0 then seqs[1].state[L][field].pool:put(x, O.tensor("i32", {#dst}, dst)) end
  end
  if all.comp then entries(all.comp, "comp") end
  if all.keys then entries(all.keys, "keys") end
end

-- What rows continuing a sequence after its first P positions read of its
-- state of layer L (M:attention's prefix): the window's rows before P
-- (window [np, c], positions P - np .. P - 1, np = min(P, W), as f32 the
-- cache's values), the compressed entries so far (entries [n, c] f32) and
-- the indexer's keys as held (keys: f32, or the packed FP4 rows), and the
-- state itself (buf: its compressors' buffers, M:pool_after).
function M:prefix_rows(L, P)
  local st, W = self.state[L], self.cfg.window_size
  if not st then error("extend: the sequence has no state of layer " .. L, 3) end
  local np = math.min(P, W)
  local window = O.out{np, self.cfg.head_dim}
  ring_runs(P - np, P, W, function(p, n)
    st.ring:get(p % W, n, window:slice(0, p - (P - np), n))
  end)
  local pre = {window = window, buf = st}
  if st.comp then
    local n = st.comp.n
    pre.entries = self.kv_format == "f32" and st.comp:view(0, n) or st.comp:get(0, n)
  end
  if st.keys then pre.keys = st.keys:view(0, st.keys.n) end
  return pre
end

-- Attention of layer L for one token at position t (x [1, d]), updating the
-- layer's state (step: as attention_steps').
function M:attention_step(L, x, t, step)
  return self:attention_steps(L, x, {self}, {t}, step)
end

-- The weight names of the linears over one input of the layer whose
-- attention weights are p .. NAME (prefix(L) .. "attn."), made once: its
-- x's (wq_a, wkv, and a CSA layer's indexer weights_proj) and its query
-- LoRA rows' (wq_b, and a CSA layer's indexer wq_b), M:linear_set' lists.
local names = {}
function M.names(p)
  local n = names[p]
  if not n then
    n = {x = {p .. "wq_a.weight", p .. "wkv.weight"}, qr = {p .. "wq_b.weight"}}
    n.x_csa = {n.x[1], n.x[2], p .. "indexer.weights_proj.weight"}
    n.qr_csa = {n.qr[1], p .. "indexer.wq_b.weight"}
    names[p] = n
  end
  return n
end

-- The linears of x [T, K] over the weights `names` (M:lweight's), a list
-- of their outputs [T, N_i]; with nw, of RMSNorm(x) with that weight. For
-- one row (a decode step's token) as one linear over the joined weights
-- (M:joined_lweight), the outputs views of its columns: the same values, a
-- launch (and FP8's act_quant) where there were #names; where all do not
-- join, the first #names - 1 joined if they do, the last apart (a CSA
-- layer's weights_proj is no FP8 weight in the released format, its wq_a
-- and wkv are). One row's norm goes into its joined (or only) linear
-- where O.norm_linear can (FP8 on a GPU: a launch fewer).
function M:linear_set(x, names, nw)
  local n, one = #names, x:shape(1) == 1
  local j, rows
  if one then
    if n > 1 then
      j, rows = self:joined_lweight(names)
    else
      j = self:lweight(names[1])
    end
  end
  if j then
    local y = nw and O.norm_linear(x, nw, j) or linear(x, j)
    if not rows then return {y} end
    local outs, at = {}, 0
    for i = 1, n do
      outs[i] = O.row_cols(y, at, rows[i])
      at = at + rows[i]
    end
    return outs
  end
  if nw then x = rmsnorm(x, nw) end
  local outs = {}
  if n > 2 and one then
    names.head = names.head or {table.unpack(names, 1, n - 1)}
    outs = self:linear_set(x, names.head)
  else
    for i = 1, n - 1 do outs[i] = linear(x, self:lweight(names[i])) end
  end
  outs[n] = linear(x, self:lweight(names[n]))
  return outs
end

-- A decode step's inputs that every layer would make alike, made once a
-- step: the positions' device tensor, each position's index list without
-- a selection (ring_index's, by length: the HCA and window-only layers'), and
-- small i32 tensors by value (the indexer's lengths, HCA's entry counts).
-- The decode loops make one (M.step_inputs()) and hand it to every layer;
-- a layer run alone makes its own.
function M.step_inputs() return {window = {}, ints = {}, pool_rows = {}} end

local ring_params = O.memo(function(W) return {W = W} end)
local lists_params = O.memo(function(W, sel) return {W = W, SEL = sel} end)
local kv_pack_params = O.memo(function(rope) return {ROPE = rope} end)

-- The index list [1, K] of position t (tp its device tensor [1]) without a
-- selection, made once a step (sparse_attn.tile ring_index: the window
-- ring's slots of positions t - W + 1 .. t, -1 padded to K).
local function window_list(step, W, K, t, tp, none)
  local lists = step.window[K] or {}
  step.window[K] = lists
  local ids = lists[t]
  if not ids then
    ids = O.out({1, K}, "i32")
    kernel("sparse_attn.tile", "ring_index", ring_params(W)):launch{tp, none.no_sel, ids}
    lists[t] = ids
  end
  return ids
end

-- The i32 tensor [1] holding v, made once a step; in a recorded step
-- (step.plan: model/graphs.lua) a value that changes with the position
-- (`name`) is the plan's slot of it, which each replay writes anew.
local function step_int(step, v, name)
  if name and step.plan then return step.plan:int(name, v) end
  local t = step.ints[v]
  if not t then
    t = O.tensor("i32", {1}, {v})
    step.ints[v] = t
  end
  return t
end

-- An i32 tensor [#values] of a step's values; in a recorded batch step
-- (step.vplan: model/graphs.lua) the plan's slot `name`, which f(c) fills
-- before each replay from the batch (c.seqs, c.pos_v, c.ids) as it is
-- before the step. Inside round r of a step of several rounds
-- (step.round_of, set by attention_steps: decode_rounds' rows) the slot
-- is that round's, filled from c.rounds[r] (its sequences and positions)
-- as the state is before that round.
function M.step_vals(step, name, values, f)
  local vp = step.vplan
  if not vp then return O.tensor("i32", {#values}, values) end
  local r = step.round_of
  if r then
    local of = f
    name, f = name .. " @" .. r, function(c) return of(c.rounds[r]) end
  end
  return vp:vals(step, name, values, f, r)
end

-- Whether the states of layer L of the sequences seqs lie in the model's
-- pools (their rings and compressor buffers: each made by hand_off).
function M:pooled_batch(L, seqs)
  local ring = seqs[1].state[L].ring.pool
  for _, s in ipairs(seqs) do
    local st = s.state[L]
    if not ring or st.ring.pool ~= ring then return false end
    for _, b in pairs(st.buf) do
      if not b.pool then return false end
    end
  end
  return true
end

-- The rows of a step's sequences in pool (model/cache.lua Cache.pool):
-- each slot's first row + position mod R (pos_v: the positions; R: the
-- pool's rows a slot, a ring's or a buffer's), or without pos_v each
-- slot's first row, as a device tensor [B]; made once a step for the rows
-- it holds (pools laid out alike share it).
local function pool_rows(step, seqs, pool, pos_v)
  local v = {}
  for b, s in ipairs(seqs) do v[b] = pool:base(s:slot()) + (pos_v and pos_v[b] % pool.rows or 0) end
  if step.vplan then
    local with = pos_v ~= nil
    return M.step_vals(step, "rows " .. tostring(pool) .. (with and " p" or ""), v, function(c)
      local r = {}
      for b, s in ipairs(c.seqs) do
        r[b] = pool:base(s:slot()) + (with and c.pos_v[b] % pool.rows or 0)
      end
      return r
    end)
  end
  local key = table.concat(v, ",")
  local rows = step.pool_rows[key]
  if not rows then
    rows = O.tensor("i32", {#seqs}, v)
    step.pool_rows[key] = rows
  end
  return rows
end

-- No selection for B tokens: [B, K] of -1 (K 1 when nil: attend_batch's
-- in a window or HCA layer), made once for the model and its sequences.
function M:no_selection(B, K)
  local root = rawget(self, "root") or self
  local k = root.no_sel or {}
  root.no_sel = k
  local key = B .. "x" .. (K or 1)
  if not k[key] then
    local v = {}
    for i = 1, B * (K or 1) do v[i] = -1 end
    k[key] = O.tensor("i32", {B, K or 1}, v)
  end
  return k[key]
end

local main_compressor, both_compressors = {"compressor"}, {"compressor", "indexer.compressor"}

-- Attention of layer L for one new token of each sequence seqs[b] (x [B, d]:
-- row b at position pos_v[b]), updating each sequence's state of layer L
-- (seqs[b].state[L]). The projections run over the B rows at once, and
-- where the states lie in the model's pools (hand_off's) the new ring rows
-- and compressor projections are stored with one launch each and the
-- windows completed pooled together (compress_batch); the indexer, top-k
-- and attention then run once for the batch (attend_batch), else (one
-- sequence) for the sequence (attend_step).
-- step: the step's shared inputs (M.step_inputs; pos_v the same every
-- layer), or nil. rounds: the rows' rounds ({first row, rows} each, in
-- turn; one round of all rows when nil), each round's sequences distinct:
-- a sequence's later tokens in later rounds (M:decode_rounds), each round
-- attending against the state the rounds before it left.
function M:attention_steps(L, x, seqs, pos_v, step, rounds)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = self:pname(L, "attn.")
  local ratio = cfg.compress_ratios[L + 1]
  local B, H, W = #seqs, cfg.n_heads, cfg.window_size
  local tab = self:rope_table(ratio)
  step = step or M.step_inputs()
  local pos = step.pos or M.step_vals(step, "pos", pos_v, function(c) return c.pos_v end)
  step.pos = pos
  -- the linears over x, and over the query LoRA rows qr, each set one
  -- linear for a single token (M:linear_set); the KV rows before kv_norm and
  -- rope (each sequence's ring row is normed, roped and stored in one
  -- launch, Cache:put_norm_rope)
  local n = M.names(p)
  local xs = self:linear_set(x, ratio == 4 and n.x_csa or n.x)
  local kv = xs[2]
  -- (the query LoRA rows qr = RMSNorm(xs[1]) made by the linears over them)
  local qs = self:linear_set(xs[1], ratio == 4 and n.qr_csa or n.qr,
                             self:weight(p .. "q_norm.weight"))
  -- (in bf16 for the bf16 attention's split forms; HCA's over f32 caches
  -- reads f32)
  local q = self:norm_rope(qs[1]:reshape{B, H, c}, nil, tab, pos,
                           (ratio ~= 128 or self.kv_format == "fp8") and self:bf16_attention())
  local qi, w
  if ratio == 4 then qi, w = self:indexer_inputs(L, nil, x, tab, pos, qs[2], xs[3]) end
  -- a round of a batch whose states lie in the model's pools: each
  -- sequence's new ring row, and each compressor's projections of the rows
  -- (one linear over all the step's rows: its weights read once a step, not
  -- once a sequence), stored with one launch each (the rows each sequence's
  -- attend_step stored before), the attention once for the round
  -- (attend_batch); else a token at a time (attend_step)
  local o, roped, proj = O.out{B, H, c}, nil, {}
  for r, rd in ipairs(rounds or {{0, B}}) do
    local r0, m = rd[1], rd[2]
    -- (a recorded step of several rounds: each round's own plan slots)
    step.round_of = step.vplan and rounds and #rounds > 1 and r or nil
    local whole = r0 == 0 and m == B
    local function rows(t)
      if whole or not t then return t end
      return t:slice(0, r0, m)
    end
    local rs = whole and seqs or table.move(seqs, r0 + 1, r0 + m, 1, {})
    local rp = whole and pos_v or table.move(pos_v, r0 + 1, r0 + m, 1, {})
    if m > 1 and self:pooled_batch(L, rs) then
      local st, rings, at = rs[1].state[L], {}, {}
      for b = 1, m do rings[b], at[b] = rs[b].state[L].ring, rp[b] % W end
      Cache.put_norm_rope_batch(st.ring.pool, rings, rows(kv), self:weight(p .. "kv_norm.weight"),
                                tab, rows(pos), at, pool_rows(step, rs, st.ring.pool, rp))
      if ratio > 0 then
        for _, which in ipairs(ratio == 4 and both_compressors or main_compressor) do
          local bufs = st.buf[which].pool
          proj[which] = proj[which] or self:project(L, which, x)
          bufs:put(rows(proj[which]), pool_rows(step, rs, bufs, rp))
        end
      end
      self:compress_batch(L, rs, rp, step)
      roped = self:attend_batch(L, rs, rp, rows(q), rows(qi), rows(w), rows(o), rows(pos), step)
    else
      for b = r0 + 1, r0 + m do
        local t, st, r = pos_v[b], seqs[b].state[L], b - 1
        if step.plan then step.plan.round = b end
        roped = self:attend_step(L, st, t, x:slice(0, r, 1), q:slice(0, r, 1),
                                 kv:slice(0, r, 1), qi and qi:slice(0, r, 1),
                                 w and w:slice(0, r, 1), o:slice(0, r, 1), pos:slice(0, r, 1),
                                 step, false)
      end
    end
  end
  step.round_of = nil
  return self:attention_out(L, o, tab, pos, B, roped)
end

-- The compressors' step of one token of a sequence (state st of layer L,
-- position t, tp its device tensor; its input row x, or nil where a batch
-- put its projections in the buffers; step: M.step_inputs'): a new indexer
-- key and compressed entry when t completes a window.
function M:step_compress(L, st, t, x, tp, step)
  local ratio = self.cfg.compress_ratios[L + 1]
  local tab, zero, plan = self:rope_table(ratio), step_int(step, 0), step.plan
  if ratio == 4 then
    local key = self:compress_step(L, "indexer.compressor", st, t, ratio, tab, x, tp, zero, plan)
    if key then st.keys:append(hadamard(key), plan and plan:row("keys" .. ratio)) end
  end
  if ratio > 0 then
    local entry = self:compress_step(L, "compressor", st, t, ratio, tab, x, tp, zero, plan)
    if entry then st.comp:append(entry, plan and plan:row("comp" .. ratio)) end
  end
end

-- The batch's sequences whose position completes a window of `ratio`.
local function completing(pos_v, ratio)
  local done = {}
  for b, t in ipairs(pos_v) do
    if (t + 1) % ratio == 0 then done[#done + 1] = b end
  end
  return done
end

-- (compress_batch's windows' rows, entry numbers and new rows of one
-- compressor, as its values or its plan's slots: step_vals)
local function batch_windows(self, ratio, seqs, pos_v, bufs)
  local wins, epos = {}, {}
  for k, b in ipairs(completing(pos_v, ratio)) do
    local t = pos_v[b]
    wins[2 * k - 1], wins[2 * k] = self.ring_windows(t, ratio, bufs:base(seqs[b]:slot()))
    epos[k] = (t + 1) // ratio - 1
  end
  return wins, epos
end
local function entry_rows(L, seqs, pos_v, ratio, key)
  local rows = {}
  for k, b in ipairs(completing(pos_v, ratio)) do
    local c = key and seqs[b].state[L].keys or seqs[b].state[L].comp
    rows[k] = c.pool:base(c.slot) + c.n
  end
  return rows
end

-- step_compress for a batch whose states lie in the model's pools (its
-- projections in the buffers): the sequences whose token completes a
-- window pool it together, each compressor's windows read where they lie
-- in the buffers' pool, pooled, normed and roped by one launch each
-- (M:pool_windows), packed ("fp8": quant.tile kv_pack, or hadamard +
-- fp4_pack for the indexer's keys) and placed in each sequence's slot of
-- the entries' (keys') pool (embed.tile put_rows), where each sequence made
-- its entry alone. The same bits. step: M.step_inputs' (a recorded
-- step's plan names the uploads: M.step_vals).
function M:compress_batch(L, seqs, pos_v, step)
  local ratio = self.cfg.compress_ratios[L + 1]
  if ratio == 0 then return end
  local tab, done = self:rope_table(ratio), completing(pos_v, ratio)
  if #done == 0 then return end
  step = step or M.step_inputs()
  for _, which in ipairs(ratio == 4 and both_compressors or main_compressor) do
    local bufs = seqs[done[1]].state[L].buf[which].pool
    local wins, epos = batch_windows(self, ratio, seqs, pos_v, bufs)
    local tag = " " .. L .. " " .. which
    wins = M.step_vals(step, "wins" .. tag, wins, function(c)
      return (batch_windows(self, ratio, c.seqs, c.pos_v, bufs))
    end)
    epos = M.step_vals(step, "epos" .. tag, epos, function(c)
      return select(2, batch_windows(self, ratio, c.seqs, c.pos_v, bufs))
    end)
    local entries = self:pool_windows(L, which, bufs.data, wins:reshape{#done, 2}, epos, ratio,
                                      tab, #done)
    local key = which == "indexer.compressor"
    if key then entries = hadamard(entries) end
    local caches, rows = {}, {}
    for k, b in ipairs(done) do
      local c = key and seqs[b].state[L].keys or seqs[b].state[L].comp
      c:reserve(c.n + 1) -- (its extent may move: the rows below after)
      caches[k] = c
    end
    local pool = caches[1].pool
    rows = M.step_vals(step, "erows" .. tag, entry_rows(L, seqs, pos_v, ratio, key), function(c)
      return entry_rows(L, c.seqs, c.pos_v, ratio, key)
    end)
    local packed = entries
    if self.kv_format == "fp8" then
      packed = O.out({#done, pool.width}, "i8")
      if key then
        kernel("quant.tile", "fp4_pack"):launch{entries, packed}
      else
        kernel("quant.tile", "kv_pack", kv_pack_params(caches[1].rope)):launch{entries, packed}
      end
    end
    pool:put(packed, rows)
    for _, c in ipairs(caches) do c.n = c.n + 1 end
  end
end

-- step_compress (unless compressed: a batch's compress_batch did it), then
-- in a CSA layer the indexer's top-k of the entries so far (its queries qi
-- and weights w, device position tp: every key scored where it lies, the
-- packed FP4 rows read as they are). Returns the selection, or nil before
-- the first key.
function M:step_entries(L, st, t, x, qi, w, tp, step, compressed)
  local cfg = self.cfg
  local ratio = cfg.compress_ratios[L + 1]
  if not compressed then self:step_compress(L, st, t, x, tp, step) end
  local N = ratio == 4 and st.keys.n or 0
  if N == 0 then return nil end
  -- (a recorded step scores the keys of its plan's bucket, which top-k's
  -- length cuts to the N held: the same selection)
  local NB = step.plan and step.plan:rows(ratio, N) or N
  local scores = O.out{1, NB}
  self:index_scores(ratio, qi, st.keys:view(0, NB), w, tp, scores, step_int(step, 0))
  local len = step_int(step, math.min((t + 1) // ratio, N), "len" .. ratio)
  return O.topk(scores, len, cfg.index_topk)
end

-- attention_steps' attention of a batch whose states lie in the model's
-- pools (its compressors' step done: compress_batch): in a CSA layer one
-- indexer launch scoring every sequence's keys where they lie and one
-- top-k over the batch's rows, one launch making every token's lists as
-- rows of the pools (sparse_attn.tile pool_lists) and one attention launch
-- for the batch reading each sequence's rows where they lie
-- (sparse_attn_f32_kv8 over "fp8" caches, sparse_attn_f32_pool over "f32"
-- ones in a window or CSA layer, hca_attn_split_f32 in an HCA layer, + its
-- merge; with the bf16 attention sparse_attn_split_kv8, _kv8_ring or
-- hca_attn_split_kv8 over "fp8" caches, + the merge, and over "f32" caches
-- in a window or CSA layer pool_list_bf16 gathering every sequence's list
-- into one bf16 list, then sparse_attn_split + the merge), where each sequence
-- scored, selected, made its list and ran its attention. q, qi, w, o, pos:
-- the batch's rows. The same bits as each sequence's attend_step (each
-- token's HCA ranges its own; a top-k over a longer row than the
-- sequence's keys picks the same entries, ties included: O.topk's one and
-- two levels both take the lower index, tests/lua/topk.lua). Returns
-- whether o has had its inverse rope.
function M:attend_batch(L, seqs, pos_v, q, qi, w, o, pos, step)
  local cfg, c, H = self.cfg, self.cfg.head_dim, self.cfg.n_heads
  local ratio, W, B = cfg.compress_ratios[L + 1], cfg.window_size, #seqs
  local p = self:pname(L, "attn.")
  local tab = self:rope_table(ratio)
  local KS = ratio == 4 and cfg.index_topk or 1
  -- (the pools as compress_batch left them: an entry may have moved a
  -- slot's extent)
  local first = seqs[1].state[L]
  local sel = self:no_selection(B)
  if ratio == 4 then
    -- every sequence's keys scored where they lie in the keys' pool (from
    -- its slot's first row), then one top-k over the batch's rows, each
    -- over its own keys so far
    local keys, len, SO = first.keys.pool, {}, 1
    for b, s in ipairs(seqs) do
      local N = s.state[L].keys.n
      len[b], SO = math.min((pos_v[b] + 1) // ratio, N), math.max(SO, N)
    end
    -- (a recorded step's: the bucket of its plan; the lengths from the
    -- counts before the step, and the windows it completes)
    if step.vplan then SO = step.vplan:rows(ratio, SO) end
    len = M.step_vals(step, "len " .. L, len, function(c)
      local v = {}
      for b, s in ipairs(c.seqs) do
        local t = c.pos_v[b]
        v[b] = math.min((t + 1) // ratio, s.state[L].keys.n + ((t + 1) % ratio == 0 and 1 or 0))
      end
      return v
    end)
    local scores = O.out{B, SO}
    self:index_scores(ratio, qi, keys.data, w, pos, scores, pool_rows(step, seqs, keys))
    sel = O.topk(scores, len, KS)
  end
  local ring, comp = first.ring.pool, ratio > 0 and first.comp.pool or first.ring.pool
  local cbase = pool_rows(step, seqs, comp)
  local bf, K = self:bf16_attention(), W + (ratio == 4 and KS or 0)
  local f32_bf = bf and self.kv_format == "f32"
  local with_sel = ratio == 4 and (not bf or f32_bf)
  local idx, selg = O.out({B, with_sel and K or W}, "i32"), O.out({B, KS}, "i32")
  kernel("sparse_attn.tile", "pool_lists", lists_params(W, with_sel)):launch{
    pos, pool_rows(step, seqs, ring), sel, cbase, idx, selg, ring:capacity()}
  if ratio == 128 then
    local n, nr, nmax, P = {}, {}, 0, 1
    for b, s in ipairs(seqs) do
      n[b] = s.state[L].comp.n
      nr[b] = kv8_ranges(W, n[b])
      nmax, P = math.max(nmax, n[b]), math.max(P, nr[b])
    end
    if step.vplan then
      nmax = step.vplan:rows(ratio, nmax)
      P = kv8_ranges(W, nmax)
    end
    local function held(c, ranges)
      local v = {}
      for b, s in ipairs(c.seqs) do
        local m = s.state[L].comp.n + ((c.pos_v[b] + 1) % ratio == 0 and 1 or 0)
        v[b] = ranges and kv8_ranges(W, m) or m
      end
      return v
    end
    n = M.step_vals(step, "n " .. L, n, function(c) return held(c) end)
    if bf and self.kv_format == "fp8" then
      self:split_attend(L, "hca_attn.tile", "hca_attn_split_kv8", self:kv8_params(), P,
                        {q, ring.data, idx, comp.data, n, cbase,
                         M.step_vals(step, "nr " .. L, nr, function(c) return held(c, true) end)},
                        o, tab, pos)
    else
      self:hca_attend(L, q, ring.data, idx, comp.data, n, o, tab, pos, cbase, nmax)
    end
    return true
  end
  if f32_bf then
    -- (every sequence's list gathered from the "f32" pools into one bf16
    -- list, each in its list's order)
    local list, lst = O.out({B * K, c}, "bf16"), O.out({B, K}, "i32")
    kernel("sparse_attn.tile", "pool_list_bf16"):launch{ring.data, comp.data, idx, selg, list,
                                                         lst}
    self:split_attend(L, "sparse_attn.tile", "sparse_attn_split", self:tc_params(),
                      math.max(1, K // 128), {q, list, lst}, o, tab, pos)
  elseif bf and ratio == 4 then
    self:split_attend(L, "sparse_attn.tile", "sparse_attn_split_kv8_ring", self:kv8_params(),
                      math.max(1, K // 128), {q, ring.data, idx, comp.data, selg}, o, tab, pos)
  elseif bf then
    self:split_attend(L, "sparse_attn.tile", "sparse_attn_split_kv8", self:kv8_params(),
                      math.max(1, K // 128), {q, ring.data, idx}, o, tab, pos)
  elseif self.kv_format == "f32" then
    -- (over "f32" caches: the window's rows of the rings' pool, the
    -- selection's of the entries' pool, as f32)
    kernel("sparse_attn.tile", "sparse_attn_f32_pool",
           f32_attn_params(H, c, O.attn_heads(q:shape(1), H)))
      :launch{q, ring.data, comp.data, selg, idx, self:weight(p .. "attn_sink"), o}
  else
    kernel("sparse_attn.tile", "sparse_attn_f32_kv8",
           f32_kv8_params(H, c, cfg.rope_head_dim, O.attn_heads(q:shape(1), H)))
      :launch{q, ring.data, comp.data, selg, idx, self:weight(p .. "attn_sink"), o}
  end
  return bf
end

-- One token's part of attention_steps that reads and writes its sequence's
-- state st of layer L (token at position t, also as the device tensor tp
-- [1]; its rows of x, q (bf16 for a window/CSA layer's bf16 attention),
-- kv (wkv's row, before kv_norm and rope), the indexer's qi and w): the
-- window ring, the compressors, the indexer's top-k, then attention into o
-- [1, H, c]; step: the step's shared inputs (M.step_inputs). stored: the
-- batch has stored the token's ring row and compressor projections.
-- Returns true when o has had its inverse rope (a merge's), as the
-- layer's every token does in one form.
function M:attend_step(L, st, t, x, q, kv, qi, w, o, tp, step, stored)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = self:pname(L, "attn.")
  local ratio = cfg.compress_ratios[L + 1]
  local W, H = cfg.window_size, cfg.n_heads
  local tab = self:rope_table(ratio)
  local plan = step.plan
  if not stored then
    st.ring:put_norm_rope(kv, self:weight(p .. "kv_norm.weight"), tab, tp, t % W,
                          plan and plan:row("ring"))
  end
  local sel = self:step_entries(L, st, t, x, qi, w, tp, step, stored)
  local N = ratio > 0 and st.comp.n or 0
  -- (a recorded step's views of the entries are its plan's bucket of rows,
  -- the kernels reading the N held from the device: the same results)
  local NB = plan and ratio > 0 and plan:rows(ratio, N) or N
  local extra = ratio == 4 and cfg.index_topk or 0
  local K = W + extra
  local bf = self:bf16_attention()
  local bytes = bf and self.kv_format == "fp8"
  if sel and bytes then
    -- CSA on tensor cores over the "fp8" caches' bytes where they lie: the
    -- ring's rows by the step's window list, the selected entries' by
    -- top-k's indices (sparse_attn_split_kv8_ring: no kv_list copy, no
    -- ring_index of the selection)
    self:split_attend(L, "sparse_attn.tile", "sparse_attn_split_kv8_ring", self:kv8_params(),
                      math.max(1, K // 128),
                      {q, st.ring:view(0, W), window_list(step, W, W, t, tp, self:constants()),
                       st.comp:view(0, NB), sel}, o, tab, tp)
    return true
  end
  -- the index list, built on the device (sparse_attn.tile ring_index): the
  -- window ring's slots (slot = position mod W) of positions t - W + 1 ..
  -- t, then for CSA the selected compressed entries, -1 padded; without a
  -- selection the same list for every layer, made once a step
  local ids = not sel and window_list(step, W, K, t, tp, self:constants())
  if not ids then
    ids = O.out({1, K}, "i32")
    kernel("sparse_attn.tile", "ring_index", ring_params(W)):launch{tp, sel, ids}
  end
  if ratio == 128 and bytes then
    -- HCA on tensor cores over the "fp8" cache's bytes: the ring's rows
    -- gathered by slot, the compressed entries read where they lie, each
    -- block decoded into bf16 in the kernel (hca_attn_split_kv8), over
    -- ranges of O.attn_range() entries
    local P = kv8_ranges(W, N)
    self:split_attend(L, "hca_attn.tile", "hca_attn_split_kv8", self:kv8_params(),
                      kv8_ranges(W, NB),
                      {q, st.ring:view(0, W), ids, st.comp:view(0, NB),
                       step_int(step, N, "n" .. ratio), step_int(step, 0),
                       step_int(step, P, "p" .. ratio)}, o, tab, tp)
    return true
  end
  if ratio == 128 then
    -- HCA: the ring's rows by slot and the compressed entries, both read
    -- where they lie in the cache's format (f32, or the "fp8" bytes decoded
    -- in the kernel: no copy of the ring or of all N)
    self:hca_attend(L, q, st.ring:view(0, W), ids, st.comp:view(0, NB),
                    step_int(step, N, "n" .. ratio), o, tab, tp, step_int(step, 0))
    return true
  end
  -- the KV list: the ring's W slots, then for CSA the selected compressed
  -- entries (topk's valid entries come first), read from the cache alone:
  -- in f32, or for the bf16 attention from the "fp8" caches in their bytes
  -- (the ring as it lies: a CSA layer's selection took the kernel above),
  -- which sparse_attn_split_kv8 decodes into the bf16 tile
  -- sparse_attn_split would have read (the values exact in bf16)
  if not bf and self.kv_format == "fp8" then
    -- the exact model over the "fp8" caches where they lie: the ring's
    -- rows by slot, the selected entries' by top-k's indices, decoded in
    -- the kernel (no f32 list: the same bits as sparse_attn_f32 over one)
    local ring = st.ring:view(0, W)
    kernel("sparse_attn.tile", "sparse_attn_f32_kv8",
           f32_kv8_params(H, c, cfg.rope_head_dim, O.attn_heads(q:shape(1), H)))
      :launch{q, ring, sel and st.comp:view(0, NB) or ring, sel or self:constants().no_sel, ids,
              self:weight(p .. "attn_sink"), o}
    return
  end
  local list
  if bytes then
    list = st.ring:view(0, W)
  else
    list = f32{K, c}
    -- (a recorded step copies all W rows: its replays' positions fill
    -- more of the ring; the rows past the position are never read)
    local n = plan and W or st.ring.n
    st.ring:get(0, n, list:slice(0, 0, n))
    if sel then st.comp:gather(sel:reshape{extra}, list:slice(0, W, extra)) end
  end
  if bf then
    -- split into ranges of at least 128 entries (FlashDecoding: a block
    -- each instead of one for the token), merged in f32 with the sink
    self:split_attend(L, "sparse_attn.tile",
                      bytes and "sparse_attn_split_kv8" or "sparse_attn_split",
                      bytes and self:kv8_params() or self:tc_params(), math.max(1, K // 128),
                      {q, bytes and list or O.convert(list, "bf16"), ids}, o, tab, tp)
    return true
  end
  kernel("sparse_attn.tile", "sparse_attn_f32", f32_attn_params(H, c, O.attn_heads(1, H)))
    :launch{q, list, ids, self:weight(p .. "attn_sink"), o}
end

end
