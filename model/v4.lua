-- v4.lua - the DeepSeek-V4 model, assembled from the kernels in kernels/,
-- in the exact-math form (f32 activations, the FP8/FP4 simulations off,
-- the Hadamard kept) that ../shared/golden's f32.safetensors records
-- (V4-SPEC sections 1, 2 and 4): loading with validated weights, prefill of
-- a prompt, then one-token decode steps with the per-layer state of
-- V4-SPEC 4.1 (window ring, compressed entries, indexer keys; the
-- compressors' partial windows are rebuilt from the layer's input history,
-- which holds exactly the buffer's tokens). The concepts live in their own
-- files (rope, compressor, attention, moe, mhc, mtp), installed as methods
-- at the end. Run from the source root. Not yet here: the bf16 mode with
-- the FP8/FP4 simulations.
local ts = require "tessera"
local json = require "model.json"
local O = require "model.ops"
local kernel, f32 = O.kernel, O.f32
local rows = O.rows

local M = {}

-- ---- the model ------------------------------------------------------------------------

-- Loads a model folder (config.json + weights.safetensors), or a config and
-- a weights file given apart; every tensor the config needs is checked
-- (name, dtype, shape) before use.
function M.load(dir, weights_path)
  local cfg = type(dir) == "table" and dir or json.read(dir .. "/config.json")
  local self = {cfg = cfg, file = ts.load(weights_path or dir .. "/weights.safetensors"),
                w = {}}
  require("model.weights").validate(cfg, self.file)
  return setmetatable(self, {__index = M})
end

-- Weight names of block L: "layers.L." for the main layers, "mtp.0." for
-- the MTP block (L = n_layers), whose attention is window-only.
function M:prefix(L)
  if L >= self.cfg.n_layers then return "mtp.0." end
  return string.format("layers.%d.", L)
end

-- A weight as f32 (bf16 checkpoints hold exactly representable values).
function M:weight(name)
  if not self.w[name] then
    local t = self.file:get(name)
    self.w[name] = t:dtype() == "f32" and t or t:cast("f32")
  end
  return self.w[name]
end

-- Prefill of ids [T] (an i32 tensor): logits of the last position, and a
-- record of what each layer made.
function M:prefill(ids)
  local cfg, T, d = self.cfg, ids:numel(), self.cfg.dim
  self:reset()
  local h0 = f32{T, d}
  kernel("embed.tile", "embed"):launch{ids, self.file:get("embed.weight"), h0}
  local hv, xv = h0:to_table(), {}
  for t = 0, T - 1 do
    for j = 1, 4 do
      for c = 1, d do xv[#xv + 1] = hv[t * d + c] end
    end
  end
  local X = ts.tensor("f32", {T, 4, d}, xv)
  local pos_v = {}
  for t = 0, T - 1 do pos_v[t + 1] = t end
  local pos = ts.tensor("i32", {T}, pos_v)
  local record = {}
  for L = 0, cfg.n_layers - 1 do
    local r = {}
    local made
    X, r.attn_in, r.attn_out, made = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention(L, x, pos)
    end)
    r.made = made
    X, r.ffn_in, r.ffn_out = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
    r.out = X
    record[L] = r
    -- the decode state of the layer (V4-SPEC 4.4's hand-off): the last W
    -- KV rows (by position), the compressed entries and indexer keys, and
    -- each compressor's partial-window buffer of projected rows (4.3)
    local W, kvs, ring = self.cfg.window_size, rows(made.kv), {}
    for q = math.max(1, T - W + 1), T do ring[q] = kvs[q] end
    local buf = {}
    for which, cz in pairs(made.projected or {}) do
      local cr, zr = rows(cz[1]), rows(cz[2])
      local keep = self.buffer_rows(self.cfg.compress_ratios[L + 1])
      buf[which] = {c = {}, z = {}}
      for q = math.max(1, T - keep + 1), T do
        buf[which].c[#buf[which].c + 1] = cr[q]
        buf[which].z[#buf[which].z + 1] = zr[q]
      end
    end
    self.state[L] = {kv = ring, buf = buf,
                     comp = made.compressed and rows(made.compressed) or {},
                     keys = made.indexer_keys and rows(made.indexer_keys) or {}}
  end
  self.next_pos = T
    self.final_streams = X
  return self:head(X), record
end


-- ---- decode ------------------------------------------------------------------------------

-- Forgets the sequence: a new prefill starts from position 0.
function M:reset()
  self.state = {}
  self.next_pos = 0
end

-- One decode step: token `id` at the next position; returns its logits.
function M:decode(id)
  local cfg, d, t = self.cfg, self.cfg.dim, self.next_pos
  if not t or t == 0 then error("decode needs a prefill first", 2) end
  local ids = ts.tensor("i32", {1}, {id})
  local h0 = f32{1, d}
  kernel("embed.tile", "embed"):launch{ids, self.file:get("embed.weight"), h0}
  local hv, xv = h0:to_table(), {}
  for j = 1, 4 do table.move(hv, 1, d, #xv + 1, xv) end
  local X = ts.tensor("f32", {1, 4, d}, xv)
  for L = 0, cfg.n_layers - 1 do
    X = self:mhc_block(L, "attn", X, nil, function(x)
      return self:attention_step(L, x, t)
    end)
    X = self:mhc_block(L, "ffn", X, nil, function(x)
      return self:moe(L, x, ids)
    end)
  end
  self.next_pos = t + 1
  return self:head(X)
end



-- The bytes the caches hold after `tokens` positions, in the production
-- formats of V4-SPEC 3 (a 584-byte entry: 448 e4m3 + 64 bf16 rope + 7
-- scales + pad; a 68-byte FP4 indexer key): per layer the window ring, the
-- compressed entries and the indexer keys actually held; and what dense
-- attention over every position would hold with the same entries.
function M:cache_bytes()
  local T, W = self.next_pos or 0, self.cfg.window_size
  local held, dense = 0, 0
  for L = 0, self.cfg.n_layers - 1 do
    local st = self.state[L]
    held = held + (math.min(T, W) + #st.comp) * 584 + #st.keys * 68
    dense = dense + T * 584
  end
  return held, dense
end

-- The methods of each concept, in their own files.
for _, part in ipairs{"rope", "compressor", "attention", "moe", "mhc", "mtp"} do
  require("model." .. part)(M)
end

return M
