/* gen_tile.c - the tile ops (copy, fill, clear, gemm, reductions) as loops
 * over views, and the CPU's f32 GEMM micro-kernels in the vector dialect
 * (the i8 one on AVX-512 VNNI: gen_vnni.c; bf16 on AVX-512 BF16:
 * gen_bf16.c). The ABI and the out-of-range
 * rules are described in gen.c. */
#include "compiler/gen_internal.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <pthread.h>
#include <string.h>

/* ---- the host CPU's features (the JIT's target) -------------------------- */

/* AVX-512 VNNI: vpdpbusd adds four u8 x s8 products a 32-bit lane, 64 a
 * 512-bit instruction. VBMI: vpermi2b looks up 64 bytes a step in a
 * 128-byte table (the FP8 decode of gen_packed.c gen_fp8_row). BF16:
 * vdpbf16ps adds two bf16 products a f32 lane (gen_bf16.c). */
static bool host_avx512, host_vnni, host_vbmi, host_bf16;

/* Whether LLVM's feature string f ("+a,-b,...") turns feature name on. */
static bool has_feature(const char *f, const char *name) {
  size_t n = strlen(name);
  for (const char *p = f; p && (p = strstr(p, name)) != NULL; p += n)
    if (p > f && p[-1] == '+' && (p[n] == ',' || p[n] == '\0'))
      return true;
  return false;
}

static void probe_host_once(void) {
  char *f = LLVMGetHostCPUFeatures();
  host_avx512 = has_feature(f, "avx512f") && has_feature(f, "avx512bw");
  host_vnni = host_avx512 && has_feature(f, "avx512vnni");
  host_vbmi = host_avx512 && has_feature(f, "avx512vbmi");
  host_bf16 = host_avx512 && has_feature(f, "avx512bf16");
  LLVMDisposeMessage(f);
}

static void probe_host(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, probe_host_once);
}

bool gen_host_avx512(void) {
  probe_host();
  return host_avx512;
}

bool gen_host_vbmi(void) {
  probe_host();
  return host_vbmi;
}

bool gen_host_vnni(void) {
  probe_host();
  return host_vnni;
}

bool gen_host_bf16(void) {
  probe_host();
  return host_bf16;
}

/* ---- tile operations ----------------------------------------------------- */

static MlirValue clamp64(gen *g, MlirValue v, MlirValue lo, MlirValue hi) {
  return mb_bin(&g->b, "arith.minsi", mb_bin(&g->b, "arith.maxsi", v, lo), hi);
}

/* Of the row of view gv at view indices k (k[outer], its last, ignored;
 * the view's last dim a slice): the linear index of its first element (lin,
 * when asked) and the range [lo, hi) of its last dim's indices 0..ext that
 * lie inside the tensor (empty when the row does not). */
void gen_row_range(gen *g, view *gv, MlirValue *k, uint32_t outer, MlirValue ext,
                   MlirValue *lin, MlirValue *lo, MlirValue *hi) {
  mb *b = &g->b;
  uint32_t last = gv->rank - 1;
  MlirValue zero = gen_i64(g, 0), at, row_ok;
  k[outer] = zero;
  gv->skip_dim = (int)last; /* is the row inside (every dim but the last)? */
  gen_view_elem(g, gv, k, &at, &row_ok);
  gv->skip_dim = -1;
  if (lin)
    *lin = at;
  MlirValue start = gv->sub[last].start;
  MlirValue l = clamp64(g, mb_bin(b, "arith.subi", zero, start), zero, ext);
  MlirValue h = clamp64(g, mb_bin(b, "arith.subi", gv->dims[last], start), l, ext);
  *lo = mb_select(b, row_ok, l, zero);
  *hi = mb_select(b, row_ok, h, zero);
}

/* copy between a whole tile and a slice of a tensor whose last dim is a
 * plain slice: the tail is predicated by the inner loop's bounds, not per
 * element, so the inner loop runs unchecked over contiguous memory (and
 * vectorises); the rest of a tile row is zero-filled. */
static bool copy_rows(gen *g, view *src, view *dst) {
  view *gv = src->in_range ? dst : src;
  view *tv = src->in_range ? src : dst;
  uint32_t last = gv->rank - 1;
  if (!tv->in_range || gv->in_range || dst->vrank == 0 ||
      gv->sub[last].kind != SUB_SLICE || gv->sub[last].vdim != dst->vrank - 1)
    return false;
  mb *b = &g->b;
  uint32_t outer = dst->vrank - 1;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK];
  gen_loops_begin(g, L, dst->vext, outer, k);
  MlirValue ext = dst->vext[outer], zero = gen_i64(g, 0);
  MlirValue lo, hi;
  gen_row_range(g, gv, k, outer, ext, NULL, &lo, &hi);
  loop in;
  gen_loop_begin(g, &in, lo, hi);
  k[outer] = in.iv;
  gv->unchecked = true;
  MlirValue x;
  gen_view_load(g, src, k, &x);
  gen_view_store(g, dst, k, gen_convert(g, x, gen_compute_type(g, dst->dt)));
  gv->unchecked = false;
  gen_loop_end(g, &in);
  if (dst == tv) { /* zero the parts of the tile row outside the tensor */
    MlirType t = gen_compute_type(g, dst->dt);
    MlirValue z =
        gen_is_float(g, t) ? mb_const_f32(b, 0.0) : mb_const_int(b, t, 0);
    MlirValue ranges[2][2] = {{zero, lo}, {hi, ext}};
    for (int r = 0; r < 2; r++) {
      loop zl;
      gen_loop_begin(g, &zl, ranges[r][0], ranges[r][1]);
      k[outer] = zl.iv;
      gen_view_store(g, dst, k, z);
      gen_loop_end(g, &zl);
    }
  }
  gen_loops_end(g, L, outer);
  return true;
}

static void prefetch_next(gen *g, const ts_node *call, const view *src);

void gen_copy(gen *g, ts_node *call) {
  view pool[16], src, dst;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &src, pool, &np) ||
      !gen_view_of(g, call->kids[1], &dst, pool, &np))
    return;
  if (ts_copy_packed(call)) {
    gen_copy_packed(g, call, &src, &dst);
    return;
  }
  prefetch_next(g, call, &src);
  /* the row forms run whole rows in one thread: the CPU's */
  if (!g->gpu && (gen_copy_fp8_rows(g, &src, &dst) || copy_rows(g, &src, &dst)))
    return;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK];
  gen_elem_begin(g, L, call, dst.vext, dst.vrank, k);
  MlirValue x;
  gen_view_load(g, &src, k, &x);
  gen_view_store(g, &dst, k, gen_convert(g, x, gen_compute_type(g, dst.dt)));
  gen_elem_end(g, L, dst.vrank);
}

void gen_fill(gen *g, ts_node *call, bool clear) {
  view pool[8], dst;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &dst, pool, &np))
    return;
  MlirType t = gen_compute_type(g, dst.dt);
  MlirValue v = clear ? (gen_is_float(g, t) ? mb_const_f32(&g->b, 0.0)
                                            : mb_const_int(&g->b, t, 0))
                      : gen_expr_as(g, call->kids[1], t);
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK];
  gen_elem_begin(g, L, call, dst.vext, dst.vrank, k);
  gen_view_store(g, &dst, k, v);
  gen_elem_end(g, L, dst.vrank);
}

MlirValue gen_reduce_init(gen *g, ts_builtin op, MlirType t) {
  mb *b = &g->b;
  bool f = gen_is_float(g, t);
  if (op == TS_BUILTIN_REDUCE_MAX)
    return f ? mb_const_f32(b, -__builtin_inf())
             : mb_const_int(b, t,
                            gen_int_width(t) == 32 ? INT32_MIN : INT64_MIN);
  return f ? mb_const_f32(b, 0.0) : mb_const_int(b, t, 0);
}

/* c (+)= a · b. Accumulates in the compute type of c, with a*b+c allowed to
 * fuse (FMA). Two schedules:
 *  - b transposed (a not): c[i, j] = sum_k a[i, k] b[j, k], a dot product
 *    over contiguous rows, its sum reassociated so that it vectorises;
 *  - otherwise i, k, j with R rows of a held at once (R = 4 when M allows):
 *    each b[k, :] row loaded once feeds R rows of c, and the j loop runs
 *    over contiguous rows of b and c. */
/* The constant extent of dim d of a whole tile operand, or -1. */
int64_t gen_const_dim(ts_node *n, uint32_t d) {
  const ts_type *t = n->type;
  if (n->kind != TS_NODE_NAME || !t || t->kind != TS_TYPE_TILE ||
      d >= t->rank || t->dims[d].term_count)
    return -1;
  return t->dims[d].c;
}

void gen_ukernel_begin(gen *g, gen_ukernel *u, int64_t lanes, int nslots, int64_t M, int64_t N,
                          int64_t bm, int64_t bn) {
  mb *b = &g->b;
  int64_t shape[1] = {lanes};
  u->vt = mlirVectorTypeGet(1, shape, b->f32);
  u->slots = mb_alloca_entry(b, u->vt, nslots);
  u->zero = mb_op1(b, "vector.broadcast", 1, (MlirValue[]){mb_const_f32(b, 0.0)}, u->vt);
  gen_loop_begin(g, &u->li, gen_i64(g, 0), gen_i64(g, M / bm));
  u->i0 = mb_bin(b, "arith.muli", u->li.iv, gen_i64(g, bm));
  gen_loop_begin(g, &u->lj, gen_i64(g, 0), gen_i64(g, N / bn));
  u->j0 = mb_bin(b, "arith.muli", u->lj.iv, gen_i64(g, bn));
}

void gen_ukernel_end(gen *g, gen_ukernel *u) {
  gen_loop_end(g, &u->lj);
  gen_loop_end(g, &u->li);
}

/* The register-blocked f32 micro-kernel, in the vector dialect: for R = 4
 * rows of c and VW columns at a time, the accumulators stay in vector
 * registers for the whole k loop; each k loads one row piece of b and
 * broadcasts R elements of a. Needs whole f32 tiles with constant shapes,
 * b not transposed, M % 4 == 0 and N % VW == 0. Returns false (nothing
 * emitted) when they do not hold. */
static bool gemm_vector(gen *g, ts_node *call, view *A, view *B, view *C,
                        bool ta, bool tb, bool acc) {
  mb *b = &g->b;
  ts_node *na = call->kids[0], *nb = call->kids[1], *nc = call->kids[2];
  if (tb || A->dt != TS_DTYPE_F32 || B->dt != TS_DTYPE_F32 ||
      C->dt != TS_DTYPE_F32 || !A->in_range || !B->in_range || !C->in_range)
    return false;
  int64_t M = gen_const_dim(nc, 0), N = gen_const_dim(nc, 1);
  int64_t K = gen_const_dim(na, ta ? 0 : 1);
  if (M <= 0 || N <= 0 || K <= 0 || M % 4 || gen_const_dim(nb, 1) != N)
    return false;
  int64_t VW = N % 32 == 0 ? 32 : N % 16 == 0 ? 16 : N % 8 == 0 ? 8 : 0;
  if (!VW)
    return false;
  enum { R = 4 };
  gen_ukernel u;
  gen_ukernel_begin(g, &u, VW, R, M, N, R, VW);
  MlirType vt = u.vt;
  MlirValue slots = u.slots, zero = u.zero, i0 = u.i0, j0 = u.j0;
  loop lk;
  MlirValue cidx[R];
  for (int r = 0; r < R; r++) {
    MlirValue row = mb_bin(b, "arith.addi", i0, gen_i64(g, r));
    cidx[r] = mb_bin(b, "arith.addi",
                     mb_bin(b, "arith.muli", row, gen_i64(g, N)), j0);
    MlirValue init = zero;
    if (acc) {
      MlirValue ops[2] = {C->mem,
                          mb_cast(b, "arith.index_cast", cidx[r], b->index)};
      init = mb_op1(b, "vector.load", 2, ops, vt);
    }
    mb_store(b, init, slots, gen_i64(g, r));
  }
  gen_loop_begin(g, &lk, gen_i64(g, 0), gen_i64(g, K));
  MlirValue bops[2] = {
      B->mem, mb_cast(b, "arith.index_cast",
                      mb_bin(b, "arith.addi",
                             mb_bin(b, "arith.muli", lk.iv, gen_i64(g, N)), j0),
                      b->index)};
  MlirValue bv = mb_op1(b, "vector.load", 2, bops, vt);
  for (int r = 0; r < R; r++) {
    MlirValue row = mb_bin(b, "arith.addi", i0, gen_i64(g, r));
    MlirValue aidx =
        ta ? mb_bin(b, "arith.addi",
                    mb_bin(b, "arith.muli", lk.iv, gen_i64(g, M)), row)
           : mb_bin(b, "arith.addi",
                    mb_bin(b, "arith.muli", row, gen_i64(g, K)), lk.iv);
    MlirValue a = mb_load(b, A->mem, aidx);
    MlirValue av = mb_op1(b, "vector.broadcast", 1, &a, vt);
    MlirValue fops[3] = {av, bv, mb_load(b, slots, gen_i64(g, r))};
    mb_store(b, mb_op1(b, "vector.fma", 3, fops, vt), slots, gen_i64(g, r));
  }
  gen_loop_end(g, &lk);
  for (int r = 0; r < R; r++) {
    MlirValue ops[3] = {mb_load(b, slots, gen_i64(g, r)), C->mem,
                        mb_cast(b, "arith.index_cast", cidx[r], b->index)};
    mb_op(b, "vector.store", 3, ops, 0, NULL, 0, NULL);
  }
  gen_ukernel_end(g, &u);
  return true;
}

/* The transposed-b f32 micro-kernel: c[i, j] = sum_k a[i, k] b[j, k] for
 * RA x RB elements of c at a time (RA * RB <= 16), each with DOT_VW lanes of
 * k in a vector register across the k loop: a step loads RA rows of a and RB
 * of b (contiguous pieces) for RA * RB FMAs. The lanes are then summed by a
 * halving tree (lane l plus lane l + w/2, for w = 8, 4, 2) that packs two
 * vectors' halves into one at each level, so RA * RB sums take about
 * RA * RB / 8 * 3 shuffles and adds a level rather than a reduction each.
 * An element's sum depends on K alone, not on the tile shape or on where
 * it sits in the block: a row of c gets the same bits at any M or N (the
 * model's decode step and its prefill agree). Needs whole f32 tiles with
 * constant shapes, a not transposed and K % DOT_VW == 0. */
enum { DOT_VW = 8, DOT_MAX = 16 };

MlirValue gen_vec_shuffle(mb *b, MlirValue x, MlirValue y, const int64_t *mask,
                             intptr_t n, MlirType vt) {
  MlirNamedAttribute a = mb_attr(b, "mask", mlirDenseI64ArrayGet(b->ctx, n, mask));
  MlirValue ops[2] = {x, y};
  return mlirOperationGetResult(mb_op(b, "vector.shuffle", 2, ops, 1, &vt, 1, &a), 0);
}

/* The lanes of v[0..n) (vectors of type vt, W lanes, W a power of two up
 * to 16) summed by a halving tree, acc[q][s] holding which element of the
 * block segment s of vector q is (-1: none; one segment of W lanes at the
 * start). Each level adds lane l + w/2 of each w-lane segment to lane l and
 * packs two vectors' halves into one. On return v[0..*n) hold one sum a
 * lane, lane l of v[q] the sum of element acc[q][l]. */
static void dot_tree(mb *b, MlirType vt, int W, MlirValue *v, int *n, int acc[DOT_MAX][16]) {
  for (int w = W; w > 1; w /= 2) {
    int segs = W / w, m = 0;
    for (int q = 0; q < *n; q += 2) {
      bool pair = q + 1 < *n;
      int64_t lo[16], hi[16];
      int nacc[16];
      memset(nacc, -1, sizeof nacc);
      for (int s = 0; s < 2 * segs; s++) {
        int64_t base = (s < segs ? 0 : W) + (s % segs) * w;
        for (int l = 0; l < w / 2; l++) {
          lo[s * (w / 2) + l] = base + l;
          hi[s * (w / 2) + l] = base + w / 2 + l;
        }
        nacc[s] = s < segs ? acc[q][s] : pair ? acc[q + 1][s - segs] : -1;
      }
      MlirValue y = pair ? v[q + 1] : v[q];
      MlirValue sum = mb_bin(b, "arith.addf", gen_vec_shuffle(b, v[q], y, lo, W, vt),
                             gen_vec_shuffle(b, v[q], y, hi, W, vt));
      v[m] = sum;
      memcpy(acc[m], nacc, sizeof nacc);
      m++;
    }
    *n = m;
  }
}

static int dot_block(int64_t extent, int most) {
  for (int r = most; r > 1; r /= 2)
    if (extent % r == 0)
      return r;
  return 1;
}

/* Whether a gemm takes the dot micro-kernel: c (+)= a · b^T over whole f32
 * tiles of constant shapes, K % DOT_VW == 0. */
static bool dot_fits(const ts_node *call) {
  ts_node *na = call->kids[0], *nb = call->kids[1], *nc = call->kids[2];
  if (!ts_call_named_bool(call, "trans_b", false) || ts_call_named_bool(call, "trans_a", false) ||
      ts_call_named_bool(call, "tf32", false))
    return false;
  for (int i = 0; i < 3; i++)
    if (gen_const_dim(call->kids[i], 0) < 0 || call->kids[i]->type->dtype != TS_DTYPE_F32)
      return false;
  int64_t M = gen_const_dim(nc, 0), N = gen_const_dim(nc, 1), K = gen_const_dim(na, 1);
  return M > 0 && N > 0 && K > 0 && K % DOT_VW == 0 && gen_const_dim(nb, 1) == K &&
         gen_const_dim(na, 0) == M && gen_const_dim(nb, 0) == N;
}

static dot_src tile_src(gen *g, view *v, int64_t K) {
  return (dot_src){.mem = v->mem, .base = gen_i64(g, 0), .stride = gen_i64(g, K),
                   .dt = TS_DTYPE_F32};
}

/* DOT_VW elements of row `row` from k0 as an f32 vector of type vt. */
static MlirValue dot_load(gen *g, const dot_src *s, MlirValue row, MlirValue k0, MlirType vt) {
  mb *b = &g->b;
  MlirValue at = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, s->stride), k0);
  at = mb_bin(b, "arith.addi", s->base, at);
  MlirValue ops[2] = {s->mem, mb_cast(b, "arith.index_cast", at, b->index)};
  if (s->dt == TS_DTYPE_F32)
    return mb_op1(b, "vector.load", 2, ops, vt);
  int64_t shape[1] = {DOT_VW};
  MlirValue h = mb_op1(b, "vector.load", 2, ops, mlirVectorTypeGet(1, shape, b->i16));
  MlirType wt = mlirVectorTypeGet(1, shape, b->i32);
  MlirValue w = mb_cast(b, "arith.extui", h, wt);
  MlirValue sh = mb_op1(b, "vector.broadcast", 1, (MlirValue[]){mb_const_int(b, b->i32, 16)}, wt);
  return mb_cast(b, "arith.bitcast", mb_bin(b, "arith.shli", w, sh), vt);
}

/* An x86 intrinsic of n operands (llvm.call_intrinsic). */
MlirValue gen_x86_intrinsic(mb *b, const char *name, int n, MlirValue *ops, MlirType rt) {
  int32_t seg[2] = {n, 0};
  MlirNamedAttribute at[3] = {
      mb_attr(b, "intrin", mlirStringAttrGet(b->ctx, mb_str(name))),
      mb_attr(b, "op_bundle_sizes", mlirDenseI32ArrayGet(b->ctx, 0, NULL)),
      mb_attr(b, "operandSegmentSizes", mlirDenseI32ArrayGet(b->ctx, 2, seg))};
  return mlirOperationGetResult(mb_op(b, "llvm.call_intrinsic", n, ops, 1, &rt, 3, at), 0);
}

/* The products of one k step of the dot micro-kernel's RA x RB block (i0,
 * j0 its first row and column) added to its accumulators: DOT_VW k, or 64
 * when b is FP8 (each b row decoded once a step). Either way each
 * accumulator takes its products in k order, the same sums. */
typedef struct dot_block_at {
  int RA, RB;
  MlirType vt;
  MlirValue slots, i0, j0;
} dot_block_at;

static void dot_fma(gen *g, const dot_block_at *d, int r, int s, MlirValue a, MlirValue bv) {
  mb *b = &g->b;
  MlirValue q = gen_i64(g, r * d->RB + s);
  MlirValue fops[3] = {a, bv, mb_load(b, d->slots, q)};
  mb_store(b, mb_op1(b, "vector.fma", 3, fops, d->vt), d->slots, q);
}

static void dot_step(gen *g, const dot_block_at *d, const dot_src *A, const dot_src *B,
                     MlirValue k0) {
  mb *b = &g->b;
  MlirValue av[4], bv[DOT_MAX];
  for (int r = 0; r < d->RA + d->RB; r++) {
    bool isa = r < d->RA;
    MlirValue row = mb_bin(b, "arith.addi", isa ? d->i0 : d->j0, gen_i64(g, isa ? r : r - d->RA));
    MlirValue x = dot_load(g, isa ? A : B, row, k0, d->vt);
    if (isa)
      av[r] = x;
    else
      bv[r - d->RA] = x;
  }
  for (int r = 0; r < d->RA; r++)
    for (int s = 0; s < d->RB; s++)
      dot_fma(g, d, r, s, av[r], bv[s]);
}

/* A step of 64 k with b decoded in registers (FP8, or FP4 with t NULL). */
static void dot_decode_step(gen *g, const dot_block_at *d, const fp8_tables *t, const dot_src *A,
                            const dot_src *B, MlirValue k0) {
  mb *b = &g->b;
  for (int s = 0; s < d->RB; s++) {
    MlirValue bw[8], row = mb_bin(b, "arith.addi", d->j0, gen_i64(g, s));
    if (t)
      gen_fp8_row(g, t, B, row, k0, d->vt, bw);
    else
      gen_fp4_row(g, B, row, k0, d->vt, bw);
    for (int u = 0; u < 8; u++) {
      MlirValue ku = mb_bin(b, "arith.addi", k0, gen_i64(g, DOT_VW * u));
      for (int r = 0; r < d->RA; r++) {
        MlirValue row = mb_bin(b, "arith.addi", d->i0, gen_i64(g, r));
        dot_fma(g, d, r, s, dot_load(g, A, row, ku, d->vt), bw[u]);
      }
    }
  }
}

/* The lanes' sums of v[0 .. n) (vectors vt of W f32 lanes, n <= DOT_MAX)
 * added to (acc) or stored in memref mem, where each run of `run` elements
 * (r run .. r run + run - 1, a divisor of n) lies contiguous from index
 * at[r run]: the halving tree leaves the sums in one or two vectors, from
 * which one shuffle a run makes its vector, loaded, added and stored as
 * one (one element at a time, extracted, this took ~3x the instructions:
 * at the attention's K = 512 about 40% as many as its products, counted). */
void gen_dot_finish(gen *g, MlirType vt, int W, MlirValue *v, int n, int run,
                    const MlirValue *at, MlirValue mem, bool acc) {
  mb *b = &g->b;
  int which[DOT_MAX][16], total = n;
  for (int q = 0; q < n; q++)
    which[q][0] = q;
  dot_tree(b, vt, W, v, &n, which);
  int64_t rl = run;
  MlirType rt = mlirVectorTypeGet(1, &rl, b->f32);
  for (int r = 0; r < total / run; r++) {
    int64_t mask[16];
    int src[2] = {-1, -1};
    for (int s = 0; s < run; s++)
      for (int q = 0; q < n; q++)
        for (int l = 0; l < W; l++)
          if (which[q][l] == r * run + s) {
            int k = src[0] < 0 || src[0] == q ? 0 : 1; /* (n <= 2 after the tree) */
            src[k] = q;
            mask[s] = k * W + l;
          }
    MlirValue x = gen_vec_shuffle(b, v[src[0]], v[src[1] < 0 ? src[0] : src[1]], mask, run, rt);
    MlirValue idx = mb_cast(b, "arith.index_cast", at[r * run], b->index);
    if (acc) {
      MlirValue ops[2] = {mem, idx};
      x = mb_bin(b, "arith.addf", mb_op1(b, "vector.load", 2, ops, rt), x);
    }
    MlirValue ops[3] = {x, mem, idx};
    mb_op(b, "vector.store", 3, ops, 0, NULL, 0, NULL);
  }
}

/* The lanes buffer of the loop around gemm `call` (gen_lanes_begin) that
 * its c sums into, or NULL. */
static const struct gen_lanes *lanes_of(gen *g, const ts_node *call) {
  for (int q = 0; q < g->nlanes; q++)
    if (g->lanes[q].c == call->kids[2]->sym)
      return &g->lanes[q];
  return NULL;
}

static void dot_emit(gen *g, const ts_node *call, const dot_src *A, const dot_src *B, view *C,
                     bool acc) {
  mb *b = &g->b;
  int64_t M = gen_const_dim(call->kids[2], 0), N = gen_const_dim(call->kids[2], 1);
  int64_t K = gen_const_dim(call->kids[0], 1);
  int RA = dot_block(M, 4), RB = dot_block(N, DOT_MAX / RA);
  const struct gen_lanes *la = lanes_of(g, call);
  bool fp8 = B->dt == TS_DTYPE_FP8E4M3 && !B->e2m1;
  int64_t step = fp8 || B->e2m1 ? 8 * DOT_VW : DOT_VW;
  fp8_tables t;
  memset(&t, 0, sizeof t);
  if (fp8)
    t = gen_fp8_tables(b);
  gen_ukernel u;
  gen_ukernel_begin(g, &u, DOT_VW, RA * RB, M, N, RA, RB);
  MlirType vt = u.vt;
  MlirValue slots = u.slots, zero = u.zero, i0 = u.i0, j0 = u.j0;
  dot_block_at d = {RA, RB, vt, slots, i0, j0};
  loop lk;
  int n = RA * RB;
  MlirValue v[DOT_MAX], at[DOT_MAX];
  for (int q = 0; q < n; q++) {
    MlirValue row = mb_bin(b, "arith.addi", i0, gen_i64(g, q / RB));
    MlirValue col = mb_bin(b, "arith.addi", j0, gen_i64(g, q % RB));
    at[q] = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, gen_i64(g, N)), col);
    mb_store(b, la ? mb_load(b, la->mem, at[q]) : zero, slots, gen_i64(g, q));
  }
  gen_loop_begin(g, &lk, gen_i64(g, 0), gen_i64(g, K / step));
  MlirValue k0 = mb_bin(b, "arith.muli", lk.iv, gen_i64(g, step));
  if (fp8 || B->e2m1)
    dot_decode_step(g, &d, fp8 ? &t : NULL, A, B, k0);
  else
    dot_step(g, &d, A, B, k0);
  gen_loop_end(g, &lk);
  for (int q = 0; q < n; q++) {
    v[q] = mb_load(b, slots, gen_i64(g, q));
    if (la) /* summed after the loop (gen_lanes_end) */
      mb_store(b, v[q], la->mem, at[q]);
  }
  if (!la)
    gen_dot_finish(g, vt, DOT_VW, v, n, RB, at, C->mem, acc);
  gen_ukernel_end(g, &u);
}

/* ---- a loop's dot gemms summing by lanes ------------------------------------ */

/* Whether node n is, or holds, node x. */
static bool holds(const ts_node *n, const ts_node *x) {
  if (!n || n == x)
    return n == x;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (holds(n->kids[i], x))
      return true;
  return false;
}

/* The gemm calls under n that take the dot micro-kernel, into gs[0 .. *ng)
 * (at most cap; false when more). */
static bool dot_gemms(ts_node *n, ts_node **gs, int *ng, int cap) {
  if (!n)
    return true;
  if (n->kind == TS_NODE_CALL && n->builtin == TS_BUILTIN_GEMM && dot_fits(n)) {
    if (*ng == cap)
      return false;
    gs[(*ng)++] = n;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!dot_gemms(n->kids[i], gs, ng, cap))
      return false;
  return true;
}

/* A tile's lanes buffer holds 8 floats an element: up to 32 KiB of stack */
enum { LANES_MAX_ELEMS = 1024, GEMMS_MAX = 16 };

int gen_lanes_begin(gen *g, const ts_node *n, const ts_node *body) {
  int from = g->nlanes;
  ts_node *gs[GEMMS_MAX];
  int ng = 0;
  if (g->gpu || g->par || g->in_fn || !dot_gemms((ts_node *)body, gs, &ng, GEMMS_MAX))
    return from;
  mb *b = &g->b;
  for (int q = 0; q < ng && g->nlanes < (int)(sizeof g->lanes / sizeof g->lanes[0]); q++) {
    ts_node *call = gs[q];
    const ts_symbol *c = call->kids[2]->sym;
    int64_t M = gen_const_dim(call->kids[2], 0), N = gen_const_dim(call->kids[2], 1);
    /* every mention of c in the loop is an accumulating dot gemm's c; c
     * made outside the loop; not already summed by an outer loop's lanes */
    int uses = 0;
    bool fits = M * N <= LANES_MAX_ELEMS && c->decl && !holds(n, c->decl) &&
                !lanes_of(g, call);
    for (int r = 0; fits && r < ng; r++)
      if (gs[r]->kids[2]->sym == c) {
        uses++;
        fits = ts_call_named_bool(gs[r], "accumulate", true) && gs[r]->kids[0]->sym != c &&
               gs[r]->kids[1]->sym != c;
      }
    if (!fits || ts_node_mention_count(body, c) != uses)
      continue;
    int64_t shape[1] = {DOT_VW};
    MlirType vt = mlirVectorTypeGet(1, shape, b->f32);
    struct gen_lanes *la = &g->lanes[g->nlanes++];
    la->c = c;
    la->ref = call->kids[2];
    la->mem = mb_alloca_entry(b, vt, M * N);
    MlirValue zero = mb_op1(b, "vector.broadcast", 1, (MlirValue[]){mb_const_f32(b, 0.0)}, vt);
    loop z;
    gen_loop_begin(g, &z, gen_i64(g, 0), gen_i64(g, M * N));
    mb_store(b, zero, la->mem, z.iv);
    gen_loop_end(g, &z);
  }
  return from;
}

void gen_lanes_end(gen *g, int from) {
  mb *b = &g->b;
  for (int q = from; q < g->nlanes; q++) {
    const struct gen_lanes *la = &g->lanes[q];
    ts_node *ref = la->ref;
    view pool[4], C;
    int np = 0;
    if (!gen_view_of(g, ref, &C, pool, &np))
      break;
    int64_t E = gen_const_dim(ref, 0) * gen_const_dim(ref, 1);
    int G = dot_block(E, DOT_MAX);
    int64_t shape[1] = {DOT_VW};
    MlirType vt = mlirVectorTypeGet(1, shape, b->f32);
    loop le;
    gen_loop_begin(g, &le, gen_i64(g, 0), gen_i64(g, E / G));
    MlirValue e0 = mb_bin(b, "arith.muli", le.iv, gen_i64(g, G)), v[DOT_MAX], at[DOT_MAX];
    for (int e = 0; e < G; e++) {
      at[e] = mb_bin(b, "arith.addi", e0, gen_i64(g, e));
      v[e] = mb_load(b, la->mem, at[e]);
    }
    gen_dot_finish(g, vt, DOT_VW, v, G, G, at, C.mem, true);
    gen_loop_end(g, &le);
  }
  g->nlanes = from;
}

static bool gemm_dot_vector(gen *g, ts_node *call, view *A, view *B, view *C, bool acc) {
  if (!dot_fits(call))
    return false;
  int64_t K = gen_const_dim(call->kids[0], 1);
  dot_src a = tile_src(g, A, K), bs = tile_src(g, B, K);
  dot_emit(g, call, &a, &bs, C, acc);
  return true;
}

/* ---- a GEMM reading its operands where they lie -------------------------- */

/* The gemm call of statement st, or NULL. */
static ts_node *gemm_of(ts_node *st) {
  ts_node *c = st && st->kind == TS_NODE_EXPR_STMT ? st->kids[0] : NULL;
  return c && c->kind == TS_NODE_CALL && c->builtin == TS_BUILTIN_GEMM ? c : NULL;
}

/* `copy(t[...], f)`: a slice of a tensor into a whole tile, or NULL. */
static ts_node *tile_copy_of(ts_node *st) {
  ts_node *c = st && st->kind == TS_NODE_EXPR_STMT ? st->kids[0] : NULL;
  if (!c || c->kind != TS_NODE_CALL || c->builtin != TS_BUILTIN_COPY)
    return NULL;
  ts_node *src = c->kids[0], *dst = c->kids[1];
  if (dst->kind != TS_NODE_NAME || !dst->sym || dst->sym->kind != TS_SYM_TILE ||
      src->kind != TS_NODE_INDEX || !src->kids[0]->sym ||
      src->kids[0]->sym->kind != TS_SYM_TENSOR)
    return NULL;
  return c;
}

/* Whether the copy `c` before `gemm` can be left out, the gemm reading the
 * tensor slice in place: its tile is an operand a or b of that gemm that
 * the kernel uses nowhere else, and the slice is f32 or bf16 with the
 * tile's constant shape (forward_view then checks the view made of it). */
static bool forwardable(gen *g, const ts_node *c, const ts_node *gemm) {
  const ts_symbol *f = c->kids[1]->sym;
  const ts_type *st = c->kids[0]->type, *ft = f->type;
  if (gemm->kids[2]->sym == f || (gemm->kids[0]->sym != f && gemm->kids[1]->sym != f) ||
      ts_node_mention_count(g->kernel->node, f) !=
          ts_node_mention_count(c, f) + ts_node_mention_count(gemm, f) || !st || st->rank != 2)
    return false;
  /* FP4 codes (format="e2m1", bytes of two) are too, on AVX-512: b's, a
   * decode step's, 64 k a step, an f32 scale (if any) for 16 or more */
  bool packed = ts_copy_packed(c);
  for (int d = 0; d < 2; d++)
    if (st->dims[d].term_count || st->dims[d].c * (packed && d ? 2 : 1) != ft->dims[d].c)
      return false;
  probe_host();
  int64_t M = gen_const_dim(gemm->kids[2], 0), N = gen_const_dim(gemm->kids[2], 1);
  int RA = dot_block(M, 4), RB = dot_block(N, DOT_MAX / RA);
  if (packed && ts_copy_twice(c))
    return false;
  if (packed) {
    const ts_node *sc = ts_call_named(c, "scale");
    int64_t B = ts_copy_scale_block(c);
    return host_avx512 && gemm->kids[1]->sym == f && ft->dtype == TS_DTYPE_F32 && RA == M &&
           ft->dims[1].c % (8 * DOT_VW) == 0 &&
           (!sc || (B % 16 == 0 && sc->type && sc->type->dtype == TS_DTYPE_F32));
  }
  /* FP8 is decoded in registers (dot_decode_step): b's, 64 k a step, on VBMI */
  bool fp8 = st->dtype == TS_DTYPE_FP8E4M3 && host_vbmi && gemm->kids[1]->sym == f &&
             st->dims[1].c % (8 * DOT_VW) == 0;
  if (st->dtype != TS_DTYPE_F32 && st->dtype != TS_DTYPE_BF16 && !fp8)
    return false;
  /* bf16 and FP8 are widened at each load: read in place only where the
   * dot loads each element once (b's rows against all of a's rows in one
   * block: a decode step's), as the copy widens it once; loaded again for
   * each block of the other operand's rows it costs more than the copy
   * saves */
  return st->dtype == TS_DTYPE_F32 || (gemm->kids[1]->sym == f ? RA == M : RB == N);
}

/* A slice view whose rows lie along its tensor's last dim (each row
 * contiguous), gathering nothing. */
bool gen_forward_view(const view *v) {
  if (v->vrank != 2 || v->sub[v->rank - 1].kind != SUB_SLICE || v->sub[v->rank - 1].vdim != 1)
    return false;
  for (uint32_t d = 0; d < v->rank; d++)
    if (v->sub[d].kind == SUB_GATHER)
      return false;
  return true;
}

/* The gemm of gemms[0 .. n) taking tile f as its a or b, or -1. */
static int gemm_taking(ts_node *const *gemms, int n, const ts_symbol *f) {
  for (int q = 0; q < n; q++)
    if (gemms[q]->kids[0]->sym == f || gemms[q]->kids[1]->sym == f)
      return q;
  return -1;
}

/* The tensor that reference r (`t` or `t[...]`) names, or NULL. */
static const ts_symbol *tensor_of(const ts_node *r) {
  const ts_node *b = r && r->kind == TS_NODE_INDEX ? r->kids[0] : r;
  return b && b->kind == TS_NODE_NAME && b->sym && b->sym->kind == TS_SYM_TENSOR ? b->sym
                                                                                  : NULL;
}

/* ---- the next step's rows prefetched ------------------------------------------ */

/* On the CPU, a copy of a tensor slice into a whole 2-d tile inside a `for`
 * loop whose variable its indices name prefetches the rows that the copy
 * of the loop's next iteration reads (the slice made again with the
 * variable one more), when they are at most PREFETCH_LINES cache lines: a
 * tiled GEMM's weight tile (8 rows of 128 bf16 values: 40 prefetches a
 * step), whose first loads of each step missed the caches (the hardware
 * prefetchers did not run ahead of 8 rows 8 KiB apart: 28% of a prefill
 * GEMM's samples), not its activations' (32 rows of 512 bytes, which the
 * other blocks of the row keep in L2). A prefetch neither faults nor
 * changes a value; its index is clamped into the tensor all the same. */
enum { PREFETCH_LINES = 128 };

static void prefetch_next(gen *g, const ts_node *call, const view *src) {
  const ts_node *sn = call->kids[0], *dn = call->kids[1];
  const ts_symbol *var = g->nloops ? g->loops[g->nloops - 1].var : NULL;
  if (g->gpu || g->par || !var || !tensor_of(sn) || sn->kind != TS_NODE_INDEX ||
      !gen_forward_view(src) || ts_node_mention_count(sn, var) == 0)
    return;
  int64_t rows = gen_const_dim((ts_node *)dn, 0), cols = gen_const_dim((ts_node *)dn, 1);
  int64_t eb = ts_dtype_bits(src->dt) / 8;
  if (rows <= 0 || cols <= 0 || dn->type->rank != 2 || eb == 0)
    return;
  int64_t lines = (cols * eb + 63) / 64;
  if (rows * (lines + 1) > PREFETCH_LINES)
    return;
  mb *b = &g->b;
  ts_symbol *v = (ts_symbol *)var;
  const void *was = v->user;
  v->user = mb_bin(b, "arith.addi", g->loops[g->nloops - 1].iv, gen_i64(g, 1)).ptr;
  view pool[8], nv;
  int np = 0;
  bool ok = gen_view_of(g, (ts_node *)sn, &nv, pool, &np) && gen_forward_view(&nv);
  v->user = was;
  if (!ok)
    return;
  MlirValue zero = gen_i64(g, 0);
  MlirValue z = mb_cast(b, "arith.index_cast", zero, b->index);
  MlirValue n = mb_op1(b, "memref.dim", 2, (MlirValue[]){nv.mem, z}, b->index);
  MlirValue last = mb_bin(b, "arith.subi", mb_cast(b, "arith.index_cast", n, b->i64),
                          gen_i64(g, 1));
  MlirNamedAttribute at[3] = {mb_attr(b, "isWrite", mlirBoolAttrGet(b->ctx, 0)),
                              mb_attr(b, "localityHint", mlirIntegerAttrGet(b->i32, 3)),
                              mb_attr(b, "isDataCache", mlirBoolAttrGet(b->ctx, 1))};
  for (int64_t r = 0; r < rows; r++) {
    MlirValue k[2] = {gen_i64(g, r), zero}, first, inside;
    gen_view_elem(g, &nv, k, &first, &inside);
    for (int64_t c = 0; c <= lines; c++) {
      int64_t off = c < lines ? c * 64 / eb : cols - 1;
      MlirValue i = clamp64(g, mb_bin(b, "arith.addi", first, gen_i64(g, off)), zero, last);
      MlirValue ops[2] = {nv.mem, mb_cast(b, "arith.index_cast", i, b->index)};
      mb_op(b, "memref.prefetch", 2, ops, 0, NULL, 3, at);
    }
  }
}

/* The kernel's tensors that n may write, into w[0 .. *nw); false when
 * more than cap. */
static bool written_tensors(gen *g, const ts_node *n, const ts_symbol **w, int *nw, int cap) {
  const ts_kernel_info *k = g->kernel;
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_TENSOR && ts_node_writes(n, k->args[i])) {
      if (*nw == cap)
        return false;
      w[(*nw)++] = k->args[i];
    }
  return true;
}

/* i64 byte address one past the last element of 1-d memref mem. */
static MlirValue buffer_end(gen *g, MlirValue mem, int bytes) {
  mb *b = &g->b;
  MlirValue z = mb_cast(b, "arith.index_cast", gen_i64(g, 0), b->index);
  MlirValue n = mb_op1(b, "memref.dim", 2, (MlirValue[]){mem, z}, b->index);
  return gen_gpu_address(g, mem, mb_cast(b, "arith.index_cast", n, b->i64), bytes);
}

/* A gemm of a loop gen_gemm_in_place runs from tensors: its operands'
 * sources (gen_gemm takes them). */
typedef struct inplace {
  const ts_node *gemm;
  dot_src op[2];
  bool has[2];
} inplace;

/* Where gemm `call` reads a and b: the tiles A and B, but a tensor where an
 * enclosing gen_gemm_in_place reads it in place; false where none does. */
static bool gemm_sources(gen *g, const ts_node *call, view *A, view *B, dot_src op[2]) {
  int64_t K = gen_const_dim(call->kids[0], 1);
  op[0] = tile_src(g, A, K);
  op[1] = tile_src(g, B, K);
  const inplace *ip = g->inplace;
  for (int q = 0; q < g->ninplace; q++)
    if (ip[q].gemm == call) {
      for (int s = 0; s < 2; s++)
        if (ip[q].has[s])
          op[s] = ip[q].op[s];
      return true;
    }
  return false;
}

/* gen_gemm: a gemm the enclosing gen_gemm_in_place reads in place. */
static bool gemm_from_place(gen *g, ts_node *call, view *A, view *B, view *C, bool acc) {
  dot_src op[2];
  if (!gemm_sources(g, call, A, B, op))
    return false;
  dot_emit(g, call, &op[0], &op[1], C, acc);
  return true;
}

/* Of a gen_forward_view slice v of rows x cols: its first element's index
 * (base) and the distance between rows (stride); returns whether it lies
 * in its tensor (the first element, the next row's and the last: in range
 * at both corners is in range everywhere, each index being start + k) and,
 * inside a loop writing tensors w[0 .. nw) (w non-NULL), overlaps none of
 * them (arguments may share memory). */
MlirValue gen_slice_span(gen *g, view *v, int64_t rows, int64_t cols, const ts_symbol **w,
                         int nw, MlirValue *base, MlirValue *stride) {
  mb *b = &g->b;
  MlirValue z = gen_i64(g, 0), one = gen_i64(g, 1), next, end, ok0, ok1, unused;
  MlirValue k0[2] = {z, z}, k1[2] = {one, z}, kn[2] = {gen_i64(g, rows - 1), gen_i64(g, cols - 1)};
  gen_view_elem(g, v, k0, base, &ok0);
  gen_view_elem(g, v, k1, &next, &unused);
  gen_view_elem(g, v, kn, &end, &ok1);
  *stride = mb_bin(b, "arith.subi", next, *base);
  MlirValue ok = mb_bin(b, "arith.andi", ok0, ok1);
  if (!w || nw == 0)
    return ok;
  int eb = ts_dtype_bits(v->dt) / 8;
  MlirValue lo = gen_gpu_address(g, v->mem, *base, eb);
  MlirValue hi = gen_gpu_address(g, v->mem, mb_bin(b, "arith.addi", end, one), eb);
  for (int k = 0; k < nw; k++) {
    MlirValue wm = {w[k]->user}, wl = gen_gpu_address(g, wm, z, 1);
    MlirValue wh = buffer_end(g, wm, ts_dtype_bits(w[k]->type->dtype) / 8);
    MlirValue apart = mb_bin(b, "arith.ori", mb_cmpi(b, CMPI_SLE, hi, wl),
                             mb_cmpi(b, CMPI_SGE, lo, wh));
    ok = mb_bin(b, "arith.andi", ok, apart);
  }
  return ok;
}

bool gen_gemm_in_place(gen *g, ts_node *blk, uint32_t i, uint32_t *last) {
  enum { RUN = 4 };
  if (g->gpu || g->par || g->in_fn || !g->kernel)
    return false;
  /* copies i .. j - 1, then gemms j .. e - 1 */
  uint32_t j = i, e;
  while (j < blk->kid_count && j - i < RUN && tile_copy_of(blk->kids[j]))
    j++;
  ts_node *gemms[RUN];
  for (e = j; j > i && e < blk->kid_count && e - j < RUN && gemm_of(blk->kids[e]) &&
              dot_fits(gemm_of(blk->kids[e]));
       e++)
    gemms[e - j] = gemm_of(blk->kids[e]);
  int ng = (int)(e - j), at[RUN], nw = 0;
  /* or a `for` loop after the copies with such gemms in its body (the
   * slices' tensors written nowhere in it) */
  ts_node *loop = NULL;
  const ts_symbol *w[16];
  if (ng == 0 && j > i && j < blk->kid_count && blk->kids[j]->kind == TS_NODE_FOR) {
    loop = blk->kids[j];
    ts_node *body = loop->kids[2];
    for (uint32_t s = 0; body && s < body->kid_count && ng < RUN; s++)
      if (gemm_of(body->kids[s]) && dot_fits(gemm_of(body->kids[s])))
        gemms[ng++] = gemm_of(body->kids[s]);
    if (!written_tensors(g, loop, w, &nw, 16))
      return false;
    e = j + 1;
  }
  bool any = false;
  for (uint32_t r = i; r < j; r++) {
    ts_node *c = tile_copy_of(blk->kids[r]);
    int q = gemm_taking(gemms, ng, c->kids[1]->sym);
    at[r - i] = q >= 0 && forwardable(g, c, gemms[q]) ? q : -1;
    for (int k = 0; loop && at[r - i] >= 0 && k < nw; k++)
      if (w[k] == tensor_of(c->kids[0]) || w[k] == tensor_of(ts_call_named(c, "scale")))
        at[r - i] = -1;
    any |= at[r - i] >= 0;
  }
  if (!any)
    return false;
  mb *b = &g->b;
  view pool[24], src[RUN], scales[RUN], C[RUN];
  int np = 0;
  MlirValue ok = mb_const_int(b, b->i1, 1);
  dot_src ops[RUN][2];
  inplace ip[RUN];
  for (int q = 0; q < ng; q++) {
    memset(&ip[q], 0, sizeof ip[q]);
    ip[q].gemm = gemms[q];
    if (loop)
      continue; /* (made where the loop has them) */
    view A, B;
    if (!gen_view_of(g, gemms[q]->kids[0], &A, pool, &np) ||
        !gen_view_of(g, gemms[q]->kids[1], &B, pool, &np) ||
        !gen_view_of(g, gemms[q]->kids[2], &C[q], pool, &np))
      return false;
    gemm_sources(g, gemms[q], &A, &B, ops[q]); /* (inside an outer one's loop: its sources) */
  }
  for (uint32_t r = i; r < j; r++) {
    ts_node *c = tile_copy_of(blk->kids[r]);
    view *v = &src[r - i];
    int q = at[r - i];
    if (q < 0)
      continue;
    if (!gen_view_of(g, c->kids[0], v, pool, &np))
      return false;
    if (!gen_forward_view(v)) {
      at[r - i] = -1;
      continue;
    }
    int64_t K = gen_const_dim(gemms[q]->kids[0], 1), rows = gen_const_dim(c->kids[1], 0);
    bool packed = ts_copy_packed(c);
    int64_t B = ts_copy_scale_block(c);
    view *sv = &scales[r - i];
    if (B > 0 && (!gen_view_of(g, ts_call_named(c, "scale"), sv, pool, &np) ||
                  !gen_forward_view(sv))) {
      at[r - i] = -1;
      continue;
    }
    MlirValue base, stride;
    MlirValue in = gen_slice_span(g, v, rows, packed ? K / 2 : K, loop ? w : NULL, nw, &base,
                                  &stride);
    ok = mb_bin(b, "arith.andi", ok, in);
    dot_src s = {.mem = v->mem, .base = base, .stride = stride,
                 .dt = c->kids[0]->type->dtype, .e2m1 = packed};
    if (B > 0) { /* and its scales: a row's K / B */
      ok = mb_bin(b, "arith.andi", ok,
                  gen_slice_span(g, sv, rows, K / B, loop ? w : NULL, nw, &s.sbase, &s.sstride));
      s.smem = sv->mem;
      s.sblk = B;
    }
    int side = gemms[q]->kids[0]->sym == c->kids[1]->sym ? 0 : 1;
    ops[q][side] = ip[q].op[side] = s;
    ip[q].has[side] = true;
  }
  /* in range: the other copies, then the gemms from the tensors; else the
   * statements as written */
  MlirBlock in = mb_block(b, 0, NULL), out = mb_block(b, 0, NULL), join = mb_block(b, 0, NULL);
  gen_version_br(g, ok, in, out);
  b->cur = in;
  for (uint32_t r = i; r < j; r++)
    if (at[r - i] < 0)
      gen_stmt(g, blk->kids[r]);
  if (loop) {
    const void *outer = g->inplace;
    int nouter = g->ninplace;
    g->inplace = ip;
    g->ninplace = ng;
    gen_stmt(g, loop);
    g->inplace = outer;
    g->ninplace = nouter;
  }
  for (int q = 0; q < ng && !loop; q++)
    dot_emit(g, gemms[q], &ops[q][0], &ops[q][1], &C[q],
             ts_call_named_bool(gemms[q], "accumulate", true));
  mb_br(b, join, 0, NULL);
  b->cur = out;
  for (uint32_t r = i; r < e; r++)
    gen_stmt(g, blk->kids[r]);
  mb_br(b, join, 0, NULL);
  b->cur = join;
  *last = e - 1;
  return true;
}

MlirValue gen_tf32(gen *g, MlirValue x) {
  mb *b = &g->b;
  MlirValue w = mb_cast(b, "arith.bitcast", x, b->i32);
  w = mb_bin(b, "arith.andi", w, mb_const_int(b, b->i32, (int32_t)0xffffe000u));
  return mb_cast(b, "arith.bitcast", w, b->f32);
}

MlirValue gen_gemm_operand(gen *g, const ts_node *call, MlirValue x, MlirType ct) {
  MlirValue v = gen_convert(g, x, ct);
  return ts_call_named_bool(call, "tf32", false) ? gen_tf32(g, v) : v;
}

void gen_gemm(gen *g, ts_node *call) {
  view pool[8], A, B, C;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &A, pool, &np) ||
      !gen_view_of(g, call->kids[1], &B, pool, &np) ||
      !gen_view_of(g, call->kids[2], &C, pool, &np))
    return;
  bool ta = ts_call_named_bool(call, "trans_a", false);
  bool tb = ts_call_named_bool(call, "trans_b", false);
  bool acc = ts_call_named_bool(call, "accumulate", true);
  if (!ts_call_named_bool(call, "tf32", false) &&
      (gemm_from_place(g, call, &A, &B, &C, acc) ||
       gemm_vector(g, call, &A, &B, &C, ta, tb, acc) ||
       gemm_dot_vector(g, call, &A, &B, &C, acc) ||
       gen_gemm_i8_vnni(g, call, &A, &B, &C, ta, tb, acc) ||
       gen_gemm_bf16(g, call, &A, &B, &C, ta, tb, acc)))
    return;
  gen_gemm_loops(g, call, &A, &B, &C, ta, tb, acc);
}

/* A gemm as plain loops over any views (LLVM vectorises them). */
void gen_gemm_loops(gen *g, ts_node *call, view *pa, view *pb, view *pc, bool ta, bool tb,
                    bool acc) {
  mb *b = &g->b;
  view A = *pa, B = *pb, C = *pc;
  MlirType ct = gen_compute_type(g, C.dt);
  bool f = gen_is_float(g, ct);
  MlirValue zero = f ? mb_const_f32(b, 0.0) : mb_const_int(b, ct, 0);
  MlirValue M = C.vext[0], N = C.vext[1], K = A.vext[ta ? 0 : 1];
  const char *add = f ? "arith.addf" : "arith.addi";
  const char *mul = f ? "arith.mulf" : "arith.muli";
  loop li, lj, lk;
  MlirValue ij[2], ak[2], bk[2];
  if (tb && !ta) {
    MlirValue slot = mb_alloca_entry(b, ct, 1);
    gen_loop_begin(g, &li, gen_i64(g, 0), M);
    gen_loop_begin(g, &lj, gen_i64(g, 0), N);
    ij[0] = li.iv;
    ij[1] = lj.iv;
    mb_store(b, zero, slot, gen_i64(g, 0));
    gen_loop_begin(g, &lk, gen_i64(g, 0), K);
    ak[0] = li.iv;
    ak[1] = lk.iv;
    bk[0] = lj.iv;
    bk[1] = lk.iv;
    MlirValue x, y;
    gen_view_load(g, &A, ak, &x);
    gen_view_load(g, &B, bk, &y);
    MlirValue p = mb_bin(b, mul, gen_gemm_operand(g, call, x, ct), gen_gemm_operand(g, call, y, ct));
    MlirValue s = mb_bin(b, add, mb_load(b, slot, gen_i64(g, 0)), p);
    if (f) {
      gen_fastmath(g, p, "reassoc,contract");
      gen_fastmath(g, s, "reassoc,contract");
    }
    mb_store(b, s, slot, gen_i64(g, 0));
    gen_loop_end(g, &lk);
    MlirValue sum = mb_load(b, slot, gen_i64(g, 0));
    if (acc) {
      MlirValue c0;
      gen_view_load(g, &C, ij, &c0);
      sum = mb_bin(b, add, gen_convert(g, c0, ct), sum);
    }
    gen_view_store(g, &C, ij, sum);
    gen_loop_end(g, &lj);
    gen_loop_end(g, &li);
    return;
  }
  if (!acc) {
    gen_loop_begin(g, &li, gen_i64(g, 0), M);
    gen_loop_begin(g, &lj, gen_i64(g, 0), N);
    ij[0] = li.iv;
    ij[1] = lj.iv;
    gen_view_store(g, &C, ij, zero);
    gen_loop_end(g, &lj);
    gen_loop_end(g, &li);
  }
  /* R rows at once when M is a known multiple of R. */
  const ts_type *ctype = call->kids[2]->type;
  int R = 1;
  if (ctype && ctype->rank == 2 && ctype->dims[0].term_count == 0 &&
      ctype->dims[0].c % 4 == 0)
    R = 4;
  gen_loop_begin(g, &li, gen_i64(g, 0),
                 R == 1 ? M : mb_bin(b, "arith.divsi", M, gen_i64(g, R)));
  MlirValue i0 = R == 1 ? li.iv : mb_bin(b, "arith.muli", li.iv, gen_i64(g, R));
  MlirValue rows[4], xs[4];
  for (int r = 0; r < R; r++)
    rows[r] = r ? mb_bin(b, "arith.addi", i0, gen_i64(g, r)) : i0;
  gen_loop_begin(g, &lk, gen_i64(g, 0), K);
  for (int r = 0; r < R; r++) {
    ak[0] = ta ? lk.iv : rows[r];
    ak[1] = ta ? rows[r] : lk.iv;
    gen_view_load(g, &A, ak, &xs[r]);
    xs[r] = gen_gemm_operand(g, call, xs[r], ct);
  }
  gen_loop_begin(g, &lj, gen_i64(g, 0), N);
  bk[0] = tb ? lj.iv : lk.iv;
  bk[1] = tb ? lk.iv : lj.iv;
  MlirValue y;
  gen_view_load(g, &B, bk, &y);
  y = gen_gemm_operand(g, call, y, ct);
  for (int r = 0; r < R; r++) {
    ij[0] = rows[r];
    ij[1] = lj.iv;
    MlirValue c;
    gen_view_load(g, &C, ij, &c);
    MlirValue p = mb_bin(b, mul, xs[r], y);
    MlirValue s = mb_bin(b, add, gen_convert(g, c, ct), p);
    if (f) {
      gen_fastmath(g, p, "contract");
      gen_fastmath(g, s, "contract");
    }
    gen_view_store(g, &C, ij, s);
  }
  gen_loop_end(g, &lj);
  gen_loop_end(g, &lk);
  gen_loop_end(g, &li);
}

/* One reduction's accumulator: init, a step per element, the value. A
 * float max is maximumf told that no NaN reaches it and the sign of zero
 * does not matter (one vmaxps per vector, against six for its full NaN and
 * signed-zero rules); NaNs are noted on the side and a NaN anywhere gives
 * NaN, as the full maximumf would. max(-0, +0) may be either zero. A float
 * sum may be reassociated (partial sums per vector lane): the order is
 * fixed by the compiled code, not by the source. */
typedef struct racc {
  ts_builtin op;
  MlirType t;
  bool f, fmax;
  MlirValue slot, nan_slot;
} racc;

static void racc_init(gen *g, racc *a, ts_builtin op, MlirType t) {
  mb *b = &g->b;
  a->op = op;
  a->t = t;
  a->f = gen_is_float(g, t);
  a->fmax = a->f && op != TS_BUILTIN_REDUCE_SUM;
  a->slot = mb_alloca_entry(b, t, 1);
  mb_store(b, gen_reduce_init(g, op, t), a->slot, gen_i64(g, 0));
  if (a->fmax) {
    a->nan_slot = mb_alloca_entry(b, b->i1, 1);
    mb_store(b, mb_const_int(b, b->i1, 0), a->nan_slot, gen_i64(g, 0));
  }
}

static void racc_step(gen *g, racc *a, MlirValue x) {
  mb *b = &g->b;
  MlirValue v = mb_load(b, a->slot, gen_i64(g, 0)), r;
  if (a->op == TS_BUILTIN_REDUCE_SUM) {
    r = mb_bin(b, a->f ? "arith.addf" : "arith.addi", v, x);
    if (a->f)
      gen_fastmath(g, r, "reassoc");
  } else {
    if (a->op == TS_BUILTIN_REDUCE_ABSMAX)
      x = a->f ? gen_math1(g, "math.absf", x) : gen_math1(g, "math.absi", x);
    if (a->fmax) {
      r = gen_fastmath(g, mb_bin(b, "arith.maximumf", v, x), "nnan,nsz");
      MlirValue nan = mb_load(b, a->nan_slot, gen_i64(g, 0));
      mb_store(b, mb_bin(b, "arith.ori", nan, mb_cmpf(b, CMPF_UNO, x, x)),
               a->nan_slot, gen_i64(g, 0));
    } else
      r = mb_bin(b, "arith.maxsi", v, x);
  }
  mb_store(b, r, a->slot, gen_i64(g, 0));
}

static MlirValue racc_value(gen *g, racc *a) {
  mb *b = &g->b;
  MlirValue v = mb_load(b, a->slot, gen_i64(g, 0));
  if (a->fmax)
    v = mb_select(b, mb_load(b, a->nan_slot, gen_i64(g, 0)),
                  mb_const_f32(b, __builtin_nan("")), v);
  return v;
}

void gen_reduce(gen *g, ts_node *call) {
  view pool[8], src, dst;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &src, pool, &np) ||
      !gen_view_of(g, call->kids[1], &dst, pool, &np))
    return;
  uint32_t dim = (uint32_t)ts_call_named(call, "dim")->cval.i;
  MlirType t = gen_compute_type(g, src.dt);
  /* Loops over the kept dims, then the reduced one innermost. */
  MlirValue ext[TS_MAX_RANK] = {{0}}, k[TS_MAX_RANK] = {{0}};
  MlirValue out_k[TS_MAX_RANK] = {{0}};
  uint32_t nk = 0;
  for (uint32_t i = 0; i < src.vrank; i++)
    if (i != dim)
      ext[nk++] = src.vext[i];
  loop L[TS_MAX_RANK];
  uint32_t opened = nk;
  gen_loops_begin(g, L, ext, nk, out_k);
  racc a;
  racc_init(g, &a, call->builtin, t);
  loop inner;
  gen_loop_begin(g, &inner, gen_i64(g, 0), src.vext[dim]);
  for (uint32_t i = 0, j = 0; i < src.vrank; i++)
    k[i] = i == dim ? inner.iv : out_k[j++];
  MlirValue x;
  gen_view_load(g, &src, k, &x);
  racc_step(g, &a, x);
  gen_loop_end(g, &inner);
  if (nk == 0) {
    out_k[0] = gen_i64(g, 0);
    nk = 1;
  }
  gen_view_store(g, &dst, out_k,
                 gen_convert(g, racc_value(g, &a), gen_compute_type(g, dst.dt)));
  gen_loops_end(g, L, opened);
}

/* ---- a tile made and reduced over its rows, in one pass ---------------------- */

/* `t[v0, v1, ...] = x` with exactly the parallel's variables. */
static bool writes_element(const ts_node *st, const ts_symbol *t, const ts_node *vars) {
  if (!st || st->kind != TS_NODE_ASSIGN || st->op != TS_TOK_ASSIGN)
    return false;
  const ts_node *d = st->kids[0];
  if (d->kind != TS_NODE_INDEX || d->kids[0]->kind != TS_NODE_NAME ||
      d->kids[0]->sym != t || d->kid_count != vars->kid_count + 1)
    return false;
  for (uint32_t i = 0; i < vars->kid_count; i++)
    if (d->kids[i + 1]->kind != TS_NODE_NAME || d->kids[i + 1]->sym != vars->kids[i]->sym)
      return false;
  return true;
}

static bool is_reduce(const ts_node *c) {
  return c->kind == TS_NODE_CALL && (c->builtin == TS_BUILTIN_REDUCE_SUM ||
                                     c->builtin == TS_BUILTIN_REDUCE_MAX ||
                                     c->builtin == TS_BUILTIN_REDUCE_ABSMAX);
}

/* What gen_fused_reduce fuses: the reduce call, its source tile's rank,
 * and the parallel statement's indices and body or the copy before it. */
typedef struct fused {
  ts_node *call, *vars, *body, *copy;
  uint32_t rank;
} fused;

static bool fused_fits(gen *g, ts_node *first, ts_node *next, fused *f) {
  if (g->gpu || g->par || g->in_fn || !g->kernel || g->kernel->simt ||
      next->kind != TS_NODE_EXPR_STMT)
    return false;
  ts_node *call = next->kids[0];
  if (!is_reduce(call) || call->kids[0]->kind != TS_NODE_NAME ||
      call->kids[1]->kind != TS_NODE_NAME)
    return false;
  const ts_symbol *t = call->kids[0]->sym, *s = call->kids[1]->sym;
  if (!t || !s || t->kind != TS_SYM_TILE || s->kind != TS_SYM_TILE ||
      t->type->dtype != TS_DTYPE_F32 || t->type->rank < 1 ||
      ts_call_named(call, "dim")->cval.i != (int64_t)t->type->rank - 1)
    return false;
  uint32_t rank = t->type->rank;
  ts_node *vars = NULL, *body = NULL, *copy = NULL;
  if (first->kind == TS_NODE_PARALLEL) {
    /* the body ends by writing t's element, writes t nowhere else, and
     * does not touch the result */
    vars = first->kids[0];
    body = first->kids[2];
    if (vars->kid_count != rank || !body || body->kid_count == 0)
      return false;
    for (uint32_t i = 0; i < rank; i++) {
      const ts_symbol *v = vars->kids[i]->sym;
      if (!v || !v->has_range || !ts_extent_equal(&v->range, &t->type->dims[i]))
        return false;
    }
    if (!writes_element(body->kids[body->kid_count - 1], t, vars) ||
        ts_node_mentions(body, s))
      return false;
    for (uint32_t i = 0; i + 1 < body->kid_count; i++)
      if (body->kids[i]->kind != TS_NODE_LET && ts_node_mentions(body->kids[i], t))
        return false;
  } else if (first->kind == TS_NODE_EXPR_STMT &&
             first->kids[0]->kind == TS_NODE_CALL &&
             first->kids[0]->builtin == TS_BUILTIN_COPY && !ts_copy_packed(first->kids[0])) {
    /* copy(src, t) of the whole tile from something else */
    copy = first->kids[0];
    if (copy->kids[1]->kind != TS_NODE_NAME || copy->kids[1]->sym != t ||
        ts_node_mentions(copy->kids[0], t) || ts_node_mentions(copy->kids[0], s))
      return false;
  } else {
    return false;
  }
  *f = (fused){call, vars, body, copy, rank};
  return true;
}

bool gen_fused_reduce_fits(gen *g, ts_node *first, ts_node *next) {
  fused f;
  return fused_fits(g, first, next, &f);
}

bool gen_fused_reduce(gen *g, ts_node *first, ts_node *next) {
  fused f;
  if (!fused_fits(g, first, next, &f))
    return false;
  ts_node *call = f.call, *vars = f.vars, *body = f.body, *copy = f.copy;
  uint32_t rank = f.rank;
  mb *b = &g->b;
  view pool[16], tv, sv, src;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &tv, pool, &np) ||
      !gen_view_of(g, call->kids[1], &sv, pool, &np) ||
      (copy && !gen_view_of(g, copy->kids[0], &src, pool, &np)))
    return false;
  MlirValue ext[TS_MAX_RANK], k[TS_MAX_RANK];
  for (uint32_t i = 0; i < rank; i++)
    ext[i] = body ? gen_expr_as(g, first->kids[1]->kids[i], b->i64) : tv.vext[i];
  loop L[TS_MAX_RANK], inner;
  gen_loops_begin(g, L, ext, rank - 1, k);
  racc a;
  racc_init(g, &a, call->builtin, b->f32);
  gen_loop_begin(g, &inner, gen_i64(g, 0), ext[rank - 1]);
  k[rank - 1] = inner.iv;
  MlirValue x;
  if (body) {
    for (uint32_t i = 0; i < rank; i++)
      vars->kids[i]->sym->user = k[i].ptr;
    g->par++;
    gen_block(g, body);
    g->par--;
    gen_view_load(g, &tv, k, &x);
  } else {
    gen_view_load(g, &src, k, &x);
    x = gen_convert(g, x, b->f32);
    gen_view_store(g, &tv, k, x);
  }
  racc_step(g, &a, x);
  gen_loop_end(g, &inner);
  MlirValue out[TS_MAX_RANK] = {gen_i64(g, 0)};
  for (uint32_t i = 0; i + 1 < rank; i++)
    out[i] = k[i];
  gen_view_store(g, &sv, out, gen_convert(g, racc_value(g, &a), gen_compute_type(g, sv.dt)));
  gen_loops_end(g, L, rank - 1);
  return true;
}
