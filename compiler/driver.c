/* driver.c - the compile driver, read top to bottom as its stages:
 * lex (tokens) -> parse (ast) -> sema (typed) -> MLIR generation and the
 * per-target pipelines (not yet built). */
#define _GNU_SOURCE /* dladdr */
#include "compiler/compiler.h"
#include "compiler/gen.h"
#include "compiler/pipeline.h"

#include <dlfcn.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

/* The CPU stages: generate (mlir), lower (lowered), translate (llvm), or
 * JIT-compile everything (the default) and say what was built. */
static ts_status lower_cpu(ts_unit *u, const ts_compile_options *opt,
                           ts_diags *diags, ts_buf *out) {
  ts_mlir *m;
  TS_TRY(ts_mlir_create(&u->src, diags, &m));
  MlirModule mod;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ts_status st = ts_mlir_gen(m, u, opt->kernel, TS_TARGET_CPU, NULL, TS_CPU_RUN, &mod);
  if (st) {
    ts_mlir_destroy(m);
    return st;
  }
  if (opt->dump_after) {
    st = ts_mlir_lower_dump(m, mod, TS_TARGET_CPU, opt->dump_after, out);
  } else if (opt->emit == TS_EMIT_MLIR) {
    ts_mlir_print(mod, out);
  } else if (!(st = ts_mlir_lower(m, mod, opt->target, opt->time_passes))) {
    if (opt->emit == TS_EMIT_LOWERED) {
      ts_mlir_print(mod, out);
    } else if (opt->emit == TS_EMIT_LLVM) {
      st = ts_mlir_print_llvm(mod, out);
    } else {
      ts_jit *j;
      if (!(st = ts_jit_create(m, mod, opt->symbols, opt->symbol_count, false, &j))) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < u->kernel_count; i++) {
          char name[300];
          snprintf(name, sizeof name, "%.*s", (int)u->kernels[i].name.len,
                   u->kernels[i].name.ptr);
          if (opt->kernel && strcmp(opt->kernel, name))
            continue;
          if (!ts_jit_lookup(j, name))
            st = ts_status_make(TS_ERR_INTERNAL, "kernel '%s' is missing from "
                                "the JIT", name);
          n++;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (!st)
          ts_buf_printf(out, "%s: %u kernel%s compiled for the CPU in %.0f ms\n",
                        u->src.name, n, n == 1 ? "" : "s",
                        (t1.tv_sec - t0.tv_sec) * 1e3 +
                            (t1.tv_nsec - t0.tv_nsec) / 1e6);
        ts_jit_destroy(j);
      }
    }
  }
  mlirModuleDestroy(mod);
  ts_mlir_destroy(m);
  return st;
}

/* Which build of Tessera this is: its version, and the path, size and
 * modification time of the library holding the compiler, so that a rebuilt
 * compiler does not reuse what an older one cached. */
void ts_compile_build_key(ts_cache_key *k) {
  ts_cache_key_add_str(k, ts_compiler_version());
  Dl_info info;
  struct stat sb;
  if (dladdr((void *)ts_compiler_version, &info) && info.dli_fname &&
      stat(info.dli_fname, &sb) == 0) {
    int64_t id[4] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec,
                     (int64_t)sb.st_mtim.tv_nsec, (int64_t)sb.st_ino};
    ts_cache_key_add_str(k, info.dli_fname);
    ts_cache_key_add(k, id, sizeof id);
  }
}

ts_cache_key ts_compile_unit_key(const char *what, const ts_unit *u, const char *kernel) {
  ts_cache_key key, *k = &key;
  ts_cache_key_init(k);
  ts_cache_key_add_str(k, what);
  ts_cache_key_add(k, u->src.text, u->src.len);
  ts_cache_key_add_str(k, kernel);
  /* (a kernel may branch on `arch` without a param) */
  ts_cache_key_add(k, &u->arch, sizeof u->arch);
  for (uint32_t i = 0; i < u->kernel_count; i++) {
    const ts_kernel_info *ki = &u->kernels[i];
    if (kernel && !ts_str_eq_cstr(ki->name, kernel))
      continue;
    ts_cache_key_add(k, ki->name.ptr, ki->name.len);
    for (uint32_t j = 0; j < ki->param_count; j++) {
      const ts_symbol *p = ki->params[j];
      char v[64];
      ts_const_text(&p->cval, v, sizeof v);
      ts_cache_key_add(k, p->name.ptr, p->name.len);
      ts_cache_key_add_str(k, v);
    }
  }
  return key;
}

/* The key of a final artifact: everything it depends on. Runtime shapes
 * are not in it: they are launch arguments. */
static ts_cache_key artifact_key(const ts_unit *u, const ts_compile_options *opt,
                                 const char *what) {
  ts_cache_key k = ts_compile_unit_key(what, u, opt->kernel);
  ts_cache_key_add_str(&k, ts_target_name(opt->target));
  ts_cache_key_add_str(&k, opt->arch ? opt->arch : "sm_90a");
  ts_compile_build_key(&k);
  return k;
}

/* What a launch needs besides the PTX, as comments ptxas skips: a line
 * "// tessera kernel K threads T smem S" a kernel (the dynamic shared
 * memory, the same plan in both lowerings). */
static void launch_comments(const ts_unit *u, const ts_compile_options *opt, ts_buf *out) {
  for (uint32_t i = 0; i < u->kernel_count; i++) {
    const ts_kernel_info *k = &u->kernels[i];
    if (opt->kernel && !ts_str_eq_cstr(k->name, opt->kernel))
      continue;
    ts_buf_printf(out, "// tessera kernel %.*s threads %lld smem %lld\n", (int)k->name.len,
                  k->name.ptr, (long long)k->threads,
                  (long long)ts_gen_gpu_smem_bytes(k, opt->arch));
  }
}

/* The PTX stages: generate (mlir), lower to NVVM (lowered), serialise
 * (ptx, the default; through the kernel cache when there is one). */
static ts_status lower_ptx(ts_unit *u, const ts_compile_options *opt,
                           ts_diags *diags, ts_buf *out) {
  bool final = opt->emit != TS_EMIT_MLIR && opt->emit != TS_EMIT_LOWERED && !opt->dump_after;
  ts_cache_key key;
  if (final && opt->cache_dir) {
    key = artifact_key(u, opt, "ptx");
    char hex[33];
    ts_cache_key_hex(&key, hex);
    ts_buf warn;
    ts_buf_init(&warn, ts_allocator_system());
    bool hit;
    size_t before = out->len;
    ts_status st = ts_cache_get(opt->cache_dir, &key, out, &hit, &warn);
    if (warn.len)
      fprintf(stderr, "tessera: warning: %s\n", warn.ptr);
    ts_buf_deinit(&warn);
    if (st)
      return st;
    if (hit) {
      if (opt->log)
        ts_buf_printf(opt->log, "cache hit %s/%s.tsc\n", opt->cache_dir, hex);
      return NULL;
    }
    ts_status built = lower_ptx(u, &(ts_compile_options){
        .kernel = opt->kernel, .target = opt->target, .emit = opt->emit,
        .defines = opt->defines, .define_count = opt->define_count,
        .time_passes = opt->time_passes, .arch = opt->arch}, diags, out);
    if (built)
      return built;
    /* a cache that cannot be written is not an error: the PTX is built */
    st = ts_cache_put(opt->cache_dir, &key, out->ptr + before,
                      out->len - before);
    if (opt->log)
      ts_buf_printf(opt->log, "cache %s %s/%s.tsc%s%s\n",
                    st ? "miss, not stored:" : "miss, stored", opt->cache_dir,
                    hex, st ? ": " : "", st ? ts_status_message(st) : "");
    ts_status_free(st);
    return NULL;
  }
  ts_mlir *m;
  TS_TRY(ts_mlir_create(&u->src, diags, &m));
  MlirModule mod;
  ts_status st = ts_mlir_gen(m, u, opt->kernel, TS_TARGET_PTX,
                             opt->arch ? opt->arch : "sm_90a", TS_CPU_RUN, &mod);
  if (st) {
    ts_mlir_destroy(m);
    return st;
  }
  if (opt->dump_after)
    st = ts_mlir_lower_dump(m, mod, TS_TARGET_PTX, opt->dump_after, out);
  else if (opt->emit == TS_EMIT_MLIR)
    ts_mlir_print(mod, out);
  else if (!(st = ts_mlir_lower(m, mod, TS_TARGET_PTX, opt->time_passes))) {
    if (opt->emit == TS_EMIT_LOWERED)
      ts_mlir_print(mod, out);
    else {
      launch_comments(u, opt, out);
      st = ts_mlir_ptx(m, mod, opt->time_passes, out);
    }
  }
  mlirModuleDestroy(mod);
  ts_mlir_destroy(m);
  return st;
}

/* The CUDA C target: CUDA C (cuda, the default), or its PTX from NVRTC
 * (ptx; through the kernel cache when there is one). */
static ts_status lower_cuda(ts_unit *u, const ts_compile_options *opt,
                            ts_diags *diags, ts_buf *out) {
  if (opt->emit != TS_EMIT_DEFAULT && opt->emit != TS_EMIT_CUDA &&
      opt->emit != TS_EMIT_PTX)
    return ts_status_make(TS_ERR_INVALID, "--target cuda has the stages cuda "
                          "and ptx, not %s", ts_emit_name(opt->emit));
  if (opt->emit != TS_EMIT_PTX)
    return ts_gen_cuda(u, opt->kernel, opt->arch, diags, out);
  ts_cache_key key;
  char hex[33], nvv[64];
  if (opt->cache_dir) {
    key = artifact_key(u, opt, "nvrtc-ptx");
    const char *v = ts_nvrtc_version(nvv, sizeof nvv);
    ts_cache_key_add_str(&key, v ? v : "none");
    ts_cache_key_hex(&key, hex);
    ts_buf warn;
    ts_buf_init(&warn, ts_allocator_system());
    bool hit;
    ts_status st = ts_cache_get(opt->cache_dir, &key, out, &hit, &warn);
    if (warn.len)
      fprintf(stderr, "tessera: warning: %s\n", warn.ptr);
    ts_buf_deinit(&warn);
    if (st || hit) {
      if (hit && opt->log)
        ts_buf_printf(opt->log, "cache hit %s/%s.tsc\n", opt->cache_dir, hex);
      return st;
    }
  }
  ts_buf cu;
  ts_buf_init(&cu, ts_allocator_system());
  ts_status st = ts_gen_cuda(u, opt->kernel, opt->arch, diags, &cu);
  size_t before = out->len;
  if (!st)
    st = ts_nvrtc_compile(cu.ptr, opt->arch ? opt->arch : "sm_90a", out);
  ts_buf_deinit(&cu);
  if (!st && opt->cache_dir) {
    ts_status ps = ts_cache_put(opt->cache_dir, &key, out->ptr + before,
                                out->len - before);
    if (opt->log)
      ts_buf_printf(opt->log, "cache %s %s/%s.tsc\n",
                    ps ? "miss, not stored:" : "miss, stored", opt->cache_dir,
                    hex);
    ts_status_free(ps);
  }
  return st;
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
  if (opt->arch && !ts_arch_supported(opt->arch)) {
    st = ts_status_make(TS_ERR_INVALID,
                        "unknown GPU architecture '%s' (%s)", opt->arch, ts_arch_list());
    goto done;
  }
  /* 3. typed (the defines are for the chosen kernel, when there is one;
   * `arch` names the target's architecture) */
  bool gpu = opt->target != TS_TARGET_CPU || opt->emit == TS_EMIT_PTX;
  u.arch = gpu ? ts_arch_number(opt->arch ? opt->arch : "sm_90a") : 0;
  u.define_kernel = opt->kernel;
  u.define_label = opt->define_label;
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
  if (opt->emit == TS_EMIT_PLAN) {
    st = opt->target == TS_TARGET_CPU
             ? ts_status_make(TS_ERR_INVALID, "--emit plan is a GPU stage: --target ptx or cuda "
                              "(the same plan: both lowerings share it)")
             : ts_gpu_plan_report(&u, opt->kernel, opt->arch, out);
    goto done;
  }
  if (opt->dump_after && (opt->target == TS_TARGET_CUDA || opt->emit != TS_EMIT_DEFAULT)) {
    st = ts_status_make(TS_ERR_INVALID, opt->target == TS_TARGET_CUDA
                        ? "--dump-after: the cuda target has no MLIR passes (cpu or ptx)"
                        : "--dump-after prints the IR between passes: not with --emit");
    goto done;
  }
  if (opt->emit == TS_EMIT_RESOURCES) {
    if (opt->target == TS_TARGET_CPU) {
      st = ts_status_make(TS_ERR_INVALID, "--emit resources is a GPU stage: --target ptx "
                          "(the MLIR lowering's PTX) or cuda (NVRTC's)");
      goto done;
    }
    ts_compile_options o = *opt;
    o.emit = TS_EMIT_PTX;
    ts_buf ptx;
    ts_buf_init(&ptx, ts_allocator_system());
    if (opt->target == TS_TARGET_CUDA) { /* (NVRTC's PTX has no launch lines) */
      launch_comments(&u, opt, &ptx);
      st = lower_cuda(&u, &o, diags, &ptx);
    } else {
      st = lower_ptx(&u, &o, diags, &ptx);
    }
    if (!st)
      st = ptx.failed ? ts_status_nomem()
                      : ts_ptx_resources(ptx.ptr ? ptx.ptr : "", ptx.len,
                                         opt->arch ? opt->arch : "sm_90a", path, out);
    ts_buf_deinit(&ptx);
    goto done;
  }
  if (opt->target == TS_TARGET_CUDA) {
    st = lower_cuda(&u, opt, diags, out);
    goto done;
  }
  if (opt->target == TS_TARGET_PTX || opt->emit == TS_EMIT_PTX) {
    if (opt->emit == TS_EMIT_LLVM) {
      st = ts_status_make(TS_ERR_INVALID, "--emit llvm is a CPU stage; the "
                          "PTX target has mlir, lowered and ptx");
      goto done;
    }
    st = lower_ptx(&u, opt, diags, out);
    goto done;
  }
  if (opt->emit == TS_EMIT_PTX || opt->emit == TS_EMIT_CUDA) {
    st = ts_status_make(TS_ERR_INVALID, "--emit %s needs --target %s",
                        ts_emit_name(opt->emit), ts_emit_name(opt->emit));
    goto done;
  }
  st = lower_cpu(&u, opt, diags, out);
done:
  if (!st && out->failed)
    st = ts_status_nomem();
  ts_unit_deinit(&u);
  return st;
}
