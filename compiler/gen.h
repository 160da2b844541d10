/* gen.h - private to compiler/: the typed AST of a unit to an MLIR module
 * for the CPU target (gen.c). */
#ifndef TS_COMPILER_GEN_H
#define TS_COMPILER_GEN_H

#include "compiler/mlirb.h"

#include <stdlib.h>

typedef MlirContext mb_ctx_t;

/* Builds the module of every kernel of `u` (or only the one named). A
 * construct the CPU target cannot lower is a located diagnostic and a
 * TS_ERR_PROGRAM status. The module belongs to the caller. With `gpusim`,
 * each kernel K also gets @K__gpu: the GPU kernel as a CPU function for
 * the simulator (gen.c, gen_kernel_gpu). */
ts_status ts_gen_cpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     bool gpusim, ts_diags *diags, MlirModule *out);

/* The same for the GPU target: a gpu.module for NVVM chip `chip`
 * ("sm_90a", "sm_80") holding one gpu.func kernel per kernel (docs/abi.md). */
ts_status ts_gen_gpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     const char *chip, ts_diags *diags, MlirModule *out);

/* Bytes of shared memory a block of the GPU kernel uses (a launch passes
 * them as dynamic shared memory). */
int64_t ts_gen_gpu_smem_bytes(const ts_kernel_info *k);

#endif
