-- dtype_params.lua - kernels compiled for other element types through a
-- dtype param. kernels/gemm.tile linear_f32 with W = bf16 (a linear layer
-- reading its weights as the checkpoint's bf16) on odd shapes (rows,
-- outputs and K no multiple of the tiles), on the CPU and the GPU
-- simulator: against an f64 reference over the bf16 values, and bit for bit
-- equal to W = f32 over the same weights cast to f32 at the same tiles (the
-- model's decode, batch and prefill tilings and the defaults), which is
-- what lets the model keep its weights in bf16 without changing a logit.
-- hadamard and head_rmsnorm with XT = f32 against their bf16
-- defaults over bf16-exact inputs (the same f32 math: equal to bf16's
-- rounding). A tensor of the other dtype is refused with the param named;
-- a bad value of a dtype param is refused at creation.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local M, K, N = 11, 300, 70
local u = C.lcg(11)
local function r() return u() * 2 - 1 end
local xv, wv = {}, {}
for i = 1, M * K do xv[i] = r() end
for i = 1, N * K do wv[i] = r() end
local w16 = ts.tensor("f32", {N, K}, wv):cast("bf16")
local wq = w16:cast("f32"):to_table() -- the weights as bf16 holds them
local want = C.matmul_bt(xv, wq, M, N, K)
C.check(C.relerr(wq, wv) > 1e-4, "the weights are not bf16-exact (the test would prove nothing)")

for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local x = ts.tensor("f32", {M, K}, xv):copy_to(dev)
  local wb = w16:copy_to(dev)
  local wf = w16:cast("f32"):copy_to(dev)
  for _, tiles in ipairs{{BM = 1, BN = 32, BK = 128}, {BM = 8, BN = 32, BK = 128},
                         {BM = 32, BN = 32, BK = 128}, {}} do
    local y16 = ts.tensor("f32", {M, N}, nil, dev)
    local y32 = ts.tensor("f32", {M, N}, nil, dev)
    local t16 = {W = "bf16"}
    for k, v in pairs(tiles) do t16[k] = v end
    ts.kernel("kernels/gemm.tile", "linear_f32", t16, dev):launch{x, wb, y16}
    ts.kernel("kernels/gemm.tile", "linear_f32", tiles, dev):launch{x, wf, y32}
    local a, b = y16:to_table(), y32:to_table()
    local what = string.format("%s BM %s", name, tiles.BM or "default")
    C.check(C.relerr(a, want) < 1e-6, what .. ": against f64")
    local same = true
    for i = 1, #a do if a[i] ~= b[i] then same = false end end
    C.check(same, what .. ": W = bf16 differs from W = f32 over the cast weights")
  end

  -- the other dtype is refused, and the message says which param to set
  local k32 = ts.kernel("kernels/gemm.tile", "linear_f32", {}, dev)
  local ok, err = pcall(function() k32:launch{x, wb, ts.tensor("f32", {M, N}, nil, dev)} end)
  C.check(not ok and tostring(err):find("W=bf16", 1, true) ~= nil,
          name .. ": a bf16 weight for W = f32 is refused naming W: " .. tostring(err))

  -- XT = f32 against the bf16 default, over bf16-exact values: the kernels
  -- compute in f32 either way, so f32 outputs rounded to bf16 are bf16's
  local T, H, Cd = 3, 4, 128
  local v = {}
  for i = 1, T * H * Cd do v[i] = r() end
  local xb = ts.tensor("f32", {T, H, Cd}, v):cast("bf16")
  local xf = xb:cast("f32")
  local function both(file, kname, params, args16, args32, out16, out32)
    local p32 = {XT = "f32"}
    for k, val in pairs(params) do p32[k] = val end
    ts.kernel("kernels/" .. file, kname, params, dev):launch(args16)
    ts.kernel("kernels/" .. file, kname, p32, dev):launch(args32)
    local a, b = out16:to_table(), out32:cast("bf16"):to_table()
    local same = #a == #b and #a > 0
    for i = 1, #a do if a[i] ~= b[i] then same = false end end
    C.check(same, name .. ": " .. kname .. " XT = f32 rounds to the bf16 form's output")
    local changed = false
    local xv32 = xf:to_table()
    local o32 = out32:to_table()
    for i = 1, #o32 do if o32[i] ~= xv32[i] then changed = true end end
    C.check(changed, name .. ": " .. kname .. " did something")
  end
  local xbd, xfd = xb:copy_to(dev), xf:copy_to(dev)
  local h16 = ts.tensor("bf16", {T * H, Cd}, nil, dev)
  local h32 = ts.tensor("f32", {T * H, Cd}, nil, dev)
  both("hadamard.tile", "hadamard", {}, {xbd:reshape{T * H, Cd}, h16},
       {xfd:reshape{T * H, Cd}, h32}, h16, h32)
  local n16 = ts.tensor("bf16", {T, H, Cd}, nil, dev)
  local n32 = ts.tensor("f32", {T, H, Cd}, nil, dev)
  both("rmsnorm.tile", "head_rmsnorm", {}, {xbd, n16}, {xfd, n32}, n16, n32)
end

-- dtype_params.tile: a dtype param as a tile's, a let's and a tensor's type,
-- a conversion and bitcast's type, against the runtime's casts and the f32
-- bits, for two values of each; a U that changes bitcast's size is refused
local N = 150 -- no multiple of the block
local xs = {}
for i = 1, N do xs[i] = (r() * 300) * (i % 7 == 0 and 1e-3 or 1) end
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local x = ts.tensor("f32", {N}, xs):copy_to(dev)
  for _, p in ipairs{{S = "bf16", U = "i32"}, {S = "f16", U = "i32"}, {S = "fp8e4m3", U = "f32"}} do
    local y1, y2 = ts.tensor("f32", {N}, nil, dev), ts.tensor("f32", {N}, nil, dev)
    local bits = ts.tensor(p.U, {N}, nil, dev)
    ts.kernel("tests/lua/dtype_params.tile", "narrow", p, dev):launch{x, y1, y2, bits}
    local want = ts.tensor("f32", {N}, xs):cast(p.S):cast("f32"):to_table()
    local a, b, w = y1:to_table(), y2:to_table(), bits:to_table()
    local ok, bits_ok, narrowed = true, true, false
    for i = 1, N do
      if a[i] ~= want[i] or b[i] ~= want[i] then ok = false end
      if want[i] ~= xs[i] then narrowed = true end
      local fbits = string.unpack("<i4", string.pack("<f", xs[i]))
      local got = p.U == "i32" and w[i] or string.unpack("<i4", string.pack("<f", w[i]))
      if got ~= fbits then bits_ok = false end
    end
    local what = name .. " S = " .. p.S .. ", U = " .. p.U
    C.check(ok and narrowed, what .. ": narrowed as the runtime's cast")
    C.check(bits_ok, what .. ": bitcast(x, U) keeps x's bits")
  end
end
local okb, errb = pcall(ts.kernel, "tests/lua/dtype_params.tile", "narrow", {U = "i64"})
C.check(not okb and tostring(errb):find("changes the size", 1, true) ~= nil,
        "U = i64 makes bitcast change the size: " .. tostring(errb))

-- a dtype param's value must name a dtype
local ok, err = pcall(ts.kernel, "kernels/gemm.tile", "linear_f32", {W = "f31"})
C.check(not ok and tostring(err):find("param W=f31: 'f31' is not a 'dtype'", 1, true) ~= nil,
        "W = f31 is refused: " .. tostring(err))

C.finish()
