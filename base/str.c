/* str.c - string views, the growable buffer used for all text output,
 * FNV-1a hashing and a string-keyed hash map. */
#include "base.h"

#include <string.h>

ts_str ts_str_from(const char *cstr) {
  return (ts_str){cstr, cstr ? strlen(cstr) : 0};
}

bool ts_str_eq(ts_str a, ts_str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool ts_str_eq_cstr(ts_str a, const char *b) {
  return ts_str_eq(a, ts_str_from(b));
}

void ts_buf_init(ts_buf *b, const ts_allocator *alloc) {
  memset(b, 0, sizeof *b);
  b->alloc = alloc;
}

void ts_buf_deinit(ts_buf *b) {
  ts_release(b->alloc, b->ptr, b->cap);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

void ts_buf_clear(ts_buf *b) {
  b->len = 0;
  if (b->ptr)
    b->ptr[0] = 0;
}

static bool reserve(ts_buf *b, size_t extra) {
  if (b->failed)
    return false;
  if (b->len + extra + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) {
    if (cap > SIZE_MAX / 2) {
      b->failed = true;
      return false;
    }
    cap *= 2;
  }
  char *p = ts_resize(b->alloc, b->ptr, b->cap, cap);
  if (!p) {
    b->failed = true;
    return false;
  }
  b->ptr = p;
  b->cap = cap;
  return true;
}

void ts_buf_append(ts_buf *b, const char *s, size_t len) {
  if (!reserve(b, len))
    return;
  if (len)
    memcpy(b->ptr + b->len, s, len);
  b->len += len;
  b->ptr[b->len] = 0;
}

void ts_buf_puts(ts_buf *b, const char *s) { ts_buf_append(b, s, strlen(s)); }

void ts_buf_putc(ts_buf *b, char c) { ts_buf_append(b, &c, 1); }

void ts_buf_vprintf(ts_buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n <= 0 || !reserve(b, (size_t)n))
    return;
  vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void ts_buf_printf(ts_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ts_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void ts_buf_put_quoted(ts_buf *b, const char *s, size_t len, size_t max) {
  size_t shown = 0;
  for (size_t i = 0; i < len; i++) {
    if (shown >= max) {
      ts_buf_puts(b, "...");
      return;
    }
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f)
      ts_buf_putc(b, (char)c);
    else if (c == '\t')
      ts_buf_puts(b, "\\t");
    else
      ts_buf_printf(b, "\\x%02x", c);
    shown++;
  }
}

uint64_t ts_hash_bytes(const void *p, size_t len, uint64_t seed) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ull ^ seed;
  for (size_t i = 0; i < len; i++) {
    h ^= s[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* ---- map ------------------------------------------------------------------
 */

void ts_map_init(ts_map *m, const ts_allocator *alloc) {
  memset(m, 0, sizeof *m);
  m->alloc = alloc;
}

void ts_map_deinit(ts_map *m) {
  ts_release(m->alloc, m->slots, m->cap * sizeof *m->slots);
  m->slots = NULL;
  m->count = m->cap = 0;
}

static ts_map_slot *find_slot(ts_map_slot *slots, size_t cap, ts_str key,
                              uint64_t h) {
  size_t i = (size_t)h & (cap - 1);
  for (;;) {
    ts_map_slot *s = &slots[i];
    if (!s->key.ptr || (s->hash == h && ts_str_eq(s->key, key)))
      return s;
    i = (i + 1) & (cap - 1);
  }
}

void *ts_map_get(const ts_map *m, ts_str key) {
  if (!m->cap)
    return NULL;
  uint64_t h = ts_hash_bytes(key.ptr, key.len, 0);
  ts_map_slot *s = find_slot(m->slots, m->cap, key, h);
  return s->key.ptr ? s->value : NULL;
}

ts_status ts_map_put(ts_map *m, ts_str key, void *value) {
  if (!key.ptr)
    key.ptr = "";
  if ((m->count + 1) * 4 >= m->cap * 3) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    ts_map_slot *slots = ts_alloc(m->alloc, cap * sizeof *slots);
    if (!slots)
      return ts_status_nomem();
    memset(slots, 0, cap * sizeof *slots);
    for (size_t i = 0; i < m->cap; i++)
      if (m->slots[i].key.ptr)
        *find_slot(slots, cap, m->slots[i].key, m->slots[i].hash) = m->slots[i];
    ts_release(m->alloc, m->slots, m->cap * sizeof *m->slots);
    m->slots = slots;
    m->cap = cap;
  }
  uint64_t h = ts_hash_bytes(key.ptr, key.len, 0);
  ts_map_slot *s = find_slot(m->slots, m->cap, key, h);
  if (!s->key.ptr)
    m->count++;
  s->key = key;
  s->hash = h;
  s->value = value;
  return NULL;
}
