-- serve.lua - continuous batching (model/scheduler.lua) on DeepSeek's tiny
-- golden model: requests arriving at different steps, prompts longer than
-- a step's prefill budget (prefilled in chunks across steps while others
-- decode), greedy and sampled requests, an EOS, more requests than the
-- batch holds, bad requests refused - and each request's tokens equal, id
-- for id, what it gets alone from a second model (graphs off, one
-- sequence, its prompt prefilled whole, then a decode a token). Both cache
-- formats with graphs on, as a server runs. Then the prefix cache (shared
-- system prompts, a conversation's next turn) and seeded random traffic
-- with cancels. Skips without ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local S = require "model.sampling"
local Sched = require "model.scheduler"
local C = require "tests.lua.lib.check"
local check = C.check
local dir = C.golden()
if not dir then return end

local function prompt(len, seed, V)
  local rnd, ids = C.lcg(seed), {}
  for i = 1, len do ids[i] = math.floor(rnd() * V) end
  return ids
end

-- request r alone: its prompt prefilled whole, then a decode a token,
-- picked as the scheduler picks (its own generator)
local function alone(ref, pick, r, eos)
  local seq = ref:sequence()
  local logits = seq:prefill(ts.tensor("i32", {#r.ids}, r.ids))
  local gen, out = S.generator(r.seed or 1), {}
  for s = 1, r.max_tokens do
    local t = pick(logits, {{temperature = r.temperature or 0, top_p = r.top_p or 1,
                             gen = gen}})[1]
    out[s] = t
    if t == eos or s == r.max_tokens then break end
    logits = seq:decode(t)
  end
  seq:release()
  return out
end

for _, fmt in ipairs{"fp8", "f32"} do
  local ref = V4.load(dir, nil, {kv_format = fmt})
  local model = V4.load(dir, nil, {kv_format = fmt, graphs = true})
  local V, maxlen = model.cfg.vocab_size, model.cfg.max_seq_len
  local pick = S.picker(ref.dev)
  -- (max_batch 3, 24 prompt tokens a step: the 70- and 50-token prompts
  -- take 3 steps each, beside the others' decoding)
  local reqs = {
    {id = "a", ids = prompt(9, 1, V), max_tokens = 12, arrive = 0},
    {id = "b", ids = prompt(70, 2, V), max_tokens = 6, arrive = 0, temperature = 0.9,
     top_p = 0.95, seed = 7},
    {id = "c", ids = prompt(5, 3, V), max_tokens = 9, arrive = 1},
    {id = "d", ids = prompt(12, 4, V), max_tokens = 1, arrive = 2},
    {id = "e", ids = prompt(50, 5, V), max_tokens = 8, arrive = 2, temperature = 0.7, seed = 3},
    {id = "f", ids = prompt(3, 6, V), max_tokens = 10, arrive = 6},
    {id = "g", ids = prompt(17, 7, V), max_tokens = 7, arrive = 6, temperature = 1.2, seed = 11},
    {id = "h", ids = prompt(8, 8, V), max_tokens = 5, arrive = 30},
  }
  -- an EOS: request a's third token alone, so that it ends there with
  -- "eos" (and any other request that draws it)
  local eos = alone(ref, pick, {ids = reqs[1].ids, max_tokens = 3}, nil)[3]
  local want = {}
  for i, r in ipairs(reqs) do want[i] = alone(ref, pick, r, eos) end
  check(#want[1] == 3 and want[1][3] == eos, fmt .. ": request a ends at the EOS alone")

  local s = Sched.new(model, {max_batch = 3, prefill_tokens = 24, eos = eos})
  for _, r in ipairs(reqs) do
    check(s:submit(r) == true, fmt .. ": request " .. r.id .. " queued")
  end
  -- refused, and not queued
  local bad = {{ids = {}}, {ids = {1, V}}, {ids = {1, 2.5}}, {ids = {1}, max_tokens = 0},
               {ids = prompt(maxlen, 9, V), max_tokens = 1}, {ids = {1}, temperature = -1},
               {ids = {1}, top_p = 0}, {ids = {1}, arrive = -1}, {ids = {1}, seed = 0.5}}
  for i, r in ipairs(bad) do
    local ok, why = s:submit(r)
    check(ok == nil and type(why) == "string", fmt .. ": bad request " .. i .. " refused")
  end
  local active_max, firsts, events_seen, finishes = 0, {}, {}, {}
  local guard = 0
  while s:busy() and guard < 200 do
    guard = guard + 1
    local step = s.step_no
    for _, e in ipairs(s:step()) do
      local r = e.request
      events_seen[r.id] = (events_seen[r.id] or 0) + 1
      check(e.index == events_seen[r.id] and r.tokens[e.index] == e.token,
            fmt .. ": an event's token at its index")
      if e.first then firsts[r.id] = step end
      if e.finish then finishes[r.id] = e.finish end
    end
    active_max = math.max(active_max, #s.prefilling + #s.decoding)
  end
  check(not s:busy(), fmt .. ": every request done")
  check(active_max <= 3, fmt .. ": at most max_batch requests active (" .. active_max .. ")")
  for i, r in ipairs(reqs) do
    local what = fmt .. ": request " .. r.id
    check(C.same(r.tokens, want[i]), what .. "'s tokens are its own alone")
    check(events_seen[r.id] == #r.tokens, what .. ": an event a token")
    check(r.first_step == firsts[r.id] and r.first_step >= r.arrive,
          what .. ": first token after it arrived")
    local ended = want[i][#want[i]] == eos and "eos" or "length"
    check(finishes[r.id] == r.finish and r.finish == ended,
          what .. " finished by " .. tostring(r.finish))
    check(r.done_step >= r.first_step and r.t_done >= r.t_first and r.t_first >= r.t_arrived,
          what .. ": its steps and times in order")
  end
  -- the long prompts were prefilled across steps: b's 70 tokens at 24 a
  -- step take three, so its first token comes at step 2 at the earliest
  check(reqs[2].first_step >= 2, fmt .. ": the 70-token prompt prefilled in chunks")
  -- a's decoding went on while b's chunks were prefilled
  check(reqs[1].first_step == 0 and reqs[1].done_step <= 3, fmt .. ": request a decoded meanwhile")
  check(reqs[8].arrived == 30 and reqs[8].first_step == 30,
        fmt .. ": a late request waits for its step")
  check(s.stats.max_rows <= 3 and s.stats.decode_rows > s.stats.decode_steps,
        fmt .. ": decode steps batched several requests")
  -- the pools' slots were given back and taken again: no more slots than
  -- the batch holds were ever taken
  check(model.slots_taken <= 3, fmt .. ": slots reused (" .. model.slots_taken .. " taken)")
end

-- the prefix cache: requests sharing a 40-token system prompt (and one
-- its whole prompt again) start from a kept prefix's state, a
-- conversation's next turn from its previous turn's finished sequence;
-- each request's tokens are still its own alone, also with a cache of one
-- entry (which releases the older prefixes)
local ref = V4.load(dir, nil, {kv_format = "fp8"})
local model = V4.load(dir, nil, {kv_format = "fp8", graphs = true})
local V = model.cfg.vocab_size
local pick = S.picker(ref.dev)
local sys1, sys2 = prompt(40, 21, V), prompt(30, 22, V)
local function with(pre, len, seed)
  local ids = table.move(pre, 1, #pre, 1, {})
  for _, t in ipairs(prompt(len, seed, V)) do ids[#ids + 1] = t end
  return ids
end
for _, K in ipairs{16, 1} do
  local reqs = {
    {id = 1, ids = with(sys1, 6, 31), max_tokens = 5, arrive = 0},
    {id = 2, ids = with(sys1, 9, 32), max_tokens = 6, arrive = 1, temperature = 0.8, seed = 4},
    {id = 3, ids = with(sys1, 6, 31), max_tokens = 4, arrive = 2},
    {id = 4, ids = with(sys2, 5, 33), max_tokens = 4, arrive = 3},
    {id = 5, ids = with(sys2, 12, 34), max_tokens = 5, arrive = 3},
    {id = 6, ids = with(sys1, 30, 35), max_tokens = 6, arrive = 4},
    {id = 7, ids = prompt(20, 36, V), max_tokens = 3, arrive = 4},
  }
  local s = Sched.new(model, {max_batch = 3, prefill_tokens = 48, prefix_cache = K,
                              min_prefix = 8})
  for _, r in ipairs(reqs) do s:submit(r) end
  while s:busy() do s:step() end
  local what = "prefix cache " .. K
  for _, r in ipairs(reqs) do
    check(C.same(r.tokens, alone(ref, pick, r, nil)),
          what .. ": request " .. r.id .. "'s tokens alone")
  end
  check(#s.prefixes <= K, what .. ": at most " .. K .. " prefixes kept")
  if K == 16 then
    -- (request 2 keeps sys1's 40 tokens, 5 sys2's 30, and each finished
    -- request its prompt and tokens; 3 and 6 start from sys1's, 7 from none)
    check(s.stats.prefixes == 2 + #reqs and not reqs[2].cached and not reqs[5].cached,
          what .. ": prefixes kept (" .. s.stats.prefixes .. ")")
    check(reqs[3].cached == 40 and reqs[6].cached == 40 and not reqs[7].cached,
          what .. ": the system prompt's requests start from it, the other one not")
    -- the next turn of request 1's conversation: its prompt, its reply but
    -- the last token, then more
    local r1 = reqs[1]
    local turn = {id = 8, ids = table.move(r1.ids, 1, #r1.ids, 1, {}), max_tokens = 6,
                  arrive = s.step_no}
    table.move(r1.tokens, 1, #r1.tokens - 1, #turn.ids + 1, turn.ids)
    local gone_on = #turn.ids
    for _, t in ipairs(prompt(7, 37, V)) do turn.ids[#turn.ids + 1] = t end
    s:submit(turn)
    while s:busy() do s:step() end
    check(turn.cached == gone_on and C.same(turn.tokens, alone(ref, pick, turn, nil)),
          what .. ": a conversation's next turn goes on from the last one's sequence (" ..
          tostring(turn.cached) .. " of " .. #turn.ids .. " tokens)")
  end
end

-- random traffic (seeded): requests built from a few shared system
-- prompts, earlier requests' prompts and replies (conversations) and
-- random tails, arriving at random steps, some cancelled between steps,
-- under random batch sizes, prefill budgets and prefix caches; every
-- request not cancelled gets its tokens alone, and the scheduler ends
-- holding no more slots than its batch and cache
local rnd = C.lcg(91)
local function int(lo, hi) return lo + math.floor(rnd() * (hi - lo + 1)) end
for round = 1, 3 do
  local K, B = int(0, 4), int(1, 4)
  local s = Sched.new(model, {max_batch = B, prefill_tokens = int(6, 48), prefix_cache = K,
                              min_prefix = int(4, 12)})
  local systems = {prompt(int(10, 40), 100 + round, V), prompt(int(10, 40), 200 + round, V)}
  local done, live, step = {}, {}, 0
  local made, cancelled = 0, 0
  while made < 14 or s:busy() do
    if made < 14 and rnd() < 0.5 then
      made = made + 1
      local ids
      local pick_kind = rnd()
      if pick_kind < 0.4 then
        ids = with(systems[int(1, 2)], int(1, 12), 1000 * round + made)
      elseif pick_kind < 0.7 and #done > 0 then -- a conversation's next turn
        local d = done[int(1, #done)]
        ids = table.move(d.ids, 1, #d.ids, 1, {})
        table.move(d.tokens, 1, #d.tokens - 1, #ids + 1, ids)
        for _, t in ipairs(prompt(int(1, 6), 2000 * round + made, V)) do ids[#ids + 1] = t end
      else
        ids = prompt(int(1, 30), 3000 * round + made, V)
      end
      local r = {id = made, ids = ids, max_tokens = int(1, 6), arrive = step + int(0, 2),
                 temperature = rnd() < 0.3 and 0.9 or 0, seed = made}
      check(s:submit(r) == true, "random traffic: request queued")
      live[#live + 1] = r
    end
    if s:busy() then
      for _, e in ipairs(s:step()) do
        if e.finish then done[#done + 1] = e.request end
      end
      step = step + 1
      if rnd() < 0.1 and #live > 0 then -- a client gone
        local r = live[int(1, #live)]
        if not r.finish then
          s:cancel(r)
          cancelled = cancelled + 1
        end
      end
    end
  end
  local ok = true
  for _, r in ipairs(live) do
    if r.finish ~= "cancelled" then
      ok = ok and C.same(r.tokens, alone(ref, pick, r, nil))
    end
  end
  check(ok, string.format("random traffic %d (batch %d, cache %d, %d cancelled, %d tokens from " ..
                          "kept prefixes): each request's tokens alone", round, B, K, cancelled,
                          s.stats.cached_tokens))
  check(#s.prefixes <= K, "random traffic: at most K prefixes kept")
end

-- bad options
for _, o in ipairs{{max_batch = 0}, {prefill_tokens = 1.5}, {prefix_cache = -1},
                   {min_prefix = 0}} do
  check(not pcall(Sched.new, model, o), "scheduler options refused")
end

C.finish()
