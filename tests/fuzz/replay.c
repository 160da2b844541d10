/* replay.c - runs the fuzz entry point over every file under the folders
 * given (the seed corpus), so that ctest replays what the fuzzer found. */
#define _DEFAULT_SOURCE
#include "base/base.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count;

static void replay(const char *path, int depth) {
  struct stat st;
  if (stat(path, &st) != 0 || depth > 4)
    return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d)
      return;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.')
        continue;
      char sub[4096];
      snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
      replay(sub, depth + 1);
    }
    closedir(d);
    return;
  }
  char *text;
  size_t len;
  ts_status s = ts_file_read(ts_allocator_system(), path, &text, &len);
  if (s) {
    ts_status_free(s);
    return;
  }
  LLVMFuzzerTestOneInput((const uint8_t *)text, len);
  ts_release(ts_allocator_system(), text, len + 1);
  count++;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    replay(argv[i], 0);
  printf("replayed %d inputs\n%d passed, 0 failed\n", count, count);
  return count > 0 ? 0 : 1;
}
