-- race_line.lua - the GPU simulator names the line of the statement whose
-- access races (tests/lua/race.tile, line 11), also when the statement
-- called a helper function of another file first: the CUDA C lowering
-- marked each statement's line as it ran, a helper's too, so the write
-- after the call was reported at the helper's line (4 of
-- race_helper.tile). And a kernel without a race is not stopped: the
-- `else` branch of an `if` in a loop gets the barrier its first copy needs
-- (race.tile else_copy). Run under both lowerings (ctest lua/race_line and
-- lua-cuda-c/race_line).
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local d = ts.device("gpusim")
local x = ts.tensor("f32", {32}, nil, d)
local y = ts.tensor("f32", {32}, nil, d)
local ok, msg = pcall(function()
  ts.kernel("tests/lua/race.tile", "racy", nil, d):launch{x, y}
end)
msg = tostring(msg)
C.check(not ok and msg:find("shared memory race", 1, true), "no race reported: " .. msg)
C.check(msg:find("race at line 11:", 1, true), "the racing statement's line: " .. msg)
C.check(msg:find("which thread 0 read", 1, true), "the other thread: " .. msg)
-- no race where there is none: the `else` branch's copy has its barrier
-- (y = the column sums of both blocks of x, with s all ones)
local xv = {}
for i = 1, 2 * 32 * 32 do xv[i] = (i % 7) - 3 end
local xs = ts.tensor("f32", {2, 32, 32}, xv):copy_to(d)
local ys = ts.tensor("f32", {4, 32}, nil, d)
ok, msg = pcall(function()
  ts.kernel("tests/lua/race.tile", "else_copy", nil, d):launch{xs, ys}
end)
C.check(ok, "else_copy: " .. tostring(msg))
if ok then
  local got, good = ys:to_table(), true
  for h = 0, 3 do
    for c = 0, 31 do
      local want = 0
      for b = 0, 1 do
        for j = 0, 31 do want = want + xv[(b * 32 + j) * 32 + c + 1] end
      end
      good = good and got[h * 32 + c + 1] == want
    end
  end
  C.check(good, "else_copy: wrong sums")
end
C.finish()
