/* `vesta detokenize`: JSON lines {"ids": [...]} on stdin → {"text": "..."} on stdout. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/tokenizer.h"
#include "vesta_cli.h"

static void emit(json_t *o) {
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
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
    fprintf(stderr, "usage: vesta detokenize --tokenizer PATH [--skip-special-tokens]\n"
                    "  reads {\"ids\": [...]} lines on stdin, writes {\"text\": \"...\"} lines.\n");
}

static void process_line(const vesta_tokenizer *tok, const char *line, size_t len, bool skip) {
    json_error_t je;
    json_t *in = json_loadb(line, len, 0, &je);
    if (!in) {
        char msg[300];
        snprintf(msg, sizeof msg, "malformed JSON: %s", je.text);
        emit_error(msg);
        return;
    }
    json_t *arr = json_object_get(in, "ids");
    if (!json_is_object(in) || !json_is_array(arr)) {
        emit_error("expected an object with an array field \"ids\"");
        json_decref(in);
        return;
    }
    size_t n = json_array_size(arr);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) {
        emit_error("out of memory");
        json_decref(in);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(arr, i);
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id > INT32_MAX) {
            char msg[100];
            snprintf(msg, sizeof msg, "ids[%zu] is not a non-negative 32-bit integer", i);
            emit_error(msg);
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
        emit_error(err.msg);
        return;
    }
    json_t *out = json_object();
    if (out) json_object_set_new(out, "text", json_stringn(text, tl));
    free(text);
    emit(out);
}

int vesta_cmd_detokenize(int argc, char **argv) {
    const char *path = NULL;
    bool skip = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--skip-special-tokens")) skip = true;
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
        fprintf(stderr, "vesta detokenize: %s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        if (len > 0 && line[len - 1] == '\n') len--;
        process_line(tok, line, (size_t)len, skip);
        fflush(stdout);
    }
    free(line);
    vesta_tokenizer_release(tok);
    return 0;
}
