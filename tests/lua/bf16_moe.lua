-- bf16_moe.lua - a prefill's bf16 experts on tensor cores (model/moe.lua
-- M:bf16_moe: moe_up_tc + moe_down_tc with bf16 activations and hidden
-- rows, the routed experts and the shared one): taken by default on a
-- GPU with bf16 tensor cores (the simulator's sm_90a), not with tf32 =
-- false or moe = "f32"; moe = "bf16" asks for them on the CPU too; never
-- for fewer than 8 tokens (a decode step's), nor for FP8 / FP4 experts.
-- Each layer's MoE stays within bf16's rounding of the f32 form's, and
-- the CPU's and the simulator's runs agree. Uses the golden tiny model
-- (skips without ../shared/golden).
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local take = C.launch_counter()
local V4 = require "model.v4"
local f32 = V4.load(dir, nil, {kv_format = "f32"})
local b16 = V4.load(dir, nil, {kv_format = "f32", moe = "bf16"})
local L, d = f32.cfg.n_layers, f32.cfg.dim

-- x [T, d] of seeded values in [-0.5, 0.5)
local function rows(T, seed)
  local rnd, v = C.lcg(seed), {}
  for i = 1, T * d do v[i] = rnd() - 0.5 end
  return ts.tensor("f32", {T, d}, v)
end

-- every layer's MoE of T tokens: bf16 on tensor cores against f32
for _, T in ipairs{7, 8, 40} do
  local x, tok = rows(T, T), C.ids(ids, 1, T)
  local worst, best, seen = 0, math.huge, {}
  for l = 0, L - 1 do
    O.use(f32.dev, f32.tf32)
    local want = f32:moe(l, x, tok):to_table()
    take()
    local got = b16:moe(l, x, tok):to_table()
    for k, n in pairs(take()) do seen[k] = (seen[k] or 0) + n end
    local e = relerr(got, want)
    worst, best = math.max(worst, e), math.min(best, e)
  end
  local up, down = seen.moe_up_tc or 0, seen.moe_down_tc or 0
  print(string.format("%d tokens: each layer's MoE, bf16 on tensor cores vs f32: %.3e .. %.3e; " ..
                      "moe_up_tc %d, moe_down_tc %d", T, best, worst, up, down))
  if T < 8 then
    check(worst == 0 and up == 0, T .. " tokens: the f32 forms (a decode step's few rows)")
  else
    -- (the routed experts and the shared one, each layer; bf16's 8 bits
    -- of mantissa in x and the hidden rows: 2.6e-3 measured)
    check(best > 0 and worst < 1e-2 and up == 2 * L and down == 2 * L and
          (seen.moe_up or 0) == 0, T .. " tokens: the tensor-core forms, within bf16's rounding")
  end
end

-- the whole model: a prefill of 40 tokens, then decode steps (f32 forms)
take()
local lb = b16:prefill(C.ids(ids, 1, 40)):to_table()
local pre = take()
local lf = f32:prefill(C.ids(ids, 1, 40)):to_table()
local e = relerr(lb, lf)
b16:decode(ids[41])
local dec = take()
print(string.format("prefill 40, moe = \"bf16\" vs f32: logits %.3e", e))
check(e > 0 and e < 5e-2 and (pre.moe_up_tc or 0) == 2 * L and dec.moe_up_tc == nil,
      "the model's prefill with the bf16 MoE: close to f32; its decode step in f32")

-- FP8 and FP4 experts keep their own forms
for _, fmt in ipairs{"fp8", "fp4"} do
  local m = V4.load(dir, nil, {kv_format = "f32", moe = "bf16", experts = fmt})
  take()
  m:prefill(C.ids(ids, 1, 9))
  check(take().moe_up_tc == nil, fmt .. " experts: not the bf16 tensor-core form")
end

-- the simulator (sm_90a): by default (TF32 on) the prefill takes them, not
-- with tf32 = false or moe = "f32"; its bf16 run agrees with the CPU's
local function sim(opts)
  opts.device, opts.kv_format = "gpusim", "f32"
  local m = V4.load(dir, nil, opts)
  take()
  local l = m:prefill(C.ids(ids, 1, 9)):to_table()
  return l, take().moe_up_tc or 0
end
local arch = ts.device("gpusim"):arch()
local _, by_default = sim{}
local _, no_tf32 = sim{tf32 = false}
local _, off = sim{moe = "f32"}
local ls, on = sim{moe = "bf16", tf32 = false}
local lc = b16:prefill(C.ids(ids, 1, 9)):to_table()
local es = relerr(ls, lc)
print(string.format("gpusim (%s): moe_up_tc by default %d, tf32 = false %d, moe = \"f32\" %d; " ..
                    "bf16 MoE vs the CPU's: %.3e", arch, by_default, no_tf32, off, es))
check(by_default == 2 * L and no_tf32 == 0 and off == 0 and on == 2 * L,
      "gpusim: the tensor-core MoE by default, not with tf32 = false or moe = \"f32\"")
-- (the sums' order differs, and so may a hidden row's bf16 rounding: 1e-2,
-- as bf16_attention.lua's)
check(es < 1e-2, "gpusim: the bf16 MoE gives the CPU's logits")

-- a bad option is refused
local ok, err = pcall(V4.load, dir, nil, {moe = "fp8"})
check(not ok and tostring(err):find("moe 'fp8': 'bf16' or 'f32'", 1, true) ~= nil,
      "moe = \"fp8\" is refused: " .. tostring(err))
C.finish()
