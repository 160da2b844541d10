-- tokenizer.lua - ts.tokenizer (runtime/tokenizer.c) on tokenizer.json
-- files written as Hugging Face's library writes them
-- (tests/lua/lib/tokenizer_json.lua):
--  1. pre-tokenization of DeepSeek V3/V4's three Splits, GPT-2's ByteLevel
--     regex and Llama 3's Split cut 319 texts (multilingual, marks, digits,
--     whitespace kinds, random mixes) exactly as Python's `re` engine does
--     (tests/lua/data/pretok.txt, from gen_pretok.py);
--  2. BPE: ids worked by hand, and merges trained on the corpus giving the
--     ids of a plain reference (merge the lowest-ranked pair, leftmost
--     first) on every text;
--  3. added tokens (leftmost-longest, lstrip/rstrip), the BOS template,
--     ignore_merges, Split behaviors;
--  4. decode(encode(s)) == s for random bytes, invalid UTF-8 included;
--  5. what it refuses, naming the part of the file.
local ts = require "tessera"
local TJ = require "tests.lua.lib.tokenizer_json"
local C = require "tests.lua.lib.check"
local same = C.same
local check = C.check

local tmp = os.tmpname()
os.remove(tmp)
local path = tmp .. ".tokenizer.json"
local function make(o)
  local vocab, added = TJ.write(path, o)
  return ts.tokenizer(path), vocab, added
end

local function unhex(h)
  if h == "-" then return "" end
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end
local function show(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = string.format("%q", s) end
  return "{" .. table.concat(out, ", ") .. "}"
end

-- 1. pre-tokenization against Python's re
local toks = {}
for _, name in ipairs{"deepseek", "gpt2", "llama3"} do toks[name] = make{pre = TJ.pre(name)} end
local texts, counted, wrong = {}, {}, 0
for line in io.lines("tests/lua/data/pretok.txt") do
  local name, text, pieces = line:match("^(%S+) (%S+) (%S+)$")
  text = unhex(text)
  local want = {}
  if pieces ~= "-" then
    for h in pieces:gmatch("[^,]+") do want[#want + 1] = unhex(h) end
  end
  local got = toks[name]:pieces(text)
  counted[name] = (counted[name] or 0) + 1
  if not same(got, want) then
    wrong = wrong + 1
    if wrong <= 5 then
      print(name .. " " .. string.format("%q", text) .. "\n  got  " .. show(got) .. "\n  want " .. show(want))
    end
  end
  if name == "deepseek" then texts[#texts + 1] = text end
end
check(wrong == 0 and counted.deepseek == 319 and counted.gpt2 == 319 and counted.llama3 == 319,
      string.format("pre-tokenization as Python's re on every text (%d differ)", wrong))

-- 2. BPE: by hand
local tok, vocab = make{pre = TJ.pre("deepseek"),
                        merges = {{" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {"in", "g"},
                                  {"1", "2"}, {"e", "e"}, {"ee", "e"}}}
local function ids(...)
  local out = {}
  for i, s in ipairs{...} do out[i] = vocab[s] end
  return out
end
check(same(tok:encode("the thing"), ids("t", "he", " t", "h", "ing")), "the thing: t he | ' t' h ing")
check(same(tok:encode(" the"), ids(" the")), "' the': a merge of merges")
check(same(tok:encode("12123"), ids("12", "1", "2", "3")), "12123: pieces of 3 digits first")
check(same(tok:encode("eeee"), ids("ee", "ee")), "eeee: leftmost first among equal ranks (ee ee, not e eee)")
check(same(tok:encode("eee"), ids("eee")), "eee: ee then ee+e")
check(#tok:encode("") == 0, "empty text: no tokens")
check(tok:vocab_count() == 264 and tok:token(vocab[" the"]) == " the" and tok:id(" the") == vocab[" the"],
      "vocab_count, token, id")
check(tok:token(9999) == nil and tok:id("zzz") == nil, "an unknown id or token: nil")

-- 2b. merges trained on the corpus against a plain reference
local words = {}
for _, t in ipairs(texts) do
  for _, p in ipairs(toks.deepseek:pieces(t)) do
    local w = {}
    for i = 1, #p do w[i] = p:sub(i, i) end
    words[#words + 1] = w
  end
end
local merges, rank = {}, {}
for _ = 1, 300 do
  local count, best, bn = {}, nil, 0
  for _, w in ipairs(words) do
    for i = 1, #w - 1 do
      local k = w[i] .. "\0" .. w[i + 1]
      count[k] = (count[k] or 0) + 1
    end
  end
  for k, n in pairs(count) do
    if n > bn or (n == bn and k < best) then best, bn = k, n end
  end
  if not best or bn < 2 then break end
  local a, b = best:match("^(.-)%z(.*)$")
  merges[#merges + 1] = {a, b}
  rank[a .. "\0" .. b] = #merges
  for _, w in ipairs(words) do
    local i = 1
    while i < #w do
      if w[i] == a and w[i + 1] == b then w[i] = a .. b; table.remove(w, i + 1) end
      i = i + 1
    end
  end
end
local trained, tvocab = make{pre = TJ.pre("deepseek"), merges = merges}
local function reference(text)
  local out = {}
  for _, p in ipairs(trained:pieces(text)) do
    local s = {}
    for i = 1, #p do s[i] = p:sub(i, i) end
    while true do
      local bi, br
      for i = 1, #s - 1 do
        local r = rank[s[i] .. "\0" .. s[i + 1]]
        if r and (not br or r < br) then bi, br = i, r end
      end
      if not bi then break end
      s[bi] = s[bi] .. s[bi + 1]
      table.remove(s, bi + 1)
    end
    for _, x in ipairs(s) do out[#out + 1] = tvocab[x] end
  end
  return out
end
local rnd = C.lcg(11)
local pool = {}
for _, t in ipairs(texts) do for c in t:gmatch(utf8.charpattern) do pool[#pool + 1] = c end end
local differ, total, merged = 0, 0, 0
for k = 1, #texts + 200 do
  local t = texts[k]
  if not t then
    local parts = {}
    for i = 1, 1 + math.floor(rnd() * 60) do parts[i] = pool[1 + math.floor(rnd() * #pool)] end
    t = table.concat(parts)
  end
  local got, want = trained:encode(t), reference(t)
  total = total + 1
  if not same(got, want) then differ = differ + 1 end
  merged = merged + (#t - #got)
end
check(#merges == 300 and differ == 0 and merged > 2000,
      string.format("trained merges: the reference's ids on %d texts (%d differ, %d merges, %d bytes merged)",
                    total, differ, #merges, merged))
-- all the texts as one, three times: one encode call that meets most of its
-- pieces again (runtime/tokenizer.c's per-call cache of merged pieces
-- answers them) gives the reference's ids
local all = table.concat(texts, "\n")
all = all .. "\n" .. all .. "\n" .. all
local got_all, want_all = trained:encode(all), reference(all)
check(#want_all > 10000 and same(got_all, want_all),
      string.format("one long text of repeated pieces: the reference's %d ids", #want_all))

-- 3. added tokens, the template, ignore_merges, behaviors
local BOS, EOS = "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>", "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"
local special, sv, added = make{pre = TJ.pre("deepseek"), merges = {{"a", "b"}},
                                added = {{content = BOS}, {content = EOS}, {content = "<mask>", lstrip = true, rstrip = true},
                                         {content = "<m"}, {content = "User:", special = false}},
                                bos = BOS}
local bos, eos, mask = added[BOS], added[EOS], added["<mask>"]
check(bos == 0 and eos == 1 and sv["\0"] == 5, "added tokens take ids 0.. as in DeepSeek's file")
check(same(special:encode("ab" .. EOS .. "a"), {sv.ab, eos, sv.a}), "an added token in the text is split out")
check(same(special:encode("ab", true), {bos, sv.ab}), "add_special: the template's BOS first")
check(same(special:encode(BOS .. "x", true), {bos, bos, sv.x}), "a BOS in the text stays")
check(same(special:encode("a  <mask>  b"), {sv.a, mask, sv.b}), "lstrip / rstrip take the spaces around")
check(same(special:encode("<m<mask>"), {added["<m"], mask}), "leftmost-longest among added tokens")
check(same(special:encode("<ma"), {added["<m"], sv.a}), "a shorter added token when the longer does not match")
check(special:decode(special:encode("x" .. EOS .. "y", true)) == BOS .. "x" .. EOS .. "y", "decode keeps specials")
check(special:decode(special:encode("x" .. EOS .. "User:y", true), true) == "xUser:y",
      "decode(skip_special) drops only the special ones")
local ign, iv = make{pre = TJ.pre("deepseek"), merges = {{"a", "b"}, {"c", "d"}, {"b", "c"}}, ignore_merges = true}
-- 'abcd' by merges: ab, cd (rank 1, 2) -> {ab, cd}; ignore_merges would take a whole-word token
check(same(ign:encode("abcd"), {iv.ab, iv.cd}), "ignore_merges without a whole-word token: the merges")
local ign2, iv2 = make{pre = TJ.pre("deepseek"), merges = {{"b", "c"}, {"a", "bc"}, {"a", "b"}}, ignore_merges = true}
check(same(ign2:encode("abc"), {iv2.abc}), "ignore_merges: a piece in the vocabulary is one token")
local function behavior(b, invert)
  local pre = string.format('{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "-"}, ' ..
                            '"behavior": "%s", "invert": %s}, {"type": "ByteLevel", "add_prefix_space": false, ' ..
                            '"use_regex": false}]}', b, tostring(invert or false))
  return table.concat(make{pre = pre}:pieces("the-final--countdown"), "|")
end
check(behavior("Removed") == "the|final|countdown", "Split Removed")
check(behavior("Isolated") == "the|-|final|-|-|countdown", "Split Isolated")
check(behavior("MergedWithPrevious") == "the-|final-|-|countdown", "Split MergedWithPrevious")
check(behavior("MergedWithNext") == "the|-final|-|-countdown", "Split MergedWithNext")
check(behavior("Contiguous") == "the|-|final|--|countdown", "Split Contiguous")
check(behavior("Removed", true) == "-|-|-", "Split invert")
local gp, gv = make{pre = TJ.pre("gpt2", true)}
check(same(gp:encode("Hi you"), {gv[" "], gv.H, gv.i, gv[" "], gv.y, gv.o, gv.u}) and
      same(gp:encode(" Hi"), {gv[" "], gv.H, gv.i}), "ByteLevel add_prefix_space: a space before the first word")

-- 4. round trips
local rt = 0
for _ = 1, 300 do
  local parts = {}
  for i = 1, math.floor(rnd() * 50) do
    local r = rnd()
    parts[i] = r < 0.5 and string.char(math.floor(rnd() * 256))
               or r < 0.9 and pool[1 + math.floor(rnd() * #pool)] or (r < 0.95 and EOS or "<mask>")
  end
  local s = table.concat(parts)
  if special:decode(special:encode(s)) == s:gsub("%s*<mask>%s*", "<mask>") and
     trained:decode(trained:encode(s)) == s then
    rt = rt + 1
  end
end
check(rt == 300, "decode(encode(s)) == s for random bytes (invalid UTF-8 too): " .. rt .. " of 300")
check(not pcall(special.decode, special, {99999}), "decode refuses an id not in the vocabulary")

-- 5. refusals name the part
local function refused(o, want, raw)
  if raw then
    local f = assert(io.open(path, "wb")); f:write(raw); f:close()
  else
    TJ.write(path, o)
  end
  local ok, err = pcall(ts.tokenizer, path)
  check(not ok and err:find(want, 1, true) and err:find(path, 1, true), "refused: " .. want .. " (" .. tostring(err) .. ")")
end
refused(nil, "JSON 2:9: expected a value", '{"model":\n  {"a": tru}}')
refused({pre = TJ.pre("deepseek"), normalizer = '{"type": "NFC"}'}, "normalizer: type 'NFC' is not supported")
refused({pre = TJ.pre{"(?<=x)y"}}, "pre_tokenizer: regex '(?<=x)y': unsupported group")
refused({pre = '{"type": "Whitespace"}'}, "pre_tokenizer: type 'Whitespace'")
refused(nil, "model.merges[0]: 'q' + 'zz' names a token not in the vocabulary",
        '{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {' ..
        (function()
           local v = {}
           for b = 0, 255 do v[#v + 1] = TJ.str(TJ.mapped(string.char(b))) .. ": " .. b end
           return table.concat(v, ", ")
         end)() .. '}, "merges": ["q zz"]}}')
refused(nil, "byte 0x00 has no token", '{"pre_tokenizer": {"type": "ByteLevel"}, "model": {"vocab": {"a": 0}, "merges": []}}')
refused(nil, "model: type 'Unigram'", '{"model": {"type": "Unigram", "vocab": []}}')
local ok, err = pcall(ts.tokenizer, tmp .. ".missing.json")
check(not ok and err:find("missing.json", 1, true), "a missing file is refused naming it")
os.remove(path)
C.finish()
