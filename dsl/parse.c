/* parse.c - recursive-descent parser for .tile files, in the manner of
 * Lua's lparser.c: one function per grammar rule, the rule written above it.
 * Errors are reported once per construct ("panic" mode) and the parser
 * resynchronises at the next statement or item, so one run reports many
 * errors. Nesting is bounded (TS_MAX_NESTING) so no input overflows the
 * stack; after TS_DIAG_DEFAULT_LIMIT errors it stops reading. */
#include "dsl/dsl.h"

#include <string.h>

typedef struct parser {
  ts_unit *u;
  ts_lexer lx;
  ts_token tok;   /* current token */
  ts_token prev;  /* last consumed token */
  ts_token ahead; /* one token of lookahead, when has_ahead */
  bool has_ahead;
  bool panic;       /* an error was reported; quiet until resynchronised */
  bool stop;        /* too many errors or out of memory: read no more */
  bool depth_error; /* the nesting error was reported */
  uint32_t depth;
  /* a stack of nodes under construction (kids of the node being built) */
  ts_node **stack;
  uint32_t top, cap;
  ts_node dummy; /* handed out when memory runs out */
} parser;

/* ---- tokens ----------------------------------------------------------------
 */

static ts_token lex_real(parser *p) {
  for (;;) {
    ts_token t = ts_lex_next(&p->lx);
    if (t.kind != TS_TOK_ERROR)
      return t;
    if (ts_diags_full(p->u->diags)) {
      p->stop = true;
      t.kind = TS_TOK_EOF;
      return t;
    }
  }
}

static void advance(parser *p) {
  p->prev = p->tok;
  if (p->stop) {
    p->tok.kind = TS_TOK_EOF;
    p->tok.span = (ts_span){p->u->src.len, p->u->src.len};
    return;
  }
  if (p->has_ahead) {
    p->tok = p->ahead;
    p->has_ahead = false;
  } else {
    p->tok = lex_real(p);
  }
}

static const ts_token *lookahead(parser *p) {
  if (!p->has_ahead) {
    p->ahead = p->stop ? p->tok : lex_real(p);
    p->has_ahead = true;
  }
  return &p->ahead;
}

static bool check(parser *p, ts_tok_kind k) { return p->tok.kind == k; }

static bool accept(parser *p, ts_tok_kind k) {
  if (p->tok.kind != k)
    return false;
  advance(p);
  return true;
}

/* ---- diagnostics
 * --------------------------------------------------------------- */

/* How a token is named in messages: its spelling, or its text quoted. */
static void describe(parser *p, const ts_token *t, ts_buf *b) {
  switch (t->kind) {
  case TS_TOK_EOF: ts_buf_puts(b, "end of file"); return;
  case TS_TOK_IDENT:
  case TS_TOK_INT:
  case TS_TOK_FLOAT:
  case TS_TOK_STRING:
    ts_buf_putc(b, '\'');
    ts_buf_put_quoted(b, p->u->src.text + t->span.lo, t->span.hi - t->span.lo,
                      32);
    ts_buf_putc(b, '\'');
    return;
  default: ts_buf_printf(b, "'%s'", ts_tok_spelling(t->kind));
  }
}

static void check_stop(parser *p) {
  if (ts_diags_full(p->u->diags) || p->u->diags->nomem)
    p->stop = true;
}

/* "expected X, found Y" at the current token, once per panic. */
static ts_diag *error_expected(parser *p, const char *what) {
  if (p->panic)
    return NULL;
  p->panic = true;
  ts_buf b;
  ts_buf_init(&b, p->u->alloc);
  describe(p, &p->tok, &b);
  ts_diag *d = ts_diag_error(p->u->diags, &p->u->src, p->tok.span,
                             "expected %s, found %s", what, b.ptr ? b.ptr : "");
  ts_buf_deinit(&b);
  check_stop(p);
  return d;
}

static ts_diag *error_at(parser *p, ts_span sp, const char *msg) {
  if (p->panic)
    return NULL;
  p->panic = true;
  ts_diag *d = ts_diag_error(p->u->diags, &p->u->src, sp, "%s", msg);
  check_stop(p);
  return d;
}

static bool expect(parser *p, ts_tok_kind k, const char *context) {
  if (accept(p, k))
    return true;
  char what[96];
  snprintf(what, sizeof what, "'%s'%s%s", ts_tok_spelling(k),
           context[0] ? " " : "", context);
  error_expected(p, what);
  return false;
}

/* Expects the closing token of a pair opened by `open`. */
static void expect_close(parser *p, ts_tok_kind close, const ts_token *open) {
  if (accept(p, close))
    return;
  if (p->panic)
    return;
  char what[64];
  uint32_t line, col;
  ts_source_position(&p->u->src, open->span.lo, &line, &col);
  snprintf(what, sizeof what, "'%s' to close '%s' from line %u",
           ts_tok_spelling(close), ts_tok_spelling(open->kind), line);
  ts_diag *d = error_expected(p, what);
  ts_diag_note(p->u->diags, d, &p->u->src, open->span, "'%s' opened here",
               ts_tok_spelling(open->kind));
}

/* ---- nodes
 * ---------------------------------------------------------------------- */

static ts_node *new_node(parser *p, ts_node_kind kind, ts_span sp) {
  ts_node *n = ts_arena_alloc(&p->u->arena, sizeof *n);
  if (!n) {
    p->stop = true;
    p->u->diags->nomem = true;
    memset(&p->dummy, 0, sizeof p->dummy);
    p->dummy.kind = TS_NODE_ERROR;
    return &p->dummy;
  }
  n->kind = kind;
  n->span = sp;
  n->dtype = TS_DTYPE_COUNT;
  return n;
}

static void push(parser *p, ts_node *n) {
  if (p->top == p->cap) {
    uint32_t cap = p->cap ? p->cap * 2 : 64;
    ts_node **s =
        ts_resize(p->u->alloc, p->stack, p->cap * sizeof *s, cap * sizeof *s);
    if (!s) {
      p->stop = true;
      p->u->diags->nomem = true;
      return;
    }
    p->stack = s;
    p->cap = cap;
  }
  p->stack[p->top++] = n;
}

/* Moves the stack entries above `base` into n->kids. */
static ts_node *finish(parser *p, ts_node *n, uint32_t base) {
  uint32_t count = p->top - base;
  if (n != &p->dummy && count) {
    ts_node **kids = ts_arena_alloc(&p->u->arena, count * sizeof *kids);
    if (kids) {
      memcpy(kids, p->stack + base, count * sizeof *kids);
      n->kids = kids;
      n->kid_count = count;
    } else {
      p->stop = true;
      p->u->diags->nomem = true;
    }
  }
  p->top = base;
  return n;
}

static ts_node *node1(parser *p, ts_node_kind k, ts_span sp, ts_node *a) {
  uint32_t base = p->top;
  ts_node *n = new_node(p, k, sp);
  push(p, a);
  return finish(p, n, base);
}

static ts_span join(ts_span a, ts_span b) {
  return (ts_span){a.lo < b.lo ? a.lo : b.lo, a.hi > b.hi ? a.hi : b.hi};
}

static ts_str tok_text(parser *p, const ts_token *t) {
  return (ts_str){p->u->src.text + t->span.lo, t->span.hi - t->span.lo};
}

static ts_node *error_node(parser *p) {
  return new_node(p, TS_NODE_ERROR, p->tok.span);
}

/* ---- recovery
 * ---------------------------------------------------------------------- */

static bool is_open(ts_tok_kind k) {
  return k == TS_TOK_LPAREN || k == TS_TOK_LBRACKET || k == TS_TOK_LBRACE;
}
static bool is_close(ts_tok_kind k) {
  return k == TS_TOK_RPAREN || k == TS_TOK_RBRACKET || k == TS_TOK_RBRACE;
}

static bool starts_stmt(ts_tok_kind k) {
  switch (k) {
  case TS_TOK_LET:
  case TS_TOK_VAR:
  case TS_TOK_SHARED:
  case TS_TOK_FRAG:
  case TS_TOK_PARALLEL:
  case TS_TOK_PIPELINED:
  case TS_TOK_FOR:
  case TS_TOK_IF:
  case TS_TOK_BREAK:
  case TS_TOK_CONTINUE:
  case TS_TOK_RETURN: return true;
  default: return false;
  }
}

/* Skips to a point where a statement can start: past a ';', or before a
 * '}' that closes the enclosing block, a statement keyword, or an item
 * keyword. Bracketed groups on the way are skipped whole. */
static void sync_stmt(parser *p) {
  uint32_t depth = 0;
  while (!check(p, TS_TOK_EOF)) {
    ts_tok_kind k = p->tok.kind;
    if (depth == 0) {
      if (k == TS_TOK_SEMI) {
        advance(p);
        break;
      }
      if (k == TS_TOK_RBRACE || starts_stmt(k) || k == TS_TOK_KERNEL ||
          k == TS_TOK_FN)
        break;
    }
    if (is_open(k))
      depth++;
    else if (is_close(k)) {
      if (depth == 0) {
        advance(p); /* a stray ')' or ']' */
        continue;
      }
      depth--;
    }
    advance(p);
  }
  p->panic = false;
}

/* Skips to the next 'kernel', 'fn' or 'use' outside any braces. */
static void sync_item(parser *p) {
  uint32_t depth = 0;
  while (!check(p, TS_TOK_EOF)) {
    ts_tok_kind k = p->tok.kind;
    if (depth == 0 && (k == TS_TOK_KERNEL || k == TS_TOK_FN || k == TS_TOK_USE))
      break;
    if (k == TS_TOK_LBRACE)
      depth++;
    else if (k == TS_TOK_RBRACE && depth > 0)
      depth--;
    advance(p);
  }
  p->panic = false;
}

/* Called on entering a nested rule. Past the limit, reports once and skips
 * the rest of the nested construct (up to a ';' or an unmatched closing
 * bracket) without recursing, and returns false. */
static bool enter(parser *p) {
  if (p->depth < TS_MAX_NESTING) {
    p->depth++;
    return true;
  }
  if (!p->depth_error) {
    p->depth_error = true;
    p->panic = false;
    ts_diag *d = error_at(p, p->tok.span, "nesting is too deep");
    ts_diag_hint(p->u->diags, d,
                 "brackets, blocks and expressions nest at most 200 deep");
  }
  p->panic = true;
  uint32_t depth = 0;
  while (!check(p, TS_TOK_EOF)) {
    ts_tok_kind k = p->tok.kind;
    if (depth == 0 && k == TS_TOK_SEMI)
      break;
    if (is_open(k))
      depth++;
    else if (is_close(k)) {
      if (depth == 0)
        break;
      depth--;
    }
    advance(p);
  }
  return false;
}

static void leave(parser *p) { p->depth--; }

/* ---- expressions
 * --------------------------------------------------------------------- */

static ts_node *parse_expr(parser *p);

static bool is_dtype_tok(ts_tok_kind k) {
  switch (k) {
#define DTYPE(name, text, bits, cls, tok) case TS_TOK_##tok:
#include "dsl/dtypes.def"
#undef DTYPE
    return true;
  default: return false;
  }
}

static ts_dtype dtype_of_tok(ts_tok_kind k) {
  switch (k) {
#define DTYPE(name, text, bits, cls, tok)                                      \
  case TS_TOK_##tok:                                                           \
    return TS_DTYPE_##name;
#include "dsl/dtypes.def"
#undef DTYPE
  default: return TS_DTYPE_COUNT;
  }
}

/* args = [ arg { ',' arg } ]   arg = NAME '=' expr | expr */
static void parse_args(parser *p, ts_tok_kind close) {
  if (check(p, close))
    return;
  do {
    if (check(p, close))
      break; /* trailing comma */
    if (check(p, TS_TOK_IDENT) && lookahead(p)->kind == TS_TOK_ASSIGN) {
      ts_token name = p->tok;
      advance(p);
      advance(p);
      ts_node *v = parse_expr(p);
      ts_node *n = node1(p, TS_NODE_NAMED, join(name.span, v->span), v);
      n->name = tok_text(p, &name);
      push(p, n);
    } else {
      push(p, parse_expr(p));
    }
  } while (accept(p, TS_TOK_COMMA) && !p->stop);
}

/* subscript = expr | [expr] ':' [expr] */
static ts_node *parse_subscript(parser *p) {
  ts_span sp = p->tok.span;
  ts_node *lo = NULL, *hi = NULL;
  if (!check(p, TS_TOK_COLON)) {
    lo = parse_expr(p);
    if (!check(p, TS_TOK_COLON))
      return lo;
  }
  ts_span colon = p->tok.span;
  advance(p);
  if (!check(p, TS_TOK_COMMA) && !check(p, TS_TOK_RBRACKET))
    hi = parse_expr(p);
  uint32_t base = p->top;
  ts_node *n =
      new_node(p, TS_NODE_SLICE, join(lo ? sp : colon, hi ? hi->span : colon));
  push(p, lo);
  push(p, hi);
  return finish(p, n, base);
}

/* primary = INT | FLOAT | STRING | 'true' | 'false' | NAME | dtype
 *         | '(' expr ')' */
static ts_node *parse_primary(parser *p) {
  ts_token t = p->tok;
  ts_node *n;
  switch (t.kind) {
  case TS_TOK_INT:
    n = new_node(p, TS_NODE_INT, t.span);
    n->ival = t.ival;
    advance(p);
    return n;
  case TS_TOK_FLOAT:
    n = new_node(p, TS_NODE_FLOAT, t.span);
    n->fval = t.fval;
    advance(p);
    return n;
  case TS_TOK_STRING:
    n = new_node(p, TS_NODE_STRING, t.span);
    {
      bool closed; /* an unterminated string (reported) has no closing one */
      n->name = ts_tok_string(&p->u->src, t.span, &closed);
    }
    advance(p);
    return n;
  case TS_TOK_TRUE:
  case TS_TOK_FALSE:
    n = new_node(p, TS_NODE_BOOL, t.span);
    n->ival = t.kind == TS_TOK_TRUE;
    advance(p);
    return n;
  case TS_TOK_IDENT:
    n = new_node(p, TS_NODE_NAME, t.span);
    n->name = tok_text(p, &t);
    advance(p);
    return n;
  case TS_TOK_LPAREN: {
    advance(p);
    ts_node *e = parse_expr(p);
    expect_close(p, TS_TOK_RPAREN, &t);
    return e;
  }
  default:
    if (is_dtype_tok(t.kind)) {
      n = new_node(p, TS_NODE_DTYPE, t.span);
      n->dtype = dtype_of_tok(t.kind);
      n->name = tok_text(p, &t);
      advance(p);
      return n;
    }
    error_expected(p, "an expression");
    return error_node(p);
  }
}

/* postfix = primary { '(' args ')' | '[' subscript {',' subscript} ']' } */
static ts_node *parse_postfix(parser *p) {
  ts_node *e = parse_primary(p);
  uint32_t chain = 0; /* `x[i][j]...` nests like brackets do */
  for (;;) {
    ts_token open = p->tok;
    if (check(p, TS_TOK_LPAREN) || check(p, TS_TOK_LBRACKET)) {
      if (!enter(p))
        break;
      chain++;
    }
    if (accept(p, TS_TOK_LPAREN)) {
      if (e->kind != TS_NODE_NAME && e->kind != TS_NODE_DTYPE) {
        error_at(p, e->span, "only a function or a type name can be called");
      }
      uint32_t base = p->top;
      ts_node *c = new_node(p, TS_NODE_CALL, e->span);
      c->name = e->name;
      c->dtype = e->kind == TS_NODE_DTYPE ? e->dtype : TS_DTYPE_COUNT;
      if (enter(p)) {
        parse_args(p, TS_TOK_RPAREN);
        leave(p);
      }
      c->span = join(c->span, p->tok.span);
      expect_close(p, TS_TOK_RPAREN, &open);
      e = finish(p, c, base);
    } else if (accept(p, TS_TOK_LBRACKET)) {
      uint32_t base = p->top;
      ts_node *ix = new_node(p, TS_NODE_INDEX, e->span);
      push(p, e);
      if (enter(p)) {
        do {
          if (p->stop)
            break;
          push(p, parse_subscript(p));
        } while (accept(p, TS_TOK_COMMA));
        leave(p);
      }
      ix->span = join(ix->span, p->tok.span);
      expect_close(p, TS_TOK_RBRACKET, &open);
      e = finish(p, ix, base);
    } else {
      break;
    }
  }
  p->depth -= chain;
  return e;
}

/* unary = { '-' | '!' | '~' } postfix */
static ts_node *parse_unary(parser *p) {
  ts_token t = p->tok;
  if (t.kind == TS_TOK_MINUS || t.kind == TS_TOK_BANG ||
      t.kind == TS_TOK_TILDE || t.kind == TS_TOK_PLUS) {
    if (!enter(p))
      return error_node(p);
    advance(p);
    ts_node *operand = parse_unary(p);
    leave(p);
    if (t.kind == TS_TOK_PLUS)
      return operand;
    ts_node *n = node1(p, TS_NODE_UNARY, join(t.span, operand->span), operand);
    n->op = t.kind;
    return n;
  }
  return parse_postfix(p);
}

/* Binary precedence, higher binds tighter (0 = not a binary operator). */
static int precedence(ts_tok_kind k) {
  switch (k) {
  case TS_TOK_OROR: return 1;
  case TS_TOK_ANDAND: return 2;
  case TS_TOK_PIPE: return 3;
  case TS_TOK_CARET: return 4;
  case TS_TOK_AMP: return 5;
  case TS_TOK_EQ:
  case TS_TOK_NE: return 6;
  case TS_TOK_LT:
  case TS_TOK_LE:
  case TS_TOK_GT:
  case TS_TOK_GE: return 7;
  case TS_TOK_SHL:
  case TS_TOK_SHR: return 8;
  case TS_TOK_PLUS:
  case TS_TOK_MINUS: return 9;
  case TS_TOK_STAR:
  case TS_TOK_SLASH:
  case TS_TOK_PERCENT: return 10;
  default: return 0;
  }
}

/* binary = unary { binop unary }, by precedence climbing */
static ts_node *parse_binary(parser *p, int min_prec) {
  ts_node *lhs = parse_unary(p);
  /* Each operator of a chain makes the tree one level deeper (the left
   * operand nests): count the chain against the nesting bound too. */
  uint32_t chain = 0;
  for (;;) {
    int prec = precedence(p->tok.kind);
    if (prec == 0 || prec < min_prec || p->stop) {
      p->depth -= chain;
      return lhs;
    }
    ts_tok_kind op = p->tok.kind;
    advance(p);
    if (!enter(p)) {
      p->depth -= chain;
      return lhs;
    }
    chain++;
    ts_node *rhs = parse_binary(p, prec + 1);
    uint32_t base = p->top;
    ts_node *n = new_node(p, TS_NODE_BINARY, join(lhs->span, rhs->span));
    n->op = op;
    push(p, lhs);
    push(p, rhs);
    lhs = finish(p, n, base);
  }
}

/* expr = binary */
static ts_node *parse_expr(parser *p) {
  if (!enter(p))
    return error_node(p);
  ts_node *e = parse_binary(p, 1);
  leave(p);
  return e;
}

/* ---- types
 * ------------------------------------------------------------------------------
 */

/* type = ( dtype | NAME ) [ '[' expr { ',' expr } ']' ]
 * A NAME is a dtype param (op IDENT, dtype TS_DTYPE_COUNT until sema
 * resolves it). Params also take 'int' and 'float' (dtype i64 / f32) and
 * 'dtype' (TS_DTYPE_COUNT), op set to the keyword. */
static ts_node *parse_type(parser *p, bool allow_param_types) {
  ts_token t = p->tok;
  ts_node *n = new_node(p, TS_NODE_TYPE, t.span);
  if (is_dtype_tok(t.kind)) {
    n->dtype = dtype_of_tok(t.kind);
    n->op = t.kind;
  } else if (t.kind == TS_TOK_IDENT && !allow_param_types) {
    n->dtype = TS_DTYPE_COUNT;
    n->op = t.kind;
    n->name = tok_text(p, &t);
  } else if (allow_param_types &&
             (t.kind == TS_TOK_INT_T || t.kind == TS_TOK_FLOAT_T ||
              t.kind == TS_TOK_DTYPE_T)) {
    n->dtype = t.kind == TS_TOK_INT_T     ? TS_DTYPE_I64
               : t.kind == TS_TOK_FLOAT_T ? TS_DTYPE_F32
                                          : TS_DTYPE_COUNT;
    n->op = t.kind;
  } else if (t.kind == TS_TOK_DTYPE_T) {
    ts_diag *d = error_at(p, t.span, "'dtype' is a param type");
    ts_diag_hint(p->u->diags, d,
                 "declare it in 'params(W: dtype = bf16)', then write 'W' "
                 "where a type goes");
    advance(p);
    return n;
  } else if (t.kind == TS_TOK_INT_T || t.kind == TS_TOK_FLOAT_T) {
    ts_diag *d = error_at(p, t.span, "'int' and 'float' are param types");
    ts_diag_hint(p->u->diags, d, "use an element type such as 'i64' or 'f32'");
    advance(p);
    return n;
  } else {
    error_expected(p, "a type such as 'f32' or 'bf16'");
    return n;
  }
  advance(p);
  ts_token open = p->tok;
  if (accept(p, TS_TOK_LBRACKET)) {
    n->has_shape = true;
    uint32_t base = p->top;
    if (!check(p, TS_TOK_RBRACKET)) {
      do {
        if (p->stop)
          break;
        push(p, parse_expr(p));
      } while (accept(p, TS_TOK_COMMA));
    }
    n->span = join(n->span, p->tok.span);
    expect_close(p, TS_TOK_RBRACKET, &open);
    finish(p, n, base);
  }
  return n;
}

/* ---- statements
 * ------------------------------------------------------------------------ */

static ts_node *parse_block(parser *p);
static ts_node *parse_stmt(parser *p);

static ts_node *expect_name(parser *p, const char *what) {
  ts_node *n = new_node(p, TS_NODE_NAME, p->tok.span);
  if (check(p, TS_TOK_IDENT)) {
    n->name = tok_text(p, &p->tok);
    advance(p);
  } else if (ts_tok_is_keyword(p->tok.kind) && !p->panic) {
    /* A keyword where a name belongs: say so, then carry on as if it were
     * the name, so that nothing else is reported for it. */
    ts_diag *d = ts_diag_error(p->u->diags, &p->u->src, p->tok.span,
                               "'%s' is a keyword and cannot be used as a "
                               "name",
                               ts_tok_spelling(p->tok.kind));
    ts_diag_hint(p->u->diags, d, "choose another name, e.g. '%s_'",
                 ts_tok_spelling(p->tok.kind));
    check_stop(p);
    n->name = tok_text(p, &p->tok);
    advance(p);
  } else {
    error_expected(p, what);
    n->kind = TS_NODE_ERROR;
  }
  return n;
}

static void expect_semi(parser *p, const char *after) {
  if (accept(p, TS_TOK_SEMI))
    return;
  if (p->panic)
    return;
  char what[64];
  snprintf(what, sizeof what, "';' after %s", after);
  /* Point just past the previous token: that is where ';' is missing. */
  ts_token save = p->tok;
  p->tok.span = (ts_span){p->prev.span.hi, p->prev.span.hi};
  ts_buf b;
  ts_buf_init(&b, p->u->alloc);
  describe(p, &save, &b);
  p->panic = true;
  ts_diag_error(p->u->diags, &p->u->src, p->tok.span, "expected %s, found %s",
                what, b.ptr ? b.ptr : "");
  ts_buf_deinit(&b);
  check_stop(p);
  p->tok = save;
}

/* let = ('let' | 'var') NAME [':' type] '=' expr ';' */
static ts_node *parse_let(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n =
      new_node(p, kw.kind == TS_TOK_LET ? TS_NODE_LET : TS_NODE_VAR, kw.span);
  ts_node *name = expect_name(p, "a name");
  n->name = name->name;
  n->span = join(kw.span, name->span);
  ts_node *type = NULL, *value = NULL;
  if (accept(p, TS_TOK_COLON))
    type = parse_type(p, false);
  if (expect(p, TS_TOK_ASSIGN, "and a value"))
    value = parse_expr(p);
  else
    value = error_node(p);
  expect_semi(p, kw.kind == TS_TOK_LET ? "'let'" : "'var'");
  uint32_t base = p->top;
  push(p, type);
  push(p, value);
  return finish(p, n, base);
}

/* tile = ('shared' | 'frag') NAME ':' type ';' */
static ts_node *parse_tile(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_TILE, kw.span);
  n->op = kw.kind;
  ts_node *name = expect_name(p, "a tile name");
  n->name = name->name;
  n->span = join(kw.span, name->span);
  ts_node *type = NULL;
  if (expect(p, TS_TOK_COLON, "and the tile's type"))
    type = parse_type(p, false);
  expect_semi(p, "the tile declaration");
  uint32_t base = p->top;
  push(p, type);
  return finish(p, n, base);
}

/* parallel = 'parallel' '(' NAME {',' NAME} ')' 'in' '(' expr {',' expr} ')'
 *            block */
static ts_node *parse_parallel(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_PARALLEL, kw.span);
  uint32_t base = p->top;
  ts_token open = p->tok;
  ts_node *vars = new_node(p, TS_NODE_LIST, p->tok.span);
  uint32_t vbase = p->top;
  if (expect(p, TS_TOK_LPAREN, "and the index names")) {
    do {
      if (p->stop)
        break;
      push(p, expect_name(p, "an index name"));
    } while (accept(p, TS_TOK_COMMA));
    expect_close(p, TS_TOK_RPAREN, &open);
  }
  finish(p, vars, vbase);
  expect(p, TS_TOK_IN, "after the index names");
  open = p->tok;
  ts_node *exts = new_node(p, TS_NODE_LIST, p->tok.span);
  uint32_t ebase = p->top;
  if (expect(p, TS_TOK_LPAREN, "and the extents")) {
    do {
      if (p->stop)
        break;
      push(p, parse_expr(p));
    } while (accept(p, TS_TOK_COMMA));
    expect_close(p, TS_TOK_RPAREN, &open);
  }
  finish(p, exts, ebase);
  push(p, vars);
  push(p, exts);
  push(p, parse_block(p));
  return finish(p, n, base);
}

/* range = expr '..' expr */
static void parse_range(parser *p) {
  push(p, parse_expr(p));
  if (expect(p, TS_TOK_DOTDOT, "in the range 'lo..hi'"))
    push(p, parse_expr(p));
  else
    push(p, error_node(p));
}

/* pipelined = 'pipelined' '(' NAME 'in' range [',' 'stages' '=' expr] ')'
 *             block */
static ts_node *parse_pipelined(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_PIPELINED, kw.span);
  uint32_t base = p->top;
  ts_token open = p->tok;
  ts_node *stages = NULL;
  if (expect(p, TS_TOK_LPAREN, "after 'pipelined'")) {
    n->name = expect_name(p, "the loop variable")->name;
    expect(p, TS_TOK_IN, "after the loop variable");
    parse_range(p);
    if (accept(p, TS_TOK_COMMA)) {
      ts_token k = p->tok;
      if (check(p, TS_TOK_IDENT) && ts_str_eq_cstr(tok_text(p, &k), "stages")) {
        advance(p);
        expect(p, TS_TOK_ASSIGN, "after 'stages'");
        stages = parse_expr(p);
      } else {
        error_expected(p, "'stages = N'");
      }
    }
    expect_close(p, TS_TOK_RPAREN, &open);
  } else {
    push(p, error_node(p));
    push(p, error_node(p));
  }
  push(p, stages);
  push(p, parse_block(p));
  return finish(p, n, base);
}

/* for = 'for' NAME 'in' range block */
static ts_node *parse_for(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_FOR, kw.span);
  uint32_t base = p->top;
  n->name = expect_name(p, "the loop variable")->name;
  expect(p, TS_TOK_IN, "after the loop variable");
  parse_range(p);
  push(p, parse_block(p));
  return finish(p, n, base);
}

/* if = 'if' expr block [ 'else' ( if | block ) ] */
static ts_node *parse_if(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_IF, kw.span);
  uint32_t base = p->top;
  push(p, parse_expr(p));
  push(p, parse_block(p));
  if (accept(p, TS_TOK_ELSE)) {
    if (check(p, TS_TOK_IF)) {
      if (enter(p)) {
        push(p, parse_if(p));
        leave(p);
      } else {
        push(p, error_node(p));
      }
    } else {
      push(p, parse_block(p));
    }
  } else {
    push(p, NULL);
  }
  return finish(p, n, base);
}

static bool is_assign_op(ts_tok_kind k) {
  return k == TS_TOK_ASSIGN || k == TS_TOK_PLUS_ASSIGN ||
         k == TS_TOK_MINUS_ASSIGN || k == TS_TOK_STAR_ASSIGN ||
         k == TS_TOK_SLASH_ASSIGN;
}

/* simple = expr ( assignop expr | <a call> ) ';' */
static ts_node *parse_simple(parser *p) {
  ts_node *e = parse_expr(p);
  if (is_assign_op(p->tok.kind)) {
    ts_tok_kind op = p->tok.kind;
    advance(p);
    ts_node *v = parse_expr(p);
    expect_semi(p, "the assignment");
    uint32_t base = p->top;
    ts_node *n = new_node(p, TS_NODE_ASSIGN, join(e->span, v->span));
    n->op = op;
    push(p, e);
    push(p, v);
    return finish(p, n, base);
  }
  if (e->kind == TS_NODE_CALL) {
    expect_semi(p, "the call");
    return node1(p, TS_NODE_EXPR_STMT, e->span, e);
  }
  if (e->kind != TS_NODE_ERROR && !p->panic) {
    if (check(p, TS_TOK_SEMI) || check(p, TS_TOK_RBRACE)) {
      ts_diag *d = error_at(p, e->span, "this expression does nothing");
      ts_diag_hint(p->u->diags, d,
                   "a statement is a call, an assignment or a declaration");
    } else {
      error_expected(p, "'=' or ';'");
    }
  }
  return e;
}

/* stmt = let | tile | parallel | pipelined | for | if | 'break' ';'
 *      | 'continue' ';' | 'return' [expr] ';' | block | simple */
static ts_node *parse_stmt(parser *p) {
  ts_token t = p->tok;
  switch (t.kind) {
  case TS_TOK_LET:
  case TS_TOK_VAR: return parse_let(p);
  case TS_TOK_SHARED:
  case TS_TOK_FRAG: return parse_tile(p);
  case TS_TOK_PARALLEL: return parse_parallel(p);
  case TS_TOK_PIPELINED: return parse_pipelined(p);
  case TS_TOK_FOR: return parse_for(p);
  case TS_TOK_IF: return parse_if(p);
  case TS_TOK_BREAK:
  case TS_TOK_CONTINUE: {
    advance(p);
    expect_semi(p, t.kind == TS_TOK_BREAK ? "'break'" : "'continue'");
    return new_node(
        p, t.kind == TS_TOK_BREAK ? TS_NODE_BREAK : TS_NODE_CONTINUE, t.span);
  }
  case TS_TOK_RETURN: {
    advance(p);
    ts_node *v = NULL;
    if (!check(p, TS_TOK_SEMI) && !check(p, TS_TOK_RBRACE))
      v = parse_expr(p);
    expect_semi(p, "'return'");
    return node1(p, TS_NODE_RETURN, v ? join(t.span, v->span) : t.span, v);
  }
  case TS_TOK_LBRACE: return parse_block(p);
  default: return parse_simple(p);
  }
}

/* block = '{' { stmt } '}' */
static ts_node *parse_block(parser *p) {
  ts_token open = p->tok;
  ts_node *n = new_node(p, TS_NODE_BLOCK, open.span);
  if (!check(p, TS_TOK_LBRACE)) {
    error_expected(p, "'{'");
    return n;
  }
  if (!enter(p))
    return n;
  advance(p);
  uint32_t base = p->top;
  while (!check(p, TS_TOK_RBRACE) && !check(p, TS_TOK_EOF) && !p->stop) {
    if (check(p, TS_TOK_KERNEL) || check(p, TS_TOK_FN))
      break; /* a missing '}': let the item loop take it */
    uint32_t before = p->tok.span.lo;
    ts_node *s = parse_stmt(p);
    push(p, s);
    if (p->panic)
      sync_stmt(p);
    else if (p->tok.span.lo == before && !check(p, TS_TOK_EOF))
      advance(p); /* guarantee progress */
  }
  n->span = join(open.span, p->tok.span);
  expect_close(p, TS_TOK_RBRACE, &open);
  leave(p);
  return finish(p, n, base);
}

/* ---- items
 * -------------------------------------------------------------------------------
 */

/* arg = NAME ':' [ 'frag' | 'shared' ] type
 * The scope keyword (in `op`) is a tile function's tile parameter; sema
 * reports it anywhere else. */
static ts_node *parse_arg(parser *p) {
  ts_node *name = expect_name(p, "an argument name");
  uint32_t base = p->top;
  ts_node *n = new_node(p, TS_NODE_ARG, name->span);
  n->name = name->name;
  ts_node *type = NULL;
  if (expect(p, TS_TOK_COLON, "and the argument's type")) {
    bool tile = check(p, TS_TOK_FRAG) || check(p, TS_TOK_SHARED);
    if (tile) {
      n->op = p->tok.kind;
      advance(p);
    }
    if (!tile && check(p, TS_TOK_DTYPE_T) && lookahead(p)->kind != TS_TOK_LBRACKET) {
      /* `T: dtype`: a tile function's dtype parameter (sema refuses it
       * elsewhere) */
      type = new_node(p, TS_NODE_TYPE, p->tok.span);
      type->op = TS_TOK_DTYPE_T;
      type->dtype = TS_DTYPE_COUNT;
      advance(p);
    } else {
      type = parse_type(p, false);
    }
  }
  push(p, type);
  return finish(p, n, base);
}

/* param = NAME ':' ('int' | 'float' | 'bool' | 'dtype') '=' expr */
static ts_node *parse_param(parser *p) {
  ts_node *name = expect_name(p, "a param name");
  uint32_t base = p->top;
  ts_node *n = new_node(p, TS_NODE_PARAM, name->span);
  n->name = name->name;
  ts_node *type = NULL, *value = NULL;
  if (expect(p, TS_TOK_COLON, "and the param's type"))
    type = parse_type(p, true);
  if (expect(p, TS_TOK_ASSIGN, "and a default value"))
    value = parse_expr(p);
  push(p, type);
  push(p, value);
  return finish(p, n, base);
}

/* Whether the current token is the identifier `word` (a word that is a
 * keyword only in one place, like `tune` and `require`). */
static bool at_word(parser *p, const char *word) {
  size_t n = strlen(word);
  return check(p, TS_TOK_IDENT) && p->tok.span.hi - p->tok.span.lo == n &&
         !memcmp(p->u->src.text + p->tok.span.lo, word, n);
}

/* tune_item = 'require' expr
 *           | NAME 'in' ( '[' expr {',' expr} ']' | expr '..' expr ) */
static ts_node *parse_tune_item(parser *p) {
  uint32_t base = p->top;
  if (at_word(p, "require")) {
    ts_node *n = new_node(p, TS_NODE_REQUIRE, p->tok.span);
    advance(p);
    ts_node *e = parse_expr(p);
    n->span = join(n->span, e->span);
    push(p, e);
    return finish(p, n, base);
  }
  ts_node *name = expect_name(p, "a param name or 'require'");
  ts_node *n = new_node(p, TS_NODE_TUNE, name->span);
  n->name = name->name;
  ts_node *values = NULL, *lo = NULL, *hi = NULL;
  if (expect(p, TS_TOK_IN, "after the param's name: 'BM in [32, 64]'")) {
    ts_token open = p->tok;
    if (accept(p, TS_TOK_LBRACKET)) {
      values = new_node(p, TS_NODE_LIST, open.span);
      uint32_t vb = p->top;
      do {
        if (check(p, TS_TOK_RBRACKET) || p->stop)
          break;
        push(p, parse_expr(p));
      } while (!p->panic && accept(p, TS_TOK_COMMA));
      values->span = join(open.span, p->tok.span);
      expect_close(p, TS_TOK_RBRACKET, &open);
      values = finish(p, values, vb);
    } else {
      lo = parse_expr(p);
      if (expect(p, TS_TOK_DOTDOT, "in the range 'lo..hi'"))
        hi = parse_expr(p);
    }
  }
  push(p, values);
  push(p, lo);
  push(p, hi);
  return finish(p, n, base);
}

/* After an error in an item's header: skip to its body, if there is one
 * before the next item. */
static void skip_to_body(parser *p) {
  if (!p->panic)
    return;
  while (!check(p, TS_TOK_LBRACE) && !check(p, TS_TOK_EOF) &&
         !check(p, TS_TOK_KERNEL) && !check(p, TS_TOK_FN))
    advance(p);
  p->panic = false;
}

/* A parenthesised, comma-separated list of `rule`. */
static ts_node *parse_list(parser *p, ts_node *(*rule)(parser *),
                           const char *what) {
  ts_token open = p->tok;
  ts_node *list = new_node(p, TS_NODE_LIST, open.span);
  uint32_t base = p->top;
  if (!expect(p, TS_TOK_LPAREN, what))
    return finish(p, list, base);
  if (!check(p, TS_TOK_RPAREN)) {
    do {
      if (check(p, TS_TOK_RPAREN) || p->stop)
        break;
      push(p, rule(p));
      if (p->panic)
        break;
    } while (accept(p, TS_TOK_COMMA));
  }
  list->span = join(open.span, p->tok.span);
  expect_close(p, TS_TOK_RPAREN, &open);
  return finish(p, list, base);
}

/* kernel = 'kernel' NAME '(' [arg {',' arg}] ')'
 *          { 'params' '(' param {',' param} ')'
 *          | 'grid' '(' expr {',' expr} ')' | 'threads' '(' expr ')'
 *          | 'tune' '(' tune_item {',' tune_item} ')' }
 *          block */
static ts_node *parse_kernel(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_KERNEL, kw.span);
  ts_node *name = expect_name(p, "the kernel's name");
  n->name = name->name;
  n->span = join(kw.span, name->span);
  ts_node *args = parse_list(p, parse_arg, "and the kernel's arguments");
  ts_node *params = NULL, *grid = NULL, *threads = NULL, *tune = NULL;
  while (!p->panic && (check(p, TS_TOK_PARAMS) || check(p, TS_TOK_GRID) ||
                       check(p, TS_TOK_THREADS) || at_word(p, "tune"))) {
    if (at_word(p, "tune")) {
      ts_token c = p->tok;
      advance(p);
      if (tune) {
        error_at(p, c.span, "duplicate 'tune' clause");
        check_stop(p);
      }
      ts_node *v = parse_list(p, parse_tune_item, "after 'tune'");
      v->span = join(c.span, v->span);
      if (!tune)
        tune = v;
      continue;
    }
    ts_token c = p->tok;
    advance(p);
    bool dup = (c.kind == TS_TOK_PARAMS && params) ||
               (c.kind == TS_TOK_GRID && grid) ||
               (c.kind == TS_TOK_THREADS && threads);
    if (dup) {
      char msg[64];
      snprintf(msg, sizeof msg, "duplicate '%s' clause",
               ts_tok_spelling(c.kind));
      ts_diag *d = ts_diag_error(p->u->diags, &p->u->src, c.span, "%s", msg);
      (void)d;
      check_stop(p);
    }
    ts_node *v;
    if (c.kind == TS_TOK_PARAMS) {
      v = parse_list(p, parse_param, "after 'params'");
      if (!params)
        params = v;
    } else if (c.kind == TS_TOK_GRID) {
      v = parse_list(p, parse_expr, "after 'grid'");
      v->span = join(c.span, v->span);
      if (!grid)
        grid = v;
    } else {
      ts_token open = p->tok;
      if (expect(p, TS_TOK_LPAREN, "after 'threads'")) {
        v = parse_expr(p);
        expect_close(p, TS_TOK_RPAREN, &open);
      } else {
        v = error_node(p);
      }
      if (!threads)
        threads = v;
    }
  }
  if (!params)
    params = new_node(p, TS_NODE_LIST, p->tok.span);
  ts_node *body;
  skip_to_body(p);
  if (check(p, TS_TOK_LBRACE)) {
    body = parse_block(p);
  } else {
    if (check(p, TS_TOK_IDENT)) {
      ts_diag *d = error_at(p, p->tok.span, "unknown kernel clause");
      ts_diag_hint(p->u->diags, d,
                   "the clauses are 'params(...)', 'grid(...)', "
                   "'threads(...)' and 'tune(...)'");
    } else {
      error_expected(p, "'{' to begin the kernel's body");
    }
    body = new_node(p, TS_NODE_BLOCK, p->tok.span);
  }
  uint32_t base = p->top;
  push(p, args);
  push(p, params);
  push(p, grid);
  push(p, threads);
  push(p, body);
  push(p, tune);
  return finish(p, n, base);
}

/* fn = 'fn' NAME '(' [arg {',' arg}] ')' ['->' type] block */
static ts_node *parse_fn(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_FN, kw.span);
  ts_node *name = expect_name(p, "the function's name");
  n->name = name->name;
  n->span = join(kw.span, name->span);
  ts_node *args = parse_list(p, parse_arg, "and the function's parameters");
  ts_node *result = NULL;
  if (accept(p, TS_TOK_ARROW))
    result = parse_type(p, false);
  skip_to_body(p);
  ts_node *body = parse_block(p);
  uint32_t base = p->top;
  push(p, args);
  push(p, result);
  push(p, body);
  return finish(p, n, base);
}

/* use = "use" STRING ";" */
static ts_node *parse_use(parser *p) {
  ts_token kw = p->tok;
  advance(p);
  ts_node *n = new_node(p, TS_NODE_USE, kw.span);
  if (check(p, TS_TOK_STRING)) {
    bool closed;
    n->name = ts_tok_string(&p->u->src, p->tok.span, &closed);
    n->span = join(kw.span, p->tok.span);
    advance(p);
  } else {
    error_expected(p, "the path of a .tile file, in quotes");
  }
  expect(p, TS_TOK_SEMI, "after the 'use'");
  return n;
}

/* The items of one file of the source, [lo, hi); pushed onto the stack:
 * all of them for the unit's own file, the functions only for a file it
 * uses (its kernels and uses are parsed, for their errors, and dropped). */
static void parse_items(parser *p, uint32_t lo, uint32_t hi, bool used) {
  ts_lex_range(&p->lx, lo, hi);
  p->has_ahead = false;
  p->panic = false;
  advance(p);
  uint32_t first = p->top;
  bool items = false; /* a kernel or fn seen in this file */
  while (!check(p, TS_TOK_EOF) && !p->stop) {
    ts_node *it = NULL;
    if (check(p, TS_TOK_KERNEL)) {
      it = parse_kernel(p);
      items = true;
    } else if (check(p, TS_TOK_FN)) {
      it = parse_fn(p);
      items = true;
    } else if (check(p, TS_TOK_USE)) {
      ts_span at = p->tok.span;
      it = parse_use(p);
      if (items) {
        ts_diag *d = ts_diag_error(p->u->diags, &p->u->src, at,
                                   "a 'use' after the file's kernels or "
                                   "functions");
        ts_diag_hint(p->u->diags, d,
                     "put the file's 'use' lines first, before any kernel "
                     "or fn");
        check_stop(p);
      }
    } else {
      ts_diag *d = error_expected(p, "'kernel', 'fn' or 'use'");
      if (starts_stmt(p->tok.kind) || check(p, TS_TOK_IDENT))
        ts_diag_hint(p->u->diags, d,
                     "statements belong inside a kernel's or a function's "
                     "body");
      advance(p);
    }
    if (it && (!used || it->kind == TS_NODE_FN))
      push(p, it);
    if (p->panic)
      sync_item(p);
    p->panic = false;
  }
  if (!used && p->top == first && !p->stop && p->u->diags->error_count == 0)
    error_expected(p, "'kernel' or 'fn'");
}

/* file = { use } { kernel | fn } EOF, then the functions of the files it
 * uses (each a file of the joined source) */
static ts_node *parse_file(parser *p) {
  const ts_source *src = &p->u->src;
  ts_node *file = new_node(p, TS_NODE_FILE, (ts_span){0, src->len});
  uint32_t base = p->top;
  uint32_t nf = src->files ? src->file_count : 1;
  for (uint32_t i = 0; i < nf && !p->stop; i++) {
    uint32_t lo = src->files ? src->files[i].lo : 0;
    uint32_t hi = i + 1 < nf ? src->files[i + 1].lo : src->len;
    parse_items(p, lo, hi, i > 0);
  }
  if (src->files)
    file->span.hi = src->files[1].lo;
  return finish(p, file, base);
}

bool ts_unit_parse(ts_unit *u) {
  parser p;
  memset(&p, 0, sizeof p);
  p.u = u;
  uint32_t errors_before = u->diags->error_count;
  if (!u->no_use && !ts_unit_load_uses(u))
    u->diags->nomem = true;
  ts_lex_init(&p.lx, &u->src, u->diags);
  check_stop(&p);
  u->root = parse_file(&p);
  ts_release(u->alloc, p.stack, p.cap * sizeof *p.stack);
  if (u->root == &p.dummy || u->diags->nomem)
    u->root = NULL;
  u->parsed = true;
  return u->root && u->diags->error_count == errors_before;
}
