-- model_tokenizer.lua - model/tokenizer.lua and generate.lua with a model
-- folder that holds a tokenizer.json and tokenizer_config.json, as
-- DeepSeek's releases do: the BOS the config asks for goes first, the EOS
-- is the config's, decode leaves special tokens out; generate.lua encodes
-- the prompt with it (the prompt's token count printed is the tokenizer's)
-- and prints decoded text. Refused: a tokenizer with more ids than the
-- embedding has rows, a config naming a token the tokenizer lacks, a
-- --tokenizer file that is not there. Without a tokenizer.json: byte ids.
-- generate.lua --mtp on gives the plain output (alone, sampled, with two
-- prompts, with --chunk, through --turn's turns, with --lookup's drafts);
-- --stream on writes the same output a token at a time; --samples N
-- gives each seed's output alone, from one prefill forked (also with
-- --mtp on);
-- generate.lua --turn goes on with a chat's next turns (extend), each
-- reply a prefill of the conversation's tokens would give.
local T = require "model.tokenizer"
local TJ = require "tests.lua.lib.tokenizer_json"
local C = require "tests.lua.lib.check"
local check = C.check

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local vocab, added, BOS, EOS = TJ.v4_folder(dir)
local function write(path, text)
  local f = assert(io.open(path, "wb")); f:write(text); f:close()
end

local tk = T.open(dir, 512)
local ids = tk.encode("the other one")
-- "the" | " other" | " one": t he | ' ' o t he r | ' ' on e
local want = {added[BOS], vocab.t, vocab.he, vocab[" "], vocab.o, vocab.t, vocab.he, vocab.r, vocab[" "],
              vocab.on, vocab.e}
local same = #ids == #want
for i = 1, #want do same = same and ids[i] == want[i] end
check(same, "encode: BOS (tokenizer_config's add_bos_token), then the merges")
check(tk.eos == added[EOS], "eos: tokenizer_config's eos_token")
check(tk.decode(ids) == "the other one", "decode leaves the BOS out")
-- the embedding's rows past the tokenizer's ids (DeepSeek pads 129280): U+FFFD
check(tk.decode({vocab.t, 300, vocab.he}) == "t\u{fffd}he", "an id past the tokenizer's decodes as U+FFFD")
check(T.open(dir .. "/tokenizer.json", 512).eos == added[EOS], "a tokenizer.json path works as the folder")
local ok, err = pcall(T.open, dir, 200)
check(not ok and err:find("269 token ids, but the model's embedding has 200 rows", 1, true),
      "a tokenizer larger than the embedding is refused: " .. tostring(err))
local bytes = T.open(nil, 512)
check(#bytes.encode("hi") == 2 and bytes.encode("hi")[1] == 104 and bytes.eos == nil, "no tokenizer: byte ids")
ok, err = pcall(T.open, dir .. "/nothing.json", 512)
check(not ok and err:find("nothing.json", 1, true), "a missing --tokenizer file is refused")
ok, err = pcall(T.open, dir .. "/none", 512, true)
check(not ok and err:find("no file " .. dir .. "/none/tokenizer.json", 1, true),
      "a folder without tokenizer.json, when one is required: " .. tostring(err))
check(bytes.decode({-1, 600, 65, 1.5}) == "??A?", "byte ids: out of range or not whole show as '?'")
for _, t in ipairs{bytes, tk} do
  ok, err = pcall(t.encode, 42)
  check(not ok and tostring(err):find("encode: a string, not a number", 1, true),
        "encode of a number: " .. tostring(err))
end

-- generate.lua with the folder as a model: tiny config + weights + tokenizer
local json = require "model.json"
local cfg_text = assert(io.open("model/configs/tiny.json")):read("a")
write(dir .. "/config.json", cfg_text)
arg = {[0] = "model/init.lua", "--config", "tiny", "--seed", "3", "-o", dir .. "/model.safetensors"}
local real_print = print
local lines = {}
print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
dofile("model/init.lua")
lines = {}
arg = {[0] = "model/generate.lua", "--model", dir, "--prompt", "the other one", "--tokens", "4"}
ok, err = pcall(dofile, "model/generate.lua")
print = real_print
check(ok, "generate.lua --model with a tokenizer: " .. tostring(err))
local out = table.concat(lines, "\n")
check(out:find("tokens: " .. dir .. "/tokenizer.json (269 ids); prompt 11 tokens", 1, true) ~= nil,
      "generate.lua encodes the prompt with the folder's tokenizer:\n" .. out)
check(out:find("\noutput: ", 1, true) ~= nil and json ~= nil, "generate.lua prints decoded output")
-- several prompts generate together (prefill_batch, decode_batch): each
-- output is that prompt's alone
local function generate(prompts, extra)
  lines = {}
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  arg = {[0] = "model/generate.lua", "--model", dir, "--tokens", "5"}
  for _, p in ipairs(prompts) do arg[#arg + 1], arg[#arg + 2] = "--prompt", p end
  if extra then table.move(extra, 1, #extra, #arg + 1, arg) end
  local ok2, err2 = pcall(dofile, "model/generate.lua")
  print = real_print
  check(ok2, "generate.lua with " .. #prompts .. " prompts: " .. tostring(err2))
  return table.concat(lines, "\n")
end
local both = generate({"the other one", "the one"})
local first = generate({"the other one"}):match("\noutput: ([^\n]*)")
local second = generate({"the one"}):match("\noutput: ([^\n]*)")
check(both:find("\noutput 1: " .. first .. "\n", 1, true) ~= nil and
      both:find("\noutput 2: " .. second .. "\n", 1, true) ~= nil and
      both:find("2 prompts together", 1, true) ~= nil,
      "two prompts together give each one's output alone:\n" .. both)
-- --chunk prefills the prompt a few tokens at a time: the same output; an
-- option it does not know is refused by name
local function run(extra)
  lines = {}
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  arg = {[0] = "model/generate.lua", "--model", dir, "--tokens", "5", "--prompt", "the other one"}
  table.move(extra, 1, #extra, #arg + 1, arg)
  local ok2, err2 = pcall(dofile, "model/generate.lua")
  print = real_print
  return ok2, ok2 and table.concat(lines, "\n") or tostring(err2)
end
local ok3, chunked = run{"--chunk", "3"}
check(ok3 and chunked:match("\noutput: ([^\n]*)") == first,
      "--chunk 3 gives the output of one prefill:\n" .. chunked)
local ok4, bad = run{"--chunks", "3"}
check(not ok4 and bad:find("unknown option --chunks", 1, true) ~= nil, "an unknown option: " .. bad)
local ok5, zero = run{"--chunk", "0"}
check(not ok5 and zero:find("--chunk: a positive number", 1, true) ~= nil, "--chunk 0: " .. zero)
for _, bad_opt in ipairs{{"--tokens", "0", "--tokens: a positive number"},
                         {"--tokens", "x", "--tokens: a positive number"},
                         {"--temperature", "-1", "--temperature: a number, 0 (greedy) or more"},
                         {"--top-p", "0", "--top-p: a number in (0, 1]"},
                         {"--top-p", "1.5", "--top-p: a number in (0, 1]"},
                         {"--seed", "abc", "--seed: an integer"}} do
  local okb, msg = run{bad_opt[1], bad_opt[2]}
  check(not okb and msg:find(bad_opt[3], 1, true) ~= nil,
        bad_opt[1] .. " " .. bad_opt[2] .. " is refused: " .. msg)
end
-- --graphs (on by default): a reply past the window (128 tokens) replays
-- its steps as graphs, the same output as plain steps; a bad value refused
local long = string.rep("the other one ", 16)
local graphed = generate({long}, {"--tokens", "12"})
local plain = generate({long}, {"--tokens", "12", "--graphs", "off"})
local gout, held = graphed:match("\noutput: ([^\n]*)"), graphed:match("prompt (%d+) tokens")
check(gout and gout == plain:match("\noutput: ([^\n]*)") and tonumber(held) > 128,
      "--graphs on and off give one output past the window:\n" .. graphed .. "\n" .. plain)
local okx, gbad = run{"--graphs", "x"}
check(not okx and gbad:find("--graphs: on or off", 1, true) ~= nil, "--graphs x: " .. gbad)
local ok5m, moe = run{"--moe", "fp8"}
check(not ok5m and moe:find("--moe: bf16 or f32", 1, true) ~= nil, "--moe fp8: " .. moe)
local ok5b, moe16 = run{"--moe", "bf16"} -- (a prompt of 11 tokens: the tensor-core MoE)
check(ok5b and moe16:find("\noutput: ", 1, true) ~= nil, "--moe bf16 runs:\n" .. moe16)
-- --mtp on (speculative decoding with the MTP block's drafts) gives the
-- same output, alone, with two prompts, sampled and with --chunk (the block
-- following the chunks)
local ok6, spec = run{"--mtp", "on"}
check(ok6 and spec:match("\noutput: ([^\n]*)") == first and spec:find("MTP drafts: ", 1, true),
      "--mtp on gives the plain output:\n" .. spec)
local ok7, sampled = run{"--mtp", "on", "--temperature", "0.8", "--seed", "7"}
local ok8, plain = run{"--temperature", "0.8", "--seed", "7"}
check(ok7 and ok8 and sampled:match("\noutput: ([^\n]*)") == plain:match("\noutput: ([^\n]*)"),
      "--mtp on, sampled: the plain output:\n" .. sampled .. "\n" .. plain)
local both_mtp = generate({"the other one", "the one"}, {"--mtp", "on"})
check(both_mtp:find("\noutput 1: " .. first .. "\n", 1, true) ~= nil and
      both_mtp:find("\noutput 2: " .. second .. "\n", 1, true) ~= nil and
      both_mtp:find("MTP drafts: ", 1, true) ~= nil,
      "two prompts with --mtp on give each one's output alone:\n" .. both_mtp)
local okl, looked = run{"--mtp", "on", "--lookup", "3"}
check(okl and looked:match("\noutput: ([^\n]*)") == first and
      looked:find("drafts (prompt lookup, else the MTP block's): ", 1, true),
      "--mtp on --lookup 3: the plain output:\n" .. looked)
local okl2, bad_l = run{"--lookup", "3"}
check(not okl2 and bad_l:find("--lookup: with --mtp on", 1, true) ~= nil, "--lookup alone: " .. bad_l)
-- --stream on: the same output, written a token at a time (io.write's
-- pieces collected); refused with two prompts
local function streamed(extra)
  local pieces, write = {}, io.write
  io.write = function(...)
    for _, v in ipairs{...} do pieces[#pieces + 1] = tostring(v) end
  end
  local ok2, out2 = run(extra)
  io.write = write
  return ok2, out2, table.concat(pieces), #pieces
end
local oks, _, text, writes = streamed{"--stream", "on"}
check(oks and text == "output: " .. first .. "\n" and writes > 3,
      string.format("--stream on writes the plain output in pieces (%d): %q", writes, text))
local oks2, _, text2 = streamed{"--stream", "on", "--mtp", "on", "--lookup", "2"}
check(oks2 and text2 == "output: " .. first .. "\n", "--stream with --mtp on --lookup 2: " .. text2)
-- --samples N: N replies of one prompt (prefilled once, forked, decoded
-- together), sample b the run with --seed (seed + b - 1) alone; greedy,
-- every sample the plain output; refused with what it does not combine with
local oksm, sm = run{"--samples", "3", "--temperature", "0.8", "--seed", "5"}
local each_alone = oksm and sm:find("3 samples of one prompt", 1, true) ~= nil
for b = 1, 3 do
  local okb, one = run{"--temperature", "0.8", "--seed", tostring(4 + b)}
  local want = okb and one:match("\noutput: ([^\n]*)")
  each_alone = each_alone and want and
               sm:find(string.format("\nsample %d (seed %d): %s\n", b, 4 + b, want), 1, true) ~= nil
end
check(each_alone, "--samples 3, sampled: each sample the run with its seed alone:\n" .. sm)
local okg, greedy = run{"--samples", "2"}
check(okg and greedy:find("\nsample 1 (seed 1): " .. first .. "\nsample 2 (seed 2): " .. first ..
                          "\n", 1, true) ~= nil, "--samples 2, greedy: the plain output twice:\n" ..
      greedy)
local okz, zero_s = run{"--samples", "0"}
check(not okz and zero_s:find("--samples: a number of replies", 1, true) ~= nil,
      "--samples 0: " .. zero_s)
-- ... and speculatively (--mtp on: speculate_batch over the forks, which
-- keep the MTP block's state; with --lookup's drafts too) the same samples
for _, extra in ipairs{{"--mtp", "on"}, {"--mtp", "on", "--lookup", "2"}} do
  local oksp, spec_s = run{"--samples", "3", "--temperature", "0.8", "--seed", "5",
                           table.unpack(extra)}
  local same_samples = oksp
  for b = 1, 3 do
    local line = sm:match(string.format("\n(sample %d %%(seed %d%%): [^\n]*)\n", b, 4 + b))
    same_samples = same_samples and line and spec_s:find("\n" .. line .. "\n", 1, true) ~= nil
  end
  check(same_samples and spec_s:find("drafts", 1, true) ~= nil,
        "--samples 3 " .. table.concat(extra, " ") .. ": the same samples:\n" .. spec_s)
end
local okm, stream_s = run{"--samples", "2", "--stream", "on"}
check(not okm and stream_s:find("--samples: of one prompt, without --turn or --stream", 1,
                                true) ~= nil, "--samples with --stream on: " .. stream_s)
local oks3, err_s = pcall(function()
  arg = {[0] = "model/generate.lua", "--model", dir, "--prompt", "a", "--prompt", "b",
         "--stream", "on"}
  dofile("model/generate.lua")
end)
check(not oks3 and tostring(err_s):find("--stream: one prompt", 1, true) ~= nil,
      "--stream with two prompts: " .. tostring(err_s))
local ok9, chunk9 = run{"--mtp", "on", "--chunk", "3"}
check(ok9 and chunk9:match("\noutput: ([^\n]*)") == first and chunk9:find("MTP drafts: ", 1, true),
      "--mtp on with --chunk 3: the plain output:\n" .. chunk9)

-- serve.lua (continuous batching: model/scheduler.lua) over a file of
-- requests, two at a time and 6 prompt tokens a step (the long prompt
-- prefilled in chunks while the others decode): each reply's text is what
-- generate.lua gives its prompt alone (greedy, sampled, a chat turn, past
-- the window; a text's bytes that begin no UTF-8 character are U+FFFD in
-- the JSON); a bad line, a request without a prompt and one too long get
-- error replies naming their lines, and the others go on
local function one_output(extra)
  local okg2, text_g = run(extra)
  return okg2 and text_g:match("\noutput: ([^\n]*)")
end
local want_s = one_output{"--temperature", "0.8", "--seed", "7"}
local want_c = one_output{"--chat", "chat"}
local reqs = {
  '{"id": "p", "prompt": "the other one", "max_tokens": 5}',
  '{"id": "s", "prompt": "the other one", "max_tokens": 5, "temperature": 0.8, "seed": 7}',
  '{oops',
  '{"id": "l", "prompt": ' .. json.encode(long) .. ', "max_tokens": 12, "arrive": 1}',
  '{"id": "x"}',
  '{"id": "c", "prompt": "the other one", "max_tokens": 5, "chat": true, "arrive": 3}',
  '{"id": 7, "prompt": "a", "max_tokens": 100000}',
  '{"prompt": "the one", "max_tokens": 5, "arrive": 2}'}
write(dir .. "/requests.jsonl", table.concat(reqs, "\n") .. "\n")
arg = {[0] = "model/serve.lua", "--model", dir, "--requests", dir .. "/requests.jsonl",
       "--out", dir .. "/replies.jsonl", "--max-batch", "2", "--prefill-tokens", "6"}
local oksv, errsv = pcall(dofile, "model/serve.lua")
check(oksv, "serve.lua runs: " .. tostring(errsv))
local replies, nrep = {}, 0
for line in io.lines(dir .. "/replies.jsonl") do
  local r = json.decode(line)
  replies[r.id], nrep = r, nrep + 1
end
check(nrep == #reqs, "serve.lua: a reply a request (" .. nrep .. ")")
for _, w in ipairs{{"p", first}, {"s", want_s}, {"l", gout}, {"c", want_c}, {8, second}} do
  local r = replies[w[1]]
  -- (as the JSON holds it: bytes that begin no UTF-8 character as U+FFFD)
  local want = w[2] and json.decode(json.encode(w[2]))
  check(r and want and r.text == want and #r.tokens >= 1 and
        (r.finish == "eos" or #r.tokens == (w[1] == "l" and 12 or 5)),
        string.format("serve.lua: request %s's reply is its output alone (%q, %q)", w[1],
                      r and r.text, want))
end
check(replies.l and replies.l.first_step > replies.l.arrive + 3,
      "serve.lua: the long prompt prefilled over several steps")
for _, e in ipairs{{3, "line 3: JSON: "}, {"x", "line 5: no prompt"},
                   {7, "line 7: prompt (2 tokens) + max_tokens (100000) exceed"}} do
  local r = replies[e[1]]
  check(r and r.error and r.error:find(e[2], 1, true) == 1,
        "serve.lua: error reply " .. tostring(e[1]) .. ": " .. tostring(r and r.error))
end
-- --stream on: a line a token as it is picked, before the reply; a
-- request's lines' texts joined are its reply's text
arg = {[0] = "model/serve.lua", "--model", dir, "--requests", dir .. "/requests.jsonl",
       "--out", dir .. "/stream.jsonl", "--max-batch", "3", "--prefill-tokens", "20",
       "--stream", "on"}
oksv, errsv = pcall(dofile, "model/serve.lua")
check(oksv, "serve.lua --stream on runs: " .. tostring(errsv))
local pieces, counts, ended, in_order = {}, {}, {}, true
for line in io.lines(dir .. "/stream.jsonl") do
  local r = json.decode(line)
  if r.token then
    in_order = in_order and not ended[r.id]
    pieces[r.id] = (pieces[r.id] or "") .. r.text
    counts[r.id] = (counts[r.id] or 0) + 1
  elseif not r.error then
    ended[r.id] = r
  end
end
for _, id in ipairs{"p", "s", "l", "c", 8} do
  local r = ended[id]
  check(r and r.text == replies[id].text and pieces[id] == r.text and counts[id] == #r.tokens,
        string.format("serve.lua --stream on: request %s's pieces make its text (%q, %q)",
                      tostring(id), pieces[id], r and r.text))
end
check(in_order, "serve.lua --stream on: a request's tokens before its reply")

-- V4's chat format (encoding_dsv4.py's rules for system, user and assistant turns)
local U, A = T.USER, T.ASSISTANT
check(T.chat({{role = "system", content = "S"}, {role = "user", content = "hello"}}, "chat") ==
      BOS .. "S" .. U .. "hello" .. A .. "</think>", "chat: BOS, system, user, assistant, </think>")
check(T.chat({{role = "user", content = "hello"}}, "thinking") == BOS .. U .. "hello" .. A .. "<think>",
      "thinking: the model reasons first")
local turns = {{role = "user", content = "hello"}, {role = "assistant", content = "Hi.", reasoning = "r1"},
               {role = "user", content = "1+1=?"}}
check(T.chat(turns, "thinking") == BOS .. U .. "hello" .. A .. "</think>Hi." .. EOS .. U .. "1+1=?" .. A .. "<think>",
      "thinking, two turns: the earlier turn's reasoning dropped")
check(T.chat(turns, "chat") == BOS .. U .. "hello" .. A .. "</think>Hi." .. EOS .. U .. "1+1=?" .. A .. "</think>",
      "chat, two turns")
check(T.chat({{role = "user", content = "q"}, {role = "assistant", content = "a", reasoning = "r"}}, "thinking") ==
      BOS .. U .. "q" .. A .. "<think>r</think>a" .. EOS, "thinking: an answer after the last user turn keeps its reasoning")
check(T.chat({{role = "user", content = "a"}, {role = "user", content = "b"}}, "chat") == BOS .. U .. "a" .. U .. "b" .. A .. "</think>",
      "two user messages in a row: one assistant marker")
check(not pcall(T.chat, {{role = "tool", content = "x"}}, "chat"), "chat: an unknown role is refused")
local chat_ids = tk.encode(T.chat({{role = "system", content = "be brief"}, {role = "user", content = "the one"}}, "thinking"), true)
check(chat_ids[1] == added[BOS] and chat_ids[2] ~= added[BOS] and chat_ids[#chat_ids] == added["<think>"] and
      chat_ids[#chat_ids - 1] == added[A], "a chat prompt encodes with its markers as single tokens, one BOS")
lines = {}
print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
arg = {[0] = "model/generate.lua", "--model", dir, "--prompt", "the one", "--system", "be brief", "--chat", "thinking",
       "--tokens", "2"}
ok, err = pcall(dofile, "model/generate.lua")
print = real_print
check(ok and table.concat(lines, "\n"):find("prompt " .. #chat_ids .. " tokens", 1, true) ~= nil,
      "generate.lua --chat thinking --system: the chat prompt's tokens (" .. #chat_ids .. ")\n" ..
      tostring(err) .. "\n" .. table.concat(lines, "\n"))
-- --turn: the conversation's next user turns; in chat mode the sequence
-- goes on (model:extend) from the reply's last token, and the second reply
-- is what a prefill of the same tokens gives (greedy, 3 tokens a reply)
lines = {}
print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
arg = {[0] = "model/generate.lua", "--model", dir, "--chat", "chat", "--prompt", "the one",
       "--turn", "the other one", "--turn", "on", "--tokens", "3"}
ok, err = pcall(dofile, "model/generate.lua")
print = real_print
local talk = table.concat(lines, "\n")
check(ok and talk:find("\nturn 2: the other one\n", 1, true) ~= nil and
      talk:find("\nturn 3: on\n", 1, true) ~= nil and talk:find("(extend ", 1, true) ~= nil,
      "generate.lua --turn continues the conversation:\n" .. tostring(err) .. "\n" .. talk)
do
  local V4 = require "model.v4"
  local ts = require "tessera"
  local m = V4.load(dir, nil, {kv_format = "fp8"})
  local function greedy(seq, logits)
    local out = {}
    for s = 1, 3 do
      local v, best = logits:to_table(), 1
      for i = 2, #v do if v[i] > v[best] then best = i end end
      out[s] = best - 1
      if out[s] == tk.eos then break end
      if s < 3 then logits = seq:decode(out[s]) end
    end
    return out
  end
  local ids1 = tk.encode(T.chat({{role = "user", content = "the one"}}, "chat"), true)
  local a = m:sequence()
  local r1 = greedy(a, a:prefill(ts.tensor("i32", {#ids1}, ids1)))
  local all = table.move(r1, 1, #r1, #ids1 + 1, table.move(ids1, 1, #ids1, 1, {}))
  local more = tk.encode((r1[#r1] == tk.eos and "" or EOS) .. T.USER .. "the other one" ..
                         T.ASSISTANT .. "</think>", true)
  table.move(more, 1, #more, #all + 1, all)
  local b = m:sequence()
  local r2 = greedy(b, b:prefill(ts.tensor("i32", {#all}, all)))
  check(talk:find("\noutput 2: " .. tk.decode(r2) .. "\n", 1, true) ~= nil,
        "the second reply is a prefill of the conversation's tokens: '" .. tk.decode(r2) .. "'\n" ..
        talk)
end
-- --mtp on through the turns (each reply speculated, prompt lookup's
-- drafts of the conversation so far first; the block follows the extends,
-- a reply's positions to its end): the same replies
lines = {}
print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
arg = {[0] = "model/generate.lua", "--model", dir, "--chat", "chat", "--prompt", "the one",
       "--turn", "the other one", "--turn", "on", "--tokens", "3", "--mtp", "on", "--chunk", "4",
       "--lookup", "2"}
ok, err = pcall(dofile, "model/generate.lua")
print = real_print
local talk_mtp = table.concat(lines, "\n")
local same_talk = ok
for k = 2, 3 do
  local want = talk:match("\noutput " .. k .. ": ([^\n]*)")
  same_talk = same_talk and want ~= nil and talk_mtp:match("\noutput " .. k .. ": ([^\n]*)") == want
end
check(same_talk and talk_mtp:find("MTP block's%) [0-9]+, kept") ~= nil,
      "--turn with --mtp on (and --chunk 4, --lookup 2): the same replies:\n" .. tostring(err) .. "\n" ..
      talk_mtp .. "\n" .. talk)
-- and streamed (--stream on): each turn's output written as it comes
do
  local pieces, write = {}, io.write
  io.write = function(...)
    for _, v in ipairs{...} do pieces[#pieces + 1] = tostring(v) end
  end
  lines = {}
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  arg = {[0] = "model/generate.lua", "--model", dir, "--chat", "chat", "--prompt", "the one",
         "--turn", "the other one", "--turn", "on", "--tokens", "3", "--stream", "on"}
  local ok_t, err_t = pcall(dofile, "model/generate.lua")
  print, io.write = real_print, write
  local text, same = table.concat(pieces), ok_t
  for k = 2, 3 do
    local want = talk:match("\noutput " .. k .. ": ([^\n]*)")
    local line = want and "output " .. k .. ": " .. want .. "\n"
    same = same and line ~= nil and text:find(line, 1, true) ~= nil
  end
  check(same and table.concat(lines, "\n"):find("turn 3: on", 1, true) ~= nil,
        "--turn with --stream on: the same replies streamed: " .. tostring(err_t) .. "\n" .. text)
end
local function thinking(extra)
  lines = {}
  print = function(...) lines[#lines + 1] = table.concat({...}, "\t") end
  arg = {[0] = "model/generate.lua", "--model", dir, "--chat", "thinking", "--prompt", "the one",
         "--turn", "on", "--tokens", "2"}
  table.move(extra, 1, #extra, #arg + 1, arg)
  local ok2, err2 = pcall(dofile, "model/generate.lua")
  print = real_print
  return ok2, tostring(err2), table.concat(lines, "\n")
end
local ok10, err10, think = thinking{}
check(ok10 and think:find("(prefill ", 1, true) ~= nil,
      "--turn in thinking mode prefills the conversation again: " .. err10 .. "\n" .. think)
local ok11, err11, think_mtp = thinking{"--mtp", "on"}
check(ok11 and think_mtp:match("\noutput 2: ([^\n]*)") == think:match("\noutput 2: ([^\n]*)"),
      "--turn in thinking mode with --mtp on: the same reply: " .. err11 .. "\n" .. think_mtp)
arg = {[0] = "model/generate.lua", "--config", "tiny", "--turn", "x", "--tokens", "1"}
ok, err = pcall(dofile, "model/generate.lua")
check(not ok and tostring(err):find("--turn: the next turns of one --chat", 1, true),
      "--turn without --chat is refused: " .. tostring(err))
arg = {[0] = "model/generate.lua", "--config", "tiny", "--chat", "chat", "--tokens", "1"}
ok, err = pcall(dofile, "model/generate.lua")
check(not ok and tostring(err):find("--chat needs a tokenizer.json", 1, true), "--chat without a tokenizer is refused")

-- a config naming a token the tokenizer does not have
write(dir .. "/tokenizer_config.json", '{"eos_token": "</s>"}')
ok, err = pcall(T.open, dir, 512)
check(not ok and err:find("'</s>' is not a token", 1, true), "a config's unknown eos_token is refused")
os.execute("rm -rf " .. dir)
C.finish()
