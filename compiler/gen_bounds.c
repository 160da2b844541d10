/* gen_bounds.c - the element accesses a CPU `parallel` statement makes
 * without their range checks.
 *
 * Each element access checks its indices (out of range reads 0 and writes
 * nothing, docs/language.md): a compare, a select and a masked load or a
 * branch per access, which in an elementwise body cost more than its
 * arithmetic and keep LLVM from vectorizing the loop. Before a parallel
 * statement on the CPU, each index of each element access in its body
 * (tensor or tile, every index a scalar) is bounded over the whole
 * statement by interval arithmetic: the statement's indices run over
 * 0 .. extent - 1, an inner loop's over its bounds', an inner `let` takes
 * its value's bounds, and a value fixed before the statement (a dim, a
 * param, block_id, an outer let or loop index) is its own bound. `+`, `-`,
 * `*`, unary `-`, `/` and `%` by a positive constant, `>>` and `<<` by a
 * constant, `&` with a non-negative constant, min, max and select are
 * bounded; anything else (a load, a `var`, an i32 value) leaves its access
 * checked. Then `if (every bounded access lies inside its extents) { the
 * statement with those accesses unchecked } else { the statement as
 * written }`. An access whose every index lies inside passes its check
 * anyway: the same values, the same bits. An `if` whose condition
 * compares integers (`t0 + i < T && d < DM`, a conjunction) bounds each
 * compared expression in its first branch, wherever an index is the same
 * expression; other conditions are not used, so an edge block whose
 * guarded accesses would go past the end may take the checked copy. A parallel
 * statement that gen_fused_reduce runs with the reduce after it is
 * versioned the same way, the pair in each copy. */
#include "compiler/gen_internal.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_INNER = 128, MAX_ACCESS = 256, MAX_DEPTH = 48, MAX_FACTS = 32 };

typedef struct span {
  MlirValue lo, hi;
} span;

typedef struct fact {
  const ts_node *e;  /* an expression an enclosing `if` compares */
  MlirValue lo, hi; /* (NULL: no bound that way) */
} fact;

typedef struct proof {
  gen *g;
  ts_node *par;
  const ts_node *inner[MAX_INNER]; /* declarations inside the statement */
  span memo[MAX_INNER];
  bool have[MAX_INNER], busy[MAX_INNER];
  int ninner;
  bool overflow;
  fact facts[MAX_FACTS]; /* what the enclosing `if`s' conditions say */
  int nfacts;
  ts_node *acc[MAX_ACCESS]; /* the accesses bounded inside */
  int nacc;
  MlirValue ok;
} proof;

static void collect_inner(proof *p, ts_node *n) {
  if (!n)
    return;
  bool decl = n->kind == TS_NODE_LET || n->kind == TS_NODE_VAR || n->kind == TS_NODE_FOR ||
              n->kind == TS_NODE_PIPELINED;
  if (decl) {
    if (p->ninner == MAX_INNER)
      p->overflow = true;
    else
      p->inner[p->ninner++] = n;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i))
      collect_inner(p, n->kids[i]);
}

static int inner_of(const proof *p, const ts_symbol *s) {
  for (int i = 0; i < p->ninner; i++)
    if (s->decl == p->inner[i])
      return i;
  return -1;
}

static int par_var(const proof *p, const ts_symbol *s) {
  ts_node *vars = p->par->kids[0];
  for (uint32_t i = 0; i < vars->kid_count; i++)
    if (vars->kids[i]->sym == s)
      return (int)i;
  return -1;
}

static bool is_i64(const ts_node *e) {
  return e->type && e->type->rank == 0 && e->type->dtype == TS_DTYPE_I64;
}

/* Whether e's value is fixed before the statement: no memory read, no
 * variable, nothing declared inside, no thread_id. */
static bool invariant(const proof *p, const ts_node *e) {
  if (!e)
    return true;
  if (e->kind == TS_NODE_NAME) {
    const ts_symbol *s = e->sym;
    if (!s || s->kind == TS_SYM_VAR || s->kind == TS_SYM_TILE || s->kind == TS_SYM_TENSOR ||
        s->kind == TS_SYM_FN || par_var(p, s) >= 0 || inner_of(p, s) >= 0)
      return false;
  }
  if (e->kind == TS_NODE_INDEX || e->kind == TS_NODE_SLICE ||
      (e->kind == TS_NODE_CALL && e->builtin != TS_BUILTIN_BLOCK_ID &&
       e->builtin != TS_BUILTIN_MIN && e->builtin != TS_BUILTIN_MAX &&
       e->builtin != TS_BUILTIN_CEILDIV && e->builtin != TS_BUILTIN_SELECT &&
       e->dtype >= TS_DTYPE_COUNT))
    return false;
  for (uint32_t i = 0; i < e->kid_count; i++)
    if (!invariant(p, e->kids[i]))
      return false;
  return true;
}

static MlirValue bin(proof *p, const char *op, MlirValue x, MlirValue y) {
  return mb_bin(&p->g->b, op, x, y);
}

static bool bound(proof *p, ts_node *e, span *out, int depth);

/* A constant of e, if it has one. */
static bool constant(const ts_node *e, int64_t *c) {
  if (e->cval.kind != TS_CONST_INT)
    return false;
  *c = e->cval.i;
  return true;
}

static bool bound_binary(proof *p, ts_node *e, span *out, int depth) {
  span x, y;
  int64_t c = 0;
  ts_node *r = e->kids[1];
  bool rc = constant(r, &c);
  if (!bound(p, e->kids[0], &x, depth + 1))
    return false;
  switch (e->op) {
  case TS_TOK_PLUS:
  case TS_TOK_MINUS:
    if (!bound(p, r, &y, depth + 1))
      return false;
    if (e->op == TS_TOK_PLUS)
      *out = (span){bin(p, "arith.addi", x.lo, y.lo), bin(p, "arith.addi", x.hi, y.hi)};
    else
      *out = (span){bin(p, "arith.subi", x.lo, y.hi), bin(p, "arith.subi", x.hi, y.lo)};
    return true;
  case TS_TOK_STAR: {
    if (!bound(p, r, &y, depth + 1))
      return false;
    MlirValue a = bin(p, "arith.muli", x.lo, y.lo), b = bin(p, "arith.muli", x.lo, y.hi);
    MlirValue c2 = bin(p, "arith.muli", x.hi, y.lo), d = bin(p, "arith.muli", x.hi, y.hi);
    out->lo = bin(p, "arith.minsi", bin(p, "arith.minsi", a, b), bin(p, "arith.minsi", c2, d));
    out->hi = bin(p, "arith.maxsi", bin(p, "arith.maxsi", a, b), bin(p, "arith.maxsi", c2, d));
    return true;
  }
  case TS_TOK_SLASH: /* truncating: monotonic for a positive divisor */
  case TS_TOK_SHR: { /* arithmetic: monotonic */
    bool div = e->op == TS_TOK_SLASH;
    if (!rc || (div ? c < 1 : c < 0 || c > 62))
      return false;
    const char *op = div ? "arith.divsi" : "arith.shrsi";
    MlirValue cv = gen_i64(p->g, c);
    *out = (span){bin(p, op, x.lo, cv), bin(p, op, x.hi, cv)};
    return true;
  }
  case TS_TOK_SHL: {
    if (!rc || c < 0 || c > 30)
      return false;
    MlirValue m = gen_i64(p->g, (int64_t)1 << c);
    *out = (span){bin(p, "arith.muli", x.lo, m), bin(p, "arith.muli", x.hi, m)};
    return true;
  }
  case TS_TOK_PERCENT: { /* remsi: [0, min(hi, c - 1)] from lo >= 0, else |r| < c */
    if (!rc || c < 1)
      return false;
    mb *b = &p->g->b;
    MlirValue z = gen_i64(p->g, 0), top = gen_i64(p->g, c - 1);
    MlirValue nonneg = mb_cmpi(b, CMPI_SGE, x.lo, z);
    out->lo = mb_select(b, nonneg, z, gen_i64(p->g, 1 - c));
    out->hi = mb_select(b, nonneg, bin(p, "arith.minsi", x.hi, top), top);
    return true;
  }
  case TS_TOK_AMP: /* with a non-negative mask m: 0 .. m */
    if (!rc || c < 0)
      return false;
    *out = (span){gen_i64(p->g, 0), gen_i64(p->g, c)};
    return true;
  default: return false;
  }
}

static bool bound_call(proof *p, ts_node *e, span *out, int depth) {
  span x, y;
  switch (e->builtin) {
  case TS_BUILTIN_MIN:
  case TS_BUILTIN_MAX: {
    if (!bound(p, e->kids[0], &x, depth + 1) || !bound(p, e->kids[1], &y, depth + 1))
      return false;
    const char *op = e->builtin == TS_BUILTIN_MIN ? "arith.minsi" : "arith.maxsi";
    *out = (span){bin(p, op, x.lo, y.lo), bin(p, op, x.hi, y.hi)};
    return true;
  }
  case TS_BUILTIN_SELECT: /* either value, whichever the condition */
    if (!bound(p, e->kids[1], &x, depth + 1) || !bound(p, e->kids[2], &y, depth + 1))
      return false;
    *out = (span){bin(p, "arith.minsi", x.lo, y.lo), bin(p, "arith.maxsi", x.hi, y.hi)};
    return true;
  default:
    /* i64(x) of an i64 x */
    if (e->dtype == TS_DTYPE_I64 && e->kid_count == 1 && is_i64(e->kids[0]))
      return bound(p, e->kids[0], out, depth + 1);
    return false;
  }
}

/* Bounds of the statement's index, inner let or inner loop index s (a
 * let's bounds are kept while no `if` refines them). */
static bool bound_name(proof *p, const ts_symbol *s, span *out, int depth) {
  int v = par_var(p, s);
  if (v >= 0) {
    span x;
    if (!bound(p, p->par->kids[1]->kids[v], &x, depth + 1))
      return false;
    *out = (span){gen_i64(p->g, 0), bin(p, "arith.subi", x.hi, gen_i64(p->g, 1))};
    return true;
  }
  int i = inner_of(p, s);
  if (i < 0 || p->busy[i])
    return false;
  if (p->have[i] && !p->nfacts) {
    *out = p->memo[i];
    return true;
  }
  const ts_node *d = p->inner[i];
  span lo, hi;
  bool ok = false;
  p->busy[i] = true;
  if (d->kind == TS_NODE_LET) {
    ok = bound(p, d->kids[1], out, depth + 1);
  } else if (d->kind == TS_NODE_FOR || d->kind == TS_NODE_PIPELINED) {
    ok = bound(p, d->kids[0], &lo, depth + 1) && bound(p, d->kids[1], &hi, depth + 1);
    if (ok)
      *out = (span){lo.lo, bin(p, "arith.subi", hi.hi, gen_i64(p->g, 1))};
  }
  p->busy[i] = false;
  if (ok && !p->nfacts) {
    p->memo[i] = *out;
    p->have[i] = true;
  }
  return ok;
}

/* Whether a and b are the same expression (the same names, operators and
 * constants). */
static bool same_expr(const ts_node *a, const ts_node *b) {
  if (a == b)
    return true;
  if (!a || !b || a->kind != b->kind || a->op != b->op || a->kid_count != b->kid_count ||
      a->cval.kind != b->cval.kind || a->cval.i != b->cval.i || a->cval.b != b->cval.b ||
      (a->cval.kind == TS_CONST_FLOAT && a->cval.f != b->cval.f) ||
      (a->kind == TS_NODE_NAME && a->sym != b->sym) ||
      (a->kind == TS_NODE_CALL && (a->builtin != b->builtin || a->dtype != b->dtype)))
    return false;
  for (uint32_t i = 0; i < a->kid_count; i++)
    if (!same_expr(a->kids[i], b->kids[i]))
      return false;
  return true;
}

static bool bound_raw(proof *p, ts_node *e, span *out, int depth);

/* Bounds of integer expression e over the statement's every index, within
 * what the enclosing `if`s say of it. */
static bool bound(proof *p, ts_node *e, span *out, int depth) {
  if (!bound_raw(p, e, out, depth))
    return false;
  for (int f = 0; f < p->nfacts; f++)
    if (same_expr(p->facts[f].e, e)) {
      if (p->facts[f].lo.ptr)
        out->lo = bin(p, "arith.maxsi", out->lo, p->facts[f].lo);
      if (p->facts[f].hi.ptr)
        out->hi = bin(p, "arith.minsi", out->hi, p->facts[f].hi);
    }
  return true;
}

static bool bound_raw(proof *p, ts_node *e, span *out, int depth) {
  int64_t c;
  if (depth > MAX_DEPTH)
    return false;
  if (constant(e, &c)) {
    out->lo = out->hi = gen_i64(p->g, c);
    return true;
  }
  if (!is_i64(e))
    return false;
  if (invariant(p, e)) {
    out->lo = out->hi = gen_expr_as(p->g, e, p->g->b.i64);
    return true;
  }
  switch (e->kind) {
  case TS_NODE_NAME: return bound_name(p, e->sym, out, depth);
  case TS_NODE_UNARY: {
    span x;
    if (e->op != TS_TOK_MINUS || !bound(p, e->kids[0], &x, depth + 1))
      return false;
    MlirValue z = gen_i64(p->g, 0);
    *out = (span){bin(p, "arith.subi", z, x.hi), bin(p, "arith.subi", z, x.lo)};
    return true;
  }
  case TS_NODE_BINARY: return bound_binary(p, e, out, depth);
  case TS_NODE_CALL: return bound_call(p, e, out, depth);
  default: return false;
  }
}

bool gen_access_in_range(const ts_node *n) {
  /* t[i, j] with each index a loop over exactly that dim of a tile */
  const ts_symbol *t = n->kids[0]->sym;
  if (!t || t->kind != TS_SYM_TILE || n->kid_count != t->type->rank + 1)
    return false;
  for (uint32_t i = 0; i < t->type->rank; i++) {
    const ts_node *k = n->kids[i + 1];
    if (k->kind != TS_NODE_NAME || !k->sym || k->sym->kind != TS_SYM_LOOP ||
        !k->sym->has_range || !ts_extent_equal(&k->sym->range, &t->type->dims[i]))
      return false;
  }
  return true;
}

/* Element access n (`t[i, j]`, every index a scalar, not already known to
 * be in range): bounded inside its extents, its condition and'ed into
 * p->ok. */
static void try_access(proof *p, ts_node *n) {
  ts_symbol *t = n->kids[0]->sym;
  if (!t || (t->kind != TS_SYM_TENSOR && t->kind != TS_SYM_TILE) || !t->type ||
      n->kid_count != t->type->rank + 1 || p->nacc == MAX_ACCESS || gen_access_in_range(n))
    return;
  for (uint32_t i = 1; i < n->kid_count; i++)
    if (n->kids[i]->kind == TS_NODE_SLICE || n->kids[i]->kind == TS_NODE_INDEX ||
        !is_i64(n->kids[i]))
      return;
  mb *b = &p->g->b;
  MlirValue ok = mb_const_int(b, b->i1, 1);
  for (uint32_t d = 0; d < t->type->rank; d++) {
    span s;
    if (!bound(p, n->kids[d + 1], &s, 0))
      return;
    MlirValue ext = gen_extent(p->g, &t->type->dims[d], n);
    ok = bin(p, "arith.andi", ok, mb_cmpi(b, CMPI_SGE, s.lo, gen_i64(p->g, 0)));
    ok = bin(p, "arith.andi", ok, mb_cmpi(b, CMPI_SLT, s.hi, ext));
  }
  p->ok = p->nacc ? bin(p, "arith.andi", p->ok, ok) : ok;
  p->acc[p->nacc++] = n;
}

/* Whether e keeps its value through an `if`'s branch: no `var`, no
 * memory read (the branch may write it). */
static bool steady(const ts_node *e) {
  if (e->kind == TS_NODE_NAME && e->sym && e->sym->kind == TS_SYM_VAR)
    return false;
  if (e->kind == TS_NODE_INDEX || (e->kind == TS_NODE_CALL && !ts_expr_pure(e)))
    return false;
  for (uint32_t i = 0; i < e->kid_count; i++)
    if (e->kids[i] && !steady(e->kids[i]))
      return false;
  return ts_expr_pure(e);
}

static void add_fact(proof *p, const ts_node *e, MlirValue lo, MlirValue hi) {
  if (p->nfacts < MAX_FACTS && steady(e))
    p->facts[p->nfacts++] = (fact){e, lo, hi};
}

/* The facts an `if`'s condition c gives its first branch: each comparison
 * of a conjunction bounds each side by the other (`t0 + i < T`: the
 * expression t0 + i, wherever an index is the same expression). */
static void add_facts(proof *p, ts_node *c) {
  if (c->kind != TS_NODE_BINARY)
    return;
  if (c->op == TS_TOK_ANDAND) {
    add_facts(p, c->kids[0]);
    add_facts(p, c->kids[1]);
    return;
  }
  bool lt = c->op == TS_TOK_LT || c->op == TS_TOK_LE, gt = c->op == TS_TOK_GT || c->op == TS_TOK_GE;
  if (!(lt || gt) || !is_i64(c->kids[0]) || !is_i64(c->kids[1]))
    return;
  /* as `a < b` or `a <= b` */
  ts_node *a = c->kids[lt ? 0 : 1], *b = c->kids[lt ? 1 : 0];
  int64_t strict = c->op == TS_TOK_LT || c->op == TS_TOK_GT;
  span x, y;
  MlirValue none = {NULL};
  bool ia = invariant(p, a), ib = invariant(p, b);
  if (!ia && bound(p, b, &y, 0))
    add_fact(p, a, none, bin(p, "arith.subi", y.hi, gen_i64(p->g, strict)));
  if (!ib && bound(p, a, &x, 0))
    add_fact(p, b, bin(p, "arith.addi", x.lo, gen_i64(p->g, strict)), none);
}

static void find_accesses(proof *p, ts_node *n) {
  if (!n)
    return;
  if (n->kind == TS_NODE_INDEX && n->kid_count > 1)
    try_access(p, n);
  if (n->kind == TS_NODE_IF && ts_if_taken(n)) { /* folded: the branch generated */
    find_accesses(p, n->kids[ts_if_taken(n)]);
    return;
  }
  if (n->kind == TS_NODE_IF) {
    find_accesses(p, n->kids[0]);
    int had = p->nfacts;
    add_facts(p, n->kids[0]);
    find_accesses(p, n->kids[1]);
    p->nfacts = had;
    find_accesses(p, n->kids[2]);
    return;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    find_accesses(p, n->kids[i]);
}

void gen_version_br(gen *g, MlirValue ok, MlirBlock in, MlirBlock out) {
  mb *b = &g->b;
  mb_cond_br(b, mb_op1(b, "llvm.freeze", 1, &ok, b->i1), in, out);
}

/* Parallel statement par's accesses bounded; where any is, `if (they lie
 * inside) { make() with them unchecked } else { make() }` and true. */
static bool versioned(gen *g, ts_node *par, void (*make)(gen *, void *), void *ctx) {
  if (g->gpu || g->par || g->proven || !ts_env_flag("TESSERA_CPU_BOUNDS", true))
    return false;
  proof *p = calloc(1, sizeof *p);
  if (!p)
    return false;
  p->g = g;
  p->par = par;
  mb *b = &g->b;
  collect_inner(p, par->kids[2]);
  if (!p->overflow)
    find_accesses(p, par->kids[2]);
  if (p->overflow || p->nacc == 0) {
    free(p);
    return false;
  }
  MlirBlock fast = mb_block(b, 0, NULL), slow = mb_block(b, 0, NULL);
  MlirBlock join = mb_block(b, 0, NULL);
  gen_version_br(g, p->ok, fast, slow);
  /* (the count, for --emit mlir readers: tests/lua/bounds.lua) */
  mlirOperationSetAttributeByName(mlirBlockGetTerminator(b->cur), mb_str("tessera.unchecked"),
                                  mlirIntegerAttrGet(b->i64, p->nacc));
  b->cur = fast;
  g->proven = p->acc;
  g->nproven = p->nacc;
  make(g, ctx);
  g->proven = NULL;
  g->nproven = 0;
  mb_br(b, join, 0, NULL);
  b->cur = slow;
  make(g, ctx);
  mb_br(b, join, 0, NULL);
  b->cur = join;
  free(p);
  return true;
}

typedef struct made {
  ts_node *n, *next;
  bool synced;
} made;

static void make_parallel(gen *g, void *ctx) {
  made *m = ctx;
  gen_parallel(g, m->n, m->synced);
}

bool gen_parallel_unchecked(gen *g, ts_node *n, bool synced) {
  made m = {n, NULL, synced};
  return versioned(g, n, make_parallel, &m);
}

static void make_fused(gen *g, void *ctx) {
  made *m = ctx;
  gen_fused_reduce(g, m->n, m->next);
}

bool gen_fused_unchecked(gen *g, ts_node *first, ts_node *next) {
  made m = {first, next, false};
  return first->kind == TS_NODE_PARALLEL && gen_fused_reduce_fits(g, first, next) &&
         versioned(g, first, make_fused, &m);
}

bool gen_access_unchecked(const gen *g, const ts_node *n) {
  for (int i = 0; i < g->nproven; i++)
    if (g->proven[i] == n)
      return true;
  return false;
}
