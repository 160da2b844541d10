/* v4_ref.h - plain C references for the V4 kernels, written from
 * ../shared/V4-SPEC.md: the quantisation simulations mirror the reference's
 * f32 rounding exactly (bit for bit), the transforms are in f64. */
#ifndef TS_TEST_V4_REF_H
#define TS_TEST_V4_REF_H

#include <stdint.h>

/* 2^ceil(log2(r)) from the float bits of r (V4-SPEC 1.11 ue8m0). */
float ref_ue8m0(float r);
/* Round to e2m1 {0, .5, 1, 1.5, 2, 3, 4, 6}: nearest, ties to even, sign
 * kept. */
float ref_e2m1(float v);
/* In place on rows of d floats (already rounded to the input dtype): the
 * FP8 (block 64, qmax 448, amax floor 1e-4) or FP4 (block 32, qmax 6,
 * amax floor 6 * 2^-126) simulation, block by block. The result is f32;
 * the kernels store it as bf16, which is exact for these values. */
void ref_fp8_sim(float *x, int64_t rows, int64_t d, int64_t block);
void ref_fp4_sim(float *x, int64_t rows, int64_t d, int64_t block);
/* y = H x / sqrt(n) on rows of n (a power of two), Sylvester order, f64. */
void ref_hadamard(const double *x, double *y, int64_t rows, int64_t n);

#endif

/* Attention with a sink (V4-SPEC 1.7) in f64: q [T, H, C], kv [S, C],
 * idx [T, K] (-1 invalid), sink [H] -> o [T, H, C]. */
void ref_sparse_attn(const double *q, const double *kv, const int32_t *idx,
                     const double *sink, double *o, int64_t T, int64_t H,
                     int64_t C, int64_t S, int64_t K, double scale);
/* hc_split_sinkhorn (V4-SPEC 1.8) in f64 for one token. */
void ref_sinkhorn(const double *mix, const double *scale, const double *base,
                  int iters, double eps, double *pre, double *post,
                  double *comb);

/* Top-k of scores[0 .. n-1]: the indices of the k largest, ties to the
 * smaller index, as a set in increasing index order; -1 pads to k. */
void ref_topk(const float *scores, int64_t n, int64_t k, int32_t *out);
/* Indexer scores (V4-SPEC 1.5) in f64: q [T, HI, D], keys [S, D],
 * w [T, HI] -> out [T, S], -inf beyond the causal bound. */
void ref_indexer(const double *q, const double *k, const double *w,
                 double *out, int64_t T, int64_t HI, int64_t D, int64_t S,
                 int64_t ratio);

/* The RoPE angle table (V4-SPEC 1.2) in f64: tab[p][i] = (cos, sin) of
 * p * theta_i for `half` pairs; YaRN as DeepSeek's precompute_freqs_cis. */
void ref_rope_table(double *tab, int64_t P, int64_t half, double base,
                    int yarn, double factor, double l0, double beta_fast,
                    double beta_slow, int *out_low, int *out_high);

/* The compressor's pooling (V4-SPEC 1.4) in f64: c, z [T, KE] with
 * KE = E (HCA) or 2E (CSA, overlap), ape [m, KE] -> out [T / m, E]. */
void ref_compress_pool(const double *c, const double *z, const double *ape,
                       double *out, int64_t T, int64_t E, int64_t m,
                       int overlap);
