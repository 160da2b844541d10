/* gen_pipe.c - `pipelined` loops in the MLIR lowering of the GPU kernel: the
 * copies gpu_pipe.c finds run ahead as a ring of cp.async copies (inline
 * PTX), one shared buffer per stage, as cuda_tc.c does for the CUDA C
 * lowering (docs/abi.md "Pipelined loops"), and the wgmma of the gemms
 * ts_pipe_async_gemm allows stays in flight into the next iteration. In
 * the simulator's CPU form each chunk is copied at once
 * (ts_gpusim_cp), which checks the chunks and the ring's indexing, and a
 * wgmma still reading a buffer being refilled is an error
 * (runtime/gpusim.c). */
#include "compiler/gen_internal.h"

typedef struct staged {
  ts_node *call;   /* the copy */
  ts_symbol *tile; /* its destination */
  const void *home; /* the tile's memref (buffer 0) */
  int64_t off;     /* its byte offset in shared memory */
  int64_t stride;  /* bytes between buffers */
  int64_t elems;
  int tma;         /* its entry in g->tma, or -1 */
} staged;

static void inline_asm(gen *g, const char *text, const char *cons, intptr_t n,
                       const MlirValue *ops) {
  mb *b = &g->b;
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "asm_string", mlirStringAttrGet(b->ctx, mb_str(text))),
      mb_attr(b, "constraints", mlirStringAttrGet(b->ctx, mb_str(cons))),
      mb_attr(b, "has_side_effects", mlirUnitAttrGet(b->ctx))};
  mb_op(b, "llvm.inline_asm", n, ops, 0, NULL, 3, attrs);
}

/* The tiles' memrefs at the buffer of iteration `v`. */
static void point(gen *g, staged *s, int ns, MlirValue v, MlirValue lo, int64_t stages) {
  mb *b = &g->b;
  MlirValue buf = gen_bin(g, "arith.remsi", gen_bin(g, "arith.subi", v, lo), gen_i64(g, stages));
  for (int i = 0; i < ns; i++) {
    MlirValue at = gen_bin(g, "arith.addi", gen_bin(g, "arith.addi", g->smem_pad, gen_i64(g, s[i].off)),
                       gen_bin(g, "arith.muli", buf, gen_i64(g, s[i].stride)));
    MlirAttribute sp =
        g->emu ? mlirAttributeGetNull()
               : mlirAttributeParseGet(b->ctx, mb_str("#gpu.address_space<workgroup>"));
    MlirValue none = {0};
    MlirValue v2 = gen_gpu_view_at(g, g->smem_base, at,
                                   gen_storage_type(g, s[i].tile->type->dtype), s[i].elems,
                                   none, sp);
    s[i].tile->user = v2.ptr;
  }
}

/* One staged copy into the current buffer: cp.async chunks along the last
 * dim (16 bytes, or 8 or 4 where the row is no multiple of 16:
 * ts_pipe_chunk_bytes) where the source chunk is in range and aligned (the
 * part past the row's end zero-filled), element copies where not. */
static void copy_ahead(gen *g, ts_node *call) {
  mb *b = &g->b;
  view pool[16], src, dst;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &src, pool, &np) ||
      !gen_view_of(g, call->kids[1], &dst, pool, &np))
    return;
  const ts_type *t = call->kids[1]->sym->type;
  uint32_t rank = dst.vrank;
  int bytes = ts_dtype_bits(t->dtype) / 8;
  int64_t cols = t->dims[t->rank - 1].c;
  int cb = ts_pipe_chunk_bytes(cols, bytes), chunk = cb / bytes;
  if (rank < 1 || src.vrank != rank || cb == 0 ||
      src.sub[src.rank - 1].kind != SUB_SLICE || src.sub[src.rank - 1].vdim != rank - 1) {
    gen_copy(g, call);
    return;
  }
  MlirValue ext[TS_MAX_RANK], k[TS_MAX_RANK], kf[TS_MAX_RANK], kl[TS_MAX_RANK];
  for (uint32_t i = 0; i < rank; i++)
    ext[i] = dst.vext[i];
  ext[rank - 1] = gen_i64(g, cols / chunk);
  loop L[TS_MAX_RANK];
  gen_each_begin(g, L, ext, rank, k);
  for (uint32_t i = 0; i < rank; i++)
    kf[i] = kl[i] = k[i];
  kf[rank - 1] = gen_bin(g, "arith.muli", k[rank - 1], gen_i64(g, chunk));
  kl[rank - 1] = gen_bin(g, "arith.addi", kf[rank - 1], gen_i64(g, chunk - 1));
  MlirValue slin, sok, llin, lok, dlin, dok;
  gen_view_elem(g, &src, kf, &slin, &sok);
  gen_view_elem(g, &src, kl, &llin, &lok);
  gen_view_elem(g, &dst, kf, &dlin, &dok);
  MlirValue saddr = gen_gpu_address(g, src.mem, slin, bytes);
  MlirValue aligned =
      mb_cmpi(b, CMPI_EQ, gen_bin(g, "arith.remsi", saddr, gen_i64(g, cb)), gen_i64(g, 0));
  MlirValue fast = gen_bin(g, "arith.andi", gen_bin(g, "arith.andi", sok, lok), aligned);
  (void)llin;
  (void)dok;
  MlirBlock join = gen_if_begin(g, fast);
  if (g->emu) { /* the simulator: the chunk at once */
    MlirValue args[3] = {gen_gpu_address(g, dst.mem, dlin, bytes), saddr, gen_i64(g, cb)};
    gen_call(g, "ts_gpusim_cp", 3, args, 0, NULL);
  } else {
    MlirValue ops[2] = {gen_gpu_shared_address(g, dst.mem, dlin, bytes), saddr};
    char text[64]; /* .cg (L2 only) takes 16 bytes alone */
    snprintf(text, sizeof text, "cp.async.%s.shared.global [$0], [$1], %d;", cb == 16 ? "cg" : "ca",
             cb);
    inline_asm(g, text, "r,l,~{memory}", 2, ops);
  }
  gen_if_end(g, join);
  join = gen_if_begin(g, gen_bin(g, "arith.xori", fast, mb_const_int(b, b->i1, 1)));
  loop le;
  gen_loop_begin(g, &le, gen_i64(g, 0), gen_i64(g, chunk));
  /* the rare path (a chunk partly out of range or misaligned) stays a loop:
   * unrolled, its loads cost sparse_attn_split_kv8 (8-byte chunks) 23
   * registers and 292 bytes of spill */
  le.keep = true;
  MlirValue ke[TS_MAX_RANK];
  for (uint32_t i = 0; i < rank; i++)
    ke[i] = kf[i];
  ke[rank - 1] = gen_bin(g, "arith.addi", kf[rank - 1], le.iv);
  MlirValue x;
  gen_view_load(g, &src, ke, &x);
  gen_view_store(g, &dst, ke, gen_convert(g, x, gen_compute_type(g, dst.dt)));
  gen_loop_end(g, &le);
  gen_if_end(g, join);
  gen_each_end(g, L, rank);
}

static void group(gen *g, const char *text) {
  if (!g->emu)
    inline_asm(g, text, "~{memory}", 0, NULL);
}

bool gen_copy_async(gen *g, ts_node *call) {
  if (!g->gpu || g->in_ring || g->par || g->single ||
      !ts_copy_async_ok(call, g->plan, g->nplan))
    return false;
  copy_ahead(g, call);
  group(g, "cp.async.commit_group;");
  group(g, "cp.async.wait_group 0;");
  return true;
}

/* ---- TMA (gen.h ts_tma) ------------------------------------------------ */

int gen_tma_types(gen *g, const ts_kernel_info *k, MlirType *types) {
  g->ntma = ts_pipe_tma(k, g->arch, g->tma);
  if (!g->ntma)
    return 0;
  MlirType ptr = mlirTypeParseGet(g->b.ctx, mb_str("!llvm.ptr"));
  for (int i = 0; i < g->ntma; i++)
    types[i] = g->emu ? g->b.i64 : ptr;
  types[g->ntma] = g->b.i32;
  return g->ntma + 1;
}

void gen_tma_bind(gen *g, int first) {
  for (int i = 0; i < g->ntma; i++)
    g->tma_map[i] = mlirBlockGetArgument(g->b.entry, first + i);
  if (g->ntma)
    g->tma_on = mb_cmpi(&g->b, CMPI_NE, mlirBlockGetArgument(g->b.entry, first + g->ntma),
                        mb_const_int(&g->b, g->b.i32, 0));
}

static int tma_of(gen *g, const ts_node *call) {
  for (int i = 0; i < g->ntma; i++)
    if (g->tma[i].copy == call)
      return i;
  return -1;
}

/* The simulator's mbarrier operation `op` (runtime/gpusim.c ts_gpusim_mbar:
 * 0 init, 1 arm, 2 wait for `parity`) on the mbarrier at host address `at`. */
static void emu_mbar(gen *g, int op, MlirValue at, MlirValue parity) {
  mb *b = &g->b;
  MlirValue args[5] = {g->emu_ctx, g->tid, mb_const_int(b, b->i32, op), at,
                       parity.ptr ? parity : mb_const_int(b, b->i32, 0)};
  gen_call(g, "ts_gpusim_mbar", 5, args, 0, NULL);
}

/* The address of the mbarrier of iteration v's buffer (the shared i32 on
 * the GPU, the host i64 in the simulator), and the parity of the phase
 * that iteration's copies complete. */
static MlirValue ring_bar(gen *g, int64_t bar, MlirValue v, MlirValue lo, int64_t stages,
                          MlirValue *parity) {
  MlirValue j = gen_bin(g, "arith.subi", v, lo);
  if (parity)
    *parity = mb_cast(&g->b, "arith.trunci",
                      gen_bin(g, "arith.andi", gen_bin(g, "arith.divsi", j, gen_i64(g, stages)),
                              gen_i64(g, 1)),
                      g->b.i32);
  MlirValue at = gen_bin(g, "arith.addi", gen_i64(g, bar),
                         gen_bin(g, "arith.muli", gen_bin(g, "arith.remsi", j, gen_i64(g, stages)),
                                 gen_i64(g, 8)));
  return g->emu ? gen_gpu_address(g, g->smem_base, at, 1)
                : gen_gpu_shared_address(g, g->smem_base, at, 1);
}

/* The slice's first index along dim d of the copy's source (a TMA
 * coordinate). */
static MlirValue box_start(gen *g, const ts_node *call, int d) {
  const ts_node *lo = call->kids[0]->kids[1 + d]->kids[0];
  return lo ? gen_expr_as(g, (ts_node *)lo, g->b.i64) : gen_i64(g, 0);
}

/* Iteration v's TMA copies (the buffers pointed at): thread 0 arms the
 * buffer's mbarrier with their bytes and issues one box a panel (in the
 * simulator the box lands at the first wait for the phase). Without the
 * maps, every thread copies with cp.async as for any staged copy. */
static void tma_fill(gen *g, staged *s, int ns, MlirValue bar) {
  mb *b = &g->b;
  MlirValue t0 = mb_cmpi(b, CMPI_EQ, g->tid, gen_i64(g, 0));
  MlirBlock join = gen_if_begin(g, gen_bin(g, "arith.andi", g->tma_on, t0));
  int64_t bytes = 0;
  for (int i = 0; i < ns; i++)
    if (s[i].tma >= 0)
      bytes += g->tma[s[i].tma].rows * g->tma[s[i].tma].cols * g->tma[s[i].tma].esize;
  MlirValue none = {0};
  if (g->emu) {
    emu_mbar(g, 1, bar, none);
  } else {
    char text[96];
    snprintf(text, sizeof text, "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], %lld;",
             (long long)bytes);
    inline_asm(g, text, "r,~{memory}", 1, &bar);
  }
  for (int i = 0; i < ns; i++) {
    if (s[i].tma < 0)
      continue;
    const ts_tma *t = &g->tma[s[i].tma];
    MlirValue y = box_start(g, s[i].call, 0), x = box_start(g, s[i].call, 1);
    MlirValue tile = {(void *)s[i].tile->user};
    for (int64_t p = 0; p < t->cols / t->box_cols; p++) {
      MlirValue at = gen_i64(g, p * t->rows * t->box_cols);
      MlirValue xp = gen_bin(g, "arith.addi", x, gen_i64(g, p * t->box_cols));
      if (g->emu) {
        MlirValue args[7] = {g->emu_ctx, g->tid, gen_gpu_address(g, tile, at, t->esize),
                             g->tma_map[s[i].tma], xp, y, bar};
        gen_call(g, "ts_gpusim_tma", 7, args, 0, NULL);
        continue;
      }
      MlirValue ops[5] = {gen_gpu_shared_address(g, tile, at, t->esize), g->tma_map[s[i].tma],
                          mb_cast(b, "arith.trunci", xp, b->i32),
                          mb_cast(b, "arith.trunci", y, b->i32), bar};
      inline_asm(g,
                 "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [$0], [$1, {$2, $3}], [$4];",
                 "r,l,r,r,r,~{memory}", 5, ops);
    }
  }
  gen_if_end(g, join);
  join = gen_if_begin(g, gen_bin(g, "arith.xori", g->tma_on, mb_const_int(b, b->i1, 1)));
  for (int i = 0; i < ns; i++)
    if (s[i].tma >= 0)
      copy_ahead(g, s[i].call);
  gen_if_end(g, join);
}

/* Every thread waits for iteration v's TMA copies (when the maps are
 * there): the phase of its buffer's mbarrier. */
static void tma_wait(gen *g, int64_t bar, MlirValue v, MlirValue lo, int64_t stages) {
  if (bar < 0)
    return;
  MlirValue ops[2];
  MlirBlock join = gen_if_begin(g, g->tma_on);
  ops[0] = ring_bar(g, bar, v, lo, stages, &ops[1]);
  if (g->emu)
    emu_mbar(g, 2, ops[0], ops[1]);
  else
    inline_asm(g,
               "{\n.reg .pred p;\nTS_WAIT${:uid}:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 p, [$0], $1;\n"
               "@!p bra TS_WAIT${:uid};\n}",
               "r,r,~{memory}", 2, ops);
  gen_if_end(g, join);
}

/* Iteration v's copies, when v < hi (`bar`: the ring's mbarriers' offset,
 * -1 without TMA copies). */
static void fill(gen *g, ts_node *n, staged *s, int ns, MlirValue v, MlirValue lo,
                 MlirValue hi, int64_t stages, int64_t bar) {
  MlirBlock join = gen_if_begin(g, mb_cmpi(&g->b, CMPI_SLT, v, hi));
  n->sym->user = v.ptr;
  point(g, s, ns, v, lo, stages);
  if (bar >= 0)
    tma_fill(g, s, ns, ring_bar(g, bar, v, lo, stages, NULL));
  for (int i = 0; i < ns; i++)
    if (bar < 0 || s[i].tma < 0)
      copy_ahead(g, s[i].call);
  gen_if_end(g, join);
}

/* Whether `n` can become a ring (else a plain loop). */
static bool ring_form(gen *g, ts_node *n) {
  return g->gpu && !g->par && !g->single && ts_pipe_ring_body(n);
}

/* Whether `st` is a gemm statement that runs as wgmma (ts_mma_gemm, under
 * gen_wgmma_call, takes gemm calls only). */
static bool wgmma_stmt(gen *g, const ts_node *st) {
  int64_t mnk[3];
  return st && st->kind == TS_NODE_EXPR_STMT && gen_wgmma_call(g, st->kids[0], mnk);
}

bool gen_ahead(gen *g, ts_node *blk, uint32_t i) {
  int64_t mnk[3];
  g->fence_next = g->gpu && i + 1 < blk->kid_count && wgmma_stmt(g, blk->kids[i + 1]);
  ts_node *call = g->gpu ? ts_pipe_clear_folds(g->kernel, blk, i, g->plan, g->nplan) : NULL;
  if (!call || g->nfolded == 8 || !gen_wgmma_call(g, call, mnk))
    return false;
  g->folded[g->nfolded++] = blk->kids[i];
  return true;
}

/* The clears left to this loop (gen_ahead) whose tile is not one of
 * `acc`, lowered here after all (a loop that did not take the form they
 * were folded for); with acc NULL, all of them. */
static void unfold(gen *g, const ts_symbol *const *acc, int na) {
  ts_node *rest[8];
  int nr;
  g->nfolded = ts_pipe_keep_folded(g->folded, g->nfolded, acc, na, rest, &nr);
  for (int i = 0; i < nr; i++)
    gen_stmt(g, rest[i]);
}

bool gen_pipelined(gen *g, ts_node *n) {
  ts_node *body = n->kids[3];
  int64_t stages = ts_pipe_planned(n, g->plan, g->nplan);
  if (!ring_form(g, n)) {
    unfold(g, NULL, 0);
    return false;
  }
  staged s[16];
  int ns = 0, na = 0;
  bool skip[256] = {0}, async[256] = {0};
  ts_node *calls[256];
  for (uint32_t i = 0; i < body->kid_count && ns < 16; i++) {
    ts_node *st = body->kids[i];
    int64_t stride;
    const ts_gpu_tile *p = ts_pipe_buffers(g->kernel, n, st, g->plan, g->nplan, &stride);
    if (!p)
      continue;
    ts_symbol *t = st->kids[0]->kids[1]->sym;
    s[ns++] = (staged){st->kids[0], t, t->user, p->off, stride,
                       stride / (ts_dtype_bits(t->type->dtype) / 8), tma_of(g, st->kids[0])};
    skip[i] = true;
  }
  if (!ns) {
    unfold(g, NULL, 0);
    return false;
  }
  const ts_symbol *accs[256];
  for (uint32_t i = 0; i < body->kid_count; i++) {
    int64_t mnk[3];
    if (ts_pipe_async_gemm(g->kernel, n, body->kids[i], g->plan, g->nplan) &&
        gen_wgmma_call(g, body->kids[i]->kids[0], mnk)) {
      accs[na] = body->kids[i]->kids[0]->kids[2]->sym;
      calls[na++] = body->kids[i]->kids[0], async[i] = true;
    }
  }
  unfold(g, accs, na);
  /* copies start `lead` iterations ahead; with wgmma left in flight, one
   * less: the buffer iteration v refills was read by wgmma v - 2 */
  int64_t lead = na ? stages - 2 : stages - 1;
  mb *b = &g->b;
  MlirValue lo = gen_expr_as(g, n->kids[0], b->i64);
  MlirValue hi = gen_expr_as(g, n->kids[1], b->i64);
  /* TMA copies: one mbarrier a buffer, armed by thread 0 (initialised
   * here, made visible to the async proxy by the barrier) */
  int64_t bar = -1;
  for (int i = 0; i < ns; i++)
    if (s[i].tma >= 0)
      bar = g->bar_at;
  if (bar >= 0) {
    g->bar_at += 8 * stages;
    MlirBlock join = gen_if_begin(
        g, gen_bin(g, "arith.andi", g->tma_on, mb_cmpi(b, CMPI_EQ, g->tid, gen_i64(g, 0))));
    for (int64_t i = 0; i < stages; i++) {
      MlirValue none = {0};
      if (g->emu) {
        emu_mbar(g, 0, gen_gpu_address(g, g->smem_base, gen_i64(g, bar + 8 * i), 1), none);
        continue;
      }
      MlirValue at = gen_gpu_shared_address(g, g->smem_base, gen_i64(g, bar + 8 * i), 1);
      inline_asm(g, "mbarrier.init.shared::cta.b64 [$0], 1;", "r,~{memory}", 1, &at);
    }
    group(g, "fence.mbarrier_init.release.cluster;");
    gen_if_end(g, join);
  }
  gen_barrier(g);
  /* prologue: the first `lead` iterations' copies, a group each */
  loop lp, L;
  gen_loop_begin(g, &lp, gen_i64(g, 0), gen_i64(g, lead));
  fill(g, n, s, ns, gen_bin(g, "arith.addi", lo, lp.iv), lo, hi, stages, bar);
  group(g, "cp.async.commit_group;");
  gen_loop_end(g, &lp);
  gen_loop_begin(g, &L, lo, hi);
  char wait[64];
  if (na) {
    /* v's copies landed and v - 2's wgmma retired (each iteration commits
     * na groups), in every thread, before the refill of v - 2's buffer */
    snprintf(wait, sizeof wait, "cp.async.wait_group %lld;", (long long)(lead - 1));
    group(g, wait);
    tma_wait(g, bar, L.iv, lo, stages);
    gen_wgmma_wait(g, na, NULL, 0);
    group(g, "fence.proxy.async.shared::cta;");
    gen_barrier(g);
    fill(g, n, s, ns, gen_bin(g, "arith.addi", L.iv, gen_i64(g, lead)), lo, hi, stages, bar);
    group(g, "cp.async.commit_group;");
  } else {
    /* start iteration v + lead's copies, wait for v's */
    fill(g, n, s, ns, gen_bin(g, "arith.addi", L.iv, gen_i64(g, lead)), lo, hi, stages, bar);
    group(g, "cp.async.commit_group;");
    snprintf(wait, sizeof wait, "cp.async.wait_group %lld;", (long long)lead);
    group(g, wait);
    tma_wait(g, bar, L.iv, lo, stages);
    gen_barrier(g);
  }
  n->sym->user = L.iv.ptr;
  point(g, s, ns, L.iv, lo, stages);
  g->synced = true;
  MlirValue first = mb_cmpi(b, CMPI_EQ, L.iv, lo), none = {0};
  g->in_ring++;
  for (uint32_t i = 0; i < body->kid_count && !g->failed; i++) {
    /* the next statement emitted: a wgmma gemm with its own barrier? */
    uint32_t j = i + 1;
    while (j < body->kid_count && skip[j])
      j++;
    g->fence_next = j < body->kid_count && !async[j] && wgmma_stmt(g, body->kids[j]);
    if (async[i]) { /* its clear folded into the first k step, or not */
      bool zero = ts_pipe_folded(g->folded, g->nfolded, body->kids[i]->kids[0]->kids[2]->sym);
      gen_wgmma_async(g, body->kids[i]->kids[0], zero ? first : none);
    } else if (!skip[i]) {
      gen_stmt(g, body->kids[i]);
    }
  }
  g->in_ring--;
  g->fence_next = false;
  if (!na)
    gen_barrier(g); /* before the next iteration refills the oldest buffer */
  gen_loop_end(g, &L);
  group(g, "cp.async.wait_group 0;");
  if (na)
    gen_wgmma_wait(g, 0, calls, na);
  if (g->nfolded) { /* no iteration ran: the clears after all */
    MlirBlock join = gen_if_begin(g, mb_cmpi(b, CMPI_SLE, hi, lo));
    unfold(g, NULL, 0);
    gen_if_end(g, join);
  }
  for (int i = 0; i < ns; i++)
    s[i].tile->user = s[i].home;
  g->synced = !na; /* with wgmma in flight, no barrier ends an iteration */
  return true;
}
