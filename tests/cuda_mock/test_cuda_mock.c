/* test_cuda_mock.c - the runtime's CUDA device against a mock driver
 * (libcuda_mock.c, found as libcuda.so.1 through LD_LIBRARY_PATH): device
 * creation through cuGetProcAddress, tensors in "device" memory (zeroed,
 * written, read back, copied to the CPU), kernels compiled to PTX by each
 * GPU lowering and loaded, launches whose every parameter matches the
 * PTX's .entry list (pointers into live allocations), the grid, block and
 * shared memory the kernel needs, event timing, argument checks before any
 * launch, and driver errors reported by name; work queued without waits
 * (launches, copies in, zeroing, copies within the device), freed memory
 * reused, a kernel's fault reported at the next wait (or at its launch
 * with TESSERA_CUDA_SYNC=1). It cannot check results: the mock does not
 * run PTX. */
#define _GNU_SOURCE
#include "runtime/runtime.h"
#include "tests/unit/harness.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

struct mock_launch {
  char name[128];
  unsigned grid[3], block[3], smem;
  int nparams, bad_params;
  int launches;
  int tmaps, last_i32;
  char target[16];
};

struct mock_tmap {
  int dtype, rank, swizzle, oob, encoded;
  unsigned long long dim[5], stride[5];
  unsigned box[5];
};

struct mock_calls {
  int mem_allocs, mem_frees, htod, dtoh, dtod, memsets;
  int stream_syncs, event_records, event_syncs;
};

static struct mock_launch *last;
static struct mock_tmap *tmap;
static struct mock_calls *calls;

static ts_kernel *kernel_in(ts_device *d, const char *file, const char *name,
                            ts_define *def, size_t ndef) {
  char path[1024];
  const char *root = getenv("TS_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/kernels/%s", root ? root : ".", file);
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  ts_kernel *k = NULL;
  ts_status st = ts_kernel_create(d, path, name, def, ndef, &diags, &k);
  if (st) {
    ts_diags_render(&diags, stderr, (ts_render_options){false, true});
    fprintf(stderr, "%s\n", ts_status_message(st));
    ts_status_free(st);
  }
  ts_diags_deinit(&diags);
  CHECK(k != NULL);
  return k;
}

static ts_kernel *kernel(ts_device *d, const char *name, const char *bm) {
  ts_define def = {"BM", bm};
  return kernel_in(d, "softmax.tile", name, &def, 1);
}

/* gemm_nt on sm_90a (the mock is an sm_90): the MLIR lowering's ring copies
 * its two operand tiles by TMA, so the launch carries two tensor maps the
 * runtime encoded (B's last: [N, K] bf16 as {K, N}, rows of 2 K bytes,
 * 64 x 128 boxes, 128-byte swizzle, zeros out of bounds) and the flag 1;
 * rows that are not whole 16-byte units (K 29), or TESSERA_TMA=0, give no
 * maps and the flag 0; the CUDA C lowering takes the same parameters. */
static void launch_gemm_tma(ts_device *d, const char *lowering, int64_t K, bool off,
                            int want_maps, int want_params) {
  setenv("TESSERA_GPU_LOWERING", lowering, 1);
  if (off)
    setenv("TESSERA_TMA", "0", 1);
  ts_kernel *k = kernel_in(d, "gemm.tile", "gemm_nt", NULL, 0);
  if (!k)
    return;
  int64_t sa[2] = {130, K}, sb[2] = {72, K}, sc[2] = {130, 72};
  ts_tensor *a, *b, *c;
  CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 2, sa, &a));
  CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 2, sb, &b));
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 2, sc, &c));
  int encoded = tmap->encoded;
  ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
  ts_status st = ts_kernel_launch(k, args, 3);
  CHECK(st == NULL);
  ts_status_free(st);
  CHECK(last->bad_params == 0);
  CHECK(last->nparams == want_params);
  CHECK(last->tmaps == want_maps);
  CHECK(tmap->encoded == encoded + want_maps);
  CHECK(last->last_i32 == (want_maps > 0)); /* the flag, the last parameter */
  if (want_maps) {
    CHECK(tmap->dtype == 1 && tmap->rank == 2 && tmap->swizzle == 3 && tmap->oob == 0);
    CHECK(tmap->dim[0] == (unsigned long long)K && tmap->dim[1] == 72);
    CHECK(tmap->stride[0] == (unsigned long long)K * 2);
    CHECK(tmap->box[0] == 64 && tmap->box[1] == 128);
  }
  unsetenv("TESSERA_TMA");
  ts_tensor_release(a);
  ts_tensor_release(b);
  ts_tensor_release(c);
  ts_kernel_release(k);
}

/* A part other than Hopper (MOCK_CUDA_CC, MOCK_CUDA_SMEM: compute
 * capability and the shared memory a block may opt into) gets the PTX
 * `arch` whose tile plans fit it: gemm_nt and, at V4 width, sparse_attn_tc
 * launch within `smem` bytes (on sm_80 before the plan had a per-arch
 * ceiling: 133 and 212 KiB, past an 8.6's 99 KiB and an A100's 163 KiB);
 * where its shared tiles alone do not fit (sparse_attn_tc on sm_86) the
 * compile says so, naming the kernel and the limit. */
static void launch_small_part(const char *cc, int smem, const char *arch,
                              const char *lowering, bool attn_fits) {
  char s[32];
  snprintf(s, sizeof s, "%d", smem);
  setenv("MOCK_CUDA_CC", cc, 1);
  setenv("MOCK_CUDA_SMEM", s, 1);
  setenv("TESSERA_GPU_LOWERING", lowering, 1);
  ts_device *d = NULL;
  ts_status st = ts_device_create_cuda(0, &d);
  CHECK(st == NULL);
  ts_status_free(st);
  if (!d)
    goto done;
  ts_kernel *k = kernel_in(d, "gemm.tile", "gemm_nt", NULL, 0);
  if (k) {
    CHECK(!strcmp(last->target, arch));
    int64_t sa[2] = {130, 64}, sb[2] = {72, 64}, sc[2] = {130, 72};
    ts_tensor *a, *b, *c;
    CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 2, sa, &a));
    CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 2, sb, &b));
    CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 2, sc, &c));
    ts_arg args[3] = {ts_arg_tensor(a), ts_arg_tensor(b), ts_arg_tensor(c)};
    st = ts_kernel_launch(k, args, 3);
    CHECK(st == NULL);
    if (st)
      fprintf(stderr, "%s\n", ts_status_message(st));
    ts_status_free(st);
    CHECK(last->smem <= (unsigned)smem && last->tmaps == 0);
    ts_tensor_release(a);
    ts_tensor_release(b);
    ts_tensor_release(c);
    ts_kernel_release(k);
  }
  char path[1024];
  const char *root = getenv("TS_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/kernels/sparse_attn.tile", root ? root : ".");
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  k = NULL;
  st = ts_kernel_create(d, path, "sparse_attn_tc", NULL, 0, &diags, &k);
  if (attn_fits) {
    CHECK(st == NULL && k != NULL);
    if (st)
      fprintf(stderr, "%s\n", ts_status_message(st));
    int64_t sq[3] = {1, 64, 512}, skv[2] = {40, 512}, si[2] = {1, 16}, sh = 64;
    ts_tensor *q, *kv, *idx, *sink, *o;
    CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 3, sq, &q));
    CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 2, skv, &kv));
    CHECK(!ts_tensor_create(d, TS_DTYPE_I32, 2, si, &idx));
    CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 1, &sh, &sink));
    CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 3, sq, &o));
    ts_arg args[5] = {ts_arg_tensor(q), ts_arg_tensor(kv), ts_arg_tensor(idx),
                      ts_arg_tensor(sink), ts_arg_tensor(o)};
    ts_status_free(st);
    st = k ? ts_kernel_launch(k, args, 5) : NULL;
    CHECK(st == NULL);
    if (st)
      fprintf(stderr, "%s\n", ts_status_message(st));
    CHECK(!strcmp(last->name, "sparse_attn_tc") && last->smem <= (unsigned)smem);
    ts_tensor_release(q);
    ts_tensor_release(kv);
    ts_tensor_release(idx);
    ts_tensor_release(sink);
    ts_tensor_release(o);
  } else {
    CHECK(st != NULL && k == NULL && diags.error_count >= 1);
    char msg[200];
    snprintf(msg, sizeof msg, "bytes of shared memory a block, more than the %d (%d KiB) "
             "a block may use on %s", smem, smem / 1024, arch);
    /* at the kernel */
    CHECK(diags.head && strstr(diags.head->message, msg) && diags.head->snippet &&
          memmem(diags.head->snippet, diags.head->snippet_len, "kernel sparse_attn_tc", 21));
  }
  ts_status_free(st);
  ts_diags_deinit(&diags);
  ts_kernel_release(k);
  ts_device_release(d);
done:
  unsetenv("MOCK_CUDA_CC");
  unsetenv("MOCK_CUDA_SMEM");
}

/* softmax_rows (BM 4) on d with each lowering, and its x and y [10, 33]. */
static ts_kernel *softmax_on(ts_device *d, const char *lowering, ts_tensor **x, ts_tensor **y) {
  setenv("TESSERA_GPU_LOWERING", lowering, 1);
  ts_kernel *k = kernel(d, "softmax_rows", "4");
  if (!k)
    return NULL;
  int64_t s[2] = {10, 33};
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 2, s, x));
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 2, s, y));
  return k;
}

/* The queue: launches, copies into the device and zeroing return without
 * waiting; a read, ts_device_sync and a timed kernel's time wait; freed
 * blocks serve later allocations of the same rounded size; a copy within
 * the device stays on it (an overlapping one goes through the host). */
static void queued_work(ts_device *d) {
  ts_tensor *x, *y, *t;
  ts_kernel *k = softmax_on(d, "mlir", &x, &y);
  if (!k)
    return;
  int64_t n = 777;
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  struct mock_calls c0 = *calls;
  for (int i = 0; i < 5; i++)
    CHECK(!ts_kernel_launch(k, a, 2));
  float v[777];
  for (int i = 0; i < 777; i++)
    v[i] = (float)i;
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 1, &n, &t));
  CHECK(!ts_tensor_write(t, v, sizeof v));
  CHECK(calls->stream_syncs == c0.stream_syncs && calls->event_records == c0.event_records);
  CHECK(calls->htod == c0.htod + 1 && calls->memsets == c0.memsets + 1);
  CHECK(!ts_device_sync(d));
  CHECK(calls->stream_syncs == c0.stream_syncs + 1);
  /* the same rounded size again (777 and 800 floats: 3584 bytes) comes
   * from the freed block, without the driver */
  int allocs = calls->mem_allocs;
  ts_tensor_release(t);
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 1, &n, &t));
  ts_tensor *u;
  int64_t n2 = 800;
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 1, &n2, &u));
  CHECK(calls->mem_allocs == allocs + 1); /* u's: t took the freed block */
  ts_tensor_release(u);
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 1, &n2, &u));
  CHECK(calls->mem_allocs == allocs + 1 && calls->mem_frees == c0.mem_frees);
  /* freed blocks of many sizes (either side of 1 MiB and of powers of
   * two) are found again by size in any order, each big enough for its
   * request (the mock checks a write's bytes lie in a live allocation) */
  {
    int64_t sizes[] = {1, 128, 129, 262144, 262145, 300000, 524288, 524289, 600000, 1 << 21};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    ts_tensor *many[NS];
    static float zeros[1 << 21];
    for (int i = 0; i < NS; i++)
      CHECK(!ts_tensor_create_empty(d, TS_DTYPE_F32, 1, &sizes[i], &many[i]));
    int before = calls->mem_allocs;
    for (int i = 0; i < NS; i++)
      ts_tensor_release(many[i]);
    for (int i = NS; i-- > 0;) {
      CHECK(!ts_tensor_create_empty(d, TS_DTYPE_F32, 1, &sizes[i], &many[i]));
      CHECK(!ts_tensor_write(many[i], zeros, (size_t)sizes[i] * sizeof(float)));
    }
    CHECK(calls->mem_allocs == before);
    for (int i = 0; i < NS; i++)
      ts_tensor_release(many[i]);
    int64_t other = 700000; /* another class: the driver's */
    CHECK(!ts_tensor_create_empty(d, TS_DTYPE_F32, 1, &other, &many[0]));
    CHECK(calls->mem_allocs == before + 1);
    ts_tensor_release(many[0]);
  }
  /* a copy within the device: on it, then read (which waits) */
  CHECK(!ts_tensor_write(t, v, sizeof v));
  ts_tensor *us, *ts;
  CHECK(!ts_tensor_slice(u, 0, 0, 777, &us));
  int dtoh = calls->dtoh, htod = calls->htod, syncs = calls->stream_syncs;
  CHECK(!ts_tensor_assign(us, t));
  CHECK(calls->dtod == c0.dtod + 1 && calls->dtoh == dtoh && calls->htod == htod);
  CHECK(calls->stream_syncs == syncs);
  float back[777];
  CHECK(!ts_tensor_read(us, back, sizeof back));
  CHECK(!memcmp(back, v, sizeof v) && calls->stream_syncs == syncs + 1);
  /* overlapping (u[1..777] <- u[0..776]): staged through the host */
  ts_tensor *lo, *hi;
  CHECK(!ts_tensor_slice(u, 0, 0, 777, &lo));
  CHECK(!ts_tensor_slice(u, 0, 1, 777, &hi));
  CHECK(!ts_tensor_assign(hi, lo));
  CHECK(calls->dtod == c0.dtod + 1);
  CHECK(!ts_tensor_read(hi, back, sizeof back));
  CHECK(!memcmp(back, v, sizeof v));
  /* a copy to the same device: on it */
  CHECK(!ts_tensor_copy(t, d, &ts));
  CHECK(calls->dtod == c0.dtod + 2);
  CHECK(!ts_tensor_read(ts, back, sizeof back) && !memcmp(back, v, sizeof v));
  ts_tensor *rel[] = {x, y, t, u, us, ts, lo, hi};
  for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
    ts_tensor_release(rel[i]);
  ts_kernel_release(k);
}

/* A kernel that faults: its launch returns, the next wait reports it (with
 * the hint), once; with TESSERA_CUDA_SYNC=1 the launch itself fails, naming
 * the kernel. */
static void fault(ts_device *d) {
  ts_tensor *x, *y;
  ts_kernel *k = softmax_on(d, "mlir", &x, &y);
  if (!k)
    return;
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  float out[330];
  setenv("MOCK_CUDA_FAULT", "softmax_rows", 1);
  CHECK(!ts_kernel_launch(k, a, 2));
  ts_status st = ts_tensor_read(y, out, sizeof out);
  CHECK(st && strstr(ts_status_message(st), "CUDA_ERROR_ILLEGAL_ADDRESS") &&
        strstr(ts_status_message(st), "TESSERA_CUDA_SYNC=1"));
  ts_status_free(st);
  CHECK(!ts_tensor_read(y, out, sizeof out));
  CHECK(!ts_kernel_launch(k, a, 2));
  st = ts_device_sync(d);
  CHECK(st && strstr(ts_status_message(st), "CUDA_ERROR_ILLEGAL_ADDRESS"));
  ts_status_free(st);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_kernel_release(k);

  setenv("TESSERA_CUDA_SYNC", "1", 1);
  ts_device *e = NULL;
  CHECK(!ts_device_create_cuda(0, &e));
  unsetenv("TESSERA_CUDA_SYNC");
  ts_kernel *ke = e ? softmax_on(e, "mlir", &x, &y) : NULL;
  if (ke) {
    ts_arg b[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
    int syncs = calls->stream_syncs;
    st = ts_kernel_launch(ke, b, 2);
    CHECK(st && strstr(ts_status_message(st), "kernel 'softmax_rows'") &&
          strstr(ts_status_message(st), "CUDA_ERROR_ILLEGAL_ADDRESS"));
    ts_status_free(st);
    CHECK(calls->stream_syncs == syncs + 1);
    unsetenv("MOCK_CUDA_FAULT");
    CHECK(!ts_kernel_launch(ke, b, 2));
    CHECK(calls->stream_syncs == syncs + 2);
    ts_tensor_release(x);
    ts_tensor_release(y);
    ts_kernel_release(ke);
  }
  unsetenv("MOCK_CUDA_FAULT");
  if (e)
    ts_device_release(e);
}

static void launch_softmax(ts_device *d, const char *lowering) {
  ts_tensor *x, *y;
  ts_kernel *k = softmax_on(d, lowering, &x, &y);
  if (!k)
    return;
  int64_t s[2] = {10, 33};
  int before = last->launches;
  ts_arg a[2] = {ts_arg_tensor(x), ts_arg_tensor(y)};
  ts_status st = ts_kernel_launch(k, a, 2);
  CHECK(st == NULL);
  ts_status_free(st);
  CHECK(last->launches == before + 1);
  CHECK(!strcmp(last->name, "softmax_rows"));
  /* ceildiv(10, 4) blocks of 128 threads; the frag tiles are symbolic in N,
   * so they live in scratch and shared memory holds the 16-byte slot and
   * the two row vectors */
  CHECK(last->grid[0] == 3 && last->grid[1] == 1 && last->grid[2] == 1);
  CHECK(last->block[0] == 128 && last->block[1] == 1);
  CHECK(last->smem > 0 && last->smem % 16 == 0);
  /* x, y (5 each), M, N, the scratch memref (5) and its bytes per block */
  CHECK(last->nparams == 18);
  CHECK(last->bad_params == 0);
  /* timing: off by default (no events, 0 s); on, events around each
   * launch and the time waits for the last one */
  CHECK(ts_kernel_last_seconds(k) == 0);
  ts_kernel_set_timing(k, true);
  int records = calls->event_records, esyncs = calls->event_syncs;
  CHECK(!ts_kernel_launch(k, a, 2));
  CHECK(calls->event_records == records + 2);
  CHECK(ts_kernel_last_seconds(k) == 0.25e-3);
  CHECK(calls->event_syncs == esyncs + 1);
  ts_kernel_set_timing(k, false);
  before = last->launches - 1;
  /* argument checks come before the driver */
  ts_tensor *z;
  CHECK(!ts_tensor_create(d, TS_DTYPE_BF16, 2, s, &z));
  ts_arg bad[2] = {ts_arg_tensor(x), ts_arg_tensor(z)};
  st = ts_kernel_launch(k, bad, 2);
  CHECK(st && ts_status_code(st) == TS_ERR_INVALID);
  ts_status_free(st);
  CHECK(last->launches == before + 1);
  /* host memory given to a GPU kernel is refused, naming both devices */
  ts_device *cpu;
  ts_tensor *h;
  CHECK(!ts_device_create_cpu(1, &cpu));
  CHECK(!ts_tensor_create(cpu, TS_DTYPE_F32, 2, s, &h));
  ts_arg host[2] = {ts_arg_tensor(x), ts_arg_tensor(h)};
  st = ts_kernel_launch(k, host, 2);
  CHECK(st && ts_status_code(st) == TS_ERR_INVALID &&
        strstr(ts_status_message(st), "is on device 'cpu'"));
  ts_status_free(st);
  CHECK(last->launches == before + 1);
  ts_tensor_release(h);
  ts_device_release(cpu);
  /* a driver error, by name */
  setenv("MOCK_CUDA_FAIL", "cuLaunchKernel", 1);
  st = ts_kernel_launch(k, a, 2);
  unsetenv("MOCK_CUDA_FAIL");
  CHECK(st && strstr(ts_status_message(st), "CUDA_ERROR_OUT_OF_MEMORY"));
  ts_status_free(st);
  ts_tensor_release(x);
  ts_tensor_release(y);
  ts_tensor_release(z);
  ts_kernel_release(k);
}

int main(void) {
  char cache[] = "/tmp/tessera-mock-cache-XXXXXX";
  CHECK(mkdtemp(cache) != NULL);
  setenv("TESSERA_CACHE", cache, 1);
  ts_device *d = NULL;
  ts_status st = ts_device_create_cuda(0, &d);
  if (st) {
    fprintf(stderr, "%s\n", ts_status_message(st));
    CHECK(!"the mock driver did not load (LD_LIBRARY_PATH)");
    return ts_test_finish();
  }
  CHECK(!strcmp(ts_device_name(d), "cuda"));
  CHECK(!ts_device_is_host(d));
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  CHECK(lib != NULL);
  last = lib ? dlsym(lib, "mock_last") : NULL;
  tmap = lib ? dlsym(lib, "mock_tmap") : NULL;
  calls = lib ? dlsym(lib, "mock_calls") : NULL;
  CHECK(last != NULL && tmap != NULL && calls != NULL);
  if (!last || !tmap || !calls)
    return ts_test_finish();

  /* tensors: zeroed on creation, written, read back, copied to the CPU */
  int64_t n = 1000;
  ts_tensor *t;
  CHECK(!ts_tensor_create(d, TS_DTYPE_F32, 1, &n, &t));
  float in[1000], out[1000];
  CHECK(!ts_tensor_read(t, out, sizeof out));
  bool zero = true;
  for (int i = 0; i < 1000; i++) {
    zero &= out[i] == 0;
    in[i] = (float)i * 0.5f;
  }
  CHECK(zero);
  CHECK(!ts_tensor_write(t, in, sizeof in));
  CHECK(!ts_tensor_read(t, out, sizeof out));
  CHECK(!memcmp(in, out, sizeof in));
  ts_device *cpu;
  CHECK(!ts_device_create_cpu(1, &cpu));
  ts_tensor *h;
  CHECK(!ts_tensor_copy(t, cpu, &h));
  CHECK(h && ts_tensor_get(h, 999) == 499.5);
  ts_tensor_release(h);
  ts_tensor_release(t);
  ts_device_release(cpu);

  /* allocation failure is an error naming the driver's code (a size no
   * freed block has) */
  int64_t n3 = 3000;
  setenv("MOCK_CUDA_FAIL", "cuMemAlloc", 1);
  st = ts_tensor_create(d, TS_DTYPE_F32, 1, &n3, &t);
  unsetenv("MOCK_CUDA_FAIL");
  CHECK(st && strstr(ts_status_message(st), "CUDA_ERROR_OUT_OF_MEMORY"));
  ts_status_free(st);

  /* both GPU lowerings load and launch with the same parameter list */
  launch_softmax(d, "mlir");
  launch_softmax(d, "cuda");
  queued_work(d);
  fault(d);
  /* TMA: a, b, c (5 each), M, K, N, the scratch (5), its bytes a block,
   * then two maps and the flag, in both lowerings */
  launch_gemm_tma(d, "mlir", 64, false, 2, 27);
  launch_gemm_tma(d, "mlir", 29, false, 0, 27);
  launch_gemm_tma(d, "mlir", 64, true, 0, 27);
  launch_gemm_tma(d, "cuda", 64, false, 2, 27);
  launch_gemm_tma(d, "cuda", 29, false, 0, 27);
  /* an A100 (163 KiB) gets sm_80, an 8.6 part (99 KiB) sm_86 */
  launch_small_part("80", 166912, "sm_80", "mlir", true);
  launch_small_part("86", 101376, "sm_86", "mlir", false);
  launch_small_part("80", 166912, "sm_80", "cuda", true);
  launch_small_part("89", 101376, "sm_86", "cuda", false);
  /* a part that lets a block have less than any plan assumes: the kernel
   * is refused when it is loaded, naming both figures */
  setenv("MOCK_CUDA_CC", "86", 1);
  setenv("MOCK_CUDA_SMEM", "65536", 1);
  ts_device *small = NULL;
  CHECK(!ts_device_create_cuda(0, &small));
  if (small) {
    char path[1024];
    const char *root = getenv("TS_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/kernels/gemm.tile", root ? root : ".");
    ts_kernel *k = NULL;
    ts_diags diags;
    ts_diags_init(&diags, ts_allocator_system());
    st = ts_kernel_create(small, path, "gemm_nt", NULL, 0, &diags, &k);
    ts_diags_deinit(&diags);
    CHECK(st && k == NULL &&
          strstr(ts_status_message(st), "gemm_nt: a block takes 100352 bytes of shared "
                                        "memory, more than the 65536 this GPU"));
    ts_status_free(st);
    ts_device_release(small);
  }
  unsetenv("MOCK_CUDA_CC");
  unsetenv("MOCK_CUDA_SMEM");

  ts_device_release(d);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", cache);
  CHECK(system(cmd) == 0);
  return ts_test_finish();
}
