-- hca_split.lua - the exact model's split HCA attention
-- (kernels/hca_attn.tile hca_attn_split_f32 + sparse_attn.tile
-- sparse_attn_merge with OT = f32), on the CPU and the GPU simulator, on odd shapes
-- (a window of 70 with holes, entries no multiple of the block, tokens that
-- see none, all, more than exist, a negative count, a token with nothing at
-- all): within rounding of hca_attn (XT = f32), with one range and
-- several; a token's output does not depend on how many ranges the call
-- has (empty ranges change nothing: a prefill and a decode step agree bit
-- for bit); reading the window's rows and the entries as KV cache bytes
-- (KV8) equals reading them unpacked, bit for bit, and so does reading
-- each token's entries at its own rows of a larger tensor (cbase). R no
-- multiple of BK is refused.
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local rand = C.lcg

local T, H, c, S, W, N, rope = 6, 4, 128, 31, 70, 150, 64
local nope = c - rope
local E = (nope + 2 * rope + nope // 64 + 7) // 8 * 8
for _, name in ipairs{"cpu", "gpusim"} do
  local dev = ts.device(name)
  local function kernel(file, k, params)
    return ts.kernel("kernels/" .. file, k, params or {}, dev)
  end
  local r = rand(name == "cpu" and 5 or 9)
  local function tensor(dtype, shape, f)
    local v, n = {}, 1
    for _, s in ipairs(shape) do n = n * s end
    for i = 1, n do v[i] = f(i) end
    return ts.tensor(dtype, shape, v):copy_to(dev)
  end
  local q = tensor("f32", {T, H, c}, function() return r() * 2 - 1 end)
  local kv = tensor("f32", {S, c}, function() return r() * 2 - 1 end)
  local win = tensor("i32", {T, W}, function(i)
    local t, j = (i - 1) // W, (i - 1) % W
    return (t == 5 or j % 9 == 4) and -1 or (j * 3 + t) % S
  end)
  local ncomp = ts.tensor("i32", {T}, {0, 150, 77, 400, -5, 0}):copy_to(dev)
  local sink = tensor("f32", {H}, function() return r() - 0.5 end)
  -- the entries as the cache holds them, and unpacked (exactly those values)
  local x = tensor("f32", {N, c}, function(i) return (r() * 2 - 1) * 2 ^ ((i // 64) % 7 - 3) end)
  local bytes = ts.tensor("i8", {N, E}, nil, dev)
  kernel("quant.tile", "kv_pack", {ROPE = rope}):launch{x, bytes}
  local comp = ts.tensor("f32", {N, c}, nil, dev)
  kernel("quant.tile", "kv_unpack", {ROPE = rope}):launch{bytes, comp}
  -- the window's rows too, as a ring of the cache's bytes holds them
  local ring8 = ts.tensor("i8", {S, E}, nil, dev)
  kernel("quant.tile", "kv_pack", {ROPE = rope}):launch{kv, ring8}
  kernel("quant.tile", "kv_unpack", {ROPE = rope}):launch{ring8, kv}

  -- the merge's rope table and positions (not read without ROPE)
  local no_tab, no_pos = ts.tensor("f32", {1, 1, 2}, nil, dev), ts.tensor("i32", {1}, nil, dev)
  -- (cb: each token's first entry row of cm / cm8, else comp / bytes
  -- from row 0; nc: the entry counts, else ncomp)
  local function split(R, P, kv8, cb, cm, cm8, nc)
    local po = ts.tensor("f32", {T, P, H, c}, nil, dev)
    local pm = ts.tensor("f32", {T, P, H}, nil, dev)
    local pl = ts.tensor("f32", {T, P, H}, nil, dev)
    kernel("hca_attn.tile", "hca_attn_split_f32",
           {BK = 32, R = R, KV8 = kv8, ROPE = rope, NH = H, DC = c})
      :launch{q, kv8 and ts.tensor("f32", {0, c}, nil, dev) or kv,
              kv8 and ring8 or ts.tensor("i8", {0, E}, nil, dev), win,
              kv8 and ts.tensor("f32", {0, c}, nil, dev) or cm or comp,
              kv8 and (cm8 or bytes) or ts.tensor("i8", {0, E}, nil, dev), nc or ncomp,
              ts.tensor("i32", {T}, cb, dev), po, pm, pl}
    local o = ts.tensor("f32", {T, H, c}, nil, dev)
    kernel("sparse_attn.tile", "sparse_attn_merge", {OT = "f32"})
      :launch{po, pm, pl, sink, no_tab, no_pos, o}
    return o, po, pm, pl
  end
  local ref = ts.tensor("f32", {T, H, c}, nil, dev)
  kernel("hca_attn.tile", "hca_attn", {XT = "f32", BK = 32}):launch{q, kv, win, comp, ncomp, sink, ref}

  -- (hca_attn (XT = f32)'s tiles have the tensors' dims as shapes, its scores a
  -- transposed-B GEMM: other sums, the same to rounding)
  local one = split(160, 1, false)
  local err = C.relerr(one:to_table(), ref:to_table())
  C.check(err < 1e-6, string.format("%s: one range vs hca_attn (XT = f32) %.2e", name, err))
  -- ranges of 64 entries: 3 hold the 150; 5 leave two empty for every token
  local o3 = split(64, 3, false)
  err = C.relerr(o3:to_table(), ref:to_table())
  C.check(err < 1e-6, string.format("%s: 3 ranges vs hca_attn (XT = f32) %.2e", name, err))
  local o5 = split(64, 5, false)
  C.check(C.same(o5, o3), name .. ": empty ranges changed the output")
  local zero = true
  for i, v in ipairs(o3:to_table()) do
    if (i - 1) // (H * c) == 5 and v ~= 0 then zero = false end
  end
  C.check(zero, name .. ": a token with nothing to attend to is not zero")
  -- the cache's bytes read in place: the same partial states and outputs
  local a = {split(64, 3, false)}
  local b = {split(64, 3, true)}
  C.check(C.same(b[1], a[1]) and C.same(b[2], a[2]) and C.same(b[3], a[3])
            and C.same(b[4], a[4]), name .. ": KV8 differs from the unpacked entries")
  C.check(C.same(split(256, 1, true), one), name .. ": KV8, one range, differs from f32 entries")
  -- each token's entries at its own rows of a larger tensor (a batch's
  -- state pool: other rows around them), f32 and bytes: the same outputs
  -- (the counts past N clamped, as the tensor's end no longer does)
  local gap, bases = 7, {}
  local nc = ts.tensor("i32", {T}, {0, 150, 77, 150, -5, 0}):copy_to(dev)
  local rows = T * (N + gap) + gap
  local big = tensor("f32", {rows, c}, function() return r() * 2 - 1 end)
  local big8 = ts.tensor("i8", {rows, E}, nil, dev)
  kernel("quant.tile", "kv_pack", {ROPE = rope}):launch{big, big8}
  for t = 1, T do
    bases[t] = gap + (t - 1) * (N + gap)
    big:slice(0, bases[t], N):assign(comp)
    big8:slice(0, bases[t], N):assign(bytes)
  end
  C.check(C.same(split(64, 3, false, bases, big, nil, nc), o3),
          name .. ": entries at their own rows of a pool differ (f32)")
  C.check(C.same(split(64, 3, true, bases, nil, big8, nc), b[1]),
          name .. ": entries at their own rows of a pool differ (KV8)")
end

do
  local ok, msg = pcall(function()
    ts.kernel("kernels/hca_attn.tile", "hca_attn_split_f32", {BK = 64, R = 100, NH = 2, DC = 128},
              ts.device("cpu"))
      :launch{ts.tensor("f32", {1, 2, 128}), ts.tensor("f32", {4, 128}),
              ts.tensor("i8", {0, 8}), ts.tensor("i32", {1, 4}), ts.tensor("f32", {8, 128}),
              ts.tensor("i8", {0, 8}), ts.tensor("i32", {1}), ts.tensor("i32", {1}), ts.tensor("f32", {1, 1, 2, 128}),
              ts.tensor("f32", {1, 1, 2}), ts.tensor("f32", {1, 1, 2})}
  end)
  C.check(not ok and tostring(msg):find("multiple of BK"), "R % BK: " .. tostring(msg))
end

C.finish()
