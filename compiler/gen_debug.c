/* gen_debug.c - `print` and `assert` in kernels.
 *
 * On the CPU (and in the simulator's CPU form of a GPU kernel) both become
 * calls into the runtime (runtime/rtcall.c): the call's first argument is
 * its offset in the unit's text, which names it in any process that
 * checked the same text (compiled code is cached across processes:
 * program.c), and the runtime finds the call in the launching kernel's unit
 * (ts_debug_call_at) and reads the format, the value types and the message
 * from it. On the GPU, `print` is gpu.printf (vprintf
 * in PTX) and a failed `assert` prints its message and traps, which ends
 * the launch with an error. The format is the same C printf format on both
 * (ts_print_format), so a kernel prints the same text everywhere. */
#include "compiler/gen_internal.h"

#include <stdint.h>
#include <string.h>

#define PRINT_MAX_VALUES 16

/* The escapes a .tile string may hold, for the text printed. */
static size_t unescape(const char *s, size_t n, size_t i, char *c) {
  if (s[i] != '\\' || i + 1 >= n) {
    *c = s[i];
    return 1;
  }
  switch (s[i + 1]) {
  case 'n': *c = '\n'; break;
  case 't': *c = '\t'; break;
  case '0': *c = '\0'; break;
  default: *c = s[i + 1]; break;
  }
  return 2;
}

void ts_print_format(const ts_node *call, ts_buf *out) {
  ts_str f = call->kids[0]->name;
  uint32_t v = 1;
  for (size_t i = 0; i < f.len;) {
    if (f.ptr[i] == '{' && i + 1 < f.len && f.ptr[i + 1] == '}' &&
        v < call->kid_count) {
      const ts_type *t = call->kids[v++]->type;
      ts_buf_puts(out, t && ts_dtype_is_float(t->dtype) ? "%.9g" : "%lld");
      i += 2;
      continue;
    }
    char c;
    i += unescape(f.ptr, f.len, i, &c);
    if (c == '%')
      ts_buf_puts(out, "%%");
    else if (c)
      ts_buf_putc(out, c);
  }
  ts_buf_putc(out, '\n');
}

void ts_assert_message(const ts_node *call, ts_buf *out) {
  if (call->kid_count < 2) {
    ts_buf_puts(out, "assertion failed");
    return;
  }
  ts_str m = call->kids[1]->name;
  for (size_t i = 0; i < m.len;) {
    char c;
    i += unescape(m.ptr, m.len, i, &c);
    if (c)
      ts_buf_putc(out, c);
  }
}

void ts_assert_format(const ts_unit *u, const ts_node *call, ts_buf *out) {
  uint32_t line, col;
  ts_source_position(&u->src, call->span.lo, &line, &col);
  ts_buf m;
  ts_buf_init(&m, ts_allocator_system());
  ts_buf_printf(&m, "tessera: %s:%u:%u: assertion failed: ",
                ts_source_name(&u->src, call->span.lo), line, col);
  ts_assert_message(call, &m);
  for (size_t i = 0; !m.failed && i < m.len; i++) {
    if (m.ptr[i] == '%')
      ts_buf_putc(out, '%');
    ts_buf_putc(out, m.ptr[i]);
  }
  if (m.failed)
    out->failed = true;
  ts_buf_deinit(&m);
  ts_buf_puts(out, " (block (%lld, %lld, %lld), thread %lld)\n");
}

static MlirValue node_id(gen *g, const ts_node *call) { return gen_i64(g, call->span.lo); }

static const ts_node *call_at(const ts_node *n, uint32_t lo) {
  if (!n) /* (a parent's span need not cover its kids': a kernel's is its name) */
    return NULL;
  if (n->kind == TS_NODE_CALL && n->span.lo == lo &&
      (n->builtin == TS_BUILTIN_PRINT || n->builtin == TS_BUILTIN_ASSERT))
    return n;
  for (uint32_t i = 0; i < n->kid_count; i++) {
    const ts_node *f = call_at(n->kids[i], lo);
    if (f)
      return f;
  }
  return NULL;
}

const ts_node *ts_debug_call_at(const ts_unit *u, uint32_t lo) {
  return u ? call_at(u->root, lo) : NULL;
}

/* Calls a runtime function of n i64 arguments, declaring it in the module
 * the first time. */
static void call_rt(gen *g, const char *fn, intptr_t n, MlirValue *args,
                    bool *declared) {
  mb *b = &g->b;
  if (!*declared) {
    MlirType i64s[PRINT_MAX_VALUES + 1];
    for (intptr_t i = 0; i < n; i++)
      i64s[i] = b->i64;
    gen_declare(g, fn, n, i64s);
    *declared = true;
  }
  MlirNamedAttribute a =
      mb_attr(b, "callee", mlirFlatSymbolRefAttrGet(b->ctx, mb_str(fn)));
  mb_op(b, "func.call", n, args, 0, NULL, 1, &a);
}

/* A value as the i64 the runtime reads: floats as f64 bits, integers
 * sign-extended, bool as 0 or 1; or as what gpu.printf takes (f64, i64). */
static MlirValue print_value(gen *g, ts_node *e, bool bits) {
  mb *b = &g->b;
  const ts_type *t = e->type;
  if (t && ts_dtype_is_float(t->dtype)) {
    MlirValue d = mb_cast(b, "arith.extf", gen_expr_as(g, e, b->f32), b->f64);
    return bits ? mb_cast(b, "arith.bitcast", d, b->i64) : d;
  }
  return gen_expr_as(g, e, b->i64);
}

/* On the GPU a statement outside `parallel` runs on every thread; a print
 * there is done once per block, by thread 0 (as a store would be). */
static bool once_per_block(gen *g) {
  return g->gpu && !g->in_fn && g->par == 0 && !g->single;
}

/* The block and thread indices a failed assert reports (-1 where unknown:
 * in a function, or the thread on the CPU form). */
static void where(gen *g, MlirValue out[4]) {
  for (int i = 0; i < 3; i++)
    out[i] = g->in_fn ? gen_i64(g, -1) : g->block_id[i];
  out[3] = (g->gpu || g->tid.ptr) && !g->in_fn ? g->tid : gen_i64(g, -1);
}

static void gpu_printf(gen *g, const char *fmt, intptr_t n, MlirValue *args) {
  mb *b = &g->b;
  MlirNamedAttribute a =
      mb_attr(b, "format", mlirStringAttrGet(b->ctx, mb_str(fmt)));
  mb_op(b, "gpu.printf", n, args, 0, NULL, 1, &a);
}

void gen_print(gen *g, ts_node *call) {
  mb *b = &g->b;
  uint32_t nv = call->kid_count - 1;
  if (nv > PRINT_MAX_VALUES) {
    gen_unsupported(g, call, "'print' with more than 16 values");
    return;
  }
  MlirBlock join = {0};
  if (once_per_block(g))
    join = gen_if_begin(g, mb_cmpi(b, CMPI_EQ, g->tid, gen_i64(g, 0)));
  MlirValue args[PRINT_MAX_VALUES + 1];
  if (g->gpu && !g->emu) { /* (in a kernel with wgmma, ptxas serializes it) */
    ts_buf f;
    ts_buf_init(&f, ts_allocator_system());
    ts_print_format(call, &f);
    for (uint32_t i = 0; i < nv; i++)
      args[i] = print_value(g, call->kids[1 + i], false);
    if (f.failed)
      gen_unsupported(g, call, "a 'print' this long");
    else
      gpu_printf(g, f.ptr, nv, args);
    ts_buf_deinit(&f);
  } else {
    args[0] = node_id(g, call);
    for (uint32_t i = 0; i < PRINT_MAX_VALUES; i++)
      args[1 + i] =
          i < nv ? print_value(g, call->kids[1 + i], true) : gen_i64(g, 0);
    call_rt(g, "ts_rt_print", PRINT_MAX_VALUES + 1, args, &g->declared_print);
  }
  if (join.ptr)
    gen_if_end(g, join);
}

void gen_assert(gen *g, ts_node *call) {
  mb *b = &g->b;
  MlirValue ok = gen_expr_as(g, call->kids[0], b->i1);
  MlirValue failed = mb_bin(b, "arith.xori", ok, mb_const_int(b, b->i1, 1));
  MlirBlock join = gen_if_begin(g, failed);
  if (g->gpu && !g->emu && g->uses_wgmma) {
    /* a call anywhere in the kernel would make ptxas serialize its wgmma
     * instructions: a failed assert only traps (the simulator and the CPU
     * still report where) */
    mb_op(b, "llvm.intr.trap", 0, NULL, 0, NULL, 0, NULL);
  } else if (g->gpu && !g->emu) {
    ts_buf f;
    ts_buf_init(&f, ts_allocator_system());
    ts_assert_format(g->u, call, &f);
    MlirValue args[4];
    where(g, args);
    if (f.failed)
      gen_unsupported(g, call, "an 'assert' message this long");
    else
      gpu_printf(g, f.ptr, 4, args);
    ts_buf_deinit(&f);
    mb_op(b, "llvm.intr.trap", 0, NULL, 0, NULL, 0, NULL);
  } else {
    uint32_t line, col;
    ts_source_position(&g->u->src, call->span.lo, &line, &col);
    MlirValue args[7] = {node_id(g, call), gen_i64(g, line), gen_i64(g, col)};
    where(g, args + 3);
    call_rt(g, "ts_rt_assert", 7, args, &g->declared_assert);
  }
  gen_if_end(g, join);
}
