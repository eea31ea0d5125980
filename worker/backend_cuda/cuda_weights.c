/* Weights to the GPU: one device arena laid out for the forward pass (q|k|v and gate|up stacked
 * so each is one matrix product), filled straight from the mmapped model file through two pinned
 * staging buffers (the file read of one chunk overlaps the copy of the previous), as bf16.
 * --load-format dummy fills the arena on the GPU with random values instead (no file read).
 * Under tensor parallelism each rank reads only its slices (worker/tp/shard.h): q/k/v and gate/up
 * by output rows, o_proj and down by input columns, the embedding and LM head by vocabulary rows;
 * dummy tensors are generated whole and then sliced, so every split sees the same model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_internal.h"

#define STAGE_BYTES ((size_t)64 << 20)
#define ALIGN 256

typedef struct loader {
    cuda_backend *be;
    const vesta_model_file *mf;
    void *stage[2];
    cudaEvent_t done[2];
    int next;
    uint64_t counter;
    void *dtmp; /* device scratch: a whole dummy tensor before slicing */
    size_t dtmp_bytes;
} loader;

/* A range that is the whole dimension is VESTA_TP_WHOLE: the single-rank layout reads exactly as
 * without TP. */
static vesta_tp_slice part(vesta_tp_slice_kind k, int64_t b, int64_t e, int64_t whole)
{
    return (b == 0 && e == whole) ? VESTA_TP_WHOLE : (vesta_tp_slice){k, b, e};
}

static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Arena layout: with base == NULL only counts bytes (same code sizes and places). */
static size_t layout(cuda_backend *be, char *base, bool tied, bool bias)
{
    size_t off = 0;
    const size_t e = 2;
#define TAKE(ptr, n)                                                                                                   \
    do {                                                                                                               \
        if (base) (ptr) = base + off;                                                                                  \
        off += align_up((size_t)(n)*e);                                                                                \
    } while (0)
    TAKE(be->embed, (size_t)be->Ve * be->Hd);
    TAKE(be->final_norm, be->Hd);
    if (tied) {
        if (base) be->lm_head = be->embed;
    } else {
        TAKE(be->lm_head, (size_t)be->Vr * be->Hd);
    }
    for (int l = 0; l < be->L; l++) {
        cuda_layer *y = &be->layers[l];
        TAKE(y->ln1, be->Hd);
        TAKE(y->wqkv, (size_t)be->W * be->Hd);
        if (bias)
            TAKE(y->bqkv, be->W);
        else if (base)
            y->bqkv = NULL;
        TAKE(y->wo, (size_t)be->Hd * be->H * be->D);
        TAKE(y->ln2, be->Hd);
        TAKE(y->wgu, (size_t)2 * be->F * be->Hd);
        TAKE(y->wdown, (size_t)be->Hd * be->F);
    }
#undef TAKE
    return off;
}

/* A column slice: all rows of columns [c0, c1), read straight from the file (only those spans)
 * into a staging buffer (a host buffer of its own when larger than one stage), then copied. */
static vesta_status load_cols(loader *ld, const char *name, int64_t rows, vesta_tp_slice sl, void *dst,
                              vesta_error *err)
{
    cuda_backend *be = ld->be;
    size_t bytes = (size_t)rows * (size_t)(sl.end - sl.begin) * 2;
    void *host = NULL;
    int b = ld->next;
    if (bytes <= STAGE_BYTES) {
        ld->next ^= 1;
        CU(cudaEventSynchronize(ld->done[b]));
    } else if (!(host = malloc(bytes))) {
        return vesta_error_set(err, VESTA_ERR_NOMEM, "loading %s: %zu MiB of host staging", name, bytes >> 20);
    }
    vesta_status st =
        vesta_model_file_read_cols(ld->mf, name, VESTA_DTYPE_BF16, sl.begin, sl.end, host ? host : ld->stage[b], err);
    if (st != VESTA_OK) {
        free(host);
        vesta_error_prefix(err, "loading %s", name);
        return st;
    }
    if (host) {
        cudaError_t ce = cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice); /* pageable: synchronous */
        free(host);
        CU(ce);
    } else {
        CU(cudaMemcpyAsync(dst, ld->stage[b], bytes, cudaMemcpyHostToDevice, be->stream));
        CU(cudaEventRecord(ld->done[b], be->stream));
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Copies (this rank's slice of) tensor `name` ([rows][cols], or [rows] when cols == 0) to dst. */
static vesta_status load_tensor(loader *ld, const char *name, int64_t rows, int64_t cols, vesta_tp_slice sl, void *dst,
                                vesta_error *err)
{
    cuda_backend *be = ld->be;
    const char *path = vesta_model_file_path(ld->mf);
    const vesta_tensor_info *t = vesta_model_file_find(ld->mf, name);
    if (!t) return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "%s: tensor %s is missing", path, name);
    bool ok = cols == 0 ? (t->ndim == 1 && t->shape[0] == rows)
                        : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %s: expected shape [%lld%s%lld]", path, name,
                               (long long)rows, cols ? ", " : "", (long long)(cols ? cols : 0));
    if (sl.kind == VESTA_TP_SLICE_COLS) return load_cols(ld, name, rows, sl, dst, err);
    const bool by_rows = sl.kind == VESTA_TP_SLICE_ROWS;
    const int64_t r0 = by_rows ? sl.begin : 0, r1 = by_rows ? sl.end : rows;
    size_t row_bytes = (size_t)(cols ? cols : 1) * 2;
    int64_t chunk = cols ? (int64_t)(STAGE_BYTES / row_bytes) : r1 - r0;
    if (chunk < 1 || (!cols && (size_t)(r1 - r0) * 2 > STAGE_BYTES))
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor %s: rows of %zu bytes", path, name, row_bytes);
    for (int64_t r = r0; r < r1; r += chunk) {
        int64_t n = r1 - r < chunk ? r1 - r : chunk;
        int b = ld->next;
        ld->next ^= 1;
        CU(cudaEventSynchronize(ld->done[b])); /* the copy that last used this buffer is done */
        vesta_status st = vesta_model_file_read_rows(ld->mf, name, VESTA_DTYPE_BF16, r, r + n, ld->stage[b], err);
        if (st != VESTA_OK) {
            vesta_error_prefix(err, "loading %s", name);
            return st;
        }
        CU(cudaMemcpyAsync((char *)dst + (size_t)(r - r0) * row_bytes, ld->stage[b], (size_t)n * row_bytes,
                           cudaMemcpyHostToDevice, be->stream));
        CU(cudaEventRecord(ld->done[b], be->stream));
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Dummy weights (vLLM's --load-format dummy): matrices uniform in +-1/sqrt(in), norms 1, biases 0,
 * so activations stay in a realistic range. */
static vesta_status fill_dummy(loader *ld, int64_t rows, int64_t cols, int kind, vesta_tp_slice sl, void *dst,
                               vesta_error *err)
{
    cuda_backend *be = ld->be;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    if (kind == 0) {
        uint64_t seed = be->opts.dummy_seed * 1000003u + ++ld->counter;
        if (sl.kind == VESTA_TP_SLICE_ALL) {
            CU(vk_fill_random(VK_BF16, dst, n, 1.0f / sqrtf((float)cols), seed, be->stream));
            return VESTA_OK;
        }
        if (n * 2 > ld->dtmp_bytes) { /* whole tensor first, then this rank's slice of it */
            CU(cudaStreamSynchronize(be->stream));
            cudaFree(ld->dtmp);
            ld->dtmp = NULL;
            ld->dtmp_bytes = 0;
            CU(cudaMalloc(&ld->dtmp, n * 2));
            ld->dtmp_bytes = n * 2;
        }
        CU(vk_fill_random(VK_BF16, ld->dtmp, n, 1.0f / sqrtf((float)cols), seed, be->stream));
        size_t w = (size_t)(sl.end - sl.begin) * 2;
        if (sl.kind == VESTA_TP_SLICE_ROWS) {
            if (sl.end > sl.begin)
                CU(cudaMemcpyAsync(dst, (char *)ld->dtmp + (size_t)sl.begin * (size_t)cols * 2,
                                   (size_t)(sl.end - sl.begin) * (size_t)cols * 2, cudaMemcpyDeviceToDevice,
                                   be->stream));
        } else {
            CU(cudaMemcpy2DAsync(dst, w, (char *)ld->dtmp + (size_t)sl.begin * 2, (size_t)cols * 2, w, (size_t)rows,
                                 cudaMemcpyDeviceToDevice, be->stream));
        }
    } else if (kind == 2) {
        size_t m = sl.kind == VESTA_TP_SLICE_ALL ? n : (size_t)(sl.end - sl.begin);
        CU(cudaMemsetAsync(dst, 0, m * 2, be->stream));
    } else {
        /* norms (never sliced): 1.0 in bf16 is 0x3F80 */
        uint16_t *h = ld->stage[0];
        CU(cudaStreamSynchronize(be->stream));
        for (size_t i = 0; i < n; i++) h[i] = 0x3F80;
        CU(cudaMemcpy(dst, h, n * 2, cudaMemcpyHostToDevice));
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* kind: 0 matrix, 1 norm, 2 bias */
static vesta_status piece(loader *ld, const char *name, int64_t rows, int64_t cols, int kind, vesta_tp_slice sl,
                          void *dst, vesta_error *err)
{
    if (ld->be->opts.load_dummy) return fill_dummy(ld, rows, cols, kind, sl, dst, err);
    return load_tensor(ld, name, rows, cols, sl, dst, err);
}

/* The embedding / LM head: rows [vocab0, vocab0 + vocab_valid) of the full [V][hidden] tensor,
 * then zeros up to `rows` (the padding of the last slice, and the embedding's zero row). */
static vesta_status vocab_piece(loader *ld, const char *name, int rows, void *dst, vesta_error *err)
{
    cuda_backend *be = ld->be;
    const vesta_tp_shard *sh = &be->shard;
    const int64_t Hd = be->Hd;
    if (sh->vocab_valid > 0 || ld->be->opts.load_dummy) { /* dummy: keep the random streams aligned */
        vesta_tp_slice sl = part(VESTA_TP_SLICE_ROWS, sh->vocab0, sh->vocab0 + sh->vocab_valid, be->V);
        vesta_status st = piece(ld, name, be->V, Hd, 0, sl, dst, err);
        if (st != VESTA_OK) return st;
    }
    if (rows > sh->vocab_valid)
        CU(cudaMemsetAsync((char *)dst + (size_t)sh->vocab_valid * (size_t)Hd * 2, 0,
                           (size_t)(rows - sh->vocab_valid) * (size_t)Hd * 2, be->stream));
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

vesta_status cuda_weights_load(cuda_backend *be, const vesta_model_file *mf, vesta_error *err)
{
    const vesta_model_config *c = &be->base.config;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool tied = c->tie_word_embeddings, bias = c->attention_bias;
    be->layers = calloc((size_t)be->L, sizeof *be->layers);
    if (!be->layers) return vesta_error_set(err, VESTA_ERR_NOMEM, "cuda backend: out of host memory");
    be->wbytes = layout(be, NULL, tied, bias);
    loader ld = {.be = be, .mf = mf};
    vesta_status st = VESTA_OK;
    cudaError_t ce = cudaMalloc(&be->warena, be->wbytes);
    if (ce != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "cuda backend: weights need %.2f GiB of device memory: %s",
                               be->wbytes / 1073741824.0, cudaGetErrorString(ce));
    layout(be, be->warena, tied, bias);
    for (int i = 0; i < 2; i++) {
        CU(cudaMallocHost(&ld.stage[i], STAGE_BYTES));
        CU(cudaEventCreateWithFlags(&ld.done[i], cudaEventDisableTiming));
        CU(cudaEventRecord(ld.done[i], be->stream));
    }
    const vesta_model_config *full = vesta_model_file_config(mf);
    const vesta_tp_shard *sh = &be->shard;
    const int64_t Hd = be->Hd, D = be->D, q = (int64_t)be->H * D, kv = (int64_t)be->KVH * D, F = be->F;
    const int64_t FQ = (int64_t)full->num_heads * D, FKV = (int64_t)full->num_kv_heads * D,
                  FF = full->intermediate_size;
    const vesta_tp_slice qs = part(VESTA_TP_SLICE_ROWS, sh->head0 * D, sh->head0 * D + q, FQ);
    const vesta_tp_slice ks = part(VESTA_TP_SLICE_ROWS, sh->kv_head0 * D, sh->kv_head0 * D + kv, FKV);
    const vesta_tp_slice os = part(VESTA_TP_SLICE_COLS, sh->head0 * D, sh->head0 * D + q, FQ);
    const vesta_tp_slice is = part(VESTA_TP_SLICE_ROWS, sh->inter0, sh->inter0 + F, FF);
    const vesta_tp_slice ds = part(VESTA_TP_SLICE_COLS, sh->inter0, sh->inter0 + F, FF);
    if ((st = vocab_piece(&ld, "model.embed_tokens.weight", be->Ve, be->embed, err)) != VESTA_OK) goto out;
    if ((st = piece(&ld, "model.norm.weight", Hd, 0, 1, VESTA_TP_WHOLE, be->final_norm, err)) != VESTA_OK) goto out;
    if (!tied && (st = vocab_piece(&ld, "lm_head.weight", be->Vr, be->lm_head, err)) != VESTA_OK) goto out;
    for (int l = 0; l < be->L; l++) {
        cuda_layer *y = &be->layers[l];
        char name[160];
        char *qkv = y->wqkv, *gu = y->wgu, *b = y->bqkv;
#define P(suffix, rows, cols, kind, sl, dst)                                                                           \
    do {                                                                                                               \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                                                  \
        if ((st = piece(&ld, name, rows, cols, kind, sl, dst, err)) != VESTA_OK) goto out;                             \
    } while (0)
        P("input_layernorm.weight", Hd, 0, 1, VESTA_TP_WHOLE, y->ln1);
        P("self_attn.q_proj.weight", FQ, Hd, 0, qs, qkv);
        P("self_attn.k_proj.weight", FKV, Hd, 0, ks, qkv + (size_t)q * Hd * 2);
        P("self_attn.v_proj.weight", FKV, Hd, 0, ks, qkv + (size_t)(q + kv) * Hd * 2);
        if (bias) {
            P("self_attn.q_proj.bias", FQ, 0, 2, qs, b);
            P("self_attn.k_proj.bias", FKV, 0, 2, ks, b + (size_t)q * 2);
            P("self_attn.v_proj.bias", FKV, 0, 2, ks, b + (size_t)(q + kv) * 2);
        }
        P("self_attn.o_proj.weight", Hd, FQ, 0, os, y->wo);
        P("post_attention_layernorm.weight", Hd, 0, 1, VESTA_TP_WHOLE, y->ln2);
        P("mlp.gate_proj.weight", FF, Hd, 0, is, gu);
        P("mlp.up_proj.weight", FF, Hd, 0, is, gu + (size_t)F * Hd * 2);
        P("mlp.down_proj.weight", Hd, FF, 0, ds, y->wdown);
#undef P
    }
    CU(cudaStreamSynchronize(be->stream));
out:
    for (int i = 0; i < 2; i++) {
        if (ld.done[i]) {
            cudaEventSynchronize(ld.done[i]);
            cudaEventDestroy(ld.done[i]);
        }
        if (ld.stage[i]) cudaFreeHost(ld.stage[i]);
    }
    if (ld.dtmp) {
        cudaStreamSynchronize(be->stream);
        cudaFree(ld.dtmp);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    be->load_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return st;
fail:
    st = VESTA_ERR_BACKEND;
    goto out;
}
