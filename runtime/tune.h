/* tune.h - autotuning: a kernel's `tune(...)` space, pruned by the front
 * end's checks, each surviving config compiled, checked against the default
 * config and timed (tune.c); the results kept in an SQLite database
 * (tunedb.c). Used by `tessera tune` and the Lua module. */
#ifndef TS_RUNTIME_TUNE_H
#define TS_RUNTIME_TUNE_H

#include "runtime/runtime.h"

typedef enum ts_tune_state {
  TS_TUNE_OK,        /* correct, timed */
  TS_TUNE_PRUNED,    /* broke a `require` or a resource limit: not compiled */
  TS_TUNE_FAILED,    /* compile or launch failed: infinitely slow */
  TS_TUNE_WRONG,     /* ran, but disagrees with the default config */
  TS_TUNE_NOT_TIMED, /* compiled and correct, but the budget ran out */
} ts_tune_state;

typedef struct ts_tune_result {
  char config[256]; /* "BM=64 BN=128", in the order of the tune clause */
  ts_tune_state state;
  double median, spread; /* seconds: the median, and max - min of the runs */
  double fastest;        /* seconds: the fastest of the first timings */
  int runs;
  /* timed again in turns with the other configs close to the best (tune.c
   * retime_close): median and spread are of those runs */
  bool retimed;
  double max_error; /* against the default config, relative to its largest */
  char reason[512]; /* why pruned, failed or wrong */
  double compile_seconds;
  /* on a GPU device (its architecture's PTX, ptxas -v): -1 unknown */
  long long registers, spill; /* spill: bytes of spill stores a thread */
} ts_tune_result;

#define TS_TUNE_CLOSE_MAX 6

typedef struct ts_tune_options {
  const char *path;   /* the .tile file */
  const char *kernel;
  const ts_define *values; /* NAME=VALUE: the dims, and scalar arguments */
  size_t nvalues;
  /* params held at these values through the sweep (NAME=VALUE, as -D; a
   * dtype param such as W=bf16), none of them tuned: part of the bucket */
  const ts_define *fixed;
  size_t nfixed;
  ts_device *device;
  double budget; /* seconds for the whole run; 0: no limit */
  int jobs;      /* compile threads; 0: the device's thread count */
  int repeats;   /* timed runs per config (after one warm-up); 0: 7 */
  /* the configs whose fastest run is within this factor of the best's (at
   * most TS_TUNE_CLOSE_MAX, the fastest) are timed again, `repeats` rounds
   * of one run each in turns; 0: 2; 1: none are */
  double close;
  bool progress; /* a progress bar with the best so far on stderr */
  unsigned seed; /* of the random inputs */
  /* On a GPU device each compiled config's PTX goes through ptxas -v
   * (compiler/resources.c) for its registers and spills, and a config that
   * spills more than the default config is pruned before it is run, unless
   * keep_spills. */
  bool keep_spills;
} ts_tune_options;

typedef struct ts_tune_report {
  ts_tune_result *results; /* ranked: fastest correct first, then the rest */
  size_t count;
  size_t pruned;
  size_t spilled; /* pruned after compiling: more spill than the default */
  long long default_registers, default_spill; /* -1: unknown (not a GPU, no ptxas) */
  char resources_note[256]; /* why the registers are unknown on a GPU, or "" */
  char bucket[256];    /* the shape bucket the timings stand for */
  char default_config[256];
  char device[128];
  char source_hash[17];
} ts_tune_report;

/* Runs the sweep. Program errors in the file (the default config) are in
 * `diags`; a file without a `tune` clause is TS_ERR_INVALID. */
TS_MUST_USE ts_status ts_tune(const ts_tune_options *o, ts_diags *diags,
                              ts_tune_report *out);
void ts_tune_report_free(ts_tune_report *r);

/* The shape bucket of dim values: each dim named, its value rounded up to a
 * power of two ("M=1024 N=4096"), in the kernel's order of dims. (A sweep
 * or lookup with params held appends them: "M=1024 N=4096 W=bf16".) */
void ts_tune_bucket(const ts_kernel_info *k, const ts_define *values,
                    size_t nvalues, char *out, size_t size);
/* A 16-hex-digit hash of a kernel file's text. */
void ts_tune_source_hash(const char *text, size_t len, char out[17]);

/* ---- the database (tunedb.c) ---------------------------------------------- */

typedef struct ts_tunedb ts_tunedb;

/* Opens (creating) the database at `path`, or at `tune.db` in the kernel
 * cache's directory when `path` is NULL. A damaged file is renamed to
 * PATH.damaged and a fresh one made; *warning (a static string or NULL)
 * says so. */
TS_MUST_USE ts_status ts_tunedb_open(const char *path, ts_tunedb **out,
                                     const char **warning);
void ts_tunedb_close(ts_tunedb *db);
const char *ts_tunedb_path(const ts_tunedb *db);
/* Records every timed result of a report (one transaction). */
TS_MUST_USE ts_status ts_tunedb_put(ts_tunedb *db, const char *kernel,
                                    const ts_tune_report *r);
/* The fastest known config for (source, kernel, bucket, device, this
 * version): true and `config` set, or false. */
TS_MUST_USE ts_status ts_tunedb_best(ts_tunedb *db, const char *source_hash,
                                     const char *kernel, const char *bucket,
                                     const char *device, char *config,
                                     size_t size, bool *found);
/* Every row, one line each, for `tessera tune --show`. */
TS_MUST_USE ts_status ts_tunedb_show(ts_tunedb *db, FILE *out);

/* The best known config of `kernel` in the file at `path` for the dims in
 * `values` with the params `fixed` held (none of them tuned; NULL, 0 for
 * none) on the device named `device` (ts_device_name), from the database
 * at `db_path` (NULL: the default one): *found is false when nothing is
 * known (or the file does not check with `fixed`, or one of them is
 * tuned). A damaged database is set aside with a warning on stderr. */
TS_MUST_USE ts_status ts_tune_lookup(const char *db_path, const char *path,
                                     const char *kernel,
                                     const ts_define *values, size_t nvalues,
                                     const ts_define *fixed, size_t nfixed,
                                     const char *device, char *config,
                                     size_t size, bool *found);

/* Splits "BM=64 BN=128" into defines whose strings point into `buf` (a
 * copy); returns the count (at most `max`). */
size_t ts_tune_config_defines(const char *config, char *buf, size_t size,
                              ts_define *out, size_t max);

#endif
