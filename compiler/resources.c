/* resources.c - `--emit resources`: what ptxas makes of each kernel's PTX
 * (registers, spill stores and loads, stack frame, static shared memory),
 * beside what its launch asks (threads a block and dynamic shared memory:
 * the PTX's "// tessera kernel" lines), and the occupancy those allow on
 * the architecture as CUDA's occupancy calculator computes it (the
 * arithmetic of scripts/occupancy.awk: a warp's registers rounded up to
 * 256, 16K a sub-partition, four of them; shared memory rounded up to 128
 * bytes plus the 1 KiB the runtime reserves a block; the SM's warps and
 * blocks). Limits, not measurements: no GPU is needed, only ptxas, found
 * as $PTXAS, $CUDA_HOME/bin/ptxas, /usr/local/cuda/bin/ptxas or on PATH. */
#define _POSIX_C_SOURCE 200809L
#include "compiler/compiler.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* ptxas's path: the first that exists of $PTXAS, $CUDA_HOME/bin/ptxas and
 * /usr/local/cuda/bin/ptxas; else "ptxas" (looked up on PATH). */
static const char *ptxas_path(char *buf, size_t size) {
  const char *e = getenv("PTXAS");
  if (e && *e)
    return e;
  const char *home = getenv("CUDA_HOME");
  if (home && *home) {
    snprintf(buf, size, "%s/bin/ptxas", home);
    if (access(buf, X_OK) == 0)
      return buf;
  }
  if (access("/usr/local/cuda/bin/ptxas", X_OK) == 0)
    return "/usr/local/cuda/bin/ptxas";
  return "ptxas";
}

/* Runs `ptxas -arch=ARCH -v` over the PTX; its output (both streams) into
 * `log`. Fails when ptxas cannot be run or rejects the PTX. */
static ts_status run_ptxas(const char *ptx, size_t len, const char *arch, ts_buf *log) {
  const char *dir = getenv("TMPDIR");
  char path[4096], pbuf[4096], archopt[32];
  snprintf(path, sizeof path, "%s/tessera-ptx-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0)
    return ts_status_make(TS_ERR_IO, "a temporary file for ptxas: %s", strerror(errno));
  bool wrote = true;
  for (size_t at = 0; at < len && wrote;) {
    ssize_t n = write(fd, ptx + at, len - at);
    wrote = n > 0;
    at += wrote ? (size_t)n : 0;
  }
  close(fd);
  if (!wrote) {
    unlink(path);
    return ts_status_make(TS_ERR_IO, "writing %s for ptxas", path);
  }
  const char *ptxas = ptxas_path(pbuf, sizeof pbuf);
  snprintf(archopt, sizeof archopt, "-arch=%s", arch);
  char *argv[] = {(char *)ptxas, archopt, "-v", path, "-o", "/dev/null", NULL};
  int pipefd[2];
  ts_status st = NULL;
  if (pipe(pipefd) != 0) {
    unlink(path);
    return ts_status_make(TS_ERR_IO, "a pipe for ptxas: %s", strerror(errno));
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  posix_spawn_file_actions_addclose(&fa, pipefd[0]);
  pid_t pid;
  int rc = posix_spawnp(&pid, ptxas, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    unlink(path);
    return ts_status_make(TS_ERR_UNSUPPORTED,
                          "ptxas ('%s') could not be run (%s): set PTXAS or CUDA_HOME, or "
                          "install the CUDA toolkit",
                          ptxas, strerror(rc));
  }
  char chunk[4096];
  ssize_t n;
  while ((n = read(pipefd[0], chunk, sizeof chunk)) > 0)
    ts_buf_append(log, chunk, (size_t)n);
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  unlink(path);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    st = ts_status_make(TS_ERR_INVALID, "ptxas (%s) failed on the PTX:\n%s", ptxas,
                        log->ptr ? log->ptr : "");
  return st;
}

typedef struct kres {
  char name[128];
  long long threads, dyn_smem;
  long long regs, stack, spill_st, spill_ld, static_smem;
  bool seen; /* ptxas reported it */
} kres;

static kres *find(kres *k, int n, const char *name, size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(k[i].name) == len && !memcmp(k[i].name, name, len))
      return &k[i];
  return NULL;
}

/* A number before `word` in `line` ("40 registers", "8 bytes stack frame"). */
static long long before(const char *line, const char *word) {
  const char *w = strstr(line, word);
  if (!w)
    return -1;
  const char *p = w;
  while (p > line && p[-1] == ' ')
    p--;
  while (p > line && p[-1] >= '0' && p[-1] <= '9')
    p--;
  return p < w && *p >= '0' && *p <= '9' ? atoll(p) : -1;
}

static long long ceil_to(long long x, long long u) { return (x + u - 1) / u * u; }

/* The kernels of the PTX (its "// tessera kernel" lines) with what ptxas
 * -v says of each (ks[i].seen), and its warnings appended to `warnings`. */
static ts_status assemble(const char *ptx, size_t len, const char *arch, kres *ks, int *count,
                          ts_buf *warnings) {
  int nk = 0;
  for (const char *p = ptx; p && p < ptx + len && nk < 256;) {
    const char *eol = memchr(p, '\n', (size_t)(ptx + len - p));
    char name[128];
    long long thr, smem;
    if (sscanf(p, "// tessera kernel %127s threads %lld smem %lld", name, &thr, &smem) == 3) {
      kres *k = &ks[nk++];
      memset(k, 0, sizeof *k);
      snprintf(k->name, sizeof k->name, "%s", name);
      k->threads = thr;
      k->dyn_smem = smem;
    }
    p = eol ? eol + 1 : NULL;
  }
  *count = nk;
  ts_buf log;
  ts_buf_init(&log, ts_allocator_system());
  ts_status st = run_ptxas(ptx, len, arch, &log);
  if (st) {
    ts_buf_deinit(&log);
    return st;
  }
  /* ptxas -v: "Compiling entry function 'K' for 'sm_90a'", then its stack
   * and spills, then "Used R registers, ..., S bytes smem" */
  kres *cur = NULL;
  for (const char *p = log.ptr; p && *p;) {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) : strlen(p);
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1), p);
    const char *q = strstr(line, "Compiling entry function '");
    if (q) {
      q += strlen("Compiling entry function '");
      const char *e = strchr(q, '\'');
      cur = e ? find(ks, nk, q, (size_t)(e - q)) : NULL;
      if (cur)
        cur->seen = true;
    } else if (cur && strstr(line, "bytes stack frame")) {
      cur->stack = before(line, "bytes stack frame");
      cur->spill_st = before(line, "bytes spill stores");
      cur->spill_ld = before(line, "bytes spill loads");
    } else if (cur && strstr(line, "Used ")) {
      cur->regs = before(line, "registers");
      long long s = before(line, "bytes smem");
      cur->static_smem = s > 0 ? s : 0;
    } else if (strstr(line, "warning")) {
      ts_buf_printf(warnings, "%s\n", line);
    }
    p = eol ? eol + 1 : NULL;
  }
  ts_buf_deinit(&log);
  return NULL;
}

ts_status ts_ptx_kernel_resources(const char *ptx, size_t len, const char *arch,
                                  const char *kernel, ts_ptx_kernel_res *out) {
  kres *ks = malloc(256 * sizeof *ks);
  if (!ks)
    return ts_status_nomem();
  int nk = 0;
  ts_buf warnings;
  ts_buf_init(&warnings, ts_allocator_system());
  ts_status st = assemble(ptx, len, arch, ks, &nk, &warnings);
  ts_buf_deinit(&warnings);
  const kres *k = st ? NULL : find(ks, nk, kernel, strlen(kernel));
  if (!st && (!k || !k->seen || k->regs < 0))
    st = ts_status_make(TS_ERR_NOT_FOUND, "ptxas reported nothing of kernel '%s'", kernel);
  if (!st)
    *out = (ts_ptx_kernel_res){k->regs, k->spill_st, k->spill_ld, k->stack, k->static_smem};
  free(ks);
  return st;
}

ts_status ts_ptx_resources(const char *ptx, size_t len, const char *arch, const char *file,
                           ts_buf *out) {
  int warps_sm = 64, blocks_sm = 32;
  long long smem_sm = 233472;
  if (!strcmp(arch, "sm_80")) {
    smem_sm = 167936;
  } else if (!strcmp(arch, "sm_86")) {
    warps_sm = 48, blocks_sm = 16, smem_sm = 102400;
  }
  kres ks[256];
  int nk = 0;
  ts_buf warnings;
  ts_buf_init(&warnings, ts_allocator_system());
  ts_status st = assemble(ptx, len, arch, ks, &nk, &warnings);
  if (st) {
    ts_buf_deinit(&warnings);
    return st;
  }
  ts_buf_printf(out, "# %s on %s: ptxas -v, and the occupancy those allow (limits, not "
                "measurements)\n\n", file, arch);
  ts_buf_printf(out, "| kernel | threads | registers | spill stores / loads (B) | stack (B) | "
                "smem KiB (static + dynamic) | blocks/SM | warps/SM | occupancy | limited by |\n");
  ts_buf_printf(out, "|---|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < nk; i++) {
    kres *k = &ks[i];
    if (!k->seen || k->threads <= 0 || k->regs < 0) {
      ts_buf_printf(out, "| %s | %lld | ? | ? | ? | ? | ? | ? | ? | ptxas said nothing of it |\n",
                    k->name, k->threads);
      continue;
    }
    long long warps = (k->threads + 31) / 32;
    long long per_warp = ceil_to((k->regs > 0 ? k->regs : 1) * 32, 256);
    long long by_regs = 4 * (16384 / per_warp) / warps;
    long long smem = k->static_smem + k->dyn_smem;
    long long by_smem = smem_sm / (ceil_to(smem, 128) + 1024);
    long long by_thr = warps_sm / warps, blocks = blocks_sm;
    const char *lim = "blocks";
    if (by_thr < blocks)
      blocks = by_thr, lim = "threads";
    if (by_smem < blocks)
      blocks = by_smem, lim = "shared memory";
    if (by_regs < blocks)
      blocks = by_regs, lim = "registers";
    ts_buf_printf(out, "| %s | %lld | %lld | %lld / %lld | %lld | %.1f | %lld | %lld | %.1f%% | %s |\n",
                  k->name, k->threads, k->regs, k->spill_st, k->spill_ld, k->stack,
                  (double)smem / 1024.0, blocks, blocks * warps,
                  100.0 * (double)(blocks * warps) / warps_sm, lim);
  }
  if (warnings.len)
    ts_buf_printf(out, "\nptxas:\n%s", warnings.ptr);
  ts_buf_deinit(&warnings);
  return NULL;
}
