-- index_lists.lua - the prefill's attention index lists (kernels/
-- sparse_attn.tile sparse_index, as the model builds them in M:attention):
-- each row equals a plain Lua construction (the window, then the selected
-- entries from the row ebase[t], then -1) for one prompt of T below, at
-- and above the window, selections with pads, without a selection, and a
-- K too short for the window and the selection together; for several
-- prompts in one list (each from position 0, its entries from its own
-- row) and a sequence continued after P positions (the window's rows
-- before P first); and a decode step's (ring_index: the ring's slots, then
-- the selected entries) at positions below, at and past the window; a
-- batch's (pool_lists: the same as rows of the state pools); on the CPU
-- and the GPU simulator.
local ts = require "tessera"
local passed, failed = 0, 0
local function check(ok, what)
  if ok then passed = passed + 1 else failed = failed + 1; print("FAIL: " .. what) end
end

-- The lists of rows whose positions are ts_of[r]: the window's positions p
-- as slot(p), then entry(e, k) for each valid selected entry e (the k-th of
-- the row's KS), then -1 up to K.
local function want_rows(ts_of, W, K, KS, selv, slot, entry)
  local out = {}
  for r, t in ipairs(ts_of) do
    local row = {}
    for p = math.max(0, t - W + 1), t do row[#row + 1] = slot(p) end
    for k = 0, KS - 1 do
      local e = selv and selv[(r - 1) * KS + k + 1] or -1
      if e >= 0 then row[#row + 1] = entry(e, k) end
    end
    for k = 1, K do out[#out + 1] = row[k] or -1 end
  end
  return out
end

-- a prefill's lists: token t (at position pos[t]) is row r0 + t, its
-- span's position p row r0 + t - pos[t] + p, entry e row ebase[t] + e
local function want(pos, r0, ebase, W, K, KS, selv)
  local out = {}
  for t = 0, #pos - 1 do
    local start = r0 + t - pos[t + 1]
    local row = want_rows({pos[t + 1]}, W, K, KS, selv and table.move(selv, t * KS + 1,
                          t * KS + KS, 1, {}) or nil, function(p) return start + p end,
                          function(e) return ebase[t + 1] + e end)
    table.move(row, 1, K, t * K + 1, out)
  end
  return out
end

local function check_same(got, exp, what)
  local same = #got == #exp
  for i = 1, #exp do same = same and got[i] == exp[i] end
  check(same, what)
end

-- the lists of prompts of lens[k] tokens in one KV list (the T rows, then
-- every prompt's entries in turn: len // 4 each), or with P > 0 one prompt
-- continuing after P positions (the window's min(P, W) rows before it,
-- its rows, then the P // 4 entries before and its own)
local function layout(lens, P, W)
  local T = 0
  for _, n in ipairs(lens) do T = T + n end
  local r0 = P > 0 and math.min(P, W) or 0
  local pos, ebase, e = {}, {}, r0 + T
  for _, n in ipairs(lens) do
    for t = 0, n - 1 do pos[#pos + 1], ebase[#ebase + 1] = P + t, e end
    e = e + (P + n) // 4
  end
  return T, pos, r0, ebase
end

for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{lens = {5}, W = 8, KS = 3}, {lens = {8}, W = 8, KS = 2},
                        {lens = {37}, W = 8, KS = 4}, {lens = {37}, W = 8, KS = 0},
                        {lens = {20}, W = 4, KS = 3, K = 5},
                        {lens = {3, 17, 9, 1}, W = 8, KS = 3},
                        {lens = {12, 6}, W = 4, KS = 0},
                        {lens = {11}, P = 5, W = 8, KS = 3},
                        {lens = {30}, P = 23, W = 8, KS = 2}} do
    local W, KS, P = case.W, case.KS, case.P or 0
    local T, pos, r0, ebase = layout(case.lens, P, W)
    local K = case.K or W + KS
    -- token t selects entries below its (position + 1) / 4, increasing, -1
    -- pads (topk's form)
    local selv
    local cols = math.max(KS, 1)
    if KS > 0 then
      selv = {}
      for t = 0, T - 1 do
        local m = (pos[t + 1] + 1) // 4
        local n, row = math.min(KS, m), {}
        for k = 0, n - 1 do row[k + 1] = k * m // n end
        for k = 0, KS - 1 do selv[t * KS + k + 1] = row[k + 1] or -1 end
      end
    end
    local sel = ts.tensor("i32", {T, cols}, selv or (function()
      local none = {}
      for i = 1, T do none[i] = -1 end
      return none
    end)(), d)
    local idx = ts.tensor("i32", {T, K}, nil, d)
    ts.kernel("kernels/sparse_attn.tile", "sparse_index", {W = W}, d):launch{
      ts.tensor("i32", {T}, pos, d), sel, ts.tensor("i32", {T}, ebase, d), idx, r0}
    check_same(idx:to_table(), want(pos, r0, ebase, W, K, KS, selv),
               string.format("%s prompts %s P %d W %d K %d KS %d", dev,
                             table.concat(case.lens, ","), P, W, K, KS))
  end
end

-- ring_index (a decode step's list, model/attention.lua attend_step): for
-- the token at position t, the ring slots p mod W of positions max(0, t - W
-- + 1) .. t in order, then W + k for the valid selected entries k, then -1
local function want_ring(pos, W, K, KS, selv)
  return want_rows(pos, W, K, KS, selv, function(p) return p % W end,
                   function(_, k) return W + k end)
end

for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  -- positions below, at and past the window, past it by more than a lap
  local pos = {0, 5, 7, 8, 13, 37}
  for _, case in ipairs{{W = 8, KS = 3}, {W = 8, KS = 0}, {W = 4, KS = 3, K = 5}} do
    local W, KS, B = case.W, case.KS, #pos
    local K = case.K or W + KS
    local selv
    if KS > 0 then
      selv = {}
      for b = 1, B do
        local n = math.min(KS, (pos[b] + 1) // 4) -- valid first, -1 pads
        for k = 0, KS - 1 do selv[(b - 1) * KS + k + 1] = k < n and 3 * k + b or -1 end
      end
    end
    local none = {}
    for b = 1, B do none[b] = -1 end
    local sel = ts.tensor("i32", {B, math.max(KS, 1)}, selv or none, d)
    local idx = ts.tensor("i32", {B, K}, nil, d)
    ts.kernel("kernels/sparse_attn.tile", "ring_index", {W = W}, d)
      :launch{ts.tensor("i32", {B}, pos, d), sel, idx}
    check_same(idx:to_table(), want_ring(pos, W, K, KS, selv),
               string.format("%s ring_index W %d K %d KS %d", dev, W, K, KS))
  end
end
-- pool_lists (a batch's lists over the state pools, model/attention.lua
-- attend_batch): token b's ring_index list with the window's slots as rows
-- rbase[b] + slot of the rings' pool and the selected entries as rr + k
-- (with SEL; none without), and its selection as rows cbase[b] + e of the
-- entries' pool (-1 kept)
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  local pos, rbase, cbase = {0, 5, 13, 37}, {16, 0, 40, 8}, {300, 0, 100, 200}
  local W, KS, rr, B = 8, 3, 48, 4
  local selv = {}
  for b = 1, B do
    local n = math.min(KS, (pos[b] + 1) // 4)
    for k = 0, KS - 1 do selv[(b - 1) * KS + k + 1] = k < n and 3 * k + b or -1 end
  end
  for _, with_sel in ipairs{true, false} do
    local K = with_sel and W + KS or W
    local idx, selg = ts.tensor("i32", {B, K}, nil, d), ts.tensor("i32", {B, KS}, nil, d)
    ts.kernel("kernels/sparse_attn.tile", "pool_lists", {W = W, SEL = with_sel}, d):launch{
      ts.tensor("i32", {B}, pos, d), ts.tensor("i32", {B}, rbase, d),
      ts.tensor("i32", {B, KS}, selv, d), ts.tensor("i32", {B}, cbase, d), idx, selg, rr}
    local want_idx, want_sel = {}, {}
    for b = 1, B do
      local row = want_rows({pos[b]}, W, K, KS, with_sel and table.move(selv, (b - 1) * KS + 1,
                            b * KS, 1, {}) or nil, function(p) return rbase[b] + p % W end,
                            function(_, k) return rr + k end)
      table.move(row, 1, K, (b - 1) * K + 1, want_idx)
      for k = 1, KS do
        local e = selv[(b - 1) * KS + k]
        want_sel[(b - 1) * KS + k] = e >= 0 and cbase[b] + e or -1
      end
    end
    check_same(idx:to_table(), want_idx, string.format("%s pool_lists SEL %s: the lists", dev,
                                                       with_sel))
    check_same(selg:to_table(), want_sel, string.format("%s pool_lists SEL %s: the selections",
                                                        dev, with_sel))
  end
end
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
