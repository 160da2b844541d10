-- dot_lanes.lua - the order of a CPU dot gemm's sums (c += a . b^T over f32
-- tiles: compiler/gen_tile.c dot_emit). Each element's products go into 8
-- lanes, k's into lane k mod 8 by fused multiply-adds in k order; the
-- lanes are summed by the halving tree ((l0 + l4) + (l2 + l6)) + ((l1 +
-- l5) + (l3 + l7)) and added to c. In a loop whose gemms alone name their
-- accumulator (gen_lanes_begin) the lanes run across the whole loop and are
-- summed once after it, so an output depends on K alone, not on the step
-- BK (tests/lua/dot_lanes.tile `lanes`, and `nested`: two loops around the
-- gemm, the lanes across both); where the loop reads the accumulator too
-- (`seen`) each step's lanes are summed into it, and with
-- accumulate=false (`last`) only the last step's count. Each checked bit
-- for bit against those orders computed here (values on a grid of 2^-12,
-- so that each product and running sum is exact in a double and a fused
-- multiply-add is one rounding to f32, while the f32 sums round), on M, N,
-- K no multiple of the tiles; the two orders differ on these inputs.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/dot_lanes.tile"
local cpu = ts.device("cpu")
local u = C.lcg(57)
local f32 = C.f32

local function grid_values(n)
  local v = {}
  for i = 1, n do v[i] = (math.floor(u() * 8192) - 4096) / 4096 end
  return v
end

-- the tree over lanes l[1 .. 8]
local function tree(l)
  return f32(f32(f32(l[1] + l[5]) + f32(l[3] + l[7])) + f32(f32(l[2] + l[6]) + f32(l[4] + l[8])))
end

-- element (m, n): the lanes over k in [k0, k1), then their tree
local function lane_sum(xv, wv, K, m, n, k0, k1)
  local l = {0, 0, 0, 0, 0, 0, 0, 0}
  for k = k0, k1 - 1 do
    local q = (k - k0) % 8 + 1
    l[q] = f32(xv[m * K + k + 1] * wv[n * K + k + 1] + l[q])
  end
  return tree(l)
end

-- the outputs in one of three orders: "lanes" (across all of K), "steps"
-- (a tree a step of BK added in turn), "last" (the last step's tree)
local function want(xv, wv, M, N, K, BK, order)
  local y = {}
  local steps = (K + BK - 1) // BK
  for m = 0, M - 1 do
    for n = 0, N - 1 do
      local s = 0
      if order == "lanes" then
        s = f32(0 + lane_sum(xv, wv, K, m, n, 0, K))
      else
        for st = order == "last" and steps - 1 or 0, steps - 1 do
          local k1 = math.min(K, (st + 1) * BK)
          local t = lane_sum(xv, wv, K, m, n, st * BK, k1)
          s = order == "last" and t or f32(s + t)
        end
      end
      y[m * N + n + 1] = s
    end
  end
  return y
end

local function run(name, M, N, K, p)
  local x = ts.tensor("f32", {M, K}, p.xv, cpu)
  local w = ts.tensor("f32", {N, K}, p.wv, cpu)
  local y = ts.tensor("f32", {M, N}, nil, cpu)
  local args = {x, w, y}
  if name == "seen" then args[4] = ts.tensor("f32", {1}, nil, cpu) end
  ts.kernel(file, name, {BM = p.BM, BN = p.BN, BK = p.BK}, cpu):launch(args)
  return y:to_table()
end

for _, shape in ipairs{{5, 13, 150}, {8, 16, 256}, {3, 9, 40}} do
  local M, N, K = shape[1], shape[2], shape[3]
  local xv, wv = grid_values(M * K), grid_values(N * K)
  local lanes, f64 = want(xv, wv, M, N, K, K, "lanes"), C.matmul_bt(xv, wv, M, N, K)
  local differ = false
  for _, t in ipairs{{4, 8, 8}, {4, 8, 16}, {2, 16, 64}, {1, 8, 128}} do
    local p = {xv = xv, wv = wv, BM = t[1], BN = t[2], BK = t[3]}
    local what = string.format("M %d N %d K %d, %d x %d x %d tiles", M, N, K, t[1], t[2], t[3])
    local steps = want(xv, wv, M, N, K, t[3], "steps")
    differ = differ or not C.same_bits(steps, lanes)
    local y = run("lanes", M, N, K, p)
    C.check(C.same_bits(y, lanes), what .. ": lanes across the loop")
    C.check(C.relerr(y, f64) < 1e-5, what .. ": near f64")
    C.check(C.same_bits(run("nested", M, N, K, p), lanes), what .. ": lanes across two loops")
    C.check(C.same_bits(run("seen", M, N, K, p), steps),
            what .. ": read in the loop: a tree a step")
    C.check(C.same_bits(run("last", M, N, K, p), want(xv, wv, M, N, K, t[3], "last")),
            what .. ": accumulate=false: the last step's tree")
  end
  C.check(differ, string.format("M %d N %d K %d: the orders differ on these values", M, N, K))
end

C.finish()
