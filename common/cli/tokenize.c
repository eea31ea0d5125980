/* `vesta tokenize`: JSON lines {"text": "..."} on stdin → {"ids": [...]} on stdout. */
#include <stdbool.h>
#include <stdlib.h>

#include <jansson.h>

#include "jsonl.h"
#include "tokenizer_cmd.h"
#include "vesta/tokenizer.h"
#include "vesta_cli.h"

static const char usage[] = "usage: vesta tokenize --tokenizer PATH [--add-special-tokens] [--no-parse-special]\n"
                            "  reads {\"text\": \"...\"} lines on stdin, writes {\"ids\": [...]} lines.\n"
                            "  --no-parse-special: special-token spellings in the text are plain text.\n";

typedef struct tokenize_opts {
    bool add_special, parse_special;
} tokenize_opts;

static void process_line(void *ctx, const vesta_tokenizer *tok, const char *line, size_t len)
{
    const tokenize_opts *o = ctx;
    bool add_special = o->add_special, parse_special = o->parse_special;
    json_t *in = vesta_cli_parse_object(line, len, "an object with a string field \"text\"");
    if (!in) return;
    json_t *text = json_object_get(in, "text");
    if (!json_is_string(text)) {
        vesta_cli_emit_error("expected an object with a string field \"text\"");
        json_decref(in);
        return;
    }
    vesta_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (vesta_tokenizer_encode(tok, json_string_value(text), json_string_length(text), add_special, parse_special, &ids,
                               &n, &err) != VESTA_OK) {
        vesta_cli_emit_error(err.msg);
        json_decref(in);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    json_decref(in);
    if (!arr) {
        vesta_cli_emit_error("out of memory");
        return;
    }
    json_t *out = json_object();
    json_object_set_new(out, "ids", arr);
    vesta_cli_emit(out);
}

int vesta_cmd_tokenize(int argc, char **argv)
{
    tokenize_opts o = {.add_special = false, .parse_special = true};
    const vesta_cli_switch switches[] = {{"--add-special-tokens", &o.add_special, true},
                                         {"--no-parse-special", &o.parse_special, false}};
    vesta_cli_tokenizer_cmd cmd = {"tokenize", usage, switches, sizeof switches / sizeof *switches, process_line, &o};
    return vesta_cli_tokenizer_cmd_run(&cmd, argc, argv);
}
