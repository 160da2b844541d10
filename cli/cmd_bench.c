/* cmd_bench.c - `tessera bench [NAME...] [--device cpu|cuda] [--out DIR]
 * [--list]`: runs the benchmarks of a suite (the CPU's, or the GPU's, which
 * needs a GPU) of bench/ (the C programs built next to
 * this executable in bench/, and the bench/ Lua scripts through `tessera
 * run`) from the source root, and writes what they print into DIR
 * (bench/results by default) as bench-DEVICE-DATE.md and the same tables
 * as .json, headed by the machine, the versions and the date. Each benchmark prints its own
 * baselines measured in the same run (plain C, OpenBLAS, the V4-SPEC
 * references, a copy as the bandwidth ceiling), so every figure in the
 * tables stands next to the ratio it is judged by. */
#define _POSIX_C_SOURCE 200809L
#include "cli/cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct bench {
  const char *name;
  const char *what;
  const char *lua;    /* a script run by `tessera run`, or NULL: a program */
  const char *device; /* the suite: "cpu" or "cuda" */
  const char *prog;   /* the program when not `name` */
  const char *env;    /* NAME=VALUE for the program, or NULL */
} bench;

static const bench benches[] = {
    {"cpu_gemm", "f32 GEMM against plain C and OpenBLAS", NULL, "cpu", NULL, NULL},
    {"cpu_softmax", "softmax and RMSNorm against a copy (bandwidth)", NULL, "cpu",
     NULL, NULL},
    {"cpu_kernels", "the V4 kernels against the V4-SPEC C references", NULL, "cpu",
     NULL, NULL},
    {"compile_time", "cold compile time of every kernel to PTX, both lowerings",
     NULL, "cpu", NULL, NULL},
    {"model_decode", "the tiny V4 model: prefill and decode tokens/s",
     "bench/model_decode.lua", "cpu", NULL, NULL},
    {"cpu_bounds", "parallel statements with their range checks and without them",
     "bench/cpu_bounds.lua", "cpu", NULL, NULL},
    {"cpu_gemv", "the model's linears: its tiles against 32-row ones",
     "bench/cpu_gemv.lua", "cpu", NULL, NULL},
    {"gpu_gemm", "bf16 GEMM (MLIR lowering) against torch.matmul and the peak",
     NULL, "cuda", NULL, NULL},
    {"gpu_gemm_cuda_c", "bf16 GEMM (CUDA C lowering) against torch.matmul and "
     "the peak", NULL, "cuda", "gpu_gemm", "TESSERA_GPU_LOWERING=cuda"},
    {"gpu_v4", "V4 kernels (attention, indexer + top-k, mHC, compressor, MoE) "
     "against the copy, the peak and PyTorch", NULL, "cuda", NULL, NULL},
};
#define NBENCH (sizeof benches / sizeof benches[0])

static void json_string(ts_buf *o, const char *s, size_t n) {
  ts_buf_putc(o, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      ts_buf_printf(o, "\\%c", c);
    else if (c < 0x20)
      ts_buf_printf(o, "\\u%04x", c);
    else
      ts_buf_putc(o, (char)c);
  }
  ts_buf_putc(o, '"');
}

/* The cells of a Markdown table row "| a | b |" as a JSON array. */
static void json_row(ts_buf *o, const char *line, size_t n) {
  ts_buf_putc(o, '[');
  size_t i = 1; /* after the first '|' */
  bool first = true;
  while (i < n) {
    size_t j = i;
    while (j < n && line[j] != '|')
      j++;
    if (j >= n)
      break;
    size_t a = i, b = j;
    while (a < b && line[a] == ' ')
      a++;
    while (b > a && line[b - 1] == ' ')
      b--;
    if (!first)
      ts_buf_puts(o, ", ");
    json_string(o, line + a, b - a);
    first = false;
    i = j + 1;
  }
  ts_buf_putc(o, ']');
}

/* Every Markdown table of a benchmark's output: {"title", "columns",
 * "rows"}; the title is the last '#' line or text line before it. */
static void json_tables(ts_buf *o, const char *text, size_t len) {
  ts_buf_puts(o, "[");
  const char *title = "";
  size_t title_len = 0;
  bool any = false;
  for (size_t at = 0; at < len;) {
    const char *line = text + at;
    const char *nl = memchr(line, '\n', len - at);
    size_t n = nl ? (size_t)(nl - line) : len - at;
    at += n + 1;
    if (n == 0 || line[0] != '|') {
      if (n > 0) {
        title = line;
        title_len = n;
        while (title_len && (*title == '#' || *title == ' ')) {
          title++;
          title_len--;
        }
      }
      continue;
    }
    /* a table: header, separator, rows */
    ts_buf_puts(o, any ? ",\n    {\"title\": " : "\n    {\"title\": ");
    any = true;
    json_string(o, title, title_len);
    ts_buf_puts(o, ", \"columns\": ");
    json_row(o, line, n);
    ts_buf_puts(o, ", \"rows\": [");
    bool first = true;
    while (at < len && text[at] == '|') {
      const char *r = text + at;
      const char *rn = memchr(r, '\n', len - at);
      size_t m = rn ? (size_t)(rn - r) : len - at;
      at += m + 1;
      if (m > 2 && r[1] == '-')
        continue; /* the separator */
      ts_buf_puts(o, first ? "\n      " : ",\n      ");
      json_row(o, r, m);
      first = false;
    }
    ts_buf_puts(o, "]}");
  }
  ts_buf_puts(o, any ? "\n  ]" : "]");
}

/* The first line of a command's output (versions), or "". */
static void first_line(const char *cmd, char *out, size_t size) {
  out[0] = 0;
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  if (fgets(out, (int)size, p))
    out[strcspn(out, "\n")] = 0;
  pclose(p);
}

static void cpu_model(char *out, size_t size) {
  snprintf(out, size, "unknown CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "model name", 10)) {
      char *c = strchr(line, ':');
      if (c) {
        c += 1 + (c[1] == ' ');
        c[strcspn(c, "\n")] = 0;
        snprintf(out, size, "%s", c);
      }
      break;
    }
  fclose(f);
}

int cmd_bench(int argc, char **argv) {
  const char *out_dir = "bench/results", *device = "cpu";
  bool chosen[NBENCH] = {false}, any = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--list")) {
      for (size_t b = 0; b < NBENCH; b++)
        printf("%-16s %-5s %s\n", benches[b].name, benches[b].device, benches[b].what);
      return EXIT_OK;
    } else if (!strcmp(a, "--out") || !strcmp(a, "--device")) {
      if (i + 1 >= argc)
        return cli_usage_error("bench", "%s needs a value", a);
      *(!strcmp(a, "--out") ? &out_dir : &device) = argv[++i];
    } else if (a[0] == '-') {
      return cli_usage_error("bench", "unknown option '%s'", a);
    } else {
      size_t b = 0;
      while (b < NBENCH && strcmp(benches[b].name, a))
        b++;
      if (b == NBENCH)
        return cli_usage_error("bench", "no benchmark '%s' (--list shows them)",
                               a);
      chosen[b] = any = true;
    }
  }
  if (strcmp(device, "cpu") && strcmp(device, "cuda"))
    return cli_usage_error("bench", "--device: cpu or cuda");
  for (size_t b = 0; b < NBENCH; b++)
    if (chosen[b] && strcmp(benches[b].device, device))
      return cli_usage_error("bench", "'%s' belongs to the %s suite (--device %s)",
                             benches[b].name, benches[b].device, benches[b].device);
  char gpu[160] = "";
  if (!strcmp(device, "cuda")) { /* the GPU suite needs one */
    ts_device *g;
    ts_status gst = ts_device_create_cuda(0, &g);
    if (gst)
      return cli_fail("bench", gst);
    snprintf(gpu, sizeof gpu, "%s", ts_device_model(g));
    ts_device_release(g);
  }
  if (access("bench/model_decode.lua", R_OK) != 0)
    return cli_usage_error("bench", "run it from the source root (bench/ "
                           "is not here)");
  char exe[PATH_MAX], dir[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return cli_fail("bench", ts_status_make(TS_ERR_IO, "cannot find myself"));
  exe[n] = 0;
  snprintf(dir, sizeof dir, "%s", exe);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  ts_status st = ts_make_dirs(out_dir);
  if (st)
    return cli_fail("bench", st);

  char date[32], stamp[32], cpu[256], cc[256], lua_ver[64];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tm);
  strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  cpu_model(cpu, sizeof cpu);
  first_line("cc --version 2>/dev/null", cc, sizeof cc);
  snprintf(lua_ver, sizeof lua_ver, "Lua 5.4");
  long cores = sysconf(_SC_NPROCESSORS_ONLN);

  ts_buf md, js;
  ts_buf_init(&md, ts_allocator_system());
  ts_buf_init(&js, ts_allocator_system());
  char driver[160] = "";
  if (*gpu)
    first_line("nvidia-smi --query-gpu=driver_version --format=csv,noheader "
               "2>/dev/null", driver, sizeof driver);
  ts_buf_printf(&md, "# tessera bench: %s, %s\n\nDevice: %s%s%s%s%s (host %s, "
                "%ld cores). %s; C baselines built by %s. Every table prints its "
                "baseline from the same run.\n",
                device, date, device, *gpu ? ": " : "", gpu,
                *driver ? ", driver " : "", driver, cpu, cores,
                ts_compiler_version(), cc);
  ts_buf_puts(&js, "{\n  \"device\": ");
  json_string(&js, device, strlen(device));
  ts_buf_puts(&js, ",\n  \"gpu\": ");
  json_string(&js, gpu, strlen(gpu));
  ts_buf_puts(&js, ",\n  \"driver\": ");
  json_string(&js, driver, strlen(driver));
  ts_buf_puts(&js, ",\n  \"machine\": ");
  json_string(&js, cpu, strlen(cpu));
  ts_buf_printf(&js, ",\n  \"cores\": %ld,\n  \"date\": ", cores);
  json_string(&js, date, strlen(date));
  ts_buf_puts(&js, ",\n  \"tessera\": ");
  json_string(&js, ts_compiler_version(), strlen(ts_compiler_version()));
  ts_buf_puts(&js, ",\n  \"c_compiler\": ");
  json_string(&js, cc, strlen(cc));
  ts_buf_puts(&js, ",\n  \"benchmarks\": [");
  int failures = 0;
  bool first = true;
  for (size_t b = 0; b < NBENCH; b++) {
    if ((any && !chosen[b]) || strcmp(benches[b].device, device))
      continue;
    char cmd[2 * PATH_MAX + 128];
    if (benches[b].lua)
      snprintf(cmd, sizeof cmd, "'%s' run %s 2>&1", exe, benches[b].lua);
    else
      snprintf(cmd, sizeof cmd, "%s '%s/bench/%s' 2>&1",
               benches[b].env ? benches[b].env : "", dir,
               benches[b].prog ? benches[b].prog : benches[b].name);
    fprintf(stderr, "tessera bench: %s ...\n", benches[b].name);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    FILE *p = popen(cmd, "r");
    ts_buf text;
    ts_buf_init(&text, ts_allocator_system());
    char chunk[4096];
    size_t got;
    while (p && (got = fread(chunk, 1, sizeof chunk, p)) > 0)
      ts_buf_append(&text, chunk, got);
    int rc = p ? pclose(p) : -1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    bool ok = rc == 0 && !text.failed;
    failures += !ok;
    ts_buf_printf(&md, "\n## %s (%s, %.1f s)%s\n\n%s\n", benches[b].name,
                  benches[b].what, secs, ok ? "" : " — FAILED",
                  text.ptr ? text.ptr : "");
    ts_buf_puts(&js, first ? "\n  {\"name\": " : ",\n  {\"name\": ");
    first = false;
    json_string(&js, benches[b].name, strlen(benches[b].name));
    ts_buf_printf(&js, ", \"ok\": %s, \"seconds\": %.3f, \"tables\": ",
                  ok ? "true" : "false", secs);
    json_tables(&js, text.ptr ? text.ptr : "", text.len);
    ts_buf_puts(&js, "}");
    if (!ok)
      fprintf(stderr, "tessera bench: %s failed (exit %d)\n", benches[b].name,
              rc >= 0 && WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
    ts_buf_deinit(&text);
  }
  ts_buf_puts(&js, "\n  ]\n}\n");
  char path[PATH_MAX];
  int rc = failures ? EXIT_USAGE : EXIT_OK;
  snprintf(path, sizeof path, "%s/bench-%s-%s.md", out_dir, device, stamp);
  if (md.failed || js.failed)
    st = ts_status_nomem();
  if (!st)
    st = ts_file_write_atomic(path, md.ptr, md.len);
  if (!st)
    printf("%s\n", path);
  snprintf(path, sizeof path, "%s/bench-%s-%s.json", out_dir, device, stamp);
  if (!st)
    st = ts_file_write_atomic(path, js.ptr, js.len);
  if (!st)
    printf("%s\n", path);
  if (st)
    rc = cli_fail("bench", st);
  ts_buf_deinit(&md);
  ts_buf_deinit(&js);
  return rc;
}
