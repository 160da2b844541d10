/* test_pool.c - the CPU device's thread pool (runtime/pool.c): every block
 * of a job runs exactly once and has finished when ts_pool_run returns,
 * for jobs of 1 to thousands of blocks, back to back (workers still
 * spinning from the last job, or asleep, or waking only after a job ended),
 * with 1 to 4 threads and with spinning off; blocks run on more than one
 * thread when there are several; the pool shuts down with workers in
 * either state. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"
#include "tests/unit/harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct job {
  atomic_int *hits; /* per block */
  int64_t total;
  int sleep_us; /* per block, 0: none */
  pthread_t first;
  atomic_bool other_thread;
} job;

static void run(void *ctx, int64_t b, int64_t e) {
  job *j = ctx;
  if (!pthread_equal(pthread_self(), j->first))
    atomic_store(&j->other_thread, true);
  for (int64_t i = b; i < e; i++) {
    if (j->sleep_us)
      nanosleep(&(struct timespec){0, j->sleep_us * 1000L}, NULL);
    atomic_fetch_add(&j->hits[i], 1);
  }
}

/* Runs a job of `total` blocks; true when each ran once by the return. */
static bool once(ts_pool *p, int64_t total, int sleep_us, bool *other) {
  job j = {calloc((size_t)total + 1, sizeof(atomic_int)), total, sleep_us,
           pthread_self(), false};
  if (!j.hits)
    return false;
  ts_pool_run(p, run, &j, total);
  bool ok = true;
  for (int64_t i = 0; i < total; i++)
    ok = ok && atomic_load(&j.hits[i]) == 1;
  if (other)
    *other = atomic_load(&j.other_thread);
  free(j.hits);
  return ok;
}

static void pool_case(int threads) {
  ts_pool *p;
  CHECK(ts_pool_create(threads, &p) == NULL);
  ts_pool_run(p, run, NULL, 0); /* nothing to run: fn is not called */
  bool all = true;
  static const int64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4097};
  for (int rep = 0; rep < 300; rep++)
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
      all = all && once(p, sizes[s], 0, NULL);
  CHECK(all);
  /* slow blocks: the caller must wait for the workers that joined; some
   * worker joins one of 10 such jobs (on a loaded host a worker may wake
   * only after the caller has taken every block of one) */
  bool other = false, done = true;
  for (int t = 0; t < 10 && !other; t++)
    done = done && once(p, 16, 2000, &other);
  CHECK(done);
  if (threads > 1)
    CHECK(other);
  /* workers asleep (past the spin), then woken by the next job */
  nanosleep(&(struct timespec){0, 5 * 1000000L}, NULL);
  CHECK(once(p, 64, 0, NULL) && once(p, 5, 100, NULL));
  ts_pool_destroy(p); /* workers spinning */
  CHECK(ts_pool_create(threads, &p) == NULL);
  nanosleep(&(struct timespec){0, 2 * 1000000L}, NULL);
  ts_pool_destroy(p); /* workers asleep */
}

int main(void) {
  for (int threads = 1; threads <= 4; threads++)
    pool_case(threads);
  setenv("TESSERA_POOL_SPIN_US", "0", 1); /* asleep after every job */
  pool_case(2);
  pool_case(3);
  return ts_test_finish();
}
