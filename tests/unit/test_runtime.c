/* test_runtime.c - the runtime without the compiler: the CPU device,
 * tensors and views sharing (and keeping alive) their buffer, strides,
 * reads and writes, and bad shapes. */
#include "tests/unit/harness.h"

#include <string.h>

int main(void) {
  ts_device *d;
  CHECK(ts_device_create_cpu(3, &d) == NULL);
  CHECK(ts_device_thread_count(d) == 3 && !strcmp(ts_device_name(d), "cpu"));
  int64_t sh[2] = {4, 5};
  ts_tensor *t;
  CHECK(ts_tensor_create(d, TS_DTYPE_F32, 2, sh, &t) == NULL);
  CHECK(ts_tensor_count(t) == 20 && ts_tensor_size(t) == 80);
  CHECK(ts_tensor_stride(t, 0) == 5 && ts_tensor_stride(t, 1) == 1);
  float v[20];
  for (int i = 0; i < 20; i++)
    v[i] = (float)i;
  CHECK(ts_tensor_write(t, v, sizeof v) == NULL);
  ts_status st = ts_tensor_write(t, v, 8);
  CHECK(ts_status_code(st) == TS_ERR_INVALID);
  ts_status_free(st);

  /* rows 1..2: contiguous, shares the buffer, outlives the tensor */
  ts_tensor *rows;
  CHECK(ts_tensor_slice(t, 0, 1, 2, &rows) == NULL);
  CHECK(ts_tensor_is_contiguous(rows) && ts_tensor_count(rows) == 10);
  ts_tensor_release(t);
  const float *r = ts_tensor_data(rows);
  CHECK(r[0] == 5.0f && r[9] == 14.0f);
  /* columns 2..3 of that: strided */
  ts_tensor *cols;
  CHECK(ts_tensor_slice(rows, 1, 2, 2, &cols) == NULL);
  CHECK(!ts_tensor_is_contiguous(cols) && ts_tensor_stride(cols, 0) == 5);
  CHECK(((const float *)ts_tensor_data(cols))[0] == 7.0f);
  float out[4];
  st = ts_tensor_read(cols, out, sizeof out);
  CHECK(ts_status_code(st) == TS_ERR_UNSUPPORTED);
  ts_status_free(st);
  ts_tensor_release(rows);
  CHECK(((const float *)ts_tensor_data(cols))[1] == 8.0f); /* still alive */
  ts_tensor_release(cols);

  ts_tensor *bad = NULL;
  int64_t neg[1] = {-1};
  st = ts_tensor_create(d, TS_DTYPE_F32, 1, neg, &bad);
  CHECK(ts_status_code(st) == TS_ERR_INVALID);
  ts_status_free(st);
  int64_t huge[2] = {INT64_MAX / 2, 4};
  st = ts_tensor_create(d, TS_DTYPE_F32, 2, huge, &bad);
  CHECK(ts_status_code(st) == TS_ERR_INVALID);
  ts_status_free(st);
  int64_t zero[1] = {0};
  CHECK(ts_tensor_create(d, TS_DTYPE_BF16, 1, zero, &bad) == NULL);
  CHECK(ts_tensor_count(bad) == 0 && ts_tensor_size(bad) == 0);
  ts_tensor_release(bad);
  ts_device_release(d);

  ts_device_probe p;
  ts_runtime_probe(&p);
  CHECK(p.cpu_count >= 1 && p.cuda_message[0]);
  return ts_test_finish();
}
