/* proc.c - running a tool (a C compiler) to completion, its standard
 * output discarded and its standard error kept for the error message; the
 * yes/no settings of the environment. */
#define _GNU_SOURCE
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* What of the tool's standard error is kept; the rest is read and dropped
 * (a tool blocked on a full pipe would never exit). */
#define ERR_KEEP 65536

int ts_run_tool(char *const argv[], ts_buf *err) {
  int fd[2] = {-1, -1};
  if (err && pipe2(fd, O_CLOEXEC))
    return -1;
  posix_spawn_file_actions_t fa;
  if (posix_spawn_file_actions_init(&fa)) {
    if (err) {
      close(fd[0]);
      close(fd[1]);
    }
    return -1;
  }
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (err)
    posix_spawn_file_actions_adddup2(&fa, fd[1], 2);
  else
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err) {
    close(fd[1]);
    if (!rc) {
      char chunk[4096];
      size_t kept = 0;
      for (;;) {
        ssize_t n = read(fd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
          continue;
        if (n <= 0)
          break;
        size_t keep = kept + (size_t)n > ERR_KEEP ? ERR_KEEP - kept : (size_t)n;
        ts_buf_append(err, chunk, keep);
        kept += keep;
      }
    }
    close(fd[0]);
  }
  if (rc)
    return -1;
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int ts_flag_word(const char *v) {
  static const char *const yes[] = {"1", "on", "true", "yes"}, *const no[] = {"0", "off", "false",
                                                                                "no"};
  for (int i = 0; v && i < 4; i++) {
    if (!strcasecmp(v, yes[i]))
      return 1;
    if (!strcasecmp(v, no[i]))
      return 0;
  }
  return -1;
}

bool ts_env_flag(const char *name, bool dflt) {
  const char *v = getenv(name);
  if (!v || !*v)
    return dflt;
  int w = ts_flag_word(v);
  if (w >= 0)
    return w == 1;
  /* reported once for each variable */
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  static char warned[16][64];
  static int nwarned;
  bool seen = false;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nwarned && !seen; i++)
    seen = !strcmp(warned[i], name);
  if (!seen && nwarned < 16)
    snprintf(warned[nwarned++], sizeof warned[0], "%s", name);
  pthread_mutex_unlock(&mu);
  if (!seen)
    fprintf(stderr, "tessera: warning: %s='%s' is not 1/0, on/off, true/false or yes/no; "
                    "using %s\n", name, v, dflt ? "1" : "0");
  return dflt;
}
