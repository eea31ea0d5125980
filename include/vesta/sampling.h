/* Sampling parameters, with vLLM's names, meanings and defaults. */
#ifndef VESTA_SAMPLING_H
#define VESTA_SAMPLING_H

#include <stdbool.h>
#include <stdint.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VESTA_MAX_LOGPROBS 20   /* vLLM's default max_logprobs */
#define VESTA_MAX_STOP_TOKEN_IDS 16
#define VESTA_MAX_LOGIT_BIAS 300

typedef struct vesta_logit_bias {
    int32_t token;
    float bias;
} vesta_logit_bias;

typedef struct vesta_sampling_params {
    int n;                     /* sequences per request (1) */
    float temperature;         /* 1.0; 0 = greedy */
    float top_p;               /* 1.0 */
    int top_k;                 /* 0 or -1 = off (vLLM uses -1; both accepted) */
    float min_p;               /* 0.0 */
    float presence_penalty;    /* 0.0 */
    float frequency_penalty;   /* 0.0 */
    float repetition_penalty;  /* 1.0 */
    int64_t seed;              /* -1 = none (a random seed is drawn per request) */
    int max_tokens;            /* 16 (vLLM's default) */
    int min_tokens;            /* 0 */
    bool ignore_eos;           /* false */
    int logprobs;              /* -1 = none; 0..VESTA_MAX_LOGPROBS = chosen token + top-N */
    int prompt_logprobs;       /* -1 = none (reserved) */
    int num_stop_token_ids;
    int32_t stop_token_ids[VESTA_MAX_STOP_TOKEN_IDS];
    int num_logit_bias;
    vesta_logit_bias logit_bias[VESTA_MAX_LOGIT_BIAS];
} vesta_sampling_params;

/* Fills the defaults above. */
void vesta_sampling_params_init(vesta_sampling_params *sp);

/* Checks ranges (vLLM's rules: temperature >= 0, 0 < top_p <= 1, top_k == -1/0 or >= 1,
 * 0 <= min_p <= 1, penalties in range, max_tokens >= 1, ...). vocab_size bounds the token ids
 * in stop_token_ids and logit_bias. The message names the offending parameter. */
vesta_status vesta_sampling_params_validate(const vesta_sampling_params *sp, int vocab_size,
                                            vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
