/* The front shared by the `vesta` commands that turn JSON lines with a tokenizer (tokenize,
 * detokenize): their arguments, loading the tokenizer and the line loop. Each command keeps only
 * its own switches and what it does with one line. */
#ifndef VESTA_CLI_TOKENIZER_CMD_H
#define VESTA_CLI_TOKENIZER_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "vesta/tokenizer.h"

/* A flag without a value: when `name` is on the command line, *target is set to value. */
typedef struct vesta_cli_switch {
    const char *name;
    bool *target;
    bool value;
} vesta_cli_switch;

/* One tokenizer command. */
typedef struct vesta_cli_tokenizer_cmd {
    const char *name;                 /* "tokenize": names the command in load errors */
    const char *usage;                /* printed on stderr for -h/--help and usage errors */
    const vesta_cli_switch *switches; /* the command's flags besides --tokenizer PATH */
    size_t num_switches;
    /* Handles one stdin line (its line ending stripped) with the loaded tokenizer. */
    void (*line)(void *ctx, const vesta_tokenizer *tok, const char *line, size_t len);
    void *ctx; /* passed to line */
} vesta_cli_tokenizer_cmd;

/* Parses argv (argv[0] is the subcommand; --tokenizer PATH, -h/--help and cmd->switches, which
 * it sets as it meets them), loads the tokenizer, calls cmd->line on every stdin line, then
 * releases the tokenizer. Returns the exit status: 0 after the last line or for --help, 1 when
 * the tokenizer cannot be loaded ("vesta NAME: reason" on stderr), 2 on a usage error (an
 * unknown argument or no --tokenizer; the usage on stderr). */
int vesta_cli_tokenizer_cmd_run(const vesta_cli_tokenizer_cmd *cmd, int argc, char **argv);

#endif
