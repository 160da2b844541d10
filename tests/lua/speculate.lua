-- speculate.lua - speculative decoding's parts and loop on DeepSeek's tiny
-- golden model: k tokens decoded in one step (model:decode_tokens) give
-- the logits of k decode steps bit for bit, crossing CSA and HCA window
-- ends; a forgotten last position (model:forget_last, also one that
-- completed a compressed entry) leaves the state a decode of the tokens
-- kept would; the MTP block continued a position at a time or k at a time
-- (model:mtp_steps) gives its prefill's logits (model:mtp; within 1e-3
-- with the bf16 attention, whose prefill and decode kernels round apart),
-- and so does the block following a chunked prefill; speculate, extend
-- (the next turn), speculate gives the plain replies, the block after it
-- (caught up to the positions decoded) its prefill's over the sequence;
-- model:speculate gives a plain decode's tokens, greedy and sampled, with
-- the MTP block's drafts and with drafts that are always, never or every
-- other time the main model's next token (drafts kept as many as were
-- right), the state after it the plain decode's; and model:speculate_batch
-- gives each of several sequences' plain decode (its steps' rounds one
-- attention launch each); in both cache formats and with the bf16
-- attention. Several drafts a step: model:snapshot + model:rewind take a
-- sequence back past its first wrong draft as a decode of the kept tokens
-- alone would have left it, and speculate with lists of drafts (right,
-- partly right, prompt lookup's) gives the plain decode's tokens and state
-- in the steps the right drafts save. Bad calls are refused (the block
-- without the main model's streams of its positions, a rewind without a
-- snapshot or out of its range). Skips without ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

-- row r (from 0) of logits [k, V] as a table
local function row(logits, r)
  local V = logits:shape(2)
  return table.move(logits:to_table(), r * V + 1, r * V + V, 1, {})
end

-- a seeded pick (temperature: a draw from the logits' softmax; else greedy)
local function picker(temperature, seed)
  local state = seed
  return function(logits)
    local v = logits:to_table()
    local best, mx = 0, -math.huge
    for k = 1, #v do
      if v[k] > mx then best, mx = k - 1, v[k] end
    end
    if not temperature then return best end
    local sum, acc = 0, 0
    for k = 1, #v do sum = sum + math.exp((v[k] - mx) / temperature) end
    state = (state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
    local r = (state >> 11) / 4503599627370496.0 * sum
    for k = 1, #v do
      acc = acc + math.exp((v[k] - mx) / temperature)
      if acc >= r then return k - 1 end
    end
    return #v - 1
  end
end

for _, fmt in ipairs{"f32", "fp8", "fp8+bf16"} do
  local attention = fmt == "fp8+bf16" and "bf16" or nil
  local model = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
  -- decode_tokens: 1, 2 and 3 tokens a step against one token a step, from
  -- 118 positions on (CSA entries every 4, the HCA entry at 128)
  local a, b, n = model:sequence(), model:sequence(), 118
  a:prefill(C.ids(ids, 1, n))
  b:prefill(C.ids(ids, 1, n))
  local worst, at = 0, n
  for _, k in ipairs{2, 3, 1, 2, 2, 3} do
    local got = b:decode_tokens(table.move(ids, at + 1, at + k, 1, {}))
    for r = 0, k - 1 do
      worst = math.max(worst, relerr(row(got, r), a:decode(ids[at + 1 + r]):to_table()))
    end
    at = at + k
  end
  check(worst == 0 and b.next_pos == at, string.format(
        "%s: decode_tokens vs decode steps to position %d: worst %.3e", fmt, at, worst))
  -- forget_last: every step decodes the next token and a wrong one, then
  -- forgets that (positions 118 .. 133: the wrong one completes CSA
  -- entries, the HCA entry once); the next step's logits are a decode's
  local c, d = model:sequence(), model:sequence()
  c:prefill(C.ids(ids, 1, n))
  d:prefill(C.ids(ids, 1, n))
  worst = 0
  for s = 0, 15 do
    local got = c:decode_tokens({ids[n + 1 + s], 7})
    c:forget_last()
    worst = math.max(worst, relerr(row(got, 0), d:decode(ids[n + 1 + s]):to_table()))
  end
  worst = math.max(worst, relerr(c:decode(ids[n + 17]):to_table(),
                                 d:decode(ids[n + 17]):to_table()))
  check(worst == 0, string.format("%s: a wrong token decoded and forgotten each step: worst " ..
                                  "%.3e", fmt, worst))
  -- the MTP block: its prefill over 140 positions against one over 125
  -- continued a position at a time, and 15 at a time
  local want = a:sequence()
  want:prefill(C.ids(ids, 1, 140))
  local wl = want:mtp(C.ids(ids, 2, 139)):to_table()
  local e1, e2 = a:sequence(), a:sequence()
  for _, s in ipairs{e1, e2} do
    s:prefill(C.ids(ids, 1, 140))
    s:mtp(C.ids(ids, 2, 125))
  end
  local one
  for t = 125, 138 do one = e1:mtp_steps(e1.final_streams:slice(0, t, 1), {ids[t + 2]}) end
  local many = e2:mtp_steps(e2.final_streams:slice(0, 125, 14), C.ids(ids, 127, 14))
  -- (exact with the f32 attention; the bf16 attention's prefill and decode
  -- kernels round apart, as the main model's)
  local tol = attention and 1e-3 or 0
  check(relerr(one:to_table(), wl) <= tol and relerr(many:to_table(), wl) <= tol,
        string.format("%s: the MTP block continued vs its prefill: %.3e, %.3e", fmt,
                      relerr(one:to_table(), wl), relerr(many:to_table(), wl)))
  -- the block following a chunked prefill (37 tokens a chunk): its chunks
  -- but the last as the prefill goes, then the last one's positions
  local ch = a:sequence()
  ch:prefill(C.ids(ids, 1, 140), 37, true)
  local mp = ch.mtp_pos
  local cl = ch:mtp(C.ids(ids, 113, 28)):to_table()
  check(mp == 111 and relerr(cl, wl) <= tol, string.format("%s: the MTP block following a " ..
        "chunked prefill (at %s after its chunks) vs its prefill: %.3e", fmt, mp, relerr(cl, wl)))
  -- a turn after a speculation (model:extend): speculate over a prompt of
  -- 30, extend by the reply's last token and 11 more (the next turn, as
  -- generate.lua's chat), speculate again: the plain decode's tokens; the
  -- block after it (caught up to the positions decoded, the next token the
  -- reply's last) as its prefill over the whole sequence
  do
    local plain, spec = model:sequence(), model:sequence()
    local pick, seq = picker(nil, 1), table.move(ids, 1, 30, 1, {})
    local function plain_reply(logits)
      local toks = {}
      for s = 1, 8 do
        toks[s] = pick(logits)
        if s < 8 then logits = plain:decode(toks[s]) end
      end
      return toks
    end
    local p1 = plain_reply(plain:prefill(C.ids(ids, 1, 30)))
    local turn = table.move(ids, 60, 70, 2, {p1[8]})
    local p2 = plain_reply(plain:extend(ts.tensor("i32", {12}, turn)))
    local s1 = spec:speculate(spec:prefill(C.ids(ids, 1, 30)), seq, 8, pick, -1)
    local at1 = spec.mtp_pos
    local s2 = spec:speculate(spec:extend(ts.tensor("i32", {12}, turn)), turn, 8, pick, -1)
    local same = #s1 == 8 and #s2 == 8 and spec.next_pos == plain.next_pos
    for k = 1, 8 do same = same and s1[k] == p1[k] and s2[k] == p2[k] end
    check(same and at1 == 37, string.format("%s: speculate, extend, speculate: the plain " ..
          "replies, the block at %s after the first (37)", fmt, at1))
    -- (the whole sequence: prompt, reply 1 but its last token, the turn,
    -- reply 2 but its last; its block over the main model's prefill)
    table.move(s1, 1, 7, #seq + 1, seq)
    table.move(turn, 1, #turn, #seq + 1, seq)
    table.move(s2, 1, 7, #seq + 1, seq)
    local whole = model:sequence()
    whole:prefill(ts.tensor("i32", {#seq}, seq))
    local after = table.move(seq, 2, #seq, 1, {})
    after[#after + 1] = s2[8]
    whole:mtp(ts.tensor("i32", {#after}, after))
    local at = spec.mtp_pos
    -- (the next step of both: a decode, the block's next position)
    spec:decode(s2[8])
    whole:decode(s2[8])
    local e = relerr(spec:mtp_steps(spec.last_streams, {5}):to_table(),
                     whole:mtp_steps(whole.last_streams, {5}):to_table())
    -- (the bf16 attention's rounding apart now in the main model's streams
    -- too: decoded positions against prefilled ones)
    local ok = at == #seq and whole.mtp_pos == #seq + 1 and e <= (attention and 1e-2 or 0)
    check(ok, string.format(
          "%s: the block after speculate, extend, speculate vs its prefill over the sequence: " ..
          "%.3e (at %s, want %d)", fmt, e, at, #seq))
  end
  -- speculate against a plain decode: greedy and sampled, with the MTP
  -- block's drafts and with drafts right always, never, every other time
  local prompt, N = table.move(ids, 1, 40, 1, {}), 20
  for _, how in ipairs{{nil, "mtp"}, {nil, "right"}, {nil, "wrong"}, {nil, "alternate"},
                       {0.7, "mtp"}, {0.7, "alternate"}} do
    local temp, drafts = how[1], how[2]
    local plain = model:sequence()
    local pick, toks = picker(temp, 5), {}
    local logits = plain:prefill(ts.tensor("i32", {#prompt}, prompt))
    for s = 1, N do
      toks[s] = pick(logits)
      if s < N then logits = plain:decode(toks[s]) end
    end
    local spec = model:sequence()
    local draft
    if drafts ~= "mtp" then
      local k = 0
      draft = function(new)
        k = k + 1
        local right = toks[#new + 1] or 0
        local ok = drafts == "right" or (drafts == "alternate" and k % 2 == 1)
        return ok and right or (right + 1) % model.cfg.vocab_size
      end
    end
    local got, made, kept = spec:speculate(spec:prefill(ts.tensor("i32", {#prompt}, prompt)),
                                           prompt, N, picker(temp, 5), -1, draft)
    local same = #got == N
    for s = 1, N do same = same and got[s] == toks[s] end
    local want_kept = ({right = made, wrong = 0})[drafts]
    local what = string.format("%s: speculate (%s, %s drafts): %d drafts, %d kept", fmt,
                               temp and "sampled" or "greedy", drafts, made, kept)
    print(what)
    -- (each draft gives a token, each kept one the token after it, but for
    -- a last kept draft at the end)
    check(same and (want_kept == nil or kept == want_kept) and made + kept >= N - 1 and
          made + kept <= N and
          spec.next_pos == plain.next_pos, what .. ": the plain decode's tokens and position")
    -- the state after it is the plain decode's
    local nxt = toks[N]
    check(relerr(spec:decode(nxt):to_table(), plain:decode(nxt):to_table()) == 0,
          what .. ": the next decode step's logits")
  end
end

-- several drafts a step: model:snapshot + model:rewind take a sequence back
-- past its first wrong draft (positions 118 .. 140: CSA entries, the HCA
-- entry at 128, the compressors' partial windows), the next step's logits
-- a plain decode's; speculate with drafts lists (right for 3, 5, 7 and 9
-- tokens, which is cut to M:max_step_positions() - 1; right for some of
-- them; prompt lookup's) gives the plain decode's tokens and state
for _, fmt in ipairs{"f32", "fp8", "fp8+bf16"} do
  local attention = fmt == "fp8+bf16" and "bf16" or nil
  local model = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
  local a, b, n = model:sequence(), model:sequence(), 118
  a:prefill(C.ids(ids, 1, n))
  b:prefill(C.ids(ids, 1, n))
  local worst, at = 0, n
  for step = 1, 6 do
    local keep = step % 5 + 1 -- (2 .. 5 and 1 of 6 positions kept)
    a:snapshot(6)
    local toks = {}
    for i = 1, 6 do toks[i] = i <= keep and ids[at + i] or (7 * i) % 256 end
    a:decode_tokens(toks)
    a:rewind(at + keep)
    for i = 1, keep do b:decode(ids[at + i]) end
    at = at + keep
    worst = math.max(worst, relerr(a:decode_tokens({ids[at + 1]}):to_table(),
                                   b:decode(ids[at + 1]):to_table()))
    at = at + 1
  end
  check(worst == 0 and a.next_pos == at, string.format("%s: six positions decoded, the ones " ..
        "past the kept taken back (model:rewind), to %d: %.3e", fmt, at, worst))
  local prompt, N = table.move(ids, 1, 40, 1, {}), 20
  local plain, toks = model:sequence(), {}
  local pick = picker(nil, 1)
  local l = plain:prefill(ts.tensor("i32", {#prompt}, prompt))
  for k = 1, N do
    toks[k] = pick(l)
    if k < N then l = plain:decode(toks[k]) end
  end
  local most = model:max_step_positions() - 1
  for _, how in ipairs{{3, "right"}, {5, "right"}, {7, "right"}, {9, "right"}, {4, "some"},
                       {3, "lookup"}} do
    local k, kind = how[1], how[2]
    local lookup = kind == "lookup" and model.lookup_drafter(prompt, k)
    local draft = function(new, m)
      if lookup then return lookup(new, m) end
      local d = {}
      for i = 1, k do
        local right = toks[#new + i] or 0
        d[i] = (kind == "right" or i <= (#new % k)) and right or (right + 1) % 256
      end
      return d
    end
    local spec = model:sequence()
    local got, made, kept, steps = spec:speculate(spec:prefill(ts.tensor("i32", {#prompt},
                                                                           prompt)),
                                                  prompt, N, pick, -1, draft)
    local same = #got == N and spec.next_pos == plain.next_pos
    for i = 1, N do same = same and got[i] == toks[i] end
    local what = string.format("%s: speculate with %d %s drafts a step: %d made, %d kept, " ..
                               "%d steps", fmt, k, kind, made, kept, steps)
    print(what)
    -- (right drafts: every step but the last takes min(k, most) + 1 tokens)
    local want_steps = kind == "right" and 1 + (N - 2) // (math.min(k, most) + 1) or nil
    check(same and (want_steps == nil or steps == want_steps) and kept <= made,
          what .. ": the plain decode's tokens and position")
    check(relerr(spec:decode(toks[N]):to_table(), plain:fork():decode(toks[N]):to_table()) == 0,
          what .. ": the next decode step's logits")
  end
end

-- several sequences together (prompts of 3, 40, 126 and 9 tokens,
-- prefill_batch): model:speculate_batch gives each one's plain greedy
-- decode, with the MTP block's drafts and with drafts always right or
-- right for some sequences and not others in a step (a round of the MTP
-- block smaller than the one before it); a step's two rounds are one
-- attention launch each for the four sequences
local greedy = C.greedy
for _, fmt in ipairs{"f32", "fp8", "fp8+bf16"} do
  local attention = fmt == "fp8+bf16" and "bf16" or nil
  local model = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
  local lens, starts, N = {3, 40, 126, 9}, {1, 10, 20, 50}, 14
  local prompts, want, ends = {}, {}, {}
  for b = 1, #lens do
    prompts[b] = table.move(ids, starts[b], starts[b] + lens[b] - 1, 1, {})
    local s
    want[b], s = C.greedy_tokens(model, prompts[b], N)
    ends[b] = {pos = s.next_pos, nxt = s:decode(want[b][N]):to_table()}
  end
  for _, drafts in ipairs{"mtp", "right", "some", "lists"} do
    local seqs, calls = {}, {}
    for b = 1, #lens do seqs[b], calls[b] = model:sequence(), 0 end
    local logits = model:prefill_batch(seqs, prompts)
    local oracle = drafts ~= "mtp" and function(b, new)
      calls[b] = calls[b] + 1
      if drafts == "lists" then -- (b + 1 drafts, the first calls % (b + 2) of them right)
        local d = {}
        for i = 1, b + 1 do
          local right = want[b][#new + i] or 0
          d[i] = i <= calls[b] % (b + 2) and right or (right + 1) % model.cfg.vocab_size
        end
        return d
      end
      local right = want[b][#new + 1] or 0
      local ok = drafts == "right" or (calls[b] + b) % 3 ~= 0
      return ok and right or (right + 1) % model.cfg.vocab_size
    end
    ts.profile(true)
    ts.profile_reset()
    local outs, made, kept = model:speculate_batch(seqs, logits, prompts, N, greedy, -1, oracle)
    local seen = {}
    for _, r in ipairs(ts.profile()) do seen[r.kernel] = (seen[r.kernel] or 0) + r.launches end
    ts.profile(false)
    local same = true
    for b = 1, #lens do
      same = same and #outs[b] == N and seqs[b].next_pos == ends[b].pos
      for k = 1, N do same = same and outs[b][k] == want[b][k] end
    end
    local what = string.format("%s: speculate_batch (%s drafts): %d drafts, %d kept", fmt,
                               drafts, made, kept)
    print(what)
    check(same and (drafts ~= "right" or kept == made) and ((drafts ~= "some" and
          drafts ~= "lists") or (kept > 0 and kept < made)), what .. ": each sequence's plain decode")
    -- the state after it: a batch step's logits are each plain one's
    local nxt = {}
    for b = 1, #lens do nxt[b] = want[b][N] end
    local g, V = model:decode_batch(seqs, nxt):to_table(), model.cfg.vocab_size
    local worst = 0
    for b = 1, #lens do
      worst = math.max(worst, relerr(table.move(g, (b - 1) * V + 1, b * V, 1, {}), ends[b].nxt))
    end
    check(worst == 0, what .. string.format(": the next batch step: %.3e", worst))
    if fmt == "fp8" and drafts == "right" then
      -- (the window and CSA layers' attention: one launch a round, two a
      -- step, never a sequence at a time; the MTP block's layer two rounds
      -- a step, and one in the last, whose second token is not decoded:
      -- the block catches up to the positions decoded)
      local wc, steps, L = 0, made // #lens, model.cfg.n_layers
      for l = 1, L do
        if model.cfg.compress_ratios[l] ~= 128 then wc = wc + 1 end
      end
      local mw = model.cfg.compress_ratios[L + 1] ~= 128 and 1 or 0
      check(seen.sparse_attn_f32_kv8 == 2 * wc * steps + mw * (2 * steps - 1),
            string.format("%s: sparse_attn_f32_kv8 launched %s times in %d steps (window and " ..
                          "CSA layers %d, the MTP block's %d)", what, seen.sparse_attn_f32_kv8,
                          steps, wc, mw))
    end
  end
end

-- bad calls
local model = V4.load(dir)
local s = model:sequence()
local function refused(f, needle)
  local ok, err = pcall(f)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil,
        "refused with '" .. needle .. "': " .. tostring(err))
end
refused(function() s:decode_tokens({1, 2}) end, "needs a prefill")
refused(function() s:mtp_steps(ts.tensor("f32", {1, 4, model.cfg.dim}), {1}) end, "M:mtp first")
s:prefill(C.ids(ids, 1, 10))
refused(function() s:decode_tokens({}) end, "no tokens")
s:decode_tokens({1, 2})
s:forget_last()
refused(function() s:forget_last() end, "no position to forget")

-- (a plain decode step after the prefill: the block has no streams for it)
refused(function() s:speculate(s:decode(3), C.ids(ids, 1, 11):to_table(), 4, greedy, -1) end,
        "streams held: positions 0 .. 9")
refused(function() s:speculate(s:decode(3), {1}, 4, greedy, -1) end, "the prompt 1 ids")
local ch = model:sequence()
refused(function() ch:prefill(C.ids(ids, 1, 10), 4, true); ch:mtp(C.ids(ids, 2, 3)) end,
        "positions 8 .. 10")
local r = model:sequence()
r:prefill(C.ids(ids, 1, 10))
refused(function() r:rewind(5) end, "no snapshot")
refused(function() r:snapshot(model:max_step_positions() + 1) end, "the smallest ring's rows")
r:snapshot(3)
r:decode_tokens({1, 2, 3})
refused(function() r:rewind(r.next_pos) end, "the snapshot's first to the last decoded")
refused(function() r:rewind(9) end, "positions 10 .. 12")

-- a sequence's own state is its own: after the model itself speculated
-- (its MTP block far along) and kept a snapshot, a new sequence speculates
-- as a fresh model does and has no snapshot to rewind (its MTP position and
-- snapshot were looked up in the model's while they had no value)
do
  local m2 = V4.load(dir)
  local p1, p2 = C.ids(ids, 1, 40), C.ids(ids, 50, 9)
  m2:speculate(m2:prefill(p1, nil, true), p1:to_table(), 20, greedy, -1)
  m2:snapshot(2)
  local fresh = V4.load(dir)
  local want = fresh:speculate(fresh:prefill(p2, nil, true), p2:to_table(), 10, greedy, -1)
  local s2 = m2:sequence()
  local okq, got = pcall(function()
    return s2:speculate(s2:prefill(p2, nil, true), p2:to_table(), 10, greedy, -1)
  end)
  check(okq and C.same(got, want), "a new sequence speculates as a fresh model after the " ..
        "model's own speculation: " .. tostring(okq and table.concat(got, ",") or got))
  refused(function() m2:sequence():rewind(1) end, "no snapshot")
end
C.finish()
