/* Tokenizing a rendered chat: special tokens only where the template wrote them. Kept apart
 * from template.c so that programs which only render do not need the tokenizer library. */
#include <stdlib.h>

#include "vesta/chat_template.h"
#include "vesta/tokenizer.h"

vesta_status vesta_chat_encode(const vesta_tokenizer *tok, const vesta_chat_rendered *r, vesta_chat_special_mode mode,
                               int32_t **ids, size_t *n_ids, vesta_error *err)
{
    if (!tok || !r || !ids || !n_ids)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat encode: NULL argument");
    if (mode == VESTA_CHAT_SPECIAL_EVERYWHERE || r->n_segments == 0)
        return vesta_tokenizer_encode(tok, r->text, r->len, false, true, ids, n_ids, err);
    if (mode != VESTA_CHAT_SPECIAL_TEMPLATE_ONLY)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "chat encode: unknown special-token mode %d", (int)mode);
    _Static_assert(sizeof(vesta_text_span) == sizeof(vesta_chat_segment), "span layouts differ");
    vesta_text_span *spans = malloc(r->n_segments * sizeof *spans);
    if (!spans)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "chat encode: out of memory");
    for (size_t i = 0; i < r->n_segments; i++) {
        spans[i].begin = r->segments[i].begin;
        spans[i].end = r->segments[i].end;
    }
    vesta_status st = vesta_tokenizer_encode_spans(tok, r->text, r->len, false, spans, r->n_segments, ids, n_ids, err);
    free(spans);
    return st;
}
