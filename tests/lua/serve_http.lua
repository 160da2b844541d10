-- serve_http.lua - model/serve_http.lua end to end: the server started as
-- its own process (tiny config, a free port), spoken to over TCP
-- (ts.connect): /health; two completions at once, greedy and sampled, each
-- the tokens the scheduler gives it alone in this process; a streamed one
-- (server-sent events whose tokens and texts make the reply); 404, 405,
-- 400 for a body that is not JSON and for a prompt too long, 408 for
-- half a request; a client that goes away mid-request (its request dropped, the next one served);
-- chat completions in V4's chat format (plain, thinking, streamed) and
-- their refusals; the server exits after --exit-after completions.
local ts = require "tessera"
local json = require "model.json"
local launch = require "model.launch"
local serving = require "model.serving"
local Sched = require "model.scheduler"
local C = require "tests.lua.lib.check"
local TJ = require "tests.lua.lib.tokenizer_json"
local check = C.check

-- a chat reply's reasoning and answer (thinking mode), a </think> begun
-- at the end held back until the reply ends
local function parts(...) return table.concat({serving.chat_parts(...)}, "|") end
check(parts("abc</think>def", true, false) == "abc|def" and parts("a</th", true, false) == "a|" and
      parts("a</th", true, true) == "a</th|" and parts("a</think>", true, false) == "a|" and
      parts("a</think>b", false, true) == "|a</think>b" and parts("<", true, false) == "|",
      "serving.chat_parts")

local exe = io.popen("readlink /proc/" .. ts.pid() .. "/exe"):read("l")
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local pf, log = dir .. "/port", dir .. "/log"
TJ.v4_folder(dir) -- (a tokenizer with V4's chat tokens, for the chat endpoint)
local common = {"--config", "tiny", "--max-batch", "4", "--prefill-tokens", "16",
                "--tokenizer", dir}
os.execute(string.format("%s run model/serve_http.lua %s --port 0 --port-file %s " ..
                         "--exit-after 8 --read-timeout 1 > %s 2>&1 &", exe,
                         table.concat(common, " "), pf, log))
local pid, port
for _ = 1, 1200 do -- (up to 120 s: the model's kernels may compile first)
  local f = io.open(pf)
  if f then
    pid, port = f:read("n", "n")
    f:close()
    break
  end
  ts.wait({}, 100)
end
check(pid and port, "the server wrote its pid and port")
if not port then
  print(io.open(log) and io.open(log):read("a"))
  C.finish()
end

-- (the checks in a function: whatever fails, the server is stopped below)
local function checks()
  -- a request's whole response over connection c (read until it closes)
  local function read_all(c, limit_s)
    local got, t0 = {}, ts.clock()
    while ts.clock() - t0 < (limit_s or 120) do
      ts.wait({c}, 200)
      local d = c:recv()
      if d == nil then break end
      got[#got + 1] = d
    end
    c:close()
    return table.concat(got)
  end
  local function send(method, path, body)
    local c = ts.connect("127.0.0.1", port)
    c:send(string.format("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", method, path,
                         #(body or ""), body or ""))
    return c
  end
  local function parse(raw)
    local code = tonumber(raw:match("^HTTP/1%.1 (%d+)"))
    local body = raw:match("\r\n\r\n(.*)$")
    return code, body
  end
  local function call(method, path, body)
    return parse(read_all(send(method, path, body)))
  end

  local code, body = call("GET", "/health")
  check(code == 200 and json.decode(body).status == "ok", "/health: " .. tostring(body))

  -- the reference: each request alone through the scheduler in this process
  local opts, cfg = serving.options(common, {}, {}, "")
  local _, model, _, tk = launch.open(opts)
  local function alone(q)
    local r = serving.request_of(q, tk, cfg)
    local s = Sched.new(model, {max_batch = 1, prefill_tokens = 16, eos = tk.eos})
    s:submit(r)
    while s:busy() do s:step() end
    return r.tokens
  end

  local qa = {ids = {}, max_tokens = 8}
  for i = 1, 30 do qa.ids[i] = (i * 37) % 256 end
  local qb = {prompt = "Tessera serves", max_tokens = 6, temperature = 0.8, seed = 3}
  local ca = send("POST", "/v1/completions", json.encode(qa))
  local cb = send("POST", "/v1/completions", json.encode(qb))
  local codeb, bodyb = parse(read_all(cb))
  local codea, bodya = parse(read_all(ca))
  local ra, rb = codea == 200 and json.decode(bodya), codeb == 200 and json.decode(bodyb)
  check(ra and C.same(ra.choices[1].tokens, alone(qa)) and ra.usage.prompt_tokens == 30 and
        ra.usage.completion_tokens == 8 and ra.choices[1].finish_reason == "length",
        "a completion (ids, greedy) served beside another: its tokens alone: " .. tostring(bodya))
  check(rb and C.same(rb.choices[1].tokens, alone(qb)) and
        rb.choices[1].text == json.decode(json.encode(tk.decode(rb.choices[1].tokens))),
        "a completion (text, sampled) beside another: its tokens alone: " .. tostring(bodyb))

  -- streamed: an event a token, then [DONE]
  local qc = {ids = {5, 6, 7, 8, 9}, max_tokens = 5, stream = true}
  local raw = read_all(send("POST", "/v1/completions", json.encode(qc)))
  local toks, text, last, done = {}, "", nil, raw:find("\n\ndata: %[DONE%]\n\n$") ~= nil
  for ev in raw:gmatch("data: (%b{})\n\n") do
    local e = json.decode(ev)
    toks[#toks + 1] = e.choices[1].token
    text = text .. e.choices[1].text
    last = e.choices[1].finish_reason
  end
  local want_c = alone(qc)
  check(raw:match("^HTTP/1%.1 200") and raw:find("Content-Type: text/event-stream", 1, true) and
        C.same(toks, want_c) and last == "length" and done and
        text == json.decode(json.encode(tk.decode(want_c))),
        "a streamed completion: its tokens alone, the texts its text, [DONE]:\n" .. raw)

  -- errors
  code = call("GET", "/nope")
  check(code == 404, "an unknown path: 404 (" .. tostring(code) .. ")")
  code = call("GET", "/v1/completions")
  check(code == 405, "GET /v1/completions: 405 (" .. tostring(code) .. ")")
  code, body = call("POST", "/v1/completions", "{oops")
  check(code == 400 and body:find('"message":"JSON: ', 1, true),
        "a body not JSON: 400 " .. tostring(body))
  code, body = call("POST", "/v1/completions",
                    json.encode({prompt = string.rep("x", 5000), max_tokens = 8}))
  check(code == 400 and body:find("exceed the model", 1, true),
        "a prompt too long: 400 " .. tostring(body))

  -- a client that sends half a request and waits: 408 after --read-timeout
  local slow = ts.connect("127.0.0.1", port)
  slow:send("POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
  local code8 = parse(read_all(slow, 10))
  check(code8 == 408, "half a request: 408 after the read timeout (" .. tostring(code8) .. ")")

  -- a client gone mid-request: dropped; the server goes on
  local cd = send("POST", "/v1/completions", json.encode({ids = {1, 2, 3}, max_tokens = 500}))
  ts.wait({}, 300)
  cd:close()
  local qe = {ids = {11, 12, 13, 14}, max_tokens = 4}
  code, body = call("POST", "/v1/completions", json.encode(qe))
  check(code == 200 and C.same(json.decode(body).choices[1].tokens, alone(qe)),
        "after a client went away, the next completion: " .. tostring(body))
  code, body = call("GET", "/health")
  local h = code == 200 and json.decode(body)
  check(h and h.active == 0 and h.waiting == 0,
        "the dropped request holds nothing: " .. tostring(body))

  -- chat: V4's chat format; the message the reply's text, its tokens alone;
  -- in thinking mode the reasoning (all of it: no </think> in a random
  -- model's reply) apart; streamed, the deltas the message
  local qs = {messages = {{role = "system", content = "be brief"},
                          {role = "user", content = "the one"}}, max_tokens = 6}
  local code6, body6 = call("POST", "/v1/chat/completions", json.encode(qs))
  local r6 = code6 == 200 and json.decode(body6)
  local m6 = r6 and r6.choices[1].message
  check(r6 and r6.object == "chat.completion" and m6.role == "assistant" and
        C.same(r6.choices[1].tokens, alone(qs)) and
        m6.content == json.decode(json.encode(tk.decode(r6.choices[1].tokens))) and
        m6.reasoning_content == nil, "a chat completion: " .. tostring(body6))
  local qt = {messages = {{role = "user", content = "the other one"}}, thinking = true,
              max_tokens = 7}
  local code7, body7 = call("POST", "/v1/chat/completions", json.encode(qt))
  local m7 = code7 == 200 and json.decode(body7).choices[1].message
  local text7 = m7 and json.decode(json.encode(tk.decode(json.decode(body7).choices[1].tokens)))
  check(m7 and m7.reasoning_content .. (m7.content ~= "" and "</think>" .. m7.content or "") ==
        text7, "a thinking chat's reasoning and answer make its text: " .. tostring(body7))
  qs.stream = true
  local raw8 = read_all(send("POST", "/v1/chat/completions", json.encode(qs)))
  local toks8, text8 = {}, ""
  for ev in raw8:gmatch("data: (%b{})\n\n") do
    local e = json.decode(ev)
    toks8[#toks8 + 1] = e.choices[1].token
    text8 = text8 .. (e.choices[1].delta.content or "")
    check(e.object == "chat.completion.chunk", "a chat chunk's object")
  end
  check(C.same(toks8, r6.choices[1].tokens) and text8 == m6.content,
        "a streamed chat: its deltas make the message:\n" .. raw8)
  for _, bad in ipairs{{"/v1/chat/completions", {prompt = "x"}, "messages: the conversation"},
                       {"/v1/completions", qs, "messages: a chat's"},
                       {"/v1/chat/completions", {messages = {{role = "tool", content = "x"}}},
                        "messages[1]: a role"}} do
    local cb2, bb2 = call("POST", bad[1], json.encode(bad[2]))
    check(cb2 == 400 and bb2:find(bad[3], 1, true), bad[1] .. ": 400 " .. tostring(bb2))
  end

  -- the eighth completion, then the server exits
  local code5 = call("POST", "/v1/completions", json.encode({ids = {1}, max_tokens = 2}))
  check(code5 == 200, "the fifth completion")
end
local ok, err = pcall(checks)
check(ok, "the checks ran: " .. tostring(err))
local gone = false
for _ = 1, 100 do
  if not os.execute("kill -0 " .. pid .. " 2>/dev/null") then
    gone = true
    break
  end
  ts.wait({}, 100)
end
check(gone, "the server exits after --exit-after completions")
local summary = io.open(log):read("a")
check(summary:find("served 8 requests", 1, true) ~= nil, "its summary: " .. summary)
if not gone then os.execute("kill " .. pid) end
os.execute("rm -rf " .. dir)
C.finish()
