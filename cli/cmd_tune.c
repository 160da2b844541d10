/* cmd_tune.c - `tessera tune FILE --kernel NAME --shape NAME=VALUE...
 * [--device cpu|gpusim|cuda] [--budget SECONDS] [--jobs N] [--repeats N]
 * [--close F] [--db PATH] [--no-tune-db] [--keep-spills] [-D NAME=VALUE...]` runs the sweep of
 * runtime/tune.c (the -D params held), prints the
 * ranked table and records the timings in the tuning database;
 * `tessera tune --show [--db PATH]` lists what the database knows. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"
#include "runtime/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *state_name(ts_tune_state s) {
  switch (s) {
  case TS_TUNE_OK: return "ok";
  case TS_TUNE_PRUNED: return "pruned";
  case TS_TUNE_FAILED: return "failed";
  case TS_TUNE_WRONG: return "WRONG";
  case TS_TUNE_NOT_TIMED: return "not timed";
  }
  return "?";
}

static void print_report(const char *kernel, const ts_tune_report *r) {
  size_t ok = 0, wrong = 0, failed = 0;
  for (size_t i = 0; i < r->count; i++) {
    ok += r->results[i].state == TS_TUNE_OK;
    wrong += r->results[i].state == TS_TUNE_WRONG;
    failed += r->results[i].state == TS_TUNE_FAILED;
  }
  printf("# tune %s on %s, shapes %s (bucket)\n", kernel, r->device, r->bucket);
  printf("%zu configs: %zu pruned before compiling, %zu timed, %zu wrong, "
         "%zu failed; the default is %s\n",
         r->count, r->pruned, ok, wrong, failed, r->default_config);
  if (r->default_registers >= 0)
    printf("ptxas -v: the default config %lld registers, %lld bytes of spill; %zu configs "
           "that spill more pruned before running\n", r->default_registers, r->default_spill,
           r->spilled);
  else if (r->resources_note[0])
    printf("registers and spills not checked: %s\n", r->resources_note);
  printf("\n");
  double best = ok ? r->results[0].median : 0;
  printf("| rank | config | median ms | spread ms | vs best | result |\n"
         "|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < r->count; i++) {
    const ts_tune_result *x = &r->results[i];
    char regs[64] = "";
    if (x->registers >= 0)
      snprintf(regs, sizeof regs, ", %lld registers, %lld B spill", x->registers, x->spill);
    if (x->state == TS_TUNE_OK)
      printf("| %zu | %s | %.4g | %.3g | %.2fx | ok%s%s%s |\n", i + 1, x->config,
             x->median * 1e3, x->spread * 1e3, x->median / best,
             strcmp(x->config, r->default_config) ? "" : " (default)",
             x->retimed ? ", timed in turns" : "", regs);
    else
      printf("| - | %s | %s | - | - | %s: %s |\n", x->config,
             x->state == TS_TUNE_NOT_TIMED ? "-" : "inf",
             state_name(x->state), x->reason);
  }
}

int cmd_tune(int argc, char **argv) {
  const char *file = NULL, *kernel = NULL, *dev_name = "cpu", *db_path = NULL;
  double budget = 0, close = 0;
  int jobs = 0, repeats = 0;
  bool show = false, no_db = false, keep_spills = false;
  ts_define values[64], fixed[16];
  size_t nvalues = 0, nfixed = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--show")) {
      show = true;
    } else if (!strcmp(a, "--no-tune-db")) {
      no_db = true;
    } else if (!strcmp(a, "--keep-spills")) {
      keep_spills = true;
    } else if (!strncmp(a, "-D", 2)) {
      char *v = a[2] ? argv[i] + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v || nfixed == 16 || !cli_parse_define(v, &fixed[nfixed]))
        return cli_usage_error("tune", "-D takes NAME=VALUE (at most 16)");
      nfixed++;
    } else if (a[0] == '-' && a[1] == '-' && !next) {
      return cli_usage_error("tune", "%s needs a value", a);
    } else if (!strcmp(a, "--kernel")) {
      kernel = argv[++i];
    } else if (!strcmp(a, "--device")) {
      dev_name = argv[++i];
    } else if (!strcmp(a, "--db")) {
      db_path = argv[++i];
    } else if (!strcmp(a, "--budget")) {
      char *end;
      budget = strtod(argv[++i], &end);
      if (*end || budget < 0)
        return cli_usage_error("tune", "--budget takes seconds, not '%s'",
                               argv[i]);
    } else if (!strcmp(a, "--close")) {
      char *end;
      close = strtod(argv[++i], &end);
      if (*end || !(close >= 1))
        return cli_usage_error("tune", "--close takes a factor of 1 or more, not '%s'",
                               argv[i]);
    } else if (!strcmp(a, "--jobs") || !strcmp(a, "--repeats")) {
      char *end;
      long v = strtol(argv[++i], &end, 10);
      if (*end || v < 1 || v > 64)
        return cli_usage_error("tune", "%s takes 1 to 64, not '%s'", a,
                               argv[i]);
      *(!strcmp(a, "--jobs") ? &jobs : &repeats) = (int)v;
    } else if (!strcmp(a, "--shape")) {
      if (nvalues == 64)
        return cli_usage_error("tune", "too many --shape values");
      if (!cli_parse_define(argv[++i], &values[nvalues]))
        return cli_usage_error("tune", "--shape takes NAME=VALUE, not '%s'",
                               argv[i]);
      nvalues++;
    } else if (a[0] == '-') {
      return cli_usage_error("tune", "unknown option '%s'", a);
    } else if (!file) {
      file = a;
    } else {
      return cli_usage_error("tune", "one file at a time");
    }
  }
  const char *warning = NULL;
  ts_tunedb *db = NULL;
  if (show) {
    ts_status st = ts_tunedb_open(db_path, &db, &warning);
    if (warning)
      fprintf(stderr, "tessera tune: warning: %s\n", warning);
    if (st)
      return cli_fail("tune", st);
    printf("# %s\n", ts_tunedb_path(db));
    st = ts_tunedb_show(db, stdout);
    ts_tunedb_close(db);
    return st ? cli_fail("tune", st) : EXIT_OK;
  }
  if (!file || !kernel)
    return cli_usage_error("tune", "give a FILE and --kernel NAME");
  ts_device *dev = NULL;
  ts_status st = !strcmp(dev_name, "cpu")      ? ts_device_create_cpu(0, &dev)
                 : !strcmp(dev_name, "gpusim") ? ts_device_create_gpusim(&dev)
                 : !strcmp(dev_name, "cuda")
                     ? ts_device_create_cuda(0, &dev)
                     : ts_status_make(TS_ERR_INVALID, "unknown device '%s' "
                                      "(cpu, gpusim or cuda)", dev_name);
  if (st)
    return cli_fail("tune", st);
  ts_tune_options o = {.path = file,
                       .kernel = kernel,
                       .values = values,
                       .nvalues = nvalues,
                       .fixed = fixed,
                       .nfixed = nfixed,
                       .device = dev,
                       .budget = budget,
                       .jobs = jobs,
                       .repeats = repeats,
                       .close = close,
                       .progress = isatty(2),
                       .seed = 1,
                       .keep_spills = keep_spills};
  ts_diags d;
  ts_diags_init(&d, ts_allocator_system());
  ts_tune_report r;
  st = ts_tune(&o, &d, &r);
  cli_render(&d, COLOR_AUTO);
  ts_diags_deinit(&d);
  if (st) {
    ts_device_release(dev);
    bool program = ts_status_code(st) == TS_ERR_PROGRAM;
    if (program) {
      fprintf(stderr, "tessera tune: %s\n", ts_status_message(st));
      ts_status_free(st);
      return EXIT_PROGRAM;
    }
    return cli_fail("tune", st);
  }
  print_report(kernel, &r);
  int rc = EXIT_OK;
  if (!no_db) {
    st = ts_tunedb_open(db_path, &db, &warning);
    if (warning)
      fprintf(stderr, "tessera tune: warning: %s\n", warning);
    if (!st)
      st = ts_tunedb_put(db, kernel, &r);
    if (!st)
      printf("\nrecorded in %s\n", ts_tunedb_path(db));
    ts_tunedb_close(db);
    if (st)
      rc = cli_fail("tune", st);
  }
  ts_tune_report_free(&r);
  ts_device_release(dev);
  return rc;
}
