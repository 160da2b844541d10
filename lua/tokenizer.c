/* tokenizer.c - the Lua face of runtime/tokenizer.c:
 *   local tok = ts.tokenizer("tokenizer.json")
 *   tok:encode(text [, add_special]) -> {ids}   tok:decode(ids [, skip_special]) -> bytes
 *   tok:pieces(text) -> {strings}   tok:token(id) -> bytes, special   tok:id(s) -> id | nil
 *   tok:vocab_count() -> n
 * Ids are the checkpoint's token ids (0-based, as the embedding's rows). */
#include "lua/internal.h"

#include <lauxlib.h>
#include <stdlib.h>

#define TOKENIZER_MT "tessera.Tokenizer"

static ts_tokenizer *check(lua_State *L) {
  ts_tokenizer **box = luaL_checkudata(L, 1, TOKENIZER_MT);
  if (!*box)
    luaL_error(L, "attempt to use a closed Tokenizer");
  return *box;
}

static int l_tokenizer(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  ts_tokenizer **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, TOKENIZER_MT);
  ts_status st = ts_tokenizer_load(path, box);
  if (st)
    return ts_lua_fail(L, st);
  return 1;
}

static int tok_gc(lua_State *L) {
  ts_tokenizer **box = luaL_checkudata(L, 1, TOKENIZER_MT);
  ts_tokenizer_destroy(*box);
  *box = NULL;
  return 0;
}

static int tok_encode(lua_State *L) {
  ts_tokenizer *t = check(L);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  int32_t *ids;
  size_t n;
  ts_status st = ts_tokenizer_encode(t, text, len, lua_toboolean(L, 3), &ids, &n);
  if (st)
    return ts_lua_fail(L, st);
  lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(ids);
  return 1;
}

static int tok_pieces(lua_State *L) {
  ts_tokenizer *t = check(L);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  size_t *offs, n;
  ts_status st = ts_tokenizer_pieces(t, text, len, &offs, &n);
  if (st)
    return ts_lua_fail(L, st);
  lua_createtable(L, n < INT32_MAX ? (int)n : 0, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushlstring(L, text + offs[2 * i], offs[2 * i + 1] - offs[2 * i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(offs);
  return 1;
}

static int tok_decode(lua_State *L) {
  ts_tokenizer *t = check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  int32_t *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *ids);
  if (!ids)
    return luaL_error(L, "out of memory");
  for (lua_Integer i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    lua_pop(L, 1);
    if (!ok || v < INT32_MIN || v > INT32_MAX) {
      free(ids);
      return luaL_error(L, "decode: entry %d is not a token id", (int)(i + 1));
    }
    ids[i] = (int32_t)v;
  }
  ts_buf b;
  ts_buf_init(&b, ts_allocator_system());
  ts_status st = ts_tokenizer_decode(t, ids, (size_t)n, lua_toboolean(L, 3), &b);
  free(ids);
  if (st) {
    ts_buf_deinit(&b);
    return ts_lua_fail(L, st);
  }
  lua_pushlstring(L, b.ptr ? b.ptr : "", b.len);
  ts_buf_deinit(&b);
  return 1;
}

static int tok_token(lua_State *L) {
  ts_tokenizer *t = check(L);
  lua_Integer id = luaL_checkinteger(L, 2);
  size_t len;
  bool special;
  const char *s = id >= 0 && id <= INT32_MAX ? ts_tokenizer_token(t, (int32_t)id, &len, &special)
                                             : NULL;
  if (!s) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushlstring(L, s, len);
  lua_pushboolean(L, special);
  return 2;
}

static int tok_id(lua_State *L) {
  ts_tokenizer *t = check(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int32_t id = ts_tokenizer_id(t, s, len);
  if (id < 0)
    lua_pushnil(L);
  else
    lua_pushinteger(L, id);
  return 1;
}

static int tok_vocab_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)ts_tokenizer_vocab_count(check(L)));
  return 1;
}

void ts_lua_open_tokenizer(lua_State *L) {
  static const luaL_Reg methods[] = {{"encode", tok_encode},   {"decode", tok_decode},
                                     {"pieces", tok_pieces},   {"token", tok_token},
                                     {"id", tok_id},           {"vocab_count", tok_vocab_count},
                                     {"close", tok_gc},        {NULL, NULL}};
  ts_lua_new_class(L, TOKENIZER_MT, methods, tok_gc, NULL);
  lua_pushcfunction(L, l_tokenizer);
  lua_setfield(L, -2, "tokenizer");
}
