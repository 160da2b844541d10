-- v4.lua - the DeepSeek-V4 model, assembled from the kernels in kernels/
-- (V4-SPEC sections 1, 2 and 4): loading with validated weights, prefill of
-- a prompt, then one-token decode steps with the per-layer state of
-- V4-SPEC 4.1 (window ring, compressed entries, indexer keys, and each
-- compressor's partial-window buffer of 4.3), handed over from the prefill
-- as 4.4 says. Activations are f32 and the Hadamard is kept. The caches
-- are tensors in one of two formats (model/cache.lua), chosen at load:
--   kv_format = "f32"  the exact math (the FP8/FP4 simulations off) that
--                      ../shared/golden's f32.safetensors records;
--   kv_format = "fp8"  V4-SPEC 3's production bytes (584-byte entries at V4
--                      width, 68-byte FP4 indexer keys): the KV FP8 and the
--                      indexer FP4 simulations applied, as in the released
--                      model; rope dims held in bf16.
-- The linears run in f32 (bf16 weights read as stored on the CPU), or with
-- opts.linears = "fp8" those the released checkpoint holds in FP8 (the
-- attention's wq_a, wq_b, wkv, wo_a, wo_b, the indexer's wq_b, MTP's
-- e_proj and h_proj: V4-SPEC 1.11) run as its FP8 linear does: the weights
-- as e4m3 codes with a ue8m0 scale per 128 x 128 block (quantised from the
-- file's values at first use; wo_a's by the whole weight's blocks, mapped
-- onto its groups), the activations
-- quantised per 1 x 128 block (gemm.tile linear_fp8); so do the shared
-- experts' w1, w2, w3 (their linears then run apart from the routed
-- experts, model/moe.lua). With opts.experts = "fp4" the routed experts
-- run as the released instruct checkpoints hold them (V4-SPEC 1.9, 1.11):
-- e2m1 codes with a ue8m0 scale per 1 x 32 block of a row (quantised from
-- the file's values at first use), activations quantised per 1 x 128
-- block (moe.tile moe_up_fp4, moe_down_fp4); "fp8" as the Base
-- checkpoints hold them (e4m3, a scale per 128 x 128 block of each
-- expert's matrix; moe_up_fp8, moe_down_fp8); "bf16" (the default) keeps
-- the file's values. The rest stays as it is. A file that holds these
-- weights quantised (a released checkpoint's FP8 linears and FP4 experts,
-- with their `.scale`s; model/quantize.lua writes one) runs them in that
-- format whatever the options. On a GPU the mHC logits' GEMMs and the
-- linears of prefill-sized inputs take their operands in TF32 on tensor
-- cores (as DeepSeek's production mHC kernel does) unless opts.tf32 is
-- false (then f32, the CPU's numbers), and on a GPU whose tensor cores the
-- attention kernels fit (sm_80, sm_90a) the attention takes bf16 queries
-- and KV rows on tensor cores (model/attention.lua, as the reference's bf16
-- kernels do) unless tf32 is false or opts.attention is "f32"; attention =
-- "bf16" asks for that on any device, the CPU too. Likewise a prefill's
-- bf16 experts take bf16 activations on the tensor cores (moe_up_tc,
-- moe_down_tc; model/moe.lua M:bf16_moe) unless tf32 is false or opts.moe
-- is "f32"; moe = "bf16" asks for it anywhere. A decode step's token
-- runs the linears over one input as one over their joined weights
-- (M:joined_lweight; the same outputs) unless opts.join is false.
-- The concepts live in their own files
-- (rope, compressor, attention, moe, mhc, mtp), installed as methods at the
-- end.
-- Run from the source root.
local ts = require "tessera"
local checkpoint = require "model.checkpoint"
local O = require "model.ops"
local kernel, f32 = O.kernel, O.f32
local weights = require "model.weights"
local Cache = require "model.cache"

local M = {}

-- ---- the model ------------------------------------------------------------------------

-- Loads a model folder (config.json + weights.safetensors, or DeepSeek's
-- released layout: inference/config.json + the shards of
-- model.safetensors.index.json; model/checkpoint.lua), or a config and
-- weights given apart (a file, an index or such a folder); every tensor
-- the config needs is checked (name, dtype, shape) before use.
function M.load(dir, weights_path, opts)
  local cfg = type(dir) == "table" and dir or checkpoint.config(dir)
  weights.check_config(cfg, 2)
  opts = opts or {}
  local self = {cfg = cfg, file = checkpoint.open(weights_path or dir),
                w = {}, kv_format = opts.kv_format or "f32", tf32 = opts.tf32 ~= false,
                linears = opts.linears or "f32", experts = opts.experts or "bf16",
                attn_dtype = opts.attention, moe_dtype = opts.moe, join = opts.join ~= false,
                graphs = opts.graphs == true,
                joined = {},
                pools = {}, free_slots = {}, slots_taken = 0}
  local d = opts.device or ts.default_device()
  self.dev = type(d) == "string" and ts.device(d) or d
  if self.kv_format ~= "f32" and self.kv_format ~= "fp8" then
    error("kv_format '" .. tostring(self.kv_format) .. "': 'f32' or 'fp8'", 2)
  end
  if self.linears ~= "f32" and self.linears ~= "fp8" then
    error("linears '" .. tostring(self.linears) .. "': 'f32' or 'fp8'", 2)
  end
  if self.attn_dtype ~= nil and self.attn_dtype ~= "bf16" and self.attn_dtype ~= "f32" then
    error("attention '" .. tostring(self.attn_dtype) .. "': 'bf16' or 'f32'", 2)
  end
  if self.moe_dtype ~= nil and self.moe_dtype ~= "bf16" and self.moe_dtype ~= "f32" then
    error("moe '" .. tostring(self.moe_dtype) .. "': 'bf16' or 'f32'", 2)
  end
  if self.experts ~= "bf16" and self.experts ~= "fp4" and self.experts ~= "fp8" then
    error("experts '" .. tostring(self.experts) .. "': 'bf16', 'fp8' or 'fp4'", 2)
  end
  if self.experts == "fp4" and (cfg.dim % 32 ~= 0 or cfg.moe_inter_dim % 32 ~= 0) then
    error(string.format("experts 'fp4': dim (%d) and moe_inter_dim (%d) must be multiples " ..
                        "of 32, the FP4 scale block", cfg.dim, cfg.moe_inter_dim), 2)
  end
  -- (the weights the file holds in FP8 or FP4 run in that format whatever
  -- the options: a released checkpoint's)
  self.quant = weights.validate(cfg, self.file)
  return setmetatable(self, {__index = M})
end

-- Weight names of block L: "layers.L." for the main layers, "mtp.0." for
-- the MTP block (L = n_layers), whose attention is window-only.
local prefixes = {} -- (made once: asked for ~60 times a decode step)
function M:prefix(L)
  if L >= self.cfg.n_layers then return "mtp.0." end
  local p = prefixes[L]
  if not p then p = string.format("layers.%d.", L); prefixes[L] = p end
  return p
end

-- prefix(L) .. s, each made once (a decode step's names of its layers'
-- weights: no string built per call); the MTP block's apart.
local names = {}
function M:pname(L, s)
  local k = L >= self.cfg.n_layers and -1 or L
  local t = names[k]
  if not t then
    t = {}
    names[k] = t
  end
  local n = t[s]
  if not n then
    n = self:prefix(L) .. s
    t[s] = n
  end
  return n
end

-- The model's records of `kind` (a layer's weights looked up once, by the
-- functions that keep them), made at first use; a sequence's are its
-- model's.
function M:records(kind)
  local all = self.recs -- (a sequence reads its model's)
  if not all then all = {}; (rawget(self, "root") or self).recs = all end
  local r = all[kind]
  if not r then r = {}; all[kind] = r end
  return r
end

-- A weight as f32 (bf16 checkpoints hold exactly representable values), on
-- the model's device.
function M:weight(name)
  if not self.w[name] then
    local t = self.file:get(name)
    self.w[name] = O.on_device(t:dtype() == "f32" and t or t:cast("f32"))
  end
  return self.w[name]
end

-- An integer table as i32 (a checkpoint may hold it as i64), on the
-- model's device.
function M:ints(name)
  local t, key = self:raw(name), "i32:" .. name
  if t:dtype() == "i32" then return t end
  self.w[key] = self.w[key] or t:cast("i32", self.dev)
  return self.w[key]
end

-- Whether linear `name` runs as V4's FP8 linear: the file holds it in FP8,
-- or linears = "fp8" and the released checkpoint does.
function M:is_fp8(name)
  return self.quant[name] == "fp8" or
    (self.linears == "fp8" and weights.fp8_in_checkpoint(name) ~= nil)
end

-- A quantised weight's scales from the file as f32 values (flat): ue8m0
-- bytes (F8_E8M0, read as i8) are 2^(byte - 127).
function M:file_scales(name)
  return O.scale_values(self.file:get(weights.scale_name(name))):to_table()
end

-- The weight of a linear layer (O.linear): in FP8 when M:is_fp8 (O.fp8_weight:
-- e4m3 codes and block scales, `groups` groups of rows; the file's codes
-- and scales when it holds them, else quantised from its values at first
-- use); else on the CPU a bf16 one as stored (linear_f32 with W = bf16
-- reads half the bytes, the same bits), else as M:weight gives it (a GPU's
-- TF32 prefill takes f32).
function M:lweight(name, groups)
  if self:is_fp8(name) then
    local key = "fp8:" .. name
    if not self.w[key] then
      if self.quant[name] == "fp8" then
        self.w[key] = O.fp8_weight_of(O.on_device(self.file:get(name)), self:file_scales(name),
                                      groups or 1, name)
      else
        local t = self.w[name] or self.file:get(name) -- (f32 already, when held)
        self.w[key] = O.fp8_weight(O.on_device(t:dtype() == "f32" and t or t:cast("f32")),
                                   groups or 1)
      end
    end
    return self.w[key]
  end
  if O.on_gpu() then return self:weight(name) end
  local t = self:raw(name)
  return t:dtype() == "bf16" and t or self:weight(name)
end

-- The weights of the linears `names` over one input joined into one
-- (O.join_rows: their rows in order; a decode step's token runs one
-- linear where it ran #names, and reads its output's columns), each
-- name's weight (M:lweight's) then a view of its rows, so that every
-- weight is held once and a prefill's separate linears read the same
-- memory. Returns it and the pieces' row counts, or false where they do
-- not join (O.join_rows) or opts.join was false at load. (A names list is
-- a constant: its key is kept by the table.)
local join_keys = setmetatable({}, {__mode = "k"}) -- a names list's key, made once
function M:joined_lweight(names)
  local key = join_keys[names]
  if not key then key = table.concat(names, "+"); join_keys[names] = key end
  local j = self.joined[key]
  if j == nil then j = self:join_weights(names); self.joined[key] = j end
  if j then return j.w, j.rows end
  return false
end

-- joined_lweight's join: {w = the joined weight, rows = the pieces'
-- row counts}, or false.
function M:join_weights(names)
  local j = false
  if self.join then
    local ws, rows = {}, {}
    for i, name in ipairs(names) do
      ws[i] = self:lweight(name)
      rows[i] = ws[i]:shape(1)
    end
    local w, parts = O.join_rows(ws)
    if w then
      j = {w = w, rows = rows}
      for i, name in ipairs(names) do
        -- (under each key that held it: lweight's FP8 form, M:raw's
        -- tensor, M:weight's; a model made without a file may hold one
        -- tensor as both)
        local held = false
        for _, k in ipairs{"fp8:" .. name, "raw:" .. name, name} do
          if self.w[k] == ws[i] then self.w[k], held = parts[i], true end
        end
        assert(held, "joined_lweight: lweight's weight is held")
      end
    end
  end
  return j
end

-- A weight as stored in the file, on the model's device.
function M:raw(name)
  local key = "raw:" .. name
  if not self.w[key] then self.w[key] = O.on_device(self.file:get(name)) end
  return self.w[key]
end

-- Prefill of ids [T] (an i32 tensor): logits of the last position, and a
-- record of what each layer made. With `chunk`, the tokens go through the
-- layers chunk at a time (the first chunk a prefill, then M:extend; the
-- activations a chunk's; the record the last chunk's), with the same
-- logits. With `mtp` true, the MTP block follows the chunks: each chunk but
-- the last goes through it too (M:mtp, the token after its last position
-- the next chunk's first), so that M:mtp of the last chunk's positions (the
-- token after the last one the first pick: M:speculate) completes it.
function M:prefill(ids, chunk, mtp)
  local T = ids:numel()
  self:check_ids("prefill", ids, 2)
  self:check_room("prefill", 0, T, 2)
  return self:chunks("prefill", ids, 0, chunk, mtp)
end

-- The tokens ids through the layers from position P, chunk at a time
-- (all at once when nil), after a check of chunk (for `what`, the
-- caller's name); with `mtp`, each chunk but the last through the MTP
-- block too (M:prefill).
function M:chunks(what, ids, P, chunk, mtp)
  if chunk ~= nil and (math.type(chunk) ~= "integer" or chunk < 1) then
    error(what .. ": chunk " .. tostring(chunk) .. " must be a positive integer", 3)
  end
  if P == 0 then self:reset() end
  local T = ids:numel()
  if not chunk or chunk >= T then return self:run_tokens(ids, P) end
  local logits, record
  for at = 0, T - 1, chunk do
    local n = math.min(chunk, T - at)
    logits, record = self:run_tokens(ids:slice(0, at, n), P + at)
    if mtp and at + n < T then self:mtp(ids:slice(0, at + 1, n)) end
  end
  return logits, record
end

-- Continues the sequence with the tokens ids [T] (an i32 tensor) at
-- positions next_pos .. next_pos + T - 1, as a prefill of them would but
-- against the state its earlier tokens left (V4-SPEC 4.4's hand-off,
-- generalised: the window's rows, entries and keys so far, the
-- compressors' partial windows): a long prompt in chunks, or the next turn
-- of a conversation, without prefilling again. Returns the logits of the
-- last position and the record (what each layer added). The same logits
-- as one prefill of all the tokens (bit for bit on the CPU:
-- tests/lua/extend.lua). With `chunk`, chunk tokens at a time (as
-- prefill's).
-- With `mtp`, the MTP block follows the chunks (as M:prefill's).
function M:extend(ids, chunk, mtp)
  local P = self.next_pos
  if not P or P == 0 then error("extend needs a prefill first", 2) end
  if ids:numel() == 0 then error("extend: no tokens", 2) end
  self:check_ids("extend", ids, 2)
  self:check_room("extend", P, ids:numel(), 2)
  return self:chunks("extend", ids, P, chunk, mtp)
end

-- The layers over the tokens ids from position P (0: a prefill, whose
-- state each layer makes; else its continuation).
function M:run_tokens(ids, P)
  local cfg, T, d = self.cfg, ids:numel(), self.cfg.dim
  O.use(self.dev, self.tf32)
  ids = O.on_device(ids)
  local X = O.out{T, 4, d}
  kernel("embed.tile", "embed_streams"):launch{ids, self:raw("embed.weight"), X}
  local pos_v = {}
  for t = 0, T - 1 do pos_v[t + 1] = P + t end
  local pos = O.tensor("i32", {T}, pos_v)
  local record = {}
  for L = 0, cfg.n_layers - 1 do
    local r = {}
    local made
    X, r.attn_in, r.attn_out, made = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention(L, x, pos, nil, P)
    end)
    r.made = made
    X, r.ffn_in, r.ffn_out = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
    r.out = X
    record[L] = r
    self.state[L] = self:hand_off(L, made, T, P)
  end
  self.next_pos = P + T
  -- (the MTP block's input: M:mtp reads these positions' streams)
  self.final_streams, self.final_from = X, P
  return self:head(X), record
end

-- ---- decode ------------------------------------------------------------------------------

-- A sequence's own fields without a value are false, not nil: a sequence
-- looks up what it lacks in its model (M:sequence's __index), so a nil
-- there read the model's own (a new sequence's MTP block at the model's
-- position, a rewind of the model's snapshot).
local function clear_own(s)
  s.mtp_pos, s.forgot, s.last_streams, s.final_streams, s.final_from, s.snap, s.gstate, s.gmtp =
    false, false, false, false, false, false, false, false
end

-- Forgets the sequence: a new prefill starts from position 0.
function M:reset()
  self.state, self.next_pos = {}, 0
  clear_own(self)
end

-- A new sequence of this model: its own caches and position (prefill,
-- decode, reset, cache_bytes as the model's), the weights shared. Sequences
-- decode together with decode_batch.
function M:sequence()
  local root = rawget(self, "root") or self
  local seq = {root = root, state = {}, next_pos = 0}
  clear_own(seq)
  return setmetatable(seq, {__index = root, __gc = function(s)
    local slot = rawget(s, "state_slot")
    if slot then table.insert(root.free_slots, slot) end
  end})
end

-- Ends the sequence now rather than when it is collected: its slot in the
-- model's pools is given back (its rows freed when the next slot is taken,
-- as a collected sequence's), and the sequence is as new (a prefill makes
-- it again, in another slot). For a server whose finished requests'
-- sequences may stay referenced (model/scheduler.lua).
function M:release()
  local slot = rawget(self, "state_slot")
  if slot then
    local root = rawget(self, "root") or self
    table.insert(root.free_slots, slot)
    rawset(self, "state_slot", nil)
  end
  self:reset()
end

-- A new sequence whose state is a copy of this one's (a shared prefix's
-- state, made once: a system prompt's, a conversation's so far): every
-- layer's caches and the MTP block's copied into the new sequence's own
-- slots of the model's pools (the rows as held, byte for byte: window
-- rings, compressed entries, indexer keys, the compressors' partial
-- windows), its position and the MTP block's, and the main model's streams
-- of its last run (shared, as nothing writes them). The two then go on
-- apart: a fork extended or decoded gives what the original would
-- (tests/lua/fork.lua: bit for bit on the CPU), and neither's steps touch
-- the other's rows. A copy a cache (a tensor assign), no launch.
function M:fork()
  if not self.next_pos or self.next_pos == 0 then error("fork needs a prefill first", 2) end
  local f = self:sequence()
  local slot = f:slot()
  local function cache(src)
    if not src then return nil end
    local c = Cache.pooled(src.pool, slot, src.format, src.kind, src.width, src.rope,
                           src.data:shape(1))
    c.data:assign(src.data) -- (src.data after the bind: a regrow re-points it)
    c.n = src.n
    return c
  end
  for L, st in pairs(self.state) do
    local c = {ring = cache(st.ring), comp = cache(st.comp), keys = cache(st.keys), buf = {}}
    for which, b in pairs(st.buf) do
      local nb = {pool = b.pool}
      nb.pool:bind(slot, nb, "cz", b.cz:shape(1))
      nb.cz:assign(b.cz)
      c.buf[which] = nb
    end
    f.state[L] = c
  end
  f.next_pos, f.mtp_pos, f.forgot = self.next_pos, self.mtp_pos, self.forgot
  f.final_streams, f.final_from, f.last_streams = self.final_streams, self.final_from,
    self.last_streams
  return f
end

-- This sequence's slot in the model's pools (M:state_pool), taken at its first
-- prefill and given back when the sequence is collected (its rows in every
-- pool freed when the next slot is taken, and a pool's tensor made smaller
-- when it then holds under a quarter of it: Pool:shrink).
function M:slot()
  local s = rawget(self, "state_slot")
  if not s then
    local root = rawget(self, "root") or self
    if #root.free_slots > 0 then
      for _, pools in pairs(root.pools) do
        for _, p in pairs(pools) do
          for _, f in ipairs(root.free_slots) do p:release(f) end
          p:shrink()
        end
      end
    end
    s = table.remove(root.free_slots)
    if not s then
      s = root.slots_taken
      root.slots_taken = s + 1
    end
    rawset(self, "state_slot", s)
  end
  return s
end

-- The model's pool `name` of layer L (model/cache.lua Cache.pool: that
-- state of every sequence in one tensor, `rows` rows of dtype and width a
-- slot), made at first use.
function M:state_pool(L, name, dtype, rows, width)
  local root = rawget(self, "root") or self
  local pools = root.pools[L] or {}
  root.pools[L] = pools
  local p = pools[name]
  if not p then
    p = Cache.pool(dtype, rows, width)
    pools[name] = p
  end
  return p
end

-- The inputs a kernel takes but does not read, or reads as constants,
-- made once for the model and its sequences (on its device): no top-k
-- selection (ring_index's -1), no compressed rows (hca_attn's input of the
-- format not held, f32 and bytes), a hash layer's zero router bias, the
-- other layers' unread token-to-expert table, and the block counter of
-- hc_post_mix's LAST (0 between launches: its last block sets it back).
function M:constants()
  local root = rawget(self, "root") or self
  local k = rawget(root, "consts")
  if not k then
    local cfg = root.cfg
    k = {no_sel = O.tensor("i32", {1, 1}, {-1}), rows_f32 = f32{0, cfg.head_dim},
         rows_i8 = O.tensor("i8", {0, 8}), zero_bias = f32{cfg.n_routed_experts},
         no_t2e = O.tensor("i32", {1, cfg.n_activated_experts}),
         count = O.tensor("i32", {1})}
    root.consts = k
  end
  return k
end

-- Token ids index the embedding (and a hash layer's expert table): one
-- that does not (not an integer, < 0, >= vocab_size) is an error naming
-- it and its place, not a row read out of range. ids: a table of ids, an
-- i32 tensor of one dim and at least one id (read on the host: a device's
-- tensor waits for the device) or one id (anything else, nil too, is that
-- one bad id); level: error's.
local function check_id_tensor(what, ids, level)
  if type(ids) == "userdata" and (ids:dtype() ~= "i32" or #ids:shape() ~= 1 or
                                  ids:numel() == 0) then
    error(string.format("%s: the token ids are an i32 tensor [T] of 1 or more, given %s", what,
                        (tostring(ids):gsub("^tensor ", ""))), level + 1)
  end
end

function M:check_ids(what, ids, level)
  local V = self.cfg.vocab_size
  check_id_tensor(what, ids, level + 1)
  local list = type(ids) == "table" and ids or type(ids) == "userdata" and ids:to_table() or
               {ids, n = 1}
  for i = 1, list.n or #list do
    local id = list[i]
    local n = math.tointeger(id)
    if not n or n < 0 or n >= V then
      error(string.format("%s: token id %s (id %d of %d) is not in the vocabulary (0 .. %d)",
                          what, tostring(id), i, list.n or #list, V - 1), level + 1)
    end
  end
end

-- Refuses positions past the model's max_seq_len (its RoPE tables' rows):
-- what (the caller), n positions from P.
function M:check_room(what, P, n, level)
  local max = self.cfg.max_seq_len
  if P + n > max then
    error(string.format("%s: position %d is past the model's max_seq_len (%d)", what,
                        P + n - 1, max), (level or 1) + 1)
  end
end

-- The sequences of a batch, checked: each of this model, none twice.
local function batch_of(self, seqs, what)
  local root, seen = rawget(self, "root") or self, {}
  for b, s in ipairs(seqs) do
    if (rawget(s, "root") or s) ~= root then
      error(what .. ": sequence " .. b .. " belongs to another model", 3)
    end
    if seen[s] then error(what .. ": sequence " .. b .. " appears twice", 3) end
    seen[s] = true
  end
end

-- One decode step of several sequences at once: token ids[b] at the next
-- position of seqs[b] (each prefilled, none twice); returns the logits
-- [B, vocab], row b for seqs[b]. The linears, mHC, MoE and the head run
-- over the B tokens together (the weights are read once for all); each
-- sequence's caches and attention apart. Row b equals seqs[b]:decode(ids[b])
-- (bit for bit on the CPU; tests/lua/decode_batch.lua).
function M:decode_batch(seqs, ids)
  local B = #seqs
  if B == 0 or #ids ~= B then error("decode_batch: one id for each of 1 or more sequences", 2) end
  self:check_ids("decode_batch", ids, 2)
  batch_of(self, seqs, "decode_batch")
  local pos_v = {}
  for b, s in ipairs(seqs) do
    if not s.next_pos or s.next_pos == 0 then
      error("decode_batch: sequence " .. b .. " needs a prefill first", 2)
    end
    self:check_room("decode_batch: sequence " .. b, s.next_pos, 1, 2)
    pos_v[b] = s.next_pos
  end
  O.use(self.dev, self.tf32)
  if self.graphs then
    local logits = self:graphed_batch(seqs, ids, pos_v)
    if logits then return logits end
  end
  return self:batch_step(seqs, ids, pos_v, self.step_inputs())
end

-- decode_batch's step (step: M.step_inputs', or a recorded step's with
-- its plan, step.vplan): the logits [B, vocab].
function M:batch_step(seqs, ids, pos_v, step)
  local cfg, d, B = self.cfg, self.cfg.dim, #seqs
  local id_t = self.step_vals(step, "ids", ids, function(c) return c.ids end)
  local X = O.out{B, 4, d}
  kernel("embed.tile", "embed_streams"):launch{id_t, self:raw("embed.weight"), X}
  for L = 0, cfg.n_layers - 1 do
    X = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention_steps(L, x, seqs, pos_v, step)
    end)
    X = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, id_t)
    end)
  end
  for _, s in ipairs(seqs) do s.next_pos = s.next_pos + 1 end
  return self:head(X, "", true)
end

-- Prefill of several sequences at once: prompts[b] (an i32 tensor or a
-- table of token ids, at least one) from position 0 of seqs[b], whose
-- caches start afresh; returns the logits of each prompt's last position
-- [B, vocab], row b for seqs[b]. Every launch runs over all the prompts'
-- tokens together (each weight read once for all; the attention's pooling,
-- indexer, top-k and attention each token over its own prompt's rows:
-- M:attention's spans); each sequence's caches are handed its own rows.
-- Row b equals seqs[b]:prefill(prompts[b]) (bit for bit on the CPU;
-- tests/lua/prefill_batch.lua).
function M:prefill_batch(seqs, prompts)
  local cfg, d, B = self.cfg, self.cfg.dim, #seqs
  if B == 0 or #prompts ~= B then
    error("prefill_batch: one prompt for each of 1 or more sequences", 2)
  end
  batch_of(self, seqs, "prefill_batch")
  local ids_v, pos_v, spans = {}, {}, {} -- spans[b]: {first row, rows}
  for b = 1, B do
    local p = prompts[b]
    if type(p) ~= "table" then
      check_id_tensor("prefill_batch: prompt " .. b, p, 2)
      p = p:to_table()
    end
    if #p == 0 then error("prefill_batch: prompt " .. b .. " is empty", 2) end
    self:check_ids("prefill_batch: prompt " .. b, p, 2)
    self:check_room("prefill_batch: prompt " .. b, 0, #p, 2)
    spans[b] = {#ids_v, #p}
    for t = 1, #p do
      ids_v[#ids_v + 1], pos_v[#pos_v + 1] = p[t], t - 1
    end
  end
  local T = #ids_v
  O.use(self.dev, self.tf32)
  local ids, pos = O.tensor("i32", {T}, ids_v), O.tensor("i32", {T}, pos_v)
  local X = O.out{T, 4, d}
  kernel("embed.tile", "embed_streams"):launch{ids, self:raw("embed.weight"), X}
  for _, s in ipairs(seqs) do s:reset() end
  for L = 0, cfg.n_layers - 1 do
    local _, made
    X, _, _, made = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention(L, x, pos, spans)
    end)
    X = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
    self:hand_off_batch(L, seqs, made, spans)
  end
  -- each prompt's last position, for the head
  local last = O.out{B, 4, d}
  for b, s in ipairs(seqs) do
    local first, n = spans[b][1], spans[b][2]
    s.next_pos = n
    s.final_streams, s.final_from = X:slice(0, first, n), 0
    last:slice(0, b - 1, 1):assign(X:slice(0, first + n - 1, 1))
  end
  return self:head(last, "", true)
end

-- One decode step: token `id` at the next position; returns its logits.
-- With graphs on (opts.graphs at load; model/graphs.lua) a step of a
-- phase and bucket recorded before is replayed: the same logits, in the
-- graph's tensor, which the next such step writes again.
function M:decode(id)
  local t = self.next_pos
  if not t or t == 0 then error("decode needs a prefill first", 2) end
  self:check_ids("decode", id, 2)
  self:check_room("decode", t, 1, 2)
  O.use(self.dev, self.tf32)
  if self.graphs then
    local logits = self:graphed_step({id}, t)
    if logits then return logits end
  end
  return (self:decode_step(O.tensor("i32", {1}, {id}), t, self.step_inputs()))
end

-- The decode step of the token in ids (a device i32 [1]) at position t
-- (step: M.step_inputs', or a recorded step's with its plan): the logits
-- and the final streams [1, 4, d] (kept as the MTP block's input,
-- M:mtp_steps).
function M:decode_step(ids, t, step)
  local cfg, d = self.cfg, self.cfg.dim
  local X = O.out{1, 4, d}
  kernel("embed.tile", "embed_streams"):launch{ids, self:raw("embed.weight"), X}
  for L = 0, cfg.n_layers - 1 do
    X = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention_step(L, x, t, step)
    end)
    X = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
  end
  self.next_pos = t + 1
  self.last_streams = X
  return self:head(X), X
end

-- Rounds of tokens of several sequences (rounds[r] = {seqs = {...}, ids =
-- {...}}: a token for each of round r's sequences, none twice in a round;
-- a sequence's tokens at its next positions in the order of its rounds)
-- flattened, round after round: the sequences, ids and positions of the
-- rows, each round's rows {first row, rows}, and each sequence's count.
-- pos(s): the sequence's next position (nil: not ready, refused).
function M:flat_rounds(rounds, what, pos)
  local seqs, ids, pos_v, rows, count = {}, {}, {}, {}, {}
  if #rounds == 0 then error(what .. ": no rounds", 3) end
  for r, rd in ipairs(rounds) do
    if #rd.seqs == 0 or #rd.ids ~= #rd.seqs then
      error(what .. ": round " .. r .. " needs one id for each of 1 or more sequences", 3)
    end
    batch_of(self, rd.seqs, what)
    rows[r] = {#seqs, #rd.seqs}
    for b, s in ipairs(rd.seqs) do
      local t = pos(s)
      if not t or t == 0 then error(what .. ": sequence " .. b .. " needs a prefill first", 3) end
      local k = count[s] or 0
      seqs[#seqs + 1], ids[#ids + 1], pos_v[#pos_v + 1] = s, rd.ids[b], t + k
      count[s] = k + 1
    end
  end
  for s, k in pairs(count) do self:check_room(what, pos(s), k, 3) end
  self:check_ids(what, ids, 3)
  return seqs, ids, pos_v, rows, count
end

-- The sequence every entry of seqs is, or nil (several).
function M.one_sequence(seqs)
  for _, s in ipairs(seqs) do
    if s ~= seqs[1] then return nil end
  end
  return seqs[1]
end

-- Several sequences' tokens in rounds (M:flat_rounds' form: each
-- sequence's later tokens in later rounds) in one step: each layer's
-- linears, mHC and MoE over all the rows at once (each weight read once
-- for all), the attention a round at a time (M:attention_steps' rounds:
-- one launch for a round's sequences where their states lie in the pools,
-- else a token at a time). Returns the logits of every row [rows, vocab],
-- round after round, and the final streams [rows, 4, d] (the MTP block's
-- input); each row's logits are its sequence's decode step's, bit for bit
-- on the CPU. Speculative decoding's verification of drafted tokens
-- (M:speculate_batch), with M:forget_last for a rejected one.
function M:decode_rounds(rounds)
  local seqs, idv, pos_v, rows, count = self:flat_rounds(rounds, "decode_rounds",
                                                         function(s) return s.next_pos end)
  O.use(self.dev, self.tf32)
  -- (one sequence's tokens: with graphs on, its step replays a graph,
  -- model/graphs.lua)
  local one = M.one_sequence(seqs)
  if one and one.graphs then
    local logits, X = one:graphed_step(idv, pos_v[1])
    if logits then return logits, X end
  elseif not one and self.graphs then
    local logits, X = self:graphed_rounds(seqs, idv, pos_v, rows, count)
    if logits then return logits, X end
  end
  local logits, X = self:rounds_step(O.tensor("i32", {#idv}, idv), seqs, pos_v, rows,
                                     self.step_inputs())
  for s, k in pairs(count) do s.next_pos = s.next_pos + k end
  return logits, X
end

-- decode_rounds' step of the flat rows (ids: an i32 tensor of them; step:
-- M.step_inputs', or a recorded step's with its plan): the logits of every
-- row and the final streams.
function M:rounds_step(ids, seqs, pos_v, rows, step)
  local cfg, d, n = self.cfg, self.cfg.dim, #pos_v
  local X = O.out{n, 4, d}
  kernel("embed.tile", "embed_streams"):launch{ids, self:raw("embed.weight"), X}
  for L = 0, cfg.n_layers - 1 do
    X = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention_steps(L, x, seqs, pos_v, step, rows)
    end)
    X = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
  end
  return self:head(X, "", true), X
end

-- k tokens of this sequence (ids: a table or i32 tensor [k]) at its next
-- positions in one step (M:decode_rounds: k rounds of one token): the
-- logits of each position [k, vocab], bit for bit k decode steps on the
-- CPU: speculative decoding's verification (M:speculate), with
-- M:forget_last for a rejected draft.
function M:decode_tokens(ids)
  if type(ids) ~= "table" then ids = ids:to_table() end
  if #ids == 0 then error("decode_tokens: no tokens", 2) end
  if not self.next_pos or self.next_pos == 0 then
    error("decode_tokens needs a prefill first", 2)
  end
  local rounds = {}
  for i, id in ipairs(ids) do rounds[i] = {seqs = {self}, ids = {id}} end
  local logits, X = self:decode_rounds(rounds)
  self.last_streams = X
  return logits
end

-- Forgets this sequence's last position (a rejected draft): its state as
-- the position before left it. Only one: a position overwrote the window
-- ring's row of the position W before it and a compressor buffer's row of
-- the one R before, which no later token reads; the rows two positions
-- overwrote would hold one that the next token's window reads. The entry
-- (and key) the position completed is dropped.
function M:forget_last()
  local p, cfg = (self.next_pos or 0) - 1, self.cfg
  if p < 1 or self.forgot == p + 1 then
    error("forget_last: no position to forget (one, then a step)", 2)
  end
  for L = 0, cfg.n_layers - 1 do
    local st, ratio = self.state[L], cfg.compress_ratios[L + 1]
    st.ring.n = math.min(st.ring.n, p)
    if ratio > 0 and (p + 1) % ratio == 0 then
      st.comp.n = st.comp.n - 1
      if st.keys then st.keys.n = st.keys.n - 1 end
    end
  end
  self.next_pos, self.forgot, self.last_streams = p, p, false
end


-- Up to how many positions a step may decode and M:rewind take back
-- (M:snapshot's k): the rows a position overwrites in a window ring or a
-- compressor buffer (position p in row p mod R) must not be ones a kept
-- position of the same step wrote, so k <= the smallest ring (W, and R =
-- 8 for CSA's overlapping windows, 128 for HCA's).
function M:max_step_positions()
  local cfg, k = self.cfg, self.cfg.window_size
  for L = 0, cfg.n_layers - 1 do
    local ratio = cfg.compress_ratios[L + 1]
    if ratio > 0 then k = math.min(k, self.buffer_rows(ratio)) end
  end
  return k
end

-- The rows of positions p .. p + n - 1 in a ring of R rows (position p in
-- row p mod R, n <= R): one or two runs {first row, rows, the run's first
-- position - p}.
local function runs(p, n, R)
  local r = p % R
  local a = math.min(n, R - r)
  if a == n then return {{r, n, 0}} end
  return {{r, a, 0}, {0, n - a, a}}
end

-- A copy of ring t's rows of positions p .. p + k - 1 (its rows 0 .. k - 1).
local function keep_rows(t, p, k, R)
  local shape = t:shape()
  shape[1] = k
  local c = O.out(shape, t:dtype())
  for _, run in ipairs(runs(p, k, R)) do
    c:slice(0, run[3], run[2]):assign(t:slice(0, run[1], run[2]))
  end
  return c
end

-- Keeps what a step of this sequence's next k positions (next_pos .. +
-- k - 1: M:decode_tokens of k tokens, or its rows in M:decode_rounds)
-- overwrites that the positions before them still read: each layer's
-- window ring and compressor buffer rows of those positions (copies of
-- those k rows alone: they held positions W and R before) and the counts of its rows,
-- entries and keys, so that M:rewind(q) can take it back to any q in
-- next_pos .. next_pos + k - 1 (speculative decoding's several drafts: the
-- positions past the last kept draft forgotten). k at most
-- M:max_step_positions().
function M:snapshot(k)
  local t, cfg = self.next_pos or 0, self.cfg
  if t < 1 then error("snapshot needs a prefill first", 2) end
  if k < 1 or k > self:max_step_positions() then
    error(string.format("snapshot: %s positions (1 .. %d: the smallest ring's rows)", k,
                        self:max_step_positions()), 2)
  end
  local snap, W = {from = t, to = t + k, layers = {}}, cfg.window_size
  for L = 0, cfg.n_layers - 1 do
    local st, ratio = self.state[L], cfg.compress_ratios[L + 1]
    local l = {ring = keep_rows(st.ring.data, t, k, W), ring_n = st.ring.n,
               comp_n = st.comp and st.comp.n, keys_n = st.keys and st.keys.n, buf = {}}
    for which, b in pairs(st.buf) do
      l.buf[which] = keep_rows(b.cz, t, k, self.buffer_rows(ratio))
    end
    snap.layers[L] = l
  end
  self.snap = snap
end

-- Takes this sequence back to position q (its next position; q in the
-- snapshot's from .. next_pos - 1): its state as a decode of the tokens
-- before q alone would have left it. The ring and buffer rows of the
-- positions q .. next_pos - 1 come back from M:snapshot's copies, the
-- entries and keys those positions completed are dropped. The snapshot is
-- then used up.
function M:rewind(q)
  local snap, cfg, W = self.snap, self.cfg, self.cfg.window_size
  local t, to = snap and snap.from, self.next_pos
  if not snap or to > snap.to or q < t or q >= to then
    error(string.format("rewind to %s: %s", q, snap and string.format("positions %d .. %d " ..
                        "(the snapshot's first to the last decoded)", t, to - 1) or
                        "no snapshot (M:snapshot before the step)"), 2)
  end
  for L = 0, cfg.n_layers - 1 do
    local st, l, ratio = self.state[L], snap.layers[L], cfg.compress_ratios[L + 1]
    local R = ratio > 0 and self.buffer_rows(ratio)
    -- (positions q .. to - 1: the snapshot's rows q - t ..)
    for _, run in ipairs(runs(q, to - q, W)) do
      st.ring.data:slice(0, run[1], run[2]):assign(l.ring:slice(0, q - t + run[3], run[2]))
    end
    for which, b in pairs(st.buf) do
      for _, run in ipairs(runs(q, to - q, R)) do
        b.cz:slice(0, run[1], run[2]):assign(l.buf[which]:slice(0, q - t + run[3], run[2]))
      end
    end
    st.ring.n = math.min(l.ring_n + q - t, W)
    if ratio > 0 then -- (positions t .. q - 1 completed q // ratio - t // ratio)
      local done = q // ratio - t // ratio
      st.comp.n = l.comp_n + done
      if st.keys then st.keys.n = l.keys_n + done end
    end
  end
  self.next_pos, self.forgot, self.last_streams, self.snap = q, false, false, false
end

-- The bytes the caches hold after the positions so far (window rings,
-- compressed entries, indexer keys: the rows held, in the model's format;
-- V4-SPEC 3's production formats in "fp8"), what dense attention would hold
-- with an entry of the same format for every position, and the bytes the
-- cache tensors have allocated (rows held plus room to grow).
function M:cache_bytes()
  local T = self.next_pos or 0
  local held, dense, alloc = 0, 0, 0
  for L = 0, self.cfg.n_layers - 1 do
    local st = self.state[L]
    for _, cache in ipairs{st.ring, st.comp or false, st.keys or false} do
      if cache then
        local h, a = cache:bytes()
        held, alloc = held + h, alloc + a
      end
    end
    dense = dense + T * st.ring.rb
  end
  return held, dense, alloc
end

-- The methods of each concept, in their own files.
for _, part in ipairs{"rope", "compressor", "attention", "moe", "mhc", "mtp", "graphs"} do
  require("model." .. part)(M)
end

return M
