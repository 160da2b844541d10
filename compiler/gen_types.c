/* gen_types.c - the types of the generated code and the conversions
 * between them: how each dtype is stored and computed in (docs/abi.md),
 * conversions between compute types, and the narrow floats (bf16, f16, fp8
 * e4m3) to and from their storage, rounding to nearest even - the same
 * integer code on every target, bit-exact to base/numeric.c. */
#include "compiler/gen_internal.h"

/* ---- types --------------------------------------------------------------- */

/* How an element of dtype `dt` is stored in memory. */
MlirType gen_storage_type(gen *g, ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_F32: return g->b.f32;
  case TS_DTYPE_F16:
  case TS_DTYPE_BF16: return g->b.i16;
  case TS_DTYPE_FP8E4M3:
  case TS_DTYPE_I8:
  case TS_DTYPE_BOOL: return g->b.i8;
  case TS_DTYPE_I32: return g->b.i32;
  default: return g->b.i64;
  }
}

/* The type a value of dtype `dt` computes in. */
MlirType gen_compute_type(gen *g, ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_F32:
  case TS_DTYPE_F16:
  case TS_DTYPE_BF16:
  case TS_DTYPE_FP8E4M3: return g->b.f32;
  case TS_DTYPE_I8:
  case TS_DTYPE_I32: return g->b.i32;
  case TS_DTYPE_BOOL: return g->b.i1;
  default: return g->b.i64;
  }
}

bool gen_is_float(gen *g, MlirType t) { return mlirTypeEqual(t, g->b.f32); }

int gen_int_width(MlirType t) { return (int)mlirIntegerTypeGetWidth(t); }

/* Converts between compute types (f32, i1, i32, i64). */
MlirValue gen_convert(gen *g, MlirValue v, MlirType to) {
  mb *b = &g->b;
  MlirType from = mlirValueGetType(v);
  if (mlirTypeEqual(from, to))
    return v;
  bool ff = gen_is_float(g, from), tf = gen_is_float(g, to);
  if (ff && !tf)
    return mb_cast(b, "arith.fptosi", v, to);
  if (!ff && tf) {
    if (gen_int_width(from) == 1)
      v = mb_cast(b, "arith.extui", v, b->i32);
    return mb_cast(b, "arith.sitofp", v, to);
  }
  int wf = gen_int_width(from), wt = gen_int_width(to);
  if (wf == 1)
    return mb_cast(b, "arith.extui", v, to);
  if (wt == 1)
    return mb_cmpi(b, CMPI_NE, v, mb_const_int(b, from, 0));
  return wf < wt ? mb_cast(b, "arith.extsi", v, to)
                 : mb_cast(b, "arith.trunci", v, to);
}

/* ---- narrow floats ------------------------------------------------------- */

/* f32 -> bf16 bits, round to nearest even; NaN stays a quiet NaN. */
static MlirValue f32_to_bf16(gen *g, MlirValue v) {
  mb *b = &g->b;
  MlirValue bits = mb_cast(b, "arith.bitcast", v, b->i32);
  MlirValue c16 = mb_const_int(b, b->i32, 16);
  MlirValue hi = mb_bin(b, "arith.shrui", bits, c16);
  MlirValue lsb = mb_bin(b, "arith.andi", hi, mb_const_int(b, b->i32, 1));
  MlirValue bias =
      mb_bin(b, "arith.addi", lsb, mb_const_int(b, b->i32, 0x7fff));
  MlirValue r =
      mb_bin(b, "arith.shrui", mb_bin(b, "arith.addi", bits, bias), c16);
  MlirValue nan = mb_bin(b, "arith.ori", hi, mb_const_int(b, b->i32, 0x40));
  MlirValue isnan = mb_cmpf(b, CMPF_UNO, v, v);
  return mb_cast(b, "arith.trunci", mb_select(b, isnan, nan, r), b->i16);
}

static MlirValue bf16_to_f32(gen *g, MlirValue h) {
  mb *b = &g->b;
  MlirValue w = mb_cast(b, "arith.extui", h, b->i32);
  w = mb_bin(b, "arith.shli", w, mb_const_int(b, b->i32, 16));
  return mb_cast(b, "arith.bitcast", w, b->f32);
}

static MlirValue i32c(gen *g, int64_t v) {
  return mb_const_int(&g->b, g->b.i32, v);
}

/* f32 -> fp8 e4m3 bits, round to nearest even, saturating at 448, NaN ->
 * 0x7f with the sign: base/numeric.c's ts_f32_to_e4m3 in integer ops, the
 * same code on every target. */
static MlirValue f32_to_e4m3(gen *g, MlirValue v) {
  mb *b = &g->b;
  MlirValue bits = mb_cast(b, "arith.bitcast", v, b->i32);
  MlirValue sign =
      mb_bin(b, "arith.andi", mb_bin(b, "arith.shrui", bits, i32c(g, 24)),
             i32c(g, 0x80));
  MlirValue abits = mb_bin(b, "arith.andi", bits, i32c(g, 0x7fffffff));
  MlirValue a = mb_cast(b, "arith.bitcast", abits, b->f32);
  /* normal: keep 3 mantissa bits, rounding the 20 dropped ones to even;
   * (E << 3 | m) - (120 << 3) rebiases the exponent from 127 to 7 */
  MlirValue odd = mb_bin(b, "arith.andi",
                         mb_bin(b, "arith.shrui", abits, i32c(g, 20)),
                         i32c(g, 1));
  MlirValue r = mb_bin(b, "arith.addi", abits,
                       mb_bin(b, "arith.addi", odd, i32c(g, 0x7ffff)));
  MlirValue normal = mb_bin(b, "arith.subi",
                            mb_bin(b, "arith.shrui", r, i32c(g, 20)),
                            i32c(g, 120 << 3));
  /* below 2^-6: steps of 2^-9, rounded to even by adding 2^23 */
  MlirValue big = mb_const_f32(b, 8388608.0);
  MlirValue q = mb_bin(
      b, "arith.subf",
      mb_bin(b, "arith.addf",
             mb_bin(b, "arith.mulf", a, mb_const_f32(b, 512.0)), big),
      big);
  MlirValue sub = mb_cast(b, "arith.fptoui", q, b->i32);
  MlirValue code =
      mb_select(b, mb_cmpf(b, CMPF_OLT, a, mb_const_f32(b, 0.015625)), sub,
                normal);
  code = mb_select(b, mb_cmpf(b, CMPF_OGE, a, mb_const_f32(b, 448.0)),
                   i32c(g, 0x7e), code);
  code = mb_select(b, mb_cmpf(b, CMPF_UNO, v, v), i32c(g, 0x7f), code);
  return mb_cast(b, "arith.trunci", mb_bin(b, "arith.ori", code, sign),
                 b->i8);
}

/* fp8 e4m3 bits -> f32 (ts_e4m3_to_f32): 0x7f and 0xff are NaN. The code
 * is the top of an f16 with the same sign, exponent field and mantissa bits
 * (sign << 15 | (code & 0x7f) << 7): that f16 is the value times 2^-8,
 * subnormals included (both formats' subnormals count the mantissa in
 * units of their least exponent), and f16 -> f32 is one instruction on
 * CPUs with F16C and on GPUs (cvt.f32.f16), exact, as is the * 256. The
 * largest code's f16 exponent field is 15, far from f16's infinities, so
 * only the NaN codes need a select. */
static MlirValue e4m3_to_f32(gen *g, MlirValue h) {
  mb *b = &g->b;
  MlirType i16 = mlirIntegerTypeGet(b->ctx, 16);
  MlirValue w = mb_cast(b, "arith.extui", h, i16);
  MlirValue mag = mb_bin(b, "arith.andi", w, mb_const_int(b, i16, 0x7f));
  MlirValue bits = mb_bin(
      b, "arith.ori", mb_bin(b, "arith.shli", mag, mb_const_int(b, i16, 7)),
      mb_bin(b, "arith.shli", mb_bin(b, "arith.andi", w, mb_const_int(b, i16, 0x80)),
             mb_const_int(b, i16, 8)));
  MlirValue x = mb_bin(
      b, "arith.mulf",
      mb_cast(b, "arith.extf", mb_cast(b, "arith.bitcast", bits, b->f16), b->f32),
      mb_const_f32(b, 256.0));
  MlirValue nan = mb_cmpi(b, CMPI_EQ, mag, mb_const_int(b, i16, 0x7f));
  return mb_select(b, nan, mb_const_f32(b, __builtin_nan("")), x);
}

/* A value of compute type -> the storage of dtype `dt`. */
MlirValue gen_to_storage(gen *g, MlirValue v, ts_dtype dt) {
  mb *b = &g->b;
  switch (dt) {
  case TS_DTYPE_BF16: return f32_to_bf16(g, gen_convert(g, v, b->f32));
  case TS_DTYPE_F16: {
    MlirValue h = mb_cast(b, "arith.truncf", gen_convert(g, v, b->f32), b->f16);
    return mb_cast(b, "arith.bitcast", h, b->i16);
  }
  case TS_DTYPE_FP8E4M3:
    return f32_to_e4m3(g, gen_convert(g, v, b->f32));
  case TS_DTYPE_I8:
    return mb_cast(b, "arith.trunci", gen_convert(g, v, b->i32), b->i8);
  case TS_DTYPE_BOOL:
    return mb_cast(b, "arith.extui", gen_convert(g, v, b->i1), b->i8);
  default: return gen_convert(g, v, gen_storage_type(g, dt));
  }
}

MlirValue gen_from_storage(gen *g, MlirValue v, ts_dtype dt) {
  mb *b = &g->b;
  switch (dt) {
  case TS_DTYPE_BF16: return bf16_to_f32(g, v);
  case TS_DTYPE_F16:
    return mb_cast(b, "arith.extf", mb_cast(b, "arith.bitcast", v, b->f16),
                   b->f32);
  case TS_DTYPE_FP8E4M3: return e4m3_to_f32(g, v);
  case TS_DTYPE_I8: return mb_cast(b, "arith.extsi", v, b->i32);
  case TS_DTYPE_BOOL: return mb_cmpi(b, CMPI_NE, v, mb_const_int(b, b->i8, 0));
  default: return v;
  }
}
