/* pool.c - the CPU device's thread pool: N-1 workers plus the caller take
 * chunks of a block range from an atomic counter. One job at a time (the
 * launch holds the pool's lock).
 *
 * The caller never waits for a worker to wake up. A job is open while the
 * caller works on it; a worker joins it (`state`: the workers in the job,
 * plus CLOSED once the caller has found no block left) only while it is
 * open, and the caller then waits for the workers that joined, which are
 * running blocks, not for sleeping ones: a launch of a few blocks costs
 * what those blocks cost, not a futex wake-up (~50 us on a VM, which was
 * most of a small kernel's launch). A worker that wakes after its job
 * closed finds nothing to join. After a job, workers spin for a short
 * while (TESSERA_POOL_SPIN_US, default 100 us; 0: sleep at once) before
 * sleeping, so that back-to-back launches, a decode step's ~100, find them
 * awake. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define CLOSED (1 << 30)

struct ts_pool {
  pthread_mutex_t lock; /* one job at a time */
  pthread_mutex_t mu;   /* for sleeping: wake (workers), done (the caller) */
  pthread_cond_t wake, done;
  pthread_t *workers;
  int nworkers;
  int64_t spin_ns;
  /* the current job, written before it opens */
  ts_pool_fn fn;
  void *ctx;
  int64_t total, chunk;
  atomic_llong next;
  atomic_int state;      /* workers in the job, | CLOSED */
  atomic_int generation; /* bumped per job, under mu */
  atomic_bool quit;
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void work(ts_pool *p) {
  for (;;) {
    int64_t b = atomic_fetch_add(&p->next, p->chunk);
    if (b >= p->total)
      break;
    int64_t e = b + p->chunk < p->total ? b + p->chunk : p->total;
    p->fn(p->ctx, b, e);
  }
}

/* Joins the open job and runs blocks of it; nothing when it has closed. */
static void join(ts_pool *p) {
  int s = atomic_load(&p->state);
  do {
    if (s & CLOSED)
      return;
  } while (!atomic_compare_exchange_weak(&p->state, &s, s + 1));
  work(p);
  if (atomic_fetch_sub(&p->state, 1) == (CLOSED | 1)) {
    /* the last one out of a closed job: the caller may be asleep */
    pthread_mutex_lock(&p->mu);
    pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->mu);
  }
}

/* Waits for a generation other than `seen`: spinning for spin_ns, then
 * asleep. Returns it, or -1 to quit. */
static int next_job(ts_pool *p, int seen) {
  if (p->spin_ns > 0) {
    int64_t until = now_ns() + p->spin_ns;
    for (int i = 1;; i++) {
      if (atomic_load(&p->quit))
        return -1;
      int g = atomic_load(&p->generation);
      if (g != seen)
        return g;
      cpu_relax();
      if (i % 64 == 0 && now_ns() > until)
        break;
    }
  }
  pthread_mutex_lock(&p->mu);
  while (!atomic_load(&p->quit) && atomic_load(&p->generation) == seen)
    pthread_cond_wait(&p->wake, &p->mu);
  int g = atomic_load(&p->quit) ? -1 : atomic_load(&p->generation);
  pthread_mutex_unlock(&p->mu);
  return g;
}

static void *worker(void *arg) {
  ts_pool *p = arg;
  int seen = atomic_load(&p->generation);
  while ((seen = next_job(p, seen)) >= 0)
    join(p);
  return NULL;
}

ts_status ts_pool_create(int threads, ts_pool **out) {
  ts_pool *p = calloc(1, sizeof *p);
  if (!p)
    return ts_status_nomem();
  pthread_mutex_init(&p->lock, NULL);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->next, 0);
  atomic_init(&p->state, CLOSED);
  atomic_init(&p->generation, 0);
  atomic_init(&p->quit, false);
  const char *env = getenv("TESSERA_POOL_SPIN_US");
  long us = env ? atol(env) : 100;
  p->spin_ns = (us > 0 ? (us < 1000000 ? us : 1000000) : 0) * 1000;
  p->nworkers = threads > 1 ? threads - 1 : 0;
  p->workers = calloc((size_t)p->nworkers + 1, sizeof *p->workers);
  if (!p->workers) {
    free(p);
    return ts_status_nomem();
  }
  for (int i = 0; i < p->nworkers; i++)
    if (pthread_create(&p->workers[i], NULL, worker, p) != 0) {
      p->nworkers = i;
      ts_pool_destroy(p);
      return ts_status_make(TS_ERR_IO, "cannot start thread %d", i);
    }
  *out = p;
  return NULL;
}

void ts_pool_run(ts_pool *p, ts_pool_fn fn, void *ctx, int64_t total) {
  if (total <= 0)
    return;
  pthread_mutex_lock(&p->lock);
  int64_t threads = p->nworkers + 1;
  int64_t chunk = total / (threads * 4);
  /* the job is closed (state CLOSED, no worker in it) until opened below */
  p->fn = fn;
  p->ctx = ctx;
  p->total = total;
  p->chunk = chunk > 0 ? chunk : 1;
  atomic_store(&p->next, 0);
  if (p->nworkers && total > 1) {
    atomic_store(&p->state, 0); /* open */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p);
    /* no block left to claim: close, then wait for those still running */
    if (atomic_fetch_or(&p->state, CLOSED) != 0) {
      for (int i = 0; (atomic_load(&p->state) & ~CLOSED) && i < 4096; i++)
        cpu_relax();
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->state) & ~CLOSED)
        pthread_cond_wait(&p->done, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
  } else {
    work(p);
  }
  pthread_mutex_unlock(&p->lock);
}

void ts_pool_destroy(ts_pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->quit, true);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nworkers; i++)
    pthread_join(p->workers[i], NULL);
  free(p->workers);
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p);
}
