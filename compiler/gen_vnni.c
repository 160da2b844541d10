/* gen_vnni.c - the CPU's i8 GEMM micro-kernel on AVX-512 VNNI (vpdpbusd:
 * four u8 x s8 products a 32-bit lane, 64 an instruction), which gen_tile.c
 * gen_gemm takes for i8 gemms into i32 of whole constant tiles. */
#include "compiler/gen_internal.h"

/* A whole i8 tile's memref read as 32-bit words (memref.view), or a null
 * value when it is not a plain static 1-d i8 buffer. */
static MlirValue words_of(gen *g, MlirValue mem, int64_t n) {
  mb *b = &g->b;
  MlirType t = mlirValueGetType(mem);
  if (!mlirTypeIsAMemRef(t) || mlirShapedTypeGetRank(t) != 1 ||
      !mlirShapedTypeHasStaticShape(t) || mlirShapedTypeGetDimSize(t, 0) < n ||
      !mlirTypeEqual(mlirShapedTypeGetElementType(t), b->i8) ||
      !mlirAffineMapIsIdentity(mlirMemRefTypeGetAffineMap(t)))
    return (MlirValue){NULL};
  int64_t shape[1] = {n / 4};
  MlirType wt = mlirMemRefTypeContiguousGet(b->i32, 1, shape, mlirAttributeGetNull());
  MlirValue ops[2] = {mem, mb_cast(b, "arith.index_cast", gen_i64(g, 0), b->index)};
  return mb_op1(b, "memref.view", 2, ops, wt);
}

static MlirValue vnni_dot(mb *b, MlirValue acc, MlirValue u8, MlirValue s8) {
  int64_t w = 64;
  MlirType bt = mlirVectorTypeGet(1, &w, b->i8);
  MlirValue ops[3] = {acc, mb_cast(b, "vector.bitcast", u8, bt),
                      mb_cast(b, "vector.bitcast", s8, bt)};
  return gen_x86_intrinsic(b, "llvm.x86.avx512.vpdpbusd.512", 3, ops, mlirValueGetType(acc));
}

/* c (+)= a . b for i8 a [M, K] and b ([K, N], or [N, K] with trans_b) into
 * i32 c, whole tiles of constant shapes, on a host with AVX-512 VNNI.
 * vpdpbusd multiplies unsigned bytes by signed ones: b is first packed into
 * a [K / 4, N] array of 4-byte groups (b[k..k+3, n] a word), the signed
 * side; a step broadcasts a[i, k..k+3] with 128 added to each byte (x ^
 * 0x80), the unsigned side, and adds into R rows by NV vectors of 16
 * columns held in registers. The 128 * sum_k b[k, n] that adds to every
 * row is summed once a call, as b is packed (vpdpbusd with bytes of 128),
 * and taken off at the end: with it a row's (128 * sum_k a[i, k]) took one
 * vpdpbusd more a row and step, 4 a step's 16. Integer sums: the result is
 * exactly the plain loops' (wrapping as they do). Needs K % 4 == 0,
 * N % 16 == 0. */
bool gen_gemm_i8_vnni(gen *g, ts_node *call, view *A, view *B, view *C, bool ta, bool tb,
                      bool acc) {
  mb *b = &g->b;
  ts_node *na = call->kids[0], *nb = call->kids[1], *nc = call->kids[2];
  if (!gen_host_vnni() || ta || A->dt != TS_DTYPE_I8 || B->dt != TS_DTYPE_I8 ||
      C->dt != TS_DTYPE_I32 || !A->in_range || !B->in_range || !C->in_range)
    return false;
  int64_t M = gen_const_dim(nc, 0), N = gen_const_dim(nc, 1), K = gen_const_dim(na, 1);
  if (M <= 0 || N <= 0 || K <= 0 || K % 4 || N % 16 || gen_const_dim(na, 0) != M ||
      gen_const_dim(nb, tb ? 0 : 1) != N || gen_const_dim(nb, tb ? 1 : 0) != K)
    return false;
  MlirValue aw = words_of(g, A->mem, M * K), bw = words_of(g, B->mem, N * K);
  if (mlirValueIsNull(aw) || mlirValueIsNull(bw))
    return false;
  int64_t KW = K / 4, L = 16;
  int NV = N % 64 == 0 ? 4 : N % 32 == 0 ? 2 : 1, R = M % 4 == 0 ? 4 : M % 2 == 0 ? 2 : 1;
  MlirType vt = mlirVectorTypeGet(1, &L, b->i32);
  MlirValue flip = mb_op1(b, "vector.broadcast", 1,
                          (MlirValue[]){mb_const_int(b, b->i32, (int32_t)0x80808080u)}, vt);
  MlirValue zero = mb_op1(b, "vector.broadcast", 1, (MlirValue[]){mb_const_int(b, b->i32, 0)}, vt);
  /* b packed: word (p, n) = b[4p..4p+3, n]; corr[n] = 128 * sum_k b[k, n] */
  MlirValue bp = mb_alloca_entry(b, b->i32, KW * N), corr = mb_alloca_entry(b, b->i32, N);
  for (int64_t n = 0; n < N; n += L) {
    MlirValue ops[3] = {zero, corr, mb_cast(b, "arith.index_cast", gen_i64(g, n), b->index)};
    mb_op(b, "vector.store", 3, ops, 0, NULL, 0, NULL);
  }
  loop lp, ln;
  gen_loop_begin(g, &lp, gen_i64(g, 0), gen_i64(g, KW));
  gen_loop_begin(g, &ln, gen_i64(g, 0), gen_i64(g, N / L));
  MlirValue n0 = mb_bin(b, "arith.muli", ln.iv, gen_i64(g, L)), packed;
  if (tb) { /* words b[n, 4p..4p+3] of 16 rows: a gather of one word a row */
    int32_t idx[16];
    for (int l = 0; l < L; l++)
      idx[l] = (int32_t)(l * KW);
    MlirType it = mlirVectorTypeGet(1, &L, b->i32);
    MlirNamedAttribute va = mb_attr(b, "value", mlirDenseElementsAttrInt32Get(it, L, idx));
    MlirValue offs =
        mlirOperationGetResult(mb_op(b, "arith.constant", 0, NULL, 1, &it, 1, &va), 0);
    MlirValue base = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", n0, gen_i64(g, KW)), lp.iv);
    MlirType mt = mlirVectorTypeGet(1, &L, b->i1);
    MlirValue mask = mb_op1(b, "vector.broadcast", 1, (MlirValue[]){mb_const_int(b, b->i1, 1)}, mt);
    MlirValue gops[5] = {bw, mb_cast(b, "arith.index_cast", base, b->index), offs, mask, zero};
    packed = mb_op1(b, "vector.gather", 5, gops, vt);
  } else { /* rows 4p..4p+3 of 16 bytes interleaved a byte at a time */
    int64_t w16 = 16, w32 = 32;
    MlirType v16 = mlirVectorTypeGet(1, &w16, b->i8), v32 = mlirVectorTypeGet(1, &w32, b->i8);
    MlirValue rows[4];
    for (int r = 0; r < 4; r++) {
      MlirValue at = mb_bin(b, "arith.addi",
                            mb_bin(b, "arith.muli",
                                   mb_bin(b, "arith.addi",
                                          mb_bin(b, "arith.muli", lp.iv, gen_i64(g, 4)),
                                          gen_i64(g, r)),
                                   gen_i64(g, N)),
                            n0);
      MlirValue ops[2] = {B->mem, mb_cast(b, "arith.index_cast", at, b->index)};
      rows[r] = mb_op1(b, "vector.load", 2, ops, v16);
    }
    int64_t m2[32], m4[64];
    for (int l = 0; l < 32; l++)
      m2[l] = (l % 2) * 16 + l / 2;
    for (int l = 0; l < 64; l++)
      m4[l] = (l % 4 / 2) * 32 + (l / 4) * 2 + l % 2;
    MlirValue lo = gen_vec_shuffle(b, rows[0], rows[1], m2, 32, v32);
    MlirValue hi = gen_vec_shuffle(b, rows[2], rows[3], m2, 32, v32);
    int64_t w64 = 64;
    packed = mb_cast(b, "vector.bitcast",
                     gen_vec_shuffle(b, lo, hi, m4, 64, mlirVectorTypeGet(1, &w64, b->i8)), vt);
  }
  MlirValue pat = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", lp.iv, gen_i64(g, N)), n0);
  MlirValue sops[3] = {packed, bp, mb_cast(b, "arith.index_cast", pat, b->index)};
  mb_op(b, "vector.store", 3, sops, 0, NULL, 0, NULL);
  MlirValue cat = mb_cast(b, "arith.index_cast", n0, b->index);
  MlirValue cops[2] = {corr, cat};
  MlirValue csum = vnni_dot(b, mb_op1(b, "vector.load", 2, cops, vt), flip, packed);
  MlirValue csops[3] = {csum, corr, cat};
  mb_op(b, "vector.store", 3, csops, 0, NULL, 0, NULL);
  gen_loop_end(g, &ln);
  gen_loop_end(g, &lp);
  /* a's words with 128 added to each byte, the unsigned side (a copy the
   * size of a's tile: xor-ing each word as it was broadcast cost what the
   * vpdpbusd it saves did) */
  MlirValue af = mb_alloca_entry(b, b->i32, M * KW);
  {
    int64_t n = M * KW, n16 = n / L * L;
    loop lf;
    gen_loop_begin(g, &lf, gen_i64(g, 0), gen_i64(g, n16 / L));
    MlirValue at = mb_cast(b, "arith.index_cast", mb_bin(b, "arith.muli", lf.iv, gen_i64(g, L)),
                           b->index);
    MlirValue lops[2] = {aw, at};
    MlirValue x = mb_bin(b, "arith.xori", mb_op1(b, "vector.load", 2, lops, vt), flip);
    MlirValue sops2[3] = {x, af, at};
    mb_op(b, "vector.store", 3, sops2, 0, NULL, 0, NULL);
    gen_loop_end(g, &lf);
    for (int64_t i = n16; i < n; i++) /* (M * KW no multiple of 16) */
      mb_store(b, mb_bin(b, "arith.xori", mb_load(b, aw, gen_i64(g, i)),
                         mb_const_int(b, b->i32, (int32_t)0x80808080u)),
               af, gen_i64(g, i));
  }
  /* the register blocks */
  int nslots = R * NV;
  MlirValue slots = mb_alloca_entry(b, vt, nslots);
  loop li, lj, lk;
  gen_loop_begin(g, &li, gen_i64(g, 0), gen_i64(g, M / R));
  MlirValue i0 = mb_bin(b, "arith.muli", li.iv, gen_i64(g, R));
  gen_loop_begin(g, &lj, gen_i64(g, 0), gen_i64(g, N / (L * NV)));
  MlirValue j0 = mb_bin(b, "arith.muli", lj.iv, gen_i64(g, L * NV));
  for (int q = 0; q < nslots; q++)
    mb_store(b, zero, slots, gen_i64(g, q));
  gen_loop_begin(g, &lk, gen_i64(g, 0), gen_i64(g, KW));
  MlirValue bv[4];
  for (int v = 0; v < NV; v++) {
    MlirValue at = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", lk.iv, gen_i64(g, N)),
                          mb_bin(b, "arith.addi", j0, gen_i64(g, v * L)));
    MlirValue ops[2] = {bp, mb_cast(b, "arith.index_cast", at, b->index)};
    bv[v] = mb_op1(b, "vector.load", 2, ops, vt);
  }
  for (int r = 0; r < R; r++) {
    MlirValue row = mb_bin(b, "arith.addi", i0, gen_i64(g, r));
    MlirValue wat = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, gen_i64(g, KW)), lk.iv);
    MlirValue w = mb_load(b, af, wat);
    MlirValue av = mb_op1(b, "vector.broadcast", 1, &w, vt);
    for (int v = 0; v < NV; v++) {
      MlirValue q = gen_i64(g, r * NV + v);
      mb_store(b, vnni_dot(b, mb_load(b, slots, q), av, bv[v]), slots, q);
    }
  }
  gen_loop_end(g, &lk);
  MlirValue cv[4];
  for (int v = 0; v < NV; v++) {
    MlirValue ops[2] = {corr, mb_cast(b, "arith.index_cast",
                                      mb_bin(b, "arith.addi", j0, gen_i64(g, v * L)), b->index)};
    cv[v] = mb_op1(b, "vector.load", 2, ops, vt);
  }
  for (int r = 0; r < R; r++) {
    MlirValue row = mb_bin(b, "arith.addi", i0, gen_i64(g, r));
    for (int v = 0; v < NV; v++) {
      MlirValue x = mb_bin(b, "arith.subi", mb_load(b, slots, gen_i64(g, r * NV + v)), cv[v]);
      MlirValue at = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, gen_i64(g, N)),
                            mb_bin(b, "arith.addi", j0, gen_i64(g, v * L)));
      MlirValue idx = mb_cast(b, "arith.index_cast", at, b->index);
      if (acc) {
        MlirValue ops[2] = {C->mem, idx};
        x = mb_bin(b, "arith.addi", mb_op1(b, "vector.load", 2, ops, vt), x);
      }
      MlirValue ops[3] = {x, C->mem, idx};
      mb_op(b, "vector.store", 3, ops, 0, NULL, 0, NULL);
    }
  }
  gen_loop_end(g, &lj);
  gen_loop_end(g, &li);
  return true;
}
