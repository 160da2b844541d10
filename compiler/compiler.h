/* compiler.h - the compile driver: one .tile source through the stages
 * tokens -> ast -> typed -> mlir -> lowered -> llvm | ptx | cuda, stopping
 * at the stage asked for: the CPU target (JIT), PTX through MLIR, and CUDA
 * C (its PTX through NVRTC). Thread-safe: each call owns its state. */
#ifndef TS_COMPILER_H
#define TS_COMPILER_H

#include "dsl/dsl.h"

typedef enum ts_target {
  TS_TARGET_CPU,
  TS_TARGET_PTX,
  TS_TARGET_CUDA,
} ts_target;

/* X(name, spelling, built) */
#define TS_EMIT_STAGES(X)                                                      \
  X(TOKENS, "tokens", true)                                                    \
  X(AST, "ast", true)                                                          \
  X(TYPED, "typed", true)                                                      \
  X(MLIR, "mlir", true)                                                        \
  X(LOWERED, "lowered", true)                                                  \
  X(LLVM, "llvm", true)                                                        \
  X(PTX, "ptx", true)                                                         \
  X(CUDA, "cuda", true)                                                        \
  X(RESOURCES, "resources", true)                                              \
  X(PLAN, "plan", true)

typedef enum ts_emit {
#define X(name, text, built) TS_EMIT_##name,
  TS_EMIT_STAGES(X)
#undef X
      TS_EMIT_DEFAULT, /* the target's final artifact */
} ts_emit;

const char *ts_emit_name(ts_emit e);
/* Parses a stage name; false if unknown. */
bool ts_emit_parse(const char *s, ts_emit *out);
bool ts_target_parse(const char *s, ts_target *out);
const char *ts_target_name(ts_target t);

typedef struct ts_compile_options {
  const char *kernel; /* NULL: every kernel in the file */
  ts_target target;
  ts_emit emit;
  const ts_define *defines;
  size_t define_count;
  const char *define_label; /* how messages name them: "-D" (NULL) or "param" */
  bool time_passes; /* print MLIR's pass timing to stderr */
  /* the IR after this pass of the target's pipeline (each time it runs;
   * "all": after every pass) instead of a stage: ts_mlir_lower_dump */
  const char *dump_after;
  const char *arch; /* PTX: "sm_90a" (NULL), "sm_90", "sm_80" or "sm_86" */
  /* The kernel cache folder for final artifacts (PTX), or NULL for none;
   * what the cache did is appended to `log` when it is not NULL. */
  const char *cache_dir;
  ts_buf *log;
  /* the functions the CPU code may call (print, assert: the runtime's
   * table), given to the JIT that `--emit` default builds; may be empty */
  const struct ts_jit_symbol *symbols;
  size_t symbol_count;
} ts_compile_options;

/* `--emit resources`: a Markdown table of each kernel of the PTX (either
 * lowering's, with its "// tessera kernel" lines) as ptxas -v assembles it
 * for `arch` (registers, spills, stack, shared memory) and the occupancy
 * those allow on that architecture; ptxas's warnings after it. Runs ptxas
 * ($PTXAS, $CUDA_HOME/bin, /usr/local/cuda/bin or PATH): TS_ERR_UNSUPPORTED
 * without one. `file` names the source in the title. */
ts_status ts_ptx_resources(const char *ptx, size_t len, const char *arch, const char *file,
                           ts_buf *out);
/* The same for one kernel of the PTX, as numbers (bytes but registers):
 * TS_ERR_NOT_FOUND when ptxas said nothing of it. */
typedef struct ts_ptx_kernel_res {
  long long registers, spill_stores, spill_loads, stack, static_smem;
} ts_ptx_kernel_res;
ts_status ts_ptx_kernel_resources(const char *ptx, size_t len, const char *arch,
                                  const char *kernel, ts_ptx_kernel_res *out);

/* Whether `arch` is a GPU architecture the PTX target supports ("sm_90a",
 * "sm_90", "sm_80", "sm_86"), and the shared memory a block of its code
 * may take (NULL: sm_90a): a kernel's tiles are planned within it.
 * ts_arch_list: their names for a message, "sm_90a, sm_90, sm_80 or sm_86". */
bool ts_arch_supported(const char *arch);
const char *ts_arch_list(void);
int64_t ts_arch_smem_max(const char *arch);

/* The packed entry point of a JIT-compiled function: args[i] points at the
 * i-th argument (a memref argument takes five: allocated and aligned
 * pointers, offset, size, stride), results are written through the
 * pointers after the arguments. */
typedef void (*ts_packed_fn)(void **args);

/* A kernel compiled for the CPU and loaded: its checked signature and its
 * entry points. Holds its MLIR context and JIT; not thread-safe to create,
 * but its functions may be called from many threads at once. */
typedef struct ts_cpu_program ts_cpu_program;

/* A host function the JIT-compiled code may call by name. */
typedef struct ts_jit_symbol {
  const char *name;
  void *fn;
} ts_jit_symbol;

/* Compiles kernel `kernel` of `text` for the CPU and JIT-loads it; `syms`
 * are the host functions the code calls (the runtime's: ts_gpusim_barrier,
 * ts_gpusim_shuffle, ts_rt_print, ts_rt_assert). With `gpu_arch` (not
 * NULL: "sm_90a" or "sm_80"), the program holds the GPU form of the kernel
 * for that architecture as a CPU function (`gpu`, run by the simulator)
 * instead of `run`. `arch` is the architecture the kernel is checked for
 * (its `arch` constant, so its params' defaults): gpu_arch when that is
 * set, else a CUDA device's (whose launches take the program's signature
 * and plan) or NULL, the CPU. Program errors go to `diags`
 * (TS_ERR_PROGRAM). */
TS_MUST_USE ts_status ts_cpu_program_create(
    const ts_allocator *alloc, const char *path, const char *text, size_t len,
    const char *kernel, const ts_define *defines, size_t define_count,
    const ts_jit_symbol *syms, size_t nsyms, const char *gpu_arch, const char *arch,
    ts_diags *diags, ts_cpu_program **out);
void ts_cpu_program_destroy(ts_cpu_program *p);
/* The name of a program's files in TESSERA_DUMP's and TESSERA_OVERRIDE's
 * folders (docs/abi.md), before ".FORM": "<kernel>-<16 hex>", the hex a hash
 * of the source, the params' values and `arch` (not of the Tessera build,
 * so that an override outlives a rebuild). */
const char *ts_cpu_program_stem(const ts_cpu_program *p);
/* TESSERA_DUMP / TESSERA_OVERRIDE: the file STEM.FORM in the folder the
 * variable `var` names; false when it is unset or empty. */
bool ts_debug_file(const char *var, const char *stem, const char *form, char *path,
                   size_t size);
/* Writes a compiled form's text into TESSERA_DUMP's folder (made when
 * missing) when it is set; a failure is a warning on stderr. */
void ts_debug_dump(const char *stem, const char *form, const char *text, size_t len);
/* Whether TESSERA_OVERRIDE's folder holds the form's file (its path in
 * `path`), said on stderr when it does: the caller uses it in place of
 * what it would compile, and keeps nothing of it in the kernel cache. */
bool ts_debug_override(const char *stem, const char *form, char *path, size_t size);
const ts_kernel_info *ts_cpu_program_kernel(const ts_cpu_program *p);
/* `run(args..., begin, end)` (NULL in the GPU form) and `grid(dims,
 * scalars) -> (x, y, z)`. */
ts_packed_fn ts_cpu_program_run(const ts_cpu_program *p);
ts_packed_fn ts_cpu_program_grid(const ts_cpu_program *p);
/* `scratch(dims, scalars) -> bytes` of global scratch per GPU block, and
 * the simulator's `gpu(args..., scratch, per_block, smem, ctx, tid, bx, by,
 * bz, gx, gy)` (NULL unless the program has the GPU form). */
ts_packed_fn ts_cpu_program_scratch(const ts_cpu_program *p);
ts_packed_fn ts_cpu_program_gpu(const ts_cpu_program *p);
/* Bytes of shared memory one block of the GPU form for `arch` (NULL: sm_90a)
 * uses. */
int64_t ts_kernel_smem_bytes(const ts_kernel_info *k, const char *arch);
/* The tensor maps the GPU form for `arch` takes after its scratch
 * parameters (TMA copies; docs/abi.md "Parameters"), one a box: of tensor
 * argument `arg` (rank 2), `box_rows` x `box_cols` elements of `esize`
 * bytes, swizzled by `swz` bytes; at most 8. */
typedef struct ts_tensor_map_spec {
  uint32_t arg;
  int64_t box_rows, box_cols;
  int esize, swz;
} ts_tensor_map_spec;
#define TS_TMA_MAPS 8
int ts_kernel_tensor_maps(const ts_kernel_info *k, const char *arch, ts_tensor_map_spec *out);
/* Seconds the compile took (front end through JIT). */
double ts_cpu_program_compile_seconds(const ts_cpu_program *p);
/* The file of key `k` (with `suffix`) in the cache of compiled CPU code:
 * a folder per Tessera build and host CPU in the kernel cache's folder
 * (others unused for a day are removed); false when the cache is off
 * (TESSERA_CPU_CACHE=0) or has no folder. */
bool ts_cpu_cache_file(const ts_cache_key *k, const char *suffix, char *path, size_t size);
/* The checked unit the kernel was compiled from. */
const ts_unit *ts_cpu_program_unit(const ts_cpu_program *p);
/* Whether the code came from the cache of compiled code (program.c). */
bool ts_cpu_program_cached(const ts_cpu_program *p);

/* Compiles `text` (named `path` in messages) up to the stage asked for and
 * appends that stage's output to `out`. Program errors go to `diags` and
 * return a TS_ERR_PROGRAM status; a stage that is not built yet returns
 * TS_ERR_UNSUPPORTED; an unknown --kernel returns TS_ERR_INVALID. */
TS_MUST_USE ts_status ts_compile(const ts_allocator *alloc, const char *path,
                                 const char *text, size_t len,
                                 const ts_compile_options *opt, ts_diags *diags,
                                 ts_buf *out);

/* CUDA C to PTX for `arch` with NVRTC (opened at run time); without it,
 * TS_ERR_UNSUPPORTED saying so. */
TS_MUST_USE ts_status ts_nvrtc_compile(const char *cuda, const char *arch,
                                       ts_buf *ptx);
/* "NVRTC 13.0", or NULL when there is none. */
const char *ts_nvrtc_version(char *buf, size_t size);

/* "tessera 0.1.0 (LLVM/MLIR 22.1.8)" */
const char *ts_compiler_version(void);
/* Adds which build of Tessera this is to a cache key: its version and the
 * path, size and modification time of the library holding the compiler. */
void ts_compile_build_key(ts_cache_key *k);
/* A cache key begun with what every compiled form of `kernel` (every
 * kernel when NULL) of a checked unit depends on: `what` (the form), the
 * unit's text, the kernel's name, the `arch` it was checked for and the
 * values of its params: the values, not the -D text that set them, so that
 * the order of the -D list (a Lua table's, which varies between processes)
 * and its spelling (`1` or `true`, a default given or not) do not make
 * another entry. The caller adds what else its form depends on. */
ts_cache_key ts_compile_unit_key(const char *what, const ts_unit *u, const char *kernel);

#endif
