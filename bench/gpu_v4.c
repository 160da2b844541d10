/* gpu_v4.c - DeepSeek-V4's kernels on the CUDA device at V4-Flash shapes,
 * each timed by CUDA events (median of 10 launches after a warm-up) next to
 * its baseline from the same run:
 *   - the FP8 GEMM (e4m3, block scales) against the bf16 one and the fp8
 *     peak (twice the bf16 one);
 *   - a plain copy kernel (bench/gpu.tile): the bandwidth a memory-bound
 *     kernel is judged against ("of copy"), beside the device's nominal HBM
 *     figure when its name says it;
 *   - sparse attention decode (64 heads x 512, 512 selected + 128 window
 *     entries, batch 1-64): bytes moved / time as a fraction of the copy's,
 *     and the split-KV form's range count swept at batch 1 and 8; the
 *     split form reading the fp8 KV cache's bytes against the bf16 one;
 *     prefill (4096 queries) as a fraction of the dense bf16 peak;
 *   - the indexer's scores and top-k at 128K and 1M compressed entries (and
 *     the scores reading FP4 keys against bf16 ones), and
 *     the MoE layer (256 experts, top-6, d 4096, width 2048): against
 *     PyTorch references timed in the same run (bench/gpu_torch.py), when
 *     python3 has torch and the GPU; a decode step's routed experts in
 *     bf16, FP4 and FP8 against the copy (those two in gpu_v4_moe.c);
 *   - mHC pre/post and the compressor's pooling against the copy;
 *   - the f32 linear in TF32 on tensor cores against the scalar f32 one;
 *   - the million-token layer: one decode step of a V4-Flash CSA, HCA and
 *     dense attention layer at 128K, 512K and 1M tokens of context, with
 *     the KV bytes each allocates, with bf16 caches and in V4's formats.
 * Before timing, each kernel's output on a small odd shape is compared with
 * the same kernel on the CPU (the CPU form is checked against C references
 * by the test suites); a mismatch stops the run. Markdown on stdout; without
 * a GPU it says so and exits 0. From the source root:
 *   build/bench/gpu_v4 [--quick] [--no-check | --check-only]
 * --quick: small shapes (the plumbing, e.g. against tests/cuda_mock);
 * --check-only: the checks alone (with TS_TEST_DEVICE=gpusim, on the GPU
 * simulator: how the test suite runs them without a GPU). */
#include "bench/gpu_v4.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

ts_device *gpu, *host;
bool quick, check = true, check_only;
double copy_bps;
int failed_checks;
double hbm_bps;
double peak_flops;

void die(ts_status st, const char *what) { bench_check(st, "gpu_v4", what); }

/* Kernel `name` of `file` for device d, with "A=1 B=2" params. */
ts_kernel *kern(ts_device *d, const char *file, const char *name, const char *defs) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", defs ? defs : "");
  ts_define dv[8];
  size_t nd = 0;
  for (char *s = strtok(buf, " "); s && nd < 8; s = strtok(NULL, " ")) {
    char *eq = strchr(s, '=');
    if (!eq)
      continue;
    *eq = 0;
    dv[nd++] = (ts_define){s, eq + 1};
  }
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  ts_kernel *k;
  ts_status st = ts_kernel_create(d, file, name, dv, nd, &diags, &k);
  if (st) {
    ts_diags_render(&diags, stderr, (ts_render_options){false, true});
    die(st, name);
  }
  ts_diags_deinit(&diags);
  return k;
}

/* kern() on the GPU, compiled once for the run: the same (file, name,
 * params) gives the same kernel, kept to the end (the caller does not
 * release it). */
static ts_kernel *gpu_kern(const char *file, const char *name, const char *defs) {
  static struct {
    char key[160];
    ts_kernel *k;
  } seen[48];
  static int n;
  char key[160];
  snprintf(key, sizeof key, "%s:%s:%s", file, name, defs ? defs : "");
  for (int i = 0; i < n; i++)
    if (!strcmp(seen[i].key, key))
      return seen[i].k;
  if (n == (int)(sizeof seen / sizeof seen[0]))
    die(ts_status_make(TS_ERR_INVALID, "more kernels than gpu_kern keeps"), name);
  snprintf(seen[n].key, sizeof seen[n].key, "%s", key);
  seen[n].k = kern(gpu, file, name, defs);
  return seen[n++].k;
}

ts_tensor *tensor(ts_device *d, ts_dtype dt, uint32_t rank, const int64_t *shape) {
  ts_tensor *t;
  ts_status st = ts_tensor_create(d, dt, rank, shape, &t);
  if (st)
    die(st, "a tensor");
  return t;
}

/* Random values in [-scale, scale): on the host element by element, on the
 * GPU by bench/gpu.tile's fill kernels. */
static void fill(ts_tensor *t, int seed, double scale) {
  if (ts_tensor_device(t) == host) {
    uint64_t s = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int64_t i = 0; i < ts_tensor_count(t); i++) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      ts_tensor_set(t, i, ((double)(s >> 11) / 9007199254740992.0 * 2 - 1) * scale);
    }
    return;
  }
  ts_dtype dt = ts_tensor_dtype(t);
  ts_kernel *k = gpu_kern(
      "bench/gpu.tile",
      dt == TS_DTYPE_BF16 ? "rand_bf16" : dt == TS_DTYPE_FP8E4M3 ? "rand_fp8" : "rand_f32", NULL);
  int64_t n = ts_tensor_count(t);
  ts_tensor *flat;
  ts_status st = ts_tensor_reshape(t, 1, &n, &flat);
  ts_arg a[3] = {ts_arg_tensor(flat), ts_arg_int(seed), ts_arg_float(scale)};
  if (st || (st = ts_kernel_launch(k, a, 3)))
    die(st, "a random fill");
  ts_tensor_release(flat);
}

/* A tensor on d filled with random values. */
ts_tensor *rnd(ts_device *d, ts_dtype dt, uint32_t rank, const int64_t *shape, int seed,
               double scale) {
  ts_tensor *t = tensor(d, dt, rank, shape);
  fill(t, seed, scale);
  return t;
}

/* A host tensor's f32 values made TF32-exact (the operands of a check of a
 * tf32=true gemm, which then does not depend on how the tensor cores
 * convert a raw f32 word: tf32_probe measures that). */
static ts_tensor *tf32_exact(ts_tensor *t) {
  for (int64_t i = 0; i < ts_tensor_count(t); i++)
    ts_tensor_set(t, i, ts_f32_tf32((float)ts_tensor_get(t, i)));
  return t;
}

/* Host i32 tensor -> a copy on the GPU. */
ts_tensor *to_gpu(ts_tensor *t) { return bench_copy(t, gpu, "gpu_v4"); }

/* An i32 tensor [1] holding v, on the GPU. */
static ts_tensor *gpu_int(int64_t v) {
  ts_tensor *h = tensor(host, TS_DTYPE_I32, 1, (int64_t[]){1});
  ts_tensor_set(h, 0, (double)v);
  ts_tensor *g = to_gpu(h);
  ts_tensor_release(h);
  return g;
}

/* Median seconds of 10 launches (3 with --quick) after a warm-up. */
double timed(ts_kernel *k, const ts_arg *a, size_t n) {
  return bench_gpu_median(k, a, n, quick ? 3 : 10, "gpu_v4");
}

/* The kernel on a small shape on the GPU and on the CPU (args: host
 * tensors, copied to the GPU; arg `out` compared): a relative L2 difference
 * past `tol` is reported as a failed check (its timings below mean nothing;
 * the run goes on so that a lent GPU's time still yields the rest, and the
 * program exits 1 at the end). */
void differential(const char *file, const char *name, const char *defs, ts_arg *args, size_t n,
                  size_t out, double tol) {
  if (!check)
    return;
  ts_arg g[16];
  for (size_t i = 0; i < n; i++)
    g[i] = args[i].kind == TS_ARG_TENSOR ? ts_arg_tensor(to_gpu(args[i].tensor)) : args[i];
  ts_kernel *kc = kern(host, file, name, defs), *kg = kern(gpu, file, name, defs);
  ts_status st = ts_kernel_launch(kc, args, n);
  if (st || (st = ts_kernel_launch(kg, g, n)))
    die(st, name);
  ts_tensor *back;
  if ((st = ts_tensor_copy(g[out].tensor, host, &back)))
    die(st, name);
  double num = 0, den = 0;
  for (int64_t i = 0; i < ts_tensor_count(back); i++) {
    double w = ts_tensor_get(args[out].tensor, i), d = ts_tensor_get(back, i) - w;
    if (isinf(w) && ts_tensor_get(back, i) == w)
      continue;
    num += d * d;
    den += w * w;
  }
  double err = sqrt(num / (den > 0 ? den : 1));
  printf("check: %s %s on the GPU against the CPU: %.2e\n", name, defs ? defs : "", err);
  if (den == 0) { /* nothing compared: the inputs made no output */
    printf("check FAILED: %s %s: the CPU's result is all zeros, so the check compares nothing\n",
           name, defs ? defs : "");
    failed_checks++;
  } else if (!(err <= tol)) {
    printf("check FAILED: %s %s differs from the CPU (%.2e > %.0e): its timings are not valid\n",
           name, defs ? defs : "", err, tol);
    failed_checks++;
  }
  for (size_t i = 0; i < n; i++)
    if (args[i].kind == TS_ARG_TENSOR)
      ts_tensor_release(g[i].tensor);
  ts_tensor_release(back);
  ts_kernel_release(kc);
  ts_kernel_release(kg);
}

void release_args(ts_arg *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i].kind == TS_ARG_TENSOR)
      ts_tensor_release(a[i].tensor);
}

/* "0.71" of a baseline, or "-" without one. */
const char *ratio(char *buf, double x) {
  if (x > 0)
    snprintf(buf, 32, "%.2f", x);
  else
    snprintf(buf, 32, "-");
  return buf;
}

/* PyTorch's seconds for `what` (bench/gpu_torch.py), 0 when it cannot run. */
double torch_seconds(const char *what) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "python3 bench/gpu_torch.py %s 2>/dev/null", what);
  FILE *p = popen(cmd, "r");
  double s = 0;
  if (p) {
    char line[256];
    while (fgets(line, sizeof line, p))
      sscanf(line, "%*s %lf", &s);
    pclose(p);
  }
  return s;
}

/* ---- the suite ---------------------------------------------------------- */

static void bandwidth(void) {
  int64_t n = quick ? 1 << 16 : (int64_t)1 << 28; /* 1 GiB */
  ts_tensor *x = rnd(gpu, TS_DTYPE_F32, 1, &n, 1, 1), *y = tensor(gpu, TS_DTYPE_F32, 1, &n);
  ts_kernel *k = kern(gpu, "bench/gpu.tile", "copy_f32", NULL);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  double t = timed(k, a, 2);
  copy_bps = t > 0 ? 8.0 * (double)n / t : 0;
  char b[32];
  printf("\n## Bandwidth ceiling\n\n| copy | GB/s | nominal HBM GB/s | of nominal |\n|---|---|---|---|\n");
  printf("| %lld f32 | %.0f | %s | %s |\n", (long long)n, copy_bps / 1e9,
         hbm_bps > 0 ? ratio(b, hbm_bps / 1e9) : "-",
         hbm_bps > 0 && copy_bps > 0 ? ratio(b + 16, copy_bps / hbm_bps) : "-");
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_kernel_release(k);
}

/* q [T, H, C], kv [S, C], idx [T, K] (all valid), sink [H], o [T, H, C]. */
static void attn_args(ts_device *d, int64_t T, int64_t H, int64_t C, int64_t S, int64_t K,
                      ts_arg *a) {
  int64_t sq[3] = {T, H, C}, skv[2] = {S, C}, si[2] = {T, K};
  ts_tensor *idx = tensor(host, TS_DTYPE_I32, 2, si);
  uint64_t s = 5;
  for (int64_t i = 0; i < T * K; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    ts_tensor_set(idx, i, (double)((s >> 33) % (uint64_t)S));
  }
  a[0] = ts_arg_tensor(rnd(d, TS_DTYPE_BF16, 3, sq, 2, 1));
  a[1] = ts_arg_tensor(rnd(d, TS_DTYPE_BF16, 2, skv, 3, 1));
  a[2] = ts_arg_tensor(d == host ? idx : to_gpu(idx));
  a[3] = ts_arg_tensor(rnd(d, TS_DTYPE_F32, 1, &H, 4, 0.5));
  a[4] = ts_arg_tensor(tensor(d, TS_DTYPE_BF16, 3, sq));
  if (d != host)
    ts_tensor_release(idx);
}

/* Split-KV decode: split kernel `name` of `file` (its inputs a[0 .. n - 3],
 * q first; a[n - 2] the sink, a[n - 1] the output) over P ranges, then
 * sparse_attn_merge; the two times summed. */
static double split_attn(const char *file, const char *name, const ts_arg *a, size_t n,
                         int64_t P) {
  ts_kernel *ks = gpu_kern(file, name, NULL);
  ts_kernel *km = gpu_kern("kernels/sparse_attn.tile", "sparse_attn_merge", NULL);
  int64_t T = ts_tensor_dim(a[0].tensor, 0), H = ts_tensor_dim(a[0].tensor, 1),
          C = ts_tensor_dim(a[0].tensor, 2), spo[4] = {T, P, H, C}, spm[3] = {T, P, H};
  ts_arg b[10];
  memcpy(b, a, (n - 2) * sizeof *a);
  b[n - 2] = ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 4, spo));
  b[n - 1] = ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, spm));
  b[n] = ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, spm));
  double t = timed(ks, b, n + 1);
  /* the merge's rope table and positions (not read without ROPE) */
  int64_t stab[3] = {1, 1, 2}, one = 1;
  ts_arg m[7] = {b[n - 2], b[n - 1], b[n], a[n - 2],
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, stab)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_I32, 1, &one)), a[n - 1]};
  t += timed(km, m, 7);
  release_args(b + n - 2, 3);
  release_args(m + 4, 2);
  return t;
}

/* Ranges for the split-KV decode: a block per SM of an H100 (132; a block
 * is two warpgroups with 133 KiB of shared memory, the kernel's default)
 * over the T queries, at most one range per 128 entries: a range's partial
 * state (64 x 512 f32, written and read back by the merge) is then no more
 * bytes than the KV rows it reads (128 x 512 bf16). At one range per 32
 * entries a batch-1 CSA step wrote 20 states, 4x its KV. */
static int64_t splits_for(int64_t T, int64_t K) {
  int64_t p = (132 + T - 1) / T, most = (K + 127) / 128;
  return p < 1 ? 1 : p > most ? most : p;
}

static void attention(void) {
  ts_arg a[5];
  attn_args(host, 3, 16, 64, 57, 70, a);
  differential("kernels/sparse_attn.tile", "sparse_attn_tc", "NH=16 DC=64 CH=32 BK=16 WG=1", a, 5,
               4, 2e-2);
  release_args(a, 5);
  attn_args(host, 3, 64, 128, 57, 70, a);
  differential("kernels/sparse_attn.tile", "sparse_attn_tc", "NH=64 DC=128 CH=64 WG=1", a, 5, 4,
               2e-2);
  /* two warpgroups splitting the columns (the default form) */
  differential("kernels/sparse_attn.tile", "sparse_attn_tc", "NH=64 DC=128 CH=128 WG=2", a, 5, 4,
               2e-2);
  differential("kernels/sparse_attn.tile", "sparse_attn", NULL, a, 5, 4, 2e-2);
  release_args(a, 5);
  if (check_only)
    return;
  int64_t H = 64, C = 512, K = 640, S = quick ? 4096 : 65536;
  printf("\n## Sparse attention (64 heads x 512, 512 + 128 entries a query)\n\n");
  printf("| kernel | queries | ms | GB/s | of copy | TFLOP/s | of bf16 peak |\n|---|---|---|---|---|---|---|\n");
  const char *names[3] = {"sparse_attn_tc", "sparse_attn", "sparse_attn_split + merge"};
  int64_t batches[4] = {1, 8, 64, quick ? 128 : 4096};
  for (int v = 0; v < 3; v++) {
    ts_kernel *k = v < 2 ? kern(gpu, "kernels/sparse_attn.tile", names[v], NULL) : NULL;
    for (int b = 0; b < 4; b++) {
      int64_t T = batches[b];
      if (v == 2 && T > 64)
        continue; /* a decode form */
      attn_args(gpu, T, H, C, S, K, a);
      double t = k ? timed(k, a, 5)
                   : split_attn("kernels/sparse_attn.tile", "sparse_attn_split", a, 5,
                                splits_for(T, K));
      double bytes = (double)T * ((double)K * C * 2 + 2.0 * H * C * 2 + K * 4.0);
      double flops = (double)T * H * K * C * 4.0;
      char r1[32], r2[32];
      printf("| %s | %lld | %.3f | %.0f | %s | %.1f | %s |\n", names[v], (long long)T, t * 1e3,
             bytes / t / 1e9, ratio(r1, copy_bps > 0 ? bytes / t / copy_bps : 0),
             flops / t / 1e12, ratio(r2, peak_flops > 0 ? flops / t / peak_flops : 0));
      release_args(a, 5);
    }
    if (k)
      ts_kernel_release(k);
  }
  /* the block's shape: the default, two warpgroups splitting all 512
   * columns (one block a query: each KV row gathered and the scores
   * computed once), four (127 registers: 16 warps an SM, four parts to
   * each row reduction), against one warpgroup on each half of them (two blocks
   * a query, T blocks apart or, ADJ, neighbours that may share the
   * gathered rows in L2) */
  printf("\n| sparse_attn_tc block | queries | ms | GB/s | of copy | default ms / this ms |\n"
         "|---|---|---|---|---|---|\n");
  const char *forms[4] = {NULL, "WG=4", "CH=256 WG=1", "CH=256 WG=1 ADJ=true"};
  const char *form_names[4] = {"2 warpgroups x 256 columns, grid T (default)",
                               "4 warpgroups x 128 columns, grid T",
                               "1 warpgroup x 256, grid (T, 2)", "1 warpgroup x 256, grid 2 T (ADJ)"};
  ts_kernel *kf[4];
  for (int f = 0; f < 4; f++)
    kf[f] = kern(gpu, "kernels/sparse_attn.tile", "sparse_attn_tc", forms[f]);
  for (int b = 2; b < 4; b++) {
    int64_t T = batches[b];
    attn_args(gpu, T, H, C, S, K, a);
    double t0 = 0;
    for (int f = 0; f < 4; f++) {
      double t = timed(kf[f], a, 5);
      double bytes = (double)T * ((double)K * C * 2 + 2.0 * H * C * 2 + K * 4.0);
      char r1[32], r2[32];
      if (f == 0)
        t0 = t;
      printf("| %s | %lld | %.3f | %.0f | %s | %s |\n", form_names[f], (long long)T, t * 1e3,
             bytes / t / 1e9, ratio(r1, copy_bps > 0 ? bytes / t / copy_bps : 0),
             f ? ratio(r2, t > 0 ? t0 / t : 0) : "1");
    }
    release_args(a, 5);
  }
  for (int f = 0; f < 4; f++)
    ts_kernel_release(kf[f]);
  /* the split count at small batches: more ranges fill more SMs, but each
   * block loads the query (64 KiB) for its range's KV blocks (32 entries,
   * 32 KiB each) and writes a partial state (128 KiB) that the merge reads */
  printf("\n| sparse_attn_split + merge: ranges P | queries | ms | GB/s | of copy |\n"
         "|---|---|---|---|---|\n");
  int64_t sizes[2] = {1, 8};
  for (int b = 0; b < 2; b++)
    for (int i = 0; i < 5; i++) {
      int64_t T = sizes[b], ps[5] = {1, 2, 5, 10, 20}; /* 20: the old policy's at T = 1 */
      attn_args(gpu, T, H, C, S, K, a);
      double t = split_attn("kernels/sparse_attn.tile", "sparse_attn_split", a, 5, ps[i]);
      double bytes = (double)T * ((double)K * C * 2 + 2.0 * H * C * 2 + K * 4.0);
      char r1[32];
      printf("| %lld%s | %lld | %.4f | %.0f | %s |\n", (long long)ps[i],
             ps[i] == splits_for(T, K) ? " (used above)" : "", (long long)T, t * 1e3,
             bytes / t / 1e9, ratio(r1, copy_bps > 0 ? bytes / t / copy_bps : 0));
      release_args(a, 5);
    }
}

/* Random rows [S, C] on device d in a cache's byte format: quant.tile's
 * `pack` kernel (kv_pack: the KV cache, 64 rope dims; fp4_pack: the
 * indexer's keys), E bytes a row. */
static ts_tensor *packed(ts_device *d, const char *pack, int64_t S, int64_t C, int64_t E,
                         int seed) {
  int64_t sx[2] = {S, C}, sb[2] = {S, E};
  ts_tensor *x = rnd(d, TS_DTYPE_F32, 2, sx, seed, 1), *b = tensor(d, TS_DTYPE_I8, 2, sb);
  ts_kernel *k = d == gpu ? gpu_kern("kernels/quant.tile", pack, NULL)
                          : kern(host, "kernels/quant.tile", pack, NULL);
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(b)};
  ts_status st = ts_kernel_launch(k, a, 2);
  if (st)
    die(st, pack);
  if (d != gpu)
    ts_kernel_release(k);
  ts_tensor_release(x);
  return b;
}

/* A split attention's partial states on the host: po [T, P, H, C], pm and
 * pl [T, P, H] into a[0 .. 2]. */
static void host_states(ts_arg *a, int64_t T, int64_t P, int64_t H, int64_t C) {
  int64_t sp[4] = {T, P, H, C};
  a[0] = ts_arg_tensor(tensor(host, TS_DTYPE_F32, 4, sp));
  a[1] = ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sp));
  a[2] = ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sp));
}

/* Decode attention reading the fp8 KV cache's bytes (sparse_attn_split_kv8,
 * then the merge): 584 bytes a row at V4-Flash width where the bf16 rows
 * are 1024, so at the same fraction of the copy it is 1.75x faster. */
static void attention_kv8(void) {
  ts_arg a[6];
  if (check) {
    int64_t T = 3, H = 16, C = 128, S = 57, K = 70;
    attn_args(host, T, H, C, S, K, a);
    ts_tensor_release(a[1].tensor);
    ts_tensor_release(a[3].tensor);
    ts_tensor_release(a[4].tensor);
    a[1] = ts_arg_tensor(packed(host, "kv_pack", S, C, 200, 3));
    host_states(a + 3, T, 2, H, C);
    differential("kernels/sparse_attn.tile", "sparse_attn_split_kv8",
                 "NH=16 DC=128 CH=64 BK=16 WG=1 EB=200", a, 6, 3, 2e-2);
    release_args(a, 6);
    /* HCA's form: the window from a ring's bytes by slot, 45 entries in
     * place (tokens seeing 45, 20 and none of them; the second's from row
     * 10, as a batch's state pool holds them), 3 ranges each */
    int64_t W = 21, N = 45, sq[3] = {T, H, C}, sw[2] = {T, W};
    ts_tensor *win = tensor(host, TS_DTYPE_I32, 2, sw), *nc = tensor(host, TS_DTYPE_I32, 1, &T);
    ts_tensor *cb = tensor(host, TS_DTYPE_I32, 1, &T), *nr = tensor(host, TS_DTYPE_I32, 1, &T);
    for (int64_t i = 0; i < T * W; i++)
      ts_tensor_set(win, i, (double)(i % 5 == 3 ? -1 : (i * 7) % W));
    for (int64_t t = 0; t < T; t++) {
      ts_tensor_set(nc, t, (double)(t == 0 ? N : t == 1 ? 20 : 0));
      ts_tensor_set(cb, t, (double)(t == 1 ? 10 : 0));
      ts_tensor_set(nr, t, 3.0);
    }
    ts_arg h[10] = {ts_arg_tensor(rnd(host, TS_DTYPE_BF16, 3, sq, 5, 1)),
                    ts_arg_tensor(packed(host, "kv_pack", W, C, 200, 6)), ts_arg_tensor(win),
                    ts_arg_tensor(packed(host, "kv_pack", N, C, 200, 7)), ts_arg_tensor(nc),
                    ts_arg_tensor(cb), ts_arg_tensor(nr)};
    host_states(h + 7, T, 3, H, C);
    differential("kernels/hca_attn.tile", "hca_attn_split_kv8",
                 "NH=16 DC=128 CH=64 BK=16 WG=1 EB=200", h, 10, 7, 2e-2);
    /* CSA's: the same ring, 21 entries of the 45 chosen by index (-1s) */
    int64_t ss[2] = {T, 21};
    ts_tensor *sel = tensor(host, TS_DTYPE_I32, 2, ss);
    for (int64_t i = 0; i < T * 21; i++)
      ts_tensor_set(sel, i, (double)(i % 7 == 2 ? -1 : (i * 11) % N));
    ts_arg r[8] = {h[0], h[1], h[2], h[3], ts_arg_tensor(sel), h[7], h[8], h[9]};
    differential("kernels/sparse_attn.tile", "sparse_attn_split_kv8_ring",
                 "NH=16 DC=128 CH=64 BK=16 WG=1 EB=200", r, 8, 5, 2e-2);
    ts_tensor_release(sel);
    release_args(h, 10);
  }
  if (check_only)
    return;
  int64_t H = 64, C = 512, K = 640, S = quick ? 4096 : 65536, E = 584;
  printf("\n## Decode attention over the fp8 KV cache (64 heads x 512, %lld-byte rows)\n\n"
         "| sparse_attn_split_kv8 + merge | queries | ms | GB/s | of copy | bf16 split ms | "
         "bf16 ms / fp8 ms |\n|---|---|---|---|---|---|---|\n",
         (long long)E);
  ts_tensor *kv = packed(gpu, "kv_pack", S, C, E, 3);
  int64_t batches[3] = {1, 8, 64};
  for (int b = 0; b < 3; b++) {
    int64_t T = batches[b], P = splits_for(T, K);
    attn_args(gpu, T, H, C, S, K, a);
    double t16 = split_attn("kernels/sparse_attn.tile", "sparse_attn_split", a, 5, P);
    ts_arg f[5] = {a[0], ts_arg_tensor(kv), a[2], a[3], a[4]};
    double t8 = split_attn("kernels/sparse_attn.tile", "sparse_attn_split_kv8", f, 5, P);
    double bytes = (double)T * ((double)K * E + 2.0 * H * C * 2 + K * 4.0);
    char r1[32], r2[32];
    printf("| P = %lld | %lld | %.4f | %.0f | %s | %.4f | %s |\n", (long long)P, (long long)T,
           t8 * 1e3, bytes / t8 / 1e9, ratio(r1, copy_bps > 0 ? bytes / t8 / copy_bps : 0),
           t16 * 1e3, ratio(r2, t8 > 0 ? t16 / t8 : 0));
    release_args(a, 5);
  }
  ts_tensor_release(kv);
}

/* Seconds of the top-K of one row of S scores on the GPU: one block
 * (CH 0), or the two levels of model/ops.lua O.topk with chunks of CH
 * (topk, topk_gather, topk, topk_pick; their times summed). *out gets the
 * indices (a GPU tensor [1, K]; the caller releases it). */
static double topk_seconds(ts_tensor *scores, ts_tensor *len, int64_t S, int64_t K, int64_t CH,
                           ts_tensor **out) {
  char defs[64];
  int64_t so[2] = {1, K};
  *out = tensor(gpu, TS_DTYPE_I32, 2, so);
  if (CH == 0) {
    snprintf(defs, sizeof defs, "K=%lld", (long long)K);
    ts_arg a[3] = {ts_arg_tensor(scores), ts_arg_tensor(len), ts_arg_tensor(*out)};
    return timed(gpu_kern("kernels/topk.tile", "topk", defs), a, 3);
  }
  int64_t sm[2] = {1, K * ((S + CH - 1) / CH)}, one = 1;
  ts_tensor *cand = tensor(gpu, TS_DTYPE_I32, 2, sm), *val = tensor(gpu, TS_DTYPE_F32, 2, sm);
  ts_tensor *len2 = tensor(gpu, TS_DTYPE_I32, 1, &one), *pos = tensor(gpu, TS_DTYPE_I32, 2, so);
  snprintf(defs, sizeof defs, "K=%lld CH=%lld", (long long)K, (long long)CH);
  ts_kernel *k1 = gpu_kern("kernels/topk.tile", "topk", defs);
  ts_kernel *kg = gpu_kern("kernels/topk.tile", "topk_gather", defs);
  snprintf(defs, sizeof defs, "K=%lld", (long long)K);
  ts_kernel *k2 = gpu_kern("kernels/topk.tile", "topk", defs);
  ts_kernel *kp = gpu_kern("kernels/topk.tile", "topk_pick", NULL);
  ts_arg a1[3] = {ts_arg_tensor(scores), ts_arg_tensor(len), ts_arg_tensor(cand)};
  ts_arg ag[5] = {ts_arg_tensor(scores), ts_arg_tensor(len), ts_arg_tensor(cand),
                  ts_arg_tensor(val), ts_arg_tensor(len2)};
  ts_arg a2[3] = {ts_arg_tensor(val), ts_arg_tensor(len2), ts_arg_tensor(pos)};
  ts_arg ap[3] = {ts_arg_tensor(pos), ts_arg_tensor(cand), ts_arg_tensor(*out)};
  double t = timed(k1, a1, 3) + timed(kg, ag, 5) + timed(k2, a2, 3) + timed(kp, ap, 3);
  ts_tensor *keep[4] = {cand, val, len2, pos};
  for (int i = 0; i < 4; i++)
    ts_tensor_release(keep[i]);
  return t;
}

/* The chunk of model/ops.lua O.topk: the power of two from 2K up whose
 * square reaches S K (both levels about as long). */
static int64_t topk_chunk(int64_t S, int64_t K) {
  int64_t ch = 2 * K;
  while (ch * ch < S * K)
    ch *= 2;
  return ch;
}

/* Whether two GPU index tensors agree (a failed check when not). */
static void same_indices(ts_tensor *a, ts_tensor *b, const char *what) {
  ts_tensor *ha, *hb;
  ts_status st = ts_tensor_copy(a, host, &ha);
  if (st || (st = ts_tensor_copy(b, host, &hb)))
    die(st, what);
  int64_t i = 0;
  while (i < ts_tensor_count(ha) && ts_tensor_get(ha, i) == ts_tensor_get(hb, i))
    i++;
  if (i < ts_tensor_count(ha)) {
    printf("check FAILED: %s: one-block and two-level top-k differ at %lld\n", what, (long long)i);
    failed_checks++;
  } else {
    printf("check: %s: one-block and two-level top-k agree\n", what);
  }
  ts_tensor_release(ha);
  ts_tensor_release(hb);
}

/* hca_attn_tc's arguments: T queries of H x C, a window of W gathered
 * rows of a 4096-row kv, all N compressed entries for every query. */
static void hca_args(ts_device *d, int64_t T, int64_t H, int64_t C, int64_t W, int64_t N,
                     ts_arg *a) {
  int64_t sq[3] = {T, H, C}, skv[2] = {4096, C}, sw[2] = {T, W}, sc[2] = {N, C};
  ts_tensor *win = tensor(host, TS_DTYPE_I32, 2, sw), *nc = tensor(host, TS_DTYPE_I32, 1, &T);
  uint64_t s = 7;
  for (int64_t i = 0; i < T * W; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    ts_tensor_set(win, i, (double)((s >> 33) % 4096));
  }
  for (int64_t t = 0; t < T; t++)
    ts_tensor_set(nc, t, (double)N);
  a[0] = ts_arg_tensor(rnd(d, TS_DTYPE_BF16, 3, sq, 12, 1));
  a[1] = ts_arg_tensor(rnd(d, TS_DTYPE_BF16, 2, skv, 13, 1));
  a[2] = ts_arg_tensor(d == host ? win : to_gpu(win));
  a[3] = ts_arg_tensor(rnd(d, TS_DTYPE_BF16, 2, sc, 14, 1));
  a[4] = ts_arg_tensor(d == host ? nc : to_gpu(nc));
  a[5] = ts_arg_tensor(tensor(d, TS_DTYPE_I32, 1, &T)); /* cbase: all from row 0 */
  a[6] = ts_arg_tensor(rnd(d, TS_DTYPE_F32, 1, &H, 15, 0.5));
  a[7] = ts_arg_tensor(tensor(d, TS_DTYPE_BF16, 3, sq));
  if (d != host) {
    ts_tensor_release(win);
    ts_tensor_release(nc);
  }
}

/* HCA attention in prefill (hca_attn_tc: every query over the window and
 * n compressed entries, the compressed blocks through a cp.async ring) as
 * a fraction of the bf16 peak. */
static void hca_prefill(void) {
  ts_arg a[8];
  hca_args(host, 3, 64, 128, 70, 150, a);
  differential("kernels/hca_attn.tile", "hca_attn_tc", "NH=64 DC=128 CH=64 WG=1", a, 8, 7, 2e-2);
  differential("kernels/hca_attn.tile", "hca_attn_tc", "NH=64 DC=128 CH=128 WG=2", a, 8, 7, 2e-2);
  release_args(a, 8);
  if (check_only)
    return;
  int64_t T = quick ? 64 : 4096, H = 64, C = 512, W = 128;
  printf("\n## HCA attention prefill (hca_attn_tc: %lld queries, 64 heads x 512, window 128 + n "
         "compressed entries each)\n\n", (long long)T);
  printf("| n | ms | TFLOP/s | of bf16 peak |\n|---|---|---|---|\n");
  ts_kernel *k = kern(gpu, "kernels/hca_attn.tile", "hca_attn_tc", NULL);
  int64_t ns[3] = {1024, quick ? 2048 : 4096, quick ? 4096 : 8192};
  for (int i = 0; i < 3; i++) {
    hca_args(gpu, T, H, C, W, ns[i], a);
    double t = timed(k, a, 8), flops = (double)T * H * (double)(ns[i] + W) * C * 4.0;
    char r[32];
    printf("| %lld | %.3f | %.1f | %s |\n", (long long)ns[i], t * 1e3, flops / t / 1e12,
           ratio(r, peak_flops > 0 ? flops / t / peak_flops : 0));
    release_args(a, 8);
  }
  ts_kernel_release(k);
}

/* indexer_scores_fp4's query and position arguments: T queries of HI
 * heads x D in FP4 bytes ([T, HI, P]: fp4_pack of random rows), and
 * positions that let query t see keys 0 .. S - 1 (RATIO 1). */
static void fp4_queries(ts_device *d, int64_t T, int64_t HI, int64_t D, int64_t S, ts_arg *q,
                        ts_arg *pos) {
  int64_t P = D / 2 + D / 32, sq[3] = {T, HI, P};
  ts_tensor *rows = packed(d, "fp4_pack", T * HI, D, P, 9), *v;
  ts_status st = ts_tensor_reshape(rows, 3, sq, &v);
  if (st)
    die(st, "fp4 queries");
  ts_tensor_release(rows);
  ts_tensor *p = tensor(host, TS_DTYPE_I32, 1, &T);
  for (int64_t t = 0; t < T; t++)
    ts_tensor_set(p, t, (double)(S - 1));
  *q = ts_arg_tensor(v);
  *pos = ts_arg_tensor(d == host ? p : to_gpu(p));
  if (d != host)
    ts_tensor_release(p);
}

static void indexer(void) {
  int64_t T = 1, HI = 64, D = 128;
  {
    int64_t sq[3] = {2, HI, D}, sk[2] = {133, D}, sw[2] = {2, HI}, so[2] = {2, 133};
    ts_arg a[4] = {ts_arg_tensor(rnd(host, TS_DTYPE_BF16, 3, sq, 5, 1)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_BF16, 2, sk, 6, 1)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, sw, 7, 1)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, so))};
    differential("kernels/indexer.tile", "indexer_scores_tc", "RATIO=1", a, 4, 3, 1e-2);
    differential("kernels/indexer.tile", "indexer_scores_tc", "RATIO=1 BS=128", a, 4, 3, 1e-2);
    ts_tensor_release(a[1].tensor);
    a[1] = ts_arg_tensor(packed(host, "fp4_pack", 133, D, D / 2 + D / 32, 6));
    differential("kernels/indexer.tile", "indexer_scores_fp4_tc", "RATIO=1", a, 4, 3, 1e-2);
    /* FP4 queries too: the i8 tensor cores (exact integer products; the
     * head sum's order is the GPU's own) */
    ts_arg f[6] = {{0}, a[1], a[2], {0}, ts_arg_tensor(tensor(host, TS_DTYPE_I32, 1,
                                                             (int64_t[]){2})), a[3]};
    fp4_queries(host, 2, HI, D, 133, &f[0], &f[3]);
    differential("kernels/indexer.tile", "indexer_scores_fp4", "RATIO=1", f, 6, 5, 1e-5);
    ts_tensor_release(f[0].tensor);
    ts_tensor_release(f[3].tensor);
    ts_tensor_release(f[4].tensor);
    release_args(a, 4);
  }
  if (check_only)
    return;
  /* BS 128: two wgmma slabs a block, the query read once per 128 keys
   * instead of 64 (a decode query's 16 KiB is the other half of the
   * traffic at BS 64) */
  printf("\n## Indexer scores + top-512 (64 heads x 128, one query)\n\n");
  printf("| entries | scores ms | scores ms, BS 128 | top-k ms (two-level) | one-block top-k ms "
         "| total ms | GB/s | of copy | PyTorch ms | PyTorch / Tessera |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|\n");
  ts_kernel *ks = gpu_kern("kernels/indexer.tile", "indexer_scores_tc", "RATIO=1");
  ts_kernel *ks2 = gpu_kern("kernels/indexer.tile", "indexer_scores_tc", "RATIO=1 BS=128");
  ts_kernel *ks4 = gpu_kern("kernels/indexer.tile", "indexer_scores_fp4_tc", "RATIO=1");
  ts_kernel *ks8 = gpu_kern("kernels/indexer.tile", "indexer_scores_fp4", "RATIO=1");
  double fp4_ms[2] = {0, 0}, bf16_ms[2] = {0, 0}, i8_ms[2] = {0, 0};
  int64_t sizes[2] = {quick ? 4096 : 131072, quick ? 8192 : 1048576};
  for (int i = 0; i < 2; i++) {
    int64_t S = sizes[i], sq[3] = {T, HI, D}, sk[2] = {S, D}, sw[2] = {T, HI}, so[2] = {T, S};
    ts_arg a[4] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 3, sq, 5, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 2, sk, 6, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sw, 7, 1)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, so))};
    double ts = timed(ks, a, 4), ts2 = timed(ks2, a, 4);
    char what[64], r1[32], r2[32];
    snprintf(what, sizeof what, "indexer %lld", (long long)S);
    ts_tensor *len = tensor(host, TS_DTYPE_I32, 1, &T);
    ts_tensor_set(len, 0, (double)S);
    /* top-k over random scores (the decode query here masks all but the
     * first entry: RATIO=1 at position 0) */
    ts_tensor *sc = rnd(gpu, TS_DTYPE_F32, 2, so, 8, 1), *glen = to_gpu(len), *o1, *o2;
    double t1 = topk_seconds(sc, glen, S, 512, 0, &o1);
    double tk = topk_seconds(sc, glen, S, 512, topk_chunk(S, 512), &o2);
    if (check)
      same_indices(o1, o2, what);
    double bytes = (double)S * D * 2 + S * 4.0 * 3; /* keys; scores written, read by top-k */
    double pt = torch_seconds(what);
    printf("| %lld | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f | %s | %s | %s |\n", (long long)S,
           ts * 1e3, ts2 * 1e3, tk * 1e3, t1 * 1e3, (ts + tk) * 1e3, bytes / (ts + tk) / 1e9,
           ratio(r1, copy_bps > 0 ? bytes / (ts + tk) / copy_bps : 0),
           pt > 0 ? ratio(what, pt * 1e3) : "-", ratio(r2, pt > 0 ? pt / (ts + tk) : 0));
    ts_tensor *done[5] = {len, sc, glen, o1, o2};
    for (int j = 0; j < 5; j++)
      ts_tensor_release(done[j]);
    /* the keys in their cache format: 68 bytes a key against 256 */
    ts_tensor_release(a[1].tensor);
    a[1] = ts_arg_tensor(packed(gpu, "fp4_pack", S, D, D / 2 + D / 32, 6));
    fp4_ms[i] = timed(ks4, a, 4) * 1e3;
    bf16_ms[i] = ts * 1e3;
    ts_arg f[6] = {{0}, a[1], a[2], {0}, ts_arg_tensor(gpu_int(0)), a[3]};
    fp4_queries(gpu, T, HI, D, S, &f[0], &f[3]);
    i8_ms[i] = timed(ks8, f, 6) * 1e3;
    ts_tensor_release(f[0].tensor);
    ts_tensor_release(f[3].tensor);
    ts_tensor_release(f[4].tensor);
    release_args(a, 4);
  }
  /* indexer_scores_fp4_tc: FP4 keys decoded to bf16, bf16 wgmma;
   * indexer_scores_fp4: FP4 queries and keys, s8 wgmma into i32 */
  printf("\n| FP4 keys (%lld bytes each), BS 64 | entries | ms | GB/s | of copy "
         "| bf16 keys ms | bf16 ms / this ms |\n|---|---|---|---|---|---|---|\n",
         (long long)(D / 2 + D / 32));
  for (int f = 0; f < 2; f++)
    for (int i = 0; i < 2; i++) {
      double ms = f ? i8_ms[i] : fp4_ms[i];
      double bytes = (double)sizes[i] * (D / 2 + D / 32 + 4), t = ms / 1e3;
      char r1[32], r2[32];
      printf("| %s | %lld | %.3f | %.0f | %s | %.3f | %s |\n",
             f ? "indexer_scores_fp4 (FP4 queries, s8 wgmma)" : "indexer_scores_fp4_tc (bf16 wgmma)",
             (long long)sizes[i], ms, t > 0 ? bytes / t / 1e9 : 0,
             ratio(r1, copy_bps > 0 && t > 0 ? bytes / t / copy_bps : 0), bf16_ms[i],
             ratio(r2, ms > 0 ? bf16_ms[i] / ms : 0));
    }
}

/* Slices for hc_mix_split (model/ops.lua O.slices): about two blocks an SM of an H100
 * over its ceil(T / BT) token tiles, at most one BK step (128) a slice. */
static int64_t mix_slices_for(int64_t T, int64_t KD, int64_t BT) {
  int64_t tiles = (T + BT - 1) / BT, ks = (264 + tiles - 1) / tiles, most = (KD + 127) / 128;
  return ks < 1 ? 1 : ks > most ? most : ks;
}

/* hc_mix_split's two forms (kernels/mhc.tile): the products' operands in
 * TF32 on tensor cores, 64 tokens a block (the model's on a GPU), and the
 * scalar f32 GEMM, 8 tokens a block. */
static const struct {
  const char *what, *defs;
  int64_t bt;
} mix_forms[2] = {{"TF32", "TF32=1 BT=64 NT=128", 64}, {"f32", NULL, 8}};

/* hc_post_mix's tiles: the model's (32 tokens a block on 256 threads,
 * mma.sync), then the bench's sweep at the largest size (64 tokens: wgmma,
 * two blocks an SM; narrower d blocks: more blocks an SM, more slices). */
static const struct {
  const char *defs;
  int64_t bd; /* its BD: d / BD slices */
} post_mix_forms[4] = {{"TF32=1 BT=32 NT=256 BD=64", 64}, {"TF32=1 BT=64 NT=128 BD=64", 64},
                       {"TF32=1 BT=32 NT=256 BD=32", 32}, {"TF32=1 BT=16 NT=256 BD=64", 64}};

static void mhc_and_compressor(void) {
  int64_t DM = 4096, NS = 4, KD = NS * DM;
  {
    /* odd shapes: 5 tokens of 4 x 96, 3 slices */
    int64_t sx[3] = {5, NS, 96}, s2[2] = {5, NS * 96}, sf[2] = {24, NS * 96},
            sp[3] = {3, 5, 25}, s3 = 3, s24 = 24, s4[2] = {5, NS}, s44[3] = {5, NS, NS},
            su[2] = {5, 96};
    /* TF32-exact values: the TF32 forms' checks do not depend on how the
     * tensor cores convert raw f32 words (tf32_probe) */
    ts_arg a[3] = {ts_arg_tensor(tf32_exact(rnd(host, TS_DTYPE_F32, 2, s2, 8, 1))),
                   ts_arg_tensor(tf32_exact(rnd(host, TS_DTYPE_F32, 2, sf, 9, 0.1))),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sp))};
    for (int f = 0; f < 2; f++) /* the CPU form truncates the same operands */
      differential("kernels/mhc.tile", "hc_mix_split", mix_forms[f].defs, a, 3, 2, 1e-5);
    /* from the slices the CPU just made (a sum of squares is positive) */
    ts_arg b[9] = {a[2],
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, sx, 11, 1)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 1, &s3, 12, 1)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 1, &s24, 13, 1)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 1, &su[1], 15, 1)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, s4)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, s4)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, s44)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, su))};
    differential("kernels/mhc.tile", "hc_pre_fused", NULL, b, 9, 8, 1e-5);
    /* with the sub-layer's norm (the model's decode form) */
    differential("kernels/mhc.tile", "hc_pre_fused", "NORM=true BT=1 BD=96", b, 9, 8, 1e-5);
    /* hc_post_mix: 5 tokens, d 96 in blocks of 64 (the last partial) */
    int64_t sd[2] = {5, 96}, sq2[3] = {2, 5, 25}, one = 1;
    /* (count, then the next pre's tensors: b's, not touched without LAST) */
    ts_arg e[15] = {b[1], ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, sd, 14, 1)), b[6], b[7],
                    ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sx)), a[1],
                    ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sq2)),
                    ts_arg_tensor(tensor(host, TS_DTYPE_I32, 1, &one)), b[2], b[3], b[4], b[5],
                    b[6], b[7], b[8]};
    for (int f = 0; f < 3; f++) {
      const char *d = f == 2 ? "BD=64" : post_mix_forms[f].defs;
      /* its y, made in the kernel, is no TF32-exact operand: within TF32's
       * error whatever the tensor cores do with raw words */
      differential("kernels/mhc.tile", "hc_post_mix", d, e, 15, 4, 1e-5);
      differential("kernels/mhc.tile", "hc_post_mix", d, e, 15, 6, f == 2 ? 1e-5 : 2e-3);
    }
    ts_tensor_release(e[1].tensor);
    ts_tensor_release(e[4].tensor);
    ts_tensor_release(e[6].tensor);
    ts_tensor_release(e[7].tensor);
    release_args(a, 3);
    release_args(b + 1, 8);
  }
  if (check_only)
    return;
  /* mHC pre is the whole op: the logits over fn (hc_mix_split, split-K),
   * then the gates, the Sinkhorn steps and u (hc_pre_fused); its bytes are
   * the roofline's: the streams read once, fn once, u written */
  printf("\n## mHC and the compressor (memory-bound: against the copy)\n\n");
  printf("mHC pre = hc_mix_split (KS slices) + hc_pre_fused; its bytes count the streams "
         "once (the second read, in hc_pre_fused, is not counted: at decode sizes L2 holds "
         "it). Between sub-layers the model runs hc_post_mix (hc_post and the next "
         "logits' slices, d / 64 of them, in one pass) and then hc_pre_fused alone, one read "
         "of the streams; the first mHC pre of a pass is the two-launch form.\n\n");
  printf("| kernel | tokens | ms | GB/s | of copy | hc_mix_split ms (KS) | hc_pre_fused ms |\n"
         "|---|---|---|---|---|---|---|\n");
  ts_kernel *km[2] = {kern(gpu, "kernels/mhc.tile", "hc_mix_split", mix_forms[0].defs),
                      kern(gpu, "kernels/mhc.tile", "hc_mix_split", mix_forms[1].defs)};
  ts_kernel *kp = kern(gpu, "kernels/mhc.tile", "hc_pre_fused", NULL);
  ts_kernel *kpn = kern(gpu, "kernels/mhc.tile", "hc_pre_fused", "NORM=true BT=1 BD=4096");
  ts_kernel *krms = kern(gpu, "kernels/rmsnorm.tile", "rmsnorm_f32", NULL);
  ts_kernel *kq = kern(gpu, "kernels/mhc.tile", "hc_post", NULL);
  ts_kernel *kpm = kern(gpu, "kernels/mhc.tile", "hc_post_mix", post_mix_forms[0].defs);
  ts_kernel *kpml = kern(gpu, "kernels/mhc.tile", "hc_post_mix",
                         "TF32=1 BT=32 NT=256 BD=64 LAST=true");
  int64_t toks[3] = {1, 64, quick ? 256 : 4096};
  double tm_tf32 = 0;
  char r[32];
  for (int i = 0; i < 3; i++) {
    int64_t T = toks[i], sx[3] = {T, NS, DM}, s2[2] = {T, KD}, sf[2] = {24, KD}, s3 = 3,
            s24 = 24, s4[2] = {T, NS}, sc[3] = {T, NS, NS}, su[2] = {T, DM};
    ts_tensor *x = rnd(gpu, TS_DTYPE_F32, 3, sx, 8, 1), *flat;
    ts_status st = ts_tensor_reshape(x, 2, s2, &flat);
    if (st)
      die(st, "hc_mix_split");
    ts_tensor *fn = rnd(gpu, TS_DTYPE_F32, 2, sf, 9, 0.01);
    ts_arg b[9] = {{0},
                   ts_arg_tensor(x),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 1, &s3, 10, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 1, &s24, 11, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 1, &DM, 12, 1)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, s4)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, s4)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, sc)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, su))};
    for (int f = 0; f < 2; f++) {
      int64_t KS = mix_slices_for(T, KD, mix_forms[f].bt), sp[3] = {KS, T, 25};
      ts_arg a[3] = {ts_arg_tensor(flat), ts_arg_tensor(fn),
                     ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, sp))};
      b[0] = a[2];
      double tm = timed(km[f], a, 3), tp = timed(kp, b, 9), t = tm + tp;
      if (f == 0)
        tm_tf32 = tm;
      double bytes = ((double)T * (KD + DM) + 24.0 * KD) * 4;
      printf("| mHC pre (%s) | %lld | %.3f | %.0f | %s | %.3f (%lld) | %.3f |\n",
             mix_forms[f].what, (long long)T, t * 1e3, bytes / t / 1e9,
             ratio(r, copy_bps > 0 ? bytes / t / copy_bps : 0), tm * 1e3, (long long)KS,
             tp * 1e3);
      ts_tensor_release(a[2].tensor);
    }
    ts_arg c[5] = {b[1], b[8], b[6], b[7], ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, sx))};
    double t = timed(kq, c, 5);
    double bytes = (double)T * (2 * NS * DM + DM + NS + NS * NS) * 4;
    printf("| hc_post | %lld | %.3f | %.0f | %s | | |\n", (long long)T, t * 1e3,
           bytes / t / 1e9, ratio(r, copy_bps > 0 ? bytes / t / copy_bps : 0));
    /* hc_post with the next sub-layer's logits (the model's path between
     * sub-layers): its bytes add fn once and the slices; then that mHC pre
     * is hc_pre_fused alone, one read of the streams */
    int64_t KSp = (DM + post_mix_forms[0].bd - 1) / post_mix_forms[0].bd, spp[3] = {KSp, T, 25};
    ts_tensor *pp = tensor(gpu, TS_DTYPE_F32, 3, spp);
    int64_t one = 1;
    ts_tensor *count = tensor(gpu, TS_DTYPE_I32, 1, &one);
    ts_arg e[15] = {c[0], c[1], c[2], c[3], c[4], ts_arg_tensor(fn), ts_arg_tensor(pp),
                    ts_arg_tensor(count), b[2], b[3], b[4], b[5], b[6], b[7], b[8]};
    double tpm = timed(kpm, e, 15);
    double bpm = bytes + (24.0 * KD + (double)KSp * T * 25) * 4;
    printf("| hc_post_mix %s (the model's) | %lld | %.3f | %.0f | %s | hc_post + hc_mix_split: "
           "%.3f | |\n", post_mix_forms[0].defs, (long long)T, tpm * 1e3, bpm / tpm / 1e9,
           ratio(r, copy_bps > 0 ? bpm / tpm / copy_bps : 0), (t + tm_tf32) * 1e3);
    b[0] = e[6];
    double tp1 = timed(kp, b, 9);
    double bp1 = ((double)T * (KD + DM) + (double)KSp * T * 25) * 4;
    printf("| mHC pre after hc_post_mix (hc_pre_fused) | %lld | %.3f | %.0f | %s | | %.3f |\n",
           (long long)T, tp1 * 1e3, bp1 / tp1 / 1e9,
           ratio(r, copy_bps > 0 ? bp1 / tp1 / copy_bps : 0), tp1 * 1e3);
    if (T <= 64) {
      /* with the sub-layer's norm in it (NORM: the model's decode form, one
       * block a token) against hc_pre_fused + rmsnorm_f32 */
      ts_arg n3[3] = {b[8], b[4], ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, su))};
      double tn = timed(kpn, b, 9), two = tp1 + timed(krms, n3, 3);
      printf("| mHC pre + norm, NORM (one launch; two: hc_pre_fused + rmsnorm_f32 %.3f ms, "
             "%.2fx) | %lld | %.3f | %.0f | %s | | %.3f |\n", two * 1e3, two / tn, (long long)T,
             tn * 1e3, bp1 / tn / 1e9, ratio(r, copy_bps > 0 ? bp1 / tn / copy_bps : 0), tn * 1e3);
      ts_tensor_release(n3[2].tensor);
      if (T == 1) {
        /* a decode step's: hc_post_mix with LAST (its last block runs the
         * next pre with NORM) against the two launches it replaces */
        ts_tensor *o[4] = {tensor(gpu, TS_DTYPE_F32, 2, s4), tensor(gpu, TS_DTYPE_F32, 2, s4),
                           tensor(gpu, TS_DTYPE_F32, 3, sc), tensor(gpu, TS_DTYPE_F32, 2, su)};
        ts_arg el[15];
        memcpy(el, e, sizeof el);
        for (int j = 0; j < 4; j++)
          el[11 + j] = ts_arg_tensor(o[j]);
        double tl = timed(kpml, el, 15), sep = tpm + tn;
        printf("| hc_post_mix LAST (+ the next mHC pre and norm: one launch; two: %.3f ms, "
               "%.2fx) | %lld | %.3f | %.0f | %s | | |\n", sep * 1e3, sep / tl, (long long)T,
               tl * 1e3, (bpm + bp1) / tl / 1e9,
               ratio(r, copy_bps > 0 ? (bpm + bp1) / tl / copy_bps : 0));
        for (int j = 0; j < 4; j++)
          ts_tensor_release(o[j]);
      }
    }
    ts_tensor_release(pp);
    /* the tile sweep (the first row is the model's, timed above; e holds
     * count) */
    for (int v = 1; v < 4 && i == 2; v++) {
      int64_t bd = post_mix_forms[v].bd, sv[3] = {(DM + bd - 1) / bd, T, 25};
      ts_kernel *kv = kern(gpu, "kernels/mhc.tile", "hc_post_mix", post_mix_forms[v].defs);
      ts_tensor *pv = tensor(gpu, TS_DTYPE_F32, 3, sv);
      e[6] = ts_arg_tensor(pv);
      double tv = timed(kv, e, 15), bv = bytes + (24.0 * KD + (double)sv[0] * T * 25) * 4;
      printf("| hc_post_mix %s | %lld | %.3f | %.0f | %s | | |\n", post_mix_forms[v].defs,
             (long long)T, tv * 1e3, bv / tv / 1e9, ratio(r, copy_bps > 0 ? bv / tv / copy_bps : 0));
      ts_tensor_release(pv);
      ts_kernel_release(kv);
    }
    ts_tensor_release(count);
    ts_tensor_release(flat);
    ts_tensor_release(fn);
    release_args(b + 1, 8);
    ts_tensor_release(c[4].tensor);
  }
  ts_kernel_release(km[0]);
  ts_kernel_release(km[1]);
  ts_kernel_release(kp);
  ts_kernel_release(kpml);
  ts_kernel_release(kpn);
  ts_kernel_release(krms);
  ts_kernel_release(kq);
  ts_kernel_release(kpm);
  /* compress_pool: CSA (M = 4, overlapping, 2 x 512 channels) and HCA
   * (M = 128, 512 channels) over a prefill of T tokens */
  const struct {
    const char *what, *defs;
    int64_t M, KE, E;
  } pools[2] = {{"CSA", "OVERLAP=true", 4, 1024, 512}, {"HCA", "OVERLAP=false", 128, 512, 512}};
  for (int i = 0; i < 2; i++) {
    int64_t T = quick ? 512 : 16384, M = pools[i].M, KE = pools[i].KE, E = pools[i].E,
            N = T / M, sc[2] = {T, KE}, sa[2] = {M, KE}, so[2] = {N, E};
    ts_kernel *k = kern(gpu, "kernels/compressor.tile", "compress_pool", pools[i].defs);
    ts_arg a[4] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sc, 11, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sc, 12, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sa, 13, 1)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, so))};
    double t = timed(k, a, 4), bytes = ((double)T * KE * 2 + M * KE + N * E) * 4;
    printf("| compress_pool %s | %lld | %.3f | %.0f | %s |\n", pools[i].what, (long long)T,
           t * 1e3, bytes / t / 1e9, ratio(r, copy_bps > 0 ? bytes / t / copy_bps : 0));
    release_args(a, 4);
    ts_kernel_release(k);
  }
}

/* The FP8 GEMM (gemm_fp8: e4m3 with DeepSeek's block scales) against the
 * bf16 one (gemm_nt) at the same sizes in the same run, and the peaks. */
static void fp8_gemm(void) {
  {
    int64_t M = 130, N = 200, K = 300, sa[2] = {M, K}, sb[2] = {N, K}, ssa[2] = {M, 3},
            ssb[2] = {2, 3}, sc[2] = {M, N};
    ts_arg a[5] = {ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 2, sa, 80, 4)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, ssa, 81, 0.01)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 2, sb, 82, 4)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, ssb, 83, 1)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, sc))};
    differential("kernels/gemm.tile", "gemm_fp8", NULL, a, 5, 4, 1e-5);
    release_args(a, 5);
  }
  if (check_only)
    return;
  printf("\n## FP8 GEMM (e4m3, 1 x 128 and 128 x 128 block scales) against bf16\n\n");
  printf("| n (M = N = K) | fp8 ms | TFLOP/s | of fp8 peak | bf16 gemm_nt ms | bf16 / fp8 time |\n");
  printf("|---|---|---|---|---|---|\n");
  ts_kernel *k8 = kern(gpu, "kernels/gemm.tile", "gemm_fp8", NULL);
  ts_kernel *kb = kern(gpu, "kernels/gemm.tile", "gemm_nt", NULL);
  int64_t sizes[2] = {quick ? 256 : 4096, quick ? 512 : 8192};
  for (int i = 0; i < 2; i++) {
    int64_t n = sizes[i], nb = n / 128, s2[2] = {n, n}, ss[2] = {n, nb}, sw[2] = {nb, nb};
    ts_arg a[5] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_FP8E4M3, 2, s2, 84, 4)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, ss, 85, 0.01)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_FP8E4M3, 2, s2, 86, 4)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sw, 87, 1)),
                   ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, s2))};
    double t8 = timed(k8, a, 5);
    ts_arg b[3] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 2, s2, 88, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 2, s2, 89, 1)), a[4]};
    double tb = timed(kb, b, 3), flops = 2.0 * n * n * n;
    char r1[32], r2[32];
    printf("| %lld | %.3f | %.1f | %s | %.3f | %s |\n", (long long)n, t8 * 1e3, flops / t8 / 1e12,
           ratio(r1, peak_flops > 0 ? flops / t8 / (2 * peak_flops) : 0), tb * 1e3,
           ratio(r2, t8 > 0 ? tb / t8 : 0));
    release_args(a, 5);
    release_args(b, 2);
  }
  ts_kernel_release(k8);
  ts_kernel_release(kb);
}

/* How this device's tensor cores take a raw f32 word as a TF32 operand:
 * linear_tf32 on random f32 values (64 x 64 x 64) against f64 references
 * of the operands truncated (the CPU's and the simulator's meaning of
 * tf32=true) and rounded to nearest. */
static void tf32_probe(void) {
  enum { n = 64 };
  int64_t s2[2] = {n, n};
  ts_tensor *ha = rnd(host, TS_DTYPE_F32, 2, s2, 85, 1), *hb = rnd(host, TS_DTYPE_F32, 2, s2, 86, 1);
  ts_arg a[3] = {ts_arg_tensor(to_gpu(ha)), ts_arg_tensor(to_gpu(hb)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, s2))};
  ts_kernel *k = kern(gpu, "kernels/gemm.tile", "linear_tf32", NULL);
  ts_status st = ts_kernel_launch(k, a, 3);
  ts_tensor *back = NULL;
  if (st || (st = ts_tensor_copy(a[2].tensor, host, &back)))
    die(st, "tf32 probe");
  double et = 0, er = 0, den = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double t = 0, r = 0;
      for (int q = 0; q < n; q++) {
        double x = ts_tensor_get(ha, i * n + q), y = ts_tensor_get(hb, j * n + q);
        t += (double)ts_f32_tf32((float)x) * ts_f32_tf32((float)y);
        r += (double)ts_f32_tf32_rna((float)x) * ts_f32_tf32_rna((float)y);
      }
      double g = ts_tensor_get(back, i * n + j);
      et += (g - t) * (g - t);
      er += (g - r) * (g - r);
      den += t * t;
    }
  et = sqrt(et / den);
  er = sqrt(er / den);
  printf("\nTF32 operands on this device (raw f32 words into linear_tf32, 64^3): relative "
         "difference %.2e from truncation, %.2e from rounding to nearest: the tensor cores %s.\n",
         et, er, et < 1e-5 ? "truncate" : er < 1e-5 ? "round (the CPU and the simulator truncate)"
                                                   : "do neither exactly");
  ts_tensor_release(back);
  ts_tensor_release(ha);
  ts_tensor_release(hb);
  release_args(a, 3);
  ts_kernel_release(k);
}

/* The f32 linears (the model's, and the mHC logits' kind of GEMM) in TF32 on
 * tensor cores (linear_tf32) against the scalar f32 kernel (linear_f32) at a
 * prefill's shape, as TFLOP/s and a fraction of the dense TF32 peak (half
 * the bf16 one). */
static void tf32_linear(void) {
  {
    int64_t sa[2] = {70, 100}, sb[2] = {45, 100}, sc[2] = {70, 45};
    ts_arg a[3] = {ts_arg_tensor(tf32_exact(rnd(host, TS_DTYPE_F32, 2, sa, 81, 1))),
                   ts_arg_tensor(tf32_exact(rnd(host, TS_DTYPE_F32, 2, sb, 82, 1))),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, sc))};
    differential("kernels/gemm.tile", "linear_tf32", NULL, a, 3, 2, 1e-5);
    release_args(a, 3);
  }
  tf32_probe();
  if (check_only)
    return;
  printf("\n## f32 linears in TF32 (linear_tf32) against the scalar f32 kernel (linear_f32)\n\n");
  printf("| M x N x K | linear_tf32 ms | TFLOP/s | of TF32 peak | linear_f32 ms | f32 / tf32 |\n"
         "|---|---|---|---|---|---|\n");
  int64_t n = quick ? 512 : 4096, sa[2] = {n, n}, sc[2] = {n, n};
  ts_arg a[3] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sa, 83, 1)),
                 ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sa, 84, 1)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, sc))};
  ts_kernel *kt = kern(gpu, "kernels/gemm.tile", "linear_tf32", NULL);
  ts_kernel *kf = kern(gpu, "kernels/gemm.tile", "linear_f32", NULL);
  double tt = timed(kt, a, 3), tf = timed(kf, a, 3), flops = 2.0 * n * n * n;
  char r1[32], r2[32];
  printf("| %lld^3 | %.3f | %.1f | %s | %.3f | %s |\n", (long long)n, tt * 1e3,
         flops / tt / 1e12, ratio(r1, peak_flops > 0 ? flops / tt / (peak_flops / 2) : 0),
         tf * 1e3, ratio(r2, tf / tt));
  ts_kernel_release(kt);
  ts_kernel_release(kf);
  release_args(a, 3);
}

/* ---- the million-token layer ---------------------------------------------- */

/* Slices for gemm_splitk's decode GEMV: about two blocks an SM of an H100
 * (132) over its ceildiv(N, 64) column blocks, at least 128 of K a slice. */
static int64_t splitk_for(int64_t N, int64_t K) {
  int64_t cols = (N + 63) / 64, ks = (264 + cols - 1) / cols, most = (K + 127) / 128;
  return ks < 1 ? 1 : ks > most ? most : ks;
}

/* Seconds of one bf16 decode GEMV ([1, K] x [N, K]^T, memory-bound): with
 * KS > 0 gemm_splitk over KS slices + gemm_splitk_sum, with KS 0 the plain
 * gemm_nt at 32 x 32 tiles (its grid is N / 32 blocks). Adds the weight's
 * bytes to *bytes. */
static double gemv_with(int64_t N, int64_t K, int64_t KS, int seed, double *bytes) {
  int64_t sa[2] = {1, K}, sb[2] = {N, K}, sc[2] = {1, N}, sp[3] = {KS, 1, N};
  ts_kernel *kn = gpu_kern("kernels/gemm.tile", "gemm_nt", "BM=32 BN=32 BK=64");
  ts_kernel *kp = gpu_kern("kernels/gemm.tile", "gemm_splitk", NULL);
  ts_kernel *ks = gpu_kern("kernels/gemm.tile", "gemm_splitk_sum", NULL);
  ts_arg a[3] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 2, sa, seed, 1)),
                 ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 2, sb, seed + 1, 0.02)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 2, sc))};
  double t;
  if (KS == 0) {
    t = timed(kn, a, 3);
  } else {
    ts_tensor *part = tensor(gpu, TS_DTYPE_F32, 3, sp);
    ts_arg p[3] = {a[0], a[1], ts_arg_tensor(part)}, q[2] = {ts_arg_tensor(part), a[2]};
    t = timed(kp, p, 3) + timed(ks, q, 2);
    ts_tensor_release(part);
  }
  *bytes += (double)N * K * 2;
  release_args(a, 3);
  return t;
}

/* The FP8 decode GEMV (V4's FP8 linear, the model's linears = "fp8") at
 * the model's one-row tiles, over e4m3 weights with 128 x 128 block scales
 * (fp8_block_quant, outside the timing): linear_fp8_act, the model's form
 * (the activation quantised in the GEMV), returned; *two gets the two
 * launches it replaced (act_quant, then linear_fp8). *bytes gets the
 * weights' and scales' bytes. */
static double gemv_fp8(int64_t N, int64_t K, int seed, double *bytes, double *two) {
  int64_t KB = (K + 127) / 128, NB = (N + 127) / 128;
  int64_t sx[3] = {1, 1, K}, ss[3] = {1, 1, KB}, sw[3] = {1, N, K}, sws[3] = {1, NB, KB},
          sy[3] = {1, 1, N};
  ts_tensor *wf = rnd(gpu, TS_DTYPE_F32, 3, sw, seed + 1, 0.02);
  ts_arg w[3] = {ts_arg_tensor(wf), ts_arg_tensor(tensor(gpu, TS_DTYPE_FP8E4M3, 3, sw)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, sws))};
  ts_status st = ts_kernel_launch(gpu_kern("kernels/quant.tile", "fp8_block_quant", NULL), w, 3);
  if (st)
    die(st, "fp8_block_quant");
  ts_arg q[3] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 3, sx, seed, 1)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, sx)),
                 ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, ss))};
  ts_arg l[5] = {q[1], q[2], w[1], w[2], ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 3, sy))};
  *two = timed(gpu_kern("kernels/quant.tile", "act_quant", NULL), q, 3) +
         timed(gpu_kern("kernels/gemm.tile", "linear_fp8", "BM=1 BN=32"), l, 5);
  int64_t one[1] = {1};
  ts_arg f[5] = {q[0], w[1], w[2], l[4], ts_arg_tensor(tensor(gpu, TS_DTYPE_F32, 1, one))};
  double t = timed(gpu_kern("kernels/gemm.tile", "linear_fp8_act", "BM=1 BN=32"), f, 5);
  *bytes += (double)N * K + (double)NB * KB * 4;
  ts_tensor_release(l[4].tensor);
  ts_tensor_release(f[4].tensor);
  release_args(q, 3);
  release_args(w, 3);
  return t;
}

/* gemm_splitk's partial products on the GPU against the CPU (5 slices of a
 * K of 200 in steps of 32: the last ones empty), and linear_fp8's (odd
 * shapes: partial scale blocks, two groups). */
static void gemv_check(void) {
  int64_t sa[2] = {3, 200}, sb[2] = {70, 200}, sp[3] = {5, 3, 70};
  ts_arg a[3] = {ts_arg_tensor(rnd(host, TS_DTYPE_BF16, 2, sa, 91, 1)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_BF16, 2, sb, 92, 1)),
                 ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sp))};
  differential("kernels/gemm.tile", "gemm_splitk", "BK=32", a, 3, 2, 1e-5);
  release_args(a, 3);
  int64_t sx[3] = {3, 2, 200}, ss[3] = {3, 2, 2}, sw[3] = {2, 70, 200}, sws[3] = {2, 1, 2},
          sy[3] = {3, 2, 70};
  ts_arg f[5] = {ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, sx, 93, 1)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, ss, 94, 1)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 3, sw, 95, 1)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, sws, 96, 1)),
                 ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, sy))};
  differential("kernels/gemm.tile", "linear_fp8", "BM=1 BN=32", f, 5, 4, 1e-5);
  differential("kernels/gemm.tile", "linear_fp8", NULL, f, 5, 4, 1e-5);
  int64_t one[1] = {1};
  ts_arg fa[5] = {f[0], f[2], f[3], f[4], ts_arg_tensor(tensor(host, TS_DTYPE_F32, 1, one))};
  differential("kernels/gemm.tile", "linear_fp8_act", NULL, fa, 5, 3, 1e-5);
  release_args(f, 5);
  ts_tensor_release(fa[4].tensor);
  /* with NORM (one row, one group: a decode step's qr into wq_b) */
  int64_t nx[3] = {1, 1, 200}, nws[1] = {200}, nwt[3] = {1, 70, 200}, nsc[3] = {1, 1, 2},
          ny[3] = {1, 1, 70};
  ts_arg n[5] = {ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, nx, 97, 1)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 3, nwt, 98, 1)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, nsc, 99, 1)),
                 ts_arg_tensor(tensor(host, TS_DTYPE_F32, 3, ny)),
                 ts_arg_tensor(rnd(host, TS_DTYPE_F32, 1, nws, 100, 1))};
  differential("kernels/gemm.tile", "linear_fp8_act", "NORM=true", n, 5, 3, 1e-5);
  release_args(n, 5);
}

/* The decode GEMV of the layer steps: split-K. */
static double gemv(int64_t N, int64_t K, int seed, double *bytes) {
  return gemv_with(N, K, splitk_for(N, K), seed, bytes);
}

/* Decode's projections at batch 1 (V4-Flash's shapes): gemm_nt's grid of
 * N / 32 blocks against gemm_splitk, both as a fraction of the copy. */
static void decode_gemv(void) {
  printf("\n## Decode projections (one token: [1, K] x [N, K]^T, bf16; FP8: V4's FP8 linear, "
         "linear_fp8_act (the activation quantised in the GEMV; the model's form) against "
         "act_quant + linear_fp8, e4m3 weights with 128 x 128 scales)\n\n");
  printf("| N x K | gemm_nt ms | split-K ms (slices) | split-K GB/s | of copy | gemm_nt / split-K "
         "| FP8 ms | FP8 GB/s | split-K / FP8 | two launches ms | two / one |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  static const int64_t nk[5][2] = {{512, 4096}, {1024, 4096}, {32768, 1024}, {4096, 8192}, {8192, 4096}};
  for (int i = 0; i < 5; i++) {
    int64_t N = nk[i][0], K = nk[i][1], KS = splitk_for(N, K);
    double b0 = 0, b1 = 0, b8 = 0, t2 = 0, t0 = gemv_with(N, K, 0, 90, &b0),
           t1 = gemv_with(N, K, KS, 90, &b1), t8 = gemv_fp8(N, K, 90, &b8, &t2);
    char r1[32], r2[32], r3[32], r4[32];
    printf("| %lld x %lld | %.4f | %.4f (%lld) | %.0f | %s | %s | %.4f | %.0f | %s | %.4f | %s |\n",
           (long long)N, (long long)K, t0 * 1e3, t1 * 1e3, (long long)KS, b1 / t1 / 1e9,
           ratio(r1, copy_bps > 0 ? b1 / t1 / copy_bps : 0), ratio(r2, t0 / t1), t8 * 1e3,
           b8 / t8 / 1e9, ratio(r3, t1 / t8), t2 * 1e3, ratio(r4, t2 / t8));
  }
}

/* An i32 [1, n] of indices: 0 .. n - 1 (dense), or n random ones below hi. */
static ts_tensor *indices(int64_t n, int64_t hi, bool dense) {
  int64_t s2[2] = {1, n};
  ts_tensor *h = tensor(host, TS_DTYPE_I32, 2, s2);
  uint64_t s = 29;
  for (int64_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    ts_tensor_set(h, i, dense ? (double)i : (double)((s >> 33) % (uint64_t)hi));
  }
  ts_tensor *g = to_gpu(h);
  ts_tensor_release(h);
  return g;
}

/* Seconds of split-KV decode attention of query q over all R rows of a
 * synthesized cache (bf16 rows, or packed: V4's 584-byte entries through
 * sparse_attn_split_kv8), one list of every index; *kv gets its bytes. */
static double every_entry(ts_tensor *q, ts_tensor *sink, ts_tensor *o, int64_t R, bool packed_kv,
                          int seed, double *kv) {
  int64_t C = ts_tensor_dim(q, 2), E = 584, skv[2] = {R, C};
  ts_tensor *cache = packed_kv ? packed(gpu, "kv_pack", R, C, E, seed)
                               : rnd(gpu, TS_DTYPE_BF16, 2, skv, seed, 1);
  ts_arg c[5] = {ts_arg_tensor(q), ts_arg_tensor(cache), ts_arg_tensor(indices(R, R, true)),
                 ts_arg_tensor(sink), ts_arg_tensor(o)};
  double t = split_attn("kernels/sparse_attn.tile",
                        packed_kv ? "sparse_attn_split_kv8" : "sparse_attn_split", c, 5,
                        splits_for(1, R));
  *kv = packed_kv ? (double)R * E : (double)R * C * 2;
  ts_tensor_release(cache);
  ts_tensor_release(c[2].tensor);
  return t;
}

/* One decode step of a V4-Flash attention layer (d 4096, 64 heads x 512,
 * q_lora 1024, 8 output groups of 1024, window 128) at context L, as the
 * sum of its kernels' CUDA-event times: the projections (GEMVs), then CSA
 * (compressor projections, the indexer's over L / 4 keys, top-512, split-KV
 * sparse attention over 512 + 128), HCA (dense over L / 128 entries + the
 * window: hca_attn_split + merge) or dense attention over all L tokens (the split-KV
 * sparse kernel given every index). The caches are synthesized at their sizes (random contents: a
 * prefill's values do not change a decode step's work); the kernels run on
 * inputs of the right shapes, not chained, so launch gaps are not counted.
 * packed: the caches in V4's formats (quant.tile: KV entries of E = 584
 * bytes, CSA's read where they lie by sparse_attn_split_kv8_ring, HCA's by
 * hca_attn_split_kv8, dense's by sparse_attn_split_kv8 as one list of every
 * entry; the indexer's keys in FP4, 68 bytes, read by indexer_scores_fp4_tc);
 * else bf16 rows (CSA one list by sparse_attn_split, HCA by hca_attn_split).
 * Returns the milliseconds; *kv gets the cache bytes allocated. */
static double layer_step(int kind, int64_t L, bool packed_kv, double *kv) {
  int64_t d = 4096, H = 64, C = 512, W = 128, topk = 512, E = 584, P4 = 128 / 2 + 128 / 32;
  double wb = 0, t = 0;
  t += gemv(1024, d, 40, &wb);      /* q_a */
  t += gemv(H * C, 1024, 42, &wb);  /* q_b */
  t += gemv(C, d, 44, &wb);         /* kv */
  for (int g = 0; g < 8; g++)
    t += gemv(1024, d, 46, &wb);    /* o_a, one per group */
  t += gemv(d, 8 * 1024, 48, &wb);  /* o_b */
  int64_t sq[3] = {1, H, C};
  ts_tensor *q = rnd(gpu, TS_DTYPE_BF16, 3, sq, 50, 1), *o = tensor(gpu, TS_DTYPE_BF16, 3, sq);
  ts_tensor *sink = rnd(gpu, TS_DTYPE_F32, 1, &H, 51, 0.5);
  if (kind == 0) { /* CSA */
    int64_t n = L / 4;
    t += gemv(2 * C, d, 52, &wb) + gemv(2 * C, d, 54, &wb); /* compressor wkv, wgate */
    t += gemv(64 * 128, 1024, 56, &wb) + gemv(64, d, 58, &wb); /* indexer q, weights */
    t += gemv(2 * 128, d, 60, &wb) + gemv(2 * 128, d, 62, &wb); /* its compressor */
    int64_t siq[3] = {1, 64, 128}, sk[2] = {n, 128}, sw[2] = {1, 64}, so[2] = {1, n};
    ts_kernel *ks = gpu_kern("kernels/indexer.tile",
                             packed_kv ? "indexer_scores_fp4_tc" : "indexer_scores_tc", "RATIO=1");
    ts_arg a[4] = {ts_arg_tensor(rnd(gpu, TS_DTYPE_BF16, 3, siq, 64, 1)),
                   ts_arg_tensor(packed_kv ? packed(gpu, "fp4_pack", n, 128, P4, 65)
                                           : rnd(gpu, TS_DTYPE_BF16, 2, sk, 65, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, sw, 66, 1)),
                   ts_arg_tensor(rnd(gpu, TS_DTYPE_F32, 2, so, 67, 1))};
    t += timed(ks, a, 4);
    ts_tensor *len = tensor(host, TS_DTYPE_I32, 1, (int64_t[]){1});
    ts_tensor_set(len, 0, (double)n);
    ts_tensor *sc = rnd(gpu, TS_DTYPE_F32, 2, so, 68, 1), *glen = to_gpu(len), *sel;
    t += topk_seconds(sc, glen, n, topk, n >= 32768 ? topk_chunk(n, topk) : 0, &sel);
    int64_t skv[2] = {n + W, C};
    if (packed_kv) { /* as the model: the ring by slot, the top-k's entries in place */
      ts_arg c[7] = {ts_arg_tensor(q), ts_arg_tensor(packed(gpu, "kv_pack", W, C, E, 68)),
                     ts_arg_tensor(indices(W, W, true)),
                     ts_arg_tensor(packed(gpu, "kv_pack", n, C, E, 69)), ts_arg_tensor(sel),
                     ts_arg_tensor(sink), ts_arg_tensor(o)};
      t += split_attn("kernels/sparse_attn.tile", "sparse_attn_split_kv8_ring", c, 7,
                      splits_for(1, topk + W));
      release_args(c + 1, 3);
    } else { /* one bf16 cache of the window and the entries, a list into it */
      ts_tensor *cache = rnd(gpu, TS_DTYPE_BF16, 2, skv, 69, 1);
      ts_arg c[5] = {ts_arg_tensor(q), ts_arg_tensor(cache),
                     ts_arg_tensor(indices(topk + W, n + W, false)), ts_arg_tensor(sink),
                     ts_arg_tensor(o)};
      t += split_attn("kernels/sparse_attn.tile", "sparse_attn_split", c, 5,
                      splits_for(1, topk + W));
      release_args(c + 1, 2);
    }
    /* + the indexer's keys */
    *kv = packed_kv ? (double)(n + W) * E + (double)n * P4
                    : (double)(n + W) * C * 2 + (double)n * 128 * 2;
    release_args(a, 4);
    ts_tensor *done[4] = {len, sc, glen, sel};
    for (int i = 0; i < 4; i++)
      ts_tensor_release(done[i]);
  } else if (kind == 1) { /* HCA: the window's ring by slot, the entries in place */
    int64_t n = L / 128;
    t += gemv(C, d, 70, &wb) + gemv(C, d, 72, &wb); /* compressor wkv, wgate */
    int64_t sw2[2] = {W, C}, sc[2] = {n, C};
    ts_tensor *win = packed_kv ? packed(gpu, "kv_pack", W, C, E, 74)
                               : rnd(gpu, TS_DTYPE_BF16, 2, sw2, 74, 1);
    ts_tensor *comp = packed_kv ? packed(gpu, "kv_pack", n, C, E, 75)
                                : rnd(gpu, TS_DTYPE_BF16, 2, sc, 75, 1);
    /* (the entry count, the first entry row 0, the token's ranges) */
    int64_t P = splits_for(1, W + n);
    ts_arg c[9] = {ts_arg_tensor(q), ts_arg_tensor(win), ts_arg_tensor(indices(W, W, true)),
                   ts_arg_tensor(comp), ts_arg_tensor(gpu_int(n)), ts_arg_tensor(gpu_int(0)),
                   ts_arg_tensor(gpu_int(P)), ts_arg_tensor(sink), ts_arg_tensor(o)};
    t += split_attn("kernels/hca_attn.tile", packed_kv ? "hca_attn_split_kv8" : "hca_attn_split",
                    c, 9, P);
    *kv = (double)(n + W) * (packed_kv ? E : C * 2);
    for (int i = 1; i < 7; i++)
      ts_tensor_release(c[i].tensor);
  } else { /* dense: every token's entry */
    t += every_entry(q, sink, o, L, packed_kv, 76, kv);
  }
  ts_tensor_release(q);
  ts_tensor_release(o);
  ts_tensor_release(sink);
  return t * 1e3;
}

static void million_token_layer(void) {
  printf("\n## The million-token layer (V4-Flash attention layer, one decode step, batch 1)\n\n");
  printf("Caches synthesized at each context; the step is the sum of its kernels' times. First "
         "with bf16 entries and keys, then in V4's own formats (KV entries of 584 B: e4m3, bf16 "
         "rope dims, ue8m0 scales; the indexer's keys in FP4, 68 B), which the dense layer "
         "uses too.\n");
  int64_t ctx[3] = {quick ? 4096 : 131072, quick ? 8192 : 524288, quick ? 16384 : 1048576};
  for (int f = 0; f < 2; f++) {
    printf("\n| context (%s) | CSA ms | CSA KV MiB | HCA ms | HCA KV MiB | dense ms | dense KV MiB | "
           "dense / CSA time | dense / CSA KV |\n|---|---|---|---|---|---|---|---|---|\n",
           f ? "V4 formats" : "bf16");
    for (int i = 0; i < 3; i++) {
      double kc, kh, kd;
      double tc = layer_step(0, ctx[i], f, &kc), th = layer_step(1, ctx[i], f, &kh);
      double td = layer_step(2, ctx[i], f, &kd);
      char r1[32], r2[32];
      printf("| %lld | %.3f | %.1f | %.3f | %.1f | %.3f | %.1f | %s | %s |\n", (long long)ctx[i],
             tc, kc / 1048576, th, kh / 1048576, td, kd / 1048576,
             ratio(r1, tc > 0 ? td / tc : 0), ratio(r2, kc > 0 ? kd / kc : 0));
    }
  }
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      quick = true;
    } else if (!strcmp(argv[i], "--no-check")) {
      check = false;
    } else if (!strcmp(argv[i], "--check-only")) {
      check_only = true;
    } else {
      fprintf(stderr, "usage: gpu_v4 [--quick] [--no-check | --check-only]\n");
      return 2;
    }
  }
  /* --check-only: the checks alone, on the GPU simulator when
   * TS_TEST_DEVICE=gpusim (the test suite runs it so) */
  const char *dev = getenv("TS_TEST_DEVICE");
  ts_status st = check_only && dev && !strcmp(dev, "gpusim") ? ts_device_create_gpusim(&gpu)
                                                              : ts_device_create_cuda(0, &gpu);
  if (st) {
    printf("skipped: %s\n", ts_status_message(st));
    ts_status_free(st);
    return 0;
  }
  if ((st = ts_device_create_cpu(1, &host)))
    die(st, "the CPU device");
  const char *model = ts_device_model(gpu);
  if (strstr(model, "H200"))
    hbm_bps = 4.8e12;
  else if (strstr(model, "H100"))
    hbm_bps = strstr(model, "PCIe") ? 2.0e12 : 3.35e12;
  peak_flops = getenv("TS_PEAK_TFLOPS") ? atof(getenv("TS_PEAK_TFLOPS")) * 1e12
               : strstr(model, "H100") || strstr(model, "H200") ? 989.4e12
                                                               : 0;
  const char *lowering = getenv("TESSERA_GPU_LOWERING");
  printf("# V4 kernels on %s (%s lowering%s)\n", model,
         lowering && !strcmp(lowering, "cuda") ? "CUDA C" : "MLIR", quick ? ", --quick shapes" : "");
  if (!check_only)
    bandwidth();
  fp8_gemm();
  gemv_check();
  attention();
  attention_kv8();
  hca_prefill();
  indexer();
  mhc_and_compressor();
  tf32_linear();
  moe_decode();
  moe_gating();
  if (!check_only) {
    moe();
    decode_gemv();
    million_token_layer();
  }
  ts_device_release(host);
  ts_device_release(gpu);
  if (failed_checks)
    printf("\n%d check(s) FAILED: those kernels' figures above are not valid\n", failed_checks);
  return failed_checks ? 1 : 0;
}
