-- fork.lua - model:fork(): a sequence's state copied into a new sequence
-- (a shared prefix made once). Forks of a prefix extended with different
-- tokens give the logits of one prefill of the prefix and those tokens bit
-- for bit, and the original's next step is still its own (the forks' steps
-- wrote none of its rows); a fork made mid-window (a compressor's partial
-- window, a window ring not yet full, after decode steps that completed
-- CSA and HCA entries) decodes as the original does; forks decode together
-- in a batch as alone; a fork of a fork; the MTP block's state goes along;
-- a fork gives its slot back when it is collected. In both cache formats
-- and with the bf16 attention. Bad calls are refused. Uses the golden tiny
-- model (skips without ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

for _, fmt in ipairs{"f32", "fp8", "fp8+bf16"} do
  local attention = fmt == "fp8+bf16" and "bf16" or nil
  local model = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
  -- a prefix of 37 tokens, two forks extended by 20 and by 131 other tokens
  -- (past the window, CSA and HCA entries), then a decode step of each
  local P = 37
  local base = model:sequence()
  base:prefill(C.ids(ids, 1, P))
  local worst = 0
  for k, cont in ipairs{{60, 20}, {100, 131}} do
    local f = base:fork()
    local more = table.move(ids, cont[1], cont[1] + cont[2] - 1, 1, {})
    local all = table.move(more, 1, #more, P + 1, table.move(ids, 1, P, 1, {}))
    local fresh = model:sequence()
    local want = fresh:prefill(ts.tensor("i32", {#all}, all)):to_table()
    local got = f:extend(ts.tensor("i32", {#more}, more)):to_table()
    worst = math.max(worst, relerr(got, want))
    local tok = ids[k]
    worst = math.max(worst, relerr(f:decode(tok):to_table(), fresh:decode(tok):to_table()))
  end
  -- the original after its forks went on: its own next step
  local alone = model:sequence()
  alone:prefill(C.ids(ids, 1, P))
  local e = relerr(base:decode(ids[P + 1]):to_table(), alone:decode(ids[P + 1]):to_table())
  check(worst == 0 and e == 0, string.format("%s: forks of a %d-token prefix extended apart: " ..
                                             "%.3e; the original after them: %.3e", fmt, P,
                                             worst, e))
  -- a fork mid-window: after 7 decode steps (positions 38 .. 44; CSA
  -- entries completed, a compressor window partly full, the ring not yet
  -- full), then 6 steps of each, from a fork of the fork too
  for s = 2, 7 do base:decode(ids[P + s]); alone:decode(ids[P + s]) end
  local f = base:fork()
  local g = f:fork()
  worst = 0
  for s = 8, 13 do
    local want = alone:decode(ids[P + s]):to_table()
    for _, q in ipairs{base, f, g} do
      worst = math.max(worst, relerr(q:decode(ids[P + s]):to_table(), want))
    end
  end
  check(worst == 0 and f.next_pos == alone.next_pos,
        string.format("%s: the original, a fork and a fork of it decode alike: %.3e", fmt, worst))
  -- forks decode together in a batch as alone (other tokens each)
  local a, b = alone:fork(), alone:fork()
  local ra, rb = a:fork(), b:fork()
  local got = model:decode_batch({a, b}, {5, 9}):to_table()
  local V = model.cfg.vocab_size
  local ea = relerr(table.move(got, 1, V, 1, {}), ra:decode(5):to_table())
  local eb = relerr(table.move(got, V + 1, 2 * V, 1, {}), rb:decode(9):to_table())
  check(ea == 0 and eb == 0, string.format("%s: forks in a decode batch: %.3e, %.3e", fmt, ea, eb))
end

-- the MTP block's state goes along: the block's next position from a fork
-- as from the original
do
  local model = V4.load(dir, nil, {kv_format = "fp8"})
  local s = model:sequence()
  s:prefill(C.ids(ids, 1, 40))
  s:mtp(C.ids(ids, 2, 39))
  local f = s:fork()
  local h = s.final_streams:slice(0, 39, 1)
  local e = relerr(f:mtp_steps(h, {ids[41]}):to_table(), s:mtp_steps(h, {ids[41]}):to_table())
  check(e == 0 and f.mtp_pos == s.mtp_pos, string.format("the MTP block from a fork: %.3e", e))
  -- a fork gives its slot back when collected: the pools hold no more rows
  -- after forks come and go
  local function held()
    local n = 0
    for _, pools in pairs(model.pools) do
      for _, p in pairs(pools) do n = n + p:rows_held() end
    end
    return n
  end
  collectgarbage()
  local before = held()
  for _ = 1, 3 do
    local t = s:fork()
    t:decode(7)
  end
  collectgarbage()
  collectgarbage()
  model:sequence():slot() -- (a slot taken releases the freed ones' rows)
  check(held() <= before, string.format("forks collected: %d rows held, %d before", held(),
                                        before))
  local ok, err = pcall(function() return model:sequence():fork() end)
  check(not ok and tostring(err):find("fork needs a prefill first", 1, true) ~= nil,
        "a fork before a prefill is refused: " .. tostring(err))
end
C.finish()
