/* file.c - reading whole files and writing them atomically (a temp file in
 * the same folder, fsync, rename), so a reader never sees half a file. */
#define _POSIX_C_SOURCE 200809L
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ts_status ts_file_read(const ts_allocator *alloc, const char *path,
                       char **out_data, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return ts_status_make(TS_ERR_IO, "cannot open '%s': %s", path,
                          strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    return ts_status_make(TS_ERR_IO, "cannot read '%s': it is a directory",
                          path);
  }
  size_t cap = 4096, len = 0;
  char *data = ts_alloc(alloc, cap);
  if (!data) {
    fclose(f);
    return ts_status_nomem();
  }
  for (;;) {
    if (len + 1 >= cap) {
      char *p = ts_resize(alloc, data, cap, cap * 2);
      if (!p) {
        ts_release(alloc, data, cap);
        fclose(f);
        return ts_status_nomem();
      }
      data = p;
      cap *= 2;
    }
    size_t n = fread(data + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0)
      break;
  }
  bool err = ferror(f);
  fclose(f);
  if (err) {
    ts_release(alloc, data, cap);
    return ts_status_make(TS_ERR_IO, "cannot read '%s'", path);
  }
  /* Shrink to the size the caller will release with (len + 1); if the
   * shrink fails the bigger block is kept: our allocators ignore the size. */
  char *p = ts_resize(alloc, data, cap, len + 1);
  if (p)
    data = p;
  data[len] = 0;
  *out_data = data;
  *out_len = len;
  return NULL;
}

ts_status ts_file_write_atomic(const char *path, const void *data, size_t len) {
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp)
    return ts_status_nomem();
  /* unique per process and per call: threads may write the same path */
  static atomic_uint serial;
  snprintf(tmp, plen + 32, "%s.tmp.%ld.%u", path, (long)getpid(),
           atomic_fetch_add(&serial, 1));
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    ts_status s = ts_status_make(TS_ERR_IO, "cannot create '%s': %s", tmp,
                                 strerror(errno));
    free(tmp);
    return s;
  }
  const char *p = data;
  size_t left = len;
  while (left) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      ts_status s = ts_status_make(TS_ERR_IO, "cannot write '%s': %s", tmp,
                                   strerror(errno));
      close(fd);
      unlink(tmp);
      free(tmp);
      return s;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    ts_status s = ts_status_make(TS_ERR_IO, "cannot write '%s': %s", tmp,
                                 strerror(errno));
    unlink(tmp);
    free(tmp);
    return s;
  }
  if (rename(tmp, path) != 0) {
    ts_status s = ts_status_make(TS_ERR_IO, "cannot rename '%s' to '%s': %s",
                                 tmp, path, strerror(errno));
    unlink(tmp);
    free(tmp);
    return s;
  }
  free(tmp);
  return NULL;
}
