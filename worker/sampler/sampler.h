/* The CPU reference sampler: turns one row of raw logits into one token, with vLLM V1 semantics.
 * Every backend samples through this (the CPU backend directly; the CUDA backend's kernels are
 * checked against it), so that outputs do not depend on the backend.
 *
 * Processing order (vLLM V1 Sampler.forward):
 *   0. logprobs: log_softmax of the RAW logits (chosen token + top-N, N = params->logprobs)
 *   1. logit_bias added
 *   2. min_tokens: while row->suppress_stop, EOS ids and stop_token_ids get -inf
 *   3. repetition penalty over tokens seen in prompt + output (positive logits divided,
 *      others multiplied), then frequency (x count in output) and presence (x [count > 0])
 *      penalties subtracted
 *   4. temperature < 1e-5: greedy argmax (ties: the lowest id) -- steps 5-8 skipped
 *   5. divided by temperature
 *   6. min_p: tokens with p < min_p * p_max removed
 *   7. top-k (ties with the k-th largest kept), then top-p exactly as vLLM's
 *      apply_top_k_top_p: ascending order (ties broken by id, larger id first), the tokens
 *      whose ascending cumulative probability is <= 1 - top_p are removed, the most likely
 *      token always kept
 *   8. softmax over the kept tokens; inverse-CDF draw, walking the kept tokens in the order of
 *      step 7 (descending logit, ties by ascending id; id order when neither top-k nor top-p is
 *      active), with u = vesta_rng_uniform(row->rng_seed, row->rng_offset).
 *
 * Thread ownership: a scratch belongs to one thread; the functions are otherwise pure. */
#ifndef VESTA_SAMPLER_H
#define VESTA_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "vesta/backend.h"
#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Working memory for one sampling thread, sized for a vocabulary once at start-up, so that no
 * sampling step allocates: vesta_sampler_scratch_bytes(V) = about 13 * V bytes
 * (float logits[V], int32 order[V], int32 counts[V], uint8 seen[V]). */
typedef struct vesta_sampler_scratch vesta_sampler_scratch;

size_t vesta_sampler_scratch_bytes(int vocab_size);
/* NULL (err filled) on vocab_size <= 0 or allocation failure. */
vesta_sampler_scratch *vesta_sampler_scratch_create(int vocab_size, vesta_error *err);
void vesta_sampler_scratch_release(vesta_sampler_scratch *s); /* NULL is a no-op */

/* Samples one token from logits[vocab_size] for row. out->logprob/top_* are filled when
 * row->params->logprobs >= 0 (num_top = min(logprobs, vocab_size)); otherwise num_top = 0 and
 * logprob = 0. Fails with VESTA_ERR_INVALID_ARG if vocab_size does not match the scratch, or
 * if every token is masked / NaN. Token ids in the row outside [0, vocab_size) are ignored. */
vesta_status vesta_sampler_sample(const float *logits, int vocab_size, const vesta_sample_row *row,
                                  vesta_sample_result *out, vesta_sampler_scratch *scratch,
                                  vesta_error *err);

/* The distribution the draw of vesta_sampler_sample is made from (steps 1-8 above), written to
 * probs[vocab_size] (0 for removed tokens; one-hot at the argmax when greedy). For tests and
 * for checking other backends' samplers. Same failures as vesta_sampler_sample. */
vesta_status vesta_sampler_probs(const float *logits, int vocab_size, const vesta_sample_row *row,
                                 float *probs, vesta_sampler_scratch *scratch, vesta_error *err);

/* Counter-based uniform in [0, 1): a pure function of (seed, offset), so that a sequence's k-th
 * draw is the same whatever else shares the batch. With the SplitMix64 finalizer
 *   mix(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
 *            z ^ (z >> 31)
 * it returns (mix(seed ^ mix(offset + 0x9E3779B97F4A7C15)) >> 11) * 2^-53. */
double vesta_rng_uniform(uint64_t seed, uint64_t offset);

/* The SplitMix64 finalizer above (also used to derive per-sequence seeds). */
uint64_t vesta_rng_mix(uint64_t z);

#ifdef __cplusplus
}
#endif
#endif
