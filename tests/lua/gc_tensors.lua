-- gc_tensors.lua - tensors dropped in a loop are freed as fast as they are
-- made: Lua's collector sees a tensor as a small box, so each new buffer
-- counts its size towards the next collection step (lua/module.c
-- gc_account). 2500 temporaries of 1 MiB from ts.tensor and 400 of 256 KiB
-- from cast and copy_to must not raise the peak resident memory by more
-- than 256 MiB (~450 MiB without the accounting); Linux only (VmHWM).
local ts = require "tessera"
local function peak_mib()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  for line in f:lines() do
    local v = line:match("^VmHWM:%s+(%d+)")
    if v then f:close(); return tonumber(v) // 1024 end
  end
  f:close()
end

local before = peak_mib()
if not before then
  print("skipped: no /proc/self/status")
  print("0 passed, 0 failed")
  return
end
local passed, failed = 0, 0
for i = 1, 2500 do local t = ts.tensor("f32", {256, 1024}) end
local small, host = ts.tensor("bf16", {64, 1024}), ts.device("cpu")
for i = 1, 200 do local t = small:cast("f32"):copy_to(host) end
local grew = peak_mib() - before
local ok = grew < 256
print(string.format("peak resident memory grew by %d MiB over the temporaries: %s",
                    grew, ok and "ok" or "FAIL"))
if ok then passed = passed + 1 else failed = failed + 1 end
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
