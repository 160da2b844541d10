/* tessera_lua.h - the `tessera` Lua module (require "tessera"). Today it
 * offers the version and the front-end check; tensors, kernels and devices
 * come with the runtime. */
#ifndef TS_LUA_H
#define TS_LUA_H

#include <lua.h>

/* Pushes the module table. */
int luaopen_tessera(lua_State *L);

#endif
