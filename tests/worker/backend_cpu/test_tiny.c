/* The CPU backend on the tiny random models of tests/models/ (llama with llama3 rope scaling and
 * GQA, qwen2 with q/k/v bias and tied embeddings, mistral; HF directories and GGUF F32..Q4_1)
 * against Hugging Face transformers (tests/golden/tiny/<model>.json, made by
 * scripts/reference/make_golden.py tiny).
 *
 *   test_tiny ROOT GOLDEN.json
 * Every prompt position's logits within relative L2 1e-4 of HF (the prompts run together, some
 * prefilled whole, some in chunks of 7 or 1, joining at different steps), and 16 greedy tokens
 * identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "driver.h"
#include "golden.h"

#define BLOCK 8

int main(int argc, char **argv)
{
    json_t *doc;
    float *all;
    size_t nf;
    vesta_model_file *mf;
    vesta_backend *be = golden_backend(argc, argv, BLOCK, &doc, &all, &nf, &mf);
    int vocab = be->config.vocab_size, failures = 0;
    if (vocab != (int)json_integer_value(json_object_get(doc, "vocab_size"))) {
        fprintf(stderr, "FAIL: vocab %d differs from golden\n", vocab);
        return 1;
    }
    json_t *prompts = json_object_get(doc, "prompts");
    int n = (int)json_array_size(prompts);
    drv_seq seqs[8];
    int32_t *greedy[8];
    static const int chunks[] = {0, 7, 1, 33, 0, 16, 7, 0};
    memset(seqs, 0, sizeof seqs);
    for (int i = 0; i < n && i < 8; i++) {
        json_t *p = json_array_get(prompts, (size_t)i);
        int np, ng;
        int32_t *ids = golden_ids(p, "prompt_ids", &np);
        greedy[i] = golden_ids(p, "greedy_ids", &ng);
        seqs[i] = (drv_seq){.prompt = ids, .n_prompt = np, .n_new = ng, .chunk = chunks[i], .start_step = i,
                            .prompt_logits = true};
    }
    drv d;
    drv_init(&d, be, 200, BLOCK, GOLDEN_STEP_TOKENS);
    drv_run(&d, seqs, n, 5);
    for (int i = 0; i < n; i++) {
        json_t *p = json_array_get(prompts, (size_t)i);
        size_t off = (size_t)json_integer_value(json_object_get(p, "logits_offset"));
        if (off + (size_t)seqs[i].n_prompt * vocab > nf) {
            fprintf(stderr, "FAIL: golden logits file too short\n");
            return 1;
        }
        double worst = 0;
        for (int r = 0; r < seqs[i].n_prompt; r++) {
            double rel = drv_rel_l2(seqs[i].prompt_rows + (size_t)r * vocab, all + off + (size_t)r * vocab, vocab);
            worst = rel > worst ? rel : worst;
        }
        printf("prompt %d (%d tokens, chunk %d): worst position logits rel L2 %.3g\n", i, seqs[i].n_prompt,
               seqs[i].chunk, worst);
        if (!(worst < 1e-4)) {
            fprintf(stderr, "FAIL: prompt %d: logits relative L2 %.3g >= 1e-4\n", i, worst);
            failures++;
        }
        for (int k = 0; k < seqs[i].n_new; k++)
            if (seqs[i].out[k] != greedy[i][k]) {
                fprintf(stderr, "FAIL: prompt %d: greedy token %d is %d, HF says %d\n", i, k, seqs[i].out[k],
                        greedy[i][k]);
                failures++;
                break;
            }
        if (seqs[i].argmax_mismatch) {
            fprintf(stderr, "FAIL: prompt %d: sampler disagrees with argmax\n", i);
            failures++;
        }
        free((void *)seqs[i].prompt);
        free(greedy[i]);
        drv_seq_free(&seqs[i]);
    }
    drv_free(&d);
    vesta_backend_destroy(be);
    vesta_model_file_close(mf);
    free(all);
    json_decref(doc);
    return failures ? 1 : 0;
}
