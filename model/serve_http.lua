-- serve_http.lua - a V4 model behind HTTP, with continuous batching
-- (model/scheduler.lua: requests join the running batch as they come,
-- long prompts are prefilled in chunks between the others' decode steps,
-- shared prefixes and conversations go on from kept states).
--   tessera run model/serve_http.lua [model options as generate.lua's]
--       [--port 8000] [--host 127.0.0.1] [--port-file F] [--exit-after N] [--read-timeout 30]
--       [--max-batch 8] [--prefill-tokens 512] [--prefix-cache 8]
--       [--min-prefix 16] [--max-tokens 64] [--temperature 0] [--top-p 0.9] [--seed 1]
-- Endpoints (one request a connection; the response closes it):
--   POST /v1/completions  a JSON body: {"prompt": text | "ids": [token ids],
--     "chat": true (the prompt as the user's turn in V4's chat format),
--     "max_tokens", "temperature", "top_p", "seed", "stream": true}
--     -> {"id": "cmpl-N", "object": "text_completion", "model": NAME,
--         "choices": [{"index": 0, "text", "tokens", "finish_reason": "stop"
--         (the EOS) | "length"}], "usage": {"prompt_tokens",
--         "completion_tokens", "total_tokens", "cached_tokens"}}
--     with "stream": server-sent events, one a token: data: {"id", "object",
--     "choices": [{"index": 0, "text": the text it adds, "token",
--     "finish_reason": null | ...}]}, then data: [DONE]
--   POST /v1/chat/completions  {"messages": [{"role": "system" | "user" |
--     "assistant", "content"}...], "thinking": true (V4's thinking mode),
--     and the fields above} in V4's chat format (model/tokenizer.lua chat;
--     needs a tokenizer.json) -> {"id": "chatcmpl-N", "object":
--     "chat.completion", "choices": [{"index": 0, "message": {"role":
--     "assistant", "content", "reasoning_content" (thinking: the text
--     before </think>)}, "tokens", "finish_reason"}], "usage"}; streamed,
--     "chat.completion.chunk" events with "delta": {"reasoning_content",
--     "content"} (the text a token adds to each)
--   GET /health -> {"status": "ok", "active": N, "waiting": N}
--   anything else 404; a body that is not a request, or one the model
--   cannot serve (a prompt too long, a bad field) 400 {"error": {"message"}};
--   a body over 1 MiB 413; a connection that sends no whole request in
--   --read-timeout seconds 408; an error while taking a request 500 (the
--   server goes on). At most 1024 connections are open (more wait to be accepted).
-- A client that goes away has its request dropped (model/scheduler.lua
-- cancel). --port 0 takes a free port; --port-file writes "PID PORT" there
-- once listening; --exit-after N stops after N completions (0: never).
-- Each completion's tokens are the ones its prompt gets alone
-- (tests/lua/serve_http.lua).
local ts = require "tessera"
local json = require "model.json"
local launch = require "model.launch"
local serving = require "model.serving"
local Sched = require "model.scheduler"

local usage = "serve_http.lua " .. serving.usage .. " [--port N] [--host A] [--port-file F] " ..
              "[--exit-after N] [--read-timeout S]"
local opts, cfg = serving.options(arg, {port = "8000", host = "127.0.0.1", ["exit-after"] = "0",
                                        ["read-timeout"] = "30"},
                                  {["port-file"] = true}, usage)
local port, exit_after = math.tointeger(tonumber(opts.port)),
                         math.tointeger(tonumber(opts["exit-after"]))
if not port or port < 0 or port > 65535 then error("--port: 0 to 65535", 0) end
if not exit_after or exit_after < 0 then error("--exit-after: a count, 0 (never) or more", 0) end

local _, model, device, tk = launch.open(opts)
local name = opts.model or opts.config
local sched = Sched.new(model, {max_batch = cfg.max_batch, prefill_tokens = cfg.prefill_tokens,
                                eos = tk.eos, prefix_cache = cfg.prefix_cache,
                                min_prefix = cfg.min_prefix})
local server = ts.listen(port, opts.host)
port = server:port()
io.stderr:write(string.format("serve_http: listening on http://%s:%d (%s on %s)\n", opts.host,
                              port, name, device:name()))
if opts["port-file"] then
  local f = assert(io.open(opts["port-file"] .. ".tmp", "w"))
  f:write(string.format("%d %d\n", ts.pid(), port))
  f:close()
  os.rename(opts["port-file"] .. ".tmp", opts["port-file"])
end

local MAX_BODY = 1 << 20
-- at most this many connections open (more wait in the listen queue), and
-- a connection that has not sent a whole request in this many seconds is
-- closed (a client that connects and stays silent holds nothing for long)
local MAX_CONNS, READ_SECONDS = 1024, tonumber(opts["read-timeout"])
if not READ_SECONDS or READ_SECONDS <= 0 then error("--read-timeout: seconds, more than 0", 0) end
local reasons = {[200] = "OK", [400] = "Bad Request", [404] = "Not Found",
                 [413] = "Payload Too Large", [405] = "Method Not Allowed",
                 [408] = "Request Timeout", [500] = "Internal Server Error"}
local conns = {} -- conn -> {buf, request (a scheduler request), stream}
local by_request = {} -- scheduler request -> conn
local n_completions, refused, t0 = 0, 0, ts.clock()

local function finish(c)
  conns[c] = nil
  c:close()
end

local function respond(c, code, body)
  local text = json.encode(body)
  c:send(string.format("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n" ..
                       "Content-Length: %d\r\nConnection: close\r\n\r\n%s", code,
                       reasons[code], #text, text))
  finish(c)
end

local function error_reply(c, code, message)
  refused = refused + 1
  respond(c, code, {error = {message = message}})
end

-- a whole HTTP request read from connection c: its method, path, body
local function handle(c, method, path, body)
  if path == "/health" then
    if method ~= "GET" then return error_reply(c, 405, "GET /health") end
    return respond(c, 200, {status = "ok", active = #sched.prefilling + #sched.decoding,
                            waiting = #sched.pending + #sched.waiting})
  end
  local chat = path == "/v1/chat/completions"
  if path ~= "/v1/completions" and not chat then return error_reply(c, 404, "no " .. path) end
  if method ~= "POST" then return error_reply(c, 405, "POST " .. path) end
  local ok, q = pcall(json.decode, body)
  if not ok then return error_reply(c, 400, q) end
  local r, why
  if type(q) == "table" and chat ~= (q.messages ~= nil) then
    why = chat and "messages: the conversation (a list of {\"role\", \"content\"})"
          or "messages: a chat's (POST /v1/chat/completions)"
  else
    r, why = serving.request_of(q, tk, cfg)
  end
  if r and q.arrive ~= nil then r, why = nil, "arrive: a file's field (serve.lua)" end
  if r then
    n_completions = n_completions + 1
    r.id, r.arrive = (chat and "chatcmpl-" or "cmpl-") .. n_completions, sched.step_no
    r.chat = chat
    local queued
    queued, why = sched:submit(r)
    if queued then
      conns[c].request, conns[c].stream = r, q.stream == true
      by_request[r] = c
      if q.stream == true then
        c:send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" ..
               "Cache-Control: no-cache\r\nConnection: close\r\n\r\n")
      end
      return
    end
  end
  error_reply(c, 400, why)
end

-- what connection c sent so far: a whole request handled, else kept
local function parse(c)
  local st = conns[c]
  local head_end = st.buf:find("\r\n\r\n", 1, true)
  if not head_end then
    if #st.buf > 65536 then error_reply(c, 413, "headers over 64 KiB") end
    return
  end
  local head = st.buf:sub(1, head_end - 1)
  local method, path = head:match("^(%u+) (%S+) HTTP/1%.[01]\r?\n?")
  if not method then return error_reply(c, 400, "not an HTTP/1.x request") end
  local len = tonumber(head:lower():match("\ncontent%-length:%s*(%d+)") or "0")
  if len > MAX_BODY then return error_reply(c, 413, "a body over 1 MiB") end
  if head:lower():find("\nexpect:%s*100%-continue") and not st.continued then
    st.continued = true
    c:send("HTTP/1.1 100 Continue\r\n\r\n")
  end
  if #st.buf < head_end + 3 + len then return end
  st.handled = true
  local ok, err = pcall(handle, c, method, path:match("^[^?]*"),
                        st.buf:sub(head_end + 4, head_end + 3 + len))
  if not ok and conns[c] then -- (a request the checks let through; the server goes on)
    if st.request then
      sched:cancel(st.request)
      by_request[st.request] = nil
    end
    error_reply(c, 500, tostring(err))
  end
end

-- a streamed token's event: a completion's text, a chat's delta (its
-- reasoning and its answer apart in thinking mode: serving.chat_parts)
local function event_json(r, e, finish_reason)
  local choice = {index = 0, token = e.token, finish_reason = finish_reason or json.null}
  if not r.chat then
    choice.text = serving.piece(tk, r, e)
    return json.encode({id = r.id, object = "text_completion", model = name, choices = {choice}})
  end
  local now = serving.shown(tk, r, e) or r.shown or ""
  local reasoning, content = serving.chat_parts(now, r.thinking, e.finish ~= nil)
  local sr, sc = r.sent_r or 0, r.sent_c or 0
  choice.delta = {reasoning_content = #reasoning > sr and reasoning:sub(sr + 1) or nil,
                  content = #content > sc and content:sub(sc + 1) or nil}
  r.sent_r, r.sent_c = #reasoning, #content
  return json.encode({id = r.id, object = "chat.completion.chunk", model = name,
                      choices = {choice}})
end

local function done(r)
  local c = by_request[r]
  by_request[r] = nil
  if not c or not conns[c] then return end
  if conns[c].stream then
    c:send("data: [DONE]\n\n")
    return finish(c)
  end
  local text = tk.decode(r.tokens)
  local choice = {index = 0, tokens = r.tokens,
                  finish_reason = r.finish == "eos" and "stop" or "length"}
  if r.chat then
    local reasoning, content = serving.chat_parts(text, r.thinking, true)
    choice.message = {role = "assistant", content = content,
                      reasoning_content = r.thinking and reasoning or nil}
  else
    choice.text = text
  end
  respond(c, 200, {id = r.id, object = r.chat and "chat.completion" or "text_completion",
                   model = name, choices = {choice},
                   usage = {prompt_tokens = #r.ids, completion_tokens = #r.tokens,
                            total_tokens = #r.ids + #r.tokens, cached_tokens = r.cached or 0}})
end

while exit_after == 0 or sched.stats.served < exit_after do
  local all = {server}
  for c in pairs(conns) do all[#all + 1] = c end
  ts.wait(all, sched:busy() and 0 or 1000)
  local open, now = 0, ts.clock()
  for _ in pairs(conns) do open = open + 1 end
  while open < MAX_CONNS do
    local c = server:accept()
    if not c then break end
    conns[c], open = {buf = "", t0 = now}, open + 1
  end
  for c, st in pairs(conns) do
    local data = c:recv()
    if data == "" and not st.handled and now - st.t0 > READ_SECONDS then
      error_reply(c, 408, "no whole request in " .. READ_SECONDS .. " s")
      data = false
    end
    if data == nil then -- the client went away
      if st.request and not st.request.finish then
        sched:cancel(st.request)
        by_request[st.request] = nil
      end
      finish(c)
    elseif data and #data > 0 and not st.handled then
      st.buf = st.buf .. data
      parse(c)
    end
  end
  if sched:busy() then
    for _, e in ipairs(sched:step()) do
      local r, c = e.request, by_request[e.request]
      if c and conns[c] and conns[c].stream then
        local reason = e.finish and (e.finish == "eos" and "stop" or "length")
        local ok = c:send("data: " .. event_json(r, e, reason) .. "\n\n")
        if not ok and not e.finish then -- (gone: dropped at the next read)
          by_request[r] = nil
        end
      end
      if e.finish then done(r) end
    end
  end
end
server:close()
io.stderr:write(serving.summary(sched, device, tk, refused, ts.clock() - t0), "\n")
