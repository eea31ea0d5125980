/* Paged attention for one layer. K/V of the step's tokens are first written to their slots; then
 * every (query token, head) pair attends, causally, to its sequence's keys 0..position, read
 * block by block through the block table. Cache block layout (docs/cpu-backend.md):
 *   [num_blocks][num_layers][K, V][num_kv_heads][block_size][head_dim]
 * so one head's keys within a block are contiguous rows: the dot products vectorize, and a run of
 * keys is gathered with one memcpy per block. */
#include <cblas.h>
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

/* Tiled attention for runs of query tokens (prefill chunks): a tile of up to CPU_ATTN_TILE
 * consecutive query tokens of one sequence and one KV head's group of query heads, against the
 * sequence's keys in pieces of CPU_ATTN_KEYS gathered out of the blocks, with OpenBLAS for Q.K^T
 * and P.V and an online softmax (running max and sum per row) across pieces. */
typedef struct tile_ws {
    float *k, *v; /* [CPU_ATTN_KEYS][D] gathered keys / values */
    float *s;     /* [CPU_ATTN_TILE][CPU_ATTN_KEYS] scores, then probabilities */
    float *m, *l; /* [group][CPU_ATTN_TILE] running max and sum */
} tile_ws;

static tile_ws tile_ws_at(const cpu_backend *be, int thread)
{
    const size_t D = (size_t)be->base.config.head_dim;
    const size_t G = (size_t)(be->base.config.num_heads / be->base.config.num_kv_heads);
    float *base = be->a.attn_ws + (size_t)thread * be->a.attn_ws_floats;
    tile_ws w = {.k = base, .v = base + CPU_ATTN_KEYS * D, .s = base + 2 * CPU_ATTN_KEYS * D};
    w.m = w.s + (size_t)CPU_ATTN_TILE * CPU_ATTN_KEYS;
    w.l = w.m + G * CPU_ATTN_TILE;
    return w;
}

static void gather(const cpu_backend *be, const float *base, const int32_t *bt, int j0, int n, float *dst)
{
    const int bs = be->kv.block_size, D = be->base.config.head_dim;
    for (int j = j0; j < j0 + n;) {
        int run = bs - j % bs;
        if (run > j0 + n - j)
            run = j0 + n - j;
        memcpy(dst + (size_t)(j - j0) * D, base + (size_t)bt[j / bs] * be->kv.block_floats + (size_t)(j % bs) * D,
               (size_t)run * (size_t)D * sizeof(float));
        j += run;
    }
}

/* Masks row i of S to its visible keys [lo_i, pos_i] (keys j0..j0+nk-1), updates the running
 * max/sum, rescales the output row accumulated so far, and leaves exp(s - max) in S. */
static void softmax_piece(float *srow, int nk, int j0, int lo, int pos, float *m, float *l, float *out, int D)
{
    int a = lo - j0, b = pos - j0 + 1;
    a = a < 0 ? 0 : a;
    b = b > nk ? nk : b;
    if (a >= b) { /* nothing visible in this piece */
        for (int j = 0; j < nk; j++)
            srow[j] = 0.0f;
        return;
    }
    float mx = *m;
    for (int j = a; j < b; j++)
        mx = srow[j] > mx ? srow[j] : mx;
    const float scale_old = *m == -INFINITY ? 0.0f : expf(*m - mx);
    float sum = 0.0f;
    for (int j = 0; j < a; j++)
        srow[j] = 0.0f;
    for (int j = a; j < b; j++) {
        srow[j] = expf(srow[j] - mx);
        sum += srow[j];
    }
    for (int j = b; j < nk; j++)
        srow[j] = 0.0f;
    *l = *l * scale_old + sum;
    *m = mx;
    for (int e = 0; e < D; e++)
        out[e] *= scale_old;
}

static void attend_tile(const cpu_backend *be, const vesta_batch *b, int layer, int t0, int nq, int kvh,
                        tile_ws *w)
{
    const vesta_model_config *c = &be->base.config;
    const int D = c->head_dim, G = c->num_heads / c->num_kv_heads, window = c->sliding_window;
    const int s = be->a.tok_seq[t0];
    const int32_t *bt = b->block_tables + (size_t)s * (size_t)b->max_blocks_per_seq;
    const float *kbase = be->kv.data + (size_t)layer * be->kv.layer_floats + (size_t)kvh * be->kv.head_floats;
    const float *vbase = kbase + (size_t)c->num_kv_heads * be->kv.head_floats;
    int jmin = INT32_MAX, jmax = -1;
    for (int i = 0; i < nq; i++) {
        int pos = b->positions[t0 + i], lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        jmin = lo < jmin ? lo : jmin;
        jmax = pos > jmax ? pos : jmax;
    }
    for (int g = 0; g < G; g++)
        for (int i = 0; i < nq; i++) {
            w->m[g * CPU_ATTN_TILE + i] = -INFINITY;
            w->l[g * CPU_ATTN_TILE + i] = 0.0f;
            memset(be->a.attn + (size_t)(t0 + i) * be->q_dim + (size_t)(kvh * G + g) * D, 0, (size_t)D * sizeof(float));
        }
    for (int j0 = jmin; j0 <= jmax; j0 += CPU_ATTN_KEYS) {
        const int nk = jmax - j0 + 1 < CPU_ATTN_KEYS ? jmax - j0 + 1 : CPU_ATTN_KEYS;
        gather(be, kbase, bt, j0, nk, w->k);
        gather(be, vbase, bt, j0, nk, w->v);
        for (int g = 0; g < G; g++) {
            const int h = kvh * G + g;
            const float *q = be->a.qkv + (size_t)t0 * be->qkv_dim + (size_t)h * D;
            float *out = be->a.attn + (size_t)t0 * be->q_dim + (size_t)h * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, D, be->attn_scale, q, be->qkv_dim, w->k, D,
                        0.0f, w->s, nk);
            for (int i = 0; i < nq; i++) {
                int pos = b->positions[t0 + i], lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
                softmax_piece(w->s + (size_t)i * nk, nk, j0, lo, pos, &w->m[g * CPU_ATTN_TILE + i],
                              &w->l[g * CPU_ATTN_TILE + i], out + (size_t)i * be->q_dim, D);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, D, nk, 1.0f, w->s, nk, w->v, D, 1.0f, out,
                        be->q_dim);
        }
    }
    for (int g = 0; g < G; g++)
        for (int i = 0; i < nq; i++) {
            float *out = be->a.attn + (size_t)(t0 + i) * be->q_dim + (size_t)(kvh * G + g) * D;
            const float inv = 1.0f / w->l[g * CPU_ATTN_TILE + i];
            for (int e = 0; e < D; e++)
                out[e] *= inv;
        }
}

/* Whether sequence s's query tokens are done by the tiles: runs of at least CPU_ATTN_TILE_MIN,
 * except in batch-invariant mode, where every token takes the one-token path (the tiles' BLAS
 * products and online softmax sum in another order, so a prompt token's output would differ from
 * the same token's in a decode step or in a shorter chunk). */
static bool tiled(const cpu_backend *be, const vesta_batch *b, int s)
{
    return !be->a.invariant && b->query_start[s + 1] - b->query_start[s] >= CPU_ATTN_TILE_MIN;
}

/* Splits the sequences done by the tiles into tiles; returns how many. */
static int plan_tiles(const cpu_backend *be, const vesta_batch *b, int32_t *tiles)
{
    int n = 0;
    for (int s = 0; s < b->num_seqs; s++) {
        const int q0 = b->query_start[s], q1 = b->query_start[s + 1];
        if (!tiled(be, b, s))
            continue;
        for (int t = q0; t < q1; t += CPU_ATTN_TILE) {
            tiles[2 * n] = t;
            tiles[2 * n + 1] = q1 - t < CPU_ATTN_TILE ? q1 - t : CPU_ATTN_TILE;
            n++;
        }
    }
    return n;
}

void cpu_attention(cpu_backend *be, const vesta_batch *b, int layer)
{
    write_kv(be, b, layer);
    const vesta_model_config *c = &be->base.config;
    const cpu_activations *a = &be->a;
    const int nh = c->num_heads, group = c->num_heads / c->num_kv_heads, D = c->head_dim;
    const int window = c->sliding_window, nkv = c->num_kv_heads;
    const int T = b->num_tokens;
    const int n_tiles = plan_tiles(be, b, a->tiles);
#pragma omp parallel for collapse(2) num_threads(a->nthreads) schedule(dynamic, 1) if (n_tiles * nkv > 1)
    for (int k = 0; k < n_tiles; k++)
        for (int kvh = 0; kvh < nkv; kvh++) {
            tile_ws w = tile_ws_at(be, omp_get_thread_num());
            attend_tile(be, b, layer, a->tiles[2 * k], a->tiles[2 * k + 1], kvh, &w);
        }
    /* The remaining (decode-like) tokens one (token, head) at a time. A decode step of short
     * sequences is too little work to be worth waking the threads. */
    const bool par = (int64_t)T * b->max_context_len >= CPU_PAR_MIN_ATTN;
#pragma omp parallel for collapse(2) num_threads(a->nthreads) schedule(dynamic, 4) if (par)
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < nh; h++) {
            const int s = a->tok_seq[t], pos = b->positions[t];
            if (tiled(be, b, s))
                continue; /* done by the tiles */
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
