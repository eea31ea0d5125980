#include "vesta/sampling.h"

#include <math.h>
#include <string.h>

void vesta_sampling_params_init(vesta_sampling_params *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->n = 1;
    sp->temperature = 1.0f;
    sp->top_p = 1.0f;
    sp->top_k = 0;
    sp->min_p = 0.0f;
    sp->repetition_penalty = 1.0f;
    sp->seed = -1;
    sp->max_tokens = 16;
    sp->min_tokens = 0;
    sp->logprobs = -1;
    sp->prompt_logprobs = -1;
}

#define BAD(...) vesta_error_set(err, VESTA_ERR_INVALID_ARG, __VA_ARGS__)

/* The ranges are vLLM's SamplingParams._verify_args; NaN fails every comparison below. */
vesta_status vesta_sampling_params_validate(const vesta_sampling_params *sp, int vocab_size,
                                            vesta_error *err)
{
    if (sp->n < 1)
        return BAD("n must be at least 1, got %d", sp->n);
    if (!(sp->presence_penalty >= -2.0f && sp->presence_penalty <= 2.0f))
        return BAD("presence_penalty must be in [-2, 2], got %g", sp->presence_penalty);
    if (!(sp->frequency_penalty >= -2.0f && sp->frequency_penalty <= 2.0f))
        return BAD("frequency_penalty must be in [-2, 2], got %g", sp->frequency_penalty);
    if (!(sp->repetition_penalty > 0.0f && isfinite(sp->repetition_penalty)))
        return BAD("repetition_penalty must be greater than zero, got %g", sp->repetition_penalty);
    if (!(sp->temperature >= 0.0f && isfinite(sp->temperature)))
        return BAD("temperature must be non-negative, got %g", sp->temperature);
    if (!(sp->top_p > 0.0f && sp->top_p <= 1.0f))
        return BAD("top_p must be in (0, 1], got %g", sp->top_p);
    if (sp->top_k < -1)
        return BAD("top_k must be -1 (disable), 0 (disable) or at least 1, got %d", sp->top_k);
    if (!(sp->min_p >= 0.0f && sp->min_p <= 1.0f))
        return BAD("min_p must be in [0, 1], got %g", sp->min_p);
    if (sp->seed < -1)
        return BAD("seed must be -1 (none) or non-negative, got %lld", (long long)sp->seed);
    if (sp->max_tokens < 1)
        return BAD("max_tokens must be at least 1, got %d", sp->max_tokens);
    if (sp->min_tokens < 0)
        return BAD("min_tokens must be greater than or equal to 0, got %d", sp->min_tokens);
    if (sp->min_tokens > sp->max_tokens)
        return BAD("min_tokens must be less than or equal to max_tokens=%d, got %d",
                   sp->max_tokens, sp->min_tokens);
    if (sp->logprobs < -1 || sp->logprobs > VESTA_MAX_LOGPROBS)
        return BAD("logprobs must be -1 (none) or in [0, %d], got %d", VESTA_MAX_LOGPROBS,
                   sp->logprobs);
    if (sp->prompt_logprobs != -1)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "prompt_logprobs is not supported");
    if (sp->num_stop_token_ids < 0 || sp->num_stop_token_ids > VESTA_MAX_STOP_TOKEN_IDS)
        return BAD("stop_token_ids: at most %d ids, got %d", VESTA_MAX_STOP_TOKEN_IDS,
                   sp->num_stop_token_ids);
    for (int i = 0; i < sp->num_stop_token_ids; i++)
        if (sp->stop_token_ids[i] < 0 || sp->stop_token_ids[i] >= vocab_size)
            return BAD("stop_token_ids[%d] = %d is outside the vocabulary [0, %d)", i,
                       (int)sp->stop_token_ids[i], vocab_size);
    if (sp->num_logit_bias < 0 || sp->num_logit_bias > VESTA_MAX_LOGIT_BIAS)
        return BAD("logit_bias: at most %d entries, got %d", VESTA_MAX_LOGIT_BIAS,
                   sp->num_logit_bias);
    for (int i = 0; i < sp->num_logit_bias; i++) {
        if (sp->logit_bias[i].token < 0 || sp->logit_bias[i].token >= vocab_size)
            return BAD("logit_bias: token id %d is outside the vocabulary [0, %d)",
                       (int)sp->logit_bias[i].token, vocab_size);
        if (!isfinite(sp->logit_bias[i].bias))
            return BAD("logit_bias: the bias of token %d is not finite",
                       (int)sp->logit_bias[i].token);
    }
    return VESTA_OK;
}
