/* cmd_other.c - `tessera devices`, and `tune` and `bench`, which are not
 * built yet and say so (exit 2). */
#include "cli/cli.h"

static int not_built(const char *cmd, const char *when) {
  fprintf(stderr, "tessera %s: not yet built (%s)\n", cmd, when);
  return EXIT_USAGE;
}

int cmd_bench(int argc, char **argv) {
  (void)argc;
  (void)argv;
  return not_built("bench", "benchmarks come with the CPU and GPU targets");
}

int cmd_devices(int argc, char **argv) {
  (void)argv;
  if (argc > 0)
    return cli_usage_error("devices", "takes no arguments");
  ts_device_probe p;
  ts_runtime_probe(&p);
  printf("cpu: %d core%s\n", p.cpu_count, p.cpu_count == 1 ? "" : "s");
  printf("cuda: %s\n", p.cuda_message);
  return EXIT_OK;
}
