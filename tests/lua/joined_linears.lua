-- joined_linears.lua - a decode step's linears over one input as one linear
-- over their weights joined (model/ops.lua O.join_rows, model/v4.lua
-- M:joined_lweight, model/attention.lua M:linear_set): wq_a and wkv over
-- x (and a CSA layer's indexer weights_proj where it has their form),
-- wq_b and the indexer's wq_b over the query LoRA rows.
--   - O.join_rows: a one-row linear over the joined weight equals each
--     piece's linear bit for bit (bf16, f32 and FP8 pieces, K no multiple
--     of 128, a last FP8 piece no multiple of 128 rows), its parts are
--     views of the joined weight (a write to it shows in them), and it
--     refuses what cannot join (forms, K, dtypes, a piece of rows no
--     multiple of 128 before another: a GPU's GEMV would sum its columns
--     by other places in their tiles);
--   - the model: prefill and decode steps with join on (the default) equal
--     join = false bit for bit (logits, f32 and FP8 linears, both KV
--     formats, on the CPU; FP8 linears on the GPU simulator), a batch of
--     two sequences (which runs the linears apart) too; a decode step
--     launches exactly the linears (and FP8 act_quants) fewer that the
--     config's layers give; on the simulator with FP8 linears the query
--     LoRA row's RMSNorm is made by its wq_b linear (linear_fp8_act NORM),
--     in a CSA layer when joined only: a rmsnorm_f32 launch fewer a CSA
--     layer, with the same bits; the weights are held once (lweight's are
--     views of the joined).
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check = C.check

local function same(a, b)
  local n, total = C.differ({a:to_table()}, {b:to_table()})
  return n == 0 and total > 0, n, total
end

-- O.join_rows over pieces of `rows` rows, K columns
for _, dev in ipairs{"cpu", "gpusim"} do
  O.use(ts.device(dev), true)
  local K = 200
  local x = O.tensor("f32", {1, K}, C.spread(K, 3, 2.0))
  for _, form in ipairs{"f32", "bf16", "fp8"} do
    local rows = form == "fp8" and {256, 128, 37} or {128, 128, 19}
    local ws = {}
    for i, n in ipairs(rows) do
      local w = O.tensor("f32", {n, K}, C.spread(n * K, 10 + i, 0.5))
      ws[i] = form == "fp8" and O.fp8_weight(w, 1) or form == "bf16" and w:cast("bf16") or w
    end
    local w, parts = O.join_rows(ws)
    local what = string.format("%s %s pieces of %s rows", dev, form, table.concat(rows, ", "))
    check(w and w:shape(1) == rows[1] + rows[2] + rows[3] and w:shape(2) == K, what .. ": joined")
    local y, at = O.linear(x, w), 0
    for i, n in ipairs(rows) do
      local want = O.linear(x, ws[i])
      local ok, nd, total = same(O.row_cols(y, at, n), want)
      check(ok, string.format("%s: piece %d's columns == its linear (%d of %d differ)", what, i,
                              nd, total))
      ok, nd, total = same(O.linear(x, parts[i]), want)
      check(ok, string.format("%s: part %d's linear == the piece's (%d of %d differ)", what, i,
                              nd, total))
      at = at + n
    end
    -- the parts are views: zero the joined weight's last piece (its codes,
    -- or its rows) and that part's linear gives zeros
    local last = rows[#rows]
    local whole = form == "fp8" and w.q:reshape{w.n, K} or w
    whole:slice(0, at - last, last):assign(O.tensor(whole:dtype(), {last, K}))
    local z = O.linear(x, parts[#parts]):to_table()
    local zeros = #z == last
    for _, v in ipairs(z) do zeros = zeros and v == 0 end
    check(zeros, what .. ": the last part is a view of the joined weight")
  end
  -- refusals
  local function f32w(n, k) return O.tensor("f32", {n, k}, C.spread(n * k, 5, 1.0)) end
  check(O.join_rows{f32w(8, 200), f32w(8, 160)} == nil, dev .. ": K apart refused")
  check(O.join_rows{f32w(8, 200), f32w(8, 200):cast("bf16")} == nil, dev .. ": dtypes refused")
  check(O.join_rows{O.fp8_weight(f32w(128, 200), 1), f32w(8, 200)} == nil,
        dev .. ": FP8 and not refused")
  check(O.join_rows{O.fp8_weight(f32w(100, 200), 1), O.fp8_weight(f32w(128, 200), 1)} == nil,
        dev .. ": an FP8 piece of 100 rows before another refused")
  check(O.join_rows{O.fp8_weight(f32w(128, 200), 1), O.fp8_weight(f32w(100, 200), 1)},
        dev .. ": an FP8 piece of 100 rows last joins")
  check(O.join_rows{f32w(19, 200), f32w(128, 200)} == nil,
        dev .. ": a piece of 19 rows before another refused")
end

local dir = C.golden()
if not dir then return C.finish() end
local V4 = require "model.v4"
local take = C.launch_counter()

-- the GEMM launches of one input's linears (the FP8 ones' act_quant too)
local function gemms(seen)
  local n = 0
  for name, k in pairs(seen) do
    if name:find("^linear") or name == "act_quant" then n = n + k end
  end
  return n
end

-- (the simulator: the released formats' FP8 linears alone, the slow part)
for _, dev in ipairs{"cpu", "gpusim"} do
  for _, case in ipairs(dev == "cpu" and {{"f32", "fp8"}, {"fp8", "f32"}} or {{"fp8", "fp8"}}) do
    local lin, F = case[1], case[2]
    local what = string.format("%s linears %s kv %s", dev, lin, F)
    local ids = {}
    for i = 1, 14 do ids[i] = (i * 29) % 512 end
    local runs = {}
    for _, join in ipairs{false, true} do
      local m = V4.load(dir, nil, {device = dev, kv_format = F, linears = lin, join = join})
      local out = C.logits(m, ids, 9, 2)
      take()
      out[#out + 1] = m:decode(ids[12]):to_table()
      local seen = take()
      -- two sequences at once: their linears run apart
      local a, b = m:sequence(), m:sequence()
      a:prefill(ts.tensor("i32", {5}, {3, 1, 4, 1, 5}))
      b:prefill(ts.tensor("i32", {7}, {2, 7, 1, 8, 2, 8, 1}))
      for s = 1, 2 do
        local lb = m:decode_batch({a, b}, {ids[s], ids[s + 3]})
        out[#out + 1] = lb:to_table()
      end
      runs[join] = {m = m, out = out, gemms = gemms(seen), norms = seen.rmsnorm_f32 or 0}
    end
    local nd, total = C.differ(runs[true].out, runs[false].out)
    check(nd == 0 and total > 0, string.format("%s: joined == apart (%d of %d logits differ)",
                                               what, nd, total))
    -- the launches a step saves: per layer wq_a + wkv (one linear fewer),
    -- wq_b + the indexer's wq_b in a CSA layer (one more), and its
    -- weights_proj where it joins the others' form (f32 linears); FP8
    -- ones on the CPU quantise x once for both (act_quant), a GPU's
    -- quantise as they load (linear_fp8_act)
    local cfg, csa = runs[true].m.cfg, 0
    for L = 1, cfg.n_layers do
      if cfg.compress_ratios[L] == 4 then csa = csa + 1 end
    end
    local want = lin == "f32" and cfg.n_layers + 2 * csa or
      (cfg.n_layers + csa) * (dev == "cpu" and 2 or 1)
    local got = runs[false].gemms - runs[true].gemms
    check(got == want, string.format("%s: a step launches %d GEMMs fewer (%d -> %d), want %d",
                                     what, got, runs[false].gemms, runs[true].gemms, want))
    -- the query LoRA row's norm made by its one wq_b linear (FP8 on a
    -- GPU: linear_fp8_act with NORM), a window or HCA layer's either way, a
    -- CSA layer's where its wq_b and the indexer's are joined
    local fewer = runs[false].norms - runs[true].norms
    want = (lin == "fp8" and dev ~= "cpu") and csa or 0
    check(fewer == want, string.format("%s: a step launches %d rmsnorm_f32 fewer (%d -> %d), " ..
                                       "want %d", what, fewer, runs[false].norms, runs[true].norms,
                                       want))
    -- held once: lweight's weights are views of the joined one (a write
    -- to the joined wq_a + wkv shows in wkv's)
    local m = runs[true].m
    local p = m:prefix(0) .. "attn."
    local j = m:joined_lweight(m.names(p).x)
    local wkv = m:lweight(p .. "wkv.weight")
    local whole = O.is_fp8(j) and j.q:reshape{j.n, j.k} or j
    whole:slice(0, whole:shape(1) - 1, 1):assign(O.tensor(whole:dtype(), {1, whole:shape(2)}))
    O.use(m.dev, m.tf32)
    local last = O.linear(O.tensor("f32", {1, cfg.dim}, C.spread(cfg.dim, 8, 1.0)), wkv)
      :to_table()
    check(last[#last] == 0 and last[1] ~= 0, what .. ": wkv's weight is a view of the joined one")
  end
end

C.finish()
