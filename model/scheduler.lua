-- scheduler.lua - continuous batching: requests that arrive over time,
-- served together by one model (its sequences share the state pools and
-- every launch of a step: model/v4.lua prefill_batch, decode_batch).
--   local Sched = require "model.scheduler"
--   local s = Sched.new(model, {max_batch = 8, prefill_tokens = 512, eos = id})
--   s:submit{id = ..., ids = {...}, max_tokens = 64, temperature = 0,
--            top_p = 1, seed = 1, arrive = 0}     -> true, or nil and why
--   while s:busy() do for _, e in ipairs(s:step()) do ... end end
--
-- A step, in order:
--   1. the requests whose `arrive` (a step number) has come join the
--      queue, in the order they were submitted;
--   2. prefill, at most `prefill_tokens` prompt tokens a step: first the
--      prompts already begun (model:extend of their next chunk, in the order
--      they were admitted), then new requests from the queue while fewer
--      than `max_batch` are active: a prompt that fits what is left of the
--      budget joins one model:prefill_batch with the others that do, a
--      longer one prefills its first chunk alone (model:prefill) and goes on
--      in later steps - so a long prompt does not stall the others'
--      decoding (vLLM's chunked prefill);
--   3. one model:decode_batch over every request with a token to decode,
--      the ones whose prompt just ended included.
-- With opts.prefix_cache = K (0: off) a new request whose prompt begins
-- with a kept prefix starts from a copy of that prefix's state
-- (model:fork) and extends the rest of its prompt; a prefix is kept when a
-- new prompt shares at least opts.min_prefix (16) tokens with one of the
-- last 16 prompts (a system prompt, a conversation so far): that request's
-- prefill stops once at the end of the shared tokens and a copy of its
-- state there is kept, up to K of them, the least recently used released.
-- A finished request's sequence is kept the same way, as the prefix of its
-- prompt and its tokens but the last (those it went through): a
-- conversation's next turn goes on from it. The same tokens come out (a
-- fork extended is one prefill, and a decode step one more token of it,
-- bit for bit on the CPU); a shared prefix is prefilled about twice instead
-- of once a request (r.cached: the tokens a request took from a kept one).
-- A request's token comes from its prompt's logits, then from each decode
-- step's row: greedy at temperature 0 (kernels/argmax.tile), else
-- temperature + top-p from its own generator seeded `seed`
-- (model/sampling.lua), so that each request's tokens are the ones it would
-- get alone: the batch's rows are each sequence's own bit for bit on the
-- CPU (tests/lua/serve.lua checks it against one sequence at a time). It
-- ends at `eos` (kept as its last token) or at max_tokens; its sequence is
-- then released (model:release: its slot in the pools taken by a later
-- request).
-- step() returns the step's events, one a request that got a token:
-- {request = r, token = id, index = its place in r.tokens (a request may
-- get two in a step: its prompt's and a decode's), first = true on its
-- first, finish = "eos" | "length" on its last}; a request records its
-- tokens (r.tokens), the steps it arrived, got its first token and ended
-- (r.arrived, r.first_step, r.done_step), the clock's seconds at each
-- (r.t_arrived, r.t_first, r.t_done; ts.clock) and, done, the ms from its
-- arrival to its first token (r.ttft_ms). s.stats counts the steps, the
-- decode steps and their rows, the prompts' launches, the prefixes kept and the tokens
-- taken from them, and of the finished requests their count, prompt and
-- generated tokens and times to first token (ms, from the step they
-- arrived).
local ts = require "tessera"
local S = require "model.sampling"

local M = {}
M.__index = M

-- A scheduler of `model`'s sequences: opts.max_batch (8) requests active at
-- once, opts.prefill_tokens (512) prompt tokens prefilled a step, opts.eos
-- (an id, or nil: none ends a request but its max_tokens).
function M.new(model, opts)
  opts = opts or {}
  local self = setmetatable({model = model, max_batch = opts.max_batch or 8,
                             prefill_tokens = opts.prefill_tokens or 512, eos = opts.eos,
                             prefix_cache = opts.prefix_cache or 0,
                             min_prefix = opts.min_prefix or 16, prefixes = {}, recent = {},
                             tick = 0,
                             pick = S.picker(model.dev), step_no = 0, pending = {},
                             waiting = {}, prefilling = {}, decoding = {}, submitted = 0,
                             stats = {steps = 0, decode_rows = 0, decode_steps = 0,
                                      max_rows = 0, prefill_launches = 0, prefixes = 0,
                                      cached_tokens = 0, served = 0, prompt_tokens = 0,
                                      generated = 0, ttft_ms = {}}},
                            M)
  for _, k in ipairs{"max_batch", "prefill_tokens", "prefix_cache", "min_prefix"} do
    local lo = k == "prefix_cache" and 0 or 1
    if math.type(self[k]) ~= "integer" or self[k] < lo then
      error("scheduler: " .. k .. " must be an integer, " .. lo .. " or more", 2)
    end
  end
  return self
end

local function integer_in(v, lo, hi)
  return math.type(v) == "integer" and v >= lo and (not hi or v <= hi)
end

-- Queues request r (its fields above; ids a list of token ids), or returns
-- nil and why it cannot be served (it is then not queued).
function M:submit(r)
  local cfg = self.model.cfg
  r.max_tokens = r.max_tokens or 64
  r.temperature, r.top_p, r.seed = r.temperature or 0, r.top_p or 1, r.seed or 1
  r.arrive = r.arrive or 0
  if type(r.ids) ~= "table" or #r.ids == 0 then return nil, "no prompt tokens" end
  for i, t in ipairs(r.ids) do
    if not integer_in(t, 0, cfg.vocab_size - 1) then
      return nil, string.format("prompt token %d (%s) is not an id below %d", i, tostring(t),
                                cfg.vocab_size)
    end
  end
  if not integer_in(r.max_tokens, 1) then return nil, "max_tokens must be a positive integer" end
  if #r.ids + r.max_tokens > cfg.max_seq_len then
    return nil, string.format("prompt (%d tokens) + max_tokens (%d) exceed the model's %d",
                              #r.ids, r.max_tokens, cfg.max_seq_len)
  end
  if type(r.temperature) ~= "number" or r.temperature < 0 then
    return nil, "temperature must be a number, 0 (greedy) or more"
  end
  if type(r.top_p) ~= "number" or not (r.top_p > 0 and r.top_p <= 1) then
    return nil, "top_p must be a number in (0, 1]"
  end
  if not integer_in(r.seed, math.mininteger) then return nil, "seed must be an integer" end
  if not integer_in(r.arrive, 0) then return nil, "arrive must be a step number, 0 or more" end
  self.submitted = self.submitted + 1
  r.order, r.tokens, r.prefilled = self.submitted, {}, 0
  r.gen = S.generator(r.seed)
  self.pending[#self.pending + 1] = r
  table.sort(self.pending, function(a, b)
    return a.arrive < b.arrive or (a.arrive == b.arrive and a.order < b.order)
  end)
  return true
end

-- Drops request r wherever it is (queued, prefilling, decoding; between
-- steps): its sequence released, r.finish "cancelled" (a client gone).
function M:cancel(r)
  for _, list in ipairs{self.pending, self.waiting, self.prefilling, self.decoding} do
    for i = #list, 1, -1 do
      if list[i] == r then table.remove(list, i) end
    end
  end
  if r.seq then
    r.seq:release()
    r.seq = nil
  end
  r.finish = r.finish or "cancelled"
end

-- Whether any request is not yet done.
function M:busy()
  return #self.pending + #self.waiting + #self.prefilling + #self.decoding > 0
end

local function ids_tensor(ids, from, n)
  return ts.tensor("i32", {n}, table.move(ids, from, from + n - 1, 1, {}))
end

-- Request r's next token t (its events list gets the event); true when r
-- is done.
function M:took(r, t, events)
  local ev = {request = r, token = t, first = #r.tokens == 0, index = #r.tokens + 1}
  r.tokens[#r.tokens + 1] = t
  if ev.first then r.first_step, r.t_first = self.step_no, ts.clock() end
  if t == self.eos then
    ev.finish = "eos"
  elseif #r.tokens == r.max_tokens then
    ev.finish = "length"
  end
  events[#events + 1] = ev
  if ev.finish then
    r.finish, r.done_step, r.t_done = ev.finish, self.step_no, ts.clock()
    r.ttft_ms = (r.t_first - r.t_arrived) * 1e3
    local st = self.stats
    st.served, st.prompt_tokens, st.generated = st.served + 1, st.prompt_tokens + #r.ids,
                                                st.generated + #r.tokens
    st.ttft_ms[#st.ttft_ms + 1] = r.ttft_ms
    self:kept_or_released(r)
    r.seq = nil
    return true
  end
  return false
end

-- The tokens of rows of logits [B, V] (or [V]) for requests rs, each by its
-- own sampling.
function M:picks(logits, rs)
  local rows = {}
  for b, r in ipairs(rs) do
    rows[b] = {temperature = r.temperature, top_p = r.top_p, gen = r.gen}
  end
  return self.pick(logits, rows)
end

-- The step's first token of each request whose prompt ended: rs and their
-- logits rows; those not done go on to decode.
function M:prompts_done(rs, logits, events)
  local toks = self:picks(logits, rs)
  for b, r in ipairs(rs) do
    if not self:took(r, toks[b], events) then self.decoding[#self.decoding + 1] = r end
  end
end

-- Request r's prompt, begun, extended by what is left of it or of the
-- step's budget (stopping first where it is to keep a prefix, r.keep_at,
-- and keeping it); its first token when it is done. Returns the budget
-- left.
function M:go_on(r, budget, events)
  while budget > 0 and r.prefilled < #r.ids do
    local n = math.min(#r.ids - r.prefilled, budget)
    if r.keep_at and r.prefilled < r.keep_at then n = math.min(n, r.keep_at - r.prefilled) end
    local logits = r.seq:extend(ids_tensor(r.ids, r.prefilled + 1, n))
    self.stats.prefill_launches = self.stats.prefill_launches + 1
    r.prefilled, budget = r.prefilled + n, budget - n
    if r.prefilled == r.keep_at then self:keep(r) end
    if r.prefilled == #r.ids then self:prompts_done({r}, logits, events) end
  end
  return budget
end

-- ---- the prefix cache ----------------------------------------------------------------------

local function common(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    if a[i] ~= b[i] then return i - 1 end
  end
  return n
end

-- The prefix cache's entry whose tokens begin request r's prompt (the
-- longest, shorter than the prompt; marked used), else nil. Else, when a
-- recent prompt shares at least min_prefix tokens with r's (fewer than
-- all) and no request on its way to keeping a prefix shares that one,
-- r.keep_at is set to their count: r's prefill stops there once and keeps
-- a copy of its state (M:keep). r's prompt joins the recent ones.
function M:prefix_of(r)
  if self.prefix_cache == 0 then return nil end
  local best
  for _, e in ipairs(self.prefixes) do
    if #e.ids < #r.ids and (not best or #e.ids > #best.ids) and common(e.ids, r.ids) == #e.ids then
      best = e
    end
  end
  if best then
    self.tick = self.tick + 1
    best.used = self.tick
  else
    local L = 0
    for _, p in ipairs(self.recent) do L = math.max(L, common(p, r.ids)) end
    L = math.min(L, #r.ids - 1)
    local planned = false
    for _, q in ipairs(self.prefilling) do
      planned = planned or q.keep_at and q.prefilled < q.keep_at and
                common(q.ids, r.ids) >= q.keep_at
    end
    if L >= self.min_prefix and not planned then r.keep_at = L end
  end
  table.insert(self.recent, 1, r.ids)
  if #self.recent > 16 then table.remove(self.recent) end
  return best
end

-- Adds the prefix of tokens ids whose state sequence seq holds (the least
-- recently used one released past prefix_cache; seq itself when one of
-- those tokens is kept already).
function M:add_prefix(ids, seq)
  assert(seq.next_pos == #ids, "scheduler: a kept prefix's state is at its last token")
  for _, e in ipairs(self.prefixes) do
    if #e.ids == #ids and common(e.ids, ids) == #ids then
      seq:release()
      return
    end
  end
  self.tick = self.tick + 1
  self.prefixes[#self.prefixes + 1] = {ids = ids, seq = seq, used = self.tick}
  self.stats.prefixes = self.stats.prefixes + 1
  if #self.prefixes > self.prefix_cache then
    table.sort(self.prefixes, function(a, b) return a.used > b.used end)
    table.remove(self.prefixes).seq:release()
  end
end

-- Keeps a copy of request r's state at r.keep_at as a prefix.
function M:keep(r)
  self:add_prefix(table.move(r.ids, 1, r.keep_at, 1, {}), r.seq:fork())
end

-- A finished request's sequence: with the prefix cache on, kept as the
-- prefix of its prompt and its tokens but the last (which it never
-- decoded), so that a conversation's next turn, whose prompt begins with
-- them, goes on from it; else (or when shorter than min_prefix) released.
function M:kept_or_released(r)
  local n = #r.ids + #r.tokens - 1
  if self.prefix_cache == 0 or n < self.min_prefix then
    r.seq:release()
    return
  end
  local ids = table.move(r.ids, 1, #r.ids, 1, {})
  table.move(r.tokens, 1, #r.tokens - 1, #ids + 1, ids)
  self:add_prefix(ids, r.seq)
end

-- One step (the module's comment); returns its events.
function M:step()
  local model, events = self.model, {}
  -- 1. arrivals
  while #self.pending > 0 and self.pending[1].arrive <= self.step_no do
    local r = table.remove(self.pending, 1)
    r.arrived, r.t_arrived = self.step_no, ts.clock()
    self.waiting[#self.waiting + 1] = r
  end
  -- 2. prefill: prompts begun, then new ones
  local budget = self.prefill_tokens
  local still = {}
  for _, r in ipairs(self.prefilling) do
    budget = self:go_on(r, budget, events)
    if r.prefilled < #r.ids then still[#still + 1] = r end
  end
  self.prefilling = still
  local group = {}
  while #self.waiting > 0 and budget > 0 and
        #self.prefilling + #self.decoding + #group < self.max_batch do
    local r = table.remove(self.waiting, 1)
    local e = self:prefix_of(r)
    if e then -- its prefix's state copied, the rest of its prompt an extend
      r.seq, r.prefilled, r.cached = e.seq:fork(), #e.ids, #e.ids
      self.stats.cached_tokens = self.stats.cached_tokens + #e.ids
    elseif #r.ids <= budget and not r.keep_at then
      r.seq = model:sequence()
      group[#group + 1] = r
      budget = budget - #r.ids
    else -- its first chunk alone (to where it keeps a prefix, at most)
      local n = math.min(budget, r.keep_at or budget)
      r.seq = model:sequence()
      r.seq:prefill(ids_tensor(r.ids, 1, n))
      self.stats.prefill_launches = self.stats.prefill_launches + 1
      r.prefilled, budget = n, budget - n
      if n == r.keep_at then self:keep(r) end
    end
    if r.seq and r.prefilled > 0 then -- (the rest now if the budget allows, else later)
      budget = self:go_on(r, budget, events)
      if r.prefilled < #r.ids then self.prefilling[#self.prefilling + 1] = r end
    end
  end
  if #group > 0 then
    local seqs, prompts = {}, {}
    for b, r in ipairs(group) do seqs[b], prompts[b], r.prefilled = r.seq, r.ids, #r.ids end
    local logits = model:prefill_batch(seqs, prompts)
    self.stats.prefill_launches = self.stats.prefill_launches + 1
    self:prompts_done(group, logits, events)
  end
  -- 3. decode
  local rs = self.decoding
  if #rs > 0 then
    local seqs, ids = {}, {}
    for b, r in ipairs(rs) do seqs[b], ids[b] = r.seq, r.tokens[#r.tokens] end
    local logits = model:decode_batch(seqs, ids)
    local toks = self:picks(logits, rs)
    local st = self.stats
    st.decode_steps, st.decode_rows = st.decode_steps + 1, st.decode_rows + #rs
    st.max_rows = math.max(st.max_rows, #rs)
    self.decoding = {}
    for b, r in ipairs(rs) do
      if not self:took(r, toks[b], events) then self.decoding[#self.decoding + 1] = r end
    end
  end
  self.step_no = self.step_no + 1
  self.stats.steps = self.step_no
  return events
end

return M
