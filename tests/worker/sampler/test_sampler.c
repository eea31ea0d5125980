/* Unit tests of the CPU reference sampler that need no reference implementation: the RNG's
 * contract, determinism and batch independence, tie-breaking, masks, parameter validation.
 * Distributions are checked against numpy in check_sampler.py. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

#include "vesta_test.h"

static void test_rng(void)
{
    double sum = 0, sumsq = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = vesta_rng_uniform(42, (uint64_t)i);
        CHECK(u >= 0.0 && u < 1.0);
        sum += u;
        sumsq += u * u;
    }
    double mean = sum / n, var = sumsq / n - mean * mean;
    CHECK(fabs(mean - 0.5) < 0.005);
    CHECK(fabs(var - 1.0 / 12) < 0.002);
    /* A pure function of (seed, offset); neighbouring seeds and offsets are unrelated. */
    CHECK(vesta_rng_uniform(7, 3) == vesta_rng_uniform(7, 3));
    CHECK(vesta_rng_uniform(7, 3) != vesta_rng_uniform(8, 3));
    CHECK(vesta_rng_uniform(7, 3) != vesta_rng_uniform(7, 4));
    /* Lag-1 correlation across offsets stays near zero. */
    double c = 0;
    for (int i = 0; i < n; i++)
        c += (vesta_rng_uniform(9, (uint64_t)i) - 0.5) * (vesta_rng_uniform(9, (uint64_t)i + 1) - 0.5);
    CHECK(fabs(c / n) < 0.002);
}

static void test_greedy_ties_and_mask(vesta_sampler_scratch *s)
{
    float logits[8] = {0, 5, 1, 5, 2, 5, -1, 0};
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0;
    vesta_sample_row row = {.params = &sp};
    vesta_sample_result r;
    CHECK(vesta_sampler_sample(logits, 8, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.token == 1); /* ties: the lowest id */
    int32_t eos[1] = {1};
    row.eos_ids = eos;
    row.num_eos = 1;
    row.suppress_stop = true;
    sp.stop_token_ids[0] = 3;
    sp.num_stop_token_ids = 1;
    CHECK(vesta_sampler_sample(logits, 8, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.token == 5); /* EOS and the stop token are masked while min_tokens is not reached */
    row.suppress_stop = false;
    CHECK(vesta_sampler_sample(logits, 8, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.token == 1);
    /* Logit bias decides greedy too. */
    sp.logit_bias[0] = (vesta_logit_bias){6, 10.0f};
    sp.num_logit_bias = 1;
    CHECK(vesta_sampler_sample(logits, 8, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.token == 6);
    /* Every token masked is an error, not a made-up token. */
    float all_masked[2] = {-INFINITY, NAN};
    vesta_sampler_scratch *s2 = vesta_sampler_scratch_create(2, NULL);
    vesta_error err = {0};
    CHECK(vesta_sampler_sample(all_masked, 2, &row, &r, s2, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(vesta_sampler_sample(logits, 8, &row, &r, s2, &err) == VESTA_ERR_INVALID_ARG);
    vesta_sampler_scratch_release(s2);
}

static void test_determinism(vesta_sampler_scratch *s)
{
    enum { V = 1000 };
    float *logits = malloc(V * sizeof(float));
    for (int i = 0; i < V; i++)
        logits[i] = (float)sin(i * 0.37) * 3.0f;
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.top_p = 0.95f;
    int32_t out_ids[4] = {1, 2, 3, 4};
    vesta_sample_row row = {.params = &sp, .rng_seed = 99, .output_ids = out_ids, .num_output = 4};
    /* The draw depends on (seed, offset) only: interleaving other rows changes nothing. */
    int first[64];
    for (int k = 0; k < 64; k++) {
        vesta_sample_result r;
        row.rng_offset = (uint64_t)k;
        CHECK(vesta_sampler_sample(logits, V, &row, &r, s, NULL) == VESTA_OK);
        first[k] = r.token;
    }
    int differ = 0;
    for (int k = 63; k >= 0; k--) {
        vesta_sample_result r, other;
        vesta_sample_row row2 = row;
        row2.rng_seed = 5;
        row2.rng_offset = (uint64_t)(k * 7);
        CHECK(vesta_sampler_sample(logits, V, &row2, &other, s, NULL) == VESTA_OK);
        row.rng_offset = (uint64_t)k;
        CHECK(vesta_sampler_sample(logits, V, &row, &r, s, NULL) == VESTA_OK);
        CHECK(r.token == first[k]);
        differ += r.token != first[0];
    }
    CHECK(differ > 0); /* it is actually random */
    free(logits);
}

static void test_logprobs_normalized(vesta_sampler_scratch *s)
{
    enum { V = 16 };
    float logits[V];
    for (int i = 0; i < V; i++)
        logits[i] = (float)i * 0.25f - 1.0f;
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.logprobs = 20; /* more than V: clamped to V */
    sp.temperature = 0.5f;
    sp.top_k = 3; /* processing does not change the raw logprobs */
    vesta_sample_row row = {.params = &sp, .rng_seed = 1};
    vesta_sample_result r;
    CHECK(vesta_sampler_sample(logits, V, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.num_top == V);
    double total = 0;
    for (int i = 0; i < r.num_top; i++)
        total += exp(r.top_logprobs[i]);
    CHECK(fabs(total - 1.0) < 1e-5);
    CHECK(r.top_ids[0] == V - 1);
    CHECK(r.token >= V - 3);
    sp.logprobs = 0;
    CHECK(vesta_sampler_sample(logits, V, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.num_top == 0 && r.logprob < 0);
    sp.logprobs = -1;
    CHECK(vesta_sampler_sample(logits, V, &row, &r, s, NULL) == VESTA_OK);
    CHECK(r.num_top == 0 && r.logprob == 0);
}

static void test_validate(void)
{
    vesta_sampling_params sp;
    vesta_error err = {0};
    vesta_sampling_params_init(&sp);
    CHECK(vesta_sampling_params_validate(&sp, 100, &err) == VESTA_OK);
    CHECK(sp.n == 1 && sp.temperature == 1.0f && sp.max_tokens == 16 && sp.seed == -1);
#define BAD(field, value, word)                                                        \
    do {                                                                               \
        vesta_sampling_params_init(&sp);                                               \
        sp.field = value;                                                              \
        CHECK(vesta_sampling_params_validate(&sp, 100, &err) != VESTA_OK);             \
        CHECK(strstr(err.msg, word) != NULL);                                          \
    } while (0)
    BAD(n, 0, "n must");
    BAD(temperature, -0.5f, "temperature");
    BAD(temperature, NAN, "temperature");
    BAD(top_p, 0.0f, "top_p");
    BAD(top_p, 1.5f, "top_p");
    BAD(top_k, -2, "top_k");
    BAD(min_p, 1.5f, "min_p");
    BAD(presence_penalty, 2.5f, "presence_penalty");
    BAD(frequency_penalty, -3.0f, "frequency_penalty");
    BAD(repetition_penalty, 0.0f, "repetition_penalty");
    BAD(max_tokens, 0, "max_tokens");
    BAD(min_tokens, 17, "min_tokens");
    BAD(logprobs, 21, "logprobs");
    BAD(seed, -5, "seed");
    vesta_sampling_params_init(&sp);
    sp.num_stop_token_ids = 1;
    sp.stop_token_ids[0] = 100;
    CHECK(vesta_sampling_params_validate(&sp, 100, &err) != VESTA_OK);
    CHECK(strstr(err.msg, "stop_token_ids") != NULL);
    vesta_sampling_params_init(&sp);
    sp.num_logit_bias = 1;
    sp.logit_bias[0] = (vesta_logit_bias){-1, 1.0f};
    CHECK(vesta_sampling_params_validate(&sp, 100, &err) != VESTA_OK);
    CHECK(strstr(err.msg, "logit_bias") != NULL);
    vesta_sampling_params_init(&sp);
    sp.top_k = -1;
    CHECK(vesta_sampling_params_validate(&sp, 100, &err) == VESTA_OK);
}

int main(void)
{
    vesta_error err = {0};
    vesta_sampler_scratch *s8 = vesta_sampler_scratch_create(8, &err);
    vesta_sampler_scratch *s16 = vesta_sampler_scratch_create(16, &err);
    vesta_sampler_scratch *s1000 = vesta_sampler_scratch_create(1000, &err);
    CHECK(vesta_sampler_scratch_create(0, &err) == NULL);
    CHECK(vesta_sampler_scratch_bytes(1000) >= 13000);
    test_rng();
    test_greedy_ties_and_mask(s8);
    test_determinism(s1000);
    test_logprobs_normalized(s16);
    test_validate();
    vesta_sampler_scratch_release(s8);
    vesta_sampler_scratch_release(s16);
    vesta_sampler_scratch_release(s1000);
    vesta_sampler_scratch_release(NULL);
    if (failures)
        fprintf(stderr, "%d checks failed\n", failures);
    else
        printf("sampler unit tests passed\n");
    return failures ? 1 : 0;
}
