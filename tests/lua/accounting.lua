-- accounting.lua - model/kv_report.lua's accounting agrees with
-- ../shared/tools/v4_cost.py (run with python3 when both are present) on
-- KV bytes per token and precision-weighted FLOPs, for V4-Flash and V4-Pro
-- at several context lengths; and the 1M-token ratios are the published
-- ones (Flash 7.3% KV / 10.1% FLOPs, Pro 10.5% / 26.9%). The scripts'
-- bad options are refused.
local json = require "model.json"
local R = dofile("model/kv_report.lua")
local passed, failed = 0, 0
local function check(c, what)
  if c then passed = passed + 1 else failed = failed + 1; print("FAIL: " .. what) end
end

local v = json.read("model/configs/v3.2.json")
local flash = json.read("model/configs/v4-flash.json")
local pro = json.read("model/configs/v4-pro.json")
local kv, fl = R.ratios(flash, v, 1000000)
check(string.format("%.1f %.1f", kv * 100, fl * 100) == "7.3 10.1", "Flash at 1M")
kv, fl = R.ratios(pro, v, 1000000)
check(string.format("%.1f %.1f", kv * 100, fl * 100) == "10.5 26.9", "Pro at 1M")

local tool = "../shared/tools/v4_cost.py"
local probe = io.open(tool, "r")
local py = io.popen("command -v python3")
local have_py = py:read("a") ~= ""
py:close()
if probe and have_py then
  probe:close()
  for _, T in ipairs{4096, 131072, 1000000, 1048576} do
    local h = io.popen("python3 " .. tool .. " " .. T)
    local text = h:read("a")
    h:close()
    for _, c in ipairs{flash, pro} do
      local name = c.name:gsub("%-", "%%-")
      local kvb = text:match(name .. "%s*: paper%-format%s+([%d%.]+) B/tok")
      local wf = text:match(name .. "%s*: linear[^\n]-weighted%s+([%d%.]+)G")
      local _, _, d = R.ratios(c, v, T)
      check(kvb and math.abs(tonumber(kvb) - d.kv_bytes) < 0.06,
            string.format("%s KV at %d: %s vs %.1f", c.name, T, tostring(kvb), d.kv_bytes))
      check(wf and math.abs(tonumber(wf) - d.flops / 1e9) < 0.06,
            string.format("%s FLOPs at %d: %s vs %.1f", c.name, T, tostring(wf), d.flops / 1e9))
    end
  end
else
  print("skipped the comparison with v4_cost.py (no python3 or no ../shared/tools)")
end
-- the bytes a real run holds equal the formula (T a multiple of 128)
local ts = require "tessera"
local V4 = require "model.v4"
local wpath = os.tmpname()
arg = {[0] = "model/init.lua", "--config", "tiny", "--seed", "2", "-o", wpath}
dofile("model/init.lua")
local tiny = json.read("model/configs/tiny.json")
for _, fmt in ipairs{"fp8", "f32"} do
  local model = V4.load(tiny, wpath, {kv_format = fmt})
  for _, T in ipairs{256, 384} do
    local v = {}
    for i = 1, T - 2 do v[i] = i % 256 end
    model:prefill(ts.tensor("i32", {T - 2}, v))
    model:decode(7)
    model:decode(9) -- the last window completes in a decode step
    local held, dense, alloc = model:cache_bytes()
    -- "fp8": the production formats of the accounting; "f32": 4 bytes a
    -- dim, with the same numbers of rows
    local formula = R.kv_bytes_per_token(tiny, T) * T
    if fmt == "f32" then
      local c = {}
      for k, x in pairs(tiny) do c[k] = x end
      local rows = 0
      for L = 1, #c.compress_ratios - 1 do
        local r = c.compress_ratios[L]
        rows = rows + c.window_size + (r > 0 and T // r or 0)
        if r == 4 then rows = rows + T // 4 end
      end
      formula = rows * 4 * c.head_dim -- head_dim = index_head_dim in tiny
    end
    check(math.abs(held - formula) < 1e-6,
          string.format("%s cache bytes at %d: held %d, formula %.1f", fmt, T, held, formula))
    check(dense == (#tiny.compress_ratios - 1) * T * (fmt == "fp8" and R.entry_bytes(tiny)
                                                      or 4 * tiny.head_dim),
          string.format("%s dense bytes at %d: %d", fmt, T, dense))
    check(alloc >= held, "allocated at least what is held")
  end
end
os.remove(wpath)

-- the scripts' options: bad values and unknown names are refused by name
local never = os.tmpname()
for _, case in ipairs{
    {"model/kv_report.lua", {"--tokens", "x"}, "--tokens: a positive number of tokens"},
    {"model/kv_report.lua", {"--tokens", "-5"}, "--tokens: a positive number of tokens"},
    {"model/kv_report.lua", {"--bogus", "1"}, "unknown option --bogus"},
    {"model/init.lua", {"--seed", "q", "-o", never}, "--seed: an integer"},
    {"model/init.lua", {"--cfg", "tiny"}, "unknown option --cfg"},
    {"model/check_golden.lua", {"/nonexistent/golden"}, "no golden model at /nonexistent/golden"}} do
  arg = {[0] = case[1], table.unpack(case[2])}
  local ok, err = pcall(dofile, case[1])
  check(not ok and tostring(err):find(case[3], 1, true) ~= nil,
        case[1] .. " " .. table.concat(case[2], " ") .. ": " .. tostring(err))
end
os.remove(never)

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
