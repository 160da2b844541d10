-- moe.lua - DeepSeekMoE (V4-SPEC 1.9): the router and the experts.
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard
local rows, from_rows, concat_rows = O.rows, O.from_rows, O.concat_rows

return function(M)

function M:moe(L, x, ids)
  local cfg, p = self.cfg, self:prefix(L) .. "ffn."
  local T, K = x:shape()[1], cfg.n_activated_experts
  local hash = L < cfg.n_hash_layers and L < cfg.n_layers
  local E = cfg.n_routed_experts
  local bias = hash and f32{E} or self:weight(p .. "gate.bias")
  local t2e = hash and self:raw(p .. "gate.tid2eid") or O.tensor("i32", {1, K})
  local experts, weights = O.tensor("i32", {T, K}), f32{T, K}
  kernel("moe.tile", "moe_router", {HASH = hash, ROUTE_SCALE = cfg.route_scale * 1.0})
    :launch{x, self:raw(p .. "gate.weight"), bias, ids, t2e, experts, weights}
  if not self.w[p .. "w1"] then
    for m = 1, 3 do
      local first = self.file:get(p .. "experts.0.w" .. m .. ".weight")
      local s = first:shape()
      local stacked = O.tensor("bf16", {E, s[1], s[2]})
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
  local s1, s2, s3 = self:raw(p .. "shared_experts.w1.weight"),
    self:raw(p .. "shared_experts.w2.weight"), self:raw(p .. "shared_experts.w3.weight")
  local LIMIT = cfg.swiglu_limit * 1.0
  if T < O.moe_grouped_at then
    kernel("moe.tile", "moe_experts", {LIMIT = LIMIT}):launch{
      x, experts, weights, self.w[p .. "w1"], self.w[p .. "w2"], self.w[p .. "w3"], s1, s2, s3, y}
    return y, experts, weights
  end
  -- the grouped form (kernels/moe.tile): the routed slots sorted by expert,
  -- BM of one expert's rows a block, so that a block converts an expert's
  -- weights once for its rows, not once a token; the shared expert the same
  -- way as one expert that every token chose with weight 1. Same sums in the
  -- same order as moe_experts: shared + slot 0 + slot 1 + ...
  local BM, TK, DM = O.moe_rows, T * K, x:shape()[2]
  local MT = (TK + BM - 1) // BM + E
  local counts, offsets, cursor = O.tensor("i32", {E}), O.tensor("i32", {E}), O.tensor("i32", {E})
  local tiles, sorted = O.tensor("i32", {MT, 3}), O.tensor("i32", {TK})
  kernel("moe.tile", "moe_count"):launch{experts, counts}
  kernel("moe.tile", "moe_offsets", {BM = BM}):launch{counts, offsets, tiles}
  kernel("moe.tile", "moe_scatter"):launch{experts, offsets, cursor, sorted}
  local out, sh = f32{TK, DM}, f32{T, DM}
  kernel("moe.tile", "moe_grouped", {BM = BM, LIMIT = LIMIT}):launch{
    x, sorted, offsets, tiles, weights, self.w[p .. "w1"], self.w[p .. "w2"], self.w[p .. "w3"], out}
  -- the shared expert: every token's one slot, in token order
  local all, ones = {}, {}
  for t = 1, T do all[t], ones[t] = t - 1, 1.0 end
  local soff, stiles = O.tensor("i32", {1}), O.tensor("i32", {(T + BM - 1) // BM + 1, 3})
  kernel("moe.tile", "moe_offsets", {BM = BM}):launch{O.tensor("i32", {1}, {T}), soff, stiles}
  local I = s1:shape()[1]
  kernel("moe.tile", "moe_grouped", {BM = BM, LIMIT = LIMIT}):launch{
    x, O.tensor("i32", {T}, all), soff, stiles, O.tensor("f32", {T, 1}, ones),
    s1:reshape{1, I, DM}, s2:reshape{1, DM, I}, s3:reshape{1, I, DM}, sh}
  kernel("moe.tile", "moe_combine", {K = K}):launch{sh, out, y}
  return y, experts, weights
end


end
