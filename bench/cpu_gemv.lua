-- cpu_gemv.lua - the model's linears on the CPU (model/ops.lua O.linear: a
-- decode step's GEMV, a batch's few rows, a prefill's) with f32, bf16 and
-- FP8 weights at two V4-Flash shapes (wo_b: 8192 -> 4096; wq_b: 1024 ->
-- 32768), in the tiles the model takes (O.linear_tiles: 8 weight rows a
-- block, x rows rounded up to 1, 2, 4 or 8, blocks of 8 up to 31 rows and
-- of 32 from 32) against the
-- tiles it took before (32 weight rows a block; 1, 8 or 32 x rows), the
-- same run, alternating. The two give the same bits (checked here; the sums
-- step K by 128 either way). Prints ms best and worst, the ratio of the
-- best, and the weight bytes a second of the model's tiles; run from the
-- source root:
--   build/tessera run bench/cpu_gemv.lua [--rows 1,2,4,8,16,24,64] [--runs 5]
--     [--shapes 4096x8192,32768x1024]
local ts = require "tessera"
local layers = require "bench.v4_layers"
local O = require "model.ops"

local usage = "cpu_gemv.lua [--rows 1,2,4,8,16,24,64] [--runs 5] [--shapes NxK,...]"
local opts = layers.options({rows = "1,2,4,8,16,24,64", runs = "5",
                             shapes = "4096x8192,32768x1024"}, usage)
local runs = math.tointeger(tonumber(opts.runs))
if not runs or runs < 1 then error("--runs: 1 or more", 0) end
local rows, shapes = {}, {}
for r in opts.rows:gmatch("%d+") do rows[#rows + 1] = math.tointeger(tonumber(r)) end
for item in opts.shapes:gmatch("[^,]+") do
  local n, k = item:match("^(%d+)x(%d+)$")
  if not n or tonumber(n) < 1 or tonumber(k) < 1 then
    error("--shapes: N x K pairs as 4096x8192, not " .. item .. "; usage: " .. usage, 0)
  end
  shapes[#shapes + 1] = {math.tointeger(tonumber(n)), math.tointeger(tonumber(k))}
end

local dev = ts.device("cpu")
local rand, seed = ts.kernel("bench/gpu.tile", "rand_f32", {}, dev), 0
local function random(shape, scale)
  local t = ts.tensor("f32", shape, nil, dev)
  seed = seed + 1
  rand:launch{t:reshape{t:numel()}, seed, scale}
  return t
end

local model_tiles = O.linear_tiles
local before = {[1] = {BM = 1, BN = 32, BK = 128}, [8] = {BM = 8, BN = 32, BK = 128},
                [32] = {BM = 32, BN = 32, BK = 128}}
local function before_tiles(n) return before[n == 1 and 1 or n <= 8 and 8 or 32] end

print("The model's linears on the CPU (O.linear), ms best-worst of " .. runs ..
      " runs alternating: the model's tiles (8 weight rows a block) against the earlier ones " ..
      "(32)")
print("| weights | N x K | rows | before ms | now ms | before / now (best) | now GB/s of weights |")
print("|---|---|---|---|---|---|---|")
for _, shape in ipairs(shapes) do
  local N, K = shape[1], shape[2]
  local w32 = random({N, K}, K ^ -0.5)
  local forms = {{"f32", w32, 4}, {"bf16", w32:cast("bf16"), 2}, {"fp8", O.fp8_weight(w32, 1), 1}}
  for _, f in ipairs(forms) do
    local name, w, bytes = f[1], f[2], f[3]
    for _, T in ipairs(rows) do
      local x = random({T, K}, 1.0)
      local y = {ts.tensor("f32", {T, N}, nil, dev), ts.tensor("f32", {T, N}, nil, dev)}
      local tiles = {before_tiles, model_tiles}
      local best, worst = {}, {}
      for r = 0, runs do -- (run 0 compiles and warms)
        for v = 1, 2 do
          O.linear_tiles = tiles[v]
          local t0 = ts.clock()
          O.linear(x, w, y[v])
          local dt = ts.clock() - t0
          if r > 0 then
            best[v], worst[v] = math.min(best[v] or dt, dt), math.max(worst[v] or dt, dt)
          end
        end
      end
      O.linear_tiles = model_tiles
      local a, b = y[1]:to_table(), y[2]:to_table()
      for i = 1, #a do
        if a[i] ~= b[i] then
          error(string.format("%s %dx%d, %d rows: the two tilings differ at %d (%g, %g)", name, N,
                              K, T, i, a[i], b[i]), 0)
        end
      end
      print(string.format("| %s | %d x %d | %d | %.2f-%.2f | %.2f-%.2f | %.2f | %.1f |", name, N, K,
                          T, best[1] * 1e3, worst[1] * 1e3, best[2] * 1e3, worst[2] * 1e3,
                          best[1] / best[2], N * K * bytes / best[2] / 1e9))
    end
  end
end
