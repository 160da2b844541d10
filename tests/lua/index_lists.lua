-- index_lists.lua - the prefill's attention index lists (kernels/
-- sparse_attn.tile sparse_index, as the model builds them in M:index_lists):
-- each row equals a plain Lua construction (the window, then the selected
-- entries offset by T, then -1) for T below, at and above the window,
-- selections with pads, without a selection, and a K too short for the
-- window and the selection together; on the CPU and the GPU simulator.
local ts = require "tessera"
local passed, failed = 0, 0
local function check(ok, what)
  if ok then passed = passed + 1 else failed = failed + 1; print("FAIL: " .. what) end
end

local function want(T, W, K, KS, selv)
  local out = {}
  for t = 0, T - 1 do
    local row = {}
    for s = math.max(0, t - W + 1), t do row[#row + 1] = s end
    for k = 1, KS do
      local e = selv and selv[t * KS + k] or -1
      if e >= 0 then row[#row + 1] = T + e end
    end
    for k = 1, K do out[#out + 1] = row[k] or -1 end
  end
  return out
end

for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  for _, case in ipairs{{T = 5, W = 8, KS = 3}, {T = 8, W = 8, KS = 2}, {T = 37, W = 8, KS = 4},
                        {T = 37, W = 8, KS = 0}, {T = 20, W = 4, KS = 3, K = 5}} do
    local T, W, KS = case.T, case.W, case.KS
    local K = case.K or W + KS
    -- token t selects entries below t / 4, increasing, -1 pads (topk's form)
    local selv
    local cols = math.max(KS, 1)
    if KS > 0 then
      selv = {}
      for t = 0, T - 1 do
        local n, row = math.min(KS, (t + 1) // 4), {}
        for k = 0, n - 1 do row[k + 1] = k * ((t + 1) // 4) // n end
        for k = 0, KS - 1 do selv[t * KS + k + 1] = row[k + 1] or -1 end
      end
    end
    local sel = ts.tensor("i32", {T, cols}, selv or (function()
      local none = {}
      for i = 1, T do none[i] = -1 end
      return none
    end)(), d)
    local idx = ts.tensor("i32", {T, K}, nil, d)
    ts.kernel("kernels/sparse_attn.tile", "sparse_index", {W = W}, d):launch{sel, idx}
    local got, exp = idx:to_table(), want(T, W, K, KS, selv)
    local same = #got == #exp
    for i = 1, #exp do same = same and got[i] == exp[i] end
    check(same, string.format("%s T %d W %d K %d KS %d", dev, T, W, K, KS))
  end
end
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
