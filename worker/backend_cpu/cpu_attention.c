/* Paged attention for one layer. K/V of the step's tokens are first written to their slots; then
 * every (query token, head) pair attends, causally, to its sequence's keys 0..position, read
 * block by block through the block table. Cache block layout (docs/cpu-backend.md):
 *   [num_blocks][num_layers][K, V][num_kv_heads][block_size][head_dim]
 * so one head's keys within a block are contiguous rows and the dot products vectorize. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu_internal.h"

static void write_kv(cpu_backend *be, const vesta_batch *b, int layer)
{
    const vesta_model_config *c = &be->base.config;
    const cpu_kv_cache *kv = &be->kv;
    const int D = c->head_dim, nkv = c->num_kv_heads, bs = kv->block_size;
    const size_t row = (size_t)D * sizeof(float);
#pragma omp parallel for num_threads(be->a.nthreads) schedule(static) if (b->num_tokens >= CPU_PAR_MIN_ROWS)
    for (int t = 0; t < b->num_tokens; t++) {
        int slot = b->slot_mapping[t];
        float *kb = kv->data + (size_t)(slot / bs) * kv->block_floats + (size_t)layer * kv->layer_floats +
                    (size_t)(slot % bs) * (size_t)D;
        float *vb = kb + (size_t)nkv * kv->head_floats;
        const float *src = be->a.qkv + (size_t)t * (size_t)be->qkv_dim + be->q_dim;
        for (int h = 0; h < nkv; h++) {
            memcpy(kb + (size_t)h * kv->head_floats, src + (size_t)h * D, row);
            memcpy(vb + (size_t)h * kv->head_floats, src + (size_t)(nkv + h) * D, row);
        }
    }
}

/* One query head of one token: out[D] = softmax(q . K^T * scale) V over keys [lo, pos]. */
static void attend_one(const cpu_backend *be, const float *q, const int32_t *block_table, int lo, int pos,
                       const float *layer_base_k, float *scores, float *out)
{
    const cpu_kv_cache *kv = &be->kv;
    const int D = be->base.config.head_dim, bs = kv->block_size;
    const size_t v_off = (size_t)be->base.config.num_kv_heads * kv->head_floats;
    const float scale = be->attn_scale;
    float mx = -INFINITY;
    for (int j = lo; j <= pos;) {
        const float *kblk = layer_base_k + (size_t)block_table[j / bs] * kv->block_floats;
        int end = (j / bs + 1) * bs - 1;
        if (end > pos)
            end = pos;
        for (; j <= end; j++) {
            const float *k = kblk + (size_t)(j % bs) * (size_t)D;
            float d = 0.0f;
#pragma omp simd reduction(+ : d)
            for (int e = 0; e < D; e++)
                d += q[e] * k[e];
            d *= scale;
            scores[j] = d;
            mx = d > mx ? d : mx;
        }
    }
    float sum = 0.0f;
    for (int j = lo; j <= pos; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    const float inv = 1.0f / sum;
    for (int e = 0; e < D; e++)
        out[e] = 0.0f;
    for (int j = lo; j <= pos; j++) {
        const float *v = layer_base_k + (size_t)block_table[j / bs] * kv->block_floats + v_off +
                         (size_t)(j % bs) * (size_t)D;
        const float p = scores[j] * inv;
#pragma omp simd
        for (int e = 0; e < D; e++)
            out[e] += p * v[e];
    }
}

void cpu_attention(cpu_backend *be, const vesta_batch *b, int layer)
{
    write_kv(be, b, layer);
    const vesta_model_config *c = &be->base.config;
    const cpu_activations *a = &be->a;
    const int nh = c->num_heads, group = c->num_heads / c->num_kv_heads, D = c->head_dim;
    const int window = c->sliding_window;
    const int T = b->num_tokens;
    /* A decode step of short sequences is too little work to be worth waking the threads. */
    const bool par = (int64_t)T * b->max_context_len >= CPU_PAR_MIN_ATTN;
#pragma omp parallel for collapse(2) num_threads(a->nthreads) schedule(dynamic, 4) if (par)
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < nh; h++) {
            const int s = a->tok_seq[t], pos = b->positions[t];
            /* HF's sliding window: key j is visible when pos - j < window. */
            const int lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
            const float *k_base = be->kv.data + (size_t)layer * be->kv.layer_floats +
                                  (size_t)(h / group) * be->kv.head_floats;
            attend_one(be, a->qkv + (size_t)t * (size_t)be->qkv_dim + (size_t)h * D,
                       b->block_tables + (size_t)s * (size_t)b->max_blocks_per_seq, lo, pos, k_base,
                       a->scores + (size_t)omp_get_thread_num() * (size_t)a->max_ctx,
                       a->attn + (size_t)t * (size_t)be->q_dim + (size_t)h * D);
        }
    }
}
