-- mtp.lua - the MTP block (V4-SPEC 1.10).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard

return function(M)

-- ---- MTP ---------------------------------------------------------------------------------

-- The MTP block (V4-SPEC 1.10) as a prefill over positions 0 .. n - 1 of
-- the last prefill: position i combines the main model's final streams at
-- i with the embedding of next_ids[i] (the token i + 1); returns the
-- logits of its last position.
function M:mtp(next_ids)
  local cfg, d, L = self.cfg, self.cfg.dim, self.cfg.n_layers
  local n, pre = next_ids:numel(), "mtp.0."
  if not self.final_streams or n > self.final_streams:shape(1) then
    error("mtp: ids for at most the last prefill's positions (after a prefill, not an extend)",
          2)
  end
  O.use(self.dev, self.tf32)
  next_ids = O.on_device(next_ids)
  local e = f32{n, d}
  kernel("embed.tile", "embed"):launch{next_ids, self:raw("embed.weight"), e}
  local ep = linear(rmsnorm(e, self:weight(pre .. "enorm.weight")),
                    self:lweight(pre .. "e_proj.weight")):to_table()
  local main = self.final_streams:slice(0, 0, n):reshape{n * 4, d}
  local hp = linear(rmsnorm(main, self:weight(pre .. "hnorm.weight")),
                    self:lweight(pre .. "h_proj.weight")):to_table()
  for i = 0, n - 1 do
    for j = 0, 3 do
      for c = 1, d do
        local k = (i * 4 + j) * d + c
        hp[k] = hp[k] + ep[i * d + c]
      end
    end
  end
  local X = O.tensor("f32", {n, 4, d}, hp)
  local pos_v = {}
  for t = 0, n - 1 do pos_v[t + 1] = t end
  local pos = O.tensor("i32", {n}, pos_v)
  X = self:mhc_block(L, "attn", X, nil, function(x) return self:attention(L, x, pos) end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, next_ids) end)
  return self:head(X, pre)
end


end
