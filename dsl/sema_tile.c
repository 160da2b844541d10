/* sema_tile.c - tile references (`x[r:r+BM, :]`, gathers `kv[idx[:], :]`)
 * and the tile operations: copy, fill, clear, gemm, reduce_*, barrier,
 * print and assert. Shapes are compared in the canonical extent form, so
 * `x[r:r+BM, :]` agrees with a `[BM, N]` tile. */
#include "dsl/sema.h"

#include <string.h>

static ts_type *new_type(sema *s) {
  ts_type *t = sema_alloc(s, sizeof *t);
  return t;
}

static const char *name_of(ts_node *n, char *buf, size_t size) {
  ts_node *b = n->kind == TS_NODE_INDEX && n->kid_count ? n->kids[0] : n;
  if (b->kind == TS_NODE_NAME)
    snprintf(buf, size, "%.*s", (int)(b->name.len > 40 ? 40 : b->name.len),
             b->name.ptr);
  else
    snprintf(buf, size, "operand");
  return buf;
}

static const char *scope_name(ts_scope sc) {
  return sc == TS_SCOPE_GLOBAL   ? "global"
         : sc == TS_SCOPE_SHARED ? "shared"
                                 : "frag";
}

/* The base symbol of a reference, checked to be a tensor or a tile. */
static ts_symbol *ref_base(sema *s, ts_node *b, const char *op) {
  if (b->kind != TS_NODE_NAME) {
    sema_error(s, b->span, "'%s' needs a tensor or a tile here", op);
    return NULL;
  }
  ts_symbol *sym = sema_lookup(s, b->name);
  if (!sym) {
    sema_unknown_name(s, b);
    return NULL;
  }
  b->sym = sym;
  sym->used = true;
  if (sym->kind != TS_SYM_TENSOR && sym->kind != TS_SYM_TILE) {
    ts_diag *d = sema_error(s, b->span,
                            "'%s' needs a tensor or a tile, but "
                            "'%.*s' is a %s",
                            op, (int)b->name.len, b->name.ptr,
                            sema_sym_kind_name(sym->kind));
    sema_note_decl(s, d, sym);
    return NULL;
  }
  b->type = sym->type;
  return sym;
}

static bool is_gather(ts_node *k) {
  if (k->kind != TS_NODE_INDEX)
    return false;
  for (uint32_t i = 1; i < k->kid_count; i++)
    if (k->kids[i]->kind == TS_NODE_SLICE)
      return true;
  return false;
}

static const ts_type *tile_ref_depth(sema *s, ts_node *n, const char *op,
                                     int depth);

/* One subscript of a reference; appends to `out` unless it is an index
 * that drops the dim. */
static bool subscript(sema *s, ts_node *k, const ts_extent *dim, ts_type *out,
                      const char *op, int depth) {
  if (k->kind == TS_NODE_SLICE) {
    ts_node *lo = k->kids[0], *hi = k->kids[1];
    bool ok = true;
    if (lo && !sema_int_expr(s, lo, "a slice bound"))
      ok = false;
    if (hi && !sema_int_expr(s, hi, "a slice bound"))
      ok = false;
    if (!ok)
      return false;
    ts_extent a = lo ? sema_extent_of(s, lo) : sema_extent_const(0);
    ts_extent b = hi ? sema_extent_of(s, hi) : *dim;
    ts_extent e;
    if (!sema_extent_sub(s, b, a, &e))
      e = sema_extent_atom(sema_new_atom(
          s, (ts_str){s->src->text + k->span.lo, k->span.hi - k->span.lo}));
    if (sema_extent_is_const(&e) && e.c <= 0) {
      sema_error(s, k->span, "the slice is empty (%lld elements)",
                 (long long)e.c);
      return false;
    }
    if (sema_extent_is_const(&e) && sema_extent_is_const(dim) && e.c > dim->c) {
      sema_error(s, k->span, "the slice has %lld elements but the dim has %lld",
                 (long long)e.c, (long long)dim->c);
      return false;
    }
    out->dims[out->rank++] = e;
    return true;
  }
  if (is_gather(k)) {
    if (out->gathered) {
      sema_error(s, k->span, "a reference can gather along one dim only");
      return false;
    }
    const ts_type *it = tile_ref_depth(s, k, op, depth + 1);
    if (it->kind == TS_TYPE_ERROR)
      return false;
    if (!ts_dtype_is_int(it->dtype) || it->rank != 1) {
      ts_diag *d = sema_error(s, k->span,
                              "a gather index must be a 1-d slice "
                              "of integers, found %s",
                              sema_type_str(s, it));
      ts_diag_hint(s->d, d, "e.g. 'kv[idx[:], :]' with 'idx: i32[K]'");
      return false;
    }
    out->dims[out->rank++] = it->dims[0];
    out->gathered = true;
    return true;
  }
  return sema_int_expr(s, k, "an index");
}

static const ts_type *tile_ref_depth(sema *s, ts_node *n, const char *op,
                                     int depth) {
  if (n->kind == TS_NODE_NAME) {
    ts_symbol *sym = ref_base(s, n, op);
    return sym ? sym->type : &sema_error_type;
  }
  if (n->kind != TS_NODE_INDEX || depth > 4) {
    ts_diag *d = sema_error(s, n->span, "'%s' needs a tensor or a tile", op);
    ts_diag_hint(s->d, d, "e.g. 't', 'x[r:r+BM, :]' or 'kv[idx[:], :]'");
    return &sema_error_type;
  }
  ts_node *b = n->kids[0];
  ts_symbol *sym = ref_base(s, b, op);
  if (!sym)
    return &sema_error_type;
  const ts_type *bt = sym->type;
  if (bt->kind == TS_TYPE_ERROR) /* (a declaration in error: reported there) */
    return &sema_error_type;
  uint32_t subs = n->kid_count - 1;
  if (subs != bt->rank) {
    ts_diag *d =
        sema_error(s, n->span,
                   "'%.*s' has %u dim%s but %u "
                   "subscript%s given",
                   (int)b->name.len, b->name.ptr, bt->rank,
                   bt->rank == 1 ? "" : "s", subs, subs == 1 ? " is" : "s are");
    ts_diag_hint(s->d, d, "use ':' for a whole dim");
    return &sema_error_type;
  }
  ts_type *t = new_type(s);
  if (!t)
    return &sema_error_type;
  t->kind = bt->kind;
  t->dtype = bt->dtype;
  t->scope = bt->scope;
  bool ok = true;
  for (uint32_t i = 0; i < subs; i++)
    if (!subscript(s, n->kids[i + 1], &bt->dims[i], t, op, depth))
      ok = false;
  if (!ok)
    return &sema_error_type;
  if (t->rank == 0) {
    ts_diag *d = sema_error(s, n->span,
                            "'%s' needs a tile, but this is one "
                            "element",
                            op);
    ts_diag_hint(s->d, d, "slice at least one dim, e.g. 'x[i:i+1, j]'");
    return &sema_error_type;
  }
  n->type = t;
  return t;
}

static const ts_type *tile_ref(sema *s, ts_node *n, const char *op) {
  const ts_type *t = tile_ref_depth(s, n, op, 0);
  n->type = t;
  return t;
}

static void print_shape(sema *s, const ts_type *t, ts_buf *b) {
  ts_buf_putc(b, '[');
  for (uint32_t i = 0; i < t->rank; i++) {
    if (i)
      ts_buf_puts(b, ", ");
    ts_extent_print(s->u, &t->dims[i], b);
  }
  ts_buf_putc(b, ']');
}

/* Reports unless `a` (the op's `aname` operand) has shape `want`. */
/* t's shape as text ("[4, 8]") in buf, cut at size. */
static const char *shape_text(sema *s, const ts_type *t, char *buf, size_t size) {
  ts_buf x;
  ts_buf_init(&x, s->u->alloc);
  print_shape(s, t, &x);
  snprintf(buf, size, "%s", x.ptr ? x.ptr : "");
  ts_buf_deinit(&x);
  return buf;
}

static bool same_shape(sema *s, ts_node *call, const char *op, ts_node *an,
                       const ts_type *a, const char *aname, ts_node *bn,
                       const ts_type *b, const char *bname) {
  bool ok = a->rank == b->rank;
  for (uint32_t i = 0; ok && i < a->rank; i++)
    ok = sema_extent_eq(&a->dims[i], &b->dims[i]);
  if (ok)
    return true;
  char n1[48], n2[48], x[160], y[160];
  ts_diag *d =
      sema_error(s, call->span,
                 "'%s' shapes do not agree: %s '%s' is %s but %s "
                 "'%s' is %s",
                 op, aname, name_of(an, n1, sizeof n1), shape_text(s, a, x, sizeof x),
                 bname, name_of(bn, n2, sizeof n2), shape_text(s, b, y, sizeof y));
  ts_node *bb = bn->kind == TS_NODE_INDEX ? bn->kids[0] : bn;
  if (bb->sym)
    sema_note_decl(s, d, bb->sym);
  return false;
}

/* Splits call arguments into positional ones and the named ones listed in
 * `names` (values stored into `named`, NULL when absent). */
static bool split_args(sema *s, ts_node *call, const char *op, ts_node **pos,
                       uint32_t npos, const char *const *names, ts_node **named,
                       uint32_t nnamed) {
  uint32_t p = 0;
  bool seen_named = false, ok = true;
  for (uint32_t i = 0; i < nnamed; i++)
    named[i] = NULL;
  for (uint32_t i = 0; i < call->kid_count; i++) {
    ts_node *a = call->kids[i];
    if (a->kind == TS_NODE_NAMED) {
      seen_named = true;
      uint32_t j = 0;
      while (j < nnamed && !ts_str_eq_cstr(a->name, names[j]))
        j++;
      if (j == nnamed) {
        ts_diag *d = sema_error(s, a->span,
                                "'%s' has no argument named "
                                "'%.*s'",
                                op, (int)(a->name.len > 40 ? 40 : a->name.len),
                                a->name.ptr);
        ts_diag_hint(s->d, d, "'%s'",
                     ts_builtin_signature(ts_builtin_lookup(ts_str_from(op))));
        ok = false;
      } else if (named[j]) {
        sema_error(s, a->span, "'%s' is given twice", names[j]);
        ok = false;
      } else {
        named[j] = a->kids[0];
      }
      continue;
    }
    if (seen_named) {
      sema_error(s, a->span,
                 "a positional argument cannot follow a named "
                 "one");
      return false;
    }
    if (p < npos)
      pos[p] = a;
    p++;
  }
  if (p != npos) {
    ts_diag *d = sema_error(s, call->span, "'%s' takes %u argument%s, found %u",
                            op, npos, npos == 1 ? "" : "s", p);
    ts_diag_hint(s->d, d, "'%s'",
                 ts_builtin_signature(ts_builtin_lookup(ts_str_from(op))));
    return false;
  }
  return ok;
}

static bool const_bool(sema *s, ts_node *n, const char *what, bool *out) {
  if (!n)
    return true;
  const ts_type *t = sema_expr(s, n);
  if (t->kind == TS_TYPE_ERROR)
    return false;
  if (n->cval.kind != TS_CONST_BOOL) {
    sema_error(s, n->span,
               "'%s' must be 'true' or 'false' (a compile-time "
               "bool)",
               what);
    return false;
  }
  *out = n->cval.b;
  return true;
}

/* A tile that must be in one scope ("'gemm' needs a frag accumulator"). */
static bool want_scope(sema *s, const char *op, ts_node *n, const ts_type *t,
                       const char *role, bool allow_shared, bool allow_frag) {
  bool ok =
      (t->kind == TS_TYPE_TILE && t->scope == TS_SCOPE_SHARED &&
       allow_shared) ||
      (t->kind == TS_TYPE_TILE && t->scope == TS_SCOPE_FRAG && allow_frag);
  if (ok)
    return true;
  char nm[48];
  const char *want = allow_shared && allow_frag ? "a shared or frag tile"
                     : allow_frag               ? "a frag tile"
                                                : "a shared tile";
  ts_node *b = n->kind == TS_NODE_INDEX ? n->kids[0] : n;
  ts_diag *d = sema_error(
      s, n->span, "'%s' needs %s%s%s, but '%s' is %s", op, want,
      role[0] ? " as " : "", role, name_of(n, nm, sizeof nm),
      t->kind == TS_TYPE_TENSOR ? "a global tensor" : scope_name(t->scope));
  if (b->sym)
    sema_note_decl(s, d, b->sym);
  if (b->sym && b->sym->kind == TS_SYM_TILE && allow_frag && b->sym->decl &&
      b->sym->decl->kid_count && b->sym->decl->kids[0]) {
    ts_span ty = b->sym->decl->kids[0]->span;
    ts_diag_hint(s->d, d, "declare it as 'frag %s: %.*s'", nm,
                 (int)(ty.hi - ty.lo > 80 ? 80 : ty.hi - ty.lo),
                 s->src->text + ty.lo);
  } else if (t->kind == TS_TYPE_TENSOR) {
    ts_diag_hint(s->d, d, "copy it into a tile first");
  }
  return false;
}

static bool same_class(ts_dtype a, ts_dtype b) {
  return (ts_dtype_is_float(a) && ts_dtype_is_float(b)) ||
         (ts_dtype_is_int(a) && ts_dtype_is_int(b)) || a == b;
}

/* copy(src, dst, format="e2m1"): src holds FP4 (e2m1) codes two a byte
 * (i8), the lower element in the low nibble, and dst their values, so its
 * last dim is twice src's and every other dim the same; dst is a float
 * type (each e2m1 value is exact in every one). */
/* scale=S: dst[..., k] is the value times S[..., k / B], S's dims dst's
 * but the last, whose constant extent divides dst's into blocks of B. */
static void check_copy_scale(sema *s, ts_node *call, ts_node *sc, ts_node *dn,
                             const ts_type *dst) {
  const ts_type *t = tile_ref(s, sc, "copy");
  if (t->kind == TS_TYPE_ERROR)
    return;
  uint32_t r = dst->rank;
  bool ok = ts_dtype_is_float(t->dtype) && t->rank == r && r > 0;
  for (uint32_t i = 0; ok && i + 1 < r; i++)
    ok = sema_extent_eq(&t->dims[i], &dst->dims[i]);
  if (ok) {
    const ts_extent *e = &t->dims[r - 1], *d = &dst->dims[r - 1];
    ok = !e->term_count && !d->term_count && e->c > 0 && d->c % e->c == 0;
  }
  if (ok)
    return;
  char n1[48], n2[48], x[160], y[160];
  ts_diag *d = sema_error(s, call->span, "'copy' scale '%s' %s %s does not fit '%s' %s",
                          name_of(sc, n1, sizeof n1), ts_dtype_name(t->dtype),
                          shape_text(s, t, x, sizeof x), name_of(dn, n2, sizeof n2),
                          shape_text(s, dst, y, sizeof y));
  ts_diag_hint(s->d, d, "a float scale a block of the last dim: the destination's dims but the "
                        "last, a constant dividing the destination's");
}

static void check_packed_copy(sema *s, ts_node *call, ts_node *fmt, ts_node *a[2],
                              const ts_type *src, const ts_type *dst) {
  bool twice = fmt->kind == TS_NODE_STRING && ts_str_eq_cstr(fmt->name, "e2m1x2");
  if (fmt->kind != TS_NODE_STRING || (!twice && !ts_str_eq_cstr(fmt->name, "e2m1"))) {
    ts_diag *d = sema_error(s, fmt->span, "'copy' knows no such format");
    ts_diag_hint(s->d, d, "format=\"e2m1\": FP4 codes two a byte (i8) into a float tile; "
                          "\"e2m1x2\": twice their values into an integer one");
    return;
  }
  if (src->dtype != TS_DTYPE_I8 ||
      (twice ? !ts_dtype_is_int(dst->dtype) : !ts_dtype_is_float(dst->dtype))) {
    ts_diag *d = sema_error(s, call->span,
                            "'copy' with format=\"%s\" reads i8 codes into %s "
                            "tile, not '%s' into '%s'",
                            twice ? "e2m1x2" : "e2m1", twice ? "an integer" : "a float",
                            ts_dtype_name(src->dtype), ts_dtype_name(dst->dtype));
    ts_diag_hint(s->d, d, "two codes a byte: the lower element in the low nibble");
    return;
  }
  bool ok = src->rank == dst->rank && src->rank > 0;
  ts_type want = *src; /* src's shape, its last dim twice */
  if (src->rank > 0) {
    ts_extent *w = &want.dims[src->rank - 1];
    w->c *= 2;
    for (uint32_t t = 0; t < w->term_count; t++)
      w->terms[t].coef *= 2;
  }
  for (uint32_t i = 0; ok && i < src->rank; i++)
    ok = sema_extent_eq(&want.dims[i], &dst->dims[i]);
  ts_node *sc = ts_call_named(call, "scale");
  if (ok && sc)
    check_copy_scale(s, call, sc, a[1], dst);
  if (ok)
    return;
  char n1[48], n2[48], x[160], y[160], z[160];
  ts_diag *d = sema_error(s, call->span,
                          "'copy' with format=\"%s\" unpacks '%s' %s into %s, but '%s' "
                          "is %s",
                          twice ? "e2m1x2" : "e2m1", name_of(a[0], n1, sizeof n1),
                          shape_text(s, src, x, sizeof x), shape_text(s, &want, y, sizeof y),
                          name_of(a[1], n2, sizeof n2), shape_text(s, dst, z, sizeof z));
  ts_diag_hint(s->d, d, "two codes a byte: the destination's last dim is twice the source's");
}

static void check_copy(sema *s, ts_node *call) {
  static const char *const names[] = {"format", "scale"};
  ts_node *a[2], *named[2], *fmt;
  if (!split_args(s, call, "copy", a, 2, names, named, 2))
    return;
  fmt = named[0];
  /* (e2m1x2's integers take no scale either) */
  if (named[1] &&
      (!fmt || (fmt->kind == TS_NODE_STRING && ts_str_eq_cstr(fmt->name, "e2m1x2")))) {
    ts_diag *d = sema_error(s, named[1]->span, "'copy' takes a scale only with a format");
    ts_diag_hint(s->d, d, "copy(codes, t, format=\"e2m1\", scale=s)");
    return;
  }
  const ts_type *src = tile_ref(s, a[0], "copy");
  const ts_type *dst = tile_ref(s, a[1], "copy");
  if (src->kind == TS_TYPE_ERROR || dst->kind == TS_TYPE_ERROR)
    return;
  if (src->kind == TS_TYPE_TENSOR && dst->kind == TS_TYPE_TENSOR) {
    ts_diag *d = sema_error(s, call->span,
                            "'copy' needs a shared or frag "
                            "tile on one side");
    ts_diag_hint(s->d, d, "copy through a tile: global -> tile -> global");
    return;
  }
  if (fmt) {
    check_packed_copy(s, call, fmt, a, src, dst);
    return;
  }
  if (!same_class(src->dtype, dst->dtype)) {
    ts_diag *d =
        sema_error(s, call->span,
                   "'copy' cannot convert '%s' to "
                   "'%s'",
                   ts_dtype_name(src->dtype), ts_dtype_name(dst->dtype));
    ts_diag_hint(s->d, d, "convert element by element in a 'parallel' loop");
    return;
  }
  same_shape(s, call, "copy", a[1], dst, "destination", a[0], src, "source");
}

static void check_fill(sema *s, ts_node *call, bool clear) {
  ts_node *a[2];
  const char *op = clear ? "clear" : "fill";
  if (!split_args(s, call, op, a, clear ? 1 : 2, NULL, NULL, 0))
    return;
  const ts_type *dst = tile_ref(s, a[0], op);
  if (dst->kind == TS_TYPE_ERROR)
    return;
  if (clear)
    return;
  const ts_type *v = sema_expr(s, a[1]);
  if (v->kind == TS_TYPE_ERROR)
    return;
  if (!sema_assignable(dst->dtype, v))
    sema_mismatch(s, a[1]->span, "'fill'", dst->dtype, v);
}

static void check_gemm(sema *s, ts_node *call) {
  static const char *const names[] = {"trans_a", "trans_b", "accumulate", "tf32"};
  ts_node *a[3], *named[4];
  if (!split_args(s, call, "gemm", a, 3, names, named, 4))
    return;
  bool ta = false, tb = false, acc = true, tf32 = false;
  bool ok = const_bool(s, named[0], "trans_a", &ta) &
            const_bool(s, named[1], "trans_b", &tb) &
            const_bool(s, named[2], "accumulate", &acc) &
            const_bool(s, named[3], "tf32", &tf32);
  const ts_type *A = tile_ref(s, a[0], "gemm");
  const ts_type *B = tile_ref(s, a[1], "gemm");
  const ts_type *C = tile_ref(s, a[2], "gemm");
  if (!ok || A->kind == TS_TYPE_ERROR || B->kind == TS_TYPE_ERROR ||
      C->kind == TS_TYPE_ERROR)
    return;
  ok = want_scope(s, "gemm", a[0], A, "operand 'a'", true, true) &
       want_scope(s, "gemm", a[1], B, "operand 'b'", true, true) &
       want_scope(s, "gemm", a[2], C, "accumulator", false, true);
  if (!ok)
    return;
  const ts_type *ts3[3] = {A, B, C};
  for (int i = 0; i < 3; i++)
    if (ts3[i]->rank != 2) {
      char nm[48];
      sema_error(s, a[i]->span,
                 "'gemm' needs 2-d tiles, but '%s' has %u "
                 "dim%s",
                 name_of(a[i], nm, sizeof nm), ts3[i]->rank,
                 ts3[i]->rank == 1 ? "" : "s");
      return;
    }
  if (A->dtype != B->dtype) {
    sema_error(s, call->span,
               "'gemm' operands differ in type: 'a' is '%s' and "
               "'b' is '%s'",
               ts_dtype_name(A->dtype), ts_dtype_name(B->dtype));
    return;
  }
  if (tf32 && A->dtype != TS_DTYPE_F32) {
    ts_diag *d = sema_error(s, named[3]->span, "'gemm' with tf32=true needs 'f32' operands, "
                            "but they are '%s'", ts_dtype_name(A->dtype));
    ts_diag_hint(s->d, d, "tf32 truncates f32 operands to TensorFloat-32 (10-bit mantissa) "
                 "so that they run on tensor cores; other types need no such option");
    return;
  }
  bool int_in = ts_dtype_is_int(A->dtype);
  if (A->dtype == TS_DTYPE_BOOL || (int_in && A->dtype != TS_DTYPE_I8)) {
    sema_error(s, call->span, "'gemm' does not take '%s' operands",
               ts_dtype_name(A->dtype));
    return;
  }
  if (int_in ? C->dtype != TS_DTYPE_I32
             : C->dtype != TS_DTYPE_F32 && C->dtype != TS_DTYPE_F16 &&
                   C->dtype != TS_DTYPE_BF16) {
    ts_diag *d = sema_error(s, a[2]->span,
                            "'gemm' of '%s' accumulates in "
                            "'%s', but the accumulator is '%s'",
                            ts_dtype_name(A->dtype), int_in ? "i32" : "f32",
                            ts_dtype_name(C->dtype));
    (void)d;
    return;
  }
  const ts_extent *M = &A->dims[ta ? 1 : 0], *K = &A->dims[ta ? 0 : 1];
  const ts_extent *K2 = &B->dims[tb ? 1 : 0], *N = &B->dims[tb ? 0 : 1];
  if (!sema_extent_eq(K, K2)) {
    ts_buf x, y;
    ts_buf_init(&x, s->u->alloc);
    ts_buf_init(&y, s->u->alloc);
    ts_extent_print(s->u, K, &x);
    ts_extent_print(s->u, K2, &y);
    ts_diag *d = sema_error(s, call->span,
                            "'gemm' reduction dims differ: 'a' "
                            "has K = %s but 'b' has K = %s",
                            x.ptr ? x.ptr : "", y.ptr ? y.ptr : "");
    ts_diag_hint(s->d, d,
                 "a is [M, K] (or [K, M] with trans_a=true), b is "
                 "[K, N] (or [N, K] with trans_b=true)");
    ts_buf_deinit(&x);
    ts_buf_deinit(&y);
    return;
  }
  ts_type want;
  memset(&want, 0, sizeof want);
  want.kind = TS_TYPE_TILE;
  want.rank = 2;
  want.dims[0] = *M;
  want.dims[1] = *N;
  if (!sema_extent_eq(&C->dims[0], M) || !sema_extent_eq(&C->dims[1], N)) {
    ts_buf x, y;
    ts_buf_init(&x, s->u->alloc);
    ts_buf_init(&y, s->u->alloc);
    print_shape(s, C, &x);
    print_shape(s, &want, &y);
    ts_diag *d = sema_error(s, a[2]->span,
                            "'gemm' accumulator is %s but a·b "
                            "is %s",
                            x.ptr ? x.ptr : "", y.ptr ? y.ptr : "");
    ts_diag_hint(s->d, d,
                 "a is [M, K] (or [K, M] with trans_a=true), b is "
                 "[K, N] (or [N, K] with trans_b=true)");
    ts_buf_deinit(&x);
    ts_buf_deinit(&y);
  }
}

static void check_reduce(sema *s, ts_node *call, ts_builtin b) {
  static const char *const names[] = {"dim"};
  const char *op = ts_builtin_name(b);
  ts_node *a[2], *named[1];
  if (!split_args(s, call, op, a, 2, names, named, 1))
    return;
  const ts_type *src = tile_ref(s, a[0], op);
  const ts_type *dst = tile_ref(s, a[1], op);
  if (!named[0]) {
    ts_diag *d = sema_error(s, call->span,
                            "'%s' needs 'dim=' (the dim to "
                            "reduce)",
                            op);
    ts_diag_hint(s->d, d, "'%s'", ts_builtin_signature(b));
    return;
  }
  int64_t dim;
  if (!sema_const_int(s, named[0], "'dim'", &dim))
    return;
  if (src->kind == TS_TYPE_ERROR || dst->kind == TS_TYPE_ERROR)
    return;
  if (!want_scope(s, op, a[0], src, "", false, true) ||
      !want_scope(s, op, a[1], dst, "", false, true))
    return;
  if (dim < 0 || (uint64_t)dim >= src->rank) {
    sema_error(s, named[0]->span,
               "'dim=%lld' is out of range: the source has "
               "%u dim%s",
               (long long)dim, src->rank, src->rank == 1 ? "" : "s");
    return;
  }
  if (src->dtype == TS_DTYPE_BOOL || !same_class(src->dtype, dst->dtype)) {
    sema_error(s, call->span, "'%s' cannot reduce '%s' into '%s'", op,
               ts_dtype_name(src->dtype), ts_dtype_name(dst->dtype));
    return;
  }
  ts_type want;
  memset(&want, 0, sizeof want);
  want.kind = TS_TYPE_TILE;
  for (uint32_t i = 0; i < src->rank; i++)
    if (i != (uint32_t)dim)
      want.dims[want.rank++] = src->dims[i];
  if (want.rank == 0)
    want.dims[want.rank++] = sema_extent_const(1);
  same_shape(s, call, op, a[1], dst, "destination", a[0], &want,
             "the reduced source");
}

static void check_print(sema *s, ts_node *call) {
  ts_node *fmt = call->kids[0];
  if (fmt->kind != TS_NODE_STRING) {
    sema_error(s, fmt->span,
               "the first argument of 'print' is a format "
               "string");
    return;
  }
  fmt->type = &sema_string_type;
  uint32_t holes = 0;
  for (size_t i = 0; i + 1 < fmt->name.len; i++)
    if (fmt->name.ptr[i] == '{' && fmt->name.ptr[i + 1] == '}')
      holes++;
  if (holes != call->kid_count - 1) {
    sema_error(s, call->span, "the format has %u '{}' but %u value%s given",
               holes, call->kid_count - 1,
               call->kid_count - 1 == 1 ? " is" : "s are");
  }
  for (uint32_t i = 1; i < call->kid_count; i++) {
    const ts_type *t = sema_expr(s, call->kids[i]);
    if (t->kind != TS_TYPE_SCALAR && t->kind != TS_TYPE_ERROR)
      sema_error(s, call->kids[i]->span,
                 "'print' prints scalars; index the "
                 "tile");
  }
}

static void check_assert(sema *s, ts_node *call) {
  const ts_type *t = sema_expr(s, call->kids[0]);
  if (t->kind != TS_TYPE_ERROR && !sema_is_bool(t))
    sema_error(s, call->kids[0]->span, "'assert' needs a bool, found '%s'",
               sema_type_str(s, t));
  if (call->kid_count > 1) {
    if (call->kids[1]->kind != TS_NODE_STRING)
      sema_error(s, call->kids[1]->span,
                 "the message of 'assert' is a "
                 "string");
    else
      call->kids[1]->type = &sema_string_type;
  }
}

void sema_tile_op(sema *s, ts_node *call) {
  ts_builtin b = call->builtin;
  const char *op = ts_builtin_name(b);
  if (b == TS_BUILTIN_PRINT) {
    check_print(s, call);
    return;
  }
  if (b == TS_BUILTIN_ASSERT) {
    check_assert(s, call);
    return;
  }
  if (!s->kernel) {
    sema_error(s, call->span, "'%s' can only be used in a kernel", op);
    return;
  }
  if (s->in_parallel) {
    ts_diag *d = sema_error(s, call->span,
                            "'%s' works on whole tiles and "
                            "cannot be used inside 'parallel'",
                            op);
    ts_diag_hint(s->d, d,
                 "inside 'parallel', read and write elements: "
                 "'t[i, j] = ...'");
    return;
  }
  switch (b) {
  case TS_BUILTIN_COPY: check_copy(s, call); break;
  case TS_BUILTIN_FILL: check_fill(s, call, false); break;
  case TS_BUILTIN_CLEAR: check_fill(s, call, true); break;
  case TS_BUILTIN_GEMM: check_gemm(s, call); break;
  case TS_BUILTIN_REDUCE_MAX:
  case TS_BUILTIN_REDUCE_SUM:
  case TS_BUILTIN_REDUCE_ABSMAX: check_reduce(s, call, b); break;
  case TS_BUILTIN_BARRIER: /* arguments counted by the caller */ break;
  default: break;
  }
}
