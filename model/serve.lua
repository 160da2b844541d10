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
--   {"id": ..., "prompt": "text" | "ids": [token ids] | "messages":
--    [{"role", "content"}...] (V4's chat format; "thinking": true), "chat": true,
--    "max_tokens": N, "temperature": T, "top_p": P, "seed": S, "arrive": STEP}
-- "prompt" is encoded by the tokenizer ("chat": as the user's turn in V4's
-- chat format: model/tokenizer.lua chat); the other fields default to the
-- options; "arrive" is the scheduler step from which the request is served
-- (0: at once), so that a file replays a traffic pattern the same way every
-- run; "id" defaults to the line number. Every request is read before the
-- first step (model/serve_http.lua takes them as they come, over HTTP).
-- --prefix-cache K keeps up to
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
local serving = require "model.serving"
local Sched = require "model.scheduler"

local usage = "serve.lua --requests FILE|- " .. serving.usage .. " [--out FILE] [--stream on|off]"
local opts, cfg = serving.options(arg, {stream = "off"}, {requests = true, out = true}, usage)
if opts.stream ~= "on" and opts.stream ~= "off" then error("--stream: on or off", 0) end
local stream = opts.stream == "on"
if not opts.requests then
  error("--requests: a file of requests (- for standard input); usage: " .. usage, 0)
end

local input = opts.requests == "-" and io.stdin or io.open(opts.requests, "rb")
if not input then error("--requests: cannot open " .. opts.requests, 0) end
local out = opts.out and io.open(opts.out, "wb") or io.stdout
if not out then error("--out: cannot open " .. opts.out, 0) end

local _, model, device, tk = launch.open(opts)
local sched = Sched.new(model, {max_batch = cfg.max_batch, prefill_tokens = cfg.prefill_tokens,
                                eos = tk.eos, prefix_cache = cfg.prefix_cache,
                                min_prefix = cfg.min_prefix})

local function reply(t)
  out:write(json.encode(t), "\n")
  out:flush()
end

local n, refused = 0, 0
for line in input:lines() do
  n = n + 1
  if line:match("%S") then
    local ok, q = pcall(json.decode, line)
    local r, why
    if ok then r, why = serving.request_of(q, tk, cfg) else why = q end
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

local t0 = ts.clock()
while sched:busy() do
  for _, e in ipairs(sched:step()) do
    local r = e.request
    if stream then reply({id = r.id, token = e.token, text = serving.piece(tk, r, e)}) end
    if e.finish then
      reply({id = r.id, text = tk.decode(r.tokens), tokens = r.tokens, prompt_tokens = #r.ids,
             finish = r.finish, arrive = r.arrive, first_step = r.first_step,
             done_step = r.done_step, ttft_ms = r.ttft_ms,
             total_ms = (r.t_done - r.t_arrived) * 1e3, cached_tokens = r.cached or 0})
    end
  end
end
local secs = ts.clock() - t0
if out ~= io.stdout then out:close() end
io.stderr:write(serving.summary(sched, device, tk, refused, secs), "\n")
