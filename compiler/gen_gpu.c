/* gen_gpu.c - what the GPU target does differently from the CPU: where
 * tiles live, barriers, and the tile ops whose work is split over a
 * block's threads in a way other than one element per thread (reductions
 * and gemm). The kernel function itself is built in gen.c.
 *
 * The execution model (docs/abi.md, "The GPU kernel"): every thread of a
 * block runs the block's scalar statements (their values are the same on
 * every thread); a tile op, a `parallel` statement, a reduction or a gemm
 * splits its elements over the threads and ends with a barrier; a scalar
 * store or atomic outside `parallel` is done by thread 0 (an atomic's old
 * value reaches the other threads through 8 bytes at the start of shared
 * memory). Tiles are block-wide: constant-shape tiles in shared memory
 * (after those 16 bytes; `shared` tiles first,
 * then `frag` tiles while the block's total stays within what the
 * architecture lets a block opt into),
 * the rest in a per-block slice of a global scratch buffer the runtime
 * passes. `frag` tiles owned element by element live in registers. */
#include "compiler/gen_internal.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

MlirOperation gen_call(gen *g, const char *fn, intptr_t n, const MlirValue *args,
                       intptr_t nres, const MlirType *res) {
  mb *b = &g->b;
  MlirNamedAttribute a =
      mb_attr(b, "callee", mlirFlatSymbolRefAttrGet(b->ctx, mb_str(fn)));
  return mb_op(b, "func.call", n, args, nres, res, 1, &a);
}

void gen_barrier(gen *g) {
  if (g->emu) {
    gen_call(g, "ts_gpusim_barrier", 1, &g->emu_ctx, 0, NULL);
    return;
  }
  if (g->fence_next) /* the wgmma after reads what came before */
    gen_ptx(g, "fence.proxy.async.shared::cta;");
  MlirOperation op = mb_op(&g->b, "gpu.barrier", 0, NULL, 0, NULL, 0, NULL);
  if (g->fence_next)
    g->fenced = op;
}

/* gpu.thread_id / gpu.block_id / gpu.grid_dim of dimension x, y or z, as
 * an i64. */
MlirValue gen_gpu_index(gen *g, const char *op, int dim) {
  mb *b = &g->b;
  if (g->emu)
    return !strcmp(op, "gpu.thread_id") ? g->emu_tid
           : !strcmp(op, "gpu.block_id") ? g->emu_block[dim]
                                         : g->emu_grid[dim];
  static const char *const dims[3] = {"#gpu<dim x>", "#gpu<dim y>",
                                      "#gpu<dim z>"};
  MlirNamedAttribute a = mb_attr(
      b, "dimension", mlirAttributeParseGet(b->ctx, mb_str(dims[dim])));
  MlirValue i =
      mlirOperationGetResult(mb_op(b, op, 0, NULL, 1, &b->index, 1, &a), 0);
  return mb_cast(b, "arith.index_cast", i, b->i64);
}

/* ---- where tiles live ---------------------------------------------------- */


/* The tile declarations of a kernel body in source order. */
static void collect(ts_node *n, ts_node **out, int *count) {
  if (!n)
    return;
  if (n->kind == TS_NODE_TILE) {
    if (n->sym && n->sym->type && *count < TS_GPU_MAX_TILES)
      out[(*count)++] = n;
    return;
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if ((n->kind != TS_NODE_PARALLEL || i == 2) && !ts_if_dead_kid(n, i))
      collect(n->kids[i], out, count);
}

static int64_t const_bytes(const ts_type *t) {
  int64_t count = 1;
  for (uint32_t i = 0; i < t->rank; i++) {
    if (t->dims[i].term_count)
      return -1;
    if (__builtin_mul_overflow(count, t->dims[i].c, &count))
      return INT64_MAX / 8;
  }
  return count > INT64_MAX / 8 ? INT64_MAX / 8
                               : count * ts_dtype_bits(t->dtype) / 8;
}

static int64_t align16(int64_t x) { return (x + 15) & ~(int64_t)15; }

bool gen_gpu_tile_in_smem(const ts_type *t, bool shared, int64_t limit, int64_t *smem) {
  int64_t bytes = const_bytes(t);
  if (bytes < 0)
    return false;
  /* sema has kept the shared tiles within the device's limit */
  if (!shared && *smem + align16(bytes) > limit)
    return false;
  *smem += align16(bytes);
  return true;
}

/* ---- frag tiles in registers -------------------------------------------- */

int ts_if_taken(const ts_node *n) {
  if (n->kind != TS_NODE_IF || n->kids[0]->cval.kind != TS_CONST_BOOL)
    return 0;
  return n->kids[0]->cval.b ? 1 : 2;
}

bool ts_if_dead_kid(const ts_node *n, uint32_t i) {
  int t = ts_if_taken(n);
  return t && i == (uint32_t)(3 - t);
}

bool ts_node_mentions(const ts_node *n, const ts_symbol *s) {
  if (!n)
    return false;
  if (n->kind == TS_NODE_NAME && n->sym == s)
    return true;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && ts_node_mentions(n->kids[i], s))
      return true;
  return false;
}

/* The symbol a written place names (`t`, `t[...]`); NULL for anything
 * else (then every symbol it mentions counts as written). */
static const ts_symbol *written_base(const ts_node *d) {
  const ts_node *b = d && d->kind == TS_NODE_INDEX ? d->kids[0] : d;
  return b && b->kind == TS_NODE_NAME ? b->sym : NULL;
}

bool ts_node_writes(const ts_node *n, const ts_symbol *s) {
  if (!n)
    return false;
  const ts_node *d = NULL;
  if (n->kind == TS_NODE_ASSIGN)
    d = n->kids[0];
  else if (n->kind == TS_NODE_CALL)
    switch (n->builtin) {
    case TS_BUILTIN_COPY:
    case TS_BUILTIN_REDUCE_MAX:
    case TS_BUILTIN_REDUCE_SUM:
    case TS_BUILTIN_REDUCE_ABSMAX: d = n->kids[1]; break;
    case TS_BUILTIN_FILL:
    case TS_BUILTIN_CLEAR:
    case TS_BUILTIN_ATOMIC_ADD:
    case TS_BUILTIN_ATOMIC_MAX: d = n->kids[0]; break;
    case TS_BUILTIN_GEMM: d = n->kids[2]; break;
    default: break;
    }
  const ts_symbol *w = written_base(d);
  if (d && (w ? w == s : ts_node_mentions(d, s)))
    return true;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && ts_node_writes(n->kids[i], s))
      return true;
  return false;
}

int ts_node_mention_count(const ts_node *n, const ts_symbol *s) {
  if (!n)
    return 0;
  int c = n->kind == TS_NODE_NAME && n->sym == s;
  for (uint32_t i = 0; i < n->kid_count; i++)
    c += ts_if_dead_kid(n, i) ? 0 : ts_node_mention_count(n->kids[i], s);
  return c;
}

static bool whole(const ts_node *n, const ts_symbol *s) {
  return n && n->kind == TS_NODE_NAME && n->sym == s;
}

static bool same_shape(const ts_type *a, const ts_type *b) {
  if (!a || !b || a->rank != b->rank)
    return false;
  for (uint32_t i = 0; i < a->rank; i++)
    if (!ts_extent_equal(&a->dims[i], &b->dims[i]))
      return false;
  return true;
}

/* Inside a top-level `parallel` with variables `vars`: every mention of
 * `s` is `s[v0, .., v(n - 1)]`, the first `nv` of them (the owner's element
 * when they run over exactly the shape of `s`; a vector's row with nv 1 in
 * a `parallel (i, j)`); with `read_only`, none is written (a row written by
 * every column's thread). */
static bool owner_in_parallel(const ts_node *n, const ts_symbol *s, const ts_node *vars,
                              uint32_t nv, bool read_only) {
  if (!n)
    return true;
  if (read_only && n->kind == TS_NODE_ASSIGN && ts_node_mentions(n->kids[0], s))
    return false;
  if (n->kind == TS_NODE_INDEX && whole(n->kids[0], s)) {
    if (n->kid_count != nv + 1)
      return false;
    for (uint32_t d = 0; d < nv; d++)
      if (n->kids[d + 1]->kind != TS_NODE_NAME ||
          n->kids[d + 1]->sym != vars->kids[d]->sym)
        return false;
    return true;
  }
  if (n->kind == TS_NODE_NAME)
    return n->sym != s;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && !owner_in_parallel(n->kids[i], s, vars, nv, read_only))
      return false;
  return true;
}

/* Whether every use of `s` in the statements under `n` (block level) is an
 * owner use; with `rows`, also reduce_*(s, d, dim=1) of a rank-2 `s` into
 * another tile (which wgmma's layout does within a quad of lanes), and for
 * a vector `s` [M] reads s[i] in a `parallel (i, j)` with i over M, and
 * being such a reduction's result (gen.h TS_ACC_ROWS). */
static bool owner_only(const ts_node *n, const ts_symbol *s, bool rows) {
  if (!n)
    return true;
  switch (n->kind) {
  case TS_NODE_BLOCK:
    for (uint32_t i = 0; i < n->kid_count; i++)
      if (!owner_only(n->kids[i], s, rows))
        return false;
    return true;
  case TS_NODE_TILE: return true;
  case TS_NODE_FOR:
    return !ts_node_mentions(n->kids[0], s) && !ts_node_mentions(n->kids[1], s) &&
           owner_only(n->kids[2], s, rows);
  case TS_NODE_PIPELINED:
    return !ts_node_mentions(n->kids[0], s) && !ts_node_mentions(n->kids[1], s) &&
           !ts_node_mentions(n->kids[2], s) && owner_only(n->kids[3], s, rows);
  case TS_NODE_IF:
    if (ts_if_taken(n)) /* folded: the branch generated */
      return owner_only(n->kids[ts_if_taken(n)], s, rows);
    return !ts_node_mentions(n->kids[0], s) && owner_only(n->kids[1], s, rows) &&
           owner_only(n->kids[2], s, rows);
  case TS_NODE_PARALLEL: {
    const ts_node *vars = n->kids[0];
    if (!ts_node_mentions(n->kids[2], s))
      return !ts_node_mentions(n->kids[1], s);
    if (ts_node_mentions(n->kids[1], s))
      return false;
    if (rows && s->type->rank == 1 && vars->kid_count == 2) {
      const ts_symbol *v = vars->kids[0]->sym;
      return v && v->has_range && ts_extent_equal(&v->range, &s->type->dims[0]) &&
             owner_in_parallel(n->kids[2], s, vars, 1, true);
    }
    if (vars->kid_count != s->type->rank)
      return false;
    for (uint32_t d = 0; d < vars->kid_count; d++) {
      const ts_symbol *v = vars->kids[d]->sym;
      if (!v || !v->has_range || !ts_extent_equal(&v->range, &s->type->dims[d]))
        return false;
    }
    return owner_in_parallel(n->kids[2], s, vars, vars->kid_count, false);
  }
  case TS_NODE_EXPR_STMT: {
    const ts_node *c = n->kids[0];
    if (!ts_node_mentions(c, s))
      return true;
    switch (c->builtin) {
    case TS_BUILTIN_COPY: /* the loop runs over the destination's shape */
      if (ts_copy_packed(c) && (ts_node_mentions(c->kids[0], s) ||
                                (ts_call_named(c, "scale") &&
                                 ts_node_mentions(ts_call_named(c, "scale"), s))))
        return false; /* element 2j + h reads byte j, scale (2j + h) / B: others' */
      if (whole(c->kids[1], s))
        return !ts_node_mentions(c->kids[0], s) ||
               (whole(c->kids[0], s));
      return whole(c->kids[0], s) && !ts_node_mentions(c->kids[1], s) &&
             same_shape(c->kids[1]->type, s->type);
    case TS_BUILTIN_FILL:
    case TS_BUILTIN_CLEAR:
      return whole(c->kids[0], s) &&
             (c->kid_count < 2 || !ts_node_mentions(c->kids[1], s));
    case TS_BUILTIN_GEMM: /* each thread computes its elements of c */
      return whole(c->kids[2], s) && !ts_node_mentions(c->kids[0], s) &&
             !ts_node_mentions(c->kids[1], s);
    case TS_BUILTIN_REDUCE_MAX:
    case TS_BUILTIN_REDUCE_SUM:
    case TS_BUILTIN_REDUCE_ABSMAX: {
      const ts_node *d = ts_call_named(c, "dim");
      if (!rows || !d || d->cval.kind != TS_CONST_INT || d->cval.i != 1)
        return false;
      if (s->type->rank == 1) /* into a vector, from a tile in wgmma's layout */
        return whole(c->kids[1], s) && !ts_node_mentions(c->kids[0], s);
      return s->type->rank == 2 && whole(c->kids[0], s) && !ts_node_mentions(c->kids[1], s);
    }
    default: return false;
    }
  }
  default: return !ts_node_mentions(n, s);
  }
}

static bool in_registers(const ts_kernel_info *k, const ts_node *tile, int64_t limit,
                         int64_t *per_thread, bool rows) {
  const ts_type *t = tile->sym->type;
  int64_t count = const_bytes(t);
  if (t->scope != TS_SCOPE_FRAG || count < 0)
    return false;
  count = count * 8 / ts_dtype_bits(t->dtype);
  int64_t per = (count + k->threads - 1) / k->threads;
  if (per > limit || !owner_only(k->node->kids[4], tile->sym, rows))
    return false;
  *per_thread = per < 1 ? 1 : per;
  return true;
}

static bool in_regs(const ts_gpu_tile *plan, int nt, const ts_node *t) {
  if (t && t->kind == TS_NODE_INDEX)
    t = t->kids[0];
  const ts_gpu_tile *p = t && t->kind == TS_NODE_NAME ? ts_gpu_tile_of(plan, nt, t->sym) : NULL;
  return p && p->home == TS_TILE_REGS;
}

bool ts_stmt_private(const ts_node *n, const ts_gpu_tile *plan, int nt) {
  if (!n)
    return true;
  if (n->kind == TS_NODE_ASSIGN && n->kids[0]->kind != TS_NODE_NAME &&
      !in_regs(plan, nt, n->kids[0]))
    return false; /* an element of a tensor or of a tile in memory */
  if (n->kind == TS_NODE_ASSIGN && n->kids[0]->kind == TS_NODE_NAME && n->kids[0]->sym &&
      n->kids[0]->sym->kind == TS_SYM_TILE && !in_regs(plan, nt, n->kids[0]))
    return false;
  if (n->kind == TS_NODE_CALL) {
    switch (n->builtin) {
    case TS_BUILTIN_COPY: if (!in_regs(plan, nt, n->kids[1])) return false; break;
    case TS_BUILTIN_FILL:
    case TS_BUILTIN_CLEAR: if (!in_regs(plan, nt, n->kids[0])) return false; break;
    case TS_BUILTIN_GEMM: if (!in_regs(plan, nt, n->kids[2])) return false; break;
    case TS_BUILTIN_REDUCE_MAX:
    case TS_BUILTIN_REDUCE_SUM:
    case TS_BUILTIN_REDUCE_ABSMAX: if (!in_regs(plan, nt, n->kids[1])) return false; break;
    case TS_BUILTIN_BARRIER:
    case TS_BUILTIN_ATOMIC_ADD:
    case TS_BUILTIN_ATOMIC_MAX: return false;
    default: break;
    }
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (!ts_if_dead_kid(n, i) && !ts_stmt_private(n->kids[i], plan, nt))
      return false;
  return true;
}

bool ts_expr_pure(const ts_node *e) {
  if (!e)
    return true;
  if ((e->kind == TS_NODE_NAME && e->sym &&
       (e->sym->kind == TS_SYM_TILE || e->sym->kind == TS_SYM_TENSOR)) ||
      (e->kind == TS_NODE_CALL && (e->builtin == TS_BUILTIN_ATOMIC_ADD ||
                                   e->builtin == TS_BUILTIN_ATOMIC_MAX)))
    return false;
  for (uint32_t i = 0; i < e->kid_count; i++)
    if (!ts_expr_pure(e->kids[i]))
      return false;
  return true;
}

bool gen_gpu_private(gen *g, const ts_node *n) {
  return g->gpu && ts_stmt_private(n, g->plan, g->nplan);
}

/* The GPU architectures the PTX target supports and what their code may
 * assume: wgmma (sm_90a only), and the shared memory a block may opt into,
 * the tile plan's ceiling. sm_80 PTX is for the parts with an A100's
 * 163 KiB (compute capability 8.0, 8.7; the runtime also gives it to 10.x),
 * sm_86 for those with 99 KiB (8.6, 8.9, 12.x); sm_90a and sm_90 for
 * Hopper's 227 KiB. */
static const struct {
  const char *name;
  bool wgmma;
  int64_t smem_max;
} archs[] = {{"sm_90a", true, 232448},
             {"sm_90", false, 232448},
             {"sm_80", false, 166912},
             {"sm_86", false, 101376}};

static int arch_index(const char *arch) {
  int n = (int)(sizeof archs / sizeof *archs);
  for (int i = 0; arch && i < n; i++)
    if (!strcmp(arch, archs[i].name))
      return i;
  return arch ? n - 1 : 0; /* NULL: the default, sm_90a; unknown: the least */
}

bool ts_arch_supported(const char *arch) {
  return arch && !strcmp(archs[arch_index(arch)].name, arch);
}
static char arch_names[64];
static void list_archs(void) {
  int n = (int)(sizeof archs / sizeof *archs);
  for (int i = 0; i < n; i++) {
    size_t at = strlen(arch_names);
    snprintf(arch_names + at, sizeof arch_names - at, "%s%s",
             i == 0 ? "" : i == n - 1 ? " or " : ", ", archs[i].name);
  }
}
const char *ts_arch_list(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, list_archs);
  return arch_names;
}
bool ts_arch_wgmma(const char *arch) { return archs[arch_index(arch)].wgmma; }
int64_t ts_arch_smem_max(const char *arch) { return archs[arch_index(arch)].smem_max; }

/* The bytes of a padded tile's row paddings (gen.h ts_pad_elems). */
static int64_t pad_bytes(const ts_gpu_tile *t) {
  const ts_type *ty = t->decl->sym->type;
  return t->pad ? ty->dims[0].c * t->pad * ts_dtype_bits(ty->dtype) / 8 : 0;
}

int64_t ts_gpu_buffer_bytes(const ts_gpu_tile *t) {
  int64_t b = const_bytes(t->decl->sym->type);
  return b < 0 ? -1 : t->swz ? (b + 1023) & ~(int64_t)1023 : align16(b + pad_bytes(t));
}

/* Shared bytes the tiles placed after tile i of the plan would take if
 * placing went on from byte `at` (shared tiles later in the first pass,
 * then the frags not in registers that fit within `max`; swizzled ones
 * 1024-aligned): a pipelined copy's further buffers must leave room for
 * them, or a frag such as an accumulator would end up in global scratch.
 * A frag too large to fit anyway leaves the room to the buffers. */
static int64_t later_bytes(ts_node **tiles, const ts_gpu_tile *out, int n, int i,
                           int64_t at, int64_t max) {
  int64_t sum = 0;
  bool i_shared = tiles[i]->sym->type->scope == TS_SCOPE_SHARED;
  for (int pass = i_shared ? 0 : 1; pass < 2; pass++)
    for (int j = 0; j < n; j++) {
      bool shared = tiles[j]->sym->type->scope == TS_SCOPE_SHARED;
      int64_t b = ts_gpu_buffer_bytes(&out[j]);
      if (shared != (pass == 0) || (shared == i_shared && j <= i) ||
          out[j].home == TS_TILE_REGS || b < 0)
        continue;
      if (!shared && at + sum + b > max - GPU_SMEM_ALIGN)
        continue;
      sum += b;
    }
  return sum;
}

/* The stage count of the pipelined loop whose first staged tile, tile i,
 * was just placed (its buffer `one` bytes, shared memory now at `smem`):
 * the most, up to the count written, whose further buffers for all the
 * loop's staged tiles (placed after i) leave room for the tiles still to
 * place; 1 if none does. */
static int loop_stages(ts_node **tiles, const ts_gpu_tile *out, int n, int i, int64_t one,
                       int64_t smem, int64_t max) {
  int64_t per = one; /* bytes of one more stage */
  for (int j = i + 1; j < n; j++)
    if (out[j].pipe == out[i].pipe && out[j].stages > 1 && out[j].home != TS_TILE_REGS)
      per += ts_gpu_buffer_bytes(&out[j]);
  for (int s = out[i].stages; s > 1; s--) {
    int64_t extra = per * (s - 1);
    if (smem + extra + later_bytes(tiles, out, n, i, smem + extra, max) <= max - GPU_SMEM_ALIGN)
      return s;
  }
  return 1;
}

/* Places the tiles not in registers: `shared` ones in shared memory, then
 * frags while they fit, the rest in global scratch; the block's shared
 * bytes. `max`: the most a block of the architecture may opt into. */
static int64_t place(ts_node **tiles, ts_gpu_tile *out, int n, int64_t max, int64_t xchg) {
  int64_t smem = TS_GPU_XCHG_AT + xchg; /* the broadcast slot, the warpgroups' exchange */
  /* frags join shared memory up to `max` (past 48 KiB the runtime opts the
   * block in: a frag in global scratch costs more than the occupancy; it
   * was 48 KiB unless the shared tiles alone passed that, which put
   * sm_80's indexer scores in scratch) */
  int64_t limit = max - GPU_SMEM_ALIGN;
  bool swizzled = false, decided[TS_GPU_MAX_TILES] = {false};
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++) {
      bool shared = tiles[i]->sym->type->scope == TS_SCOPE_SHARED;
      if (shared != (pass == 0) || out[i].home == TS_TILE_REGS)
        continue;
      int64_t before = smem;
      if (out[i].swz) /* 1024-aligned, buffers 1024-aligned apart */
        smem = (smem + 1023) & ~(int64_t)1023;
      out[i].off = smem;
      if (gen_gpu_tile_in_smem(tiles[i]->sym->type, shared, limit - pad_bytes(&out[i]), &smem)) {
        out[i].home = TS_TILE_SMEM;
        smem += pad_bytes(&out[i]);
        if (out[i].swz) {
          smem = (smem + 1023) & ~(int64_t)1023;
          swizzled = true;
        }
        /* a pipelined copy's further buffers: its loop's stage count,
         * decided at its first staged tile for all of them (a loop whose
         * copies had different counts would wait for the shortest) */
        int64_t one = smem - out[i].off;
        if (out[i].stages > 1 && !decided[i]) {
          int s = loop_stages(tiles, out, n, i, one, smem, max);
          for (int j = i; j < n; j++)
            if (out[j].pipe == out[i].pipe && out[j].stages > 1) {
              out[j].stages = s;
              decided[j] = true;
            }
        }
        smem += one * (out[i].stages - 1);
      } else {
        smem = before;
        out[i].stages = 1;
        out[i].swz = 0;
        out[i].pad = 0;
      }
    }
  /* room to align the base of the swizzled tiles at run time */
  return smem + (swizzled ? GPU_SMEM_ALIGN : 0);
}

/* On sm_90a: moves tile i of the first placement into registers when it
 * then takes wgmma's layout (a vector: wgmma's rows, 2 registers a slab;
 * gen.h TS_ACC_ROWS) and no other tile's layout changes. With `group`, a
 * vector moves together with the register vectors of its length still in
 * the cyclic layout (attention's split kernels keep the running sum l there
 * until its neighbours move), which must then all take wgmma's rows. */
static bool try_regs(const ts_kernel_info *k, ts_node **tiles, ts_gpu_tile *first, int n,
                     int i, bool group) {
  int64_t per;
  const ts_type *t = tiles[i]->sym->type;
  if (!in_registers(k, tiles[i], 64, &per, true))
    return false;
  bool vec = t->rank == 1, flip[TS_GPU_MAX_TILES] = {false};
  uint8_t before[TS_GPU_MAX_TILES], after[TS_GPU_MAX_TILES];
  ts_mma_layouts(k, first, n, true, before);
  int count = 0;
  for (int j = 0; j < n; j++) {
    const ts_type *u = tiles[j]->sym->type;
    flip[j] = j == i || (group && vec && first[j].home == TS_TILE_REGS && u->rank == 1 &&
                         !u->dims[0].term_count && u->dims[0].c == t->dims[0].c &&
                         before[j] == TS_ACC_CYCLIC);
    count += flip[j];
  }
  if (group && count == 1)
    return false; /* tried alone already */
  ts_gpu_tile keep[TS_GPU_MAX_TILES];
  memcpy(keep, first, (size_t)n * sizeof *first);
  for (int j = 0; j < n; j++)
    if (flip[j]) {
      first[j].home = TS_TILE_REGS;
      first[j].per_thread = vec ? 4 * t->dims[0].c * ts_wgmma_nsplit(k) / k->threads : per;
      first[j].swz = 0;
      first[j].pad = 0;
      first[j].rows = vec;
    }
  ts_mma_layouts(k, first, n, true, after);
  bool ok = first[i].per_thread <= 64;
  for (int j = 0; j < n; j++)
    ok &= flip[j] ? after[j] == (vec ? TS_ACC_ROWS : TS_ACC_WGMMA) : before[j] == after[j];
  if (!ok)
    memcpy(first, keep, (size_t)n * sizeof *first);
  return ok;
}

int ts_gpu_tile_plan(const ts_kernel_info *k, const char *arch, ts_gpu_tile *out,
                     int64_t *smem_total) {
  bool wgmma = ts_arch_wgmma(arch);
  int64_t max = ts_arch_smem_max(arch), xchg = wgmma ? ts_wgmma_xchg_bytes(k) : 0;
  ts_node *tiles[TS_GPU_MAX_TILES];
  int n = 0;
  collect(k->node->kids[4], tiles, &n);
  for (int i = 0; i < n; i++) {
    out[i] = (ts_gpu_tile){tiles[i], TS_TILE_SCRATCH, 0, 0, 1, NULL, 0, false, 0};
    if (in_registers(k, tiles[i], 64, &out[i].per_thread, false))
      out[i].home = TS_TILE_REGS;
  }
  /* a tensor-core gemm's accumulator may take up to 128 registers a thread
   * (a 128 x 128 tile on one warpgroup, 128 x 256 on two) */
  for (int i = 0; i < n; i++)
    if (out[i].home != TS_TILE_REGS && ts_mma_accumulator(k, out, n, tiles[i]->sym, wgmma) &&
        in_registers(k, tiles[i], 128, &out[i].per_thread, false))
      out[i].home = TS_TILE_REGS;
  ts_pipe_plan(k, out, n);
  for (int i = 0; i < n; i++)
    if (out[i].home != TS_TILE_REGS)
      out[i].swz = ts_swizzle_bytes(k, out, n, tiles[i]->sym, wgmma);
  for (int i = 0; i < n; i++)
    out[i].pad = ts_pad_elems(k, out, n, tiles[i]->sym);
  /* on sm_90a, a frag otherwise used by its owners only but reduced along
   * its rows (attention's scores: reduce_max(s, m, dim=1)) stays in
   * registers when it then takes wgmma's layout, where a row is the
   * registers of one quad of lanes (the reduction: two shuffles), and a
   * vector read beside such a tile or reduced into takes wgmma's rows
   * (try_regs); decided on a first placement (a wgmma gemm reads placed,
   * swizzled tiles), then placed again */
  ts_gpu_tile first[TS_GPU_MAX_TILES];
  memcpy(first, out, (size_t)n * sizeof *out);
  int64_t smem = place(tiles, first, n, max, xchg);
  bool moved = false, again = wgmma;
  while (again) { /* a move may let an earlier tile move too */
    again = false;
    for (int i = 0; i < n; i++)
      if (first[i].home != TS_TILE_REGS &&
          (try_regs(k, tiles, first, n, i, false) || try_regs(k, tiles, first, n, i, true)))
        moved = again = true;
  }
  for (int i = 0; moved && i < n; i++)
    if (first[i].home == TS_TILE_REGS)
      out[i] = first[i];
  if (moved)
    smem = place(tiles, out, n, max, xchg);
  else
    memcpy(out, first, (size_t)n * sizeof *out);
  *smem_total = smem;
  return n;
}

int64_t ts_gen_gpu_smem_bytes(const ts_kernel_info *k, const char *arch) {
  ts_gpu_tile tiles[TS_GPU_MAX_TILES];
  int64_t total;
  int nt = ts_gpu_tile_plan(k, arch, tiles, &total);
  /* then the TMA rings' mbarriers, 8-byte aligned */
  int64_t bars = ts_pipe_tma_bar_bytes(k, arch, tiles, nt, total);
  return bars ? ((total + 7) & ~(int64_t)7) + bars : total;
}

bool ts_gpu_smem_check(const ts_kernel_info *k, const char *arch, const ts_source *src,
                       ts_diags *d) {
  int64_t need = ts_gen_gpu_smem_bytes(k, arch), max = ts_arch_smem_max(arch);
  if (need <= max)
    return true;
  ts_diag *dg = ts_diag_error(d, src, k->node->span,
                              "kernel '%.*s' needs %lld bytes of shared memory a block, "
                              "more than the %lld (%lld KiB) a block may use on %s",
                              (int)k->name.len, k->name.ptr, (long long)need,
                              (long long)max, (long long)max / 1024,
                              arch ? arch : "sm_90a");
  ts_diag_hint(d, dg, "its shared tiles (%lld bytes, and what aligning and a pipelined "
               "copy's first buffer add) must fit: smaller tile params, or an "
               "architecture with more (sm_90a: 227 KiB)",
               (long long)k->shared_size);
  return false;
}

/* Bytes of a tile with a symbolic shape (at least one element). */
static MlirValue tile_bytes(gen *g, ts_node *tile, MlirValue *count) {
  const ts_type *t = tile->sym->type;
  MlirValue n = gen_i64(g, 1);
  for (uint32_t i = 0; i < t->rank; i++)
    n = mb_bin(&g->b, "arith.muli", n, gen_extent(g, &t->dims[i], tile));
  n = mb_bin(&g->b, "arith.maxsi", n, gen_i64(g, 1));
  *count = n;
  MlirValue bytes =
      mb_bin(&g->b, "arith.muli", n, gen_i64(g, ts_dtype_bits(t->dtype) / 8));
  /* rounded up to 16 bytes */
  return mb_bin(&g->b, "arith.andi",
                mb_bin(&g->b, "arith.addi", bytes, gen_i64(g, 15)),
                gen_i64(g, ~(int64_t)15));
}

MlirValue gen_gpu_scratch_bytes(gen *g, const ts_kernel_info *k) {
  ts_gpu_tile tiles[TS_GPU_MAX_TILES];
  int64_t total;
  int n = ts_gpu_tile_plan(k, g->arch, tiles, &total);
  MlirValue sum = gen_i64(g, 0), count;
  for (int i = 0; i < n; i++)
    if (tiles[i].home == TS_TILE_SCRATCH)
      sum = mb_bin(&g->b, "arith.addi", sum,
                   tile_bytes(g, tiles[i].decl, &count));
  return sum;
}

static MlirType memref_of(gen *g, MlirType elem, int64_t n, MlirAttribute sp) {
  int64_t shape[1] = {n >= 0 ? n : mlirShapedTypeGetDynamicSize()};
  (void)g;
  return mlirMemRefTypeContiguousGet(elem, 1, shape, sp);
}

/* A typed 1-d view of `count` elements at byte `at` of an i8 buffer. */
MlirValue gen_gpu_view_at(gen *g, MlirValue buf, MlirValue at, MlirType elem,
                         int64_t n, MlirValue count, MlirAttribute sp) {
  mb *b = &g->b;
  MlirValue ops[2] = {buf, mb_cast(b, "arith.index_cast", at, b->index)};
  MlirValue sz;
  intptr_t nops = 2;
  MlirValue all[3] = {ops[0], ops[1], {0}};
  if (n < 0) {
    sz = mb_cast(b, "arith.index_cast", count, b->index);
    all[2] = sz;
    nops = 3;
  }
  return mb_op1(b, "memref.view", nops, all, memref_of(g, elem, n, sp));
}

/* The address of element `lin` of a 1-d memref, as an i64. */
MlirValue gen_gpu_address(gen *g, MlirValue mem, MlirValue lin, int bytes) {
  mb *b = &g->b;
  MlirValue base = mlirOperationGetResult(
      mb_op(b, "memref.extract_aligned_pointer_as_index", 1, &mem, 1, &b->index, 0, NULL), 0);
  return mb_bin(b, "arith.addi", mb_cast(b, "arith.index_cast", base, b->i64),
             mb_bin(b, "arith.muli", lin, gen_i64(g, bytes)));
}

/* ---- the simulator's race check (runtime/gpusim.c) ---------------------
 *
 * In the CPU form of the GPU kernel every load and store of the block's
 * shared memory (a memref viewing the smem argument) is preceded by a call
 * ts_gpusim_access(ctx, tid, address, bytes | 256 store | line << 9). */

static bool views_smem(gen *g, MlirValue m) {
  for (int depth = 0; depth < 8; depth++) {
    if (mlirValueEqual(m, g->emu_smem))
      return true;
    if (!mlirValueIsAOpResult(m))
      return false;
    MlirOperation op = mlirOpResultGetOwner(m);
    MlirStringRef name = mlirIdentifierStr(mlirOperationGetName(op));
    if (name.length != 11 || memcmp(name.data, "memref.view", 11))
      return false; /* (a view's aligned pointer is its first element's) */
    m = mlirOperationGetOperand(op, 0);
  }
  return false;
}

static void check_access(mb *b, MlirValue mem, MlirValue idx, bool write) {
  gen *g = (gen *)(void *)((char *)b - offsetof(gen, b));
  if (!views_smem(g, mem))
    return;
  MlirType et = mlirShapedTypeGetElementType(mlirValueGetType(mem));
  int bits = mlirTypeIsAInteger(et) ? (int)mlirIntegerTypeGetWidth(et)
             : mlirTypeIsAFloat(et) ? (int)mlirFloatTypeGetWidth(et)
                                     : 64;
  int bytes = (bits + 7) / 8;
  int line = mlirLocationIsAFileLineColRange(b->loc)
                 ? (int)mlirLocationFileLineColRangeGetStartLine(b->loc)
                 : 0;
  if (line < 0 || line >= (1 << 22))
    line = 0;
  b->access = NULL; /* (the call's own operands are no accesses) */
  MlirValue args[4] = {g->emu_ctx, g->emu_tid, gen_gpu_address(g, mem, idx, bytes),
                       mb_const_int(b, b->i32, bytes | (write ? 256 : 0) | line << 9)};
  gen_call(g, "ts_gpusim_access", 4, args, 0, NULL);
  b->access = check_access;
}

void gen_gpu_race_check(gen *g, bool on) { g->b.access = on ? check_access : NULL; }

/* The same for shared memory, as the i32 an instruction's .shared operand
 * takes (the shared window is 32-bit; the pipeline makes shared pointers
 * 32-bit too, compiler/pipeline.c). */
MlirValue gen_gpu_shared_address(gen *g, MlirValue mem, MlirValue lin, int bytes) {
  return mb_cast(&g->b, "arith.trunci", gen_gpu_address(g, mem, lin, bytes), g->b.i32);
}

bool gen_gpu_in_registers(gen *g, const ts_symbol *s) {
  for (int i = 0; i < g->nregs; i++)
    if (g->regs[i] == s)
      return true;
  return false;
}

void gen_gpu_tiles(gen *g, const ts_kernel_info *k) {
  mb *b = &g->b;
  ts_gpu_tile *tiles = g->plan;
  int64_t total;
  int n = ts_gpu_tile_plan(k, g->arch, tiles, &total);
  g->nplan = n;
  g->bar_at = (total + 7) & ~(int64_t)7; /* the TMA rings' mbarriers */
  uint8_t mma[TS_GPU_MAX_TILES];
  ts_mma_layouts(k, tiles, n, g->wgmma, mma);
  g->ns = ts_wgmma_nsplit(k);
  g->xpar.ptr = NULL;
  if (g->ns > 1) {
    g->xpar = mb_alloca_entry(b, b->i64, 1);
    mb_store(b, gen_i64(g, 0), g->xpar, gen_i64(g, 0));
  }
  g->uses_wgmma = false;
  for (int i = 0; i < n; i++)
    g->uses_wgmma |= tiles[i].home == TS_TILE_REGS && mma[i] == TS_ACC_WGMMA;
  MlirAttribute wg =
      mlirAttributeParseGet(b->ctx, mb_str("#gpu.address_space<workgroup>"));
  MlirValue smem;
  if (g->emu) {
    smem = g->emu_smem;
    wg = mlirAttributeGetNull();
  } else {
    MlirType t = memref_of(g, b->i8, -1, wg);
    smem = mb_op1(b, "gpu.dynamic_shared_memory", 0, NULL, t);
  }
  g->smem_base = smem;
  g->smem_pad = gen_i64(g, 0);
  for (int i = 0; i < n; i++)
    if (tiles[i].swz) { /* align the swizzled tiles' base (gen.h) */
      MlirValue at = gen_gpu_address(g, smem, gen_i64(g, 0), 1);
      g->smem_pad = mb_bin(b, "arith.andi", mb_bin(b, "arith.subi", gen_i64(g, 0), at),
                           gen_i64(g, 1023));
      break;
    }
  g->nregs = 0;
  ts_buf where;
  ts_buf_init(&where, ts_allocator_system());
  for (int i = 0; i < n; i++) {
    ts_node *decl = tiles[i].decl;
    const ts_type *t = decl->sym->type;
    MlirType st = gen_storage_type(g, t->dtype);
    MlirValue count = {0};
    MlirValue v;
    ts_buf_printf(&where, "%s%.*s: ", i ? "; " : "", (int)decl->sym->name.len,
                  decl->sym->name.ptr);
    if (tiles[i].home == TS_TILE_REGS) {
      /* element e lives in thread e % threads, at e / threads; or the
       * mma.sync accumulator layout (gen.h) */
      int64_t per = tiles[i].per_thread;
      if (mma[i] == TS_ACC_MMA) {
        int64_t warps = g->threads / 32;
        int64_t pieces = (t->dims[0].c / 16) * (t->dims[1].c / 8);
        per = (pieces + warps - 1) / warps * 4;
      } else if (mma[i] == TS_ACC_WGMMA) {
        per = t->dims[0].c * t->dims[1].c / g->threads;
      }
      v = mb_alloca_entry(b, st, per);
      if (g->nregs < TS_GPU_MAX_TILES) {
        g->mma[g->nregs] = mma[i];
        g->regs[g->nregs++] = decl->sym;
      }
      ts_buf_printf(&where, "registers (%lld per thread%s)", (long long)per,
                    mma[i] == TS_ACC_WGMMA ? ", wgmma layout"
                    : mma[i] == TS_ACC_ROWS ? ", wgmma rows"
                    : mma[i]               ? ", mma.sync layout"
                                           : "");
    } else if (tiles[i].home == TS_TILE_SMEM) {
      int64_t elems = (const_bytes(t) + pad_bytes(&tiles[i])) * 8 / ts_dtype_bits(t->dtype);
      v = gen_gpu_view_at(g, smem, mb_bin(b, "arith.addi", g->smem_pad, gen_i64(g, tiles[i].off)),
                          st, elems < 1 ? 1 : elems, count, wg);
      ts_buf_printf(&where, "shared +%lld", (long long)tiles[i].off);
      if (tiles[i].swz)
        ts_buf_printf(&where, " (%dB swizzle)", tiles[i].swz);
      if (tiles[i].pad)
        ts_buf_printf(&where, " (rows padded by %d)", tiles[i].pad);
      if (tiles[i].stages > 1)
        ts_buf_printf(&where, " x %d stages", tiles[i].stages);
    } else {
      MlirValue bytes = tile_bytes(g, decl, &count);
      v = gen_gpu_view_at(g, g->scratch, g->scratch_at, st, -1, count,
                  mlirAttributeGetNull());
      g->scratch_at = mb_bin(b, "arith.addi", g->scratch_at, bytes);
      ts_buf_puts(&where, "global scratch");
    }
    decl->sym->user = v.ptr;
  }
  /* reported in --emit mlir: where each tile lives */
  if (where.ptr && !mlirOperationIsNull(g->fn_op))
    mlirOperationSetAttributeByName(
        g->fn_op, mb_str("tessera.tiles"),
        mlirStringAttrGet(b->ctx, mb_str(where.ptr)));
  ts_buf_deinit(&where);
}

MlirValue gen_gpu_broadcast_slot(gen *g, MlirType t) {
  MlirAttribute sp = g->emu ? mlirAttributeGetNull()
                            : mlirAttributeParseGet(
                                  g->b.ctx,
                                  mb_str("#gpu.address_space<workgroup>"));
  MlirValue none = {0};
  return gen_gpu_view_at(g, g->smem_base, gen_i64(g, 0), t, 1, none, sp);
}

/* ---- reductions ---------------------------------------------------------- */

static MlirValue combine(gen *g, ts_builtin op, bool f, MlirValue a,
                         MlirValue x) {
  mb *b = &g->b;
  if (op == TS_BUILTIN_REDUCE_SUM)
    return mb_bin(b, f ? "arith.addf" : "arith.addi", a, x);
  return f ? mb_bin(b, "arith.maximumf", a, x) : mb_bin(b, "arith.maxsi", a, x);
}

static MlirValue shuffle_xor(gen *g, MlirValue v, int offset) {
  mb *b = &g->b;
  if (g->emu) {
    MlirType t = mlirValueGetType(v);
    bool f = gen_is_float(g, t);
    MlirValue args[4] = {g->emu_ctx, g->tid,
                         f ? mb_cast(b, "arith.bitcast", v, b->i32) : v,
                         mb_const_int(b, b->i32, offset)};
    MlirValue r = mlirOperationGetResult(
        gen_call(g, "ts_gpusim_shuffle", 4, args, 1, &b->i32), 0);
    return f ? mb_cast(b, "arith.bitcast", r, t) : r;
  }
  MlirValue ops[3] = {v, mb_const_int(b, b->i32, offset),
                      mb_const_int(b, b->i32, 32)};
  MlirType res[2] = {mlirValueGetType(v), b->i1};
  MlirNamedAttribute a = mb_attr(
      b, "mode", mlirAttributeParseGet(b->ctx, mb_str("#gpu<shuffle_mode xor>")));
  return mlirOperationGetResult(mb_op(b, "gpu.shuffle", 3, ops, 2, res, 1, &a),
                                0);
}

/* One warp per output element: its lanes take every 32nd element of the
 * reduced dim, then combine with xor shuffles; lane 0 stores. Without whole
 * warps, or for 64-bit values, one thread per output element. */
/* reduce_*(s, d, dim=1) of a register tile s [M, N] in wgmma's layout
 * (gen.h TS_ACC_WGMMA): row 16 q + l / 4 (+ 8) of a slab is registers
 * 4 j + 0, 1 (+ 2) of lane l of warp q over the 8-column pieces j, so each
 * thread combines its 2 N / 8 values of the row, two shuffles (xor 1, 2)
 * combine the quad's, and its first lane writes d[row]. */
static void wgmma_row_reduce(gen *g, ts_node *call, MlirValue init, bool f) {
  mb *b = &g->b;
  const ts_symbol *s = call->kids[0]->sym;
  /* N: this warpgroup's columns (gen.h ts_wgmma_nsplit) */
  int64_t M = s->type->dims[0].c, N = s->type->dims[1].c / g->ns;
  int64_t groups = g->threads / 128 / g->ns, slabs = M / (64 * groups);
  view pool[8], dst;
  int np = 0;
  MlirValue *part = calloc((size_t)(2 * slabs), sizeof *part);
  if (!part || !gen_view_of(g, call->kids[1], &dst, pool, &np)) {
    free(part);
    return;
  }
  MlirValue cm = {s->user};
  MlirValue lane = mb_bin(b, "arith.remsi", g->tid, gen_i64(g, 32));
  MlirValue q = mb_bin(b, "arith.remsi", mb_bin(b, "arith.divsi", g->tid, gen_i64(g, 32)),
                       gen_i64(g, 4));
  MlirValue wg, wn;
  gen_warpgroups(g, &wg, &wn);
  MlirValue lead = mb_cmpi(b, CMPI_EQ, mb_bin(b, "arith.remsi", lane, gen_i64(g, 4)),
                           gen_i64(g, 0));
  MlirValue r0 = mb_bin(b, "arith.addi", mb_bin(b, "arith.muli", q, gen_i64(g, 16)),
                        mb_bin(b, "arith.divsi", lane, gen_i64(g, 4)));
  for (int64_t sl = 0; sl < slabs; sl++)
    for (int64_t h = 0; h < 2; h++) {
      MlirValue acc = init;
      for (int64_t j = 0; j < N / 8; j++)
        for (int64_t e = 0; e < 2; e++) {
          MlirValue x = mb_load(b, cm, gen_i64(g, sl * (N / 2) + 4 * j + 2 * h + e));
          if (call->builtin == TS_BUILTIN_REDUCE_ABSMAX)
            x = gen_math1(g, "math.absf", x);
          acc = combine(g, call->builtin, f, acc, x);
        }
      for (int o = 1; o <= 2; o *= 2)
        acc = combine(g, call->builtin, f, acc, shuffle_xor(g, acc, o));
      part[2 * sl + h] = acc;
    }
  if (g->ns > 1) {
    /* the warpgroups' parts of rows r0, r0 + 8 of the one slab through
     * shared memory: buffer xpar of two [ns][64] f32 after the broadcast
     * slot, the other one the last reduction's (gen.h) */
    MlirType ft = mlirValueGetType(part[0]);
    MlirAttribute sp = g->emu ? mlirAttributeGetNull()
                              : mlirAttributeParseGet(b->ctx, mb_str("#gpu.address_space<workgroup>"));
    MlirValue none = {0};
    MlirValue x = gen_gpu_view_at(g, g->smem_base, gen_i64(g, TS_GPU_XCHG_AT), ft, 2 * 64 * g->ns,
                                  none, sp);
    MlirValue par = mb_load(b, g->xpar, gen_i64(g, 0));
    mb_store(b, mb_bin(b, "arith.xori", par, gen_i64(g, 1)), g->xpar, gen_i64(g, 0));
    MlirValue buf = mb_bin(b, "arith.muli", par, gen_i64(g, 64 * g->ns));
    MlirValue xr = mb_bin(b, "arith.addi", r0, buf);
    MlirValue mine = mb_bin(b, "arith.muli", wn, gen_i64(g, 64));
    MlirBlock join = gen_if_begin(g, lead);
    for (int64_t h = 0; h < 2; h++)
      mb_store(b, part[h], x,
               mb_bin(b, "arith.addi", mine, mb_bin(b, "arith.addi", xr, gen_i64(g, 8 * h))));
    gen_if_end(g, join);
    gen_barrier(g);
    for (int64_t h = 0; h < 2; h++) {
      MlirValue acc = init;
      for (int64_t w = 0; w < g->ns; w++)
        acc = combine(g, call->builtin, f, acc,
                      mb_load(b, x, mb_bin(b, "arith.addi", xr, gen_i64(g, 64 * w + 8 * h))));
      part[h] = acc;
    }
  }
  for (int64_t sl = 0; sl < slabs; sl++)
    for (int64_t h = 0; h < 2; h++) {
      /* rows (sl groups + wg) 64 + r0 (+ 8) */
      MlirValue row = mb_bin(
          b, "arith.addi",
          mb_bin(b, "arith.muli", mb_bin(b, "arith.addi", wg, gen_i64(g, sl * groups)),
                 gen_i64(g, 64)),
          mb_bin(b, "arith.addi", r0, gen_i64(g, 8 * h)));
      /* into wgmma's rows (gen.h TS_ACC_ROWS): every lane has the value;
       * else (a tile in memory) the first lane of the quad, and with the
       * warpgroups splitting N the first warpgroup's */
      g->rows_reg = gen_i64(g, 2 * sl + h);
      MlirValue who = g->ns > 1 ? mb_bin(b, "arith.andi", lead,
                                         mb_cmpi(b, CMPI_EQ, wn, gen_i64(g, 0)))
                                : lead;
      MlirBlock join = dst.rows ? (MlirBlock){NULL} : gen_if_begin(g, who);
      gen_view_store(g, &dst, &row, gen_convert(g, part[2 * sl + h], gen_compute_type(g, dst.dt)));
      if (join.ptr)
        gen_if_end(g, join);
      g->rows_reg.ptr = NULL;
    }
  free(part);
}

void gen_gpu_reduce(gen *g, ts_node *call) {
  mb *b = &g->b;
  for (int i = 0; i < g->nregs; i++)
    if (g->regs[i] == call->kids[0]->sym && g->mma[i] == TS_ACC_WGMMA) {
      MlirType t = gen_compute_type(g, call->kids[0]->sym->type->dtype);
      wgmma_row_reduce(g, call, gen_reduce_init(g, call->builtin, t), gen_is_float(g, t));
      return;
    }
  view pool[8], src, dst;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &src, pool, &np) ||
      !gen_view_of(g, call->kids[1], &dst, pool, &np))
    return;
  uint32_t dim = (uint32_t)ts_call_named(call, "dim")->cval.i;
  ts_builtin op = call->builtin;
  MlirType t = gen_compute_type(g, src.dt);
  bool f = gen_is_float(g, t);
  MlirValue init = gen_reduce_init(g, op, t);
  bool warps = g->threads % 32 == 0 && (f || gen_int_width(t) == 32);
  int64_t lanes = warps ? 32 : 1;
  MlirValue nout = gen_i64(g, 1), ext[TS_MAX_RANK];
  uint32_t nk = 0;
  for (uint32_t i = 0; i < src.vrank; i++)
    if (i != dim) {
      ext[nk++] = src.vext[i];
      nout = mb_bin(b, "arith.muli", nout, src.vext[i]);
    }
  MlirValue lane = warps ? mb_bin(b, "arith.remsi", g->tid, gen_i64(g, 32))
                         : gen_i64(g, 0);
  MlirValue group =
      warps ? mb_bin(b, "arith.divsi", g->tid, gen_i64(g, 32)) : g->tid;
  loop lo, li;
  gen_loop_begin_step(g, &lo, group, nout, gen_i64(g, g->threads / lanes));
  MlirValue out_k[TS_MAX_RANK], k[TS_MAX_RANK];
  MlirValue e = lo.iv;
  for (uint32_t i = nk; i-- > 0;) {
    out_k[i] = i ? mb_bin(b, "arith.remsi", e, ext[i]) : e;
    if (i)
      e = mb_bin(b, "arith.divsi", e, ext[i]);
  }
  MlirValue slot = mb_alloca_entry(b, t, 1);
  mb_store(b, init, slot, gen_i64(g, 0));
  gen_loop_begin_step(g, &li, lane, src.vext[dim], gen_i64(g, lanes));
  for (uint32_t i = 0, j = 0; i < src.vrank; i++)
    k[i] = i == dim ? li.iv : out_k[j++];
  MlirValue x;
  gen_view_load(g, &src, k, &x);
  if (op == TS_BUILTIN_REDUCE_ABSMAX)
    x = f ? gen_math1(g, "math.absf", x) : gen_math1(g, "math.absi", x);
  mb_store(b, combine(g, op, f, mb_load(b, slot, gen_i64(g, 0)), x), slot,
           gen_i64(g, 0));
  gen_loop_end(g, &li);
  MlirValue acc = mb_load(b, slot, gen_i64(g, 0));
  for (int s = 16; warps && s >= 1; s /= 2)
    acc = combine(g, op, f, acc, shuffle_xor(g, acc, s));
  if (nk == 0) {
    out_k[0] = gen_i64(g, 0);
    nk = 1;
  }
  MlirBlock join =
      gen_if_begin(g, mb_cmpi(b, CMPI_EQ, lane, gen_i64(g, 0)));
  gen_view_store(g, &dst, out_k, gen_convert(g, acc, gen_compute_type(g, dst.dt)));
  gen_if_end(g, join);
  gen_loop_end(g, &lo);
}

/* ---- gemm ---------------------------------------------------------------- */

/* The k a thread reads at step `k` of K (gen.h ts_gemm_rotates): k + its
 * rotation `rot`, wrapped. */
static MlirValue rotated_k(gen *g, MlirValue k, MlirValue rot, MlirValue K) {
  mb *b = &g->b;
  MlirValue kr = mb_bin(b, "arith.addi", k, rot);
  return mb_op1(b, "arith.select", 3,
                (MlirValue[]){mb_cmpi(b, CMPI_SGE, kr, K), mb_bin(b, "arith.subi", kr, K), kr},
                b->i64);
}

/* c (+)= a · b with each thread computing whole elements of c: a dot
 * product over k each; or, when c is in registers, k outermost and the
 * thread's elements of c updated in an inner loop of constant trip count,
 * which unrolls so that they stay in registers; on tensor cores when it
 * qualifies (gen_mma.c). With a and b both read along k (b transposed),
 * thread t starts its k loop at t mod K (ts_gemm_rotates). */
void gen_gpu_gemm(gen *g, ts_node *call) {
  if (gen_gpu_mma(g, call))
    return;
  mb *b = &g->b;
  view pool[8], A, B, C;
  int np = 0;
  if (!gen_view_of(g, call->kids[0], &A, pool, &np) ||
      !gen_view_of(g, call->kids[1], &B, pool, &np) ||
      !gen_view_of(g, call->kids[2], &C, pool, &np))
    return;
  bool ta = ts_call_named_bool(call, "trans_a", false);
  bool tb = ts_call_named_bool(call, "trans_b", false);
  bool acc = ts_call_named_bool(call, "accumulate", true);
  MlirType ct = gen_compute_type(g, C.dt);
  bool f = gen_is_float(g, ct);
  MlirValue zero = f ? mb_const_f32(b, 0.0) : mb_const_int(b, ct, 0);
  MlirValue K = A.vext[ta ? 0 : 1];
  loop L[2], lk;
  MlirValue ij[2], ak[2], bk[2], kk;
  bool rot = ts_gemm_rotates(call, g->plan, g->nplan);
  MlirValue r0 = rot ? mb_bin(b, "arith.remsi", g->tid,
                              mb_op1(b, "arith.maxsi", 2, (MlirValue[]){K, gen_i64(g, 1)}, b->i64))
                     : (MlirValue){0};
  if (C.regs) {
    if (!acc) {
      gen_each_begin(g, L, C.vext, 2, ij);
      gen_view_store(g, &C, ij, zero);
      gen_each_end(g, L, 2);
    }
    gen_loop_begin(g, &lk, gen_i64(g, 0), K);
    kk = rot ? rotated_k(g, lk.iv, r0, K) : lk.iv;
    gen_each_begin(g, L, C.vext, 2, ij);
    ak[0] = ta ? kk : ij[0];
    ak[1] = ta ? ij[0] : kk;
    bk[0] = tb ? ij[1] : kk;
    bk[1] = tb ? kk : ij[1];
    MlirValue x, y, c0;
    gen_view_load(g, &A, ak, &x);
    gen_view_load(g, &B, bk, &y);
    gen_view_load(g, &C, ij, &c0);
    MlirValue p = mb_bin(b, f ? "arith.mulf" : "arith.muli",
                         gen_gemm_operand(g, call, x, ct), gen_gemm_operand(g, call, y, ct));
    MlirValue s =
        mb_bin(b, f ? "arith.addf" : "arith.addi", gen_convert(g, c0, ct), p);
    if (f) {
      gen_fastmath(g, p, "contract");
      gen_fastmath(g, s, "contract");
    }
    gen_view_store(g, &C, ij, s);
    gen_each_end(g, L, 2);
    gen_loop_end(g, &lk);
    return;
  }
  gen_each_begin(g, L, C.vext, 2, ij);
  MlirValue slot = mb_alloca_entry(b, ct, 1);
  mb_store(b, zero, slot, gen_i64(g, 0));
  gen_loop_begin(g, &lk, gen_i64(g, 0), K);
  kk = rot ? rotated_k(g, lk.iv, r0, K) : lk.iv;
  ak[0] = ta ? kk : ij[0];
  ak[1] = ta ? ij[0] : kk;
  bk[0] = tb ? ij[1] : kk;
  bk[1] = tb ? kk : ij[1];
  MlirValue x, y;
  gen_view_load(g, &A, ak, &x);
  gen_view_load(g, &B, bk, &y);
  MlirValue p = mb_bin(b, f ? "arith.mulf" : "arith.muli",
                       gen_gemm_operand(g, call, x, ct), gen_gemm_operand(g, call, y, ct));
  MlirValue s = mb_bin(b, f ? "arith.addf" : "arith.addi",
                       mb_load(b, slot, gen_i64(g, 0)), p);
  if (f) {
    gen_fastmath(g, p, "contract");
    gen_fastmath(g, s, "contract");
  }
  mb_store(b, s, slot, gen_i64(g, 0));
  gen_loop_end(g, &lk);
  MlirValue sum = mb_load(b, slot, gen_i64(g, 0));
  if (acc) {
    MlirValue c0;
    gen_view_load(g, &C, ij, &c0);
    sum = mb_bin(b, f ? "arith.addf" : "arith.addi", gen_convert(g, c0, ct),
                 sum);
  }
  gen_view_store(g, &C, ij, sum);
  gen_each_end(g, L, 2);
}
