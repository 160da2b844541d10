-- decode_batch.lua - several sequences decoding together
-- (model:decode_batch, model:sequence): three sequences of DeepSeek's tiny
-- golden model prefilled with prompts of 3, 126 and 37 tokens (inside the
-- window, at its edge, past a CSA window), then 10 steps decoded as one
-- batch (crossing the window and CSA/HCA entry boundaries) give exactly
-- each step's logits of the same sequences decoded one at a time, in both
-- cache formats (on the CPU a row's sums do not depend on the batch; a
-- GPU's batch may differ by rounding);
-- a sequence's state is its own (a fourth, untouched one still decodes as
-- a fresh model would); bad batches are refused. Skips without
-- ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local function prompt(first, n)
  return ts.tensor("i32", {n}, table.move(ids, first, first + n - 1, 1, {}))
end
for _, fmt in ipairs{"f32", "fp8"} do
  local model = V4.load(dir, nil, {kv_format = fmt})
  local V = model.cfg.vocab_size
  local starts, lens = {1, 20, 60}, {3, 126, 37}
  local batch, alone = {}, {}
  for b = 1, 3 do
    batch[b], alone[b] = model:sequence(), model:sequence()
    batch[b]:prefill(prompt(starts[b], lens[b]))
    alone[b]:prefill(prompt(starts[b], lens[b]))
  end
  local untouched = model:sequence()
  untouched:prefill(prompt(5, 9))
  local worst = 0
  for step = 1, 10 do
    local next_ids = {}
    for b = 1, 3 do next_ids[b] = ids[starts[b] + lens[b] + step - 1] end
    local got = model:decode_batch(batch, next_ids):to_table()
    for b = 1, 3 do
      local want = alone[b]:decode(next_ids[b]):to_table()
      local row = table.move(got, (b - 1) * V + 1, b * V, 1, {})
      worst = math.max(worst, relerr(row, want))
    end
  end
  local exact = ts.default_device():name() == "cpu"
  check(worst <= (exact and 0 or 1e-5),
        string.format("%s: batch of 3 vs one at a time, 10 steps: worst %.3e", fmt, worst))
  print(string.format("%s: batch of 3 vs one at a time over 10 steps: worst %.3e", fmt, worst))
  -- the untouched sequence decodes as a fresh model prefilled the same way
  local fresh = V4.load(dir, nil, {kv_format = fmt})
  fresh:prefill(prompt(5, 9))
  local e = relerr(untouched:decode(ids[14]):to_table(), fresh:decode(ids[14]):to_table())
  check(e == 0, string.format("%s: an untouched sequence's decode: %.3e", fmt, e))
  -- bad batches
  local function refused(f, needle)
    local ok, err = pcall(f)
    check(not ok and tostring(err):find(needle, 1, true) ~= nil,
          "refused with '" .. needle .. "': " .. tostring(err))
  end
  refused(function() model:decode_batch({batch[1], batch[1]}, {1, 2}) end, "appears twice")
  refused(function() model:decode_batch({model:sequence()}, {1}) end, "needs a prefill first")
  refused(function() model:decode_batch({batch[1], fresh}, {1, 2}) end, "another model")
  refused(function() model:decode_batch({batch[1]}, {1, 2}) end, "one id for each")
end
C.finish()
