/* Engine tests on the mock backend: outputs equal a direct reference computation for many
 * configurations (prefix caching on/off, chunk sizes, sequence caps, block counts that force
 * preemption, staggered arrivals); budgets per step; chunked prefill; abort; n > 1 sharing;
 * backend failure; request validation and KV planning errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_backend.h"
#include "sampler.h"
#include "vesta/engine.h"

#include "vesta_test.h"

enum { VOCAB = 50, EOS = 1, MAX_LEN = 128, MAX_REQ = 16, MAX_N = 3 };

typedef struct req_spec {
    char id[16];
    int32_t prompt[MAX_LEN];
    int num_prompt;
    vesta_sampling_params sp;
    int lora_id; /* 0 = base model */
} req_spec;

typedef struct result {
    int32_t tokens[MAX_N][MAX_LEN];
    int num[MAX_N];
    vesta_finish_reason finish[MAX_N];
    int cached[MAX_N];
    int first_logprob_top[MAX_N];
} result;

/* The tokens a request must produce, computed without the engine: sample from the mock's logits
 * of the whole context, with the documented per-sequence seeds and stop rules. */
static void reference(const req_spec *r, result *want)
{
    vesta_sampler_scratch *s = vesta_sampler_scratch_create(VOCAB, NULL);
    float logits[VOCAB];
    int32_t eos[1] = {EOS};
    for (int i = 0; i < r->sp.n; i++) {
        int32_t ctx[MAX_LEN];
        memcpy(ctx, r->prompt, (size_t)r->num_prompt * 4);
        int n = r->num_prompt, k = 0;
        want->finish[i] = VESTA_FINISH_NONE;
        while (want->finish[i] == VESTA_FINISH_NONE) {
            mock_logits(ctx, n, r->lora_id - 1, VOCAB, logits);
            vesta_sample_row row = {.params = &r->sp,
                                    .rng_seed = vesta_engine_seq_seed((uint64_t)r->sp.seed, i),
                                    .rng_offset = (uint64_t)k, .prompt_ids = ctx,
                                    .num_prompt = r->num_prompt, .output_ids = ctx + r->num_prompt,
                                    .num_output = k, .suppress_stop = k < r->sp.min_tokens,
                                    .eos_ids = eos, .num_eos = r->sp.ignore_eos ? 0 : 1};
            vesta_sample_result res;
            vesta_sampler_sample(logits, VOCAB, &row, &res, s, NULL);
            ctx[n++] = res.token;
            want->tokens[i][k++] = res.token;
            bool is_stop = false;
            for (int j = 0; j < r->sp.num_stop_token_ids; j++)
                is_stop |= res.token == r->sp.stop_token_ids[j];
            if (n >= MAX_LEN || k >= r->sp.max_tokens)
                want->finish[i] = VESTA_FINISH_LENGTH;
            else if (k >= r->sp.min_tokens && ((!r->sp.ignore_eos && res.token == EOS) || is_stop))
                want->finish[i] = VESTA_FINISH_STOP;
        }
        want->num[i] = k;
    }
    vesta_sampler_scratch_release(s);
}

static int make_workload(req_spec *w)
{
    uint64_t st = 77;
    int32_t shared[40];
    for (int i = 0; i < 40; i++)
        shared[i] = 2 + (int32_t)(vesta_rng_mix(++st) % (VOCAB - 2));
    int n = 0;
    for (int r = 0; r < 12; r++) {
        req_spec *q = &w[n++];
        snprintf(q->id, sizeof(q->id), "r%d", r);
        vesta_sampling_params_init(&q->sp);
        int prefix = r % 3 == 0 ? 0 : (r % 3 == 1 ? 37 : 40);
        int tail = (int)(vesta_rng_mix(++st) % 30) + (r == 5 ? 0 : 1);
        if (r == 11)
            tail = 0, prefix = 40; /* identical to the other 40-token prompts: a full hit */
        memcpy(q->prompt, shared, (size_t)prefix * 4);
        for (int i = 0; i < tail; i++)
            q->prompt[prefix + i] = 2 + (int32_t)(vesta_rng_mix(++st) % (VOCAB - 2));
        q->num_prompt = prefix + tail;
        if (q->num_prompt == 0)
            q->prompt[q->num_prompt++] = 3;
        q->sp.max_tokens = 8 + r * 2;
        q->sp.seed = 1000 + r;
        switch (r % 6) {
        case 0: q->sp.temperature = 0; break;
        case 1: q->sp.temperature = 0.8f; q->sp.top_p = 0.9f; q->sp.n = 3; break;
        case 2: q->sp.temperature = 0; q->sp.min_tokens = 4; q->sp.stop_token_ids[0] = 7;
                q->sp.num_stop_token_ids = 1; break;
        case 3: q->sp.temperature = 1.0f; q->sp.ignore_eos = true; q->sp.repetition_penalty = 1.2f;
                q->sp.n = 2; break;
        case 4: q->sp.temperature = 0.7f; q->sp.top_k = 5; q->sp.logprobs = 2; break;
        case 5: q->sp.temperature = 0; q->sp.presence_penalty = 0.5f; q->sp.n = 2; break;
        }
    }
    return n;
}

typedef struct variant {
    bool caching;
    int budget, max_seqs, block_size, blocks; /* blocks 0 = plan from the budget */
    bool staggered;
    int max_loras; /* > 0: LoRA on, with the adapters below */
    const vesta_lora_spec *loras;
    int n_loras;
} variant;

static vesta_engine *make_engine(const variant *v, mock_backend **mout, int fail_at_step)
{
    mock_options mo = {.vocab_size = VOCAB,
                       .eos_id = EOS,
                       .max_position_embeddings = MAX_LEN,
                       .kv_budget_bytes = (size_t)1 << 20,
                       .max_num_batched_tokens = v->budget,
                       .max_num_seqs = v->max_seqs,
                       .fail_at_step = fail_at_step,
                       .max_loras = v->max_loras};
    mock_backend *m = mock_backend_create(&mo);
    vesta_engine_config cfg;
    vesta_engine_config_init(&cfg);
    cfg.enable_prefix_caching = v->caching;
    cfg.max_num_batched_tokens = v->budget;
    cfg.max_num_seqs = v->max_seqs;
    cfg.block_size = v->block_size;
    cfg.num_gpu_blocks_override = v->blocks;
    cfg.enable_lora = v->max_loras > 0;
    cfg.max_loras = v->max_loras;
    cfg.lora_modules = v->loras;
    cfg.num_lora_modules = v->n_loras;
    vesta_error err = {0};
    vesta_engine *e = vesta_engine_create_with_backend(&cfg, mock_backend_base(m), &err);
    if (e == NULL)
        fprintf(stderr, "engine create: %s\n", err.msg);
    if (mout)
        *mout = m;
    return e;
}

static int find_spec(const req_spec *w, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(w[i].id, id) == 0)
            return i;
    return -1;
}

static void collect(const vesta_step_output *out, const req_spec *w, int n, result *res)
{
    for (int i = 0; i < out->count; i++) {
        const vesta_seq_output *o = &out->items[i];
        int r = find_spec(w, n, o->request_id);
        CHECK(r >= 0);
        if (r < 0)
            continue;
        result *x = &res[r];
        for (int j = 0; j < o->num_new; j++)
            x->tokens[o->seq_index][x->num[o->seq_index]++] = o->new_token_ids[j];
        CHECK(o->num_output_tokens == x->num[o->seq_index]);
        CHECK((o->new_logprobs != NULL) == (o->num_new > 0 && w[r].sp.logprobs >= 0));
        if (o->new_logprobs)
            CHECK(o->new_logprobs->num_top == w[r].sp.logprobs);
        if (o->finish != VESTA_FINISH_NONE) {
            CHECK(x->finish[o->seq_index] == VESTA_FINISH_NONE);
            x->finish[o->seq_index] = o->finish;
        }
        x->cached[o->seq_index] = o->num_cached_tokens;
    }
}

static void run_variant(const variant *v, const req_spec *w, int n, const result *want)
{
    mock_backend *m;
    vesta_engine *e = make_engine(v, &m, 0);
    CHECK(e != NULL);
    if (!e)
        return;
    result *got = calloc((size_t)n, sizeof(result));
    vesta_error err = {0};
    int added = v->staggered ? n / 2 : n, steps = 0;
    for (int i = 0; i < added; i++)
        CHECK(vesta_engine_add_request_lora(e, w[i].id, w[i].prompt, w[i].num_prompt, &w[i].sp, w[i].lora_id, &err) ==
              VESTA_OK);
    while (vesta_engine_has_unfinished(e) || added < n) {
        if (added < n && steps % 3 == 2) {
            CHECK(vesta_engine_add_request_lora(e, w[added].id, w[added].prompt, w[added].num_prompt, &w[added].sp,
                                                w[added].lora_id, &err) == VESTA_OK);
            added++;
        }
        vesta_step_output out;
        vesta_status st = vesta_engine_step(e, &out, &err);
        if (st != VESTA_OK) {
            fprintf(stderr, "step: %s\n", err.msg);
            CHECK(st == VESTA_OK);
            break;
        }
        collect(&out, w, n, got);
        if (++steps > 5000) {
            CHECK(!"engine does not finish");
            break;
        }
    }
    int bad = 0;
    for (int r = 0; r < n; r++) {
        for (int i = 0; i < w[r].sp.n; i++) {
            if (got[r].num[i] != want[r].num[i] || got[r].finish[i] != want[r].finish[i] ||
                memcmp(got[r].tokens[i], want[r].tokens[i], (size_t)want[r].num[i] * 4) != 0)
                bad++;
        }
    }
    vesta_engine_stats st;
    vesta_engine_get_stats(e, &st);
    if (bad)
        fprintf(stderr, "variant caching=%d budget=%d seqs=%d bs=%d blocks=%d stagger=%d: %d "
                "sequences differ from the reference\n", v->caching, v->budget, v->max_seqs,
                v->block_size, v->blocks, v->staggered, bad);
    CHECK(bad == 0);
    CHECK(st.num_blocks_free == st.num_blocks_total); /* everything returned */
    CHECK(st.num_running == 0 && st.num_waiting == 0);
    if (v->caching)
        CHECK(st.prefix_cache_hits > 0 && st.prefix_cache_hits <= st.prefix_cache_queries);
    else
        CHECK(st.prefix_cache_hits == 0);
    if (v->blocks > 0 && v->blocks <= MAX_LEN / v->block_size + 2 && v->max_seqs >= 4 && v->budget >= 16)
        CHECK(st.num_preemptions > 0);
    CHECK(mock_backend_max_step_tokens(m) <= v->budget);
    vesta_engine_destroy(e);
    free(got);
}

static void test_equivalence(void)
{
    req_spec *w = calloc(MAX_REQ, sizeof(req_spec));
    result *want = calloc(MAX_REQ, sizeof(result));
    int n = make_workload(w);
    for (int r = 0; r < n; r++)
        reference(&w[r], &want[r]);
    int budgets[] = {5, 16, 33, 4096}, seqs[] = {3, 8, 64}, bss[] = {4, 16};
    int runs = 0;
    for (int c = 0; c < 2; c++)
        for (int b = 0; b < 4; b++)
            for (int s = 0; s < 3; s++)
                for (int k = 0; k < 2; k++)
                    for (int tight = 0; tight < 2; tight++) {
                        variant v = {c == 1,           budgets[b], seqs[s], bss[k], tight ? MAX_LEN / bss[k] + 2 : 0,
                                     (b + s) % 2 == 1, 0,          NULL,    0};
                        run_variant(&v, w, n, want);
                        runs++;
                    }
    printf("equivalence: %d configurations checked against the reference\n", runs);
    free(w);
    free(want);
}

/* ---- chunked prefill and budgets ---- */

static void test_chunked_prefill(void)
{
    variant v = {true, 8, 4, 16, 0, false, 0, NULL, 0};
    mock_backend *m;
    vesta_engine *e = make_engine(&v, &m, 0);
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = 3;
    int32_t prompt[50];
    for (int i = 0; i < 50; i++)
        prompt[i] = 2 + i % 40;
    vesta_error err;
    CHECK(vesta_engine_add_request(e, "long", prompt, 50, &sp, &err) == VESTA_OK);
    int steps = 0, first = -1;
    while (vesta_engine_has_unfinished(e)) {
        vesta_step_output out;
        CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
        steps++;
        if (first < 0 && out.count > 0)
            first = steps;
    }
    CHECK(first == 7); /* ceil(50 / 8) chunks before the first token */
    CHECK(steps == 9);
    CHECK(mock_backend_max_step_tokens(m) == 8);
    vesta_engine_destroy(e);
}

/* ---- abort ---- */

static void test_abort(void)
{
    variant v = {true, 64, 2, 4, 0, false, 0, NULL, 0};
    vesta_engine *e = make_engine(&v, NULL, 0);
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.max_tokens = 50;
    sp.ignore_eos = true;
    int32_t prompt[30];
    for (int i = 0; i < 30; i++)
        prompt[i] = 2 + (i * 7) % 45;
    vesta_error err;
    CHECK(vesta_engine_add_request(e, "a", prompt, 30, &sp, &err) == VESTA_OK);
    prompt[0] = 9;
    CHECK(vesta_engine_add_request(e, "b", prompt, 30, &sp, &err) == VESTA_OK);
    prompt[0] = 10;
    CHECK(vesta_engine_add_request(e, "c", prompt, 30, &sp, &err) == VESTA_OK); /* waits: 2 seqs */
    CHECK(vesta_engine_add_request(e, "a", prompt, 30, &sp, &err) == VESTA_ERR_INVALID_ARG);
    vesta_step_output out;
    for (int i = 0; i < 3; i++)
        CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    vesta_engine_stats before, after;
    vesta_engine_get_stats(e, &before);
    CHECK(before.num_running == 2 && before.num_waiting == 1);
    CHECK(vesta_engine_abort(e, "b") == VESTA_OK);
    vesta_engine_get_stats(e, &after);
    /* b computed 32 tokens (blocks of 4: 8 blocks); they are back at once, before any step. */
    CHECK(after.num_blocks_free == before.num_blocks_free + 8);
    CHECK(after.num_running == 1);
    CHECK(vesta_engine_abort(e, "b") == VESTA_ERR_NOT_FOUND);
    CHECK(vesta_engine_abort(e, "c") == VESTA_OK); /* a waiting request */
    CHECK(vesta_engine_abort(e, "nope") == VESTA_ERR_NOT_FOUND);
    CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    int aborted = 0, a_tokens = 0;
    for (int i = 0; i < out.count; i++) {
        if (out.items[i].finish == VESTA_FINISH_ABORT) {
            aborted++;
            CHECK(strcmp(out.items[i].request_id, "b") == 0 || strcmp(out.items[i].request_id, "c") == 0);
            CHECK(out.items[i].num_new == 0);
        } else {
            a_tokens += strcmp(out.items[i].request_id, "a") == 0;
        }
    }
    CHECK(aborted == 2 && a_tokens == 1);
    /* The same id can be used again once its request is gone. */
    CHECK(vesta_engine_add_request(e, "b", prompt, 30, &sp, &err) == VESTA_OK);
    CHECK(vesta_engine_abort(e, "a") == VESTA_OK);
    CHECK(vesta_engine_abort(e, "b") == VESTA_OK);
    CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    CHECK(out.count == 2);
    CHECK(!vesta_engine_has_unfinished(e));
    vesta_engine_get_stats(e, &after);
    CHECK(after.num_blocks_free == after.num_blocks_total);
    vesta_engine_destroy(e);
}

/* ---- n > 1 shares the prompt's blocks ---- */

typedef struct share_probe {
    int checked, shared_ok;
    int prompt_len, block_size;
} share_probe;

static void share_hook(const vesta_batch *b, void *ud)
{
    share_probe *p = ud;
    if (b->num_seqs != 3 || b->num_tokens != 3)
        return; /* only steps where the three children decode */
    int full = p->prompt_len / p->block_size;
    bool same = true, distinct_tail = true;
    for (int i = 1; i < 3; i++) {
        for (int j = 0; j < full; j++)
            same &= b->block_tables[i * b->max_blocks_per_seq + j] == b->block_tables[j];
        distinct_tail &= b->block_tables[i * b->max_blocks_per_seq + full] != b->block_tables[full];
    }
    p->checked++;
    p->shared_ok += same && distinct_tail;
}

static void test_n_sharing(void)
{
    variant v = {false, 256, 8, 4, 0, false, 0, NULL, 0}; /* caching off: sharing must come from the fork */
    mock_backend *m;
    vesta_engine *e = make_engine(&v, &m, 0);
    share_probe probe = {0, 0, 22, 4};
    mock_backend_set_hook(m, share_hook, &probe);
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.n = 3;
    sp.seed = 5;
    sp.max_tokens = 6;
    sp.ignore_eos = true;
    int32_t prompt[22];
    for (int i = 0; i < 22; i++)
        prompt[i] = 2 + (i * 5) % 45;
    vesta_error err;
    CHECK(vesta_engine_add_request(e, "n3", prompt, 22, &sp, &err) == VESTA_OK);
    vesta_engine_stats st;
    vesta_step_output out;
    CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    CHECK(out.count == 3); /* the prompt's step samples all three first tokens */
    vesta_engine_get_stats(e, &st);
    /* 22 tokens = 5 full blocks + a partial one; shared: 5 + 3 partial copies = 8 blocks. */
    CHECK(st.num_blocks_total - st.num_blocks_free == 8);
    while (vesta_engine_has_unfinished(e))
        CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    CHECK(probe.checked > 0 && probe.shared_ok == probe.checked);
    vesta_engine_destroy(e);
}

/* ---- failures ---- */

static void test_backend_failure(void)
{
    variant v = {true, 64, 8, 4, 0, false, 0, NULL, 0};
    vesta_engine *e = make_engine(&v, NULL, 2);
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    sp.temperature = 0;
    sp.n = 2;
    int32_t prompt[5] = {2, 3, 4, 5, 6};
    vesta_error err;
    CHECK(vesta_engine_add_request(e, "x", prompt, 5, &sp, &err) == VESTA_OK);
    vesta_step_output out;
    CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    CHECK(vesta_engine_step(e, &out, &err) == VESTA_ERR_BACKEND);
    CHECK(strstr(err.msg, "on purpose") != NULL);
    int errors = 0;
    for (int i = 0; i < out.count; i++)
        errors += out.items[i].finish == VESTA_FINISH_ERROR;
    CHECK(errors == 2);
    CHECK(!vesta_engine_has_unfinished(e));
    /* Still usable. */
    CHECK(vesta_engine_add_request(e, "y", prompt, 5, &sp, &err) == VESTA_OK);
    while (vesta_engine_has_unfinished(e))
        CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
    vesta_engine_stats st;
    vesta_engine_get_stats(e, &st);
    CHECK(st.num_blocks_free == st.num_blocks_total);
    vesta_engine_destroy(e);
}

static void test_validation(void)
{
    variant v = {true, 64, 4, 16, 0, false, 0, NULL, 0};
    vesta_engine *e = make_engine(&v, NULL, 0);
    vesta_sampling_params sp;
    vesta_sampling_params_init(&sp);
    int32_t prompt[MAX_LEN] = {2, 3};
    vesta_error err;
    CHECK(vesta_engine_add_request(e, "e", prompt, 0, &sp, &err) == VESTA_ERR_INVALID_ARG);
    prompt[1] = VOCAB;
    CHECK(vesta_engine_add_request(e, "v", prompt, 2, &sp, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "vocabulary") != NULL);
    prompt[1] = 3;
    sp.max_tokens = MAX_LEN;
    CHECK(vesta_engine_add_request(e, "l", prompt, 2, &sp, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "maximum context length is 128") != NULL);
    sp.max_tokens = 4;
    sp.n = 5;
    CHECK(vesta_engine_add_request(e, "n", prompt, 2, &sp, &err) == VESTA_ERR_INVALID_ARG);
    sp.n = 1;
    sp.top_p = 0;
    CHECK(vesta_engine_add_request(e, "p", prompt, 2, &sp, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "top_p") != NULL);
    CHECK(!vesta_engine_has_unfinished(e));
    CHECK(vesta_engine_max_model_len(e) == MAX_LEN);
    CHECK(vesta_engine_model_config(e)->vocab_size == VOCAB);
    vesta_engine_destroy(e);
    /* A KV cache that cannot hold one max_model_len sequence: vLLM's refusal. */
    variant tiny = {true, 64, 4, 16, MAX_LEN / 16 - 1, false, 0, NULL, 0};
    mock_options mo = {.vocab_size = VOCAB, .eos_id = EOS, .max_position_embeddings = MAX_LEN,
                       .kv_budget_bytes = 1 << 20, .max_num_batched_tokens = 64, .max_num_seqs = 4};
    vesta_engine_config cfg;
    vesta_engine_config_init(&cfg);
    cfg.num_gpu_blocks_override = tiny.blocks;
    CHECK(vesta_engine_create_with_backend(&cfg, mock_backend_base(mock_backend_create(&mo)), &err) == NULL);
    CHECK(strstr(err.msg, "max seq len (128)") != NULL);
    CHECK(strstr(err.msg, "estimated maximum model length is 112") != NULL);
    cfg.num_gpu_blocks_override = 0;
    cfg.max_model_len = 256;
    CHECK(vesta_engine_create_with_backend(&cfg, mock_backend_base(mock_backend_create(&mo)), &err) == NULL);
    CHECK(strstr(err.msg, "max_model_len") != NULL);
    vesta_engine_destroy(NULL);
}

/* Requests without a seed differ from each other yet repeat with the same engine seed. */
/* Multi-LoRA scheduling on the mock: the workload's requests spread over the base model and three
 * adapters (tests/golden/models: the tiny-llama adapters). The mock fails a step holding more
 * adapters than max_loras or reading KV written under another adapter (a prefix-cache hit across
 * adapters), and its logits depend on the adapter, so the outputs must equal the reference. */
static void test_lora(const char *root)
{
    static const char *const names[] = {"lora-all", "lora-qv-rslora", "lora-mlp-regex"};
    vesta_lora_spec specs[3];
    for (int i = 0; i < 3; i++) {
        snprintf(specs[i].name, sizeof specs[i].name, "%s", names[i]);
        snprintf(specs[i].path, sizeof specs[i].path, "%s/tests/golden/models/%s", root, names[i]);
    }
    req_spec w[MAX_REQ];
    result want[MAX_REQ];
    int n = make_workload(w);
    for (int r = 0; r < n; r++) {
        w[r].lora_id = r % 4;
        memset(&want[r], 0, sizeof want[r]);
        reference(&w[r], &want[r]);
    }
    const variant vs[] = {
        {true, 64, 8, 8, 0, false, 1, specs, 3},  {true, 64, 8, 8, 0, true, 2, specs, 3},
        {true, 16, 4, 4, 0, false, 3, specs, 3},  {true, 64, 8, 8, 24, false, 2, specs, 3}, /* preemption */
        {false, 64, 8, 8, 0, false, 1, specs, 3},
    };
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) run_variant(&vs[i], w, n, want);

    /* ids and names; a request for an id with no adapter; LoRA off */
    vesta_engine *e = make_engine(&vs[0], NULL, 0);
    CHECK(e != NULL);
    if (e) {
        vesta_error err = {0};
        CHECK(vesta_engine_num_loras(e) == 3 && vesta_engine_lora_id(e, "lora-qv-rslora") == 2);
        CHECK(vesta_engine_lora_id(e, "") == 0 && vesta_engine_lora_id(e, "nope") == -1);
        CHECK(strcmp(vesta_engine_lora_name(e, 3), "lora-mlp-regex") == 0 && !vesta_engine_lora_name(e, 4));
        CHECK(vesta_engine_add_request_lora(e, "x", w[0].prompt, w[0].num_prompt, &w[0].sp, 4, &err) ==
              VESTA_ERR_NOT_FOUND);
        vesta_engine_destroy(e);
    }
    variant off = vs[0];
    off.max_loras = 0; /* adapters given, LoRA not enabled */
    CHECK(make_engine(&off, NULL, 0) == NULL);
    vesta_lora_spec missing = specs[0];
    snprintf(missing.path, sizeof missing.path, "%s/tests/golden/models/no-such-adapter", root);
    variant bad = vs[0];
    bad.loras = &missing;
    bad.n_loras = 1;
    CHECK(make_engine(&bad, NULL, 0) == NULL);
}

static void test_unseeded(void)
{
    int32_t toks[2][4];
    for (int run = 0; run < 2; run++) {
        variant v = {true, 64, 8, 4, 0, false, 0, NULL, 0};
        vesta_engine *e = make_engine(&v, NULL, 0);
        vesta_sampling_params sp;
        vesta_sampling_params_init(&sp);
        sp.max_tokens = 4;
        sp.ignore_eos = true;
        sp.n = 2;
        int32_t prompt[3] = {4, 5, 6};
        vesta_error err;
        CHECK(vesta_engine_add_request(e, "u", prompt, 3, &sp, &err) == VESTA_OK);
        int k[2] = {0, 0};
        while (vesta_engine_has_unfinished(e)) {
            vesta_step_output out;
            CHECK(vesta_engine_step(e, &out, &err) == VESTA_OK);
            for (int i = 0; i < out.count; i++)
                if (out.items[i].num_new && out.items[i].seq_index < 2 && run == 0)
                    toks[out.items[i].seq_index][k[out.items[i].seq_index]++] = out.items[i].new_token_ids[0];
                else if (out.items[i].num_new && run == 1)
                    CHECK(toks[out.items[i].seq_index][k[out.items[i].seq_index]++] == out.items[i].new_token_ids[0]);
        }
        vesta_engine_destroy(e);
    }
    CHECK(memcmp(toks[0], toks[1], sizeof(toks[0])) != 0);
}

/* Unset step limits take vLLM's defaults (its EngineArgs.get_batch_defaults): no CUDA device can be
 * queried in these tests, so "cuda" gets the values vLLM gives GPUs under 70 GiB. */
static void test_batch_defaults(void)
{
    int seqs = 0, tokens = 0;
    vesta_engine_batch_defaults("cpu", 0, VESTA_USAGE_OFFLINE, &seqs, &tokens);
    CHECK(seqs == 256 && tokens == 8192);
    seqs = tokens = 0;
    vesta_engine_batch_defaults("cuda", 0, VESTA_USAGE_SERVER, &seqs, &tokens);
    CHECK(seqs == 256 && tokens == 2048);
    seqs = tokens = 0;
    vesta_engine_batch_defaults("cuda", 0, VESTA_USAGE_OFFLINE, &seqs, &tokens);
    CHECK(seqs == 256 && tokens == 8192);
    seqs = 7, tokens = 0; /* set values stay */
    vesta_engine_batch_defaults("cpu", 0, VESTA_USAGE_SERVER, &seqs, &tokens);
    CHECK(seqs == 7 && tokens == 8192);
    seqs = 0, tokens = 100; /* the default sequence cap never exceeds the token budget */
    vesta_engine_batch_defaults("cpu", 0, VESTA_USAGE_OFFLINE, &seqs, &tokens);
    CHECK(seqs == 100 && tokens == 100);
    /* the engine resolves them and reports what it runs with */
    mock_options mo = {.vocab_size = VOCAB, .eos_id = EOS, .max_position_embeddings = MAX_LEN,
                       .kv_budget_bytes = 1 << 20, .max_num_batched_tokens = 64, .max_num_seqs = 4};
    vesta_engine_config cfg;
    vesta_engine_config_init(&cfg);
    CHECK(cfg.max_num_seqs == 0 && cfg.max_num_batched_tokens == 0);
    vesta_error err = {0};
    vesta_engine *e = vesta_engine_create_with_backend(&cfg, mock_backend_base(mock_backend_create(&mo)), &err);
    CHECK(e != NULL);
    if (e) {
        CHECK(vesta_engine_max_num_seqs(e) == 256 && vesta_engine_max_num_batched_tokens(e) == 8192);
        vesta_engine_destroy(e);
    }
    cfg.max_num_seqs = -1;
    CHECK(vesta_engine_create_with_backend(&cfg, mock_backend_base(mock_backend_create(&mo)), &err) == NULL);
}

int main(int argc, char **argv)
{
    test_batch_defaults();
    test_equivalence();
    test_chunked_prefill();
    test_abort();
    test_n_sharing();
    test_backend_failure();
    test_validation();
    test_unseeded();
    if (argc > 1) test_lora(argv[1]);
    if (failures)
        fprintf(stderr, "%d checks failed\n", failures);
    else
        printf("engine tests passed\n");
    return failures ? 1 : 0;
}
