/* mlirb.h - private to compiler/: a thin builder over the MLIR C API (ops
 * appended to a current block, constants, arithmetic, memory, branches) and
 * the context set-up shared by gen.c and pipeline.c. The only place besides
 * those files that sees mlir-c headers. */
#ifndef TS_COMPILER_MLIRB_H
#define TS_COMPILER_MLIRB_H

#include "compiler/compiler.h"

#include <mlir-c/BuiltinAttributes.h>
#include <mlir-c/BuiltinTypes.h>
#include <mlir-c/Diagnostics.h>
#include <mlir-c/IR.h>

typedef struct mb {
  MlirContext ctx;
  MlirLocation loc;  /* location given to new ops */
  MlirBlock cur;     /* where ops are appended */
  MlirRegion region; /* the function body being built */
  MlirBlock entry;   /* its entry block (allocas go first) */
  MlirType i1, i8, i16, i32, i64, f16, f32, f64, index;
  /* when set, called before mb_load and mb_store build a memref.load or
   * memref.store of `mem` (the GPU simulator's race check: gen_gpu.c) */
  void (*access)(struct mb *b, MlirValue mem, MlirValue idx, bool write);
} mb;

void mb_init_types(mb *b);
MlirStringRef mb_str(const char *s);
MlirNamedAttribute mb_attr(mb *b, const char *name, MlirAttribute a);

/* Creates an op and appends it to b->cur. */
MlirOperation mb_op(mb *b, const char *name, intptr_t nops,
                    const MlirValue *ops, intptr_t nres, const MlirType *res,
                    intptr_t nattr, const MlirNamedAttribute *attrs);
MlirValue mb_op1(mb *b, const char *name, intptr_t nops, const MlirValue *ops,
                 MlirType res);

MlirValue mb_const_int(mb *b, MlirType t, int64_t v);
MlirValue mb_const_f32(mb *b, double v);
MlirValue mb_bin(mb *b, const char *name, MlirValue x, MlirValue y);
MlirValue mb_un(mb *b, const char *name, MlirValue x);
/* arith.cmpi / arith.cmpf with a predicate number. */
MlirValue mb_cmpi(mb *b, int pred, MlirValue x, MlirValue y);
MlirValue mb_cmpf(mb *b, int pred, MlirValue x, MlirValue y);
MlirValue mb_select(mb *b, MlirValue c, MlirValue x, MlirValue y);
MlirValue mb_cast(mb *b, const char *name, MlirValue x, MlirType to);

enum { CMPI_EQ = 0, CMPI_NE, CMPI_SLT, CMPI_SLE, CMPI_SGT, CMPI_SGE };
enum {
  CMPF_OEQ = 1, CMPF_OGT, CMPF_OGE, CMPF_OLT, CMPF_OLE, CMPF_ONE, CMPF_ORD,
  CMPF_UEQ, CMPF_UGT, CMPF_UGE, CMPF_ULT, CMPF_ULE, CMPF_UNE, CMPF_UNO
};

/* memref.load / memref.store at an i64 index of a 1-d memref. */
MlirValue mb_load(mb *b, MlirValue mem, MlirValue idx);
void mb_store(mb *b, MlirValue v, MlirValue mem, MlirValue idx);
/* A 1-d memref: static size (n >= 0) or dynamic (n < 0, size operand). */
MlirValue mb_alloca_entry(mb *b, MlirType elem, int64_t n);
MlirValue mb_alloc(mb *b, const char *name, MlirType elem, MlirValue size);

/* Blocks and branches. */
MlirBlock mb_block(mb *b, intptr_t nargs, const MlirType *types);
void mb_br(mb *b, MlirBlock dest, intptr_t nargs, const MlirValue *args);
void mb_cond_br(mb *b, MlirValue c, MlirBlock t, MlirBlock f);

#endif
