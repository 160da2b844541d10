-- prefill_batch.lua - several sequences prefilled together
-- (model:prefill_batch): four prompts of DeepSeek's tiny golden model of 2,
-- 126, 37 and 140 tokens (inside the window, at its edge, past a CSA
-- window and past the window with HCA entries) prefilled as one batch give
-- exactly the last positions' logits of the same prompts prefilled one at a
-- time, in both cache formats and with the bf16 attention (on the CPU a
-- token's sums do not depend on the others; a GPU may differ by rounding);
-- the batch's attention is one launch a layer for all the prompts (the
-- pooling, the indexer's scores and top-k, the lists, the attention), and
-- so is each kind of row handed to the sequences' caches; the caches each
-- sequence is handed are the same too: 6 steps decoded as a
-- batch (decode_batch) equal the sequences prefilled alone and decoded one
-- at a time; a sequence that was prefilled before starts afresh; 26
-- prompts whose indexer scores take two launches a layer (the short ones',
-- then the long one's: O.score_pad 0) equal each alone too; bad batches
-- are refused. Skips without ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local function prompt(first, n) return table.move(ids, first, first + n - 1, 1, {}) end
local exact = ts.default_device():name() == "cpu"

-- launches a kernel since the profile's reset, by kernel name
local function launches()
  local n = {}
  for _, r in ipairs(ts.profile()) do n[r.kernel] = (n[r.kernel] or 0) + r.launches end
  return n
end
for _, opt in ipairs{{"f32"}, {"fp8"}, {"fp8", "bf16"}} do
  local fmt = opt[1] .. (opt[2] and " with bf16 attention" or "")
  local model = V4.load(dir, nil, {kv_format = opt[1], attention = opt[2]})
  local V = model.cfg.vocab_size
  -- (the MTP block's ratio after the layers')
  local layers, csa, hca = model.cfg.n_layers, 0, 0
  for L = 1, layers do
    local r = model.cfg.compress_ratios[L]
    if r == 4 then csa = csa + 1 elseif r == 128 then hca = hca + 1 end
  end
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
  ts.profile(true)
  ts.profile_reset()
  local got = model:prefill_batch(batch, tprompts):to_table()
  local seen = launches()
  ts.profile(false)
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
  -- the attention's launches: one a layer (or compressor) for the batch
  local attn = (seen.sparse_attn_f32 or 0) + (seen.sparse_attn_tc or 0) +
    (seen.hca_attn_split_f32 or 0) + (seen.hca_attn_tc or 0)
  local scores = (seen.indexer_scores_fp4 or 0) + (seen.indexer_scores_f32 or 0)
  check(attn == layers and seen.sparse_index == layers and seen.compress_pool == nil and
          seen.compress_pool_at == 2 * csa + hca and scores == csa and seen.topk == csa,
        string.format("%s: a batch's attention launches: attention %d, lists %s, pooling %s + %s, " ..
                        "scores %d, top-k %s (layers %d, CSA %d, HCA %d)", fmt, attn,
                      seen.sparse_index, seen.compress_pool, seen.compress_pool_at, scores,
                      seen.topk, layers, csa, hca))
  -- and the hand-off: each kind of row put for every sequence by one launch
  -- (the window's last rows, the entries, the keys, each compressor's
  -- buffered rows)
  check(seen.put_rows == layers + 4 * csa + 2 * hca,
        string.format("%s: the caches handed off by %s put_rows launches (layers %d, CSA %d, " ..
                        "HCA %d)", fmt, seen.put_rows, layers, csa, hca))
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
  -- 25 prompts of 8 tokens, then one of 140: with no padding allowed past
  -- the runs' own scores, the indexer scores the short ones together and
  -- the long one apart (two launches a CSA layer); the same logits
  if opt[1] == "fp8" and not opt[2] then
    local pad = O.score_pad
    O.score_pad = 0
    local many, mp = {}, {}
    for b = 1, 26 do many[b], mp[b] = model:sequence(), prompt(b, b < 26 and 8 or 140) end
    ts.profile(true)
    ts.profile_reset()
    local g = model:prefill_batch(many, mp):to_table()
    local runs = launches().indexer_scores_fp4
    ts.profile(false)
    O.score_pad = pad
    worst = 0
    for b = 1, #many do
      local want = model:sequence():prefill(ts.tensor("i32", {#mp[b]}, mp[b])):to_table()
      worst = math.max(worst, relerr(table.move(g, (b - 1) * V + 1, b * V, 1, {}), want))
    end
    print(string.format("%s: 26 prompts, scored in %d launches, vs one at a time: worst %.3e",
                        fmt, runs, worst))
    check(worst <= (exact and 0 or 1e-5) and runs == 2 * csa,
          string.format("%s: 26 prompts, scored in %d launches (CSA layers %d), vs one at a " ..
                          "time: worst %.3e", fmt, runs, csa, worst))
  end
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
