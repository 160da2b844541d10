/* gpu_mma.c - which GEMMs of a kernel run on tensor cores in both GPU
 * lowerings (mma.sync m16n8k16 or, tf32, m16n8k8, s8 m16n8k32, sm_80 and up; wgmma on
 * sm_90a), and which register tiles
 * then hold their elements in the accumulator layout of that instruction
 * instead of the cyclic one (gen.h). Pure analysis of the typed AST and
 * the tile plan; cuda.c emits the code. */
#include "compiler/gen.h"

const ts_gpu_tile *ts_gpu_tile_of(const ts_gpu_tile *t, int nt, const ts_symbol *s) {
  for (int i = 0; i < nt; i++)
    if (t[i].decl->sym == s)
      return &t[i];
  return NULL;
}

/* A whole tile (a name) of the plan. */
static const ts_gpu_tile *whole_tile(const ts_gpu_tile *t, int nt,
                                     const ts_node *n) {
  if (!n || n->kind != TS_NODE_NAME || !n->sym || n->sym->kind != TS_SYM_TILE)
    return NULL;
  return ts_gpu_tile_of(t, nt, n->sym);
}

static bool const_dims2(const ts_type *t, int64_t *a, int64_t *b) {
  if (!t || t->rank != 2 || t->dims[0].term_count || t->dims[1].term_count)
    return false;
  *a = t->dims[0].c;
  *b = t->dims[1].c;
  return true;
}

/* Whether integer expression `e` is a multiple of p whatever it evaluates
 * to: a constant, a product with such a factor, a sum or difference of
 * such, or a `let` of one (`block_id(1) * CH`). */
static bool multiple_of(const ts_node *e, int64_t p, int depth) {
  if (!e || depth > 16)
    return false;
  if (e->cval.kind == TS_CONST_INT)
    return e->cval.i % p == 0;
  if (e->kind == TS_NODE_NAME && e->sym && e->sym->cval.kind == TS_CONST_INT)
    return e->sym->cval.i % p == 0;
  if (e->kind == TS_NODE_NAME && e->sym && e->sym->kind == TS_SYM_LET && e->sym->decl &&
      e->sym->decl->kid_count >= 2)
    return multiple_of(e->sym->decl->kids[1], p, depth + 1);
  if (e->kind != TS_NODE_BINARY || e->kid_count != 2)
    return false;
  if (e->op == TS_TOK_STAR)
    return multiple_of(e->kids[0], p, depth + 1) || multiple_of(e->kids[1], p, depth + 1);
  return (e->op == TS_TOK_PLUS || e->op == TS_TOK_MINUS) &&
         multiple_of(e->kids[0], p, depth + 1) && multiple_of(e->kids[1], p, depth + 1);
}

/* Whether slice `k` of a dim of extent `n` is all of it. */
static bool all_of(const ts_node *k, int64_t n) {
  return k->kind == TS_NODE_SLICE &&
         (!k->kids[0] || (k->kids[0]->cval.kind == TS_CONST_INT && k->kids[0]->cval.i == 0)) &&
         (!k->kids[1] || (k->kids[1]->cval.kind == TS_CONST_INT && k->kids[1]->cval.i == n));
}

bool ts_gemm_rotates(const ts_node *call, const ts_gpu_tile *tiles, int nt) {
  const ts_gpu_tile *c = ts_gpu_tile_of(tiles, nt, call->kids[2]->sym);
  return !ts_call_named_bool(call, "trans_a", false) &&
         ts_call_named_bool(call, "trans_b", false) &&
         c && c->home == TS_TILE_REGS && c->per_thread == 1;
}

const ts_symbol *ts_gemm_b(const ts_node *call, const ts_node **col0) {
  const ts_node *n = call->kids[1];
  *col0 = NULL;
  if (n->kind == TS_NODE_NAME)
    return n->sym && n->sym->kind == TS_SYM_TILE ? n->sym : NULL;
  const ts_symbol *t = n->kind == TS_NODE_INDEX && n->kid_count == 3 &&
                               n->kids[0]->kind == TS_NODE_NAME
                           ? n->kids[0]->sym
                           : NULL;
  int64_t r, c, w, rows;
  if (!t || t->kind != TS_SYM_TILE || ts_call_named_bool(call, "trans_b", false) ||
      !const_dims2(t->type, &r, &c) || !const_dims2(n->type, &rows, &w) || rows != r)
    return NULL;
  int64_t eb = ts_dtype_bits(t->type->dtype) / 8, p = eb ? 128 / eb : 0;
  const ts_node *cols = n->kids[2];
  if (eb != 2 || c * eb <= 128 || (c * eb) % 128 || w % p || !all_of(n->kids[1], r) ||
      cols->kind != TS_NODE_SLICE || !cols->kids[0] || !multiple_of(cols->kids[0], p, 0))
    return NULL;
  *col0 = cols->kids[0];
  return t;
}

/* Why gemm `call` cannot run as mma.sync (NULL: it can; mnk set): ts_mma_gemm's conditions. */
static const char *mma_why(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                           const ts_node *call, int64_t mnk[3]) {
  if (!call || call->kind != TS_NODE_CALL || call->builtin != TS_BUILTIN_GEMM ||
      call->kid_count < 3)
    return "not a gemm";
  if (k->threads % 32 != 0)
    return "the block is not whole warps";
  const ts_node *col0;
  const ts_symbol *sb = ts_gemm_b(call, &col0);
  const ts_gpu_tile *a = whole_tile(tiles, nt, call->kids[0]);
  const ts_gpu_tile *b = sb ? ts_gpu_tile_of(tiles, nt, sb) : NULL;
  const ts_gpu_tile *c = whole_tile(tiles, nt, call->kids[2]);
  if (!a || !b || !c)
    return "an operand is not a whole tile (B: or whole 128-byte panels of its columns)";
  if (a->home == TS_TILE_REGS || b->home == TS_TILE_REGS)
    return "A or B is in registers (tensor cores read them from shared memory)";
  /* B's shape: the tile's, or its columns' */
  const ts_type *ta = a->decl->sym->type, *tb = col0 ? call->kids[1]->type : sb->type,
                *tc = c->decl->sym->type;
  /* f32 operands with tf32=true: A K-major and B transposed, both
   * declared `shared` (placed there whatever else fits: ldmatrix and wgmma
   * read them as 16-byte rows along K) */
  bool tf32 = ta->dtype == TS_DTYPE_F32 && ts_call_named_bool(call, "tf32", false);
  /* i8 operands into i32: exact integer products (m16n8k32 / m64nNk32
   * s8), K-major both like fp8 */
  bool s8 = ta->dtype == TS_DTYPE_I8;
  if (ta->dtype != tb->dtype ||
      (ta->dtype != TS_DTYPE_BF16 && ta->dtype != TS_DTYPE_F16 &&
       ta->dtype != TS_DTYPE_FP8E4M3 && !tf32 && !s8) ||
      tc->dtype != (s8 ? TS_DTYPE_I32 : TS_DTYPE_F32))
    return "operand types: tensor cores take bf16, f16, fp8e4m3 or i8 pairs, or f32 ones "
           "with tf32=true, into f32 (i8: into i32)";
  if (tf32 && (ta->scope != TS_SCOPE_SHARED || tb->scope != TS_SCOPE_SHARED ||
               ts_call_named_bool(call, "trans_a", false) ||
               !ts_call_named_bool(call, "trans_b", false)))
    return "tf32 needs A and B declared shared, A not transposed and B transposed";
  int64_t a0, a1, b0, b1, m, n;
  if (!const_dims2(ta, &a0, &a1) || !const_dims2(tb, &b0, &b1) ||
      !const_dims2(tc, &m, &n))
    return "a tile's shape is not constant";
  bool tra = ts_call_named_bool(call, "trans_a", false);
  bool trb = ts_call_named_bool(call, "trans_b", false);
  int64_t kk = tra ? a0 : a1;
  if ((tra ? a1 : a0) != m || (trb ? b0 : b1) != n || (trb ? b1 : b0) != kk)
    return "the tiles' shapes do not agree";
  if (m <= 0 || n <= 0 || kk <= 0 || m % 16 || n % 8 || kk % (tf32 ? 8 : 16))
    return tf32 ? "M, N, K are not multiples of 16, 8, 8" : "M, N, K are not multiples of 16, 8, 16";
  if (ts_dtype_bits(ta->dtype) == 8 && (kk % 32 || tra || !trb))
    return "8-bit operands need K % 32 == 0, A not transposed and B transposed";
  mnk[0] = m;
  mnk[1] = n;
  mnk[2] = kk;
  return NULL;
}

bool ts_mma_gemm(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                 const ts_node *call, int64_t mnk[3]) {
  return !mma_why(k, tiles, nt, call, mnk);
}

/* Whether every gemm under `n` has a constant 64-row accumulator (*any:
 * some gemm has one). */
static bool all_m64(const ts_node *n, bool *any) {
  if (!n)
    return true;
  if (n->kind == TS_NODE_CALL && n->builtin == TS_BUILTIN_GEMM) {
    const ts_type *c = n->kid_count >= 3 ? n->kids[2]->type : NULL;
    if (!c || c->rank != 2 || c->dims[0].term_count || c->dims[0].c != 64)
      return false;
    *any = true;
    return true;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && !all_m64(n->kids[i], any))
      return false;
  return true;
}

int ts_wgmma_nsplit(const ts_kernel_info *k) {
  bool any = false;
  if (k->threads % 128 || k->threads < 256 || !all_m64(k->node->kids[4], &any) || !any)
    return 1;
  return (int)(k->threads / 128);
}

int64_t ts_wgmma_xchg_bytes(const ts_kernel_info *k) {
  int ns = ts_wgmma_nsplit(k);
  return ns > 1 ? 2 * 64 * 4 * ns : 0; /* two buffers (gen.h) */
}

/* A tensor-core gemm of wgmma's shape: A K-major, B K-major (transposed)
 * or, 16-bit, MN-major (not transposed; fp8 is K-major only, which
 * ts_mma_gemm requires), whole warpgroups, M % (64 warpgroups) == 0,
 * N <= 256 (where its tiles live aside); or, the warpgroups splitting N
 * (ts_wgmma_nsplit), M 64 and each warpgroup's N / G columns at most 256
 * and a multiple of 8 (an MN-major B's, of whole 128-byte panels). */
static const char *wgmma_shape_why(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                                   const ts_node *call, int64_t mnk[3]) {
  const char *why = mma_why(k, tiles, nt, call, mnk);
  if (why)
    return why;
  if (k->threads % 128 != 0)
    return "the block is not whole warpgroups (128 threads)";
  if (ts_call_named_bool(call, "trans_a", false))
    return "A is transposed (wgmma reads A K-major)";
  int64_t ns = ts_wgmma_nsplit(k), groups = k->threads / 128, n = mnk[1] / ns;
  if (ns == 1)
    return mnk[0] % (64 * groups) ? "M is not a multiple of 64 a warpgroup"
           : mnk[1] > 256         ? "N is over 256"
                                  : NULL;
  if (mnk[1] % (8 * ns) || n > 256)
    return "the warpgroups' columns are not a multiple of 8 or are over 256";
  if (ts_call_named_bool(call, "trans_b", false))
    return NULL;
  const ts_node *col0;
  const ts_symbol *sb = ts_gemm_b(call, &col0);
  int64_t eb = ts_dtype_bits(sb->type->dtype) / 8, c = sb->type->dims[1].c;
  return (n * eb) % 128 == 0 && c * eb > 128 && (c * eb) % 128 == 0
             ? NULL
             : "an MN-major B split over warpgroups needs whole 128-byte panels";
}

static bool wgmma_shaped(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                         const ts_node *call, int64_t mnk[3]) {
  return !wgmma_shape_why(k, tiles, nt, call, mnk);
}

/* Why gemm `call` cannot run as wgmma on an sm_90a (NULL: it can):
 * ts_wgmma_gemm's conditions. */
static const char *wgmma_why(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                             const ts_node *call, int64_t mnk[3]) {
  const char *why = wgmma_shape_why(k, tiles, nt, call, mnk);
  if (why)
    return why;
  const ts_node *col0;
  const ts_gpu_tile *a = whole_tile(tiles, nt, call->kids[0]);
  const ts_gpu_tile *b = ts_gpu_tile_of(tiles, nt, ts_gemm_b(call, &col0));
  const ts_gpu_tile *c = whole_tile(tiles, nt, call->kids[2]);
  if (a->home != TS_TILE_SMEM || b->home != TS_TILE_SMEM || !a->swz || !b->swz ||
      (col0 && b->swz != 128))
    return "A or B is not a swizzled tile in shared memory (the plan could not place it)";
  return c->home == TS_TILE_REGS ? NULL : "C is not in registers (too big for them)";
}

bool ts_wgmma_gemm(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                   const ts_node *call, int64_t mnk[3]) {
  return !wgmma_why(k, tiles, nt, call, mnk);
}

const char *ts_gemm_form(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                         const uint8_t *layout, bool wgmma, const ts_node *call,
                         int64_t mnk[3], ts_gemm_kind *kind) {
  *kind = TS_GEMM_SCALAR;
  const char *why = mma_why(k, tiles, nt, call, mnk);
  if (why)
    return why;
  const ts_gpu_tile *c = whole_tile(tiles, nt, call->kids[2]);
  uint8_t lc = c->home == TS_TILE_REGS ? layout[c - tiles] : TS_ACC_MMA;
  const char *wwhy = wgmma ? wgmma_why(k, tiles, nt, call, mnk) : "not an sm_90a";
  if (!wwhy && lc == TS_ACC_WGMMA) {
    *kind = TS_GEMM_WGMMA;
    return NULL;
  }
  if (!wwhy) /* (ts_mma_layouts found a statement that C's layout cannot serve) */
    wwhy = "C's registers are not in wgmma's layout: a statement touches C in another";
  if (call->kids[0]->sym->type->dtype == TS_DTYPE_FP8E4M3)
    return wgmma ? wwhy : "fp8e4m3 operands run on tensor cores as wgmma only (sm_90a)";
  if (lc != TS_ACC_MMA)
    return "C's registers are not in mma.sync's layout: a statement touches C in another";
  *kind = TS_GEMM_MMA;
  return wwhy;
}

/* Off wgmma targets the K-major form takes the 128 registers (its mma.sync
 * layout fits them), an MN-major B's only in blocks of 256 threads or more:
 * at 128 ptxas spilled the attention's P V accumulator 236 bytes (it stays
 * in memory there), at 256 24 bytes, where the [64, 512] accumulator would
 * otherwise be in global scratch on sm_80 (read and written each KV block). */
static bool accumulates(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                        const ts_node *n, const ts_symbol *s, bool wgmma) {
  if (!n)
    return false;
  int64_t mnk[3];
  if (n->kind == TS_NODE_CALL && n->builtin == TS_BUILTIN_GEMM && n->kid_count >= 3 &&
      n->kids[2]->sym == s)
    return wgmma_shaped(k, tiles, nt, n, mnk) &&
           (wgmma || k->threads >= 256 || ts_call_named_bool(n, "trans_b", false));
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && accumulates(k, tiles, nt, n->kids[i], s, wgmma))
      return true;
  return false;
}

bool ts_mma_accumulator(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                        const ts_symbol *s, bool wgmma) {
  return accumulates(k, tiles, nt, k->node->kids[4], s, wgmma);
}

int ts_wgmma_kind(const ts_node *call) {
  ts_dtype dt = call->kids[0]->sym->type->dtype;
  int kind = dt == TS_DTYPE_F16       ? 1
             : dt == TS_DTYPE_FP8E4M3 ? 2
             : dt == TS_DTYPE_I8      ? 2 | TS_KIND_S8
             : dt == TS_DTYPE_F32     ? 3
                                      : 0;
  return kind | (ts_call_named_bool(call, "trans_b", false) ? 0 : 4);
}

void ts_wgmma_text(int kind, const char **dtype, const char **ty, const char **tail) {
  bool s8 = kind & TS_KIND_S8, mn = kind & 4;
  int k = kind & 3;
  *dtype = s8 ? "s32" : "f32";
  *ty = s8 ? "s8" : k == 3 ? "tf32" : k == 2 ? "e4m3" : k == 1 ? "f16" : "bf16";
  *tail = s8 ? "" : k >= 2 ? ", 1, 1" : mn ? ", 1, 1, 0, 1" : ", 1, 1, 0, 0";
}

int64_t ts_wgmma_start(const ts_symbol *s, int swz, int64_t k0, bool mn, int64_t *lbo) {
  int64_t R = s->type->dims[0].c, C = s->type->dims[1].c;
  int64_t eb = ts_dtype_bits(s->type->dtype) / 8, p = 128 / eb;
  bool one = C * eb == swz; /* one atom wide, no panels */
  *lbo = mn ? R * (one ? swz : 128) : 16;
  if (mn)
    return one ? k0 * C : k0 * p;
  return one ? k0 : k0 / p * (R * p) + k0 % p;
}

int64_t ts_wgmma_nstart(const ts_symbol *s, int swz, int64_t n0, bool mn) {
  int64_t R = s->type->dims[0].c, C = s->type->dims[1].c;
  int64_t eb = ts_dtype_bits(s->type->dtype) / 8;
  if (mn) /* whole panels of 128 / eb columns, R rows each */
    return n0 * R;
  return n0 * (C * eb == swz ? C : 128 / eb);
}

/* ---- swizzled operands --------------------------------------------------- */

/* Whether every gemm under `n` that mentions `s` reads it as a tensor-core
 * operand wgmma can take from a canonical tile: A K-major, B K-major
 * (transposed) or, on a wgmma target and in a wgmma-shaped gemm, MN-major
 * (not transposed; ts_mma_gemm admits that for 16-bit types only); and
 * some gemm does (*used). */
static bool canonical_only(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                           const ts_node *n, const ts_symbol *s, bool wgmma, bool *used) {
  if (!n)
    return true;
  if (n->kind == TS_NODE_CALL && n->builtin == TS_BUILTIN_GEMM && ts_node_mentions(n, s)) {
    int64_t mnk[3];
    if (!ts_mma_gemm(k, tiles, nt, n, mnk) || n->kids[2]->sym == s)
      return false;
    bool ka = n->kids[0]->sym == s && !ts_call_named_bool(n, "trans_a", false);
    /* an MN-major B only where wgmma will read it: an mma.sync reads it
     * element by element, and the swizzle would only cost there (some
     * columns of a tile, the attention's P V, are only ever read that
     * way: the tile keeps the swizzle its other reads want) */
    const ts_node *col0;
    bool isb = ts_gemm_b(n, &col0) == s;
    bool kb = isb && (ts_call_named_bool(n, "trans_b", false) || col0 ||
                      (wgmma && wgmma_shaped(k, tiles, nt, n, mnk)));
    if ((n->kids[0]->sym == s && !ka) || (isb && !kb))
      return false;
    *used = true;
    return true;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && !canonical_only(k, tiles, nt, n->kids[i], s, wgmma, used))
      return false;
  return true;
}

int ts_swizzle_bytes(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                     const ts_symbol *s, bool wgmma) {
  int64_t r, c;
  int bits = ts_dtype_bits(s->type->dtype);
  if (k->threads % 32 != 0 || !const_dims2(s->type, &r, &c) || (bits != 16 && bits != 8 && bits != 32) ||
      r <= 0 || r % 8)
    return 0;
  int64_t row = c * bits / 8;
  if (!(row == 32 || row == 64 || (row > 0 && row % 128 == 0)))
    return 0;
  bool used = false;
  if (!canonical_only(k, tiles, nt, k->node->kids[4], s, wgmma, &used) || !used)
    return 0;
  return row <= 128 ? (int)row : 128;
}

/* Whether `s` is, under `n`, a tensor-core gemm's accumulator. */
static bool mma_target(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                       const ts_node *n, const ts_symbol *s) {
  if (!n || n->kind == TS_NODE_PARALLEL)
    return false;
  int64_t mnk[3];
  if (n->kind == TS_NODE_EXPR_STMT && n->kids[0]->kind == TS_NODE_CALL &&
      n->kids[0]->builtin == TS_BUILTIN_GEMM)
    return n->kids[0]->kids[2]->sym == s && ts_mma_gemm(k, tiles, nt, n->kids[0], mnk);
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && mma_target(k, tiles, nt, n->kids[i], s))
      return true;
  return false;
}

int ts_pad_elems(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt, const ts_symbol *s) {
  int64_t r, c;
  const ts_gpu_tile *t = ts_gpu_tile_of(tiles, nt, s);
  if (!t || t->home == TS_TILE_REGS || t->pipe || t->swz || s->type->dtype != TS_DTYPE_F32 ||
      !const_dims2(s->type, &r, &c) || r < 8 || c <= 0 || c % 32)
    return 0;
  return mma_target(k, tiles, nt, k->node->kids[4], s) ? TS_PAD : 0;
}

/* ---- the accumulator layout -------------------------------------------- */

typedef struct walk {
  const ts_kernel_info *k;
  const ts_gpu_tile *tiles;
  int nt;
  uint8_t *mma;
  bool wgmma;
  bool changed;
} walk;

/* Register tiles mentioned under `n`: their plan indices into `out`. */
static void regs_in(walk *w, const ts_node *n, int *out, int *count) {
  if (!n)
    return;
  if (n->kind == TS_NODE_NAME && n->sym && n->sym->kind == TS_SYM_TILE) {
    for (int i = 0; i < w->nt; i++)
      if (w->tiles[i].decl->sym == n->sym && w->tiles[i].home == TS_TILE_REGS) {
        for (int j = 0; j < *count; j++)
          if (out[j] == i)
            return;
        if (*count < TS_GPU_MAX_TILES)
          out[(*count)++] = i;
      }
    return;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i))
      regs_in(w, n->kids[i], out, count);
}

static void drop(walk *w, int i) {
  if (w->mma[i]) {
    w->mma[i] = TS_ACC_CYCLIC;
    w->changed = true;
  }
}

static void drop_all(walk *w, const ts_node *n) {
  int r[TS_GPU_MAX_TILES], nr = 0;
  regs_in(w, n, r, &nr);
  for (int i = 0; i < nr; i++)
    drop(w, r[i]);
}

static bool same_dims(const ts_type *a, const ts_type *b) {
  return a->rank == 2 && b->rank == 2 &&
         ts_extent_equal(&a->dims[0], &b->dims[0]) &&
         ts_extent_equal(&a->dims[1], &b->dims[1]);
}

/* ---- the rows layout (gen.h TS_ACC_ROWS) ------------------------------- */

int64_t ts_rows_len(const ts_node *x, const ts_symbol *const *regs, const uint8_t *layout,
                    int nregs) {
  if (!x)
    return 0;
  if (x->kind == TS_NODE_NAME && x->sym && x->sym->kind == TS_SYM_TILE) {
    for (int i = 0; i < nregs; i++)
      if (regs[i] == x->sym && layout[i] == TS_ACC_ROWS)
        return x->sym->type->dims[0].c;
    return 0;
  }
  for (uint32_t i = 0; i < x->kid_count; i++) {
    int64_t m = ts_rows_len(x->kids[i], regs, layout, nregs);
    if (m)
      return m;
  }
  return 0;
}

/* The base symbol of an assignment's target (`t[i]` or `t`) when it is a
 * tile not in registers or a tensor: memory the statement writes. */
static const ts_symbol *memory_target(walk *w, const ts_node *a) {
  const ts_node *t = a->kids[0]->kind == TS_NODE_INDEX ? a->kids[0]->kids[0] : a->kids[0];
  if (t->kind != TS_NODE_NAME || !t->sym ||
      (t->sym->kind != TS_SYM_TILE && t->sym->kind != TS_SYM_TENSOR))
    return NULL;
  const ts_gpu_tile *p = ts_gpu_tile_of(w->tiles, w->nt, t->sym);
  return p && p->home == TS_TILE_REGS ? NULL : t->sym;
}

/* Whether `n` reads `s` (an assignment's own target does not count unless
 * it is a compound one). */
static bool reads(const ts_node *n, const ts_symbol *s) {
  if (!n)
    return false;
  if (n->kind == TS_NODE_ASSIGN) {
    const ts_node *t = n->kids[0];
    if (n->op != TS_TOK_ASSIGN && ts_node_mentions(t, s))
      return true;
    if (t->kind == TS_NODE_INDEX)
      for (uint32_t i = 1; i < t->kid_count; i++)
        if (ts_node_mentions(t->kids[i], s))
          return true;
    return reads(n->kids[1], s);
  }
  if (n->kind == TS_NODE_NAME)
    return n->sym == s;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && reads(n->kids[i], s))
      return true;
  return false;
}

/* A `parallel` over the rows layout runs every row on the quad's four
 * lanes: no atomic or print, and no memory it writes (from the first lane
 * only) read back. */
static bool rows_body(walk *w, const ts_node *body, const ts_node *n) {
  if (!n)
    return true;
  if (n->kind == TS_NODE_CALL &&
      (n->builtin == TS_BUILTIN_ATOMIC_ADD || n->builtin == TS_BUILTIN_ATOMIC_MAX ||
       n->builtin == TS_BUILTIN_PRINT || n->builtin == TS_BUILTIN_BARRIER))
    return false;
  const ts_symbol *m = n->kind == TS_NODE_ASSIGN ? memory_target(w, n) : NULL;
  if (m && reads(body, m))
    return false;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && !rows_body(w, body, n->kids[i]))
      return false;
  return true;
}

/* Whether statement `s` may touch the rows-layout tiles `rows` (all of one
 * length M); `first`: the other register tiles it touches when they share
 * one mma layout and shape, else -1; `others`: how many there are. */
static bool rows_ok(walk *w, const ts_node *s, const int *rows, int nrows, int first,
                    int others) {
  int64_t M = w->tiles[rows[0]].decl->sym->type->dims[0].c;
  for (int i = 1; i < nrows; i++)
    if (w->tiles[rows[i]].decl->sym->type->dims[0].c != M)
      return false;
  bool wg = first >= 0 && w->mma[first] == TS_ACC_WGMMA &&
            w->tiles[first].decl->sym->type->dims[0].c == M;
  if (s->kind == TS_NODE_PARALLEL) /* its own rows, or read beside wgmma's */
    return s->kids[0]->kid_count == 1 ? others == 0 && rows_body(w, s->kids[2], s->kids[2])
                                      : wg;
  const ts_node *call = s->kind == TS_NODE_EXPR_STMT ? s->kids[0] : NULL;
  if (!call || call->kind != TS_NODE_CALL)
    return false;
  switch (call->builtin) {
  case TS_BUILTIN_REDUCE_MAX:
  case TS_BUILTIN_REDUCE_SUM:
  case TS_BUILTIN_REDUCE_ABSMAX: /* of a wgmma tile, from all four lanes */
    return wg && others == 1 && nrows == 1;
  case TS_BUILTIN_COPY:
  case TS_BUILTIN_FILL:
  case TS_BUILTIN_CLEAR: return others == 0;
  default: return false;
  }
}

/* One block-level statement: the register tiles it touches must be all in
 * the mma layout with one shape, or none; a gemm touching one must be a
 * tensor-core gemm with it as the accumulator. Tiles in the rows layout
 * follow rows_ok. */
static void statement(walk *w, const ts_node *s) {
  if (!s)
    return;
  switch (s->kind) {
  case TS_NODE_BLOCK:
    for (uint32_t i = 0; i < s->kid_count; i++)
      statement(w, s->kids[i]);
    return;
  case TS_NODE_FOR:
    drop_all(w, s->kids[0]);
    drop_all(w, s->kids[1]);
    statement(w, s->kids[2]);
    return;
  case TS_NODE_PIPELINED:
    drop_all(w, s->kids[0]);
    drop_all(w, s->kids[1]);
    drop_all(w, s->kids[2]);
    statement(w, s->kids[3]);
    return;
  case TS_NODE_IF:
    drop_all(w, s->kids[0]);
    for (uint32_t i = 1; i < 3; i++)
      if (!ts_if_dead_kid(s, i))
        statement(w, s->kids[i]);
    return;
  case TS_NODE_TILE: return;
  default: break;
  }
  int r[TS_GPU_MAX_TILES], nr = 0, rows[TS_GPU_MAX_TILES], nrows = 0;
  regs_in(w, s, r, &nr);
  for (int i = 0; i < nr; i++)
    if (w->mma[r[i]] == TS_ACC_ROWS)
      rows[nrows++] = r[i];
  for (int i = 0, j = 0; i < nr; i++)
    if (w->mma[r[i]] != TS_ACC_ROWS)
      r[j++] = r[i];
  nr -= nrows;
  int first = -1;
  bool mixed = false;
  for (int i = 0; i < nr; i++) {
    if (!w->mma[r[i]]) {
      mixed = true;
      continue;
    }
    if (first < 0)
      first = r[i];
    else if (!same_dims(w->tiles[first].decl->sym->type,
                        w->tiles[r[i]].decl->sym->type) ||
             w->mma[first] != w->mma[r[i]])
      mixed = true;
  }
  if (nrows && !rows_ok(w, s, rows, nrows, mixed ? -1 : first, nr))
    for (int i = 0; i < nrows; i++)
      drop(w, rows[i]);
  if (first < 0)
    return;
  int64_t mnk[3];
  const ts_node *call = s->kind == TS_NODE_EXPR_STMT ? s->kids[0] : NULL;
  bool gemm = call && call->kind == TS_NODE_CALL &&
              call->builtin == TS_BUILTIN_GEMM;
  if (gemm && !ts_mma_gemm(w->k, w->tiles, w->nt, call, mnk))
    mixed = true;
  /* fp8 has no mma.sync path */
  if (gemm && !mixed && w->mma[first] == TS_ACC_MMA &&
      call->kids[0]->sym && call->kids[0]->sym->type->dtype == TS_DTYPE_FP8E4M3)
    mixed = true;
  /* a wgmma accumulator only from wgmma gemms */
  if (gemm && !mixed && w->mma[first] == TS_ACC_WGMMA &&
      !(w->wgmma && ts_wgmma_gemm(w->k, w->tiles, w->nt, call, mnk)))
    mixed = true;
  /* a reduction reads its source across threads: only along the rows of
   * a whole tile in wgmma's layout (a row is one quad's registers) into a
   * tile not in registers (gen_gpu.c) */
  if (call && call->kind == TS_NODE_CALL &&
      (call->builtin == TS_BUILTIN_REDUCE_MAX ||
       call->builtin == TS_BUILTIN_REDUCE_SUM ||
       call->builtin == TS_BUILTIN_REDUCE_ABSMAX)) {
    const ts_node *d = ts_call_named(call, "dim");
    if (w->mma[first] != TS_ACC_WGMMA || nr != 1 || call->kids[0]->kind != TS_NODE_NAME ||
        call->kids[0]->sym != w->tiles[first].decl->sym || !d ||
        d->cval.kind != TS_CONST_INT || d->cval.i != 1)
      mixed = true;
  }
  if (s->kind == TS_NODE_PARALLEL && s->kids[0]->kid_count != 2)
    mixed = true;
  if (mixed)
    for (int i = 0; i < nr; i++)
      drop(w, r[i]);
}

/* The candidates: accumulators of tensor-core gemms at block level. */
static void candidates(walk *w, const ts_node *s) {
  if (!s || s->kind == TS_NODE_PARALLEL)
    return;
  if (s->kind == TS_NODE_EXPR_STMT) {
    int64_t mnk[3];
    const ts_node *call = s->kids[0];
    if (ts_mma_gemm(w->k, w->tiles, w->nt, call, mnk)) {
      uint8_t want = w->wgmma && ts_wgmma_gemm(w->k, w->tiles, w->nt, call, mnk)
                         ? TS_ACC_WGMMA
                         : TS_ACC_MMA;
      if (want == TS_ACC_MMA && call->kids[0]->sym->type->dtype == TS_DTYPE_FP8E4M3)
        return; /* fp8: wgmma or the scalar gemm */
      for (int i = 0; i < w->nt; i++)
        if (w->tiles[i].decl->sym == call->kids[2]->sym &&
            w->tiles[i].home == TS_TILE_REGS)
          /* an accumulator of gemms of both kinds takes mma.sync's */
          w->mma[i] = w->mma[i] && w->mma[i] != want ? TS_ACC_MMA : want;
    }
    return;
  }
  for (uint32_t i = 0; i < s->kid_count; i++)
    if (!ts_if_dead_kid(s, i))
      candidates(w, s->kids[i]);
}

/* Register tiles a statement touches with an accumulator in an mma layout
 * take that layout too when they have its shape (a `parallel` that adds a
 * gemm's result into another tile, as fp8's per-block scaling does); the
 * fixpoint below drops whatever then does not hold. */
static void followers(walk *w, const ts_node *s) {
  if (!s)
    return;
  if (s->kind == TS_NODE_BLOCK || s->kind == TS_NODE_FOR || s->kind == TS_NODE_PIPELINED ||
      s->kind == TS_NODE_IF) {
    for (uint32_t i = 0; i < s->kid_count; i++)
      if (!ts_if_dead_kid(s, i))
        followers(w, s->kids[i]);
    return;
  }
  if (s->kind != TS_NODE_PARALLEL && s->kind != TS_NODE_EXPR_STMT)
    return;
  int r[TS_GPU_MAX_TILES], nr = 0, lead = -1;
  regs_in(w, s, r, &nr);
  for (int i = 0; i < nr && lead < 0; i++)
    if (w->mma[r[i]] && w->mma[r[i]] != TS_ACC_ROWS)
      lead = r[i];
  for (int i = 0; lead >= 0 && i < nr; i++)
    if (!w->mma[r[i]] && same_dims(w->tiles[lead].decl->sym->type,
                                   w->tiles[r[i]].decl->sym->type)) {
      w->mma[r[i]] = w->mma[lead];
      w->changed = true;
    }
}

void ts_mma_layouts(const ts_kernel_info *k, const ts_gpu_tile *tiles, int nt,
                    bool wgmma, uint8_t *mma) {
  walk w = {k, tiles, nt, mma, wgmma, false};
  for (int i = 0; i < nt; i++)
    mma[i] = TS_ACC_CYCLIC;
  if (k->threads % 32 != 0)
    return;
  candidates(&w, k->node->kids[4]);
  for (int i = 0; wgmma && k->threads % 128 == 0 && i < nt; i++) {
    const ts_type *t = tiles[i].decl->sym->type;
    if (tiles[i].rows && tiles[i].home == TS_TILE_REGS && t->rank == 1 &&
        !t->dims[0].term_count && t->dims[0].c > 0 &&
        t->dims[0].c % (k->threads / 2 / ts_wgmma_nsplit(k)) == 0)
      mma[i] = TS_ACC_ROWS;
  }
  do {
    w.changed = false;
    followers(&w, k->node->kids[4]);
  } while (w.changed);
  do {
    w.changed = false;
    statement(&w, k->node->kids[4]);
  } while (w.changed);
}
