-- v4.lua - DeepSeek-V4's prefill, assembled from the kernels in kernels/,
-- in the exact-math form (f32 activations, the FP8/FP4 simulations off,
-- the Hadamard kept) that ../shared/golden's f32.safetensors records
-- (V4-SPEC sections 1 and 2). Run from the source root. Not yet here:
-- decode steps with the compressed KV state, the MTP block, the bf16 mode,
-- generation (the Lua-graph issue).
local ts = require "tessera"
local json = require "model.json"

local M = {}

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
function M.load(dir)
  local self = {cfg = json.read(dir .. "/config.json"),
                file = ts.load(dir .. "/weights.safetensors"), w = {}}
  return setmetatable(self, {__index = M})
end

-- A weight as f32 (bf16 checkpoints hold exactly representable values).
function M:weight(name)
  if not self.w[name] then
    local t = self.file:get(name)
    self.w[name] = t:dtype() == "f32" and t or t:cast("f32")
  end
  return self.w[name]
end

function M:rope_table(ratio, positions)
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
function M:compress(L, which, x, ratio, tab)
  local p = string.format("layers.%d.attn.%s.", L, which)
  local T = x:shape()[1]
  local c = linear(x, self:weight(p .. "wkv.weight"))
  local z = linear(x, self:weight(p .. "wgate.weight"))
  local E = self:weight(p .. "norm.weight"):shape()[1]
  local N = T // ratio
  local comp, out = f32{N, E}, f32{N, E}
  kernel("compressor.tile", "compress_pool", {OVERLAP = ratio == 4})
    :launch{c, z, self:weight(p .. "ape"), comp}
  kernel("compressor.tile", "compress_norm_rope_f32", {RATIO = ratio})
    :launch{comp, self:weight(p .. "norm.weight"), tab, out}
  return out
end

-- Attention of layer L on its input x [T, d]; returns [T, d] and what it
-- made (for the golden comparisons).
function M:attention(L, x, pos)
  local c, cfg = self.cfg.head_dim, self.cfg
  local p = string.format("layers.%d.attn.", L)
  local ratio = cfg.compress_ratios[L + 1]
  local T, H, W = x:shape()[1], cfg.n_heads, cfg.window_size
  local tab = self:rope_table(ratio, T)
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
    kernel("indexer.tile", "indexer_scores_f32", {RATIO = ratio}):launch{qi, keys, w, scores}
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
  local cfg, p = self.cfg, string.format("layers.%d.ffn.", L)
  local T, K = x:shape()[1], cfg.n_activated_experts
  local hash = L < cfg.n_hash_layers
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
  local p = string.format("layers.%d.hc_%s_", L, side)
  local mixes = f32{T, 24}
  kernel("mhc.tile", "hc_mix"):launch{X:reshape{T, 4 * d}, self:weight(p .. "fn"), mixes}
  local pre, post, comb = f32{T, 4}, f32{T, 4}, f32{T, 4, 4}
  kernel("mhc.tile", "hc_split_sinkhorn", {ITERS = self.cfg.hc_sinkhorn_iters,
                                           EPS = self.cfg.hc_eps * 1.0})
    :launch{mixes, self:weight(p .. "scale"), self:weight(p .. "base"), pre, post, comb}
  local u = f32{T, d}
  kernel("mhc.tile", "hc_pre"):launch{X, pre, u}
  local xin = rmsnorm(u, self:weight(string.format("layers.%d.%s_norm.weight", L, side)))
  local out, extra = fn(xin)
  local Y = f32(X:shape())
  kernel("mhc.tile", "hc_post"):launch{X, out, post, comb, Y}
  return Y, xin, out, extra
end

-- Prefill of ids [T] (an i32 tensor): logits of the last position, and a
-- record of what each layer made.
function M:prefill(ids)
  local cfg, T, d = self.cfg, ids:numel(), self.cfg.dim
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
  end
  -- the head: a sigmoid-weighted sum of the streams (last position), the
  -- final norm, the LM head
  local mixes = f32{T, 4}
  kernel("mhc.tile", "hc_mix"):launch{X:reshape{T, 4 * d}, self:weight("hc_head_fn"), mixes}
  local mv, base = mixes:to_table(), self:weight("hc_head_base"):to_table()
  local scale = self:weight("hc_head_scale"):to_table()[1]
  local xv2 = X:to_table()
  local y = {}
  for c = 1, d do y[c] = 0 end
  for j = 1, 4 do
    local pre = 1 / (1 + math.exp(-(mv[(T - 1) * 4 + j] * scale + base[j]))) + cfg.hc_eps
    for c = 1, d do
      y[c] = y[c] + pre * xv2[((T - 1) * 4 + (j - 1)) * d + c]
    end
  end
  local yt = rmsnorm(ts.tensor("f32", {1, d}, y), self:weight("norm.weight"))
  return linear(yt, self:weight("head.weight")), record
end

return M
