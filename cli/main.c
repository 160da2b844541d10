/* main.c - `tessera`: one binary, one subcommand per file in cli/. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const cli_command cli_commands[] = {
    {"check", "report the diagnostics of .tile files",
     "usage: tessera check [options] FILE...\n"
     "\n"
     "Parses and checks each file and prints its diagnostics.\n"
     "\n"
     "options:\n"
     "  -D NAME=VALUE    override a kernel param (repeatable)\n"
     "  --arch A         check for this architecture (the built-in constant\n"
     "                   `arch`, which params' defaults may use): cpu\n"
     "                   (default), sm_90a, sm_90, sm_80 or sm_86\n"
     "  -v, --verbose    print a summary of each kernel that checks\n"
     "  --color=WHEN     auto (a terminal, no NO_COLOR), always or never\n"
     "\n"
     "exit: 0 no errors, 1 errors in a program, 2 usage or I/O failure\n",
     cmd_check},
    {"compile", "compile a .tile file to a stage or a target",
     "usage: tessera compile FILE [options]\n"
     "\n"
     "options:\n"
     "  --kernel NAME    only this kernel (default: every kernel)\n"
     "  --target T       cpu (default), ptx (the MLIR lowering) or cuda (CUDA\n"
     "                   C; --emit ptx compiles it with NVRTC)\n"
     "  --arch SM        the GPU architecture: sm_90a (default; wgmma, TMA,\n"
     "                   227 KiB of shared memory a block), sm_90, sm_80\n"
     "                   (163 KiB, an A100) or sm_86 (99 KiB)\n"
     "  --emit STAGE     tokens, ast, typed, mlir (generated), lowered (the\n"
     "                   LLVM dialect), llvm (LLVM IR), ptx, cuda, resources\n"
     "                   (ptxas's registers, spills and shared memory of\n"
     "                   each kernel's PTX, and its occupancy), plan (where\n"
     "                   each tile lives on the GPU, how each gemm and copy\n"
     "                   runs, and why not a faster form); default: the\n"
     "                   target's own (JIT-compile for the CPU)\n"
     "  --time-passes    print where MLIR's pass pipeline spends its time\n"
     "  --dump-after P   print the IR after pass P of the target's pipeline\n"
     "                   (each time it runs; all: after every pass) instead\n"
     "                   of a stage; an unknown P lists the passes\n"
     "  -D NAME=VALUE    override a kernel param (repeatable)\n"
     "  --shape NAME=VALUE  with --kernel: the params the tuning database\n"
     "                   holds for this shape, with the -D values held\n"
     "                   (none of them tuned; repeatable)\n"
     "  --device NAME    ... on this device (default cpu for the CPU target)\n"
     "  --no-tune-db     ignore the tuning database\n"
     "  --no-cache       do not read or write the kernel cache (PTX)\n"
     "  -v               say what the cache and the tuning database did\n"
     "  -o OUT           write the output to OUT (atomically) instead of\n"
     "                   standard output\n"
     "  --color=WHEN     auto, always or never\n"
     "\n"
     "exit: 0 success, 1 errors in the program, 2 usage, I/O failure or a\n"
     "stage that is not built yet\n",
     cmd_compile},
    {"fmt", "print the canonical layout of a .tile file",
     "usage: tessera fmt [options] FILE\n"
     "\n"
     "Prints FILE in the canonical layout (comments kept). A file with\n"
     "syntax errors is reported, not reformatted.\n"
     "\n"
     "options:\n"
     "  -w, --write      rewrite FILE in place (atomically)\n"
     "  --check          print nothing; exit 1 if FILE is not formatted\n"
     "  --color=WHEN     auto, always or never\n",
     cmd_fmt},
    {"run", "run a Lua script with the tessera module",
     "usage: tessera run SCRIPT.lua [args...]\n"
     "\n"
     "Runs a Lua 5.4 script; `local ts = require \"tessera\"` gives devices,\n"
     "tensors, kernels compiled from .tile files, and safetensors files\n"
     "(docs/lua.md). `arg` holds the script's arguments. A script error\n"
     "prints its traceback and exits 1.\n",
     cmd_run},
    {"tune", "autotune a kernel's params over its tune(...) space",
     "usage: tessera tune FILE --kernel NAME --shape NAME=VALUE...\n"
     "                    [--device cpu|gpusim|cuda] [--budget SECONDS]\n"
     "                    [--jobs N] [--repeats N] [--close F] [--db PATH]\n"
     "                    [--no-tune-db] [--keep-spills] [-D NAME=VALUE...]\n"
     "       tessera tune --show [--db PATH]\n"
     "\n"
     "Tries every config of the kernel's `tune(...)` clause: configs that\n"
     "break a `require` or a limit the front end checks are pruned before\n"
     "compiling (and counted, with the reason); the rest are compiled on\n"
     "--jobs threads, run on random inputs and compared with the default\n"
     "config (a wrong one is rejected), then timed (a warm-up and --repeats\n"
     "runs, 7 by default: median and spread); the configs whose fastest run\n"
     "is within --close (a factor, 2 by default; 1: none) of the best's, up\n"
     "to 6, are then timed again in turns, --repeats rounds of one run each,\n"
     "so that a busy spell of the host slows them alike (their median and\n"
     "spread are of those runs: \"timed in turns\"). Prints the ranked table and\n"
     "records the timings in the tuning database (tune.db next to the\n"
     "kernel cache, or --db); `ts.kernel` with shapes (and no tuned params)\n"
     "then picks the best known config. --shape gives each dim of the\n"
     "kernel's tensors, and scalar arguments (default 1). -D holds a param\n"
     "the sweep leaves alone (a dtype param: -D W=bf16) at a value, recorded\n"
     "with the shapes. --budget stops timing when the seconds are spent.\n"
     "On a GPU device (cuda, gpusim) each compiled config's PTX goes\n"
     "through ptxas -v: its registers and spills are shown, and a config\n"
     "that spills more than the default config is pruned before it runs\n"
     "(--keep-spills runs it all the same).\n"
     "--show lists the database.\n",
     cmd_tune},
    {"bench", "run the benchmarks and record their figures",
     "usage: tessera bench [NAME...] [--device cpu|cuda] [--out DIR] [--list]\n"
     "\n"
     "Runs the benchmarks of bench/ (all of the device's suite, or the\n"
     "NAMEs; --list shows them) from the source root and writes their\n"
     "tables, with the machine, the versions and the date, to DIR\n"
     "(bench/results) as bench-DEVICE-DATE.md and .json; prints the two\n"
     "paths. Each benchmark measures its baselines in the same run. The\n"
     "cuda suite needs an NVIDIA GPU (scripts/gpu.sh runs it).\n",
     cmd_bench},
    {"devices", "list the devices of this machine",
     "usage: tessera devices\n"
     "\n"
     "Prints the CPU cores and whether a GPU and its driver are present.\n",
     cmd_devices},
    {NULL, NULL, NULL, NULL},
};

const cli_command *cli_find(const char *name) {
  for (const cli_command *c = cli_commands; c->name; c++)
    if (!strcmp(c->name, name))
      return c;
  return NULL;
}

bool cli_is_help(const char *a) {
  return !strcmp(a, "--help") || !strcmp(a, "-h");
}

void cli_print_help(const cli_command *c) { fputs(c->usage, stdout); }

int cli_usage_error(const char *cmd, const char *fmt, ...) {
  fprintf(stderr, "tessera %s: ", cmd);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see 'tessera %s --help')\n", cmd);
  return EXIT_USAGE;
}

bool cli_parse_color(const char *cmd, const char *a, cli_color *c, int *err) {
  if (strncmp(a, "--color", 7) != 0)
    return false;
  const char *v = a[7] == '=' ? a + 8 : a[7] == 0 ? "always" : NULL;
  if (!v)
    return false;
  if (!strcmp(v, "auto"))
    *c = COLOR_AUTO;
  else if (!strcmp(v, "always"))
    *c = COLOR_ALWAYS;
  else if (!strcmp(v, "never"))
    *c = COLOR_NEVER;
  else
    *err = cli_usage_error(cmd,
                           "--color takes auto, always or never, not "
                           "'%s'",
                           v);
  return true;
}

bool cli_color_on(cli_color c) {
  return c == COLOR_ALWAYS || (c == COLOR_AUTO && ts_color_wanted(stderr));
}

int cli_fail(const char *cmd, ts_status s) {
  fprintf(stderr, "tessera %s: %s\n", cmd, ts_status_message(s));
  ts_status_free(s);
  return EXIT_USAGE;
}

void cli_render(const ts_diags *d, cli_color c) {
  ts_diags_render(d, stderr, (ts_render_options){cli_color_on(c), true});
}

/* The value of `--opt VALUE` or `--opt=VALUE`; NULL when `a` is not it. */
const char *cli_option(const char *name, int argc, char **argv, int *i, bool *missing) {
  const char *a = argv[*i];
  size_t n = strlen(name);
  if (strncmp(a, name, n) != 0)
    return NULL;
  if (a[n] == '=')
    return a + n + 1;
  if (a[n] != 0)
    return NULL;
  if (*i + 1 >= argc) {
    *missing = true;
    return NULL;
  }
  return argv[++*i];
}

bool cli_parse_define(char *text, ts_define *out) {
  char *eq = strchr(text, '=');
  if (!eq || eq == text)
    return false;
  *eq = 0; /* argv strings are ours to split */
  out->name = text;
  out->value = eq + 1;
  return true;
}

static void print_main_help(void) {
  printf("usage: tessera COMMAND [options]\n\n"
         "Tessera: a tile-level kernel language and compiler.\n\n"
         "commands:\n");
  for (const cli_command *c = cli_commands; c->name; c++)
    printf("  %-9s %s\n", c->name, c->summary);
  printf("\n'tessera COMMAND --help' shows a command's options;\n"
         "'tessera --version' the versions of Tessera and its LLVM/MLIR.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_main_help();
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (cli_is_help(cmd) || !strcmp(cmd, "help")) {
    if (argc > 2 && strcmp(cmd, "help") == 0) {
      const cli_command *c = cli_find(argv[2]);
      if (!c) {
        fprintf(stderr, "tessera: unknown command '%s'\n", argv[2]);
        return EXIT_USAGE;
      }
      cli_print_help(c);
      return EXIT_OK;
    }
    print_main_help();
    return EXIT_OK;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("%s\n", ts_compiler_version());
    return EXIT_OK;
  }
  const cli_command *c = cli_find(cmd);
  if (!c) {
    fprintf(stderr, "tessera: unknown command '%s'\n(see 'tessera --help')\n",
            cmd);
    return EXIT_USAGE;
  }
  for (int i = 2; i < argc; i++)
    if (cli_is_help(argv[i])) {
      cli_print_help(c);
      return EXIT_OK;
    }
  return c->run(argc - 2, argv + 2);
}
