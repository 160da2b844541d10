/* cmd_fmt.c - `tessera fmt FILE [-w] [--check]`. */
#include "cli/cli.h"

#include <string.h>

int cmd_fmt(int argc, char **argv) {
  cli_color color = COLOR_AUTO;
  bool write = false, check = false;
  const char *file = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    int err = 0;
    if (cli_parse_color("fmt", a, &color, &err)) {
      if (err)
        return err;
    } else if (!strcmp(a, "-w") || !strcmp(a, "--write")) {
      write = true;
    } else if (!strcmp(a, "--check")) {
      check = true;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("fmt", "unknown option '%s'", a);
    } else if (file) {
      return cli_usage_error("fmt", "one file at a time");
    } else {
      file = a;
    }
  }
  if (!file)
    return cli_usage_error("fmt", "no input file");
  const ts_allocator *alloc = ts_allocator_system();
  char *text;
  size_t len;
  ts_status st = ts_file_read(alloc, file, &text, &len);
  if (st)
    return cli_fail("fmt", st);
  ts_source src;
  st = ts_source_init(&src, alloc, file, text, len);
  if (st) {
    ts_release(alloc, text, len + 1);
    return cli_fail("fmt", st);
  }
  ts_diags d;
  ts_diags_init(&d, alloc);
  ts_buf out;
  ts_buf_init(&out, alloc);
  int rc = EXIT_OK;
  if (!ts_format(&src, &d, &out)) {
    cli_render(&d, color);
    rc = d.nomem ? EXIT_USAGE : EXIT_PROGRAM;
  } else if (out.failed) {
    rc = cli_fail("fmt", ts_status_nomem());
  } else {
    bool same = out.len == len && (len == 0 || !memcmp(out.ptr, text, len));
    if (check) {
      if (!same) {
        fprintf(stderr, "%s: not in the canonical layout\n", file);
        rc = EXIT_PROGRAM;
      }
    } else if (write) {
      if (!same &&
          (st = ts_file_write_atomic(file, out.ptr ? out.ptr : "", out.len)))
        rc = cli_fail("fmt", st);
    } else if (out.ptr) {
      fwrite(out.ptr, 1, out.len, stdout);
    }
  }
  ts_buf_deinit(&out);
  ts_diags_deinit(&d);
  ts_source_deinit(&src, alloc);
  ts_release(alloc, text, len + 1);
  return rc;
}
