/* cuda.c - the second, independent lowering of the GPU target: the typed
 * AST to CUDA C, which NVRTC compiles (nvrtc.c). It follows the execution
 * model of the MLIR lowering (gen_gpu.c: every thread runs a block's
 * scalar statements, tile ops and `parallel` split their elements over the
 * threads between barriers, scalar stores and atomics outside `parallel`
 * are done by thread 0, tiles live where gen_gpu.c places them) but shares
 * none of its code, so that running both and comparing them tests each.
 *
 * The kernel's parameters are those of the PTX kernel (docs/abi.md): per
 * tensor the five values of a memref descriptor, then dims, scalars, the
 * scratch memref and its bytes per block; the runtime launches either. */
#include "compiler/cuda_internal.h"

#include <stdarg.h>
#include <string.h>



/* ---- output and strings -------------------------------------------------- */

void cu_line(cg *c, const char *fmt, ...) TS_PRINTF(2, 3);
void cu_line(cg *c, const char *fmt, ...) {
  for (int i = 0; i < c->ind; i++)
    ts_buf_puts(c->o, "  ");
  va_list ap;
  va_start(ap, fmt);
  ts_buf_vprintf(c->o, fmt, ap);
  va_end(ap);
  ts_buf_putc(c->o, '\n');
}

/* A formatted string that lives until the end of the lowering. */
const char *cu_str(cg *c, const char *fmt, ...) TS_PRINTF(2, 3);
const char *cu_str(cg *c, const char *fmt, ...) {
  ts_buf b;
  ts_buf_init(&b, ts_allocator_system());
  va_list ap;
  va_start(ap, fmt);
  ts_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  if (b.failed || !b.ptr) {
    c->failed = true;
    ts_buf_deinit(&b);
    return "0";
  }
  if (c->nstrs == c->capstrs) {
    size_t cap = c->capstrs ? c->capstrs * 2 : 256;
    char **s = realloc(c->strs, cap * sizeof *s);
    if (!s) {
      c->failed = true;
      ts_buf_deinit(&b);
      return "0";
    }
    c->strs = s;
    c->capstrs = cap;
  }
  return c->strs[c->nstrs++] = b.ptr; /* the buffer's memory, kept */
}

void cu_unsupported(cg *c, ts_node *n, const char *what) {
  if (c->failed && ts_diags_full(c->d))
    return;
  ts_diag *dg = ts_diag_error(c->d, &c->u->src, n->span,
                              "%s is not supported by the CUDA C target yet",
                              what);
  ts_diag_hint(c->d, dg, "the PTX target (--target ptx) may support it");
  c->failed = true;
}

const char *cu_name_of(cg *c, const char *prefix, ts_str n) {
  return cu_str(c, "%s%.*s", prefix, (int)n.len, n.ptr);
}

/* A name sema made that no source can write (NAME#k: a view's index, a
 * tile function's result) */
static bool hidden_name(const ts_symbol *s) {
  return s->name.len && memchr(s->name.ptr, '#', s->name.len);
}

/* A let's or var's C name: v_NAME, or the name of its own its declaration
 * gave a tile function's parameter binding or a hidden name (cu_stmt) */
const char *cu_var_name(cg *c, const ts_symbol *s) {
  if (s->user && ((s->kind == TS_SYM_LET && s->decl && s->decl->op == TS_TOK_FN) ||
                  hidden_name(s)))
    return s->user;
  return cu_name_of(c, "v_", s->name);
}

/* A tile's C name: t_NAME, or tK_NAME for the K-th other tile of the same
 * name in the kernel (sibling blocks, a tile function inlined twice). */
const char *cu_tile_name(cg *c, const ts_symbol *s) {
  int k = 0;
  for (int i = 0; i < c->ntiles && c->tiles[i].decl->sym != s; i++)
    k += ts_str_eq(c->tiles[i].decl->sym->name, s->name);
  if (k == 0)
    return cu_name_of(c, "t_", s->name);
  return cu_str(c, "t%d_%.*s", k, (int)s->name.len, s->name.ptr);
}

/* ---- types --------------------------------------------------------------- */

const char *cu_storage_c(ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_F32: return "float";
  case TS_DTYPE_F16:
  case TS_DTYPE_BF16: return "unsigned short";
  case TS_DTYPE_FP8E4M3:
  case TS_DTYPE_BOOL: return "unsigned char";
  case TS_DTYPE_I8: return "signed char";
  case TS_DTYPE_I32: return "int";
  default: return "long long";
  }
}

ctype cu_compute_of(ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_F32:
  case TS_DTYPE_F16:
  case TS_DTYPE_BF16:
  case TS_DTYPE_FP8E4M3: return CT_F32;
  case TS_DTYPE_I8:
  case TS_DTYPE_I32: return CT_I32;
  case TS_DTYPE_BOOL: return CT_BOOL;
  default: return CT_I64;
  }
}

static const char *ctype_c(ctype t) {
  static const char *const n[] = {"float", "int", "long long", "bool"};
  return n[t];
}

static ctype repr(const ts_type *t) {
  return t && t->kind == TS_TYPE_SCALAR ? cu_compute_of(t->dtype) : CT_I64;
}

/* `x` (of type `from`) as type `to`, as gen.c's gen_convert does. */
static const char *convert(cg *c, const char *x, ctype from, ctype to) {
  if (from == to)
    return x;
  if (to == CT_BOOL)
    return cu_str(c, "((%s) != 0)", x);
  if (from == CT_BOOL)
    return cu_str(c, "((%s)(int)(%s))", ctype_c(to), x);
  return cu_str(c, "((%s)(%s))", ctype_c(to), x);
}

static const char *from_storage(cg *c, const char *x, ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_BF16: return cu_str(c, "ts_bf16_f32(%s)", x);
  case TS_DTYPE_F16: return cu_str(c, "ts_f16_f32(%s)", x);
  case TS_DTYPE_FP8E4M3: return cu_str(c, "ts_e4m3_f32(%s)", x);
  case TS_DTYPE_I8: return cu_str(c, "((int)(%s))", x);
  case TS_DTYPE_BOOL: return cu_str(c, "((%s) != 0)", x);
  default: return x;
  }
}

/* `x` of compute type `from` stored as dtype `dt`. */
static const char *to_storage(cg *c, const char *x, ctype from, ts_dtype dt) {
  switch (dt) {
  case TS_DTYPE_BF16:
    return cu_str(c, "ts_f32_bf16(%s)", convert(c, x, from, CT_F32));
  case TS_DTYPE_F16:
    return cu_str(c, "ts_f32_f16(%s)", convert(c, x, from, CT_F32));
  case TS_DTYPE_FP8E4M3:
    return cu_str(c, "ts_f32_e4m3(%s)", convert(c, x, from, CT_F32));
  case TS_DTYPE_I8:
    return cu_str(c, "((signed char)%s)", convert(c, x, from, CT_I32));
  case TS_DTYPE_BOOL:
    return cu_str(c, "((unsigned char)%s)", convert(c, x, from, CT_BOOL));
  default: return convert(c, x, from, cu_compute_of(dt));
  }
}

/* ---- extents ------------------------------------------------------------- */

static const char *extent(cg *c, const ts_extent *e, ts_node *at) {
  const char *s = cu_str(c, "%lldLL", (long long)e->c);
  for (uint32_t i = 0; i < e->term_count; i++) {
    const ts_symbol *dim = NULL;
    for (uint32_t j = 0; c->k && j < c->k->dim_count; j++)
      if (c->k->dims[j]->atom == e->terms[i].atom)
        dim = c->k->dims[j];
    if (!dim) {
      cu_unsupported(c, at, "this extent");
      return "1";
    }
    s = cu_str(c, "(%s + %lldLL * %s)", s, (long long)e->terms[i].coef,
            cu_name_of(c, "d_", dim->name));
  }
  return s;
}

/* ---- expressions --------------------------------------------------------- */

static const char *expr(cg *c, ts_node *n, ctype *t);
const char *cu_expr_as(cg *c, ts_node *n, ctype want);
static void print_stmt(cg *c, ts_node *call, bool dist);
static void assert_stmt(cg *c, ts_node *call);

static const char *const_of(cg *c, ts_node *n, ctype t) {
  const ts_const *k = &n->cval;
  if (t == CT_F32) {
    double v = k->kind == TS_CONST_FLOAT ? k->f
               : k->kind == TS_CONST_INT ? (double)k->i
                                         : (double)k->b;
    float f = (float)v;
    if (f != f)
      return "__int_as_float(0x7fc00000)";
    if (f == __builtin_inff())
      return "__int_as_float(0x7f800000)";
    if (f == -__builtin_inff())
      return "__int_as_float(0xff800000)";
    return cu_str(c, "%.9ef", (double)f);
  }
  int64_t v = k->kind == TS_CONST_INT    ? k->i
              : k->kind == TS_CONST_BOOL ? k->b
                                         : (int64_t)k->f;
  if (t == CT_BOOL)
    return v ? "true" : "false";
  if (t == CT_I32)
    return cu_str(c, "((int)%lldLL)", (long long)(int32_t)v);
  if (v == INT64_MIN)
    return "(-9223372036854775807LL - 1)";
  return cu_str(c, "%lldLL", (long long)v);
}

const char *cu_expr_as(cg *c, ts_node *n, ctype want) {
  if (n->cval.kind != TS_CONST_NONE)
    return const_of(c, n, want);
  ctype t;
  const char *x = expr(c, n, &t);
  return convert(c, x, t, want);
}

static bool is_bool_t(const ts_type *t) {
  return t && t->kind == TS_TYPE_SCALAR && t->dtype == TS_DTYPE_BOOL;
}

static int width(ctype t) { return t == CT_I64 ? 64 : t == CT_I32 ? 32 : 1; }

static ctype operand_type(ts_node *x, ts_node *y) {
  ctype a = repr(x->type), b = repr(y->type);
  if (a == CT_F32 || b == CT_F32)
    return CT_F32;
  if (x->type->literal)
    return b;
  if (y->type->literal)
    return a;
  return width(a) >= width(b) ? a : b;
}

/* ---- views: a tensor or tile reference as index arithmetic -------------- */



static bool view_base(cg *c, ts_node *b, cview *v) {
  ts_symbol *s = b->sym;
  if (!s || !s->type || (s->kind != TS_SYM_TENSOR && s->kind != TS_SYM_TILE)) {
    cu_unsupported(c, b, "this reference");
    return false;
  }
  memset(v, 0, sizeof *v);
  v->base = s->kind == TS_SYM_TENSOR ? cu_name_of(c, "a_", s->name) : cu_tile_name(c, s);
  for (int i = 0; i < c->nregs && s->kind == TS_SYM_TILE; i++)
    if (c->regs[i] == s) {
      v->regs = true;
      v->mma = c->mma[i] == TS_ACC_MMA || c->mma[i] == TS_ACC_WGMMA;
      v->rows = c->mma[i] == TS_ACC_ROWS;
    }
  if (s->kind == TS_SYM_TILE) {
    v->swz = cu_swizzle_of(c, s, &v->swz_r, &v->swz_c);
    v->pad = cu_pad_of(c, s);
  }
  v->dt = s->type->dtype;
  v->rank = s->type->rank;
  for (uint32_t i = 0; i < v->rank; i++)
    v->dims[i] = extent(c, &s->type->dims[i], b);
  return true;
}

bool cu_view_of(cg *c, ts_node *n, cview *v, cview *pool, int *np) {
  if (n->kind == TS_NODE_NAME) {
    if (!view_base(c, n, v))
      return false;
    for (uint32_t i = 0; i < v->rank; i++) {
      v->sub[i].kind = SUB_SLICE;
      v->sub[i].start = "0LL";
      v->sub[i].vdim = i;
      v->vext[i] = v->dims[i];
    }
    v->vrank = v->rank;
    v->in_range = n->sym && n->sym->kind == TS_SYM_TILE;
    return true;
  }
  if (!view_base(c, n->kids[0], v))
    return false;
  for (uint32_t i = 0; i < v->rank && i + 1 < n->kid_count; i++) {
    ts_node *k = n->kids[i + 1];
    bool gather = false;
    if (k->kind == TS_NODE_INDEX)
      for (uint32_t j = 1; j < k->kid_count; j++)
        gather |= k->kids[j]->kind == TS_NODE_SLICE;
    if (k->kind == TS_NODE_SLICE) {
      const char *lo = k->kids[0] ? cu_expr_as(c, k->kids[0], CT_I64) : "0LL";
      const char *hi = k->kids[1] ? cu_expr_as(c, k->kids[1], CT_I64) : v->dims[i];
      v->sub[i].kind = SUB_SLICE;
      v->sub[i].start = lo;
      v->sub[i].vdim = v->vrank;
      v->vext[v->vrank++] = cu_str(c, "(%s - %s)", hi, lo);
    } else if (gather) {
      if (*np >= 8) {
        cu_unsupported(c, k, "this many gathers");
        return false;
      }
      cview *g = &pool[(*np)++];
      if (!cu_view_of(c, k, g, pool, np))
        return false;
      v->sub[i].kind = SUB_GATHER;
      v->sub[i].gather = g;
      v->sub[i].vdim = v->vrank;
      v->vext[v->vrank++] = g->vext[0];
    } else {
      v->sub[i].kind = SUB_INDEX;
      v->sub[i].start = cu_expr_as(c, k, CT_I64);
    }
  }
  return true;
}

const char *cu_view_load(cg *c, cview *v, const char *const *k);

/* The linear index and the in-bounds condition at view indices `k`. */
void cu_view_elem(cg *c, cview *v, const char *const *k, const char **lin,
                      const char **ok) {
  const char *l = "0LL", *okv = "true";
  for (uint32_t d = 0; d < v->rank; d++) {
    const char *idx;
    switch (v->sub[d].kind) {
    case SUB_INDEX: idx = v->sub[d].start; break;
    case SUB_SLICE:
      idx = cu_str(c, "(%s + %s)", v->sub[d].start, k[v->sub[d].vdim]);
      break;
    default: {
      const char *gk[1] = {k[v->sub[d].vdim]};
      idx = cu_str(c, "((long long)%s)", cu_view_load(c, v->sub[d].gather, gk));
    }
    }
    /* an index expression is evaluated once per use: keep it simple */
    if (!v->in_range)
      okv = cu_str(c, "%s && (%s) >= 0 && (%s) < %s", okv, idx, idx, v->dims[d]);
    /* a padded tile's rows are pad elements longer (gen.h ts_pad_elems) */
    if (v->pad && d + 1 == v->rank)
      l = cu_str(c, "(%s * (%s + %dLL) + %s)", l, v->dims[d], v->pad, idx);
    else
      l = cu_str(c, "(%s * %s + %s)", l, v->dims[d], idx);
  }
  if (v->swz)
    l = cu_str(c, "ts_swz(%s, %lldLL, %lldLL, %d, %d)", l, (long long)v->swz_r,
               (long long)v->swz_c, v->swz, ts_dtype_bits(v->dt) / 8);
  *lin = v->regs ? cu_str(c, "(%s / %lldLL)", l, (long long)c->threads) : l;
  if (v->mma || v->rows) { /* whole-tile uses in loops over its layout (gpu_mma.c) */
    const char *r = v->rows ? c->rows_reg : c->mma_reg;
    if (!r && c->at)
      cu_unsupported(c, c->at, "this use of a tile in the mma layout (a bug)");
    *lin = r ? r : "0";
  }
  *ok = okv;
}

/* An element as its compute type; out of range reads 0. */
const char *cu_view_load(cg *c, cview *v, const char *const *k) {
  const char *lin, *ok;
  cu_view_elem(c, v, k, &lin, &ok);
  const char *x = from_storage(c, cu_str(c, "%s[%s]", v->base, lin), v->dt);
  if (v->in_range)
    return x;
  ctype t = cu_compute_of(v->dt);
  return cu_str(c, "((%s) ? %s : (%s)0)", ok, x, ctype_c(t));
}

/* Stores `x` (compute type `t`); out of range is not written. */
void cu_view_store(cg *c, cview *v, const char *const *k, const char *x,
                       ctype t) {
  const char *lin, *ok;
  cu_view_elem(c, v, k, &lin, &ok);
  const char *s = to_storage(c, x, t, v->dt);
  if (c->rows_lead && !v->regs && c->ns > 1) /* ... held by every warpgroup: the first's */
    cu_line(c, "if ((threadIdx.x & 3) == 0 && threadIdx.x < 128 && %s) %s[%s] = %s;", ok, v->base,
            lin, s);
  else if (c->rows_lead && !v->regs) /* a loop over wgmma's rows (gen.h TS_ACC_ROWS) */
    cu_line(c, "if ((threadIdx.x & 3) == 0 && %s) %s[%s] = %s;", ok, v->base, lin, s);
  else if (v->in_range)
    cu_line(c, "%s[%s] = %s;", v->base, lin, s);
  else
    cu_line(c, "if (%s) %s[%s] = %s;", ok, v->base, lin, s);
}

/* ---- expressions (continued) --------------------------------------------- */

static const char *binary(cg *c, ts_node *n, ctype *rt) {
  int op = n->op;
  if (op == TS_TOK_ANDAND || op == TS_TOK_OROR) {
    *rt = CT_BOOL;
    return cu_str(c, "(%s %s %s)", cu_expr_as(c, n->kids[0], CT_BOOL),
               op == TS_TOK_ANDAND ? "&&" : "||",
               cu_expr_as(c, n->kids[1], CT_BOOL));
  }
  ctype t = operand_type(n->kids[0], n->kids[1]);
  if (is_bool_t(n->kids[0]->type) && is_bool_t(n->kids[1]->type))
    t = CT_BOOL;
  const char *x = cu_expr_as(c, n->kids[0], t), *y = cu_expr_as(c, n->kids[1], t);
  const char *o;
  *rt = t;
  switch (op) {
  case TS_TOK_PLUS: o = "+"; break;
  case TS_TOK_MINUS: o = "-"; break;
  case TS_TOK_STAR: o = "*"; break;
  case TS_TOK_SLASH: o = "/"; break;
  case TS_TOK_PERCENT: o = "%"; break;
  case TS_TOK_AMP: o = "&"; break;
  case TS_TOK_PIPE: o = "|"; break;
  case TS_TOK_CARET: o = "^"; break;
  case TS_TOK_SHL: o = "<<"; break;
  case TS_TOK_SHR: o = ">>"; break;
  default:
    *rt = CT_BOOL;
    switch (op) {
    case TS_TOK_EQ: o = "=="; break;
    case TS_TOK_NE: o = "!="; break;
    case TS_TOK_LT: o = "<"; break;
    case TS_TOK_LE: o = "<="; break;
    case TS_TOK_GT: o = ">"; break;
    case TS_TOK_GE: o = ">="; break;
    default: cu_unsupported(c, n, "this operator"); return x;
    }
  }
  if (t == CT_BOOL && *rt != CT_BOOL) /* & | ^ of bools */
    return cu_str(c, "((bool)(%s %s %s))", x, o, y);
  return cu_str(c, "(%s %s %s)", x, o, y);
}

static const char *unary(cg *c, ts_node *n, ctype *rt) {
  ctype t = repr(n->type);
  *rt = t;
  const char *x = cu_expr_as(c, n->kids[0], t);
  switch (n->op) {
  case TS_TOK_MINUS: return cu_str(c, "(-%s)", x);
  case TS_TOK_BANG: return cu_str(c, "(!%s)", x);
  default: return cu_str(c, "(~%s)", x);
  }
}

static const char *builtin(cg *c, ts_node *n, ctype *rt) {
  ts_node **k = n->kids;
  ctype t = repr(n->type);
  *rt = t;
  switch (n->builtin) {
  case TS_BUILTIN_BLOCK_ID: {
    int64_t d = k[0]->cval.i;
    *rt = CT_I64;
    return d == 1 ? "((long long)blockIdx.y)"
           : d == 2 ? "((long long)blockIdx.z)"
                    : "((long long)blockIdx.x)";
  }
  case TS_BUILTIN_THREAD_ID: *rt = CT_I64; return "((long long)threadIdx.x)";
  case TS_BUILTIN_CEILDIV:
    return cu_str(c, "ts_ceildiv(%s, %s)", cu_expr_as(c, k[0], t), cu_expr_as(c, k[1], t));
  case TS_BUILTIN_MIN:
  case TS_BUILTIN_MAX:
    return cu_str(c, "ts_%s(%s, %s)", n->builtin == TS_BUILTIN_MIN ? "min" : "max",
               cu_expr_as(c, k[0], t), cu_expr_as(c, k[1], t));
  case TS_BUILTIN_ABS:
    return cu_str(c, "ts_abs(%s)", cu_expr_as(c, k[0], t));
  case TS_BUILTIN_SELECT:
    return cu_str(c, "(%s ? %s : %s)", cu_expr_as(c, k[0], CT_BOOL),
               cu_expr_as(c, k[1], t), cu_expr_as(c, k[2], t));
  case TS_BUILTIN_BITCAST: {
    ctype from;
    const char *x = expr(c, k[0], &from);
    /* 8-bit: fp8 is computed as float and i8 as int; the byte between */
    ts_dtype fd = k[0]->type->dtype, td = k[1]->dtype;
    if (fd == TS_DTYPE_FP8E4M3 && td == TS_DTYPE_I8)
      return cu_str(c, "(int)(signed char)ts_f32_e4m3(%s)", x);
    if (fd == TS_DTYPE_I8 && td == TS_DTYPE_FP8E4M3)
      return cu_str(c, "ts_e4m3_f32((unsigned char)(%s))", x);
    if (from == CT_F32 && t == CT_I32)
      return cu_str(c, "__float_as_int(%s)", x);
    if (from == CT_I32 && t == CT_F32)
      return cu_str(c, "__int_as_float(%s)", x);
    if (from == t)
      return x;
    cu_unsupported(c, n, "this 'bitcast'");
    return x;
  }
  default: break;
  }
  const char *x = cu_expr_as(c, k[0], CT_F32);
  *rt = CT_F32;
  switch (n->builtin) {
  case TS_BUILTIN_EXP: return cu_str(c, "expf(%s)", x);
  case TS_BUILTIN_EXP2: return cu_str(c, "exp2f(%s)", x);
  case TS_BUILTIN_LOG: return cu_str(c, "logf(%s)", x);
  case TS_BUILTIN_LOG2: return cu_str(c, "log2f(%s)", x);
  case TS_BUILTIN_SQRT: return cu_str(c, "sqrtf(%s)", x);
  case TS_BUILTIN_RSQRT: return cu_str(c, "rsqrtf(%s)", x);
  case TS_BUILTIN_SIN: return cu_str(c, "sinf(%s)", x);
  case TS_BUILTIN_COS: return cu_str(c, "cosf(%s)", x);
  case TS_BUILTIN_TANH: return cu_str(c, "tanhf(%s)", x);
  case TS_BUILTIN_FLOOR: return cu_str(c, "floorf(%s)", x);
  case TS_BUILTIN_CEIL: return cu_str(c, "ceilf(%s)", x);
  case TS_BUILTIN_RELU: return cu_str(c, "ts_max(%s, 0.0f)", x);
  case TS_BUILTIN_POW:
    return cu_str(c, "powf(%s, %s)", x, cu_expr_as(c, k[1], CT_F32));
  case TS_BUILTIN_SIGMOID: return cu_str(c, "ts_sigmoid(%s)", x);
  case TS_BUILTIN_SILU: return cu_str(c, "ts_silu(%s)", x);
  case TS_BUILTIN_SOFTPLUS: return cu_str(c, "ts_softplus(%s)", x);
  default: cu_unsupported(c, n, "this built-in"); return x;
  }
}

static const char *cast(cg *c, ts_node *n, ctype *rt) {
  ts_dtype dt = n->dtype;
  ctype t = cu_compute_of(dt);
  *rt = t;
  if (ts_dtype_is_float(dt)) {
    const char *x = cu_expr_as(c, n->kids[0], CT_F32);
    if (dt == TS_DTYPE_F32)
      return x;
    return from_storage(c, to_storage(c, x, CT_F32, dt), dt);
  }
  const char *x = cu_expr_as(c, n->kids[0], t);
  if (dt == TS_DTYPE_I8)
    return cu_str(c, "((int)(signed char)%s)", x);
  return x;
}

static const char *fn_call(cg *c, ts_node *n, ctype *rt) {
  ts_node *params = n->sym->decl->kids[0];
  const char *args = "";
  for (uint32_t i = 0; i < n->kid_count; i++) {
    ts_node *pt = params->kids[i]->kids[0];
    args = cu_str(c, "%s%s%s", args, i ? ", " : "",
               cu_expr_as(c, n->kids[i], cu_compute_of(pt->dtype)));
  }
  *rt = n->type && n->type->kind == TS_TYPE_SCALAR ? repr(n->type) : CT_I64;
  return cu_str(c, "%s(%s)", cu_name_of(c, "f_", n->name), args);
}

bool cu_gpu_single(cg *c) { return c->par == 0 && !c->single; }

static const char *atomic(cg *c, ts_node *n, ctype *rt) {
  cview pool[8], v;
  int np = 0;
  *rt = repr(n->type);
  if (!cu_view_of(c, n->kids[0], &v, pool, &np))
    return "0";
  ts_dtype dt = v.dt;
  bool narrow = dt == TS_DTYPE_BF16 || dt == TS_DTYPE_F16;
  if (dt != TS_DTYPE_F32 && dt != TS_DTYPE_I32 && dt != TS_DTYPE_I64 && !narrow) {
    cu_unsupported(c, n, "an atomic on this element type");
    return "0";
  }
  const char *lin, *ok;
  cu_view_elem(c, &v, NULL, &lin, &ok);
  const char *val = cu_expr_as(c, n->kids[1], cu_compute_of(dt));
  /* bf16 and f16: a 16-bit compare-and-swap loop (the prelude's
   * ts_atomic_add_bf16 ...), the sum or max in f32, rounded as a store */
  const char *f = cu_str(c, "%s%s%s",
                         n->builtin == TS_BUILTIN_ATOMIC_ADD ? "ts_atomic_add" : "ts_atomic_max",
                         narrow ? "_" : "", narrow ? ts_dtype_name(dt) : "");
  /* out of range: no update, the result is 0 */
  const char *call = cu_str(c, "((%s) ? %s(&%s[%s], %s) : (%s)0)", ok, f, v.base,
                         lin, val, ctype_c(cu_compute_of(dt)));
  if (!cu_gpu_single(c))
    return call;
  /* thread 0 does it, between device-scope fences (the block's point of
   * order with the others: gen.c gen_atomic); the old value reaches every
   * thread through the first bytes of shared memory */
  const char *slot = cu_str(c, "TS_SLOT(%s)", ctype_c(cu_compute_of(dt)));
  cu_line(c, "__syncthreads();");
  cu_line(c, "if (threadIdx.x == 0) { __threadfence(); %s = %s; __threadfence(); }", slot, call);
  cu_line(c, "__syncthreads();");
  const char *tmp = cu_str(c, "old%d_", c->tmp++);
  cu_line(c, "%s %s = %s;", ctype_c(cu_compute_of(dt)), tmp, slot);
  cu_line(c, "__syncthreads();");
  return tmp;
}

static const char *expr(cg *c, ts_node *n, ctype *t) {
  if (n->cval.kind != TS_CONST_NONE) {
    *t = repr(n->type);
    return const_of(c, n, *t);
  }
  switch (n->kind) {
  case TS_NODE_NAME: {
    ts_symbol *s = n->sym;
    *t = repr(n->type);
    if (!s) {
      cu_unsupported(c, n, "this name");
      return "0";
    }
    if (s->kind == TS_SYM_DIM)
      return cu_name_of(c, "d_", s->name);
    return cu_var_name(c, s);
  }
  case TS_NODE_UNARY: return unary(c, n, t);
  case TS_NODE_BINARY: return binary(c, n, t);
  case TS_NODE_INDEX: {
    cview pool[8], v;
    int np = 0;
    *t = repr(n->type);
    if (!cu_view_of(c, n, &v, pool, &np))
      return "0";
    return cu_view_load(c, &v, NULL);
  }
  case TS_NODE_CALL:
    if (n->dtype < TS_DTYPE_COUNT)
      return cast(c, n, t);
    if (n->sym && n->sym->kind == TS_SYM_FN)
      return fn_call(c, n, t);
    if (n->builtin == TS_BUILTIN_ATOMIC_ADD ||
        n->builtin == TS_BUILTIN_ATOMIC_MAX)
      return atomic(c, n, t);
    return builtin(c, n, t);
  default:
    *t = CT_I64;
    cu_unsupported(c, n, "this expression");
    return "0";
  }
}

/* ---- loops over the block's threads -------------------------------------- */

/* Opens a loop over every index of `ext` (rank dims): split over the
 * threads (dist) or in one thread; the indices are named in k. `partial`:
 * the loop touches no register tile, so it is unrolled 4 times rather than
 * fully (NVRTC's time). */
void cu_each_begin(cg *c, const char *const *ext, uint32_t rank, bool dist, bool partial,
                   const char **k) {
  int id = c->tmp++;
  const char *total = "1LL";
  for (uint32_t i = 0; i < rank; i++)
    total = cu_str(c, "(%s * %s)", total, ext[i]);
  if (dist) {
    /* rounds of `threads` elements: a constant trip count when the count
     * is, so that it unrolls and tiles in registers are indexed by
     * constants */
    const char *T = cu_str(c, "%lldLL", (long long)c->threads);
    cu_line(c, partial ? "#pragma unroll 4" : "#pragma unroll");
    cu_line(c, "for (long long r%d_ = 0; r%d_ < (%s + %s - 1) / %s; r%d_++) {",
         id, id, total, T, T, id);
    c->ind++;
    cu_line(c, "const long long e%d_ = r%d_ * %s + (long long)threadIdx.x;", id,
         id, T);
    cu_line(c, "if (e%d_ >= %s) break;", id, total);
  } else {
    cu_line(c, "for (long long e%d_ = 0; e%d_ < %s; e%d_++) {", id, id, total, id);
    c->ind++;
  }
  const char *e = cu_str(c, "e%d_", id);
  for (uint32_t i = rank; i-- > 0;) {
    k[i] = cu_str(c, "k%d_%u_", id, i);
    cu_line(c, "long long %s = %s;", k[i], i ? cu_str(c, "%s %% %s", e, ext[i]) : e);
    if (i)
      e = cu_str(c, "(%s / %s)", e, ext[i]);
  }
}

void cu_each_end(cg *c) {
  c->ind--;
  cu_line(c, "}");
}

void cu_tile_copy(cg *c, ts_node *call, bool dist) {
  cview pool[16], src, dst;
  int np = 0;
  if (!cu_view_of(c, call->kids[0], &src, pool, &np) ||
      !cu_view_of(c, call->kids[1], &dst, pool, &np))
    return;
  int64_t B = ts_copy_scale_block(call);
  cview sv;
  if (B > 0 && !cu_view_of(c, ts_call_named(call, "scale"), &sv, pool, &np))
    return;
  const char *k[TS_MAX_RANK];
  cu_loop_begin(c, call, dst.vext, dst.vrank, dist, k);
  if (ts_copy_packed(call)) { /* gen_packed.c: byte j's nibble h is element 2j + h */
    const char *ks[TS_MAX_RANK], *kl = k[dst.vrank - 1];
    memcpy(ks, k, sizeof ks);
    ks[dst.vrank - 1] = cu_str(c, "(%s >> 1)", kl);
    bool twice = ts_copy_twice(call);
    const char *x = cu_str(c, "%s((int)%s >> (int)((%s & 1) * 4))",
                           twice ? "ts_e2m1x2" : "ts_e2m1_f32", cu_view_load(c, &src, ks), kl);
    if (B > 0) { /* times the scale of its block */
      ks[dst.vrank - 1] = cu_str(c, "(%s / %lld)", kl, (long long)B);
      x = cu_str(c, "(%s * (float)%s)", x, cu_view_load(c, &sv, ks));
    }
    cu_view_store(c, &dst, k, x, twice ? CT_I32 : CT_F32);
  } else {
    cu_view_store(c, &dst, k, cu_view_load(c, &src, k), cu_compute_of(src.dt));
  }
  cu_loop_end(c, dist);
}

static void tile_fill(cg *c, ts_node *call, bool clear, bool dist) {
  cview pool[8], dst;
  int np = 0;
  if (!cu_view_of(c, call->kids[0], &dst, pool, &np))
    return;
  ctype t = cu_compute_of(dst.dt);
  const char *v = clear ? cu_str(c, "(%s)0", ctype_c(t))
                        : cu_expr_as(c, call->kids[1], t);
  const char *k[TS_MAX_RANK];
  cu_loop_begin(c, call, dst.vext, dst.vrank, dist, k);
  cu_view_store(c, &dst, k, v, t);
  cu_loop_end(c, dist);
}

/* The k of step `kk` rotated by `rot` (NULL: kk itself), as a new name. */
static const char *rotated_k(cg *c, const char *kk, const char *rot, const char *K) {
  if (!rot)
    return kk;
  const char *k = cu_str(c, "kr%d_", c->tmp++);
  cu_line(c, "const long long %s = %s + %s >= %s ? %s + %s - %s : %s + %s;", k, kk, rot, K, kk,
          rot, K, kk, rot);
  return k;
}

/* A gemm operand `x` (f32), truncated to TensorFloat-32 with tf32=true, as
 * the tensor cores read it (gen_internal.h gen_gemm_operand). */
static const char *operand(cg *c, const ts_node *call, const char *x) {
  return ts_call_named_bool(call, "tf32", false)
             ? cu_str(c, "__uint_as_float(__float_as_uint(%s) & 0xffffe000u)", x)
             : x;
}

static void tile_gemm(cg *c, ts_node *call, bool dist) {
  int64_t mnk[3];
  if (dist && cu_wgmma_call(c, call, mnk)) {
    cu_tile_wgmma(c, call, mnk, false, NULL);
    return;
  }
  if (dist && c->tiles && ts_mma_gemm(c->k, c->tiles, c->ntiles, call, mnk)) {
    bool cyclic = false, wg = false; /* the accumulator's register layout */
    for (int i = 0; i < c->nregs; i++) {
      cyclic |= c->regs[i] == call->kids[2]->sym && !c->mma[i];
      wg |= c->regs[i] == call->kids[2]->sym && c->mma[i] == TS_ACC_WGMMA;
    }
    if (!cyclic && !wg && call->kids[0]->sym->type->dtype != TS_DTYPE_FP8E4M3) {
      cu_tile_gemm_mma(c, call, mnk);
      return;
    }
  }
  cview pool[8], A, B, C;
  int np = 0;
  if (!cu_view_of(c, call->kids[0], &A, pool, &np) ||
      !cu_view_of(c, call->kids[1], &B, pool, &np) ||
      !cu_view_of(c, call->kids[2], &C, pool, &np))
    return;
  bool ta = ts_call_named_bool(call, "trans_a", false);
  bool tb = ts_call_named_bool(call, "trans_b", false);
  bool acc = ts_call_named_bool(call, "accumulate", true);
  ctype t = cu_compute_of(C.dt);
  const char *ij[2];
  /* thread t reads from k = t mod K on (gen.h ts_gemm_rotates) */
  const char *K = A.vext[ta ? 0 : 1], *rot = NULL;
  if (dist && c->tiles && ts_gemm_rotates(call, c->tiles, c->ntiles)) {
    rot = cu_str(c, "r%d_", c->tmp++);
    cu_line(c, "const long long %s = (long long)threadIdx.x %% (%s > 0 ? %s : 1LL);", rot, K, K);
  }
  if (C.regs && dist) { /* k outermost: c stays in registers (gen_gpu.c) */
    if (!acc) {
      cu_each_begin(c, C.vext, 2, dist, false, ij);
      cu_view_store(c, &C, ij, cu_str(c, "(%s)0", ctype_c(t)), t);
      cu_each_end(c);
    }
    const char *kk = cu_str(c, "kk%d_", c->tmp++);
    cu_line(c, "for (long long %s = 0; %s < %s; %s++) {", kk, kk, K, kk);
    c->ind++;
    kk = rotated_k(c, kk, rot, K);
    cu_each_begin(c, C.vext, 2, dist, false, ij);
    const char *ak[2] = {ta ? kk : ij[0], ta ? ij[0] : kk};
    const char *bk[2] = {tb ? ij[1] : kk, tb ? kk : ij[1]};
    cu_view_store(c, &C, ij,
               cu_str(c, "%s + %s * %s", cu_view_load(c, &C, ij),
                   operand(c, call, convert(c, cu_view_load(c, &A, ak), cu_compute_of(A.dt), t)),
                   operand(c, call, convert(c, cu_view_load(c, &B, bk), cu_compute_of(B.dt), t))),
               t);
    cu_each_end(c);
    c->ind--;
    cu_line(c, "}");
    return;
  }
  cu_each_begin(c, C.vext, 2, dist, false, ij);
  const char *s = cu_str(c, "s%d_", c->tmp++), *kk = cu_str(c, "kk%d_", c->tmp++);
  cu_line(c, "%s %s = 0;", ctype_c(t), s);
  cu_line(c, "for (long long %s = 0; %s < %s; %s++) {", kk, kk, K, kk);
  c->ind++;
  kk = rotated_k(c, kk, rot, K);
  const char *ak[2] = {ta ? kk : ij[0], ta ? ij[0] : kk};
  const char *bk[2] = {tb ? ij[1] : kk, tb ? kk : ij[1]};
  cu_line(c, "%s += %s * %s;", s,
       operand(c, call, convert(c, cu_view_load(c, &A, ak), cu_compute_of(A.dt), t)),
       operand(c, call, convert(c, cu_view_load(c, &B, bk), cu_compute_of(B.dt), t)));
  c->ind--;
  cu_line(c, "}");
  const char *sum = acc ? cu_str(c, "%s + %s", cu_view_load(c, &C, ij), s) : s;
  cu_view_store(c, &C, ij, sum, t);
  cu_each_end(c);
}

/* One warp per output element and xor shuffles, as gen_gpu.c; one thread
 * per element without whole warps or for 64-bit values. */
static void tile_reduce(cg *c, ts_node *call, bool dist) {
  if (dist && cu_wgmma_row_reduce(c, call))
    return;
  cview pool[8], src, dst;
  int np = 0;
  if (!cu_view_of(c, call->kids[0], &src, pool, &np) ||
      !cu_view_of(c, call->kids[1], &dst, pool, &np))
    return;
  uint32_t dim = (uint32_t)ts_call_named(call, "dim")->cval.i;
  ts_builtin op = call->builtin;
  ctype t = cu_compute_of(src.dt);
  bool f = t == CT_F32;
  const char *init =
      op == TS_BUILTIN_REDUCE_MAX
          ? (f ? "__int_as_float(0xff800000)"
               : t == CT_I32 ? "((int)0x80000000)" : "(-9223372036854775807LL - 1)")
          : cu_str(c, "(%s)0", ctype_c(t));
  bool warps = dist && c->threads % 32 == 0 && t != CT_I64;
  const char *ext[TS_MAX_RANK];
  uint32_t nk = 0;
  for (uint32_t i = 0; i < src.vrank; i++)
    if (i != dim)
      ext[nk++] = src.vext[i];
  int id = c->tmp++;
  const char *total = "1LL";
  for (uint32_t i = 0; i < nk; i++)
    total = cu_str(c, "(%s * %s)", total, ext[i]);
  const char *lane = warps ? "((long long)threadIdx.x % 32)" : "0LL";
  const char *first = warps ? "((long long)threadIdx.x / 32)"
                      : dist ? "(long long)threadIdx.x"
                             : "0LL";
  int64_t step = warps ? c->threads / 32 : dist ? c->threads : 1;
  cu_line(c, "for (long long o%d_ = %s; o%d_ < %s; o%d_ += %lldLL) {", id, first,
       id, total, id, (long long)step);
  c->ind++;
  const char *ok_[TS_MAX_RANK], *k[TS_MAX_RANK];
  const char *e = cu_str(c, "o%d_", id);
  for (uint32_t i = nk; i-- > 0;) {
    ok_[i] = cu_str(c, "q%d_%u_", id, i);
    cu_line(c, "long long %s = %s;", ok_[i], i ? cu_str(c, "%s %% %s", e, ext[i]) : e);
    if (i)
      e = cu_str(c, "(%s / %s)", e, ext[i]);
  }
  const char *acc = cu_str(c, "r%d_", id), *r = cu_str(c, "i%d_", id);
  cu_line(c, "%s %s = %s;", ctype_c(t), acc, init);
  cu_line(c, "for (long long %s = %s; %s < %s; %s += %d) {", r, lane, r,
       src.vext[dim], r, warps ? 32 : 1);
  c->ind++;
  for (uint32_t i = 0, j = 0; i < src.vrank; i++)
    k[i] = i == dim ? r : ok_[j++];
  const char *x = cu_view_load(c, &src, k);
  if (op == TS_BUILTIN_REDUCE_ABSMAX)
    x = cu_str(c, "ts_abs(%s)", x);
  cu_line(c, "%s = %s;", acc,
       op == TS_BUILTIN_REDUCE_SUM ? cu_str(c, "%s + %s", acc, x)
                                   : cu_str(c, "ts_max(%s, %s)", acc, x));
  c->ind--;
  cu_line(c, "}");
  if (warps)
    for (int s = 16; s >= 1; s /= 2)
      cu_line(c, "%s = %s;", acc,
           op == TS_BUILTIN_REDUCE_SUM
               ? cu_str(c, "%s + __shfl_xor_sync(0xffffffffu, %s, %d)", acc, acc, s)
               : cu_str(c, "ts_max(%s, __shfl_xor_sync(0xffffffffu, %s, %d))", acc,
                     acc, s));
  if (nk == 0) {
    ok_[0] = "0LL";
    nk = 1;
  }
  cu_line(c, "if (%s == 0) {", lane);
  c->ind++;
  cu_view_store(c, &dst, ok_, acc, t);
  c->ind--;
  cu_line(c, "}");
  c->ind--;
  cu_line(c, "}");
}

/* ---- statements ---------------------------------------------------------- */

void cu_block(cg *c, ts_node *b);

void cu_barrier(cg *c) {
  if (c->fence_next) /* the wgmma after reads what came before */
    cu_line(c, "ts_fence_proxy_async();");
  cu_line(c, "__syncthreads();");
  if (c->fence_next)
    c->fenced_at = c->o->len;
}

static void assign(cg *c, ts_node *n) {
  ts_node *t = n->kids[0], *v = n->kids[1];
  ctype ct = t->kind == TS_NODE_NAME ? repr(t->sym->type)
                                     : cu_compute_of(t->kids[0]->sym->type->dtype);
  const char *val = cu_expr_as(c, v, ct);
  if (n->op != TS_TOK_ASSIGN) {
    const char *o = n->op == TS_TOK_PLUS_ASSIGN    ? "+"
                    : n->op == TS_TOK_MINUS_ASSIGN ? "-"
                    : n->op == TS_TOK_STAR_ASSIGN  ? "*"
                                                   : "/";
    val = cu_str(c, "(%s %s %s)", cu_expr_as(c, t, ct), o, val);
  }
  if (t->kind == TS_NODE_NAME) {
    cu_line(c, "%s = %s;", cu_var_name(c, t->sym), val);
    return;
  }
  cview pool[8], vw;
  int np = 0;
  if (cu_view_of(c, t, &vw, pool, &np))
    cu_view_store(c, &vw, NULL, val, ct);
}

void cu_stmt(cg *c, ts_node *n) {
  if (!n || c->failed)
    return;
  c->at = n;
  /* the simulator's errors name the statement's line; not a helper's own
   * (c->k is NULL there): a helper touches no memory, and its line, of
   * another file perhaps, would stay set for the rest of the caller's
   * statement */
  if (n->kind != TS_NODE_BLOCK && c->k) {
    uint32_t line, col;
    ts_source_position(&c->u->src, n->span.lo, &line, &col);
    cu_line(c, "TS_LINE(%u);", line);
  }
  bool synced = c->synced;
  c->synced = false;
  switch (n->kind) {
  case TS_NODE_LET:
  case TS_NODE_VAR: {
    ctype t = repr(n->sym->type);
    const char *v = cu_expr_as(c, n->kids[1], t);
    /* a tile function's parameter bound at its call: a name of its own, as
     * `p = p` or `a = b; b = a` would read the new variables in C */
    const char *name = cu_name_of(c, "v_", n->sym->name);
    if ((n->kind == TS_NODE_LET && n->op == TS_TOK_FN) || hidden_name(n->sym)) {
      /* (a view's index is NAME#k: the C name stops at the '#') */
      const char *hash = memchr(n->sym->name.ptr, '#', n->sym->name.len);
      int len = hash ? (int)(hash - n->sym->name.ptr) : (int)n->sym->name.len;
      n->sym->user = name = cu_str(c, "p%d_%.*s", c->tmp++, len, n->sym->name.ptr);
    }
    cu_line(c, "%s%s %s = %s;", n->kind == TS_NODE_LET ? "const " : "", ctype_c(t), name, v);
    /* no memory read: the barrier before still holds */
    c->synced = synced && ts_expr_pure(n->kids[1]);
    break;
  }
  case TS_NODE_TILE: break; /* placed at the kernel's start */
  case TS_NODE_ASSIGN:
    if (cu_gpu_single(c) && n->kids[0]->kind != TS_NODE_NAME) {
      cu_barrier(c);
      cu_line(c, "if (threadIdx.x == 0) {");
      c->ind++;
      c->single = true;
      assign(c, n);
      c->single = false;
      c->ind--;
      cu_line(c, "}");
      cu_barrier(c);
      c->synced = true;
    } else {
      cu_line(c, "{");
      c->ind++;
      assign(c, n);
      c->ind--;
      cu_line(c, "}");
    }
    break;
  case TS_NODE_EXPR_STMT: {
    ts_node *call = n->kids[0];
    bool dist = cu_gpu_single(c);
    /* no barriers around a statement that writes registers only */
    bool tile = !c->tiles || !ts_stmt_private(n, c->tiles, c->ntiles);
    if (dist && !synced && tile &&
        call->builtin != TS_BUILTIN_BARRIER &&
        (call->builtin == TS_BUILTIN_COPY || call->builtin == TS_BUILTIN_FILL ||
         call->builtin == TS_BUILTIN_CLEAR || call->builtin == TS_BUILTIN_GEMM ||
         call->builtin == TS_BUILTIN_REDUCE_MAX ||
         call->builtin == TS_BUILTIN_REDUCE_SUM ||
         call->builtin == TS_BUILTIN_REDUCE_ABSMAX))
      cu_barrier(c);
    cu_line(c, "{");
    c->ind++;
    switch (call->builtin) {
    case TS_BUILTIN_COPY:
      if (!cu_copy_async(c, call, dist))
        cu_tile_copy(c, call, dist);
      break;
    case TS_BUILTIN_FILL: tile_fill(c, call, false, dist); break;
    case TS_BUILTIN_CLEAR: tile_fill(c, call, true, dist); break;
    case TS_BUILTIN_GEMM: tile_gemm(c, call, dist); break;
    case TS_BUILTIN_REDUCE_MAX:
    case TS_BUILTIN_REDUCE_SUM:
    case TS_BUILTIN_REDUCE_ABSMAX: tile_reduce(c, call, dist); break;
    case TS_BUILTIN_BARRIER: /* never private */
      tile = false;
      if (dist) {
        if (!synced)
          cu_barrier(c);
        c->synced = true;
      }
      break;
    case TS_BUILTIN_PRINT: tile = false; print_stmt(c, call, dist); break;
    case TS_BUILTIN_ASSERT: tile = false; assert_stmt(c, call); break;
    default: {
      tile = false;
      ctype t;
      cu_line(c, "(void)%s;", expr(c, call, &t));
    }
    }
    c->ind--;
    cu_line(c, "}");
    if (tile && dist) {
      cu_barrier(c);
      c->synced = true;
    }
    break;
  }
  case TS_NODE_PARALLEL: {
    ts_node *vars = n->kids[0], *exts = n->kids[1];
    uint32_t rank = vars->kid_count;
    const char *ext[TS_MAX_RANK] = {0}, *k[TS_MAX_RANK] = {0};
    bool dist = cu_gpu_single(c);
    cu_line(c, "{");
    c->ind++;
    for (uint32_t i = 0; i < rank; i++) {
      ext[i] = cu_str(c, "x%d_", c->tmp++);
      cu_line(c, "const long long %s = %s;", ext[i],
           cu_expr_as(c, exts->kids[i], CT_I64));
    }
    bool fence = !c->tiles || !ts_stmt_private(n, c->tiles, c->ntiles);
    if (dist && !synced && fence)
      cu_barrier(c);
    cu_loop_begin(c, n->kids[2], ext, rank, dist, k);
    for (uint32_t i = 0; i < rank; i++)
      cu_line(c, "const long long %s = %s;",
           cu_name_of(c, "v_", vars->kids[i]->sym->name), k[i]);
    c->par++;
    cu_block(c, n->kids[2]);
    c->par--;
    cu_loop_end(c, dist);
    c->ind--;
    cu_line(c, "}");
    if (dist && fence) {
      cu_barrier(c);
      c->synced = true;
    }
    break;
  }
  case TS_NODE_PIPELINED:
    if (cu_pipelined(c, n))
      break;
    __attribute__((fallthrough)); /* a plain loop */
  case TS_NODE_FOR: {
    bool pipe = n->kind == TS_NODE_PIPELINED;
    const char *v = cu_name_of(c, "v_", n->sym->name);
    const char *hi = cu_str(c, "h%d_", c->tmp++);
    cu_line(c, "{");
    c->ind++;
    cu_line(c, "const long long %s = %s;", hi, cu_expr_as(c, n->kids[1], CT_I64));
    cu_line(c, "for (long long %s = %s; %s < %s; %s++) {", v,
         cu_expr_as(c, n->kids[0], CT_I64), v, hi, v);
    c->ind++;
    cu_block(c, n->kids[pipe ? 3 : 2]);
    c->ind--;
    cu_line(c, "}");
    c->ind--;
    cu_line(c, "}");
    break;
  }
  case TS_NODE_IF:
    if (ts_if_taken(n)) { /* folded: the branch taken (gen.c) */
      ts_node *taken = n->kids[ts_if_taken(n)];
      c->synced = synced; /* (it runs where the `if` stands: no barrier of its own) */
      if (!taken)
        break;
      cu_line(c, "{");
      c->ind++;
      if (taken->kind == TS_NODE_IF)
        cu_stmt(c, taken);
      else
        cu_block(c, taken);
      c->ind--;
      cu_line(c, "}");
      break;
    }
    cu_line(c, "if (%s) {", cu_expr_as(c, n->kids[0], CT_BOOL));
    c->ind++;
    cu_block(c, n->kids[1]);
    c->ind--;
    if (n->kids[2]) {
      cu_line(c, "} else {");
      c->ind++;
      /* as the `if` began, not after a barrier ending the first branch */
      c->synced = false;
      if (n->kids[2]->kind == TS_NODE_IF)
        cu_stmt(c, n->kids[2]);
      else
        cu_block(c, n->kids[2]);
      c->ind--;
    }
    cu_line(c, "}");
    break;
  case TS_NODE_BREAK: cu_line(c, "break;"); break;
  case TS_NODE_CONTINUE: cu_line(c, "continue;"); break;
  case TS_NODE_RETURN:
    if (n->kids && n->kids[0])
      cu_line(c, "return %s;", cu_expr_as(c, n->kids[0], c->fn_result));
    else
      cu_line(c, "return;");
    break;
  case TS_NODE_BLOCK: /* (a tile function's inlined call): no barrier of its own */
    c->synced = synced;
    if (n->op == TS_TOK_LET) { /* (a let of a tile function's result: its names go on) */
      cu_block(c, n);
      break;
    }
    cu_line(c, "{");
    c->ind++;
    cu_block(c, n);
    c->ind--;
    cu_line(c, "}");
    break;
  default: break;
  }
  if (n->kind == TS_NODE_FOR || n->kind == TS_NODE_PIPELINED ||
      (n->kind == TS_NODE_IF && !ts_if_taken(n))) /* (a folded one: no join) */
    c->synced = false;
}

void cu_block(cg *c, ts_node *b) {
  for (uint32_t i = 0; b && i < b->kid_count && !c->failed; i++)
    if (!cu_ahead(c, b, i)) /* else the pipelined loop after it zeroes it */
      cu_stmt(c, b->kids[i]);
}

/* ---- print and assert ------------------------------------------------------ */

/* `s` as a C string literal. */
static const char *c_literal(cg *c, const char *s) {
  ts_buf b;
  ts_buf_init(&b, ts_allocator_system());
  ts_buf_putc(&b, '"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      ts_buf_printf(&b, "\\%c", ch);
    else if (ch == '\n')
      ts_buf_puts(&b, "\\n");
    else if (ch < 32 || ch > 126)
      ts_buf_printf(&b, "\\%03o", ch);
    else
      ts_buf_putc(&b, (char)ch);
  }
  ts_buf_putc(&b, '"');
  const char *r = cu_str(c, "%s", b.failed ? "\"\"" : b.ptr);
  ts_buf_deinit(&b);
  return r;
}

/* printf with the same format as the MLIR lowering's gpu.printf; outside
 * `parallel`, by thread 0 (once per block). */
static void print_stmt(cg *c, ts_node *call, bool dist) {
  ts_buf f, a;
  ts_buf_init(&f, ts_allocator_system());
  ts_buf_init(&a, ts_allocator_system());
  ts_print_format(call, &f);
  for (uint32_t i = 1; i < call->kid_count; i++) {
    const ts_type *t = call->kids[i]->type;
    bool fl = t && ts_dtype_is_float(t->dtype);
    ts_buf_printf(&a, ", %s", fl ? cu_str(c, "(double)%s", cu_expr_as(c, call->kids[i], CT_F32))
                                 : cu_str(c, "(long long)%s", cu_expr_as(c, call->kids[i], CT_I64)));
  }
  cu_line(c, "%sprintf(%s%s);", dist ? "if (threadIdx.x == 0) " : "",
       c_literal(c, f.failed ? "" : f.ptr), a.failed ? "" : a.ptr ? a.ptr : "");
  ts_buf_deinit(&f);
  ts_buf_deinit(&a);
}

/* A failed assert prints where and traps (the launch fails); the
 * simulator's shim records it for the launch instead. */
static void assert_stmt(cg *c, ts_node *call) {
  ts_buf f;
  ts_buf_init(&f, ts_allocator_system());
  ts_assert_format(c->u, call, &f);
  const char *fail = cu_str(c, "TS_ASSERT_FAIL(%s, (long long)blockIdx.x, "
       "(long long)blockIdx.y, (long long)blockIdx.z, (long long)threadIdx.x);",
       c_literal(c, f.failed ? "" : f.ptr));
  /* a call anywhere in a kernel with wgmma makes ptxas serialize it: on
   * the GPU such a kernel's failed assert only traps */
  if (c->uses_wgmma)
    fail = cu_str(c, "{\n#ifdef TS_CUDA_SIM\n%s\n#else\n__trap();\n#endif\n}", fail);
  cu_line(c, "if (!(%s)) %s", cu_expr_as(c, call->kids[0], CT_BOOL), fail);
  ts_buf_deinit(&f);
}

/* ---- helpers, kernels and the prelude ------------------------------------ */

static void helper(cg *c, ts_node *fn, bool proto) {
  ts_node *params = fn->kids[0], *result = fn->kids[1];
  bool has = result && result->dtype < TS_DTYPE_COUNT;
  const char *args = "";
  for (uint32_t i = 0; i < params->kid_count; i++) {
    ts_node *p = params->kids[i];
    args = cu_str(c, "%s%s%s %s", args, i ? ", " : "",
               ctype_c(cu_compute_of(p->kids[0]->dtype)),
               cu_name_of(c, "v_", p->name));
  }
  cu_line(c, "__device__ static %s %s(%s)%s",
       has ? ctype_c(cu_compute_of(result->dtype)) : "void",
       cu_name_of(c, "f_", fn->name), args, proto ? ";" : " {");
  if (proto)
    return;
  c->ind++;
  c->par = 1; /* a helper runs inside one thread's work */
  c->fn_result = has ? cu_compute_of(result->dtype) : CT_I64;
  c->k = NULL;
  cu_block(c, fn->kids[2]);
  if (has)
    cu_line(c, "return (%s)0;", ctype_c(cu_compute_of(result->dtype)));
  c->par = 0;
  c->ind--;
  cu_line(c, "}");
}

static void kernel(cg *c, const ts_kernel_info *k) {
  if (!ts_gpu_smem_check(k, c->arch, &c->u->src, c->d)) {
    c->failed = true;
    return;
  }
  c->k = k;
  c->threads = k->threads;
  c->par = 0;
  c->single = c->synced = false;
  const char *params = "";
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_TENSOR) {
      const char *s = cu_storage_c(k->args[i]->type->dtype);
      const char *n = cu_name_of(c, "a_", k->args[i]->name);
      params = cu_str(c, "%s%s%s *%s_alloc, %s *%s, long long %s_off, long long "
                   "%s_size, long long %s_stride",
                   params, *params ? ", " : "", s, n, s, n, n, n, n);
    }
  for (uint32_t i = 0; i < k->dim_count; i++)
    params = cu_str(c, "%s%slong long %s", params, *params ? ", " : "",
                 cu_name_of(c, "d_", k->dims[i]->name));
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_SCALAR) {
      ts_dtype dt = k->args[i]->type->dtype;
      params = cu_str(c, "%s%s%s %s%s", params, *params ? ", " : "",
                   dt == TS_DTYPE_BOOL ? "signed char" : ctype_c(cu_compute_of(dt)),
                   cu_name_of(c, "v_", k->args[i]->name),
                   dt == TS_DTYPE_BOOL ? "_raw" : "");
    }
  params = cu_str(c, "%s%sunsigned char *ts_scratch_alloc, unsigned char "
               "*ts_scratch, long long ts_scratch_off, long long "
               "ts_scratch_size, long long ts_scratch_stride, long long "
               "ts_scratch_per_block",
               params, *params ? ", " : "");
  /* TMA: the tensor maps by value, and whether the runtime built them */
  c->ntma = ts_pipe_tma(k, c->arch, c->tma);
  for (int i = 0; i < c->ntma; i++)
    params = cu_str(c, "%s, const __grid_constant__ ts_tmap ts_tm%d", params, i);
  if (c->ntma)
    params = cu_str(c, "%s, int ts_tma_on", params);
  cu_line(c, "extern \"C\" __global__ void __launch_bounds__(%lld) %.*s(%s) {",
       (long long)k->threads, (int)k->name.len, k->name.ptr, params);
  c->ind++;
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_SCALAR &&
        k->args[i]->type->dtype == TS_DTYPE_BOOL) {
      const char *n = cu_name_of(c, "v_", k->args[i]->name);
      cu_line(c, "const bool %s = %s_raw != 0;", n, n);
    }
  cu_line(c, "unsigned char *ts_block_scratch = ts_scratch + ((long long)blockIdx.x "
          "+ (long long)gridDim.x * ((long long)blockIdx.y + (long long)gridDim.y "
          "* (long long)blockIdx.z)) * ts_scratch_per_block;");
  /* tiles where ts_gpu_tile_plan places them */
  ts_gpu_tile tiles[TS_GPU_MAX_TILES];
  int64_t total;
  int nt = ts_gpu_tile_plan(k, c->arch, tiles, &total);
  c->bar_at = (total + 7) & ~(int64_t)7; /* the TMA rings' mbarriers */
  uint8_t mma[TS_GPU_MAX_TILES];
  ts_mma_layouts(k, tiles, nt, c->wgmma, mma);
  c->ns = ts_wgmma_nsplit(k);
  if (c->ns > 1) /* which exchange buffer the next row reduction takes (gen.h) */
    cu_line(c, "int ts_xpar = 0;");
  c->uses_wgmma = false;
  bool swizzled = false;
  for (int i = 0; i < nt; i++) {
    c->uses_wgmma |= tiles[i].home == TS_TILE_REGS && mma[i] == TS_ACC_WGMMA;
    swizzled |= tiles[i].home == TS_TILE_SMEM && tiles[i].swz;
  }
  /* the swizzled tiles' offsets count from a 1024-aligned base (gen.h) */
  if (swizzled)
    cu_line(c, "unsigned char *ts_base = ts_smem + ((0u - (unsigned)__cvta_generic_to_shared(ts_smem)) & 1023u);");
  c->tiles = tiles;
  c->ntiles = nt;
  const char *at = "0LL";
  c->nregs = 0;
  for (int i = 0; i < nt; i++) {
    const ts_type *t = tiles[i].decl->sym->type;
    const char *s = cu_storage_c(t->dtype);
    const char *n = cu_tile_name(c, tiles[i].decl->sym);
    if (tiles[i].home == TS_TILE_REGS) {
      /* element e in thread e % threads, at e / threads; or the mma
       * layout: 4 registers per 16x8 piece the thread's warp takes */
      int64_t per = tiles[i].per_thread;
      if (mma[i] == TS_ACC_WGMMA) {
        per = t->dims[0].c * t->dims[1].c / c->threads;
        cu_line(c, "// %.*s: the wgmma accumulator layout", (int)tiles[i].decl->sym->name.len,
                tiles[i].decl->sym->name.ptr);
      } else if (mma[i] == TS_ACC_ROWS) {
        cu_line(c, "// %.*s: wgmma's rows, the quad's four lanes alike",
                (int)tiles[i].decl->sym->name.len, tiles[i].decl->sym->name.ptr);
      } else if (mma[i]) {
        int64_t warps = c->threads / 32;
        int64_t pieces = (t->dims[0].c / 16) * (t->dims[1].c / 8);
        per = (pieces + warps - 1) / warps * 4;
        cu_line(c, "// %.*s: the mma.sync accumulator layout", (int)tiles[i].decl->sym->name.len,
             tiles[i].decl->sym->name.ptr);
      }
      cu_line(c, "%s %s[%lld];", s, n, (long long)per);
      if (c->nregs < TS_GPU_MAX_TILES) {
        c->mma[c->nregs] = mma[i];
        c->regs[c->nregs++] = tiles[i].decl->sym;
      }
      continue;
    }
    if (tiles[i].home == TS_TILE_SMEM) {
      cu_line(c, "TS_SHARED(%s) %s = (%s *)(%s + %lld);", s, n, s,
              swizzled ? "ts_base" : "ts_smem", (long long)tiles[i].off);
      continue;
    }
    const char *count = "1LL";
    for (uint32_t d = 0; d < t->rank; d++)
      count = cu_str(c, "(%s * %s)", count, extent(c, &t->dims[d], tiles[i].decl));
    cu_line(c, "%s *%s = (%s *)(ts_block_scratch + %s);", s, n, s, at);
    at = cu_str(c, "(%s + (((ts_max(%s, 1LL) * %dLL) + 15LL) & ~15LL))", at, count,
             ts_dtype_bits(t->dtype) / 8);
  }
  cu_block(c, k->node->kids[4]);
  c->tiles = NULL;
  c->ntiles = 0;
  c->ind--;
  cu_line(c, "}");
  /* for the simulator (runtime/gpusim.c): the kernel called with its
   * arguments packed as cuLaunchKernel takes them */
  ts_buf_puts(c->o, "#ifdef TS_CUDA_SIM\n");
  cu_line(c, "extern \"C\" void %.*s__packed(void **a) {", (int)k->name.len,
       k->name.ptr);
  const char *call = "";
  int n = 0;
#define ARG(type) call = cu_str(c, "%s%s*(%s *)a[%d]", call, n ? ", " : "", type, n), n++
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_TENSOR) {
      const char *s = cu_str(c, "%s *", cu_storage_c(k->args[i]->type->dtype));
      ARG(s);
      ARG(s);
      ARG("long long");
      ARG("long long");
      ARG("long long");
    }
  for (uint32_t i = 0; i < k->dim_count; i++)
    ARG("long long");
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i]->kind == TS_SYM_SCALAR) {
      ts_dtype dt = k->args[i]->type->dtype;
      ARG(dt == TS_DTYPE_BOOL ? "signed char" : ctype_c(cu_compute_of(dt)));
    }
  ARG("unsigned char *");
  ARG("unsigned char *");
  for (int i = 0; i < 4; i++)
    ARG("long long");
  for (int i = 0; i < c->ntma; i++)
    ARG("ts_tmap");
  if (c->ntma)
    ARG("int");
#undef ARG
  c->ind++;
  cu_line(c, "%.*s(%s);", (int)k->name.len, k->name.ptr, call);
  c->ind--;
  cu_line(c, "}");
  ts_buf_puts(c->o, "#endif\n");
}

ts_status ts_gen_cuda(ts_unit *u, const char *only, const char *arch,
                      ts_diags *diags, ts_buf *out) {
  cg c = {.o = out, .u = u, .d = diags, .wgmma = ts_arch_wgmma(arch), .arch = arch};
  ts_buf_puts(out, ts_cuda_prelude);
  ts_node *root = u->root;
  for (int pass = 0; pass < 2; pass++)
    for (uint32_t i = 0; i < root->kid_count && !c.failed; i++)
      if (root->kids[i]->kind == TS_NODE_FN && !ts_fn_is_tile(root->kids[i]))
        helper(&c, root->kids[i], pass == 0); /* (tile functions are inlined) */
  for (uint32_t i = 0; i < u->kernel_count && !c.failed; i++) {
    const ts_kernel_info *k = &u->kernels[i];
    if (only && !ts_str_eq_cstr(k->name, only))
      continue;
    kernel(&c, k);
  }
  for (size_t i = 0; i < c.nstrs; i++)
    free(c.strs[i]);
  free(c.strs);
  if (c.failed)
    return diags->error_count ? ts_status_make(TS_ERR_PROGRAM,
                                               "the kernel cannot be lowered")
                              : ts_status_nomem();
  return out->failed ? ts_status_nomem() : NULL;
}
