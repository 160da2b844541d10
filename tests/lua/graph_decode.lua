-- graph_decode.lua - decode steps replayed as graphs (model/graphs.lua,
-- opts.graphs) against plain steps, on the golden tiny model: every
-- step's logits bit for bit, the final streams and the state's counts
-- alike; over 300 steps from a 130-token prompt (windows of 4 and of 128
-- completing, the entries' buckets growing from 64 to 128 rows) with each
-- cache format and the f32 and bf16 attention (the CPU's and a GPU's
-- kernels for each: every path of a step that views the entries); most
-- steps replayed, few recorded (each key's first step runs with its plan,
-- unrecorded); after forget_last, a reset (140 steps from a 20-token
-- prompt: before and through the window's filling, replayed too) and in a
-- new sequence all as plain steps; speculative decoding's
-- steps (k tokens of one sequence), steps of several sequences together
-- (decode_batch) and several sequences' speculative steps (speculate_batch:
-- rounds) replayed too, the same tokens and logits.
-- arg[1] "gpusim": one configuration for 10 steps on the simulator (the
-- GPU forms of the kernels, the plan's rows and lengths read there).
-- arg[1] "mock": tests/cuda_mock's driver (no kernel runs: counts only):
-- each replayed step is one CUDA graph launch, one write (the plan's) and
-- no wait, a batch's too; a speculative step's and its MTP block's one
-- graph launch each.
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"

local function prompt(n, k)
  local v = {}
  for i = 1, n do v[i] = (i * k) % 512 end
  return ts.tensor("i32", {n}, v)
end

local sim, mock = arg[1] == "gpusim", arg[1] == "mock"
local dev = ts.device(sim and "gpusim" or mock and "cuda" or "cpu")
local dir = C.golden()
if not dir then return end

if mock then
  local m = V4.load(dir, nil, {kv_format = "fp8", graphs = true, device = dev})
  m:prefill(prompt(130, 37))
  m:decode(1)
  local before, n0 = dev:stats(), m:graph_counts()
  for s = 1, 40 do m:decode(s) end
  local after, n1 = dev:stats(), m:graph_counts()
  local replayed = n1.replayed - n0.replayed
  C.check(replayed >= 30, "mock: " .. replayed .. " of 40 steps replayed")
  C.check(after.graphs - before.graphs == replayed, "mock: a CUDA graph launch a replayed step")
  C.check(after.writes - before.writes <=
          40 + 4 * (n1.recorded - n0.recorded + n1.planned - n0.planned),
          "mock: one write a step (the plan's), " .. (after.writes - before.writes) .. " in all")
  C.check(after.waits == before.waits, "mock: no wait")
  local seqs = {}
  for b, n in ipairs{12, 45, 20} do
    seqs[b] = m:sequence()
    seqs[b]:prefill(prompt(n, 7 * b))
  end
  local b0, c0 = dev:stats(), m:batch_graph_counts()
  for s = 1, 40 do m:decode_batch(seqs, {s, s + 1, s + 2}) end
  local b1, c1 = dev:stats(), m:batch_graph_counts()
  local rb = c1.replayed - c0.replayed
  C.check(rb >= 25 and b1.graphs - b0.graphs == rb and b1.waits == b0.waits,
          string.format("mock: %d of 40 batch steps replayed, %d graph launches", rb,
                        b1.graphs - b0.graphs))
  -- speculation (picks and drafts given: the mock's logits are no
  -- kernel's; every draft right, so steps of two positions): each replayed
  -- step one graph launch, its MTP block's step too
  local sq = m:sequence()
  local p = prompt(60, 3):to_table()
  local logits = sq:prefill(ts.tensor("i32", {#p}, p), nil, true)
  local s0, g0 = dev:stats(), sq:graph_counts()
  sq:speculate(logits, p, 40, function() return 7 end, -1, function() return {7} end)
  local s1, g1 = dev:stats(), sq:graph_counts()
  local rs = g1.replayed - g0.replayed + g1.mtp.replayed - g0.mtp.replayed
  C.check(g1.mtp.replayed - g0.mtp.replayed >= 12 and s1.graphs - s0.graphs == rs,
          string.format("mock: speculation's steps %d and MTP steps %d replayed, %d graph " ..
                        "launches", g1.replayed - g0.replayed, g1.mtp.replayed - g0.mtp.replayed,
                        s1.graphs - s0.graphs))
  -- several sequences speculating together: each replayed step's rounds
  -- one graph launch, its MTP block's rounds too
  local ss, ps = {}, {}
  for b, n in ipairs{12, 45, 20} do ss[b], ps[b] = m:sequence(), prompt(n, 5 * b):to_table() end
  local lb = m:prefill_batch(ss, ps)
  local t0, r0 = dev:stats(), m:rounds_graph_counts()
  m:speculate_batch(ss, lb, ps, 40, function() return 7 end, -1, function() return 7 end)
  local t1, r1 = dev:stats(), m:rounds_graph_counts()
  local rr, rm = r1.replayed - r0.replayed, r1.mtp.replayed - r0.mtp.replayed
  C.check(rr >= 12 and rm >= 12 and t1.graphs - t0.graphs == rr + rm,
          string.format("mock: speculate_batch's steps %d and MTP rounds %d replayed, %d graph " ..
                        "launches", rr, rm, t1.graphs - t0.graphs))
  C.finish()
  return
end

local function counts(m)
  local v = {m.next_pos}
  for L = 0, m.cfg.n_layers - 1 do
    local st = m.state[L]
    v[#v + 1] = st.ring.n
    v[#v + 1] = st.comp and st.comp.n or -1
    v[#v + 1] = st.keys and st.keys.n or -1
  end
  return v
end

-- decodes ids ids(s), s = 1 .. steps, on a (plain) and b (graphs);
-- returns how many steps' logits differed
local function decode_both(a, b, steps, ids)
  local bad = 0
  for s = 1, steps do
    local id = ids(s)
    if not C.same(a:decode(id), b:decode(id)) then bad = bad + 1 end
  end
  return bad
end

local configs = sim and {{kv = "fp8"}}
  or {{kv = "fp8", att = "f32"}, {kv = "f32", att = "f32"}, {kv = "fp8", att = "bf16"},
      {kv = "f32", att = "bf16"}}
local steps = sim and 10 or 300
for _, c in ipairs(configs) do
  local what = c.kv .. " caches, " .. (c.att or "default") .. " attention"
  local function load(graphs)
    return V4.load(dir, nil, {kv_format = c.kv, attention = c.att, graphs = graphs,
                              device = dev})
  end
  local a, b = load(false), load(true)
  a:prefill(prompt(130, 37))
  b:prefill(prompt(130, 37))
  local bad = decode_both(a, b, steps, function(s) return (s * 11 + 3) % 512 end)
  C.check(bad == 0, what .. ": " .. bad .. " of " .. steps .. " steps' logits differ")
  C.check(C.same(a.last_streams, b.last_streams), what .. ": the final streams alike")
  C.check(C.same(counts(a), counts(b)), what .. ": the state's counts alike")
  local n = b:graph_counts()
  C.check(n.recorded + n.replayed + n.planned == steps and n.recorded <= (sim and 3 or 12) and
          n.planned <= (sim and 3 or 12),
          string.format("%s: %d steps recorded, %d replayed, %d with a plan unrecorded", what,
                        n.recorded, n.replayed, n.planned))
  if not sim and c.att == "f32" then
    -- a forgotten step, then steps again (the ring's count below W: plain)
    a:forget_last()
    b:forget_last()
    bad = decode_both(a, b, 6, function(s) return s + 100 end)
    C.check(bad == 0, what .. ": after forget_last, " .. bad .. " of 6 differ")
    -- a reset drops the graphs; from a 20-token prompt, steps before the
    -- window fills are replayed too, and through its filling (positions
    -- 20 .. 159: the ring's count grows to W, the first HCA entry at 127)
    a:reset()
    b:reset()
    a:prefill(prompt(20, 5))
    b:prefill(prompt(20, 5))
    local before = b:graph_counts()
    bad = decode_both(a, b, 140, function(s) return (s * 7) % 512 end)
    local after = b:graph_counts()
    C.check(bad == 0 and C.same(counts(a), counts(b)) and before.recorded == 0 and
            after.replayed - before.replayed >= 100,
            string.format("%s: after a reset, %d of 140 steps across the window's filling " ..
                          "differ, %d replayed", what, bad, after.replayed - before.replayed))
    -- a sequence's own graphs, its steps alike
    local sa, sb = a:sequence(), b:sequence()
    sa:prefill(prompt(140, 13))
    sb:prefill(prompt(140, 13))
    local own = b:graph_counts().replayed
    bad = decode_both(sa, sb, 12, function(s) return 7 * s end)
    C.check(bad == 0 and sb:graph_counts().replayed >= 8 and b:graph_counts().replayed == own,
            what .. ": a sequence's steps replay its own graphs, alike")
  end
end
-- sequences decoding together (decode_batch: one graph a key of the
-- batch's size, each ratio's completing sequences and bucket, its slots
-- filled from the batch before each replay), three sequences at other
-- positions (two before the window (32) fills): every step's logits
-- alike, the counts alike
if not sim then
  for _, c in ipairs(configs) do
    local what = c.kv .. " caches, " .. c.att .. " attention, 3 sequences"
    local runs = {}
    for i, graphs in ipairs{false, true} do
      local m = V4.load(dir, nil, {kv_format = c.kv, attention = c.att, graphs = graphs,
                                   device = dev})
      local seqs = {}
      for b, n in ipairs{12, 45, 20} do
        seqs[b] = m:sequence()
        seqs[b]:prefill(prompt(n, 7 * b))
      end
      runs[i] = {m = m, seqs = seqs}
    end
    local bad = 0
    for s = 1, 150 do
      local ids = {s % 500, (s * 3) % 500, (s * 7) % 500}
      if not C.same(runs[1].m:decode_batch(runs[1].seqs, ids),
                    runs[2].m:decode_batch(runs[2].seqs, ids)) then
        bad = bad + 1
      end
    end
    local same = true
    for b = 1, 3 do same = same and C.same(counts(runs[1].seqs[b]), counts(runs[2].seqs[b])) end
    local n = runs[2].m:batch_graph_counts()
    C.check(bad == 0 and same and n.replayed >= 120,
            string.format("%s: %d of 150 steps differ, counts alike: %s (%d recorded, %d " ..
                          "replayed)", what, bad, tostring(same), n.recorded, n.replayed))
  end
end

-- speculative decoding (a step of this sequence's k tokens: k rounds, one
-- graph a phase): the MTP block's drafts (its steps of one or two
-- positions replayed too: the same drafts), and drafts of two tokens from
-- the plain decode's own tokens (always right, so steps of three tokens),
-- the same tokens with graphs on as off
if not sim then
  local greedy = C.greedy
  for _, kv in ipairs{"fp8", "f32"} do
    local p = prompt(140, 37):to_table()
    local runs = {}
    for r, graphs in ipairs{false, true, false, true} do
      local m = V4.load(dir, nil, {kv_format = kv, graphs = graphs, device = dev})
      local logits = m:prefill(ts.tensor("i32", {#p}, p), nil, true)
      local ref = runs[1] and runs[1].toks
      -- (the MTP block's drafts as made, each step's: its own graph's with
      -- graphs on)
      local made = {}
      local draft = function(new, d)
        made[#made + 1] = d
        return r > 2 and {ref[#new + 1], ref[#new + 2]} or d
      end
      local toks, drafts, kept, steps = m:speculate(logits, p, 60, greedy, -1, draft)
      runs[r] = {toks = toks, kept = kept, steps = steps, n = m:graph_counts(), made = made}
    end
    local same = C.same(runs[1].toks, runs[2].toks) and C.same(runs[1].toks, runs[3].toks) and
      C.same(runs[1].toks, runs[4].toks)
    C.check(same and runs[2].n.replayed >= 40 and runs[4].n.replayed >= 10 and
            runs[4].kept == runs[3].kept and runs[3].steps < 30,
            string.format("%s caches: speculation's tokens alike with graphs (MTP drafts: %d " ..
                          "steps replayed; right drafts: %d kept in %d steps, %d replayed)", kv,
                          runs[2].n.replayed, runs[4].kept, runs[4].steps, runs[4].n.replayed))
    -- (with the right drafts each MTP step is three positions)
    local mtp, mtp3 = runs[2].n.mtp, runs[4].n.mtp
    C.check(#runs[1].made >= 30 and C.same(runs[1].made, runs[2].made) and
            mtp.replayed >= #runs[2].made - 8 and runs[1].n.mtp.replayed == 0 and
            #runs[3].made >= 15 and C.same(runs[3].made, runs[4].made) and
            mtp3.replayed >= #runs[4].made - 8,
            string.format("%s caches: the MTP block's drafts alike with its steps replayed " ..
                          "(%d drafts, %d replayed; three positions a step: %d, %d replayed)",
                          kv, #runs[2].made, mtp.replayed, #runs[4].made, mtp3.replayed))
  end
end
-- several sequences speculating together (speculate_batch: a step's
-- rounds as one graph, model/graphs.lua graphed_rounds, each round's slots
-- filled from the state the rounds before it leave), and its MTP block's
-- rounds: drafts that are the plain decode's own next tokens (always
-- right: two rounds of the four sequences a step) and right for some
-- sequences only (rounds of other sizes, positions forgotten), the same
-- tokens, the MTP block's own drafts (made, then replaced), the counts
-- alike and the same next batch step, with graphs on as off; steps of
-- both replayed
if not sim then
  local lens, N = {12, 45, 20, 130}, 40
  for _, c in ipairs{{kv = "fp8", att = "f32"}, {kv = "f32", att = "bf16"}} do
    for _, drafts in ipairs{"right", "some"} do
      local runs, want = {}, {}
      for r, graphs in ipairs{false, true} do
        local m = V4.load(dir, nil, {kv_format = c.kv, attention = c.att, graphs = graphs,
                                     device = dev})
        local seqs, prompts, calls, mtp = {}, {}, {}, {}
        for b, n in ipairs(lens) do
          seqs[b], prompts[b], calls[b] = m:sequence(), prompt(n, 7 * b):to_table(), 0
        end
        local logits = m:prefill_batch(seqs, prompts)
        local draft = function(b, new, block)
          calls[b] = calls[b] + 1
          mtp[#mtp + 1] = block -- (the MTP block's draft, replaced)
          local right = want[b] and want[b][#new + 1] or 0
          local ok = drafts == "right" or (calls[b] + b) % 3 ~= 0
          return ok and right or (right + 1) % m.cfg.vocab_size
        end
        if r == 1 then -- (the plain run's tokens: decoded first, one sequence at a time)
          for b = 1, #lens do want[b] = C.greedy_tokens(m, prompts[b], N) end
        end
        local outs, made, kept = m:speculate_batch(seqs, logits, prompts, N, C.greedy, -1, draft)
        local nxt = {}
        for b = 1, #lens do nxt[b] = outs[b][N] end
        local st = {}
        for b = 1, #lens do st[b] = counts(seqs[b]) end
        runs[r] = {outs = outs, made = made, kept = kept, st = st, mtp = mtp,
                   after = m:decode_batch(seqs, nxt):to_table(), n = m:rounds_graph_counts()}
      end
      local same = C.same(runs[1].after, runs[2].after) and runs[1].kept == runs[2].kept and
        #runs[1].mtp >= N and C.same(runs[1].mtp, runs[2].mtp)
      for b = 1, #lens do
        same = same and C.same(runs[1].outs[b], want[b]) and C.same(runs[2].outs[b], want[b]) and
          C.same(runs[1].st[b], runs[2].st[b])
      end
      local n = runs[2].n
      C.check(same and runs[1].n.planned == 0 and runs[1].n.mtp.planned == 0 and
              n.replayed >= (drafts == "right" and 12 or 1) and
              n.mtp.replayed >= (drafts == "right" and 12 or 1),
              string.format("%s caches, %s attention, drafts %s: speculate_batch alike with " ..
                            "graphs (%d drafts, %d kept; steps %d collected, %d recorded, %d " ..
                            "replayed; the MTP block's %d, %d, %d)", c.kv, c.att, drafts,
                            runs[2].made, runs[2].kept, n.planned, n.recorded, n.replayed,
                            n.mtp.planned, n.mtp.recorded, n.mtp.replayed))
    end
  end
end
C.finish()
