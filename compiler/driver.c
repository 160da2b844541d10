/* driver.c - the compile driver, read top to bottom as its stages:
 * lex (tokens) -> parse (ast) -> sema (typed) -> MLIR generation and the
 * per-target pipelines (not yet built). */
#include "compiler/compiler.h"

#include <string.h>

#ifndef TS_LLVM_VERSION
#define TS_LLVM_VERSION "unknown"
#endif

static const struct {
  const char *name;
  bool built;
} stages[] = {
#define X(name, text, built) {text, built},
    TS_EMIT_STAGES(X)
#undef X
};

const char *ts_emit_name(ts_emit e) {
  return e < TS_EMIT_DEFAULT ? stages[e].name : "default";
}

bool ts_emit_parse(const char *s, ts_emit *out) {
  for (size_t i = 0; i < TS_ARRAY_COUNT(stages); i++)
    if (!strcmp(s, stages[i].name)) {
      *out = (ts_emit)i;
      return true;
    }
  return false;
}

static const char *const targets[] = {"cpu", "ptx", "cuda"};

bool ts_target_parse(const char *s, ts_target *out) {
  for (size_t i = 0; i < TS_ARRAY_COUNT(targets); i++)
    if (!strcmp(s, targets[i])) {
      *out = (ts_target)i;
      return true;
    }
  return false;
}

const char *ts_target_name(ts_target t) { return targets[t]; }

const char *ts_compiler_version(void) {
  return "tessera " TS_VERSION_STRING " (LLVM/MLIR " TS_LLVM_VERSION ")";
}

static ts_status program_errors(const ts_diags *d) {
  return ts_status_make(TS_ERR_PROGRAM, "%u error%s", d->error_count,
                        d->error_count == 1 ? "" : "s");
}

/* The kernel asked for, when one was: checked before anything is emitted. */
static ts_status find_kernel(const ts_unit *u, const ts_compile_options *opt) {
  if (!opt->kernel || ts_unit_kernel(u, ts_str_from(opt->kernel)))
    return NULL;
  ts_buf names;
  ts_buf_init(&names, u->alloc);
  for (uint32_t i = 0; i < u->kernel_count; i++)
    ts_buf_printf(&names, "%s'%.*s'", i ? ", " : "",
                  (int)u->kernels[i].name.len, u->kernels[i].name.ptr);
  ts_status s = ts_status_make(
      TS_ERR_INVALID, "no kernel '%s' in '%s' (it has %s)", opt->kernel,
      u->src.name, u->kernel_count ? (names.ptr ? names.ptr : "") : "none");
  ts_buf_deinit(&names);
  return s;
}

ts_status ts_compile(const ts_allocator *alloc, const char *path,
                     const char *text, size_t len,
                     const ts_compile_options *opt, ts_diags *diags,
                     ts_buf *out) {
  ts_unit u;
  TS_TRY(ts_unit_init(&u, alloc, path, text, len, diags));
  ts_status st = NULL;

  /* 1. tokens */
  if (opt->emit == TS_EMIT_TOKENS) {
    ts_dump_tokens(&u.src, diags, out);
    if (diags->error_count)
      st = program_errors(diags);
    goto done;
  }
  /* 2. ast */
  if (!ts_unit_parse(&u)) {
    st = diags->nomem ? ts_status_nomem() : program_errors(diags);
    goto done;
  }
  if (opt->emit == TS_EMIT_AST) {
    ts_dump_ast(&u, out);
    goto done;
  }
  /* 3. typed */
  if (!ts_unit_check(&u, opt->defines, opt->define_count)) {
    st = diags->nomem ? ts_status_nomem() : program_errors(diags);
    goto done;
  }
  if ((st = find_kernel(&u, opt)))
    goto done;
  if (opt->emit == TS_EMIT_TYPED) {
    ts_dump_typed(&u, out);
    goto done;
  }
  /* 4. mlir, 5. lowered, 6. llvm | ptx | cuda */
  st = ts_status_make(TS_ERR_UNSUPPORTED,
                      "--target %s --emit %s is not yet built: the front end "
                      "checked the file; MLIR lowering is the next milestone",
                      ts_target_name(opt->target), ts_emit_name(opt->emit));
done:
  if (!st && out->failed)
    st = ts_status_nomem();
  ts_unit_deinit(&u);
  return st;
}
