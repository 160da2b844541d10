-- weights.lua - the tensors of a V4 model and their shapes, from its config
-- (DeepSeek's inference/config.json keys), under the reference code's names
-- (V4-SPEC's per-layer weight list), so that a converted checkpoint of the
-- same shapes loads: M.list(cfg) -> {{name, dtype, shape}, ...}, and
-- M.validate(cfg, file) names the first tensor that is missing or wrong.
local M = {}

function M.list(cfg)
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

-- Checks that a loaded file holds every tensor of the config with its
-- dtype and shape; raises an error naming the first that does not.
function M.validate(cfg, file)
  local have = {}
  for _, n in ipairs(file:names()) do have[n] = true end
  for _, w in ipairs(M.list(cfg)) do
    local name, dtype, shape = w[1], w[2], w[3]
    if not have[name] then error("weights: tensor '" .. name .. "' is missing", 0) end
    local t = file:get(name)
    local s = t:shape()
    local ok = #s == #shape and t:dtype() == dtype
    for i = 1, #shape do ok = ok and s[i] == shape[i] end
    if not ok then
      error(string.format("weights: tensor '%s' is %s[%s], the config needs %s[%s]", name,
                          t:dtype(), table.concat(s, ", "), dtype, table.concat(shape, ", ")), 0)
    end
  end
end

return M
