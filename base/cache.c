/* cache.c - the on-disk cache of compiled artifacts (see base.h): one file
 * per entry, named by the key, written to a temp file and renamed, read
 * back only when its header checks out. Many processes may share a cache
 * folder: an entry is either absent or whole, and writers of the same key
 * write the same bytes. */
#define _POSIX_C_SOURCE 200809L
#include "base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "TSCACHE1"

/* header: magic[8], key[16], payload length u64, payload checksum u64 */
enum { HEADER = 8 + 16 + 8 + 8 };

static uint64_t mix(uint64_t x) { /* splitmix64's finaliser */
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void ts_cache_key_init(ts_cache_key *k) {
  k->h[0] = 0x243f6a8885a308d3ull;
  k->h[1] = 0x13198a2e03707344ull;
}

void ts_cache_key_add(ts_cache_key *k, const void *p, size_t len) {
  /* length first, so that ("ab", "c") and ("a", "bc") differ */
  uint64_t n = len;
  k->h[0] = mix(ts_hash_bytes(&n, sizeof n, k->h[0]));
  k->h[1] = mix(ts_hash_bytes(&n, sizeof n, k->h[1]) + 1);
  k->h[0] = mix(ts_hash_bytes(p, len, k->h[0]));
  k->h[1] = mix(ts_hash_bytes(p, len, k->h[1]) ^ 0x9e3779b97f4a7c15ull);
}

void ts_cache_key_add_str(ts_cache_key *k, const char *s) {
  ts_cache_key_add(k, s ? s : "", s ? strlen(s) : 0);
}

void ts_cache_key_hex(const ts_cache_key *k, char out[33]) {
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)k->h[0],
           (unsigned long long)k->h[1]);
}

const char *ts_cache_dir(char *buf, size_t size) {
  const char *env = getenv("TESSERA_CACHE");
  if (env && *env) {
    snprintf(buf, size, "%s", env);
    return buf;
  }
  const char *xdg = getenv("XDG_CACHE_HOME");
  if (xdg && *xdg) {
    snprintf(buf, size, "%s/tessera", xdg);
    return buf;
  }
  const char *home = getenv("HOME");
  snprintf(buf, size, "%s/.cache/tessera", home && *home ? home : "/tmp");
  return buf;
}

ts_status ts_make_dirs(const char *dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path)
    return ts_status_make(TS_ERR_INVALID, "bad folder '%s'", dir);
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != 0)
      continue;
    char c = path[i];
    path[i] = 0;
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return ts_status_make(TS_ERR_IO, "cannot create the folder '%s': %s",
                            path, strerror(errno));
    path[i] = c;
  }
  return NULL;
}

static void entry_path(const char *dir, const ts_cache_key *k, char *out,
                       size_t size) {
  char hex[33];
  ts_cache_key_hex(k, hex);
  snprintf(out, size, "%s/%s.tsc", dir, hex);
}

static uint64_t get64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

ts_status ts_cache_get(const char *dir, const ts_cache_key *k, ts_buf *out,
                       bool *hit, ts_buf *warning) {
  *hit = false;
  char path[4200];
  entry_path(dir, k, path, sizeof path);
  char *data;
  size_t len;
  ts_status st = ts_file_read(ts_allocator_system(), path, &data, &len);
  if (st) { /* absent (or unreadable): a miss */
    ts_status_free(st);
    return NULL;
  }
  const unsigned char *u = (const unsigned char *)data;
  const char *why = NULL;
  if (len < HEADER || memcmp(u, MAGIC, 8) != 0)
    why = "not a Tessera cache entry";
  else if (get64(u + 8) != k->h[0] || get64(u + 16) != k->h[1])
    why = "its key does not match its name";
  else if (get64(u + 24) != len - HEADER)
    why = "it is truncated";
  else if (get64(u + 32) != ts_hash_bytes(u + HEADER, len - HEADER, 0))
    why = "its checksum does not match";
  if (why) {
    if (warning)
      ts_buf_printf(warning, "cache entry '%s' is damaged (%s); rebuilding it",
                    path, why);
    remove(path);
  } else {
    ts_buf_append(out, data + HEADER, len - HEADER);
    *hit = true;
    utimensat(AT_FDCWD, path, NULL, 0); /* its time is its last use (ts_cache_sweep) */
  }
  ts_release(ts_allocator_system(), data, len + 1);
  return out->failed ? ts_status_nomem() : NULL;
}

/* ---- eviction ------------------------------------------------------------- */

typedef struct swept {
  time_t t;
  off_t size;
  char name[40];
} swept;

static int older_first(const void *a, const void *b) {
  time_t x = ((const swept *)a)->t, y = ((const swept *)b)->t;
  return x < y ? -1 : x > y;
}

/* A non-negative number from the environment, else dflt; a value that is
 * not one is reported on stderr (once a process for each variable, `warned`)
 * and the default used. */
static double env_limit(const char *name, double dflt, atomic_bool *warned) {
  const char *v = getenv(name);
  char *end;
  if (!v || !*v)
    return dflt;
  double x = strtod(v, &end);
  if (!*end && x >= 0)
    return x;
  if (!atomic_exchange(warned, true))
    fprintf(stderr, "tessera: warning: %s='%s' is not a number >= 0; using %g\n", name, v,
            dflt);
  return dflt;
}

void ts_cache_sweep(const char *dir, const char *suffix) {
  static atomic_bool warned_days, warned_mb;
  double days = env_limit("TESSERA_CACHE_MAX_DAYS", 30, &warned_days);
  double mib = env_limit("TESSERA_CACHE_MAX_MB", 1024, &warned_mb);
  DIR *d = opendir(dir);
  if (!d)
    return;
  swept *e = NULL;
  size_t n = 0, cap = 0;
  off_t total = 0;
  time_t old = time(NULL) - (time_t)(days * 86400);
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t len = strlen(de->d_name), sl = strlen(suffix);
    char path[4400];
    struct stat sb;
    if (len <= sl || len >= sizeof e->name || strcmp(de->d_name + len - sl, suffix) ||
        (size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path ||
        stat(path, &sb) || !S_ISREG(sb.st_mode))
      continue;
    if (sb.st_mtime < old) {
      unlink(path);
      continue;
    }
    if (n == cap) {
      swept *g = realloc(e, (cap = cap ? 2 * cap : 64) * sizeof *e);
      if (!g)
        break;
      e = g;
    }
    e[n].t = sb.st_mtime;
    e[n].size = sb.st_size;
    memcpy(e[n].name, de->d_name, len + 1);
    total += sb.st_size;
    n++;
  }
  closedir(d);
  off_t limit = (off_t)(mib * 1048576.0);
  if (total > limit) { /* the least recently used go first */
    qsort(e, n, sizeof *e, older_first);
    for (size_t i = 0; i < n && total > limit; i++) {
      char path[4400];
      if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e[i].name) < sizeof path &&
          unlink(path) == 0)
        total -= e[i].size;
    }
  }
  free(e);
}

ts_status ts_cache_put(const char *dir, const ts_cache_key *k, const void *data,
                       size_t len) {
  TS_TRY(ts_make_dirs(dir));
  unsigned char *buf = malloc(HEADER + len);
  if (!buf)
    return ts_status_nomem();
  memcpy(buf, MAGIC, 8);
  uint64_t h[4] = {k->h[0], k->h[1], len, ts_hash_bytes(data, len, 0)};
  memcpy(buf + 8, h, sizeof h);
  if (len)
    memcpy(buf + HEADER, data, len);
  char path[4200];
  entry_path(dir, k, path, sizeof path);
  ts_status st = ts_file_write_atomic(path, buf, HEADER + len);
  free(buf);
  static atomic_flag swept_once = ATOMIC_FLAG_INIT;
  if (!st && !atomic_flag_test_and_set(&swept_once))
    ts_cache_sweep(dir, ".tsc");
  return st;
}
