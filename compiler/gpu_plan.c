/* gpu_plan.c - `tessera compile --emit plan`: what both GPU lowerings
 * decided for each kernel, in words (LESSONS.md 2 and 10: a fast path not
 * taken says so and why). Where each tile lives (registers and their
 * layout, shared memory with its offset, stages, swizzle and padding,
 * global scratch), how each gemm runs (wgmma, mma.sync or the CUDA cores,
 * and why not the faster form) and how each copy into shared memory goes
 * (TMA, a cp.async ring, cp.async, or element by element). Read from the
 * same analyses the lowerings use (gen_gpu.c's plan, gpu_mma.c, gpu_pipe.c);
 * tests/ptx/run.sh checks that each kernel's PTX has wgmma or mma.sync
 * exactly when its plan says so. */
#include "compiler/gen.h"

#include <string.h>

typedef struct plan_ctx {
  const ts_unit *u;
  const ts_kernel_info *k;
  const char *arch;
  ts_gpu_tile *tiles;
  int nt;
  const uint8_t *layout;
  ts_tma tma[TS_TMA_MAX];
  int ntma;
  ts_buf *out;
} plan_ctx;

static void at(plan_ctx *c, const ts_node *n) {
  uint32_t line, col;
  ts_source_position(&c->u->src, n->span.lo, &line, &col);
  ts_buf_printf(c->out, "%u:%u", line, col);
}

static const char *dtype_name(const ts_node *tile) {
  return tile && tile->type ? ts_dtype_name(tile->type->dtype) : "?";
}

static void gemm_line(plan_ctx *c, const ts_node *st, const ts_node *pipe, bool per_thread) {
  const ts_node *call = st->kids[0];
  ts_buf_puts(c->out, "  gemm ");
  at(c, call);
  ts_buf_printf(c->out, " (%s): ", dtype_name(call->kids[0]));
  if (per_thread) {
    ts_buf_puts(c->out, "CUDA cores, each thread its own (a gemm inside a parallel statement)\n");
    return;
  }
  int64_t mnk[3] = {0, 0, 0};
  ts_gemm_kind kind;
  const char *why =
      ts_gemm_form(c->k, c->tiles, c->nt, c->layout, ts_arch_wgmma(c->arch), call, mnk, &kind);
  bool tf32 = call->kids[0]->type->dtype == TS_DTYPE_F32;
  int bits = ts_dtype_bits(call->kids[0]->type->dtype);
  if (kind == TS_GEMM_WGMMA) {
    int ns = ts_wgmma_nsplit(c->k);
    ts_buf_printf(c->out, "wgmma m64n%lldk%d, %lld x %lld x %lld%s%s\n",
                  (long long)(mnk[1] / ns), tf32 ? 8 : bits == 8 ? 32 : 16, (long long)mnk[0],
                  (long long)mnk[1], (long long)mnk[2],
                  ns > 1 ? ", the warpgroups splitting N" : "",
                  pipe && ts_pipe_async_gemm(c->k, pipe, st, c->tiles, c->nt)
                      ? ", in flight into the loop's next iteration" : "");
  } else if (kind == TS_GEMM_MMA) {
    ts_buf_printf(c->out, "mma.sync m16n8k%d, %lld x %lld x %lld (not wgmma: %s)\n",
                  tf32 ? 8 : bits == 8 ? 32 : 16, (long long)mnk[0], (long long)mnk[1],
                  (long long)mnk[2], why);
  } else {
    ts_buf_printf(c->out, "CUDA cores (not tensor cores: %s)\n", why);
  }
}

static void copy_line(plan_ctx *c, const ts_node *st, const ts_node *pipe) {
  const ts_node *call = st->kids[0], *dst = call->kids[1];
  const ts_gpu_tile *t = dst->kind == TS_NODE_NAME && dst->sym && dst->sym->kind == TS_SYM_TILE
                             ? ts_gpu_tile_of(c->tiles, c->nt, dst->sym)
                             : NULL;
  if (!t || t->home != TS_TILE_SMEM)
    return; /* (copies into registers and scratch go element by element) */
  ts_buf_puts(c->out, "  copy ");
  at(c, call);
  ts_buf_printf(c->out, " into %.*s: ", (int)dst->sym->name.len, dst->sym->name.ptr);
  const ts_type *ty = dst->sym->type;
  int64_t cols = ty->rank ? ty->dims[ty->rank - 1].c : 1;
  int chunk = ts_pipe_chunk_bytes(cols, ts_dtype_bits(ty->dtype) / 8);
  int64_t stride;
  for (int i = 0; pipe && i < c->ntma; i++)
    if (c->tma[i].copy == call) {
      ts_buf_printf(c->out, "TMA (cp.async.bulk.tensor), boxes of %lld x %lld, a ring of %d "
                    "stages with mbarriers (cp.async where the runtime built no tensor map)\n",
                    (long long)c->tma[i].rows, (long long)c->tma[i].box_cols, t->stages);
      return;
    }
  if (pipe && ts_pipe_buffers(c->k, pipe, st, c->tiles, c->nt, &stride)) {
    ts_buf_printf(c->out, "a cp.async ring of %d stages, %d-byte chunks\n", t->stages, chunk);
  } else if (ts_copy_async_ok(call, c->tiles, c->nt) && chunk) {
    ts_buf_printf(c->out, "cp.async, %d-byte chunks, waited for at once\n", chunk);
  } else {
    ts_buf_printf(c->out, "element by element%s\n",
                  ts_copy_packed(call) ? " (decoded as copied)" : "");
  }
}

/* The gemms and the copies into shared memory under `n`, in order; `pipe`
 * the innermost pipelined loop, per_thread inside a parallel statement. */
static void statements(plan_ctx *c, const ts_node *n, const ts_node *pipe, bool per_thread) {
  if (!n)
    return;
  if (n->kind == TS_NODE_EXPR_STMT && n->kid_count && n->kids[0]->kind == TS_NODE_CALL) {
    const ts_node *call = n->kids[0];
    if (call->builtin == TS_BUILTIN_GEMM && call->kid_count >= 3)
      gemm_line(c, n, pipe, per_thread);
    else if (call->builtin == TS_BUILTIN_COPY && call->kid_count >= 2 && !per_thread)
      copy_line(c, n, pipe);
  }
  if (n->kind == TS_NODE_PIPELINED)
    pipe = n;
  per_thread = per_thread || n->kind == TS_NODE_PARALLEL;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i))
      statements(c, n->kids[i], pipe, per_thread);
}

static const char *const layouts[] = {"", ", mma.sync's accumulator layout",
                                      ", wgmma's accumulator layout", ", wgmma's rows"};

static void tile_line(plan_ctx *c, const ts_gpu_tile *t, int i) {
  const ts_symbol *s = t->decl->sym;
  ts_buf_printf(c->out, "  tile %.*s ", (int)s->name.len, s->name.ptr);
  ts_type_print(c->u, s->type, c->out);
  int64_t bytes = ts_gpu_buffer_bytes(t);
  switch (t->home) {
  case TS_TILE_REGS:
    ts_buf_printf(c->out, ": registers, %lld a thread%s\n", (long long)t->per_thread,
                  layouts[c->layout[i] & 3]);
    break;
  case TS_TILE_SMEM:
    ts_buf_printf(c->out, ": shared memory at %lld, %lld bytes", (long long)t->off,
                  (long long)bytes);
    if (t->stages > 1) {
      ts_buf_printf(c->out, " x %d stages (the ring of the pipelined loop at ", t->stages);
      at(c, t->pipe);
      ts_buf_putc(c->out, ')');
    }
    if (t->swz)
      ts_buf_printf(c->out, ", %d-byte swizzle", t->swz);
    if (t->pad)
      ts_buf_printf(c->out, ", rows padded by %d elements", t->pad);
    ts_buf_putc(c->out, '\n');
    break;
  case TS_TILE_SCRATCH:
    if (bytes >= 0)
      ts_buf_printf(c->out, ": global scratch, %lld bytes a block\n", (long long)bytes);
    else
      ts_buf_puts(c->out, ": global scratch (its shape is known at launch)\n");
    break;
  }
}

ts_status ts_gpu_plan_report(const ts_unit *u, const char *only, const char *arch, ts_buf *out) {
  arch = arch ? arch : "sm_90a";
  ts_gpu_tile tiles[TS_GPU_MAX_TILES];
  uint8_t layout[TS_GPU_MAX_TILES];
  for (uint32_t i = 0; i < u->kernel_count; i++) {
    const ts_kernel_info *k = &u->kernels[i];
    if (only && !ts_str_eq_cstr(k->name, only))
      continue;
    int64_t total;
    plan_ctx c = {.u = u, .k = k, .arch = arch, .tiles = tiles, .layout = layout, .out = out};
    c.nt = ts_gpu_tile_plan(k, arch, tiles, &total);
    ts_mma_layouts(k, tiles, c.nt, ts_arch_wgmma(arch), layout);
    c.ntma = ts_pipe_tma(k, arch, c.tma);
    int ns = ts_wgmma_nsplit(k);
    ts_buf_printf(out, "kernel %.*s on %s: %lld threads%s, %lld bytes of shared memory a block "
                  "(at most %lld)\n", (int)k->name.len, k->name.ptr, arch,
                  (long long)k->threads,
                  ns > 1 && ts_arch_wgmma(arch) ? " (warpgroups splitting wgmma's N)" : "",
                  (long long)ts_gen_gpu_smem_bytes(k, arch), (long long)ts_arch_smem_max(arch));
    for (int t = 0; t < c.nt; t++)
      tile_line(&c, &tiles[t], t);
    statements(&c, k->node->kids[4], NULL, false);
  }
  return out->failed ? ts_status_nomem() : NULL;
}
