/* module.c - luaopen_tessera: the `tessera` Lua module, modelled on
 * liolib.c: one metatable per C type ("tessera.Device", "tessera.Tensor",
 * "tessera.Kernel", "tessera.File"), a box holding one reference, the same
 * function for __gc and __close, every argument checked, enums as strings,
 * options as tables, failures raised as Lua errors carrying the status
 * message. The binding stays thin: everything here is a runtime call. */
#define _POSIX_C_SOURCE 200809L
#include "lua/internal.h"
#include "lua/tessera_lua.h"
#include "runtime/tune.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Each class's metatable is in the registry under its name (luaL_newmetatable)
 * and under the address of that name here (lua_rawgetp); the module's
 * functions share one upvalue, the state's module_state, which holds the
 * metatables' addresses: a box is made and checked without a table lookup
 * (a string hashed each time, at first: ~8% of a decode step's host time),
 * on the path of every launch argument. */
static const char DEVICE_MT[] = "tessera.Device";
static const char TENSOR_MT[] = "tessera.Tensor";
static const char KERNEL_MT[] = "tessera.Kernel";
static const char FILE_MT[] = "tessera.File";
enum { DEVICE_C, TENSOR_C, KERNEL_C, FILE_C, CLASSES };

static int class_of(const char *mt) {
  return mt == DEVICE_MT ? DEVICE_C : mt == TENSOR_MT ? TENSOR_C : mt == KERNEL_MT ? KERNEL_C
                                                                                   : FILE_C;
}

typedef struct module_state {
  const void *mt[CLASSES]; /* the classes' metatables (lua_topointer) */
  size_t host, device;     /* tensor bytes made since the last full collection */
} module_state;
static const char state_key = 0; /* the registry's key of the module_state */

/* The state's module_state: the running function's upvalue (every function
 * of the module has it), else from the registry. */
static module_state *state_of(lua_State *L) {
  module_state *m = lua_touserdata(L, lua_upvalueindex(1));
  if (m)
    return m;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &state_key);
  m = lua_touserdata(L, -1);
  lua_pop(L, 1); /* the registry keeps it */
  return m;
}

/* Raises the status as a Lua error (frees it first), at the calling Lua
 * code's line as luaL_error's are. */
int ts_lua_fail(lua_State *L, ts_status st) {
  luaL_where(L, 1);
  lua_pushstring(L, ts_status_message(st));
  ts_status_free(st);
  lua_concat(L, 2);
  return lua_error(L);
}

static void **new_box(lua_State *L, const char *mt) {
  void **box = lua_newuserdatauv(L, sizeof(void *), 1);
  *box = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, mt);
  lua_setmetatable(L, -2);
  return box;
}

/* A tensor box holds memory that Lua's collector does not see (its
 * userdata is one pointer), so a dropped tensor waits for a collection the
 * Lua objects alone would start much later: a loop making big temporaries
 * (the model's activations) grew the heap far past what it held, each new
 * buffer on fresh pages (a 512 KiB tensor cost ~80 us, not ~12). The
 * bytes of the tensors made since the last full collection are counted,
 * host and device apart; when either passes its budget, a full collection
 * frees every tensor dropped since. The budgets bound what waits (64 MiB
 * of host memory; 256 MiB of a GPU's, whose dropped blocks its cache keeps
 * for reuse either way) and make a collection rare next to the tensors'
 * own work. Before, each new buffer of 16 KiB or more was a collector
 * step of its size: the whole Lua heap traversed every few hundred KiB of
 * tensors, half a V4-Flash-width CSA layer's decode step on the host
 * (204 -> 109 us a step on the mock driver). A creation that fails for
 * want of memory collects and tries once more (CREATE). */
#define GC_HOST_BUDGET ((size_t)64 << 20)
#define GC_DEVICE_BUDGET ((size_t)256 << 20)

/* A full collection: every dropped tensor freed, the counts restarted. */
static void collect_all(lua_State *L) {
  module_state *m = state_of(L);
  m->host = m->device = 0;
  lua_gc(L, LUA_GCCOLLECT);
}

static void gc_account(lua_State *L, void **box) {
  if (!*box)
    return;
  module_state *m = state_of(L);
  bool host = ts_device_is_host(ts_tensor_device(*box));
  size_t *c = host ? &m->host : &m->device;
  *c += ts_tensor_size(*box);
  if (*c >= (host ? GC_HOST_BUDGET : GC_DEVICE_BUDGET))
    collect_all(L);
}

/* st = call, a tensor's creation; when it fails for want of memory, every
 * dropped tensor is freed (a full collection) and the call made again. */
#define CREATE(L, st, call)                                                    \
  do {                                                                         \
    (st) = (call);                                                             \
    if ((st) && ts_status_code(st) == TS_ERR_NOMEM) {                          \
      ts_status_free(st);                                                      \
      collect_all(L);                                                          \
      (st) = (call);                                                           \
    }                                                                          \
  } while (0)

/* The box at i, of class mt (else an argument error, luaL_checkudata's). */
static void **class_box(lua_State *L, int i, const char *mt) {
  void **box = lua_touserdata(L, i);
  if (box && lua_getmetatable(L, i)) {
    bool same = lua_topointer(L, -1) == state_of(L)->mt[class_of(mt)];
    lua_pop(L, 1);
    if (same)
      return box;
  }
  return luaL_checkudata(L, i, mt);
}

static void *check_box(lua_State *L, int i, const char *mt) {
  void **box = class_box(L, i, mt);
  if (!*box)
    luaL_error(L, "attempt to use a closed %s", mt + 8);
  return *box;
}

/* ---- dtypes ------------------------------------------------------------------- */

static ts_dtype check_dtype(lua_State *L, int i) {
  const char *s = luaL_checkstring(L, i);
  ts_dtype d = ts_dtype_from_name(s);
  if (d < TS_DTYPE_COUNT)
    return d;
  return (ts_dtype)luaL_argerror(L, i, lua_pushfstring(L, "unknown dtype '%s'", s));
}

/* ---- devices ------------------------------------------------------------------- */

static int push_cpu_device(lua_State *L, bool gpusim) {
  void **box = new_box(L, DEVICE_MT);
  ts_device *d;
  ts_status st =
      gpusim ? ts_device_create_gpusim(&d) : ts_device_create_cpu(0, &d);
  if (st)
    return ts_lua_fail(L, st);
  *box = d;
  return 1;
}

/* ts.device("cpu" | "cuda" | "gpusim") */
static int l_device(lua_State *L) {
  const char *kind = luaL_optstring(L, 1, "cpu");
  if (!strcmp(kind, "cpu") || !strcmp(kind, "gpusim"))
    return push_cpu_device(L, kind[0] == 'g');
  if (!strcmp(kind, "cuda")) {
    int ordinal = (int)luaL_optinteger(L, 2, 0);
    void **box = new_box(L, DEVICE_MT);
    ts_status st = ts_device_create_cuda(ordinal, (ts_device **)box);
    if (st)
      return ts_lua_fail(L, st);
    return 1;
  }
  return luaL_argerror(L, 1, "'cpu', 'cuda' or 'gpusim'");
}

/* ts.default_device(): the CPU, one shared object per Lua state. The model
 * scripts run there until they are checked on a GPU; ts.device("cuda")
 * gives the GPU explicitly. */
static int l_default_device(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "tessera.default") != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  push_cpu_device(L, false);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "tessera.default");
  return 1;
}

ts_device *ts_lua_opt_device(lua_State *L, int i) {
  if (lua_isnoneornil(L, i)) {
    l_default_device(L);
    ts_device *d = *(void **)lua_touserdata(L, -1);
    lua_pop(L, 1); /* the registry keeps it alive */
    return d;
  }
  return check_box(L, i, DEVICE_MT);
}

static int device_gc(lua_State *L) {
  void **box = class_box(L, 1, DEVICE_MT);
  ts_device_release(*box);
  *box = NULL;
  return 0;
}

static int device_name(lua_State *L) {
  ts_device *d = check_box(L, 1, DEVICE_MT);
  lua_pushstring(L, ts_device_name(d));
  return 1;
}

/* d:arch() -> "sm_90a" | "sm_80" | "sm_86" for a GPU (what its kernels
 * compile for), nil for the CPU */
static int device_arch(lua_State *L) {
  const char *a = ts_device_arch(check_box(L, 1, DEVICE_MT));
  if (a)
    lua_pushstring(L, a);
  else
    lua_pushnil(L);
  return 1;
}

/* d:sync(): waits until the work queued on the device is done (on a GPU
 * launches return once queued; the CPU's are done when they return), and
 * raises the error of that work if it failed. Time a GPU's work from a
 * sync to a sync. */
static int device_sync(lua_State *L) {
  ts_status st = ts_device_sync(check_box(L, 1, DEVICE_MT));
  return st ? ts_lua_fail(L, st) : 0;
}

/* d:stats() -> {launches, waits, writes, reads, copies, zeroes,
 * driver_allocs, cached_bytes, graphs}: what a GPU device was asked to do since it
 * was made (all 0 on the CPU and the simulator) */
static int device_stats(lua_State *L) {
  ts_device_stats s;
  ts_device_stats_get(check_box(L, 1, DEVICE_MT), &s);
  lua_createtable(L, 0, 8);
  const struct {
    const char *name;
    int64_t v;
  } f[] = {{"launches", s.launches}, {"waits", s.waits},   {"writes", s.writes},
           {"reads", s.reads},       {"copies", s.copies}, {"zeroes", s.zeroes},
           {"driver_allocs", s.driver_allocs}, {"cached_bytes", s.cached_bytes},
           {"graphs", s.graphs}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].name);
  }
  return 1;
}

static int device_threads(lua_State *L) {
  ts_device *d = check_box(L, 1, DEVICE_MT);
  lua_pushinteger(L, ts_device_thread_count(d));
  return 1;
}

/* ---- tensors ------------------------------------------------------------------- */

static ts_tensor *check_tensor(lua_State *L, int i) {
  return check_box(L, i, TENSOR_MT);
}


static uint32_t check_shape(lua_State *L, int i, int64_t *shape) {
  luaL_checktype(L, i, LUA_TTABLE);
  lua_Integer n = luaL_len(L, i);
  if (n > TS_MAX_RANK)
    luaL_argerror(L, i, "more than 8 dims");
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0)
      luaL_argerror(L, i, "shape entries are integers >= 0");
    shape[k - 1] = v;
    lua_pop(L, 1);
  }
  return (uint32_t)n;
}

static int push_cpu_device(lua_State *L, bool gpusim);

/* One CPU device per Lua state for staging GPU tensors through the host. */
static ts_device *host_device(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "tessera.host") == LUA_TNIL) {
    lua_pop(L, 1);
    push_cpu_device(L, false);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "tessera.host");
  }
  ts_device *d = *(void **)lua_touserdata(L, -1);
  lua_pop(L, 1); /* the registry keeps it alive */
  return d;
}

/* `t` itself when its data is host memory; otherwise a copy in host
 * memory, left on the stack (collected with it). */
static ts_tensor *host_tensor(lua_State *L, ts_tensor *t) {
  if (ts_device_is_host(ts_tensor_device(t))) {
    ts_status st = ts_graph_note_read(t); /* (refused while it records) */
    if (st)
      ts_lua_fail(L, st);
    return t;
  }
  ts_device *h = host_device(L);
  void **box = new_box(L, TENSOR_MT);
  ts_status st;
  CREATE(L, st, ts_tensor_copy(t, h, (ts_tensor **)box));
  if (st)
    ts_lua_fail(L, st);
  gc_account(L, box);
  return *box;
}

/* A new tensor on d pushed on the stack (zeros, or with `empty` none:
 * ts_tensor_create_empty); an error is raised. */
static ts_tensor *push_new_tensor(lua_State *L, ts_device *d, ts_dtype dt, uint32_t rank,
                                  const int64_t *shape, bool empty) {
  void **box = new_box(L, TENSOR_MT);
  ts_status st;
  CREATE(L, st,
         empty ? ts_tensor_create_empty(d, dt, rank, shape, (ts_tensor **)box)
               : ts_tensor_create(d, dt, rank, shape, (ts_tensor **)box));
  if (st)
    ts_lua_fail(L, st);
  gc_account(L, box);
  return *box;
}

/* Element k of t (host memory) from the value at the top of the stack, the
 * table's value k + 1: a number (a float dtype rounds it as a store does);
 * for an integer dtype an integer in its range (2.0 is one, 1.5 is not),
 * for bool true, false, 1 or 0. Anything else is an error naming it. */
static void set_element(lua_State *L, ts_tensor *t, int64_t k) {
  ts_dtype dt = ts_tensor_dtype(t);
  int ok;
  if (dt == TS_DTYPE_BOOL && lua_isboolean(L, -1)) {
    ts_tensor_set(t, k, lua_toboolean(L, -1));
    return;
  }
  int64_t lo, hi;
  if (!ts_dtype_int_range(dt, &lo, &hi)) {
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok)
      luaL_error(L, "value %d is a %s, not a number", (int)(k + 1), luaL_typename(L, -1));
    ts_tensor_set(t, k, v);
    return;
  }
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (ok && v >= lo && v <= hi) {
    ts_tensor_set_int(t, k, v);
    return;
  }
  const char *shown = luaL_tolstring(L, -1, NULL);
  if (dt == TS_DTYPE_BOOL)
    luaL_error(L, "value %d (%s) is not a bool: true, false, 1 or 0", (int)(k + 1), shown);
  luaL_error(L, "value %d (%s) is not an %s: integers from %I to %I", (int)(k + 1), shown,
             ts_dtype_name(dt), (LUAI_UACINT)lo, (LUAI_UACINT)hi);
}

/* Fills t from a flat table of numbers (its length must match). A device
 * tensor's values are staged in a new host tensor (not a copy of t: that
 * would wait for the device) and written in. */
static void fill_from_table(lua_State *L, int i, ts_tensor *t) {
  if (!ts_device_is_host(ts_tensor_device(t))) {
    int64_t shape[TS_MAX_RANK];
    for (uint32_t k = 0; k < ts_tensor_rank(t); k++)
      shape[k] = ts_tensor_dim(t, k);
    ts_tensor *h = push_new_tensor(L, host_device(L), ts_tensor_dtype(t), ts_tensor_rank(t),
                                   shape, true);
    fill_from_table(L, i, h);
    ts_status st = ts_tensor_write(t, ts_tensor_data(h), ts_tensor_size(h));
    if (st)
      ts_lua_fail(L, st);
    lua_pop(L, 1);
    return;
  }
  luaL_checktype(L, i, LUA_TTABLE);
  int64_t n = ts_tensor_count(t);
  if (luaL_len(L, i) != n)
    luaL_error(L, "%d values given for a tensor of %d", (int)luaL_len(L, i),
               (int)n);
  for (int64_t k = 0; k < n; k++) {
    lua_geti(L, i, k + 1);
    set_element(L, t, k);
    lua_pop(L, 1);
  }
  ts_status st = ts_graph_note_write(t); /* (recorded while its device records) */
  if (st)
    ts_lua_fail(L, st);
}

/* ts.tensor(dtype, shape [, values | nil] [, device]): zeros, or the
 * values (a table of exactly its element count) */
static int l_tensor(lua_State *L) {
  ts_dtype dt = check_dtype(L, 1);
  int64_t shape[TS_MAX_RANK];
  uint32_t rank = check_shape(L, 2, shape);
  lua_settop(L, 4); /* values and device at fixed slots, nil when absent */
  /* every element of a tensor made from values is written: no zeros first */
  ts_tensor *t = push_new_tensor(L, ts_lua_opt_device(L, 4), dt, rank, shape, !lua_isnil(L, 3));
  if (!lua_isnil(L, 3))
    fill_from_table(L, 3, t);
  return 1;
}

/* ts.empty(dtype, shape [, device]): a tensor whose every element is
 * written before it is read (a kernel's output): no zeros queued on a GPU;
 * 0xff bytes (NaN, -1) on the CPU and the simulator, so that an element
 * left unwritten shows there */
static int l_empty(lua_State *L) {
  ts_dtype dt = check_dtype(L, 1);
  int64_t shape[TS_MAX_RANK];
  uint32_t rank = check_shape(L, 2, shape);
  lua_settop(L, 3);
  push_new_tensor(L, ts_lua_opt_device(L, 3), dt, rank, shape, true);
  return 1;
}

static int tensor_gc(lua_State *L) {
  void **box = class_box(L, 1, TENSOR_MT);
  ts_tensor_release(*box);
  *box = NULL;
  return 0;
}

/* t:shape() -> {d1, d2, ...}; t:shape(k) -> dim k (1-based), no table made
 * (the model asks for one dim on the host's path between launches) */
static int tensor_shape(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer k = luaL_checkinteger(L, 2);
    luaL_argcheck(L, k >= 1 && k <= (lua_Integer)ts_tensor_rank(t), 2,
                  lua_pushfstring(L, "a dim of 1 .. %d", (int)ts_tensor_rank(t)));
    lua_pushinteger(L, ts_tensor_dim(t, (uint32_t)k - 1));
    return 1;
  }
  lua_createtable(L, (int)ts_tensor_rank(t), 0);
  for (uint32_t i = 0; i < ts_tensor_rank(t); i++) {
    lua_pushinteger(L, ts_tensor_dim(t, i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int tensor_dtype(lua_State *L) {
  lua_pushstring(L, ts_dtype_name(ts_tensor_dtype(check_tensor(L, 1))));
  return 1;
}

static int tensor_numel(lua_State *L) {
  lua_pushinteger(L, ts_tensor_count(check_tensor(L, 1)));
  return 1;
}

static void need_contiguous(lua_State *L, ts_tensor *t) {
  if (!ts_tensor_is_contiguous(t))
    luaL_error(L, "a strided view cannot be read or written element-wise "
                  "yet; slice along the first dim");
}

/* t:to_table() -> flat table of numbers */
static int tensor_to_table(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  need_contiguous(L, t);
  t = host_tensor(L, t);
  int64_t n = ts_tensor_count(t);
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) {
    if (ts_dtype_is_int(ts_tensor_dtype(t)))
      lua_pushinteger(L, (lua_Integer)ts_tensor_get_int(t, i));
    else
      lua_pushnumber(L, ts_tensor_get(t, i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* t:set(values) */
static int tensor_set(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  need_contiguous(L, t);
  fill_from_table(L, 2, t);
  lua_settop(L, 1);
  return 1;
}

/* dst:assign(src) -> dst, holding src's elements (same dtype and count) */
static int tensor_assign(lua_State *L) {
  ts_tensor *d = check_tensor(L, 1), *src = check_tensor(L, 2);
  ts_status st = ts_tensor_assign(d, src);
  if (st)
    return ts_lua_fail(L, st);
  lua_settop(L, 1);
  return 1;
}

/* t:slice(dim, start, len) -> a view (dims 0-based) */
static int tensor_slice(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  lua_Integer dim = luaL_checkinteger(L, 2), start = luaL_checkinteger(L, 3);
  lua_Integer len = luaL_checkinteger(L, 4);
  if (dim < 0)
    return luaL_argerror(L, 2, "dims are 0-based and >= 0");
  void **box = new_box(L, TENSOR_MT);
  ts_tensor *v;
  ts_status st = ts_tensor_slice(t, (uint32_t)dim, start, len, &v);
  if (st)
    return ts_lua_fail(L, st);
  *box = v;
  return 1;
}

/* t:reshape{dims} -> a view with another shape (contiguous tensors) */
static int tensor_reshape(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  int64_t shape[TS_MAX_RANK];
  uint32_t rank = check_shape(L, 2, shape);
  void **box = new_box(L, TENSOR_MT);
  ts_tensor *v;
  ts_status st = ts_tensor_reshape(t, rank, shape, &v);
  if (st)
    return ts_lua_fail(L, st);
  *box = v;
  return 1;
}

/* A new tensor on `d` holding t's values converted to `dt`. */
/* The value on top becomes the only one above `top` (staging copies below
 * it are dropped). */
static int keep_result(lua_State *L, int top) {
  if (lua_gettop(L) > top + 1) {
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
  }
  return 1;
}

static int cast_to(lua_State *L, ts_tensor *t, ts_dtype dt, ts_device *d) {
  need_contiguous(L, t);
  int top = lua_gettop(L);
  if (!ts_device_is_host(d)) { /* convert on the host, then copy over */
    ts_tensor *h = dt == ts_tensor_dtype(t) ? t : NULL;
    if (!h) {
      cast_to(L, t, dt, host_device(L));
      h = *(void **)lua_touserdata(L, -1);
    }
    void **box = new_box(L, TENSOR_MT);
    ts_status st;
    CREATE(L, st, ts_tensor_copy(h, d, (ts_tensor **)box));
    if (st)
      return ts_lua_fail(L, st);
    gc_account(L, box);
    return keep_result(L, top);
  }
  t = host_tensor(L, t);
  int64_t shape[TS_MAX_RANK];
  for (uint32_t i = 0; i < ts_tensor_rank(t); i++)
    shape[i] = ts_tensor_dim(t, i);
  void **box = new_box(L, TENSOR_MT);
  ts_tensor *c;
  ts_status st;
  CREATE(L, st, ts_tensor_create(d, dt, ts_tensor_rank(t), shape, &c));
  if (st)
    return ts_lua_fail(L, st);
  *box = c;
  gc_account(L, box);
  for (int64_t i = 0; i < ts_tensor_count(t); i++)
    ts_tensor_set(c, i, ts_tensor_get(t, i));
  if ((st = ts_graph_note_write(c)))
    return ts_lua_fail(L, st);
  return keep_result(L, top);
}

/* t:cast(dtype [, device]) -> a new tensor with the values converted */
static int tensor_cast(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  ts_dtype dt = check_dtype(L, 2);
  return cast_to(L, t, dt, ts_lua_opt_device(L, 3));
}

/* t:copy_to(device) -> a copy on that device */
static int tensor_copy_to(lua_State *L) {
  ts_tensor *t = check_tensor(L, 1);
  return cast_to(L, t, ts_tensor_dtype(t), ts_lua_opt_device(L, 2));
}

static int tensor_tostring(lua_State *L) {
  ts_tensor *t = *(void **)class_box(L, 1, TENSOR_MT);
  if (!t) {
    lua_pushstring(L, "tensor (closed)");
    return 1;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "tensor ");
  luaL_addstring(&b, ts_dtype_name(ts_tensor_dtype(t)));
  luaL_addchar(&b, '[');
  for (uint32_t i = 0; i < ts_tensor_rank(t); i++) {
    if (i)
      luaL_addstring(&b, ", ");
    lua_pushinteger(L, ts_tensor_dim(t, i));
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, ']');
  luaL_pushresult(&b);
  return 1;
}

/* ---- kernels ------------------------------------------------------------------- */

size_t ts_lua_defines(lua_State *L, int t, int keep, ts_define *defs,
                      size_t max) {
  size_t nd = 0;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  int n = 0;
  while (lua_next(L, t)) {
    if (nd == max)
      luaL_error(L, "at most %d values", (int)max);
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "the names must be strings");
    lua_pushvalue(L, -2);
    lua_rawseti(L, keep, ++n);
    if (lua_isboolean(L, -1)) {
      lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
    } else if (lua_isinteger(L, -1)) {
      lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, -1));
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      char num[40];
      snprintf(num, sizeof num, "%.17g", lua_tonumber(L, -1));
      lua_pushstring(L, num);
    } else {
      luaL_tolstring(L, -1, NULL);
    }
    lua_rawseti(L, keep, ++n);
    lua_pop(L, 1);
    nd++;
  }
  for (size_t i = 0; i < nd; i++) {
    lua_rawgeti(L, keep, (lua_Integer)(2 * i + 1));
    defs[i].name = lua_tostring(L, -1);
    lua_rawgeti(L, keep, (lua_Integer)(2 * i + 2));
    defs[i].value = lua_tostring(L, -1);
    lua_pop(L, 2);
  }
  return nd;
}

/* ts.kernel(path, name [, params [, device [, shapes]]]): with the shapes
 * it will run at, the best config the tuning database knows for them on
 * the device (the defaults when it knows none), holding the params given
 * (a dtype param, say) when none of them is one the sweep tunes; explicit
 * tuned params win. */
static int l_kernel(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *name = luaL_checkstring(L, 2);
  ts_define defs[48]; /* the params given, then a tuned config's */
  size_t nd = 0;
  lua_settop(L, 5);
  lua_newtable(L); /* 6: keeps the define strings alive */
  ts_device *d = ts_lua_opt_device(L, 4);
  char config[256], buf[256];
  if (!lua_isnil(L, 3))
    nd = ts_lua_defines(L, 3, 6, defs, 32);
  if (!lua_isnil(L, 5)) {
    ts_define shapes[32];
    lua_newtable(L); /* 7 */
    size_t ns = ts_lua_defines(L, 5, 7, shapes, 32);
    bool found = false;
    ts_status st = ts_tune_lookup(NULL, path, name, shapes, ns, defs, nd,
                                  ts_device_name(d), config, sizeof config,
                                  &found);
    if (st)
      return ts_lua_fail(L, st);
    if (found)
      nd += ts_tune_config_defines(config, buf, sizeof buf, defs + nd, 48 - nd);
  }
  ts_diags diags;
  ts_diags_init(&diags, ts_allocator_system());
  ts_kernel *k = NULL;
  ts_status st = ts_kernel_create(d, path, name, defs, nd, &diags, &k);
  if (st) {
    /* the diagnostics, rendered, are the error message */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    ts_buf text;
    ts_buf_init(&text, ts_allocator_system());
    for (const ts_diag *g = diags.head; g; g = g->next)
      ts_diag_render_one(g, &text, (ts_render_options){false, true});
    if (text.ptr)
      luaL_addstring(&b, text.ptr);
    luaL_addstring(&b, ts_status_message(st));
    ts_buf_deinit(&text);
    ts_diags_deinit(&diags);
    ts_status_free(st);
    luaL_pushresult(&b);
    return lua_error(L);
  }
  ts_diags_deinit(&diags);
  void **box = new_box(L, KERNEL_MT);
  *box = k;
  return 1;
}

/* k:config(): the params it was compiled with, "NAME=VALUE ..." */
static int kernel_config(lua_State *L) {
  lua_pushstring(L, ts_kernel_config(check_box(L, 1, KERNEL_MT)));
  return 1;
}

/* k:params(): every param and the value it was compiled with (given, or
 * its default for the device: `arch` may choose it), {NAME = value}: ints
 * as integers, floats, booleans, dtypes by name */
static int kernel_params(lua_State *L) {
  size_t n;
  const ts_symbol *const *p = ts_kernel_params(check_box(L, 1, KERNEL_MT), &n);
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    const ts_const *c = &p[i]->cval;
    switch (c->kind) {
    case TS_CONST_INT: lua_pushinteger(L, (lua_Integer)c->i); break;
    case TS_CONST_FLOAT: lua_pushnumber(L, c->f); break;
    case TS_CONST_BOOL: lua_pushboolean(L, c->b); break;
    case TS_CONST_DTYPE: lua_pushstring(L, ts_dtype_name(c->dt)); break;
    default: lua_pushnil(L); break;
    }
    lua_pushlstring(L, p[i]->name.ptr, p[i]->name.len);
    lua_insert(L, -2);
    lua_rawset(L, -3);
  }
  return 1;
}

static int kernel_gc(lua_State *L) {
  void **box = class_box(L, 1, KERNEL_MT);
  ts_kernel_release(*box);
  *box = NULL;
  return 0;
}

/* k:launch{arg1, arg2, ...}: tensors and numbers (booleans for bools) */
static int kernel_launch(lua_State *L) {
  ts_kernel *k = check_box(L, 1, KERNEL_MT);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (n > 128)
    return luaL_error(L, "too many arguments");
  ts_arg args[128];
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    ts_arg *a = &args[i - 1];
    if (lua_isuserdata(L, -1)) {
      *a = ts_arg_tensor(check_tensor(L, -1));
    } else if (lua_isboolean(L, -1)) {
      *a = (ts_arg){TS_ARG_BOOL, NULL, lua_toboolean(L, -1), 0};
    } else if (lua_isinteger(L, -1)) {
      *a = ts_arg_int(lua_tointeger(L, -1));
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      *a = ts_arg_float(lua_tonumber(L, -1));
    } else {
      return luaL_error(L, "argument %d is a %s; tensors and numbers only",
                        (int)i, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  /* grid = {x [, y [, z]]}: an explicit grid instead of the kernel's */
  int64_t grid[3] = {1, 1, 1};
  bool has_grid = lua_getfield(L, 2, "grid") != LUA_TNIL;
  if (has_grid) {
    if (!lua_istable(L, -1) || luaL_len(L, -1) < 1 || luaL_len(L, -1) > 3)
      return luaL_error(L, "grid is a table of 1 to 3 block counts");
    for (lua_Integer i = 1; i <= luaL_len(L, -1); i++) {
      lua_geti(L, -1, i);
      int ok;
      lua_Integer v = lua_tointegerx(L, -1, &ok);
      if (!ok || v < 0)
        return luaL_error(L, "grid[%d] is not a count of blocks", (int)i);
      grid[i - 1] = v;
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  ts_status st = has_grid ? ts_kernel_launch_grid(k, args, (size_t)n, grid)
                          : ts_kernel_launch(k, args, (size_t)n);
  if (st)
    return ts_lua_fail(L, st);
  return 0;
}

/* ---- safetensors ------------------------------------------------------------------- */

/* ts.load(path) -> file */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  void **box = new_box(L, FILE_MT);
  ts_safetensors *f;
  ts_status st = ts_safetensors_open(path, &f);
  if (st)
    return ts_lua_fail(L, st);
  *box = f;
  return 1;
}

static int file_gc(lua_State *L) {
  void **box = class_box(L, 1, FILE_MT);
  ts_safetensors_close(*box);
  *box = NULL;
  return 0;
}

/* f:names() -> table of names */
static int file_names(lua_State *L) {
  ts_safetensors *f = check_box(L, 1, FILE_MT);
  size_t n = ts_safetensors_count(f);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, ts_safetensors_at(f, i)->name);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* f:get(name [, device]) -> a tensor holding a copy; error when absent */
static int file_get(lua_State *L) {
  ts_safetensors *f = check_box(L, 1, FILE_MT);
  const char *name = luaL_checkstring(L, 2);
  const ts_st_tensor *s = ts_safetensors_find(f, name);
  if (!s)
    return luaL_error(L, "no tensor '%s' in the file", name);
  lua_settop(L, 3);
  ts_device *d = ts_lua_opt_device(L, 3);
  void **box = new_box(L, TENSOR_MT);
  ts_tensor *t;
  ts_status st;
  CREATE(L, st, ts_tensor_create(d, s->dtype, s->rank, s->shape, &t));
  if (st)
    return ts_lua_fail(L, st);
  *box = t;
  gc_account(L, box);
  if ((st = ts_tensor_write(t, s->data, s->size)))
    return ts_lua_fail(L, st);
  return 1;
}

/* f:read_into(name, t): the tensor's bytes straight into t (a tensor of the
 * same dtype and element count on any device, a slice of a stack too), one
 * copy from the mapped file where f:get + assign makes two */
static int file_read_into(lua_State *L) {
  ts_safetensors *f = check_box(L, 1, FILE_MT);
  const char *name = luaL_checkstring(L, 2);
  ts_tensor *t = check_tensor(L, 3);
  const ts_st_tensor *s = ts_safetensors_find(f, name);
  if (!s)
    return luaL_error(L, "no tensor '%s' in the file", name);
  int64_t count = 1;
  for (uint32_t i = 0; i < s->rank; i++)
    count *= s->shape[i];
  if (s->dtype != ts_tensor_dtype(t) || count != ts_tensor_count(t))
    return luaL_error(L, "read_into: '%s' is %s[%I], the tensor %s[%I]", name,
                      ts_dtype_name(s->dtype), (lua_Integer)count,
                      ts_dtype_name(ts_tensor_dtype(t)), (lua_Integer)ts_tensor_count(t));
  ts_status st = ts_tensor_write(t, s->data, s->size);
  if (st)
    return ts_lua_fail(L, st);
  return 0;
}

/* f:info(name) -> dtype, {shape}: from the header, nothing read or copied
 * (a checkpoint is checked before any weight is loaded); nil when absent */
static int file_info(lua_State *L) {
  ts_safetensors *f = check_box(L, 1, FILE_MT);
  const ts_st_tensor *s = ts_safetensors_find(f, luaL_checkstring(L, 2));
  if (!s) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushstring(L, ts_dtype_name(s->dtype));
  lua_createtable(L, (int)s->rank, 0);
  for (uint32_t i = 0; i < s->rank; i++) {
    lua_pushinteger(L, s->shape[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 2;
}

/* f:meta(key) -> string or nil */
static int file_meta(lua_State *L) {
  ts_safetensors *f = check_box(L, 1, FILE_MT);
  const char *v = ts_safetensors_meta(f, luaL_checkstring(L, 2));
  if (v)
    lua_pushstring(L, v);
  else
    lua_pushnil(L);
  return 1;
}

static const char *st_dtype_name(ts_dtype d) {
  switch (d) {
  case TS_DTYPE_F32: return "F32";
  case TS_DTYPE_F16: return "F16";
  case TS_DTYPE_BF16: return "BF16";
  case TS_DTYPE_FP8E4M3: return "F8_E4M3";
  case TS_DTYPE_I8: return "I8";
  case TS_DTYPE_I32: return "I32";
  case TS_DTYPE_I64: return "I64";
  default: return "BOOL";
  }
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The safetensors dtype of tensor `name` as ts.save writes it: its own, or
 * "F8_E8M0" where the overrides table (argument 4) says so; l_save checked
 * the overrides before. */
static const char *saved_dtype(lua_State *L, const char *name, ts_tensor *t) {
  const char *dn = st_dtype_name(ts_tensor_dtype(t));
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, name);
    if (lua_isstring(L, -1))
      dn = "F8_E8M0";
    lua_pop(L, 1);
  }
  return dn;
}

/* A name or metadata string that ts.save can write and ts.load read back
 * (its JSON escapes any byte but NUL, which the reader refuses). */
static void check_savable(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (memchr(s, 0, len))
    luaL_error(L, "ts.save: %s '%s' holds a NUL byte", what, s);
}

/* ts.save(path, {name = tensor, ...} [, {key = "value"}] [, {name =
 * "F8_E8M0"}]): written atomically, names sorted, names and metadata as
 * JSON strings (any bytes but NUL). The last table writes i8 tensors under
 * the dtype of ue8m0 scale bytes (V4's checkpoints), which ts.load reads
 * back as i8. */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *names[4096];
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_error(L, "tensor names must be strings");
    check_savable(L, -2, "tensor name");
    if (!luaL_testudata(L, -1, TENSOR_MT))
      return luaL_error(L, "ts.save: '%s' is a %s, not a tensor", lua_tostring(L, -2),
                        luaL_typename(L, -1));
    check_tensor(L, -1);
    if (n == 4096)
      return luaL_error(L, "at most 4096 tensors");
    names[n++] = lua_tostring(L, -2);
    lua_pop(L, 1);
  }
  if (lua_istable(L, 3)) { /* metadata: strings (checked before any buffer) */
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        return luaL_error(L, "ts.save: metadata keys must be strings, values strings "
                             "or numbers");
      check_savable(L, -2, "metadata key");
      check_savable(L, -1, "metadata value");
      lua_pop(L, 1);
    }
  }
  if (!lua_isnoneornil(L, 4)) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 4)) {
      const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
      if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "F8_E8M0") != 0)
        return luaL_error(L, "ts.save: dtype of '%s': only \"F8_E8M0\" may be given", name);
      lua_getfield(L, 2, name);
      ts_tensor *t = lua_isnil(L, -1) ? NULL : check_tensor(L, -1);
      if (!t || ts_tensor_dtype(t) != TS_DTYPE_I8)
        return luaL_error(L, "ts.save: '%s' written as F8_E8M0 must be an i8 tensor of the file",
                          name);
      lua_pop(L, 2);
    }
  }
  qsort(names, n, sizeof *names, cmp_names);
  ts_buf h, all;
  ts_buf_init(&h, ts_allocator_system());
  ts_buf_init(&all, ts_allocator_system());
  ts_buf_putc(&h, '{');
  bool first = true;
  if (lua_istable(L, 3)) {
    ts_buf_puts(&h, "\"__metadata__\":{");
    lua_pushnil(L);
    bool f2 = true;
    while (lua_next(L, 3)) {
      size_t kl, vl;
      const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
      if (!f2)
        ts_buf_putc(&h, ',');
      ts_json_put_string(&h, k, kl);
      ts_buf_putc(&h, ':');
      ts_json_put_string(&h, v, vl);
      f2 = false;
      lua_pop(L, 1);
    }
    ts_buf_putc(&h, '}');
    first = false;
  }
  uint64_t off = 0;
  for (size_t i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    ts_tensor *t = check_tensor(L, -1);
    lua_pop(L, 1);
    if (!first)
      ts_buf_putc(&h, ',');
    ts_json_put_string(&h, names[i], strlen(names[i]));
    ts_buf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", saved_dtype(L, names[i], t));
    for (uint32_t d = 0; d < ts_tensor_rank(t); d++)
      ts_buf_printf(&h, "%s%lld", d ? "," : "", (long long)ts_tensor_dim(t, d));
    uint64_t size = ts_tensor_size(t);
    ts_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                  (unsigned long long)(off + size));
    off += size;
    first = false;
  }
  ts_buf_putc(&h, '}');
  while (h.len % 8)
    ts_buf_putc(&h, ' ');
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  ts_buf_append(&all, (const char *)len8, 8);
  ts_buf_append(&all, h.ptr, h.len);
  for (size_t i = 0; i < n; i++) {
    lua_getfield(L, 2, names[i]);
    ts_tensor *t = check_tensor(L, -1);
    lua_pop(L, 1);
    if (!ts_tensor_is_contiguous(t)) {
      ts_buf_deinit(&h);
      ts_buf_deinit(&all);
      return luaL_error(L, "tensor '%s' is a strided view", names[i]);
    }
    ts_buf_append(&all, ts_tensor_data(host_tensor(L, t)), ts_tensor_size(t));
  }
  ts_status st = all.failed ? ts_status_nomem()
                            : ts_file_write_atomic(path, all.ptr, all.len);
  ts_buf_deinit(&h);
  ts_buf_deinit(&all);
  if (st)
    return ts_lua_fail(L, st);
  return 0;
}

/* ---- misc ----------------------------------------------------------------------------- */

static int l_clock(lua_State *L) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  lua_pushnumber(L, (double)t.tv_sec + (double)t.tv_nsec * 1e-9);
  return 1;
}

/* tessera.profile(on) turns the kernel profile on or off;
 * tessera.profile() -> its rows, most time first: {kernel, params, device,
 * launches, seconds, min, max} (runtime/profile.c) */
static int l_profile(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    ts_profile_enable(lua_toboolean(L, 1));
    return 0;
  }
  size_t n = ts_profile_rows(NULL, 0);
  ts_profile_row *rows = n ? malloc(n * sizeof *rows) : NULL;
  if (n && !rows)
    return luaL_error(L, "out of memory");
  size_t now = ts_profile_rows(rows, n); /* (rows made since count too) */
  n = now < n ? now : n;
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    const ts_profile_row *r = &rows[i];
    lua_createtable(L, 0, 7);
    const char *text[3][2] = {{"kernel", r->kernel}, {"params", r->config},
                              {"device", r->device}};
    for (int f = 0; f < 3; f++) {
      lua_pushstring(L, text[f][1]);
      lua_setfield(L, -2, text[f][0]);
    }
    lua_pushinteger(L, (lua_Integer)r->launches);
    lua_setfield(L, -2, "launches");
    const struct { const char *k; double v; } num[3] = {
        {"seconds", r->seconds}, {"min", r->min}, {"max", r->max}};
    for (int f = 0; f < 3; f++) {
      lua_pushnumber(L, num[f].v);
      lua_setfield(L, -2, num[f].k);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(rows);
  return 1;
}

static int l_profile_reset(lua_State *L) {
  (void)L;
  ts_profile_reset();
  return 0;
}

/* tessera.check(path [, {NAME = value, ...}]) -> ok, messages */
static int l_check(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  ts_define defs[32];
  size_t ndefs = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_newtable(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (n / 2 == (int)TS_ARRAY_COUNT(defs))
        return luaL_error(L, "at most %d params", (int)TS_ARRAY_COUNT(defs));
      lua_pushvalue(L, -2);
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "param names must be strings");
      lua_rawseti(L, 3, ++n);
      luaL_tolstring(L, -1, NULL);
      lua_rawseti(L, 3, ++n);
      lua_pop(L, 1);
    }
    for (int i = 1; i < n; i += 2) {
      lua_rawgeti(L, 3, i);
      defs[ndefs].name = lua_tostring(L, -1);
      lua_rawgeti(L, 3, i + 1);
      defs[ndefs].value = lua_tostring(L, -1);
      lua_pop(L, 2);
      ndefs++;
    }
  }
  const ts_allocator *a = ts_allocator_system();
  char *text;
  size_t len;
  ts_status st = ts_file_read(a, path, &text, &len);
  if (st)
    return ts_lua_fail(L, st);
  ts_diags d;
  ts_diags_init(&d, a);
  ts_compile_options opt = {
      .emit = TS_EMIT_TYPED, .defines = defs, .define_count = ndefs, .define_label = "param"};
  ts_buf out, msgs;
  ts_buf_init(&out, a);
  ts_buf_init(&msgs, a);
  st = ts_compile(a, path, text, len, &opt, &d, &out);
  for (const ts_diag *dg = d.head; dg; dg = dg->next)
    ts_diag_render_one(dg, &msgs, (ts_render_options){false, true});
  lua_pushboolean(L, st == NULL);
  lua_pushstring(L, msgs.ptr ? msgs.ptr : (st ? ts_status_message(st) : ""));
  ts_status_free(st);
  ts_buf_deinit(&out);
  ts_buf_deinit(&msgs);
  ts_diags_deinit(&d);
  ts_release(a, text, len + 1);
  return 2;
}

/* The class `name`'s metatable, its functions closed over the nup values on
 * the stack's top (popped), which every function of the class shares. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc, lua_CFunction tostring, int nup) {
  int ups = lua_gettop(L) - nup;
  luaL_newmetatable(L, name);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, name);
  lua_newtable(L);
  for (int k = 1; k <= nup; k++)
    lua_pushvalue(L, ups + k);
  luaL_setfuncs(L, methods, nup);
  lua_setfield(L, -2, "__index");
  const char *meta[] = {"__gc", "__close", "__tostring"};
  lua_CFunction fn[] = {gc, gc, tostring};
  for (int j = 0; j < 3; j++)
    if (fn[j]) {
      for (int k = 1; k <= nup; k++)
        lua_pushvalue(L, ups + k);
      lua_pushcclosure(L, fn[j], nup);
      lua_setfield(L, -2, meta[j]);
    }
  lua_pop(L, 1 + nup);
}

void ts_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc, lua_CFunction tostring) {
  new_class(L, name, methods, gc, tostring, 0);
}


int luaopen_tessera(lua_State *L) {
  static const luaL_Reg device_methods[] = {
      {"name", device_name}, {"threads", device_threads}, {"arch", device_arch},
      {"sync", device_sync}, {"stats", device_stats}, {NULL, NULL}};
  static const luaL_Reg tensor_methods[] = {
      {"shape", tensor_shape},   {"dtype", tensor_dtype},
      {"numel", tensor_numel},   {"to_table", tensor_to_table},
      {"set", tensor_set},       {"slice", tensor_slice},
      {"reshape", tensor_reshape},
      {"cast", tensor_cast},     {"copy_to", tensor_copy_to},
      {"assign", tensor_assign},
      {"close", tensor_gc},      {NULL, NULL}};
  static const luaL_Reg kernel_methods[] = {
      {"launch", kernel_launch}, {"config", kernel_config}, {"params", kernel_params},
      {"close", kernel_gc},      {NULL, NULL}};
  static const luaL_Reg file_methods[] = {{"names", file_names},
                                          {"get", file_get},
                                          {"info", file_info},
                                          {"read_into", file_read_into},
                                          {"meta", file_meta},
                                          {"close", file_gc},
                                          {NULL, NULL}};
  module_state *m = lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);
  static const struct {
    const char *name;
    const luaL_Reg *methods;
    lua_CFunction gc, tostring;
  } classes[CLASSES] = {[DEVICE_C] = {DEVICE_MT, device_methods, device_gc, NULL},
                        [TENSOR_C] = {TENSOR_MT, tensor_methods, tensor_gc, tensor_tostring},
                        [KERNEL_C] = {KERNEL_MT, kernel_methods, kernel_gc, NULL},
                        [FILE_C] = {FILE_MT, file_methods, file_gc, NULL}};
  for (int k = 0; k < CLASSES; k++) { /* their functions share m */
    lua_pushvalue(L, -1);
    new_class(L, classes[k].name, classes[k].methods, classes[k].gc, classes[k].tostring, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, classes[k].name);
    m->mt[k] = lua_topointer(L, -1);
    lua_pop(L, 1);
  }
  static const luaL_Reg fns[] = {{"check", l_check},
                                 {"device", l_device},
                                 {"default_device", l_default_device},
                                 {"tensor", l_tensor},
                                 {"empty", l_empty},
                                 {"kernel", l_kernel},
                                 {"load", l_load},
                                 {"save", l_save},
                                 {"clock", l_clock},
                                 {"profile", l_profile},
                                 {"profile_reset", l_profile_reset},
                                 {"tune", ts_lua_tune},
                                 {"tuned", ts_lua_tuned},
                                 {NULL, NULL}};
  luaL_newlibtable(L, fns);
  lua_pushvalue(L, -2); /* the module_state */
  luaL_setfuncs(L, fns, 1);
  lua_remove(L, -2);
  ts_lua_open_tokenizer(L);
  ts_lua_open_graph(L);
  ts_lua_open_net(L);
  lua_pushstring(L, ts_compiler_version());
  lua_setfield(L, -2, "version");
  return 1;
}
