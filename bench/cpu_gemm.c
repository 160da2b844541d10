/* cpu_gemm.c - f32 GEMM on the CPU against a plain C loop and OpenBLAS
 * sgemm, on the same cores, at sizes 64 to 2048: C = A·B (bench/cpu.tile's
 * sgemm), then C = A·Bᵀ (kernels/gemm.tile's linear_f32 at its default
 * tiles, the model's linear layers: a tile gemm with trans_b). Prints
 * GFLOP/s and the ratios. Then a decode step's linear, one row times W^T
 * (linear_f32 at the model's CPU tiles, 1 x 8 x 128, model/ops.lua
 * O.linear_tiles; f32 and bf16 weights), whose gemm
 * reads the weights in place (compiler/gen_tile.c gen_gemm_in_place),
 * against the same loop copying each tile first
 * (tests/lua/gemm_in_place.tile dot_copied) and OpenBLAS sgemv over f32
 * weights. Then bf16 operands into f32: gemm_nt on vdpbf16ps against its
 * plain loops and linear_f32 over the same values. Run from the source root:
 *   build/bench/cpu_gemm [max_size] */
#include "bench/bench.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

typedef struct job {
  int n;
  bool nt; /* C = A·Bᵀ */
  float *a, *b, *c;
  ts_kernel *k;
  ts_tensor *ta, *tb, *tc;
} job;

static void run_tessera(void *v) {
  job *j = v;
  ts_arg args[3] = {ts_arg_tensor(j->ta), ts_arg_tensor(j->tb),
                    ts_arg_tensor(j->tc)};
  ts_status st = ts_kernel_launch(j->k, args, 3);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(1);
  }
}

static void run_plain(void *v) {
  job *j = v;
  int n = j->n;
  memset(j->c, 0, sizeof(float) * n * n);
  if (j->nt) {
    for (int i = 0; i < n; i++)
      for (int q = 0; q < n; q++) {
        float s = 0;
        for (int k = 0; k < n; k++)
          s += j->a[i * n + k] * j->b[q * n + k];
        j->c[i * n + q] = s;
      }
    return;
  }
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++) {
      float aik = j->a[i * n + k];
      for (int q = 0; q < n; q++)
        j->c[i * n + q] += aik * j->b[k * n + q];
    }
}

static void run_blas(void *v) {
  job *j = v;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, j->nt ? CblasTrans : CblasNoTrans, j->n, j->n, j->n, 1.0f,
              j->a, j->n, j->b, j->n, 0.0f, j->c, j->n);
}

/* The relative L2 distance of x from ref (n values). */
static double rel_err(const float *x, const float *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += (x[i] - ref[i]) * (double)(x[i] - ref[i]);
    den += ref[i] * (double)ref[i];
  }
  return sqrt(num / den);
}

static int table(ts_device *dev, ts_kernel *k, bool nt, int max) {
  printf("| n | Tessera GFLOP/s | plain C GFLOP/s | OpenBLAS GFLOP/s | "
         "Tessera / OpenBLAS | Tessera / plain C | rel. error vs OpenBLAS |\n");
  printf("|---|---|---|---|---|---|---|\n");
  for (int n = 64; n <= max; n *= 2) {
    job j = {.n = n, .nt = nt, .k = k};
    int64_t sh[2] = {n, n};
    if (ts_tensor_create(dev, TS_DTYPE_F32, 2, sh, &j.ta) ||
        ts_tensor_create(dev, TS_DTYPE_F32, 2, sh, &j.tb) ||
        ts_tensor_create(dev, TS_DTYPE_F32, 2, sh, &j.tc))
      return 2;
    j.a = ts_tensor_data(j.ta);
    j.b = ts_tensor_data(j.tb);
    float *cref = malloc(sizeof(float) * n * n);
    srand(1);
    for (int i = 0; i < n * n; i++) {
      j.a[i] = (float)rand() / RAND_MAX - 0.5f;
      j.b[i] = (float)rand() / RAND_MAX - 0.5f;
    }
    double flop = 2.0 * n * n * n;
    j.c = ts_tensor_data(j.tc);
    double tt = bench_median(run_tessera, &j, 5, 0.5);
    j.c = cref;
    double tb = bench_median(run_blas, &j, 5, 0.5);
    double tp = n <= 1024 ? bench_median(run_plain, &j, 3, 0.2) : NAN;
    run_blas(&j);
    double err = rel_err(ts_tensor_data(j.tc), cref, (int64_t)n * n);
    printf("| %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.1e |\n", n,
           flop / tt * 1e-9, flop / tp * 1e-9, flop / tb * 1e-9, tb / tt,
           tp / tt, err);
    fflush(stdout);
    free(cref);
    ts_tensor_release(j.ta);
    ts_tensor_release(j.tb);
    ts_tensor_release(j.tc);
  }
  return 0;
}

/* ---- one row: a decode step's linear ----------------------------------- */

/* A kernel and its arguments (a decode step's linear; also gemm_nt's launches) */
typedef struct gemv {
  ts_kernel *k;
  ts_arg a[4];
  int n;
  int N, K;
  const float *x, *w;
  float *y;
} gemv;

static void run_gemv(void *v) {
  gemv *j = v;
  ts_status st = ts_kernel_launch(j->k, j->a, (size_t)j->n);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(1);
  }
}

static void run_sgemv(void *v) {
  gemv *j = v;
  cblas_sgemv(CblasRowMajor, CblasNoTrans, j->N, j->K, 1.0f, j->w, j->K, j->x, 1, 0.0f, j->y,
              1);
}

static ts_tensor *tensor(ts_device *d, ts_dtype dt, int64_t a, int64_t b, int64_t c) {
  int64_t sh[3] = {a, b, c};
  ts_tensor *t;
  if (ts_tensor_create(d, dt, 3, sh, &t))
    exit(2);
  return t;
}

static ts_tensor *as2(ts_tensor *t) {
  int64_t sh[2] = {ts_tensor_dim(t, 1) * ts_tensor_dim(t, 0), ts_tensor_dim(t, 2)};
  ts_tensor *r;
  if (ts_tensor_reshape(t, 2, sh, &r))
    exit(2);
  return r;
}

static int gemv_table(ts_device *dev) {
  static const int shapes[][2] = {{256, 256}, {1024, 1024}, {4096, 4096}, {1024, 4096},
                                  {4096, 1024}};
  printf("| W | N x K | Tessera us | Tessera GB/s | copied tiles us | OpenBLAS sgemv (f32 W) us "
         "| copied / Tessera | OpenBLAS / Tessera | max rel. error vs OpenBLAS |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int bf = 0; bf < 2; bf++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
      int N = shapes[s][0], K = shapes[s][1];
      ts_dtype wt = bf ? TS_DTYPE_BF16 : TS_DTYPE_F32;
      ts_define defs[4] = {{"BM", "1"}, {"BN", "8"}, {"BK", "128"}, {"W", "bf16"}};
      ts_tensor *x = tensor(dev, TS_DTYPE_F32, 1, 1, K), *w = tensor(dev, wt, 1, N, K);
      ts_tensor *y = tensor(dev, TS_DTYPE_F32, 1, 1, N), *seen = tensor(dev, TS_DTYPE_F32, 1, 1, 2);
      ts_tensor *x2 = as2(x), *w2 = as2(w), *y2 = as2(y), *seen1;
      int64_t two = 2;
      if (ts_tensor_reshape(seen, 1, &two, &seen1))
        return 2;
      float *xf = malloc(sizeof(float) * K), *wf = malloc(sizeof(float) * N * K);
      float *yb = malloc(sizeof(float) * N);
      srand(2);
      for (int i = 0; i < K; i++)
        ts_tensor_set(x, i, xf[i] = (float)rand() / RAND_MAX - 0.5f);
      for (int i = 0; i < N * K; i++) { /* the f32 weights hold the bf16 values */
        ts_tensor_set(w, i, (float)rand() / RAND_MAX - 0.5f);
        wf[i] = (float)ts_tensor_get(w, i);
      }
      gemv in = {bench_kernel_with(dev, "kernels/gemm.tile", "linear_f32", defs, 3 + bf),
                 {ts_arg_tensor(x2), ts_arg_tensor(w2), ts_arg_tensor(y2)}, 3, N, K,
                 xf, wf, yb};
      gemv cp = {bench_kernel_with(dev, "tests/lua/gemm_in_place.tile", "dot_copied", defs,
                                   3 + bf),
                 {ts_arg_tensor(x), ts_arg_tensor(w), ts_arg_tensor(y), ts_arg_tensor(seen1)}, 4,
                 N, K, xf, wf, yb};
      double tc = bench_median(run_gemv, &cp, 9, 0.3);
      double ti = bench_median(run_gemv, &in, 9, 0.3);
      double tb = bench_median(run_sgemv, &in, 9, 0.3);
      run_sgemv(&in);
      run_gemv(&in);
      double err = 0, big = 0;
      for (int i = 0; i < N; i++) {
        double d = fabs(ts_tensor_get(y, i) - yb[i]);
        err = d > err ? d : err;
        big = fabs(yb[i]) > big ? fabs(yb[i]) : big;
      }
      double bytes = (double)N * K * (bf ? 2 : 4);
      printf("| %s | %d x %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.2f | %.1e |\n",
             bf ? "bf16" : "f32", N, K, ti * 1e6, bytes / ti * 1e-9, tc * 1e6, tb * 1e6,
             tc / ti, tb / ti, err / big);
      fflush(stdout);
      ts_kernel_release(in.k);
      ts_kernel_release(cp.k);
      ts_tensor *all[] = {x, w, y, seen, x2, w2, y2, seen1};
      for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        ts_tensor_release(all[i]);
      free(xf);
      free(wf);
      free(yb);
    }
  return 0;
}

/* ---- bf16 operands: C = A·Bᵀ (gemm_nt) -------------------------------- */

/* gemm_nt (bf16 A and B, f32 C) at CPU tiles, its gemm on vdpbf16ps
 * (compiler/gen_bf16.c, on a host with AVX-512 BF16) against the same
 * kernel compiled with TESSERA_CPU_BF16=0 (the plain loops) and against
 * linear_f32 over the same values in f32 (the f32 dot micro-kernel). */
static int bf16_table(ts_device *dev, int max) {
  ts_define defs[3] = {{"BM", "32"}, {"BN", "32"}, {"BK", "256"}};
  ts_kernel *kd = bench_kernel_with(dev, "kernels/gemm.tile", "gemm_nt", defs, 3);
  setenv("TESSERA_CPU_BF16", "0", 1);
  ts_kernel *kp = bench_kernel_with(dev, "kernels/gemm.tile", "gemm_nt", defs, 3);
  unsetenv("TESSERA_CPU_BF16");
  ts_kernel *kf = bench_kernel(dev, "kernels/gemm.tile", "linear_f32");
  printf("| n | bf16 GFLOP/s | bf16 plain loops GFLOP/s | f32 GFLOP/s | bf16 / plain loops "
         "| bf16 / f32 | rel. diff bf16 vs f32 |\n");
  printf("|---|---|---|---|---|---|---|\n");
  for (int n = 256; n <= max; n *= 2) {
    int64_t sh[2] = {n, n};
    ts_tensor *all[7]; /* a, b (bf16), af, bf, c, cp, cf */
    for (int i = 0; i < 7; i++)
      if (ts_tensor_create(dev, i < 2 ? TS_DTYPE_BF16 : TS_DTYPE_F32, 2, sh, &all[i]))
        return 2;
    ts_tensor *a = all[0], *b = all[1], *af = all[2], *bf = all[3], *c = all[4], *cp = all[5],
              *cf = all[6];
    srand(3);
    for (int64_t i = 0; i < (int64_t)n * n; i++) { /* the f32 operands hold the bf16 values */
      ts_tensor_set(a, i, (float)rand() / RAND_MAX - 0.5f);
      ts_tensor_set(b, i, (float)rand() / RAND_MAX - 0.5f);
      ts_tensor_set(af, i, ts_tensor_get(a, i));
      ts_tensor_set(bf, i, ts_tensor_get(b, i));
    }
    gemv jd = {.k = kd, .a = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)}, .n = 3};
    gemv jp = {.k = kp, .a = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(cp)}, .n = 3};
    gemv jf = {.k = kf, .a = {ts_arg_tensor(af), ts_arg_tensor(bf), ts_arg_tensor(cf)}, .n = 3};
    double flop = 2.0 * n * n * n;
    double td = bench_median(run_gemv, &jd, 5, 0.5), tf = bench_median(run_gemv, &jf, 5, 0.5);
    double tp = n <= 1024 ? bench_median(run_gemv, &jp, 3, 0.2) : NAN;
    printf("| %d | %.1f | %.1f | %.1f | %.2f | %.2f | %.1e |\n", n, flop / td * 1e-9,
           flop / tp * 1e-9, flop / tf * 1e-9, tp / td, tf / td,
           rel_err(ts_tensor_data(c), ts_tensor_data(cf), (int64_t)n * n));
    fflush(stdout);
    for (int i = 0; i < 7; i++)
      ts_tensor_release(all[i]);
  }
  ts_kernel_release(kd);
  ts_kernel_release(kp);
  ts_kernel_release(kf);
  return 0;
}

int main(int argc, char **argv) {
  int max = argc > 1 ? atoi(argv[1]) : 2048;
  ts_device *dev;
  if (ts_device_create_cpu(0, &dev))
    return 2;
  ts_kernel *k = bench_kernel(dev, "bench/cpu.tile", "sgemm");
  printf("# f32 GEMM C = A·B, %d threads; %s %.0f ms\n", ts_device_thread_count(dev),
         ts_kernel_cached(k) ? "loaded from the cache in" : "compiled in",
         ts_kernel_compile_seconds(k) * 1e3);
  if (table(dev, k, false, max))
    return 2;
  ts_kernel_release(k);
  k = bench_kernel(dev, "kernels/gemm.tile", "linear_f32");
  printf("\n# f32 GEMM C = A·Bᵀ (linear_f32), %d threads; %s %.0f ms\n",
         ts_device_thread_count(dev), ts_kernel_cached(k) ? "loaded from the cache in" : "compiled in",
         ts_kernel_compile_seconds(k) * 1e3);
  if (table(dev, k, true, max))
    return 2;
  ts_kernel_release(k);
  printf("\n# one row: y = x·Wᵀ (linear_f32, 1 x 8 x 128 tiles: a decode step's on the CPU), %d threads\n",
         ts_device_thread_count(dev));
  if (gemv_table(dev))
    return 2;
  printf("\n# bf16 GEMM C = A·Bᵀ (gemm_nt, 32 x 32 x 256 tiles) against its plain loops and f32 "
         "(linear_f32), %d threads\n",
         ts_device_thread_count(dev));
  if (bf16_table(dev, max))
    return 2;
  ts_device_release(dev);
  return 0;
}
