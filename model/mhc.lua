-- mhc.lua - the mHC residual streams (V4-SPEC 1.8): one wrapped sub-block,
-- and the head mix with the final norm and the LM head.
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard
local rows, from_rows, concat_rows = O.rows, O.from_rows, O.concat_rows

return function(M)

-- hc_mix_split's slices of the mixing logits of the streams X [T, 4, d]
-- over fn [n, 4 d]: part [KS, T, n + 1] (kernels/mhc.tile). On a GPU its
-- products run on tensor cores in TF32, 64 tokens a block, as DeepSeek's
-- production kernel does (DeepGEMM tf32_hc_prenorm_gemm), unless the model
-- was loaded with hc_tf32 = false; on the CPU in f32.
function M:mix_slices(X, fn, n)
  local T, d = X:shape()[1], X:shape()[3]
  local defs, BT = {MM = n}, 8
  if self.hc_tf32 and O.on_gpu() then
    defs, BT = {MM = (n + 7) // 8 * 8, TF32 = 1, BT = 64, NT = 128}, 64
  end
  local KS = O.slices((T + BT - 1) // BT, (4 * d + 127) // 128)
  local part = f32{KS, T, n + 1}
  kernel("mhc.tile", "hc_mix_split", defs):launch{X:reshape{T, 4 * d}, fn, part}
  return part
end

-- One mHC-wrapped sub-block: returns the new streams, the sub-layer's input
-- and output.
function M:mhc_block(L, side, X, norm, fn)
  local T, d = X:shape()[1], X:shape()[3]
  local p = self:prefix(L) .. "hc_" .. side .. "_"
  local pre, post, comb, u = f32{T, 4}, f32{T, 4}, f32{T, 4, 4}, f32{T, d}
  kernel("mhc.tile", "hc_pre_fused", {ITERS = self.cfg.hc_sinkhorn_iters,
                                      EPS = self.cfg.hc_eps * 1.0})
    :launch{self:mix_slices(X, self:weight(p .. "fn"), 24), X, self:weight(p .. "scale"),
            self:weight(p .. "base"), pre, post, comb, u}
  local xin = rmsnorm(u, self:weight(self:prefix(L) .. side .. "_norm.weight"))
  local out, extra = fn(xin)
  local Y = f32(X:shape())
  kernel("mhc.tile", "hc_post"):launch{X, out, post, comb, Y}
  return Y, xin, out, extra
end


-- The logits of the last position of the streams X [T, 4, d]: the
-- sigmoid-weighted sum of the streams, the final norm, the LM head.
function M:head(X, pre)
  pre = pre or ""
  local cfg, T, d = self.cfg, X:shape()[1], X:shape()[3]
  local last = X:slice(0, T - 1, 1)
  local y = f32{1, d}
  kernel("mhc.tile", "hc_head", {EPS = cfg.hc_eps * 1.0}):launch{
    last, self:mix_slices(last, self:weight(pre .. "hc_head_fn"), 4),
    self:weight(pre .. "hc_head_scale"), self:weight(pre .. "hc_head_base"), y}
  return linear(rmsnorm(y, self:weight(pre .. "norm.weight")), self:weight("head.weight"))
end

end
