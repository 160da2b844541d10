/* gen_bf16.c - the CPU's bf16 GEMM micro-kernels on AVX-512 BF16, which
 * gen_tile.c gen_gemm takes for gemms of bf16 a and b into f32 c (the
 * tensor-core kernels' CPU form: attention, the bf16 experts, gemm_nt).
 *
 * vdpbf16ps adds to each f32 lane of its accumulator the products of two
 * bf16 pairs, 32 products an instruction at the f32 FMA's rate: twice its
 * multiply-adds. Lane l takes element 2l + 1's product and then 2l's, each
 * addition rounded to nearest even (the product of two bf16 is exact in
 * f32), with subnormal inputs and results flushed to zero: on this host's
 * Zen 4 the same bits as those two f32 additions on 3.2M random normal
 * lanes. So the sums differ from the plain loops' (k in order, one FMA a
 * product: the same roundings) only in the order within each pair and in
 * subnormals, and an element's order depends on K alone:
 *   a . b, b [K, N]: one element at a time from c, k = 1, 0, 3, 2, 5, 4, ...
 *   a . b^T, b [N, K]: 16 lanes, lane l taking k = 32 s + 2 l + 1 then
 *     32 s + 2 l for s = 0, 1, ...; lane l + 8 added to lane l, then the dot
 *     micro-kernel's halving tree over 8 lanes (gen_dot_finish: 16 lanes),
 *     added to c when it accumulates.
 * Operands are bf16 rows of contiguous elements (whole tiles, or slices of
 * tiles and tensors whose corners are checked at run time, the plain loops
 * otherwise); a . b needs K even and N % 16 == 0 (b is first packed into
 * [K / 2, N] pairs), a . b^T K % 32 == 0. */
#include "compiler/gen_internal.h"

/* The most elements of b that x w packs (on the stack: 256 KiB) */
enum { PACK_MAX = 1 << 17 };

/* Rows of contiguous elements: element (i, k) at mem[base + i * stride + k]. */
typedef struct flat {
  MlirValue mem, base, stride;
} flat;

/* The constant extent d of gemm operand n (a tile, or a slice of constant
 * extents), or -1. */
static int64_t extent_of(const ts_node *n, uint32_t d) {
  const ts_type *t = n->type;
  if (!t || t->rank != 2 || t->dims[d].term_count || t->dims[d].c <= 0)
    return -1;
  return t->dims[d].c;
}

/* View v [R, C] as flat rows (gen_forward_view, not in registers, not
 * swizzled or padded), or false. Where v is not known to lie in its buffer,
 * *ok is and'ed with its corners' being there (gen_slice_span). */
static bool flat_of(gen *g, view *v, int64_t R, int64_t C, flat *f, MlirValue *ok) {
  if (!gen_forward_view(v) || v->regs || v->swz || v->pad || v->skip_dim >= 0)
    return false;
  MlirValue in = gen_slice_span(g, v, R, C, NULL, 0, &f->base, &f->stride);
  f->mem = v->mem;
  if (!v->in_range && !v->unchecked)
    *ok = mb_bin(&g->b, "arith.andi", *ok, in);
  return true;
}

static MlirValue at_index(gen *g, const flat *f, MlirValue row, MlirValue col) {
  mb *b = &g->b;
  MlirValue at = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, f->stride), col);
  return mb_cast(b, "arith.index_cast", mb_bin(b, "arith.addi", f->base, at), b->index);
}

static MlirType vec(int64_t n, MlirType t) {
  return mlirVectorTypeGet(1, &n, t);
}

static MlirValue vload(gen *g, MlirValue mem, MlirValue idx, MlirType t) {
  MlirValue ops[2] = {mem, idx};
  return mb_op1(&g->b, "vector.load", 2, ops, t);
}

static void vstore(gen *g, MlirValue x, MlirValue mem, MlirValue idx) {
  MlirValue ops[3] = {x, mem, idx};
  mb_op(&g->b, "vector.store", 3, ops, 0, NULL, 0, NULL);
}

/* acc (16 f32) + the products of bf16 pairs x and y (32 i16 each) */
static MlirValue dpbf16(mb *b, MlirValue acc, MlirValue x, MlirValue y) {
  MlirType bt = vec(32, mlirBF16TypeGet(b->ctx));
  MlirValue ops[3] = {acc, mb_cast(b, "vector.bitcast", x, bt),
                      mb_cast(b, "vector.bitcast", y, bt)};
  return gen_x86_intrinsic(b, "llvm.x86.avx512bf16.dpbf16ps.512", 3, ops, mlirValueGetType(acc));
}

/* c (+)= a . b^T: blocks of RA x RB elements, each a vector of 16 lanes
 * across the k loop, 32 k a step. */
static void dot_bt(gen *g, const flat *A, const flat *B, const flat *C, int64_t M, int64_t N,
                   int64_t K, bool acc) {
  mb *b = &g->b;
  int RA = M % 4 == 0 ? 4 : M % 2 == 0 ? 2 : 1;
  int RB = N % (16 / RA) == 0 ? 16 / RA : N % 4 == 0 ? 4 : N % 2 == 0 ? 2 : 1;
  gen_ukernel u;
  gen_ukernel_begin(g, &u, 16, RA * RB, M, N, RA, RB);
  MlirType vi = vec(32, b->i16);
  int n = RA * RB;
  for (int q = 0; q < n; q++)
    mb_store(b, u.zero, u.slots, gen_i64(g, q));
  loop lk;
  gen_loop_begin(g, &lk, gen_i64(g, 0), gen_i64(g, K / 32));
  MlirValue k0 = mb_bin(b, "arith.muli", lk.iv, gen_i64(g, 32)), av[4], bv[16];
  for (int r = 0; r < RA; r++)
    av[r] = vload(g, A->mem, at_index(g, A, mb_bin(b, "arith.addi", u.i0, gen_i64(g, r)), k0), vi);
  for (int s = 0; s < RB; s++)
    bv[s] = vload(g, B->mem, at_index(g, B, mb_bin(b, "arith.addi", u.j0, gen_i64(g, s)), k0), vi);
  for (int r = 0; r < RA; r++)
    for (int s = 0; s < RB; s++)
      mb_store(b, dpbf16(b, mb_load(b, u.slots, gen_i64(g, r * RB + s)), av[r], bv[s]), u.slots,
               gen_i64(g, r * RB + s));
  gen_loop_end(g, &lk);
  /* the halving tree over 16 lanes (lane l + 8 to lane l, then + 4, + 2,
   * + 1: the 8-lane tree's order after a first level) leaves the block's
   * sums in one vector; each row's RB go into c as one vector */
  MlirValue v[16], at[16];
  for (int q = 0; q < n; q++) {
    v[q] = mb_load(b, u.slots, gen_i64(g, q));
    MlirValue row = mb_bin(b, "arith.addi", u.i0, gen_i64(g, q / RB));
    MlirValue col = mb_bin(b, "arith.addi", u.j0, gen_i64(g, q % RB));
    at[q] = mb_bin(b, "arith.addi", C->base,
                   mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, C->stride), col));
  }
  gen_dot_finish(g, u.vt, 16, v, n, RB, at, C->mem, acc);
  gen_ukernel_end(g, &u);
}

/* c (+)= a . b: b packed into [K / 2, N] pairs (b[2p, n], b[2p + 1, n]),
 * then blocks of R rows x NV vectors of 16 columns held across the k loop,
 * each step broadcasting a row's pair a[i, 2p..2p+1]. */
static void dot_b(gen *g, const flat *A, const flat *B, const flat *C, int64_t M, int64_t N,
                  int64_t K, bool acc) {
  mb *b = &g->b;
  int64_t P = K / 2, NW = N / 16;
  int R = M % 4 == 0 ? 4 : M % 2 == 0 ? 2 : 1, NV = NW % 4 == 0 ? 4 : NW % 2 == 0 ? 2 : 1;
  MlirType v16 = vec(16, b->i16), v32 = vec(32, b->i16), vw = vec(16, b->i32);
  MlirValue bp = mb_alloca_entry(b, b->i16, K * N);
  int64_t mix[32];
  for (int l = 0; l < 32; l++)
    mix[l] = (l % 2) * 16 + l / 2;
  loop lp, ln;
  gen_loop_begin(g, &lp, gen_i64(g, 0), gen_i64(g, P));
  gen_loop_begin(g, &ln, gen_i64(g, 0), gen_i64(g, NW));
  MlirValue n0 = mb_bin(b, "arith.muli", ln.iv, gen_i64(g, 16));
  MlirValue r0 = mb_bin(b, "arith.muli", lp.iv, gen_i64(g, 2));
  MlirValue x0 = vload(g, B->mem, at_index(g, B, r0, n0), v16);
  MlirValue x1 =
      vload(g, B->mem, at_index(g, B, mb_bin(b, "arith.addi", r0, gen_i64(g, 1)), n0), v16);
  MlirValue pat = mb_bin(b, "arith.muli",
                         mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", lp.iv, gen_i64(g, N)), n0),
                         gen_i64(g, 2));
  vstore(g, gen_vec_shuffle(b, x0, x1, mix, 32, v32), bp,
         mb_cast(b, "arith.index_cast", pat, b->index));
  gen_loop_end(g, &ln);
  gen_loop_end(g, &lp);
  gen_ukernel u;
  gen_ukernel_begin(g, &u, 16, R * NV, M, N, R, 16 * NV);
  MlirValue cat[4][4];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) {
      MlirValue row = mb_bin(b, "arith.addi", u.i0, gen_i64(g, r));
      cat[r][v] = at_index(g, C, row, mb_bin(b, "arith.addi", u.j0, gen_i64(g, 16 * v)));
      mb_store(b, acc ? vload(g, C->mem, cat[r][v], u.vt) : u.zero, u.slots,
               gen_i64(g, r * NV + v));
    }
  loop lk;
  gen_loop_begin(g, &lk, gen_i64(g, 0), gen_i64(g, P));
  MlirValue bv[4];
  for (int v = 0; v < NV; v++) {
    MlirValue at = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", lk.iv, gen_i64(g, N)),
                          mb_bin(b, "arith.addi", u.j0, gen_i64(g, 16 * v)));
    at = mb_bin(b, "arith.muli", at, gen_i64(g, 2));
    bv[v] = vload(g, bp, mb_cast(b, "arith.index_cast", at, b->index), v32);
  }
  MlirValue k0 = mb_bin(b, "arith.muli", lk.iv, gen_i64(g, 2));
  for (int r = 0; r < R; r++) {
    MlirValue row = mb_bin(b, "arith.addi", u.i0, gen_i64(g, r));
    MlirValue pair = mb_cast(b, "vector.bitcast", vload(g, A->mem, at_index(g, A, row, k0),
                                                        vec(2, b->i16)),
                             vec(1, b->i32));
    int64_t zero = 0;
    MlirNamedAttribute pos = mb_attr(b, "static_position", mlirDenseI64ArrayGet(b->ctx, 1, &zero));
    MlirValue w =
        mlirOperationGetResult(mb_op(b, "vector.extract", 1, &pair, 1, &b->i32, 1, &pos), 0);
    MlirValue av = mb_cast(b, "vector.bitcast", mb_op1(b, "vector.broadcast", 1, &w, vw), v32);
    for (int v = 0; v < NV; v++) {
      MlirValue q = gen_i64(g, r * NV + v);
      mb_store(b, dpbf16(b, mb_load(b, u.slots, q), av, bv[v]), u.slots, q);
    }
  }
  gen_loop_end(g, &lk);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++)
      vstore(g, mb_load(b, u.slots, gen_i64(g, r * NV + v)), C->mem, cat[r][v]);
  gen_ukernel_end(g, &u);
}

bool gen_gemm_bf16(gen *g, ts_node *call, view *A, view *B, view *C, bool ta, bool tb, bool acc) {
  mb *b = &g->b;
  ts_node *na = call->kids[0], *nb = call->kids[1], *nc = call->kids[2];
  if (!gen_host_bf16() || ta || A->dt != TS_DTYPE_BF16 || B->dt != TS_DTYPE_BF16 ||
      C->dt != TS_DTYPE_F32 || !ts_env_flag("TESSERA_CPU_BF16", true))
    return false;
  int64_t M = extent_of(nc, 0), N = extent_of(nc, 1), K = extent_of(na, 1);
  if (M < 0 || N < 0 || K < 0 || extent_of(na, 0) != M || extent_of(nb, tb ? 0 : 1) != N ||
      extent_of(nb, tb ? 1 : 0) != K || (tb ? K % 32 : K % 2 || N % 16 || K * N > PACK_MAX))
    return false;
  MlirValue ok = mb_const_int(b, b->i1, 1);
  flat fa, fb, fc;
  if (!flat_of(g, A, M, K, &fa, &ok) || !flat_of(g, B, tb ? N : K, tb ? K : N, &fb, &ok) ||
      !flat_of(g, C, M, N, &fc, &ok))
    return false;
  bool known = (A->in_range || A->unchecked) && (B->in_range || B->unchecked) &&
               (C->in_range || C->unchecked);
  MlirBlock in = {0}, out = {0}, join = {0};
  if (!known) { /* where a slice's corners lie outside: the plain loops */
    in = mb_block(b, 0, NULL);
    out = mb_block(b, 0, NULL);
    join = mb_block(b, 0, NULL);
    gen_version_br(g, ok, in, out);
    b->cur = in;
  }
  if (tb)
    dot_bt(g, &fa, &fb, &fc, M, N, K, acc);
  else
    dot_b(g, &fa, &fb, &fc, M, N, K, acc);
  if (!known) {
    mb_br(b, join, 0, NULL);
    b->cur = out;
    gen_gemm_loops(g, call, A, B, C, ta, tb, acc);
    mb_br(b, join, 0, NULL);
    b->cur = join;
  }
  return true;
}
