/* pipeline.h - private to compiler/: MLIR contexts, generation, the pass
 * pipelines and the CPU JIT (pipeline.c). */
#ifndef TS_COMPILER_PIPELINE_H
#define TS_COMPILER_PIPELINE_H

#include "compiler/mlirb.h"

typedef struct ts_mlir ts_mlir;
typedef struct ts_jit ts_jit;

/* A context with every dialect and the LLVM translations registered; its
 * diagnostics go to `diags` at locations in `src`. Not thread-safe. */
ts_status ts_mlir_create(const ts_source *src, ts_diags *diags, ts_mlir **out);
void ts_mlir_destroy(ts_mlir *m);
/* What the CPU target's module holds: each kernel's CPU form (run, grid,
 * scratch), also the simulator's GPU form, or only the host functions
 * (grid, scratch: a CUDA device's, whose kernel runs from its PTX). */
typedef enum { TS_CPU_RUN, TS_CPU_GPUSIM, TS_CPU_HOST } ts_cpu_form;
/* Generates and verifies the module of a checked unit for a target (`chip`
 * for PTX, and for the CPU target's GPU form, TS_CPU_GPUSIM: "sm_90a" when
 * NULL; `form` is the CPU target's). */
ts_status ts_mlir_gen(ts_mlir *m, ts_unit *u, const char *kernel,
                      ts_target target, const char *chip, ts_cpu_form form,
                      MlirModule *out);
/* Runs the target's pipeline in place. */
ts_status ts_mlir_lower(ts_mlir *m, MlirModule mod, ts_target target,
                        bool time_passes);
const char *ts_pipeline_text(ts_target t);
/* Runs the target's pipeline one pass at a time, appending the module
 * after each pass named `after` ("all": every pass) with a line naming
 * it, and stopping after the last; TS_ERR_INVALID naming the pipeline's
 * passes when none is `after` (`tessera compile --dump-after`). */
ts_status ts_mlir_lower_dump(ts_mlir *m, MlirModule mod, ts_target target, const char *after,
                             ts_buf *out);
/* Serialises a module lowered for the PTX target and appends the PTX. */
ts_status ts_mlir_ptx(ts_mlir *m, MlirModule lowered, bool time_passes,
                      ts_buf *out);
/* Parses and verifies a file of MLIR text (TESSERA_OVERRIDE's: a module as
 * ts_mlir_gen makes one); TS_ERR_PROGRAM with MLIR's message, located in
 * the file, when it is not one (give the context no .tile source). */
ts_status ts_mlir_parse_file(ts_mlir *m, const char *path, MlirModule *out);
void ts_mlir_print(MlirModule mod, ts_buf *out);
ts_status ts_mlir_print_llvm(MlirModule mod, ts_buf *out);

/* JIT-compiles a lowered module (the module must outlive the JIT); the
 * module's external functions named in `syms` resolve to them. With
 * `dumpable` the code is position-independent and kept for
 * ts_jit_dump_object. */
ts_status ts_jit_create(ts_mlir *m, MlirModule lowered,
                        const ts_jit_symbol *syms, size_t nsyms, bool dumpable,
                        ts_jit **out);
/* Writes the compiled code as an object file (a dumpable JIT whose
 * functions have been looked up); false when none was written. */
bool ts_jit_dump_object(ts_jit *j, const char *path);
ts_packed_fn ts_jit_lookup(ts_jit *j, const char *name);
void ts_jit_destroy(ts_jit *j);

#endif
