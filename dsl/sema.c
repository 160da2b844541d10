/* sema.c - semantic checks of a parsed unit: scopes and names, params and
 * their -D overrides, kernel signatures (tensor args with symbolic dims,
 * grid, threads), tile declarations, statements, helper functions and the
 * recursion check. Expressions are in sema_expr.c, tile ops in
 * sema_tile.c. Everything reports into the unit's diagnostic sink and keeps
 * going; it stops once the sink is full. */
#include "dsl/sema.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The most shared memory one block may use on sm_90 (227 KiB). */
#define SHARED_LIMIT 232448

void *sema_alloc(sema *s, size_t size) {
  void *p = ts_arena_alloc(&s->u->arena, size);
  if (!p)
    s->nomem = true;
  return p;
}

ts_diag *sema_error(sema *s, ts_span sp, const char *fmt, ...) {
  if (ts_diags_full(s->d))
    return NULL;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ts_diag_error(s->d, s->src, sp, "%s", msg);
}

const char *sema_sym_kind_name(ts_symbol_kind k) {
  switch (k) {
  case TS_SYM_TENSOR: return "tensor";
  case TS_SYM_SCALAR: return "scalar argument";
  case TS_SYM_DIM: return "dim";
  case TS_SYM_PARAM: return "param";
  case TS_SYM_LET: return "let";
  case TS_SYM_VAR: return "var";
  case TS_SYM_TILE: return "tile";
  case TS_SYM_LOOP: return "loop index";
  case TS_SYM_FN: return "function";
  case TS_SYM_CONST: return "constant";
  }
  return "name";
}

void sema_note_decl(sema *s, ts_diag *d, const ts_symbol *sym) {
  if (!d || !sym || !sym->decl)
    return;
  ts_span sp = sym->decl->span;
  ts_diag_note(s->d, d, s->src, sp, "'%.*s' is declared here",
               (int)(sym->name.len > 40 ? 40 : sym->name.len), sym->name.ptr);
}

/* ---- scopes
 * ------------------------------------------------------------------- */

void sema_push_scope(sema *s, scope *sc, bool is_function) {
  ts_map_init(&sc->names, s->u->alloc);
  sc->parent = s->sc;
  sc->is_function = is_function;
  s->sc = sc;
}

void sema_pop_scope(sema *s) {
  scope *sc = s->sc;
  s->sc = sc->parent;
  ts_map_deinit(&sc->names);
}

ts_symbol *sema_lookup(sema *s, ts_str name) {
  for (scope *sc = s->sc; sc; sc = sc->parent) {
    ts_symbol *sym = ts_map_get(&sc->names, name);
    if (sym)
      return sym;
  }
  return NULL;
}

/* Declares a name in the current scope. A name already visible (other than
 * a global function seen from a kernel's inner scope) or a built-in's name
 * is an error. */
ts_symbol *sema_declare(sema *s, ts_symbol_kind kind, ts_str name,
                        ts_node *decl, const ts_type *type) {
  if (name.len == 0)
    return NULL;
  ts_symbol *old = sema_lookup(s, name);
  if (old && old->kind == TS_SYM_FN && old->decl &&
      old->decl->kind == TS_NODE_KERNEL && s->sc != &s->globals)
    old = NULL; /* a kernel's name does not reserve it inside bodies */
  if (old) {
    ts_diag *d = sema_error(s, decl->span, "'%.*s' is already defined",
                            (int)(name.len > 40 ? 40 : name.len), name.ptr);
    if (old->kind == TS_SYM_CONST)
      ts_diag_hint(s->d, d, "'%.*s' is a built-in constant", (int)name.len,
                   name.ptr);
    else
      sema_note_decl(s, d, old);
    return NULL;
  }
  if (ts_builtin_lookup(name) != TS_BUILTIN_NONE) {
    sema_error(s, decl->span, "'%.*s' is the name of a built-in operation",
               (int)name.len, name.ptr);
    return NULL;
  }
  ts_symbol *sym = sema_alloc(s, sizeof *sym);
  if (!sym)
    return NULL;
  sym->kind = kind;
  sym->name = name;
  sym->decl = decl;
  sym->type = type;
  ts_status st = ts_map_put(&s->sc->names, name, sym);
  if (st) {
    ts_status_free(st);
    s->nomem = true;
    return NULL;
  }
  return sym;
}

/* Edit distance, for "did you mean"; capped for long names. */
static size_t distance(ts_str a, ts_str b) {
  if (a.len > 64 || b.len > 64)
    return SIZE_MAX;
  size_t row[65];
  for (size_t j = 0; j <= b.len; j++)
    row[j] = j;
  for (size_t i = 1; i <= a.len; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.len; j++) {
      size_t up = row[j];
      size_t cost = a.ptr[i - 1] == b.ptr[j - 1] ? 0 : 1;
      size_t v = diag + cost;
      if (row[j] + 1 < v)
        v = row[j] + 1;
      if (row[j - 1] + 1 < v)
        v = row[j - 1] + 1;
      row[j] = v;
      diag = up;
    }
  }
  return row[b.len];
}

void sema_unknown_name(sema *s, ts_node *n) {
  ts_str name = n->name;
  ts_diag *d = sema_error(
      s,
      n->kind == TS_NODE_CALL
          ? (ts_span){n->span.lo, n->span.lo + (uint32_t)name.len}
          : n->span,
      "unknown name '%.*s'", (int)(name.len > 40 ? 40 : name.len), name.ptr);
  if (!d)
    return;
  ts_str best = {NULL, 0};
  size_t best_d = name.len / 3 + 1;
  if (best_d > 3)
    best_d = 3;
  for (scope *sc = s->sc; sc; sc = sc->parent)
    for (size_t i = 0; i < sc->names.cap; i++) {
      ts_str k = sc->names.slots[i].key;
      if (!k.ptr)
        continue;
      size_t dd = distance(name, k);
      if (dd <= best_d && (dd < best_d || !best.ptr)) {
        best = k;
        best_d = dd;
      }
    }
  for (int b = 1; b < TS_BUILTIN_COUNT; b++) {
    ts_str k = ts_str_from(ts_builtin_name((ts_builtin)b));
    size_t dd = distance(name, k);
    if (dd <= best_d && (dd < best_d || !best.ptr)) {
      best = k;
      best_d = dd;
    }
  }
  if (best.ptr)
    ts_diag_hint(s->d, d, "did you mean '%.*s'?", (int)best.len, best.ptr);
}

/* ---- types of declarations
 * ------------------------------------------------------ */

static ts_type *new_type(sema *s, ts_type_kind kind, ts_dtype dt) {
  ts_type *t = sema_alloc(s, sizeof *t);
  if (t) {
    t->kind = kind;
    t->dtype = dt;
  }
  return t;
}

/* ---- statements
 * -------------------------------------------------------------------- */

static bool stopped(sema *s) { return ts_diags_full(s->d) || s->nomem; }

/* How messages name a param override (-D on the command line). */
static const char *define_label(const ts_unit *u) {
  return u->define_label ? u->define_label : "-D";
}

ts_symbol *sema_dtype_param(sema *s, ts_str name) {
  ts_symbol *sym = sema_lookup(s, name);
  if (!sym || sym->kind != TS_SYM_PARAM || sym->cval.kind != TS_CONST_DTYPE)
    return NULL;
  sym->used = true;
  return sym;
}

/* A type written as a name (`x: W[N, K]`, `frag t: W[BM]`) is a dtype
 * param of the kernel: its value (default or -D) becomes the node's dtype.
 * Anything else is reported and the node stays unresolved (dtype
 * TS_DTYPE_COUNT), which the callers skip. */
void sema_resolve_type(sema *s, ts_node *tn) {
  if (!tn || tn->op != TS_TOK_IDENT)
    return;
  ts_symbol *sym = sema_dtype_param(s, tn->name);
  if (sym) {
    tn->sym = sym;
    tn->dtype = sym->cval.dt;
    return;
  }
  sym = sema_lookup(s, tn->name);
  if (sym && sym->type == &sema_error_type)
    return; /* a param whose error is already reported */
  ts_span at = {tn->span.lo, tn->span.lo + (uint32_t)tn->name.len};
  ts_diag *d;
  if (sym) {
    d = sema_error(s, at, "'%.*s' is a %s, not a type",
                   (int)tn->name.len, tn->name.ptr,
                   sema_sym_kind_name(sym->kind));
    sema_note_decl(s, d, sym);
  } else {
    d = sema_error(s, at, "unknown type '%.*s'", (int)tn->name.len,
                   tn->name.ptr);
  }
  ts_diag_hint(s->d, d,
               s->tile_fn ? "a type is an element type such as 'f32', or a "
                            "parameter of the function declared 'W: dtype'"
               : s->kernel ? "a type is an element type such as 'f32', or a "
                             "param of the kernel declared 'W: dtype = bf16'"
                           : "a function's types are element types such as "
                             "'f32' (dtype params belong to kernels and tile functions)");
}

ts_symbol *sema_callee(sema *s, const ts_node *call) {
  return call->dtype >= TS_DTYPE_COUNT ? sema_lookup(s, call->name) : NULL;
}

bool sema_is_tile_fn(const ts_symbol *fn) {
  return fn && fn->kind == TS_SYM_FN && ts_fn_is_tile(fn->decl);
}

static void check_let(sema *s, ts_node *n) {
  ts_node *tn = n->kids[0], *v = n->kids[1];
  ts_symbol *callee = v && v->kind == TS_NODE_CALL ? sema_callee(s, v) : NULL;
  if (sema_is_tile_fn(callee) && callee->decl->kids[1]) {
    sema_inline_result(s, n, v, callee); /* (n becomes a block) */
    return;
  }
  sema_resolve_type(s, tn);
  const ts_type *t = sema_expr(s, v);
  const ts_type *vt = t;
  if (t->kind == TS_TYPE_TILE || t->kind == TS_TYPE_TENSOR) {
    ts_diag *d = sema_error(s, v->span,
                            "a %s holds a scalar, but this is a "
                            "%s",
                            n->kind == TS_NODE_LET ? "'let'" : "'var'",
                            t->kind == TS_TYPE_TILE ? "tile" : "tensor");
    ts_diag_hint(s->d, d, "declare tiles with 'shared' or 'frag'");
    t = &sema_error_type;
  } else if (t->kind != TS_TYPE_SCALAR && t->kind != TS_TYPE_ERROR) {
    sema_error(s, v->span, "this has no value to bind");
    t = &sema_error_type;
  }
  if (tn && tn->dtype < TS_DTYPE_COUNT) {
    if (tn->has_shape) {
      ts_diag *d = sema_error(s, tn->span,
                              "a %s holds a scalar and has no "
                              "shape",
                              n->kind == TS_NODE_LET ? "'let'" : "'var'");
      ts_diag_hint(s->d, d, "declare tiles with 'shared' or 'frag'");
    } else if (t->kind == TS_TYPE_SCALAR && !sema_assignable(tn->dtype, t)) {
      sema_mismatch(s, v->span, "this initial value", tn->dtype, t);
    }
    t = sema_scalar(tn->dtype);
  } else if (t->kind == TS_TYPE_SCALAR) {
    t = sema_scalar(t->dtype);
  }
  bool is_let = n->kind == TS_NODE_LET;
  ts_symbol *sym = sema_declare(s, is_let ? TS_SYM_LET : TS_SYM_VAR, n->name, n, t);
  if (!sym)
    return;
  n->sym = sym;
  n->type = t;
  if (is_let && vt->kind == TS_TYPE_SCALAR && v->cval.kind != TS_CONST_NONE &&
      (!tn || ts_dtype_is_int(t->dtype) == (v->cval.kind == TS_CONST_INT)))
    sym->cval = v->cval;
  sym->atom = sema_new_atom(s, n->name);
}

/* A tile declaration in error still declares its name, with no type to
 * check its uses against: the error is reported once, not as "unknown
 * name" at each use. */
static void tile_in_error(sema *s, ts_node *n) {
  n->type = &sema_error_type;
  if (!sema_lookup(s, n->name)) /* (a name taken: not "already defined" too) */
    n->sym = sema_declare(s, TS_SYM_TILE, n->name, n, &sema_error_type);
}

static void check_tile_decl(sema *s, ts_node *n) {
  ts_node *tn = n->kids[0];
  const char *kw = n->op == TS_TOK_SHARED ? "shared" : "frag";
  if (!s->kernel) {
    sema_error(s, n->span, "'%s' tiles can only be declared in a kernel", kw);
    tile_in_error(s, n);
    return;
  }
  if (s->in_parallel) {
    sema_error(s, n->span, "a tile cannot be declared inside 'parallel'");
    tile_in_error(s, n);
    return;
  }
  sema_resolve_type(s, tn);
  if (!tn || tn->dtype >= TS_DTYPE_COUNT) {
    tile_in_error(s, n);
    return;
  }
  if (!tn->has_shape || tn->kid_count == 0) {
    ts_diag *d = sema_error(s, tn->span, "a tile needs a shape");
    ts_diag_hint(s->d, d, "e.g. '%s t: %s[64, 64]'", kw,
                 ts_dtype_name(tn->dtype));
    tile_in_error(s, n);
    return;
  }
  if (tn->kid_count > TS_MAX_RANK) {
    sema_error(s, tn->span, "a tile has at most %d dims, found %u", TS_MAX_RANK,
               tn->kid_count);
    tile_in_error(s, n);
    return;
  }
  ts_type *t = new_type(s, TS_TYPE_TILE, tn->dtype);
  if (!t)
    return;
  t->scope = n->op == TS_TOK_SHARED ? TS_SCOPE_SHARED : TS_SCOPE_FRAG;
  /* bad: an extent in error, after which the shape means nothing (its
   * uses are not checked against it); ok: no error at all */
  bool ok = true, bad = false, all_const = true;
  int64_t count = 1;
  for (uint32_t i = 0; i < tn->kid_count; i++) {
    ts_node *e = tn->kids[i];
    uint32_t errors = s->d->error_count;
    /* (an extent whose expression reported an error, a constant division
     * by zero, is that error alone: not also "unknown at launch") */
    if (!sema_int_expr(s, e, "a tile extent") || s->d->error_count != errors) {
      ok = false;
      bad = true;
      continue;
    }
    ts_extent x = sema_extent_of(s, e);
    for (uint32_t k = 0; k < x.term_count; k++) {
      uint32_t atom = x.terms[k].atom;
      bool is_dim = false;
      for (uint32_t j = 0; j < s->kernel->dim_count; j++)
        if (s->kernel->dims[j]->atom == atom)
          is_dim = true;
      if (!is_dim) {
        ts_diag *d = sema_error(s, e->span,
                                "a tile extent must be known at "
                                "launch");
        ts_diag_hint(s->d, d,
                     "use params, literals and the dims of the "
                     "kernel's tensors");
        ok = false;
        bad = true;
        break;
      }
    }
    if (sema_extent_is_const(&x)) {
      if (x.c <= 0) {
        sema_error(s, e->span, "a tile extent must be positive, found %lld",
                   (long long)x.c);
        ok = false;
        bad = true;
      } else if (__builtin_mul_overflow(count, x.c, &count)) {
        count = INT64_MAX;
      }
    } else {
      all_const = false;
    }
    t->dims[t->rank++] = x;
  }
  if (ok && all_const && t->scope == TS_SCOPE_SHARED) {
    int64_t bytes =
        count > INT64_MAX / 8 ? INT64_MAX : count * ts_dtype_bits(t->dtype) / 8;
    if (bytes > SHARED_LIMIT - s->shared_size) {
      ts_diag *d = sema_error(s, n->span,
                              "shared tiles need %lld bytes, more "
                              "than the %d bytes a block may use",
                              (long long)(bytes > INT64_MAX - s->shared_size
                                              ? INT64_MAX
                                              : bytes + s->shared_size),
                              SHARED_LIMIT);
      ts_diag_hint(s->d, d,
                   "make the tiles smaller (a smaller block size "
                   "param)");
      ok = false;
    } else {
      s->shared_size += bytes;
    }
  }
  ts_symbol *sym =
      sema_declare(s, TS_SYM_TILE, n->name, n, ok ? t : &sema_error_type);
  if (!ok && !bad && sym)
    sym->type = t; /* keep the shape for later messages (too big, but a shape) */
  n->sym = sym;
  n->type = t;
}

static void check_assign(sema *s, ts_node *n) {
  ts_node *target = n->kids[0], *v = n->kids[1];
  ts_dtype dt;
  if (target->kind == TS_NODE_NAME) {
    ts_symbol *sym = sema_lookup(s, target->name);
    if (!sym) {
      sema_unknown_name(s, target);
      sema_expr(s, v);
      return;
    }
    target->sym = sym;
    sym->used = true;
    if (sym->kind == TS_SYM_TILE || sym->kind == TS_SYM_TENSOR) {
      ts_diag *d = sema_error(s, n->span, "cannot assign to a whole %s",
                              sym->kind == TS_SYM_TILE ? "tile" : "tensor");
      ts_diag_hint(s->d, d,
                   "use 'fill' or 'copy', or assign elements in "
                   "'parallel'");
      return;
    }
    if (sym->kind != TS_SYM_VAR) {
      ts_diag *d = sema_error(s, target->span,
                              "cannot assign to '%.*s': it "
                              "is a %s",
                              (int)target->name.len, target->name.ptr,
                              sema_sym_kind_name(sym->kind));
      if (sym->kind == TS_SYM_LET)
        ts_diag_hint(s->d, d, "declare it with 'var' to change it");
      sema_note_decl(s, d, sym);
      return;
    }
    target->type = sym->type;
    dt = sym->type->kind == TS_TYPE_SCALAR ? sym->type->dtype : TS_DTYPE_COUNT;
  } else if (target->kind == TS_NODE_INDEX) {
    const ts_type *et = sema_expr(s, target);
    if (et->kind == TS_TYPE_ERROR) {
      sema_expr(s, v);
      return;
    }
    ts_node *b = target->kids[0];
    dt = b->sym && b->sym->type ? b->sym->type->dtype : et->dtype;
  } else {
    sema_error(s, target->span, "cannot assign to this expression");
    sema_expr(s, v);
    return;
  }
  const ts_type *vt = sema_expr(s, v);
  if (vt->kind == TS_TYPE_ERROR || dt >= TS_DTYPE_COUNT)
    return;
  if (vt->kind != TS_TYPE_SCALAR) {
    sema_error(s, v->span, "the value assigned must be a scalar");
    return;
  }
  if (!sema_assignable(dt, vt)) {
    sema_mismatch(s, v->span, "this assignment", dt, vt);
    return;
  }
  if (n->op != TS_TOK_ASSIGN && dt == TS_DTYPE_BOOL)
    sema_error(s, n->span, "'%s' needs a number, but the target is 'bool'",
               ts_tok_spelling((ts_tok_kind)n->op));
}

static void check_call_stmt(sema *s, ts_node *n) {
  ts_node *call = n->kids[0];
  if (!call || call->kind != TS_NODE_CALL)
    return;
  ts_symbol *callee = sema_callee(s, call);
  if (sema_is_tile_fn(callee)) {
    sema_inline_call(s, n, call, callee);
    return;
  }
  ts_builtin b = TS_BUILTIN_NONE;
  if (call->dtype >= TS_DTYPE_COUNT && !callee)
    b = ts_builtin_lookup(call->name);
  if (b != TS_BUILTIN_NONE && b <= TS_BUILTIN_ASSERT) {
    call->builtin = b;
    call->type = &sema_void_type;
    uint32_t lo = 0, hi = 0;
    switch (b) {
#define BUILTIN(name, text, cls, l, h, sig)                                    \
  case TS_BUILTIN_##name:                                                      \
    lo = l;                                                                    \
    hi = h;                                                                    \
    break;
#include "dsl/builtins.def"
#undef BUILTIN
    default: break;
    }
    if (b == TS_BUILTIN_PRINT || b == TS_BUILTIN_ASSERT ||
        b == TS_BUILTIN_BARRIER) {
      if (call->kid_count < lo || call->kid_count > hi) {
        const char *name = ts_builtin_name(b);
        sema_arg_count_error(s, call->span, name, strlen(name), lo, hi, call->kid_count,
                             ts_builtin_signature(b));
        return;
      }
      for (uint32_t i = 0; i < call->kid_count; i++)
        if (call->kids[i]->kind == TS_NODE_NAMED) {
          sema_error(s, call->kids[i]->span, "'%s' takes no named arguments",
                     ts_builtin_name(b));
          return;
        }
    }
    sema_tile_op(s, call);
    return;
  }
  const ts_type *t = sema_expr(s, call);
  if (t->kind == TS_TYPE_ERROR)
    return;
  if (call->builtin != TS_BUILTIN_NONE &&
      call->builtin != TS_BUILTIN_ATOMIC_ADD &&
      call->builtin != TS_BUILTIN_ATOMIC_MAX) {
    ts_diag *d = sema_error(s, call->span, "the result of '%s' is not used",
                            ts_builtin_name(call->builtin));
    ts_diag_hint(s->d, d, "assign it: 'let y = ...;'");
  } else if (call->dtype < TS_DTYPE_COUNT) {
    sema_error(s, call->span, "the result of the conversion is not used");
  }
}

static void check_loop_var(sema *s, ts_node *n, ts_str name) {
  ts_symbol *sym = sema_declare(s, TS_SYM_LOOP, name, n, sema_scalar(TS_DTYPE_I64));
  if (sym) {
    sym->atom = sema_new_atom(s, name);
    n->sym = sym;
  }
}

static void check_parallel(sema *s, ts_node *n) {
  ts_node *vars = n->kids[0], *exts = n->kids[1], *body = n->kids[2];
  if (!s->kernel) {
    sema_error(s, n->span, "'parallel' can only be used in a kernel");
    return;
  }
  if (s->in_parallel) {
    ts_diag *d = sema_error(s, n->span, "'parallel' cannot be nested");
    ts_diag_hint(s->d, d,
                 "list every index in one loop: 'parallel (i, j) in "
                 "(M, N)'");
    return;
  }
  if (vars->kid_count != exts->kid_count) {
    sema_error(s, n->span, "'parallel' has %u index name%s but %u extent%s",
               vars->kid_count, vars->kid_count == 1 ? "" : "s",
               exts->kid_count, exts->kid_count == 1 ? "" : "s");
    return;
  }
  if (vars->kid_count > TS_MAX_RANK) {
    sema_error(s, n->span, "'parallel' takes at most %d indices", TS_MAX_RANK);
    return;
  }
  for (uint32_t i = 0; i < exts->kid_count; i++) {
    ts_node *e = exts->kids[i];
    if (sema_int_expr(s, e, "a 'parallel' extent") &&
        e->cval.kind == TS_CONST_INT && e->cval.i <= 0)
      sema_error(s, e->span,
                 "a 'parallel' extent must be positive, found "
                 "%lld",
                 (long long)e->cval.i);
  }
  scope sc;
  sema_push_scope(s, &sc, false);
  for (uint32_t i = 0; i < vars->kid_count; i++) {
    check_loop_var(s, vars->kids[i], vars->kids[i]->name);
    ts_symbol *sym = vars->kids[i]->sym;
    if (sym && exts->kids[i]->type &&
        exts->kids[i]->type->kind == TS_TYPE_SCALAR) {
      sym->has_range = true;
      sym->range = sema_extent_of(s, exts->kids[i]);
    }
  }
  bool was = s->in_parallel;
  loop_kind loop = s->loop;
  s->in_parallel = true;
  s->loop = LOOP_NONE;
  sema_check_block(s, body);
  s->in_parallel = was;
  s->loop = loop;
  sema_pop_scope(s);
}

static void check_range(sema *s, ts_node *lo, ts_node *hi, const char *what) {
  sema_int_expr(s, lo, what);
  sema_int_expr(s, hi, what);
}

static void check_pipelined(sema *s, ts_node *n) {
  ts_node *lo = n->kids[0], *hi = n->kids[1], *st = n->kids[2];
  if (!s->kernel) {
    sema_error(s, n->span, "'pipelined' can only be used in a kernel");
    return;
  }
  if (s->in_parallel) {
    sema_error(s, n->span, "'pipelined' cannot be used inside 'parallel'");
    return;
  }
  check_range(s, lo, hi, "a loop bound");
  if (st) {
    int64_t stages;
    if (sema_const_int(s, st, "the stage count", &stages) &&
        (stages < 1 || stages > 8))
      sema_error(s, st->span, "the stage count must be 1 to 8, found %lld",
                 (long long)stages);
  }
  scope sc;
  sema_push_scope(s, &sc, false);
  check_loop_var(s, n, n->name);
  loop_kind loop = s->loop;
  s->loop = LOOP_PIPELINED;
  sema_check_block(s, n->kids[3]);
  s->loop = loop;
  sema_pop_scope(s);
}

static void check_for(sema *s, ts_node *n) {
  check_range(s, n->kids[0], n->kids[1], "a loop bound");
  scope sc;
  sema_push_scope(s, &sc, false);
  check_loop_var(s, n, n->name);
  if (n->sym && n->kids[0]->cval.kind == TS_CONST_INT && n->kids[0]->cval.i == 0 &&
      n->kids[1]->type && n->kids[1]->type->kind == TS_TYPE_SCALAR) {
    n->sym->has_range = true; /* for i in 0..E (i itself cannot change) */
    n->sym->range = sema_extent_of(s, n->kids[1]);
  }
  loop_kind loop = s->loop;
  s->loop = LOOP_FOR;
  sema_check_block(s, n->kids[2]);
  s->loop = loop;
  sema_pop_scope(s);
}

static void check_if(sema *s, ts_node *n) {
  ts_node *c = n->kids[0];
  const ts_type *t = sema_expr(s, c);
  if (t->kind != TS_TYPE_ERROR && !sema_is_bool(t)) {
    ts_diag *d = sema_error(s, c->span,
                            "the condition must be 'bool', found "
                            "'%s'",
                            sema_type_str(s, t));
    if (t->kind == TS_TYPE_SCALAR)
      ts_diag_hint(s->d, d, "compare it: 'x != 0'");
  }
  sema_check_block(s, n->kids[1]);
  sema_else_results(s, n);
  ts_node *e = n->kids[2];
  if (e) {
    if (e->kind == TS_NODE_IF)
      check_if(s, e);
    else
      sema_check_block(s, e);
  }
}

static void check_return(sema *s, ts_node *n) {
  ts_node *v = n->kids ? n->kids[0] : NULL;
  if (s->tile_fn && !s->result) {
    ts_diag *d = sema_error(s, n->span, "a tile function has no 'return'");
    ts_diag_hint(s->d, d, "its body is inlined into the kernel and runs to its end; "
                          "one with a result ('-> f32') ends with 'return VALUE;'");
    return;
  }
  if (s->tile_fn && n != s->tile_return) {
    ts_diag *d = sema_error(s, n->span, "a tile function returns once, as its last statement");
    ts_diag_hint(s->d, d, "keep the value in a 'var' and return it at the end");
    return;
  }
  if (s->in_parallel) {
    sema_error(s, n->span, "'return' cannot leave a 'parallel' loop");
    return;
  }
  if (s->kernel && !s->fn && !s->tile_fn) {
    if (v)
      sema_error(s, v->span, "a kernel returns no value");
    return;
  }
  if (!s->result) {
    if (v)
      sema_error(s, v->span, "this function returns no value");
    return;
  }
  if (!v) {
    sema_error(s, n->span, "'return' needs a value of type '%s'",
               ts_dtype_name(s->result->dtype));
    return;
  }
  const ts_type *t = sema_expr(s, v);
  if (t->kind == TS_TYPE_ERROR)
    return;
  if (t->kind != TS_TYPE_SCALAR || !sema_assignable(s->result->dtype, t))
    sema_mismatch(s, v->span, "'return'", s->result->dtype, t);
}

void sema_check_stmt(sema *s, ts_node *n) {
  if (!n || stopped(s))
    return;
  switch (n->kind) {
  case TS_NODE_LET:
  case TS_NODE_VAR: check_let(s, n); break;
  case TS_NODE_TILE: check_tile_decl(s, n); break;
  case TS_NODE_ASSIGN: check_assign(s, n); break;
  case TS_NODE_EXPR_STMT: check_call_stmt(s, n); break;
  case TS_NODE_PARALLEL: check_parallel(s, n); break;
  case TS_NODE_PIPELINED: check_pipelined(s, n); break;
  case TS_NODE_FOR: check_for(s, n); break;
  case TS_NODE_IF: check_if(s, n); break;
  case TS_NODE_BREAK:
  case TS_NODE_CONTINUE: {
    const char *kw = n->kind == TS_NODE_BREAK ? "break" : "continue";
    if (s->loop == LOOP_NONE)
      sema_error(s, n->span, "'%s' outside a 'for' loop", kw);
    else if (s->loop == LOOP_PIPELINED)
      sema_error(s, n->span, "'%s' cannot leave a 'pipelined' loop", kw);
    break;
  }
  case TS_NODE_RETURN: check_return(s, n); break;
  case TS_NODE_BLOCK: sema_check_block(s, n); break;
  default: break; /* error nodes and expressions the parser already reported */
  }
}

/* The statements of block b, in the current scope. */
void sema_check_stmts(sema *s, ts_node *b) {
  for (uint32_t i = 0; i < b->kid_count && !stopped(s); i++) {
    sema_hoist_results(s, b, i); /* (then kids[i] is the first let) */
    sema_check_stmt(s, b->kids[i]);
  }
}

void sema_check_block(sema *s, ts_node *b) {
  if (!b)
    return;
  scope sc;
  sema_push_scope(s, &sc, false);
  sema_check_stmts(s, b);
  sema_pop_scope(s);
}

/* Whether every path through a block ends in 'return'. */
static bool always_returns(ts_node *b) {
  if (!b || b->kid_count == 0)
    return false;
  ts_node *last = b->kids[b->kid_count - 1];
  if (!last)
    return false;
  if (last->kind == TS_NODE_RETURN)
    return true;
  if (last->kind == TS_NODE_BLOCK)
    return always_returns(last);
  if (last->kind == TS_NODE_IF) {
    for (ts_node *i = last; i; i = i->kids[2]) {
      if (!always_returns(i->kids[1]))
        return false;
      if (!i->kids[2])
        return false;
      if (i->kids[2]->kind == TS_NODE_BLOCK)
        return always_returns(i->kids[2]);
    }
  }
  return false;
}

/* ---- params and -D
 * ------------------------------------------------------------------ */

static const ts_define *find_define(sema *s, ts_str name, size_t *index) {
  for (size_t i = 0; i < s->define_count; i++)
    if (ts_str_eq_cstr(name, s->defines[i].name)) {
      *index = i;
      return &s->defines[i];
    }
  return NULL;
}

/* Parses a -D value for a param of type `dt`; false when it is malformed. */
static bool parse_define(const char *text, ts_node *tn, ts_const *out) {
  char *end;
  errno = 0;
  if (tn->op == TS_TOK_DTYPE_T) {
    out->kind = TS_CONST_DTYPE;
    out->dt = ts_dtype_from_name(text);
    return out->dt < TS_DTYPE_COUNT;
  }
  if (tn->op == TS_TOK_INT_T) {
    long long v = strtoll(text, &end, 0);
    if (!text[0] || *end || errno)
      return false;
    out->kind = TS_CONST_INT;
    out->i = v;
    return true;
  }
  if (tn->op == TS_TOK_FLOAT_T) {
    double v = strtod(text, &end);
    if (!text[0] || *end || errno || !isfinite(v))
      return false;
    out->kind = TS_CONST_FLOAT;
    out->f = v;
    return true;
  }
  if (!strcmp(text, "true") || !strcmp(text, "1")) {
    out->kind = TS_CONST_BOOL;
    out->b = true;
    return true;
  }
  if (!strcmp(text, "false") || !strcmp(text, "0")) {
    out->kind = TS_CONST_BOOL;
    out->b = false;
    return true;
  }
  return false;
}

/* The default of a dtype param: a type name, or an earlier dtype param. */
static bool dtype_default(sema *s, ts_node *n, ts_node *v, ts_const *out) {
  memset(out, 0, sizeof *out);
  out->kind = TS_CONST_DTYPE;
  if (v->kind == TS_NODE_DTYPE) {
    v->type = &sema_dtype_type;
    out->dt = v->dtype;
    return true;
  }
  ts_symbol *sym = v->kind == TS_NODE_NAME ? sema_dtype_param(s, v->name) : NULL;
  if (sym) {
    v->sym = sym;
    v->type = &sema_dtype_type;
    out->dt = sym->cval.dt;
    return true;
  }
  ts_diag *d = sema_error(s, v->span, "the default of '%.*s' must be a type",
                          (int)n->name.len, n->name.ptr);
  ts_diag_hint(s->d, d, "e.g. '%.*s: dtype = bf16'", (int)n->name.len,
               n->name.ptr);
  return false;
}

static void check_param(sema *s, ts_node *n, ts_kernel_info *k) {
  ts_node *tn = n->kids[0], *v = n->kids[1];
  ts_symbol *sym;
  if (!tn || !v)
    return;
  const char *tname = tn->op == TS_TOK_INT_T     ? "int"
                      : tn->op == TS_TOK_FLOAT_T ? "float"
                      : tn->op == TS_TOK_BOOL    ? "bool"
                      : tn->op == TS_TOK_DTYPE_T ? "dtype"
                                                 : NULL;
  if (!tname) {
    ts_diag *d = sema_error(s, tn->span,
                            "a param's type is 'int', 'float', 'bool' "
                            "or 'dtype', found '%s'",
                            ts_dtype_name(tn->dtype));
    ts_diag_hint(s->d, d,
                 "params are compile-time values; element types "
                 "belong to tensors");
    goto bad;
  }
  if (tn->has_shape) {
    sema_error(s, tn->span, "a param is a single value and has no shape");
    goto bad;
  }
  ts_const c;
  if (tn->op == TS_TOK_DTYPE_T) {
    if (!dtype_default(s, n, v, &c))
      goto bad;
  } else {
    const ts_type *vt = sema_expr(s, v);
    if (vt->kind == TS_TYPE_ERROR)
      goto bad;
    c = v->cval;
  }
  bool kind_ok = (tn->op == TS_TOK_INT_T && c.kind == TS_CONST_INT) ||
                 (tn->op == TS_TOK_FLOAT_T &&
                  (c.kind == TS_CONST_FLOAT || c.kind == TS_CONST_INT)) ||
                 (tn->op == TS_TOK_BOOL && c.kind == TS_CONST_BOOL) ||
                 (tn->op == TS_TOK_DTYPE_T && c.kind == TS_CONST_DTYPE);
  if (c.kind == TS_CONST_NONE) {
    ts_diag *d = sema_error(s, v->span,
                            "the default of '%.*s' must be known "
                            "at compile time",
                            (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d, "use literals and earlier params");
    goto bad;
  }
  if (!kind_ok) {
    sema_error(s, v->span, "the default of '%.*s' must be %s '%s'",
               (int)n->name.len, n->name.ptr,
               tn->op == TS_TOK_INT_T ? "an" : "a", tname);
    goto bad;
  }
  if (tn->op == TS_TOK_FLOAT_T && c.kind == TS_CONST_INT) {
    c.kind = TS_CONST_FLOAT;
    c.f = (double)c.i;
  }
  size_t di;
  const char *only = s->u->define_kernel;
  const ts_define *def =
      only && !ts_str_eq_cstr(k->name, only) ? NULL : find_define(s, n->name, &di);
  if (def) {
    s->define_used[di] = true;
    ts_const o;
    memset(&o, 0, sizeof o);
    if (!parse_define(def->value, tn, &o)) {
      ts_diag *d =
          ts_diag_error(s->d, NULL, (ts_span){0, 0},
                        "%s %s=%s: '%s' is not %s '%s'",
                        define_label(s->u), def->name, def->value,
                        def->value, tn->op == TS_TOK_INT_T ? "an" : "a", tname);
      ts_diag_note(s->d, d, s->src, n->span, "'%.*s' is declared here",
                   (int)n->name.len, n->name.ptr);
      if (tn->op == TS_TOK_DTYPE_T)
        ts_diag_hint(s->d, d, "a dtype is one of f32, f16, bf16, fp8e4m3, "
                              "i8, i32, i64, bool");
    } else {
      c = o;
    }
  }
  sym = sema_declare(s, TS_SYM_PARAM, n->name, n,
                tn->op == TS_TOK_DTYPE_T ? &sema_dtype_type : sema_scalar(tn->dtype));
  if (!sym)
    return;
  sym->cval = c;
  n->sym = sym;
  n->type = sym->type;
  k->params[k->param_count++] = sym;
  return;
bad:
  /* declared all the same, with no value: its uses report nothing more */
  if (n->name.len && (sym = sema_declare(s, TS_SYM_PARAM, n->name, n, &sema_error_type)))
    n->sym = sym;
}

/* ---- kernels and functions
 * ----------------------------------------------------------- */

ts_scope sema_arg_scope(const ts_node *arg) {
  return arg->op == TS_TOK_FRAG     ? TS_SCOPE_FRAG
         : arg->op == TS_TOK_SHARED ? TS_SCOPE_SHARED
                                    : TS_SCOPE_GLOBAL;
}

void sema_check_arg(sema *s, ts_node *n, ts_kernel_info *k) {
  ts_node *tn = n->kids[0];
  bool tile = sema_arg_scope(n) != TS_SCOPE_GLOBAL;
  if (tn && tn->op == TS_TOK_DTYPE_T) { /* (a tile function declares its own) */
    ts_diag *d = sema_error(s, tn->span, "a kernel's dtype is a param, not an argument");
    ts_diag_hint(s->d, d, "declare it in 'params(%.*s: dtype = bf16)', then write '%.*s' "
                          "where a type goes", (int)n->name.len, n->name.ptr,
                 (int)n->name.len, n->name.ptr);
    return;
  }
  sema_resolve_type(s, tn);
  /* A type name that did not resolve (reported): the dims are declared all
   * the same and the argument has no type, so nothing more is reported. */
  bool unresolved = tn && tn->op == TS_TOK_IDENT && tn->dtype >= TS_DTYPE_COUNT;
  if (!tn || (tn->dtype >= TS_DTYPE_COUNT && !unresolved))
    return;
  ts_dtype dt = unresolved ? TS_DTYPE_F32 : tn->dtype;
  if (!tn->has_shape && tile) {
    ts_diag *d = sema_error(s, tn->span, "a tile parameter needs a shape");
    ts_diag_hint(s->d, d, "e.g. '%.*s: frag %s[B, 64]'", (int)n->name.len, n->name.ptr,
                 ts_dtype_name(dt));
    return;
  }
  if (!tn->has_shape) {
    ts_symbol *sym = sema_declare(s, TS_SYM_SCALAR, n->name, n,
                             unresolved ? &sema_error_type : sema_scalar(dt));
    if (sym) {
      sym->atom = sema_new_atom(s, n->name);
      n->sym = sym;
      k->args[k->arg_count++] = sym;
    }
    return;
  }
  if (tile && !s->tile_fn) {
    ts_diag *d = sema_error(s, n->span, "a kernel's arguments are global tensors");
    ts_diag_hint(s->d, d, "'frag' and 'shared' mark a tile function's tile parameters");
    return;
  }
  if (tn->kid_count == 0) {
    ts_diag *d = sema_error(s, tn->span, "a %s needs at least one dim", tile ? "tile" : "tensor");
    ts_diag_hint(s->d, d,
                 "write a scalar argument without brackets: '%.*s: "
                 "%s'",
                 (int)n->name.len, n->name.ptr, ts_dtype_name(dt));
    return;
  }
  if (tn->kid_count > TS_MAX_RANK) {
    sema_error(s, tn->span, "a tensor has at most %d dims, found %u",
               TS_MAX_RANK, tn->kid_count);
    return;
  }
  ts_type *t = new_type(s, tile ? TS_TYPE_TILE : TS_TYPE_TENSOR, dt);
  if (!t)
    return;
  t->scope = sema_arg_scope(n);
  bool ok = !unresolved;
  for (uint32_t i = 0; i < tn->kid_count; i++) {
    ts_node *e = tn->kids[i];
    if (e->kind == TS_NODE_INT) {
      e->type = sema_literal(TS_DTYPE_I64);
      e->cval.kind = TS_CONST_INT;
      e->cval.i = e->ival;
      if (e->ival <= 0) {
        sema_error(s, e->span, "a dim must be positive, found %lld",
                   (long long)e->ival);
        ok = false;
      }
      t->dims[t->rank++] = sema_extent_const(e->ival);
      continue;
    }
    if (e->kind != TS_NODE_NAME) {
      ts_diag *d = sema_error(s, e->span,
                              "a tensor dim is a name or an "
                              "integer");
      ts_diag_hint(s->d, d, "e.g. 'x: f32[T, D]' or 'x: f32[T, 512]'");
      ok = false;
      continue;
    }
    ts_symbol *sym = sema_lookup(s, e->name);
    if (sym && sym->kind == TS_SYM_PARAM && sym->cval.kind == TS_CONST_INT) {
      e->sym = sym;
      e->cval = sym->cval;
      e->type = sym->type;
      t->dims[t->rank++] = sema_extent_const(sym->cval.i);
      continue;
    }
    if (sym && sym->kind != TS_SYM_DIM) {
      ts_diag *d = sema_error(s, e->span,
                              "'%.*s' cannot name a dim: it is a "
                              "%s",
                              (int)e->name.len, e->name.ptr,
                              sema_sym_kind_name(sym->kind));
      sema_note_decl(s, d, sym);
      ok = false;
      continue;
    }
    if (!sym) {
      sym = sema_declare(s, TS_SYM_DIM, e->name, e, sema_scalar(TS_DTYPE_I64));
      if (!sym) {
        ok = false;
        continue;
      }
      sym->atom = sema_new_atom(s, e->name);
      k->dims[k->dim_count++] = sym;
    }
    e->sym = sym;
    e->type = sym->type;
    t->dims[t->rank++] = sema_extent_atom(sym->atom);
  }
  ts_symbol *sym = sema_declare(s, tile ? TS_SYM_TILE : TS_SYM_TENSOR, n->name, n,
                                ok ? t : &sema_error_type);
  if (sym) {
    n->sym = sym;
    k->args[k->arg_count++] = sym;
  }
  n->type = t;
}

static void check_tune(sema *s, ts_node *tune, ts_kernel_info *k);

static void check_kernel(sema *s, ts_node *n, ts_kernel_info *k) {
  ts_node *args = n->kids[0], *params = n->kids[1], *grid = n->kids[2];
  ts_node *threads = n->kids[3], *body = n->kids[4];
  ts_node *tune = n->kid_count > 5 ? n->kids[5] : NULL;
  k->node = n;
  k->name = n->name;
  uint32_t np = params ? params->kid_count : 0, na = args->kid_count;
  k->params = sema_alloc(s, (np + 1) * sizeof *k->params);
  k->args = sema_alloc(s, (na + 1) * sizeof *k->args);
  k->dims = sema_alloc(s, (na * TS_MAX_RANK + 1) * sizeof *k->dims);
  if (!k->params || !k->args || !k->dims)
    return;
  scope sc;
  sema_push_scope(s, &sc, true);
  s->kernel = k;
  s->fn = NULL;
  s->result = NULL;
  s->loop = LOOP_NONE;
  s->in_parallel = false;
  s->shared_size = 0;
  for (uint32_t i = 0; i < np; i++)
    check_param(s, params->kids[i], k);
  for (uint32_t i = 0; i < na; i++)
    sema_check_arg(s, args->kids[i], k);
  if (grid) {
    if (grid->kid_count == 0 || grid->kid_count > 3)
      sema_error(s, grid->span, "'grid' takes 1 to 3 extents, found %u",
                 grid->kid_count);
    for (uint32_t i = 0; i < grid->kid_count && i < 3; i++) {
      ts_node *e = grid->kids[i];
      if (!sema_int_expr(s, e, "a grid extent")) {
        /* still a dim: block_id(d) of the dims after it is not out of range */
        k->grid[k->grid_rank++] = sema_extent_const(1);
        continue;
      }
      if (e->cval.kind == TS_CONST_INT && e->cval.i <= 0)
        sema_error(s, e->span, "a grid extent must be positive, found %lld",
                   (long long)e->cval.i);
      k->grid[k->grid_rank++] = sema_extent_of(s, e);
    }
  } else {
    k->grid[k->grid_rank++] = sema_extent_const(1);
  }
  k->threads = 128;
  if (threads) {
    int64_t t;
    if (sema_const_int(s, threads, "the thread count", &t)) {
      if (t < 1 || t > 1024)
        sema_error(s, threads->span,
                   "the thread count must be 1 to 1024, "
                   "found %lld",
                   (long long)t);
      else
        k->threads = t;
    }
  }
  if (tune)
    check_tune(s, tune, k);
  if (body)
    sema_check_stmts(s, body);
  k->shared_size = s->shared_size;
  s->kernel = NULL;
  sema_pop_scope(s);
}

/* tune(BM in [32, 64], S in 1..5, require BM * S <= 256): each name a
 * declared int param, each value a constant; the current values of the
 * params (defaults or -D) must satisfy every `require`. */
static void check_tune(sema *s, ts_node *tune, ts_kernel_info *k) {
  k->tune = tune;
  for (uint32_t i = 0; i < tune->kid_count; i++) {
    ts_node *it = tune->kids[i];
    if (it->kind == TS_NODE_REQUIRE) {
      ts_node *e = it->kids[0];
      const ts_type *t = sema_expr(s, e);
      if (t->kind == TS_TYPE_ERROR)
        continue;
      if (!sema_is_bool(t) || e->cval.kind != TS_CONST_BOOL) {
        sema_error(s, e->span, "'require' needs a condition on the params "
                   "known at compile time");
        continue;
      }
      if (!e->cval.b) {
        ts_diag *d = sema_error(s, e->span, "the params break this 'require'");
        ts_diag_hint(s->d, d, "the values of the params (their defaults or "
                     "-D) must satisfy every 'require' of 'tune'");
      }
      continue;
    }
    if (it->kind != TS_NODE_TUNE)
      continue;
    const ts_symbol *ps = NULL;
    for (uint32_t j = 0; j < k->param_count; j++)
      if (ts_str_eq(k->params[j]->name, it->name))
        ps = k->params[j];
    if (!ps || ps->cval.kind != TS_CONST_INT) {
      ts_diag *d = sema_error(s, it->span, ps ? "'%.*s' is not an int param"
                                              : "'%.*s' is not a param of "
                                                "this kernel",
                              (int)it->name.len, it->name.ptr);
      ts_diag_hint(s->d, d, "'tune' lists values of the kernel's int params");
      continue;
    }
    for (uint32_t j = 0; j < i; j++)
      if (tune->kids[j]->kind == TS_NODE_TUNE &&
          ts_str_eq(tune->kids[j]->name, it->name))
        sema_error(s, it->span, "'%.*s' is tuned twice", (int)it->name.len,
                   it->name.ptr);
    ts_node *vals = it->kids[0], *lo = it->kids[1], *hi = it->kids[2];
    int64_t a, b;
    if (vals) {
      if (vals->kid_count == 0)
        sema_error(s, vals->span, "the list of values is empty");
      for (uint32_t j = 0; j < vals->kid_count; j++)
        sema_const_int(s, vals->kids[j], "a tuning value", &a);
    } else if (lo && hi && sema_const_int(s, lo, "the range's start", &a) &&
               sema_const_int(s, hi, "the range's end", &b) &&
               (b <= a || b - a > 4096)) {
      sema_error(s, it->span, "the range %lld..%lld %s", (long long)a,
                 (long long)b, b <= a ? "is empty" : "has more than 4096 values");
    }
  }
}

static void check_fn(sema *s, ts_node *n) {
  if (ts_fn_is_tile(n)) {
    sema_check_tile_fn(s, n);
    return;
  }
  ts_node *params = n->kids[0], *result = n->kids[1], *body = n->kids[2];
  scope sc;
  sema_push_scope(s, &sc, true);
  s->kernel = NULL;
  s->fn = n->sym;
  s->loop = LOOP_NONE;
  s->in_parallel = false;
  s->result = NULL;
  sema_resolve_type(s, result);
  if (result && result->dtype < TS_DTYPE_COUNT) {
    if (result->has_shape)
      sema_error(s, result->span,
                 "a function returns a scalar; tiles are not "
                 "supported as results");
    else
      s->result = sema_scalar(result->dtype);
  }
  for (uint32_t i = 0; i < params->kid_count; i++) {
    ts_node *p = params->kids[i];
    ts_node *tn = p->kids ? p->kids[0] : NULL;
    sema_resolve_type(s, tn);
    if (!tn || tn->dtype >= TS_DTYPE_COUNT)
      continue;
    ts_symbol *sym = sema_declare(s, TS_SYM_LET, p->name, p, sema_scalar(tn->dtype));
    if (sym) {
      sym->atom = sema_new_atom(s, p->name);
      p->sym = sym;
    }
  }
  sema_check_block(s, body);
  if (s->result && !stopped(s) && !always_returns(body)) {
    ts_diag *d = sema_error(s, n->span,
                            "function '%.*s' can reach its end "
                            "without 'return'",
                            (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d, "end every path with 'return value;'");
  }
  s->fn = NULL;
  s->result = NULL;
  sema_pop_scope(s);
}

/* Reports each call that closes a cycle in the call graph. */
static void check_recursion(sema *s) {
  for (uint32_t i = 0; i < s->edge_count && !stopped(s); i++) {
    /* Is there a path from callee back to caller? Depth-first, bounded by
     * the number of edges (each edge visited once per start). */
    ts_symbol *target = s->edges[i].caller;
    ts_symbol *stack[64];
    uint32_t top = 0;
    bool found = false;
    stack[top++] = s->edges[i].callee;
    uint32_t steps = 0;
    while (top && !found && steps++ < 4 * s->edge_count + 4) {
      ts_symbol *f = stack[--top];
      if (f == target) {
        found = true;
        break;
      }
      for (uint32_t j = 0; j < s->edge_count; j++)
        if (s->edges[j].caller == f && top < 64)
          stack[top++] = s->edges[j].callee;
    }
    if (found) {
      ts_node *c = s->edges[i].call;
      ts_diag *d = sema_error(s, c->span, "'%.*s' is called recursively",
                              (int)c->name.len, c->name.ptr);
      ts_diag_hint(s->d, d,
                   "kernels and their functions are inlined; "
                   "recursion is not supported");
      return;
    }
  }
}

/* A built-in constant `name` of value c into the global scope; false when
 * out of memory. */
static bool add_const(sema *s, const char *name, const ts_type *type, ts_const c) {
  ts_symbol *sym = sema_alloc(s, sizeof *sym);
  if (!sym)
    return false;
  sym->kind = TS_SYM_CONST;
  sym->name = ts_str_from(name);
  sym->type = type;
  sym->cval = c;
  ts_status st = ts_map_put(&s->globals.names, sym->name, sym);
  if (!st)
    return true;
  ts_status_free(st);
  s->nomem = true;
  return false;
}

bool ts_unit_check(ts_unit *u, const ts_define *defines, size_t define_count) {
  if (!u->parsed || !u->root)
    return false;
  uint32_t before = u->diags->error_count;
  sema s;
  memset(&s, 0, sizeof s);
  s.u = u;
  s.d = u->diags;
  s.src = &u->src;
  s.defines = defines;
  s.define_count = define_count;
  bool used_small[16] = {0};
  s.define_used =
      define_count <= 16 ? used_small : ts_arena_alloc(&u->arena, define_count);
  if (!s.define_used) {
    u->diags->nomem = true;
    return false;
  }
  sema_push_scope(&s, &s.globals, false);
  static const struct {
    const char *name;
    double value;
  } consts[] = {
      {"inf", INFINITY}, {"nan", NAN}, {"pi", 3.14159265358979323846}};
  bool ok = true;
  for (size_t i = 0; ok && i < TS_ARRAY_COUNT(consts); i++)
    ok = add_const(&s, consts[i].name, sema_scalar(TS_DTYPE_F32),
                   (ts_const){.kind = TS_CONST_FLOAT, .f = consts[i].value});
  /* arch: the target's architecture (0 the CPU, 90 sm_90a, ...) */
  if (ok)
    add_const(&s, "arch", sema_scalar(TS_DTYPE_I64), (ts_const){.kind = TS_CONST_INT,
                                                                .i = u->arch});
  ts_node *root = u->root;
  uint32_t nk = 0;
  for (uint32_t i = 0; i < root->kid_count; i++)
    nk += root->kids[i]->kind == TS_NODE_KERNEL;
  u->kernels = ts_arena_alloc(&u->arena, (nk + 1) * sizeof *u->kernels);
  if (!u->kernels)
    s.nomem = true;
  /* Functions and kernels are global names, visible everywhere. */
  for (uint32_t i = 0; i < root->kid_count && !stopped(&s); i++) {
    ts_node *it = root->kids[i];
    if (it->kind != TS_NODE_FN && it->kind != TS_NODE_KERNEL)
      continue;
    ts_symbol *sym = sema_declare(&s, TS_SYM_FN, it->name, it, NULL);
    if (sym && it->kind == TS_NODE_FN) {
      ts_node *r = it->kids[1];
      sym->type = !ts_fn_is_tile(it) && r && r->dtype < TS_DTYPE_COUNT && !r->has_shape
                      ? sema_scalar(r->dtype)
                      : &sema_void_type;
    } else if (sym) {
      sym->kind = TS_SYM_FN;
      sym->type = &sema_void_type;
    }
    it->sym = sym;
  }
  /* Tile functions first: a call is inlined only after the function's own
   * check passed, wherever the two stand in the file. */
  for (uint32_t i = 0; i < root->kid_count && !stopped(&s); i++)
    if (ts_fn_is_tile(root->kids[i]))
      check_fn(&s, root->kids[i]);
  for (uint32_t i = 0; i < root->kid_count && !stopped(&s); i++) {
    ts_node *it = root->kids[i];
    if (ts_fn_is_tile(it))
      continue;
    if (it->kind == TS_NODE_KERNEL && u->kernels) {
      ts_kernel_info *k = &u->kernels[u->kernel_count++];
      memset(k, 0, sizeof *k);
      check_kernel(&s, it, k);
    } else if (it->kind == TS_NODE_FN) {
      check_fn(&s, it);
    }
  }
  check_recursion(&s);
  /* (defines for a kernel the file lacks: the caller reports the kernel) */
  bool for_none = u->define_kernel && !ts_unit_kernel(u, ts_str_from(u->define_kernel));
  const char *label = define_label(u);
  for (size_t i = 0; i < define_count && !stopped(&s) && !for_none; i++)
    if (!s.define_used[i]) {
      ts_diag *d =
          u->define_kernel
              ? ts_diag_error(u->diags, NULL, (ts_span){0, 0},
                              "%s %s: kernel '%s' in '%s' has no param '%s'", label,
                              defines[i].name, u->define_kernel, u->src.name, defines[i].name)
              : ts_diag_error(u->diags, NULL, (ts_span){0, 0},
                              "%s %s: no kernel in '%s' has a param '%s'", label,
                              defines[i].name, u->src.name, defines[i].name);
      ts_diag_hint(u->diags, d,
                   "'tessera compile --emit typed' lists the "
                   "params");
    }
  sema_pop_scope(&s);
  ts_release(u->alloc, s.edges, s.edge_cap * sizeof *s.edges);
  ts_release(u->alloc, s.opaques, s.opaque_cap * sizeof *s.opaques);
  if (s.nomem)
    u->diags->nomem = true;
  u->checked = true;
  return u->diags->error_count == before && !s.nomem;
}

const ts_kernel_info *ts_unit_kernel(const ts_unit *u, ts_str name) {
  for (uint32_t i = 0; i < u->kernel_count; i++)
    if (ts_str_eq(u->kernels[i].name, name))
      return &u->kernels[i];
  return NULL;
}

/* ---- units
 * ----------------------------------------------------------------------------
 */

ts_status ts_unit_init(ts_unit *u, const ts_allocator *alloc, const char *name,
                       const char *text, size_t len, ts_diags *diags) {
  memset(u, 0, sizeof *u);
  u->alloc = alloc;
  u->diags = diags;
  ts_arena_init(&u->arena, alloc);
  return ts_source_init(&u->src, alloc, name, text, len);
}

void ts_unit_deinit(ts_unit *u) {
  ts_source_deinit(&u->src, u->alloc);
  ts_release(u->alloc, u->joined, u->joined_size);
  ts_release(u->alloc, u->atom_names, u->atom_cap * sizeof *u->atom_names);
  ts_arena_deinit(&u->arena);
}

ts_node *ts_call_named(const ts_node *call, const char *name) {
  for (uint32_t i = 0; i < call->kid_count; i++)
    if (call->kids[i]->kind == TS_NODE_NAMED &&
        ts_str_eq_cstr(call->kids[i]->name, name))
      return call->kids[i]->kids[0];
  return NULL;
}

bool ts_copy_packed(const ts_node *call) {
  const ts_node *f = call && call->kind == TS_NODE_CALL && call->builtin == TS_BUILTIN_COPY
                         ? ts_call_named(call, "format")
                         : NULL;
  return f && f->kind == TS_NODE_STRING &&
         (ts_str_eq_cstr(f->name, "e2m1") || ts_str_eq_cstr(f->name, "e2m1x2"));
}

bool ts_copy_twice(const ts_node *call) {
  const ts_node *f = ts_copy_packed(call) ? ts_call_named(call, "format") : NULL;
  return f && ts_str_eq_cstr(f->name, "e2m1x2");
}

int64_t ts_copy_scale_block(const ts_node *call) {
  const ts_node *sc = ts_copy_packed(call) ? ts_call_named(call, "scale") : NULL;
  const ts_type *t = sc ? sc->type : NULL, *d = call->kids[1]->type;
  if (!t || !d || t->rank == 0 || t->rank != d->rank || t->dims[t->rank - 1].term_count ||
      t->dims[t->rank - 1].c <= 0)
    return 0;
  return d->dims[d->rank - 1].c / t->dims[t->rank - 1].c;
}

bool ts_call_named_bool(const ts_node *call, const char *name, bool dflt) {
  const ts_node *v = ts_call_named(call, name);
  return v && v->cval.kind == TS_CONST_BOOL ? v->cval.b : dflt;
}
