/* test_ops.c - each tile operation and language feature on the CPU
 * (tests/numerics/ops.tile) against a C reference: tails predicated in
 * every dim, gathers with invalid indices, reductions on each dim, every
 * gemm transpose, scalar control flow, atomics across blocks, the math
 * functions with NaN and Inf, conversions, and the cache of compiled CPU
 * code. */
#define _GNU_SOURCE
#include "tests/numerics/num.h"

#include <sys/stat.h>

#define OPS "tests/numerics/ops.tile"

static void test_copy_tail(void) {
  ts_kernel *k = num_kernel(OPS, "copy_tail", NULL, NULL);
  ts_kernel *k2 = num_kernel(OPS, "copy_tail", "BM=5", "BN=3");
  if (!k || !k2)
    return;
  static const int64_t shapes[][2] = {{1, 1}, {5, 9}, {4, 8}, {13, 31}};
  for (size_t s = 0; s < 4; s++) {
    uint64_t seed = s + 1;
    ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, shapes[s]);
    ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, shapes[s]);
    int64_t n = shapes[s][0] * shapes[s][1];
    double *xv = num_fill(x, -100, 100, &seed);
    for (int64_t i = 0; i < n; i++)
      xv[i] = num_round(TS_DTYPE_BF16, xv[i]); /* through a bf16 frag */
    ts_kernel *ks[2] = {k, k2};
    for (int v = 0; v < 2; v++) {
      ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
      num_launch(ks[v], a, 2);
      double *got = num_get(y);
      CHECK_ERR(num_relerr(got, xv, n), 0, "copy_tail");
      free(got);
    }
    free(xv);
    ts_tensor_release(x);
    ts_tensor_release(y);
  }
  ts_kernel_release(k);
  ts_kernel_release(k2);
}

static void test_gather(void) {
  ts_kernel *k = num_kernel(OPS, "gather_rows", NULL, NULL);
  if (!k)
    return;
  int64_t S = 11, D = 5, K = 6, skv[2] = {S, D}, so[2] = {K, D};
  uint64_t seed = 3;
  ts_tensor *kv = num_tensor(TS_DTYPE_F32, 2, skv);
  ts_tensor *idx = num_tensor(TS_DTYPE_I32, 1, &K);
  ts_tensor *out = num_tensor(TS_DTYPE_F32, 2, so);
  double *kvv = num_fill(kv, -1, 1, &seed);
  int32_t ids[6] = {10, 0, -1, 3, 11, 3};
  memcpy(ts_tensor_data(idx), ids, sizeof ids);
  ts_arg a[3] = {ts_arg_tensor(kv), ts_arg_tensor(idx), ts_arg_tensor(out)};
  num_launch(k, a, 3);
  double *got = num_get(out), want[30];
  for (int r = 0; r < 6; r++)
    for (int d = 0; d < 5; d++)
      want[r * 5 + d] = ids[r] >= 0 && ids[r] < S ? kvv[ids[r] * D + d] : 0.0;
  CHECK_ERR(num_relerr(got, want, 30), 0, "gather_rows");
  free(got);
  free(kvv);
  ts_tensor_release(kv);
  ts_tensor_release(idx);
  ts_tensor_release(out);
  ts_kernel_release(k);
}

static void test_reductions(void) {
  ts_kernel *k = num_kernel(OPS, "reductions", NULL, NULL);
  if (!k)
    return;
  int64_t M = 7, N = 13, sx[2] = {M, N};
  uint64_t seed = 5;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sx);
  ts_tensor *mx = num_tensor(TS_DTYPE_F32, 1, &M);
  ts_tensor *sm = num_tensor(TS_DTYPE_F32, 1, &N);
  ts_tensor *am = num_tensor(TS_DTYPE_F32, 1, &M);
  double *xv = num_fill(x, -10, 10, &seed);
  ((float *)ts_tensor_data(x))[2 * N + 3] = NAN; /* row 2 max is NaN */
  xv[2 * N + 3] = NAN;
  ts_arg a[4] = {ts_arg_tensor(x), ts_arg_tensor(mx), ts_arg_tensor(sm),
                 ts_arg_tensor(am)};
  num_launch(k, a, 4);
  double wmx[7], wsm[13], wam[7];
  for (int i = 0; i < M; i++) {
    wmx[i] = -INFINITY;
    wam[i] = 0;
    for (int j = 0; j < N; j++) {
      double v = xv[i * N + j];
      wmx[i] = isnan(v) || isnan(wmx[i]) ? NAN : fmax(wmx[i], v);
      wam[i] = isnan(v) || isnan(wam[i]) ? NAN : fmax(wam[i], fabs(v));
    }
  }
  for (int j = 0; j < N; j++) {
    wsm[j] = 0;
    for (int i = 0; i < M; i++)
      wsm[j] += xv[i * N + j];
  }
  double *g1 = num_get(mx), *g2 = num_get(sm), *g3 = num_get(am);
  CHECK(isnan(g1[2]) && isnan(g3[2])); /* NaN propagates through max */
  CHECK_ERR(num_relerr(g1, wmx, M), 0, "reduce_max");
  CHECK(isnan(g2[3]));
  CHECK_ERR(num_relerr(g2, wsm, N), 1e-6, "reduce_sum");
  CHECK_ERR(num_relerr(g3, wam, M), 0, "reduce_absmax");
  free(g1);
  free(g2);
  free(g3);
  free(xv);
  ts_tensor_release(x);
  ts_tensor_release(mx);
  ts_tensor_release(sm);
  ts_tensor_release(am);
  ts_kernel_release(k);
}

static void test_gemms(void) {
  ts_kernel *k = num_kernel(OPS, "gemms", NULL, NULL);
  if (!k)
    return;
  int64_t M = 5, N = 7, K = 3;
  int64_t sa[2] = {M, K}, sb[2] = {K, N}, sat[2] = {K, M}, sbt[2] = {N, K},
          sc[2] = {M, N};
  uint64_t seed = 11;
  ts_tensor *a = num_tensor(TS_DTYPE_F32, 2, sa), *b = num_tensor(TS_DTYPE_F32, 2, sb);
  ts_tensor *at = num_tensor(TS_DTYPE_F32, 2, sat), *bt = num_tensor(TS_DTYPE_F32, 2, sbt);
  ts_tensor *c[4];
  for (int i = 0; i < 4; i++)
    c[i] = num_tensor(TS_DTYPE_F32, 2, sc);
  double *av = num_fill(a, -2, 2, &seed), *bv = num_fill(b, -2, 2, &seed);
  double *atv = num_fill(at, -2, 2, &seed), *btv = num_fill(bt, -2, 2, &seed);
  ts_arg args[8] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(at),
                    ts_arg_tensor(bt), ts_arg_tensor(c[0]), ts_arg_tensor(c[1]),
                    ts_arg_tensor(c[2]), ts_arg_tensor(c[3])};
  num_launch(k, args, 8);
  double w[4][35];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s1 = 0, s2 = 0, s3 = 0, s4 = 1;
      for (int q = 0; q < K; q++) {
        s1 += av[i * K + q] * bv[q * N + j];
        s2 += atv[q * M + i] * bv[q * N + j];
        s3 += av[i * K + q] * btv[j * K + q];
        s4 += atv[q * M + i] * btv[j * K + q];
      }
      w[0][i * N + j] = s1;
      w[1][i * N + j] = s2;
      w[2][i * N + j] = s3;
      w[3][i * N + j] = s4;
    }
  const char *names[4] = {"gemm", "gemm trans_a", "gemm trans_b", "gemm both"};
  for (int v = 0; v < 4; v++) {
    double *g = num_get(c[v]);
    CHECK_ERR(num_relerr(g, w[v], M * N), 1e-6, names[v]);
    free(g);
    ts_tensor_release(c[v]);
  }
  free(av);
  free(bv);
  free(atv);
  free(btv);
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(at);
  ts_tensor_release(bt);
  ts_kernel_release(k);
}

/* gemm_nt_const at shapes that take each block of the CPU's transposed-B
 * micro-kernel (rows 1, 2, 4 by columns 1 to 16; K 8 to 64) and its
 * fallback (K % 8 != 0), accumulating and not, against f64; and, on the
 * CPU, the rows of c bit-equal whether computed 4 or 1 rows at a time and in
 * 32 or 5 columns (an element's sum must not depend on the block it sits
 * in; a GPU's gemm splits its threads' work by the tile's shape). */
static ts_tensor *nt_run(int64_t M, int64_t N, int64_t K, int acc, const double *av,
                         const double *bv) {
  char defs[64];
  snprintf(defs, sizeof defs, "TM=%lld TN=%lld TK=%lld ACC=%d", (long long)M,
           (long long)N, (long long)K, acc);
  ts_kernel *k = num_kernel(OPS, "gemm_nt_const", defs, NULL);
  int64_t sa[2] = {M, K}, sb[2] = {N, K}, sc[2] = {M, N};
  ts_tensor *a = num_tensor(TS_DTYPE_F32, 2, sa), *b = num_tensor(TS_DTYPE_F32, 2, sb);
  ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc);
  for (int64_t i = 0; i < M * K; i++)
    ts_tensor_set(a, i, av[i]);
  for (int64_t i = 0; i < N * K; i++)
    ts_tensor_set(b, i, bv[i]);
  if (k) {
    ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
    num_launch(k, args, 3);
    ts_kernel_release(k);
  }
  ts_tensor_release(a);
  ts_tensor_release(b);
  return c;
}

static void test_gemm_nt_blocks(void) {
  static const int64_t shapes[][3] = {{1, 32, 16}, {1, 3, 8}, {3, 5, 24}, {6, 10, 40},
                                      {4, 4, 64},  {8, 12, 8}, {2, 16, 16}, {4, 6, 12}};
  uint64_t seed = 5;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    int64_t sa[2] = {M, K}, sb[2] = {N, K};
    ts_tensor *ta = num_tensor(TS_DTYPE_F32, 2, sa), *tb = num_tensor(TS_DTYPE_F32, 2, sb);
    double *av = num_fill(ta, -2, 2, &seed), *bv = num_fill(tb, -2, 2, &seed);
    for (int acc = 0; acc < 2; acc++) {
      ts_tensor *c = nt_run(M, N, K, acc, av, bv);
      double *got = num_get(c), *want = malloc(sizeof(double) * (size_t)(M * N));
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          double d = acc ? 0.5 : 0;
          for (int64_t q = 0; q < K; q++)
            d += av[i * K + q] * bv[j * K + q];
          want[i * N + j] = d;
        }
      char what[64];
      snprintf(what, sizeof what, "gemm trans_b %lldx%lldx%lld acc %d", (long long)M,
               (long long)N, (long long)K, acc);
      CHECK_ERR(num_relerr(got, want, M * N), 1e-6, what);
      free(got);
      free(want);
      ts_tensor_release(c);
    }
    free(av);
    free(bv);
    ts_tensor_release(ta);
    ts_tensor_release(tb);
  }
  if (strcmp(ts_device_name(num_kdev), "cpu") != 0)
    return;
  /* the same element in blocks of other shapes: bit for bit */
  int64_t M = 4, N = 32, K = 48, sa[2] = {M, K}, sb[2] = {N, K};
  ts_tensor *ta = num_tensor(TS_DTYPE_F32, 2, sa), *tb = num_tensor(TS_DTYPE_F32, 2, sb);
  double *av = num_fill(ta, -2, 2, &seed), *bv = num_fill(tb, -2, 2, &seed);
  ts_tensor *whole = nt_run(M, N, K, 1, av, bv);
  double *w = num_get(whole);
  bool same = true;
  for (int64_t i = 0; i < M; i++) {
    ts_tensor *row = nt_run(1, N, K, 1, av + i * K, bv);
    ts_tensor *part = nt_run(1, 5, K, 1, av + i * K, bv + 3 * K);
    double *r = num_get(row), *p = num_get(part);
    for (int64_t j = 0; j < N; j++)
      same = same && r[j] == w[i * N + j];
    for (int64_t j = 0; j < 5; j++)
      same = same && p[j] == w[i * N + 3 + j];
    free(r);
    free(p);
    ts_tensor_release(row);
    ts_tensor_release(part);
  }
  CHECK(same);
  free(w);
  free(av);
  free(bv);
  ts_tensor_release(whole);
  ts_tensor_release(ta);
  ts_tensor_release(tb);
}

/* The cache of compiled CPU code, in a folder of its own: a first kernel
 * is compiled and stored as a shared object, a second of the same source
 * and params is loaded from it and computes the same bits, other params
 * are another entry, a damaged entry is compiled again (and replaced),
 * TESSERA_CPU_CACHE=0 neither reads nor writes; and the simulator's build
 * of the CUDA C is stored once. */
static int count_files(const char *dir, const char *pattern) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "ls %s/%s 2>/dev/null | wc -l", dir, pattern);
  FILE *f = popen(cmd, "r");
  int n = -1;
  if (f) {
    if (fscanf(f, "%d", &n) != 1)
      n = -1;
    pclose(f);
  }
  return n;
}

static ts_kernel *cache_kernel(ts_device *d, const char *defs, double *out) {
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  /* defs: "A=1" or "A=1 B=2" */
  ts_define def[2];
  char name[2][16], value[2][16];
  size_t nd = 0;
  for (const char *at = defs; at && nd < 2 && sscanf(at, "%15[^=]=%15s", name[nd], value[nd]) == 2;
       at = strchr(at, ' ') ? strchr(at, ' ') + 1 : NULL) {
    def[nd] = (ts_define){name[nd], value[nd]};
    nd++;
  }
  const char *root = getenv("TS_SOURCE_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root ? root : ".", OPS);
  ts_kernel *k = NULL;
  ts_status st = ts_kernel_create(d, path, "gemm_nt_const", def, nd, &diags, &k);
  ts_diags_deinit(&diags);
  CHECK(st == NULL);
  ts_status_free(st);
  if (!k)
    return NULL;
  int64_t sa[2] = {4, 8}, sb[2] = {4, 8}, sc[2] = {4, 4};
  ts_tensor *a, *b, *c;
  if (ts_tensor_create(d, TS_DTYPE_F32, 2, sa, &a) || ts_tensor_create(d, TS_DTYPE_F32, 2, sb, &b) ||
      ts_tensor_create(d, TS_DTYPE_F32, 2, sc, &c))
    exit(2);
  for (int i = 0; i < 32; i++) {
    ts_tensor_set(a, i, 0.25 * i - 3);
    ts_tensor_set(b, i, 1.0 / (i + 1));
  }
  ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
  CHECK(ts_kernel_launch(k, args, 3) == NULL);
  for (int i = 0; i < 16; i++)
    out[i] = ts_tensor_get(c, i);
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(c);
  return k;
}

static void test_cpu_cache(void) {
  if (strcmp(ts_device_name(num_kdev), "cpu") != 0)
    return;
  const char *old_cache = getenv("TESSERA_CACHE");
  char *saved = old_cache ? strdup(old_cache) : NULL;
  char dir[] = "/tmp/ts_cpu_cacheXXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  setenv("TESSERA_CACHE", dir, 1);
  unsetenv("TESSERA_CPU_CACHE");
  ts_device *d;
  CHECK(ts_device_create_cpu(1, &d) == NULL);
  double first[16], again[16], other[16], want[16];
  ts_kernel *k1 = cache_kernel(d, NULL, first);
  CHECK(k1 && !ts_kernel_cached(k1) && count_files(dir, "cpu-*/*[0-9a-f].so") == 1);
  ts_kernel *k2 = cache_kernel(d, NULL, again);
  CHECK(k2 && ts_kernel_cached(k2) && count_files(dir, "cpu-*/*[0-9a-f].so") == 1);
  CHECK(memcmp(first, again, sizeof first) == 0);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) {
      double s = 0.5;
      for (int q = 0; q < 8; q++)
        s += (0.25 * (i * 8 + q) - 3) * (1.0 / (j * 8 + q + 1));
      want[i * 4 + j] = s;
    }
  CHECK_ERR(num_relerr(again, want, 16), 1e-6, "a kernel from the cache");
  ts_kernel *k3 = cache_kernel(d, "ACC=0", other);
  CHECK(k3 && !ts_kernel_cached(k3) && count_files(dir, "cpu-*/*[0-9a-f].so") == 2);
  CHECK(other[0] == first[0] - 0.5);
  /* the key is the params' values: a default spelled out, or the same
   * values in another order or spelling, is the same entry */
  const char *same[4] = {"ACC=1", "TN=4 ACC=0", "ACC=0x0 TN=4", "ACC=0 TK=8"};
  for (int i = 0; i < 4; i++) {
    double o[16];
    ts_kernel *ki = cache_kernel(d, same[i], o);
    CHECK(ki && ts_kernel_cached(ki) && count_files(dir, "cpu-*/*[0-9a-f].so") == 2);
    CHECK(memcmp(o, i ? other : first, sizeof o) == 0);
    if (ki)
      ts_kernel_release(ki);
  }
  /* every entry damaged (replaced, as the cache itself replaces a file: a
   * loaded one is mapped), once no kernel holds it (the loader would hand
   * back the loaded one): compiled again, and the entries stored anew */
  ts_kernel_release(k1);
  ts_kernel_release(k2);
  ts_kernel_release(k3);
  k1 = k2 = k3 = NULL;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "for f in %s/cpu-*/*.so; do echo junk > $f.new && mv $f.new $f; done", dir);
  CHECK(system(cmd) == 0);
  ts_kernel *k4 = cache_kernel(d, NULL, again);
  CHECK(k4 && !ts_kernel_cached(k4) && memcmp(first, again, sizeof first) == 0);
  ts_kernel *k5 = cache_kernel(d, NULL, again);
  CHECK(k5 && ts_kernel_cached(k5) && memcmp(first, again, sizeof first) == 0);
  /* turned off: compiled, nothing stored */
  setenv("TESSERA_CPU_CACHE", "0", 1);
  ts_kernel *k6 = cache_kernel(d, "ACC=2", other);
  CHECK(k6 && !ts_kernel_cached(k6) && count_files(dir, "cpu-*/*[0-9a-f].so") == 2);
  unsetenv("TESSERA_CPU_CACHE");
  ts_kernel *ks[6] = {k1, k2, k3, k4, k5, k6};
  for (int i = 0; i < 6; i++)
    if (ks[i])
      ts_kernel_release(ks[i]);
  ts_device_release(d);
  /* the simulator's build of the CUDA C lowering: stored once, then loaded */
  const char *old_lowering = getenv("TESSERA_GPU_LOWERING");
  char *saved_lowering = old_lowering ? strdup(old_lowering) : NULL;
  setenv("TESSERA_GPU_LOWERING", "cuda", 1);
  CHECK(ts_device_create_gpusim(&d) == NULL);
  ts_kernel *s1 = cache_kernel(d, NULL, again);
  CHECK(s1 && count_files(dir, "cpu-*/*.sim.so") == 1);
  CHECK_ERR(num_relerr(again, want, 16), 1e-6, "the simulated CUDA C, built");
  ts_kernel *s2 = cache_kernel(d, NULL, other);
  CHECK(s2 && count_files(dir, "cpu-*/*.sim.so") == 1 && memcmp(again, other, sizeof again) == 0);
  if (s1)
    ts_kernel_release(s1);
  if (s2)
    ts_kernel_release(s2);
  /* a C++ compiler that fails: its exit status and standard error are in
   * the error; one that cannot be started says so */
  char script[400];
  snprintf(script, sizeof script, "%s/failing-cxx", dir);
  FILE *f = fopen(script, "w");
  CHECK(f != NULL);
  if (f) {
    fputs("#!/bin/sh\necho 'boom: no such header' >&2\nexit 3\n", f);
    fclose(f);
    chmod(script, 0755);
  }
  const char *old_cxx = getenv("CXX");
  char *saved_cxx = old_cxx ? strdup(old_cxx) : NULL;
  setenv("TESSERA_CPU_CACHE", "0", 1);
  const char *cxxs[2] = {script, "/nonexistent/c++"};
  const char *says[2] = {"(exit 3): boom: no such header", "not run"};
  for (int i = 0; i < 2; i++) {
    setenv("CXX", cxxs[i], 1);
    ts_diags dg;
    ts_diags_init(&dg, ts_allocator_system());
    const char *root = getenv("TS_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root ? root : ".", OPS);
    ts_kernel *kx = NULL;
    ts_status sx = ts_kernel_create(d, path, "gemm_nt_const", NULL, 0, &dg, &kx);
    CHECK(sx && !kx && strstr(ts_status_message(sx), says[i]));
    if (sx && !strstr(ts_status_message(sx), says[i]))
      fprintf(stderr, "got: %s\n", ts_status_message(sx));
    ts_status_free(sx);
    ts_diags_deinit(&dg);
  }
  unsetenv("TESSERA_CPU_CACHE");
  if (saved_cxx) {
    setenv("CXX", saved_cxx, 1);
    free(saved_cxx);
  } else {
    unsetenv("CXX");
  }
  ts_device_release(d);
  if (saved_lowering) {
    setenv("TESSERA_GPU_LOWERING", saved_lowering, 1);
    free(saved_lowering);
  } else {
    unsetenv("TESSERA_GPU_LOWERING");
  }
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  if (saved) {
    setenv("TESSERA_CACHE", saved, 1);
    free(saved);
  } else {
    unsetenv("TESSERA_CACHE");
  }
}

static int64_t collatz(int64_t v) {
  int64_t steps = 0;
  for (int i = 0; i < 1000; i++) {
    if (v == 1)
      break;
    if (v % 2 == 0) {
      v /= 2;
      continue;
    }
    v = 3 * v + 1;
    steps++;
  }
  return steps;
}

static void test_control(void) {
  ts_kernel *k = num_kernel(OPS, "control", NULL, NULL);
  if (!k)
    return;
  int64_t N = 9, so[2] = {N, 4};
  int32_t xs[9] = {1, 2, 3, 7, 27, 100, -5, 0, 11};
  ts_tensor *x = num_tensor(TS_DTYPE_I32, 1, &N);
  ts_tensor *out = num_tensor(TS_DTYPE_I64, 2, so);
  memcpy(ts_tensor_data(x), xs, sizeof xs);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(out)};
  num_launch(k, a, 2);
  const int64_t *o = ts_tensor_data(out);
  int bad = 0;
  for (int i = 0; i < N; i++) {
    int64_t v = xs[i], odd = 0;
    for (int64_t q = 0; q < v; q++) {
      if (q % 2 == 0)
        continue;
      if (q > 50)
        break;
      odd += q;
    }
    int64_t sel = v > 10 ? (v + 2) / 3 : (v < -v ? v : -v);
    int64_t w[4] = {collatz(v > 1 ? v : 1), odd,
                    sel + (((int64_t)((uint64_t)v << 2) ^ 4) | 1),
                    (int64_t)((int32_t)(uint32_t)(v * 1000000007) >> 3)};
    for (int j = 0; j < 4; j++)
      if (o[i * 4 + j] != w[j]) {
        fprintf(stderr, "control x=%lld [%d]: got %lld want %lld\n",
                (long long)v, j, (long long)o[i * 4 + j], (long long)w[j]);
        bad++;
      }
  }
  CHECK(bad == 0);
  ts_tensor_release(x);
  ts_tensor_release(out);
  ts_kernel_release(k);
}

static void test_histogram(void) {
  ts_kernel *k = num_kernel(OPS, "histogram", NULL, NULL);
  if (!k)
    return;
  int64_t N = 100003, H = 16;
  uint64_t seed = 17;
  ts_tensor *x = num_tensor(TS_DTYPE_I32, 1, &N);
  ts_tensor *counts = num_tensor(TS_DTYPE_I32, 1, &H);
  double *xv = num_fill(x, 0, 1000, &seed);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(counts)};
  num_launch(k, a, 2);
  int want[16] = {0};
  for (int64_t i = 0; i < N; i++)
    want[(int)xv[i] & 15]++;
  const int32_t *c = ts_tensor_data(counts);
  int bad = 0;
  for (int i = 0; i < 16; i++)
    bad += c[i] != want[i];
  CHECK(bad == 0);
  free(xv);
  ts_tensor_release(x);
  ts_tensor_release(counts);
  ts_kernel_release(k);
}

static double ref_math(int f, double v) {
  switch (f) {
  case 0: return expf((float)v);
  case 1: return exp2f((float)v);
  case 2: return logf((float)v);
  case 3: return log2f((float)v);
  case 4: return sqrtf((float)v);
  case 5: return 1.0 / sqrt(v);
  case 6: return tanh(v);
  case 7: return 1.0 / (1.0 + exp(-v));
  case 8: return v > 20 ? v : log1p(exp(v));
  case 9: return v / (1.0 + exp(-v));
  case 10: return isnan(v) ? NAN : fmax(v, 0);
  case 11: return fabs(v);
  case 12: return isnan(v) ? NAN : fmax(v, 0.5);
  case 13: return isnan(v) ? NAN : fmin(v, 0.5);
  case 14: return pow(fabs(v), 1.5);
  default: return floor(v) + ceil(v) * 0.5 + sin(v) + cos(v);
  }
}

static void test_math(void) {
  ts_kernel *k = num_kernel(OPS, "math", NULL, NULL);
  if (!k)
    return;
  float xs[] = {0.5f, 1.0f, 2.75f, 0.01f, 30.0f, -0.0f, -3.5f,
                INFINITY, -INFINITY, NAN};
  int64_t N = sizeof xs / sizeof xs[0], sy[2] = {N, 16};
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 1, &N);
  ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, sy);
  memcpy(ts_tensor_data(x), xs, sizeof xs);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  num_launch(k, a, 2);
  const float *o = ts_tensor_data(y);
  int bad = 0;
  for (int i = 0; i < N; i++)
    for (int f = 0; f < 16; f++) {
      double want = ref_math(f, xs[i]), got = o[i * 16 + f];
      bool ok;
      if (isnan(want))
        ok = isnan(got);
      else if (isinf(want))
        ok = got == want;
      else
        ok = fabs(got - want) <= 2e-6 * fmax(1.0, fabs(want));
      if (!ok) {
        fprintf(stderr, "math f%d(%g): got %.9g want %.9g\n", f, xs[i], got,
                want);
        bad++;
      }
    }
  CHECK(bad == 0);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_kernel_release(k);
}

/* atomic_max from blocks running at once on the pool; an index out of range
 * changes nothing. */
static void test_max_all(void) {
  ts_kernel *k = num_kernel(OPS, "max_all", NULL, NULL);
  if (!k)
    return;
  int64_t N = 10007, two = 2;
  uint64_t seed = 23;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 1, &N), *hi = num_tensor(TS_DTYPE_F32, 1, &two);
  double *xv = num_fill(x, -1000, 1000, &seed);
  ts_tensor_set(hi, 0, -1e30);
  ts_tensor_set(hi, 1, 7.0);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(hi)};
  num_launch(k, a, 2);
  double mx = -INFINITY;
  for (int64_t i = 0; i < N; i++)
    mx = fmax(mx, xv[i]);
  CHECK(ts_tensor_get(hi, 0) == (float)mx);
  CHECK(ts_tensor_get(hi, 1) == 7.0);
  free(xv);
  ts_tensor_release(x);
  ts_tensor_release(hi);
  ts_kernel_release(k);
}

/* bf16 and f16 atomics (ops.tile narrow_atomics) from blocks running at
 * once: sums and a counter exact in any order (a lost update shows), the
 * maximum, one rounded add a slot with its old value, a block's shared
 * tile, and indices out of range (-0.0 stays -0.0, the result is 0). */
static void test_narrow_atomics(void) {
  ts_kernel *k = num_kernel(OPS, "narrow_atomics", NULL, NULL);
  if (!k)
    return;
  enum { N = 250, B = 16, NB = (N + B - 1) / B };
  int64_t n = N, three = 3, one = 1, so[2] = {N, 6}, ss[2] = {NB, 4};
  uint64_t seed = 31;
  ts_tensor *v = num_tensor(TS_DTYPE_F32, 1, &n);
  ts_tensor *ab = num_tensor(TS_DTYPE_BF16, 1, &three), *ah = num_tensor(TS_DTYPE_F16, 1, &three);
  ts_tensor *rb = num_tensor(TS_DTYPE_BF16, 1, &n), *rh = num_tensor(TS_DTYPE_F16, 1, &n);
  ts_tensor *old = num_tensor(TS_DTYPE_F32, 2, so), *sb = num_tensor(TS_DTYPE_BF16, 2, ss);
  ts_tensor *z = num_tensor(TS_DTYPE_BF16, 1, &one), *zf = num_tensor(TS_DTYPE_F32, 1, &one);
  double *vv = num_fill(v, -300, 300, &seed);
  double *r0 = num_fill(rb, -50, 50, &seed), *h0 = num_fill(rh, -50, 50, &seed);
  uint16_t *abb = ts_tensor_data(ab), *ahb = ts_tensor_data(ah);
  uint16_t *rbb = ts_tensor_data(rb), *rhb = ts_tensor_data(rh);
  uint16_t r0b[N], h0b[N];
  memcpy(r0b, rbb, sizeof r0b);
  memcpy(h0b, rhb, sizeof h0b);
  for (int i = 0; i < 3; i++) {
    abb[i] = ts_f32_to_bf16(i == 2 ? -1e30f : 0.0f);
    ahb[i] = ts_f32_to_f16(i == 2 ? -60000.0f : 0.0f);
  }
  *(uint16_t *)ts_tensor_data(z) = 0x8000;
  *(uint32_t *)ts_tensor_data(zf) = 0x80000000u;
  ts_arg a[9] = {ts_arg_tensor(v),  ts_arg_tensor(ab), ts_arg_tensor(ah),
                 ts_arg_tensor(rb), ts_arg_tensor(rh), ts_arg_tensor(old),
                 ts_arg_tensor(sb), ts_arg_tensor(z),  ts_arg_tensor(zf)};
  num_launch(k, a, 9);
  double sum = 0, mx = -INFINITY;
  for (int e = 0; e < N; e++) {
    sum += e % 3;
    mx = fmax(mx, vv[e]);
  }
  CHECK(ts_bf16_to_f32(abb[0]) == sum && ts_f16_to_f32(ahb[0]) == sum);
  CHECK(ts_bf16_to_f32(abb[1]) == N && ts_f16_to_f32(ahb[1]) == N);
  CHECK(abb[2] == ts_f32_to_bf16((float)mx) && ahb[2] == ts_f32_to_f16((float)mx));
  const float *ov = ts_tensor_data(old);
  const uint16_t *sbb = ts_tensor_data(sb);
  bool seen[2][N] = {{false}};
  int bad = 0;
  for (int e = 0; e < N; e++) {
    for (int c = 0; c < 2; c++) { /* the counters' old values: 0 .. N - 1, once each */
      float o = ov[e * 6 + c];
      int at = (int)o;
      if (o != (float)at || at < 0 || at >= N || seen[c][at])
        bad++;
      else
        seen[c][at] = true;
    }
    float x = (float)vv[e];
    bad += rbb[e] != ts_f32_to_bf16(ts_bf16_to_f32(r0b[e]) + x);
    bad += rhb[e] != ts_f32_to_f16(ts_f16_to_f32(h0b[e]) + x);
    bad += ov[e * 6 + 2] != ts_bf16_to_f32(r0b[e]) || ov[e * 6 + 3] != ts_f16_to_f32(h0b[e]);
    bad += ov[e * 6 + 4] != 0.0f || ov[e * 6 + 5] != 0.0f;
  }
  for (int blk = 0; blk < NB; blk++)
    for (int j = 0; j < 4; j++) {
      int want = 0;
      for (int i = j; i < B; i += 4)
        want += blk * B + i < N;
      bad += ts_bf16_to_f32(sbb[blk * 4 + j]) != (float)want;
    }
  CHECK(bad == 0);
  CHECK(*(uint16_t *)ts_tensor_data(z) == 0x8000);
  CHECK(*(uint32_t *)ts_tensor_data(zf) == 0x80000000u);
  if (bad)
    fprintf(stderr, "narrow_atomics: %d wrong\n", bad);
  free(vv);
  free(r0);
  free(h0);
  ts_tensor *ts[] = {v, ab, ah, rb, rh, old, sb, z, zf};
  for (size_t i = 0; i < TS_ARRAY_COUNT(ts); i++)
    ts_tensor_release(ts[i]);
  ts_kernel_release(k);
}

static void test_casts(void) {
  ts_kernel *k = num_kernel(OPS, "casts", NULL, NULL);
  if (!k)
    return;
  enum { N = 4096 };
  static float xs[N];
  uint64_t s = 1;
  const float special[] = {0.0f, -0.0f, 1.0f, INFINITY, -INFINITY, NAN,
                           65504.0f, 65520.0f, 448.0f, 464.0f, 1e-8f, 3e-5f,
                           0.0019531f, 1.00390625f, 1.01171875f, -2.5f};
  for (int i = 0; i < N; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t bits = (uint32_t)(s >> 32);
    memcpy(&xs[i], &bits, 4);
    if (i % 3 == 0) /* values in range of the narrow formats */
      xs[i] = (float)((double)(int32_t)bits / 2147483648.0 * 600.0);
  }
  memcpy(xs, special, sizeof special);
  /* every e4m3 rounding boundary, a hair either side and both signs */
  int at = (int)TS_ARRAY_COUNT(special);
  for (int c = 0; c < 0x7e; c++) {
    float mid = (ts_e4m3_to_f32((uint8_t)c) + ts_e4m3_to_f32((uint8_t)(c + 1))) / 2;
    float cand[3] = {mid, nextafterf(mid, 0), nextafterf(mid, 1000)};
    for (int i = 0; i < 3; i++) {
      xs[at++] = cand[i];
      xs[at++] = -cand[i];
    }
  }
  int64_t n = N, sr[2] = {N, 3};
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 1, &n);
  ts_tensor *b = num_tensor(TS_DTYPE_BF16, 1, &n);
  ts_tensor *h = num_tensor(TS_DTYPE_F16, 1, &n);
  ts_tensor *q = num_tensor(TS_DTYPE_FP8E4M3, 1, &n);
  ts_tensor *r = num_tensor(TS_DTYPE_F32, 2, sr);
  memcpy(ts_tensor_data(x), xs, sizeof xs);
  ts_arg a[5] = {ts_arg_tensor(x), ts_arg_tensor(b), ts_arg_tensor(h),
                 ts_arg_tensor(q), ts_arg_tensor(r)};
  num_launch(k, a, 5);
  const uint16_t *bb = ts_tensor_data(b), *hb = ts_tensor_data(h);
  const uint8_t *qb = ts_tensor_data(q);
  const float *rv = ts_tensor_data(r);
  int bad = 0;
  for (int i = 0; i < N; i++) {
    uint16_t wb = ts_f32_to_bf16(xs[i]), wh = ts_f32_to_f16(xs[i]);
    uint8_t wq = ts_f32_to_e4m3(xs[i]);
    bool nan = isnan(xs[i]);
    float rb = ts_bf16_to_f32(wb), rh = ts_f16_to_f32(wh), rq = ts_e4m3_to_f32(wq);
    bool ok = (nan ? (bb[i] & 0x7fff) > 0x7f80 : bb[i] == wb) &&
              (nan ? (hb[i] & 0x7fff) > 0x7c00 : hb[i] == wh) &&
              (nan ? (qb[i] & 0x7f) == 0x7f : qb[i] == wq) &&
              (nan ? isnan(rv[i * 3]) && isnan(rv[i * 3 + 1]) && isnan(rv[i * 3 + 2])
                   : (rv[i * 3] == rb && rv[i * 3 + 1] == rh && rv[i * 3 + 2] == rq));
    if (!ok && bad++ < 10)
      fprintf(stderr, "cast %.9g: bf16 %04x/%04x f16 %04x/%04x e4m3 %02x/%02x\n",
              xs[i], bb[i], wb, hb[i], wh, qb[i], wq);
  }
  CHECK(bad == 0);
  ts_tensor_release(x);
  ts_tensor_release(b);
  ts_tensor_release(h);
  ts_tensor_release(q);
  ts_tensor_release(r);
  ts_kernel_release(k);
}

/* Launch checks: wrong count, kind, dtype, rank, and dims that disagree
 * are errors naming the argument; nothing runs. */
static void test_launch_checks(void) {
  ts_kernel *k = num_kernel("kernels/softmax.tile", "softmax_rows", NULL, NULL);
  if (!k)
    return;
  int64_t s1[2] = {3, 5}, s2[2] = {3, 6}, s3[1] = {15};
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, s1);
  ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, s2);
  ts_tensor *z = num_tensor(TS_DTYPE_BF16, 2, s1);
  ts_tensor *w = num_tensor(TS_DTYPE_F32, 1, s3);
  struct {
    ts_arg a[3];
    size_t n;
    const char *msg;
  } cases[] = {
      {{ts_arg_tensor(x)}, 1, "takes 2 arguments, given 1"},
      {{ts_arg_tensor(x), ts_arg_float(1)}, 2, "is a tensor, given a scalar"},
      {{ts_arg_tensor(x), ts_arg_tensor(z)}, 2, "must be f32, given bf16"},
      {{ts_arg_tensor(x), ts_arg_tensor(w)}, 2, "has 1 dims, the kernel expects 2"},
      {{ts_arg_tensor(x), ts_arg_tensor(y)}, 2,
       "argument 2 ('y') of 'softmax_rows': dim 1 is 6, but 'N' is 5 from "
       "argument 'x'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ts_status st = ts_kernel_launch(k, cases[i].a, cases[i].n);
    bool ok = ts_status_code(st) == TS_ERR_INVALID &&
              strstr(ts_status_message(st), cases[i].msg);
    if (!ok)
      fprintf(stderr, "launch check %zu: %s\n", i, ts_status_message(st));
    CHECK(ok);
    ts_status_free(st);
  }
  /* a view of rows runs; a strided view is refused */
  int64_t s4[2] = {6, 5};
  ts_tensor *big = num_tensor(TS_DTYPE_F32, 2, s4), *rows, *cols;
  float *bd = ts_tensor_data(big);
  for (int i = 0; i < 30; i++)
    bd[i] = (float)(i % 5);
  CHECK(ts_tensor_slice(big, 0, 2, 3, &rows) == NULL);
  ts_arg ok[2] = {ts_arg_tensor(rows), ts_arg_tensor(x)};
  num_launch(k, ok, 2);
  const float *xo = ts_tensor_data(x);
  double e = exp(4.0), sum = 1 + exp(1) + exp(2) + exp(3) + e;
  CHECK(fabs(xo[4] - e / sum) < 1e-6 && fabs(xo[14] - e / sum) < 1e-6);
  CHECK(ts_tensor_slice(big, 1, 0, 4, &cols) == NULL);
  int64_t s5[2] = {6, 4};
  ts_tensor *o5 = num_tensor(TS_DTYPE_F32, 2, s5);
  ts_arg strided[2] = {ts_arg_tensor(cols), ts_arg_tensor(o5)};
  ts_status st = ts_kernel_launch(k, strided, 2);
  CHECK(ts_status_code(st) == TS_ERR_UNSUPPORTED &&
        strstr(ts_status_message(st), "strided view"));
  ts_status_free(st);
  ts_tensor_release(o5);
  ts_tensor_release(cols);
  ts_tensor_release(rows);
  ts_tensor_release(big);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_tensor_release(z);
  ts_tensor_release(w);
  ts_kernel_release(k);
}

int main(void) {
  num_init();
  test_copy_tail();
  test_gather();
  test_reductions();
  test_gemms();
  test_gemm_nt_blocks();
  test_cpu_cache();
  test_control();
  test_histogram();
  test_max_all();
  test_narrow_atomics();
  test_math();
  test_casts();
  test_launch_checks();
  num_finish();
  return ts_test_finish();
}
