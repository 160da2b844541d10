-- prefill_batch.lua - several sequences prefilled together
-- (model:prefill_batch): four prompts of DeepSeek's tiny golden model of 2,
-- 126, 37 and 140 tokens (inside the window, at its edge, past a CSA
-- window and past the window with HCA entries) prefilled as one batch give
-- exactly the last positions' logits of the same prompts prefilled one at a
-- time, in both cache formats and with the bf16 attention (on the CPU a
-- token's sums do not depend on the others; a GPU may differ by rounding);
-- the caches each sequence is handed are the same too: 6 steps decoded as a
-- batch (decode_batch) equal the sequences prefilled alone and decoded one
-- at a time; a sequence that was prefilled before starts afresh; bad
-- batches are refused. Skips without ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local function prompt(first, n) return table.move(ids, first, first + n - 1, 1, {}) end
local exact = ts.default_device():name() == "cpu"
for _, opt in ipairs{{"f32"}, {"fp8"}, {"fp8", "bf16"}} do
  local fmt = opt[1] .. (opt[2] and " with bf16 attention" or "")
  local model = V4.load(dir, nil, {kv_format = opt[1], attention = opt[2]})
  local V = model.cfg.vocab_size
  local starts, lens = {1, 20, 60, 3}, {2, 126, 37, 140}
  local batch, alone, prompts = {}, {}, {}
  for b = 1, #lens do
    batch[b], alone[b] = model:sequence(), model:sequence()
    prompts[b] = prompt(starts[b], lens[b])
  end
  -- one of them with an earlier prompt of its own, forgotten by the batch's
  batch[3]:prefill(ts.tensor("i32", {5}, prompt(90, 5)))
  -- (prompts as tables, and one as a tensor)
  local tprompts = {prompts[1], ts.tensor("i32", {lens[2]}, prompts[2]), prompts[3], prompts[4]}
  local got = model:prefill_batch(batch, tprompts):to_table()
  local worst = 0
  for b = 1, #lens do
    local want = alone[b]:prefill(ts.tensor("i32", {lens[b]}, prompts[b])):to_table()
    worst = math.max(worst, relerr(table.move(got, (b - 1) * V + 1, b * V, 1, {}), want))
    check(batch[b].next_pos == lens[b], fmt .. ": sequence " .. b .. " at its prompt's end")
  end
  check(worst <= (exact and 0 or 1e-5),
        string.format("%s: prefill of %d together vs one at a time: worst %.3e", fmt, #lens, worst))
  print(string.format("%s: prefill of %d together vs one at a time: worst %.3e", fmt, #lens,
                      worst))
  -- the caches handed to each: decoding on from there
  worst = 0
  for step = 1, 6 do
    local next_ids = {}
    for b = 1, #lens do next_ids[b] = ids[starts[b] + lens[b] + step - 1] end
    local g = model:decode_batch(batch, next_ids):to_table()
    for b = 1, #lens do
      local want = alone[b]:decode(next_ids[b]):to_table()
      worst = math.max(worst, relerr(table.move(g, (b - 1) * V + 1, b * V, 1, {}), want))
    end
  end
  check(worst <= (exact and 0 or 1e-5),
        string.format("%s: 6 steps after the batch's prefill: worst %.3e", fmt, worst))
  print(string.format("%s: 6 decode steps after it: worst %.3e", fmt, worst))
  -- bad batches
  local function refused(f, needle)
    local ok, err = pcall(f)
    check(not ok and tostring(err):find(needle, 1, true) ~= nil,
          "refused with '" .. needle .. "': " .. tostring(err))
  end
  local s1, s2 = model:sequence(), model:sequence()
  refused(function() model:prefill_batch({s1, s1}, {{1}, {2}}) end, "appears twice")
  refused(function() model:prefill_batch({s1, s2}, {{1}, {}}) end, "prompt 2 is empty")
  refused(function() model:prefill_batch({s1, V4.load(dir)}, {{1}, {2}}) end, "another model")
  refused(function() model:prefill_batch({s1}, {{1}, {2}}) end, "one prompt for each")
end
C.finish()
