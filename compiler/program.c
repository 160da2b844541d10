/* program.c - a kernel compiled for the CPU and loaded into the JIT, kept
 * with the unit whose checked signature the runtime binds arguments by.
 *
 * The compiled code is cached across processes: after a JIT compile the
 * object code is linked into a shared object (`cc -shared`) stored in the
 * kernel cache's folder under a key of everything it depends on (the
 * source, kernel, -D values, simulator architecture, the Tessera build and
 * the host CPU), and a later process dlopens it instead of compiling. The
 * front end still checks the unit (the runtime binds arguments by its
 * signature, and the diagnostics stay the same). Anything failing on the
 * way (no compiler, a full disk) leaves the kernel JIT-compiled, as before;
 * TESSERA_CPU_CACHE=0 turns the cache off. */
#define _GNU_SOURCE
#include "compiler/gen.h"
#include "compiler/pipeline.h"

#include <dirent.h>
#include <pthread.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


struct ts_cpu_program {
  const ts_allocator *alloc;
  char *path; /* the unit's name: messages of the running code point at it */
  char *text;
  ts_unit unit;
  const ts_kernel_info *kernel;
  ts_mlir *mlir;
  MlirModule module;
  ts_jit *jit;
  void *so; /* the cached shared object, when loaded from the cache */
  ts_packed_fn run, grid, scratch, gpu;
  double seconds;
  bool cached; /* loaded from the cache */
  char stem[160]; /* TESSERA_DUMP's and TESSERA_OVERRIDE's files: ts_cpu_program_stem */
};

/* ---- TESSERA_DUMP and TESSERA_OVERRIDE ------------------------------------------------------ */

bool ts_debug_file(const char *var, const char *stem, const char *form, char *path,
                   size_t size) {
  const char *dir = getenv(var);
  return dir && *dir && (size_t)snprintf(path, size, "%s/%s.%s", dir, stem, form) < size;
}

void ts_debug_dump(const char *stem, const char *form, const char *text, size_t len) {
  char path[4200];
  if (!ts_debug_file("TESSERA_DUMP", stem, form, path, sizeof path))
    return;
  char dir[sizeof path];
  memcpy(dir, path, sizeof dir);
  *strrchr(dir, '/') = 0; /* the folder ts_debug_file put the file in */
  ts_status st = ts_make_dirs(dir);
  if (!st)
    st = ts_file_write_atomic(path, text, len);
  if (st) {
    fprintf(stderr, "tessera: warning: TESSERA_DUMP: %s not written: %s\n", path,
            ts_status_message(st));
    ts_status_free(st);
  }
}

bool ts_debug_override(const char *stem, const char *form, char *path, size_t size) {
  if (!ts_debug_file("TESSERA_OVERRIDE", stem, form, path, size) || access(path, F_OK))
    return false;
  fprintf(stderr, "tessera: %s replaces the compiled %s (TESSERA_OVERRIDE)\n", path, form);
  return true;
}

/* "<kernel>-<16 hex>": the hex a hash of what the compiled forms depend on
 * but the Tessera build (the source, the params' values, `arch`), so that
 * an override outlives a rebuild. */
static void make_stem(ts_cpu_program *p, const char *kernel) {
  ts_cache_key k = ts_compile_unit_key("debug-stem", &p->unit, kernel);
  char hex[33];
  ts_cache_key_hex(&k, hex);
  snprintf(p->stem, sizeof p->stem, "%.120s-%.16s", kernel, hex);
}

/* ---- the cache of compiled code ------------------------------------------------------------ */

/* This build's and CPU's key: the same all process long. */
static char build_hex[33];

static void make_build_hex(void) {
  ts_cache_key k;
  ts_cache_key_init(&k);
  ts_cache_key_add_str(&k, "cpu-build");
  ts_compile_build_key(&k);
  char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
  ts_cache_key_add_str(&k, cpu);
  ts_cache_key_add_str(&k, features);
  LLVMDisposeMessage(cpu);
  LLVMDisposeMessage(features);
  ts_cache_key_hex(&k, build_hex);
}

/* A folder of the cache and the files in it. */
static void remove_folder(const char *sub) {
  DIR *f = opendir(sub);
  struct dirent *x;
  while (f && (x = readdir(f))) {
    char file[4700];
    if (x->d_name[0] != '.' &&
        (size_t)snprintf(file, sizeof file, "%s/%s", sub, x->d_name) < sizeof file)
      unlink(file);
  }
  if (f)
    closedir(f);
  rmdir(sub);
}

/* Other builds' folders kept besides this one's: the most recently used. */
enum { KEEP_BUILDS = 4 };

/* The folder of this build's shared objects, <cache>/cpu-<build>, made on
 * first use; then (once a process) every other build's folder untouched
 * for a day is removed, and all but the KEEP_BUILDS most recently used of
 * the rest: a rebuilt Tessera never reads an older build's entries, so
 * without this the cache would grow with every build. */
static bool build_dir(char *out, size_t size) {
  char root[4096];
  if (!ts_env_flag("TESSERA_CPU_CACHE", true) || !ts_cache_dir(root, sizeof root))
    return false;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_build_hex);
  const char *hex = build_hex;
  if ((size_t)snprintf(out, size, "%s/cpu-%s", root, hex) >= size || ts_make_dirs(out))
    return false;
  static atomic_flag swept = ATOMIC_FLAG_INIT;
  if (!atomic_flag_test_and_set(&swept)) {
    utimensat(AT_FDCWD, out, NULL, 0); /* in use: a build that only loads stays */
    DIR *d = opendir(root);
    struct dirent *e;
    time_t old = time(NULL) - 24 * 3600;
    struct {
      char name[48];
      time_t t;
    } kept[KEEP_BUILDS + 1];
    int nkept = 0;
    while (d && (e = readdir(d))) {
      char sub[4400];
      struct stat sb;
      if (strncmp(e->d_name, "cpu-", 4) || !strcmp(e->d_name + 4, hex) ||
          strlen(e->d_name) >= sizeof kept[0].name ||
          (size_t)snprintf(sub, sizeof sub, "%s/%s", root, e->d_name) >= sizeof sub ||
          stat(sub, &sb) || !S_ISDIR(sb.st_mode))
        continue;
      if (sb.st_mtime <= old) {
        remove_folder(sub);
        continue;
      }
      /* kept: the newest KEEP_BUILDS, newest first; the one pushed out goes */
      int at = nkept;
      while (at > 0 && kept[at - 1].t < sb.st_mtime)
        at--;
      if (at == KEEP_BUILDS) {
        remove_folder(sub);
        continue;
      }
      if (nkept == KEEP_BUILDS) {
        char gone[4400];
        if ((size_t)snprintf(gone, sizeof gone, "%s/%s", root, kept[nkept - 1].name) <
            sizeof gone)
          remove_folder(gone);
        nkept--;
      }
      memmove(&kept[at + 1], &kept[at], (size_t)(nkept - at) * sizeof kept[0]);
      memcpy(kept[at].name, e->d_name, strlen(e->d_name) + 1); /* (its length: checked) */
      kept[at].t = sb.st_mtime;
      nkept++;
    }
    if (d)
      closedir(d);
  }
  return true;
}

bool ts_cpu_cache_file(const ts_cache_key *k, const char *suffix, char *path, size_t size) {
  char dir[4200], hex[33];
  if (!build_dir(dir, sizeof dir))
    return false;
  ts_cache_key_hex(k, hex);
  return (size_t)snprintf(path, size, "%s/%s%s", dir, hex, suffix) < size;
}

/* The key's file (`form`: NULL the CPU's code, the simulator's arch, or
 * "host": a CUDA device's host functions); false without a cache folder. */
static bool cache_path(const ts_unit *u, const char *kernel, const char *form, char *path,
                       size_t size) {
  ts_cache_key k = ts_compile_unit_key("cpu-so", u, kernel);
  ts_cache_key_add_str(&k, form); /* NULL the CPU's, the simulator's arch, "host" */
  /* (compiler/gen_bounds.c's copies, on unless TESSERA_CPU_BOUNDS=0) */
  ts_cache_key_add_str(&k, ts_env_flag("TESSERA_CPU_BOUNDS", true) ? "bounds" : "checked");
  /* (compiler/gen_bf16.c's micro-kernels, on unless TESSERA_CPU_BF16=0) */
  ts_cache_key_add_str(&k, ts_env_flag("TESSERA_CPU_BF16", true) ? "bf16" : "bf16-loops");
  return ts_cpu_cache_file(&k, ".so", path, size);
}

/* The packed entry point `name` of a loaded shared object. */
static ts_packed_fn so_lookup(void *so, const char *name) {
  char sym[340];
  snprintf(sym, sizeof sym, "_mlir_%s", name);
  return (ts_packed_fn)dlsym(so, sym);
}

static ts_packed_fn jit_lookup(void *j, const char *name) { return ts_jit_lookup(j, name); }

/* Stores the JIT's code as `path`: dumped, linked into a shared object
 * beside it under a temporary name, then renamed into place, so that a
 * reader never sees half a file. */
static void cache_store(ts_jit *j, const char *path) {
  static atomic_uint serial;
  unsigned n = atomic_fetch_add(&serial, 1); /* (threads of one process may store at once) */
  char obj[4400], so[4400]; /* (the folder is made: ts_cpu_cache_file) */
  if ((size_t)snprintf(obj, sizeof obj, "%s.%ld-%u.o", path, (long)getpid(), n) >= sizeof obj ||
      (size_t)snprintf(so, sizeof so, "%s.%ld-%u.tmp", path, (long)getpid(), n) >= sizeof so)
    return;
  const char *cc = getenv("CC");
  char *argv[] = {(char *)(cc && *cc ? cc : "cc"), "-shared", "-o", so, obj, "-lm", NULL};
  if (ts_jit_dump_object(j, obj) && ts_run_tool(argv, NULL) == 0 && rename(so, path) == 0) {
    unlink(obj);
    static atomic_flag swept = ATOMIC_FLAG_INIT;
    char dir[4400];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && !atomic_flag_test_and_set(&swept)) { /* this build's limits: ts_cache_sweep */
      *slash = 0;
      ts_cache_sweep(dir, ".so");
    }
    return;
  }
  unlink(obj);
  unlink(so);
}

ts_status ts_cpu_program_create(const ts_allocator *alloc, const char *path,
                                const char *text, size_t len,
                                const char *kernel, const ts_define *defines,
                                size_t define_count,
                                const ts_jit_symbol *syms, size_t nsyms,
                                const char *gpu_arch, const char *arch, ts_diags *diags,
                                ts_cpu_program **out) {
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ts_cpu_program *p = calloc(1, sizeof *p);
  if (!p)
    return ts_status_nomem();
  p->alloc = alloc;
  p->text = malloc(len + 1);
  p->path = strdup(path);
  if (!p->text || !p->path) {
    free(p->text);
    free(p->path);
    free(p);
    return ts_status_nomem();
  }
  memcpy(p->text, text, len);
  p->text[len] = 0;
  ts_status st = ts_unit_init(&p->unit, alloc, p->path, p->text, len, diags);
  if (st) {
    free(p->text);
    free(p->path);
    free(p);
    return st;
  }
  p->unit.define_kernel = kernel;
  p->unit.define_label = "param"; /* the runtime's params table */
  p->unit.arch = ts_arch_number(gpu_arch ? gpu_arch : arch);
  if (p->unit.arch < 0) {
    st = ts_status_make(TS_ERR_INVALID, "unknown GPU architecture '%s'",
                        gpu_arch ? gpu_arch : arch);
    goto fail;
  }
  if (!ts_unit_parse(&p->unit) ||
      !ts_unit_check(&p->unit, defines, define_count)) {
    st = diags->nomem ? ts_status_nomem()
                      : ts_status_make(TS_ERR_PROGRAM, "'%s' has errors", path);
    goto fail;
  }
  p->kernel = ts_unit_kernel(&p->unit, ts_str_from(kernel));
  if (!p->kernel) {
    st = ts_status_make(TS_ERR_INVALID, "no kernel '%s' in '%s'", kernel, path);
    goto fail;
  }
  /* the simulator's GPU form, a CUDA device's host functions alone (its
   * kernel runs from the PTX: the kernel's CPU code took as long to compile
   * as its PTX, for nothing), or the CPU's */
  bool sim = gpu_arch != NULL, host = !sim && arch != NULL;
  char so_path[4200], over[4200];
  make_stem(p, kernel);
  /* the MLIR a debugging user dumps (the generated module, before the
   * pipeline) or gives in its place: then no cached code is read, and an
   * override's is not kept */
  const char *form = sim ? "gpusim.mlir" : host ? "host.mlir" : "cpu.mlir";
  bool replaced = ts_debug_override(p->stem, form, over, sizeof over);
  const char *dump_dir = getenv("TESSERA_DUMP");
  bool dumping = dump_dir && *dump_dir;
  bool cacheable =
      !replaced && cache_path(&p->unit, kernel, sim ? gpu_arch : host ? "host" : NULL, so_path,
                              sizeof so_path);
  ts_packed_fn (*lookup)(void *, const char *) = NULL;
  void *from = NULL;
  if (cacheable && !dumping && (p->so = dlopen(so_path, RTLD_NOW | RTLD_LOCAL))) {
    p->cached = true;
    utimensat(AT_FDCWD, so_path, NULL, 0); /* used now (ts_cache_sweep) */
    lookup = so_lookup;
    from = p->so;
  } else {
    /* (an override's messages are located in its file, not the .tile) */
    if ((st = ts_mlir_create(replaced ? NULL : &p->unit.src, diags, &p->mlir)))
      goto fail;
    if ((st = replaced ? ts_mlir_parse_file(p->mlir, over, &p->module)
                       : ts_mlir_gen(p->mlir, &p->unit, kernel, TS_TARGET_CPU, gpu_arch,
                                     sim ? TS_CPU_GPUSIM : host ? TS_CPU_HOST : TS_CPU_RUN,
                                     &p->module)))
      goto fail;
    if (dumping) {
      ts_buf text;
      ts_buf_init(&text, ts_allocator_system());
      ts_mlir_print(p->module, &text);
      if (!text.failed)
        ts_debug_dump(p->stem, form, text.ptr, text.len);
      ts_buf_deinit(&text);
    }
    if ((st = ts_mlir_lower(p->mlir, p->module, TS_TARGET_CPU, false)) ||
        (st = ts_jit_create(p->mlir, p->module, syms, nsyms, cacheable, &p->jit))) {
      mlirModuleDestroy(p->module);
      p->module.ptr = NULL;
      goto fail;
    }
    lookup = jit_lookup;
    from = p->jit;
  }
  char name[320];
  snprintf(name, sizeof name, "%s", kernel);
  if (!sim && !host)
    p->run = lookup(from, name);
  snprintf(name, sizeof name, "%s__grid", kernel);
  p->grid = lookup(from, name);
  snprintf(name, sizeof name, "%s__scratch", kernel);
  p->scratch = lookup(from, name);
  if (sim) {
    snprintf(name, sizeof name, "%s__gpu", kernel);
    p->gpu = lookup(from, name);
  }
  if ((!sim && !host && !p->run) || !p->grid || !p->scratch || (sim && !p->gpu)) {
    st = ts_status_make(TS_ERR_INTERNAL, "kernel '%s' is missing from the %s", kernel,
                        p->cached ? "cached code" : "JIT");
    goto fail;
  }
  if (cacheable && !p->cached)
    cache_store(p->jit, so_path);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  p->seconds = (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  *out = p;
  return NULL;
fail:
  ts_cpu_program_destroy(p);
  return st;
}

void ts_cpu_program_destroy(ts_cpu_program *p) {
  if (!p)
    return;
  ts_jit_destroy(p->jit);
  if (p->so)
    dlclose(p->so);
  if (p->module.ptr)
    mlirModuleDestroy(p->module);
  ts_mlir_destroy(p->mlir);
  ts_unit_deinit(&p->unit);
  free(p->text);
  free(p->path);
  free(p);
}

const ts_kernel_info *ts_cpu_program_kernel(const ts_cpu_program *p) {
  return p->kernel;
}
ts_packed_fn ts_cpu_program_run(const ts_cpu_program *p) { return p->run; }
ts_packed_fn ts_cpu_program_grid(const ts_cpu_program *p) { return p->grid; }
ts_packed_fn ts_cpu_program_scratch(const ts_cpu_program *p) {
  return p->scratch;
}
ts_packed_fn ts_cpu_program_gpu(const ts_cpu_program *p) { return p->gpu; }
const char *ts_cpu_program_stem(const ts_cpu_program *p) { return p->stem; }
int64_t ts_kernel_smem_bytes(const ts_kernel_info *k, const char *arch) {
  return ts_gen_gpu_smem_bytes(k, arch);
}
int ts_kernel_tensor_maps(const ts_kernel_info *k, const char *arch, ts_tensor_map_spec *out) {
  ts_tma t[TS_TMA_MAX];
  int n = ts_pipe_tma(k, arch, t);
  for (int i = 0; i < n; i++)
    out[i] = (ts_tensor_map_spec){t[i].arg, t[i].rows, t[i].box_cols, t[i].esize, t[i].swz};
  return n;
}
double ts_cpu_program_compile_seconds(const ts_cpu_program *p) {
  return p->seconds;
}
bool ts_cpu_program_cached(const ts_cpu_program *p) { return p->cached; }
const ts_unit *ts_cpu_program_unit(const ts_cpu_program *p) { return &p->unit; }
