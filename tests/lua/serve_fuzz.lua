-- serve_fuzz.lua - a served model's sequences under random traffic: on
-- DeepSeek's tiny golden model with graphs on, a seeded stream of events -
-- new sequences prefilled (whole, in chunks, several together), decode
-- steps alone and in batches of any of the live sequences, several tokens
-- in one step, extends, forks, snapshots rewound, sequences prefilled
-- again and sequences dropped (collected: their slots in the state pools
-- taken by later ones, the pools grown and made smaller) - and after each
-- one the logits it returned for each sequence equal, bit for bit, a
-- prefill of that sequence's whole history by a second model (graphs off,
-- one sequence at a time): what the model promises on the CPU (each path's
-- own test checks it one path at a time; here they interleave, so a state
-- one sequence's step left in another's rows, a graph replayed over a
-- moved pool or a slot given to two sequences shows). The exact model and
-- V4's production formats.
-- `tessera run tests/lua/serve_fuzz.lua [seed] [events]`; skips without
-- ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check = C.check
local dir = C.golden()
if not dir then return end

local seed0 = math.tointeger(tonumber(arg and arg[1] or "")) or 52
local events = math.tointeger(tonumber(arg and arg[2] or "")) or 40
local MAXLEN = 420 -- (a history's tokens: the reference prefills it whole)

-- (the exact model; and V4's production formats: fp8 caches, FP8 linears,
-- FP4 routed experts, made from the bf16 weights at load)
local forms = {f32 = {kv_format = "f32"},
               fp8 = {kv_format = "fp8", linears = "fp8", experts = "fp4"}}
for _, fmt in ipairs{"f32", "fp8"} do
  local opts = {}
  for k, v in pairs(forms[fmt]) do opts[k] = v end
  local ref = V4.load(dir, nil, opts)
  opts.graphs = true
  local model = V4.load(dir, nil, opts)
  local V = model.cfg.vocab_size
  local rnd = C.lcg(seed0 * 7 + (fmt == "fp8" and 1 or 0))
  local function int(lo, hi) return lo + math.floor(rnd() * (hi - lo + 1)) end
  local function tokens(n)
    local t = {}
    for i = 1, n do t[i] = int(0, V - 1) end
    return t
  end
  local live = {} -- {s = sequence, hist = its tokens, name}
  local made, compared, worst, log = 0, 0, 0, {}

  -- the logits `got` (row `row` of a [rows, V] table) of entry e against a
  -- prefill of its history
  local function against(e, got, row, what)
    local want = ref:prefill(C.ids(e.hist, 1, #e.hist)):to_table()
    local err = C.relerr(table.move(got, (row - 1) * V + 1, row * V, 1, {}), want)
    compared, worst = compared + 1, math.max(worst, err)
    if err ~= 0 then
      check(false, string.format("%s: %s: %s after %d tokens differs from a prefill by %.3e " ..
                                 "(events: %s)", fmt, what, e.name, #e.hist, err,
                                 table.concat(log, ", ")))
    end
  end
  local function new_entry(hist)
    made = made + 1
    local e = {s = model:sequence(), hist = hist, name = "seq" .. made}
    live[#live + 1] = e
    return e
  end
  local function pick() return live[int(1, #live)] end
  local function room(e, n) return #e.hist + n <= MAXLEN end
  local function append(e, list) table.move(list, 1, #list, #e.hist + 1, e.hist) end
  -- a random token decoded by e, checked
  local function step(e, what)
    local id = int(0, V - 1)
    local got = e.s:decode(id):to_table()
    append(e, {id})
    against(e, got, 1, what)
  end
  -- `steps` decode_batch steps of the entries `group` (none without one),
  -- random tokens, checked
  local function together(group, steps, what)
    local seqs, ids = {}, {}
    for b, e in ipairs(group) do seqs[b] = e.s end
    for _ = 1, #group > 0 and steps or 0 do
      for b = 1, #group do ids[b] = int(0, V - 1) end
      local got = model:decode_batch(seqs, ids):to_table()
      for b, e in ipairs(group) do
        append(e, {ids[b]})
        against(e, got, b, what)
      end
    end
  end
  -- k random tokens given to e by call(list) (logits: the last one's at
  -- row `row`), checked; nothing without room for them
  local function give(e, k, what, row, call)
    if not room(e, k) then return end
    local list = tokens(k)
    log[#log + 1] = string.format("%s %s %d", what, e.name, k)
    local got = call(list):to_table()
    append(e, list)
    against(e, got, row or 1, what)
  end

  local kinds = {"new", "batch_new", "decode", "decode", "decode_batch", "decode_batch",
                 "tokens", "extend", "fork", "drop", "again", "rewind", "burst", "batch_burst",
                 "forget", "rounds", "rounds", "speculate"}
  local solo_replays = 0 -- (of sequences dropped or prefilled again: their graphs go)
  local function solo(e)
    solo_replays = solo_replays + e.s:graph_counts().replayed
  end
  for ev = 1, events do
    local kind = #live == 0 and "new" or kinds[int(1, #kinds)]
    if kind == "new" or kind == "again" then
      local e = kind == "again" and pick() or new_entry(nil)
      if kind == "again" then solo(e) end
      e.hist = tokens(int(1, 200))
      local chunk = rnd() < 0.3 and int(1, #e.hist) or nil
      log[#log + 1] = string.format("%s %s %d%s", kind, e.name, #e.hist,
                                    chunk and "/" .. chunk or "")
      against(e, e.s:prefill(C.ids(e.hist, 1, #e.hist), chunk):to_table(), 1, kind)
    elseif kind == "batch_new" then
      local group, prompts = {}, {}
      for b = 1, int(2, 3) do
        group[b] = new_entry(tokens(int(1, 150)))
        prompts[b] = C.ids(group[b].hist, 1, #group[b].hist)
      end
      local seqs = {}
      for b, e in ipairs(group) do seqs[b] = e.s end
      log[#log + 1] = "batch_new " .. #group
      local got = model:prefill_batch(seqs, prompts):to_table()
      for b, e in ipairs(group) do against(e, got, b, kind) end
    elseif kind == "decode" then
      local e = pick()
      give(e, 1, kind, 1, function(list) return e.s:decode(list[1]) end)
    elseif kind == "burst" then
      -- (steps in a row: a key's third and later ones replay its graph; a
      -- batch's keys, which phase of a CSA window each row is at, come back
      -- every 4 steps)
      local e, n = pick(), int(3, 9)
      if room(e, n) then
        log[#log + 1] = "burst " .. e.name .. " " .. n
        for _ = 1, n do step(e, kind) end
      end
    elseif kind == "decode_batch" or kind == "batch_burst" then
      local group, seen = {}, {}
      local steps = kind == "batch_burst" and int(9, 18) or 1
      for _ = 1, int(1, math.min(#live, 5)) do
        local e = pick()
        if not seen[e] and room(e, steps) then
          seen[e] = true
          group[#group + 1] = e
        end
      end
      log[#log + 1] = string.format("%s %d x %d", kind, #group, steps)
      together(group, steps, kind)
    elseif kind == "tokens" then
      local e, k = pick(), int(2, 4)
      give(e, k, kind, k, function(list) return e.s:decode_tokens(list) end)
    elseif kind == "extend" then
      local e, n = pick(), int(1, 60)
      give(e, n, kind, 1, function(list) return e.s:extend(C.ids(list, 1, n)) end)
    elseif kind == "fork" then
      local e = pick()
      local f = new_entry(table.move(e.hist, 1, #e.hist, 1, {}))
      f.s = e.s:fork()
      log[#log + 1] = "fork " .. e.name .. " -> " .. f.name
      if room(f, 1) then step(f, "fork's decode") end
    elseif kind == "drop" and #live > 1 then
      local i = int(1, #live)
      log[#log + 1] = "drop " .. live[i].name
      solo(live[i])
      table.remove(live, i)
      collectgarbage()
      collectgarbage()
    elseif kind == "forget" then
      -- (a rejected draft: the last of a step's tokens forgotten)
      local e, k = pick(), int(2, 3)
      if room(e, k) then
        local list = tokens(k)
        log[#log + 1] = "forget " .. e.name .. " " .. k
        e.s:decode_tokens(list)
        e.s:forget_last()
        append(e, table.move(list, 1, k - 1, 1, {}))
        step(e, "forget's decode")
      end
    elseif kind == "rounds" then
      -- (speculate_batch's verification: rounds of several sequences, a
      -- sequence's later tokens in later rounds, every row's logits)
      local rounds, order, seen = {}, {}, {}
      for r = 1, int(1, 3) do
        local rd = {seqs = {}, ids = {}}
        for _ = 1, int(1, 3) do
          local e = pick()
          if not seen[e] then seen[e] = 0 end
          if not rd[e] and room(e, seen[e] + 1) then
            rd[e] = true
            seen[e] = seen[e] + 1
            rd.seqs[#rd.seqs + 1], rd.ids[#rd.ids + 1] = e.s, int(0, V - 1)
            order[#order + 1] = {e, rd.ids[#rd.ids]}
          end
        end
        if #rd.seqs > 0 then rounds[#rounds + 1] = rd end
      end
      if #rounds > 0 then
        log[#log + 1] = string.format("rounds %d (%d rows)", #rounds, #order)
        local got = model:decode_rounds(rounds):to_table()
        for row, o in ipairs(order) do
          append(o[1], {o[2]})
          against(o[1], got, row, kind)
        end
      end
    elseif kind == "speculate" then
      -- (requests that speculate with the MTP block's drafts, greedy: 1-3
      -- sequences prefilled afresh, together; their tokens a plain greedy
      -- decode's, then their state that of their tokens but the last)
      local group, seqs, prompts = {}, {}, {}
      for b = 1, int(1, 3) do
        group[b] = new_entry(tokens(int(1, 120)))
        seqs[b], prompts[b] = group[b].s, group[b].hist
      end
      local n, ids, wants = int(2, 8), {}, {}
      for b, e in ipairs(group) do
        ids[b], wants[b] = C.ids(e.hist, 1, #e.hist), C.greedy_tokens(ref, e.hist, n)
      end
      -- (or 1-3 drafts a step, each the greedy token 7 times in 10, so
      -- that steps keep all, some or none of them: M:rewind)
      local drafts = rnd() < 0.5 and function(b, so_far)
        local list = {}
        for j = 1, int(1, 3) do
          list[j] = rnd() < 0.7 and wants[b][#so_far + j] or int(0, V - 1)
        end
        return list
      end
      log[#log + 1] = string.format("speculate %d x %d%s", #group, n, drafts and " (drafts)" or "")
      local logits = model:prefill_batch(seqs, ids)
      local outs = model:speculate_batch(seqs, logits, prompts, n,
                                         function(l) return C.greedy(l) end, nil, drafts or nil)
      for b, e in ipairs(group) do
        local want = wants[b]
        local same = #outs[b] == n
        for i = 1, n do same = same and outs[b][i] == want[i] end
        check(same, string.format("%s: %s's speculated tokens %s, greedy %s", fmt, e.name,
                                  table.concat(outs[b], " "), table.concat(want, " ")))
        append(e, table.move(outs[b], 1, n - 1, 1, {}))
        if room(e, 1) then step(e, "speculation's next decode") end
      end
    elseif kind == "rewind" then
      local e = pick()
      local k = math.min(int(2, 4), e.s:max_step_positions())
      if room(e, k) then
        local list, back = tokens(k), int(0, k - 1)
        log[#log + 1] = string.format("rewind %s %d -%d", e.name, k, k - back)
        e.s:snapshot(k)
        e.s:decode_tokens(list)
        e.s:rewind(#e.hist + back)
        append(e, table.move(list, 1, back, 1, {}))
        step(e, "rewind's decode")
      end
    end
  end
  -- then every live sequence with room 13 steps together (a wide batch,
  -- whose replays depend on the pools staying put), and two new ones 13
  -- steps together and 10 alone: whatever the events were, graphs of both
  -- kinds replay
  local wide = {}
  for _, e in ipairs(live) do
    if room(e, 13) then wide[#wide + 1] = e end
  end
  together(wide, 13, "the wide batch")
  local pair = {}
  for b = 1, 2 do
    pair[b] = new_entry(tokens(int(1, 60)))
    pair[b].s:prefill(C.ids(pair[b].hist, 1, #pair[b].hist))
  end
  together(pair, 13, "the last batch")
  for _ = 1, 10 do step(pair[1], "the last steps") end
  for _, e in ipairs(live) do solo(e) end
  local bc = model:batch_graph_counts()
  check(compared >= events, string.format("%s: %d comparisons in %d events", fmt, compared,
                                          events))
  -- (the traffic replayed graphs of both kinds, so their replays were compared)
  check(bc.replayed > 0 and solo_replays > 0, string.format("%s: graphs replayed: %d of " ..
                                                            "batches, %d of single sequences",
                                                            fmt, bc.replayed, solo_replays))
  print(string.format("%s: %d events (%d sequences made, %d live at the end), %d logits " ..
                      "compared to a prefill, worst %.3e; graphs replayed: %d batch steps " ..
                      "(%d recorded), %d single sequences' steps", fmt, events, made, #live,
                      compared, worst, bc.replayed, bc.recorded, solo_replays))
end

C.finish()
