-- race_line.lua - the GPU simulator names the line of the statement whose
-- access races (tests/lua/race.tile, line 11), also when the statement
-- called a helper function of another file first: the CUDA C lowering
-- marked each statement's line as it ran, a helper's too, so the write
-- after the call was reported at the helper's line (4 of
-- race_helper.tile). Run under both lowerings (ctest lua/race_line and
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
C.finish()
