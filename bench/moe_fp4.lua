-- moe_fp4.lua - the routed experts of one MoE layer at V4-Flash width (d
-- 4096, expert width 2048, top-6) on the CPU, with the weights as the
-- released checkpoints hold them: FP4 (the instruct checkpoints: e2m1
-- codes, a ue8m0 scale per 1 x 32 block; moe.tile moe_up_fp4 +
-- moe_down_fp4) and FP8 (the Base ones: a scale per 128 x 128 block;
-- moe_up_fp8 + moe_down_fp8), the activations quantised per 1 x 128 block
-- before each as model/moe.lua runs them, against bf16 (moe_up + moe_down,
-- the model's form otherwise, over the same tile table; and moe_grouped,
-- the form that copies a whole expert into a block's frags), for a decode
-- step (1 token), a batch's step (4) and a 64-token prefill, among 16
-- experts with random weights by default (the tiles depend on how many
-- slots an expert has: V4's 256 experts leave a batch's few tokens one
-- slot an expert or none, as --experts 64 nearly does); runs alternate,
-- best and worst of five printed, and how far the FP4 and FP8 outputs are
-- from the bf16 ones (the quantisation's error on random weights, not a
-- kernel's: tests/lua/fp4_experts.lua checks those). The up and down GEMMs
-- take the tiles the model takes on the CPU (model/ops.lua: O.routed_rows'
-- rows, about an expert's share of the slots; O.experts_bn's columns, 8
-- for one-row tiles and FP8's) unless --bm / --bn set them for every form.
-- Run from the source root:
--   build/tessera run bench/moe_fp4.lua [--experts 16] [--runs 5]
--     [--dim 4096] [--width 2048] [--tokens 1,4,64] [--bm N] [--bn N]
local ts = require "tessera"
local O = require "model.ops"

local opts = {experts = "16", runs = "5", dim = "4096", width = "2048", tokens = "1,4,64",
              bm = "0", bn = "0"}
local i = 1
while i <= #arg do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil or arg[i + 1] == nil then
    error("usage: moe_fp4.lua [--experts N] [--runs N] [--dim N] [--width N] [--tokens T,...] " ..
          "[--bm N] [--bn N]", 0)
  end
  opts[k] = arg[i + 1]
  i = i + 2
end
local E, runs = math.tointeger(tonumber(opts.experts)), math.tointeger(tonumber(opts.runs))
local K, DM, I = 6, math.tointeger(tonumber(opts.dim)), math.tointeger(tonumber(opts.width))
local BM0, BN = math.tointeger(tonumber(opts.bm)), math.tointeger(tonumber(opts.bn))
local tokens = {}
for t in opts.tokens:gmatch("[^,]+") do tokens[#tokens + 1] = math.tointeger(tonumber(t)) or 0 end
if not E or E < K or not runs or runs < 1 or not DM or DM % 128 ~= 0 or not I or I % 128 ~= 0 or
   not BM0 or BM0 < 0 or not BN or BN < 0 or BN > 0 and 128 % BN ~= 0 then
  error("--experts >= 6, --runs >= 1, --dim and --width multiples of 128, --bn dividing 128", 0)
end
for _, T in ipairs(tokens) do
  if T < 1 then error("--tokens: whole numbers of 1 or more", 0) end
end
-- the GEMMs' params for tiles of BM rows in format fmt
local function gemm_params(BM, fmt)
  return {BM = BM, BN = BN > 0 and BN or O.experts_bn(BM, fmt)}
end
local dev = ts.device("cpu")
local function kern(file, name, params) return ts.kernel("kernels/" .. file, name, params or {}, dev) end

local rand, seed = ts.kernel("bench/gpu.tile", "rand_f32", {}, dev), 0
local function random(shape, scale)
  local t, n = ts.tensor("f32", shape, nil, dev), 1
  for _, s in ipairs(shape) do n = n * s end
  seed = seed + 1
  rand:launch{t:reshape{n}, seed, scale}
  return t
end

-- the three matrices in the three formats
local bf, fp4, fp8 = {}, {}, {}
for m, shape in ipairs{{E, I, DM}, {E, DM, I}, {E, I, DM}} do
  local w = random(shape, shape[3] ^ -0.5)
  bf[m] = w:cast("bf16")
  local q = ts.tensor("i8", {shape[1], shape[2], shape[3] // 2}, nil, dev)
  local s = ts.tensor("f32", {shape[1], shape[2], shape[3] // 32}, nil, dev)
  kern("quant.tile", "fp4_block_quant"):launch{w, q, s}
  fp4[2 * m - 1], fp4[2 * m] = q, s
  local q8 = ts.tensor("fp8e4m3", shape, nil, dev)
  local s8 = ts.tensor("f32", {shape[1], shape[2] // 128, shape[3] // 128}, nil, dev)
  kern("quant.tile", "fp8_block_quant"):launch{w, q8, s8}
  fp8[2 * m - 1], fp8[2 * m] = q8, s8
end

local results = {}
for _, T in ipairs(tokens) do
  local BM, TK = BM0 > 0 and BM0 or O.routed_rows(T, K, E), T * K
  -- each token's K distinct experts
  local ev, wv, r = {}, {}, 7
  for t = 0, T - 1 do
    local pick = {}
    for k = 0, K - 1 do
      local e
      repeat
        r = (r * 1103515245 + 12345) % 2147483648
        e = r % E
      until not pick[e]
      pick[e] = true
      ev[t * K + k + 1], wv[t * K + k + 1] = e, 1.0 / K
    end
  end
  local experts = ts.tensor("i32", {T, K}, ev)
  local weights = ts.tensor("f32", {T, K}, wv)
  local counts, offsets = ts.tensor("i32", {E}), ts.tensor("i32", {E})
  local cursor, sorted = ts.tensor("i32", {E}), ts.tensor("i32", {TK})
  local tiles = ts.tensor("i32", {(TK + BM - 1) // BM + E, 3})
  kern("moe.tile", "moe_count"):launch{experts, counts}
  kern("moe.tile", "moe_offsets", {BM = BM}):launch{counts, offsets, tiles}
  kern("moe.tile", "moe_scatter"):launch{experts, offsets, cursor, sorted}
  local x = random({T, DM}, 1.0)
  local out = ts.tensor("f32", {TK, DM})
  local grouped = kern("moe.tile", "moe_grouped", {BM = BM})
  local act = kern("quant.tile", "act_quant")
  local DB, IB = DM // 128, I // 128
  local xq, sx = ts.tensor("f32", {T, 1, DM}), ts.tensor("f32", {T, 1, DB})
  local h, hq, sh = ts.tensor("f32", {TK, I}), ts.tensor("f32", {TK, 1, I}), ts.tensor("f32", {TK, 1, IB})
  local hb = ts.tensor("f32", {TK, I})
  local upb = kern("moe.tile", "moe_up", gemm_params(BM, "bf16"))
  local downb = kern("moe.tile", "moe_down", gemm_params(BM, "bf16"))
  local forms = {
    whole = function()
      grouped:launch{x, sorted, offsets, tiles, weights, bf[1], bf[2], bf[3], out}
    end,
    bf16 = function()
      upb:launch{x, sorted, offsets, tiles, weights, bf[1], bf[3], hb}
      downb:launch{hb, sorted, offsets, tiles, bf[2], out, x} -- (x: the unread add)
    end,
  }
  -- a quantised form: x quantised, up, each slot's row quantised, down
  for f, w in pairs{fp4 = fp4, fp8 = fp8} do
    local upk = kern("moe.tile", "moe_up_" .. f, gemm_params(BM, f))
    local downk = kern("moe.tile", "moe_down_" .. f, gemm_params(BM, f))
    forms[f] = function()
      act:launch{x:reshape{T, 1, DM}, xq, sx}
      upk:launch{xq:reshape{T, DM}, sx:reshape{T, DB}, sorted, offsets, tiles, weights,
                 w[1], w[2], w[5], w[6], h}
      act:launch{h:reshape{TK, 1, I}, hq, sh}
      -- (moe_down_fp8's add, not read without ADD: x stands in)
      downk:launch{hq:reshape{TK, I}, sh:reshape{TK, IB}, sorted, offsets, tiles, w[3], w[4], out,
                   f == "fp8" and x or nil}
    end
  end
  local best, worst, outs = {}, {}, {}
  for _, f in ipairs{"whole", "bf16", "fp4", "fp8"} do -- warm up, and the outputs
    forms[f]()
    outs[f] = out:to_table()
  end
  local num, num8, den, same = 0, 0, 0, 0
  for j = 1, #outs.bf16 do
    same = same + (outs.whole[j] - outs.bf16[j]) ^ 2
    num, den = num + (outs.fp4[j] - outs.bf16[j]) ^ 2, den + outs.bf16[j] ^ 2
    num8 = num8 + (outs.fp8[j] - outs.bf16[j]) ^ 2
  end
  for _ = 1, runs do
    for _, f in ipairs{"whole", "bf16", "fp4", "fp8"} do
      local t0 = ts.clock()
      forms[f]()
      local dt = ts.clock() - t0
      best[f], worst[f] = math.min(best[f] or dt, dt), math.max(worst[f] or dt, dt)
    end
  end
  -- the experts the tokens chose
  local used = {}
  for _, e in ipairs(ev) do used[e] = true end
  local n = 0
  for _ in pairs(used) do n = n + 1 end
  -- (the two bf16 forms: the same sums in another order)
  if math.sqrt(same / den) > 1e-5 then
    error(string.format("moe_grouped and moe_up + moe_down differ by %.3g", math.sqrt(same / den)))
  end
  results[#results + 1] = string.format(
    "| %d | %d | %d | %.2f-%.2f | %.2f-%.2f | %.2f-%.2f | %.2f-%.2f | %.2f | %.2f | %.2f | %.3f " ..
    "| %.3f |", T, n, BM, best.whole * 1e3, worst.whole * 1e3, best.bf16 * 1e3, worst.bf16 * 1e3,
    best.fp4 * 1e3, worst.fp4 * 1e3, best.fp8 * 1e3, worst.fp8 * 1e3, best.whole / best.bf16,
    best.bf16 / best.fp4, best.bf16 / best.fp8, math.sqrt(num / den), math.sqrt(num8 / den))
end
print(string.format("MoE routed experts, d %d, width %d, top-%d, %d experts, CPU (%d runs " ..
                    "alternating; ms best-worst; tile columns %s)", DM, I, K, E, runs,
                    BN > 0 and tostring(BN) or "the model's"))
print("| tokens | experts used | tile rows | bf16 moe_grouped ms | bf16 moe_up + down ms " ..
      "| fp4 ms | fp8 ms " ..
      "| grouped / up + down (best) | bf16 / fp4 (best) | bf16 / fp8 (best) " ..
      "| fp4 vs bf16 outputs (rel.) | fp8 vs bf16 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for _, l in ipairs(results) do print(l) end
