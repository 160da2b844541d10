-- mhc.lua - the mHC residual streams (V4-SPEC 1.8): one wrapped sub-block,
-- and the head mix with the final norm and the LM head.
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard
local rows, from_rows, concat_rows = O.rows, O.from_rows, O.concat_rows

return function(M)

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


-- The logits of the last position of the streams X [T, 4, d]: the
-- sigmoid-weighted sum of the streams, the final norm, the LM head.
function M:head(X, pre)
  pre = pre or ""
  local cfg, T, d = self.cfg, X:shape()[1], X:shape()[3]
  local mixes = f32{T, 4}
  kernel("mhc.tile", "hc_mix"):launch{X:reshape{T, 4 * d}, self:weight(pre .. "hc_head_fn"), mixes}
  local y = f32{1, d}
  kernel("mhc.tile", "hc_head", {EPS = cfg.hc_eps * 1.0}):launch{
    X:slice(0, T - 1, 1), mixes:slice(0, T - 1, 1), self:weight(pre .. "hc_head_scale"),
    self:weight(pre .. "hc_head_base"), y}
  return linear(rmsnorm(y, self:weight(pre .. "norm.weight")), self:weight("head.weight"))
end

end
