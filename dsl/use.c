/* use.c - `use "file.tile";`: a file's helper functions made available to
 * another. The files a unit uses (and those they use, once each, by their
 * real path) are read before parsing and joined after the unit's own text,
 * each starting on a line of its own, so that every span of the unit is an
 * offset into one text and a message names the right file and line
 * (ts_source's `files`). The parser keeps only their functions. A `use`
 * names a path relative to the folder of the file that holds it. */
#define _XOPEN_SOURCE 700
#include "dsl/dsl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The most files one unit may join (itself included), and the largest. */
#define MAX_FILES 64
#define MAX_BYTES ((off_t)16 << 20) /* x MAX_FILES: under the 2 GiB of a source */

typedef struct used {
  const char *name; /* as messages show it: the folder of its user + path */
  char *real;       /* realpath, for reading each file once */
  char *text;       /* owned, except the unit's own (file 0) */
  size_t len;
} used;

/* A `use` that names a file that cannot be read, reported once the joined
 * text (and so the span's offset) exists. */
typedef struct failed {
  uint32_t file; /* the file holding the `use` */
  ts_span span;  /* local to that file */
  char why[160];
  bool plain; /* the path's text is at fault, not the file */
} failed;

typedef struct loader {
  ts_unit *u;
  used files[MAX_FILES];
  uint32_t count;
  failed fails[MAX_FILES];
  uint32_t fail_count;
  bool nomem;
} loader;

static void fail(loader *l, uint32_t file, ts_span span, bool plain,
                 const char *fmt, const char *a, const char *b) {
  if (l->fail_count == MAX_FILES)
    return;
  failed *f = &l->fails[l->fail_count++];
  f->file = file;
  f->span = span;
  f->plain = plain;
  snprintf(f->why, sizeof f->why, fmt, a, b);
}

/* Reads `path` (a regular file) into a new entry; false when it cannot. */
static bool read_file(loader *l, const char *path, char *real, uint32_t from,
                      ts_span span) {
  struct stat sb;
  if (stat(real, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fail(l, from, span, false, "'%s' is not a file%s", path, "");
    return false;
  }
  if (sb.st_size > MAX_BYTES) {
    fail(l, from, span, false, "'%s' is larger than %s", path, "16 MiB");
    return false;
  }
  char *text = NULL;
  size_t len = 0;
  ts_status st = ts_file_read(l->u->alloc, real, &text, &len);
  if (st) {
    fail(l, from, span, false, "cannot read '%s': %s", path,
         ts_status_message(st));
    ts_status_free(st);
    return false;
  }
  used *f = &l->files[l->count++];
  f->name = ts_arena_strndup(&l->u->arena, path, strlen(path));
  f->real = real;
  f->text = text;
  f->len = len;
  if (!f->name)
    l->nomem = true;
  return true;
}

/* The file's leading `use "path";` items: each file it names that is not
 * read yet is read and appended to the list. Stops at the first token that
 * is not part of one (the parser reports what is wrong there). */
static void scan(loader *l, uint32_t i) {
  ts_source src;
  ts_diags quiet; /* the parser reports the lexical errors */
  if (ts_source_init(&src, l->u->alloc, l->files[i].name, l->files[i].text,
                     l->files[i].len)) {
    l->nomem = true;
    return;
  }
  ts_diags_init(&quiet, l->u->alloc);
  ts_lexer lx;
  ts_lex_init(&lx, &src, &quiet);
  const char *name = l->files[i].name;
  const char *slash = strrchr(name, '/');
  int dir_len = slash ? (int)(slash - name) + 1 : 0;
  for (;;) {
    if (ts_lex_next(&lx).kind != TS_TOK_USE)
      break;
    ts_token path = ts_lex_next(&lx);
    if (path.kind != TS_TOK_STRING || ts_lex_next(&lx).kind != TS_TOK_SEMI)
      break;
    bool closed;
    ts_str body = ts_tok_string(&src, path.span, &closed);
    if (!closed)
      break;
    const char *p = body.ptr;
    size_t n = body.len;
    char want[PATH_MAX];
    if (n == 0 || memchr(p, '\\', n) || memchr(p, 0, n)) {
      fail(l, i, path.span, true, "'use' takes a plain path%s%s", "", "");
      continue;
    }
    int w = p[0] == '/' ? snprintf(want, sizeof want, "%.*s", (int)n, p)
                        : snprintf(want, sizeof want, "%.*s%.*s", dir_len, name,
                                   (int)n, p);
    if (w < 0 || (size_t)w >= sizeof want) {
      fail(l, i, path.span, false, "the path is too long%s%s", "", "");
      continue;
    }
    char *real = realpath(want, NULL);
    if (!real) {
      fail(l, i, path.span, false, "cannot read '%s': %s", want,
           strerror(errno));
      continue;
    }
    bool seen = false;
    for (uint32_t k = 0; k < l->count && !seen; k++)
      seen = l->files[k].real && !strcmp(l->files[k].real, real);
    if (seen) {
      free(real);
    } else if (l->count == MAX_FILES) {
      fail(l, i, path.span, false, "more than %s files used together%s", "64",
           "");
      free(real);
    } else if (!read_file(l, want, real, i, path.span)) {
      free(real);
    }
  }
  ts_diags_deinit(&quiet);
  ts_source_deinit(&src, l->u->alloc);
}

/* The joined text: each file after the first from a line of its own. */
static bool join_files(loader *l, uint32_t *starts) {
  size_t total = 0;
  for (uint32_t i = 0; i < l->count; i++) {
    const used *f = &l->files[i];
    total += f->len + (f->len > 0 && f->text[f->len - 1] == '\n' ? 0 : 1);
  }
  ts_unit *u = l->u;
  char *t = ts_alloc(u->alloc, total + 1);
  ts_source_file *fs = ts_arena_alloc(&u->arena, l->count * sizeof *fs);
  if (!t || !fs)
    return false;
  size_t at = 0;
  for (uint32_t i = 0; i < l->count; i++) {
    const used *f = &l->files[i];
    starts[i] = (uint32_t)at;
    memcpy(t + at, f->text, f->len);
    at += f->len;
    if (f->len == 0 || f->text[f->len - 1] != '\n')
      t[at++] = '\n';
  }
  t[at] = 0;
  const char *name = u->src.name;
  ts_source_deinit(&u->src, u->alloc);
  u->joined = t;
  u->joined_size = total + 1;
  if (total > 0x7fffffffu)
    return false;
  ts_status st = ts_source_init(&u->src, u->alloc, name, t, total);
  if (st) {
    ts_status_free(st);
    return false;
  }
  uint32_t line = 0, k = 0;
  for (uint32_t i = 0; i < l->count; i++) {
    while (k < u->src.line_count && u->src.line_starts[k] < starts[i])
      k++;
    line = k;
    fs[i] = (ts_source_file){i ? l->files[i].name : name, starts[i], line};
  }
  u->src.files = fs;
  u->src.file_count = l->count;
  return true;
}

bool ts_unit_load_uses(ts_unit *u) {
  loader *l = calloc(1, sizeof *l);
  if (!l)
    return false;
  l->u = u;
  l->files[0] = (used){u->src.name, realpath(u->src.name, NULL),
                       (char *)u->src.text, u->src.len};
  l->count = 1;
  for (uint32_t i = 0; i < l->count && !l->nomem; i++)
    scan(l, i);
  bool ok = !l->nomem;
  uint32_t starts[MAX_FILES] = {0};
  if (ok && l->count > 1)
    ok = join_files(l, starts);
  for (uint32_t i = 0; ok && i < l->fail_count; i++) {
    const failed *f = &l->fails[i];
    ts_span sp = {starts[f->file] + f->span.lo, starts[f->file] + f->span.hi};
    ts_diag *d = ts_diag_error(u->diags, &u->src, sp, "%s", f->why);
    ts_diag_hint(u->diags, d, "%s",
                 f->plain
                     ? "a path without escapes, as in 'use \"quant.tile\";'"
                     : "a 'use' path is relative to the folder of the "
                       "file that holds it");
  }
  for (uint32_t i = 0; i < l->count; i++) {
    free(l->files[i].real);
    if (i > 0)
      ts_release(u->alloc, l->files[i].text, l->files[i].len + 1);
  }
  free(l);
  return ok;
}
