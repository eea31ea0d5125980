/* Rotary embedding frequencies, computed with the same float32 operations, in the same order, as
 * Hugging Face transformers (modeling_rope_utils), so that positions rotate identically. */
#include <math.h>

#include "cpu_internal.h"

static void scale_llama3(const vesta_model_config *c, float *inv_freq, int half)
{
    /* HF: Python scalars enter float32 tensor arithmetic as float32. */
    const float factor = c->rope_factor;
    const float low = c->rope_low_freq_factor, high = c->rope_high_freq_factor;
    const float old_len = (float)c->rope_original_max_position;
    const float low_wavelen = (float)((double)c->rope_original_max_position / (double)low);
    const float high_wavelen = (float)((double)c->rope_original_max_position / (double)high);
    const float two_pi = (float)(2.0 * M_PI);
    const float span = (float)((double)high - (double)low);
    for (int i = 0; i < half; i++) {
        float f = inv_freq[i];
        float wavelen = two_pi / f;
        float llama = wavelen > low_wavelen ? f / factor : f;
        float smooth = (old_len / wavelen - low) / span;
        float smoothed = (1.0f - smooth) * llama / factor + smooth * llama;
        bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        inv_freq[i] = medium ? smoothed : llama;
    }
}

vesta_status cpu_rope_inv_freq(const vesta_model_config *c, float *inv_freq, vesta_error *err)
{
    if (c->head_dim <= 0 || c->head_dim % 2)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "head_dim %d: rotary embedding needs an even size",
                               c->head_dim);
    if (!(c->rope_theta > 0.0f))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "rope_theta %g must be positive", c->rope_theta);
    int half = c->head_dim / 2;
    /* inv_freq = 1.0 / (base ** (arange(0, dim, 2).float() / dim)) */
    for (int i = 0; i < half; i++)
        inv_freq[i] = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
    switch (c->rope_scaling) {
    case VESTA_ROPE_SCALING_NONE:
        return VESTA_OK;
    case VESTA_ROPE_SCALING_LINEAR:
        if (!(c->rope_factor > 0.0f))
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "rope_scaling.factor %g must be positive",
                                   c->rope_factor);
        for (int i = 0; i < half; i++)
            inv_freq[i] /= c->rope_factor;
        return VESTA_OK;
    case VESTA_ROPE_SCALING_LLAMA3:
        if (!(c->rope_factor > 0.0f) || !(c->rope_low_freq_factor > 0.0f) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_position <= 0)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "rope_scaling llama3: factor %g, low_freq_factor %g, high_freq_factor %g, "
                                   "original_max_position_embeddings %d are not usable",
                                   c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                                   c->rope_original_max_position);
        scale_llama3(c, inv_freq, half);
        return VESTA_OK;
    }
    return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "rope_scaling type %d is not supported", (int)c->rope_scaling);
}
