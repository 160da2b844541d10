/* gpu_v4.h - what bench/gpu_v4.c's sections share (the MoE ones are in
 * gpu_v4_moe.c): the devices, the run's options and baselines, and the
 * helpers that make, fill, time and check kernels. */
#ifndef TS_BENCH_GPU_V4_H
#define TS_BENCH_GPU_V4_H

#include "bench/bench.h"

extern ts_device *gpu, *host;
extern bool quick, check, check_only;
extern double copy_bps;   /* bytes read + written per second, this run */
extern int failed_checks; /* GPU results that differ: reported, the run goes on */
extern double hbm_bps;    /* nominal, from the device's name (0: unknown) */
extern double peak_flops; /* dense bf16 */

void die(ts_status st, const char *what);
/* Kernel `name` of `file` for device d, with "A=1 B=2" params. */
ts_kernel *kern(ts_device *d, const char *file, const char *name, const char *defs);
ts_tensor *tensor(ts_device *d, ts_dtype dt, uint32_t rank, const int64_t *shape);
/* A tensor on d filled with random values in [-scale, scale). */
ts_tensor *rnd(ts_device *d, ts_dtype dt, uint32_t rank, const int64_t *shape, int seed,
               double scale);
/* Host tensor -> a copy on the GPU. */
ts_tensor *to_gpu(ts_tensor *t);
/* Median seconds of 10 launches (3 with --quick) after a warm-up. */
double timed(ts_kernel *k, const ts_arg *a, size_t n);
/* The kernel on a small shape on the GPU and on the CPU (host tensors; arg
 * `out` compared): a relative L2 difference past `tol` is a failed check. */
void differential(const char *file, const char *name, const char *defs, ts_arg *args, size_t n,
                  size_t out, double tol);
void release_args(ts_arg *a, size_t n);
/* "0.71" of a baseline, or "-" without one. */
const char *ratio(char *buf, double x);
/* PyTorch's seconds for `what` (bench/gpu_torch.py), 0 when it cannot run. */
double torch_seconds(const char *what);

/* gpu_v4_moe.c */
void moe(void);
void moe_decode(void);
void moe_gating(void);

#endif
