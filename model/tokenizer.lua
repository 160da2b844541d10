-- tokenizer.lua - a model's tokenizer: the tokenizer.json beside its
-- weights (ts.tokenizer, runtime/tokenizer.c: byte-level BPE as DeepSeek
-- releases it, with tokenizer_config.json's BOS and EOS), or byte-level ids
-- (0-255 are the bytes) for the tiny configs, which have no tokenizer.
--   local T = require "model.tokenizer"
--   local tk = T.open(path_or_nil, vocab_size [, required])   -- a folder or a
--     tokenizer.json; a folder without one is byte-level ids unless required
--   tk.encode(text [, raw]) -> ids (BOS first when the tokenizer adds one,
--     unless raw), T.chat(messages, "chat"|"thinking") -> V4's chat prompt
--   tk.decode(ids) -> text (special tokens left out), tk.eos (id or nil),
--   tk.name (what it is, for messages)
local ts = require "tessera"
local json = require "model.json"

local M = {}

-- DeepSeek V4's special tokens of its chat format (encoding/encoding_dsv4.py
-- of the release)
M.BOS = "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>"
M.EOS = "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"
M.USER = "<\u{ff5c}User\u{ff5c}>"
M.ASSISTANT = "<\u{ff5c}Assistant\u{ff5c}>"

-- A conversation as V4's chat format writes it, for mode "chat" or
-- "thinking": BOS, a system message's text as is, each user turn after
-- <｜User｜>, each assistant turn as its content and EOS (its reasoning kept
-- only after the last user turn, "drop thinking"), and after a user turn
-- that an assistant turn follows or that ends the list <｜Assistant｜> then
-- </think> (chat, or a turn before the last user one) or <think> (thinking:
-- the model reasons first). Messages are {role = "system"|"user"|
-- "assistant", content = TEXT [, reasoning = TEXT]}; tools, tasks and
-- reasoning-effort prompts are not written.
function M.chat(messages, mode)
  if mode ~= "chat" and mode ~= "thinking" then error("chat: mode is 'chat' or 'thinking'", 0) end
  local last_user = 0
  for i, m in ipairs(messages) do
    if m.role == "user" then last_user = i end
  end
  local out = {M.BOS}
  for i, m in ipairs(messages) do
    local content = m.content or ""
    if m.role == "system" then
      out[#out + 1] = content
    elseif m.role == "user" then
      out[#out + 1] = M.USER .. content
      local next_msg = messages[i + 1]
      if not next_msg or next_msg.role == "assistant" then
        out[#out + 1] = M.ASSISTANT .. ((mode == "thinking" and i >= last_user) and "<think>" or "</think>")
      end
    elseif m.role == "assistant" then
      local reasoning = ""
      if mode == "thinking" and i > last_user then reasoning = (m.reasoning or "") .. "</think>" end
      out[#out + 1] = reasoning .. content .. M.EOS
    else
      error("chat: message " .. i .. " has role '" .. tostring(m.role) .. "'", 0)
    end
  end
  return table.concat(out)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function check_text(text)
  if type(text) ~= "string" then error("encode: a string, not a " .. type(text), 3) end
end

local function bytes(vocab_size)
  return {
    name = "byte-level ids (no tokenizer.json)",
    encode = function(text)
      check_text(text)
      local ids = {}
      for k = 1, #text do ids[k] = text:byte(k) end
      return ids
    end,
    -- for printing: ids past the bytes show as '?', and so do control bytes
    -- and bytes past ASCII (a random model's are rarely UTF-8)
    decode = function(ids)
      local out = {}
      for k, t in ipairs(ids) do
        local b = math.tointeger(t)
        out[k] = b and b >= 0 and b < 256 and string.char(b) or "?"
      end
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

function M.open(path, vocab_size, required)
  local file = path
  if path and not path:match("%.json$") then file = path .. "/tokenizer.json" end
  if not file or not exists(file) then
    if path and (path:match("%.json$") or required) then error("tokenizer: no file " .. file, 0) end
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
  local eos = id_of(cfg.eos_token) or tok:id(M.EOS)
  return {
    name = string.format("%s (%d ids)", file, n),
    tokenizer = tok,
    eos = eos,
    vocab_size = vocab_size,
    -- (raw: the text as it is, no BOS added: a chat prompt carries its own)
    encode = function(text, raw)
      check_text(text)
      local ids = tok:encode(text, not raw)
      if bos and not raw and ids[1] ~= bos then table.insert(ids, 1, bos) end
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
