/* The forward pass: the same sequence of launches for eager steps and for the captured decode
 * graphs (so the two cannot drift). Inputs are the device metadata buffers (cuda_meta). */
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"

#define K(call) CU(call)
#define MARK(cat) cuda_profile_mark(be, CUDA_PROF_##cat)

static vesta_status gemm(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                         cuda_gemm_out mode, vesta_error *err)
{
    return cuda_gemm(be, x, n, in, w, out, y, mode, err);
}

/* Tensor parallelism: the peer-to-peer all-reduce's context when it takes `bytes` per rank
 * (every rank decides alike: same sizes, same threshold), else NULL for NCCL. */
static const vk_allreduce_ctx *p2p_for(const cuda_backend *be, size_t bytes)
{
#ifdef VESTA_HAVE_NCCL
    return vesta_tp_p2p_ctx(be->p2p, bytes);
#else
    (void)be, (void)bytes;
    return NULL;
#endif
}

/* Tensor parallelism: the sum over ranks of a bf16 [n] buffer, in place, on the compute stream
 * (captured into decode graphs like any kernel). */
static vesta_status all_reduce(cuda_backend *be, void *buf, size_t n, vesta_error *err)
{
    const vk_allreduce_ctx *p2p = p2p_for(be, n * 2);
    if (p2p) {
        K(vk_allreduce(VK_BF16, p2p, buf, n, be->stream));
        return VESTA_OK;
    }
    return vesta_tp_comm_all_reduce_sum_dtype(be->comm, buf, n, VESTA_TP_BF16, err);
fail:
    return VESTA_ERR_BACKEND;
}

/* Where the O and down products of n rows put them: added to the residual stream x in their
 * epilogue (cuda_gemm_adds), or into tmp for reduce_add_norm to add. */
static void *residual_out(const cuda_backend *be, int n) { return cuda_gemm_adds(be, n) ? be->x : be->tmp; }
static cuda_gemm_out residual_mode(const cuda_backend *be, int n)
{
    return cuda_gemm_adds(be, n) ? CUDA_GEMM_ADD : CUDA_GEMM_STORE;
}

/* x += the sum over ranks of tmp (tmp alone without TP; nothing where the product added its rows
 * already); h = RMSNorm(x) * w. One kernel where the peer-to-peer all-reduce takes the rows: the
 * same bits as the two steps. */
static vesta_status reduce_add_norm(cuda_backend *be, int n, const void *w, float eps, vesta_error *err)
{
    if (cuda_gemm_adds(be, n)) {
        K(vk_add_rmsnorm(VK_BF16, be->h, be->x, NULL, w, n, be->Hd, eps, be->kernel_pdl, be->stream));
        MARK(NORM);
        return VESTA_OK;
    }
    const size_t elems = (size_t)n * (size_t)be->Hd;
    const vk_allreduce_ctx *p2p = be->comm ? p2p_for(be, elems * 2) : NULL;
    if (p2p) {
        K(vk_allreduce_add_rmsnorm(VK_BF16, p2p, be->h, be->x, be->tmp, w, n, be->Hd, eps, be->stream));
        MARK(COMM);
        return VESTA_OK;
    }
    if (be->comm) {
        if (all_reduce(be, be->tmp, elems, err)) return VESTA_ERR_BACKEND;
        MARK(COMM);
    }
    K(vk_add_rmsnorm(VK_BF16, be->h, be->x, be->tmp, w, n, be->Hd, eps, be->kernel_pdl, be->stream));
    MARK(NORM);
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Vocabulary-parallel LM head: this rank's slice of the fp32 logits of n rows, every rank's slice
 * gathered ([rank][n][Vr]), then laid out as [n][V] in be->logits with the padding dropped. */
static vesta_status lm_head_tp(cuda_backend *be, int n, vesta_error *err)
{
    const int V = be->V, Vr = be->Vr;
    if (gemm(be, be->sh, n, be->Hd, be->lm_head, Vr, be->lslice, CUDA_GEMM_F32, err)) return VESTA_ERR_BACKEND;
    const size_t part = (size_t)n * (size_t)Vr;
    if (vesta_tp_comm_all_gather(be->comm, be->lslice, part, be->gathered, err) != VESTA_OK) return VESTA_ERR_BACKEND;
    for (int r = 0; r < be->shard.size; r++) {
        const int v0 = r * Vr, nv = V - v0 < Vr ? V - v0 : Vr;
        if (nv <= 0) break;
        CU(cudaMemcpy2DAsync(be->logits + v0, sizeof(float) * (size_t)V, be->gathered + (size_t)r * part,
                             sizeof(float) * (size_t)Vr, sizeof(float) * (size_t)nv, (size_t)n,
                             cudaMemcpyDeviceToDevice, be->stream));
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

static void *kcache(cuda_backend *be, int l, int v)
{
    size_t per = be->kv_bytes / (size_t)(2 * be->L);
    return (char *)be->kv + (size_t)(2 * l + v) * per;
}

/* One layer over the step's n rows. */
static vesta_status layer_forward(cuda_backend *be, int l, int n, vk_attention_args *a, float eps, vesta_error *err)
{
    const cuda_layer *y = &be->layers[l];
    const int Hd = be->Hd, qd = be->H * be->D;
    cudaStream_t s = be->stream;
    if (l == 0) { /* later layers: the previous layer's last reduce_add_norm */
        K(vk_add_rmsnorm(VK_BF16, be->h, be->x, NULL, y->ln1, n, Hd, eps, be->kernel_pdl, s));
        MARK(NORM);
    }
    if (gemm(be, be->h, n, Hd, y->wqkv, be->W, be->qkv, CUDA_GEMM_STORE, err)) return VESTA_ERR_BACKEND;
    if (cuda_lora_apply(be, l, VESTA_LORA_Q, 3, be->h, be->qkv, be->W, n, err)) return VESTA_ERR_BACKEND;
    MARK(QKV);
    a->k_cache = kcache(be, l, 0);
    a->v_cache = kcache(be, l, 1);
    K(vk_rope_kv_write(VK_BF16, be->qkv, y->bqkv, be->m.positions, be->m.slots, be->inv_freq, (void *)a->k_cache,
                       (void *)a->v_cache, n, be->H, be->KVH, be->D, be->kernel_pdl, s));
    MARK(ROPE);
    K(vk_attention_v(a, be->decode_attention, 2, s));
    MARK(ATTN);
    if (gemm(be, be->attn, n, qd, y->wo, Hd, residual_out(be, n), residual_mode(be, n), err)) return VESTA_ERR_BACKEND;
    if (cuda_lora_apply(be, l, VESTA_LORA_O, 1, be->attn, residual_out(be, n), Hd, n, err)) return VESTA_ERR_BACKEND;
    MARK(O);
    if (reduce_add_norm(be, n, y->ln2, eps, err)) return VESTA_ERR_BACKEND; /* o_proj's rows split under TP */
    if (gemm(be, be->h, n, Hd, y->wgu, 2 * be->F, be->gu, CUDA_GEMM_STORE, err)) return VESTA_ERR_BACKEND;
    if (cuda_lora_apply(be, l, VESTA_LORA_GATE, 2, be->h, be->gu, 2 * be->F, n, err)) return VESTA_ERR_BACKEND;
    MARK(GU);
    K(vk_silu_and_mul(VK_BF16, be->act, be->gu, n, be->F, be->kernel_pdl, s));
    MARK(SILU);
    if (gemm(be, be->act, n, be->F, y->wdown, Hd, residual_out(be, n), residual_mode(be, n), err) ||
        cuda_lora_apply(be, l, VESTA_LORA_DOWN, 1, be->act, residual_out(be, n), Hd, n, err))
        return VESTA_ERR_BACKEND;
    MARK(DOWN);
    /* down's rows split under TP; the next layer's input norm here; after the last layer the final
     * norm takes only the sampled rows (cuda_forward) */
    if (l + 1 < be->L) return reduce_add_norm(be, n, be->layers[l + 1].ln1, eps, err);
    if (be->comm && all_reduce(be, be->tmp, (size_t)n * Hd, err)) return VESTA_ERR_BACKEND;
    if (be->comm) MARK(COMM);
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

static void attention_args(cuda_backend *be, vk_attention_args *a, int nseq, int max_ctx, bool has_decode, int ntiles)
{
    memset(a, 0, sizeof *a);
    a->dt = VK_BF16;
    a->out = be->attn;
    a->q = be->qkv;
    a->q_stride = be->W;
    a->query_start = be->m.query_start;
    a->context_lens = be->m.context_lens;
    a->block_tables = be->m.block_tables;
    a->num_seqs = nseq;
    a->max_blocks_per_seq = be->max_blocks;
    a->H = be->H;
    a->KVH = be->KVH;
    a->D = be->D;
    a->block_size = be->block_size;
    a->scale = be->attn_scale;
    a->max_context_len = max_ctx;
    a->has_decode = has_decode;
    a->prefill_tiles = be->m.tiles;
    a->num_prefill_tiles = ntiles;
    a->scratch = be->attn_scratch;
    a->batch_invariant = be->batch_invariant;
    a->group_heads = !be->batch_invariant && be->prefill_group;
    a->wide_tiles = ntiles > 0 && be->step_wide ? be->prefill_wide : 0;
    a->pdl = be->kernel_pdl;
}

vesta_status cuda_forward(cuda_backend *be, int ntok, int nseq, int nsamples, int max_ctx, bool has_decode, int ntiles,
                          vesta_error *err)
{
    cudaStream_t s = be->stream;
    const float eps = be->base.config.rms_norm_eps;
    const int Hd = be->Hd;
    /* under TP the ids are rows of this rank's slice, other ranks' ids the zero row Ve - 1: the
     * sum over ranks is the embedding */
    K(vk_embedding(VK_BF16, be->x, be->embed, be->m.tokens, ntok, Hd, be->Ve, s));
    if (be->comm && all_reduce(be, be->x, (size_t)ntok * Hd, err)) return VESTA_ERR_BACKEND;
    MARK(EMBED);
    vk_attention_args a;
    attention_args(be, &a, nseq, max_ctx, has_decode, ntiles);
    a.decode_only = ntok == nseq; /* every sequence one query token */
    for (int l = 0; l < be->L; l++)
        if (layer_forward(be, l, ntok, &a, eps, err)) return VESTA_ERR_BACKEND;
    if (nsamples > 0) { /* the final norm of the sampled rows only (their last product's rows added) */
        const bool added = cuda_gemm_adds(be, ntok);
        K(vk_gather_rows(be->sx, be->x, be->m.sample_idx, nsamples, Hd, 2, s));
        if (!added) K(vk_gather_rows(be->stmp, be->tmp, be->m.sample_idx, nsamples, Hd, 2, s));
        K(vk_add_rmsnorm(VK_BF16, be->sh, be->sx, added ? NULL : be->stmp, be->final_norm, nsamples, Hd, eps, 0, s));
        if (be->comm) {
            if (lm_head_tp(be, nsamples, err)) return VESTA_ERR_BACKEND;
        } else if (gemm(be, be->sh, nsamples, Hd, be->lm_head, be->V, be->logits, CUDA_GEMM_F32, err)) {
            return VESTA_ERR_BACKEND;
        }
        MARK(HEAD);
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Batch-size buckets for decode graphs (vLLM captures 1, 2, 4, 8, 16, 24, ...). */
static int next_bucket(int b)
{
    if (b < 8) return b * 2;
    if (b < 64) return b + 8;
    if (b < 256) return b + 32;
    return b + 64;
}

int cuda_graph_for(const cuda_backend *be, int nseq)
{
    for (int i = 0; i < be->num_graphs; i++)
        if (be->graph_bs[i] >= nseq) return i;
    return -1;
}

/* Fills the device metadata with a harmless decode batch of bs sequences: token 0 at position 0,
 * no KV write (slot -1), context 1 reading block 0. Real decode steps of fewer sequences than the
 * bucket pad the same way. */
static vesta_status fake_decode_meta(cuda_backend *be, int bs, vesta_error *err)
{
    for (int i = 0; i < bs; i++) {
        be->hm.tokens[i] = be->comm && be->shard.vocab0 > 0 ? be->Vr : 0; /* token 0 (the zero row elsewhere) */
        be->hm.positions[i] = 0;
        be->hm.slots[i] = -1;
        be->hm.query_start[i] = i;
        be->hm.context_lens[i] = 1;
        be->hm.sample_idx[i] = i;
        be->hm.lora_rows[i] = -1;
    }
    be->hm.query_start[bs] = bs;
    memset(be->hm.block_tables, 0, sizeof(int32_t) * (size_t)bs * be->max_blocks);
    const int ntiles = be->batch_invariant ? vk_prefill_tiles_build(be->hm.query_start, NULL, bs, VK_TILES_INVARIANT,
                                                                    be->H, be->KVH, be->hm.tiles, be->tiles_cap)
                                           : 0;
    cudaStream_t s = be->stream;
    CU(cudaMemcpyAsync(be->m.tokens, be->hm.tokens, 4 * (size_t)bs, cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.positions, be->hm.positions, 4 * (size_t)bs, cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.slots, be->hm.slots, 4 * (size_t)bs, cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.query_start, be->hm.query_start, 4 * (size_t)(bs + 1), cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.context_lens, be->hm.context_lens, 4 * (size_t)bs, cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.sample_idx, be->hm.sample_idx, 4 * (size_t)bs, cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.lora_rows, be->hm.lora_rows, 4 * (size_t)bs, cudaMemcpyHostToDevice, s));
    CU(cudaMemcpyAsync(be->m.block_tables, be->hm.block_tables, 4 * (size_t)bs * be->max_blocks, cudaMemcpyHostToDevice,
                       s));
    if (ntiles > 0) CU(cudaMemcpyAsync(be->m.tiles, be->hm.tiles, 8 * (size_t)ntiles, cudaMemcpyHostToDevice, s));
    CU(cudaStreamSynchronize(s));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

static vesta_status capture_one(cuda_backend *be, int bs, int max_ctx, vesta_error *err)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t ex = NULL;
    if (fake_decode_meta(be, bs, err)) return VESTA_ERR_BACKEND;
    be->prof_off = true; /* graphs replay without events (cuda_profile.c) */
    be->lora_step = be->num_loras > 0; /* the graph runs the LoRA kernels whatever the rows */
    be->lora_gemm = false;
    /* warm-up: sets kernel attributes, lets cuBLAS pick its kernels outside the capture */
    const int ntiles = be->batch_invariant ? bs : 0; /* one tile per sequence (fake_decode_meta) */
    if (cuda_forward(be, bs, bs, bs, max_ctx, true, ntiles, err)) return VESTA_ERR_BACKEND;
    if (cuda_stream_wait(be, err)) return VESTA_ERR_BACKEND; /* under TP: bounded (a peer may die) */
    CU(cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeThreadLocal));
    vesta_status st = cuda_forward(be, bs, bs, bs, max_ctx, true, ntiles, err);
    cudaError_t ce = cudaStreamEndCapture(be->stream, &g);
    if (st != VESTA_OK) {
        if (g) cudaGraphDestroy(g);
        return st;
    }
    CU(ce);
    ce = cudaGraphInstantiate(&ex, g, 0);
    cudaGraphDestroy(g);
    CU(ce);
    CU(cudaGraphUpload(ex, be->stream));
    be->graph_bs[be->num_graphs] = bs;
    be->graphs[be->num_graphs++] = ex;
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

int cuda_decode_buckets(const cuda_backend *be, int *sizes)
{
    int n = 0;
    for (int bs = 1; bs < be->max_seqs && n < CUDA_MAX_GRAPHS - 1; bs = next_bucket(bs)) sizes[n++] = bs;
    sizes[n++] = be->max_seqs;
    return n;
}

vesta_status cuda_graphs_capture(cuda_backend *be, vesta_error *err)
{
    be->num_graphs = 0;
    int max_ctx = be->max_blocks * be->block_size;
    int sizes[CUDA_MAX_GRAPHS];
    const int n = cuda_decode_buckets(be, sizes);
    for (int i = 0; i < n; i++)
        if (capture_one(be, sizes[i], max_ctx, err) != VESTA_OK) {
            vesta_error_prefix(err, "capturing the decode graph for %d sequences", sizes[i]);
            return VESTA_ERR_BACKEND;
        }
    CU(cudaStreamSynchronize(be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}
