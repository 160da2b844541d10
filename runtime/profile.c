/* profile.c - the kernel profile (runtime.h): with it on (TESSERA_PROFILE
 * set and not "0", or ts_profile_enable), every launch is timed and added
 * to its kernel's row - by device, kernel name and params - counting the
 * launches and their seconds: on the CPU and the simulator the launch's
 * own time (it returns when done), on a GPU the kernel's time by CUDA
 * events, which waits for it (the queue then runs one kernel at a time; the
 * whole run is slower, each kernel's figure is its own). One table for the
 * process, under a mutex: launches from several threads add up. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct row {
  char device[64], kernel[128], config[256];
  int64_t launches;
  double seconds, min, max;
} row;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static row *rows;
static size_t nrows, cap;
static atomic_int state; /* 0: not decided, 1: on, 2: off */

bool ts_profile_on(void) {
  int s = atomic_load_explicit(&state, memory_order_relaxed);
  if (s == 0) {
    s = ts_env_flag("TESSERA_PROFILE", false) ? 1 : 2;
    int want = 0;
    atomic_compare_exchange_strong(&state, &want, s);
    s = atomic_load(&state);
  }
  return s == 1;
}

void ts_profile_enable(bool on) { atomic_store(&state, on ? 1 : 2); }

static int by_text(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The params as "A=1 B=2", sorted by name: a kernel made from a Lua table
 * lists them in the table's order, which two tables of the same params
 * need not share. */
static void canonical(const char *config, char *out, size_t size) {
  char buf[256], *words[64];
  size_t n = 0;
  snprintf(buf, sizeof buf, "%s", config);
  for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && n < 64;
       w = strtok_r(NULL, " ", &save))
    words[n++] = w;
  qsort(words, n, sizeof *words, by_text);
  size_t at = 0;
  out[0] = 0;
  for (size_t i = 0; i < n && at < size; i++)
    at += (size_t)snprintf(out + at, size - at, "%s%s", i ? " " : "", words[i]);
}

void ts_profile_add(const char *device, const char *kernel, const char *raw_config,
                    double seconds) {
  char config[256];
  canonical(raw_config, config, sizeof config);
  pthread_mutex_lock(&mu);
  row *r = NULL;
  for (size_t i = 0; i < nrows && !r; i++)
    if (!strcmp(rows[i].kernel, kernel) && !strcmp(rows[i].config, config) &&
        !strcmp(rows[i].device, device))
      r = &rows[i];
  if (!r && nrows == cap) {
    size_t n = cap ? 2 * cap : 64;
    row *g = realloc(rows, n * sizeof *g);
    if (g)
      rows = g, cap = n;
  }
  if (!r && nrows < cap) {
    r = &rows[nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->device, sizeof r->device, "%s", device);
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel);
    snprintf(r->config, sizeof r->config, "%s", config);
    r->min = seconds;
  }
  if (r) { /* (a row that could not be made is dropped: the profile only) */
    r->launches++;
    r->seconds += seconds;
    r->min = seconds < r->min ? seconds : r->min;
    r->max = seconds > r->max ? seconds : r->max;
  }
  pthread_mutex_unlock(&mu);
}

void ts_profile_reset(void) {
  pthread_mutex_lock(&mu);
  nrows = 0;
  pthread_mutex_unlock(&mu);
}

static int by_seconds(const void *a, const void *b) {
  const row *x = a, *y = b;
  return x->seconds < y->seconds ? 1 : x->seconds > y->seconds ? -1 : 0;
}

size_t ts_profile_rows(ts_profile_row *out, size_t max) {
  pthread_mutex_lock(&mu);
  if (nrows) /* (rows is NULL before the first) */
    qsort(rows, nrows, sizeof *rows, by_seconds);
  size_t n = nrows < max ? nrows : max;
  for (size_t i = 0; i < n; i++)
    out[i] = (ts_profile_row){rows[i].device, rows[i].kernel, rows[i].config,
                              rows[i].launches, rows[i].seconds, rows[i].min, rows[i].max};
  size_t total = nrows;
  pthread_mutex_unlock(&mu);
  return total;
}

void ts_profile_print(FILE *f) {
  pthread_mutex_lock(&mu);
  if (nrows) /* (rows is NULL before the first) */
    qsort(rows, nrows, sizeof *rows, by_seconds);
  double all = 0;
  int64_t launches = 0;
  for (size_t i = 0; i < nrows; i++)
    all += rows[i].seconds, launches += rows[i].launches;
  fprintf(f, "\n# kernel profile (TESSERA_PROFILE): %lld launches, %.3f ms in kernels\n\n",
          (long long)launches, all * 1e3);
  fprintf(f, "| kernel | params | device | launches | total ms | share | mean us | min us | "
             "max us |\n|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < nrows; i++) {
    const row *r = &rows[i];
    fprintf(f, "| %s | %s | %s | %lld | %.3f | %.1f%% | %.1f | %.1f | %.1f |\n", r->kernel,
            r->config[0] ? r->config : "-", r->device, (long long)r->launches,
            r->seconds * 1e3, all > 0 ? 100 * r->seconds / all : 0.0,
            r->seconds / (double)r->launches * 1e6, r->min * 1e6, r->max * 1e6);
  }
  pthread_mutex_unlock(&mu);
}
