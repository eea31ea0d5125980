/* The CUDA backend object: creation (device, weights, memory plan), the KV cache, execute
 * (metadata upload, graph or eager forward, GPU sampling) and block copies. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define KV_RESERVE ((size_t)384 << 20) /* decode graphs, allocator slack */

static cuda_backend *cu_of(vesta_backend *b) { return (cuda_backend *)b; }

/* A tensor-parallel rank other than 0: it runs every step's forward pass (and its collectives)
 * but samples nothing; its batches come without sample_rows. */
static bool follower(const cuda_backend *be) { return be->comm && be->shard.rank != 0; }

void cuda_tp_local_ids(const cuda_backend *be, int32_t *ids, int n)
{
    const int v0 = be->shard.vocab0, nv = be->shard.vocab_valid;
    for (int i = 0; i < n; i++) ids[i] = ids[i] >= v0 && ids[i] < v0 + nv ? ids[i] - v0 : be->Vr;
}

vesta_status cuda_stream_wait(cuda_backend *be, vesta_error *err)
{
#ifdef VESTA_HAVE_NCCL
    if (be->comm) {
        CU(cudaEventRecord(be->step_done, be->stream));
        return vesta_tp_comm_nccl_wait(be->comm, be->step_done, err);
    }
#endif
    CU(cudaStreamSynchronize(be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

static size_t cuda_kv_block_bytes(vesta_backend *base, int block_size)
{
    const vesta_model_config *c = &base->config;
    if (block_size <= 0) return 0;
    return (size_t)c->num_layers * 2 * (size_t)block_size * (size_t)c->num_kv_heads * (size_t)c->head_dim * 2;
}

static size_t cuda_kv_budget_bytes(vesta_backend *base)
{
    cuda_backend *be = cu_of(base);
    size_t free_b = 0, total = 0;
    if (cudaSetDevice(be->dev) != cudaSuccess || cudaMemGetInfo(&free_b, &total) != cudaSuccess) return 0;
    double allowed = be->opts.gpu_memory_utilization * (double)total;
    double used = (double)(total - free_b);
    double budget = allowed - used - (double)be->kv_reserve;
    fprintf(stderr,
            "cuda: memory plan: total %.2f GiB x gpu_memory_utilization %.2f = "
            "%.2f GiB; in use %.2f GiB "
            "(weights %.2f, activations %.2f for %d tokens / %d sequences, CUDA "
            "context + cuBLAS %.2f); "
            "reserve %.2f (graphs); KV budget %.2f GiB\n",
            total / GIB, be->opts.gpu_memory_utilization, allowed / GIB, used / GIB, be->wbytes / GIB, be->abytes / GIB,
            be->max_tokens, be->max_seqs, (used - be->wbytes - be->abytes) / GIB, be->kv_reserve / GIB,
            budget > 0 ? budget / GIB : 0.0);
    return budget > 0 ? (size_t)budget : 0;
}

static vesta_status cuda_kv_alloc(vesta_backend *base, int num_blocks, int block_size, vesta_error *err)
{
    cuda_backend *be = cu_of(base);
    if (be->kv) return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "kv_alloc: the KV cache is already allocated");
    if (block_size != be->opts.block_size || num_blocks <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "kv_alloc: %d blocks of %d tokens (backend planned for "
                               "block size %d)",
                               num_blocks, block_size, be->opts.block_size);
    size_t bb = cuda_kv_block_bytes(base, block_size);
    be->kv_bytes = bb * (size_t)num_blocks;
    be->block_size = block_size;
    be->num_blocks = num_blocks;
    void **host = NULL;
    CU(cudaSetDevice(be->dev));
    cudaError_t ce = cudaMalloc(&be->kv, be->kv_bytes);
    if (ce != cudaSuccess) {
        be->kv = NULL;
        return vesta_error_set(err, VESTA_ERR_NOMEM, "kv_alloc: %.2f GiB for %d KV blocks: %s", be->kv_bytes / GIB,
                               num_blocks, cudaGetErrorString(ce));
    }
    CU(cudaMemsetAsync(be->kv, 0, be->kv_bytes, be->stream));
    host = malloc(sizeof(void *) * 2 * (size_t)be->L);
    if (!host) return vesta_error_set(err, VESTA_ERR_NOMEM, "kv_alloc: out of host memory");
    size_t per = be->kv_bytes / (size_t)(2 * be->L);
    for (int i = 0; i < 2 * be->L; i++) host[i] = (char *)be->kv + (size_t)i * per;
    CU(cudaMalloc((void **)&be->kv_ptrs, sizeof(void *) * 2 * (size_t)be->L));
    CU(cudaMemcpy(be->kv_ptrs, host, sizeof(void *) * 2 * (size_t)be->L, cudaMemcpyHostToDevice));
    free(host);
    host = NULL;
    size_t per_token = bb / (size_t)block_size;
    size_t ideal = (size_t)be->L * 2 * (size_t)be->KVH * (size_t)be->D * 2;
    fprintf(stderr,
            "cuda: KV cache: %d blocks x %d tokens = %lld tokens, %.2f GiB, %zu "
            "bytes/token (ideal %zu: "
            "K and V, %d layers x %d KV heads x %d dims, bf16)\n",
            num_blocks, block_size, (long long)num_blocks * block_size, be->kv_bytes / GIB, per_token, ideal, be->L,
            be->KVH, be->D);
    if (!be->opts.enforce_eager) {
        double t0 = 0;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (cuda_graphs_capture(be, err) != VESTA_OK) return VESTA_ERR_BACKEND;
        clock_gettime(CLOCK_MONOTONIC, &b);
        t0 = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
        size_t free_b, total;
        CU(cudaMemGetInfo(&free_b, &total));
        fprintf(stderr,
                "cuda: captured %d decode graphs (batch sizes 1..%d) in %.2f s; "
                "%.2f GiB free after\n",
                be->num_graphs, be->graph_bs[be->num_graphs - 1], t0, free_b / GIB);
    } else {
        fprintf(stderr, "cuda: enforce_eager: no CUDA graphs\n");
    }
    return VESTA_OK;
fail:
    free(host);
    return VESTA_ERR_BACKEND;
}

static vesta_status cuda_copy_blocks(vesta_backend *base, const int32_t *src, const int32_t *dst, int n,
                                     vesta_error *err)
{
    cuda_backend *be = cu_of(base);
    if (vesta_backend_check_copy_args(src, dst, n, err) != VESTA_OK) return VESTA_ERR_INVALID_ARG;
    if (n == 0) return VESTA_OK;
    if (!be->kv) return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "copy_blocks before kv_alloc");
    if (n > be->max_tokens)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "copy_blocks: %d pairs (at most %d)", n, be->max_tokens);
    for (int i = 0; i < n; i++)
        if (src[i] < 0 || src[i] >= be->num_blocks || dst[i] < 0 || dst[i] >= be->num_blocks)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "copy_blocks: pair %d (%d -> %d) outside [0, %d)", i,
                                   src[i], dst[i], be->num_blocks);
    /* the token-id buffers are free between steps: reuse them for the pairs */
    memcpy(be->hm.tokens, src, 4 * (size_t)n);
    memcpy(be->hm.positions, dst, 4 * (size_t)n);
    CU(cudaMemcpyAsync(be->m.tokens, be->hm.tokens, 4 * (size_t)n, cudaMemcpyHostToDevice, be->stream));
    CU(cudaMemcpyAsync(be->m.positions, be->hm.positions, 4 * (size_t)n, cudaMemcpyHostToDevice, be->stream));
    CU(vk_copy_blocks(be->kv_ptrs, 2 * be->L, be->m.tokens, be->m.positions, n,
                      be->kv_bytes / (size_t)(2 * be->L) / (size_t)be->num_blocks, be->stream));
    CU(cudaStreamSynchronize(be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Every index the kernels will follow is checked here: a bad batch is an error, never a fault. */
static vesta_status validate(cuda_backend *be, const vesta_batch *b, vesta_error *err)
{
    if (!be->kv) return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute before kv_alloc");
    if (b->num_tokens < 0 || b->num_tokens > be->max_tokens || b->num_seqs < 0 || b->num_seqs > be->max_seqs ||
        b->num_samples < 0 || b->num_samples > b->num_seqs)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "batch: %d tokens, %d sequences, %d samples (limits %d, "
                               "%d)",
                               b->num_tokens, b->num_seqs, b->num_samples, be->max_tokens, be->max_seqs);
    if (b->num_tokens == 0) return VESTA_OK;
    if (!b->token_ids || !b->positions || !b->slot_mapping || !b->query_start || !b->context_lens || !b->block_tables ||
        (b->num_samples && (!b->sample_token_index || (!b->sample_rows && !follower(be)))))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: a required array is NULL");
    if (b->query_start[0] != 0 || b->query_start[b->num_seqs] != b->num_tokens)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: query_start does not span the tokens");
    long long slots = (long long)be->num_blocks * be->block_size;
    for (int i = 0; i < b->num_seqs; i++) {
        int q = b->query_start[i + 1] - b->query_start[i], ctx = b->context_lens[i];
        if (q < 1 || ctx < q || ctx > be->max_blocks * be->block_size)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sequence %d: %d new tokens, context %d", i, q,
                                   ctx);
        int nb = (ctx + be->block_size - 1) / be->block_size;
        if (nb > b->max_blocks_per_seq)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sequence %d needs %d blocks, table has %d", i,
                                   nb, b->max_blocks_per_seq);
        for (int k = 0; k < nb; k++) {
            int32_t blk = b->block_tables[(size_t)i * b->max_blocks_per_seq + k];
            if (blk < 0 || blk >= be->num_blocks)
                return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sequence %d block %d is %d (of %d)", i, k,
                                       blk, be->num_blocks);
        }
    }
    for (int t = 0; t < b->num_tokens; t++) {
        if (b->token_ids[t] < 0 || b->token_ids[t] >= be->V)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: token %d id %d outside the vocabulary", t,
                                   b->token_ids[t]);
        if (b->slot_mapping[t] < -1 || b->slot_mapping[t] >= slots || b->positions[t] < 0)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: token %d slot %d position %d", t,
                                   b->slot_mapping[t], b->positions[t]);
    }
    for (int i = 0; i < b->num_samples; i++)
        if (b->sample_token_index[i] < 0 || b->sample_token_index[i] >= b->num_tokens ||
            (!follower(be) && !b->sample_rows[i].params))
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sample %d index %d", i,
                                   b->sample_token_index[i]);
    for (int i = 0; b->lora_slots && i < b->num_seqs; i++)
        if (b->lora_slots[i] < -1 || b->lora_slots[i] >= be->num_loras)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: lora_slots[%d] = %d outside [-1, %d adapters)",
                                   i, b->lora_slots[i], be->num_loras);
    return VESTA_OK;
}

/* Sampling rows and their token pools into the host mirrors; returns the pool length or -1. */
static long fill_samples(cuda_backend *be, const vesta_batch *b)
{
    size_t n = 0;
    for (int i = 0; i < b->num_samples; i++) {
        const vesta_sample_row *r = &b->sample_rows[i];
        const vesta_sampling_params *p = r->params;
        vk_sample_row *k = &be->hm.sample_params[i];
        memset(k, 0, sizeof *k);
        k->temperature = p->temperature;
        k->top_p = p->top_p;
        k->min_p = p->min_p;
        k->top_k = p->top_k;
        k->presence_penalty = p->presence_penalty;
        k->frequency_penalty = p->frequency_penalty;
        k->repetition_penalty = p->repetition_penalty;
        k->num_logprobs = p->logprobs;
        k->seed = r->rng_seed;
        k->offset = r->rng_offset;
        bool rep = p->repetition_penalty != 1.0f, fp = p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
        size_t need = (rep ? (size_t)r->num_prompt : 0) + ((rep || fp) ? (size_t)r->num_output : 0) +
                      (size_t)p->num_logit_bias + (size_t)r->num_eos + (size_t)p->num_stop_token_ids;
        if (n + need > be->ids_cap) return -1;
        k->prompt_off = (int)n;
        if (rep && r->num_prompt > 0) {
            memcpy(be->hm.ids_pool + n, r->prompt_ids, 4 * (size_t)r->num_prompt);
            k->num_prompt = r->num_prompt;
            n += (size_t)r->num_prompt;
        }
        k->output_off = (int)n;
        if ((rep || fp) && r->num_output > 0) {
            memcpy(be->hm.ids_pool + n, r->output_ids, 4 * (size_t)r->num_output);
            k->num_output = r->num_output;
            n += (size_t)r->num_output;
        }
        k->bias_off = (int)n;
        k->num_bias = p->num_logit_bias;
        for (int j = 0; j < p->num_logit_bias; j++) {
            be->hm.ids_pool[n] = p->logit_bias[j].token;
            be->hm.bias_pool[n++] = p->logit_bias[j].bias;
        }
        k->stop_off = (int)n;
        if (r->suppress_stop) {
            for (int j = 0; j < r->num_eos; j++) be->hm.ids_pool[n++] = r->eos_ids[j];
            for (int j = 0; j < p->num_stop_token_ids; j++) be->hm.ids_pool[n++] = p->stop_token_ids[j];
        }
        k->num_stop = (int)n - k->stop_off;
    }
    return (long)n;
}

static vesta_status cuda_execute(vesta_backend *base, const vesta_batch *b, vesta_sample_result *results,
                                 float *logits_out, vesta_error *err)
{
    cuda_backend *be = cu_of(base);
    if (!b) return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute: batch is NULL");
    vesta_status st = validate(be, b, err);
    if (st != VESTA_OK) return st;
    if (b->num_samples > 0 && !results && !follower(be))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute: results is NULL for %d samples", b->num_samples);
    if (b->num_tokens == 0) return VESTA_OK;
    CU(cudaSetDevice(be->dev));
    const int nt = b->num_tokens, ns = b->num_seqs, nsm = b->num_samples, MB = be->max_blocks;
    bool all_decode = nt == ns;
    int g = -1;
    if (all_decode && be->num_graphs > 0 && nsm == ns) {
        g = cuda_graph_for(be, ns);
        for (int i = 0; g >= 0 && i < nsm; i++)
            if (b->sample_token_index[i] != i) g = -1;
    }
    be->prof_off = g >= 0; /* a graph replays without the profile's events */
    be->prof_n = 0;
    cuda_profile_mark(be, -1);
    int rows = g >= 0 ? be->graph_bs[g] : ns; /* padded sequence count */
    int ntok = g >= 0 ? rows : nt;
    memcpy(be->hm.tokens, b->token_ids, 4 * (size_t)nt);
    if (be->comm) cuda_tp_local_ids(be, be->hm.tokens, nt); /* vocabulary-parallel embedding */
    memcpy(be->hm.positions, b->positions, 4 * (size_t)nt);
    memcpy(be->hm.slots, b->slot_mapping, 4 * (size_t)nt);
    memcpy(be->hm.query_start, b->query_start, 4 * (size_t)(ns + 1));
    memcpy(be->hm.context_lens, b->context_lens, 4 * (size_t)ns);
    int copy_blocks = b->max_blocks_per_seq < MB ? b->max_blocks_per_seq : MB;
    for (int i = 0; i < ns; i++) {
        memcpy(be->hm.block_tables + (size_t)i * MB, b->block_tables + (size_t)i * b->max_blocks_per_seq,
               4 * (size_t)copy_blocks);
    }
    for (int i = ns; i < rows; i++) {                                     /* graph padding: harmless decode rows */
        be->hm.tokens[i] = be->comm && be->shard.vocab0 > 0 ? be->Vr : 0; /* token 0, or the zero row */
        be->hm.positions[i] = 0;
        be->hm.slots[i] = -1;
        be->hm.query_start[i + 1] = i + 1;
        be->hm.context_lens[i] = 1;
        memset(be->hm.block_tables + (size_t)i * MB, 0, 4 * (size_t)MB);
    }
    /* graphs captured with adapters loaded hold the LoRA kernels; eager steps run them when a row
     * has an adapter */
    const bool lora_rows = be->num_loras > 0 && cuda_lora_rows(be, b, g >= 0 ? rows : nt);
    be->lora_step = lora_rows;
    cuda_lora_plan(be, b, g >= 0);
    int nsamp_rows = g >= 0 ? rows : nsm;
    for (int i = 0; i < nsm; i++) be->hm.sample_idx[i] = b->sample_token_index[i];
    for (int i = nsm; i < nsamp_rows; i++) be->hm.sample_idx[i] = i;
    int ntiles = 0;
    be->step_wide = false;
    if (be->batch_invariant) { /* every row through the prefill kernel, graph padding included */
        ntiles = vk_prefill_tiles_build(be->hm.query_start, NULL, rows, VK_TILES_INVARIANT, be->H, be->KVH,
                                        be->hm.tiles, be->tiles_cap);
        if (ntiles < 0) return vesta_error_set(err, VESTA_ERR_INTERNAL, "execute: prefill tile list overflow");
    } else if (!all_decode) {
        be->step_wide = be->prefill_wide == VK_WIDE_WGMMA ||
                        (be->prefill_wide > 0 && vk_prefill_wide(b->query_start, ns, be->H, be->KVH,
                                                                 b->max_context_len > 0 ? b->max_context_len : 1));
        const int mode = (be->prefill_group ? VK_TILES_GROUP : VK_TILES_HEAD) | (be->step_wide ? VK_TILES_WIDE : 0) |
                         (be->prefill_longest_first ? VK_TILES_LONGEST_FIRST : 0);
        ntiles = vk_prefill_tiles_build(b->query_start, b->context_lens, ns, mode, be->H, be->KVH, be->hm.tiles,
                                        be->tiles_cap);
        if (ntiles < 0) return vesta_error_set(err, VESTA_ERR_INTERNAL, "execute: prefill tile list overflow");
    }
    long pool = follower(be) ? 0 : fill_samples(be, b);
    /* Under TP the other ranks run this step's forward pass (and wait in its collectives) whatever
     * rank 0 thinks of its sampling rows: run it, then fail the step. */
    const bool pool_bad = pool < 0;
    if (pool_bad && !be->comm)
        return vesta_error_set(err, VESTA_ERR_LIMIT, "execute: penalty token lists exceed the planned %zu ids",
                               be->ids_cap);
    if (pool_bad) pool = 0;
    cudaStream_t s = be->stream;
#define UP(field, count)                                                                                               \
    CU(cudaMemcpyAsync(be->m.field, be->hm.field, sizeof(*be->hm.field) * (size_t)(count), cudaMemcpyHostToDevice, s))
    UP(tokens, ntok);
    UP(positions, ntok);
    UP(slots, ntok);
    UP(query_start, rows + 1);
    UP(context_lens, rows);
    UP(block_tables, (size_t)rows * MB);
    if (nsamp_rows) UP(sample_idx, nsamp_rows);
    if (be->num_loras > 0) UP(lora_rows, ntok);
    if (ntiles) UP(tiles, 2 * ntiles);
    if (nsm && !follower(be)) UP(sample_params, nsm);
    if (pool) {
        UP(ids_pool, pool);
        UP(bias_pool, pool);
    }
#undef UP
    cuda_profile_mark(be, CUDA_PROF_UPLOAD);
    if (g >= 0) {
        CU(cudaGraphLaunch(be->graphs[g], s));
    } else {
        bool has_decode = false;
        for (int i = 0; i < ns && !has_decode; i++) has_decode = b->query_start[i + 1] - b->query_start[i] == 1;
        if ((st = cuda_forward(be, nt, ns, nsm, b->max_context_len > 0 ? b->max_context_len : 1, has_decode, ntiles,
                               err)) != VESTA_OK)
            goto fail_quiet;
    }
    if (follower(be) || pool_bad) { /* the forward pass (with its collectives) is
                                       this rank's whole step */
        if ((st = cuda_stream_wait(be, err)) != VESTA_OK) goto fail_quiet;
        if (pool_bad)
            return vesta_error_set(err, VESTA_ERR_LIMIT, "execute: penalty token lists exceed the planned %zu ids",
                                   be->ids_cap);
        return VESTA_OK;
    }
    if (nsm) {
        CU(vk_sample(be->logits, nsm, be->V, be->m.sample_params, be->m.ids_pool, be->m.bias_pool, be->swork,
                     be->scounts, be->m.sample_out, s));
        cuda_profile_mark(be, CUDA_PROF_SAMPLE);
        CU(cudaMemcpyAsync(be->hm.sample_out, be->m.sample_out, sizeof(vk_sample_out) * (size_t)nsm,
                           cudaMemcpyDeviceToHost, s));
    }
    if (logits_out && nsm)
        CU(cudaMemcpyAsync(be->hlogits, be->logits, sizeof(float) * (size_t)nsm * be->V, cudaMemcpyDeviceToHost, s));
    if ((st = cuda_stream_wait(be, err)) != VESTA_OK) goto fail_quiet;
    cuda_profile_collect(be, !all_decode);
    if (logits_out && nsm) memcpy(logits_out, be->hlogits, sizeof(float) * (size_t)nsm * be->V);
    for (int i = 0; i < nsm; i++) {
        const vk_sample_out *o = &be->hm.sample_out[i];
        const vesta_sampling_params *p = b->sample_rows[i].params;
        vesta_sample_result *r = &results[i];
        if (o->token < 0 || o->token >= be->V)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "sample row %d: every token is masked", i);
        r->token = o->token;
        r->logprob = o->logprob;
        r->num_top = 0;
        if (p->logprobs >= 0) {
            int nt2 = p->logprobs < VESTA_MAX_LOGPROBS ? p->logprobs : VESTA_MAX_LOGPROBS;
            if (nt2 > be->V) nt2 = be->V;
            r->num_top = nt2;
            for (int j = 0; j < nt2; j++) {
                r->top_ids[j] = o->top_ids[j];
                r->top_logprobs[j] = o->top_logprobs[j];
            }
        }
    }
    return VESTA_OK;
fail:
fail_quiet:
    /* leave the stream idle so the next step starts clean (a sticky error fails it too); under
     * TP a failed step has aborted the communicator, so the stream cannot be stuck on a peer */
    if (!be->comm || cuda_stream_wait(be, &(vesta_error){0}) != VESTA_OK) cudaStreamSynchronize(be->stream);
    if (err && err->code == VESTA_OK) vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: step failed");
    return VESTA_ERR_BACKEND;
}

static void cuda_destroy(vesta_backend *base)
{
    cuda_backend *be = cu_of(base);
    if (!be) return;
    cudaSetDevice(be->dev);
    if (be->stream && (!be->comm || cuda_stream_wait(be, &(vesta_error){0}) != VESTA_OK))
        cudaStreamSynchronize(be->stream); /* after an abort nothing waits on a peer */
    for (int i = 0; i < be->num_graphs; i++) cudaGraphExecDestroy(be->graphs[i]);
#ifdef VESTA_HAVE_NCCL
    vesta_tp_p2p_release(be->p2p); /* before the communicator it watches */
#endif
    vesta_tp_comm_release(be->comm); /* aborts a failed one rather than waiting for peers */
    if (be->step_done) cudaEventDestroy(be->step_done);
    cuda_profile_report(be);
    cuda_profile_dispose(be);
    cuda_gemm_invariant_dispose(be);
    cuda_gemm_dispose(be);
    if (be->blas) cublasDestroy(be->blas);
    cuda_lora_free(be);
    cudaFree(be->kv);
    cudaFree(be->kv_ptrs);
    cudaFree(be->aarena);
    cudaFree(be->warena);
    cudaFree(be->blas_ws);
    cudaFree(be->gs_ws);
    cudaFree(be->inv_freq);
    if (be->hpin) cudaFreeHost(be->hpin);
    if (be->stream) cudaStreamDestroy(be->stream);
    free(be->layers);
    free(be);
}

static const vesta_backend_ops cuda_ops = {
    .name = "cuda",
    .kv_block_bytes = cuda_kv_block_bytes,
    .kv_budget_bytes = cuda_kv_budget_bytes,
    .kv_alloc = cuda_kv_alloc,
    .execute = cuda_execute,
    .copy_blocks = cuda_copy_blocks,
    .lora_add = cuda_lora_add,
    .destroy = cuda_destroy,
};

static vesta_status check_config(const vesta_model_config *c, const vesta_backend_options *o, vesta_error *err)
{
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_layers <= 0 ||
        c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model config: a dimension is not positive");
    if (c->num_heads % c->num_kv_heads || c->num_heads / c->num_kv_heads > 8)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "cuda backend: %d query heads over %d KV heads (GQA "
                               "groups of at most 8 are supported)",
                               c->num_heads, c->num_kv_heads);
    if (c->head_dim != 64 && c->head_dim != 128)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "cuda backend: head_dim %d (64 and 128 are supported)",
                               c->head_dim);
    if (c->hidden_size % 8 || c->intermediate_size % 8)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "cuda backend: hidden %d / intermediate %d not multiples "
                               "of 8",
                               c->hidden_size, c->intermediate_size);
    if (c->sliding_window > 0 && c->sliding_window < o->max_model_len)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                               "cuda backend: sliding-window attention (window %d < "
                               "max_model_len %d) is not implemented; lower --max-model-len",
                               c->sliding_window, o->max_model_len);
    if (o->max_num_batched_tokens <= 0 || o->max_num_seqs <= 0 || o->max_model_len <= 0 || o->block_size <= 0 ||
        !(o->gpu_memory_utilization > 0.0 && o->gpu_memory_utilization <= 1.0))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "cuda backend: options out of range (tokens %d, seqs %d, "
                               "model len %d, block %d, utilization %g)",
                               o->max_num_batched_tokens, o->max_num_seqs, o->max_model_len, o->block_size,
                               o->gpu_memory_utilization);
    return VESTA_OK;
}

static size_t al(size_t n) { return (n + 255) / 256 * 256; }

/* Arena layout: each plan_* function runs twice, first with base NULL to count the bytes, then
 * with the allocated base to place every buffer. */
#define A(ptr, bytes)                                                                                                  \
    do {                                                                                                               \
        if (base) *(void **)&(ptr) = base + off;                                                                       \
        off += al(bytes);                                                                                              \
    } while (0)

/* The per-step metadata (token ids, positions, slots, block tables, sampling rows): the same
 * layout on the device (be->m) and in its pinned host mirror (be->hm). */
static size_t plan_meta(const cuda_backend *be, cuda_meta *m, char *base, size_t off)
{
    const size_t T = (size_t)be->max_tokens, S = (size_t)be->max_seqs;
    A(m->tokens, T * 4);
    A(m->positions, T * 4);
    A(m->slots, T * 4);
    A(m->query_start, (S + 1) * 4);
    A(m->context_lens, S * 4);
    A(m->block_tables, S * be->max_blocks * 4);
    A(m->tiles, (size_t)be->tiles_cap * 2 * 4);
    A(m->sample_idx, S * 4);
    A(m->lora_rows, T * 4);
    A(m->sample_params, S * sizeof(vk_sample_row));
    A(m->ids_pool, be->ids_cap * 4);
    A(m->bias_pool, be->ids_cap * 4);
    A(m->sample_out, S * sizeof(vk_sample_out));
    return off;
}

/* Activation buffers, sized for the largest step: one arena. */
static size_t plan_activations(cuda_backend *be, char *base)
{
    size_t off = 0;
    const size_t T = (size_t)be->max_tokens, S = (size_t)be->max_seqs;
    A(be->x, T * be->Hd * 2);
    A(be->h, T * be->Hd * 2);
    /* the O and down products' rows where they do not add them to x (cuda_gemm_adds) */
    const size_t tmp_rows = be->residual_add && T > CUDA_SMALL_ROWS ? CUDA_SMALL_ROWS : T;
    A(be->tmp, tmp_rows * be->Hd * 2);
    /* Three groups whose lives do not meet share one region: q|k|v and the attention output
     * (a layer's QKV product to its O product), gate|up and the SiLU output (its gate|up product
     * to its down product), the logits and the sampler's work (the LM head, sampling and the
     * raw-logit copy, after the last layer). One stream orders them, and a programmatic dependent
     * writes nothing before its predecessor is done. At 16,384 tokens and 1,024 sequences of a
     * 128,256-token vocabulary: 0.34, 1.41 and 1.05 GB in 1.41. */
    const size_t att = al(T * be->W * 2) + al(T * be->H * be->D * 2);
    const size_t mlp = al(T * 2 * be->F * 2) + al(T * be->F * 2);
    const size_t post = al(S * be->V * 4) + al(vk_sample_work_bytes(be->max_seqs, be->V));
    if (base) {
        be->qkv = base + off;
        be->attn = base + off + al(T * be->W * 2);
        be->gu = base + off;
        be->act = base + off + al(T * 2 * be->F * 2);
        be->logits = (float *)(base + off);
        be->swork = (float *)(base + off + al(S * be->V * 4));
    }
    off += att > mlp ? (att > post ? att : post) : (mlp > post ? mlp : post);
    A(be->sx, S * be->Hd * 2);
    A(be->stmp, (S < tmp_rows ? S : tmp_rows) * be->Hd * 2);
    A(be->sh, S * be->Hd * 2);
    A(be->attn_scratch, vk_attention_scratch_bytes(be->max_seqs, be->H, be->D, be->max_blocks * be->opts.block_size));
    if (be->comm) {
        A(be->lslice, S * be->Vr * 4);
        A(be->gathered, (size_t)be->shard.size * S * be->Vr * 4);
    }
    A(be->scounts, S * be->V * 4);
    return plan_meta(be, &be->m, base, off);
}

/* The pinned host mirrors of the metadata, plus raw-logit rows. */
static size_t plan_host(cuda_backend *be, char *base)
{
    size_t off = plan_meta(be, &be->hm, base, 0);
    A(be->hlogits, (size_t)be->max_seqs * be->V * 4);
    return off;
}
#undef A

/* VESTA_GEMM_TUNE=0|1|2: the products tuned at start-up off / on (the default) / on with a line per
 * step size (docs/cuda-backend.md); read once at creation. A malformed value keeps the default. */
static int env_int(const char *name, int def, int lo, int hi)
{
    const char *v = getenv(name);
    char *end = NULL;
    long x = v && *v ? strtol(v, &end, 10) : def;
    if (v && *v && (*end || x < lo || x > hi)) {
        fprintf(stderr, "cuda: ignoring %s=%s (an integer in [%d, %d] expected)\n", name, v, lo, hi);
        return def;
    }
    return (int)x;
}

#ifdef VESTA_HAVE_NCCL
/* The peer-to-peer all-reduce (p2p.h) for all-reduces of up to VESTA_TP_P2P_MAX_KB per rank (512 by
 * default: a step of up to 64 rows on the 8B shape, 32 on the 70B one; faster than NCCL at every
 * size to 1 MB on 2 and 4 H200s, docs/tensor-parallel.md); every rank must take part, so it is set
 * up even where this rank's value is unusable (0 among them): the ranks then agree on NCCL. */
static vesta_status p2p_start(cuda_backend *be, vesta_error *err)
{
    const int kb = env_int("VESTA_TP_P2P_MAX_KB", 512, 0, 16384);
    vesta_error e = {0};
    be->p2p = vesta_tp_p2p_create(be->comm, be->stream, (size_t)kb << 10, &e);
    if (be->p2p) {
        if (be->shard.rank == 0)
            fprintf(stderr, "tp: peer-to-peer all-reduce for up to %d KB per rank, NCCL above\n", kb);
        return VESTA_OK;
    }
    if (e.code != VESTA_ERR_UNSUPPORTED) {
        if (err) *err = e;
        return e.code;
    }
    fprintf(stderr, "tp: %s; NCCL for every all-reduce\n", e.msg); /* every rank: each says its reason */
    return VESTA_OK;
}
#endif

/* VESTA_DECODE_ATTENTION=0|1|2|3|5|7, or 50 + i / 70 + i for version 5's / 7's configuration i:
 * the decode-attention kernel (vesta_kernels.h; 0, the default, is production's choice per batch)
 * -- for side-by-side benchmarks of the versions, as vLLM's VLLM_ATTENTION_BACKEND picks an
 * attention backend. Other values keep the default. */
static int env_decode_attention(void)
{
    int v = env_int("VESTA_DECODE_ATTENTION", 0, 0, VK_DECODE_V7_VARIANT_BASE + VK_DECODE_V7_VARIANTS - 1);
    if (v == 4 || v == 6 || (v > 7 && v < VK_DECODE_V5_VARIANT_BASE) ||
        (v >= VK_DECODE_V5_VARIANT_BASE + VK_DECODE_V5_VARIANTS && v < VK_DECODE_V7_VARIANT_BASE)) {
        fprintf(stderr, "cuda: ignoring VESTA_DECODE_ATTENTION=%d (no such version; 4 and 6 were removed)\n", v);
        return 0;
    }
    return v;
}

/* vk_gemm_stream's workspace, for the largest product of this rank (zeroed: its counters). */
static vesta_status alloc_stream_ws(cuda_backend *be, vesta_error *err)
{
    int max_out = be->W;
    if (2 * be->F > max_out) max_out = 2 * be->F;
    if (be->Hd > max_out) max_out = be->Hd;
    if (be->V > max_out) max_out = be->V; /* the LM head (a rank's slice under TP is smaller) */
    size_t bytes = vk_gemm_stream_ws_bytes(max_out);
    CU(bytes ? cudaSuccess : cudaErrorInvalidValue);
    CU(cudaMalloc(&be->gs_ws, bytes));
    CU(cudaMemset(be->gs_ws, 0, bytes));
    be->gs_ws_bytes = bytes;
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* The step sizes whose products are tuned: every decode-graph batch size and the largest step (full
 * chunked-prefill steps). */
static vesta_status tune_products(cuda_backend *be, vesta_error *err)
{
    int ns[CUDA_MAX_GRAPHS + 1];
    int n = cuda_decode_buckets(be, ns);
    ns[n++] = be->max_tokens;
    return cuda_gemm_tune(be, ns, n, err);
}

/* nccl_id == NULL: the whole model on one GPU. Otherwise rank opts->tp_rank's shard, joined to the
 * replica's NCCL communicator. */
static vesta_backend *create(const vesta_model_file *mf, const vesta_backend_options *opts, const char *nccl_id,
                             int timeout_ms, vesta_error *err)
{
    if (!mf || !opts) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "cuda backend: model file or options is NULL");
        return NULL;
    }
    const vesta_model_config *full = vesta_model_file_config(mf);
    vesta_model_config local;
    vesta_tp_shard shard;
    if (vesta_tp_check_batch_invariant(opts, err) != VESTA_OK) return NULL; /* as the replica checks */
    if (!nccl_id && opts->tp_size != 1) {
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                        "cuda backend: tp_size %d needs a tensor-parallel replica "
                        "(`--tensor-parallel-size` starts one)",
                        opts->tp_size);
        return NULL;
    }
    if (opts->tp_size < 1 || opts->tp_rank < 0 || opts->tp_rank >= opts->tp_size) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "cuda backend: tp_rank %d of tp_size %d", opts->tp_rank,
                        opts->tp_size);
        return NULL;
    }
    if (full->num_heads <= 0 || full->num_kv_heads <= 0 || full->intermediate_size <= 0 || full->vocab_size <= 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model config: a dimension is not positive");
        return NULL;
    }
    if (vesta_tp_shard_plan(full, opts->tp_rank, opts->tp_size, &shard, &local, err) != VESTA_OK) return NULL;
    /* the shard's shapes must suit the kernels (e.g. intermediate / N a multiple of 8) */
    const vesta_model_config *c = &local;
    if (check_config(c, opts, err) != VESTA_OK) return NULL;
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess || ndev <= opts->device || opts->device < 0) {
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "cuda backend: no CUDA device %d (%d found%s%s)", opts->device,
                        ce == cudaSuccess ? ndev : 0, ce == cudaSuccess ? "" : ": ",
                        ce == cudaSuccess ? "" : cudaGetErrorString(ce));
        return NULL;
    }
    cuda_backend *be = calloc(1, sizeof *be);
    if (!be) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "cuda backend: out of host memory");
        return NULL;
    }
    be->base.ops = &cuda_ops;
    be->base.config = *c; /* the shard's (local heads, KV heads, intermediate
                             size; full vocabulary) */
    be->shard = shard;
    be->Vr = shard.vocab_rows;
    be->Ve = nccl_id ? shard.vocab_rows + 1 : c->vocab_size;
    be->opts = *opts;
    be->dev = opts->device;
    be->Hd = c->hidden_size;
    be->H = c->num_heads;
    be->KVH = c->num_kv_heads;
    be->D = c->head_dim;
    be->F = c->intermediate_size;
    be->V = c->vocab_size;
    be->L = c->num_layers;
    be->W = (be->H + 2 * be->KVH) * be->D;
    be->max_seqs = opts->max_num_seqs;
    be->max_tokens =
        opts->max_num_batched_tokens > opts->max_num_seqs ? opts->max_num_batched_tokens : opts->max_num_seqs;
    be->max_blocks = (opts->max_model_len + opts->block_size - 1) / opts->block_size;
    be->tiles_cap = vk_prefill_tiles_max(be->max_tokens, be->max_seqs);
    be->ids_cap = (size_t)be->max_seqs *
                  ((size_t)opts->max_model_len + VESTA_MAX_LOGIT_BIAS + VESTA_MAX_STOP_TOKEN_IDS + VESTA_MAX_EOS_IDS);
    be->attn_scale = (float)pow((double)be->D, -0.5);
    be->kv_reserve = KV_RESERVE;
    float *invf = NULL;
    vesta_status st;
    CU(cudaSetDevice(be->dev));
    struct cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, be->dev));
    be->total_mem = prop.totalGlobalMem;
    CU(cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking));
    if (nccl_id) {
#ifdef VESTA_HAVE_NCCL
        /* joined before the weights load: a rank that fails to load is then a dead peer to the
         * others (their first step or KV allocation fails) instead of a rank never joining */
        if (!(be->comm = vesta_tp_comm_nccl_create_timeout(nccl_id, opts->tp_rank, opts->tp_size, be->dev, be->stream,
                                                           timeout_ms, err)))
            goto fail_quiet;
        CU(cudaEventCreateWithFlags(&be->step_done, cudaEventDisableTiming));
        if (!opts->disable_custom_all_reduce && p2p_start(be, err) != VESTA_OK) goto fail_quiet;
#else
        (void)timeout_ms;
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "cuda backend: this build has no NCCL (tensor parallelism)");
        goto fail_quiet;
#endif
    }
    CB(cublasCreate(&be->blas));
    CB(cublasSetStream(be->blas, be->stream));
    be->blas_ws_bytes = cuda_gemm_workspace_bytes();
    CU(cudaMalloc(&be->blas_ws, be->blas_ws_bytes));
    CB(cublasSetWorkspace(be->blas, be->blas_ws, be->blas_ws_bytes)); /* no allocation while serving */
    CB(cublasSetMathMode(be->blas, CUBLAS_DEFAULT_MATH));
    if (cuda_gemm_init(be, err) != VESTA_OK) goto fail_quiet;
    be->gemm_tune = env_int("VESTA_GEMM_TUNE", 1, 0, 2);
    be->decode_attention = env_decode_attention();
    be->gemm_stream = env_int("VESTA_GEMM_STREAM", -1, -1, 3);
    if (be->gemm_stream == 3 && !vk_gemm_stream_has_tma()) {
        fprintf(stderr, "cuda: VESTA_GEMM_STREAM=3 needs an sm_90a GPU and build: cuBLAS instead\n");
        be->gemm_stream = 0;
    }
    /* the default, version 3 for steps of 5-48 rows, where it was measured faster: one
     * H100 (sm_90a), not a tensor-parallel rank's slices, not batch-invariant mode's products */
    if (be->gemm_stream < 0 && (!vk_gemm_stream_has_tma() || be->comm || opts->batch_invariant)) be->gemm_stream = 0;
    const int pdl = env_int("VESTA_PDL", 2, 0, 2);
    be->gemm_pdl = pdl >= 1;
    be->kernel_pdl = pdl >= 2 && vk_pdl_supported();
    /* VESTA_PREFILL_GROUP=0|1: prefill attention blocks per KV group (1) or per head (0) */
    be->prefill_group = env_int("VESTA_PREFILL_GROUP", 1, 0, 1) && be->H % be->KVH == 0 && be->H / be->KVH >= 2 &&
                        be->H / be->KVH <= VK_PREFILL_MAX_GROUP;
    /* VESTA_PREFILL_ORDER=0|1: a sequence's prefill tiles in row order (0) or longest first (1) */
    be->prefill_longest_first = env_int("VESTA_PREFILL_ORDER", 1, 0, 1);
    /* VESTA_PREFILL_WIDE=0|1|2: wide prefill tiles on wgmma for every step with prefill rows (2, the
     * default where vk_prefill_wide_wgmma_supported; else 1), on mma.sync for the steps
     * vk_prefill_wide picks (1), or never (0) */
    const int wgmma = vk_prefill_wide_wgmma_supported(be->D, opts->block_size);
    const int wide_default = wgmma ? VK_WIDE_WGMMA : VK_WIDE_MMA;
    be->prefill_wide = env_int("VESTA_PREFILL_WIDE", wide_default, 0, VK_WIDE_WGMMA);
    if (be->prefill_wide == VK_WIDE_WGMMA && !wgmma) be->prefill_wide = VK_WIDE_MMA;
    if (!be->prefill_group || opts->batch_invariant || !vk_prefill_wide_supported(be->D)) be->prefill_wide = 0;
    be->batch_invariant = opts->batch_invariant;
    /* VESTA_RESIDUAL_ADD=0|1: where cuBLAS computes them (cuda_gemm_adds), the O and down products
     * add their rows to the residual stream in their epilogue (1, the default; one rounding of the
     * sum, and the norm after them reads one row instead of two and writes one instead of two), or
     * store them for the norm kernel to add (0). Not under TP, where the rows are summed over the
     * ranks first, nor in batch-invariant mode, whose products store only. */
    be->residual_add = env_int("VESTA_RESIDUAL_ADD", 1, 0, 1) && !be->comm && !opts->batch_invariant;
    if (cuda_profile_init(be, err) != VESTA_OK) goto fail_quiet;

    /* RoPE frequencies, computed on the host the way HF does. */
    if (!(c->rope_theta > 0.0f)) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model config: rope_theta %g", c->rope_theta);
        goto fail_quiet;
    }
    vk_rope_config rc = {be->D,
                         c->rope_theta,
                         (int)c->rope_scaling,
                         c->rope_factor,
                         c->rope_low_freq_factor,
                         c->rope_high_freq_factor,
                         c->rope_original_max_position};
    invf = malloc(sizeof(float) * (size_t)be->D / 2);
    if (!invf) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "cuda backend: out of host memory");
        goto fail_quiet;
    }
    vk_rope_inv_freq(&rc, invf);
    CU(cudaMalloc((void **)&be->inv_freq, sizeof(float) * (size_t)be->D / 2));
    CU(cudaMemcpy(be->inv_freq, invf, sizeof(float) * (size_t)be->D / 2, cudaMemcpyHostToDevice));
    free(invf);
    invf = NULL;

    if ((st = cuda_weights_load(be, mf, err)) != VESTA_OK) goto fail_quiet;
    if (be->gemm_stream && alloc_stream_ws(be, err) != VESTA_OK) goto fail_quiet;
    be->abytes = plan_activations(be, NULL);
    ce = cudaMalloc(&be->aarena, be->abytes);
    if (ce != cudaSuccess) {
        be->aarena = NULL;
        vesta_error_set(err, VESTA_ERR_NOMEM, "cuda backend: activations for %d tokens need %.2f GiB: %s",
                        be->max_tokens, be->abytes / GIB, cudaGetErrorString(ce));
        goto fail_quiet;
    }
    plan_activations(be, be->aarena);
    CU(cudaMemset(be->scounts, 0, (size_t)be->max_seqs * be->V * 4));
    be->hpin_bytes = plan_host(be, NULL);
    CU(cudaMallocHost(&be->hpin, be->hpin_bytes));
    plan_host(be, be->hpin);
    if (be->batch_invariant) {
        if (cuda_gemm_invariant_init(be, err) != VESTA_OK) goto fail_quiet;
    } else if (be->gemm_tune && tune_products(be, err) != VESTA_OK) {
        goto fail_quiet;
    }
    fprintf(stderr, "cuda: %s, %d SMs, %.1f GiB; weights %.2f GiB (%s) in %.2f s\n", prop.name,
            prop.multiProcessorCount, prop.totalGlobalMem / GIB, be->wbytes / GIB,
            opts->load_dummy ? "dummy" : vesta_model_file_path(mf), be->load_seconds);
    return &be->base;
fail:
fail_quiet:
    free(invf);
    cuda_destroy(&be->base);
    return NULL;
}

vesta_backend *vesta_backend_cuda_create(const vesta_model_file *mf, const vesta_backend_options *opts,
                                         vesta_error *err)
{
    return create(mf, opts, NULL, 0, err);
}

vesta_backend *vesta_backend_cuda_create_tp(const vesta_model_file *mf, const vesta_backend_options *opts,
                                            const char *nccl_id, int timeout_ms, vesta_error *err)
{
    if (!nccl_id) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "cuda backend: a tensor-parallel rank needs the NCCL id");
        return NULL;
    }
    return create(mf, opts, nccl_id, timeout_ms, err);
}
