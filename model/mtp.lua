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

-- The MTP block (V4-SPEC 1.10) over the next positions of the last run (a
-- prefill's, an extend's or a chunk's), as a prefill (from position 0) or
-- an extend of its own state (from self.mtp_pos, where it stopped):
-- position i combines the main model's final streams at i with the
-- embedding of next_ids[i] (the token at i + 1); returns the logits of its
-- last position (a draft of the token two after it). The block's attention
-- state is handed off (as a layer's), so that M:mtp_steps or a later M:mtp
-- goes on from there.
function M:mtp(next_ids)
  local L, n, P = self.cfg.n_layers, next_ids:numel(), self.mtp_pos or 0
  local from, held = self.final_from, self.final_streams and self.final_streams:shape(1)
  if n == 0 or not held or P < from or P + n > from + held then
    error(string.format("mtp: %d ids for positions %d .. %d; the main model's streams held: %s",
                        n, P, P + n - 1, held and string.format("positions %d .. %d (its last " ..
                        "run's)", from, from + held - 1) or "none (mtp follows a prefill or an " ..
                        "extend)"), 2)
  end
  O.use(self.dev, self.tf32)
  next_ids = O.on_device(next_ids)
  local X = self:mtp_inputs(self.final_streams:slice(0, P - from, n), next_ids)
  local pos_v = {}
  for t = 0, n - 1 do pos_v[t + 1] = P + t end
  local pos, made, _ = O.tensor("i32", {n}, pos_v), nil, nil
  X, _, _, made = self:mhc_block(L, "attn", X, nil, function(x)
    return self:attention(L, x, pos, nil, P)
  end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, next_ids) end)
  self.state[L] = self:hand_off(L, made, n, P)
  self.mtp_pos = P + n
  return self:head(X, "mtp.0.")
end

-- The MTP block's next positions of several sequences in rounds
-- (rounds[r] = {seqs = {...}, ids = {...} the token after each position};
-- M:flat_rounds' form, each sequence's state from M:mtp at its mtp_pos),
-- h [rows, 4, d] the main model's final streams at those positions, round
-- after round: the linears over all rows at once, the attention a round
-- at a time (as M:decode_rounds). Returns the logits of every row [rows,
-- vocab] (each a draft of the token two after its position).
function M:mtp_rounds(rounds, h)
  local cfg, d, L = self.cfg, self.cfg.dim, self.cfg.n_layers
  local seqs, idv, pos_v, rows, count = self:flat_rounds(rounds, "mtp_rounds",
                                                         function(s) return s.mtp_pos end)
  O.use(self.dev, self.tf32)
  local ids, step = O.on_device(O.tensor("i32", {#idv}, idv)), self.step_inputs()
  local X = self:mtp_inputs(h, ids)
  X = self:mhc_block(L, "attn", X, nil, function(x)
    return self:attention_steps(L, x, seqs, pos_v, step, rows)
  end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, ids) end)
  for s, k in pairs(count) do s.mtp_pos = s.mtp_pos + k end
  return self:head(X, "mtp.0.", true)
end

-- The MTP block's next k positions of this sequence (M:mtp's state from
-- position self.mtp_pos): h [k, 4, d] the main model's final streams at
-- those positions, ids (a table or i32 tensor [k]) the token after each
-- (M:mtp_rounds: k rounds of one). Returns the logits of the last (the
-- draft of the token two after its position).
function M:mtp_steps(h, ids)
  if not self.mtp_pos then error("mtp_steps needs M:mtp first", 2) end
  if type(ids) ~= "table" then ids = ids:to_table() end
  local rounds = {}
  for i, id in ipairs(ids) do rounds[i] = {seqs = {self}, ids = {id}} end
  local logits = self:mtp_rounds(rounds, h)
  return logits:slice(0, #ids - 1, 1)
end

-- The greedy picks of logits [R, vocab] (kernels/argmax.tile): a list; of
-- [1, vocab] or [vocab] the one pick.
local function greedy_rows(logits)
  local V = logits:shape(logits:numel() == logits:shape(1) and 1 or 2)
  local R = logits:numel() // V
  local out = O.out({R}, "i32")
  kernel("argmax.tile", "argmax"):launch{logits:reshape{R, V}, out}
  return out:to_table()
end
local function greedy(logits) return greedy_rows(logits)[1] end

-- Speculative decoding with the MTP block's drafts (V4-SPEC 1.10), after a
-- prefill or an extend whose last logits are `logits`, of `prompt` (a
-- table of the sequence's ids: at least those after the MTP block's
-- position, M:mtp's; the block from position 0 after a prefill, else
-- where it stopped, which a speculation leaves at the end): up to n
-- tokens, each pick(logits [1, vocab]) of the main model's (the caller's:
-- greedy, or a draw from its generator), stopping after `eos`. The block
-- over the last run drafts the token after the first pick; each step then
-- decodes the last token and the draft together (two rounds of one token:
-- M:decode_tokens' form), picks the token after the last and, when that
-- is the draft, the one after the draft too; else the draft is forgotten
-- (M:forget_last). The block drafts the next token (greedy, or draft(new)
-- when given: the tokens so far) from the main model's streams of the
-- positions decoded and the tokens picked after them (M:mtp_steps' form);
-- after the last step it runs over those positions too, so that an extend
-- (the next turn) can go on speculating. The tokens are a plain decode's
-- (bit for bit on the CPU), as each is picked from the same logits, the
-- picks in the same order; the last is not decoded, as a plain decode
-- leaves it. M:speculate_batch of this sequence alone. Returns the tokens,
-- the drafts made and the drafts kept.
function M:speculate(logits, prompt, n, pick, eos, draft)
  local outs, drafts, kept = self:speculate_batch({self}, logits, {prompt}, n, pick, eos,
                                                  draft and function(_, new) return draft(new) end)
  return outs[1], drafts, kept
end

-- The tokens after the positions of s's last run from the MTP block's
-- position (the prompt's last ones, then tok, the first pick).
local function tokens_after(s, prompt, tok, b)
  local k = s.next_pos - (s.mtp_pos or 0)
  if k < 1 or k - 1 > #prompt then
    error(string.format("speculate: sequence %d: the MTP block at position %d, the sequence " ..
                        "at %d, the prompt %d ids", b, s.mtp_pos or 0, s.next_pos, #prompt), 3)
  end
  local after = table.move(prompt, #prompt - k + 2, #prompt, 1, {})
  after[k] = tok
  return O.tensor("i32", {k}, after)
end

-- M:speculate for several sequences together (each prefilled or
-- extended: seqs[b]'s ids prompts[b], its last logits row b of logits [B,
-- vocab], as prefill_batch gives them): each step decodes every live
-- sequence's last token and draft in two rounds (M:decode_rounds: the
-- linears once for all, the attention one launch a round), keeps or
-- forgets each draft, and runs the MTP block in one or two rounds
-- (M:mtp_rounds: a round of every sequence, one of those whose draft was
-- kept), whose last rows draft the next tokens of those going on.
-- pick(logits [1, vocab], b) picks sequence b's token; draft(b, tokens so
-- far), when given, overrides the block's drafts (as M:speculate's).
-- Returns each sequence's tokens, the drafts made and kept.
-- Greedy, each sequence's tokens are its plain decode's; sampled, the
-- picks come in another order than a plain batch's (a sequence may pick
-- two in a step), so the draws fall otherwise.
function M:speculate_batch(seqs, logits, prompts, n, pick, eos, draft_of)
  local B, d = #seqs, self.cfg.dim
  local outs, tok, draft, live, drafts, kept = {}, {}, {}, {}, 0, 0
  for b, s in ipairs(seqs) do
    tok[b] = pick(logits:slice(0, b - 1, 1), b)
    outs[b] = {tok[b]}
    draft[b] = greedy(s:mtp(tokens_after(s, prompts[b], tok[b], b)))
    if tok[b] ~= eos and n > 1 then
      if draft_of then draft[b] = draft_of(b, outs[b]) end
      live[#live + 1] = b
    end
  end
  while #live > 0 do
    local ls, lt, ld, m = {}, {}, {}, #live
    for k, b in ipairs(live) do ls[k], lt[k], ld[k] = seqs[b], tok[b], draft[b] end
    local two, X = self:decode_rounds({{seqs = ls, ids = lt}, {seqs = ls, ids = ld}})
    local flat = X:reshape{2 * m, 4 * d}
    -- the MTP block's rounds: each sequence (its first decoded position,
    -- the token picked after it), then those that kept their draft and
    -- picked after it (the draft's position, the token after it)
    local r1, r2, going = {seqs = {}, ids = {}, rows = {}}, {seqs = {}, ids = {}, rows = {}}, {}
    for k, b in ipairs(live) do
      local s, out = seqs[b], outs[b]
      local y = pick(two:slice(0, k - 1, 1), b)
      out[#out + 1], drafts = y, drafts + 1
      table.insert(r1.seqs, s); table.insert(r1.ids, y); table.insert(r1.rows, k - 1)
      tok[b] = y
      if y == draft[b] then kept = kept + 1 end
      if y == draft[b] and y ~= eos and #out < n then
        local z = pick(two:slice(0, m + k - 1, 1), b)
        out[#out + 1], tok[b] = z, z
        table.insert(r2.seqs, s); table.insert(r2.ids, z); table.insert(r2.rows, m + k - 1)
      else
        s:forget_last() -- (the draft wrong, or the last token: not decoded)
      end
      if tok[b] ~= eos and #out < n then going[#going + 1] = b end
    end
    -- (both rounds' streams gathered by one launch, round after round)
    local rows = table.move(r2.rows, 1, #r2.rows, #r1.rows + 1, table.move(r1.rows, 1,
                                                                            #r1.rows, 1, {}))
    local h = O.out{#rows, 4 * d}
    kernel("embed.tile", "rows_f32"):launch{flat, O.tensor("i32", {#rows}, rows), h}
    local rounds = {r1}
    if #r2.seqs > 0 then rounds[2] = r2 end
    local picks = greedy_rows(self:mtp_rounds(rounds, h:reshape{#rows, 4, d}))
    -- each sequence's last row: its round 2 row when it kept its draft
    local last, n1 = {}, #r1.seqs
    for k, s in ipairs(r1.seqs) do last[s] = picks[k] end
    for k, s in ipairs(r2.seqs) do last[s] = picks[n1 + k] end
    for _, b in ipairs(going) do
      draft[b] = draft_of and draft_of(b, outs[b]) or last[seqs[b]]
    end
    live = going
  end
  return outs, drafts, kept

end

end
