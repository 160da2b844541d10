-- mhc.lua - the mHC residual streams (V4-SPEC 1.8): one wrapped sub-block,
-- and the head mix with the final norm and the LM head.
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard

return function(M)

-- (hc_mix_split's params: n logits, or on a GPU with TF32 padded to 8, 64
-- tokens a block)
local mix_params = O.memo(function(n, tc)
  if tc then return {MM = (n + 7) // 8 * 8, TF32 = 1, BT = 64, NT = 128} end
  return {MM = n}
end)

-- hc_mix_split's slices of the mixing logits of the streams X [T, 4, d]
-- over fn [n, 4 d]: part [KS, T, n + 1] (kernels/mhc.tile). On a GPU its
-- products run on tensor cores in TF32, 64 tokens a block, as DeepSeek's
-- production kernel does (DeepGEMM tf32_hc_prenorm_gemm), unless the model
-- was loaded with tf32 = false; on the CPU in f32.
function M:mix_slices(X, fn, n)
  local T, d = X:shape(1), X:shape(3)
  local tc = O.tf32 and O.on_gpu()
  local defs, BT = mix_params(n, tc), tc and 64 or 8
  local KS = O.slices((T + BT - 1) // BT, (4 * d + 127) // 128)
  local part = O.out{KS, T, n + 1}
  kernel("mhc.tile", "hc_mix_split", defs):launch{X:reshape{T, 4 * d}, fn, part}
  return part
end

-- The fn of the sub-block after block L's `side` in the main layers (the
-- attention's is followed by the MoE's, the MoE's by the next layer's
-- attention), or nil after the last layer and in the MTP block.
function M:next_fn(L, side)
  if side == "attn" then return self:weight(self:prefix(L) .. "hc_ffn_fn") end
  if L + 1 < self.cfg.n_layers then return self:weight(self:prefix(L + 1) .. "hc_attn_fn") end
end

-- The weights of block L's `side` sub-block (mhc_block's, looked up once:
-- it runs twice a layer each decode step): its fn, scale, base, the
-- sub-layer's norm weight, next_fn (M:next_fn's, false where none), where
-- there is a next sub-block its L and side (next_L, next_side; its record
-- `next` at first use), and count, hc_post_mix LAST's block counter.
function M:hc_weights(L, side)
  local recs = self:records(side == "attn" and "hc_attn" or "hc_ffn")
  local r = recs[L]
  if not r then
    local p = self:prefix(L) .. "hc_" .. side .. "_"
    r = {fn = self:weight(p .. "fn"), scale = self:weight(p .. "scale"),
         base = self:weight(p .. "base"),
         norm = self:weight(self:prefix(L) .. side .. "_norm.weight"),
         next_fn = L < self.cfg.n_layers and self:next_fn(L, side) or false,
         count = self:constants().count}
    if r.next_fn then
      r.next_L, r.next_side = side == "attn" and L or L + 1, side == "attn" and "ffn" or "attn"
    end
    recs[L] = r
  end
  return r
end

-- (hc_post_mix's params: one token a block, or on a GPU with TF32 32 tokens
-- a block on 256 threads; hc_head's by its eps)
local post_mix_params = O.memo(function(one, tc, iters, eps)
  -- (the CPU: one token a group, 16 groups a block for a prefill's tokens)
  local p = tc and {BD = 64, TF32 = 1, BT = 32, NT = 256}
    or {BD = 64, BT = one and 1 or nil, TB = one and not iters and 16 or nil}
  if iters then p.LAST, p.ITERS, p.EPS = true, iters, eps end -- (with the next pre)
  return p
end)
local head_params = O.memo(function(eps) return {EPS = eps} end)

-- One mHC-wrapped sub-block: returns the new streams, the sub-layer's input
-- and output. Its pre takes the logits' slices that the previous sub-block's
-- post made from these very streams (hc_post_mix, self.hc_next), else makes
-- them (hc_mix_split); its post makes the next sub-block's the same way.
function M:mhc_block(L, side, X, norm, fn)
  local T, d = X:shape(1), X:shape(3)
  local w = self:hc_weights(L, side)
  local nx = self.hc_next
  self.hc_next = false
  if not (nx and rawequal(nx.X, X) and nx.L == L and nx.side == side) then nx = nil end
  local one = not O.on_gpu()
  local pre, post, comb, u, xin
  if nx and nx.u then
    -- the previous sub-block's post made this pre (hc_post_mix's LAST)
    pre, post, comb, u = nx.pre, nx.post, nx.comb, nx.u
    xin = u
  else
    pre, post, comb, u = O.out{T, 4}, O.out{T, 4}, O.out{T, 4, 4}, O.out{T, d}
    xin = self:hc_pre(X, w, nx and nx.part or self:mix_slices(X, w.fn, 24), pre, post, comb, u)
  end
  local out, extra = fn(xin)
  local Y, nfn = O.out(X:shape()), w.next_fn
  if not nfn then
    kernel("mhc.tile", "hc_post"):launch{X, out, post, comb, Y}
    return Y, xin, out, extra
  end
  -- hc_post and the next logits' slices (KS = d / BD) in one pass; on a GPU
  -- 32 tokens a block on 256 threads (mma.sync): about 64 KiB of shared
  -- memory, three blocks an SM, where 64 tokens (wgmma) took 108 KiB and
  -- left an SM two blocks of 4 warps to stream the tensors. One token (a
  -- decode step's) gets the next sub-block's pre and norm from the same
  -- launch (LAST: its last block runs them; the next mhc_block takes them
  -- from self.hc_next), the next sub-block's weights; more tokens have
  -- this sub-block's tensors in their places, which LAST's absence leaves
  -- alone.
  local c, tc = self.cfg, O.tf32 and O.on_gpu()
  local last = T == 1
  local defs = post_mix_params(one, tc, last and c.hc_sinkhorn_iters or nil,
                               last and c.hc_eps * 1.0 or nil)
  local BD = defs.BD
  local next_part = O.out{(d + BD - 1) // BD, T, 25}
  if last and not w.next then w.next = self:hc_weights(w.next_L, w.next_side) end
  local nw = last and w.next or w
  local nxt = {X = Y, part = next_part, L = w.next_L, side = w.next_side}
  if last then
    nxt.pre, nxt.post, nxt.comb, nxt.u = O.out{T, 4}, O.out{T, 4}, O.out{T, 4, 4}, O.out{T, d}
  end
  kernel("mhc.tile", "hc_post_mix", defs):launch{X, out, post, comb, Y, nfn, next_part,
    w.count, nw.scale, nw.base, nw.norm, nxt.pre or pre, nxt.post or post,
    nxt.comb or comb, nxt.u or u}
  self.hc_next = nxt
  return Y, xin, out, extra
end

-- mHC's pre of the streams X [T, 4, d] of the sub-block whose weights are
-- w (M:hc_weights') from the logits' slices part: the gates pre, post, the
-- Sinkhorn-normalised comb and u; returns the sub-layer's input.
function M:hc_pre(X, w, part, pre, post, comb, u)
  local T, d = X:shape(1), X:shape(3)
  -- on the CPU one token a block, whatever T: a decode step's token is not
  -- padded to 16, and every token takes the same code path (BT 8 took the
  -- vector micro-kernel's), so that prefill and decode round alike. Up to
  -- O.hc_norm_rows tokens (decode steps) the sub-layer's norm is in the
  -- same launch (NORM, one token a block: the same bits as rmsnorm_f32
  -- after it, which a prefill's BT tokens a block keeps).
  local one = not O.on_gpu()
  local nw = w.norm
  local params = self.hc_pre_params
  if not params then
    local c = self.cfg
    params = {ITERS = c.hc_sinkhorn_iters, EPS = c.hc_eps * 1.0, BT = one and 1 or nil}
    self.hc_pre_params = params
    self.hc_pre_norm = {ITERS = params.ITERS, EPS = params.EPS, BT = 1, BD = d, NORM = true}
  end
  local args = {part, X, w.scale, w.base, nw, pre, post, comb, u}
  if T <= O.hc_norm_rows then
    kernel("mhc.tile", "hc_pre_fused", self.hc_pre_norm):launch(args)
    return u
  end
  kernel("mhc.tile", "hc_pre_fused", params):launch(args)
  return rmsnorm(u, nw)
end


-- The logits of the last position of the streams X [T, 4, d] (of every
-- position with `all`: [T, vocab]): the sigmoid-weighted sum of the
-- streams, the final norm, the LM head.
function M:head(X, pre, all)
  pre = pre or ""
  local cfg, T, d = self.cfg, X:shape(1), X:shape(3)
  local last = all and X or X:slice(0, T - 1, 1)
  local y = O.out{last:shape(1), d}
  kernel("mhc.tile", "hc_head", head_params(cfg.hc_eps * 1.0)):launch{
    last, self:mix_slices(last, self:weight(pre .. "hc_head_fn"), 4),
    self:weight(pre .. "hc_head_scale"), self:weight(pre .. "hc_head_base"), y}
  return linear(rmsnorm(y, self:weight(pre .. "norm.weight")), self:lweight("head.weight"))
end

end
