/* cpu_gemm.c - f32 GEMM on the CPU against a plain C loop and OpenBLAS
 * sgemm, on the same cores, at sizes 64 to 2048: C = A·B (bench/cpu.tile's
 * sgemm), then C = A·Bᵀ (kernels/gemm.tile's linear_f32 at its default
 * tiles, the model's linear layers: a tile gemm with trans_b). Prints
 * GFLOP/s and the ratios; run from the source root:
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
    const float *ct = ts_tensor_data(j.tc);
    double num = 0, den = 0;
    for (int i = 0; i < n * n; i++) {
      num += (ct[i] - cref[i]) * (double)(ct[i] - cref[i]);
      den += cref[i] * (double)cref[i];
    }
    double err = sqrt(num / den);
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
  ts_device_release(dev);
  return 0;
}
