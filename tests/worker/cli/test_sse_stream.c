/* The SSE stream parser of `vesta bench serve` (worker/cli/sse_stream.c) on exact expectations
 * written from the SSE format (WHATWG HTML "Server-sent events": lines end at LF or CRLF, ':' starts
 * a comment, "field: value" with one optional space) and OpenAI's streamed completion chunks. */
#include <stdlib.h>
#include <string.h>

#include "sse_stream.h"
#include "vesta_test.h"

/* The data payloads a feed produced, each stored as length + bytes (payloads may hold NUL). */
typedef struct events {
    char buf[4096];
    size_t len;
    int count;
    int stop_after; /* the callback refuses the event with this number (1-based); 0: never */
} events;

static bool record(void *ud, const char *p, size_t n)
{
    events *e = ud;
    CHECK(p[n] == '\0');
    if (e->len + sizeof n + n <= sizeof e->buf) {
        memcpy(e->buf + e->len, &n, sizeof n);
        memcpy(e->buf + e->len + sizeof n, p, n);
        e->len += sizeof n + n;
    }
    e->count++;
    return e->count != e->stop_after;
}

/* The expected events: payloads as C strings, then their count. */
static events expect(const char *const *payloads, int n)
{
    events e = {0};
    for (int i = 0; i < n; i++)
        record(&e, payloads[i], strlen(payloads[i]));
    return e;
}

static bool same(const events *a, const events *b)
{
    return a->count == b->count && a->len == b->len && memcmp(a->buf, b->buf, a->len) == 0;
}

/* Feeds text in pieces cut at the given offsets (ascending); returns the final status. */
static vesta_sse_status feed_cut(const char *text, size_t n, const size_t *cuts, int ncuts, size_t line_max,
                                 events *e)
{
    vesta_sse_stream s;
    vesta_sse_stream_init(&s, line_max);
    vesta_sse_status st = VESTA_SSE_STATUS_OK;
    size_t at = 0;
    for (int i = 0; i <= ncuts && st == VESTA_SSE_STATUS_OK; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        st = vesta_sse_stream_feed(&s, text + at, end - at, record, e);
        at = end;
    }
    vesta_sse_stream_dispose(&s);
    return st;
}

static const char stream[] = ": keep-alive\r\n"
                             "\r\n"
                             "event: completion\n"
                             "id: 7\n"
                             "retry: 100\n"
                             "data: {\"choices\":[{\"text\":\"Hi\"}]}\r\n"
                             "\n"
                             "data:{\"choices\":[{\"text\":\"a\\u0000b\"}]}\n"
                             "Data: ignored, field names are case-sensitive\n"
                             "dat: ignored\n"
                             "data:  two spaces keep one\n"
                             "data: cr\r\r\n"
                             "data:\n"
                             "data: {\"choices\":[],\"usage\":{\"completion_tokens\":2}}\n"
                             "data: [DONE]\n"
                             "\n"
                             "data: unterminated at the end is not an event";

static const char *const stream_events[] = {
    "{\"choices\":[{\"text\":\"Hi\"}]}",
    "{\"choices\":[{\"text\":\"a\\u0000b\"}]}",
    " two spaces keep one",
    "cr\r", /* only one CR belongs to the line end */
    "",
    "{\"choices\":[],\"usage\":{\"completion_tokens\":2}}",
    "[DONE]",
};

static void test_splits(void)
{
    size_t n = sizeof stream - 1;
    events want = expect(stream_events, sizeof stream_events / sizeof *stream_events);
    events whole = {0};
    CHECK(feed_cut(stream, n, NULL, 0, VESTA_SSE_LINE_MAX, &whole) == VESTA_SSE_STATUS_OK);
    CHECK(same(&whole, &want));
    /* one cut at every byte boundary, then cuts at every pair of boundaries: same events */
    for (size_t i = 0; i <= n; i++) {
        events e = {0};
        CHECK(feed_cut(stream, n, &i, 1, VESTA_SSE_LINE_MAX, &e) == VESTA_SSE_STATUS_OK);
        CHECK(same(&e, &want));
        for (size_t j = i; j <= n; j += 7) {
            size_t cuts[2] = {i, j};
            events f = {0};
            CHECK(feed_cut(stream, n, cuts, 2, VESTA_SSE_LINE_MAX, &f) == VESTA_SSE_STATUS_OK);
            CHECK(same(&f, &want));
        }
    }
    /* one byte at a time */
    vesta_sse_stream s;
    vesta_sse_stream_init(&s, VESTA_SSE_LINE_MAX);
    events bytes = {0};
    for (size_t i = 0; i < n; i++)
        CHECK(vesta_sse_stream_feed(&s, stream + i, 1, record, &bytes) == VESTA_SSE_STATUS_OK);
    CHECK(same(&bytes, &want));
    vesta_sse_stream_dispose(&s);
    vesta_sse_stream_dispose(&s); /* a second dispose is a no-op */
}

static void test_line_cap(void)
{
    /* "data: 0123456789" is 16 bytes: at a cap of 16 it passes, at 15 it fails */
    const char *text = "data: 0123456789\r\ndata: 0123456789\n";
    size_t n = strlen(text);
    events e = {0};
    CHECK(feed_cut(text, n, NULL, 0, 17, &e) == VESTA_SSE_STATUS_OK); /* the CR counts, LF does not */
    CHECK(e.count == 2);
    events f = {0};
    CHECK(feed_cut(text, n, NULL, 0, 16, &f) == VESTA_SSE_STATUS_LINE_TOO_LONG);
    CHECK(f.count == 0);
    events g = {0};
    const char *ok = "data: 0123456789\n";
    CHECK(feed_cut(ok, strlen(ok), NULL, 0, 16, &g) == VESTA_SSE_STATUS_OK);
    CHECK(g.count == 1);
    events h = {0};
    CHECK(feed_cut(ok, strlen(ok), NULL, 0, 15, &h) == VESTA_SSE_STATUS_LINE_TOO_LONG);
    CHECK(h.count == 0);

    /* the cap counts across feeds, fails as soon as it is passed (no newline needed) and sticks */
    vesta_sse_stream s;
    vesta_sse_stream_init(&s, 10);
    events k = {0};
    CHECK(vesta_sse_stream_feed(&s, "data: a\n", 8, record, &k) == VESTA_SSE_STATUS_OK);
    CHECK(vesta_sse_stream_feed(&s, "data: ", 6, record, &k) == VESTA_SSE_STATUS_OK);
    CHECK(vesta_sse_stream_feed(&s, "1234", 4, record, &k) == VESTA_SSE_STATUS_OK); /* 10 bytes */
    CHECK(vesta_sse_stream_feed(&s, "5", 1, record, &k) == VESTA_SSE_STATUS_LINE_TOO_LONG);
    CHECK(vesta_sse_stream_feed(&s, "\ndata: b\n", 9, record, &k) == VESTA_SSE_STATUS_LINE_TOO_LONG);
    CHECK(k.count == 1);
    vesta_sse_stream_dispose(&s);
}

static void test_stop(void)
{
    const char *text = "data: 1\ndata: 2\ndata: 3\n";
    vesta_sse_stream s;
    vesta_sse_stream_init(&s, VESTA_SSE_LINE_MAX);
    events e = {.stop_after = 2};
    CHECK(vesta_sse_stream_feed(&s, text, strlen(text), record, &e) == VESTA_SSE_STATUS_STOPPED);
    CHECK(e.count == 2);
    CHECK(vesta_sse_stream_feed(&s, "data: 4\n", 8, record, &e) == VESTA_SSE_STATUS_STOPPED);
    CHECK(e.count == 2);
    vesta_sse_stream_dispose(&s);
}

static void test_chunks(void)
{
    vesta_sse_chunk c;
    CHECK(vesta_sse_chunk_parse(&c, "[DONE]", 6) == VESTA_SSE_CHUNK_DONE);
    vesta_sse_chunk_dispose(&c);
    CHECK(vesta_sse_chunk_parse(&c, "[DONE] ", 7) == VESTA_SSE_CHUNK_BAD_JSON);
    vesta_sse_chunk_dispose(&c);

    const char *text = "{\"id\":\"x\",\"choices\":[{\"index\":0,\"text\":\"a\\u0000b\"}],\"usage\":null}";
    CHECK(vesta_sse_chunk_parse(&c, text, strlen(text)) == VESTA_SSE_CHUNK_DATA);
    CHECK(c.has_choice && c.text_len == 3 && c.text && memcmp(c.text, "a\0b", 3) == 0);
    CHECK(c.usage_tokens == -1);
    vesta_sse_chunk_dispose(&c);
    vesta_sse_chunk_dispose(&c);

    const char *usage = "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3}}";
    CHECK(vesta_sse_chunk_parse(&c, usage, strlen(usage)) == VESTA_SSE_CHUNK_DATA);
    CHECK(!c.has_choice && c.text == NULL && c.usage_tokens == 3);
    vesta_sse_chunk_dispose(&c);

    const char *odd = "{\"choices\":[{\"text\":5}],\"usage\":{\"completion_tokens\":-1}}";
    CHECK(vesta_sse_chunk_parse(&c, odd, strlen(odd)) == VESTA_SSE_CHUNK_DATA);
    CHECK(c.has_choice && c.text == NULL && c.usage_tokens == -1);
    vesta_sse_chunk_dispose(&c);

    const char *err = "{\"error\":{\"message\":\"engine died\",\"code\":500}}";
    CHECK(vesta_sse_chunk_parse(&c, err, strlen(err)) == VESTA_SSE_CHUNK_ERROR_EVENT);
    CHECK(c.error && strcmp(c.error, "engine died") == 0);
    vesta_sse_chunk_dispose(&c);
    CHECK(vesta_sse_chunk_parse(&c, "{\"error\":1}", 11) == VESTA_SSE_CHUNK_ERROR_EVENT);
    CHECK(c.error == NULL);
    vesta_sse_chunk_dispose(&c);

    CHECK(vesta_sse_chunk_parse(&c, "{\"choices\":[", 12) == VESTA_SSE_CHUNK_BAD_JSON);
    CHECK(c.json_error.position == 12 && c.json_error.text[0] != '\0');
    vesta_sse_chunk_dispose(&c);
    CHECK(vesta_sse_chunk_parse(&c, "[1]", 3) == VESTA_SSE_CHUNK_BAD_JSON); /* not an object */
    vesta_sse_chunk_dispose(&c);
    CHECK(vesta_sse_chunk_parse(&c, "", 0) == VESTA_SSE_CHUNK_BAD_JSON);
    vesta_sse_chunk_dispose(&c);
}

int main(void)
{
    test_splits();
    test_line_cap();
    test_stop();
    test_chunks();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    else
        printf("ok\n");
    return failures != 0;
}
