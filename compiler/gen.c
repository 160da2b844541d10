/* gen.c - typed AST to an MLIR module for the CPU target, built with the
 * MLIR C API (func, arith, math, memref, cf). Each decision about how a tile
 * op becomes loops is made here, one function per op.
 *
 * The kernel ABI (docs/abi.md): for kernel K the module has
 *   func @K(memref<?xS> per tensor arg, i64 per dim, scalar args,
 *           i64 block_begin, i64 block_end)
 *     runs blocks [begin, end) of the grid (linear, x fastest);
 *   func @K__grid(i64 per dim, scalar args) -> (i64, i64, i64)
 *     the grid extents;
 *   func @K__block(same args as @K without the range, i64 bx, by, bz)
 *     one block: tiles are its locals.
 * Tensors are flat row-major memrefs of their storage type (bf16 and f16
 * as i16, fp8e4m3 and i8 as i8, bool as i8); a buffer always holds at least
 * one element, so a predicated-off load may read element 0. Scalars compute
 * in f32 (floats), i32/i64 and i1. Out-of-range elements of a tile op read
 * as 0 and are not written. */
#include "compiler/gen_internal.h"

#include <string.h>

/* ---- diagnostics --------------------------------------------------------- */

void gen_unsupported(gen *g, ts_node *n, const char *what) {
  if (g->failed && ts_diags_full(g->d))
    return;
  ts_diag *d = ts_diag_error(g->d, &g->u->src, n->span,
                             "%s is not supported on the %s target yet", what,
                             g->gpu ? "GPU" : "CPU");
  ts_diag_hint(g->d, d, "README.md lists what each target supports today");
  g->failed = true;
}

static MlirLocation loc_of(gen *g, ts_node *n) {
  uint32_t line, col;
  ts_source_position(&g->u->src, n->span.lo, &line, &col);
  return mlirLocationFileLineColGet(
      g->b.ctx, mb_str(ts_source_name(&g->u->src, n->span.lo)), line, col);
}

/* ---- types --------------------------------------------------------------- */

static MlirType repr(gen *g, const ts_type *t) {
  if (t->kind != TS_TYPE_SCALAR)
    return g->b.i64;
  return gen_compute_type(g, t->dtype);
}

static bool is_bool_t(const ts_type *t) {
  return t && t->kind == TS_TYPE_SCALAR && t->dtype == TS_DTYPE_BOOL;
}

/* ---- control flow -------------------------------------------------------- */

/* After a terminator, code goes on in a fresh (unreachable) block. */
static void fresh_block(gen *g) { g->b.cur = mb_block(&g->b, 0, NULL); }

void gen_loop_begin(gen *g, loop *L, MlirValue lo, MlirValue hi) {
  gen_loop_begin_step(g, L, lo, hi, gen_i64(g, 1));
}

void gen_loop_begin_step(gen *g, loop *L, MlirValue lo, MlirValue hi,
                         MlirValue step) {
  mb *b = &g->b;
  L->step = step;
  L->unroll = L->keep = false;
  L->header = mb_block(b, 1, &b->i64);
  L->body = mb_block(b, 0, NULL);
  L->latch = mb_block(b, 0, NULL);
  L->exit = mb_block(b, 0, NULL);
  mb_br(b, L->header, 1, &lo);
  b->cur = L->header;
  L->iv = mlirBlockGetArgument(L->header, 0);
  mb_cond_br(b, mb_cmpi(b, CMPI_SLT, L->iv, hi), L->body, L->exit);
  b->cur = L->body;
}

void gen_loop_end(gen *g, loop *L) {
  mb *b = &g->b;
  mb_br(b, L->latch, 0, NULL);
  b->cur = L->latch;
  MlirValue next = mb_bin(b, "arith.addi", L->iv, L->step);
  mb_br(b, L->header, 1, &next);
  if (L->unroll || L->keep) /* becomes llvm.loop metadata on the back edge */
    mlirOperationSetAttributeByName(
        mlirBlockGetTerminator(b->cur), mb_str("loop_annotation"),
        mlirAttributeParseGet(b->ctx, mb_str(L->unroll ? "#llvm.loop_annotation<unroll = "
                                                         "#llvm.loop_unroll<full = true>>"
                                                       : "#llvm.loop_annotation<unroll = "
                                                         "#llvm.loop_unroll<disable = true>>")));
  b->cur = L->exit;
}

/* if (c) { ... }: returns the join block; code goes into `then`. */
MlirBlock gen_if_begin(gen *g, MlirValue c) {
  MlirBlock then = mb_block(&g->b, 0, NULL);
  MlirBlock join = mb_block(&g->b, 0, NULL);
  mb_cond_br(&g->b, c, then, join);
  g->b.cur = then;
  return join;
}

void gen_if_end(gen *g, MlirBlock join) {
  mb_br(&g->b, join, 0, NULL);
  g->b.cur = join;
}

/* ---- extents and views --------------------------------------------------- */

MlirValue gen_i64(gen *g, int64_t v) {
  return mb_const_int(&g->b, g->b.i64, v);
}

/* An extent in canonical form, evaluated (its atoms are dims). */
MlirValue gen_extent(gen *g, const ts_extent *e, ts_node *at) {
  MlirValue v = gen_i64(g, e->c);
  for (uint32_t i = 0; i < e->term_count; i++) {
    uint32_t a = e->terms[i].atom;
    if (a >= 4096 || !g->atom_set[a]) {
      gen_unsupported(g, at, "this extent");
      return v;
    }
    MlirValue t = mb_bin(&g->b, "arith.muli", g->atom_vals[a],
                         gen_i64(g, e->terms[i].coef));
    v = mb_bin(&g->b, "arith.addi", v, t);
  }
  return v;
}

static MlirValue gen_expr(gen *g, ts_node *n);
static MlirValue gen_thread_id(gen *g, ts_node *n);

static bool view_base(gen *g, ts_node *b, view *v) {
  ts_symbol *sym = b->sym;
  if (!sym || !sym->user || !sym->type) {
    gen_unsupported(g, b, "this reference");
    return false;
  }
  memset(v, 0, sizeof *v);
  v->skip_dim = -1;
  v->mem = (MlirValue){sym->user};
  v->regs = g->gpu && sym->kind == TS_SYM_TILE && gen_gpu_in_registers(g, sym);
  gen_gpu_view_layout(g, sym, v);
  v->dt = sym->type->dtype;
  v->rank = sym->type->rank;
  for (uint32_t i = 0; i < v->rank; i++)
    v->dims[i] = gen_extent(g, &sym->type->dims[i], b);
  return true;
}

/* A view of a tensor or tile reference: `t`, `x[r:r + BM, :]`,
 * `kv[idx[:], :]`, `q[t, :, :]`. `pool` holds gather views. */
bool gen_view_of(gen *g, ts_node *n, view *v, view *pool, int *npool) {
  if (n->kind == TS_NODE_NAME) {
    if (!view_base(g, n, v))
      return false;
    for (uint32_t i = 0; i < v->rank; i++) {
      v->sub[i].kind = SUB_SLICE;
      v->sub[i].start = gen_i64(g, 0);
      v->sub[i].vdim = i;
      v->vext[i] = v->dims[i];
    }
    v->vrank = v->rank;
    /* Tile ops loop over exactly these extents: no predicate needed. */
    v->in_range = n->sym && n->sym->kind == TS_SYM_TILE;
    return true;
  }
  if (!view_base(g, n->kids[0], v))
    return false;
  v->in_range = gen_access_in_range(n);
  v->unchecked = g->nproven && gen_access_unchecked(g, n); /* gen_bounds.c */
  for (uint32_t i = 0; i < v->rank; i++) {
    ts_node *k = n->kids[i + 1];
    bool gather = false;
    if (k->kind == TS_NODE_INDEX)
      for (uint32_t j = 1; j < k->kid_count; j++)
        gather |= k->kids[j]->kind == TS_NODE_SLICE;
    if (k->kind == TS_NODE_SLICE) {
      MlirValue lo =
          k->kids[0] ? gen_expr_as(g, k->kids[0], g->b.i64) : gen_i64(g, 0);
      MlirValue hi =
          k->kids[1] ? gen_expr_as(g, k->kids[1], g->b.i64) : v->dims[i];
      v->sub[i].kind = SUB_SLICE;
      v->sub[i].start = lo;
      v->sub[i].vdim = v->vrank;
      v->vext[v->vrank++] = mb_bin(&g->b, "arith.subi", hi, lo);
    } else if (gather) {
      if (*npool >= 8) {
        gen_unsupported(g, k, "this many gathers");
        return false;
      }
      view *gv = &pool[(*npool)++];
      if (!gen_view_of(g, k, gv, pool, npool))
        return false;
      v->sub[i].kind = SUB_GATHER;
      v->sub[i].gather = gv;
      v->sub[i].vdim = v->vrank;
      v->vext[v->vrank++] = gv->vext[0];
    } else {
      v->sub[i].kind = SUB_INDEX;
      v->sub[i].start = gen_expr_as(g, k, g->b.i64);
    }
  }
  /* extents sema knows to be constant (hi - lo of `r:r + BM`) as constants */
  const ts_type *t = n->type;
  if (t && t->rank == v->vrank)
    for (uint32_t d = 0; d < v->vrank; d++)
      if (t->dims[d].term_count == 0 && t->dims[d].c >= 0)
        v->vext[d] = gen_i64(g, t->dims[d].c);
  return true;
}

/* Linear index and validity of the element at view indices `k`. */
void gen_view_elem(gen *g, view *v, const MlirValue *k, MlirValue *lin,
                   MlirValue *valid) {
  mb *b = &g->b;
  MlirValue l = gen_i64(g, 0), ok = mb_const_int(b, b->i1, 1);
  for (uint32_t d = 0; d < v->rank; d++) {
    MlirValue idx;
    switch (v->sub[d].kind) {
    case SUB_INDEX: idx = v->sub[d].start; break;
    case SUB_SLICE:
      idx = mb_bin(b, "arith.addi", v->sub[d].start, k[v->sub[d].vdim]);
      break;
    default: {
      MlirValue gi;
      gen_view_load(g, v->sub[d].gather, &k[v->sub[d].vdim], &gi);
      idx = gen_convert(g, gi, b->i64);
    }
    }
    MlirValue ge = mb_cmpi(b, CMPI_SGE, idx, gen_i64(g, 0));
    MlirValue lt = mb_cmpi(b, CMPI_SLT, idx, v->dims[d]);
    if (!v->in_range && !v->unchecked && (int)d != v->skip_dim)
      ok = mb_bin(b, "arith.andi", ok, mb_bin(b, "arith.andi", ge, lt));
    /* a padded tile's rows are pad elements longer (gen.h ts_pad_elems) */
    MlirValue stride = v->pad && d + 1 == v->rank
                           ? mb_bin(b, "arith.addi", v->dims[d], gen_i64(g, v->pad))
                           : v->dims[d];
    l = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", l, stride), idx);
  }
  *lin = v->swz ? gen_swizzle(g, l, v->swz_r, v->swz_c, v->swz, ts_dtype_bits(v->dt) / 8) : l;
  *valid = ok;
}

/* Loads an element as its compute type; out of range reads 0. */
void gen_view_load(gen *g, view *v, const MlirValue *k, MlirValue *out) {
  mb *b = &g->b;
  MlirValue lin, ok;
  gen_view_elem(g, v, k, &lin, &ok);
  if (v->regs) /* only its owner reads it */
    lin = gen_reg_index(g, v, lin);
  if (v->in_range || v->unchecked) {
    *out = gen_from_storage(g, mb_load(b, v->mem, lin), v->dt);
    return;
  }
  MlirValue safe = mb_select(b, ok, lin, gen_i64(g, 0));
  MlirValue x = gen_from_storage(g, mb_load(b, v->mem, safe), v->dt);
  MlirType t = mlirValueGetType(x);
  MlirValue zero =
      gen_is_float(g, t) ? mb_const_f32(b, 0.0) : mb_const_int(b, t, 0);
  *out = mb_select(b, ok, x, zero);
}

/* Stores a compute value; out of range is not written. */
void gen_view_store(gen *g, view *v, const MlirValue *k, MlirValue x) {
  mb *b = &g->b;
  MlirValue lin, ok;
  gen_view_elem(g, v, k, &lin, &ok);
  if (v->regs)
    lin = gen_reg_index(g, v, lin);
  else if (g->rows_lead.ptr) /* a loop over wgmma's rows: the quad's first lane */
    ok = mb_bin(b, "arith.andi", ok, g->rows_lead);
  if ((v->in_range || v->unchecked) && (v->regs || !g->rows_lead.ptr)) {
    mb_store(b, gen_to_storage(g, x, v->dt), v->mem, lin);
    return;
  }
  MlirBlock join = gen_if_begin(g, ok);
  mb_store(b, gen_to_storage(g, x, v->dt), v->mem, lin);
  gen_if_end(g, join);
}

/* Loops over every index of a view; the caller closes them with
 * loops_end. */
void gen_loops_begin(gen *g, loop *L, const MlirValue *ext, uint32_t rank,
                     MlirValue *k) {
  for (uint32_t i = 0; i < rank; i++) {
    gen_loop_begin(g, &L[i], gen_i64(g, 0), ext[i]);
    k[i] = L[i].iv;
  }
}

void gen_loops_end(gen *g, loop *L, uint32_t rank) {
  for (uint32_t i = rank; i-- > 0;)
    gen_loop_end(g, &L[i]);
}

/* The value of an arith.constant integer. */
static bool const_int(MlirValue v, int64_t *out) {
  if (!mlirValueIsAOpResult(v))
    return false;
  MlirOperation op = mlirOpResultGetOwner(v);
  MlirStringRef name = mlirIdentifierStr(mlirOperationGetName(op));
  if (name.length != 14 || memcmp(name.data, "arith.constant", 14) != 0)
    return false;
  MlirAttribute a = mlirOperationGetAttributeByName(op, mb_str("value"));
  if (mlirAttributeIsNull(a) || !mlirAttributeIsAInteger(a))
    return false;
  *out = mlirIntegerAttrGetValueInt(a);
  return true;
}

void gen_each_begin(gen *g, loop *L, const MlirValue *ext, uint32_t rank,
                    MlirValue *k) {
  if (!g->gpu) {
    gen_loops_begin(g, L, ext, rank, k);
    return;
  }
  mb *b = &g->b;
  MlirValue total = gen_i64(g, 1);
  int64_t n = 1, x;
  bool known = true;
  for (uint32_t i = 0; i < rank; i++) {
    total = mb_bin(b, "arith.muli", total, ext[i]);
    known = known && const_int(ext[i], &x) && !__builtin_mul_overflow(n, x, &n);
  }
  MlirValue e;
  L[1].exit.ptr = NULL;
  if (known && n >= 0) {
    /* a constant count: a loop of constant trip count (so that it unrolls
     * and a tile in registers is indexed by constants), guarded on the
     * last round when the threads do not divide it */
    int64_t rounds = (n + g->threads - 1) / g->threads;
    gen_loop_begin(g, &L[0], gen_i64(g, 0), gen_i64(g, rounds));
    L[0].unroll = rounds <= 32;
    e = mb_bin(b, "arith.addi",
               mb_bin(b, "arith.muli", L[0].iv, gen_i64(g, g->threads)),
               g->tid);
    if (n % g->threads) {
      MlirBlock join = gen_if_begin(g, mb_cmpi(b, CMPI_SLT, e, gen_i64(g, n)));
      L[1].exit = join;
    }
  } else {
    gen_loop_begin_step(g, &L[0], g->tid, total, gen_i64(g, g->threads));
    e = L[0].iv;
  }
  for (uint32_t i = rank; i-- > 0;) {
    k[i] = i ? mb_bin(b, "arith.remsi", e, ext[i]) : e;
    if (i)
      e = mb_bin(b, "arith.divsi", e, ext[i]);
  }
}

void gen_each_end(gen *g, loop *L, uint32_t rank) {
  if (!g->gpu) {
    gen_loops_end(g, L, rank);
    return;
  }
  if (L[1].exit.ptr)
    gen_if_end(g, L[1].exit);
  gen_loop_end(g, &L[0]);
}

/* ---- expressions --------------------------------------------------------- */

static MlirValue const_of(gen *g, ts_node *n, MlirType t) {
  mb *b = &g->b;
  const ts_const *c = &n->cval;
  if (gen_is_float(g, t))
    return mb_const_f32(b, c->kind == TS_CONST_FLOAT ? c->f
                           : c->kind == TS_CONST_INT ? (double)c->i
                                                     : (double)c->b);
  int64_t v = c->kind == TS_CONST_INT    ? c->i
              : c->kind == TS_CONST_BOOL ? c->b
                                         : (int64_t)c->f;
  return mb_const_int(b, t, v);
}

MlirValue gen_expr_as(gen *g, ts_node *n, MlirType want) {
  if (n->cval.kind != TS_CONST_NONE) {
    MlirLocation saved = g->b.loc;
    g->b.loc = loc_of(g, n);
    MlirValue v = const_of(g, n, want);
    g->b.loc = saved;
    return v;
  }
  return gen_convert(g, gen_expr(g, n), want);
}

/* The type two operands compute in (mirrors sema's rule). */
static MlirType operand_type(gen *g, ts_node *x, ts_node *y) {
  MlirType a = repr(g, x->type), c = repr(g, y->type);
  if (gen_is_float(g, a) || gen_is_float(g, c))
    return g->b.f32;
  if (x->type->literal)
    return c;
  if (y->type->literal)
    return a;
  return gen_int_width(a) >= gen_int_width(c) ? a : c;
}

static MlirValue gen_binary(gen *g, ts_node *n) {
  mb *b = &g->b;
  int op = n->op;
  if (op == TS_TOK_ANDAND || op == TS_TOK_OROR) {
    /* Both sides are evaluated: they have no side effects worth
     * short-circuiting on the CPU (loads are predicated). */
    MlirValue x = gen_expr_as(g, n->kids[0], b->i1);
    MlirValue y = gen_expr_as(g, n->kids[1], b->i1);
    return mb_bin(b, op == TS_TOK_ANDAND ? "arith.andi" : "arith.ori", x, y);
  }
  MlirType t = operand_type(g, n->kids[0], n->kids[1]);
  if (is_bool_t(n->kids[0]->type) && is_bool_t(n->kids[1]->type))
    t = b->i1;
  MlirValue x = gen_expr_as(g, n->kids[0], t);
  MlirValue y = gen_expr_as(g, n->kids[1], t);
  bool f = gen_is_float(g, t);
  switch (op) {
  case TS_TOK_PLUS: return mb_bin(b, f ? "arith.addf" : "arith.addi", x, y);
  case TS_TOK_MINUS: return mb_bin(b, f ? "arith.subf" : "arith.subi", x, y);
  case TS_TOK_STAR: return mb_bin(b, f ? "arith.mulf" : "arith.muli", x, y);
  case TS_TOK_SLASH: return mb_bin(b, f ? "arith.divf" : "arith.divsi", x, y);
  case TS_TOK_PERCENT: return mb_bin(b, "arith.remsi", x, y);
  case TS_TOK_AMP: return mb_bin(b, "arith.andi", x, y);
  case TS_TOK_PIPE: return mb_bin(b, "arith.ori", x, y);
  case TS_TOK_CARET: return mb_bin(b, "arith.xori", x, y);
  case TS_TOK_SHL: return mb_bin(b, "arith.shli", x, y);
  case TS_TOK_SHR: return mb_bin(b, "arith.shrsi", x, y);
  case TS_TOK_EQ:
    return f ? mb_cmpf(b, CMPF_OEQ, x, y) : mb_cmpi(b, CMPI_EQ, x, y);
  case TS_TOK_NE:
    return f ? mb_cmpf(b, CMPF_UNE, x, y) : mb_cmpi(b, CMPI_NE, x, y);
  case TS_TOK_LT:
    return f ? mb_cmpf(b, CMPF_OLT, x, y) : mb_cmpi(b, CMPI_SLT, x, y);
  case TS_TOK_LE:
    return f ? mb_cmpf(b, CMPF_OLE, x, y) : mb_cmpi(b, CMPI_SLE, x, y);
  case TS_TOK_GT:
    return f ? mb_cmpf(b, CMPF_OGT, x, y) : mb_cmpi(b, CMPI_SGT, x, y);
  case TS_TOK_GE:
    return f ? mb_cmpf(b, CMPF_OGE, x, y) : mb_cmpi(b, CMPI_SGE, x, y);
  default: gen_unsupported(g, n, "this operator"); return x;
  }
}

static MlirValue gen_unary(gen *g, ts_node *n) {
  mb *b = &g->b;
  MlirType t = repr(g, n->type);
  MlirValue x = gen_expr_as(g, n->kids[0], t);
  switch (n->op) {
  case TS_TOK_MINUS:
    if (gen_is_float(g, t))
      return mb_un(b, "arith.negf", x);
    return mb_bin(b, "arith.subi", mb_const_int(b, t, 0), x);
  case TS_TOK_BANG:
    return mb_bin(b, "arith.xori", x, mb_const_int(b, b->i1, 1));
  default: return mb_bin(b, "arith.xori", x, mb_const_int(b, t, -1));
  }
}

static MlirValue gen_builtin(gen *g, ts_node *n) {
  mb *b = &g->b;
  ts_node **k = n->kids;
  MlirType t = repr(g, n->type);
  switch (n->builtin) {
  case TS_BUILTIN_BLOCK_ID: {
    int64_t d = k[0]->cval.i;
    return g->block_id[d < 3 && d >= 0 ? d : 0];
  }
  case TS_BUILTIN_CEILDIV: {
    MlirValue x = gen_expr_as(g, k[0], t), y = gen_expr_as(g, k[1], t);
    return mb_bin(b, "arith.ceildivsi", x, y);
  }
  case TS_BUILTIN_MIN:
  case TS_BUILTIN_MAX: {
    MlirValue x = gen_expr_as(g, k[0], t), y = gen_expr_as(g, k[1], t);
    bool mn = n->builtin == TS_BUILTIN_MIN;
    if (gen_is_float(g, t))
      return mb_bin(b, mn ? "arith.minimumf" : "arith.maximumf", x, y);
    return mb_bin(b, mn ? "arith.minsi" : "arith.maxsi", x, y);
  }
  case TS_BUILTIN_ABS: {
    MlirValue x = gen_expr_as(g, k[0], t);
    return gen_is_float(g, t) ? gen_math1(g, "math.absf", x)
                              : gen_math1(g, "math.absi", x);
  }
  case TS_BUILTIN_SELECT: {
    MlirValue c = gen_expr_as(g, k[0], b->i1);
    return mb_select(b, c, gen_expr_as(g, k[1], t), gen_expr_as(g, k[2], t));
  }
  case TS_BUILTIN_BITCAST: {
    MlirValue x = gen_expr(g, k[0]);
    /* 8-bit: fp8 is computed in f32 and i8 in i32, so go through the
       stored byte. */
    ts_dtype from = k[0]->type->dtype, to = k[1]->dtype;
    if (from == TS_DTYPE_FP8E4M3 && to == TS_DTYPE_I8)
      return gen_from_storage(g, gen_to_storage(g, x, from), to);
    if (from == TS_DTYPE_I8 && to == TS_DTYPE_FP8E4M3)
      return gen_from_storage(g, gen_to_storage(g, x, from), to);
    if (!mlirTypeEqual(mlirValueGetType(x), b->f32) &&
        !mlirTypeEqual(mlirValueGetType(x), b->i32)) {
      gen_unsupported(g, n, "this 'bitcast'");
      return x;
    }
    return mb_cast(b, "arith.bitcast", x, t);
  }
  default: break;
  }
  /* Float math of one or two arguments. */
  MlirValue x = gen_expr_as(g, k[0], b->f32);
  switch (n->builtin) {
  case TS_BUILTIN_EXP: return gen_exp(g, x, false);
  case TS_BUILTIN_EXP2: return gen_exp(g, x, true);
  case TS_BUILTIN_LOG: return gen_math1(g, "math.log", x);
  case TS_BUILTIN_LOG2: return gen_math1(g, "math.log2", x);
  case TS_BUILTIN_SQRT: return gen_math1(g, "math.sqrt", x);
  case TS_BUILTIN_RSQRT: return gen_math1(g, "math.rsqrt", x);
  case TS_BUILTIN_SIN: return gen_math1(g, "math.sin", x);
  case TS_BUILTIN_COS: return gen_math1(g, "math.cos", x);
  case TS_BUILTIN_TANH: return gen_math1(g, "math.tanh", x);
  case TS_BUILTIN_FLOOR: return gen_math1(g, "math.floor", x);
  case TS_BUILTIN_CEIL: return gen_math1(g, "math.ceil", x);
  case TS_BUILTIN_RELU:
    return mb_bin(b, "arith.maximumf", x, mb_const_f32(b, 0.0));
  case TS_BUILTIN_POW:
    return mb_bin(b, "math.powf", x, gen_expr_as(g, k[1], b->f32));
  case TS_BUILTIN_SIGMOID:
  case TS_BUILTIN_SILU: {
    MlirValue one = mb_const_f32(b, 1.0);
    MlirValue e = gen_exp(g, mb_un(b, "arith.negf", x), false);
    MlirValue s = mb_bin(b, "arith.divf", one, mb_bin(b, "arith.addf", one, e));
    return n->builtin == TS_BUILTIN_SILU ? mb_bin(b, "arith.mulf", x, s) : s;
  }
  case TS_BUILTIN_SOFTPLUS: {
    /* log(1 + exp(x)), and x itself where exp(x) would overflow */
    MlirValue l = gen_math1(g, "math.log1p", gen_exp(g, x, false));
    MlirValue big = mb_cmpf(b, CMPF_OGT, x, mb_const_f32(b, 20.0));
    return mb_select(b, big, x, l);
  }
  default: gen_unsupported(g, n, "this built-in"); return x;
  }
}

static MlirValue gen_cast(gen *g, ts_node *n) {
  mb *b = &g->b;
  ts_dtype dt = n->dtype;
  MlirValue x = gen_expr(g, n->kids[0]);
  if (ts_dtype_is_float(dt)) {
    x = gen_convert(g, x, b->f32);
    if (dt == TS_DTYPE_F32)
      return x;
    /* Round to the narrow type and back: the value is exactly
     * representable in it. */
    return gen_from_storage(g, gen_to_storage(g, x, dt), dt);
  }
  MlirValue v = gen_convert(g, x, gen_compute_type(g, dt));
  if (dt == TS_DTYPE_I8) /* wrap to 8 bits */
    v = mb_cast(b, "arith.extsi", mb_cast(b, "arith.trunci", v, b->i8), b->i32);
  return v;
}

static MlirValue gen_fn_call(gen *g, ts_node *n) {
  mb *b = &g->b;
  ts_node *params = n->sym->decl->kids[0];
  MlirValue args[64];
  uint32_t na = n->kid_count < 64 ? n->kid_count : 64;
  for (uint32_t i = 0; i < na; i++) {
    ts_node *pt = params->kids[i]->kids[0];
    args[i] = gen_expr_as(g, n->kids[i], gen_compute_type(g, pt->dtype));
  }
  char name[300];
  snprintf(name, sizeof name, "%.*s", (int)n->name.len, n->name.ptr);
  MlirNamedAttribute a =
      mb_attr(b, "callee", mlirFlatSymbolRefAttrGet(b->ctx, mb_str(name)));
  bool has_result = n->type && n->type->kind == TS_TYPE_SCALAR;
  MlirType rt = has_result ? repr(g, n->type) : b->i64;
  MlirOperation op =
      mb_op(b, "func.call", na, args, has_result ? 1 : 0, &rt, 1, &a);
  return has_result ? mlirOperationGetResult(op, 0) : gen_i64(g, 0);
}

/* On the GPU, a statement outside `parallel` runs on every thread of the
 * block; one that writes memory (an element of a tile or tensor, an atomic)
 * is done by thread 0 alone. Statements that write memory other threads
 * read (these, tile ops and `parallel`; not one that writes registers only)
 * are fenced by barriers on both sides: before, so that no thread still
 * reads what they overwrite; after, so that every thread sees what they
 * wrote. `g->synced`: nothing read or written since such a barrier. */
static bool gpu_single(gen *g) { return g->gpu && g->par == 0 && !g->single; }
static void sync_before(gen *g, bool synced, const ts_node *n) {
  if (gpu_single(g) && !synced && !gen_gpu_private(g, n))
    gen_barrier(g);
}
static void sync_after(gen *g, const ts_node *n) {
  if (gpu_single(g) && !gen_gpu_private(g, n)) {
    gen_barrier(g);
    g->synced = true;
  }
}

static MlirBlock single_begin(gen *g) {
  gen_barrier(g);
  g->single = true;
  return gen_if_begin(g, mb_cmpi(&g->b, CMPI_EQ, g->tid, gen_i64(g, 0)));
}

static void single_end(gen *g, MlirBlock join) {
  g->single = false;
  gen_if_end(g, join);
  gen_barrier(g);
}

/* An atomic outside `parallel` on the GPU: thread 0 does it and the old
 * value reaches every thread through shared memory. It is the block's
 * point of order with the other blocks (docs/language.md, "the last
 * block"): a device-scope fence before it (what the block wrote, which
 * the barrier before gave thread 0, is seen by any block that sees the
 * update) and after it (what the blocks that updated before wrote is seen
 * by this block's reads after it). The simulator runs blocks one after
 * another and needs neither; the CPU's atomics are acq_rel already. */
static MlirValue gen_atomic(gen *g, ts_node *n) {
  if (!gpu_single(g))
    return gen_atomic_rmw(g, n);
  MlirValue slot = gen_gpu_broadcast_slot(g, repr(g, n->type));
  MlirBlock join = single_begin(g);
  gen_ptx(g, "fence.acq_rel.gpu;");
  MlirValue r = gen_atomic_rmw(g, n);
  gen_ptx(g, "fence.acq_rel.gpu;");
  mb_store(&g->b, gen_convert(g, r, repr(g, n->type)), slot, gen_i64(g, 0));
  single_end(g, join);
  MlirValue v = mb_load(&g->b, slot, gen_i64(g, 0));
  gen_barrier(g); /* before the slot is used again */
  return v;
}

static MlirValue gen_expr(gen *g, ts_node *n) {
  mb *b = &g->b;
  MlirLocation saved = b->loc;
  b->loc = loc_of(g, n);
  MlirValue v;
  if (n->cval.kind != TS_CONST_NONE) {
    v = const_of(g, n, repr(g, n->type));
    b->loc = saved;
    return v;
  }
  switch (n->kind) {
  case TS_NODE_NAME: {
    ts_symbol *s = n->sym;
    if (!s || !s->user) {
      gen_unsupported(g, n, "this name");
      v = gen_i64(g, 0);
    } else if (s->kind == TS_SYM_VAR) {
      v = mb_load(b, (MlirValue){s->user}, gen_i64(g, 0));
    } else {
      v = (MlirValue){s->user};
    }
    break;
  }
  case TS_NODE_UNARY: v = gen_unary(g, n); break;
  case TS_NODE_BINARY: v = gen_binary(g, n); break;
  case TS_NODE_INDEX: {
    view pool[8], vw;
    int np = 0;
    v = gen_i64(g, 0);
    if (gen_view_of(g, n, &vw, pool, &np))
      gen_view_load(g, &vw, NULL, &v);
    break;
  }
  case TS_NODE_CALL:
    if (n->dtype < TS_DTYPE_COUNT)
      v = gen_cast(g, n);
    else if (n->sym && n->sym->kind == TS_SYM_FN)
      v = gen_fn_call(g, n);
    else if (n->builtin == TS_BUILTIN_ATOMIC_ADD ||
             n->builtin == TS_BUILTIN_ATOMIC_MAX)
      v = gen_atomic(g, n);
    else if (n->builtin == TS_BUILTIN_THREAD_ID)
      v = gen_thread_id(g, n);
    else
      v = gen_builtin(g, n);
    break;
  default: gen_unsupported(g, n, "this expression"); v = gen_i64(g, 0);
  }
  b->loc = saved;
  return v;
}

/* thread_id(): on the GPU the thread's index. On the CPU, where a block is
 * one thread, the index of the GPU thread that would do the same work: in
 * a `parallel`, the one its element is given to; elsewhere thread 0, the
 * one that does a block's stores and atomics on the GPU. */
static MlirValue gen_thread_id(gen *g, ts_node *n) {
  if (g->in_fn) {
    gen_unsupported(g, n, "'thread_id()' in a function");
    return gen_i64(g, 0);
  }
  if (g->gpu || g->tid.ptr)
    return g->tid;
  return gen_i64(g, 0);
}

/* ---- statements ---------------------------------------------------------- */

static void gen_return_cleanup(gen *g) {
  for (int i = 0; i < g->nheap; i++)
    mb_op(&g->b, "memref.dealloc", 1, &g->heap[i], 0, NULL, 0, NULL);
}

static void gen_assign(gen *g, ts_node *n) {
  mb *b = &g->b;
  ts_node *t = n->kids[0], *v = n->kids[1];
  MlirType ct;
  if (t->kind == TS_NODE_NAME)
    ct = repr(g, t->sym->type);
  else
    ct = gen_compute_type(g, t->kids[0]->sym->type->dtype);
  MlirValue val = gen_expr_as(g, v, ct);
  if (n->op != TS_TOK_ASSIGN) {
    MlirValue old = gen_expr_as(g, t, ct);
    bool f = gen_is_float(g, ct);
    const char *name =
        n->op == TS_TOK_PLUS_ASSIGN    ? (f ? "arith.addf" : "arith.addi")
        : n->op == TS_TOK_MINUS_ASSIGN ? (f ? "arith.subf" : "arith.subi")
        : n->op == TS_TOK_STAR_ASSIGN  ? (f ? "arith.mulf" : "arith.muli")
                                       : (f ? "arith.divf" : "arith.divsi");
    val = mb_bin(b, name, old, val);
  }
  if (t->kind == TS_NODE_NAME) {
    mb_store(b, val, (MlirValue){t->sym->user}, gen_i64(g, 0));
    return;
  }
  view pool[8], vw;
  int np = 0;
  if (gen_view_of(g, t, &vw, pool, &np))
    gen_view_store(g, &vw, NULL, val);
}

/* On the GPU, a statement outside `parallel` runs on every thread of the
 * block; one that writes memory (an element of a tile or tensor, an atomic)
 * is done by thread 0 alone, and the block waits for it. */

static void gen_return(gen *g) {
  gen_return_cleanup(g);
  mb_op(&g->b, g->gpu && !g->emu && !g->in_fn ? "gpu.return" : "func.return",
        0, NULL, 0, NULL, 0, NULL);
}

void gen_parallel(gen *g, ts_node *n, bool synced) {
  mb *b = &g->b;
  ts_node *vars = n->kids[0], *exts = n->kids[1];
  loop L[TS_MAX_RANK];
  MlirValue ext[TS_MAX_RANK], k[TS_MAX_RANK];
  uint32_t rank = vars->kid_count;
  for (uint32_t i = 0; i < rank; i++)
    ext[i] = gen_expr_as(g, exts->kids[i], b->i64);
  /* nested parallel statements run inside one thread's element */
  bool dist = gpu_single(g);
  if (dist) {
    sync_before(g, synced, n);
    gen_elem_begin(g, L, n->kids[2], ext, rank, k);
  } else {
    for (uint32_t i = 0; i < rank; i++) {
      gen_loop_begin(g, &L[i], gen_i64(g, 0), ext[i]);
      k[i] = L[i].iv;
    }
  }
  for (uint32_t i = 0; i < rank; i++)
    vars->kids[i]->sym->user = k[i].ptr;
  /* thread_id() on the CPU: the thread the GPU gives this element
   * (element e of the outermost parallel on thread e % threads) */
  bool cpu_tid = !g->gpu && !g->in_fn && g->par == 0 && g->kernel->simt;
  if (cpu_tid) {
    MlirValue e = k[0];
    for (uint32_t i = 1; i < rank; i++)
      e = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", e, ext[i]), k[i]);
    g->tid = mb_bin(b, "arith.remsi", e, gen_i64(g, g->kernel->threads));
  }
  g->par++;
  gen_block(g, n->kids[2]);
  g->par--;
  if (cpu_tid)
    g->tid.ptr = NULL;
  if (dist) {
    gen_elem_end(g, L, rank);
    sync_after(g, n);
  } else {
    gen_loops_end(g, L, rank);
  }
}

void gen_stmt(gen *g, ts_node *n) {
  mb *b = &g->b;
  if (!n || g->failed)
    return;
  b->loc = loc_of(g, n);
  bool synced = g->synced;
  g->synced = false;
  switch (n->kind) {
  case TS_NODE_LET: {
    MlirValue v = gen_expr_as(g, n->kids[1], repr(g, n->sym->type));
    n->sym->user = v.ptr;
    g->synced = synced && ts_expr_pure(n->kids[1]); /* no memory read: the barrier holds */
    break;
  }
  case TS_NODE_VAR: {
    MlirType t = repr(g, n->sym->type);
    MlirValue slot = mb_alloca_entry(b, t, 1);
    mb_store(b, gen_expr_as(g, n->kids[1], t), slot, gen_i64(g, 0));
    n->sym->user = slot.ptr;
    break;
  }
  case TS_NODE_TILE: break; /* allocated at the block's entry */
  case TS_NODE_ASSIGN:
    if (gpu_single(g) && n->kids[0]->kind != TS_NODE_NAME) {
      MlirBlock join = single_begin(g);
      gen_assign(g, n);
      single_end(g, join);
      g->synced = true;
    } else {
      gen_assign(g, n);
    }
    break;
  case TS_NODE_EXPR_STMT: {
    ts_node *c = n->kids[0];
    bool tile_op = c->builtin == TS_BUILTIN_COPY ||
                   c->builtin == TS_BUILTIN_FILL ||
                   c->builtin == TS_BUILTIN_CLEAR ||
                   c->builtin == TS_BUILTIN_GEMM ||
                   c->builtin == TS_BUILTIN_REDUCE_MAX ||
                   c->builtin == TS_BUILTIN_REDUCE_SUM ||
                   c->builtin == TS_BUILTIN_REDUCE_ABSMAX;
    if (tile_op)
      sync_before(g, synced, n);
    switch (c->builtin) {
    case TS_BUILTIN_COPY:
      if (!gen_copy_async(g, c))
        gen_copy(g, c);
      break;
    case TS_BUILTIN_FILL: gen_fill(g, c, false); break;
    case TS_BUILTIN_CLEAR: gen_fill(g, c, true); break;
    case TS_BUILTIN_GEMM:
      if (g->gpu)
        gen_gpu_gemm(g, c);
      else
        gen_gemm(g, c);
      break;
    case TS_BUILTIN_REDUCE_MAX:
    case TS_BUILTIN_REDUCE_SUM:
    case TS_BUILTIN_REDUCE_ABSMAX:
      if (g->gpu)
        gen_gpu_reduce(g, c);
      else
        gen_reduce(g, c);
      break;
    case TS_BUILTIN_BARRIER:
      /* the CPU runs a block in program order; on the GPU every tile op
       * already ends with one */
      if (gpu_single(g)) {
        if (!synced)
          gen_barrier(g);
        g->synced = true;
      }
      break;
    case TS_BUILTIN_PRINT: gen_print(g, c); break;
    case TS_BUILTIN_ASSERT: gen_assert(g, c); break;
    default: gen_expr(g, c); break;
    }
    /* data a tile op wrote crosses threads before the next statement */
    if (tile_op)
      sync_after(g, n);
    break;
  }
  case TS_NODE_PARALLEL:
    if (!gen_parallel_unchecked(g, n, synced))
      gen_parallel(g, n, synced);
    break;
  case TS_NODE_PIPELINED:
    if (gen_pipelined(g, n))
      break;
    __attribute__((fallthrough)); /* a plain loop */
  case TS_NODE_FOR: {
    bool pipe = n->kind == TS_NODE_PIPELINED;
    MlirValue lo = gen_expr_as(g, n->kids[0], b->i64);
    MlirValue hi = gen_expr_as(g, n->kids[1], b->i64);
    int lanes = gen_lanes_begin(g, n, n->kids[pipe ? 3 : 2]);
    loop L;
    gen_loop_begin(g, &L, lo, hi);
    n->sym->user = L.iv.ptr;
    if (g->nloops == MAX_LOOPS) {
      gen_unsupported(g, n, "loops nested this deep");
      return;
    }
    g->loops[g->nloops].brk = L.exit;
    g->loops[g->nloops].cont = L.latch;
    g->loops[g->nloops].var = n->sym;
    g->loops[g->nloops].iv = L.iv;
    g->nloops++;
    gen_block(g, n->kids[pipe ? 3 : 2]);
    g->nloops--;
    gen_loop_end(g, &L);
    gen_lanes_end(g, lanes);
    break;
  }
  case TS_NODE_IF: {
    if (ts_if_taken(n)) {
      /* a condition the front end folded (params): only the branch taken,
       * so that a form a param leaves out changes nothing in the code of
       * the one it selects */
      ts_node *taken = n->kids[ts_if_taken(n)];
      g->synced = synced; /* (it runs where the `if` stands: no barrier of its own) */
      if (taken && taken->kind == TS_NODE_IF)
        gen_stmt(g, taken);
      else if (taken)
        gen_block(g, taken);
      break;
    }
    MlirValue c = gen_expr_as(g, n->kids[0], b->i1);
    MlirBlock then = mb_block(b, 0, NULL), other = mb_block(b, 0, NULL);
    MlirBlock join = mb_block(b, 0, NULL);
    mb_cond_br(b, c, then, other);
    b->cur = then;
    gen_block(g, n->kids[1]);
    mb_br(b, join, 0, NULL);
    b->cur = other;
    /* the other branch starts where the `if` did, not after a barrier that
     * ended the first (a copy opening it needs its own) */
    g->synced = false;
    if (n->kids[2]) {
      if (n->kids[2]->kind == TS_NODE_IF)
        gen_stmt(g, n->kids[2]);
      else
        gen_block(g, n->kids[2]);
    }
    mb_br(b, join, 0, NULL);
    b->cur = join;
    break;
  }
  case TS_NODE_BREAK:
  case TS_NODE_CONTINUE:
    mb_br(b,
          n->kind == TS_NODE_BREAK ? g->loops[g->nloops - 1].brk
                                   : g->loops[g->nloops - 1].cont,
          0, NULL);
    fresh_block(g);
    break;
  case TS_NODE_RETURN: {
    ts_node *v = n->kids ? n->kids[0] : NULL;
    if (g->in_fn && v) {
      MlirValue r = gen_expr_as(g, v, g->fn_result);
      mb_op(b, "func.return", 1, &r, 0, NULL, 0, NULL);
    } else {
      gen_return(g);
    }
    fresh_block(g);
    break;
  }
  case TS_NODE_BLOCK: /* (a tile function's inlined call): no barrier of its own */
    g->synced = synced;
    gen_block(g, n);
    break;
  default: break;
  }
  /* control flow joins paths that did not all end with a barrier */
  if (n->kind == TS_NODE_FOR || n->kind == TS_NODE_PIPELINED ||
      (n->kind == TS_NODE_IF && !ts_if_taken(n))) /* (a folded one: no join) */
    g->synced = false;
}

/* A tile function's parameter bound at its call to a value read from no
 * memory (sema_inline.c): it may be made after what follows it. */
static bool pure_binding(const ts_node *n) {
  return n->kind == TS_NODE_LET && n->op == TS_TOK_FN && ts_expr_pure(n->kids[1]);
}

/* The statement a block begins with, its leading blocks (a tile function's
 * inlined calls) entered and their pure bindings passed; NULL for none. */
static ts_node *block_head(ts_node *b) {
  while (b && b->kind == TS_NODE_BLOCK) {
    uint32_t i = 0;
    while (i < b->kid_count && pure_binding(b->kids[i]))
      i++;
    b = i < b->kid_count ? b->kids[i] : NULL;
  }
  return b;
}

static void gen_block_from(gen *g, ts_node *blk, uint32_t i);

/* The rest of block b, whose head statement (block_head) is made: its
 * bindings, then what follows the head at each level. */
static void gen_after_head(gen *g, ts_node *b) {
  uint32_t i = 0;
  while (pure_binding(b->kids[i]))
    gen_stmt(g, b->kids[i++]);
  if (b->kids[i]->kind == TS_NODE_BLOCK)
    gen_after_head(g, b->kids[i]);
  gen_block_from(g, b, i + 1);
}

static void gen_block_from(gen *g, ts_node *blk, uint32_t i) {
  for (; blk && i < blk->kid_count && !g->failed; i++) {
    ts_node *next = i + 1 < blk->kid_count ? blk->kids[i + 1] : NULL, *head;
    uint32_t last;
    if (gen_ahead(g, blk, i))
      continue; /* the pipelined loop after it zeroes the tile (gen_pipe.c) */
    else if (gen_gemm_in_place(g, blk, i, &last))
      i = last; /* copies and the gemms reading them (gen_tile.c) */
    else if (next && (gen_fused_unchecked(g, blk->kids[i], next) ||
                      gen_fused_reduce(g, blk->kids[i], next)))
      i++; /* both statements in one pass (gen_tile.c; gen_bounds.c) */
    else if (next && next->kind == TS_NODE_BLOCK && (head = block_head(next)) &&
             gen_fused_reduce(g, blk->kids[i], head))
      gen_after_head(g, blk->kids[++i]); /* the same into an inlined call */
    else
      gen_stmt(g, blk->kids[i]);
  }
}

void gen_block(gen *g, ts_node *blk) { gen_block_from(g, blk, 0); }

/* ---- functions and the module -------------------------------------------- */

/* Creates `func.func @name(args) -> results` in the module with an entry
 * block; leaves the builder in that block. */
static MlirOperation new_func(gen *g, MlirModule m, const char *name,
                              intptr_t nargs, const MlirType *args,
                              intptr_t nres, const MlirType *res, bool priv,
                              bool declaration);

void gen_declare(gen *g, const char *name, intptr_t n, const MlirType *args) {
  new_func(g, (MlirModule){0}, name, n, args, 0, NULL, true, true);
}

static MlirOperation new_func(gen *g, MlirModule m, const char *name,
                              intptr_t nargs, const MlirType *args,
                              intptr_t nres, const MlirType *res, bool priv,
                              bool declaration) {
  mb *b = &g->b;
  MlirType ft = mlirFunctionTypeGet(b->ctx, nargs, args, nres, res);
  MlirNamedAttribute attrs[3] = {
      mb_attr(b, "sym_name", mlirStringAttrGet(b->ctx, mb_str(name))),
      mb_attr(b, "function_type", mlirTypeAttrGet(ft)),
      mb_attr(b, "sym_visibility",
              mlirStringAttrGet(b->ctx, mb_str("private"))),
  };
  MlirOperationState st = mlirOperationStateGet(mb_str("func.func"), b->loc);
  MlirRegion r = mlirRegionCreate();
  mlirOperationStateAddOwnedRegions(&st, 1, &r);
  mlirOperationStateAddAttributes(&st, priv ? 3 : 2, attrs);
  MlirOperation f = mlirOperationCreate(&st);
  (void)m;
  mlirBlockAppendOwnedOperation(g->fn_parent, f);
  if (declaration)
    return f;
  b->region = mlirOperationGetRegion(f, 0);
  MlirLocation locs[128];
  for (intptr_t i = 0; i < nargs && i < 128; i++)
    locs[i] = b->loc;
  b->entry = mlirBlockCreate(nargs, args, locs);
  mlirRegionAppendOwnedBlock(b->region, b->entry);
  b->cur = b->entry;
  return f;
}

static void arg_name(char *buf, size_t size, ts_str name, const char *suffix) {
  snprintf(buf, size, "%.*s%s", (int)name.len, name.ptr, suffix);
}

/* Scalar arguments cross the ABI in their compute type, bools as i8. */
static MlirType scalar_abi(gen *g, ts_dtype dt) {
  return dt == TS_DTYPE_BOOL ? g->b.i8 : gen_compute_type(g, dt);
}

/* The argument list of a kernel's functions: tensors, dims, scalars. */
static intptr_t kernel_args(gen *g, const ts_kernel_info *k, bool tensors,
                            MlirType *out) {
  intptr_t n = 0;
  if (tensors)
    for (uint32_t i = 0; i < k->arg_count; i++)
      if (k->args[i]->kind == TS_SYM_TENSOR) {
        int64_t shape[1] = {mlirShapedTypeGetDynamicSize()};
        out[n++] =
            mlirMemRefTypeContiguousGet(gen_storage_type(g, k->args[i]->type->dtype), 1,
                                        shape, mlirAttributeGetNull());
      }
  for (uint32_t i = 0; i < k->dim_count; i++)
    out[n++] = g->b.i64;
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_SCALAR)
      out[n++] = scalar_abi(g, k->args[i]->type->dtype);
  return n;
}

/* Binds the symbols of a kernel to the entry block's arguments. */
static intptr_t bind_args(gen *g, const ts_kernel_info *k, bool tensors) {
  intptr_t n = 0;
  memset(g->atom_set, 0, sizeof g->atom_set);
  if (tensors)
    for (uint32_t i = 0; i < k->arg_count; i++)
      if (k->args[i]->kind == TS_SYM_TENSOR)
        k->args[i]->user = mlirBlockGetArgument(g->b.entry, n++).ptr;
  for (uint32_t i = 0; i < k->dim_count; i++) {
    MlirValue v = mlirBlockGetArgument(g->b.entry, n++);
    k->dims[i]->user = v.ptr;
    if (k->dims[i]->atom < 4096) {
      g->atom_vals[k->dims[i]->atom] = v;
      g->atom_set[k->dims[i]->atom] = true;
    }
  }
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_SCALAR) {
      MlirValue v = mlirBlockGetArgument(g->b.entry, n++);
      if (k->args[i]->type->dtype == TS_DTYPE_BOOL)
        v = mb_cmpi(&g->b, CMPI_NE, v, mb_const_int(&g->b, g->b.i8, 0));
      k->args[i]->user = v.ptr;
    }
  return n;
}

/* Allocates every tile of a kernel body at the block's entry. */
static void alloc_tiles(gen *g, ts_node *n) {
  if (!n || g->failed)
    return;
  if (n->kind == TS_NODE_TILE && n->sym && n->sym->type) {
    const ts_type *t = n->sym->type;
    g->b.loc = loc_of(g, n);
    bool all_const = true;
    int64_t count = 1;
    for (uint32_t i = 0; i < t->rank; i++) {
      if (t->dims[i].term_count)
        all_const = false;
      else if (__builtin_mul_overflow(count, t->dims[i].c, &count))
        count = INT64_MAX;
    }
    MlirType st = gen_storage_type(g, t->dtype);
    int64_t bytes =
        count > INT64_MAX / 8 ? INT64_MAX : count * ts_dtype_bits(t->dtype) / 8;
    if (all_const && bytes <= STACK_TILE_LIMIT) {
      n->sym->user = mb_alloca_entry(&g->b, st, count).ptr;
    } else {
      if (g->nheap == MAX_HEAP) {
        gen_unsupported(g, n, "this many large tiles");
        return;
      }
      MlirValue size = gen_i64(g, 1);
      for (uint32_t i = 0; i < t->rank; i++)
        size =
            mb_bin(&g->b, "arith.muli", size, gen_extent(g, &t->dims[i], n));
      /* at least one element, so that a predicated-off read is in bounds */
      size = mb_bin(&g->b, "arith.maxsi", size, gen_i64(g, 1));
      MlirValue m = mb_alloc(&g->b, "memref.alloc", st, size);
      g->heap[g->nheap++] = m;
      n->sym->user = m.ptr;
    }
    return;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (n->kids[i] && n->kind != TS_NODE_PARALLEL)
      alloc_tiles(g, n->kids[i]);
    else if (n->kids[i] && n->kind == TS_NODE_PARALLEL && i == 2)
      alloc_tiles(g, n->kids[i]);
}

/* The CPU functions of a kernel; without `body`, only @K__grid and
 * @K__scratch (the GPU simulator runs @K__gpu instead). */
static void gen_kernel(gen *g, MlirModule m, const ts_kernel_info *k,
                       bool body) {
  mb *b = &g->b;
  char name[300], sub[320];
  arg_name(name, sizeof name, k->name, "");
  g->kernel = k;
  g->in_fn = false;
  g->tid.ptr = NULL; /* set inside a parallel of a kernel with thread_id() */
  b->loc = loc_of(g, k->node);
  MlirType types[180];
  intptr_t n = kernel_args(g, k, true, types);
  intptr_t nt = 0;
  for (uint32_t i = 0; i < k->arg_count; i++)
    nt += k->args[i]->kind == TS_SYM_TENSOR;

  /* @K__grid(dims, scalars) -> (gx, gy, gz) */
  MlirType i64s[3] = {b->i64, b->i64, b->i64};
  arg_name(sub, sizeof sub, k->name, "__grid");
  new_func(g, m, sub, n - nt, types + nt, 3, i64s, false, false);
  bind_args(g, k, false);
  MlirValue ext[3] = {gen_i64(g, 1), gen_i64(g, 1), gen_i64(g, 1)};
  ts_node *grid = k->node->kids[2];
  for (uint32_t i = 0; grid && i < grid->kid_count && i < 3; i++)
    ext[i] = gen_expr_as(g, grid->kids[i], b->i64);
  mb_op(b, "func.return", 3, ext, 0, NULL, 0, NULL);

  /* @K__scratch(dims, scalars) -> bytes of global scratch one block of the
   * GPU kernel needs (gen_gpu.c places the tiles) */
  arg_name(sub, sizeof sub, k->name, "__scratch");
  new_func(g, m, sub, n - nt, types + nt, 1, i64s, false, false);
  bind_args(g, k, false);
  MlirValue bytes = gen_gpu_scratch_bytes(g, k);
  mb_op(b, "func.return", 1, &bytes, 0, NULL, 0, NULL);
  if (!body)
    return;

  /* @K__block(tensors, dims, scalars, bx, by, bz): one block */
  types[n] = types[n + 1] = types[n + 2] = b->i64;
  arg_name(sub, sizeof sub, k->name, "__block");
  new_func(g, m, sub, n + 3, types, 0, NULL, true, false);
  bind_args(g, k, true);
  for (int i = 0; i < 3; i++)
    g->block_id[i] = mlirBlockGetArgument(b->entry, n + i);
  g->nheap = 0;
  g->nloops = 0;
  alloc_tiles(g, k->node->kids[4]);
  gen_block(g, k->node->kids[4]);
  b->loc = loc_of(g, k->node);
  gen_return_cleanup(g);
  mb_op(b, "func.return", 0, NULL, 0, NULL, 0, NULL);

  /* @K(tensors, dims, scalars, begin, end): blocks [begin, end) */
  types[n] = types[n + 1] = b->i64;
  new_func(g, m, name, n + 2, types, 0, NULL, false, false);
  MlirValue args[160];
  for (intptr_t i = 0; i < n; i++)
    args[i] = mlirBlockGetArgument(b->entry, i);
  MlirNamedAttribute callee =
      mb_attr(b, "callee", mlirFlatSymbolRefAttrGet(b->ctx, mb_str(sub)));
  arg_name(sub, sizeof sub, k->name, "__grid");
  MlirNamedAttribute gcallee =
      mb_attr(b, "callee", mlirFlatSymbolRefAttrGet(b->ctx, mb_str(sub)));
  MlirOperation gc =
      mb_op(b, "func.call", n - nt, args + nt, 3, i64s, 1, &gcallee);
  MlirValue gx = mlirOperationGetResult(gc, 0);
  MlirValue gy = mlirOperationGetResult(gc, 1);
  loop L;
  gen_loop_begin(g, &L, mlirBlockGetArgument(b->entry, n),
                 mlirBlockGetArgument(b->entry, n + 1));
  MlirValue rest = mb_bin(b, "arith.divsi", L.iv, gx);
  args[n] = mb_bin(b, "arith.remsi", L.iv, gx);
  args[n + 1] = mb_bin(b, "arith.remsi", rest, gy);
  args[n + 2] = mb_bin(b, "arith.divsi", rest, gy);
  mb_op(b, "func.call", n + 3, args, 0, NULL, 1, &callee);
  gen_loop_end(g, &L);
  mb_op(b, "func.return", 0, NULL, 0, NULL, 0, NULL);
}

/* The GPU kernel: gpu.func @K(tensors, dims, scalars, scratch: memref<?xi8>,
 * scratch_per_block: i64) kernel; one GPU block runs one block of the grid
 * with the kernel's threads. For the simulator (g->emu) the same body is
 * func.func @K__gpu(..., scratch, scratch_per_block, smem: memref<?xi8>,
 * ctx, tid, bx, by, bz, gx, gy), run by one CPU thread per GPU thread. */
static void gen_kernel_gpu(gen *g, MlirModule m, const ts_kernel_info *k) {
  mb *b = &g->b;
  char name[300];
  arg_name(name, sizeof name, k->name, g->emu ? "__gpu" : "");
  g->kernel = k;
  g->in_fn = false;
  if (!ts_gpu_smem_check(k, g->arch, &g->u->src, g->d)) {
    g->failed = true;
    return;
  }
  b->loc = loc_of(g, k->node);
  MlirType types[180];
  intptr_t n = kernel_args(g, k, true, types);
  int64_t dyn[1] = {mlirShapedTypeGetDynamicSize()};
  types[n] = mlirMemRefTypeContiguousGet(b->i8, 1, dyn, mlirAttributeGetNull());
  types[n + 1] = b->i64;
  intptr_t nx = gen_tma_types(g, k, types + n + 2), e = n + 2 + nx; /* TMA maps, flag */
  if (g->emu) {
    types[e] = types[n];
    for (int i = 1; i < 8; i++)
      types[e + i] = b->i64;
    g->fn_op = new_func(g, m, name, e + 8, types, 0, NULL, false, false);
    bind_args(g, k, true);
    g->emu_smem = mlirBlockGetArgument(b->entry, e);
    g->emu_ctx = mlirBlockGetArgument(b->entry, e + 1);
    g->emu_tid = mlirBlockGetArgument(b->entry, e + 2);
    for (int i = 0; i < 3; i++)
      g->emu_block[i] = mlirBlockGetArgument(b->entry, e + 3 + i);
    for (int i = 0; i < 2; i++)
      g->emu_grid[i] = mlirBlockGetArgument(b->entry, e + 6 + i);
    goto body;
  }
  (void)m;
  MlirType ft = mlirFunctionTypeGet(b->ctx, e, types, 0, NULL);
  int32_t bs[3] = {(int32_t)k->threads, 1, 1};
  MlirNamedAttribute attrs[5] = {
      mb_attr(b, "sym_name", mlirStringAttrGet(b->ctx, mb_str(name))),
      mb_attr(b, "function_type", mlirTypeAttrGet(ft)),
      mb_attr(b, "gpu.kernel", mlirUnitAttrGet(b->ctx)),
      mb_attr(b, "known_block_size", mlirDenseI32ArrayGet(b->ctx, 3, bs)),
      /* the tensor maps' parameters, by value (compiler/pipeline.c) */
      mb_attr(b, "tessera.tmaps", mlirIntegerAttrGet(b->i64, g->ntma)),
  };
  MlirOperationState st = mlirOperationStateGet(mb_str("gpu.func"), b->loc);
  MlirRegion r = mlirRegionCreate();
  mlirOperationStateAddOwnedRegions(&st, 1, &r);
  mlirOperationStateAddAttributes(&st, g->ntma ? 5 : 4, attrs);
  MlirOperation f = mlirOperationCreate(&st);
  mlirBlockAppendOwnedOperation(g->fn_parent, f);
  g->fn_op = f;
  b->region = mlirOperationGetRegion(f, 0);
  MlirLocation locs[180];
  for (intptr_t i = 0; i < e; i++)
    locs[i] = b->loc;
  b->entry = mlirBlockCreate(e, types, locs);
  mlirRegionAppendOwnedBlock(b->region, b->entry);
  b->cur = b->entry;
  bind_args(g, k, true);
body:
  g->threads = k->threads;
  g->tid = gen_gpu_index(g, "gpu.thread_id", 0);
  for (int i = 0; i < 3; i++)
    g->block_id[i] = gen_gpu_index(g, "gpu.block_id", i);
  MlirValue gx = gen_gpu_index(g, "gpu.grid_dim", 0);
  MlirValue gy = gen_gpu_index(g, "gpu.grid_dim", 1);
  MlirValue lin = mb_bin(
      b, "arith.addi", g->block_id[0],
      mb_bin(b, "arith.muli", gx,
             mb_bin(b, "arith.addi", g->block_id[1],
                    mb_bin(b, "arith.muli", gy, g->block_id[2]))));
  gen_tma_bind(g, (int)n + 2);
  g->scratch = mlirBlockGetArgument(b->entry, n);
  g->scratch_at =
      mb_bin(b, "arith.muli", lin, mlirBlockGetArgument(b->entry, n + 1));
  g->nheap = 0;
  g->nloops = 0;
  g->par = 0;
  gen_gpu_tiles(g, k);
  gen_gpu_race_check(g, g->emu);
  gen_block(g, k->node->kids[4]);
  gen_gpu_race_check(g, false);
  b->loc = loc_of(g, k->node);
  gen_return(g);
}

static void gen_helper(gen *g, MlirModule m, ts_node *fn) {
  mb *b = &g->b;
  ts_node *params = fn->kids[0], *result = fn->kids[1];
  char name[300];
  arg_name(name, sizeof name, fn->name, "");
  b->loc = loc_of(g, fn);
  MlirType types[64];
  intptr_t n = 0;
  for (uint32_t i = 0; i < params->kid_count && n < 64; i++)
    types[n++] = gen_compute_type(g, params->kids[i]->kids[0]->dtype);
  bool has = result && result->dtype < TS_DTYPE_COUNT;
  g->fn_result = has ? gen_compute_type(g, result->dtype) : b->i64;
  new_func(g, m, name, n, types, has ? 1 : 0, &g->fn_result, true, false);
  for (uint32_t i = 0; i < params->kid_count && i < 64; i++)
    if (params->kids[i]->sym)
      params->kids[i]->sym->user = mlirBlockGetArgument(b->entry, i).ptr;
  g->kernel = NULL;
  g->in_fn = true;
  g->nheap = 0;
  g->nloops = 0;
  gen_block(g, fn->kids[2]);
  /* The end is reachable only without a result (sema checked). */
  if (has) {
    MlirValue z = gen_is_float(g, g->fn_result)
                      ? mb_const_f32(b, 0.0)
                      : mb_const_int(b, g->fn_result, 0);
    mb_op(b, "func.return", 1, &z, 0, NULL, 0, NULL);
  } else {
    mb_op(b, "func.return", 0, NULL, 0, NULL, 0, NULL);
  }
  g->in_fn = false;
}

/* The gpu.module @tessera [#nvvm.target<chip = ...>] of a GPU module; its
 * body is where the kernels go. */
static MlirBlock gpu_module(gen *g, MlirModule m, const char *chip) {
  mb *b = &g->b;
  mlirOperationSetAttributeByName(mlirModuleGetOperation(m),
                                  mb_str("gpu.container_module"),
                                  mlirUnitAttrGet(b->ctx));
  char target[128];
  snprintf(target, sizeof target, "[#nvvm.target<chip = \"%s\">]", chip);
  MlirNamedAttribute attrs[2] = {
      mb_attr(b, "sym_name", mlirStringAttrGet(b->ctx, mb_str("tessera"))),
      mb_attr(b, "targets", mlirAttributeParseGet(b->ctx, mb_str(target))),
  };
  MlirOperationState st = mlirOperationStateGet(mb_str("gpu.module"), b->loc);
  MlirRegion r = mlirRegionCreate();
  MlirBlock body = mlirBlockCreate(0, NULL, NULL);
  mlirRegionAppendOwnedBlock(r, body);
  mlirOperationStateAddOwnedRegions(&st, 1, &r);
  mlirOperationStateAddAttributes(&st, 2, attrs);
  mlirBlockAppendOwnedOperation(mlirModuleGetBody(m), mlirOperationCreate(&st));
  return body;
}

typedef enum { GEN_CPU, GEN_CPU_GPUSIM, GEN_CPU_HOST, GEN_GPU } gen_mode;

/* The module of every kernel of `u` (or the one named) for a target: the
 * CPU functions, the CPU functions plus the simulator's @K__gpu, the host
 * functions alone, or a gpu.module for `chip`. */
static ts_status gen_module(mb_ctx_t ctx, ts_unit *u, const char *only,
                            gen_mode mode, const char *chip, ts_diags *diags,
                            MlirModule *out) {
  gen *g = calloc(1, sizeof *g);
  if (!g)
    return ts_status_nomem();
  g->b.ctx = ctx;
  mb_init_types(&g->b);
  g->u = u;
  g->d = diags;
  g->b.loc = mlirLocationFileLineColGet(ctx, mb_str(u->src.name), 1, 1);
  MlirModule m = mlirModuleCreateEmpty(g->b.loc);
  g->fn_parent = mlirModuleGetBody(m);
  g->wgmma = chip && !strcmp(chip, "sm_90a");
  g->arch = chip;
  if (mode == GEN_GPU) {
    g->gpu = true;
    g->fn_parent = gpu_module(g, m, chip);
  } else if (mode == GEN_CPU_GPUSIM) { /* runtime/gpusim.c gives the JIT these */
    static const char *const sim[][3] = { /* name, arguments, result: l i64, i i32, f f32 */
        {"ts_gpusim_wgmma", "lllllii", ""}, {"ts_gpusim_wgmma_sync", "lli", ""},
        {"ts_gpusim_barrier", "l", ""},     {"ts_gpusim_shuffle", "llii", "i"},
        {"ts_gpusim_mma", "lliiiiiiffffi", ""}, {"ts_gpusim_mma_d", "lli", "f"},
        {"ts_gpusim_mma_s8", "lliiiiiiiiii", ""}, {"ts_gpusim_mma_di", "lli", "i"},
        {"ts_gpusim_ldmatrix", "llli", ""}, {"ts_gpusim_ldmatrix_r", "lli", "i"},
        {"ts_gpusim_tma", "lllllll", ""},   {"ts_gpusim_mbar", "llili", ""},
        {"ts_gpusim_cp", "lll", ""},       {"ts_gpusim_access", "llli", ""}};
    for (size_t i = 0; i < sizeof sim / sizeof sim[0]; i++) {
      MlirType t[16];
      intptr_t n = 0;
      for (const char *c = sim[i][1]; *c; c++)
        t[n++] = *c == 'l' ? g->b.i64 : *c == 'i' ? g->b.i32 : g->b.f32;
      MlirType r = sim[i][2][0] == 'i' ? g->b.i32 : g->b.f32;
      new_func(g, m, sim[i][0], n, t, sim[i][2][0] ? 1 : 0, &r, true, true);
    }
  }
  ts_node *root = u->root;
  for (uint32_t i = 0; i < root->kid_count && !g->failed; i++)
    if (root->kids[i]->kind == TS_NODE_FN && !ts_fn_is_tile(root->kids[i]))
      gen_helper(g, m, root->kids[i]); /* (tile functions are inlined by sema) */
  for (uint32_t i = 0; i < u->kernel_count && !g->failed; i++) {
    const ts_kernel_info *k = &u->kernels[i];
    if (only && !ts_str_eq_cstr(k->name, only))
      continue;
    if (mode == GEN_GPU) {
      gen_kernel_gpu(g, m, k);
      continue;
    }
    gen_kernel(g, m, k, mode == GEN_CPU);
    if (mode == GEN_CPU_GPUSIM && !g->failed) {
      g->gpu = g->emu = true;
      gen_kernel_gpu(g, m, k);
      g->gpu = g->emu = false;
    }
  }
  bool failed = g->failed;
  free(g);
  if (failed) {
    mlirModuleDestroy(m);
    return ts_status_make(TS_ERR_PROGRAM, "the kernel cannot be lowered");
  }
  *out = m;
  return NULL;
}

ts_status ts_gen_cpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     const char *sim_chip, bool host, ts_diags *diags, MlirModule *out) {
  return gen_module(ctx, u, only, sim_chip ? GEN_CPU_GPUSIM : host ? GEN_CPU_HOST : GEN_CPU,
                    sim_chip, diags, out);
}

ts_status ts_gen_gpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     const char *chip, ts_diags *diags, MlirModule *out) {
  return gen_module(ctx, u, only, GEN_GPU, chip, diags, out);
}
