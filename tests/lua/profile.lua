-- profile.lua - the kernel profile (ts.profile, runtime/profile.c): with it
-- on, every launch adds to its kernel's row (device, name, params in name
-- order whatever the table's order), counting launches and their seconds,
-- most time first; off, launches add nothing; profile_reset empties it. On
-- the CPU and the GPU simulator. (`TESSERA_PROFILE=1 tessera run` prints
-- the table at exit: tests/cli/run.sh.)
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check

local function row(rows, kernel, dev)
  for _, r in ipairs(rows) do
    if r.kernel == kernel and r.device == dev then return r end
  end
end
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  ts.profile(true)
  ts.profile_reset()
  check(#ts.profile() == 0, name .. ": empty after a reset")
  local lin = ts.kernel("kernels/gemm.tile", "linear_f32", {BN = 16, BM = 8, BK = 32}, dev)
  local x = ts.tensor("f32", {5, 40}):copy_to(dev)
  local w = ts.tensor("f32", {24, 40}):copy_to(dev)
  local y = ts.tensor("f32", {5, 24}, nil, dev)
  for _ = 1, 3 do lin:launch{x, w, y} end
  local sm = ts.kernel("kernels/softmax.tile", "softmax_rows", nil, dev)
  local s = ts.tensor("f32", {7, 33}):copy_to(dev)
  for _ = 1, 2 do sm:launch{s, s} end
  local rows = ts.profile()
  local lr, sr = row(rows, "linear_f32", dev:name()), row(rows, "softmax_rows", dev:name())
  check(#rows == 2 and lr and sr, name .. ": a row a kernel (" .. #rows .. " rows)")
  if lr and sr then
    check(lr.launches == 3 and sr.launches == 2, name .. ": the launches counted")
    check(lr.params == "BK=32 BM=8 BN=16", name .. ": params in name order: " .. lr.params)
    check(sr.params == "", name .. ": no params: '" .. sr.params .. "'")
    check(lr.seconds > 0 and lr.min > 0 and lr.min <= lr.max and lr.max <= lr.seconds,
          name .. ": the times add up")
    check(rows[1].seconds >= rows[2].seconds, name .. ": most time first")
  end
  -- the same kernel made again from another table of the same params
  local again = ts.kernel("kernels/gemm.tile", "linear_f32", {BK = 32, BN = 16, BM = 8}, dev)
  again:launch{x, w, y}
  lr = row(ts.profile(), "linear_f32", dev:name())
  check(lr and lr.launches == 4 and #ts.profile() == 2, name .. ": one row for the same params")
  ts.profile(false)
  lin:launch{x, w, y}
  lr = row(ts.profile(), "linear_f32", dev:name())
  check(lr and lr.launches == 4, name .. ": off, a launch adds nothing")
  ts.profile_reset()
  check(#ts.profile() == 0, name .. ": reset")
end
C.finish()
