/* cpu_kernels.c - the V4 kernels on the CPU, each at a tiny-model shape and
 * at a V4-Flash shape, against the plain C references of tests/ref/ run in
 * the same process on the same data (one thread; the references are the
 * straightforward loops of V4-SPEC, in f64 where the spec computes in f64).
 * Prints time, the achieved rate (GFLOP/s for attention, GB/s for the
 * memory-bound kernels) and Tessera's speed-up over the reference. Run from
 * the source root. */
#include "bench/bench.h"
#include "tests/ref/v4_ref.h"

#include <math.h>
#include <string.h>

static uint64_t seed = 1;
static double rnd(void) {
  seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(seed >> 11) / 9007199254740992.0 * 2 - 1;
}

static ts_tensor *tensor(ts_device *d, ts_dtype dt, uint32_t rank,
                         const int64_t *shape) {
  ts_tensor *t;
  if (ts_tensor_create(d, dt, rank, shape, &t))
    exit(2);
  return t;
}

/* Random values in the tensor and, rounded the same way, in `mirror`. */
static void fill(ts_tensor *t, double *mirror, double scale) {
  for (int64_t i = 0; i < ts_tensor_count(t); i++) {
    ts_tensor_set(t, i, rnd() * scale);
    if (mirror)
      mirror[i] = ts_tensor_get(t, i);
  }
}

typedef struct job {
  ts_kernel *k;
  ts_arg a[8];
  int n;
  void (*ref)(struct job *);
  /* reference inputs */
  double *q, *kv, *sink, *o, *x, *y;
  int32_t *idx;
  float *f;
  int64_t T, H, C, S, K, D;
} job;

static void run_k(void *v) {
  job *j = v;
  ts_status st = ts_kernel_launch(j->k, j->a, (size_t)j->n);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(1);
  }
}

static void run_ref(void *v) {
  job *j = v;
  j->ref(j);
}

static void ref_attn(job *j) {
  ref_sparse_attn(j->q, j->kv, j->idx, j->sink, j->o, j->T, j->H, j->C, j->S,
                  j->K, 0.04419417382415922);
}
static void ref_had(job *j) { ref_hadamard(j->x, j->y, j->T, 128); }
static void ref_fp8(job *j) { ref_fp8_sim(j->f, j->T, j->D, 64); }
static void ref_top(job *j) {
  for (int64_t r = 0; r < j->T; r++)
    ref_topk(j->f + r * j->S, j->S, j->K, j->idx + r * j->K);
}
static void ref_arg(job *j) {
  for (int64_t r = 0; r < j->T; r++) {
    float best = -INFINITY;
    int32_t at = 0;
    for (int64_t i = 0; i < j->S; i++)
      if (j->f[r * j->S + i] > best) {
        best = j->f[r * j->S + i];
        at = (int32_t)i;
      }
    j->idx[r] = at;
  }
}

/* Indexer scores without the causal bound: sum_h w relu(q . k). */
static void ref_idx(job *j) {
  for (int64_t t = 0; t < j->T; t++)
    for (int64_t s = 0; s < j->S; s++) {
      double acc = 0;
      for (int64_t h = 0; h < j->H; h++) {
        double d = 0;
        for (int64_t c = 0; c < j->D; c++)
          d += j->q[(t * j->H + h) * j->D + c] * j->kv[s * j->D + c];
        acc += j->sink[t * j->H + h] * (d > 0 ? d : 0);
      }
      j->o[t * j->S + s] = acc;
    }
}

/* RoPE on the last 2 HALF dims of each head (HALF = K), table in y. */
static void ref_rope(job *j) {
  int64_t half = j->K, base = j->D - 2 * half;
  for (int64_t t = 0; t < j->T; t++)
    for (int64_t h = 0; h < j->H; h++) {
      double *v = j->x + (t * j->H + h) * j->D;
      /* the same work as the kernel: every dim written */
      memcpy(j->o + (t * j->H + h) * j->D, v, sizeof(double) * (size_t)base);
      for (int64_t i = 0; i < half; i++) {
        double c = j->y[(t * half + i) * 2], sn = j->y[(t * half + i) * 2 + 1];
        double a = v[base + 2 * i], b = v[base + 2 * i + 1];
        j->o[(t * j->H + h) * j->D + base + 2 * i] = a * c - b * sn;
        j->o[(t * j->H + h) * j->D + base + 2 * i + 1] = a * sn + b * c;
      }
    }
}

static void report(const char *name, const char *shape, job *j, double work,
                   const char *unit) {
  double tk = bench_median(run_k, j, 5, 0.3);
  double tr = bench_median(run_ref, j, 3, 0.3);
  printf("| %s | %s | %.3f | %.2f %s | %.3f | %.2f %s | %.1fx |\n", name, shape,
         tk * 1e3, work / tk / 1e9, unit, tr * 1e3, work / tr / 1e9, unit,
         tr / tk);
  fflush(stdout);
}

/* sparse_attn (bf16) over T tokens, H heads of C, K listed entries. */
static void bench_attn(ts_device *d, ts_kernel *k, const char *shape,
                       int64_t T, int64_t H, int64_t C, int64_t S, int64_t K) {
  job j = {.k = k, .n = 5, .ref = ref_attn, .T = T, .H = H, .C = C, .S = S,
           .K = K};
  int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, si[2] = {T, K};
  ts_tensor *q = tensor(d, TS_DTYPE_BF16, 3, sq), *kv = tensor(d, TS_DTYPE_BF16, 2, skv);
  ts_tensor *idx = tensor(d, TS_DTYPE_I32, 2, si), *o = tensor(d, TS_DTYPE_BF16, 3, sq);
  ts_tensor *sink = tensor(d, TS_DTYPE_F32, 1, &H);
  j.q = malloc(sizeof(double) * (size_t)(T * H * C));
  j.kv = malloc(sizeof(double) * (size_t)(S * C));
  j.o = malloc(sizeof(double) * (size_t)(T * H * C));
  j.sink = malloc(sizeof(double) * (size_t)H);
  j.idx = ts_tensor_data(idx);
  fill(q, j.q, 1);
  fill(kv, j.kv, 1);
  fill(sink, j.sink, 0.5);
  for (int64_t i = 0; i < T * K; i++)
    j.idx[i] = (int32_t)((i * 37) % S);
  ts_arg a[5] = {ts_arg_tensor(q), ts_arg_tensor(kv), ts_arg_tensor(idx),
                 ts_arg_tensor(sink), ts_arg_tensor(o)};
  memcpy(j.a, a, sizeof a);
  report("sparse_attn bf16", shape, &j, 4.0 * (double)(T * H * C * K), "GFLOP/s");
  free(j.q);
  free(j.kv);
  free(j.o);
  free(j.sink);
  ts_tensor_release(q);
  ts_tensor_release(kv);
  ts_tensor_release(idx);
  ts_tensor_release(o);
  ts_tensor_release(sink);
}

/* hca_attn (bf16): a window of W, N compressed entries read in place; the
 * reference runs the equivalent index list. */
static void bench_hca(ts_device *d, ts_kernel *k, const char *shape, int64_t T,
                      int64_t H, int64_t C, int64_t W, int64_t N) {
  int64_t S = W, K = W + N;
  job j = {.k = k, .n = 7, .ref = ref_attn, .T = T, .H = H, .C = C,
           .S = S + N, .K = K};
  int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, sc[2] = {N, C}, sw[2] = {T, W};
  ts_tensor *q = tensor(d, TS_DTYPE_BF16, 3, sq), *kv = tensor(d, TS_DTYPE_BF16, 2, skv);
  ts_tensor *comp = tensor(d, TS_DTYPE_BF16, 2, sc), *o = tensor(d, TS_DTYPE_BF16, 3, sq);
  ts_tensor *win = tensor(d, TS_DTYPE_I32, 2, sw), *nc = tensor(d, TS_DTYPE_I32, 1, &T);
  ts_tensor *sink = tensor(d, TS_DTYPE_F32, 1, &H);
  j.q = malloc(sizeof(double) * (size_t)(T * H * C));
  j.kv = malloc(sizeof(double) * (size_t)((S + N) * C));
  j.o = malloc(sizeof(double) * (size_t)(T * H * C));
  j.sink = malloc(sizeof(double) * (size_t)H);
  j.idx = malloc(sizeof(int32_t) * (size_t)(T * K));
  fill(q, j.q, 1);
  fill(kv, j.kv, 1);
  fill(comp, j.kv + S * C, 1);
  fill(sink, j.sink, 0.5);
  int32_t *wv = ts_tensor_data(win), *nv = ts_tensor_data(nc);
  for (int64_t t = 0; t < T; t++) {
    nv[t] = (int32_t)N;
    for (int64_t i = 0; i < W; i++)
      j.idx[t * K + i] = wv[t * W + i] = (int32_t)i;
    for (int64_t i = 0; i < N; i++)
      j.idx[t * K + W + i] = (int32_t)(S + i);
  }
  ts_arg a[7] = {ts_arg_tensor(q),    ts_arg_tensor(kv), ts_arg_tensor(win),
                 ts_arg_tensor(comp), ts_arg_tensor(nc), ts_arg_tensor(sink),
                 ts_arg_tensor(o)};
  memcpy(j.a, a, sizeof a);
  report("hca_attn bf16", shape, &j, 4.0 * (double)(T * H * C * K), "GFLOP/s");
  free(j.q);
  free(j.kv);
  free(j.o);
  free(j.sink);
  free(j.idx);
  ts_tensor_release(q);
  ts_tensor_release(kv);
  ts_tensor_release(comp);
  ts_tensor_release(o);
  ts_tensor_release(win);
  ts_tensor_release(nc);
  ts_tensor_release(sink);
}

/* Launches k on two tensors or exits. */
static void launch2(ts_kernel *k, ts_tensor *a, ts_tensor *b) {
  ts_arg args[2] = {ts_arg_tensor(a), ts_arg_tensor(b)};
  ts_status st = ts_kernel_launch(k, args, 2);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    exit(1);
  }
}

/* x [n, D] f32 in the indexer's FP4 format (quant.tile fp4_pack), and its
 * values as they decode into mirror (the reference reads those). */
static ts_tensor *fp4_rows(ts_device *d, ts_kernel *pack, ts_kernel *unpack, ts_tensor *x,
                           double *mirror) {
  int64_t n = ts_tensor_dim(x, 0), D = ts_tensor_dim(x, 1);
  int64_t sb[2] = {n, D / 2 + D / 32};
  ts_tensor *b = tensor(d, TS_DTYPE_I8, 2, sb), *u = tensor(d, TS_DTYPE_F32, 2, (int64_t[]){n, D});
  launch2(pack, x, b);
  launch2(unpack, b, u);
  for (int64_t i = 0; i < n * D; i++)
    mirror[i] = ts_tensor_get(u, i);
  ts_tensor_release(u);
  return b;
}

/* The indexer for T queries at a position past every key, its keys f32
 * (fp4 0: indexer_scores_f32) or FP4 bytes with f32 queries (1:
 * indexer_scores_fp4_f32) or FP4 queries (2: indexer_scores_fp4, i8
 * GEMMs); the reference over the same (decoded) values. */
static void bench_indexer(ts_device *d, ts_kernel *k, int fp4, const char *shape, int64_t T,
                          int64_t HI, int64_t D, int64_t S) {
  static const char *names[3] = {"indexer_scores f32", "indexer_scores_fp4_f32",
                                 "indexer_scores_fp4 (i8)"};
  job j = {.k = k, .n = 5, .ref = ref_idx, .T = T, .H = HI, .D = D, .S = S};
  int64_t sq[2] = {T * HI, D}, sk[2] = {S, D}, sw[2] = {T, HI}, so[2] = {T, S};
  ts_tensor *q = tensor(d, TS_DTYPE_F32, 2, sq), *kk = tensor(d, TS_DTYPE_F32, 2, sk);
  ts_tensor *w = tensor(d, TS_DTYPE_F32, 2, sw), *pos = tensor(d, TS_DTYPE_I32, 1, &T);
  ts_tensor *o = tensor(d, TS_DTYPE_F32, 2, so);
  j.q = malloc(sizeof(double) * (size_t)(T * HI * D));
  j.kv = malloc(sizeof(double) * (size_t)(S * D));
  j.sink = malloc(sizeof(double) * (size_t)(T * HI));
  j.o = malloc(sizeof(double) * (size_t)(T * S));
  fill(q, j.q, 1);
  fill(kk, j.kv, 1);
  fill(w, j.sink, 1);
  ts_tensor *qa = ts_tensor_retain(q), *ka = ts_tensor_retain(kk);
  if (fp4) { /* the values as the FP4 bytes hold them */
    ts_kernel *pack = bench_kernel(d, "kernels/quant.tile", "fp4_pack");
    ts_kernel *unpack = bench_kernel(d, "kernels/quant.tile", "fp4_unpack");
    ts_tensor *qb = fp4_rows(d, pack, unpack, q, j.q);
    ts_tensor_release(ka);
    ka = fp4_rows(d, pack, unpack, kk, j.kv);
    if (fp4 == 2) {
      ts_tensor_release(qa);
      qa = qb;
    } else {
      for (int64_t i = 0; i < T * HI * D; i++)
        ts_tensor_set(qa, i, j.q[i]);
      ts_tensor_release(qb);
    }
    ts_kernel_release(pack);
    ts_kernel_release(unpack);
  }
  ts_tensor *q3;
  int64_t s3[3] = {T, HI, ts_tensor_dim(qa, 1)};
  if (ts_tensor_reshape(qa, 3, s3, &q3))
    exit(2);
  for (int64_t t = 0; t < T; t++)
    ((int32_t *)ts_tensor_data(pos))[t] = (int32_t)(4 * S + t);
  /* (indexer_scores_f32 and _fp4 also take each query's first key row: 0) */
  ts_tensor *kbase = tensor(d, TS_DTYPE_I32, 1, &T);
  for (int64_t t = 0; t < T; t++)
    ((int32_t *)ts_tensor_data(kbase))[t] = 0;
  ts_arg a[6] = {ts_arg_tensor(q3), ts_arg_tensor(ka), ts_arg_tensor(w), ts_arg_tensor(pos),
                 ts_arg_tensor(fp4 != 1 ? kbase : o), ts_arg_tensor(o)};
  j.n = fp4 != 1 ? 6 : 5;
  memcpy(j.a, a, sizeof a);
  report(names[fp4], shape, &j, 2.0 * (double)(T * HI * D * S), "GFLOP/s");
  free(j.q);
  free(j.kv);
  free(j.sink);
  free(j.o);
  ts_tensor *ts[] = {q, kk, w, pos, o, qa, ka, q3, kbase};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    ts_tensor_release(ts[i]);
}

/* rope (bf16) on T tokens of H heads of D, the last 2 HALF dims rotated. */
static void bench_rope(ts_device *d, ts_kernel *k, const char *shape, int64_t T,
                       int64_t H, int64_t D, int64_t HALF) {
  job j = {.k = k, .n = 4, .ref = ref_rope, .T = T, .H = H, .D = D, .K = HALF};
  int64_t sx[3] = {T, H, D}, st[3] = {T, HALF, 2};
  ts_tensor *x = tensor(d, TS_DTYPE_BF16, 3, sx), *y = tensor(d, TS_DTYPE_BF16, 3, sx);
  ts_tensor *tab = tensor(d, TS_DTYPE_F32, 3, st), *pos = tensor(d, TS_DTYPE_I32, 1, &T);
  j.x = malloc(sizeof(double) * (size_t)(T * H * D));
  j.o = malloc(sizeof(double) * (size_t)(T * H * D));
  j.y = malloc(sizeof(double) * (size_t)(T * HALF * 2));
  fill(x, j.x, 2);
  for (int64_t t = 0; t < T; t++) {
    ((int32_t *)ts_tensor_data(pos))[t] = (int32_t)t;
    for (int64_t i = 0; i < HALF; i++) {
      double a = (double)t * pow(10000.0, -(double)i / (double)HALF);
      ts_tensor_set(tab, (t * HALF + i) * 2, cos(a));
      ts_tensor_set(tab, (t * HALF + i) * 2 + 1, sin(a));
      j.y[(t * HALF + i) * 2] = ts_tensor_get(tab, (t * HALF + i) * 2);
      j.y[(t * HALF + i) * 2 + 1] = ts_tensor_get(tab, (t * HALF + i) * 2 + 1);
    }
  }
  ts_arg a[4] = {ts_arg_tensor(x), ts_arg_tensor(tab), ts_arg_tensor(pos),
                 ts_arg_tensor(y)};
  memcpy(j.a, a, sizeof a);
  report("rope bf16", shape, &j, 4.0 * (double)(T * H * D), "GB/s");
  free(j.x);
  free(j.o);
  free(j.y);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_tensor_release(tab);
  ts_tensor_release(pos);
}

/* An elementwise-sized kernel over rows x width of bf16 (read + write):
 * hadamard (width 128) or fp8_sim. */
static void bench_rows(ts_device *d, ts_kernel *k, const char *name,
                       const char *shape, int64_t T, int64_t D, bool had) {
  job j = {.k = k, .n = 2, .ref = had ? ref_had : ref_fp8, .T = T, .D = D};
  int64_t s2[2] = {T, D};
  ts_tensor *x = tensor(d, TS_DTYPE_BF16, 2, s2), *y = tensor(d, TS_DTYPE_BF16, 2, s2);
  j.x = malloc(sizeof(double) * (size_t)(T * D));
  j.y = malloc(sizeof(double) * (size_t)(T * D));
  j.f = malloc(sizeof(float) * (size_t)(T * D));
  fill(x, j.x, 4);
  for (int64_t i = 0; i < T * D; i++)
    j.f[i] = (float)j.x[i];
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  memcpy(j.a, a, sizeof a);
  report(name, shape, &j, 4.0 * (double)(T * D), "GB/s");
  free(j.x);
  free(j.y);
  free(j.f);
  ts_tensor_release(x);
  ts_tensor_release(y);
}

/* topk (K of N per row) or argmax over R rows of f32 scores. */
static void bench_select(ts_device *d, ts_kernel *k, const char *name,
                         const char *shape, int64_t R, int64_t N, int64_t K) {
  bool top = K > 0;
  job j = {.k = k, .n = top ? 3 : 2, .ref = top ? ref_top : ref_arg, .T = R,
           .S = N, .K = K};
  int64_t s2[2] = {R, N}, so[2] = {R, top ? K : 1};
  ts_tensor *x = tensor(d, TS_DTYPE_F32, 2, s2), *len = tensor(d, TS_DTYPE_I32, 1, &R);
  ts_tensor *out = tensor(d, TS_DTYPE_I32, top ? 2 : 1, so);
  j.f = ts_tensor_data(x);
  for (int64_t i = 0; i < R * N; i++)
    j.f[i] = (float)rnd();
  for (int64_t r = 0; r < R; r++)
    ((int32_t *)ts_tensor_data(len))[r] = (int32_t)N;
  j.idx = malloc(sizeof(int32_t) * (size_t)(R * (top ? K : 1)));
  if (top) {
    ts_arg a[3] = {ts_arg_tensor(x), ts_arg_tensor(len), ts_arg_tensor(out)};
    memcpy(j.a, a, sizeof a);
  } else {
    ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(out)};
    memcpy(j.a, a, sizeof a);
  }
  report(name, shape, &j, 4.0 * (double)(R * N), "GB/s");
  free(j.idx);
  ts_tensor_release(x);
  ts_tensor_release(len);
  ts_tensor_release(out);
}

int main(void) {
  ts_device *dev;
  if (ts_device_create_cpu(0, &dev))
    return 2;
  printf("# V4 kernels on the CPU (%d threads) against the plain C references "
         "(tests/ref/, one thread, f64 where the spec is)\n\n",
         ts_device_thread_count(dev));
  printf("| kernel | shape | Tessera ms | Tessera rate | reference ms | "
         "reference rate | speed-up |\n|---|---|---|---|---|---|---|\n");
  ts_kernel *sa = bench_kernel(dev, "kernels/sparse_attn.tile", "sparse_attn");
  bench_attn(dev, sa, "tiny: 16 tok, 4 x 128, 144 entries", 16, 4, 128, 300, 144);
  bench_attn(dev, sa, "Flash decode: 4 tok, 64 x 512, 640 entries", 4, 64, 512,
             4096, 640);
  ts_kernel *ha = bench_kernel(dev, "kernels/hca_attn.tile", "hca_attn");
  bench_hca(dev, ha, "tiny: 16 tok, 4 x 128, 128 + 8", 16, 4, 128, 128, 8);
  bench_hca(dev, ha, "Flash decode: 2 tok, 64 x 512, 128 + 2048", 2, 64, 512,
            128, 2048);
  /* its heads and head dim are params (constant tile shapes) */
  ts_kernel *ix = bench_kernel_with(dev, "kernels/indexer.tile", "indexer_scores_f32",
                                    (ts_define[]){{"NH", "4"}, {"DK", "64"}}, 2);
  bench_indexer(dev, ix, 0, "tiny: 16 q, 4 x 64, 128 keys", 16, 4, 64, 128);
  ts_kernel_release(ix);
  ix = bench_kernel(dev, "kernels/indexer.tile", "indexer_scores_f32");
  bench_indexer(dev, ix, 0, "Flash decode: 1 q, 64 x 128, 32768 keys (128K tokens)", 1,
                64, 128, 32768);
  for (int fq = 0; fq < 2; fq++) {
    ts_kernel *k4 = bench_kernel(dev, "kernels/indexer.tile",
                                 fq ? "indexer_scores_fp4" : "indexer_scores_fp4_f32");
    bench_indexer(dev, k4, 1 + fq, "Flash decode: 1 q, 64 x 128, 32768 FP4 keys (128K tokens)",
                  1, 64, 128, 32768);
    ts_kernel_release(k4);
  }
  ts_kernel *rp = bench_kernel(dev, "kernels/rope.tile", "rope");
  bench_rope(dev, rp, "tiny: 16 tok, 4 x 128, rope 64", 16, 4, 128, 32);
  bench_rope(dev, rp, "Flash: 64 tok, 64 x 512, rope 64", 64, 64, 512, 32);
  ts_kernel *hd = bench_kernel(dev, "kernels/hadamard.tile", "hadamard");
  bench_rows(dev, hd, "hadamard bf16", "tiny: 64 x 128", 64, 128, true);
  bench_rows(dev, hd, "hadamard bf16", "Flash: 16384 x 128", 16384, 128, true);
  ts_kernel *f8 = bench_kernel(dev, "kernels/quant.tile", "fp8_sim");
  bench_rows(dev, f8, "fp8_sim bf16", "tiny: 64 x 512", 64, 512, false);
  bench_rows(dev, f8, "fp8_sim bf16", "Flash: 1024 x 4096", 1024, 4096, false);
  ts_kernel *t64 = bench_kernel_with(dev, "kernels/topk.tile", "topk",
                                     (ts_define[]){{"K", "64"}}, 1);
  ts_kernel *t512 = bench_kernel_with(dev, "kernels/topk.tile", "topk",
                                      (ts_define[]){{"K", "512"}}, 1);
  bench_select(dev, t64, "topk", "tiny: 4 rows, 64 of 512", 4, 512, 64);
  bench_select(dev, t512, "topk", "Flash: 2 rows, 512 of 131072", 2, 131072, 512);
  ts_kernel *am = bench_kernel(dev, "kernels/argmax.tile", "argmax");
  bench_select(dev, am, "argmax", "tiny: 1 x 256", 1, 256, 0);
  bench_select(dev, am, "argmax", "V4: 4 x 129280", 4, 129280, 0);
  ts_kernel *ks[] = {sa, ha, ix, rp, hd, f8, t64, t512, am};
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
    ts_kernel_release(ks[i]);
  ts_device_release(dev);
  return 0;
}
