/* fuzz_safetensors.c - the libFuzzer entry point over the safetensors reader
 * (runtime/safetensors.c), the first thing a downloaded checkpoint meets:
 * the input is the file, written to an anonymous memory file and opened by
 * its /proc path. Any input must come back opened or refused with a
 * status, never a crash, a hang or a leak; a file that opens must hold what
 * the reader promises: each tensor's byte size its shape's count times its
 * dtype's size, its bytes inside the file's data section (each read
 * through: a range past the mapping faults) and overlapping no other
 * tensor's, every name found by name, and the metadata keys found. */
#define _GNU_SOURCE
#include "runtime/runtime.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

static void check(bool ok) {
  if (!ok)
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("fuzz.safetensors", 0);
  if (fd < 0)
    return 0;
  size_t done = 0;
  while (done < size) {
    ssize_t n = write(fd, data + done, size - done);
    if (n <= 0)
      break;
    done += (size_t)n;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ts_safetensors *f = NULL;
  ts_status st = done == size ? ts_safetensors_open(path, &f) : NULL;
  close(fd);
  if (st) {
    check(ts_status_message(st) != NULL);
    ts_status_free(st);
    return 0;
  }
  if (!f)
    return 0;
  /* the data section: after the 8-byte length and the header */
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = hlen << 8 | data[i];
  check(size >= 8 && hlen <= size - 8);
  uint64_t data_size = size - 8 - hlen;
  size_t n = ts_safetensors_count(f);
  const unsigned char *base = NULL;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) {
    const ts_st_tensor *t = ts_safetensors_at(f, i);
    check(t && t->name && t->rank <= TS_MAX_RANK);
    uint64_t count = 1;
    for (uint32_t d = 0; d < t->rank; d++) {
      check(t->shape[d] >= 0);
      count *= (uint64_t)t->shape[d];
    }
    check(count * (uint64_t)(ts_dtype_bits(t->dtype) / 8) == t->size);
    check(t->offset <= data_size && t->size <= data_size - t->offset);
    const unsigned char *p = t->data;
    if (!base)
      base = p - t->offset;
    check(p == base + t->offset);
    for (uint64_t b = 0; b < t->size; b++)
      sum += p[b];
    check(ts_safetensors_find(f, t->name) == t);
    for (size_t j = 0; j < i && j < 256; j++) {
      const ts_st_tensor *u = ts_safetensors_at(f, j);
      check(!t->size || !u->size || t->offset >= u->offset + u->size ||
            u->offset >= t->offset + t->size);
    }
  }
  check(ts_safetensors_at(f, n) == NULL);
  (void)ts_safetensors_meta(f, "format");
  ts_safetensors_close(f);
  sink = sum; /* (so that the reads stay) */
  return 0;
}
