/* gpu_pipe.c - the copies a `pipelined` loop can run ahead on the GPU:
 * which `shared` tiles its body fills from global memory (sliced, or rows
 * gathered through an index tensor nobody writes) and only reads
 * afterwards, so that the tile plan gives them one buffer per stage and
 * the CUDA C lowering turns the loop into a ring of asynchronous copies
 * (cuda.c; docs/abi.md "Pipelined loops"). */
#include "compiler/gen.h"

int64_t ts_pipe_stages(const ts_node *pipe) {
  const ts_node *s = pipe->kids[2];
  return s && s->cval.kind == TS_CONST_INT ? s->cval.i : 2;
}

int ts_pipe_chunk_bytes(int64_t cols, int elem) {
  for (int cb = 16; cb >= 4 && cb >= elem; cb /= 2)
    if (cols * elem % cb == 0)
      return cb;
  return 0;
}

int64_t ts_pipe_planned(const ts_node *pipe, const ts_gpu_tile *plan, int nt) {
  for (int i = 0; i < nt; i++)
    if (plan[i].pipe == pipe)
      return plan[i].stages;
  return ts_pipe_stages(pipe);
}


/* Whether `n` names a symbol declared under `scope` (other than the loop
 * variable `keep`). */
static bool declared_within(const ts_node *n, const ts_node *scope,
                            const ts_symbol *keep);

static bool declares(const ts_node *scope, const ts_symbol *s) {
  if (!scope)
    return false;
  if ((scope->kind == TS_NODE_LET || scope->kind == TS_NODE_VAR ||
       scope->kind == TS_NODE_TILE || scope->kind == TS_NODE_FOR ||
       scope->kind == TS_NODE_PIPELINED) &&
      scope->sym == s)
    return true;
  if (scope->kind == TS_NODE_PARALLEL)
    for (uint32_t i = 0; i < scope->kids[0]->kid_count; i++)
      if (scope->kids[0]->kids[i]->sym == s)
        return true;
  for (uint32_t i = 0; i < scope->kid_count; i++)
    if (declares(scope->kids[i], s))
      return true;
  return false;
}

static bool declared_within(const ts_node *n, const ts_node *scope,
                            const ts_symbol *keep) {
  if (!n)
    return false;
  if (n->kind == TS_NODE_NAME && n->sym && n->sym != keep && declares(scope, n->sym))
    return true;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (declared_within(n->kids[i], scope, keep))
      return true;
  return false;
}

bool ts_pipe_staged_copy(const ts_kernel_info *k, const ts_node *pipe,
                         const ts_node *st) {
  const ts_node *body = pipe->kids[3];
  if (ts_pipe_stages(pipe) < 2 || !st || st->kind != TS_NODE_EXPR_STMT)
    return false;
  const ts_node *c = st->kids[0];
  if (c->kind != TS_NODE_CALL || c->builtin != TS_BUILTIN_COPY || ts_copy_packed(c))
    return false;
  const ts_node *src = c->kids[0], *dst = c->kids[1];
  if (dst->kind != TS_NODE_NAME || !dst->sym || dst->sym->kind != TS_SYM_TILE ||
      dst->sym->type->scope != TS_SCOPE_SHARED)
    return false;
  const ts_symbol *t = dst->sym;
  for (uint32_t i = 0; i < t->type->rank; i++)
    if (t->type->dims[i].term_count)
      return false;
  /* from a tensor, sliced or indexed (no gather), by values known before
   * the body runs */
  const ts_node *base = src->kind == TS_NODE_INDEX ? src->kids[0] : src;
  if (!base->sym || base->sym->kind != TS_SYM_TENSOR ||
      base->sym->type->dtype != t->type->dtype)
    return false;
  if (src->kind == TS_NODE_INDEX)
    for (uint32_t i = 1; i < src->kid_count; i++) {
      const ts_node *x = src->kids[i];
      /* a gather (kv[idx[t, a:b], :]) through a tensor nobody writes: its
       * indices are read when the copy is issued */
      if (x->kind == TS_NODE_INDEX) {
        const ts_symbol *g = x->kids[0]->sym;
        if (!g || g->kind != TS_SYM_TENSOR || ts_node_writes(k->node->kids[4], g))
          return false;
        for (uint32_t j = 1; j < x->kid_count; j++)
          if (x->kids[j]->kind == TS_NODE_INDEX)
            return false;
        continue;
      }
      if (x->kind != TS_NODE_SLICE)
        for (uint32_t j = 0; j < x->kid_count; j++)
          if (x->kids[j] && x->kids[j]->kind == TS_NODE_SLICE)
            return false;
    }
  if (declared_within(src, body, pipe->sym) || ts_node_mentions(src, t))
    return false;
  /* the tile lives in this body only, this copy is the first statement to
   * touch it and the only one to write it */
  if (ts_node_mention_count(k->node->kids[4], t) != ts_node_mention_count(body, t))
    return false;
  bool seen = false;
  for (uint32_t i = 0; i < body->kid_count; i++) {
    const ts_node *s = body->kids[i];
    if (s == st) {
      seen = true;
      continue;
    }
    if (!ts_node_mentions(s, t))
      continue;
    if (!seen || ts_node_writes(s, t))
      return false;
  }
  return seen;
}

static void walk(const ts_kernel_info *k, const ts_node *n, ts_gpu_tile *tiles,
                 int nt) {
  if (!n)
    return;
  if (n->kind == TS_NODE_PIPELINED) {
    const ts_node *body = n->kids[3];
    for (uint32_t i = 0; body && i < body->kid_count; i++)
      if (ts_pipe_staged_copy(k, n, body->kids[i]))
        for (int j = 0; j < nt; j++)
          if (tiles[j].decl->sym == body->kids[i]->kids[0]->kids[1]->sym) {
            tiles[j].stages = (int)ts_pipe_stages(n);
            tiles[j].pipe = n;
          }
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    walk(k, n->kids[i], tiles, nt);
}

const ts_gpu_tile *ts_pipe_buffers(const ts_kernel_info *k, const ts_node *pipe,
                                   const ts_node *st, const ts_gpu_tile *plan, int nt,
                                   int64_t *stride) {
  if (!ts_pipe_staged_copy(k, pipe, st))
    return NULL;
  const ts_symbol *t = st->kids[0]->kids[1]->sym;
  const ts_gpu_tile *p = ts_gpu_tile_of(plan, nt, t);
  if (!p || p->home != TS_TILE_SMEM || p->pipe != pipe || p->stages < 2)
    return NULL;
  *stride = ts_gpu_buffer_bytes(p);
  return p;
}

bool ts_copy_async_ok(const ts_node *call, const ts_gpu_tile *plan, int nt) {
  if (ts_copy_packed(call)) /* decoded as it is copied */
    return false;
  const ts_node *src = call->kids[0], *dst = call->kids[1];
  const ts_node *base = src->kind == TS_NODE_INDEX ? src->kids[0] : src;
  if (dst->kind != TS_NODE_NAME || !dst->sym || dst->sym->kind != TS_SYM_TILE || !base->sym ||
      base->sym->kind != TS_SYM_TENSOR || base->sym->type->dtype != dst->sym->type->dtype)
    return false;
  for (uint32_t i = 0; i < dst->sym->type->rank; i++)
    if (dst->sym->type->dims[i].term_count)
      return false;
  const ts_gpu_tile *p = ts_gpu_tile_of(plan, nt, dst->sym);
  return p && p->home == TS_TILE_SMEM;
}

static bool has_continue(const ts_node *n) {
  if (!n)
    return false;
  if (n->kind == TS_NODE_CONTINUE || n->kind == TS_NODE_BREAK)
    return true;
  for (uint32_t i = 0; i < n->kid_count; i++)
    if (has_continue(n->kids[i]))
      return true;
  return false;
}

bool ts_pipe_ring_body(const ts_node *pipe) {
  const ts_node *body = pipe->kids[3];
  return ts_pipe_stages(pipe) >= 2 && body && body->kid_count <= 256 && !has_continue(body);
}

/* The TMA form of staged copy `st` of `pipe` (gen.h ts_tma), if it has one. */
static bool tma_copy(const ts_kernel_info *k, const ts_node *pipe, const ts_node *st,
                     const ts_gpu_tile *plan, int nt, ts_tma *out) {
  int64_t stride;
  const ts_gpu_tile *p = ts_pipe_buffers(k, pipe, st, plan, nt, &stride);
  if (!p || !p->swz)
    return false;
  const ts_node *c = st->kids[0], *src = c->kids[0];
  const ts_type *t = c->kids[1]->sym->type;
  if (src->kind != TS_NODE_INDEX || src->kid_count != 3 || src->kids[0]->sym->type->rank != 2 ||
      src->kids[1]->kind != TS_NODE_SLICE || src->kids[2]->kind != TS_NODE_SLICE || t->rank != 2)
    return false;
  int esize = ts_dtype_bits(t->dtype) / 8;
  int64_t rows = t->dims[0].c, cols = t->dims[1].c;
  int64_t span = p->swz / esize; /* elements */
  if (rows < 1 || rows > 256 || cols % span || (cols != span && p->swz != 128))
    return false;
  for (uint32_t i = 0; i < k->arg_count; i++)
    if (k->args[i] == src->kids[0]->sym) {
      *out = (ts_tma){c, i, rows, cols, span, esize, p->swz};
      return true;
    }
  return false;
}

static void tma_walk(const ts_kernel_info *k, const ts_node *n, const ts_gpu_tile *plan,
                     int nt, ts_tma *out, int *count, int64_t *bars) {
  if (!n)
    return;
  if (n->kind == TS_NODE_PIPELINED && ts_pipe_ring_body(n)) {
    bool any = false;
    for (uint32_t i = 0; i < n->kids[3]->kid_count && *count < TS_TMA_MAX; i++)
      if (tma_copy(k, n, n->kids[3]->kids[i], plan, nt, &out[*count]))
        ++*count, any = true;
    if (any)
      *bars += 8 * ts_pipe_planned(n, plan, nt);
  }
  for (uint32_t i = 0; i < n->kid_count; i++)
    tma_walk(k, n->kids[i], plan, nt, out, count, bars);
}

/* The TMA copies of a kernel with tile plan `plan` (`total` bytes of shared
 * memory) and their mbarrier bytes; none when the plan leaves no room for
 * the mbarriers. */
static int tma_scan(const ts_kernel_info *k, const ts_gpu_tile *plan, int nt, int64_t total,
                    ts_tma *out, int64_t *bars) {
  int n = 0;
  *bars = 0;
  tma_walk(k, k->node->kids[4], plan, nt, out, &n, bars);
  if (total + *bars > ts_arch_smem_max("sm_90a")) /* TMA is sm_90a's */
    n = 0, *bars = 0;
  return n;
}

int ts_pipe_tma(const ts_kernel_info *k, const char *arch, ts_tma *out) {
  ts_gpu_tile plan[TS_GPU_MAX_TILES];
  int64_t total, bars;
  if (!ts_arch_wgmma(arch))
    return 0;
  int nt = ts_gpu_tile_plan(k, arch, plan, &total);
  return tma_scan(k, plan, nt, total, out, &bars);
}

int64_t ts_pipe_tma_bar_bytes(const ts_kernel_info *k, const char *arch, const ts_gpu_tile *plan,
                              int nt, int64_t total) {
  ts_tma t[TS_TMA_MAX];
  int64_t bars = 0;
  if (ts_arch_wgmma(arch))
    tma_scan(k, plan, nt, total, t, &bars);
  return bars;
}

/* Whether tile `t` is the destination of a staged copy of `pipe`'s body
 * with its ring of buffers. */
static bool staged_tile(const ts_kernel_info *k, const ts_node *pipe, const ts_node *t,
                        const ts_gpu_tile *plan, int nt) {
  const ts_node *body = pipe->kids[3];
  int64_t stride;
  if (t->kind != TS_NODE_NAME || !t->sym)
    return false;
  for (uint32_t i = 0; i < body->kid_count; i++)
    if (ts_pipe_buffers(k, pipe, body->kids[i], plan, nt, &stride) &&
        body->kids[i]->kids[0]->kids[1]->sym == t->sym)
      return true;
  return false;
}

bool ts_pipe_async_gemm(const ts_kernel_info *k, const ts_node *pipe, const ts_node *st,
                        const ts_gpu_tile *plan, int nt) {
  const ts_node *body = pipe->kids[3];
  if (ts_pipe_planned(pipe, plan, nt) < 3 || !body || !st || st->kind != TS_NODE_EXPR_STMT)
    return false;
  const ts_node *c = st->kids[0];
  if (c->kind != TS_NODE_CALL || c->builtin != TS_BUILTIN_GEMM || c->kid_count < 3 ||
      !ts_call_named_bool(c, "accumulate", true) || c->kids[2]->kind != TS_NODE_NAME ||
      !staged_tile(k, pipe, c->kids[0], plan, nt) || !staged_tile(k, pipe, c->kids[1], plan, nt))
    return false;
  for (uint32_t i = 0; i < body->kid_count; i++)
    if (body->kids[i] != st && ts_node_mentions(body->kids[i], c->kids[2]->sym))
      return false;
  return true;
}

ts_node *ts_pipe_clear_folds(const ts_kernel_info *k, const ts_node *blk, uint32_t i,
                             const ts_gpu_tile *plan, int nt) {
  const ts_node *st = blk->kids[i];
  if (st->kind != TS_NODE_EXPR_STMT || st->kids[0]->kind != TS_NODE_CALL ||
      st->kids[0]->builtin != TS_BUILTIN_CLEAR || st->kids[0]->kids[0]->kind != TS_NODE_NAME)
    return NULL;
  const ts_symbol *t = st->kids[0]->kids[0]->sym;
  uint32_t j = i + 1; /* past the clears that follow */
  while (j < blk->kid_count && blk->kids[j]->kind == TS_NODE_EXPR_STMT &&
         blk->kids[j]->kids[0]->kind == TS_NODE_CALL &&
         blk->kids[j]->kids[0]->builtin == TS_BUILTIN_CLEAR)
    j++;
  if (j == blk->kid_count || blk->kids[j]->kind != TS_NODE_PIPELINED || !blk->kids[j]->kids[3])
    return NULL;
  const ts_node *pipe = blk->kids[j];
  for (uint32_t q = 0; q < pipe->kids[3]->kid_count; q++) {
    ts_node *g = pipe->kids[3]->kids[q];
    if (ts_pipe_async_gemm(k, pipe, g, plan, nt) && g->kids[0]->kids[2]->sym == t)
      return g->kids[0];
  }
  return NULL;
}

bool ts_pipe_folded(ts_node *const *folded, int n, const ts_symbol *t) {
  for (int i = 0; i < n; i++)
    if (folded[i]->kids[0]->kids[0]->sym == t) /* clear(t) */
      return true;
  return false;
}

int ts_pipe_keep_folded(ts_node **folded, int n, const ts_symbol *const *acc, int na,
                        ts_node **rest, int *nrest) {
  int kept = 0;
  *nrest = 0;
  for (int i = 0; i < n; i++) {
    bool mine = false;
    for (int j = 0; j < na; j++)
      mine |= ts_pipe_folded(&folded[i], 1, acc[j]);
    if (mine)
      folded[kept++] = folded[i];
    else
      rest[(*nrest)++] = folded[i];
  }
  return kept;
}

void ts_pipe_plan(const ts_kernel_info *k, ts_gpu_tile *tiles, int nt) {
  walk(k, k->node->kids[4], tiles, nt);
}
