/* test_runtime.c - the runtime without the compiler: the CPU device,
 * tensors and views sharing (and keeping alive) their buffer, strides,
 * reads and writes, and bad shapes; graphs of zeroing, writes and copies
 * (runtime/graph.c: what they record and replay, what they refuse). */
#include "tests/unit/harness.h"

#include <math.h>
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

  /* element values through the C API: integers clamped to their dtype's
   * range and truncated (NaN is 0; the casts were undefined behaviour), an
   * i64 exact past 2^53, the ranges of every integer dtype and bool */
  int64_t n4[1] = {4};
  ts_tensor *iv[3];
  ts_dtype its[3] = {TS_DTYPE_I8, TS_DTYPE_I32, TS_DTYPE_I64};
  for (int k = 0; k < 3; k++) {
    CHECK(ts_tensor_create(d, its[k], 1, n4, &iv[k]) == NULL);
    ts_tensor_set(iv[k], 0, 1e30);
    ts_tensor_set(iv[k], 1, -1e30);
    ts_tensor_set(iv[k], 2, -2.7);
    ts_tensor_set(iv[k], 3, NAN);
    int64_t rlo, rhi;
    CHECK(ts_dtype_int_range(its[k], &rlo, &rhi));
    CHECK(ts_tensor_get_int(iv[k], 0) == rhi && ts_tensor_get_int(iv[k], 1) == rlo);
    CHECK(ts_tensor_get_int(iv[k], 2) == -2 && ts_tensor_get_int(iv[k], 3) == 0);
    ts_tensor_set_int(iv[k], 0, INT64_MIN + 1);
    CHECK(ts_tensor_get_int(iv[k], 0) == rlo + (k == 2));
  }
  int64_t lo, hi;
  CHECK(ts_dtype_int_range(TS_DTYPE_I8, &lo, &hi) && lo == -128 && hi == 127);
  CHECK(ts_dtype_int_range(TS_DTYPE_I32, &lo, &hi) && lo == INT32_MIN && hi == INT32_MAX);
  CHECK(ts_dtype_int_range(TS_DTYPE_I64, &lo, &hi) && lo == INT64_MIN && hi == INT64_MAX);
  CHECK(ts_dtype_int_range(TS_DTYPE_BOOL, &lo, &hi) && lo == 0 && hi == 1);
  CHECK(!ts_dtype_int_range(TS_DTYPE_BF16, &lo, &hi));
  ts_tensor_set_int(iv[2], 1, ((int64_t)1 << 62) + 1);
  CHECK(ts_tensor_get_int(iv[2], 1) == ((int64_t)1 << 62) + 1);
  for (int k = 0; k < 3; k++)
    ts_tensor_release(iv[k]);

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

  /* a graph: a tensor made zeroed, a write from the host (its bytes as they
   * were), a copy; the replay does them again */
  ts_graph *g = NULL;
  st = ts_graph_end(d, &g);
  CHECK(ts_status_code(st) == TS_ERR_INVALID && !g); /* not recording */
  ts_status_free(st);
  ts_graph_abort(d); /* (nothing recorded: nothing done) */
  int64_t four[1] = {4};
  ts_tensor *src, *z, *dst;
  CHECK(ts_tensor_create(d, TS_DTYPE_F32, 1, four, &dst) == NULL);
  CHECK(ts_graph_begin(d) == NULL && ts_graph_recording(d));
  st = ts_graph_begin(d);
  CHECK(ts_status_code(st) == TS_ERR_INVALID); /* one at a time */
  ts_status_free(st);
  CHECK(ts_tensor_create(d, TS_DTYPE_F32, 1, four, &z) == NULL);
  CHECK(ts_tensor_create_empty(d, TS_DTYPE_F32, 1, four, &src) == NULL);
  float w4[4] = {1, 2, 3, 4};
  CHECK(ts_tensor_write(src, w4, sizeof w4) == NULL);
  w4[0] = 99; /* (the graph keeps the bytes written) */
  CHECK(ts_tensor_assign(dst, src) == NULL);
  CHECK(ts_graph_end(d, &g) == NULL && g && !ts_graph_recording(d));
  ts_graph_counts n;
  ts_graph_counts_get(g, &n);
  CHECK(n.launches == 0 && n.zeroes == 1 && n.writes == 1 && n.copies == 1 &&
        n.write_bytes == 16);
  float *zp = ts_tensor_data(z), *sp = ts_tensor_data(src), *dp = ts_tensor_data(dst);
  zp[1] = 5, sp[2] = -1, dp[3] = -1;
  ts_tensor_release(z); /* (the graph keeps what it names) */
  CHECK(ts_graph_replay(g) == NULL);
  CHECK(zp[1] == 0 && sp[0] == 1 && sp[2] == 3 && dp[3] == 4);
  /* a read into host memory while recording fails it */
  CHECK(ts_graph_begin(d) == NULL);
  st = ts_tensor_read(dst, w4, sizeof w4);
  CHECK(ts_status_code(st) == TS_ERR_INVALID &&
        strstr(ts_status_message(st), "reading a tensor into host memory"));
  ts_status_free(st);
  st = ts_graph_replay(g);
  CHECK(ts_status_code(st) == TS_ERR_INVALID); /* not while recording */
  ts_status_free(st);
  ts_graph *g2 = NULL;
  st = ts_graph_end(d, &g2);
  CHECK(st && !g2 && !ts_graph_recording(d));
  ts_status_free(st);
  ts_graph_release(g);
  ts_tensor_release(src);
  ts_tensor_release(dst);
  ts_device_release(d);

  ts_device_probe p;
  ts_runtime_probe(&p);
  CHECK(p.cpu_count >= 1 && p.cuda_message[0]);
  return ts_test_finish();
}
