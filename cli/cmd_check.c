/* cmd_check.c - `tessera check FILE...`: diagnostics only. */
#include "cli/cli.h"

#include <string.h>

static void summary(const ts_unit *u) {
  ts_buf b;
  ts_buf_init(&b, u->alloc);
  for (uint32_t i = 0; i < u->kernel_count; i++) {
    const ts_kernel_info *k = &u->kernels[i];
    ts_buf_printf(&b, "%s: kernel %.*s(", u->src.name, (int)k->name.len,
                  k->name.ptr);
    for (uint32_t j = 0; j < k->arg_count; j++) {
      ts_buf_printf(&b, "%s%.*s: ", j ? ", " : "", (int)k->args[j]->name.len,
                    k->args[j]->name.ptr);
      ts_type_print(u, k->args[j]->type, &b);
    }
    ts_buf_puts(&b, ")");
    for (uint32_t j = 0; j < k->param_count; j++) {
      const ts_symbol *p = k->params[j];
      ts_buf_printf(&b, "%s%.*s=", j ? ", " : " params ", (int)p->name.len,
                    p->name.ptr);
      if (p->cval.kind == TS_CONST_INT)
        ts_buf_printf(&b, "%lld", (long long)p->cval.i);
      else if (p->cval.kind == TS_CONST_FLOAT)
        ts_buf_printf(&b, "%g", p->cval.f);
      else if (p->cval.kind == TS_CONST_DTYPE)
        ts_buf_puts(&b, ts_dtype_name(p->cval.dt));
      else
        ts_buf_puts(&b, p->cval.b ? "true" : "false");
    }
    ts_buf_puts(&b, " grid (");
    for (uint32_t j = 0; j < k->grid_rank; j++) {
      if (j)
        ts_buf_puts(&b, ", ");
      ts_extent_print(u, &k->grid[j], &b);
    }
    ts_buf_printf(&b, ") threads %lld shared %lld bytes\n",
                  (long long)k->threads, (long long)k->shared_size);
  }
  if (b.ptr)
    fputs(b.ptr, stdout);
  ts_buf_deinit(&b);
}

int cmd_check(int argc, char **argv) {
  cli_color color = COLOR_AUTO;
  ts_define defs[64];
  size_t ndefs = 0;
  bool verbose = false;
  const char *files[256], *arch = NULL, *v;
  int nfiles = 0;
  for (int i = 0; i < argc; i++) {
    char *a = argv[i];
    int err = 0;
    bool missing = false;
    if (cli_parse_color("check", a, &color, &err)) {
      if (err)
        return err;
    } else if ((v = cli_option("--arch", argc, argv, &i, &missing))) {
      if (strcmp(v, "cpu") && !ts_arch_supported(v))
        return cli_usage_error("check", "unknown architecture '%s' (cpu, %s)", v,
                               ts_arch_list());
      arch = strcmp(v, "cpu") ? v : NULL;
    } else if (missing) {
      return cli_usage_error("check", "'%s' needs a value", a);
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      verbose = true;
    } else if (!strncmp(a, "-D", 2)) {
      char *d = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!d || ndefs == 64 || !cli_parse_define(d, &defs[ndefs]))
        return cli_usage_error("check", "-D takes NAME=VALUE");
      ndefs++;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("check", "unknown option '%s'", a);
    } else {
      if (nfiles == 256)
        return cli_usage_error("check", "at most 256 files at once");
      files[nfiles++] = a;
    }
  }
  if (nfiles == 0)
    return cli_usage_error("check", "no input file");
  const ts_allocator *alloc = ts_allocator_system();
  int rc = EXIT_OK;
  for (int f = 0; f < nfiles; f++) {
    char *text;
    size_t len;
    ts_status st = ts_file_read(alloc, files[f], &text, &len);
    if (st) {
      cli_fail("check", st);
      rc = EXIT_USAGE;
      continue;
    }
    ts_diags d;
    ts_diags_init(&d, alloc);
    ts_unit u;
    st = ts_unit_init(&u, alloc, files[f], text, len, &d);
    if (st) {
      cli_fail("check", st);
      rc = EXIT_USAGE;
    } else {
      u.arch = ts_arch_number(arch);
      bool ok = ts_unit_parse(&u) && ts_unit_check(&u, defs, ndefs);
      cli_render(&d, color);
      if (d.nomem) {
        fprintf(stderr, "tessera check: out of memory\n");
        rc = EXIT_USAGE;
      } else if (!ok && rc == EXIT_OK) {
        rc = EXIT_PROGRAM;
      }
      if (ok && verbose)
        summary(&u);
      ts_unit_deinit(&u);
    }
    ts_diags_deinit(&d);
    ts_release(alloc, text, len + 1);
  }
  return rc;
}
