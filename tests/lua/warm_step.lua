-- warm_step.lua - one decode step compiles every kernel the next steps
-- launch (model/generate.lua's warm-up is a prefill and one step, so that
-- its figures time the model, not the compiler): after a prefill and one
-- step, 40 more steps, through CSA's windows of 4 and HCA's of 128
-- completing and the window's ring wrapping, ask ts.kernel for no kernel
-- (model/ops.lua asks it only for one it has not compiled). Each cache
-- format, plain steps and steps replayed as graphs, on the golden tiny
-- model (skips without ../shared/golden).
local ts = require "tessera"
local V4 = require "model.v4"
local C = require "tests.lua.lib.check"
local dir, ids = C.golden()
if not dir then return end

local compile = ts.kernel
local asked = {}
for _, fmt in ipairs{"f32", "fp8"} do
  for _, graphs in ipairs{false, true} do
    local model = V4.load(dir, nil, {kv_format = fmt, graphs = graphs})
    -- prompts ending 3 and 0 positions before a window of 4 completes
    for _, N in ipairs{98, 101} do
      model:prefill(C.ids(ids, 1, N))
      model:decode(ids[N + 1])
      ts.kernel = function(file, name, ...)
        asked[#asked + 1] = string.format("%s %s (%s, graphs %s, prompt %d)", file, name, fmt,
                                          tostring(graphs), N)
        return compile(file, name, ...)
      end
      for s = 2, 41 do model:decode(ids[(N + s - 1) % #ids + 1]) end
      ts.kernel = compile
      C.check(model.next_pos == N + 41, "steps taken")
    end
  end
end
for _, a in ipairs(asked) do print("compiled after the first step: " .. a) end
C.check(#asked == 0, string.format("%d kernels compiled after the first decode step", #asked))
C.finish()
