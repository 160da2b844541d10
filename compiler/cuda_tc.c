/* cuda_tc.c - the CUDA C lowering's fast paths: tensor-core GEMMs
 * (mma.sync m16n8k16, m16n8k8 for tf32, m16n8k32 for s8, and wgmma; gpu_mma.c decides) with register accumulators in the
 * instruction's layout, and `pipelined` loops as rings of asynchronous
 * copies (cp.async; gpu_pipe.c decides). docs/abi.md describes both. */
#include "compiler/cuda_internal.h"
#include <string.h>

int cu_swizzle_of(cg *c, const ts_symbol *s, int64_t *r, int64_t *cols) {
  const ts_gpu_tile *t = c->tiles ? ts_gpu_tile_of(c->tiles, c->ntiles, s) : NULL;
  if (!t || t->home != TS_TILE_SMEM || !t->swz)
    return 0;
  *r = s->type->dims[0].c;
  *cols = s->type->dims[1].c;
  return t->swz;
}

int cu_pad_of(cg *c, const ts_symbol *s) {
  const ts_gpu_tile *t = c->tiles ? ts_gpu_tile_of(c->tiles, c->ntiles, s) : NULL;
  return t && t->home == TS_TILE_SMEM ? t->pad : 0;
}

/* `lin` of tile `s` as stored: swizzled when the tile is. */
static const char *phys(cg *c, const ts_symbol *s, const char *lin) {
  int64_t r, cols;
  int swz = cu_swizzle_of(c, s, &r, &cols);
  return swz ? cu_str(c, "ts_swz(%s, %lldLL, %lldLL, %d, %d)", lin, (long long)r, (long long)cols,
                     swz, ts_dtype_bits(s->type->dtype) / 8)
             : lin;
}

/* The [m, n] tile in an mma layout that the statement under `x` touches,
 * if any (gen.h: the statement touches no other register tile), and the
 * layout. */
static int cu_mma_shape(cg *c, const ts_node *x, int64_t *m, int64_t *n) {
  if (!x)
    return TS_ACC_CYCLIC;
  if (x->kind == TS_NODE_NAME && x->sym && x->sym->kind == TS_SYM_TILE) {
    for (int i = 0; i < c->nregs; i++)
      if (c->regs[i] == x->sym && c->mma[i] && c->mma[i] != TS_ACC_ROWS) {
        *m = x->sym->type->dims[0].c;
        *n = x->sym->type->dims[1].c;
        return c->mma[i];
      }
    return TS_ACC_CYCLIC;
  }
  for (uint32_t i = 0; i < x->kid_count; i++) {
    int l = cu_mma_shape(c, x->kids[i], m, n);
    if (l != TS_ACC_CYCLIC)
      return l;
  }
  return TS_ACC_CYCLIC;
}

/* The wgmma layout (gen.h): every register holds an element. */
static void cu_wgmma_begin(cg *c, int64_t m, int64_t n, const char **k) {
  int id = c->tmp++;
  int64_t groups = c->threads / 128 / c->ns, half = n / c->ns / 2;
  cu_line(c, "#pragma unroll");
  cu_line(c, "for (int r%d_ = 0; r%d_ < %lld; r%d_++) {", id, id,
          (long long)(m * n / c->threads), id);
  c->ind++;
  cu_line(c, "const int i%d_ = r%d_ %% %lld, q%d_ = i%d_ & 3;", id, id, (long long)half, id, id);
  k[0] = cu_str(c, "k%d_0_", id);
  k[1] = cu_str(c, "k%d_1_", id);
  cu_line(c, "const long long %s = ((long long)(r%d_ / %lld) * %lldLL + (long long)(threadIdx.x "
          "/ %lld)) * 64 + (long long)((threadIdx.x >> 5) & 3) * 16 + (long long)((threadIdx.x & "
          "31) >> 2) + (q%d_ >> 1) * 8;",
          k[0], id, (long long)half, (long long)groups, (long long)(128 * c->ns), id);
  /* with the warpgroups splitting N, this one's columns (gen.h) */
  cu_line(c, "const long long %s = (long long)(i%d_ >> 2) * 8 + (long long)(threadIdx.x & 3) "
          "* 2 + (q%d_ & 1) + (long long)((threadIdx.x >> 7) %% %lld) * %lld;", k[1], id, id,
          (long long)c->ns, (long long)(n / c->ns));
  c->mma_reg = cu_str(c, "r%d_", id);
  /* a vector's row beside it (gen.h TS_ACC_ROWS) */
  c->rows_reg = cu_str(c, "(r%d_ / %lld * 2 + (r%d_ & 3) / 2)", id, (long long)half, id);
}

/* This thread's rows of an [m] vector in wgmma's rows: register r holds row
 * (r / 2 G + wg) 64 + 16 q + l / 4 + 8 (r % 2), as every lane of its quad
 * does. */
static void cu_rows_begin(cg *c, int64_t m, const char **k) {
  int id = c->tmp++;
  cu_line(c, "#pragma unroll");
  cu_line(c, "for (int r%d_ = 0; r%d_ < %lld; r%d_++) {", id, id,
          (long long)(4 * m * c->ns / c->threads), id);
  c->ind++;
  k[0] = cu_str(c, "k%d_0_", id);
  cu_line(c, "const long long %s = ((long long)(r%d_ >> 1) * %lldLL + (long long)(threadIdx.x "
          "/ %lld)) * 64 + (long long)((threadIdx.x >> 5) & 3) * 16 + (long long)((threadIdx.x & "
          "31) >> 2) + (r%d_ & 1) * 8;",
          k[0], id, (long long)(c->threads / 128 / c->ns), (long long)(128 * c->ns), id);
  c->rows_reg = cu_str(c, "r%d_", id);
  c->rows_lead = true;
}

/* The elements of an [m, n] tile this thread holds in the mma layout, as
 * each_begin gives them: k[0], k[1] and the register c->mma_reg; the trip
 * count is a constant so that the loop unrolls. Ends with each_end. */
static void cu_mma_begin(cg *c, int64_t m, int64_t n, const char **k) {
  int id = c->tmp++;
  int64_t warps = c->threads / 32, pieces = (m / 16) * (n / 8);
  int64_t slots = (pieces + warps - 1) / warps;
  cu_line(c, "#pragma unroll");
  cu_line(c, "for (int r%d_ = 0; r%d_ < %lld; r%d_++) {", id, id,
       (long long)(slots * 4), id);
  c->ind++;
  cu_line(c, "const long long p%d_ = (long long)(r%d_ >> 2) * %lldLL + "
          "(long long)(threadIdx.x >> 5);",
       id, id, (long long)warps);
  cu_line(c, "if (p%d_ >= %lldLL) break;", id, (long long)pieces);
  k[0] = cu_str(c, "k%d_0_", id);
  k[1] = cu_str(c, "k%d_1_", id);
  cu_line(c, "const long long %s = (p%d_ / %lldLL) * 16 + (long long)((threadIdx.x "
          "& 31) >> 2) + ((r%d_ >> 1) & 1) * 8;",
       k[0], id, (long long)(n / 8), id);
  cu_line(c, "const long long %s = (p%d_ %% %lldLL) * 8 + (long long)(threadIdx.x "
          "& 3) * 2 + (r%d_ & 1);",
       k[1], id, (long long)(n / 8), id);
  c->mma_reg = cu_str(c, "r%d_", id);
}

/* Loops over a tile op's or a parallel's elements: the mma layout's when
 * the statement touches a tile in it. */
/* Whether `n` mentions a tile held in registers. */
static bool touches_regs(cg *c, const ts_node *n) {
  if (!n)
    return false;
  if (n->kind == TS_NODE_NAME && n->sym)
    for (int i = 0; i < c->nregs; i++)
      if (c->regs[i] == n->sym)
        return true;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (touches_regs(c, n->kids[i]))
      return true;
  return false;
}

void cu_loop_begin(cg *c, const ts_node *stmt, const char *const *ext,
                       uint32_t rank, bool dist, const char **k) {
  int64_t m, n, rows = dist && rank == 1 ? ts_rows_len(stmt, c->regs, c->mma, c->nregs) : 0;
  int layout = dist && rank == 2 ? cu_mma_shape(c, stmt, &m, &n) : TS_ACC_CYCLIC;
  if (rows)
    cu_rows_begin(c, rows, k);
  else if (layout == TS_ACC_WGMMA)
    cu_wgmma_begin(c, m, n, k);
  else if (layout == TS_ACC_MMA)
    cu_mma_begin(c, m, n, k);
  else
    /* register tiles need constant indices: a full unroll; else a partial
     * one */
    cu_each_begin(c, ext, rank, dist, !touches_regs(c, stmt), k);
}

void cu_loop_end(cg *c, bool dist) {
  cu_each_end(c);
  if (!dist) /* a loop inside one thread's element keeps the outer loop's */
    return;
  c->mma_reg = c->rows_reg = NULL;
  c->rows_lead = false;
}

/* ---- tile ops ------------------------------------------------------------ */

/* A gemm on tensor cores (gpu_mma.c): the warps take the 16x8 pieces of
 * C in turn; per piece, K in steps of 16, each lane packs its A and B
 * fragments (two 16-bit elements a word) from the tiles and issues one
 * mma.sync; the accumulators are C's registers (mma layout) or its
 * elements in shared memory. */
/* Whether tile `s` lives in shared memory (ldmatrix reads only there). */
static bool in_smem(cg *c, const ts_symbol *s) {
  const ts_gpu_tile *t = ts_gpu_tile_of(c->tiles, c->ntiles, s);
  return t && t->home == TS_TILE_SMEM;
}

void cu_tile_gemm_mma(cg *c, ts_node *call, const int64_t *mnk) {
  int64_t M = mnk[0], N = mnk[1], K = mnk[2];
  bool ta = ts_call_named_bool(call, "trans_a", false);
  bool tb = ts_call_named_bool(call, "trans_b", false);
  bool acc = ts_call_named_bool(call, "accumulate", true);
  const ts_node *c0;
  const ts_symbol *sa = call->kids[0]->sym, *sb = ts_gemm_b(call, &c0),
                  *sc = call->kids[2]->sym;
  const char *a = cu_tile_name(c, sa), *b = cu_tile_name(c, sb),
             *cc = cu_tile_name(c, sc);
  /* B's row length in memory and first column (gen.h ts_gemm_b) */
  long long bn = (long long)sb->type->dims[1].c;
  const char *bc0 = c0 ? cu_expr_as(c, (ts_node *)c0, CT_I64) : "0LL";
  bool regs = false;
  for (int i = 0; i < c->nregs; i++)
    regs |= c->regs[i] == sc && c->mma[i];
  const char *f16 = sa->type->dtype == TS_DTYPE_F16 ? "true" : "false";
  /* tf32: m16n8k8, whose fragments are m16n8k16's 16-bit ones read as
   * 32-bit words (k steps of 8, halves 4 apart; gen_mma.c) */
  bool tf32 = sa->type->dtype == TS_DTYPE_F32;
  /* s8: m16n8k32 into i32, the 16-bit fragments' words read as 4 bytes
   * (k steps of 32, halves 16 apart; A K-major, B transposed: gpu_mma.c) */
  bool s8 = sa->type->dtype == TS_DTYPE_I8;
  int kh = tf32 ? 4 : s8 ? 16 : 8;
  int64_t warps = c->threads / 32, pieces = (M / 16) * (N / 8);
  int64_t slots = (pieces + warps - 1) / warps;
  int id = c->tmp++;
  /* element (i, k) of A and (k, j) of B as stored (16-bit words) */
#define AT(i, k) phys(c, sa, ta ? cu_str(c, "(%s) * %lldLL + (%s)", k, (long long)M, i) \
                                : cu_str(c, "(%s) * %lldLL + (%s)", i, (long long)K, k))
#define BT(k, j) phys(c, sb, tb ? cu_str(c, "(%s) * %lldLL + (%s)", j, (long long)K, k) \
                                : cu_str(c, "(%s) * %lldLL + (%s) + %s", k, bn, j, bc0))
  cu_line(c, "const int g%d_ = (int)((threadIdx.x & 31) >> 2), q%d_ = "
          "(int)(threadIdx.x & 3) * 2;", id, id);
  /* registers need constant indices; an accumulator in shared memory does
   * not (and a full unroll costs NVRTC seconds) */
  cu_line(c, regs ? "#pragma unroll" : "#pragma unroll 2");
  cu_line(c, "for (int s%d_ = 0; s%d_ < %lld; s%d_++) {", id, id, (long long)slots,
       id);
  c->ind++;
  cu_line(c, "const int p%d_ = s%d_ * %lld + (int)(threadIdx.x >> 5);", id, id,
       (long long)warps);
  cu_line(c, "if (p%d_ < %lld) {", id, (long long)pieces);
  c->ind++;
  cu_line(c, "const int m%d_ = (p%d_ / %lld) * 16 + g%d_, n%d_ = (p%d_ %% %lld) * "
          "8;", id, id, (long long)(N / 8), id, id, id, (long long)(N / 8));
  const char *mr = cu_str(c, "m%d_", id), *nr = cu_str(c, "n%d_", id),
             *g = cu_str(c, "g%d_", id), *q = cu_str(c, "q%d_", id);
  /* the accumulator's four elements: rows m, m + 8; columns n + q, + 1 */
  const char *ci[4], *cj[4], *creg[4];
  int pad = regs ? 0 : cu_pad_of(c, sc); /* a padded C (gen.h ts_pad_elems) */
  for (int r = 0; r < 4; r++) {
    ci[r] = cu_str(c, "(%s + %d)", mr, (r >> 1) * 8);
    cj[r] = cu_str(c, "(%s + %s + %d)", nr, q, r & 1);
    creg[r] = regs ? cu_str(c, "%s[s%d_ * 4 + %d]", cc, id, r)
                   : cu_str(c, "%s[%s * %lldLL + %s]", cc, ci[r], (long long)(N + pad),
                         cj[r]);
  }
  const char *zero = s8 ? "0" : "0.0f";
  cu_line(c, "%s d%d_[4] = {%s, %s, %s, %s};", s8 ? "int" : "float", id, acc ? creg[0] : zero,
          acc ? creg[1] : zero, acc ? creg[2] : zero, acc ? creg[3] : zero);
  cu_line(c, "for (int k%d_ = 0; k%d_ < %lld; k%d_ += %d) {", id, id, (long long)K,
       id, 2 * kh);
  c->ind++;
  /* this lane's first k of a word: 2 (l % 4) 16-bit elements, 4 (l % 4)
   * bytes */
  const char *qk = s8 ? cu_str(c, "2 * %s", q) : q;
  const char *k0 = cu_str(c, "(k%d_ + %s)", id, qk), *k8 = cu_str(c, "(k%d_ + %s + %d)", id, qk, kh);
  const char *m8 = cu_str(c, "(%s + 8)", mr), *col = cu_str(c, "(%s + %s)", nr, g);
  /* two consecutive k of one row (A) or one column (B) in a word */
  const char *ak[4][2] = {{mr, k0}, {m8, k0}, {mr, k8}, {m8, k8}};
  const char *aw[4], *bw[2];
  for (int r = 0; r < 4; r++)
    aw[r] = ta ? cu_str(c, "((ts_u32)%s[%s] | ((ts_u32)%s[%s] << 16))", a,
                     AT(ak[r][0], ak[r][1]), a,
                     AT(ak[r][0], cu_str(c, "%s + 1", ak[r][1])))
               : cu_str(c, "*(const ts_u32 *)&%s[%s]", a, AT(ak[r][0], ak[r][1]));
  const char *bk[2] = {k0, k8};
  for (int r = 0; r < 2; r++)
    bw[r] = tb ? cu_str(c, "*(const ts_u32 *)&%s[%s]", b, BT(bk[r], col))
               : cu_str(c, "((ts_u32)%s[%s] | ((ts_u32)%s[%s] << 16))", b,
                     BT(bk[r], col), b, BT(cu_str(c, "%s + 1", bk[r]), col));
#undef AT
#undef BT
  /* ldmatrix where the tile is in shared memory with rows of whole 16-byte
   * units along K (A not transposed, B transposed): lane l gives the row
   * address of matrix l / 8 */
  if (!ta && K % 8 == 0 && in_smem(c, sa)) {
    cu_line(c, "ts_u32 a%d_[4];", id);
    cu_line(c, "ts_ldmatrix_x4(a%d_, &%s[%s]);", id, a,
            phys(c, sa, cu_str(c, "((p%d_ / %lld) * 16 + (int)(threadIdx.x & 15)) * %lldLL + k%d_ "
                               "+ (int)((threadIdx.x >> 4) & 1) * %d", id, (long long)(N / 8),
                               (long long)K, id, kh)));
  } else {
    cu_line(c, "const ts_u32 a%d_[4] = {%s, %s, %s, %s};", id, aw[0], aw[1], aw[2], aw[3]);
  }
  if (tb && K % 8 == 0 && in_smem(c, sb)) {
    cu_line(c, "ts_u32 b%d_[2];", id);
    cu_line(c, "ts_ldmatrix_x2(b%d_, &%s[%s]);", id, b,
            phys(c, sb, cu_str(c, "(%s + (int)(threadIdx.x & 7)) * %lldLL + k%d_ + "
                               "(int)((threadIdx.x >> 3) & 1) * %d", nr, (long long)K, id, kh)));
  } else if (!tb && bn % 8 == 0 && in_smem(c, sb)) {
    /* B not transposed (K down its rows): ldmatrix .trans of the rows k ..
     * k + 15 at the piece's 8 columns, lane l giving row k + l % 16 */
    cu_line(c, "ts_u32 b%d_[2];", id);
    cu_line(c, "ts_ldmatrix_x2_trans(b%d_, &%s[%s]);", id, b,
            phys(c, sb, cu_str(c, "(k%d_ + (int)(threadIdx.x & 15)) * %lldLL + %s + %s", id, bn,
                               nr, bc0)));
  } else {
    cu_line(c, "const ts_u32 b%d_[2] = {%s, %s};", id, bw[0], bw[1]);
  }
  if (tf32)
    cu_line(c, "ts_mma_1688_tf32(d%d_, a%d_, b%d_);", id, id, id);
  else if (s8)
    cu_line(c, "ts_mma_16832_s8(d%d_, a%d_, b%d_);", id, id, id);
  else
    cu_line(c, "ts_mma_16816(d%d_, a%d_, b%d_, %s);", id, id, id, f16);
  c->ind--;
  cu_line(c, "}");
  for (int r = 0; r < 4; r++)
    cu_line(c, "%s = d%d_[%d];", creg[r], id, r);
  c->ind--;
  cu_line(c, "}");
  c->ind--;
  cu_line(c, "}");
}

int cu_layout_of(cg *c, const ts_symbol *s) {
  for (int i = 0; s && i < c->nregs; i++)
    if (c->regs[i] == s)
      return c->mma[i];
  return TS_ACC_CYCLIC;
}

bool cu_wgmma_call(cg *c, const ts_node *call, int64_t mnk[3]) {
  return c->wgmma && c->tiles && ts_mma_gemm(c->k, c->tiles, c->ntiles, call, mnk) &&
         ts_wgmma_gemm(c->k, c->tiles, c->ntiles, call, mnk) &&
         cu_layout_of(c, call->kids[2]->sym) == TS_ACC_WGMMA;
}

bool cu_wgmma_row_reduce(cg *c, ts_node *call) {
  const ts_symbol *s = call->kids[0]->sym;
  bool wg = cu_layout_of(c, s) == TS_ACC_WGMMA;
  cview pool[8], dst;
  int np = 0;
  if (!wg || !cu_view_of(c, call->kids[1], &dst, pool, &np))
    return wg;
  /* N: this warpgroup's columns (gen.h ts_wgmma_nsplit) */
  int64_t M = s->type->dims[0].c, N = s->type->dims[1].c / c->ns,
          groups = c->threads / 128 / c->ns, slabs = M / (64 * groups);
  const char *t = cu_tile_name(c, s);
  bool sum = call->builtin == TS_BUILTIN_REDUCE_SUM, abs = call->builtin == TS_BUILTIN_REDUCE_ABSMAX;
  int id = c->tmp++;
  /* row 16 q + l / 4 (+ 8) of a slab: registers 4 j + 0, 1 (+ 2) of lane l
   * of warp q, then the quad's four lanes (xor 1, 2); its first lane writes */
  cu_line(c, "const long long rr%d_ = (long long)(threadIdx.x >> 5 & 3) * 16 + "
          "(long long)(threadIdx.x & 31) / 4;", id);
  for (int64_t sl = 0; sl < slabs; sl++)
    for (int64_t h = 0; h < 2; h++) {
      const char *acc = cu_str(c, "rd%d_%lld_%lld", id, (long long)sl, (long long)h);
      cu_line(c, "float %s = %s;", acc, sum ? "0.0f" : "__int_as_float(0xff800000)");
      for (int64_t j = 0; j < N / 8; j++)
        for (int64_t e = 0; e < 2; e++) {
          const char *x = cu_str(c, "%s[%lld]", t, (long long)(sl * (N / 2) + 4 * j + 2 * h + e));
          if (abs)
            x = cu_str(c, "ts_abs(%s)", x);
          cu_line(c, "%s = %s;", acc, sum ? cu_str(c, "%s + %s", acc, x)
                                          : cu_str(c, "ts_max(%s, %s)", acc, x));
        }
      for (int o = 1; o <= 2; o *= 2)
        cu_line(c, "%s = %s;", acc,
                sum ? cu_str(c, "%s + __shfl_xor_sync(0xffffffffu, %s, %d)", acc, acc, o)
                    : cu_str(c, "ts_max(%s, __shfl_xor_sync(0xffffffffu, %s, %d))", acc, acc, o));
    }
  if (c->ns > 1) {
    /* the warpgroups' parts of rows rr, rr + 8 of the one slab through
     * shared memory: buffer ts_xpar of two after the broadcast slot, the
     * other one the last reduction's (gen.h) */
    cu_line(c, "{");
    c->ind++;
    cu_line(c, "TS_SHARED(float) x_ = (float *)(ts_smem + %d) + ts_xpar * %lld;",
            TS_GPU_XCHG_AT, (long long)(64 * c->ns));
    cu_line(c, "ts_xpar ^= 1;");
    cu_line(c, "if ((threadIdx.x & 3) == 0) {");
    for (int64_t h = 0; h < 2; h++)
      cu_line(c, "  x_[(threadIdx.x >> 7) %% %lld * 64 + rr%d_ + %lld] = rd%d_0_%lld;",
              (long long)c->ns, id, (long long)(8 * h), id, (long long)h);
    cu_line(c, "}");
    cu_line(c, "__syncthreads();");
    for (int64_t h = 0; h < 2; h++) {
      const char *acc = cu_str(c, "rd%d_0_%lld", id, (long long)h);
      cu_line(c, "%s = %s;", acc, sum ? "0.0f" : "__int_as_float(0xff800000)");
      for (int64_t w = 0; w < c->ns; w++) {
        const char *x = cu_str(c, "x_[rr%d_ + %lld]", id, (long long)(64 * w + 8 * h));
        cu_line(c, "%s = %s;", acc, sum ? cu_str(c, "%s + %s", acc, x)
                                        : cu_str(c, "ts_max(%s, %s)", acc, x));
      }
    }
    c->ind--;
    cu_line(c, "}");
  }
  for (int64_t sl = 0; sl < slabs; sl++)
    for (int64_t h = 0; h < 2; h++) {
      const char *acc = cu_str(c, "rd%d_%lld_%lld", id, (long long)sl, (long long)h);
      /* into wgmma's rows (gen.h TS_ACC_ROWS): every lane has the value;
       * else (a tile in memory) the first lane of the quad, and with the
       * warpgroups splitting N the first warpgroup's */
      cu_line(c, dst.rows ? "{" : c->ns > 1 ? "if ((threadIdx.x & 3) == 0 && threadIdx.x < 128) {"
                                            : "if ((threadIdx.x & 3) == 0) {");
      c->ind++;
      const char *row = cu_str(c, "((%lld + (long long)(threadIdx.x / %lld)) * 64 + rr%d_ + %lld)",
                               (long long)(sl * groups), (long long)(128 * c->ns), id,
                               (long long)(8 * h));
      c->rows_reg = cu_str(c, "%lld", (long long)(2 * sl + h));
      cu_view_store(c, &dst, &row, acc, CT_F32);
      c->rows_reg = NULL;
      c->ind--;
      cu_line(c, "}");
    }
  return true;
}

/* The accumulators of wgmma gemm `call` read only after a wait: each
 * passes through an empty asm ordered after it. */
static void fence_regs(cg *c, const ts_node *call) {
  const ts_gpu_tile *p = ts_gpu_tile_of(c->tiles, c->ntiles, call->kids[2]->sym);
  const char *cc = cu_tile_name(c, call->kids[2]->sym);
  for (int64_t r = 0; p && r < p->per_thread; r++)
    cu_line(c, "ts_fence_reg(%s[%lld]);", cc, (long long)r);
}

/* C (registers, wgmma layout) += A B^T (or A B, B MN-major) as
 * wgmma.mma_async m64nNk16, as the MLIR lowering does it (gen_mma.c
 * gen_wgmma, whose descriptor() says the fields): per 16-wide k step and per
 * 64-row slab of this warpgroup one instruction reading A and B from
 * swizzled shared memory through descriptors, one group committed, then
 * waited for unless `async`; the simulator emulates it (ts_sim_wgmma).
 * `first` (a C condition, or NULL): the loop's first iteration, whose first
 * k step ignores the old accumulators (scale-d 0; gen.h
 * ts_pipe_clear_folds). */
void cu_tile_wgmma(cg *c, ts_node *call, const int64_t *mnk, bool async, const char *first) {
  /* the operands visible to the async proxy: by the loop (async), by the
   * fenced barrier just before (only braces, blanks and statement line
   * marks since: TS_LINE is empty on the GPU), or below */
  bool ready = async;
  if (c->fenced_at && c->fenced_at <= c->o->len) {
    ready = true;
    const char *o = c->o->ptr;
    for (size_t i = c->fenced_at; ready && i < c->o->len; i++) {
      if (!strncmp(o + i, "TS_LINE(", 8)) {
        const char *e = strstr(o + i, ");");
        i = e ? (size_t)(e - o) + 1 : c->o->len;
        continue;
      }
      ready = o[i] == '{' || o[i] == ' ' || o[i] == '\n';
    }
  }
  /* with the warpgroups splitting N (gen.h ts_wgmma_nsplit), each runs an
   * m64n(N / ns) on its columns of B and C */
  int64_t M = mnk[0], N = mnk[1] / c->ns, K = mnk[2], groups = c->threads / 128 / c->ns;
  int64_t slabs = M / (64 * groups), half = N / 2;
  const ts_node *c0;
  const ts_symbol *sa = call->kids[0]->sym, *sb = ts_gemm_b(call, &c0),
                  *sc = call->kids[2]->sym;
  const char *a = cu_tile_name(c, sa), *b = cu_tile_name(c, sb),
             *cc = cu_tile_name(c, sc);
  /* B's columns from c0: whole panels of its rows further (gen.h ts_gemm_b) */
  const char *bcol = c0 ? cu_str(c, " + (%s) * %lldLL", cu_expr_as(c, (ts_node *)c0, CT_I64),
                                 (long long)sb->type->dims[0].c)
                        : "";
  int full = ts_wgmma_kind(call), kind = full & 3; /* gen.h */
  bool mn = full & 4, s8 = full & TS_KIND_S8; /* s8: i32 accumulators */
  int64_t kstep = kind == 3 ? 8 : kind == 2 ? 32 : 16; /* 32 bytes */
  const char *dtype, *ty, *tail;
  ts_wgmma_text(full, &dtype, &ty, &tail);
  int64_t ra, ca, rb, cb;
  int swa = cu_swizzle_of(c, sa, &ra, &ca), swb = cu_swizzle_of(c, sb, &rb, &cb);
  /* accumulate=false: the first k step ignores the old accumulators
   * (scale-d 0) rather than zeros being moved into them, which ptxas would
   * order around the wgmma with injected waits */
  bool fresh = !ts_call_named_bool(call, "accumulate", true);
  if (!ready) {
    cu_line(c, "ts_fence_proxy_async();");
    cu_line(c, "__syncthreads();");
  }
  cu_line(c, "ts_wgmma_fence();");
  /* the instruction, its accumulators "+f" */
  /* the k step's descriptors: the first step's plus a constant added in
   * the asm, so that nothing hoists one descriptor a step out of a loop
   * (as gen_mma.c gen_wgmma) */
  const char *text = cu_str(c, "setp.ne.b32 p, %%%lld, 0;\\n"
                            "wgmma.mma_async.sync.aligned.m64n%lldk%lld.%s.%s.%s {",
                            (long long)half + 2, (long long)N, (long long)kstep, dtype, ty, ty);
  for (int64_t i = 0; i < half; i++)
    text = cu_str(c, "%s%s%%%lld", text, i ? ", " : "", (long long)i);
  text = cu_str(c, "%s}, da, db, p%s;\\n}\\n", text, tail);
  /* where the first k step's descriptors start (gen.h ts_wgmma_start); a
   * slab's rows start whole 8-row atoms further into A (SBO apart) */
  int64_t lboa, lbo;
  int64_t ua0 = ts_wgmma_start(sa, swa, 0, false, &lboa), ub0 = ts_wgmma_start(sb, swb, 0, mn, &lbo);
  int eba = ts_dtype_bits(sa->type->dtype) / 8, ebb = ts_dtype_bits(sb->type->dtype) / 8;
  int id = c->tmp++;
  cu_line(c, "const unsigned long long da%d_ = ts_wgmma_desc(&%s[%lld], %d, %lld);", id, a,
          (long long)ua0, swa, (long long)lboa);
  const char *bn = c->ns > 1 ? cu_str(c, " + (long long)((threadIdx.x >> 7) %% %lld) * %lldLL",
                                      (long long)c->ns,
                                      (long long)ts_wgmma_nstart(sb, swb, N, mn))
                             : "";
  cu_line(c, "const unsigned long long db%d_ = ts_wgmma_desc(&%s[%lld%s%s], %d, %lld);", id, b,
          (long long)ub0, bcol, bn, swb, (long long)lbo);
  for (int64_t kk = 0; kk < K; kk += kstep) {
    /* this step's start, in the descriptor's 16-byte units */
    long long offa = (long long)((ts_wgmma_start(sa, swa, kk, false, &lboa) - ua0) * eba / 16);
    long long offb = (long long)((ts_wgmma_start(sb, swb, kk, mn, &lbo) - ub0) * ebb / 16);
    for (int64_t s = 0; s < slabs; s++) {
      cu_line(c, "{");
      c->ind++;
      /* 8 rows of swa bytes an atom (the descriptor's SBO), in 16 B units */
      cu_line(c, "const unsigned long long da_ = da%d_ + "
              "(unsigned long long)(((%lld + (long long)(threadIdx.x / %lld)) * 8) * %lld);",
              id, (long long)(s * groups), (long long)(128 * c->ns), (long long)(8 * swa / 16));
      cu_line(c, "const unsigned long long db_ = db%d_;", id);
      /* scale-d 0 (the simulator's kind | 8) in the first step of the
       * first iteration */
      const char *scale = fresh && kk == 0   ? "0"
                          : first && kk == 0 ? cu_str(c, "((%s) ? 0 : 1)", first)
                                             : "1";
      ts_buf_puts(c->o, "#ifdef TS_CUDA_SIM\n");
      cu_line(c, "ts_sim_wgmma(da_ + %lldull, db_ + %lldull, &%s[%lld], %lld, %d | (%s ? 0 : 8));",
              offa, offb, cc, (long long)(s * half), (long long)N, full, scale);
      ts_buf_puts(c->o, "#else\n");
      const char *outs = "";
      for (int64_t i = 0; i < half; i++)
        outs = cu_str(c, "%s%s\"+%s\"(%s[%lld])", outs, i ? ", " : "", s8 ? "r" : "f", cc,
                      (long long)(s * half + i));
      cu_line(c, "asm volatile(\"{\\n.reg .pred p;\\n.reg .b64 da, db;\\nadd.s64 da, %%%lld, "
              "%lld;\\nadd.s64 db, %%%lld, %lld;\\n%s\" : %s : \"l\"(da_), \"l\"(db_), "
              "\"r\"(%s));",
              (long long)half, offa, (long long)half + 1, offb, text, outs, scale);
      ts_buf_puts(c->o, "#endif\n");
      c->ind--;
      cu_line(c, "}");
    }
  }
  cu_line(c, "ts_wgmma_commit();");
  if (!async) {
    cu_line(c, "ts_wgmma_wait<0>();");
    fence_regs(c, call);
  }
}

/* ---- pipelined loops: a ring of asynchronous copies ----------------------- */

/* A staged copy into the current buffer: cp.async chunks (16 bytes, or 8 or
 * 4: ts_pipe_chunk_bytes) along the last dim where a chunk is in bounds and
 * aligned, element copies (zeros
 * out of bounds) where not; without a chunked form, the plain tile copy. */
static void cp_async_copy(cg *c, ts_node *call) {
  cview pool[16], src, dst;
  int np = 0;
  if (!cu_view_of(c, call->kids[0], &src, pool, &np) ||
      !cu_view_of(c, call->kids[1], &dst, pool, &np))
    return;
  const ts_type *t = call->kids[1]->sym->type;
  uint32_t rank = dst.vrank;
  int64_t cols = t->dims[t->rank - 1].c;
  int bytes = ts_dtype_bits(t->dtype) / 8;
  int cb = ts_pipe_chunk_bytes(cols, bytes), chunk = cb / bytes;
  if (rank < 1 || src.vrank != rank || cb == 0 ||
      src.sub[src.rank - 1].kind != SUB_SLICE ||
      src.sub[src.rank - 1].vdim != rank - 1) {
    cu_tile_copy(c, call, true);
    return;
  }
  const char *ext[TS_MAX_RANK], *k[TS_MAX_RANK], *kf[TS_MAX_RANK], *kl[TS_MAX_RANK];
  for (uint32_t i = 0; i < rank; i++)
    ext[i] = dst.vext[i];
  ext[rank - 1] = cu_str(c, "%lldLL", (long long)(cols / chunk));
  cu_each_begin(c, ext, rank, true, true, k); /* into shared memory */
  for (uint32_t i = 0; i < rank; i++)
    kf[i] = kl[i] = k[i];
  kf[rank - 1] = cu_str(c, "(%s * %d)", k[rank - 1], chunk);
  kl[rank - 1] = cu_str(c, "(%s * %d + %d)", k[rank - 1], chunk, chunk - 1);
  const char *slin, *sok, *llin, *lok, *dlin, *dok;
  cu_view_elem(c, &src, kf, &slin, &sok);
  cu_view_elem(c, &src, kl, &llin, &lok);
  cu_view_elem(c, &dst, kf, &dlin, &dok);
  (void)llin;
  (void)dok;
  cu_line(c, "if ((%s) && (%s) && ((unsigned long long)&%s[%s] & %dULL) == 0) {", sok,
          lok, src.base, slin, cb - 1);
  c->ind++;
  cu_line(c, "ts_cp_async%d(&%s[%s], &%s[%s]);", cb, dst.base, dlin, src.base, slin);
  c->ind--;
  cu_line(c, "} else {");
  c->ind++;
  int id = c->tmp++;
  cu_line(c, "for (int e%d_ = 0; e%d_ < %d; e%d_++) {", id, id, chunk, id);
  c->ind++;
  const char *ke[TS_MAX_RANK];
  for (uint32_t i = 0; i < rank; i++)
    ke[i] = k[i];
  ke[rank - 1] = cu_str(c, "(%s * %d + e%d_)", k[rank - 1], chunk, id);
  cu_view_store(c, &dst, ke, cu_view_load(c, &src, ke), cu_compute_of(src.dt));
  c->ind--;
  cu_line(c, "}");
  c->ind--;
  cu_line(c, "}");
  cu_each_end(c);
}

bool cu_copy_async(cg *c, ts_node *call, bool dist) {
  if (!dist || c->in_ring || !c->tiles || !ts_copy_async_ok(call, c->tiles, c->ntiles))
    return false;
  cp_async_copy(c, call);
  cu_line(c, "ts_cp_async_commit();");
  cu_line(c, "ts_cp_async_wait<0>();");
  return true;
}

typedef struct staged {
  ts_node *st;        /* the copy statement */
  const char *tile;   /* its tile's pointer */
  const char *type;   /* its storage type */
  int64_t stride;     /* bytes between buffers */
  int tma;            /* its entry in c->tma, or -1 */
} staged;

/* The staged tiles' pointers at the buffer of iteration `v` (shared
 * pointers as the tiles' own: the simulator's race check and bank count see
 * their accesses). */
static void buffers(cg *c, const staged *s, int ns, int id, const char *v,
                    const char *lo, int64_t stages) {
  for (int i = 0; i < ns; i++)
    cu_line(c,
            "TS_SHARED(%s) %s = (%s *)((unsigned char *)%s_b%d + ((%s - %s) %% %lldLL) * "
            "%lldLL);",
            s[i].type, s[i].tile, s[i].type, s[i].tile, id, v, lo, (long long)stages,
            (long long)s[i].stride);
}

/* The mbarrier of iteration v's buffer (a ring with TMA copies). */
static const char *ring_bar(cg *c, int id, const char *v, const char *lo, int64_t stages) {
  return cu_str(c, "&bars%d_[(%s - %s) %% %lldLL]", id, v, lo, (long long)stages);
}

/* Iteration `v`'s copies into its buffers: the TMA ones (with the maps)
 * issued by thread 0 on the buffer's mbarrier, one box a panel; the rest,
 * and the TMA ones without the maps, by cp.async. */
static void fill(cg *c, const staged *s, int ns, int id, const char *v, const char *lo,
                 int64_t stages, bool tma) {
  cu_line(c, "{");
  c->ind++;
  buffers(c, s, ns, id, v, lo, stages);
  if (tma) {
    int64_t bytes = 0;
    for (int i = 0; i < ns; i++)
      if (s[i].tma >= 0)
        bytes += c->tma[s[i].tma].rows * c->tma[s[i].tma].cols * c->tma[s[i].tma].esize;
    const char *bar = ring_bar(c, id, v, lo, stages);
    cu_line(c, "if (ts_tma_on) {");
    c->ind++;
    cu_line(c, "if (threadIdx.x == 0) {");
    c->ind++;
    cu_line(c, "ts_mbar_expect(%s, %lldu);", bar, (long long)bytes);
    for (int i = 0; i < ns; i++) {
      if (s[i].tma < 0)
        continue;
      const ts_tma *t = &c->tma[s[i].tma];
      const ts_node *src = s[i].st->kids[0]->kids[0];
      const char *xy[2];
      for (int d = 0; d < 2; d++)
        xy[d] = src->kids[1 + d]->kids[0] ? cu_expr_as(c, src->kids[1 + d]->kids[0], CT_I64)
                                          : "0LL";
      for (int64_t p = 0; p < t->cols / t->box_cols; p++)
        cu_line(c, "ts_tma_load(%s + %lldLL, &ts_tm%d, %s + %lldLL, %s, %s);", s[i].tile,
                (long long)(p * t->rows * t->box_cols), s[i].tma, xy[1],
                (long long)(p * t->box_cols), xy[0], bar);
    }
    c->ind--;
    cu_line(c, "}");
    c->ind--;
    cu_line(c, "} else {");
    c->ind++;
    for (int i = 0; i < ns; i++)
      if (s[i].tma >= 0)
        cp_async_copy(c, s[i].st->kids[0]);
    c->ind--;
    cu_line(c, "}");
  }
  for (int i = 0; i < ns; i++)
    if (!tma || s[i].tma < 0)
      cp_async_copy(c, s[i].st->kids[0]);
  c->ind--;
  cu_line(c, "}");
}

/* Every thread waits for iteration v's TMA copies (with the maps). */
static void tma_wait(cg *c, int id, const char *v, const char *lo, int64_t stages) {
  cu_line(c, "if (ts_tma_on) ts_mbar_wait(%s, (unsigned)(((%s - %s) / %lldLL) & 1));",
          ring_bar(c, id, v, lo, stages), v, lo, (long long)stages);
}

static int tma_of(cg *c, const ts_node *call) {
  for (int i = 0; i < c->ntma; i++)
    if (c->tma[i].copy == call)
      return i;
  return -1;
}

/* Whether `st` is a gemm statement that runs as wgmma (ts_mma_gemm, under
 * cu_wgmma_call, takes gemm calls only). */
static bool wgmma_stmt(cg *c, const ts_node *st) {
  int64_t mnk[3];
  return st && st->kind == TS_NODE_EXPR_STMT && cu_wgmma_call(c, st->kids[0], mnk);
}

bool cu_ahead(cg *c, ts_node *blk, uint32_t i) {
  int64_t mnk[3];
  c->fence_next = i + 1 < blk->kid_count && wgmma_stmt(c, blk->kids[i + 1]);
  ts_node *call = c->tiles ? ts_pipe_clear_folds(c->k, blk, i, c->tiles, c->ntiles) : NULL;
  if (!call || c->nfolded == 8 || !cu_wgmma_call(c, call, mnk))
    return false;
  c->folded[c->nfolded++] = blk->kids[i];
  return true;
}

/* The clears left to this loop (cu_ahead) whose tile is not one of `acc`,
 * lowered here after all; with acc NULL, all of them. */
static void unfold(cg *c, const ts_symbol *const *acc, int na) {
  ts_node *rest[8];
  int nr;
  c->nfolded = ts_pipe_keep_folded(c->folded, c->nfolded, acc, na, rest, &nr);
  for (int i = 0; i < nr; i++)
    cu_stmt(c, rest[i]);
}

bool cu_pipelined(cg *c, ts_node *n) {
  ts_node *body = n->kids[3];
  int64_t stages = c->tiles ? ts_pipe_planned(n, c->tiles, c->ntiles) : 1;
  if (!cu_gpu_single(c) || stages < 2 || !c->tiles || !body) {
    unfold(c, NULL, 0);
    return false;
  }
  staged s[16];
  int ns = 0, na = 0;
  bool skip[256] = {0}, async[256] = {0};
  const ts_node *calls[256];
  for (uint32_t i = 0; i < body->kid_count && i < 256 && ns < 16; i++) {
    ts_node *st = body->kids[i];
    int64_t stride;
    const ts_gpu_tile *p = ts_pipe_buffers(c->k, n, st, c->tiles, c->ntiles, &stride);
    if (!p)
      continue;
    const ts_symbol *t = p->decl->sym;
    s[ns++] = (staged){st, cu_tile_name(c, t), cu_storage_c(t->type->dtype), stride,
                       tma_of(c, st->kids[0])};
    skip[i] = true;
  }
  if (!ns || body->kid_count > 256) {
    unfold(c, NULL, 0);
    return false;
  }
  const ts_symbol *accs[256];
  for (uint32_t i = 0; i < body->kid_count; i++) {
    int64_t mnk[3];
    if (ts_pipe_async_gemm(c->k, n, body->kids[i], c->tiles, c->ntiles) &&
        cu_wgmma_call(c, body->kids[i]->kids[0], mnk)) {
      accs[na] = body->kids[i]->kids[0]->kids[2]->sym;
      calls[na++] = body->kids[i]->kids[0], async[i] = true;
    }
  }
  unfold(c, accs, na);
  /* copies start `lead` iterations ahead; with wgmma left in flight, one
   * less: the buffer iteration v refills was read by wgmma v - 2 */
  int64_t lead = na ? stages - 2 : stages - 1;
  int id = c->tmp++;
  const char *v = cu_name_of(c, "v_", n->sym->name);
  const char *lo = cu_str(c, "lo%d_", id), *hi = cu_str(c, "hi%d_", id);
  cu_line(c, "{ // pipelined, %lld stages: copies run ahead with cp.async%s", (long long)stages,
          na ? ", wgmma in flight" : "");
  c->ind++;
  cu_line(c, "const long long %s = %s, %s = %s;", lo, cu_expr_as(c, n->kids[0], CT_I64), hi,
          cu_expr_as(c, n->kids[1], CT_I64));
  for (int i = 0; i < ns; i++)
    cu_line(c, "%s *const %s_b%d = %s;", s[i].type, s[i].tile, id, s[i].tile);
  /* TMA copies: one mbarrier a buffer past the plan's shared memory,
   * initialised by thread 0, visible to all after the barrier */
  bool tma = false;
  for (int i = 0; i < ns; i++)
    tma |= s[i].tma >= 0;
  if (tma) {
    cu_line(c, "unsigned long long *const bars%d_ = (unsigned long long *)(ts_smem + %lldLL);",
            id, (long long)c->bar_at);
    c->bar_at += 8 * stages;
    cu_line(c, "if (ts_tma_on && threadIdx.x == 0) {");
    c->ind++;
    cu_line(c, "for (int s%d_ = 0; s%d_ < %lld; s%d_++) ts_mbar_init(&bars%d_[s%d_]);", id, id,
            (long long)stages, id, id, id);
    cu_line(c, "ts_mbar_init_fence();");
    c->ind--;
    cu_line(c, "}");
  }
  cu_barrier(c);
  /* prologue: the first `lead` iterations' copies, a group each */
  cu_line(c, "for (long long f%d_ = 0; f%d_ < %lldLL; f%d_++) {", id, id, (long long)lead, id);
  c->ind++;
  cu_line(c, "const long long %s = %s + f%d_;", v, lo, id);
  cu_line(c, "if (%s < %s)", v, hi);
  fill(c, s, ns, id, v, lo, stages, tma);
  cu_line(c, "ts_cp_async_commit();");
  c->ind--;
  cu_line(c, "}");
  cu_line(c, "for (long long %s = %s; %s < %s; %s++) {", v, lo, v, hi, v);
  c->ind++;
  if (na) {
    /* v's copies landed and v - 2's wgmma retired (each iteration commits
     * na groups), in every thread, before the refill of v - 2's buffer */
    cu_line(c, "ts_cp_async_wait<%lld>();", (long long)(lead - 1));
    if (tma)
      tma_wait(c, id, v, lo, stages);
    cu_line(c, "ts_wgmma_wait<%d>();", na);
    cu_line(c, "ts_fence_proxy_async();");
    cu_barrier(c);
  }
  /* start iteration v + lead's copies (then, without wgmma in flight, wait
   * for v's) */
  cu_line(c, "{");
  c->ind++;
  cu_line(c, "const long long n%d_ = %s + %lldLL;", id, v, (long long)lead);
  cu_line(c, "if (n%d_ < %s) {", id, hi);
  c->ind++;
  cu_line(c, "const long long %s = n%d_;", v, id);
  fill(c, s, ns, id, v, lo, stages, tma);
  c->ind--;
  cu_line(c, "}");
  c->ind--;
  cu_line(c, "}");
  cu_line(c, "ts_cp_async_commit();");
  if (!na) {
    cu_line(c, "ts_cp_async_wait<%lld>();", (long long)lead);
    if (tma)
      tma_wait(c, id, v, lo, stages);
    cu_barrier(c);
  }
  buffers(c, s, ns, id, v, lo, stages);
  c->synced = true;
  c->in_ring++;
  for (uint32_t i = 0; i < body->kid_count && !c->failed; i++) {
    int64_t mnk[3];
    /* the next statement emitted: a wgmma gemm with its own barrier? */
    uint32_t j = i + 1;
    while (j < body->kid_count && skip[j])
      j++;
    c->fence_next = j < body->kid_count && !async[j] && wgmma_stmt(c, body->kids[j]);
    if (async[i] && cu_wgmma_call(c, body->kids[i]->kids[0], mnk)) {
      /* its clear folded into the first k step, or not */
      bool zero = ts_pipe_folded(c->folded, c->nfolded, body->kids[i]->kids[0]->kids[2]->sym);
      cu_line(c, "{");
      c->ind++;
      cu_tile_wgmma(c, body->kids[i]->kids[0], mnk, true,
                    zero ? cu_str(c, "%s == %s", v, lo) : NULL);
      c->ind--;
      cu_line(c, "}");
    } else if (!skip[i]) {
      cu_stmt(c, body->kids[i]);
    }
  }
  c->in_ring--;
  c->fence_next = false;
  if (!na)
    cu_barrier(c); /* before the next iteration refills the oldest buffer */
  c->ind--;
  cu_line(c, "}");
  cu_line(c, "ts_cp_async_wait<0>();");
  if (na) {
    cu_line(c, "ts_wgmma_wait<0>();");
    for (int i = 0; i < na; i++)
      fence_regs(c, calls[i]);
  }
  if (c->nfolded) { /* no iteration ran: the clears after all */
    cu_line(c, "if (%s <= %s) {", hi, lo);
    c->ind++;
    unfold(c, NULL, 0);
    c->ind--;
    cu_line(c, "}");
  }
  c->ind--;
  cu_line(c, "}");
  c->synced = !na; /* with wgmma in flight, no barrier ends an iteration */
  return true;
}
