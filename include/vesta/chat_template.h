/* Chat templates: a sandboxed Jinja2 interpreter that renders Hugging Face chat templates byte for
 * byte as transformers' apply_chat_template does (ImmutableSandboxedEnvironment with
 * trim_blocks, lstrip_blocks, loopcontrols, the {% generation %} tag, and HF's tojson,
 * raise_exception, strftime_now, dict and namespace globals).
 *
 * Taint tracking: every string that comes from the `input` object of a render (message contents,
 * roles, tool schemas, dict keys, chat_template_kwargs values ...) carries the byte ranges that
 * originated there through concatenation, slicing, strip, split, replace and joins. The result
 * lists those ranges as segments. vesta_chat_encode uses them so that special-token spellings
 * typed by a user ("<|im_end|>") are tokenized as plain text, while the markers written by the
 * template itself become special tokens. Transformations that do not preserve byte positions
 * (upper, lower, title, tojson, format, ...) taint their whole output when any input byte was
 * tainted: the rule errs on the side of "plain text".
 *
 * Thread safety: a compiled template is immutable; any number of threads may render it at once.
 * Each render allocates from its own arena that is released with the result. */
#ifndef VESTA_CHAT_TEMPLATE_H
#define VESTA_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vesta_chat_template vesta_chat_template;
typedef struct vesta_tokenizer vesta_tokenizer; /* include/vesta/tokenizer.h */

/* Parses a template once. NULL + err (VESTA_ERR_FORMAT with line and column in the message) on a
 * syntax error; VESTA_ERR_LIMIT when the source exceeds 4 MiB or nests deeper than the parser
 * allows. The source need not be NUL-terminated; it is copied. */
vesta_chat_template *vesta_chat_template_compile(const char *source, size_t len, vesta_error *err);
void vesta_chat_template_release(vesta_chat_template *tpl); /* NULL is a no-op */

/* Sandbox limits of one render. A zero field takes the default shown. */
typedef struct vesta_chat_limits {
    uint64_t max_steps;      /* interpreter steps (nodes evaluated); default 10,000,000 */
    uint32_t max_depth;      /* macro/call/expression nesting; default 256 */
    size_t max_output;       /* bytes of rendered text, also caps any single string; default 64 MiB */
    size_t max_memory;       /* bytes of arena memory; default 512 MiB */
} vesta_chat_limits;

typedef struct vesta_chat_render_opts {
    vesta_chat_limits limits;
    /* Time seen by strftime_now(), Unix seconds, rendered in local time like Python's
     * datetime.now(). Negative: the current time. */
    int64_t now;
} vesta_chat_render_opts;

/* A byte range [begin, end) of the output text. */
typedef struct vesta_chat_segment {
    size_t begin;
    size_t end;
} vesta_chat_segment;

typedef struct vesta_chat_rendered {
    const char *text;                    /* NUL-terminated; len bytes (may contain NUL bytes) */
    size_t len;
    const vesta_chat_segment *segments;  /* tainted ranges, sorted, disjoint, non-adjacent */
    size_t n_segments;
    /* Ranges produced inside {% generation %} ... {% endgeneration %} (assistant tokens mask). */
    const vesta_chat_segment *generation;
    size_t n_generation;
} vesta_chat_rendered;

/* Renders the template.
 *   input:   JSON object of the request's variables, typically {"messages": [...], "tools":
 *            [...], "add_generation_prompt": true, "enable_thinking": false, ...}. Every string
 *            inside it (and every object key) is tainted, except messages' "role" values:
 *            roles are a closed set checked by the API layer, and templates build their
 *            markers from them ('<|' + role + '|>'). HF semantics applied here as
 *            apply_chat_template does: keys of
 *            messages whose value is null are dropped; "tools" and "documents" are none when
 *            absent; add_generation_prompt is false when absent; a message's reasoning given as
 *            "reasoning_content", "thinking" or "reasoning" is visible under all three of
 *            "thinking" and "reasoning_content" as transformers aliases it.
 *   trusted: JSON object (may be NULL) of variables from the model itself, e.g. {"bos_token":
 *            "<s>", "eos_token": "</s>"}; strings here are not tainted. A key present in both
 *            takes the value from input (HF: kwargs override special tokens).
 * Neither object is modified or retained. On success *out owns the result (release it with
 * vesta_chat_rendered_release). Errors: VESTA_ERR_FORMAT for a template runtime error, with the
 * message of raise_exception() or of the failing operation (the router answers HTTP 400 with it);
 * VESTA_ERR_LIMIT when a sandbox limit is hit; VESTA_ERR_INVALID_ARG for a bad input shape (input
 * not an object, messages not a list of objects). */
vesta_status vesta_chat_template_render(const vesta_chat_template *tpl, const json_t *input,
                                        const json_t *trusted, const vesta_chat_render_opts *opts,
                                        vesta_chat_rendered **out, vesta_error *err);
void vesta_chat_rendered_release(vesta_chat_rendered *r); /* NULL is a no-op */

/* How vesta_chat_encode treats special-token spellings inside tainted segments. */
typedef enum vesta_chat_special_mode {
    /* Default: tainted text is encoded as plain text; special tokens are recognised only in the
     * template's own text. */
    VESTA_CHAT_SPECIAL_TEMPLATE_ONLY = 0,
    /* Plain Hugging Face behaviour: the whole rendered string is encoded with special tokens
     * parsed everywhere (tokenizer(text, add_special_tokens=False)). */
    VESTA_CHAT_SPECIAL_EVERYWHERE = 1,
} vesta_chat_special_mode;

/* Tokenizes a rendered conversation without adding BOS/EOS (the template writes those).
 * *ids is malloc'd (free()), *n_ids its length. Errors from the tokenizer are passed through. */
vesta_status vesta_chat_encode(const vesta_tokenizer *tok, const vesta_chat_rendered *r,
                               vesta_chat_special_mode mode, int32_t **ids, size_t *n_ids,
                               vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
