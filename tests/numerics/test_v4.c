/* test_v4.c - the V4 kernels (quant.tile, hadamard.tile) on the CPU:
 * against the C references of tests/ref on odd shapes and edge cases (bit
 * for bit for the quantisation simulations), and against the tensors
 * DeepSeek's own reference code computed (../shared/golden, when present):
 * the simulations must match bit for bit. */
#include "tests/numerics/num.h"
#include "tests/ref/v4_ref.h"
#include "tests/numerics/test_v4_mhc.h"

#include <unistd.h>

/* Runs a [T, D] bf16 -> bf16 kernel on `in` (bf16 bits) into `out`. */
static void run_bf16(ts_kernel *k, const uint16_t *in, uint16_t *out,
                     int64_t T, int64_t D) {
  int64_t sh[2] = {T, D};
  ts_tensor *x = num_tensor(TS_DTYPE_BF16, 2, sh);
  ts_tensor *y = num_tensor(TS_DTYPE_BF16, 2, sh);
  memcpy(ts_tensor_data(x), in, (size_t)(T * D) * 2);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  num_launch(k, a, 2);
  memcpy(out, ts_tensor_data(y), (size_t)(T * D) * 2);
  ts_tensor_release(x);
  ts_tensor_release(y);
}

/* Compares bf16 results bit for bit; reports the first differences. */
static int64_t bits_differ(const uint16_t *got, const uint16_t *want,
                           int64_t n, const char *what) {
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    if (got[i] != want[i] && bad++ < 3)
      fprintf(stderr, "%s[%lld]: %04x, want %04x (%g vs %g)\n", what,
              (long long)i, got[i], want[i], ts_bf16_to_f32(got[i]),
              ts_bf16_to_f32(want[i]));
  return bad;
}

static void test_sim_random(ts_kernel *k, bool fp8) {
  static const int64_t shapes[][2] = {{1, 64}, {3, 448}, {7, 512}, {2, 100},
                                      {5, 32}, {1, 1}};
  uint64_t s = fp8 ? 5 : 6;
  for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
    int64_t T = shapes[c][0], D = shapes[c][1], n = T * D;
    uint16_t *in = malloc(n * 2), *out = malloc(n * 2), *want = malloc(n * 2);
    float *ref = malloc(n * sizeof *ref);
    for (int64_t i = 0; i < n; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      double u = (double)(s >> 11) / 9007199254740992.0;
      /* blocks of very different magnitudes, zeros and tiny values */
      double mag = pow(10.0, (double)((i / 32) % 9) - 6);
      double v = (u - 0.5) * mag;
      if ((i * 7) % 97 == 0)
        v = 0;
      in[i] = ts_f32_to_bf16((float)v);
      ref[i] = ts_bf16_to_f32(in[i]);
    }
    if (c == 0)
      for (int64_t i = 0; i < n; i++) /* an all-zero block */
        ref[i] = ts_bf16_to_f32(in[i] = 0);
    run_bf16(k, in, out, T, D);
    if (fp8)
      ref_fp8_sim(ref, T, D, 64);
    else
      ref_fp4_sim(ref, T, D, 32);
    for (int64_t i = 0; i < n; i++)
      want[i] = ts_f32_to_bf16(ref[i]);
    char what[64];
    snprintf(what, sizeof what, "%s %lldx%lld", fp8 ? "fp8_sim" : "fp4_sim",
             (long long)T, (long long)D);
    CHECK(bits_differ(out, want, n, what) == 0);
    free(in);
    free(out);
    free(want);
    free(ref);
  }
}

static void test_hadamard_random(ts_kernel *k, ts_kernel *kf) {
  int64_t T = 5, n = T * 128, sh[2] = {T, 128};
  uint64_t seed = 9;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sh), *y = num_tensor(TS_DTYPE_F32, 2, sh);
  double *xv = num_fill(x, -3, 3, &seed), *want = malloc(n * sizeof *want);
  ref_hadamard(xv, want, T, 128);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  num_launch(kf, a, 2);
  double *got = num_get(y);
  CHECK_ERR(num_relerr(got, want, n), 1e-6, "hadamard XT=f32");
  free(got);
  ts_tensor *xb = num_tensor(TS_DTYPE_BF16, 2, sh), *yb = num_tensor(TS_DTYPE_BF16, 2, sh);
  double *xbv = num_fill(xb, -3, 3, &seed);
  ref_hadamard(xbv, want, T, 128);
  ts_arg ab[2] = {ts_arg_tensor(xb), ts_arg_tensor(yb)};
  num_launch(k, ab, 2);
  got = num_get(yb);
  CHECK_ERR(num_relerr(got, want, n), 5e-3, "hadamard bf16");
  free(got);
  free(xv);
  free(xbv);
  free(want);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_tensor_release(xb);
  ts_tensor_release(yb);
}

/* ---- golden tensors ------------------------------------------------------------ */

/* x and y of one recorded call, as [rows, last dim] bf16. */
static void golden_bf16(ts_safetensors *f, ts_kernel *k, const char *prefix) {
  char nx[128], ny[128];
  snprintf(nx, sizeof nx, "%s.x", prefix);
  snprintf(ny, sizeof ny, "%s.y", prefix);
  const ts_st_tensor *x = ts_safetensors_find(f, nx), *y = ts_safetensors_find(f, ny);
  CHECK(x && y && x->dtype == TS_DTYPE_BF16 && y->size == x->size);
  if (!x || !y)
    return;
  int64_t D = x->shape[x->rank - 1], n = (int64_t)(x->size / 2), T = n / D;
  uint16_t *out = malloc(n * 2);
  run_bf16(k, x->data, out, T, D);
  int64_t bad = bits_differ(out, y->data, n, prefix);
  if (bad)
    fprintf(stderr, "%s: %lld of %lld values differ\n", prefix, (long long)bad,
            (long long)n);
  CHECK(bad == 0);
  free(out);
}

static void test_golden(ts_kernel *k8, ts_kernel *k4, ts_kernel *kh,
                        ts_kernel *khf) {
  ts_safetensors *f = num_golden_open("bf16.safetensors");
  if (f) {
    golden_bf16(f, k8, "prefill.layers.1.fp8_sim.0");
    golden_bf16(f, k8, "prefill.layers.1.fp8_sim.1");
    golden_bf16(f, k4, "prefill.layers.1.fp4_sim.0");
    golden_bf16(f, k4, "prefill.layers.1.fp4_sim.1");
    /* the Hadamard in bf16: within bf16 rounding of the reference */
    const ts_st_tensor *x = ts_safetensors_find(f, "prefill.layers.1.hadamard.1.x");
    const ts_st_tensor *y = ts_safetensors_find(f, "prefill.layers.1.hadamard.1.y");
    CHECK(x && y);
    if (x && y) {
      int64_t n = (int64_t)(x->size / 2), T = n / 128;
      uint16_t *out = malloc(n * 2);
      run_bf16(kh, x->data, out, T, 128);
      double *g = malloc(n * sizeof *g), *w = malloc(n * sizeof *w);
      for (int64_t i = 0; i < n; i++) {
        g[i] = ts_bf16_to_f32(out[i]);
        w[i] = ts_bf16_to_f32(((const uint16_t *)y->data)[i]);
      }
      CHECK_ERR(num_relerr(g, w, n), 4e-3, "golden hadamard bf16");
      free(g);
      free(w);
      free(out);
    }
    ts_safetensors_close(f);
  }
  f = num_golden_open("f32.safetensors");
  if (f) {
    const ts_st_tensor *x = ts_safetensors_find(f, "prefill.layers.1.hadamard.1.x");
    const ts_st_tensor *y = ts_safetensors_find(f, "prefill.layers.1.hadamard.1.y");
    CHECK(x && y && x->dtype == TS_DTYPE_F32);
    if (x && y) {
      int64_t n = (int64_t)(x->size / 4), sh[2] = {n / 128, 128};
      ts_tensor *tx = num_tensor(TS_DTYPE_F32, 2, sh), *ty = num_tensor(TS_DTYPE_F32, 2, sh);
      memcpy(ts_tensor_data(tx), x->data, x->size);
      ts_arg a[2] = {ts_arg_tensor(tx), ts_arg_tensor(ty)};
      num_launch(khf, a, 2);
      double *g = num_get(ty), *w = malloc(n * sizeof *w);
      for (int64_t i = 0; i < n; i++)
        w[i] = ((const float *)y->data)[i];
      CHECK_ERR(num_relerr(g, w, n), 1e-5, "golden hadamard f32");
      free(g);
      free(w);
      ts_tensor_release(tx);
      ts_tensor_release(ty);
    }
    ts_safetensors_close(f);
  }
}

/* ---- sparse attention ----------------------------------------------- */

static ts_tensor *from_doubles(ts_dtype dt, uint32_t rank, const int64_t *sh,
                               const double *v, double *rounded) {
  ts_tensor *t = num_tensor(dt, rank, sh);
  int64_t n = ts_tensor_count(t);
  for (int64_t i = 0; i < n; i++) {
    double r = num_round(dt, v[i]);
    if (dt == TS_DTYPE_BF16)
      ((uint16_t *)ts_tensor_data(t))[i] = ts_f32_to_bf16((float)v[i]);
    else
      ((float *)ts_tensor_data(t))[i] = (float)v[i];
    if (rounded)
      rounded[i] = r;
  }
  return t;
}

static void test_attn_random(ts_kernel *kb, ts_kernel *kf) {
  /* odd shapes: 3 heads of 40, 70 entries listed (two blocks of 64),
   * invalid entries, a row with no valid entry at all */
  int64_t T = 5, H = 3, C = 40, S = 23, K = 70;
  uint64_t seed = 77;
  double *q = malloc(T * H * C * sizeof *q), *kv = malloc(S * C * sizeof *kv);
  double *sink = malloc(H * sizeof *sink), *o = malloc(T * H * C * sizeof *o);
  int32_t *idx = malloc(T * K * sizeof *idx);
  for (int64_t i = 0; i < T * H * C; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    q[i] = (double)(seed >> 11) / 9007199254740992.0 * 4 - 2;
  }
  for (int64_t i = 0; i < S * C; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    kv[i] = (double)(seed >> 11) / 9007199254740992.0 * 2 - 1;
  }
  for (int64_t h = 0; h < H; h++)
    sink[h] = 0.5 * (double)h - 0.3;
  for (int64_t t = 0; t < T; t++)
    for (int64_t k = 0; k < K; k++)
      idx[t * K + k] = t == 3 ? -1 : (k % 7 == 3 ? -1 : (int32_t)((k * 5 + t) % S));
  ts_dtype dts[2] = {TS_DTYPE_F32, TS_DTYPE_BF16};
  ts_kernel *ks[2] = {kf, kb};
  for (int v = 0; v < 2; v++) {
    int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, si[2] = {T, K};
    double *qr = malloc(T * H * C * sizeof *qr), *kvr = malloc(S * C * sizeof *kvr);
    ts_tensor *tq = from_doubles(dts[v], 3, sq, q, qr);
    ts_tensor *tkv = from_doubles(dts[v], 2, skv, kv, kvr);
    ts_tensor *ti = num_tensor(TS_DTYPE_I32, 2, si);
    memcpy(ts_tensor_data(ti), idx, T * K * sizeof *idx);
    ts_tensor *ts = from_doubles(TS_DTYPE_F32, 1, &H, sink, NULL);
    ts_tensor *to = num_tensor(dts[v], 3, sq);
    ref_sparse_attn(qr, kvr, idx, sink, o, T, H, C, S, K, 0.04419417382415922);
    ts_arg a[5] = {ts_arg_tensor(tq), ts_arg_tensor(tkv), ts_arg_tensor(ti),
                   ts_arg_tensor(ts), ts_arg_tensor(to)};
    num_launch(ks[v], a, 5);
    double *got = num_get(to);
    CHECK_ERR(num_relerr(got, o, T * H * C), v ? 1e-2 : 1e-5,
              v ? "sparse_attn bf16" : "sparse_attn f32");
    bool zero_row = true; /* token 3 has no valid entry: o = 0 */
    for (int64_t i = 3 * H * C; i < 4 * H * C; i++)
      zero_row &= got[i] == 0;
    CHECK(zero_row);
    free(got);
    free(qr);
    free(kvr);
    ts_tensor_release(tq);
    ts_tensor_release(tkv);
    ts_tensor_release(ti);
    ts_tensor_release(ts);
    ts_tensor_release(to);
  }
  free(q);
  free(kv);
  free(sink);
  free(o);
  free(idx);
}

static void golden_attn(ts_safetensors *f, ts_kernel *k, const char *prefix,
                        double tol) {
  char n[5][128];
  const char *parts[5] = {"q", "kv", "idx", "sink", "o"};
  ts_tensor *t[5];
  for (int i = 0; i < 5; i++) {
    snprintf(n[i], sizeof n[i], "%s.%s", prefix, parts[i]);
    t[i] = num_golden_tensor(f, n[i]);
    if (!t[i])
      return;
  }
  ts_tensor *out = num_tensor(ts_tensor_dtype(t[4]), 3, (int64_t[]){
      ts_tensor_dim(t[4], 0), ts_tensor_dim(t[4], 1), ts_tensor_dim(t[4], 2)});
  ts_arg a[5] = {ts_arg_tensor(t[0]), ts_arg_tensor(t[1]), ts_arg_tensor(t[2]),
                 ts_arg_tensor(t[3]), ts_arg_tensor(out)};
  num_launch(k, a, 5);
  double *got = num_get(out), *want = num_get(t[4]);
  CHECK_ERR(num_relerr(got, want, ts_tensor_count(out)), tol, prefix);
  free(got);
  free(want);
  ts_tensor_release(out);
  for (int i = 0; i < 5; i++)
    ts_tensor_release(t[i]);
}

static void test_golden_attn_mhc(void) {
  /* tiny model: head_dim 128, so the scale is 128^-0.5 */
  ts_kernel *kb = num_kernel("kernels/sparse_attn.tile", "sparse_attn",
                             "SCALE=0.08838834764831845", NULL);
  ts_kernel *kf = num_kernel("kernels/sparse_attn.tile", "sparse_attn_f32",
                             "SCALE=0.08838834764831845 NH=4 DC=128", NULL);
  const char *files[2] = {"f32.safetensors", "bf16.safetensors"};
  for (int i = 0; i < 2 && kb && kf; i++) {
    ts_safetensors *f = num_golden_open(files[i]);
    if (!f)
      continue;
    ts_kernel *ka = i ? kb : kf;
    golden_attn(f, ka, "prefill.layers.1.sparse_attn.0", i ? 1e-2 : 1e-5);
    golden_attn(f, ka, "prefill.layers.2.sparse_attn.0", i ? 1e-2 : 1e-5);
    ts_safetensors_close(f);
  }
  ts_kernel_release(kb);
  ts_kernel_release(kf);
  test_golden_sinkhorn();
}

/* ---- indexer and top-k ---------------------------------------------------------- */

static void run_topk(ts_kernel *k, const float *sc, const int32_t *len,
                     int64_t R, int64_t N, int64_t K, int32_t *out) {
  int64_t ss[2] = {R, N}, so[2] = {R, K};
  ts_tensor *ts = num_tensor(TS_DTYPE_F32, 2, ss);
  ts_tensor *tl = num_tensor(TS_DTYPE_I32, 1, &R);
  ts_tensor *to = num_tensor(TS_DTYPE_I32, 2, so);
  memcpy(ts_tensor_data(ts), sc, (size_t)(R * N) * 4);
  memcpy(ts_tensor_data(tl), len, (size_t)R * 4);
  ts_arg a[3] = {ts_arg_tensor(ts), ts_arg_tensor(tl), ts_arg_tensor(to)};
  num_launch(k, a, 3);
  memcpy(out, ts_tensor_data(to), (size_t)(R * K) * 4);
  ts_tensor_release(ts);
  ts_tensor_release(tl);
  ts_tensor_release(to);
}

/* The two-level selection of a long row (kernels/topk.tile): the top K of
 * each CH-entry chunk, their scores gathered, the top K of those, mapped
 * back to indices. Every launch on the kernels as the model makes them. */
static void run_topk2(const float *sc, const int32_t *len, int64_t R, int64_t N, int64_t K,
                      int64_t CH, int32_t *out) {
  char defs[64];
  snprintf(defs, sizeof defs, "K=%lld CH=%lld", (long long)K, (long long)CH);
  ts_kernel *k1 = num_kernel("kernels/topk.tile", "topk", defs, NULL);
  ts_kernel *kg = num_kernel("kernels/topk.tile", "topk_gather", defs, NULL);
  snprintf(defs, sizeof defs, "K=%lld", (long long)K);
  ts_kernel *k2 = num_kernel("kernels/topk.tile", "topk", defs, NULL);
  ts_kernel *kp = num_kernel("kernels/topk.tile", "topk_pick", NULL, NULL);
  if (!k1 || !kg || !k2 || !kp)
    return;
  int64_t M = K * ((N + CH - 1) / CH);
  int64_t ss[2] = {R, N}, sm[2] = {R, M}, so[2] = {R, K};
  ts_tensor *ts = num_tensor(TS_DTYPE_F32, 2, ss), *tl = num_tensor(TS_DTYPE_I32, 1, &R);
  ts_tensor *cand = num_tensor(TS_DTYPE_I32, 2, sm), *val = num_tensor(TS_DTYPE_F32, 2, sm);
  ts_tensor *len2 = num_tensor(TS_DTYPE_I32, 1, &R), *pos = num_tensor(TS_DTYPE_I32, 2, so);
  ts_tensor *to = num_tensor(TS_DTYPE_I32, 2, so);
  memcpy(ts_tensor_data(ts), sc, (size_t)(R * N) * 4);
  memcpy(ts_tensor_data(tl), len, (size_t)R * 4);
  ts_arg a1[3] = {ts_arg_tensor(ts), ts_arg_tensor(tl), ts_arg_tensor(cand)};
  num_launch(k1, a1, 3);
  ts_arg ag[5] = {ts_arg_tensor(ts), ts_arg_tensor(tl), ts_arg_tensor(cand), ts_arg_tensor(val),
                  ts_arg_tensor(len2)};
  num_launch(kg, ag, 5);
  ts_arg a2[3] = {ts_arg_tensor(val), ts_arg_tensor(len2), ts_arg_tensor(pos)};
  num_launch(k2, a2, 3);
  ts_arg ap[3] = {ts_arg_tensor(pos), ts_arg_tensor(cand), ts_arg_tensor(to)};
  num_launch(kp, ap, 3);
  memcpy(out, ts_tensor_data(to), (size_t)(R * K) * 4);
  ts_tensor *ts_all[7] = {ts, tl, cand, val, len2, pos, to};
  for (int i = 0; i < 7; i++)
    ts_tensor_release(ts_all[i]);
  ts_kernel *ks[4] = {k1, kg, k2, kp};
  for (int i = 0; i < 4; i++)
    ts_kernel_release(ks[i]);
}

static void test_topk(void) {
  ts_kernel *k = num_kernel("kernels/topk.tile", "topk", "K=8", NULL);
  ts_kernel *kbig = num_kernel("kernels/topk.tile", "topk", "K=512", NULL);
  if (!k || !kbig)
    return;
  /* rows: random, all equal, -inf, negative and mixed signs, short, empty,
   * lengths past N clamp */
  enum { R = 8, N = 1000 };
  static float sc[R * N];
  int32_t len[R] = {1000, 1000, 1000, 1000, 5, 0, 3000, 777};
  uint64_t s = 3;
  for (int r = 0; r < R; r++)
    for (int i = 0; i < N; i++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      float u = (float)((double)(s >> 11) / 9007199254740992.0);
      float v = u * 20 - 10;
      if (r == 1)
        v = 2.5f;
      if (r == 2)
        v = i % 3 ? -INFINITY : v;
      if (r == 3)
        v = -(float)(i % 17); /* many ties at each value */
      if (r == 7)
        v = (float)((int)(u * 8)) * 0.25f; /* bf16-like coarse values */
      sc[r * N + i] = v;
    }
  int Ks[2] = {8, 512};
  ts_kernel *ks[2] = {k, kbig};
  for (int v = 0; v < 2; v++) {
    int32_t *got = malloc(sizeof(int32_t) * R * Ks[v]);
    int32_t *want = malloc(sizeof(int32_t) * Ks[v]);
    run_topk(ks[v], sc, len, R, N, Ks[v], got);
    for (int r = 0; r < R; r++) {
      int64_t n = len[r] < N ? len[r] : N;
      ref_topk(sc + r * N, n, Ks[v], want);
      bool same = memcmp(got + r * Ks[v], want, sizeof(int32_t) * Ks[v]) == 0;
      if (!same)
        fprintf(stderr, "topk K=%d row %d differs (first %d vs %d)\n", Ks[v], r,
                got[r * Ks[v]], want[0]);
      CHECK(same);
    }
    free(got);
    free(want);
  }
  /* two levels: chunks of 24 (a partial last one: 1000 = 41 x 24 + 16), of
   * 100 with K 64, and one chunk as long as K (ties across chunk edges: rows
   * 1, 3, 7; rows shorter than a chunk; a chunk-aligned length) */
  len[4] = 48;
  int64_t two[3][2] = {{8, 24}, {64, 100}, {16, 16}};
  for (int v = 0; v < 3; v++) {
    int64_t K = two[v][0];
    int32_t *got = malloc(sizeof(int32_t) * R * K), *want = malloc(sizeof(int32_t) * K);
    run_topk2(sc, len, R, N, K, two[v][1], got);
    for (int r = 0; r < R; r++) {
      int64_t n = len[r] < N ? len[r] : N;
      ref_topk(sc + r * N, n, K, want);
      bool same = memcmp(got + r * K, want, sizeof(int32_t) * K) == 0;
      if (!same)
        fprintf(stderr, "two-level topk K=%lld CH=%lld row %d differs\n", (long long)K,
                (long long)two[v][1], r);
      CHECK(same);
    }
    free(got);
    free(want);
  }
  ts_kernel_release(k);
  ts_kernel_release(kbig);
}

/* argmax: ties to the first index (within and across blocks), NaN never
 * wins, rows of -inf and NaN give 0, a length that is not a multiple of the
 * block, and a V4-sized vocabulary (129280). */
static void test_argmax(void) {
  ts_kernel *k = num_kernel("kernels/argmax.tile", "argmax", NULL, NULL);
  if (!k)
    return;
  int64_t shapes[2][2] = {{7, 3001}, {2, 129280}};
  for (int c = 0; c < 2; c++) {
    int64_t R = shapes[c][0], V = shapes[c][1], sx[2] = {R, V};
    ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sx);
    ts_tensor *o = num_tensor(TS_DTYPE_I32, 1, &R);
    float *xv = ts_tensor_data(x);
    uint64_t seed = 41 + (uint64_t)c;
    for (int64_t i = 0; i < R * V; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      /* few distinct values: many ties */
      xv[i] = (float)((seed >> 40) % 50) - 25.0f;
    }
    if (c == 0) {
      xv[0 * V + 2500] = 30;  /* a unique maximum in the last block */
      xv[0 * V + 10] = NAN;   /* never wins */
      xv[1 * V + 1500] = 40;  /* the same maximum in two blocks: */
      xv[1 * V + 2048] = 40;  /* the first one */
      for (int64_t j = 0; j < V; j++) {
        xv[2 * V + j] = -INFINITY; /* nothing above -inf: 0 */
        xv[3 * V + j] = j % 2 ? NAN : -INFINITY;
      }
      xv[4 * V + V - 1] = 100; /* the very last entry */
    }
    ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(o)};
    num_launch(k, a, 2);
    const int32_t *ov = ts_tensor_data(o);
    int bad = 0;
    for (int64_t r = 0; r < R; r++) {
      int32_t want = 0;
      float best = -INFINITY;
      for (int64_t j = 0; j < V; j++)
        if (xv[r * V + j] > best) { /* NaN compares false */
          best = xv[r * V + j];
          want = (int32_t)j;
        }
      if (ov[r] != want && bad++ < 5)
        fprintf(stderr, "argmax row %lld: %d, want %d\n", (long long)r, ov[r],
                want);
    }
    CHECK(bad == 0);
    ts_tensor_release(x);
    ts_tensor_release(o);
  }
  ts_kernel_release(k);
}

/* A split-KV attention: kernel k on the inputs in[0 .. n - 1] and the
 * partial states over P ranges, then km (sparse_attn_merge) with the sink
 * into o [T, H, C]. */
static void launch_split(ts_kernel *k, ts_kernel *km, const ts_arg *in, int n, int64_t P,
                         ts_tensor *sink, ts_tensor *o) {
  int64_t T = ts_tensor_dim(o, 0), H = ts_tensor_dim(o, 1), C = ts_tensor_dim(o, 2);
  int64_t spo[4] = {T, P, H, C}, spm[3] = {T, P, H};
  ts_tensor *po = num_tensor(TS_DTYPE_F32, 4, spo), *pm = num_tensor(TS_DTYPE_F32, 3, spm),
            *pl = num_tensor(TS_DTYPE_F32, 3, spm);
  ts_arg a[10];
  memcpy(a, in, (size_t)n * sizeof *a);
  a[n] = ts_arg_tensor(po);
  a[n + 1] = ts_arg_tensor(pm);
  a[n + 2] = ts_arg_tensor(pl);
  num_launch(k, a, (size_t)n + 3);
  /* the merge's rope table and positions, not read without ROPE */
  int64_t stab[3] = {1, 1, 2}, one = 1;
  ts_tensor *tab = num_tensor(TS_DTYPE_F32, 3, stab), *pos = num_tensor(TS_DTYPE_I32, 1, &one);
  ts_arg b[7] = {ts_arg_tensor(po),   ts_arg_tensor(pm),  ts_arg_tensor(pl), ts_arg_tensor(sink),
                 ts_arg_tensor(tab), ts_arg_tensor(pos), ts_arg_tensor(o)};
  num_launch(km, b, 7);
  ts_tensor *tr[5] = {po, pm, pl, tab, pos};
  for (int i = 0; i < 5; i++)
    ts_tensor_release(tr[i]);
}

/* hca_attn against the reference over the equivalent index list: the
 * window rows of kv, then compressed entries 0 .. n_t - 1 (kv and comp
 * concatenated); with a merge kernel km, k is hca_attn_split over P ranges,
 * then km. Returns the relative error. */
static double hca_case(ts_kernel *k, ts_kernel *km, int64_t P, ts_dtype dt, int64_t T, int64_t H,
                       int64_t C, int64_t S, int64_t W, int64_t N,
                       const int32_t *win, const int32_t *ncomp, const int32_t *cbase,
                       uint64_t seed, bool *zero_rows_ok, const bool *zero_row) {
  int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, sw[2] = {T, W}, sc[2] = {N, C};
  ts_tensor *q = num_tensor(dt, 3, sq), *kv = num_tensor(dt, 2, skv);
  ts_tensor *comp = num_tensor(dt, 2, sc), *o = num_tensor(dt, 3, sq);
  ts_tensor *tw = num_tensor(TS_DTYPE_I32, 2, sw);
  ts_tensor *tn = num_tensor(TS_DTYPE_I32, 1, &T);
  double *qv = num_fill(q, -2, 2, &seed), *kvv = num_fill(kv, -1, 1, &seed);
  double *cv = num_fill(comp, -1, 1, &seed);
  memcpy(ts_tensor_data(tw), win, (size_t)(T * W) * sizeof *win);
  memcpy(ts_tensor_data(tn), ncomp, (size_t)T * sizeof *ncomp);
  double *sink = malloc((size_t)H * sizeof *sink);
  for (int64_t h = 0; h < H; h++)
    sink[h] = 0.25 * (double)h - 0.4;
  ts_tensor *tsk = from_doubles(TS_DTYPE_F32, 1, &H, sink, NULL);
  /* the reference: one list over kv ++ comp */
  int64_t K = W + N;
  double *all = malloc((size_t)((S + N) * C) * sizeof *all);
  memcpy(all, kvv, (size_t)(S * C) * sizeof *all);
  memcpy(all + S * C, cv, (size_t)(N * C) * sizeof *all);
  int32_t *idx = malloc((size_t)(T * K) * sizeof *idx);
  for (int64_t t = 0; t < T; t++) {
    int64_t cb = cbase ? cbase[t] : 0, n = ncomp[t] < 0 ? 0 : ncomp[t];
    n = n > N - cb ? N - cb : n;
    for (int64_t j = 0; j < W; j++)
      idx[t * K + j] = win[t * W + j];
    for (int64_t j = 0; j < N; j++)
      idx[t * K + W + j] = j < n ? (int32_t)(S + cb + j) : -1;
  }
  double *want = malloc((size_t)(T * H * C) * sizeof *want);
  ref_sparse_attn(qv, all, idx, sink, want, T, H, C, S + N, K,
                  0.04419417382415922);
  if (km) {
    /* (each token's entries from row 0, its blocks over all P ranges) */
    ts_tensor *tb = num_tensor(TS_DTYPE_I32, 1, &T), *tr = num_tensor(TS_DTYPE_I32, 1, &T);
    for (int64_t t = 0; t < T; t++) {
      ((int32_t *)ts_tensor_data(tb))[t] = 0;
      ((int32_t *)ts_tensor_data(tr))[t] = (int32_t)P;
    }
    ts_arg a[7] = {ts_arg_tensor(q),  ts_arg_tensor(kv), ts_arg_tensor(tw), ts_arg_tensor(comp),
                   ts_arg_tensor(tn), ts_arg_tensor(tb), ts_arg_tensor(tr)};
    launch_split(k, km, a, 7, P, tsk, o);
    ts_tensor_release(tb);
    ts_tensor_release(tr);
  } else if (cbase) {
    /* (hca_attn_tc: token t's entries from row cbase[t]) */
    ts_tensor *tb = num_tensor(TS_DTYPE_I32, 1, &T);
    memcpy(ts_tensor_data(tb), cbase, (size_t)T * sizeof *cbase);
    ts_arg a[8] = {ts_arg_tensor(q),  ts_arg_tensor(kv), ts_arg_tensor(tw),  ts_arg_tensor(comp),
                   ts_arg_tensor(tn), ts_arg_tensor(tb), ts_arg_tensor(tsk), ts_arg_tensor(o)};
    num_launch(k, a, 8);
    ts_tensor_release(tb);
  } else {
    ts_arg a[7] = {ts_arg_tensor(q),    ts_arg_tensor(kv), ts_arg_tensor(tw),
                   ts_arg_tensor(comp), ts_arg_tensor(tn), ts_arg_tensor(tsk),
                   ts_arg_tensor(o)};
    num_launch(k, a, 7);
  }
  double *got = num_get(o);
  double err = num_relerr(got, want, T * H * C);
  *zero_rows_ok = true;
  for (int64_t t = 0; zero_row && t < T; t++)
    for (int64_t i = 0; zero_row[t] && i < H * C; i++)
      *zero_rows_ok &= got[t * H * C + i] == 0;
  free(got);
  free(want);
  free(idx);
  free(all);
  free(sink);
  free(qv);
  free(kvv);
  free(cv);
  ts_tensor_release(q);
  ts_tensor_release(kv);
  ts_tensor_release(comp);
  ts_tensor_release(o);
  ts_tensor_release(tw);
  ts_tensor_release(tn);
  ts_tensor_release(tsk);
  return err;
}

/* hca_attn on odd shapes: a window of 70 (not a multiple of the block of
 * 64) with holes, 150 compressed entries of which each token sees a
 * different prefix (none; all; more than exist, clamped; a negative count),
 * and a token with nothing to attend to (o = 0); then a V4-Flash-sized
 * call, 64 heads of 512 over a window of 128 and 2048 entries. */
static void test_hca(void) {
  ts_kernel *kf = num_kernel("kernels/hca_attn.tile", "hca_attn", "XT=f32", NULL);
  ts_kernel *kb = num_kernel("kernels/hca_attn.tile", "hca_attn", NULL, NULL);
  if (!kf || !kb)
    return;
  enum { T = 6, W = 70 };
  int64_t H = 3, C = 40, S = 31, N = 150;
  int32_t win[T * W], ncomp[T] = {0, 150, 77, 400, -5, 0};
  bool zero_row[T] = {false, false, false, false, false, true};
  for (int t = 0; t < T; t++)
    for (int j = 0; j < W; j++)
      win[t * W + j] = t == 5 || j % 9 == 4 ? -1 : (j * 3 + t) % (int)S;
  bool zeros;
  double e = hca_case(kf, NULL, 0, TS_DTYPE_F32, T, H, C, S, W, N, win, ncomp, NULL, 5, &zeros,
                      zero_row);
  CHECK_ERR(e, 1e-5, "hca_attn f32");
  CHECK(zeros);
  e = hca_case(kb, NULL, 0, TS_DTYPE_BF16, T, H, C, S, W, N, win, ncomp, NULL, 6, &zeros,
               zero_row);
  CHECK_ERR(e, 1e-2, "hca_attn bf16");
  CHECK(zeros);
  /* V4-Flash: 64 x 512, window 128, 2048 compressed entries */
  enum { FT = 2, FW = 128 };
  int32_t fwin[FT * FW], fn[FT] = {2048, 1500};
  for (int t = 0; t < FT; t++)
    for (int j = 0; j < FW; j++)
      fwin[t * FW + j] = (j * 7 + t) % 300;
  e = hca_case(kb, NULL, 0, TS_DTYPE_BF16, FT, 64, 512, 300, FW, 2048, fwin, fn, NULL, 8,
               &zeros, NULL);
  CHECK_ERR(e, 1e-2, "hca_attn V4-Flash size");
  /* the tensor-core form: 16 heads x 64 (mma.sync) and 64 x 128 (the
   * scores by wgmma on the simulator's sm_90a), one warpgroup, then two
   * splitting the columns of all 128 (gen.h ts_wgmma_nsplit), the same
   * tokens (window tails, invalid entries, no compressed entry, a row with
   * nothing), each token's entries from its own row of comp (cbase: a
   * prefill of several prompts; a count past the rows left clamped) */
  const int32_t cbase[T] = {0, 0, 13, 100, 7, 0};
  const struct {
    const char *defs;
    int64_t H, C;
  } tc[3] = {{"NH=16 DC=64 CH=32 BK=16 WG=1", 16, 64},
             {"NH=64 DC=128 CH=64 BK=32 WG=1", 64, 128},
             {"NH=64 DC=128 CH=128 BK=32 WG=2", 64, 128}};
  for (int i = 0; i < 3; i++) {
    ts_kernel *kt = num_kernel("kernels/hca_attn.tile", "hca_attn_tc", tc[i].defs, NULL);
    if (!kt)
      break;
    e = hca_case(kt, NULL, 0, TS_DTYPE_BF16, T, tc[i].H, tc[i].C, S, W, N, win, ncomp, cbase, 9,
                 &zeros, zero_row);
    CHECK_ERR(e, 1e-2, "hca_attn_tc");
    CHECK(zeros);
    ts_kernel_release(kt);
  }
  /* the split-KV form over 1, 3 and 8 ranges (with 8, the tokens with few
   * entries leave ranges empty), then sparse_attn_merge */
  ts_kernel *km = num_kernel("kernels/sparse_attn.tile", "sparse_attn_merge", NULL, NULL);
  int64_t Ps[5] = {1, 3, 8, 2, 3};
  for (int i = 0; km && i < 5; i++) {
    int v = i < 3 ? 0 : i - 2; /* 64 heads: the scores by wgmma */
    ts_kernel *ks = num_kernel("kernels/hca_attn.tile", "hca_attn_split", tc[v].defs, NULL);
    if (!ks)
      break;
    e = hca_case(ks, km, Ps[i], TS_DTYPE_BF16, T, tc[v].H, tc[v].C, S, W, N, win, ncomp, NULL, 9,
                 &zeros, zero_row);
    CHECK_ERR(e, 1e-2, "hca_attn_split");
    CHECK(zeros);
    ts_kernel_release(ks);
  }
  ts_kernel_release(km);
  ts_kernel_release(kf);
  ts_kernel_release(kb);
}

/* The tensor-core form (heads as the GEMM's M; e.g. 16 heads of 64 in two
 * halves of 32 output dims): 70 entries in blocks of 16, invalid entries,
 * a row with no valid entry, against f64; heads 16 (mma.sync) and 64 (on
 * sm_90a the scores by wgmma: the simulator emulates it). With P > 0 the
 * split-KV form: sparse_attn_split over P ranges (some empty when P is
 * large), then sparse_attn_merge. */
static void test_attn_tc_at(const char *defs, int64_t H, int64_t C, int64_t P) {
  ts_kernel *k = num_kernel("kernels/sparse_attn.tile", P ? "sparse_attn_split" : "sparse_attn_tc",
                            defs, NULL);
  ts_kernel *km = P ? num_kernel("kernels/sparse_attn.tile", "sparse_attn_merge", NULL, NULL) : NULL;
  if (!k || (P && !km))
    return;
  int64_t T = 5, S = 23, K = 70;
  int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, si[2] = {T, K};
  uint64_t seed = 78;
  ts_tensor *q = num_tensor(TS_DTYPE_BF16, 3, sq), *kv = num_tensor(TS_DTYPE_BF16, 2, skv);
  ts_tensor *idx = num_tensor(TS_DTYPE_I32, 2, si), *o = num_tensor(TS_DTYPE_BF16, 3, sq);
  double *qv = num_fill(q, -2, 2, &seed), *kvv = num_fill(kv, -1, 1, &seed);
  int32_t *iv = ts_tensor_data(idx);
  for (int64_t t = 0; t < T; t++)
    for (int64_t j = 0; j < K; j++)
      iv[t * K + j] = t == 3 ? -1 : (j % 7 == 3 ? -1 : (int32_t)((j * 5 + t) % S));
  double sink[64], *want = malloc(T * H * C * sizeof *want);
  for (int h = 0; h < H; h++)
    sink[h] = 0.1 * h - 0.3;
  ts_tensor *ts = from_doubles(TS_DTYPE_F32, 1, &H, sink, NULL);
  ref_sparse_attn(qv, kvv, iv, sink, want, T, H, C, S, K, 0.04419417382415922);
  if (P) {
    ts_arg a[3] = {ts_arg_tensor(q), ts_arg_tensor(kv), ts_arg_tensor(idx)};
    launch_split(k, km, a, 3, P, ts, o);
    ts_kernel_release(km);
  } else {
    ts_arg a[5] = {ts_arg_tensor(q), ts_arg_tensor(kv), ts_arg_tensor(idx),
                   ts_arg_tensor(ts), ts_arg_tensor(o)};
    num_launch(k, a, 5);
  }
  double *got = num_get(o);
  CHECK_ERR(num_relerr(got, want, T * H * C), 1e-2, P ? "sparse_attn_split" : "sparse_attn_tc");
  bool zero_row = true;
  for (int64_t i = 3 * H * C; i < 4 * H * C; i++)
    zero_row &= got[i] == 0;
  CHECK(zero_row);
  free(got);
  free(want);
  free(qv);
  free(kvv);
  ts_tensor_release(q);
  ts_tensor_release(kv);
  ts_tensor_release(idx);
  ts_tensor_release(o);
  ts_tensor_release(ts);
  ts_kernel_release(k);
}

static void test_attn_tc(void) {
  test_attn_tc_at("NH=16 DC=64 CH=32 BK=16 WG=1", 16, 64, 0);
  test_attn_tc_at("NH=64 DC=128 CH=64 BK=32 WG=1", 64, 128, 0);
  /* a query's column blocks neighbours in the grid (4 and 2 of them) */
  test_attn_tc_at("NH=16 DC=64 CH=16 BK=16 ADJ=true WG=1", 16, 64, 0);
  test_attn_tc_at("NH=64 DC=128 CH=64 BK=32 ADJ=true WG=1", 64, 128, 0);
  /* two warpgroups splitting the columns of one 64-head slab (gen.h
   * ts_wgmma_nsplit): all of a query's columns in one block, the scores'
   * row reductions across the warpgroups; with BK 16 each takes 8 score
   * columns; with two column blocks a warpgroup's 32 are not a whole
   * panel of B, and the gemm leaves wgmma */
  test_attn_tc_at("NH=64 DC=128 CH=128 BK=32 WG=2", 64, 128, 0);
  test_attn_tc_at("NH=64 DC=128 CH=128 BK=16 WG=2", 64, 128, 0);
  test_attn_tc_at("NH=64 DC=128 CH=64 BK=32 WG=2 ADJ=true", 64, 128, 0);
  /* four: 8 score columns and 64 output columns each, four parts a row */
  test_attn_tc_at("NH=64 DC=256 CH=256 BK=32 WG=4", 64, 256, 0);
  /* the default at V4 width: [64, 512] on two warpgroups, 128 accumulator
   * registers a thread (on sm_80 mma.sync's, B MN-major: gpu_mma.c) */
  test_attn_tc_at(NULL, 64, 512, 0);
  test_attn_tc_at("NH=16 DC=64 CH=32 BK=16 WG=1", 16, 64, 1);
  test_attn_tc_at("NH=16 DC=64 CH=32 BK=16 WG=1", 16, 64, 3);
  test_attn_tc_at("NH=16 DC=64 CH=32 BK=16 WG=1", 16, 64, 8);
  test_attn_tc_at("NH=64 DC=128 CH=64 BK=32 WG=1", 64, 128, 2);
  test_attn_tc_at("NH=64 DC=128 CH=128 BK=32 WG=2", 64, 128, 3);
}

/* V4-Flash-sized calls: 64 heads of 512 over 512 selected + 128 window
 * entries; top-512 of 128K scores. */
static void test_flash_sizes(void) {
  ts_kernel *ka = num_kernel("kernels/sparse_attn.tile", "sparse_attn", NULL, NULL);
  ts_kernel *kt = num_kernel("kernels/topk.tile", "topk", "K=512", NULL);
  if (!ka || !kt)
    return;
  int64_t T = 2, H = 64, C = 512, S = 3000, K = 640;
  int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, si[2] = {T, K};
  uint64_t seed = 123;
  ts_tensor *q = num_tensor(TS_DTYPE_BF16, 3, sq), *kv = num_tensor(TS_DTYPE_BF16, 2, skv);
  ts_tensor *idx = num_tensor(TS_DTYPE_I32, 2, si), *o = num_tensor(TS_DTYPE_BF16, 3, sq);
  double *qv = num_fill(q, -1, 1, &seed), *kvv = num_fill(kv, -1, 1, &seed);
  int32_t *iv = ts_tensor_data(idx);
  for (int64_t i = 0; i < T * K; i++)
    iv[i] = i % 97 == 5 ? -1 : (int32_t)((i * 37) % S);
  double sink[64], *want = malloc(T * H * C * sizeof *want);
  for (int h = 0; h < 64; h++)
    sink[h] = 0.01 * h;
  ts_tensor *ts = from_doubles(TS_DTYPE_F32, 1, &H, sink, NULL);
  ref_sparse_attn(qv, kvv, iv, sink, want, T, H, C, S, K, 0.04419417382415922);
  ts_arg a[5] = {ts_arg_tensor(q), ts_arg_tensor(kv), ts_arg_tensor(idx),
                 ts_arg_tensor(ts), ts_arg_tensor(o)};
  num_launch(ka, a, 5);
  double *got = num_get(o);
  CHECK_ERR(num_relerr(got, want, T * H * C), 1e-2, "sparse_attn V4-Flash size");
  free(got);
  const char *dev = getenv("TS_TEST_DEVICE");
  ts_kernel *ktc = !dev || !strcmp(dev, "cpu")
                       ? num_kernel("kernels/sparse_attn.tile", "sparse_attn_tc", NULL, NULL)
                       : NULL; /* (the simulator would take minutes) */
  if (ktc) {
    ts_tensor *o2 = num_tensor(TS_DTYPE_BF16, 3, sq);
    a[4] = ts_arg_tensor(o2);
    num_launch(ktc, a, 5);
    got = num_get(o2);
    CHECK_ERR(num_relerr(got, want, T * H * C), 1e-2, "sparse_attn_tc V4-Flash size");
    free(got);
    ts_tensor_release(o2);
    ts_kernel_release(ktc);
  }
  free(want);
  free(qv);
  free(kvv);
  ts_tensor_release(q);
  ts_tensor_release(kv);
  ts_tensor_release(idx);
  ts_tensor_release(o);
  ts_tensor_release(ts);
  enum { R = 2, N = 131072, KK = 512 };
  float *sc = malloc(sizeof(float) * R * N);
  for (int64_t i = 0; i < R * N; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    /* bf16-rounded scores: plenty of exact ties */
    sc[i] = ts_bf16_to_f32(ts_f32_to_bf16(
        (float)((double)(seed >> 11) / 9007199254740992.0 * 64.0)));
  }
  int32_t len[R] = {N, 100000}, *got2 = malloc(sizeof(int32_t) * R * KK);
  int32_t want2[KK];
  run_topk(kt, sc, len, R, N, KK, got2);
  for (int r = 0; r < R; r++) {
    ref_topk(sc + (int64_t)r * N, len[r], KK, want2);
    CHECK(memcmp(got2 + r * KK, want2, sizeof want2) == 0);
  }
  free(sc);
  free(got2);
  ts_kernel_release(ka);
  ts_kernel_release(kt);
}

/* indexer_scores and its tensor-core form (heads and head dim as params:
 * 16 x 32 here, 64 x 128 at V4 width) against f64, odd T and S. */
static void test_indexer_one(const char *name, const char *d0, const char *d1,
                             int64_t HI, int64_t D) {
  ts_kernel *k = num_kernel("kernels/indexer.tile", name, d0, d1);
  if (!k)
    return;
  int64_t T = 37, S = 70;
  int64_t sq[3] = {T, HI, D}, sk[2] = {S, D}, sw[2] = {T, HI}, so[2] = {T, S};
  uint64_t seed = 8;
  ts_tensor *q = num_tensor(TS_DTYPE_BF16, 3, sq), *kk = num_tensor(TS_DTYPE_BF16, 2, sk);
  ts_tensor *w = num_tensor(TS_DTYPE_F32, 2, sw), *o = num_tensor(TS_DTYPE_F32, 2, so);
  double *qv = num_fill(q, -1, 1, &seed), *kv = num_fill(kk, -1, 1, &seed);
  double *wv = num_fill(w, 0, 1, &seed), *want = malloc(T * S * sizeof *want);
  ref_indexer(qv, kv, wv, want, T, HI, D, S, 4);
  ts_arg a[4] = {ts_arg_tensor(q), ts_arg_tensor(kk), ts_arg_tensor(w),
                 ts_arg_tensor(o)};
  num_launch(k, a, 4);
  double *got = num_get(o);
  double num = 0, den = 0;
  bool masks = true;
  for (int64_t i = 0; i < T * S; i++) {
    if (isinf(want[i])) {
      masks &= isinf(got[i]) && got[i] < 0;
      continue;
    }
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  CHECK(masks);
  CHECK_ERR(sqrt(num / den), 1e-5, name);
  free(qv);
  free(kv);
  free(wv);
  free(want);
  free(got);
  ts_tensor_release(q);
  ts_tensor_release(kk);
  ts_tensor_release(w);
  ts_tensor_release(o);
  ts_kernel_release(k);
}

static void test_indexer(void) {
  test_indexer_one("indexer_scores", NULL, NULL, 5, 24);
  test_indexer_one("indexer_scores_tc", "NH=16", "DK=32", 16, 32);
  test_indexer_one("indexer_scores_tc", NULL, NULL, 64, 128);
}

/* ---- RoPE ------------------------------------------------------------------------- */

static void test_rope(void) {
  ts_kernel *kt = num_kernel("kernels/rope.tile", "rope_table", NULL, NULL);
  ts_kernel *ky = num_kernel("kernels/rope.tile", "rope_table",
                             "BASE=160000.0", "YARN=true");
  ts_kernel *kr = num_kernel("kernels/rope.tile", "rope", NULL, NULL);
  ts_kernel *ki = num_kernel("kernels/rope.tile", "rope", "INVERSE=true", NULL);
  if (!kt || !ky || !kr || !ki)
    return;
  int64_t P = 3000, HALF = 32, st[3] = {P, HALF, 2};
  double *want = malloc(P * HALF * 2 * sizeof *want);
  int lo, hi;
  ts_tensor *tab = num_tensor(TS_DTYPE_F32, 3, st);
  ts_kernel *ks[2] = {kt, ky};
  for (int v = 0; v < 2; v++) {
    ts_arg a[1] = {ts_arg_tensor(tab)};
    num_launch(ks[v], a, 1);
    ref_rope_table(want, P, HALF, v ? 160000.0 : 10000.0, v, 16.0, 65536.0,
                   32.0, 1.0, &lo, &hi);
    if (v)
      CHECK(lo == 15 && hi == 25); /* the ramp V4-SPEC 1.2 computes */
    double *got = num_get(tab), worst = 0;
    for (int64_t i = 0; i < P * HALF * 2; i++)
      worst = fmax(worst, fabs(got[i] - want[i]));
    /* f32 angles at positions up to 3000: about 3000 * 2^-24 */
    if (worst > 4e-4)
      fprintf(stderr, "rope table %d: max error %g\n", v, worst);
    CHECK(worst <= 4e-4);
    free(got);
  }
  /* rotate q-like [T, H, 512] tensors at scattered positions, then undo */
  int64_t T = 7, H = 3, D = 512, sx[3] = {T, H, D};
  uint64_t seed = 4;
  ts_tensor *x = num_tensor(TS_DTYPE_BF16, 3, sx), *y = num_tensor(TS_DTYPE_BF16, 3, sx);
  ts_tensor *z = num_tensor(TS_DTYPE_BF16, 3, sx), *pos = num_tensor(TS_DTYPE_I32, 1, &T);
  double *xv = num_fill(x, -2, 2, &seed);
  int32_t *pv = ts_tensor_data(pos);
  for (int64_t t = 0; t < T; t++)
    pv[t] = (int32_t)(t * 431 % P);
  ts_arg a[4] = {ts_arg_tensor(x), ts_arg_tensor(tab), ts_arg_tensor(pos),
                 ts_arg_tensor(y)};
  num_launch(kr, a, 4);
  const float *tv = ts_tensor_data(tab);
  double *w2 = malloc(T * H * D * sizeof *w2);
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < H; h++) {
      const double *xr = xv + (t * H + h) * D;
      double *wr = w2 + (t * H + h) * D;
      for (int64_t c = 0; c < D - 64; c++)
        wr[c] = xr[c];
      for (int64_t i = 0; i < 32; i++) {
        double c = tv[(pv[t] * 32 + i) * 2], s = tv[(pv[t] * 32 + i) * 2 + 1];
        double a0 = xr[D - 64 + 2 * i], a1 = xr[D - 64 + 2 * i + 1];
        wr[D - 64 + 2 * i] = a0 * c - a1 * s;
        wr[D - 64 + 2 * i + 1] = a0 * s + a1 * c;
      }
    }
  double *got = num_get(y);
  CHECK_ERR(num_relerr(got, w2, T * H * D), 5e-3, "rope");
  bool nope_kept = true;
  for (int64_t r = 0; r < T * H; r++)
    for (int64_t c = 0; c < D - 64; c++)
      nope_kept &= got[r * D + c] == xv[r * D + c];
  CHECK(nope_kept);
  ts_arg b[4] = {ts_arg_tensor(y), ts_arg_tensor(tab), ts_arg_tensor(pos),
                 ts_arg_tensor(z)};
  num_launch(ki, b, 4);
  double *back = num_get(z);
  CHECK_ERR(num_relerr(back, xv, T * H * D), 1e-2, "inverse rope");
  free(back);
  free(got);
  free(w2);
  free(xv);
  free(want);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_tensor_release(z);
  ts_tensor_release(pos);
  ts_tensor_release(tab);
  ts_kernel_release(kt);
  ts_kernel_release(ky);
  ts_kernel_release(kr);
  ts_kernel_release(ki);
}

/* ---- the compressor ----------------------------------------------------------------- */

static void test_compress_random(void) {
  ts_kernel *kh = num_kernel("kernels/compressor.tile", "compress_pool", NULL, NULL);
  ts_kernel *kc = num_kernel("kernels/compressor.tile", "compress_pool",
                             "OVERLAP=true", NULL);
  if (!kh || !kc)
    return;
  /* T not a multiple of m: the last partial window makes no entry; E past
   * one block's BE = 64 channels and not a multiple of it */
  struct { int64_t T, E, m; int overlap; ts_kernel *k; } cases[] = {
      {23, 12, 4, 1, kc}, {3, 5, 4, 1, kc}, {300, 7, 128, 0, kh}, {9, 3, 4, 0, kh},
      {41, 70, 4, 1, kc}, {270, 130, 128, 0, kh}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int64_t T = cases[c].T, E = cases[c].E, m = cases[c].m;
    int64_t KE = cases[c].overlap ? 2 * E : E, N = T / m;
    int64_t sc[2] = {T, KE}, sa[2] = {m, KE}, so[2] = {N, E};
    uint64_t seed = 50 + c;
    ts_tensor *tc = num_tensor(TS_DTYPE_F32, 2, sc), *tz = num_tensor(TS_DTYPE_F32, 2, sc);
    ts_tensor *ta = num_tensor(TS_DTYPE_F32, 2, sa), *to = num_tensor(TS_DTYPE_F32, 2, so);
    double *cv = num_fill(tc, -2, 2, &seed), *zv = num_fill(tz, -4, 4, &seed);
    double *av = num_fill(ta, -1, 1, &seed);
    double *want = malloc((N > 0 ? N : 1) * E * sizeof *want);
    ref_compress_pool(cv, zv, av, want, T, E, m, cases[c].overlap);
    ts_arg a[4] = {ts_arg_tensor(tc), ts_arg_tensor(tz), ts_arg_tensor(ta),
                   ts_arg_tensor(to)};
    num_launch(cases[c].k, a, 4);
    if (N > 0) {
      double *got = num_get(to);
      CHECK_ERR(num_relerr(got, want, N * E), 1e-6, "compress_pool");
      free(got);
    }
    free(cv);
    free(zv);
    free(av);
    free(want);
    ts_tensor_release(tc);
    ts_tensor_release(tz);
    ts_tensor_release(ta);
    ts_tensor_release(to);
  }
  ts_kernel_release(kh);
  ts_kernel_release(kc);
}

/* The whole prefill compressor of the tiny model in f32, from the layer's
 * attention input: projections, pooling, norm, RoPE at m i (and the
 * Hadamard for the indexer's keys), against compressor.out. */
static void golden_compressor(ts_safetensors *w, ts_safetensors *f, int layer,
                              const char *which, int ratio, bool hadamard) {
  char n[256], def[64];
  snprintf(n, sizeof n, "prefill.layers.%d.attn.in", layer);
  ts_tensor *x = num_golden_tensor(f, n);
  snprintf(n, sizeof n, "layers.%d.attn.%s.wkv.weight", layer, which);
  ts_tensor *wkv = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "layers.%d.attn.%s.wgate.weight", layer, which);
  ts_tensor *wg = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "layers.%d.attn.%s.ape", layer, which);
  ts_tensor *ape = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "layers.%d.attn.%s.norm.weight", layer, which);
  ts_tensor *nw = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "prefill.layers.%d.attn.%s.out", layer, which);
  ts_tensor *want = num_golden_tensor(f, n);
  if (!x || !wkv || !wg || !ape || !nw || !want)
    return;
  int64_t T = ts_tensor_dim(x, 0), KE = ts_tensor_dim(wkv, 0);
  int64_t E = ts_tensor_dim(nw, 0), N = T / ratio;
  int64_t sc[2] = {T, KE}, so[2] = {N, E}, st[3] = {T, 32, 2};
  ts_tensor *c = num_tensor(TS_DTYPE_F32, 2, sc), *z = num_tensor(TS_DTYPE_F32, 2, sc);
  ts_tensor *comp = num_tensor(TS_DTYPE_F32, 2, so), *out = num_tensor(TS_DTYPE_F32, 2, so);
  ts_tensor *tab = num_tensor(TS_DTYPE_F32, 3, st);
  ts_kernel *lin = num_kernel("kernels/gemm.tile", "linear_f32", NULL, NULL);
  ts_kernel *pool = num_kernel("kernels/compressor.tile", "compress_pool",
                               ratio == 4 ? "OVERLAP=true" : NULL, NULL);
  snprintf(def, sizeof def, "RATIO=%d", ratio);
  ts_kernel *fin = num_kernel("kernels/compressor.tile",
                              "compress_norm_rope_f32", def, NULL);
  /* the compressed layers' table: base 160000 with YaRN, factor 4 from
   * 256 positions (tiny config) */
  ts_kernel *rt = num_kernel("kernels/rope.tile", "rope_table",
                             "BASE=160000.0", "YARN=true");
  ts_kernel *yt = NULL;
  if (rt) {
    ts_kernel_release(rt);
    ts_define d[4] = {{"BASE", "160000.0"}, {"YARN", "true"}, {"FACTOR", "4.0"},
                      {"L0", "256.0"}};
    ts_diags dg;
    ts_diags_init(&dg, ts_allocator_system());
    const char *root = getenv("TS_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/kernels/rope.tile", root ? root : ".");
    ts_status st2 = ts_kernel_create(num_kdev, path, "rope_table", d, 4, &dg, &yt);
    CHECK(st2 == NULL);
    ts_status_free(st2);
    ts_diags_deinit(&dg);
  }
  ts_kernel *had = hadamard ? num_kernel("kernels/hadamard.tile", "hadamard",
                                         "XT=f32", NULL) : NULL;
  if (lin && pool && fin && yt && (!hadamard || had)) {
    ts_arg a1[3] = {ts_arg_tensor(x), ts_arg_tensor(wkv), ts_arg_tensor(c)};
    num_launch(lin, a1, 3);
    ts_arg a2[3] = {ts_arg_tensor(x), ts_arg_tensor(wg), ts_arg_tensor(z)};
    num_launch(lin, a2, 3);
    ts_arg a3[4] = {ts_arg_tensor(c), ts_arg_tensor(z), ts_arg_tensor(ape),
                    ts_arg_tensor(comp)};
    num_launch(pool, a3, 4);
    ts_arg a4[1] = {ts_arg_tensor(tab)};
    num_launch(yt, a4, 1);
    ts_arg a5[5] = {ts_arg_tensor(comp), ts_arg_tensor(nw), ts_arg_tensor(tab),
                    ts_arg_tensor(out), ts_arg_int(0)};
    num_launch(fin, a5, 5);
    if (hadamard) {
      ts_arg a6[2] = {ts_arg_tensor(out), ts_arg_tensor(comp)};
      num_launch(had, a6, 2);
    }
    double *got = num_get(hadamard ? comp : out), *wv = num_get(want);
    snprintf(n, sizeof n, "golden layer %d %s", layer, which);
    CHECK_ERR(num_relerr(got, wv, N * E), 1e-5, n);
    free(got);
    free(wv);
  }
  ts_kernel_release(lin);
  ts_kernel_release(pool);
  ts_kernel_release(fin);
  ts_kernel_release(yt);
  ts_kernel_release(had);
  ts_tensor_release(x);
  ts_tensor_release(wkv);
  ts_tensor_release(wg);
  ts_tensor_release(ape);
  ts_tensor_release(nw);
  ts_tensor_release(want);
  ts_tensor_release(c);
  ts_tensor_release(z);
  ts_tensor_release(comp);
  ts_tensor_release(out);
  ts_tensor_release(tab);
}

static void test_golden_compressor(void) {
  ts_safetensors *w = num_golden_open("weights.safetensors");
  ts_safetensors *f = num_golden_open("f32.safetensors");
  if (w && f) {
    golden_compressor(w, f, 1, "compressor", 4, false);
    golden_compressor(w, f, 1, "indexer.compressor", 4, true);
    golden_compressor(w, f, 2, "compressor", 128, false);
  }
  if (w)
    ts_safetensors_close(w);
  if (f)
    ts_safetensors_close(f);
}

int main(void) {
  num_init();
  ts_kernel *k8 = NULL, *k4 = NULL, *kh = NULL, *khf = NULL;
  if (num_want("quant")) {
    k8 = num_kernel("kernels/quant.tile", "fp8_sim", NULL, NULL);
    k4 = num_kernel("kernels/quant.tile", "fp4_sim", NULL, NULL);
    kh = num_kernel("kernels/hadamard.tile", "hadamard", NULL, NULL);
    khf = num_kernel("kernels/hadamard.tile", "hadamard", "XT=f32", NULL);
  }
  if (k8 && k4 && kh && khf) {
    test_sim_random(k8, true);
    test_sim_random(k4, false);
    test_hadamard_random(kh, khf);
    test_golden(k8, k4, kh, khf);
  }
  if (num_want("attn")) {
    ts_kernel *kb = num_kernel("kernels/sparse_attn.tile", "sparse_attn", NULL, NULL);
    ts_kernel *kf = num_kernel("kernels/sparse_attn.tile", "sparse_attn_f32", "NH=3 DC=40", NULL);
    if (kb && kf)
      test_attn_random(kb, kf);
    test_mhc_pre_random();
    ts_kernel_release(kb);
    ts_kernel_release(kf);
  }
  static const struct {
    const char *name;
    void (*run)(void);
  } groups[] = {{"golden_attn_mhc", test_golden_attn_mhc},
                {"topk", test_topk},
                {"indexer", test_indexer},
                {"attn_tc", test_attn_tc},
                {"flash_sizes", test_flash_sizes},
                {"hca", test_hca},
                {"argmax", test_argmax},
                {"hc_head", test_hc_head},
                {"mhc_tf32", test_mhc_mix_tf32},
                {"hc_post_mix", test_hc_post_mix},
                {"hc_post_mix_last", test_hc_post_mix_last},
                {"rope", test_rope},
                {"compress", test_compress_random},
                {"golden_compressor", test_golden_compressor},
                {"golden_mhc_layer0", test_golden_mhc_layer0}};
  const char *names[2 + sizeof groups / sizeof groups[0]] = {"quant", "attn"};
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
    names[2 + i] = groups[i].name;
  num_want_known(names, sizeof names / sizeof names[0]);
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
    if (num_want(groups[i].name))
      groups[i].run();
  ts_kernel_release(k8);
  ts_kernel_release(k4);
  ts_kernel_release(kh);
  ts_kernel_release(khf);
  num_finish();
  return ts_test_finish();
}
