-- generate.lua - text generation with a V4 model from kernels/ on the CPU:
--   tessera run model/generate.lua --config tiny [--weights FILE]
--   tessera run model/generate.lua --model FOLDER   (its config and weights,
--       DeepSeek's released layout too: model/checkpoint.lua)
--       [--prompt TEXT]... [--tokens N] [--temperature T] [--top-p P] [--seed S]
--       [--kv fp8|f32] [--linears f32|fp8] [--experts bf16|fp8|fp4]
--       [--device cpu|cuda|gpusim] [--attention bf16|f32] [--moe bf16|f32]
--       [--tokenizer FILE|FOLDER]
--       [--chat chat|thinking [--system TEXT] [--turn TEXT]...] [--chunk N]
--       [--mtp on|off [--lookup K]] [--stream on|off] [--samples N]
-- Tokens from the model folder's tokenizer.json (or --tokenizer's; BOS from
-- its template or tokenizer_config.json, generation stops at its EOS:
-- model/tokenizer.lua), else byte-level (ids 0-255 are bytes; the tiny
-- vocab's other ids print as '?'). --chat puts the prompt in V4's chat
-- format as the user's turn (model/tokenizer.lua's chat: BOS, --system's
-- text, <｜User｜>, <｜Assistant｜>, then </think> or, thinking, <think>).
-- Greedy when the temperature is 0, else temperature + top-p
-- sampling from a seeded generator. Creates the tiny weights with init.lua
-- when the weights file is missing. Prints the text, prefill and decode
-- tokens/s, and the cache the model holds against dense attention's. The
-- caches are in V4's production formats by default (--kv fp8: the FP8/FP4
-- simulations on, as released); --kv f32 is the exact-math model.
-- --linears fp8 runs the linears the checkpoint holds in FP8 as V4's FP8
-- linear, --experts fp4 (fp8) the routed experts as its instruct (Base)
-- checkpoints hold them (model/v4.lua). --attention picks the
-- attention's precision (by default bf16 on tensor cores on a GPU that has
-- them, f32 elsewhere: model/attention.lua), --moe a prefill's bf16
-- experts' (bf16 activations on tensor cores by default on such a GPU, f32
-- elsewhere: model/moe.lua). Several --prompt options
-- generate for all of them together: one sequence each (model:sequence),
-- prefilled as a batch (model:prefill_batch) and decoded as a batch
-- (model:decode_batch) until each has its tokens or its EOS; each output is
-- what that prompt alone would give (greedy; sampling draws from one
-- generator in prompt order). --chunk N prefills a prompt (and extends a
-- turn) N tokens at a time (model:prefill's chunk: the same logits, a
-- chunk's activations).
-- --turn TEXT (with --chat, repeatable) is the user's next turn after the
-- model's reply: in chat mode the sequence continues with the new turn's
-- tokens (model:extend: the reply's last token, EOS, <｜User｜>, the text,
-- <｜Assistant｜></think>) instead of prefilling the conversation again; in
-- thinking mode the conversation is prefilled again as V4's format writes
-- it, which drops the earlier turns' reasoning. --mtp on decodes
-- speculatively with the MTP block's drafts (V4-SPEC 1.10):
-- each step verifies the last token and the block's draft of the next
-- together (model:decode_tokens, two rows through every weight), keeps the
-- draft when the main model picks the same token (else forgets it:
-- model:forget_last), and drafts the next with the block (model:mtp_steps,
-- greedy); the output is the plain run's, token for token, as each token
-- is still the main model's pick from the same logits and draws. The
-- block follows a chunked prefill chunk by chunk, and a reply's positions
-- to its end, so that the next --turn (an extend) speculates too. With
-- several prompts (model:speculate_batch) each step's two tokens of every
-- sequence are two rounds of one step; greedy, each output is the plain
-- run's; sampled, the draws come in another order (a sequence may pick two
-- tokens a step), so the outputs are other samples. --lookup K (with --mtp
-- on) drafts up to K tokens a step by prompt lookup (model.prompt_lookup:
-- what followed the latest earlier occurrence of the last tokens in the
-- conversation so far), the MTP block's draft where there is none; a step
-- verifies them all (model:snapshot, model:rewind past the first wrong one).
-- --stream on (one prompt) writes each reply's text as its tokens are
-- picked (the same text; the figures after it).
-- --graphs on (the default) replays a reply's decode steps as graphs
-- (model/graphs.lua: the same tokens, without the Lua between a step's
-- launches); off runs every step plainly.
-- --samples N: N replies to one prompt, prefilled once and forked
-- (model:fork: each sample's state a copy of the prompt's) into N
-- sequences decoded together (model:decode_batch; with --mtp on
-- speculatively, model:speculate_batch); sample b draws from its own
-- generator seeded --seed + b - 1, so that each output is what --seed
-- (seed + b - 1) alone gives.
local ts = require "tessera"
local launch = require "model.launch"
local tokenizer = require "model.tokenizer"
local S = require "model.sampling"

local opts, lists = launch.options(arg, {
    prompt = "Tessera runs DeepSeek-V4 on the CPU.", tokens = "32", temperature = "0",
    ["top-p"] = "0.9", seed = "1"},
  {chat = true, system = true, chunk = true, turn = true, mtp = true, lookup = true,
   stream = true, samples = true},
  "generate.lua " .. launch.model_usage .. " [--prompt T] [--tokens N] [--temperature T] " ..
  "[--top-p P] [--seed S] [--chat chat|thinking] [--system T] [--chunk N] [--turn T] " ..
  "[--mtp on|off] [--lookup K] [--stream on|off] [--samples N]",
  {prompt = true, turn = true})
local prompts, turns = lists.prompt, lists.turn
if #prompts == 0 then prompts[1] = opts.prompt end
local chunk = opts.chunk and math.tointeger(tonumber(opts.chunk))
if opts.chunk and not (chunk and chunk > 0) then
  error("--chunk: a positive number of tokens", 0)
end
if chunk and #prompts > 1 then error("--chunk: one prompt (prompts together prefill whole)", 0) end
if #turns > 0 and (not opts.chat or #prompts > 1) then
  error("--turn: the next turns of one --chat conversation", 0)
end
if opts.mtp and opts.mtp ~= "on" and opts.mtp ~= "off" then error("--mtp: on or off", 0) end
local mtp = opts.mtp == "on"
local lookup = opts.lookup and math.tointeger(tonumber(opts.lookup))
if opts.lookup and not (lookup and lookup >= 1) then
  error("--lookup: a count of draft tokens", 0)
end
if lookup and not mtp then error("--lookup: with --mtp on (a speculation's drafts)", 0) end
if opts.stream and opts.stream ~= "on" and opts.stream ~= "off" then
  error("--stream: on or off", 0)
end
local stream = opts.stream == "on"
if stream and #prompts > 1 then error("--stream: one prompt", 0) end
local n_new = math.tointeger(tonumber(opts.tokens))
if not (n_new and n_new >= 1) then error("--tokens: a positive number of tokens", 0) end
local temperature, top_p, seed0 = launch.sampling(opts)
local samples = math.tointeger(tonumber(opts.samples or "1"))
if not (samples and samples >= 1) then error("--samples: a number of replies", 0) end
if samples > 1 and (#prompts > 1 or #turns > 0 or stream) then
  error("--samples: of one prompt, without --turn or --stream", 0)
end
local cfg, model, device, tk = launch.open(opts)

-- tokens
local function encode(prompt)
  local ids
  if opts.chat then
    if not tk.tokenizer then error("--chat needs a tokenizer.json (the model folder's or --tokenizer)", 0) end
    local messages = {{role = "user", content = prompt}}
    if opts.system then table.insert(messages, 1, {role = "system", content = opts.system}) end
    ids = tk.encode(tokenizer.chat(messages, opts.chat), true)
  else
    ids = tk.encode(prompt)
  end
  if #ids == 0 then error("the prompt has no tokens", 0) end
  return ids
end
local all_ids = {}
for b, p in ipairs(prompts) do
  all_ids[b] = encode(p)
  if #all_ids[b] + n_new > cfg.max_seq_len then error("prompt + tokens exceed max_seq_len", 0) end
end
local ids = all_ids[1]

local rnd = S.generator(seed0)
local picker = S.picker(device)

-- --lookup's draft function for a reply after `history`: prompt lookup's
-- drafts over the history and the reply so far, else the MTP block's
local function drafter(history)
  return model.lookup_drafter(history, lookup)
end
local drafts_name = lookup and "drafts (prompt lookup, else the MTP block's)" or "MTP drafts"

-- the next token of each row of logits [B, vocab] (or [vocab]): a list;
-- sampled, row b draws from gens[b] (else the one generator)
local function pick_rows(logits, gens)
  local rows = {}
  if temperature > 0 then
    local shape = logits:shape()
    for b = 1, logits:numel() // shape[#shape] do
      rows[b] = {temperature = temperature, top_p = top_p, gen = gens and gens[b] or rnd}
    end
  end
  return picker(logits, rows)
end
local function pick(logits) return pick_rows(logits)[1] end

-- run() once to compile the kernels (a warm-up), then again, timed: the
-- warm-up's seconds, the second run's start and its results
local function warm_then_timed(run)
  local tc = ts.clock()
  run()
  device:sync()
  local compile = ts.clock() - tc
  local t0 = ts.clock()
  return compile, t0, run()
end

-- seqs decoded together from logits (model:decode_batch) until each has
-- n_new tokens or its EOS: picker(logits, live) picks the live sequences'
-- tokens (live: their indices), a row each. Returns each
-- sequence's tokens and the rows decoded.
local function decode_together(seqs, logits, picker)
  local outs, live, steps = {}, {}, 0
  for b = 1, #seqs do outs[b], live[b] = {}, b end
  for s = 1, n_new do
    local toks = picker(logits, live)
    local next_live, next_seqs, next_ids = {}, {}, {}
    for k, b in ipairs(live) do
      outs[b][#outs[b] + 1] = toks[k]
      if toks[k] ~= tk.eos and s < n_new then
        next_live[#next_live + 1], next_seqs[#next_seqs + 1] = b, seqs[b]
        next_ids[#next_ids + 1] = toks[k]
      end
    end
    live = next_live
    if #live == 0 then break end
    logits = model:decode_batch(next_seqs, next_ids)
    steps = steps + #live
  end
  return outs, steps
end

-- seqs speculated together (model:speculate_batch) from logits [B, vocab]
-- after prompts[b], seqs[b]'s tokens (--lookup's drafts over them);
-- pick(logits, b) picks sequence b's tokens. Returns the tokens, the rows
-- decoded (a token each after the first), the drafts made and kept.
local function speculate_together(seqs, logits, prompts, pick_b)
  local each = {}
  for b = 1, #seqs do each[b] = lookup and drafter(prompts[b]) end
  local outs, drafts, kept = model:speculate_batch(seqs, logits, prompts, n_new, pick_b, tk.eos,
    lookup and function(b, new, m) return each[b](new, m) end)
  local steps = 0
  for b = 1, #seqs do steps = steps + #outs[b] - 1 end
  return outs, steps, drafts, kept
end

-- the drafts line of a speculative run
local function print_drafts(drafts, kept)
  print(string.format("%s: %d, kept %d (%.0f%%)", drafts_name, drafts, kept,
                      100 * kept / math.max(drafts, 1)))
end

if #prompts > 1 then
  -- several prompts together: warm up (compiles the batch's kernels), then
  -- the timed run
  local function run()
    local seqs = {}
    for b = 1, #prompts do seqs[b] = model:sequence() end
    local logits = model:prefill_batch(seqs, all_ids)
    device:sync()
    local tp = ts.clock()
    if mtp then -- (speculatively: model:speculate_batch)
      return tp, speculate_together(seqs, logits, all_ids, pick)
    end
    -- (sampled: one generator, the rows in prompt order)
    return tp, decode_together(seqs, logits, function(l) return pick_rows(l) end)
  end
  local compile, t0, tp, outs, steps, drafts, kept = warm_then_timed(run)
  local t2 = ts.clock()
  local total = 0
  for b = 1, #prompts do
    total = total + #all_ids[b]
    print(string.format("prompt %d: %s", b, prompts[b]))
    print(string.format("output %d: %s", b, tk.decode(outs[b])))
  end
  print(string.format("%d prompts together (device %s, tokens: %s): prefill %d tokens: %.1f " ..
                      "tokens/s; decode %d tokens: %.1f tokens/s (kernels compiled in a warm-up " ..
                      "run first: %.2f s)", #prompts, device:name(), tk.name, total,
                      total / (tp - t0), steps, steps / math.max(t2 - tp, 1e-9), compile))
  if mtp then print_drafts(drafts, kept) end
  return
end

if samples > 1 then
  -- one prompt's samples: prefilled once, forked, decoded together; each
  -- sample's picks from its own generator
  local function run()
    local base = model:sequence()
    local logits = base:prefill(ts.tensor("i32", {#ids}, ids), chunk, mtp)
    local seqs, gens = {base}, {}
    for b = 2, samples do seqs[b] = base:fork() end
    for b = 1, samples do gens[b] = S.generator(seed0 + b - 1) end
    device:sync()
    local tp = ts.clock()
    -- (the prompt's logits a row each, as a batch step's)
    local V = logits:numel()
    local rows = ts.empty("f32", {samples, V}, device)
    for b = 1, samples do rows:slice(0, b - 1, 1):assign(logits:reshape{1, V}) end
    if mtp then -- (the forks keep the MTP block's state)
      local prompts = {}
      for b = 1, samples do prompts[b] = ids end
      return tp, speculate_together(seqs, rows, prompts,
                                    function(l, b) return pick_rows(l, {gens[b]})[1] end)
    end
    return tp, decode_together(seqs, rows, function(l, live)
      local g = {}
      for k, b in ipairs(live) do g[k] = gens[b] end
      return pick_rows(l, g)
    end)
  end
  local compile, t0, tp, outs, steps, drafts, kept = warm_then_timed(run)
  local t2 = ts.clock()
  print("prompt: " .. opts.prompt)
  for b = 1, samples do
    print(string.format("sample %d (seed %d): %s", b, seed0 + b - 1, tk.decode(outs[b])))
  end
  print(string.format("%d samples of one prompt (device %s, tokens: %s): prefill %d tokens " ..
                      "once, forked: %.1f ms; decode %d tokens together: %.1f tokens/s " ..
                      "(kernels compiled in a warm-up run first: %.2f s)", samples, device:name(),
                      tk.name, #ids, (tp - t0) * 1e3, steps, steps / math.max(t2 - tp, 1e-9),
                      compile))
  if mtp then print_drafts(drafts, kept) end
  return
end

-- --stream on: pick, writing each token's text after `label` as it is
-- picked (the tokens so far decoded again, written past what is shown:
-- a character of several tokens once whole), and the call that ends the
-- line; else pick and a no-op
local function streaming(label)
  if not stream then return pick, function() end end
  local toks, shown = {}, ""
  io.write(label)
  io.stdout:flush()
  return function(logits)
    local tok = pick(logits)
    toks[#toks + 1] = tok
    local text = tk.decode(toks)
    if #text > #shown and text:sub(1, #shown) == shown then
      io.write(text:sub(#shown + 1))
      io.stdout:flush()
      shown = text
    end
    return tok
  end, function()
    local text = tk.decode(toks)
    io.write(text:sub(1, #shown) == shown and text:sub(#shown + 1) or "\n" .. text, "\n")
  end
end

-- up to n_new tokens from logits, the last one (or the EOS) not decoded
-- (each picked by pick_tok: pick or streaming's)
local function reply(logits, pick_tok)
  local new = {}
  for s = 1, n_new do
    local tok = (pick_tok or pick)(logits)
    new[#new + 1] = tok
    if tok == tk.eos then break end
    if s < n_new then logits = model:decode(tok) end
  end
  return new
end

-- reply's tokens decoded speculatively (--mtp on: model:speculate, the
-- sequence's last tokens `prompt`; with --lookup the drafts from the
-- conversation so far, `history`), the drafts made and kept, the steps
local history = ids
local function reply_mtp(logits, prompt, pick_tok)
  return model:speculate(logits, prompt, n_new, pick_tok or pick, tk.eos,
                         lookup and drafter(history))
end

-- compile the kernels first (a warm-up prefill of the prompt and a decode
-- step; with --mtp the whole reply), so that the figures below time the
-- model, not the compiler
local tc = ts.clock()
local warm = model:prefill(ts.tensor("i32", {#ids}, ids), chunk, mtp)
if mtp then
  reply_mtp(warm, ids)
  rnd = S.generator(seed0) -- (the timed run draws the same)
else
  model:decode(ids[1])
end
device:sync() -- (a GPU queues launches: time from sync to sync)
local compile = ts.clock() - tc
local function heading()
  print("prompt: " .. opts.prompt .. " (device " .. device:name() .. ")")
  print(string.format("tokens: %s; prompt %d tokens", tk.name, #ids))
end
if stream then heading() end
local t0 = ts.clock()
local logits = model:prefill(ts.tensor("i32", {#ids}, ids), chunk, mtp)
device:sync()
local t1 = ts.clock()
local new, drafts, kept, steps
local pick_tok, done = streaming("output: ")
if mtp then
  new, drafts, kept, steps = reply_mtp(logits, ids, pick_tok)
else
  new = reply(logits, pick_tok)
end
device:sync()
local t2 = ts.clock()
done()

if not stream then
  heading()
  print("output: " .. tk.decode(new))
end
print(string.format("prefill %d tokens: %.1f tokens/s; decode %d tokens: %.1f tokens/s " ..
                    "(kernels compiled in a warm-up run first: %.2f s)", #ids, #ids / (t1 - t0), #new,
                    (#new - 1) / math.max(t2 - t1, 1e-9), compile))
if mtp then
  print(string.format("%s: %d, kept %d (%.0f%%): %d decode steps for %d tokens", drafts_name,
                      drafts, kept, 100 * kept / math.max(drafts, 1), steps, #new - 1))
end
-- the next turns: in chat mode the sequence goes on from its last token
-- (model:extend), in thinking mode the conversation is prefilled again
local messages = {{role = "user", content = opts.prompt}}
if opts.system then table.insert(messages, 1, {role = "system", content = opts.system}) end
local think_end = tk.tokenizer and tk.tokenizer:id("</think>")
for k, text in ipairs(turns) do
  -- (the reply's content: after its reasoning's </think> in thinking mode)
  local from = 1
  for j, id in ipairs(new) do
    if id == think_end then from = j + 1 end
  end
  local content = {}
  for j = from, #new do
    if new[j] ~= tk.eos then content[#content + 1] = new[j] end
  end
  messages[#messages + 1] = {role = "assistant", content = tk.decode(content)}
  messages[#messages + 1] = {role = "user", content = text}
  local t3, n, how, toks = ts.clock(), nil, nil, nil
  if opts.chat == "chat" then
    toks = tk.encode((new[#new] == tk.eos and "" or tokenizer.EOS) .. tokenizer.USER .. text ..
                     tokenizer.ASSISTANT .. "</think>", true)
    table.insert(toks, 1, new[#new])
    n, how = #toks, "extend"
    logits = model:extend(ts.tensor("i32", {n}, toks), chunk, mtp)
    -- (the conversation's tokens: the reply's, then the turn's after its
    -- last, which the turn's tokens begin with)
    local was = table.move(history, 1, #history, 1, {})
    history = table.move(toks, 2, #toks, #was + #new + 1, table.move(new, 1, #new, #was + 1, was))
  else
    toks = tk.encode(tokenizer.chat(messages, opts.chat), true)
    n, how = #toks, "prefill"
    logits = model:prefill(ts.tensor("i32", {n}, toks), chunk, mtp)
    history = toks
  end
  local made = ""
  if stream then print(string.format("turn %d: %s", k + 1, text)) end
  local pick_turn, turn_done = streaming(string.format("output %d: ", k + 1))
  if mtp then
    new, drafts, kept = reply_mtp(logits, toks, pick_turn)
    made = string.format("; %s %d, kept %d", drafts_name, drafts, kept)
  else
    new = reply(logits, pick_turn)
  end
  turn_done()
  if not stream then
    print(string.format("turn %d: %s", k + 1, text))
    print(string.format("output %d: %s", k + 1, tk.decode(new)))
  end
  print(string.format("  (%s %d tokens, context %d: %.1f ms%s)", how, n, model.next_pos,
                      (ts.clock() - t3) * 1e3, made))
end
-- the cache the model holds at the end, and what dense attention would
local held, dense, alloc = model:cache_bytes()
print(string.format("KV cache (%s): %d bytes held in its tensors (window rings + compressed " ..
                    "entries + indexer keys; %d allocated) vs %d for dense attention (%.1f%%)",
                    opts.kv == "fp8" and "production formats: e4m3 + bf16 rope, FP4 keys"
                      or "f32", held, alloc, dense, 100 * held / dense))
if model.next_pos <= cfg.window_size then
  print(string.format("  (%d positions fit the %d-token window, so every one is still in the " ..
                      "ring and the compressed entries come on top; the saving starts beyond " ..
                      "the window: the 1M-token table below)", model.next_pos, cfg.window_size))
end
