/* internal.h - private to lua/: what the module's files share. */
#ifndef TS_LUA_INTERNAL_H
#define TS_LUA_INTERNAL_H

#include "runtime/runtime.h"

#include <lauxlib.h>
#include <lua.h>

/* The device at stack index i, or the default device when it is nil. */
ts_device *ts_lua_opt_device(lua_State *L, int i);
/* NAME = value pairs of the table at `t` as defines, their strings kept in
 * the table at `keep`; returns the count (a Lua error past `max`). */
size_t ts_lua_defines(lua_State *L, int t, int keep, ts_define *defs,
                      size_t max);
/* ts.tune{...} and ts.tuned(...) (tune.c). */
int ts_lua_tune(lua_State *L);
int ts_lua_tuned(lua_State *L);

/* Raises the status as a Lua error (frees it first). (module.c) */
int ts_lua_fail(lua_State *L, ts_status st);
/* A userdata metatable: the methods as __index, gc as __gc and __close,
 * tostring as __tostring when given. (module.c) */
void ts_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc, lua_CFunction tostring);
/* Adds ts.tokenizer to the module table on the stack top (tokenizer.c). */
void ts_lua_open_tokenizer(lua_State *L);
/* Adds ts.capture (graphs) to the module table on the stack top (graph.c). */
void ts_lua_open_graph(lua_State *L);
/* Adds ts.listen, ts.connect, ts.wait and ts.pid (TCP sockets: net.c). */
void ts_lua_open_net(lua_State *L);

#endif
