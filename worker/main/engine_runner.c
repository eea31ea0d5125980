/* The runner over the real engine (CPU or CUDA backend). */
#include <stdlib.h>
#include <string.h>

#include "runner.h"

typedef struct engine_runner {
    runner base;
    vesta_engine *e;
} engine_runner;

static vesta_status er_add(runner *r, const char *id, const int32_t *ids, int n, const vesta_sampling_params *sp,
                           int lora_id, vesta_error *err)
{
    return vesta_engine_add_request_lora(((engine_runner *)r)->e, id, ids, n, sp, lora_id, err);
}

static int er_lora_find(const runner *r, const char *name)
{
    return vesta_engine_lora_id(((const engine_runner *)r)->e, name);
}

static vesta_status er_abort(runner *r, const char *id)
{
    return vesta_engine_abort(((engine_runner *)r)->e, id);
}

static vesta_status er_step(runner *r, vesta_step_output *out, vesta_error *err)
{
    return vesta_engine_step(((engine_runner *)r)->e, out, err);
}

static bool er_has_unfinished(const runner *r)
{
    return vesta_engine_has_unfinished(((const engine_runner *)r)->e);
}

static int64_t er_ready_in_us(const runner *r)
{
    (void)r;
    return 0;
}

static void er_stats(const runner *r, vesta_engine_stats *st)
{
    vesta_engine_get_stats(((const engine_runner *)r)->e, st);
}

static int er_drain_kv(runner *r, vesta_kv_event *out, int max, uint64_t *num_dropped)
{
    return vesta_engine_drain_kv_events(((engine_runner *)r)->e, out, max, num_dropped);
}

static void er_destroy(runner *r)
{
    engine_runner *er = (engine_runner *)r;
    vesta_engine_destroy(er->e);
    free(er);
}

static const runner_ops engine_ops = {er_add,         er_lora_find, er_abort,    er_step,   er_has_unfinished,
                                      er_ready_in_us, er_stats,     er_drain_kv, er_destroy};

runner *engine_runner_create(const vesta_config *cfg, vesta_error *err)
{
    if (strcmp(cfg->dtype, "auto") != 0) {
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                        "--dtype %s: the engine computes in its backend's own dtype; use auto",
                        cfg->dtype);
        return NULL;
    }
    vesta_engine_config ec;
    vesta_engine_config_init(&ec);
    ec.model = cfg->model;
    ec.backend = cfg->backend;
    ec.block_size = cfg->block_size;
    ec.max_num_seqs = cfg->max_num_seqs;
    ec.max_num_batched_tokens = cfg->max_num_batched_tokens;
    ec.usage = VESTA_USAGE_SERVER;
    ec.max_model_len = cfg->max_model_len;
    ec.enable_prefix_caching = cfg->enable_prefix_caching;
    ec.prefix_cache_salt = (uint64_t)cfg->prefix_cache_salt;
    ec.num_gpu_blocks_override = cfg->num_gpu_blocks_override;
    ec.backend_opts.gpu_memory_utilization = cfg->gpu_memory_utilization;
    ec.backend_opts.cpu_kv_cache_bytes = (size_t)cfg->cpu_kv_cache_space << 30;
    ec.backend_opts.num_threads = cfg->num_threads;
    ec.backend_opts.device = cfg->device;
    ec.backend_opts.enforce_eager = cfg->enforce_eager;
    ec.backend_opts.disable_custom_all_reduce = cfg->disable_custom_all_reduce;
    ec.backend_opts.batch_invariant = cfg->batch_invariant;
    ec.backend_opts.tp_size = cfg->tensor_parallel_size; /* > 1: this worker is rank 0 of a replica */
    ec.backend_opts.load_dummy = strcmp(cfg->load_format, "dummy") == 0;
    ec.enable_lora = cfg->enable_lora;
    ec.max_loras = cfg->max_loras;
    ec.max_lora_rank = cfg->max_lora_rank;
    engine_runner *er = calloc(1, sizeof *er);
    vesta_lora_spec *specs = calloc(VESTA_LORA_MAX_ADAPTERS, sizeof *specs);
    if (!er || !specs) {
        free(er);
        free(specs);
        vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ec.num_lora_modules = vesta_config_lora_specs(cfg, specs, err);
    ec.lora_modules = specs;
    er->e = ec.num_lora_modules >= 0 ? vesta_engine_create(&ec, err) : NULL;
    free(specs);
    if (!er->e) {
        free(er);
        return NULL;
    }
    const vesta_model_config *mc = vesta_engine_model_config(er->e);
    vesta_engine_stats st;
    vesta_engine_get_stats(er->e, &st);
    er->base.ops = &engine_ops;
    er->base.max_model_len = vesta_engine_max_model_len(er->e);
    er->base.block_size = cfg->block_size;
    er->base.max_num_seqs = vesta_engine_max_num_seqs(er->e);
    er->base.vocab_size = mc->vocab_size;
    for (int i = 0; i < mc->num_eos_token_ids && i < VESTA_PROTO_MAX_EOS; i++)
        er->base.eos_ids[er->base.num_eos++] = mc->eos_token_ids[i];
    return &er->base;
}
