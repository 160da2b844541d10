/* net.c - TCP sockets for Lua, as much as model/serve_http.lua needs: a
 * listening socket whose accept does not block, connections whose reads
 * do not block, writes that finish (or fail) within a time limit, and a
 * wait on several of them (docs/lua.md "Sockets").
 *   ts.listen(port [, host]) -> server   (host "127.0.0.1" by default;
 *                                          port 0: one the system picks)
 *   server:port(), server:accept() -> conn | nil, server:close()
 *   ts.connect(host, port) -> conn       (a client, for tests and tools)
 *   conn:recv() -> bytes ("" when none yet) | nil (the peer closed)
 *   conn:send(bytes) -> true | nil, why  (within 10 s; a closed peer is
 *                                          an error, not a signal)
 *   conn:close()
 *   ts.wait({servers and conns...}, ms) -> those readable (a list)
 *   ts.pid() -> this process's id */
#define _GNU_SOURCE /* accept4, SOCK_CLOEXEC, SOCK_NONBLOCK, MSG_NOSIGNAL */
#include "lua/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char SERVER_MT[] = "tessera.Server";
static const char CONN_MT[] = "tessera.Connection";

static int *check(lua_State *L, int i, const char *mt) {
  int *fd = luaL_checkudata(L, i, mt);
  if (*fd < 0)
    luaL_error(L, "attempt to use a closed %s", mt + 8);
  return fd;
}

static int sock_gc(lua_State *L) {
  int *fd = lua_touserdata(L, 1);
  if (fd && *fd >= 0)
    close(*fd);
  if (fd)
    *fd = -1;
  return 0;
}

static int push_fd(lua_State *L, int fd, const char *mt) {
  int *box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = fd;
  luaL_setmetatable(L, mt);
  return 1;
}

static int fail_errno(lua_State *L, const char *what) {
  return luaL_error(L, "%s: %s", what, strerror(errno));
}

/* host:port as an IPv4 address (a Lua error when it is not one) */
static void address(lua_State *L, const char *host, lua_Integer port, struct sockaddr_in *a) {
  if (port < 0 || port > 65535)
    luaL_error(L, "port %d: 0 to 65535", (int)port);
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
    luaL_error(L, "'%s' is not an IPv4 address", host);
}

static int l_listen(lua_State *L) {
  lua_Integer port = luaL_checkinteger(L, 1);
  const char *host = luaL_optstring(L, 2, "127.0.0.1");
  struct sockaddr_in a;
  address(L, host, port, &a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return fail_errno(L, "socket");
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64)) {
    int e = errno;
    close(fd);
    errno = e;
    return luaL_error(L, "listen on %s:%d: %s", host, (int)port, strerror(errno));
  }
  return push_fd(L, fd, SERVER_MT);
}

static int server_port(lua_State *L) {
  int *fd = check(L, 1, SERVER_MT);
  struct sockaddr_in a;
  socklen_t n = sizeof a;
  if (getsockname(*fd, (struct sockaddr *)&a, &n))
    return fail_errno(L, "getsockname");
  lua_pushinteger(L, ntohs(a.sin_port));
  return 1;
}

static int server_accept(lua_State *L) {
  int *fd = check(L, 1, SERVER_MT);
  int c = accept4(*fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (c < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED || errno == EINTR)
      return 0;
    return fail_errno(L, "accept");
  }
  int on = 1; /* (a streamed token goes at once) */
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return push_fd(L, c, CONN_MT);
}

static int l_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  struct sockaddr_in a;
  address(L, host, luaL_checkinteger(L, 2), &a);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return fail_errno(L, "socket");
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
    int e = errno;
    close(fd);
    return luaL_error(L, "connect to %s:%d: %s", host, (int)lua_tointeger(L, 2), strerror(e));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return push_fd(L, fd, CONN_MT);
}

static int conn_recv(lua_State *L) {
  int *fd = check(L, 1, CONN_MT);
  char buf[65536];
  ssize_t n = recv(*fd, buf, sizeof buf, 0);
  if (n > 0) {
    lua_pushlstring(L, buf, (size_t)n);
  } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    lua_pushliteral(L, "");
  } else {
    lua_pushnil(L); /* closed by the peer, or reset */
  }
  return 1;
}

static int conn_send(lua_State *L) {
  int *fd = check(L, 1, CONN_MT);
  size_t len, at = 0;
  const char *s = luaL_checklstring(L, 2, &len);
  int waited = 0;
  while (at < len) {
    ssize_t n = send(*fd, s + at, len - at, MSG_NOSIGNAL);
    if (n > 0) {
      at += (size_t)n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && waited < 10000) {
      struct pollfd p = {*fd, POLLOUT, 0};
      poll(&p, 1, 100);
      waited += 100;
      continue;
    }
    lua_pushnil(L);
    lua_pushstring(L, n < 0 ? strerror(errno) : "not written within 10 s");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ts.wait(list, ms): the servers and connections of the list that are
 * readable (a connection also when its peer closed), waiting up to ms */
static int l_wait(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer ms = luaL_checkinteger(L, 2);
  lua_Integer n = luaL_len(L, 1);
  if (n > 4096)
    return luaL_error(L, "wait: at most 4096 sockets");
  struct pollfd p[4096];
  for (lua_Integer i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    int *fd = luaL_testudata(L, -1, SERVER_MT);
    if (!fd)
      fd = luaL_testudata(L, -1, CONN_MT);
    if (!fd)
      return luaL_error(L, "wait: item %d is not a server or a connection", (int)i + 1);
    p[i] = (struct pollfd){*fd, POLLIN, 0};
    lua_pop(L, 1);
  }
  int r = poll(p, (nfds_t)n, ms < 0 ? -1 : (int)(ms > 86400000 ? 86400000 : ms));
  if (r < 0 && errno != EINTR)
    return fail_errno(L, "poll");
  lua_newtable(L);
  int k = 0;
  for (lua_Integer i = 0; r > 0 && i < n; i++)
    if (p[i].revents) {
      lua_geti(L, 1, i + 1);
      lua_seti(L, -2, ++k);
    }
  return 1;
}

static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

void ts_lua_open_net(lua_State *L) {
  static const luaL_Reg server[] = {{"port", server_port},
                                    {"accept", server_accept},
                                    {"close", sock_gc},
                                    {NULL, NULL}};
  static const luaL_Reg conn[] = {{"recv", conn_recv},
                                  {"send", conn_send},
                                  {"close", sock_gc},
                                  {NULL, NULL}};
  ts_lua_new_class(L, SERVER_MT, server, sock_gc, NULL);
  ts_lua_new_class(L, CONN_MT, conn, sock_gc, NULL);
  static const luaL_Reg fns[] = {{"listen", l_listen},
                                 {"connect", l_connect},
                                 {"wait", l_wait},
                                 {"pid", l_pid},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
