/* libcuda_mock.c - a stand-in libcuda.so.1 for testing the runtime's CUDA
 * device on machines without a GPU (tests/cuda_mock/test_cuda_mock.c). It
 * implements the Driver API entry points runtime/device_cuda.c looks up,
 * through cuGetProcAddress_v2 as the real driver does: "device" memory is
 * host memory, a module keeps its PTX, cuModuleGetFunction reads the
 * kernel's parameter list from the PTX's .entry, and cuLaunchKernel checks
 * every parameter against it (a pointer parameter must point into a live
 * allocation) and records the launch instead of running it. MOCK_CUDA_FAIL
 * names one entry point that fails with CUDA_ERROR_OUT_OF_MEMORY, and
 * cuMemAlloc fails so past MOCK_CUDA_MEM bytes allocated and not freed;
 * MOCK_CUDA_FAULT names a kernel whose launches "fault": the launch
 * succeeds, as on a GPU, and the next wait on the stream (a sync, a read
 * from the device) returns CUDA_ERROR_ILLEGAL_ADDRESS, once. Copies and
 * memsets run at once (the stream is in order anyway); mock_calls counts
 * the calls that allocate, copy, wait and record events. The
 * device is a compute capability 9.0 part with 227 KiB of shared memory a
 * block, or what MOCK_CUDA_CC ("86") and MOCK_CUDA_SMEM (bytes) say; as
 * the real driver, a function's dynamic shared memory may be raised up to
 * that (cuFuncSetAttribute), and a launch past what was set fails. */
#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
enum { OK = 0, ERR_INVALID = 1, ERR_OOM = 2, ERR_NOT_FOUND = 500 };

static bool fails(const char *name) {
  const char *f = getenv("MOCK_CUDA_FAIL");
  return f && !strcmp(f, name);
}

/* Calls counted (read by the test through dlsym). */
struct mock_calls {
  int mem_allocs, mem_frees, htod, dtoh, dtod, memsets;
  int stream_syncs, event_records, event_syncs;
  int captures, graph_launches, graph_ops; /* CUDA graphs: ops captured */
} mock_calls;

/* The stream is captured (cuStreamBeginCapture): launches, memsets and
 * copies within the device are kept in the graph being captured, not run;
 * what cannot be captured (a copy from or to the host, a wait) fails as
 * the driver's CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED. */
enum { ERR_CAPTURE = 900 };
static struct graph *capturing;
static CUresult capture_op(int kind, uintptr_t d, uintptr_t s, size_t n);

/* A faulted launch waits for the next wait on the stream. */
static bool fault_pending;
enum { ERR_ILLEGAL_ADDRESS = 700 };
static CUresult wait_stream(void) {
  if (!fault_pending)
    return 0;
  fault_pending = false;
  return ERR_ILLEGAL_ADDRESS;
}

/* ---- memory ------------------------------------------------------------- */

#define MAX_ALLOCS 4096
static struct {
  char *p;
  size_t n;
} allocs[MAX_ALLOCS];

/* The live slots by address, kept in order as slots are allocated and
 * freed: a launch's every pointer is looked up (a linear scan made the mock
 * most of a decode step's host time, which bench/decode_queue.lua reports;
 * a sort after each allocation, most of a step that grew the runtime's
 * block cache). */
static int by_addr[MAX_ALLOCS], nby_addr;

/* The first position in by_addr whose allocation starts past p. */
static int after(uintptr_t p) {
  int lo = 0, hi = nby_addr;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if ((uintptr_t)allocs[by_addr[mid]].p <= p)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void track(int slot) {
  int at = after((uintptr_t)allocs[slot].p);
  memmove(&by_addr[at + 1], &by_addr[at], (size_t)(nby_addr - at) * sizeof *by_addr);
  by_addr[at] = slot;
  nby_addr++;
}

static void untrack(int slot) {
  int at = after((uintptr_t)allocs[slot].p) - 1; /* its own entry */
  memmove(&by_addr[at], &by_addr[at + 1], (size_t)(nby_addr - at - 1) * sizeof *by_addr);
  nby_addr--;
}

static bool live(uintptr_t p, size_t n) {
  int lo = after(p);
  if (lo == 0)
    return false;
  int i = by_addr[lo - 1];
  return p + n <= (uintptr_t)allocs[i].p + allocs[i].n;
}

/* The bytes allocated and not freed; MOCK_CUDA_MEM (bytes) caps them, as a
 * GPU's memory does. */
static size_t live_bytes;

static CUresult mem_alloc(uintptr_t *out, size_t n) {
  mock_calls.mem_allocs++;
  if (fails("cuMemAlloc"))
    return ERR_OOM;
  const char *cap = getenv("MOCK_CUDA_MEM");
  if (cap && live_bytes + n > strtoull(cap, NULL, 10))
    return ERR_OOM;
  for (int i = 0; i < MAX_ALLOCS; i++)
    if (!allocs[i].p) {
      live_bytes += n;
      allocs[i].p = calloc(1, n ? n : 1);
      allocs[i].n = n;
      track(i);
      *out = (uintptr_t)allocs[i].p;
      return OK;
    }
  return ERR_OOM;
}

static CUresult mem_free(uintptr_t p) {
  mock_calls.mem_frees++;
  for (int i = 0; i < MAX_ALLOCS; i++)
    if ((uintptr_t)allocs[i].p == p) {
      untrack(i);
      free(allocs[i].p);
      allocs[i].p = NULL;
      live_bytes -= allocs[i].n;
      return OK;
    }
  return ERR_INVALID;
}

static CUresult htod(uintptr_t d, const void *h, size_t n, void *stream) {
  (void)stream;
  if (capturing)
    return ERR_CAPTURE;
  mock_calls.htod++;
  if (!live(d, n))
    return ERR_INVALID;
  memcpy((void *)d, h, n);
  return OK;
}

static CUresult dtoh(void *h, uintptr_t d, size_t n, void *stream) {
  (void)stream;
  if (capturing)
    return ERR_CAPTURE;
  mock_calls.dtoh++;
  if (!live(d, n))
    return ERR_INVALID;
  CUresult r = wait_stream(); /* to pageable memory: waits */
  if (r)
    return r;
  memcpy(h, (void *)d, n);
  return OK;
}

static CUresult dtod(uintptr_t d, uintptr_t s, size_t n, void *stream) {
  (void)stream;
  if (!live(d, n) || !live(s, n) || (d < s + n && s < d + n))
    return ERR_INVALID;
  if (capturing)
    return capture_op(1, d, s, n);
  mock_calls.dtod++;
  memcpy((void *)d, (const void *)s, n);
  return OK;
}

static CUresult memset8(uintptr_t d, unsigned char v, size_t n, void *stream) {
  (void)stream;
  if (!live(d, n))
    return ERR_INVALID;
  if (capturing)
    return capture_op(2, d, v, n);
  mock_calls.memsets++;
  memset((void *)d, v, n);
  return OK;
}

/* ---- modules and launches ------------------------------------------------ */

typedef struct fn {
  char name[128];
  int nparams;
  int size[256];
  bool ptr[256];
  bool tmap[256]; /* a by-value tensor map (.param .align 64 .b8 p[128]) */
  int smem_max;   /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */
} fn;

typedef struct module {
  char *ptx;
  fn fns[32];
  int nfns;
} module;

/* What the last launch was given (read by the test through dlsym). */
struct mock_launch {
  char name[128];
  unsigned grid[3], block[3], smem;
  int nparams, bad_params;
  int launches;
  int tmaps;     /* tensor-map parameters, each a map the mock encoded */
  int last_i32;  /* the last parameter, when 4 bytes (the TMA flag) */
  char target[16]; /* the .target of the last module loaded */
} mock_last;

static int env_int(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : dflt;
}
/* The device's compute capability (major * 10 + minor) and the most
 * shared memory a block may opt into. */
static int mock_cc(void) { return env_int("MOCK_CUDA_CC", 90); }
static int mock_smem(void) { return env_int("MOCK_CUDA_SMEM", 232448); }

/* ---- tensor maps ----------------------------------------------------------- */

#define TMAP_MAGIC 0x746d61704d4f434bull
/* The last map encoded (read by the test through dlsym). */
struct mock_tmap {
  int dtype, rank, swizzle, oob, encoded;
  unsigned long long dim[5], stride[5];
  unsigned box[5];
} mock_tmap;

/* cuTensorMapEncodeTiled, checked as the driver documents it: the address
 * live and 16-byte aligned, dims 1 .. 2^32, strides multiples of 16 below
 * 2^40, boxes 1 .. 256 with the inner one whole 16-byte units and within
 * the swizzle span; the map then holds the address and a magic word. */
static CUresult tmap_encode(uint64_t *map, int dtype, unsigned rank, void *addr,
                            const unsigned long long *dim, const unsigned long long *stride,
                            const unsigned *box, const unsigned *estride, int interleave,
                            int swizzle, int l2, int oob) {
  (void)l2;
  static const int bytes[] = {1, 2, 4, 4, 8, 8, 2, 4, 8, 2};
  if (rank < 1 || rank > 5 || dtype < 0 || dtype > 9 || interleave != 0 ||
      (uintptr_t)addr % 16 || !live((uintptr_t)addr, 1))
    return ERR_INVALID;
  int eb = bytes[dtype], span = swizzle == 3 ? 128 : swizzle == 2 ? 64 : swizzle == 1 ? 32 : 0;
  for (unsigned i = 0; i < rank; i++) {
    if (dim[i] < 1 || dim[i] > (1ull << 32) || box[i] < 1 || box[i] > 256 || estride[i] != 1)
      return ERR_INVALID;
    if (i + 1 < rank && (stride[i] % 16 || stride[i] >= (1ull << 40)))
      return ERR_INVALID;
  }
  if (box[0] * eb % 16 || (span && (int)box[0] * eb > span))
    return ERR_INVALID;
  memset(map, 0, 128);
  map[0] = (uintptr_t)addr;
  map[15] = TMAP_MAGIC;
  mock_tmap.dtype = dtype, mock_tmap.rank = (int)rank, mock_tmap.swizzle = swizzle;
  mock_tmap.oob = oob;
  for (unsigned i = 0; i < rank; i++) {
    mock_tmap.dim[i] = dim[i], mock_tmap.box[i] = box[i];
    mock_tmap.stride[i] = i + 1 < rank ? stride[i] : 0;
  }
  mock_tmap.encoded++;
  return OK;
}

static CUresult load(module **out, const void *image, unsigned n, void *o,
                     void **v) {
  (void)n, (void)o, (void)v;
  if (fails("cuModuleLoadDataEx"))
    return ERR_OOM;
  const char *ptx = image;
  if (!strstr(ptx, ".entry") || !strstr(ptx, ".target"))
    return 218; /* CUDA_ERROR_INVALID_PTX */
  const char *t = strstr(ptx, ".target ");
  sscanf(t + 8, "%15[a-z0-9_]", mock_last.target);
  module *m = calloc(1, sizeof *m);
  m->ptx = strdup(ptx);
  *out = m;
  return OK;
}

static CUresult unload(module *m) {
  free(m->ptx);
  free(m);
  return OK;
}

/* Reads `.entry NAME(` and its `.param` list from the PTX. */
static CUresult get_function(fn **out, module *m, const char *name) {
  char pat[160];
  snprintf(pat, sizeof pat, ".entry %s(", name);
  const char *p = strstr(m->ptx, pat);
  if (!p || m->nfns == 32)
    return ERR_NOT_FOUND;
  fn *f = &m->fns[m->nfns++];
  snprintf(f->name, sizeof f->name, "%s", name);
  f->smem_max = 48 * 1024;
  const char *end = strchr(p, ')');
  for (const char *q = strstr(p, ".param"); q && q < end;
       q = strstr(q + 1, ".param")) {
    int size = strncmp(q, ".param .u64", 11) == 0 || strncmp(q, ".param .b64", 11) == 0
                   ? 8
               : strncmp(q, ".param .b8", 10) == 0 || strncmp(q, ".param .u8", 10) == 0 ||
                       strncmp(q, ".param .s8", 10) == 0
                   ? 1
                   : 4;
    f->tmap[f->nparams] = strncmp(q, ".param .align 64 .b8", 20) == 0;
    if (f->tmap[f->nparams])
      size = 128;
    f->ptr[f->nparams] = strncmp(q, ".param .u64 .ptr", 16) == 0;
    f->size[f->nparams++] = size;
  }
  *out = f;
  return OK;
}

static CUresult set_attribute(fn *f, int attr, int v) {
  if (attr == 8) { /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */
    if (v < 0 || v > mock_smem())
      return ERR_INVALID;
    f->smem_max = v;
  }
  return OK;
}

static CUresult capture_launch(fn *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned smem, void **params);

static CUresult launch(fn *f, unsigned gx, unsigned gy, unsigned gz,
                       unsigned bx, unsigned by, unsigned bz, unsigned smem,
                       void *stream, void **params, void **extra) {
  (void)stream, (void)extra;
  if (fails("cuLaunchKernel"))
    return ERR_OOM;
  if (smem > (unsigned)f->smem_max)
    return ERR_INVALID;
  if (capturing)
    return capture_launch(f, gx, gy, gz, bx, by, bz, smem, params);
  snprintf(mock_last.name, sizeof mock_last.name, "%s", f->name);
  mock_last.grid[0] = gx, mock_last.grid[1] = gy, mock_last.grid[2] = gz;
  mock_last.block[0] = bx, mock_last.block[1] = by, mock_last.block[2] = bz;
  mock_last.smem = smem;
  mock_last.nparams = f->nparams;
  mock_last.bad_params = 0;
  mock_last.tmaps = 0;
  for (int i = 0; i < f->nparams; i++) {
    if (!params[i]) {
      mock_last.bad_params++;
      continue;
    }
    if (f->tmap[i]) { /* 64-byte aligned, a map the mock encoded (or zeros,
                       * when the runtime built none) */
      const uint64_t *m = params[i];
      if ((uintptr_t)m % 64 || (m[15] == TMAP_MAGIC && !live(m[0], 1)))
        mock_last.bad_params++;
      mock_last.tmaps += m[15] == TMAP_MAGIC;
    }
    if (f->ptr[i]) { /* a device pointer: null (empty scratch) or live */
      uintptr_t v;
      memcpy(&v, params[i], 8);
      if (v && !live(v, 1))
        mock_last.bad_params++;
    }
  }
  if (f->nparams && f->size[f->nparams - 1] == 4)
    memcpy(&mock_last.last_i32, params[f->nparams - 1], 4);
  /* the runtime ends its list with NULL: exactly nparams were given */
  if (params[f->nparams] != NULL)
    mock_last.bad_params++;
  mock_last.launches++;
  const char *fault = getenv("MOCK_CUDA_FAULT");
  if (fault && !strcmp(fault, f->name))
    fault_pending = true;
  return OK;
}

/* ---- CUDA graphs ---------------------------------------------------------- */

/* A captured op: a launch (its parameters' values copied, as the driver
 * copies them at the capture: the runtime's list lives on its stack), a
 * copy within the device or a memset. */
typedef struct op {
  int kind; /* 0 launch, 1 copy, 2 memset */
  fn *f;
  unsigned dims[7]; /* grid, block, smem */
  unsigned char *vals;
  uintptr_t d, s;
  size_t n;
} op;
typedef struct graph {
  op *ops;
  int n;
} graph;

static op *new_op(void) {
  graph *g = capturing;
  op *p = realloc(g->ops, (size_t)(g->n + 1) * sizeof *p);
  if (!p)
    abort();
  g->ops = p;
  mock_calls.graph_ops++;
  op *o = &p[g->n++];
  memset(o, 0, sizeof *o);
  return o;
}

static CUresult capture_op(int kind, uintptr_t d, uintptr_t s, size_t n) {
  op *o = new_op();
  o->kind = kind, o->d = d, o->s = s, o->n = n;
  return OK;
}

static CUresult capture_launch(fn *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned smem, void **params) {
  size_t total = 0;
  for (int i = 0; i < f->nparams; i++) {
    if (!params[i])
      return ERR_INVALID;
    total += (size_t)f->size[i];
  }
  op *o = new_op();
  o->f = f;
  unsigned dims[7] = {gx, gy, gz, bx, by, bz, smem};
  memcpy(o->dims, dims, sizeof dims);
  o->vals = malloc(total ? total : 1);
  size_t at = 0;
  for (int i = 0; i < f->nparams; i++) {
    memcpy(o->vals + at, params[i], (size_t)f->size[i]);
    at += (size_t)f->size[i];
  }
  return OK;
}

static CUresult begin_capture(void *stream, int mode) {
  (void)stream, (void)mode;
  if (capturing)
    return ERR_INVALID;
  capturing = calloc(1, sizeof *capturing);
  mock_calls.captures++;
  return OK;
}
static CUresult end_capture(void *stream, graph **out) {
  (void)stream;
  if (!capturing)
    return ERR_INVALID;
  *out = capturing;
  capturing = NULL;
  return OK;
}
static void graph_free(graph *g) {
  for (int i = 0; g && i < g->n; i++)
    free(g->ops[i].vals);
  if (g)
    free(g->ops);
  free(g);
}
/* The instance is the graph itself, moved (the mock's graphs are never
 * launched uninstantiated). */
static CUresult instantiate(graph **exec, graph *g, unsigned long long flags) {
  (void)flags;
  graph *e = calloc(1, sizeof *e);
  e->n = g->n;
  e->ops = malloc((size_t)(g->n ? g->n : 1) * sizeof *e->ops);
  for (int i = 0; i < g->n; i++) {
    e->ops[i] = g->ops[i];
    g->ops[i].vals = NULL;
  }
  *exec = e;
  return OK;
}
static CUresult graph_destroy(graph *g) {
  graph_free(g);
  return OK;
}
/* Runs the ops as the calls they were captured from would have. */
static CUresult graph_launch(graph *g, void *stream) {
  if (capturing)
    return ERR_CAPTURE;
  mock_calls.graph_launches++;
  for (int i = 0; i < g->n; i++) {
    op *o = &g->ops[i];
    CUresult r;
    if (o->kind == 1) {
      r = dtod(o->d, o->s, o->n, stream);
    } else if (o->kind == 2) {
      r = memset8(o->d, (unsigned char)o->s, o->n, stream);
    } else {
      void *params[257];
      size_t at = 0;
      for (int k = 0; k < o->f->nparams; k++) {
        params[k] = o->vals + at;
        at += (size_t)o->f->size[k];
      }
      params[o->f->nparams] = NULL;
      r = launch(o->f, o->dims[0], o->dims[1], o->dims[2], o->dims[3], o->dims[4],
                 o->dims[5], o->dims[6], stream, params, NULL);
    }
    if (r)
      return r;
  }
  return OK;
}

/* ---- the rest ------------------------------------------------------------ */

static int dummy;
static CUresult init(unsigned flags) {
  (void)flags;
  return fails("cuInit") ? 100 : OK; /* CUDA_ERROR_NO_DEVICE */
}
static CUresult driver_version(int *v) { *v = 13000; return OK; }
static CUresult device_get(int *d, int i) { *d = i; return i == 0 ? OK : 101; }
static CUresult device_count(int *n) { *n = 1; return OK; }
static CUresult device_name(char *s, int n, int d) {
  (void)d;
  snprintf(s, (size_t)n, "Mock GPU (sm_90)");
  return OK;
}
static CUresult device_attr(int *v, int a, int d) {
  (void)d;
  /* compute capability major, minor; shared memory a block may opt into */
  *v = a == 75 ? mock_cc() / 10 : a == 76 ? mock_cc() % 10 : a == 97 ? mock_smem() : 1;
  return OK;
}
static CUresult ctx_retain(void **c, int d) { (void)d; *c = &dummy; return OK; }
static CUresult ctx_release(int d) { (void)d; return OK; }
static CUresult ctx_set(void *c) { (void)c; return OK; }
static CUresult stream_create(void **s, unsigned f) { (void)f; *s = &dummy; return OK; }
static CUresult stream_destroy(void *s) { (void)s; return OK; }
static CUresult stream_sync(void *s) {
  (void)s;
  if (capturing)
    return ERR_CAPTURE;
  mock_calls.stream_syncs++;
  return wait_stream();
}
static CUresult event_create(void **e, unsigned f) { (void)f; *e = &dummy; return OK; }
static CUresult event_record(void *e, void *s) {
  (void)e, (void)s;
  mock_calls.event_records++;
  return OK;
}
static CUresult event_sync(void *e) {
  (void)e;
  if (capturing)
    return ERR_CAPTURE;
  mock_calls.event_syncs++;
  return wait_stream();
}
static CUresult event_elapsed(float *ms, void *a, void *b) {
  (void)a, (void)b;
  *ms = 0.25f;
  return OK;
}
static CUresult event_destroy(void *e) { (void)e; return OK; }
static CUresult error_name(CUresult r, const char **s) {
  *s = r == ERR_OOM       ? "CUDA_ERROR_OUT_OF_MEMORY"
       : r == ERR_INVALID ? "CUDA_ERROR_INVALID_VALUE"
       : r == 100   ? "CUDA_ERROR_NO_DEVICE"
       : r == ERR_ILLEGAL_ADDRESS ? "CUDA_ERROR_ILLEGAL_ADDRESS"
       : r == 218   ? "CUDA_ERROR_INVALID_PTX"
       : r == ERR_CAPTURE ? "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"
                    : "CUDA_ERROR_UNKNOWN";
  return OK;
}
static CUresult error_string(CUresult r, const char **s) {
  *s = r == ERR_OOM ? "out of memory" : "mock error";
  return OK;
}

static const struct {
  const char *name;
  void *fn;
} table[] = {
    {"cuInit", (void *)init},
    {"cuDriverGetVersion", (void *)driver_version},
    {"cuDeviceGet", (void *)device_get},
    {"cuDeviceGetCount", (void *)device_count},
    {"cuDeviceGetName", (void *)device_name},
    {"cuDeviceGetAttribute", (void *)device_attr},
    {"cuDevicePrimaryCtxRetain", (void *)ctx_retain},
    {"cuDevicePrimaryCtxRelease", (void *)ctx_release},
    {"cuCtxSetCurrent", (void *)ctx_set},
    {"cuStreamCreate", (void *)stream_create},
    {"cuStreamDestroy", (void *)stream_destroy},
    {"cuStreamSynchronize", (void *)stream_sync},
    {"cuMemAlloc", (void *)mem_alloc},
    {"cuMemFree", (void *)mem_free},
    {"cuMemcpyHtoDAsync", (void *)htod},
    {"cuMemcpyDtoHAsync", (void *)dtoh},
    {"cuMemcpyDtoDAsync", (void *)dtod},
    {"cuMemsetD8Async", (void *)memset8},
    {"cuModuleLoadDataEx", (void *)load},
    {"cuModuleUnload", (void *)unload},
    {"cuModuleGetFunction", (void *)get_function},
    {"cuFuncSetAttribute", (void *)set_attribute},
    {"cuLaunchKernel", (void *)launch},
    {"cuEventCreate", (void *)event_create},
    {"cuEventRecord", (void *)event_record},
    {"cuEventSynchronize", (void *)event_sync},
    {"cuEventElapsedTime", (void *)event_elapsed},
    {"cuEventDestroy", (void *)event_destroy},
    {"cuGetErrorName", (void *)error_name},
    {"cuGetErrorString", (void *)error_string},
    {"cuTensorMapEncodeTiled", (void *)tmap_encode},
    {"cuStreamBeginCapture", (void *)begin_capture},
    {"cuStreamEndCapture", (void *)end_capture},
    {"cuGraphInstantiateWithFlags", (void *)instantiate},
    {"cuGraphLaunch", (void *)graph_launch},
    {"cuGraphExecDestroy", (void *)graph_destroy},
    {"cuGraphDestroy", (void *)graph_destroy},
};

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                             unsigned long long flags, int *status);
CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                             unsigned long long flags, int *status) {
  (void)version, (void)flags;
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(table[i].name, symbol)) {
      *pfn = table[i].fn;
      *status = 0;
      return OK;
    }
  *pfn = NULL;
  *status = 1; /* CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND */
  return ERR_NOT_FOUND;
}

/* The probe (runtime/probe.c) uses the plain names. */
CUresult cuInit(unsigned flags);
CUresult cuDeviceGetCount(int *n);
CUresult cuDriverGetVersion(int *v);
CUresult cuInit(unsigned flags) { return init(flags); }
CUresult cuDeviceGetCount(int *n) { return device_count(n); }
CUresult cuDriverGetVersion(int *v) { return driver_version(v); }

/* NVRTC, when loaded beside a driver, asks it for its export tables: the
 * mock has none. */
CUresult cuGetExportTable(const void **table, const void *id);
CUresult cuGetExportTable(const void **table, const void *id) {
  (void)id;
  *table = NULL;
  return 801; /* CUDA_ERROR_NOT_SUPPORTED */
}
