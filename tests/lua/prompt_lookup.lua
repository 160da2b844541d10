-- prompt_lookup.lua - drafting without a model (model/mtp.lua): the
-- tokens after the latest earlier occurrence of the list's last g tokens
-- (g from ngram down to 1), at most k. model.prompt_lookup scans the list;
-- model.lookup_index keeps a map a gram length and answers the same from
-- pushes (on hand-made lists, then on every prefix of random ones over
-- small alphabets, so that grams repeat, for ngram 1-4 and k 1-5);
-- model.lookup_drafter continues a history with a growing reply and falls
-- back to the MTP block's draft. Pure Lua: no kernel runs.
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check = C.check

local function show(t) return "{" .. table.concat(t, ", ") .. "}" end

-- hand-made: the latest occurrence, the longest gram first, the list's end
-- cutting the draft, no occurrence
local cases = {
  {{1, 2, 3, 9, 1, 2, 3}, 2, 3, {9, 1}},
  {{4, 5, 6, 4, 5, 7, 4, 5}, 2, 3, {7, 4}},    -- {4, 5} at 1 and 4: the latest
  {{8, 1, 2, 3, 7, 2, 3, 5, 1, 2, 3}, 3, 3, {7, 2, 3}}, -- 3-gram over the later 2-gram
  {{8, 1, 2, 3, 7, 2, 3, 5, 1, 2, 3}, 3, 2, {5, 1, 2}}, -- ngram 2: the latest {2, 3}
  {{1, 2, 1}, 5, 3, {2, 1}},                   -- cut at the list's end
  {{1, 2, 3, 4}, 3, 3, {}},                    -- the tail never occurred before
  {{7}, 3, 3, {}},
  {{}, 3, 3, {}},
}
for _, c in ipairs(cases) do
  local tokens, k, g, want = c[1], c[2], c[3], c[4]
  local scan = V4.prompt_lookup(tokens, k, g)
  local x = V4.lookup_index(tokens, g)
  local got = x:draft(k)
  check(C.same(scan, want) and C.same(got, want),
        string.format("%s, k %d, ngram %d: %s (scan %s, index %s)", show(tokens), k, g,
                      show(want), show(scan), show(got)))
end

-- random lists: the index, pushed a token (or a few) at a time, drafts
-- what the scan of the same prefix does
local rnd = C.lcg(7)
local bad, drafts, nonempty = 0, 0, 0
for trial = 1, 40 do
  local alphabet = 2 + trial % 5
  local g = 1 + trial % 4
  local n = 30 + 7 * trial
  local tokens = {}
  for i = 1, n do tokens[i] = math.floor(rnd() * alphabet) + 100 * (trial % 3) end
  local x = V4.lookup_index(nil, g)
  local pushed = 0
  while pushed < n do
    local step = 1 + math.floor(rnd() * 3)
    local upto = math.min(n, pushed + step)
    x:push(table.move(tokens, pushed + 1, upto, 1, {}))
    pushed = upto
    local prefix = table.move(tokens, 1, pushed, 1, {})
    for k = 1, 5 do
      local want, got = V4.prompt_lookup(prefix, k, g), x:draft(k)
      drafts = drafts + 1
      nonempty = nonempty + (#want > 0 and 1 or 0)
      if not C.same(want, got) then
        bad = bad + 1
        if bad <= 3 then
          print(string.format("prefix %s ngram %d k %d: scan %s, index %s", show(prefix), g, k,
                              show(want), show(got)))
        end
      end
    end
  end
end
check(bad == 0 and nonempty > drafts // 2,
      string.format("the index drafts as the scan: %d of %d differ (%d non-empty)", bad, drafts,
                    nonempty))
-- push(list, from): the list's tokens from `from` on
local x = V4.lookup_index({1, 2, 3}, 2)
x:push({9, 9, 1, 2}, 3)
check(C.same(x:draft(3), {3, 1, 2}), "push from an index: " .. show(x:draft(3)))

-- the drafter: a history, then the reply's tokens as they come (the same
-- list growing); none found: the MTP block's draft
local history = {5, 6, 7, 8, 1, 2}
local drafter = V4.lookup_drafter(history, 2)
local reply = {9}
check(drafter(reply, 42) == 42, "no occurrence: the block's draft")
reply[2] = 5
check(C.same(drafter(reply, 42), {6, 7}), "the history's continuation of the reply's last token")
reply[3], reply[4] = 6, 9
check(C.same(drafter(reply, 42), {5, 6}), "the reply's own earlier tokens: " ..
      show(drafter(reply, 42)))
check(#history == 6, "the history is not changed")
local ok, err = pcall(drafter, {9}, 42)
check(not ok and tostring(err):find("went back", 1, true) ~= nil,
      "a reply that went back is refused: " .. tostring(err))

-- a long history: the index's drafts a step cost no pass over it
local long = {}
for i = 1, 200000 do long[i] = (i * 7919) % 50021 end
local t0 = os.clock()
local d = V4.lookup_drafter(long, 4)
local r = {}
for i = 1, 200 do
  r[i] = long[1000 + i]
  d(r, 0)
end
local index_s = os.clock() - t0
t0 = os.clock()
for i = 1, 5 do
  V4.prompt_lookup(table.move(r, 1, i, #long + 1, table.move(long, 1, #long, 1, {})), 4)
end
local scan_s = (os.clock() - t0) / 5
print(string.format("200K-token history: 200 drafts by the index %.3f s in all (its build " ..
                    "included), one scan %.3f s", index_s, scan_s))
check(C.same(d(r, 0), {long[1201], long[1202], long[1203], long[1204]}),
      "the long history's continuation")
C.finish()
