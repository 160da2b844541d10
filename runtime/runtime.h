/* runtime.h - the Tessera runtime's C API, used by the CLI, the Lua binding
 * and the tests: devices (a struct of function pointers, ggml-style; the CPU
 * device today), reference-counted buffers and tensors, kernels compiled
 * from a .tile file + kernel name + params, and launch with argument
 * checking. Devices, buffers, tensors and kernels may be shared between
 * threads; one launch runs at a time per kernel object. */
#ifndef TS_RUNTIME_H
#define TS_RUNTIME_H

#include "compiler/compiler.h"

/* ---- devices ----------------------------------------------------------------- */

typedef struct ts_device ts_device;

/* A device's memory and its queue of work. On the CUDA device every
 * operation but `read` and `sync` is queued on one stream and returns before
 * it is done (kernels, copies into the device, zeroing, copies within it),
 * in the order issued: `read` waits for the work before it, and so does
 * `sync`. `free` (given the size `alloc` was asked for) may hand the memory
 * to a later allocation while queued work still reads it: the queue orders
 * them. */
typedef struct ts_device_ops {
  const char *name; /* "cpu" */
  ts_status (*alloc)(ts_device *d, size_t size, void **out);
  void (*free)(ts_device *d, void *p, size_t size);
  ts_status (*write)(ts_device *d, void *dst, const void *src, size_t size);
  ts_status (*read)(ts_device *d, void *dst, const void *src, size_t size);
  void (*destroy)(ts_device *d);
  ts_status (*zero)(ts_device *d, void *p, size_t size);
  /* a copy within the device's memory (the regions do not overlap) */
  ts_status (*copy)(ts_device *d, void *dst, const void *src, size_t size);
  /* waits for the queued work; NULL where every call returns done */
  ts_status (*sync)(ts_device *d);
} ts_device_ops;

/* The CPU device, running blocks on `threads` threads (0: every core, or
 * TESSERA_THREADS when set). Reference counted. */
TS_MUST_USE ts_status ts_device_create_cpu(int threads, ts_device **out);
/* The GPU simulator: host memory, and kernels run in their GPU form (the
 * PTX target's lowering, built for the CPU) with one CPU thread per GPU
 * thread. For testing the GPU lowering without a GPU; slow. */
TS_MUST_USE ts_status ts_device_create_gpusim(ts_device **out);
/* The CUDA device `ordinal` (runtime/device_cuda.c): libcuda.so.1 opened
 * at run time. Without a driver or GPU: TS_ERR_UNSUPPORTED, with a one-line
 * message starting "no GPU: " that says why. */
TS_MUST_USE ts_status ts_device_create_cuda(int ordinal, ts_device **out);
/* The CUDA device when there is one, else the CPU device. */
TS_MUST_USE ts_status ts_device_create_default(ts_device **out);
/* Whether tensors on the device are host memory (ts_tensor_data,
 * ts_tensor_get/set may be used): the CPU and the GPU simulator. */
bool ts_device_is_host(const ts_device *d);
ts_device *ts_device_retain(ts_device *d);
void ts_device_release(ts_device *d);
const char *ts_device_name(const ts_device *d);
/* The runtime functions CPU kernels may call (print, assert, the GPU
 * simulator's): what a JIT of Tessera code is given. */
const ts_jit_symbol *ts_runtime_symbols(size_t *count);
/* The hardware: the GPU's name from the driver ("NVIDIA H100 80GB HBM3"),
 * else the device's name. */
const char *ts_device_model(const ts_device *d);
/* The PTX architecture a GPU's kernels compile for ("sm_90a", "sm_80",
 * "sm_86"; the simulator's, TESSERA_GPUSIM_ARCH), NULL for the CPU. */
const char *ts_device_arch(const ts_device *d);
/* Whether a GPU's kernels compile through the CUDA C lowering and NVRTC
 * (TESSERA_GPU_LOWERING=cuda) rather than MLIR's. */
bool ts_cuda_lowering(void);
int ts_device_thread_count(const ts_device *d);
/* Waits until the work queued on the device is done (kernels launched,
 * copies into it); an error of that work (a kernel that faulted) is
 * returned here if no read reported it first. The CPU and the simulator
 * run every call to its end, so there it returns at once. Time a GPU's
 * work from a sync to a sync. */
TS_MUST_USE ts_status ts_device_sync(ts_device *d);
/* What a GPU device was asked to do since it was made (all 0 on the CPU
 * and the simulator, whose calls are done when they return): */
typedef struct ts_device_stats {
  int64_t launches;      /* kernels queued */
  int64_t waits;         /* times the host waited for the queue (reads, syncs) */
  int64_t writes, reads; /* copies from and to the host */
  int64_t copies, zeroes; /* copies within the device; memsets */
  int64_t driver_allocs; /* cuMemAlloc calls (the rest came from freed blocks) */
  int64_t graphs;        /* graph replays launched as CUDA graphs (their
                            kernels count as launches too) */
  int64_t cached_bytes;  /* freed memory held for reuse now */
} ts_device_stats;
void ts_device_stats_get(ts_device *d, ts_device_stats *out);

/* ---- tensors -------------------------------------------------------------------- */

typedef struct ts_tensor ts_tensor;

/* A new contiguous row-major tensor over a new buffer, zero-filled. Shape
 * entries >= 0. */
TS_MUST_USE ts_status ts_tensor_create(ts_device *d, ts_dtype dtype,
                                       uint32_t rank, const int64_t *shape,
                                       ts_tensor **out);
/* The same without the zeros, for a tensor every element of which is
 * written before it is read (a kernel's output): on a GPU its memory is
 * left as it was (no memset queued); on the CPU and the simulator it is
 * filled with 0xff bytes (NaN floats, -1 integers) so that an element left
 * unwritten shows in every test there. */
TS_MUST_USE ts_status ts_tensor_create_empty(ts_device *d, ts_dtype dtype,
                                             uint32_t rank, const int64_t *shape,
                                             ts_tensor **out);
/* A view of `len` elements of dim `dim` from `start`: it shares (and
 * retains) the buffer. Slicing the first dim keeps a tensor contiguous;
 * other dims give a strided view, which kernels do not take yet. */
TS_MUST_USE ts_status ts_tensor_slice(ts_tensor *t, uint32_t dim,
                                      int64_t start, int64_t len,
                                      ts_tensor **out);
/* A view of a contiguous tensor with another shape of the same count. */
TS_MUST_USE ts_status ts_tensor_reshape(ts_tensor *t, uint32_t rank,
                                        const int64_t *shape, ts_tensor **out);
bool ts_tensor_is_contiguous(const ts_tensor *t);
int64_t ts_tensor_stride(const ts_tensor *t, uint32_t i); /* elements */
ts_tensor *ts_tensor_retain(ts_tensor *t);
void ts_tensor_release(ts_tensor *t);
ts_dtype ts_tensor_dtype(const ts_tensor *t);
uint32_t ts_tensor_rank(const ts_tensor *t);
int64_t ts_tensor_dim(const ts_tensor *t, uint32_t i);
int64_t ts_tensor_count(const ts_tensor *t);
size_t ts_tensor_size(const ts_tensor *t); /* bytes */
/* Host-visible data (CPU device): the elements in their storage format. On
 * a CUDA device, the device address. */
void *ts_tensor_data(ts_tensor *t);
ts_device *ts_tensor_device(const ts_tensor *t);
/* Element `i` (flat, host-visible data) as a double, converted from or to the
 * storage format: floats round to nearest even (e4m3 saturates at 448),
 * integers truncate toward zero and clamp to the dtype's range (NaN is 0),
 * bool is `v != 0`. The _int forms carry an integer exactly (an i64 past
 * 2^53; clamped to a narrower dtype's range; a float dtype rounds it). */
double ts_tensor_get(ts_tensor *t, int64_t i);
void ts_tensor_set(ts_tensor *t, int64_t i, double v);
int64_t ts_tensor_get_int(ts_tensor *t, int64_t i);
void ts_tensor_set_int(ts_tensor *t, int64_t i, int64_t v);
/* Copies `size` bytes in or out (any device). */
TS_MUST_USE ts_status ts_tensor_write(ts_tensor *t, const void *src,
                                      size_t size);
TS_MUST_USE ts_status ts_tensor_read(const ts_tensor *t, void *dst,
                                     size_t size);
/* Copies src's elements into dst: same dtype and count, both contiguous,
 * any devices (through host memory between two GPUs' views); a slice along
 * dim 0 is how rows of a larger tensor are written. Overlap is allowed. */
TS_MUST_USE ts_status ts_tensor_assign(ts_tensor *dst, const ts_tensor *src);
/* A new contiguous tensor on `d` with the same dtype, shape and elements
 * (through host memory when either side is a GPU). */
TS_MUST_USE ts_status ts_tensor_copy(ts_tensor *t, ts_device *d,
                                     ts_tensor **out);

/* ---- kernels ----------------------------------------------------------------------- */

typedef struct ts_kernel ts_kernel;

/* Compiles kernel `name` of the .tile file at `path` with `defines` for the
 * device. Program errors are in `diags` (status TS_ERR_PROGRAM). */
TS_MUST_USE ts_status ts_kernel_create(ts_device *d, const char *path,
                                       const char *name,
                                       const ts_define *defines, size_t ndefs,
                                       ts_diags *diags, ts_kernel **out);
/* The same from source text (`path` names it in messages). */
TS_MUST_USE ts_status ts_kernel_create_from_source(
    ts_device *d, const char *path, const char *text, size_t len,
    const char *name, const ts_define *defines, size_t ndefs, ts_diags *diags,
    ts_kernel **out);
void ts_kernel_release(ts_kernel *k);
/* Seconds the kernel took to compile, or to load from the cache of
 * compiled CPU code (a later process's kernel of the same source, params,
 * Tessera build and CPU: compiler/program.c; TESSERA_CPU_CACHE=0 turns it
 * off). */
double ts_kernel_compile_seconds(const ts_kernel *k);
/* Whether its CPU code came from that cache. */
bool ts_kernel_cached(const ts_kernel *k);
/* The params it was compiled with, as "NAME=VALUE ..." ("" for defaults). */
const char *ts_kernel_config(const ts_kernel *k);
/* Every param of the kernel, in order, with the value it was compiled with:
 * given, or its default for the device (a default may use `arch`). The
 * symbols are the kernel's, valid while it lives. */
const ts_symbol *const *ts_kernel_params(const ts_kernel *k, size_t *count);
/* With timing on, each launch on a GPU records CUDA events around the
 * kernel (off by default: a launch is then only queued). */
void ts_kernel_set_timing(ts_kernel *k, bool on);
/* Seconds the last launch took on the GPU by those events, waiting for it
 * to finish; 0 elsewhere, without timing, or if the events failed. */
double ts_kernel_last_seconds(ts_kernel *k);

typedef enum ts_arg_kind {
  TS_ARG_TENSOR,
  TS_ARG_INT,
  TS_ARG_FLOAT,
  TS_ARG_BOOL,
} ts_arg_kind;

typedef struct ts_arg {
  ts_arg_kind kind;
  ts_tensor *tensor;
  int64_t i;
  double f;
} ts_arg;

static inline ts_arg ts_arg_tensor(ts_tensor *t) {
  return (ts_arg){TS_ARG_TENSOR, t, 0, 0};
}
static inline ts_arg ts_arg_int(int64_t i) {
  return (ts_arg){TS_ARG_INT, NULL, i, 0};
}
static inline ts_arg ts_arg_float(double f) {
  return (ts_arg){TS_ARG_FLOAT, NULL, 0, f};
}

/* Runs the kernel over its grid. Checks every argument against the
 * kernel's signature first: count, tensor or scalar, dtype, rank, and the
 * symbolic dims bound consistently across tensors; a mismatch is a
 * TS_ERR_INVALID status naming the argument, and nothing runs. On the CPU
 * and the simulator it returns when the kernel is done; on a CUDA device
 * when it is queued (ts_device_sync, a read or timing waits for it;
 * TESSERA_CUDA_SYNC=1 makes every launch wait and report its kernel's
 * faults by name). */
TS_MUST_USE ts_status ts_kernel_launch(ts_kernel *k, const ts_arg *args,
                                       size_t count);
/* The same over an explicit grid (x, y, z >= 0) instead of the kernel's
 * grid clause: blocks outside it do not run. */
TS_MUST_USE ts_status ts_kernel_launch_grid(ts_kernel *k, const ts_arg *args,
                                            size_t count,
                                            const int64_t grid[3]);

/* ---- graphs (graph.c) ------------------------------------------------------------- */

/* A graph is the work that a stretch of host code gave one device, recorded
 * as it ran: kernel launches (kernel, arguments, grid), the zeroing of new
 * tensors, writes from the host (their bytes as they were then) and copies
 * within the device. ts_graph_replay does that work again without the host
 * code: a loop in C on the CPU and the simulator, one cuGraphLaunch on a
 * CUDA device (the launch-bound decode step's cure: its Lua between ~100
 * launches is half a tiny model's step on the CPU and more on a GPU).
 * A replay repeats exactly what was recorded - the same kernels over the
 * same tensors with the same scalars and grids, the same bytes written - so
 * what differs between replays is only what the tensors hold when it starts
 * (the inputs the caller wrote, the state earlier replays left). The graph
 * holds every tensor and kernel it names: their memory is not reused while
 * it lives, and a tensor made while recording is the graph's own, written
 * anew by each replay. */
typedef struct ts_graph ts_graph;
/* Starts recording what the host gives device d (an error if d records
 * already). While it records, a read of one of d's tensors into host memory
 * fails (a replay could not repeat what the host does with the values), as
 * does a copy between devices; either marks the recording failed. */
TS_MUST_USE ts_status ts_graph_begin(ts_device *d);
/* Stops recording: the graph in *out, or the error that failed the
 * recording (then no graph). */
TS_MUST_USE ts_status ts_graph_end(ts_device *d, ts_graph **out);
/* Stops recording and drops what was recorded (nothing if d does not
 * record). */
void ts_graph_abort(ts_device *d);
bool ts_graph_recording(const ts_device *d);
/* Runs the graph's work again, in order (on a GPU, queued). An error if
 * its device records now. */
TS_MUST_USE ts_status ts_graph_replay(ts_graph *g);
typedef struct ts_graph_counts {
  int64_t launches, zeroes, writes, copies;
  int64_t write_bytes; /* the host's bytes it writes each replay */
} ts_graph_counts;
void ts_graph_counts_get(const ts_graph *g, ts_graph_counts *out);
void ts_graph_release(ts_graph *g);
/* For code that reads or writes a host device's tensor through its data
 * pointer (ts_tensor_data, ts_tensor_get/set: the Lua binding's element
 * access): before a read, an error while t's device records; after a write
 * of the whole tensor, the write recorded (its bytes now). Nothing when the
 * device does not record. */
TS_MUST_USE ts_status ts_graph_note_read(const ts_tensor *t);
TS_MUST_USE ts_status ts_graph_note_write(ts_tensor *t);

/* ---- the kernel profile (profile.c) ------------------------------------------------ */

/* Whether launches are profiled: TESSERA_PROFILE set (not "0"), or as
 * ts_profile_enable last said. Profiled, each launch is timed and added to
 * its kernel's row (device, name, params): on the CPU and the simulator its
 * own time; on a GPU the kernel's by CUDA events, waiting for it. */
bool ts_profile_on(void);
void ts_profile_enable(bool on);
void ts_profile_reset(void);
typedef struct ts_profile_row {
  const char *device, *kernel, *config; /* config: "NAME=VALUE ..." or "" */
  int64_t launches;
  double seconds, min, max; /* total, and the shortest and longest launch */
} ts_profile_row;
/* The rows, most time first, into out[0 .. max); returns how many there
 * are. The strings stay valid until the next launch or reset. */
size_t ts_profile_rows(ts_profile_row *out, size_t max);
/* A Markdown table of them (`tessera run` prints it at exit when
 * TESSERA_PROFILE is set). */
void ts_profile_print(FILE *f);
/* (the launch's part: adds one launch of `seconds` to its row) */
void ts_profile_add(const char *device, const char *kernel, const char *config,
                    double seconds);

/* ---- safetensors ------------------------------------------------------------------ */

typedef struct ts_safetensors ts_safetensors;

/* One tensor of a safetensors file: its data is in the (read-only) mapping
 * and lives as long as the file is open. */
typedef struct ts_st_tensor {
  const char *name;
  ts_dtype dtype;
  uint32_t rank;
  int64_t shape[TS_MAX_RANK];
  uint64_t offset, size; /* bytes, within the data section */
  const void *data;
} ts_st_tensor;

/* Maps a .safetensors file and validates its header (JSON syntax, dtypes,
 * shapes against byte ranges, ranges in bounds and not overlapping); a
 * problem is a TS_ERR_INVALID status naming the file and the tensor. */
TS_MUST_USE ts_status ts_safetensors_open(const char *path,
                                          ts_safetensors **out);
void ts_safetensors_close(ts_safetensors *f);
size_t ts_safetensors_count(const ts_safetensors *f);
const ts_st_tensor *ts_safetensors_at(const ts_safetensors *f, size_t i);
/* NULL when there is no tensor of that name. */
const ts_st_tensor *ts_safetensors_find(const ts_safetensors *f,
                                        const char *name);
/* A __metadata__ value, or NULL. */
const char *ts_safetensors_meta(const ts_safetensors *f, const char *key);

/* ---- tokenizers (tokenizer.c) --------------------------------------------------------
 * A byte-level BPE tokenizer from a Hugging Face tokenizer.json (DeepSeek's
 * release ships one): added tokens, the pre-tokenizer's Split regexes and
 * ByteLevel step, BPE merges, the post-processor's template. A part of the
 * file this does not implement is refused at load, naming it. */
typedef struct ts_tokenizer ts_tokenizer;
TS_MUST_USE ts_status ts_tokenizer_load(const char *path, ts_tokenizer **out);
/* The same from a tokenizer.json's text. */
TS_MUST_USE ts_status ts_tokenizer_parse(const char *text, size_t len, ts_tokenizer **out);
void ts_tokenizer_destroy(ts_tokenizer *t);
/* Token ids of any bytes (invalid UTF-8 too), added tokens recognised in the
 * text; add_special puts the post-processor's template around them (BOS).
 * *out_ids is malloc'd. */
TS_MUST_USE ts_status ts_tokenizer_encode(const ts_tokenizer *t, const char *text, size_t len,
                                          bool add_special, int32_t **out_ids,
                                          size_t *out_count);
/* The pre-tokenizer's pieces (byte ranges start, end in pairs; malloc'd). */
TS_MUST_USE ts_status ts_tokenizer_pieces(const ts_tokenizer *t, const char *text, size_t len,
                                          size_t **out_offsets, size_t *out_count);
/* Appends the tokens' bytes; an id not in the vocabulary fails. */
TS_MUST_USE ts_status ts_tokenizer_decode(const ts_tokenizer *t, const int32_t *ids,
                                          size_t count, bool skip_special, ts_buf *out);
/* One past the largest id. */
size_t ts_tokenizer_vocab_count(const ts_tokenizer *t);
/* A token's bytes (borrowed), or NULL for an unused id. */
const char *ts_tokenizer_token(const ts_tokenizer *t, int32_t id, size_t *out_len,
                               bool *out_special);
/* The id of an added token's content or of a vocabulary token's bytes; -1. */
int32_t ts_tokenizer_id(const ts_tokenizer *t, const char *s, size_t len);

/* ---- probe -------------------------------------------------------------------------- */

typedef struct ts_device_probe {
  int cpu_count;   /* online cores */
  bool cuda_found; /* libcuda.so.1 could be opened */
  int cuda_device_count;
  char cuda_message[256]; /* why there is no GPU, or the driver version */
} ts_device_probe;

/* Looks for devices: counts the CPU cores and opens libcuda.so.1 with dlopen
 * (never linked), asking it for the GPU count. Never fails: what is missing
 * is described in the result. */
void ts_runtime_probe(ts_device_probe *out);

#endif
