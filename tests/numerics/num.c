/* num.c - see num.h. */
#include "tests/numerics/num.h"

#include <unistd.h>

ts_device *num_dev, *num_kdev;

/* TS_TEST_DEVICE=gpusim runs every kernel in its GPU form on the
 * simulator (runtime/gpusim.c); =cuda on the GPU, or says "skipped: no GPU"
 * and passes without one; the default is the CPU device. */
void num_init(void) {
  const char *dev = getenv("TS_TEST_DEVICE");
  ts_status st;
  if (dev && !strcmp(dev, "cuda")) {
    st = ts_device_create_cuda(0, &num_kdev);
    if (st && ts_status_code(st) == TS_ERR_UNSUPPORTED) {
      printf("skipped: %s\n", ts_status_message(st));
      ts_status_free(st);
      exit(0);
    }
    if (!st)
      st = ts_device_create_cpu(0, &num_dev);
  } else {
    st = dev && !strcmp(dev, "gpusim") ? ts_device_create_gpusim(&num_dev)
                                       : ts_device_create_cpu(0, &num_dev);
    if (!st)
      num_kdev = ts_device_retain(num_dev);
  }
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(2);
  }
}

bool num_want(const char *name) {
  const char *only = getenv("TS_NUM_ONLY");
  size_t n = strlen(name);
  if (!only || !*only)
    return true;
  for (const char *p = only; *p;) {
    size_t len = strcspn(p, ",");
    if (len == n && !strncmp(p, name, n))
      return true;
    p += len + (p[len] == ',');
  }
  return false;
}

void num_want_known(const char *const *names, size_t n) {
  const char *only = getenv("TS_NUM_ONLY");
  for (const char *p = only ? only : ""; *p;) {
    size_t len = strcspn(p, ",");
    bool known = false;
    for (size_t i = 0; i < n && !known; i++)
      known = strlen(names[i]) == len && !strncmp(p, names[i], len);
    if (!known)
      fprintf(stderr, "TS_NUM_ONLY: this suite has no group '%.*s'\n", (int)len, p);
    CHECK(known);
    p += len + (p[len] == ',');
  }
}

void num_finish(void) {
  ts_device_release(num_kdev);
  ts_device_release(num_dev);
}

ts_kernel *num_kernel(const char *rel, const char *name, const char *def0,
                      const char *def1) {
  const char *root = getenv("TS_SOURCE_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
  /* each of def0, def1 holds one or more space-separated NAME=VALUE */
  char buf[2][256];
  ts_define defs[16];
  size_t nd = 0;
  const char *d[2] = {def0, def1};
  for (int i = 0; i < 2; i++) {
    if (!d[i])
      continue;
    snprintf(buf[i], sizeof buf[i], "%s", d[i]);
    for (char *tok = strtok(buf[i], " "); tok && nd < 16; tok = strtok(NULL, " ")) {
      char *eq = strchr(tok, '=');
      if (!eq)
        continue;
      *eq = 0;
      defs[nd].name = tok;
      defs[nd].value = eq + 1;
      nd++;
    }
  }
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  ts_kernel *k = NULL;
  ts_status st = ts_kernel_create(num_kdev, path, name, defs, nd, &diags, &k);
  if (st) {
    ts_diags_render(&diags, stderr, (ts_render_options){false, true});
    fprintf(stderr, "%s %s: %s\n", rel, name, ts_status_message(st));
    ts_status_free(st);
    k = NULL;
  }
  ts_diags_deinit(&diags);
  CHECK(k != NULL);
  return k;
}

ts_tensor *num_tensor(ts_dtype dt, uint32_t rank, const int64_t *shape) {
  ts_tensor *t = NULL;
  ts_status st = ts_tensor_create(num_dev, dt, rank, shape, &t);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(2);
  }
  return t;
}

static double rnd(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) / 9007199254740992.0;
}

double num_round(ts_dtype dt, double v) {
  switch (dt) {
  case TS_DTYPE_F32: return (float)v;
  case TS_DTYPE_BF16: return ts_bf16_to_f32(ts_f32_to_bf16((float)v));
  case TS_DTYPE_F16: return ts_f16_to_f32(ts_f32_to_f16((float)v));
  case TS_DTYPE_FP8E4M3: return ts_e4m3_to_f32(ts_f32_to_e4m3((float)v));
  default: return v;
  }
}

double *num_fill(ts_tensor *t, double lo, double hi, uint64_t *seed) {
  int64_t n = ts_tensor_count(t);
  double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  for (int64_t i = 0; i < n; i++) {
    double x = lo + (hi - lo) * rnd(seed);
    if (ts_dtype_is_int(ts_tensor_dtype(t)))
      x = floor(x);
    ts_tensor_set(t, i, x);
    v[i] = ts_tensor_get(t, i);
  }
  return v;
}

double num_tf32(double x) { return ts_f32_tf32((float)x); }

bool num_real_gpu(void) {
  const char *dev = getenv("TS_TEST_DEVICE");
  return dev && !strcmp(dev, "cuda");
}

double *num_fill_tf32(ts_tensor *t, double lo, double hi, uint64_t *seed) {
  double *v = num_fill(t, lo, hi, seed);
  for (int64_t i = 0; num_real_gpu() && i < ts_tensor_count(t); i++) {
    v[i] = num_tf32(v[i]);
    ts_tensor_set(t, i, v[i]);
  }
  return v;
}

double *num_get(ts_tensor *t) {
  int64_t n = ts_tensor_count(t);
  double *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
  for (int64_t i = 0; i < n; i++)
    v[i] = ts_tensor_get(t, i);
  return v;
}

double num_relerr(const double *got, const double *want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = got[i] - want[i];
    if (isnan(got[i]) != isnan(want[i]))
      return INFINITY;
    if (isnan(want[i]))
      continue;
    num += d * d;
    den += want[i] * want[i];
  }
  return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1.0);
}

/* On a GPU: the tensors copied over, launched, and copied back. A tensor
 * that cannot be copied (a strided view) is passed as it is, for the
 * launch's own checks to refuse. */
static ts_status launch_staged(ts_kernel *k, const ts_arg *args, size_t n) {
  ts_arg dev[64] = {{0}};
  ts_tensor *copy[64] = {0};
  if (n > 64)
    return ts_status_make(TS_ERR_INVALID, "too many arguments");
  for (size_t i = 0; i < n; i++) {
    dev[i] = args[i];
    if (args[i].kind != TS_ARG_TENSOR || !args[i].tensor)
      continue;
    ts_status st = ts_tensor_copy(args[i].tensor, num_kdev, &copy[i]);
    if (st)
      ts_status_free(st);
    else
      dev[i].tensor = copy[i];
  }
  ts_status st = ts_kernel_launch(k, dev, n);
  for (size_t i = 0; i < n; i++)
    if (copy[i]) {
      if (!st)
        st = ts_tensor_read(copy[i], ts_tensor_data(args[i].tensor),
                            ts_tensor_size(args[i].tensor));
      ts_tensor_release(copy[i]);
    }
  return st;
}

bool num_launch(ts_kernel *k, const ts_arg *args, size_t n) {
  ts_status st = ts_device_is_host(num_kdev) ? ts_kernel_launch(k, args, n)
                                             : launch_staged(k, args, n);
  if (st)
    fprintf(stderr, "launch: %s\n", ts_status_message(st));
  CHECK(st == NULL);
  ts_status_free(st);
  return true;
}

ts_safetensors *num_golden_open(const char *file) {
  const char *root = getenv("TS_SOURCE_DIR");
  char p[1024];
  snprintf(p, sizeof p, "%s/../shared/golden/tiny/%s", root ? root : ".", file);
  if (access(p, R_OK) != 0) {
    printf("skipped: %s is not present\n", p);
    return NULL;
  }
  ts_safetensors *f = NULL;
  ts_status st = ts_safetensors_open(p, &f);
  if (st)
    fprintf(stderr, "%s\n", ts_status_message(st));
  CHECK(st == NULL);
  ts_status_free(st);
  return f;
}

/* A golden tensor as a Tessera tensor of the same dtype and shape. */
ts_tensor *num_golden_tensor(ts_safetensors *f, const char *name) {
  const ts_st_tensor *g = ts_safetensors_find(f, name);
  CHECK(g != NULL);
  if (!g) {
    fprintf(stderr, "golden tensor '%s' missing\n", name);
    return NULL;
  }
  ts_tensor *t = num_tensor(g->dtype, g->rank, g->shape);
  memcpy(ts_tensor_data(t), g->data, g->size);
  return t;
}
