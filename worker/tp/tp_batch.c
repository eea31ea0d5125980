/* The per-step message: a header of counts then the batch's index arrays, all int32:
 *   [T, S, MB, max_ctx, NS, has_lora] token_ids[T] positions[T] slot_mapping[T] query_start[S+1]
 *   context_lens[S] block_tables[S*MB] sample_token_index[NS] (lora_slots[S] when has_lora) */
#include <stdlib.h>
#include <string.h>

#include "tp.h"

#define HDR 6

/* Number of int32 in the message for these counts; 0 on overflow or negative counts. */
static size_t message_words(int64_t T, int64_t S, int64_t MB, int64_t NS, int lora)
{
    if (T < 0 || S < 0 || MB < 0 || NS < 0)
        return 0;
    size_t bt, n;
    if (__builtin_mul_overflow((size_t)S, (size_t)MB, &bt))
        return 0;
    n = HDR + 3 * (size_t)T + (size_t)S + 1 + (size_t)S + (size_t)NS + (lora ? (size_t)S : 0);
    if (__builtin_add_overflow(n, bt, &n) || n > SIZE_MAX / sizeof(int32_t))
        return 0;
    return n;
}

static int32_t *put(int32_t *p, const int32_t *src, size_t n)
{
    if (n)
        memcpy(p, src, n * sizeof *p);
    return p + n;
}

vesta_status vesta_tp_batch_encode(const vesta_batch *b, int32_t **buf, size_t *cap, size_t *len,
                                   vesta_error *err)
{
    const int S = b->num_seqs, T = b->num_tokens, MB = S > 0 ? b->max_blocks_per_seq : 0, NS = b->num_samples;
    const int lora = b->lora_slots != NULL && S > 0;
    size_t words = message_words(T, S, MB, NS, lora);
    if (!words)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp batch: bad counts (%d tokens, %d seqs, %d samples)",
                               T, S, NS);
    if (words * sizeof(int32_t) > *cap) {
        int32_t *nb = realloc(*buf, words * sizeof(int32_t));
        if (!nb)
            return vesta_error_set(err, VESTA_ERR_NOMEM, "tp batch: out of memory");
        *buf = nb;
        *cap = words * sizeof(int32_t);
    }
    int32_t *p = *buf;
    *p++ = T;
    *p++ = S;
    *p++ = MB;
    *p++ = b->max_context_len;
    *p++ = NS;
    *p++ = lora;
    p = put(p, b->token_ids, (size_t)T);
    p = put(p, b->positions, (size_t)T);
    p = put(p, b->slot_mapping, (size_t)T);
    p = put(p, b->query_start, S > 0 ? (size_t)S + 1 : 0);
    if (S == 0)
        *p++ = 0;
    p = put(p, b->context_lens, (size_t)S);
    p = put(p, b->block_tables, (size_t)S * (size_t)MB);
    p = put(p, b->sample_token_index, (size_t)NS);
    if (lora)
        p = put(p, b->lora_slots, (size_t)S);
    *len = (size_t)(p - *buf) * sizeof(int32_t);
    return VESTA_OK;
}

vesta_status vesta_tp_batch_decode(const int32_t *msg, size_t len, vesta_batch *b, vesta_error *err)
{
    memset(b, 0, sizeof *b);
    if (len % sizeof(int32_t) || len < HDR * sizeof(int32_t))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "tp batch: message of %zu bytes", len);
    const int32_t T = msg[0], S = msg[1], MB = msg[2], NS = msg[4], lora = msg[5];
    size_t words = message_words(T, S, MB, NS, lora);
    if (!words || words * sizeof(int32_t) != len || (lora != 0 && lora != 1))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "tp batch: counts (%d tokens, %d seqs, %d samples) do not "
                               "match the %zu-byte message", T, S, NS, len);
    const int32_t *p = msg + HDR;
    b->num_tokens = T;
    b->num_seqs = S;
    b->max_blocks_per_seq = MB;
    b->max_context_len = msg[3];
    b->num_samples = NS;
    b->token_ids = p, p += T;
    b->positions = p, p += T;
    b->slot_mapping = p, p += T;
    b->query_start = p, p += S + 1;
    b->context_lens = p, p += S;
    b->block_tables = p, p += (size_t)S * (size_t)MB;
    b->sample_token_index = p, p += NS;
    b->lora_slots = lora ? p : NULL;
    return VESTA_OK;
}
