/* test_v4.c - the V4 kernels (quant.tile, hadamard.tile) on the CPU:
 * against the C references of tests/ref on odd shapes and edge cases (bit
 * for bit for the quantisation simulations), and against the tensors
 * DeepSeek's own reference code computed (../shared/golden, when present):
 * the simulations must match bit for bit. */
#include "tests/numerics/num.h"
#include "tests/ref/v4_ref.h"

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
  CHECK_ERR(num_relerr(got, want, n), 1e-6, "hadamard_f32");
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

static ts_safetensors *open_golden(const char *file) {
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
  ts_safetensors *f = open_golden("bf16.safetensors");
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
  f = open_golden("f32.safetensors");
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

int main(void) {
  num_init();
  ts_kernel *k8 = num_kernel("kernels/quant.tile", "fp8_sim", NULL, NULL);
  ts_kernel *k4 = num_kernel("kernels/quant.tile", "fp4_sim", NULL, NULL);
  ts_kernel *kh = num_kernel("kernels/hadamard.tile", "hadamard", NULL, NULL);
  ts_kernel *khf = num_kernel("kernels/hadamard.tile", "hadamard_f32", NULL, NULL);
  if (k8 && k4 && kh && khf) {
    test_sim_random(k8, true);
    test_sim_random(k4, false);
    test_hadamard_random(kh, khf);
    test_golden(k8, k4, kh, khf);
  }
  ts_kernel_release(k8);
  ts_kernel_release(k4);
  ts_kernel_release(kh);
  ts_kernel_release(khf);
  num_finish();
  return ts_test_finish();
}
