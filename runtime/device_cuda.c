/* device_cuda.c - the CUDA device, through the Driver API. libcuda.so.1 is
 * opened with dlopen (never linked), and every entry point is looked up
 * once with cuGetProcAddress at the API version its CUDA 13 PFN_* type
 * names, into one table. Buffers are device memory; kernels are the PTX of
 * the GPU target (compiled through the kernel cache), loaded with
 * cuModuleLoadDataEx (the driver JIT-compiles it for the GPU) and launched
 * with cuLaunchKernel with the arguments packed as the CPU ABI packs them
 * (docs/abi.md): a memref as five values, then dims and scalars, then the
 * global scratch memref and its bytes per block. Errors carry
 * cuGetErrorName's name and cuGetErrorString's text.
 *
 * Work is queued on one stream and not waited for: launches, copies into
 * the device (from pageable memory the driver stages them before it
 * returns), zeroing and copies within the device; a read from the device
 * and ts_device_sync wait. Freed memory is kept for reuse in a cache of
 * blocks (the stream orders a block's old and new users), returned to the
 * driver only when an allocation fails or the device closes.
 *
 * Built only where the CUDA headers are (TS_HAVE_CUDA); elsewhere creating
 * the device says so. Without a driver or GPU it says why, in one line. */
#define _GNU_SOURCE
#include "runtime/internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifndef TS_HAVE_CUDA

const char *ts_device_model(const ts_device *d) { return ts_device_name(d); }

ts_status ts_device_create_cuda(int ordinal, ts_device **out) {
  (void)ordinal;
  (void)out;
  return ts_status_make(TS_ERR_UNSUPPORTED,
                        "no GPU: Tessera was built without the CUDA headers");
}

ts_status ts_cuda_module_load(ts_device *d, const char *ptx, const char *name,
                              int64_t smem, void **module, void **fn) {
  (void)d, (void)ptx, (void)name, (void)smem, (void)module, (void)fn;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}
void ts_cuda_module_unload(ts_device *d, void *module) { (void)d, (void)module; }
ts_status ts_cuda_launch(ts_device *d, void *fn, const int64_t grid[3],
                         int threads, int64_t smem, void **params,
                         int64_t scratch_bytes, void **scratch_slot,
                         ts_cuda_timer **timer) {
  (void)d, (void)fn, (void)grid, (void)threads, (void)smem, (void)params;
  (void)scratch_bytes, (void)scratch_slot, (void)timer;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}
ts_status ts_cuda_timer_seconds(ts_device *d, ts_cuda_timer *t, double *seconds) {
  (void)d, (void)t, (void)seconds;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}
void ts_cuda_timer_destroy(ts_device *d, ts_cuda_timer *t) { (void)d, (void)t; }
void ts_cuda_stats(ts_device *d, ts_device_stats *out) { (void)d, (void)out; }
const char *ts_cuda_arch(const ts_device *d) {
  (void)d;
  return NULL;
}
ts_status ts_cuda_capture_begin(ts_device *d) {
  (void)d;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}
ts_status ts_cuda_capture_end(ts_device *d, bool ok, void **exec) {
  (void)d, (void)ok, (void)exec;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}
ts_status ts_cuda_graph_launch(ts_device *d, void *exec, const ts_graph_counts *c) {
  (void)d, (void)exec, (void)c;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}
void ts_cuda_graph_destroy(ts_device *d, void *exec) { (void)d, (void)exec; }
uint64_t ts_cuda_scratch_generation(ts_device *d) {
  (void)d;
  return 0;
}
bool ts_cuda_sync_each(ts_device *d) {
  (void)d;
  return false;
}
ts_status ts_cuda_tensor_map(ts_device *d, void *map, void *base, int esize, int64_t rows,
                             int64_t cols, int64_t box_rows, int64_t box_cols, int swz) {
  (void)d, (void)map, (void)base, (void)esize, (void)rows, (void)cols;
  (void)box_rows, (void)box_cols, (void)swz;
  return ts_status_make(TS_ERR_UNSUPPORTED, "no CUDA device");
}

#else

#include <cuda.h>
#include <cudaTypedefs.h>

/* X(field, name, version): field has type PFN_<name>_v<version>. */
#define CUDA_API(X)                                                            \
  X(Init, cuInit, 2000)                                                        \
  X(DriverGetVersion, cuDriverGetVersion, 2020)                                \
  X(DeviceGet, cuDeviceGet, 2000)                                              \
  X(DeviceGetCount, cuDeviceGetCount, 2000)                                    \
  X(DeviceGetName, cuDeviceGetName, 2000)                                      \
  X(DeviceGetAttribute, cuDeviceGetAttribute, 2000)                            \
  X(DevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, 7000)                    \
  X(DevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease, 11000)                 \
  X(CtxSetCurrent, cuCtxSetCurrent, 4000)                                      \
  X(StreamCreate, cuStreamCreate, 2000)                                        \
  X(StreamDestroy, cuStreamDestroy, 4000)                                      \
  X(StreamSynchronize, cuStreamSynchronize, 2000)                              \
  X(MemAlloc, cuMemAlloc, 3020)                                                \
  X(MemFree, cuMemFree, 3020)                                                  \
  X(MemcpyHtoDAsync, cuMemcpyHtoDAsync, 3020)                                  \
  X(MemcpyDtoHAsync, cuMemcpyDtoHAsync, 3020)                                  \
  X(MemcpyDtoDAsync, cuMemcpyDtoDAsync, 3020)                                  \
  X(MemsetD8Async, cuMemsetD8Async, 3020)                                      \
  X(ModuleLoadDataEx, cuModuleLoadDataEx, 2010)                                \
  X(ModuleUnload, cuModuleUnload, 2000)                                        \
  X(ModuleGetFunction, cuModuleGetFunction, 2000)                              \
  X(FuncSetAttribute, cuFuncSetAttribute, 9000)                                \
  X(LaunchKernel, cuLaunchKernel, 4000)                                        \
  X(EventCreate, cuEventCreate, 2000)                                          \
  X(EventRecord, cuEventRecord, 2000)                                          \
  X(EventSynchronize, cuEventSynchronize, 2000)                                \
  X(EventElapsedTime, cuEventElapsedTime, 12080)                               \
  X(EventDestroy, cuEventDestroy, 4000)                                        \
  X(GetErrorName, cuGetErrorName, 6000)                                        \
  X(GetErrorString, cuGetErrorString, 6000)                                    \
  X(TensorMapEncodeTiled, cuTensorMapEncodeTiled, 12000)                      \
  X(StreamBeginCapture, cuStreamBeginCapture, 10010)                           \
  X(StreamEndCapture, cuStreamEndCapture, 10000)                               \
  X(GraphInstantiateWithFlags, cuGraphInstantiateWithFlags, 11040)             \
  X(GraphLaunch, cuGraphLaunch, 10000)                                         \
  X(GraphExecDestroy, cuGraphExecDestroy, 10000)                               \
  X(GraphDestroy, cuGraphDestroy, 10000)

typedef struct cuda_api {
  void *lib;
#define X(field, name, version) PFN_##name##_v##version field;
  CUDA_API(X)
#undef X
} cuda_api;

typedef struct cuda_device {
  ts_device base; /* first: a ts_device * is a cuda_device * */
  cuda_api api;
  CUdevice dev;
  CUcontext ctx;
  CUstream stream;
  int cc_major, cc_minor;
  int smem_optin; /* the most shared memory a block may opt into */
  char name[128];
  bool sync_each; /* TESSERA_CUDA_SYNC=1: every launch waits */
  pthread_mutex_t mu; /* the block cache and the scratch buffer */
  ts_blocks blocks; /* freed blocks, by size class: a request finds its blocks at once */
  CUdeviceptr scratch; /* the launches' global scratch, shared */
  size_t scratch_size;
  uint64_t scratch_gen; /* bumped when scratch is replaced (a CUDA graph names it) */
  bool capturing;       /* the stream is captured (ts_cuda_capture_begin) */
  ts_device_stats saved; /* the stats when the capture began */
  ts_device_stats stats; /* under mu */
} cuda_device;

/* One more of stats field `f`. */
#define COUNT(c, f)                                                            \
  do {                                                                         \
    pthread_mutex_lock(&(c)->mu);                                              \
    (c)->stats.f++;                                                            \
    pthread_mutex_unlock(&(c)->mu);                                            \
  } while (0)

struct ts_cuda_timer {
  CUevent start, end;
};

/* The driver's error r from `what`, its name and text in the message: a
 * TS_ERR_NOMEM when the driver is out of memory (whose caller may free
 * memory and try again), else TS_ERR_IO. */
static ts_status cu_fail(const cuda_api *a, CUresult r, const char *what) {
  const char *name = NULL, *text = NULL;
  if (a->GetErrorName)
    a->GetErrorName(r, &name);
  if (a->GetErrorString)
    a->GetErrorString(r, &text);
  return ts_status_make(r == CUDA_ERROR_OUT_OF_MEMORY ? TS_ERR_NOMEM : TS_ERR_IO, "%s: %s (%s)",
                        what, name ? name : "CUDA error", text ? text : "no text");
}

#define CU(a, call, what)                                                      \
  do {                                                                         \
    CUresult r_ = (call);                                                      \
    if (r_ != CUDA_SUCCESS)                                                    \
      return cu_fail((a), r_, (what));                                         \
  } while (0)

/* Opens the driver and fills the table; a missing piece is "no GPU: ...". */
static ts_status load_api(cuda_api *a) {
  memset(a, 0, sizeof *a);
  a->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!a->lib)
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "no GPU: libcuda.so.1 is not installed");
  PFN_cuGetProcAddress_v12000 get =
      (PFN_cuGetProcAddress_v12000)dlsym(a->lib, "cuGetProcAddress_v2");
  if (!get)
    return ts_status_make(TS_ERR_UNSUPPORTED, "no GPU: the CUDA driver is "
                          "older than 12.0 (no cuGetProcAddress_v2)");
  CUdriverProcAddressQueryResult found;
#define X(field, name, version)                                                \
  if (get(#name, (void **)&a->field, version, CU_GET_PROC_ADDRESS_DEFAULT,     \
          &found) != CUDA_SUCCESS ||                                           \
      found != CU_GET_PROC_ADDRESS_SUCCESS || !a->field)                       \
    return ts_status_make(TS_ERR_UNSUPPORTED, "no GPU: the CUDA driver has "   \
                          "no %s (version %d)", #name, version);
  CUDA_API(X)
#undef X
  return NULL;
}

/* The hint on an error found where the device is waited for: the work
 * queued before it may have failed, not the call that reported it. */
static ts_status queued_fail(const cuda_api *a, CUresult r, const char *what) {
  return ts_status_annotate(cu_fail(a, r, what),
                            "the work queued on the GPU failed (TESSERA_CUDA_SYNC=1 "
                            "waits for each launch and names its kernel)");
}

static ts_status cuda_sync(ts_device *d) {
  cuda_device *c = (cuda_device *)d;
  COUNT(c, waits);
  CUresult r = c->api.StreamSynchronize(c->stream);
  return r == CUDA_SUCCESS ? NULL : queued_fail(&c->api, r, "cuStreamSynchronize");
}

static void mem_free(void *ctx, uintptr_t p) {
  ((cuda_device *)ctx)->api.MemFree((CUdeviceptr)p);
}

/* Waits for the queue and returns every cached block to the driver. Called
 * with c->mu held. */
static void release_cache(cuda_device *c) {
  if (c->blocks.bytes == 0)
    return;
  c->api.StreamSynchronize(c->stream);
  ts_blocks_drain(&c->blocks, mem_free, c);
  c->stats.cached_bytes = 0;
}

static ts_status cuda_alloc(ts_device *d, size_t size, void **out) {
  cuda_device *c = (cuda_device *)d;
  size_t n = ts_block_size(size);
  pthread_mutex_lock(&c->mu);
  uintptr_t kept;
  if (ts_blocks_take(&c->blocks, n, &kept)) {
    *out = (void *)kept;
    c->stats.cached_bytes = c->blocks.bytes;
    pthread_mutex_unlock(&c->mu);
    return NULL;
  }
  CUdeviceptr p;
  c->stats.driver_allocs++;
  CUresult r = c->api.MemAlloc(&p, n);
  if (r == CUDA_ERROR_OUT_OF_MEMORY && c->blocks.bytes > 0) {
    release_cache(c);
    r = c->api.MemAlloc(&p, n);
  }
  pthread_mutex_unlock(&c->mu);
  if (r != CUDA_SUCCESS)
    return cu_fail(&c->api, r, "cuMemAlloc");
  *out = (void *)(uintptr_t)p;
  return NULL;
}

static void cuda_free(ts_device *d, void *p, size_t size) {
  cuda_device *c = (cuda_device *)d;
  pthread_mutex_lock(&c->mu);
  if (!ts_blocks_keep(&c->blocks, ts_block_size(size), (uintptr_t)p)) {
    /* no room to keep it: wait until no queued work uses it */
    c->api.StreamSynchronize(c->stream);
    c->api.MemFree((CUdeviceptr)(uintptr_t)p);
  }
  c->stats.cached_bytes = c->blocks.bytes;
  pthread_mutex_unlock(&c->mu);
}

static ts_status cuda_write(ts_device *d, void *dst, const void *src,
                            size_t size) {
  cuda_device *c = (cuda_device *)d;
  COUNT(c, writes);
  if (size)
    CU(&c->api,
       c->api.MemcpyHtoDAsync((CUdeviceptr)(uintptr_t)dst, src, size, c->stream),
       "cuMemcpyHtoDAsync");
  return NULL;
}

static ts_status cuda_read(ts_device *d, void *dst, const void *src,
                           size_t size) {
  cuda_device *c = (cuda_device *)d;
  if (!size)
    return NULL;
  COUNT(c, reads);
  CUresult r = c->api.MemcpyDtoHAsync(dst, (CUdeviceptr)(uintptr_t)src, size, c->stream);
  if (r != CUDA_SUCCESS)
    return queued_fail(&c->api, r, "cuMemcpyDtoHAsync");
  return cuda_sync(d);
}

static ts_status cuda_copy(ts_device *d, void *dst, const void *src,
                           size_t size) {
  cuda_device *c = (cuda_device *)d;
  COUNT(c, copies);
  if (size)
    CU(&c->api,
       c->api.MemcpyDtoDAsync((CUdeviceptr)(uintptr_t)dst, (CUdeviceptr)(uintptr_t)src,
                              size, c->stream),
       "cuMemcpyDtoDAsync");
  return NULL;
}

static ts_status cuda_zero(ts_device *d, void *p, size_t size) {
  cuda_device *c = (cuda_device *)d;
  COUNT(c, zeroes);
  if (size)
    CU(&c->api, c->api.MemsetD8Async((CUdeviceptr)(uintptr_t)p, 0, size, c->stream),
       "cuMemsetD8Async");
  return NULL;
}

static void cuda_destroy(ts_device *d) {
  cuda_device *c = (cuda_device *)d;
  if (c->stream) {
    c->api.StreamSynchronize(c->stream); /* the queue may still use the memory */
    pthread_mutex_lock(&c->mu);
    release_cache(c);
    if (c->scratch)
      c->api.MemFree(c->scratch);
    pthread_mutex_unlock(&c->mu);
    c->api.StreamDestroy(c->stream);
  }
  ts_blocks_destroy(&c->blocks);
  pthread_mutex_destroy(&c->mu);
  if (c->ctx)
    c->api.DevicePrimaryCtxRelease(c->dev);
  if (c->api.lib)
    dlclose(c->api.lib);
  free(c);
}

static const ts_device_ops cuda_ops = {"cuda",     cuda_alloc,   cuda_free, cuda_write,
                                       cuda_read,  cuda_destroy, cuda_zero, cuda_copy,
                                       cuda_sync};

static ts_status open_device(cuda_device *c, int ordinal) {
  cuda_api *a = &c->api;
  TS_TRY(load_api(a));
  CUresult r = a->Init(0);
  if (r != CUDA_SUCCESS)
    return ts_status_annotate(cu_fail(a, r, "cuInit"), "no GPU");
  int count = 0;
  CU(a, a->DeviceGetCount(&count), "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= count)
    return ts_status_make(TS_ERR_UNSUPPORTED, "no GPU: the driver reports %d "
                          "device%s, asked for device %d",
                          count, count == 1 ? "" : "s", ordinal);
  CU(a, a->DeviceGet(&c->dev, ordinal), "cuDeviceGet");
  CU(a, a->DeviceGetName(c->name, sizeof c->name, c->dev), "cuDeviceGetName");
  CU(a, a->DeviceGetAttribute(&c->cc_major,
                              CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                              c->dev),
     "cuDeviceGetAttribute");
  CU(a, a->DeviceGetAttribute(&c->cc_minor,
                              CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                              c->dev),
     "cuDeviceGetAttribute");
  CU(a, a->DeviceGetAttribute(&c->smem_optin,
                              CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                              c->dev),
     "cuDeviceGetAttribute");
  CU(a, a->DevicePrimaryCtxRetain(&c->ctx, c->dev), "cuDevicePrimaryCtxRetain");
  CU(a, a->CtxSetCurrent(c->ctx), "cuCtxSetCurrent");
  CU(a, a->StreamCreate(&c->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  c->sync_each = ts_env_flag("TESSERA_CUDA_SYNC", false);
  return NULL;
}

const char *ts_device_model(const ts_device *d) {
  return d->cuda ? ((const cuda_device *)d)->name : ts_device_name(d);
}

ts_status ts_device_create_cuda(int ordinal, ts_device **out) {
  cuda_device *c = calloc(1, sizeof *c);
  if (!c)
    return ts_status_nomem();
  c->base.ops = &cuda_ops;
  atomic_init(&c->base.refs, 1);
  c->base.threads = 1;
  c->base.cuda = true;
  pthread_mutex_init(&c->mu, NULL);
  ts_status st = open_device(c, ordinal);
  if (st) {
    cuda_destroy(&c->base);
    return st;
  }
  *out = &c->base;
  return NULL;
}

/* The PTX architecture for this GPU: sm_90a PTX runs on compute capability
 * 9.0 only; sm_80 and sm_86 PTX on 8.0 and later (the driver JIT-compiles
 * it): sm_80's tile plans take up to an A100's 163 KiB of shared memory a
 * block, sm_86's up to 99 KiB (8.6, 8.9, 12.x), so a part gets the one
 * whose plans it can launch. */
const char *ts_cuda_arch(const ts_device *d) {
  const cuda_device *c = (const cuda_device *)d;
  if (c->cc_major == 9 && c->cc_minor == 0)
    return "sm_90a";
  if (c->cc_major < 8)
    return NULL;
  return c->smem_optin >= ts_arch_smem_max("sm_80") ? "sm_80" : "sm_86";
}

ts_status ts_cuda_module_load(ts_device *d, const char *ptx, const char *name,
                              int64_t smem, void **module, void **fn) {
  cuda_device *c = (cuda_device *)d;
  cuda_api *a = &c->api;
  CU(a, a->CtxSetCurrent(c->ctx), "cuCtxSetCurrent");
  char log[4096] = "";
  CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER,
                          CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *vals[2] = {log, (void *)(uintptr_t)sizeof log};
  CUmodule m;
  CUresult r = a->ModuleLoadDataEx(&m, ptx, 2, opts, vals);
  if (r != CUDA_SUCCESS)
    return ts_status_annotate(cu_fail(a, r, "cuModuleLoadDataEx"), "%s", log);
  CUfunction f;
  r = a->ModuleGetFunction(&f, m, name);
  if (r == CUDA_SUCCESS && smem > c->smem_optin) {
    a->ModuleUnload(m);
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "%s: a block takes %lld bytes of shared memory, more than "
                          "the %d this GPU (%s) allows",
                          name, (long long)smem, c->smem_optin, c->name);
  }
  if (r == CUDA_SUCCESS && smem > 48 * 1024)
    r = a->FuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                            (int)smem);
  if (r != CUDA_SUCCESS) {
    a->ModuleUnload(m);
    return cu_fail(a, r, name);
  }
  *module = m;
  *fn = f;
  return NULL;
}

void ts_cuda_module_unload(ts_device *d, void *module) {
  cuda_device *c = (cuda_device *)d;
  if (!module)
    return;
  c->api.StreamSynchronize(c->stream); /* its launches may still be queued */
  c->api.ModuleUnload((CUmodule)module);
}

ts_status ts_cuda_tensor_map(ts_device *d, void *map, void *base, int esize, int64_t rows,
                             int64_t cols, int64_t box_rows, int64_t box_cols, int swz) {
  cuda_api *a = &((cuda_device *)d)->api;
  if (!a->TensorMapEncodeTiled)
    return ts_status_make(TS_ERR_UNSUPPORTED, "the driver has no cuTensorMapEncodeTiled");
  cuuint64_t dim[2] = {(cuuint64_t)cols, (cuuint64_t)rows};
  cuuint64_t stride[1] = {(cuuint64_t)(cols * esize)};
  cuuint32_t box[2] = {(cuuint32_t)box_cols, (cuuint32_t)box_rows}, one[2] = {1, 1};
  CUtensorMapSwizzle sw = swz == 128  ? CU_TENSOR_MAP_SWIZZLE_128B
                          : swz == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                                      : CU_TENSOR_MAP_SWIZZLE_32B;
  CU(a,
     a->TensorMapEncodeTiled((CUtensorMap *)map,
                             esize == 4   ? CU_TENSOR_MAP_DATA_TYPE_UINT32
                             : esize == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16
                                          : CU_TENSOR_MAP_DATA_TYPE_UINT8,
                             2, base, dim, stride, box, one, CU_TENSOR_MAP_INTERLEAVE_NONE, sw,
                             CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
     "cuTensorMapEncodeTiled");
  return NULL;
}

/* The shared scratch buffer, at least `bytes` (c->mu held): a larger one
 * replaces it once the launches queued with the old one are done. */
static ts_status scratch_of(cuda_device *c, size_t bytes, CUdeviceptr *out) {
  if (bytes > c->scratch_size) {
    if (c->capturing)
      return ts_status_make(TS_ERR_INVALID, "the scratch buffer would grow while a "
                            "graph is captured");
    c->scratch_gen++;
    if (c->scratch) {
      c->api.StreamSynchronize(c->stream);
      c->api.MemFree(c->scratch);
      c->scratch = 0, c->scratch_size = 0;
    }
    size_t n = ts_block_size(bytes);
    CUresult r = c->api.MemAlloc(&c->scratch, n);
    if (r == CUDA_ERROR_OUT_OF_MEMORY) {
      release_cache(c);
      r = c->api.MemAlloc(&c->scratch, n);
    }
    if (r != CUDA_SUCCESS) {
      c->scratch = 0;
      return cu_fail(&c->api, r, "cuMemAlloc (scratch)");
    }
    c->scratch_size = n;
  }
  *out = c->scratch;
  return NULL;
}

ts_status ts_cuda_launch(ts_device *d, void *fn, const int64_t grid[3],
                         int threads, int64_t smem, void **params,
                         int64_t scratch_bytes, void **scratch_slot,
                         ts_cuda_timer **timer) {
  cuda_device *c = (cuda_device *)d;
  cuda_api *a = &c->api;
  if (grid[0] > 0x7fffffff || grid[1] > 65535 || grid[2] > 65535)
    return ts_status_make(TS_ERR_INVALID, "the grid (%lld, %lld, %lld) is "
                          "larger than a CUDA grid",
                          (long long)grid[0], (long long)grid[1],
                          (long long)grid[2]);
  if (grid[0] * grid[1] * grid[2] == 0)
    return NULL;
  CU(a, a->CtxSetCurrent(c->ctx), "cuCtxSetCurrent");
  ts_cuda_timer *t = NULL;
  if (timer && !*timer) {
    t = calloc(1, sizeof *t);
    if (!t)
      return ts_status_nomem();
    CUresult r = a->EventCreate(&t->start, CU_EVENT_DEFAULT);
    if (r == CUDA_SUCCESS)
      r = a->EventCreate(&t->end, CU_EVENT_DEFAULT);
    if (r != CUDA_SUCCESS) {
      ts_cuda_timer_destroy(d, t);
      return cu_fail(a, r, "cuEventCreate");
    }
    *timer = t;
  }
  t = timer ? *timer : NULL;
  /* the scratch buffer is held from its choice to the launch's queueing:
   * a larger one for another thread's launch waits for this one */
  pthread_mutex_lock(&c->mu);
  CUdeviceptr scratch = 0;
  ts_status st = NULL;
  if (scratch_bytes > 0)
    st = scratch_of(c, (size_t)scratch_bytes, &scratch);
  *scratch_slot = (void *)(uintptr_t)scratch;
  CUresult r = CUDA_SUCCESS;
  if (!st && t)
    r = a->EventRecord(t->start, c->stream);
  if (!st && r == CUDA_SUCCESS)
    r = a->LaunchKernel((CUfunction)fn, (unsigned)grid[0], (unsigned)grid[1],
                        (unsigned)grid[2], (unsigned)threads, 1, 1,
                        (unsigned)smem, c->stream, params, NULL);
  if (!st && r == CUDA_SUCCESS && t)
    r = a->EventRecord(t->end, c->stream);
  if (!st && r == CUDA_SUCCESS)
    c->stats.launches++;
  pthread_mutex_unlock(&c->mu);
  if (st)
    return st;
  if (r != CUDA_SUCCESS)
    return cu_fail(a, r, "cuLaunchKernel");
  if (c->sync_each && !c->capturing)
    COUNT(c, waits);
  if (c->sync_each && !c->capturing && (r = a->StreamSynchronize(c->stream)) != CUDA_SUCCESS)
    return cu_fail(a, r, "the kernel (TESSERA_CUDA_SYNC=1)");
  return NULL;
}

ts_status ts_cuda_capture_begin(ts_device *d) {
  cuda_device *c = (cuda_device *)d;
  cuda_api *a = &c->api;
  CU(a, a->CtxSetCurrent(c->ctx), "cuCtxSetCurrent");
  /* (thread-local: another thread's calls are not part of it) */
  CU(a, a->StreamBeginCapture(c->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
     "cuStreamBeginCapture");
  pthread_mutex_lock(&c->mu);
  c->capturing = true;
  c->saved = c->stats;
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

ts_status ts_cuda_capture_end(ts_device *d, bool ok, void **exec) {
  cuda_device *c = (cuda_device *)d;
  cuda_api *a = &c->api;
  CUgraph graph = NULL;
  CUresult r = a->StreamEndCapture(c->stream, &graph);
  pthread_mutex_lock(&c->mu);
  c->capturing = false;
  ts_device_stats now = c->stats;
  c->stats = c->saved;
  c->stats.driver_allocs = now.driver_allocs;
  c->stats.cached_bytes = now.cached_bytes;
  pthread_mutex_unlock(&c->mu);
  if (r != CUDA_SUCCESS) {
    if (graph)
      a->GraphDestroy(graph);
    return cu_fail(a, r, "cuStreamEndCapture");
  }
  if (!ok) {
    a->GraphDestroy(graph);
    return NULL;
  }
  CUgraphExec e = NULL;
  r = a->GraphInstantiateWithFlags(&e, graph, 0);
  a->GraphDestroy(graph); /* (the instance keeps what it needs) */
  if (r != CUDA_SUCCESS)
    return cu_fail(a, r, "cuGraphInstantiateWithFlags");
  *exec = e;
  return NULL;
}

ts_status ts_cuda_graph_launch(ts_device *d, void *exec, const ts_graph_counts *n) {
  cuda_device *c = (cuda_device *)d;
  cuda_api *a = &c->api;
  CU(a, a->CtxSetCurrent(c->ctx), "cuCtxSetCurrent");
  CU(a, a->GraphLaunch((CUgraphExec)exec, c->stream), "cuGraphLaunch");
  pthread_mutex_lock(&c->mu);
  c->stats.graphs++;
  c->stats.launches += n->launches;
  c->stats.zeroes += n->zeroes;
  c->stats.copies += n->copies + n->writes; /* (writes are copies from the graph's bytes) */
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

void ts_cuda_graph_destroy(ts_device *d, void *exec) {
  if (exec)
    ((cuda_device *)d)->api.GraphExecDestroy((CUgraphExec)exec);
}

uint64_t ts_cuda_scratch_generation(ts_device *d) {
  cuda_device *c = (cuda_device *)d;
  pthread_mutex_lock(&c->mu);
  uint64_t g = c->scratch_gen;
  pthread_mutex_unlock(&c->mu);
  return g;
}

bool ts_cuda_sync_each(ts_device *d) { return ((cuda_device *)d)->sync_each; }

void ts_cuda_stats(ts_device *d, ts_device_stats *out) {
  cuda_device *c = (cuda_device *)d;
  pthread_mutex_lock(&c->mu);
  *out = c->stats;
  pthread_mutex_unlock(&c->mu);
}

ts_status ts_cuda_timer_seconds(ts_device *d, ts_cuda_timer *t, double *seconds) {
  cuda_device *c = (cuda_device *)d;
  cuda_api *a = &c->api;
  float ms = 0;
  COUNT(c, waits);
  CUresult r = a->EventSynchronize(t->end);
  if (r != CUDA_SUCCESS)
    return queued_fail(a, r, "cuEventSynchronize");
  CU(a, a->EventElapsedTime(&ms, t->start, t->end), "cuEventElapsedTime");
  *seconds = ms / 1e3;
  return NULL;
}

void ts_cuda_timer_destroy(ts_device *d, ts_cuda_timer *t) {
  if (!t)
    return;
  cuda_api *a = &((cuda_device *)d)->api;
  if (t->start)
    a->EventDestroy(t->start);
  if (t->end)
    a->EventDestroy(t->end);
  free(t);
}


#endif
