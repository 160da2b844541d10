/* gen_internal.h - private to gen*.c: the generator's state, tile views and
 * the helpers the statement generator (gen.c) and the tile ops (gen_tile.c)
 * share. */
#ifndef TS_COMPILER_GEN_INTERNAL_H
#define TS_COMPILER_GEN_INTERNAL_H

#include "compiler/gen.h"

#define MAX_LOOPS 256
#define MAX_HEAP 128
#define STACK_TILE_LIMIT (64 * 1024)

typedef struct loop {
  MlirBlock header, body, latch, exit;
  MlirValue iv, step;
  bool unroll; /* ask LLVM to unroll it fully (its trip count is constant) */
  bool keep;   /* ask LLVM not to unroll it (a cold path: code size, registers) */
} loop;

typedef struct gen {
  mb b;
  ts_unit *u;
  ts_diags *d;
  const ts_kernel_info *kernel;
  MlirValue atom_vals[4096]; /* dims by atom id, while generating a kernel */
  bool atom_set[4096];
  MlirValue block_id[3];
  struct {
    MlirBlock brk, cont;
    const ts_symbol *var; /* a `for` loop's variable (NULL: none) */
    MlirValue iv;
  } loops[MAX_LOOPS];
  int nloops;
  MlirValue heap[MAX_HEAP];
  int nheap;
  bool in_fn;
  MlirType fn_result;
  bool failed;
  /* the GPU target (gen_gpu.c) */
  bool gpu;
  MlirBlock fn_parent;  /* where functions are created: module or gpu.module */
  MlirOperation fn_op;  /* the kernel function being built */
  MlirValue tid;        /* i64 thread index in the block */
  int64_t threads;      /* the block's thread count */
  int64_t ns;           /* warpgroups splitting wgmma's columns (gen.h ts_wgmma_nsplit) */
  MlirValue xpar;       /* ... with ns > 1: which exchange buffer the next reduction takes */
  int par;              /* depth of `parallel` statements being generated */
  ts_node *const *proven; /* element accesses made unchecked (gen_bounds.c) */
  int nproven;
  const void *inplace;  /* gemms of a loop reading tensors in place (gen_tile.c) */
  int ninplace;
  struct gen_lanes {    /* f32 tiles a loop's dot gemms sum into by lanes (gen_tile.c) */
    const ts_symbol *c;
    ts_node *ref;       /* a gemm's c naming it */
    MlirValue mem;      /* memref of M x N vectors of the dot's lanes */
  } lanes[8];
  int nlanes;
  bool single;          /* inside a statement only thread 0 runs */
  bool synced;          /* the last statement ended with a barrier */
  MlirValue smem_base;  /* memref<?xi8>: the block's shared memory */
  const ts_symbol *regs[256]; /* frag tiles held in registers */
  uint8_t mma[256];     /* regs[i]'s layout: TS_ACC_* (gen.h) */
  bool uses_wgmma;      /* the kernel being built issues wgmma */
  ts_node *folded[8];   /* clears left to the next pipelined loop */
  int nfolded;
  bool fence_next;      /* the next statement is a wgmma gemm: barriers
                         * emitted now make shared writes visible to the
                         * async proxy first (fence.proxy.async) */
  MlirOperation fenced; /* the last such barrier */
  bool wgmma;           /* the target (or the simulated one) is sm_90a */
  const char *arch;     /* ... its name (the tile plan's) */
  MlirValue smem_pad;   /* i64: bytes from smem_base to the 1024-aligned
                         * base the plan's offsets count from */
  int nregs;
  MlirValue mma_reg;    /* in a loop over such a tile: the register index */
  MlirValue rows_reg;   /* ... and of a vector in wgmma's rows (TS_ACC_ROWS) */
  MlirValue rows_lead;  /* in a loop over such a vector's rows: i1, the
                         * quad's first lane (which alone stores to memory) */
  ts_gpu_tile plan[TS_GPU_MAX_TILES]; /* where the kernel's tiles live */
  int nplan;
  int64_t smem;         /* bytes of workgroup memory placed so far */
  ts_tma tma[TS_TMA_MAX]; /* the kernel's TMA copies (gen.h ts_tma) */
  int ntma;
  MlirValue tma_map[TS_TMA_MAX]; /* their maps: !llvm.ptr to the by-value
                         * parameter on the GPU, i64 host pointer in the simulator */
  MlirValue tma_on;     /* i1: the runtime built the maps */
  int64_t bar_at;       /* shared byte offset of the next ring's mbarriers */
  int in_ring;          /* depth of ring bodies being generated */
  MlirValue scratch;    /* memref<?xi8>: this block's global scratch */
  MlirValue scratch_at; /* i64: the next free byte in it */
  /* the GPU kernel built as a CPU function for the simulator (gpusim):
   * thread and block indices are arguments, barriers and shuffles calls */
  bool emu;
  bool declared_print, declared_assert; /* ts_rt_print/assert in the module */
  MlirValue emu_ctx, emu_smem, emu_tid, emu_block[3], emu_grid[2];
} gen;

enum { SUB_INDEX, SUB_SLICE, SUB_GATHER };

typedef struct view view;
struct view {
  MlirValue mem;
  ts_dtype dt;
  uint32_t rank; /* of the underlying tensor or tile */
  MlirValue dims[TS_MAX_RANK];
  struct {
    int kind;
    MlirValue start; /* index, or slice start */
    uint32_t vdim;   /* the view dim a slice or gather feeds */
    view *gather;    /* 1-d view of the indices */
  } sub[TS_MAX_RANK];
  uint32_t vrank;
  MlirValue vext[TS_MAX_RANK];
  bool in_range;  /* a whole tile: every index of the view is in range */
  bool regs;      /* a tile in registers: index / threads (gen_gpu.c) */
  bool mma;       /* ... in the mma layout: at g->mma_reg (gen_mma.c) */
  bool rows;      /* ... a vector in wgmma's rows: at g->rows_reg */
  int swz;        /* a swizzled shared tile [swz_r, swz_c] (gen.h) */
  int64_t swz_r, swz_c;
  int pad;        /* a padded shared tile: elements after each row (gen.h) */
  bool unchecked; /* the caller has made sure the indices are in range */
  int skip_dim;   /* an underlying dim left out of the check, or -1 */
};

/* Of the shared memory a block may opt into (ts_arch_smem_max), the plan
 * reserves GPU_SMEM_ALIGN to align swizzled tiles at run time. */
#define GPU_SMEM_ALIGN 1024

void gen_unsupported(gen *g, ts_node *n, const char *what);
MlirValue gen_i64(gen *g, int64_t v);
void gen_loop_begin(gen *g, loop *L, MlirValue lo, MlirValue hi);
void gen_loop_begin_step(gen *g, loop *L, MlirValue lo, MlirValue hi,
                         MlirValue step);
MlirBlock gen_if_begin(gen *g, MlirValue c);
/* Tensor cores (gen_mma.c, gpu_mma.c): how the elements of tile or tensor
 * `s` are laid out on the GPU, into its view (a register tile's mma or rows
 * layout, a shared tile's swizzle); loops over the elements a statement
 * touches (gen_elem_begin: the mma or rows layout's when it touches such a
 * tile, else gen_each_begin's); a gemm as mma.sync when it qualifies
 * (false: not done). */
void gen_gpu_view_layout(gen *g, const ts_symbol *s, view *v);
/* The register of element `lin` of a register tile's view: its owner's
 * e / threads, or the loop's register in an mma or rows layout. */
MlirValue gen_reg_index(gen *g, const view *v, MlirValue lin);
/* The physical index of element `lin` of a swizzled shared tile `s`, or
 * `lin` when it is not swizzled (the map in gen.h; gen_mma.c). */
int gen_swizzle_of(gen *g, const ts_symbol *s, int64_t *r, int64_t *c);
MlirValue gen_swizzle(gen *g, MlirValue lin, int64_t r, int64_t c, int swz, int eb);
/* A padded shared tile's row padding, or 0 (gen.h ts_pad_elems). */
int gen_pad_of(gen *g, const ts_symbol *s);
/* A binary arith op on the current block. */
static inline MlirValue gen_bin(gen *g, const char *name, MlirValue x, MlirValue y) {
  return mb_bin(&g->b, name, x, y);
}
/* func.call of `fn` (gen_gpu.c). */
MlirOperation gen_call(gen *g, const char *fn, intptr_t n, const MlirValue *args,
                       intptr_t nres, const MlirType *res);
void gen_elem_begin(gen *g, loop *L, const ts_node *stmt, const MlirValue *ext,
                    uint32_t rank, MlirValue *k);
void gen_elem_end(gen *g, loop *L, uint32_t rank);
bool gen_gpu_mma(gen *g, ts_node *call);
/* ts_stmt_private on the GPU (gen_gpu.c). */
bool gen_gpu_private(gen *g, const ts_node *n);
/* wgmma (gen_mma.c): whether gemm `call` runs as wgmma with its
 * accumulator in registers (mnk: its shape); that gemm with its group left
 * in flight, the operands already visible to the async proxy (a pipelined
 * loop's, gen_pipe.c; `first`, i1 or null: the loop's first iteration,
 * whose first k step ignores the old accumulators); wgmma.wait_group n, reading the accumulators of
 * `calls` only after it when n is 0. */
bool gen_wgmma_call(gen *g, const ts_node *call, int64_t mnk[3]);
void gen_wgmma_async(gen *g, ts_node *call, MlirValue first);
void gen_wgmma_wait(gen *g, int64_t n, ts_node *const *calls, int nc);
void gen_block(gen *g, ts_node *blk);
void gen_stmt(gen *g, ts_node *n);
/* A typed 1-d view of `count` elements (n of them, or dynamic: n < 0) at
 * byte `at` of an i8 buffer in address space `sp` (gen_gpu.c). */
MlirValue gen_gpu_view_at(gen *g, MlirValue buf, MlirValue at, MlirType elem,
                          int64_t n, MlirValue count, MlirAttribute sp);
/* The address of element `lin` (of `bytes` each) of a 1-d memref, as an
 * i64 (gen_gpu.c). */
MlirValue gen_gpu_address(gen *g, MlirValue mem, MlirValue lin, int bytes);
/* The simulator's CPU form: a race check call before each shared memory
 * load and store built while on (runtime/gpusim.c). */
void gen_gpu_race_check(gen *g, bool on);
MlirValue gen_gpu_shared_address(gen *g, MlirValue mem, MlirValue lin, int bytes);
/* TMA (gen_pipe.c): the kernel's tensor-map parameters after the scratch
 * ones (their types into `types`; how many), and binding them from the
 * entry block's arguments from `first`. */
int gen_tma_types(gen *g, const ts_kernel_info *k, MlirType *types);
void gen_tma_bind(gen *g, int first);
/* A `pipelined` loop on the GPU as a ring of asynchronous copies
 * (gen_pipe.c); false: not that form, a plain loop. */
bool gen_pipelined(gen *g, ts_node *n);
/* A copy outside a ring by cp.async (gen.h ts_copy_async_ok), waited for
 * at once; false (nothing emitted) when it does not qualify. */
bool gen_copy_async(gen *g, ts_node *call);
/* What statement i of `blk` owes the statements after it (gen_pipe.c):
 * before a wgmma gemm, its barriers fence the async proxy (so the gemm
 * needs no barrier of its own); true: it is a clear the pipelined loop
 * after it takes over (gen.h ts_pipe_clear_folds), left to that loop. */
bool gen_ahead(gen *g, ts_node *blk, uint32_t i);
/* Inline PTX with a memory clobber (gen_mma.c; nothing in the simulator). */
void gen_ptx(gen *g, const char *text);
/* On the CPU, a statement that makes a whole f32 tile (a `parallel` over
 * exactly its shape ending by writing its element, or a copy into it)
 * followed by a reduction of that tile over its last dim: one pass that
 * reduces as it writes; false if the pair does not have that form
 * (gen_tile.c). */
bool gen_fused_reduce(gen *g, ts_node *first, ts_node *next);
bool gen_fused_reduce_fits(gen *g, ts_node *first, ts_node *next);
/* On the CPU, statements i .. of `blk` that copy tensor slices into tiles
 * followed by gemms on the dot micro-kernel (or by a `for` loop with such
 * gemms in its body that writes none of those tensors), some of those
 * tiles used by one of those gemms alone: the gemms read those slices in
 * place when they lie wholly inside their tensors (and, for a loop, apart
 * from every tensor it writes) - the same values in the same order: the
 * same bits - the statements as written otherwise. *last: the last gemm's
 * (or the loop's) index; false (nothing emitted) when they do not have
 * that form (gen_tile.c). */
bool gen_gemm_in_place(gen *g, ts_node *blk, uint32_t i, uint32_t *last);
/* On the CPU, before `for` loop n with body `body`: each f32 tile that its
 * dot gemms (c += a . b^T, gen_tile.c) accumulate into and nothing else in
 * it names gets a buffer of its elements' k lanes, zeroed, which those gemms
 * add their products to instead of summing each call's lanes into the
 * tile; gen_lanes_end, after the loop, adds each element's lanes' sum to
 * the tile (the same halving tree) and forgets the buffers from `from`, the
 * value gen_lanes_begin returned. */
int gen_lanes_begin(gen *g, const ts_node *n, const ts_node *body);
void gen_lanes_end(gen *g, int from);
/* gen_bounds.c: on the CPU, parallel statement n as `if (its element
 * accesses that interval arithmetic bounds lie inside their extents) { n
 * with those unchecked } else { n }`; false (nothing made) where none is
 * bounded. gen_fused_unchecked: the same for gen_fused_reduce's parallel
 * statement and reduce. gen_access_unchecked: whether access n is one of
 * those. */
bool gen_parallel_unchecked(gen *g, ts_node *n, bool synced);
bool gen_fused_unchecked(gen *g, ts_node *first, ts_node *next);
bool gen_access_unchecked(const gen *g, const ts_node *n);
/* The branch between a statement's two copies (gen_bounds.c): on `ok`,
 * its condition passed through llvm.freeze, which MLIR's canonicalizer
 * leaves alone and LLVM folds. MLIR 22's greedy rewriter can spin forever
 * when a branch it folds leaves a loop unreachable while it is still
 * working through that loop (llvm/llvm-project#221152): a versioning
 * condition that folds (`j + (1 - (5 + i0))`: the origin cancels) did
 * exactly that; LLVM's passes fold the branch and drop the dead copy. */
void gen_version_br(gen *g, MlirValue ok, MlirBlock in, MlirBlock out);
/* Whether element access n is known in range as written: a tile's, each
 * index a loop over exactly that dim (gen_bounds.c). */
bool gen_access_in_range(const ts_node *n);
/* gen.c: parallel statement n as written */
void gen_parallel(gen *g, ts_node *n, bool synced);
void gen_if_end(gen *g, MlirBlock join);
/* Every index of extents `ext`: on the CPU a loop nest; on the GPU one loop
 * over the linear index, strided by the block's threads (each thread does
 * the indices t, t + threads, ...). */
void gen_each_begin(gen *g, loop *L, const MlirValue *ext, uint32_t rank,
                    MlirValue *k);
void gen_each_end(gen *g, loop *L, uint32_t rank);
MlirValue gen_extent(gen *g, const ts_extent *e, ts_node *at);
void gen_loop_end(gen *g, loop *L);
void gen_loops_begin(gen *g, loop *L, const MlirValue *ext, uint32_t rank,
                     MlirValue *k);
void gen_loops_end(gen *g, loop *L, uint32_t rank);
bool gen_view_of(gen *g, ts_node *n, view *v, view *pool, int *npool);
void gen_view_load(gen *g, view *v, const MlirValue *k, MlirValue *out);
void gen_view_store(gen *g, view *v, const MlirValue *k, MlirValue x);
void gen_view_elem(gen *g, view *v, const MlirValue *k, MlirValue *lin,
                   MlirValue *valid);
MlirValue gen_convert(gen *g, MlirValue v, MlirType to);
/* gen_tile.c: a tensor row's in-range span (copy_rows); the host CPU has
 * AVX-512 F and BW; an x86 intrinsic of n operands. gen_packed.c: a copy
 * with format="e2m1" (dsl.h ts_copy_packed). */
void gen_row_range(gen *g, view *gv, MlirValue *k, uint32_t outer, MlirValue ext,
                   MlirValue *lin, MlirValue *lo, MlirValue *hi);
bool gen_host_avx512(void);
bool gen_host_vbmi(void);
bool gen_host_vnni(void);
bool gen_host_bf16(void);
/* The constant extent of dim d of a whole tile operand, or -1 (gen_tile.c). */
int64_t gen_const_dim(ts_node *n, uint32_t d);
/* The frame of a register-blocked micro-kernel (gen_tile.c): the vector
 * type of `lanes` f32, `nslots` accumulator slots, a zero vector, and the
 * loops over the blocks of bm rows and bn columns of an M x N c (i0, j0: a
 * block's first row and column), closed by gen_ukernel_end. */
typedef struct gen_ukernel {
  MlirType vt;
  MlirValue slots, zero, i0, j0;
  loop li, lj;
} gen_ukernel;
void gen_ukernel_begin(gen *g, gen_ukernel *u, int64_t lanes, int nslots, int64_t M, int64_t N,
                       int64_t bm, int64_t bn);
void gen_ukernel_end(gen *g, gen_ukernel *u);
/* The dot micro-kernels' end (gen_tile.c): the W lanes (8 or 16) of each
 * of v[0 .. n) (n <= 16) summed by a halving tree (lane l + W/2 to lane l,
 * then + W/4, ...), added to (acc) or stored in mem, each
 * run of `run` elements q contiguous from index at[q] (i64) of its first. */
void gen_dot_finish(gen *g, MlirType vt, int W, MlirValue *v, int n, int run,
                    const MlirValue *at, MlirValue mem, bool acc);
/* Whether view v is rows of contiguous elements (2-d, its columns the
 * buffer's last dim, no gather), and such a slice's first element's index,
 * row stride and in-range condition (corners), false where it overlaps a
 * tensor of w[0 .. nw) (gen_tile.c). */
bool gen_forward_view(const view *v);
MlirValue gen_slice_span(gen *g, view *v, int64_t rows, int64_t cols, const ts_symbol **w,
                         int nw, MlirValue *base, MlirValue *stride);
/* A gemm as plain loops over any views (gen_tile.c). */
void gen_gemm_loops(gen *g, ts_node *call, view *A, view *B, view *C, bool ta, bool tb, bool acc);
/* c (+)= a . b (b^T with tb) for bf16 a and b into f32 c on AVX-512 BF16
 * (gen_bf16.c); false (nothing emitted) where the host, the operands or
 * TESSERA_CPU_BF16=0 do not allow it. */
bool gen_gemm_bf16(gen *g, ts_node *call, view *A, view *B, view *C, bool ta, bool tb, bool acc);
/* c (+)= a . b for i8 tiles into i32 on AVX-512 VNNI (gen_vnni.c); false
 * (nothing emitted) where the host or the tiles do not allow it. */
bool gen_gemm_i8_vnni(gen *g, ts_node *call, view *A, view *B, view *C, bool ta, bool tb,
                      bool acc);
MlirValue gen_x86_intrinsic(mb *b, const char *name, int n, MlirValue *ops, MlirType rt);
MlirValue gen_vec_shuffle(mb *b, MlirValue x, MlirValue y, const int64_t *mask, intptr_t n,
                          MlirType vt);
void gen_copy_packed(gen *g, ts_node *call, view *src, view *dst);
/* A copy of a slice of an fp8e4m3 tensor into a whole f32 tile on an
 * AVX-512 VBMI host, 64 codes a step by the table lookups below; false:
 * not this form. */
bool gen_copy_fp8_rows(gen *g, view *src, view *dst);

/* ---- operands decoded in registers (gen_packed.c) ------------------------ */

/* Where the dot micro-kernel reads an operand: element k of row r at
 * mem[base + r * stride + k], stored as dt (f32, or bf16 widened as it is
 * loaded: exact). A whole tile's is its memref, 0 and its row length; a
 * tensor slice's (gen_gemm_in_place) the tensor's. An FP4 one (e2m1: the
 * codes of a copy with format="e2m1" read in place) holds element k in
 * nibble k % 2 of byte mem[base + r * stride + k / 2], times
 * smem[sbase + r * sstride + k / sblk] with a scale (sblk > 0). */
typedef struct dot_src {
  MlirValue mem, base, stride;
  ts_dtype dt;
  bool e2m1;
  MlirValue smem, sbase, sstride;
  int64_t sblk;
} dot_src;

/* An fp8e4m3 operand read where it lies (gen_gemm_in_place: a decode
 * step's weights, each loaded once) is decoded 64 codes at a time by table
 * lookups. Every e4m3 value is exactly a bf16 (the top half of its f32:
 * 8 exponent bits hold e4m3's subnormals as normal numbers, 7 mantissa
 * bits its 3), so a code's f32 is two table bytes over two zero ones: the
 * top byte by the code's low 7 bits from one 128-byte table or, for a
 * negative code, another (the NaN codes 0x7f and 0xff both give 0x7fc0,
 * the f32 0x7fc00000 the copy's decode gives), the next from a third (the
 * same for either sign); vpermi2b looks 64 codes up in a 128-byte table
 * (two registers) at once, and a byte shuffle of the two results puts
 * them in place in sixteen f32 lanes at a time. The same values as the
 * copy's decode in 3 lookups, a blend and 4 shuffles for 64 codes, against
 * about 10 operations a 16 codes and a store and a load of the f32 tile. */
typedef struct fp8_tables {
  MlirValue top_pos[2], top_neg[2], next[2], zero, low_zero;
} fp8_tables;
fp8_tables gen_fp8_tables(mb *b);
/* The 64 codes of row `row` of s from k0 as eight f32 vectors (type vt) of
 * 8: out[u] holds k0 + 8u .. k0 + 8u + 7. FP8 on AVX-512 VBMI, FP4 (s->e2m1)
 * on AVX-512, each value as the copy would decode (and scale) it. */
void gen_fp8_row(gen *g, const fp8_tables *t, const dot_src *s, MlirValue row, MlirValue k0,
                 MlirType vt, MlirValue out[8]);
void gen_fp4_row(gen *g, const dot_src *s, MlirValue row, MlirValue k0, MlirType vt,
                 MlirValue out[8]);
/* f32 `x` truncated to TensorFloat-32 (the low 13 mantissa bits cleared),
 * as the tensor cores read a tf32 operand */
MlirValue gen_tf32(gen *g, MlirValue x);
/* A gemm operand `x` converted to the compute type, truncated to tf32 with
 * tf32=true (so that every lowering multiplies the same values) */
MlirValue gen_gemm_operand(gen *g, const ts_node *call, MlirValue x, MlirType ct);
/* A compute value -> the storage of dtype `dt`, and back (gen_types.c). */
MlirValue gen_to_storage(gen *g, MlirValue v, ts_dtype dt);
MlirValue gen_from_storage(gen *g, MlirValue v, ts_dtype dt);
MlirType gen_compute_type(gen *g, ts_dtype dt);
/* How an element of dtype `dt` is stored in memory (docs/abi.md). */
MlirType gen_storage_type(gen *g, ts_dtype dt);
bool gen_is_float(gen *g, MlirType t);
MlirValue gen_fastmath(gen *g, MlirValue v, const char *flags);
MlirValue gen_math1(gen *g, const char *name, MlirValue x);
/* exp (or with base2 exp2) of an f32, about 1 ulp (gen_math.c). */
MlirValue gen_exp(gen *g, MlirValue x, bool base2);
int gen_int_width(MlirType t);
MlirValue gen_expr_as(gen *g, ts_node *n, MlirType want);
/* atomic_add / atomic_max's update of its element, the old value (gen_atomic.c). */
MlirValue gen_atomic_rmw(gen *g, ts_node *n);
void gen_copy(gen *g, ts_node *call);
void gen_fill(gen *g, ts_node *call, bool clear);
void gen_gemm(gen *g, ts_node *call);
void gen_reduce(gen *g, ts_node *call);
/* The identity of a reduction: -inf (or the smallest integer) for max and
 * absmax, 0 for sum. */
MlirValue gen_reduce_init(gen *g, ts_builtin op, MlirType t);

/* gen_gpu.c: the GPU pieces. */
void gen_barrier(gen *g);
/* This thread's warpgroup along M (whose 64-row slabs it takes) and along
 * N (its share of the columns: 0 unless the warpgroups split N, gen.h
 * ts_wgmma_nsplit, which is 1 or all of them, so that then wm is 0). */
void gen_warpgroups(gen *g, MlirValue *wm, MlirValue *wn);
/* gen_debug.c: print and assert */
void gen_print(gen *g, ts_node *call);
void gen_assert(gen *g, ts_node *call);
void gen_declare(gen *g, const char *name, intptr_t n, const MlirType *args);
MlirValue gen_gpu_index(gen *g, const char *op, int dim);
/* Where a tile of type `t` lives on the GPU: true for workgroup memory
 * (and `*smem` grows by its bytes), false for global scratch (a frag that
 * would take the block past `limit` bytes). */
bool gen_gpu_tile_in_smem(const ts_type *t, bool shared, int64_t limit, int64_t *smem);
void gen_gpu_tiles(gen *g, const ts_kernel_info *k);
bool gen_gpu_in_registers(gen *g, const ts_symbol *s);
MlirValue gen_gpu_scratch_bytes(gen *g, const ts_kernel_info *k);
/* The shared 8 bytes at the start of shared memory through which thread 0
 * hands a value to the block, as a memref of `t`. */
MlirValue gen_gpu_broadcast_slot(gen *g, MlirType t);
void gen_gpu_reduce(gen *g, ts_node *call);
void gen_gpu_gemm(gen *g, ts_node *call);

#endif
