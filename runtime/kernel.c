/* kernel.c - kernels compiled for a device and launched over their grid.
 * A launch checks every argument against the kernel's signature (count,
 * kind, dtype, rank, symbolic dims bound consistently), packs them in the
 * order of the kernel ABI (compiler/gen.c) and runs the blocks on the
 * device's thread pool. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ts_kernel {
  atomic_int refs; /* the owner's, and each graph's that launches it */
  ts_device *device;
  ts_cpu_program *prog; /* the CPU form, or on a GPU its grid and scratch */
  const ts_kernel_info *info;
  char name[128];
  /* CUDA: the PTX module and function */
  void *cu_module, *cu_fn;
  int64_t smem;
  bool timing;          /* record events around each launch */
  ts_cuda_timer *timer; /* the events, made at the first timed launch */
  /* the GPU simulator running the CUDA C lowering */
  void *sim_lib;
  ts_packed_fn sim_fn;
  char config[256]; /* the -D overrides it was compiled with */
  /* the tensor maps its GPU form takes (TMA), for its architecture */
  ts_tensor_map_spec tma[TS_TMA_MAPS];
  int ntma;
};

/* The architecture the GPU simulator stands for: sm_90a, or sm_80 or
 * sm_86 with TESSERA_GPUSIM_ARCH (mma.sync where sm_90a has wgmma; less
 * shared memory a block). */
static const char *sim_arch(void) {
  const char *a = getenv("TESSERA_GPUSIM_ARCH");
  return a && (!strcmp(a, "sm_80") || !strcmp(a, "sm_86")) ? a : "sm_90a";
}

const char *ts_device_arch(const ts_device *d) {
  return d->cuda ? ts_cuda_arch(d) : d->gpusim ? sim_arch() : NULL;
}

bool ts_cuda_lowering(void) {
  const char *l = getenv("TESSERA_GPU_LOWERING");
  return l && !strcmp(l, "cuda");
}

/* A kernel's GPU form (`form`: its file's name in TESSERA_DUMP's and
 * TESSERA_OVERRIDE's folders, docs/abi.md) compiled as `opt` says into
 * `out`, or read from TESSERA_OVERRIDE's file of it; written to
 * TESSERA_DUMP's folder either way. */
static ts_status compile_or_override(ts_kernel *k, const char *form, const char *path,
                                     const char *text, size_t len, const ts_compile_options *opt,
                                     ts_diags *diags, ts_buf *out) {
  const char *stem = ts_cpu_program_stem(k->prog);
  char over[4200];
  ts_status st;
  if (ts_debug_override(stem, form, over, sizeof over)) {
    char *given;
    size_t n;
    if (!(st = ts_file_read(ts_allocator_system(), over, &given, &n))) {
      ts_buf_append(out, given, n);
      free(given);
    }
  } else {
    st = ts_compile(ts_allocator_system(), path, text, len, opt, diags, out);
  }
  if (!st && out->failed)
    st = ts_status_nomem();
  if (!st)
    ts_debug_dump(stem, form, out->ptr ? out->ptr : "", out->len);
  return st;
}

/* On the GPU simulator with TESSERA_GPU_LOWERING=cuda: the kernel's CUDA C,
 * built for the CPU. */
static ts_status load_cudasim(ts_kernel *k, const char *path, const char *text,
                              size_t len, const ts_define *defines,
                              size_t ndefs, ts_diags *diags) {
  ts_compile_options opt = {.kernel = k->name,
                            .target = TS_TARGET_CUDA,
                            .emit = TS_EMIT_CUDA,
                            .arch = sim_arch(),
                            .defines = defines,
                            .define_count = ndefs,
                            .define_label = "param"};
  ts_buf cu;
  ts_buf_init(&cu, ts_allocator_system());
  ts_status st = compile_or_override(k, "gpusim.cu", path, text, len, &opt, diags, &cu);
  if (!st)
    st = ts_cudasim_build(cu.ptr, k->name, &k->sim_lib, &k->sim_fn);
  ts_buf_deinit(&cu);
  return st;
}

/* Compiles the kernel to PTX (through the kernel cache) for the device's
 * architecture and loads it: the MLIR lowering, or with
 * TESSERA_GPU_LOWERING=cuda the CUDA C one through NVRTC (the differential
 * tests run the numerics suites both ways). */
static ts_status load_cuda(ts_kernel *k, const char *path, const char *text,
                           size_t len, const ts_define *defines, size_t ndefs,
                           ts_diags *diags) {
  const char *arch = ts_cuda_arch(k->device);
  if (!arch)
    return ts_status_make(TS_ERR_UNSUPPORTED, "this GPU is older than sm_80, "
                          "which Tessera's PTX needs");
  char cache[4096];
  bool nvrtc = ts_cuda_lowering();
  ts_compile_options opt = {.kernel = k->name,
                            .target = nvrtc ? TS_TARGET_CUDA : TS_TARGET_PTX,
                            .emit = nvrtc ? TS_EMIT_PTX : TS_EMIT_DEFAULT,
                            .defines = defines,
                            .define_count = ndefs,
                            .define_label = "param",
                            .arch = arch,
                            .cache_dir = ts_cache_dir(cache, sizeof cache)};
  ts_buf ptx;
  ts_buf_init(&ptx, ts_allocator_system());
  char form[32];
  snprintf(form, sizeof form, "%s.%s", arch, nvrtc ? "nvrtc.ptx" : "ptx");
  ts_status st = compile_or_override(k, form, path, text, len, &opt, diags, &ptx);
  k->smem = ts_kernel_smem_bytes(k->info, arch);
  if (!st)
    st = ts_cuda_module_load(k->device, ptx.ptr, k->name, k->smem,
                             &k->cu_module, &k->cu_fn);
  ts_buf_deinit(&ptx);
  return st;
}

/* The GPU forms' environment, checked where a GPU device compiles a
 * kernel: a value none of these is an error, not the default (a typo in
 * TESSERA_GPU_LOWERING made the differential test compare a lowering with
 * itself). Unset or empty: the default. */
static ts_status gpu_env(void) {
  static const struct {
    const char *name, *values[4], *say;
  } vars[] = {
      {"TESSERA_GPUSIM_ARCH", {"sm_90a", "sm_80", "sm_86", NULL}, "sm_90a, sm_80 or sm_86"},
      {"TESSERA_GPU_LOWERING", {"mlir", "cuda", NULL, NULL}, "mlir or cuda"},
      {"TESSERA_TMA", {NULL}, "1/0, on/off, true/false or yes/no"}, /* a flag */
  };
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i].name);
    bool ok = !v || !*v || (!vars[i].values[0] && ts_flag_word(v) >= 0);
    for (int j = 0; !ok && j < 4 && vars[i].values[j]; j++)
      ok = !strcmp(v, vars[i].values[j]);
    if (!ok)
      return ts_status_make(TS_ERR_INVALID, "%s=%s: expected %s (or unset)", vars[i].name, v,
                            vars[i].say);
  }
  return NULL;
}

ts_status ts_kernel_create_from_source(ts_device *d, const char *path,
                                       const char *text, size_t len,
                                       const char *name,
                                       const ts_define *defines, size_t ndefs,
                                       ts_diags *diags, ts_kernel **out) {
  if (d->cuda || d->gpusim)
    TS_TRY(gpu_env());
  ts_kernel *k = calloc(1, sizeof *k);
  if (!k)
    return ts_status_nomem();
  ts_status st = ts_cpu_program_create(
      ts_allocator_system(), path, text, len, name, defines, ndefs,
      ts_rt_symbols, TS_RT_SYMBOLS, d->gpusim ? sim_arch() : NULL, ts_device_arch(d), diags,
      &k->prog);
  if (st) {
    free(k);
    return st;
  }
  atomic_init(&k->refs, 1);
  k->device = ts_device_retain(d);
  k->info = ts_cpu_program_kernel(k->prog);
  const char *arch = ts_device_arch(d);
  k->ntma = arch ? ts_kernel_tensor_maps(k->info, arch, k->tma) : 0;
  snprintf(k->name, sizeof k->name, "%s", name);
  size_t at = 0;
  for (size_t i = 0; i < ndefs && at < sizeof k->config; i++)
    at += (size_t)snprintf(k->config + at, sizeof k->config - at, "%s%s=%s",
                           i ? " " : "", defines[i].name, defines[i].value);
  if ((d->cuda && (st = load_cuda(k, path, text, len, defines, ndefs, diags))) ||
      (d->gpusim && ts_cuda_lowering() &&
       (st = load_cudasim(k, path, text, len, defines, ndefs, diags)))) {
    ts_kernel_release(k);
    return st;
  }
  *out = k;
  return NULL;
}

ts_status ts_kernel_create(ts_device *d, const char *path, const char *name,
                           const ts_define *defines, size_t ndefs,
                           ts_diags *diags, ts_kernel **out) {
  char *text;
  size_t len;
  TS_TRY(ts_file_read(ts_allocator_system(), path, &text, &len));
  ts_status st = ts_kernel_create_from_source(d, path, text, len, name, defines,
                                              ndefs, diags, out);
  free(text);
  return st;
}

ts_kernel *ts_kernel_retain(ts_kernel *k) {
  atomic_fetch_add(&k->refs, 1);
  return k;
}

void ts_kernel_release(ts_kernel *k) {
  if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
    return;
  ts_cuda_timer_destroy(k->device, k->timer);
  if (k->cu_module)
    ts_cuda_module_unload(k->device, k->cu_module);
  if (k->sim_lib)
    ts_cudasim_close(k->sim_lib);
  ts_cpu_program_destroy(k->prog);
  ts_device_release(k->device);
  free(k);
}

const char *ts_kernel_config(const ts_kernel *k) { return k->config; }

const ts_symbol *const *ts_kernel_params(const ts_kernel *k, size_t *count) {
  *count = k->info->param_count;
  return (const ts_symbol *const *)k->info->params;
}

double ts_kernel_compile_seconds(const ts_kernel *k) {
  return ts_cpu_program_compile_seconds(k->prog);
}

bool ts_kernel_cached(const ts_kernel *k) { return ts_cpu_program_cached(k->prog); }

void ts_kernel_set_timing(ts_kernel *k, bool on) { k->timing = on; }

double ts_kernel_last_seconds(ts_kernel *k) {
  double s = 0;
  if (!k->device->cuda || !k->timing || !k->timer)
    return 0;
  ts_status st = ts_cuda_timer_seconds(k->device, k->timer, &s);
  if (st) {
    ts_status_free(st);
    return 0;
  }
  return s;
}

void *ts_tensor_device_ptr(ts_tensor *t);

#define MAX_SLOTS 512

/* The packed argument list of one launch. */
typedef struct packed {
  void *slots[MAX_SLOTS];
  int64_t ints[MAX_SLOTS];
  void *ptrs[MAX_SLOTS];
  float floats[MAX_SLOTS];
  int32_t i32s[MAX_SLOTS];
  int8_t i8s[MAX_SLOTS];
  int n, nints, nptrs, nfloats, ni32, ni8;
} packed;

static void push_int(packed *p, int64_t v) {
  p->ints[p->nints] = v;
  p->slots[p->n++] = &p->ints[p->nints++];
}
static void push_ptr(packed *p, void *v) {
  p->ptrs[p->nptrs] = v;
  p->slots[p->n++] = &p->ptrs[p->nptrs++];
}

static const char *arg_name(const ts_symbol *s, char *buf, size_t size) {
  snprintf(buf, size, "%.*s", (int)(s->name.len > 60 ? 60 : s->name.len),
           s->name.ptr);
  return buf;
}

/* Scalar argument a for param s (argument i of k): a number for a number
 * param, a whole one in the dtype's range for an integer param (an i8 or
 * i32 param given 2^32 would wrap), a boolean or 0 / 1 for a bool. */
static ts_status check_scalar(const ts_kernel *k, uint32_t i, const ts_symbol *s,
                              const ts_arg *a) {
  char an[64];
  ts_dtype dt = s->type->dtype;
  const char *given = a->kind == TS_ARG_FLOAT ? "a float" : a->kind == TS_ARG_BOOL ? "a boolean"
                                                                                   : NULL;
  if (dt == TS_DTYPE_BOOL) {
    if (a->kind == TS_ARG_BOOL || (a->kind == TS_ARG_INT && (a->i == 0 || a->i == 1)))
      return NULL;
    if (!given)
      return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is bool, given %lld",
                            i + 1, arg_name(s, an, sizeof an), k->name, (long long)a->i);
  } else if (!ts_dtype_is_int(dt)) {
    if (a->kind != TS_ARG_BOOL)
      return NULL;
  } else if (a->kind == TS_ARG_INT) {
    int64_t lo, hi;
    ts_dtype_int_range(dt, &lo, &hi);
    if (a->i >= lo && a->i <= hi)
      return NULL;
    return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is %s, given %lld: "
                          "outside %lld .. %lld", i + 1, arg_name(s, an, sizeof an), k->name,
                          ts_dtype_name(dt), (long long)a->i, (long long)lo, (long long)hi);
  }
  return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is %s, given %s", i + 1,
                        arg_name(s, an, sizeof an), k->name, ts_dtype_name(dt), given);
}

/* TMA: the tensor maps the kernel's GPU form takes after its scratch
 * parameters (compiler.h ts_kernel_tensor_maps), built for this launch,
 * and the flag the kernel reads: 1 when every map was built (a tensor
 * whose rows are not whole 16-byte units, or that is not 16-byte aligned,
 * has none; TESSERA_TMA=0 builds none), else its copies go by cp.async. */
typedef struct tmaps {
  _Alignas(64) uint64_t map[TS_TMA_MAPS][16]; /* CUtensorMap each */
  ts_sim_tmap sim[TS_TMA_MAPS];
  int64_t simp[TS_TMA_MAPS];
  int32_t on;
  void *slots[TS_TMA_MAPS + 1];
  int n;
} tmaps;

static ts_status tensor_maps(const ts_kernel *k, const ts_arg *args, tmaps *m) {
  const ts_tensor_map_spec *spec = k->tma;
  int n = k->ntma;
  m->n = 0;
  if (!n)
    return NULL;
  m->on = ts_env_flag("TESSERA_TMA", true);
  for (int i = 0; i < n; i++) {
    ts_tensor *t = args[spec[i].arg].tensor;
    void *data = ts_tensor_device_ptr(t);
    int64_t rows = ts_tensor_dim(t, 0), cols = ts_tensor_dim(t, 1);
    if ((uintptr_t)data % 16 || cols * spec[i].esize % 16 || rows < 1 || cols < 1 ||
        rows > INT32_MAX || cols > INT32_MAX)
      m->on = 0;
    m->sim[i] = (ts_sim_tmap){data, rows, cols, (int32_t)spec[i].box_rows,
                              (int32_t)spec[i].box_cols, spec[i].esize, spec[i].swz};
    m->simp[i] = (int64_t)(intptr_t)&m->sim[i];
    m->slots[i] = k->device->cuda ? (void *)m->map[i] : (void *)&m->simp[i];
    if (k->device->cuda && m->on)
      TS_TRY(ts_cuda_tensor_map(k->device, m->map[i], data, spec[i].esize, rows, cols,
                                spec[i].box_rows, spec[i].box_cols, spec[i].swz));
  }
  m->slots[n] = &m->on;
  m->n = n + 1;
  return NULL;
}

typedef struct run_ctx {
  ts_packed_fn run;
  packed *base; /* shared, read-only */
  ts_launch_state *state;
} run_ctx;

static void run_blocks(void *vctx, int64_t begin, int64_t end) {
  run_ctx *c = vctx;
  void *slots[MAX_SLOTS + 2];
  int n = c->base->n;
  memcpy(slots, c->base->slots, (size_t)n * sizeof *slots);
  slots[n] = &begin;
  slots[n + 1] = &end;
  ts_launch_state *old = ts_launch_state_set(c->state);
  c->run(slots);
  ts_launch_state_set(old);
}

/* A failed assert of the launch, as its error. */
static ts_status launch_result(const ts_kernel *k, ts_launch_state *s,
                               ts_status st) {
  if (st || !atomic_load(&s->failed))
    return st;
  return ts_status_make(TS_ERR_PROGRAM, "kernel '%s': %s", k->name,
                        s->message);
}

ts_status ts_kernel_launch(ts_kernel *k, const ts_arg *args, size_t count) {
  return ts_kernel_launch_grid(k, args, count, NULL);
}

static ts_status launch_grid(ts_kernel *k, const ts_arg *args, size_t count,
                             const int64_t grid[3], bool timed);

ts_status ts_kernel_launch_plain(ts_kernel *k, const ts_arg *args, size_t count,
                                 const int64_t grid[3]) {
  return launch_grid(k, args, count, grid, false);
}

/* Profiled (profile.c), a launch is timed: its own time here, a GPU's by
 * the kernel's events (which wait for it). */
static ts_status profiled_launch(ts_kernel *k, const ts_arg *args, size_t count,
                                 const int64_t grid[3]) {
  if (!ts_profile_on())
    return launch_grid(k, args, count, grid, true);
  bool timing = k->timing, gpu = k->device->cuda;
  k->timing = timing || gpu;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ts_status st = launch_grid(k, args, count, grid, true);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = gpu ? (st ? 0 : ts_kernel_last_seconds(k))
                 : (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  k->timing = timing;
  if (!st)
    ts_profile_add(ts_device_name(k->device), k->name, k->config, s);
  return st;
}

/* (recorded when it ran, where its device records a graph, or the device
 * of one of its tensors does: a CPU kernel runs over any host device's
 * tensors, and the model's kernels are made once for every CPU device) */
ts_status ts_kernel_launch_grid(ts_kernel *k, const ts_arg *args, size_t count,
                                const int64_t grid[3]) {
  ts_status st = profiled_launch(k, args, count, grid);
  ts_device *rec = k->device->rec ? k->device : NULL;
  for (size_t i = 0; !rec && i < count; i++)
    if (args[i].kind == TS_ARG_TENSOR && args[i].tensor && ts_tensor_device(args[i].tensor)->rec)
      rec = ts_tensor_device(args[i].tensor);
  if (!st && rec)
    ts_graph_add_launch(rec, k, args, count, grid);
  return st;
}

static ts_status launch_grid(ts_kernel *k, const ts_arg *args, size_t count,
                             const int64_t grid[3], bool timed) {
  const ts_kernel_info *info = k->info;
  char an[64];
  if (count != info->arg_count)
    return ts_status_make(TS_ERR_INVALID,
                          "kernel '%s' takes %u argument%s, given %zu", k->name,
                          info->arg_count, info->arg_count == 1 ? "" : "s",
                          count);
  int64_t dim_val[TS_MAX_RANK * 64];
  int dim_from[TS_MAX_RANK * 64];
  if (info->dim_count > TS_MAX_RANK * 64)
    return ts_status_make(TS_ERR_UNSUPPORTED, "too many dims");
  for (uint32_t i = 0; i < info->dim_count; i++)
    dim_from[i] = -1;
  /* 1. check and bind */
  for (uint32_t i = 0; i < info->arg_count; i++) {
    const ts_symbol *s = info->args[i];
    const ts_arg *a = &args[i];
    if (s->kind == TS_SYM_SCALAR) {
      if (a->kind == TS_ARG_TENSOR)
        return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is a "
                              "scalar %s, given a tensor",
                              i + 1, arg_name(s, an, sizeof an), k->name,
                              ts_dtype_name(s->type->dtype));
      TS_TRY(check_scalar(k, i, s, a));
      continue;
    }
    if (a->kind != TS_ARG_TENSOR || !a->tensor)
      return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is a "
                            "tensor, given a scalar",
                            i + 1, arg_name(s, an, sizeof an), k->name);
    const ts_tensor *t = a->tensor;
    const ts_type *ty = s->type;
    if (ts_tensor_dtype(t) != ty->dtype) {
      /* declared with a dtype param: say how to compile it for this dtype */
      const ts_node *tn = s->decl && s->decl->kid_count ? s->decl->kids[0] : NULL;
      if (tn && tn->op == TS_TOK_IDENT)
        return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is "
                              "%s (its dtype param %.*s), given %s: create "
                              "the kernel with %.*s=%s",
                              i + 1, arg_name(s, an, sizeof an), k->name, ts_dtype_name(ty->dtype),
                              (int)tn->name.len, tn->name.ptr,
                              ts_dtype_name(ts_tensor_dtype(t)), (int)tn->name.len,
                              tn->name.ptr, ts_dtype_name(ts_tensor_dtype(t)));
      return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' must be "
                            "%s, given %s",
                            i + 1, arg_name(s, an, sizeof an), k->name, ts_dtype_name(ty->dtype),
                            ts_dtype_name(ts_tensor_dtype(t)));
    }
    /* a GPU kernel takes its own device's memory; the others host memory */
    ts_device *td = ts_tensor_device(t);
    if (k->device->cuda ? td != k->device : !ts_device_is_host(td))
      return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' is on "
                            "device '%s'; the kernel runs on '%s' (copy_to "
                            "moves a tensor)",
                            i + 1, arg_name(s, an, sizeof an), k->name, ts_device_name(td),
                            ts_device_name(k->device));
    if (!ts_tensor_is_contiguous(t))
      return ts_status_make(TS_ERR_UNSUPPORTED, "argument %u ('%s') of '%s' is "
                            "a strided view; kernels take contiguous tensors "
                            "(slices of the first dim) for now",
                            i + 1, arg_name(s, an, sizeof an), k->name);
    if (ts_tensor_rank(t) != ty->rank)
      return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s' has %u "
                            "dims, the kernel expects %u",
                            i + 1, arg_name(s, an, sizeof an), k->name,
                            ts_tensor_rank(t), ty->rank);
    for (uint32_t d = 0; d < ty->rank; d++) {
      int64_t have = ts_tensor_dim(t, d);
      const ts_extent *e = &ty->dims[d];
      if (e->term_count == 0) {
        if (have != e->c)
          return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s': "
                                "dim %u is %lld, the kernel expects %lld",
                                i + 1, arg_name(s, an, sizeof an), k->name, d, (long long)have,
                                (long long)e->c);
        continue;
      }
      uint32_t j = 0;
      while (j < info->dim_count && info->dims[j]->atom != e->terms[0].atom)
        j++;
      if (j == info->dim_count)
        return ts_status_make(TS_ERR_INTERNAL, "unbound dim");
      if (dim_from[j] < 0) {
        dim_from[j] = (int)i;
        dim_val[j] = have;
      } else if (dim_val[j] != have) {
        char other[64], dn[64];
        arg_name(info->args[dim_from[j]], other, sizeof other);
        arg_name(info->dims[j], dn, sizeof dn);
        return ts_status_make(TS_ERR_INVALID, "argument %u ('%s') of '%s': dim "
                              "%u is %lld, but '%s' is %lld from argument '%s'",
                              i + 1, arg_name(s, an, sizeof an), k->name, d, (long long)have, dn,
                              (long long)dim_val[j], other);
      }
    }
  }
  /* 2. pack: tensors (5 slots each), dims, scalars (on the stack: a
   * launch is on the host's path between two kernels, and its slots are
   * read before it returns - the CPU's blocks are run, the driver copies
   * a GPU's parameters at the launch) */
  packed pk, *p = &pk;
  p->n = p->nints = p->nptrs = p->nfloats = p->ni32 = p->ni8 = 0;
  for (uint32_t i = 0; i < info->arg_count; i++)
    if (info->args[i]->kind == TS_SYM_TENSOR) {
      ts_tensor *t = args[i].tensor;
      void *data = ts_tensor_device_ptr(t);
      push_ptr(p, data);
      push_ptr(p, data);
      push_int(p, 0);
      push_int(p, ts_tensor_count(t) > 0 ? ts_tensor_count(t) : 1);
      push_int(p, 1);
    }
  int first_dim = p->n;
  for (uint32_t j = 0; j < info->dim_count; j++)
    push_int(p, dim_val[j]);
  for (uint32_t i = 0; i < info->arg_count; i++) {
    const ts_symbol *s = info->args[i];
    if (s->kind != TS_SYM_SCALAR)
      continue;
    const ts_arg *a = &args[i];
    double fv = a->kind == TS_ARG_FLOAT ? a->f : (double)a->i;
    int64_t iv = a->kind == TS_ARG_FLOAT ? (int64_t)a->f : a->i;
    switch (s->type->dtype) {
    case TS_DTYPE_I64:
      push_int(p, iv);
      break;
    case TS_DTYPE_I32:
    case TS_DTYPE_I8:
      p->i32s[p->ni32] = (int32_t)iv;
      p->slots[p->n++] = &p->i32s[p->ni32++];
      break;
    case TS_DTYPE_BOOL:
      p->i8s[p->ni8] = iv != 0;
      p->slots[p->n++] = &p->i8s[p->ni8++];
      break;
    default: /* floats: f32 */
      p->floats[p->nfloats] = (float)fv;
      p->slots[p->n++] = &p->floats[p->nfloats++];
    }
  }
  /* 3. the grid */
  int64_t g[3] = {1, 1, 1};
  void *gslots[MAX_SLOTS + 3];
  int ng = p->n - first_dim;
  memcpy(gslots, p->slots + first_dim, (size_t)ng * sizeof *gslots);
  for (int i = 0; i < 3; i++)
    gslots[ng + i] = &g[i];
  if (grid)
    memcpy(g, grid, sizeof g);
  else
    ts_cpu_program_grid(k->prog)(gslots);
  int64_t total;
  if (g[0] < 0 || g[1] < 0 || g[2] < 0 ||
      __builtin_mul_overflow(g[0], g[1], &total) ||
      __builtin_mul_overflow(total, g[2], &total)) {
    return ts_status_make(TS_ERR_INVALID, "kernel '%s': the grid (%lld, %lld, "
                          "%lld) is invalid",
                          k->name, (long long)g[0], (long long)g[1],
                          (long long)g[2]);
  }
  /* 4. run the blocks */
  if (k->device->cuda) {
    int64_t per_block = 0;
    gslots[ng] = &per_block;
    ts_cpu_program_scratch(k->prog)(gslots);
    /* the scratch memref and its bytes per block follow the arguments */
    void *scratch = NULL;
    int64_t one = 1, zero = 0, size;
    if (__builtin_mul_overflow(per_block, total, &size) ||
        p->n + 7 + TS_TMA_MAPS + 1 > MAX_SLOTS) {
      return ts_status_make(TS_ERR_INVALID, "kernel '%s': too much scratch",
                            k->name);
    }
    int64_t elems = size > 0 ? size : 1;
    p->slots[p->n++] = &scratch;
    p->slots[p->n++] = &scratch;
    p->slots[p->n++] = &zero;
    p->slots[p->n++] = &elems;
    p->slots[p->n++] = &one;
    p->slots[p->n++] = &per_block;
    tmaps m;
    memset(&m, 0, sizeof m);
    ts_status st = tensor_maps(k, args, &m);
    for (int i = 0; !st && i < m.n; i++)
      p->slots[p->n++] = m.slots[i];
    p->slots[p->n] = NULL; /* cuLaunchKernel reads exactly the kernel's count */
    if (!st)
      st = ts_cuda_launch(k->device, k->cu_fn, g, (int)info->threads, k->smem, p->slots, size,
                          &scratch, timed && k->timing ? &k->timer : NULL);
    if (st)
      st = ts_status_annotate(st, "kernel '%s'", k->name);
    return st;
  }
  ts_launch_state state = {.unit = ts_cpu_program_unit(k->prog)};
  if (k->device->gpusim) {
    int64_t per_block = 0;
    gslots[ng] = &per_block;
    ts_cpu_program_scratch(k->prog)(gslots);
    tmaps m;
    memset(&m, 0, sizeof m);
    tensor_maps(k, args, &m); /* (the simulator's maps cannot fail) */
    ts_launch_state *old = ts_launch_state_set(&state);
    ts_status st = ts_gpusim_launch(
        k->sim_fn ? k->sim_fn : ts_cpu_program_gpu(k->prog), k->sim_fn != NULL,
        (int)info->threads, p->slots, p->n, m.slots, m.n, g, total, per_block,
        ts_kernel_smem_bytes(info, sim_arch()));
    ts_launch_state_set(old);
    if (!st && ts_gpusim_banks_env())
      ts_gpusim_bank_report(stderr, k->name);
    return launch_result(k, &state, st);
  }
  run_ctx c = {ts_cpu_program_run(k->prog), p, &state};
  ts_pool_run(k->device->pool, run_blocks, &c, total);
  return launch_result(k, &state, NULL);
}
