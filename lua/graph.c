/* graph.c - tessera.capture: the work a Lua function gives a device,
 * recorded as it runs, as a graph that replays it without the Lua
 * (runtime/graph.c; docs/lua.md "Graphs"). */
#include "lua/internal.h"

static const char GRAPH_MT[] = "tessera.Graph";

static ts_graph *check(lua_State *L) {
  ts_graph **box = luaL_checkudata(L, 1, GRAPH_MT);
  if (!*box)
    luaL_error(L, "attempt to use a closed graph");
  return *box;
}

static int graph_gc(lua_State *L) {
  ts_graph **box = luaL_checkudata(L, 1, GRAPH_MT);
  ts_graph_release(*box);
  *box = NULL;
  return 0;
}

/* ts.capture(fn [, device]) -> graph, fn's results: runs fn() with the
 * device (the default device when nil) recording what it is given; an
 * error in fn (a read of the device's tensors into Lua among them) drops
 * the recording and is raised. */
static int l_capture(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  ts_device *d = ts_lua_opt_device(L, 2);
  lua_settop(L, 2);
  ts_graph **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, GRAPH_MT);
  ts_status st = ts_graph_begin(d);
  if (st)
    return ts_lua_fail(L, st);
  lua_pushvalue(L, 1);
  if (lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
    ts_graph_abort(d);
    return lua_error(L);
  }
  st = ts_graph_end(d, box);
  if (st)
    return ts_lua_fail(L, st);
  return lua_gettop(L) - 2; /* the graph and fn's results */
}

/* g:replay(): the recorded work again (queued, on a GPU) */
static int graph_replay(lua_State *L) {
  ts_status st = ts_graph_replay(check(L));
  if (st)
    return ts_lua_fail(L, st);
  return 0;
}

/* g:counts() -> {launches, zeroes, writes, copies, write_bytes}: the work
 * of one replay */
static int graph_counts(lua_State *L) {
  ts_graph_counts c;
  ts_graph_counts_get(check(L), &c);
  const struct {
    const char *k;
    int64_t v;
  } f[] = {{"launches", c.launches}, {"zeroes", c.zeroes},           {"writes", c.writes},
           {"copies", c.copies},     {"write_bytes", c.write_bytes}};
  lua_createtable(L, 0, 5);
  for (int i = 0; i < 5; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  return 1;
}

void ts_lua_open_graph(lua_State *L) {
  static const luaL_Reg methods[] = {{"replay", graph_replay},
                                     {"counts", graph_counts},
                                     {"close", graph_gc},
                                     {NULL, NULL}};
  ts_lua_new_class(L, GRAPH_MT, methods, graph_gc, NULL);
  lua_pushcfunction(L, l_capture);
  lua_setfield(L, -2, "capture");
}
