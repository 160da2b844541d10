/* source.c - a source text and its line table. Lines end at "\n" or "\r\n";
 * columns count UTF-8 characters (an invalid byte counts as one). */
#include "base.h"

#include <string.h>

ts_status ts_source_init(ts_source *s, const ts_allocator *alloc,
                         const char *name, const char *text, size_t len) {
  memset(s, 0, sizeof *s);
  if (len > 0x7fffffffu)
    return ts_status_make(TS_ERR_INVALID, "'%s' is larger than 2 GiB", name);
  uint32_t count = 1;
  for (size_t i = 0; i < len; i++)
    count += text[i] == '\n';
  uint32_t *starts = ts_alloc(alloc, (size_t)count * sizeof *starts);
  if (!starts)
    return ts_status_nomem();
  uint32_t k = 0;
  starts[k++] = 0;
  for (size_t i = 0; i < len; i++)
    if (text[i] == '\n')
      starts[k++] = (uint32_t)i + 1;
  s->name = name;
  s->text = text;
  s->len = (uint32_t)len;
  s->line_starts = starts;
  s->line_count = count;
  return NULL;
}

void ts_source_deinit(ts_source *s, const ts_allocator *alloc) {
  ts_release(alloc, s->line_starts, (size_t)s->line_count * sizeof(uint32_t));
  s->line_starts = NULL;
}

/* Length of the UTF-8 character at p (1 for an invalid byte). */
static size_t char_len(const unsigned char *p, size_t left) {
  unsigned c = p[0];
  size_t n = c < 0x80         ? 1
             : (c >> 5) == 6  ? 2
             : (c >> 4) == 14 ? 3
             : (c >> 3) == 30 ? 4
                              : 0;
  if (n == 0 || n > left)
    return 1;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 1;
  return n;
}

/* The 0-based line of the joined text holding the offset. */
static uint32_t line_index(const ts_source *s, uint32_t offset) {
  uint32_t lo = 0, hi = s->line_count;
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (s->line_starts[mid] <= offset)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* The file holding the offset (NULL for a single-file source). */
static const ts_source_file *file_of(const ts_source *s, uint32_t offset) {
  if (!s->files)
    return NULL;
  uint32_t lo = 0, hi = s->file_count;
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (s->files[mid].lo <= offset)
      lo = mid;
    else
      hi = mid;
  }
  return &s->files[lo];
}

const char *ts_source_name(const ts_source *s, uint32_t offset) {
  const ts_source_file *f = file_of(s, offset);
  return f ? f->name : s->name;
}

void ts_source_position(const ts_source *s, uint32_t offset, uint32_t *out_line,
                        uint32_t *out_col) {
  if (offset > s->len)
    offset = s->len;
  uint32_t lo = line_index(s, offset);
  const ts_source_file *f = file_of(s, offset);
  uint32_t col = 1;
  const unsigned char *t = (const unsigned char *)s->text;
  for (uint32_t i = s->line_starts[lo]; i < offset;) {
    i += (uint32_t)char_len(t + i, s->len - i);
    col++;
  }
  *out_line = lo + 1 - (f ? f->line0 : 0);
  *out_col = col;
}

ts_str ts_source_line_at(const ts_source *s, uint32_t offset) {
  return ts_source_line(s,
                        line_index(s, offset > s->len ? s->len : offset) + 1);
}

ts_str ts_source_line(const ts_source *s, uint32_t line) {
  if (line == 0 || line > s->line_count)
    return (ts_str){"", 0};
  uint32_t a = s->line_starts[line - 1];
  uint32_t b = line < s->line_count ? s->line_starts[line] : s->len;
  if (b > a && s->text[b - 1] == '\n')
    b--;
  if (b > a && s->text[b - 1] == '\r')
    b--;
  return (ts_str){s->text + a, b - a};
}

size_t ts_utf8_char_len(const char *p, size_t left) {
  return char_len((const unsigned char *)p, left);
}
