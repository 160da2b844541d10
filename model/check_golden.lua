-- check_golden.lua - runs the V4 prefill of a golden folder's model
-- (../shared/golden/tiny by default) in the exact-math form and compares
-- every prefill tensor of f32.safetensors that it computes, then the MTP
-- block's logits and the teacher-forced decode steps' (where the folder
-- has them): one line per tensor with its relative error; exits 1 if any
-- is over its limit or any top-k set differs. Without the default folder
-- it skips (exit 0); a folder named that is not there is an error.
--   build/tessera run model/check_golden.lua [folder]
local ts = require "tessera"
local V4 = require "model.v4"

local dir = arg[1] or "../shared/golden/tiny"
local probe = io.open(dir .. "/config.json", "rb")
if not probe then
  if arg[1] then error("check_golden.lua: no golden model at " .. dir .. " (its config.json)", 0) end
  print("skipped: no golden folder at " .. dir)
  print("0 passed, 0 failed")
  os.exit(0)
end
probe:close()
local model = V4.load(dir)
local golden = ts.load(dir .. "/f32.safetensors")
local T = tonumber(golden:meta("prompt_len") or "200")
local ids = golden:get("input_ids"):slice(0, 0, T)
local t0 = ts.clock()
local logits, record = model:prefill(ids)
local seconds = ts.clock() - t0

local bad, checked = 0, 0
local function relerr(got, want)
  local num, den = 0, 0
  for i = 1, #want do
    num = num + (got[i] - want[i]) ^ 2
    den = den + want[i] ^ 2
  end
  return math.sqrt(num / math.max(den, 1e-300))
end

local function compare(name, tensor)
  local ok, want = pcall(golden.get, golden, name)
  if not ok then return end
  local err = relerr(tensor:to_table(), want:to_table())
  checked = checked + 1
  local flag = err <= 1e-4 and "ok" or "FAIL"
  if flag == "FAIL" then bad = bad + 1 end
  print(string.format("%-48s %.3e  %s", name, err, flag))
end

local function compare_sets(name, tensor, offset)
  local ok, want = pcall(golden.get, golden, name)
  if not ok then return end
  local k = want:shape(2)
  local g, w = tensor:to_table(), want:to_table()
  local differ = 0
  for t = 0, want:shape(1) - 1 do
    local set = {}
    for i = 1, k do
      local e = w[t * k + i]
      if e >= 0 then set[e - offset] = true end
    end
    for i = 1, k do
      local e = g[t * k + i]
      if e >= 0 and not set[e] then differ = differ + 1 end
    end
  end
  checked = checked + 1
  if differ > 0 then bad = bad + 1 end
  print(string.format("%-48s %d differ  %s", name, differ, differ == 0 and "ok" or "FAIL"))
end

for L = 0, #record do
  local r, p = record[L], string.format("prefill.layers.%d.", L)
  compare(p .. "attn.in", r.attn_in)
  compare(p .. "attn.out", r.attn_out)
  if r.made and r.made.compressed then compare(p .. "attn.compressor.out", r.made.compressed) end
  if r.made and r.made.indexer_keys then
    compare(p .. "attn.indexer.compressor.out", r.made.indexer_keys)
  end
  if r.made and r.made.topk then compare_sets(p .. "attn.indexer.topk", r.made.topk, T) end
  compare(p .. "ffn.in", r.ffn_in)
  compare(p .. "ffn.out", r.ffn_out)
  compare(p .. "out", r.out)
end
compare("prefill.logits", logits)

-- the MTP block over positions 0 .. T - 2 (token i + 1 at position i)
local ok_mtp, want_mtp = pcall(golden.get, golden, "mtp.logits")
if ok_mtp then
  local next_ids = golden:get("input_ids"):slice(0, 1, T - 1)
  compare("mtp.logits", model:mtp(next_ids))
end

-- decode steps, teacher-forced: token ids[t] at position t
local ok_dec, want_dec = pcall(golden.get, golden, "decode.logits")
if ok_dec then
  local steps = want_dec:shape(1)
  local all_ids = golden:get("input_ids"):to_table()
  local wv, worst, t1 = want_dec:to_table(), 0, ts.clock()
  local vocab = want_dec:shape(2)
  for s = 0, steps - 1 do
    local got = model:decode(all_ids[T + s + 1]):to_table()
    local num, den = 0, 0
    for i = 1, vocab do
      num = num + (got[i] - wv[s * vocab + i]) ^ 2
      den = den + wv[s * vocab + i] ^ 2
    end
    worst = math.max(worst, math.sqrt(num / den))
  end
  checked = checked + 1
  local flag = worst <= 1e-4 and "ok" or "FAIL"
  if flag == "FAIL" then bad = bad + 1 end
  print(string.format("%-48s %.3e  %s  (%d steps, worst step, %.2f s)", "decode.logits",
                      worst, flag, steps, ts.clock() - t1))
end
print(string.format("prefill of %d tokens in %.2f s; %d tensors compared, %d over the limit",
                    T, seconds, checked, bad))
print(string.format("%d passed, %d failed", checked - bad, bad))
if bad > 0 then os.exit(1) end
