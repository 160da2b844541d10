/* sema_inline.c - tile functions: `fn`s with tensor or tile parameters
 * (docs/language.md, "Tile functions").
 *
 * A tile function is checked once on its own, as a kernel would be: its
 * parameters' shape names are the dims of a kernel's tensors. Each call, a
 * statement of its own, is then inlined: sema turns the call into a block
 * of `let`s binding the scalar arguments and a copy of the body, and checks
 * that copy in a scope that sees only the file's functions and constants,
 * the tensor and tile parameters bound to the caller's tensors and tiles
 * (by reference: writes go to the caller's), and the shape names bound to
 * the arguments' extents. What reaches the compiler is ordinary kernel
 * code, the same as if the body had been written at the call. A call with
 * a result inside an expression is first made a `let` of its own before
 * its statement (the end of this file). */
#include "dsl/sema.h"

#include <stdio.h>
#include <string.h>

/* How deep tile functions may call tile functions. */
#define MAX_INLINE_DEPTH ((int)TS_ARRAY_COUNT(((sema *)0)->inlining))

static bool is_tile_param(const ts_node *p) {
  return sema_arg_scope(p) != TS_SCOPE_GLOBAL;
}

static ts_node *param_type(const ts_node *p) {
  return p && p->kid_count ? p->kids[0] : NULL;
}

/* `T: dtype`: a type bound at each call. */
static bool is_dtype_param(const ts_node *p) {
  const ts_node *t = param_type(p);
  return t && t->op == TS_TOK_DTYPE_T;
}

bool ts_fn_is_tile(const ts_node *fn) {
  if (!fn || fn->kind != TS_NODE_FN || !fn->kid_count || !fn->kids[0])
    return false;
  const ts_node *ps = fn->kids[0];
  for (uint32_t i = 0; i < ps->kid_count; i++) {
    const ts_node *p = ps->kids[i], *t = param_type(p);
    if (p && (is_tile_param(p) || is_dtype_param(p) || (t && t->has_shape)))
      return true;
  }
  return false;
}

/* A dtype parameter's symbol: what `W` names in the body, as a kernel's
 * dtype param would (a type, a conversion, bitcast's second argument). */
static ts_symbol *dtype_symbol(sema *s, const ts_node *p, ts_dtype dt) {
  ts_symbol *sym = sema_alloc(s, sizeof *sym);
  if (!sym)
    return NULL;
  sym->kind = TS_SYM_PARAM;
  sym->name = p->name;
  sym->decl = (ts_node *)p;
  sym->type = &sema_dtype_type;
  sym->cval.kind = TS_CONST_DTYPE;
  sym->cval.dt = dt;
  return sym;
}

/* A copy of a subtree without what sema filled in. */
static ts_node *copy_tree(sema *s, const ts_node *n) {
  if (!n)
    return NULL;
  ts_node *c = sema_alloc(s, sizeof *c);
  if (!c)
    return NULL;
  *c = *n;
  c->type = NULL;
  c->sym = NULL;
  c->cval = (ts_const){0};
  c->builtin = TS_BUILTIN_NONE;
  if (n->kid_count) {
    c->kids = sema_alloc(s, n->kid_count * sizeof *c->kids);
    if (!c->kids)
      return NULL;
    for (uint32_t i = 0; i < n->kid_count; i++)
      c->kids[i] = copy_tree(s, n->kids[i]);
  }
  return c;
}

/* The function on its own: its tensor and tile parameters declared as a
 * kernel's arguments are (a kernel of its own whose grid may have 3 dims),
 * then its body. Errors mark it failed, and its calls are not inlined. */
void sema_check_tile_fn(sema *s, ts_node *n) {
  ts_node *params = n->kids[0], *result = n->kids[1], *body = n->kids[2];
  uint32_t before = s->d->error_count;
  uint32_t np = params->kid_count;
  ts_kernel_info k;
  memset(&k, 0, sizeof k);
  k.node = n;
  k.name = n->name;
  k.grid_rank = 3;
  k.threads = 128;
  k.args = sema_alloc(s, (np + 1) * sizeof *k.args);
  k.dims = sema_alloc(s, (np * TS_MAX_RANK + 1) * sizeof *k.dims);
  if (!k.args || !k.dims)
    return;
  scope sc;
  sema_push_scope(s, &sc, true);
  s->kernel = &k;
  s->fn = NULL;
  s->tile_fn = n->sym;
  s->inlining[0] = n->sym;
  s->inline_depth = 1;
  s->result = NULL;
  s->loop = LOOP_NONE;
  s->in_parallel = false;
  s->shared_size = 0;
  /* the dtype parameters first, as f32 (a call binds its own types), so
   * that the others' types may name them wherever they stand */
  for (uint32_t i = 0; i < np; i++) {
    ts_node *p = params->kids[i];
    if (!is_dtype_param(p))
      continue;
    ts_symbol *sym = sema_declare(s, TS_SYM_PARAM, p->name, p, &sema_dtype_type);
    if (sym) {
      sym->cval.kind = TS_CONST_DTYPE;
      sym->cval.dt = TS_DTYPE_F32;
      p->sym = sym;
      p->type = sym->type;
    }
  }
  for (uint32_t i = 0; i < np; i++)
    if (!is_dtype_param(params->kids[i]))
      sema_check_arg(s, params->kids[i], &k);
  /* a copy: the check inlines the calls in it, and each call of this
   * function must copy the body as written */
  ts_node *copy = copy_tree(s, body);
  /* a scalar result, returned once, by the last statement */
  ts_node *last = copy && copy->kid_count ? copy->kids[copy->kid_count - 1] : NULL;
  if (result) {
    sema_resolve_type(s, result);
    if (result->dtype < TS_DTYPE_COUNT && result->has_shape)
      sema_error(s, result->span, "a function returns a scalar; tiles are not supported "
                                  "as results");
    else if (result->dtype < TS_DTYPE_COUNT)
      s->result = sema_scalar(result->dtype);
    if (!last || last->kind != TS_NODE_RETURN) {
      ts_diag *d = sema_error(s, n->span, "tile function '%.*s' must end with 'return VALUE;'",
                              (int)n->name.len, n->name.ptr);
      ts_diag_hint(s->d, d, "it has a result ('-> %.*s'), which its last statement returns",
                   (int)(result->span.hi - result->span.lo),
                   s->src->text + result->span.lo);
    }
    s->tile_return = last;
  }
  if (copy)
    sema_check_stmts(s, copy);
  s->kernel = NULL;
  s->tile_fn = NULL;
  s->inline_depth = 0;
  s->result = NULL;
  s->tile_return = NULL;
  sema_pop_scope(s);
  if (n->sym && s->d->error_count != before)
    n->sym->failed = true;
}

typedef struct binding {
  ts_str name;
  ts_symbol *sym;      /* the caller's tensor or tile, or a dim's symbol */
  ts_extent extent;    /* a shape name's value */
  const ts_node *at;   /* where the shape name is declared */
  bool shape;
  bool type;           /* a dtype parameter's */
  uint32_t fixed;      /* a view's leading indices (their names: NAME#k) */
  uint32_t rank;       /* a view's rank (its trailing dims) */
} binding;

/* The element type a parameter's type `pt` stands for at this call: its
 * own, or what its dtype parameter is bound to (TS_DTYPE_COUNT: unbound,
 * its error reported). */
static ts_dtype bound_dtype(const ts_node *pt, const binding *b, uint32_t nb) {
  if (pt->op != TS_TOK_IDENT)
    return pt->dtype;
  for (uint32_t q = 0; q < nb; q++)
    if (b[q].type && ts_str_eq(b[q].name, pt->name))
      return b[q].sym->cval.dt;
  return TS_DTYPE_COUNT;
}

static const char *param_kind(const ts_node *p) {
  return p->op == TS_TOK_FRAG     ? "a frag tile"
         : p->op == TS_TOK_SHARED ? "a shared tile"
                                  : "a tensor";
}

static const char *arg_kind(const ts_type *t) {
  if (t->kind == TS_TYPE_TENSOR)
    return "a tensor";
  if (t->kind == TS_TYPE_TILE)
    return t->scope == TS_SCOPE_SHARED ? "a shared tile" : "a frag tile";
  return "a scalar";
}

/* The caller's dim symbol whose atom is `atom`, or NULL. */
static ts_symbol *dim_of_atom(sema *s, uint32_t atom) {
  for (uint32_t i = 0; s->kernel && i < s->kernel->dim_count; i++)
    if (s->kernel->dims[i]->atom == atom)
      return s->kernel->dims[i];
  return NULL;
}

/* Argument `a` of type `t` (a tensor or tile, or a view of a tensor)
 * against parameter `p`: its kind, dtype (`dt` at this call) and rank,
 * constant extents, and the shape names bound (`b`). */
static bool check_tile_arg(sema *s, ts_node *call, ts_node *a, const ts_type *t, ts_node *p,
                           ts_dtype dt, binding *b, uint32_t *nb) {
  ts_node *pt = param_type(p);
  ts_type_kind want = is_tile_param(p) ? TS_TYPE_TILE : TS_TYPE_TENSOR;
  ts_diag *d = NULL;
  if (t->kind != want || t->scope != sema_arg_scope(p))
    d = sema_error(s, a->span, "'%.*s' is %s; parameter '%.*s' of '%.*s' is %s",
                   (int)a->name.len, a->name.ptr, arg_kind(t), (int)p->name.len,
                   p->name.ptr, (int)call->name.len, call->name.ptr, param_kind(p));
  else if (t->dtype != dt && pt->op == TS_TOK_IDENT)
    d = sema_error(s, a->span, "'%.*s' holds %s; parameter '%.*s' takes %.*s, %s at this call",
                   (int)a->name.len, a->name.ptr, ts_dtype_name(t->dtype),
                   (int)p->name.len, p->name.ptr, (int)pt->name.len, pt->name.ptr,
                   ts_dtype_name(dt));
  else if (t->dtype != dt)
    d = sema_error(s, a->span, "'%.*s' holds %s; parameter '%.*s' takes %s",
                   (int)a->name.len, a->name.ptr, ts_dtype_name(t->dtype),
                   (int)p->name.len, p->name.ptr, ts_dtype_name(dt));
  else if (t->rank != pt->kid_count)
    d = sema_error(s, a->span, "'%.*s' has %u dim%s; parameter '%.*s' has %u",
                   (int)a->name.len, a->name.ptr, t->rank, t->rank == 1 ? "" : "s",
                   (int)p->name.len, p->name.ptr, pt->kid_count);
  if (d) {
    ts_diag_note(s->d, d, s->src, p->span, "the parameter is declared here");
    return false;
  }
  for (uint32_t j = 0; j < t->rank; j++) {
    ts_node *e = pt->kids[j];
    const ts_extent *x = &t->dims[j];
    if (e->kind == TS_NODE_INT) {
      if (!sema_extent_is_const(x) || x->c != e->ival) {
        ts_buf text;
        ts_buf_init(&text, ts_allocator_system());
        ts_extent_print(s->u, x, &text);
        d = sema_error(s, a->span, "dim %u of '%.*s' is %s; parameter '%.*s' wants %lld",
                       j + 1, (int)a->name.len, a->name.ptr, text.ptr ? text.ptr : "?",
                       (int)p->name.len, p->name.ptr, (long long)e->ival);
        ts_diag_note(s->d, d, s->src, e->span, "the extent is declared here");
        ts_buf_deinit(&text);
        return false;
      }
      continue;
    }
    if (e->kind != TS_NODE_NAME)
      return false; /* (reported by the function's own check) */
    binding *old = NULL;
    for (uint32_t q = 0; q < *nb; q++)
      if (b[q].shape && ts_str_eq(b[q].name, e->name))
        old = &b[q];
    if (old) {
      if (!sema_extent_eq(&old->extent, x)) {
        d = sema_error(s, a->span,
                       "dim %u of '%.*s' differs from what '%.*s' is bound to "
                       "by an earlier argument",
                       j + 1, (int)a->name.len, a->name.ptr, (int)e->name.len, e->name.ptr);
        ts_diag_note(s->d, d, s->src, e->span, "'%.*s' names both", (int)e->name.len,
                     e->name.ptr);
        return false;
      }
      continue;
    }
    b[(*nb)++] = (binding){.name = e->name, .extent = *x, .at = e, .shape = true};
  }
  return true;
}

/* A name sema makes that no source can write: NAME#SUFFIX (a view's k-th
 * leading index NAME#k, a result's hidden var NAME#r). */
ts_str sema_hidden_name(sema *s, ts_str name, const char *suffix) {
  size_t size = name.len + strlen(suffix) + 2;
  char *text = sema_alloc(s, size);
  if (!text)
    return (ts_str){0};
  int n = snprintf(text, size, "%.*s#%s", (int)name.len, name.ptr, suffix);
  return (ts_str){text, (size_t)n};
}

static ts_str fixed_name(sema *s, ts_str name, uint32_t k) {
  char suffix[12];
  snprintf(suffix, sizeof suffix, "%u", k);
  return sema_hidden_name(s, name, suffix);
}

/* Whether a symbol is a value that cannot change while a call's body runs:
 * a scalar or index argument naming one is bound by name, without a copy. */
static bool immutable_value(const ts_symbol *sym) {
  return sym && (sym->kind == TS_SYM_LET || sym->kind == TS_SYM_LOOP ||
                 sym->kind == TS_SYM_DIM || sym->kind == TS_SYM_PARAM ||
                 sym->kind == TS_SYM_SCALAR);
}

/* `let NAME: type = value;` binding a parameter (op TS_TOK_FN: dsl.h), the
 * value checked where it was written; NULL without memory. */
static ts_node *binding_let(sema *s, ts_str name, ts_span at, ts_node *type, ts_node *value) {
  ts_node *let = sema_alloc(s, sizeof *let);
  ts_node **lk = sema_alloc(s, 2 * sizeof *lk);
  if (!let || !lk || !name.len)
    return NULL;
  *let = (ts_node){.kind = TS_NODE_LET, .op = TS_TOK_FN, .span = at, .name = name, .kids = lk,
                   .kid_count = 2};
  lk[0] = type;
  lk[1] = value;
  return let;
}

/* Argument `i` for a tensor or tile parameter `p`: a tensor or tile by name,
 * or a view of a tensor - fixed leading indices and whole trailing dims
 * (`q[t, :, :]`), the indices bound to names of their own (by name when
 * they are immutable values, else by `let`s added to `lets`). */
static bool bind_tile_arg(sema *s, ts_node *call, uint32_t i, ts_node *p, ts_dtype dt,
                          binding *b, uint32_t *nb, ts_node **lets, uint32_t *nl) {
  ts_node *a = call->kids[i];
  bool sliced = false;
  for (uint32_t k = 1; a->kind == TS_NODE_INDEX && k < a->kid_count; k++)
    sliced |= a->kids[k]->kind == TS_NODE_SLICE;
  ts_node *base = sliced ? a->kids[0] : a;
  if (base->kind != TS_NODE_NAME) {
    ts_diag *d = sema_error(s, a->span, "argument %u of '%.*s' must name %s", i + 1,
                            (int)call->name.len, call->name.ptr, param_kind(p));
    ts_diag_hint(s->d, d, "a tile function takes tensors and tiles by name, or a tensor "
                          "with fixed leading indices as 'q[t, :, :]'");
    return false;
  }
  const ts_type *t = sema_expr(s, base);
  if (t->kind == TS_TYPE_ERROR)
    return false;
  if (a == base) {
    b[(*nb)++] = (binding){.name = p->name, .sym = a->sym};
    return check_tile_arg(s, call, a, t, p, dt, b, nb);
  }
  /* a view: q[i, j, :, :] */
  uint32_t nsub = a->kid_count - 1, fixed = 0;
  while (fixed < nsub && a->kids[1 + fixed]->kind != TS_NODE_SLICE)
    fixed++;
  bool whole = t->kind == TS_TYPE_TENSOR && nsub == t->rank && fixed < nsub;
  for (uint32_t k = fixed; whole && k < nsub; k++) {
    const ts_node *sl = a->kids[1 + k];
    whole = sl->kind == TS_NODE_SLICE && !sl->kids[0] && !sl->kids[1];
  }
  if (!whole || is_tile_param(p)) {
    ts_diag *d = sema_error(s, a->span, "argument %u of '%.*s' is a slice %s cannot take",
                            i + 1, (int)call->name.len, call->name.ptr,
                            is_tile_param(p) ? "a tile parameter" : "a tile function");
    ts_diag_hint(s->d, d, is_tile_param(p)
                              ? "a tile parameter takes a tile by name"
                              : "a tensor parameter takes a tensor by name, or with fixed "
                                "leading indices and its other dims whole, as 'q[t, :, :]'");
    return false;
  }
  bool ok = true;
  for (uint32_t k = 0; k < fixed; k++) {
    ts_node *e = a->kids[1 + k];
    const ts_type *et = sema_expr(s, e);
    if (et->kind == TS_TYPE_ERROR) {
      ok = false;
      continue;
    }
    if (!sema_is_int(et)) {
      sema_error(s, e->span, "an index is an integer, found '%s'", sema_type_str(s, et));
      ok = false;
      continue;
    }
    ts_str name = fixed_name(s, p->name, k);
    if (e->kind == TS_NODE_NAME && immutable_value(e->sym) && !et->literal) {
      b[(*nb)++] = (binding){.name = name, .sym = e->sym};
      continue;
    }
    if (!(lets[*nl] = binding_let(s, name, e->span, NULL, e)))
      return false;
    (*nl)++;
  }
  if (!ok)
    return false;
  ts_type *view = sema_alloc(s, sizeof *view);
  if (!view)
    return false;
  *view = *t;
  view->rank = t->rank - fixed;
  for (uint32_t k = 0; k < view->rank; k++)
    view->dims[k] = t->dims[fixed + k];
  b[(*nb)++] = (binding){.name = p->name, .sym = base->sym, .fixed = fixed,
                         .rank = view->rank};
  return check_tile_arg(s, call, base, view, p, dt, b, nb);
}

static ts_node *new_kid(sema *s, ts_node_kind kind, ts_span at, ts_str name) {
  ts_node *n = sema_alloc(s, sizeof *n);
  if (n) {
    n->kind = kind;
    n->span = at;
    n->name = name;
  }
  return n;
}

/* The view `v` in a copy of the body: `x[e...]` becomes `x[x#0.., e...]` and
 * `x` alone `x[x#0.., :, ...]`, x now naming the caller's whole tensor. */
static void rewrite_view(sema *s, ts_node *n, const binding *v) {
  for (uint32_t i = 0; n && i < n->kid_count; i++) {
    ts_node *k = n->kids[i];
    if (!k)
      continue;
    bool base = k->kind == TS_NODE_INDEX && k->kid_count && k->kids[0] &&
                k->kids[0]->kind == TS_NODE_NAME && ts_str_eq(k->kids[0]->name, v->name);
    bool alone = k->kind == TS_NODE_NAME && ts_str_eq(k->name, v->name);
    if (!base && !alone) {
      rewrite_view(s, k, v);
      continue;
    }
    uint32_t old = base ? k->kid_count - 1 : 0, count = 1 + v->fixed + (base ? old : v->rank);
    ts_node **kids = sema_alloc(s, count * sizeof *kids);
    ts_node *idx = base ? k : new_kid(s, TS_NODE_INDEX, k->span, (ts_str){0});
    if (!kids || !idx)
      return;
    kids[0] = base ? k->kids[0] : k;
    for (uint32_t j = 0; j < v->fixed; j++)
      if (!(kids[1 + j] = new_kid(s, TS_NODE_NAME, k->span, fixed_name(s, v->name, j))))
        return;
    for (uint32_t j = 0; j < count - 1 - v->fixed; j++) {
      if (base) {
        rewrite_view(s, k->kids[1 + j], v); /* (an index may read the view) */
        kids[1 + v->fixed + j] = k->kids[1 + j];
      } else {
        ts_node *sl = new_kid(s, TS_NODE_SLICE, k->span, (ts_str){0});
        ts_node **none = sema_alloc(s, 2 * sizeof *none);
        if (!sl || !none)
          return;
        none[0] = none[1] = NULL; /* `:` */
        sl->kids = none;
        sl->kid_count = 2;
        kids[1 + v->fixed + j] = sl;
      }
    }
    idx->kids = kids;
    idx->kid_count = count;
    n->kids[i] = idx;
  }
}

/* A shape name's value as a symbol: a constant, or the caller's dim. */
static ts_symbol *shape_symbol(sema *s, ts_node *call, binding *b) {
  const ts_extent *x = &b->extent;
  if (sema_extent_is_const(x)) {
    ts_symbol *sym = sema_alloc(s, sizeof *sym);
    if (!sym)
      return NULL;
    sym->kind = TS_SYM_LET;
    sym->name = b->name;
    sym->decl = (ts_node *)b->at;
    sym->type = sema_scalar(TS_DTYPE_I64);
    sym->cval.kind = TS_CONST_INT;
    sym->cval.i = x->c;
    sym->atom = sema_new_atom(s, b->name);
    return sym;
  }
  ts_symbol *dim = x->c == 0 && x->term_count == 1 && x->terms[0].coef == 1
                       ? dim_of_atom(s, x->terms[0].atom)
                       : NULL;
  if (!dim) {
    ts_buf text;
    ts_buf_init(&text, ts_allocator_system());
    ts_extent_print(s->u, x, &text);
    ts_diag *d = sema_error(s, call->span,
                            "'%.*s' would be %s: a shape name takes a constant or one "
                            "dim of the kernel's tensors",
                            (int)b->name.len, b->name.ptr, text.ptr ? text.ptr : "?");
    ts_diag_note(s->d, d, s->src, b->at->span, "'%.*s' is declared here", (int)b->name.len,
                 b->name.ptr);
    ts_diag_hint(s->d, d, "pass the extent as a scalar parameter as well");
    ts_buf_deinit(&text);
  }
  return dim;
}

/* A scalar literal 0 of `dt` (false for bool): a result's first value. */
static ts_node *zero_of(sema *s, ts_dtype dt, ts_span at) {
  ts_node *z = sema_alloc(s, sizeof *z);
  if (!z)
    return NULL;
  z->span = at;
  z->kind = dt == TS_DTYPE_BOOL       ? TS_NODE_BOOL
            : ts_dtype_is_int(dt)     ? TS_NODE_INT
                                      : TS_NODE_FLOAT;
  return z;
}

/* The call statement `stmt` of tile function fn inlined: stmt becomes a
 * block. With `ret` (fn has a result), *ret is made the hidden var the
 * value goes into - declared in the caller's scope, the body's final
 * `return VALUE;` becoming `NAME = VALUE;` - named ret_name. False when
 * nothing was inlined (reported). */
static bool inline_call(sema *s, ts_node *stmt, ts_node *call, ts_symbol *fn, ts_str ret_name,
                        ts_node **ret) {
  ts_node *decl = fn->decl, *params = decl->kids[0], *body = decl->kids[2];
  call->sym = fn;
  call->type = &sema_void_type;
  fn->used = true;
  uint32_t want = params->kid_count;
  if (call->kid_count != want) {
    ts_diag *d = sema_error(s, call->span, "'%.*s' takes %u argument%s, found %u",
                            (int)call->name.len, call->name.ptr, want, want == 1 ? "" : "s",
                            call->kid_count);
    sema_note_decl(s, d, fn);
    return false;
  }
  bool cycle = false;
  for (int i = 0; i < s->inline_depth; i++)
    cycle |= s->inlining[i] == fn;
  if (cycle || s->inline_depth >= MAX_INLINE_DEPTH) {
    ts_diag *d = sema_error(s, call->span, cycle ? "'%.*s' is called recursively"
                                                 : "'%.*s' is called %d tile functions deep",
                            (int)call->name.len, call->name.ptr, MAX_INLINE_DEPTH);
    ts_diag_hint(s->d, d, "tile functions are inlined; recursion is not supported");
    fn->failed = true;
    return false;
  }
  binding *b = sema_alloc(s, (want * (TS_MAX_RANK + 1) + 2) * sizeof *b);
  ts_node **kids = sema_alloc(s, (want * (TS_MAX_RANK + 1) + 1) * sizeof *kids);
  if (!b || !kids)
    return false;
  uint32_t nb = 0, nk = 0;
  bool ok = true;
  /* the dtype parameters first: the others' types may name them */
  for (uint32_t i = 0; i < want && !fn->failed; i++) {
    ts_node *a = call->kids[i], *p = params->kids[i];
    if (!is_dtype_param(p))
      continue;
    ts_symbol *ds = a->kind == TS_NODE_NAME ? sema_dtype_param(s, a->name) : NULL;
    ts_dtype dt = a->kind == TS_NODE_DTYPE ? a->dtype
                  : ds                     ? ds->cval.dt
                                           : TS_DTYPE_COUNT;
    ts_symbol *sym = dt < TS_DTYPE_COUNT ? dtype_symbol(s, p, dt) : NULL;
    if (!sym) {
      if (dt >= TS_DTYPE_COUNT) {
        ts_diag *d = sema_error(s, a->span, "argument %u of '%.*s' must be a type", i + 1,
                                (int)call->name.len, call->name.ptr);
        ts_diag_note(s->d, d, s->src, p->span, "'%.*s' is declared 'dtype' here",
                     (int)p->name.len, p->name.ptr);
        ts_diag_hint(s->d, d, "an element type such as 'bf16', or a dtype param");
      }
      ok = false;
      continue;
    }
    a->sym = ds;
    a->type = &sema_dtype_type;
    b[nb++] = (binding){.name = p->name, .sym = sym, .type = true};
  }
  for (uint32_t i = 0; i < want; i++) {
    ts_node *a = call->kids[i], *p = params->kids[i], *pt = param_type(p);
    if (is_dtype_param(p))
      continue;
    if (a->kind == TS_NODE_NAMED) {
      sema_error(s, a->span, "tile functions take no named arguments");
      ok = false;
      continue;
    }
    ts_dtype dt = pt && !fn->failed ? bound_dtype(pt, b, nb) : TS_DTYPE_COUNT;
    if (dt >= TS_DTYPE_COUNT) {
      sema_expr(s, a); /* the argument's own errors; the parameter's are reported */
      ok = false;
      continue;
    }
    if (pt->has_shape || is_tile_param(p)) {
      ok = bind_tile_arg(s, call, i, p, dt, b, &nb, kids, &nk) && ok;
      continue;
    }
    const ts_type *t = sema_expr(s, a);
    if (t->kind == TS_TYPE_ERROR) {
      ok = false;
      continue;
    }
    if (t->kind != TS_TYPE_SCALAR || !sema_assignable(dt, t)) {
      char ctx[96];
      snprintf(ctx, sizeof ctx, "argument %u of '%.*s'", i + 1,
               (int)call->name.len > 32 ? 32 : (int)call->name.len, call->name.ptr);
      sema_mismatch(s, a->span, ctx, dt, t);
      ok = false;
      continue;
    }
    /* an immutable scalar of the parameter's type is bound by name (no copy);
     * else `let p = argument;`, the argument checked where it was written */
    if (a->kind == TS_NODE_NAME && immutable_value(a->sym) && t->dtype == dt && !t->literal) {
      b[nb++] = (binding){.name = p->name, .sym = a->sym};
      continue;
    }
    /* (a type name is resolved in the body, to this call's type) */
    if (!(kids[nk] = binding_let(s, p->name, p->span,
                                 pt->op == TS_TOK_IDENT ? copy_tree(s, pt) : pt, a)))
      return false;
    nk++;
  }
  if (!ok)
    return false;
  for (uint32_t q = 0; q < nb; q++)
    if (b[q].shape && !(b[q].sym = shape_symbol(s, call, &b[q])))
      return false;
  ts_node *copy = copy_tree(s, body);
  if (!copy)
    return false;
  if (ret) {
    /* `var NAME#r: T = 0;` where the call stands, T the result's type at
     * this call; the body's last statement (its return) assigns it */
    ts_dtype dt = bound_dtype(decl->kids[1], b, nb);
    ts_node *var = sema_alloc(s, sizeof *var), **vk = sema_alloc(s, 2 * sizeof *vk);
    ts_node *tn = sema_alloc(s, sizeof *tn), *zero = zero_of(s, dt, call->span);
    ts_node *last = copy->kid_count ? copy->kids[copy->kid_count - 1] : NULL;
    ts_node **ak = sema_alloc(s, 2 * sizeof *ak), *target = sema_alloc(s, sizeof *target);
    if (!var || !vk || !tn || !zero || !ak || !target || dt >= TS_DTYPE_COUNT || !last ||
        last->kind != TS_NODE_RETURN || !last->kid_count)
      return false;
    tn->kind = TS_NODE_TYPE;
    tn->span = call->span;
    tn->dtype = dt;
    tn->op = TS_TOK_F32; /* (a dtype's type node: resolved) */
    *var = (ts_node){.kind = TS_NODE_VAR, .span = call->span, .name = ret_name, .kids = vk,
                     .kid_count = 2};
    vk[0] = tn;
    vk[1] = zero;
    sema_check_stmt(s, var); /* (in the caller's scope) */
    if (!var->sym)
      return false;
    *target = (ts_node){.kind = TS_NODE_NAME, .span = last->span, .name = ret_name};
    ak[0] = target;
    ak[1] = last->kids[0];
    last->kind = TS_NODE_ASSIGN;
    last->op = TS_TOK_ASSIGN;
    last->kids = ak;
    last->kid_count = 2;
    b[nb++] = (binding){.name = ret_name, .sym = var->sym};
    *ret = var;
  }
  for (uint32_t q = 0; q < nb; q++)
    if (b[q].fixed)
      rewrite_view(s, copy, &b[q]);
  /* The body's scope: the globals, then the bindings and the lets. */
  scope *caller = s->sc;
  ts_symbol *outer = s->tile_fn;
  s->sc = &s->globals;
  scope sc;
  sema_push_scope(s, &sc, false);
  for (uint32_t q = 0; q < nb && !s->nomem; q++) {
    ts_status st = ts_map_put(&sc.names, b[q].name, b[q].sym);
    if (st) {
      ts_status_free(st);
      s->nomem = true;
    }
  }
  /* (check_let: the values keep the types they were checked with where
   * they were written, as sema_expr checks a node once) */
  for (uint32_t q = 0; q < nk; q++)
    sema_check_stmt(s, kids[q]);
  ts_diag *last = s->d->tail;
  s->tile_fn = fn;
  s->inlining[s->inline_depth++] = fn;
  sema_check_block(s, copy);
  s->inline_depth--;
  s->tile_fn = outer;
  sema_pop_scope(s);
  s->sc = caller;
  /* what the copy reported happened in this call */
  for (ts_diag *d = last ? last->next : s->d->head; d; d = d->next)
    ts_diag_note(s->d, d, s->src, call->span, "in this call of '%.*s'",
                 (int)call->name.len, call->name.ptr);
  kids[nk++] = copy;
  stmt->kind = TS_NODE_BLOCK;
  stmt->kids = kids;
  stmt->kid_count = nk;
  return true;
}

void sema_inline_call(sema *s, ts_node *stmt, ts_node *call, ts_symbol *fn) {
  if (fn->decl->kids[1]) {
    ts_diag *d = sema_error(s, call->span, "the result of '%.*s' is not used",
                            (int)call->name.len, call->name.ptr);
    ts_diag_hint(s->d, d, "a tile function's result initialises a let: 'let v = %.*s(...);'",
                 (int)call->name.len, call->name.ptr);
    return;
  }
  inline_call(s, stmt, call, fn, (ts_str){0}, NULL);
}

void sema_inline_result(sema *s, ts_node *let, ts_node *call, ts_symbol *fn) {
  /* the let itself goes last, its value the hidden var */
  ts_node *final = sema_alloc(s, sizeof *final), *inl = sema_alloc(s, sizeof *inl);
  ts_node *name = sema_alloc(s, sizeof *name), **kids = sema_alloc(s, 3 * sizeof *kids);
  ts_str hidden = sema_hidden_name(s, let->name, "r");
  if (!final || !inl || !name || !kids || !hidden.len)
    return;
  *final = *let;
  *inl = (ts_node){.kind = TS_NODE_EXPR_STMT, .span = call->span};
  ts_node *var = NULL;
  if (!inline_call(s, inl, call, fn, hidden, &var)) {
    /* (reported) the name stays declared, so that its uses say no more */
    ts_symbol *sym = sema_declare(s, let->kind == TS_NODE_LET ? TS_SYM_LET : TS_SYM_VAR,
                                  let->name, let, &sema_error_type);
    let->sym = sym;
    return;
  }
  *name = (ts_node){.kind = TS_NODE_NAME, .span = call->span, .name = hidden};
  final->kids = sema_alloc(s, 2 * sizeof *final->kids);
  if (!final->kids)
    return;
  final->kids[0] = let->kids[0];
  final->kids[1] = name;
  kids[0] = var;
  kids[1] = inl;
  kids[2] = final;
  let->kind = TS_NODE_BLOCK;
  let->op = TS_TOK_LET; /* (its names are the enclosing scope's) */
  let->kids = kids;
  let->kid_count = 3;
  sema_check_stmt(s, final);
}

/* ---- tile function results inside expressions
 * A call of a tile function with a result that stands inside an expression
 * of a statement (`let v = 1.0 + f(x);`, `if f(x) > 0.0 {`, `y[i] = g(f(a),
 * b);`, a loop's bounds, a `return`'s value) is computed before the
 * statement, in the statement's block: each such call, inner before outer
 * and left before right, becomes `let f#hN = f(...);` (sema_inline_result's
 * form) and the call a use of that name. An `else if`'s condition is
 * computed where it is evaluated: the `if` becomes the block of the `else`
 * (sema_else_results).
 * Not in a tile's shape or a `parallel`'s extents (constants), where
 * check_fn_call reports the call. */

typedef struct hoisted {
  ts_node **calls;
  uint32_t n, cap;
  bool nomem;
} hoisted;

static bool is_result_call(sema *s, const ts_node *e) {
  if (!e || e->kind != TS_NODE_CALL)
    return false;
  ts_symbol *fn = sema_callee(s, e);
  return sema_is_tile_fn(fn) && fn->decl->kids[1];
}

/* The result calls in expression e, inner and left first (not e itself when
 * `top` is false: a let's value that is the call, a call statement). */
static void collect_results(sema *s, ts_node *e, bool top, hoisted *h) {
  if (!e)
    return;
  switch (e->kind) {
  case TS_NODE_UNARY:
  case TS_NODE_BINARY:
  case TS_NODE_CALL:
  case TS_NODE_NAMED:
  case TS_NODE_INDEX:
  case TS_NODE_SLICE: break;
  default: return; /* (leaves, and nothing else holds an expression) */
  }
  for (uint32_t i = 0; i < e->kid_count; i++)
    collect_results(s, e->kids[i], true, h);
  if (!top || !is_result_call(s, e))
    return;
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? 2 * h->cap : 4;
    ts_node **c = sema_alloc(s, cap * sizeof *c);
    if (!c) {
      h->nomem = true;
      return;
    }
    if (h->n)
      memcpy(c, h->calls, h->n * sizeof *c);
    h->calls = c;
    h->cap = cap;
  }
  h->calls[h->n++] = e;
}

/* The result calls that statement n computes first. */
static void results_of(sema *s, ts_node *n, hoisted *h) {
  switch (n ? n->kind : TS_NODE_ERROR) {
  case TS_NODE_LET:
  case TS_NODE_VAR: collect_results(s, n->kids[1], false, h); break;
  case TS_NODE_ASSIGN:
    collect_results(s, n->kids[0], true, h);
    collect_results(s, n->kids[1], true, h);
    break;
  case TS_NODE_EXPR_STMT: collect_results(s, n->kids[0], false, h); break;
  case TS_NODE_IF: collect_results(s, n->kids[0], true, h); break;
  case TS_NODE_FOR:
  case TS_NODE_PIPELINED:
    collect_results(s, n->kids[0], true, h);
    collect_results(s, n->kids[1], true, h);
    break;
  case TS_NODE_RETURN:
    if (n->kid_count)
      collect_results(s, n->kids[0], true, h);
    break;
  default: break;
  }
}

void sema_hoist_results(sema *s, ts_node *b, uint32_t i) {
  hoisted h = {0};
  results_of(s, b->kids[i], &h);
  if (h.nomem)
    s->nomem = true;
  if (!h.n || h.nomem)
    return;
  ts_node **kids = sema_alloc(s, (b->kid_count + h.n) * sizeof *kids);
  if (!kids)
    return;
  memcpy(kids, b->kids, i * sizeof *kids);
  for (uint32_t k = 0; k < h.n; k++) {
    ts_node *call = h.calls[k], *moved = sema_alloc(s, sizeof *moved);
    ts_node *let = sema_alloc(s, sizeof *let), **lk = sema_alloc(s, 2 * sizeof *lk);
    char suffix[16];
    snprintf(suffix, sizeof suffix, "h%u", ++s->hoists);
    ts_str name = sema_hidden_name(s, call->name, suffix);
    if (!moved || !let || !lk || !name.len)
      return;
    *moved = *call;
    lk[0] = NULL;
    lk[1] = moved;
    *let = (ts_node){.kind = TS_NODE_LET, .span = call->span, .name = name, .kids = lk,
                     .kid_count = 2};
    *call = (ts_node){.kind = TS_NODE_NAME, .span = call->span, .name = name};
    kids[i + k] = let;
  }
  memcpy(kids + i + h.n, b->kids + i, (b->kid_count - i) * sizeof *kids);
  b->kids = kids;
  b->kid_count += h.n;
}

void sema_else_results(sema *s, ts_node *n) {
  ts_node *e = n->kids[2];
  if (!e || e->kind != TS_NODE_IF)
    return;
  hoisted h = {0};
  collect_results(s, e->kids[0], true, &h);
  ts_node *blk = h.n ? sema_alloc(s, sizeof *blk) : NULL;
  ts_node **bk = blk ? sema_alloc(s, sizeof *bk) : NULL;
  if (bk) {
    bk[0] = e;
    *blk = (ts_node){.kind = TS_NODE_BLOCK, .span = e->span, .kids = bk, .kid_count = 1};
    n->kids[2] = blk;
  }
}
