#include "tokenizer_cmd.h"

#include <stdio.h>
#include <string.h>

#include "jsonl.h"

/* What vesta_cli_each_line's callback needs to reach the command's own line handler. */
typedef struct line_ctx {
    const vesta_cli_tokenizer_cmd *cmd;
    const vesta_tokenizer *tok;
} line_ctx;

static void each_line(void *ctx, const char *line, size_t len)
{
    const line_ctx *c = ctx;
    c->cmd->line(c->cmd->ctx, c->tok, line, len);
}

/* Sets the switch named arg and returns true, or returns false when arg names none. */
static bool apply_switch(const vesta_cli_tokenizer_cmd *cmd, const char *arg)
{
    for (size_t k = 0; k < cmd->num_switches; k++) {
        if (!strcmp(arg, cmd->switches[k].name)) {
            *cmd->switches[k].target = cmd->switches[k].value;
            return true;
        }
    }
    return false;
}

int vesta_cli_tokenizer_cmd_run(const vesta_cli_tokenizer_cmd *cmd, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            path = argv[++i];
        else if (apply_switch(cmd, argv[i]))
            continue;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(cmd->usage, stderr);
            return 0;
        } else {
            fputs(cmd->usage, stderr);
            return 2;
        }
    }
    if (!path) {
        fputs(cmd->usage, stderr);
        return 2;
    }
    vesta_error err = {0};
    vesta_tokenizer *tok = vesta_tokenizer_load(path, &err);
    if (!tok) {
        fprintf(stderr, "vesta %s: %s\n", cmd->name, err.msg);
        return 1;
    }
    line_ctx c = {cmd, tok};
    vesta_cli_each_line(each_line, &c);
    vesta_tokenizer_release(tok);
    return 0;
}
