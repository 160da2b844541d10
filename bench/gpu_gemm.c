/* gpu_gemm.c - the bf16 GEMM of kernels/gemm.tile (gemm_nt: C = A B^T, f32
 * out; tensor cores and a cp.async ring) on the CUDA device. First checked
 * against a CPU reference on an odd shape, then timed with CUDA events
 * (median of 10 after a warm-up) at each size, as TFLOP/s and as a fraction
 * of the device's dense bf16 peak, next to torch.matmul timed in the same
 * run (bench/gpu_torch.py) when python3 can import torch with a GPU.
 * Markdown on stdout; without a GPU it says so and exits 0. Run from the
 * source root:
 *   build/bench/gpu_gemm [--sizes 1024,4096,8192] [--no-check] [NAME=VALUE...]
 * Without NAME=VALUE it also times tile shapes (128 x 128, 128 x 256,
 * 256 x 128) and ring depths (STAGES) at 4096 (or the largest size below),
 * each checked first.
 * NAME=VALUE are the kernel's params (BM=128 BN=128 STAGES=4);
 * TESSERA_GPU_LOWERING=cuda times the CUDA C lowering; TS_PEAK_TFLOPS sets
 * the peak when the device's name does not say it. */
#include "bench/bench.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static void die(ts_status st) {
  fprintf(stderr, "gpu_gemm: %s\n", ts_status_message(st));
  exit(1);
}

/* A [rows, cols] tensor on the host with values in [-1, 1) (bf16 or f32). */
static ts_tensor *host_tensor(ts_device *h, ts_dtype dt, int64_t rows, int64_t cols,
                              uint64_t *seed) {
  int64_t shape[2] = {rows, cols};
  ts_tensor *t;
  ts_status st = ts_tensor_create(h, dt, 2, shape, &t);
  if (st)
    die(st);
  for (int64_t i = 0; i < rows * cols; i++) {
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    ts_tensor_set(t, i, (double)(*seed >> 11) / 9007199254740992.0 * 2 - 1);
  }
  return t;
}

static ts_tensor *on(ts_device *d, ts_tensor *t) { return bench_copy(t, d, "gpu_gemm"); }

/* torch.matmul's seconds at each size, from bench/gpu_torch.py (0 when it
 * cannot run). */
static void torch_times(const int64_t *n, int count, double *out) {
  char cmd[512] = "python3 bench/gpu_torch.py";
  for (int i = 0; i < count; i++)
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %lld", (long long)n[i]);
  snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " 2>/dev/null");
  for (int i = 0; i < count; i++)
    out[i] = 0;
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  long long size;
  double sec;
  while (fscanf(p, "%lld %lf", &size, &sec) == 2)
    for (int i = 0; i < count; i++)
      if (n[i] == size)
        out[i] = sec;
  pclose(p);
}

/* gemm_nt on odd shapes (333 x 257 x 191, whose rows are not whole
 * 16-byte units, so the operands go by cp.async; and 333 x 257 x 192, by
 * TMA on sm_90a) against f64 on the host: prints the relative errors;
 * false (and says so) when one is not below 1e-5. */
static bool check_one(ts_kernel *k, ts_device *gpu, ts_device *host, int64_t K);
static bool check_ok(ts_kernel *k, ts_device *gpu, ts_device *host) {
  bool a = check_one(k, gpu, host, 191);
  return check_one(k, gpu, host, 192) && a;
}

static bool check_one(ts_kernel *k, ts_device *gpu, ts_device *host, int64_t K) {
  uint64_t seed = 7;
  int64_t M = 333, N = 257;
  ts_tensor *a = host_tensor(host, TS_DTYPE_BF16, M, K, &seed);
  ts_tensor *b = host_tensor(host, TS_DTYPE_BF16, N, K, &seed);
  ts_tensor *c = host_tensor(host, TS_DTYPE_F32, M, N, &seed);
  ts_tensor *da = on(gpu, a), *db = on(gpu, b), *dc = on(gpu, c);
  ts_arg args[3] = {ts_arg_tensor(da), ts_arg_tensor(db), ts_arg_tensor(dc)};
  ts_status st = ts_kernel_launch(k, args, 3);
  if (st)
    die(st);
  ts_tensor *back = on(host, dc);
  double num = 0, den = 0;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t x = 0; x < K; x++)
        s += ts_tensor_get(a, i * K + x) * ts_tensor_get(b, j * K + x);
      double d = ts_tensor_get(back, i * N + j) - s;
      num += d * d;
      den += s * s;
    }
  double err = sqrt(num / (den > 0 ? den : 1));
  printf("check (%s): %lldx%lldx%lld against f64, relative error %.2e\n",
         *ts_kernel_config(k) ? ts_kernel_config(k) : "default params", (long long)M,
         (long long)N, (long long)K, err);
  ts_tensor *all[] = {a, b, c, da, db, dc, back};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    ts_tensor_release(all[i]);
  if (!(err < 1e-5))
    fprintf(stderr, "gpu_gemm: wrong results; not timing\n");
  return err < 1e-5;
}

/* Seconds of `k` at M = N = K = n (median of 10). */
static double time_at(ts_kernel *k, ts_device *gpu, int64_t n) {
  int64_t shape[2] = {n, n};
  ts_tensor *a, *b, *c;
  ts_status st;
  if ((st = ts_tensor_create(gpu, TS_DTYPE_BF16, 2, shape, &a)) ||
      (st = ts_tensor_create(gpu, TS_DTYPE_BF16, 2, shape, &b)) ||
      (st = ts_tensor_create(gpu, TS_DTYPE_F32, 2, shape, &c)))
    die(st);
  ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
  double t = bench_gpu_median(k, args, 3, 10, "gpu_gemm");
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(c);
  return t;
}

int main(int argc, char **argv) {
  int64_t sizes[16] = {1024, 2048, 4096, 8192};
  int nsizes = 4;
  bool check = true, failed = false;
  ts_define defs[8];
  char defbuf[8][64];
  size_t ndefs = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--no-check")) {
      check = false;
    } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
      nsizes = 0;
      for (char *s = argv[++i]; *s && nsizes < 16;) {
        sizes[nsizes++] = strtoll(s, &s, 10);
        if (*s == ',')
          s++;
      }
    } else if (strchr(argv[i], '=') && ndefs < 8) {
      snprintf(defbuf[ndefs], sizeof defbuf[ndefs], "%s", argv[i]);
      char *eq = strchr(defbuf[ndefs], '=');
      *eq = 0;
      defs[ndefs] = (ts_define){defbuf[ndefs], eq + 1};
      ndefs++;
    } else {
      fprintf(stderr, "usage: gpu_gemm [--sizes N,N...] [--no-check] [NAME=VALUE...]\n");
      return 2;
    }
  }
  ts_device *gpu, *host;
  ts_status st = ts_device_create_cuda(0, &gpu);
  if (st) {
    printf("skipped: %s\n", ts_status_message(st));
    ts_status_free(st);
    return 0;
  }
  if ((st = ts_device_create_cpu(1, &host)))
    die(st);
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  ts_kernel *k;
  if ((st = ts_kernel_create(gpu, "kernels/gemm.tile", "gemm_nt", defs, ndefs, &diags, &k))) {
    ts_diags_render(&diags, stderr, (ts_render_options){false, true});
    die(st);
  }
  const char *lowering = getenv("TESSERA_GPU_LOWERING");
  printf("# bf16 GEMM on %s (gemm_nt %s, %s lowering)\n\n", ts_device_model(gpu),
         *ts_kernel_config(k) ? ts_kernel_config(k) : "default params",
         lowering && !strcmp(lowering, "cuda") ? "CUDA C" : "MLIR");
  if (check && !check_ok(k, gpu, host))
    return 1;
  printf("\n");
  double peak = getenv("TS_PEAK_TFLOPS") ? atof(getenv("TS_PEAK_TFLOPS")) : 0;
  if (peak <= 0 && (strstr(ts_device_model(gpu), "H100") || strstr(ts_device_model(gpu), "H200")))
    peak = 989.4; /* dense bf16, SXM (PERF-ANCHORS.md) */
  double torch[16];
  torch_times(sizes, nsizes, torch);
  printf("| n (M = N = K) | Tessera ms | TFLOP/s | of peak | torch.matmul ms | Tessera / torch |\n");
  printf("|---|---|---|---|---|---|\n");
  for (int s = 0; s < nsizes; s++) {
    int64_t n = sizes[s];
    double t = time_at(k, gpu, n);
    double tf = t > 0 ? 2.0 * (double)n * (double)n * (double)n / t / 1e12 : 0;
    char of[32] = "-", tr[32] = "-", rt[32] = "-";
    if (peak > 0)
      snprintf(of, sizeof of, "%.2f", tf / peak);
    if (torch[s] > 0) {
      snprintf(tr, sizeof tr, "%.3f", torch[s] * 1e3);
      snprintf(rt, sizeof rt, "%.2f", t > 0 ? torch[s] / t : 0);
    }
    printf("| %lld | %.3f | %.1f | %s | %s | %s |\n", (long long)n, t * 1e3, tf, of, tr, rt);
  }
  /* TMA against cp.async for the same kernel (TESSERA_TMA=0 makes the
   * runtime pass no tensor maps; docs/abi.md "Pipelined loops") */
  printf("\nOperand copies, TMA or cp.async (on sm_90a; elsewhere both are "
         "cp.async):\n\n| n | TMA ms | cp.async ms | cp.async / TMA |\n|---|---|---|---|\n");
  for (int s = 0; s < nsizes; s++) {
    int64_t n = sizes[s];
    double with = time_at(k, gpu, n);
    setenv("TESSERA_TMA", "0", 1);
    double without = time_at(k, gpu, n);
    unsetenv("TESSERA_TMA");
    printf("| %lld | %.3f | %.3f | %.2f |\n", (long long)n, with * 1e3, without * 1e3,
           with > 0 ? without / with : 0);
  }
  /* tile shapes and ring depths at 4096 (or the largest size below): on
   * sm_90a the wgmma of one k step stays in flight while the next is
   * issued, so copies run STAGES - 2 ahead there (STAGES - 1 elsewhere);
   * 128 x 256 and 256 x 128 are the shapes cuBLAS and CUTLASS run at peak
   * (128 accumulators a thread). Each config is checked before it is
   * timed; one that fails says so and the sweep goes on. */
  if (!ndefs) {
    /* the grouped order of output tiles (GM tile rows a group, the
     * default 8) against row by row (GM 1) at the largest size, where B
     * does not fit in L2 */
    int64_t big = sizes[0];
    for (int s = 1; s < nsizes; s++)
      big = sizes[s] > big ? sizes[s] : big;
    ts_define g1 = {"GM", "1"};
    ts_kernel *kr;
    if (!(st = ts_kernel_create(gpu, "kernels/gemm.tile", "gemm_nt", &g1, 1, &diags, &kr))) {
      double grouped = time_at(k, gpu, big), rows = time_at(kr, gpu, big);
      printf("\nOrder of output tiles at %lld^3:\n\n| grouped (GM 8) ms | row by row "
             "(GM 1) ms | row by row / grouped |\n|---|---|---|\n| %.3f | %.3f | %.2f |\n",
             (long long)big, grouped * 1e3, rows * 1e3, grouped > 0 ? rows / grouped : 0);
      ts_kernel_release(kr);
    } else {
      ts_status_free(st);
    }
    static const char *const sweep[][3] = {
        {"128", "128", "2"}, {"128", "128", "3"}, {"128", "128", "4"}, {"128", "128", "5"},
        {"128", "128", "6"}, {"128", "256", "3"}, {"128", "256", "4"}, {"256", "128", "3"},
        {"256", "128", "4"}};
    int64_t n = 0;
    for (int s = 0; s < nsizes; s++)
      if (sizes[s] <= 4096 && sizes[s] > n)
        n = sizes[s];
    double base = time_at(k, gpu, n);
    printf("\nTile shapes and the cp.async ring's depth at %lld^3 (the default above: %s):\n\n",
           (long long)n, *ts_kernel_config(k) ? ts_kernel_config(k) : "default params");
    printf("| BM x BN | STAGES | ms | TFLOP/s | of peak | default / this |\n"
           "|---|---|---|---|---|---|\n");
    for (size_t c = 0; c < sizeof sweep / sizeof sweep[0]; c++) {
      ts_define d[3] = {{"BM", sweep[c][0]}, {"BN", sweep[c][1]}, {"STAGES", sweep[c][2]}};
      ts_kernel *ks;
      if ((st = ts_kernel_create(gpu, "kernels/gemm.tile", "gemm_nt", d, 3, &diags, &ks))) {
        printf("| %s x %s | %s | %s | | | |\n", sweep[c][0], sweep[c][1], sweep[c][2],
               ts_status_message(st));
        ts_status_free(st);
        continue;
      }
      if (check && !check_ok(ks, gpu, host)) {
        printf("| %s x %s | %s | check FAILED | | | |\n", sweep[c][0], sweep[c][1], sweep[c][2]);
        failed = true;
        ts_kernel_release(ks);
        continue;
      }
      double t = time_at(ks, gpu, n);
      double tf = t > 0 ? 2.0 * (double)n * (double)n * (double)n / t / 1e12 : 0;
      char of[32] = "-";
      if (peak > 0)
        snprintf(of, sizeof of, "%.2f", tf / peak);
      printf("| %s x %s | %s | %.3f | %.1f | %s | %.2f |\n", sweep[c][0], sweep[c][1],
             sweep[c][2], t * 1e3, tf, of, t > 0 ? base / t : 0);
      ts_kernel_release(ks);
    }
  }
  ts_kernel_release(k);
  ts_diags_deinit(&diags);
  ts_device_release(host);
  ts_device_release(gpu);
  return failed ? 1 : 0;
}
