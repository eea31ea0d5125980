#include "driver.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

static void die(const char *what, const vesta_error *e)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, e ? e->msg : "");
    exit(1);
}

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s);
    if (!p)
        die("out of memory", NULL);
    return p;
}

void drv_init(drv *d, vesta_backend *be, int num_blocks, int block_size, int max_step_tokens)
{
    memset(d, 0, sizeof *d);
    d->be = be;
    d->vocab = be->config.vocab_size;
    d->block_size = block_size;
    d->num_blocks = num_blocks;
    d->max_step_tokens = max_step_tokens;
    vesta_error e = {0};
    if (be->ops->kv_alloc(be, num_blocks, block_size, &e) != VESTA_OK)
        die("kv_alloc", &e);
    d->free_blocks = xcalloc((size_t)num_blocks, sizeof(int32_t));
}

static void shuffle_pool(drv *d, uint64_t seed)
{
    for (int i = 0; i < d->num_blocks; i++)
        d->free_blocks[i] = i;
    for (int i = d->num_blocks - 1; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        int j = (int)((seed >> 33) % (uint64_t)(i + 1));
        int32_t t = d->free_blocks[i];
        d->free_blocks[i] = d->free_blocks[j];
        d->free_blocks[j] = t;
    }
    d->n_free = d->num_blocks;
}

void drv_free(drv *d) { free(d->free_blocks); }

void drv_seq_free(drv_seq *s)
{
    free(s->out);
    free(s->kept);
    free(s->prompt_rows);
    free(s->blocks);
}

double drv_rel_l2(const float *a, const float *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double dd = (double)a[i] - (double)b[i];
        num += dd * dd;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static bool finished(const drv_seq *s) { return s->n_out >= s->n_new; }

/* The token at absolute position p of s. */
static int32_t token_at(const drv_seq *s, int p) { return p < s->n_prompt ? s->prompt[p] : s->out[p - s->n_prompt]; }

static void grow_blocks(drv *d, drv_seq *s, int ctx)
{
    int need = (ctx + d->block_size - 1) / d->block_size;
    while (s->n_blocks < need) {
        if (d->n_free == 0)
            die("test KV pool exhausted", NULL);
        s->blocks[s->n_blocks++] = d->free_blocks[--d->n_free];
    }
}

int drv_run(drv *d, drv_seq *seqs, int n, uint64_t seed)
{
    shuffle_pool(d, seed);
    int max_ctx = 0, max_tokens = d->max_step_tokens;
    for (int i = 0; i < n; i++) {
        drv_seq *s = &seqs[i];
        s->out = xcalloc((size_t)s->n_new, sizeof(int32_t));
        s->kept = xcalloc((size_t)s->n_keep * (size_t)d->vocab, sizeof(float));
        if (s->prompt_logits)
            s->prompt_rows = xcalloc((size_t)s->n_prompt * (size_t)d->vocab, sizeof(float));
        int ctx = s->n_prompt + s->n_new;
        s->blocks = xcalloc((size_t)(ctx / d->block_size + 1), sizeof(int32_t));
        if (ctx > max_ctx)
            max_ctx = ctx;
    }
    int max_blocks = max_ctx / d->block_size + 1;
    int32_t *tok = xcalloc((size_t)max_tokens, 4), *pos = xcalloc((size_t)max_tokens, 4);
    int32_t *slot = xcalloc((size_t)max_tokens, 4), *sidx = xcalloc((size_t)max_tokens, 4);
    int32_t *qs = xcalloc((size_t)n + 1, 4), *ctxl = xcalloc((size_t)n, 4), *lora = xcalloc((size_t)n, 4);
    bool any_lora = false;
    for (int i = 0; i < n; i++) any_lora |= seqs[i].lora != 0;
    int32_t *bt = xcalloc((size_t)n * (size_t)max_blocks, 4);
    int *owner = xcalloc((size_t)max_tokens, sizeof(int)); /* sample row -> sequence */
    bool *is_prompt_row = xcalloc((size_t)max_tokens, sizeof(bool));
    int *row_pos = xcalloc((size_t)max_tokens, sizeof(int));
    vesta_sample_row *rows = xcalloc((size_t)max_tokens, sizeof *rows);
    vesta_sample_result *res = xcalloc((size_t)max_tokens, sizeof *res);
    float *logits = xcalloc((size_t)max_tokens * (size_t)d->vocab, sizeof(float));
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0.0f;
    sp.ignore_eos = true;
    int step = 0;
    for (;; step++) {
        bool any_left = false;
        int T = 0, S = 0, ns = 0;
        for (int i = 0; i < n; i++) {
            drv_seq *s = &seqs[i];
            if (finished(s))
                continue;
            any_left = true;
            if (s->start_step > step)
                continue;
            int first = s->n_cached, count;
            bool prefill = first < s->n_prompt;
            if (prefill) {
                count = s->n_prompt - first;
                if (s->chunk > 0 && count > s->chunk)
                    count = s->chunk;
            } else {
                count = 1;
            }
            if (count > max_tokens)
                count = max_tokens; /* a whole prompt over the step budget is split */
            if (T + count > max_tokens)
                continue; /* no budget left this step */
            int ctx = first + count;
            grow_blocks(d, s, ctx);
            for (int k = 0; k < max_blocks; k++)
                bt[(size_t)ns * max_blocks + k] = k < s->n_blocks ? s->blocks[k] : -1;
            qs[ns] = T;
            ctxl[ns] = ctx;
            lora[ns] = s->lora - 1;
            for (int k = 0; k < count; k++) {
                int p = first + k;
                tok[T + k] = token_at(s, p);
                pos[T + k] = p;
                slot[T + k] = s->blocks[p / d->block_size] * d->block_size + p % d->block_size;
                bool last = p == ctx - 1 && ctx >= s->n_prompt;
                if (last || (s->prompt_logits && p < s->n_prompt)) {
                    sidx[S] = T + k;
                    owner[S] = i;
                    row_pos[S] = p;
                    is_prompt_row[S] = !last;
                    rows[S] = (vesta_sample_row){.params = &sp, .rng_offset = (uint64_t)s->n_out,
                                                 .prompt_ids = s->prompt, .num_prompt = s->n_prompt,
                                                 .output_ids = s->out, .num_output = s->n_out};
                    S++;
                }
            }
            s->n_cached = ctx;
            T += count;
            ns++;
        }
        if (!any_left)
            break;
        if (step > 100000)
            die("driver: no progress", NULL);
        qs[ns] = T;
        int max_ctx_step = 0;
        for (int k = 0; k < ns; k++)
            max_ctx_step = ctxl[k] > max_ctx_step ? ctxl[k] : max_ctx_step;
        vesta_batch b = {.num_tokens = T,
                         .token_ids = tok,
                         .positions = pos,
                         .slot_mapping = slot,
                         .num_seqs = ns,
                         .query_start = qs,
                         .context_lens = ctxl,
                         .block_tables = bt,
                         .max_blocks_per_seq = max_blocks,
                         .max_context_len = max_ctx_step,
                         .lora_slots = any_lora ? lora : NULL,
                         .num_samples = S,
                         .sample_token_index = sidx,
                         .sample_rows = rows};
        vesta_error e = {0};
        if (T > 0 && d->be->ops->execute(d->be, &b, res, logits, &e) != VESTA_OK)
            die("execute", &e);
        for (int k = 0; k < S; k++) {
            drv_seq *s = &seqs[owner[k]];
            const float *lg = logits + (size_t)k * d->vocab;
            if (s->prompt_logits && row_pos[k] < s->n_prompt)
                memcpy(s->prompt_rows + (size_t)row_pos[k] * d->vocab, lg, (size_t)d->vocab * sizeof(float));
            if (is_prompt_row[k])
                continue;
            for (int j = 0; j < s->n_keep; j++)
                if (s->keep_steps[j] == s->n_out)
                    memcpy(s->kept + (size_t)j * d->vocab, lg, (size_t)d->vocab * sizeof(float));
            int am = 0;
            for (int v = 1; v < d->vocab; v++)
                if (lg[v] > lg[am])
                    am = v;
            if (am != res[k].token)
                s->argmax_mismatch++;
            s->out[s->n_out++] = res[k].token;
        }
    }
    free(tok), free(pos), free(slot), free(sidx), free(qs), free(ctxl), free(lora), free(bt), free(owner);
    free(is_prompt_row), free(row_pos), free(rows), free(res), free(logits);
    return step;
}
