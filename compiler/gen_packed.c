/* gen_packed.c - quantised formats decoded as they are read.
 *
 * copy(src, dst, format="e2m1"[, scale=s]): FP4 codes, two a byte, into
 * their values. dst[..., 2j + h] is the e2m1 value of nibble h of
 * src[..., j] (the low nibble the lower element, as V4's FP4 weights and
 * quant.tile's e2m1_byte hold them), times s[..., (2j + h) / B] with a
 * scale (f32 products), in dst's type (every e2m1 value is exact in each
 * float type); a byte out of range reads as code 0.
 *
 * Everywhere the copy runs element by element over dst, each element
 * loading its byte and decoding its nibble (gen_e2m1); on an AVX-512 host
 * a slice of a tensor into a whole f32 tile decodes 16 bytes a step in
 * registers: each byte twice (a byte unpack), the high nibble's lanes
 * shifted right by 4, and the 32 values looked up in a 16-entry f32 table
 * (vpermps reads an index's low 4 bits) - 6 instructions a 16 values,
 * against about 11 for the arithmetic decode.
 *
 * The dot micro-kernel's rows decoded in registers (gen_tile.c
 * gen_gemm_in_place: a decode step's weights read where they lie): FP4
 * codes and their scales by the same lookup, FP8 by byte tables. */
#include "compiler/gen_internal.h"

#include <string.h>

/* The f32 value of the e2m1 code in the low 4 bits of i32 `code` (the
 * arithmetic of quant.tile e2m1_value): magnitude codes 2-7 are
 * 2^(e - 1) (1 + m / 2), their f32 bits (m + 252) << 22; 1 is 0.5. */
static MlirValue gen_e2m1(gen *g, MlirValue code) {
  mb *b = &g->b;
  MlirType i32 = b->i32;
  MlirValue m = mb_bin(b, "arith.andi", code, mb_const_int(b, i32, 7));
  MlirValue small =
      mb_bin(b, "arith.muli", m, mb_const_int(b, i32, 0x3f000000));
  MlirValue big = mb_bin(b, "arith.shli",
                         mb_bin(b, "arith.addi", m, mb_const_int(b, i32, 252)),
                         mb_const_int(b, i32, 22));
  MlirValue mag = mb_select(b, mb_cmpi(b, CMPI_SLT, m, mb_const_int(b, i32, 2)),
                            small, big);
  MlirValue sign = mb_bin(
      b, "arith.shli", mb_bin(b, "arith.andi", code, mb_const_int(b, i32, 8)),
      mb_const_int(b, i32, 28));
  return mb_cast(b, "arith.bitcast", mb_bin(b, "arith.ori", mag, sign), b->f32);
}

/* Twice the value of the e2m1 code in the low 4 bits of i32 `code`, an
 * i32 in [-12, 12] (quant.tile e2m1_twice): codes 2-7 are
 * (2 + (m & 1)) << ((m >> 1) - 1). */
static MlirValue gen_e2m1_twice(gen *g, MlirValue code) {
  mb *b = &g->b;
  MlirType i32 = b->i32;
  MlirValue m = mb_bin(b, "arith.andi", code, mb_const_int(b, i32, 7));
  MlirValue big =
      mb_bin(b, "arith.shli",
             mb_bin(b, "arith.addi",
                    mb_bin(b, "arith.andi", m, mb_const_int(b, i32, 1)),
                    mb_const_int(b, i32, 2)),
             mb_bin(b, "arith.subi",
                    mb_bin(b, "arith.shrsi", m, mb_const_int(b, i32, 1)),
                    mb_const_int(b, i32, 1)));
  MlirValue v =
      mb_select(b, mb_cmpi(b, CMPI_SLT, m, mb_const_int(b, i32, 2)), m, big);
  MlirValue neg = mb_cmpi(
      b, CMPI_NE, mb_bin(b, "arith.andi", code, mb_const_int(b, i32, 8)),
      mb_const_int(b, i32, 0));
  return mb_select(b, neg, mb_bin(b, "arith.subi", mb_const_int(b, i32, 0), v),
                   v);
}

/* Byte j of the view's row (k with k[last] = j) as an i32 (0 out of range). */
static MlirValue code_byte(gen *g, view *src, MlirValue *k) {
  MlirValue x;
  gen_view_load(g, src, k, &x);
  return gen_convert(g, x, g->b.i32);
}

/* Element col of the scale view's row (k; the last index col / B), as f32:
 * the factor of element col of the destination's row. */
static MlirValue scale_at(gen *g, view *sv, const MlirValue *k, uint32_t last,
                          MlirValue col, int64_t B) {
  MlirValue ks[TS_MAX_RANK], x;
  memcpy(ks, k, sizeof ks);
  ks[last] = mb_bin(&g->b, "arith.divsi", col, gen_i64(g, B));
  gen_view_load(g, sv, ks, &x);
  return gen_convert(g, x, g->b.f32);
}

static MlirValue vec_const_i32(mb *b, const int32_t *v, int64_t n) {
  MlirType t = mlirVectorTypeGet(1, &n, b->i32);
  MlirNamedAttribute a =
      mb_attr(b, "value", mlirDenseElementsAttrInt32Get(t, n, v));
  return mlirOperationGetResult(
      mb_op(b, "arith.constant", 0, NULL, 1, &t, 1, &a), 0);
}

static void vec_store(mb *b, MlirValue v, MlirValue mem, MlirValue at) {
  MlirValue ops[3] = {v, mem, mb_cast(b, "arith.index_cast", at, b->index)};
  mb_op(b, "vector.store", 3, ops, 0, NULL, 0, NULL);
}

/* The e2m1 table and the nibble shifts of e2m1_16. */
typedef struct e2m1_consts {
  MlirValue table, shifts;
} e2m1_consts;

static e2m1_consts e2m1_make(mb *b) {
  static const int32_t bits[16] = {
      0x00000000,          0x3f000000,          0x3f800000,
      0x3fc00000,          0x40000000,          0x40400000,
      0x40800000,          0x40c00000,          (int32_t)0x80000000,
      (int32_t)0xbf000000, (int32_t)0xbf800000, (int32_t)0xbfc00000,
      (int32_t)0xc0000000, (int32_t)0xc0400000, (int32_t)0xc0800000,
      (int32_t)0xc0c00000};
  int32_t shifts[16];
  for (int l = 0; l < 16; l++)
    shifts[l] = 4 * (l & 1);
  int64_t n = 16;
  return (e2m1_consts){mb_cast(b, "arith.bitcast", vec_const_i32(b, bits, 16),
                               mlirVectorTypeGet(1, &n, b->f32)),
                       vec_const_i32(b, shifts, 16)};
}

/* The 16 values of bytes first .. first + 7 of the byte vector `bytes`:
 * each byte twice, the second's lanes shifted right by 4, looked up. */
static MlirValue e2m1_16(mb *b, const e2m1_consts *e, MlirValue bytes,
                         int first) {
  int64_t n = 16, mask[16];
  MlirType vf = mlirVectorTypeGet(1, &n, b->f32),
           vi = mlirVectorTypeGet(1, &n, b->i32),
           vb = mlirVectorTypeGet(1, &n, b->i8);
  for (int l = 0; l < 16; l++)
    mask[l] = first + l / 2;
  MlirValue dup = gen_vec_shuffle(b, bytes, bytes, mask, 16, vb);
  MlirValue idx =
      mb_bin(b, "arith.shrui", mb_cast(b, "arith.extui", dup, vi), e->shifts);
  MlirValue pops[2] = {e->table, idx};
  return gen_x86_intrinsic(b, "llvm.x86.avx512.permvar.sf.512", 2, pops, vf);
}

/* The 32 doubled values (i8) of the 16 bytes `bytes`, in element order:
 * each nibble looked up in a 16-byte table (pshufb), the two interleaved. */
static MlirValue e2m1x2_32(mb *b, MlirValue bytes) {
  int64_t n = 16, n32 = 32, mask[32];
  MlirType vb = mlirVectorTypeGet(1, &n, b->i8),
           vb32 = mlirVectorTypeGet(1, &n32, b->i8);
  int8_t tab[16];
  for (int c = 0; c < 16; c++) {
    int m = c & 7, v = m < 2 ? m : (2 + (m & 1)) << ((m >> 1) - 1);
    tab[c] = (int8_t)(c & 8 ? -v : v);
  }
  MlirNamedAttribute ta =
      mb_attr(b, "value", mlirDenseElementsAttrInt8Get(vb, 16, tab));
  MlirValue table = mlirOperationGetResult(
      mb_op(b, "arith.constant", 0, NULL, 1, &vb, 1, &ta), 0);
  MlirValue f = mb_op1(b, "vector.broadcast", 1,
                       (MlirValue[]){mb_const_int(b, b->i8, 15)}, vb);
  MlirValue four = mb_op1(b, "vector.broadcast", 1,
                          (MlirValue[]){mb_const_int(b, b->i8, 4)}, vb);
  MlirValue lo = mb_bin(b, "arith.andi", bytes, f);
  MlirValue hi = mb_bin(b, "arith.shrui", bytes, four);
  MlirValue lops[2] = {table, lo}, hops[2] = {table, hi};
  MlirValue lv =
      gen_x86_intrinsic(b, "llvm.x86.ssse3.pshuf.b.128", 2, lops, vb);
  MlirValue hv =
      gen_x86_intrinsic(b, "llvm.x86.ssse3.pshuf.b.128", 2, hops, vb);
  for (int l = 0; l < 32; l++)
    mask[l] = (l & 1 ? 16 : 0) + l / 2;
  return gen_vec_shuffle(b, lv, hv, mask, 32, vb32);
}

/* A row form's set-up (packed_rows, gen_copy_fp8_rows): when src is a
 * tensor slice whose last dim is a plain slice and dst a whole tile, both
 * in memory, loops over dst's rows (L, k) and the row's span: its first
 * element's indices (kd), src's linear start (lin), its in-range bytes
 * [lo, hi) of ext, dst's row start (dlin), and mid, lo plus the whole steps
 * of `step`. False (nothing emitted): not such a copy. */
typedef struct row_span {
  MlirValue kd[TS_MAX_RANK];
  MlirValue lin, lo, hi, mid, dlin;
} row_span;

static bool row_begin(gen *g, view *src, view *dst, bool ext_src, int64_t step, loop *L,
                      MlirValue *k, row_span *r) {
  uint32_t last = src->rank - 1, outer = dst->vrank - 1;
  if (g->gpu || src->in_range || !dst->in_range || dst->vrank == 0 ||
      src->sub[last].kind != SUB_SLICE || src->sub[last].vdim != outer || src->regs ||
      dst->regs || dst->swz || dst->pad)
    return false;
  mb *b = &g->b;
  gen_loops_begin(g, L, dst->vext, outer, k);
  gen_row_range(g, src, k, outer, (ext_src ? src : dst)->vext[outer], &r->lin, &r->lo, &r->hi);
  memcpy(r->kd, k, sizeof r->kd);
  r->kd[outer] = gen_i64(g, 0);
  MlirValue ok;
  gen_view_elem(g, dst, r->kd, &r->dlin, &ok);
  MlirValue n = mb_bin(b, "arith.divsi", mb_bin(b, "arith.subi", r->hi, r->lo), gen_i64(g, step));
  r->mid = mb_bin(b, "arith.addi", r->lo, mb_bin(b, "arith.muli", n, gen_i64(g, step)));
  return true;
}

/* The CPU's form (AVX-512): a tensor slice whose last dim is a plain slice
 * into a whole f32 tile (e2m1) or i8 one (e2m1x2), a row at a time. False:
 * not this form. */
static bool packed_rows(gen *g, view *src, view *dst, view *sv, int64_t B,
                        bool twice) {
  uint32_t outer = dst->vrank - 1;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK];
  row_span rs;
  /* whole 16-byte steps from lo, then a byte at a time */
  if (!gen_host_avx512() || (sv && B % 16) || dst->dt != (twice ? TS_DTYPE_I8 : TS_DTYPE_F32) ||
      !row_begin(g, src, dst, true, 16, L, k, &rs))
    return false;
  mb *b = &g->b;
  MlirValue lin = rs.lin, lo = rs.lo, hi = rs.hi, mid = rs.mid, dlin = rs.dlin;
  int64_t n = 16;
  MlirType vf = mlirVectorTypeGet(1, &n, b->f32),
           vb = mlirVectorTypeGet(1, &n, b->i8);
  e2m1_consts e = e2m1_make(b);
  loop v;
  gen_loop_begin_step(g, &v, lo, mid, gen_i64(g, 16));
  MlirValue ops[2] = {src->mem,
                      mb_cast(b, "arith.index_cast",
                              mb_bin(b, "arith.addi", lin, v.iv), b->index)};
  MlirValue bytes = mb_op1(b, "vector.load", 2, ops, vb);
  if (twice) {
    MlirValue col = mb_bin(b, "arith.addi", v.iv, v.iv);
    vec_store(b, e2m1x2_32(b, bytes), dst->mem,
              mb_bin(b, "arith.addi", dlin, col));
  }
  for (int h = 0; h < 2 && !twice; h++) {
    MlirValue val = e2m1_16(b, &e, bytes, 8 * h);
    MlirValue col = mb_bin(b, "arith.addi", mb_bin(b, "arith.addi", v.iv, v.iv),
                           gen_i64(g, 16 * h));
    if (sv) { /* B a multiple of 16: one scale these 16 */
      MlirValue f = scale_at(g, sv, rs.kd, outer, col, B);
      val = mb_bin(b, "arith.mulf", val,
                   mb_op1(b, "vector.broadcast", 1, &f, vf));
    }
    vec_store(b, val, dst->mem, mb_bin(b, "arith.addi", dlin, col));
  }
  gen_loop_end(g, &v);
  loop t;
  gen_loop_begin(g, &t, mid, hi);
  k[outer] = t.iv;
  src->unchecked = true;
  MlirValue c = code_byte(g, src, k);
  src->unchecked = false;
  for (int h = 0; h < 2; h++) {
    MlirValue col = mb_bin(b, "arith.addi", mb_bin(b, "arith.addi", t.iv, t.iv),
                           gen_i64(g, h));
    MlirValue ch =
        h ? mb_bin(b, "arith.shrsi", c, mb_const_int(b, b->i32, 4)) : c;
    MlirValue x = twice
                      ? mb_cast(b, "arith.trunci", gen_e2m1_twice(g, ch), b->i8)
                      : gen_e2m1(g, ch);
    if (sv)
      x = mb_bin(b, "arith.mulf", x, scale_at(g, sv, rs.kd, outer, col, B));
    mb_store(b, x, dst->mem, mb_bin(b, "arith.addi", dlin, col));
  }
  gen_loop_end(g, &t);
  /* the parts of the tile row outside the tensor: code 0 (+0.0 times the
   * scale, as element by element) */
  MlirValue two = gen_i64(g, 2),
            z = twice ? mb_const_int(b, b->i8, 0) : mb_const_f32(b, 0.0);
  MlirValue ranges[2][2] = {
      {gen_i64(g, 0), mb_bin(b, "arith.muli", lo, two)},
      {mb_bin(b, "arith.muli", hi, two), dst->vext[outer]}};
  for (int r = 0; r < 2; r++) {
    loop zl;
    gen_loop_begin(g, &zl, ranges[r][0], ranges[r][1]);
    MlirValue x =
        sv ? mb_bin(b, "arith.mulf", z, scale_at(g, sv, rs.kd, outer, zl.iv, B))
           : z;
    mb_store(b, x, dst->mem, mb_bin(b, "arith.addi", dlin, zl.iv));
    gen_loop_end(g, &zl);
  }
  gen_loops_end(g, L, outer);
  return true;
}

void gen_copy_packed(gen *g, ts_node *call, view *src, view *dst) {
  view pool[8], scale, *sv = NULL;
  int np = 0;
  int64_t B = ts_copy_scale_block(call);
  if (B > 0) {
    if (!gen_view_of(g, ts_call_named(call, "scale"), &scale, pool, &np))
      return;
    sv = &scale;
  }
  bool twice = ts_copy_twice(call);
  if (packed_rows(g, src, dst, sv, B, twice))
    return;
  mb *b = &g->b;
  uint32_t last = dst->vrank - 1;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK], ks[TS_MAX_RANK];
  gen_elem_begin(g, L, call, dst->vext, dst->vrank, k);
  memcpy(ks, k, sizeof k);
  ks[last] = mb_bin(b, "arith.shrsi", k[last], gen_i64(g, 1));
  MlirValue c = code_byte(g, src, ks);
  MlirValue half =
      mb_cast(b, "arith.trunci",
              mb_bin(b, "arith.andi", k[last], gen_i64(g, 1)), b->i32);
  c = mb_bin(b, "arith.shrsi", c,
             mb_bin(b, "arith.shli", half, mb_const_int(b, b->i32, 2)));
  MlirValue x = twice ? gen_e2m1_twice(g, c) : gen_e2m1(g, c);
  if (sv)
    x = mb_bin(b, "arith.mulf", x, scale_at(g, sv, k, last, k[last], B));
  gen_view_store(g, dst, k, gen_convert(g, x, gen_compute_type(g, dst->dt)));
  gen_elem_end(g, L, dst->vrank);
}

/* ---- FP8 operands decoded in registers (AVX-512 VBMI) -------------------- */

static MlirValue bytes64(mb *b, const int8_t *v) {
  int64_t n = 64;
  MlirType t = mlirVectorTypeGet(1, &n, b->i8);
  MlirNamedAttribute a =
      mb_attr(b, "value", mlirDenseElementsAttrInt8Get(t, 64, v));
  return mlirOperationGetResult(
      mb_op(b, "arith.constant", 0, NULL, 1, &t, 1, &a), 0);
}

fp8_tables gen_fp8_tables(mb *b) {
  int8_t tp[128], tn[128], nx[128], z[64] = {0}, lz[64];
  for (int c = 0; c < 128; c++) {
    float p = ts_e4m3_to_f32((uint8_t)c),
          q = ts_e4m3_to_f32((uint8_t)(c | 0x80));
    uint32_t pb, qb;
    memcpy(&pb, &p, 4);
    memcpy(&qb, &q, 4);
    tp[c] = (int8_t)(pb >> 24);
    tn[c] = (int8_t)(qb >> 24);
    nx[c] = (int8_t)(pb >> 16); /* (q's is p's) */
  }
  for (int l = 0; l < 64; l++)
    lz[l] = (int8_t)(l % 4 < 2 ? 0 : -1); /* each f32's two low bytes off */
  fp8_tables t;
  for (int h = 0; h < 2; h++) {
    t.top_pos[h] = bytes64(b, tp + 64 * h);
    t.top_neg[h] = bytes64(b, tn + 64 * h);
    t.next[h] = bytes64(b, nx + 64 * h);
  }
  t.zero = bytes64(b, z);
  t.low_zero = bytes64(b, lz);
  return t;
}

/* vpermi2b: byte i = tab[idx[i] & 127] of the 128-byte table tab[0..1]. */
static MlirValue lookup128(mb *b, const MlirValue tab[2], MlirValue idx) {
  MlirValue ops[3] = {tab[0], idx, tab[1]};
  return gen_x86_intrinsic(b, "llvm.x86.avx512.vpermi2var.qi.512", 3, ops,
                           mlirValueGetType(idx));
}

static MlirValue slice8(mb *b, MlirValue v, int64_t off, MlirType rt) {
  MlirAttribute o = mlirIntegerAttrGet(b->i64, off),
                n = mlirIntegerAttrGet(b->i64, 8),
                one = mlirIntegerAttrGet(b->i64, 1);
  MlirNamedAttribute a[3] = {
      mb_attr(b, "offsets", mlirArrayAttrGet(b->ctx, 1, &o)),
      mb_attr(b, "sizes", mlirArrayAttrGet(b->ctx, 1, &n)),
      mb_attr(b, "strides", mlirArrayAttrGet(b->ctx, 1, &one))};
  return mlirOperationGetResult(
      mb_op(b, "vector.extract_strided_slice", 1, &v, 1, &rt, 3, a), 0);
}

/* The 64 e4m3 codes of `code` (vector<64xi8>) as four vector<16xf32>:
 * out[q] holds codes 16q .. 16q + 15. */
static void fp8_64(mb *b, const fp8_tables *t, MlirValue code, MlirValue out[4]) {
  int64_t n64 = 64, n16 = 16;
  MlirType bt = mlirVectorTypeGet(1, &n64, b->i8),
           ft = mlirVectorTypeGet(1, &n16, b->f32);
  MlirValue neg = mb_cmpi(b, CMPI_SLT, code, t->zero);
  MlirValue top = mb_select(b, neg, lookup128(b, t->top_neg, code),
                            lookup128(b, t->top_pos, code));
  MlirValue next = lookup128(b, t->next, code);
  for (int q = 0; q < 4; q++) { /* f32 bytes (0, 0, next, top) */
    int64_t mask[64];
    for (int l = 0; l < 64; l++)
      mask[l] = (l % 4 == 3 ? 64 : 0) + 16 * q + l / 4;
    MlirValue v =
        mb_bin(b, "arith.andi", gen_vec_shuffle(b, next, top, mask, 64, bt),
               t->low_zero);
    out[q] = mb_cast(b, "vector.bitcast", v, ft);
  }
}

/* The 64 e4m3 codes of row `row` from k0 as eight f32 vectors (type vt) of
 * 8: out[u] holds k0 + 8u .. k0 + 8u + 7. */
void gen_fp8_row(gen *g, const fp8_tables *t, const dot_src *s, MlirValue row,
                 MlirValue k0, MlirType vt, MlirValue out[8]) {
  mb *b = &g->b;
  int64_t n64 = 64;
  MlirType bt = mlirVectorTypeGet(1, &n64, b->i8);
  MlirValue at =
      mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, s->stride), k0);
  at = mb_bin(b, "arith.addi", s->base, at);
  MlirValue ops[2] = {s->mem, mb_cast(b, "arith.index_cast", at, b->index)};
  MlirValue v[4];
  fp8_64(b, t, mb_op1(b, "vector.load", 2, ops, bt), v);
  for (int q = 0; q < 4; q++) {
    out[2 * q] = slice8(b, v[q], 0, vt);
    out[2 * q + 1] = slice8(b, v[q], 8, vt);
  }
}

/* The CPU's row form of a copy from a slice of an fp8e4m3 tensor (its last
 * dim a plain slice) into a whole f32 tile, on AVX-512 VBMI: each row's
 * in-range codes 64 a step by fp8_64's lookups (about 13 instructions a 64
 * values, where the arithmetic decode copy_rows vectorises takes about 10
 * a 16), the rest one at a time; the tile's columns outside the tensor
 * zero. The same values as the element form (the tables are its decode's),
 * NaN codes included. False: not this form. */
bool gen_copy_fp8_rows(gen *g, view *src, view *dst) {
  uint32_t outer = dst->vrank - 1;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK];
  row_span rs;
  if (!gen_host_vbmi() || src->dt != TS_DTYPE_FP8E4M3 || dst->dt != TS_DTYPE_F32 ||
      !row_begin(g, src, dst, false, 64, L, k, &rs))
    return false;
  mb *b = &g->b;
  MlirValue lin = rs.lin, lo = rs.lo, hi = rs.hi, mid = rs.mid, dlin = rs.dlin;
  int64_t w = 64;
  MlirType bt = mlirVectorTypeGet(1, &w, b->i8);
  fp8_tables t = gen_fp8_tables(b);
  loop v;
  gen_loop_begin_step(g, &v, lo, mid, gen_i64(g, 64));
  MlirValue ops[2] = {src->mem, mb_cast(b, "arith.index_cast",
                                        mb_bin(b, "arith.addi", lin, v.iv), b->index)};
  MlirValue x[4];
  fp8_64(b, &t, mb_op1(b, "vector.load", 2, ops, bt), x);
  for (int q = 0; q < 4; q++)
    vec_store(b, x[q], dst->mem,
              mb_bin(b, "arith.addi", dlin, mb_bin(b, "arith.addi", v.iv, gen_i64(g, 16 * q))));
  gen_loop_end(g, &v);
  /* the in-range tail, then the columns outside the tensor */
  MlirValue ranges[3][2] = {{mid, hi}, {gen_i64(g, 0), lo}, {hi, dst->vext[outer]}};
  for (int r = 0; r < 3; r++) {
    loop e;
    gen_loop_begin(g, &e, ranges[r][0], ranges[r][1]);
    MlirValue c = mb_const_f32(b, 0.0);
    if (r == 0) {
      k[outer] = e.iv;
      src->unchecked = true;
      gen_view_load(g, src, k, &c);
      src->unchecked = false;
      c = gen_convert(g, c, b->f32);
    }
    mb_store(b, c, dst->mem, mb_bin(b, "arith.addi", dlin, e.iv));
    gen_loop_end(g, &e);
  }
  gen_loops_end(g, L, outer);
  return true;
}

/* ---- FP4 operands decoded in registers (AVX-512) ------------------------- */

void gen_fp4_row(gen *g, const dot_src *s, MlirValue row, MlirValue k0,
                 MlirType vt, MlirValue out[8]) {
  mb *b = &g->b;
  int64_t n32 = 32, n16 = 16;
  MlirType bt = mlirVectorTypeGet(1, &n32, b->i8),
           ft = mlirVectorTypeGet(1, &n16, b->f32);
  MlirValue half = mb_bin(b, "arith.shrsi", k0, gen_i64(g, 1));
  MlirValue at =
      mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", row, s->stride), half);
  at = mb_bin(b, "arith.addi", s->base, at);
  MlirValue ops[2] = {s->mem, mb_cast(b, "arith.index_cast", at, b->index)};
  MlirValue bytes = mb_op1(b, "vector.load", 2, ops, bt);
  e2m1_consts e = e2m1_make(b);
  MlirValue srow = s->sblk ? mb_bin(b, "arith.addi", s->sbase,
                                    mb_bin(b, "arith.muli", row, s->sstride))
                           : row;
  for (int q = 0; q < 4; q++) { /* values 16q .. 16q + 15: bytes 8q .. 8q + 7 */
    MlirValue v = e2m1_16(b, &e, bytes, 8 * q);
    if (s->sblk) { /* one scale these 16 (sblk a multiple of 16) */
      MlirValue kq = mb_bin(b, "arith.addi", k0, gen_i64(g, 16 * q));
      MlirValue si = mb_bin(b, "arith.addi", srow,
                            mb_bin(b, "arith.divsi", kq, gen_i64(g, s->sblk)));
      MlirValue f = mb_load(b, s->smem, si);
      v = mb_bin(b, "arith.mulf", v, mb_op1(b, "vector.broadcast", 1, &f, ft));
    }
    out[2 * q] = slice8(b, v, 0, vt);
    out[2 * q + 1] = slice8(b, v, 8, vt);
  }
}
