-- bf16_attention.lua - the attention on tensor cores in bf16
-- (model/attention.lua: a prefill's through sparse_attn_tc and hca_attn_tc,
-- a decode step's through sparse_attn_split, or over "fp8" caches through
-- sparse_attn_split_kv8 and hca_attn_split_kv8): taken by
-- default on a GPU whose tensor cores take them (the simulator's sm_90a,
-- and sm_80: tests/CMakeLists.txt runs this file as both and as an sm_86,
-- which takes none), not with tf32 = false or attention = "f32";
-- attention = "bf16" asks for them on the CPU too. The logits stay within bf16's rounding of the f32
-- attention's, and the CPU's and the simulator's bf16 runs agree. Also
-- the grouped output projection's TF32 form (grouped_linear_tf32), taken
-- where the prefill's other linears take linear_tf32.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local take = C.launch_counter() -- the launches of the tensor-core forms
local V4 = require "model.v4"
-- the architecture the simulator stands for (TESSERA_GPUSIM_ARCH; checked
-- by fp8_gating.lua)
local arch = ts.device("gpusim"):arch()
local tc_gpu = arch ~= "sm_86"

local function prompt(n) return C.ids(ids, 1, n) end
local P9 = prompt(9)

-- the launches of sparse_attn_tc and hca_attn_tc in a prefill of n tokens
-- (the tiny model has window, CSA and HCA layers) and, with `decode`, of
-- sparse_attn_split in one decode step after it; the prefill's logits
local function run(d, opts, n, decode)
  opts.device, opts.kv_format = d, opts.kv_format or "f32"
  local m = V4.load(dir, nil, opts)
  take()
  local logits = m:prefill(n and prompt(n) or P9):to_table()
  local seen = take()
  local pre = {sparse = seen.sparse_attn_tc or 0, hca = seen.hca_attn_tc or 0,
               grouped = seen.grouped_linear_tf32 or 0}
  if not decode then return logits, pre end
  m:decode(ids[(n or 9) + 1])
  return logits, pre, take().sparse_attn_split or 0
end

local function none(pre) return pre.sparse == 0 and pre.hca == 0 end
local function some(pre) return pre.sparse > 0 and pre.hca > 0 end

-- ---- the conversion (embed.tile convert_rows) -------------------------------------------

-- f32 -> bf16 on the device rounds as the host's cast does (to nearest,
-- ties to even; infinities, NaN, -0, subnormals, the largest finite values)
-- and bf16 -> f32 gives the values back exactly; an empty tensor converts
do
  local v = {1.0, -0.0, 1 / 0, -1 / 0, 3.4028234663852886e38, 1.00390625, 1.01171875,
             -1.00390625, 2 ^ -130, 2 ^ -149, 65504.5, 0.1}
  for i = #v + 1, 3 * 37 do v[i] = math.sin(i * 1.7) * 10 ^ (i % 9 - 4) end
  for _, d in ipairs{"cpu", "gpusim"} do
    local dev = ts.device(d)
    O.use(dev, false)
    local x = ts.tensor("f32", {3, 37}, v, dev)
    local got, want = O.convert(x, "bf16"):to_table(), x:cast("bf16"):to_table()
    local same = true
    for i = 1, #want do
      if got[i] ~= want[i] and not (got[i] ~= got[i] and want[i] ~= want[i]) then same = false end
    end
    check(same and 1 / got[2] < 0, d .. ": convert_rows to bf16 equals the host's cast")
    local back = O.convert(O.convert(x, "bf16"), "f32"):to_table()
    check(back[6] == 1.0 and back[7] == 1.015625 and back[8] == -1.0 and back[1] == 1.0,
          d .. ": ties go to even and bf16 -> f32 is exact")
    check(O.convert(ts.tensor("f32", {0, 8}, nil, dev), "bf16"):numel() == 0,
          d .. ": an empty tensor converts")
    -- with a SCALE (the indexer's head weights): the f32 product
    local yv, ok_s = O.convert(x, "f32", 0.1):to_table(), true
    for i = 13, #v do ok_s = ok_s and yv[i] == C.f32(C.f32(v[i]) * C.f32(0.1)) end
    check(ok_s, d .. ": convert_rows with SCALE multiplies in f32")
  end
  O.use(nil, false)
end

-- ---- where they are taken ---------------------------------------------------------------

local cpu32, pre = run("cpu", {})
check(none(pre), "the CPU's default takes the f32 attention")
local sim, spre, sdec = run("gpusim", {}, 9, true)
print(string.format("%s default: prefill of 9 launched sparse_attn_tc %d, hca_attn_tc %d; " ..
                    "a decode step sparse_attn_split %d", arch, spre.sparse, spre.hca, sdec))
check(tc_gpu and some(spre) or not tc_gpu and none(spre),
      arch .. ": the prefill takes the tensor-core attention " ..
      (tc_gpu and "by default" or "never (its shared memory)"))
check(sdec == (tc_gpu and 3 or 0), "a decode step's window/CSA attention takes " ..
      (tc_gpu and "sparse_attn_split" or "the f32 kernel") .. ": " .. sdec)
-- the grouped output projection in TF32, as the prefill's other linears
-- (any GPU; not with tf32 = false, nor on the CPU, nor for 5 tokens)
check(spre.grouped == 5 and pre.grouped == 0,
      "the prefill's grouped output projections run grouped_linear_tf32: " .. spre.grouped)
-- at V4 widths: all 512 dims a block for V4-Flash's 64 heads, halves for
-- V4-Pro's 128 (the accumulator); sm_80's shared memory takes Flash's
-- width, not Pro's (the queries' tile alone is 128 KiB); sm_90a both
local function ch(H) return V4.tc_params({cfg = {n_heads = H, head_dim = 512}}).CH end
check(ch(64) == 512 and ch(128) == 256 and ch(4) == 512, "tc_params: CH by the accumulator")
O.use(ts.device("gpusim"), true)
local flash, pro = O.attn_tensor_cores(64, 512), O.attn_tensor_cores(128, 512)
O.use(nil, false)
check(flash == tc_gpu and pro == (arch == "sm_90a"),
      string.format("%s takes the tensor-core attention at V4-Flash's width: %s, V4-Pro's: %s",
                    arch, flash, pro))
local _, p5 = run("gpusim", {}, 5)
check((tc_gpu and some(p5) or not tc_gpu and none(p5)) and p5.grouped == 0,
      "a prefill of 5 tokens: the attention as for 9, the projection not in TF32 (< 8 rows)")
local _, poff = run("gpusim", {tf32 = false})
check(none(poff) and poff.grouped == 0, "tf32 = false keeps the f32 attention and projection")
local _, pf32 = run("gpusim", {attention = "f32"})
check(none(pf32), "attention = 'f32' keeps the f32 attention")
local ok, err = pcall(V4.load, dir, nil, {attention = "fp16"})
check(not ok and tostring(err):find("attention 'fp16': 'bf16' or 'f32'", 1, true),
      "a bad attention option is refused: " .. tostring(err))

-- ---- what they give ----------------------------------------------------------------------

-- the same kernels on the CPU when asked for (the CPU's checks once, in the
-- simulator's default run of this file)
local cpu16, cpre = run("cpu", {attention = "bf16"})
check(some(cpre), "attention = 'bf16' takes them on the CPU")
if arch == "sm_90a" then
  local e = relerr(cpu16, cpu32)
  print(string.format("CPU, f32 caches: bf16 attention vs f32 logits %.3e", e))
  check(e > 0 and e < 2e-2, "bf16 attention's logits within 2e-2 of the f32 attention's")
  local fp8_16 = run("cpu", {attention = "bf16", kv_format = "fp8"})
  local fp8_32 = run("cpu", {kv_format = "fp8"})
  local e8 = relerr(fp8_16, fp8_32)
  print(string.format("CPU, fp8 caches: bf16 attention vs f32 logits %.3e", e8))
  check(e8 > 0 and e8 < 2e-2, "fp8 caches: bf16 attention's logits within 2e-2")
  -- decode steps (sparse_attn_split + merge) continue a prefill
  -- (sparse_attn_tc) as a longer prefill would: the same rounding points
  -- but the ranges' rescaling order
  local function steps(att, kf)
    local m = V4.load(dir, nil, {kv_format = kf or "f32", attention = att})
    m:prefill(P9)
    m:decode(ids[10])
    take()
    return m:decode(ids[11]):to_table(), take(), m.cfg
  end
  local d16, d32 = steps("bf16"), steps("f32")
  local long = run("cpu", {attention = "bf16"}, 11)
  local el, ed32 = relerr(d16, long), relerr(d16, d32)
  print(string.format("CPU, bf16 attention: prefill 9 + decode 2 vs prefill 11 %.3e; " ..
                      "vs f32 attention %.3e", el, ed32))
  check(el < 1e-2, "bf16 decode steps continue the bf16 prefill")
  check(ed32 > 0 and ed32 < 2e-2, "bf16 decode within 2e-2 of the f32 decode")
  -- from "fp8" caches a step reads their bytes where they lie
  -- (sparse_attn_split_kv8 in the window layers, sparse_attn_split_kv8_ring
  -- in the CSA layers, hca_attn_split_kv8 in the HCA layers: no unpacking,
  -- no kv_list copy)
  local d8, seen, cfg = steps("bf16", "fp8")
  local win, csa, hca = 0, 0, 0 -- the layers of each kind
  for L = 1, cfg.n_layers do
    local r = cfg.compress_ratios[L]
    if r == 4 then csa = csa + 1 elseif r == 128 then hca = hca + 1 else win = win + 1 end
  end
  local long8 = run("cpu", {attention = "bf16", kv_format = "fp8"}, 11)
  local e8l = relerr(d8, long8)
  print(string.format("CPU, bf16 attention, fp8 caches: prefill 9 + decode 2 vs prefill 11 %.3e",
                      e8l))
  check(e8l < 1e-2, "fp8 caches: the bf16 decode steps continue the prefill")
  check(hca > 0 and csa > 0 and seen.sparse_attn_split_kv8 == win and
        seen.sparse_attn_split_kv8_ring == csa and not seen.kv_list and
        seen.hca_attn_split_kv8 == hca and not seen.sparse_attn_split and
        not seen.hca_attn_split_f32 and not seen.kv_unpack and not seen.kv_unpack_rows and
        seen.sparse_attn_merge == win + csa + hca,
        string.format("fp8 caches: a step's attention reads the bytes (kv8 %s, ring %s, " ..
                      "kv_list %s, HCA kv8 %s, split %s, HCA f32 %s, kv_unpack %s, merges %s " ..
                      "for %d window, %d CSA, %d HCA layers)", seen.sparse_attn_split_kv8,
                      seen.sparse_attn_split_kv8_ring, seen.kv_list, seen.hca_attn_split_kv8,
                      seen.sparse_attn_split, seen.hca_attn_split_f32, seen.kv_unpack,
                      seen.sparse_attn_merge, win, csa, hca))
  -- the exact model's (f32) attention over "fp8" caches reads their bytes
  -- too (sparse_attn_f32_kv8, hca_attn_split_f32 with KV8: no unpacking)
  local _, s32 = steps("f32", "fp8")
  check(s32.sparse_attn_f32_kv8 == win + csa and s32.hca_attn_split_f32 == hca and
        not s32.sparse_attn_f32 and not s32.kv_unpack and not s32.kv_unpack_rows,
        string.format("fp8 caches, f32 attention: kv8 %s, HCA %s, f32 list %s, kv_unpack %s, " ..
                      "kv_unpack_rows %s for %d window, %d CSA, %d HCA layers",
                      s32.sparse_attn_f32_kv8, s32.hca_attn_split_f32, s32.sparse_attn_f32,
                      s32.kv_unpack, s32.kv_unpack_rows, win, csa, hca))
  -- and each layer's new KV row goes into its ring normed, roped and
  -- packed by one launch (no kv_pack: the step completes no entry)
  -- the window-only index list (every layer's: the CSA layers read their
  -- selection as top-k gives it) made once a step
  check(seen.ring_index == 1,
        string.format("ring_index %s in a step of %d window, %d CSA, %d HCA layers",
                      seen.ring_index, win, csa, hca))
  check(seen.kv_norm_rope_pack == cfg.n_layers and seen.head_norm_rope == cfg.n_layers and
        not seen.kv_pack,
        string.format("fp8 caches: kv_norm_rope_pack %s, head_norm_rope %s (the queries), " ..
                      "kv_pack %s in a step of %d layers", seen.kv_norm_rope_pack,
                      seen.head_norm_rope, seen.kv_pack, cfg.n_layers))
end

-- the simulator's (tf32 = false: only the attention rounds) against the
-- CPU's: the kernels agree bit for bit on the same inputs
-- (tests/numerics), but the inputs' last-bit differences flip a few bf16
-- roundings, which the later layers carry on (~2e-3 measured)
local sim16 = run("gpusim", {attention = "bf16", tf32 = false})
local es = relerr(sim16, cpu16)
print(string.format("%s vs CPU, both bf16 attention: logits %.3e", arch, es))
check(es < 1e-2, "the simulator's bf16 attention gives the CPU's")
-- and the GPU's default (TF32 linears too) stays near the f32 CPU
local ed = relerr(sim, cpu32)
print(string.format("%s default (TF32%s) vs CPU f32: logits %.3e", arch,
                    tc_gpu and ", bf16 attention" or "", ed))
check(ed < 2e-2, "the GPU's default within 2e-2 of the CPU's f32 logits")
C.finish()
