/* gpusim.c - the GPU simulator device: runs the GPU form of a kernel (the
 * same lowering as the PTX target up to the NVVM dialect: gen_kernel_gpu
 * in compiler/gen.c, built as a CPU function) with one fiber per GPU
 * thread, on one CPU thread. A barrier switches to the next fiber; when
 * every thread of the block waits at it, all go on. A warp shuffle waits
 * the same way for the warp's 32 threads. The schedule is fixed (round
 * robin by thread index), so a run is reproducible, and threads that
 * diverge at a barrier (some wait, others have finished) are reported as
 * an error instead of hanging. Blocks run one after another, in the order
 * of their linear index unless TESSERA_GPUSIM_ORDER says another. wgmma is
 * asynchronous here as on the GPU, and a wgmma whose shared operands
 * change while it is in flight is reported as an error (a race).
 *
 * It exists so that the thread distribution, the barriers and the shuffle
 * reductions of the GPU target are checked against the C references on
 * machines without a GPU; it is slow and not a performance model. */
#define _GNU_SOURCE
#include "runtime/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

/* Switching fibers: glibc's swapcontext saves and restores the signal mask
 * with a system call each time, which made the barrier-heavy kernels (the
 * radix top-k: 4 barriers a digit pass) spend half their time in the
 * kernel. On x86-64 a switch of the callee-saved registers and the stack
 * pointer does it (fiber_switch, below), elsewhere swapcontext. Under
 * AddressSanitizer too (it used swapcontext there), the switch telling it
 * the stack it goes to (__sanitizer_start/finish_switch_fiber; the
 * launching thread's stack is learnt when a fiber starts). The JIT's code
 * never changes the MXCSR or x87 control words, so they are not switched. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(TS_ASAN)
#define TS_ASAN 1
#endif
#ifdef TS_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__x86_64__)
typedef struct fctx {
  void *sp;
  const void *bottom; /* the stack's lowest address and size, for ASan */
  size_t size;
} fctx;
/* fiber_switch(from, to): pushes rbp, rbx, r12-r15, saves rsp in *from,
 * loads to's rsp, pops its registers and returns where it switched away
 * (or, the first time, into the fiber's function: fctx_make). */
void ts_gpusim_fiber_switch(void **from, void *to);
__asm__(".text\n"
        ".globl ts_gpusim_fiber_switch\n"
        ".type ts_gpusim_fiber_switch, @function\n"
        "ts_gpusim_fiber_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n"
        "  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n"
        "  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size ts_gpusim_fiber_switch, .-ts_gpusim_fiber_switch\n");
/* `last`: `from` never runs again (its fiber ended) */
static void fctx_switch(fctx *from, fctx *to, bool last) {
#ifdef TS_ASAN
  void *fake = NULL;
  __sanitizer_start_switch_fiber(last ? NULL : &fake, to->bottom, to->size);
  ts_gpusim_fiber_switch(&from->sp, to->sp);
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
  (void)last;
  ts_gpusim_fiber_switch(&from->sp, to->sp);
#endif
}
/* A fiber's first statement: under ASan the switch into it finishes, and
 * tells the stack it came from (the launching thread's: `sched`). */
static void fctx_enter(fctx *sched) {
#ifdef TS_ASAN
  __sanitizer_finish_switch_fiber(NULL, &sched->bottom, &sched->size);
#else
  (void)sched;
#endif
}
/* The fiber's stack as fiber_switch leaves one: six registers (zero), then
 * `fn` to return into, entered as if called (rsp + 8 a multiple of 16). */
static void fctx_make(fctx *c, void *stack, size_t size, void (*fn)(void)) {
#ifdef TS_ASAN
  /* the frames an ended fiber left there keep their redzones' poison: its
   * first ones, at the top (fiber_main's, the last switch's), as every call
   * below them returned (a block's fibers all end before the next block's
   * start on the same stacks; a failed block ends the launch). Only the
   * top is made clean again: the whole stack, each block, was 11% of the
   * sanitizer build's time in lua/model_device. */
  size_t top = size < 65536 ? size : 65536;
  __asan_unpoison_memory_region((char *)stack + size - top, top);
#endif
  void **sp = (void **)(((uintptr_t)stack + size) & ~(uintptr_t)15);
  *--sp = NULL;
  *--sp = (void *)(uintptr_t)fn;
  for (int i = 0; i < 6; i++)
    *--sp = NULL;
  c->sp = sp;
  c->bottom = stack;
  c->size = size;
}
#else
typedef struct fctx {
  ucontext_t uc;
} fctx;
static void fctx_switch(fctx *from, fctx *to, bool last) {
  (void)last;
  swapcontext(&from->uc, &to->uc);
}
static void fctx_enter(fctx *sched) { (void)sched; }
static void fctx_make(fctx *c, void *stack, size_t size, void (*fn)(void)) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = NULL;
  makecontext(&c->uc, fn, 0);
}
#endif

#define MAX_THREADS 1024
#define GATHER_WORDS 8
#define STACK_SIZE (256 * 1024)

enum { RUN, AT_BARRIER, AT_WARP, DONE };

/* An mbarrier (ts_gpusim_mbar): phases completed, and the TMA boxes armed
 * on the current one. */
#define MAX_MBARS 32
#define MAX_BOXES 32
typedef struct tma_pending {
  uint8_t *dst;
  const ts_sim_tmap *m;
  int64_t x, y;
  uint32_t epoch; /* when it was issued, and by whom */
  int16_t tid;
} tma_pending;
typedef struct mbar {
  uintptr_t addr;
  uint32_t done;
  bool armed;
  int n;
  tma_pending box[MAX_BOXES];
} mbar;

/* A wgmma.mma_async issued and not yet waited for (ts_gpusim_wgmma). */
typedef struct inflight {
  uint64_t da, db;
  void *acc; /* f32, or i32 with kind | 16 (s8) */
  int n, kind;
  uint32_t group;  /* the thread's commits before it was issued */
  float sum[128];  /* its product from the operands as they were at issue */
} inflight;

typedef struct fiber {
  fctx ctx;
  void *stack;
  int state;
  uint32_t rounds; /* shuffles done: the exchange buffer by parity */
  inflight *q;     /* this thread's wgmma in flight, oldest first */
  int nq, cap;
  uint32_t commits; /* wgmma.commit_group done */
  uint32_t seen[MAX_MBARS]; /* the phases of each mbarrier it waited for */
  int line; /* the CUDA C lowering's statement (ts_sim_line) */
} fiber;

/* A byte of shared memory in the race check: the epoch and thread of its
 * last write, and of its last read (reader -2: more than one thread read
 * it in that epoch); writer -3 - i: a TMA box that landed on phase ph of
 * mbarrier i. */
typedef struct shadow {
  uint32_t wep, rep, ph;
  int16_t wt, rt;
} shadow;

typedef struct team {
  int threads;
  fiber *f;
  int cur;
  fctx sched;
  int32_t xchg[2][MAX_THREADS];
  uint32_t gather[2][MAX_THREADS][GATHER_WORDS];
  float mma_d[MAX_THREADS][4]; /* ts_gpusim_mma's results, per thread */
  int32_t mma_i[MAX_THREADS][4]; /* ts_gpusim_mma_s8's */
  uint32_t ldm[MAX_THREADS][4]; /* ts_gpusim_ldmatrix's */
  /* the launch */
  bool direct; /* CUDA C built for the CPU: `gpu` takes the launch's
                * parameters and asks ts_sim_index for its indices */
  ts_packed_fn gpu;
  void *const *slots; /* the kernel's packed tensors, dims, scalars */
  int nslots;
  void *const *tail; /* after the scratch parameters: tensor maps, flag */
  int ntail;
  uint8_t *scratch, *smem;
  int64_t scratch_size, smem_size, per_block;
  int64_t grid[3], block[3];
  char err[512]; /* the block's first wgmma or mbarrier error */
  /* the shared memory race check: a shadow of each byte, and the epoch
   * (barriers released since the launch began, counting from 1) */
  struct shadow *sh;
  uint32_t epoch;
  ts_banks *banks; /* bank conflicts counted (gpusim_banks.c), or NULL */
  mbar bars[MAX_MBARS]; /* the block's mbarriers (ts_gpusim_mbar) */
  int nbars;
} team;

int32_t ts_gpusim_shuffle(int64_t ctx, int64_t tid, int32_t v, int32_t off);
static void race_access(team *t, int64_t tid, uintptr_t addr, int64_t n, bool write, int line);

static void wait_as(team *t, int state) {
  fiber *f = &t->f[t->cur];
  f->state = state;
  fctx_switch(&f->ctx, &t->sched, false);
}

void ts_gpusim_barrier(int64_t ctx) { wait_as((team *)(intptr_t)ctx, AT_BARRIER); }

int32_t ts_gpusim_shuffle(int64_t ctx, int64_t tid, int32_t v, int32_t off) {
  team *t = (team *)(intptr_t)ctx;
  fiber *f = &t->f[tid];
  int32_t *x = t->xchg[f->rounds++ & 1];
  x[tid] = v;
  wait_as(t, AT_WARP);
  return x[(tid & ~31) | ((tid ^ off) & 31)];
}

static _Thread_local team *the_team; /* the launch a starting fiber belongs to */

/* What a warp-collective instruction (mma.sync) needs: every lane's `n`
 * words, lane by lane, after the whole warp has given its own (one warp
 * rendezvous, like a shuffle). */
/* The value the simulator's tensor cores take from a tf32 operand's word. */
static float tf32_of(uint32_t w) {
  float f;
  memcpy(&f, &w, 4);
  return ts_f32_tf32(f);
}

static void warp_gather(team *t, int tid, const uint32_t *mine, int n,
                        uint32_t *all) {
  fiber *f = &t->f[tid];
  uint32_t(*g)[GATHER_WORDS] = t->gather[f->rounds++ & 1];
  if (n > GATHER_WORDS)
    n = GATHER_WORDS;
  memcpy(g[tid], mine, (size_t)n * 4);
  wait_as(t, AT_WARP);
  for (int l = 0; l < 32; l++)
    memcpy(all + l * n, g[(tid & ~31) | l], (size_t)n * 4);
}

void ts_sim_warp_gather(const uint32_t *mine, int n, uint32_t *all);
void ts_sim_warp_gather(const uint32_t *mine, int n, uint32_t *all) {
  warp_gather(the_team, the_team->cur, mine, n, all);
}

/* mma.sync m16n8k16 (bf16 or f16 into f32; kind 0, 1) or m16n8k8 (tf32,
 * kind 3: f32 words whose low 13 bits the tensor cores ignore) for the
 * MLIR lowering's CPU form: this lane's A words a0..a3, B words b0, b1 and
 * accumulators c0..c3; the results are read back with ts_gpusim_mma_d
 * (docs/abi.md). */
/* The warp's mma.sync fragments: this lane's words a0..a3, b0, b1 (frag)
 * into all[lane * 6 ..] for every lane; this lane's index. */
static int mma_gather(team *t, int64_t tid, const int32_t frag[6], uint32_t *all) {
  uint32_t mine[6];
  for (int i = 0; i < 6; i++)
    mine[i] = (uint32_t)frag[i];
  warp_gather(t, (int)tid, mine, 6, all);
  return (int)(tid & 31);
}

void ts_gpusim_mma(int64_t ctx, int64_t tid, int32_t a0, int32_t a1,
                   int32_t a2, int32_t a3, int32_t b0, int32_t b1, float c0,
                   float c1, float c2, float c3, int32_t kind) {
  team *t = (team *)(intptr_t)ctx;
  uint32_t all[32 * 6];
  int lane = mma_gather(t, tid, (const int32_t[6]){a0, a1, a2, a3, b0, b1}, all);
  float c[4] = {c0, c1, c2, c3};
  for (int r = 0; r < 4; r++) {
    int row = (lane >> 2) + (r >> 1) * 8, col = (lane & 3) * 2 + (r & 1);
    float s = c[r];
    if (kind == 3) {
      for (int k = 0; k < 8; k++) {
        uint32_t aw = all[((row & 7) * 4 + (k & 3)) * 6 + (row >> 3) + (k >> 2) * 2];
        uint32_t bw = all[(col * 4 + (k & 3)) * 6 + 4 + (k >> 2)];
        s += tf32_of(aw) * tf32_of(bw);
      }
      t->mma_d[tid][r] = s;
      continue;
    }
    bool f16 = kind == 1;
    for (int k = 0; k < 16; k++) {
      uint32_t aw = all[((row & 7) * 4 + ((k & 7) >> 1)) * 6 + (row >> 3) + (k >> 3) * 2];
      uint32_t bw = all[(col * 4 + ((k & 7) >> 1)) * 6 + 4 + (k >> 3)];
      uint16_t ah = (uint16_t)((k & 1) ? aw >> 16 : aw & 0xffffu);
      uint16_t bh = (uint16_t)((k & 1) ? bw >> 16 : bw & 0xffffu);
      s += (f16 ? ts_f16_to_f32(ah) : ts_bf16_to_f32(ah)) *
           (f16 ? ts_f16_to_f32(bh) : ts_bf16_to_f32(bh));
    }
    t->mma_d[tid][r] = s;
  }
}

/* mma.sync m16n8k32 s8 into s32 (kind 2 | 16 in gen.h's numbers): the
 * fragments are m16n8k16's words read as 4 bytes (this lane's a0..a3: rows
 * lane / 4 and + 8, k 4 (lane % 4) .. + 3 and + 16; b0, b1 the same k of
 * column lane / 4); exact integer sums, wrapping as the hardware's do
 * without .satfinite; read back with ts_gpusim_mma_di. */
void ts_gpusim_mma_s8(int64_t ctx, int64_t tid, int32_t a0, int32_t a1, int32_t a2, int32_t a3,
                      int32_t b0, int32_t b1, int32_t c0, int32_t c1, int32_t c2, int32_t c3) {
  team *t = (team *)(intptr_t)ctx;
  uint32_t all[32 * 6];
  int lane = mma_gather(t, tid, (const int32_t[6]){a0, a1, a2, a3, b0, b1}, all);
  int32_t c[4] = {c0, c1, c2, c3};
  for (int r = 0; r < 4; r++) {
    int row = (lane >> 2) + (r >> 1) * 8, col = (lane & 3) * 2 + (r & 1);
    uint32_t s = (uint32_t)c[r];
    for (int k = 0; k < 32; k++) {
      uint32_t aw = all[((row & 7) * 4 + ((k & 15) >> 2)) * 6 + (row >> 3) + (k >> 4) * 2];
      uint32_t bw = all[(col * 4 + ((k & 15) >> 2)) * 6 + 4 + (k >> 4)];
      int8_t ab = (int8_t)(uint8_t)(aw >> 8 * (k & 3)), bb = (int8_t)(uint8_t)(bw >> 8 * (k & 3));
      s += (uint32_t)((int32_t)ab * (int32_t)bb);
    }
    t->mma_i[tid][r] = (int32_t)s;
  }
}

int32_t ts_gpusim_mma_di(int64_t ctx, int64_t tid, int32_t r) {
  return ((team *)(intptr_t)ctx)->mma_i[tid][r & 3];
}

/* The same for the CUDA C lowering built for the CPU (cudasim.c's shim):
 * d[0..3] += A B from this lane's words a[4], b[2]; d is f32, or with kind
 * 2 | 16 (s8) i32. */
void ts_sim_mma(const uint32_t *a, const uint32_t *b, void *d, int kind);
void ts_sim_mma(const uint32_t *a, const uint32_t *b, void *d, int kind) {
  team *t = the_team;
  int64_t tid = t->cur;
  if (kind & 16) {
    int32_t *di = d;
    ts_gpusim_mma_s8((int64_t)(intptr_t)t, tid, (int32_t)a[0], (int32_t)a[1], (int32_t)a[2],
                     (int32_t)a[3], (int32_t)b[0], (int32_t)b[1], di[0], di[1], di[2], di[3]);
    memcpy(di, t->mma_i[tid], sizeof t->mma_i[tid]);
    return;
  }
  float *df = d;
  ts_gpusim_mma((int64_t)(intptr_t)t, tid, (int32_t)a[0], (int32_t)a[1], (int32_t)a[2],
                (int32_t)a[3], (int32_t)b[0], (int32_t)b[1], df[0], df[1], df[2], df[3], kind);
  for (int r = 0; r < 4; r++)
    df[r] = t->mma_d[tid][r];
}

/* ldmatrix .x1/.x2/.x4 (b16) for the MLIR lowering's CPU form: `addr` is
 * this lane's row address; matrix m's row j is lane 8 m + j's, and lane l
 * gets row l / 4, columns 2 (l % 4) and + 1 of each matrix, or with .trans
 * (n | 8) rows 2 (l % 4) and + 1 of column l / 4; read back with
 * ts_gpusim_ldmatrix_r. */
void ts_gpusim_ldmatrix(int64_t ctx, int64_t tid, int64_t addr, int32_t n) {
  team *t = (team *)(intptr_t)ctx;
  uint32_t mine[2] = {(uint32_t)addr, (uint32_t)((uint64_t)addr >> 32)}, all[64];
  warp_gather(t, (int)tid, mine, 2, all);
  int lane = (int)(tid & 31);
  bool trans = n & 8;
  n &= 7;
  if (lane < 8 * n) /* this lane's row: 8 b16 */
    race_access(t, tid, (uintptr_t)addr, 16, false, 0);
#define ROW(j) ((const uint16_t *)(uintptr_t)((uint64_t)all[(j) * 2] | ((uint64_t)all[(j) * 2 + 1] << 32)))
  for (int m = 0; m < n && m < 4; m++) {
    if (trans) {
      int j = m * 8 + (lane & 3) * 2;
      t->ldm[tid][m] = (uint32_t)ROW(j)[lane >> 2] | ((uint32_t)ROW(j + 1)[lane >> 2] << 16);
      continue;
    }
    const uint16_t *row = ROW(m * 8 + (lane >> 2));
    t->ldm[tid][m] = (uint32_t)row[(lane & 3) * 2] | ((uint32_t)row[(lane & 3) * 2 + 1] << 16);
  }
#undef ROW
}

int32_t ts_gpusim_ldmatrix_r(int64_t ctx, int64_t tid, int32_t r) {
  return (int32_t)((team *)(intptr_t)ctx)->ldm[tid][r & 3];
}

float ts_gpusim_mma_d(int64_t ctx, int64_t tid, int32_t r) {
  return ((team *)(intptr_t)ctx)->mma_d[tid][r & 3];
}

/* One element of an operand of wgmma in shared memory, as the hardware
 * finds it from the matrix descriptor, whose start address is counted from
 * the 1024-aligned address at or below the block's shared memory (the
 * simulator's "shared window"). K-major: row i (M or N), column k at start
 * + (i / 8) SBO + (i % 8) rows of the swizzle width + eb k. MN-major (mn:
 * a B with imm-trans-b 1, 16-bit): element i of K row k at start +
 * (i / w) LBO + (k / 8) SBO + (k % 8) swz + eb (i % w), w = swz / eb the
 * elements of a swizzle row. Then the swizzle of the shared address's bits
 * (128B: bits 4-6 ^= 7-9; 64B: 4-5 ^= 7-8; 32B: 4 ^= 7). Swizzled modes
 * only. */
typedef struct wg_op {
  uintptr_t base;    /* the shared window plus the start address */
  uint64_t sbo, lbo; /* in bytes */
  uint64_t swz, eb;  /* the swizzle row's bytes, an element's bytes */
  int wlog;          /* log2 of w = swz / eb (a power of 2) */
  bool mn;
} wg_op;

/* The descriptor's fields, decoded once for an operand's elements. */
static wg_op wg_decode(const team *t, uint64_t desc, int kind, bool mn) {
  int mode = (int)(desc >> 62);
  wg_op o = {.base = ((uintptr_t)t->smem & ~(uintptr_t)1023) + ((desc & 0x3fff) << 4),
             .sbo = ((desc >> 32) & 0x3fff) << 4, .lbo = ((desc >> 16) & 0x3fff) << 4,
             .swz = mode == 1 ? 128 : mode == 2 ? 64 : 32,
             .eb = kind == 3 ? 4 : kind == 2 ? 1 : 2, .mn = mn};
  o.wlog = __builtin_ctzll(o.swz / o.eb);
  return o;
}

static inline uintptr_t wg_at(const wg_op *o, int i, int k) {
  uintptr_t a = o->base;
  uint64_t u = (uint64_t)i, v = (uint64_t)k;
  if (o->mn)
    a += (u >> o->wlog) * o->lbo + (v / 8) * o->sbo + (v % 8) * o->swz +
         (u & ((1u << o->wlog) - 1)) * o->eb;
  else
    a += (u / 8) * o->sbo + (u % 8) * o->swz + v * o->eb;
  return a ^ ((a >> 3) & (uintptr_t)(o->swz - 16));
}

/* Elements (i, 0 .. kk - 1) of an operand, decoded (kind as wgmma_product's). */
static void wg_row(const wg_op *o, int i, int kk, int kind, float *out) {
  if (kind & 16) { /* s8 */
    for (int k = 0; k < kk; k++)
      out[k] = (float)*(const int8_t *)wg_at(o, i, k);
    return;
  }
  switch (kind & 3) {
  case 2:
    for (int k = 0; k < kk; k++)
      out[k] = ts_e4m3_to_f32(*(const uint8_t *)wg_at(o, i, k));
    break;
  case 3:
    for (int k = 0; k < kk; k++) {
      uint32_t w;
      memcpy(&w, (const void *)wg_at(o, i, k), 4);
      out[k] = tf32_of(w);
    }
    break;
  default:
    for (int k = 0; k < kk; k++) {
      uint16_t h;
      memcpy(&h, (const void *)wg_at(o, i, k), 2);
      out[k] = (kind & 3) == 1 ? ts_f16_to_f32(h) : ts_bf16_to_f32(h);
    }
  }
}

/* wgmma.mma_async m64nNk16 (bf16 or f16 into f32; kind 0, 1), m64nNk32
 * (e4m3; kind 2; s8 into s32, kind 2 | 16: each step's sum of 32 products
 * of bytes is exact in f32, and is added to the i32 accumulators at the
 * wait) or m64nNk8 (tf32; kind 3), A K-major and B K-major or (kind | 4: imm-trans-b 1)
 * MN-major in swizzled shared memory, for the MLIR lowering's CPU form:
 * this thread's N / 2 accumulators at `acc` in the instruction's layout
 * (gen.h TS_ACC_WGMMA): register 4 j + q at row 16 (warp % 4) + lane / 4 +
 * 8 (q / 2), column 8 j + 2 (lane % 4) + q % 2. The operands are read from
 * shared memory alone, so no rendezvous is needed. */
static void wgmma_product(const team *t, int64_t tid, uint64_t da, uint64_t db, int n,
                          int kind, float *sum) {
  int w = (int)((tid / 32) % 4), lane = (int)(tid % 32);
  bool mn = (kind & 4) != 0;
  kind &= 3 | 16;
  int kk = 32 / ((kind & 3) == 3 ? 4 : (kind & 3) == 2 ? 1 : 2);
  /* the thread's two rows of A and n / 4 columns of B (2 j + q % 2), each
   * element decoded once; then the sums, k in order */
  float a[2][32], b[64][32];
  wg_op oa = wg_decode(t, da, kind & 3, false), ob = wg_decode(t, db, kind & 3, mn);
  for (int h = 0; h < 2; h++)
    wg_row(&oa, 16 * w + lane / 4 + 8 * h, kk, kind, a[h]);
  for (int c = 0; c < n / 4; c++)
    wg_row(&ob, 8 * (c / 2) + 2 * (lane % 4) + c % 2, kk, kind, b[c]);
  for (int r = 0; r < n / 2; r++) {
    const float *x = a[(r % 4) / 2], *y = b[2 * (r / 4) + r % 2];
    float s = 0.0f;
    for (int k = 0; k < kk; k++)
      s += x[k] * y[k];
    sum[r] = s;
  }
}

static void wgmma_error(team *t, int64_t tid, const char *what) {
  if (!t->err[0])
    snprintf(t->err, sizeof t->err,
             "GPU simulator: block (%lld, %lld, %lld), thread %lld: %s (a bug in "
             "Tessera's GPU lowering)",
             (long long)t->block[0], (long long)t->block[1], (long long)t->block[2],
             (long long)tid, what);
}

/* ---- the shared memory race check -------------------------------------
 *
 * Between two barriers of the block (an epoch) two threads may not both
 * touch a byte of shared memory if one of them writes it: on the GPU the
 * order of the two is undefined. The simulator runs the threads one after
 * another, so such a race gives one answer here and may give another
 * there; the check makes it an error with the line of the access. Thread
 * accesses of the MLIR lowering's CPU form (a ts_gpusim_access before each
 * load and store of shared memory: compiler/gen_gpu.c), the 16 bytes of a
 * cp.async (written when issued) and the rows of an ldmatrix are checked
 * against one another; a wgmma's operands against the writes of the
 * epoch it is issued in (in flight, the operands are checked by value:
 * ts_gpusim_wgmma_sync); a TMA box, when it lands, against the reads and
 * writes of the epoch (the ring's buffers are refilled only after a
 * barrier). The CUDA C lowering built for the CPU reports its loads and
 * stores of shared tiles through ts_sim_access (TS_SHARED in its prelude,
 * compiler/cuda_prelude.c), with the line of the statement (TS_LINE). */

static void race_error(team *t, int64_t tid, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void race_error(team *t, int64_t tid, int line, const char *fmt, ...) {
  char what[200], msg[260];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (line > 0)
    snprintf(msg, sizeof msg, "shared memory race at line %d: %s", line, what);
  else
    snprintf(msg, sizeof msg, "shared memory race: %s", what);
  wgmma_error(t, tid, msg);
}

/* An access outside the block's shared memory: the block's error. */
static __attribute__((noinline, cold)) void smem_outside(team *t, int64_t tid, int64_t off,
                                                          int64_t n, int line) {
  char where[40] = "";
  if (line > 0)
    snprintf(where, sizeof where, " at line %d", line);
  char msg[160];
  snprintf(msg, sizeof msg, "a shared memory access%s outside the block's %lld bytes "
           "(offset %lld, %lld bytes)", where, (long long)t->smem_size,
           (long long)off, (long long)n);
  wgmma_error(t, tid, msg);
}

/* Byte offset of `addr` in the block's shared memory, or -1 (an error) when
 * [addr, addr + n) is not inside it. */
static inline int64_t smem_offset(team *t, int64_t tid, uintptr_t addr, int64_t n, int line) {
  int64_t off = (int64_t)(addr - (uintptr_t)t->smem);
  if (__builtin_expect(addr < (uintptr_t)t->smem || off + n > t->smem_size, 0)) {
    smem_outside(t, tid, off, n, line);
    return -1;
  }
  return off;
}

static const char *who(int16_t other, char *buf, size_t n) {
  if (other == -2)
    return "other threads";
  snprintf(buf, n, "thread %d", other);
  return buf;
}

/* Whether byte s, written by a TMA box since the barrier, landed on an
 * mbarrier phase thread `tid` has not waited for. */
static bool tma_unseen(const team *t, int64_t tid, const shadow *s) {
  return t->f[tid].seen[-3 - s->wt] < s->ph;
}

/* Byte s is read by thread `tid` in epoch `ep` (-2: by several threads). */
static void mark_read(shadow *s, uint32_t ep, int64_t tid) {
  if (s->rep != ep) {
    s->rep = ep;
    s->rt = (int16_t)tid;
  } else if (s->rt != tid) {
    s->rt = -2;
  }
}

/* Thread `tid` reads or writes n bytes at addr. */
static void race_access(team *t, int64_t tid, uintptr_t addr, int64_t n, bool write, int line) {
  if (t->err[0])
    return; /* the block's first error is the one reported */
  int64_t off = smem_offset(t, tid, addr, n, line);
  if (off < 0)
    return;
  if (t->banks)
    ts_banks_access(t->banks, (int)tid, off, (int)n, write, line);
  uint32_t ep = t->epoch;
  char b[24];
  for (int64_t i = 0; i < n; i++) {
    shadow *s = &t->sh[off + i];
    if (s->wep == ep && s->wt <= -3) { /* a TMA box's, since the barrier */
      if (tma_unseen(t, tid, s)) {
        race_error(t, tid, line, "it %s byte %lld, where a TMA box landed, without waiting "
                   "for the box's mbarrier", write ? "writes" : "reads", (long long)(off + i));
        return;
      }
    } else if (s->wep == ep && s->wt != tid) {
      race_error(t, tid, line, "it %s byte %lld, which thread %d wrote since the last barrier",
                 write ? "writes" : "reads", (long long)(off + i), s->wt);
      return;
    }
    if (write && s->rep == ep && s->rt != tid) {
      race_error(t, tid, line, "it writes byte %lld, which %s read since the last barrier",
                 (long long)(off + i), who(s->rt, b, sizeof b));
      return;
    }
    if (write) {
      s->wep = ep;
      s->wt = (int16_t)tid;
    } else {
      mark_read(s, ep, tid);
    }
  }
}

/* A load or store of the MLIR lowering's CPU form: info is the bytes, 256
 * for a store, and the source line times 512. */
void ts_gpusim_access(int64_t ctx, int64_t tid, int64_t addr, int32_t info) {
  race_access((team *)(intptr_t)ctx, tid, (uintptr_t)addr, info & 255, (info & 256) != 0,
              (int)((uint32_t)info >> 9));
}

/* cp.async of n (16, 8 or 4) bytes, done at once (the copy's chunking and
 * predicates are the generated code's); a chunk not aligned to its size is
 * an error, as the hardware's. */
void ts_gpusim_cp(int64_t dst, int64_t src, int64_t n) {
  team *t = the_team;
  if ((n != 16 && n != 8 && n != 4) || (dst | src) % n) {
    wgmma_error(t, t->cur, "a cp.async chunk that is not aligned to its size");
    return;
  }
  race_access(t, t->cur, (uintptr_t)dst, (int)n, true, 0);
  memcpy((void *)(intptr_t)dst, (const void *)(intptr_t)src, (size_t)n);
}

/* ---- TMA and mbarriers ------------------------------------------------- */

/* One box of cp.async.bulk.tensor: element (r, c) of the box at (x, y) goes
 * to byte r * row + c * esize of the box at dst, the 16-byte unit of that
 * address XORed with its bits 7.. (swz / 16 - 1 of them) as the hardware's
 * swizzle does (from the address, so a 1024-aligned box starts the
 * pattern at row 0); zeros out of bounds. */
static void tma_box(uint8_t *dst, const ts_sim_tmap *m, int64_t x, int64_t y) {
  int64_t row = (int64_t)m->box_cols * m->esize;
  for (int64_t r = 0; r < m->box_rows; r++)
    for (int64_t c = 0; c < m->box_cols; c++) {
      uintptr_t a = (uintptr_t)dst + (uintptr_t)(r * row + c * m->esize);
      a ^= ((a >> 7) & (uintptr_t)(m->swz / 16 - 1)) << 4;
      int64_t gy = y + r, gx = x + c;
      if (gy >= 0 && gy < m->rows && gx >= 0 && gx < m->cols)
        memcpy((void *)a, m->base + (gy * m->cols + gx) * m->esize, (size_t)m->esize);
      else
        memset((void *)a, 0, (size_t)m->esize);
    }
}

/* A box lands (the first wait for its phase): a race if a thread touched
 * its bytes since it was issued, other than its issuer before it did; the
 * bytes then hold what the async proxy wrote, which the waiters read. */
static void tma_land(team *t, int64_t tid, const tma_pending *p, int bar, uint32_t phase) {
  int64_t n = (int64_t)p->m->box_rows * p->m->box_cols * p->m->esize;
  int64_t off = t->err[0] ? -1 : smem_offset(t, tid, (uintptr_t)p->dst, n, 0);
  for (int64_t i = 0; off >= 0 && i < n; i++) {
    shadow *s = &t->sh[off + i];
    bool w = s->wep > p->epoch || (s->wep == p->epoch && s->wt != p->tid);
    bool r = s->rep > p->epoch || (s->rep == p->epoch && s->rt != p->tid);
    if (w || r) {
      char b[24];
      race_error(t, tid, 0, "a TMA box issued by thread %d lands on byte %lld, which %s %s "
                 "after the barrier before it was issued", p->tid, (long long)(off + i),
                 w ? who(s->wt, b, sizeof b) : who(s->rt, b, sizeof b), w ? "wrote" : "read");
      break;
    }
    s->wep = t->epoch;
    s->wt = (int16_t)(-3 - bar);
    s->ph = phase;
    s->rep = 0;
  }
  tma_box(p->dst, p->m, p->x, p->y);
}

static mbar *mbar_at(team *t, int64_t tid, uintptr_t addr, bool create) {
  for (int i = 0; i < t->nbars; i++)
    if (t->bars[i].addr == addr)
      return &t->bars[i];
  if (!create || t->nbars == MAX_MBARS) {
    wgmma_error(t, tid, create ? "more mbarriers than the simulator keeps"
                               : "an mbarrier used before mbarrier.init");
    return NULL;
  }
  mbar *b = &t->bars[t->nbars++];
  memset(b, 0, sizeof *b);
  b->addr = addr;
  return b;
}

/* An mbarrier of the TMA ring, as the GPU keeps it for one arrival: op 0
 * init (no phase completed), 1 arrive.expect_tx (arms the current phase;
 * armed twice before it completes is an error), 2 try_wait.parity until it
 * succeeds. The boxes armed on a phase are copied when a thread first
 * waits for it (the phase then completes), so a thread that reads a
 * buffer without waiting reads the old data, and a box landing in a buffer
 * a wgmma in flight still reads is the wgmma's race error; a wait for a
 * phase that never completes (a hang on the GPU) is an error. */
void ts_gpusim_mbar(int64_t ctx, int64_t tid, int32_t op, int64_t addr, int32_t parity) {
  team *t = (team *)(intptr_t)ctx;
  mbar *b = mbar_at(t, tid, (uintptr_t)addr, op == 0);
  if (!b)
    return;
  /* its 8 bytes of shared memory hold a mark, so that a tile placed over
   * them (a wrong offset) is an error rather than a silent pass */
  const uint64_t mark = 0x6d62617272696572ull;
  uint64_t have;
  memcpy(&have, (const void *)(intptr_t)addr, 8);
  if (op != 0 && have != mark)
    wgmma_error(t, tid, "an mbarrier's shared memory was overwritten");
  if (op == 0) {
    memset(b, 0, sizeof *b);
    b->addr = (uintptr_t)addr;
    memcpy((void *)(intptr_t)addr, &mark, 8);
  } else if (op == 1) {
    if (b->armed)
      wgmma_error(t, tid, "an mbarrier armed again before its phase completed");
    b->armed = true;
  } else {
    if (b->armed) {
      for (int i = 0; i < b->n; i++)
        tma_land(t, tid, &b->box[i], (int)(b - t->bars), b->done + 1);
      b->n = 0;
      b->armed = false;
      b->done++;
    }
    if (!b->done || (b->done & 1) == (uint32_t)(parity & 1))
      wgmma_error(t, tid, "a wait for an mbarrier phase that never completes");
    else
      t->f[tid].seen[b - t->bars] = b->done;
  }
}

/* cp.async.bulk.tensor of one box onto the armed phase of mbarrier `bar`. */
void ts_gpusim_tma(int64_t ctx, int64_t tid, int64_t dst, int64_t map, int64_t x, int64_t y,
                   int64_t bar) {
  team *t = (team *)(intptr_t)ctx;
  mbar *b = mbar_at(t, tid, (uintptr_t)bar, false);
  if (!b)
    return;
  if (!b->armed || b->n == MAX_BOXES) {
    wgmma_error(t, tid, b->armed ? "more TMA boxes on one mbarrier phase than the simulator keeps"
                                 : "a TMA copy onto an mbarrier not armed (expect_tx)");
    return;
  }
  b->box[b->n++] = (tma_pending){(uint8_t *)(intptr_t)dst, (const ts_sim_tmap *)(intptr_t)map,
                                 x, y, t->epoch, (int16_t)tid};
}

void ts_sim_mbar(int op, void *bar, unsigned parity);
void ts_sim_mbar(int op, void *bar, unsigned parity) {
  ts_gpusim_mbar((int64_t)(intptr_t)the_team, the_team->cur, op, (int64_t)(intptr_t)bar,
                 (int32_t)parity);
}
void ts_sim_tma(void *dst, long long map, long long x, long long y, void *bar);
void ts_sim_tma(void *dst, long long map, long long x, long long y, void *bar) {
  ts_gpusim_tma((int64_t)(intptr_t)the_team, the_team->cur, (int64_t)(intptr_t)dst, map, x, y,
                (int64_t)(intptr_t)bar);
}

/* The race check of a wgmma, at its issue by the warpgroup's last thread:
 * its operands' bytes may not have been written since the last barrier,
 * and are read by that thread (a write by another thread before the next
 * barrier is a race: the wgmma reads them asynchronously). */
static void wgmma_reads(team *t, int64_t tid, uint64_t da, uint64_t db, int n, int kind) {
  bool mn = (kind & 4) != 0;
  kind &= 3;
  wg_op ops[2] = {wg_decode(t, da, kind, false), wg_decode(t, db, kind, mn)};
  int eb = (int)ops[0].eb, kk = 32 / eb;
  for (int op = 0; op < 2 && !t->err[0]; op++)
    for (int i = 0; i < (op ? n : 64) && !t->err[0]; i++)
      for (int k = 0; k < kk; k++) {
        uintptr_t a = wg_at(&ops[op], i, k);
        int64_t off = smem_offset(t, tid, a, eb, 0);
        if (off < 0)
          return;
        for (int j = 0; j < eb; j++) {
          shadow *s = &t->sh[off + j];
          if (s->wep == t->epoch && (s->wt > -3 || tma_unseen(t, tid, s))) {
            char b[24];
            race_error(t, tid, 0, "a wgmma reads byte %lld of its %s, which %s wrote since "
                       "the last barrier", (long long)(off + j), op ? "B" : "A",
                       s->wt > -3 ? who(s->wt, b, sizeof b) : "a TMA box not waited for");
            return;
          }
          mark_read(s, t->epoch, tid);
        }
      }
}

/* kind | 8: scale-d 0 (D = A B, the accumulators' old values unread). The
 * instruction is asynchronous, as on the GPU: it is queued here and
 * done at the wait_group that retires it (ts_gpusim_wgmma_sync), so an
 * accumulator read before that wait reads the old value; its product is
 * also taken at issue, and if the operands in shared memory changed in
 * between (a buffer refilled while a wgmma still reads it) the block fails
 * with an error. */
void ts_gpusim_wgmma(int64_t ctx, int64_t tid, int64_t desc_a, int64_t desc_b,
                     int64_t acc, int32_t n, int32_t kind) {
  team *t = (team *)(intptr_t)ctx;
  fiber *f = &t->f[tid];
  if (n < 8 || n > 256) {
    wgmma_error(t, tid, "a wgmma with N outside 8..256");
    return;
  }
  if (f->nq == f->cap) {
    int cap = f->cap ? 2 * f->cap : 16;
    inflight *q = realloc(f->q, (size_t)cap * sizeof *q);
    if (!q) {
      wgmma_error(t, tid, "no memory for the wgmma queue");
      return;
    }
    f->q = q;
    f->cap = cap;
  }
  if (tid % 128 == 127)
    wgmma_reads(t, tid, (uint64_t)desc_a, (uint64_t)desc_b, n, kind);
  inflight *e = &f->q[f->nq++];
  *e = (inflight){(uint64_t)desc_a, (uint64_t)desc_b, (void *)(intptr_t)acc, n, kind,
                  f->commits, {0}};
  wgmma_product(t, tid, e->da, e->db, n, kind, e->sum);
}

/* wgmma.commit_group (n < 0) or wgmma.wait_group n: the wgmma of all but
 * the n most recent committed groups are done, in the order issued. */
void ts_gpusim_wgmma_sync(int64_t ctx, int64_t tid, int32_t n) {
  team *t = (team *)(intptr_t)ctx;
  fiber *f = &t->f[tid];
  if (n < 0) {
    f->commits++;
    return;
  }
  int done = 0;
  float now[128];
  while (done < f->nq && f->q[done].group + (uint32_t)n < f->commits) {
    inflight *e = &f->q[done++];
    wgmma_product(t, tid, e->da, e->db, e->n, e->kind, now);
    if (memcmp(now, e->sum, (size_t)(e->n / 2) * sizeof *now))
      wgmma_error(t, tid, "shared memory a wgmma reads changed while it was in flight");
    for (int r = 0; r < e->n / 2; r++) { /* kind | 8: scale-d 0, D = A B */
      if (e->kind & 16) { /* s8: i32, wrapping */
        int32_t *acc = e->acc;
        acc[r] = (int32_t)((e->kind & 8 ? 0u : (uint32_t)acc[r]) + (uint32_t)(int32_t)now[r]);
      } else {
        float *acc = e->acc;
        acc[r] = (e->kind & 8 ? 0.0f : acc[r]) + now[r];
      }
    }
  }
  if (done > 0) { /* (a thread that issued none has no queue: f->q NULL) */
    memmove(f->q, f->q + done, (size_t)(f->nq - done) * sizeof *f->q);
    f->nq -= done;
  }
}

/* The same for the CUDA C lowering built for the CPU (cudasim.c's shim). */
void ts_sim_wgmma(unsigned long long da, unsigned long long db, void *acc, int n, int kind);
void ts_sim_wgmma(unsigned long long da, unsigned long long db, void *acc, int n, int kind) {
  ts_gpusim_wgmma((int64_t)(intptr_t)the_team, the_team->cur, (int64_t)da, (int64_t)db,
                  (int64_t)(intptr_t)acc, n, kind);
}

void ts_sim_wgmma_sync(int n);
void ts_sim_wgmma_sync(int n) {
  ts_gpusim_wgmma_sync((int64_t)(intptr_t)the_team, the_team->cur, n);
}

/* What the CUDA C of a kernel built for the CPU calls (cudasim.c's shim):
 * threadIdx (0), blockIdx (1), gridDim (2); __syncthreads;
 * __shfl_xor_sync; the block's shared memory. */
long long ts_sim_index(int what, int dim);
void ts_sim_barrier(void);
int ts_sim_shuffle(int v, int off);
unsigned char *ts_sim_smem(void);

long long ts_sim_index(int what, int dim) {
  team *t = the_team;
  if (what == 0)
    return dim == 0 ? t->cur : 0;
  return what == 1 ? t->block[dim] : t->grid[dim];
}

void ts_sim_barrier(void) { wait_as(the_team, AT_BARRIER); }

int ts_sim_shuffle(int v, int off) {
  return ts_gpusim_shuffle((int64_t)(intptr_t)the_team, the_team->cur, v, off);
}

unsigned char *ts_sim_smem(void) { return the_team->smem; }

/* The race check for a kernel in C (tests/unit/test_gpusim.c): this
 * thread reads (write 0) or writes `bytes` at `addr`. */
void ts_sim_access(const void *addr, int bytes, int write);
void ts_sim_access(const void *addr, int bytes, int write) {
  team *t = the_team;
  race_access(t, t->cur, (uintptr_t)addr, bytes, write != 0, t->f[t->cur].line);
}

/* The CUDA C lowering's statement at `line` of the kernel's source begins
 * (TS_LINE): the line its accesses report. */
void ts_sim_line(int line);
void ts_sim_line(int line) { the_team->f[the_team->cur].line = line; }

/* One GPU thread running one block. */
static void fiber_main(void) {
  team *t = the_team;
  fctx_enter(&t->sched);
  int64_t tid = t->cur;
  /* the kernel's arguments, then the scratch memref (allocated, aligned,
   * offset, size, stride) and its bytes per block: what both forms take */
  void *slots[TS_GPUSIM_MAX_SLOTS + 40];
  memcpy(slots, t->slots, (size_t)t->nslots * sizeof *slots);
  int64_t zero = 0, one = 1, ctx = (int64_t)(intptr_t)t;
  int64_t ssize = t->scratch_size > 0 ? t->scratch_size : 1;
  int64_t msize = t->smem_size > 0 ? t->smem_size : 1;
  int n = t->nslots;
  slots[n++] = &t->scratch;
  slots[n++] = &t->scratch;
  slots[n++] = &zero;
  slots[n++] = &ssize;
  slots[n++] = &one;
  slots[n++] = &t->per_block;
  for (int i = 0; i < t->ntail; i++) /* tensor maps and their flag */
    slots[n++] = t->tail[i];
  if (!t->direct) { /* the MLIR form: smem memref, ctx, tid, block, grid */
    slots[n++] = &t->smem;
    slots[n++] = &t->smem;
    slots[n++] = &zero;
    slots[n++] = &msize;
    slots[n++] = &one;
    slots[n++] = &ctx;
    slots[n++] = &tid;
    for (int i = 0; i < 3; i++)
      slots[n++] = &t->block[i];
    slots[n++] = &t->grid[0];
    slots[n++] = &t->grid[1];
  }
  t->gpu(slots);
  if (t->f[tid].nq)
    wgmma_error(t, tid, "the thread ended with a wgmma not waited for");
  t->f[tid].state = DONE;
  fctx_switch(&t->f[tid].ctx, &t->sched, true);
}

/* Runs one block to the end; an error when threads diverge at a barrier. */
static ts_status run_block(team *t) {
  t->nbars = 0;
  t->epoch++;
  for (int i = 0; i < t->threads; i++) {
    fiber *f = &t->f[i];
    fctx_make(&f->ctx, f->stack, STACK_SIZE, fiber_main);
    f->state = RUN;
    f->rounds = 0;
    f->nq = 0;
    f->commits = 0;
    f->line = 0;
    memset(f->seen, 0, sizeof f->seen);
  }
  for (;;) {
    bool ran = false;
    for (int i = 0; i < t->threads; i++)
      if (t->f[i].state == RUN) {
        t->cur = i;
        fctx_switch(&t->sched, &t->f[i].ctx, false);
        ran = true;
      }
    if (ran)
      continue;
    /* nobody can run: release whole warps at a shuffle, else the block at
     * a barrier */
    int done = 0, bar = 0;
    bool released = false;
    for (int w = 0; w * 32 < t->threads; w++) {
      int lo = w * 32, hi = lo + 32 < t->threads ? lo + 32 : t->threads, at = 0;
      for (int i = lo; i < hi; i++)
        at += t->f[i].state == AT_WARP;
      if (at == hi - lo) {
        for (int i = lo; i < hi; i++)
          t->f[i].state = RUN;
        released = true;
      }
    }
    if (released)
      continue;
    for (int i = 0; i < t->threads; i++) {
      done += t->f[i].state == DONE;
      bar += t->f[i].state == AT_BARRIER;
    }
    for (int i = 0; done == t->threads && i < t->nbars; i++)
      if (t->bars[i].armed)
        wgmma_error(t, 0, "the block ended with TMA copies no thread waited for");
    if (done == t->threads && t->banks)
      ts_banks_epoch(t->banks);
    if (done == t->threads)
      return t->err[0] ? ts_status_make(TS_ERR_INTERNAL, "%s", t->err) : NULL;
    if (bar == t->threads) {
      if (t->banks)
        ts_banks_epoch(t->banks);
      t->epoch++;
      for (int i = 0; i < t->threads; i++)
        t->f[i].state = RUN;
      continue;
    }
    return ts_status_make(TS_ERR_INTERNAL,
                          "GPU simulator: block (%lld, %lld, %lld) diverged: "
                          "%d threads wait at a barrier, %d at a shuffle, %d "
                          "have finished (a bug in Tessera's GPU lowering)",
                          (long long)t->block[0], (long long)t->block[1],
                          (long long)t->block[2], bar,
                          t->threads - bar - done, done);
  }
}

/* The order blocks run in: TESSERA_GPUSIM_ORDER is "forward" (the
 * default: linear block index 0, 1, ...), "reverse", or "shuffle" /
 * "shuffle:SEED" (i -> (a i + c) mod total with a coprime to total, both
 * drawn from the seed: every block once, in a scattered order). Blocks of a
 * GPU grid run in no set order, at once; a kernel whose result depends on
 * the order (blocks writing the same element, one block reading what
 * another writes) runs right forward and fails in another order. */
typedef struct {
  int kind; /* 0 forward, 1 reverse, 2 shuffle */
  int64_t total, a, c;
} block_order;

static int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    int64_t r = a % b;
    a = b, b = r;
  }
  return a;
}

static ts_status order_from_env(block_order *o, int64_t total) {
  const char *e = getenv("TESSERA_GPUSIM_ORDER");
  *o = (block_order){0, total, 1, 0};
  if (!e || !*e || !strcmp(e, "forward"))
    return NULL;
  if (!strcmp(e, "reverse")) {
    o->kind = 1;
    return NULL;
  }
  uint64_t seed = 1;
  char *end = NULL;
  if (!strncmp(e, "shuffle", 7) && (e[7] == 0 || e[7] == ':')) {
    if (e[7] == ':')
      seed = strtoull(e + 8, &end, 10);
    if (e[7] == 0 || (end != e + 8 && *end == 0)) {
      /* splitmix64 of the seed: the stride near a golden-ratio fraction of
       * the grid (scattered, never 1 for grids of 3 and more), the start */
      uint64_t z = seed * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      o->kind = 2;
      o->c = (int64_t)(z % (uint64_t)total);
      o->a = (int64_t)((double)total * (0.55 + 0.1 * (double)(z >> 40) / (1 << 24)));
      if (o->a < 1)
        o->a = 1;
      while (gcd64(o->a, total) != 1)
        o->a++;
      return NULL;
    }
  }
  return ts_status_make(TS_ERR_INVALID, "TESSERA_GPUSIM_ORDER=%s: expected forward, "
                        "reverse, shuffle or shuffle:SEED (a decimal number)", e);
}

static int64_t order_at(const block_order *o, int64_t i) {
  if (o->kind == 1)
    return o->total - 1 - i;
  if (o->kind == 2) {
    __int128 v = (__int128)o->a * i + o->c;
    return (int64_t)(v % o->total);
  }
  return i;
}

ts_status ts_gpusim_launch(ts_packed_fn gpu, bool direct, int threads,
                           void *const *slots, int nslots, void *const *tail, int ntail,
                           const int64_t grid[3], int64_t total,
                           int64_t per_block, int64_t smem) {
  if (threads < 1 || threads > MAX_THREADS || nslots > TS_GPUSIM_MAX_SLOTS || ntail > 16)
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "the GPU simulator runs 1 to %d threads per block",
                          MAX_THREADS);
  if (total == 0)
    return NULL;
  int64_t scratch;
  if (__builtin_mul_overflow(per_block, total, &scratch) ||
      scratch > (1LL << 34))
    return ts_status_make(TS_ERR_NOMEM, "the GPU simulator needs %lld x %lld "
                          "bytes of scratch",
                          (long long)per_block, (long long)total);
  team *t = calloc(1, sizeof *t);
  ts_status st = NULL;
  if (!t)
    return ts_status_nomem();
  t->f = calloc((size_t)threads, sizeof *t->f);
  t->scratch = calloc(1, (size_t)(scratch > 0 ? scratch : 16));
  t->smem = calloc(1, (size_t)(smem > 0 ? smem : 16));
  t->sh = calloc((size_t)(smem > 0 ? smem : 16), sizeof *t->sh);
  bool banks = ts_gpusim_banks_on();
  t->banks = banks ? ts_banks_new(threads) : NULL;
  bool ok = t->f && t->scratch && t->smem && t->sh && (t->banks || !banks);
  for (int i = 0; ok && i < threads; i++)
    ok = (t->f[i].stack = malloc(STACK_SIZE)) != NULL;
  if (!ok) {
    st = ts_status_nomem();
    goto out;
  }
  t->threads = threads;
  t->direct = direct;
  t->gpu = gpu;
  t->slots = slots;
  t->nslots = nslots;
  t->tail = tail;
  t->ntail = ntail;
  t->scratch_size = scratch;
  t->smem_size = smem;
  t->per_block = per_block;
  memcpy(t->grid, grid, sizeof t->grid);
  the_team = t;
  block_order ord;
  st = order_from_env(&ord, total);
  for (int64_t i = 0; i < total && !st; i++) {
    int64_t blk = order_at(&ord, i);
    t->block[0] = blk % grid[0];
    t->block[1] = blk / grid[0] % grid[1];
    t->block[2] = blk / grid[0] / grid[1];
    st = run_block(t);
  }
out:
  for (int i = 0; t->f && i < threads; i++) {
    free(t->f[i].stack);
    free(t->f[i].q);
  }
  free(t->f);
  free(t->scratch);
  free(t->smem);
  free(t->sh);
  if (t->banks && !st)
    ts_banks_finish(t->banks);
  else
    ts_banks_free(t->banks);
  free(t);
  return st;
}
