/* test_frontend.c - the front end on malformed input (nothing crashes, hangs
 * or overflows the stack; each input gets located errors), on every
 * out-of-memory point of a real kernel, and the facts sema derives. */
#define _XOPEN_SOURCE 700
#include "tests/unit/harness.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const ts_allocator *sys(void) { return ts_allocator_system(); }

/* Runs the front end; expects at least one error, all with locations inside
 * the text, the count capped, and no memory failure. */
static void expect_errors(const char *what, const char *text, size_t len) {
  ts_diags d;
  clock_t t0 = clock();
  uint32_t n = ts_test_frontend(sys(), text, len, &d);
  double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
  bool located = d.head != NULL;
  uint32_t kept = 0;
  for (const ts_diag *g = d.head; g; g = g->next, kept++)
    if (!g->has_location || g->line == 0 || g->col == 0)
      located = false;
  if (!(n > 0 && located && kept <= TS_DIAG_DEFAULT_LIMIT && !d.nomem &&
        secs < 5.0))
    fprintf(stderr, "%s: %u errors, %u kept, located %d, %.2f s\n", what, n,
            kept, located, secs);
  CHECK(n > 0);
  CHECK(located);
  CHECK(kept <= TS_DIAG_DEFAULT_LIMIT);
  CHECK(!d.nomem);
  CHECK(secs < 5.0);
  ts_diags_deinit(&d);
}

static char *repeat(const char *prefix, const char *unit, size_t times,
                    const char *suffix, size_t *out_len) {
  size_t a = strlen(prefix), u = strlen(unit), z = strlen(suffix);
  size_t len = a + u * times + z;
  char *s = malloc(len + 1);
  memcpy(s, prefix, a);
  for (size_t i = 0; i < times; i++)
    memcpy(s + a + i * u, unit, u);
  memcpy(s + a + u * times, suffix, z + 1);
  *out_len = len;
  return s;
}

static void test_bad_input(void) {
  expect_errors("empty", "", 0);
  expect_errors("spaces", "  \n\t\r\n", 6);
  const char nul[] = "kernel k(x: f32[N]) {\0 }";
  expect_errors("nul", nul, sizeof nul - 1);
  expect_errors("utf8", "kernel k(x: f32[N]) { let \xff\xfe = 1; }", 34);
  expect_errors("utf8-ident", "kernel k(x: f32[N]) { let \xc3\xa9 = 1; }", 33);
  expect_errors("comment", "kernel k(x: f32[N]) { /* open", 29);
  expect_errors("string", "kernel k(x: f32[N]) { print(\"abc", 32);
  expect_errors("brackets", "kernel k(x: f32[N]) { let a = ((1]; }}}", 39);
  expect_errors("overflow",
                "kernel k(x: f32[N]) { let a = 99999999999999999999; }", 52);
  expect_errors("const-overflow",
                "kernel k(x: f32[N]) { let a = 9223372036854775807 + 1; }", 56);
  expect_errors("div-zero", "kernel k(x: f32[N]) { let a = 1 / 0; }", 38);
  /* an error at the end of a file whose last line ends in a lone '\r'
   * (found by the fuzzer: the snippet window read past the line) */
  expect_errors("cr at eof", "kernel k(x: f32[N]) {\r", 22);
  expect_errors("cr cr at eof", "// x\r\nkernel k(x: f32[N]) t\r\n  var a =\r",
                39);

  srand(7);
  for (int round = 0; round < 50; round++) {
    size_t len = (size_t)(rand() % 5000);
    char *g = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
      g[i] = (char)(rand() & 0xff);
    g[len] = 0;
    ts_diags d;
    ts_test_frontend(sys(), g, len, &d); /* must not crash */
    CHECK(!d.nomem);
    ts_diags_deinit(&d);
    free(g);
  }

  size_t len;
  char *s = repeat("kernel k(x: f32[N]) { let a = ", "(", 100000, "1", &len);
  expect_errors("deep parens", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) { let a = ", "-", 100000, "1; }", &len);
  expect_errors("deep unary", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) ", "{", 100000, "", &len);
  expect_errors("deep blocks", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) { let a = x", "[", 100000, "", &len);
  expect_errors("deep index", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) { let a = x", "[0]", 100000, "; }", &len);
  expect_errors("index chain", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) { let a = f", "(0)", 100000, "; }", &len);
  expect_errors("call chain", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) { ", "if true { ", 100000, "", &len);
  expect_errors("deep ifs", s, len);
  free(s);
  /* A long chain nests as deeply as brackets do (the left operand). */
  s = repeat("kernel k(x: f32[N]) { let a = 1", " + 1", 200000, "; }", &len);
  expect_errors("long chain", s, len);
  free(s);
  ts_diags d;
  s = repeat("kernel k(x: f32[N]) { let a = 1", " + 1", 150, "; }", &len);
  ts_test_frontend(sys(), s, len, &d);
  CHECK(d.error_count == 0);
  ts_diags_deinit(&d);
  free(s);
  s = repeat("kernel k(x: f32[N]) { let ", "a", 2u << 20, " = 1; }", &len);
  expect_errors("long identifier", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) {\n", "let = ;\n", 50000, "}", &len);
  expect_errors("many errors", s, len);
  free(s);
  s = repeat("kernel k(x: f32[N]) {\n", "let a = 1;\n", 20000, "}", &len);
  expect_errors("many redefinitions", s, len);
  free(s);
  s = repeat("", "@", 1000000, "", &len);
  expect_errors("junk", s, len);
  free(s);
}

static const char *const softmax =
    "kernel softmax_rows(x: f32[M, N], y: f32[M, N])\n"
    "  params(BM: int = 4) grid(ceildiv(M, BM)) threads(128)\n"
    "{\n"
    "  let r = block_id(0) * BM;\n"
    "  frag t: f32[BM, N];\n"
    "  frag m: f32[BM];\n"
    "  frag s: f32[BM];\n"
    "  copy(x[r:r + BM, :], t);\n"
    "  reduce_max(t, m, dim=1);\n"
    "  parallel (i, j) in (BM, N) { t[i, j] = exp(t[i, j] - m[i]); }\n"
    "  reduce_sum(t, s, dim=1);\n"
    "  parallel (i, j) in (BM, N) { t[i, j] = t[i, j] / s[i]; }\n"
    "  copy(t, y[r:r + BM, :]);\n"
    "}\n";

/* Every allocation of a full compile fails once in turn: each run either
 * succeeds or reports out-of-memory, and leaks nothing (ASan checks). */
static void test_out_of_memory(void) {
  int failures_seen = 0;
  for (uint64_t n = 1; n < 2000; n++) {
    ts_failing_allocator fa;
    ts_failing_allocator_init(&fa, n, false);
    ts_diags d;
    ts_diags_init(&d, &fa.base);
    ts_buf out;
    ts_buf_init(&out, &fa.base);
    ts_compile_options opt = {.emit = TS_EMIT_TYPED};
    ts_status st = ts_compile(&fa.base, "oom.tile", softmax, strlen(softmax),
                              &opt, &d, &out);
    if (st) {
      failures_seen++;
      /* nomem surfaces as a status or as the sink's flag */
      CHECK(ts_status_code(st) == TS_ERR_NOMEM || d.nomem ||
            ts_status_code(st) == TS_ERR_PROGRAM);
    }
    ts_status_free(st);
    ts_buf_deinit(&out);
    ts_diags_deinit(&d);
    if (fa.calls < n) /* the run made fewer calls: every point covered */
      break;
  }
  CHECK(failures_seen > 0);
}

static ts_unit *check_text(const char *text, ts_diags *d, bool *ok) {
  static ts_unit u;
  ts_diags_init(d, sys());
  ts_status st = ts_unit_init(&u, sys(), "t.tile", text, strlen(text), d);
  CHECK(st == NULL);
  *ok = ts_unit_parse(&u) && ts_unit_check(&u, NULL, 0);
  return &u;
}

static void test_facts(void) {
  ts_diags d;
  bool ok;
  ts_unit *u = check_text(softmax, &d, &ok);
  CHECK(ok && u->kernel_count == 1);
  const ts_kernel_info *k = ts_unit_kernel(u, TS_STR_LIT("softmax_rows"));
  CHECK(k && k->param_count == 1 && k->params[0]->cval.i == 4);
  CHECK(k && k->arg_count == 2 && k->dim_count == 2 && k->threads == 128);
  CHECK(k && k->grid_rank == 1);
  ts_unit_deinit(u);
  ts_diags_deinit(&d);

  /* -D overrides a param; the override shows in the tile shapes. */
  ts_diags_init(&d, sys());
  ts_unit v;
  ts_status st =
      ts_unit_init(&v, sys(), "t.tile", softmax, strlen(softmax), &d);
  CHECK(st == NULL);
  ts_define def = {"BM", "16"};
  CHECK(ts_unit_parse(&v) && ts_unit_check(&v, &def, 1));
  CHECK(v.kernels[0].params[0]->cval.i == 16);
  ts_buf b;
  ts_buf_init(&b, sys());
  ts_dump_typed(&v, &b);
  CHECK(strstr(b.ptr, "frag f32[16, N]") != NULL);
  ts_buf_deinit(&b);
  ts_unit_deinit(&v);
  ts_diags_deinit(&d);

  /* Slices agree symbolically: x[r + 2:r + 2 + BM] is BM long. */
  u = check_text("kernel k(x: f32[N])\n"
                 "  params(BM: int = 8) grid(ceildiv(N, BM))\n"
                 "{\n"
                 "  let r = block_id(0) * BM;\n"
                 "  frag t: f32[BM];\n"
                 "  copy(x[r + 2:r + 2 + BM], t);\n"
                 "  copy(t, x[2 * r - r:r + BM]);\n"
                 "}\n",
                 &d, &ok);
  CHECK(ok);
  ts_unit_deinit(u);
  ts_diags_deinit(&d);
  u = check_text("kernel k(x: f32[N])\n"
                 "  params(BM: int = 8) grid(ceildiv(N, BM))\n"
                 "{\n"
                 "  let r = block_id(0) * BM;\n"
                 "  frag t: f32[BM];\n"
                 "  copy(x[r:r + BM + 1], t);\n"
                 "}\n",
                 &d, &ok);
  CHECK(!ok && ts_test_has_error(&d, "shapes do not agree"));
  ts_unit_deinit(u);
  ts_diags_deinit(&d);
  /* The same non-linear expression is the same atom (max(b - 1, 0) * BM
   * cancels), over names that cannot change; over a var it is not, nor
   * with another operand. */
  static const struct {
    const char *lo, *hi;
    bool ok;
  } same[] = {{"max(b - 1, 0)", "max(b - 1, 0)", true},
              {"min(i64(b), 3)", "min(i64(b), 3)", true},
              {"max(v, 0)", "max(v, 0)", false},
              {"max(b - 2, 0)", "max(b - 1, 0)", false}};
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    char text[512];
    snprintf(text, sizeof text,
             "kernel k(x: f32[N])\n"
             "  params(BM: int = 8) grid(ceildiv(N, BM))\n"
             "{\n"
             "  let b = block_id(0);\n"
             "  var v = b;\n"
             "  frag t: f32[BM];\n"
             "  copy(x[%s * BM:%s * BM + BM], t);\n"
             "}\n",
             same[i].lo, same[i].hi);
    u = check_text(text, &d, &ok);
    if (ok != same[i].ok)
      fprintf(stderr, "same atom: '%s' gave ok = %d\n", same[i].lo, ok);
    CHECK(ok == same[i].ok);
    ts_unit_deinit(u);
    ts_diags_deinit(&d);
  }
}

static void put(const char *dir, const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* `arch`, the built-in constant: what the unit is checked for (0 the CPU,
 * a GPU's SM version), folded into params' defaults, `select` and shapes;
 * a declaration of the name is refused. */
static void test_arch(void) {
  static const char text[] =
      "kernel k(x: f32[N])\n"
      "  params(V: int = arch, BS: int = select(arch == 0, 256, 64),\n"
      "    F: bool = arch == 0 && BS > 128, G: float = select(arch >= 90, 2, 0.5))\n"
      "  grid(1) {\n"
      "  frag t: f32[select(arch == 0, 8, 16)];\n"
      "  fill(t, 1.0);\n"
      "  x[0] = t[0];\n"
      "}\n";
  static const struct {
    const char *arch;
    int number;
    int64_t bs;
    bool f;
    double g;
    const char *tile;
  } want[] = {{NULL, 0, 256, true, 0.5, "frag f32[8]"},
              {"sm_90a", 90, 64, false, 2.0, "frag f32[16]"},
              {"sm_80", 80, 64, false, 0.5, "frag f32[16]"}};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    CHECK(ts_arch_number(want[i].arch) == want[i].number);
    ts_diags d;
    ts_diags_init(&d, sys());
    ts_unit u;
    CHECK(ts_unit_init(&u, sys(), "t.tile", text, strlen(text), &d) == NULL);
    u.arch = want[i].number;
    CHECK(ts_unit_parse(&u) && ts_unit_check(&u, NULL, 0));
    ts_symbol **p = u.kernels[0].params;
    CHECK(u.kernels[0].param_count == 4);
    CHECK(p[0]->cval.i == want[i].number && p[1]->cval.i == want[i].bs);
    CHECK(p[2]->cval.kind == TS_CONST_BOOL && p[2]->cval.b == want[i].f);
    CHECK(p[3]->cval.kind == TS_CONST_FLOAT && p[3]->cval.f == want[i].g);
    ts_buf b;
    ts_buf_init(&b, sys());
    ts_dump_typed(&u, &b);
    CHECK(b.ptr && strstr(b.ptr, want[i].tile) != NULL);
    ts_buf_deinit(&b);
    ts_unit_deinit(&u);
    ts_diags_deinit(&d);
  }
  CHECK(ts_arch_number("sm_90") == 90 && ts_arch_number("sm_86") == 86);
  /* the names messages list are the compiler's */
  CHECK(!strcmp(ts_arch_list(), "sm_90a, sm_90, sm_80 or sm_86"));
  CHECK(ts_arch_number("cpu") == -1 && ts_arch_number("sm_90b") == -1 &&
        ts_arch_number("sm_") == -1 && ts_arch_number("sm_0") == -1);
  ts_diags d;
  bool ok;
  ts_unit *u = check_text("kernel k(x: f32[N]) params(arch: int = 1) grid(1) {\n"
                          "  x[0] = 0.0;\n}\n", &d, &ok);
  CHECK(!ok && d.error_count == 1);
  ts_unit_deinit(u);
  ts_diags_deinit(&d);
}

/* Parses and checks dir/name as the compiler does (from its path). */
static bool check_file(ts_unit *u, ts_diags *d, const char *dir,
                       const char *name, char **text) {
  static char path[512]; /* the unit's name: outlives it */
  size_t len;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  ts_diags_init(d, sys());
  CHECK(ts_file_read(sys(), path, text, &len) == NULL);
  CHECK(ts_unit_init(u, sys(), path, *text, len, d) == NULL);
  return ts_unit_parse(u) && ts_unit_check(u, NULL, 0);
}

static void done_file(ts_unit *u, ts_diags *d, char *text) {
  ts_unit_deinit(u);
  ts_diags_deinit(d);
  free(text);
}

/* `use`: the functions of other files, found next to the file naming them,
 * each read once (cycles too); their kernels not listed; messages name the
 * file and line of the code they are about. */
static void test_use(void) {
  char dir[] = "/tmp/tessera-use-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char lib[600];
  snprintf(lib, sizeof lib, "%s/lib", dir);
  CHECK(mkdir(lib, 0700) == 0);
  put(dir, "lib/a.tile",
      "use \"../b.tile\";\n"
      "fn fa(x: f32) -> f32 {\n  return fb(x) + 1.0;\n}\n"
      "kernel hidden(x: f32[N]) grid(1) {\n  x[0] = 1.0;\n}");
  put(dir, "b.tile",
      "use \"lib/a.tile\"; // a cycle\n"
      "fn fb(x: f32) -> f32 {\n  return 2.0 * x;\n}\n");
  put(dir, "main.tile",
      "use \"lib/a.tile\";\nuse \"b.tile\";\nuse \"lib/../b.tile\";\n"
      "kernel k(x: f32[N]) grid(N) {\n  let i = block_id(0);\n"
      "  x[i] = fa(x[i]);\n}\n");
  ts_unit u;
  ts_diags d;
  char *text;
  bool ok = check_file(&u, &d, dir, "main.tile", &text);
  CHECK(ok && d.error_count == 0);
  CHECK(u.kernel_count == 1 && ts_unit_kernel(&u, TS_STR_LIT("k")));
  CHECK(!ts_unit_kernel(&u, TS_STR_LIT("hidden")));
  CHECK(u.src.file_count == 3); /* main, lib/a, b once */
  CHECK(strstr(u.src.text, "return 2.0 * x;") != NULL);
  if (u.src.file_count == 3) {
    CHECK(strstr(u.src.files[1].name, "lib/a.tile") != NULL);
    CHECK(!strcmp(ts_source_name(&u.src, u.src.files[2].lo),
                  u.src.files[2].name));
    uint32_t line, col;
    ts_source_position(&u.src, u.src.files[2].lo + 20, &line, &col);
    CHECK(line == 1 && col == 21);
  }
  done_file(&u, &d, text);

  /* an error in a used file is located there */
  put(dir, "lib/c.tile", "fn fc(x: f32) -> f32 {\n  return x + q;\n}\n");
  put(dir, "bad.tile",
      "use \"lib/c.tile\";\nkernel k(x: f32[N]) grid(N) {\n"
      "  x[0] = fc(1.0);\n}\n");
  ok = check_file(&u, &d, dir, "bad.tile", &text);
  CHECK(!ok && d.head && d.head->line == 2 && d.head->col == 14);
  CHECK(d.head && strstr(d.head->path, "lib/c.tile") != NULL);
  CHECK(ts_test_has_error(&d, "unknown name 'q'"));
  done_file(&u, &d, text);

  /* one scope: a function in two files is already defined */
  put(dir, "dup.tile",
      "use \"b.tile\";\nfn fb(x: f32) -> f32 {\n  return x;\n}\n");
  ok = check_file(&u, &d, dir, "dup.tile", &text);
  CHECK(!ok && ts_test_has_error(&d, "'fb' is already defined"));
  done_file(&u, &d, text);

  /* a missing file is reported at its `use`, and only there (no unknown
   * names for its functions: the checks after parsing do not run) */
  put(dir, "miss.tile",
      "use \"nope.tile\";\nfn f(x: f32) -> f32 {\n  return nope(x);\n}\n");
  ok = check_file(&u, &d, dir, "miss.tile", &text);
  CHECK(!ok && d.error_count == 1 && ts_test_has_error(&d, "cannot read"));
  CHECK(d.head && d.head->line == 1 && d.head->col == 5);
  done_file(&u, &d, text);

  /* a file larger than 16 MiB is refused unread (a sparse one here) */
  char big[600];
  snprintf(big, sizeof big, "%s/big.tile", dir);
  FILE *bf = fopen(big, "w");
  CHECK(bf && ftruncate(fileno(bf), (off_t)17 << 20) == 0);
  if (bf)
    fclose(bf);
  put(dir, "usebig.tile",
      "use \"big.tile\";\nfn f(x: f32) -> f32 {\n  return x;\n}\n");
  ok = check_file(&u, &d, dir, "usebig.tile", &text);
  CHECK(!ok && ts_test_has_error(&d, "is larger than 16 MiB"));
  done_file(&u, &d, text);

  const char *names[] = {"lib/a.tile",  "lib/c.tile", "b.tile",    "main.tile",
                         "bad.tile",    "dup.tile",   "miss.tile", "big.tile",
                         "usebig.tile", "lib"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    remove(p);
  }
  remove(dir);
}

int main(void) {
  test_bad_input();
  test_out_of_memory();
  test_facts();
  test_arch();
  test_use();
  return ts_test_finish();
}
