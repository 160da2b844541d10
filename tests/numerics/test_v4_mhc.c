/* test_v4_mhc.c - the mHC kernels of num_v4 (kernels/mhc.tile, V4-SPEC
 * 1.8) against f64 references on odd shapes and DeepSeek's golden tensors:
 * the split logits, the fused pre (gates, Sinkhorn, u), the head mix, and
 * the chain around layer 0 of the tiny model. */
#include "tests/numerics/num.h"
#include "tests/numerics/test_v4_mhc.h"
#include "tests/ref/v4_ref.h"

/* Frees the values v[i] and releases the tensors t[i] of a test's inputs. */
static void drop(double *const *v, ts_tensor *const *t, int n) {
  for (int i = 0; i < n; i++) {
    free(v[i]);
    ts_tensor_release(t[i]);
  }
}

/* The streams x [T, NS, DM] viewed as [T, NS DM], hc_mix_split's input
 * (the caller releases the view). */
static ts_tensor *flat_of(ts_tensor *x) {
  int64_t s2[2] = {ts_tensor_dim(x, 0), ts_tensor_dim(x, 1) * ts_tensor_dim(x, 2)};
  ts_tensor *flat = NULL;
  ts_status st = ts_tensor_reshape(x, 2, s2, &flat);
  CHECK(st == NULL);
  ts_status_free(st);
  return flat;
}

/* hc_pre_fused's launch (without NORM: its norm weight, zeros here, is
 * not read): part [KS, T, 24 or 25], x [T, 4, DM]; pre, post, comb and u
 * made here (u [T, DM]). */
static void run_pre_fused(ts_kernel *k, ts_tensor *part, ts_tensor *x, ts_tensor *scale,
                          ts_tensor *base, ts_tensor **pre, ts_tensor **post,
                          ts_tensor **comb, ts_tensor **u) {
  int64_t T = ts_tensor_dim(x, 0), s4[2] = {T, 4}, s44[3] = {T, 4, 4},
          su[2] = {T, ts_tensor_dim(x, 2)};
  ts_tensor *w = num_tensor(TS_DTYPE_F32, 1, &su[1]);
  *pre = num_tensor(TS_DTYPE_F32, 2, s4);
  *post = num_tensor(TS_DTYPE_F32, 2, s4);
  *comb = num_tensor(TS_DTYPE_F32, 3, s44);
  *u = num_tensor(TS_DTYPE_F32, 2, su);
  ts_arg a[9] = {ts_arg_tensor(part), ts_arg_tensor(x),    ts_arg_tensor(scale),
                 ts_arg_tensor(base), ts_arg_tensor(w),    ts_arg_tensor(*pre),
                 ts_arg_tensor(*post), ts_arg_tensor(*comb), ts_arg_tensor(*u)};
  num_launch(k, a, 9);
  ts_tensor_release(w);
}

/* Finished logits [T, NM] as hc_pre_fused's and hc_head's part [1, T, NM]. */
static ts_tensor *as_part(ts_tensor *mixes) {
  int64_t sp[3] = {1, ts_tensor_dim(mixes, 0), ts_tensor_dim(mixes, 1)};
  ts_tensor *p = num_tensor(TS_DTYPE_F32, 3, sp);
  memcpy(ts_tensor_data(p), ts_tensor_data(mixes), ts_tensor_size(mixes));
  return p;
}

/* The golden Sinkhorn split: hc_pre_fused from the recorded logits (x of
 * width 1, zeros: u is not compared). */
static void golden_sinkhorn(ts_safetensors *w, ts_safetensors *f,
                            ts_kernel *k, const char *prefix,
                            const char *params) {
  char n[256];
  snprintf(n, sizeof n, "%s.mixes", prefix);
  ts_tensor *mixes = num_golden_tensor(f, n);
  snprintf(n, sizeof n, "%s_scale", params);
  ts_tensor *scale = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "%s_base", params);
  ts_tensor *base = num_golden_tensor(w, n);
  if (!mixes || !scale || !base)
    return;
  int64_t sx[3] = {ts_tensor_dim(mixes, 0), 4, 1};
  ts_tensor *part = as_part(mixes), *x = num_tensor(TS_DTYPE_F32, 3, sx);
  ts_tensor *pre, *post, *comb, *u;
  run_pre_fused(k, part, x, scale, base, &pre, &post, &comb, &u);
  ts_tensor *outs[3] = {pre, post, comb};
  const char *names[3] = {"pre", "post", "comb"};
  for (int i = 0; i < 3; i++) {
    snprintf(n, sizeof n, "%s.%s", prefix, names[i]);
    ts_tensor *g = num_golden_tensor(f, n);
    if (!g)
      continue;
    double *got = num_get(outs[i]), *want = num_get(g);
    CHECK_ERR(num_relerr(got, want, ts_tensor_count(g)), 1e-5, n);
    free(got);
    free(want);
    ts_tensor_release(g);
  }
  ts_tensor *tr[9] = {pre, post, comb, u, part, x, mixes, scale, base};
  for (int i = 0; i < 9; i++)
    ts_tensor_release(tr[i]);
}

/* The golden Sinkhorn splits of both sides, from the f32 and bf16 runs. */
void test_golden_sinkhorn(void) {
  ts_kernel *k = num_kernel("kernels/mhc.tile", "hc_pre_fused", NULL, NULL);
  ts_safetensors *w = num_golden_open("weights.safetensors");
  const char *files[2] = {"f32.safetensors", "bf16.safetensors"};
  for (int i = 0; i < 2 && k && w; i++) {
    ts_safetensors *f = num_golden_open(files[i]);
    if (!f)
      continue;
    golden_sinkhorn(w, f, k, "prefill.layers.0.sinkhorn.0", "layers.0.hc_attn");
    golden_sinkhorn(w, f, k, "prefill.layers.1.sinkhorn.1", "layers.1.hc_ffn");
    ts_safetensors_close(f);
  }
  if (w)
    ts_safetensors_close(w);
  ts_kernel_release(k);
}

/* mHC pre against f64 on odd shapes: 9 tokens of 4 streams of 37 (KD 148),
 * hc_mix_split in BK 32 steps over 1, 3 and 7 slices (the last a short
 * one, then empty ones; BT 8: a partial tile of tokens), hc_pre_fused over
 * DM in three blocks of 16 (the last partial) and the tokens in blocks of
 * 4 (the last partial); and hc_pre_fused from
 * finished logits (part [1, T, 24]). */
void test_mhc_pre_random(void) {
  ts_kernel *kmix = num_kernel("kernels/mhc.tile", "hc_mix_split", "BK=32", NULL);
  ts_kernel *kpre = num_kernel("kernels/mhc.tile", "hc_pre_fused", "BD=16", "BT=4");
  if (!kmix || !kpre)
    return;
  enum { T = 9, DM = 37, KD = 4 * DM };
  int64_t sx[3] = {T, 4, DM}, sf[2] = {24, KD}, sm[2] = {T, 24}, s3 = 3, s24 = 24;
  uint64_t seed = 31;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 3, sx), *fn = num_tensor(TS_DTYPE_F32, 2, sf);
  ts_tensor *mixes = num_tensor(TS_DTYPE_F32, 2, sm);
  ts_tensor *scale = num_tensor(TS_DTYPE_F32, 1, &s3);
  ts_tensor *base = num_tensor(TS_DTYPE_F32, 1, &s24);
  double *xv = num_fill(x, -2, 2, &seed), *fv = num_fill(fn, -0.3, 0.3, &seed);
  double *mv = num_fill(mixes, -3, 3, &seed), *sv = num_fill(scale, 0.1, 2, &seed);
  double *bv = num_fill(base, -1, 1, &seed);
  /* the logits of the chain: (fn . v) rsqrt(mean(v^2) + 1e-6) */
  double dot[T * 24], sq[T], mix[T * 24];
  for (int t = 0; t < T; t++) {
    sq[t] = 0;
    for (int k = 0; k < KD; k++)
      sq[t] += xv[t * KD + k] * xv[t * KD + k];
    for (int n = 0; n < 24; n++) {
      dot[t * 24 + n] = 0;
      for (int k = 0; k < KD; k++)
        dot[t * 24 + n] += fv[n * KD + k] * xv[t * KD + k];
      mix[t * 24 + n] = dot[t * 24 + n] / sqrt(sq[t] / KD + 1e-6);
    }
  }
  for (int mode = 0; mode < 4; mode++) { /* finished logits, then 1, 3, 7 slices */
    int64_t KS = mode == 0 ? 1 : mode == 1 ? 1 : mode == 2 ? 3 : 7;
    ts_tensor *part;
    const double *m = mv;
    if (mode == 0) {
      part = as_part(mixes);
    } else {
      int64_t sp[3] = {KS, T, 25};
      part = num_tensor(TS_DTYPE_F32, 3, sp);
      free(num_fill(part, 5, 6, &seed)); /* every element must be written */
      ts_tensor *flat = flat_of(x);
      ts_arg a[3] = {ts_arg_tensor(flat), ts_arg_tensor(fn), ts_arg_tensor(part)};
      num_launch(kmix, a, 3);
      ts_tensor_release(flat);
      /* the slices add up to the dot products and the sum of squares */
      double *pv = num_get(part), got[T * 25], want[T * 25];
      for (int t = 0; t < T; t++)
        for (int n = 0; n < 25; n++) {
          got[t * 25 + n] = 0;
          for (int64_t q = 0; q < KS; q++)
            got[t * 25 + n] += pv[(q * T + t) * 25 + n];
          want[t * 25 + n] = n < 24 ? dot[t * 24 + n] : sq[t];
        }
      CHECK_ERR(num_relerr(got, want, T * 25), 1e-5, "hc_mix_split");
      free(pv);
      m = mix;
    }
    ts_tensor *pre, *post, *comb, *u;
    run_pre_fused(kpre, part, x, scale, base, &pre, &post, &comb, &u);
    double wp[T * 4], wq[T * 4], wc[T * 16], wu[T * DM];
    for (int t = 0; t < T; t++) {
      ref_sinkhorn(m + t * 24, sv, bv, 20, 1e-6, wp + t * 4, wq + t * 4, wc + t * 16);
      for (int d = 0; d < DM; d++) {
        wu[t * DM + d] = 0;
        for (int j = 0; j < 4; j++)
          wu[t * DM + d] += wp[t * 4 + j] * xv[(t * 4 + j) * DM + d];
      }
    }
    double *gp = num_get(pre), *gq = num_get(post), *gc = num_get(comb), *gu = num_get(u);
    double tol = mode ? 1e-5 : 1e-6;
    CHECK_ERR(num_relerr(gp, wp, T * 4), tol, "mhc pre: pre");
    CHECK_ERR(num_relerr(gq, wq, T * 4), tol, "mhc pre: post");
    CHECK_ERR(num_relerr(gc, wc, T * 16), 1e-5, "mhc pre: comb");
    CHECK_ERR(num_relerr(gu, wu, T * DM), 1e-5, "mhc pre: u");
    /* columns of the result sum to (almost exactly) 1 */
    double worst = 0;
    for (int t = 0; t < T; t++)
      for (int c = 0; c < 4; c++) {
        double sum = 0;
        for (int r = 0; r < 4; r++)
          sum += gc[t * 16 + r * 4 + c];
        worst = fmax(worst, fabs(sum - 1));
      }
    CHECK(worst < 1e-4);
    double *fr[4] = {gp, gq, gc, gu};
    ts_tensor *tr[5] = {pre, post, comb, u, part};
    for (int i = 0; i < 5; i++) {
      if (i < 4)
        free(fr[i]);
      ts_tensor_release(tr[i]);
    }
  }
  drop((double *[]){xv, fv, mv, sv, bv}, (ts_tensor *[]){x, fn, mixes, scale, base}, 5);
  ts_kernel_release(kmix);
  ts_kernel_release(kpre);
}

/* hc_mix_split with TF32 = 1 (the GPU's tensor-core form: 64 tokens a block
 * on 128 threads) against f64 of the operands truncated to tf32, the sum
 * of squares of the f32 values: 70 tokens (a full tile of 64 and a partial
 * one) of 4 streams of 37 in BK 32 steps (a tail of KD), 1 and 3 slices,
 * the sub-layer's 24 logits and the head's 4 (MM 8: rows past NM zeros). On
 * the CPU the scalar gemm truncates the same operands; on the simulator
 * wgmma (sm_90a) reads them. Also against the f32 logits, within tf32's
 * error (about 1e-3 of the logits' scale). */
void test_mhc_mix_tf32(void) {
  enum { T = 70, DM = 37, KD = 4 * DM };
  for (int head = 0; head < 2; head++) {
    int NM = head ? 4 : 24, NP = NM + 1;
    ts_kernel *k = num_kernel("kernels/mhc.tile", "hc_mix_split", "TF32=1 BT=64 NT=128 BK=32",
                              head ? "MM=8" : NULL);
    if (!k)
      return;
    int64_t sx[2] = {T, KD}, sf[2] = {NM, KD};
    uint64_t seed = 77 + (uint64_t)head;
    ts_tensor *x = num_tensor(TS_DTYPE_F32, 2, sx), *fn = num_tensor(TS_DTYPE_F32, 2, sf);
    double *xv = num_fill_tf32(x, -2, 2, &seed), *fv = num_fill_tf32(fn, -0.3, 0.3, &seed);
    double *want = malloc(sizeof(double) * T * NP), *full = malloc(sizeof(double) * T * NP);
    for (int t = 0; t < T; t++) {
      want[t * NP + NM] = full[t * NP + NM] = 0;
      for (int q = 0; q < KD; q++)
        want[t * NP + NM] += xv[t * KD + q] * xv[t * KD + q];
      full[t * NP + NM] = want[t * NP + NM];
      for (int n = 0; n < NM; n++) {
        want[t * NP + n] = full[t * NP + n] = 0;
        for (int q = 0; q < KD; q++) {
          want[t * NP + n] += num_tf32(fv[n * KD + q]) * num_tf32(xv[t * KD + q]);
          full[t * NP + n] += fv[n * KD + q] * xv[t * KD + q];
        }
      }
    }
    for (int64_t KS = 1; KS <= 3; KS += 2) {
      int64_t sp[3] = {KS, T, NP};
      ts_tensor *part = num_tensor(TS_DTYPE_F32, 3, sp);
      free(num_fill(part, 5, 6, &seed)); /* every element must be written */
      ts_arg a[3] = {ts_arg_tensor(x), ts_arg_tensor(fn), ts_arg_tensor(part)};
      num_launch(k, a, 3);
      double *pv = num_get(part), *got = calloc((size_t)(T * NP), sizeof(double));
      for (int64_t q = 0; q < KS; q++)
        for (int i = 0; i < T * NP; i++)
          got[i] += pv[q * T * NP + i];
      CHECK_ERR(num_relerr(got, want, T * NP), 1e-5, head ? "hc_mix_split tf32 head" : "hc_mix_split tf32");
      CHECK_ERR(num_relerr(got, full, T * NP), 3e-3, "hc_mix_split tf32 against f32");
      free(pv);
      free(got);
      ts_tensor_release(part);
    }
    free(want);
    free(full);
    drop((double *[]){xv, fv}, (ts_tensor *[]){x, fn}, 2);
    ts_kernel_release(k);
  }
}

/* hc_post_mix's arguments after part, for T tokens of width DM (zeros):
 * count, hs, hb, nw, npre, npost, ncomb, u. */
static void post_mix_rest(int64_t T, int64_t DM, ts_tensor *r[8]) {
  int64_t one = 1, s3 = 3, s24 = 24, s4[2] = {T, 4}, s44[3] = {T, 4, 4}, su[2] = {T, DM};
  r[0] = num_tensor(TS_DTYPE_I32, 1, &one);
  r[1] = num_tensor(TS_DTYPE_F32, 1, &s3);
  r[2] = num_tensor(TS_DTYPE_F32, 1, &s24);
  r[3] = num_tensor(TS_DTYPE_F32, 1, &DM);
  r[4] = num_tensor(TS_DTYPE_F32, 2, s4);
  r[5] = num_tensor(TS_DTYPE_F32, 2, s4);
  r[6] = num_tensor(TS_DTYPE_F32, 3, s44);
  r[7] = num_tensor(TS_DTYPE_F32, 2, su);
}

/* hc_post_mix against f64: y = post F + M^T X as hc_post, and the slices of
 * the next logits over y (the sum of squares exact, the products of the
 * operands as the form reads them: f32, or truncated to tf32), for the
 * sub-layer's 24 logits and the head's 4. f32: 9 tokens in blocks of 4, d
 * 37 in blocks of 16 (KS 3, the last partial); TF32: 70 tokens in blocks of
 * 64 on 128 threads (the simulator's wgmma), and in blocks of 32 on 256
 * (the model's GPU form: mma.sync); and the CPU's prefill form, one token a
 * group and four groups a block (TB: the last block's tokens past the 9th
 * masked). */
void test_hc_post_mix(void) {
  enum { DM = 37, KD = 4 * DM, BD = 16, KS = 3 };
  static const char *const forms[4] = {"BT=4 BD=16", "TF32=1 BT=64 NT=128 BD=16",
                                       "TF32=1 BT=32 NT=256 BD=16", "BT=1 TB=4 BD=16"};
  for (int form = 0; form < 4; form++)
    for (int head = 0; head < 2; head++) {
      bool tf32 = form == 1 || form == 2;
      int T = tf32 ? 70 : 9, NM = head ? 4 : 24, NP = NM + 1;
      ts_kernel *k = num_kernel("kernels/mhc.tile", "hc_post_mix", forms[form],
                                head ? (tf32 ? "MM=8" : "MM=4") : NULL);
      if (!k)
        return;
      int64_t sx[3] = {T, 4, DM}, sfv[2] = {T, DM}, s4[2] = {T, 4}, s44[3] = {T, 4, 4},
              sw[2] = {NM, KD}, sp[3] = {KS, T, NP};
      uint64_t seed = 91 + (uint64_t)(2 * form + head);
      ts_tensor *x = num_tensor(TS_DTYPE_F32, 3, sx), *f = num_tensor(TS_DTYPE_F32, 2, sfv);
      ts_tensor *post = num_tensor(TS_DTYPE_F32, 2, s4), *comb = num_tensor(TS_DTYPE_F32, 3, s44);
      ts_tensor *fn = num_tensor(TS_DTYPE_F32, 2, sw), *y = num_tensor(TS_DTYPE_F32, 3, sx);
      ts_tensor *part = num_tensor(TS_DTYPE_F32, 3, sp);
      double *xv = num_fill(x, -2, 2, &seed), *fv = num_fill(f, -1, 1, &seed);
      double *pv = num_fill(post, 0, 2, &seed), *cv = num_fill(comb, 0, 1, &seed);
      double *wv = num_fill_tf32(fn, -0.3, 0.3, &seed);
      free(num_fill(part, 5, 6, &seed)); /* every element must be written */
      ts_tensor *rest[8];
      post_mix_rest(T, DM, rest);
      ts_arg a[15] = {ts_arg_tensor(x),    ts_arg_tensor(f),  ts_arg_tensor(post),
                      ts_arg_tensor(comb), ts_arg_tensor(y),  ts_arg_tensor(fn),
                      ts_arg_tensor(part)};
      for (int i = 0; i < 8; i++)
        a[7 + i] = ts_arg_tensor(rest[i]);
      num_launch(k, a, 15);
      /* without LAST the next pre's tensors are not touched */
      double *rv = num_get(rest[4]);
      CHECK(rv[0] == 0.0 && rv[4 * T - 1] == 0.0);
      free(rv);
      for (int i = 0; i < 8; i++)
        ts_tensor_release(rest[i]);
      double *wy = malloc(sizeof(double) * (size_t)(T * KD));
      double *want = calloc((size_t)(T * NP), sizeof(double));
      for (int t = 0; t < T; t++)
        for (int j = 0; j < 4; j++)
          for (int d = 0; d < DM; d++) {
            double v = pv[t * 4 + j] * fv[t * DM + d];
            for (int q = 0; q < 4; q++)
              v += cv[(t * 4 + q) * 4 + j] * xv[(t * 4 + q) * DM + d];
            wy[(t * 4 + j) * DM + d] = v;
            want[t * NP + NM] += v * v;
            for (int n = 0; n < NM; n++)
              want[t * NP + n] += tf32 ? num_tf32(wv[n * KD + j * DM + d]) * num_tf32(v)
                                       : wv[n * KD + j * DM + d] * v;
          }
      double *gy = num_get(y), *gp = num_get(part), *got = calloc((size_t)(T * NP), sizeof(double));
      for (int q = 0; q < KS; q++)
        for (int i = 0; i < T * NP; i++)
          got[i] += gp[q * T * NP + i];
      CHECK_ERR(num_relerr(gy, wy, T * KD), 1e-6, "hc_post_mix: y");
      /* y, made in the kernel, is no TF32-exact operand: on a real GPU
       * within TF32's error whatever the tensor cores do with raw words */
      CHECK_ERR(num_relerr(got, want, T * NP), tf32 && num_real_gpu() ? 2e-3 : 1e-5,
                tf32 ? "hc_post_mix tf32: slices" : "hc_post_mix: slices");
      free(gy);
      free(gp);
      free(got);
      free(wy);
      free(want);
      drop((double *[]){xv, fv, pv, cv, wv}, (ts_tensor *[]){x, f, post, comb, fn}, 5);
      ts_tensor_release(y);
      ts_tensor_release(part);
      ts_kernel_release(k);
    }
}

/* hc_post_mix with LAST (a decode step's token: the next sub-layer's mHC
 * pre in its last block) against hc_post_mix + hc_pre_fused with NORM, the
 * two launches it replaces: the same y and slices, the same gates, comb and
 * normed u (bit for bit on the CPU, where both run the same statements in
 * the same order; within 1e-6 on the GPU forms, whose block sums may take
 * another thread count), and count back at 0, so that a second launch
 * gives the same again. d 37 in blocks of 16 (3 blocks, the last partial),
 * the f32 form and the model's GPU form (TF32, 32 tokens a block on 256
 * threads). */
void test_hc_post_mix_last(void) {
  enum { DM = 37, KD = 4 * DM, KS = 3, T = 1 };
  static const char *const forms[2] = {"BT=1 BD=16", "TF32=1 BT=32 NT=256 BD=16"};
  ts_kernel *kpre = num_kernel("kernels/mhc.tile", "hc_pre_fused", "NORM=true BT=1 BD=37",
                               "ITERS=7 EPS=1e-5");
  if (!kpre)
    return;
  bool cpu = strcmp(ts_device_name(num_kdev), "cpu") == 0;
  for (int form = 0; form < 2; form++) {
    ts_kernel *k2 = num_kernel("kernels/mhc.tile", "hc_post_mix", forms[form], NULL);
    ts_kernel *k1 = num_kernel("kernels/mhc.tile", "hc_post_mix", forms[form],
                               "LAST=true ITERS=7 EPS=1e-5");
    if (!k1 || !k2)
      return;
    int64_t sx[3] = {T, 4, DM}, sfv[2] = {T, DM}, s4[2] = {T, 4}, s44[3] = {T, 4, 4},
            sw[2] = {24, KD}, sp[3] = {KS, T, 25};
    uint64_t seed = 301 + (uint64_t)form;
    ts_tensor *x = num_tensor(TS_DTYPE_F32, 3, sx), *f = num_tensor(TS_DTYPE_F32, 2, sfv);
    ts_tensor *post = num_tensor(TS_DTYPE_F32, 2, s4), *comb = num_tensor(TS_DTYPE_F32, 3, s44);
    ts_tensor *fn = num_tensor(TS_DTYPE_F32, 2, sw);
    ts_tensor *y[2] = {num_tensor(TS_DTYPE_F32, 3, sx), num_tensor(TS_DTYPE_F32, 3, sx)};
    ts_tensor *part[2] = {num_tensor(TS_DTYPE_F32, 3, sp), num_tensor(TS_DTYPE_F32, 3, sp)};
    ts_tensor *r[2][8];
    post_mix_rest(T, DM, r[0]);
    post_mix_rest(T, DM, r[1]);
    double *v[9] = {num_fill(x, -2, 2, &seed), num_fill(f, -1, 1, &seed),
                    num_fill(post, 0, 2, &seed), num_fill(comb, 0, 1, &seed),
                    num_fill(fn, -0.3, 0.3, &seed), num_fill(r[0][1], 0.1, 2, &seed),
                    num_fill(r[0][2], -1, 1, &seed), num_fill(r[0][3], 0.5, 1.5, &seed), NULL};
    for (int i = 1; i <= 3; i++) /* the same hs, hb, nw for both */
      memcpy(ts_tensor_data(r[1][i]), ts_tensor_data(r[0][i]), ts_tensor_size(r[0][i]));
    for (int w = 0; w < 2; w++) {
      free(num_fill(part[w], 5, 6, &seed)); /* every element must be written */
      for (int i = 4; i < 8; i++)
        free(num_fill(r[w][i], 5, 6, &seed));
    }
    /* the two launches: hc_post_mix, then hc_pre_fused (NORM) over y */
    ts_arg a[15] = {ts_arg_tensor(x), ts_arg_tensor(f),     ts_arg_tensor(post),
                    ts_arg_tensor(comb), ts_arg_tensor(y[0]), ts_arg_tensor(fn),
                    ts_arg_tensor(part[0])};
    for (int i = 0; i < 8; i++)
      a[7 + i] = ts_arg_tensor(r[0][i]);
    num_launch(k2, a, 15);
    ts_arg b[9] = {ts_arg_tensor(part[0]), ts_arg_tensor(y[0]), a[8], a[9], a[10],
                   a[11], a[12], a[13], a[14]};
    num_launch(kpre, b, 9);
    /* the one launch, twice (count back at 0 after each) */
    for (int rep = 0; rep < 2; rep++) {
      a[4] = ts_arg_tensor(y[1]);
      a[6] = ts_arg_tensor(part[1]);
      for (int i = 0; i < 8; i++)
        a[7 + i] = ts_arg_tensor(r[1][i]);
      num_launch(k1, a, 15);
      double *cnt = num_get(r[1][0]);
      CHECK(cnt[0] == 0.0);
      free(cnt);
      ts_tensor *want[6] = {y[0], part[0], r[0][4], r[0][5], r[0][6], r[0][7]};
      ts_tensor *got[6] = {y[1], part[1], r[1][4], r[1][5], r[1][6], r[1][7]};
      const char *what[6] = {"LAST: y", "LAST: slices", "LAST: pre", "LAST: post",
                             "LAST: comb", "LAST: u"};
      for (int i = 0; i < 6; i++) {
        int64_t n = ts_tensor_count(want[i]);
        double *gw = num_get(want[i]), *gg = num_get(got[i]);
        int differ = 0;
        for (int64_t e = 0; e < n; e++)
          differ += gw[e] != gg[e];
        if (cpu && differ)
          fprintf(stderr, "%s %s: %d of %lld differ\n", what[i], forms[form], differ,
                  (long long)n);
        CHECK(!cpu || differ == 0);
        CHECK_ERR(num_relerr(gg, gw, n), 1e-6, what[i]);
        free(gw);
        free(gg);
      }
      free(num_fill(r[1][7], 5, 6, &seed)); /* the second launch writes u again */
    }
    for (int i = 0; i < 8; i++)
      free(v[i]);
    ts_tensor *all[7] = {x, f, post, comb, fn, y[0], y[1]};
    for (int i = 0; i < 7; i++)
      ts_tensor_release(all[i]);
    for (int w = 0; w < 2; w++) {
      ts_tensor_release(part[w]);
      for (int i = 0; i < 8; i++)
        ts_tensor_release(r[w][i]);
    }
    ts_kernel_release(k1);
    ts_kernel_release(k2);
  }
  ts_kernel_release(kpre);
}

/* hc_head, the final head mix, against f64: 3 tokens, 4 streams of 40 (d
 * in blocks of 16), from finished logits (part [1, T, 4]) and from
 * hc_mix_split's slices over the head's fn [4, 160] (MM 4, 2 slices). */
void test_hc_head(void) {
  ts_kernel *k = num_kernel("kernels/mhc.tile", "hc_head", "BD=16", NULL); /* 3 blocks of d */
  ts_kernel *km = num_kernel("kernels/mhc.tile", "hc_mix_split", "MM=4 BK=32", NULL);
  if (!k || !km)
    return;
  enum { T = 3, NS = 4, D = 40, KD = NS * D };
  int64_t one = 1, ns = NS, sx[3] = {T, NS, D}, sm[2] = {T, NS}, sy[2] = {T, D};
  int64_t sf[2] = {NS, KD}, sp[3] = {2, T, NS + 1};
  uint64_t seed = 91;
  ts_tensor *x = num_tensor(TS_DTYPE_F32, 3, sx), *m = num_tensor(TS_DTYPE_F32, 2, sm);
  ts_tensor *sc = num_tensor(TS_DTYPE_F32, 1, &one), *b = num_tensor(TS_DTYPE_F32, 1, &ns);
  ts_tensor *fn = num_tensor(TS_DTYPE_F32, 2, sf);
  double *xv = num_fill(x, -3, 3, &seed), *mv = num_fill(m, -2, 2, &seed);
  double *sv = num_fill(sc, 0.5, 1.5, &seed), *bv = num_fill(b, -1, 1, &seed);
  double *fv = num_fill(fn, -0.3, 0.3, &seed);
  double mix[T * NS];
  for (int t = 0; t < T; t++) {
    double sq = 0;
    for (int q = 0; q < KD; q++)
      sq += xv[t * KD + q] * xv[t * KD + q];
    for (int j = 0; j < NS; j++) {
      double dot = 0;
      for (int q = 0; q < KD; q++)
        dot += fv[j * KD + q] * xv[t * KD + q];
      mix[t * NS + j] = dot / sqrt(sq / KD + 1e-6);
    }
  }
  for (int mode = 0; mode < 2; mode++) {
    const double *mx = mode ? mix : mv;
    double want[T * D] = {0};
    for (int t = 0; t < T; t++)
      for (int j = 0; j < NS; j++) {
        double g = 1 / (1 + exp(-(mx[t * NS + j] * sv[0] + bv[j]))) + 1e-6;
        for (int d = 0; d < D; d++)
          want[t * D + d] += g * xv[(t * NS + j) * D + d];
      }
    ts_tensor *part = mode ? num_tensor(TS_DTYPE_F32, 3, sp) : as_part(m);
    if (mode) {
      ts_tensor *flat = flat_of(x);
      ts_arg a[3] = {ts_arg_tensor(flat), ts_arg_tensor(fn), ts_arg_tensor(part)};
      num_launch(km, a, 3);
      ts_tensor_release(flat);
    }
    ts_tensor *y = num_tensor(TS_DTYPE_F32, 2, sy);
    ts_arg a[5] = {ts_arg_tensor(x), ts_arg_tensor(part), ts_arg_tensor(sc),
                   ts_arg_tensor(b), ts_arg_tensor(y)};
    num_launch(k, a, 5);
    double *got = num_get(y);
    CHECK_ERR(num_relerr(got, want, T * D), mode ? 1e-5 : 1e-6, "hc_head");
    free(got);
    ts_tensor_release(y);
    ts_tensor_release(part);
  }
  drop((double *[]){xv, mv, sv, bv, fv}, (ts_tensor *[]){x, m, sc, b, fn}, 5);
  ts_kernel_release(k);
  ts_kernel_release(km);
}

/* ---- mHC around layer 0 of the tiny model ------------------------------------------ */

static void compare_golden(ts_safetensors *f, const char *name, ts_tensor *t,
                           double tol) {
  const ts_st_tensor *g = ts_safetensors_find(f, name);
  CHECK(g && (int64_t)(g->size / 4) == ts_tensor_count(t));
  if (!g)
    return;
  double *got = num_get(t), *want = malloc(g->size / 4 * sizeof *want);
  for (uint64_t i = 0; i < g->size / 4; i++)
    want[i] = ((const float *)g->data)[i];
  CHECK_ERR(num_relerr(got, want, ts_tensor_count(t)), tol, name);
  free(got);
  free(want);
}

/* One mHC-wrapped sub-block: mixes, Sinkhorn, pre, norm (compared with the
 * golden sub-layer input), then post with the golden sub-layer output. */
static ts_tensor *mhc_side(ts_safetensors *w, ts_safetensors *f,
                           ts_tensor *X, const char *side, const char *norm,
                           const char *in_name, const char *out_name,
                           const char *mixes_name, ts_kernel **ks) {
  int64_t T = ts_tensor_dim(X, 0), DM = ts_tensor_dim(X, 2);
  char n[128];
  snprintf(n, sizeof n, "layers.0.hc_%s_fn", side);
  ts_tensor *fn = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "layers.0.hc_%s_scale", side);
  ts_tensor *sc = num_golden_tensor(w, n);
  snprintf(n, sizeof n, "layers.0.hc_%s_base", side);
  ts_tensor *bs = num_golden_tensor(w, n);
  ts_tensor *nw = num_golden_tensor(w, norm);
  ts_tensor *fout = num_golden_tensor(f, out_name);
  if (!fn || !sc || !bs || !nw || !fout)
    return NULL;
  /* the logits in 3 slices of KD */
  int64_t KD = 4 * DM, sp[3] = {3, T, 25}, sm[2] = {T, 24};
  int64_t su[2] = {T, DM}, sx[3] = {T, 4, DM};
  ts_tensor *flat = flat_of(X);
  ts_tensor *part = num_tensor(TS_DTYPE_F32, 3, sp), *mixes = num_tensor(TS_DTYPE_F32, 2, sm);
  ts_tensor *un = num_tensor(TS_DTYPE_F32, 2, su), *Y = num_tensor(TS_DTYPE_F32, 3, sx);
  ts_arg a1[3] = {ts_arg_tensor(flat), ts_arg_tensor(fn), ts_arg_tensor(part)};
  num_launch(ks[0], a1, 3);
  if (mixes_name) { /* the slices' logits as hc_pre_fused makes them */
    const float *pv = ts_tensor_data(part);
    float *mx = ts_tensor_data(mixes);
    for (int64_t t = 0; t < T; t++) {
      double sq = 0;
      for (int q = 0; q < 3; q++)
        sq += pv[(q * T + t) * 25 + 24];
      for (int n = 0; n < 24; n++) {
        double dot = 0;
        for (int q = 0; q < 3; q++)
          dot += pv[(q * T + t) * 25 + n];
        mx[t * 24 + n] = (float)(dot / sqrt(sq / (double)KD + 1e-6));
      }
    }
    compare_golden(f, mixes_name, mixes, 1e-5);
  }
  ts_tensor *pre, *post, *comb, *u;
  run_pre_fused(ks[1], part, X, sc, bs, &pre, &post, &comb, &u);
  ts_arg a4[3] = {ts_arg_tensor(u), ts_arg_tensor(nw), ts_arg_tensor(un)};
  num_launch(ks[2], a4, 3);
  compare_golden(f, in_name, un, 1e-5);
  ts_arg a5[5] = {ts_arg_tensor(X), ts_arg_tensor(fout), ts_arg_tensor(post),
                  ts_arg_tensor(comb), ts_arg_tensor(Y)};
  num_launch(ks[3], a5, 5);
  ts_tensor *tr[13] = {fn, sc, bs, nw, fout, flat, part, mixes, pre, post, comb, u, un};
  for (int i = 0; i < 13; i++)
    ts_tensor_release(tr[i]);
  return Y;
}

void test_golden_mhc_layer0(void) {
  ts_safetensors *w = num_golden_open("weights.safetensors");
  ts_safetensors *f = num_golden_open("f32.safetensors");
  if (w && f) {
    ts_kernel *ks[4] = {num_kernel("kernels/mhc.tile", "hc_mix_split", NULL, NULL),
                        num_kernel("kernels/mhc.tile", "hc_pre_fused", NULL, NULL),
                        num_kernel("kernels/rmsnorm.tile", "rmsnorm_f32", NULL, NULL),
                        /* d in 3 blocks, the last partial */
                        num_kernel("kernels/mhc.tile", "hc_post", "BD=96", NULL)};
    ts_kernel *ke = num_kernel("kernels/embed.tile", "embed", NULL, NULL);
    const ts_st_tensor *ids = ts_safetensors_find(f, "input_ids");
    ts_tensor *table = num_golden_tensor(w, "embed.weight");
    bool ok = ke && ids && table;
    for (int i = 0; i < 4; i++)
      ok &= ks[i] != NULL;
    if (ok) {
      int64_t T = 200, DM = ts_tensor_dim(table, 1), sh[2] = {T, DM};
      int64_t sx[3] = {T, 4, DM};
      ts_tensor *tid = num_tensor(TS_DTYPE_I32, 1, &T);
      memcpy(ts_tensor_data(tid), ids->data, (size_t)T * 4);
      ts_tensor *h0 = num_tensor(TS_DTYPE_F32, 2, sh);
      ts_arg a[3] = {ts_arg_tensor(tid), ts_arg_tensor(table), ts_arg_tensor(h0)};
      num_launch(ke, a, 3);
      /* X = h0 repeated into the 4 streams */
      ts_tensor *X = num_tensor(TS_DTYPE_F32, 3, sx);
      float *xd = ts_tensor_data(X);
      const float *hd = ts_tensor_data(h0);
      for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < 4; j++)
          memcpy(xd + (t * 4 + j) * DM, hd + t * DM, (size_t)DM * 4);
      ts_tensor *X1 = mhc_side(w, f, X, "attn", "layers.0.attn_norm.weight",
                               "prefill.layers.0.attn.in",
                               "prefill.layers.0.attn.out",
                               "prefill.layers.0.sinkhorn.0.mixes", ks);
      ts_tensor *X2 = X1 ? mhc_side(w, f, X1, "ffn", "layers.0.ffn_norm.weight",
                                    "prefill.layers.0.ffn.in",
                                    "prefill.layers.0.ffn.out", NULL, ks)
                         : NULL;
      CHECK(X1 && X2);
      if (X2)
        compare_golden(f, "prefill.layers.0.out", X2, 1e-5);
      ts_tensor_release(X2);
      ts_tensor_release(X1);
      ts_tensor_release(X);
      ts_tensor_release(h0);
      ts_tensor_release(tid);
    }
    ts_tensor_release(table);
    ts_kernel_release(ke);
    for (int i = 0; i < 4; i++)
      ts_kernel_release(ks[i]);
  }
  if (w)
    ts_safetensors_close(w);
  if (f)
    ts_safetensors_close(f);
}
