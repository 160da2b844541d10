-- rope.lua - the RoPE tables of the model, one per layer type (V4-SPEC 1.2).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard

return function(M)

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


end
