-- decode_batch.lua - several sequences decoding together
-- (model:decode_batch, model:sequence): three sequences of DeepSeek's tiny
-- golden model prefilled with prompts of 3, 126 and 37 tokens (inside the
-- window, at its edge, past a CSA window), then 10 steps decoded as one
-- batch (crossing the window and CSA/HCA entry boundaries) give exactly
-- each step's logits of the same sequences decoded one at a time, in both
-- cache formats and both attentions (on the CPU a row's sums do not depend
-- on the batch; a GPU's batch may differ by rounding), each layer's
-- attention one launch for the batch (over "f32" caches with the bf16
-- attention, a window or CSA layer's lists gathered into one bf16 list by
-- one launch, then one split attention);
-- a sequence's state is its own (a fourth, untouched one still decodes as
-- a fresh model would); a collected sequence's slot in the state pools is
-- taken by a new one, which decodes as it would alone; a slot holds its
-- own sequence's entries, not the longest one's; bad batches are
-- refused. Skips without
-- ../shared/golden.
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local function prompt(first, n)
  return C.ids(ids, first, n)
end

-- The worst relative error of the batch's logits got (a table, V a row)
-- against each of the sequences `alone` decoding its id next_ids[b], and
-- worst so far.
local function against(got, alone, next_ids, V, worst)
  for b = 1, #alone do
    local want = alone[b]:decode(next_ids[b]):to_table()
    worst = math.max(worst, relerr(table.move(got, (b - 1) * V + 1, b * V, 1, {}), want))
  end
  return worst
end
-- (the "fp8" caches' batch runs one attention launch a window or CSA
-- layer, each sequence's rows read in the state pools: f32 attention, and
-- the bf16 attention's split kernels)
for _, fmt in ipairs{"f32", "f32+bf16", "fp8", "fp8+bf16"} do
  local attention = fmt:find("bf16", 1, true) and "bf16" or nil
  local model = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
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
  local worst, attn = 0, {}
  for step = 1, 10 do
    local next_ids = {}
    for b = 1, 3 do next_ids[b] = ids[starts[b] + lens[b] + step - 1] end
    ts.profile(step == 1)
    ts.profile_reset()
    local got = model:decode_batch(batch, next_ids):to_table()
    if step == 1 then
      for _, r in ipairs(ts.profile()) do attn[r.kernel] = (attn[r.kernel] or 0) + r.launches end
      ts.profile(false)
    end
    worst = against(got, alone, next_ids, V, worst)
  end
  -- the batch's attention: one launch a layer for all three sequences
  local kinds = {[0] = 0, [4] = 0, [128] = 0}
  for L = 1, model.cfg.n_layers do
    local r = model.cfg.compress_ratios[L]
    kinds[r] = kinds[r] + 1
  end
  local want_hca = fmt == "fp8+bf16" and "hca_attn_split_kv8" or "hca_attn_split_f32"
  check((attn[want_hca] or 0) == kinds[128], string.format(
        "%s: %s launched %d times in a step of 3 (HCA layers %d)", fmt, want_hca,
        attn[want_hca] or 0, kinds[128]))
  if fmt == "f32" then
    check(attn.sparse_attn_f32_pool == kinds[0] + kinds[4] and not attn.sparse_attn_f32 and
          attn.indexer_scores_f32 == kinds[4], string.format(
          "f32: sparse_attn_f32_pool %d, indexer_scores_f32 %d launches in a step of 3 (window " ..
          "layers %d, CSA %d)", attn.sparse_attn_f32_pool or 0, attn.indexer_scores_f32 or 0,
          kinds[0], kinds[4]))
  end
  if fmt == "f32+bf16" then
    check(attn.pool_list_bf16 == kinds[0] + kinds[4] and
          attn.sparse_attn_split == kinds[0] + kinds[4] and not attn.convert_rows,
          string.format("f32+bf16: pool_list_bf16 %d, sparse_attn_split %d, convert_rows %d " ..
                          "launches in a step of 3 (window layers %d, CSA %d)",
                        attn.pool_list_bf16 or 0, attn.sparse_attn_split or 0,
                        attn.convert_rows or 0, kinds[0], kinds[4]))
  end
  local exact = ts.default_device():name() == "cpu"
  check(worst <= (exact and 0 or 1e-5),
        string.format("%s: batch of 3 vs one at a time, 10 steps: worst %.3e", fmt, worst))
  print(string.format("%s: batch of 3 vs one at a time over 10 steps: worst %.3e", fmt, worst))
  -- the untouched sequence decodes as a fresh model prefilled the same way
  local fresh = V4.load(dir, nil, {kv_format = fmt:sub(1, 3), attention = attention})
  fresh:prefill(prompt(5, 9))
  local e = relerr(untouched:decode(ids[14]):to_table(), fresh:decode(ids[14]):to_table())
  check(e == 0, string.format("%s: an untouched sequence's decode: %.3e", fmt, e))
  -- the state pools: each sequence's ring and compressor buffers in its
  -- slot of one tensor a layer (grown while the seven sequences above were
  -- prefilled, the earlier ones' views re-pointed); a sequence collected
  -- gives its slot back, a new one takes it (its rows zeroed) and decodes
  -- in a batch as it does alone, beside a survivor
  local ring = model.pools[0].ring
  local gone = model:sequence()
  gone:prefill(prompt(30, 50))
  local slot, rows = gone:slot(), ring:capacity()
  gone = nil
  collectgarbage()
  collectgarbage()
  local again, twin = model:sequence(), model:sequence()
  again:prefill(prompt(7, 40))
  check(again:slot() == slot and ring:capacity() == rows,
        string.format("%s: a collected sequence's slot is taken again (%s, %s; %d rows, %d)",
                      fmt, again:slot(), slot, ring:capacity(), rows))
  twin:prefill(prompt(7, 40))
  local rows = {}
  for step = 1, 5 do
    local got = model:decode_batch({again, batch[2]}, {ids[46 + step], ids[140 + step]})
    rows[#rows + 1] = relerr(table.move(got:to_table(), 1, V, 1, {}),
                             twin:decode(ids[46 + step]):to_table())
  end
  check(math.max(table.unpack(rows)) <= (exact and 0 or 1e-5),
        string.format("%s: a reused slot decodes as a fresh one: worst %.3e", fmt,
                      math.max(table.unpack(rows))))
  -- sequences completing their windows at the same steps (prompts of 60,
  -- 124 and 252: a CSA entry every 4 steps, an HCA entry at step 4 for two
  -- of them) pool them together, one launch for all: as each alone
  do
    local lens, starts, together, apart = {60, 124, 252}, {9, 5, 1}, {}, {}
    for b = 1, 3 do
      together[b], apart[b] = model:sequence(), model:sequence()
      together[b]:prefill(prompt(starts[b], lens[b]))
      apart[b]:prefill(prompt(starts[b], lens[b]))
    end
    local worst, pools = 0, {}
    for step = 1, 8 do
      local next_ids = {}
      for b = 1, 3 do next_ids[b] = ids[starts[b] + lens[b] + step - 1] end
      ts.profile(true)
      ts.profile_reset()
      local got = model:decode_batch(together, next_ids):to_table()
      local n = 0
      for _, r in ipairs(ts.profile()) do
        if r.kernel == "compress_pool_at" then n = n + r.launches end
      end
      ts.profile(false)
      pools[step] = n
      worst = against(got, apart, next_ids, V, worst)
    end
    check(worst <= (exact and 0 or 1e-5),
          string.format("%s: windows completed together vs alone: worst %.3e", fmt, worst))
    -- (a completing step: the CSA layers' two compressors a launch each, and
    -- at step 4 the HCA layers' one; none between)
    local csa, hca = 0, 0
    for _, r in ipairs(model.cfg.compress_ratios) do
      if r == 4 then csa = csa + 1 elseif r == 128 then hca = hca + 1 end
    end
    check(pools[1] == 0 and pools[4] == 2 * csa + hca and pools[8] == 2 * csa,
          string.format("%s: compress_pool_at launches a step %s (CSA layers %d, HCA %d)", fmt,
                        table.concat(pools, " "), csa, hca))
    -- a CSA layer's entries and keys: each sequence's slot holds its own
    -- rows (the 60-token prompt's fewer than the 252-token one's), not
    -- every slot the longest one's
    local L = 0
    while model.cfg.compress_ratios[L + 1] ~= 4 do L = L + 1 end
    for _, name in ipairs{"comp", "keys"} do
      local pool = model.pools[L][name]
      local short, long = together[1].state[L][name], together[3].state[L][name]
      local held, n, widest = pool:rows_held(), 0, 0
      for _, e in pairs(pool.ext) do n, widest = n + 1, math.max(widest, e[2]) end
      check(short.data:shape(1) < long.data:shape(1) and held < n * widest and
            long.data:shape(1) >= long.n, string.format(
            "%s: layer %d's %s: %d rows for %d slots (the short prompt %d, the long %d of %d)",
            fmt, L, name, held, n, short.data:shape(1), long.n, long.data:shape(1)))
    end
  end
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
