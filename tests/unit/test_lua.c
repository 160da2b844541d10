/* test_lua.c - the `tessera` Lua module: version, and check() on a good
 * kernel, a bad one (ok = false with the located message) and a missing
 * file (a Lua error). */
#include "lua/tessera_lua.h"
#include "tests/unit/harness.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static const char *run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK)
    return lua_tostring(L, -1);
  return lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
}

int main(void) {
  const char *root = getenv("TS_SOURCE_DIR");
  if (!root)
    root = ".";
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "tessera", luaopen_tessera, 0);
  lua_pop(L, 1);
  char code[1024];
  CHECK(strstr(run(L, "return require('tessera').version"), "tessera ") !=
        NULL);
  snprintf(code, sizeof code,
           "local ok, msg = require('tessera').check('%s/kernels/softmax.tile')"
           "\nreturn tostring(ok) .. '|' .. msg",
           root);
  CHECK(!strcmp(run(L, code), "true|"));
  snprintf(code, sizeof code,
           "local ok, msg = require('tessera').check("
           "'%s/kernels/softmax.tile', {BM = 'x'})\n"
           "return tostring(ok) .. '|' .. msg",
           root);
  const char *r = run(L, code);
  CHECK(!strncmp(r, "false|", 6) && strstr(r, "param BM=x: 'x' is not an 'int'"));
  snprintf(code, sizeof code,
           "local ok, msg = require('tessera').check("
           "'%s/kernels/softmax.tile', {BM = 16})\n"
           "return tostring(ok)",
           root);
  CHECK(!strcmp(run(L, code), "true"));
  r = run(L, "return select(2, pcall(require('tessera').check, "
             "'/nonexistent.tile'))");
  CHECK(strstr(r, "cannot open '/nonexistent.tile'") != NULL);
  lua_close(L);
  return ts_test_finish();
}
