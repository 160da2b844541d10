/* tune.c - the autotuning sweep (tune.h). The space is the cartesian
 * product of the `tune(...)` axes; each config goes through the front end
 * with its values as -D overrides, which prunes the ones that break a
 * `require` or a limit the checks know (threads per block, shared memory
 * per block, tile sizes) before anything is compiled. The survivors are
 * compiled on `jobs` threads, each run once on fresh random inputs and
 * compared with the default config's outputs (a fast wrong config is
 * rejected), then timed: one warm-up and `repeats` runs, the median and the
 * spread kept; the configs close to the best are then timed again in turns
 * (retime_close). */
#define _POSIX_C_SOURCE 200809L
#include "runtime/tune.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_AXES 16
#define MAX_FIXED 16
#define MAX_CONFIGS 100000
#define MAX_RUNS 64 /* timed runs a config, and rounds in turns */

typedef struct axis {
  ts_str name;
  int64_t *v;
  size_t n;
} axis;

typedef struct job {
  ts_define defs[MAX_AXES + MAX_FIXED];
  char buf[256];
  size_t ndefs;
  ts_kernel *k;
} job;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void ts_tune_source_hash(const char *text, size_t len, char out[17]) {
  snprintf(out, 17, "%016llx",
           (unsigned long long)ts_hash_bytes(text, len, 0x7e55e7a));
}

static const char *value_of(const ts_define *v, size_t n, ts_str name) {
  for (size_t i = 0; i < n; i++)
    if (ts_str_eq_cstr(name, v[i].name))
      return v[i].value;
  return NULL;
}

/* The --shape values against kernel k: each names a dim of its tensor
 * arguments (a whole number, 0 or more) or a scalar argument (a number of
 * its type); anything else is an error naming it, not a value read as 0 or
 * left unused. */
static ts_status check_values(const ts_kernel_info *k, const ts_define *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    ts_str name = ts_str_from(v[i].name);
    const char *val = v[i].value;
    char *end = NULL;
    bool dim = false, scalar_float = false, scalar = false;
    for (uint32_t q = 0; q < k->dim_count; q++)
      dim |= ts_str_eq(k->dims[q]->name, name);
    for (uint32_t q = 0; q < k->arg_count && !dim; q++)
      if (k->args[q]->kind != TS_SYM_TENSOR && ts_str_eq(k->args[q]->name, name)) {
        scalar = true;
        scalar_float = ts_dtype_is_float(k->args[q]->type->dtype);
      }
    if (!dim && !scalar) {
      char dims[256];
      size_t at = 0;
      dims[0] = 0;
      for (uint32_t q = 0; q < k->dim_count && at < sizeof dims; q++)
        at += (size_t)snprintf(dims + at, sizeof dims - at, "%s%.*s", q ? ", " : "",
                               (int)k->dims[q]->name.len, k->dims[q]->name.ptr);
      return ts_status_make(TS_ERR_INVALID, "--shape %s=%s: '%.*s' has no dim or scalar "
                            "argument '%s' (its dims: %s)", v[i].name, val,
                            (int)k->name.len, k->name.ptr, v[i].name, at ? dims : "none");
    }
    if (scalar_float) {
      (void)strtod(val, &end);
      if (!*val || *end)
        return ts_status_make(TS_ERR_INVALID, "--shape %s=%s: not a number", v[i].name, val);
      continue;
    }
    long long x = strtoll(val, &end, 10);
    if (!*val || *end || (dim && x < 0))
      return ts_status_make(TS_ERR_INVALID, "--shape %s=%s: %s", v[i].name, val,
                            dim ? "a dim's size is a whole number, 0 or more"
                                : "not a whole number");
  }
  return NULL;
}

void ts_tune_bucket(const ts_kernel_info *k, const ts_define *values,
                    size_t nvalues, char *out, size_t size) {
  size_t at = 0;
  out[0] = 0;
  for (uint32_t i = 0; i < k->dim_count && at < size; i++) {
    const char *v = value_of(values, nvalues, k->dims[i]->name);
    long long x = v ? atoll(v) : 0, p = 1;
    while (p < x && p < (1LL << 62))
      p <<= 1;
    at += (size_t)snprintf(out + at, size - at, "%s%.*s=%lld", i ? " " : "",
                           (int)k->dims[i]->name.len, k->dims[i]->name.ptr,
                           x > 0 ? p : x);
  }
}

/* Appends the held params to a bucket, " NAME=VALUE" each at its checked
 * value in the kernel's order of params (so that the order and spelling
 * of the -D list do not matter). */
static void fixed_bucket(const ts_kernel_info *k, const ts_define *fixed, size_t n, char *out,
                         size_t size) {
  size_t at = strlen(out);
  for (uint32_t i = 0; i < k->param_count && at < size; i++) {
    const ts_symbol *p = k->params[i];
    if (!value_of(fixed, n, p->name))
      continue;
    char v[64];
    ts_const_text(&p->cval, v, sizeof v);
    at += (size_t)snprintf(out + at, size - at, "%s%.*s=%s", at ? " " : "", (int)p->name.len,
                           p->name.ptr, v);
  }
}

/* The first held param that is a tune axis of k, or NULL. */
static const char *fixed_axis(const ts_kernel_info *k, const ts_define *fixed, size_t n) {
  for (uint32_t i = 0; k->tune && i < k->tune->kid_count; i++) {
    const ts_node *it = k->tune->kids[i];
    for (size_t j = 0; it->kind == TS_NODE_TUNE && j < n; j++)
      if (ts_str_eq_cstr(it->name, fixed[j].name))
        return fixed[j].name;
  }
  return NULL;
}

size_t ts_tune_config_defines(const char *config, char *buf, size_t size,
                              ts_define *out, size_t max) {
  snprintf(buf, size, "%s", config);
  size_t n = 0;
  for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < max;
       t = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(t, '=');
    if (!eq)
      continue;
    *eq = 0;
    out[n++] = (ts_define){t, eq + 1};
  }
  return n;
}

/* The first error of a front-end run, one line. */
static void first_error(const ts_diags *d, char *out, size_t size) {
  const ts_diag *e = d->head;
  while (e && e->level != TS_DIAG_ERROR)
    e = e->next;
  if (!e)
    snprintf(out, size, "rejected by the front end");
  else if (e->has_location)
    snprintf(out, size, "%u:%u: %s", e->line, e->col, e->message);
  else
    snprintf(out, size, "%s", e->message);
}

/* Does the front end accept the config of `kernel`? */
static bool check_config(const char *path, const char *text, size_t len, const char *kernel,
                         const ts_define *defs, size_t n, const ts_device *dev, char *why,
                         size_t size) {
  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  ts_unit u;
  bool ok = false;
  ts_status st = ts_unit_init(&u, ts_allocator_system(), path, text, len, &d);
  if (st) {
    snprintf(why, size, "%s", ts_status_message(st));
    ts_status_free(st);
  } else {
    u.define_kernel = kernel;
    u.arch = ts_arch_number(ts_device_arch(dev));
    ok = ts_unit_parse(&u) && ts_unit_check(&u, defs, n);
    if (!ok)
      first_error(&d, why, size);
    ts_unit_deinit(&u);
  }
  ts_diags_deinit(&d);
  return ok;
}

/* A GPU config's registers and bytes of spill stores, from ptxas -v over
 * its PTX for `arch` (the lowering the device runs, TESSERA_GPU_LOWERING;
 * through the kernel cache, where the device's compile just put it); false
 * with the reason in `why` when there is no ptxas or it fails. */
static bool config_resources(const ts_tune_options *o, const char *text, size_t len,
                             const ts_define *defs, size_t ndefs, const char *arch,
                             long long *regs, long long *spill, char *why, size_t size) {
  bool nvrtc = ts_cuda_lowering();
  char cache[4096];
  ts_compile_options opt = {.kernel = o->kernel,
                            .target = nvrtc ? TS_TARGET_CUDA : TS_TARGET_PTX,
                            .emit = TS_EMIT_PTX, .defines = defs, .define_count = ndefs,
                            .define_label = "param", .arch = arch,
                            .cache_dir = ts_cache_dir(cache, sizeof cache)};
  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  ts_buf ptx;
  ts_buf_init(&ptx, ts_allocator_system());
  ts_status st = ts_compile(ts_allocator_system(), o->path, text, len, &opt, &d, &ptx);
  ts_ptx_kernel_res r;
  if (!st)
    st = ptx.failed ? ts_status_nomem()
                    : ts_ptx_kernel_resources(ptx.ptr ? ptx.ptr : "", ptx.len, arch, o->kernel, &r);
  ts_buf_deinit(&ptx);
  ts_diags_deinit(&d);
  if (st) {
    snprintf(why, size, "%s", ts_status_message(st));
    ts_status_free(st);
    *regs = *spill = -1;
    return false;
  }
  *regs = r.registers;
  *spill = r.spill_stores;
  return true;
}

/* ---- compiling on several threads ------------------------------------------ */

typedef struct compile_ctx {
  const ts_tune_options *o;
  const char *text;
  size_t len;
  job *jobs;
  ts_tune_result *res;
  size_t n;
  atomic_size_t next;
  const char *arch; /* a GPU device's: the configs' registers and spills */
} compile_ctx;

static void *compile_worker(void *v) {
  compile_ctx *c = v;
  for (;;) {
    size_t i = atomic_fetch_add(&c->next, 1);
    if (i >= c->n)
      return NULL;
    ts_tune_result *r = &c->res[i];
    if (r->state != TS_TUNE_OK)
      continue;
    ts_diags d;
    ts_diags_init(&d, ts_allocator_system());
    double t0 = now();
    ts_status st = ts_kernel_create_from_source(
        c->o->device, c->o->path, c->text, c->len, c->o->kernel,
        c->jobs[i].defs, c->jobs[i].ndefs, &d, &c->jobs[i].k);
    r->compile_seconds = now() - t0;
    if (st) {
      r->state = TS_TUNE_FAILED;
      if (d.head)
        first_error(&d, r->reason, sizeof r->reason);
      else
        snprintf(r->reason, sizeof r->reason, "compile: %s",
                 ts_status_message(st));
      ts_status_free(st);
    } else if (c->arch) {
      char why[256];
      config_resources(c->o, c->text, c->len, c->jobs[i].defs, c->jobs[i].ndefs, c->arch,
                       &r->registers, &r->spill, why, sizeof why);
    }
    ts_diags_deinit(&d);
  }
}

/* ---- inputs and outputs ------------------------------------------------------ */

typedef struct inputs {
  ts_arg args[128];
  size_t n;
  void *pristine[128]; /* each tensor's random contents */
  size_t bytes[128];
  double *ref[128]; /* the default config's outputs */
  double ref_max[128];
} inputs;

static ts_status make_inputs(const ts_tune_options *o, const ts_kernel_info *k,
                             inputs *in) {
  ts_status st = NULL;
  ts_device *host = NULL;
  TS_TRY(ts_device_create_cpu(1, &host));
  unsigned seed = o->seed ? o->seed : 1;
  for (uint32_t i = 0; i < k->arg_count && !st; i++) {
    const ts_symbol *a = k->args[i];
    const char *v = value_of(o->values, o->nvalues, a->name);
    if (a->kind != TS_SYM_TENSOR) {
      ts_dtype dt = a->type->dtype;
      in->args[in->n++] =
          ts_dtype_is_float(dt) ? ts_arg_float(v ? atof(v) : 1.0)
          : dt == TS_DTYPE_BOOL ? (ts_arg){TS_ARG_BOOL, NULL, v && atoi(v), 0}
                                : ts_arg_int(v ? atoll(v) : 1);
      continue;
    }
    int64_t shape[TS_MAX_RANK];
    const ts_type *t = a->type;
    for (uint32_t d = 0; d < t->rank && !st; d++) {
      const ts_extent *e = &t->dims[d];
      int64_t x = e->c;
      for (uint32_t j = 0; j < e->term_count && !st; j++) {
        const ts_symbol *dim = NULL;
        for (uint32_t q = 0; q < k->dim_count; q++)
          if (k->dims[q]->atom == e->terms[j].atom)
            dim = k->dims[q];
        const char *dv = dim ? value_of(o->values, o->nvalues, dim->name) : NULL;
        if (!dv)
          st = ts_status_make(TS_ERR_INVALID, "give the size of dim '%.*s' "
                              "of '%.*s': --shape %.*s=VALUE",
                              dim ? (int)dim->name.len : 1,
                              dim ? dim->name.ptr : "?", (int)a->name.len,
                              a->name.ptr, dim ? (int)dim->name.len : 1,
                              dim ? dim->name.ptr : "?");
        else
          x += e->terms[j].coef * atoll(dv);
      }
      if (!st && x < 0)
        st = ts_status_make(TS_ERR_INVALID, "dim %u of '%.*s' is negative", d,
                            (int)a->name.len, a->name.ptr);
      shape[d] = x;
    }
    ts_tensor *h = NULL, *dev = NULL;
    if (st || (st = ts_tensor_create(host, t->dtype, t->rank, shape, &h)))
      break;
    int64_t n = ts_tensor_count(h);
    for (int64_t e = 0; e < n; e++) {
      seed = seed * 1103515245u + 12345u;
      double r = (double)((seed >> 8) & 0xffff) / 65536.0;
      ts_tensor_set(h, e, ts_dtype_is_float(t->dtype) ? 2 * r - 1
                          : t->dtype == TS_DTYPE_BOOL ? (double)(r < 0.5)
                                                      : floor(r * 8));
    }
    in->bytes[in->n] = ts_tensor_size(h);
    in->pristine[in->n] = malloc(in->bytes[in->n] ? in->bytes[in->n] : 1);
    if (!in->pristine[in->n])
      st = ts_status_nomem();
    else if (!(st = ts_tensor_read(h, in->pristine[in->n], in->bytes[in->n])))
      st = ts_tensor_create(o->device, t->dtype, t->rank, shape, &dev);
    ts_tensor_release(h);
    if (!st)
      in->args[in->n++] = ts_arg_tensor(dev);
  }
  ts_device_release(host);
  return st;
}

static ts_status reset_inputs(inputs *in) {
  for (size_t i = 0; i < in->n; i++)
    if (in->args[i].kind == TS_ARG_TENSOR)
      TS_TRY(ts_tensor_write(in->args[i].tensor, in->pristine[i], in->bytes[i]));
  return NULL;
}

/* Every tensor after a run, as doubles (read through a host copy). */
static ts_status outputs(inputs *in, size_t i, double **out) {
  ts_tensor *t = in->args[i].tensor, *h = NULL;
  ts_device *host = NULL;
  TS_TRY(ts_device_create_cpu(1, &host));
  ts_status st = ts_tensor_copy(t, host, &h);
  ts_device_release(host);
  if (st)
    return st;
  int64_t n = ts_tensor_count(h);
  double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  if (!v) {
    ts_tensor_release(h);
    return ts_status_nomem();
  }
  for (int64_t e = 0; e < n; e++)
    v[e] = ts_tensor_get(h, e);
  ts_tensor_release(h);
  *out = v;
  return NULL;
}

/* How far a config's outputs are from the default's, relative to the
 * largest reference value; the tolerance follows the tensor's precision
 * (sums may be ordered differently by different tiles). */
static double tolerance(ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_F32: return 1e-4;
  case TS_DTYPE_F16:
  case TS_DTYPE_BF16: return 2e-2;
  case TS_DTYPE_FP8E4M3: return 0.15;
  default: return 0; /* integers and bools: exact */
  }
}

static ts_status compare(inputs *in, const ts_kernel_info *k, double *worst,
                         char *why, size_t size) {
  *worst = 0;
  for (size_t i = 0; i < in->n; i++) {
    if (in->args[i].kind != TS_ARG_TENSOR)
      continue;
    double *v;
    TS_TRY(outputs(in, i, &v));
    int64_t n = ts_tensor_count(in->args[i].tensor);
    ts_dtype dt = ts_tensor_dtype(in->args[i].tensor);
    double scale = in->ref_max[i] > 0 ? in->ref_max[i] : 1;
    for (int64_t e = 0; e < n; e++) {
      double a = v[e], b = in->ref[i][e];
      bool same_nan = isnan(a) && isnan(b);
      double err = same_nan ? 0 : isnan(a) || isnan(b) ? INFINITY
                                                        : fabs(a - b) / scale;
      if (err > *worst)
        *worst = err;
      if (err > tolerance(dt) && why[0] == 0)
        snprintf(why, size, "'%.*s'[%lld] is %g, the default config gives %g",
                 (int)k->args[i]->name.len, k->args[i]->name.ptr,
                 (long long)e, a, b);
    }
    free(v);
  }
  return NULL;
}

/* One launch, its seconds (the GPU's own timing where there is one). */
static ts_status timed(ts_device *d, ts_kernel *k, inputs *in, double *s) {
  ts_kernel_set_timing(k, true);
  double t0 = now();
  TS_TRY(ts_kernel_launch(k, in->args, in->n));
  double gpu = ts_kernel_last_seconds(k);
  TS_TRY(ts_device_sync(d));
  *s = gpu > 0 ? gpu : now() - t0;
  return NULL;
}

static int by_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Whether config c is among pick[0 .. np). */
static bool picked(const size_t *pick, size_t np, size_t c) {
  for (size_t i = 0; i < np; i++)
    if (pick[i] == c)
      return true;
  return false;
}

/* The configs whose fastest run is within o->close of the best's (at most
 * TS_TUNE_CLOSE_MAX, the fastest) timed again in turns: `reps` rounds, each
 * one run of every such config, the order rotated a round; their medians
 * and spreads become those of these runs. Timed one config after another,
 * a config whose runs met a busy spell of the host (another process, a
 * clock change) looked slower than its neighbours; runs taken in turns
 * meet the same host, so that near-equal configs are ranked by their own
 * speed. (Picked by their fastest runs: a busy spell only adds time, so a
 * config's fastest run is the figure it leaves most nearly alone.) Stops
 * with the budget (keeping the first timings unless three rounds were
 * done). */
static ts_status retime_close(const ts_tune_options *o, job *jobs, ts_tune_result *res,
                              size_t total, inputs *in, int reps, double t_start) {
  double close = o->close > 0 ? o->close : 2, best = INFINITY;
  if (close <= 1)
    return NULL;
  for (size_t c = 0; c < total; c++)
    if (res[c].state == TS_TUNE_OK && res[c].fastest < best)
      best = res[c].fastest;
  /* the fastest first: each pick the fastest close config not yet picked */
  size_t pick[TS_TUNE_CLOSE_MAX], np = 0;
  for (; np < TS_TUNE_CLOSE_MAX; np++) {
    size_t f = total;
    for (size_t c = 0; c < total; c++)
      if (res[c].state == TS_TUNE_OK && res[c].fastest <= best * close &&
          !picked(pick, np, c) && (f == total || res[c].fastest < res[f].fastest))
        f = c;
    if (f == total)
      break;
    pick[np] = f;
  }
  double s[TS_TUNE_CLOSE_MAX][MAX_RUNS];
  int rounds = 0;
  /* (the inputs are not reset between runs, as none are between a
   * config's first timings: every run is over the same shapes) */
  for (; np >= 2 && rounds < reps; rounds++) {
    if (o->budget > 0 && now() - t_start > o->budget)
      break;
    for (size_t i = 0; i < np; i++) {
      size_t q = (i + (size_t)rounds) % np;
      TS_TRY(timed(o->device, jobs[pick[q]].k, in, &s[q][rounds]));
    }
  }
  for (size_t i = 0; i < np; i++) {
    ts_tune_result *r = &res[pick[i]];
    r->retimed = np >= 2 && rounds >= 3;
    if (!r->retimed)
      continue;
    qsort(s[i], (size_t)rounds, sizeof s[i][0], by_double);
    r->median = s[i][rounds / 2];
    r->spread = s[i][rounds - 1] - s[i][0];
    r->runs = rounds;
  }
  return NULL;
}

static int rank_of(const ts_tune_result *r) {
  static const int order[] = {[TS_TUNE_OK] = 0, [TS_TUNE_NOT_TIMED] = 1,
                              [TS_TUNE_WRONG] = 2, [TS_TUNE_FAILED] = 3,
                              [TS_TUNE_PRUNED] = 4};
  return order[r->state];
}

static int by_rank(const void *a, const void *b) {
  const ts_tune_result *x = a, *y = b;
  if (rank_of(x) != rank_of(y))
    return rank_of(x) - rank_of(y);
  if (x->state == TS_TUNE_OK)
    return x->median < y->median ? -1 : x->median > y->median;
  return 0;
}

static void progress(const ts_tune_options *o, size_t done, size_t total,
                     const ts_tune_result *best) {
  if (!o->progress)
    return;
  int w = 30, fill = total ? (int)(done * (size_t)w / total) : w;
  fprintf(stderr, "\r[%.*s%*s] %zu/%zu", fill,
          "##############################", w - fill, "", done, total);
  if (best)
    fprintf(stderr, "  best %.4g ms (%s)", best->median * 1e3, best->config);
  fprintf(stderr, "\033[K");
  if (done == total)
    fputc('\n', stderr);
  fflush(stderr);
}

/* ---- the sweep ----------------------------------------------------------- */

ts_status ts_tune(const ts_tune_options *o, ts_diags *diags,
                  ts_tune_report *out) {
  memset(out, 0, sizeof *out);
  char *text;
  size_t len;
  TS_TRY(ts_file_read(ts_allocator_system(), o->path, &text, &len));
  ts_status st = NULL;
  ts_unit u;
  job *jobs = NULL;
  inputs in;
  memset(&in, 0, sizeof in);
  ts_kernel *base = NULL;
  axis ax[MAX_AXES];
  size_t nax = 0;
  memset(ax, 0, sizeof ax);
  bool unit_ok = false;
  if ((st = ts_unit_init(&u, ts_allocator_system(), o->path, text, len, diags)))
    goto done;
  unit_ok = true;
  if (o->nfixed > MAX_FIXED) {
    st = ts_status_make(TS_ERR_UNSUPPORTED, "more than %d held params", MAX_FIXED);
    goto done;
  }
  u.define_kernel = o->kernel;
  u.arch = ts_arch_number(ts_device_arch(o->device));
  if (!ts_unit_parse(&u) || !ts_unit_check(&u, o->fixed, o->nfixed)) {
    st = ts_status_make(TS_ERR_PROGRAM, "'%s' has errors", o->path);
    goto done;
  }
  const ts_kernel_info *k = ts_unit_kernel(&u, ts_str_from(o->kernel));
  if (!k) {
    st = ts_status_make(TS_ERR_INVALID, "no kernel '%s' in '%s'", o->kernel,
                        o->path);
    goto done;
  }
  if ((st = check_values(k, o->values, o->nvalues)))
    goto done;
  if (!k->tune) {
    st = ts_status_make(TS_ERR_INVALID, "kernel '%s' has no 'tune(...)' "
                        "clause: nothing to tune", o->kernel);
    goto done;
  }
  const char *tuned = fixed_axis(k, o->fixed, o->nfixed);
  if (tuned) {
    st = ts_status_make(TS_ERR_INVALID, "'%s' is swept by the kernel's 'tune(...)': it "
                        "cannot also be held (-D holds the params the sweep leaves alone)",
                        tuned);
    goto done;
  }
  /* the axes and the default config */
  size_t total = 1;
  for (uint32_t i = 0; i < k->tune->kid_count; i++) {
    ts_node *it = k->tune->kids[i];
    if (it->kind != TS_NODE_TUNE)
      continue;
    if (nax == MAX_AXES) {
      st = ts_status_make(TS_ERR_UNSUPPORTED, "more than %d tuned params",
                          MAX_AXES);
      goto done;
    }
    axis *a = &ax[nax++];
    a->name = it->name;
    ts_node *vals = it->kids[0];
    size_t n = vals ? vals->kid_count
                    : (size_t)(it->kids[2]->cval.i - it->kids[1]->cval.i);
    a->v = calloc(n, sizeof *a->v);
    if (!a->v) {
      st = ts_status_nomem();
      goto done;
    }
    for (size_t j = 0; j < n; j++)
      a->v[a->n++] = vals ? vals->kids[j]->cval.i
                          : it->kids[1]->cval.i + (int64_t)j;
    total *= a->n;
    if (total > MAX_CONFIGS) {
      st = ts_status_make(TS_ERR_INVALID, "the tune space has more than %d "
                          "configs", MAX_CONFIGS);
      goto done;
    }
  }
  size_t dl = 0;
  for (size_t i = 0; i < nax; i++)
    for (uint32_t j = 0; j < k->param_count; j++)
      if (ts_str_eq(k->params[j]->name, ax[i].name))
        dl += (size_t)snprintf(out->default_config + dl,
                               sizeof out->default_config - dl, "%s%.*s=%lld",
                               i ? " " : "", (int)ax[i].name.len,
                               ax[i].name.ptr,
                               (long long)k->params[j]->cval.i);
  ts_tune_bucket(k, o->values, o->nvalues, out->bucket, sizeof out->bucket);
  fixed_bucket(k, o->fixed, o->nfixed, out->bucket, sizeof out->bucket);
  /* the joined text: a file it uses changes the hash too */
  ts_tune_source_hash(u.src.text, u.src.len, out->source_hash);
  snprintf(out->device, sizeof out->device, "%s", ts_device_name(o->device));

  /* enumerate and prune */
  out->results = calloc(total, sizeof *out->results);
  jobs = calloc(total, sizeof *jobs);
  if (!out->results || !jobs) {
    st = ts_status_nomem();
    goto done;
  }
  out->count = total;
  for (size_t c = 0; c < total; c++) {
    ts_tune_result *r = &out->results[c];
    job *j = &jobs[c];
    r->registers = r->spill = -1;
    size_t rest = c, at = 0, idx[MAX_AXES]; /* the last axis varies fastest */
    for (size_t i = nax; i-- > 0;) {
      idx[i] = rest % ax[i].n;
      rest /= ax[i].n;
    }
    for (size_t i = 0; i < nax; i++)
      at += (size_t)snprintf(r->config + at, sizeof r->config - at,
                             "%s%.*s=%lld", i ? " " : "", (int)ax[i].name.len,
                             ax[i].name.ptr, (long long)ax[i].v[idx[i]]);
    j->ndefs = ts_tune_config_defines(r->config, j->buf, sizeof j->buf,
                                      j->defs, MAX_AXES);
    for (size_t f = 0; f < o->nfixed; f++)
      j->defs[j->ndefs++] = o->fixed[f];
    if (!check_config(o->path, text, len, o->kernel, j->defs, j->ndefs, o->device, r->reason,
                      sizeof r->reason)) {
      r->state = TS_TUNE_PRUNED;
      out->pruned++;
    }
  }

  /* the default config's outputs: the reference */
  if ((st = make_inputs(o, k, &in)))
    goto done;
  if ((st = ts_kernel_create_from_source(o->device, o->path, text, len,
                                         o->kernel, o->fixed, o->nfixed, diags, &base)) ||
      (st = reset_inputs(&in)) ||
      (st = ts_kernel_launch(base, in.args, in.n)))
    goto done;
  for (size_t i = 0; i < in.n; i++) {
    if (in.args[i].kind != TS_ARG_TENSOR)
      continue;
    if ((st = outputs(&in, i, &in.ref[i])))
      goto done;
    int64_t n = ts_tensor_count(in.args[i].tensor);
    for (int64_t e = 0; e < n; e++)
      if (isfinite(in.ref[i][e]) && fabs(in.ref[i][e]) > in.ref_max[i])
        in.ref_max[i] = fabs(in.ref[i][e]);
  }

  /* compile the survivors */
  int nthreads = o->jobs > 0 ? o->jobs : ts_device_thread_count(o->device);
  if (nthreads < 1)
    nthreads = 1;
  if (nthreads > 64)
    nthreads = 64;
  /* on a GPU, the default config's registers and spills (ptxas -v): the
   * bar the configs' spills are held to */
  const char *arch = ts_device_arch(o->device);
  out->default_registers = out->default_spill = -1;
  if (arch && !config_resources(o, text, len, o->fixed, o->nfixed, arch,
                                &out->default_registers, &out->default_spill,
                                out->resources_note, sizeof out->resources_note))
    arch = NULL; /* (no ptxas: no config is checked) */
  compile_ctx cc = {o, text, len, jobs, out->results, total, 0, arch};
  pthread_t th[64];
  int started = 0;
  for (int i = 1; i < nthreads; i++)
    started += pthread_create(&th[started], NULL, compile_worker, &cc) == 0;
  compile_worker(&cc);
  for (int i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  /* a config that spills more than the default is not run: the registers
   * it lacks cost more than its tiles can win back, in all but odd cases
   * (keep_spills times them all the same) */
  for (size_t c = 0; arch && !o->keep_spills && c < total; c++) {
    ts_tune_result *r = &out->results[c];
    if (r->state != TS_TUNE_OK || r->spill <= out->default_spill)
      continue;
    r->state = TS_TUNE_PRUNED;
    snprintf(r->reason, sizeof r->reason, "spills %lld bytes a thread (ptxas -v, %s; the "
             "default config %lld)", r->spill, arch, out->default_spill);
    out->spilled++;
  }

  /* check and time */
  double t_start = now();
  int reps = o->repeats > 0 ? (o->repeats < MAX_RUNS ? o->repeats : MAX_RUNS) : 7;
  const ts_tune_result *best = NULL;
  size_t done_n = 0;
  for (size_t c = 0; c < total && !st; c++) {
    ts_tune_result *r = &out->results[c];
    done_n++;
    if (r->state != TS_TUNE_OK) {
      progress(o, done_n, total, best);
      continue;
    }
    if (o->budget > 0 && now() - t_start > o->budget) {
      r->state = TS_TUNE_NOT_TIMED;
      snprintf(r->reason, sizeof r->reason, "the budget ran out");
      continue;
    }
    ts_status ls = reset_inputs(&in);
    if (!ls)
      ls = ts_kernel_launch(jobs[c].k, in.args, in.n);
    if (ls) {
      r->state = TS_TUNE_FAILED;
      snprintf(r->reason, sizeof r->reason, "launch: %s",
               ts_status_message(ls));
      ts_status_free(ls);
      progress(o, done_n, total, best);
      continue;
    }
    if ((st = compare(&in, k, &r->max_error, r->reason, sizeof r->reason)))
      break;
    if (r->reason[0]) {
      r->state = TS_TUNE_WRONG;
      progress(o, done_n, total, best);
      continue;
    }
    double s[MAX_RUNS], dummy;
    ls = timed(o->device, jobs[c].k, &in, &dummy); /* warm-up */
    for (int i = 0; i < reps && !ls; i++)
      ls = timed(o->device, jobs[c].k, &in, &s[i]);
    if (ls) {
      r->state = TS_TUNE_FAILED;
      snprintf(r->reason, sizeof r->reason, "launch: %s",
               ts_status_message(ls));
      ts_status_free(ls);
      continue;
    }
    qsort(s, (size_t)reps, sizeof *s, by_double);
    r->median = s[reps / 2];
    r->spread = s[reps - 1] - s[0];
    r->fastest = s[0];
    r->runs = reps;
    if (!best || r->median < best->median)
      best = r;
    progress(o, done_n, total, best);
  }
  if (!st)
    st = retime_close(o, jobs, out->results, total, &in, reps, t_start);
  if (!st)
    qsort(out->results, total, sizeof *out->results, by_rank);
  for (size_t c = 0; c < total; c++)
    if (out->results[c].state == TS_TUNE_FAILED ||
        out->results[c].state == TS_TUNE_PRUNED)
      out->results[c].median = INFINITY;
done:
  for (size_t c = 0; jobs && c < out->count; c++)
    ts_kernel_release(jobs[c].k);
  free(jobs);
  ts_kernel_release(base);
  for (size_t i = 0; i < in.n; i++) {
    if (in.args[i].kind == TS_ARG_TENSOR)
      ts_tensor_release(in.args[i].tensor);
    free(in.pristine[i]);
    free(in.ref[i]);
  }
  for (size_t i = 0; i < nax; i++)
    free(ax[i].v);
  if (unit_ok)
    ts_unit_deinit(&u);
  free(text);
  if (st)
    ts_tune_report_free(out);
  return st;
}

ts_status ts_tune_lookup(const char *db_path, const char *path,
                         const char *kernel, const ts_define *values,
                         size_t nvalues, const ts_define *fixed, size_t nfixed,
                         const char *device, char *config, size_t size, bool *found) {
  *found = false;
  char *text;
  size_t len;
  TS_TRY(ts_file_read(ts_allocator_system(), path, &text, &len));
  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  ts_unit u;
  ts_status st = ts_unit_init(&u, ts_allocator_system(), path, text, len, &d);
  if (st) {
    ts_diags_deinit(&d);
    free(text);
    return st;
  }
  const ts_kernel_info *k = NULL;
  u.define_kernel = kernel;
  if (ts_unit_parse(&u) && ts_unit_check(&u, fixed, nfixed))
    k = ts_unit_kernel(&u, ts_str_from(kernel));
  if (k)
    st = check_values(k, values, nvalues);
  if (!st && k && k->tune && !fixed_axis(k, fixed, nfixed)) {
    char bucket[256], hash[17];
    ts_tune_bucket(k, values, nvalues, bucket, sizeof bucket);
    fixed_bucket(k, fixed, nfixed, bucket, sizeof bucket);
    ts_tune_source_hash(u.src.text, u.src.len, hash);
    ts_tunedb *db = NULL;
    const char *warning = NULL;
    st = ts_tunedb_open(db_path, &db, &warning);
    if (warning)
      fprintf(stderr, "tessera: warning: %s\n", warning);
    if (!st)
      st = ts_tunedb_best(db, hash, kernel, bucket, device, config, size,
                          found);
    ts_tunedb_close(db);
  }
  ts_unit_deinit(&u);
  ts_diags_deinit(&d);
  free(text);
  return st;
}

void ts_tune_report_free(ts_tune_report *r) {
  free(r->results);
  r->results = NULL;
  r->count = 0;
}
