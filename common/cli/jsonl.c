#include "jsonl.h"

#include <stdio.h>
#include <stdlib.h>

void vesta_cli_emit(json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    } else {
        fputs("{\"error\": \"out of memory\"}\n", stdout);
    }
    fflush(stdout); /* a caller driving us line by line over a pipe waits for each answer */
    json_decref(o);
}

void vesta_cli_emit_error(const char *msg) { vesta_cli_emit(json_pack("{s:s}", "error", msg)); }

json_t *vesta_cli_parse_object(const char *line, size_t len, const char *what_expected)
{
    json_error_t je;
    json_t *in = json_loadb(line, len, JSON_ALLOW_NUL, &je);
    if (in == NULL) {
        char msg[300];
        snprintf(msg, sizeof msg, "malformed JSON: %s", je.text);
        vesta_cli_emit_error(msg);
        return NULL;
    }
    if (!json_is_object(in)) {
        char msg[300];
        snprintf(msg, sizeof msg, "expected %s", what_expected);
        vesta_cli_emit_error(msg);
        json_decref(in);
        return NULL;
    }
    return in;
}

void vesta_cli_each_line(void (*fn)(void *ctx, const char *line, size_t len), void *ctx)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        fn(ctx, line, len); /* an empty line is malformed too: it gets its error line */
    }
    free(line);
}
