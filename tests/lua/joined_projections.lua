-- joined_projections.lua - the compressors' two projections (wkv, wgate) as
-- one linear over their weights joined (model/compressor.lua M:project):
-- the joined output equals the two linears' side by side bit for bit (the
-- fallback, two linears + embed.tile concat_cols, run by forcing it), with
-- f32 and FP8 linears, prefill rows and a decode step's one row, on the
-- CPU and the GPU simulator; compress_pool JOINED over the joined rows
-- equals compress_pool over c and z apart (CSA's overlapping windows and
-- HCA's), and refuses widths that do not match; the separate projection
-- weights are never held once the joined ones are. (That the model's
-- logits did not move: prefill_decode.lua, and the golden check.)
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check = C.check
local dir = C.golden()
if not dir then return end
local V4 = require "model.v4"

local function same(a, b)
  local n, total = C.differ({a:to_table()}, {b:to_table()})
  return n == 0 and total > 0, n, total
end

-- the kernels: concat_cols and compress_pool JOINED
for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  local function kern(file, name, p) return ts.kernel("kernels/" .. file, name, p or {}, d) end
  for _, case in ipairs{{true, 4, 2 * 24, 37}, {false, 128, 40, 300}, {true, 4, 2 * 8, 9}} do
    local overlap, M, KE, T = table.unpack(case)
    local what = string.format("%s compress_pool OVERLAP %s KE %d T %d", dev, overlap, KE, T)
    local E = overlap and KE // 2 or KE
    local c = ts.tensor("f32", {T, KE}, C.spread(T * KE, 3 + T, 2.0), d)
    local z = ts.tensor("f32", {T, KE}, C.spread(T * KE, 5 + T, 3.0), d)
    local ape = ts.tensor("f32", {M, KE}, C.spread(M * KE, 7, 1.0), d)
    local cz = ts.empty("f32", {T, 2 * KE}, d)
    kern("embed.tile", "concat_cols"):launch{c, z, cz}
    local cv, zv, czv = c:to_table(), z:to_table(), cz:to_table()
    local exact = true
    for t = 0, T - 1 do
      for j = 1, KE do
        exact = exact and czv[t * 2 * KE + j] == cv[t * KE + j]
          and czv[t * 2 * KE + KE + j] == zv[t * KE + j]
      end
    end
    check(exact, what .. ": concat_cols puts c then z in each row")
    local N = T // M
    local apart, joined = ts.empty("f32", {N, E}, d), ts.empty("f32", {N, E}, d)
    kern("compressor.tile", "compress_pool", {OVERLAP = overlap}):launch{c, z, ape, apart}
    kern("compressor.tile", "compress_pool", {OVERLAP = overlap, JOINED = true})
      :launch{cz, cz, ape, joined}
    local ok, n, total = same(joined, apart)
    check(ok, string.format("%s: JOINED == c, z apart (%d of %d differ)", what, n, total))
  end
  local ok, msg = pcall(function()
    kern("compressor.tile", "compress_pool", {JOINED = true}):launch{
      ts.empty("f32", {8, 16}, d), ts.empty("f32", {8, 16}, d), ts.empty("f32", {128, 16}, d),
      ts.empty("f32", {2, 16}, d)}
  end)
  check(not ok and tostring(msg):find("2 KE JOINED", 1, true),
        dev .. ": JOINED over rows KE wide refused: " .. tostring(msg))
  ok, msg = pcall(function()
    kern("embed.tile", "concat_cols"):launch{ts.empty("f32", {2, 3}, d),
      ts.empty("f32", {2, 4}, d), ts.empty("f32", {2, 8}, d)}
  end)
  check(not ok and tostring(msg):find("as wide as a and b", 1, true),
        dev .. ": concat_cols into the wrong width refused: " .. tostring(msg))
end

-- the model's projections: joined == the fallback's two linears
for _, dev in ipairs{"cpu", "gpusim"} do
  for _, linears in ipairs{"f32", "fp8"} do
    local m = V4.load(dir, nil, {device = dev, kv_format = "fp8", linears = linears})
    O.use(m.dev, m.tf32)
    local cfg = m.cfg
    for L = 0, cfg.n_layers - 1 do
      local ratio = cfg.compress_ratios[L + 1]
      local whiches = ratio == 4 and {"compressor", "indexer.compressor"}
        or ratio > 0 and {"compressor"} or {}
      for _, which in ipairs(whiches) do
        for _, T in ipairs{1, 11} do
          local what = string.format("%s linears %s layer %d %s T %d", dev, linears, L, which, T)
          local x = O.tensor("f32", {T, cfg.dim}, C.spread(T * cfg.dim, 9 + L + T, 1.0))
          local key = m:prefix(L) .. "attn." .. which .. "."
          local joined = m:project(L, which, x)
          local kept = m:records("joined_compressors") -- (M:project's, by prefix)
          check(kept and kept[key], what .. ": the weights joined")
          local held = kept[key]
          kept[key] = false -- the fallback: two linears, concat_cols
          local apart = m:project(L, which, x)
          kept[key] = held
          local ok, n, total = same(joined, apart)
          check(ok, string.format("%s: joined == apart (%d of %d differ)", what, n, total))
        end
      end
    end
    -- a fresh model's prefill and decode steps hold only the joined weights
    -- (on the CPU: the simulator runs the same Lua)
    if dev == "cpu" then
      m = V4.load(dir, nil, {device = dev, kv_format = "fp8", linears = linears})
      local ids = {}
      for i = 1, 12 do ids[i] = (i * 37) % cfg.vocab_size end
      C.logits(m, ids, 9, 3)
      local separate, joined = {}, 0
      for k, v in pairs(m.w) do
        if k:find("compressor.wkv", 1, true) or k:find("compressor.wgate", 1, true) then
          separate[#separate + 1] = k
        end
      end
      for _, v in pairs(m:records("joined_compressors")) do
        if v then joined = joined + 1 end
      end
      check(#separate == 0 and joined == 6, string.format(
        "%s linears %s: %d joined weights held, separate ones: %s", dev, linears, joined,
        table.concat(separate, ", ")))
    end
  end
end

C.finish()
