/* test_safetensors.c - the safetensors reader: a file it wrote by hand reads
 * back, every kind of damage is refused with the tensor named, and the
 * golden files in ../shared/golden (when present) open and validate. */
#define _POSIX_C_SOURCE 200809L
#include "tests/unit/harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/ts_st_XXXXXX";

/* Writes a file: header text, then `data_len` bytes of data. */
static void write_file(const char *header, size_t data_len) {
  FILE *f = fopen(path, "wb");
  uint64_t n = strlen(header);
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)(n >> (8 * i));
  fwrite(len, 1, 8, f);
  fwrite(header, 1, n, f);
  for (size_t i = 0; i < data_len; i++)
    fputc((int)(i & 0xff), f);
  fclose(f);
}

static void expect_error(const char *header, size_t data_len,
                         const char *needle) {
  write_file(header, data_len);
  ts_safetensors *f = NULL;
  ts_status st = ts_safetensors_open(path, &f);
  bool ok = st && strstr(ts_status_message(st), needle);
  if (!ok)
    fprintf(stderr, "header %s: got '%s', wanted '%s'\n", header,
            st ? ts_status_message(st) : "success", needle);
  CHECK(ok);
  ts_status_free(st);
  if (!st)
    ts_safetensors_close(f);
}

int main(void) {
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  write_file("{\"__metadata__\":{\"seed\":\"1\"},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
             "\"c\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[32,36]}}",
             36);
  ts_safetensors *f;
  ts_status st = ts_safetensors_open(path, &f);
  CHECK(st == NULL);
  if (!st) {
    CHECK(ts_safetensors_count(f) == 3);
    const ts_st_tensor *a = ts_safetensors_find(f, "a");
    CHECK(a && a->dtype == TS_DTYPE_F32 && a->rank == 2 && a->shape[1] == 3);
    const ts_st_tensor *b = ts_safetensors_find(f, "b");
    CHECK(b && ((const unsigned char *)b->data)[0] == 24);
    CHECK(ts_safetensors_find(f, "c")->rank == 0);
    CHECK(!ts_safetensors_find(f, "d"));
    CHECK(!strcmp(ts_safetensors_meta(f, "seed"), "1"));
    ts_safetensors_close(f);
  }
  ts_status_free(st);

  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}",
               12, "tensor 'a': its shape and dtype make 8 bytes");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
               8, "tensor 'a': data_offsets run past the end");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, "overlaps tensor 'a'");
  expect_error("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,2]}}",
               2, "unsupported dtype 'Q4'");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
               "needs dtype, shape and data_offsets");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}",
               8, "bad data_offsets");
  /* JSON syntax errors say where (base/json.c) */
  expect_error("{\"a\": [1, 2", 8, "JSON 1:12: ");
  expect_error("[]", 0, "not a JSON object");
  expect_error("{} trailing", 0, "JSON 1:4: text after the value");
  expect_error("{\"a\":{\"dtype\":\"F32\",\n \"shape\":[2,]}}", 8, "JSON 2:13: ");
  /* integers exactly as written (a double would give ...992), and only
   * integers */
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,9007199254740993]}}",
               8, "data_offsets give 9007199254740993");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
               "tensor 'a': bad shape");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
               "tensor 'a': bad shape");
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}}", 8,
               "tensor 'a': bad data_offsets");
  expect_error("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               "tensor 'a': unsupported dtype '?'");
  expect_error("{\"a\":5}", 8, "tensor 'a': its entry is not an object");
  /* a name twice (even of empty tensors, which cannot overlap), a NUL in a
   * name, __metadata__ twice or not of strings */
  expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
               0, "tensor 'a': named twice");
  expect_error("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0,
               "a tensor name holds a NUL character");
  expect_error("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ given twice");
  expect_error("{\"__metadata__\":{\"n\":1}}", 0, "__metadata__ values must be strings");

  /* names and metadata with escapes read as their characters (they were
   * '?' before the header moved onto base/json.c) */
  write_file("{\"__metadata__\":{\"note\":\"caf\\u00e9 \\\"x\\\"\"},"
             "\"w\\u00e9ight.\\ud83d\\ude00\":{\"dtype\":\"I8\",\"shape\":[2],"
             "\"data_offsets\":[0,2],\"extra\":[{\"x\":null}]},"
             "\"q\\\"uote\\/\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
             3);
  st = ts_safetensors_open(path, &f);
  CHECK(st == NULL);
  if (!st) {
    CHECK(ts_safetensors_count(f) == 2);
    const ts_st_tensor *w = ts_safetensors_find(f, "w\xc3\xa9ight.\xf0\x9f\x98\x80");
    CHECK(w && w->shape[0] == 2 && ((const unsigned char *)w->data)[1] == 1);
    CHECK(ts_safetensors_find(f, "q\"uote/") != NULL);
    const char *note = ts_safetensors_meta(f, "note");
    CHECK(note && !strcmp(note, "caf\xc3\xa9 \"x\""));
    ts_safetensors_close(f);
  }
  ts_status_free(st);
  /* a header length past the end */
  FILE *fp = fopen(path, "wb");
  unsigned char big[8] = {0xff, 0xff, 0, 0, 0, 0, 0, 0};
  fwrite(big, 1, 8, fp);
  fclose(fp);
  st = ts_safetensors_open(path, &f);
  CHECK(st && strstr(ts_status_message(st), "runs past the end"));
  ts_status_free(st);
  fp = fopen(path, "wb");
  fclose(fp);
  st = ts_safetensors_open(path, &f);
  CHECK(st && strstr(ts_status_message(st), "shorter than"));
  ts_status_free(st);
  unlink(path);
  st = ts_safetensors_open(path, &f);
  CHECK(ts_status_code(st) == TS_ERR_IO);
  ts_status_free(st);

  /* The golden files, when present. */
  const char *golden[] = {"weights", "f32", "bf16"};
  const char *root = getenv("TS_SOURCE_DIR");
  for (int i = 0; i < 3 && root; i++) {
    char p[1024];
    snprintf(p, sizeof p, "%s/../shared/golden/tiny/%s.safetensors", root,
             golden[i]);
    if (access(p, R_OK) != 0) {
      printf("skipped: %s is not present\n", p);
      continue;
    }
    st = ts_safetensors_open(p, &f);
    if (st)
      fprintf(stderr, "%s\n", ts_status_message(st));
    CHECK(st == NULL);
    if (!st) {
      CHECK(ts_safetensors_count(f) > 10);
      ts_safetensors_close(f);
    }
    ts_status_free(st);
  }
  return ts_test_finish();
}
