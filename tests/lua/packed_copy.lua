-- packed_copy.lua - copy(src, dst, format="e2m1") (compiler/gen_packed.c):
-- FP4 codes two a byte into their values, element 2j + h of a row the
-- e2m1 value of nibble h of byte j, bytes outside the tensor as +0.
-- tests/lua/packed_copy.tile's unpack (a tensor's slice into a whole
-- tile, written out whole) against a decode here, bit for bit (the sign of
-- zero too) over every byte value: f32 tiles (on an AVX-512 CPU 16 bytes a
-- step in registers, then a byte at a time: blocks of 32 and 24 bytes, a
-- last block of 5, rows and columns past the tensor's ends) and bf16 ones
-- (element by element); unpack_gather the same through a gather and an
-- index (-1 rows read zeros) and from a shared tile of the codes. On the
-- CPU and the GPU simulator (tests/CMakeLists.txt runs it under the CUDA C
-- lowering too). fp8_rows: a plain copy of fp8e4m3 codes into f32 and bf16
-- tiles against the host's decode.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local file = "tests/lua/packed_copy.tile"
local MAG = {0.0, 0.5, 1, 1.5, 2, 3, 4, 6}
local function e2m1(code)
  local v = MAG[(code & 7) + 1]
  return code & 8 ~= 0 and -v or v
end

-- the value of element k (0-based) of a row of bytes (i8, as Lua integers)
local function value(row, k)
  local b = row[k // 2 + 1] & 0xff
  return e2m1(k % 2 == 0 and b & 15 or b >> 4)
end

local function same(a, b) return a == b and 1 / a == 1 / b or a ~= a and b ~= b end

-- n bytes, every value -128..127 among the first 256, then a scramble
local function bytes(n, seed)
  local r, v = C.lcg(seed), {}
  for i = 1, n do v[i] = i <= 256 and i - 129 or math.floor(r() * 256) - 128 end
  return v
end

local function run(devname)
  local dev = ts.device(devname)
  for _, cs in ipairs{{5, 37, 4, 32, "f32"}, {7, 40, 2, 24, "f32"}, {3, 90, 4, 32, "bf16"},
                      {1, 16, 1, 16, "f32"}} do
    local R, CB, BR, BB, XT = table.unpack(cs)
    local what = string.format("%s unpack R %d CB %d BR %d BB %d %s", devname, R, CB, BR, BB, XT)
    local cv = bytes(R * CB, R + CB)
    local codes = ts.tensor("i8", {R, CB}, cv, dev)
    local RO, CO = (R + BR - 1) // BR * BR, (CB + BB - 1) // BB * 2 * BB
    local init = {}
    for i = 1, RO * CO do init[i] = 7.0 end
    local out = ts.tensor("f32", {RO, CO}, init, dev)
    ts.kernel(file, "unpack", {BR = BR, BB = BB, XT = XT}, dev):launch{codes, out}
    local got, bad = out:to_table(), 0
    for r = 0, RO - 1 do
      local row = {}
      for j = 1, CB do row[j] = r < R and cv[r * CB + j] or 0 end
      for k = 0, CO - 1 do
        local want = (r < R and k < 2 * CB) and value(row, k) or 0.0
        if not same(got[r * CO + k + 1], want) then
          if bad < 3 then
            print(string.format("  %s: [%d, %d] = %s, want %s", what, r, k,
                                tostring(got[r * CO + k + 1]), tostring(want)))
          end
          bad = bad + 1
        end
      end
    end
    C.check(bad == 0, what .. string.format(" (%d elements differ)", bad))
  end
  -- scale=: each value times its block's scale, rounded to f32 (powers of
  -- two as V4's ue8m0 scales, and others whose products round)
  for _, cs in ipairs{{5, 37, 4, 32, 32}, {3, 40, 2, 24, 16}, {4, 36, 4, 12, 8}} do
    local R, CB, BR, BB, BLK = table.unpack(cs)
    local what = string.format("%s unpack_scaled R %d CB %d BB %d BLK %d", devname, R, CB, BB,
                               BLK)
    local cv = bytes(R * CB, 7 * R + CB)
    local CO = (CB + BB - 1) // BB * 2 * BB
    local NS, RO = CO // BLK, (R + BR - 1) // BR * BR
    local r, sv = C.lcg(R + BLK), {}
    for i = 1, R * NS do sv[i] = i % 3 == 0 and C.f32(r() * 3 - 1) or 2.0 ^ (i % 9 - 4) end
    local out = ts.tensor("f32", {RO, CO}, nil, dev)
    ts.kernel(file, "unpack_scaled", {BR = BR, BB = BB, BLK = BLK}, dev):launch{
        ts.tensor("i8", {R, CB}, cv, dev), ts.tensor("f32", {R, NS}, sv, dev), out}
    local got, bad = out:to_table(), 0
    for q = 0, R - 1 do
      local row = {}
      for j = 1, CB do row[j] = cv[q * CB + j] end
      for k = 0, CO - 1 do
        -- (a byte past the row's end reads as code 0: +0.0 times the scale)
        local want = C.f32((k < 2 * CB and value(row, k) or 0.0) * sv[q * NS + k // BLK + 1])
        if not same(got[q * CO + k + 1], want) then bad = bad + 1 end
      end
    end
    C.check(bad == 0, what .. string.format(" (%d elements differ)", bad))
  end
  -- format="e2m1x2": twice each value, an integer, into i8 and i32 tiles
  for _, cs in ipairs{{5, 37, 4, 32, "i8"}, {3, 40, 2, 24, "i8"}, {3, 21, 4, 16, "i32"}} do
    local R, CB, BR, BB, XT = table.unpack(cs)
    local what = string.format("%s unpack_twice R %d CB %d BB %d %s", devname, R, CB, BB, XT)
    local cv = bytes(R * CB, 5 * R + CB)
    local RO, CO = (R + BR - 1) // BR * BR, (CB + BB - 1) // BB * 2 * BB
    local init = {}
    for i = 1, RO * CO do init[i] = 99 end
    local out = ts.tensor("i32", {RO, CO}, init, dev)
    ts.kernel(file, "unpack_twice", {BR = BR, BB = BB, XT = XT}, dev):launch{
        ts.tensor("i8", {R, CB}, cv, dev), out}
    local got, bad = out:to_table(), 0
    for q = 0, RO - 1 do
      local row = {}
      for j = 1, CB do row[j] = q < R and cv[q * CB + j] or 0 end
      for k = 0, CO - 1 do
        local want = (q < R and k < 2 * CB) and math.tointeger(2 * value(row, k)) or 0
        if got[q * CO + k + 1] ~= want then bad = bad + 1 end
      end
    end
    C.check(bad == 0, what .. string.format(" (%d elements differ)", bad))
  end
  -- a gather of rows of plane PL, and the same codes from a shared tile
  local P, R, CB, N = 3, 6, 20, 11
  local cv = bytes(P * R * CB, 3)
  local codes = ts.tensor("i8", {P, R, CB}, cv, dev)
  local iv = {2, -1, 5, 0, 0, 3, 1, -1, 4, 5, 2}
  for _, PL in ipairs{1, 2} do
    local out = ts.tensor("f32", {N, 2 * CB}, nil, dev)
    ts.kernel(file, "unpack_gather", {BN = 8, PL = PL}, dev):launch{
        codes, ts.tensor("i32", {N}, iv, dev), out}
    local got, bad = out:to_table(), 0
    for n = 0, N - 1 do
      local row = {}
      for j = 1, CB do row[j] = iv[n + 1] >= 0 and cv[(PL * R + iv[n + 1]) * CB + j] or 0 end
      for k = 0, 2 * CB - 1 do
        if not same(got[n * 2 * CB + k + 1], iv[n + 1] >= 0 and value(row, k) or 0.0) then
          bad = bad + 1
        end
      end
    end
    C.check(bad == 0,
            string.format("%s unpack_gather PL %d (%d elements differ)", devname, PL, bad))
  end
  -- a plain copy of fp8e4m3 codes into f32 (on a VBMI CPU 64 a step by
  -- table lookups) and bf16 tiles: every code (NaNs and -0 too) at many
  -- positions of a 64-code step, spans that end inside a step, rows and
  -- columns past the tensor; against the host's decode (base/numeric.c)
  local vals = {}
  for c = 0, 255 do -- e4m3 code c's value: 1.m x 2^(e - 7), subnormals m/8 x 2^-6
    local e, m = (c >> 3) & 15, c & 7
    local v = (e == 15 and m == 7) and 0 / 0 or e == 0 and m / 8 * 2.0 ^ -6 or
              (1 + m / 8) * 2.0 ^ (e - 7)
    vals[c + 1] = c & 0x80 ~= 0 and -v or v
  end
  for _, cs in ipairs{{5, 300, 2, 150, "f32"}, {3, 300, 2, 128, "f32"}, {4, 64, 4, 64, "f32"},
                      {3, 70, 2, 200, "f32"}, {3, 130, 2, 64, "bf16"}} do
    local R, Cn, BR, BC, XT = table.unpack(cs)
    local what = string.format("%s fp8_rows R %d C %d BR %d BC %d %s", devname, R, Cn, BR, BC, XT)
    local xv = {}
    for i = 1, R * Cn do xv[i] = vals[(i * 37 + (i // 256) * 11) % 256 + 1] end
    local x = ts.tensor("fp8e4m3", {R, Cn}, xv, dev)
    local want = x:to_table()
    local RO, CO = (R + BR - 1) // BR * BR, (Cn + BC - 1) // BC * BC
    local init = {}
    for i = 1, RO * CO do init[i] = 7.0 end
    local out = ts.tensor("f32", {RO, CO}, init, dev)
    ts.kernel(file, "fp8_rows", {BR = BR, BC = BC, XT = XT}, dev):launch{x, out}
    local got, bad, nans = out:to_table(), 0, 0
    for r = 0, RO - 1 do
      for k = 0, CO - 1 do
        local w = (r < R and k < Cn) and want[r * Cn + k + 1] or 0.0
        local v = got[r * CO + k + 1]
        if w ~= w then nans = nans + 1 end
        if not same(v, w) then
          if bad < 3 then
            print(string.format("  %s: [%d, %d] = %s, want %s", what, r, k, tostring(v),
                                tostring(w)))
          end
          bad = bad + 1
        end
      end
    end
    C.check(bad == 0 and nans > 0, what .. string.format(" (%d elements differ, %d NaN)", bad,
                                                         nans))
  end
end

run("cpu")
run("gpusim")
C.finish()
