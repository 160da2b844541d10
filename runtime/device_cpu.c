/* device_cpu.c - the CPU device: host memory (64-byte aligned) and a
 * thread pool over all cores. Freed blocks of up to 32 MiB are kept for
 * reuse, by size class (blocks.c), up to 256 MiB in all, so that a decode
 * step's ~100 tensors cost no malloc each (posix_memalign and free were
 * about a tenth of a tiny-model step's host time); not under
 * AddressSanitizer (which then sees every block's use after it is freed),
 * and not with TESSERA_CPU_BLOCKS=0. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TS_ASAN 1
#endif
#endif

#define KEEP_BLOCK ((size_t)32 << 20) /* the largest block kept */
#define KEEP_ALL ((int64_t)256 << 20) /* the most kept in all */

typedef struct cpu_device {
  ts_device base; /* first: a ts_device * is a cpu_device * */
  bool keep;      /* freed blocks are kept */
  pthread_mutex_t mu;
  ts_blocks blocks;
} cpu_device;

static ts_status cpu_alloc(ts_device *d, size_t size, void **out) {
  cpu_device *c = (cpu_device *)d;
  size_t n = c->keep ? ts_block_size(size) : (size ? size : 64);
  if (c->keep && n <= KEEP_BLOCK) {
    uintptr_t kept;
    pthread_mutex_lock(&c->mu);
    bool found = ts_blocks_take(&c->blocks, n, &kept);
    pthread_mutex_unlock(&c->mu);
    if (found) {
      *out = (void *)kept;
      return NULL;
    }
  }
  void *p = NULL;
  if (posix_memalign(&p, 64, n) != 0)
    return ts_status_make(TS_ERR_NOMEM, "cannot allocate %zu bytes", size);
  *out = p;
  return NULL;
}

static void cpu_free(ts_device *d, void *p, size_t size) {
  cpu_device *c = (cpu_device *)d;
  size_t n = ts_block_size(size);
  if (c->keep && n <= KEEP_BLOCK) {
    pthread_mutex_lock(&c->mu);
    bool kept = c->blocks.bytes + (int64_t)n <= KEEP_ALL &&
                ts_blocks_keep(&c->blocks, n, (uintptr_t)p);
    pthread_mutex_unlock(&c->mu);
    if (kept)
      return;
  }
  free(p);
}

static ts_status cpu_copy(ts_device *d, void *dst, const void *src,
                          size_t size) {
  (void)d;
  if (size)
    memcpy(dst, src, size);
  return NULL;
}

static ts_status cpu_zero(ts_device *d, void *p, size_t size) {
  (void)d;
  memset(p, 0, size);
  return NULL;
}

static void release(void *ctx, uintptr_t p) {
  (void)ctx;
  free((void *)p);
}

static void cpu_destroy(ts_device *d) {
  cpu_device *c = (cpu_device *)d;
  ts_pool_destroy(d->pool);
  ts_blocks_drain(&c->blocks, release, NULL);
  ts_blocks_destroy(&c->blocks);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

static const ts_device_ops cpu_ops = {"cpu",    cpu_alloc,   cpu_free, cpu_copy,
                                      cpu_copy, cpu_destroy, cpu_zero, cpu_copy,
                                      NULL};
static const ts_device_ops gpusim_ops = {"gpusim", cpu_alloc,   cpu_free, cpu_copy,
                                         cpu_copy, cpu_destroy, cpu_zero, cpu_copy,
                                         NULL};

ts_status ts_device_create_gpusim(ts_device **out) {
  TS_TRY(ts_device_create_cpu(1, out));
  (*out)->ops = &gpusim_ops;
  (*out)->gpusim = true;
  return NULL;
}

ts_status ts_device_create_cpu(int threads, ts_device **out) {
  if (threads <= 0) {
    const char *env = getenv("TESSERA_THREADS");
    char *end = NULL;
    long v = env && *env ? strtol(env, &end, 10) : 0;
    if (env && *env && (*end || v < 1 || v > 4096))
      return ts_status_make(TS_ERR_INVALID, "TESSERA_THREADS=%s: a number of threads, 1 to "
                            "4096 (or unset: one a core)", env);
    threads = (int)v;
  }
  if (threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  cpu_device *c = calloc(1, sizeof *c);
  if (!c)
    return ts_status_nomem();
  ts_device *d = &c->base;
#ifdef TS_ASAN
  c->keep = false;
#else
  c->keep = ts_env_flag("TESSERA_CPU_BLOCKS", true);
#endif
  pthread_mutex_init(&c->mu, NULL);
  d->ops = &cpu_ops;
  atomic_init(&d->refs, 1);
  d->threads = threads;
  ts_status st = ts_pool_create(threads, &d->pool);
  if (st) {
    pthread_mutex_destroy(&c->mu);
    free(c);
    return st;
  }
  *out = d;
  return NULL;
}

ts_device *ts_device_retain(ts_device *d) {
  atomic_fetch_add(&d->refs, 1);
  return d;
}

void ts_device_release(ts_device *d) {
  if (d && atomic_fetch_sub(&d->refs, 1) == 1)
    d->ops->destroy(d);
}

const char *ts_device_name(const ts_device *d) { return d->ops->name; }

ts_status ts_device_sync(ts_device *d) { return d->ops->sync ? d->ops->sync(d) : NULL; }

void ts_device_stats_get(ts_device *d, ts_device_stats *out) {
  memset(out, 0, sizeof *out);
  if (d->cuda)
    ts_cuda_stats(d, out);
}
bool ts_device_is_host(const ts_device *d) { return !d->cuda; }

ts_status ts_device_create_default(ts_device **out) {
  ts_status st = ts_device_create_cuda(0, out);
  if (!st)
    return NULL;
  ts_status_free(st);
  return ts_device_create_cpu(0, out);
}
int ts_device_thread_count(const ts_device *d) { return d->threads; }
