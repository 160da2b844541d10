-- tokenizer_json.lua - writes tokenizer.json files as Hugging Face's
-- tokenizers library lays them out, for the tests (tests/lua/lib is not
-- itself a test): a byte-level BPE vocabulary (the 256 byte tokens, then
-- each merge's result), merges as "a b" in GPT-2's byte-to-character map,
-- added tokens, a pre-tokenizer, a post-processor.
local T = {}

-- GPT-2's map: printable bytes stand for themselves, the rest for 256 + n.
local function printable(b) return (b >= 33 and b <= 126) or (b >= 161 and b <= 172) or b >= 174 end
local byte_cp = {}
do
  local n = 0
  for b = 0, 255 do
    if printable(b) then byte_cp[b] = b else byte_cp[b] = 256 + n; n = n + 1 end
  end
end

function T.mapped(bytes)
  return (bytes:gsub(".", function(c) return utf8.char(byte_cp[c:byte()]) end))
end

-- a JSON string (quotes, backslashes and controls as \u escapes)
function T.str(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

-- The patterns of the pre-tokenizers tests/lua/data/gen_pretok.py names.
T.patterns = {
  deepseek = {"\\p{N}{1,3}", "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
              [=[[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+]=]},
  llama3 = {[=[(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+]=]},
}

local bytelevel = '{"type": "ByteLevel", "add_prefix_space": %s, "trim_offsets": true, "use_regex": %s}'

-- A pre_tokenizer's JSON: "gpt2" (ByteLevel's own regex), or Splits of
-- T.patterns[name] (or of a list of patterns), then ByteLevel.
function T.pre(name, prefix_space)
  if name == "gpt2" then return string.format(bytelevel, tostring(prefix_space or false), "true") end
  local steps = {}
  for _, p in ipairs(type(name) == "table" and name or T.patterns[name]) do
    steps[#steps + 1] = string.format('{"type": "Split", "pattern": {"Regex": %s}, ' ..
                                      '"behavior": "Isolated", "invert": false}', T.str(p))
  end
  steps[#steps + 1] = string.format(bytelevel, "false", "false")
  return '{"type": "Sequence", "pretokenizers": [' .. table.concat(steps, ", ") .. ']}'
end

-- Writes path. o.pre: the pre_tokenizer JSON; o.merges: {{a, b}, ...} of
-- raw bytes; o.added: {{content =, special =, lstrip =, rstrip =}, ...},
-- ids 0.. before the bytes (as DeepSeek's specials are); o.bos: the added
-- token the post-processor puts first; o.extra: more JSON members (raw).
-- Returns the vocabulary: bytes -> id, and the added tokens' ids by content.
function T.write(path, o)
  local vocab, order, added_ids = {}, {}, {}
  local function add(bytes)
    if not vocab[bytes] then
      vocab[bytes] = #order + #(o.added or {})
      order[#order + 1] = bytes
    end
  end
  for b = 0, 255 do add(string.char(b)) end
  for _, m in ipairs(o.merges or {}) do add(m[1] .. m[2]) end
  local parts = {}
  for i, bytes in ipairs(order) do
    parts[i] = T.str(T.mapped(bytes)) .. ": " .. vocab[bytes]
  end
  local added = {}
  for i, a in ipairs(o.added or {}) do
    added_ids[a.content] = i - 1
    added[i] = string.format('{"id": %d, "content": %s, "single_word": false, "lstrip": %s, ' ..
                             '"rstrip": %s, "normalized": false, "special": %s}', i - 1,
                             T.str(a.content), tostring(a.lstrip or false),
                             tostring(a.rstrip or false), tostring(a.special ~= false))
    parts[#parts + 1] = T.str(a.content) .. ": " .. (i - 1)
  end
  local merges = {}
  for i, m in ipairs(o.merges or {}) do merges[i] = T.str(T.mapped(m[1]) .. " " .. T.mapped(m[2])) end
  local post = "null"
  if o.bos then
    post = string.format('{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": %s, ' ..
                         '"type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], ' ..
                         '"special_tokens": {%s: {"id": %s, "ids": [%d], "tokens": [%s]}}}',
                         T.str(o.bos), T.str(o.bos), T.str(o.bos), added_ids[o.bos], T.str(o.bos))
  end
  local f = assert(io.open(path, "wb"))
  f:write('{\n  "version": "1.0",\n  "truncation": null,\n  "padding": null,\n',
          '  "added_tokens": [', table.concat(added, ",\n    "), '],\n',
          '  "normalizer": ', o.normalizer or "null", ',\n',
          '  "pre_tokenizer": ', o.pre, ',\n',
          '  "post_processor": ', post, ',\n',
          '  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, ' ..
          '"use_regex": true},\n',
          '  "model": {"type": "BPE", "dropout": null, "unk_token": null, ',
          '"continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, ',
          '"byte_fallback": false, "ignore_merges": ', tostring(o.ignore_merges or false), ',\n',
          '    "vocab": {', table.concat(parts, ", "), '},\n',
          '    "merges": [', table.concat(merges, ", "), ']}', o.extra or "", '\n}\n')
  f:close()
  return vocab, added_ids
end

-- A folder's tokenizer as DeepSeek V4 releases one, small: DeepSeek's
-- pre-tokenizer, a few merges, V4's special tokens (BOS, EOS, the chat
-- roles, <think> and </think>) and a tokenizer_config.json that adds the
-- BOS. Returns the vocabulary, the added tokens' ids and the specials' texts.
function T.v4_folder(dir)
  local tokenizer = require "model.tokenizer"
  local BOS, EOS = tokenizer.BOS, tokenizer.EOS
  local merges = {{" ", "t"}, {"h", "e"}, {" t", "he"}, {"e", "r"}, {" ", "a"}, {"i", "n"},
                  {"o", "n"}}
  local vocab, added = T.write(dir .. "/tokenizer.json", {
    pre = T.pre("deepseek"), merges = merges,
    added = {{content = BOS}, {content = EOS}, {content = tokenizer.USER},
             {content = tokenizer.ASSISTANT}, {content = "<think>", special = false},
             {content = "</think>", special = false}}})
  local f = assert(io.open(dir .. "/tokenizer_config.json", "wb"))
  f:write(string.format('{"add_bos_token": true, "add_eos_token": false, "bos_token": ' ..
                        '{"__type": "AddedToken", "content": %s}, "eos_token": %s, ' ..
                        '"model_max_length": 131072}', T.str(BOS), T.str(EOS)))
  f:close()
  return vocab, added, BOS, EOS
end

return T
