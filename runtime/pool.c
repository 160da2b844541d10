/* pool.c - the CPU device's thread pool: N-1 workers plus the caller take
 * chunks of a block range from an atomic counter. One job at a time (the
 * launch holds the pool's lock). */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <pthread.h>
#include <stdlib.h>

struct ts_pool {
  pthread_mutex_t lock; /* one job at a time */
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  pthread_t *workers;
  int nworkers;
  /* the current job */
  ts_pool_fn fn;
  void *ctx;
  int64_t total, chunk;
  atomic_llong next;
  int generation; /* bumped per job */
  int busy;       /* workers still in the job */
  bool quit;
};

static void work(ts_pool *p) {
  for (;;) {
    int64_t b = atomic_fetch_add(&p->next, p->chunk);
    if (b >= p->total)
      break;
    int64_t e = b + p->chunk < p->total ? b + p->chunk : p->total;
    p->fn(p->ctx, b, e);
  }
}

static void *worker(void *arg) {
  ts_pool *p = arg;
  int seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->quit && p->generation == seen)
      pthread_cond_wait(&p->wake, &p->mu);
    if (p->quit)
      break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mu);
    work(p);
    pthread_mutex_lock(&p->mu);
    if (--p->busy == 0)
      pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
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
  p->fn = fn;
  p->ctx = ctx;
  p->total = total;
  p->chunk = chunk > 0 ? chunk : 1;
  atomic_store(&p->next, 0);
  if (p->nworkers && total > 1) {
    pthread_mutex_lock(&p->mu);
    p->busy = p->nworkers;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy)
      pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  } else {
    work(p);
  }
  pthread_mutex_unlock(&p->lock);
}

void ts_pool_destroy(ts_pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->quit = true;
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
