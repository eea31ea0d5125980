/* The engine: the C equivalent of vLLM's LLMEngine / LLM.generate.
 *
 *   vesta_engine_config cfg; vesta_engine_config_init(&cfg); cfg.model = "path";
 *   vesta_engine *e = vesta_engine_create(&cfg, &err);
 *   vesta_engine_add_request(e, "id-0", ids, n, &sp, &err);
 *   while (vesta_engine_has_unfinished(e)) { vesta_engine_step(e, &out, &err); ... }
 *   vesta_engine_destroy(e);
 *
 * Thread ownership: one thread owns an engine; no call is thread-safe. Servers put a queue in
 * front of it (the worker's engine thread drains it between steps). */
#ifndef VESTA_ENGINE_H
#define VESTA_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/backend.h"
#include "vesta/error.h"
#include "vesta/lora.h"
#include "vesta/model.h"
#include "vesta/sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Who runs the engine: vLLM picks its step limits by this (its UsageContext LLM_CLASS and
 * OPENAI_API_SERVER) and by the device. */
typedef enum vesta_usage_context {
    VESTA_USAGE_OFFLINE = 0, /* vesta generate, vesta bench, the C API (default) */
    VESTA_USAGE_SERVER = 1,  /* vesta-worker behind the router */
} vesta_usage_context;

typedef struct vesta_engine_config {
    const char *model;              /* model directory or .gguf file */
    const char *backend;            /* "cpu" (default) or "cuda" */
    int block_size;                 /* --block-size (16) */
    int max_num_seqs;               /* --max-num-seqs (0 = vesta_engine_batch_defaults) */
    int max_num_batched_tokens;     /* --max-num-batched-tokens (0 = vesta_engine_batch_defaults;
                                       >= max_model_len not required: long prompts are prefilled
                                       in chunks) */
    vesta_usage_context usage;      /* picks the defaults of the two above (offline) */
    int max_model_len;              /* --max-model-len (0 = the model's max_position_embeddings) */
    bool enable_prefix_caching;     /* --enable-prefix-caching (on) */
    uint64_t prefix_cache_salt;     /* per-deployment salt mixed into every block hash (0) */
    int num_gpu_blocks_override;    /* --num-gpu-blocks-override: fixed KV block count (0 = plan) */
    uint64_t seed;                  /* --seed: seeds the generator that gives requests without a
                                       seed their seed (0) */
    int kv_event_capacity;          /* KV events kept between drains (0 = 2 * blocks + 64) */
    /* Multi-LoRA (vLLM's --enable-lora, --lora-modules, --max-loras, --max-lora-rank): the
     * adapters are loaded at create and stay resident; a request names one by its id (1 ..). */
    bool enable_lora;
    const vesta_lora_spec *lora_modules; /* [num_lora_modules], read at create only */
    int num_lora_modules;                /* 0 .. VESTA_LORA_MAX_ADAPTERS */
    int max_loras;                       /* distinct adapters in one step (0 = vLLM's default, 1) */
    int max_lora_rank;                   /* largest r an adapter may have (0 = vLLM's default, 16) */
    vesta_backend_options backend_opts;
} vesta_engine_config;

void vesta_engine_config_init(vesta_engine_config *cfg);

/* vLLM's step limits where the user set none (its get_batch_defaults): on a CUDA device with at
 * least 70 GiB that is not an A100, 1024 sequences and 16384 tokens per step offline, 1024 and
 * 8192 for a server; on other CUDA devices 256 and 8192 offline, 256 and 2048 for a server; on
 * the CPU and sim backends 256 and 8192 for both (Vesta's own: one step there is already long).
 * A device that cannot be queried gets the smaller CUDA defaults. max_num_seqs is then capped
 * at max_num_batched_tokens, as vLLM does. Either output is left alone where it is already > 0. */
void vesta_engine_batch_defaults(const char *backend, int device, vesta_usage_context usage, int *max_num_seqs,
                                 int *max_num_batched_tokens);

typedef enum vesta_finish_reason {
    VESTA_FINISH_NONE = 0,  /* still running */
    VESTA_FINISH_STOP,      /* EOS or a stop token id (or aborted by a stop string upstream) */
    VESTA_FINISH_LENGTH,    /* max_tokens or max_model_len reached */
    VESTA_FINISH_ABORT,     /* vesta_engine_abort */
    VESTA_FINISH_ERROR,     /* the backend failed on a step holding this request */
} vesta_finish_reason;

const char *vesta_finish_reason_str(vesta_finish_reason r); /* "stop", "length", "abort", ... */

/* What one step produced for one sequence (one of a request's n). Pointers are valid until the
 * next call into the engine. */
typedef struct vesta_seq_output {
    const char *request_id;
    int seq_index;                    /* 0 .. n-1 */
    int num_new;                      /* tokens appended this step (0 or 1) */
    const int32_t *new_token_ids;
    const vesta_sample_result *new_logprobs; /* [num_new] when logprobs were asked, else NULL */
    vesta_finish_reason finish;
    int32_t stop_token;               /* the token that finished it with STOP, else -1 */
    int num_prompt_tokens;
    int num_output_tokens;
    int num_cached_tokens;            /* prompt tokens served from the prefix cache */
} vesta_seq_output;

typedef struct vesta_step_output {
    int count;
    const vesta_seq_output *items;
} vesta_step_output;

typedef struct vesta_engine_stats {
    int num_running;
    int num_waiting;
    int num_blocks_total;
    int num_blocks_free;             /* including cached-but-unreferenced blocks */
    double kv_usage;                 /* fraction of blocks referenced by live sequences */
    uint64_t prefix_cache_queries;   /* prompt tokens looked up */
    uint64_t prefix_cache_hits;      /* prompt tokens found */
    uint64_t num_preemptions;
    uint64_t prompt_tokens_total;
    uint64_t generation_tokens_total;
    uint64_t steps;
    /* Wall time of the steps so far, by phase (host clock, CLOCK_MONOTONIC): scheduling and
     * building the batch; the backend's execute (its host work plus waiting for the device);
     * the rest (appending tokens, stop checks, block registration, reporting). */
    double time_schedule_s, time_execute_s, time_update_s;
} vesta_engine_stats;

typedef struct vesta_engine vesta_engine;

vesta_engine *vesta_engine_create(const vesta_engine_config *cfg, vesta_error *err);
void vesta_engine_destroy(vesta_engine *e); /* NULL is a no-op */

const vesta_model_config *vesta_engine_model_config(const vesta_engine *e);
int vesta_engine_max_model_len(const vesta_engine *e);
int vesta_engine_max_num_seqs(const vesta_engine *e);           /* the resolved limits */
int vesta_engine_max_num_batched_tokens(const vesta_engine *e);

/* Queues a request. Fails (nothing queued) on a duplicate id, invalid parameters, an empty
 * prompt, token ids outside the vocabulary, or prompt + max_tokens over max_model_len. */
vesta_status vesta_engine_add_request(vesta_engine *e, const char *request_id,
                                      const int32_t *prompt_ids, int num_prompt,
                                      const vesta_sampling_params *sp, vesta_error *err);

/* vesta_engine_add_request for adapter lora_id (0 = the base model, 1 .. vesta_engine_num_loras:
 * the adapters in --lora-modules order). VESTA_ERR_NOT_FOUND for an id with no adapter. */
vesta_status vesta_engine_add_request_lora(vesta_engine *e, const char *request_id, const int32_t *prompt_ids,
                                           int num_prompt, const vesta_sampling_params *sp, int lora_id,
                                           vesta_error *err);

/* Adapters: how many are loaded, the id of a name (0 for NULL or "", -1 when unknown) and the
 * name of an id (NULL when out of range). */
int vesta_engine_num_loras(const vesta_engine *e);
int vesta_engine_lora_id(const vesta_engine *e, const char *name);
const char *vesta_engine_lora_name(const vesta_engine *e, int lora_id);

/* Aborts a queued or running request; its blocks are freed at once. Its sequences are reported
 * once more by the next step with finish = VESTA_FINISH_ABORT. VESTA_ERR_NOT_FOUND if unknown. */
vesta_status vesta_engine_abort(vesta_engine *e, const char *request_id);

/* Runs one iteration (schedule, execute, sample, update). *out lists every sequence that got a
 * token or finished. A backend failure fails the requests of that step (finish = ERROR) and
 * returns VESTA_ERR_BACKEND; the engine stays usable. */
vesta_status vesta_engine_step(vesta_engine *e, vesta_step_output *out, vesta_error *err);

bool vesta_engine_has_unfinished(const vesta_engine *e);
void vesta_engine_get_stats(const vesta_engine *e, vesta_engine_stats *st);

/* Same as vesta_engine_create, for a backend the caller already created (tests, a backend not in
 * the registry). The engine owns be from then on, also when this fails; cfg->model and
 * cfg->backend are ignored and vesta_engine_model_config returns &be->config. */
vesta_engine *vesta_engine_create_with_backend(const vesta_engine_config *cfg, vesta_backend *be,
                                               vesta_error *err);

/* The seed sequence i of a request draws with: vesta_rng_mix(vesta_rng_mix(seed) + i) (see
 * worker/sampler/sampler.h), seed being the request's seed or, without one, a value from the
 * engine's generator (seeded by cfg.seed). So a seeded request gives the same tokens whatever
 * else is in the batch. */
uint64_t vesta_engine_seq_seed(uint64_t request_seed, int seq_index);

/* Prefix-cache events, for the router's prefix-affinity index (docs/engine.md). A STORED event is
 * logged when a full computed block is registered under its key (prefix_hash.h), REMOVED when
 * it is evicted. Keys are only ever stored/removed once each in this order. */
typedef enum vesta_kv_event_type {
    VESTA_KV_EVENT_STORED = 1,
    VESTA_KV_EVENT_REMOVED = 2,
} vesta_kv_event_type;

typedef struct vesta_kv_event {
    vesta_kv_event_type type;
    int32_t lora_id;
    uint64_t block_hash;
    uint64_t parent_hash;  /* STORED only: the previous block's key (the chain root for block 0) */
} vesta_kv_event;

/* Moves up to max pending events, oldest first, into out and returns the count. The engine keeps
 * cfg.kv_event_capacity events; older ones are overwritten and counted in *num_dropped (may be
 * NULL) -- a consumer that sees drops should resynchronize. Drain after every step. */
int vesta_engine_drain_kv_events(vesta_engine *e, vesta_kv_event *out, int max,
                                 uint64_t *num_dropped);

#ifdef __cplusplus
}
#endif
#endif
