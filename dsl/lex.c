/* lex.c - the .tile lexer. Turns bytes into tokens on demand; reports bad
 * bytes, unterminated comments and strings, malformed and overflowing
 * numbers, and over-long identifiers, each once, and keeps going. */
#include "dsl/dsl.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ts_lex_init(ts_lexer *lx, const ts_source *src, ts_diags *diags) {
  memset(lx, 0, sizeof *lx);
  lx->src = src;
  lx->diags = diags;
  lx->end = src->len;
}

void ts_lex_range(ts_lexer *lx, uint32_t lo, uint32_t hi) {
  lx->pos = lo;
  lx->end = hi;
}

ts_str ts_tok_string(const ts_source *src, ts_span span, bool *closed) {
  uint32_t len = span.hi - span.lo;
  *closed = len >= 2 && src->text[span.hi - 1] == '"';
  return (ts_str){src->text + span.lo + 1, len - 1 - (*closed ? 1 : 0)};
}

static int peek(const ts_lexer *lx, uint32_t ahead) {
  uint32_t p = lx->pos + ahead;
  return p < lx->end ? (unsigned char)lx->src->text[p] : -1;
}

static bool is_ident_start(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_ident_char(int c) { return is_ident_start(c) || is_digit(c); }
static bool is_space(int c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
         c == '\v';
}

static ts_span span(uint32_t lo, uint32_t hi) { return (ts_span){lo, hi}; }

static ts_diag *error(ts_lexer *lx, uint32_t lo, uint32_t hi, const char *fmt,
                      const char *arg) {
  return ts_diag_error(lx->diags, lx->src, span(lo, hi), fmt, arg);
}

static ts_token make(ts_tok_kind k, uint32_t lo, uint32_t hi) {
  ts_token t;
  memset(&t, 0, sizeof t);
  t.kind = k;
  t.span = span(lo, hi);
  return t;
}

static const struct {
  const char *text;
  ts_tok_kind kind;
} keywords[] = {
#define TOK(name, text, cls) {text, TS_TOK_##name},
#include "dsl/tokens.def"
#undef TOK
};

static ts_tok_kind keyword_kind(const char *p, size_t len) {
  for (size_t i = 0; i < TS_ARRAY_COUNT(keywords); i++)
    if (ts_tok_is_keyword(keywords[i].kind) &&
        strlen(keywords[i].text) == len &&
        memcmp(keywords[i].text, p, len) == 0)
      return keywords[i].kind;
  return TS_TOK_IDENT;
}

/* Skips whitespace and comments; returns a comment token when asked to keep
 * them, else TS_TOK_EOF meaning "nothing special here". */
static bool skip_trivia(ts_lexer *lx, ts_token *out) {
  for (;;) {
    int c = peek(lx, 0);
    if (is_space(c)) {
      lx->pos++;
      continue;
    }
    if (c == '/' && peek(lx, 1) == '/') {
      uint32_t lo = lx->pos;
      while (peek(lx, 0) != -1 && peek(lx, 0) != '\n')
        lx->pos++;
      uint32_t hi = lx->pos;
      if (hi > lo && lx->src->text[hi - 1] == '\r')
        hi--;
      if (lx->keep_comments) {
        *out = make(TS_TOK_COMMENT, lo, hi);
        return true;
      }
      continue;
    }
    if (c == '/' && peek(lx, 1) == '*') {
      uint32_t lo = lx->pos;
      lx->pos += 2;
      bool closed = false;
      while (peek(lx, 0) != -1) {
        if (peek(lx, 0) == '*' && peek(lx, 1) == '/') {
          lx->pos += 2;
          closed = true;
          break;
        }
        lx->pos++;
      }
      if (!closed) {
        ts_diag *d = error(lx, lo, lo + 2, "unterminated comment%s", "");
        ts_diag_hint(lx->diags, d, "close it with '*/'");
        if (lx->keep_comments) {
          *out = make(TS_TOK_COMMENT, lo, lx->pos);
          return true;
        }
        return false; /* the rest of the file was the comment */
      }
      if (lx->keep_comments) {
        *out = make(TS_TOK_COMMENT, lo, lx->pos);
        return true;
      }
      continue;
    }
    return false;
  }
}

static ts_token lex_number(ts_lexer *lx) {
  uint32_t lo = lx->pos;
  const char *text = lx->src->text;
  bool is_float = false, hex = false;
  if (peek(lx, 0) == '0' && (peek(lx, 1) == 'x' || peek(lx, 1) == 'X')) {
    hex = true;
    lx->pos += 2;
    while (isxdigit(peek(lx, 0)) || peek(lx, 0) == '_')
      lx->pos++;
  } else {
    while (is_digit(peek(lx, 0)) || peek(lx, 0) == '_')
      lx->pos++;
    if (peek(lx, 0) == '.' && peek(lx, 1) != '.') {
      is_float = true;
      lx->pos++;
      while (is_digit(peek(lx, 0)) || peek(lx, 0) == '_')
        lx->pos++;
    }
    if (peek(lx, 0) == 'e' || peek(lx, 0) == 'E') {
      uint32_t save = lx->pos;
      lx->pos++;
      if (peek(lx, 0) == '+' || peek(lx, 0) == '-')
        lx->pos++;
      if (is_digit(peek(lx, 0))) {
        is_float = true;
        while (is_digit(peek(lx, 0)))
          lx->pos++;
      } else {
        lx->pos = save;
      }
    }
  }
  /* A letter or digit right after a number is a malformed literal. */
  if (is_ident_char(peek(lx, 0))) {
    uint32_t s = lx->pos;
    while (is_ident_char(peek(lx, 0)))
      lx->pos++;
    ts_buf b;
    ts_buf_init(&b, lx->diags->alloc);
    ts_buf_put_quoted(&b, text + s, lx->pos - s, 32);
    error(lx, lo, lx->pos, "invalid suffix '%s' on number", b.ptr ? b.ptr : "");
    ts_buf_deinit(&b);
    /* Reported; an integer token lets the parser go on undisturbed. */
    return make(TS_TOK_INT, lo, lx->pos);
  }
  /* Copy without '_' separators. */
  uint32_t len = lx->pos - lo;
  char small[128];
  char *digits = len < sizeof small ? small : malloc(len + 1);
  if (!digits) {
    lx->diags->nomem = true;
    return make(TS_TOK_ERROR, lo, lx->pos);
  }
  uint32_t n = 0;
  for (uint32_t i = lo; i < lx->pos; i++)
    if (text[i] != '_')
      digits[n++] = text[i];
  digits[n] = 0;
  ts_token t = make(is_float ? TS_TOK_FLOAT : TS_TOK_INT, lo, lx->pos);
  ts_buf b;
  ts_buf_init(&b, lx->diags->alloc);
  ts_buf_put_quoted(&b, text + lo, len, 32);
  const char *shown = b.ptr ? b.ptr : "";
  if (hex && n == 2) {
    error(lx, lo, lx->pos, "hexadecimal literal '%s' has no digits", shown);
  } else if (is_float) {
    errno = 0;
    t.fval = strtod(digits, NULL);
    if (errno == ERANGE && isinf(t.fval)) {
      error(lx, lo, lx->pos, "float literal '%s' is out of range", shown);
    }
  } else {
    errno = 0;
    unsigned long long v = strtoull(digits, NULL, hex ? 16 : 10);
    if (errno == ERANGE || v > (unsigned long long)INT64_MAX) {
      ts_diag *d = error(lx, lo, lx->pos,
                         "integer literal '%s' does not fit in 64 bits", shown);
      ts_diag_hint(lx->diags, d, "the largest integer is 9223372036854775807");
    } else {
      t.ival = (int64_t)v;
    }
  }
  ts_buf_deinit(&b);
  if (digits != small)
    free(digits);
  return t;
}

static ts_token lex_string(ts_lexer *lx) {
  uint32_t lo = lx->pos++;
  for (;;) {
    int c = peek(lx, 0);
    if (c == -1 || c == '\n' || c == '\r') {
      ts_diag *d = error(lx, lo, lo + 1, "unterminated string%s", "");
      ts_diag_hint(lx->diags, d, "close it with '\"' on the same line");
      return make(TS_TOK_STRING, lo, lx->pos);
    }
    lx->pos++;
    if (c == '"')
      return make(TS_TOK_STRING, lo, lx->pos);
    if (c == '\\') {
      int e = peek(lx, 0);
      if (e == 'n' || e == 't' || e == '\\' || e == '"') {
        lx->pos++;
      } else if (e != -1 && e != '\n') {
        char bad[8];
        snprintf(bad, sizeof bad, "\\%c", e >= 0x20 && e < 0x7f ? e : '?');
        ts_diag *d = error(lx, lx->pos - 1, lx->pos + 1,
                           "unknown escape '%s' in string", bad);
        ts_diag_hint(lx->diags, d, "the escapes are \\n \\t \\\\ \\\"");
        lx->pos++;
      }
    }
  }
}

/* A run of bytes that cannot start a token. */
static ts_token lex_bad(ts_lexer *lx) {
  uint32_t lo = lx->pos;
  const char *text = lx->src->text;
  int c = peek(lx, 0);
  size_t n = ts_utf8_char_len(text + lx->pos, lx->end - lx->pos);
  bool invalid_utf8 = c >= 0x80 && n == 1;
  lx->pos += (uint32_t)n;
  /* Swallow the rest of a run of the same sort of junk, so that a binary
   * file gives one error per run, not one per byte. */
  while (lx->pos < lx->end) {
    int d = peek(lx, 0);
    if (is_space(d) || is_ident_char(d) || (d >= 0x20 && d < 0x7f))
      break;
    lx->pos +=
        (uint32_t)ts_utf8_char_len(text + lx->pos, lx->end - lx->pos);
  }
  char what[32];
  if (c == 0)
    snprintf(what, sizeof what, "NUL byte");
  else if (invalid_utf8)
    snprintf(what, sizeof what, "byte 0x%02x (not UTF-8)", c);
  else if (c < 0x20 || c == 0x7f)
    snprintf(what, sizeof what, "control byte 0x%02x", c);
  else if (n > 1) {
    snprintf(what, sizeof what, "'%.*s'", (int)n, text + lo);
  } else
    snprintf(what, sizeof what, "'%c'", c);
  ts_diag *dg = ts_diag_error(lx->diags, lx->src, span(lo, lo + (uint32_t)n),
                              "unexpected %s", what);
  if (lx->pos - lo > n)
    ts_diag_note(lx->diags, dg, lx->src, span(lo, lx->pos),
                 "%u more byte%s that cannot start a token follow%s",
                 (unsigned)(lx->pos - lo - n), lx->pos - lo - n == 1 ? "" : "s",
                 lx->pos - lo - n == 1 ? "s" : "");
  return make(TS_TOK_ERROR, lo, lx->pos);
}

ts_token ts_lex_next(ts_lexer *lx) {
  ts_token t;
  if (skip_trivia(lx, &t))
    return t;
  uint32_t lo = lx->pos;
  int c = peek(lx, 0);
  if (c == -1)
    return make(TS_TOK_EOF, lx->end, lx->end);
  if (is_ident_start(c)) {
    while (is_ident_char(peek(lx, 0)))
      lx->pos++;
    uint32_t len = lx->pos - lo;
    if (len > TS_MAX_IDENT_LEN) {
      char n[32];
      snprintf(n, sizeof n, "%u", len);
      ts_diag *d =
          error(lx, lo, lo + 1, "identifier is too long (%s characters)", n);
      ts_diag_hint(lx->diags, d, "names are at most 256 characters");
      return make(TS_TOK_IDENT, lo, lx->pos); /* reported; parse on */
    }
    return make(keyword_kind(lx->src->text + lo, len), lo, lx->pos);
  }
  if (is_digit(c))
    return lex_number(lx);
  if (c == '"')
    return lex_string(lx);
  int c1 = peek(lx, 1);
  ts_tok_kind k = TS_TOK_ERROR;
  uint32_t len = 1;
#define TWO(a, b, kind)                                                        \
  if (c == a && c1 == b) {                                                     \
    k = kind;                                                                  \
    len = 2;                                                                   \
  } else
  TWO('.', '.', TS_TOK_DOTDOT)
  TWO('-', '>', TS_TOK_ARROW)
  TWO('+', '=', TS_TOK_PLUS_ASSIGN)
  TWO('-', '=', TS_TOK_MINUS_ASSIGN)
  TWO('*', '=', TS_TOK_STAR_ASSIGN)
  TWO('/', '=', TS_TOK_SLASH_ASSIGN)
  TWO('=', '=', TS_TOK_EQ)
  TWO('!', '=', TS_TOK_NE)
  TWO('<', '=', TS_TOK_LE)
  TWO('>', '=', TS_TOK_GE)
  TWO('<', '<', TS_TOK_SHL)
  TWO('>', '>', TS_TOK_SHR)
  TWO('&', '&', TS_TOK_ANDAND)
  TWO('|', '|', TS_TOK_OROR) {
    switch (c) {
    case '(': k = TS_TOK_LPAREN; break;
    case ')': k = TS_TOK_RPAREN; break;
    case '[': k = TS_TOK_LBRACKET; break;
    case ']': k = TS_TOK_RBRACKET; break;
    case '{': k = TS_TOK_LBRACE; break;
    case '}': k = TS_TOK_RBRACE; break;
    case ',': k = TS_TOK_COMMA; break;
    case ';': k = TS_TOK_SEMI; break;
    case ':': k = TS_TOK_COLON; break;
    case '=': k = TS_TOK_ASSIGN; break;
    case '+': k = TS_TOK_PLUS; break;
    case '-': k = TS_TOK_MINUS; break;
    case '*': k = TS_TOK_STAR; break;
    case '/': k = TS_TOK_SLASH; break;
    case '%': k = TS_TOK_PERCENT; break;
    case '<': k = TS_TOK_LT; break;
    case '>': k = TS_TOK_GT; break;
    case '&': k = TS_TOK_AMP; break;
    case '|': k = TS_TOK_PIPE; break;
    case '^': k = TS_TOK_CARET; break;
    case '~': k = TS_TOK_TILDE; break;
    case '!': k = TS_TOK_BANG; break;
    default: break;
    }
  }
#undef TWO
  if (k == TS_TOK_ERROR)
    return lex_bad(lx);
  lx->pos += len;
  return make(k, lo, lx->pos);
}
