-- compressor.lua - the token-level compressors (V4-SPEC 1.4): all entries of a
-- prefill, and the one entry a decode step may complete (4.3).
local ts = require "tessera"
local O = require "model.ops"
local kernel, f32, linear, rmsnorm, rope, hadamard = O.kernel, O.f32, O.linear, O.rmsnorm,
  O.rope, O.hadamard

-- compress_pool over M:project's joined rows: CSA's overlapping windows,
-- HCA's apart
local joined_csa, joined_hca = {OVERLAP = true, JOINED = true}, {OVERLAP = false, JOINED = true}

return function(M)

-- The two projections wkv and wgate (names nc, nz, [KE, d] each) joined
-- as one weight [2 KE, d], wkv's rows first, in the form M:lweight gives
-- each (bf16 as stored on the CPU, else f32): the file's tensors read into
-- its halves, so the separate weights are never held. false for FP8 ones
-- (the released checkpoints hold the compressors in BF16; a file that
-- holds them in FP8 runs them as two FP8 linears). A model made without a
-- file (bench/v4_layers.lua's random weights) joins the tensors it holds.
local function joined_weight(self, nc, nz)
  if self:is_fp8(nc) or self:is_fp8(nz) then return false end
  if not self.file then
    local a, b = self:lweight(nc), self:lweight(nz)
    local KE = a:shape(1)
    local w = O.tensor(a:dtype(), {2 * KE, a:shape(2)})
    w:slice(0, 0, KE):assign(a)
    w:slice(0, KE, KE):assign(b)
    return w
  end
  local dt, sh = self.file:info(nc)
  local KE, d = sh[1], sh[2]
  local w = O.tensor(dt, {2 * KE, d})
  self.file:read_into(nc, w:slice(0, 0, KE))
  self.file:read_into(nz, w:slice(0, KE, KE))
  if dt == "f32" or (dt == "bf16" and not O.on_gpu()) then return w end
  return w:cast("f32", self.dev)
end

-- The compressor of layer L (which: "compressor" or "indexer.compressor"):
-- its two projections of the inputs x [T, d] side by side, cz [T, 2 KE]:
-- the values c in columns [0, KE), the gate scores z in [KE, 2 KE). One
-- linear over the joined weights (each output's sum is the separate
-- linear's: the K steps do not depend on the columns), or where they
-- cannot join the two linears and concat_cols. Into cz when given (a
-- decode step's row of the compressor's buffer: no copy after).
local subs = {compressor = "attn.compressor.", ["indexer.compressor"] = "attn.indexer.compressor."}
function M:project(L, which, x, cz)
  local p = self:pname(L, subs[which])
  local joined = self:records("joined_compressors") -- (by p)
  local w = joined[p]
  if w == nil then
    w = joined_weight(self, p .. "wkv.weight", p .. "wgate.weight")
    joined[p] = w
  end
  if w then return linear(x, w, cz) end
  local c = linear(x, self:lweight(p .. "wkv.weight"))
  local z = linear(x, self:lweight(p .. "wgate.weight"))
  local T, KE = c:shape(1), c:shape(2)
  cz = cz or O.out{T, 2 * KE}
  kernel("embed.tile", "concat_cols"):launch{c, z, cz}
  return cz
end

local ratio_params = O.memo(function(ratio) return {RATIO = ratio} end)
local from_pos_params = O.memo(function(ratio) return {RATIO = ratio, FROM_POS = true} end)
local ring_pool_params = O.memo(function(ratio)
  return {OVERLAP = ratio == 4, JOINED = true, R = M.buffer_rows(ratio)}
end)

-- The entries of every complete window of the projected rows cz (the
-- first entry being number `first`), pooled, normalised and rotated.
function M:pool(L, which, cz, ratio, tab, first)
  local p = self:pname(L, subs[which])
  local E = self:weight(p .. "norm.weight"):shape(1)
  local N = cz:shape(1) // ratio
  local comp, out = O.out{N, E}, O.out{N, E}
  kernel("compressor.tile", "compress_pool", ratio == 4 and joined_csa or joined_hca)
    :launch{cz, cz, self:weight(p .. "ape"), comp}
  kernel("compressor.tile", "compress_norm_rope_f32", ratio_params(ratio))
    :launch{comp, self:weight(p .. "norm.weight"), tab, out, first or 0}
  return out
end

-- Entries pooled from windows that lie anywhere in the projected rows cz
-- [., 2 KE] (a prefill's, or the buffers' ring or pool): entry k's own
-- window from row wins[2k - 1], the window before it (CSA) from row
-- wins[2k] (-1: none, a sequence's first entry), normed and roped as the
-- layer's entry number epos[k]; one compress_pool_at and one
-- compress_norm_rope_at. wins and epos: tables, or with N their i32
-- tensors ([N, 2], [N]). Returns [N, E].
function M:pool_windows(L, which, cz, wins, epos, ratio, tab, N)
  local p = self:pname(L, subs[which])
  local E = self:weight(p .. "norm.weight"):shape(1)
  N = N or #epos
  local comp, out = O.out{N, E}, O.out{N, E}
  if N == 0 then return out end
  if type(wins) == "table" then
    wins, epos = O.tensor("i32", {N, 2}, wins), O.tensor("i32", {N}, epos)
  end
  kernel("compressor.tile", "compress_pool_at", ratio == 4 and joined_csa or joined_hca)
    :launch{cz, cz, self:weight(p .. "ape"), wins, comp}
  kernel("compressor.tile", "compress_norm_rope_at", ratio_params(ratio))
    :launch{comp, self:weight(p .. "norm.weight"), tab, out, epos}
  return out
end

-- The entries of a prefill's spans ({first row, rows} each: prompts from
-- position 0) from the projected rows cz [T, 2 KE] of all of them: every
-- span's complete windows pooled where they lie by one launch
-- (M:pool_windows), each its span's entry number; spans' entries in turn,
-- [sum of rows // ratio, E]. One span: M:pool; with `pre` (M:attention's
-- prefix of a sequence continued after P positions, one span) M:pool_after.
function M:pool_spans(L, which, cz, spans, ratio, tab, pre, P)
  if pre then return self:pool_after(L, which, pre.buf, cz, P, ratio, tab) end
  if #spans == 1 then return self:pool(L, which, cz, ratio, tab, 0) end
  -- (the windows' rows and numbers, made once for the prefill's layers of
  -- this ratio: kept in its spans)
  spans.windows = spans.windows or {}
  local w = spans.windows[ratio]
  if not w then
    local wins, epos = {}, {}
    for _, sp in ipairs(spans) do
      for e = 0, sp[2] // ratio - 1 do
        wins[#wins + 1] = sp[1] + ratio * e
        wins[#wins + 1] = e > 0 and sp[1] + ratio * (e - 1) or -1
        epos[#epos + 1] = e
      end
    end
    local N = #epos
    w = {N = N, wins = N > 0 and O.tensor("i32", {N, 2}, wins),
         epos = N > 0 and O.tensor("i32", {N}, epos)}
    spans.windows[ratio] = w
  end
  return self:pool_windows(L, which, cz, w.wins, w.epos, ratio, tab, w.N)
end

-- The entries that the projected rows cz [T, 2 KE] of positions P .. P +
-- T - 1 complete, continuing a sequence after its first P positions (its
-- state st: the buffered rows before P, M:compress_step's ring), numbered
-- from P // ratio: pooled over the buffered rows of the window that P
-- falls in (and for CSA the window before it, whose entry is dropped),
-- then cz, as a prefill pools them. [n, E], n = (P + T) // ratio - P //
-- ratio.
function M:pool_after(L, which, st, cz, P, ratio, tab)
  local R, first = M.buffer_rows(ratio), P // ratio * ratio
  local start = (ratio == 4 and first >= ratio) and first - ratio or first
  local rows = cz
  if start < P then
    local idx = {}
    for p = start, P - 1 do idx[#idx + 1] = p % R end
    local before = O.out{P - start, cz:shape(2)}
    kernel("embed.tile", "rows_f32"):launch{st.buf[which].cz, O.tensor("i32", {#idx}, idx),
                                             before}
    rows = O.concat_rows(before, cz)
  end
  local out = self:pool(L, which, rows, ratio, tab, start // ratio)
  local skip = (first - start) // ratio
  return out:slice(0, skip, out:shape(1) - skip)
end

-- All entries of a prefill over x [T, d]; also the projections cz, whose
-- last rows seed the decode buffer.
function M:compress(L, which, x, ratio, tab)
  local cz = self:project(L, which, x)
  return self:pool(L, which, cz, ratio, tab, 0), cz
end

-- How many projected rows the decode buffer keeps (V4-SPEC 4.3): one window,
-- and for CSA (overlapping windows) the previous one too.
function M.buffer_rows(ratio)
  return ratio == 4 and 2 * ratio or ratio
end

-- One decode step of the compressor `which` of layer L for the input x
-- [1, d] at position t: its projections join the partial-window buffer
-- st.buf[which] (a ring of the last buffer_rows rows on the device, cz
-- [R, 2 KE] as M:project makes them, position p in row p mod R: no round
-- trip through the host; x nil: a batch's step put them there); when t
-- (tp: the device's [1] of it; zero: a device [1] of 0) completes a window,
-- the new entry [1, E] (from the window, and for CSA the previous one),
-- else nil. plan: a recorded step's (model/graphs.lua), whose row of the
-- buffer is found on the device (the projections made apart, then put).
function M:compress_step(L, which, st, t, ratio, tab, x, tp, zero, plan)
  local buf = st.buf[which]
  if x and plan then
    O.put_rows(self:project(L, which, x), plan:row("buf" .. ratio), buf.cz)
  elseif x then
    self:project(L, which, x, buf.cz:slice(0, t % M.buffer_rows(ratio), 1))
  end
  -- (the kernels looked up at every step, so the first one compiles them,
  -- not the first to complete a window: a run's warm-up step does)
  local pool = kernel("compressor.tile", "compress_pool_ring", ring_pool_params(ratio))
  local norm = kernel("compressor.tile", "compress_norm_rope_at", from_pos_params(ratio))
  if (t + 1) % ratio ~= 0 then return nil end
  -- the window's rows (and CSA's window before) where they lie in the
  -- ring, found on the device from the position tp (compress_pool_ring)
  local p = self:pname(L, subs[which])
  local E = self:weight(p .. "norm.weight"):shape(1)
  local comp, out = O.out{1, E}, O.out{1, E}
  pool:launch{buf.cz, buf.cz, self:weight(p .. "ape"), tp, zero, comp}
  norm:launch{comp, self:weight(p .. "norm.weight"), tab, out, tp}
  return out
end

-- The rows of the window that position t completes and (CSA) of the one
-- before it (-1 for a sequence's first) in a compressor's ring of
-- buffer_rows rows from row base (position p in row base + p mod R): a
-- window is whole in the ring (R a multiple of the ratio).
function M.ring_windows(t, ratio, base)
  local R = M.buffer_rows(ratio)
  local own = base + (t + 1 - ratio) % R
  return own, (ratio == 4 and t + 1 > ratio) and base + (t + 1 - 2 * ratio) % R or -1
end

end
