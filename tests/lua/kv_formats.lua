-- kv_formats.lua - the caches' production byte formats (kernels/quant.tile
-- kv_pack/kv_unpack, fp4_pack/fp4_unpack): the byte layout on hand-made
-- rows, unpack(pack(x)) equal bit for bit to the fp8_sim/fp4_sim kernels at
-- the tiny and the V4-Flash widths (and the gathers kv_unpack_rows and
-- embed.tile's rows_f32 to unpack's rows; both unpacks into bf16 exact;
-- kv_list's byte rows, a decode step's list for sparse_attn_split_kv8), to
-- DeepSeek's recorded simulations
-- (../shared/golden/tiny/bf16.safetensors, when present), and the row
-- sizes checked by the kernels.
local ts = require "tessera"
local passed, failed = 0, 0
local function check(ok, what)
  if ok then passed = passed + 1 else failed = failed + 1; print("FAIL: " .. what) end
end

local dev = ts.device("cpu")
local function kernel(name, params)
  return ts.kernel("kernels/quant.tile", name, params or {}, dev)
end

local function kv_bytes(c, rope)
  local nope = c - rope
  return (nope + 2 * rope + nope // 64 + 7) // 8 * 8
end

local function pack_kv(x, rope)
  local s = x:shape()
  local b = ts.tensor("i8", {s[1], kv_bytes(s[2], rope)})
  kernel("kv_pack", {ROPE = rope}):launch{x, b}
  local y = ts.tensor("f32", s)
  kernel("kv_unpack", {ROPE = rope}):launch{b, y}
  return b, y
end

local function pack_fp4(x)
  local s = x:shape()
  local b = ts.tensor("i8", {s[1], s[2] // 2 + s[2] // 32})
  kernel("fp4_pack"):launch{x, b}
  local y = ts.tensor("f32", s)
  kernel("fp4_unpack"):launch{b, y}
  return b, y
end

-- the first n values of two flat tables agree bit for bit (NaN-free here)
local function same(a, b, what)
  for i = 1, #b do
    if a[i] ~= b[i] or (a[i] == 0 and 1 / a[i] ~= 1 / b[i]) then
      check(false, string.format("%s: element %d: %s vs %s", what, i, tostring(a[i]),
                                 tostring(b[i])))
      return
    end
  end
  check(#a == #b, what .. ": sizes")
end

-- 1. the byte layout: a row of 1.0 (scale 2^-8, e4m3 256 = 0x78) with rope
-- dims 1.0 (bf16 0x3f80), then a row of zeros (scale from amax 1e-4)
do
  local v = {}
  for i = 1, 128 do v[i] = 1.0 end
  for i = 129, 256 do v[i] = 0.0 end
  local b, y = pack_kv(ts.tensor("f32", {2, 128}, v), 64)
  local bv = b:to_table()
  check(#bv == 2 * 200, "tiny row is 200 bytes (64 + 128 + 1 + 7 pad)")
  check(bv[1] == 0x78 and bv[64] == 0x78, "e4m3 code of 1.0 at scale 2^-8")
  check(bv[65] == -128 and bv[66] == 0x3f, "bf16 1.0 little-endian")
  check(bv[193] == 127 - 8, "ue8m0 scale byte")
  local pad = true
  for i = 194, 200 do pad = pad and bv[i] == 0 end
  check(pad, "pad bytes are zero")
  check(bv[201] == 0 and bv[200 + 193] == 127 - 22, "zero row: code 0, scale 2^-22 (amax 1e-4)")
  same(y:to_table(), v, "unpacked hand rows")
  local k = {}
  for i = 1, 32 do k[i] = ({0, 0.5, -1, 1.5, 2, -3, 4, 6})[(i - 1) % 8 + 1] end
  for i = 33, 128 do k[i] = -0.0 end
  local fb, fy = pack_fp4(ts.tensor("f32", {1, 128}, k))
  local fv = fb:to_table()
  check(#fv == 68, "FP4 row is 68 bytes")
  check(fv[1] == 0x10 and fv[2] == 0x3a and fv[3] == 0xd4 - 256 and fv[4] == 0x76,
        "e2m1 pairs, even element low")
  check(fv[65] == 127, "FP4 scale 2^0 for amax 6")
  check(fv[17] == (0x88 - 256), "negative zero keeps its sign")
  same(fy:to_table(), k, "unpacked FP4 row")
end

-- 2. unpack(pack(x)) = fp8_sim / fp4_sim bit for bit on random rows,
-- tiny (128 = 64 + 64) and V4-Flash (512 = 448 + 64) widths
local seed = 12345
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
end
for _, case in ipairs{{37, 128, "cpu"}, {19, 512, "cpu"}, {5, 512, "gpusim"}} do
  dev = ts.device(case[3])
  local n, c = case[1], case[2]
  local v = {}
  for i = 1, n * c do
    local mag = 10 ^ (rnd() * 8 - 5)
    v[i] = (rnd() < 0.5 and -mag or mag)
  end
  local xb = ts.tensor("f32", {n, c}, v):cast("bf16")
  local x = xb:cast("f32")
  local kb, y = pack_kv(x, 64)
  local sim = ts.tensor("bf16", {n, c})
  kernel("fp8_sim"):launch{xb, sim}
  local yv, sv, xv = y:to_table(), sim:cast("f32"):to_table(), x:to_table()
  local want = {}
  for r = 0, n - 1 do
    for j = 1, c do
      want[r * c + j] = j <= c - 64 and sv[r * c + j] or xv[r * c + j]
    end
  end
  same(yv, want, string.format("kv %dx%d against fp8_sim (%s)", n, c, case[3]))
  -- a decode step's gathers: kv_unpack_rows of the packed rows and rows_f32
  -- of the f32 ones give kv_unpack's rows (repeats, -1 a row of zeros)
  local list = {n - 1, 0, -1, n // 2, n // 2, -1}
  local rows = ts.tensor("i32", {#list}, list)
  local g, g2 = ts.tensor("f32", {#list, c}), ts.tensor("f32", {#list, c})
  kernel("kv_unpack_rows", {ROPE = 64}):launch{kb, rows, g}
  ts.kernel("kernels/embed.tile", "rows_f32", {}, dev):launch{y, rows, g2}
  local rw = {}
  for k, r in ipairs(list) do
    for j = 1, c do rw[(k - 1) * c + j] = r >= 0 and yv[r * c + j] or 0.0 end
  end
  same(g:to_table(), rw, string.format("kv_unpack_rows %dx%d (%s)", n, c, case[3]))
  same(g2:to_table(), rw, string.format("rows_f32 %dx%d (%s)", n, c, case[3]))
  -- unpacked into bf16 (a bf16 attention's KV list): the same values, exact
  local y16, g16 = ts.tensor("bf16", {n, c}), ts.tensor("bf16", {#list, c})
  kernel("kv_unpack", {ROPE = 64, XT = "bf16"}):launch{kb, y16}
  kernel("kv_unpack_rows", {ROPE = 64, XT = "bf16"}):launch{kb, rows, g16}
  same(y16:cast("f32"):to_table(), yv, string.format("kv_unpack bf16 %dx%d (%s)", n, c, case[3]))
  same(g16:cast("f32"):to_table(), rw,
       string.format("kv_unpack_rows bf16 %dx%d (%s)", n, c, case[3]))
  -- a decode step's KV list in the cache's bytes (kv_list: the ring's W
  -- rows as they lie, then the selected rows, zero bytes for -1)
  local W, E = 3, kv_bytes(c, 64)
  local kl = ts.tensor("i8", {W + #list, E})
  kernel("kv_list"):launch{kb:slice(0, 0, W), kb, rows, kl}
  local kbv, wb = kb:to_table(), {}
  for i = 1, W * E do wb[i] = kbv[i] end
  for k, r in ipairs(list) do
    for j = 1, E do wb[(W + k - 1) * E + j] = r >= 0 and kbv[r * E + j] or 0 end
  end
  same(kl:to_table(), wb, string.format("kv_list %dx%d (%s)", n, c, case[3]))
  for _, bad in ipairs{{W + #list + 1, list, "y holds the ring's W rows"},
                       {W + 1, {n}, "a row past the cache"}} do
    local ok, msg = pcall(function()
      kernel("kv_list"):launch{kb:slice(0, 0, W), kb, ts.tensor("i32", {#bad[2]}, bad[2]),
                               ts.tensor("i8", {bad[1], E})}
    end)
    check(not ok and tostring(msg):find(bad[3], 1, true) ~= nil,
          string.format("kv_list refuses (%s): %s", case[3], tostring(msg)))
  end
  local _, fy = pack_fp4(x)
  local fsim = ts.tensor("bf16", {n, c})
  kernel("fp4_sim"):launch{xb, fsim}
  same(fy:to_table(), fsim:cast("f32"):to_table(),
       string.format("fp4 %dx%d against fp4_sim (%s)", n, c, case[3]))
end
dev = ts.device("cpu")

-- 3. DeepSeek's recorded simulations (nope dims of the window KV and the
-- compressed entries; indexer queries and keys)
local gpath = "../shared/golden/tiny/bf16.safetensors"
local probe = io.open(gpath, "rb")
if probe then
  probe:close()
  local g = ts.load(gpath)
  for _, which in ipairs{"0", "1"} do
    local gx = g:get("prefill.layers.1.fp8_sim." .. which .. ".x"):cast("f32")
    local gy = g:get("prefill.layers.1.fp8_sim." .. which .. ".y"):cast("f32")
    local n = gx:shape()[1]
    local xv, row = gx:to_table(), {}
    for r = 0, n - 1 do
      for j = 1, 64 do row[r * 128 + j] = xv[r * 64 + j] end
      for j = 65, 128 do row[r * 128 + j] = 0.0 end
    end
    local _, y = pack_kv(ts.tensor("f32", {n, 128}, row), 64)
    local yv, got = y:to_table(), {}
    for r = 0, n - 1 do
      for j = 1, 64 do got[r * 64 + j] = yv[r * 128 + j] end
    end
    same(got, gy:to_table(), "golden fp8_sim." .. which)
    local fx = g:get("prefill.layers.1.fp4_sim." .. which .. ".x"):cast("f32")
    local fyv = g:get("prefill.layers.1.fp4_sim." .. which .. ".y"):cast("f32"):to_table()
    local _, fy = pack_fp4(fx:reshape{fx:numel() // 128, 128})
    same(fy:to_table(), fyv, "golden fp4_sim." .. which)
  end
else
  print("skipped the golden comparison (no " .. gpath .. ")")
end

-- 4. the model with "fp8" caches: fed the attention inputs DeepSeek's
-- faithful run recorded, every layer's attention output is closer to that
-- run's than the exact-math ("f32") model's is (the simulations sit where
-- the reference puts them)
if probe then
  local V4 = require "model.v4"
  local dir = "../shared/golden/tiny"
  local g = ts.load(gpath)
  local function relerr(a, b)
    local num, den = 0, 0
    for i = 1, #b do num = num + (a[i] - b[i]) ^ 2; den = den + b[i] ^ 2 end
    return math.sqrt(num / den)
  end
  local T = g:get("prefill.layers.0.attn.in"):shape()[1]
  local pv = {}
  for t = 0, T - 1 do pv[t + 1] = t end
  local pos = ts.tensor("i32", {T}, pv)
  local models = {f32 = V4.load(dir, nil, {kv_format = "f32"}),
                  fp8 = V4.load(dir, nil, {kv_format = "fp8"})}
  for L = 0, #models.f32.cfg.compress_ratios - 2 do
    local x = g:get(string.format("prefill.layers.%d.attn.in", L)):cast("f32")
    local want = g:get(string.format("prefill.layers.%d.attn.out", L)):cast("f32"):to_table()
    local e32 = relerr(models.f32:attention(L, x, pos):to_table(), want)
    local e8 = relerr(models.fp8:attention(L, x, pos):to_table(), want)
    print(string.format("layer %d attention vs the faithful run: f32 %.3e, fp8 %.3e", L, e32, e8))
    check(e8 < 0.8 * e32, string.format("layer %d: fp8 caches closer to the reference", L))
  end
end

-- 5. row sizes are checked by the kernels
local ok, err = pcall(function()
  kernel("kv_pack", {ROPE = 64}):launch{ts.tensor("f32", {1, 128}), ts.tensor("i8", {1, 150})}
end)
check(not ok and tostring(err):find("a KV row is too short"), "short KV row refused: " .. tostring(err))
ok, err = pcall(function()
  kernel("fp4_unpack"):launch{ts.tensor("i8", {1, 70}), ts.tensor("f32", {1, 128})}
end)
check(not ok and tostring(err):find("an FP4 row is"), "wrong FP4 row refused: " .. tostring(err))

-- 6. a cache format the model does not know is refused at load
if probe then
  local V4 = require "model.v4"
  ok, err = pcall(V4.load, "../shared/golden/tiny", nil, {kv_format = "fp16"})
  check(not ok and tostring(err):find("kv_format 'fp16': 'f32' or 'fp8'", 1, true),
        "unknown kv_format refused: " .. tostring(err))
end

print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then os.exit(1) end
