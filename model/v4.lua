-- v4.lua - DeepSeek-V4's prefill, assembled from the kernels in kernels/,
-- in the exact-math form (f32 activations, the FP8/FP4 simulations off,
-- the Hadamard kept) that ../shared/golden's f32.safetensors records
-- (V4-SPEC sections 1, 2 and 4): prefill of a prompt, then one-token decode
-- steps with the per-layer state of V4-SPEC 4.1 (window ring, compressed
-- entries, indexer keys; the compressors' partial windows are rebuilt from
-- the layer's input history, which holds exactly the buffer's tokens).
-- Run from the source root. Not yet here: the MTP block, the bf16 mode with
-- the FP8/FP4 simulations, sampling and generation scripts.
local ts = require "tessera"
local json = require "model.json"

local M = {}
local rows

-- ---- kernels, compiled once per (file, name, params) -------------------------

local cache = {}
local function kernel(file, name, params)
  local key = {file, name}
  for k, v in pairs(params or {}) do key[#key + 1] = k .. "=" .. tostring(v) end
  table.sort(key)
  key = table.concat(key, ";")
  if not cache[key] then
    cache[key] = ts.kernel("kernels/" .. file, name, params or {})
  end
  return cache[key]
end

local function f32(shape) return ts.tensor("f32", shape) end

local function linear(x, w)
  local y = f32{x:shape()[1], w:shape()[1]}
  kernel("gemm.tile", "linear_f32"):launch{x, w, y}
  return y
end

local function rmsnorm(x, w)
  local y = f32(x:shape())
  kernel("rmsnorm.tile", "rmsnorm_f32"):launch{x, w, y}
  return y
end

local function rope(x, tab, pos, inverse)
  local y = f32(x:shape())
  kernel("rope.tile", "rope_f32", {INVERSE = inverse or false}):launch{x, tab, pos, y}
  return y
end

local function hadamard(x)
  local n = x:numel() // 128
  local flat = x:reshape{n, 128}
  local y = f32{n, 128}
  kernel("hadamard.tile", "hadamard_f32"):launch{flat, y}
  return y:reshape(x:shape())
end

-- A [n, w] tensor as a list of rows (tables), and back.
rows = function(t)
  local s, v, out = t:shape(), t:to_table(), {}
  local w = s[#s]
  for r = 0, t:numel() // w - 1 do
    out[r + 1] = table.move(v, r * w + 1, r * w + w, 1, {})
  end
  return out
end

local function from_rows(list, first, last, width)
  local v = {}
  for r = first, last do
    table.move(list[r], 1, width, #v + 1, v)
  end
  return ts.tensor("f32", {last - first + 1, width}, v)
end

-- rows of a after the rows of b, as one new tensor
local function concat_rows(a, b)
  local sa, sb = a:shape(), b:shape()
  local out = f32{sa[1] + sb[1], sa[2]}
  local v = a:to_table()
  for _, x in ipairs(b:to_table()) do v[#v + 1] = x end
  out:set(v)
  return out
end

-- ---- the model ------------------------------------------------------------------------

-- Loads config.json and the weights of a model folder (tiny: in f32).
-- Loads a model folder (config.json + weights.safetensors), or a config and
-- a weights file given apart; every tensor the config needs is checked
-- (name, dtype, shape) before use.
function M.load(dir, weights_path)
  local cfg = type(dir) == "table" and dir or json.read(dir .. "/config.json")
  local self = {cfg = cfg, file = ts.load(weights_path or dir .. "/weights.safetensors"),
                w = {}}
  require("model.weights").validate(cfg, self.file)
  return setmetatable(self, {__index = M})
end

-- Weight names of block L: "layers.L." for the main layers, "mtp.0." for
-- the MTP block (L = n_layers), whose attention is window-only.
function M:prefix(L)
  if L >= self.cfg.n_layers then return "mtp.0." end
  return string.format("layers.%d.", L)
end

-- A weight as f32 (bf16 checkpoints hold exactly representable values).
function M:weight(name)
  if not self.w[name] then
    local t = self.file:get(name)
    self.w[name] = t:dtype() == "f32" and t or t:cast("f32")
  end
  return self.w[name]
end

-- The (cos, sin) table of a layer type, for every position up to
-- max_seq_len; made once.
function M:rope_table(ratio)
  local kind = ratio == 0 and "window" or "compressed"
  self.tabs = self.tabs or {}
  if not self.tabs[kind] then
    self.tabs[kind] = self:make_rope_table(ratio, self.cfg.max_seq_len)
  end
  return self.tabs[kind]
end

function M:make_rope_table(ratio, positions)
  local c = self.cfg
  local params = ratio == 0 and {BASE = c.rope_theta * 1.0}
    or {BASE = c.compress_rope_theta * 1.0, YARN = true,
        FACTOR = c.rope_factor * 1.0, L0 = c.original_seq_len * 1.0,
        BETA_FAST = c.beta_fast * 1.0, BETA_SLOW = c.beta_slow * 1.0}
  local tab = f32{positions, c.rope_head_dim // 2, 2}
  kernel("rope.tile", "rope_table", params):launch{tab}
  return tab
end

-- The compressor of layer L (which: "compressor" or "indexer.compressor"):
-- entries of all complete windows, normalised and rotated.
function M:compress(L, which, x, ratio, tab, first)
  local p = self:prefix(L) .. "attn." .. which .. "."
  local T = x:shape()[1]
  local c = linear(x, self:weight(p .. "wkv.weight"))
  local z = linear(x, self:weight(p .. "wgate.weight"))
  local E = self:weight(p .. "norm.weight"):shape()[1]
  local N = T // ratio
  local comp, out = f32{N, E}, f32{N, E}
  kernel("compressor.tile", "compress_pool", {OVERLAP = ratio == 4})
    :launch{c, z, self:weight(p .. "ape"), comp}
  kernel("compressor.tile", "compress_norm_rope_f32", {RATIO = ratio})
    :launch{comp, self:weight(p .. "norm.weight"), tab, out, first or 0}
  return out
end

-- Attention of layer L on its input x [T, d]; returns [T, d] and what it
-- made (for the golden comparisons).
function M:attention(L, x, pos)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = self:prefix(L) .. "attn."
  local ratio = cfg.compress_ratios[L + 1]
  local T, H, W = x:shape()[1], cfg.n_heads, cfg.window_size
  local tab = self:rope_table(ratio)
  local made = {}
  local qr = rmsnorm(linear(x, self:weight(p .. "wq_a.weight")),
                     self:weight(p .. "q_norm.weight"))
  local q = linear(qr, self:weight(p .. "wq_b.weight")):reshape{T, H, c}
  local qn = f32{T, H, c}
  kernel("rmsnorm.tile", "head_rmsnorm_f32"):launch{q, qn}
  q = rope(qn, tab, pos)
  local kv = rmsnorm(linear(x, self:weight(p .. "wkv.weight")),
                     self:weight(p .. "kv_norm.weight"))
  kv = rope(kv:reshape{T, 1, c}, tab, pos):reshape{T, c}
  made.kv = kv
  -- the KV list: the T window entries, then the compressed entries
  local list, N, sel = kv, 0, nil
  if ratio > 0 then
    local comp = self:compress(L, "compressor", x, ratio, tab)
    made.compressed = comp
    N = comp:shape()[1]
    if N > 0 then list = concat_rows(kv, comp) end
  end
  if ratio == 4 and N > 0 then
    -- the lightning indexer: scores over the indexer's keys, top-k
    local HI, DI = cfg.index_n_heads, cfg.index_head_dim
    local qi = linear(qr, self:weight(p .. "indexer.wq_b.weight")):reshape{T, HI, DI}
    qi = hadamard(rope(qi, tab, pos))
    local keys = hadamard(self:compress(L, "indexer.compressor", x, ratio, tab))
    made.indexer_keys = keys
    local w = linear(x, self:weight(p .. "indexer.weights_proj.weight"))
    local scale = DI ^ -0.5 * HI ^ -0.5
    local wv = w:to_table()
    for i = 1, #wv do wv[i] = wv[i] * scale end
    w:set(wv)
    local scores = f32{T, N}
    kernel("indexer.tile", "indexer_scores_f32", {RATIO = ratio}):launch{qi, keys, w, pos, scores}
    local lens = {}
    for t = 0, T - 1 do lens[t + 1] = (t + 1) // ratio end
    local len = ts.tensor("i32", {T}, lens)
    sel = ts.tensor("i32", {T, cfg.index_topk})
    kernel("topk.tile", "topk", {K = cfg.index_topk}):launch{scores, len, sel}
    made.topk = sel
  end
  -- index lists: the window (token t and the W - 1 before it), then the
  -- selected (CSA) or all complete (HCA) compressed entries, -1 padded
  local extra = ratio == 4 and cfg.index_topk or (ratio == 128 and N or 0)
  local K = W + extra
  local idx, selv = {}, sel and sel:to_table()
  for t = 0, T - 1 do
    local row = {}
    for s = math.max(0, t - W + 1), t do row[#row + 1] = s end
    if ratio == 4 and selv then
      for k = 1, extra do
        local e = selv[t * extra + k]
        if e >= 0 then row[#row + 1] = T + e end
      end
    elseif ratio == 128 then
      for i = 0, N - 1 do
        if (i + 1) * ratio <= t + 1 then row[#row + 1] = T + i end
      end
    end
    for k = 1, K do idx[#idx + 1] = row[k] or -1 end
  end
  local idx_t = ts.tensor("i32", {T, K}, idx)
  local o = f32{T, H, c}
  kernel("sparse_attn.tile", "sparse_attn_f32", {SCALE = c ^ -0.5})
    :launch{q, list, idx_t, self:weight(p .. "attn_sink"), o}
  o = rope(o, tab, pos, true)
  -- the grouped output projection
  local G, dg = cfg.o_groups, cfg.o_lora_rank
  local z = f32{T, G, dg}
  kernel("gemm.tile", "grouped_linear_f32"):launch{
    o:reshape{T, G, H // G * c}, self:weight(p .. "wo_a.weight"):reshape{G, dg, H // G * c}, z}
  return linear(z:reshape{T, G * dg}, self:weight(p .. "wo_b.weight")), made
end

function M:moe(L, x, ids)
  local cfg, p = self.cfg, self:prefix(L) .. "ffn."
  local T, K = x:shape()[1], cfg.n_activated_experts
  local hash = L < cfg.n_hash_layers and L < cfg.n_layers
  local E = cfg.n_routed_experts
  local bias = hash and f32{E} or self:weight(p .. "gate.bias")
  local t2e = hash and self.file:get(p .. "gate.tid2eid") or ts.tensor("i32", {1, K})
  local experts, weights = ts.tensor("i32", {T, K}), f32{T, K}
  kernel("moe.tile", "moe_router", {HASH = hash, ROUTE_SCALE = cfg.route_scale * 1.0})
    :launch{x, self.file:get(p .. "gate.weight"), bias, ids, t2e, experts, weights}
  if not self.w[p .. "w1"] then
    for m = 1, 3 do
      local first = self.file:get(p .. "experts.0.w" .. m .. ".weight")
      local s = first:shape()
      local stacked = ts.tensor("bf16", {E, s[1], s[2]})
      local v = {}
      for e = 0, E - 1 do
        for _, x in ipairs(self.file:get(p .. "experts." .. e .. ".w" .. m .. ".weight"):to_table()) do
          v[#v + 1] = x
        end
      end
      stacked:set(v)
      self.w[p .. "w" .. m] = stacked
    end
  end
  local y = f32(x:shape())
  kernel("moe.tile", "moe_experts", {LIMIT = cfg.swiglu_limit * 1.0}):launch{
    x, experts, weights, self.w[p .. "w1"], self.w[p .. "w2"], self.w[p .. "w3"],
    self.file:get(p .. "shared_experts.w1.weight"), self.file:get(p .. "shared_experts.w2.weight"),
    self.file:get(p .. "shared_experts.w3.weight"), y}
  return y, experts, weights
end

-- One mHC-wrapped sub-block: returns the new streams, the sub-layer's input
-- and output.
function M:mhc_block(L, side, X, norm, fn)
  local T, d = X:shape()[1], X:shape()[3]
  local p = self:prefix(L) .. "hc_" .. side .. "_"
  local mixes = f32{T, 24}
  kernel("mhc.tile", "hc_mix"):launch{X:reshape{T, 4 * d}, self:weight(p .. "fn"), mixes}
  local pre, post, comb = f32{T, 4}, f32{T, 4}, f32{T, 4, 4}
  kernel("mhc.tile", "hc_split_sinkhorn", {ITERS = self.cfg.hc_sinkhorn_iters,
                                           EPS = self.cfg.hc_eps * 1.0})
    :launch{mixes, self:weight(p .. "scale"), self:weight(p .. "base"), pre, post, comb}
  local u = f32{T, d}
  kernel("mhc.tile", "hc_pre"):launch{X, pre, u}
  local xin = rmsnorm(u, self:weight(self:prefix(L) .. side .. "_norm.weight"))
  local out, extra = fn(xin)
  local Y = f32(X:shape())
  kernel("mhc.tile", "hc_post"):launch{X, out, post, comb, Y}
  return Y, xin, out, extra
end

-- Prefill of ids [T] (an i32 tensor): logits of the last position, and a
-- record of what each layer made.
function M:prefill(ids)
  local cfg, T, d = self.cfg, ids:numel(), self.cfg.dim
  self:reset()
  local h0 = f32{T, d}
  kernel("embed.tile", "embed"):launch{ids, self.file:get("embed.weight"), h0}
  local hv, xv = h0:to_table(), {}
  for t = 0, T - 1 do
    for j = 1, 4 do
      for c = 1, d do xv[#xv + 1] = hv[t * d + c] end
    end
  end
  local X = ts.tensor("f32", {T, 4, d}, xv)
  local pos_v = {}
  for t = 0, T - 1 do pos_v[t + 1] = t end
  local pos = ts.tensor("i32", {T}, pos_v)
  local record = {}
  for L = 0, cfg.n_layers - 1 do
    local r = {}
    local made
    X, r.attn_in, r.attn_out, made = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention(L, x, pos)
    end)
    r.made = made
    X, r.ffn_in, r.ffn_out = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
    r.out = X
    record[L] = r
    -- the decode state of the layer (V4-SPEC 4.4's hand-off)
    self.state[L] = {x = rows(r.attn_in), kv = rows(made.kv),
                     comp = made.compressed and rows(made.compressed) or {},
                     keys = made.indexer_keys and rows(made.indexer_keys) or {}}
  end
  self.next_pos = T
    self.final_streams = X
  return self:head(X), record
end

-- The logits of the last position of the streams X [T, 4, d]: the
-- sigmoid-weighted sum of the streams, the final norm, the LM head.
function M:head(X, pre)
  pre = pre or ""
  local cfg, T, d = self.cfg, X:shape()[1], X:shape()[3]
  local mixes = f32{T, 4}
  kernel("mhc.tile", "hc_mix"):launch{X:reshape{T, 4 * d}, self:weight(pre .. "hc_head_fn"), mixes}
  local mv, base = mixes:to_table(), self:weight(pre .. "hc_head_base"):to_table()
  local scale = self:weight(pre .. "hc_head_scale"):to_table()[1]
  local xv2 = X:to_table()
  local y = {}
  for c = 1, d do y[c] = 0 end
  for j = 1, 4 do
    local pre = 1 / (1 + math.exp(-(mv[(T - 1) * 4 + j] * scale + base[j]))) + cfg.hc_eps
    for c = 1, d do
      y[c] = y[c] + pre * xv2[((T - 1) * 4 + (j - 1)) * d + c]
    end
  end
  local yt = rmsnorm(ts.tensor("f32", {1, d}, y), self:weight(pre .. "norm.weight"))
  return linear(yt, self:weight("head.weight"))
end

-- ---- MTP ---------------------------------------------------------------------------------

-- The MTP block (V4-SPEC 1.10) as a prefill over positions 0 .. n - 1 of
-- the last prefill: position i combines the main model's final streams at
-- i with the embedding of next_ids[i] (the token i + 1); returns the
-- logits of its last position.
function M:mtp(next_ids)
  local cfg, d, L = self.cfg, self.cfg.dim, self.cfg.n_layers
  local n, pre = next_ids:numel(), "mtp.0."
  local e = f32{n, d}
  kernel("embed.tile", "embed"):launch{next_ids, self.file:get("embed.weight"), e}
  local ep = linear(rmsnorm(e, self:weight(pre .. "enorm.weight")),
                    self:weight(pre .. "e_proj.weight")):to_table()
  local main = self.final_streams:slice(0, 0, n):reshape{n * 4, d}
  local hp = linear(rmsnorm(main, self:weight(pre .. "hnorm.weight")),
                    self:weight(pre .. "h_proj.weight")):to_table()
  for i = 0, n - 1 do
    for j = 0, 3 do
      for c = 1, d do
        local k = (i * 4 + j) * d + c
        hp[k] = hp[k] + ep[i * d + c]
      end
    end
  end
  local X = ts.tensor("f32", {n, 4, d}, hp)
  local pos_v = {}
  for t = 0, n - 1 do pos_v[t + 1] = t end
  local pos = ts.tensor("i32", {n}, pos_v)
  X = self:mhc_block(L, "attn", X, nil, function(x) return self:attention(L, x, pos) end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, next_ids) end)
  return self:head(X, pre)
end

-- ---- decode ------------------------------------------------------------------------------

-- Forgets the sequence: a new prefill starts from position 0.
function M:reset()
  self.state = {}
  self.next_pos = 0
end

-- One step of the compressor `which` of layer L, after the layer's input
-- history st.x gained position t: when t completes a window, the new entry
-- (from the window's tokens, and for CSA the previous window's), else nil.
function M:compress_step(L, which, st, t, ratio, tab)
  if (t + 1) % ratio ~= 0 then return nil end
  local g = (t + 1) // ratio - 1
  local first = (ratio == 4 and g > 0) and t + 1 - 2 * ratio or t + 1 - ratio
  local x = from_rows(st.x, first + 1, t + 1, self.cfg.dim)
  local n = x:shape()[1] // ratio
  local out = self:compress(L, which, x, ratio, tab, g - (n - 1))
  local all = rows(out)
  return all[#all]
end

-- Attention of layer L for one token at position t (x [1, d]), updating the
-- layer's state.
function M:attention_step(L, x, t)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = self:prefix(L) .. "attn."
  local ratio = cfg.compress_ratios[L + 1]
  local H, W, st = cfg.n_heads, cfg.window_size, self.state[L]
  local tab = self:rope_table(ratio)
  local pos = ts.tensor("i32", {1}, {t})
  local qr = rmsnorm(linear(x, self:weight(p .. "wq_a.weight")),
                     self:weight(p .. "q_norm.weight"))
  local q = linear(qr, self:weight(p .. "wq_b.weight")):reshape{1, H, c}
  local qn = f32{1, H, c}
  kernel("rmsnorm.tile", "head_rmsnorm_f32"):launch{q, qn}
  q = rope(qn, tab, pos)
  local kv = rmsnorm(linear(x, self:weight(p .. "wkv.weight")),
                     self:weight(p .. "kv_norm.weight"))
  kv = rope(kv:reshape{1, 1, c}, tab, pos):reshape{1, c}
  st.x[t + 1] = x:to_table()
  st.kv[t + 1] = kv:to_table()
  local selected = {}
  if ratio == 4 then
    local key = self:compress_step(L, "indexer.compressor", st, t, ratio, tab)
    if key then
      local k = f32{1, #key}
      k:set(key)
      st.keys[#st.keys + 1] = rows(hadamard(k))[1]
    end
    local N = #st.keys
    if N > 0 then
      local HI, DI = cfg.index_n_heads, cfg.index_head_dim
      local qi = linear(qr, self:weight(p .. "indexer.wq_b.weight")):reshape{1, HI, DI}
      qi = hadamard(rope(qi, tab, pos))
      local keys = from_rows(st.keys, 1, N, DI)
      local w = linear(x, self:weight(p .. "indexer.weights_proj.weight"))
      local scale = DI ^ -0.5 * HI ^ -0.5
      local wv = w:to_table()
      for i = 1, #wv do wv[i] = wv[i] * scale end
      w:set(wv)
      local scores = f32{1, N}
      kernel("indexer.tile", "indexer_scores_f32", {RATIO = ratio}):launch{qi, keys, w, pos, scores}
      local sel = ts.tensor("i32", {1, cfg.index_topk})
      local len = ts.tensor("i32", {1}, {math.min((t + 1) // ratio, N)})
      kernel("topk.tile", "topk", {K = cfg.index_topk}):launch{scores, len, sel}
      for _, e in ipairs(sel:to_table()) do
        if e >= 0 then selected[#selected + 1] = e end
      end
    end
  end
  if ratio > 0 then
    local entry = self:compress_step(L, "compressor", st, t, ratio, tab)
    if entry then st.comp[#st.comp + 1] = entry end
  end
  -- the KV list: the window ring (slot = position mod W), then the
  -- compressed entries
  local ring, idx = {}, {}
  for s = 1, W do ring[s] = false end
  for q_ = math.max(0, t - W + 1), t do
    ring[q_ % W + 1] = st.kv[q_ + 1]
    idx[#idx + 1] = q_ % W
  end
  local zero = {}
  for i = 1, c do zero[i] = 0 end
  local list_rows = {}
  for s = 1, W do list_rows[s] = ring[s] or zero end
  for _, e in ipairs(st.comp) do list_rows[#list_rows + 1] = e end
  local list = from_rows(list_rows, 1, #list_rows, c)
  local extra = 0
  if ratio == 4 then
    extra = cfg.index_topk
    for _, e in ipairs(selected) do idx[#idx + 1] = W + e end
  elseif ratio == 128 then
    extra = math.max(#st.comp, 1)
    for i = 0, #st.comp - 1 do
      if (i + 1) * ratio <= t + 1 then idx[#idx + 1] = W + i end
    end
  end
  local K = W + extra
  for k = #idx + 1, K do idx[k] = -1 end
  local idx_t = ts.tensor("i32", {1, K}, idx)
  local o = f32{1, H, c}
  kernel("sparse_attn.tile", "sparse_attn_f32", {SCALE = c ^ -0.5})
    :launch{q, list, idx_t, self:weight(p .. "attn_sink"), o}
  o = rope(o, tab, pos, true)
  local G, dg = cfg.o_groups, cfg.o_lora_rank
  local z = f32{1, G, dg}
  kernel("gemm.tile", "grouped_linear_f32"):launch{
    o:reshape{1, G, H // G * c}, self:weight(p .. "wo_a.weight"):reshape{G, dg, H // G * c}, z}
  return linear(z:reshape{1, G * dg}, self:weight(p .. "wo_b.weight"))
end

-- One decode step: token `id` at the next position; returns its logits.
function M:decode(id)
  local cfg, d, t = self.cfg, self.cfg.dim, self.next_pos
  if not t or t == 0 then error("decode needs a prefill first", 2) end
  local ids = ts.tensor("i32", {1}, {id})
  local h0 = f32{1, d}
  kernel("embed.tile", "embed"):launch{ids, self.file:get("embed.weight"), h0}
  local hv, xv = h0:to_table(), {}
  for j = 1, 4 do table.move(hv, 1, d, #xv + 1, xv) end
  local X = ts.tensor("f32", {1, 4, d}, xv)
  for L = 0, cfg.n_layers - 1 do
    X = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention_step(L, x, t)
    end)
    X = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
  end
  self.next_pos = t + 1
  return self:head(X)
end

return M
