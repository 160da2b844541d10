/* json.c - a JSON reader into a tree held in an arena (for tokenizer.json:
 * megabytes, a vocabulary object of 10^5 members). Strict RFC 8259: \u
 * escapes with surrogate pairs, no trailing commas, no comments; errors
 * say what and where (line:column). */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 256 };

typedef struct reader {
  const char *text, *p, *end;
  ts_arena *arena;
  const char *err;
  const char *err_at;
} reader;

static void fail(reader *r, const char *what) {
  if (!r->err) {
    r->err = what;
    r->err_at = r->p;
  }
}

static void skip_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
    r->p++;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0)
      return -1;
    v = v * 16 + d;
  }
  return v;
}

/* string := '"' (char | escape)* '"'   (into the arena, NUL-terminated) */
static bool parse_string(reader *r, const char **out, size_t *out_len) {
  r->p++; /* '"' */
  const char *s = r->p;
  size_t n = 0;
  bool plain = true;
  for (; r->p < r->end && *r->p != '"'; r->p++, n++) {
    if ((unsigned char)*r->p < 0x20) {
      fail(r, "control character in a string");
      return false;
    }
    if (*r->p == '\\') {
      plain = false;
      r->p++;
    }
  }
  if (r->p >= r->end) {
    r->p = s - 1;
    fail(r, "unterminated string");
    return false;
  }
  const char *close = r->p;
  char *dst = ts_arena_alloc(r->arena, (size_t)(close - s) + 1);
  if (!dst) {
    fail(r, "out of memory");
    return false;
  }
  if (plain) {
    memcpy(dst, s, (size_t)(close - s));
    *out_len = (size_t)(close - s);
  } else {
    size_t k = 0;
    for (const char *q = s; q < close; q++) {
      if (*q != '\\') {
        dst[k++] = *q;
        continue;
      }
      char e = *++q;
      const char *simple = strchr("\"\\/bfnrt", e);
      if (e && simple) {
        dst[k++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
        continue;
      }
      int cp = e == 'u' && close - q > 4 ? hex4(q + 1) : -1;
      if (cp < 0) {
        r->p = q - 1;
        fail(r, "bad escape in a string");
        return false;
      }
      q += 4;
      if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
        int lo = close - q > 6 && q[1] == '\\' && q[2] == 'u' ? hex4(q + 3) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) {
          r->p = q - 5;
          fail(r, "unpaired surrogate in a string");
          return false;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        q += 6;
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        r->p = q - 5;
        fail(r, "unpaired surrogate in a string");
        return false;
      }
      k += ts_utf8_encode((uint32_t)cp, dst + k); /* never longer than its escape */
    }
    *out_len = k;
  }
  dst[*out_len] = 0;
  *out = dst;
  r->p = close + 1;
  return true;
}

static bool parse_value(reader *r, ts_json *v, int depth);

/* array := '[' (value (',' value)*)? ']'    object := '{' (string ':' value ...)? '}' */
static bool parse_container(reader *r, ts_json *v, int depth) {
  bool object = *r->p == '{';
  char close = object ? '}' : ']';
  v->kind = object ? TS_JSON_OBJECT : TS_JSON_ARRAY;
  r->p++;
  size_t cap = 0, count = 0;
  ts_json *items = NULL;
  skip_ws(r);
  bool ok = true;
  if (r->p < r->end && *r->p == close) {
    r->p++;
  } else {
    for (;;) {
      if (count == cap) {
        cap = cap ? cap * 2 : 8;
        ts_json *t = realloc(items, cap * sizeof *items);
        if (!t) {
          fail(r, "out of memory");
          ok = false;
          break;
        }
        items = t;
      }
      ts_json *it = &items[count];
      memset(it, 0, sizeof *it);
      skip_ws(r);
      if (object) {
        if (r->p >= r->end || *r->p != '"') {
          fail(r, "expected a member name");
          ok = false;
          break;
        }
        if (!parse_string(r, &it->key, &it->key_len)) {
          ok = false;
          break;
        }
        skip_ws(r);
        if (r->p >= r->end || *r->p != ':') {
          fail(r, "expected ':'");
          ok = false;
          break;
        }
        r->p++;
      }
      if (!parse_value(r, it, depth + 1)) {
        ok = false;
        break;
      }
      count++;
      skip_ws(r);
      if (r->p < r->end && *r->p == ',') {
        r->p++;
        continue;
      }
      if (r->p < r->end && *r->p == close) {
        r->p++;
        break;
      }
      fail(r, object ? "expected ',' or '}'" : "expected ',' or ']'");
      ok = false;
      break;
    }
  }
  if (ok && count) {
    v->items = ts_arena_alloc(r->arena, count * sizeof *items);
    if (!v->items) {
      fail(r, "out of memory");
      ok = false;
    } else {
      memcpy(v->items, items, count * sizeof *items);
      v->count = count;
    }
  }
  free(items);
  return ok;
}

/* value := object | array | string | number | true | false | null */
static bool parse_value(reader *r, ts_json *v, int depth) {
  skip_ws(r);
  if (r->p >= r->end) {
    fail(r, "unexpected end of text");
    return false;
  }
  if (depth > MAX_DEPTH) {
    fail(r, "nested too deep");
    return false;
  }
  v->offset = (size_t)(r->p - r->text);
  char c = *r->p;
  if (c == '{' || c == '[')
    return parse_container(r, v, depth);
  if (c == '"') {
    v->kind = TS_JSON_STRING;
    return parse_string(r, &v->str, &v->len);
  }
  static const struct {
    const char *word;
    ts_json_kind kind;
    bool value;
  } words[] = {{"true", TS_JSON_BOOL, true}, {"false", TS_JSON_BOOL, false},
               {"null", TS_JSON_NULL, false}};
  for (size_t i = 0; i < TS_ARRAY_COUNT(words); i++) {
    size_t n = strlen(words[i].word);
    if ((size_t)(r->end - r->p) >= n && !memcmp(r->p, words[i].word, n)) {
      v->kind = words[i].kind;
      v->boolean = words[i].value;
      r->p += n;
      return true;
    }
  }
  /* number := '-'? int frac? exp? */
  const char *s = r->p;
  if (r->p < r->end && *r->p == '-')
    r->p++;
  const char *digits = r->p;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
    r->p++;
  bool ok = r->p > digits && !(*digits == '0' && r->p - digits > 1);
  if (ok && r->p < r->end && *r->p == '.') {
    const char *f = ++r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
      r->p++;
    ok = r->p > f;
  }
  if (ok && r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
      r->p++;
    const char *e = r->p;
    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
      r->p++;
    ok = r->p > e;
  }
  if (!ok) {
    r->p = s;
    fail(r, "expected a value");
    return false;
  }
  char buf[64];
  size_t n = (size_t)(r->p - s);
  if (n >= sizeof buf) {
    r->p = s;
    fail(r, "number too long");
    return false;
  }
  memcpy(buf, s, n);
  buf[n] = 0;
  v->kind = TS_JSON_NUMBER;
  v->number = strtod(buf, NULL);
  return true;
}

ts_status ts_json_parse(const char *text, size_t len, ts_json_doc *out) {
  memset(out, 0, sizeof *out);
  ts_arena_init(&out->arena, ts_allocator_system());
  reader r = {text, text, text + len, &out->arena, NULL, NULL};
  ts_json *root = ts_arena_alloc(&out->arena, sizeof *root);
  if (!root) {
    ts_json_doc_deinit(out);
    return ts_status_nomem();
  }
  if (parse_value(&r, root, 0)) {
    skip_ws(&r);
    if (r.p < r.end)
      fail(&r, "text after the value");
  }
  if (r.err) {
    size_t line = 1, col = 1;
    for (const char *q = text; q < r.err_at; q++, col++)
      if (*q == '\n') {
        line++;
        col = 0;
      }
    ts_json_doc_deinit(out);
    return ts_status_make(TS_ERR_INVALID, "JSON %zu:%zu: %s", line, col, r.err);
  }
  out->root = root;
  return NULL;
}

void ts_json_doc_deinit(ts_json_doc *d) {
  ts_arena_deinit(&d->arena);
  d->root = NULL;
}

const ts_json *ts_json_get(const ts_json *obj, const char *key) {
  if (!obj || obj->kind != TS_JSON_OBJECT)
    return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < obj->count; i++)
    if (obj->items[i].key_len == n && !memcmp(obj->items[i].key, key, n))
      return &obj->items[i];
  return NULL;
}

void ts_json_put_string(ts_buf *b, const char *s, size_t len) {
  ts_buf_putc(b, '"');
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      ts_buf_putc(b, '\\');
      ts_buf_putc(b, (char)c);
    } else if (c < 0x20) {
      ts_buf_printf(b, "\\u%04x", c);
    } else {
      ts_buf_putc(b, (char)c);
    }
  }
  ts_buf_putc(b, '"');
}
