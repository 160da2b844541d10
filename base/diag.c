/* diag.c - the diagnostic sink and its renderer. A diagnostic has a level,
 * a span in a source, a message, notes and a hint; rendering prints
 *   path:line:col: error: message
 *       9 |   source line
 *         |   ^~~~
 * with tabs expanded, long lines cut to a window, and colour on request. */
#define _POSIX_C_SOURCE 200809L
#include "base.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void ts_diags_init(ts_diags *d, const ts_allocator *alloc) {
  memset(d, 0, sizeof *d);
  d->alloc = alloc;
  d->limit = TS_DIAG_DEFAULT_LIMIT;
}

static void free_diag(const ts_allocator *a, ts_diag *dg) {
  while (dg) {
    ts_diag *next = dg->next;
    free_diag(a, dg->notes);
    if (dg->message)
      ts_release(a, dg->message, strlen(dg->message) + 1);
    if (dg->hint)
      ts_release(a, dg->hint, strlen(dg->hint) + 1);
    if (dg->path)
      ts_release(a, dg->path, strlen(dg->path) + 1);
    if (dg->snippet)
      ts_release(a, dg->snippet, dg->snippet_len + 1);
    ts_release(a, dg, sizeof *dg);
    dg = next;
  }
}

void ts_diags_deinit(ts_diags *d) {
  free_diag(d->alloc, d->head);
  d->head = d->tail = NULL;
}

bool ts_diags_full(const ts_diags *d) { return d->error_count >= d->limit; }

static char *vdup(const ts_allocator *a, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    n = 0;
  char *s = ts_alloc(a, (size_t)n + 1);
  if (s)
    vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

static char *dup_bytes(const ts_allocator *a, const char *p, size_t n) {
  char *s = ts_alloc(a, n + 1);
  if (s) {
    memcpy(s, p, n);
    s[n] = 0;
  }
  return s;
}

/* Bytes of the line kept around the span, before and after it. */
#define KEEP_BEFORE 80
#define KEEP_AFTER 120

/* Copies the location and the part of the line around it. */
static bool locate(ts_diags *d, ts_diag *dg, const ts_source *src,
                   ts_span span) {
  dg->has_location = true;
  ts_source_position(src, span.lo, &dg->line, &dg->col);
  const char *name = ts_source_name(src, span.lo);
  dg->path = dup_bytes(d->alloc, name, strlen(name));
  ts_str text = ts_source_line_at(src, span.lo);
  uint32_t start = (uint32_t)(text.ptr - src->text);
  uint32_t lo = span.lo - start;
  /* A span may start past the line's visible text (after a trailing '\r',
   * at the end of the file): point just past the text. */
  if (lo > text.len)
    lo = (uint32_t)text.len;
  uint32_t hi = span.hi > span.lo ? span.hi - start : lo + 1;
  if (hi > text.len)
    hi = (uint32_t)text.len > lo ? (uint32_t)text.len : lo + 1;
  uint32_t a = lo > KEEP_BEFORE ? lo - KEEP_BEFORE : 0;
  uint32_t b =
      text.len - lo > KEEP_AFTER ? lo + KEEP_AFTER : (uint32_t)text.len;
  /* Do not cut a UTF-8 character in two. */
  while (a > 0 && a < text.len && (text.ptr[a] & 0xc0) == 0x80)
    a--;
  while (b < text.len && (text.ptr[b] & 0xc0) == 0x80)
    b++;
  dg->cut_before = a > 0;
  dg->cut_after = b < text.len;
  dg->snippet = dup_bytes(d->alloc, text.ptr + a, b - a);
  dg->snippet_len = b - a;
  dg->span_lo = lo - a;
  dg->span_hi = hi - a;
  return dg->path && dg->snippet;
}

static ts_diag *make(ts_diags *d, ts_diag_level level, const ts_source *src,
                     ts_span span, const char *fmt, va_list ap) {
  ts_diag *dg = ts_alloc(d->alloc, sizeof *dg);
  if (!dg) {
    d->nomem = true;
    return NULL;
  }
  memset(dg, 0, sizeof *dg);
  dg->level = level;
  dg->message = vdup(d->alloc, fmt, ap);
  if (!dg->message || (src && !locate(d, dg, src, span))) {
    d->nomem = true;
    free_diag(d->alloc, dg);
    return NULL;
  }
  return dg;
}

static void append(ts_diags *d, ts_diag *dg) {
  if (d->tail)
    d->tail->next = dg;
  else
    d->head = dg;
  d->tail = dg;
}

ts_diag *ts_diag_error(ts_diags *d, const ts_source *src, ts_span span,
                       const char *fmt, ...) {
  d->error_count++;
  if (d->error_count > d->limit)
    return NULL;
  va_list ap;
  va_start(ap, fmt);
  ts_diag *dg = make(d, TS_DIAG_ERROR, src, span, fmt, ap);
  va_end(ap);
  if (dg)
    append(d, dg);
  return dg;
}

ts_diag *ts_diag_warning(ts_diags *d, const ts_source *src, ts_span span,
                         const char *fmt, ...) {
  d->warning_count++;
  if (d->warning_count > d->limit)
    return NULL;
  va_list ap;
  va_start(ap, fmt);
  ts_diag *dg = make(d, TS_DIAG_WARNING, src, span, fmt, ap);
  va_end(ap);
  if (dg)
    append(d, dg);
  return dg;
}

void ts_diag_note(ts_diags *d, ts_diag *dg, const ts_source *src, ts_span span,
                  const char *fmt, ...) {
  if (!dg)
    return;
  va_list ap;
  va_start(ap, fmt);
  ts_diag *n = make(d, TS_DIAG_NOTE, src, span, fmt, ap);
  va_end(ap);
  if (!n)
    return;
  ts_diag **pp = &dg->notes;
  while (*pp)
    pp = &(*pp)->next;
  *pp = n;
}

void ts_diag_hint(ts_diags *d, ts_diag *dg, const char *fmt, ...) {
  if (!dg || dg->hint)
    return;
  va_list ap;
  va_start(ap, fmt);
  dg->hint = vdup(d->alloc, fmt, ap);
  va_end(ap);
  if (!dg->hint)
    d->nomem = true;
}

bool ts_color_wanted(FILE *stream) {
  const char *nc = getenv("NO_COLOR");
  if (nc && nc[0])
    return false;
  return isatty(fileno(stream)) != 0;
}

/* ---- rendering ------------------------------------------------------------
 */

#define TAB_STOP 4
#define WINDOW_AFTER 100

static const char *level_name(ts_diag_level l) {
  return l == TS_DIAG_ERROR     ? "error"
         : l == TS_DIAG_WARNING ? "warning"
                                : "note";
}
static const char *level_color(ts_diag_level l) {
  return l == TS_DIAG_ERROR     ? "\033[1;31m"
         : l == TS_DIAG_WARNING ? "\033[1;35m"
                                : "\033[1;36m";
}

static void render_snippet(const ts_diag *dg, ts_buf *out,
                           ts_render_options opt) {
  const char *text = dg->snippet;
  uint32_t len = dg->snippet_len, lo = dg->span_lo, hi = dg->span_hi;
  /* Display columns of the start and end of the span (tabs expanded). */
  uint32_t dcol = 0, caret_col = 0, caret_end = 0;
  bool found_lo = false;
  for (uint32_t i = 0; i < len;) {
    size_t n = ts_utf8_char_len(text + i, len - i);
    uint32_t w = text[i] == '\t' ? TAB_STOP - dcol % TAB_STOP : 1;
    if (i == lo) {
      caret_col = dcol;
      found_lo = true;
    }
    if (i < hi)
      caret_end = dcol + w;
    dcol += w;
    i += (uint32_t)n;
  }
  if (!found_lo)
    caret_col = caret_end = dcol;
  if (caret_end <= caret_col)
    caret_end = caret_col + 1;
  if (caret_end - caret_col > WINDOW_AFTER)
    caret_end = caret_col + WINDOW_AFTER;
  const char *bar = opt.color ? "\033[1;34m" : "";
  const char *reset = opt.color ? "\033[0m" : "";
  ts_buf_printf(out, "%s%5u |%s ", bar, dg->line, reset);
  if (dg->cut_before)
    ts_buf_puts(out, "...");
  dcol = 0;
  for (uint32_t i = 0; i < len;) {
    size_t n = ts_utf8_char_len(text + i, len - i);
    unsigned char c = (unsigned char)text[i];
    uint32_t w = c == '\t' ? TAB_STOP - dcol % TAB_STOP : 1;
    if (c == '\t')
      for (uint32_t k = 0; k < w; k++)
        ts_buf_putc(out, ' ');
    else if (n > 1)
      ts_buf_append(out, text + i, n);
    else if (c >= 0x20 && c < 0x7f)
      ts_buf_putc(out, (char)c);
    else
      ts_buf_putc(out, '?');
    dcol += w;
    i += (uint32_t)n;
  }
  if (dg->cut_after)
    ts_buf_puts(out, "...");
  ts_buf_printf(out, "\n%s      |%s ", bar, reset);
  if (dg->cut_before)
    ts_buf_puts(out, "   ");
  for (uint32_t k = 0; k < caret_col; k++)
    ts_buf_putc(out, ' ');
  if (opt.color)
    ts_buf_puts(out, "\033[1;32m");
  ts_buf_putc(out, '^');
  for (uint32_t k = caret_col + 1; k < caret_end; k++)
    ts_buf_putc(out, '~');
  ts_buf_printf(out, "%s\n", reset);
}

static void render_head(const ts_diag *dg, ts_buf *out, ts_render_options opt) {
  const char *bold = opt.color ? "\033[1m" : "";
  const char *reset = opt.color ? "\033[0m" : "";
  if (dg->has_location)
    ts_buf_printf(out, "%s%s:%u:%u:%s ", bold, dg->path, dg->line, dg->col,
                  reset);
  ts_buf_printf(out, "%s%s:%s %s%s%s\n",
                opt.color ? level_color(dg->level) : "", level_name(dg->level),
                reset, bold, dg->message, reset);
}

void ts_diag_render_one(const ts_diag *dg, ts_buf *out, ts_render_options opt) {
  render_head(dg, out, opt);
  if (dg->has_location && opt.snippets)
    render_snippet(dg, out, opt);
  for (const ts_diag *n = dg->notes; n; n = n->next)
    render_head(n, out, opt);
  if (dg->hint)
    ts_buf_printf(out, "  %shint:%s %s\n", opt.color ? "\033[1;32m" : "",
                  opt.color ? "\033[0m" : "", dg->hint);
}

void ts_diags_render(const ts_diags *d, FILE *out, ts_render_options opt) {
  ts_buf b;
  ts_buf_init(&b, d->alloc);
  for (const ts_diag *dg = d->head; dg; dg = dg->next) {
    ts_diag_render_one(dg, &b, opt);
    if (b.ptr)
      fputs(b.ptr, out);
    ts_buf_clear(&b);
  }
  if (d->error_count > d->limit)
    fprintf(out, "too many errors; stopped after the first %u\n", d->limit);
  if (d->nomem)
    fprintf(out, "error: out of memory while reporting errors\n");
  ts_buf_deinit(&b);
}
