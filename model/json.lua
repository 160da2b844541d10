-- json.lua - a small JSON reader for model configs (DeepSeek's
-- inference/config.json format): objects, arrays, strings, numbers,
-- true/false/null. Errors name the byte offset.
local M = {}

local function decode_error(s, i, what)
  error(string.format("JSON: %s at byte %d", what, i), 0)
end

local function skip(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local parse_value

local escapes = {n = "\n", t = "\t", r = "\r", b = "\b", f = "\f", ["/"] = "/",
                 ["\\"] = "\\", ['"'] = '"'}

-- (runs without escapes are taken whole: a checkpoint's index holds tens
-- of thousands of names)
local function parse_string(s, i)
  local out, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then decode_error(s, i, "unterminated string") end
    out[#out + 1] = s:sub(j, k - 1)
    if s:sub(k, k) == '"' then return table.concat(out), k + 1 end
    local e = s:sub(k + 1, k + 1)
    if escapes[e] then out[#out + 1] = escapes[e]; j = k + 2
    elseif e == "u" then -- \uXXXX, a surrogate pair as one code point
      local cp = tonumber(s:sub(k + 2, k + 5):match("^%x%x%x%x$") or "", 16)
      if not cp or (cp >= 0xDC00 and cp <= 0xDFFF) then decode_error(s, k, "bad \\u escape") end
      j = k + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local lo = s:sub(j, j + 1) == "\\u" and tonumber(s:sub(j + 2, j + 5):match("^%x%x%x%x$") or "", 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then decode_error(s, k, "unpaired surrogate") end
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
        j = j + 6
      end
      out[#out + 1] = utf8.char(cp)
    else decode_error(s, k, "bad escape") end
  end
end

function parse_value(s, i)
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return t, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then decode_error(s, i, "expected a key") end
      local k
      k, i = parse_string(s, i)
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then decode_error(s, i, "expected ':'") end
      t[k], i = parse_value(s, i + 1)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "}" then return t, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or '}'") end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    local t = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return t, i + 1 end
    while true do
      t[#t + 1], i = parse_value(s, i)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "]" then return t, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return parse_string(s, i)
  elseif s:sub(i, i + 3) == "true" then return true, i + 4
  elseif s:sub(i, i + 4) == "false" then return false, i + 5
  elseif s:sub(i, i + 3) == "null" then return nil, i + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" then decode_error(s, i, "unexpected character") end
    return math.tointeger(tonumber(num)) or tonumber(num), i + #num
  end
end

function M.decode(s)
  local v, i = parse_value(s, 1)
  i = skip(s, i)
  if i <= #s then decode_error(s, i, "trailing characters") end
  return v
end

function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 0) end
  local s = f:read("a")
  f:close()
  return M.decode(s)
end

return M
