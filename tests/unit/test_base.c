/* test_base.c - base/: statuses, arenas, buffers, maps, files, line tables
 * and the rendering of diagnostics (tabs, CRLF, long lines, colour). */
#define _POSIX_C_SOURCE 200809L
#include "tests/unit/harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_status(void) {
  ts_status s = ts_status_make(TS_ERR_IO, "cannot open '%s'", "x");
  CHECK(ts_status_code(s) == TS_ERR_IO);
  s = ts_status_annotate(s, "loading %s", "model");
  CHECK(!strcmp(ts_status_message(s), "loading model: cannot open 'x'"));
  ts_status_free(s);
  CHECK(ts_status_code(NULL) == TS_OK);
  ts_status m = ts_status_nomem();
  CHECK(ts_status_code(m) == TS_ERR_NOMEM);
  CHECK(ts_status_annotate(m, "ctx") == m); /* static: unchanged */
  ts_status_free(m);
  /* a device's out-of-memory status keeps its message (the host could
   * allocate it) */
  m = ts_status_make(TS_ERR_NOMEM, "cuMemAlloc: %d bytes", 64);
  CHECK(ts_status_code(m) == TS_ERR_NOMEM && !strcmp(ts_status_message(m), "cuMemAlloc: 64 bytes"));
  m = ts_status_annotate(m, "ctx");
  CHECK(!strcmp(ts_status_message(m), "ctx: cuMemAlloc: 64 bytes"));
  ts_status_free(m);
}

static void test_arena(void) {
  ts_arena a;
  ts_arena_init(&a, ts_allocator_system());
  char *p = ts_arena_alloc(&a, 10);
  CHECK(p && ((uintptr_t)p & 15) == 0);
  char *big = ts_arena_alloc(&a, 1 << 20); /* larger than a chunk */
  CHECK(big != NULL);
  big[(1 << 20) - 1] = 1;
  CHECK(!strcmp(ts_arena_strndup(&a, "hello!", 5), "hello"));
  ts_arena_deinit(&a);

  ts_failing_allocator fa;
  ts_failing_allocator_init(&fa, 1, true);
  ts_arena_init(&a, &fa.base);
  CHECK(ts_arena_alloc(&a, 8) == NULL && a.failed);
  ts_arena_deinit(&a);
}

static void test_buf_and_map(void) {
  ts_buf b;
  ts_buf_init(&b, ts_allocator_system());
  for (int i = 0; i < 1000; i++)
    ts_buf_printf(&b, "%d,", i);
  CHECK(b.len == strlen(b.ptr) && !strncmp(b.ptr, "0,1,2,", 6));
  ts_buf_clear(&b);
  ts_buf_put_quoted(&b, "a\x01\tbcdef", 7, 4);
  CHECK(!strcmp(b.ptr, "a\\x01\\tb..."));
  ts_buf_deinit(&b);

  ts_failing_allocator fa;
  ts_failing_allocator_init(&fa, 2, true);
  ts_buf_init(&b, &fa.base);
  for (int i = 0; i < 100; i++)
    ts_buf_puts(&b, "0123456789");
  CHECK(b.failed && b.len < 1000);
  ts_buf_deinit(&b);

  ts_map m;
  ts_map_init(&m, ts_allocator_system());
  char keys[500][16];
  for (int i = 0; i < 500; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    ts_status s = ts_map_put(&m, ts_str_from(keys[i]), keys[i]);
    CHECK(s == NULL);
  }
  int found = 0;
  for (int i = 0; i < 500; i++)
    found += ts_map_get(&m, ts_str_from(keys[i])) == keys[i];
  CHECK(found == 500 && m.count == 500);
  CHECK(ts_map_get(&m, TS_STR_LIT("nope")) == NULL);
  ts_map_deinit(&m);
  ts_failing_allocator_init(&fa, 1, true);
  ts_map_init(&m, &fa.base);
  ts_status s = ts_map_put(&m, TS_STR_LIT("a"), NULL);
  CHECK(ts_status_code(s) == TS_ERR_NOMEM);
  ts_status_free(s);
  ts_map_deinit(&m);
}

static void test_files(void) {
  char path[] = "/tmp/ts_test_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  ts_status s = ts_file_write_atomic(path, "abc\0def", 7);
  CHECK(s == NULL);
  char *data;
  size_t len;
  s = ts_file_read(ts_allocator_system(), path, &data, &len);
  CHECK(s == NULL && len == 7 && !memcmp(data, "abc\0def", 7) && !data[7]);
  if (!s)
    free(data);
  unlink(path);
  s = ts_file_read(ts_allocator_system(), path, &data, &len);
  CHECK(ts_status_code(s) == TS_ERR_IO && strstr(ts_status_message(s), path));
  ts_status_free(s);
  s = ts_file_read(ts_allocator_system(), "/tmp", &data, &len);
  CHECK(ts_status_code(s) == TS_ERR_IO);
  ts_status_free(s);
}

static void test_source(void) {
  const char *text = "ab\r\n\tc\xc3\xa9x\nlast";
  ts_source src;
  ts_status s =
      ts_source_init(&src, ts_allocator_system(), "f", text, strlen(text));
  CHECK(s == NULL && src.line_count == 3);
  uint32_t line, col;
  ts_source_position(&src, 1, &line, &col);
  CHECK(line == 1 && col == 2);
  ts_source_position(&src, 8, &line, &col); /* the 'x' after tab c é */
  CHECK(line == 2 && col == 4);
  ts_str l1 = ts_source_line(&src, 1);
  CHECK(l1.len == 2); /* CR LF stripped */
  ts_str l3 = ts_source_line(&src, 3);
  CHECK(l3.len == 4 && !memcmp(l3.ptr, "last", 4));
  ts_source_deinit(&src, ts_allocator_system());
}

static char *render(const char *text, uint32_t lo, uint32_t hi, bool color) {
  ts_source src;
  ts_status s =
      ts_source_init(&src, ts_allocator_system(), "f.tile", text, strlen(text));
  CHECK(s == NULL);
  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  ts_diag *dg = ts_diag_error(&d, &src, (ts_span){lo, hi}, "bad '%s'", "x");
  ts_diag_note(&d, dg, &src, (ts_span){0, 1}, "see here");
  ts_diag_hint(&d, dg, "try %d", 42);
  ts_source_deinit(&src, ts_allocator_system()); /* diagnostics outlive it */
  ts_buf b;
  ts_buf_init(&b, ts_allocator_system());
  ts_diag_render_one(d.head, &b, (ts_render_options){color, true});
  ts_diags_deinit(&d);
  return b.ptr;
}

static void test_render(void) {
  char *r = render("a\n\tx = yy;\n", 7, 9, false);
  CHECK(!strcmp(r, "f.tile:2:6: error: bad 'x'\n"
                   "    2 |     x = yy;\n"
                   "      |         ^~\n"
                   "f.tile:1:1: note: see here\n"
                   "  hint: try 42\n"));
  free(r);
  r = render("a\r\nbc\r\n", 4, 5, false); /* CRLF */
  CHECK(strstr(r, "f.tile:2:2:") && strstr(r, "    2 | bc\n      |  ^\n"));
  free(r);
  r = render("x", 0, 1, true);
  CHECK(strstr(r, "\033[1;31merror:") != NULL);
  free(r);
  /* A long line is shown as a window around the caret. */
  char line[4000];
  memset(line, 'a', sizeof line - 1);
  line[sizeof line - 1] = 0;
  r = render(line, 2000, 2001, false);
  CHECK(strstr(r, "f.tile:1:2001:") && strstr(r, "| ...a") && strlen(r) < 600);
  free(r);

  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  for (int i = 0; i < 100; i++)
    ts_diag_error(&d, NULL, (ts_span){0, 0}, "e%d", i);
  CHECK(d.error_count == 100 && ts_diags_full(&d));
  int kept = 0;
  for (ts_diag *g = d.head; g; g = g->next)
    kept++;
  CHECK(kept == TS_DIAG_DEFAULT_LIMIT);
  ts_diags_deinit(&d);
}

/* yes/no settings (base/proc.c): the words, unset and empty, another value */
static void test_env_flag(void) {
  const char *yes[] = {"1", "on", "ON", "true", "True", "yes", "YES"};
  const char *no[] = {"0", "off", "Off", "false", "FALSE", "no", "No"};
  for (int i = 0; i < 7; i++) {
    CHECK(ts_flag_word(yes[i]) == 1);
    CHECK(ts_flag_word(no[i]) == 0);
  }
  CHECK(ts_flag_word("2") == -1 && ts_flag_word("onn") == -1 && ts_flag_word("") == -1 &&
        ts_flag_word(NULL) == -1);
  unsetenv("TS_TEST_FLAG");
  CHECK(ts_env_flag("TS_TEST_FLAG", true) && !ts_env_flag("TS_TEST_FLAG", false));
  setenv("TS_TEST_FLAG", "", 1);
  CHECK(ts_env_flag("TS_TEST_FLAG", true) && !ts_env_flag("TS_TEST_FLAG", false));
  setenv("TS_TEST_FLAG", "Off", 1);
  CHECK(!ts_env_flag("TS_TEST_FLAG", true));
  setenv("TS_TEST_FLAG", "yes", 1);
  CHECK(ts_env_flag("TS_TEST_FLAG", false));
  setenv("TS_TEST_FLAG", "maybe", 1); /* reported (stderr), the default used */
  CHECK(ts_env_flag("TS_TEST_FLAG", true) && !ts_env_flag("TS_TEST_FLAG", false));
  unsetenv("TS_TEST_FLAG");
}

int main(void) {
  test_status();
  test_env_flag();
  test_arena();
  test_buf_and_map();
  test_files();
  test_source();
  test_render();
  return ts_test_finish();
}
