/* rtcall.c - what compiled CPU kernels call back into: `print` and `assert`
 * (compiler/gen_debug.c emits the calls). The first argument of each is the
 * call's offset in the kernel's text, found in the unit of the launch
 * (which may run code a process before compiled: the cache of compiled
 * code); the format and the message are read from that call. A failed
 * assert is recorded in the launch that runs it (the first one wins, the
 * rest of the launch still runs) and the launch returns it as an error. */
#define _POSIX_C_SOURCE 200809L
#include "runtime/internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

void ts_print_format(const ts_node *call, ts_buf *out);
void ts_assert_message(const ts_node *call, ts_buf *out);
const ts_node *ts_debug_call_at(const ts_unit *u, uint32_t lo);

static _Thread_local ts_launch_state *current;

ts_launch_state *ts_launch_state_set(ts_launch_state *s) {
  ts_launch_state *old = current;
  current = s;
  return old;
}

/* The C format from ts_print_format has three kinds of conversion: %%,
 * %lld (an integer) and %.9g (a float, as f64 bits). */
void ts_rt_print(int64_t node, int64_t v0, int64_t v1, int64_t v2,
                        int64_t v3, int64_t v4, int64_t v5, int64_t v6,
                        int64_t v7, int64_t v8, int64_t v9, int64_t v10,
                        int64_t v11, int64_t v12, int64_t v13, int64_t v14,
                        int64_t v15) {
  const int64_t v[16] = {v0, v1, v2,  v3,  v4,  v5,  v6,  v7,
                         v8, v9, v10, v11, v12, v13, v14, v15};
  ts_buf f, out;
  ts_buf_init(&f, ts_allocator_system());
  ts_buf_init(&out, ts_allocator_system());
  const ts_node *call = current ? ts_debug_call_at(current->unit, (uint32_t)node) : NULL;
  if (call)
    ts_print_format(call, &f);
  else
    ts_buf_puts(&f, "(a print whose call was not found)\n");
  int k = 0;
  for (size_t i = 0; !f.failed && i < f.len; i++) {
    if (f.ptr[i] != '%') {
      ts_buf_putc(&out, f.ptr[i]);
    } else if (f.ptr[i + 1] == '%') {
      ts_buf_putc(&out, '%');
      i++;
    } else if (f.ptr[i + 1] == 'l') { /* %lld */
      ts_buf_printf(&out, "%lld", (long long)(k < 16 ? v[k] : 0));
      k++;
      i += 3;
    } else { /* %.9g */
      double d = 0;
      if (k < 16)
        memcpy(&d, &v[k], sizeof d);
      ts_buf_printf(&out, "%.9g", d);
      k++;
      i += 3;
    }
  }
  if (!out.failed && out.len) {
    flockfile(stdout);
    fwrite(out.ptr, 1, out.len, stdout);
    funlockfile(stdout);
  }
  ts_buf_deinit(&f);
  ts_buf_deinit(&out);
}

void ts_rt_assert(int64_t node, int64_t line, int64_t col,
                         int64_t bx, int64_t by, int64_t bz, int64_t tid) {
  ts_launch_state *s = current;
  if (!s) { /* not inside a launch: say it at least */
    fprintf(stderr, "tessera: an assert failed outside a launch\n");
    return;
  }
  int expected = 0;
  if (!atomic_compare_exchange_strong(&s->failed, &expected, 1))
    return;
  ts_buf m;
  ts_buf_init(&m, ts_allocator_system());
  const ts_node *call = ts_debug_call_at(s->unit, (uint32_t)node);
  ts_buf_printf(&m, "%s:%lld:%lld: assertion failed: ",
                s->unit ? ts_source_name(&s->unit->src, (uint32_t)node) : "?", (long long)line,
                (long long)col);
  if (call)
    ts_assert_message(call, &m);
  ts_buf_printf(&m, " (block (%lld, %lld, %lld)", (long long)bx,
                (long long)by, (long long)bz);
  if (tid >= 0)
    ts_buf_printf(&m, ", thread %lld", (long long)tid);
  ts_buf_putc(&m, ')');
  snprintf(s->message, sizeof s->message, "%s",
           m.failed ? "assertion failed" : m.ptr);
  ts_buf_deinit(&m);
}

/* A failed assert in the simulator's build of the CUDA C (cudasim.c): the
 * line a GPU would print, less its "tessera: " and newline. */
void ts_sim_assert_fail(const char *fmt, ...);
void ts_sim_assert_fail(const char *fmt, ...) {
  ts_launch_state *s = current;
  int expected = 0;
  if (!s || !atomic_compare_exchange_strong(&s->failed, &expected, 1))
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->message, sizeof s->message, fmt, ap);
  va_end(ap);
  size_t n = strlen(s->message);
  if (n && s->message[n - 1] == '\n')
    s->message[n - 1] = 0;
  const char *skip = "tessera: ";
  if (!strncmp(s->message, skip, strlen(skip)))
    memmove(s->message, s->message + strlen(skip),
            strlen(s->message) - strlen(skip) + 1);
}

const ts_jit_symbol ts_rt_symbols[TS_RT_SYMBOLS] = {
    {"ts_gpusim_barrier", (void *)ts_gpusim_barrier},
    {"ts_gpusim_shuffle", (void *)ts_gpusim_shuffle},
    {"ts_gpusim_mma", (void *)ts_gpusim_mma},
    {"ts_gpusim_mma_d", (void *)ts_gpusim_mma_d},
    {"ts_gpusim_mma_s8", (void *)ts_gpusim_mma_s8},
    {"ts_gpusim_mma_di", (void *)ts_gpusim_mma_di},
    {"ts_gpusim_ldmatrix", (void *)ts_gpusim_ldmatrix},
    {"ts_gpusim_tma", (void *)ts_gpusim_tma},
    {"ts_gpusim_mbar", (void *)ts_gpusim_mbar},
    {"ts_gpusim_cp", (void *)ts_gpusim_cp},
    {"ts_gpusim_access", (void *)ts_gpusim_access},
    {"ts_gpusim_ldmatrix_r", (void *)ts_gpusim_ldmatrix_r},
    {"ts_gpusim_wgmma", (void *)ts_gpusim_wgmma},
    {"ts_gpusim_wgmma_sync", (void *)ts_gpusim_wgmma_sync},
    {"ts_rt_print", (void *)ts_rt_print},
    {"ts_rt_assert", (void *)ts_rt_assert},
};

const ts_jit_symbol *ts_runtime_symbols(size_t *count) {
  *count = TS_RT_SYMBOLS;
  return ts_rt_symbols;
}
