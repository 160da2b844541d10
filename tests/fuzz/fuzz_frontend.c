/* fuzz_frontend.c - the libFuzzer entry point over lex + parse + sema + the
 * dumps and the formatter (the front end only: no MLIR): any input must come back with diagnostics, never
 * a crash, a hang or a leak. Built with -fsanitize=fuzzer by scripts/test.sh
 * when clang is present, and replayed over the seed corpus in ctest. */
#include "dsl/dsl.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const ts_allocator *a = ts_allocator_system();
  char *text = ts_alloc(a, size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = 0;
  /* tokens, then parse + check + both dumps, each with fresh diagnostics */
  for (int stage = 0; stage < 2; stage++) {
    ts_diags d;
    ts_diags_init(&d, a);
    ts_buf out;
    ts_buf_init(&out, a);
    ts_unit u;
    ts_status st = ts_unit_init(&u, a, "fuzz.tile", text, size, &d);
    if (!st) {
      u.no_use = true; /* hermetic: a `use` the fuzzer writes reads no file */
      if (stage == 0) {
        ts_dump_tokens(&u.src, &d, &out);
      } else if (ts_unit_parse(&u)) {
        ts_dump_ast(&u, &out);
        if (ts_unit_check(&u, NULL, 0))
          ts_dump_typed(&u, &out);
      }
      ts_unit_deinit(&u);
    }
    ts_status_free(st);
    ts_buf rendered;
    ts_buf_init(&rendered, a);
    for (const ts_diag *g = d.head; g; g = g->next)
      ts_diag_render_one(g, &rendered, (ts_render_options){false, true});
    ts_buf_deinit(&rendered);
    ts_buf_deinit(&out);
    ts_diags_deinit(&d);
  }
  ts_source src;
  ts_status st = ts_source_init(&src, a, "fuzz.tile", text, size);
  if (!st) {
    ts_diags d;
    ts_diags_init(&d, a);
    ts_buf out;
    ts_buf_init(&out, a);
    ts_format(&src, &d, &out);
    ts_buf_deinit(&out);
    ts_diags_deinit(&d);
    ts_source_deinit(&src, a);
  }
  ts_status_free(st);
  ts_release(a, text, size + 1);
  return 0;
}
