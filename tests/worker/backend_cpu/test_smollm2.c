/* The CPU backend on the default model (SmolLM2-135M-Instruct, GGUF Q4_1) against Hugging Face
 * transformers' golden outputs (tests/golden/smollm2_greedy.json, made by
 * scripts/reference/make_golden.py), driven directly with hand-built batches.
 *
 *   test_smollm2 batched GOLDEN  all prompts in flight together: staggered starts, prefill chunk
 *                                sizes 1..33 and whole, mixed prefill + decode steps; greedy tokens
 *                                == golden, logits (prompt's last position and decode step 63)
 *                                within relative L2 1e-3 of golden
 *   test_smollm2 single GOLDEN   every third prompt alone, whole-prompt prefill: same checks, and
 *                                the logits equal the batched run's within relative L2 1e-4
 *   test_smollm2 chunked GOLDEN  the longest prompt prefilled in chunks of 1, 7, 16, 33: last-
 *                                position logits within 1e-4 of the whole-prompt prefill */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_cpu.h"
#include "driver.h"
#include "golden.h"

#define BLOCK 16
#define STEP_TOKENS 512

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct golden_prompt {
    const char *name;
    int32_t *prompt, *greedy;
    int n_prompt, n_greedy;
    int keep_steps[4];
    int n_keep;
    const float *logits[4];
    double margins[64];
} golden_prompt;

static vesta_backend *open_backend(vesta_model_file **mf)
{
    const char *path = getenv("VESTA_MODEL");
    if (!path || !*path) {
        fprintf(stderr, "FAIL: VESTA_MODEL is not set (scripts/fetch-model.sh fetches the model)\n");
        exit(1);
    }
    vesta_error e = {0};
    *mf = vesta_model_file_open(path, &e);
    if (!*mf) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        exit(1);
    }
    vesta_backend_options o;
    vesta_backend_options_init(&o);
    o.max_num_batched_tokens = STEP_TOKENS;
    o.max_model_len = 1024;
    o.block_size = BLOCK;
    vesta_backend *be = vesta_backend_cpu_create(*mf, &o, &e);
    if (!be) {
        fprintf(stderr, "FAIL: create: %s\n", e.msg);
        exit(1);
    }
    return be;
}

/* *all_logits receives the logits file (the prompts point into it). */
static int load_golden(const char *path, golden_prompt *gp, int max, int *vocab, float **all_logits)
{
    json_t *doc = golden_json(path);
    size_t nf;
    float *all = golden_logits(path, doc, &nf);
    *all_logits = all;
    *vocab = (int)json_integer_value(json_object_get(doc, "vocab_size"));
    json_t *prompts = json_object_get(doc, "prompts");
    int n = (int)json_array_size(prompts);
    if (n > max)
        n = max;
    for (int i = 0; i < n; i++) {
        json_t *p = json_array_get(prompts, (size_t)i);
        golden_prompt *g = &gp[i];
        g->name = strdup(json_string_value(json_object_get(p, "name")));
        g->prompt = golden_ids(p, "prompt_ids", &g->n_prompt);
        g->greedy = golden_ids(p, "greedy_ids", &g->n_greedy);
        json_t *lg = json_object_get(p, "logits");
        g->n_keep = (int)json_array_size(lg);
        for (int k = 0; k < g->n_keep && k < 4; k++) {
            json_t *o = json_array_get(lg, (size_t)k);
            g->keep_steps[k] = (int)json_integer_value(json_object_get(o, "step"));
            size_t off = (size_t)json_integer_value(json_object_get(o, "offset"));
            if (off + (size_t)*vocab > nf) {
                fprintf(stderr, "FAIL: %s: logits offset out of the file\n", path);
                exit(1);
            }
            g->logits[k] = all + off;
        }
        json_t *m = json_object_get(p, "margins");
        for (int k = 0; k < g->n_greedy && k < 64; k++)
            g->margins[k] = json_real_value(json_array_get(m, (size_t)k));
    }
    json_decref(doc);
    return n;
}

/* Greedy tokens identical and kept logits within 1e-3 (relative L2) of golden. */
static void check_vs_golden(const char *mode, const golden_prompt *g, const drv_seq *s, int vocab)
{
    int first_diff = -1;
    for (int k = 0; k < g->n_greedy; k++)
        if (s->out[k] != g->greedy[k]) {
            first_diff = k;
            break;
        }
    CHECK(first_diff < 0, "%s %s: greedy token %d is %d, HF says %d (HF top-2 margin there %.4f)", mode,
          g->name, first_diff, first_diff < 0 ? 0 : s->out[first_diff],
          first_diff < 0 ? 0 : g->greedy[first_diff], first_diff < 0 ? 0 : g->margins[first_diff]);
    CHECK(s->argmax_mismatch == 0, "%s %s: sampler token != argmax %d times", mode, g->name, s->argmax_mismatch);
    for (int k = 0; k < g->n_keep; k++) {
        double r = drv_rel_l2(s->kept + (size_t)k * vocab, g->logits[k], vocab);
        CHECK(r < 1e-3, "%s %s: step %d logits relative L2 error %.3g >= 1e-3", mode, g->name, g->keep_steps[k], r);
        printf("%s %s: step %d rel L2 %.3g\n", mode, g->name, g->keep_steps[k], r);
    }
}

static drv_seq seq_for(const golden_prompt *g)
{
    return (drv_seq){.prompt = g->prompt, .n_prompt = g->n_prompt, .n_new = g->n_greedy,
                     .keep_steps = g->keep_steps, .n_keep = g->n_keep};
}

static int num_blocks_for(const golden_prompt *gp, int n)
{
    int nb = 0;
    for (int i = 0; i < n; i++)
        nb += (gp[i].n_prompt + gp[i].n_greedy) / BLOCK + 1;
    return nb + 37; /* spare, so the shuffled pool leaves gaps */
}

static void run_batched(drv *d, golden_prompt *gp, int n, int vocab, drv_seq *seqs)
{
    static const int chunks[] = {0, 7, 16, 33, 1, 0, 16, 33, 7, 0};
    for (int i = 0; i < n; i++) {
        seqs[i] = seq_for(&gp[i]);
        seqs[i].chunk = chunks[i % 10];
        seqs[i].start_step = 3 * i; /* later ones prefill while earlier ones decode */
    }
    int steps = drv_run(d, seqs, n, 42);
    printf("batched: %d steps\n", steps);
    for (int i = 0; i < n; i++)
        check_vs_golden("batched", &gp[i], &seqs[i], vocab);
}

/* Every third prompt alone (a chat, a long plain text, the shortest: the batched run already
 * covers all of them against HF); the logits must also match the batched run's. */
static void run_single(drv *d, golden_prompt *gp, int n, int vocab)
{
    drv_seq batched[16];
    run_batched(d, gp, n, vocab, batched);
    for (int i = 0; i < n; i += 3) {
        drv_seq s = seq_for(&gp[i]);
        drv_run(d, &s, 1, 1000 + (uint64_t)i);
        check_vs_golden("single", &gp[i], &s, vocab);
        for (int k = 0; k < s.n_keep; k++) {
            double r = drv_rel_l2(s.kept + (size_t)k * vocab, batched[i].kept + (size_t)k * vocab, vocab);
            CHECK(r < 1e-4, "%s: step %d logits alone vs batched: relative L2 %.3g >= 1e-4", gp[i].name,
                  gp[i].keep_steps[k], r);
            printf("single vs batched %s: step %d rel L2 %.3g\n", gp[i].name, gp[i].keep_steps[k], r);
        }
        drv_seq_free(&s);
    }
    for (int i = 0; i < n; i++)
        drv_seq_free(&batched[i]);
}

/* The longest prompt prefilled in chunks: the last position's logits do not depend on the split. */
static void run_chunked(drv *d, golden_prompt *gp, int n, int vocab)
{
    int li = 0;
    for (int i = 1; i < n; i++)
        if (gp[i].n_prompt > gp[li].n_prompt)
            li = i;
    const golden_prompt *g = &gp[li];
    static const int step0[] = {0};
    drv_seq whole = {.prompt = g->prompt, .n_prompt = g->n_prompt, .n_new = 1, .keep_steps = step0, .n_keep = 1};
    drv_run(d, &whole, 1, 7);
    double r0 = drv_rel_l2(whole.kept, g->logits[0], vocab);
    CHECK(g->keep_steps[0] == 0 && r0 < 1e-3, "%s whole prefill vs golden: relative L2 %.3g", g->name, r0);
    CHECK(whole.out[0] == g->greedy[0], "%s whole prefill: token %d, HF %d", g->name, whole.out[0], g->greedy[0]);
    static const int chunks[] = {1, 7, 16, 33};
    for (int c = 0; c < 4; c++) {
        drv_seq s = whole;
        s.out = NULL;
        s.kept = s.prompt_rows = NULL;
        s.blocks = NULL;
        s.n_cached = s.n_out = s.n_blocks = 0;
        s.chunk = chunks[c];
        int steps = drv_run(d, &s, 1, 100 + (uint64_t)c);
        double r = drv_rel_l2(s.kept, whole.kept, vocab);
        printf("chunk %d (%d steps): rel L2 vs whole prefill %.3g\n", chunks[c], steps, r);
        CHECK(r < 1e-4, "%s chunk %d: relative L2 %.3g vs whole prefill >= 1e-4", g->name, chunks[c], r);
        CHECK(s.out[0] == whole.out[0], "%s chunk %d: token %d vs %d", g->name, chunks[c], s.out[0], whole.out[0]);
        drv_seq_free(&s);
    }
    drv_seq_free(&whole);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s batched|single|chunked GOLDEN.json\n", argv[0]);
        return 2;
    }
    golden_prompt gp[16];
    int vocab;
    float *all_logits;
    int n = load_golden(argv[2], gp, 16, &vocab, &all_logits);
    CHECK(n >= 8, "golden has %d prompts, want >= 8", n);
    vesta_model_file *mf;
    vesta_backend *be = open_backend(&mf);
    CHECK(be->config.vocab_size == vocab, "vocab %d vs golden %d", be->config.vocab_size, vocab);
    drv d;
    drv_init(&d, be, num_blocks_for(gp, n), BLOCK, STEP_TOKENS);
    if (!strcmp(argv[1], "batched")) {
        drv_seq seqs[16];
        run_batched(&d, gp, n, vocab, seqs);
        for (int i = 0; i < n; i++)
            drv_seq_free(&seqs[i]);
    } else if (!strcmp(argv[1], "single")) {
        run_single(&d, gp, n, vocab);
    } else if (!strcmp(argv[1], "chunked")) {
        run_chunked(&d, gp, n, vocab);
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    drv_free(&d);
    vesta_backend_destroy(be);
    vesta_model_file_close(mf);
    for (int i = 0; i < n; i++) {
        free((void *)gp[i].name);
        free(gp[i].prompt);
        free(gp[i].greedy);
    }
    free(all_logits);
    if (failures)
        fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
