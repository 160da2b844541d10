/* gen_mma.c - tensor cores in the MLIR lowering of the GPU kernel:
 * mma.sync m16n8k16 (bf16 or f16 into f32) for the gemms gpu_mma.c picks,
 * register accumulators in the instruction's layout, and the loops over
 * such tiles (docs/abi.md "Tensor cores"). On the GPU the instruction is
 * inline PTX; in the simulator's CPU form a call to ts_gpusim_mma
 * (runtime/gpusim.c). The CUDA C lowering does the same in cuda.c. */
#include "compiler/gen_internal.h"

bool gen_gpu_mma_layout(gen *g, const ts_symbol *s) {
  for (int i = 0; i < g->nregs; i++)
    if (g->regs[i] == s)
      return g->mma[i];
  return false;
}

/* The [m, n] tile in the mma layout that the statement under `x` touches. */
static bool mma_shape(gen *g, const ts_node *x, int64_t *m, int64_t *n) {
  if (!x)
    return false;
  if (x->kind == TS_NODE_NAME && x->sym && x->sym->kind == TS_SYM_TILE) {
    if (!gen_gpu_mma_layout(g, x->sym))
      return false;
    *m = x->sym->type->dims[0].c;
    *n = x->sym->type->dims[1].c;
    return true;
  }
  for (uint32_t i = 0; i < x->kid_count; i++)
    if (mma_shape(g, x->kids[i], m, n))
      return true;
  return false;
}

void gen_elem_begin(gen *g, loop *L, const ts_node *stmt, const MlirValue *ext,
                    uint32_t rank, MlirValue *k) {
  int64_t m, n;
  if (!g->gpu || rank != 2 || !mma_shape(g, stmt, &m, &n)) {
    gen_each_begin(g, L, ext, rank, k);
    return;
  }
  /* register r: piece p = (r / 4) * warps + warp; row (p / (n / 8)) * 16 +
   * lane / 4 + ((r / 2) % 2) * 8; column (p % (n / 8)) * 8 + (lane % 4) * 2
   * + r % 2 */
  mb *b = &g->b;
  int64_t warps = g->threads / 32, pieces = (m / 16) * (n / 8);
  int64_t slots = (pieces + warps - 1) / warps;
  gen_loop_begin(g, &L[0], gen_i64(g, 0), gen_i64(g, slots * 4));
  L[0].unroll = true;
  MlirValue r = L[0].iv;
  MlirValue warp = gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 32));
  MlirValue lane = gen_bin(g, "arith.remsi", g->tid, gen_i64(g, 32));
  MlirValue p = gen_bin(g, "arith.addi",
                    gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", r, gen_i64(g, 4)),
                        gen_i64(g, warps)),
                    warp);
  L[1].exit = gen_if_begin(g, mb_cmpi(b, CMPI_SLT, p, gen_i64(g, pieces)));
  MlirValue nb = gen_i64(g, n / 8);
  MlirValue half = gen_bin(g, "arith.remsi", gen_bin(g, "arith.divsi", r, gen_i64(g, 2)),
                       gen_i64(g, 2));
  k[0] = gen_bin(g, "arith.addi",
             gen_bin(g, "arith.addi",
                 gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", p, nb), gen_i64(g, 16)),
                 gen_bin(g, "arith.divsi", lane, gen_i64(g, 4))),
             gen_bin(g, "arith.muli", half, gen_i64(g, 8)));
  k[1] = gen_bin(g, "arith.addi",
             gen_bin(g, "arith.addi",
                 gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", p, nb), gen_i64(g, 8)),
                 gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", lane, gen_i64(g, 4)),
                     gen_i64(g, 2))),
             gen_bin(g, "arith.remsi", r, gen_i64(g, 2)));
  g->mma_reg = r;
}

void gen_elem_end(gen *g, loop *L, uint32_t rank) {
  gen_each_end(g, L, rank);
  g->mma_reg.ptr = NULL;
}

/* ---- the instruction ------------------------------------------------------ */

/* d[0..3] += A B for this lane's words a[4], bw[2]. */
static void mma(gen *g, const MlirValue *a, const MlirValue *bw, MlirValue *d,
                bool f16) {
  mb *b = &g->b;
  if (g->emu) {
    MlirValue args[13] = {g->emu_ctx, g->tid, a[0], a[1], a[2], a[3], bw[0],
                          bw[1], d[0], d[1], d[2], d[3],
                          mb_const_int(b, b->i32, f16)};
    gen_call(g, "ts_gpusim_mma", 13, args, 0, NULL);
    for (int r = 0; r < 4; r++) {
      MlirValue q[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, r)};
      d[r] = mlirOperationGetResult(gen_call(g, "ts_gpusim_mma_d", 3, q, 1, &b->f32), 0);
    }
    return;
  }
  MlirType st = mlirTypeParseGet(b->ctx, mb_str("!llvm.struct<(f32, f32, f32, f32)>"));
  const char *text =
      f16 ? "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {$0, $1, $2, $3}, "
            "{$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};"
          : "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {$0, $1, $2, $3}, "
            "{$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};";
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "asm_string", mlirStringAttrGet(b->ctx, mb_str(text))),
      mb_attr(b, "constraints",
              mlirStringAttrGet(b->ctx, mb_str("=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3"))),
      mb_attr(b, "has_side_effects", mlirUnitAttrGet(b->ctx))};
  MlirValue ops[10] = {a[0], a[1], a[2], a[3], bw[0], bw[1], d[0], d[1], d[2], d[3]};
  MlirValue s = mlirOperationGetResult(
      mb_op(b, "llvm.inline_asm", 10, ops, 1, &st, 3, attrs), 0);
  for (int r = 0; r < 4; r++) {
    int64_t pos = r;
    MlirNamedAttribute pa =
        mb_attr(b, "position", mlirDenseI64ArrayGet(b->ctx, 1, &pos));
    d[r] = mlirOperationGetResult(mb_op(b, "llvm.extractvalue", 1, &s, 1, &b->f32, 1, &pa),
                                  0);
  }
}

/* ldmatrix .x`n` (b16) of the shared tile `mem` with this lane's row at
 * element `lin`: the n words of this lane's fragment into w. */
static void ldmatrix(gen *g, MlirValue mem, MlirValue lin, int n, MlirValue *w) {
  mb *b = &g->b;
  MlirValue addr = gen_gpu_address(g, mem, lin, 2);
  if (g->emu) {
    MlirValue args[4] = {g->emu_ctx, g->tid, addr, mb_const_int(b, b->i32, n)};
    gen_call(g, "ts_gpusim_ldmatrix", 4, args, 0, NULL);
    for (int r = 0; r < n; r++) {
      MlirValue q[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, r)};
      w[r] = mlirOperationGetResult(gen_call(g, "ts_gpusim_ldmatrix_r", 3, q, 1, &b->i32), 0);
    }
    return;
  }
  MlirType st = mlirTypeParseGet(
      b->ctx, mb_str(n == 4 ? "!llvm.struct<(i32, i32, i32, i32)>" : "!llvm.struct<(i32, i32)>"));
  const char *text = n == 4 ? "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {$0, $1, $2, $3}, [$4];"
                            : "ldmatrix.sync.aligned.m8n8.x2.shared.b16 {$0, $1}, [$2];";
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "asm_string", mlirStringAttrGet(b->ctx, mb_str(text))),
      mb_attr(b, "constraints",
              mlirStringAttrGet(b->ctx, mb_str(n == 4 ? "=r,=r,=r,=r,l" : "=r,=r,l"))),
      mb_attr(b, "has_side_effects", mlirUnitAttrGet(b->ctx))};
  MlirValue s = mlirOperationGetResult(mb_op(b, "llvm.inline_asm", 1, &addr, 1, &st, 3, attrs), 0);
  for (int r = 0; r < n; r++) {
    int64_t pos = r;
    MlirNamedAttribute pa = mb_attr(b, "position", mlirDenseI64ArrayGet(b->ctx, 1, &pos));
    w[r] = mlirOperationGetResult(mb_op(b, "llvm.extractvalue", 1, &s, 1, &b->i32, 1, &pa), 0);
  }
}

static bool in_smem(gen *g, const ts_symbol *s) {
  const ts_gpu_tile *t = ts_gpu_tile_of(g->plan, g->nplan, s);
  return t && t->home == TS_TILE_SMEM;
}

/* Two consecutive 16-bit elements of a tile (lin and lin + step) in a word,
 * the first in the low half. */
static MlirValue word(gen *g, MlirValue mem, MlirValue lin, int64_t step) {
  mb *b = &g->b;
  MlirValue lo = mb_cast(b, "arith.extui", mb_load(b, mem, lin), b->i32);
  MlirValue hi = mb_cast(b, "arith.extui",
                         mb_load(b, mem, gen_bin(g, "arith.addi", lin, gen_i64(g, step))),
                         b->i32);
  return gen_bin(g, "arith.ori", lo, gen_bin(g, "arith.shli", hi, mb_const_int(b, b->i32, 16)));
}

/* Piece s * warps + warp of an [.., N] accumulator, when it exists (the
 * caller closes the returned if): the indices of its four elements in C's
 * memory (registers 4 s .. 4 s + 3, or rows m0, m0 + 8 and columns n0 + q,
 * + 1 of a tile in memory), and the piece's first row + lane / 4 and
 * first column. */
static MlirBlock piece(gen *g, MlirValue s, MlirValue warp, MlirValue gq, MlirValue q,
                       int64_t warps, int64_t pieces, int64_t N, bool regs,
                       MlirValue *cl, MlirValue *m0_out, MlirValue *n0_out) {
  mb *b = &g->b;
  MlirValue p = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", s, gen_i64(g, warps)), warp);
  MlirBlock join = gen_if_begin(g, mb_cmpi(b, CMPI_SLT, p, gen_i64(g, pieces)));
  MlirValue m0 = gen_bin(g, "arith.addi",
                     gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", p, gen_i64(g, N / 8)),
                         gen_i64(g, 16)),
                     gq);
  MlirValue n0 = gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", p, gen_i64(g, N / 8)), gen_i64(g, 8));
  for (int r = 0; r < 4; r++) {
    if (regs) {
      cl[r] = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", s, gen_i64(g, 4)), gen_i64(g, r));
    } else {
      MlirValue i = gen_bin(g, "arith.addi", m0, gen_i64(g, (r >> 1) * 8));
      MlirValue j = gen_bin(g, "arith.addi", gen_bin(g, "arith.addi", n0, q), gen_i64(g, r & 1));
      cl[r] = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", i, gen_i64(g, N)), j);
    }
  }
  if (m0_out)
    *m0_out = m0;
  if (n0_out)
    *n0_out = n0;
  return join;
}

bool gen_gpu_mma(gen *g, ts_node *call_node) {
  int64_t mnk[3];
  if (!g->gpu || !ts_mma_gemm(g->kernel, g->plan, g->nplan, call_node, mnk))
    return false;
  const ts_symbol *sa = call_node->kids[0]->sym, *sb = call_node->kids[1]->sym,
                  *sc = call_node->kids[2]->sym;
  bool regs = false;
  for (int i = 0; i < g->nregs; i++)
    if (g->regs[i] == sc) {
      if (!g->mma[i])
        return false; /* an accumulator in the cyclic layout */
      regs = true;
    }
  mb *b = &g->b;
  int64_t M = mnk[0], N = mnk[1], K = mnk[2];
  bool ta = ts_call_named_bool(call_node, "trans_a", false);
  bool tb = ts_call_named_bool(call_node, "trans_b", false);
  bool acc = ts_call_named_bool(call_node, "accumulate", true);
  bool f16 = sa->type->dtype == TS_DTYPE_F16;
  MlirValue am = {sa->user}, bm = {sb->user}, cm = {sc->user};
  int64_t warps = g->threads / 32, pieces = (M / 16) * (N / 8);
  int64_t slots = (pieces + warps - 1) / warps;
  MlirValue lane = gen_bin(g, "arith.remsi", g->tid, gen_i64(g, 32));
  MlirValue warp = gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 32));
  MlirValue gq = gen_bin(g, "arith.divsi", lane, gen_i64(g, 4));
  MlirValue q = gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", lane, gen_i64(g, 4)), gen_i64(g, 2));
  /* K outermost, then the pieces: the fragments of one step are live only
   * for their instruction, and the accumulators are C's own registers */
  loop ls, lk;
  if (!acc) {
    gen_loop_begin(g, &ls, gen_i64(g, 0), gen_i64(g, slots));
    ls.unroll = true;
    MlirValue cl[4];
    MlirBlock join = piece(g, ls.iv, warp, gq, q, warps, pieces, N, regs, cl, NULL, NULL);
    for (int r = 0; r < 4; r++)
      mb_store(b, mb_const_f32(b, 0.0), cm, cl[r]);
    gen_if_end(g, join);
    gen_loop_end(g, &ls);
  }
  gen_loop_begin_step(g, &lk, gen_i64(g, 0), gen_i64(g, K), gen_i64(g, 16));
  lk.unroll = K / 16 <= 8;
  gen_loop_begin(g, &ls, gen_i64(g, 0), gen_i64(g, slots));
  ls.unroll = true;
  MlirValue cl[4], m0, n0;
  MlirBlock join = piece(g, ls.iv, warp, gq, q, warps, pieces, N, regs, cl, &m0, &n0);
  MlirValue k0 = gen_bin(g, "arith.addi", lk.iv, q);
  MlirValue k8 = gen_bin(g, "arith.addi", k0, gen_i64(g, 8));
  MlirValue m8 = gen_bin(g, "arith.addi", m0, gen_i64(g, 8));
  MlirValue col = gen_bin(g, "arith.addi", n0, gq);
  /* A (i, k) at i K + k, or k M + i transposed; B (k, j) at k N + j, or
   * j K + k transposed; the pair (k, k + 1) in one word */
  MlirValue ai[4] = {m0, m8, m0, m8}, ak[4] = {k0, k0, k8, k8};
  MlirValue aw[4], bw[2];
  /* ldmatrix where the tile is in shared memory with rows of whole 16-byte
   * units along K (A not transposed, B transposed): lane l gives the row
   * of matrix l / 8 */
  MlirValue lane16 = gen_bin(g, "arith.remsi", lane, gen_i64(g, 16));
  MlirValue half = gen_bin(g, "arith.remsi", gen_bin(g, "arith.divsi", lane, gen_i64(g, 16)), gen_i64(g, 2));
  if (!ta && K % 8 == 0 && in_smem(g, sa)) {
    MlirValue row = gen_bin(g, "arith.addi", gen_bin(g, "arith.subi", m0, gq), lane16);
    MlirValue lin = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", row, gen_i64(g, K)),
                        gen_bin(g, "arith.addi", lk.iv, gen_bin(g, "arith.muli", half, gen_i64(g, 8))));
    ldmatrix(g, am, lin, 4, aw);
  } else {
    for (int r = 0; r < 4; r++) {
      MlirValue lin = ta ? gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", ak[r], gen_i64(g, M)), ai[r])
                         : gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", ai[r], gen_i64(g, K)), ak[r]);
      aw[r] = word(g, am, lin, ta ? M : 1);
    }
  }
  if (tb && K % 8 == 0 && in_smem(g, sb)) {
    MlirValue row = gen_bin(g, "arith.addi", n0, gen_bin(g, "arith.remsi", lane, gen_i64(g, 8)));
    MlirValue kh = gen_bin(g, "arith.remsi", gen_bin(g, "arith.divsi", lane, gen_i64(g, 8)), gen_i64(g, 2));
    MlirValue lin = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", row, gen_i64(g, K)),
                        gen_bin(g, "arith.addi", lk.iv, gen_bin(g, "arith.muli", kh, gen_i64(g, 8))));
    ldmatrix(g, bm, lin, 2, bw);
  } else {
    MlirValue bk[2] = {k0, k8};
    for (int r = 0; r < 2; r++) {
      MlirValue lin = tb ? gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", col, gen_i64(g, K)), bk[r])
                         : gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", bk[r], gen_i64(g, N)), col);
      bw[r] = word(g, bm, lin, tb ? 1 : N);
    }
  }
  MlirValue d[4];
  for (int r = 0; r < 4; r++)
    d[r] = mb_load(b, cm, cl[r]);
  mma(g, aw, bw, d, f16);
  for (int r = 0; r < 4; r++)
    mb_store(b, d[r], cm, cl[r]);
  gen_if_end(g, join);
  gen_loop_end(g, &ls);
  gen_loop_end(g, &lk);
  return true;
}
