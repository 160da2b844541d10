/* graph.c - work recorded as the host gives it to a device, and replayed
 * without the host (runtime.h "graphs"). A graph is a list of nodes -
 * launches, zeroings, writes from the host, copies within the device -
 * each holding the tensors and kernel it names. The host's bytes of the
 * writes are kept in one block (on a CUDA device copied to the device when
 * the recording ends, so that every node is device work a CUDA graph can
 * hold). On a CUDA device the first replay captures the nodes' driver calls
 * on the stream into a CUDA graph, and each replay launches it; with
 * TESSERA_CUDA_SYNC=1 or the profile on (which wait in each launch), and
 * when the shared scratch buffer was replaced since the capture, the nodes
 * are queued one by one instead, or captured again. */
#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>

enum { N_LAUNCH, N_ZERO, N_WRITE, N_COPY };

typedef struct node {
  int kind;
  ts_kernel *k; /* N_LAUNCH */
  ts_arg *args;
  size_t nargs;
  bool has_grid;
  int64_t grid[3];
  ts_tensor *t, *src; /* N_ZERO, N_WRITE: t; N_COPY: t <- src */
  size_t at;          /* N_WRITE: its bytes at consts + at */
} node;

struct ts_graph {
  ts_device *device;
  node *nodes;
  size_t n, cap;
  unsigned char *consts; /* the writes' bytes (host memory) */
  size_t nconst, constcap;
  ts_tensor *dconsts; /* on a CUDA device: consts on the device */
  ts_status failed;   /* what failed the recording */
  ts_graph_counts counts;
  void *exec; /* the CUDA graph, captured at the first replay */
  uint64_t exec_scratch; /* the scratch buffer's generation it was captured with */
};

static ts_graph *recording(ts_device *d) { return d ? d->rec : NULL; }

static node *add(ts_graph *g) {
  if (g->failed)
    return NULL;
  if (g->n == g->cap) {
    size_t cap = g->cap ? 2 * g->cap : 64;
    node *p = realloc(g->nodes, cap * sizeof *p);
    if (!p) {
      g->failed = ts_status_nomem();
      return NULL;
    }
    g->nodes = p, g->cap = cap;
  }
  node *e = &g->nodes[g->n++];
  memset(e, 0, sizeof *e);
  return e;
}

static void node_free(node *e) {
  if (e->k)
    ts_kernel_release(e->k);
  for (size_t i = 0; e->args && i < e->nargs; i++)
    if (e->args[i].kind == TS_ARG_TENSOR)
      ts_tensor_release(e->args[i].tensor);
  free(e->args);
  ts_tensor_release(e->t);
  ts_tensor_release(e->src);
}

ts_status ts_graph_begin(ts_device *d) {
  if (d->rec)
    return ts_status_make(TS_ERR_INVALID, "device '%s' records a graph already",
                          ts_device_name(d));
  ts_graph *g = calloc(1, sizeof *g);
  if (!g)
    return ts_status_nomem();
  g->device = ts_device_retain(d);
  d->rec = g;
  return NULL;
}

void ts_graph_release(ts_graph *g) {
  if (!g)
    return;
  for (size_t i = 0; i < g->n; i++)
    node_free(&g->nodes[i]);
  free(g->nodes);
  free(g->consts);
  ts_tensor_release(g->dconsts);
  if (g->exec)
    ts_cuda_graph_destroy(g->device, g->exec);
  ts_status_free(g->failed);
  ts_device_release(g->device);
  free(g);
}

void ts_graph_abort(ts_device *d) {
  ts_graph *g = d->rec;
  d->rec = NULL;
  ts_graph_release(g);
}

bool ts_graph_recording(const ts_device *d) { return d->rec != NULL; }

ts_status ts_graph_end(ts_device *d, ts_graph **out) {
  ts_graph *g = d->rec;
  if (!g)
    return ts_status_make(TS_ERR_INVALID, "device '%s' records no graph",
                          ts_device_name(d));
  d->rec = NULL;
  ts_status st = g->failed;
  g->failed = NULL;
  if (!st && d->cuda && g->nconst) {
    /* the writes' bytes on the device: each write a copy from there */
    int64_t n = (int64_t)g->nconst;
    st = ts_tensor_create_empty(d, TS_DTYPE_I8, 1, &n, &g->dconsts);
    if (!st)
      st = ts_tensor_write(g->dconsts, g->consts, g->nconst);
  }
  if (st) {
    ts_graph_release(g);
    return ts_status_annotate(st, "recording a graph");
  }
  *out = g;
  return NULL;
}

void ts_graph_counts_get(const ts_graph *g, ts_graph_counts *out) { *out = g->counts; }

/* ---- recording (kernel.c, tensor.c, the binding) ---------------------------------- */

void ts_graph_add_launch(ts_device *d, ts_kernel *k, const ts_arg *args, size_t count,
                         const int64_t grid[3]) {
  ts_graph *g = recording(d);
  node *e = g ? add(g) : NULL;
  if (!e)
    return; /* (a recording's failure is reported by ts_graph_end) */
  e->kind = N_LAUNCH;
  e->args = malloc((count ? count : 1) * sizeof *args);
  if (!e->args) {
    g->n--;
    g->failed = ts_status_nomem();
    return;
  }
  memcpy(e->args, args, count * sizeof *args);
  e->nargs = count;
  for (size_t i = 0; i < count; i++)
    if (args[i].kind == TS_ARG_TENSOR)
      ts_tensor_retain(args[i].tensor);
  e->k = ts_kernel_retain(k);
  e->has_grid = grid != NULL;
  if (grid)
    memcpy(e->grid, grid, sizeof e->grid);
  g->counts.launches++;
}

void ts_graph_add_zero(ts_tensor *t) {
  ts_graph *g = recording(ts_tensor_device(t));
  node *e = g ? add(g) : NULL;
  if (!e)
    return;
  e->kind = N_ZERO;
  e->t = ts_tensor_retain(t);
  g->counts.zeroes++;
}

void ts_graph_add_write(ts_tensor *t, const void *src, size_t size) {
  ts_graph *g = recording(ts_tensor_device(t));
  if (!g || g->failed)
    return;
  /* (16-byte steps: each write's device copy starts aligned) */
  size_t padded = (size + 15) & ~(size_t)15;
  if (g->nconst + padded > g->constcap) {
    size_t cap = g->constcap ? g->constcap : 4096;
    while (cap < g->nconst + padded)
      cap *= 2;
    unsigned char *p = realloc(g->consts, cap);
    if (!p) {
      g->failed = ts_status_nomem();
      return;
    }
    g->consts = p, g->constcap = cap;
  }
  node *e = add(g);
  if (!e)
    return;
  e->kind = N_WRITE;
  e->t = ts_tensor_retain(t);
  e->at = g->nconst;
  memcpy(g->consts + g->nconst, src, size);
  memset(g->consts + g->nconst + size, 0, padded - size);
  g->nconst += padded;
  g->counts.writes++;
  g->counts.write_bytes += (int64_t)size;
}

void ts_graph_add_copy(ts_tensor *dst, const ts_tensor *src) {
  ts_graph *g = recording(ts_tensor_device(dst));
  node *e = g ? add(g) : NULL;
  if (!e)
    return;
  e->kind = N_COPY;
  e->t = ts_tensor_retain(dst);
  e->src = ts_tensor_retain((ts_tensor *)src);
  g->counts.copies++;
}

ts_status ts_graph_refuse(ts_device *d, const char *what) {
  ts_graph *g = recording(d);
  if (!g)
    return NULL;
  ts_status st = ts_status_make(TS_ERR_INVALID, "%s while device '%s' records a graph: a "
                                "replay could not repeat it",
                                what, ts_device_name(d));
  if (!g->failed)
    g->failed = ts_status_make(TS_ERR_INVALID, "%s", ts_status_message(st));
  return st;
}

ts_status ts_graph_note_read(const ts_tensor *t) {
  return ts_graph_refuse(ts_tensor_device(t), "reading a tensor into host memory");
}

ts_status ts_graph_note_write(ts_tensor *t) {
  if (recording(ts_tensor_device(t)))
    ts_graph_add_write(t, ts_tensor_data(t), ts_tensor_size(t));
  return NULL;
}

/* ---- replay ------------------------------------------------------------------------ */

/* Node e's work on the device; `plain`: a launch neither profiled nor timed
 * (while the stream is captured). */
static ts_status run_node(ts_graph *g, const node *e, bool plain) {
  ts_device *d = g->device;
  switch (e->kind) {
  case N_LAUNCH:
    if (plain)
      return ts_kernel_launch_plain(e->k, e->args, e->nargs, e->has_grid ? e->grid : NULL);
    return ts_kernel_launch_grid(e->k, e->args, e->nargs, e->has_grid ? e->grid : NULL);
  case N_ZERO:
    return d->ops->zero(d, ts_tensor_data(e->t), ts_tensor_size(e->t));
  case N_WRITE:
    if (g->dconsts)
      return d->ops->copy(d, ts_tensor_data(e->t), (char *)ts_tensor_data(g->dconsts) + e->at,
                          ts_tensor_size(e->t));
    memcpy(ts_tensor_data(e->t), g->consts + e->at, ts_tensor_size(e->t));
    return NULL;
  default: {
    void *to = ts_tensor_data(e->t);
    const void *from = ts_tensor_data(e->src);
    if (ts_device_is_host(d)) {
      memmove(to, from, ts_tensor_size(e->t));
      return NULL;
    }
    return d->ops->copy(d, to, from, ts_tensor_size(e->t));
  }
  }
}

static ts_status run_nodes(ts_graph *g, bool plain) {
  for (size_t i = 0; i < g->n; i++)
    TS_TRY(run_node(g, &g->nodes[i], plain));
  return NULL;
}

/* A CUDA device: the nodes captured into a CUDA graph once (again when the
 * shared scratch buffer has been replaced: the launches name it), then one
 * cuGraphLaunch a replay. */
static ts_status replay_cuda(ts_graph *g) {
  ts_device *d = g->device;
  uint64_t scratch = ts_cuda_scratch_generation(d);
  if (g->exec && g->exec_scratch != scratch) {
    ts_cuda_graph_destroy(d, g->exec);
    g->exec = NULL;
  }
  if (!g->exec) {
    TS_TRY(ts_cuda_capture_begin(d));
    ts_status st = run_nodes(g, true);
    void *exec = NULL;
    ts_status end = ts_cuda_capture_end(d, st == NULL, &exec);
    if (st) {
      ts_status_free(end);
      return st;
    }
    TS_TRY(end);
    g->exec = exec;
    g->exec_scratch = scratch;
  }
  return ts_cuda_graph_launch(d, g->exec, &g->counts);
}

ts_status ts_graph_replay(ts_graph *g) {
  ts_device *d = g->device;
  if (d->rec)
    return ts_status_make(TS_ERR_INVALID, "replaying a graph while device '%s' records one",
                          ts_device_name(d));
  if (d->cuda && !ts_cuda_sync_each(d) && !ts_profile_on() && g->n)
    return replay_cuda(g);
  return run_nodes(g, false);
}
