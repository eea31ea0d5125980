/* Fuzzing the SSE stream parser of `vesta bench serve` (worker/cli/sse_stream.c).
 *
 * Input: byte 0 = h; its low 4 bits are a count c of split bytes that follow, bit 0x10 picks a
 * 64-byte line cap instead of the real one. The rest is the response body, fed in pieces of
 * (split[j % c] & 63) + 1 bytes (whole when c = 0) -- the way the network cuts it. Every data
 * payload is interpreted as bench serve does (stopping at bad JSON and error events). The same body
 * fed in one piece must give the same events and the same final status: a mismatch aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse_stream.h"

typedef struct trace {
    uint64_t hash; /* FNV-1a over every event */
    size_t events;
} trace;

static void hash_bytes(trace *t, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 0x100000001b3ULL;
}

static bool on_data(void *ud, const char *payload, size_t n)
{
    trace *t = ud;
    if (payload[n] != '\0')
        abort(); /* the contract: NUL-terminated */
    vesta_sse_chunk c;
    vesta_sse_chunk_kind kind = vesta_sse_chunk_parse(&c, payload, n);
    hash_bytes(t, &n, sizeof n);
    hash_bytes(t, payload, n);
    hash_bytes(t, &kind, sizeof kind);
    bool go = kind == VESTA_SSE_CHUNK_DATA || kind == VESTA_SSE_CHUNK_DONE;
    if (kind == VESTA_SSE_CHUNK_DATA) {
        hash_bytes(t, &c.has_choice, sizeof c.has_choice);
        hash_bytes(t, &c.usage_tokens, sizeof c.usage_tokens);
        if (c.text)
            hash_bytes(t, c.text, c.text_len); /* reads every byte: ASan checks text_len */
    } else if (kind == VESTA_SSE_CHUNK_ERROR_EVENT && c.error) {
        hash_bytes(t, c.error, strlen(c.error));
    }
    vesta_sse_chunk_dispose(&c);
    vesta_sse_chunk_dispose(&c); /* the contract: a second dispose is a no-op */
    t->events++;
    return go;
}

static vesta_sse_status run(const uint8_t *body, size_t n, const uint8_t *split, size_t nsplit,
                            size_t line_max, trace *t)
{
    vesta_sse_stream s;
    vesta_sse_stream_init(&s, line_max);
    vesta_sse_status st = VESTA_SSE_STATUS_OK;
    size_t i = 0;
    for (size_t j = 0; i < n && st == VESTA_SSE_STATUS_OK; j++) {
        size_t k = nsplit ? (size_t)(split[j % nsplit] & 63) + 1 : n;
        if (k > n - i)
            k = n - i;
        st = vesta_sse_stream_feed(&s, (const char *)body + i, k, on_data, t);
        i += k;
    }
    if (st != VESTA_SSE_STATUS_OK && vesta_sse_stream_feed(&s, "data: {}\n", 9, on_data, t) != st)
        abort(); /* the contract: a failure is sticky */
    vesta_sse_stream_dispose(&s);
    vesta_sse_stream_dispose(&s);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t nsplit = data[0] & 15;
    size_t line_max = data[0] & 0x10 ? 64 : VESTA_SSE_LINE_MAX;
    if (nsplit > size - 1)
        nsplit = size - 1;
    const uint8_t *split = data + 1, *body = data + 1 + nsplit;
    size_t n = size - 1 - nsplit;
    trace pieces = {0xcbf29ce484222325ULL, 0}, whole = pieces;
    vesta_sse_status a = run(body, n, split, nsplit, line_max, &pieces);
    vesta_sse_status b = run(body, n, NULL, 0, line_max, &whole);
    if (a != b || pieces.hash != whole.hash || pieces.events != whole.events) {
        fprintf(stderr, "fed in pieces: status %d, %zu events; fed whole: status %d, %zu events\n", a,
                pieces.events, b, whole.events);
        abort();
    }
    return 0;
}
