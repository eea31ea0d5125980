/* `vesta tokenize`: JSON lines {"text": "..."} on stdin → {"ids": [...]} on stdout. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/tokenizer.h"
#include "jsonl.h"
#include "vesta_cli.h"

static void usage(void) {
    fprintf(stderr, "usage: vesta tokenize --tokenizer PATH [--add-special-tokens] [--no-parse-special]\n"
                    "  reads {\"text\": \"...\"} lines on stdin, writes {\"ids\": [...]} lines.\n"
                    "  --no-parse-special: special-token spellings in the text are plain text.\n");
}

typedef struct tokenize_opts {
    const vesta_tokenizer *tok;
    bool add_special, parse_special;
} tokenize_opts;

static void process_line(void *ctx, const char *line, size_t len) {
    const tokenize_opts *o = ctx;
    const vesta_tokenizer *tok = o->tok;
    bool add_special = o->add_special, parse_special = o->parse_special;
    json_t *in = vesta_cli_parse_object(line, len, "an object with a string field \"text\"");
    if (!in)
        return;
    json_t *text = json_object_get(in, "text");
    if (!json_is_string(text)) {
        vesta_cli_emit_error("expected an object with a string field \"text\"");
        json_decref(in);
        return;
    }
    vesta_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (vesta_tokenizer_encode(tok, json_string_value(text), json_string_length(text), add_special,
                               parse_special, &ids, &n, &err) != VESTA_OK) {
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

int vesta_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    bool add_special = false, parse_special = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--add-special-tokens")) add_special = true;
        else if (!strcmp(argv[i], "--no-parse-special")) parse_special = false;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage();
            return 0;
        } else {
            usage();
            return 2;
        }
    }
    if (!path) {
        usage();
        return 2;
    }
    vesta_error err = {0};
    vesta_tokenizer *tok = vesta_tokenizer_load(path, &err);
    if (!tok) {
        fprintf(stderr, "vesta tokenize: %s\n", err.msg);
        return 1;
    }
    tokenize_opts o = {tok, add_special, parse_special};
    vesta_cli_each_line(process_line, &o);
    vesta_tokenizer_release(tok);
    return 0;
}
