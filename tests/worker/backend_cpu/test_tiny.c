/* The CPU backend on the tiny random models of tests/models/ (llama with llama3 rope scaling and
 * GQA, qwen2 with q/k/v bias and tied embeddings, mistral; HF directories and GGUF F32..Q4_1)
 * against Hugging Face transformers (tests/golden/tiny/<model>.json, made by
 * scripts/reference/make_golden.py tiny).
 *
 *   test_tiny ROOT GOLDEN.json
 * Every prompt position's logits within relative L2 1e-4 of HF (the prompts run together, some
 * prefilled whole, some in chunks of 7 or 1, joining at different steps), and 16 greedy tokens
 * identical. */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend_cpu.h"
#include "driver.h"
#include "golden.h"

#define BLOCK 8

static uint64_t fnv_file(uint64_t h, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 0x100000001B3ull;
    fclose(f);
    return h;
}

static int is_safetensors(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 12 && !strcmp(d->d_name + n - 12, ".safetensors");
}

/* FNV-1a 64 of the weight files, as make_golden.py computes it. */
static uint64_t weights_hash(const char *path)
{
    uint64_t h = 0xCBF29CE484222325ull;
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return fnv_file(h, path);
    struct dirent **names;
    int n = scandir(path, &names, is_safetensors, alphasort);
    for (int i = 0; i < n; i++) {
        char f[4096 + 264];
        snprintf(f, sizeof f, "%s/%s", path, names[i]->d_name);
        h = fnv_file(h, f);
        free(names[i]);
    }
    if (n >= 0)
        free(names);
    return h;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ROOT GOLDEN.json\n", argv[0]);
        return 2;
    }
    json_t *doc = golden_json(argv[2]);
    size_t nf;
    float *all = golden_logits(argv[2], doc, &nf);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], json_string_value(json_object_get(doc, "model")));
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, weights_hash(path));
    const char *want = json_string_value(json_object_get(doc, "weights_fnv1a64"));
    if (!want || strcmp(want, hash)) {
        fprintf(stderr, "FAIL: %s changed since its golden file was made (weights hash %s, golden %s): "
                        "rerun scripts/reference/make_golden.py tiny\n", path, hash, want ? want : "none");
        return 1;
    }
    vesta_error e = {0};
    vesta_model_file *mf = vesta_model_file_open(path, &e);
    if (!mf) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        return 1;
    }
    vesta_backend_options o;
    vesta_backend_options_init(&o);
    o.max_num_batched_tokens = 64; /* < the longest prompt: it must be split */
    o.max_model_len = 256;
    o.block_size = BLOCK;
    o.num_threads = 0; /* all cores: races show up with many threads */
    vesta_backend *be = vesta_backend_cpu_create(mf, &o, &e);
    if (!be) {
        fprintf(stderr, "FAIL: create: %s\n", e.msg);
        return 1;
    }
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
    drv_init(&d, be, 200, BLOCK, o.max_num_batched_tokens);
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
