/* tunedb.c - the tuning database (tune.h): SQLite, one row per (kernel
 * source hash, kernel, config, shape bucket, device, Tessera version) with
 * the median time, its spread and the date. Writers take the database with
 * BEGIN IMMEDIATE and wait up to 30 s for each other, so tuners may run at
 * once; a file SQLite cannot read, or whose integrity check fails, is set
 * aside as PATH.damaged and replaced by a fresh one, with a warning. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/tune.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ts_tunedb {
  sqlite3 *db;
  char path[4096];
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS tuning ("
    " source_hash TEXT NOT NULL, kernel TEXT NOT NULL, config TEXT NOT NULL,"
    " bucket TEXT NOT NULL, device TEXT NOT NULL, version TEXT NOT NULL,"
    " seconds REAL NOT NULL, spread REAL NOT NULL, date TEXT NOT NULL,"
    " PRIMARY KEY (source_hash, kernel, config, bucket, device, version))";

static ts_status db_error(ts_tunedb *db, const char *what) {
  return ts_status_make(TS_ERR_IO, "tuning database '%s': %s: %s", db->path,
                        what, sqlite3_errmsg(db->db));
}

/* Opens and checks; false when the file is not a sound database. */
static bool open_checked(ts_tunedb *db) {
  if (sqlite3_open_v2(db->path, &db->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                          SQLITE_OPEN_FULLMUTEX,
                      NULL) != SQLITE_OK)
    return false;
  sqlite3_busy_timeout(db->db, 30000);
  sqlite3_stmt *q = NULL;
  bool ok = sqlite3_prepare_v2(db->db, "PRAGMA quick_check", -1, &q, NULL) ==
                SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW &&
            !strcmp((const char *)sqlite3_column_text(q, 0), "ok");
  sqlite3_finalize(q);
  return ok && sqlite3_exec(db->db, schema, NULL, NULL, NULL) == SQLITE_OK;
}

ts_status ts_tunedb_open(const char *path, ts_tunedb **out,
                         const char **warning) {
  *warning = NULL;
  ts_tunedb *db = calloc(1, sizeof *db);
  if (!db)
    return ts_status_nomem();
  if (path) {
    snprintf(db->path, sizeof db->path, "%s", path);
  } else {
    char dir[3000];
    if (!ts_cache_dir(dir, sizeof dir)) {
      free(db);
      return ts_status_make(TS_ERR_IO, "no directory for the tuning database "
                            "(set TESSERA_CACHE or HOME)");
    }
    snprintf(db->path, sizeof db->path, "%s/tune.db", dir);
  }
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", db->path);
  char *slash = strrchr(parent, '/');
  if (slash && slash != parent) {
    *slash = 0;
    ts_status st = ts_make_dirs(parent);
    if (st) {
      free(db);
      return st;
    }
  }
  if (!open_checked(db)) {
    sqlite3_close(db->db);
    db->db = NULL;
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.damaged", db->path);
    if (rename(db->path, aside) != 0) {
      ts_status st = ts_status_make(TS_ERR_IO, "tuning database '%s' cannot "
                                    "be opened", db->path);
      free(db);
      return st;
    }
    *warning = "the tuning database was damaged: it was set aside as "
               "PATH.damaged and a new one started";
    if (!open_checked(db)) {
      ts_status st = db_error(db, "cannot create it");
      sqlite3_close(db->db);
      free(db);
      return st;
    }
  }
  *out = db;
  return NULL;
}

void ts_tunedb_close(ts_tunedb *db) {
  if (!db)
    return;
  sqlite3_close(db->db);
  free(db);
}

const char *ts_tunedb_path(const ts_tunedb *db) { return db->path; }

ts_status ts_tunedb_put(ts_tunedb *db, const char *kernel,
                        const ts_tune_report *r) {
  char date[32];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
  if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return db_error(db, "cannot start a transaction");
  sqlite3_stmt *q = NULL;
  ts_status st = NULL;
  if (sqlite3_prepare_v2(db->db,
                         "INSERT OR REPLACE INTO tuning VALUES "
                         "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         -1, &q, NULL) != SQLITE_OK)
    st = db_error(db, "prepare");
  for (size_t i = 0; !st && i < r->count; i++) {
    const ts_tune_result *x = &r->results[i];
    if (x->state != TS_TUNE_OK)
      continue;
    sqlite3_reset(q);
    sqlite3_bind_text(q, 1, r->source_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, kernel, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, x->config, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, r->bucket, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, r->device, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, TS_VERSION_STRING, -1, SQLITE_STATIC);
    sqlite3_bind_double(q, 7, x->median);
    sqlite3_bind_double(q, 8, x->spread);
    sqlite3_bind_text(q, 9, date, -1, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE)
      st = db_error(db, "insert");
  }
  sqlite3_finalize(q);
  if (st || sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    if (!st)
      st = db_error(db, "commit");
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  }
  return st;
}

ts_status ts_tunedb_best(ts_tunedb *db, const char *source_hash,
                         const char *kernel, const char *bucket,
                         const char *device, char *config, size_t size,
                         bool *found) {
  *found = false;
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT config FROM tuning WHERE source_hash = ? AND "
                         "kernel = ? AND bucket = ? AND device = ? AND "
                         "version = ? ORDER BY seconds LIMIT 1",
                         -1, &q, NULL) != SQLITE_OK)
    return db_error(db, "prepare");
  sqlite3_bind_text(q, 1, source_hash, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, kernel, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 3, bucket, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 4, device, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 5, TS_VERSION_STRING, -1, SQLITE_STATIC);
  int rc = sqlite3_step(q);
  ts_status st = NULL;
  if (rc == SQLITE_ROW) {
    snprintf(config, size, "%s", (const char *)sqlite3_column_text(q, 0));
    *found = true;
  } else if (rc != SQLITE_DONE) {
    st = db_error(db, "query");
  }
  sqlite3_finalize(q);
  return st;
}

ts_status ts_tunedb_show(ts_tunedb *db, FILE *out) {
  sqlite3_stmt *q = NULL;
  if (sqlite3_prepare_v2(db->db,
                         "SELECT kernel, bucket, device, config, seconds, "
                         "spread, date, source_hash, version FROM tuning "
                         "ORDER BY kernel, bucket, device, seconds",
                         -1, &q, NULL) != SQLITE_OK)
    return db_error(db, "prepare");
  fprintf(out, "| kernel | shape bucket | device | config | median ms | "
               "spread ms | date | source | version |\n"
               "|---|---|---|---|---|---|---|---|---|\n");
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW)
    fprintf(out, "| %s | %s | %s | %s | %.4g | %.3g | %s | %s | %s |\n",
            sqlite3_column_text(q, 0), sqlite3_column_text(q, 1),
            sqlite3_column_text(q, 2), sqlite3_column_text(q, 3),
            sqlite3_column_double(q, 4) * 1e3,
            sqlite3_column_double(q, 5) * 1e3, sqlite3_column_text(q, 6),
            sqlite3_column_text(q, 7), sqlite3_column_text(q, 8));
  ts_status st = rc == SQLITE_DONE ? NULL : db_error(db, "query");
  sqlite3_finalize(q);
  return st;
}
