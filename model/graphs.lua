-- graphs.lua - decode steps replayed as graphs (ts.capture,
-- runtime/graph.c): the ~100 launches of a step without the Lua between
-- them, as one loop in C on the CPU and one CUDA graph launch on a GPU.
-- A sequence's steps (decode, and speculation's steps of k tokens:
-- M:graphed_step), its MTP block's steps of k positions (speculation's
-- drafts: M:graphed_mtp), a batch's (decode_batch: M:graphed_batch,
-- below) and several sequences' steps of rounds (speculate_batch's
-- verification: M:graphed_rounds).
--
-- A recorded step is the model's own decode step (M:decode_step), with
-- what changes from one position to the next read from the device: each
-- sequence has a plan, one i32 tensor whose slots hold the token id, the
-- position, the rows the step writes (the window ring's t mod W, the
-- compressors' buffers' t mod R, the new compressed entry's and indexer
-- key's row) and the lengths it reads (the entries held, top-k's length,
-- HCA's ranges); the step takes those slots' views (its ring and buffer
-- rows placed by embed.tile put_rows, its lengths read by the kernels, as
-- a batch's pooled step does), and the entries' views are a bucket of
-- rows (the held count rounded up to a power of two, at least 64), which
-- the kernels cut to the count they read. So the steps of one phase (which
-- compressors complete a window) and one bucket launch the same kernels
-- over the same tensors: recorded once, each later one is a write of the
-- plan's values, a replay, and the bookkeeping the step's Lua would have
-- done (the entries' counts, the position). Each output is the step's,
-- bit for bit (tests/lua/graph_decode.lua against plain steps).
--
-- Steps before the window fills are replayed too (the ring's rows are
-- found from the position on the device; the f32 caches' list, which a
-- plain step copies ring.n rows of, copies all W in a recorded one, the
-- rows past the position never read). A step runs as it always did (and
-- is not recorded) for a sequence whose layers' counts differ from the
-- plan's (not one sequence's state at its position), and when graphs are
-- off (V4.load's opts.graphs, or model.graphs = false). The logits a
-- replayed step returns, and its final streams, are its graph's tensors,
-- written again by the next step of the same phase: read them before that
-- (generate.lua does).
local ts = require "tessera"
local O = require "model.ops"

return function(M)

-- The bucket of rows a recorded step views for n entries.
local function bucket(n)
  if n == 0 then return 0 end
  local b = 64
  while b < n do b = 2 * b end
  return b
end

local Plan = {}
Plan.__index = Plan

-- The view of slot `name` of the round being run (self.round: the step's
-- token, M:attention_steps sets it), holding v (an error if the plan holds
-- another value: the step asked for a length the plan did not make).
function Plan:int(name, v)
  local key = name .. "@" .. self.round
  local view = self.views[key]
  if not view then error("graph plan: no slot '" .. key .. "'", 2) end
  if self.values[key] ~= v then
    error(string.format("graph plan: '%s' is %s in the step, %s in the plan", key,
                        tostring(v), tostring(self.values[key])), 2)
  end
  return view
end

-- The view of row slot `name` of the round being run (a device i32 [1]).
function Plan:row(name)
  local key = name .. "@" .. self.round
  local view = self.views[key]
  if not view then error("graph plan: no slot '" .. key .. "'", 2) end
  return view
end

-- The rows the step views of the entries of compression ratio `ratio`,
-- which hold n.
function Plan:rows(ratio, n)
  local nb = self.nb[ratio]
  if not nb or nb < n then error("graph plan: no bucket for " .. n .. " entries", 2) end
  return nb
end

-- The sequence's plan for steps of k tokens (k rounds: a decode step's
-- one, a speculative step's k): the ids and the positions (k slots each,
-- together: the step's tensors of them), then for each round the ring's
-- row and, for each compression ratio of the layers, the buffer's row,
-- the new entry's (and key's) row, the entries held after the round,
-- HCA's ranges and top-k's length.
local function new_plan(self, k, ratios)
  local names, seen, per = {}, {}, {"ring"}
  for _, r in ipairs(ratios or self.cfg.compress_ratios) do
    if r > 0 and not seen[r] then
      seen[r] = true
      for _, n in ipairs{"buf", "comp", "n", "p", "keys", "len"} do per[#per + 1] = n .. r end
    end
  end
  for _, n in ipairs{"id", "pos"} do
    for i = 1, k do names[#names + 1] = n .. "@" .. i end
  end
  for i = 1, k do
    for _, n in ipairs(per) do names[#names + 1] = n .. "@" .. i end
  end
  local block = O.tensor("i32", {#names})
  local plan = setmetatable({block = block, names = names, views = {}, values = {}, nb = {},
                             vector = {}, k = k, round = 1}, Plan)
  for i, n in ipairs(names) do plan.views[n] = block:slice(0, i - 1, 1) end
  plan.ids, plan.pos = block:slice(0, 0, k), block:slice(0, k, k)
  return plan
end

-- Each round's token ids[i], position t + i - 1 and ring row in the plan's
-- values.
local function set_rounds(plan, ids, t, W)
  local v = plan.values
  for i = 1, plan.k do
    v["id@" .. i], v["pos@" .. i], v["ring@" .. i] = ids[i], t + i - 1, (t + i - 1) % W
  end
end

-- The plan's values written to its tensor (a slot without one: 0).
local function write_plan(plan)
  for i, n in ipairs(plan.names) do plan.vector[i] = plan.values[n] or 0 end
  plan.block:set(plan.vector)
end

-- The step inputs of a recorded step with this plan.
local function plan_step(self, plan)
  local step = self.step_inputs()
  step.plan, step.pos = plan, plan.pos
  return step
end

-- A sequence's k rounds of one row each from position t
-- (attention_steps' seqs, pos_v and rounds).
local function own_rounds(self, t, k)
  local seqs, pos_v, rows = {}, {}, {}
  for i = 1, k do seqs[i], pos_v[i], rows[i] = self, t + i - 1, {i - 1, 1} end
  return seqs, pos_v, rows
end

-- The plan's values for tokens ids[1 .. k] at positions t .. t + k - 1 of
-- this sequence, its buckets (the entries' caches made room for them
-- first) and the step's key (each round's phase, the buckets); nil when
-- the sequence's layers do not all hold the counts of one sequence (then
-- the step runs unrecorded).
local function fill_plan(self, plan, ids, t)
  local cfg, W, k = self.cfg, self.cfg.window_size, plan.k
  local v, held, keys = plan.values, {}, {}
  set_rounds(plan, ids, t, W)
  for L = 0, cfg.n_layers - 1 do
    local r, st = cfg.compress_ratios[L + 1], self.state[L]
    if not st or st.ring.n ~= math.min(t, W) then return nil end
    if r > 0 then
      if held[r] and held[r] ~= st.comp.n then return nil end
      held[r] = st.comp.n
      if r == 4 then
        if keys[r] and keys[r] ~= st.keys.n then return nil end
        keys[r] = st.keys.n
      end
    end
  end
  local key = {}
  for r, n in pairs(held) do
    local kn, phase = keys[r], {}
    for i = 1, k do
      local ti, at = t + i - 1, "@" .. i
      local done = (ti + 1) % r == 0 and 1 or 0
      v["buf" .. r .. at], v["comp" .. r .. at] = ti % self.buffer_rows(r), n
      n = n + done
      v["n" .. r .. at], v["p" .. r .. at] = n, self.kv8_ranges(W, n)
      if kn then
        v["keys" .. r .. at] = kn
        kn = kn + done
        v["len" .. r .. at] = math.min((ti + 1) // r, kn)
      end
      phase[i] = done
    end
    local nb = math.max(bucket(n), kn and bucket(kn) or 0)
    plan.nb[r] = nb
    key[#key + 1] = r .. ":" .. table.concat(phase) .. ":" .. nb
  end
  -- (room for the bucket's rows, before the identity below is taken: a
  -- recorded step must not grow a cache)
  for L = 0, cfg.n_layers - 1 do
    local r, st = cfg.compress_ratios[L + 1], self.state[L]
    if r > 0 then
      st.comp:reserve(plan.nb[r])
      if st.keys then st.keys:reserve(plan.nb[r]) end
    end
  end
  table.sort(key)
  return table.concat(key, " ")
end

-- The tensors a recorded step names of each layer's state (st_of(L)'s
-- ring, entries, keys and compressor buffers), in order: a sequence's own
-- (`own`: each cache's data, each buffer's cz), or their pools' (a batch
-- step's kernels take the pools). A graph recorded over other tensors (a
-- cache grown, a pool moved, the state replaced) is not replayed.
local function state_tensors(self, st_of, own)
  local list = {}
  local function add(x, mine) list[#list + 1] = own and mine or x.pool.data end
  for L = 0, self.cfg.n_layers - 1 do
    local st = st_of(L)
    add(st.ring, st.ring.data)
    if st.comp then add(st.comp, st.comp.data) end
    if st.keys then add(st.keys, st.keys.data) end
    for _, which in ipairs{"compressor", "indexer.compressor"} do
      local b = st.buf[which]
      if b then add(b, b.cz) end
    end
  end
  return list
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if not rawequal(a[i], b[i]) then return false end
  end
  return true
end

-- Graphs g kept while they were recorded over `tensors`; else dropped, all
-- of them (a cache grown, moved: they would hold the old tensors' memory).
local function keep_graphs(g, tensors)
  if not (g.tensors and same_list(g.tensors, tensors)) then
    g.graphs, g.count, g.tensors = {}, 0, tensors
  end
end

-- The ring's count after positions t .. t + k - 1 (Cache:put_norm_rope's:
-- W once the window is full).
local function ring_advance(ring, t, k, W)
  for ti = t, t + k - 1 do ring.n = math.max(ring.n, ti % W + 1) end
end

-- The layers of a step: the main model's, or (mtp) the MTP block's; and
-- the sequence's field of the position it is at.
local function step_layers(self, mtp)
  local n = self.cfg.n_layers
  if mtp then return n, n end
  return 0, n - 1
end
local function pos_field(mtp) return mtp and "mtp_pos" or "next_pos" end

-- What a step's Lua does to the state besides its launches: the ring's
-- count (Cache:put_norm_rope's, W once the window is full), the entries'
-- and keys' counts of the layers whose window the positions t .. t + k - 1
-- complete, and the position: of the main model's layers, or (mtp) the MTP
-- block's.
local function advance(self, t, k, mtp)
  local cfg, W = self.cfg, self.cfg.window_size
  local L0, L1 = step_layers(self, mtp)
  for L = L0, L1 do
    local r, st = cfg.compress_ratios[L + 1], self.state[L]
    ring_advance(st.ring, t, k, W)
    for ti = t, t + k - 1 do
      if r > 0 and (ti + 1) % r == 0 then
        st.comp.n = st.comp.n + 1
        if st.keys then st.keys.n = st.keys.n + 1 end
      end
    end
  end
  self[pos_field(mtp)] = t + k
end

-- The step of tokens ids[1 .. k] at positions t .. (a decode step's one,
-- M:decode_step; a speculative step's k rounds of this sequence,
-- M:rounds_step) as a graph: replayed when one of its key was recorded
-- over the same state tensors, else recorded (it runs as it records).
-- Returns the logits and the final streams, or nil where the step runs
-- unrecorded (the module's comment).
-- A sequence's graphs of one kind (field `name`: its decode steps', its
-- MTP block's), made at first use.
local function graphs_of(self, name)
  local g = rawget(self, name)
  if not g then
    g = {graphs = {}, seen = {}, count = 0, plans = {}}
    rawset(self, name, g)
  end
  return g
end

-- The step of `key` in the graphs g, recorded over the state's tensors
-- `tensors`: replayed, then after() (the bookkeeping a replay skips), when
-- the key was recorded over the same tensors; else run() (the step as
-- written), unrecorded at the key's first step (what the model makes at
-- first use - joined weights, tables, constants - is made then, not in the
-- graph, whose replays would make it again each time) and recorded at its
-- second. Returns run's results (a replay: the recorded ones).
local function replay_or_record(self, g, key, tensors, run, after)
  keep_graphs(g, tensors)
  local e = g.graphs[key]
  if e then
    e.graph:replay()
    after(e)
    g.replays = (g.replays or 0) + 1
    return e.logits, e.X
  end
  if not g.seen[key] then
    g.seen[key], g.planned = true, (g.planned or 0) + 1
    return run()
  end
  -- (a few graphs kept: a bucket's phases; older buckets' are dropped)
  if g.count >= 8 then g.graphs, g.count = {}, 0 end
  local graph, logits, X = ts.capture(run, self.dev)
  g.graphs[key] = {graph = graph, logits = logits, X = X}
  g.count, g.recorded = g.count + 1, (g.recorded or 0) + 1
  return logits, X
end

function M:graphed_step(ids, t)
  local k = #ids
  local g = graphs_of(self, "gstate")
  local plan = g.plans[k]
  if not plan then
    plan = new_plan(self, k)
    g.plans[k] = plan
  end
  local key = fill_plan(self, plan, ids, t)
  if not key then return nil end
  write_plan(plan)
  local function run()
    local step = plan_step(self, plan)
    if k == 1 then return self:decode_step(plan.ids, t, step) end
    local seqs, pos_v, rows = own_rounds(self, t, k)
    local logits, X = self:rounds_step(plan.ids, seqs, pos_v, rows, step)
    self.next_pos = t + k
    return logits, X
  end
  local tensors = state_tensors(self, function(L) return self.state[L] end, true)
  return replay_or_record(self, g, k .. " " .. key, tensors, run, function(e)
    advance(self, t, k)
    self.last_streams = e.X
  end)
end

-- The MTP block's k positions of this sequence from position t (its
-- tokens after them ids[1 .. k], the main model's streams there h [k, 4,
-- d]: M:mtp_rounds of its own rounds) as a graph, keyed by k: the plan
-- holds the ids, positions and ring rows (the block's layer is a window
-- layer), h is copied into the plan's tensor, and the replay is followed
-- by the ring's count and the block's position. The logits of every row
-- [k, vocab] (the graph's tensor: read them before the next such step), or
-- nil where the step runs unrecorded (the block's ring not the state of
-- position t).
function M:graphed_mtp(ids, t, h)
  local k, L, W = #ids, self.cfg.n_layers, self.cfg.window_size
  local st = self.state[L]
  if not st or st.ring.n ~= math.min(t, W) then return nil end
  local g = graphs_of(self, "gmtp")
  local plan = g.plans[k]
  if not plan then
    plan = new_plan(self, k, {})
    plan.h = O.out(h:shape())
    g.plans[k] = plan
  end
  set_rounds(plan, ids, t, W)
  write_plan(plan)
  plan.h:assign(h)
  local function run()
    local seqs, pos_v, rows = own_rounds(self, t, k)
    local logits = self:mtp_step(plan.ids, plan.h, seqs, pos_v, rows, plan_step(self, plan))
    self.mtp_pos = t + k
    return logits
  end
  return (replay_or_record(self, g, k, {st.ring.data}, run, function()
    advance(self, t, k, true)
  end))
end

-- ---- steps of several sequences (decode_batch) ---------------------------------------------

-- A batch step's plan: slots its sites (M.step_vals: the ids, positions,
-- the pools' rows, the completed windows' rows and numbers, the new
-- entries' rows, the lengths) name in the key's first step (collected:
-- each with its function of the batch, c.seqs, c.pos_v, c.ids, as it is
-- before a step), filled from those functions before the later steps,
-- recorded or replayed; and the buckets of rows the step reads.
local VPlan = {}
VPlan.__index = VPlan

function VPlan:vals(step, name, values, f, round)
  local memo = step.vals or {}
  step.vals = memo
  if memo[name] then return memo[name] end
  local t
  if self.mode == "collect" then
    if self.regs[name] then error("graph plan: slot '" .. name .. "' twice", 3) end
    self.regs[name] = {at = self.size, n = #values, f = f, round = round}
    self.order[#self.order + 1] = name
    self.size = self.size + #values
    t = O.tensor("i32", {#values}, values)
  else
    local r = self.regs[name]
    if not r or r.n ~= #values then
      error("graph plan: the step's slot '" .. name .. "' is not the plan's", 3)
    end
    for i = 1, r.n do
      if self.vector[r.at + i] ~= values[i] then
        error(string.format("graph plan: '%s'[%d] is %s in the step, %s in the plan", name, i,
                            tostring(values[i]), tostring(self.vector[r.at + i])), 3)
      end
    end
    t = r.view
  end
  memo[name] = t
  return t
end

-- The buckets, as a sequence's plan has them; a collecting step (not
-- recorded) reads the n held, as a plain step does.
function VPlan:rows(ratio, n)
  if self.mode == "collect" then return n end
  return Plan.rows(self, ratio, n)
end

-- The slots' values for the batch c, written to the plan's tensor. A
-- plan of several rounds (self.rounds) fills the step's own slots, then
-- each round's in turn, after_round(r) bringing the state to what round r
-- leaves (the next round's slots read it).
function VPlan:fill(c, after_round)
  local v = self.vector
  local function fill_round(round)
    for _, name in ipairs(self.order) do
      local r = self.regs[name]
      if r.round == round then
        local got = r.f(c)
        if #got ~= r.n then error("graph plan: slot '" .. name .. "' changed its size", 3) end
        for i = 1, r.n do v[r.at + i] = got[i] end
      end
    end
  end
  fill_round(nil)
  for round = 1, self.rounds or 0 do
    fill_round(round)
    after_round(round)
  end
  self.block:set(v)
end

-- After the collecting step: the plan's tensor and its slots' views.
function VPlan:finish()
  self.block = O.tensor("i32", {math.max(self.size, 1)})
  for i = 1, math.max(self.size, 1) do self.vector[i] = 0 end
  for _, r in pairs(self.regs) do r.view = self.block:slice(0, r.at, r.n) end
end

-- The sequences of seqs, each once, in order.
local function distinct(seqs)
  local out, seen = {}, {}
  for _, s in ipairs(seqs) do
    if not seen[s] then seen[s], out[#out + 1] = true, s end
  end
  return out
end

-- The key of a step of rows (seqs[b] at position pos_v[b]; a sequence's
-- rows at its next positions, in order) of the main model's layers or
-- (mtp) the MTP block's, `head` first, then each ratio's rows that
-- complete a window and bucket; and its buckets, the caches made room for
-- the step's entries. nil when a sequence's layer is not in the model's
-- pools or its ring not the state of its first row's position.
local function rows_key(self, seqs, pos_v, head, mtp)
  local cfg, W = self.cfg, self.cfg.window_size
  local key, nb, most, first = {head}, {}, {}, {}
  for b, s in ipairs(seqs) do first[s] = first[s] or pos_v[b] end
  local own = distinct(seqs)
  local L0, L1 = step_layers(self, mtp)
  for L = L0, L1 do
    if not self:pooled_batch(L, own) then return nil end
    local r = cfg.compress_ratios[L + 1]
    for _, s in ipairs(own) do
      local st = s.state[L]
      if st.ring.n ~= math.min(first[s], W) then return nil end
      if r > 0 then
        local after = st.comp.n
        for b, t in ipairs(pos_v) do
          if seqs[b] == s and (t + 1) % r == 0 then after = after + 1 end
        end
        st.comp:reserve(after)
        if st.keys then st.keys:reserve(after) end
        most[r] = math.max(most[r] or 0, after, st.keys and st.keys.n or 0)
      end
    end
  end
  local rs = {}
  for r in pairs(most) do rs[#rs + 1] = r end
  table.sort(rs)
  for _, r in ipairs(rs) do
    nb[r] = bucket(most[r])
    local done = {}
    for b, t in ipairs(pos_v) do done[b] = (t + 1) % r == 0 and 1 or 0 end
    key[#key + 1] = r .. ":" .. table.concat(done) .. ":" .. nb[r]
  end
  return table.concat(key, " "), nb
end

-- A decode_batch step's key: its size, then rows_key's.
local function batch_key(self, seqs, pos_v) return rows_key(self, seqs, pos_v, #seqs) end

-- The step `key` (its buckets nb) in the model's graphs `field`, over the
-- state's tensors `tensors` (its pools'): at the key's first step nil (the
-- caller runs its plain step); at its second run(step) with a plan
-- collecting its sites (rounds: the step's rounds), unrecorded; at its
-- third fill(plan, true) and run(step) recorded, the step's values checked
-- against the plan's; then fill(plan), the replay and after() (the
-- bookkeeping a replay skips). Returns run's results (a replay: the
-- recorded ones).
local function planned_step(self, field, key, nb, tensors, run, fill, after, rounds)
  local root = rawget(self, "root") or self
  local g = rawget(root, field)
  if not g then
    g = {graphs = {}, count = 0}
    rawset(root, field, g)
  end
  keep_graphs(g, tensors)
  local e = g.graphs[key]
  if e and e.graph then
    fill(e.plan)
    e.graph:replay()
    after()
    g.replays = (g.replays or 0) + 1
    return e.logits, e.X
  end
  if not e and not (g.seen and g.seen[key]) then
    -- the key's first step: the caller's plain step (a plan's step views
    -- buckets of rows, more work than the plain one: a key that does not
    -- come again, as prompt lookup's varied rounds, would cost that for
    -- nothing); at its second the plan is collected
    if not g.seen or g.nseen >= 256 then g.seen, g.nseen = {}, 0 end
    g.seen[key], g.nseen = true, g.nseen + 1
    return nil
  end
  local step = self.step_inputs()
  if not e then
    -- the key's second step: run, its sites collected into a plan
    if g.count >= 8 then g.graphs, g.count = {}, 0 end
    local plan = setmetatable({mode = "collect", regs = {}, order = {}, size = 0, vector = {},
                               nb = nb, rounds = rounds}, VPlan)
    step.vplan = plan
    local logits, X = run(step)
    plan:finish()
    g.graphs[key], g.count = {plan = plan}, g.count + 1
    g.planned = (g.planned or 0) + 1
    return logits, X
  end
  local plan = e.plan
  plan.mode, plan.nb = "record", nb
  fill(plan, true)
  step.vplan = plan
  local graph, logits, X = ts.capture(function() return run(step) end, self.dev)
  e.graph, e.logits, e.X = graph, logits, X
  g.recorded = (g.recorded or 0) + 1
  return logits, X
end

-- How many of the steps of graphs g (nil: none yet) were recorded,
-- replayed, and run with a plan unrecorded.
local function counts_of(g)
  return {recorded = g and g.recorded or 0, replayed = g and g.replays or 0,
          planned = g and g.planned or 0}
end

-- counts_of the model's graphs `field` (a plan run unrecorded: a key's
-- second step, which collects it).
local function planned_counts(self, field)
  return counts_of(rawget(rawget(self, "root") or self, field))
end

-- A decode_batch step of seqs (ids, positions pos_v) as a graph, in the
-- model's graphs of batch steps (by key; any sequences of the model's
-- pools); nil where the step runs unrecorded.
function M:graphed_batch(seqs, ids, pos_v)
  if #seqs < 2 then return nil end
  local key, nb = batch_key(self, seqs, pos_v)
  if not key then return nil end
  local c = {seqs = seqs, pos_v = pos_v, ids = ids}
  return (planned_step(self, "gbatch", key, nb,
    state_tensors(self, function(L) return seqs[1].state[L] end, false),
    function(step) return self:batch_step(seqs, ids, pos_v, step) end,
    function(plan) plan:fill(c) end,
    function() for _, s in ipairs(seqs) do advance(s, s.next_pos, 1) end end))
end

-- How many of the model's batch steps were recorded, replayed and
-- collected.
function M:batch_graph_counts() return planned_counts(self, "gbatch") end

-- ---- steps of several sequences in rounds (decode_rounds: speculative decoding) ---------

-- A step of rounds' key: each round's size, then rows_key's; nil when a
-- round has one sequence (it runs that sequence's own attention step, not
-- the pooled one).
local function rounds_key(self, seqs, pos_v, rows, mtp)
  local sizes = {}
  for r, rd in ipairs(rows) do
    if rd[2] < 2 then return nil end
    sizes[r] = rd[2]
  end
  return rows_key(self, seqs, pos_v, "rounds " .. table.concat(sizes, ","), mtp)
end

-- The counts a step's Lua keeps of each sequence's state (its position
-- and each of the step's layers' ring, entries and keys: the main model's,
-- or (mtp) the MTP block's), and a function that puts them back.
local function saved_counts(self, seqs, mtp)
  local pos, kept, L0, L1 = pos_field(mtp), {}, step_layers(self, mtp)
  for _, s in ipairs(seqs) do
    local c = {s = s, pos = s[pos]}
    for L = L0, L1 do
      local st = s.state[L]
      c[L] = {st.ring.n, st.comp and st.comp.n, st.keys and st.keys.n}
    end
    kept[#kept + 1] = c
  end
  return function()
    for _, c in ipairs(kept) do
      c.s[pos] = c.pos
      for L = L0, L1 do
        local st, n = c.s.state[L], c[L]
        st.ring.n = n[1]
        if st.comp then st.comp.n = n[2] end
        if st.keys then st.keys.n = n[3] end
      end
    end
  end
end

-- A decode_rounds step of several sequences (rows: the rounds' {first
-- row, rows} of the flat seqs, ids, pos_v; count: each sequence's rows) as
-- a graph, in the model's graphs of such steps (by key): collected,
-- recorded, then replayed, as M:graphed_batch's; with h (the main model's
-- streams of the rows [rows, 4, d]) an mtp_rounds step of the MTP block,
-- h copied into the plan's tensor first. Its plan's slots are the step's
-- (the ids, positions) and each round's (attention_steps: the pools'
-- rows, windows, entries and lengths of the round's sequences as the
-- rounds before leave them): a replay fills round r's from the state
-- advanced through the rounds before it (as a step of one token each),
-- which leaves the state as the step does. Returns the logits of every row
-- and (not the MTP block's) the final streams (the graph's tensors on a
-- replay: read them before the next such step), or nil where the step
-- runs unrecorded. The sequences' positions (next_pos, the MTP block's
-- mtp_pos) advanced by their rows' count.
function M:graphed_rounds(seqs, ids, pos_v, rows, count, h)
  local mtp = h ~= nil
  local key, nb = rounds_key(self, seqs, pos_v, rows, mtp)
  if not key then return nil end
  local own, L, pos = distinct(seqs), self.cfg.n_layers, pos_field(mtp)
  local c = {seqs = seqs, pos_v = pos_v, ids = ids, rounds = {}}
  for r, rd in ipairs(rows) do
    c.rounds[r] = {seqs = table.move(seqs, rd[1] + 1, rd[1] + rd[2], 1, {}),
                   pos_v = table.move(pos_v, rd[1] + 1, rd[1] + rd[2], 1, {})}
  end
  local function after_round(r)
    for b, s in ipairs(c.rounds[r].seqs) do advance(s, c.rounds[r].pos_v[b], 1, mtp) end
  end
  -- (before a recording the counts go back: the step's Lua keeps them)
  local function fill(plan, record)
    local restore = record and saved_counts(self, own, mtp)
    plan:fill(c, after_round)
    if restore then restore() end
    if mtp then
      plan.h = plan.h or O.out(h:shape())
      plan.h:assign(h)
    end
  end
  local function run(step)
    local id_t = self.step_vals(step, "ids", ids, function(cc) return cc.ids end)
    local logits, X
    if mtp then
      logits = self:mtp_step(id_t, step.vplan.h or h, seqs, pos_v, rows, step)
    else
      logits, X = self:rounds_step(id_t, seqs, pos_v, rows, step)
    end
    for s, k in pairs(count) do s[pos] = s[pos] + k end
    return logits, X
  end
  local tensors = mtp and {own[1].state[L].ring.pool.data}
    or state_tensors(self, function(l) return own[1].state[l] end, false)
  return planned_step(self, mtp and "gmtprounds" or "grounds", key, nb, tensors, run, fill,
                      function() end, #rows)
end

-- How many of the model's steps of rounds were recorded, replayed and
-- collected.
function M:rounds_graph_counts()
  local n = planned_counts(self, "grounds")
  n.mtp = planned_counts(self, "gmtprounds")
  return n
end

-- How many of this sequence's steps were recorded and replayed, and run
-- with a plan unrecorded (a key's first); `mtp`: the same of its MTP
-- block's steps.
function M:graph_counts()
  local n = counts_of(rawget(self, "gstate"))
  n.mtp = counts_of(rawget(self, "gmtp"))
  return n
end

end
