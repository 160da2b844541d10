-- mtp.lua - the MTP block (V4-SPEC 1.10).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard

return function(M)

-- ---- MTP ---------------------------------------------------------------------------------

-- The MTP block's input rows [n, 4, d] (V4-SPEC 1.10): the main model's
-- final streams h [n, 4, d] of positions i, each normed and projected
-- (hnorm, h_proj), plus the normed, projected embedding (enorm, e_proj) of
-- ids[i], the token after position i (add_streams).
function M:mtp_inputs(h, ids)
  local d, n, pre = self.cfg.dim, ids:numel(), "mtp.0."
  local e = f32{n, d}
  kernel("embed.tile", "embed"):launch{ids, self:raw("embed.weight"), e}
  local ep = linear(rmsnorm(e, self:weight(pre .. "enorm.weight")),
                    self:lweight(pre .. "e_proj.weight"))
  local hp = linear(rmsnorm(h:reshape{n * 4, d}, self:weight(pre .. "hnorm.weight")),
                    self:lweight(pre .. "h_proj.weight"))
  local X = O.out{n, 4, d}
  kernel("embed.tile", "add_streams"):launch{hp:reshape{n, 4, d}, ep, X}
  return X
end

-- The MTP block (V4-SPEC 1.10) as a prefill over positions 0 .. n - 1 of
-- the last prefill: position i combines the main model's final streams at
-- i with the embedding of next_ids[i] (the token i + 1); returns the
-- logits of its last position (a draft of the token at n + 1). The block's
-- attention state is handed off (as a layer's after a prefill), so that
-- M:mtp_steps goes on from position n.
function M:mtp(next_ids)
  local cfg, L = self.cfg, self.cfg.n_layers
  local n = next_ids:numel()
  if not self.final_streams or n > self.final_streams:shape(1) then
    error("mtp: ids for at most the last prefill's positions (after a prefill, not an extend)",
          2)
  end
  O.use(self.dev, self.tf32)
  next_ids = O.on_device(next_ids)
  local X = self:mtp_inputs(self.final_streams:slice(0, 0, n), next_ids)
  local pos_v = {}
  for t = 0, n - 1 do pos_v[t + 1] = t end
  local pos, made, _ = O.tensor("i32", {n}, pos_v), nil, nil
  X, _, _, made = self:mhc_block(L, "attn", X, nil, function(x)
    return self:attention(L, x, pos)
  end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, next_ids) end)
  self.state[L] = self:hand_off(L, made, n)
  self.mtp_pos = n
  return self:head(X, "mtp.0.")
end

-- The MTP block's next k positions (M:mtp's state from position
-- self.mtp_pos): h [k, 4, d] the main model's final streams at those
-- positions, ids (a table or i32 tensor [k]) the token after each; the
-- linears over the k rows at once, the attention a position at a time (as
-- M:decode_tokens). Returns the logits of the last (the draft of the token
-- two after its position).
function M:mtp_steps(h, ids)
  local cfg, L = self.cfg, self.cfg.n_layers
  local t = self.mtp_pos
  if not t then error("mtp_steps needs M:mtp first", 2) end
  if type(ids) == "table" then ids = O.tensor("i32", {#ids}, ids) end
  local k = ids:numel()
  self:check_room("mtp_steps", t, k, 2)
  O.use(self.dev, self.tf32)
  ids = O.on_device(ids)
  local pos_v, seqs = {}, {}
  for i = 1, k do pos_v[i], seqs[i] = t + i - 1, self end
  local X, step = self:mtp_inputs(h, ids), self.step_inputs()
  X = self:mhc_block(L, "attn", X, nil, function(x)
    return self:attention_steps(L, x, seqs, pos_v, step, true)
  end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, ids) end)
  self.mtp_pos = t + k
  return self:head(X, "mtp.0.")
end


-- The greedy pick of logits [1, vocab] (kernels/argmax.tile).
local function greedy(logits)
  local out = O.out({1}, "i32")
  kernel("argmax.tile", "argmax"):launch{logits:reshape{1, logits:numel()}, out}
  return out:to_table()[1]
end

-- Speculative decoding with the MTP block's drafts (V4-SPEC 1.10), after a
-- prefill of `prompt` (a table of ids) whose last logits are `logits`: up
-- to n tokens, each pick(logits [1, vocab]) of the main model's (the
-- caller's: greedy, or a draw from its generator), stopping after `eos`.
-- The block over the prompt drafts the token after the first pick; each
-- step then decodes the last token and the draft together
-- (M:decode_tokens), picks the token after the last and, when that is the
-- draft, the one after the draft too; else the draft is forgotten
-- (M:forget_last). The block drafts the next token (greedy, or draft(new)
-- when given: the tokens so far) from the main model's streams of the
-- positions decoded and the tokens picked after them (M:mtp_steps). The
-- tokens are a plain decode's (bit for bit on the CPU), as each is picked
-- from the same logits, the picks in the same order; the last is not
-- decoded, as a plain decode leaves it. Returns the tokens, the drafts
-- made and the drafts kept.
function M:speculate(logits, prompt, n, pick, eos, draft)
  local tok = pick(logits)
  local new, drafts, kept = {tok}, 0, 0
  if tok == eos or n <= 1 then return new, drafts, kept end
  local after = table.move(prompt, 2, #prompt, 1, {})
  after[#after + 1] = tok
  local function next_draft(l) return draft and draft(new) or greedy(l) end
  local d = next_draft(self:mtp(O.tensor("i32", {#after}, after)))
  while true do
    local two = self:decode_tokens({tok, d})
    local h = self.last_streams
    local y = pick(two:slice(0, 0, 1))
    new[#new + 1], drafts = y, drafts + 1
    if y == d then
      kept = kept + 1
      if y == eos or #new == n then
        self:forget_last() -- (the last token not decoded)
        break
      end
      local z = pick(two:slice(0, 1, 1))
      new[#new + 1] = z
      if z == eos or #new == n then break end
      d, tok = next_draft(self:mtp_steps(h, {y, z})), z
    else
      self:forget_last()
      if y == eos or #new == n then break end
      d, tok = next_draft(self:mtp_steps(h:slice(0, 0, 1), {y})), y
    end
  end
  return new, drafts, kept
end

end
