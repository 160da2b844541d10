/* safetensors.c - reading .safetensors files: an 8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte
 * range, then the data. The file is mapped read-only; everything in the
 * header is validated before use (JSON syntax, known dtypes, shapes whose
 * size matches the byte range, ranges inside the data and not overlapping)
 * and a problem names the tensor. */
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

/* ---- a small JSON reader (enough for safetensors headers) ------------------ */

typedef struct json {
  const char *p, *end;
  const char *err;
  int depth;
} json;

static void skip_ws(json *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t'))
    j->p++;
}

static bool expect_ch(json *j, char c) {
  skip_ws(j);
  if (j->p < j->end && *j->p == c) {
    j->p++;
    return true;
  }
  if (!j->err)
    j->err = "malformed JSON";
  return false;
}

/* A string, unescaped into a new allocation (NULL on error). */
static char *parse_string(json *j) {
  skip_ws(j);
  if (j->p >= j->end || *j->p != '"') {
    j->err = "expected a JSON string";
    return NULL;
  }
  j->p++;
  size_t cap = 32, n = 0;
  char *s = malloc(cap);
  if (!s) {
    j->err = "out of memory";
    return NULL;
  }
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if ((unsigned char)c < 0x20) {
      j->err = "control character in a JSON string";
      free(s);
      return NULL;
    }
    if (c == '\\') {
      if (j->p >= j->end)
        break;
      char e = *j->p++;
      switch (e) {
      case 'n': c = '\n'; break;
      case 't': c = '\t'; break;
      case 'r': c = '\r'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case '/': case '\\': case '"': c = e; break;
      case 'u':
        if (j->end - j->p < 4) {
          j->err = "bad \\u escape";
          free(s);
          return NULL;
        }
        j->p += 4; /* kept as '?': names in Tessera's files are ASCII */
        c = '?';
        break;
      default:
        j->err = "bad escape in a JSON string";
        free(s);
        return NULL;
      }
    }
    if (n + 2 > cap) {
      char *t = realloc(s, cap *= 2);
      if (!t) {
        free(s);
        j->err = "out of memory";
        return NULL;
      }
      s = t;
    }
    s[n++] = c;
  }
  if (j->p >= j->end) {
    j->err = "unterminated JSON string";
    free(s);
    return NULL;
  }
  j->p++;
  s[n] = 0;
  return s;
}

static bool parse_uint(json *j, uint64_t *out) {
  skip_ws(j);
  if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
    j->err = "expected a non-negative integer";
    return false;
  }
  uint64_t v = 0;
  while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
    if (v > (UINT64_MAX - 9) / 10) {
      j->err = "integer too large";
      return false;
    }
    v = v * 10 + (uint64_t)(*j->p++ - '0');
  }
  *out = v;
  return true;
}

/* [u, u, ...] into out (at most max). */
static bool parse_uint_array(json *j, uint64_t *out, size_t max, size_t *n) {
  if (!expect_ch(j, '['))
    return false;
  *n = 0;
  skip_ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
    return true;
  }
  do {
    if (*n == max) {
      j->err = "too many dims";
      return false;
    }
    if (!parse_uint(j, &out[(*n)++]))
      return false;
    skip_ws(j);
  } while (j->p < j->end && *j->p == ',' && j->p++);
  return expect_ch(j, ']');
}

/* Skips any JSON value (for unknown keys), depth-limited. */
static bool skip_value(json *j) {
  skip_ws(j);
  if (j->p >= j->end) {
    j->err = "truncated JSON";
    return false;
  }
  if (++j->depth > 64) {
    j->err = "JSON nested too deep";
    return false;
  }
  bool ok = true;
  char c = *j->p;
  if (c == '"') {
    free(parse_string(j));
    ok = !j->err;
  } else if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    skip_ws(j);
    if (j->p < j->end && *j->p == close) {
      j->p++;
    } else {
      do {
        if (c == '{') {
          free(parse_string(j));
          if (j->err || !expect_ch(j, ':'))
            return false;
        }
        if (!skip_value(j))
          return false;
        skip_ws(j);
      } while (j->p < j->end && *j->p == ',' && j->p++);
      ok = expect_ch(j, close);
    }
  } else {
    const char *s = j->p;
    while (j->p < j->end && (strchr("+-.eE", *j->p) || (*j->p >= '0' && *j->p <= '9') ||
                             (*j->p >= 'a' && *j->p <= 'z')))
      j->p++;
    if (j->p == s) {
      j->err = "malformed JSON value";
      ok = false;
    }
  }
  j->depth--;
  return ok;
}

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

static ts_status parse_header(ts_safetensors *f, const char *text, size_t len) {
  json j = {text, text + len, NULL, 0};
  if (!expect_ch(&j, '{'))
    return header_error(f->path, NULL, "the header is not a JSON object");
  size_t cap = 16;
  f->tensors = calloc(cap, sizeof *f->tensors);
  if (!f->tensors)
    return ts_status_nomem();
  skip_ws(&j);
  bool empty = j.p < j.end && *j.p == '}';
  while (!empty) {
    char *name = parse_string(&j);
    if (!name || !expect_ch(&j, ':')) {
      free(name);
      return header_error(f->path, NULL, j.err ? j.err : "malformed JSON");
    }
    if (!strcmp(name, "__metadata__")) {
      free(name);
      if (!expect_ch(&j, '{'))
        return header_error(f->path, NULL, "__metadata__ is not an object");
      skip_ws(&j);
      if (j.p < j.end && *j.p == '}') {
        j.p++;
      } else {
        do {
          char *k = parse_string(&j);
          char *v = k && expect_ch(&j, ':') ? parse_string(&j) : NULL;
          if (!k || !v) {
            free(k);
            free(v);
            return header_error(f->path, NULL,
                                "__metadata__ values must be strings");
          }
          char **nk = realloc(f->meta_keys, (f->meta_count + 1) * sizeof *nk);
          if (nk)
            f->meta_keys = nk;
          char **nv = realloc(f->meta_values, (f->meta_count + 1) * sizeof *nv);
          if (nv)
            f->meta_values = nv;
          if (!nk || !nv) {
            free(k);
            free(v);
            return ts_status_nomem();
          }
          f->meta_keys[f->meta_count] = k;
          f->meta_values[f->meta_count++] = v;
          skip_ws(&j);
        } while (j.p < j.end && *j.p == ',' && j.p++);
        if (!expect_ch(&j, '}'))
          return header_error(f->path, NULL, "malformed __metadata__");
      }
    } else {
      if (f->count == cap) {
        ts_st_tensor *t = realloc(f->tensors, (cap *= 2) * sizeof *t);
        if (!t) {
          free(name);
          return ts_status_nomem();
        }
        f->tensors = t;
      }
      ts_st_tensor *t = &f->tensors[f->count++];
      memset(t, 0, sizeof *t);
      t->name = name;
      bool have_dtype = false, have_shape = false, have_range = false;
      if (!expect_ch(&j, '{'))
        return header_error(f->path, name, "its entry is not an object");
      do {
        char *key = parse_string(&j);
        if (!key || !expect_ch(&j, ':')) {
          free(key);
          return header_error(f->path, name, "malformed entry");
        }
        if (!strcmp(key, "dtype")) {
          char *d = parse_string(&j);
          size_t i = 0;
          while (d && i < TS_ARRAY_COUNT(st_dtypes) && strcmp(d, st_dtypes[i].name))
            i++;
          if (!d || i == TS_ARRAY_COUNT(st_dtypes)) {
            char msg[96];
            snprintf(msg, sizeof msg, "unsupported dtype '%.40s'", d ? d : "?");
            free(d);
            free(key);
            return header_error(f->path, name, msg);
          }
          free(d);
          t->dtype = st_dtypes[i].dtype;
          have_dtype = true;
        } else if (!strcmp(key, "shape")) {
          uint64_t dims[TS_MAX_RANK];
          size_t n;
          if (!parse_uint_array(&j, dims, TS_MAX_RANK, &n)) {
            free(key);
            return header_error(f->path, name, "bad shape");
          }
          t->rank = (uint32_t)n;
          for (size_t i = 0; i < n; i++) {
            if (dims[i] > (uint64_t)INT64_MAX) {
              free(key);
              return header_error(f->path, name, "bad shape");
            }
            t->shape[i] = (int64_t)dims[i];
          }
          have_shape = true;
        } else if (!strcmp(key, "data_offsets")) {
          uint64_t r[2];
          size_t n;
          if (!parse_uint_array(&j, r, 2, &n) || n != 2 || r[1] < r[0]) {
            free(key);
            return header_error(f->path, name, "bad data_offsets");
          }
          t->offset = r[0];
          t->size = r[1] - r[0];
          have_range = true;
        } else if (!skip_value(&j)) {
          free(key);
          return header_error(f->path, name, "malformed entry");
        }
        free(key);
        skip_ws(&j);
      } while (j.p < j.end && *j.p == ',' && j.p++);
      if (!expect_ch(&j, '}'))
        return header_error(f->path, name, "malformed entry");
      if (!have_dtype || !have_shape || !have_range)
        return header_error(f->path, name,
                            "needs dtype, shape and data_offsets");
      uint64_t count = 1;
      for (uint32_t i = 0; i < t->rank; i++)
        if (__builtin_mul_overflow(count, (uint64_t)t->shape[i], &count))
          return header_error(f->path, name, "the shape is too large");
      uint64_t bytes;
      if (__builtin_mul_overflow(count, (uint64_t)ts_dtype_bits(t->dtype) / 8,
                                 &bytes) ||
          bytes != t->size) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "its shape and dtype make %llu bytes but data_offsets "
                 "give %llu",
                 (unsigned long long)bytes, (unsigned long long)t->size);
        return header_error(f->path, name, msg);
      }
      if (t->offset > f->data_size || t->size > f->data_size - t->offset)
        return header_error(f->path, name,
                            "data_offsets run past the end of the file");
      t->data = f->data + t->offset;
    }
    skip_ws(&j);
    if (j.p < j.end && *j.p == ',') {
      j.p++;
      continue;
    }
    break;
  }
  if (!expect_ch(&j, '}'))
    return header_error(f->path, NULL, "malformed JSON header");
  skip_ws(&j);
  if (j.p != j.end)
    return header_error(f->path, NULL, "bytes after the JSON header");
  /* Ranges must not overlap (duplicate names are overlaps too). */
  if (f->count > 1) {
    const ts_st_tensor **order = malloc(f->count * sizeof *order);
    if (!order)
      return ts_status_nomem();
    for (size_t i = 0; i < f->count; i++)
      order[i] = &f->tensors[i];
    qsort(order, f->count, sizeof *order, cmp_range);
    ts_status st = NULL;
    for (size_t i = 1; i < f->count && !st; i++) {
      const ts_st_tensor *a = order[i - 1], *b = order[i];
      if (a->size && b->size && a->offset + a->size > b->offset) {
        char msg[128];
        snprintf(msg, sizeof msg, "its data overlaps tensor '%.60s'", a->name);
        st = header_error(f->path, b->name, msg);
      }
    }
    free(order);
    if (st)
      return st;
  }
  return NULL;
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
