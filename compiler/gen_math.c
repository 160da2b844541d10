/* gen_math.c - math functions in the generated code: single math-dialect
 * ops, fast-math flags, and exp/exp2 as an arith polynomial (Cephes) so
 * that loops of them vectorise on the CPU and need no libdevice call on the
 * GPU (docs/abi.md, "Semantics the CPU code keeps"). */
#include "compiler/gen_internal.h"

#include <stdio.h>

MlirValue gen_math1(gen *g, const char *name, MlirValue x) {
  return mb_un(&g->b, name, x);
}

/* Marks a float op with fast-math flags ("contract" lets a*b+c become an
 * FMA; "reassoc" lets a sum be reordered so that it vectorises). */
MlirValue gen_fastmath(gen *g, MlirValue v, const char *flags) {
  char text[64];
  snprintf(text, sizeof text, "#arith.fastmath<%s>", flags);
  mlirOperationSetAttributeByName(
      mlirOpResultGetOwner(v), mb_str("fastmath"),
      mlirAttributeParseGet(g->b.ctx, mb_str(text)));
  return v;
}

/* 2^k as f32 for an i32 k in the normal range [-126, 127]: the exponent
 * bits directly. */
static MlirValue pow2i_bits(gen *g, MlirValue k) {
  mb *b = &g->b;
  MlirValue e = mb_bin(b, "arith.addi", k, mb_const_int(b, b->i32, 127));
  return mb_cast(b, "arith.bitcast",
                 mb_bin(b, "arith.shli", e, mb_const_int(b, b->i32, 23)),
                 b->f32);
}

/* exp and exp2 in f32 (Cephes): range reduction by ln 2 and a degree-6
 * polynomial, about 1 ulp; written in arith ops so that loops of them
 * vectorise, unlike calls to expf. The input is clamped to where the result
 * is already inf (exp(89) > FLT_MAX, 2^128) or 0 (exp(-104) and 2^-150
 * round to 0), so the scaling by 2^n gives those limits itself; NaN stays
 * NaN. About 20 vector instructions per lane group: softmax's cost. */
MlirValue gen_exp(gen *g, MlirValue x, bool base2) {
  mb *b = &g->b;
  double hi_lim = base2 ? 128.0 : 89.0;
  double lo_lim = base2 ? -150.0 : -104.0;
  /* Clamp with compares and selects (cheaper than minimumf/maximumf, whose
   * NaN rules cost extra instructions); NaN is handled at the end. */
  MlirValue lo_c = mb_const_f32(b, lo_lim), hi_c = mb_const_f32(b, hi_lim);
  MlirValue xc = mb_select(b, mb_cmpf(b, CMPF_OLT, x, lo_c), lo_c, x);
  xc = mb_select(b, mb_cmpf(b, CMPF_OGT, xc, hi_c), hi_c, xc);
  MlirValue n, r;
  if (base2) {
    n = gen_math1(g, "math.roundeven", xc);
    r = mb_bin(b, "arith.mulf", mb_bin(b, "arith.subf", xc, n),
               mb_const_f32(b, 0.693147180559945309));
  } else {
    n = gen_math1(g, "math.roundeven",
                  mb_bin(b, "arith.mulf", xc,
                         mb_const_f32(b, 1.44269504088896341)));
    r = mb_bin(b, "arith.subf", xc,
               mb_bin(b, "arith.mulf", n, mb_const_f32(b, 0.693359375)));
    r = mb_bin(b, "arith.subf", r,
               mb_bin(b, "arith.mulf", n, mb_const_f32(b, -2.12194440e-4)));
  }
  static const double c[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                             4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  /* Horner steps may fuse into FMAs ("contract"): fewer instructions and
   * one rounding instead of two per step. */
  MlirValue p = mb_const_f32(b, c[0]);
  for (int i = 1; i < 6; i++)
    p = gen_fastmath(
        g,
        mb_bin(b, "arith.addf",
               gen_fastmath(g, mb_bin(b, "arith.mulf", p, r), "contract"),
               mb_const_f32(b, c[i])),
        "contract");
  MlirValue r2 = mb_bin(b, "arith.mulf", r, r);
  p = gen_fastmath(
      g,
      mb_bin(b, "arith.addf",
             gen_fastmath(g, mb_bin(b, "arith.mulf", p, r2), "contract"),
             mb_bin(b, "arith.addf", r, mb_const_f32(b, 1.0))),
      "contract");
  /* (p * 2^n1) * 2^n2: the first product is exact, the second rounds once */
  MlirValue ni = mb_cast(b, "arith.fptosi", n, b->i32);
  MlirValue n1 = mb_bin(b, "arith.shrsi", ni, mb_const_int(b, b->i32, 1));
  MlirValue y = mb_bin(b, "arith.mulf", p, pow2i_bits(g, n1));
  y = mb_bin(b, "arith.mulf", y,
             pow2i_bits(g, mb_bin(b, "arith.subi", ni, n1)));
  return mb_select(b, mb_cmpf(b, CMPF_UNO, x, x), x, y);
}
