/* test_gpu.c - the GPU-only parts of the language (tests/ptx/gpu.tile) on
 * the GPU simulator, which runs kernels in their GPU form: thread_id(),
 * atomic_max, block-level atomics, the reductions that cannot use warp
 * shuffles (48 threads; 64-bit integers), and the forms of gemm the CUDA C
 * lowering runs on tensor cores (mma.sync, emulated by the simulator). */
#include "tests/numerics/num.h"

#define GPU_TILE "tests/ptx/gpu.tile"

static void test_odd_reduce(void) {
  ts_kernel *k = num_kernel(GPU_TILE, "odd_reduce", NULL, NULL);
  if (!k)
    return;
  int64_t M = 7, N = 45, s2[2] = {M, N};
  uint64_t seed = 3;
  ts_tensor *x = num_tensor(TS_DTYPE_I64, 2, s2);
  ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, s2);
  ts_tensor *s = num_tensor(TS_DTYPE_I64, 1, &M);
  ts_tensor *m = num_tensor(TS_DTYPE_F32, 1, &M);
  double *xv = num_fill(x, -1e12, 1e12, &seed);
  double *yv = num_fill(y, -5, 5, &seed);
  ts_arg a[4] = {ts_arg_tensor(x), ts_arg_tensor(y), ts_arg_tensor(s),
                 ts_arg_tensor(m)};
  num_launch(k, a, 4);
  const int64_t *sv = ts_tensor_data(s);
  const float *mv = ts_tensor_data(m);
  int bad = 0;
  for (int64_t i = 0; i < M; i++) {
    int64_t want = 0;
    double mx = -INFINITY;
    for (int64_t j = 0; j < N; j++) {
      want += (int64_t)xv[i * N + j];
      mx = fmax(mx, yv[i * N + j]);
    }
    bad += sv[i] != want || mv[i] != (float)mx;
  }
  CHECK(bad == 0);
  free(xv);
  free(yv);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_tensor_release(s);
  ts_tensor_release(m);
  ts_kernel_release(k);
}

static void test_threads_atomics(void) {
  ts_kernel *k = num_kernel(GPU_TILE, "threads_atomics", NULL, NULL);
  if (!k)
    return;
  int64_t N = 1003, one = 1;
  uint64_t seed = 9;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 1, &N);
  ts_tensor *who = num_tensor(TS_DTYPE_I32, 1, &N);
  ts_tensor *hi = num_tensor(TS_DTYPE_F32, 1, &one);
  ts_tensor *count = num_tensor(TS_DTYPE_I32, 1, &one);
  double *xv = num_fill(x, -100, 100, &seed);
  ts_tensor_set(hi, 0, -1e30);
  ts_arg a[4] = {ts_arg_tensor(x), ts_arg_tensor(who), ts_arg_tensor(hi),
                 ts_arg_tensor(count)};
  num_launch(k, a, 4);
  const int32_t *w = ts_tensor_data(who);
  double mx = -INFINITY;
  int bad = 0;
  for (int64_t i = 0; i < N; i++) {
    mx = fmax(mx, xv[i]);
    bad += w[i] != (int32_t)(i % 100 % 64); /* element i % B of its block */
  }
  CHECK(bad == 0);
  if (ts_tensor_get(hi, 0) != (float)mx)
    fprintf(stderr, "atomic_max: %g, want %g\n", ts_tensor_get(hi, 0), mx);
  CHECK(ts_tensor_get(hi, 0) == (float)mx);
  CHECK(ts_tensor_get(count, 0) == (N + 99) / 100); /* once per block */
  free(xv);
  ts_tensor_release(x);
  ts_tensor_release(who);
  ts_tensor_release(hi);
  ts_tensor_release(count);
  ts_kernel_release(k);
}

/* Launches kernel k(a, b, c) on random a ([M, K], or [K, M] with ta) and b
 * ([K, N], or [N, K] with tb) of dtype dt and checks c = scale a b against
 * f64 (with tf32, of the operands truncated to tf32). */
static void check_gemm_tf32(ts_kernel *k, ts_dtype dt, int64_t M, int64_t N, int64_t K,
                            bool ta, bool tb, double scale, uint64_t seed, const char *what,
                            bool tf32) {
  int64_t sa[2] = {ta ? K : M, ta ? M : K}, sb[2] = {tb ? N : K, tb ? K : N};
  int64_t sc[2] = {M, N};
  ts_tensor *a = num_tensor(dt, 2, sa), *b = num_tensor(dt, 2, sb);
  ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc);
  double *av = num_fill(a, -2, 2, &seed), *bv = num_fill(b, -2, 2, &seed);
  ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
  num_launch(k, args, 3);
  double *want = malloc(sizeof(double) * (size_t)(M * N)), *got = num_get(c);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = 0;
      for (int64_t x = 0; x < K; x++)
        acc += tf32 ? num_tf32(av[ta ? x * M + i : i * K + x]) * num_tf32(bv[tb ? j * K + x : x * N + j])
                    : av[ta ? x * M + i : i * K + x] * bv[tb ? j * K + x : x * N + j];
      want[i * N + j] = scale * acc;
    }
  CHECK_ERR(num_relerr(got, want, M * N), 1e-6, what);
  free(av);
  free(bv);
  free(want);
  free(got);
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(c);
}

static void check_gemm(ts_kernel *k, ts_dtype dt, int64_t M, int64_t N, int64_t K, bool ta,
                       bool tb, double scale, uint64_t seed, const char *what) {
  check_gemm_tf32(k, dt, M, N, K, ta, tb, scale, seed, what, false);
}

/* tf32_gemm: f32 operands on tensor cores as tf32, against f64 of the
 * truncated operands (so a lowering that rounded, or read a word's halves
 * as 16-bit elements, fails): each swizzle width (BK 8: 32-byte rows; 16,
 * 32; 128: four panels), one and two warpgroups, two slabs a warpgroup,
 * mma.sync where wgmma does not apply (BM 32), tails in every dim. The
 * truncation itself: the same kernel, off tensor cores (its operands in
 * frags), in test_v4_mhc.c on the CPU. */
static void test_tf32_gemm(void) {
  static const struct {
    const char *d0, *d1;
    int64_t M, N, K;
  } cases[] = {{"BM=64 BN=24 BK=32", "T=128", 70, 50, 70},
               {"BM=64 BN=8 BK=8", "T=128", 64, 17, 20},
               {"BM=128 BN=32 BK=128", "T=256", 130, 45, 300},
               {"BM=128 BN=16 BK=16", "T=128", 150, 20, 45},
               {"BM=32 BN=16 BK=16", "T=64", 40, 33, 50}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ts_kernel *k = num_kernel(GPU_TILE, "tf32_gemm", cases[i].d0, cases[i].d1);
    if (!k)
      return;
    check_gemm_tf32(k, TS_DTYPE_F32, cases[i].M, cases[i].N, cases[i].K, false, true, 1.0,
                    41 + i, cases[i].d0, true);
    ts_kernel_release(k);
  }
}

/* c = 0.5 a^T b (f16 inputs; a [K, M], b [K, N]) on shapes with tails in
 * every dim: the tensor-core gemm of both GPU lowerings (the scalar one on
 * the CPU), against f64. */
static void test_mma_forms(void) {
  ts_kernel *k = num_kernel(GPU_TILE, "mma_forms", NULL, NULL);
  if (!k)
    return;
  check_gemm(k, TS_DTYPE_F16, 45, 50, 37, true, false, 0.5, 5, "mma_forms");
  ts_kernel_release(k);
}

/* c = a b^T (bf16, K = 32 in one step) and its row sums, the accumulator
 * in shared memory; M = 37 leaves a tail block. */
static void test_mma_shared(void) {
  ts_kernel *k = num_kernel(GPU_TILE, "mma_shared", NULL, NULL);
  if (!k)
    return;
  int64_t M = 37, N = 16, K = 32, sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
  uint64_t seed = 6;
  ts_tensor *a = num_tensor(TS_DTYPE_BF16, 2, sa);
  ts_tensor *b = num_tensor(TS_DTYPE_BF16, 2, sb);
  ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc);
  ts_tensor *r = num_tensor(TS_DTYPE_F32, 1, &M);
  double *av = num_fill(a, -1, 1, &seed), *bv = num_fill(b, -1, 1, &seed);
  ts_arg args[4] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c),
                    ts_arg_tensor(r)};
  num_launch(k, args, 4);
  double *want = malloc(sizeof(double) * (size_t)(M * N)), *got = num_get(c);
  double *rw = malloc(sizeof(double) * (size_t)M), *rg = num_get(r);
  for (int64_t i = 0; i < M; i++) {
    rw[i] = 0;
    for (int64_t j = 0; j < N; j++) {
      double acc = 0;
      for (int64_t x = 0; x < K; x++)
        acc += av[i * K + x] * bv[j * K + x];
      want[i * N + j] = acc;
      rw[i] += acc;
    }
  }
  CHECK_ERR(num_relerr(got, want, M * N), 1e-6, "mma_shared");
  CHECK_ERR(num_relerr(rg, rw, M), 1e-5, "mma_shared row sums");
  free(av);
  free(bv);
  free(want);
  free(got);
  free(rw);
  free(rg);
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(c);
  ts_tensor_release(r);
  ts_kernel_release(k);
}

/* c = a b^T through a pipelined loop with 2-4 stages: K with a tail and
 * odd (rows not 16-byte aligned: element copies), K aligned (16-byte
 * asynchronous copies), fewer iterations than stages; tiles of 8- and
 * 4-byte rows (BK 4, 2: cp.async.ca chunks of 8 and 4 bytes), aligned or
 * not (K 37: every other row's chunks element by element). */
static void test_pipe_gemm(void) {
  static const struct {
    int64_t M, N, K;
    const char *stages;
  } cases[] = {{45, 21, 37, "STAGES=3"}, {32, 32, 64, "STAGES=3"},
               {33, 17, 32, "STAGES=4"}, {40, 16, 80, "STAGES=2"},
               {45, 21, 40, "STAGES=3 BK=4"}, {33, 17, 22, "STAGES=2 BK=2"},
               {35, 19, 37, "STAGES=2 BK=4"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ts_kernel *k = num_kernel(GPU_TILE, "pipe_gemm", cases[i].stages, NULL);
    if (!k)
      return;
    check_gemm(k, TS_DTYPE_BF16, cases[i].M, cases[i].N, cases[i].K, false, true, 1.0,
               11 + i, cases[i].stages);
    ts_kernel_release(k);
  }
}

/* Two rings in one kernel (three and two stages): on sm_90a each has its
 * TMA maps and mbarriers (K 128: TMA; K 100, rows not whole 16-byte
 * units: cp.async); c = 2 a b^T. */
static void test_two_rings(void) {
  ts_kernel *k = num_kernel(GPU_TILE, "two_rings", NULL, NULL);
  if (!k)
    return;
  check_gemm(k, TS_DTYPE_BF16, 70, 45, 128, false, true, 2.0, 31, "two_rings K 128");
  check_gemm(k, TS_DTYPE_BF16, 130, 64, 100, false, true, 2.0, 32, "two_rings K 100");
  ts_kernel_release(k);
}

/* The wgmma forms: each swizzle width and the panel layout, one and two
 * warpgroups, one and two slabs per warpgroup, two and four warpgroups
 * splitting N, N = 8 .. 128, tails in every dim; then f16 with
 * accumulate=false. On the simulator (sm_90a unless
 * TESSERA_GPUSIM_ARCH=sm_80) the instruction is emulated from its
 * descriptors, so a wrong swizzle, descriptor or register layout fails. */
static void test_wg_gemm(void) {
  /* wg_gemm (B K-major), then wg_mn (B MN-major: every swizzle width,
   * panels of 64 columns, 2 and 4), then wg_cols (B MN-major from whole
   * panels of a wider tile, in place) */
  static const struct {
    const char *kernel, *d0, *d1;
    int64_t M, N, K;
  } cases[] = {{"wg_gemm", "BM=128 BN=24 BK=16", "T=128", 130, 50, 40},
               {"wg_gemm", "BM=64 BN=40 BK=32", "T=128", 70, 45, 70},
               {"wg_gemm", "BM=128 BN=128 BK=64", "T=256", 140, 130, 100},
               {"wg_gemm", "BM=64 BN=8 BK=128", "T=128", 70, 17, 300},
               {"wg_mn", "BM=64 BN=16 BK=16", "T=128", 70, 40, 40},
               {"wg_mn", "BM=128 BN=32 BK=32", "T=128", 130, 45, 70},
               {"wg_mn", "BM=64 BN=64 BK=48", "T=128", 64, 100, 100},
               {"wg_mn", "BM=128 BN=128 BK=32", "T=256", 140, 130, 50},
               {"wg_mn", "BM=64 BN=256 BK=16", "T=128", 64, 300, 33},
               {"wg_cols", "BM=64 BN=64 BK=16", "T=128", 70, 300, 40},
               {"wg_cols", "BM=128 BN=128 BK=32", "T=256", 130, 520, 70},
               /* warpgroups splitting N (gen.h ts_wgmma_nsplit): B's rows
                * (K-major, 128B and 32B swizzles), whole panels of B
                * (MN-major, in place from a wider tile), four warpgroups */
               {"wg_gemm", "BM=64 BN=48 BK=64", "T=256", 70, 100, 70},
               {"wg_gemm", "BM=64 BN=32 BK=16", "T=256", 70, 45, 40},
               {"wg_gemm", "BM=64 BN=64 BK=32", "T=512", 70, 100, 70},
               {"wg_mn", "BM=64 BN=128 BK=32", "T=256", 70, 200, 70},
               {"wg_cols", "BM=64 BN=128 BK=16", "T=256", 70, 520, 40}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ts_kernel *k = num_kernel(GPU_TILE, cases[i].kernel, cases[i].d0, cases[i].d1);
    if (!k)
      return;
    check_gemm(k, TS_DTYPE_BF16, cases[i].M, cases[i].N, cases[i].K, false,
               !strcmp(cases[i].kernel, "wg_gemm"), 1.0, 21 + i, cases[i].d0);
    ts_kernel_release(k);
  }
  ts_kernel *k = num_kernel(GPU_TILE, "wg_f16", NULL, NULL);
  if (!k)
    return;
  check_gemm(k, TS_DTYPE_F16, 100, 37, 32, false, true, 0.5, 31, "wg_f16");
  ts_kernel_release(k);
}

/* wg_rows: s = 0.5 a b^T - 0.25, its row max, sum and absmax, then
 * c = s - max / 2 + absmax - 1, rsum = sum / 2 and rabs = absmax + max - 1;
 * on sm_90a s stays in registers in wgmma's layout, the reductions run over
 * a quad's registers into vectors in wgmma's rows, a loop over those rows
 * stores to shared memory and a tensor, and s reads them. One and two
 * slabs a warpgroup, two warpgroups, N 8 .. 64, a tail block of rows. */
static void test_wg_rows(void) {
  static const struct {
    const char *d0, *d1;
    int64_t M, N;
  } cases[] = {{"BM=64 BN=32", "T=128", 70, 32},
               {"BM=128 BN=8", "T=128", 130, 8},
               {"BM=128 BN=64", "T=256", 200, 64},
               /* warpgroups splitting N: each row's parts meet in shared
                * memory, three reductions in a row (the buffers in turn) */
               {"BM=64 BN=32", "T=256", 70, 32},
               {"BM=64 BN=64", "T=512", 70, 64}};
  for (size_t q = 0; q < sizeof cases / sizeof cases[0]; q++) {
    ts_kernel *k = num_kernel(GPU_TILE, "wg_rows", cases[q].d0, cases[q].d1);
    if (!k)
      return;
    int64_t M = cases[q].M, N = cases[q].N, K = 32;
    int64_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
    uint64_t seed = 41 + q;
    ts_tensor *a = num_tensor(TS_DTYPE_BF16, 2, sa), *b = num_tensor(TS_DTYPE_BF16, 2, sb);
    ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc);
    ts_tensor *r[3];
    for (int i = 0; i < 3; i++)
      r[i] = num_tensor(TS_DTYPE_F32, 1, &M);
    double *av = num_fill(a, -2, 2, &seed), *bv = num_fill(b, -2, 2, &seed);
    ts_arg args[6] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c),
                      ts_arg_tensor(r[0]), ts_arg_tensor(r[1]), ts_arg_tensor(r[2])};
    num_launch(k, args, 6);
    double *want = malloc(sizeof(double) * (size_t)(M * N));
    double *rw[3];
    for (int i = 0; i < 3; i++)
      rw[i] = malloc(sizeof(double) * (size_t)M);
    for (int64_t i = 0; i < M; i++) {
      rw[0][i] = -INFINITY;
      rw[1][i] = rw[2][i] = 0;
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t x = 0; x < K; x++)
          acc += av[i * K + x] * bv[j * K + x];
        double v = want[i * N + j] = 0.5 * acc - 0.25;
        rw[0][i] = fmax(rw[0][i], v);
        rw[1][i] += v;
        rw[2][i] = fmax(rw[2][i], fabs(v));
      }
      for (int64_t j = 0; j < N; j++)
        want[i * N + j] += rw[2][i] - 1 - 0.5 * rw[0][i];
      rw[1][i] *= 0.5;
      rw[2][i] += rw[0][i] - 1;
    }
    double *got = num_get(c);
    char what[96];
    snprintf(what, sizeof what, "wg_rows %s %s", cases[q].d0, cases[q].d1);
    CHECK_ERR(num_relerr(got, want, M * N), 1e-6, what);
    free(got);
    static const char *const names[3] = {"max", "sum", "absmax"};
    for (int i = 0; i < 3; i++) {
      double *rg = num_get(r[i]);
      snprintf(what, sizeof what, "wg_rows %s %s: row %s", cases[q].d0, cases[q].d1, names[i]);
      CHECK_ERR(num_relerr(rg, rw[i], M), 1e-6, what);
      free(rg);
      free(rw[i]);
      ts_tensor_release(r[i]);
    }
    free(av);
    free(bv);
    free(want);
    ts_tensor_release(a);
    ts_tensor_release(b);
    ts_tensor_release(c);
    ts_kernel_release(k);
  }
}

int main(void) {
  ts_status st = ts_device_create_gpusim(&num_dev);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    return 2;
  }
  num_kdev = ts_device_retain(num_dev);
  test_odd_reduce();
  test_threads_atomics();
  test_mma_forms();
  test_mma_shared();
  test_pipe_gemm();
  test_two_rings();
  test_wg_gemm();
  test_tf32_gemm();
  test_wg_rows();
  num_finish();
  return ts_test_finish();
}
