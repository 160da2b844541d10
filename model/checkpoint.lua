-- checkpoint.lua - the tensors of a checkpoint, whether one safetensors
-- file or the shards of a released one (DeepSeek's HuggingFace layout: a
-- folder of model-000NN-of-000MM.safetensors and model.safetensors.index.json,
-- whose weight_map names each tensor's shard). C.open(path) gives an object
-- with the file's methods the model uses: names(), get(name [, device]) and
-- info(name) (dtype and shape from the header).
-- Every shard is opened (mapped, headers read) at once and every name of
-- the index is checked to be in its shard, so a missing or truncated
-- download fails here, naming the file, before any weight is used.
local ts = require "tessera"
local json = require "model.json"

local C = {}

local function opens(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end
-- (a folder opens on Linux too; "NAME/" opens only when NAME is one)
local function is_dir(path) return opens(path .. "/") end
local function exists(path) return opens(path) and not is_dir(path) end

local Sharded = {}
Sharded.__index = Sharded

function Sharded:names() return table.move(self.list, 1, #self.list, 1, {}) end

function Sharded:get(name, device)
  local f = self.where[name]
  if not f then error("no tensor '" .. name .. "' in " .. self.index, 2) end
  return f:get(name, device)
end

function Sharded:read_into(name, t)
  local f = self.where[name]
  if not f then error("no tensor '" .. name .. "' in " .. self.index, 2) end
  return f:read_into(name, t)
end

function Sharded:info(name)
  local f = self.where[name]
  if f then return f:info(name) end
end

function Sharded:meta(key) return self.first:meta(key) end

-- The shards an index names, opened, with each listed tensor's file.
local function open_index(index)
  local ok, doc = pcall(json.read, index)
  if not ok then error("checkpoint: " .. index .. ": " .. tostring(doc), 0) end
  if type(doc) ~= "table" or type(doc.weight_map) ~= "table" then
    error("checkpoint: " .. index .. " has no weight_map object (a safetensors index names " ..
          "each tensor's shard)", 0)
  end
  local dir = index:match("^(.*)/[^/]*$") or "."
  local self = {index = index, where = {}, list = {}}
  local files = {}
  for name, shard in pairs(doc.weight_map) do
    if type(shard) ~= "string" or shard:find("/", 1, true) then
      error(string.format("checkpoint: %s: tensor '%s' names shard %s, not a file name in " ..
                          "the index's folder", index, name, tostring(shard)), 0)
    end
    if not files[shard] then
      local path = dir .. "/" .. shard
      if not exists(path) then
        error(string.format("checkpoint: %s names shard '%s', which is not there (for '%s')",
                            index, path, name), 0)
      end
      local f = ts.load(path)
      local held = {}
      for _, n in ipairs(f:names()) do held[n] = true end
      files[shard] = {file = f, held = held}
    end
    if not files[shard].held[name] then
      error(string.format("checkpoint: %s puts tensor '%s' in '%s', which does not hold it",
                          index, name, shard), 0)
    end
    self.where[name] = files[shard].file
    self.list[#self.list + 1] = name
  end
  table.sort(self.list)
  local shards = {}
  for shard in pairs(files) do shards[#shards + 1] = shard end
  table.sort(shards)
  if #shards == 0 then error("checkpoint: " .. index .. " lists no tensors", 0) end
  self.first, self.shards = files[shards[1]].file, shards
  return setmetatable(self, Sharded)
end

-- The checkpoint at `path`: a .safetensors file, a safetensors index
-- (.json), or a folder holding weights.safetensors (Tessera's), or
-- model.safetensors.index.json and its shards, or model.safetensors.
function C.open(path)
  if path:match("%.json$") then return open_index(path) end
  if path:match("%.safetensors$") then return ts.load(path) end
  for _, leaf in ipairs{"weights.safetensors", "model.safetensors.index.json",
                        "model.safetensors"} do
    local p = path .. "/" .. leaf
    if exists(p) then return C.open(p) end
  end
  if exists(path) then return ts.load(path) end
  error("checkpoint: no weights at " .. path .. " (a .safetensors file, a safetensors " ..
        "index, or a folder holding weights.safetensors, model.safetensors.index.json " ..
        "or model.safetensors)", 0)
end

-- A model folder's config, in DeepSeek's inference/config.json format
-- (ModelArgs names): DIR/config.json when it is one, else the released
-- layout's DIR/inference/config.json (its top-level config.json is the
-- HuggingFace transformers form, other names).
function C.config(dir)
  local top = dir .. "/config.json"
  local cfg = exists(top) and json.read(top)
  if cfg and cfg.dim then return cfg end
  local inner = dir .. "/inference/config.json"
  if exists(inner) then
    local c = json.read(inner)
    if c.dim then return c end
  end
  if cfg then
    error("checkpoint: " .. top .. " is not in DeepSeek's inference/config.json format " ..
          "(no 'dim'), and " .. inner .. " is not there or not either", 0)
  end
  error("checkpoint: no config.json in " .. dir, 0)
end

return C
