/* tune.c - the tuner from Lua:
 *   ts.tune{file = F, kernel = K, shapes = {M = 1024, ...} [, device = d]
 *           [, budget = s] [, jobs = n] [, repeats = n] [, close = f] [, db = path]
 *           [, record = true] [, params = {W = "bf16", ...}] [, keep_spills = true]}
 * runs the sweep of runtime/tune.c and returns {best = "BM=64 ...",
 * default = ..., bucket = ..., pruned = n, spilled = n, results = {{config,
 * state, median, spread, runs, retimed, reason, registers, spill}, ...}
 * ranked} (retimed: timed again in turns with the configs whose fastest
 * run is within `close` of the best's, runtime/tune.c retime_close; on a GPU
 * device registers and spill from ptxas -v, else nil), recording the timings in the
 * tuning database unless record = false; `params` are held through the
 * sweep (none of them tuned) and recorded with the bucket;
 *   ts.tuned(F, K, shapes [, device [, db [, params]]]) -> {BM = 64, ...}
 * or nil is the best known config (with `params` held), as params for
 * ts.kernel. */
#include "lua/internal.h"
#include "runtime/tune.h"

#include <lauxlib.h>
#include <stdlib.h>

static const char *const state_names[] = {
    [TS_TUNE_OK] = "ok",         [TS_TUNE_PRUNED] = "pruned",
    [TS_TUNE_FAILED] = "failed", [TS_TUNE_WRONG] = "wrong",
    [TS_TUNE_NOT_TIMED] = "not timed"};

static const char *field_string(lua_State *L, const char *name, bool need) {
  lua_getfield(L, 1, name);
  const char *s = lua_tostring(L, -1);
  if (need && !s)
    luaL_error(L, "ts.tune: '%s' is required", name);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

static double field_number(lua_State *L, const char *name) {
  lua_getfield(L, 1, name);
  double v = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

int ts_lua_tune(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ts_tune_options o = {0};
  o.path = field_string(L, "file", true);
  o.kernel = field_string(L, "kernel", true);
  const char *db_path = field_string(L, "db", false);
  o.budget = field_number(L, "budget");
  o.jobs = (int)field_number(L, "jobs");
  o.repeats = (int)field_number(L, "repeats");
  o.close = field_number(L, "close");
  if (o.close != 0 && !(o.close >= 1))
    return luaL_error(L, "ts.tune: 'close' is a factor of 1 or more (1: no config timed again)");
  o.seed = 1;
  lua_getfield(L, 1, "record");
  bool record = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "keep_spills");
  o.keep_spills = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "device"); /* 2 */
  o.device = ts_lua_opt_device(L, 2);
  lua_getfield(L, 1, "shapes"); /* 3 */
  lua_newtable(L);              /* 4 */
  ts_define values[64];
  if (!lua_isnil(L, 3)) {
    o.values = values;
    o.nvalues = ts_lua_defines(L, 3, 4, values, 64);
  }
  lua_getfield(L, 1, "params"); /* 5 */
  lua_newtable(L);              /* 6 */
  ts_define fixed[16];
  if (!lua_isnil(L, 5)) {
    o.fixed = fixed;
    o.nfixed = ts_lua_defines(L, 5, 6, fixed, 16);
  }
  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  ts_tune_report r;
  ts_status st = ts_tune(&o, &d, &r);
  if (st) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    ts_buf text;
    ts_buf_init(&text, ts_allocator_system());
    for (const ts_diag *g = d.head; g; g = g->next)
      ts_diag_render_one(g, &text, (ts_render_options){false, true});
    if (text.ptr)
      luaL_addstring(&b, text.ptr);
    luaL_addstring(&b, ts_status_message(st));
    ts_buf_deinit(&text);
    ts_diags_deinit(&d);
    ts_status_free(st);
    luaL_pushresult(&b);
    return lua_error(L);
  }
  ts_diags_deinit(&d);
  if (record) {
    ts_tunedb *db = NULL;
    const char *warning = NULL;
    st = ts_tunedb_open(db_path, &db, &warning);
    if (warning)
      fprintf(stderr, "tessera: warning: %s\n", warning);
    if (!st)
      st = ts_tunedb_put(db, o.kernel, &r);
    ts_tunedb_close(db);
    if (st) {
      ts_tune_report_free(&r);
      return ts_lua_fail(L, st);
    }
  }
  lua_newtable(L);
  if (r.count && r.results[0].state == TS_TUNE_OK) {
    lua_pushstring(L, r.results[0].config);
    lua_setfield(L, -2, "best");
  }
  lua_pushstring(L, r.default_config);
  lua_setfield(L, -2, "default");
  lua_pushstring(L, r.bucket);
  lua_setfield(L, -2, "bucket");
  lua_pushinteger(L, (lua_Integer)r.pruned);
  lua_setfield(L, -2, "pruned");
  lua_pushinteger(L, (lua_Integer)r.spilled);
  lua_setfield(L, -2, "spilled");
  lua_createtable(L, (int)r.count, 0);
  for (size_t i = 0; i < r.count; i++) {
    const ts_tune_result *x = &r.results[i];
    lua_createtable(L, 0, 5);
    lua_pushstring(L, x->config);
    lua_setfield(L, -2, "config");
    lua_pushstring(L, state_names[x->state]);
    lua_setfield(L, -2, "state");
    lua_pushnumber(L, x->median);
    lua_setfield(L, -2, "median");
    lua_pushnumber(L, x->spread);
    lua_setfield(L, -2, "spread");
    lua_pushinteger(L, x->runs);
    lua_setfield(L, -2, "runs");
    lua_pushboolean(L, x->retimed);
    lua_setfield(L, -2, "retimed");
    lua_pushstring(L, x->reason);
    lua_setfield(L, -2, "reason");
    if (x->registers >= 0) {
      lua_pushinteger(L, (lua_Integer)x->registers);
      lua_setfield(L, -2, "registers");
      lua_pushinteger(L, (lua_Integer)x->spill);
      lua_setfield(L, -2, "spill");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "results");
  ts_tune_report_free(&r);
  return 1;
}

int ts_lua_tuned(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *kernel = luaL_checkstring(L, 2);
  lua_settop(L, 6);
  const char *db_path = luaL_optstring(L, 5, NULL);
  ts_device *dev = ts_lua_opt_device(L, 4);
  lua_newtable(L); /* 7 */
  lua_newtable(L); /* 8 */
  ts_define values[64], fixed[16];
  size_t n = ts_lua_defines(L, 3, 7, values, 64);
  size_t nf = lua_isnil(L, 6) ? 0 : ts_lua_defines(L, 6, 8, fixed, 16);
  char config[256], buf[256];
  bool found = false;
  ts_status st = ts_tune_lookup(db_path, path, kernel, values, n, fixed, nf,
                                ts_device_name(dev), config, sizeof config,
                                &found);
  if (st)
    return ts_lua_fail(L, st);
  if (!found) {
    lua_pushnil(L);
    return 1;
  }
  ts_define defs[32];
  size_t nd = ts_tune_config_defines(config, buf, sizeof buf, defs, 32);
  lua_newtable(L);
  for (size_t i = 0; i < nd; i++) {
    lua_pushinteger(L, atoll(defs[i].value));
    lua_setfield(L, -2, defs[i].name);
  }
  return 1;
}
