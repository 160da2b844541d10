/* gen_pipe.c - `pipelined` loops in the MLIR lowering of the GPU kernel: the
 * copies gpu_pipe.c finds run ahead as a ring of cp.async copies (inline
 * PTX), one shared buffer per stage, as cuda_tc.c does for the CUDA C
 * lowering (docs/abi.md "Pipelined loops"). In the simulator's CPU form the
 * copies are done at once, which checks the ring's indexing. */
#include "compiler/gen_internal.h"

typedef struct staged {
  ts_node *call;   /* the copy */
  ts_symbol *tile; /* its destination */
  const void *home; /* the tile's memref (buffer 0) */
  int64_t off;     /* its byte offset in shared memory */
  int64_t stride;  /* bytes between buffers */
  int64_t elems;
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

/* One staged copy into the current buffer: cp.async chunks of 16 bytes
 * along the last dim where the source row is in range and aligned (the
 * part past the row's end zero-filled), element copies where not. */
static void copy_ahead(gen *g, ts_node *call) {
  mb *b = &g->b;
  if (g->emu) { /* the simulator: at once */
    gen_copy(g, call);
    return;
  }
  view pool[16], src, dst;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &src, pool, &np) ||
      !gen_view_of(g, call->kids[1], &dst, pool, &np))
    return;
  const ts_type *t = call->kids[1]->sym->type;
  uint32_t rank = dst.vrank;
  int bytes = ts_dtype_bits(t->dtype) / 8, chunk = 16 / bytes;
  int64_t cols = t->dims[t->rank - 1].c;
  if (rank < 1 || src.vrank != rank || cols % chunk ||
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
      mb_cmpi(b, CMPI_EQ, gen_bin(g, "arith.remsi", saddr, gen_i64(g, 16)), gen_i64(g, 0));
  MlirValue fast = gen_bin(g, "arith.andi", gen_bin(g, "arith.andi", sok, lok), aligned);
  (void)llin;
  (void)dok;
  MlirBlock join = gen_if_begin(g, fast);
  MlirValue ops[2] = {gen_gpu_address(g, dst.mem, dlin, bytes), saddr};
  inline_asm(g, "cp.async.cg.shared.global [$0], [$1], 16;", "l,l,~{memory}", 2, ops);
  gen_if_end(g, join);
  join = gen_if_begin(g, gen_bin(g, "arith.xori", fast, mb_const_int(b, b->i1, 1)));
  loop le;
  gen_loop_begin(g, &le, gen_i64(g, 0), gen_i64(g, chunk));
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

static bool has_continue(const ts_node *n) {
  if (!n)
    return false;
  if (n->kind == TS_NODE_CONTINUE || n->kind == TS_NODE_BREAK)
    return true;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (has_continue(n->kids[i]))
      return true;
  return false;
}

static void group(gen *g, const char *text) {
  if (!g->emu)
    inline_asm(g, text, "~{memory}", 0, NULL);
}

/* Iteration v's copies, when v < hi. */
static void fill(gen *g, ts_node *n, staged *s, int ns, MlirValue v, MlirValue lo,
                 MlirValue hi, int64_t stages) {
  MlirBlock join = gen_if_begin(g, mb_cmpi(&g->b, CMPI_SLT, v, hi));
  n->sym->user = v.ptr;
  point(g, s, ns, v, lo, stages);
  for (int i = 0; i < ns; i++)
    copy_ahead(g, s[i].call);
  gen_if_end(g, join);
}

bool gen_pipelined(gen *g, ts_node *n) {
  ts_node *body = n->kids[3];
  int64_t stages = ts_pipe_stages(n);
  if (!g->gpu || g->par || g->single || stages < 2 || !body || body->kid_count > 256 ||
      has_continue(body))
    return false;
  staged s[16];
  int ns = 0;
  bool skip[256] = {0};
  for (uint32_t i = 0; i < body->kid_count && ns < 16; i++) {
    ts_node *st = body->kids[i];
    int64_t stride;
    const ts_gpu_tile *p = ts_pipe_buffers(g->kernel, n, st, g->plan, g->nplan, &stride);
    if (!p)
      continue;
    ts_symbol *t = st->kids[0]->kids[1]->sym;
    s[ns++] = (staged){st->kids[0], t, t->user, p->off, stride,
                       stride / (ts_dtype_bits(t->type->dtype) / 8)};
    skip[i] = true;
  }
  if (!ns)
    return false;
  mb *b = &g->b;
  MlirValue lo = gen_expr_as(g, n->kids[0], b->i64);
  MlirValue hi = gen_expr_as(g, n->kids[1], b->i64);
  gen_barrier(g);
  /* prologue: the first stages - 1 iterations' copies, a group each */
  loop lp, L;
  gen_loop_begin(g, &lp, gen_i64(g, 0), gen_i64(g, stages - 1));
  fill(g, n, s, ns, gen_bin(g, "arith.addi", lo, lp.iv), lo, hi, stages);
  group(g, "cp.async.commit_group;");
  gen_loop_end(g, &lp);
  /* steady state: start iteration v + stages - 1's copies, wait for v's */
  gen_loop_begin(g, &L, lo, hi);
  fill(g, n, s, ns, gen_bin(g, "arith.addi", L.iv, gen_i64(g, stages - 1)), lo, hi, stages);
  group(g, "cp.async.commit_group;");
  char wait[64];
  snprintf(wait, sizeof wait, "cp.async.wait_group %lld;", (long long)(stages - 1));
  group(g, wait);
  gen_barrier(g);
  n->sym->user = L.iv.ptr;
  point(g, s, ns, L.iv, lo, stages);
  g->synced = true;
  for (uint32_t i = 0; i < body->kid_count && !g->failed; i++)
    if (!skip[i])
      gen_stmt(g, body->kids[i]);
  gen_barrier(g); /* before the next iteration refills the oldest buffer */
  gen_loop_end(g, &L);
  group(g, "cp.async.wait_group 0;");
  for (int i = 0; i < ns; i++)
    s[i].tile->user = s[i].home;
  g->synced = true;
  return true;
}
