-- gc_tensors.lua - tensors dropped in a loop are freed as fast as they are
-- made: Lua's collector sees a tensor as a small box, so the bytes of the
-- tensors made are counted and a full collection frees the dropped ones
-- once they pass a budget (lua/module.c gc_account: 64 MiB of host
-- memory, 256 MiB of a GPU's). On the CPU, 2500 temporaries of 1 MiB from
-- ts.tensor and 400 of 256 KiB from cast and copy_to must not raise the
-- peak resident memory by more than 256 MiB (~450 MiB without the
-- accounting); Linux only (VmHWM). With the argument "cuda" (the mock
-- driver with MOCK_CUDA_MEM, a 64 MiB GPU: tests/CMakeLists.txt), a
-- GPU whose memory the dropped tensors fill before their budget is spent:
-- a creation that finds no memory collects and tries again, so 600 of 1
-- MiB succeed, and one larger than the whole GPU fails with the driver's
-- error, after which the device still works.
local ts = require "tessera"
local passed, failed = 0, 0
local function check(ok, what)
  print((ok and "ok   " or "FAIL ") .. what)
  if ok then passed = passed + 1 else failed = failed + 1 end
end

local function peak_mib()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  for line in f:lines() do
    local v = line:match("^VmHWM:%s+(%d+)")
    if v then f:close(); return tonumber(v) // 1024 end
  end
  f:close()
end

if arg[1] == "cuda" then
  local dev = ts.device("cuda")
  local ok, err = pcall(function()
    for i = 1, 600 do local t = ts.empty("f32", {256, 1024}, dev) end
  end)
  check(ok, "600 dropped tensors of 1 MiB on a 64 MiB GPU: " .. tostring(err or "made"))
  local ok2, err2 = pcall(ts.empty, "f32", {32, 1024, 1024}, dev)
  check(not ok2 and tostring(err2):find("CUDA_ERROR_OUT_OF_MEMORY", 1, true) ~= nil,
        "a tensor larger than the GPU fails with the driver's error: " .. tostring(err2))
  local ok3, t = pcall(ts.tensor, "f32", {4}, {1, 2, 3, 4}, dev)
  check(ok3 and t:to_table()[4] == 4, "the device works after it")
else
  local before = peak_mib()
  if not before then
    print("skipped: no /proc/self/status")
    print("0 passed, 0 failed")
    return
  end
  for i = 1, 2500 do local t = ts.tensor("f32", {256, 1024}) end
  local small, host = ts.tensor("bf16", {64, 1024}), ts.device("cpu")
  for i = 1, 200 do local t = small:cast("f32"):copy_to(host) end
  local grew = peak_mib() - before
  check(grew < 256, string.format("peak resident memory grew by %d MiB over the temporaries", grew))
end
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
