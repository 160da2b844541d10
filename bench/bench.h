/* bench.h - timing helpers of the CPU benchmarks: a monotonic clock and the
 * median of repeated runs. */
#ifndef TS_BENCH_H
#define TS_BENCH_H

#define _POSIX_C_SOURCE 200809L
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int bench_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median seconds of `reps` runs of fn(ctx) after one warm-up, with at
 * least `min_seconds` spent in total. */
static inline double bench_median(void (*fn)(void *), void *ctx, int reps,
                                  double min_seconds) {
  double t[64], start = bench_now();
  int n = 0;
  fn(ctx);
  while (n < 64 && (n < reps || bench_now() - start < min_seconds)) {
    double t0 = bench_now();
    fn(ctx);
    t[n++] = bench_now() - t0;
  }
  qsort(t, (size_t)n, sizeof t[0], bench_cmp);
  return t[n / 2];
}

/* The GPU benchmarks: a failed step is reported and ends the program. */
static inline void bench_check(ts_status st, const char *prog, const char *what) {
  if (st) {
    fprintf(stderr, "%s: %s: %s\n", prog, what, ts_status_message(st));
    exit(1);
  }
}

/* A copy of `t` on device `d`. */
static inline ts_tensor *bench_copy(ts_tensor *t, ts_device *d, const char *prog) {
  ts_tensor *c = NULL;
  bench_check(ts_tensor_copy(t, d, &c), prog, "a copy between devices");
  return c;
}

/* Median seconds of `reps` (at most 32) launches after a warm-up, each by
 * the GPU's events (ts_kernel_last_seconds). */
static inline double bench_gpu_median(ts_kernel *k, const ts_arg *a, size_t n, int reps,
                                      const char *prog) {
  double t[32];
  ts_kernel_set_timing(k, true);
  bench_check(ts_kernel_launch(k, a, n), prog, "a launch");
  if (reps > 32)
    reps = 32;
  for (int i = 0; i < reps; i++) {
    bench_check(ts_kernel_launch(k, a, n), prog, "a launch");
    t[i] = ts_kernel_last_seconds(k);
  }
  qsort(t, (size_t)reps, sizeof t[0], bench_cmp);
  return t[reps / 2];
}

static inline ts_kernel *bench_kernel_with(ts_device *d, const char *path, const char *name,
                                           const ts_define *defs, size_t ndefs) {
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  ts_kernel *k = NULL;
  ts_status st = ts_kernel_create(d, path, name, defs, ndefs, &diags, &k);
  if (st) {
    ts_diags_render(&diags, stderr, (ts_render_options){false, true});
    fprintf(stderr, "%s: %s\n", name, ts_status_message(st));
    exit(2);
  }
  ts_diags_deinit(&diags);
  return k;
}

static inline ts_kernel *bench_kernel(ts_device *d, const char *path, const char *name) {
  return bench_kernel_with(d, path, name, NULL, 0);
}

#endif
