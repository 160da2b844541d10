/* num.h - helpers of the numerics tests: a CPU device, kernels compiled
 * from kernels/ or tests/numerics/, seeded random data, narrow-float
 * rounding, and the relative norm error against an f64 reference. */
#ifndef TS_TEST_NUM_H
#define TS_TEST_NUM_H

#include "tests/unit/harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tensors live on num_dev (host memory); kernels are compiled for num_kdev,
 * the same device unless TS_TEST_DEVICE=cuda, when num_launch copies the
 * tensors to the GPU and back around each launch. */
extern ts_device *num_dev, *num_kdev;

void num_init(void);
void num_finish(void);
/* Whether test group `name` runs: TS_NUM_ONLY unset or empty, or a
 * comma-separated list naming it (a GPU run that wants the attention cases
 * alone, under compute-sanitizer: TS_NUM_ONLY=attn_tc,hca). */
bool num_want(const char *name);
/* Every name in TS_NUM_ONLY is one of the suite's `n` groups (a misspelt
 * one would run nothing and pass); a failed check otherwise. */
void num_want_known(const char *const *names, size_t n);
/* Compiles kernel `name` of file `rel` (relative to the source root), with
 * the "NAME=VALUE" defines of def0 and def1 (each may hold several,
 * space-separated; 16 at most); NULL on failure (reported). */
ts_kernel *num_kernel(const char *rel, const char *name, const char *def0,
                      const char *def1);
ts_tensor *num_tensor(ts_dtype dt, uint32_t rank, const int64_t *shape);
/* Fills with uniform values in [lo, hi), rounded to the tensor's dtype;
 * returns the values as doubles (malloc'd). */
double *num_fill(ts_tensor *t, double lo, double hi, uint64_t *seed);
/* The tensor's elements as doubles (malloc'd). */
double *num_get(ts_tensor *t);
/* ||got - want|| / max(||want||, tiny) */
double num_relerr(const double *got, const double *want, int64_t n);
double num_round(ts_dtype dt, double v);
/* f32 x as a tf32=true gemm reads it: the low 13 mantissa bits cleared
 * (how the CPU, the simulator and the scalar GPU gemm take the operand). */
double num_tf32(double x);
/* Whether the kernels run on a real GPU (TS_TEST_DEVICE=cuda). */
bool num_real_gpu(void);
/* num_fill for the operands of a tf32=true gemm: on a real GPU the values
 * are made TF32-exact, since whether its tensor cores truncate a raw f32
 * word or round it is the hardware's (bench/gpu_v4 reports which); on the
 * CPU and the simulator they stay f32, so the tests check the truncation. */
double *num_fill_tf32(ts_tensor *t, double lo, double hi, uint64_t *seed);
bool num_launch(ts_kernel *k, const ts_arg *args, size_t n);
/* A file of ../shared/golden/tiny (says "skipped" and gives NULL when the
 * folder is absent), and one of its tensors as a Tessera tensor of the
 * same dtype and shape (NULL, and a failed check, when it is missing). */
ts_safetensors *num_golden_open(const char *file);
ts_tensor *num_golden_tensor(ts_safetensors *f, const char *name);

#define CHECK_ERR(err, limit, what)                                            \
  do {                                                                         \
    double e_ = (err);                                                         \
    if (!(e_ <= (limit)))                                                      \
      fprintf(stderr, "%s: relative error %.3g > %.3g\n", what, e_,            \
              (double)(limit));                                                \
    CHECK(e_ <= (limit));                                                      \
  } while (0)

#endif
