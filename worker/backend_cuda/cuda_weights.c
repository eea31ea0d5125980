/* Weights to the GPU: one device arena laid out for the forward pass (q|k|v and gate|up stacked
 * so each is one matrix product), filled straight from the mmapped model file through two pinned
 * staging buffers (the file read of one chunk overlaps the copy of the previous), as bf16.
 * --load-format dummy fills the arena on the GPU with random values instead (no file read). */
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
} loader;

static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }

/* Arena layout: with base == NULL only counts bytes (same code sizes and places). */
static size_t layout(cuda_backend *be, char *base, bool tied, bool bias)
{
    size_t off = 0;
    const size_t e = 2;
#define TAKE(ptr, n)                                                                               \
    do {                                                                                           \
        if (base) (ptr) = base + off;                                                              \
        off += align_up((size_t)(n) * e);                                                          \
    } while (0)
    TAKE(be->embed, (size_t)be->V * be->Hd);
    TAKE(be->final_norm, be->Hd);
    if (tied) {
        if (base) be->lm_head = be->embed;
    } else {
        TAKE(be->lm_head, (size_t)be->V * be->Hd);
    }
    for (int l = 0; l < be->L; l++) {
        cuda_layer *y = &be->layers[l];
        TAKE(y->ln1, be->Hd);
        TAKE(y->wqkv, (size_t)be->W * be->Hd);
        if (bias) TAKE(y->bqkv, be->W);
        else if (base) y->bqkv = NULL;
        TAKE(y->wo, (size_t)be->Hd * be->H * be->D);
        TAKE(y->ln2, be->Hd);
        TAKE(y->wgu, (size_t)2 * be->F * be->Hd);
        TAKE(y->wdown, (size_t)be->Hd * be->F);
    }
#undef TAKE
    return off;
}

/* Copies rows [0, rows) of tensor `name` ([rows][cols], or [rows] when cols == 0) to dst. */
static vesta_status load_tensor(loader *ld, const char *name, int64_t rows, int64_t cols, void *dst,
                                vesta_error *err)
{
    cuda_backend *be = ld->be;
    const char *path = vesta_model_file_path(ld->mf);
    const vesta_tensor_info *t = vesta_model_file_find(ld->mf, name);
    if (!t)
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "%s: tensor %s is missing", path, name);
    bool ok = cols == 0 ? (t->ndim == 1 && t->shape[0] == rows)
                        : (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!ok)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s: tensor %s: expected shape [%lld%s%lld]", path, name,
                               (long long)rows, cols ? ", " : "", (long long)(cols ? cols : 0));
    size_t row_bytes = (size_t)(cols ? cols : 1) * 2;
    int64_t chunk = cols ? (int64_t)(STAGE_BYTES / row_bytes) : rows;
    if (chunk < 1)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "%s: tensor %s: rows of %zu bytes", path, name, row_bytes);
    for (int64_t r = 0; r < rows; r += chunk) {
        int64_t n = rows - r < chunk ? rows - r : chunk;
        int b = ld->next;
        ld->next ^= 1;
        CU(cudaEventSynchronize(ld->done[b])); /* the copy that last used this buffer is done */
        vesta_status st;
        if (cols)
            st = vesta_model_file_read_rows(ld->mf, name, VESTA_DTYPE_BF16, r, r + n, ld->stage[b], err);
        else
            st = vesta_model_file_read_rows(ld->mf, name, VESTA_DTYPE_BF16, 0, rows, ld->stage[b], err);
        if (st != VESTA_OK) {
            vesta_error_prefix(err, "loading %s", name);
            return st;
        }
        CU(cudaMemcpyAsync((char *)dst + (size_t)r * row_bytes, ld->stage[b], (size_t)n * row_bytes,
                           cudaMemcpyHostToDevice, be->stream));
        CU(cudaEventRecord(ld->done[b], be->stream));
    }
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

/* Dummy weights (vLLM's --load-format dummy): matrices uniform in +-1/sqrt(in), norms 1, biases 0,
 * so activations stay in a realistic range. */
static vesta_status fill_dummy(loader *ld, int64_t rows, int64_t cols, int kind, void *dst, vesta_error *err)
{
    cuda_backend *be = ld->be;
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    if (kind == 0) {
        CU(vk_fill_random(VK_BF16, dst, n, 1.0f / sqrtf((float)cols), be->opts.dummy_seed * 1000003u + ++ld->counter,
                          be->stream));
    } else if (kind == 2) {
        CU(cudaMemsetAsync(dst, 0, n * 2, be->stream));
    } else {
        /* norms: 1.0 in bf16 is 0x3F80 */
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
static vesta_status piece(loader *ld, const char *name, int64_t rows, int64_t cols, int kind, void *dst,
                          vesta_error *err)
{
    if (ld->be->opts.load_dummy)
        return fill_dummy(ld, rows, cols, kind, dst, err);
    return load_tensor(ld, name, rows, cols, dst, err);
}

vesta_status cuda_weights_load(cuda_backend *be, const vesta_model_file *mf, vesta_error *err)
{
    const vesta_model_config *c = &be->base.config;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool tied = c->tie_word_embeddings, bias = c->attention_bias;
    be->layers = calloc((size_t)be->L, sizeof *be->layers);
    if (!be->layers)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "cuda backend: out of host memory");
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
    const int64_t Hd = be->Hd, q = (int64_t)be->H * be->D, kv = (int64_t)be->KVH * be->D, F = be->F;
    if ((st = piece(&ld, "model.embed_tokens.weight", be->V, Hd, 0, be->embed, err)) != VESTA_OK) goto out;
    if ((st = piece(&ld, "model.norm.weight", Hd, 0, 1, be->final_norm, err)) != VESTA_OK) goto out;
    if (!tied && (st = piece(&ld, "lm_head.weight", be->V, Hd, 0, be->lm_head, err)) != VESTA_OK) goto out;
    for (int l = 0; l < be->L; l++) {
        cuda_layer *y = &be->layers[l];
        char name[160];
        char *qkv = y->wqkv, *gu = y->wgu, *b = y->bqkv;
#define P(suffix, rows, cols, kind, dst)                                                           \
    do {                                                                                           \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                              \
        if ((st = piece(&ld, name, rows, cols, kind, dst, err)) != VESTA_OK) goto out;             \
    } while (0)
        P("input_layernorm.weight", Hd, 0, 1, y->ln1);
        P("self_attn.q_proj.weight", q, Hd, 0, qkv);
        P("self_attn.k_proj.weight", kv, Hd, 0, qkv + (size_t)q * Hd * 2);
        P("self_attn.v_proj.weight", kv, Hd, 0, qkv + (size_t)(q + kv) * Hd * 2);
        if (bias) {
            P("self_attn.q_proj.bias", q, 0, 2, b);
            P("self_attn.k_proj.bias", kv, 0, 2, b + (size_t)q * 2);
            P("self_attn.v_proj.bias", kv, 0, 2, b + (size_t)(q + kv) * 2);
        }
        P("self_attn.o_proj.weight", Hd, q, 0, y->wo);
        P("post_attention_layernorm.weight", Hd, 0, 1, y->ln2);
        P("mlp.gate_proj.weight", F, Hd, 0, gu);
        P("mlp.up_proj.weight", F, Hd, 0, gu + (size_t)F * Hd * 2);
        P("mlp.down_proj.weight", Hd, F, 0, y->wdown);
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
    clock_gettime(CLOCK_MONOTONIC, &t1);
    be->load_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return st;
fail:
    st = VESTA_ERR_BACKEND;
    goto out;
}
