/* `vesta detokenize`: JSON lines {"ids": [...]} on stdin → {"text": "..."} on stdout. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "jsonl.h"
#include "tokenizer_cmd.h"
#include "vesta/tokenizer.h"
#include "vesta_cli.h"

static const char usage[] = "usage: vesta detokenize --tokenizer PATH [--skip-special-tokens]\n"
                            "  reads {\"ids\": [...]} lines on stdin, writes {\"text\": \"...\"} lines.\n";

/* ctx: the bool --skip-special-tokens sets. */
static void process_line(void *ctx, const vesta_tokenizer *tok, const char *line, size_t len)
{
    bool skip = *(const bool *)ctx;
    json_t *in = vesta_cli_parse_object(line, len, "an object with an array field \"ids\"");
    if (!in) return;
    json_t *arr = json_object_get(in, "ids");
    if (!json_is_array(arr)) {
        vesta_cli_emit_error("expected an object with an array field \"ids\"");
        json_decref(in);
        return;
    }
    size_t n = json_array_size(arr);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        vesta_cli_emit_error("out of memory");
        json_decref(in);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id > INT32_MAX) {
            char msg[100];
            snprintf(msg, sizeof msg, "ids[%zu] is not a non-negative 32-bit integer", i);
            vesta_cli_emit_error(msg);
            free(ids);
            json_decref(in);
            return;
        }
        ids[i] = (int32_t)id;
    }
    json_decref(in);
    vesta_error err = {0};
    char *text = NULL;
    size_t tl = 0;
    vesta_status st = vesta_tokenizer_decode(tok, ids, n, skip, &text, &tl, &err);
    free(ids);
    if (st != VESTA_OK) {
        vesta_cli_emit_error(err.msg);
        return;
    }
    json_t *out = json_object();
    if (out) json_object_set_new(out, "text", json_stringn(text, tl));
    free(text);
    vesta_cli_emit(out);
}

int vesta_cmd_detokenize(int argc, char **argv)
{
    bool skip = false;
    const vesta_cli_switch switches[] = {{"--skip-special-tokens", &skip, true}};
    vesta_cli_tokenizer_cmd cmd = {"detokenize", usage, switches, sizeof switches / sizeof *switches,
                                   process_line, &skip};
    return vesta_cli_tokenizer_cmd_run(&cmd, argc, argv);
}
