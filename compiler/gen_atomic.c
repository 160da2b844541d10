/* gen_atomic.c - atomic_add and atomic_max on one element of a tensor or a
 * shared tile: t[i] = t[i] + v (max(t[i], v)) as one step, returning the
 * old value (docs/language.md). f32, i32 and i64 elements are
 * memref.atomic_rmw; bf16 and f16 a compare-and-swap loop on the 16-bit
 * storage (memref.generic_atomic_rmw) computing in f32. The same code for
 * the CPU and both forms of the GPU kernel; on the GPU an atomic outside
 * `parallel` is thread 0's (gen.c gen_atomic). */
#include "compiler/gen_internal.h"

/* A 16-bit float atomic (bf16, f16): memref.generic_atomic_rmw, a
 * compare-and-swap loop on the element's bits (16-bit CAS on the CPU and
 * GPU alike): the element and `val` added or maxed in f32, the result
 * rounded as a store rounds it. Out of range (`ok` false) element 0 is
 * swapped with itself. Returns the old value in f32. */
static MlirValue atomic_narrow(gen *g, ts_node *n, view *v, MlirValue idx, MlirValue ok) {
  mb *b = &g->b;
  MlirValue val = gen_expr_as(g, n->kids[1], b->f32);
  MlirType st = gen_storage_type(g, v->dt);
  MlirRegion r = mlirRegionCreate();
  MlirBlock body = mlirBlockCreate(1, &st, &b->loc);
  mlirRegionAppendOwnedBlock(r, body);
  MlirBlock saved = b->cur;
  b->cur = body;
  MlirValue cur = mlirBlockGetArgument(body, 0);
  MlirValue x = gen_from_storage(g, cur, v->dt);
  MlirValue y = mb_bin(b, n->builtin == TS_BUILTIN_ATOMIC_ADD ? "arith.addf" : "arith.maximumf",
                       x, val);
  MlirValue nv = mb_select(b, ok, gen_to_storage(g, y, v->dt), cur);
  mb_op(b, "memref.atomic_yield", 1, &nv, 0, NULL, 0, NULL);
  b->cur = saved;
  MlirOperationState os = mlirOperationStateGet(mb_str("memref.generic_atomic_rmw"), b->loc);
  MlirValue ops[2] = {v->mem, idx};
  mlirOperationStateAddOperands(&os, 2, ops);
  mlirOperationStateAddResults(&os, 1, &st);
  mlirOperationStateAddOwnedRegions(&os, 1, &r);
  MlirOperation op = mlirOperationCreate(&os);
  mlirBlockAppendOwnedOperation(b->cur, op);
  return gen_from_storage(g, mlirOperationGetResult(op, 0), v->dt);
}

/* atomic_add / atomic_max on one element: x = x + v (max(x, v)) as one
 * step, returning the old x. Out of range: nothing changes and the result
 * is 0 (docs/language.md). */
MlirValue gen_atomic_rmw(gen *g, ts_node *n) {
  mb *b = &g->b;
  ts_node *ref = n->kids[0];
  view pool[8], v;
  int np = 0;
  if (!gen_view_of(g, ref, &v, pool, &np))
    return gen_i64(g, 0);
  ts_dtype dt = v.dt;
  bool narrow = dt == TS_DTYPE_BF16 || dt == TS_DTYPE_F16;
  if (dt != TS_DTYPE_F32 && dt != TS_DTYPE_I32 && dt != TS_DTYPE_I64 && !narrow) {
    gen_unsupported(g, n, "an atomic on this element type");
    return gen_i64(g, 0);
  }
  MlirValue lin, ok;
  gen_view_elem(g, &v, NULL, &lin, &ok);
  MlirValue idx = mb_cast(b, "arith.index_cast", mb_select(b, ok, lin, gen_i64(g, 0)), b->index);
  MlirValue r;
  if (narrow) {
    r = atomic_narrow(g, n, &v, idx, ok);
  } else {
    MlirValue val = gen_expr_as(g, n->kids[1], gen_storage_type(g, dt));
    bool f = dt == TS_DTYPE_F32;
    /* arith::AtomicRMWKind in MLIR 22: addf 0, addi 1, maximumf 4, maxs 6
     * (an integer attribute; tests/numerics/test_gpu.c checks atomic_max) */
    int64_t kind = n->builtin == TS_BUILTIN_ATOMIC_ADD ? (f ? 0 : 1) : (f ? 4 : 6);
    MlirNamedAttribute a = mb_attr(b, "kind", mlirIntegerAttrGet(b->i64, kind));
    MlirType st = gen_storage_type(g, dt);
    /* Out of range, element 0 gets what leaves it as it is: -0.0 or 0 added
     * (x + -0.0 is x, -0.0 included), or its own earlier value maxed (max
     * only grows it). */
    MlirValue keep;
    if (n->builtin == TS_BUILTIN_ATOMIC_ADD)
      keep = f ? mb_const_f32(b, -0.0) : mb_const_int(b, st, 0);
    else
      keep = mb_load(b, v.mem, gen_i64(g, 0));
    MlirValue ops[3] = {mb_select(b, ok, val, keep), v.mem, idx};
    r = mlirOperationGetResult(mb_op(b, "memref.atomic_rmw", 3, ops, 1, &st, 1, &a), 0);
  }
  MlirType t = mlirValueGetType(r);
  return mb_select(b, ok, r, gen_is_float(g, t) ? mb_const_f32(b, 0.0) : mb_const_int(b, t, 0));
}
