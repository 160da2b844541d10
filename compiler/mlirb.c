/* mlirb.c - the builder helpers of mlirb.h: each creates one operation
 * through the MLIR C API and appends it to the current block. */
#include "compiler/mlirb.h"

#include <string.h>

void mb_init_types(mb *b) {
  MlirContext c = b->ctx;
  b->i1 = mlirIntegerTypeGet(c, 1);
  b->i8 = mlirIntegerTypeGet(c, 8);
  b->i16 = mlirIntegerTypeGet(c, 16);
  b->i32 = mlirIntegerTypeGet(c, 32);
  b->i64 = mlirIntegerTypeGet(c, 64);
  b->f16 = mlirF16TypeGet(c);
  b->f32 = mlirF32TypeGet(c);
  b->f64 = mlirF64TypeGet(c);
  b->index = mlirIndexTypeGet(c);
}

MlirStringRef mb_str(const char *s) { return mlirStringRefCreateFromCString(s); }

MlirNamedAttribute mb_attr(mb *b, const char *name, MlirAttribute a) {
  return mlirNamedAttributeGet(mlirIdentifierGet(b->ctx, mb_str(name)), a);
}

MlirOperation mb_op(mb *b, const char *name, intptr_t nops,
                    const MlirValue *ops, intptr_t nres, const MlirType *res,
                    intptr_t nattr, const MlirNamedAttribute *attrs) {
  MlirOperationState st = mlirOperationStateGet(mb_str(name), b->loc);
  if (nops)
    mlirOperationStateAddOperands(&st, nops, ops);
  if (nres)
    mlirOperationStateAddResults(&st, nres, res);
  if (nattr)
    mlirOperationStateAddAttributes(&st, nattr, attrs);
  MlirOperation op = mlirOperationCreate(&st);
  mlirBlockAppendOwnedOperation(b->cur, op);
  return op;
}

MlirValue mb_op1(mb *b, const char *name, intptr_t nops, const MlirValue *ops,
                 MlirType res) {
  return mlirOperationGetResult(mb_op(b, name, nops, ops, 1, &res, 0, NULL),
                                0);
}

MlirValue mb_const_int(mb *b, MlirType t, int64_t v) {
  MlirNamedAttribute a = mb_attr(b, "value", mlirIntegerAttrGet(t, v));
  return mlirOperationGetResult(
      mb_op(b, "arith.constant", 0, NULL, 1, &t, 1, &a), 0);
}

MlirValue mb_const_f32(mb *b, double v) {
  MlirNamedAttribute a =
      mb_attr(b, "value", mlirFloatAttrDoubleGet(b->ctx, b->f32, v));
  return mlirOperationGetResult(
      mb_op(b, "arith.constant", 0, NULL, 1, &b->f32, 1, &a), 0);
}

MlirValue mb_bin(mb *b, const char *name, MlirValue x, MlirValue y) {
  MlirValue ops[2] = {x, y};
  return mb_op1(b, name, 2, ops, mlirValueGetType(x));
}

MlirValue mb_un(mb *b, const char *name, MlirValue x) {
  return mb_op1(b, name, 1, &x, mlirValueGetType(x));
}

static MlirValue cmp(mb *b, const char *name, int pred, MlirValue x,
                     MlirValue y) {
  MlirValue ops[2] = {x, y};
  MlirNamedAttribute a =
      mb_attr(b, "predicate", mlirIntegerAttrGet(b->i64, pred));
  /* (of vectors: a vector of i1 of their shape) */
  MlirType t = mlirValueGetType(x), rt = b->i1;
  if (mlirTypeIsAVector(t)) {
    int64_t shape[8], rank = mlirShapedTypeGetRank(t);
    for (int64_t d = 0; d < rank && d < 8; d++)
      shape[d] = mlirShapedTypeGetDimSize(t, d);
    rt = mlirVectorTypeGet(rank < 8 ? rank : 8, shape, b->i1);
  }
  return mlirOperationGetResult(mb_op(b, name, 2, ops, 1, &rt, 1, &a), 0);
}

MlirValue mb_cmpi(mb *b, int pred, MlirValue x, MlirValue y) {
  return cmp(b, "arith.cmpi", pred, x, y);
}

MlirValue mb_cmpf(mb *b, int pred, MlirValue x, MlirValue y) {
  return cmp(b, "arith.cmpf", pred, x, y);
}

MlirValue mb_select(mb *b, MlirValue c, MlirValue x, MlirValue y) {
  MlirValue ops[3] = {c, x, y};
  return mb_op1(b, "arith.select", 3, ops, mlirValueGetType(x));
}

MlirValue mb_cast(mb *b, const char *name, MlirValue x, MlirType to) {
  return mb_op1(b, name, 1, &x, to);
}

MlirValue mb_load(mb *b, MlirValue mem, MlirValue idx) {
  if (b->access)
    b->access(b, mem, idx, false);
  MlirValue ops[2] = {mem, mb_cast(b, "arith.index_cast", idx, b->index)};
  MlirType elem = mlirShapedTypeGetElementType(mlirValueGetType(mem));
  return mb_op1(b, "memref.load", 2, ops, elem);
}

void mb_store(mb *b, MlirValue v, MlirValue mem, MlirValue idx) {
  if (b->access)
    b->access(b, mem, idx, true);
  MlirValue ops[3] = {v, mem, mb_cast(b, "arith.index_cast", idx, b->index)};
  mb_op(b, "memref.store", 3, ops, 0, NULL, 0, NULL);
}

static MlirType memref1(mb *b, MlirType elem, int64_t n) {
  (void)b;
  int64_t shape[1] = {n >= 0 ? n : mlirShapedTypeGetDynamicSize()};
  return mlirMemRefTypeContiguousGet(elem, 1, shape, mlirAttributeGetNull());
}

MlirValue mb_alloca_entry(mb *b, MlirType elem, int64_t n) {
  MlirType t = memref1(b, elem, n);
  int32_t seg[2] = {0, 0};
  MlirNamedAttribute a =
      mb_attr(b, "operandSegmentSizes", mlirDenseI32ArrayGet(b->ctx, 2, seg));
  MlirOperationState st = mlirOperationStateGet(mb_str("memref.alloca"), b->loc);
  mlirOperationStateAddResults(&st, 1, &t);
  mlirOperationStateAddAttributes(&st, 1, &a);
  MlirOperation op = mlirOperationCreate(&st);
  mlirBlockInsertOwnedOperation(b->entry, 0, op);
  return mlirOperationGetResult(op, 0);
}

MlirValue mb_alloc(mb *b, const char *name, MlirType elem, MlirValue size) {
  MlirType t = memref1(b, elem, -1);
  int32_t seg[2] = {1, 0};
  MlirNamedAttribute a =
      mb_attr(b, "operandSegmentSizes", mlirDenseI32ArrayGet(b->ctx, 2, seg));
  MlirValue sz = mb_cast(b, "arith.index_cast", size, b->index);
  return mlirOperationGetResult(mb_op(b, name, 1, &sz, 1, &t, 1, &a), 0);
}

MlirBlock mb_block(mb *b, intptr_t nargs, const MlirType *types) {
  MlirLocation locs[8];
  for (intptr_t i = 0; i < nargs && i < 8; i++)
    locs[i] = b->loc;
  MlirBlock blk = mlirBlockCreate(nargs, types, locs);
  mlirRegionAppendOwnedBlock(b->region, blk);
  return blk;
}

void mb_br(mb *b, MlirBlock dest, intptr_t nargs, const MlirValue *args) {
  MlirOperationState st = mlirOperationStateGet(mb_str("cf.br"), b->loc);
  if (nargs)
    mlirOperationStateAddOperands(&st, nargs, args);
  mlirOperationStateAddSuccessors(&st, 1, &dest);
  mlirBlockAppendOwnedOperation(b->cur, mlirOperationCreate(&st));
}

void mb_cond_br(mb *b, MlirValue c, MlirBlock t, MlirBlock f) {
  MlirOperationState st = mlirOperationStateGet(mb_str("cf.cond_br"), b->loc);
  mlirOperationStateAddOperands(&st, 1, &c);
  MlirBlock succ[2] = {t, f};
  mlirOperationStateAddSuccessors(&st, 2, succ);
  int32_t seg[3] = {1, 0, 0};
  MlirNamedAttribute a =
      mb_attr(b, "operandSegmentSizes", mlirDenseI32ArrayGet(b->ctx, 3, seg));
  mlirOperationStateAddAttributes(&st, 1, &a);
  mlirBlockAppendOwnedOperation(b->cur, mlirOperationCreate(&st));
}
