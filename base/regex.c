/* regex.c - a small backtracking regular-expression matcher over Unicode
 * code points, for the pre-tokenizer patterns of tokenizer.json files
 * (GPT-2, Llama 3, DeepSeek V3 and their kin). Leftmost match, alternatives
 * tried in order (Perl / Oniguruma semantics, as HF tokenizers runs them).
 *
 * Supported: literals; . ^ $; classes [...] with ranges, negation and the
 * escapes below; \s \S \d \D \w \W \p{X} \P{X} \pX (general categories,
 * base/unicode.c); \r \n \t \f \v \0 \xHH \x{H..} \uHHHH and escaped
 * punctuation; groups ( ) (?: ) (?i: ) (?-i: ) and (?i) to the group's end;
 * lookahead (?= ) (?! ); quantifiers * + ? {n} {n,} {n,m}, greedy or lazy.
 * Case-insensitive matching folds ASCII letters only. Anything else (look
 * behind, backreferences, possessive quantifiers, nested classes) is refused
 * at compile time with its offset in the pattern. */
#include "base/base.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* N_SET: alternatives that are each one character ((?:\p{L}|\p{M}|x)),
 * matched as one character, so that a repeat of them loops, not recurses */
typedef enum kind { N_CHAR, N_CLASS, N_ANY, N_SET, N_ALT, N_REPEAT, N_LOOK, N_BOL, N_EOL } kind;
typedef enum item_kind { I_RANGE, I_CATS, I_SPACE, I_WORD } item_kind;

typedef struct item {
  item_kind kind;
  bool neg; /* \S \W \P{X} */
  uint32_t lo, hi, mask;
} item;

typedef struct node node;
struct node {
  kind kind;
  node *next; /* the next node of its sequence */
  bool icase, neg, lazy;
  uint32_t cp;                 /* N_CHAR */
  item *items;                 /* N_CLASS */
  size_t item_count;
  node **alts;                 /* N_ALT: sequence heads (NULL: empty); N_SET: nodes */
  size_t alt_count;
  node *child;                 /* N_REPEAT, N_LOOK: a sequence head */
  uint32_t min, max;           /* N_REPEAT */
  uint64_t ascii[2];           /* N_CHAR, N_CLASS, N_ANY: which of 0-127 match */
  bool ascii_ready;
  struct first *firsts;        /* N_ALT: what each branch can start with */
};

/* The code points a sequence's match can start with: ASCII ones by bit,
 * any non-ASCII one, or anything (it can match empty). A superset. */
typedef struct first {
  uint64_t ascii[2];
  bool other, always;
} first;

struct ts_regex {
  ts_arena arena;
  node *root;
};

enum { MAX_ITEMS = 256, MAX_DEPTH = 64, MATCH_DEPTH = 10000 };

static bool one_char(kind k) { return k == N_CHAR || k == N_CLASS || k == N_ANY || k == N_SET; }

/* ---- compiling -------------------------------------------------------------- */

typedef struct parser {
  const char *src, *p, *end;
  ts_arena *arena;
  const char *err; /* first error, with err_at */
  size_t err_at;
  int depth;
} parser;

static void fail(parser *ps, const char *what) {
  if (!ps->err) {
    ps->err = what;
    ps->err_at = (size_t)(ps->p - ps->src);
  }
}

static node *new_node(parser *ps, kind k, bool icase) {
  node *n = ts_arena_alloc(ps->arena, sizeof *n);
  if (!n) {
    fail(ps, "out of memory");
    return NULL;
  }
  n->kind = k;
  n->icase = icase;
  return n;
}

static bool at(parser *ps, char c) { return ps->p < ps->end && *ps->p == c; }

static uint32_t next_cp(parser *ps) {
  uint32_t cp;
  size_t n = ts_utf8_decode(ps->p, (size_t)(ps->end - ps->p), &cp);
  if (n == 0) {
    fail(ps, "invalid UTF-8");
    ps->p = ps->end;
    return 0;
  }
  ps->p += n;
  return cp;
}

static uint32_t hex_digits(parser *ps, size_t count, bool braced) {
  uint32_t v = 0;
  size_t n = 0;
  while (ps->p < ps->end && (braced || n < count)) {
    char c = *ps->p;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      break;
    v = v * 16 + (uint32_t)d;
    ps->p++;
    if (++n > 8 || v > 0x10FFFF) {
      fail(ps, "code point out of range");
      return 0;
    }
  }
  if (n == 0 || (!braced && n != count))
    fail(ps, "bad hex escape");
  return v;
}

/* An escape after '\'. A single code point (*out_cp, returns true) or a
 * class item (*out_item, returns false). */
static bool parse_escape(parser *ps, uint32_t *out_cp, item *out_item) {
  if (ps->p >= ps->end) {
    fail(ps, "pattern ends in '\\'");
    return true;
  }
  char c = *ps->p++;
  memset(out_item, 0, sizeof *out_item);
  switch (c) {
  case 'n': *out_cp = '\n'; return true;
  case 'r': *out_cp = '\r'; return true;
  case 't': *out_cp = '\t'; return true;
  case 'f': *out_cp = '\f'; return true;
  case 'v': *out_cp = '\v'; return true;
  case 'a': *out_cp = 7; return true;
  case 'e': *out_cp = 27; return true;
  case '0': *out_cp = 0; return true;
  case 'x':
    if (at(ps, '{')) {
      ps->p++;
      *out_cp = hex_digits(ps, 0, true);
      if (!at(ps, '}'))
        fail(ps, "expected '}'");
      else
        ps->p++;
    } else {
      *out_cp = hex_digits(ps, 2, false);
    }
    return true;
  case 'u': *out_cp = hex_digits(ps, 4, false); return true;
  case 's': case 'S': out_item->kind = I_SPACE; out_item->neg = c == 'S'; return false;
  case 'w': case 'W': out_item->kind = I_WORD; out_item->neg = c == 'W'; return false;
  case 'd': case 'D':
    out_item->kind = I_CATS;
    out_item->mask = 1u << TS_UCAT_ND;
    out_item->neg = c == 'D';
    return false;
  case 'p': case 'P': {
    const char *name = ps->p;
    size_t len = 1;
    if (ps->p >= ps->end) {
      fail(ps, "pattern ends in '\\p'");
      return true;
    }
    if (at(ps, '{')) {
      name = ++ps->p;
      while (ps->p < ps->end && *ps->p != '}')
        ps->p++;
      if (ps->p >= ps->end) {
        fail(ps, "expected '}' after \\p{");
        return true;
      }
      len = (size_t)(ps->p - name);
    }
    ps->p++;
    bool neg = c == 'P';
    if (len > 1 && name[0] == '^') { /* \p{^L} */
      neg = !neg;
      name++;
      len--;
    }
    out_item->kind = I_CATS;
    out_item->neg = neg;
    out_item->mask = ts_unicode_category_mask(name, len);
    if (!out_item->mask) {
      ps->p = name;
      fail(ps, "unknown Unicode category");
    }
    return false;
  }
  default:
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
      ps->p--;
      fail(ps, "unsupported escape");
      return true;
    }
    ps->p--;
    *out_cp = next_cp(ps); /* escaped punctuation: itself */
    return true;
  }
}

/* class := '[' '^'? (item | cp ('-' cp)?)+ ']' */
static node *parse_class(parser *ps, bool icase) {
  item items[MAX_ITEMS];
  size_t count = 0;
  node *n = new_node(ps, N_CLASS, icase);
  if (!n)
    return NULL;
  if (at(ps, '^')) {
    n->neg = true;
    ps->p++;
  }
  bool first = true;
  while (!ps->err) {
    if (ps->p >= ps->end) {
      fail(ps, "unterminated class");
      break;
    }
    if (at(ps, ']') && !first) {
      ps->p++;
      break;
    }
    first = false;
    if (count == MAX_ITEMS) {
      fail(ps, "class too large");
      break;
    }
    item it = {I_RANGE, false, 0, 0, 0};
    uint32_t cp = 0;
    if (at(ps, '[')) {
      fail(ps, "nested classes are not supported");
      break;
    }
    bool single = true;
    if (at(ps, '\\')) {
      ps->p++;
      single = parse_escape(ps, &cp, &it);
    } else {
      cp = next_cp(ps);
    }
    if (single) {
      it.lo = it.hi = cp;
      if (at(ps, '-') && ps->p + 1 < ps->end && ps->p[1] != ']') {
        ps->p++;
        uint32_t hi = 0;
        item other;
        bool hi_single = true;
        if (at(ps, '\\')) {
          ps->p++;
          hi_single = parse_escape(ps, &hi, &other);
        } else {
          hi = next_cp(ps);
        }
        if (!hi_single || hi < cp) {
          fail(ps, "bad range in class");
          break;
        }
        it.hi = hi;
      }
    }
    items[count++] = it;
  }
  n->items = ts_arena_alloc(ps->arena, (count ? count : 1) * sizeof *items);
  if (!n->items) {
    fail(ps, "out of memory");
    return NULL;
  }
  memcpy(n->items, items, count * sizeof *items);
  n->item_count = count;
  return n;
}

static node *parse_alt(parser *ps, bool icase);

/* quantifier := ('*' | '+' | '?' | '{' n (',' m?)? '}') '?'? */
static node *parse_quantifier(parser *ps, node *atom) {
  uint32_t min, max;
  if (at(ps, '*') || at(ps, '+') || at(ps, '?')) {
    char c = *ps->p++;
    min = c == '+';
    max = c == '?' ? 1 : UINT32_MAX;
  } else if (at(ps, '{') && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9') {
    ps->p++;
    uint64_t a = 0, b;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && a < 100000)
      a = a * 10 + (uint64_t)(*ps->p++ - '0');
    b = a;
    if (at(ps, ',')) {
      ps->p++;
      if (at(ps, '}')) {
        b = UINT32_MAX;
      } else {
        b = 0;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && b < 100000)
          b = b * 10 + (uint64_t)(*ps->p++ - '0');
      }
    }
    if (!at(ps, '}') || b < a || a >= 100000) {
      fail(ps, "bad {n,m} quantifier");
      return atom;
    }
    ps->p++;
    min = (uint32_t)a;
    max = (uint32_t)b;
  } else {
    return atom;
  }
  node *r = new_node(ps, N_REPEAT, false);
  if (!r)
    return atom;
  r->child = atom;
  r->min = min;
  r->max = max;
  if (at(ps, '?')) {
    r->lazy = true;
    ps->p++;
  } else if (at(ps, '+')) {
    fail(ps, "possessive quantifiers are not supported");
  }
  if (atom->kind == N_BOL || atom->kind == N_EOL || atom->kind == N_LOOK)
    fail(ps, "nothing to repeat");
  return r;
}

/* atom := '(' group ')' | class | '.' | '^' | '$' | escape | cp */
static node *parse_atom(parser *ps, bool *icase) {
  char c = *ps->p;
  if (c == '(') {
    ps->p++;
    bool inner = *icase, look = false, neg = false;
    if (at(ps, '?')) {
      ps->p++;
      if (at(ps, ':')) {
        ps->p++;
      } else if (at(ps, '=') || at(ps, '!')) {
        look = true;
        neg = *ps->p++ == '!';
      } else if (at(ps, 'i') || at(ps, '-')) {
        bool on = at(ps, 'i');
        /* (?-i: the flag after the '-', which may be the pattern's end */
        if (!on && !(ps->end - ps->p >= 2 && ps->p[1] == 'i')) {
          ps->p++;
          fail(ps, "unsupported group flag");
          return NULL;
        }
        ps->p += on ? 1 : 2;
        inner = on;
        if (at(ps, ')')) { /* (?i): the rest of the enclosing group */
          ps->p++;
          *icase = on;
          return NULL;
        }
        if (!at(ps, ':')) {
          fail(ps, "unsupported group flag");
          return NULL;
        }
        ps->p++;
      } else {
        fail(ps, "unsupported group (look-behind, named or atomic)");
        return NULL;
      }
    }
    node *body = parse_alt(ps, inner);
    if (!at(ps, ')')) {
      fail(ps, "expected ')'");
      return NULL;
    }
    ps->p++;
    if (!look)
      return body;
    node *n = new_node(ps, N_LOOK, false);
    if (n) {
      n->child = body;
      n->neg = neg;
    }
    return n;
  }
  if (c == '[') {
    ps->p++;
    return parse_class(ps, *icase);
  }
  if (c == '*' || c == '+' || c == '?' || c == '{') {
    if (c != '{' || (ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9')) {
      fail(ps, "nothing to repeat");
      return NULL;
    }
  }
  ps->p++;
  if (c == '.')
    return new_node(ps, N_ANY, false);
  if (c == '^')
    return new_node(ps, N_BOL, false);
  if (c == '$')
    return new_node(ps, N_EOL, false);
  uint32_t cp;
  item it;
  bool single = true;
  if (c == '\\') {
    single = parse_escape(ps, &cp, &it);
  } else {
    ps->p--;
    cp = next_cp(ps);
  }
  if (single) {
    node *n = new_node(ps, N_CHAR, *icase);
    if (n)
      n->cp = cp;
    return n;
  }
  node *n = new_node(ps, N_CLASS, *icase);
  if (n) {
    n->items = ts_arena_alloc(ps->arena, sizeof it);
    if (!n->items) {
      fail(ps, "out of memory");
      return NULL;
    }
    n->items[0] = it;
    n->item_count = 1;
  }
  return n;
}

/* seq := (atom quantifier?)*   (a linked list through `next`; NULL: empty) */
static node *parse_seq(parser *ps, bool icase) {
  node *head = NULL, *tail = NULL;
  while (!ps->err && ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
    node *a = parse_atom(ps, &icase);
    if (!a)
      continue; /* an error, or a (?i) flag */
    a = parse_quantifier(ps, a);
    if (tail)
      tail->next = a;
    else
      head = a;
    tail = a;
  }
  return head;
}

/* alt := seq ('|' seq)*   (always an N_ALT node) */
static node *parse_alt(parser *ps, bool icase) {
  if (++ps->depth > MAX_DEPTH) {
    fail(ps, "pattern nested too deep");
    return NULL;
  }
  node *branches[MAX_ITEMS];
  size_t count = 0;
  for (;;) {
    if (count == MAX_ITEMS) {
      fail(ps, "too many alternatives");
      break;
    }
    branches[count++] = parse_seq(ps, icase);
    if (ps->err || !at(ps, '|'))
      break;
    ps->p++;
  }
  ps->depth--;
  bool set = count > 1;
  for (size_t i = 0; i < count && set; i++)
    set = branches[i] && !branches[i]->next && one_char(branches[i]->kind);
  node *n = new_node(ps, set ? N_SET : N_ALT, false);
  if (!n)
    return NULL;
  n->alts = ts_arena_alloc(ps->arena, count * sizeof *branches);
  if (!n->alts) {
    fail(ps, "out of memory");
    return NULL;
  }
  memcpy(n->alts, branches, count * sizeof *branches);
  n->alt_count = count;
  return n;
}

static bool test_one(const node *n, uint32_t c);

/* Each single-character node's answers for ASCII, computed once (most text
 * is ASCII, and a class's items are otherwise tried one by one). */
static void fill_ascii(node *n) {
  for (; n; n = n->next) {
    if (one_char(n->kind)) {
      for (uint32_t c = 0; c < 128; c++)
        if (test_one(n, c))
          n->ascii[c >> 6] |= 1ull << (c & 63);
      n->ascii_ready = true;
    }
    for (size_t i = 0; i < n->alt_count; i++)
      fill_ascii(n->alts[i]);
    if (n->child)
      fill_ascii(n->child);
  }
}

static void first_of(const node *n, first *f);

/* A sequence from n on: its nodes' starts while the ones before can be
 * empty. */
static void first_seq(const node *n, first *f) {
  *f = (first){{0, 0}, false, true};
  for (; n; n = n->next) {
    first g;
    first_of(n, &g);
    f->ascii[0] |= g.ascii[0];
    f->ascii[1] |= g.ascii[1];
    f->other |= g.other;
    if (!g.always)
      return (void)(f->always = false);
  }
}

/* One node (its `next` not followed); always = it can match empty. */
static void first_of(const node *n, first *f) {
  *f = (first){{0, 0}, false, false};
  switch (n->kind) {
  case N_CHAR:
  case N_CLASS:
  case N_ANY:
  case N_SET:
    f->ascii[0] = n->ascii[0];
    f->ascii[1] = n->ascii[1];
    f->other = n->kind != N_CHAR || n->cp >= 128;
    return;
  case N_REPEAT:
    first_seq(n->child, f);
    f->always |= n->min == 0;
    return;
  case N_ALT:
    for (size_t i = 0; i < n->alt_count; i++) {
      first g;
      first_seq(n->alts[i], &g);
      f->ascii[0] |= g.ascii[0];
      f->ascii[1] |= g.ascii[1];
      f->other |= g.other;
      f->always |= g.always;
    }
    return;
  default: /* zero-width: look-ahead, ^, $ */
    f->always = true;
    return;
  }
}

/* Each alternation's branches' first sets (after fill_ascii). */
static bool fill_firsts(ts_arena *arena, node *n) {
  for (; n; n = n->next) {
    if (n->kind == N_ALT) {
      n->firsts = ts_arena_alloc(arena, n->alt_count * sizeof *n->firsts);
      if (!n->firsts)
        return false;
      for (size_t i = 0; i < n->alt_count; i++) {
        first_seq(n->alts[i], &n->firsts[i]);
        if (!fill_firsts(arena, n->alts[i]))
          return false;
      }
    }
    if (n->child && !fill_firsts(arena, n->child))
      return false;
  }
  return true;
}

ts_status ts_regex_compile(const char *pattern, size_t len, ts_regex **out) {
  ts_regex *r = calloc(1, sizeof *r);
  if (!r)
    return ts_status_nomem();
  ts_arena_init(&r->arena, ts_allocator_system());
  parser ps = {pattern, pattern, pattern + len, &r->arena, NULL, 0, 0};
  r->root = parse_alt(&ps, false);
  if (!ps.err) {
    fill_ascii(r->root);
    if (!fill_firsts(&r->arena, r->root))
      fail(&ps, "out of memory");
  }
  if (!ps.err && ps.p < ps.end)
    fail(&ps, "unbalanced ')'");
  if (!ps.err && r->arena.failed)
    fail(&ps, "out of memory");
  if (ps.err) {
    ts_buf b;
    ts_buf_init(&b, ts_allocator_system());
    ts_buf_put_quoted(&b, pattern, len, 120);
    ts_status s = ts_status_make(TS_ERR_INVALID, "regex '%s': %s at offset %zu", b.ptr ? b.ptr : "",
                                 ps.err, ps.err_at);
    ts_buf_deinit(&b);
    ts_regex_destroy(r);
    return s;
  }
  *out = r;
  return NULL;
}

void ts_regex_destroy(ts_regex *r) {
  if (!r)
    return;
  ts_arena_deinit(&r->arena);
  free(r);
}

/* ---- matching ----------------------------------------------------------------- */

static uint32_t fold(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static bool test_item(const item *it, uint32_t c, bool icase) {
  bool in;
  switch (it->kind) {
  case I_RANGE:
    in = c >= it->lo && c <= it->hi;
    if (!in && icase && c < 128) {
      uint32_t other = c >= 'a' && c <= 'z' ? c - 32 : fold(c);
      in = other >= it->lo && other <= it->hi;
    }
    return in;
  case I_CATS: in = (it->mask >> ts_unicode_category(c)) & 1; break;
  case I_SPACE: in = ts_unicode_is_space(c); break;
  default: { /* \w: letters, marks, decimal digits, connector punctuation */
    ts_ucat k = ts_unicode_category(c);
    in = k <= TS_UCAT_ME || k == TS_UCAT_ND || k == TS_UCAT_PC;
  }
  }
  return in != it->neg;
}

/* One code point against a single-character node. */
static bool test_one(const node *n, uint32_t c) {
  if (c < 128 && n->ascii_ready)
    return (n->ascii[c >> 6] >> (c & 63)) & 1;
  if (n->kind == N_CHAR)
    return n->icase ? fold(c) == fold(n->cp) : c == n->cp;
  if (n->kind == N_ANY)
    return c != '\n';
  if (n->kind == N_SET) {
    for (size_t i = 0; i < n->alt_count; i++)
      if (test_one(n->alts[i], c))
        return true;
    return false;
  }
  bool in = false;
  for (size_t i = 0; i < n->item_count && !in; i++)
    in = test_item(&n->items[i], c, n->icase);
  return in != n->neg;
}

static bool single_char(const node *n) {
  return n && !n->next && one_char(n->kind);
}

/* What is left to match after a node's sequence ends: the rest of an
 * enclosing sequence (next), or one more iteration of a repeat (rep). */
typedef struct frame frame;
struct frame {
  const node *next, *rep;
  uint32_t count;
  size_t start;
  const frame *up;
};

typedef struct mctx {
  const uint32_t *s;
  size_t n;
  int depth;
  bool too_deep;      /* out of stack depth or of steps: give up */
  uint64_t steps, budget;
} mctx;

static bool match(mctx *c, const node *nd, size_t pos, const frame *k, size_t *end);

static bool repeat(mctx *c, const node *r, size_t pos, uint32_t count, size_t last,
                   const frame *k, size_t *end) {
  if (++c->steps > c->budget) {
    c->too_deep = true;
    return false;
  }
  const node *ch = r->child;
  if (ch && ch->kind == N_ALT && ch->alt_count == 1)
    ch = ch->alts[0];
  if (count == 0 && single_char(ch)) { /* no recursion per character */
    size_t m = 0;
    while (m < r->max && pos + m < c->n && test_one(ch, c->s[pos + m]))
      m++;
    if (m < r->min)
      return false;
    if (!r->lazy) {
      for (size_t i = m + 1; i-- > r->min;)
        if (match(c, r->next, pos + i, k, end))
          return true;
    } else {
      for (size_t i = r->min; i <= m; i++)
        if (match(c, r->next, pos + i, k, end))
          return true;
    }
    return false;
  }
  if (count > 0 && pos == last) /* an empty iteration: stop repeating */
    return count >= r->min && match(c, r->next, pos, k, end);
  frame f = {NULL, r, count, pos, k};
  bool more = count < r->max, done = count >= r->min;
  if (!r->lazy) {
    if (more && match(c, r->child, pos, &f, end))
      return true;
    return done && match(c, r->next, pos, k, end);
  }
  if (done && match(c, r->next, pos, k, end))
    return true;
  return more && match(c, r->child, pos, &f, end);
}

static bool match(mctx *c, const node *nd, size_t pos, const frame *k, size_t *end) {
  if (++c->steps > c->budget)
    c->too_deep = true;
  if (++c->depth > MATCH_DEPTH || c->too_deep) {
    c->too_deep = true;
    c->depth--;
    return false;
  }
  bool ok = false;
  for (;;) {
    if (!nd) {
      if (!k) {
        *end = pos;
        ok = true;
        break;
      }
      if (k->rep) {
        ok = repeat(c, k->rep, pos, k->count + 1, k->start, k->up, end);
        break;
      }
      nd = k->next;
      k = k->up;
      continue;
    }
    if (one_char(nd->kind)) {
      if (pos >= c->n || !test_one(nd, c->s[pos]))
        break;
      pos++;
      nd = nd->next;
    } else if (nd->kind == N_BOL || nd->kind == N_EOL) {
      if (pos != (nd->kind == N_BOL ? 0 : c->n))
        break;
      nd = nd->next;
    } else if (nd->kind == N_LOOK) {
      size_t e;
      if (match(c, nd->child, pos, NULL, &e) == nd->neg)
        break;
      nd = nd->next;
    } else if (nd->kind == N_REPEAT) {
      ok = repeat(c, nd, pos, 0, SIZE_MAX, k, end);
      break;
    } else { /* N_ALT */
      frame f = {nd->next, NULL, 0, 0, k};
      uint32_t ch = pos < c->n ? c->s[pos] : 0;
      for (size_t i = 0; i < nd->alt_count && !ok && !c->too_deep; i++) {
        const first *fs = &nd->firsts[i];
        if (!fs->always && (pos >= c->n || (ch < 128 ? !((fs->ascii[ch >> 6] >> (ch & 63)) & 1)
                                                      : !fs->other)))
          continue; /* this branch cannot start here */
        ok = match(c, nd->alts[i], pos, &f, end);
      }
      break;
    }
  }
  c->depth--;
  return ok && !c->too_deep;
}

ts_status ts_regex_find(const ts_regex *r, const uint32_t *cps, size_t count, size_t from,
                        bool *out_found, size_t *out_start, size_t *out_end) {
  /* a budget of steps: nested repeats can backtrack exponentially (a
   * real pre-tokenizer pattern takes tens of steps a code point) */
  mctx c = {cps, count, 0, false, 0, 1000000 + 1024 * (uint64_t)(count - from)};
  for (size_t start = from; start <= count; start++) {
    size_t e;
    if (match(&c, r->root, start, NULL, &e)) {
      *out_found = true;
      *out_start = start;
      *out_end = e;
      return NULL;
    }
    if (c.too_deep && c.steps > c.budget)
      return ts_status_make(TS_ERR_UNSUPPORTED,
                            "regex: backtracking past %" PRIu64 " steps at code point %zu "
                            "(nested repeats?)", c.budget, start);
    if (c.too_deep)
      return ts_status_make(TS_ERR_UNSUPPORTED,
                            "regex: backtracking deeper than %d levels at code point %zu",
                            MATCH_DEPTH, start);
  }
  *out_found = false;
  return NULL;
}
