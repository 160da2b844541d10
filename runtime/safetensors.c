/* safetensors.c - reading .safetensors files: an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte
 * range, then the data. The file is mapped read-only; everything in the
 * header is validated before use (JSON syntax, known dtypes, shapes whose
 * size matches the byte range, ranges inside the data and not overlapping,
 * no name twice) and a problem names the tensor; the JSON is read by
 * base/json.c (syntax errors give line:col, names may use any escape). */
#define _POSIX_C_SOURCE 200809L
#include "runtime/runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20)

struct ts_safetensors {
  char *path;
  const unsigned char *map;
  size_t map_size;
  const unsigned char *data; /* after the header */
  size_t data_size;
  ts_st_tensor *tensors;
  size_t count;
  char **meta_keys, **meta_values;
  size_t meta_count;
};

/* ---- the header ---------------------------------------------------------------- */

static const struct {
  const char *name;
  ts_dtype dtype;
} st_dtypes[] = {
    {"F32", TS_DTYPE_F32},  {"F16", TS_DTYPE_F16},         {"BF16", TS_DTYPE_BF16},
    {"I8", TS_DTYPE_I8},    {"I32", TS_DTYPE_I32},         {"I64", TS_DTYPE_I64},
    {"BOOL", TS_DTYPE_BOOL}, {"F8_E4M3", TS_DTYPE_FP8E4M3},
    /* ue8m0 scale bytes (V4's checkpoints): read as their bytes, i8 */
    {"F8_E8M0", TS_DTYPE_I8},
};

static int cmp_range(const void *a, const void *b) {
  const ts_st_tensor *x = *(const ts_st_tensor *const *)a;
  const ts_st_tensor *y = *(const ts_st_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static ts_status header_error(const char *path, const char *tensor,
                              const char *what) {
  if (tensor)
    return ts_status_make(TS_ERR_INVALID, "%s: tensor '%s': %s", path, tensor,
                          what);
  return ts_status_make(TS_ERR_INVALID, "%s: %s", path, what);
}

/* A copy of a JSON string (a member's name or a string value) as a C
 * string; NULL when it holds a NUL byte (a \u0000 escape), which a C string
 * cannot carry, or when out of memory (*nomem set). */
static char *c_string(const char *s, size_t len, bool *nomem) {
  if (memchr(s, 0, len))
    return NULL;
  char *c = malloc(len + 1);
  if (!c) {
    *nomem = true;
    return NULL;
  }
  memcpy(c, s, len);
  c[len] = 0;
  return c;
}

/* A non-negative integer value, read exactly from the header's text (the
 * tree holds numbers as doubles, which round past 2^53). */
static bool exact_uint(const ts_json *v, const char *text, size_t len,
                       uint64_t *out) {
  if (!v || v->kind != TS_JSON_NUMBER)
    return false;
  const char *p = text + v->offset, *end = text + len;
  if (p >= end || *p < '0' || *p > '9')
    return false;
  uint64_t x = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    if (x > (UINT64_MAX - 9) / 10)
      return false;
    x = x * 10 + (uint64_t)(*p++ - '0');
  }
  if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
    return false;
  *out = x;
  return true;
}

/* An array of at most max such integers into out. */
static bool exact_uints(const ts_json *v, const char *text, size_t len,
                        uint64_t *out, size_t max, size_t *n) {
  if (!v || v->kind != TS_JSON_ARRAY || v->count > max)
    return false;
  for (size_t i = 0; i < v->count; i++)
    if (!exact_uint(&v->items[i], text, len, &out[i]))
      return false;
  *n = v->count;
  return true;
}

static ts_status read_metadata(ts_safetensors *f, const ts_json *m) {
  if (m->kind != TS_JSON_OBJECT)
    return header_error(f->path, NULL, "__metadata__ is not an object");
  if (f->meta_keys)
    return header_error(f->path, NULL, "__metadata__ given twice");
  f->meta_keys = calloc(m->count + 1, sizeof *f->meta_keys);
  f->meta_values = calloc(m->count + 1, sizeof *f->meta_values);
  if (!f->meta_keys || !f->meta_values)
    return ts_status_nomem();
  for (size_t i = 0; i < m->count; i++) {
    const ts_json *v = &m->items[i];
    if (v->kind != TS_JSON_STRING)
      return header_error(f->path, NULL, "__metadata__ values must be strings");
    bool nomem = false;
    char *k = c_string(v->key, v->key_len, &nomem);
    char *s = k ? c_string(v->str, v->len, &nomem) : NULL;
    if (!s) {
      free(k);
      return nomem ? ts_status_nomem()
                   : header_error(f->path, NULL,
                                  "__metadata__ holds a NUL character");
    }
    f->meta_keys[f->meta_count] = k;
    f->meta_values[f->meta_count++] = s;
  }
  return NULL;
}

/* Tensor t's entry e ({"dtype", "shape", "data_offsets"}, other members
 * ignored), validated against the data. */
static ts_status read_entry(ts_safetensors *f, ts_st_tensor *t,
                            const ts_json *e, const char *text, size_t len) {
  const char *name = t->name;
  if (e->kind != TS_JSON_OBJECT)
    return header_error(f->path, name, "its entry is not an object");
  const ts_json *dt = ts_json_get(e, "dtype"), *sh = ts_json_get(e, "shape"),
                *off = ts_json_get(e, "data_offsets");
  if (!dt || !sh || !off)
    return header_error(f->path, name, "needs dtype, shape and data_offsets");
  size_t i = 0;
  if (dt->kind == TS_JSON_STRING)
    while (i < TS_ARRAY_COUNT(st_dtypes) &&
           (strlen(st_dtypes[i].name) != dt->len ||
            memcmp(dt->str, st_dtypes[i].name, dt->len)))
      i++;
  if (dt->kind != TS_JSON_STRING || i == TS_ARRAY_COUNT(st_dtypes)) {
    char msg[96];
    snprintf(msg, sizeof msg, "unsupported dtype '%.40s'",
             dt->kind == TS_JSON_STRING ? dt->str : "?");
    return header_error(f->path, name, msg);
  }
  t->dtype = st_dtypes[i].dtype;
  uint64_t dims[TS_MAX_RANK], r[2];
  size_t n;
  if (!exact_uints(sh, text, len, dims, TS_MAX_RANK, &n))
    return header_error(f->path, name, "bad shape");
  t->rank = (uint32_t)n;
  for (i = 0; i < n; i++) {
    if (dims[i] > (uint64_t)INT64_MAX)
      return header_error(f->path, name, "bad shape");
    t->shape[i] = (int64_t)dims[i];
  }
  if (!exact_uints(off, text, len, r, 2, &n) || n != 2 || r[1] < r[0])
    return header_error(f->path, name, "bad data_offsets");
  t->offset = r[0];
  t->size = r[1] - r[0];
  uint64_t count = 1;
  for (uint32_t d = 0; d < t->rank; d++)
    if (__builtin_mul_overflow(count, (uint64_t)t->shape[d], &count))
      return header_error(f->path, name, "the shape is too large");
  uint64_t bytes;
  if (__builtin_mul_overflow(count, (uint64_t)ts_dtype_bits(t->dtype) / 8,
                             &bytes) ||
      bytes != t->size) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "its shape and dtype make %llu bytes but data_offsets give %llu",
             (unsigned long long)bytes, (unsigned long long)t->size);
    return header_error(f->path, name, msg);
  }
  if (t->offset > f->data_size || t->size > f->data_size - t->offset)
    return header_error(f->path, name,
                        "data_offsets run past the end of the file");
  t->data = f->data + t->offset;
  return NULL;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp((*(const ts_st_tensor *const *)a)->name,
                (*(const ts_st_tensor *const *)b)->name);
}

/* No name twice, and no ranges that overlap. */
static ts_status check_overlaps(ts_safetensors *f) {
  if (f->count < 2)
    return NULL;
  const ts_st_tensor **order = malloc(f->count * sizeof *order);
  if (!order)
    return ts_status_nomem();
  for (size_t i = 0; i < f->count; i++)
    order[i] = &f->tensors[i];
  ts_status st = NULL;
  qsort(order, f->count, sizeof *order, cmp_name);
  for (size_t i = 1; i < f->count && !st; i++)
    if (!strcmp(order[i - 1]->name, order[i]->name))
      st = header_error(f->path, order[i]->name, "named twice");
  qsort(order, f->count, sizeof *order, cmp_range);
  for (size_t i = 1; i < f->count && !st; i++) {
    const ts_st_tensor *a = order[i - 1], *b = order[i];
    if (a->size && b->size && a->offset + a->size > b->offset) {
      char msg[128];
      snprintf(msg, sizeof msg, "its data overlaps tensor '%.60s'", a->name);
      st = header_error(f->path, b->name, msg);
    }
  }
  free(order);
  return st;
}

/* The header: a JSON object (base/json.c; its syntax errors give line:col)
 * of tensor entries by name and an optional __metadata__ of strings. */
static ts_status parse_header(ts_safetensors *f, const char *text, size_t len) {
  ts_json_doc doc;
  ts_status st = ts_json_parse(text, len, &doc);
  if (st) {
    ts_status e = header_error(f->path, NULL, ts_status_message(st));
    ts_status_free(st);
    return e;
  }
  const ts_json *root = doc.root;
  if (root->kind != TS_JSON_OBJECT) {
    ts_json_doc_deinit(&doc);
    return header_error(f->path, NULL, "the header is not a JSON object");
  }
  f->tensors = calloc(root->count + 1, sizeof *f->tensors);
  if (!f->tensors) {
    ts_json_doc_deinit(&doc);
    return ts_status_nomem();
  }
  for (size_t i = 0; i < root->count && !st; i++) {
    const ts_json *e = &root->items[i];
    if (e->key_len == 12 && !memcmp(e->key, "__metadata__", 12)) {
      st = read_metadata(f, e);
      continue;
    }
    bool nomem = false;
    ts_st_tensor *t = &f->tensors[f->count];
    t->name = c_string(e->key, e->key_len, &nomem);
    if (!t->name) {
      st = nomem ? ts_status_nomem()
                 : header_error(f->path, NULL,
                                "a tensor name holds a NUL character");
      break;
    }
    f->count++;
    st = read_entry(f, t, e, text, len);
  }
  ts_json_doc_deinit(&doc);
  return st ? st : check_overlaps(f);
}

ts_status ts_safetensors_open(const char *path, ts_safetensors **out) {
  ts_safetensors *f = calloc(1, sizeof *f);
  if (!f)
    return ts_status_nomem();
  f->path = strdup(path);
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    ts_status st = ts_status_make(TS_ERR_IO, "cannot open '%s': %s", path,
                                  strerror(errno));
    ts_safetensors_close(f);
    return st;
  }
  struct stat sb;
  ts_status st = NULL;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = ts_status_make(TS_ERR_IO, "'%s' is not a regular file", path);
  } else if (sb.st_size < 8) {
    st = header_error(path, NULL, "the file is shorter than its 8-byte header "
                                  "length");
  } else {
    f->map_size = (size_t)sb.st_size;
    void *m = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      st = ts_status_make(TS_ERR_IO, "cannot map '%s': %s", path,
                          strerror(errno));
      f->map_size = 0;
    } else {
      f->map = m;
      uint64_t hlen = 0;
      for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->map[i];
      if (hlen > MAX_HEADER || hlen > f->map_size - 8) {
        st = header_error(path, NULL, "the header length runs past the end "
                                      "of the file");
      } else {
        f->data = f->map + 8 + hlen;
        f->data_size = f->map_size - 8 - (size_t)hlen;
        st = parse_header(f, (const char *)f->map + 8, (size_t)hlen);
      }
    }
  }
  close(fd);
  if (st) {
    ts_safetensors_close(f);
    return st;
  }
  *out = f;
  return NULL;
}

void ts_safetensors_close(ts_safetensors *f) {
  if (!f)
    return;
  for (size_t i = 0; i < f->count; i++)
    free((char *)f->tensors[i].name);
  free(f->tensors);
  for (size_t i = 0; i < f->meta_count; i++) {
    free(f->meta_keys[i]);
    free(f->meta_values[i]);
  }
  free(f->meta_keys);
  free(f->meta_values);
  if (f->map_size)
    munmap((void *)f->map, f->map_size);
  free(f->path);
  free(f);
}

size_t ts_safetensors_count(const ts_safetensors *f) { return f->count; }

const ts_st_tensor *ts_safetensors_at(const ts_safetensors *f, size_t i) {
  return i < f->count ? &f->tensors[i] : NULL;
}

const ts_st_tensor *ts_safetensors_find(const ts_safetensors *f,
                                        const char *name) {
  for (size_t i = 0; i < f->count; i++)
    if (!strcmp(f->tensors[i].name, name))
      return &f->tensors[i];
  return NULL;
}

const char *ts_safetensors_meta(const ts_safetensors *f, const char *key) {
  for (size_t i = 0; i < f->meta_count; i++)
    if (!strcmp(f->meta_keys[i], key))
      return f->meta_values[i];
  return NULL;
}
