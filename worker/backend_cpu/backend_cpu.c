/* The CPU backend object: creation (weights, buffers, threads), the KV cache, and execute. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"
#include "sampler.h"

#define CPU_DEFAULT_KV_BYTES ((size_t)4 << 30) /* vLLM's VLLM_CPU_KVCACHE_SPACE default */

static cpu_backend *cpu_of(vesta_backend *be) { return (cpu_backend *)be; }

static size_t cpu_kv_block_bytes(vesta_backend *base, int block_size)
{
    const vesta_model_config *c = &base->config;
    size_t n;
    if (block_size <= 0 ||
        cpu_mul_size((size_t)c->num_layers * 2 * (size_t)c->num_kv_heads, (size_t)block_size, &n) ||
        cpu_mul_size(n, (size_t)c->head_dim * sizeof(float), &n))
        return 0;
    return n;
}

static size_t cpu_kv_budget_bytes(vesta_backend *base)
{
    size_t b = cpu_of(base)->opts.cpu_kv_cache_bytes;
    return b ? b : CPU_DEFAULT_KV_BYTES;
}

static vesta_status cpu_kv_alloc(vesta_backend *base, int num_blocks, int block_size, vesta_error *err)
{
    cpu_backend *be = cpu_of(base);
    if (be->kv.data)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "kv_alloc: the KV cache is already allocated");
    size_t block_bytes = cpu_kv_block_bytes(base, block_size), total;
    if (num_blocks <= 0 || block_bytes == 0 || cpu_mul_size(block_bytes, (size_t)num_blocks, &total) ||
        (size_t)num_blocks * (size_t)block_size > (size_t)INT32_MAX)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "kv_alloc: %d blocks of %d tokens", num_blocks,
                               block_size);
    /* calloc: pages are only touched (and so only resident) once tokens are written there. */
    be->kv.data = calloc(1, total);
    if (!be->kv.data)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "kv_alloc: cannot allocate %zu MiB for %d KV blocks",
                               total >> 20, num_blocks);
    const vesta_model_config *c = &base->config;
    be->kv.num_blocks = num_blocks;
    be->kv.block_size = block_size;
    be->kv.block_floats = block_bytes / sizeof(float);
    be->kv.head_floats = (size_t)block_size * (size_t)c->head_dim;
    be->kv.layer_floats = 2 * (size_t)c->num_kv_heads * be->kv.head_floats;
    return VESTA_OK;
}

static vesta_status cpu_copy_blocks(vesta_backend *base, const int32_t *src, const int32_t *dst, int n,
                                    vesta_error *err)
{
    cpu_backend *be = cpu_of(base);
    if (vesta_backend_check_copy_args(src, dst, n, err) != VESTA_OK) return VESTA_ERR_INVALID_ARG;
    if (n > 0 && !be->kv.data)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "copy_blocks before kv_alloc");
    for (int i = 0; i < n; i++)
        if (src[i] < 0 || src[i] >= be->kv.num_blocks || dst[i] < 0 || dst[i] >= be->kv.num_blocks)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "copy_blocks: pair %d (%d -> %d) outside [0, %d)",
                                   i, src[i], dst[i], be->kv.num_blocks);
    const size_t bytes = be->kv.block_floats * sizeof(float);
#pragma omp parallel for num_threads(be->a.nthreads) schedule(static) if (n >= CPU_PAR_MIN_ROWS)
    for (int i = 0; i < n; i++)
        if (src[i] != dst[i])
            memcpy(be->kv.data + (size_t)dst[i] * be->kv.block_floats,
                   be->kv.data + (size_t)src[i] * be->kv.block_floats, bytes);
    return VESTA_OK;
}

/* Samples rows [first, first + n) from their logits, one sampler scratch per thread. */
static vesta_status sample_rows(cpu_backend *be, const vesta_batch *b, int first, int n, const float *logits,
                                vesta_sample_result *results, vesta_error *err)
{
    const int V = be->base.config.vocab_size;
    vesta_status st = VESTA_OK;
    int nt = be->n_scratch < n ? be->n_scratch : n;
#pragma omp parallel num_threads(nt > 0 ? nt : 1)
    {
        vesta_error e = {0};
        vesta_sampler_scratch *scr = be->scratch[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < n; k++) {
            vesta_status s = vesta_sampler_sample(logits + (size_t)k * V, V, &b->sample_rows[first + k],
                                                  &results[first + k], scr, &e);
            if (s != VESTA_OK) {
#pragma omp critical(vesta_cpu_sample_error)
                if (st == VESTA_OK) {
                    st = s;
                    if (err)
                        *err = e;
                    vesta_error_prefix(err, "sample row %d", first + k);
                }
            }
        }
    }
    return st;
}

/* Vocabulary-parallel LM head: each rank computes the logits of its vocabulary slice for the n
 * rows in a.lm_x, the slices are gathered, and rank 0 lays them out as [n][vocab] in out. */
static vesta_status lm_head_tp(cpu_backend *be, int n, float *out, vesta_error *err)
{
    const int H = be->base.config.hidden_size, V = be->base.config.vocab_size, VR = be->shard.vocab_rows;
    cpu_product(&be->a, be->a.lm_x, n, H, be->w.lm_head, VR, be->a.logits, VR, 0.0f);
    const size_t part = (size_t)n * (size_t)VR;
    float *g = be->gathered;
    vesta_status st = vesta_tp_comm_all_gather(be->comm, be->a.logits, part, g, err);
    if (st != VESTA_OK || be->shard.rank != 0)
        return st;
    for (int r = 0; r < be->shard.size; r++) {
        const int v0 = r * VR, nv = V - v0 < VR ? (V - v0 > 0 ? V - v0 : 0) : VR;
        for (int k = 0; k < n; k++)
            memcpy(out + (size_t)k * V + v0, g + (size_t)r * part + (size_t)k * VR, sizeof(float) * (size_t)nv);
    }
    return VESTA_OK;
}

static vesta_status cpu_execute(vesta_backend *base, const vesta_batch *b, vesta_sample_result *results,
                                float *logits_out, vesta_error *err)
{
    cpu_backend *be = cpu_of(base);
    if (!b)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute: batch is NULL");
    vesta_status st = cpu_batch_validate(be, b, err);
    if (st != VESTA_OK)
        return st;
    if (b->num_samples > 0 && !results && be->shard.rank == 0) /* only rank 0 samples */
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute: results is NULL for %d samples",
                               b->num_samples);
    if (b->num_tokens == 0)
        return VESTA_OK;
    if ((st = cpu_forward(be, b, err)) != VESTA_OK)
        return st;
    const int V = base->config.vocab_size, H = base->config.hidden_size;
    for (int first = 0; first < b->num_samples; first += be->a.lm_rows) {
        int n = b->num_samples - first < be->a.lm_rows ? b->num_samples - first : be->a.lm_rows;
        cpu_forward_final_rows(be, b, first, n);
        float *logits = logits_out ? logits_out + (size_t)first * V : be->a.logits;
        if (be->comm) {
            if ((st = lm_head_tp(be, n, logits_out ? logits : be->full_logits, err)) != VESTA_OK)
                return st;
            if (be->shard.rank != 0)
                continue; /* only rank 0 samples */
            logits = logits_out ? logits : be->full_logits;
        } else {
            cpu_product(&be->a, be->a.lm_x, n, H, be->w.lm_head, V, logits, V, 0.0f);
        }
        if ((st = sample_rows(be, b, first, n, logits, results, err)) != VESTA_OK)
            return st;
    }
    return VESTA_OK;
}

static void cpu_destroy(vesta_backend *base)
{
    cpu_backend *be = cpu_of(base);
    if (!be)
        return;
    if (be->scratch)
        for (int i = 0; i < be->n_scratch; i++)
            vesta_sampler_scratch_release(be->scratch[i]);
    free(be->scratch);
    free(be->gathered);
    free(be->full_logits);
    free(be->lora_tmp);
    free(be->kv.data);
    cpu_activations_free(&be->a);
    cpu_weights_free(&be->w);
    free(be->inv_freq);
    free(be);
}

static const vesta_backend_ops cpu_ops = {
    .name = "cpu",
    .kv_block_bytes = cpu_kv_block_bytes,
    .kv_budget_bytes = cpu_kv_budget_bytes,
    .kv_alloc = cpu_kv_alloc,
    .execute = cpu_execute,
    .copy_blocks = cpu_copy_blocks,
    .lora_add = cpu_lora_add,
    .destroy = cpu_destroy,
};

static vesta_status check_config(const vesta_model_config *c, const vesta_backend_options *o, vesta_error *err)
{
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_layers <= 0 ||
        c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model config: a dimension is not positive");
    if (c->num_heads % c->num_kv_heads)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "model config: num_heads %d is not a multiple of "
                               "num_key_value_heads %d", c->num_heads, c->num_kv_heads);
    if (!(c->rms_norm_eps >= 0.0f) || c->sliding_window < 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model config: rms_norm_eps or sliding_window invalid");
    if (o->tp_size < 1 || o->tp_rank < 0 || o->tp_rank >= o->tp_size)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp_rank %d of tp_size %d", o->tp_rank, o->tp_size);
    if (o->num_threads < 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "num_threads %d", o->num_threads);
    return VESTA_OK;
}

vesta_status vesta_backend_cpu_check_tp(const vesta_model_config *c, int n, vesta_error *err)
{
    return vesta_tp_shard_check(c, n, err);
}

vesta_backend *vesta_backend_cpu_create(const vesta_model_file *mf, const vesta_backend_options *opts,
                                        vesta_error *err)
{
    if (opts && opts->tp_size > 1) {
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "cpu backend: tp_size %d needs a communicator "
                        "(a tensor-parallel replica is started by `--tensor-parallel-size`)", opts->tp_size);
        return NULL;
    }
    return vesta_backend_cpu_create_tp(mf, opts, NULL, err);
}

vesta_backend *vesta_backend_cpu_create_tp(const vesta_model_file *mf, const vesta_backend_options *opts,
                                           vesta_tp_comm *comm, vesta_error *err)
{
    if (!mf || !opts) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "cpu backend: model file or options is NULL");
        return NULL;
    }
    const vesta_model_config *full = vesta_model_file_config(mf);
    if (check_config(full, opts, err) != VESTA_OK)
        return NULL;
    const int tp = opts->tp_size;
    if (tp > 1 && (!comm || comm->size != tp || comm->rank != opts->tp_rank)) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "cpu backend: rank %d of %d needs a communicator of that rank "
                        "and size", opts->tp_rank, tp);
        return NULL;
    }
    if (vesta_backend_cpu_check_tp(full, tp, err) != VESTA_OK)
        return NULL;
    cpu_shard shard;
    vesta_model_config local;
    if (vesta_tp_shard_plan(full, opts->tp_rank, tp, &shard, &local, err) != VESTA_OK)
        return NULL;
    const vesta_model_config *c = &local;
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "cpu backend: out of memory");
        return NULL;
    }
    be->base.ops = &cpu_ops;
    be->base.config = *c;
    be->full = *full;
    be->shard = shard;
    be->comm = tp > 1 ? comm : NULL;
    be->opts = *opts;
    be->q_dim = c->num_heads * c->head_dim;
    be->kv_dim = c->num_kv_heads * c->head_dim;
    be->qkv_dim = be->q_dim + 2 * be->kv_dim;
    be->attn_scale = (float)pow((double)c->head_dim, -0.5); /* HF: head_dim ** -0.5 */
    int nt = opts->num_threads > 0 ? opts->num_threads : omp_get_num_procs();
    /* One thread pool (OpenMP); each BLAS call runs on the thread that makes it. This is
     * process-wide OpenBLAS state: see docs/cpu-backend.md. */
    openblas_set_num_threads(1);
    vesta_status st = VESTA_OK;
    be->inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2 + 1));
    /* Sampling is a small part of a step: a few threads suffice, and each scratch is ~13 bytes
     * per vocabulary entry. */
    be->n_scratch = nt < CPU_MAX_SAMPLE_THREADS ? nt : CPU_MAX_SAMPLE_THREADS;
    be->scratch = calloc((size_t)be->n_scratch, sizeof *be->scratch);
    if (!be->inv_freq || !be->scratch)
        st = vesta_error_set(err, VESTA_ERR_NOMEM, "cpu backend: out of memory");
    if (st == VESTA_OK)
        st = cpu_rope_inv_freq(c, be->inv_freq, err);
    if (st == VESTA_OK)
        st = cpu_activations_alloc(&be->a, c, opts, nt, tp > 1 ? shard.vocab_rows : c->vocab_size, err);
    if (st == VESTA_OK && tp > 1) {
        be->gathered = malloc(sizeof(float) * (size_t)tp * (size_t)be->a.lm_rows * (size_t)shard.vocab_rows);
        be->full_logits = malloc(sizeof(float) * (size_t)be->a.lm_rows * (size_t)c->vocab_size);
        if (!be->gathered || !be->full_logits)
            st = vesta_error_set(err, VESTA_ERR_NOMEM, "cpu backend: out of memory for gathered logits");
    }
    for (int i = 0; st == VESTA_OK && i < be->n_scratch; i++)
        if (!(be->scratch[i] = vesta_sampler_scratch_create(c->vocab_size, err)))
            st = err ? err->code : VESTA_ERR_NOMEM;
    if (st == VESTA_OK)
        st = cpu_weights_load(&be->w, mf, full, c, &be->shard, opts, err);
    if (st != VESTA_OK) {
        cpu_destroy(&be->base);
        return NULL;
    }
    return &be->base;
}
