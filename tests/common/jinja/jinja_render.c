/* Test driver: JSON lines {"template": str, "input": {...}, "trusted": {...}, "now": int} on
 * stdin → {"text": str, "segments": [[begin, end], ...]} or {"error": str, "code": int} lines on
 * stdout. Used by scripts/reference/chat_template_parity.py against Python jinja2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "vesta/chat_template.h"

static void emit(json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    fflush(stdout);
    json_decref(o);
}

static json_t *error_obj(const vesta_error *e)
{
    return json_pack("{s:s, s:i}", "error", e->msg, "code", (int)e->code);
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_error_t jerr;
        json_t *req = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
        vesta_error err = {0};
        if (!req || !json_is_string(json_object_get(req, "template"))) {
            emit(json_pack("{s:s, s:i}", "error", req ? "missing template" : jerr.text, "code", -1));
            json_decref(req);
            continue;
        }
        json_t *tj = json_object_get(req, "template");
        vesta_chat_template *t = vesta_chat_template_compile(json_string_value(tj), json_string_length(tj), &err);
        if (!t) {
            emit(error_obj(&err));
            json_decref(req);
            continue;
        }
        vesta_chat_render_opts opts = {.now = -1};
        json_t *now = json_object_get(req, "now");
        if (json_is_integer(now))
            opts.now = json_integer_value(now);
        json_t *lim = json_object_get(req, "limits");
        if (json_is_object(lim)) {
            opts.limits.max_steps = (uint64_t)json_integer_value(json_object_get(lim, "max_steps"));
            opts.limits.max_depth = (uint32_t)json_integer_value(json_object_get(lim, "max_depth"));
            opts.limits.max_output = (size_t)json_integer_value(json_object_get(lim, "max_output"));
        }
        vesta_chat_rendered *r = NULL;
        if (vesta_chat_template_render(t, json_object_get(req, "input"), json_object_get(req, "trusted"), &opts, &r,
                                       &err) != VESTA_OK) {
            emit(error_obj(&err));
        } else {
            json_t *segs = json_array();
            for (size_t i = 0; i < r->n_segments; i++)
                json_array_append_new(segs, json_pack("[I,I]", (json_int_t)r->segments[i].begin,
                                                      (json_int_t)r->segments[i].end));
            json_t *gens = json_array();
            for (size_t i = 0; i < r->n_generation; i++)
                json_array_append_new(gens, json_pack("[I,I]", (json_int_t)r->generation[i].begin,
                                                      (json_int_t)r->generation[i].end));
            emit(json_pack("{s:s%, s:o, s:o}", "text", r->text, r->len, "segments", segs, "generation", gens));
        }
        vesta_chat_rendered_release(r);
        vesta_chat_template_release(t);
        json_decref(req);
    }
    free(line);
    return 0;
}
