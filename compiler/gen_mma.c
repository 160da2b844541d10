/* gen_mma.c - tensor cores in the MLIR lowering of the GPU kernel:
 * mma.sync m16n8k16 (bf16 or f16 into f32; m16n8k8 for tf32, m16n8k32 for
 * s8 into s32) and, on
 * sm_90a, wgmma for the gemms gpu_mma.c picks,
 * register accumulators in the instruction's layout, and the loops over
 * such tiles (docs/abi.md "Tensor cores"). On the GPU the instruction is
 * inline PTX; in the simulator's CPU form a call to ts_gpusim_mma
 * (runtime/gpusim.c). The CUDA C lowering does the same in cuda.c. */
#include "compiler/gen_internal.h"

static int layout_of(gen *g, const ts_symbol *s) {
  for (int i = 0; i < g->nregs; i++)
    if (g->regs[i] == s)
      return g->mma[i];
  return TS_ACC_CYCLIC;
}

void gen_gpu_view_layout(gen *g, const ts_symbol *s, view *v) {
  int l = v->regs ? layout_of(g, s) : TS_ACC_CYCLIC;
  v->mma = l == TS_ACC_MMA || l == TS_ACC_WGMMA;
  v->rows = l == TS_ACC_ROWS;
  if (g->gpu && s->kind == TS_SYM_TILE) {
    v->swz = gen_swizzle_of(g, s, &v->swz_r, &v->swz_c);
    v->pad = gen_pad_of(g, s);
  }
}

int gen_pad_of(gen *g, const ts_symbol *s) {
  const ts_gpu_tile *t = ts_gpu_tile_of(g->plan, g->nplan, s);
  return t && t->home == TS_TILE_SMEM ? t->pad : 0;
}

MlirValue gen_reg_index(gen *g, const view *v, MlirValue lin) {
  MlirValue r = v->rows ? g->rows_reg : v->mma ? g->mma_reg : (MlirValue){NULL};
  if ((v->rows || v->mma) && !r.ptr) { /* gpu_mma.c admits no other use */
    gen_unsupported(g, g->kernel->node, "this use of a tile in an mma layout (a bug)");
    return gen_i64(g, 0);
  }
  return r.ptr ? r : gen_bin(g, "arith.divsi", lin, gen_i64(g, g->threads));
}

int gen_swizzle_of(gen *g, const ts_symbol *s, int64_t *r, int64_t *c) {
  const ts_gpu_tile *t = ts_gpu_tile_of(g->plan, g->nplan, s);
  if (!t || t->home != TS_TILE_SMEM || !t->swz)
    return 0;
  *r = s->type->dims[0].c;
  *c = s->type->dims[1].c;
  return t->swz;
}

MlirValue gen_swizzle(gen *g, MlirValue lin, int64_t r, int64_t c, int swz, int eb) {
  MlirValue u = lin;
  int64_t p = 128 / eb; /* a panel's columns */
  if (c * eb != swz) {
    MlirValue col = gen_bin(g, "arith.remsi", lin, gen_i64(g, c));
    u = gen_bin(g, "arith.addi",
                gen_bin(g, "arith.addi",
                        gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", col, gen_i64(g, p)),
                                gen_i64(g, r * p)),
                        gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", lin, gen_i64(g, c)),
                                gen_i64(g, p))),
                gen_bin(g, "arith.remsi", col, gen_i64(g, p)));
  }
  /* gen.h's map: the 16-byte chunk ^= bits 7.. of the byte offset */
  int lg = eb == 4 ? 2 : eb == 2 ? 1 : 0; /* log2 eb */
  int shift = 7 - lg, up = 4 - lg;
  MlirValue x = gen_bin(g, "arith.andi", gen_bin(g, "arith.shrsi", u, gen_i64(g, shift)),
                        gen_i64(g, swz / 16 - 1));
  return gen_bin(g, "arith.xori", u, gen_bin(g, "arith.shli", x, gen_i64(g, up)));
}

/* `lin` of tile `s`, swizzled when the tile is. */
static MlirValue phys(gen *g, const ts_symbol *s, MlirValue lin) {
  int64_t r, c;
  int swz = gen_swizzle_of(g, s, &r, &c);
  return swz ? gen_swizzle(g, lin, r, c, swz, ts_dtype_bits(s->type->dtype) / 8) : lin;
}

/* The [m, n] tile in an mma layout that the statement under `x` touches,
 * and that layout. */
static int mma_shape(gen *g, const ts_node *x, int64_t *m, int64_t *n) {
  if (!x)
    return TS_ACC_CYCLIC;
  if (x->kind == TS_NODE_NAME && x->sym && x->sym->kind == TS_SYM_TILE) {
    int l = layout_of(g, x->sym);
    if (l == TS_ACC_CYCLIC || l == TS_ACC_ROWS)
      return TS_ACC_CYCLIC;
    *m = x->sym->type->dims[0].c;
    *n = x->sym->type->dims[1].c;
    return l;
  }
  for (uint32_t i = 0; i < x->kid_count; i++) {
    int l = mma_shape(g, x->kids[i], m, n);
    if (l != TS_ACC_CYCLIC)
      return l;
  }
  return TS_ACC_CYCLIC;
}

void gen_warpgroups(gen *g, MlirValue *wm, MlirValue *wn) {
  MlirValue w = gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 128));
  *wm = gen_bin(g, "arith.divsi", w, gen_i64(g, g->ns));
  *wn = gen_bin(g, "arith.remsi", w, gen_i64(g, g->ns));
}

/* The wgmma layout (gen.h): register r of this thread holds row k[0],
 * column k[1]. */
static void wgmma_elem(gen *g, MlirValue r, int64_t n, MlirValue *k) {
  int64_t groups = g->threads / 128 / g->ns, half = n / g->ns / 2;
  MlirValue s = gen_bin(g, "arith.divsi", r, gen_i64(g, half));
  MlirValue i = gen_bin(g, "arith.remsi", r, gen_i64(g, half));
  MlirValue wg, wn;
  gen_warpgroups(g, &wg, &wn);
  MlirValue w = gen_bin(g, "arith.remsi", gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 32)),
                        gen_i64(g, 4));
  MlirValue lane = gen_bin(g, "arith.remsi", g->tid, gen_i64(g, 32));
  MlirValue q = gen_bin(g, "arith.remsi", i, gen_i64(g, 4));
  MlirValue slab = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", s, gen_i64(g, groups)), wg);
  k[0] = gen_bin(g, "arith.addi",
                 gen_bin(g, "arith.addi",
                         gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", slab, gen_i64(g, 64)),
                                 gen_bin(g, "arith.muli", w, gen_i64(g, 16))),
                         gen_bin(g, "arith.divsi", lane, gen_i64(g, 4))),
                 gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", q, gen_i64(g, 2)), gen_i64(g, 8)));
  k[1] = gen_bin(g, "arith.addi",
                 gen_bin(g, "arith.addi",
                         gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", i, gen_i64(g, 4)),
                                 gen_i64(g, 8)),
                         gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", lane, gen_i64(g, 4)),
                                 gen_i64(g, 2))),
                 gen_bin(g, "arith.remsi", q, gen_i64(g, 2)));
  if (g->ns > 1) /* this warpgroup's columns */
    k[1] = gen_bin(g, "arith.addi", k[1],
                   gen_bin(g, "arith.muli", wn, gen_i64(g, n / g->ns)));
}

/* The rows layout (gen.h TS_ACC_ROWS): register r of this thread holds
 * row (r / 2 G + wg) 64 + 16 q + l / 4 + 8 (r % 2), as does every lane of
 * its quad. */
static MlirValue rows_elem(gen *g, MlirValue r) {
  int64_t groups = g->threads / 128 / g->ns;
  MlirValue wg = gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 128 * g->ns));
  MlirValue w = gen_bin(g, "arith.remsi", gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 32)),
                        gen_i64(g, 4));
  MlirValue lane = gen_bin(g, "arith.remsi", g->tid, gen_i64(g, 32));
  MlirValue slab = gen_bin(g, "arith.addi",
                           gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", r, gen_i64(g, 2)),
                                   gen_i64(g, groups)),
                           wg);
  MlirValue row = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", slab, gen_i64(g, 64)),
                          gen_bin(g, "arith.muli", w, gen_i64(g, 16)));
  row = gen_bin(g, "arith.addi", row, gen_bin(g, "arith.divsi", lane, gen_i64(g, 4)));
  g->rows_lead = mb_cmpi(&g->b, CMPI_EQ, gen_bin(g, "arith.remsi", lane, gen_i64(g, 4)),
                         gen_i64(g, 0));
  if (g->ns > 1) /* every warpgroup holds the rows: the first one's lanes store */
    g->rows_lead = gen_bin(g, "arith.andi", g->rows_lead,
                           mb_cmpi(&g->b, CMPI_SLT, g->tid, gen_i64(g, 128)));
  return gen_bin(g, "arith.addi", row,
                 gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", r, gen_i64(g, 2)),
                         gen_i64(g, 8)));
}

void gen_elem_begin(gen *g, loop *L, const ts_node *stmt, const MlirValue *ext,
                    uint32_t rank, MlirValue *k) {
  int64_t m, n;
  int layout = g->gpu && rank == 2 ? mma_shape(g, stmt, &m, &n) : TS_ACC_CYCLIC;
  int64_t rows = g->gpu && rank == 1 ? ts_rows_len(stmt, g->regs, g->mma, g->nregs) : 0;
  if (rows) { /* this thread's rows: 2 registers a slab */
    gen_loop_begin(g, &L[0], gen_i64(g, 0), gen_i64(g, 4 * rows * g->ns / g->threads));
    L[0].unroll = true;
    L[1].exit = (MlirBlock){NULL};
    k[0] = rows_elem(g, L[0].iv);
    g->rows_reg = L[0].iv;
    return;
  }
  if (layout == TS_ACC_CYCLIC) {
    gen_each_begin(g, L, ext, rank, k);
    return;
  }
  if (layout == TS_ACC_WGMMA) { /* every register holds an element */
    gen_loop_begin(g, &L[0], gen_i64(g, 0), gen_i64(g, m * n / g->threads));
    L[0].unroll = true;
    wgmma_elem(g, L[0].iv, n, k);
    L[1].exit = (MlirBlock){NULL};
    g->mma_reg = L[0].iv;
    /* a vector's row beside it: 2 (r / (n / 2)) + (r % 4) / 2 (n: this
     * warpgroup's columns) */
    g->rows_reg = gen_bin(
        g, "arith.addi",
        gen_bin(g, "arith.muli", gen_bin(g, "arith.divsi", L[0].iv, gen_i64(g, n / g->ns / 2)),
                gen_i64(g, 2)),
        gen_bin(g, "arith.divsi", gen_bin(g, "arith.remsi", L[0].iv, gen_i64(g, 4)),
                gen_i64(g, 2)));
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
  g->mma_reg.ptr = g->rows_reg.ptr = g->rows_lead.ptr = NULL;
}

/* ---- the instruction ------------------------------------------------------ */

/* d[0..3] += A B for this lane's words a[4], bw[2]: m16n8k16 bf16 (kind
 * 0) or f16 (1), m16n8k8 tf32 (3), or m16n8k32 s8 into s32 (2 |
 * TS_KIND_S8; gen.h ts_wgmma_kind's numbers). */
static void mma(gen *g, const MlirValue *a, const MlirValue *bw, MlirValue *d,
                int kind) {
  mb *b = &g->b;
  bool s8 = kind & TS_KIND_S8;
  if (g->emu && s8) {
    MlirValue args[12] = {g->emu_ctx, g->tid, a[0], a[1], a[2], a[3],
                          bw[0],      bw[1],  d[0], d[1], d[2], d[3]};
    gen_call(g, "ts_gpusim_mma_s8", 12, args, 0, NULL);
    for (int r = 0; r < 4; r++) {
      MlirValue q[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, r)};
      d[r] = mlirOperationGetResult(gen_call(g, "ts_gpusim_mma_di", 3, q, 1, &b->i32), 0);
    }
    return;
  }
  if (g->emu) {
    MlirValue args[13] = {g->emu_ctx, g->tid, a[0], a[1], a[2], a[3], bw[0],
                          bw[1], d[0], d[1], d[2], d[3],
                          mb_const_int(b, b->i32, kind)};
    gen_call(g, "ts_gpusim_mma", 13, args, 0, NULL);
    for (int r = 0; r < 4; r++) {
      MlirValue q[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, r)};
      d[r] = mlirOperationGetResult(gen_call(g, "ts_gpusim_mma_d", 3, q, 1, &b->f32), 0);
    }
    return;
  }
  MlirType st = mlirTypeParseGet(
      b->ctx, mb_str(s8 ? "!llvm.struct<(i32, i32, i32, i32)>" : "!llvm.struct<(f32, f32, f32, f32)>"));
  const char *text =
      s8 ? "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {$0, $1, $2, $3}, "
           "{$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};"
      : kind == 3 ? "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {$0, $1, $2, $3}, "
                  "{$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};"
      : kind == 1 ? "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {$0, $1, $2, $3}, "
                    "{$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};"
                  : "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {$0, $1, $2, $3}, "
                    "{$4, $5, $6, $7}, {$8, $9}, {$10, $11, $12, $13};";
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "asm_string", mlirStringAttrGet(b->ctx, mb_str(text))),
      mb_attr(b, "constraints",
              mlirStringAttrGet(b->ctx, mb_str(s8 ? "=r,=r,=r,=r,r,r,r,r,r,r,0,1,2,3"
                                                  : "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3"))),
      mb_attr(b, "has_side_effects", mlirUnitAttrGet(b->ctx))};
  MlirValue ops[10] = {a[0], a[1], a[2], a[3], bw[0], bw[1], d[0], d[1], d[2], d[3]};
  MlirValue s = mlirOperationGetResult(
      mb_op(b, "llvm.inline_asm", 10, ops, 1, &st, 3, attrs), 0);
  for (int r = 0; r < 4; r++) {
    int64_t pos = r;
    MlirNamedAttribute pa =
        mb_attr(b, "position", mlirDenseI64ArrayGet(b->ctx, 1, &pos));
    d[r] = mlirOperationGetResult(
        mb_op(b, "llvm.extractvalue", 1, &s, 1, s8 ? &b->i32 : &b->f32, 1, &pa), 0);
  }
}

/* ldmatrix .x`n` (b16) of the shared tile `mem` (eb-byte elements) with
 * this lane's row at element `lin`: the n words of this lane's fragment
 * into w. */
static void ldmatrix(gen *g, MlirValue mem, MlirValue lin, int eb, int n, bool trans,
                     MlirValue *w) {
  mb *b = &g->b;
  if (g->emu) {
    MlirValue args[4] = {g->emu_ctx, g->tid, gen_gpu_address(g, mem, lin, eb), mb_const_int(b, b->i32, n | (trans ? 8 : 0))};
    gen_call(g, "ts_gpusim_ldmatrix", 4, args, 0, NULL);
    for (int r = 0; r < n; r++) {
      MlirValue q[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, r)};
      w[r] = mlirOperationGetResult(gen_call(g, "ts_gpusim_ldmatrix_r", 3, q, 1, &b->i32), 0);
    }
    return;
  }
  MlirType st = mlirTypeParseGet(
      b->ctx, mb_str(n == 4 ? "!llvm.struct<(i32, i32, i32, i32)>" : "!llvm.struct<(i32, i32)>"));
  const char *text = n == 4  ? "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {$0, $1, $2, $3}, [$4];"
                     : trans ? "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {$0, $1}, [$2];"
                             : "ldmatrix.sync.aligned.m8n8.x2.shared.b16 {$0, $1}, [$2];";
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "asm_string", mlirStringAttrGet(b->ctx, mb_str(text))),
      mb_attr(b, "constraints",
              mlirStringAttrGet(b->ctx, mb_str(n == 4 ? "=r,=r,=r,=r,r" : "=r,=r,r"))),
      mb_attr(b, "has_side_effects", mlirUnitAttrGet(b->ctx))};
  MlirValue addr = gen_gpu_shared_address(g, mem, lin, eb);
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

/* The 32 / bits consecutive elements of a tile (16-bit or 8-bit: lin,
 * lin + step, ..) in a word, the first in the low bits. */
static MlirValue word(gen *g, const ts_symbol *t, MlirValue lin, int64_t step) {
  mb *b = &g->b;
  MlirValue mem = {t->user}, w = {NULL};
  int bits = ts_dtype_bits(t->type->dtype);
  for (int e = 0; e < 32 / bits; e++) {
    MlirValue at = e ? gen_bin(g, "arith.addi", lin, gen_i64(g, e * step)) : lin;
    MlirValue x = mb_cast(b, "arith.extui", mb_load(b, mem, phys(g, t, at)), b->i32);
    if (e)
      x = gen_bin(g, "arith.shli", x, mb_const_int(b, b->i32, e * bits));
    w = e ? gen_bin(g, "arith.ori", w, x) : x;
  }
  return w;
}

/* Piece s * warps + warp of an [.., N] accumulator, when it exists (the
 * caller closes the returned if): the indices of its four elements in C's
 * memory (registers 4 s .. 4 s + 3, or rows m0, m0 + 8 and columns n0 + q,
 * + 1 of a tile in memory whose rows are ld elements apart), and the
 * piece's first row + lane / 4 and first column. */
static MlirBlock piece(gen *g, MlirValue s, MlirValue warp, MlirValue gq, MlirValue q,
                       int64_t warps, int64_t pieces, int64_t N, int64_t ld, bool regs,
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
      cl[r] = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", i, gen_i64(g, ld)), j);
    }
  }
  if (m0_out)
    *m0_out = m0;
  if (n0_out)
    *n0_out = n0;
  return join;
}

/* ---- wgmma (sm_90a) --------------------------------------------------------- */

static MlirValue asm_op(gen *g, const char *text, const char *cons, intptr_t n,
                        const MlirValue *ops, MlirType res, bool has_res) {
  mb *b = &g->b;
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "asm_string", mlirStringAttrGet(b->ctx, mb_str(text))),
      mb_attr(b, "constraints", mlirStringAttrGet(b->ctx, mb_str(cons))),
      mb_attr(b, "has_side_effects", mlirUnitAttrGet(b->ctx))};
  MlirOperation op = mb_op(b, "llvm.inline_asm", n, ops, has_res ? 1 : 0, &res, 3, attrs);
  return has_res ? mlirOperationGetResult(op, 0) : (MlirValue){NULL};
}

static void ptx(gen *g, const char *text) {
  if (!g->emu)
    asm_op(g, text, "~{memory}", 0, NULL, (MlirType){NULL}, false);
}

void gen_ptx(gen *g, const char *text) { ptx(g, text); }

/* Whether the last op of the current block is the fenced barrier (gen_barrier
 * with fence_next): nothing written to shared memory since it. */
static bool just_fenced(gen *g) {
  MlirOperation last = {NULL};
  for (MlirOperation op = mlirBlockGetFirstOperation(g->b.cur); !mlirOperationIsNull(op);
       op = mlirOperationGetNextInBlock(op))
    last = op;
  return !mlirOperationIsNull(g->fenced) && !mlirOperationIsNull(last) &&
         mlirOperationEqual(last, g->fenced);
}

/* The matrix descriptor of the swizzled tile `t` for the k step at k0,
 * K-major or MN-major (mn), where ts_wgmma_start puts it: the start address
 * (on the GPU its shared address, in the simulator its offset in the
 * block's shared memory) >> 4, the leading byte offset >> 4, the stride
 * byte offset (8 rows of swz bytes) >> 4, the swizzle mode (1: 128B, 2:
 * 64B, 3: 32B) in bits 62-63. */
static MlirValue descriptor(gen *g, const ts_symbol *t, int64_t k0, bool mn, MlirValue col0) {
  int64_t r, c, lbo;
  int swz = gen_swizzle_of(g, t, &r, &c), eb = ts_dtype_bits(t->type->dtype) / 8;
  MlirValue u = gen_i64(g, ts_wgmma_start(t, swz, k0, mn, &lbo));
  if (col0.ptr) /* B's columns from col0, whole panels of r rows (gen.h ts_gemm_b) */
    u = gen_bin(g, "arith.addi", u, gen_bin(g, "arith.muli", col0, gen_i64(g, r)));
  MlirValue addr = gen_gpu_address(g, (MlirValue){t->user}, u, eb);
  if (g->emu) /* from the 1024-aligned address at or below the block's
               * shared memory (runtime/gpusim.c) */
    addr = gen_bin(g, "arith.subi", addr,
                   gen_bin(g, "arith.andi", gen_gpu_address(g, g->smem_base, gen_i64(g, 0), 1),
                           gen_i64(g, ~(int64_t)1023)));
  int64_t mode = swz == 128 ? 1 : swz == 64 ? 2 : 3;
  int64_t fixed = (int64_t)(((uint64_t)lbo / 16 << 16) | ((uint64_t)(8 * swz / 16) << 32) |
                            ((uint64_t)mode << 62));
  MlirValue start = gen_bin(g, "arith.andi", gen_bin(g, "arith.shrui", addr, gen_i64(g, 4)),
                            gen_i64(g, 0x3fff));
  return gen_bin(g, "arith.ori", start, gen_i64(g, fixed));
}

/* wgmma.wait_group n (the simulator's form in its CPU code); with n 0,
 * the accumulators of the `nc` wgmma gemms `calls` are read only after
 * it: each passes through an empty asm ordered after the wait. */
void gen_wgmma_wait(gen *g, int64_t n, ts_node *const *calls, int nc) {
  mb *b = &g->b;
  if (g->emu) {
    MlirValue args[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, n)};
    gen_call(g, "ts_gpusim_wgmma_sync", 3, args, 0, NULL);
    return;
  }
  char text[64];
  snprintf(text, sizeof text, "wgmma.wait_group.sync.aligned %lld;", (long long)n);
  ptx(g, text);
  for (int i = 0; n == 0 && i < nc; i++) {
    const ts_gpu_tile *p = ts_gpu_tile_of(g->plan, g->nplan, calls[i]->kids[2]->sym);
    MlirValue cm = {calls[i]->kids[2]->sym->user};
    bool s8 = ts_wgmma_kind(calls[i]) & TS_KIND_S8; /* i32 accumulators */
    for (int64_t r = 0; p && r < p->per_thread; r++) {
      MlirValue x = mb_load(b, cm, gen_i64(g, r));
      mb_store(b, asm_op(g, "", s8 ? "=r,0" : "=f,0", 1, &x, s8 ? b->i32 : b->f32, true), cm,
               gen_i64(g, r));
    }
  }
}

/* C (registers, wgmma layout) += A B^T (B transposed: K-major) or A B (B
 * MN-major, imm-trans-b 1): for each 16-wide k step and each of this
 * warpgroup's 64-row slabs one wgmma.mma_async m64nNk16 reading A and B
 * from shared memory through descriptors, committed as one group. Before
 * it, the block's shared writes are made visible to the async proxy
 * (fence.proxy.async, then a barrier); after it, a wait for the group.
 * `async` (a pipelined loop's gemm, gen_pipe.c): the loop has made the
 * operands visible and retires the group itself, an iteration later;
 * `first` (i1, or null), its first iteration: then the first k step
 * ignores the accumulators' old values (scale-d 0; a cleared accumulator
 * without instructions that define it, gen.h ts_pipe_clear_folds). */
static void gen_wgmma(gen *g, ts_node *call, const int64_t *mnk, bool async,
                      MlirValue first) {
  mb *b = &g->b;
  const ts_node *c0;
  const ts_symbol *sa = call->kids[0]->sym, *sb = ts_gemm_b(call, &c0),
                  *sc = call->kids[2]->sym;
  MlirValue col0 = c0 ? gen_expr_as(g, (ts_node *)c0, b->i64) : (MlirValue){NULL};
  /* with the warpgroups splitting N (gen.h ts_wgmma_nsplit), each runs an
   * m64n(N / ns) on its columns of B and C */
  int64_t M = mnk[0], N = mnk[1] / g->ns, K = mnk[2], groups = g->threads / 128 / g->ns;
  int64_t slabs = M / (64 * groups), half = N / 2;
  int full = ts_wgmma_kind(call), kind = full & 3; /* gen.h */
  bool mn = full & 4, s8 = full & TS_KIND_S8; /* s8: i32 accumulators */
  int64_t kstep = kind == 3 ? 8 : kind == 2 ? 32 : 16; /* 32 bytes */
  const char *dtype, *ty, *tail;
  ts_wgmma_text(full, &dtype, &ty, &tail);
  MlirType ct = s8 ? b->i32 : b->f32;
  MlirValue cm = {sc->user};
  /* the operands visible to the async proxy: by the loop (async), by the
   * fenced barrier just before (gen_ahead), or here */
  bool ready = async || just_fenced(g);
  /* accumulate=false: the first k step ignores the old accumulators
   * (scale-d 0) rather than zeros being moved into them, which ptxas would
   * order around the wgmma with injected waits */
  bool fresh = !ts_call_named_bool(call, "accumulate", true);
  if (!ready) {
    ptx(g, "fence.proxy.async.shared::cta;");
    gen_barrier(g);
  }
  ptx(g, "wgmma.fence.sync.aligned;");
  MlirValue wg, wn;
  gen_warpgroups(g, &wg, &wn);
  /* the instruction and the struct of its accumulators */
  ts_buf text, cons, st;
  ts_buf_init(&text, ts_allocator_system());
  ts_buf_init(&cons, ts_allocator_system());
  ts_buf_init(&st, ts_allocator_system());
  /* the k step's descriptors: the first step's plus a constant added in
   * the asm (%lld below), so that nothing hoists one descriptor a step out
   * of a loop (the attention's 32 steps over the loop-invariant query held
   * 64 registers) */
  ts_buf_printf(&text, "{\n.reg .pred p;\n.reg .b64 da, db;\nadd.s64 da, $%lld, %%lld;\n"
                "add.s64 db, $%lld, %%lld;\nsetp.ne.b32 p, $%lld, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n%lldk%lld.%s.%s.%s {",
                (long long)half, (long long)half + 1, (long long)half + 2, (long long)N,
                (long long)kstep, dtype, ty, ty);
  ts_buf_puts(&st, "!llvm.struct<(");
  for (int64_t i = 0; i < half; i++) {
    ts_buf_printf(&text, "%s$%lld", i ? ", " : "", (long long)i);
    ts_buf_printf(&cons, s8 ? "=r," : "=f,");
    ts_buf_printf(&st, "%s%s", i ? ", " : "", s8 ? "i32" : "f32");
  }
  ts_buf_printf(&text, "}, da, db, p%s;\n}", tail);
  ts_buf_puts(&cons, "l,l,r");
  for (int64_t i = 0; i < half; i++)
    ts_buf_printf(&cons, ",%lld", (long long)i);
  ts_buf_puts(&st, ")>");
  MlirType sty = mlirTypeParseGet(b->ctx, mb_str(st.ptr ? st.ptr : ""));
  MlirValue *ops = calloc((size_t)(half + 3), sizeof *ops);
  /* a slab starts whole 8-row atoms into A: 8 rows of swz bytes each (the
   * descriptor's SBO), counted in the start field's 16-byte units */
  int64_t ra, ca, rb, cb, lbo;
  int swa = gen_swizzle_of(g, sa, &ra, &ca), swb = gen_swizzle_of(g, sb, &rb, &cb);
  int64_t atom16 = 8 * swa / 16;
  int64_t ua0 = ts_wgmma_start(sa, swa, 0, false, &lbo), ub0 = ts_wgmma_start(sb, swb, 0, mn, &lbo);
  int eba = ts_dtype_bits(sa->type->dtype) / 8, ebb = ts_dtype_bits(sb->type->dtype) / 8;
  MlirValue db0 = descriptor(g, sb, 0, mn, col0), da0 = descriptor(g, sa, 0, false, (MlirValue){NULL});
  if (g->ns > 1) /* this warpgroup's N columns of B: whole panels (MN-major), or rows */
    db0 = gen_bin(g, "arith.addi", db0,
                  gen_bin(g, "arith.muli", wn,
                          gen_i64(g, ts_wgmma_nstart(sb, swb, N, mn) * ebb / 16)));
  for (int64_t kk = 0; kk < K && ops; kk += kstep) {
    /* this step's start, in the descriptor's 16-byte units */
    int64_t offa = (ts_wgmma_start(sa, swa, kk, false, &lbo) - ua0) * eba / 16;
    int64_t offb = (ts_wgmma_start(sb, swb, kk, mn, &lbo) - ub0) * ebb / 16;
    ts_buf step;
    ts_buf_init(&step, ts_allocator_system());
    ts_buf_printf(&step, text.ptr ? text.ptr : "", (long long)offa, (long long)offb);
    for (int64_t s = 0; s < slabs; s++) {
      /* slab s of this warpgroup: rows (s groups + wg) 64 .. */
      MlirValue atoms = gen_bin(g, "arith.muli",
                                gen_bin(g, "arith.addi", gen_i64(g, s * groups), wg),
                                gen_i64(g, 64 / 8));
      MlirValue da = gen_bin(g, "arith.addi", da0,
                             gen_bin(g, "arith.muli", atoms, gen_i64(g, atom16))),
                db = db0;
      /* scale-d: 1, or 0 (kind | 8 in the simulator) in the first step of
       * a fresh product or of a loop's first iteration */
      MlirValue scale = mb_const_int(b, b->i32, !(fresh && kk == 0)),
                kindv = mb_const_int(b, b->i32, full | (fresh && kk == 0 ? 8 : 0));
      if (first.ptr && kk == 0 && !fresh) {
        MlirValue z[3] = {first, mb_const_int(b, b->i32, 0), scale};
        scale = mlirOperationGetResult(mb_op(b, "arith.select", 3, z, 1, &b->i32, 0, NULL), 0);
        MlirValue k8[3] = {first, mb_const_int(b, b->i32, full | 8), kindv};
        kindv = mlirOperationGetResult(mb_op(b, "arith.select", 3, k8, 1, &b->i32, 0, NULL), 0);
      }
      if (g->emu) {
        da = gen_bin(g, "arith.addi", da, gen_i64(g, offa));
        db = gen_bin(g, "arith.addi", db, gen_i64(g, offb));
        MlirValue args[7] = {g->emu_ctx, g->tid, da, db,
                             gen_gpu_address(g, cm, gen_i64(g, s * half), 4),
                             mb_const_int(b, b->i32, N), kindv};
        gen_call(g, "ts_gpusim_wgmma", 7, args, 0, NULL);
        continue;
      }
      ops[0] = da;
      ops[1] = db;
      ops[2] = scale;
      for (int64_t i = 0; i < half; i++)
        ops[3 + i] = mb_load(b, cm, gen_i64(g, s * half + i));
      MlirValue res = asm_op(g, step.ptr, cons.ptr, half + 3, ops, sty, true);
      for (int64_t i = 0; i < half; i++) {
        MlirNamedAttribute pa = mb_attr(b, "position", mlirDenseI64ArrayGet(b->ctx, 1, &i));
        mb_store(b, mlirOperationGetResult(mb_op(b, "llvm.extractvalue", 1, &res, 1, &ct, 1, &pa), 0),
                 cm, gen_i64(g, s * half + i));
      }
    }
    ts_buf_deinit(&step);
  }
  if (g->emu) {
    MlirValue args[3] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, -1)};
    gen_call(g, "ts_gpusim_wgmma_sync", 3, args, 0, NULL);
  } else {
    ptx(g, "wgmma.commit_group.sync.aligned;");
  }
  if (!async)
    gen_wgmma_wait(g, 0, &call, 1);
  free(ops);
  ts_buf_deinit(&text);
  ts_buf_deinit(&cons);
  ts_buf_deinit(&st);
}

bool gen_wgmma_call(gen *g, const ts_node *call, int64_t mnk[3]) {
  return g->gpu && g->wgmma && ts_mma_gemm(g->kernel, g->plan, g->nplan, call, mnk) &&
         ts_wgmma_gemm(g->kernel, g->plan, g->nplan, call, mnk) &&
         layout_of(g, call->kids[2]->sym) == TS_ACC_WGMMA;
}

void gen_wgmma_async(gen *g, ts_node *call, MlirValue first) {
  int64_t mnk[3];
  if (gen_wgmma_call(g, call, mnk))
    gen_wgmma(g, call, mnk, true, first);
}

bool gen_gpu_mma(gen *g, ts_node *call_node) {
  int64_t mnk[3];
  if (gen_wgmma_call(g, call_node, mnk)) {
    gen_wgmma(g, call_node, mnk, false, (MlirValue){0});
    return true;
  }
  if (!g->gpu || !ts_mma_gemm(g->kernel, g->plan, g->nplan, call_node, mnk))
    return false;
  if (call_node->kids[0]->sym->type->dtype == TS_DTYPE_FP8E4M3)
    return false; /* no mma.sync for fp8 here: the scalar gemm */
  int full = ts_wgmma_kind(call_node);
  bool s8 = full & TS_KIND_S8; /* i32 accumulators */
  MlirType ct = s8 ? g->b.i32 : g->b.f32;
  const ts_node *c0;
  const ts_symbol *sa = call_node->kids[0]->sym, *sb = ts_gemm_b(call_node, &c0),
                  *sc = call_node->kids[2]->sym;
  /* B's row length in memory and first column (gen.h ts_gemm_b) */
  int64_t bn = sb->type->dims[1].c;
  MlirValue bc0 = c0 ? gen_expr_as(g, (ts_node *)c0, g->b.i64) : gen_i64(g, 0);
  bool regs = false;
  for (int i = 0; i < g->nregs; i++)
    if (g->regs[i] == sc) {
      if (g->mma[i] != TS_ACC_MMA)
        return false; /* an accumulator in another layout */
      regs = true;
    }
  mb *b = &g->b;
  int64_t M = mnk[0], N = mnk[1], K = mnk[2];
  bool ta = ts_call_named_bool(call_node, "trans_a", false);
  bool tb = ts_call_named_bool(call_node, "trans_b", false);
  bool acc = ts_call_named_bool(call_node, "accumulate", true);
  /* tf32: m16n8k8, whose fragments are m16n8k16's 16-bit ones read as
   * 32-bit words (half the elements a 16-byte row: k steps of 8, halves 4
   * apart); s8: m16n8k32, the same words read as 4 bytes (k steps of 32,
   * halves 16 apart) */
  int kind = full & 3, eb = kind == 3 ? 4 : s8 ? 1 : 2;
  int64_t ks = 32 / eb, kh = ks / 2;
  MlirValue am = {sa->user}, bm = {sb->user}, cm = {sc->user};
  int64_t warps = g->threads / 32, pieces = (M / 16) * (N / 8);
  int64_t slots = (pieces + warps - 1) / warps;
  MlirValue lane = gen_bin(g, "arith.remsi", g->tid, gen_i64(g, 32));
  MlirValue warp = gen_bin(g, "arith.divsi", g->tid, gen_i64(g, 32));
  MlirValue gq = gen_bin(g, "arith.divsi", lane, gen_i64(g, 4));
  MlirValue q = gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", lane, gen_i64(g, 4)), gen_i64(g, 2));
  /* C in registers: K outermost, then the pieces (the fragments of one
   * step are live only for their instruction, and the accumulators are C's
   * own registers). C in memory: the pieces outermost, each one's four
   * accumulators in registers over K, so that C is read (when it
   * accumulates) and written once, not once a k step. */
  loop ls, lk;
  if (!acc && regs) {
    gen_loop_begin(g, &ls, gen_i64(g, 0), gen_i64(g, slots));
    ls.unroll = true;
    MlirValue cl[4];
    MlirBlock join = piece(g, ls.iv, warp, gq, q, warps, pieces, N, N, regs, cl, NULL, NULL);
    for (int r = 0; r < 4; r++)
      mb_store(b, s8 ? mb_const_int(b, ct, 0) : mb_const_f32(b, 0.0), cm, cl[r]);
    gen_if_end(g, join);
    gen_loop_end(g, &ls);
  }
  MlirValue dm = {0}; /* C in memory: the piece's accumulators over K */
  if (regs) {
    gen_loop_begin_step(g, &lk, gen_i64(g, 0), gen_i64(g, K), gen_i64(g, ks));
    lk.unroll = K / ks <= 8;
  } else {
    dm = mb_alloca_entry(b, ct, 4);
  }
  gen_loop_begin(g, &ls, gen_i64(g, 0), gen_i64(g, slots));
  ls.unroll = regs;
  MlirValue cl[4], m0, n0;
  int pad = regs ? 0 : gen_pad_of(g, sc); /* a padded C (gen.h ts_pad_elems) */
  MlirBlock join = piece(g, ls.iv, warp, gq, q, warps, pieces, N, N + pad, regs, cl, &m0, &n0);
  if (!regs) {
    for (int r = 0; r < 4; r++)
      mb_store(b, acc ? mb_load(b, cm, cl[r]) : s8 ? mb_const_int(b, ct, 0) : mb_const_f32(b, 0.0),
               dm, gen_i64(g, r));
    gen_loop_begin_step(g, &lk, gen_i64(g, 0), gen_i64(g, K), gen_i64(g, ks));
    lk.unroll = K / ks <= 8;
  }
  /* this lane's first k of a word: 2 (l % 4) 16-bit elements, 4 (l % 4)
   * bytes */
  MlirValue k0 = gen_bin(g, "arith.addi", lk.iv,
                         s8 ? gen_bin(g, "arith.muli", q, gen_i64(g, 2)) : q);
  MlirValue k8 = gen_bin(g, "arith.addi", k0, gen_i64(g, kh));
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
                        gen_bin(g, "arith.addi", lk.iv, gen_bin(g, "arith.muli", half, gen_i64(g, kh))));
    ldmatrix(g, am, phys(g, sa, lin), eb, 4, false, aw);
  } else {
    for (int r = 0; r < 4; r++) {
      MlirValue lin = ta ? gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", ak[r], gen_i64(g, M)), ai[r])
                         : gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", ai[r], gen_i64(g, K)), ak[r]);
      aw[r] = word(g, sa, lin, ta ? M : 1);
    }
  }
  if (tb && K % 8 == 0 && in_smem(g, sb)) {
    MlirValue row = gen_bin(g, "arith.addi", n0, gen_bin(g, "arith.remsi", lane, gen_i64(g, 8)));
    MlirValue kb = gen_bin(g, "arith.remsi", gen_bin(g, "arith.divsi", lane, gen_i64(g, 8)), gen_i64(g, 2));
    MlirValue lin = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", row, gen_i64(g, K)),
                        gen_bin(g, "arith.addi", lk.iv, gen_bin(g, "arith.muli", kb, gen_i64(g, kh))));
    ldmatrix(g, bm, phys(g, sb, lin), eb, 2, false, bw);
  } else if (!tb && bn % 8 == 0 && in_smem(g, sb)) {
    /* B not transposed (K down its rows): ldmatrix .trans of the rows k ..
     * k + 15 at the piece's 8 columns, lane l giving row k + l % 16 */
    MlirValue row = gen_bin(g, "arith.addi", lk.iv, lane16);
    MlirValue lin = gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", row, gen_i64(g, bn)),
                            gen_bin(g, "arith.addi", n0, bc0));
    ldmatrix(g, bm, phys(g, sb, lin), eb, 2, true, bw);
  } else {
    MlirValue bk[2] = {k0, k8};
    for (int r = 0; r < 2; r++) {
      MlirValue lin = tb ? gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", col, gen_i64(g, K)), bk[r])
                         : gen_bin(g, "arith.addi", gen_bin(g, "arith.muli", bk[r], gen_i64(g, bn)),
                                   gen_bin(g, "arith.addi", col, bc0));
      bw[r] = word(g, sb, lin, tb ? 1 : bn);
    }
  }
  MlirValue d[4], dmem = regs ? cm : dm;
  for (int r = 0; r < 4; r++)
    d[r] = mb_load(b, dmem, regs ? cl[r] : gen_i64(g, r));
  mma(g, aw, bw, d, full & (3 | TS_KIND_S8));
  for (int r = 0; r < 4; r++)
    mb_store(b, d[r], dmem, regs ? cl[r] : gen_i64(g, r));
  if (!regs) {
    gen_loop_end(g, &lk);
    for (int r = 0; r < 4; r++)
      mb_store(b, mb_load(b, dm, gen_i64(g, r)), cm, cl[r]);
  }
  gen_if_end(g, join);
  gen_loop_end(g, &ls);
  if (regs)
    gen_loop_end(g, &lk);
  return true;
}
