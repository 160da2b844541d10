-- serving.lua - what serve.lua (a file of requests) and serve_http.lua (an
-- HTTP server) share: the scheduler's options from the command line, a
-- request's JSON fields into a scheduler request, a streamed token's text,
-- and the summary of a run.
--   local serving = require "model.serving"
--   local opts, cfg = serving.options(arg, extra_defaults, extra_known, usage)
--   local r, why = serving.request_of(q, tk, cfg)
--   local piece = serving.piece(tk, r, event)
local launch = require "model.launch"
local tokenizer = require "model.tokenizer"

local M = {}

M.usage = launch.model_usage .. " [--max-batch N] [--prefill-tokens N] [--prefix-cache K] " ..
          "[--min-prefix N] [--max-tokens N] [--temperature T] [--top-p P] [--seed S]"

-- The command line (launch.options with the scheduler's options and
-- `defaults`/`known` besides), checked; returns the options and the
-- scheduler's settings: {max_batch, prefill_tokens, prefix_cache,
-- min_prefix, max_tokens, temperature, top_p, seed}.
function M.options(argv, defaults, known, usage)
  local all = {["max-batch"] = "8", ["prefill-tokens"] = "512", ["max-tokens"] = "64",
               temperature = "0", ["top-p"] = "0.9", seed = "1", ["prefix-cache"] = "8",
               ["min-prefix"] = "16"}
  for k, v in pairs(defaults) do all[k] = v end
  local opts = launch.options(argv, all, known, usage)
  local function count(name, lo)
    local v = math.tointeger(tonumber(opts[name]))
    if not v or v < lo then
      error("--" .. name .. (lo == 0 and ": a count, 0 (off) or more" or ": a positive integer"), 0)
    end
    return v
  end
  local cfg = {max_batch = count("max-batch", 1), prefill_tokens = count("prefill-tokens", 1),
               max_tokens = count("max-tokens", 1), prefix_cache = count("prefix-cache", 0),
               min_prefix = count("min-prefix", 1)}
  cfg.temperature, cfg.top_p, cfg.seed = launch.sampling(opts)
  return opts, cfg
end

local roles = {system = true, user = true, assistant = true}

-- The ids of a conversation's messages ({{role, content}, ...}) in V4's
-- chat format (thinking: the model reasons first), or nil and why.
local function chat_ids(tk, messages, thinking)
  if type(messages) ~= "table" or #messages == 0 then
    return nil, "messages: a list of {\"role\", \"content\"}"
  end
  for i, m in ipairs(messages) do
    if type(m) ~= "table" or not roles[m.role] or type(m.content) ~= "string" then
      return nil, "messages[" .. i .. "]: a role (system, user, assistant) and a content string"
    end
  end
  if not tk.tokenizer then return nil, "chat needs a tokenizer.json" end
  return tk.encode(tokenizer.chat(messages, thinking and "thinking" or "chat"), true)
end

-- Request q's JSON fields ({"prompt": text | "ids": [...] | "messages":
-- [{role, content}...], "chat": true (the prompt as a user turn),
-- "thinking": true (messages: the model reasons first), "max_tokens",
-- "temperature", "top_p", "seed", "arrive", "id"}) as a scheduler request
-- (r.thinking set), the defaults from cfg (M.options'); or nil and why.
function M.request_of(q, tk, cfg)
  if type(q) ~= "table" or #q > 0 then return nil, "a request is a JSON object" end
  local ids = q.ids
  local given = (q.prompt ~= nil and 1 or 0) + (q.ids ~= nil and 1 or 0) +
                (q.messages ~= nil and 1 or 0)
  if given > 1 then return nil, "one of prompt, ids and messages" end
  if q.messages ~= nil then
    local why
    ids, why = chat_ids(tk, q.messages, q.thinking == true)
    if not ids then return nil, why end
  elseif q.prompt ~= nil then
    if type(q.prompt) ~= "string" then return nil, "prompt: a string" end
    if q.chat then
      if not tk.tokenizer then return nil, "chat needs a tokenizer.json" end
      ids = tk.encode(tokenizer.chat({{role = "user", content = q.prompt}}, "chat"), true)
    else
      ids = tk.encode(q.prompt)
    end
  elseif type(ids) ~= "table" then
    return nil, "no prompt (\"prompt\": text or \"ids\": token ids)"
  end
  local function field(name, default)
    local v = q[name]
    if v == nil then return default end
    return v
  end
  return {id = q.id, ids = ids, max_tokens = field("max_tokens", cfg.max_tokens),
          temperature = field("temperature", cfg.temperature), top_p = field("top_p", cfg.top_p),
          seed = field("seed", cfg.seed), arrive = field("arrive", 0),
          thinking = q.messages ~= nil and q.thinking == true}
end

-- A chat reply's text as its reasoning and its answer: in thinking mode
-- the text up to the first </think> and what follows it (all reasoning
-- while there is none: a reply cut short; until `final`, a tail that may
-- begin a </think> is held back from both), else no reasoning.
function M.chat_parts(text, thinking, final)
  if not thinking then return "", text end
  local at = text:find("</think>", 1, true)
  if at then return text:sub(1, at - 1), text:sub(at + 8) end
  if not final then
    for k = math.min(7, #text), 1, -1 do
      if ("</think>"):sub(1, k) == text:sub(-k) then return text:sub(1, #text - k), "" end
    end
  end
  return text, ""
end

-- s without a last character that is still missing bytes (a UTF-8 lead
-- byte and fewer continuation bytes than it needs)
local function whole_chars(s)
  for back = 1, math.min(3, #s) do
    local c = s:byte(#s - back + 1)
    if c >= 0xC0 then
      local need = c >= 0xF0 and 4 or c >= 0xE0 and 3 or 2
      return need > back and s:sub(1, #s - back) or s
    elseif c < 0x80 then
      return s
    end
  end
  return s
end

-- Request r's text to show after scheduler event e (r.shown: what was
-- shown before, returned second): its tokens' text so far, a character
-- still missing bytes held back to a later token, all of it at the
-- request's end; nil where it does not go on from what was shown (r.shown
-- kept).
function M.shown(tk, r, e)
  local text = tk.decode(table.move(r.tokens, 1, e.index, 1, {}))
  local shown = r.shown or ""
  if text:sub(1, #shown) ~= shown then return nil, shown end
  r.shown = e.finish and text or whole_chars(text)
  return r.shown, shown
end

-- The text event e's token adds to request r's (M.shown), so that the
-- pieces joined are the reply's text.
function M.piece(tk, r, e)
  local now, before = M.shown(tk, r, e)
  return now and now:sub(#before + 1) or ""
end

-- The line a run of `secs` seconds ends with (sched.stats): the requests
-- served and refused, tokens a second, the decode steps' rows, time to
-- first token, the prompt tokens from kept prefixes.
function M.summary(sched, device, tk, refused, secs)
  local st = sched.stats
  local ttfts = table.move(st.ttft_ms, 1, #st.ttft_ms, 1, {})
  table.sort(ttfts)
  return string.format(
    "served %d requests (%d refused) on %s (tokens: %s) in %d steps, %.2f s: %d prompt tokens, " ..
    "%d generated, %.1f tokens/s; %d decode steps of %.2f rows on average (at most %d; " ..
    "max batch %d); time to first token median %.1f ms, max %.1f ms; %d prompt tokens from %d " ..
    "kept prefixes",
    st.served, refused, device:name(), tk.name, st.steps, secs, st.prompt_tokens, st.generated,
    st.generated / math.max(secs, 1e-9), st.decode_steps,
    st.decode_rows / math.max(st.decode_steps, 1), st.max_rows, sched.max_batch,
    ttfts[(#ttfts + 1) // 2] or 0, ttfts[#ttfts] or 0, st.cached_tokens, st.prefixes)
end

return M
