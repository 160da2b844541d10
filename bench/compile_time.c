/* compile_time.c - cold compile time of every kernel of kernels/ (every .tile) to
 * PTX for sm_90a, in this process with no kernel cache (each compile makes
 * its own MLIR context, as a first launch does): front end, MLIR
 * generation, lowering and the NVPTX back end; then the second lowering
 * (CUDA C through NVRTC) when NVRTC is there. Wall and CPU seconds, median
 * of 3. The reference point is TileLang's ~2.5 core-seconds per kernel
 * (issue 8); the aim is well under a second. Markdown on stdout. Run from
 * the source root: build/bench/compile_time [FILE.tile...] */
#include "bench/bench.h"
#include "compiler/compiler.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Median wall and CPU seconds of 3 cold compiles; false when it fails. */
static bool time_compile(const char *path, const char *text, size_t len,
                         const char *kernel, ts_target target, double *wall,
                         double *cpu) {
  double w[3], c[3];
  for (int r = 0; r < 3; r++) {
    ts_compile_options opt = {.kernel = kernel, .target = target,
                              .emit = TS_EMIT_PTX, .arch = "sm_90a"};
    ts_diags diags;
    ts_diags_init(&diags, ts_allocator_system());
    ts_buf out;
    ts_buf_init(&out, ts_allocator_system());
    double w0 = bench_now(), c0 = cpu_now();
    ts_status st = ts_compile(ts_allocator_system(), path, text, len, &opt, &diags, &out);
    w[r] = bench_now() - w0;
    c[r] = cpu_now() - c0;
    bool ok = !st && out.len > 0;
    if (st)
      ts_status_free(st);
    ts_buf_deinit(&out);
    ts_diags_deinit(&diags);
    if (!ok)
      return false;
  }
  qsort(w, 3, sizeof w[0], bench_cmp);
  qsort(c, 3, sizeof c[0], bench_cmp);
  *wall = w[1];
  *cpu = c[1];
  return true;
}

int main(int argc, char **argv) {
  char *files[64];
  int nf = 0;
  for (int i = 1; i < argc && nf < 64; i++)
    files[nf++] = strdup(argv[i]);
  if (!nf) {
    DIR *d = opendir("kernels");
    if (!d) {
      fprintf(stderr, "compile_time: run from the source root (no kernels/)\n");
      return 2;
    }
    for (struct dirent *e; (e = readdir(d)) && nf < 64;) {
      size_t n = strlen(e->d_name);
      if (n > 5 && !strcmp(e->d_name + n - 5, ".tile")) {
        char p[512];
        snprintf(p, sizeof p, "kernels/%s", e->d_name);
        files[nf++] = strdup(p);
      }
    }
    closedir(d);
    qsort(files, (size_t)nf, sizeof files[0], cmp_str);
  }
  printf("# Cold compile time to PTX (sm_90a), per kernel\n\n");
  printf("| kernel | MLIR -> PTX wall ms | CPU ms | CUDA C -> NVRTC PTX wall ms | CPU ms |\n");
  printf("|---|---|---|---|---|\n");
  double all[512], total_cpu = 0;
  int n = 0, failed = 0;
  for (int f = 0; f < nf; f++) {
    char *text;
    size_t len;
    ts_status st = ts_file_read(ts_allocator_system(), files[f], &text, &len);
    if (st) {
      fprintf(stderr, "compile_time: %s\n", ts_status_message(st));
      return 2;
    }
    ts_diags diags;
    ts_diags_init(&diags, ts_allocator_system());
    ts_unit u;
    if ((st = ts_unit_init(&u, ts_allocator_system(), files[f], text, len, &diags)))
      return 2;
    if (!ts_unit_parse(&u) || !ts_unit_check(&u, NULL, 0)) {
      fprintf(stderr, "compile_time: %s does not check\n", files[f]);
      return 2;
    }
    for (uint32_t k = 0; k < u.kernel_count && n < 512; k++) {
      char name[128];
      snprintf(name, sizeof name, "%.*s", (int)u.kernels[k].name.len, u.kernels[k].name.ptr);
      double w, c, w2 = 0, c2 = 0;
      if (!time_compile(files[f], text, len, name, TS_TARGET_PTX, &w, &c)) {
        printf("| %s (%s) | fails | | | |\n", name, files[f]);
        failed++;
        continue;
      }
      bool nv = time_compile(files[f], text, len, name, TS_TARGET_CUDA, &w2, &c2);
      char b[64] = "- (no NVRTC)", bc[32] = "";
      if (nv) {
        snprintf(b, sizeof b, "%.0f", w2 * 1e3);
        snprintf(bc, sizeof bc, "%.0f", c2 * 1e3);
      }
      printf("| %s (%s) | %.0f | %.0f | %s | %s |\n", name, files[f] + 8, w * 1e3, c * 1e3, b,
             bc);
      all[n++] = c;
      total_cpu += c;
    }
    ts_unit_deinit(&u);
    ts_diags_deinit(&diags);
    free(text);
    free(files[f]);
  }
  if (n) {
    qsort(all, (size_t)n, sizeof all[0], bench_cmp);
    printf("\n| kernels | median CPU s (MLIR) | max | mean | TileLang reference | median / reference |\n");
    printf("|---|---|---|---|---|---|\n");
    printf("| %d | %.3f | %.3f | %.3f | 2.5 | %.3f |\n", n, all[n / 2], all[n - 1], total_cpu / n,
           all[n / 2] / 2.5);
  }
  return failed ? 1 : 0;
}
