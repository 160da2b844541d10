-- kernel_params.lua - the params tables the model hands model/ops.lua's
-- O.kernel: O.memo makes one table for each combination of its arguments
-- (nil and false apart), the same kernel as a table of equal values finds;
-- and a decode step meets no params table it has not met before (a table
-- built per call is compared by value against each compiled form's params,
-- on the host's path between two launches). Every table that arrives for
-- the first time during the watched steps is named with its kernel. On the
-- CPU, or on the device `cuda` (the mock driver in ctest: the GPU's forms),
-- with "fp8" and "f32" caches and the released formats (FP8 linears, FP4
-- experts).
-- Uses the golden tiny model for the decode (skips that part without it).
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local O = require "model.ops"
local check = C.check

-- (wrapped before the model's files are required: they keep the function
-- they find)
local met, watching, fresh = setmetatable({}, {__mode = "k"}), false, {}
local kernel = O.kernel
O.kernel = function(file, name, params)
  if params and not met[params] then
    met[params] = true
    if watching then fresh[#fresh + 1] = name end
  end
  return kernel(file, name, params)
end
local V4 = require "model.v4"

-- O.memo
local made = 0
local m = O.memo(function(a, b, c, d)
  made = made + 1
  return {A = a, B = b, C = c, D = d}
end)
local t = m(1, nil)
check(m(1, nil) == t and m(1) == t and made == 1, "memo: one table for the same values, made once")
check(m(1, false) ~= t and m(1, false).B == false and made == 2, "memo: nil and false apart")
check(m(2) ~= t and m(2).A == 2 and made == 3, "memo: another value, another table")
local four = m("x", true, 3.5, 7)
check(four ~= m("x", true, 3.5, 8) and four == m("x", true, 3.5, 7) and four.D == 7 and made == 5,
      "memo: each of four arguments keys the table")
local six = O.memo(function(a, b, c, d, e, f) return {a, b, c, d, e, f} end)
local t6 = six(1, 2, 3, 4, 5, 6)
check(six(1, 2, 3, 4, 5, 6) == t6 and six(1, 2, 3, 4, 9, 6) ~= t6 and six(1, 2, 3, 4, 5, 9) ~= t6
      and six(1, 2, 3, 4, 5, 9)[6] == 9, "memo: the fifth and sixth arguments key the table")
-- (the walks by make's parameter count: one, two, three, and a vararg make)
local one = O.memo(function(a) return {a} end)
check(one(1) == one(1) and one(1) ~= one(2) and one(nil) == one() and one(nil) ~= one(false)
      and one(false)[1] == false, "memo of one: keyed by its value, nil and false apart")
local two = O.memo(function(a, b) return {a, b} end)
check(two(1, 2) == two(1, 2) and two(1, 2) ~= two(1, 3) and two(1, 2) ~= two(2, 2)
      and two(1) == two(1, nil) and two(1) ~= two(1, false), "memo of two: each value keys it")
local three = O.memo(function(a, b, c) return {a, b, c} end)
check(three(1, 2, 3) == three(1, 2, 3) and three(1, 2, 3) ~= three(1, 2, 4)
      and three(1, 2, 4)[3] == 4, "memo of three: the third value keys it")
local va = O.memo(function(...) return {...} end)
check(va(1, 2, 3, 4, 5, 6) ~= va(1, 2, 3, 4, 5, 7) and va(1, 2, 3, 4, 5, 7)[6] == 7,
      "memo of a vararg make: six values key it")
O.use(ts.device("cpu"))
check(O.on_gpu() == false, "on_gpu: false on the CPU")
O.use(ts.device("gpusim"))
check(O.on_gpu() == true, "on_gpu: true on the simulator")
-- O.attn_heads: a decode step's heads a block of the exact attention, on a
-- GPU until 8 blocks (or 8 heads a block), on the CPU until its cores
check(O.attn_heads(1, 64) == 8 and O.attn_heads(2, 64) == 16 and O.attn_heads(8, 64) == nil
      and O.attn_heads(1, 4) == nil, "attn_heads on the simulator")
O.use(ts.device("cpu"))
local n = ts.device("cpu"):threads()
local want = n >= 64 and 1 or 64
while want > 1 and 64 // want < n do want = want // 2 end
check(O.attn_heads(1, 64) == (want < 64 and want or nil) and O.attn_heads(n, 64) == nil,
      string.format("attn_heads on %d CPU threads: %s", n, O.attn_heads(1, 64)))
O.use(nil)
check(O.on_gpu() == (ts.default_device():name() ~= "cpu"), "on_gpu: the default device's")
O.use(ts.device("cpu"))
local K8 = O.memo(function(k) return {K = k} end)
check(O.kernel("topk.tile", "topk", K8(8)) == O.kernel("topk.tile", "topk", {K = 8}),
      "memo: the kernel a table of equal values gives")
check(O.kernel("topk.tile", "topk", K8(8)) ~= O.kernel("topk.tile", "topk", K8(16)),
      "memo: another value, another kernel")

local dir, ids = C.golden()
if not dir then return C.finish() end
local dev = ts.device("cpu")
if arg[1] == "cuda" then
  local ok, d = pcall(ts.device, "cuda")
  if not ok then
    print("skipped on cuda: " .. tostring(d))
    return C.finish()
  end
  dev = d
end
local N = 9
for _, opts in ipairs{{kv_format = "fp8"}, {kv_format = "f32"},
                      {kv_format = "fp8", linears = "fp8", experts = "fp4"}} do
  opts.device = dev
  local model = V4.load(dir, nil, opts)
  model:prefill(C.ids(ids, 1, N))
  for s = 1, 4 do model:decode(ids[N + s]) end -- each kernel's first form met
  watching, fresh = true, {}
  for s = 5, 12 do model:decode(ids[N + s]) end -- CSA and indexer entries completed
  watching = false
  dev:sync()
  local what = string.format("%s, %s caches, %s linears, %s experts", dev:name(),
                             opts.kv_format, opts.linears or "f32", opts.experts or "bf16")
  check(#fresh == 0, string.format("%s: decode steps 5-12 met %d params tables anew (%s)", what,
                                   #fresh, table.concat(fresh, ", ")))
  print(string.format("%s: %d params tables met anew in 8 decode steps", what, #fresh))
end
C.finish()
