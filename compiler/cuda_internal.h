/* cuda_internal.h - private to compiler/cuda*.c: the CUDA C generator's
 * state, views of tensors and tiles, and the helpers the tensor-core and
 * pipelining code (cuda_tc.c) shares with cuda.c. */
#ifndef TS_COMPILER_CUDA_INTERNAL_H
#define TS_COMPILER_CUDA_INTERNAL_H

#include "compiler/gen.h"

typedef enum { CT_F32, CT_I32, CT_I64, CT_BOOL } ctype;

typedef struct cg {
  ts_buf *o;
  ts_unit *u;
  ts_diags *d;
  const ts_kernel_info *k;
  int ind;
  int par;      /* depth of parallel statements (helpers count as one) */
  bool single;  /* inside a thread-0 statement */
  bool synced;  /* the last statement ended with a barrier */
  ts_node *folded[8]; /* clears left to the next pipelined loop */
  int nfolded;
  bool fence_next;  /* the next statement is a wgmma gemm: barriers emitted
                     * now fence the async proxy first */
  size_t fenced_at; /* the output's length after the last such barrier */
  bool failed;
  int64_t ns;      /* warpgroups splitting wgmma's columns (gen.h ts_wgmma_nsplit) */
  int64_t threads;
  int tmp;
  ctype fn_result; /* in a helper */
  const ts_symbol *regs[TS_GPU_MAX_TILES]; /* frag tiles in registers */
  uint8_t mma[TS_GPU_MAX_TILES]; /* regs[i]'s layout: TS_ACC_* (gen.h) */
  bool wgmma;      /* the architecture has wgmma (sm_90a) */
  const char *arch; /* its name (the tile plan's) */
  bool uses_wgmma; /* the kernel being built issues it */
  int nregs;
  const ts_gpu_tile *tiles; /* the plan */
  int ntiles;
  ts_tma tma[TS_TMA_MAX]; /* the kernel's TMA copies (gen.h ts_tma): its
                           * maps are parameters ts_tm0.., flag ts_tma_on */
  int ntma;
  int64_t bar_at;          /* ts_smem offset of the next ring's mbarriers */
  int in_ring;             /* depth of ring bodies being lowered */
  const char *mma_reg; /* in an mma-layout loop: the register index */
  const char *rows_reg; /* ... and of a vector in wgmma's rows (TS_ACC_ROWS) */
  bool rows_lead;      /* in a loop over such a vector's rows: stores to
                        * memory from the quad's first lane only */
  ts_node *at;         /* the statement being lowered */
  char **strs; /* strings to free at the end */
  size_t nstrs, capstrs;
} cg;

enum { SUB_INDEX, SUB_SLICE, SUB_GATHER };

typedef struct cview cview;
struct cview {
  const char *base; /* the pointer */
  ts_dtype dt;
  uint32_t rank;
  const char *dims[TS_MAX_RANK];
  struct {
    int kind;
    const char *start;
    uint32_t vdim;
    cview *gather;
  } sub[TS_MAX_RANK];
  uint32_t vrank;
  const char *vext[TS_MAX_RANK];
  bool in_range;
  bool regs; /* in registers: element e at [e / threads] of its owner */
  bool mma;  /* ... in the mma layout: at the loop's register (gen.h) */
  bool rows; /* ... a vector in wgmma's rows: at c->rows_reg */
  int swz;   /* a swizzled shared tile [swz_r, swz_c] (gen.h) */
  int64_t swz_r, swz_c;
  int pad;   /* a padded shared tile: elements after each row (gen.h) */
};

/* output: one line of code at the current indent; a formatted string kept
 * until the unit is done */
void cu_line(cg *c, const char *fmt, ...) TS_PRINTF(2, 3);
const char *cu_str(cg *c, const char *fmt, ...) TS_PRINTF(2, 3);
void cu_unsupported(cg *c, ts_node *n, const char *what);
const char *cu_name_of(cg *c, const char *prefix, ts_str n);
const char *cu_var_name(cg *c, const ts_symbol *s);
const char *cu_tile_name(cg *c, const ts_symbol *s);
const char *cu_storage_c(ts_dtype dt);
ctype cu_compute_of(ts_dtype dt);
const char *cu_expr_as(cg *c, ts_node *n, ctype want);
/* views: a tensor or tile, sliced, indexed or gathered */
bool cu_view_of(cg *c, ts_node *n, cview *v, cview *pool, int *np);
void cu_view_elem(cg *c, cview *v, const char *const *k, const char **lin,
                  const char **ok);
const char *cu_view_load(cg *c, cview *v, const char *const *k);
void cu_view_store(cg *c, cview *v, const char *const *k, const char *x,
                   ctype t);
/* statements */
bool cu_gpu_single(cg *c);
void cu_each_begin(cg *c, const char *const *ext, uint32_t rank, bool dist, bool partial,
                   const char **k);
void cu_each_end(cg *c);
void cu_tile_copy(cg *c, ts_node *call, bool dist);
void cu_block(cg *c, ts_node *b);
void cu_stmt(cg *c, ts_node *n);
void cu_barrier(cg *c);

/* cuda_tc.c: tensor cores (mma.sync) and pipelined loops (cp.async) */
void cu_loop_begin(cg *c, const ts_node *stmt, const char *const *ext,
                   uint32_t rank, bool dist, const char **k);
void cu_loop_end(cg *c, bool dist); /* dist: as cu_loop_begin's */
void cu_tile_gemm_mma(cg *c, ts_node *call, const int64_t *mnk);
/* Whether gemm `call` runs as wgmma with its accumulator in registers (mnk:
 * its shape); that gemm, with `async` (a pipelined loop's gemm) its group
 * left in flight and its operands already made visible by the loop, and
 * with `first` (a C condition) the loop's first iteration, whose first k
 * step ignores the old accumulators. */
bool cu_wgmma_call(cg *c, const ts_node *call, int64_t mnk[3]);
/* The layout (gen.h TS_ACC_*) of register tile `s`; TS_ACC_CYCLIC for a
 * tile not in registers too. */
int cu_layout_of(cg *c, const ts_symbol *s);
/* reduce_*(s, d, dim=1) of a register tile `s` in wgmma's layout: a row is
 * one quad's registers (two shuffles); false when `s` is not such a tile. */
bool cu_wgmma_row_reduce(cg *c, ts_node *call);
void cu_tile_wgmma(cg *c, ts_node *call, const int64_t *mnk, bool async, const char *first);
/* The swizzle of tile `s` in the plan (its atom's row bytes) or 0, with its
 * shape in r, c. */
int cu_swizzle_of(cg *c, const ts_symbol *s, int64_t *r, int64_t *cols);
/* A padded shared tile's row padding, or 0 (gen.h ts_pad_elems). */
int cu_pad_of(cg *c, const ts_symbol *s);
bool cu_pipelined(cg *c, ts_node *n);
/* A copy outside a ring by cp.async (gen.h ts_copy_async_ok), waited for
 * at once; false (nothing emitted) when it does not qualify. */
bool cu_copy_async(cg *c, ts_node *call, bool dist);
/* What statement i of `blk` owes the statements after it: before a wgmma
 * gemm, its barriers fence the async proxy (so the gemm needs no barrier of
 * its own); true: it is a clear the pipelined loop after it takes over
 * (gen.h ts_pipe_clear_folds), left to that loop. */
bool cu_ahead(cg *c, ts_node *blk, uint32_t i);

#endif
