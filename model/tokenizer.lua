-- tokenizer.lua - a model's tokenizer: the tokenizer.json beside its
-- weights (ts.tokenizer, runtime/tokenizer.c: byte-level BPE as DeepSeek
-- releases it, with tokenizer_config.json's BOS and EOS), or byte-level ids
-- (0-255 are the bytes) for the tiny configs, which have no tokenizer.
--   local T = require "model.tokenizer"
--   local tk = T.open(path_or_nil, vocab_size)   -- a folder or a tokenizer.json
--   tk.encode(text) -> ids (BOS first when the tokenizer adds one)
--   tk.decode(ids) -> text (special tokens left out), tk.eos (id or nil),
--   tk.name (what it is, for messages)
local ts = require "tessera"
local json = require "model.json"

local M = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function bytes(vocab_size)
  return {
    name = "byte-level ids (no tokenizer.json)",
    encode = function(text)
      local ids = {}
      for k = 1, #text do ids[k] = text:byte(k) end
      return ids
    end,
    -- for printing: ids past the bytes show as '?', and so do control bytes
    -- and bytes past ASCII (a random model's are rarely UTF-8)
    decode = function(ids)
      local out = {}
      for k, t in ipairs(ids) do out[k] = t < 256 and string.char(t) or "?" end
      return (table.concat(out):gsub("[%z\1-\8\11-\31\127-\255]", "?"))
    end,
    vocab_size = vocab_size,
  }
end

-- tokenizer_config.json's bos_token / eos_token: a string or {content = }
local function token_name(v)
  if type(v) == "table" then return v.content end
  return v
end

function M.open(path, vocab_size)
  local file = path
  if path and not path:match("%.json$") then file = path .. "/tokenizer.json" end
  if not file or not exists(file) then
    if path and path:match("%.json$") then error("tokenizer: no file " .. path, 0) end
    return bytes(vocab_size)
  end
  local tok = ts.tokenizer(file)
  local n = tok:vocab_count()
  if vocab_size and n > vocab_size then
    error(string.format("%s: %d token ids, but the model's embedding has %d rows", file, n,
                        vocab_size), 0)
  end
  local dir = file:match("^(.*)/[^/]*$") or "."
  local cfg = {}
  if exists(dir .. "/tokenizer_config.json") then cfg = json.read(dir .. "/tokenizer_config.json") end
  local function id_of(v)
    local name = token_name(v)
    local id = name and tok:id(name)
    if name and not id then
      error(string.format("%s/tokenizer_config.json: '%s' is not a token of %s", dir, name, file), 0)
    end
    return id
  end
  local bos = cfg.add_bos_token and id_of(cfg.bos_token)
  -- DeepSeek's end of sentence when the config does not name one
  local eos = id_of(cfg.eos_token) or tok:id("<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>")
  return {
    name = string.format("%s (%d ids)", file, n),
    tokenizer = tok,
    eos = eos,
    vocab_size = vocab_size,
    encode = function(text)
      local ids = tok:encode(text, true)
      if bos and ids[1] ~= bos then table.insert(ids, 1, bos) end
      return ids
    end,
    -- (ids the tokenizer does not have, as the embedding's padding rows
    -- past DeepSeek's 128K tokens, show as U+FFFD)
    decode = function(ids)
      local out, run = {}, {}
      for _, id in ipairs(ids) do
        if tok:token(id) then
          run[#run + 1] = id
        else
          out[#out + 1] = tok:decode(run, true) .. "\u{fffd}"
          run = {}
        end
      end
      out[#out + 1] = tok:decode(run, true)
      return table.concat(out)
    end,
  }
end

return M
