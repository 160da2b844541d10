-- cpu_bounds.lua - parallel statements on the CPU with their element
-- accesses' range checks (TESSERA_CPU_BOUNDS=0) and without them where
-- interval arithmetic bounds them inside (the default,
-- compiler/gen_bounds.c): mhc.tile's hc_post_mix at a decode step's shape
-- and a prefill's, for the tiny model's dim (256) and V4-Flash's (4096),
-- and the tiny model's kernels over 300 graphed decode steps and 8
-- prefills of 256 tokens (the profile's shortest launch of each kernel
-- times its launches, summed: what the kernels cost without the VM's
-- noise). Each form runs in its own process (the setting is read as a
-- kernel compiles), one thread, three times in turn; the best of each is
-- shown. Run from the source root:
--   build/tessera run bench/cpu_bounds.lua
local ts = require "tessera"

local function child()
  local cpu = ts.device("cpu")
  local function rnd(shape)
    local n = 1
    for _, s in ipairs(shape) do n = n * s end
    local v = {}
    for i = 1, n do v[i] = ((i * 7919) % 1000) / 1000 - 0.5 end
    return ts.tensor("f32", shape, v, cpu)
  end
  local function post_mix(DM, T)
    local args = {rnd{T, 4, DM}, rnd{T, DM}, rnd{T, 4}, rnd{T, 4, 4}, rnd{T, 4, DM},
                  rnd{24, 4 * DM}, rnd{DM // 64, T, 25}, ts.tensor("i32", {1}, {0}, cpu),
                  rnd{3}, rnd{24}, rnd{DM}, rnd{T, 4}, rnd{T, 4}, rnd{T, 4, 4}, rnd{T, DM}}
    local p = T == 1 and {BD = 64, BT = 1, LAST = true, ITERS = 20, EPS = 1e-6}
      or {BD = 64, BT = 1, TB = 16}
    local k = ts.kernel("kernels/mhc.tile", "hc_post_mix", p, cpu)
    local n = math.max(8, math.floor(1e6 / (DM * T)))
    for _ = 1, n do k:launch(args) end
    local best = math.huge
    for _ = 1, 5 do
      local t0 = ts.clock()
      for _ = 1, n do k:launch(args) end
      best = math.min(best, (ts.clock() - t0) / n)
    end
    print(string.format("R hc_post_mix d %d, %d token%s | %.2f", DM, T, T == 1 and "" or "s",
                        best * 1e6))
  end
  post_mix(256, 1)
  post_mix(4096, 1)
  post_mix(256, 256)
  post_mix(4096, 64)

  local json = require "model.json"
  local V4 = require "model.v4"
  local layers = require "bench.v4_layers"
  local cfg = json.read("model/configs/tiny.json")
  local weights = layers.tiny_weights(arg[2] or "build/tiny.safetensors")
  local ids = layers.prompt
  for _, mode in ipairs{"decode", "prefill"} do
    local m = V4.load(cfg, weights, {kv_format = "fp8", graphs = mode == "decode"})
    m:prefill(ids(200))
    for s = 1, 10 do m:decode(s) end
    ts.profile(true)
    ts.profile_reset()
    if mode == "decode" then
      for s = 1, 300 do m:decode(s % 256) end
    else
      for _ = 1, 8 do m:prefill(ids(256)) end
    end
    local total, per = 0, {}
    for _, r in ipairs(ts.profile()) do
      total = total + r.min * r.launches
      per[r.kernel] = (per[r.kernel] or 0) + r.min * r.launches
    end
    ts.profile(false)
    local what = mode == "decode" and "300 graphed decode steps" or "8 prefills of 256 tokens"
    print(string.format("R tiny model, %s: every kernel | %.2f", what, total * 1e6))
    for _, k in ipairs{"hc_post_mix", "rope_hadamard_fp4", "hca_attn_split_f32"} do
      if per[k] then print(string.format("R tiny model, %s: %s | %.2f", what, k, per[k] * 1e6)) end
    end
  end
end

if arg[1] == "--child" then
  child()
  return
end

local exe = arg[-1]
local forms = {{"checked", "0"}, {"bounded", "1"}}
local best, order = {{}, {}}, {}
for _ = 1, 3 do
  for f, form in ipairs(forms) do
    local cmd = string.format("TESSERA_THREADS=1 TESSERA_CPU_BOUNDS=%s '%s' run %s --child %s 2>&1",
                              form[2], exe, arg[0], arg[1] or "")
    local p = io.popen(cmd)
    local out = p:read("a")
    local ok = p:close()
    if not ok then error("cpu_bounds: the " .. form[1] .. " run failed:\n" .. out) end
    for name, us in out:gmatch("R ([^\n|]-) | ([%d.]+)\n") do
      us = tonumber(us)
      if f == 1 and not best[1][name] then order[#order + 1] = name end
      best[f][name] = math.min(best[f][name] or math.huge, us)
    end
  end
end
print("| what (one thread) | checked us | bounded us | speed-up |")
print("|---|---|---|---|")
for _, name in ipairs(order) do
  local a, b = best[1][name], best[2][name]
  print(string.format("| %s | %.1f | %.1f | %.2fx |", name, a, b or 0, b and a / b or 0))
end
