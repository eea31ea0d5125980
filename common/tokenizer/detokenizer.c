/* Incremental detokenization with the prefix-offset / read-offset window (as HF TextStreamer and
 * vLLM do): text is emitted once decode(window) grows and does not end in U+FFFD (an incomplete
 * character), so byte-fallback pieces, byte-level pieces and SentencePiece leading spaces come
 * out exactly as full decode renders them. Stop strings: emitted text never ends in a prefix of
 * a stop string; such a tail waits in `pending` until it is resolved. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "vesta/detokenizer.h"

#define PREFIX_CONTEXT 5 /* ids of prefix context decoded before the first generated one */

struct vesta_detokenizer {
    const vesta_tokenizer *t;
    bool skip_special, include_stop, stopped, finished;
    char **stop;
    size_t *stop_len;
    size_t n_stop;
    tok_ids ids;
    size_t prefix_offset, read_offset;
    tok_buf pending; /* decoded but held back (possible stop-string start) */
    tok_buf out;     /* the piece returned by the last call */
    tok_buf all;     /* everything emitted */
};

void vesta_detokenizer_release(vesta_detokenizer *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_stop; i++) free(d->stop[i]);
    free(d->stop);
    free(d->stop_len);
    free(d->ids.v);
    tok_buf_free(&d->pending);
    tok_buf_free(&d->out);
    tok_buf_free(&d->all);
    free(d);
}

vesta_detokenizer *vesta_detokenizer_create(const vesta_tokenizer *t,
                                            const vesta_detokenizer_opts *opts, vesta_error *err) {
    if (!t) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "detokenizer: tokenizer is NULL");
        return NULL;
    }
    vesta_detokenizer *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->t = t;
    if (opts) {
        d->skip_special = opts->skip_special_tokens;
        d->include_stop = opts->include_stop_str_in_output;
        if (opts->n_stop) {
            d->stop = calloc(opts->n_stop, sizeof *d->stop);
            d->stop_len = calloc(opts->n_stop, sizeof *d->stop_len);
            if (!d->stop || !d->stop_len) goto oom;
            for (size_t i = 0; i < opts->n_stop; i++) {
                const char *s = opts->stop ? opts->stop[i] : NULL;
                size_t n = s ? strlen(s) : 0;
                if (!n || tok_utf8_valid_prefix(s, n) != n) {
                    vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                    "detokenizer: stop string %zu is empty or not valid UTF-8", i);
                    vesta_detokenizer_release(d);
                    return NULL;
                }
                d->stop[i] = strdup(s);
                if (!d->stop[i]) goto oom;
                d->stop_len[i] = n;
                d->n_stop++;
            }
        }
        for (size_t i = 0; i < opts->n_prefix; i++) {
            int32_t id = opts->prefix_ids[i];
            if (!vesta_tokenizer_id_to_token(t, id, NULL)) {
                vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                "detokenizer: prefix id %d is not in the vocabulary", (int)id);
                vesta_detokenizer_release(d);
                return NULL;
            }
            if (d->skip_special && vesta_tokenizer_is_special(t, id)) continue;
            if (!tok_ids_push(&d->ids, id)) goto oom;
        }
        d->read_offset = d->ids.n;
        d->prefix_offset = d->ids.n > PREFIX_CONTEXT ? d->ids.n - PREFIX_CONTEXT : 0;
    }
    return d;
oom:
    vesta_detokenizer_release(d);
    vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    return NULL;
}

static bool ends_incomplete(const char *s, size_t n) {
    return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3);
}

/* Decodes the window and appends the new text to pending when final (or always when force). */
static vesta_status advance(vesta_detokenizer *d, bool force, vesta_error *err) {
    if (d->read_offset == d->ids.n) return VESTA_OK; /* nothing new since the last emission */
    const int32_t *w = d->ids.v + d->prefix_offset;
    char *pre = NULL, *cur = NULL;
    size_t pl = 0, cl = 0;
    vesta_status st = vesta_tokenizer_decode(d->t, w, d->read_offset - d->prefix_offset, false,
                                             &pre, &pl, err);
    if (st == VESTA_OK)
        st = vesta_tokenizer_decode(d->t, w, d->ids.n - d->prefix_offset, false, &cur, &cl, err);
    if (st == VESTA_OK && cl > pl && (force || !ends_incomplete(cur, cl))) {
        if (!tok_buf_append(&d->pending, cur + pl, cl - pl))
            st = vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        d->prefix_offset = d->read_offset;
        d->read_offset = d->ids.n;
    }
    free(pre);
    free(cur);
    return st;
}

/* Moves what is safe from pending to out; detects stop strings. */
static vesta_status release_pending(vesta_detokenizer *d, bool final, bool *stopped,
                                    vesta_error *err) {
    const char *p = d->pending.p;
    size_t n = d->pending.n;
    size_t best = SIZE_MAX, best_len = 0;
    for (size_t i = 0; i < d->n_stop && n; i++) {
        const char *hit = memmem(p, n, d->stop[i], d->stop_len[i]);
        if (hit && (size_t)(hit - p) < best) {
            best = (size_t)(hit - p);
            best_len = d->stop_len[i];
        }
    }
    size_t emit;
    if (best != SIZE_MAX) {
        emit = best + (d->include_stop ? best_len : 0);
        d->stopped = true;
        if (stopped) *stopped = true;
    } else if (final) {
        emit = n;
    } else {
        /* Hold back the longest tail that is a proper prefix of some stop string. */
        size_t hold = 0;
        for (size_t i = 0; i < d->n_stop; i++) {
            size_t max = d->stop_len[i] - 1 < n ? d->stop_len[i] - 1 : n;
            for (size_t k = max; k > hold; k--)
                if (!memcmp(p + n - k, d->stop[i], k)) {
                    hold = k;
                    break;
                }
        }
        emit = n - hold;
    }
    if (!tok_buf_append(&d->out, p, emit) || !tok_buf_append(&d->all, p, emit))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    if (d->stopped) d->pending.n = 0;
    else if (n > emit) {
        memmove(d->pending.p, d->pending.p + emit, n - emit);
        d->pending.n = n - emit;
    } else {
        d->pending.n = 0;
    }
    return VESTA_OK;
}

vesta_status vesta_detokenizer_feed(vesta_detokenizer *d, int32_t id, const char **text,
                                    size_t *len, bool *stopped, vesta_error *err) {
    *text = "";
    *len = 0;
    if (stopped) *stopped = false;
    if (d->stopped || d->finished)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "detokenizer: sequence already ended (stop string or finish)");
    if (!vesta_tokenizer_id_to_token(d->t, id, NULL))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "detokenizer: token id %d is not in the vocabulary", (int)id);
    d->out.n = 0;
    if (d->skip_special && vesta_tokenizer_is_special(d->t, id)) return VESTA_OK;
    if (!tok_ids_push(&d->ids, id)) return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    vesta_status st = advance(d, false, err);
    if (st != VESTA_OK) {
        d->ids.n--;
        return st;
    }
    st = release_pending(d, false, stopped, err);
    if (st != VESTA_OK) return st;
    *text = d->out.p ? d->out.p : "";
    *len = d->out.n;
    return VESTA_OK;
}

vesta_status vesta_detokenizer_finish(vesta_detokenizer *d, const char **text, size_t *len,
                                      vesta_error *err) {
    *text = "";
    *len = 0;
    d->out.n = 0;
    if (d->stopped || d->finished) return VESTA_OK;
    d->finished = true;
    vesta_status st = advance(d, true, err);
    if (st == VESTA_OK) st = release_pending(d, true, NULL, err);
    if (st != VESTA_OK) return st;
    *text = d->out.p ? d->out.p : "";
    *len = d->out.n;
    return VESTA_OK;
}

const char *vesta_detokenizer_text(const vesta_detokenizer *d, size_t *len) {
    if (len) *len = d->all.n;
    return d->all.p ? d->all.p : "";
}
