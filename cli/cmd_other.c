/* cmd_other.c - `tessera devices`. */
#include "cli/cli.h"

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
