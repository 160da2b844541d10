/* gpusim_banks.c - shared memory bank conflicts, counted by the GPU
 * simulator (runtime/gpusim.c) from the same accesses its race check sees.
 *
 * Shared memory has 32 banks of 4-byte words; a warp's load or store is
 * served in wavefronts, one per distinct word a bank must deliver (lanes
 * reading the same word share it). 8-byte accesses go as two half-warp
 * phases and 16-byte ones as four quarter-warp phases, so the best a
 * request can do is one wavefront a phase: its ideal. The simulator runs a
 * warp's lanes one after another, not in lock step, so a request is
 * rebuilt from them: the k-th access of each lane since the last barrier,
 * grouped by source line, kind and size (lanes that diverged onto other
 * lines form requests of their own). Up to CAP accesses of a thread an
 * epoch are counted; the rest are not (the totals say how many).
 *
 * On with TESSERA_GPUSIM_BANKS set (then each launch of a kernel reports
 * its worst lines on stderr: runtime/kernel.c) or ts_gpusim_banks(true). */
#include "runtime/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP 512     /* accesses a thread an epoch */
#define LINES 8192  /* source lines with their own counts (others: line 0) */

struct ts_banks {
  int threads, warps;
  uint16_t *n;     /* [threads]: accesses this epoch */
  uint32_t *off;   /* [warps][CAP][32]: byte offsets */
  uint32_t *meta;  /* [warps][CAP][32]: line << 9 | store << 8 | bytes */
  ts_bank_line *lines; /* [LINES] */
  int64_t dropped;
};

static _Thread_local bool forced;
static _Thread_local ts_bank_line *last; /* the last launch's lines, [LINES] */
static _Thread_local int64_t last_dropped;

void ts_gpusim_banks(bool on) { forced = on; }

bool ts_gpusim_banks_env(void) {
  return ts_env_flag("TESSERA_GPUSIM_BANKS", false);
}

bool ts_gpusim_banks_on(void) { return forced || ts_gpusim_banks_env(); }

ts_banks *ts_banks_new(int threads) {
  ts_banks *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->threads = threads;
  b->warps = (threads + 31) / 32;
  size_t cells = (size_t)b->warps * CAP * 32;
  b->n = calloc((size_t)threads, sizeof *b->n);
  b->off = malloc(cells * sizeof *b->off);
  b->meta = malloc(cells * sizeof *b->meta);
  b->lines = calloc(LINES, sizeof *b->lines);
  if (!b->n || !b->off || !b->meta || !b->lines) {
    ts_banks_free(b);
    return NULL;
  }
  return b;
}

void ts_banks_free(ts_banks *b) {
  if (!b)
    return;
  free(b->n);
  free(b->off);
  free(b->meta);
  free(b->lines);
  free(b);
}

void ts_banks_access(ts_banks *b, int tid, int64_t off, int bytes, bool store, int line) {
  uint16_t k = b->n[tid];
  if (k == CAP) {
    b->dropped++;
    return;
  }
  size_t at = ((size_t)(tid / 32) * CAP + k) * 32 + (size_t)(tid % 32);
  b->off[at] = (uint32_t)off;
  b->meta[at] = (uint32_t)(line < LINES ? line : 0) << 9 | (store ? 256u : 0u) |
                (uint32_t)(bytes & 255);
  b->n[tid] = (uint16_t)(k + 1);
}

/* The wavefronts of one request: lanes `lane[0..n)` at offsets `off`, each
 * `bytes` wide; its ideal (one a phase with a lane in it) in *ideal. */
static int64_t wavefronts(const uint32_t *off, const int *lane, int n, int bytes,
                          int64_t *ideal) {
  int per = bytes <= 4 ? 32 : bytes == 8 ? 16 : 8; /* lanes a phase */
  int64_t w = 0;
  *ideal = 0;
  for (int p0 = 0; p0 < 32; p0 += per) {
    uint32_t words[32][32]; /* per bank, the distinct words asked */
    int nw[32] = {0}, worst = 0;
    bool any = false;
    for (int i = 0; i < n; i++) {
      if (lane[i] < p0 || lane[i] >= p0 + per)
        continue;
      any = true;
      for (uint32_t a = off[i] / 4; a <= (off[i] + (uint32_t)bytes - 1) / 4; a++) {
        int bank = (int)(a % 32), j = 0;
        while (j < nw[bank] && words[bank][j] != a)
          j++;
        if (j == nw[bank] && nw[bank] < 32)
          words[bank][nw[bank]++] = a;
        if (nw[bank] > worst)
          worst = nw[bank];
      }
    }
    w += worst;
    *ideal += any;
  }
  return w;
}

void ts_banks_epoch(ts_banks *b) {
  for (int w = 0; w < b->warps; w++) {
    int lo = w * 32, hi = lo + 32 < b->threads ? lo + 32 : b->threads, most = 0;
    for (int t = lo; t < hi; t++)
      most = b->n[t] > most ? b->n[t] : most;
    for (int k = 0; k < most; k++) {
      const uint32_t *off = b->off + ((size_t)w * CAP + (size_t)k) * 32;
      const uint32_t *meta = b->meta + ((size_t)w * CAP + (size_t)k) * 32;
      bool done[32] = {false};
      for (int l0 = 0; l0 < hi - lo; l0++) {
        if (done[l0] || b->n[lo + l0] <= k)
          continue;
        /* the lanes whose k-th access is the same line, kind and size */
        uint32_t offs[32];
        int lanes[32], n = 0;
        for (int l = l0; l < hi - lo; l++)
          if (!done[l] && b->n[lo + l] > k && meta[l] == meta[l0]) {
            done[l] = true;
            offs[n] = off[l];
            lanes[n++] = l;
          }
        int64_t ideal;
        int64_t wf = wavefronts(offs, lanes, n, (int)(meta[l0] & 255), &ideal);
        ts_bank_line *s = &b->lines[meta[l0] >> 9];
        int st = (meta[l0] >> 8) & 1;
        s->req[st]++;
        s->wave[st] += wf;
        s->ideal[st] += ideal;
      }
    }
    for (int t = lo; t < hi; t++)
      b->n[t] = 0;
  }
}

void ts_banks_finish(ts_banks *b) {
  ts_banks_epoch(b);
  for (int i = 0; i < LINES; i++)
    b->lines[i].line = i;
  free(last);
  last = b->lines;
  last_dropped = b->dropped;
  b->lines = NULL;
  ts_banks_free(b);
}

void ts_gpusim_bank_totals(int64_t out[6]) {
  memset(out, 0, 6 * sizeof *out);
  for (int i = 0; last && i < LINES; i++)
    for (int st = 0; st < 2; st++) {
      out[3 * st] += last[i].req[st];
      out[3 * st + 1] += last[i].wave[st];
      out[3 * st + 2] += last[i].ideal[st];
    }
}

static int by_excess(const void *x, const void *y) {
  const ts_bank_line *a = x, *b = y;
  int64_t ea = a->wave[0] + a->wave[1] - a->ideal[0] - a->ideal[1];
  int64_t eb = b->wave[0] + b->wave[1] - b->ideal[0] - b->ideal[1];
  return ea < eb ? 1 : ea > eb ? -1 : a->line - b->line;
}

void ts_gpusim_bank_report(FILE *f, const char *name) {
  if (!last)
    return;
  int64_t t[6];
  ts_gpusim_bank_totals(t);
  fprintf(f, "gpusim banks: %s: loads %lld requests, %lld wavefronts (%lld ideal); "
          "stores %lld, %lld (%lld)%s\n", name, (long long)t[0], (long long)t[1],
          (long long)t[2], (long long)t[3], (long long)t[4], (long long)t[5],
          last_dropped ? " (some accesses past the per-epoch cap not counted)" : "");
  ts_bank_line *s = malloc(LINES * sizeof *s);
  if (!s)
    return;
  memcpy(s, last, LINES * sizeof *s);
  qsort(s, LINES, sizeof *s, by_excess);
  for (int i = 0; i < 8; i++) {
    int64_t ex = s[i].wave[0] + s[i].wave[1] - s[i].ideal[0] - s[i].ideal[1];
    if (ex <= 0)
      break;
    char where[32] = "no line (runtime)";
    if (s[i].line)
      snprintf(where, sizeof where, "line %d", s[i].line);
    fprintf(f, "  %s: loads %lld wavefronts for %lld ideal, stores %lld for %lld\n", where,
            (long long)s[i].wave[0], (long long)s[i].ideal[0], (long long)s[i].wave[1],
            (long long)s[i].ideal[1]);
  }
  free(s);
}
