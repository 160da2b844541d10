-- tokenizer.lua - ts.tokenizer (runtime/tokenizer.c) at DeepSeek's size:
-- a synthetic byte-level BPE of ~128K ids (V4's vocabulary is 129280) with
-- DeepSeek V3/V4's pre-tokenizer, its merges grown from the pieces of a
-- corpus (every prefix of a piece, then of the piece from its second
-- byte on, and so on, up to 16 bytes, in order of first appearance: a
-- chain of merges a token, more merging per byte than a trained vocabulary
-- does), then prefixes of seeded random words up to --merges. Prints the load time of the
-- ~MB tokenizer.json, and encode, pre-tokenize-only and decode rates on
-- the corpus (the repo's docs, kernels and sources, ../shared's pages),
-- best of --runs. Run from the source root:
--   build/tessera run bench/tokenizer.lua [--runs 3] [--merges 127000]
local ts = require "tessera"
local TJ = require "tests.lua.lib.tokenizer_json"

local opts = {runs = "3", merges = "127000"}
local i = 1
while i <= #arg do
  local k = arg[i]:match("^%-%-(.+)$")
  if not k or opts[k] == nil or arg[i + 1] == nil then
    error("usage: tokenizer.lua [--runs N] [--merges N]", 0)
  end
  opts[k] = arg[i + 1]
  i = i + 2
end
local runs, max_merges = math.tointeger(tonumber(opts.runs)), math.tointeger(tonumber(opts.merges))

local parts = {}
for _, pattern in ipairs{"docs/*.md", "../shared/*.md", "kernels/*.tile", "model/*.lua", "runtime/*.c",
                         "compiler/*.c", "dsl/*.c"} do
  local p = io.popen("ls " .. pattern .. " 2>/dev/null")
  for name in p:lines() do
    local f = io.open(name, "rb")
    if f then parts[#parts + 1] = f:read("a"); f:close() end
  end
  p:close()
end
local corpus = table.concat(parts)

local tmp = os.tmpname()
local path = tmp .. ".tokenizer.json"
TJ.write(path, {pre = TJ.pre("deepseek")})
local plain = ts.tokenizer(path)
local merges, seen = {}, {}
for _, piece in ipairs(plain:pieces(corpus)) do
  for s = 1, #piece - 1 do
    for k = s + 1, math.min(#piece, s + 15) do
      local prefix = piece:sub(s, k)
      if not seen[prefix] then
        seen[prefix] = true
        merges[#merges + 1] = {piece:sub(s, k - 1), piece:sub(k, k)}
      end
    end
  end
  if #merges >= max_merges then break end
end
-- the rest of DeepSeek's size from seeded random words (loaded, rarely used)
local state = 1
local function rnd(n)
  state = (state * 1103515245 + 12345) % 2147483648
  return state % n
end
while #merges < max_merges do
  local w = {}
  for k = 1, 2 + rnd(10) do w[k] = string.char(97 + rnd(26)) end
  local word = (rnd(2) == 0 and " " or "") .. table.concat(w)
  for k = 2, #word do
    local prefix = word:sub(1, k)
    if not seen[prefix] and #merges < max_merges then
      seen[prefix] = true
      merges[#merges + 1] = {word:sub(1, k - 1), word:sub(k, k)}
    end
  end
end
while #merges > max_merges do merges[#merges] = nil end
TJ.write(path, {pre = TJ.pre("deepseek"), merges = merges,
                added = {{content = "<\u{ff5c}begin\u{2581}of\u{2581}sentence\u{ff5c}>"},
                         {content = "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>"}}})
local f = io.open(path, "rb")
local file_size = f:seek("end")
f:close()

local function best(fn)
  local b = math.huge
  local r
  for _ = 1, runs do
    collectgarbage()
    local t0 = ts.clock()
    r = fn()
    b = math.min(b, ts.clock() - t0)
  end
  return b, r
end
local t_load, tok = best(function() return ts.tokenizer(path) end)
local t_enc, ids = best(function() return tok:encode(corpus) end)
local t_pre, pieces = best(function() return tok:pieces(corpus) end)
local t_dec, back = best(function() return tok:decode(ids) end)
assert(back == corpus, "decode(encode(corpus)) differs from the corpus")
local mb = #corpus / 1e6
print(string.format("tokenizer.json: %.1f MB, %d ids (%d merges); corpus %.2f MB, %d pieces, %d tokens " ..
                    "(%.2f bytes a token)", file_size / 1e6, tok:vocab_count(), #merges, mb, #pieces, #ids,
                    #corpus / #ids))
print(string.format("load     %8.3f s", t_load))
print(string.format("encode   %8.3f s  %6.2f MB/s  %9.0f tokens/s", t_enc, mb / t_enc, #ids / t_enc))
print(string.format("  of it pre-tokenizing %.3f s (%.0f%%), merging %.3f s", t_pre, 100 * t_pre / t_enc,
                    t_enc - t_pre))
print(string.format("decode   %8.3f s  %6.1f MB/s (round trip exact)", t_dec, mb / t_dec))
os.remove(path)
os.remove(tmp)
