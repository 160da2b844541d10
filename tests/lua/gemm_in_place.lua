-- gemm_in_place.lua - on the CPU a gemm whose operand tiles are copies of
-- tensor slices used by it alone reads those slices in place where they
-- lie wholly inside their tensors (compiler/gen_tile.c gen_gemm_in_place),
-- the copies as written elsewhere. tests/lua/gemm_in_place.tile's
-- dot_in_place (that form) against dot_copied (the same loop, its tiles
-- read after it too, so copied every step): bit for bit equal, on shapes
-- where every tile is inside, where none of the edge ones are (M, N, K no
-- multiple of the tiles) and with a group stride (G > 1), for f32 and bf16
-- weights, the decode, batch and prefill tilings, accumulating or not; and
-- near an f64 reference. The copied form's tiles end as the last step left
-- them. The model's linears take the same path (gemm.tile linear_f32).
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/gemm_in_place.tile"
local u = C.lcg(5)
local function r() return u() * 2 - 1 end
local cpu = ts.device("cpu")

local function case(M, G, N, K, tiles, W, acc)
  local xv, wv = {}, {}
  for i = 1, M * G * K do xv[i] = r() end
  for i = 1, G * N * K do wv[i] = r() end
  local x = ts.tensor("f32", {M, G, K}, xv)
  local w = ts.tensor("f32", {G, N, K}, wv)
  if W == "bf16" then w = w:cast("bf16") end
  local p = {W = W, ACC = acc and 1 or 0}
  for k, v in pairs(tiles) do p[k] = v end
  local a = ts.tensor("f32", {M, G, N}, nil, cpu)
  local b = ts.tensor("f32", {M, G, N}, nil, cpu)
  local seen = ts.tensor("f32", {2}, nil, cpu)
  ts.kernel(file, "dot_in_place", p, cpu):launch{x, w, a}
  ts.kernel(file, "dot_copied", p, cpu):launch{x, w, b, seen}
  local what = string.format("M %d G %d N %d K %d BM %d %s%s", M, G, N, K, tiles.BM, W,
                             acc and "" or " (accumulate=false)")
  local av, bv = a:to_table(), b:to_table()
  local same = #av == M * G * N
  for i = 1, #av do if av[i] ~= bv[i] then same = false end end
  C.check(same, what .. ": read in place differs from copied")
  -- against f64: the sum over every K step, or the last step's alone
  local wq = w:cast("f32"):to_table()
  local BK = tiles.BK
  local k0 = acc and 0 or ((K + BK - 1) // BK - 1) * BK
  local want = {}
  for m = 0, M - 1 do
    for g = 0, G - 1 do
      for n = 0, N - 1 do
        local s = 0
        for k = k0, K - 1 do
          s = s + xv[(m * G + g) * K + k + 1] * wq[(g * N + n) * K + k + 1]
        end
        want[(m * G + g) * N + n + 1] = s
      end
    end
  end
  C.check(C.relerr(av, want) < 1e-5, what .. ": against f64")
  -- the copied form's tiles: block (0, 0, 0)'s last step
  local last = ((K + BK - 1) // BK - 1) * BK
  local sv = seen:to_table()
  C.check(sv[1] == x:to_table()[last + 1] and sv[2] == wq[last + 1], what .. ": the copied tiles")
end

for _, W in ipairs{"f32", "bf16"} do
  for _, tiles in ipairs{{BM = 1, BN = 32, BK = 128}, {BM = 8, BN = 32, BK = 128},
                         {BM = 32, BN = 32, BK = 128}, {BM = 4, BN = 16, BK = 64}} do
    case(tiles.BM * 2, 1, 64, 256, tiles, W, true)  -- every tile inside
    case(11, 1, 70, 300, tiles, W, true)            -- edge tiles outside
    case(5, 3, 33, 200, tiles, W, true)             -- a group stride
    case(tiles.BM, 2, 32, 384, tiles, W, false)     -- accumulate=false
  end
end
C.finish()
