/* `vesta tokenize`: JSON lines {"text": "..."} on stdin → {"ids": [...]} on stdout. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/tokenizer.h"
#include "vesta_cli.h"

static void emit(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    } else {
        fputs("{\"error\": \"out of memory\"}\n", stdout);
    }
    json_decref(o);
}

static void emit_error(const char *msg) {
    emit(json_pack("{s:s}", "error", msg));
}

static void usage(void) {
    fprintf(stderr, "usage: vesta tokenize --tokenizer PATH [--add-special-tokens] [--no-parse-special]\n"
                    "  reads {\"text\": \"...\"} lines on stdin, writes {\"ids\": [...]} lines.\n"
                    "  --no-parse-special: special-token spellings in the text are plain text.\n");
}

static void process_line(const vesta_tokenizer *tok, const char *line, size_t len, bool add_special,
                         bool parse_special) {
    json_error_t je;
    json_t *in = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    if (!in) {
        char msg[300];
        snprintf(msg, sizeof msg, "malformed JSON: %s", je.text);
        emit_error(msg);
        return;
    }
    json_t *text = json_object_get(in, "text");
    if (!json_is_object(in) || !json_is_string(text)) {
        emit_error("expected an object with a string field \"text\"");
        json_decref(in);
        return;
    }
    vesta_error err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (vesta_tokenizer_encode(tok, json_string_value(text), json_string_length(text), add_special,
                               parse_special, &ids, &n, &err) != VESTA_OK) {
        emit_error(err.msg);
        json_decref(in);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) json_array_append_new(arr, json_integer(ids[i]));
    free(ids);
    json_decref(in);
    if (!arr) {
        emit_error("out of memory");
        return;
    }
    json_t *out = json_object();
    json_object_set_new(out, "ids", arr);
    emit(out);
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
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') len--;
        process_line(tok, line, (size_t)len, add_special, parse_special);
        fflush(stdout);
    }
    free(line);
    vesta_tokenizer_release(tok);
    return 0;
}
