/* errtest.c - runs the front end over one tests/errors/ file and compares
 * the diagnostics with the expectations written in the file:
 *   //~ error: TEXT      an error on this line whose message contains TEXT
 *   //~^ error: TEXT     the same for the line above (one ^ per line up)
 *   //~? error: TEXT     an error with no location (e.g. a bad -D)
 *   //~ note: TEXT       a note of the error reported on this line
 *   //~ hint: TEXT       the hint of the error reported on this line
 *   //! -D NAME=VALUE    a define for the run (first lines only)
 *   //! lower            compile for the CPU too (lowering diagnostics)
 * Every expectation must be met and every error expected. Prints
 * "N passed, N failed" and the rendered diagnostics on failure. */
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>

typedef struct expect {
  uint32_t line; /* 0: no location */
  char level[8];
  char text[256];
  bool met;
} expect;

static expect expects[512];
static int nexpects;

static void parse_one(const char *p, const char *end, uint32_t l);

static void parse_expectations(const ts_source *src, ts_define *defs,
                               size_t *ndefs, char *defbuf) {
  size_t used = 0;
  for (uint32_t l = 1; l <= src->line_count; l++) {
    ts_str line = ts_source_line(src, l);
    const char *p = NULL;
    for (size_t i = 0; i + 2 < line.len; i++)
      if (line.ptr[i] == '/' && line.ptr[i + 1] == '/' &&
          (line.ptr[i + 2] == '~' || line.ptr[i + 2] == '!')) {
        p = line.ptr + i + 2;
        break;
      }
    if (!p)
      continue;
    const char *end = line.ptr + line.len;
    if (*p == '!') {
      p++;
      while (p < end && *p == ' ')
        p++;
      if (end - p > 3 && !strncmp(p, "-D ", 3) && *ndefs < 16) {
        size_t n = (size_t)(end - p - 3);
        memcpy(defbuf + used, p + 3, n);
        defbuf[used + n] = 0;
        char *eq = strchr(defbuf + used, '=');
        if (eq) {
          *eq = 0;
          defs[*ndefs].name = defbuf + used;
          defs[*ndefs].value = eq + 1;
          (*ndefs)++;
        }
        used += n + 1;
      }
      continue;
    }
    /* One or more expectations: each runs to the next "//~". */
    while (p) {
      const char *next = NULL;
      for (const char *q = p + 1; q + 2 < end; q++)
        if (q[0] == '/' && q[1] == '/' && q[2] == '~') {
          next = q;
          break;
        }
      parse_one(p, next ? next : end, l);
      p = next ? next + 2 : NULL;
    }
  }
}

static void parse_one(const char *p, const char *end, uint32_t l) {
  {
    p++; /* past '~' */
    uint32_t target = l;
    bool nowhere = false;
    while (p < end && *p == '^') {
      target--;
      p++;
    }
    if (p < end && *p == '?') {
      nowhere = true;
      p++;
    }
    while (p < end && *p == ' ')
      p++;
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (!colon || nexpects == 512)
      return;
    expect *e = &expects[nexpects++];
    e->line = nowhere ? 0 : target;
    snprintf(e->level, sizeof e->level, "%.*s", (int)(colon - p), p);
    const char *t = colon + 1;
    while (t < end && *t == ' ')
      t++;
    while (end > t && end[-1] == ' ')
      end--;
    snprintf(e->text, sizeof e->text, "%.*s", (int)(end - t), t);
  }
}

static bool match(expect *e, const char *level, uint32_t line,
                  const char *text) {
  if (e->met || strcmp(e->level, level) || e->line != line)
    return false;
  if (!strstr(text, e->text))
    return false;
  e->met = true;
  return true;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: errtest FILE.tile\n");
    return 2;
  }
  const ts_allocator *a = ts_allocator_system();
  char *text;
  size_t len;
  ts_status st = ts_file_read(a, argv[1], &text, &len);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    return 2;
  }
  ts_source src;
  st = ts_source_init(&src, a, argv[1], text, len);
  if (st)
    return 2;
  ts_define defs[16];
  size_t ndefs = 0;
  static char defbuf[8192];
  parse_expectations(&src, defs, &ndefs, defbuf);
  bool lower = strstr(text, "//! lower") != NULL;
  ts_diags d;
  ts_diags_init(&d, a);
  ts_unit u;
  st = ts_unit_init(&u, a, argv[1], text, len, &d);
  if (st)
    return 2;
  if (lower) {
    /* The whole CPU compile: lowering diagnostics too. */
    ts_buf out;
    ts_buf_init(&out, a);
    ts_compile_options opt = {.emit = TS_EMIT_MLIR,
                              .defines = defs,
                              .define_count = ndefs};
    ts_status_free(ts_compile(a, argv[1], text, len, &opt, &d, &out));
    ts_buf_deinit(&out);
  } else if (ts_unit_parse(&u)) {
    ts_unit_check(&u, defs, ndefs);
  }
  int passed = 0, failed = 0;
  for (const ts_diag *g = d.head; g; g = g->next) {
    const char *lv = g->level == TS_DIAG_ERROR ? "error" : "warning";
    uint32_t line = g->has_location ? g->line : 0;
    bool ok = false;
    for (int i = 0; i < nexpects && !ok; i++)
      ok = match(&expects[i], lv, line, g->message);
    if (!ok) {
      fprintf(stderr, "%s: unexpected %s at line %u: %s\n", argv[1], lv, line,
              g->message);
      failed++;
    } else {
      passed++;
    }
    for (const ts_diag *n = g->notes; n; n = n->next)
      for (int i = 0; i < nexpects; i++)
        if (match(&expects[i], "note", line, n->message))
          break;
    if (g->hint)
      for (int i = 0; i < nexpects; i++)
        if (match(&expects[i], "hint", line, g->hint))
          break;
  }
  for (int i = 0; i < nexpects; i++)
    if (!expects[i].met) {
      fprintf(stderr, "%s:%u: expected %s not reported: %s\n", argv[1],
              expects[i].line, expects[i].level, expects[i].text);
      failed++;
    }
  if (nexpects == 0) {
    fprintf(stderr, "%s: no expectations in the file\n", argv[1]);
    failed++;
  }
  if (failed)
    ts_diags_render(&d, stderr, (ts_render_options){false, true});
  printf("%d passed, %d failed\n", passed, failed);
  ts_unit_deinit(&u);
  ts_diags_deinit(&d);
  ts_source_deinit(&src, a);
  ts_release(a, text, len + 1);
  return failed ? 1 : 0;
}
