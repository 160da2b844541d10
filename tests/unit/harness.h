/* harness.h - the unit-test harness: CHECK records a failure with its
 * location and goes on; ts_test_finish prints "N passed, N failed". */
#ifndef TS_TEST_HARNESS_H
#define TS_TEST_HARNESS_H

#include "runtime/runtime.h"

extern int ts_test_passed, ts_test_failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond)                                                                  \
      ts_test_passed++;                                                        \
    else {                                                                     \
      ts_test_failed++;                                                        \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

int ts_test_finish(void);

/* Runs the front end (parse + check) over `text`; returns the error count.
 * The diagnostics are left in *d (initialised here; deinit by the caller). */
uint32_t ts_test_frontend(const ts_allocator *a, const char *text, size_t len,
                          ts_diags *d);
/* Whether some kept diagnostic's message contains `needle`. */
bool ts_test_has_error(const ts_diags *d, const char *needle);

#endif
