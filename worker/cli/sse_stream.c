/* SSE line splitting and OpenAI chunk interpretation for `vesta bench serve` (see sse_stream.h). */
#include "sse_stream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void vesta_sse_stream_init(vesta_sse_stream *s, size_t line_max) { *s = (vesta_sse_stream){.line_max = line_max}; }

bool vesta_text_buf_append(vesta_text_buf *b, const char *s, size_t n)
{
    if (n > SIZE_MAX - b->n - 1) return false;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap = cap > SIZE_MAX / 2 ? b->n + n + 1 : cap * 2;
        char *q = realloc(b->p, cap);
        if (!q) return false;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

void vesta_text_buf_dispose(vesta_text_buf *b)
{
    free(b->p);
    *b = (vesta_text_buf){0};
}

void vesta_sse_stream_dispose(vesta_sse_stream *s) { vesta_text_buf_dispose(&s->line); }

/* The complete line in s->line: its data value goes to on_data; false to stop. */
static bool line_dispatch(vesta_sse_stream *s, vesta_sse_data_fn on_data, void *ud)
{
    char *p = s->line.p; /* set: the line was appended to before its dispatch */
    size_t n = s->line.n;
    if (n && p[n - 1] == '\r') p[--n] = '\0';
    if (n < 5 || memcmp(p, "data:", 5) != 0)
        return true; /* blank separators, comments (":"), event:/id:/retry: fields */
    p += 5;
    n -= 5;
    if (n && *p == ' ') p++, n--;
    return on_data(ud, p, n);
}

vesta_sse_status vesta_sse_stream_feed(vesta_sse_stream *s, const char *bytes, size_t n, vesta_sse_data_fn on_data,
                                       void *ud)
{
    size_t i = 0;
    while (s->status == VESTA_SSE_STATUS_OK && i < n) {
        const char *nl = memchr(bytes + i, '\n', n - i);
        size_t k = nl ? (size_t)(nl - (bytes + i)) : n - i;
        if (k > s->line_max - s->line.n) /* line.n <= line_max always holds */
            s->status = VESTA_SSE_STATUS_LINE_TOO_LONG;
        else if (!vesta_text_buf_append(&s->line, bytes + i, k))
            s->status = VESTA_SSE_STATUS_NO_MEMORY;
        else if (nl) {
            i += k + 1;
            bool go = line_dispatch(s, on_data, ud);
            s->line.n = 0;
            if (!go) s->status = VESTA_SSE_STATUS_STOPPED;
        } else {
            i = n;
        }
    }
    return s->status;
}

vesta_sse_chunk_kind vesta_sse_chunk_parse(vesta_sse_chunk *c, const char *payload, size_t n)
{
    *c = (vesta_sse_chunk){.kind = VESTA_SSE_CHUNK_DATA, .usage_tokens = -1};
    if (n == 6 && memcmp(payload, "[DONE]", 6) == 0) return c->kind = VESTA_SSE_CHUNK_DONE;
    /* JSON_ALLOW_NUL: a completion's text may hold U+0000 (a byte token). */
    c->json = json_loadb(payload, n, JSON_ALLOW_NUL, &c->json_error);
    if (!json_is_object(c->json)) return c->kind = VESTA_SSE_CHUNK_BAD_JSON;
    json_t *e = json_object_get(c->json, "error");
    if (e) {
        c->error = json_string_value(json_object_get(e, "message"));
        return c->kind = VESTA_SSE_CHUNK_ERROR_EVENT;
    }
    json_t *choices = json_object_get(c->json, "choices");
    if (json_is_array(choices) && json_array_size(choices) > 0) {
        c->has_choice = true;
        json_t *txt = json_object_get(json_array_get(choices, 0), "text");
        if (json_is_string(txt)) {
            c->text = json_string_value(txt);
            c->text_len = json_string_length(txt);
        }
    }
    json_t *u = json_object_get(c->json, "usage");
    json_t *ct = json_is_object(u) ? json_object_get(u, "completion_tokens") : NULL;
    if (json_is_integer(ct) && json_integer_value(ct) >= 0) c->usage_tokens = json_integer_value(ct);
    return c->kind;
}

void vesta_sse_chunk_dispose(vesta_sse_chunk *c)
{
    json_decref(c->json);
    c->json = NULL;
    c->text = c->error = NULL;
}
