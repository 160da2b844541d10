/* runtime.h - the Tessera runtime's C API (used by the CLI and the Lua
 * binding). Today: describing the devices of this machine. The device
 * interface, buffers, tensors, kernels and launch come with the CPU and GPU
 * targets. Thread-safe. */
#ifndef TS_RUNTIME_H
#define TS_RUNTIME_H

#include "compiler/compiler.h"

typedef struct ts_device_probe {
  int cpu_count;   /* online cores */
  bool cuda_found; /* libcuda.so.1 could be opened */
  int cuda_device_count;
  char cuda_message[256]; /* why there is no GPU, or the driver version */
} ts_device_probe;

/* Looks for devices: counts the CPU cores and opens libcuda.so.1 with dlopen
 * (never linked), asking it for the GPU count. Never fails: what is missing
 * is described in the result. */
void ts_runtime_probe(ts_device_probe *out);

#endif
