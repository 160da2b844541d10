/* dump.c - the text behind `tessera compile --emit tokens|ast|typed`: one
 * token per line; the tree indented two spaces per level with positions;
 * and the tree again with the types and constants sema found, after a
 * summary of each kernel's params, dims, grid and threads. The formats are
 * stable: tests/golden/ compares them. */
#include "dsl/dsl.h"

#include <string.h>

static void put_pos(const ts_source *src, uint32_t off, ts_buf *out) {
  uint32_t line, col;
  ts_source_position(src, off, &line, &col);
  ts_buf_printf(out, "%u:%u", line, col);
}

void ts_dump_tokens(const ts_source *src, ts_diags *diags, ts_buf *out) {
  ts_lexer lx;
  ts_lex_init(&lx, src, diags);
  for (;;) {
    ts_token t = ts_lex_next(&lx);
    if (ts_diags_full(diags))
      break;
    put_pos(src, t.span.lo, out);
    ts_buf_putc(out, ' ');
    switch (t.kind) {
    case TS_TOK_IDENT:
    case TS_TOK_STRING:
    case TS_TOK_ERROR:
      ts_buf_printf(out, "%s '", ts_tok_spelling(t.kind));
      ts_buf_put_quoted(out, src->text + t.span.lo, t.span.hi - t.span.lo, 64);
      ts_buf_putc(out, '\'');
      break;
    case TS_TOK_INT:
      ts_buf_printf(out, "integer %lld", (long long)t.ival);
      break;
    case TS_TOK_FLOAT: ts_buf_printf(out, "float %.17g", t.fval); break;
    case TS_TOK_EOF: ts_buf_puts(out, "eof"); break;
    default:
      ts_buf_printf(out, "%s '%s'",
                    ts_tok_is_keyword(t.kind) ? "keyword" : "punct",
                    ts_tok_spelling(t.kind));
    }
    ts_buf_putc(out, '\n');
    if (t.kind == TS_TOK_EOF)
      break;
  }
}

void ts_extent_print(const ts_unit *u, const ts_extent *e, ts_buf *out) {
  bool first = true;
  for (uint32_t i = 0; i < e->term_count; i++) {
    int64_t c = e->terms[i].coef;
    ts_str name = e->terms[i].atom < u->atom_count
                      ? u->atom_names[e->terms[i].atom]
                      : TS_STR_LIT("?");
    if (!first)
      ts_buf_puts(out, c < 0 ? " - " : " + ");
    else if (c < 0)
      ts_buf_putc(out, '-');
    int64_t m = c < 0 ? -c : c;
    if (m != 1)
      ts_buf_printf(out, "%lld*", (long long)m);
    ts_buf_append(out, name.ptr, name.len);
    first = false;
  }
  if (first)
    ts_buf_printf(out, "%lld", (long long)e->c);
  else if (e->c)
    ts_buf_printf(out, " %c %lld", e->c < 0 ? '-' : '+',
                  (long long)(e->c < 0 ? -e->c : e->c));
}

void ts_type_print(const ts_unit *u, const ts_type *t, ts_buf *out) {
  switch (t->kind) {
  case TS_TYPE_ERROR: ts_buf_puts(out, "<error>"); return;
  case TS_TYPE_VOID: ts_buf_puts(out, "void"); return;
  case TS_TYPE_STRING: ts_buf_puts(out, "string"); return;
  case TS_TYPE_DTYPE: ts_buf_puts(out, "type"); return;
  case TS_TYPE_SCALAR:
    if (t->literal)
      ts_buf_puts(out, ts_dtype_is_float(t->dtype) ? "float literal"
                                                   : "int literal");
    else
      ts_buf_puts(out, ts_dtype_name(t->dtype));
    return;
  case TS_TYPE_TENSOR:
  case TS_TYPE_TILE:
    ts_buf_printf(out, "%s %s[",
                  t->kind == TS_TYPE_TENSOR     ? "global"
                  : t->scope == TS_SCOPE_SHARED ? "shared"
                                                : "frag",
                  ts_dtype_name(t->dtype));
    for (uint32_t i = 0; i < t->rank; i++) {
      if (i)
        ts_buf_puts(out, ", ");
      ts_extent_print(u, &t->dims[i], out);
    }
    ts_buf_putc(out, ']');
    if (t->gathered)
      ts_buf_puts(out, " gathered");
    return;
  }
}

static void put_const(const ts_const *c, ts_buf *out) {
  switch (c->kind) {
  case TS_CONST_INT: ts_buf_printf(out, "%lld", (long long)c->i); break;
  case TS_CONST_FLOAT: ts_buf_printf(out, "%.9g", c->f); break;
  case TS_CONST_BOOL: ts_buf_puts(out, c->b ? "true" : "false"); break;
  case TS_CONST_DTYPE: ts_buf_puts(out, ts_dtype_name(c->dt)); break;
  default: break;
  }
}

static void dump_node(const ts_unit *u, const ts_node *n, int depth, bool typed,
                      ts_buf *out) {
  for (int i = 0; i < depth; i++)
    ts_buf_puts(out, "  ");
  if (!n) {
    ts_buf_puts(out, "-\n");
    return;
  }
  ts_buf_puts(out, ts_node_kind_name(n->kind));
  switch (n->kind) {
  case TS_NODE_INT: ts_buf_printf(out, " %lld", (long long)n->ival); break;
  case TS_NODE_FLOAT: ts_buf_printf(out, " %.9g", n->fval); break;
  case TS_NODE_BOOL: ts_buf_puts(out, n->ival ? " true" : " false"); break;
  case TS_NODE_STRING:
    ts_buf_puts(out, " \"");
    ts_buf_put_quoted(out, n->name.ptr, n->name.len, 64);
    ts_buf_putc(out, '"');
    break;
  case TS_NODE_TYPE:
    if (n->op == TS_TOK_INT_T || n->op == TS_TOK_FLOAT_T ||
        n->op == TS_TOK_DTYPE_T)
      ts_buf_printf(out, " %s", ts_tok_spelling((ts_tok_kind)n->op));
    else if (n->op == TS_TOK_IDENT)
      ts_buf_printf(out, " %.*s", (int)n->name.len, n->name.ptr);
    else if (n->dtype < TS_DTYPE_COUNT)
      ts_buf_printf(out, " %s", ts_dtype_name(n->dtype));
    if (n->has_shape)
      ts_buf_puts(out, " shaped");
    break;
  case TS_NODE_TILE:
    ts_buf_printf(out, " %s", ts_tok_spelling((ts_tok_kind)n->op));
    break;
  case TS_NODE_ARG: /* a tile function's tile parameter */
    if (n->op == TS_TOK_FRAG || n->op == TS_TOK_SHARED)
      ts_buf_printf(out, " %s", ts_tok_spelling((ts_tok_kind)n->op));
    break;
  case TS_NODE_UNARY:
  case TS_NODE_BINARY:
  case TS_NODE_ASSIGN:
    ts_buf_printf(out, " %s", ts_tok_spelling((ts_tok_kind)n->op));
    break;
  case TS_NODE_DTYPE: ts_buf_printf(out, " %s", ts_dtype_name(n->dtype)); break;
  default: break;
  }
  if (n->name.len && n->kind != TS_NODE_STRING) {
    ts_buf_putc(out, ' ');
    ts_buf_put_quoted(out, n->name.ptr, n->name.len, 64);
  }
  ts_buf_puts(out, " @");
  put_pos(&u->src, n->span.lo, out);
  if (typed) {
    const ts_type *t = n->type;
    if (!t && n->sym && n->kind != TS_NODE_KERNEL && n->kind != TS_NODE_FN)
      t = n->sym->type;
    if (t && n->kind != TS_NODE_KERNEL && n->kind != TS_NODE_FN &&
        n->kind != TS_NODE_BLOCK) {
      ts_buf_puts(out, " : ");
      ts_type_print(u, t, out);
    }
    if (n->cval.kind != TS_CONST_NONE) {
      ts_buf_puts(out, " = ");
      put_const(&n->cval, out);
    }
  }
  ts_buf_putc(out, '\n');
  for (uint32_t i = 0; i < n->kid_count; i++)
    dump_node(u, n->kids[i], depth + 1, typed, out);
}

void ts_dump_ast(const ts_unit *u, ts_buf *out) {
  if (u->root)
    dump_node(u, u->root, 0, false, out);
}

static void dump_kernel_info(const ts_unit *u, const ts_kernel_info *k,
                             ts_buf *out) {
  ts_buf_puts(out, "kernel ");
  ts_buf_append(out, k->name.ptr, k->name.len);
  ts_buf_putc(out, '\n');
  for (uint32_t i = 0; i < k->param_count; i++) {
    const ts_symbol *p = k->params[i];
    ts_buf_printf(out, "  param %.*s: %s = ", (int)p->name.len, p->name.ptr,
                  p->cval.kind == TS_CONST_INT     ? "int"
                  : p->cval.kind == TS_CONST_FLOAT ? "float"
                  : p->cval.kind == TS_CONST_DTYPE ? "dtype"
                                                   : "bool");
    put_const(&p->cval, out);
    ts_buf_putc(out, '\n');
  }
  for (uint32_t i = 0; i < k->arg_count; i++) {
    const ts_symbol *a = k->args[i];
    ts_buf_printf(out, "  arg %.*s: ", (int)a->name.len, a->name.ptr);
    ts_type_print(u, a->type, out);
    ts_buf_putc(out, '\n');
  }
  if (k->dim_count) {
    ts_buf_puts(out, "  dims");
    for (uint32_t i = 0; i < k->dim_count; i++)
      ts_buf_printf(out, " %.*s", (int)k->dims[i]->name.len,
                    k->dims[i]->name.ptr);
    ts_buf_putc(out, '\n');
  }
  ts_buf_puts(out, "  grid (");
  for (uint32_t i = 0; i < k->grid_rank; i++) {
    if (i)
      ts_buf_puts(out, ", ");
    ts_extent_print(u, &k->grid[i], out);
  }
  ts_buf_printf(out, ")\n  threads %lld\n  shared %lld bytes\n",
                (long long)k->threads, (long long)k->shared_size);
}

void ts_dump_typed(const ts_unit *u, ts_buf *out) {
  for (uint32_t i = 0; i < u->kernel_count; i++)
    dump_kernel_info(u, &u->kernels[i], out);
  if (u->root)
    dump_node(u, u->root, 0, true, out);
}
