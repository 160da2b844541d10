-- topk.lua - the model's top-k (model/ops.lua O.topk): with the two-level
-- path forced (every row split into chunks), each row's selection equals a
-- plain Lua selection (highest score, ties to the lower index, indices
-- increasing, -1 pads) and the one-block kernel's; rows with many ties,
-- lengths that end mid-chunk, on a chunk edge, past N, and 0.
local ts = require "tessera"
local O = require "model.ops"
local passed, failed = 0, 0
local function check(ok, what)
  if ok then passed = passed + 1 else failed = failed + 1; print("FAIL: " .. what) end
end

O.use(ts.device("cpu"))
local R, N, K = 5, 3000, 32
local lens = {3000, 2049, 512, 9999, 0}
local v, seed = {}, 7
for r = 0, R - 1 do
  for i = 0, N - 1 do
    seed = (seed * 1103515245 + 12345) % 2147483648
    local u = seed / 2147483648
    -- row 1: coarse values (ties everywhere); row 2 all negative (below
    -- anything a pad could hold); others spread
    v[r * N + i + 1] = r == 1 and math.floor(u * 6) * 0.5 or r == 2 and -u - 1 or u * 20 - 10
  end
end
local scores = O.tensor("f32", {R, N}, v)
local len = O.tensor("i32", {R}, lens)

local function want(r)
  local n, idx = math.min(lens[r + 1], N), {}
  for i = 0, n - 1 do idx[#idx + 1] = i end
  table.sort(idx, function(a, b)
    local x, y = v[r * N + a + 1], v[r * N + b + 1]
    if x ~= y then return x > y end
    return a < b
  end)
  local out = table.move(idx, 1, math.min(K, n), 1, {})
  table.sort(out)
  for j = #out + 1, K do out[j] = -1 end
  return out
end

local single = O.topk(scores, len, K):to_table()
O.topk_split_at = 0
local two = O.topk(scores, len, K):to_table()
for r = 0, R - 1 do
  local w = want(r)
  local same1, same2 = true, true
  for j = 1, K do
    same1 = same1 and single[r * K + j] == w[j]
    same2 = same2 and two[r * K + j] == w[j]
  end
  check(same1, "one-block top-k, row " .. r)
  check(same2, "two-level top-k, row " .. r)
end

-- an output that does not match the chunking is refused with the kernel's message
local ok, err = pcall(function()
  O.kernel("topk.tile", "topk", {K = K, CH = 512}):launch{scores, len, O.tensor("i32", {R, K})}
end)
check(not ok and tostring(err):find("out must be", 1, true), "bad chunked out refused: " .. tostring(err))

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
