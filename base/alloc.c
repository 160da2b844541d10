/* alloc.c - allocators passed in by the caller, a failing allocator for
 * out-of-memory tests, and the arena every compilation allocates from. */
#include "base.h"

#include <stdlib.h>
#include <string.h>

static void *sys_alloc(void *ctx, size_t size) {
  (void)ctx;
  return malloc(size ? size : 1);
}
static void *sys_resize(void *ctx, void *p, size_t old_size, size_t size) {
  (void)ctx;
  (void)old_size;
  return realloc(p, size ? size : 1);
}
static void sys_release(void *ctx, void *p, size_t size) {
  (void)ctx;
  (void)size;
  free(p);
}

static const ts_allocator system_allocator = {sys_alloc, sys_resize,
                                              sys_release, NULL};

const ts_allocator *ts_allocator_system(void) { return &system_allocator; }

static bool fa_should_fail(ts_failing_allocator *fa) {
  fa->calls++;
  if (fa->fail_at == 0)
    return false;
  return fa->sticky ? fa->calls >= fa->fail_at : fa->calls == fa->fail_at;
}
static void *fa_alloc(void *ctx, size_t size) {
  ts_failing_allocator *fa = ctx;
  return fa_should_fail(fa) ? NULL : malloc(size ? size : 1);
}
static void *fa_resize(void *ctx, void *p, size_t old_size, size_t size) {
  ts_failing_allocator *fa = ctx;
  (void)old_size;
  return fa_should_fail(fa) ? NULL : realloc(p, size ? size : 1);
}

void ts_failing_allocator_init(ts_failing_allocator *fa, uint64_t fail_at,
                               bool sticky) {
  fa->base = (ts_allocator){fa_alloc, fa_resize, sys_release, fa};
  fa->calls = 0;
  fa->fail_at = fail_at;
  fa->sticky = sticky;
}

void *ts_alloc(const ts_allocator *a, size_t size) {
  return a->alloc(a->ctx, size);
}
void *ts_resize(const ts_allocator *a, void *p, size_t old_size,
                size_t new_size) {
  if (!p)
    return a->alloc(a->ctx, new_size);
  return a->resize(a->ctx, p, old_size, new_size);
}
void ts_release(const ts_allocator *a, void *p, size_t size) {
  if (p)
    a->release(a->ctx, p, size);
}

/* ---- arena ----------------------------------------------------------------
 */

struct ts_arena_chunk {
  ts_arena_chunk *prev;
  size_t size;
  _Alignas(16) unsigned char data[];
};

#define ARENA_CHUNK (64 * 1024)

void ts_arena_init(ts_arena *a, const ts_allocator *alloc) {
  memset(a, 0, sizeof *a);
  a->alloc = alloc;
}

void ts_arena_deinit(ts_arena *a) {
  ts_arena_chunk *c = a->head;
  while (c) {
    ts_arena_chunk *prev = c->prev;
    ts_release(a->alloc, c, sizeof *c + c->size);
    c = prev;
  }
  a->head = NULL;
  a->used = a->cap = 0;
}

void *ts_arena_alloc(ts_arena *a, size_t size) {
  size = (size + 15) & ~(size_t)15;
  if (size == 0)
    size = 16;
  if (!a->head || a->cap - a->used < size) {
    size_t csize = size > ARENA_CHUNK ? size : ARENA_CHUNK;
    ts_arena_chunk *c = ts_alloc(a->alloc, sizeof *c + csize);
    if (!c) {
      a->failed = true;
      return NULL;
    }
    c->prev = a->head;
    c->size = csize;
    a->head = c;
    a->used = 0;
    a->cap = csize;
  }
  void *p = a->head->data + a->used;
  a->used += size;
  memset(p, 0, size);
  return p;
}

char *ts_arena_strndup(ts_arena *a, const char *s, size_t len) {
  char *p = ts_arena_alloc(a, len + 1);
  if (!p)
    return NULL;
  memcpy(p, s, len);
  p[len] = 0;
  return p;
}
