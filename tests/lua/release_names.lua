-- release_names.lua - model/weights.lua at V4-Flash's shapes against the
-- tensors a download of the released V4-Flash checkpoint holds in F32
-- (its first four layers, the top level and the MTP block, as a published
-- listing of the files shows them): each is in weights.list with that
-- shape, listed f32, and weights.f32_in_checkpoint picks out exactly these
-- among those parts' tensors (the rest are BF16, FP8 or FP4 there).
local json = require "model.json"
local weights = require "model.weights"
local C = require "tests.lua.lib.check"
local check = C.check

local cfg = json.read("model/configs/v4-flash.json")
local listed = {}
for _, w in ipairs(weights.list(cfg)) do listed[w[1]] = {dtype = w[2], shape = w[3]} end

-- name = shape, from the listing
local mhc = {hc_attn_base = {24}, hc_attn_fn = {24, 16384}, hc_attn_scale = {3},
             hc_ffn_base = {24}, hc_ffn_fn = {24, 16384}, hc_ffn_scale = {3}}
local release = {}
local function block(p, extra)
  release[p .. "attn.attn_sink"] = {64}
  for k, v in pairs(mhc) do release[p .. k] = v end
  for k, v in pairs(extra or {}) do release[p .. k] = v end
end
block("layers.0.")
block("layers.1.")
block("layers.2.", {["attn.compressor.ape"] = {4, 1024}, ["attn.indexer.compressor.ape"] = {4, 256}})
block("layers.3.", {["attn.compressor.ape"] = {128, 512}, ["ffn.gate.bias"] = {256}})
block("mtp.0.", {["ffn.gate.bias"] = {256}, hc_head_base = {4}, hc_head_fn = {4, 16384}, hc_head_scale = {1}})
release.hc_head_base, release.hc_head_fn, release.hc_head_scale = {4}, {4, 16384}, {1}

local n, wrong = 0, {}
for name, shape in pairs(release) do
  n = n + 1
  local w = listed[name]
  local same = w and w.dtype == "f32" and #w.shape == #shape
  for i = 1, #shape do same = same and w.shape[i] == shape[i] end
  if not same then wrong[#wrong + 1] = name end
end
check(n == 46 and #wrong == 0, "the release's 46 F32 tensors are listed f32 with their shapes (" ..
      table.concat(wrong, ", ") .. ")")

local function in_parts(name)
  return name:match("^layers%.[0-3]%.") or name:match("^mtp%.0%.") or not name:match("^layers%.")
end
local extra, missed, parts = {}, {}, 0
for name in pairs(listed) do
  if in_parts(name) then
    parts = parts + 1
    local f32 = weights.f32_in_checkpoint(name)
    if f32 and not release[name] then extra[#extra + 1] = name end
    if not f32 and release[name] then missed[#missed + 1] = name end
  end
end
check(parts > 46 and #extra == 0 and #missed == 0,
      string.format("f32_in_checkpoint picks exactly those among %d tensors (extra: %s; missed: %s)", parts,
                    table.concat(extra, ", "), table.concat(missed, ", ")))
C.finish()
