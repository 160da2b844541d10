/* sema_expr.c - expressions: scalar types and their promotion rules,
 * constant folding (params, literals, ceildiv, ...), the canonical linear
 * form of extents, element reads, casts, and calls of value built-ins and
 * helper functions. */
#include "dsl/sema.h"

#include <math.h>
#include <string.h>

const ts_type sema_error_type = {.kind = TS_TYPE_ERROR};
const ts_type sema_void_type = {.kind = TS_TYPE_VOID};
const ts_type sema_string_type = {.kind = TS_TYPE_STRING};
const ts_type sema_dtype_type = {.kind = TS_TYPE_DTYPE};

static const ts_type scalars[TS_DTYPE_COUNT] = {
#define DTYPE(name, text, bits, cls, tok)                                      \
  {.kind = TS_TYPE_SCALAR, .dtype = TS_DTYPE_##name},
#include "dsl/dtypes.def"
#undef DTYPE
};
static const ts_type literals[TS_DTYPE_COUNT] = {
#define DTYPE(name, text, bits, cls, tok)                                      \
  {.kind = TS_TYPE_SCALAR, .dtype = TS_DTYPE_##name, .literal = true},
#include "dsl/dtypes.def"
#undef DTYPE
};

const ts_type *sema_scalar(ts_dtype dt) { return &scalars[dt]; }
const ts_type *sema_literal(ts_dtype dt) { return &literals[dt]; }

bool sema_is_scalar(const ts_type *t) { return t->kind == TS_TYPE_SCALAR; }
bool sema_is_int(const ts_type *t) {
  return t->kind == TS_TYPE_SCALAR && ts_dtype_is_int(t->dtype);
}
bool sema_is_float(const ts_type *t) {
  return t->kind == TS_TYPE_SCALAR && ts_dtype_is_float(t->dtype);
}
bool sema_is_bool(const ts_type *t) {
  return t->kind == TS_TYPE_SCALAR && t->dtype == TS_DTYPE_BOOL;
}

const char *sema_type_str(sema *s, const ts_type *t) {
  ts_buf b;
  ts_buf_init(&b, s->u->alloc);
  ts_type_print(s->u, t, &b);
  char *r = ts_arena_strndup(&s->u->arena, b.ptr ? b.ptr : "?", b.len);
  ts_buf_deinit(&b);
  return r ? r : "?";
}

bool sema_assignable(ts_dtype dt, const ts_type *v) {
  if (v->kind != TS_TYPE_SCALAR)
    return false;
  if (ts_dtype_is_float(dt))
    return ts_dtype_is_float(v->dtype) ||
           (v->literal && ts_dtype_is_int(v->dtype));
  if (ts_dtype_is_int(dt))
    return ts_dtype_is_int(v->dtype);
  return v->dtype == TS_DTYPE_BOOL;
}

void sema_mismatch(sema *s, ts_span sp, const char *ctx, ts_dtype want,
                   const ts_type *got) {
  if (got->kind == TS_TYPE_ERROR)
    return;
  ts_diag *d =
      sema_error(s, sp, "%s: expected a value of type '%s', found '%s'", ctx,
                 ts_dtype_name(want), sema_type_str(s, got));
  if (got->kind == TS_TYPE_SCALAR)
    ts_diag_hint(s->d, d, "convert it: '%s(...)'", ts_dtype_name(want));
}

/* ---- extents --------------------------------------------------------------
 */

ts_extent sema_extent_const(int64_t c) {
  ts_extent e;
  memset(&e, 0, sizeof e);
  e.c = c;
  return e;
}

ts_extent sema_extent_atom(uint32_t atom) {
  ts_extent e = sema_extent_const(0);
  e.term_count = 1;
  e.terms[0].coef = 1;
  e.terms[0].atom = atom;
  return e;
}

bool sema_extent_is_const(const ts_extent *e) { return e->term_count == 0; }

bool sema_extent_eq(const ts_extent *a, const ts_extent *b) {
  return ts_extent_equal(a, b);
}

bool ts_extent_equal(const ts_extent *a, const ts_extent *b) {
  if (a->c != b->c || a->term_count != b->term_count)
    return false;
  for (uint32_t i = 0; i < a->term_count; i++)
    if (a->terms[i].atom != b->terms[i].atom ||
        a->terms[i].coef != b->terms[i].coef)
      return false;
  return true;
}

uint32_t sema_new_atom(sema *s, ts_str name) {
  ts_unit *u = s->u;
  if (u->atom_count == u->atom_cap) {
    uint32_t cap = u->atom_cap ? u->atom_cap * 2 : 32;
    ts_str *a = ts_resize(u->alloc, u->atom_names, u->atom_cap * sizeof *a,
                          cap * sizeof *a);
    if (!a) {
      s->nomem = true;
      return 0;
    }
    u->atom_names = a;
    u->atom_cap = cap;
  }
  if (name.len > 40)
    name.len = 40;
  u->atom_names[u->atom_count] = name;
  return u->atom_count++;
}

/* a + k*b, terms kept sorted by atom; false on overflow or too many terms. */
static bool extent_axpy(ts_extent a, int64_t k, const ts_extent *b,
                        ts_extent *out) {
  int64_t kc;
  if (__builtin_mul_overflow(k, b->c, &kc) ||
      __builtin_add_overflow(a.c, kc, &a.c))
    return false;
  for (uint32_t j = 0; j < b->term_count; j++) {
    int64_t coef;
    if (__builtin_mul_overflow(k, b->terms[j].coef, &coef))
      return false;
    uint32_t atom = b->terms[j].atom, i = 0;
    while (i < a.term_count && a.terms[i].atom < atom)
      i++;
    if (i < a.term_count && a.terms[i].atom == atom) {
      if (__builtin_add_overflow(a.terms[i].coef, coef, &a.terms[i].coef))
        return false;
      if (a.terms[i].coef == 0) {
        memmove(&a.terms[i], &a.terms[i + 1],
                (a.term_count - i - 1) * sizeof a.terms[0]);
        a.term_count--;
      }
    } else {
      if (a.term_count == TS_EXTENT_TERMS)
        return false;
      memmove(&a.terms[i + 1], &a.terms[i],
              (a.term_count - i) * sizeof a.terms[0]);
      a.terms[i].atom = atom;
      a.terms[i].coef = coef;
      a.term_count++;
    }
  }
  *out = a;
  return true;
}

bool sema_extent_sub(sema *s, ts_extent a, ts_extent b, ts_extent *out) {
  (void)s;
  return extent_axpy(a, -1, &b, out);
}

/* Whether two checked expressions have the same value wherever both are
 * evaluated: the same tree over the same names that cannot change (dims,
 * params, scalar arguments, lets, loop indices, constants) and pure
 * built-ins; a `var`, an element read, a call with effects or a helper
 * call is never the same. */
static bool same_value(const ts_node *a, const ts_node *b) {
  if (a->kind != b->kind || a->op != b->op || a->kid_count != b->kid_count ||
      a->builtin != b->builtin || a->cval.kind != b->cval.kind)
    return false;
  if (a->cval.kind != TS_CONST_NONE)
    return a->cval.i == b->cval.i && a->cval.b == b->cval.b &&
           (a->cval.f == b->cval.f || (a->cval.f != a->cval.f && b->cval.f != b->cval.f));
  switch (a->kind) {
  case TS_NODE_NAME:
    return a->sym && a->sym == b->sym &&
           (a->sym->kind == TS_SYM_DIM || a->sym->kind == TS_SYM_PARAM ||
            a->sym->kind == TS_SYM_SCALAR || a->sym->kind == TS_SYM_LET ||
            a->sym->kind == TS_SYM_LOOP || a->sym->kind == TS_SYM_CONST);
  case TS_NODE_UNARY:
  case TS_NODE_BINARY: break;
  case TS_NODE_CALL:
    if (!ts_str_eq(a->name, b->name))
      return false;
    if (a->builtin != TS_BUILTIN_MIN && a->builtin != TS_BUILTIN_MAX &&
        a->builtin != TS_BUILTIN_CEILDIV && a->builtin != TS_BUILTIN_ABS &&
        a->builtin != TS_BUILTIN_SELECT && a->builtin != TS_BUILTIN_BLOCK_ID &&
        !(a->builtin == TS_BUILTIN_NONE && a->dtype < TS_DTYPE_COUNT &&
          a->dtype == b->dtype && !a->sym)) /* a conversion i64(x) */
      return false;
    break;
  default: return false;
  }
  for (uint32_t i = 0; i < a->kid_count; i++)
    if (!a->kids[i] || !b->kids[i] || !same_value(a->kids[i], b->kids[i]))
      return false;
  return true;
}

static ts_extent opaque(sema *s, ts_node *n) {
  for (uint32_t i = 0; i < s->opaque_count; i++)
    if (same_value(s->opaques[i].expr, n))
      return sema_extent_atom(s->opaques[i].atom);
  ts_str text = {s->src->text + n->span.lo, n->span.hi - n->span.lo};
  uint32_t atom = sema_new_atom(s, text);
  if (s->opaque_count == s->opaque_cap) {
    uint32_t cap = s->opaque_cap ? s->opaque_cap * 2 : 16;
    struct opaque_atom *o = ts_resize(s->u->alloc, s->opaques, s->opaque_cap * sizeof *o,
                                      cap * sizeof *o);
    if (!o) {
      s->nomem = true;
      return sema_extent_atom(atom);
    }
    s->opaques = o;
    s->opaque_cap = cap;
  }
  s->opaques[s->opaque_count++] = (struct opaque_atom){n, atom};
  return sema_extent_atom(atom);
}

ts_extent sema_extent_of(sema *s, ts_node *n) {
  if (!n)
    return sema_extent_const(0);
  if (n->cval.kind == TS_CONST_INT)
    return sema_extent_const(n->cval.i);
  if (n->kind == TS_NODE_NAME && n->sym &&
      (n->sym->kind == TS_SYM_DIM || n->sym->kind == TS_SYM_LET ||
       n->sym->kind == TS_SYM_LOOP || n->sym->kind == TS_SYM_SCALAR))
    return sema_extent_atom(n->sym->atom);
  if (n->kind == TS_NODE_BINARY && n->kid_count == 2) {
    ts_extent a = sema_extent_of(s, n->kids[0]);
    ts_extent b = sema_extent_of(s, n->kids[1]);
    ts_extent r;
    if (n->op == TS_TOK_PLUS && extent_axpy(a, 1, &b, &r))
      return r;
    if (n->op == TS_TOK_MINUS && extent_axpy(a, -1, &b, &r))
      return r;
    if (n->op == TS_TOK_STAR) {
      if (sema_extent_is_const(&a) &&
          extent_axpy(sema_extent_const(0), a.c, &b, &r))
        return r;
      if (sema_extent_is_const(&b) &&
          extent_axpy(sema_extent_const(0), b.c, &a, &r))
        return r;
    }
  }
  if (n->kind == TS_NODE_UNARY && n->op == TS_TOK_MINUS && n->kid_count == 1) {
    ts_extent a = sema_extent_of(s, n->kids[0]), r;
    if (extent_axpy(sema_extent_const(0), -1, &a, &r))
      return r;
  }
  return opaque(s, n);
}

/* ---- constants -------------------------------------------------------------
 */

static void set_int(ts_node *n, int64_t v) {
  n->cval.kind = TS_CONST_INT;
  n->cval.i = v;
}
static void set_float(ts_node *n, double v) {
  n->cval.kind = TS_CONST_FLOAT;
  n->cval.f = v;
}
static void set_bool(ts_node *n, bool v) {
  n->cval.kind = TS_CONST_BOOL;
  n->cval.b = v;
}

static double as_float(const ts_const *c) {
  return c->kind == TS_CONST_FLOAT ? c->f : (double)c->i;
}

static void overflow(sema *s, ts_node *n) {
  ts_diag *d = sema_error(s, n->span, "constant expression overflows 64 bits");
  ts_diag_hint(s->d, d, "integers are 64-bit; the result does not fit");
}

/* Folds a binary operation whose operands are both constant. */
static void fold_binary(sema *s, ts_node *n, const ts_const *a,
                        const ts_const *b) {
  int op = n->op;
  if (a->kind == TS_CONST_INT && b->kind == TS_CONST_INT) {
    int64_t x = a->i, y = b->i, r = 0;
    bool ovf = false;
    switch (op) {
    case TS_TOK_PLUS: ovf = __builtin_add_overflow(x, y, &r); break;
    case TS_TOK_MINUS: ovf = __builtin_sub_overflow(x, y, &r); break;
    case TS_TOK_STAR: ovf = __builtin_mul_overflow(x, y, &r); break;
    case TS_TOK_SLASH:
    case TS_TOK_PERCENT:
      if (y == 0) {
        sema_error(s, n->span, "division by zero in a constant expression");
        return;
      }
      if (x == INT64_MIN && y == -1) {
        overflow(s, n);
        return;
      }
      r = op == TS_TOK_SLASH ? x / y : x % y;
      break;
    case TS_TOK_AMP: r = x & y; break;
    case TS_TOK_PIPE: r = x | y; break;
    case TS_TOK_CARET: r = x ^ y; break;
    case TS_TOK_SHL:
    case TS_TOK_SHR:
      if (y < 0 || y > 63) {
        sema_error(s, n->span, "shift by %lld is out of range 0..63",
                   (long long)y);
        return;
      }
      r = op == TS_TOK_SHL ? (int64_t)((uint64_t)x << y) : x >> y;
      break;
    case TS_TOK_EQ: set_bool(n, x == y); return;
    case TS_TOK_NE: set_bool(n, x != y); return;
    case TS_TOK_LT: set_bool(n, x < y); return;
    case TS_TOK_LE: set_bool(n, x <= y); return;
    case TS_TOK_GT: set_bool(n, x > y); return;
    case TS_TOK_GE: set_bool(n, x >= y); return;
    default: return;
    }
    if (ovf)
      overflow(s, n);
    else
      set_int(n, r);
    return;
  }
  if (a->kind == TS_CONST_BOOL && b->kind == TS_CONST_BOOL) {
    switch (op) {
    case TS_TOK_ANDAND: set_bool(n, a->b && b->b); return;
    case TS_TOK_OROR: set_bool(n, a->b || b->b); return;
    case TS_TOK_EQ: set_bool(n, a->b == b->b); return;
    case TS_TOK_NE: set_bool(n, a->b != b->b); return;
    default: return;
    }
  }
  if (a->kind == TS_CONST_BOOL || b->kind == TS_CONST_BOOL)
    return;
  double x = as_float(a), y = as_float(b);
  switch (op) {
  case TS_TOK_PLUS: set_float(n, x + y); return;
  case TS_TOK_MINUS: set_float(n, x - y); return;
  case TS_TOK_STAR: set_float(n, x * y); return;
  case TS_TOK_SLASH: set_float(n, x / y); return;
  case TS_TOK_EQ: set_bool(n, x == y); return;
  case TS_TOK_NE: set_bool(n, x != y); return;
  case TS_TOK_LT: set_bool(n, x < y); return;
  case TS_TOK_LE: set_bool(n, x <= y); return;
  case TS_TOK_GT: set_bool(n, x > y); return;
  case TS_TOK_GE: set_bool(n, x >= y); return;
  default: return;
  }
}

/* ---- operand rules ---------------------------------------------------------
 */

/* The type two arithmetic operands compute in, or NULL when they don't mix. */
static const ts_type *unify(const ts_type *a, const ts_type *b) {
  ts_dtype x = ts_dtype_promote(a->dtype), y = ts_dtype_promote(b->dtype);
  bool fx = ts_dtype_is_float(x), fy = ts_dtype_is_float(y);
  if (x == TS_DTYPE_BOOL || y == TS_DTYPE_BOOL)
    return NULL;
  if (a->literal && b->literal)
    return (fx || fy) ? sema_literal(TS_DTYPE_F32) : sema_literal(TS_DTYPE_I64);
  if (a->literal)
    return (!fx || fy) ? sema_scalar(y) : NULL;
  if (b->literal)
    return (!fy || fx) ? sema_scalar(x) : NULL;
  if (fx != fy)
    return NULL;
  if (fx)
    return sema_scalar(TS_DTYPE_F32);
  return sema_scalar(ts_dtype_bits(x) >= ts_dtype_bits(y) ? x : y);
}

static const char *op_text(int op) { return ts_tok_spelling((ts_tok_kind)op); }

static bool want_scalar(sema *s, ts_node *n, const ts_type *t) {
  if (t->kind == TS_TYPE_SCALAR)
    return true;
  if (t->kind == TS_TYPE_ERROR)
    return false;
  if (t->kind == TS_TYPE_TILE || t->kind == TS_TYPE_TENSOR) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' is a %s, not a scalar value",
                            (int)n->name.len, n->name.ptr,
                            t->kind == TS_TYPE_TILE ? "tile" : "tensor");
    if (n->kind == TS_NODE_NAME)
      ts_diag_hint(s->d, d, "read one element: '%.*s[i, ...]'",
                   (int)n->name.len, n->name.ptr);
    return false;
  }
  if (t->kind == TS_TYPE_STRING)
    sema_error(s, n->span, "a string is only allowed in 'print' and 'assert'");
  else if (t->kind == TS_TYPE_DTYPE)
    sema_error(s, n->span, "a type name is not a value");
  else if (t->kind == TS_TYPE_VOID)
    sema_error(s, n->span, "this call has no value");
  return false;
}

static const ts_type *check_unary(sema *s, ts_node *n) {
  ts_node *x = n->kids[0];
  const ts_type *t = sema_expr(s, x);
  if (!want_scalar(s, x, t))
    return &sema_error_type;
  ts_dtype dt = ts_dtype_promote(t->dtype);
  const ts_type *r = t->literal ? sema_literal(dt) : sema_scalar(dt);
  switch (n->op) {
  case TS_TOK_MINUS:
    if (dt == TS_DTYPE_BOOL)
      break;
    if (x->cval.kind == TS_CONST_INT) {
      if (x->cval.i == INT64_MIN)
        overflow(s, n);
      else
        set_int(n, -x->cval.i);
    } else if (x->cval.kind == TS_CONST_FLOAT)
      set_float(n, -x->cval.f);
    return r;
  case TS_TOK_BANG:
    if (dt != TS_DTYPE_BOOL)
      break;
    if (x->cval.kind == TS_CONST_BOOL)
      set_bool(n, !x->cval.b);
    return r;
  case TS_TOK_TILDE:
    if (!ts_dtype_is_int(dt))
      break;
    if (x->cval.kind == TS_CONST_INT)
      set_int(n, ~x->cval.i);
    return r;
  default: break;
  }
  sema_error(s, n->span, "'%s' cannot be applied to a value of type '%s'",
             op_text(n->op), sema_type_str(s, t));
  return &sema_error_type;
}

static const ts_type *check_binary(sema *s, ts_node *n) {
  ts_node *l = n->kids[0], *r = n->kids[1];
  const ts_type *a = sema_expr(s, l), *b = sema_expr(s, r);
  if (!want_scalar(s, l, a) | !want_scalar(s, r, b))
    return &sema_error_type;
  const ts_type *res = NULL;
  int op = n->op;
  bool logical = op == TS_TOK_ANDAND || op == TS_TOK_OROR;
  bool compare = op == TS_TOK_EQ || op == TS_TOK_NE || op == TS_TOK_LT ||
                 op == TS_TOK_LE || op == TS_TOK_GT || op == TS_TOK_GE;
  bool bitwise = op == TS_TOK_AMP || op == TS_TOK_PIPE || op == TS_TOK_CARET ||
                 op == TS_TOK_SHL || op == TS_TOK_SHR;
  if (logical) {
    if (sema_is_bool(a) && sema_is_bool(b))
      res = sema_scalar(TS_DTYPE_BOOL);
  } else if (compare) {
    if (sema_is_bool(a) && sema_is_bool(b) &&
        (op == TS_TOK_EQ || op == TS_TOK_NE))
      res = sema_scalar(TS_DTYPE_BOOL);
    else if (unify(a, b))
      res = sema_scalar(TS_DTYPE_BOOL);
  } else {
    const ts_type *u = unify(a, b);
    if (u && (!bitwise || ts_dtype_is_int(u->dtype)) &&
        (op != TS_TOK_PERCENT || ts_dtype_is_int(u->dtype)))
      res = u;
  }
  if (!res) {
    ts_diag *d =
        sema_error(s, n->span, "'%s' cannot combine '%s' and '%s'", op_text(op),
                   sema_type_str(s, a), sema_type_str(s, b));
    if (ts_dtype_is_float(ts_dtype_promote(a->dtype)) !=
            ts_dtype_is_float(ts_dtype_promote(b->dtype)) &&
        !logical)
      ts_diag_hint(s->d, d, "convert one side, e.g. 'f32(x)' or 'i64(x)'");
    else if (logical)
      ts_diag_hint(s->d, d,
                   "'&&' and '||' take bools; compare first, "
                   "e.g. 'x != 0'");
    return &sema_error_type;
  }
  if (l->cval.kind != TS_CONST_NONE && r->cval.kind != TS_CONST_NONE)
    fold_binary(s, n, &l->cval, &r->cval);
  return res;
}

/* ---- names and element reads ------------------------------------------------
 */

static const ts_type *check_name(sema *s, ts_node *n) {
  ts_symbol *sym = sema_lookup(s, n->name);
  if (!sym) {
    sema_unknown_name(s, n);
    return &sema_error_type;
  }
  n->sym = sym;
  sym->used = true;
  if (sym->kind == TS_SYM_FN) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' is a function, not a value",
                            (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d, "call it: '%.*s(...)'", (int)n->name.len,
                 n->name.ptr);
    return &sema_error_type;
  }
  if (sym->cval.kind == TS_CONST_DTYPE) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' is a dtype param: a type, not a value",
                            (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d, "convert with '%.*s(x)'; declare with 'frag t: %.*s[...]'",
                 (int)n->name.len, n->name.ptr, (int)n->name.len, n->name.ptr);
    return &sema_error_type;
  }
  if (sym->cval.kind != TS_CONST_NONE)
    n->cval = sym->cval;
  return sym->type ? sym->type : &sema_error_type;
}

/* t[i, j]: one element of a tensor or tile, read as a scalar. */
static const ts_type *check_element(sema *s, ts_node *n) {
  ts_node *base = n->kids[0];
  if (base->kind != TS_NODE_NAME) {
    sema_error(s, base->span, "only a tensor or a tile can be indexed");
    return &sema_error_type;
  }
  const ts_type *t = check_name(s, base);
  if (t->kind == TS_TYPE_ERROR)
    return t;
  if (t->kind != TS_TYPE_TILE && t->kind != TS_TYPE_TENSOR) {
    sema_error(s, base->span, "'%.*s' is a %s and cannot be indexed",
               (int)base->name.len, base->name.ptr,
               sema_sym_kind_name(base->sym->kind));
    return &sema_error_type;
  }
  uint32_t subs = n->kid_count - 1;
  bool ok = true;
  for (uint32_t i = 1; i < n->kid_count; i++) {
    ts_node *k = n->kids[i];
    if (k->kind == TS_NODE_SLICE) {
      ts_diag *d = sema_error(s, k->span, "a slice is not a scalar value");
      ts_diag_hint(s->d, d,
                   "slices go in 'copy', 'gemm' and the other tile "
                   "operations");
      ok = false;
      continue;
    }
    if (!sema_int_expr(s, k, "an index"))
      ok = false;
    else if (k->cval.kind == TS_CONST_INT && i - 1 < t->rank &&
             sema_extent_is_const(&t->dims[i - 1]) &&
             (k->cval.i < 0 || k->cval.i >= t->dims[i - 1].c)) {
      sema_error(s, k->span, "index %lld is out of range for a dim of %lld",
                 (long long)k->cval.i, (long long)t->dims[i - 1].c);
      ok = false;
    }
  }
  if (subs != t->rank) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' has %u dims but %u %s given",
                            (int)base->name.len, base->name.ptr, t->rank, subs,
                            subs == 1 ? "index is" : "indices are");
    sema_note_decl(s, d, base->sym);
    return &sema_error_type;
  }
  if (!ok)
    return &sema_error_type;
  return sema_scalar(ts_dtype_promote(t->dtype));
}

bool sema_int_expr(sema *s, ts_node *n, const char *what) {
  const ts_type *t = sema_expr(s, n);
  if (!want_scalar(s, n, t))
    return false;
  if (!ts_dtype_is_int(t->dtype)) {
    ts_diag *d = sema_error(s, n->span, "%s must be an integer, found '%s'",
                            what, sema_type_str(s, t));
    if (ts_dtype_is_float(t->dtype))
      ts_diag_hint(s->d, d, "convert it: 'i64(...)'");
    return false;
  }
  return true;
}

bool sema_const_int(sema *s, ts_node *n, const char *what, int64_t *out) {
  if (!sema_int_expr(s, n, what))
    return false;
  if (n->cval.kind != TS_CONST_INT) {
    ts_diag *d =
        sema_error(s, n->span, "%s must be known at compile time", what);
    ts_diag_hint(s->d, d, "use literals and params here");
    return false;
  }
  *out = n->cval.i;
  return true;
}

/* ---- calls
 * ------------------------------------------------------------------- */

static bool arg_count(sema *s, ts_node *n, uint32_t lo, uint32_t hi,
                      const char *sig) {
  uint32_t c = n->kid_count;
  for (uint32_t i = 0; i < c; i++)
    if (n->kids[i]->kind == TS_NODE_NAMED) {
      sema_error(s, n->kids[i]->span, "'%.*s' takes no named arguments",
                 (int)n->name.len, n->name.ptr);
      return false;
    }
  if (c >= lo && c <= hi)
    return true;
  sema_arg_count_error(s, n->span, n->name.ptr, n->name.len, lo, hi, c, sig);
  return false;
}

void sema_arg_count_error(sema *s, ts_span sp, const char *name, size_t len, uint32_t lo,
                          uint32_t hi, uint32_t c, const char *sig) {
  uint32_t k = c < lo ? lo : hi;
  ts_diag *d = sema_error(s, sp, "'%.*s' takes %s%u argument%s, found %u", (int)len, name,
                          lo == hi ? "" : c < lo ? "at least " : "at most ", k,
                          k == 1 ? "" : "s", c);
  ts_diag_hint(s->d, d, "'%s'", sig);
}

static const ts_type *check_cast(sema *s, ts_node *n) {
  if (!arg_count(s, n, 1, 1, "dtype(x)"))
    return &sema_error_type;
  ts_node *x = n->kids[0];
  const ts_type *t = sema_expr(s, x);
  if (!want_scalar(s, x, t))
    return &sema_error_type;
  if (n->dtype == TS_DTYPE_BOOL) {
    ts_diag *d = sema_error(s, n->span, "there is no conversion to 'bool'");
    ts_diag_hint(s->d, d, "compare instead: 'x != 0'");
    return &sema_error_type;
  }
  if (x->cval.kind == TS_CONST_INT && ts_dtype_is_int(n->dtype))
    n->cval = x->cval;
  return sema_scalar(n->dtype);
}

static const ts_type *record_call(sema *s, ts_node *n, ts_symbol *fn) {
  if (s->fn) {
    if (s->edge_count == s->edge_cap) {
      uint32_t cap = s->edge_cap ? s->edge_cap * 2 : 16;
      call_edge *e = ts_resize(s->u->alloc, s->edges, s->edge_cap * sizeof *e,
                               cap * sizeof *e);
      if (!e) {
        s->nomem = true;
        return &sema_error_type;
      }
      s->edges = e;
      s->edge_cap = cap;
    }
    s->edges[s->edge_count++] = (call_edge){s->fn, fn, n};
  }
  return NULL;
}

static const ts_type *check_fn_call(sema *s, ts_node *n, ts_symbol *fn) {
  n->sym = fn;
  fn->used = true;
  if (ts_fn_is_tile(fn->decl) && fn->decl->kids[1]) {
    ts_diag *d = sema_error(s, n->span, "the result of tile function '%.*s' cannot be "
                            "computed here", (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d, "a result is computed before the statement it is in; a tile's "
                 "shape, the extents of 'parallel' and a kernel's header take constants");
    return &sema_error_type;
  }
  if (ts_fn_is_tile(fn->decl)) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' is a tile function and has no value",
                            (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d, "call it as a statement of its own: '%.*s(...);'",
                 (int)n->name.len, n->name.ptr);
    return &sema_error_type;
  }
  ts_node *params = fn->decl->kids[0];
  uint32_t want = params ? params->kid_count : 0;
  if (n->kid_count != want) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' takes %u argument%s, found %u",
                            (int)n->name.len, n->name.ptr, want,
                            want == 1 ? "" : "s", n->kid_count);
    sema_note_decl(s, d, fn);
    return &sema_error_type;
  }
  bool ok = true;
  for (uint32_t i = 0; i < want; i++) {
    ts_node *a = n->kids[i];
    if (a->kind == TS_NODE_NAMED) {
      sema_error(s, a->span, "helper functions take no named arguments");
      ok = false;
      continue;
    }
    const ts_type *t = sema_expr(s, a);
    if (!want_scalar(s, a, t)) {
      ok = false;
      continue;
    }
    ts_node *p = params->kids[i];
    ts_node *pt = p->kids ? p->kids[0] : NULL;
    if (pt && pt->dtype < TS_DTYPE_COUNT && !sema_assignable(pt->dtype, t)) {
      char ctx[64];
      snprintf(ctx, sizeof ctx, "argument %u of '%.*s'", i + 1,
               (int)n->name.len > 32 ? 32 : (int)n->name.len, n->name.ptr);
      sema_mismatch(s, a->span, ctx, pt->dtype, t);
      ok = false;
    }
  }
  const ts_type *err = record_call(s, n, fn);
  if (err || !ok)
    return &sema_error_type;
  return fn->type ? fn->type : &sema_void_type;
}

/* A float math function of one argument. */
static const ts_type *float_fn(sema *s, ts_node *n, ts_builtin b) {
  const ts_type *t = sema_expr(s, n->kids[0]);
  if (!want_scalar(s, n->kids[0], t))
    return &sema_error_type;
  if (!ts_dtype_is_float(ts_dtype_promote(t->dtype)) && !t->literal) {
    ts_diag *d = sema_error(s, n->span, "'%s' takes a float, found '%s'",
                            ts_builtin_name(b), sema_type_str(s, t));
    ts_diag_hint(s->d, d, "convert it: 'f32(...)'");
    return &sema_error_type;
  }
  if (t->dtype == TS_DTYPE_BOOL) {
    sema_error(s, n->span, "'%s' takes a float, found 'bool'",
               ts_builtin_name(b));
    return &sema_error_type;
  }
  return sema_scalar(TS_DTYPE_F32);
}

static const ts_type *check_atomic(sema *s, ts_node *n, ts_builtin b) {
  if (s->fn || !s->kernel) {
    sema_error(s, n->span, "'%s' can only be used in a kernel",
               ts_builtin_name(b));
    return &sema_error_type;
  }
  ts_node *ref = n->kids[0];
  if (ref->kind != TS_NODE_INDEX) {
    ts_diag *d = sema_error(s, ref->span,
                            "'%s' needs one element of a "
                            "tensor or a shared tile",
                            ts_builtin_name(b));
    ts_diag_hint(s->d, d, "'%s'", ts_builtin_signature(b));
    return &sema_error_type;
  }
  const ts_type *et = sema_expr(s, ref);
  const ts_type *vt = sema_expr(s, n->kids[1]);
  if (et->kind == TS_TYPE_ERROR || !want_scalar(s, n->kids[1], vt))
    return &sema_error_type;
  ts_node *base = ref->kids[0];
  const ts_type *bt = base->sym ? base->sym->type : NULL;
  if (bt && bt->kind == TS_TYPE_TILE && bt->scope == TS_SCOPE_FRAG) {
    ts_diag *d =
        sema_error(s, base->span,
                   "'%s' needs global or shared "
                   "memory, but '%.*s' is a frag tile",
                   ts_builtin_name(b), (int)base->name.len, base->name.ptr);
    ts_diag_hint(s->d, d,
                 "frag elements belong to one thread; update it "
                 "with '+='");
    return &sema_error_type;
  }
  ts_dtype dt = bt ? bt->dtype : TS_DTYPE_F32;
  if (dt == TS_DTYPE_BOOL || dt == TS_DTYPE_I8 || dt == TS_DTYPE_FP8E4M3) {
    sema_error(s, n->span, "'%s' does not support '%s' elements",
               ts_builtin_name(b), ts_dtype_name(dt));
    return &sema_error_type;
  }
  if (!sema_assignable(dt, vt)) {
    sema_mismatch(s, n->kids[1]->span, ts_builtin_name(b), dt, vt);
    return &sema_error_type;
  }
  return sema_scalar(ts_dtype_promote(dt));
}

static const ts_type *check_builtin(sema *s, ts_node *n, ts_builtin b) {
  n->builtin = b;
  switch (b) {
#define BUILTIN(name, text, cls, lo, hi, sig)                                  \
  case TS_BUILTIN_##name:                                                      \
    if (!arg_count(s, n, lo, hi, sig))                                         \
      return &sema_error_type;                                                 \
    break;
#include "dsl/builtins.def"
#undef BUILTIN
  default: break;
  }
  ts_node **k = n->kids;
  switch (b) {
  case TS_BUILTIN_BLOCK_ID: {
    int64_t d;
    if (!sema_const_int(s, k[0], "the dim of 'block_id'", &d))
      return &sema_error_type;
    if (!s->kernel) {
      sema_error(s, n->span, "'block_id' can only be used in a kernel");
      return &sema_error_type;
    }
    if (d < 0 || (uint64_t)d >= s->kernel->grid_rank) {
      ts_diag *de = sema_error(s, k[0]->span,
                               "'block_id(%lld)' is out of range: the grid "
                               "has %u dim%s",
                               (long long)d, s->kernel->grid_rank,
                               s->kernel->grid_rank == 1 ? "" : "s");
      (void)de;
      return &sema_error_type;
    }
    return sema_scalar(TS_DTYPE_I64);
  }
  case TS_BUILTIN_THREAD_ID:
    if (!s->kernel) {
      sema_error(s, n->span, "'thread_id' can only be used in a kernel");
      return &sema_error_type;
    }
    s->kernel->simt = true;
    return sema_scalar(TS_DTYPE_I64);
  case TS_BUILTIN_CEILDIV: {
    if (!sema_int_expr(s, k[0], "the first argument of 'ceildiv'") |
        !sema_int_expr(s, k[1], "the second argument of 'ceildiv'"))
      return &sema_error_type;
    if (k[1]->cval.kind == TS_CONST_INT && k[1]->cval.i <= 0) {
      sema_error(s, k[1]->span,
                 "'ceildiv' needs a positive divisor, found "
                 "%lld",
                 (long long)k[1]->cval.i);
      return &sema_error_type;
    }
    if (k[0]->cval.kind == TS_CONST_INT && k[1]->cval.kind == TS_CONST_INT) {
      int64_t a = k[0]->cval.i, d = k[1]->cval.i;
      set_int(n, a >= 0 ? a / d + (a % d != 0) : -((-a) / d));
    }
    return unify(k[0]->type, k[1]->type);
  }
  case TS_BUILTIN_MIN:
  case TS_BUILTIN_MAX: {
    const ts_type *a = sema_expr(s, k[0]), *c = sema_expr(s, k[1]);
    if (!want_scalar(s, k[0], a) | !want_scalar(s, k[1], c))
      return &sema_error_type;
    const ts_type *u = unify(a, c);
    if (!u) {
      sema_error(s, n->span, "'%s' cannot combine '%s' and '%s'",
                 ts_builtin_name(b), sema_type_str(s, a), sema_type_str(s, c));
      return &sema_error_type;
    }
    if (k[0]->cval.kind == TS_CONST_INT && k[1]->cval.kind == TS_CONST_INT) {
      int64_t x = k[0]->cval.i, y = k[1]->cval.i;
      set_int(n, b == TS_BUILTIN_MIN ? (x < y ? x : y) : (x > y ? x : y));
    }
    return u;
  }
  case TS_BUILTIN_ABS: {
    const ts_type *a = sema_expr(s, k[0]);
    if (!want_scalar(s, k[0], a))
      return &sema_error_type;
    if (a->dtype == TS_DTYPE_BOOL) {
      sema_error(s, n->span, "'abs' takes a number, found 'bool'");
      return &sema_error_type;
    }
    return sema_scalar(ts_dtype_promote(
        a->literal && ts_dtype_is_int(a->dtype) ? TS_DTYPE_I64 : a->dtype));
  }
  case TS_BUILTIN_SELECT: {
    const ts_type *c = sema_expr(s, k[0]);
    const ts_type *a = sema_expr(s, k[1]), *e = sema_expr(s, k[2]);
    if (!want_scalar(s, k[0], c) | !want_scalar(s, k[1], a) |
        !want_scalar(s, k[2], e))
      return &sema_error_type;
    if (!sema_is_bool(c)) {
      ts_diag *d = sema_error(s, k[0]->span,
                              "the condition of 'select' must "
                              "be 'bool', found '%s'",
                              sema_type_str(s, c));
      ts_diag_hint(s->d, d, "compare it: 'x != 0'");
      return &sema_error_type;
    }
    const ts_type *u = sema_is_bool(a) && sema_is_bool(e) ? sema_scalar(TS_DTYPE_BOOL)
                                                         : unify(a, e);
    if (!u) {
      sema_error(s, n->span, "'select' cannot combine '%s' and '%s'",
                 sema_type_str(s, a), sema_type_str(s, e));
      return &sema_error_type;
    }
    /* a condition known at compile time picks its value, when that is
     * known too (a param's default: `select(arch == 0, 256, 64)`) */
    const ts_node *pick = k[0]->cval.kind == TS_CONST_BOOL ? k[k[0]->cval.b ? 1 : 2] : NULL;
    if (pick && pick->cval.kind != TS_CONST_NONE) {
      n->cval = pick->cval;
      if (ts_dtype_is_float(u->dtype) && n->cval.kind == TS_CONST_INT)
        set_float(n, (double)n->cval.i);
    }
    return u->literal ? sema_scalar(u->dtype) : u;
  }
  case TS_BUILTIN_BITCAST: {
    const ts_type *a = sema_expr(s, k[0]);
    if (!want_scalar(s, k[0], a))
      return &sema_error_type;
    ts_symbol *ps = k[1]->kind == TS_NODE_NAME ? sema_dtype_param(s, k[1]->name) : NULL;
    if (ps) { /* a dtype param names its value */
      k[1]->kind = TS_NODE_DTYPE;
      k[1]->dtype = ps->cval.dt;
    }
    if (k[1]->kind != TS_NODE_DTYPE) {
      sema_error(s, k[1]->span,
                 "the second argument of 'bitcast' is a type "
                 "name such as 'i32'");
      return &sema_error_type;
    }
    k[1]->type = &sema_dtype_type;
    ts_dtype from =
        a->literal ? (ts_dtype_is_float(a->dtype) ? TS_DTYPE_F32 : TS_DTYPE_I64)
                   : a->dtype;
    ts_dtype to = k[1]->dtype;
    if (ts_dtype_bits(from) != ts_dtype_bits(to) || to == TS_DTYPE_BOOL ||
        from == TS_DTYPE_BOOL) {
      sema_error(s, n->span,
                 "'bitcast' from '%s' to '%s' changes the size "
                 "(%d bits to %d)",
                 ts_dtype_name(from), ts_dtype_name(to), ts_dtype_bits(from),
                 ts_dtype_bits(to));
      return &sema_error_type;
    }
    return sema_scalar(to);
  }
  case TS_BUILTIN_ATOMIC_ADD:
  case TS_BUILTIN_ATOMIC_MAX: return check_atomic(s, n, b);
  case TS_BUILTIN_POW: {
    const ts_type *a = float_fn(s, n, b);
    const ts_type *e = sema_expr(s, k[1]);
    if (a->kind == TS_TYPE_ERROR || !want_scalar(s, k[1], e))
      return &sema_error_type;
    if (!ts_dtype_is_float(ts_dtype_promote(e->dtype)) && !e->literal) {
      sema_error(s, k[1]->span, "'pow' takes a float exponent, found '%s'",
                 sema_type_str(s, e));
      return &sema_error_type;
    }
    return a;
  }
  case TS_BUILTIN_EXP:
  case TS_BUILTIN_EXP2:
  case TS_BUILTIN_LOG:
  case TS_BUILTIN_LOG2:
  case TS_BUILTIN_SQRT:
  case TS_BUILTIN_RSQRT:
  case TS_BUILTIN_SIN:
  case TS_BUILTIN_COS:
  case TS_BUILTIN_TANH:
  case TS_BUILTIN_FLOOR:
  case TS_BUILTIN_CEIL:
  case TS_BUILTIN_RELU:
  case TS_BUILTIN_SIGMOID:
  case TS_BUILTIN_SOFTPLUS:
  case TS_BUILTIN_SILU: return float_fn(s, n, b);
  default: {
    ts_diag *d = sema_error(s, n->span, "'%s' is a statement, not a value",
                            ts_builtin_name(b));
    ts_diag_hint(s->d, d, "write it on its own line: '%s;'",
                 ts_builtin_signature(b));
    return &sema_error_type;
  }
  }
}

static const ts_type *check_call(sema *s, ts_node *n) {
  if (n->dtype < TS_DTYPE_COUNT)
    return check_cast(s, n);
  if (n->name.len == 0)
    return &sema_error_type;
  ts_symbol *dp = sema_dtype_param(s, n->name);
  if (dp) { /* W(x) with W a dtype param: the conversion to its value */
    n->dtype = dp->cval.dt;
    return check_cast(s, n);
  }
  ts_symbol *sym = sema_lookup(s, n->name);
  if (sym && sym->kind == TS_SYM_FN && sym->decl &&
      sym->decl->kind == TS_NODE_KERNEL) {
    ts_diag *d = sema_error(s, n->span,
                            "'%.*s' is a kernel and cannot be "
                            "called",
                            (int)n->name.len, n->name.ptr);
    ts_diag_hint(s->d, d,
                 "kernels are launched by the runtime; share code "
                 "through 'fn' helpers");
    return &sema_error_type;
  }
  if (sym && sym->kind == TS_SYM_FN)
    return check_fn_call(s, n, sym);
  if (sym && sym->kind != TS_SYM_FN) {
    ts_diag *d = sema_error(s, n->span, "'%.*s' is a %s, not a function",
                            (int)n->name.len, n->name.ptr,
                            sema_sym_kind_name(sym->kind));
    sema_note_decl(s, d, sym);
    return &sema_error_type;
  }
  ts_builtin b = ts_builtin_lookup(n->name);
  if (b == TS_BUILTIN_NONE) {
    sema_unknown_name(s, n);
    return &sema_error_type;
  }
  return check_builtin(s, n, b);
}

const ts_type *sema_expr(sema *s, ts_node *n) {
  if (!n)
    return &sema_error_type;
  if (n->type)
    return n->type;
  const ts_type *t;
  switch (n->kind) {
  case TS_NODE_INT:
    set_int(n, n->ival);
    t = sema_literal(TS_DTYPE_I64);
    break;
  case TS_NODE_FLOAT:
    set_float(n, n->fval);
    t = sema_literal(TS_DTYPE_F32);
    break;
  case TS_NODE_BOOL:
    set_bool(n, n->ival != 0);
    t = sema_scalar(TS_DTYPE_BOOL);
    break;
  case TS_NODE_STRING: t = &sema_string_type; break;
  case TS_NODE_NAME: t = check_name(s, n); break;
  case TS_NODE_DTYPE: t = &sema_dtype_type; break;
  case TS_NODE_UNARY: t = check_unary(s, n); break;
  case TS_NODE_BINARY: t = check_binary(s, n); break;
  case TS_NODE_CALL: t = check_call(s, n); break;
  case TS_NODE_INDEX: t = check_element(s, n); break;
  case TS_NODE_SLICE:
    sema_error(s, n->span, "a slice is not a scalar value");
    t = &sema_error_type;
    break;
  case TS_NODE_NAMED:
    sema_error(s, n->span, "a named argument is only allowed in a call");
    t = &sema_error_type;
    break;
  default: t = &sema_error_type; break;
  }
  if (!t)
    t = &sema_error_type;
  n->type = t;
  return t;
}
