/* status.c - errors of the system as values. A status carries a code and a
 * message; context is prefixed on the way up with ts_status_annotate. The
 * out-of-memory status is static and never allocates; an out-of-memory
 * status made with a message (a device's: how much, which driver call)
 * carries it when the host can still allocate it. */
#include "base.h"

#include <stdlib.h>
#include <string.h>

struct ts_status_rec {
  ts_code code;
  bool is_static;
  char *message;
};

static struct ts_status_rec nomem_status = {TS_ERR_NOMEM, true,
                                            (char *)"out of memory"};

ts_status ts_status_nomem(void) { return &nomem_status; }

static char *vformat(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0)
    n = 0;
  char *s = malloc((size_t)n + 1);
  if (!s)
    return NULL;
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  return s;
}

ts_status ts_status_make(ts_code code, const char *fmt, ...) {
  struct ts_status_rec *s = malloc(sizeof *s);
  if (!s)
    return &nomem_status;
  va_list ap;
  va_start(ap, fmt);
  s->message = vformat(fmt, ap);
  va_end(ap);
  if (!s->message) {
    free(s);
    return &nomem_status;
  }
  s->code = code;
  s->is_static = false;
  return s;
}

ts_status ts_status_annotate(ts_status s, const char *fmt, ...) {
  if (!s || s->is_static)
    return s;
  va_list ap;
  va_start(ap, fmt);
  char *prefix = vformat(fmt, ap);
  va_end(ap);
  if (!prefix)
    return s;
  size_t a = strlen(prefix), b = strlen(s->message);
  char *m = malloc(a + 2 + b + 1);
  if (m) {
    memcpy(m, prefix, a);
    memcpy(m + a, ": ", 2);
    memcpy(m + a + 2, s->message, b + 1);
    free(s->message);
    s->message = m;
  }
  free(prefix);
  return s;
}

ts_code ts_status_code(ts_status s) { return s ? s->code : TS_OK; }

const char *ts_status_message(ts_status s) { return s ? s->message : "ok"; }

void ts_status_free(ts_status s) {
  if (!s || s->is_static)
    return;
  free(s->message);
  free(s);
}
