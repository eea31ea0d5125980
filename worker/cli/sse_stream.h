/* The client side of an OpenAI streamed response (Server-Sent Events), as `vesta bench serve` reads
 * it: vesta_sse_stream cuts the bytes into lines and hands over each `data:` payload;
 * vesta_sse_chunk interprets one payload (a completion chunk, `[DONE]`, an error event).
 *
 * Only what OpenAI-compatible servers send is understood: one `data:` line per event (multi-line
 * data fields are not joined), other fields (`event:`, `id:`, `retry:`), comments (`:`) and blank
 * separators are skipped. Lines end at '\n'; one trailing '\r' is dropped (CRLF streams). */
#ifndef VESTA_CLI_SSE_STREAM_H
#define VESTA_CLI_SSE_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The line cap `vesta bench serve` uses: a guard against a runaway server, not a format limit
 * (OpenAI chunks are a few hundred bytes). */
#define VESTA_SSE_LINE_MAX ((size_t)64 << 20)

typedef enum vesta_sse_status {
    VESTA_SSE_STATUS_OK = 0,
    VESTA_SSE_STATUS_STOPPED,       /* the data callback returned false */
    VESTA_SSE_STATUS_LINE_TOO_LONG, /* a line (without its '\n') exceeded line_max bytes */
    VESTA_SSE_STATUS_NO_MEMORY,
} vesta_sse_status;

/* A growable byte string, NUL-terminated once anything was appended (p NULL before): the SSE
 * line buffer, and bench serve's response bodies and generated texts. Zero-initialised = empty. */
typedef struct vesta_text_buf {
    char *p;
    size_t n, cap;
} vesta_text_buf;

/* Appends n bytes; false (b unchanged) when out of memory or the size would overflow. */
bool vesta_text_buf_append(vesta_text_buf *b, const char *s, size_t n);
void vesta_text_buf_dispose(vesta_text_buf *b); /* back to empty */

typedef struct vesta_sse_stream {
    vesta_text_buf line; /* the unfinished line so far */
    size_t line_max;
    vesta_sse_status status; /* sticky: the first failure */
} vesta_sse_stream;

/* Called once per complete `data:` line with its value: the bytes after "data:" and one optional
 * space, without the line end; payload[n] is '\0' but the payload may itself hold NUL bytes.
 * Valid only during the call. Return false to stop the stream. */
typedef bool (*vesta_sse_data_fn)(void *ud, const char *payload, size_t n);

/* An empty stream whose lines may be at most line_max bytes. Allocates nothing. */
void vesta_sse_stream_init(vesta_sse_stream *s, size_t line_max);

/* Frees the line buffer. A no-op on a zero-filled or already disposed stream. */
void vesta_sse_stream_dispose(vesta_sse_stream *s);

/* Feeds the next n bytes (any split: a line may span many feeds), calling on_data for every
 * `data:` line they complete. Returns VESTA_SSE_STATUS_OK, or the failure that stopped it
 * (callback refusal, over-long line, out of memory); bytes after that point are not consumed,
 * the failure is kept and every later feed returns it without reading anything. */
vesta_sse_status vesta_sse_stream_feed(vesta_sse_stream *s, const char *bytes, size_t n, vesta_sse_data_fn on_data,
                                       void *ud);

typedef enum vesta_sse_chunk_kind {
    VESTA_SSE_CHUNK_DATA = 0,    /* a JSON object: see has_choice, text, usage_tokens */
    VESTA_SSE_CHUNK_DONE,        /* the `[DONE]` sentinel */
    VESTA_SSE_CHUNK_BAD_JSON,    /* not a JSON object: see json_error */
    VESTA_SSE_CHUNK_ERROR_EVENT, /* an object with an "error" member: see error */
} vesta_sse_chunk_kind;

typedef struct vesta_sse_chunk {
    vesta_sse_chunk_kind kind;
    bool has_choice;  /* DATA: "choices" is a non-empty array (a completion chunk) */
    const char *text; /* DATA: choices[0].text when a string (may hold U+0000), else NULL */
    size_t text_len;
    long long usage_tokens;  /* DATA: usage.completion_tokens when a non-negative integer, else -1 */
    const char *error;       /* ERROR_EVENT: error.message when a string, else NULL */
    json_error_t json_error; /* BAD_JSON: jansson's position and text */
    json_t *json;            /* owns text and error */
} vesta_sse_chunk;

/* Interprets one `data:` payload into *c and returns c->kind. Never fails otherwise (a payload
 * jansson cannot load, out of memory included, is BAD_JSON). Release with vesta_sse_chunk_dispose. */
vesta_sse_chunk_kind vesta_sse_chunk_parse(vesta_sse_chunk *c, const char *payload, size_t n);

/* Frees what the chunk owns; a no-op on a zero-filled or already disposed chunk. */
void vesta_sse_chunk_dispose(vesta_sse_chunk *c);

#endif
