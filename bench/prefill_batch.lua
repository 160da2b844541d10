-- prefill_batch.lua - prompts prefilled together (model:prefill_batch: one
-- launch a layer for every prompt's attention and hand-off) against the
-- same prompts prefilled one at a time, tiny config: the launches of each
-- (counted in a run of their own) and the best time of --runs runs,
-- alternated, the device synchronised around each; the logits of each
-- prompt the same either way (within 1e-5; exits non-zero otherwise). On
-- a GPU the prompts' launches are most of a short prompt's time:
-- scripts/gpu.sh runs it there.
--   build/tessera run bench/prefill_batch.lua [--prompts B,B...] [--tokens N,N...]
--       [--runs R] [--kv fp8|f32] [--device cpu|cuda|gpusim] [--weights F]
local ts = require "tessera"
local json = require "model.json"
local V4 = require "model.v4"
local layers = require "bench.v4_layers"

local opts = layers.options({prompts = "8,32", tokens = "16,64", runs = "3", kv = "fp8",
                             device = "cpu", weights = "build/tiny.safetensors"},
                            "prefill_batch.lua [--prompts B,...] [--tokens N,...] [--runs R] " ..
                            "[--kv fp8|f32] [--device D] [--weights F]")
local function list(s)
  local v = {}
  for x in s:gmatch("[^,]+") do v[#v + 1] = math.tointeger(tonumber(x)) end
  return v
end
local dev = ts.device(opts.device)
local cfg = json.read("model/configs/tiny.json")
local model = V4.load(cfg, layers.tiny_weights(opts.weights), {kv_format = opts.kv, device = dev})
local runs = math.tointeger(tonumber(opts.runs))

-- launches of f(), counted by the runtime's profile (a run of its own: on
-- a GPU the profile waits for every launch)
local function launches(f)
  ts.profile(true)
  ts.profile_reset()
  f()
  local n = 0
  for _, r in ipairs(ts.profile()) do n = n + r.launches end
  ts.profile(false)
  return n
end
local function timed(f) return layers.timed(dev, f) end

local rows, same = {}, true
for _, B in ipairs(list(opts.prompts)) do
  for _, n in ipairs(list(opts.tokens)) do
    local seqs, prompts = {}, {}
    for b = 1, B do
      local v = {}
      for i = 1, n do v[i] = (i * 37 + b * 11) % 256 end
      seqs[b], prompts[b] = model:sequence(), ts.tensor("i32", {n}, v)
    end
    local together = function() return model:prefill_batch(seqs, prompts) end
    local apart = function()
      local out = {}
      for b = 1, B do out[b] = seqs[b]:prefill(prompts[b]) end
      return out
    end
    together()
    apart() -- (warm-up: compiles both ways' tilings)
    local lt, la = launches(together), launches(apart)
    local bt, ba = math.huge, math.huge
    local gt, ga
    for _ = 1, runs do
      local t, a
      t, gt = timed(together)
      a, ga = timed(apart)
      bt, ba = math.min(bt, t), math.min(ba, a)
    end
    local all, V = gt:to_table(), cfg.vocab_size
    for b = 1, B do
      local want = ga[b]:to_table()
      local num, den = 0, 0
      for i = 1, V do
        num, den = num + (all[(b - 1) * V + i] - want[i]) ^ 2, den + want[i] ^ 2
      end
      same = same and math.sqrt(num / math.max(den, 1e-30)) <= 1e-5
    end
    rows[#rows + 1] = string.format("| %d x %d | %d | %d | %.2f | %.2f | %.2fx |", B, n, lt, la,
                                    bt * 1e3, ba * 1e3, ba / bt)
  end
end
print(string.format("# prefill_batch, tiny config, %s caches, %s: best of %d", opts.kv,
                    dev:name(), runs))
print("")
print("| prompts x tokens | launches together | one at a time | ms together | one at a time | " ..
      "speed-up |")
print("|---|---|---|---|---|---|")
for _, r in ipairs(rows) do print(r) end
if not same then
  print("FAILED: a prompt's logits differ between the batch and alone")
  os.exit(1)
end
