-- json.lua - a small JSON reader for model configs (DeepSeek's
-- inference/config.json format) and requests (serve.lua): objects, arrays,
-- strings, numbers, true/false/null; errors name the byte offset. And a
-- writer (M.encode) for serve.lua's replies.
local M = {}

-- A value that encodes as null where nil would leave a field out.
M.null = setmetatable({}, {__name = "json.null", __tostring = function() return "null" end})

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

-- s as UTF-8: each byte that does not begin a valid sequence replaced by
-- U+FFFD (a model's text may end inside a character, or hold any bytes).
local function valid_utf8(s)
  if utf8.len(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    if utf8.len(s, i, i) then -- (valid: its length from its lead byte)
      local c = s:byte(i)
      local n = c < 0x80 and 1 or c >= 0xF0 and 4 or c >= 0xE0 and 3 or 2
      out[#out + 1] = s:sub(i, i + n - 1)
      i = i + n
    else
      out[#out + 1] = "\u{fffd}"
      i = i + 1
    end
  end
  return table.concat(out)
end

local short = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r"}
local function encode_string(s)
  return '"' .. valid_utf8(s):gsub('[%c"\\]', function(c)
    return short[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local encode_value
function encode_value(v, out)
  local t = type(v)
  if v == nil or v == M.null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif math.type(v) == "integer" then out[#out + 1] = string.format("%d", v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("JSON: " .. v .. " is not a number JSON has", 0)
    end
    local s
    for digits = 15, 17 do -- (the fewest digits that read back as v)
      s = string.format("%." .. digits .. "g", v)
      if tonumber(s) == v then break end
    end
    out[#out + 1] = s
  elseif t == "string" then out[#out + 1] = encode_string(v)
  elseif t == "table" then
    local n = #v
    if n > 0 or next(v) == nil then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("JSON: an object's key " .. tostring(k) .. " is not a string", 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        out[#out + 1] = (i > 1 and "," or "") .. encode_string(k) .. ":"
        encode_value(v[k], out)
      end
      out[#out + 1] = "}"
    end
  else
    error("JSON: a " .. t .. " has no JSON form", 0)
  end
end

-- The JSON text of v, on one line: nil (and M.null) is null; integers exactly, other
-- numbers in the fewest of 15-17 digits that read back as them (NaN and
-- the infinities refused); strings as UTF-8,
-- a byte that begins no valid sequence as U+FFFD, control characters,
-- quotes and backslashes escaped; a table with elements 1..n (n >= 1) or
-- none an array, else an object of string keys, written sorted.
function M.encode(v)
  local out = {}
  encode_value(v, out)
  return table.concat(out)
end

function M.read(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 0) end
  local s = f:read("a")
  f:close()
  return M.decode(s)
end

return M
