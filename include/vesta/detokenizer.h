/* Streaming (incremental) detokenization: one object per generated sequence. Ids go in one at a
 * time; text comes out as soon as it is final:
 *   - never a partial UTF-8 character (byte-fallback and byte-level pieces are held until the
 *     character completes);
 *   - SentencePiece leading-space rules as HF decode applies them (the prefix-offset/read-offset
 *     window used by HF TextStreamer / vLLM);
 *   - special tokens dropped when skip_special_tokens;
 *   - text that could be the start of a stop string is held back until resolved, so a stop
 *     string is never partly sent.
 * Without a stop hit, the concatenation of all pieces (feeds + finish) equals
 * vesta_tokenizer_decode(all fed ids, skip_special_tokens); with `prefix_ids` it equals the text
 * that decode(prefix + fed) has beyond decode(prefix).
 *
 * A detokenizer is used by one thread at a time; many may share one (immutable) tokenizer. */
#ifndef VESTA_DETOKENIZER_H
#define VESTA_DETOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"
#include "vesta/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vesta_detokenizer vesta_detokenizer;

typedef struct vesta_detokenizer_opts {
    bool skip_special_tokens;
    /* Stop strings (UTF-8, non-empty; copied at create). */
    const char *const *stop;
    size_t n_stop;
    /* On a stop hit, also emit the stop string itself (vLLM include_stop_str_in_output). */
    bool include_stop_str_in_output;
    /* Optional context (e.g. the prompt's last few ids) so that the first generated token gets
     * the leading space a continuation would have. Copied at create; never emitted. */
    const int32_t *prefix_ids;
    size_t n_prefix;
} vesta_detokenizer_opts;

/* opts may be NULL (no stop strings, keep special tokens). NULL + err on bad options. The
 * tokenizer must outlive the detokenizer. */
vesta_detokenizer *vesta_detokenizer_create(const vesta_tokenizer *t,
                                            const vesta_detokenizer_opts *opts, vesta_error *err);
void vesta_detokenizer_release(vesta_detokenizer *d); /* NULL is a no-op */

/* Feeds one id. *text and *len receive the newly final text (possibly empty; not NUL-terminated;
 * valid until the next call on d). *stopped becomes true when a stop string completed: the
 * returned text is then everything up to the stop string (plus the stop string itself when
 * include_stop_str_in_output), and later feeds are VESTA_ERR_INVALID_ARG. An id outside the
 * vocabulary → VESTA_ERR_INVALID_ARG and d is unchanged. */
vesta_status vesta_detokenizer_feed(vesta_detokenizer *d, int32_t id, const char **text,
                                    size_t *len, bool *stopped, vesta_error *err);

/* End of sequence (EOS, length limit): returns all held-back text (an incomplete character
 * becomes what full decode makes of it, usually U+FFFD; an unresolved stop-string prefix is
 * plain text after all). Empty after a stop hit. */
vesta_status vesta_detokenizer_finish(vesta_detokenizer *d, const char **text, size_t *len,
                                      vesta_error *err);

/* Everything emitted so far (feeds + finish), NUL-terminated, valid until the next call. */
const char *vesta_detokenizer_text(const vesta_detokenizer *d, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
