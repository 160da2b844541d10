-- banks_aligned.lua - the tensor-core kernels at shapes that are whole
-- multiples of their tiles (as V4's are: widths of 128 and more), on the
-- GPU simulator, for scripts/banks.sh's second table (run it with
-- TESSERA_GPUSIM_BANKS=1; TESSERA_TMA=0 so that the GEMMs' operand copies
-- are cp.async stores the simulator counts, where TMA's are not): the
-- numerics suites' odd shapes end their rows and K in tails that are
-- copied element by element, which is where the first table's store
-- conflicts come from. Zero-filled tensors: the counts depend on the
-- addresses, not the values.
--   TESSERA_GPUSIM_BANKS=1 tessera run bench/banks_aligned.lua
local ts = require "tessera"
local dev = ts.device("gpusim")
local function t(dt, shape) return ts.tensor(dt, shape, nil, dev) end
local function run(file, name, args, params)
  ts.kernel("kernels/" .. file, name, params or {}, dev):launch(args)
end

local M, N, K = 128, 128, 256
run("gemm.tile", "gemm_nt", {t("bf16", {M, K}), t("bf16", {N, K}), t("f32", {M, N})})
run("gemm.tile", "gemm_splitk", {t("bf16", {16, K}), t("bf16", {N, K}), t("f32", {2, 16, N})})
run("gemm.tile", "gemm_swiglu", {t("bf16", {M, K}), t("bf16", {N, K}), t("bf16", {N, K}),
                                 t("bf16", {M, N}), 1.0})
run("gemm.tile", "linear_tf32", {t("f32", {M, K}), t("f32", {N, K}), t("f32", {M, N})})
run("gemm.tile", "grouped_linear_tf32", {t("f32", {M, 2, K}), t("f32", {2, N, K}),
                                         t("f32", {M, 2, N})})
run("gemm.tile", "gemm_fp8", {t("fp8e4m3", {M, K}), t("f32", {M, K // 128}),
                              t("fp8e4m3", {N, K}), t("f32", {N // 128, K // 128}),
                              t("f32", {M, N})})

-- the grouped MoE: 64 tokens, 2 of 8 experts each, d 256, width 128, the
-- tile table in the GEMMs' 64 rows
local T, E, KE, DM, I = 64, 8, 2, 256, 128
local ev, wv = {}, {}
for i = 0, T * KE - 1 do ev[i + 1], wv[i + 1] = (i * 3) % E, 0.5 end
local experts, weights = ts.tensor("i32", {T, KE}, ev, dev), ts.tensor("f32", {T, KE}, wv, dev)
local counts, offsets, cursor = t("i32", {E}), t("i32", {E}), t("i32", {E})
local tiles, sorted = t("i32", {(T * KE + 63) // 64 + E, 3}), t("i32", {T * KE})
run("moe.tile", "moe_count", {experts, counts})
run("moe.tile", "moe_offsets", {counts, offsets, tiles}, {BM = 64})
run("moe.tile", "moe_scatter", {experts, offsets, cursor, sorted})
local h = t("bf16", {T * KE, I})
run("moe.tile", "moe_up_tc", {t("bf16", {T, DM}), sorted, offsets, tiles, weights,
                              t("bf16", {E, I, DM}), t("bf16", {E, I, DM}), h})
run("moe.tile", "moe_down_tc", {h, sorted, offsets, tiles, t("bf16", {E, DM, I}),
                                t("f32", {T * KE, DM})})

-- the indexer's scores on tensor cores: 2 queries of 64 heads x 128
-- against 256 keys
run("indexer.tile", "indexer_scores_tc", {t("bf16", {2, 64, 128}), t("bf16", {256, 128}),
                                          t("f32", {2, 64}), t("f32", {2, 256})})
dev:sync()
