/* program.c - a kernel compiled for the CPU and loaded into the JIT, kept
 * with the unit whose checked signature the runtime binds arguments by. */
#define _POSIX_C_SOURCE 200809L
#include "compiler/gen.h"
#include "compiler/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ts_cpu_program {
  const ts_allocator *alloc;
  char *path; /* the unit's name: messages of the running code point at it */
  char *text;
  ts_unit unit;
  const ts_kernel_info *kernel;
  ts_mlir *mlir;
  MlirModule module;
  ts_jit *jit;
  ts_packed_fn run, grid, scratch, gpu;
  double seconds;
};

ts_status ts_cpu_program_create(const ts_allocator *alloc, const char *path,
                                const char *text, size_t len,
                                const char *kernel, const ts_define *defines,
                                size_t define_count,
                                const ts_jit_symbol *syms, size_t nsyms,
                                const char *gpu_arch, ts_diags *diags,
                                ts_cpu_program **out) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ts_cpu_program *p = calloc(1, sizeof *p);
  if (!p)
    return ts_status_nomem();
  p->alloc = alloc;
  p->text = malloc(len + 1);
  p->path = strdup(path);
  if (!p->text || !p->path) {
    free(p->text);
    free(p->path);
    free(p);
    return ts_status_nomem();
  }
  memcpy(p->text, text, len);
  p->text[len] = 0;
  ts_status st = ts_unit_init(&p->unit, alloc, p->path, p->text, len, diags);
  if (st) {
    free(p->text);
    free(p->path);
    free(p);
    return st;
  }
  p->unit.define_kernel = kernel;
  if (!ts_unit_parse(&p->unit) ||
      !ts_unit_check(&p->unit, defines, define_count)) {
    st = diags->nomem ? ts_status_nomem()
                      : ts_status_make(TS_ERR_PROGRAM, "'%s' has errors", path);
    goto fail;
  }
  p->kernel = ts_unit_kernel(&p->unit, ts_str_from(kernel));
  if (!p->kernel) {
    st = ts_status_make(TS_ERR_INVALID, "no kernel '%s' in '%s'", kernel, path);
    goto fail;
  }
  if ((st = ts_mlir_create(&p->unit.src, diags, &p->mlir)))
    goto fail;
  bool sim = gpu_arch != NULL;
  if ((st = ts_mlir_gen(p->mlir, &p->unit, kernel, TS_TARGET_CPU, gpu_arch, sim, &p->module)))
    goto fail;
  if ((st = ts_mlir_lower(p->mlir, p->module, TS_TARGET_CPU, false)) ||
      (st = ts_jit_create(p->mlir, p->module, syms, nsyms, &p->jit))) {
    mlirModuleDestroy(p->module);
    p->module.ptr = NULL;
    goto fail;
  }
  char name[320];
  snprintf(name, sizeof name, "%s", kernel);
  if (!sim)
    p->run = ts_jit_lookup(p->jit, name);
  snprintf(name, sizeof name, "%s__grid", kernel);
  p->grid = ts_jit_lookup(p->jit, name);
  snprintf(name, sizeof name, "%s__scratch", kernel);
  p->scratch = ts_jit_lookup(p->jit, name);
  if (sim) {
    snprintf(name, sizeof name, "%s__gpu", kernel);
    p->gpu = ts_jit_lookup(p->jit, name);
  }
  if ((!sim && !p->run) || !p->grid || !p->scratch || (sim && !p->gpu)) {
    st = ts_status_make(TS_ERR_INTERNAL, "kernel '%s' is missing from the JIT",
                        kernel);
    goto fail;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  p->seconds = (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  *out = p;
  return NULL;
fail:
  ts_cpu_program_destroy(p);
  return st;
}

void ts_cpu_program_destroy(ts_cpu_program *p) {
  if (!p)
    return;
  ts_jit_destroy(p->jit);
  if (p->module.ptr)
    mlirModuleDestroy(p->module);
  ts_mlir_destroy(p->mlir);
  ts_unit_deinit(&p->unit);
  free(p->text);
  free(p->path);
  free(p);
}

const ts_kernel_info *ts_cpu_program_kernel(const ts_cpu_program *p) {
  return p->kernel;
}
ts_packed_fn ts_cpu_program_run(const ts_cpu_program *p) { return p->run; }
ts_packed_fn ts_cpu_program_grid(const ts_cpu_program *p) { return p->grid; }
ts_packed_fn ts_cpu_program_scratch(const ts_cpu_program *p) {
  return p->scratch;
}
ts_packed_fn ts_cpu_program_gpu(const ts_cpu_program *p) { return p->gpu; }
int64_t ts_kernel_smem_bytes(const ts_kernel_info *k, const char *arch) {
  return ts_gen_gpu_smem_bytes(k, arch);
}
int ts_kernel_tensor_maps(const ts_kernel_info *k, const char *arch, ts_tensor_map_spec *out) {
  ts_tma t[TS_TMA_MAX];
  int n = ts_pipe_tma(k, arch, t);
  for (int i = 0; i < n; i++)
    out[i] = (ts_tensor_map_spec){t[i].arg, t[i].rows, t[i].box_cols, t[i].esize, t[i].swz};
  return n;
}
double ts_cpu_program_compile_seconds(const ts_cpu_program *p) {
  return p->seconds;
}
