-- kv_report.lua - the KV-cache bytes and per-token FLOPs of V4-Flash and
-- V4-Pro against V3.2 at a context length, with the production byte
-- formats and the precision-weighted FLOP convention of V4-SPEC section 3
-- (the same accounting as ../shared/tools/v4_cost.py, which a test checks
-- it against), read from the model configs:
--   tessera run model/kv_report.lua [--config v4-flash|v4-pro] [--tokens N]
--       [--svg FILE]   (both ratios against context length, 1K to 1M)
local json = require "model.json"

local M = {}

-- production formats (bytes, V4-SPEC 3; kernels/quant.tile packs them): a V4
-- KV entry of head_dim c with r rope dims is c - r e4m3 codes + r bf16 rope
-- dims + (c - r) / 64 ue8m0 scales, padded to 8 bytes (V4: 448 + 128 + 7 +
-- 1 = 584); an FP4 indexer key of D dims is D / 2 + D / 32 (V4: 68). V3.2:
-- the FlashMLA FP8 entry and the DeepGEMM FP8 indexer key.
M.V32_ENTRY, M.V32_IDX = 656, 132

function M.entry_bytes(c)
  local nope = c.head_dim - c.rope_head_dim
  return (nope + 2 * c.rope_head_dim + nope // 64 + 7) // 8 * 8
end

function M.index_key_bytes(c)
  return c.index_head_dim // 2 + c.index_head_dim // 32
end

function M.kv_bytes_per_token(c, T)
  local per, n = 0, #c.compress_ratios - 1 -- the MTP layer is not counted
  local E, K = M.entry_bytes(c), M.index_key_bytes(c)
  for L = 1, n do
    local r = c.compress_ratios[L]
    if r == 4 then per = per + E / 4 + K / 4
    elseif r > 0 then per = per + E / r end
  end
  return per + n * c.window_size * E / T
end

function M.v32_kv_bytes_per_token(v)
  return v.n_layers * (M.V32_ENTRY + M.V32_IDX)
end

-- (fp8_like, bf16_like) parameters touched per token, LM head included
function M.linear_params(c)
  local d, H, hd, qr = c.dim, c.n_heads, c.head_dim, c.q_lora_rank
  local HI, DI, hc = c.index_n_heads, c.index_head_dim, c.hc_mult
  local fp8, bf = 0, 0
  for L = 1, #c.compress_ratios - 1 do
    local r = c.compress_ratios[L]
    fp8 = fp8 + d * qr + qr * H * hd + d * hd
    fp8 = fp8 + H * hd * c.o_lora_rank + c.o_groups * c.o_lora_rank * d
    if r > 0 then bf = bf + 2 * d * (r == 4 and 2 or 1) * hd end
    if r == 4 then
      fp8 = fp8 + qr * HI * DI
      bf = bf + d * HI + 2 * d * 2 * DI
    end
    bf = bf + 2 * (2 + hc) * hc * hc * d
    bf = bf + c.n_routed_experts * d
    fp8 = fp8 + (c.n_activated_experts + 1) * 3 * d * c.moe_inter_dim
  end
  bf = bf + c.vocab_size * d + hc * hc * d
  return fp8, bf
end

function M.attn_flops(c, T)
  local core, idx = 0, 0
  for L = 1, #c.compress_ratios - 1 do
    local r, w = c.compress_ratios[L], math.min(c.window_size, T)
    local n
    if r == 0 then n = w
    elseif r == 4 then
      n = math.min(c.index_topk, T // 4) + w
      idx = idx + 2 * c.index_n_heads * c.index_head_dim * (T // 4) + 2 * c.index_n_heads * (T // 4)
    else n = T // r + w end
    core = core + 2 * 2 * c.head_dim * c.n_heads * n
  end
  return core, idx
end

function M.v32_params(v)
  local d, H, qr, V = v.dim, v.n_heads, v.q_lora_rank, v.vocab_size
  local qk = v.qk_nope_head_dim + v.qk_rope_head_dim
  local attn = d * qr + qr * H * qk + d * (v.kv_lora_rank + v.qk_rope_head_dim) +
               v.kv_lora_rank * H * (v.qk_nope_head_dim + v.v_head_dim) + H * v.v_head_dim * d
  local idx = qr * v.index_n_heads * v.index_head_dim + d * v.index_head_dim
  local moe_layers = v.n_layers - v.n_dense_layers
  local fp8 = v.n_layers * (attn + idx) + v.n_dense_layers * 3 * d * v.inter_dim +
              moe_layers * (v.n_activated_experts + 1) * 3 * d * v.moe_inter_dim
  local bf = v.n_layers * d * v.index_n_heads + moe_layers * v.n_routed_experts * d + V * d
  return fp8, bf
end

function M.v32_attn_flops(v, T)
  local core = v.n_layers * 2 * (v.kv_lora_rank + v.qk_rope_head_dim + v.kv_lora_rank) *
               v.n_heads * math.min(v.index_topk, T)
  local idx = v.n_layers * (2 * v.index_n_heads * v.index_head_dim * T + 2 * v.index_n_heads * T)
  return core, idx
end

-- KV and (precision-weighted) FLOP ratios of config c against V3.2 at T
function M.ratios(c, v, T)
  local kv = M.kv_bytes_per_token(c, T) / M.v32_kv_bytes_per_token(v)
  local f8, bf = M.linear_params(c)
  local co, ix = M.attn_flops(c, T)
  local g8, gbf = M.v32_params(v)
  local c3, i3 = M.v32_attn_flops(v, T)
  local w = 2 * (0.5 * f8 + bf) + co + 0.25 * ix
  local w3 = 2 * (0.5 * g8 + gbf) + c3 + 0.5 * i3
  return kv, w / w3, {kv_bytes = M.kv_bytes_per_token(c, T), flops = w, v32_flops = w3}
end

local function svg(path, cfgs, v)
  local W, H, left, bottom = 640, 360, 60, 40
  local function x(T) return left + (math.log(T, 10) - 3) / 3 * (W - left - 20) end
  local function y(r) return H - bottom - r / 0.6 * (H - bottom - 20) end
  local out = {string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" ' ..
    'font-family="sans-serif" font-size="11">', W, H),
    string.format('<text x="%d" y="14">KV bytes and weighted FLOPs per token against V3.2</text>', left)}
  for _, e in ipairs{{0, "0%"}, {0.1, "10%"}, {0.2, "20%"}, {0.4, "40%"}, {0.6, "60%"}} do
    out[#out + 1] = string.format('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>' ..
      '<text x="8" y="%.1f">%s</text>', left, y(e[1]), W - 20, y(e[1]), y(e[1]) + 4, e[2])
  end
  for _, e in ipairs{{1e3, "1K"}, {1e4, "10K"}, {1e5, "100K"}, {1e6, "1M"}} do
    out[#out + 1] = string.format('<text x="%.1f" y="%d">%s</text>', x(e[1]) - 8, H - 20, e[2])
  end
  local colors = {"#1f77b4", "#d62728"}
  for k, c in ipairs(cfgs) do
    for s, dash in ipairs{"", ' stroke-dasharray="5,3"'} do
      local pts = {}
      for i = 0, 60 do
        local T = math.floor(10 ^ (3 + i / 20))
        local kv, fl = M.ratios(c, v, T)
        pts[#pts + 1] = string.format("%.1f,%.1f", x(T), y(s == 1 and kv or fl))
      end
      out[#out + 1] = string.format('<polyline fill="none" stroke="%s"%s points="%s"/>',
                                    colors[k], dash, table.concat(pts, " "))
    end
    out[#out + 1] = string.format('<text x="%d" y="%d" fill="%s">%s: KV (solid), FLOPs (dashed)</text>',
                                  W - 260, 30 + 14 * k, colors[k], c.name)
  end
  out[#out + 1] = "</svg>"
  local f = assert(io.open(path, "w"))
  f:write(table.concat(out, "\n"), "\n")
  f:close()
end

if arg and arg[0] and arg[0]:find("kv_report") then
  local opts = {tokens = "1000000"}
  local known = {config = true, tokens = true, svg = true}
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(.+)$")
    if not k or arg[i + 1] == nil or not known[k] then
      error((k and not known[k] and "unknown option --" .. k .. "; " or "") ..
            "usage: kv_report.lua [--config NAME] [--tokens N] [--svg FILE]", 0)
    end
    opts[k] = arg[i + 1]
    i = i + 2
  end
  local v = json.read("model/configs/v3.2.json")
  local names = opts.config and {opts.config} or {"v4-flash", "v4-pro"}
  local cfgs = {}
  local T = math.tointeger(tonumber(opts.tokens))
  if not (T and T >= 1) then error("--tokens: a positive number of tokens", 0) end
  print(string.format("context %d tokens; V3.2: %d KV bytes/token", T, M.v32_kv_bytes_per_token(v)))
  for _, n in ipairs(names) do
    local c = json.read("model/configs/" .. n .. ".json")
    cfgs[#cfgs + 1] = c
    local kv, fl, d = M.ratios(c, v, T)
    print(string.format("%-9s KV %8.1f B/token = %5.2f%% of V3.2; weighted FLOPs %6.1fG = %5.1f%% of V3.2 (%6.1fG)",
                        c.name, d.kv_bytes, kv * 100, d.flops / 1e9, fl * 100, d.v32_flops / 1e9))
  end
  if opts.svg then
    svg(opts.svg, cfgs, v)
    print("wrote " .. opts.svg)
  end
end

return M
