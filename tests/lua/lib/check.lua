-- check.lua - what the Lua tests share (tests/lua/lib is not itself a
-- test): counting checks, the relative error of two flat tables, and the
-- golden tiny model's folder (a test that needs it skips without it).
local ts = require "tessera"
local C = {passed = 0, failed = 0}

function C.check(ok, what)
  if ok then
    C.passed = C.passed + 1
  else
    C.failed = C.failed + 1
    print("FAIL: " .. what)
  end
end

-- Prints the counts; exits 1 when a check failed.
function C.finish()
  print(string.format("%d passed, %d failed", C.passed, C.failed))
  if C.failed > 0 then os.exit(1) end
end

-- An f32 tensor of n rows of w (values vals, flat) in the middle of one
-- of 3 n rows on device dev, the rows around holding `fill` + their flat
-- index (1-based): an access let through past either end of the middle
-- reads those or writes over them. Returns the whole, the middle and the
-- whole's values as a table.
function C.framed(n, w, vals, fill, dev)
  local all = {}
  for i = 1, 3 * n * w do all[i] = fill + i end
  for i = 1, n * w do all[n * w + i] = vals[i] end
  local big = ts.tensor("f32", {3 * n, w}, all, dev)
  return big, big:slice(0, n, n), all
end

-- Counts the launches of each kernel by name, for the tests of which forms
-- the model takes: wraps model/ops.lua's O.kernel, so call it before the
-- model's files are required (they keep the function they find). Returns
-- take(): the counts since the last take (name -> launches), starting anew.
function C.launch_counter()
  local O = require "model.ops"
  local seen, kernel = {}, O.kernel
  O.kernel = function(file, name, ...)
    seen[name] = (seen[name] or 0) + 1
    return kernel(file, name, ...)
  end
  return function()
    local got = seen
    seen = {}
    return got
  end
end

-- A seeded generator of numbers in [0, 1) (an LCG: the same sequence on
-- every machine), for the tests' random inputs.
function C.lcg(seed)
  local s = seed
  return function()
    s = (s * 1103515245 + 12345) % 2147483648
    return s / 2147483648
  end
end

-- x rounded to f32
function C.f32(x) return (string.unpack("f", string.pack("f", x))) end

-- 2^ceil(log2(r)) for r > 0 (r an f32: exact powers of two stay): the
-- ue8m0 scale of V4-SPEC 1.11, written from its definition
function C.ue8m0(r)
  local e = math.ceil(math.log(r, 2))
  if 2.0 ^ (e - 1) >= r then e = e - 1 end
  if 2.0 ^ e < r then e = e + 1 end
  return 2.0 ^ e
end

-- n f32 values in (-scale, scale) times 2^-3 .. 2^2: a spread of
-- magnitudes, so that quantisation blocks get different scales
function C.spread(n, seed, scale)
  local r, v = C.lcg(seed), {}
  for i = 1, n do v[i] = C.f32((r() * 2 - 1) * scale * 2.0 ^ math.floor(r() * 6 - 3)) end
  return v
end

-- A model's logits for the first N ids as a prompt, then `steps` decode
-- steps (3 by default) of the ids after them: a list of flat tables.
function C.logits(m, ids, N, steps)
  local prompt = ts.tensor("i32", {N}, table.move(ids, 1, N, 1, {}))
  local out = {m:prefill(prompt):to_table()}
  for s = 1, steps or 3 do out[#out + 1] = m:decode(ids[N + s]):to_table() end
  return out
end

-- The greedy pick of logits [1, V] (the lowest index of the largest).
function C.greedy(logits)
  local t = logits:to_table()
  local bi = 1
  for i = 2, #t do if t[i] > t[bi] then bi = i end end
  return bi - 1
end

-- A plain greedy decode's first n tokens after the prompt (a table of
-- ids), in a new sequence of model m alone; and that sequence (its last
-- token picked, not decoded).
function C.greedy_tokens(m, prompt, n)
  local s, out = m:sequence(), {}
  local l = s:prefill(ts.tensor("i32", {#prompt}, prompt))
  for k = 1, n do
    out[k] = C.greedy(l)
    if k < n then l = s:decode(out[k]) end
  end
  return out, s
end

-- How many entries of two such lists differ, and how many there are.
function C.differ(a, b)
  local n, total = 0, 0
  for s = 1, #b do
    for j = 1, #b[s] do
      total = total + 1
      if a[s][j] ~= b[s][j] then n = n + 1 end
    end
  end
  return n, total
end

-- a [M, K] times b [N, K] transposed, in doubles (flat tables, row-major)
function C.matmul_bt(a, b, M, N, K)
  local y = {}
  for m = 0, M - 1 do
    for n = 0, N - 1 do
      local s = 0
      for k = 0, K - 1 do s = s + a[m * K + k + 1] * b[n * K + k + 1] end
      y[m * N + n + 1] = s
    end
  end
  return y
end

-- Whether flat tables a and b hold the same f32 bits (NaNs and zeros'
-- signs included).
function C.same_bits(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if string.pack("<f", a[i]) ~= string.pack("<f", b[i]) then return false end
  end
  return true
end

-- Whether two flat lists (or tensors: their values) have the same length
-- and entries (==: a NaN equals nothing).
function C.same(a, b)
  if type(a) == "userdata" then a = a:to_table() end
  if type(b) == "userdata" then b = b:to_table() end
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- ||a - b|| / ||b|| over the entries of b
function C.relerr(a, b)
  local num, den = 0, 0
  for i = 1, #b do
    num = num + (a[i] - b[i]) ^ 2
    den = den + b[i] ^ 2
  end
  return math.sqrt(num / den)
end

-- The golden tiny model's folder and its recorded prompt (input_ids as a
-- Lua list), or nil after saying that the test skips.
function C.golden()
  local dir = "../shared/golden/tiny"
  local probe = io.open(dir .. "/config.json", "rb")
  if not probe then
    print("skipped: no golden folder at " .. dir)
    print("0 passed, 0 failed")
    return nil
  end
  probe:close()
  return dir, ts.load(dir .. "/f32.safetensors"):get("input_ids"):to_table()
end

-- ids[first .. first + n - 1] (a Lua list, e.g. golden's prompt) as an i32
-- tensor [n].
function C.ids(ids, first, n)
  return ts.tensor("i32", {n}, table.move(ids, first, first + n - 1, 1, {}))
end

return C
