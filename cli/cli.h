/* cli.h - private to cli/: the subcommands of `tessera` and the helpers
 * they share (argument parsing, reading a source, printing diagnostics).
 * Exit codes: 0 success, 1 the program has errors, 2 usage or system
 * failure. */
#ifndef TS_CLI_H
#define TS_CLI_H

#include "runtime/runtime.h"

enum { EXIT_OK = 0, EXIT_PROGRAM = 1, EXIT_USAGE = 2 };

typedef struct cli_command {
  const char *name;
  const char *summary;
  const char *usage; /* full --help text */
  int (*run)(int argc, char **argv);
} cli_command;

int cmd_check(int argc, char **argv);
int cmd_compile(int argc, char **argv);
int cmd_fmt(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_devices(int argc, char **argv);

extern const cli_command cli_commands[];
const cli_command *cli_find(const char *name);

/* Shared options. */
typedef enum { COLOR_AUTO, COLOR_ALWAYS, COLOR_NEVER } cli_color;

bool cli_is_help(const char *a);
void cli_print_help(const cli_command *c);
int cli_usage_error(const char *cmd, const char *fmt, ...) TS_PRINTF(2, 3);
/* Parses `--color=WHEN`; false if `a` is not a colour option. */
bool cli_parse_color(const char *cmd, const char *a, cli_color *c, int *err);
bool cli_color_on(cli_color c);
/* Reports a system failure (exit 2) and frees the status. */
int cli_fail(const char *cmd, ts_status s);
/* Renders diagnostics to stderr. */
void cli_render(const ts_diags *d, cli_color c);
/* Parses a -D argument ("NAME=VALUE"), splitting `text` in place. */
bool cli_parse_define(char *text, ts_define *out);
/* The value of `--opt VALUE` or `--opt=VALUE` at argv[*i] (advanced past a
 * separate value); NULL when it is not that option, or with *missing set
 * when its value is not there. */
const char *cli_option(const char *name, int argc, char **argv, int *i, bool *missing);

#endif
