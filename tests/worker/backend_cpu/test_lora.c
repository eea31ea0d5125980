/* Multi-LoRA on the CPU backend against PEFT (tests/golden/lora/tiny-llama-lora.json, made by
 * scripts/reference/make_golden.py lora): three adapters of tests/models/tiny-llama (all seven
 * projections in F32; q/v with rsLoRA in BF16; the MLP by a regex in F16) and the base model.
 *
 *   test_lora ROOT GOLDEN.json
 * Every prompt of every adapter and of the base model runs in the same steps (so each step mixes
 * adapters and base rows, prefilled whole or in chunks, joining at different steps): every prompt
 * position's logits within relative L2 1e-4 of PEFT's, and 16 greedy tokens identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "driver.h"
#include "golden.h"
#include "vesta/lora.h"

#define BLOCK 8
#define MAX_SEQS 32

static int fail(const char *what, const vesta_error *e)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, e->msg);
    return 1;
}

/* Adds every adapter of the golden file to be as slots 0, 1, ... in file order. */
static int add_adapters(vesta_backend *be, const char *root, json_t *runs, vesta_lora_adapter **ads, int *n_ads)
{
    vesta_error e = {0};
    *n_ads = 0;
    for (size_t r = 0; r < json_array_size(runs); r++) {
        const char *name = json_string_value(json_object_get(json_array_get(runs, r), "adapter"));
        const char *rel = json_string_value(json_object_get(json_array_get(runs, r), "path"));
        if (!name) continue;
        vesta_lora_spec spec = {0};
        snprintf(spec.name, sizeof spec.name, "%s", name);
        snprintf(spec.path, sizeof spec.path, "%s/%s", root, rel);
        ads[*n_ads] = vesta_lora_adapter_load(&spec, &be->config, 64, &e);
        if (!ads[*n_ads]) return fail(spec.path, &e);
        if (be->ops->lora_add(be, *n_ads, ads[*n_ads], &e) != VESTA_OK) return fail("lora_add", &e);
        (*n_ads)++;
    }
    return 0;
}

static int check_seq(const drv_seq *s, const int32_t *greedy, const float *want, int vocab, const char *label)
{
    int failures = 0;
    double worst = 0;
    for (int r = 0; r < s->n_prompt; r++) {
        double rel = drv_rel_l2(s->prompt_rows + (size_t)r * vocab, want + (size_t)r * vocab, vocab);
        worst = rel > worst ? rel : worst;
    }
    printf("%s (%d tokens, chunk %d, slot %d): worst position logits rel L2 %.3g\n", label, s->n_prompt, s->chunk,
           s->lora - 1, worst);
    if (!(worst < 1e-4)) {
        fprintf(stderr, "FAIL: %s: logits relative L2 %.3g >= 1e-4\n", label, worst);
        failures++;
    }
    for (int k = 0; k < s->n_new; k++)
        if (s->out[k] != greedy[k]) {
            fprintf(stderr, "FAIL: %s: greedy token %d is %d, PEFT says %d\n", label, k, s->out[k], greedy[k]);
            failures++;
            break;
        }
    return failures;
}

int main(int argc, char **argv)
{
    json_t *doc;
    float *all;
    size_t nf;
    vesta_model_file *mf;
    vesta_backend *be = golden_backend(argc, argv, BLOCK, &doc, &all, &nf, &mf);
    json_t *runs = json_object_get(doc, "runs");
    vesta_lora_adapter *ads[8];
    int n_ads, vocab = be->config.vocab_size, n = 0, slot = 0, failures = 0;
    if (add_adapters(be, argv[1], runs, ads, &n_ads)) return 1;
    drv_seq seqs[MAX_SEQS];
    int32_t *greedy[MAX_SEQS];
    size_t offs[MAX_SEQS];
    char labels[MAX_SEQS][96];
    static const int chunks[] = {0, 7, 1, 33, 16, 0, 5};
    memset(seqs, 0, sizeof seqs);
    for (size_t r = 0; r < json_array_size(runs); r++) {
        json_t *run = json_array_get(runs, r), *prompts = json_object_get(run, "prompts");
        const char *name = json_string_value(json_object_get(run, "adapter"));
        int lora = name ? ++slot : 0;
        for (size_t i = 0; i < json_array_size(prompts) && n < MAX_SEQS; i++, n++) {
            json_t *p = json_array_get(prompts, i);
            int np, ng;
            int32_t *ids = golden_ids(p, "prompt_ids", &np);
            greedy[n] = golden_ids(p, "greedy_ids", &ng);
            offs[n] = (size_t)json_integer_value(json_object_get(p, "logits_offset"));
            if (offs[n] + (size_t)np * vocab > nf) {
                fprintf(stderr, "FAIL: golden logits file too short\n");
                return 1;
            }
            snprintf(labels[n], sizeof labels[n], "%s prompt %zu", name ? name : "base", i);
            seqs[n] = (drv_seq){.prompt = ids,
                                .n_prompt = np,
                                .n_new = ng,
                                .chunk = chunks[n % 7],
                                .start_step = n % 5,
                                .prompt_logits = true,
                                .lora = lora};
        }
    }
    drv d;
    drv_init(&d, be, 400, BLOCK, GOLDEN_STEP_TOKENS);
    drv_run(&d, seqs, n, 11);
    for (int i = 0; i < n; i++) {
        failures += check_seq(&seqs[i], greedy[i], all + offs[i], vocab, labels[i]);
        free((void *)seqs[i].prompt);
        free(greedy[i]);
        drv_seq_free(&seqs[i]);
    }
    drv_free(&d);
    vesta_backend_destroy(be);
    for (int i = 0; i < n_ads; i++) vesta_lora_adapter_release(ads[i]);
    vesta_model_file_close(mf);
    free(all);
    json_decref(doc);
    printf("%d sequences of %d adapters and the base model: %s\n", n, n_ads, failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}
