#define _DEFAULT_SOURCE
/* v4_ref.c - see v4_ref.h. */
#include "tests/ref/v4_ref.h"
#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float ref_ue8m0(float r) {
  uint32_t b;
  memcpy(&b, &r, 4);
  int e = (int)((b >> 23) & 255) - 127 + ((b & 0x7fffff) != 0);
  return ldexpf(1.0f, e);
}

float ref_e2m1(float v) {
  static const float grid[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  float a = fabsf(v);
  int best = 0;
  for (int c = 1; c < 8; c++) {
    float d = fabsf(grid[c] - a), bd = fabsf(grid[best] - a);
    if (d < bd || (d == bd && (c & 1) == 0))
      best = c;
  }
  return copysignf(grid[best], v);
}

static void sim(float *x, int64_t rows, int64_t d, int64_t block, float floor_,
                float qmax, int fp8) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < d; c0 += block) {
      float *v = x + r * d + c0;
      int64_t n = d - c0 < block ? d - c0 : block;
      float amax = 0;
      for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(v[i]));
      float s = ref_ue8m0(fmaxf(amax, floor_) / qmax);
      for (int64_t i = 0; i < n; i++) {
        float q = fminf(fmaxf(v[i] / s, -qmax), qmax);
        q = fp8 ? ts_e4m3_to_f32(ts_f32_to_e4m3(q)) : ref_e2m1(q);
        v[i] = q * s;
      }
    }
}

void ref_fp8_sim(float *x, int64_t rows, int64_t d, int64_t block) {
  sim(x, rows, d, block, 1e-4f, 448.0f, 1);
}

void ref_fp4_sim(float *x, int64_t rows, int64_t d, int64_t block) {
  sim(x, rows, d, block, 6.0f * 0x1p-126f, 6.0f, 0);
}

void ref_hadamard(const double *x, double *y, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t i = 0; i < n; i++) {
      double s = 0;
      for (int64_t j = 0; j < n; j++)
        s += (__builtin_popcountll((unsigned long long)(i & j)) & 1 ? -1 : 1) *
             x[r * n + j];
      y[r * n + i] = s / sqrt((double)n);
    }
}

void ref_sparse_attn(const double *q, const double *kv, const int32_t *idx,
                     const double *sink, double *o, int64_t T, int64_t H,
                     int64_t C, int64_t S, int64_t K, double scale) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < H; h++) {
      const double *qh = q + (t * H + h) * C;
      double m = -INFINITY;
      for (int64_t s = 0; s < K; s++) {
        int32_t e = idx[t * K + s];
        if (e < 0 || e >= S)
          continue;
        double z = 0;
        for (int64_t c = 0; c < C; c++)
          z += qh[c] * kv[e * C + c];
        m = fmax(m, z * scale);
      }
      double l = 0, *oh = o + (t * H + h) * C;
      for (int64_t c = 0; c < C; c++)
        oh[c] = 0;
      if (m != -INFINITY)
        for (int64_t s = 0; s < K; s++) {
          int32_t e = idx[t * K + s];
          if (e < 0 || e >= S)
            continue;
          double z = 0;
          for (int64_t c = 0; c < C; c++)
            z += qh[c] * kv[e * C + c];
          double p = exp(z * scale - m);
          l += p;
          for (int64_t c = 0; c < C; c++)
            oh[c] += p * kv[e * C + c];
        }
      double den = l + (m == -INFINITY ? INFINITY : exp(sink[h] - m));
      for (int64_t c = 0; c < C; c++)
        oh[c] = m == -INFINITY ? 0 : oh[c] / den;
    }
}

static double sigm(double x) { return 1 / (1 + exp(-x)); }

void ref_sinkhorn(const double *mix, const double *scale, const double *base,
                  int iters, double eps, double *pre, double *post,
                  double *comb) {
  for (int j = 0; j < 4; j++) {
    pre[j] = sigm(mix[j] * scale[0] + base[j]) + eps;
    post[j] = 2 * sigm(mix[4 + j] * scale[1] + base[4 + j]);
  }
  double M[4][4];
  for (int j = 0; j < 4; j++) {
    double mx = -INFINITY, s = 0;
    for (int k = 0; k < 4; k++) {
      M[j][k] = mix[8 + 4 * j + k] * scale[2] + base[8 + 4 * j + k];
      mx = fmax(mx, M[j][k]);
    }
    for (int k = 0; k < 4; k++)
      s += M[j][k] = exp(M[j][k] - mx);
    for (int k = 0; k < 4; k++)
      M[j][k] = M[j][k] / s + eps;
  }
  for (int it = 0; it < iters; it++) {
    if (it > 0)
      for (int j = 0; j < 4; j++) {
        double s = 0;
        for (int k = 0; k < 4; k++)
          s += M[j][k];
        for (int k = 0; k < 4; k++)
          M[j][k] /= s + eps;
      }
    for (int k = 0; k < 4; k++) {
      double s = 0;
      for (int j = 0; j < 4; j++)
        s += M[j][k];
      for (int j = 0; j < 4; j++)
        M[j][k] /= s + eps;
    }
  }
  memcpy(comb, M, sizeof M);
}

void ref_topk(const float *scores, int64_t n, int64_t k, int32_t *out) {
  /* choose by repeated selection of the best remaining (value, -index) */
  char *taken = calloc((size_t)(n > 0 ? n : 1), 1);
  int64_t m = k < n ? k : n;
  for (int64_t c = 0; c < m; c++) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
      if (!taken[i] && (best < 0 || scores[i] > scores[best]))
        best = i;
    if (best < 0)
      break;
    taken[best] = 1;
  }
  int64_t pos = 0;
  for (int64_t i = 0; i < n; i++)
    if (taken[i])
      out[pos++] = (int32_t)i;
  while (pos < k)
    out[pos++] = -1;
  free(taken);
}

void ref_indexer(const double *q, const double *k, const double *w,
                 double *out, int64_t T, int64_t HI, int64_t D, int64_t S,
                 int64_t ratio) {
  for (int64_t t = 0; t < T; t++)
    for (int64_t s = 0; s < S; s++) {
      if (s >= (t + 1) / ratio) {
        out[t * S + s] = -INFINITY;
        continue;
      }
      double sum = 0;
      for (int64_t h = 0; h < HI; h++) {
        double d = 0;
        for (int64_t c = 0; c < D; c++)
          d += q[(t * HI + h) * D + c] * k[s * D + c];
        sum += w[t * HI + h] * (d > 0 ? d : 0);
      }
      out[t * S + s] = sum;
    }
}

static double correction_dim(double rotations, double dim, double base,
                             double l0) {
  return dim * log(l0 / (rotations * 2 * M_PI)) / (2 * log(base));
}

void ref_rope_table(double *tab, int64_t P, int64_t half, double base,
                    int yarn, double factor, double l0, double beta_fast,
                    double beta_slow, int *out_low, int *out_high) {
  double dim = 2.0 * (double)half;
  double lo = floor(correction_dim(beta_fast, dim, base, l0));
  double hi = ceil(correction_dim(beta_slow, dim, base, l0));
  lo = fmax(lo, 0);
  hi = fmin(hi, dim - 1);
  *out_low = (int)lo;
  *out_high = (int)hi;
  if (hi == lo)
    hi += 0.001;
  for (int64_t i = 0; i < half; i++) {
    double theta = 1.0 / pow(base, (2.0 * (double)i) / dim);
    double ramp = fmin(fmax(((double)i - lo) / (hi - lo), 0), 1);
    if (yarn)
      theta = theta / factor * ramp + theta * (1 - ramp);
    for (int64_t p = 0; p < P; p++) {
      tab[(p * half + i) * 2] = cos((double)p * theta);
      tab[(p * half + i) * 2 + 1] = sin((double)p * theta);
    }
  }
}

void ref_compress_pool(const double *c, const double *z, const double *ape,
                       double *out, int64_t T, int64_t E, int64_t m,
                       int overlap) {
  int64_t KE = overlap ? 2 * E : E;
  for (int64_t i = 0; i < T / m; i++)
    for (int64_t e = 0; e < E; e++) {
      double zs[1024], cs[1024];
      int64_t n = 0;
      if (overlap && i > 0)
        for (int64_t s = 0; s < m; s++) {
          int64_t j = m * (i - 1) + s;
          zs[n] = z[j * KE + e] + ape[s * KE + e];
          cs[n++] = c[j * KE + e];
        }
      for (int64_t s = 0; s < m; s++) {
        int64_t j = m * i + s, ch = overlap ? E + e : e;
        zs[n] = z[j * KE + ch] + ape[s * KE + ch];
        cs[n++] = c[j * KE + ch];
      }
      double mx = -INFINITY, sum = 0, acc = 0;
      for (int64_t k = 0; k < n; k++)
        mx = fmax(mx, zs[k]);
      for (int64_t k = 0; k < n; k++) {
        double p = exp(zs[k] - mx);
        sum += p;
        acc += p * cs[k];
      }
      out[i * E + e] = acc / sum;
    }
}
