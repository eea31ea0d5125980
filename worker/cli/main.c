/* `vesta <command> [args]`: one executable, a table of subcommands. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "generate.h"
#ifdef VESTA_HAVE_SERVE
#include "serve.h"
#endif
#ifdef VESTA_HAVE_CLI_COMMON
#include "vesta_cli.h"
#endif

#ifndef VESTA_VERSION
#define VESTA_VERSION "unknown"
#endif

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"generate", vesta_cmd_generate, "offline batch generation from a JSONL file (vLLM's LLM.generate)"},
#ifdef VESTA_HAVE_SERVE
    {"serve", vesta_cmd_serve, "start a router and N workers, OpenAI API (vLLM's `vllm serve`)"},
#endif
    {"bench", vesta_cmd_bench, "benchmarks: throughput, latency, prefix (offline engine), serve (HTTP, vLLM's bench serve)"},
#ifdef VESTA_HAVE_CLI_COMMON
    {"tokenize", vesta_cmd_tokenize, "JSONL {\"text\"} -> {\"ids\"} with a model's tokenizer"},
    {"detokenize", vesta_cmd_detokenize, "JSONL {\"ids\"} -> {\"text\"}"},
#ifdef VESTA_HAVE_CHAT_TEMPLATE
    {"chat-template", vesta_cmd_chat_template, "render chat messages with the model's template"},
#endif
#endif
};

static void usage(FILE *f)
{
    fprintf(f, "usage: vesta <command> [args]   (vesta <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-15s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  --help          this list\n  --version       the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("vesta %s\n", VESTA_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vesta: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
