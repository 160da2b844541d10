-- binding.lua - the tessera Lua module: tensors (create, values, views,
-- casts), kernels (compile, launch, argument errors), safetensors (load,
-- save, round trip, damaged files), devices. Run by ctest from the source
-- root as `tessera run tests/lua/binding.lua`; prints "N passed, N failed".
local ts = require "tessera"
local passed, failed = 0, 0

local function check(cond, what)
  if cond then
    passed = passed + 1
  else
    failed = failed + 1
    io.stderr:write("FAIL: ", what, "\n", debug.traceback(), "\n")
  end
end

local function errors_with(fn, needle, what)
  local ok, err = pcall(fn)
  check(not ok and tostring(err):find(needle, 1, true) ~= nil,
        what .. " (got: " .. tostring(err) .. ")")
end

-- this file as error locations name it ("FILE:"), as ctest runs it
local here = debug.getinfo(1, "S").short_src .. ":"

local function near(a, b, tol) return math.abs(a - b) <= tol end

-- devices
local dev = ts.default_device()
check(dev:name() == "cpu" and dev:threads() >= 1, "default device")
check(ts.default_device() == dev, "one default device per state")
errors_with(function() ts.device("tpu") end, "'cpu', 'cuda' or 'gpusim'", "unknown device")
do -- a GPU, or one line that says why there is none
  local ok, gpu = pcall(ts.device, "cuda")
  if ok then
    check(gpu:name() == "cuda", "cuda device")
    local x = ts.tensor("f32", {2, 3}, {1, 2, 3, 4, 5, 6}, gpu)
    local back = x:copy_to(dev):to_table()
    check(back[6] == 6 and #x:to_table() == 6, "tensors to and from the GPU")
  else
    check(tostring(gpu):find("no GPU: ", 1, true) ~= nil, "no GPU says why: " .. tostring(gpu))
  end
end
do -- ts.empty: no zeros; on the CPU and the simulator 0xff bytes (NaN,
   -- -1), so that an element a kernel leaves unwritten shows; sync and
   -- stats where every call is done when it returns
  for _, d in ipairs{dev, ts.device("gpusim")} do
    local f, i = ts.empty("f32", {2, 3}, d):to_table(), ts.empty("i32", {4}, d):to_table()
    check(#f == 6 and f[1] ~= f[1] and f[6] ~= f[6], d:name() .. ": empty f32 is NaN")
    check(#i == 4 and i[1] == -1 and i[4] == -1, d:name() .. ": empty i32 is -1")
    check(ts.empty("bf16", {3}, d):to_table()[2] ~= ts.empty("bf16", {3}, d):to_table()[2],
          d:name() .. ": empty bf16 is NaN")
    d:sync()
    local st = d:stats()
    check(st.launches == 0 and st.waits == 0 and st.zeroes == 0, d:name() .. ": no GPU stats")
    -- values fill every element (the tensor is made without zeros)
    local v = ts.tensor("f32", {2, 2}, {1, -2, 3, -4}, d):to_table()
    check(v[1] == 1 and v[2] == -2 and v[4] == -4, d:name() .. ": a tensor from values")
  end
  errors_with(function() ts.empty("f32", {-2}) end, "integers >= 0", "empty: bad shape")
  errors_with(function() ts.tensor("i32", {3}, {1, 2}) end, "2 values given", "too few values")
end
do -- an explicit grid replaces the kernel's: only its blocks run
  local x = ts.tensor("f32", {6, 5})
  x:set((function() local v = {} for i = 1, 30 do v[i] = i % 7 end return v end)())
  local y = ts.tensor("f32", {6, 5})
  local k = ts.kernel("kernels/softmax.tile", "softmax_rows", {BM = 2})
  k:launch{x, y, grid = {1}}
  local v = y:to_table()
  local first, rest = 0, 0
  for i = 1, 10 do first = first + v[i] end
  for i = 11, 30 do rest = rest + math.abs(v[i]) end
  check(math.abs(first - 2) < 1e-5 and rest == 0, "grid = {1}: rows 0-1 only")
  errors_with(function() k:launch{x, y, grid = {1, 2, 3, 4}} end, "1 to 3 block counts", "grid too long")
  errors_with(function() k:launch{x, y, grid = {-1}} end, "not a count of blocks", "negative grid")
end
do -- the GPU simulator runs a kernel in its GPU form, with the same result
  local sim = ts.device("gpusim")
  check(sim:name() == "gpusim", "gpusim device")
  local xs = {}
  for i = 1, 15 do xs[i] = (i * 7 % 5) - 2.5 end
  local outs = {}
  for _, d in ipairs{dev, sim} do
    local x = ts.tensor("f32", {3, 5}, xs, d)
    local y = ts.tensor("f32", {3, 5}, nil, d)
    ts.kernel("kernels/softmax.tile", "softmax_rows", {BM = 2}, d):launch{x, y}
    outs[#outs + 1] = y:to_table()
  end
  local same = true
  for i = 1, 15 do same = same and math.abs(outs[1][i] - outs[2][i]) < 1e-6 end
  check(same, "softmax on the GPU simulator agrees with the CPU")
end

-- tensors
local x = ts.tensor("f32", {2, 3}, {1, 2, 3, 4, 5, 6})
check(tostring(x) == "tensor f32[2, 3]", "tostring")
check(x:numel() == 6 and x:dtype() == "f32", "numel, dtype")
local s = x:shape()
check(#s == 2 and s[1] == 2 and s[2] == 3, "shape")
check(x:shape(1) == 2 and x:shape(2) == 3, "shape(k): one dim")
errors_with(function() return x:shape(3) end, "a dim of 1 .. 2", "shape(k) past the rank")
errors_with(function() return x:shape(0) end, "a dim of 1 .. 2", "shape(0)")
local v = x:to_table()
check(#v == 6 and v[1] == 1 and v[6] == 6, "to_table")
local row = x:slice(0, 1, 1)
check(row:to_table()[1] == 4, "a row view")
x:set({9, 8, 7, 6, 5, 4})
check(row:to_table()[1] == 6, "a view shares its buffer")
errors_with(function() x:slice(1, 0, 2):to_table() end, "strided view",
            "strided views are refused")
errors_with(function() x:slice(0, 1, 5) end, "slice [1, 6)", "slice out of range")
local b = ts.tensor("f32", {3}, {1.00390625, 3.14159, -0.1}):cast("bf16")
check(b:dtype() == "bf16" and b:to_table()[1] == 1.0 and
      near(b:to_table()[2], 3.140625, 0), "cast to bf16 rounds to nearest even")
errors_with(function() ts.tensor("f33", {1}) end, "unknown dtype 'f33'", "bad dtype")
errors_with(function() ts.tensor("f32", {-1}) end, "integers >= 0", "bad shape")
errors_with(function() ts.tensor("f32", {2}, {1}) end, "1 values given", "bad values")
local r = x:reshape{3, 2}
check(r:shape()[1] == 3 and r:to_table()[3] == x:to_table()[3], "reshape is a view")
errors_with(function() x:reshape{4, 2} end, "reshape of 6 elements into 8", "bad reshape")
local c = x:copy_to(dev)
x:set({0, 0, 0, 0, 0, 0})
check(c:to_table()[1] == 9, "copy_to copies")
do -- assign: rows into a slice, overlapping rows, and the checks
  local big = ts.tensor("f32", {4, 2})
  big:slice(0, 1, 2):assign(ts.tensor("f32", {2, 2}, {1, 2, 3, 4}))
  local v = big:to_table()
  check(v[1] == 0 and v[3] == 1 and v[6] == 4 and v[7] == 0, "assign into a slice of rows")
  big:slice(0, 2, 2):assign(big:slice(0, 1, 2))
  v = big:to_table()
  check(v[5] == 1 and v[7] == 3 and v[8] == 4, "assign between overlapping rows")
  errors_with(function() big:assign(ts.tensor("i32", {8})) end,
              "the dtype and the element count must agree", "assign of another dtype")
  errors_with(function() big:assign(ts.tensor("f32", {3})) end,
              "the dtype and the element count must agree", "assign of another count")
  errors_with(function() big:slice(1, 0, 1):assign(ts.tensor("f32", {4})) end,
              "strided", "assign into a strided view")
end
local i = ts.tensor("i32", {3}, {7, -2, 40000})
check(math.type(i:to_table()[1]) == "integer" and i:to_table()[3] == 40000, "ints")

-- kernels
local k = ts.kernel("kernels/softmax.tile", "softmax_rows", {BM = 1})
local xs = ts.tensor("f32", {2, 3}, {1, 2, 3, 0, 0, 0})
local ys = ts.tensor("f32", {2, 3})
k:launch{xs, ys}
local y = ys:to_table()
local e1, e2, e3 = math.exp(1 - 3), math.exp(2 - 3), 1
local sum = e1 + e2 + e3
check(near(y[1], e1 / sum, 1e-6) and near(y[3], 1 / sum, 1e-6) and
      near(y[4], 1 / 3, 1e-6), "softmax from Lua")
errors_with(function() k:launch{xs} end, "takes 2 arguments, given 1", "arg count")
errors_with(function() k:launch{xs, ts.tensor("f32", {2, 4})} end,
            "but 'N' is 3 from argument 'x'", "dims bound consistently")
errors_with(function() k:launch{xs, "y"} end, "tensors and numbers only", "arg type")
errors_with(function() ts.kernel("kernels/softmax.tile", "softmax_rows", {NOPE = 1}) end,
            "param NOPE: kernel 'softmax_rows' in 'kernels/softmax.tile' has no param 'NOPE'", "bad param")
errors_with(function() ts.kernel("kernels/none.tile", "k") end, "cannot open", "no file")
local kb = ts.kernel("kernels/softmax.tile", "softmax_rows_bf16")
local xb, yb = xs:cast("bf16"), ts.tensor("bf16", {2, 3})
kb:launch{xb, yb, 2.0}
check(near(yb:to_table()[4], 1 / 3, 2e-3), "a scalar argument")

do -- scalar arguments: a number for a number, a whole one in range for an
   -- integer param (an i32 given 2^32 wrapped to 0 before), a boolean or
   -- 0 / 1 for a bool; errors at the launching line
  for _, dn in ipairs{"cpu", "gpusim"} do
    local d = ts.device(dn)
    local kd = ts.kernel("tests/lua/scalars.tile", "scalars", {}, d)
    local o = ts.tensor("f32", {5}, nil, d)
    kd:launch{o, -128, 2147483647, 1 << 40, true, 0.5}
    local v = o:to_table()
    check(v[1] == -128 and v[2] == 2 ^ 31 and v[3] == 2 ^ 40 and v[4] == 1 and v[5] == 0.5,
          dn .. ": scalars at their ranges' ends (i32's in f32: 2^31): " .. table.concat(v, " "))
    kd:launch{o, 127, -2147483648, -3, 0, 7}
    v = o:to_table()
    check(v[1] == 127 and v[2] == -2147483648 and v[3] == -3 and v[4] == 0 and v[5] == 7,
          dn .. ": scalars: the other ends, 0 for a bool, an integer for a float")
  end
  local ks, out = ts.kernel("tests/lua/scalars.tile", "scalars"), ts.tensor("f32", {5})
  local line = debug.getinfo(1, "l").currentline
  local ok, err = pcall(function() ks:launch{out, 1, 1 << 32, 1, true, 0} end)
  check(not ok and err == here .. (line + 1) .. ": argument 3 ('b') of "
        .. "'scalars' is i32, given 4294967296: outside -2147483648 .. 2147483647",
        "i32 out of range, at the launching line (got: " .. tostring(err) .. ")")
  errors_with(function() ks:launch{out, 128, 1, 1, true, 0} end,
              "argument 2 ('a') of 'scalars' is i8, given 128: outside -128 .. 127", "i8 range")
  errors_with(function() ks:launch{out, 1, 1.5, 1, true, 0} end, "is i32, given a float",
              "a float for an int")
  errors_with(function() ks:launch{out, 1, true, 1, true, 0} end, "is i32, given a boolean",
              "a boolean for an int")
  errors_with(function() ks:launch{out, 1, 1, 1, 2, 0} end, "is bool, given 2", "2 for a bool")
  errors_with(function() ks:launch{out, 1, 1, 1, 0.5, 0} end, "is bool, given a float",
              "a float for a bool")
  errors_with(function() ks:launch{out, 1, 1, 1, true, false} end, "is f32, given a boolean",
              "a boolean for a float")
end
do -- values: integers exactly, in their dtype's range; floats round as
   -- stores do; a bool from true/false/1/0; a bad value named, at its line
  local big = (1 << 62) + 1
  local t = ts.tensor("i64", {3}, {big, -big, 2.0}):to_table()
  check(t[1] == big and t[2] == -big and t[3] == 2 and math.type(t[3]) == "integer",
        "i64 values exactly past 2^53")
  local b = ts.tensor("bool", {4}, {true, false, 1, 0}):to_table()
  check(b[1] == 1 and b[2] == 0 and b[3] == 1 and b[4] == 0, "bool values")
  local e = ts.tensor("fp8e4m3", {2}, {1000, -0.3}):to_table()
  check(e[1] == 448 and e[2] == -0.3125, "e4m3 values saturate and round")
  local line = debug.getinfo(1, "l").currentline
  local ok, err = pcall(function() return ts.tensor("i32", {2}, {1, 1.5}) end)
  check(not ok and err == here .. (line + 1) .. ": value 2 (1.5) is not "
        .. "an i32: integers from -2147483648 to 2147483647", "a fraction for an i32 (got: "
        .. tostring(err) .. ")")
  errors_with(function() ts.tensor("i8", {1}, {-129}) end, "value 1 (-129) is not an i8: "
              .. "integers from -128 to 127", "i8 range")
  errors_with(function() ts.tensor("i32", {1}, {1 << 31}) end, "value 1 (2147483648) is not",
              "i32 range")
  errors_with(function() ts.tensor("i64", {1}, {2 ^ 63}) end, "is not an i64", "i64 range")
  errors_with(function() ts.tensor("i32", {1}, {0 / 0}) end, "value 1 (", "NaN for an i32")
  errors_with(function() ts.tensor("bool", {2}, {1, 2}) end,
              "value 2 (2) is not a bool: true, false, 1 or 0", "2 for a bool")
  errors_with(function() ts.tensor("f32", {2}, {1, {}}) end, "value 2 is a table, not a number",
              "a table for a float")
  errors_with(function() ts.tensor("i32", {2}, {0, 0}):set{1, true} end, "value 2 (true) is not",
              "set: a boolean for an i32")
  -- runtime errors carry the launching line too
  line = debug.getinfo(1, "l").currentline
  ok, err = pcall(function() return ts.tensor("f32", {4}):slice(0, 3, 2) end)
  check(not ok and err == here .. (line + 1) .. ": slice [3, 5) of a dim of 4",
        "a slice out of range, at its line (got: " .. tostring(err) .. ")")
end

-- safetensors
local path = os.tmpname()
ts.save(path, {a = xs, ids = i}, {origin = "binding.lua"})
local f = ts.load(path)
local names = f:names()
table.sort(names)
check(#names == 2 and names[1] == "a" and names[2] == "ids", "saved names")
check(f:meta("origin") == "binding.lua" and f:meta("none") == nil, "metadata")
local a = f:get("a"):to_table()
check(a[2] == 2 and a[6] == 0, "round trip")
errors_with(function() f:get("b") end, "no tensor 'b'", "missing tensor")
local dt, sh = f:info("a")
check(dt == "f32" and #sh == 2 and sh[1] == xs:shape()[1] and sh[2] == xs:shape()[2] and
      f:info("ids") == i:dtype() and f:info("b") == nil, "info: dtype and shape from the header")
-- read_into: straight into a slice of a stack, on the CPU and the simulator
for _, dn in ipairs{"cpu", "gpusim"} do
  local stack = ts.tensor("f32", {3, xs:shape()[1], xs:shape()[2]}, nil, ts.device(dn))
  f:read_into("a", stack:slice(0, 1, 1))
  local v, n = stack:to_table(), xs:numel()
  check(v[n + 2] == a[2] and v[2 * n] == a[n] and v[1] == 0 and v[2 * n + 1] == 0,
        dn .. ": read_into fills the slice, nothing else")
end
errors_with(function() f:read_into("a", ts.tensor("f32", {5})) end, "'a' is f32[6], the tensor f32[5]",
            "read_into: the element count must agree")
errors_with(function() f:read_into("a", ts.tensor("bf16", {2, 3})) end, "the tensor bf16[6]",
            "read_into: the dtype must agree")
errors_with(function() f:read_into("b", ts.tensor("f32", {6})) end, "no tensor 'b'", "read_into: missing")
f:close()
errors_with(function() f:names() end, "closed", "closed file")
errors_with(function() ts.save(path, {a = xs, b = 3}) end, "ts.save: 'b' is a number, not a tensor",
            "save: a number for a tensor")
-- names and metadata written as JSON strings: quotes, backslashes, control
-- characters and UTF-8 come back as they went in; NUL is refused
local odd = {'q"uote', "back\\slash", "line\nbreak\ttab\1", "caf\u{e9}.\u{1F600}"}
local ts_odd, meta_odd = {}, {}
for k, name in ipairs(odd) do
  ts_odd[name] = ts.tensor("i32", {1}, {k})
  meta_odd[name] = name .. "=" .. k
end
ts.save(path, ts_odd, meta_odd)
local fo = ts.load(path)
local all = true
for k, name in ipairs(odd) do
  all = all and fo:get(name):to_table()[1] == k and fo:meta(name) == name .. "=" .. k
end
check(all and #fo:names() == #odd, "names and metadata with quotes, escapes, UTF-8 round trip")
fo:close()
errors_with(function() ts.save(path, {["a\0b"] = xs}) end, "holds a NUL byte", "save: NUL in a name")
errors_with(function() ts.save(path, {a = xs}, {k = "v\0"}) end, "metadata value", "save: NUL in metadata")
errors_with(function() ts.save(path, {a = xs}, {k = {}}) end, "values strings or numbers",
            "save: metadata not strings")
ts.save(path, {a = xs}, {k = 1.5})
fo = ts.load(path)
check(fo:meta("k") == "1.5", "save: a number in metadata is written as its text")
fo:close()
local h = io.open(path, "wb")
h:write("\16\0\0\0\0\0\0\0{\"a\":{\"dtype\":1}")
h:close()
errors_with(function() ts.load(path) end, path, "damaged file names itself")
os.remove(path)
errors_with(function() ts.load(path) end, "cannot open", "missing file")

local golden = "../shared/golden/tiny/weights.safetensors"
local gh = io.open(golden, "rb")
if gh then
  gh:close()
  local w = ts.load(golden)
  local e = w:get("embed.weight")
  check(e:dtype() == "bf16" and e:shape()[1] == 512, "golden weights load")
else
  print("skipped: " .. golden .. " is not present")
end

do
  local t <close> = ts.tensor("f32", {1})
  check(t:numel() == 1, "to-be-closed tensors")
end

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
