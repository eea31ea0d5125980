/* Prompts to token ids: completions text through the tokenizer, chat messages through the
 * model's chat template (vesta_chat_template_render + vesta_chat_encode, as vLLM applies
 * apply_chat_template then encodes without adding special tokens). */
#ifndef VR_API_PROMPT_H
#define VR_API_PROMPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vesta/chat_template.h"
#include "vesta/tokenizer.h"
#include "api/error.h"

/* *ids is malloc'd. Errors are 400s (invalid UTF-8, empty result) naming `param`. */
vesta_status vr_prompt_encode_text(const vesta_tokenizer *tok, const char *text, size_t len,
                                   bool add_special, int32_t **ids, size_t *n, vr_api_error *err);

typedef struct vr_chat_input {
    json_t *messages;              /* normalized (api/request.h) */
    json_t *tools;                 /* may be NULL */
    json_t *kwargs;                /* chat_template_kwargs, may be NULL */
    bool add_generation_prompt;
    bool continue_final_message;
    bool add_special_tokens;       /* false by default for chat */
} vr_chat_input;

/* tpl NULL -> 400 (the model has no chat template). Template errors -> 400 with its message. */
vesta_status vr_prompt_encode_chat(const vesta_chat_template *tpl, const json_t *trusted,
                                   const vesta_tokenizer *tok, const vr_chat_input *in,
                                   int32_t **ids, size_t *n, vr_api_error *err);

#endif
