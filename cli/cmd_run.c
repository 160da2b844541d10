/* cmd_run.c - `tessera run SCRIPT.lua [args...]`: runs a Lua script with
 * the tessera module (require "tessera") and `arg` set as lua.c does
 * (arg[0] the script, arg[1..] its arguments). A script error prints its
 * traceback with file:line and exits 1. With TESSERA_PROFILE set, the
 * kernel profile (runtime/profile.c) goes to stderr at the end. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "lua/tessera_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void print_profile(void) { ts_profile_print(stderr); }

int cmd_run(int argc, char **argv) {
  if (argc < 1)
    return cli_usage_error("run", "no script");
  /* at exit, so that a script's os.exit prints it too */
  if (ts_profile_on())
    atexit(print_profile);
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "tessera run: out of memory\n");
    return EXIT_USAGE;
  }
  /* the collector in generational mode: a model's garbage is young (each
   * launch's argument table, views, outputs a step drops), which a minor
   * collection frees without traversing the whole heap (a tiny model's
   * decode step on the mock driver ~15% less host time than incremental;
   * the tensors' own pacing, lua/module.c's collect_all, is unchanged) */
  lua_gc(L, LUA_GCGEN, 0, 0);
  luaL_openlibs(L);
  luaL_requiref(L, "tessera", luaopen_tessera, 0);
  lua_pop(L, 1);
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  /* arg[-1]: this executable, as lua.c gives its interpreter (a script can
   * run another `tessera run`) */
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    lua_pushlstring(L, exe, (size_t)n);
    lua_rawseti(L, -2, -1);
  }
  lua_setglobal(L, "arg");
  int rc = EXIT_OK;
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[0]) != LUA_OK) {
    fprintf(stderr, "tessera run: %s\n", lua_tostring(L, -1));
    rc = lua_type(L, -1) == LUA_TSTRING &&
                 strstr(lua_tostring(L, -1), "cannot open")
             ? EXIT_USAGE
             : EXIT_PROGRAM;
  } else {
    for (int i = 1; i < argc; i++)
      lua_pushstring(L, argv[i]);
    if (lua_pcall(L, argc - 1, 0, 1) != LUA_OK) {
      fprintf(stderr, "tessera run: %s\n", lua_tostring(L, -1));
      rc = EXIT_PROGRAM;
    }
  }
  lua_close(L);
  return rc;
}
