/* harness.c - see harness.h. */
#include "tests/unit/harness.h"

#include <string.h>

int ts_test_passed, ts_test_failed;

int ts_test_finish(void) {
  printf("%d passed, %d failed\n", ts_test_passed, ts_test_failed);
  if (!ts_test_passed && !ts_test_failed)
    printf("no check ran: a test that checks nothing fails\n");
  return ts_test_failed || !ts_test_passed ? 1 : 0;
}

uint32_t ts_test_frontend(const ts_allocator *a, const char *text, size_t len,
                          ts_diags *d) {
  ts_diags_init(d, a);
  ts_unit u;
  ts_status st = ts_unit_init(&u, a, "test.tile", text, len, d);
  if (st) {
    ts_status_free(st);
    d->nomem = true;
    return d->error_count;
  }
  if (ts_unit_parse(&u))
    ts_unit_check(&u, NULL, 0);
  ts_unit_deinit(&u);
  return d->error_count;
}

bool ts_test_has_error(const ts_diags *d, const char *needle) {
  for (const ts_diag *g = d->head; g; g = g->next)
    if (strstr(g->message, needle))
      return true;
  return false;
}
