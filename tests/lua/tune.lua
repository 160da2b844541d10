-- tune.lua - ts.tune, the tuning database and the tuned config being the
-- one ts.kernel compiles (tests/tune/tune.tile). Run with TESSERA_CACHE set
-- to a folder of its own (tests/CMakeLists.txt): it starts a fresh database
-- there.
local ts = require "tessera"
local tile = "tests/tune/tune.tile"
local cache = assert(os.getenv("TESSERA_CACHE"), "set TESSERA_CACHE")
os.remove(cache .. "/tune.db")

local failed = 0
local function check(ok, what)
  if not ok then
    failed = failed + 1
    print("FAIL: " .. what)
  end
end

local shapes = {M = 200, N = 50, s = 0.5}
check(ts.tuned(tile, "scale_rows", shapes) == nil, "nothing known before tuning")
local k0 = ts.kernel(tile, "scale_rows", nil, nil, shapes)
check(k0:config() == "", "no tuned config: the defaults")

local r = ts.tune{file = tile, kernel = "scale_rows", shapes = shapes, repeats = 3}
check(r.bucket == "M=256 N=64", "bucket " .. tostring(r.bucket))
check(r.default == "BM=2 SKEW=0", "default " .. tostring(r.default))
check(r.pruned == 3, "3 pruned, got " .. tostring(r.pruned))
local states = {}
for _, x in ipairs(r.results) do
  states[x.config] = x.state
end
check(states["BM=8 SKEW=1"] == "pruned" and states["BM=32 SKEW=0"] == "pruned",
      "require and the thread limit prune")
for _, bm in ipairs{1, 2, 4} do
  check(states["BM=" .. bm .. " SKEW=1"] == "wrong", "SKEW=1 rejected as wrong at BM=" .. bm)
  check(states["BM=" .. bm .. " SKEW=0"] == "ok", "SKEW=0 timed at BM=" .. bm)
end
-- ranked: the timed ones first, fastest first
check(r.results[1].config == r.best and r.results[1].state == "ok", "best first")
for i = 2, 4 do
  check(r.results[i].state == "ok" and r.results[i].median >= r.results[i - 1].median,
        "ranked by median")
end

-- the configs close to the best timed again in turns (runtime/tune.c
-- retime_close): with every config close, the four correct ones, their
-- medians of `repeats` rounds; with close = 1 none; with fewer than three
-- rounds none either (their first timings kept)
local function retimed(rr)
  local n, other = 0, true
  for _, x in ipairs(rr.results) do
    if x.retimed then
      n = n + 1
      other = other and x.state == "ok"
    end
  end
  return n, other
end
for _, x in ipairs(r.results) do
  check(x.state ~= "ok" or x.runs == 3, "3 runs behind each median: " .. x.config)
end
local all = ts.tune{file = tile, kernel = "scale_rows", shapes = shapes, repeats = 4,
                    close = 1e9, record = false}
local n, only_ok = retimed(all)
check(n == 4 and only_ok, "close = 1e9: the 4 correct configs timed in turns, got " .. n)
for i, x in ipairs(all.results) do
  check(x.state ~= "ok" or x.runs == 4 and x.spread >= 0, "4 rounds: " .. x.config)
  check(i == 1 or x.state ~= "ok" or x.median >= all.results[i - 1].median,
        "ranked by the rounds' medians")
end
check(retimed(ts.tune{file = tile, kernel = "scale_rows", shapes = shapes, repeats = 3,
                      close = 1, record = false}) == 0, "close = 1: none timed again")
check(retimed(ts.tune{file = tile, kernel = "scale_rows", shapes = shapes, repeats = 2,
                      close = 1e9, record = false}) == 0, "two rounds are too few")
check(not pcall(ts.tune, {file = tile, kernel = "scale_rows", shapes = shapes, close = 0.5}),
      "close below 1 refused")

-- the database now knows the best config for this bucket on this device
local best = ts.tuned(tile, "scale_rows", shapes)
check(best and string.format("BM=%d SKEW=%d", best.BM, best.SKEW) == r.best,
      "ts.tuned gives the best config")
-- and ts.kernel with the shapes compiles it; other buckets keep the defaults
local k = ts.kernel(tile, "scale_rows", nil, nil, {M = 250, N = 40})
check(k:config() == r.best, "ts.kernel compiles the tuned config: " .. k:config())
local other = ts.kernel(tile, "scale_rows", nil, nil, {M = 5000, N = 50})
check(other:config() == "", "another bucket: the defaults")
local explicit = ts.kernel(tile, "scale_rows", {BM = 1})
check(explicit:config() == "BM=1", "explicit params win")
-- the tuned kernel computes what the default does
local x = ts.tensor("f32", {250, 40})
local v = {}
for i = 1, 250 * 40 do v[i] = (i % 17) - 8 end
x:set(v)
local y1, y2 = ts.tensor("f32", {250, 40}), ts.tensor("f32", {250, 40})
k:launch{x, y1, 0.5}
k0:launch{x, y2, 0.5}
local a, b = y1:to_table(), y2:to_table()
local same = true
for i = 1, #a do same = same and a[i] == b[i] end
check(same, "the tuned config computes the same")

-- a dtype param held through the sweep: a bucket of its own, looked up
-- with the same value held (ts.tuned, ts.kernel), not without it
local rt = ts.tune{file = tile, kernel = "scale_typed", shapes = shapes, repeats = 3,
                   params = {XT = "bf16"}}
check(rt.bucket == "M=256 N=64 XT=bf16", "held params in the bucket: " .. tostring(rt.bucket))
check(rt.best and #rt.results == 3 and rt.results[3].state == "ok", "three bf16 configs timed")
local tb = ts.tuned(tile, "scale_typed", shapes, nil, nil, {XT = "bf16"})
check(tb and "BM=" .. tb.BM == rt.best, "ts.tuned with XT held")
check(ts.tuned(tile, "scale_typed", shapes) == nil, "XT = f32 (the default) is another bucket")
local kt = ts.kernel(tile, "scale_typed", {XT = "bf16"}, nil, shapes)
check(kt:config() == "XT=bf16 " .. rt.best, "ts.kernel holds XT and takes the best: " .. kt:config())
local kf = ts.kernel(tile, "scale_typed", {XT = "f32"}, nil, shapes)
check(kf:config() == "XT=f32", "nothing known for XT = f32: " .. kf:config())
local kx = ts.kernel(tile, "scale_typed", {BM = 4}, nil, shapes)
check(kx:config() == "BM=4", "a tuned param given: no lookup: " .. kx:config())
local xb = ts.tensor("f32", {250, 40}, v):cast("bf16")
local yb = ts.tensor("bf16", {250, 40})
kt:launch{xb, yb, 0.5}
local yv, okb = yb:to_table(), true
for i = 1, #yv do okb = okb and yv[i] == v[i] * 0.5 end
check(okb, "the tuned bf16 kernel computes x * s")
local okh, errh = pcall(ts.tune, {file = tile, kernel = "scale_typed", shapes = shapes,
                                  params = {BM = 2}, record = false})
check(not okh and errh:find("'BM' is swept", 1, true), "a tuned param cannot be held: " .. tostring(errh))

-- a GPU device: each config's registers and spill from ptxas -v (nil on
-- the CPU above), the spilling ones pruned unless keep_spills (a stand-in
-- ptxas that says the configs over 4 KiB of shared memory spill)
check(r.results[1].registers == nil, "no registers on the CPU")
if os.getenv("PTXAS") then
  local g = ts.tune{file = tile, kernel = "stage_rows", shapes = {M = 70}, repeats = 2,
                    device = ts.device("gpusim"), record = false}
  check(g.spilled == 2, "2 configs spill, got " .. tostring(g.spilled))
  for _, x in ipairs(g.results) do
    local big = x.config == "BM=16" or x.config == "BM=32"
    check(x.state == (big and "pruned" or "ok") and x.registers == 40 and x.spill == (big and 64 or 0),
          x.config .. ": " .. x.state .. ", " .. tostring(x.registers) .. " registers")
  end
  g = ts.tune{file = tile, kernel = "stage_rows", shapes = {M = 70}, repeats = 2,
              device = ts.device("gpusim"), record = false, keep_spills = true}
  check(g.spilled == 0 and g.results[4].state == "ok", "keep_spills times every config")
end

-- a file without a tune clause is an error
local ok, err = pcall(ts.tune, {file = "kernels/rmsnorm.tile", kernel = "rmsnorm_f32",
                                shapes = {T = 4, D = 4}})
check(not ok and err:find("no 'tune(...)' clause", 1, true), "no tune clause: " .. tostring(err))
-- a missing dim is an error naming it
ok, err = pcall(ts.tune, {file = tile, kernel = "scale_rows", shapes = {M = 4}, record = false})
check(not ok and err:find("--shape N=VALUE", 1, true), "missing dim: " .. tostring(err))

if failed > 0 then error(failed .. " checks failed") end
print("tune: all checks passed")
