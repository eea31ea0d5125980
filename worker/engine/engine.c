/* The engine: requests, steps (schedule -> flatten -> execute -> update), outputs, n > 1 forks,
 * stop conditions, statistics. Scheduling policy in scheduler.c, blocks in block_manager.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_internal.h"
#ifdef VESTA_HAVE_BACKEND_CUDA
#include "backend_cuda/backend_cuda.h"
#endif
#include "sampler.h"
#define XXH_INLINE_ALL
#include <xxhash.h>

struct vesta_engine {
    vesta_engine_config cfg;
    vesta_model_file *mf;
    vesta_backend *be;
    vesta_block_manager *bm;
    scheduler sched;
    int vocab, max_model_len, block_size, max_blocks_per_seq, num_blocks;
    int32_t eos_ids[VESTA_MAX_EOS_IDS];
    int num_eos;
    uint64_t rng_state;
    /* Batch buffers, sized at create for the largest step. */
    int32_t *token_ids, *positions, *slot_mapping, *query_start, *context_lens, *block_tables;
    int32_t *sample_token_index;
    vesta_sample_row *sample_rows;
    seq **sample_seq;
    vesta_sample_result *results;
    int32_t *copy_src, *copy_dst;
    /* Requests by id: chained hash table. */
    request **buckets;
    size_t num_buckets, num_requests;
    request *graveyard;
    seq **pending;               /* finished outside a step (abort), reported by the next step */
    int num_pending, cap_pending;
    vesta_seq_output *outs;
    seq **out_seqs;              /* [cap_outs]: the sequence behind each output */
    int cap_outs;
    vesta_lora_adapter **loras; /* [num_loras]: lora id i + 1 is loras[i], backend slot i */
    int num_loras;
    int32_t *lora_slots; /* [max_num_seqs] batch buffer, only with enable_lora */
    uint64_t prompt_tokens_total, generation_tokens_total, steps;
    double t_schedule, t_execute, t_update; /* seconds per step phase (vesta_engine_stats) */
};

void vesta_engine_config_init(vesta_engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = "cpu";
    cfg->block_size = 16;
    cfg->max_num_seqs = 0; /* vesta_engine_batch_defaults */
    cfg->max_num_batched_tokens = 0;
    cfg->usage = VESTA_USAGE_OFFLINE;
    cfg->max_model_len = 0;
    cfg->enable_prefix_caching = true;
    cfg->prefix_cache_salt = 0;
    cfg->num_gpu_blocks_override = 0;
    cfg->seed = 0;
    cfg->max_loras = 1;
    cfg->max_lora_rank = 16;
    vesta_backend_options_init(&cfg->backend_opts);
}

void vesta_engine_batch_defaults(const char *backend, int device, vesta_usage_context usage, int *max_num_seqs,
                                 int *max_num_batched_tokens)
{
    bool server = usage == VESTA_USAGE_SERVER;
    int seqs = 256, tokens = 8192;
    if (backend && strcmp(backend, "cuda") == 0) {
        tokens = server ? 2048 : 8192;
#ifdef VESTA_HAVE_BACKEND_CUDA
        size_t total = 0;
        char name[256] = "";
        vesta_error ignored = {0};
        /* vLLM: "setting large max_num_batched_tokens for A100 reduces throughput" (its PR 17885) */
        if (vesta_backend_cuda_device_query(device, &total, name, sizeof name, &ignored) == VESTA_OK &&
            total >= ((size_t)70 << 30) && strstr(name, "A100") == NULL && strstr(name, "a100") == NULL) {
            seqs = 1024;
            tokens = server ? 8192 : 16384;
        }
#else
        (void)device;
#endif
    }
    if (*max_num_batched_tokens <= 0)
        *max_num_batched_tokens = tokens;
    if (*max_num_seqs <= 0)
        *max_num_seqs = seqs < *max_num_batched_tokens ? seqs : *max_num_batched_tokens;
}

static void resolve_batch_limits(vesta_engine_config *c)
{
    vesta_engine_batch_defaults(c->backend ? c->backend : "cpu", c->backend_opts.device, c->usage, &c->max_num_seqs,
                                &c->max_num_batched_tokens);
}

const char *vesta_finish_reason_str(vesta_finish_reason r)
{
    switch (r) {
    case VESTA_FINISH_NONE: return "none";
    case VESTA_FINISH_STOP: return "stop";
    case VESTA_FINISH_LENGTH: return "length";
    case VESTA_FINISH_ABORT: return "abort";
    case VESTA_FINISH_ERROR: return "error";
    }
    return "unknown";
}

uint64_t vesta_engine_seq_seed(uint64_t request_seed, int seq_index)
{
    return vesta_rng_mix(vesta_rng_mix(request_seed) + (uint64_t)seq_index);
}

/* ---- request table ---- */

static size_t id_bucket(const vesta_engine *e, const char *id)
{
    return (size_t)(XXH3_64bits(id, strlen(id)) & (e->num_buckets - 1));
}

static request *find_request(const vesta_engine *e, const char *id)
{
    for (request *r = e->buckets[id_bucket(e, id)]; r; r = r->hnext)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static vesta_status grow_buckets(vesta_engine *e)
{
    size_t n = e->num_buckets * 2;
    request **nb = calloc(n, sizeof(request *));
    if (nb == NULL)
        return VESTA_ERR_NOMEM;
    request **old = e->buckets;
    size_t old_n = e->num_buckets;
    e->buckets = nb;
    e->num_buckets = n;
    for (size_t i = 0; i < old_n; i++) {
        for (request *r = old[i], *next; r; r = next) {
            next = r->hnext;
            size_t b = id_bucket(e, r->id);
            r->hnext = nb[b];
            nb[b] = r;
        }
    }
    free(old);
    return VESTA_OK;
}

static void unlink_request(vesta_engine *e, request *r)
{
    for (request **p = &e->buckets[id_bucket(e, r->id)]; *p; p = &(*p)->hnext) {
        if (*p == r) {
            *p = r->hnext;
            e->num_requests--;
            return;
        }
    }
}

static void request_free(request *r)
{
    if (r == NULL)
        return;
    if (r->seqs) {
        for (int i = 0; i < r->sp.n; i++) {
            free(r->seqs[i].tokens);
            free(r->seqs[i].block_table);
            free(r->seqs[i].keys);
        }
    }
    free(r->seqs);
    free(r->fork_blocks);
    free(r->id);
    free(r);
}

static void collect_garbage(vesta_engine *e)
{
    while (e->graveyard) {
        request *r = e->graveyard;
        e->graveyard = r->gnext;
        request_free(r);
    }
}

/* ---- create / destroy ---- */

static void *alloc_array(size_t n, size_t size, bool *ok)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        *ok = false;
    return p;
}

static vesta_status plan_kv(vesta_engine *e, vesta_error *err)
{
    const vesta_backend_ops *ops = e->be->ops;
    size_t block_bytes = ops->kv_block_bytes(e->be, e->block_size);
    if (block_bytes == 0)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "backend %s: KV block size is 0", ops->name);
    size_t budget = ops->kv_budget_bytes(e->be);
    long long nb = e->cfg.num_gpu_blocks_override > 0 ? e->cfg.num_gpu_blocks_override
                                                     : (long long)(budget / block_bytes);
    if (nb > INT_MAX / 2)
        nb = INT_MAX / 2;
    if (e->cfg.num_gpu_blocks_override > 0)
        budget = (size_t)nb * block_bytes;
    if (nb < e->max_blocks_per_seq) {
        double gib = 1024.0 * 1024.0 * 1024.0;
        long long est = nb * e->block_size;
        return vesta_error_set(
            err, VESTA_ERR_NOMEM,
            "To serve at least one request with the models's max seq len (%d), (%.2f GiB KV cache "
            "is needed, which is larger than the available KV cache memory (%.2f GiB). Based on "
            "the available memory, the estimated maximum model length is %lld. Try increasing "
            "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
            e->max_model_len, (double)e->max_blocks_per_seq * (double)block_bytes / gib,
            (double)budget / gib, est);
    }
    e->num_blocks = (int)nb;
    return ops->kv_alloc(e->be, e->num_blocks, e->block_size, err);
}

static vesta_status check_config(const vesta_engine_config *cfg, vesta_error *err)
{
    if (cfg->block_size < 1 || cfg->block_size > 1024)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "block_size must be in [1, 1024], got %d",
                               cfg->block_size);
    if (cfg->max_num_seqs < 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "max_num_seqs must be at least 1 (0: default), got %d",
                               cfg->max_num_seqs);
    if (cfg->max_num_batched_tokens < 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "max_num_batched_tokens must be at least 1 (0: default), got %d",
                               cfg->max_num_batched_tokens);
    if (cfg->max_model_len < 0 || cfg->num_gpu_blocks_override < 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "max_model_len and num_gpu_blocks_override must be >= 0");
    if (cfg->num_lora_modules < 0 || cfg->num_lora_modules > VESTA_LORA_MAX_ADAPTERS ||
        (cfg->num_lora_modules > 0 && cfg->lora_modules == NULL))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "lora_modules: 0 to %d adapters", VESTA_LORA_MAX_ADAPTERS);
    if (cfg->num_lora_modules > 0 && !cfg->enable_lora)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules needs --enable-lora");
    if (cfg->max_loras < 0 || cfg->max_loras > VESTA_LORA_MAX_ADAPTERS || cfg->max_lora_rank < 0 ||
        cfg->max_lora_rank > VESTA_LORA_MAX_RANK)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "max_loras must be in [1, %d], max_lora_rank in [1, %d]",
                               VESTA_LORA_MAX_ADAPTERS, VESTA_LORA_MAX_RANK);
    return VESTA_OK;
}

static int resolve_max_model_len(const vesta_engine_config *cfg, const vesta_model_config *mc,
                                 vesta_error *err)
{
    int derived = mc->max_position_embeddings;
    if (cfg->max_model_len == 0) {
        if (derived <= 0)
            vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                            "the model does not state max_position_embeddings: set max_model_len");
        return derived;
    }
    if (derived > 0 && cfg->max_model_len > derived) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                        "User-specified max_model_len (%d) is greater than the derived "
                        "max_model_len (max_position_embeddings=%d in the model's config)",
                        cfg->max_model_len, derived);
        return -1;
    }
    return cfg->max_model_len;
}

/* Reads every --lora-modules adapter and hands it to the backend as slot i (lora id i + 1). */
static vesta_status load_loras(vesta_engine *e, const vesta_engine_config *cfg, vesta_error *err)
{
    if (cfg->num_lora_modules == 0) return VESTA_OK;
    if (e->be->ops->lora_add == NULL)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "backend %s has no LoRA support", e->be->ops->name);
    e->loras = calloc((size_t)cfg->num_lora_modules, sizeof(*e->loras));
    if (e->loras == NULL) return vesta_error_set(err, VESTA_ERR_NOMEM, "engine: out of memory");
    for (int i = 0; i < cfg->num_lora_modules; i++) {
        const vesta_lora_spec *sp = &cfg->lora_modules[i];
        for (int j = 0; j < i; j++)
            if (strcmp(cfg->lora_modules[j].name, sp->name) == 0)
                return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--lora-modules: the name '%s' is given twice",
                                       sp->name);
        e->loras[i] = vesta_lora_adapter_load(sp, &e->be->config, e->cfg.max_lora_rank, err);
        if (e->loras[i] == NULL) return err ? err->code : VESTA_ERR_FORMAT;
        e->num_loras = i + 1;
        vesta_status st = e->be->ops->lora_add(e->be, i, e->loras[i], err);
        if (st != VESTA_OK) return st;
    }
    return VESTA_OK;
}

static vesta_engine *engine_init(const vesta_engine_config *cfg, vesta_backend *be,
                                 vesta_model_file *mf, vesta_error *err)
{
    vesta_engine *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        vesta_backend_destroy(be);
        vesta_model_file_close(mf);
        vesta_error_set(err, VESTA_ERR_NOMEM, "engine: out of memory");
        return NULL;
    }
    e->cfg = *cfg;
    e->cfg.model = NULL; /* not owned */
    e->cfg.backend = NULL;
    e->be = be;
    e->mf = mf;
    const vesta_model_config *mc = &be->config;
    e->vocab = mc->vocab_size;
    e->block_size = cfg->block_size;
    e->max_model_len = resolve_max_model_len(cfg, mc, err);
    if (e->max_model_len <= 0 || e->vocab <= 0) {
        if (e->vocab <= 0)
            vesta_error_set(err, VESTA_ERR_INVALID_ARG, "engine: vocab_size %d", e->vocab);
        vesta_engine_destroy(e);
        return NULL;
    }
    e->max_blocks_per_seq = (e->max_model_len + e->block_size - 1) / e->block_size;
    e->num_eos = mc->num_eos_token_ids < VESTA_MAX_EOS_IDS ? mc->num_eos_token_ids : VESTA_MAX_EOS_IDS;
    for (int i = 0; i < e->num_eos; i++)
        e->eos_ids[i] = mc->eos_token_ids[i];
    e->rng_state = cfg->seed;
    if (e->cfg.max_loras == 0) e->cfg.max_loras = 1;
    if (e->cfg.max_lora_rank == 0) e->cfg.max_lora_rank = 16;
    e->cfg.lora_modules = NULL; /* read here only */
    /* Adapters before the KV plan: on a GPU their weights come out of the same budget. */
    if (load_loras(e, cfg, err) != VESTA_OK || plan_kv(e, err) != VESTA_OK) {
        vesta_engine_destroy(e);
        return NULL;
    }
    e->bm = vesta_block_manager_create(e->num_blocks, e->block_size, cfg->enable_prefix_caching,
                                       cfg->kv_event_capacity, err);
    sched_config sc = {cfg->max_num_seqs, cfg->max_num_batched_tokens,
                       e->block_size,     e->max_blocks_per_seq,
                       e->cfg.max_loras,  e->num_loras > 0};
    if (e->bm == NULL || vesta_scheduler_init(&e->sched, &sc, e->bm, cfg->enable_prefix_caching,
                                              cfg->prefix_cache_salt, err) != VESTA_OK) {
        vesta_engine_destroy(e);
        return NULL;
    }
    bool ok = true;
    size_t T = (size_t)cfg->max_num_batched_tokens, S = (size_t)cfg->max_num_seqs;
    e->token_ids = alloc_array(T, sizeof(int32_t), &ok);
    e->positions = alloc_array(T, sizeof(int32_t), &ok);
    e->slot_mapping = alloc_array(T, sizeof(int32_t), &ok);
    e->query_start = alloc_array(S + 1, sizeof(int32_t), &ok);
    e->context_lens = alloc_array(S, sizeof(int32_t), &ok);
    e->block_tables = alloc_array(S * (size_t)e->max_blocks_per_seq, sizeof(int32_t), &ok);
    e->sample_token_index = alloc_array(S, sizeof(int32_t), &ok);
    e->sample_rows = alloc_array(S, sizeof(vesta_sample_row), &ok);
    e->sample_seq = alloc_array(S, sizeof(seq *), &ok);
    e->results = alloc_array(S, sizeof(vesta_sample_result), &ok);
    e->copy_src = alloc_array(S, sizeof(int32_t), &ok);
    e->copy_dst = alloc_array(S, sizeof(int32_t), &ok);
    if (cfg->enable_lora) e->lora_slots = alloc_array(S, sizeof(int32_t), &ok);
    e->num_buckets = 256;
    e->buckets = alloc_array(e->num_buckets, sizeof(request *), &ok);
    e->cap_outs = (int)S + 64;
    e->outs = alloc_array((size_t)e->cap_outs, sizeof(vesta_seq_output), &ok);
    e->out_seqs = alloc_array((size_t)e->cap_outs, sizeof(seq *), &ok);
    if (!ok) {
        vesta_engine_destroy(e);
        vesta_error_set(err, VESTA_ERR_NOMEM, "engine: cannot allocate the batch buffers");
        return NULL;
    }
    return e;
}

vesta_engine *vesta_engine_create_with_backend(const vesta_engine_config *cfg, vesta_backend *be,
                                               vesta_error *err)
{
    if (be == NULL) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "engine: no backend");
        return NULL;
    }
    if (check_config(cfg, err) != VESTA_OK) {
        vesta_backend_destroy(be);
        return NULL;
    }
    vesta_engine_config c = *cfg;
    resolve_batch_limits(&c);
    return engine_init(&c, be, NULL, err);
}

vesta_engine *vesta_engine_create(const vesta_engine_config *cfg, vesta_error *err)
{
    if (check_config(cfg, err) != VESTA_OK)
        return NULL;
    vesta_engine_config c = *cfg;
    resolve_batch_limits(&c);
    cfg = &c;
    if (cfg->model == NULL) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "engine: no model path given");
        return NULL;
    }
    vesta_model_file *mf = vesta_model_file_open(cfg->model, err);
    if (mf == NULL)
        return NULL;
    int mml = resolve_max_model_len(cfg, vesta_model_file_config(mf), err);
    if (mml <= 0) {
        vesta_model_file_close(mf);
        return NULL;
    }
    vesta_backend_options opts = cfg->backend_opts;
    opts.block_size = cfg->block_size;
    opts.max_num_seqs = cfg->max_num_seqs;
    opts.max_num_batched_tokens = cfg->max_num_batched_tokens;
    opts.max_model_len = mml;
    vesta_backend *be = vesta_backend_create(cfg->backend ? cfg->backend : "cpu", mf, &opts, err);
    if (be == NULL) {
        vesta_model_file_close(mf);
        return NULL;
    }
    return engine_init(cfg, be, mf, err);
}

void vesta_engine_destroy(vesta_engine *e)
{
    if (e == NULL)
        return;
    collect_garbage(e);
    if (e->buckets) {
        for (size_t i = 0; i < e->num_buckets; i++)
            for (request *r = e->buckets[i], *next; r; r = next) {
                next = r->hnext;
                request_free(r);
            }
    }
    /* Requests finished but not yet reported are no longer in the table. */
    for (int i = 0; i < e->num_pending; i++) {
        request *r = e->pending[i]->req;
        if (r->num_finished == r->sp.n) {
            bool first = true;
            for (int j = 0; j < i; j++)
                first &= e->pending[j]->req != r;
            if (first)
                request_free(r);
        }
    }
    vesta_scheduler_release(&e->sched);
    vesta_block_manager_destroy(e->bm);
    vesta_backend_destroy(e->be); /* before the adapters it may point into */
    for (int i = 0; i < e->num_loras; i++) vesta_lora_adapter_release(e->loras[i]);
    free(e->loras);
    free(e->lora_slots);
    vesta_model_file_close(e->mf);
    free(e->token_ids);
    free(e->positions);
    free(e->slot_mapping);
    free(e->query_start);
    free(e->context_lens);
    free(e->block_tables);
    free(e->sample_token_index);
    free(e->sample_rows);
    free(e->sample_seq);
    free(e->results);
    free(e->copy_src);
    free(e->copy_dst);
    free(e->buckets);
    free(e->pending);
    free(e->outs);
    free(e->out_seqs);
    free(e);
}

const vesta_model_config *vesta_engine_model_config(const vesta_engine *e)
{
    return &e->be->config;
}

int vesta_engine_max_model_len(const vesta_engine *e) { return e->max_model_len; }
int vesta_engine_max_num_seqs(const vesta_engine *e) { return e->cfg.max_num_seqs; }
int vesta_engine_max_num_batched_tokens(const vesta_engine *e) { return e->cfg.max_num_batched_tokens; }

int vesta_engine_num_loras(const vesta_engine *e) { return e->num_loras; }

int vesta_engine_lora_id(const vesta_engine *e, const char *name)
{
    if (name == NULL || name[0] == '\0') return 0;
    for (int i = 0; i < e->num_loras; i++)
        if (strcmp(e->loras[i]->name, name) == 0) return i + 1;
    return -1;
}

const char *vesta_engine_lora_name(const vesta_engine *e, int lora_id)
{
    return lora_id >= 1 && lora_id <= e->num_loras ? e->loras[lora_id - 1]->name : NULL;
}

/* ---- requests ---- */

static uint64_t next_random_seed(vesta_engine *e)
{
    e->rng_state += 0x9E3779B97F4A7C15ULL;
    return vesta_rng_mix(e->rng_state);
}

static vesta_status check_request(vesta_engine *e, const char *id, const int32_t *ids, int n,
                                  const vesta_sampling_params *sp, vesta_error *err)
{
    if (id == NULL || sp == NULL || (ids == NULL && n > 0))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "add_request: missing argument");
    vesta_status st = vesta_sampling_params_validate(sp, e->vocab, err);
    if (st != VESTA_OK)
        return st;
    if (n <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "request %s: the prompt is empty", id);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= e->vocab)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "request %s: prompt token %d (at %d) is outside the vocabulary "
                                   "[0, %d)", id, (int)ids[i], i, e->vocab);
    if ((long long)n + sp->max_tokens > e->max_model_len)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "This model's maximum context length is %d tokens. However, you "
                               "requested %lld tokens (%d in the prompt, %d in the completion). "
                               "Please reduce the length of the prompt or max_tokens.",
                               e->max_model_len, (long long)n + sp->max_tokens, n, sp->max_tokens);
    if (sp->n > e->cfg.max_num_seqs)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "request %s: n = %d exceeds max_num_seqs %d",
                               id, sp->n, e->cfg.max_num_seqs);
    int prompt_blocks = (n + e->block_size - 1) / e->block_size;
    int fork = n % e->block_size ? sp->n - 1 : 0;
    if ((long long)prompt_blocks + fork > e->num_blocks)
        return vesta_error_set(err, VESTA_ERR_LIMIT,
                               "request %s: n = %d sequences of a %d-token prompt need %d KV blocks, "
                               "the cache has %d", id, sp->n, n, prompt_blocks + fork, e->num_blocks);
    if (find_request(e, id) != NULL)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "request id %s is already in use", id);
    return VESTA_OK;
}

vesta_status vesta_engine_add_request(vesta_engine *e, const char *request_id,
                                      const int32_t *prompt_ids, int num_prompt,
                                      const vesta_sampling_params *sp, vesta_error *err)
{
    return vesta_engine_add_request_lora(e, request_id, prompt_ids, num_prompt, sp, 0, err);
}

vesta_status vesta_engine_add_request_lora(vesta_engine *e, const char *request_id, const int32_t *prompt_ids,
                                           int num_prompt, const vesta_sampling_params *sp, int lora_id,
                                           vesta_error *err)
{
    collect_garbage(e);
    vesta_status st = check_request(e, request_id, prompt_ids, num_prompt, sp, err);
    if (st != VESTA_OK)
        return st;
    if (lora_id < 0 || lora_id > e->num_loras)
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "request %s: no LoRA adapter with id %d (%d loaded)",
                               request_id, lora_id, e->num_loras);
    if (e->num_requests + 1 > e->num_buckets && grow_buckets(e) != VESTA_OK)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "engine: out of memory");
    request *r = calloc(1, sizeof(*r));
    int cap = num_prompt + sp->max_tokens;
    int nblk = (cap + e->block_size - 1) / e->block_size;
    bool ok = r != NULL;
    if (ok) {
        r->sp = *sp;
        r->lora_id = lora_id;
        r->num_prompt = num_prompt;
        r->forked = sp->n == 1;
        r->id = strdup(request_id);
        r->seqs = alloc_array((size_t)sp->n, sizeof(seq), &ok);
        r->fork_blocks = alloc_array((size_t)sp->n, sizeof(int32_t), &ok);
        ok = ok && r->id != NULL;
    }
    uint64_t seed = sp->seed >= 0 ? (uint64_t)sp->seed : next_random_seed(e);
    for (int i = 0; ok && i < sp->n; i++) {
        seq *q = &r->seqs[i];
        q->req = r;
        q->index = i;
        q->stop_token = -1;
        q->seed = vesta_engine_seq_seed(seed, i);
        q->tokens = alloc_array((size_t)cap, sizeof(int32_t), &ok);
        q->block_table = alloc_array((size_t)nblk, sizeof(int32_t), &ok);
        q->keys = alloc_array((size_t)nblk, sizeof(uint64_t), &ok);
    }
    if (!ok) {
        request_free(r);
        return vesta_error_set(err, VESTA_ERR_NOMEM, "engine: out of memory adding %s", request_id);
    }
    seq *q = &r->seqs[0];
    memcpy(q->tokens, prompt_ids, (size_t)num_prompt * sizeof(int32_t));
    q->num_tokens = num_prompt;
    size_t b = id_bucket(e, r->id);
    r->hnext = e->buckets[b];
    e->buckets[b] = r;
    e->num_requests++;
    vesta_scheduler_enqueue(&e->sched, q, false);
    return VESTA_OK;
}

static vesta_status push_pending(vesta_engine *e, seq *q)
{
    if (e->num_pending == e->cap_pending) {
        int cap = e->cap_pending ? 2 * e->cap_pending : 64;
        seq **p = realloc(e->pending, (size_t)cap * sizeof(seq *));
        if (p == NULL)
            return VESTA_ERR_NOMEM;
        e->pending = p;
        e->cap_pending = cap;
    }
    e->pending[e->num_pending++] = q;
    return VESTA_OK;
}

/* Ends q now: its blocks go back at once. */
static void finish_seq(vesta_engine *e, seq *q, vesta_finish_reason why)
{
    if (q->state == SEQ_RUNNING)
        vesta_scheduler_remove_running(&e->sched, q);
    else if (q->state == SEQ_WAITING)
        vesta_scheduler_unlink_waiting(&e->sched, q);
    vesta_scheduler_free_blocks(&e->sched, q);
    q->state = SEQ_FINISHED;
    q->finish = why;
    request *r = q->req;
    if (++r->num_finished == r->sp.n)
        unlink_request(e, r);
}

/* Ends every unfinished sequence of r (abort, backend failure); they are reported next. */
static void finish_request(vesta_engine *e, request *r, vesta_finish_reason why)
{
    /* Children first: an unforked parent's slot count covers them. */
    for (int i = r->sp.n - 1; i >= 0; i--) {
        seq *q = &r->seqs[i];
        if (q->state == SEQ_FINISHED)
            continue;
        finish_seq(e, q, why);
        if (push_pending(e, q) != VESTA_OK) /* out of memory: count it as reported */
            r->num_reported++;
    }
}

vesta_status vesta_engine_abort(vesta_engine *e, const char *request_id)
{
    collect_garbage(e);
    request *r = request_id ? find_request(e, request_id) : NULL;
    if (r == NULL)
        return VESTA_ERR_NOT_FOUND;
    finish_request(e, r, VESTA_FINISH_ABORT);
    return VESTA_OK;
}

bool vesta_engine_has_unfinished(const vesta_engine *e)
{
    return e->num_requests > 0 || e->num_pending > 0;
}

void vesta_engine_get_stats(const vesta_engine *e, vesta_engine_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->num_running = e->sched.num_running;
    st->num_waiting = e->sched.num_waiting;
    st->num_blocks_total = e->num_blocks;
    st->num_blocks_free = vesta_block_manager_num_free(e->bm);
    st->kv_usage = e->num_blocks ? (double)(e->num_blocks - st->num_blocks_free) / e->num_blocks : 0;
    st->prefix_cache_queries = e->sched.prefix_queries;
    st->prefix_cache_hits = e->sched.prefix_hits;
    st->num_preemptions = e->sched.preemptions;
    st->prompt_tokens_total = e->prompt_tokens_total;
    st->generation_tokens_total = e->generation_tokens_total;
    st->steps = e->steps;
    st->time_schedule_s = e->t_schedule;
    st->time_execute_s = e->t_execute;
    st->time_update_s = e->t_update;
}

int vesta_engine_drain_kv_events(vesta_engine *e, vesta_kv_event *out, int max,
                                 uint64_t *num_dropped)
{
    return vesta_block_manager_drain_events(e->bm, out, max, num_dropped);
}

/* ---- a step ---- */

static void fill_sample_row(vesta_engine *e, const seq *q, const seq *drawer, vesta_sample_row *row)
{
    const request *r = q->req;
    int num_output = q->num_tokens - r->num_prompt;
    row->params = &r->sp;
    row->rng_seed = drawer->seed;
    row->rng_offset = (uint64_t)num_output;
    row->prompt_ids = q->tokens;
    row->num_prompt = r->num_prompt;
    row->output_ids = q->tokens + r->num_prompt;
    row->num_output = num_output;
    row->suppress_stop = num_output < r->sp.min_tokens;
    row->eos_ids = e->eos_ids;
    row->num_eos = r->sp.ignore_eos ? 0 : e->num_eos;
}

/* Flattens the scheduled sequences into the batch buffers. */
static void build_batch(vesta_engine *e, vesta_batch *b)
{
    scheduler *s = &e->sched;
    int bs = e->block_size, nt = 0, ns = 0, max_blocks = 1, max_ctx = 0;
    for (int i = 0; i < s->num_scheduled; i++)
        if (s->scheduled[i]->num_blocks > max_blocks)
            max_blocks = s->scheduled[i]->num_blocks;
    for (int i = 0; i < s->num_scheduled; i++) {
        seq *q = s->scheduled[i];
        e->query_start[i] = nt;
        for (int j = 0; j < q->step_new; j++, nt++) {
            int pos = q->num_computed + j;
            e->token_ids[nt] = q->tokens[pos];
            e->positions[nt] = pos;
            e->slot_mapping[nt] = q->block_table[pos / bs] * bs + pos % bs;
        }
        int ctx = q->num_computed + q->step_new;
        e->context_lens[i] = ctx;
        if (ctx > max_ctx)
            max_ctx = ctx;
        if (e->lora_slots) e->lora_slots[i] = q->req->lora_id - 1;
        int32_t *bt = e->block_tables + (size_t)i * max_blocks;
        memcpy(bt, q->block_table, (size_t)q->num_blocks * sizeof(int32_t));
        for (int j = q->num_blocks; j < max_blocks; j++)
            bt[j] = -1;
        if (ctx == q->num_tokens) {
            int draws = q->step_fork ? q->req->sp.n : 1;
            for (int d = 0; d < draws; d++) {
                const seq *drawer = q->step_fork ? &q->req->seqs[d] : q;
                e->sample_token_index[ns] = nt - 1;
                fill_sample_row(e, q, drawer, &e->sample_rows[ns]);
                e->sample_seq[ns] = (seq *)drawer;
                ns++;
            }
        }
    }
    e->query_start[s->num_scheduled] = nt;
    *b = (vesta_batch){.num_tokens = nt,
                       .token_ids = e->token_ids,
                       .positions = e->positions,
                       .slot_mapping = e->slot_mapping,
                       .num_seqs = s->num_scheduled,
                       .query_start = e->query_start,
                       .context_lens = e->context_lens,
                       .block_tables = e->block_tables,
                       .max_blocks_per_seq = max_blocks,
                       .max_context_len = max_ctx,
                       .lora_slots = e->lora_slots,
                       .num_samples = ns,
                       .sample_token_index = e->sample_token_index,
                       .sample_rows = e->sample_rows};
}

static vesta_status reserve_outs(vesta_engine *e, int need)
{
    if (need <= e->cap_outs)
        return VESTA_OK;
    int cap = e->cap_outs * 2 > need ? e->cap_outs * 2 : need;
    vesta_seq_output *o = realloc(e->outs, (size_t)cap * sizeof(*o));
    if (o == NULL)
        return VESTA_ERR_NOMEM;
    e->outs = o;
    seq **os = realloc(e->out_seqs, (size_t)cap * sizeof(*os));
    if (os == NULL)
        return VESTA_ERR_NOMEM;
    e->out_seqs = os;
    e->cap_outs = cap;
    return VESTA_OK;
}

static void report(vesta_engine *e, seq *q, int num_new, int *count)
{
    const request *r = q->req;
    e->out_seqs[*count] = q;
    vesta_seq_output *o = &e->outs[(*count)++];
    o->request_id = r->id;
    o->seq_index = q->index;
    o->num_new = num_new;
    o->new_token_ids = num_new ? q->tokens + q->num_tokens - 1 : NULL;
    o->new_logprobs = num_new && r->sp.logprobs >= 0 ? &q->last_logprobs : NULL;
    o->finish = q->finish;
    o->stop_token = q->stop_token;
    o->num_prompt_tokens = r->num_prompt;
    o->num_output_tokens = q->num_tokens - r->num_prompt;
    o->num_cached_tokens = q->num_cached_tokens;
}

static bool contains(const int32_t *ids, int n, int32_t t)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == t)
            return true;
    return false;
}

/* vLLM V1's check_stop order: length first, then EOS, then stop_token_ids. */
static vesta_finish_reason check_stop(const vesta_engine *e, seq *q)
{
    const request *r = q->req;
    int32_t t = q->tokens[q->num_tokens - 1];
    if (q->num_tokens >= e->max_model_len || q->num_tokens - r->num_prompt >= r->sp.max_tokens)
        return VESTA_FINISH_LENGTH;
    if (q->num_tokens - r->num_prompt < r->sp.min_tokens)
        return VESTA_FINISH_NONE;
    if ((!r->sp.ignore_eos && contains(e->eos_ids, e->num_eos, t)) ||
        contains(r->sp.stop_token_ids, r->sp.num_stop_token_ids, t)) {
        q->stop_token = t;
        return VESTA_FINISH_STOP;
    }
    return VESTA_FINISH_NONE;
}

/* Creates the children of an n > 1 request whose prompt was just prefilled: they share the
 * prompt's full blocks (one more reference each) and get their own copy of the partial last
 * block (queued into copy_src/copy_dst). */
static void fork_children(vesta_engine *e, seq *parent, int *num_copies)
{
    request *r = parent->req;
    int bs = e->block_size, full = parent->num_computed / bs;
    bool partial = parent->num_computed % bs != 0;
    for (int c = 1; c < r->sp.n; c++) {
        seq *q = &r->seqs[c];
        memcpy(q->tokens, parent->tokens, (size_t)parent->num_tokens * sizeof(int32_t));
        q->num_tokens = parent->num_tokens;
        q->num_computed = parent->num_computed;
        memcpy(q->keys, parent->keys, (size_t)parent->num_keys * sizeof(uint64_t));
        q->num_keys = parent->num_keys;
        q->num_registered = parent->num_registered < full ? parent->num_registered : full;
        for (int i = 0; i < full; i++) {
            vesta_block_manager_ref(e->bm, parent->block_table[i]);
            q->block_table[i] = parent->block_table[i];
        }
        q->num_blocks = full;
        if (partial) {
            int32_t dst = r->fork_blocks[c - 1];
            q->block_table[q->num_blocks++] = dst;
            e->copy_src[*num_copies] = parent->block_table[full];
            e->copy_dst[*num_copies] = dst;
            (*num_copies)++;
        }
        q->num_cached_tokens = parent->num_cached_tokens;
        q->scheduled_before = true;
        q->state = SEQ_RUNNING;
        e->sched.running[e->sched.num_running++] = q;
    }
    r->num_fork_blocks = 0;
    r->forked = true; /* the parent's n slots now belong to n sequences */
}

static void fail_step(vesta_engine *e)
{
    scheduler *s = &e->sched;
    for (int i = 0; i < s->num_scheduled; i++) {
        request *r = s->scheduled[i]->req;
        if (r->num_finished < r->sp.n)
            finish_request(e, r, VESTA_FINISH_ERROR);
    }
}

/* A request goes to the graveyard (freed at the next call) once every sequence of it has been
 * reported finished. */
static void retire_reported(vesta_engine *e, int count)
{
    for (int i = 0; i < count; i++) {
        seq *q = e->out_seqs[i];
        if (q->finish == VESTA_FINISH_NONE)
            continue;
        request *r = q->req;
        if (++r->num_reported == r->sp.n) {
            r->gnext = e->graveyard;
            e->graveyard = r;
        }
    }
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

vesta_status vesta_engine_step(vesta_engine *e, vesta_step_output *out, vesta_error *err)
{
    double t0 = mono_s(), t1 = t0, t2 = t0;
    collect_garbage(e);
    scheduler *s = &e->sched;
    out->count = 0;
    out->items = e->outs;
    vesta_scheduler_schedule(s);
    vesta_status st = VESTA_OK;
    int count = 0;
    if (s->num_scheduled > 0) {
        e->steps++;
        vesta_batch b;
        build_batch(e, &b);
        t1 = mono_s();
        st = e->be->ops->execute(e->be, &b, e->results, NULL, err);
        t2 = mono_s();
        if (st != VESTA_OK) {
            fail_step(e);
            if (st != VESTA_ERR_BACKEND)
                vesta_error_prefix(err, "backend %s", e->be->ops->name);
            st = VESTA_ERR_BACKEND;
        } else {
            if (reserve_outs(e, s->cfg.max_num_seqs + e->num_pending) != VESTA_OK)
                return vesta_error_set(err, VESTA_ERR_NOMEM, "engine: out of memory");
            int num_copies = 0, ri = 0;
            for (int i = 0; i < s->num_scheduled; i++) {
                seq *q = s->scheduled[i];
                q->num_computed += q->step_new;
                vesta_scheduler_register_blocks(s, q);
                if (q->num_computed != q->num_tokens)
                    continue; /* a prefill chunk: no token yet */
                if (q->num_tokens == q->req->num_prompt && q->index == 0) /* first token */
                    e->prompt_tokens_total += (uint64_t)q->req->num_prompt;
                if (q->step_fork)
                    fork_children(e, q, &num_copies);
                int draws = q->step_fork ? q->req->sp.n : 1;
                for (int d = 0; d < draws; d++, ri++) {
                    seq *t = e->sample_seq[ri];
                    t->tokens[t->num_tokens++] = e->results[ri].token;
                    t->last_logprobs = e->results[ri];
                    e->generation_tokens_total++;
                    vesta_finish_reason why = check_stop(e, t);
                    if (why != VESTA_FINISH_NONE)
                        finish_seq(e, t, why);
                    report(e, t, 1, &count);
                }
            }
            if (num_copies > 0) {
                st = e->be->ops->copy_blocks(e->be, e->copy_src, e->copy_dst, num_copies, err);
                if (st != VESTA_OK) {
                    fail_step(e);
                    st = VESTA_ERR_BACKEND;
                }
            }
        }
    }
    if (reserve_outs(e, count + e->num_pending) != VESTA_OK)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "engine: out of memory");
    for (int i = 0; i < e->num_pending; i++)
        report(e, e->pending[i], 0, &count);
    e->num_pending = 0;
    retire_reported(e, count);
    out->count = count;
    if (t1 > t0) { /* a step that ran the backend */
        e->t_schedule += t1 - t0;
        e->t_execute += t2 - t1;
        e->t_update += mono_s() - t2;
    }
    return st;
}
