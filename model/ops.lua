-- ops.lua - the model's building blocks over kernels/: a cache of compiled
-- kernels (one per file, name and params) and small helpers (f32 tensors,
-- linear, rmsnorm, rope, hadamard, rows of a tensor as Lua tables).
local ts = require "tessera"

local O = {}

-- ---- kernels, compiled once per (file, name, params) -------------------------

-- The device the model's kernels run on and its new tensors live on (the
-- model's entry points set it; ts.default_device() until then).
O.device = nil
-- Whether GEMMs on a GPU may take their operands in TF32 (the model's
-- `tf32` option; O.linear and model/mhc.lua read it).
O.tf32 = false
local device_name, gpu
function O.use(device, tf32)
  O.device, O.tf32 = device, tf32 == true
  device_name = device and device:name()
  gpu = device_name ~= nil and device_name ~= "cpu"
end
local function dev() return O.device or ts.default_device() end

-- (a decode step asks for ~140 kernels, each lookup on the host's path
-- between two launches: each device, file and name keeps its few compiled
-- param sets, matched by value, with no string or table built per call;
-- a params table met before is found by identity, in the list's weak-keyed
-- `ids`, before any value is compared. So a params table is a constant: a
-- caller never changes one it has passed)
local cache = {}
local no_params = {}
local weak_keys = {__mode = "k"}
local function same_params(e, b)
  local a, n = e.params, 0
  for k, v in pairs(b) do
    if a[k] ~= v then return false end
    n = n + 1
  end
  return n == e.count
end
local function sub(t, k)
  local s = t[k]
  if not s then s = {}; t[k] = s end
  return s
end
local function lookup(file, name, params)
  local list = sub(sub(sub(cache, device_name or dev():name()), file), name)
  if not list.ids then list.ids = setmetatable({}, weak_keys) end
  for i = 1, #list do
    local e = list[i]
    if same_params(e, params) then
      list.ids[params] = e.kernel
      return e.kernel
    end
  end
  local copy, n = {}, 0
  for k, v in pairs(params) do copy[k], n = v, n + 1 end
  local k = ts.kernel("kernels/" .. file, name, params, dev())
  list[#list + 1] = {params = copy, count = n, kernel = k}
  list.ids[params] = k
  return k
end
function O.kernel(file, name, params)
  params = params or no_params
  local d = cache[device_name or dev():name()]
  local f = d and d[file]
  local list = f and f[name]
  local k = list and list.ids[params]
  if k then return k end
  return lookup(file, name, params)
end

-- A call site whose params vary by a few values: O.memo(make) returns a
-- function of up to six values (nil, booleans, numbers, strings) that
-- returns make(a, b, c, d, e, f), made the first time and the same table
-- after, which O.kernel finds by identity (a table built per call is
-- compared by value against the kernel's params each time: a quarter of a
-- decode step's Lua instructions on the mock driver before the sites used
-- this; tests/lua/kernel_params.lua checks that a step builds none).
local NIL = {}
local function level(t, v)
  if v == nil then v = NIL end
  local s = t[v]
  if not s then
    s = {}
    t[v] = s
  end
  return s
end
function O.memo(make)
  local root = {}
  local info = debug.getinfo(make, "u")
  local n = info.isvararg and 6 or info.nparams
  -- (make's own count of parameters picks the walk: a memo of one value
  -- reads one table, not six; a vararg make takes the six-level walk)
  if n == 1 then
    return function(a)
      local k = a == nil and NIL or a
      local p = root[k]
      if not p then
        p = make(a)
        root[k] = p
      end
      return p
    end
  elseif n == 2 then
    return function(a, b)
      local leaf = level(root, a)
      local k = b == nil and NIL or b
      local p = leaf[k]
      if not p then
        p = make(a, b)
        leaf[k] = p
      end
      return p
    end
  elseif n <= 4 then
    return function(a, b, c, d)
      local leaf = level(level(level(root, a), b), c)
      local k = d == nil and NIL or d
      local p = leaf[k]
      if not p then
        p = make(a, b, c, d)
        leaf[k] = p
      end
      return p
    end
  end
  return function(a, b, c, d, e, f)
    local leaf = level(level(level(level(level(root, a), b), c), d), e)
    local k = f == nil and NIL or f
    local p = leaf[k]
    if not p then
      p = make(a, b, c, d, e, f)
      leaf[k] = p
    end
    return p
  end
end

-- New tensors on the model's device (zeros, or the values of a flat table).
function O.tensor(dtype, shape, values) return ts.tensor(dtype, shape, values, dev()) end
function O.f32(shape) return ts.tensor("f32", shape, nil, dev()) end
-- A kernel's output, every element of which it writes (ts.empty: no zeros
-- queued on a GPU - a decode step made ~265 memsets - and NaN / -1 on the
-- CPU and the simulator, so that an element left unwritten shows in every
-- test there); f32 unless dtype is given.
function O.out(shape, dtype) return ts.empty(dtype or "f32", shape, dev()) end

-- t on the model's device: itself on the CPU, else a copy.
function O.on_device(t)
  if dev():name() == "cpu" then return t end
  return t:copy_to(dev())
end

-- A checkpoint's scales as f32 on the model's device: F8_E8M0 bytes (read as
-- i8) decoded by quant.tile ue8m0_scales, the one decoder of them; f32
-- scales as they are.
function O.scale_values(t)
  if t:dtype() ~= "i8" then return t end
  local b = O.on_device(t)
  local v = O.f32(b:shape())
  O.kernel("quant.tile", "ue8m0_scales"):launch{b:reshape{b:numel()}, v:reshape{v:numel()}}
  return v
end

-- y = x w^T in f32; on a GPU with O.tf32 and at least 8 rows (a prefill) on
-- tensor cores in TF32 (linear_tf32), else linear_f32, compiled with W =
-- bf16 when w is bf16 (the checkpoint's weights as stored: the same bits
-- from half the bytes). On a GPU a single row (a decode step) takes 1 x 32
-- tiles, 2 to 8 rows (a batch's step) 8 x 32: the default's 32 rows would
-- multiply the rest as padding (on a GPU the padding made the weight stream
-- compute-bound). On the CPU a block takes 8 weight rows (N) at a time and
-- as many x rows as the step has, rounded up to 1, 2, 4 or 8, blocks of 8
-- up to 31 rows and of 32 from 32 (a prefill's): a block's K step reads 8
-- runs of 128 weights rather than 32, which the hardware prefetchers
-- follow (with 32 an FP8 GEMV read 3.3 G weights a second on two cores, a
-- bf16 one 10 G: bench/results/cpu.md), and x rows past the step's would
-- take the copies' bounds-checked path (4 rows in 8-row tiles took twice
-- the time of 8, 16 in 32-row ones twice that of 32). Every form steps K
-- by 128 on the CPU, where a row's sums then do not depend on the tiling:
-- prefill N + decode M gives the logits of prefill N + M bit for bit
-- (tests/lua/prefill_decode.lua).
-- the params that compile the kernels whose tensors are bf16 by default for
-- the model's f32 (head_rmsnorm, hadamard, head_norm_rope, rope_hadamard)
O.f32_params = {XT = "f32"}
-- head_norm_rope's queries for a bf16 attention: f32 in, bf16 out
O.bf16_out_params = {XT = "f32", YT = "bf16"}
-- the merge with the attention output's inverse rope (sparse_attn_merge
-- ROPE: attention_out then skips its own)
O.merge_rope = {OT = "f32", ROPE = true}
O.gemv_tiles = {BM = 1, BN = 32, BK = 128}
O.few_rows_tiles = {BM = 8, BN = 32, BK = 128}
-- the least power of two >= n, at most cap
local function pow2_up(n, cap)
  local m = 1
  while m < n and m < cap do m = m * 2 end
  return m
end
-- the CPU's, by rows: 1, 2, 4 and 8 a step (8 up to 31), 32 from 32
O.cpu_tiles = {}
for _, m in ipairs{1, 2, 4, 8, 32} do O.cpu_tiles[m] = {BM = m, BN = 8, BK = 128} end
function O.linear_tiles(rows)
  if O.on_gpu() then return rows == 1 and O.gemv_tiles or rows <= 8 and O.few_rows_tiles or nil end
  return O.cpu_tiles[rows >= 32 and 32 or pow2_up(rows, 8)]
end
local w16_params = {} -- a tiling's params with W = bf16, made once
function O.with_w16(tiles)
  local key = tiles or w16_params
  local p = w16_params[key]
  if not p then
    p = {W = "bf16"}
    for k, v in pairs(tiles or {}) do p[k] = v end
    w16_params[key] = p
  end
  return p
end
-- A weight [N, K] in the FP8 format of V4's checkpoints (quant.tile
-- fp8_block_quant): e4m3 codes q [G, N / G, K] and a ue8m0 scale per 128 x
-- 128 block of each of the G row groups, s [G, ceil(N / G / 128), ceil(K /
-- 128)]. O.linear and the grouped output projection take it (gemm.tile
-- linear_fp8). A checkpoint's scales are per block of the whole weight;
-- regroup maps them onto the groups' blocks (flat values and shape), which
-- it can when each group block lies in one whole block (N / G a multiple of
-- 128, or 128 of N / G), nil otherwise.
local FP8 = {}
FP8.__index = FP8
function FP8:shape(k) -- as a tensor's: {N, K}, or dim k
  if k then return k == 1 and self.n or k == 2 and self.k or error("FP8 weight: dim 1 or 2", 2) end
  return {self.n, self.k}
end
function FP8:dtype() return "fp8e4m3" end
local function aligned(n) return n % 128 == 0 or 128 % n == 0 end
local function regroup(sv, N, K, G)
  local n, KB = N // G, (K + 127) // 128
  if not aligned(n) then return nil end
  local nb, v = (n + 127) // 128, {}
  for g = 0, G - 1 do
    for j = 0, nb - 1 do
      local b = (g * n + 128 * j) // 128
      for kb = 0, KB - 1 do v[#v + 1] = sv[b * KB + kb + 1] end
    end
  end
  return v, {G, nb, KB}
end
-- From a checkpoint: codes q [N, K] (fp8e4m3, on the model's device) and
-- the whole weight's block scales (flat f32 values, [ceil(N / 128),
-- ceil(K / 128)]); `name` for the error when the groups do not align.
function O.fp8_weight_of(q, scales, groups, name)
  local N, K = q:shape(1), q:shape(2)
  local v, shape = regroup(scales, N, K, groups)
  if not v then
    error(string.format("%s: an FP8 weight of %d groups of %d rows: a group's rows must " ..
                        "lie in the 128-row blocks of the file's scales", name, groups, N // groups), 0)
  end
  return setmetatable({q = q:reshape{groups, N // groups, K}, s = O.tensor("f32", shape, v),
                       n = N, k = K}, FP8)
end
-- From an f32 weight w [N, K] on the model's device, quantised as a
-- checkpoint is (the whole weight's blocks), then regrouped; groups whose
-- rows do not align with the blocks are quantised each on its own.
function O.fp8_weight(w, groups)
  local N, K = w:shape(1), w:shape(2)
  local n = N // groups
  assert(n * groups == N, "fp8_weight: the groups must split the rows evenly")
  local whole = groups == 1 or aligned(n)
  local G, rows = whole and 1 or groups, whole and N or n
  local q = O.tensor("fp8e4m3", {G, rows, K})
  local s = O.f32{G, (rows + 127) // 128, (K + 127) // 128}
  O.kernel("quant.tile", "fp8_block_quant"):launch{w:reshape{G, rows, K}, q, s}
  if G == groups then return setmetatable({q = q, s = s, n = N, k = K}, FP8) end
  return O.fp8_weight_of(q:reshape{N, K}, s:to_table(), groups, "fp8_weight")
end
function O.is_fp8(w) return getmetatable(w) == FP8 end

-- Linear weights over the same input joined along N: ws[i] [N_i, K] (all
-- plain tensors of one dtype, or all FP8 of one group) as one weight w
-- [sum N_i, K] holding their rows in order, and parts[i], a view of w's
-- rows of ws[i] (the form O.linear takes), so the pieces can be dropped
-- and each held once. A linear over w gives each output as the piece's
-- linear does, bit for bit: an output's K steps do not depend on the
-- columns (FP8's are its 128-blocks), and with every piece but the last a
-- multiple of 128 rows, each column keeps its place in a tile of up to 128
-- columns (a GPU's GEMV sums a tile's columns by their place in it) and an
-- FP8 piece its own scale blocks. nil where they cannot join: mixed forms
-- or dtypes, K apart, a piece before the last of rows no multiple of 128.
function O.join_rows(ws)
  local fp8, K, N = O.is_fp8(ws[1]), ws[1]:shape(2), 0
  for i, w in ipairs(ws) do
    if O.is_fp8(w) ~= fp8 or w:shape(2) ~= K or (not fp8 and w:dtype() ~= ws[1]:dtype()) or
       (fp8 and w.q:shape(1) ~= 1) or (i < #ws and w:shape(1) % 128 ~= 0) then
      return nil
    end
    N = N + w:shape(1)
  end
  local parts, at = {}, 0
  if not fp8 then
    local w = O.tensor(ws[1]:dtype(), {N, K})
    for i, p in ipairs(ws) do
      parts[i] = w:slice(0, at, p:shape(1)):assign(p)
      at = at + p:shape(1)
    end
    return w, parts
  end
  local KB, NB = ws[1].s:shape(3), (N + 127) // 128
  local q, s = O.tensor("fp8e4m3", {N, K}), O.f32{NB, KB}
  local sat = 0
  for i, p in ipairs(ws) do
    local nb = p.s:shape(2)
    local pq = q:slice(0, at, p.n):assign(p.q:reshape{p.n, K})
    local ps = s:slice(0, sat, nb):assign(p.s:reshape{nb, KB})
    parts[i] = setmetatable({q = pq:reshape{1, p.n, K}, s = ps:reshape{1, nb, KB}, n = p.n, k = K},
                            FP8)
    at, sat = at + p.n, sat + nb
  end
  return setmetatable({q = q:reshape{1, N, K}, s = s:reshape{1, NB, KB}, n = N, k = K}, FP8),
    parts
end

-- Columns [at, at + n) of a one-row y [1, N] as a tensor [1, n] (a view
-- that kernels take: one row's columns lie together).
function O.row_cols(y, at, n) return y:slice(1, at, n) end

-- y[t, g] = x[t, g] w[g]^T for an FP8 weight w of G groups (x [T, G, K],
-- y [T, G, N / G]): the activations quantised per 1 x 128 block
-- (quant.tile act_quant), then linear_fp8 with O.linear's row tiles (its K
-- step is the scale block's 128 whatever the tiles, so a row's sums again
-- do not depend on how many rows go together). On a GPU with FP8 tensor
-- cores (O.fp8_tensor_cores), a plain linear of at least 8 rows (a
-- prefill) takes the activations as e4m3 codes into gemm_fp8 instead
-- (wgmma e4m3), the same block sums and scaling. Up to 8 rows otherwise (a
-- decode step, a batch's) a GPU's one launch does both (linear_fp8_act:
-- the same bits, no quantised copy of x, a launch fewer a linear); the
-- CPU keeps the pair (re-quantising x in each block of 32 columns made
-- its GEMV 17-24% slower).
local fp8_tiles = {}
O.codes_params = {XQ = "fp8e4m3"}
-- Whether T rows' FP8 GEMMs quantise their activations as they load them
-- (linear_fp8_act, the MoE GEMMs' ACT): on a GPU, up to 8 rows, where the
-- tensor-core forms (tc) do not run.
function O.quantise_in_gemm(T, tc) return T <= 8 and not tc and O.on_gpu() end
-- A decode step's linears on a GPU (a few rows) split K when their blocks
-- (N / BN a tile of rows and a group) would be fewer than O.gemv_blocks,
-- about two an SM of an H100's 132, and their weights are at least
-- O.gemv_split_bytes: with one block an SM each streaming its weights
-- tile after tile the weight read is latency-bound, not bandwidth-bound
-- (V4-Flash's joined input projections, 17 MB in FP8, and wo_b, 33 MB,
-- are 130 and 128 blocks). SPLIT slices of the K steps write partial sums
-- that gemm_splitk_sum adds in order (deterministic; a launch more, which a
-- small weight's read does not pay back: the tiny model's are not split).
-- The CPU never splits (its tiles keep prefill + decode bit for bit).
O.gemv_blocks, O.gemv_split_bytes = 256, 4 * 2 ^ 20
local function gemv_split(blocks, steps, bytes)
  if blocks >= O.gemv_blocks or bytes < O.gemv_split_bytes or not O.on_gpu() then return 1 end
  return math.max(1, math.min(steps, (O.gemv_blocks + blocks - 1) // blocks))
end
local split_params = O.memo(function(p, S)
  local q = {SPLIT = S}
  for k, v in pairs(p or {}) do q[k] = v end
  return q
end)
-- kernel k's launch over args (its output y [rows, ...] at index `out`,
-- params p) split into S slices: partial sums [S rows, ...], then their sum
local function split_launch(file, name, p, args, out, S)
  local y = args[out]
  local sh = y:shape()
  local rows, rest = sh[1], y:numel() // sh[1]
  sh[1] = S * rows
  local part = O.out(sh)
  args[out] = part
  O.kernel(file, name, split_params(p, S)):launch(args)
  O.kernel("gemm.tile", "gemm_splitk_sum"):launch{part:reshape{S, rows, rest},
                                                  y:reshape{rows, rest}}
end

function O.linear_fp8(x, w, y)
  local sh = x:shape()
  local T, G, K = sh[1], sh[2], sh[3]
  local t = O.linear_tiles(T)
  local p = t and fp8_tiles[t]
  if t and not p then
    p = {BM = t.BM, BN = t.BN}
    fp8_tiles[t] = p
  end
  local tc = G == 1 and T >= 8 and O.fp8_tensor_cores()
  if O.quantise_in_gemm(T, tc) then
    local S = gemv_split((w.n + p.BN - 1) // p.BN * ((T + p.BM - 1) // p.BM) * G, (K + 127) // 128,
                         G * w.n * K)
    local args = {x, w.q, w.s, y, O.no_norm()}
    if S > 1 then
      split_launch("gemm.tile", "linear_fp8_act", p, args, 4, S)
    else
      O.kernel("gemm.tile", "linear_fp8_act", p):launch(args)
    end
    return y
  end
  local KB = (K + 127) // 128
  local sx = O.out{T, G, KB}
  if tc then
    local codes = O.out({T, 1, K}, "fp8e4m3")
    O.kernel("quant.tile", "act_quant", O.codes_params):launch{x, codes, sx}
    local N = w.n
    O.kernel("gemm.tile", "gemm_fp8"):launch{codes:reshape{T, K}, sx:reshape{T, KB},
                                               w.q:reshape{N, K}, w.s:reshape{w.s:shape(2), KB},
                                               y:reshape{T, N}}
    return y
  end
  local xq = O.out{T, G, K}
  O.kernel("quant.tile", "act_quant"):launch{x, xq, sx}
  O.kernel("gemm.tile", "linear_fp8", p):launch{xq, sx, w.q, w.s, y}
  return y
end

-- x [rows, K] times w [N, K] transposed into y [rows, N] (a new tensor,
-- or the one given: a row of a buffer, where a copy would follow).
function O.linear(x, w, y)
  local rows = x:shape(1)
  y = y or O.out{rows, w:shape(1)}
  if O.is_fp8(w) then
    local K = x:shape(2)
    O.linear_fp8(x:reshape{rows, 1, K}, w, y:reshape{rows, 1, w.n})
  elseif O.tf32 and O.on_gpu() and rows >= 8 and w:dtype() ~= "bf16" then
    O.kernel("gemm.tile", "linear_tf32"):launch{x, w, y}
  else
    local t = O.linear_tiles(rows)
    local p = w:dtype() == "bf16" and O.with_w16(t) or t
    local S = t and gemv_split((w:shape(1) + t.BN - 1) // t.BN * ((rows + t.BM - 1) // t.BM),
                               (x:shape(2) + t.BK - 1) // t.BK,
                               w:numel() * (w:dtype() == "bf16" and 2 or 4)) or 1
    if S > 1 then
      split_launch("gemm.tile", "linear_f32", p, {x, w, y}, 3, S)
    else
      O.kernel("gemm.tile", "linear_f32", p):launch{x, w, y}
    end
  end
  return y
end

-- y[rows[r], :] = x[r, :] (rows: a device i32 [R]; embed.tile put_rows)
local put_rows_params = O.memo(function(dt) return {XT = dt} end)
function O.put_rows(x, rows, y)
  O.kernel("embed.tile", "put_rows", put_rows_params(x:dtype())):launch{x, rows, y}
end

function O.rmsnorm(x, w)
  local y = O.out(x:shape())
  O.kernel("rmsnorm.tile", "rmsnorm_f32"):launch{x, w, y}
  return y
end

-- linear_fp8_act's norm weight where it has none (NORM off: not read), one
-- a device
local no_norms = {}
function O.no_norm()
  local d = device_name or dev():name()
  local t = no_norms[d]
  if not t then
    t = O.f32{1}
    no_norms[d] = t
  end
  return t
end

-- O.linear(O.rmsnorm(x, nw), w), for one row and an FP8 weight on a GPU (a
-- decode step's query LoRA row into wq_b) in one launch: linear_fp8_act
-- with NORM, which makes the row's RMS factor in each block by
-- rmsnorm_f32's statements (its sums in that kernel's order) and
-- normalises each tile of x as it loads it, so the same bits as the two.
local norm_gemv = {BM = 1, BN = 32, NORM = true}
function O.norm_linear(x, nw, w)
  local rows, K = x:shape(1), x:shape(2)
  if rows == 1 and O.is_fp8(w) and O.quantise_in_gemm(1) then
    local y = O.out{1, w.n}
    O.kernel("gemm.tile", "linear_fp8_act", norm_gemv):launch{x:reshape{1, 1, K}, w.q, w.s,
                                                              y:reshape{1, 1, w.n}, nw}
    return y
  end
  return O.linear(O.rmsnorm(x, nw), w)
end

O.rope_forward = {XT = "f32", INVERSE = false}
O.rope_inverse = {XT = "f32", INVERSE = true}
function O.rope(x, tab, pos, inverse)
  local y = O.out(x:shape())
  O.kernel("rope.tile", "rope", inverse and O.rope_inverse or O.rope_forward)
    :launch{x, tab, pos, y}
  return y
end

function O.hadamard(x)
  local n = x:numel() // 128
  local flat = x:reshape{n, 128}
  local y = O.out{n, 128}
  O.kernel("hadamard.tile", "hadamard", O.f32_params):launch{flat, y}
  return y:reshape(x:shape())
end

-- The top K of each row of scores [R, N] over its first len[r] entries
-- (kernels/topk.tile): one block a row, or, for rows of at least
-- O.topk_split_at entries, two levels (the top K of each CH-entry chunk,
-- then of those), CH the power of two nearest sqrt(N K) so that both levels
-- are about as long. Returns out [R, K] (indices, increasing, -1 pads;
-- into out when given).
O.topk_split_at = 32768
local topk_params = O.memo(function(K, CH) return {K = K, CH = CH} end)
function O.topk(scores, len, K, out)
  local R, N = scores:shape(1), scores:shape(2)
  out = out or O.out({R, K}, "i32")
  if N < O.topk_split_at or N <= 2 * K then
    O.kernel("topk.tile", "topk", topk_params(K)):launch{scores, len, out}
    return out
  end
  local CH = 2 * K
  while CH * CH < N * K do CH = CH * 2 end
  local M = K * ((N + CH - 1) // CH)
  local cand, val = O.tensor("i32", {R, M}), O.f32{R, M}
  local len2, pos = O.tensor("i32", {R}), O.tensor("i32", {R, K})
  O.kernel("topk.tile", "topk", topk_params(K, CH)):launch{scores, len, cand}
  O.kernel("topk.tile", "topk_gather", topk_params(K, CH)):launch{scores, len, cand, val, len2}
  O.kernel("topk.tile", "topk", topk_params(K)):launch{val, len2, pos}
  O.kernel("topk.tile", "topk_pick"):launch{pos, cand, out}
  return out
end

-- A prefill of several prompts scores a run of them with one indexer
-- launch ([rows, most keys of them]; model/attention.lua score_runs): the
-- run takes the next prompt while its padding (a row's scores past its own
-- prompt's keys) is at most its useful scores or O.score_pad of them.
O.score_pad = 65536

-- The MoE of more than one token runs in tiles of O.moe_rows rows of one
-- expert (model/moe.lua; one-row tiles for a single token), on the CPU
-- the routed experts in tiles of about an expert's share of the T K slots
-- (O.routed_rows).
O.moe_rows = 16
-- The routed experts' tile rows for T tokens of K experts each among E: on
-- a GPU O.moe_rows (1 for one token); on the CPU the T K / E slots an
-- expert has on average, rounded up to a power of two, at most
-- O.moe_rows. A batch's few tokens among V4's 256 experts are one-row
-- tiles: in tiles of 16 each expert's one row took the gather's
-- bounds-checked path and 15 padding rows' products (4 tokens, 6 of 64
-- experts each, at V4-Flash width: bf16 262 -> 78 ms, FP8 281 -> 58 with
-- one-row tiles, which read an expert's weights once a row: at 6 rows an
-- expert they took twice the time of 16-row ones; bench/moe_fp4.lua).
function O.routed_rows(T, K, E)
  if T == 1 then return 1 end
  if O.on_gpu() then return O.moe_rows end
  return pow2_up((T * K + E - 1) // E, O.moe_rows)
end
-- The expert GEMMs' tile columns (BN) on the CPU for tiles of BM rows with
-- weights in format fmt ("bf16", "fp8", "fp4"; nil: the kernels' default
-- 32, and always on a GPU): 8, as O.linear_tiles (8 runs of 128 weights a
-- K step, which the prefetchers follow: at V4-Flash width 6 experts' bf16
-- 19 -> 12 ms, FP8 50 -> 16, FP4 21 -> 18; FP8 64 tokens 435 -> 290 ms; bf16
-- tiles of 2, 4, 8 and 16 rows 56 -> 29, 71 -> 41, 98 -> 77 and 254 -> 230
-- ms), but for FP4 tiles of more than 2 rows, whose 64-byte runs the
-- prefetchers follow at 32 and which repeat the activations' load and scale
-- for every block of BN (4 rows 40 -> 58 ms at 8, 16 rows 228 -> 271;
-- bench/moe_fp4.lua, bench/results/cpu.md). The sums step K by 128 whatever
-- BN: the same bits.
function O.experts_bn(BM, fmt)
  if O.on_gpu() or fmt == "fp4" and BM > 2 then return nil end
  return 8
end
-- ... and on the tensor cores (moe_up_tc, moe_down_tc) of O.moe_tc_rows
-- (their default BM)
O.moe_tc_rows = 64
-- Up to this many tokens mHC's pre and the sub-layer's norm are one launch
-- (model/mhc.lua).
O.hc_norm_rows = 16

-- Whether the model's kernels run on a GPU (the CUDA device or the simulator).
-- (asked ~10 times a layer of a decode step: O.use's answer, kept)
function O.on_gpu()
  if O.device then return gpu end
  return ts.default_device():name() ~= "cpu"
end

-- The heads a block of the exact model's sparse attention (sparse_attn.tile
-- sparse_attn_f32, _f32_kv8, _f32_pool: HB) for T tokens of H heads: a
-- decode step's token was one block, so one core of the CPU or one SM of a
-- GPU. Its heads split in halves until the blocks fill the CPU's cores
-- (each block reads and decodes the token's rows again, so no further), on
-- a GPU until there are 8 blocks or 8 heads a block (the f32 attention is
-- `--attention f32` there: the default decode takes the bf16 split
-- kernels); the same bits whatever HB, so a decode step still gives a
-- prefill's. nil (all H) with tokens enough.
function O.attn_heads(T, H)
  local gpu = O.on_gpu()
  local hb, n = H, gpu and 8 or dev():threads()
  while hb % 2 == 0 and T * (H // hb) < n and (not gpu or hb > 8) do hb = hb // 2 end
  return hb < H and hb or nil
end

-- Whether that GPU has e4m3 tensor cores the kernels use (wgmma on sm_90a;
-- on sm_80/86 the e4m3 GEMMs would be scalar loops): where the FP8
-- linears' and the quantised experts' prefill take their tensor-core forms.
function O.fp8_tensor_cores() return dev():arch() == "sm_90a" end

-- Whether that GPU has bf16 tensor cores (mma.sync from sm_80, wgmma on
-- sm_90a): where a prefill's bf16 experts take moe_up_tc + moe_down_tc
-- (model/moe.lua M:bf16_moe).
local tc16_archs = {sm_80 = true, sm_86 = true, sm_89 = true, sm_90 = true, sm_90a = true}
function O.bf16_tensor_cores() return tc16_archs[dev():arch()] == true end

-- Whether that GPU's tensor cores take the attention kernels' bf16 forms
-- (sparse_attn_tc, hca_attn_tc; model/attention.lua) for H heads of c
-- dims: their shared tiles hold all H x c queries. sm_90a (wgmma, 227 KiB)
-- up to V4-Pro's 128 x 512 (hca_attn_tc then 200 KiB); sm_80 (mma.sync,
-- 163 KiB) up to V4-Flash's 64 x 512 (143 KiB); an sm_86's 99 KiB not.
function O.attn_tensor_cores(H, c)
  local a = dev():arch()
  return a == "sm_90a" and H * c <= 65536 or a == "sm_80" and H * c <= 32768
end

-- x [..., D] (times scale, if given: the product in f32) as a new tensor
-- of dtype dt on the model's device (rounding to nearest even into bf16),
-- converted there (embed.tile convert_rows).
local convert_params = {}
function O.convert(x, dt, scale)
  local sh, from = x:shape(), x:dtype()
  local y = O.out(sh, dt)
  local D = sh[#sh]
  if x:numel() == 0 then return y end
  local key = from .. ">" .. dt .. "*" .. (scale or 1)
  local p = convert_params[key]
  if not p then
    p = {XT = from, YT = dt, SCALE = scale}
    convert_params[key] = p
  end
  local rows = x:numel() // D
  O.kernel("embed.tile", "convert_rows", p):launch{x:reshape{rows, D}, y:reshape{rows, D}}
  return y
end

-- The slices of a split-K reduction whose grid has `tiles` blocks a slice,
-- at most `most`: about two blocks an SM of an H100 (132) on a GPU, so that
-- a decode step's few tokens fill it; one on the CPU, whose blocks gain
-- nothing from more.
function O.slices(tiles, most)
  if dev():name() == "cpu" then return 1 end
  return math.max(1, math.min(most, (264 + tiles - 1) // tiles))
end

-- The compressed entries a range of the split HCA attention holds
-- (model/attention.lua hca_attend): on the CPU a decode step's attention
-- over 1M tokens (8192 entries) is 16 ranges for its cores; on a GPU 64,
-- each a block.
function O.attn_range() return dev():name() == "cpu" and 512 or 128 end

-- the rows of a, then the rows of b (of a's dtype), as one new tensor
function O.concat_rows(a, b)
  local na, nb = a:shape(1), b:shape(1)
  local out = O.out({na + nb, a:shape(2)}, a:dtype())
  if na > 0 then out:slice(0, 0, na):assign(a) end
  if nb > 0 then out:slice(0, na, nb):assign(b) end
  return out
end


return O
