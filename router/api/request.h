/* OpenAI request bodies (/v1/completions, /v1/chat/completions) parsed and validated into an
 * internal request, with vLLM's parameter names, defaults and ranges.
 *
 * Parsing needs no tokenizer or worker: it checks JSON shape, types and ranges (token ids
 * against limits->vocab_size). Tokenization and the context-length check come later
 * (router/api/prompt.h), once the prompt is known in tokens.
 *
 * Internal to vesta-router: symbols are prefixed vr_. */
#ifndef VR_API_REQUEST_H
#define VR_API_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "vesta/sampling.h"
#include "api/error.h"

typedef enum vr_api_kind {
    VR_API_COMPLETION = 0, /* POST /v1/completions */
    VR_API_CHAT = 1,       /* POST /v1/chat/completions */
} vr_api_kind;

/* Caps applied while parsing. */
typedef struct vr_api_limits {
    int vocab_size;        /* token ids must be < this (0 = unknown: not checked here) */
    int max_n;             /* n cap (default 128) */
    int max_logprobs;      /* logprobs / top_logprobs cap (VESTA_MAX_LOGPROBS) */
    int max_stop;          /* number of stop strings (default 64) */
    size_t max_stop_len;   /* bytes per stop string (default 1024) */
    int max_prompts;       /* entries of a completions prompt list (default 256) */
} vr_api_limits;

void vr_api_limits_init(vr_api_limits *l);

/* One completions prompt: text (borrowed from the JSON) or token ids (owned). */
typedef struct vr_api_prompt {
    const char *text;      /* NULL when ids are given */
    size_t text_len;
    int32_t *ids;
    size_t n_ids;
} vr_api_prompt;

typedef struct vr_api_request {
    vr_api_kind kind;
    json_t *root;                 /* the parsed body; strings below point into it */
    const char *model;            /* NULL: the default served model */
    /* completions */
    vr_api_prompt *prompts;       /* [n_prompts] */
    size_t n_prompts;
    bool echo;
    /* chat: messages normalized for the template (content parts joined into one string) */
    json_t *messages;             /* owned (a new array) */
    json_t *tools;                /* borrowed; NULL when absent */
    json_t *chat_template_kwargs; /* borrowed object; NULL when absent */
    bool add_generation_prompt;   /* true */
    bool continue_final_message;  /* false */
    /* both */
    bool stream;
    bool include_usage;           /* stream_options.include_usage */
    vesta_sampling_params sp;     /* sp.max_tokens = -1 when not given (default applied later) */
    bool want_logprobs;           /* completions: logprobs given; chat: logprobs true */
    int num_top_logprobs;         /* completions: logprobs; chat: top_logprobs */
    const char **stop;            /* [n_stop], NUL-terminated, borrowed */
    size_t n_stop;
    bool include_stop_str_in_output;
    bool skip_special_tokens;     /* true */
    bool add_special_tokens;      /* completions: true; chat: false (the template writes them) */
    const char *user;
} vr_api_request;

/* Parses a request body of `kind`. On failure returns the status with err filled (message
 * naming the parameter; err->param set) and *out owns nothing. On success release with
 * vr_api_request_clear. Never reads past body[len]. */
vesta_status vr_api_request_parse(vr_api_kind kind, const char *body, size_t len,
                                  const vr_api_limits *limits, vr_api_request *out,
                                  vr_api_error *err);

void vr_api_request_clear(vr_api_request *r); /* NULL and cleared requests are no-ops */

/* vLLM's default for max_tokens: completions 16, chat up to the model length. Returns the
 * effective max_tokens for a prompt of num_prompt tokens (>= 1 when the request fits). */
int vr_api_default_max_tokens(const vr_api_request *r, int num_prompt, int max_model_len);

/* /tokenize and /detokenize bodies (vLLM's shapes). */
typedef struct vr_api_tokenize {
    json_t *root;
    const char *model;
    const char *prompt;           /* NULL when messages are given */
    size_t prompt_len;
    json_t *messages;             /* owned, normalized as for chat */
    json_t *tools;
    json_t *chat_template_kwargs;
    bool add_generation_prompt;   /* true */
    bool add_special_tokens;      /* prompt: true; messages: false */
    bool continue_final_message;
} vr_api_tokenize;

vesta_status vr_api_tokenize_parse(const char *body, size_t len, vr_api_tokenize *out,
                                   vr_api_error *err);
void vr_api_tokenize_clear(vr_api_tokenize *t);

typedef struct vr_api_detokenize {
    json_t *root;
    const char *model;
    int32_t *ids;                 /* owned */
    size_t n_ids;
} vr_api_detokenize;

vesta_status vr_api_detokenize_parse(const char *body, size_t len, int vocab_size,
                                     vr_api_detokenize *out, vr_api_error *err);
void vr_api_detokenize_clear(vr_api_detokenize *d);

#endif
