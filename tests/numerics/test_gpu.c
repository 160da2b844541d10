/* test_gpu.c - the GPU-only parts of the language (tests/ptx/gpu.tile) on
 * the GPU simulator, which runs kernels in their GPU form: thread_id(),
 * atomic_max, block-level atomics, and the reductions that cannot use warp
 * shuffles (48 threads; 64-bit integers). */
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

int main(void) {
  ts_status st = ts_device_create_gpusim(&num_dev);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    return 2;
  }
  num_kdev = ts_device_retain(num_dev);
  test_odd_reduce();
  test_threads_atomics();
  num_finish();
  return ts_test_finish();
}
