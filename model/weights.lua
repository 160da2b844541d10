-- weights.lua - the tensors of a V4 model and their shapes, from its config
-- (DeepSeek's inference/config.json keys), under the reference code's names
-- (V4-SPEC's per-layer weight list), so that a converted checkpoint of the
-- same shapes loads: M.list(cfg) -> {{name, dtype, shape}, ...}, and
-- M.validate(cfg, file) names the first tensor that is missing or wrong.
local M = {}

-- The config checked against what the model and its kernels are built for,
-- before anything is made from it: an error ("config: ...", at the caller's
-- caller `level` up, 1 its own caller) naming the first field that is not.
-- Every size a whole number (1 or more); 4 residual streams (the mHC
-- weights' 24 logits), one shared expert, indexer heads of 128 (its
-- Hadamard), the layers' compression ratios 0, 4 or 128.
function M.check_config(cfg, level)
  level = (level or 1) + 2
  local function bad(fmt, ...) error("config: " .. string.format(fmt, ...), level) end
  -- (the checks of one field: their errors one call deeper)
  local function int(name, min, max, what)
    local v = math.tointeger(cfg[name])
    if not (v and v >= min and (not max or v <= max)) then
      level = level + 1
      bad("%s is %s: %s", name, tostring(cfg[name]), what or max and string.format(
          "a whole number from %d to %d", min, max) or string.format("a whole number of %d or more",
          min))
    end
    return v
  end
  local function real(name, what)
    local v = cfg[name]
    if not (type(v) == "number" and v > 0 and v < math.huge) then
      level = level + 1
      bad("%s is %s: %s", name, tostring(v), what or "a number above 0")
    end
  end
  local n = int("n_layers", 1)
  local mtp = cfg.n_mtp_layers == nil and 0 or int("n_mtp_layers", 0)
  local r = cfg.compress_ratios
  if type(r) ~= "table" or #r < n + mtp then
    bad("compress_ratios has %d entries, n_layers + n_mtp_layers (%d) need one each",
        type(r) == "table" and #r or 0, n + mtp)
  end
  for i = 1, n + mtp do
    if r[i] ~= 0 and r[i] ~= 4 and r[i] ~= 128 then
      bad("compress_ratios[%d] is %s: 0 (the window), 4 (CSA) or 128 (HCA)", i, tostring(r[i]))
    end
  end
  for _, f in ipairs{"dim", "moe_inter_dim", "n_heads", "n_routed_experts", "q_lora_rank",
                     "head_dim", "o_lora_rank", "window_size", "index_n_heads", "index_topk",
                     "hc_sinkhorn_iters", "max_seq_len", "original_seq_len"} do
    int(f, 1)
  end
  int("vocab_size", 1, 2147483647)
  int("n_hash_layers", 0) -- (the first ones: every layer where it is n_layers or more)
  int("n_activated_experts", 1, cfg.n_routed_experts)
  int("index_head_dim", 128, 128, "128 (the indexer's Hadamard transform is built for it)")
  int("rope_head_dim", 2, math.min(cfg.head_dim, 128))
  if cfg.rope_head_dim % 2 ~= 0 then bad("rope_head_dim is %d: even", cfg.rope_head_dim) end
  int("o_groups", 1, cfg.n_heads)
  if cfg.n_heads % cfg.o_groups ~= 0 then
    bad("o_groups is %d: a divisor of n_heads (%d)", cfg.o_groups, cfg.n_heads)
  end
  if cfg.hc_mult ~= nil then int("hc_mult", 4, 4, "4 (mHC's four residual streams)") end
  if cfg.n_shared_experts ~= nil then
    int("n_shared_experts", 1, 1, "1 (V4's one shared expert)")
  end
  if cfg.score_func ~= nil and cfg.score_func ~= "sqrtsoftplus" then
    bad("score_func is %s: sqrtsoftplus (V4's router)", tostring(cfg.score_func))
  end
  for _, f in ipairs{"norm_eps", "hc_eps", "rope_theta", "compress_rope_theta", "route_scale",
                     "swiglu_limit", "beta_fast", "beta_slow"} do
    real(f)
  end
  real("rope_factor", "a number above 0 (1: no YaRN scaling)")
end

function M.list(cfg)
  M.check_config(cfg, 2)
  local d, H, c = cfg.dim, cfg.n_heads, cfg.head_dim
  local q, G, dg = cfg.q_lora_rank, cfg.o_groups, cfg.o_lora_rank
  local E, I, K = cfg.n_routed_experts, cfg.moe_inter_dim, cfg.n_activated_experts
  local HI, DI = cfg.index_n_heads, cfg.index_head_dim
  local out = {}
  local function add(name, dtype, shape) out[#out + 1] = {name, dtype, shape} end
  local function block(p, ratio, hash)
    add(p .. "attn_norm.weight", "f32", {d})
    add(p .. "ffn_norm.weight", "f32", {d})
    for _, side in ipairs{"attn", "ffn"} do
      add(p .. "hc_" .. side .. "_fn", "f32", {24, 4 * d})
      add(p .. "hc_" .. side .. "_base", "f32", {24})
      add(p .. "hc_" .. side .. "_scale", "f32", {3})
    end
    local a = p .. "attn."
    add(a .. "wq_a.weight", "bf16", {q, d})
    add(a .. "q_norm.weight", "f32", {q})
    add(a .. "wq_b.weight", "bf16", {H * c, q})
    add(a .. "wkv.weight", "bf16", {c, d})
    add(a .. "kv_norm.weight", "f32", {c})
    add(a .. "wo_a.weight", "bf16", {G * dg, H // G * c})
    add(a .. "wo_b.weight", "bf16", {d, G * dg})
    add(a .. "attn_sink", "f32", {H})
    local function compressor(cp, width, m)
      local kappa = m == 4 and 2 or 1
      add(cp .. "wkv.weight", "f32", {kappa * width, d})
      add(cp .. "wgate.weight", "f32", {kappa * width, d})
      add(cp .. "ape", "f32", {m, kappa * width})
      add(cp .. "norm.weight", "f32", {width})
    end
    if ratio > 0 then compressor(a .. "compressor.", c, ratio) end
    if ratio == 4 then
      add(a .. "indexer.wq_b.weight", "bf16", {HI * DI, q})
      add(a .. "indexer.weights_proj.weight", "bf16", {HI, d})
      compressor(a .. "indexer.compressor.", DI, 4)
    end
    local f = p .. "ffn."
    add(f .. "gate.weight", "bf16", {E, d})
    if hash then
      add(f .. "gate.tid2eid", "i32", {cfg.vocab_size, K})
    else
      add(f .. "gate.bias", "f32", {E})
    end
    for e = 0, E - 1 do
      add(f .. "experts." .. e .. ".w1.weight", "bf16", {I, d})
      add(f .. "experts." .. e .. ".w2.weight", "bf16", {d, I})
      add(f .. "experts." .. e .. ".w3.weight", "bf16", {I, d})
    end
    add(f .. "shared_experts.w1.weight", "bf16", {I, d})
    add(f .. "shared_experts.w2.weight", "bf16", {d, I})
    add(f .. "shared_experts.w3.weight", "bf16", {I, d})
  end
  add("embed.weight", "bf16", {cfg.vocab_size, d})
  add("head.weight", "f32", {cfg.vocab_size, d})
  add("norm.weight", "f32", {d})
  add("hc_head_fn", "f32", {4, 4 * d})
  add("hc_head_base", "f32", {4})
  add("hc_head_scale", "f32", {1})
  for L = 0, cfg.n_layers - 1 do
    block(string.format("layers.%d.", L), cfg.compress_ratios[L + 1], L < cfg.n_hash_layers)
  end
  for m = 0, (cfg.n_mtp_layers or 0) - 1 do
    local p = "mtp." .. m .. "."
    block(p, 0, false)
    add(p .. "e_proj.weight", "bf16", {d, d})
    add(p .. "h_proj.weight", "bf16", {d, d})
    add(p .. "enorm.weight", "f32", {d})
    add(p .. "hnorm.weight", "f32", {d})
    add(p .. "norm.weight", "f32", {d})
    add(p .. "hc_head_fn", "f32", {4, 4 * d})
    add(p .. "hc_head_base", "f32", {4})
    add(p .. "hc_head_scale", "f32", {1})
  end
  return out
end

-- Whether weight `name` is one the released checkpoints hold in FP8 (V4-SPEC
-- 1.11: its BF16 modules are the compressors, weights_proj, the router,
-- norms, ape, attn_sink, mHC, embed and head; the routed experts are FP4 in
-- the instruct checkpoints, the shared ones FP8).
function M.fp8_in_checkpoint(name)
  return name:match("%.attn%.w[^.]+%.weight$") or name:match("%.indexer%.wq_b%.weight$") or
    name:match("%.[eh]_proj%.weight$") or name:match("%.shared_experts%.w[123]%.weight$")
end

-- Whether the released checkpoints hold weight `name` in F32: the attention
-- sinks, the compressors' (and the indexer's compressor's) positional
-- biases `ape`, the router's bias and every mHC tensor (hc_attn_*, hc_ffn_*,
-- hc_head_*). The model's other f32 tensors (the compressors' projections
-- and norms, the norms, head) are BF16 there; validate accepts both.
-- (The tensor listing of a V4-Flash download shows exactly these:
-- tests/lua/release_names.lua.)
function M.f32_in_checkpoint(name)
  return name:match("%.attn_sink$") ~= nil or name:match("compressor%.ape$") ~= nil or
    name:match("%.gate%.bias$") ~= nil or name:match("^hc_") ~= nil or name:match("%.hc_") ~= nil
end

-- Whether `name` is a routed expert's matrix (FP4 in the instruct
-- checkpoints, FP8 in the Base ones).
function M.routed_expert(name)
  return name:match("%.experts%.%d+%.w[123]%.weight$") ~= nil
end

-- The scale tensor of a quantised weight: "x.weight" -> "x.scale".
function M.scale_name(name) return (name:gsub("%.weight$", ".scale")) end

local function same(s, shape)
  local ok = #s == #shape
  for i = 1, #shape do ok = ok and s[i] == shape[i] end
  return ok
end

-- Stored dtypes the model converts to the listed one exactly: the released
-- checkpoints hold their f32 modules' weights in BF16 (V4-SPEC 1.11: the
-- compressors, norms, ape, attn_sink, head; M:weight widens them), and an
-- index table (tid2eid: expert ids) may be i64.
local converts = {["f32<bf16"] = true, ["f32<f16"] = true, ["i32<i64"] = true}

local function wrong(name, dt, s, dtype, shape)
  error(string.format("weights: tensor '%s' is %s[%s], the config needs %s[%s]", name,
                      dt, table.concat(s, ", "), dtype, table.concat(shape, ", ")), 0)
end

-- Checks that a loaded file holds every tensor of the config with its
-- dtype (or one converted to it exactly: bf16 or f16 for f32, i64 for
-- i32) and shape; raises an error naming the first that does not. A
-- linear the released checkpoints hold in FP8 may be there in that format
-- (V4-SPEC 1.11): e4m3 codes of the same shape and a scale per 128 x 128
-- block, `.scale` [ceil(N / 128), ceil(K / 128)]; a routed expert's matrix
-- in FP4 (the instruct checkpoints): e2m1 codes two a byte (i8 [N, K / 2],
-- the lower K index in the low nibble) and a scale per 1 x 32 block,
-- `.scale` [N, K / 32], or in FP8 as a linear (the Base checkpoints). Scales
-- are f32, or ue8m0 bytes (safetensors F8_E8M0, read as i8). Returns the
-- names held quantised: {name = "fp8" | "fp4"} (one format for all of a
-- layer's routed experts).
function M.validate(cfg, file)
  local have, quant, layer_fmt = {}, {}, {}
  for _, n in ipairs(file:names()) do have[n] = true end
  for _, w in ipairs(M.list(cfg)) do
    local name, dtype, shape = w[1], w[2], w[3]
    if not have[name] then error("weights: tensor '" .. name .. "' is missing", 0) end
    -- (dtypes and shapes from the headers: no weight is read here)
    local dt, s = file:info(name)
    local fmt, sshape
    if same(s, shape) and (dt == dtype or converts[dtype .. "<" .. dt]) then
      fmt = dtype
    elseif dtype == "bf16" and dt == "fp8e4m3" and same(s, shape) and
           (M.fp8_in_checkpoint(name) or M.routed_expert(name)) then
      fmt, sshape = "fp8", {(shape[1] + 127) // 128, (shape[2] + 127) // 128}
    elseif dtype == "bf16" and dt == "i8" and M.routed_expert(name) and shape[2] % 32 == 0
           and same(s, {shape[1], shape[2] // 2}) then
      fmt, sshape = "fp4", {shape[1], shape[2] // 32}
    else
      wrong(name, dt, s, dtype, shape)
    end
    if sshape then
      local sn = M.scale_name(name)
      if not have[sn] then
        error(string.format("weights: tensor '%s' is %s, its scales '%s' are missing", name,
                            fmt == "fp8" and "FP8 (e4m3)" or "FP4 (packed e2m1)", sn), 0)
      end
      local sdt, ss = file:info(sn)
      if not ((sdt == "f32" or sdt == "i8") and same(ss, sshape)) then
        error(string.format("weights: tensor '%s' is %s[%s], the scales of %s weight '%s' are " ..
                            "f32 or F8_E8M0[%s]", sn, sdt, table.concat(ss, ", "),
                            fmt == "fp8" and "FP8" or "FP4", name, table.concat(sshape, ", ")), 0)
      end
      quant[name] = fmt
    end
    if M.routed_expert(name) then
      local layer = name:match("^(.-)experts%.")
      local prev = layer_fmt[layer]
      if prev and prev ~= fmt then
        error(string.format("weights: tensor '%s' is %s, another expert of '%s' %s: one " ..
                            "format for a layer's routed experts", name, fmt, layer, prev), 0)
      end
      layer_fmt[layer] = fmt
    end
  end
  return quant
end

return M
