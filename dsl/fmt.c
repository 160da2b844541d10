/* fmt.c - `tessera fmt`: the canonical layout of a .tile file. Works on the
 * token stream (comments included), so nothing the author wrote is lost:
 * indentation follows the braces (two spaces), continuation lines get two
 * more, spacing around operators and punctuation is normalised, the
 * author's line breaks are kept with at most one blank line in a row, and
 * items are separated by one blank line. Refuses files with syntax errors. */
#include "dsl/dsl.h"

#include <string.h>

typedef struct fmt {
  const ts_source *src;
  ts_buf *out;
  int depth;       /* brace depth */
  int paren;       /* ( and [ depth */
  int bracket;     /* [ depth, where ':' is a slice */
  bool line_start; /* nothing written on the current line yet */
  bool continued;  /* the current statement goes on from the previous line */
  ts_token prev;   /* last non-comment token written */
  bool have_prev;
  bool prev_unary;     /* the previous token was a unary sign */
  bool prev_was_token; /* no comment since the previous token */
  bool no_space_next;  /* after a named argument's '=' */
} fmt;

static void indent(fmt *f, int extra) {
  int n = f->depth * 2 + extra;
  for (int i = 0; i < n; i++)
    ts_buf_putc(f->out, ' ');
}

static void newline(fmt *f) {
  if (!f->line_start) {
    ts_buf_putc(f->out, '\n');
    f->line_start = true;
  }
}

/* Count the newlines between two offsets. */
static int newlines_between(const ts_source *src, uint32_t a, uint32_t b) {
  int n = 0;
  for (uint32_t i = a; i < b && i < src->len; i++)
    n += src->text[i] == '\n';
  return n;
}

static bool is_binary_op(ts_tok_kind k) {
  switch (k) {
  case TS_TOK_PLUS:
  case TS_TOK_MINUS:
  case TS_TOK_STAR:
  case TS_TOK_SLASH:
  case TS_TOK_PERCENT:
  case TS_TOK_EQ:
  case TS_TOK_NE:
  case TS_TOK_LT:
  case TS_TOK_LE:
  case TS_TOK_GT:
  case TS_TOK_GE:
  case TS_TOK_SHL:
  case TS_TOK_SHR:
  case TS_TOK_AMP:
  case TS_TOK_PIPE:
  case TS_TOK_CARET:
  case TS_TOK_ANDAND:
  case TS_TOK_OROR:
  case TS_TOK_ASSIGN:
  case TS_TOK_PLUS_ASSIGN:
  case TS_TOK_MINUS_ASSIGN:
  case TS_TOK_STAR_ASSIGN:
  case TS_TOK_SLASH_ASSIGN:
  case TS_TOK_ARROW: return true;
  default: return false;
  }
}

/* Keywords written directly before '(' with no space. */
static bool call_like_keyword(ts_tok_kind k) {
  switch (k) {
  case TS_TOK_PARAMS:
  case TS_TOK_GRID:
  case TS_TOK_THREADS:
  case TS_TOK_F32:
  case TS_TOK_F16:
  case TS_TOK_BF16:
  case TS_TOK_FP8E4M3:
  case TS_TOK_I8:
  case TS_TOK_I32:
  case TS_TOK_I64:
  case TS_TOK_BOOL: return true;
  default: return false;
  }
}

/* Whether a space goes between the previous token and `t`. */
static bool space_before(const fmt *f, const ts_token *t) {
  if (!f->have_prev || f->no_space_next)
    return false;
  ts_tok_kind p = f->prev.kind, k = t->kind;
  if (p == TS_TOK_LPAREN || p == TS_TOK_LBRACKET || p == TS_TOK_DOTDOT ||
      p == TS_TOK_TILDE || p == TS_TOK_BANG)
    return false;
  if (k == TS_TOK_COLON) /* `x: f32`, `a:b`, but `[i, :]` */
    return p == TS_TOK_COMMA;
  if (k == TS_TOK_RPAREN || k == TS_TOK_RBRACKET || k == TS_TOK_COMMA ||
      k == TS_TOK_SEMI || k == TS_TOK_DOTDOT)
    return false;
  if (p == TS_TOK_COLON) /* `x: f32` but `a:b` in brackets */
    return f->bracket == 0;
  if (k == TS_TOK_LBRACKET || k == TS_TOK_LPAREN)
    return !(p == TS_TOK_IDENT || p == TS_TOK_RBRACKET || p == TS_TOK_RPAREN ||
             call_like_keyword(p));
  return true;
}

static bool makes_unary(const fmt *f) {
  if (!f->have_prev)
    return true;
  switch (f->prev.kind) {
  case TS_TOK_LPAREN:
  case TS_TOK_LBRACKET:
  case TS_TOK_COMMA:
  case TS_TOK_COLON:
  case TS_TOK_DOTDOT:
  case TS_TOK_RETURN:
  case TS_TOK_IF:
  case TS_TOK_SEMI:
  case TS_TOK_LBRACE:
  case TS_TOK_RBRACE:
  case TS_TOK_IN:
  case TS_TOK_MINUS:
  case TS_TOK_PLUS:
  case TS_TOK_BANG:
  case TS_TOK_TILDE: return true;
  default: return is_binary_op(f->prev.kind) || f->no_space_next;
  }
}

bool ts_format(const ts_source *src, ts_diags *diags, ts_buf *out) {
  /* Syntax errors first: a file that does not parse is not reformatted. */
  ts_unit u;
  ts_status st =
      ts_unit_init(&u, diags->alloc, src->name, src->text, src->len, diags);
  if (st) {
    ts_status_free(st);
    diags->nomem = true;
    return false;
  }
  u.no_use = true; /* the layout of this file alone */
  bool ok = ts_unit_parse(&u);
  ts_unit_deinit(&u);
  if (!ok)
    return false;

  fmt f;
  memset(&f, 0, sizeof f);
  f.src = src;
  f.out = out;
  f.line_start = true;
  ts_lexer lx;
  ts_lex_init(&lx, src, diags);
  lx.keep_comments = true;
  uint32_t last_end = 0;
  ts_tok_kind before_prev = TS_TOK_EOF;
  bool first = true, need_nl = false, blank = false, after_item = false;
  for (;;) {
    ts_token t = ts_lex_next(&lx);
    if (t.kind == TS_TOK_EOF)
      break;
    bool comment = t.kind == TS_TOK_COMMENT;
    int nl = first ? 0 : newlines_between(src, last_end, t.span.lo);
    if (comment && nl == 0 && !first) {
      /* A comment at the end of a line stays there. */
      ts_buf_puts(out, "  ");
      ts_buf_append(out, src->text + t.span.lo, t.span.hi - t.span.lo);
      last_end = t.span.hi;
      if (src->text[t.span.lo + 1] == '/')
        need_nl = true;
      f.prev_was_token = false;
      continue;
    }
    bool joins_else = t.kind == TS_TOK_ELSE && f.have_prev &&
                      f.prev.kind == TS_TOK_RBRACE && f.prev_was_token;
    if (t.kind == TS_TOK_RBRACE) {
      f.depth = f.depth > 0 ? f.depth - 1 : 0;
      need_nl = true;
    }
    if (joins_else) {
      need_nl = false;
    } else if (nl > 0) {
      need_nl = true;
      if (nl > 1)
        blank = true;
    }
    if (after_item) {
      need_nl = true;
      blank = true;
      after_item = false;
    }
    if (need_nl)
      newline(&f);
    need_nl = false;
    bool unary =
        (t.kind == TS_TOK_MINUS || t.kind == TS_TOK_PLUS) && makes_unary(&f);
    bool named = t.kind == TS_TOK_ASSIGN && f.paren > 0 && f.bracket == 0 &&
                 f.have_prev && f.prev.kind == TS_TOK_IDENT &&
                 (before_prev == TS_TOK_LPAREN || before_prev == TS_TOK_COMMA);
    if (f.line_start) {
      if (blank && !first)
        ts_buf_putc(out, '\n');
      blank = false;
      int extra = 0;
      if (t.kind != TS_TOK_LBRACE && t.kind != TS_TOK_RBRACE)
        extra = f.paren > 0 ? 4 : f.continued ? 2 : 0;
      indent(&f, extra);
    } else if (comment) {
      ts_buf_puts(out, "  ");
    } else if (!named && space_before(&f, &t) &&
               !(f.prev_unary && f.prev_was_token)) {
      ts_buf_putc(out, ' ');
    }
    ts_buf_append(out, src->text + t.span.lo, t.span.hi - t.span.lo);
    f.line_start = false;
    last_end = t.span.hi;
    first = false;
    if (comment) {
      if (src->text[t.span.lo + 1] == '/')
        need_nl = true;
      f.prev_was_token = false;
      continue;
    }
    before_prev = f.have_prev ? f.prev.kind : TS_TOK_EOF;
    f.prev = t;
    f.have_prev = true;
    f.prev_was_token = true;
    f.prev_unary = unary;
    f.no_space_next = named;
    switch (t.kind) {
    case TS_TOK_LPAREN: f.paren++; break;
    case TS_TOK_LBRACKET:
      f.paren++;
      f.bracket++;
      break;
    case TS_TOK_RPAREN:
      if (f.paren)
        f.paren--;
      break;
    case TS_TOK_RBRACKET:
      if (f.paren)
        f.paren--;
      if (f.bracket)
        f.bracket--;
      break;
    case TS_TOK_LBRACE:
      f.depth++;
      f.continued = false;
      need_nl = true;
      break;
    case TS_TOK_RBRACE:
      f.continued = false;
      need_nl = true;
      after_item = f.depth == 0;
      break;
    case TS_TOK_SEMI:
      if (f.paren == 0) {
        f.continued = false;
        need_nl = true;
      }
      break;
    default: f.continued = true; break;
    }
  }
  newline(&f);
  return true;
}
