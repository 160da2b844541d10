/* device_cpu.c - the CPU device: host memory (64-byte aligned) and a
 * thread pool over all cores. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ts_status cpu_alloc(ts_device *d, size_t size, void **out) {
  (void)d;
  void *p = NULL;
  if (posix_memalign(&p, 64, size ? size : 64) != 0)
    return ts_status_make(TS_ERR_NOMEM, "cannot allocate %zu bytes", size);
  *out = p;
  return NULL;
}

static void cpu_free(ts_device *d, void *p, size_t size) {
  (void)d, (void)size;
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

static void cpu_destroy(ts_device *d) {
  ts_pool_destroy(d->pool);
  free(d);
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
    threads = env ? atoi(env) : 0;
  }
  if (threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  ts_device *d = calloc(1, sizeof *d);
  if (!d)
    return ts_status_nomem();
  d->ops = &cpu_ops;
  atomic_init(&d->refs, 1);
  d->threads = threads;
  ts_status st = ts_pool_create(threads, &d->pool);
  if (st) {
    free(d);
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
