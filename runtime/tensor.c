/* tensor.c - reference-counted tensors: dtype, shape, contiguous row-major
 * storage on a device. Every buffer holds at least one element, which the
 * generated code relies on for predicated-off reads. */
#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>

struct ts_tensor {
  atomic_int refs;
  ts_device *device;
  ts_dtype dtype;
  uint32_t rank;
  int64_t shape[TS_MAX_RANK];
  int64_t count;
  void *data;
};

ts_status ts_tensor_create(ts_device *d, ts_dtype dtype, uint32_t rank,
                           const int64_t *shape, ts_tensor **out) {
  if (rank > TS_MAX_RANK)
    return ts_status_make(TS_ERR_INVALID, "a tensor has at most %d dims, not %u",
                          TS_MAX_RANK, rank);
  if ((unsigned)dtype >= TS_DTYPE_COUNT)
    return ts_status_make(TS_ERR_INVALID, "unknown dtype %d", (int)dtype);
  int64_t count = 1;
  for (uint32_t i = 0; i < rank; i++) {
    if (shape[i] < 0)
      return ts_status_make(TS_ERR_INVALID, "dim %u is negative (%lld)", i,
                            (long long)shape[i]);
    if (__builtin_mul_overflow(count, shape[i], &count))
      return ts_status_make(TS_ERR_INVALID, "the tensor is too large");
  }
  int64_t bytes;
  if (__builtin_mul_overflow(count > 0 ? count : 1,
                             (int64_t)(ts_dtype_bits(dtype) / 8), &bytes))
    return ts_status_make(TS_ERR_INVALID, "the tensor is too large");
  ts_tensor *t = calloc(1, sizeof *t);
  if (!t)
    return ts_status_nomem();
  ts_status st = d->ops->alloc(d, (size_t)bytes, &t->data);
  if (st) {
    free(t);
    return ts_status_annotate(st, "allocating a tensor");
  }
  memset(t->data, 0, (size_t)bytes);
  atomic_init(&t->refs, 1);
  t->device = ts_device_retain(d);
  t->dtype = dtype;
  t->rank = rank;
  memcpy(t->shape, shape, rank * sizeof *shape);
  t->count = count;
  *out = t;
  return NULL;
}

ts_tensor *ts_tensor_retain(ts_tensor *t) {
  atomic_fetch_add(&t->refs, 1);
  return t;
}

void ts_tensor_release(ts_tensor *t) {
  if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
    return;
  t->device->ops->free(t->device, t->data);
  ts_device_release(t->device);
  free(t);
}

ts_dtype ts_tensor_dtype(const ts_tensor *t) { return t->dtype; }
uint32_t ts_tensor_rank(const ts_tensor *t) { return t->rank; }
int64_t ts_tensor_dim(const ts_tensor *t, uint32_t i) {
  return i < t->rank ? t->shape[i] : 1;
}
int64_t ts_tensor_count(const ts_tensor *t) { return t->count; }
size_t ts_tensor_size(const ts_tensor *t) {
  return (size_t)t->count * (size_t)(ts_dtype_bits(t->dtype) / 8);
}
void *ts_tensor_data(ts_tensor *t) { return t->data; }

ts_status ts_tensor_write(ts_tensor *t, const void *src, size_t size) {
  if (size != ts_tensor_size(t))
    return ts_status_make(TS_ERR_INVALID, "writing %zu bytes into a tensor of "
                          "%zu", size, ts_tensor_size(t));
  return t->device->ops->write(t->device, t->data, src, size);
}

ts_status ts_tensor_read(const ts_tensor *t, void *dst, size_t size) {
  if (size != ts_tensor_size(t))
    return ts_status_make(TS_ERR_INVALID, "reading %zu bytes from a tensor of "
                          "%zu", size, ts_tensor_size(t));
  return t->device->ops->read(t->device, dst, t->data, size);
}

/* For kernel.c. */
void *ts_tensor_device_ptr(ts_tensor *t) { return t->data; }
