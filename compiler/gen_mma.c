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

static MlirValue i64c(gen *g, int64_t v) { return gen_i64(g, v); }

static MlirValue op2(gen *g, const char *name, MlirValue x, MlirValue y) {
  return mb_bin(&g->b, name, x, y);
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
  gen_loop_begin(g, &L[0], i64c(g, 0), i64c(g, slots * 4));
  L[0].unroll = true;
  MlirValue r = L[0].iv;
  MlirValue warp = op2(g, "arith.divsi", g->tid, i64c(g, 32));
  MlirValue lane = op2(g, "arith.remsi", g->tid, i64c(g, 32));
  MlirValue p = op2(g, "arith.addi",
                    op2(g, "arith.muli", op2(g, "arith.divsi", r, i64c(g, 4)),
                        i64c(g, warps)),
                    warp);
  L[1].exit = gen_if_begin(g, mb_cmpi(b, CMPI_SLT, p, i64c(g, pieces)));
  MlirValue nb = i64c(g, n / 8);
  MlirValue half = op2(g, "arith.remsi", op2(g, "arith.divsi", r, i64c(g, 2)),
                       i64c(g, 2));
  k[0] = op2(g, "arith.addi",
             op2(g, "arith.addi",
                 op2(g, "arith.muli", op2(g, "arith.divsi", p, nb), i64c(g, 16)),
                 op2(g, "arith.divsi", lane, i64c(g, 4))),
             op2(g, "arith.muli", half, i64c(g, 8)));
  k[1] = op2(g, "arith.addi",
             op2(g, "arith.addi",
                 op2(g, "arith.muli", op2(g, "arith.remsi", p, nb), i64c(g, 8)),
                 op2(g, "arith.muli", op2(g, "arith.remsi", lane, i64c(g, 4)),
                     i64c(g, 2))),
             op2(g, "arith.remsi", r, i64c(g, 2)));
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
  for (int i = 0; i < g->nplan; i++)
    if (g->plan[i].decl->sym == s)
      return g->plan[i].home == TS_TILE_SMEM;
  return false;
}

/* Two consecutive 16-bit elements of a tile (lin and lin + step) in a word,
 * the first in the low half. */
static MlirValue word(gen *g, MlirValue mem, MlirValue lin, int64_t step) {
  mb *b = &g->b;
  MlirValue lo = mb_cast(b, "arith.extui", mb_load(b, mem, lin), b->i32);
  MlirValue hi = mb_cast(b, "arith.extui",
                         mb_load(b, mem, op2(g, "arith.addi", lin, i64c(g, step))),
                         b->i32);
  return op2(g, "arith.ori", lo, op2(g, "arith.shli", hi, mb_const_int(b, b->i32, 16)));
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
  MlirValue p = op2(g, "arith.addi", op2(g, "arith.muli", s, i64c(g, warps)), warp);
  MlirBlock join = gen_if_begin(g, mb_cmpi(b, CMPI_SLT, p, i64c(g, pieces)));
  MlirValue m0 = op2(g, "arith.addi",
                     op2(g, "arith.muli", op2(g, "arith.divsi", p, i64c(g, N / 8)),
                         i64c(g, 16)),
                     gq);
  MlirValue n0 = op2(g, "arith.muli", op2(g, "arith.remsi", p, i64c(g, N / 8)), i64c(g, 8));
  for (int r = 0; r < 4; r++) {
    if (regs) {
      cl[r] = op2(g, "arith.addi", op2(g, "arith.muli", s, i64c(g, 4)), i64c(g, r));
    } else {
      MlirValue i = op2(g, "arith.addi", m0, i64c(g, (r >> 1) * 8));
      MlirValue j = op2(g, "arith.addi", op2(g, "arith.addi", n0, q), i64c(g, r & 1));
      cl[r] = op2(g, "arith.addi", op2(g, "arith.muli", i, i64c(g, N)), j);
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
  bool ta = gen_named_bool(call_node, "trans_a", false);
  bool tb = gen_named_bool(call_node, "trans_b", false);
  bool acc = gen_named_bool(call_node, "accumulate", true);
  bool f16 = sa->type->dtype == TS_DTYPE_F16;
  MlirValue am = {sa->user}, bm = {sb->user}, cm = {sc->user};
  int64_t warps = g->threads / 32, pieces = (M / 16) * (N / 8);
  int64_t slots = (pieces + warps - 1) / warps;
  MlirValue lane = op2(g, "arith.remsi", g->tid, i64c(g, 32));
  MlirValue warp = op2(g, "arith.divsi", g->tid, i64c(g, 32));
  MlirValue gq = op2(g, "arith.divsi", lane, i64c(g, 4));
  MlirValue q = op2(g, "arith.muli", op2(g, "arith.remsi", lane, i64c(g, 4)), i64c(g, 2));
  /* K outermost, then the pieces: the fragments of one step are live only
   * for their instruction, and the accumulators are C's own registers */
  loop ls, lk;
  if (!acc) {
    gen_loop_begin(g, &ls, i64c(g, 0), i64c(g, slots));
    ls.unroll = true;
    MlirValue cl[4];
    MlirBlock join = piece(g, ls.iv, warp, gq, q, warps, pieces, N, regs, cl, NULL, NULL);
    for (int r = 0; r < 4; r++)
      mb_store(b, mb_const_f32(b, 0.0), cm, cl[r]);
    gen_if_end(g, join);
    gen_loop_end(g, &ls);
  }
  gen_loop_begin_step(g, &lk, i64c(g, 0), i64c(g, K), i64c(g, 16));
  lk.unroll = K / 16 <= 8;
  gen_loop_begin(g, &ls, i64c(g, 0), i64c(g, slots));
  ls.unroll = true;
  MlirValue cl[4], m0, n0;
  MlirBlock join = piece(g, ls.iv, warp, gq, q, warps, pieces, N, regs, cl, &m0, &n0);
  MlirValue k0 = op2(g, "arith.addi", lk.iv, q);
  MlirValue k8 = op2(g, "arith.addi", k0, i64c(g, 8));
  MlirValue m8 = op2(g, "arith.addi", m0, i64c(g, 8));
  MlirValue col = op2(g, "arith.addi", n0, gq);
  /* A (i, k) at i K + k, or k M + i transposed; B (k, j) at k N + j, or
   * j K + k transposed; the pair (k, k + 1) in one word */
  MlirValue ai[4] = {m0, m8, m0, m8}, ak[4] = {k0, k0, k8, k8};
  MlirValue aw[4], bw[2];
  /* ldmatrix where the tile is in shared memory with rows of whole 16-byte
   * units along K (A not transposed, B transposed): lane l gives the row
   * of matrix l / 8 */
  MlirValue lane16 = op2(g, "arith.remsi", lane, i64c(g, 16));
  MlirValue half = op2(g, "arith.remsi", op2(g, "arith.divsi", lane, i64c(g, 16)), i64c(g, 2));
  if (!ta && K % 8 == 0 && in_smem(g, sa)) {
    MlirValue row = op2(g, "arith.addi", op2(g, "arith.subi", m0, gq), lane16);
    MlirValue lin = op2(g, "arith.addi", op2(g, "arith.muli", row, i64c(g, K)),
                        op2(g, "arith.addi", lk.iv, op2(g, "arith.muli", half, i64c(g, 8))));
    ldmatrix(g, am, lin, 4, aw);
  } else {
    for (int r = 0; r < 4; r++) {
      MlirValue lin = ta ? op2(g, "arith.addi", op2(g, "arith.muli", ak[r], i64c(g, M)), ai[r])
                         : op2(g, "arith.addi", op2(g, "arith.muli", ai[r], i64c(g, K)), ak[r]);
      aw[r] = word(g, am, lin, ta ? M : 1);
    }
  }
  if (tb && K % 8 == 0 && in_smem(g, sb)) {
    MlirValue row = op2(g, "arith.addi", n0, op2(g, "arith.remsi", lane, i64c(g, 8)));
    MlirValue kh = op2(g, "arith.remsi", op2(g, "arith.divsi", lane, i64c(g, 8)), i64c(g, 2));
    MlirValue lin = op2(g, "arith.addi", op2(g, "arith.muli", row, i64c(g, K)),
                        op2(g, "arith.addi", lk.iv, op2(g, "arith.muli", kh, i64c(g, 8))));
    ldmatrix(g, bm, lin, 2, bw);
  } else {
    MlirValue bk[2] = {k0, k8};
    for (int r = 0; r < 2; r++) {
      MlirValue lin = tb ? op2(g, "arith.addi", op2(g, "arith.muli", col, i64c(g, K)), bk[r])
                         : op2(g, "arith.addi", op2(g, "arith.muli", bk[r], i64c(g, N)), col);
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
