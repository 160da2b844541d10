/* test_gpusim.c - the GPU simulator's wgmma and TMA as the GPU runs them
 * (TMA at the end: a box lands when its mbarrier phase is first waited
 * for; a phase armed twice, never waited for, an mbarrier not initialised
 * and a wait for the wrong parity are errors). wgmma: queued at
 * issue and done at the wait_group that retires it (an accumulator read
 * before that wait still holds the old value; wait_group n leaves the n
 * newest groups in flight; kind | 8, scale-d 0, ignores the old
 * accumulators), and an error, not a silent result, when the
 * shared memory a wgmma reads changes while it is in flight or a thread
 * ends with one not waited for. Then the shared memory race check: two
 * threads touching a byte between two barriers, one of them writing; a
 * wgmma reading what a thread wrote since the barrier; a TMA box read
 * before its mbarrier was waited for, or landing on bytes read after it
 * was issued; an access outside the block's shared memory. The block order
 * (TESSERA_GPUSIM_ORDER). The "kernels" here are C functions run on
 * the simulator's threads directly (runtime/gpusim.c's CUDA C shim). */
#define _GNU_SOURCE
#include "runtime/internal.h"
#include "tests/unit/harness.h"

#include <stdlib.h>
#include <string.h>

long long ts_sim_index(int what, int dim);
void ts_sim_barrier(void);
unsigned char *ts_sim_smem(void);
void ts_sim_wgmma(unsigned long long da, unsigned long long db, float *acc, int n, int kind);
void ts_sim_wgmma_sync(int n);
void ts_sim_tma(void *dst, long long map, long long x, long long y, void *bar);
void ts_sim_mbar(int op, void *bar, unsigned parity);
void ts_sim_access(const void *addr, int bytes, int write);
void ts_sim_line(int line);

enum { THREADS = 128, SMEM = 8192 };

static int scenario;
static int order[64], norder; /* scenario 99's blocks, as they ran */
static float seen[THREADS][3]; /* accumulator 0 at the points each scenario reads */

/* A [64, 16] and B [8, 16] bf16 K-major with 32-byte rows (32B swizzle) at
 * the first 1024-aligned byte of shared memory, every element `a` / `b`
 * (so the swizzle does not matter); the descriptor of the one at byte
 * `off` from there. */
static unsigned long long desc(unsigned off) {
  unsigned char *s = ts_sim_smem();
  unsigned long long base = (unsigned long long)s & ~1023ull;
  unsigned long long at = ((unsigned long long)s + 1023) & ~1023ull;
  return (((at - base + off) >> 4) & 0x3fff) | ((unsigned long long)(8 * 32 / 16) << 32) |
         (3ull << 62);
}

static void fill(unsigned off, int count, unsigned short v) {
  unsigned short *p =
      (unsigned short *)((((unsigned long long)ts_sim_smem() + 1023) & ~1023ull) + off);
  for (int i = 0; i < count; i++)
    p[i] = v;
}

enum { A_OFF = 0, B_OFF = 2048 };

/* TMA: a [10, 70] bf16 tensor (element (r, c) = 100 r + c), its map for
 * boxes of 8 x 64 with the 128-byte swizzle, the box at (x 40, y 4) into
 * the 1024-aligned tile at byte 4096 (columns 40..103, rows 4..11: past
 * column 69 and row 9 zeros; the bytes there hold 0xffff before), the
 * mbarrier at byte 6144; got[t] is what thread t read at tile row 1,
 * column 3 (tensor (5, 43) = 543) before and after its wait, at row 2
 * column 40 (past the end: 0), and at row 7 column 9 (past the last row:
 * 0). */
static unsigned short tensor[10 * 70];
static ts_sim_tmap tmap = {(const uint8_t *)tensor, 10, 70, 8, 64, 2, 128};
static unsigned short got[THREADS][4];

enum { T_OFF = 4096, BAR_OFF = 6144 };

static unsigned short *tile_at(int r, int c) {
  unsigned long long a = (((unsigned long long)ts_sim_smem() + 1023) & ~1023ull) + T_OFF +
                         (unsigned long long)(r * 128 + c * 2);
  a ^= ((a >> 7) & 7) << 4; /* the hardware's 128-byte swizzle, from the address */
  return (unsigned short *)a;
}

static void tma_scenario(int tid) {
  unsigned char *base = (unsigned char *)(((unsigned long long)ts_sim_smem() + 1023) & ~1023ull);
  void *bar = base + BAR_OFF;
  if (scenario != 8 && tid == 0)
    ts_sim_mbar(0, bar, 0);
  if (tid == 0)
    memset(base + T_OFF, 0xff, 8 * 128);
  ts_sim_barrier();
  if (tid == 0) {
    ts_sim_mbar(1, bar, 0);
    if (scenario == 6)
      ts_sim_mbar(1, bar, 0); /* armed twice */
    ts_sim_tma(base + T_OFF, (long long)(intptr_t)&tmap, 40, 4, bar);
  }
  got[tid][0] = *tile_at(1, 3);
  if (scenario != 7) /* 7: nobody waits */
    ts_sim_mbar(2, bar, scenario == 9 ? 1 : 0);
  got[tid][1] = *tile_at(1, 3);
  got[tid][2] = *tile_at(2, 40);
  got[tid][3] = *tile_at(7, 9);
}

/* The shared memory race check (runtime/gpusim.c): the accesses a kernel's
 * CPU form reports, here by hand; threads run in order of tid between two
 * barriers. X: a word of shared memory. */
enum { X_OFF = 512 };
static long long race_byte; /* scenario 23's byte, from the block's shared memory */

static void race_scenario(int tid) {
  unsigned char *base = (unsigned char *)(((unsigned long long)ts_sim_smem() + 1023) & ~1023ull);
  unsigned char *x = base + X_OFF;
  switch (scenario) {
  case 22: /* as 10, in a statement at line 42 (the CUDA C lowering's TS_LINE) */
    ts_sim_line(42);
    /* fall through */
  case 10: /* written by 3, read by 7 with no barrier between */
  case 11: /* the same with one */
    if (tid == 3)
      ts_sim_access(x, 4, 1);
    if (scenario == 11)
      ts_sim_barrier();
    if (tid == 7)
      ts_sim_access(x + 2, 2, 0);
    break;
  case 23: /* one access over bytes of different histories: thread 7's own
            * word, then two bytes thread 3 wrote (the race is at the
            * first of those, past the bytes without one) */
    if (tid == 3)
      ts_sim_access(x + 4, 2, 1);
    if (tid == 7) {
      ts_sim_access(x, 4, 1);
      race_byte = (long long)(x + 4 - ts_sim_smem());
      ts_sim_access(x, 8, 0);
    }
    break;
  case 12: /* read by 1 and 2, then written by 5 */
    if (tid == 1 || tid == 2)
      ts_sim_access(x, 4, 0);
    if (tid == 5)
      ts_sim_access(x, 4, 1);
    break;
  case 13: /* written by 2 and by 4 */
    if (tid == 2 || tid == 4)
      ts_sim_access(x + 1, 1, 1);
    break;
  case 14: /* no race: one thread reads and writes; a broadcast slot written
            * by thread 0, read by all, written again after a barrier */
    ts_sim_access(x + 16 + 4 * tid, 4, 0);
    ts_sim_access(x + 16 + 4 * tid, 4, 1);
    for (int r = 0; r < 3; r++) {
      if (tid == 0)
        ts_sim_access(x, 4, 1);
      ts_sim_barrier();
      ts_sim_access(x, 4, 0);
      ts_sim_barrier();
    }
    break;
  case 15: /* past the end of the block's shared memory */
    if (tid == 9)
      ts_sim_access(ts_sim_smem() + SMEM - 2, 4, 0);
    break;
  case 16: /* a wgmma's B written by thread 5 since the barrier */
  case 17: { /* the same after a barrier: no race */
    float acc[4] = {0};
    if (tid == 0) {
      fill(A_OFF, 64 * 16, 0x3f80);
      fill(B_OFF, 8 * 16, 0x4000);
    }
    ts_sim_barrier();
    if (tid == 5)
      ts_sim_access(base + B_OFF + 6, 2, 1);
    if (scenario == 17)
      ts_sim_barrier();
    ts_sim_wgmma(desc(A_OFF), desc(B_OFF), acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    ts_sim_wgmma_sync(0);
    break;
  }
  case 18:   /* a TMA box read by thread 3 before it waited (thread 0 waited) */
  case 19:   /* read by all after their own waits: no race */
  case 20: { /* read by thread 2 after the box was issued, before it landed */
    void *bar = base + BAR_OFF;
    if (tid == 0) {
      ts_sim_mbar(0, bar, 0);
      ts_sim_mbar(1, bar, 0);
      ts_sim_tma(base + T_OFF, (long long)(intptr_t)&tmap, 40, 4, bar);
    }
    ts_sim_barrier();
    if (scenario == 20) {
      if (tid == 2)
        ts_sim_access(base + T_OFF + 130, 2, 0);
      ts_sim_barrier();
    }
    if (tid == 3 && scenario == 18)
      ts_sim_access(base + T_OFF + 130, 2, 0);
    ts_sim_mbar(2, bar, 0);
    ts_sim_access(base + T_OFF + 130, 2, 0);
    break;
  }
  case 21: /* bank conflicts: 4 warps each load a word of stride 1, 32, 0
            * (broadcast) and 33 words, store 16 bytes a lane (four phases)
            * and 2 bytes at a stride of 64 bytes (lanes l, l + 2, ... share
            * a bank: 16 words in bank 0, 16 in bank 16); each warp its own
            * bytes to store (no race) */
    ts_sim_access(base + 4 * tid, 4, 0);
    ts_sim_access(base + 128 * (tid % 32), 4, 0);
    ts_sim_access(base + 64, 4, 0);
    ts_sim_access(base + 132 * (tid % 32), 4, 0);
    ts_sim_barrier();
    ts_sim_access(base + 512 * (tid / 32) + 16 * (tid % 32), 16, 1);
    ts_sim_access(base + 2048 + 2 * (tid / 32) + 64 * (tid % 32), 2, 1);
    break;
  }
}

static void kernel(void **args) {
  (void)args;
  int tid = (int)ts_sim_index(0, 0);
  if (scenario == 99) { /* the block order: each block's linear index */
    if (tid == 0 && norder < 64)
      order[norder++] = (int)(ts_sim_index(1, 0) + 7 * ts_sim_index(1, 1));
    return;
  }
  if (scenario >= 10) {
    race_scenario(tid);
    return;
  }
  if (scenario >= 5) {
    tma_scenario(tid);
    return;
  }
  float acc[4] = {0};
  if (tid == 0) {
    fill(A_OFF, 64 * 16, 0x3f80); /* 1.0 */
    fill(B_OFF, 8 * 16, 0x4000);  /* 2.0 */
  }
  ts_sim_barrier();
  unsigned long long da = desc(A_OFF), db = desc(B_OFF);
  switch (scenario) {
  case 0: /* two groups; wait 1 retires the first only, wait 0 the second */
    ts_sim_wgmma(da, db, acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    seen[tid][0] = acc[0]; /* in flight: still 0 */
    ts_sim_wgmma(da, db, acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    ts_sim_wgmma_sync(1);
    seen[tid][1] = acc[0]; /* one product: 16 * 1 * 2 */
    ts_sim_wgmma_sync(0);
    seen[tid][2] = acc[0]; /* both */
    break;
  case 1: /* B overwritten while the wgmma reading it is in flight */
    ts_sim_wgmma(da, db, acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    ts_sim_barrier();
    if (tid == 5)
      fill(B_OFF, 8 * 16, 0x4040); /* 3.0 */
    ts_sim_barrier();
    ts_sim_wgmma_sync(0);
    seen[tid][0] = acc[0];
    break;
  case 2: /* a wgmma never waited for */
    ts_sim_wgmma(da, db, acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    break;
  case 4: /* scale-d 0 (kind | 8): the old accumulators are not read */
    acc[0] = 100.0f;
    ts_sim_wgmma(da, db, acc, 8, 8);
    ts_sim_wgmma_sync(-1);
    ts_sim_wgmma(da, db, acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    ts_sim_wgmma_sync(0);
    seen[tid][0] = acc[0];
    break;
  case 3: /* overwritten only after the wait: no race */
    ts_sim_wgmma(da, db, acc, 8, 0);
    ts_sim_wgmma_sync(-1);
    ts_sim_wgmma_sync(0);
    ts_sim_barrier();
    if (tid == 5)
      fill(B_OFF, 8 * 16, 0x4040);
    ts_sim_barrier();
    seen[tid][0] = acc[0];
    break;
  }
}

/* The blocks of a 7 x 3 grid in the order TESSERA_GPUSIM_ORDER = `how`
 * runs them; true when each ran once. */
static bool run_order(const char *how, ts_status *st) {
  setenv("TESSERA_GPUSIM_ORDER", how, 1);
  scenario = 99;
  norder = 0;
  int64_t grid[3] = {7, 3, 1};
  void *none[1] = {NULL};
  *st = ts_gpusim_launch(kernel, true, 32, none, 0, none, 0, grid, 21, 0, SMEM);
  unsetenv("TESSERA_GPUSIM_ORDER");
  int seen_once[21] = {0};
  for (int i = 0; i < norder; i++)
    seen_once[order[i]]++;
  bool all = norder == 21;
  for (int i = 0; i < 21; i++)
    all &= seen_once[i] == 1;
  return all;
}

static ts_status run(int which) {
  scenario = which;
  memset(seen, 0, sizeof seen);
  int64_t grid[3] = {1, 1, 1};
  void *none[1] = {NULL};
  return ts_gpusim_launch(kernel, true, THREADS, none, 0, none, 0, grid, 1, 0, SMEM);
}

static bool says(ts_status st, const char *needle) {
  bool ok = st && strstr(ts_status_message(st), needle);
  if (st && !ok)
    fprintf(stderr, "unexpected: %s\n", ts_status_message(st));
  ts_status_free(st);
  return ok;
}

int main(void) {
  CHECK(run(0) == NULL);
  bool all = true;
  for (int t = 0; t < THREADS; t++)
    all &= seen[t][0] == 0.0f && seen[t][1] == 32.0f && seen[t][2] == 64.0f;
  CHECK(all);

  CHECK(says(run(1), "changed while it was in flight"));
  CHECK(says(run(2), "not waited for"));

  CHECK(run(3) == NULL);
  all = true;
  for (int t = 0; t < THREADS; t++)
    all &= seen[t][0] == 32.0f;
  CHECK(all);

  CHECK(run(4) == NULL);
  all = true;
  for (int t = 0; t < THREADS; t++)
    all &= seen[t][0] == 64.0f;
  CHECK(all);

  /* TMA: the box lands, swizzled, when a thread first waits for its phase
   * (thread 0, which runs first after the barrier, read the old bytes
   * before its wait; the threads after it find the box there) */
  for (int r = 0; r < 10; r++)
    for (int c = 0; c < 70; c++)
      tensor[r * 70 + c] = (unsigned short)(100 * r + c);
  CHECK(run(5) == NULL);
  all = true;
  for (int t = 0; t < THREADS; t++)
    all &= got[t][0] == (t ? 543 : 0xffff) && got[t][1] == 543 && got[t][2] == 0 && got[t][3] == 0;
  CHECK(all);
  CHECK(says(run(6), "armed again before its phase completed"));
  CHECK(says(run(7), "no thread waited for"));
  CHECK(says(run(8), "used before mbarrier.init"));
  CHECK(says(run(9), "never completes"));

  /* the race check: the block's first race, with the thread, the byte and
   * the other thread */
  CHECK(says(run(10), "thread 7: shared memory race: it reads byte"));
  CHECK(says(run(10), "which thread 3 wrote since the last barrier"));
  CHECK(run(11) == NULL);
  CHECK(says(run(22), "thread 7: shared memory race at line 42: it reads byte"));
  {
    char want[96];
    ts_status st = run(23);
    snprintf(want, sizeof want, "thread 7: shared memory race: it reads byte %lld, which thread 3",
             race_byte);
    CHECK(says(st, want));
  }
  CHECK(says(run(12), "thread 5: shared memory race: it writes byte"));
  CHECK(says(run(12), "which other threads read since the last barrier"));
  CHECK(says(run(13), "thread 4: shared memory race: it writes byte"));
  CHECK(run(14) == NULL);
  CHECK(says(run(15), "thread 9: a shared memory access outside the block's 8192 bytes"));
  CHECK(says(run(16), "a wgmma reads byte"));
  CHECK(says(run(16), "of its B, which thread 5 wrote"));
  CHECK(run(17) == NULL);
  CHECK(says(run(18), "thread 3: shared memory race: it reads byte"));
  CHECK(says(run(18), "where a TMA box landed, without waiting for the box's mbarrier"));
  CHECK(run(19) == NULL);
  CHECK(says(run(20), "a TMA box issued by thread 0 lands on byte"));
  CHECK(says(run(20), "which thread 2 read after the barrier before it was issued"));

  /* the block order: forward by default, reverse, two shuffles that differ
   * (each block once), and a bad value refused before any block runs */
  ts_status st = NULL;
  CHECK(run_order("", &st) && st == NULL);
  bool fwd = true, rev = true;
  for (int i = 0; i < 21; i++)
    fwd &= order[i] == i;
  CHECK(fwd);
  CHECK(run_order("reverse", &st) && st == NULL);
  for (int i = 0; i < 21; i++)
    rev &= order[i] == 20 - i;
  CHECK(rev);
  int first[21];
  CHECK(run_order("shuffle", &st) && st == NULL);
  memcpy(first, order, sizeof first);
  int in_place = 0;
  for (int i = 0; i < 21; i++)
    in_place += order[i] == i;
  CHECK(in_place < 5);
  CHECK(run_order("shuffle:12345", &st) && st == NULL);
  CHECK(memcmp(first, order, sizeof first) != 0);
  CHECK(!run_order("sideways", &st) && norder == 0);
  CHECK(says(st, "TESSERA_GPUSIM_ORDER=sideways: expected forward, reverse, shuffle"));
  CHECK(!run_order("shuffle:x", &st));
  CHECK(says(st, "shuffle:SEED"));

  /* bank conflicts (runtime/gpusim_banks.c): 4 warps, loads 1 + 32 + 1 + 1
   * wavefronts (ideal 1 each), stores 4 (ideal 4) + 16 (ideal 1) */
  ts_gpusim_banks(true);
  CHECK(run(21) == NULL);
  ts_gpusim_banks(false);
  int64_t bk[6];
  ts_gpusim_bank_totals(bk);
  CHECK(bk[0] == 4 * 4 && bk[1] == 4 * 35 && bk[2] == 4 * 4);
  CHECK(bk[3] == 4 * 2 && bk[4] == 4 * 20 && bk[5] == 4 * 5);
  if (bk[1] != 4 * 35 || bk[4] != 4 * 20)
    fprintf(stderr, "banks: %lld %lld %lld / %lld %lld %lld\n", (long long)bk[0],
            (long long)bk[1], (long long)bk[2], (long long)bk[3], (long long)bk[4],
            (long long)bk[5]);
  return ts_test_finish();
}
