/* module.c - luaopen_tessera: tessera.version and tessera.check(path, defs),
 * which runs the front end and returns ok, diagnostics-text. Errors of the
 * system (an unreadable file) are raised as Lua errors. */
#include "lua/tessera_lua.h"
#include "runtime/runtime.h"

#include <lauxlib.h>
#include <string.h>

/* tessera.check(path [, {NAME = value, ...}]) -> ok, messages */
static int l_check(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  ts_define defs[32];
  size_t ndefs = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    /* Strings are collected in a table at index 3, which keeps them alive. */
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
  if (st) {
    lua_pushstring(L, ts_status_message(st));
    ts_status_free(st);
    return lua_error(L);
  }
  ts_diags d;
  ts_diags_init(&d, a);
  ts_compile_options opt = {
      .emit = TS_EMIT_TYPED, .defines = defs, .define_count = ndefs};
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

int luaopen_tessera(lua_State *L) {
  static const luaL_Reg fns[] = {{"check", l_check}, {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_pushstring(L, ts_compiler_version());
  lua_setfield(L, -2, "version");
  return 1;
}
