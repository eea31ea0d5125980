/* OpenAI response bodies and stream chunks (vLLM's field set, including stop_reason). Every
 * function returns a new JSON value; `steal` arguments are consumed. */
#ifndef VR_API_RESPONSE_H
#define VR_API_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vesta/backend.h"
#include "vesta/tokenizer.h"
#include "api/request.h"

/* The envelope {"id","object","created","model","choices":[]} of a response or chunk. */
json_t *vr_resp_envelope(vr_api_kind kind, bool chunk, const char *id, int64_t created,
                         const char *model);

/* One choice. text may be NULL (chat: a delta without content). logprobs and stop_reason are
 * stolen (NULL -> null). finish NULL -> null.
 *   completions: {"index","text","logprobs","finish_reason","stop_reason"}
 *   chat:        {"index","message"|"delta":{"role"?,"content"},"logprobs","finish_reason",
 *                 "stop_reason"} */
json_t *vr_resp_choice(vr_api_kind kind, bool chunk, int index, const char *text, size_t len,
                       bool with_role, json_t *logprobs, const char *finish, json_t *stop_reason);

json_t *vr_resp_usage(int prompt_tokens, int completion_tokens, int cached_tokens);

/* Logprobs of one sampled token appended to `acc` (created on first use, returned):
 *   completions: {"tokens":[],"token_logprobs":[],"top_logprobs":[{tok: lp}],"text_offset":[]}
 *   chat:        {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}
 * text_offset is the offset of this token's text in the choice's text (completions). */
json_t *vr_resp_logprobs_add(vr_api_kind kind, json_t *acc, const vesta_tokenizer *tok,
                             const vesta_sample_result *res, int num_top, size_t text_offset);

/* A string JSON value from bytes that may not be valid UTF-8 (invalid bytes -> U+FFFD). */
json_t *vr_json_text(const char *s, size_t len);

#endif
