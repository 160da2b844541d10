/* cpu_softmax.c - row softmax and RMSNorm on the CPU against a plain C loop
 * and against a plain copy of the same bytes (Tessera's copy_rows and
 * memcpy), the memory-bandwidth ceiling. Run from the source root. */
#include "bench/bench.h"

#include <math.h>
#include <string.h>

typedef struct job {
  ts_kernel *k;
  ts_arg args[3];
  int nargs;
  int64_t m, n;
  float *x, *y;
} job;

static void run_kernel(void *v) {
  job *j = v;
  ts_status st = ts_kernel_launch(j->k, j->args, (size_t)j->nargs);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(1);
  }
}

static void run_plain_softmax(void *v) {
  job *j = v;
  for (int64_t i = 0; i < j->m; i++) {
    const float *x = j->x + i * j->n;
    float *y = j->y + i * j->n, m = -INFINITY, s = 0;
    for (int64_t q = 0; q < j->n; q++)
      m = fmaxf(m, x[q]);
    for (int64_t q = 0; q < j->n; q++)
      s += y[q] = expf(x[q] - m);
    for (int64_t q = 0; q < j->n; q++)
      y[q] /= s;
  }
}

static void run_memcpy(void *v) {
  job *j = v;
  memcpy(j->y, j->x, sizeof(float) * (size_t)(j->m * j->n));
}

int main(void) {
  ts_device *dev;
  if (ts_device_create_cpu(0, &dev))
    return 2;
  ts_kernel *sm = bench_kernel(dev, "kernels/softmax.tile", "softmax_rows");
  ts_kernel *cp = bench_kernel(dev, "bench/cpu.tile", "copy_rows");
  printf("# softmax over rows (f32), %d threads; GB/s counts bytes read + "
         "written\n", ts_device_thread_count(dev));
  printf("| rows x cols | Tessera softmax GB/s | plain C GB/s | Tessera copy "
         "GB/s | memcpy GB/s | softmax / copy |\n|---|---|---|---|---|---|\n");
  static const int64_t shapes[][2] = {{64, 64}, {256, 256}, {1024, 1024},
                                      {4096, 2048}, {2048, 7168}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    job j = {0};
    j.m = shapes[s][0];
    j.n = shapes[s][1];
    ts_tensor *x, *y;
    if (ts_tensor_create(dev, TS_DTYPE_F32, 2, shapes[s], &x) ||
        ts_tensor_create(dev, TS_DTYPE_F32, 2, shapes[s], &y))
      return 2;
    j.x = ts_tensor_data(x);
    j.y = ts_tensor_data(y);
    for (int64_t i = 0; i < j.m * j.n; i++)
      j.x[i] = (float)(i % 977) * 0.01f;
    j.args[0] = ts_arg_tensor(x);
    j.args[1] = ts_arg_tensor(y);
    j.nargs = 2;
    double bytes = 2.0 * sizeof(float) * (double)(j.m * j.n);
    j.k = sm;
    double ts = bench_median(run_kernel, &j, 5, 0.3);
    j.k = cp;
    double tc = bench_median(run_kernel, &j, 5, 0.3);
    double tp = bench_median(run_plain_softmax, &j, 5, 0.3);
    double tm = bench_median(run_memcpy, &j, 5, 0.3);
    printf("| %lld x %lld | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
           (long long)j.m, (long long)j.n, bytes / ts * 1e-9,
           bytes / tp * 1e-9, bytes / tc * 1e-9, bytes / tm * 1e-9, tc / ts);
    fflush(stdout);
    ts_tensor_release(x);
    ts_tensor_release(y);
  }
  /* RMSNorm (f32 in and out: the same bytes as the copy) */
  ts_kernel *rn = bench_kernel(dev, "kernels/rmsnorm.tile", "rmsnorm_f32");
  printf("\n# rmsnorm_f32 over rows (weighted), GB/s counts bytes read + written\n");
  printf("| rows x cols | Tessera rmsnorm GB/s | Tessera copy GB/s | rmsnorm / copy |\n"
         "|---|---|---|---|\n");
  for (size_t s = 2; s < sizeof shapes / sizeof shapes[0]; s++) {
    job j = {0};
    j.m = shapes[s][0];
    j.n = shapes[s][1];
    ts_tensor *x, *y, *w;
    if (ts_tensor_create(dev, TS_DTYPE_F32, 2, shapes[s], &x) ||
        ts_tensor_create(dev, TS_DTYPE_F32, 2, shapes[s], &y) ||
        ts_tensor_create(dev, TS_DTYPE_F32, 1, &shapes[s][1], &w))
      return 2;
    double bytes = 2.0 * sizeof(float) * (double)(j.m * j.n);
    j.args[0] = ts_arg_tensor(x);
    j.args[1] = ts_arg_tensor(w);
    j.args[2] = ts_arg_tensor(y);
    j.nargs = 3;
    j.k = rn;
    double tr = bench_median(run_kernel, &j, 5, 0.3);
    j.args[1] = ts_arg_tensor(y);
    j.nargs = 2;
    j.k = cp;
    double tc = bench_median(run_kernel, &j, 5, 0.3);
    printf("| %lld x %lld | %.2f | %.2f | %.2f |\n", (long long)j.m,
           (long long)j.n, bytes / tr * 1e-9, bytes / tc * 1e-9, tc / tr);
    ts_tensor_release(x);
    ts_tensor_release(y);
    ts_tensor_release(w);
  }
  ts_kernel_release(rn);
  ts_kernel_release(sm);
  ts_kernel_release(cp);
  ts_device_release(dev);
  return 0;
}
