/* probe.c - what devices this machine has. libcuda is opened at run time
 * with dlopen, so one binary serves machines with and without a GPU; the
 * entry points used here are declared locally with the Driver API's C
 * signatures (CUresult is an int enum). The full CUDA device, through the
 * versioned PFN_* table, comes with the GPU target. */
#define _GNU_SOURCE
#include "runtime/runtime.h"

#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

typedef int (*cu_init_fn)(unsigned flags);
typedef int (*cu_count_fn)(int *count);
typedef int (*cu_version_fn)(int *version);

void ts_runtime_probe(ts_device_probe *out) {
  memset(out, 0, sizeof *out);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  out->cpu_count = n > 0 ? (int)n : 1;
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(out->cuda_message, sizeof out->cuda_message,
             "no GPU: libcuda.so.1 is not installed");
    return;
  }
  out->cuda_found = true;
  cu_init_fn init = (cu_init_fn)dlsym(lib, "cuInit");
  cu_count_fn count = (cu_count_fn)dlsym(lib, "cuDeviceGetCount");
  cu_version_fn version = (cu_version_fn)dlsym(lib, "cuDriverGetVersion");
  int v = 0, c = 0, rc;
  if (!init || !count) {
    snprintf(out->cuda_message, sizeof out->cuda_message,
             "no GPU: libcuda.so.1 lacks cuInit/cuDeviceGetCount");
  } else if ((rc = init(0)) != 0) {
    snprintf(out->cuda_message, sizeof out->cuda_message,
             "no GPU: cuInit failed with CUDA error %d", rc);
  } else if ((rc = count(&c)) != 0 || c == 0) {
    snprintf(out->cuda_message, sizeof out->cuda_message,
             "no GPU: the driver reports no device");
  } else {
    if (version)
      version(&v);
    out->cuda_device_count = c;
    snprintf(out->cuda_message, sizeof out->cuda_message,
             "%d GPU%s, CUDA driver %d.%d", c, c == 1 ? "" : "s", v / 1000,
             (v % 1000) / 10);
  }
  dlclose(lib);
}
