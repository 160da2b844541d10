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
  self:check_ids("mtp", next_ids, 2)
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
-- (With graphs on, one sequence's rounds replay a graph, M:graphed_mtp,
-- and several sequences' too, M:graphed_rounds: model/graphs.lua.)
function M:mtp_rounds(rounds, h)
  local seqs, idv, pos_v, rows, count = self:flat_rounds(rounds, "mtp_rounds",
                                                         function(s) return s.mtp_pos end)
  O.use(self.dev, self.tf32)
  local one = self.one_sequence(seqs)
  if one and one.graphs then
    local logits = one:graphed_mtp(idv, pos_v[1], h)
    if logits then return logits end
  elseif not one and self.graphs then
    local logits = self:graphed_rounds(seqs, idv, pos_v, rows, count, h)
    if logits then return logits end
  end
  local logits = self:mtp_step(O.on_device(O.tensor("i32", {#idv}, idv)), h, seqs, pos_v, rows,
                               self.step_inputs())
  for s, k in pairs(count) do s.mtp_pos = s.mtp_pos + k end
  return logits
end

-- mtp_rounds' step of the flat rows (ids: an i32 tensor of the tokens
-- after them, h their main-model streams; step: M.step_inputs', or a
-- recorded step's with its plan): the logits of every row.
function M:mtp_step(ids, h, seqs, pos_v, rows, step)
  local L = self.cfg.n_layers
  local X = self:mtp_inputs(h, ids)
  X = self:mhc_block(L, "attn", X, nil, function(x)
    return self:attention_steps(L, x, seqs, pos_v, step, rows)
  end)
  X = self:mhc_block(L, "ffn", X, nil, function(x) return self:moe(L, x, ids) end)
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
-- leaves it. M:speculate_batch of this sequence alone (draft(new, the
-- block's draft) may give several drafts, as its draft_of). Returns the
-- tokens, the drafts made and kept, and the steps.
function M:speculate(logits, prompt, n, pick, eos, draft)
  local outs, drafts, kept, steps = self:speculate_batch({self}, logits, {prompt}, n, pick, eos,
    draft and function(_, new, m) return draft(new, m) end)
  return outs[1], drafts, kept, steps
end

-- Prompt lookup drafts (drafting without a model): the tokens that
-- followed the latest earlier occurrence of the last g tokens of `tokens`
-- (a list: the prompt and the tokens so far), g from `ngram` (3 by
-- default) down to 1, at most k of them; none when the tail never
-- occurred before. Repetitive text (code, quotes, lists, a summary of the
-- prompt) drafts several right tokens a step.
function M.prompt_lookup(tokens, k, ngram)
  local n = #tokens
  for g = math.min(ngram or 3, n - 1), 1, -1 do
    for start = n - g, 1, -1 do
      local same = true
      for i = 0, g - 1 do
        if tokens[start + i] ~= tokens[n - g + 1 + i] then same = false; break end
      end
      if same and start + g <= n then
        local out = table.move(tokens, start + g, math.min(start + g + k - 1, n), 1, {})
        if #out > 0 then return out end
      end
    end
  end
  return {}
end

-- Prompt lookup over a list that grows (M.lookup_index(tokens, ngram)):
-- x:push(list, from) appends list[from ..], x:draft(k) gives what
-- M.prompt_lookup(all the tokens pushed, k, ngram) gives, without the scan:
-- for each g <= ngram a map from a g-gram to the latest start of it that a
-- token follows (registered when that token is pushed), so a push costs
-- `ngram` map stores and a draft `ngram` lookups, not a pass over the
-- history (a long conversation's drafts, a step at a time).
local Index = {}
Index.__index = Index
local grams = {}
local function gram(t, s, g)
  if g == 1 then return t[s] end
  grams[g] = grams[g] or string.rep("j", g)
  return string.pack(grams[g], table.unpack(t, s, s + g - 1))
end

function M.lookup_index(tokens, ngram)
  local x = setmetatable({t = {}, n = 0, g = ngram or 3, at = {}}, Index)
  for g = 1, x.g do x.at[g] = {} end
  if tokens then x:push(tokens) end
  return x
end

function Index:push(list, from)
  local t, at = self.t, self.at
  for i = from or 1, #list do
    local n = self.n + 1
    t[n], self.n = list[i], n
    for g = 1, math.min(self.g, n - 1) do at[g][gram(t, n - g, g)] = n - g end
  end
end

function Index:draft(k)
  local t, n = self.t, self.n
  for g = math.min(self.g, n - 1), 1, -1 do
    local s = self.at[g][gram(t, n - g + 1, g)]
    if s then return table.move(t, s + g, math.min(s + g + k - 1, n), 1, {}) end
  end
  return {}
end

-- A draft function for M:speculate (new, m) that continues `history` (a
-- list of ids, read once) with the reply's tokens so far `new` (the same
-- list, growing): prompt lookup's drafts over both (up to k), else m (the
-- MTP block's draft). One for each reply.
function M.lookup_drafter(history, k, ngram)
  local x, seen = M.lookup_index(history, ngram), 0
  return function(new, m)
    if #new < seen then error("lookup_drafter: the reply's tokens went back (one a reply)", 2) end
    x:push(new, seen + 1)
    seen = #new
    local d = x:draft(k)
    return #d > 0 and d or m
  end
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
-- far, the block's draft), when given, gives the drafts instead: one id or
-- a list of up to M:max_step_positions() - 1 (more are cut), decoded as
-- that many more rounds of the step, the positions past the first wrong
-- one taken back by M:rewind (M:snapshot before the step; one draft:
-- M:forget_last, no copies); the tokens stay the plain decode's, each
-- right draft one more token for the step. Returns each sequence's tokens,
-- the drafts made and kept, and the steps.
-- Greedy, each sequence's tokens are its plain decode's; sampled, the
-- picks come in another order than a plain batch's (a sequence may pick
-- two in a step), so the draws fall otherwise.
function M:speculate_batch(seqs, logits, prompts, n, pick, eos, draft_of)
  local d, most = self.cfg.dim, self:max_step_positions() - 1
  local outs, tok, draft, live, drafts, kept, steps = {}, {}, {}, {}, 0, 0, 0
  -- (a draft_of's answer as a list of at most `most` drafts)
  local function list(v)
    if type(v) ~= "table" then return {v} end
    return #v > most and table.move(v, 1, most, 1, {}) or v
  end
  for b, s in ipairs(seqs) do
    tok[b] = pick(logits:slice(0, b - 1, 1), b)
    outs[b] = {tok[b]}
    draft[b] = {greedy(s:mtp(tokens_after(s, prompts[b], tok[b], b)))}
    if tok[b] ~= eos and n > 1 then
      if draft_of then draft[b] = list(draft_of(b, outs[b], draft[b][1])) end
      live[#live + 1] = b
    end
  end
  while #live > 0 do
    steps = steps + 1
    -- round 1: every live sequence's last token; round r + 1: the r-th
    -- drafts of those that have as many (at[r][b]: b's row)
    local rounds, at, total = {}, {}, 0
    for r = 1, most + 1 do
      local rd, rows = {seqs = {}, ids = {}}, {}
      for _, b in ipairs(live) do
        local id = r == 1 and tok[b] or draft[b][r - 1]
        if id then
          rd.seqs[#rd.seqs + 1], rd.ids[#rd.ids + 1], rows[b] = seqs[b], id, total + #rd.seqs
        end
      end
      if #rd.seqs == 0 then break end
      rounds[r], at[r], total = rd, rows, total + #rd.seqs
    end
    for _, b in ipairs(live) do -- (more than one draft: a rewind may follow)
      if #draft[b] > 1 then seqs[b]:snapshot(#draft[b] + 1) end
    end
    local logits_all, X = self:decode_rounds(rounds)
    local flat = X:reshape{total, 4 * d}
    -- each sequence's picks while its drafts are right; the MTP block's
    -- round r: each sequence's r-th position decoded and kept, the token
    -- picked after it
    local mrounds, going, last_round = {}, {}, {}
    for _, b in ipairs(live) do
      local s, out, D = seqs[b], outs[b], draft[b]
      local t0, r = s.next_pos - #D - 1, 1
      local y = pick(logits_all:slice(0, at[1][b], 1), b)
      out[#out + 1], drafts = y, drafts + #D
      while r <= #D and y == D[r] do
        kept = kept + 1
        if y == eos or #out >= n then break end
        r = r + 1
        y = pick(logits_all:slice(0, at[r][b], 1), b)
        out[#out + 1] = y
      end
      -- positions t0 .. t0 + r - 1 kept (their tokens the last and the
      -- drafts picked after), the rest forgotten
      if r <= #D then
        if #D == 1 then s:forget_last() else s:rewind(t0 + r) end
      end
      for k = 1, r do -- (rows: each position's row of the step's streams)
        local mr = mrounds[k] or {seqs = {}, ids = {}, rows = {}}
        mrounds[k] = mr
        table.insert(mr.seqs, s); table.insert(mr.ids, out[#out - r + k])
        table.insert(mr.rows, at[k][b])
      end
      last_round[s], tok[b] = r, y
      if y ~= eos and #out < n then going[#going + 1] = b end
    end
    -- (every round's streams gathered by one launch, round after round)
    local rows = {}
    for _, mr in ipairs(mrounds) do table.move(mr.rows, 1, #mr.rows, #rows + 1, rows) end
    local h = O.out{#rows, 4 * d}
    kernel("embed.tile", "rows_f32"):launch{flat, O.tensor("i32", {#rows}, rows), h}
    local picks = greedy_rows(self:mtp_rounds(mrounds, h:reshape{#rows, 4, d}))
    -- each sequence's last row: the one of its last round
    local last, first = {}, 0
    for k = 1, #mrounds do
      for i, s in ipairs(mrounds[k].seqs) do
        if last_round[s] == k then last[s] = picks[first + i] end
      end
      first = first + #mrounds[k].seqs
    end
    for _, b in ipairs(going) do
      draft[b] = draft_of and list(draft_of(b, outs[b], last[seqs[b]])) or {last[seqs[b]]}
    end
    live = going
  end
  return outs, drafts, kept, steps
end

end
