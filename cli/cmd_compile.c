/* cmd_compile.c - `tessera compile FILE [--kernel NAME] [--target T]
 * [--arch SM] [--emit STAGE] [-D NAME=VALUE]... [-o OUT] [--no-cache] [-v]
 * [--shape NAME=VALUE]... [--device NAME] [--no-tune-db]`.
 * PTX goes through the kernel cache (ts_cache_dir) unless --no-cache; -v
 * says on stderr what the cache did. With --shape and no -D, the params are
 * the tuning database's best for that shape bucket on the device (`cpu`
 * for the CPU target; --device names a GPU as `tessera devices` does). */
#include "cli/cli.h"
#include "runtime/tune.h"

#include <string.h>

int cmd_compile(int argc, char **argv) {
  cli_color color = COLOR_AUTO;
  ts_define defs[64];
  size_t ndefs = 0;
  ts_compile_options opt = {.target = TS_TARGET_CPU, .emit = TS_EMIT_DEFAULT};
  const char *file = NULL, *outpath = NULL, *v, *device = NULL;
  bool no_cache = false, verbose = false, no_tune_db = false;
  ts_define shapes[64];
  size_t nshapes = 0;
  for (int i = 0; i < argc; i++) {
    char *a = argv[i];
    int err = 0;
    bool missing = false;
    if (cli_parse_color("compile", a, &color, &err)) {
      if (err)
        return err;
    } else if ((v = cli_option("--kernel", argc, argv, &i, &missing))) {
      opt.kernel = v;
    } else if ((v = cli_option("--target", argc, argv, &i, &missing))) {
      if (!ts_target_parse(v, &opt.target))
        return cli_usage_error("compile",
                               "unknown target '%s' (cpu, ptx or "
                               "cuda)",
                               v);
    } else if ((v = cli_option("--arch", argc, argv, &i, &missing))) {
      if (!ts_arch_supported(v))
        return cli_usage_error("compile", "unknown GPU architecture '%s' (%s)", v,
                               ts_arch_list());
      opt.arch = v;
    } else if ((v = cli_option("--emit", argc, argv, &i, &missing))) {
      if (!ts_emit_parse(v, &opt.emit))
        return cli_usage_error("compile",
                               "unknown stage '%s' (tokens, ast, "
                               "typed, mlir, lowered, llvm, ptx, "
                               "resources, plan, "
                               "cuda)",
                               v);
    } else if (!strcmp(a, "--no-cache")) {
      no_cache = true;
    } else if (!strcmp(a, "--no-tune-db")) {
      no_tune_db = true;
    } else if ((v = cli_option("--device", argc, argv, &i, &missing))) {
      device = v;
    } else if ((v = cli_option("--shape", argc, argv, &i, &missing))) {
      if (nshapes == 64 || !cli_parse_define((char *)v, &shapes[nshapes]))
        return cli_usage_error("compile", "--shape takes NAME=VALUE");
      nshapes++;
    } else if (!strcmp(a, "-v")) {
      verbose = true;
    } else if (!strcmp(a, "--time-passes")) {
      opt.time_passes = true;
    } else if ((v = cli_option("--dump-after", argc, argv, &i, &missing))) {
      opt.dump_after = v;
    } else if ((v = cli_option("-o", argc, argv, &i, &missing))) {
      outpath = v;
    } else if (!missing && !strncmp(a, "-D", 2)) {
      char *d = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!d || ndefs == 64 || !cli_parse_define(d, &defs[ndefs]))
        return cli_usage_error("compile", "-D takes NAME=VALUE");
      ndefs++;
    } else if (missing) {
      return cli_usage_error("compile", "'%s' needs a value", a);
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("compile", "unknown option '%s'", a);
    } else if (file) {
      return cli_usage_error("compile",
                             "one input file at a time ('%s' and "
                             "'%s')",
                             file, a);
    } else {
      file = a;
    }
  }
  if (!file)
    return cli_usage_error("compile", "no input file");
  char config[256], buf[256];
  if (nshapes && !no_tune_db) {
    if (!opt.kernel)
      return cli_usage_error("compile", "--shape needs --kernel");
    if (!device)
      device = opt.target == TS_TARGET_CPU ? "cpu" : NULL;
    bool found = false;
    ts_status ls = device ? ts_tune_lookup(NULL, file, opt.kernel, shapes,
                                           nshapes, defs, ndefs, device, config,
                                           sizeof config, &found)
                          : NULL;
    if (ls)
      return cli_fail("compile", ls);
    if (found) {
      ndefs += ts_tune_config_defines(config, buf, sizeof buf, defs + ndefs, 64 - ndefs);
      fprintf(stderr, "tessera compile: tuned params %s (the tuning "
              "database's best on %s)\n", config, device);
    } else if (verbose) {
      fprintf(stderr, "tessera compile: no tuned params for this shape on "
              "%s: the defaults\n", device ? device : "(no --device)");
    }
  }
  opt.defines = defs;
  opt.define_count = ndefs;
  const ts_allocator *alloc = ts_allocator_system();
  char *text;
  size_t len;
  ts_status st = ts_file_read(alloc, file, &text, &len);
  if (st)
    return cli_fail("compile", st);
  ts_diags d;
  ts_diags_init(&d, alloc);
  ts_buf out, log;
  ts_buf_init(&out, alloc);
  ts_buf_init(&log, alloc);
  char cache[4096];
  if (!no_cache)
    opt.cache_dir = ts_cache_dir(cache, sizeof cache);
  opt.log = &log;
  opt.symbols = ts_runtime_symbols(&opt.symbol_count);
  st = ts_compile(alloc, file, text, len, &opt, &d, &out);
  if (verbose && log.len)
    fprintf(stderr, "%s", log.ptr);
  ts_buf_deinit(&log);
  cli_render(&d, color);
  int rc = EXIT_OK;
  if (st) {
    if (ts_status_code(st) == TS_ERR_PROGRAM) {
      ts_status_free(st);
      rc = EXIT_PROGRAM;
    } else {
      rc = cli_fail("compile", st);
    }
  } else if (outpath) {
    st = ts_file_write_atomic(outpath, out.ptr ? out.ptr : "", out.len);
    if (st)
      rc = cli_fail("compile", st);
  } else if (out.ptr) {
    fwrite(out.ptr, 1, out.len, stdout);
  }
  ts_buf_deinit(&out);
  ts_diags_deinit(&d);
  ts_release(alloc, text, len + 1);
  return rc;
}
