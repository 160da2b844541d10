/* gen.h - private to compiler/: the typed AST of a unit to an MLIR module
 * for the CPU target (gen.c). */
#ifndef TS_COMPILER_GEN_H
#define TS_COMPILER_GEN_H

#include "compiler/mlirb.h"

#include <stdlib.h>

typedef MlirContext mb_ctx_t;

/* Builds the module of every kernel of `u` (or only the one named). A
 * construct the CPU target cannot lower is a located diagnostic and a
 * TS_ERR_PROGRAM status. The module belongs to the caller. */
ts_status ts_gen_cpu(mb_ctx_t ctx, ts_unit *u, const char *only,
                     ts_diags *diags, MlirModule *out);

#endif
