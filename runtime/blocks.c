/* blocks.c - freed device memory kept for reuse (the CUDA device's blocks
 * of cuMemAlloc, the CPU device's host blocks): a stack of blocks a size
 * class, so that a request of a size freed before finds one at once. The
 * caller holds its device's lock. */
#include "runtime/internal.h"

#include <stdlib.h>

/* Blocks are rounded so that a freed one fits requests of nearby sizes:
 * to 512 bytes up to 1 MiB, past that to an eighth of the size's power of
 * two (at most 12.5% more). */
size_t ts_block_size(size_t n) {
  if (n == 0)
    n = 64;
  if (n <= ((size_t)1 << 20))
    return (n + 511) & ~(size_t)511;
  size_t p = (size_t)1 << 20;
  while (p <= n / 2)
    p *= 2;
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

/* The class of a block size n: up to 1 MiB its 512-byte steps, past it
 * (n = k / 8 of its power of two p, k in 8 .. 15) 8 a power of two. */
static size_t size_class(size_t n) {
  if (n <= ((size_t)1 << 20))
    return n / 512 - 1;
  int e = 63 - __builtin_clzll((unsigned long long)n);
  size_t k = n / (((size_t)1 << e) / 8);
  return 2048 + (size_t)(e - 20) * 8 + (k - 8);
}

bool ts_blocks_take(ts_blocks *c, size_t n, uintptr_t *p) {
  ts_block_stack *b = &c->cls[size_class(n)];
  if (b->n == 0)
    return false;
  *p = b->p[--b->n];
  c->bytes -= (int64_t)n;
  return true;
}

bool ts_blocks_keep(ts_blocks *c, size_t n, uintptr_t p) {
  ts_block_stack *b = &c->cls[size_class(n)];
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 8;
    uintptr_t *grown = realloc(b->p, cap * sizeof *grown);
    if (!grown)
      return false;
    b->p = grown;
    b->cap = cap;
  }
  b->p[b->n++] = p;
  c->bytes += (int64_t)n;
  return true;
}

void ts_blocks_drain(ts_blocks *c, void (*release)(void *ctx, uintptr_t p), void *ctx) {
  for (size_t k = 0; k < TS_BLOCK_CLASSES; k++) {
    ts_block_stack *b = &c->cls[k];
    for (size_t i = 0; i < b->n; i++)
      release(ctx, b->p[i]);
    b->n = 0;
  }
  c->bytes = 0;
}

void ts_blocks_destroy(ts_blocks *c) {
  for (size_t k = 0; k < TS_BLOCK_CLASSES; k++)
    free(c->cls[k].p);
}
