/* internal.h - private to runtime/: the device record and the thread pool
 * of the CPU device. */
#ifndef TS_RUNTIME_INTERNAL_H
#define TS_RUNTIME_INTERNAL_H

#include "runtime/runtime.h"

#include <stdatomic.h>
#include <stdio.h>

typedef struct ts_pool ts_pool;

struct ts_device {
  const ts_device_ops *ops;
  atomic_int refs;
  ts_pool *pool; /* CPU device */
  int threads;
  bool gpusim; /* the GPU simulator (gpusim.c) */
  bool cuda;   /* a CUDA device (device_cuda.c) */
  ts_graph *rec; /* the graph being recorded (graph.c), or NULL */
};

/* What graph.c records while a device records (kernel.c, tensor.c): each
 * a no-op when the device does not. A failure to record (memory) fails the
 * recording, which ts_graph_end reports. */
void ts_graph_add_launch(ts_device *d, ts_kernel *k, const ts_arg *args, size_t count,
                         const int64_t grid[3]);
void ts_graph_add_zero(ts_tensor *t);
void ts_graph_add_write(ts_tensor *t, const void *src, size_t size);
void ts_graph_add_copy(ts_tensor *dst, const ts_tensor *src);
/* While d records: the error for `what` (a read into host memory, a copy
 * through it), which also fails the recording; else NULL. */
ts_status ts_graph_refuse(ts_device *d, const char *what);
ts_kernel *ts_kernel_retain(ts_kernel *k);
/* A launch neither profiled nor timed nor recorded (a graph's, while the
 * CUDA stream is captured). */
ts_status ts_kernel_launch_plain(ts_kernel *k, const ts_arg *args, size_t count,
                                 const int64_t grid[3]);

/* Freed device memory kept for reuse (blocks.c), by size class; the
 * caller holds its device's lock. */
typedef struct ts_block_stack {
  uintptr_t *p;
  size_t n, cap;
} ts_block_stack;
/* ts_block_size's sizes, each a class: 2048 of 512-byte steps up to 1 MiB,
 * then 8 a power of two. */
#define TS_BLOCK_CLASSES (2048 + 44 * 8)
typedef struct ts_blocks {
  ts_block_stack cls[TS_BLOCK_CLASSES];
  int64_t bytes; /* kept now */
} ts_blocks;
/* The size of the block that holds n bytes (rounded, so that freed blocks
 * fit requests of nearby sizes). */
size_t ts_block_size(size_t n);
/* A kept block of block size n into *p (true), or false. */
bool ts_blocks_take(ts_blocks *c, size_t n, uintptr_t *p);
/* Keeps block p of block size n (false: no room to, the caller frees it). */
bool ts_blocks_keep(ts_blocks *c, size_t n, uintptr_t p);
/* Every kept block to release(ctx, p); the cache then holds none. */
void ts_blocks_drain(ts_blocks *c, void (*release)(void *ctx, uintptr_t p), void *ctx);
/* Frees the cache's own stacks (not the blocks: drain them first). */
void ts_blocks_destroy(ts_blocks *c);

/* The CUDA device's pieces kernel.c uses (device_cuda.c). */
const char *ts_cuda_arch(const ts_device *d); /* "sm_90a", "sm_80", "sm_86", NULL */
ts_status ts_cuda_module_load(ts_device *d, const char *ptx, const char *name,
                              int64_t smem, void **module, void **fn);
void ts_cuda_module_unload(ts_device *d, void *module);
/* Queues a launch on the device's stream; `params` are cuLaunchKernel's,
 * and the scratch memref's pointer slots point at *scratch_slot, which is
 * set to the device's scratch buffer (at least scratch_bytes, shared by
 * every launch: the stream runs them one after another). With `timer` (a
 * kernel's; *timer is made at its first timed launch) CUDA events are
 * recorded around the kernel. With TESSERA_CUDA_SYNC=1 it waits for the
 * kernel, so that a fault is this launch's error. */
typedef struct ts_cuda_timer ts_cuda_timer;
ts_status ts_cuda_launch(ts_device *d, void *fn, const int64_t grid[3],
                         int threads, int64_t smem, void **params,
                         int64_t scratch_bytes, void **scratch_slot,
                         ts_cuda_timer **timer);
void ts_cuda_stats(ts_device *d, ts_device_stats *out);
/* CUDA graphs (graph.c's replay): the stream captured from begin to end
 * (with ok false the capture is dropped), the work it queued then in *exec,
 * an instantiated graph; the stats are as they were before the capture. A
 * launch whose scratch buffer would have to grow while the stream is
 * captured fails. graph_launch queues *exec and counts `c`'s work. */
ts_status ts_cuda_capture_begin(ts_device *d);
ts_status ts_cuda_capture_end(ts_device *d, bool ok, void **exec);
ts_status ts_cuda_graph_launch(ts_device *d, void *exec, const ts_graph_counts *c);
void ts_cuda_graph_destroy(ts_device *d, void *exec);
/* Bumped each time the shared scratch buffer is replaced. */
uint64_t ts_cuda_scratch_generation(ts_device *d);
bool ts_cuda_sync_each(ts_device *d); /* TESSERA_CUDA_SYNC=1 */
/* Waits for the last timed launch and gives its seconds. */
ts_status ts_cuda_timer_seconds(ts_device *d, ts_cuda_timer *t, double *seconds);
void ts_cuda_timer_destroy(ts_device *d, ts_cuda_timer *t);

/* The GPU simulator (gpusim.c): the symbols its kernels call, and a launch
 * of `gpu` over `total` blocks of `threads` threads. `slots` are the
 * kernel's packed tensors, dims and scalars. */
#define TS_GPUSIM_MAX_SLOTS 512
void ts_gpusim_barrier(int64_t ctx);
int32_t ts_gpusim_shuffle(int64_t ctx, int64_t tid, int32_t v, int32_t off);
void ts_gpusim_mma(int64_t ctx, int64_t tid, int32_t a0, int32_t a1,
                   int32_t a2, int32_t a3, int32_t b0, int32_t b1, float c0,
                   float c1, float c2, float c3, int32_t f16);
float ts_gpusim_mma_d(int64_t ctx, int64_t tid, int32_t r);
void ts_gpusim_mma_s8(int64_t ctx, int64_t tid, int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                      int32_t b0, int32_t b1, int32_t c0, int32_t c1, int32_t c2, int32_t c3);
int32_t ts_gpusim_mma_di(int64_t ctx, int64_t tid, int32_t r);
void ts_gpusim_ldmatrix(int64_t ctx, int64_t tid, int64_t addr, int32_t n);
int32_t ts_gpusim_ldmatrix_r(int64_t ctx, int64_t tid, int32_t r);
void ts_gpusim_wgmma(int64_t ctx, int64_t tid, int64_t desc_a, int64_t desc_b,
                     int64_t acc, int32_t n, int32_t kind);
void ts_gpusim_wgmma_sync(int64_t ctx, int64_t tid, int32_t n);
void ts_gpusim_tma(int64_t ctx, int64_t tid, int64_t dst, int64_t map, int64_t x,
                   int64_t y, int64_t bar);
void ts_gpusim_mbar(int64_t ctx, int64_t tid, int32_t op, int64_t addr, int32_t parity);
void ts_gpusim_cp(int64_t dst, int64_t src, int64_t n);
void ts_gpusim_access(int64_t ctx, int64_t tid, int64_t addr, int32_t info);
/* The simulator's tensor map (what ts_gpusim_tma reads; a CUtensorMap on
 * the GPU): a row-major [rows, cols] tensor at `base`, boxes of
 * box_rows x box_cols elements of `esize` bytes, swizzled by `swz` bytes. */
typedef struct ts_sim_tmap {
  const uint8_t *base;
  int64_t rows, cols;
  int32_t box_rows, box_cols, esize, swz;
} ts_sim_tmap;
/* Shared memory bank conflicts on the simulator (gpusim_banks.c): counted
 * when on (TESSERA_GPUSIM_BANKS set, or ts_gpusim_banks(true)) per source
 * line: a warp's requests, their wavefronts and the ideal (one a phase). */
typedef struct ts_bank_line {
  int line;
  int64_t req[2], wave[2], ideal[2]; /* [0] loads, [1] stores */
} ts_bank_line;
typedef struct ts_banks ts_banks;
void ts_gpusim_banks(bool on);
bool ts_gpusim_banks_env(void); /* TESSERA_GPUSIM_BANKS set (and not "0") */
bool ts_gpusim_banks_on(void);  /* that, or ts_gpusim_banks(true) */
ts_banks *ts_banks_new(int threads);
void ts_banks_free(ts_banks *b);
void ts_banks_access(ts_banks *b, int tid, int64_t off, int bytes, bool store, int line);
void ts_banks_epoch(ts_banks *b); /* at a barrier: the epoch's requests counted */
void ts_banks_finish(ts_banks *b); /* frees b; its counts become the last launch's */
/* The calling thread's last counted launch: loads' requests, wavefronts,
 * ideal, then stores'; and its worst lines on `f`. */
void ts_gpusim_bank_totals(int64_t out[6]);
void ts_gpusim_bank_report(FILE *f, const char *name);
/* `tail` (ntail slots: the kernel's tensor maps and their flag) follow the
 * scratch parameters. */
ts_status ts_gpusim_launch(ts_packed_fn gpu, bool direct, int threads,
                           void *const *slots, int nslots, void *const *tail, int ntail,
                           const int64_t grid[3], int64_t total,
                           int64_t per_block, int64_t smem);
/* A CUtensorMap (128 bytes at `map`) of a row-major [rows, cols] tensor at
 * device address `base` (TMA; docs/abi.md "Parameters"): boxes of box_rows x
 * box_cols elements of `esize` bytes, swizzled by `swz` bytes, zeros out of
 * bounds. */
ts_status ts_cuda_tensor_map(ts_device *d, void *map, void *base, int esize, int64_t rows,
                             int64_t cols, int64_t box_rows, int64_t box_cols, int swz);
/* The CUDA C of kernel `name` built for the CPU (cudasim.c): a packed
 * function the simulator calls directly; *handle is for ts_cudasim_close. */
ts_status ts_cudasim_build(const char *cuda, const char *name, void **handle,
                           ts_packed_fn *fn);
void ts_cudasim_close(void *handle);

/* What compiled CPU code may call (rtcall.c): the simulator's barrier and
 * shuffle, print and assert. A launch on the CPU or the simulator sets its
 * state on each thread that runs its blocks; a failed assert records the
 * first message there. */
#define TS_RT_SYMBOLS 16
extern const ts_jit_symbol ts_rt_symbols[TS_RT_SYMBOLS];
typedef struct ts_launch_state {
  const ts_unit *unit; /* the kernel's: where its print and assert calls are */
  _Atomic int failed;
  char message[1024];
} ts_launch_state;
/* Sets this thread's launch state; returns the one it replaces. */
ts_launch_state *ts_launch_state_set(ts_launch_state *s);

/* Runs fn(ctx, begin, end) over [0, total) in chunks on every thread of the
 * pool (the caller's included); returns when all are done. */
typedef void (*ts_pool_fn)(void *ctx, int64_t begin, int64_t end);
ts_status ts_pool_create(int threads, ts_pool **out);
void ts_pool_run(ts_pool *p, ts_pool_fn fn, void *ctx, int64_t total);
void ts_pool_destroy(ts_pool *p);

#endif
