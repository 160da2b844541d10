/* gen_packed.c - copy(src, dst, format="e2m1"): FP4 codes, two a byte,
 * into their values. dst[..., 2j + h] is the e2m1 value of nibble h of
 * src[..., j] (the low nibble the lower element, as V4's FP4 weights and
 * quant.tile's e2m1_byte hold them), in dst's type (every e2m1 value is
 * exact in each float type); a byte out of range reads as code 0 (+0.0).
 *
 * Everywhere the copy runs element by element over dst, each element
 * loading its byte and decoding its nibble (gen_e2m1); on an AVX-512 host
 * a slice of a tensor into a whole f32 tile decodes 16 bytes a step in
 * registers: each byte twice (a byte unpack), the high nibble's lanes
 * shifted right by 4, and the 32 values looked up in a 16-entry f32 table
 * (vpermps reads an index's low 4 bits) - 6 instructions a 16 values,
 * against about 11 for the arithmetic decode. */
#include "compiler/gen_internal.h"

#include <string.h>

/* The f32 value of the e2m1 code in the low 4 bits of i32 `code` (the
 * arithmetic of quant.tile e2m1_value): magnitude codes 2-7 are
 * 2^(e - 1) (1 + m / 2), their f32 bits (m + 252) << 22; 1 is 0.5. */
static MlirValue gen_e2m1(gen *g, MlirValue code) {
  mb *b = &g->b;
  MlirType i32 = b->i32;
  MlirValue m = mb_bin(b, "arith.andi", code, mb_const_int(b, i32, 7));
  MlirValue small = mb_bin(b, "arith.muli", m, mb_const_int(b, i32, 0x3f000000));
  MlirValue big = mb_bin(b, "arith.shli", mb_bin(b, "arith.addi", m, mb_const_int(b, i32, 252)),
                         mb_const_int(b, i32, 22));
  MlirValue mag = mb_select(b, mb_cmpi(b, CMPI_SLT, m, mb_const_int(b, i32, 2)), small, big);
  MlirValue sign = mb_bin(b, "arith.shli", mb_bin(b, "arith.andi", code, mb_const_int(b, i32, 8)),
                          mb_const_int(b, i32, 28));
  return mb_cast(b, "arith.bitcast", mb_bin(b, "arith.ori", mag, sign), b->f32);
}

/* Byte j of the view's row (k with k[last] = j) as an i32 (0 out of range). */
static MlirValue code_byte(gen *g, view *src, MlirValue *k) {
  MlirValue x;
  gen_view_load(g, src, k, &x);
  return gen_convert(g, x, g->b.i32);
}

static MlirValue vec_const_i32(mb *b, const int32_t *v, int64_t n) {
  MlirType t = mlirVectorTypeGet(1, &n, b->i32);
  MlirNamedAttribute a = mb_attr(b, "value", mlirDenseElementsAttrInt32Get(t, n, v));
  return mlirOperationGetResult(mb_op(b, "arith.constant", 0, NULL, 1, &t, 1, &a), 0);
}

static void vec_store(mb *b, MlirValue v, MlirValue mem, MlirValue at) {
  MlirValue ops[3] = {v, mem, mb_cast(b, "arith.index_cast", at, b->index)};
  mb_op(b, "vector.store", 3, ops, 0, NULL, 0, NULL);
}

/* The CPU's form (AVX-512): a tensor slice whose last dim is a plain slice
 * into a whole f32 tile, a row at a time. False: not this form. */
static bool packed_rows(gen *g, view *src, view *dst) {
  uint32_t last = src->rank - 1, outer = dst->vrank - 1;
  if (g->gpu || !gen_host_avx512() || src->in_range || !dst->in_range || dst->vrank == 0 ||
      dst->dt != TS_DTYPE_F32 || src->sub[last].kind != SUB_SLICE ||
      src->sub[last].vdim != outer || src->regs || dst->regs || dst->swz || dst->pad)
    return false;
  mb *b = &g->b;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK], kd[TS_MAX_RANK];
  gen_loops_begin(g, L, dst->vext, outer, k);
  MlirValue lin, lo, hi, dlin, ok, one = gen_i64(g, 1);
  gen_row_range(g, src, k, outer, src->vext[outer], &lin, &lo, &hi);
  memcpy(kd, k, sizeof k);
  kd[outer] = gen_i64(g, 0);
  gen_view_elem(g, dst, kd, &dlin, &ok);
  /* whole 16-byte steps from lo, then a byte at a time */
  MlirValue n16 = mb_bin(b, "arith.divsi", mb_bin(b, "arith.subi", hi, lo), gen_i64(g, 16));
  MlirValue mid = mb_bin(b, "arith.addi", lo, mb_bin(b, "arith.muli", n16, gen_i64(g, 16)));
  static const int32_t e2m1_bits[16] = {
      0x00000000, 0x3f000000, 0x3f800000, 0x3fc00000, 0x40000000, 0x40400000,
      0x40800000, 0x40c00000, (int32_t)0x80000000, (int32_t)0xbf000000, (int32_t)0xbf800000,
      (int32_t)0xbfc00000, (int32_t)0xc0000000, (int32_t)0xc0400000, (int32_t)0xc0800000,
      (int32_t)0xc0c00000};
  int32_t shifts[16];
  for (int l = 0; l < 16; l++)
    shifts[l] = 4 * (l & 1);
  int64_t n = 16;
  MlirType vf = mlirVectorTypeGet(1, &n, b->f32), vi = mlirVectorTypeGet(1, &n, b->i32),
           vb = mlirVectorTypeGet(1, &n, b->i8);
  MlirValue table = mb_cast(b, "arith.bitcast", vec_const_i32(b, e2m1_bits, 16), vf);
  MlirValue sh = vec_const_i32(b, shifts, 16);
  loop v;
  gen_loop_begin_step(g, &v, lo, mid, gen_i64(g, 16));
  MlirValue ops[2] = {src->mem,
                      mb_cast(b, "arith.index_cast", mb_bin(b, "arith.addi", lin, v.iv), b->index)};
  MlirValue bytes = mb_op1(b, "vector.load", 2, ops, vb);
  for (int h = 0; h < 2; h++) {
    int64_t mask[16];
    for (int l = 0; l < 16; l++)
      mask[l] = 8 * h + l / 2; /* each byte twice */
    MlirNamedAttribute a = mb_attr(b, "mask", mlirDenseI64ArrayGet(b->ctx, 16, mask));
    MlirValue two[2] = {bytes, bytes};
    MlirValue dup = mlirOperationGetResult(mb_op(b, "vector.shuffle", 2, two, 1, &vb, 1, &a), 0);
    MlirValue idx = mb_bin(b, "arith.shrui", mb_cast(b, "arith.extui", dup, vi), sh);
    MlirValue pops[2] = {table, idx};
    MlirValue val = gen_x86_intrinsic(b, "llvm.x86.avx512.permvar.sf.512", 2, pops, vf);
    MlirValue at = mb_bin(b, "arith.addi", mb_bin(b, "arith.addi", dlin, gen_i64(g, 16 * h)),
                          mb_bin(b, "arith.addi", v.iv, v.iv));
    vec_store(b, val, dst->mem, at);
  }
  gen_loop_end(g, &v);
  loop t;
  gen_loop_begin(g, &t, mid, hi);
  k[outer] = t.iv;
  src->unchecked = true;
  MlirValue c = code_byte(g, src, k);
  src->unchecked = false;
  MlirValue at = mb_bin(b, "arith.addi", dlin, mb_bin(b, "arith.addi", t.iv, t.iv));
  mb_store(b, gen_e2m1(g, c), dst->mem, at);
  MlirValue hc = mb_bin(b, "arith.shrsi", c, mb_const_int(b, b->i32, 4));
  mb_store(b, gen_e2m1(g, hc), dst->mem, mb_bin(b, "arith.addi", at, one));
  gen_loop_end(g, &t);
  /* the parts of the tile row outside the tensor: zeros */
  MlirValue two = gen_i64(g, 2), z = mb_const_f32(b, 0.0);
  MlirValue ranges[2][2] = {{gen_i64(g, 0), mb_bin(b, "arith.muli", lo, two)},
                            {mb_bin(b, "arith.muli", hi, two), dst->vext[outer]}};
  for (int r = 0; r < 2; r++) {
    loop zl;
    gen_loop_begin(g, &zl, ranges[r][0], ranges[r][1]);
    mb_store(b, z, dst->mem, mb_bin(b, "arith.addi", dlin, zl.iv));
    gen_loop_end(g, &zl);
  }
  gen_loops_end(g, L, outer);
  return true;
}

void gen_copy_packed(gen *g, ts_node *call, view *src, view *dst) {
  if (packed_rows(g, src, dst))
    return;
  mb *b = &g->b;
  uint32_t last = dst->vrank - 1;
  loop L[TS_MAX_RANK];
  MlirValue k[TS_MAX_RANK], ks[TS_MAX_RANK];
  gen_elem_begin(g, L, call, dst->vext, dst->vrank, k);
  memcpy(ks, k, sizeof k);
  ks[last] = mb_bin(b, "arith.shrsi", k[last], gen_i64(g, 1));
  MlirValue c = code_byte(g, src, ks);
  MlirValue half = mb_cast(b, "arith.trunci", mb_bin(b, "arith.andi", k[last], gen_i64(g, 1)), b->i32);
  c = mb_bin(b, "arith.shrsi", c, mb_bin(b, "arith.shli", half, mb_const_int(b, b->i32, 2)));
  gen_view_store(g, dst, k, gen_convert(g, gen_e2m1(g, c), gen_compute_type(g, dst->dt)));
  gen_elem_end(g, L, dst->vrank);
}
