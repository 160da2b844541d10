/* tensor.c - reference-counted buffers and tensors: a tensor is a dtype,
 * shape and strides over a buffer it retains; views (slices) share the
 * buffer. Every buffer holds at least one element, which the generated code
 * relies on for predicated-off reads. */
#include "runtime/internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A buffer: device memory, shared by every tensor that views it. */
typedef struct ts_buffer {
  atomic_int refs;
  ts_device *device;
  void *data;
  size_t size;
} ts_buffer;

static void buffer_release(ts_buffer *b) {
  if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
    return;
  b->device->ops->free(b->device, b->data, b->size);
  ts_device_release(b->device);
  free(b);
}

struct ts_tensor {
  atomic_int refs;
  ts_buffer *buffer;
  size_t offset; /* bytes from the buffer's start to element 0 */
  ts_dtype dtype;
  uint32_t rank;
  int64_t shape[TS_MAX_RANK];
  int64_t strides[TS_MAX_RANK]; /* in elements */
  int64_t count;
};

static size_t elem_size(ts_dtype d) { return (size_t)ts_dtype_bits(d) / 8; }

static void contiguous_strides(ts_tensor *t) {
  int64_t s = 1;
  for (uint32_t i = t->rank; i-- > 0;) {
    t->strides[i] = s;
    s *= t->shape[i] > 0 ? t->shape[i] : 1;
  }
}

static ts_status create(ts_device *d, ts_dtype dtype, uint32_t rank,
                        const int64_t *shape, bool empty, ts_tensor **out) {
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
  if (__builtin_mul_overflow(count > 0 ? count : 1, (int64_t)elem_size(dtype),
                             &bytes))
    return ts_status_make(TS_ERR_INVALID, "the tensor is too large");
  ts_tensor *t = calloc(1, sizeof *t);
  ts_buffer *b = calloc(1, sizeof *b);
  if (!t || !b) {
    free(t);
    free(b);
    return ts_status_nomem();
  }
  ts_status st = d->ops->alloc(d, (size_t)bytes, &b->data);
  if (st) {
    free(t);
    free(b);
    return ts_status_annotate(st, "allocating a tensor");
  }
  if (!empty)
    st = d->ops->zero(d, b->data, (size_t)bytes);
  else if (ts_device_is_host(d))
    memset(b->data, 0xff, (size_t)bytes); /* poison: NaN, -1 */
  if (st) {
    d->ops->free(d, b->data, (size_t)bytes);
    free(t);
    free(b);
    return ts_status_annotate(st, "zeroing a tensor");
  }
  atomic_init(&b->refs, 1);
  b->device = ts_device_retain(d);
  b->size = (size_t)bytes;
  atomic_init(&t->refs, 1);
  t->buffer = b;
  t->dtype = dtype;
  t->rank = rank;
  memcpy(t->shape, shape, rank * sizeof *shape);
  contiguous_strides(t);
  t->count = count;
  if (!empty && d->rec)
    ts_graph_add_zero(t);
  *out = t;
  return NULL;
}

ts_status ts_tensor_create(ts_device *d, ts_dtype dtype, uint32_t rank,
                           const int64_t *shape, ts_tensor **out) {
  return create(d, dtype, rank, shape, false, out);
}

ts_status ts_tensor_create_empty(ts_device *d, ts_dtype dtype, uint32_t rank,
                                 const int64_t *shape, ts_tensor **out) {
  return create(d, dtype, rank, shape, true, out);
}

ts_status ts_tensor_slice(ts_tensor *t, uint32_t dim, int64_t start,
                          int64_t len, ts_tensor **out) {
  if (dim >= t->rank)
    return ts_status_make(TS_ERR_INVALID, "slice of dim %u of a %u-d tensor",
                          dim, t->rank);
  if (start < 0 || len < 0 || start > t->shape[dim] ||
      len > t->shape[dim] - start)
    return ts_status_make(TS_ERR_INVALID, "slice [%lld, %lld) of a dim of %lld",
                          (long long)start, (long long)(start + len),
                          (long long)t->shape[dim]);
  ts_tensor *v = calloc(1, sizeof *v);
  if (!v)
    return ts_status_nomem();
  *v = (ts_tensor){.dtype = t->dtype, .rank = t->rank};
  atomic_init(&v->refs, 1);
  memcpy(v->shape, t->shape, sizeof v->shape);
  memcpy(v->strides, t->strides, sizeof v->strides);
  v->shape[dim] = len;
  v->offset = t->offset + (size_t)(start * t->strides[dim]) * elem_size(t->dtype);
  v->count = 1;
  for (uint32_t i = 0; i < v->rank; i++)
    v->count *= v->shape[i];
  v->buffer = t->buffer;
  atomic_fetch_add(&t->buffer->refs, 1); /* the view retains the buffer */
  *out = v;
  return NULL;
}

ts_status ts_tensor_reshape(ts_tensor *t, uint32_t rank, const int64_t *shape,
                            ts_tensor **out) {
  if (!ts_tensor_is_contiguous(t))
    return ts_status_make(TS_ERR_UNSUPPORTED, "reshaping a strided view");
  if (rank > TS_MAX_RANK)
    return ts_status_make(TS_ERR_INVALID, "a tensor has at most %d dims",
                          TS_MAX_RANK);
  int64_t count = 1;
  for (uint32_t i = 0; i < rank; i++) {
    if (shape[i] < 0 || __builtin_mul_overflow(count, shape[i], &count))
      return ts_status_make(TS_ERR_INVALID, "bad shape for a reshape");
  }
  if (count != t->count)
    return ts_status_make(TS_ERR_INVALID, "reshape of %lld elements into %lld",
                          (long long)t->count, (long long)count);
  ts_tensor *v = calloc(1, sizeof *v);
  if (!v)
    return ts_status_nomem();
  *v = (ts_tensor){.dtype = t->dtype, .rank = rank, .offset = t->offset,
                   .count = count, .buffer = t->buffer};
  atomic_init(&v->refs, 1);
  memcpy(v->shape, shape, rank * sizeof *shape);
  contiguous_strides(v);
  atomic_fetch_add(&t->buffer->refs, 1);
  *out = v;
  return NULL;
}

bool ts_tensor_is_contiguous(const ts_tensor *t) {
  if (t->count == 0)
    return true; /* no element out of place */
  int64_t s = 1;
  for (uint32_t i = t->rank; i-- > 0;) {
    if (t->shape[i] != 1 && t->strides[i] != s)
      return false;
    s *= t->shape[i];
  }
  return true;
}

int64_t ts_tensor_stride(const ts_tensor *t, uint32_t i) {
  return i < t->rank ? t->strides[i] : 1;
}

ts_tensor *ts_tensor_retain(ts_tensor *t) {
  atomic_fetch_add(&t->refs, 1);
  return t;
}

void ts_tensor_release(ts_tensor *t) {
  if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
    return;
  buffer_release(t->buffer);
  free(t);
}

ts_dtype ts_tensor_dtype(const ts_tensor *t) { return t->dtype; }
uint32_t ts_tensor_rank(const ts_tensor *t) { return t->rank; }
int64_t ts_tensor_dim(const ts_tensor *t, uint32_t i) {
  return i < t->rank ? t->shape[i] : 1;
}
int64_t ts_tensor_count(const ts_tensor *t) { return t->count; }
size_t ts_tensor_size(const ts_tensor *t) {
  return (size_t)t->count * elem_size(t->dtype);
}
void *ts_tensor_data(ts_tensor *t) {
  return (char *)t->buffer->data + t->offset;
}
ts_device *ts_tensor_device(const ts_tensor *t) { return t->buffer->device; }

/* v as an integer of [lo, hi]: truncated toward zero, clamped (NaN is 0) */
static int64_t int_of(double v, int64_t lo, int64_t hi) {
  if (!(v == v))
    return 0;
  if (v <= (double)lo)
    return lo;
  if (v >= (double)hi) /* (hi of i64 rounds up to 2^63: clamped here too) */
    return hi;
  return (int64_t)v;
}

void ts_tensor_set_int(ts_tensor *t, int64_t i, int64_t v) {
  void *p = ts_tensor_data(t);
  int64_t lo, hi;
  ts_dtype dt = ts_tensor_dtype(t);
  if (dt == TS_DTYPE_BOOL || !ts_dtype_int_range(dt, &lo, &hi)) {
    ts_tensor_set(t, i, (double)v);
    return;
  }
  v = v < lo ? lo : v > hi ? hi : v;
  switch (dt) {
  case TS_DTYPE_I8: ((int8_t *)p)[i] = (int8_t)v; break;
  case TS_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  default: ((int64_t *)p)[i] = v; break;
  }
}

void ts_tensor_set(ts_tensor *t, int64_t i, double v) {
  void *p = ts_tensor_data(t);
  int64_t lo, hi;
  ts_dtype dt = ts_tensor_dtype(t);
  if (dt != TS_DTYPE_BOOL && ts_dtype_int_range(dt, &lo, &hi)) {
    ts_tensor_set_int(t, i, int_of(v, lo, hi));
    return;
  }
  switch (dt) {
  case TS_DTYPE_F32: ((float *)p)[i] = (float)v; break;
  case TS_DTYPE_BF16: ((uint16_t *)p)[i] = ts_f32_to_bf16((float)v); break;
  case TS_DTYPE_F16: ((uint16_t *)p)[i] = ts_f32_to_f16((float)v); break;
  case TS_DTYPE_FP8E4M3: ((uint8_t *)p)[i] = ts_f32_to_e4m3((float)v); break;
  default: ((uint8_t *)p)[i] = v != 0; break;
  }
}

double ts_tensor_get(ts_tensor *t, int64_t i) {
  void *p = ts_tensor_data(t);
  switch (ts_tensor_dtype(t)) {
  case TS_DTYPE_F32: return ((float *)p)[i];
  case TS_DTYPE_BF16: return ts_bf16_to_f32(((uint16_t *)p)[i]);
  case TS_DTYPE_F16: return ts_f16_to_f32(((uint16_t *)p)[i]);
  case TS_DTYPE_FP8E4M3: return ts_e4m3_to_f32(((uint8_t *)p)[i]);
  case TS_DTYPE_I8: return ((int8_t *)p)[i];
  case TS_DTYPE_I32: return ((int32_t *)p)[i];
  case TS_DTYPE_I64: return (double)((int64_t *)p)[i];
  default: return ((uint8_t *)p)[i];
  }
}

int64_t ts_tensor_get_int(ts_tensor *t, int64_t i) {
  if (ts_tensor_dtype(t) == TS_DTYPE_I64)
    return ((int64_t *)ts_tensor_data(t))[i];
  return int_of(ts_tensor_get(t, i), INT64_MIN, INT64_MAX);
}

static ts_status need_contiguous(const ts_tensor *t, const char *what) {
  if (!ts_tensor_is_contiguous(t))
    return ts_status_make(TS_ERR_UNSUPPORTED, "%s a strided view is not "
                          "supported yet; slice along the first dim",
                          what);
  return NULL;
}

ts_status ts_tensor_write(ts_tensor *t, const void *src, size_t size) {
  TS_TRY(need_contiguous(t, "writing into"));
  if (size != ts_tensor_size(t))
    return ts_status_make(TS_ERR_INVALID, "writing %zu bytes into a tensor of "
                          "%zu", size, ts_tensor_size(t));
  ts_device *d = t->buffer->device;
  TS_TRY(d->ops->write(d, ts_tensor_data(t), src, size));
  if (d->rec)
    ts_graph_add_write(t, src, size);
  return NULL;
}

ts_status ts_tensor_read(const ts_tensor *t, void *dst, size_t size) {
  TS_TRY(need_contiguous(t, "reading from"));
  if (size != ts_tensor_size(t))
    return ts_status_make(TS_ERR_INVALID, "reading %zu bytes from a tensor of "
                          "%zu", size, ts_tensor_size(t));
  ts_device *d = t->buffer->device;
  TS_TRY(ts_graph_refuse(d, "reading a tensor into host memory"));
  return d->ops->read(d, dst, ts_tensor_data((ts_tensor *)t), size);
}

ts_status ts_tensor_assign(ts_tensor *dst, const ts_tensor *src) {
  TS_TRY(need_contiguous(dst, "writing into"));
  TS_TRY(need_contiguous(src, "reading from"));
  if (dst->dtype != src->dtype || ts_tensor_count(dst) != ts_tensor_count(src))
    return ts_status_make(TS_ERR_INVALID,
                          "assigning %s[%lld] to %s[%lld]: the dtype and the "
                          "element count must agree",
                          ts_dtype_name(src->dtype),
                          (long long)ts_tensor_count(src),
                          ts_dtype_name(dst->dtype),
                          (long long)ts_tensor_count(dst));
  size_t size = ts_tensor_size(src);
  ts_device *sd = src->buffer->device, *dd = dst->buffer->device;
  void *from = ts_tensor_data((ts_tensor *)src);
  /* (recorded where dst's device records: a copy within it, or from
   * another device a write of the bytes as they are now) */
  if (sd != dd)
    TS_TRY(ts_graph_refuse(sd, "a copy to another device"));
  if (ts_device_is_host(sd) && ts_device_is_host(dd)) {
    memmove(ts_tensor_data(dst), from, size);
    if (dd->rec && sd == dd)
      ts_graph_add_copy(dst, src);
    else if (dd->rec)
      ts_graph_add_write(dst, ts_tensor_data(dst), size);
    return NULL;
  }
  if (ts_device_is_host(sd))
    return ts_tensor_write(dst, from, size);
  if (ts_device_is_host(dd))
    return ts_tensor_read(src, ts_tensor_data(dst), size);
  uintptr_t to = (uintptr_t)ts_tensor_data(dst), fr = (uintptr_t)from;
  if (sd == dd && (to + size <= fr || fr + size <= to)) {
    TS_TRY(sd->ops->copy(sd, (void *)to, from, size));
    if (dd->rec)
      ts_graph_add_copy(dst, src);
    return NULL;
  }
  TS_TRY(ts_graph_refuse(dd, "an overlapping copy (through host memory)"));
  /* between devices, or overlapping: through the host */
  void *tmp = malloc(size ? size : 1);
  if (!tmp)
    return ts_status_make(TS_ERR_NOMEM, "staging %zu bytes", size);
  ts_status st = ts_tensor_read(src, tmp, size);
  if (!st)
    st = ts_tensor_write(dst, tmp, size);
  free(tmp);
  return st;
}

ts_status ts_tensor_copy(ts_tensor *t, ts_device *d, ts_tensor **out) {
  TS_TRY(need_contiguous(t, "copying"));
  ts_tensor *c;
  TS_TRY(ts_tensor_create(d, t->dtype, t->rank, t->shape, &c));
  size_t size = ts_tensor_size(t);
  ts_status st = NULL;
  if (t->buffer->device == d) {
    st = ts_device_is_host(d) ? (memcpy(ts_tensor_data(c), ts_tensor_data(t), size), NULL)
                              : d->ops->copy(d, ts_tensor_data(c), ts_tensor_data(t), size);
    if (!st && d->rec)
      ts_graph_add_copy(c, t);
  } else if ((st = ts_graph_refuse(t->buffer->device, ts_device_is_host(d)
                                       ? "reading a tensor into host memory"
                                       : "a copy to another device"))) {
  } else if (ts_device_is_host(d)) {
    st = ts_tensor_read(t, ts_tensor_data(c), size);
    if (!st && d->rec)
      ts_graph_add_write(c, ts_tensor_data(c), size);
  } else if (ts_device_is_host(t->buffer->device)) {
    st = ts_tensor_write(c, ts_tensor_data(t), size);
  } else {
    void *h = malloc(size ? size : 1);
    st = h ? ts_tensor_read(t, h, size) : ts_status_nomem();
    if (!st)
      st = ts_tensor_write(c, h, size);
    free(h);
  }
  if (st) {
    ts_tensor_release(c);
    return st;
  }
  *out = c;
  return NULL;
}

/* For kernel.c. */
void *ts_tensor_device_ptr(ts_tensor *t) { return ts_tensor_data(t); }
