-- model_device.lua - the V4 model on a device other than the CPU: prefill
-- and decode on the GPU simulator give the CPU's logits (the kernels in
-- their GPU form; 1e-3 relative, reduction orders differ), with both cache
-- formats' tensors on that device. With the argument "cuda" (ctest runs it
-- against tests/cuda_mock's stand-in driver, which checks that every
-- pointer a launch passes is live device memory but runs nothing) it
-- checks that the whole model keeps its tensors on the GPU. Also the FP8
-- linears (gemm_fp8 for the prefill), the FP4 experts, a batch of two
-- sequences (prefill_batch, then decode_batch) and a prompt continued by
-- extend on the simulator; speculative decoding's steps on both.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end

local N = 9 -- 9 tokens: two CSA entries, indexer keys, the decode step completes none
local prompt = C.ids(ids, 1, N)

if arg[1] == "cuda" then
  local ok, dev = pcall(ts.device, "cuda")
  if not ok then
    print("skipped: " .. tostring(dev))
    print("0 passed, 0 failed")
    return
  end
  local m = V4.load(dir, nil, {kv_format = "fp8", device = dev})
  local ok2, err = pcall(function()
    m:prefill(prompt)
    for s = 1, 4 do m:decode(ids[N + s]) end -- completes a CSA window in decode
    return m:decode(ids[N + 5]):shape()
  end)
  check(ok2, "the model runs with every tensor on the GPU: " .. tostring(err))
  -- a decode step only queues work: it never waits for the GPU nor reads
  -- from it (the CSA top-k's selection used to be read back to build the
  -- index list), and its kernels' outputs are not zeroed first
  if ok2 then
    local a = dev:stats()
    for s = 6, 9 do m:decode(ids[N + s]) end -- completes CSA and indexer entries
    local b = dev:stats()
    local launches, zeroes = b.launches - a.launches, b.zeroes - a.zeroes
    print(string.format("4 decode steps on the GPU: %d launches, %d memsets, %d waits, " ..
                        "%d reads, %d writes, %d copies within, %d cuMemAlloc", launches, zeroes,
                        b.waits - a.waits, b.reads - a.reads, b.writes - a.writes,
                        b.copies - a.copies, b.driver_allocs - a.driver_allocs))
    check(launches > 0 and b.waits == a.waits and b.reads == a.reads,
          "a decode step neither waits for the GPU nor reads from it")
    check(zeroes < launches / 3, "a decode step's kernel outputs are not zeroed first")
    -- what every layer would make alike is made once a step (the
    -- positions, their window lists, the indexer's length, HCA's count:
    -- M.step_inputs), and a compressor's projected row is written into its
    -- buffer by the linear: at most 5 uploads a step (with the token id
    -- and a completed window's row list), no copy within the GPU
    check(b.writes - a.writes <= 4 * 5 and b.copies == a.copies,
          string.format("uploads once a step, not once a layer (%d writes, %d copies in 4 steps " ..
                        "of %d layers)", b.writes - a.writes, b.copies - a.copies,
                        m.cfg.n_layers))
    m:decode(ids[N + 10]):to_table()
    check(dev:stats().waits == b.waits + 1, "reading the logits waits, once")
  end
  local held = m:cache_bytes()
  check(held > 0, "cache bytes on the GPU")
  -- a batch's prefill (the attention's projections over both prompts)
  local okb, errb = pcall(function()
    local p5 = C.ids(ids, 20, 5)
    return m:prefill_batch({m:sequence(), m:sequence()}, {prompt, p5}):shape()
  end)
  check(okb, "prefill_batch runs with every tensor on the GPU: " .. tostring(errb))
  -- a sequence continued (extend: the state's rows read on the device)
  local oke, erre = pcall(function()
    local s = m:sequence()
    s:prefill(C.ids(ids, 1, 5))
    return s:extend(C.ids(ids, 6, 4)):shape()
  end)
  check(oke, "extend runs with every tensor on the GPU: " .. tostring(erre))
  -- speculative decoding (the MTP block over the prompt and its steps, two
  -- tokens a step, a forgotten draft; the drafts given, as the mock's
  -- argmax runs no kernel: its output is whatever bytes its block held)
  local oks, errs = pcall(function()
    local s = m:sequence()
    local toks = s:speculate(s:prefill(prompt), prompt:to_table(), 6,
                             function() return ids[2] end, -1,
                             function() return ids[3] end)
    return #toks
  end)
  check(oks and errs == 6, "speculate runs with every tensor on the GPU: " .. tostring(errs))
  -- and with the FP8 linears (act_quant + gemm_fp8 for the prefill)
  local m8 = V4.load(dir, nil, {kv_format = "fp8", device = dev, linears = "fp8"})
  local ok3, err3 = pcall(function()
    m8:prefill(prompt)
    return m8:decode(ids[N + 1]):shape()
  end)
  check(ok3, "the FP8 linears run on the GPU: " .. tostring(err3))
  -- and with the FP4 routed experts
  local m4 = V4.load(dir, nil, {kv_format = "fp8", device = dev, linears = "fp8", experts = "fp4"})
  local ok4, err4 = pcall(function()
    m4:prefill(prompt)
    return m4:decode(ids[N + 1]):shape()
  end)
  check(ok4, "the FP4 experts run on the GPU: " .. tostring(err4))
else
  local out = {}
  local function run(fmt, d, tf32)
    local m = V4.load(dir, nil, {kv_format = fmt, device = d, tf32 = tf32})
    m:prefill(prompt)
    m:decode(ids[N + 1])
    return m:decode(ids[N + 2]):to_table()
  end
  for _, fmt in ipairs{"fp8", "f32"} do
    -- the same math on both (the GPU's GEMMs in f32 too)
    out.cpu, out.gpusim = run(fmt, "cpu", false), run(fmt, "gpusim", false)
    local e = relerr(out.gpusim, out.cpu)
    print(string.format("%s caches: gpusim vs cpu logits after prefill %d + decode 2: %.3e",
                        fmt, N, e))
    check(e < 1e-3, fmt .. ": the GPU form gives the CPU's logits")
    -- the GPU's default, mHC's and the prefill linears' operands in TF32:
    -- close, not equal
    local t = relerr(run(fmt, "gpusim"), out.cpu)
    print(string.format("%s caches, TF32: gpusim vs cpu logits: %.3e", fmt, t))
    check(t > 0 and t < 2e-2, fmt .. ": TF32 logits within 2e-2 of the f32 ones")
  end
  -- the FP8 linears in the GPU form: the prefill's through gemm_fp8 (e4m3
  -- codes on the tensor cores), the decode steps' through linear_fp8_act. With
  -- f32 caches and f32 elsewhere only the sums' order differs (1e-6
  -- measured); with fp8 caches too, an ulp can flip one of the many e4m3
  -- roundings (activations, KV) and the logits differ by ~1e-2
  -- (the same with the FP8 and FP4 routed experts, moe_up_fp8 / _fp4 ...)
  local function run8(d, experts)
    local m = V4.load(dir, nil, {kv_format = "f32", device = d, linears = "fp8", tf32 = false,
                                 experts = experts})
    m:prefill(prompt)
    m:decode(ids[N + 1])
    return m:decode(ids[N + 2]):to_table()
  end
  for _, experts in ipairs{"bf16", "fp8", "fp4"} do
    local e8 = relerr(run8("gpusim", experts), run8("cpu", experts))
    print(string.format("fp8 linears, %s experts: gpusim vs cpu logits after prefill %d + " ..
                        "decode 2: %.3e", experts, N, e8))
    check(e8 < 1e-4, "fp8 linears, " .. experts .. " experts: the GPU form gives the CPU's logits")
  end
  -- sequences prefilled and decoding together in the GPU form: a batch of
  -- two (prompts of 9 and 5 tokens) gives each one's logits prefilled and
  -- decoded alone (1e-3: more rows take other linear tiles, and the fp8
  -- caches amplify the rounding; 8e-7 and 1e-6 measured). In f32:
  -- with TF32 a prefill's linears of 8 rows or more (the batch's 14, not
  -- the 5-token prompt alone) take the tensor cores, 1e-2 apart.
  local m = V4.load(dir, nil, {kv_format = "fp8", device = "gpusim", tf32 = false})
  local seqs, alone = {m:sequence(), m:sequence()}, {m:sequence(), m:sequence()}
  local p5 = C.ids(ids, 20, 5)
  local first = m:prefill_batch(seqs, {prompt, p5}):to_table()
  local worst = 0
  for k, p in ipairs{prompt, p5} do
    local want = alone[k]:prefill(p):to_table()
    local V = #want
    worst = math.max(worst, relerr(table.move(first, (k - 1) * V + 1, k * V, 1, {}), want))
  end
  print(string.format("gpusim: prefill_batch of 2 vs one at a time: %.3e", worst))
  check(worst < 1e-3, "gpusim: a batch's prefill gives the sequences' prefilled alone")
  worst = 0
  for s = 1, 2 do
    local next_ids = {ids[N + s], ids[24 + s]}
    local got = m:decode_batch(seqs, next_ids):to_table()
    for k = 1, 2 do
      local want = alone[k]:decode(next_ids[k]):to_table()
      local V = #want
      worst = math.max(worst, relerr(table.move(got, (k - 1) * V + 1, k * V, 1, {}), want))
    end
  end
  print(string.format("gpusim: decode_batch of 2 vs one at a time, 2 steps: %.3e", worst))
  check(worst < 1e-3, "gpusim: a batch's rows are the sequences decoded alone")
  -- a prompt of 9 as 5, then extend by 4 (the window's, entries' and keys'
  -- rows read from the state on the device) gives its prefill's logits
  local ext, whole = m:sequence(), m:sequence()
  ext:prefill(C.ids(ids, 1, 5))
  local e = relerr(ext:extend(C.ids(ids, 6, 4)):to_table(),
                   whole:prefill(prompt):to_table())
  print(string.format("gpusim: prefill 5 + extend 4 vs prefill 9: %.3e", e))
  check(e < 1e-3, "gpusim: extend gives the prefill's logits")
  -- speculative decoding's parts in the GPU form: the MTP block over the
  -- prompt (its input added on the device), a two-token step, the block
  -- continued over those positions: the CPU's logits
  local function spec(d)
    -- (f32 caches: with "fp8" ones an ulp may flip an e4m3 rounding, as above)
    local s = V4.load(dir, nil, {kv_format = "f32", device = d, tf32 = false})
    s:prefill(prompt)
    local a = s:mtp(C.ids(ids, 2, N)):to_table()
    local two = s:decode_tokens({ids[N + 1], ids[N + 2]}):to_table()
    local b = s:mtp_steps(s.last_streams, {ids[N + 2], ids[N + 3]}):to_table()
    return {a, two, b}
  end
  local g, c = spec("gpusim"), spec("cpu")
  e = math.max(relerr(g[1], c[1]), relerr(g[2], c[2]), relerr(g[3], c[3]))
  print(string.format("gpusim: the MTP block, a two-token step, the block's steps vs cpu: " ..
                      "%.3e, %.3e, %.3e", relerr(g[1], c[1]), relerr(g[2], c[2]),
                      relerr(g[3], c[3])))
  check(e < 1e-3, "gpusim: speculative decoding's steps give the CPU's logits")
end
C.finish()
