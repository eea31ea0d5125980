/* Tokenizers: Hugging Face tokenizer.json (+ tokenizer_config.json) and GGUF (tokenizer.ggml.*)
 * loaded into one in-memory model whose encode/decode match Hugging Face `tokenizers`.
 *
 * Thread safety: a loaded vesta_tokenizer is immutable. Every function taking a
 * `const vesta_tokenizer *` may be called from any number of threads at once (router HTTP
 * threads) without locking; only release() needs exclusive access.
 *
 * Ids are int32_t; -1 means "none". Text in and out is UTF-8; byte lengths, never NUL-counting
 * (inputs may contain NUL bytes). Buffers returned through `**out` are malloc'd and owned by
 * the caller (free()). */
#ifndef VESTA_TOKENIZER_H
#define VESTA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vesta_tokenizer vesta_tokenizer;
typedef struct vesta_gguf vesta_gguf;

/* Loads from `path`, which is one of:
 *   - a tokenizer.json file (tokenizer_config.json beside it is read too, if present);
 *   - a directory holding tokenizer.json and optionally tokenizer_config.json;
 *   - a .gguf file (tokenizer.ggml.* keys; detected by the GGUF magic, not the extension).
 * tokenizer_config.json supplies bos/eos/pad/unk token strings, add_bos_token/add_eos_token and
 * chat_template (a string, or a list of {name, template}). Hostile or unsupported files are
 * refused: NULL + err naming the file and field (VESTA_ERR_FORMAT / VESTA_ERR_UNSUPPORTED /
 * VESTA_ERR_IO). */
vesta_tokenizer *vesta_tokenizer_load(const char *path, vesta_error *err);

/* From memory: tokenizer.json text (required) and tokenizer_config.json text (config may be
 * NULL/0). `name` is used in error messages. For fuzzing and tests. */
vesta_tokenizer *vesta_tokenizer_load_json(const char *json, size_t json_len, const char *config,
                                           size_t config_len, const char *name, vesta_error *err);

/* From an open GGUF file (the tokenizer copies what it needs; `g` may be closed afterwards). */
vesta_tokenizer *vesta_tokenizer_load_gguf(const vesta_gguf *g, vesta_error *err);

void vesta_tokenizer_release(vesta_tokenizer *t); /* NULL is a no-op */

/* Encodes `len` bytes of UTF-8 text. Invalid UTF-8 → VESTA_ERR_INVALID_ARG (no output).
 *   add_special_tokens: apply the post-processor (e.g. prepend BOS), as HF encode(...,
 *                       add_special_tokens=True).
 *   parse_special:      true = HF default: spellings of special added tokens in the text
 *                       become those tokens. false = they are tokenized as plain text (HF
 *                       `encode_special_tokens=True`); non-special added tokens still match.
 * On success *out_ids (malloc'd; may be NULL when *out_n == 0) holds *out_n ids. */
vesta_status vesta_tokenizer_encode(const vesta_tokenizer *t, const char *text, size_t len,
                                    bool add_special_tokens, bool parse_special,
                                    int32_t **out_ids, size_t *out_n, vesta_error *err);

/* A byte range [begin, end) of an input text. */
typedef struct vesta_text_span {
    size_t begin;
    size_t end;
} vesta_text_span;

/* Like encode(parse_special=true), except that special tokens are recognized only where their
 * whole spelling lies outside every span in `plain` (spans: sorted, non-overlapping, in
 * bounds, else VESTA_ERR_INVALID_ARG). Used for rendered chat templates: message content goes
 * in `plain`, so `<|im_end|>` typed by a user is plain text while the template's own markers
 * are special tokens. The text around special tokens is tokenized as one piece, exactly as HF
 * would tokenize it. */
vesta_status vesta_tokenizer_encode_spans(const vesta_tokenizer *t, const char *text, size_t len,
                                          bool add_special_tokens, const vesta_text_span *plain,
                                          size_t n_plain, int32_t **out_ids, size_t *out_n,
                                          vesta_error *err);

/* Decodes ids to text as HF decode(ids, skip_special_tokens) does (invalid byte sequences
 * become U+FFFD exactly as HF's decoders produce them). An id outside the vocabulary →
 * VESTA_ERR_INVALID_ARG. *out_text is malloc'd and NUL-terminated; *out_len excludes the NUL. */
vesta_status vesta_tokenizer_decode(const vesta_tokenizer *t, const int32_t *ids, size_t n,
                                    bool skip_special_tokens, char **out_text, size_t *out_len,
                                    vesta_error *err);

/* Vocabulary. vocab_size is 1 + the largest id (model vocab and added tokens). */
size_t vesta_tokenizer_vocab_size(const vesta_tokenizer *t);
/* Id of the exact token string (model vocab or added token), or -1. */
int32_t vesta_tokenizer_token_to_id(const vesta_tokenizer *t, const char *token, size_t len);
/* The token's stored string (e.g. "Ġhello", "<|im_end|>"), not NUL-terminated, valid while t
 * lives; NULL if the id is unused or out of range. */
const char *vesta_tokenizer_id_to_token(const vesta_tokenizer *t, int32_t id, size_t *len);
/* True for added tokens marked special (what skip_special_tokens removes). */
bool vesta_tokenizer_is_special(const vesta_tokenizer *t, int32_t id);

/* Special tokens from tokenizer_config.json / GGUF. Ids are -1 and strings NULL when absent.
 * Strings are NUL-terminated and valid while t lives. */
int32_t vesta_tokenizer_bos_id(const vesta_tokenizer *t);
int32_t vesta_tokenizer_eos_id(const vesta_tokenizer *t);
int32_t vesta_tokenizer_pad_id(const vesta_tokenizer *t);
int32_t vesta_tokenizer_unk_id(const vesta_tokenizer *t);
const char *vesta_tokenizer_bos_token(const vesta_tokenizer *t);
const char *vesta_tokenizer_eos_token(const vesta_tokenizer *t);
const char *vesta_tokenizer_pad_token(const vesta_tokenizer *t);
const char *vesta_tokenizer_unk_token(const vesta_tokenizer *t);
/* add_bos_token / add_eos_token from tokenizer_config.json or GGUF (false when absent). They
 * are informational: encode() follows the post-processor. */
bool vesta_tokenizer_add_bos(const vesta_tokenizer *t);
bool vesta_tokenizer_add_eos(const vesta_tokenizer *t);

/* Chat templates. name NULL (or "default") → the default template; otherwise a named one
 * (tokenizer_config.json list form, or GGUF tokenizer.chat_template.<name>). NULL when absent.
 * The string is NUL-terminated and valid while t lives. */
const char *vesta_tokenizer_chat_template(const vesta_tokenizer *t, const char *name);
/* Named templates, for listing: count, then the i-th name (NULL if i is out of range). The
 * default template, when present, is listed as "default". */
size_t vesta_tokenizer_chat_template_count(const vesta_tokenizer *t);
const char *vesta_tokenizer_chat_template_name(const vesta_tokenizer *t, size_t i);

#ifdef __cplusplus
}
#endif
#endif
