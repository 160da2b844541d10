-- extend.lua - a sequence continued with more tokens (model:extend: the
-- layers over the new tokens against the state its earlier ones left)
-- gives the logits of one prefill of all the tokens bit for bit (the CPU's
-- tilings make a row's sums independent of how many rows go together), for
-- cuts and chunk lengths crossing the window (32), the CSA ratio (4) and
-- the HCA ratio (128), in both cache formats and with the bf16 attention;
-- the state is read (the chunk alone gives other logits); a prompt in
-- several chunks then decode steps, an extend in chunks, and a prefill in
-- chunks (`chunk`), match one prefill; an extended sequence decodes in a batch as
-- alone; bad calls and positions past max_seq_len are refused. Uses the golden tiny model (skips without
-- ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local function part(first, n)
  return C.ids(ids, first, n)
end

for _, fmt in ipairs{"f32", "fp8", "fp8+bf16"} do
  local attention = fmt == "fp8+bf16" and "bf16" or nil
  local model = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
  -- one cut: prefill N, extend M
  local worst, moved = 0, math.huge
  for _, case in ipairs{{3, 2}, {31, 2}, {32, 1}, {126, 3}, {127, 2}, {120, 10}, {30, 100},
                        {100, 60}, {5, 250}, {64, 64}, {1, 3}} do
    local N, M = case[1], case[2]
    local want = model:prefill(part(1, N + M)):to_table()
    local alone = model:prefill(part(N + 1, M)):to_table()
    model:prefill(part(1, N))
    local got = model:extend(part(N + 1, M)):to_table()
    local e = relerr(got, want)
    worst, moved = math.max(worst, e), math.min(moved, relerr(alone, want))
    if e ~= 0 then print(string.format("%s: prefill %d + extend %d: %.3e", fmt, N, M, e)) end
  end
  check(worst == 0, string.format("%s: prefill N + extend M vs prefill N + M: worst %.3e", fmt,
                                  worst))
  check(moved > 1e-3, string.format("%s: the chunk alone differs (least %.3e)", fmt, moved))
  -- several chunks, then decode steps
  local cuts = {7, 60, 1, 90}
  local a = model:sequence()
  local at = 1
  for k, n in ipairs(cuts) do
    if k == 1 then a:prefill(part(at, n)) else a:extend(part(at, n)) end
    at = at + n
  end
  -- (and the same tokens as one extend in chunks of 20)
  local a2 = model:sequence()
  a2:prefill(part(1, 7))
  a2:extend(part(8, at - 8), 20)
  local b = model:sequence()
  b:prefill(part(1, at - 1))
  local e = 0
  for s = 0, 3 do
    local want = b:decode(ids[at + s]):to_table()
    e = math.max(e, relerr(a:decode(ids[at + s]):to_table(), want),
                 relerr(a2:decode(ids[at + s]):to_table(), want))
  end
  check(e == 0 and a.next_pos == at + 3, string.format(
        "%s: chunks of %s then 4 decode steps vs one prefill: %.3e", fmt,
        table.concat(cuts, ", "), e))
  -- prefill in chunks
  local c = model:sequence()
  local got = c:prefill(part(1, 200), 48):to_table()
  local want = b:prefill(part(1, 200)):to_table()
  check(relerr(got, want) == 0 and c.next_pos == 200,
        string.format("%s: prefill of 200 in chunks of 48: %.3e", fmt, relerr(got, want)))
  -- an extended sequence in a batch (its entries grew in its pool slot)
  local x, y, xa, ya = model:sequence(), model:sequence(), model:sequence(), model:sequence()
  x:prefill(part(1, 40))
  x:extend(part(41, 100))
  xa:prefill(part(1, 140))
  y:prefill(part(3, 70))
  ya:prefill(part(3, 70))
  local V, bw = model.cfg.vocab_size, 0
  for s = 1, 5 do
    local out = model:decode_batch({x, y}, {ids[140 + s], ids[72 + s]}):to_table()
    bw = math.max(bw, relerr(table.move(out, 1, V, 1, {}), xa:decode(ids[140 + s]):to_table()),
                  relerr(table.move(out, V + 1, 2 * V, 1, {}), ya:decode(ids[72 + s]):to_table()))
  end
  check(bw == 0, string.format("%s: an extended sequence decoding in a batch: %.3e", fmt, bw))
end

-- bad calls
local model = V4.load(dir, nil, {kv_format = "fp8"})
local function refused(f, needle)
  local ok, err = pcall(f)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil,
        "refused with '" .. needle .. "': " .. tostring(err))
end
refused(function() model:sequence():extend(part(1, 3)) end, "extend needs a prefill first")
local s = model:sequence()
s:prefill(part(1, 5))
refused(function() s:extend(ts.tensor("i32", {0})) end, "extend: no tokens")
s:extend(part(6, 4))
refused(function() s:mtp(part(2, 3)) end, "streams held: positions 5 .. 8")
refused(function() s:prefill(part(1, 5), 0) end, "prefill: chunk 0 must be")
refused(function() s:extend(part(6, 5), 1.5) end, "extend: chunk 1.5 must be")
-- positions past max_seq_len (the RoPE tables' rows) are refused, not read
-- past the tables
local max = model.cfg.max_seq_len
local function some(n)
  local v = {}
  for i = 1, n do v[i] = ids[(i - 1) % #ids + 1] end
  return ts.tensor("i32", {n}, v)
end
refused(function() s:prefill(some(max + 1)) end, "position " .. max .. " is past the model's")
s:prefill(some(max - 2))
refused(function() s:extend(some(3)) end, "extend: position " .. max)
s:extend(some(1))
s:decode(ids[1])
refused(function() s:decode(ids[2]) end, "decode: position " .. max)
refused(function() model:decode_batch({s}, {ids[2]}) end, "decode_batch: sequence 1: position")
C.finish()
