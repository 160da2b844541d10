-- debug.lua - print, assert and thread_id() in kernels, on the CPU and on
-- the GPU simulator (tests/lua/debug.tile). With an argument it is the
-- child that prints: `tessera run tests/lua/debug.lua print DEVICE`.
local ts = require "tessera"
local tile = "tests/lua/debug.tile"

if arg[1] == "print" then
  local d = ts.device(arg[2])
  local x = ts.tensor("f32", {3}, {1.5, -2, 3}, d)
  local y = ts.tensor("i32", {3}, {7, 8, 9}, d)
  ts.kernel(tile, "show", nil, d):launch{x, y, 100}
  return
end

local failed = 0
local function check(ok, what)
  if not ok then
    failed = failed + 1
    print("FAIL: " .. what)
  end
end
local self = arg[0]
local exe = arg[-1]

for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  -- print: the same text on both (the value as the GPU's %.9g would show it)
  local p = io.popen(exe .. " run " .. self .. " print " .. dev)
  local out = p:read("a")
  p:close()
  local want = 'n = 3 x0 = 1.5 100% "done"\n' ..
               "i 0 y 7 half 0.75\ni 1 y 8 half -1\ni 2 y 9 half 1.5\n"
  check(out == want, dev .. ": print output\n" .. out)

  -- assert: a failed one ends the launch with its location and message
  local x = ts.tensor("f32", {4}, {1, 2, 30, 4}, d)
  local y = ts.tensor("i32", {4}, nil, d)
  local k = ts.kernel(tile, "show", nil, d)
  local ok, err = pcall(function() k:launch{x, y, 10} end)
  check(not ok and err:find("kernel 'show': tests/lua/debug.tile:13:5: " ..
                            "assertion failed: x is too big (block (0, 0, 0)",
                            1, true), dev .. ": assert message: " .. tostring(err))
  -- the same launch with a limit it keeps passes, and the kernel is reusable
  local ok2 = pcall(function() k:launch{x, y, 100} end)
  check(ok2, dev .. ": a passing assert")

  local idx = ts.tensor("i32", {6}, {0, 1, 2, 3, 9, 5}, d)
  local a = ts.kernel(tile, "in_range", nil, d)
  ok, err = pcall(function() a:launch{idx, 6} end)
  local at = dev == "cpu" and "(block (1, 0, 0))" or "(block (1, 0, 0), thread 0)"
  check(not ok and err:find("index out of range " .. at, 1, true),
        dev .. ": assert in parallel: " .. tostring(err))
  check(pcall(function() a:launch{idx, 10} end), dev .. ": assert in parallel passes")

  -- thread_id(): element i of a block's parallel is done by thread i % 3
  local n = 13
  local w = ts.tensor("i32", {n}, nil, d)
  ts.kernel(tile, "who", nil, d):launch{w}
  local got = w:to_table()
  for i = 0, n - 1 do
    local want = (i % 8) % 3 * 100 + i // 8
    check(got[i + 1] == want, string.format("%s: who[%d] = %d, expected %d",
                                            dev, i, got[i + 1], want))
  end
end

if failed > 0 then
  error(failed .. " checks failed")
end
print("debug: all checks passed")
