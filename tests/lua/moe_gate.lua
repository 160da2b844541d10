-- moe_gate.lua - the router as the model runs it: its logits by a GEMM
-- (gemm.tile linear_f32 over the bf16 gate weight, many blocks), then
-- kernels/moe.tile moe_gate (the affinities in shared memory, each pick an
-- argmax over the block's threads), against moe_router (one block a token
-- reading all of the weight): the same experts, the weights to rounding
-- (the logits' sums round apart), and given the same logits (moe_router's
-- over an identity weight) the same bits, hash layers too; one token, a
-- few, a prefill's; fewer experts than threads, more, and no multiple of
-- them (E 8, 256, 300), 1, 32 and 128 threads; on the CPU and the GPU simulator. Ties go to the smaller
-- expert (logits with repeated values against a sort), experts left out
-- by a -inf bias are never picked, and a TH that is no power of two is
-- refused. With ROUTE (a decode step's token: one block gates and routes
-- the slots) the experts and weights are the same bits as a block a
-- token's, and the routing that of ROUTE alone over those experts
-- (tests/lua/moe_route.lua checks that against the three kernels and a
-- plain construction). (The model's router through them: the golden
-- check.)
local ts = require "tessera"
local C = require "tests.lua.lib.check"
local check = C.check

local lcg = C.lcg(11)

for _, dev in ipairs{"cpu", "gpusim"} do
  local d = ts.device(dev)
  local function kern(name, p) return ts.kernel("kernels/" .. name[1], name[2], p or {}, d) end
  -- moe_gate's launch: its route outputs (tiles of 4 rows) made here;
  -- returns them
  local function gate(p, lg, bias, ids, t2e, ge, gw)
    local T, E, K = lg:shape(1), lg:shape(2), ge:shape(2)
    local r = {ts.empty("i32", {E}, d), ts.empty("i32", {(T * K + 3) // 4 + E, 3}, d),
               ts.empty("i32", {T * K}, d)}
    kern({"moe.tile", "moe_gate"}, p):launch{lg, bias, ids, t2e, ge, gw, r[1], r[2], r[3]}
    return r
  end
  for _, case in ipairs{{1, 8, 256, 2, 128}, {3, 256, 512, 6, 128}, {1, 300, 96, 6, 32},
                        {11, 256, 64, 8, 1}, {2, 8, 64, 2, 32}} do
    local T, E, DM, K, TH = table.unpack(case)
    local V = 50
    local x = ts.tensor("f32", {T, DM}, C.spread(T * DM, 3 + T, 1.0), d)
    local wg = ts.tensor("f32", {E, DM}, C.spread(E * DM, 5 + E, 0.5)):cast("bf16", d)
    local bias = ts.tensor("f32", {E}, C.spread(E, 9, 0.05), d)
    local ids, t2e = {}, {}
    for t = 1, T do ids[t] = math.floor(lcg() * V) end
    for i = 1, V * K do t2e[i] = math.floor(lcg() * E) end
    local ids_t, t2e_t = ts.tensor("i32", {T}, ids, d), ts.tensor("i32", {V, K}, t2e, d)
    for _, hash in ipairs{false, true} do
      local what = string.format("%s T %d E %d DM %d K %d TH %d hash %s", dev, T, E, DM, K, TH,
                                 hash)
      local p = {HASH = hash, ROUTE_SCALE = 2.5}
      local pg = {HASH = hash, ROUTE_SCALE = 2.5, TH = TH}
      local we, ww = ts.empty("i32", {T, K}, d), ts.empty("f32", {T, K}, d)
      kern({"moe.tile", "moe_router"}, p):launch{x, wg, bias, ids_t, t2e_t, we, ww}
      local lg = ts.empty("f32", {T, E}, d)
      kern({"gemm.tile", "linear_f32"}, {W = "bf16", BM = 1, BN = 32, BK = 128})
        :launch{x, wg, lg}
      local ge, gw = ts.empty("i32", {T, K}, d), ts.empty("f32", {T, K}, d)
      gate(pg, lg, bias, ids_t, t2e_t, ge, gw)
      -- the logits' sums round apart (the GEMM's tiles, the frag's one
      -- gemm): the same experts, weights to rounding
      local ne = C.differ({ge:to_table()}, {we:to_table()})
      local err = C.relerr(gw:to_table(), ww:to_table())
      check(ne == 0 and err < 1e-6, string.format(
        "%s: linear_f32 + moe_gate ~ moe_router (%d experts differ, weights %.2g)", what, ne,
        err))
      -- given the same logits (moe_router's of x = lg over the identity:
      -- each logit one exact product), the same bits
      local eye = {}
      for i = 1, E * E do eye[i] = (i - 1) % (E + 1) == 0 and 1.0 or 0.0 end
      kern({"moe.tile", "moe_router"}, p):launch{lg, ts.tensor("f32", {E, E}, eye):cast("bf16", d),
                                                 bias, ids_t, t2e_t, we, ww}
      ne = C.differ({ge:to_table()}, {we:to_table()})
      local nw, total = C.differ({gw:to_table()}, {ww:to_table()})
      check(ne == 0 and nw == 0 and total == T * K, string.format(
        "%s: moe_gate == moe_router over the same logits (%d experts, %d weights of %d differ)",
        what, ne, nw, total))
      -- GATE and ROUTE in one block: the same bits, the routing of ROUTE
      -- alone over the experts
      local re, rw = ts.empty("i32", {T, K}, d), ts.empty("f32", {T, K}, d)
      local pr = {HASH = hash, ROUTE_SCALE = 2.5, TH = TH, ROUTE = true, BM = 4}
      local got = gate(pr, lg, bias, ids_t, t2e_t, re, rw)
      ne = C.differ({re:to_table()}, {ge:to_table()})
      nw = C.differ({rw:to_table()}, {gw:to_table()})
      local want = gate({GATE = false, ROUTE = true, BM = 4}, lg, bias, ids_t, t2e_t, ge, gw)
      local nr = 0
      for i = 1, 3 do nr = nr + C.differ({got[i]:to_table()}, {want[i]:to_table()}) end
      check(ne == 0 and nw == 0 and nr == 0, string.format(
        "%s: ROUTE == a block a token, then ROUTE alone (%d experts, %d weights, %d of the " ..
        "routing differ)", what, ne, nw, nr))
    end
  end

  -- ties: logits with repeated values (bias 0) pick the smaller expert
  -- first, as a sort by (logit desc, expert asc); a -inf bias leaves an
  -- expert out
  for _, case in ipairs{{8, 4, 1}, {256, 6, 128}, {300, 6, 32}, {40, 8, 16}} do
    local E, K, TH = table.unpack(case)
    local T = 3
    local v, bv = {}, {}
    for i = 1, T * E do v[i] = (math.floor(lcg() * 5) - 2) * 0.5 end
    for e = 1, E do bv[e] = e % 3 == 0 and -math.huge or 0.0 end
    local lg = ts.tensor("f32", {T, E}, v, d)
    local ge, gw = ts.empty("i32", {T, K}, d), ts.empty("f32", {T, K}, d)
    gate({TH = TH}, lg, ts.tensor("f32", {E}, bv, d), ts.tensor("i32", {T}, {0, 0, 0}, d),
         ts.tensor("i32", {1, K}, nil, d), ge, gw)
    local got, bad = ge:to_table(), 0
    for t = 0, T - 1 do
      local order = {}
      for e = 0, E - 1 do
        if bv[e + 1] == 0 then order[#order + 1] = e end
      end
      table.sort(order, function(a, b)
        local la, lb = v[t * E + a + 1], v[t * E + b + 1]
        return la > lb or la == lb and a < b
      end)
      for k = 1, K do
        if got[t * K + k] ~= order[k] then bad = bad + 1 end
      end
    end
    check(bad == 0, string.format("%s ties E %d K %d TH %d: the picks of a sort by (logit, " ..
                                  "-expert) (%d differ)", dev, E, K, TH, bad))
  end

  for _, case in ipairs{{{TH = 96}, "power of two"}, {{GATE = false}, "GATE, ROUTE or both"}} do
    local ok, msg = pcall(gate, case[1], ts.empty("f32", {1, 8}, d), ts.empty("f32", {8}, d),
                          ts.empty("i32", {1}, d), ts.empty("i32", {1, 2}, d),
                          ts.empty("i32", {1, 2}, d), ts.empty("f32", {1, 2}, d))
    check(not ok and tostring(msg):find(case[2], 1, true),
          dev .. ": " .. case[2] .. " refused: " .. tostring(msg))
  end
end

C.finish()
