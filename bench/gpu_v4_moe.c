/* gpu_v4_moe.c - bench/gpu_v4's MoE sections: the layer's grouped GEMMs on
 * tensor cores against PyTorch's per-expert loop (bf16, and V4's FP4 and FP8
 * experts through e4m3 tensor cores), a decode step's routed experts in
 * bf16, FP4 and FP8 against the same run's copy, and the router (linear_f32
 * + moe_gate against moe_router). */
#include "bench/gpu_v4.h"

#include <stdio.h>

/* Random top-K routing of T tokens over E experts: counts, offsets and the
 * sorted slot list (slot t K + j), as moe_count/offsets/scatter make them. */
static void route(int64_t T, int64_t E, int64_t K, ts_tensor **sorted, ts_tensor **offsets,
                  ts_tensor **counts) {
  int64_t tk = T * K;
  int32_t *ex = malloc(sizeof *ex * (size_t)tk), *cnt = calloc((size_t)E, sizeof *cnt);
  uint64_t s = 17;
  for (int64_t t = 0; t < T; t++)
    for (int64_t j = 0; j < K; j++) {
      int32_t e;
      bool dup;
      do {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        e = (int32_t)((s >> 33) % (uint64_t)E);
        dup = false;
        for (int64_t q = 0; q < j; q++)
          dup |= ex[t * K + q] == e;
      } while (dup);
      ex[t * K + j] = e;
      cnt[e]++;
    }
  *sorted = tensor(host, TS_DTYPE_I32, 1, &tk);
  *offsets = tensor(host, TS_DTYPE_I32, 1, &E);
  *counts = tensor(host, TS_DTYPE_I32, 1, &E);
  int64_t *cur = calloc((size_t)E, sizeof *cur), at = 0;
  for (int64_t e = 0; e < E; e++) {
    ts_tensor_set(*offsets, e, (double)at);
    ts_tensor_set(*counts, e, cnt[e]);
    cur[e] = at;
    at += cnt[e];
  }
  for (int64_t i = 0; i < tk; i++)
    ts_tensor_set(*sorted, cur[ex[i]]++, (double)i);
  free(ex);
  free(cnt);
  free(cur);
}

/* The grouped table of tiles of up to BM rows (defs "BM=N") from the
 * counts and offsets on the GPU, as the model's moe_offsets makes it. */
static void tile_table(ts_tensor *counts, ts_tensor *offsets, ts_tensor *tiles, const char *defs) {
  ts_kernel *ko = kern(gpu, "kernels/moe.tile", "moe_offsets", defs);
  ts_arg o[3] = {ts_arg_tensor(counts), ts_arg_tensor(offsets), ts_arg_tensor(tiles)};
  ts_status err = ts_kernel_launch(ko, o, 3);
  if (err)
    die(err, "moe_offsets");
  ts_kernel_release(ko);
}

/* t (rank 2 or 3) seen as `rank` dims (a reshape that the caller releases) */
static ts_tensor *as(ts_tensor *t, uint32_t rank, const int64_t *shape) {
  ts_tensor *v;
  ts_status st = ts_tensor_reshape(t, rank, shape, &v);
  if (st)
    die(st, "a reshape");
  return v;
}

/* The same layer with V4's FP4 (fp8: false) or FP8 experts on tensor cores
 * (model/moe.lua's prefill on a GPU): a row of the table above, `tb` the
 * bf16 row's time. */
static void quant_prefill(bool fp8, int64_t T, double tb) {
  int64_t E = 256, K = 6, DM = quick ? 256 : 4096, I = quick ? 128 : 2048, tk = T * K;
  int64_t w13[3] = {E, I, DM}, w2s[3] = {E, DM, I}, q13[3] = {E, I, DM / 2},
          s13[3] = {E, I, DM / 32}, q2[3] = {E, DM, I / 2}, s2[3] = {E, DM, I / 32},
          b13[3] = {E, I / 128, DM / 128}, b2[3] = {E, DM / 128, I / 128};
  ts_kernel *kq = kern(gpu, "kernels/quant.tile", fp8 ? "fp8_block_quant" : "fp4_block_quant", NULL);
  ts_tensor *fq[3], *fs[3];
  for (int m = 0; m < 3; m++) {
    ts_tensor *w = rnd(gpu, TS_DTYPE_F32, 3, m == 1 ? w2s : w13, 44 + m, 0.02);
    fq[m] = fp8 ? tensor(gpu, TS_DTYPE_FP8E4M3, 3, m == 1 ? w2s : w13)
                : tensor(gpu, TS_DTYPE_I8, 3, m == 1 ? q2 : q13);
    fs[m] = tensor(gpu, TS_DTYPE_F32, 3, fp8 ? (m == 1 ? b2 : b13) : (m == 1 ? s2 : s13));
    ts_arg a[3] = {ts_arg_tensor(w), ts_arg_tensor(fq[m]), ts_arg_tensor(fs[m])};
    ts_status err = ts_kernel_launch(kq, a, 3);
    if (err)
      die(err, "the experts' quantisation");
    ts_tensor_release(w);
  }
  int64_t st[2] = {(tk + 63) / 64 + E, 3}, sx3[3] = {T, 1, DM}, sb3[3] = {T, 1, DM / 128},
          sx[2] = {T, DM}, sb[2] = {T, DM / 128}, sw[2] = {T, K}, sh3[3] = {tk, 1, I},
          shb3[3] = {tk, 1, I / 128}, sh[2] = {tk, I}, shb[2] = {tk, I / 128}, so[2] = {tk, DM};
  ts_tensor *sorted, *offsets, *counts;
  route(T, E, K, &sorted, &offsets, &counts);
  ts_tensor *gs = to_gpu(sorted), *go = to_gpu(offsets), *gc = to_gpu(counts);
  ts_tensor *tiles = tensor(gpu, TS_DTYPE_I32, 2, st);
  tile_table(gc, go, tiles, "BM=64");
  ts_kernel *ka = kern(gpu, "kernels/quant.tile", "act_quant", "XQ=fp8e4m3");
  ts_kernel *ku = kern(gpu, "kernels/moe.tile", fp8 ? "moe_up_fp8_tc" : "moe_up_fp4_tc", NULL);
  ts_kernel *kd = kern(gpu, "kernels/moe.tile", fp8 ? "moe_down_fp8_tc" : "moe_down_fp4_tc", NULL);
  ts_tensor *x3 = rnd(gpu, TS_DTYPE_F32, 3, sx3, 48, 1), *wt = rnd(gpu, TS_DTYPE_F32, 2, sw, 49, 0.2);
  ts_tensor *xc3 = tensor(gpu, TS_DTYPE_FP8E4M3, 3, sx3), *sx3t = tensor(gpu, TS_DTYPE_F32, 3, sb3);
  ts_tensor *h = tensor(gpu, TS_DTYPE_F32, 2, sh), *hc3 = tensor(gpu, TS_DTYPE_FP8E4M3, 3, sh3);
  ts_tensor *sh3t = tensor(gpu, TS_DTYPE_F32, 3, shb3), *out = tensor(gpu, TS_DTYPE_F32, 2, so);
  ts_tensor *xc = as(xc3, 2, sx), *sxt = as(sx3t, 2, sb), *h3 = as(h, 3, sh3), *hc = as(hc3, 2, sh);
  ts_tensor *sht = as(sh3t, 2, shb);
  ts_arg a1[3] = {ts_arg_tensor(x3), ts_arg_tensor(xc3), ts_arg_tensor(sx3t)};
  ts_arg a2[3] = {ts_arg_tensor(h3), ts_arg_tensor(hc3), ts_arg_tensor(sh3t)};
  ts_arg u[11] = {ts_arg_tensor(xc),    ts_arg_tensor(sxt),   ts_arg_tensor(gs),
                  ts_arg_tensor(go),    ts_arg_tensor(tiles), ts_arg_tensor(wt),
                  ts_arg_tensor(fq[0]), ts_arg_tensor(fs[0]), ts_arg_tensor(fq[2]),
                  ts_arg_tensor(fs[2]), ts_arg_tensor(h)};
  ts_arg d[8] = {ts_arg_tensor(hc),    ts_arg_tensor(sht),   ts_arg_tensor(gs),
                 ts_arg_tensor(go),    ts_arg_tensor(tiles), ts_arg_tensor(fq[1]),
                 ts_arg_tensor(fs[1]), ts_arg_tensor(out)};
  double tq = timed(ka, a1, 3) + timed(ka, a2, 3), tu = timed(ku, u, 11), td = timed(kd, d, 8);
  double tall = tq + tu + td, flops = (double)tk * DM * I * 2 * 3;
  char r1[32], r2[32];
  printf("| %lld %s | (act_quant %.3f) | %.3f | %.3f | %.1f | %s | - | %s (bf16 / this) |\n",
         (long long)T, fp8 ? "FP8" : "FP4", tq * 1e3, tu * 1e3, td * 1e3, flops / tall / 1e12,
         ratio(r1, peak_flops > 0 ? flops / tall / peak_flops : 0), ratio(r2, tb / tall));
  ts_tensor *all[] = {sorted, offsets, counts, gs, go, gc, tiles, x3, wt, xc3, sx3t, h, hc3,
                      sh3t, out, xc, sxt, h3, hc, sht};
  for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
    ts_tensor_release(all[j]);
  for (int m = 0; m < 3; m++) {
    ts_tensor_release(fq[m]);
    ts_tensor_release(fs[m]);
  }
  ts_kernel *ks[] = {kq, ka, ku, kd};
  for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
    ts_kernel_release(ks[j]);
}

void moe(void) {
  int64_t E = 256, K = 6, DM = quick ? 256 : 4096, I = quick ? 128 : 2048;
  int64_t Ts[2] = {quick ? 64 : 128, quick ? 256 : 4096};
  printf("\n## MoE layer (256 experts, top-6, d %lld, width %lld; up and down GEMMs)\n\n",
         (long long)DM, (long long)I);
  int64_t w13[3] = {E, I, DM}, w2s[3] = {E, DM, I};
  ts_tensor *w1 = rnd(gpu, TS_DTYPE_BF16, 3, w13, 21, 0.02), *w3 = rnd(gpu, TS_DTYPE_BF16, 3, w13, 22, 0.02);
  ts_tensor *w2 = rnd(gpu, TS_DTYPE_BF16, 3, w2s, 23, 0.02);
  ts_kernel *ku = kern(gpu, "kernels/moe.tile", "moe_up_tc", NULL);
  ts_kernel *kd = kern(gpu, "kernels/moe.tile", "moe_down_tc", NULL);
  /* the tile table in tiles of up and down's BM (their default: 64, a
   * warpgroup's wgmma M on sm_90a) */
  ts_kernel *ko = kern(gpu, "kernels/moe.tile", "moe_offsets", "BM=64");
  printf("| tokens | tile table ms | up ms | down ms | TFLOP/s | of bf16 peak | PyTorch per-expert loop ms "
         "| PyTorch / Tessera |\n");
  printf("|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < 2; i++) {
    int64_t T = Ts[i], tk = T * K, sx[2] = {T, DM}, sw[2] = {T, K}, sh[2] = {tk, I},
            so[2] = {tk, DM};
    ts_tensor *sorted, *offsets, *counts;
    route(T, E, K, &sorted, &offsets, &counts);
    ts_tensor *x = rnd(gpu, TS_DTYPE_BF16, 2, sx, 24, 1), *wt = rnd(gpu, TS_DTYPE_F32, 2, sw, 25, 0.2);
    ts_tensor *gs = to_gpu(sorted), *go = to_gpu(offsets), *gc = to_gpu(counts);
    ts_tensor *h = tensor(gpu, TS_DTYPE_BF16, 2, sh), *out = tensor(gpu, TS_DTYPE_F32, 2, so);
    /* the grouped GEMMs' grid: the tile table's rows (one tile of up to 64
     * rows of one expert each), not experts x rows */
    int64_t st[2] = {(tk + 63) / 64 + E, 3};
    ts_tensor *tiles = tensor(gpu, TS_DTYPE_I32, 2, st);
    ts_arg o[3] = {ts_arg_tensor(gc), ts_arg_tensor(go), ts_arg_tensor(tiles)};
    double tt = timed(ko, o, 3);
    ts_arg u[8] = {ts_arg_tensor(x),  ts_arg_tensor(gs), ts_arg_tensor(go), ts_arg_tensor(tiles),
                   ts_arg_tensor(wt), ts_arg_tensor(w1), ts_arg_tensor(w3), ts_arg_tensor(h)};
    ts_arg d[6] = {ts_arg_tensor(h),  ts_arg_tensor(gs), ts_arg_tensor(go),
                   ts_arg_tensor(tiles), ts_arg_tensor(w2), ts_arg_tensor(out)};
    double tu = timed(ku, u, 8), td = timed(kd, d, 6);
    double flops = (double)tk * DM * I * 2 * 3;
    char what[96], r1[32], r2[32], r3[32];
    snprintf(what, sizeof what, "moe %lld %lld %lld %lld %lld", (long long)T, (long long)E,
             (long long)K, (long long)DM, (long long)I);
    double pt = torch_seconds(what);
    double tall = tt + tu + td;
    printf("| %lld | %.3f | %.3f | %.3f | %.1f | %s | %s | %s |\n", (long long)T, tt * 1e3, tu * 1e3,
           td * 1e3, flops / tall / 1e12, ratio(r1, peak_flops > 0 ? flops / tall / peak_flops : 0),
           pt > 0 ? ratio(r3, pt * 1e3) : "-", ratio(r2, pt > 0 ? pt / tall : 0));
    ts_tensor *all[] = {sorted, offsets, counts, x, wt, gs, go, gc, h, out, tiles};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
      ts_tensor_release(all[j]);
    quant_prefill(false, T, tall);
    quant_prefill(true, T, tall);
  }
  ts_tensor_release(w1);
  ts_tensor_release(w2);
  ts_tensor_release(w3);
  ts_kernel_release(ku);
  ts_kernel_release(kd);
  ts_kernel_release(ko);
  printf("\n(FP4, FP8: the model's prefill form of V4's quantised experts, model/moe.lua: "
         "act_quant of x into e4m3 codes, moe_up_FMT_tc, act_quant of each slot's row, "
         "moe_down_FMT_tc, tiles of 64 rows; FP4 decodes each 32-wide step's codes into e4m3 "
         "tiles for wgmma k32 and promotes its sum with both scales, FP8 copies 128-wide blocks "
         "of codes and promotes per block. \"bf16 / this\" is the bf16 row's time over the "
         "row's.)\n");
}

/* The routed experts of a few tokens as the model runs them (model/moe.lua):
 * bf16 weights through moe_up + moe_down against V4's FP4 experts (act_quant
 * of x, moe_up_fp4, act_quant of each slot's row, moe_down_fp4) and the Base
 * checkpoints' FP8 ones (the same with moe_up_fp8, moe_down_fp8), BM-row
 * tiles of the grouped table (one-row for a single token), d 4096, width
 * 2048, 256 experts, top-6. A decode step streams the chosen experts'
 * weights: the figure is their bytes (bf16 2 a weight; FP4 half a byte and
 * an f32 scale a 32; FP8 one and a scale a 128 x 128) over the time,
 * against the same run's copy (issue 8's 0.7 for memory-bound kernels;
 * scripts/misses.awk lists the rows under it). The checks run the FP4 and
 * FP8 GEMMs on small odd shapes against the CPU first. */
void moe_decode(void) {
  int64_t E = 256, K = 6, DM = quick ? 256 : 4096, I = quick ? 128 : 2048;
  if (check) { /* 5 tokens, 3 of 5 experts, d 160, width 288: partial 128-wide blocks */
    int64_t T = 5, e = 5, k = 3, dm = 160, i = 288, tk = T * k, st[2] = {tk + e, 3};
    int64_t sx[2] = {T, dm}, ss[2] = {T, 2}, sw[2] = {T, k}, q13[3] = {e, i, dm / 2},
            s13[3] = {e, i, dm / 32}, q2[3] = {e, dm, i / 2}, s2[3] = {e, dm, i / 32},
            sh[2] = {tk, i}, shs[2] = {tk, 3}, so[2] = {tk, dm};
    ts_tensor *sorted, *offsets, *counts, *tiles = tensor(host, TS_DTYPE_I32, 2, st);
    route(T, e, k, &sorted, &offsets, &counts);
    ts_kernel *ko = kern(host, "kernels/moe.tile", "moe_offsets", "BM=4");
    ts_arg o[3] = {ts_arg_tensor(counts), ts_arg_tensor(offsets), ts_arg_tensor(tiles)};
    ts_status err = ts_kernel_launch(ko, o, 3);
    if (err)
      die(err, "moe_offsets");
    ts_arg u[11] = {ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, sx, 90, 2)),
                    ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, ss, 91, 0.01)),
                    ts_arg_tensor(sorted), ts_arg_tensor(offsets), ts_arg_tensor(tiles),
                    ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, sw, 92, 1)),
                    ts_arg_tensor(rnd(host, TS_DTYPE_I8, 3, q13, 93, 127)),
                    ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, s13, 94, 0.05)),
                    ts_arg_tensor(rnd(host, TS_DTYPE_I8, 3, q13, 95, 127)),
                    ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, s13, 96, 0.05)),
                    ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, sh))};
    differential("kernels/moe.tile", "moe_up_fp4", "BM=4", u, 11, 10, 1e-5);
    ts_arg d[8] = {ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, sh, 97, 2)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, shs, 98, 0.01)), u[2], u[3], u[4],
                   ts_arg_tensor(rnd(host, TS_DTYPE_I8, 3, q2, 99, 127)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, s2, 100, 0.05)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, so))};
    differential("kernels/moe.tile", "moe_down_fp4", "BM=4", d, 8, 7, 1e-5);
    /* the Base checkpoints' FP8 experts: e4m3 codes, a scale per 128 x 128 */
    int64_t b13[3] = {e, 3, 2}, b2[3] = {e, 2, 3}, w13[3] = {e, i, dm}, w2[3] = {e, dm, i};
    ts_arg u8[11] = {u[0], u[1], u[2], u[3], u[4], u[5],
                     ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 3, w13, 101, 4)),
                     ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, b13, 102, 0.05)),
                     ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 3, w13, 103, 4)),
                     ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, b13, 104, 0.05)), u[10]};
    differential("kernels/moe.tile", "moe_up_fp8", "BM=4", u8, 11, 10, 1e-5);
    /* (its add: not read without ADD, d[0] stands in) */
    ts_arg d8[9] = {d[0], d[1], d[2], d[3], d[4],
                    ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 3, w2, 105, 4)),
                    ts_arg_tensor(rnd(host, TS_DTYPE_F32, 3, b2, 106, 0.05)), d[7], d[0]};
    differential("kernels/moe.tile", "moe_down_fp8", "BM=4", d8, 9, 7, 1e-5);
    /* the FP4 experts' prefill form: e4m3 codes in, tensor cores (its BM
     * 64 over the BM-4 table) */
    ts_arg uc[11] = {ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 2, sx, 107, 4)),
                     u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10]};
    differential("kernels/moe.tile", "moe_up_fp4_tc", NULL, uc, 11, 10, 1e-5);
    ts_arg dc[8] = {ts_arg_tensor(rnd(host, TS_DTYPE_FP8E4M3, 2, sh, 108, 4)),
                    d[1], d[2], d[3], d[4], d[5], d[6], d[7]};
    differential("kernels/moe.tile", "moe_down_fp4_tc", NULL, dc, 8, 7, 1e-5);
    ts_arg uc8[11] = {uc[0], u8[1], u8[2], u8[3], u8[4], u8[5], u8[6], u8[7], u8[8], u8[9], u8[10]};
    differential("kernels/moe.tile", "moe_up_fp8_tc", NULL, uc8, 11, 10, 1e-5);
    ts_arg dc8[8] = {dc[0], d8[1], d8[2], d8[3], d8[4], d8[5], d8[6], d8[7]};
    differential("kernels/moe.tile", "moe_down_fp8_tc", NULL, dc8, 8, 7, 1e-5);
    release_args(uc, 1);
    release_args(dc, 1);
    release_args(u, 11);
    ts_arg dd[5] = {d[0], d[1], d[5], d[6], d[7]};
    release_args(dd, 5);
    ts_arg ee[6] = {u8[6], u8[7], u8[8], u8[9], d8[5], d8[6]};
    release_args(ee, 6);
    ts_tensor_release(counts);
    ts_kernel_release(ko);
  }
  if (check_only)
    return;
  printf("\n## MoE routed experts of a decode step: bf16 against V4's FP4 and FP8 (256 experts, "
         "top-6, d %lld, width %lld)\n\n", (long long)DM, (long long)I);
  int64_t w13[3] = {E, I, DM}, w2s[3] = {E, DM, I}, q13[3] = {E, I, DM / 2}, s13[3] = {E, I, DM / 32},
          q2[3] = {E, DM, I / 2}, s2[3] = {E, DM, I / 32};
  ts_tensor *bw[3] = {rnd(gpu, TS_DTYPE_BF16, 3, w13, 31, 0.02), rnd(gpu, TS_DTYPE_BF16, 3, w2s, 32, 0.02),
                      rnd(gpu, TS_DTYPE_BF16, 3, w13, 33, 0.02)};
  /* the FP4 and FP8 forms of random f32 weights, quantised on the GPU */
  ts_tensor *fq[3], *fs[3], *eq[3], *es[3];
  int64_t b13[3] = {E, I / 128, DM / 128}, b2[3] = {E, DM / 128, I / 128};
  ts_kernel *kq = kern(gpu, "kernels/quant.tile", "fp4_block_quant", NULL);
  ts_kernel *kq8 = kern(gpu, "kernels/quant.tile", "fp8_block_quant", NULL);
  for (int m = 0; m < 3; m++) {
    ts_tensor *w = rnd(gpu, TS_DTYPE_F32, 3, m == 1 ? w2s : w13, 34 + m, 0.02);
    fq[m] = tensor(gpu, TS_DTYPE_I8, 3, m == 1 ? q2 : q13);
    fs[m] = tensor(gpu, TS_DTYPE_F32, 3, m == 1 ? s2 : s13);
    eq[m] = tensor(gpu, TS_DTYPE_FP8E4M3, 3, m == 1 ? w2s : w13);
    es[m] = tensor(gpu, TS_DTYPE_F32, 3, m == 1 ? b2 : b13);
    ts_arg a[3] = {ts_arg_tensor(w), ts_arg_tensor(fq[m]), ts_arg_tensor(fs[m])};
    ts_arg a8[3] = {ts_arg_tensor(w), ts_arg_tensor(eq[m]), ts_arg_tensor(es[m])};
    ts_status err = ts_kernel_launch(kq, a, 3);
    if (err || (err = ts_kernel_launch(kq8, a8, 3)))
      die(err, "the experts' quantisation");
    ts_tensor_release(w);
  }
  printf("| tokens | weights (kernels) | ms | weight GB/s | of copy | bf16 time / this |\n"
         "|---|---|---|---|---|---|\n");
  for (int64_t T = 1; T <= 8; T *= 8) {
    int64_t BM = T == 1 ? 1 : 16, tk = T * K, st[2] = {(tk + BM - 1) / BM + E, 3}, sx[2] = {T, DM},
            sx3[3] = {T, 1, DM}, sb[2] = {T, DM / 128}, sb3[3] = {T, 1, DM / 128}, sw[2] = {T, K},
            sh[2] = {tk, I}, sh3[3] = {tk, 1, I}, shb[2] = {tk, I / 128}, shb3[3] = {tk, 1, I / 128},
            so[2] = {tk, DM};
    char bm[16];
    snprintf(bm, sizeof bm, "BM=%lld", (long long)BM);
    ts_tensor *sorted, *offsets, *counts;
    route(T, E, K, &sorted, &offsets, &counts);
    ts_tensor *gs = to_gpu(sorted), *go = to_gpu(offsets), *gc = to_gpu(counts);
    ts_tensor *tiles = tensor(gpu, TS_DTYPE_I32, 2, st);
    tile_table(gc, go, tiles, bm);
    ts_tensor *x = rnd(gpu, TS_DTYPE_F32, 2, sx, 40, 1), *wt = rnd(gpu, TS_DTYPE_F32, 2, sw, 41, 0.2);
    ts_tensor *h = tensor(gpu, TS_DTYPE_F32, 2, sh), *out = tensor(gpu, TS_DTYPE_F32, 2, so);
    ts_tensor *xq = tensor(gpu, TS_DTYPE_F32, 2, sx), *sxq = tensor(gpu, TS_DTYPE_F32, 2, sb);
    ts_tensor *hq = tensor(gpu, TS_DTYPE_F32, 2, sh), *shq = tensor(gpu, TS_DTYPE_F32, 2, shb);
    ts_tensor *x3 = as(x, 3, sx3), *xq3 = as(xq, 3, sx3), *sx3t = as(sxq, 3, sb3);
    ts_tensor *h3 = as(h, 3, sh3), *hq3 = as(hq, 3, sh3), *sh3t = as(shq, 3, shb3);
    ts_kernel *ku = kern(gpu, "kernels/moe.tile", "moe_up", bm);
    ts_kernel *kd = kern(gpu, "kernels/moe.tile", "moe_down", bm);
    ts_kernel *ku4 = kern(gpu, "kernels/moe.tile", "moe_up_fp4", bm);
    ts_kernel *kd4 = kern(gpu, "kernels/moe.tile", "moe_down_fp4", bm);
    ts_kernel *ka = kern(gpu, "kernels/quant.tile", "act_quant", NULL);
    ts_arg u[8] = {ts_arg_tensor(x),     ts_arg_tensor(gs),    ts_arg_tensor(go),
                   ts_arg_tensor(tiles), ts_arg_tensor(wt),    ts_arg_tensor(bw[0]),
                   ts_arg_tensor(bw[2]), ts_arg_tensor(h)};
    /* (moe_down's and moe_down_fp8's add: not read without ADD, x stands in) */
    ts_arg d[7] = {ts_arg_tensor(h),     ts_arg_tensor(gs),    ts_arg_tensor(go),
                   ts_arg_tensor(tiles), ts_arg_tensor(bw[1]), ts_arg_tensor(out),
                   ts_arg_tensor(x)};
    ts_arg a1[3] = {ts_arg_tensor(x3), ts_arg_tensor(xq3), ts_arg_tensor(sx3t)};
    ts_arg u4[11] = {ts_arg_tensor(xq),    ts_arg_tensor(sxq),   ts_arg_tensor(gs),
                     ts_arg_tensor(go),    ts_arg_tensor(tiles), ts_arg_tensor(wt),
                     ts_arg_tensor(fq[0]), ts_arg_tensor(fs[0]), ts_arg_tensor(fq[2]),
                     ts_arg_tensor(fs[2]), ts_arg_tensor(h)};
    ts_arg a2[3] = {ts_arg_tensor(h3), ts_arg_tensor(hq3), ts_arg_tensor(sh3t)};
    ts_arg d4[8] = {ts_arg_tensor(hq),    ts_arg_tensor(shq),   ts_arg_tensor(gs),
                    ts_arg_tensor(go),    ts_arg_tensor(tiles), ts_arg_tensor(fq[1]),
                    ts_arg_tensor(fs[1]), ts_arg_tensor(out)};
    ts_kernel *ku8 = kern(gpu, "kernels/moe.tile", "moe_up_fp8", bm);
    ts_kernel *kd8 = kern(gpu, "kernels/moe.tile", "moe_down_fp8", bm);
    ts_arg u8[11] = {u4[0], u4[1], u4[2], u4[3], u4[4], u4[5], ts_arg_tensor(eq[0]),
                     ts_arg_tensor(es[0]), ts_arg_tensor(eq[2]), ts_arg_tensor(es[2]), u4[10]};
    ts_arg d8[9] = {d4[0], d4[1], d4[2], d4[3], d4[4], ts_arg_tensor(eq[1]), ts_arg_tensor(es[1]),
                    d4[7], ts_arg_tensor(x)};
    double tb = timed(ku, u, 8) + timed(kd, d, 7), tq = timed(ka, a1, 3) + timed(ka, a2, 3);
    double t4 = tq + timed(ku4, u4, 11) + timed(kd4, d4, 8);
    double t8 = tq + timed(ku8, u8, 11) + timed(kd8, d8, 9);
    /* the experts chosen (route's slots: at most tk distinct) */
    int64_t used = 0;
    for (int64_t e = 0; e < E; e++)
      used += ts_tensor_get(counts, e) > 0;
    double wts = (double)used * 3 * I * DM, b16 = wts * 2, b4 = wts * (0.5 + 4.0 / 32);
    double b8 = wts * (1 + 4.0 / 16384);
    char r[5][32];
    printf("| %lld | bf16 (moe_up, moe_down) | %.3f | %.0f | %s | 1.00 |\n", (long long)T, tb * 1e3,
           b16 / tb / 1e9, ratio(r[0], copy_bps > 0 ? b16 / tb / copy_bps : 0));
    printf("| %lld | FP4 (act_quant, moe_up_fp4, act_quant, moe_down_fp4) | %.3f | %.0f | %s | %s |\n",
           (long long)T, t4 * 1e3, b4 / t4 / 1e9, ratio(r[1], copy_bps > 0 ? b4 / t4 / copy_bps : 0),
           ratio(r[2], tb / t4));
    printf("| %lld | FP8 (act_quant, moe_up_fp8, act_quant, moe_down_fp8) | %.3f | %.0f | %s | %s |\n",
           (long long)T, t8 * 1e3, b8 / t8 / 1e9, ratio(r[3], copy_bps > 0 ? b8 / t8 / copy_bps : 0),
           ratio(r[4], tb / t8));
    ts_tensor *all[] = {sorted, offsets, counts, gs, go, gc, tiles, x, wt, h, out, xq, sxq,
                        hq, shq, x3, xq3, sx3t, h3, hq3, sh3t};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
      ts_tensor_release(all[j]);
    ts_kernel *ks[] = {ku, kd, ku4, kd4, ku8, kd8, ka};
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
      ts_kernel_release(ks[j]);
  }
  for (int m = 0; m < 3; m++) {
    ts_tensor *t[] = {bw[m], fq[m], fs[m], eq[m], es[m]};
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++)
      ts_tensor_release(t[j]);
  }
  ts_kernel_release(kq);
  ts_kernel_release(kq8);
}

/* The router as the model runs it (model/moe.lua: linear_f32 over the bf16
 * gate weight, then moe_gate; a decode step's token with ROUTE, which also
 * makes the grouped GEMMs' routing in the same block) against moe_router,
 * which it replaced (one block a token, which copies all of the weight into
 * an f32 frag in global scratch and reads it back), for a decode step's
 * token and 64 tokens, d 4096, 256 experts, top-6: the gate weight's bytes
 * (2 MiB) over the time, against the same run's copy. The check runs
 * moe_gate on an odd shape (37 experts, 32 threads) against the CPU
 * first, with ROUTE: the weights, then the sorted slots. */
void moe_gating(void) {
  int64_t E = 256, K = 6, DM = quick ? 256 : 4096, V = 64;
  if (check) {
    int64_t T = 3, e = 37, sl[2] = {T, e}, sb[1] = {e}, si[1] = {T}, st[2] = {V, K},
            so[2] = {T, K}, mt[2] = {(T * K + 3) / 4 + e, 3}, tk[1] = {T * K};
    ts_arg a[9] = {ts_arg_tensor(rnd(host, TS_DTYPE_F32, 2, sl, 80, 3)),
                   ts_arg_tensor(rnd(host, TS_DTYPE_F32, 1, sb, 81, 0.1)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_I32, 1, si)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_I32, 2, st)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_I32, 2, so)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_F32, 2, so)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_I32, 1, sb)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_I32, 2, mt)),
                   ts_arg_tensor(tensor(host, TS_DTYPE_I32, 1, tk))};
    differential("kernels/moe.tile", "moe_gate", "TH=32 ROUTE=true BM=4", a, 9, 5, 1e-6);
    differential("kernels/moe.tile", "moe_gate", "TH=32 ROUTE=true BM=4", a, 9, 8, 0);
    release_args(a, 9);
  }
  if (check_only)
    return;
  printf("\n## The MoE router (d %lld, %lld experts, top-%lld)\n\n"
         "| tokens | kernels | ms | weight GB/s | of copy | moe_router / this |\n"
         "|---|---|---|---|---|---|\n",
         (long long)DM, (long long)E, (long long)K);
  int64_t sw[2] = {E, DM}, sb[1] = {E}, st[2] = {V, K};
  ts_tensor *wg = rnd(gpu, TS_DTYPE_BF16, 2, sw, 82, 0.02);
  ts_tensor *bias = rnd(gpu, TS_DTYPE_F32, 1, sb, 83, 0.1), *t2e = tensor(gpu, TS_DTYPE_I32, 2, st);
  for (int64_t T = 1; T <= 64; T *= 64) {
    int64_t sx[2] = {T, DM}, sl[2] = {T, E}, si[1] = {T}, so[2] = {T, K},
            mt[2] = {T * K + E, 3}, tk[1] = {T * K};
    ts_tensor *x = rnd(gpu, TS_DTYPE_F32, 2, sx, 84, 1), *lg = tensor(gpu, TS_DTYPE_F32, 2, sl);
    ts_tensor *ids = tensor(gpu, TS_DTYPE_I32, 1, si), *ex = tensor(gpu, TS_DTYPE_I32, 2, so);
    ts_tensor *w = tensor(gpu, TS_DTYPE_F32, 2, so), *off = tensor(gpu, TS_DTYPE_I32, 1, sb);
    ts_tensor *tiles = tensor(gpu, TS_DTYPE_I32, 2, mt), *sorted = tensor(gpu, TS_DTYPE_I32, 1, tk);
    /* (the model's tiles: O.linear_tiles, one-row for a token) */
    ts_kernel *kr = kern(gpu, "kernels/moe.tile", "moe_router", NULL);
    ts_kernel *kl = kern(gpu, "kernels/gemm.tile", "linear_f32",
                         T == 1 ? "W=bf16 BM=1 BN=32 BK=128" : "W=bf16");
    ts_kernel *kg = kern(gpu, "kernels/moe.tile", "moe_gate", T == 1 ? "ROUTE=true BM=1" : NULL);
    ts_arg r[7] = {ts_arg_tensor(x),   ts_arg_tensor(wg), ts_arg_tensor(bias), ts_arg_tensor(ids),
                   ts_arg_tensor(t2e), ts_arg_tensor(ex), ts_arg_tensor(w)};
    ts_arg l[3] = {ts_arg_tensor(x), ts_arg_tensor(wg), ts_arg_tensor(lg)};
    ts_arg g[9] = {ts_arg_tensor(lg), r[2], r[3], r[4], r[5], r[6], ts_arg_tensor(off),
                   ts_arg_tensor(tiles), ts_arg_tensor(sorted)};
    double tr = timed(kr, r, 7), tl = timed(kl, l, 3), tg = timed(kg, g, 9), bytes = 2.0 * E * DM;
    char q[4][32];
    printf("| %lld | moe_router | %.4f | %.0f | %s | 1.00 |\n", (long long)T, tr * 1e3,
           bytes / tr / 1e9, ratio(q[0], copy_bps > 0 ? bytes / tr / copy_bps : 0));
    printf("| %lld | linear_f32 W=bf16 + moe_gate%s (%.4f + %.4f) | %.4f | %.0f | %s | %s |\n",
           (long long)T, T == 1 ? " ROUTE" : "", tl * 1e3, tg * 1e3, (tl + tg) * 1e3,
           bytes / (tl + tg) / 1e9,
           ratio(q[1], copy_bps > 0 ? bytes / (tl + tg) / copy_bps : 0),
           ratio(q[2], tr / (tl + tg)));
    ts_tensor *all[] = {x, lg, ids, ex, w, off, tiles, sorted};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
      ts_tensor_release(all[j]);
    ts_kernel_release(kr);
    ts_kernel_release(kl);
    ts_kernel_release(kg);
  }
  ts_tensor_release(wg);
  ts_tensor_release(bias);
  ts_tensor_release(t2e);
  printf("\n(moe_router's scratch is E x DM f32 a block: 4 MiB a token. The GEMM's rows are "
         "memory-bound; moe_gate's K argmaxes over the block are its fixed cost, and with "
         "ROUTE its scans of the slots.)\n");
}
