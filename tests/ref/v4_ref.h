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
