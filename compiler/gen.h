/* gen.h - private to compiler/: the typed AST of a unit to an MLIR module
 * for the CPU target (gen.c). */
#ifndef TS_COMPILER_GEN_H
#define TS_COMPILER_GEN_H

#include "compiler/mlirb.h"

#include <stdlib.h>

typedef MlirContext mb_ctx_t;

/* Builds the module of every kernel of `u` (or only the one named). A
 * construct the CPU target cannot lower is a located diagnostic and a
 * TS_ERR_PROGRAM status. The module belongs to the caller. With `sim_chip`
 * (not NULL), each kernel K also gets @K__gpu: the GPU kernel for that
 * architecture as a CPU function for the simulator (gen.c,
 * gen_kernel_gpu). With `host`, only @K__grid and @K__scratch (a CUDA
 * device's host program: the kernel itself runs from its PTX). */
ts_status ts_gen_cpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     const char *sim_chip, bool host, ts_diags *diags, MlirModule *out);

/* The same for the GPU target: a gpu.module for NVVM chip `chip`
 * ("sm_90a", "sm_80") holding one gpu.func kernel per kernel (docs/abi.md). */
ts_status ts_gen_gpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     const char *chip, ts_diags *diags, MlirModule *out);

/* Where the tiles of a kernel live on the GPU (both GPU lowerings), in
 * declaration order:
 *  - registers: a `frag` tile with a constant shape of at most 64 elements
 *    per thread whose every use is by the thread that owns the element in
 *    the cyclic layout over its flattened shape (element e on thread
 *    e % threads, at register e / threads): whole-tile copies, fills and
 *    gemm results, and `t[i, j]` in a `parallel` over exactly its shape;
 *  - shared memory at `off` (`shared` tiles, then other constant shapes
 *    while the block's total stays within ts_arch_smem_max);
 *  - global scratch, in order, each rounded up to 16 bytes.
 * Returns the tile count; *smem_total is the block's shared bytes. */
#define TS_GPU_MAX_TILES 256
typedef enum { TS_TILE_SMEM, TS_TILE_SCRATCH, TS_TILE_REGS } ts_tile_home;
typedef struct ts_gpu_tile {
  ts_node *decl;
  ts_tile_home home;
  int64_t off;        /* shared memory byte offset */
  int64_t per_thread; /* registers: elements per thread */
  int stages;         /* shared buffers, one per stage of a pipelined copy */
  const ts_node *pipe; /* ... of this `pipelined` loop (ts_pipe_plan) */
  int swz;            /* shared, swizzled: the atom's row bytes (32, 64, 128),
                       * else 0 (below) */
  bool rows;          /* registers, asked for in TS_ACC_ROWS (a vector [M]
                       * whose layout follows wgmma's rows; sm_90a) */
  int pad;            /* shared: elements after each row (ts_pad_elems) */
} ts_gpu_tile;
int ts_gpu_tile_plan(const ts_kernel_info *k, const char *arch, ts_gpu_tile *out,
                     int64_t *smem_total);
/* Bytes of one shared buffer of tile `t` (a constant shape; -1 if not):
 * 16-byte aligned, swizzled ones 1024 (gen_gpu.c). */
int64_t ts_gpu_buffer_bytes(const ts_gpu_tile *t);
/* The entry of tile `s` in a plan of `nt` tiles, or NULL (gpu_mma.c). */
const ts_gpu_tile *ts_gpu_tile_of(const ts_gpu_tile *t, int nt, const ts_symbol *s);

/* Tensor cores (gpu_mma.c), used by the CUDA C lowering: a gemm at block
 * level of two bf16 (or two f16) tiles that are not in registers into an
 * f32 tile, whole tiles with constant shapes M % 16 == 0, N % 8 == 0,
 * K % 16 == 0, in a block of whole warps, runs as mma.sync m16n8k16
 * (`mnk` gets M, N, K); two f32 tiles with tf32=true, A not transposed and
 * B transposed, both in shared memory, K % 8 == 0, as mma.sync m16n8k8
 * .tf32 (its fragments are a 16-bit m16n8k16's, read as 32-bit words:
 * ldmatrix serves both); two i8 tiles into an i32 one, A not transposed
 * and B transposed, K % 32 == 0, as mma.sync m16n8k32 .s8 (the same words
 * read as bytes). ts_mma_layouts sets mma[i] for the register tiles
 * of the plan that hold such a gemm's accumulator in the instruction's
 * layout: the 16x8 pieces in row-major order, piece p on warp p % warps at
 * registers 4 (p / warps) .. +3, lane l holding rows l / 4 and l / 4 + 8,
 * columns 2 (l % 4) and +1. Every statement touching such a tile must
 * touch no register tile in the cyclic layout and none of another shape. */
bool ts_mma_gemm(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                 const ts_node *call, int64_t mnk[3]);
/* The tile gemm `call` reads as B: a whole tile (*col0 NULL), or, for a B
 * not transposed, 16-bit columns `t[:, lo:lo + N]` of a tile whose rows
 * are whole 128-byte panels (gen.h's swizzled layout below) with lo and N
 * multiples of a panel's 64 columns (lo provably so: a constant, a product
 * with one, a `let` of one; *col0 = lo): the columns are whole panels, so
 * tensor cores read them in place (the attention's P V from the gathered
 * block, no copy). NULL: neither. */
const ts_symbol *ts_gemm_b(const ts_node *call, const ts_node **col0);
/* Whether a gemm that runs as scalar code on the GPU (neither tensor-core
 * form) has each thread read its k steps from k = thread id mod K on,
 * wrapping: when A is not transposed and B is (both read along k), the
 * lanes of a warp then read different words at each step instead of the
 * same column of rows whose length is a multiple of 32 words (one bank:
 * up to 32-way conflicts). Elsewhere the lanes sharing a column of B read
 * one word (a broadcast), which a rotation would spread over rows. Only
 * for an accumulator in registers, one element a thread: with more, or
 * with the dot products of a tile in memory, the wrapped index costs each
 * element its own address arithmetic (up to 32 registers more, and spills
 * in the scalar attention kernels). Both lowerings (gpu_mma.c). */
bool ts_gemm_rotates(const ts_node *call, const ts_gpu_tile *tiles, int nt);
/* Whether tile `s` is the accumulator of a gemm shaped for wgmma (one that
 * qualifies for tensor cores with A K-major, whole warpgroups, M % (64
 * warpgroups) == 0, N <= 256; B K-major, or with `wgmma` (the target has
 * it) or 256 threads or more also MN-major); such a frag tile may take 128
 * registers a thread instead of 64. */
bool ts_mma_accumulator(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                        const ts_symbol *s, bool wgmma);
/* Accumulator layouts of register tiles. TS_ACC_WGMMA (sm_90a): the block's
 * warpgroups (128 threads) take 64-row slabs of C in turn, slab s of
 * warpgroup w being rows (s G + w) 64 .. + 63 (G warpgroups); within a slab,
 * warp q of the warpgroup holds rows 16 q .. + 15 and lane l, for each
 * 8-column piece j, registers (s N / 8 + j) 4 .. + 3 at rows l / 4 and
 * l / 4 + 8, columns 8 j + 2 (l % 4) and + 1: wgmma.mma_async's layout. */
/* TS_ACC_ROWS (sm_90a): a vector [M] (M % (64 G) == 0) laid out as the rows
 * of wgmma's layout: register 2 s + h of every lane of warp q of warpgroup
 * w holds row (s G + w) 64 + 16 q + l / 4 + 8 h, the same value on the
 * quad's four lanes. A `parallel (v) in (M)` over it runs each thread's own
 * 2 slabs rows (its memory stores from the quad's first lane only; the
 * statement reads no memory it writes), a wgmma-layout `parallel (i, j)`
 * reads it as t[i] (register 2 (r / (N / 2)) + (r % 4) / 2 beside the
 * tile's register r), and a row reduction of a wgmma-layout tile writes it
 * from all four lanes: the softmax state of attention without shared
 * memory or barriers. */
enum { TS_ACC_CYCLIC, TS_ACC_MMA, TS_ACC_WGMMA, TS_ACC_ROWS };
/* For both lowerings' loops: the length M of a vector in wgmma's rows that
 * the statement under `x` touches (register tiles `regs` with layouts
 * `layout`), or 0. */
int64_t ts_rows_len(const ts_node *x, const ts_symbol *const *regs, const uint8_t *layout,
                    int nregs);
/* A tensor-core gemm that runs as wgmma.mma_async m64nNk16 (k32 for fp8
 * and s8;
 * a B not transposed is MN-major: imm-trans-b 1)
 * on sm_90a: ts_mma_gemm's conditions, A not transposed and B transposed
 * (both K contiguous) in swizzled shared memory, C in registers, whole
 * warpgroups with M % (64 warpgroups) == 0 and N <= 256. fp8e4m3 operands
 * (K % 32 == 0) qualify for wgmma only: elsewhere their gemm is scalar. */
bool ts_wgmma_gemm(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                   const ts_node *call, int64_t mnk[3]);
/* How a gemm at block level runs on the GPU, as both lowerings choose
 * (`tessera compile --emit plan` reports it; tests/ptx checks the PTX
 * agrees): *kind TS_GEMM_WGMMA (sm_90a, `wgmma`: the target has it;
 * ts_wgmma_gemm and C's registers in wgmma's layout), TS_GEMM_MMA
 * (ts_mma_gemm, not fp8, C in memory or in mma's layout) or
 * TS_GEMM_SCALAR (CUDA cores); `layout` is ts_mma_layouts' for the plan's
 * tiles. Returns why it is not the faster form: NULL for wgmma, why not
 * wgmma for mma.sync, why not mma.sync for the scalar gemm; mnk is set
 * for the tensor-core forms. */
typedef enum { TS_GEMM_SCALAR, TS_GEMM_MMA, TS_GEMM_WGMMA } ts_gemm_kind;
const char *ts_gemm_form(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                         const uint8_t *layout, bool wgmma, const ts_node *call,
                         int64_t mnk[3], ts_gemm_kind *kind);
/* `--emit plan` (gpu_plan.c): each kernel's (or `only`'s) tiles, gemms
 * and copies into shared memory as both GPU lowerings place and run them
 * on `arch` (NULL: sm_90a), in words. */
ts_status ts_gpu_plan_report(const ts_unit *u, const char *only, const char *arch, ts_buf *out);
/* A tensor-core gemm's operand kind as both lowerings and the simulator
 * count it: 0 bf16, 1 f16 (m64nNk16), 2 e4m3 (m64nNk32, no transpose
 * flags), 3 tf32 (f32 with tf32=true: m64nNk8, no transpose flags), plus 4
 * when B is not transposed (MN-major: imm-trans-b 1); i8 operands into i32
 * accumulators are 2 | TS_KIND_S8 (8-bit like e4m3, integer products:
 * m16n8k32 / m64nNk32 .s32.s8.s8). Every kind's k step is 32 bytes (the
 * simulator's wgmma adds 8 for scale-d 0). */
enum { TS_KIND_S8 = 16 };
int ts_wgmma_kind(const ts_node *call);
/* The pieces of kind `kind`'s wgmma.mma_async text both lowerings write:
 * the accumulator type (*dtype, "f32" or "s32"), the operands' (*ty), and
 * what follows "d, da, db, p" (*tail: the scale-a/b and transpose
 * immediates; none for e4m3 and tf32's transposes, none at all for s8). */
void ts_wgmma_text(int kind, const char **dtype, const char **ty, const char **tail);
/* How many of the block's G warpgroups split a wgmma accumulator's columns
 * (FlashMLA's decode: 64 heads, one 64-row slab, the output's columns over
 * two warpgroups): G when the block has G >= 2 warpgroups and every gemm of
 * the kernel accumulates 64 rows, else 1 (the warpgroups split the rows).
 * With it, warpgroup w holds columns w N / G .. of every wgmma tile, each
 * in the layout below for an [64, N / G] tile, and each holds all the rows
 * of a TS_ACC_ROWS vector (the same values in every warpgroup); a row
 * reduction combines the warpgroups' parts through shared memory
 * (ts_wgmma_xchg_bytes, after the broadcast slot): two buffers of [G][64]
 * f32 used in turn by the reductions as they run, so that one barrier a
 * reduction (after its writes) suffices: the buffer it writes was last read
 * before the previous reduction's barrier. */
int ts_wgmma_nsplit(const ts_kernel_info *k);
int64_t ts_wgmma_xchg_bytes(const ts_kernel_info *k);
/* Shared memory starts with the broadcast slot (16 bytes: a scalar one
 * thread gives the block), then the exchange buffers at TS_GPU_XCHG_AT. */
#define TS_GPU_XCHG_AT 16
/* Where a wgmma operand's descriptor for the k step at k0 starts in the
 * swizzled tile `s` [R, C] (swizzle swz; the layout below): K-major (A, or
 * B transposed) at row 0, column k0; MN-major (mn: a B not transposed, K
 * down its rows) at row k0, column 0. Returns that element's unswizzled
 * index (a k step starts on the swizzle pattern's boundary, from which the
 * hardware swizzles) and sets *lbo to the leading byte offset: MN-major,
 * from one panel of 128 / eb columns to the next (R rows of 128 bytes);
 * K-major swizzled layouts do not use it (16 bytes: the field's 1). The
 * stride byte offset is 8 rows of swz bytes either way. */
int64_t ts_wgmma_start(const ts_symbol *s, int swz, int64_t k0, bool mn, int64_t *lbo);
/* ... and where B's column n0 starts (n0 a multiple of 8, and MN-major of
 * 128 / eb: whole panels): K-major row n0, MN-major column n0; the offset
 * from column 0, in elements. */
int64_t ts_wgmma_nstart(const ts_symbol *s, int swz, int64_t n0, bool mn);
/* Padded shared tiles (gpu_mma.c decides, the plan places them): an f32
 * tile [R, C] with C a multiple of 32, not a pipelined copy's, that is the
 * accumulator of an mma.sync gemm (so in shared memory: the indexer's
 * scores on sm_80) has TS_PAD more elements after each row: element (i, j)
 * at i (C + TS_PAD) + j. mma.sync's accumulators go to rows lane / 4 at
 * columns 2 (lane % 4): eight rows whose starts share a bank, 8 lanes a
 * bank; padded, 2. Rows stay 16-byte aligned. Both lowerings use the
 * longer rows in their element views and the mma accumulators' stores. Not
 * for a copy's destination from accumulators in registers (attention's
 * scores on sm_80, 8x): in those kernels, at 255 registers, the padded
 * addresses spilled (sparse_attn_split 24 -> 128 bytes), as a 128-byte
 * swizzle had. */
enum { TS_PAD = 4 };
int ts_pad_elems(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt, const ts_symbol *s);
/* layout[i] for each register tile of the plan; `wgmma`: the target has
 * wgmma (sm_90a). */
void ts_mma_layouts(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                    bool wgmma, uint8_t *layout);
/* Swizzled shared tiles (gpu_mma.c decides, the plan places them): a 32-bit (tf32), 16-bit
 * or 8-bit [R, C] tile (R % 8 == 0) read by tensor-core gemms only with K
 * along its rows (A, or B transposed), or on sm_90a (`wgmma`) also as a
 * 16-bit B not transposed (K down its rows: wgmma's MN-major B, the same
 * bytes read with the roles of rows and columns swapped; elsewhere its
 * mma.sync reads it element by element, where the swizzle only costs), is
 * stored in wgmma's canonical layout: with
 * rows of C * eb = 32, 64 or 128 bytes (eb: bytes an element), row-major
 * with each 16-byte chunk of byte offset o moved to o ^ ((o >> 3) & (swz -
 * 16)) (swz = the row bytes: "32B/64B/128B swizzle"); with rows a multiple
 * of 128 bytes, as panels of [R, 128 / eb] one after another, each swizzled
 * by 128. In elements: logical index lin of an [R, C] tile of eb-byte
 * elements is u = lin, or with panels of p = 128 / eb columns
 * u = (lin % C) / p * (R * p) + lin / C * p + lin % p, and is stored at
 * u ^ ((((u * eb) >> 7) & (swz / 16 - 1)) * (16 / eb)) — gen_swizzle (MLIR)
 * and ts_swz (CUDA C) compute it; the simulator's wgmma applies the
 * hardware's rule to addresses instead, which checks both. Such tiles start
 * 1024-byte aligned (the lowerings align the dynamic shared base at run
 * time, the plan reserving 1024 bytes for it). ts_swizzle_bytes: the swz a
 * tile would get, or 0. */
int ts_swizzle_bytes(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                     const ts_symbol *s, bool wgmma);
/* Whether statement `n` writes nothing but tiles the plan keeps in
 * registers and its own scalars (no tensor, no tile in memory, no atomic,
 * no barrier; gen_gpu.c): then no thread can see what it writes, and the
 * block-level barriers that fence statements are left out around it. */
bool ts_stmt_private(const ts_node *n, const ts_gpu_tile *plan, int nt);
/* Whether expression `e` reads no memory (no tile, tensor or atomic): a
 * barrier before a `let` of it still holds after it (gen_gpu.c). */
bool ts_expr_pure(const ts_node *e);
/* The branch an `if` takes when the front end folded its condition
 * (params): 1 (then) or 2 (else, NULL where there is none); 0 where the
 * condition is not known when compiling. The code generators emit that
 * branch alone, and the analyses below skip the other (gen_gpu.c). */
int ts_if_taken(const ts_node *n);
/* Whether kid i of n is the branch a folded `if` does not take: every walk
 * of statements that decides what the generated code does skips it. */
bool ts_if_dead_kid(const ts_node *n, uint32_t i);
/* Whether the subtree `n` mentions symbol `s` (gen_gpu.c). */
bool ts_node_mentions(const ts_node *n, const ts_symbol *s);
/* Whether the subtree `n` writes symbol `s`: an assignment to it or its
 * element, the destination of a copy, fill, clear or reduce, a gemm's
 * accumulator, an atomic's element (in a statement or an expression). */
bool ts_node_writes(const ts_node *n, const ts_symbol *s);
/* How many names in n refer to s. */
int ts_node_mention_count(const ts_node *n, const ts_symbol *s);

/* Pipelined loops (gpu_pipe.c): the stage count of a `pipelined` node
 * (as written; ts_pipe_planned: as the plan keeps it, fewer where shared
 * memory is short, the same for every staged tile of the loop);
 * whether statement `st` of its body is a copy the loop can run ahead (a
 * whole `shared` tile of constant shape filled from a tensor slice of the
 * same dtype, or rows gathered through an index tensor the kernel never
 * writes, indices known before the body runs; the tile used
 * in this body only, this copy the first statement to touch it and the only
 * one to write it); ts_pipe_plan sets `stages` of those tiles (the plan
 * then gives them one buffer per stage, each align16(bytes) apart). */
int64_t ts_pipe_stages(const ts_node *pipe);
int64_t ts_pipe_planned(const ts_node *pipe, const ts_gpu_tile *plan, int nt);
bool ts_pipe_staged_copy(const ts_kernel_info *k, const ts_node *pipe,
                         const ts_node *st);
void ts_pipe_plan(const ts_kernel_info *k, ts_gpu_tile *tiles, int nt);
/* For both lowerings: when `st` is a staged copy of `pipe` whose tile the
 * plan gave one shared buffer per stage, the tile's plan entry and the
 * bytes between its buffers; else NULL. */
const ts_gpu_tile *ts_pipe_buffers(const ts_kernel_info *k, const ts_node *pipe,
                                   const ts_node *st, const ts_gpu_tile *plan, int nt,
                                   int64_t *stride);
/* The bytes of each cp.async of a copy into a tile whose rows are `cols`
 * elements of `elem` bytes: 16 (cp.async.cg) when a row is a multiple of
 * 16 bytes, else 8 or 4 (cp.async.ca: a KV cache row of 584 bytes goes by
 * 8); 0 when no size divides the row (the copy is then element by element). */
int ts_pipe_chunk_bytes(int64_t cols, int elem);
/* Whether copy `call`, outside any ring, can go by cp.async (both
 * lowerings then copy 16-byte chunks and wait for them at once, where the
 * element loop converted each element through its compute type): a tensor
 * (sliced, indexed or gathered) into a whole shared tile of constant shape
 * and the same dtype, placed in shared memory. */
bool ts_copy_async_ok(const ts_node *call, const ts_gpu_tile *plan, int nt);
/* Whether `pipe` can become a ring of buffers at all: two stages or more,
 * a body of at most 256 statements, no `continue` or `break` in it. */
bool ts_pipe_ring_body(const ts_node *pipe);
/* TMA (sm_90a, the MLIR lowering; docs/abi.md "Pipelined loops"): a
 * staged copy with its ring of buffers whose source is a box of a rank-2
 * tensor (both dims sliced) and whose tile is swizzled. The box is `rows`
 * x `box_cols` elements (a swizzle span of the row); the tile is
 * `cols / box_cols` such panels, `rows * swz` bytes apart. The kernel
 * takes one tensor map per entry (a CUtensorMap of tensor argument `arg`,
 * built by the runtime) and, after them, an i32 that is 1 when the runtime
 * built them all (else the ring copies with cp.async). */
typedef struct ts_tma {
  const ts_node *copy; /* the copy call */
  uint32_t arg;        /* its tensor: argument index */
  int64_t rows, cols, box_cols;
  int esize, swz;      /* bytes an element; swizzle span in bytes */
} ts_tma;
#define TS_TMA_MAX TS_TMA_MAPS
int ts_pipe_tma(const ts_kernel_info *k, const char *arch, ts_tma *out);
/* Bytes of mbarriers the TMA rings need past the plan's shared memory (its
 * `nt` tiles, `total` bytes): 8 per stage of each pipelined loop with a
 * TMA copy. */
int64_t ts_pipe_tma_bar_bytes(const ts_kernel_info *k, const char *arch, const ts_gpu_tile *plan,
                              int nt, int64_t total);

/* Whether `st`, a statement of `pipe`'s body, is a gemm whose wgmma may
 * stay in flight into the next iteration (both lowerings then retire it
 * one iteration later; docs/abi.md "Pipelined loops"): three stages or
 * more, both operands staged copies of this body (so the ring, not the
 * body, decides when their buffers are refilled), accumulating into a tile
 * that no other statement of the body mentions. Whether the gemm is a
 * wgmma with its accumulator in registers at all is the lowering's to
 * say. */
bool ts_pipe_async_gemm(const ts_kernel_info *k, const ts_node *pipe, const ts_node *st,
                        const ts_gpu_tile *plan, int nt);
/* When statement i of block `blk` is clear(t) and the statement after it
 * (past other clears) is a pipelined loop with such a gemm into t: that
 * gemm's call (else NULL). A lowering whose gemm is a wgmma then drops the
 * clear and has the gemm's first k step of the first iteration ignore the
 * old accumulators (scale-d 0), zeroing them after the loop only when it
 * ran no iteration: ptxas serializes wgmma kept in flight across
 * iterations when other instructions define their accumulators. */
ts_node *ts_pipe_clear_folds(const ts_kernel_info *k, const ts_node *blk, uint32_t i,
                             const ts_gpu_tile *plan, int nt);
/* Of the `n` clear statements `folded` left to a loop, keeps (in order,
 * returning their count) those of the `na` tiles `acc`, the loop's gemms
 * that took them over, and moves the others to `rest` (*nrest), which the
 * lowering then emits after all. */
int ts_pipe_keep_folded(ts_node **folded, int n, const ts_symbol *const *acc, int na,
                        ts_node **rest, int *nrest);
/* Whether one of the `n` clears `folded` is of tile `t`. */
bool ts_pipe_folded(ts_node *const *folded, int n, const ts_symbol *t);

/* print and assert (gen_debug.c): the C printf format of a `print` call
 * (%lld for integers, %.9g for floats, a newline at the end); the message
 * of an `assert`; and the line a GPU prints when one fails, a format that
 * takes the block's x, y, z and the thread as long longs. */
void ts_print_format(const ts_node *call, ts_buf *out);
void ts_assert_message(const ts_node *call, ts_buf *out);
void ts_assert_format(const ts_unit *u, const ts_node *call, ts_buf *out);
/* The print or assert call at offset `lo` of the unit's text (the id the
 * CPU code passes the runtime); NULL when there is none. */
const ts_node *ts_debug_call_at(const ts_unit *u, uint32_t lo);

/* The typed AST to CUDA C (cuda.c), for NVRTC; every file starts with
 * ts_cuda_prelude (cuda_prelude.c). */
extern const char *const ts_cuda_prelude;
ts_status ts_gen_cuda(ts_unit *u, const char *only, const char *arch,
                      ts_diags *diags, ts_buf *out);

/* Bytes of shared memory a block of the GPU kernel for `arch` uses (a
 * launch passes them as dynamic shared memory). */
int64_t ts_gen_gpu_smem_bytes(const ts_kernel_info *k, const char *arch);
/* Whether they fit what a block may use on `arch`; if not, an error at
 * the kernel in `d`. */
bool ts_gpu_smem_check(const ts_kernel_info *k, const char *arch, const ts_source *src,
                       ts_diags *d);
/* Whether code for architecture `arch` (NULL: the default, sm_90a) has
 * wgmma (gen_gpu.c, with the other facts of each architecture). */
bool ts_arch_wgmma(const char *arch);

#endif
