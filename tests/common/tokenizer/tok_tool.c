/* Test driver for vesta_tokenizer: the tokenize/detokenize CLI commands plus modes that expose
 * the streaming detokenizer and span-aware encoding as JSON lines, so that the Python parity
 * scripts can compare them with Hugging Face tokenizers.
 *   tok_tool tokenize|detokenize ...          (as `vesta tokenize|detokenize`)
 *   tok_tool stream --tokenizer P [--skip-special-tokens] [--prefix N]
 *       {"ids": [...], "stop": [...], "include_stop": b, "prefix": n}
 *         -> {"pieces": [...], "stopped": b, "finish": "...", "bad_utf8": b}
 *       (--prefix N: the first N ids are prefix context)
 *   tok_tool spans --tokenizer P
 *       {"text": "...", "plain": [[b, e], ...]} -> {"ids": [...]} */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/detokenizer.h"
#include "vesta/tokenizer.h"
#include "vesta_cli.h"

static bool valid_utf8(const char *s, size_t n) {
    json_t *j = json_stringn(s, n); /* jansson validates UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

static void emit(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    puts(s ? s : "{\"error\":\"oom\"}");
    free(s);
    json_decref(o);
    fflush(stdout);
}

static int stream_mode(int argc, char **argv) {
    const char *path = NULL;
    vesta_detokenizer_opts o = {0};
    const char *stops[16];
    size_t nprefix = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--skip-special-tokens")) o.skip_special_tokens = true;
        else if (!strcmp(argv[i], "--prefix") && i + 1 < argc) nprefix = strtoul(argv[++i], NULL, 10);
        else return 2;
    }
    o.stop = stops;
    vesta_error err = {0};
    vesta_tokenizer *tok = vesta_tokenizer_load(path, &err);
    if (!tok) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        json_t *in = json_loadb(line, (size_t)len, 0, NULL);
        json_t *arr = json_object_get(in, "ids");
        size_t n = json_array_size(arr);
        int32_t *ids = calloc(n + 1, sizeof *ids);
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
        json_t *st = json_object_get(in, "stop");
        o.n_stop = 0;
        for (size_t i = 0; i < json_array_size(st) && i < 16; i++)
            stops[o.n_stop++] = json_string_value(json_array_get(st, i));
        o.include_stop_str_in_output = json_is_true(json_object_get(in, "include_stop"));
        json_t *pv = json_object_get(in, "prefix");
        size_t np = json_is_integer(pv) ? (size_t)json_integer_value(pv) : nprefix;
        if (np > n) np = n;
        o.prefix_ids = ids;
        o.n_prefix = np;
        vesta_detokenizer *d = vesta_detokenizer_create(tok, &o, &err);
        json_t *out = json_object(), *pieces = json_array();
        bool stopped = false, bad = false;
        for (size_t i = np; d && i < n && !stopped; i++) {
            const char *t;
            size_t tl;
            if (vesta_detokenizer_feed(d, ids[i], &t, &tl, &stopped, &err) != VESTA_OK) {
                json_object_set_new(out, "error", json_string(err.msg));
                break;
            }
            if (!valid_utf8(t, tl)) bad = true;
            else json_array_append_new(pieces, json_stringn(t, tl));
        }
        if (d && !stopped) {
            const char *t;
            size_t tl;
            if (vesta_detokenizer_finish(d, &t, &tl, &err) == VESTA_OK) {
                if (!valid_utf8(t, tl)) bad = true;
                else json_object_set_new(out, "finish", json_stringn(t, tl));
            }
        }
        json_object_set_new(out, "pieces", pieces);
        json_object_set_new(out, "stopped", json_boolean(stopped));
        json_object_set_new(out, "bad_utf8", json_boolean(bad));
        emit(out);
        vesta_detokenizer_release(d);
        free(ids);
        json_decref(in);
    }
    free(line);
    vesta_tokenizer_release(tok);
    return 0;
}

static int spans_mode(int argc, char **argv) {
    const char *path = argc > 2 && !strcmp(argv[1], "--tokenizer") ? argv[2] : NULL;
    vesta_error err = {0};
    vesta_tokenizer *tok = path ? vesta_tokenizer_load(path, &err) : NULL;
    if (!tok) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        json_t *in = json_loadb(line, (size_t)len, JSON_ALLOW_NUL, NULL);
        json_t *text = json_object_get(in, "text"), *plain = json_object_get(in, "plain");
        size_t ns = json_array_size(plain);
        vesta_text_span *sp = calloc(ns + 1, sizeof *sp);
        for (size_t i = 0; i < ns; i++) {
            sp[i].begin = (size_t)json_integer_value(json_array_get(json_array_get(plain, i), 0));
            sp[i].end = (size_t)json_integer_value(json_array_get(json_array_get(plain, i), 1));
        }
        int32_t *ids = NULL;
        size_t n = 0;
        json_t *out = json_object();
        if (vesta_tokenizer_encode_spans(tok, json_string_value(text), json_string_length(text),
                                         false, sp, ns, &ids, &n, &err) != VESTA_OK) {
            json_object_set_new(out, "error", json_string(err.msg));
        } else {
            json_t *a = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
            json_object_set_new(out, "ids", a);
        }
        emit(out);
        free(ids);
        free(sp);
        json_decref(in);
    }
    free(line);
    vesta_tokenizer_release(tok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: tok_tool tokenize|detokenize|stream|spans ...\n");
        return 2;
    }
    if (!strcmp(argv[1], "tokenize")) return vesta_cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "detokenize")) return vesta_cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "stream")) return stream_mode(argc - 1, argv + 1);
    if (!strcmp(argv[1], "spans")) return spans_mode(argc - 1, argv + 1);
    fprintf(stderr, "tok_tool: unknown mode %s\n", argv[1]);
    return 2;
}
