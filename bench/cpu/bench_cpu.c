/* Offline CPU throughput of the engine on a real model, beside the memory-bandwidth bound.
 *
 *   bench_cpu [MODEL]   (default: $VESTA_MODEL)   env: BENCH_TOKENS (32), BENCH_BATCHES ("1,32")
 *
 * For each batch size B: B greedy requests (distinct 32-token prompts, ignore_eos) each generate
 * BENCH_TOKENS tokens. Reported: decode tokens/s over the steps after every request got its first
 * token, and the bound B / (weight bytes read per decode step / memory bandwidth), where the
 * bandwidth is measured here as memcpy traffic (read + written) over 512 MiB and the bytes per step are the float32
 * weights every decode step streams (all layers' projections and the LM head; the embedding
 * table is only gathered). Not a test: nothing is asserted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vesta/engine.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Memory traffic per second of a large memcpy, counting bytes read + written (a decode step only
 * reads its weights, so bytes copied per second would understate what it can stream), best of 5. */
static double copy_bandwidth(void)
{
    size_t n = (size_t)512 << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b)
        return 0;
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t = now();
        memcpy(b, a, n);
        double bw = 2.0 * (double)n / (now() - t);
        best = bw > best ? bw : best;
        a[r] = b[n - 1 - r]; /* keep the copies observable */
    }
    free(a);
    free(b);
    return best;
}

static double weight_bytes_per_step(const vesta_model_config *c)
{
    double h = c->hidden_size, kv = (double)c->num_kv_heads * c->head_dim,
           q = (double)c->num_heads * c->head_dim, inter = c->intermediate_size;
    double per_layer = h * q + 2 * h * kv + q * h + 3 * h * inter + 2 * h;
    return 4.0 * (c->num_layers * per_layer + (double)c->vocab_size * h + h);
}

static int run_batch(vesta_engine *e, int batch, int tokens, int round, double *tps)
{
    const vesta_model_config *c = vesta_engine_model_config(e);
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = tokens;
    sp.ignore_eos = true;
    vesta_error err;
    for (int r = 0; r < batch; r++) {
        int32_t prompt[32];
        for (int i = 0; i < 32; i++)
            prompt[i] = (int32_t)((r * 7919 + i * 104729 + round * 31) % (c->vocab_size - 1000)) + 500;
        char id[32];
        snprintf(id, sizeof(id), "b%d-%d-%d", round, batch, r);
        if (vesta_engine_add_request(e, id, prompt, 32, &sp, &err) != VESTA_OK) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
    }
    int first = 0;
    long generated_after = 0;
    double t_first = 0;
    while (vesta_engine_has_unfinished(e)) {
        vesta_step_output out;
        if (vesta_engine_step(e, &out, &err) != VESTA_OK) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        for (int i = 0; i < out.count; i++) {
            if (out.items[i].num_output_tokens == 1 && out.items[i].num_new == 1)
                first++;
            else if (first >= batch)
                generated_after += out.items[i].num_new;
        }
        if (first >= batch && t_first == 0)
            t_first = now();
    }
    *tps = generated_after / (now() - t_first);
    return 0;
}

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : getenv("VESTA_MODEL");
    if (model == NULL) {
        fprintf(stderr, "usage: bench_cpu MODEL (or set VESTA_MODEL)\n");
        return 2;
    }
    int tokens = getenv("BENCH_TOKENS") ? atoi(getenv("BENCH_TOKENS")) : 32;
    const char *batches = getenv("BENCH_BATCHES") ? getenv("BENCH_BATCHES") : "1,32";
    vesta_engine_config cfg;
    vesta_engine_config_init(&cfg);
    cfg.model = model;
    cfg.max_model_len = 32 + tokens;
    cfg.backend_opts.cpu_kv_cache_bytes = (size_t)1 << 30;
    vesta_error err;
    double t = now();
    vesta_engine *e = vesta_engine_create(&cfg, &err);
    if (e == NULL) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    printf("model %s: loaded in %.1f s\n", model, now() - t);
    double bw = copy_bandwidth();
    double bytes = weight_bytes_per_step(vesta_engine_model_config(e));
    printf("memory bandwidth (memcpy, read + written) %.2f GB/s; float32 weights read per decode step %.1f MB\n", bw / 1e9,
           bytes / 1e6);
    printf("%-6s %-14s %-14s %s\n", "batch", "decode tok/s", "bound tok/s", "fraction");
    char *list = strdup(batches), *save = NULL;
    int round = 0;
    for (char *b = strtok_r(list, ",", &save); b; b = strtok_r(NULL, ",", &save), round++) {
        int batch = atoi(b);
        double tps = 0;
        if (batch < 1 || run_batch(e, batch, tokens, round, &tps) != 0)
            return 1;
        double bound = batch * bw / bytes;
        printf("%-6d %-14.1f %-14.1f %.2f\n", batch, tps, bound, tps / bound);
    }
    free(list);
    vesta_engine_destroy(e);
    return 0;
}
