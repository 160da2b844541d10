/* test_kernels.c - every kernel in kernels/ against a plain C reference in
 * f64, on shapes with 1, primes, and sizes that are not multiples of the
 * tile. Inputs are rounded to their dtype first, so the reference sees
 * exactly what the kernel reads. */
#include "tests/numerics/num.h"

static void ref_softmax(const double *x, double *y, int64_t M, int64_t N,
                        double scale) {
  for (int64_t i = 0; i < M; i++) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < N; j++)
      m = fmax(m, x[i * N + j] * scale);
    for (int64_t j = 0; j < N; j++)
      s += exp(x[i * N + j] * scale - m);
    for (int64_t j = 0; j < N; j++)
      y[i * N + j] = exp(x[i * N + j] * scale - m) / s;
  }
}

static void test_softmax(void) {
  static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {7, 13}, {5, 1000},
                                      {64, 129}, {3, 2}};
  const char *bms[] = {NULL, "BM=3", "BM=1"};
  for (int b = 0; b < 3; b++) {
    ts_kernel *k = num_kernel("kernels/softmax.tile", "softmax_rows", bms[b], NULL);
    ts_kernel *kb = num_kernel("kernels/softmax.tile", "softmax_rows_bf16", bms[b], NULL);
    if (!k || !kb)
      return;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      uint64_t seed = 42 + s;
      int64_t n = shapes[s][0] * shapes[s][1];
      ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, shapes[s]);
      ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, shapes[s]);
      double *xv = num_fill(x, -8, 8, &seed), *want = malloc(n * sizeof *want);
      ref_softmax(xv, want, shapes[s][0], shapes[s][1], 1.0);
      ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
      num_launch(k, a, 2);
      double *got = num_get(y);
      char what[64];
      snprintf(what, sizeof what, "softmax %lldx%lld %s",
               (long long)shapes[s][0], (long long)shapes[s][1],
               bms[b] ? bms[b] : "");
      CHECK_ERR(num_relerr(got, want, n), 1e-6, what);
      free(got);
      ts_tensor *xb = num_tensor(TS_DTYPE_BF16, 2, shapes[s]);
      ts_tensor *yb = num_tensor(TS_DTYPE_BF16, 2, shapes[s]);
      double *xbv = num_fill(xb, -8, 8, &seed);
      ref_softmax(xbv, want, shapes[s][0], shapes[s][1], 0.37);
      ts_arg ab[3] = {ts_arg_tensor(xb), ts_arg_tensor(yb), ts_arg_float(0.37)};
      num_launch(kb, ab, 3);
      got = num_get(yb);
      CHECK_ERR(num_relerr(got, want, n), 6e-3, what);
      free(got);
      free(xbv);
      free(xv);
      free(want);
      ts_tensor_release(x);
      ts_tensor_release(y);
      ts_tensor_release(xb);
      ts_tensor_release(yb);
    }
    ts_kernel_release(k);
    ts_kernel_release(kb);
  }
}

static void test_rmsnorm(void) {
  static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 256}, {5, 300}};
  ts_kernel *k = num_kernel("kernels/rmsnorm.tile", "rmsnorm", "BM=3", NULL);
  ts_kernel *kh = num_kernel("kernels/rmsnorm.tile", "head_rmsnorm", NULL, NULL);
  if (!k || !kh)
    return;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    uint64_t seed = 7 + s;
    int64_t T = shapes[s][0], D = shapes[s][1], n = T * D;
    ts_tensor *x = num_tensor(TS_DTYPE_BF16, 2, shapes[s]);
    ts_tensor *w = num_tensor(TS_DTYPE_F32, 1, &D);
    ts_tensor *y = num_tensor(TS_DTYPE_BF16, 2, shapes[s]);
    double *xv = num_fill(x, -3, 3, &seed), *wv = num_fill(w, 0.5, 1.5, &seed);
    double *want = malloc(n * sizeof *want);
    for (int64_t t = 0; t < T; t++) {
      double ss = 0;
      for (int64_t d = 0; d < D; d++)
        ss += xv[t * D + d] * xv[t * D + d];
      double r = 1.0 / sqrt(ss / D + 1e-6);
      for (int64_t d = 0; d < D; d++)
        want[t * D + d] = wv[d] * xv[t * D + d] * r;
    }
    ts_arg a[3] = {ts_arg_tensor(x), ts_arg_tensor(w), ts_arg_tensor(y)};
    num_launch(k, a, 3);
    double *got = num_get(y);
    CHECK_ERR(num_relerr(got, want, n), 5e-3, "rmsnorm");
    free(got);
    /* head_rmsnorm over [T, 3, D] */
    int64_t sh3[3] = {T, 3, D};
    ts_tensor *q = num_tensor(TS_DTYPE_BF16, 3, sh3);
    ts_tensor *qo = num_tensor(TS_DTYPE_BF16, 3, sh3);
    double *qv = num_fill(q, -2, 2, &seed);
    double *want3 = malloc(3 * n * sizeof *want3);
    for (int64_t h = 0; h < T * 3; h++) {
      double ss = 0;
      for (int64_t d = 0; d < D; d++)
        ss += qv[h * D + d] * qv[h * D + d];
      for (int64_t d = 0; d < D; d++)
        want3[h * D + d] = qv[h * D + d] / sqrt(ss / D + 1e-6);
    }
    ts_arg ah[2] = {ts_arg_tensor(q), ts_arg_tensor(qo)};
    num_launch(kh, ah, 2);
    got = num_get(qo);
    CHECK_ERR(num_relerr(got, want3, 3 * n), 5e-3, "head_rmsnorm");
    free(got);
    free(qv);
    free(want3);
    ts_tensor_release(q);
    ts_tensor_release(qo);
    free(xv);
    free(wv);
    free(want);
    ts_tensor_release(x);
    ts_tensor_release(w);
    ts_tensor_release(y);
  }
  ts_kernel_release(k);
  ts_kernel_release(kh);
}

static double swiglu(double g, double u, double lim) {
  g = fmin(g, lim);
  u = fmax(fmin(u, lim), -lim);
  return g / (1 + exp(-g)) * u;
}

/* gemm_fp8: e4m3 A and B with per-block scales (1 x 128 for A, 128 x 128
 * for B), tails in M, N and K, against f64 from the stored values; the
 * default tile (wgmma k32 on the simulator's sm_90a) and a 64 x 64 one. */
static void test_gemm_fp8(void) {
  const char *defs[2] = {NULL, "BM=64 BN=64 GM=2"}; /* 3 x 4 tiles: groups of 2, 1 rows */
  int64_t M = 130, N = 200, K = 300, KB = 3, NB = 2;
  int64_t sa[2] = {M, K}, sb[2] = {N, K}, ssa[2] = {M, KB}, ssb[2] = {NB, KB}, sc[2] = {M, N};
  uint64_t seed = 808;
  ts_tensor *a = num_tensor(TS_DTYPE_FP8E4M3, 2, sa), *b = num_tensor(TS_DTYPE_FP8E4M3, 2, sb);
  ts_tensor *as = num_tensor(TS_DTYPE_F32, 2, ssa), *bs = num_tensor(TS_DTYPE_F32, 2, ssb);
  ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc);
  double *av = num_fill(a, -4, 4, &seed), *bv = num_fill(b, -4, 4, &seed);
  double *asv = num_fill(as, 0.001, 0.01, &seed), *bsv = num_fill(bs, 0.5, 2, &seed);
  double *want = malloc(sizeof(double) * (size_t)(M * N));
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double sum = 0;
      for (int64_t kb = 0; kb < KB; kb++) {
        double part = 0;
        for (int64_t k = kb * 128; k < K && k < kb * 128 + 128; k++)
          part += av[i * K + k] * bv[j * K + k];
        sum += part * asv[i * KB + kb] * bsv[(j / 128) * KB + kb];
      }
      want[i * N + j] = sum;
    }
  for (int v = 0; v < 2; v++) {
    ts_kernel *k = num_kernel("kernels/gemm.tile", "gemm_fp8", defs[v], NULL);
    if (!k)
      break;
    ts_arg args[5] = {ts_arg_tensor(a), ts_arg_tensor(as), ts_arg_tensor(b), ts_arg_tensor(bs),
                      ts_arg_tensor(c)};
    num_launch(k, args, 5);
    double *got = num_get(c);
    CHECK_ERR(num_relerr(got, want, M * N), 1e-5, "gemm_fp8");
    free(got);
    ts_kernel_release(k);
  }
  free(av);
  free(bv);
  free(asv);
  free(bsv);
  free(want);
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(as);
  ts_tensor_release(bs);
  ts_tensor_release(c);
}

static void test_gemm(void) {
  /* {130, 72, 589}: ten k steps through the ring (on sm_90a with wgmma
   * left in flight across iterations, three and four stages, and 256 x 128
   * tiles: two 64-row slabs a warpgroup); {66, 9, 0}:
   * none (C is zeros: on sm_90a the clear before the ring is done by the
   * first wgmma, or after the loop when it ran no iteration) */
  static const int64_t mnk[][3] = {{1, 1, 1},    {7, 13, 29},  {64, 64, 64},
                                   {65, 127, 33}, {100, 3, 200}, {2, 70, 5},
                                   {130, 72, 589}, {66, 9, 0}};
  ts_kernel *k = num_kernel("kernels/gemm.tile", "gemm_nt", NULL, NULL);
  ts_kernel *k2 = num_kernel("kernels/gemm.tile", "gemm_nt", "BM=16", "BK=7");
  ts_kernel *k4 = num_kernel("kernels/gemm.tile", "gemm_nt", "STAGES=3", NULL);
  ts_kernel *k5 = num_kernel("kernels/gemm.tile", "gemm_nt", "BM=256", "STAGES=3");
  /* the grouped tile order: at 130 x 72, 5 x 3 tiles in groups of 2, 2, 1
   * rows */
  ts_kernel *k6 = num_kernel("kernels/gemm.tile", "gemm_nt", "BM=32 BN=32", "GM=2");
  ts_kernel *ks = num_kernel("kernels/gemm.tile", "gemm_swiglu", "BN=32", NULL);
  ts_kernel *kp = num_kernel("kernels/gemm.tile", "gemm_splitk", "BK=32", NULL);
  ts_kernel *kps = num_kernel("kernels/gemm.tile", "gemm_splitk_sum", NULL, NULL);
  if (!k || !k2 || !k4 || !k5 || !k6 || !ks)
    return;
  for (size_t s = 0; s < sizeof mnk / sizeof mnk[0]; s++) {
    int64_t M = mnk[s][0], N = mnk[s][1], K = mnk[s][2];
    uint64_t seed = 99 + s;
    int64_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
    ts_tensor *a = num_tensor(TS_DTYPE_BF16, 2, sa);
    ts_tensor *b = num_tensor(TS_DTYPE_BF16, 2, sb);
    ts_tensor *b2 = num_tensor(TS_DTYPE_BF16, 2, sb);
    ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc);
    ts_tensor *h = num_tensor(TS_DTYPE_BF16, 2, sc);
    double *av = num_fill(a, -1, 1, &seed), *bv = num_fill(b, -1, 1, &seed);
    double *b2v = num_fill(b2, -1, 1, &seed);
    double *want = malloc(M * N * sizeof *want);
    double *wh = malloc(M * N * sizeof *wh);
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double acc = 0, acc2 = 0;
        for (int64_t q = 0; q < K; q++) {
          acc += av[i * K + q] * bv[j * K + q];
          acc2 += av[i * K + q] * b2v[j * K + q];
        }
        want[i * N + j] = acc;
        wh[i * N + j] = swiglu(acc, acc2, 7.0) * 0.5;
      }
    ts_kernel *ks2[5] = {k, k2, k4, k5, k6};
    for (int v = 0; v < 5; v++) {
      free(num_fill(c, 5, 6, &seed)); /* every element must be written */
      ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
      num_launch(ks2[v], args, 3);
      double *got = num_get(c);
      CHECK_ERR(num_relerr(got, want, M * N), 1e-5, "gemm_nt");
      free(got);
    }
    /* split-K: 1, 3 and 8 slices of BK 32 (empty slices when K is short),
     * then the ordered sum */
    for (int64_t KS = 1; KS <= 8 && kp && kps; KS = KS * 3 - (KS == 3)) {
      int64_t sp[3] = {KS, M, N};
      ts_tensor *part = num_tensor(TS_DTYPE_F32, 3, sp);
      ts_arg pa[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(part)};
      num_launch(kp, pa, 3);
      ts_arg ps[2] = {ts_arg_tensor(part), ts_arg_tensor(c)};
      num_launch(kps, ps, 2);
      double *got = num_get(c);
      CHECK_ERR(num_relerr(got, want, M * N), 1e-5, "gemm_splitk");
      free(got);
      ts_tensor_release(part);
    }
    ts_arg sw[5] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(b2),
                    ts_arg_tensor(h), ts_arg_float(0.5)};
    num_launch(ks, sw, 5);
    double *got = num_get(h);
    CHECK_ERR(num_relerr(got, wh, M * N), 6e-3, "gemm_swiglu");
    free(got);
    free(av);
    free(bv);
    free(b2v);
    free(want);
    free(wh);
    ts_tensor_release(a);
    ts_tensor_release(b);
    ts_tensor_release(b2);
    ts_tensor_release(c);
    ts_tensor_release(h);
  }
  ts_kernel_release(k);
  ts_kernel_release(k2);
  ts_kernel_release(k4);
  ts_kernel_release(k5);
  ts_kernel_release(k6);
  ts_kernel_release(ks);
  ts_kernel_release(kp);
  ts_kernel_release(kps);
}

/* linear_tf32 against f64 of the operands truncated to tf32 (and within
 * tf32's error of the f32 product): tails in every dim, one k step and
 * many, the default tile (128 x 128 x 16, two warpgroups), 64 x 64 x 32 on
 * one, and 64 x 32 in a ring of two. With G > 0 grouped_linear_tf32 over G
 * groups (x [M, G, K], w [G, N, K], y [M, G, N]): each group's product. */
static void test_linear_tf32(int G) {
  static const int64_t mnk[][3] = {{1, 1, 1}, {70, 45, 100}, {130, 130, 33}, {64, 64, 256}};
  const char *defs[3] = {NULL, "BM=64 BN=64 BK=32 STAGES=3 NT=128", "BM=64 BN=32 BK=32 STAGES=2"};
  const char *name = G ? "grouped_linear_tf32" : "linear_tf32";
  int64_t g_n = G ? G : 1;
  for (int v = 0; v < 3; v++) {
    ts_kernel *k = num_kernel("kernels/gemm.tile", name, defs[v], NULL);
    if (!k)
      return;
    for (size_t s = 0; s < sizeof mnk / sizeof mnk[0]; s++) {
      int64_t M = mnk[s][0], N = mnk[s][1], K = mnk[s][2];
      int64_t sa[3] = {M, g_n, K}, sb[3] = {g_n, N, K}, sc[3] = {M, g_n, N};
      if (!G) { /* the plain linear's 2-d tensors */
        sa[1] = K;
        sb[0] = N, sb[1] = K;
        sc[1] = N;
      }
      int rank = G ? 3 : 2;
      uint64_t seed = 7 + s;
      ts_tensor *a = num_tensor(TS_DTYPE_F32, rank, sa), *b = num_tensor(TS_DTYPE_F32, rank, sb);
      ts_tensor *c = num_tensor(TS_DTYPE_F32, rank, sc);
      double *av = num_fill_tf32(a, -1, 1, &seed), *bv = num_fill_tf32(b, -1, 1, &seed);
      free(num_fill(c, 5, 6, &seed)); /* every element must be written */
      int64_t out = M * g_n * N;
      double *want = malloc(out * sizeof *want), *full = malloc(out * sizeof *full);
      for (int64_t i = 0; i < M; i++)
        for (int64_t g = 0; g < g_n; g++)
          for (int64_t j = 0; j < N; j++) {
            int64_t o = (i * g_n + g) * N + j;
            want[o] = full[o] = 0;
            for (int64_t q = 0; q < K; q++) {
              double x = av[(i * g_n + g) * K + q], w = bv[(g * N + j) * K + q];
              want[o] += num_tf32(x) * num_tf32(w);
              full[o] += x * w;
            }
          }
      ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
      num_launch(k, args, 3);
      double *got = num_get(c);
      CHECK_ERR(num_relerr(got, want, out), 1e-5, name);
      CHECK_ERR(num_relerr(got, full, out), 3e-3, G ? "grouped_linear_tf32 against f32"
                                                     : "linear_tf32 against f32");
      free(got);
      free(av);
      free(bv);
      free(want);
      free(full);
      ts_tensor_release(a);
      ts_tensor_release(b);
      ts_tensor_release(c);
    }
    ts_kernel_release(k);
  }
}

int main(void) {
  num_init();
  test_softmax();
  test_rmsnorm();
  test_gemm();
  test_gemm_fp8();
  test_linear_tf32(0);
  test_linear_tf32(3);
  num_finish();
  return ts_test_finish();
}
