/* test_moe.c - DeepSeekMoE's kernels (moe.tile, V4-SPEC 1.9) on the CPU:
 * the router (sqrt(softplus) affinities, biased or hash routing, weights)
 * and the per-token experts against f64 references and DeepSeek's golden
 * tensors (../shared/golden, when present), and the grouped form (count,
 * offsets, scatter, grouped GEMM, combine) against the per-token one. */
#include "tests/numerics/num.h"

static void ref_router(const double *x, const double *wg, const double *bias,
                       const int32_t *ids, const int32_t *tid2eid, int64_t T,
                       int64_t E, int64_t DM, int64_t K, int hash,
                       double scale, int32_t *ex, double *wt) {
  for (int64_t t = 0; t < T; t++) {
    double sv[512], sel[512], total = 0;
    for (int64_t e = 0; e < E; e++) {
      double l = 0;
      for (int64_t d = 0; d < DM; d++)
        l += x[t * DM + d] * wg[e * DM + d];
      double sp = l > 20 ? l : log1p(exp(l));
      sv[e] = sqrt(sp);
      sel[e] = sv[e] + bias[e];
    }
    for (int64_t k = 0; k < K; k++) {
      int64_t best = -1;
      if (hash) {
        best = tid2eid[ids[t] * K + k];
      } else {
        for (int64_t e = 0; e < E; e++)
          if (best < 0 || sel[e] > sel[best])
            best = e;
        sel[best] = -INFINITY;
      }
      ex[t * K + k] = (int32_t)best;
      wt[t * K + k] = sv[best];
      total += sv[best];
    }
    for (int64_t k = 0; k < K; k++)
      wt[t * K + k] = wt[t * K + k] / total * scale;
  }
}

/* Runs the router; compares experts as sets (weights matched by expert). */
static void check_router(ts_kernel *k, ts_tensor *x, ts_tensor *wg,
                         ts_tensor *bias, ts_tensor *ids, ts_tensor *t2e,
                         const int32_t *want_ex, const double *want_w,
                         int64_t T, int64_t K, double tol, const char *what) {
  int64_t so[2] = {T, K};
  ts_tensor *ex = num_tensor(TS_DTYPE_I32, 2, so), *wt = num_tensor(TS_DTYPE_F32, 2, so);
  ts_arg a[7] = {ts_arg_tensor(x),   ts_arg_tensor(wg),  ts_arg_tensor(bias),
                 ts_arg_tensor(ids), ts_arg_tensor(t2e), ts_arg_tensor(ex),
                 ts_arg_tensor(wt)};
  num_launch(k, a, 7);
  const int32_t *ge = ts_tensor_data(ex);
  const float *gw = ts_tensor_data(wt);
  int64_t set_bad = 0;
  double worst = 0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < K; i++) {
      int64_t j = 0;
      while (j < K && want_ex[t * K + j] != ge[t * K + i])
        j++;
      if (j == K) {
        set_bad++;
        continue;
      }
      worst = fmax(worst, fabs(gw[t * K + i] - want_w[t * K + j]) /
                              fmax(1e-30, fabs(want_w[t * K + j])));
    }
  if (set_bad || worst > tol)
    fprintf(stderr, "%s: %lld experts differ, weight error %g\n", what,
            (long long)set_bad, worst);
  CHECK(set_bad == 0);
  CHECK(worst <= tol);
  ts_tensor_release(ex);
  ts_tensor_release(wt);
}

static void test_router(void) {
  ts_kernel *k = num_kernel("kernels/moe.tile", "moe_router", NULL, NULL);
  ts_kernel *kh = num_kernel("kernels/moe.tile", "moe_router", "HASH=true", NULL);
  if (!k || !kh)
    return;
  /* V4-Flash-like: 256 experts, top 6, d 512 (a slice of 4096) */
  int64_t T = 9, E = 256, DM = 512, K = 6, V = 50;
  int64_t sx[2] = {T, DM}, sw[2] = {E, DM}, st[2] = {V, K};
  uint64_t seed = 61;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sx), *wg = num_tensor(TS_DTYPE_BF16, 2, sw);
  ts_tensor *bias = num_tensor(TS_DTYPE_F32, 1, &E), *ids = num_tensor(TS_DTYPE_I32, 1, &T);
  ts_tensor *t2e = num_tensor(TS_DTYPE_I32, 2, st);
  double *xv = num_fill(x, -1, 1, &seed), *wv = num_fill(wg, -0.1, 0.1, &seed);
  double *bv = num_fill(bias, -0.05, 0.05, &seed), *iv = num_fill(ids, 0, V, &seed);
  double *tv = num_fill(t2e, 0, E, &seed);
  int32_t idsi[9], t2ei[300], ex[54];
  double wt[54];
  for (int i = 0; i < T; i++)
    idsi[i] = (int32_t)iv[i];
  for (int i = 0; i < V * K; i++)
    t2ei[i] = (int32_t)tv[i];
  for (int hash = 0; hash < 2; hash++) {
    ref_router(xv, wv, bv, idsi, t2ei, T, E, DM, K, hash, 1.5, ex, wt);
    check_router(hash ? kh : k, x, wg, bias, ids, t2e, ex, wt, T, K, 1e-5,
                 hash ? "router (hash)" : "router");
  }
  free(xv);
  free(wv);
  free(bv);
  free(iv);
  free(tv);
  ts_tensor_release(x);
  ts_tensor_release(wg);
  ts_tensor_release(bias);
  ts_tensor_release(ids);
  ts_tensor_release(t2e);
  /* golden: layer 0 is hash-routed, layer 1 routed by top-k with bias */
  ts_safetensors *w = num_golden_open("weights.safetensors");
  ts_safetensors *f = num_golden_open("f32.safetensors");
  for (int layer = 0; layer < 2 && w && f; layer++) {
    char n[128];
    snprintf(n, sizeof n, "prefill.layers.%d.ffn.in", layer);
    ts_tensor *gx = num_golden_tensor(f, n);
    snprintf(n, sizeof n, "layers.%d.ffn.gate.weight", layer);
    ts_tensor *gw = num_golden_tensor(w, n);
    snprintf(n, sizeof n, "prefill.layers.%d.ffn.gate.experts", layer);
    const ts_st_tensor *ge = ts_safetensors_find(f, n);
    snprintf(n, sizeof n, "prefill.layers.%d.ffn.gate.weights", layer);
    const ts_st_tensor *gwt = ts_safetensors_find(f, n);
    const ts_st_tensor *all_ids = ts_safetensors_find(f, "input_ids");
    CHECK(gx && gw && ge && gwt && all_ids);
    if (!gx || !gw || !ge || !gwt || !all_ids)
      break;
    int64_t GT = ts_tensor_dim(gx, 0), GE = ts_tensor_dim(gw, 0), GK = ge->shape[1];
    ts_tensor *gb;
    if (layer == 1) {
      gb = num_golden_tensor(w, "layers.1.ffn.gate.bias");
    } else {
      gb = num_tensor(TS_DTYPE_F32, 1, &GE);
    }
    ts_tensor *gids = num_tensor(TS_DTYPE_I32, 1, &GT);
    memcpy(ts_tensor_data(gids), all_ids->data, (size_t)GT * 4);
    ts_tensor *gt2e = layer == 0 ? num_golden_tensor(w, "layers.0.ffn.gate.tid2eid")
                                 : num_tensor(TS_DTYPE_I32, 2, (int64_t[]){1, GK});
    double *wantw = malloc((size_t)(GT * GK) * sizeof *wantw);
    for (int64_t i = 0; i < GT * GK; i++)
      wantw[i] = ((const float *)gwt->data)[i];
    char defs[2][32] = {"", ""};
    (void)defs;
    ts_define d[2] = {{"HASH", layer == 0 ? "true" : "false"}, {"ROUTE_SCALE", "1.5"}};
    ts_diags dg;
    ts_diags_init(&dg, ts_allocator_system());
    const char *root = getenv("TS_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/kernels/moe.tile", root ? root : ".");
    ts_kernel *kg = NULL;
    ts_status st = ts_kernel_create(num_kdev, path, "moe_router", d, 2, &dg, &kg);
    CHECK(st == NULL);
    ts_status_free(st);
    ts_diags_deinit(&dg);
    if (kg) {
      snprintf(n, sizeof n, "golden router layer %d", layer);
      check_router(kg, gx, gw, gb, gids, gt2e, ge->data, wantw, GT, GK, 1e-5, n);
      ts_kernel_release(kg);
    }
    free(wantw);
    ts_tensor_release(gx);
    ts_tensor_release(gw);
    ts_tensor_release(gb);
    ts_tensor_release(gids);
    ts_tensor_release(gt2e);
  }
  if (w)
    ts_safetensors_close(w);
  if (f)
    ts_safetensors_close(f);
  ts_kernel_release(k);
  ts_kernel_release(kh);
}

/* The experts of layer 1 of the tiny model on its recorded ffn.in and
 * routing, against ffn.out (f32); and a random check against f64. */
static double swiglu_ref(double g, double u, double lim) {
  g = fmin(g, lim);
  u = fmax(fmin(u, lim), -lim);
  return g / (1 + exp(-g)) * u;
}

static void test_experts(void) {
  ts_kernel *k = num_kernel("kernels/moe.tile", "moe_experts", NULL, NULL);
  if (!k)
    return;
  /* random: 5 tokens, 6 experts of 3 chosen (one slot -1), d 48, inter 20 */
  int64_t T = 5, DM = 48, I = 20, E = 6, K = 3;
  int64_t sx[2] = {T, DM}, sk[2] = {T, K}, s1[3] = {E, I, DM}, s2[3] = {E, DM, I};
  int64_t q1[2] = {I, DM}, q2[2] = {DM, I};
  uint64_t seed = 71;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sx), *ex = num_tensor(TS_DTYPE_I32, 2, sk);
  ts_tensor *wt = num_tensor(TS_DTYPE_F32, 2, sk), *w1 = num_tensor(TS_DTYPE_BF16, 3, s1);
  ts_tensor *w2 = num_tensor(TS_DTYPE_BF16, 3, s2), *w3 = num_tensor(TS_DTYPE_BF16, 3, s1);
  ts_tensor *sh1 = num_tensor(TS_DTYPE_BF16, 2, q1), *sh2 = num_tensor(TS_DTYPE_BF16, 2, q2);
  ts_tensor *sh3 = num_tensor(TS_DTYPE_BF16, 2, q1), *y = num_tensor(TS_DTYPE_F32, 2, sx);
  double *xv = num_fill(x, -2, 2, &seed), *wv = num_fill(wt, 0, 1, &seed);
  double *a1 = num_fill(w1, -0.5, 0.5, &seed), *a2 = num_fill(w2, -0.5, 0.5, &seed);
  double *a3 = num_fill(w3, -0.5, 0.5, &seed), *b1 = num_fill(sh1, -0.5, 0.5, &seed);
  double *b2 = num_fill(sh2, -0.5, 0.5, &seed), *b3 = num_fill(sh3, -0.5, 0.5, &seed);
  int32_t *ev = ts_tensor_data(ex);
  for (int64_t i = 0; i < T * K; i++)
    ev[i] = i % 7 == 4 ? -1 : (int32_t)((i * 5) % E);
  double *want = calloc((size_t)(T * DM), sizeof *want);
  for (int64_t t = 0; t < T; t++)
    for (int64_t kk = -1; kk < K; kk++) {
      int64_t e = kk < 0 ? 0 : ev[t * K + kk];
      if (e < 0)
        continue;
      const double *m1 = kk < 0 ? b1 : a1 + e * I * DM, *m3 = kk < 0 ? b3 : a3 + e * I * DM;
      const double *m2 = kk < 0 ? b2 : a2 + e * DM * I;
      double h[64];
      for (int64_t i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int64_t d = 0; d < DM; d++) {
          g += m1[i * DM + d] * xv[t * DM + d];
          u += m3[i * DM + d] * xv[t * DM + d];
        }
        h[i] = swiglu_ref(g, u, 10.0) * (kk < 0 ? 1.0 : wv[t * K + kk]);
      }
      for (int64_t d = 0; d < DM; d++)
        for (int64_t i = 0; i < I; i++)
          want[t * DM + d] += m2[d * I + i] * h[i];
    }
  ts_arg a[10] = {ts_arg_tensor(x),  ts_arg_tensor(ex),  ts_arg_tensor(wt),
                  ts_arg_tensor(w1), ts_arg_tensor(w2),  ts_arg_tensor(w3),
                  ts_arg_tensor(sh1), ts_arg_tensor(sh2), ts_arg_tensor(sh3),
                  ts_arg_tensor(y)};
  num_launch(k, a, 10);
  double *got = num_get(y);
  CHECK_ERR(num_relerr(got, want, T * DM), 1e-5, "moe_experts");
  free(got);
  free(want);
  double *fr[8] = {xv, wv, a1, a2, a3, b1, b2, b3};
  for (int i = 0; i < 8; i++)
    free(fr[i]);
  ts_tensor *tr[10] = {x, ex, wt, w1, w2, w3, sh1, sh2, sh3, y};
  for (int i = 0; i < 10; i++)
    ts_tensor_release(tr[i]);

  ts_safetensors *w = num_golden_open("weights.safetensors");
  ts_safetensors *f = num_golden_open("f32.safetensors");
  if (w && f) {
    ts_tensor *gx = num_golden_tensor(f, "prefill.layers.1.ffn.in");
    ts_tensor *ge = num_golden_tensor(f, "prefill.layers.1.ffn.gate.experts");
    ts_tensor *gw = num_golden_tensor(f, "prefill.layers.1.ffn.gate.weights");
    ts_tensor *gy = num_golden_tensor(f, "prefill.layers.1.ffn.out");
    ts_tensor *gs1 = num_golden_tensor(w, "layers.1.ffn.shared_experts.w1.weight");
    ts_tensor *gs2 = num_golden_tensor(w, "layers.1.ffn.shared_experts.w2.weight");
    ts_tensor *gs3 = num_golden_tensor(w, "layers.1.ffn.shared_experts.w3.weight");
    if (gx && ge && gw && gy && gs1 && gs2 && gs3) {
      int64_t GE = 8, GI = ts_tensor_dim(gs1, 0), GD = ts_tensor_dim(gs1, 1);
      int64_t st1[3] = {GE, GI, GD}, st2[3] = {GE, GD, GI};
      ts_tensor *W[3] = {num_tensor(TS_DTYPE_BF16, 3, st1),
                         num_tensor(TS_DTYPE_BF16, 3, st2),
                         num_tensor(TS_DTYPE_BF16, 3, st1)};
      for (int m = 0; m < 3; m++)
        for (int64_t e = 0; e < GE; e++) {
          char n[128];
          snprintf(n, sizeof n, "layers.1.ffn.experts.%lld.w%d.weight",
                   (long long)e, m + 1);
          const ts_st_tensor *src = ts_safetensors_find(w, n);
          CHECK(src && src->size == (uint64_t)(GI * GD * 2));
          if (src)
            memcpy((char *)ts_tensor_data(W[m]) + e * GI * GD * 2, src->data,
                   src->size);
        }
      ts_tensor *out = num_tensor(TS_DTYPE_F32, 2, (int64_t[]){
          ts_tensor_dim(gx, 0), GD});
      ts_arg ga[10] = {ts_arg_tensor(gx),  ts_arg_tensor(ge),  ts_arg_tensor(gw),
                       ts_arg_tensor(W[0]), ts_arg_tensor(W[1]), ts_arg_tensor(W[2]),
                       ts_arg_tensor(gs1), ts_arg_tensor(gs2), ts_arg_tensor(gs3),
                       ts_arg_tensor(out)};
      num_launch(k, ga, 10);
      double *g2 = num_get(out), *w2v = num_get(gy);
      CHECK_ERR(num_relerr(g2, w2v, ts_tensor_count(out)), 1e-5,
                "golden moe layer 1");
      free(g2);
      free(w2v);
      ts_tensor_release(out);
      for (int m = 0; m < 3; m++)
        ts_tensor_release(W[m]);
    }
    ts_tensor *gt[7] = {gx, ge, gw, gy, gs1, gs2, gs3};
    for (int i = 0; i < 7; i++)
      ts_tensor_release(gt[i]);
  }
  if (w)
    ts_safetensors_close(w);
  if (f)
    ts_safetensors_close(f);
  ts_kernel_release(k);
}

/* The grouped MoE's routing and weights, and its two GEMMs as the tiled
 * kernels take them (moe_up_tc/moe_down_tc, moe_up/moe_down): up gathers
 * x's rows by the tile table tu into h, down h into out by td. */
typedef struct {
  ts_tensor *sorted, *offs, *wt, *w1, *w2, *w3;
} grouped;

static void up_down(ts_kernel *ku, ts_kernel *kd, const grouped *g, ts_tensor *x, ts_tensor *tu,
                    ts_tensor *td, ts_tensor *h, ts_tensor *out) {
  ts_arg au[8] = {ts_arg_tensor(x),     ts_arg_tensor(g->sorted), ts_arg_tensor(g->offs),
                  ts_arg_tensor(tu),    ts_arg_tensor(g->wt),     ts_arg_tensor(g->w1),
                  ts_arg_tensor(g->w3), ts_arg_tensor(h)};
  num_launch(ku, au, 8);
  /* moe_down's add (not read without ADD; x stands in), which
   * moe_down_tc does not take */
  bool tc = ts_tensor_dtype(x) == TS_DTYPE_BF16;
  ts_arg ad[7] = {ts_arg_tensor(h),  ts_arg_tensor(g->sorted), ts_arg_tensor(g->offs),
                  ts_arg_tensor(td), ts_arg_tensor(g->w2),     ts_arg_tensor(out),
                  ts_arg_tensor(x)};
  num_launch(kd, ad, tc ? 6 : 7);
}

/* y = the shared expert's rows + each token's slots of out (moe_combine,
 * kb), and its distance from ref */
static double combined_err(ts_kernel *kb, ts_tensor *shared, ts_tensor *out, ts_tensor *y,
                           const double *ref) {
  ts_arg ab[3] = {ts_arg_tensor(shared), ts_arg_tensor(out), ts_arg_tensor(y)};
  num_launch(kb, ab, 3);
  double *got = num_get(y);
  double e = num_relerr(got, ref, ts_tensor_count(y));
  free(got);
  return e;
}

/* The grouped MoE (count, offsets, scatter, grouped GEMM, combine) against
 * the per-token moe_experts on the same inputs: 37 tokens, 3 of 5 experts
 * each (some slots -1, an expert nobody chose), blocks of 4 rows so that
 * segments end mid-block; counts, offsets and the tile tables exact, the
 * sorted list a permutation of the routed slots grouped by expert; a table
 * of tiles larger than the GEMM's BM refused. */
static void test_moe_grouped(void) {
  ts_kernel *ke = num_kernel("kernels/moe.tile", "moe_experts", NULL, NULL);
  ts_kernel *kc = num_kernel("kernels/moe.tile", "moe_count", "BT=8", NULL);
  ts_kernel *ko = num_kernel("kernels/moe.tile", "moe_offsets", "BM=4", NULL);
  ts_kernel *ko16 = num_kernel("kernels/moe.tile", "moe_offsets", "BM=16", NULL);
  ts_kernel *ks = num_kernel("kernels/moe.tile", "moe_scatter", "BT=8", NULL);
  ts_kernel *kg = num_kernel("kernels/moe.tile", "moe_grouped", "BM=4", NULL);
  ts_kernel *kb = num_kernel("kernels/moe.tile", "moe_combine", "K=3", NULL);
  if (!ke || !kc || !ko || !ko16 || !ks || !kg || !kb)
    return;
  int64_t T = 37, DM = 48, I = 24, E = 5, K = 3, TK = T * K;
  int64_t st4[2] = {(TK + 3) / 4 + E, 3}, st16[2] = {(TK + 15) / 16 + E, 3};
  ts_tensor *tiles = num_tensor(TS_DTYPE_I32, 2, st4), *tiles16 = num_tensor(TS_DTYPE_I32, 2, st16);
  int64_t sx[2] = {T, DM}, sk[2] = {T, K}, s1[3] = {E, I, DM}, s2[3] = {E, DM, I};
  int64_t q1[2] = {I, DM}, q2[2] = {DM, I}, so[2] = {TK, DM};
  uint64_t seed = 5;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sx), *ex = num_tensor(TS_DTYPE_I32, 2, sk);
  ts_tensor *none = num_tensor(TS_DTYPE_I32, 2, sk);
  ts_tensor *wt = num_tensor(TS_DTYPE_F32, 2, sk), *w1 = num_tensor(TS_DTYPE_BF16, 3, s1);
  ts_tensor *w2 = num_tensor(TS_DTYPE_BF16, 3, s2), *w3 = num_tensor(TS_DTYPE_BF16, 3, s1);
  ts_tensor *sh1 = num_tensor(TS_DTYPE_BF16, 2, q1), *sh2 = num_tensor(TS_DTYPE_BF16, 2, q2);
  ts_tensor *sh3 = num_tensor(TS_DTYPE_BF16, 2, q1);
  ts_tensor *want = num_tensor(TS_DTYPE_F32, 2, sx), *shared = num_tensor(TS_DTYPE_F32, 2, sx);
  ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, sx), *out = num_tensor(TS_DTYPE_F32, 2, so);
  ts_tensor *counts = num_tensor(TS_DTYPE_I32, 1, &E), *offs = num_tensor(TS_DTYPE_I32, 1, &E);
  ts_tensor *cursor = num_tensor(TS_DTYPE_I32, 1, &E), *sorted = num_tensor(TS_DTYPE_I32, 1, &TK);
  double *fr[9] = {num_fill(x, -2, 2, &seed), num_fill(wt, 0, 1, &seed),
                   num_fill(w1, -0.5, 0.5, &seed), num_fill(w2, -0.5, 0.5, &seed),
                   num_fill(w3, -0.5, 0.5, &seed), num_fill(sh1, -0.5, 0.5, &seed),
                   num_fill(sh2, -0.5, 0.5, &seed), num_fill(sh3, -0.5, 0.5, &seed),
                   NULL};
  int32_t *ev = ts_tensor_data(ex), *nv = ts_tensor_data(none);
  int want_counts[5] = {0};
  for (int64_t i = 0; i < TK; i++) {
    ev[i] = i % 11 == 7 ? -1 : (int32_t)((i * 7 + i / 5) % 4); /* expert 4: none */
    nv[i] = -1;
    if (ev[i] >= 0)
      want_counts[ev[i]]++;
  }
  ts_arg ae[10] = {ts_arg_tensor(x),  ts_arg_tensor(ex),  ts_arg_tensor(wt),
                   ts_arg_tensor(w1), ts_arg_tensor(w2),  ts_arg_tensor(w3),
                   ts_arg_tensor(sh1), ts_arg_tensor(sh2), ts_arg_tensor(sh3),
                   ts_arg_tensor(want)};
  num_launch(ke, ae, 10);
  ae[1] = ts_arg_tensor(none); /* the shared expert alone */
  ae[9] = ts_arg_tensor(shared);
  num_launch(ke, ae, 10);
  ts_arg ac[2] = {ts_arg_tensor(ex), ts_arg_tensor(counts)};
  num_launch(kc, ac, 2);
  ts_arg ao[3] = {ts_arg_tensor(counts), ts_arg_tensor(offs), ts_arg_tensor(tiles)};
  num_launch(ko, ao, 3);
  ao[2] = ts_arg_tensor(tiles16);
  num_launch(ko16, ao, 3);
  ts_arg as[4] = {ts_arg_tensor(ex), ts_arg_tensor(offs), ts_arg_tensor(cursor),
                  ts_arg_tensor(sorted)};
  num_launch(ks, as, 4);
  const int32_t *cv = ts_tensor_data(counts), *ov = ts_tensor_data(offs);
  const int32_t *sv = ts_tensor_data(sorted);
  int bad = 0, at = 0;
  for (int e = 0; e < 5; e++) {
    bad += cv[e] != want_counts[e] || ov[e] != at;
    for (int i = 0; i < want_counts[e]; i++) /* each slot of e once */
      bad += sv[at + i] < 0 || sv[at + i] >= TK || ev[sv[at + i]] != e;
    for (int i = 0; i < want_counts[e]; i++)
      for (int j = 0; j < i; j++)
        bad += sv[at + i] == sv[at + j];
    at += want_counts[e];
  }
  CHECK(bad == 0);
  /* the tile tables: each expert's rows in tiles of BM, in expert order,
   * then (-1, 0, 0) */
  for (int v = 0; v < 2; v++) {
    int bm = v ? 16 : 4;
    ts_tensor *tt = v ? tiles16 : tiles;
    const int32_t *tv = ts_tensor_data(tt);
    int64_t m = 0, mt = ts_tensor_dim(tt, 0);
    for (int e = 0; e < 5; e++)
      for (int r = 0; r < want_counts[e]; r += bm, m++)
        bad += tv[m * 3] != e || tv[m * 3 + 1] != r ||
               tv[m * 3 + 2] != (want_counts[e] - r < bm ? want_counts[e] - r : bm);
    for (; m < mt; m++)
      bad += tv[m * 3] != -1 || tv[m * 3 + 1] != 0 || tv[m * 3 + 2] != 0;
  }
  CHECK(bad == 0);
  ts_arg ag[9] = {ts_arg_tensor(x),  ts_arg_tensor(sorted), ts_arg_tensor(offs),
                  ts_arg_tensor(tiles16), ts_arg_tensor(wt), ts_arg_tensor(w1),
                  ts_arg_tensor(w2), ts_arg_tensor(w3), ts_arg_tensor(out)};
  ts_status bm = ts_kernel_launch(kg, ag, 9); /* tiles of 16 rows, BM 4: refused */
  CHECK(bm && strstr(ts_status_message(bm), "a tile of more rows than BM"));
  ts_status_free(bm);
  ag[3] = ts_arg_tensor(tiles);
  num_launch(kg, ag, 9);
  ts_arg ab[3] = {ts_arg_tensor(shared), ts_arg_tensor(out), ts_arg_tensor(y)};
  num_launch(kb, ab, 3);
  double *got = num_get(y), *ref = num_get(want);
  CHECK_ERR(num_relerr(got, ref, T * DM), 1e-5, "grouped MoE vs moe_experts");
  free(got);
  grouped g = {sorted, offs, wt, w1, w2, w3};
  /* the tensor-core form (bf16 activations and hidden rows) over DM = 48
   * and I = 24 (a tail block of the hidden dim): 16 x 16 tiles with K steps
   * of 16 (a ring of 3 and 2 steps, 2 stages) and of the default 64 (one
   * step, a tail); the defaults (64 x 64 tiles: wgmma on sm_90a); up over
   * the table of 16-row tiles, down over the one of 4 */
  const char *tc_defs[][2] = {{"BM=16 BN=16", "BK=16 STAGES=2"}, {"BM=16", "BN=16"},
                              {NULL, NULL}};
  for (int c = 0; c < 3; c++) {
    ts_kernel *ku = num_kernel("kernels/moe.tile", "moe_up_tc", tc_defs[c][0], tc_defs[c][1]);
    ts_kernel *kd = num_kernel("kernels/moe.tile", "moe_down_tc", tc_defs[c][0], tc_defs[c][1]);
    if (ku && kd) {
      int64_t sh_[2] = {TK, I};
      ts_tensor *xb = num_tensor(TS_DTYPE_BF16, 2, sx), *h = num_tensor(TS_DTYPE_BF16, 2, sh_);
      ts_tensor *out2 = num_tensor(TS_DTYPE_F32, 2, so), *y2 = num_tensor(TS_DTYPE_F32, 2, sx);
      for (int64_t i = 0; i < T * DM; i++)
        ts_tensor_set(xb, i, fr[0][i]);
      up_down(ku, kd, &g, xb, tiles16, tiles, h, out2);
      char what[96];
      snprintf(what, sizeof what, "tensor-core MoE (%s %s) vs moe_experts",
               tc_defs[c][0] ? tc_defs[c][0] : "defaults", tc_defs[c][1] ? tc_defs[c][1] : "");
      CHECK_ERR(combined_err(kb, shared, out2, y2, ref), 1e-2, what);
      ts_tensor_release(xb);
      ts_tensor_release(h);
      ts_tensor_release(out2);
      ts_tensor_release(y2);
    }
    ts_kernel_release(ku);
    ts_kernel_release(kd);
  }
  /* the model's form (f32 activations, bf16 weights, K in steps of 128):
   * BM 4 x BN 16 over the BM 4 table, and the same rows in one-row tiles
   * (a decode step's) give the same bits on the CPU */
  ts_kernel *ku = num_kernel("kernels/moe.tile", "moe_up", "BM=4", "BN=16");
  ts_kernel *kd = num_kernel("kernels/moe.tile", "moe_down", "BM=4", "BN=16");
  ts_kernel *ko1 = num_kernel("kernels/moe.tile", "moe_offsets", "BM=1", NULL);
  ts_kernel *ku1 = num_kernel("kernels/moe.tile", "moe_up", "BM=1", "BN=16");
  ts_kernel *kd1 = num_kernel("kernels/moe.tile", "moe_down", "BM=1", "BN=16");
  if (ku && kd && ko1 && ku1 && kd1) {
    int64_t sh_[2] = {TK, I}, st1[2] = {TK + E, 3};
    ts_tensor *tiles1 = num_tensor(TS_DTYPE_I32, 2, st1), *h = num_tensor(TS_DTYPE_F32, 2, sh_);
    ts_tensor *h1 = num_tensor(TS_DTYPE_F32, 2, sh_), *out1 = num_tensor(TS_DTYPE_F32, 2, so);
    ts_tensor *out3 = num_tensor(TS_DTYPE_F32, 2, so), *y3 = num_tensor(TS_DTYPE_F32, 2, sx);
    ao[2] = ts_arg_tensor(tiles1);
    num_launch(ko1, ao, 3);
    up_down(ku, kd, &g, x, tiles, tiles, h, out3);
    CHECK_ERR(combined_err(kb, shared, out3, y3, ref), 1e-5, "moe_up + moe_down vs moe_experts");
    up_down(ku1, kd1, &g, x, tiles1, tiles1, h1, out1);
    if (strcmp(ts_device_name(num_kdev), "cpu") == 0) {
      CHECK(memcmp(ts_tensor_data(h), ts_tensor_data(h1), sizeof(float) * (size_t)(TK * I)) == 0);
      CHECK(memcmp(ts_tensor_data(out3), ts_tensor_data(out1), sizeof(float) * (size_t)(TK * DM)) ==
            0);
    } else { /* a GPU's threads split a tile's sums by its shape */
      double *a = num_get(out3), *b = num_get(out1);
      CHECK_ERR(num_relerr(b, a, TK * DM), 1e-6, "moe_up + moe_down, one-row tiles");
      free(a);
      free(b);
    }
    ts_tensor *t3[] = {tiles1, h, h1, out1, out3, y3};
    for (size_t i = 0; i < sizeof t3 / sizeof t3[0]; i++)
      ts_tensor_release(t3[i]);
  }
  ts_kernel *k3[] = {ku, kd, ko1, ku1, kd1};
  for (size_t i = 0; i < sizeof k3 / sizeof k3[0]; i++)
    ts_kernel_release(k3[i]);
  free(ref);
  for (int i = 0; fr[i]; i++)
    free(fr[i]);
  ts_tensor *tr[] = {x, ex, none, wt, w1, w2, w3, sh1, sh2, sh3, want, shared,
                     y, out, counts, offs, cursor, sorted, tiles, tiles16};
  for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++)
    ts_tensor_release(tr[i]);
  ts_kernel *kr[] = {ke, kc, ko, ko16, ks, kg, kb};
  for (size_t i = 0; i < sizeof kr / sizeof kr[0]; i++)
    ts_kernel_release(kr[i]);
}

int main(void) {
  num_init();
  test_router();
  test_experts();
  test_moe_grouped();
  num_finish();
  return ts_test_finish();
}
