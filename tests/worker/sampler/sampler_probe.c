/* Runs the sampler on the cases of a JSON file and prints what it did, for check_sampler.py
 * to compare with an independent numpy implementation of vLLM's sampler.
 * Usage: sampler_probe CASES.json > RESULT.json */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "sampler.h"

static int32_t *int_array(json_t *a, int *n)
{
    *n = (int)json_array_size(a);
    int32_t *v = calloc((size_t)*n + 1, sizeof(int32_t));
    for (int i = 0; i < *n; i++)
        v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return v;
}

static double num(json_t *o, const char *k, double def)
{
    json_t *v = json_object_get(o, k);
    return v ? json_number_value(v) : def;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: sampler_probe CASES.json\n");
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_load_file(argv[1], 0, &jerr);
    if (!root) {
        fprintf(stderr, "sampler_probe: %s: %s\n", argv[1], jerr.text);
        return 2;
    }
    json_t *cases = json_object_get(root, "cases"), *results = json_array();
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *c = json_array_get(cases, ci);
        json_t *jl = json_object_get(c, "logits");
        int V = (int)json_array_size(jl);
        float *logits = malloc((size_t)V * sizeof(float)), *probs = malloc((size_t)V * sizeof(float));
        for (int i = 0; i < V; i++)
            logits[i] = (float)json_number_value(json_array_get(jl, (size_t)i));
        vesta_sampling_params sp;
        vesta_sampling_params_init(&sp);
        sp.temperature = (float)num(c, "temperature", 1.0);
        sp.top_p = (float)num(c, "top_p", 1.0);
        sp.top_k = (int)num(c, "top_k", 0);
        sp.min_p = (float)num(c, "min_p", 0.0);
        sp.repetition_penalty = (float)num(c, "rep", 1.0);
        sp.presence_penalty = (float)num(c, "pres", 0.0);
        sp.frequency_penalty = (float)num(c, "freq", 0.0);
        sp.logprobs = (int)num(c, "logprobs", -1);
        json_t *bias = json_object_get(c, "bias");
        sp.num_logit_bias = (int)json_array_size(bias);
        for (int i = 0; i < sp.num_logit_bias; i++) {
            json_t *b = json_array_get(bias, (size_t)i);
            sp.logit_bias[i].token = (int32_t)json_integer_value(json_array_get(b, 0));
            sp.logit_bias[i].bias = (float)json_number_value(json_array_get(b, 1));
        }
        int nstop = 0;
        int32_t *stop = int_array(json_object_get(c, "stop_ids"), &nstop);
        sp.num_stop_token_ids = nstop;
        for (int i = 0; i < nstop; i++)
            sp.stop_token_ids[i] = stop[i];
        vesta_error err = {0};
        if (vesta_sampling_params_validate(&sp, V, &err) != VESTA_OK) {
            fprintf(stderr, "case %zu: %s\n", ci, err.msg);
            return 1;
        }
        vesta_sample_row row = {.params = &sp};
        row.prompt_ids = int_array(json_object_get(c, "prompt"), &row.num_prompt);
        row.output_ids = int_array(json_object_get(c, "output"), &row.num_output);
        row.eos_ids = int_array(json_object_get(c, "eos"), &row.num_eos);
        row.suppress_stop = json_is_true(json_object_get(c, "suppress_stop"));
        row.rng_seed = (uint64_t)num(c, "seed", 0);
        vesta_sampler_scratch *s = vesta_sampler_scratch_create(V, &err);
        if (vesta_sampler_probs(logits, V, &row, probs, s, &err) != VESTA_OK) {
            fprintf(stderr, "case %zu: %s\n", ci, err.msg);
            return 1;
        }
        json_t *out = json_object(), *jp = json_array(), *hist = json_array();
        for (int i = 0; i < V; i++)
            json_array_append_new(jp, json_real(probs[i]));
        json_object_set_new(out, "probs", jp);
        int draws = (int)num(c, "draws", 1);
        int *counts = calloc((size_t)V, sizeof(int));
        bool deterministic = true;
        vesta_sample_result r = {0}, r2 = {0};
        for (int d = 0; d < draws; d++) {
            row.rng_offset = (uint64_t)d;
            if (vesta_sampler_sample(logits, V, &row, &r, s, &err) != VESTA_OK) {
                fprintf(stderr, "case %zu: %s\n", ci, err.msg);
                return 1;
            }
            vesta_sampler_sample(logits, V, &row, &r2, s, &err);
            deterministic &= r.token == r2.token;
            counts[r.token]++;
        }
        for (int i = 0; i < V; i++)
            json_array_append_new(hist, json_integer(counts[i]));
        json_object_set_new(out, "hist", hist);
        json_object_set_new(out, "deterministic", json_boolean(deterministic));
        json_object_set_new(out, "last_token", json_integer(r.token));
        json_object_set_new(out, "logprob", json_real(r.logprob));
        json_t *ti = json_array(), *tl = json_array();
        for (int i = 0; i < r.num_top; i++) {
            json_array_append_new(ti, json_integer(r.top_ids[i]));
            json_array_append_new(tl, json_real(r.top_logprobs[i]));
        }
        json_object_set_new(out, "top_ids", ti);
        json_object_set_new(out, "top_logprobs", tl);
        json_array_append_new(results, out);
        vesta_sampler_scratch_release(s);
        free(counts);
        free(logits);
        free(probs);
        free(stop);
        free((void *)row.prompt_ids);
        free((void *)row.output_ids);
        free((void *)row.eos_ids);
    }
    json_t *res = json_object();
    json_object_set_new(res, "cases", results);
    json_dumpf(res, stdout, JSON_COMPACT);
    json_decref(res);
    json_decref(root);
    return 0;
}
