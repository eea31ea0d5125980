/* --backend sim: a runner that paces tokens like a model would, without computing anything, so
 * the router can be load-tested with hundreds of workers on one machine.
 *
 * Timing: a step runs every 1/sim_tokens_per_second seconds and gives every running sequence one
 * token; a newly admitted request first "prefills" its prompt tokens that miss the prefix cache
 * at sim_prefill_tokens_per_second. Token ids are pseudo-random and deterministic (the request's
 * seed, or a hash of its id, and the sequence index). max_tokens, min_tokens, stop_token_ids,
 * max_model_len, n and abort behave as in the engine; there is no EOS. Logprobs, when asked,
 * are synthetic numbers with the right shape. The prefix cache is modelled with the real block
 * keys (vesta_block_hash_chain), so KV events and hit counters are meaningful for routing. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner.h"
#include "sim_cache.h"
#include "vesta/engine.h"
#include "vesta/prefix_hash.h"

typedef struct sim_seq {
    int num_output;
    vesta_finish_reason finish;
    bool reported; /* its final output was returned */
    uint64_t rng;
} sim_seq;

typedef struct sim_req {
    struct sim_req *next;
    char id[VESTA_PROTO_MAX_ID + 1];
    int32_t *prompt;
    int num_prompt;
    int num_cached;
    int32_t lora_id; /* block keys include it, as the engine's do */
    vesta_sampling_params sp;
    int64_t ready_at_us; /* prefill done */
    bool aborted;
    sim_seq *seqs;
} sim_req;

typedef struct sim_runner {
    runner base;
    double step_us, prefill_tokens_per_us;
    int step_delay_ms; /* every step also blocks this long: a slow engine step, for tests */
    bool prefix_caching;
    vesta_block_hash_extra hash_extra;
    vesta_lora_spec loras[VESTA_LORA_MAX_ADAPTERS]; /* names only: the simulator has no weights */
    int num_loras;
    int num_blocks;
    sim_cache *cache;
    sim_req *waiting, *waiting_tail, *running, *retired;
    int64_t next_step_us;
    vesta_engine_stats st;
    /* step output, valid until the next call */
    vesta_seq_output *outs;
    int32_t *out_tokens;
    vesta_sample_result *out_lps;
    int out_cap;
} sim_runner;

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void req_free(sim_req *q)
{
    if (!q)
        return;
    free(q->prompt);
    free(q->seqs);
    free(q);
}

static int blocks_of(const sim_runner *s, int tokens)
{
    return (tokens + s->base.block_size - 1) / s->base.block_size;
}

/* KV blocks in use: each running request's prompt once, plus each sequence's output. */
static int blocks_used(const sim_runner *s, int *num_seqs)
{
    int used = 0, seqs = 0;
    for (const sim_req *q = s->running; q; q = q->next) {
        used += blocks_of(s, q->num_prompt);
        for (int i = 0; i < q->sp.n; i++) {
            if (q->seqs[i].finish != VESTA_FINISH_NONE)
                continue;
            used += blocks_of(s, q->num_prompt + q->seqs[i].num_output) - blocks_of(s, q->num_prompt);
            seqs++;
        }
    }
    *num_seqs = seqs;
    return used;
}

static sim_req *find_req(sim_req *list, const char *id)
{
    for (; list; list = list->next)
        if (strcmp(list->id, id) == 0)
            return list;
    return NULL;
}

static int sim_lora_find(const runner *r, const char *name)
{
    const sim_runner *s = (const sim_runner *)r;
    if (name == NULL || name[0] == '\0') return 0;
    for (int i = 0; i < s->num_loras; i++)
        if (strcmp(s->loras[i].name, name) == 0) return i + 1;
    return -1;
}

static vesta_status sim_add(runner *r, const char *id, const int32_t *ids, int n, const vesta_sampling_params *sp,
                            int lora_id, vesta_error *err)
{
    sim_runner *s = (sim_runner *)r;
    if (lora_id < 0 || lora_id > s->num_loras)
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "no LoRA adapter with id %d", lora_id);
    vesta_status st = vesta_sampling_params_validate(sp, s->base.vocab_size, err);
    if (st)
        return st;
    if (n <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "empty prompt");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->base.vocab_size)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "prompt token id %d at %d is outside the vocabulary (%d)", ids[i],
                                   i, s->base.vocab_size);
    if ((int64_t)n + sp->max_tokens > s->base.max_model_len)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "This model's maximum context length is %d tokens. However, you "
                               "requested %lld tokens (%d in the messages, %d in the completion).",
                               s->base.max_model_len, (long long)n + sp->max_tokens, n,
                               sp->max_tokens);
    if (strlen(id) > VESTA_PROTO_MAX_ID || find_req(s->waiting, id) || find_req(s->running, id))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "duplicate or overlong request id");
    sim_req *q = calloc(1, sizeof *q);
    if (!q || !(q->prompt = malloc((size_t)n * sizeof *q->prompt)) ||
        !(q->seqs = calloc((size_t)sp->n, sizeof *q->seqs))) {
        req_free(q);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    }
    strcpy(q->id, id);
    memcpy(q->prompt, ids, (size_t)n * sizeof *ids);
    q->num_prompt = n;
    q->lora_id = lora_id;
    q->sp = *sp;
    uint64_t base = sp->seed >= 0 ? (uint64_t)sp->seed : hash_str(id);
    for (int i = 0; i < sp->n; i++)
        q->seqs[i].rng = mix64(base + (uint64_t)i * 0x632be59bd9b4e019ull);
    if (s->waiting_tail)
        s->waiting_tail->next = q;
    else
        s->waiting = q;
    s->waiting_tail = q;
    return VESTA_OK;
}

static vesta_status sim_abort(runner *r, const char *id)
{
    sim_runner *s = (sim_runner *)r;
    sim_req *q = find_req(s->running, id);
    if (!q)
        q = find_req(s->waiting, id);
    if (!q || q->aborted)
        return VESTA_ERR_NOT_FOUND;
    q->aborted = true;
    return VESTA_OK;
}

/* Moves waiting requests into running while sequences and blocks allow (FIFO, no skipping). */
static void admit(sim_runner *s, int64_t now)
{
    int seqs, used = blocks_used(s, &seqs);
    while (s->waiting) {
        sim_req *q = s->waiting;
        int need = blocks_of(s, q->num_prompt) + q->sp.n;
        if (!q->aborted && s->running &&
            (seqs + q->sp.n > s->base.max_num_seqs || used + need > s->num_blocks))
            break;
        s->waiting = q->next;
        if (!s->waiting)
            s->waiting_tail = NULL;
        q->next = s->running;
        s->running = q;
        seqs += q->sp.n;
        used += need;
        if (q->aborted)
            continue;
        int nkeys = q->num_prompt / s->base.block_size;
        if (s->prefix_caching && nkeys > 0) {
            uint64_t *keys = malloc((size_t)nkeys * sizeof *keys);
            if (keys) {
                const vesta_block_hash_extra extra = {s->hash_extra.salt, q->lora_id};
                vesta_block_hash_chain(q->prompt, q->num_prompt, s->base.block_size, &extra, keys, nkeys);
                int hit = sim_cache_match(s->cache, keys, nkeys);
                /* vLLM recomputes the last prompt token even on a full hit. */
                q->num_cached = hit * s->base.block_size;
                if (q->num_cached == q->num_prompt)
                    q->num_cached -= s->base.block_size;
                sim_cache_touch(s->cache, keys, nkeys, vesta_block_hash_root(&s->hash_extra));
                free(keys);
            }
            s->st.prefix_cache_queries += (uint64_t)q->num_prompt;
            s->st.prefix_cache_hits += (uint64_t)q->num_cached;
        }
        s->st.prompt_tokens_total += (uint64_t)q->num_prompt;
        q->ready_at_us = now + (int64_t)((q->num_prompt - q->num_cached) / s->prefill_tokens_per_us);
    }
}

static int reserve_outputs(sim_runner *s, int n)
{
    if (n <= s->out_cap)
        return 0;
    int cap = n * 2;
    vesta_seq_output *o = realloc(s->outs, (size_t)cap * sizeof *o);
    if (!o)
        return -1;
    s->outs = o;
    int32_t *t = realloc(s->out_tokens, (size_t)cap * sizeof *t);
    if (!t)
        return -1;
    s->out_tokens = t;
    vesta_sample_result *l = realloc(s->out_lps, (size_t)cap * sizeof *l);
    if (!l)
        return -1;
    s->out_lps = l;
    s->out_cap = cap;
    return 0;
}

/* One synthetic token for sequence i of q. */
static void next_token(sim_runner *s, sim_req *q, int i, vesta_seq_output *o, int32_t *tok,
                       vesta_sample_result *lp)
{
    sim_seq *sq = &q->seqs[i];
    sq->rng = mix64(sq->rng);
    *tok = (int32_t)(sq->rng % (uint64_t)s->base.vocab_size);
    sq->num_output++;
    o->num_new = 1;
    o->new_token_ids = tok;
    o->stop_token = -1;
    if (sq->num_output > q->sp.min_tokens)
        for (int k = 0; k < q->sp.num_stop_token_ids; k++)
            if (q->sp.stop_token_ids[k] == *tok) {
                sq->finish = VESTA_FINISH_STOP;
                o->stop_token = *tok;
            }
    if (sq->finish == VESTA_FINISH_NONE &&
        (sq->num_output >= q->sp.max_tokens || q->num_prompt + sq->num_output >= s->base.max_model_len))
        sq->finish = VESTA_FINISH_LENGTH;
    if (q->sp.logprobs >= 0) {
        memset(lp, 0, sizeof *lp);
        lp->token = *tok;
        lp->logprob = -(float)((sq->rng >> 20) % 1000) / 250.0f;
        lp->num_top = q->sp.logprobs;
        for (int j = 0; j < lp->num_top; j++) {
            lp->top_ids[j] = (int32_t)((*tok + j) % s->base.vocab_size);
            lp->top_logprobs[j] = lp->logprob - (float)j;
        }
        o->new_logprobs = lp;
    }
    s->st.generation_tokens_total++;
}

static vesta_status sim_step(runner *r, vesta_step_output *out, vesta_error *err)
{
    sim_runner *s = (sim_runner *)r;
    if (s->step_delay_ms > 0) {
        struct timespec ts = {s->step_delay_ms / 1000, (long)(s->step_delay_ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0) /* a signal does not cut the step short */
            ;
    }
    int64_t now = worker_now_us();
    while (s->retired) {
        sim_req *q = s->retired;
        s->retired = q->next;
        req_free(q);
    }
    admit(s, now);
    int total = 0;
    for (sim_req *q = s->running; q; q = q->next)
        total += q->sp.n;
    if (reserve_outputs(s, total + 1))
        return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    int n = 0;
    for (sim_req *q = s->running; q; q = q->next) {
        bool ready = now >= q->ready_at_us;
        for (int i = 0; i < q->sp.n; i++) {
            sim_seq *sq = &q->seqs[i];
            if (sq->reported || (!q->aborted && !ready))
                continue;
            vesta_seq_output *o = &s->outs[n];
            memset(o, 0, sizeof *o);
            o->request_id = q->id;
            o->seq_index = i;
            o->stop_token = -1;
            if (q->aborted && sq->finish == VESTA_FINISH_NONE)
                sq->finish = VESTA_FINISH_ABORT;
            else if (sq->finish == VESTA_FINISH_NONE)
                next_token(s, q, i, o, &s->out_tokens[n], &s->out_lps[n]);
            o->finish = sq->finish;
            o->num_prompt_tokens = q->num_prompt;
            o->num_output_tokens = sq->num_output;
            o->num_cached_tokens = q->num_cached;
            sq->reported = sq->finish != VESTA_FINISH_NONE;
            n++;
        }
    }
    /* Requests whose every sequence is reported retire (freed at the next call). */
    for (sim_req **link = &s->running; *link;) {
        sim_req *q = *link;
        bool done = true;
        for (int i = 0; i < q->sp.n; i++)
            done = done && q->seqs[i].reported;
        if (done) {
            *link = q->next;
            q->next = s->retired;
            s->retired = q;
        } else {
            link = &q->next;
        }
    }
    s->st.steps++;
    s->next_step_us = now + (int64_t)s->step_us;
    out->count = n;
    out->items = s->outs;
    return VESTA_OK;
}

static bool sim_has_unfinished(const runner *r)
{
    const sim_runner *s = (const sim_runner *)r;
    return s->running || s->waiting;
}

static int64_t sim_ready_in_us(const runner *r)
{
    const sim_runner *s = (const sim_runner *)r;
    int64_t now = worker_now_us();
    int64_t due = s->next_step_us;
    bool any_ready = false, any_abort = false;
    int64_t first_prefill = INT64_MAX;
    for (const sim_req *q = s->running; q; q = q->next) {
        any_abort |= q->aborted;
        if (q->ready_at_us <= now)
            any_ready = true;
        else if (q->ready_at_us < first_prefill)
            first_prefill = q->ready_at_us;
    }
    for (const sim_req *q = s->waiting; q; q = q->next)
        any_abort |= q->aborted;
    if (any_abort || (s->waiting && !s->running))
        return 0;
    if (!any_ready && first_prefill != INT64_MAX && first_prefill > due)
        due = first_prefill;
    return due > now ? due - now : 0;
}

static void sim_stats(const runner *r, vesta_engine_stats *st)
{
    const sim_runner *s = (const sim_runner *)r;
    int seqs;
    int used = blocks_used(s, &seqs);
    *st = s->st;
    st->num_running = seqs;
    st->num_waiting = 0;
    for (const sim_req *q = s->waiting; q; q = q->next)
        st->num_waiting += q->sp.n;
    st->num_blocks_total = s->num_blocks;
    st->num_blocks_free = used < s->num_blocks ? s->num_blocks - used : 0;
    st->kv_usage = s->num_blocks ? (double)(used < s->num_blocks ? used : s->num_blocks) / s->num_blocks
                                 : 0.0;
}

static int sim_drain_kv(runner *r, vesta_kv_event *out, int max, uint64_t *num_dropped)
{
    return sim_cache_drain(((sim_runner *)r)->cache, out, max, num_dropped);
}

static void free_list(sim_req *q)
{
    while (q) {
        sim_req *next = q->next;
        req_free(q);
        q = next;
    }
}

static void sim_destroy(runner *r)
{
    sim_runner *s = (sim_runner *)r;
    free_list(s->waiting);
    free_list(s->running);
    free_list(s->retired);
    sim_cache_destroy(s->cache);
    free(s->outs);
    free(s->out_tokens);
    free(s->out_lps);
    free(s);
}

static const runner_ops sim_ops = {sim_add,         sim_lora_find, sim_abort,    sim_step,   sim_has_unfinished,
                                   sim_ready_in_us, sim_stats,     sim_drain_kv, sim_destroy};

runner *sim_runner_create(const vesta_config *cfg, vesta_error *err)
{
    sim_runner *s = calloc(1, sizeof *s);
    if (!s) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->base.ops = &sim_ops;
    s->base.max_model_len = cfg->max_model_len > 0 ? cfg->max_model_len : 4096;
    s->base.block_size = cfg->block_size;
    int seqs = cfg->max_num_seqs, tokens = cfg->max_num_batched_tokens;
    vesta_engine_batch_defaults("sim", 0, VESTA_USAGE_SERVER, &seqs, &tokens);
    s->base.max_num_seqs = seqs;
    s->base.vocab_size = cfg->sim_vocab_size;
    s->num_blocks = cfg->num_gpu_blocks_override > 0 ? cfg->num_gpu_blocks_override : 4096;
    s->step_us = 1e6 / cfg->sim_tokens_per_second;
    s->step_delay_ms = cfg->sim_step_delay_ms;
    s->prefill_tokens_per_us = cfg->sim_prefill_tokens_per_second / 1e6;
    s->prefix_caching = cfg->enable_prefix_caching;
    s->hash_extra.salt = (uint64_t)cfg->prefix_cache_salt;
    s->num_loras = vesta_config_lora_specs(cfg, s->loras, err);
    if (s->num_loras < 0) {
        sim_destroy(&s->base);
        return NULL;
    }
    s->cache = sim_cache_create(s->prefix_caching ? s->num_blocks : 0);
    if (!s->cache) {
        sim_destroy(&s->base);
        vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return &s->base;
}
