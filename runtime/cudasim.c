/* cudasim.c - the CUDA C lowering (compiler/cuda.c) built for the CPU, so
 * that the GPU simulator (gpusim.c) can run it: the generated code is
 * compiled as C++ by the system's compiler ($CXX, else c++) with a shim
 * that maps CUDA's built-ins onto the simulator (thread and block indices,
 * __syncthreads, __shfl_xor_sync, shared memory; atomics are plain updates,
 * since fibers switch only at barriers and shuffles), then loaded with
 * dlopen. Running both GPU lowerings on the same tests is the differential
 * test that needs no GPU. The built shared object is kept in the kernel
 * cache's folder under a key of the text and the Tessera build, as the CPU
 * code is (compiler/program.c; TESSERA_CPU_CACHE=0 turns both off). */
#define _GNU_SOURCE
#include "runtime/internal.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const shim =
    "#define TS_CUDA_SIM 1\n"
    "#include <math.h>\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "#define __global__\n"
    "#define __device__\n"
    "#define __launch_bounds__(n)\n"
    "#define __align__(n)\n"
    "extern \"C\" {\n"
    "long long ts_sim_index(int what, int dim);\n"
    "void ts_sim_barrier(void);\n"
    "int ts_sim_shuffle(int v, int off);\n"
    "unsigned char *ts_sim_smem(void);\n"
    "void ts_sim_assert_fail(const char *fmt, ...);\n"
    "void ts_sim_warp_gather(const unsigned *mine, int n, unsigned *all);\n"
    "void ts_sim_mma(const unsigned *a, const unsigned *b, void *d, int kind);\n"
    "void ts_sim_wgmma(unsigned long long da, unsigned long long db, void *acc, int n, int kind);\n"
    "void ts_sim_wgmma_sync(int n);\n"
    "void ts_sim_tma(void *dst, long long map, long long x, long long y, void *bar);\n"
    "void ts_sim_mbar(int op, void *bar, unsigned parity);\n"
    "void ts_sim_access(const void *addr, int bytes, int write);\n"
    "void ts_sim_line(int line);\n"
    "}\n"
    "#define TS_ASSERT_FAIL(...) ts_sim_assert_fail(__VA_ARGS__)\n"
    "struct ts_sim_dim3 { unsigned x, y, z; };\n"
    "static inline ts_sim_dim3 ts_sim_get(int w) {\n"
    "  return {(unsigned)ts_sim_index(w, 0), (unsigned)ts_sim_index(w, 1),\n"
    "          (unsigned)ts_sim_index(w, 2)};\n"
    "}\n"
    "#define threadIdx (ts_sim_get(0))\n"
    "#define blockIdx (ts_sim_get(1))\n"
    "#define gridDim (ts_sim_get(2))\n"
    "#define ts_smem (ts_sim_smem())\n"
    "#define __syncthreads() ts_sim_barrier()\n"
    "static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }\n"
    "static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }\n"
    "static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }\n"
    "static inline unsigned __float2uint_rn(float x) { return (unsigned)nearbyintf(x); }\n"
    "static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }\n"
    "static inline float __shfl_xor_sync(unsigned, float v, int o) {\n"
    "  return __int_as_float(ts_sim_shuffle(__float_as_int(v), o));\n"
    "}\n"
    "static inline int __shfl_xor_sync(unsigned, int v, int o) { return ts_sim_shuffle(v, o); }\n"
    "template <class T> static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }\n"
    "template <class T> static inline T atomicMax(T *p, T v) { T o = *p; if (v > o) *p = v; return o; }\n"
    "static inline int atomicCAS(int *p, int cmp, int v) { int o = *p; if (o == cmp) *p = v; return o; }\n"
    "static inline unsigned short atomicCAS(unsigned short *p, unsigned short cmp,\n"
    "                                       unsigned short v) {\n"
    "  unsigned short o = *p; if (o == cmp) *p = v; return o;\n"
    "}\n"
    "static inline void __threadfence() {} /* blocks run one after another */\n";

/* Runs `cc` on `src` into `so`; the compiler's messages on failure. */
static ts_status compile(const char *src, const char *so) {
  const char *cxx = getenv("CXX");
  if (!cxx || !*cxx)
    cxx = "c++";
  char *argv[] = {(char *)cxx, "-std=c++17", "-O1", "-fPIC", "-shared", "-w", "-x", "c++",
                  (char *)src, "-o", (char *)so, NULL};
  ts_buf err;
  ts_buf_init(&err, ts_allocator_system());
  int rc = ts_run_tool(argv, &err);
  ts_status st = NULL;
  if (rc != 0)
    st = ts_status_make(TS_ERR_INTERNAL,
                        "the CUDA C of the kernel does not build for the GPU "
                        "simulator with %s (%s %d): %.2000s",
                        cxx, rc < 0 ? "not run or killed," : "exit", rc,
                        err.len ? err.ptr : "");
  ts_buf_deinit(&err);
  return st;
}

/* The cache file of this text (compiler/program.c's folder of the build);
 * false without a cache. */
static bool cache_path(const char *cuda, char *path, size_t size) {
  ts_cache_key k;
  ts_cache_key_init(&k);
  ts_cache_key_add_str(&k, "cudasim-so");
  ts_cache_key_add_str(&k, shim);
  ts_cache_key_add_str(&k, cuda);
  ts_cache_key_add_str(&k, getenv("CXX"));
  return ts_cpu_cache_file(&k, ".sim.so", path, size);
}

static ts_status lookup(void *lib, const char *name, void **handle, ts_packed_fn *fn) {
  char sym[300];
  snprintf(sym, sizeof sym, "%s__packed", name);
  *fn = (ts_packed_fn)dlsym(lib, sym);
  if (!*fn) {
    dlclose(lib);
    return ts_status_make(TS_ERR_INTERNAL, "no %s in the built CUDA C", sym);
  }
  *handle = lib;
  return NULL;
}

ts_status ts_cudasim_build(const char *cuda, const char *name, void **handle,
                           ts_packed_fn *fn) {
  char cached[4200];
  bool cacheable = cache_path(cuda, cached, sizeof cached);
  void *hit = cacheable ? dlopen(cached, RTLD_NOW | RTLD_LOCAL) : NULL;
  if (hit)
    return lookup(hit, name, handle, fn);
  const char *tmp = getenv("TMPDIR");
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tessera-cudasim-XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(dir))
    return ts_status_make(TS_ERR_IO, "cannot create a folder in %s",
                          tmp && *tmp ? tmp : "/tmp");
  char src[4200], so[4400];
  snprintf(src, sizeof src, "%s/k.cpp", dir);
  static atomic_uint serial;
  if (cacheable) /* built beside its cache file, then renamed into place */
    snprintf(so, sizeof so, "%s.%ld-%u.tmp", cached, (long)getpid(), atomic_fetch_add(&serial, 1));
  else
    snprintf(so, sizeof so, "%s/k.so", dir);
  ts_buf text;
  ts_buf_init(&text, ts_allocator_system());
  ts_buf_puts(&text, shim);
  ts_buf_puts(&text, cuda);
  ts_status st = text.failed ? ts_status_nomem()
                             : ts_file_write_atomic(src, text.ptr, text.len);
  ts_buf_deinit(&text);
  if (!st)
    st = compile(src, so);
  void *lib = NULL;
  const char *load = so;
  if (!st && cacheable && rename(so, cached) == 0)
    load = cached;
  if (!st) {
    lib = dlopen(load, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
      st = ts_status_make(TS_ERR_INTERNAL, "cannot load %s: %s", load, dlerror());
  }
  unlink(src);
  if (load == so)
    unlink(so);
  rmdir(dir);
  if (st)
    return st;
  return lookup(lib, name, handle, fn);
}

void ts_cudasim_close(void *handle) {
  if (handle)
    dlclose(handle);
}
