-- serve.lua - a V4 model serving a stream of requests with continuous
-- batching (model/scheduler.lua): requests join the running batch when
-- they arrive, long prompts are prefilled in chunks between the others'
-- decode steps, finished requests leave and their state-pool slots go to
-- the next ones.
--   tessera run model/serve.lua --requests FILE|- [model options]
--       [--max-batch 8] [--prefill-tokens 512] [--out FILE]
--       [--max-tokens 64] [--temperature 0] [--top-p 0.9] [--seed 1] [--stream on|off]
--       [--prefix-cache 8] [--min-prefix 16]
-- (the model options as generate.lua's: --config NAME | --model FOLDER,
-- --kv, --linears, --experts, --device, --tokenizer, ...: model/launch.lua.)
-- FILE (- : standard input) holds one request a line, a JSON object:
--   {"id": ..., "prompt": "text" | "ids": [token ids], "chat": true,
--    "max_tokens": N, "temperature": T, "top_p": P, "seed": S, "arrive": STEP}
-- "prompt" is encoded by the tokenizer ("chat": as the user's turn in V4's
-- chat format: model/tokenizer.lua chat); the other fields default to the
-- options; "arrive" is the scheduler step from which the request is served
-- (0: at once), so that a file replays a traffic pattern the same way every
-- run; "id" defaults to the line number. Every request is read before the
-- first step (this is not a network server). --prefix-cache K keeps up to
-- K prompt prefixes that requests share (at least --min-prefix tokens: a
-- system prompt, a conversation so far) prefilled, and finished requests'
-- states (a prompt and its reply: a conversation's next turn, sent whole,
-- begins with them), and starts each request that begins with one from a
-- copy of its state (model/scheduler.lua; 0: off): the same tokens, the
-- prefix prefilled once.
-- Each request's reply is a JSON line, written when it ends: {"id",
-- "text" (the tokens' text; a byte that begins no valid UTF-8 as U+FFFD),
-- "tokens" (their ids), "prompt_tokens", "finish" ("eos": its last token is
-- the tokenizer's EOS, "length"), "arrive", "first_step", "done_step",
-- "ttft_ms" (from the step it arrived to its first token), "total_ms",
-- "cached_tokens" (its prompt's tokens taken from a kept prefix)}; a
-- request that cannot be served (a line that is not JSON, no prompt, a
-- prompt too long, a bad field) gets {"id", "error": "line N: why"} and the
-- others go on. With --stream on, each token is also a line as it is
-- picked, {"id", "token", "text"}: the text it adds to the request's
-- (a character whose bytes are not all there yet held back to the next
-- token's line), so that a request's lines' texts joined are its reply's.
-- A summary goes to standard error: tokens a second, the
-- decode steps' rows, time to first token. Each request's tokens are the
-- ones it gets alone (generate.lua with its prompt, --tokens max_tokens and
-- its sampling), bit for bit on the CPU (tests/lua/serve.lua). The first
-- run compiles the kernels each batch shape needs (the kernel cache keeps
-- them for later runs), which the first steps' times include.
local ts = require "tessera"
local json = require "model.json"
local launch = require "model.launch"
local tokenizer = require "model.tokenizer"
local Sched = require "model.scheduler"

local usage = "serve.lua --requests FILE|- " .. launch.model_usage ..
              " [--max-batch N] [--prefill-tokens N] [--out FILE] [--max-tokens N] " ..
              "[--temperature T] [--top-p P] [--seed S] [--stream on|off] [--prefix-cache K] " ..
              "[--min-prefix N]"
local opts = launch.options(arg, {["max-batch"] = "8", ["prefill-tokens"] = "512",
                                  ["max-tokens"] = "64", temperature = "0", ["top-p"] = "0.9",
                                  seed = "1", stream = "off", ["prefix-cache"] = "8",
                                  ["min-prefix"] = "16"},
                            {requests = true, out = true}, usage)
if opts.stream ~= "on" and opts.stream ~= "off" then error("--stream: on or off", 0) end
local stream = opts.stream == "on"
if not opts.requests then error("--requests: a file of requests (- for standard input); usage: "
                                .. usage, 0) end
local function count(name)
  local v = math.tointeger(tonumber(opts[name]))
  if not v or v < 1 then error("--" .. name .. ": a positive integer", 0) end
  return v
end
local max_batch, prefill_tokens, max_tokens = count("max-batch"), count("prefill-tokens"),
                                              count("max-tokens")
local prefix_cache = math.tointeger(tonumber(opts["prefix-cache"]))
if not prefix_cache or prefix_cache < 0 then
  error("--prefix-cache: a count, 0 (off) or more", 0)
end
local min_prefix = count("min-prefix")
local temperature, top_p, seed = launch.sampling(opts)

local input = opts.requests == "-" and io.stdin or io.open(opts.requests, "rb")
if not input then error("--requests: cannot open " .. opts.requests, 0) end
local out = opts.out and io.open(opts.out, "wb") or io.stdout
if not out then error("--out: cannot open " .. opts.out, 0) end

local _, model, device, tk = launch.open(opts)
local sched = Sched.new(model, {max_batch = max_batch, prefill_tokens = prefill_tokens,
                                eos = tk.eos, prefix_cache = prefix_cache,
                                min_prefix = min_prefix})

local function reply(t)
  out:write(json.encode(t), "\n")
  out:flush()
end

-- a request line's fields into the scheduler's request, or nil and why
local function request_of(q)
  if type(q) ~= "table" or #q > 0 then return nil, "a request is a JSON object" end
  local ids = q.ids
  if q.prompt ~= nil then
    if ids ~= nil then return nil, "both prompt and ids" end
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
  return {id = q.id, ids = ids, max_tokens = field("max_tokens", max_tokens),
          temperature = field("temperature", temperature), top_p = field("top_p", top_p),
          seed = field("seed", seed), arrive = field("arrive", 0)}
end

local n, refused = 0, 0
for line in input:lines() do
  n = n + 1
  if line:match("%S") then
    local ok, q = pcall(json.decode, line)
    local r, why
    if ok then r, why = request_of(q) else why = q end
    if r then
      if r.id == nil then r.id = n end
      local queued
      queued, why = sched:submit(r)
      if queued then r = nil end
    end
    if why then
      refused = refused + 1
      local id = ok and type(q) == "table" and q.id
      reply({id = id ~= nil and id or n, error = string.format("line %d: %s", n, why)})
    end
  end
end
if input ~= io.stdin then input:close() end

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

-- --stream's line for request r's token: the text it adds (shown so far:
-- r.shown), all of it at the request's end
local function stream_line(r, e)
  local text = tk.decode(table.move(r.tokens, 1, e.index, 1, {}))
  local shown = r.shown or ""
  local piece = ""
  if text:sub(1, #shown) == shown then
    local upto = e.finish and text or whole_chars(text)
    piece, r.shown = upto:sub(#shown + 1), upto
  end
  reply({id = r.id, token = e.token, text = piece})
end

local served, generated, prompt_tokens, ttfts = 0, 0, 0, {}
local t0 = ts.clock()
while sched:busy() do
  for _, e in ipairs(sched:step()) do
    local r = e.request
    if stream then stream_line(r, e) end
    if e.finish then
      served, generated, prompt_tokens = served + 1, generated + #r.tokens, prompt_tokens + #r.ids
      local ttft = (r.t_first - r.t_arrived) * 1e3
      ttfts[#ttfts + 1] = ttft
      reply({id = r.id, text = tk.decode(r.tokens), tokens = r.tokens, prompt_tokens = #r.ids,
             finish = r.finish, arrive = r.arrive, first_step = r.first_step,
             done_step = r.done_step, ttft_ms = ttft, total_ms = (r.t_done - r.t_arrived) * 1e3,
             cached_tokens = r.cached or 0})
    end
  end
end
local secs = ts.clock() - t0
if out ~= io.stdout then out:close() end

table.sort(ttfts)
local st = sched.stats
io.stderr:write(string.format(
  "served %d requests (%d refused) on %s (tokens: %s) in %d steps, %.2f s: %d prompt tokens, " ..
  "%d generated, %.1f tokens/s; %d decode steps of %.2f rows on average (at most %d; " ..
  "max batch %d); time to first token median %.1f ms, max %.1f ms; %d prompt tokens from %d " ..
  "kept prefixes\n",
  served, refused, device:name(), tk.name, st.steps, secs, prompt_tokens, generated,
  generated / math.max(secs, 1e-9), st.decode_steps, st.decode_rows / math.max(st.decode_steps, 1),
  st.max_rows, max_batch, ttfts[(#ttfts + 1) // 2] or 0, ttfts[#ttfts] or 0, st.cached_tokens,
  st.prefixes))
