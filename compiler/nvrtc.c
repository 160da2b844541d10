/* nvrtc.c - CUDA C to PTX with NVRTC, opened at run time (dlopen) so that
 * Tessera runs where it is missing: $TESSERA_NVRTC when set (alone), else
 * the toolkit's library found at build time, then libnvrtc.so.13 / .12 /
 * libnvrtc.so. */
#define _GNU_SOURCE
#include "compiler/compiler.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifndef TS_NVRTC_PATH
#define TS_NVRTC_PATH "libnvrtc.so"
#endif

/* The few entry points used, with NVRTC's C signatures (nvrtcResult is an
 * int enum, nvrtcProgram a pointer). */
typedef int (*nvrtc_version_fn)(int *major, int *minor);
typedef const char *(*nvrtc_error_fn)(int result);
typedef int (*nvrtc_create_fn)(void **prog, const char *src, const char *name,
                               int nheaders, const char *const *headers,
                               const char *const *names);
typedef int (*nvrtc_compile_fn)(void *prog, int nopts, const char *const *opts);
typedef int (*nvrtc_size_fn)(void *prog, size_t *size);
typedef int (*nvrtc_get_fn)(void *prog, char *out);
typedef int (*nvrtc_destroy_fn)(void **prog);

static struct {
  void *lib;
  nvrtc_version_fn version;
  nvrtc_error_fn error;
  nvrtc_create_fn create;
  nvrtc_compile_fn compile;
  nvrtc_size_fn log_size, ptx_size;
  nvrtc_get_fn log, ptx;
  nvrtc_destroy_fn destroy;
  char why[256];
} nv;

static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

static void nv_load(void) {
  /* $TESSERA_NVRTC, when set, is the only one tried */
  const char *env = getenv("TESSERA_NVRTC");
  const char *names[] = {TS_NVRTC_PATH, "libnvrtc.so.13", "libnvrtc.so.12",
                         "libnvrtc.so"};
  if (env && *env)
    nv.lib = dlopen(env, RTLD_NOW | RTLD_LOCAL);
  for (size_t i = 0; i < TS_ARRAY_COUNT(names) && !nv.lib && !(env && *env);
       i++)
    nv.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!nv.lib) {
    snprintf(nv.why, sizeof nv.why, "NVRTC is not installed (no %s)",
             env && *env ? env : TS_NVRTC_PATH);
    return;
  }
  nv.version = (nvrtc_version_fn)dlsym(nv.lib, "nvrtcVersion");
  nv.error = (nvrtc_error_fn)dlsym(nv.lib, "nvrtcGetErrorString");
  nv.create = (nvrtc_create_fn)dlsym(nv.lib, "nvrtcCreateProgram");
  nv.compile = (nvrtc_compile_fn)dlsym(nv.lib, "nvrtcCompileProgram");
  nv.log_size = (nvrtc_size_fn)dlsym(nv.lib, "nvrtcGetProgramLogSize");
  nv.log = (nvrtc_get_fn)dlsym(nv.lib, "nvrtcGetProgramLog");
  nv.ptx_size = (nvrtc_size_fn)dlsym(nv.lib, "nvrtcGetPTXSize");
  nv.ptx = (nvrtc_get_fn)dlsym(nv.lib, "nvrtcGetPTX");
  nv.destroy = (nvrtc_destroy_fn)dlsym(nv.lib, "nvrtcDestroyProgram");
  if (!nv.version || !nv.error || !nv.create || !nv.compile || !nv.log_size ||
      !nv.log || !nv.ptx_size || !nv.ptx || !nv.destroy) {
    snprintf(nv.why, sizeof nv.why, "the NVRTC library lacks an entry point");
    dlclose(nv.lib);
    nv.lib = NULL;
  }
}

const char *ts_nvrtc_version(char *buf, size_t size) {
  pthread_once(&nv_once, nv_load);
  int major = 0, minor = 0;
  if (!nv.lib || nv.version(&major, &minor) != 0)
    return NULL;
  snprintf(buf, size, "NVRTC %d.%d", major, minor);
  return buf;
}

ts_status ts_nvrtc_compile(const char *cuda, const char *arch, ts_buf *ptx) {
  pthread_once(&nv_once, nv_load);
  if (!nv.lib)
    return ts_status_make(TS_ERR_UNSUPPORTED, "%s", nv.why);
  void *prog = NULL;
  int r = nv.create(&prog, cuda, "tessera.cu", 0, NULL, NULL);
  if (r != 0)
    return ts_status_make(TS_ERR_INTERNAL, "nvrtcCreateProgram: %s",
                          nv.error(r));
  char opt[64];
  snprintf(opt, sizeof opt, "--gpu-architecture=%s", arch);
  const char *opts[] = {opt, "--std=c++17"};
  r = nv.compile(prog, 2, opts);
  ts_status st = NULL;
  if (r != 0) {
    size_t n = 0;
    nv.log_size(prog, &n);
    char *log = malloc(n + 1);
    if (log && nv.log(prog, log) == 0)
      log[n] = 0;
    st = ts_status_make(TS_ERR_INTERNAL,
                        "NVRTC rejected the generated CUDA C (a bug in "
                        "Tessera): %s: %.3000s",
                        nv.error(r), log ? log : "");
    free(log);
  } else {
    size_t n = 0;
    nv.ptx_size(prog, &n);
    char *text = malloc(n + 1);
    if (!text)
      st = ts_status_nomem();
    else if ((r = nv.ptx(prog, text)) != 0)
      st = ts_status_make(TS_ERR_INTERNAL, "nvrtcGetPTX: %s", nv.error(r));
    else
      ts_buf_append(ptx, text, strnlen(text, n));
    free(text);
  }
  nv.destroy(&prog);
  return st;
}
