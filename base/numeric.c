/* numeric.c - conversions between f32 and the narrow float formats, each
 * rounding to nearest even: bf16, f16 (IEEE binary16) and fp8 e4m3 (the
 * "fn" variant: no infinities, NaN = 0x7f/0xff, saturating at 448 as
 * DeepSeek's simulation does). Tests use all of them as the reference;
 * the generated code does the same in integer ops (compiler/gen.c). Thread-safe. */
#include "base.h"

#include <math.h>
#include <string.h>

static uint32_t bits_of(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  return x;
}

static float float_of(uint32_t x) {
  float f;
  memcpy(&f, &x, 4);
  return f;
}

uint16_t ts_f32_to_bf16(float f) {
  uint32_t x = bits_of(f);
  if (isnan(f))
    return (uint16_t)((x >> 16) | 0x40);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

float ts_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

float ts_f32_tf32(float f) { return float_of(bits_of(f) & 0xffffe000u); }

float ts_f32_tf32_rna(float f) {
  return isnan(f) ? f : float_of((bits_of(f) + 0x1000u) & 0xffffe000u);
}

uint16_t ts_f32_to_f16(float f) {
  uint32_t x = bits_of(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  if (isnan(f))
    return sign | 0x7e00;
  float a = fabsf(f);
  if (a >= 65520.0f) /* rounds to infinity */
    return sign | 0x7c00;
  if (a < 6.103515625e-05f) { /* subnormal: steps of 2^-24 */
    float q = nearbyintf(a * 16777216.0f);
    return sign | (uint16_t)q; /* q = 1024 is the smallest normal */
  }
  int e;
  float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
  float q = nearbyintf((m * 2.0f - 1.0f) * 1024.0f);
  int exp = e - 1 + 15;
  if (q == 1024.0f) {
    q = 0;
    exp++;
  }
  return sign | (uint16_t)(exp << 10) | (uint16_t)q;
}

float ts_f16_to_f32(uint16_t h) {
  float sign = (h & 0x8000) ? -1.0f : 1.0f;
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e == 31)
    return m ? NAN : sign * INFINITY;
  if (e == 0)
    return sign * ldexpf((float)m, -24);
  return sign * ldexpf(1.0f + (float)m / 1024.0f, e - 15);
}

uint8_t ts_f32_to_e4m3(float f) {
  uint8_t sign = (uint8_t)((bits_of(f) >> 24) & 0x80);
  if (isnan(f))
    return sign | 0x7f;
  float a = fabsf(f);
  if (a >= 448.0f)
    return sign | 0x7e; /* saturate */
  if (a < 0.015625f) { /* below 2^-6: subnormal, steps of 2^-9 */
    float q = nearbyintf(a * 512.0f);
    return sign | (uint8_t)q; /* q = 8 is the smallest normal */
  }
  int e;
  float m = frexpf(a, &e);
  float q = nearbyintf((m * 2.0f - 1.0f) * 8.0f);
  int exp = e - 1 + 7;
  if (q == 8.0f) {
    q = 0;
    exp++;
  }
  int code = (exp << 3) | (int)q;
  if (code > 0x7e)
    code = 0x7e;
  return sign | (uint8_t)code;
}

/* (1 + m / 8) 2^(e - 7) is the f32 of exponent e + 120 and mantissa m << 20;
 * m 2^-9 (e 0) is exact too */
float ts_e4m3_to_f32(uint8_t b) {
  int e = (b >> 3) & 0xf, m = b & 7;
  if (e == 15 && m == 7)
    return NAN;
  float v = e == 0 ? (float)m * 0x1p-9f : float_of((uint32_t)(e + 120) << 23 | (uint32_t)m << 20);
  return (b & 0x80) ? -v : v;
}
