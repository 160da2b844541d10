-- last_block.lua - the last-block pattern of docs/language.md (an atomic
-- outside `parallel` orders the blocks' memory): tests/lua/last_block.tile
-- sums each row of x [N, B] into part in its own block, and the block that
-- counts last adds the parts in order into total. On the CPU (blocks on the
-- pool's threads at once) and the GPU simulator, 40 launches of 61 blocks
-- (odd widths 37 and 129): each total is the ordered f32 sum of that
-- launch's parts, and the counter is back at 0 after every launch. Run
-- under both GPU lowerings (ctest lua/last_block, lua-cuda-c/last_block).
local ts = require "tessera"
local C = require "tests.lua.lib.check"

local function f32(v) return (string.unpack("f", string.pack("f", v))) end

for _, name in ipairs{"cpu", "gpusim"} do
  local d = ts.device(name)
  for _, B in ipairs{37, 129} do
    local N, launches = 61, name == "cpu" and 40 or 4
    local k = ts.kernel("tests/lua/last_block.tile", "sum_rows", nil, d)
    local count, total = ts.tensor("i32", {1}, nil, d), ts.tensor("f32", {1}, nil, d)
    local bad, zeroed = 0, true
    for l = 1, launches do
      local xv = {}
      for i = 1, N * B do xv[i] = ((i * 7 + l * 13) % 23 - 11) / 8 end
      local x = ts.tensor("f32", {N, B}, xv):copy_to(d)
      local sentinel = {} -- (an epilogue that ran early would add these)
      for i = 1, N do sentinel[i] = 1e6 end
      local part = ts.tensor("f32", {N}, sentinel):copy_to(d)
      k:launch{x, part, count, total}
      local pv, want = part:to_table(), 0.0
      for i = 1, N do want = f32(want + pv[i]) end
      if total:to_table()[1] ~= want or want >= 1e6 then bad = bad + 1 end
      zeroed = zeroed and count:to_table()[1] == 0
    end
    C.check(bad == 0, string.format("%s B %d: %d of %d totals not the parts' sum", name, B, bad,
                                    launches))
    C.check(zeroed, string.format("%s B %d: the counter back at 0 after each launch", name, B))
  end
end
C.finish()
