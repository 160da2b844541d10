/* test_convert.c - the narrow-float conversions of base/numeric.c against
 * independent references: fp8 e4m3 and bf16 by brute force over every code
 * (nearest value, ties to the even code), f16 against the compiler's
 * _Float16, TF32 truncated and rounded by value; on special values, every
 * boundary between two codes, and random bit patterns. */
#include "tests/unit/harness.h"

#include <math.h>
#include <string.h>

static double e4m3_value(int c) {
  int e = (c >> 3) & 15, m = c & 7;
  double v = e == 0 ? ldexp(m, -9) : ldexp(1 + m / 8.0, e - 7);
  return (c & 0x80) ? -v : v;
}

/* Nearest e4m3 code by search; ties to the even code; saturating. */
static int e4m3_ref(float f) {
  if (isnan(f))
    return (signbit(f) ? 0x80 : 0) | 0x7f;
  double a = fabs((double)f);
  int sign = signbit(f) ? 0x80 : 0;
  if (a >= 448.0)
    return sign | 0x7e;
  int best = 0;
  double bd = INFINITY;
  for (int c = 0; c <= 0x7e; c++) {
    double d = fabs(e4m3_value(c) - a);
    if (d < bd || (d == bd && (c & 1) == 0)) {
      bd = d;
      best = c;
    }
  }
  return sign | best;
}

static uint16_t bf16_ref(float f) {
  if (isnan(f))
    return 0; /* checked separately */
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t lo = x & 0xffff0000u, hi = lo + 0x10000u;
  float flo, fhi;
  memcpy(&flo, &lo, 4);
  memcpy(&fhi, &hi, 4);
  double dlo = fabs((double)f - flo), dhi = fabs((double)fhi - f);
  if (isinf(fhi) && !isinf(f)) /* rounding up overflows: compare to 2^128 */
    dhi = fabs(ldexp(1.0, 128) * (f < 0 ? -1 : 1) - f);
  if (dlo < dhi || (dlo == dhi && ((lo >> 16) & 1) == 0))
    return (uint16_t)(lo >> 16);
  return (uint16_t)(hi >> 16);
}

int main(void) {
  int bad = 0;
  /* every e4m3 code round-trips */
  for (int c = 0; c < 256; c++) {
    if ((c & 0x7f) == 0x7f)
      continue;
    float v = ts_e4m3_to_f32((uint8_t)c);
    bad += v != (float)e4m3_value(c);
    bad += ts_f32_to_e4m3(v) != c && !(c == 0x80); /* -0 keeps its sign */
  }
  CHECK(bad == 0);
  /* boundaries: midpoints between neighbours, and a hair either side */
  bad = 0;
  for (int c = 0; c < 0x7e; c++) {
    double mid = (e4m3_value(c) + e4m3_value(c + 1)) / 2;
    float cand[3] = {(float)mid, nextafterf((float)mid, 0),
                     nextafterf((float)mid, 1000)};
    for (int i = 0; i < 3; i++) {
      bad += ts_f32_to_e4m3(cand[i]) != e4m3_ref(cand[i]);
      bad += ts_f32_to_e4m3(-cand[i]) != e4m3_ref(-cand[i]);
    }
  }
  CHECK(bad == 0);
  uint64_t s = 12345;
  bad = 0;
  for (int i = 0; i < 200000; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t bits = (uint32_t)(s >> 32);
    float f;
    memcpy(&f, &bits, 4);
    if (i % 2)
      f = (float)((double)(int32_t)bits / 2147483648.0 * 500.0);
    if (i < 50000 && ts_f32_to_e4m3(f) != e4m3_ref(f) && bad++ < 5)
      fprintf(stderr, "e4m3(%.9g): %02x want %02x\n", f, ts_f32_to_e4m3(f),
              e4m3_ref(f));
    if (!isnan(f) && ts_f32_to_bf16(f) != bf16_ref(f) && bad++ < 5)
      fprintf(stderr, "bf16(%.9g): %04x want %04x\n", f, ts_f32_to_bf16(f),
              bf16_ref(f));
    _Float16 h = (_Float16)f;
    uint16_t hb;
    memcpy(&hb, &h, 2);
    if (isnan(f)) {
      if ((ts_f32_to_f16(f) & 0x7fff) <= 0x7c00 && bad++ < 5)
        fprintf(stderr, "f16(nan) is not a NaN\n");
    } else if (ts_f32_to_f16(f) != hb && bad++ < 5) {
      fprintf(stderr, "f16(%.9g): %04x want %04x\n", f, ts_f32_to_f16(f), hb);
    }
    if (!isnan(f) && ts_f16_to_f32(hb) != (float)h && bad++ < 5)
      fprintf(stderr, "f16 back %04x\n", hb);
  }
  CHECK(bad == 0);
  /* specials */
  CHECK(ts_f32_to_bf16(INFINITY) == 0x7f80 && ts_f32_to_bf16(-0.0f) == 0x8000);
  CHECK((ts_f32_to_bf16(NAN) & 0x7fff) > 0x7f80);
  CHECK(ts_f32_to_e4m3(INFINITY) == 0x7e && ts_f32_to_e4m3(-1e9f) == 0xfe);
  CHECK(ts_f32_to_e4m3(NAN) == 0x7f && isnan(ts_e4m3_to_f32(0xff)));
  CHECK(ts_f32_to_f16(65520.0f) == 0x7c00 && ts_f32_to_f16(65519.0f) == 0x7bff);
  /* TF32 (10 mantissa bits kept): truncation toward zero, and rounding to
   * nearest with ties away, by value against the two neighbours; specials */
  bad = 0;
  for (int i = 0; i < 100000; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    float f = (float)((double)(int32_t)(s >> 32) / 2147483648.0 * 1e3);
    int e;
    frexp((double)f, &e);
    double ulp = ldexp(1.0, e - 11); /* 11 significant bits: 1 + 10 */
    double lo = trunc((double)f / ulp) * ulp, hi = lo + (f < 0 ? -ulp : ulp);
    double near = fabs((double)f - lo) < fabs(hi - (double)f) ? lo : hi;
    bad += (double)ts_f32_tf32(f) != lo || (double)ts_f32_tf32_rna(f) != near;
  }
  CHECK(bad == 0);
  CHECK(ts_f32_tf32(1.0f + 0x1p-11f) == 1.0f && ts_f32_tf32_rna(1.0f + 0x1p-11f) == 1.0f + 0x1p-10f);
  CHECK(ts_f32_tf32(-1.0f - 0x1p-11f) == -1.0f && ts_f32_tf32_rna(1.0f + 0x1p-12f) == 1.0f);
  CHECK(isinf(ts_f32_tf32(INFINITY)) && isnan(ts_f32_tf32(NAN)) && isnan(ts_f32_tf32_rna(NAN)));
  return ts_test_finish();
}
