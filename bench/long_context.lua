-- long_context.lua - the model's decode step of one attention layer at
-- V4-Flash width (d 4096, 64 heads of 512, top-k 512, window 128) on the CPU,
-- over long contexts: a CSA layer, an HCA layer, and dense attention of the
-- same width over the same context (the HCA layer's step with every
-- position's KV as an entry, no compression) - issue 8's million-token
-- layer, measured where there is no GPU. The caches are in V4's formats
-- ("fp8": 584-byte entries, 68-byte FP4 indexer keys) filled with random
-- rows, not prefilled (a million-token prefill at V4-Flash width would take
-- this CPU days), and the weights are random; the step itself is the model's
-- own (model/attention.lua attention_steps: projections, compressors,
-- indexer, top-k, attention, output projection). Prints the time per token
-- by kernel and the KV bytes the caches allocate; run from the source root:
--   build/tessera run bench/long_context.lua [--tokens 131072,1048576]
--     [--steps 4] [--dense-max 1048576] [--linears f32|fp8]
--     [--device cpu|cuda|gpusim] [--attention f32|bf16] [--batch B]
-- (--linears fp8: the projections the checkpoint holds in FP8 run as V4's
-- FP8 linear, model/v4.lua, half the weight bytes of bf16; --attention bf16:
-- the attention on tensor cores over the caches' bytes, as a GPU's default
-- (model/attention.lua: sparse_attn_split_kv8, and hca_attn_split_kv8 for
-- the HCA and dense layers); scripts/gpu.sh runs both on a GPU; --batch B:
-- B sequences at the context decoding together, their states in the
-- model's pools as a served batch's are (model:decode_batch's layer step:
-- one launch a kernel for all B), the time a step and a token;
-- --prefill N: the CSA and HCA layers' caches made by the model's own
-- prefill of the T tokens, N at a time (model/attention.lua M:attention
-- with P, M:hand_off: a chunked prefill's path, random inputs), timed, then
-- their decode steps over that state (issue 8's "prefilled to 128K, 512K
-- and 1M tokens on one GPU, then decoding"; scripts/gpu.sh runs it; one
-- sequence; dense attention keeps random rows)
local ts = require "tessera"
local O = require "model.ops"

local layers = require "bench.v4_layers"
local opts = layers.options({tokens = "131072,524288,1048576", steps = "4",
                             ["dense-max"] = "1048576", linears = "f32", device = "cpu",
                             attention = "f32", batch = "1", prefill = "0"},
                            "long_context.lua [--tokens N,N,...] [--steps N] [--dense-max N] "
                            .. "[--linears f32|fp8] [--device D] [--attention f32|bf16] "
                            .. "[--batch B] [--prefill N]")
local contexts = {}
for n in opts.tokens:gmatch("%d+") do contexts[#contexts + 1] = math.tointeger(n) end
local steps, dense_max = math.tointeger(opts.steps), math.tointeger(opts["dense-max"])
local B = math.tointeger(tonumber(opts.batch))
if not B or B < 1 then error("--batch " .. opts.batch .. ": a count of sequences", 0) end
local chunk = math.tointeger(tonumber(opts.prefill))
if not chunk or chunk < 0 then error("--prefill " .. opts.prefill .. ": a chunk of tokens", 0) end
if chunk > 0 and B > 1 then error("--prefill: one sequence (--batch 1)", 0) end

-- Each launch timed by kernel name (before the model's files take O.kernel).
local spent = {}
local timing = layers.time_kernels(spent)

if opts.linears ~= "f32" and opts.linears ~= "fp8" then
  error("--linears " .. opts.linears .. ": f32 or fp8", 0)
end
if opts.attention ~= "f32" and opts.attention ~= "bf16" then
  error("--attention " .. opts.attention .. ": f32 or bf16", 0)
end
local dev = ts.device(opts.device)
local model, cfg, random = layers.model({4, 128}, dev, {linears = opts.linears,
                                                        attn_dtype = opts.attention,
                                                        pools = {}, free_slots = {},
                                                        slots_taken = 0})
local c, rd, W, DI = cfg.head_dim, cfg.rope_head_dim, cfg.window_size, cfg.index_head_dim

-- rows of random entries into a cache, a chunk at a time
local function fill(cache, rows)
  local chunk = 16384
  for at = 0, rows - 1, chunk do
    local n = math.min(chunk, rows - at)
    cache:put(random({n, cache.width}, 1.0), at)
  end
end

-- Layer L's decode state after T tokens (V4-SPEC 4.1), with `entries`
-- compressed entries: a full window ring, the entries, for CSA T / 4
-- indexer keys, and full compressor buffers; each in sequence seq's slot of
-- the model's pools (as hand_off puts a prefill's).
local function state(seq, L, T, entries)
  local ratio = cfg.compress_ratios[L + 1]
  local st = {ring = seq:pooled_cache(L, "ring", "kv", c, rd, W), buf = {}}
  fill(st.ring, W)
  st.comp = seq:pooled_cache(L, "comp", "kv", c, rd, 64, entries + 64)
  fill(st.comp, entries)
  local which = {compressor = c}
  if ratio == 4 then
    st.keys = seq:pooled_cache(L, "keys", "key", DI, 0, 64, T // 4 + 64)
    fill(st.keys, T // 4)
    which["indexer.compressor"] = DI
  end
  for name, width in pairs(which) do
    local KE, R = (ratio == 4 and 2 or 1) * width, model.buffer_rows(ratio)
    st.buf[name] = seq:pooled_buffer(L, name, R, 2 * KE) -- (c and z side by side)
    st.buf[name].cz:assign(random({R, 2 * KE}, 1.0))
  end
  return st
end

local function mib(b) return b / 2 ^ 20 end

-- Layer L's state in seq after the model's own prefill of T tokens, `chunk`
-- at a time (random inputs, the same chunk's each time: the values do not
-- change the work): the first a prefill, the rest continuing it (M:extend's
-- path, one layer). Returns the seconds (sync to sync, untimed by kernel)
-- and the launches.
local x_chunk
local function prefilled(seq, L, T)
  x_chunk = x_chunk or random({chunk, cfg.dim}, 1.0)
  timing(false)
  dev:sync()
  local n0, t0 = layers.launches, ts.clock()
  for P = 0, T - 1, chunk do
    local n = math.min(chunk, T - P)
    local pv = {}
    for t = 1, n do pv[t] = P + t - 1 end
    local _, made = seq:attention(L, n == chunk and x_chunk or x_chunk:slice(0, 0, n),
                                  O.tensor("i32", {n}, pv), nil, P)
    seq.state[L] = seq:hand_off(L, made, n, P)
  end
  dev:sync()
  local secs = ts.clock() - t0
  timing(true)
  return secs, layers.launches - n0
end

-- `steps` decode steps of layer L at positions T, T + 1, ... of B
-- sequences together: ms per step in all and by kernel, and the KV bytes
-- allocated
local function run(L, T, entries, prefill)
  local seqs, at = {}, {}
  local pre -- (with prefill: {seconds, launches})
  for b = 1, B do
    seqs[b] = model:sequence()
    if prefill then
      -- (a warm-up prefill of two chunks first: compiles its kernels)
      prefilled(model:sequence(), L, 2 * chunk)
      pre = {prefilled(seqs[b], L, T)}
    else
      seqs[b].state[L] = state(seqs[b], L, T, entries)
    end
  end
  local x = random({B, cfg.dim}, 1.0)
  local function step(t)
    for b = 1, B do at[b] = t end
    model:attention_steps(L, x, seqs, at)
  end
  -- warm-up: compiles the step's kernels, those of a step that completes
  -- a compressed entry too (position t completes one when t + 1 is a
  -- multiple of the ratio)
  local ratio = cfg.compress_ratios[L + 1]
  step(T)
  step(T + ratio - 1 - T % ratio)
  for k in pairs(spent) do spent[k] = nil end
  -- the steps timed as a whole; on a GPU as many again timed by kernel
  local total, counts = layers.timed_runs(dev, timing, function(queued)
    dev:sync()
    local n0, w0 = layers.launches, dev:stats().waits
    local t0 = ts.clock()
    for s = 1, steps do step(T + s) end
    dev:sync()
    -- kernels a step, and the host's waits for the GPU in one (the sync
    -- after the steps aside; 0 on the CPU, whose calls are done on return)
    return (ts.clock() - t0) / steps,
      {(layers.launches - n0) / steps,
       math.max(0, dev:stats().waits - w0 - (queued and 1 or 0)) / steps}
  end, function()
    for s = 1, steps do step(T + steps + s) end
  end)
  local alloc = 0
  for _, seq in ipairs(seqs) do
    local st = seq.state[L]
    for _, cache in ipairs{st.ring, st.comp, st.keys or false} do
      if cache then alloc = alloc + select(2, cache:bytes()) end
    end
  end
  local parts = {}
  for name, secs in pairs(spent) do parts[#parts + 1] = {name, secs / steps} end
  table.sort(parts, function(a, b) return a[2] > b[2] end)
  seqs = nil
  collectgarbage()
  collectgarbage()
  return total, alloc, parts, counts, pre
end

print(string.format("# one V4-Flash-width attention layer's decode step on %s (%s), %s attention",
                    dev:name(), dev:arch() or (dev:threads() .. " threads"), opts.attention))
print("caches in V4's formats (fp8 entries 584 B, FP4 indexer keys 68 B), " ..
      (chunk > 0 and string.format("CSA's and HCA's prefilled by the model, %d tokens at a " ..
                                   "time (random inputs; dense's random rows: no prefill " ..
                                   "column), timed sync to sync after a warm-up of two " ..
                                   "chunks; random weights;", chunk)
                 or "random rows and weights;"))
print(opts.linears == "fp8" and "the projections as V4's FP8 linears (e4m3 weights, 128 x 128 scales);"
      or "the projections' weights in bf16 as the checkpoint's BF16 form stores them;")
print(string.format("%d steps a row (positions T + 1 ..) after two warm-up steps; dense = every", steps))
print("position's entry; a CSA step completes an entry one step in 4, an HCA one in 128")
if B > 1 then
  print(string.format("%d sequences at the context decode together (their states in the model's " ..
                      "pools): ms / token is a step's time / %d, KV and launches a step's", B, B))
end
print("")
print("| context | layer | entries attended | ms / token | vs dense | KV MiB allocated | " ..
      "launches (host waits) / " .. (B > 1 and "step" or "token") .. " | top kernels (ms) |" ..
      (chunk > 0 and " prefill s (tokens/s, launches) |" or ""))
print("|---|---|---|---|---|---|---|---|" .. (chunk > 0 and "---|" or ""))
for _, T in ipairs(contexts) do
  local rows = {}
  local dense_ms
  if T <= dense_max then
    local ms, alloc, parts, counts = run(1, T, T)
    dense_ms = ms * 1e3
    rows[#rows + 1] = {"dense", T + W, ms, alloc, parts, counts}
  end
  local csa = {run(0, T, T // 4, chunk > 0)}
  table.insert(rows, 1, {"CSA", cfg.index_topk + W, csa[1], csa[2], csa[3], csa[4]})
  local hca = {run(1, T, T // 128, chunk > 0)}
  table.insert(rows, 2, {"HCA", T // 128 + W, hca[1], hca[2], hca[3], hca[4]})
  rows[1][7], rows[2][7] = csa[5], hca[5]
  for _, r in ipairs(rows) do
    local top = {}
    for k = 1, math.min(4, #r[5]) do
      top[k] = string.format("%s %.1f", r[5][k][1], r[5][k][2] * 1e3)
    end
    local ms = r[3] * 1e3 / B -- (3 decimals below 10 ms: the mock driver's step is the host's)
    local pre = chunk == 0 and "" or r[7] and string.format(" %.2f (%.0f, %d) |", r[7][1],
                                                           T / r[7][1], r[7][2]) or " - |"
    print(string.format("| %d | %s | %d | " .. (ms < 10 and "%.3f" or "%.1f") ..
                        " | %s | %.1f | %.0f (%.0f) | %s |%s", T, r[1], r[2], ms,
                        dense_ms and string.format("%.3f", r[3] * 1e3 / dense_ms) or "-",
                        mib(r[4]), r[6][1], r[6][2], table.concat(top, ", "), pre))
    io.stdout:flush()
  end
end
