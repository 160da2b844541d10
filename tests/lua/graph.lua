-- graph.lua - ts.capture: the work a function gives a device, recorded and
-- replayed (runtime/graph.c). On each device: a replay computes what the
-- function computes over the inputs' new values, bit for bit; it zeroes
-- the tensors made zeroed again, writes the host's bytes as they were at
-- the recording and repeats the copies; the graph keeps the memory it names
-- (a dropped temporary's block is not handed to a later tensor, a closed
-- kernel still runs); what a replay cannot repeat (a read into Lua) fails
-- the recording, as does an error in the function, and neither leaves the
-- device recording. Devices: arg[1] ("cpu,gpusim" unless given); "cuda"
-- with arg[2] "mock" (tests/cuda_mock, which runs no kernel: the kernels'
-- values are not checked there) checks that a replay is one CUDA graph
-- launch with the graph's work and no copy from the host or wait.
local ts = require "tessera"
local O = require "model.ops"
local C = require "tests.lua.lib.check"

local devices, mock = {}, arg[2] == "mock"
for name in (arg[1] or "cpu,gpusim"):gmatch("[^,]+") do devices[#devices + 1] = name end

local function values(n, f)
  local v = {}
  for i = 1, n do v[i] = f(i) end
  return v
end

for _, name in ipairs(devices) do
  local dev = ts.device(name)
  O.use(dev)
  local rnd = C.lcg(7)
  local K, N = 96, 40
  local x = O.tensor("f32", {1, K}, values(K, function() return rnd() - 0.5 end))
  local w = O.tensor("f32", {N, K}, values(N * K, function() return rnd() - 0.5 end))
  local nw = O.tensor("f32", {N}, values(N, function(i) return 1 + i / 64 end))
  local out = O.out{1, N}
  -- a linear and a norm (its temporary dropped), the result copied into
  -- out; a tensor of zeros and one of values, made while recording
  local function work()
    out:assign(O.rmsnorm(O.linear(x, w), nw))
    return O.tensor("f32", {5}), O.tensor("i32", {3}, {4, -5, 6})
  end
  local before = dev:stats()
  local g, zeros, consts = ts.capture(work, dev)
  local n = g:counts()
  C.check(n.launches == 2 and n.zeroes == 1 and n.writes == 1 and n.copies == 1 and
          n.write_bytes == 12, name .. ": the graph holds 2 launches, 1 zeroing, write, copy")
  local function eager()
    return O.rmsnorm(O.linear(x, w), nw):to_table()
  end
  C.check(mock or C.same(out:to_table(), eager()), name .. ": the recording ran the work")

  -- new inputs: a replay computes over them what the work does, bit for bit
  local stats0 = dev:stats()
  for r = 1, 3 do
    x:set(values(K, function() return rnd() - 0.5 end))
    zeros:set{1, 2, 3, 4, 5}
    consts:set{7, 7, 7}
    g:replay()
    C.check(mock or C.same(out:to_table(), eager()), name .. ": replay " .. r .. " is the work's")
    C.check(C.same(zeros:to_table(), {0, 0, 0, 0, 0}), name .. ": replay " .. r .. " zeroes")
    C.check(C.same(consts:to_table(), {4, -5, 6}), name .. ": replay " .. r .. " writes")
  end
  if name == "cuda" then
    -- each replay: one CUDA graph launch with the graph's work, which reads
    -- nothing from the host and waits for nothing (the checks above read)
    local s = dev:stats()
    C.check(s.graphs - stats0.graphs == 3, name .. ": 3 replays are 3 graph launches")
    C.check(s.launches - stats0.launches == 6, name .. ": their kernels count as launches")
    C.check(s.writes - stats0.writes == 9, name .. ": no write from the host but the test's 9")
    C.check(stats0.graphs == before.graphs, name .. ": the recording launched no graph")
  end

  -- the graph keeps what it names: the norm's dropped temporary is not
  -- handed to the tensors made after it, whose values a replay leaves alone
  collectgarbage()
  local others = {}
  for i = 1, 8 do others[i] = O.tensor("f32", {1, N}, values(N, function() return i end)) end
  g:replay()
  local kept = true
  for i = 1, 8 do
    kept = kept and C.same(others[i]:to_table(), values(N, function() return i end))
  end
  C.check(kept, name .. ": the graph's temporaries are its own")

  -- a kernel closed after the recording still runs in the graph; an
  -- explicit grid is kept
  local k = ts.kernel("kernels/rmsnorm.tile", "rmsnorm_f32", {}, dev)
  local y = O.out{1, N}
  local h = O.linear(x, w)
  local g2 = ts.capture(function() k:launch{h, nw, y, grid = {1}} end, dev)
  k:close()
  y:set(values(N, function() return 0 end))
  g2:replay()
  C.check(mock or C.same(y:to_table(), O.rmsnorm(h, nw):to_table()),
          name .. ": a closed kernel's launch replays")

  -- a CPU kernel made for another CPU device (the model's kernels are made
  -- once for every CPU device) is recorded where its tensors' device records
  if name == "cpu" then
    local k2 = ts.kernel("kernels/rmsnorm.tile", "rmsnorm_f32", {}, ts.device("cpu"))
    local g4 = ts.capture(function() k2:launch{h, nw, y} end, dev)
    C.check(g4:counts().launches == 1, name .. ": another CPU device's kernel is recorded")
  end

  -- what cannot be recorded fails the recording and leaves the device free
  local ok, err = pcall(ts.capture, function()
    O.linear(x, w):to_table()
  end, dev)
  C.check(not ok and err:find("reading a tensor into host memory while device '" ..
                              dev:name() .. "' records a graph", 1, true),
          name .. ": a read while recording is refused: " .. tostring(err))
  ok, err = pcall(ts.capture, function() error("stop here") end, dev)
  C.check(not ok and err:find("stop here", 1, true), name .. ": the function's error is raised")
  ok, err = pcall(ts.capture, function()
    ts.capture(function() end, dev)
  end, dev)
  C.check(not ok and err:find("records a graph already", 1, true),
          name .. ": a recording inside a recording is refused")
  ok, err = pcall(ts.capture, function() g:replay() end, dev)
  C.check(not ok and err:find("replaying a graph while device", 1, true),
          name .. ": a replay while recording is refused")
  local g3 = ts.capture(function() O.linear(x, w) end, dev)
  C.check(g3:counts().launches == 1, name .. ": after those, a recording starts afresh")
  O.linear(x, w)
  C.check(g3:counts().launches == 1, name .. ": a launch after the recording is not in it")
  g:close()
  ok, err = pcall(function() g:replay() end)
  C.check(not ok and err:find("closed graph", 1, true), name .. ": a closed graph is refused")
end

C.finish()
