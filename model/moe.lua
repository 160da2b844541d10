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
  kernel("moe.tile", "moe_experts", {LIMIT = cfg.swiglu_limit * 1.0}):launch{
    x, experts, weights, self.w[p .. "w1"], self.w[p .. "w2"], self.w[p .. "w3"],
    self:raw(p .. "shared_experts.w1.weight"), self:raw(p .. "shared_experts.w2.weight"),
    self:raw(p .. "shared_experts.w3.weight"), y}
  return y, experts, weights
end


end
