-- prefill_decode.lua - prefill of N tokens then M decode steps gives the
-- logits of a prefill of N + M tokens bit for bit (the CPU's tilings make a
-- row's sums independent of how many rows go together), for N and M crossing
-- the window (32), the CSA ratio (4) and the HCA ratio (128); and a second
-- sequence after reset matches a fresh model; both cache formats ("f32",
-- and "fp8" with the FP8/FP4 simulations, which must also move the logits),
-- the FP8 linears, and those with the FP4 or FP8 routed experts. Token ids
-- outside the vocabulary refused by every entry point.
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local check, relerr = C.check, C.relerr
local dir, ids = C.golden()
if not dir then return end


local function prefix(n)
  return C.ids(ids, 1, n)
end

-- the logits of prefill N + decode M against those of prefill N + M: the
-- relative error and the latter
local function decode_vs_prefill(model, N, M)
  model:prefill(prefix(N))
  local got
  for s = 1, M do got = model:decode(ids[N + s]):to_table() end
  local want = model:prefill(prefix(N + M)):to_table()
  return relerr(got, want), want
end

local last = {}
for _, fmt in ipairs{"f32", "fp8"} do
  local model = V4.load(dir, nil, {kv_format = fmt})
  for _, case in ipairs{{126, 3}, {127, 2}, {120, 10}, {31, 2}, {3, 2}, {250, 7}} do
    local N, M = case[1], case[2]
    local err, want = decode_vs_prefill(model, N, M)
    local ok = err == 0
    print(string.format("%s: prefill %3d + decode %2d vs prefill %3d: %.3e %s", fmt, N, M,
                        N + M, err, ok and "ok" or "FAIL"))
    check(ok, string.format("%s: prefill %d + decode %d", fmt, N, M))
    last[fmt] = want
  end
end
-- the HCA layers' attention split into ranges of one entry (a range holds
-- 512 on the CPU, more than the tiny model makes): still bit for bit, the
-- cache's bytes read in place in "fp8"; and within rounding of one range
-- (f32 caches 1e-5; "fp8" 1e-3: there an ulp's difference in one layer's
-- attention can flip a later layer's fp8 or FP4 rounding of its entries and
-- indexer keys, where the two cache formats differ by ~1e-1)
local O = require "model.ops"
local range = O.attn_range
O.attn_range = function() return 1 end
for _, fmt in ipairs{"f32", "fp8"} do
  local model = V4.load(dir, nil, {kv_format = fmt})
  for _, case in ipairs{{126, 3}, {250, 7}} do
    local N, M = case[1], case[2]
    local err, want = decode_vs_prefill(model, N, M)
    print(string.format("%s, HCA ranges of 1: prefill %3d + decode %2d: %.3e", fmt, N, M, err))
    check(err == 0, string.format("%s, HCA ranges of 1: prefill %d + decode %d", fmt, N, M))
    if N + M > 256 then
      local d = relerr(want, last[fmt])
      print(string.format("%s, HCA ranges of 1 vs 512, logits after 257 tokens: %.3e", fmt, d))
      check(d < (fmt == "f32" and 1e-5 or 1e-3), fmt .. ": ranges of 1 vs 512")
    end
  end
end
O.attn_range = range

-- the simulations change the logits a little, not wholesale
local d = relerr(last.fp8, last.f32)
print(string.format("fp8 vs f32 caches, logits after 257 tokens: %.3e", d))
check(d > 1e-5 and d < 0.2, "the fp8 caches should move the logits by a small amount")

-- the checkpoint's FP8 linears (linears = "fp8": e4m3 weights with block
-- scales, activations quantised per 1 x 128): prefill and decode still
-- agree bit for bit, and the logits move by FP8's rounding, not wholesale
do
  local model = V4.load(dir, nil, {kv_format = "fp8", linears = "fp8"})
  for _, case in ipairs{{31, 2}, {126, 3}, {250, 7}} do
    local N, M = case[1], case[2]
    local err, want = decode_vs_prefill(model, N, M)
    print(string.format("fp8 linears: prefill %3d + decode %2d vs prefill %3d: %.3e", N, M,
                        N + M, err))
    check(err == 0, string.format("fp8 linears: prefill %d + decode %d", N, M))
    if N + M > 256 then
      local d8 = relerr(want, last.fp8)
      print(string.format("fp8 vs f32 linears, logits after 257 tokens: %.3e", d8))
      check(d8 > 1e-3 and d8 < 0.25, "the fp8 linears should move the logits by a small amount")
    end
  end
  local bad = pcall(V4.load, dir, nil, {linears = "fp4"})
  check(not bad, "linears = 'fp4' is refused")
end

-- the released checkpoints' formats: FP8 linears (the shared experts'
-- among them) and the routed experts in FP4 (the instruct checkpoints:
-- e2m1 weights with a scale per 1 x 32 block) or FP8 (the Base ones: e4m3
-- with a scale per 128 x 128 block): still bit for bit, and the logits again
-- move by the rounding, not wholesale (FP4's one mantissa bit more)
for _, experts in ipairs{"fp4", "fp8"} do
  local model = V4.load(dir, nil, {kv_format = "fp8", linears = "fp8", experts = experts})
  for _, case in ipairs{{3, 2}, {126, 3}, {250, 7}} do
    local N, M = case[1], case[2]
    local err, want = decode_vs_prefill(model, N, M)
    print(string.format("%s experts: prefill %3d + decode %2d vs prefill %3d: %.3e", experts, N, M,
                        N + M, err))
    check(err == 0, string.format("%s experts: prefill %d + decode %d", experts, N, M))
    if N + M > 256 then
      local d4 = relerr(want, last.fp8)
      print(string.format("fp8 linears + %s experts vs f32 linears, bf16 experts, " ..
                          "logits after 257 tokens: %.3e", experts, d4))
      check(d4 > 1e-3 and d4 < (experts == "fp4" and 0.3 or 0.2),
            "the " .. experts .. " experts should move the logits by a small amount")
    end
  end
end
do
  local bad, msg = pcall(V4.load, dir, nil, {experts = "fp16"})
  check(not bad and tostring(msg):find("experts 'fp16'"), "experts = 'fp16' is refused: " .. tostring(msg))
end

local ok, err = pcall(function() V4.load(dir):decode(1) end)
check(not ok and tostring(err):find("decode needs a prefill first") ~= nil,
      "decode without prefill: " .. tostring(err))

-- token ids outside the vocabulary are refused by every entry point, with
-- the id and its place, before the state changes (the embedding's and the
-- hash layers' tables were read out of range: a zero row, no error)
do
  local model = V4.load(dir)
  local V = model.cfg.vocab_size
  local logits = model:prefill(prefix(9)):to_table()
  local at = model.next_pos
  local calls = {
    {"prefill", function() model:prefill(ts.tensor("i32", {3}, {1, V, 2})) end,
     "prefill: token id " .. V .. " (id 2 of 3) is not in the vocabulary (0 .. " .. (V - 1) .. ")"},
    {"extend", function() model:extend(ts.tensor("i32", {2}, {3, -1})) end,
     "extend: token id -1 (id 2 of 2)"},
    {"decode", function() model:decode(V + 7) end, "decode: token id " .. (V + 7) .. " (id 1 of 1)"},
    {"decode 2.5", function() model:decode(2.5) end, "decode: token id 2.5"},
    {"decode nil", function() model:decode(nil) end, "decode: token id nil (id 1 of 1)"},
    {"decode_batch", function() model:decode_batch({model}, {-3}) end,
     "decode_batch: token id -3"},
    {"decode_tokens", function() model:decode_tokens({4, V}) end,
     "decode_rounds: token id " .. V .. " (id 2 of 2)"},
    {"prefill_batch", function() model:prefill_batch({model:sequence()}, {{5, 6, V * 2}}) end,
     "prefill_batch: prompt 1: token id " .. (2 * V) .. " (id 3 of 3)"},
    {"mtp", function() model:mtp(ts.tensor("i32", {1}, {V})) end, "mtp: token id " .. V},
    -- (ids of another dtype or rank, or none: they failed inside the
    -- kernels, "slice [-1, 0) of a dim of 0" for none)
    {"prefill of none", function() model:prefill(ts.tensor("i32", {0})) end,
     "prefill: the token ids are an i32 tensor [T] of 1 or more, given i32[0]"},
    {"prefill f32", function() model:prefill(ts.tensor("f32", {2}, {1, 2})) end,
     "prefill: the token ids are an i32 tensor [T] of 1 or more, given f32[2]"},
    {"extend [1, 2]", function() model:extend(ts.tensor("i32", {1, 2}, {1, 2})) end,
     "extend: the token ids are an i32 tensor [T] of 1 or more, given i32[1, 2]"},
    {"prefill_batch i64", function()
      model:prefill_batch({model:sequence()}, {ts.tensor("i64", {2}, {1, 2})})
    end, "prefill_batch: prompt 1: the token ids are an i32 tensor [T] of 1 or more, given i64[2]"},
  }
  for _, c in ipairs(calls) do
    local okc, errc = pcall(c[2])
    check(not okc and tostring(errc):find(c[3], 1, true) ~= nil and model.next_pos == at,
          c[1] .. " with an id out of the vocabulary: " .. tostring(errc))
  end
  local again = model:prefill(prefix(9)):to_table()
  check(relerr(again, logits) == 0, "the model works after the refusals")
end

C.finish()
