/* The Llama-family decoder forward pass over all tokens of a step, mirroring Hugging Face's
 * LlamaModel / Qwen2Model / MistralModel in float32:
 *   x = embed(tokens); per layer: x += o_proj(attn(rope(qkv(rmsnorm(x)))));
 *                                 x += down(silu(gate(rmsnorm(x))) * up(rmsnorm(x)))
 * and the final norm for the sampled rows only. */
#include <math.h>
#include <string.h>

#include "cpu_internal.h"

/* HF LlamaRMSNorm: y = w * (x * rsqrt(mean(x^2) + eps)), in float32. */
static void rmsnorm_row(const float *x, const float *w, float *y, int H, float eps)
{
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < H; i++)
        ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)H + eps);
#pragma omp simd
    for (int i = 0; i < H; i++)
        y[i] = w[i] * (x[i] * r);
}

static void rmsnorm_rows(const cpu_backend *be, const float *x, const float *w, float *y, int T)
{
    const int H = be->base.config.hidden_size;
    const float eps = be->base.config.rms_norm_eps;
#pragma omp parallel for num_threads(be->a.nthreads) schedule(static) if (T >= CPU_PAR_MIN_ROWS)
    for (int t = 0; t < T; t++)
        rmsnorm_row(x + (size_t)t * H, w, y + (size_t)t * H, H, eps);
}

/* HF rotate_half convention: the first and second halves of a head form the rotated pairs. */
static void rope_head(float *x, const float *cs, int half)
{
    const float *cosv = cs, *sinv = cs + half;
#pragma omp simd
    for (int i = 0; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cosv[i] + (-x2) * sinv[i];
        x[i + half] = x2 * cosv[i] + x1 * sinv[i];
    }
}

static void rope_tables(cpu_backend *be, const vesta_batch *b)
{
    const int half = be->base.config.head_dim / 2;
#pragma omp parallel for num_threads(be->a.nthreads) schedule(static) if (b->num_tokens >= CPU_PAR_MIN_ROWS)
    for (int t = 0; t < b->num_tokens; t++) {
        float *cs = be->a.rope + (size_t)t * (size_t)(2 * half);
        const float p = (float)b->positions[t];
        for (int i = 0; i < half; i++) {
            const float f = p * be->inv_freq[i]; /* HF: position.float() * inv_freq, float32 */
            cs[i] = cosf(f);
            cs[half + i] = sinf(f);
        }
    }
}

static void rope_apply(cpu_backend *be, int T)
{
    const vesta_model_config *c = &be->base.config;
    const int D = c->head_dim, half = D / 2, nq = c->num_heads, nk = c->num_kv_heads;
#pragma omp parallel for num_threads(be->a.nthreads) schedule(static) if (T >= CPU_PAR_MIN_ROWS)
    for (int t = 0; t < T; t++) {
        float *row = be->a.qkv + (size_t)t * (size_t)be->qkv_dim;
        const float *cs = be->a.rope + (size_t)t * (size_t)D;
        for (int h = 0; h < nq + nk; h++) /* q heads, then k heads: contiguous in the row */
            rope_head(row + (size_t)h * D, cs, half);
    }
}

/* HF: act_fn(gate_proj(x)) * up_proj(x) with SiLU(g) = g / (1 + exp(-g)). */
static void silu_mul(cpu_backend *be, int T)
{
    const int I = be->base.config.intermediate_size;
#pragma omp parallel for num_threads(be->a.nthreads) schedule(static) if (T >= CPU_PAR_MIN_ROWS)
    for (int t = 0; t < T; t++) {
        const float *g = be->a.gu + (size_t)t * (size_t)(2 * I), *u = g + I;
        float *y = be->a.act + (size_t)t * (size_t)I;
        for (int i = 0; i < I; i++)
            y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

/* Adds the tensor-parallel partial sums of a row-split product to the residual stream:
 * x += all_reduce(part). Every rank ends with the same x. */
static vesta_status residual_reduce(cpu_backend *be, float *part, int T, vesta_error *err)
{
    const size_t n = (size_t)T * (size_t)be->base.config.hidden_size;
    vesta_status st = vesta_tp_comm_all_reduce_sum(be->comm, part, n, err);
    if (st != VESTA_OK)
        return st;
    float *x = be->a.x;
#pragma omp parallel for simd num_threads(be->a.nthreads) schedule(static) if (T >= CPU_PAR_MIN_ROWS)
    for (size_t i = 0; i < n; i++)
        x[i] += part[i];
    return VESTA_OK;
}

static vesta_status layer_forward(cpu_backend *be, const vesta_batch *b, int l, vesta_error *err)
{
    const vesta_model_config *c = &be->base.config;
    const cpu_layer *L = &be->w.layers[l];
    cpu_activations *a = &be->a;
    const int T = b->num_tokens, H = c->hidden_size, I = c->intermediate_size, nt = a->nthreads;

    rmsnorm_rows(be, a->x, L->attn_norm, a->xn, T);
    float beta = 0.0f;
    if (L->bqkv) { /* bias preloaded, the product accumulates onto it */
#pragma omp parallel for num_threads(nt) schedule(static) if (T >= CPU_PAR_MIN_ROWS)
        for (int t = 0; t < T; t++)
            memcpy(a->qkv + (size_t)t * (size_t)be->qkv_dim, L->bqkv, (size_t)be->qkv_dim * sizeof(float));
        beta = 1.0f;
    }
    cpu_product(a, a->xn, T, H, L->wqkv, be->qkv_dim, a->qkv, be->qkv_dim, beta);
    cpu_lora_apply(be, b, l, VESTA_LORA_Q, a->xn, a->qkv, be->qkv_dim);
    cpu_lora_apply(be, b, l, VESTA_LORA_K, a->xn, a->qkv + be->q_dim, be->qkv_dim);
    cpu_lora_apply(be, b, l, VESTA_LORA_V, a->xn, a->qkv + be->q_dim + be->kv_dim, be->qkv_dim);
    rope_apply(be, T);
    cpu_attention(be, b, l);
    vesta_status st;
    if (!be->comm) {
        cpu_product(a, a->attn, T, be->q_dim, L->wo, H, a->x, H, 1.0f); /* residual add via beta = 1 */
        cpu_lora_apply(be, b, l, VESTA_LORA_O, a->attn, a->x, H);
    } else { /* xn is free again: it holds this rank's partial o_proj */
        cpu_product(a, a->attn, T, be->q_dim, L->wo, H, a->xn, H, 0.0f);
        if ((st = residual_reduce(be, a->xn, T, err)) != VESTA_OK)
            return st;
    }

    rmsnorm_rows(be, a->x, L->mlp_norm, a->xn, T);
    cpu_product(a, a->xn, T, H, L->wgu, 2 * I, a->gu, 2 * I, 0.0f);
    cpu_lora_apply(be, b, l, VESTA_LORA_GATE, a->xn, a->gu, 2 * I);
    cpu_lora_apply(be, b, l, VESTA_LORA_UP, a->xn, a->gu + I, 2 * I);
    silu_mul(be, T);
    if (!be->comm) {
        cpu_product(a, a->act, T, I, L->wdown, H, a->x, H, 1.0f);
        cpu_lora_apply(be, b, l, VESTA_LORA_DOWN, a->act, a->x, H);
    } else {
        cpu_product(a, a->act, T, I, L->wdown, H, a->xn, H, 0.0f);
        if ((st = residual_reduce(be, a->xn, T, err)) != VESTA_OK)
            return st;
    }
    return VESTA_OK;
}

vesta_status cpu_forward(cpu_backend *be, const vesta_batch *b, vesta_error *err)
{
    const vesta_model_config *c = &be->base.config;
    cpu_activations *a = &be->a;
    const int H = c->hidden_size;
    for (int s = 0; s < b->num_seqs; s++)
        for (int t = b->query_start[s]; t < b->query_start[s + 1]; t++)
            a->tok_seq[t] = s;
    /* Vocabulary-parallel embedding: each rank looks up the tokens of its slice, zeros for the
     * others, and the all-reduce assembles the rows (one non-zero term each: exact). */
    const int v0 = be->shard.vocab0, vn = be->shard.vocab_valid;
#pragma omp parallel for num_threads(a->nthreads) schedule(static) if (b->num_tokens >= CPU_PAR_MIN_ROWS)
    for (int t = 0; t < b->num_tokens; t++) {
        const int id = b->token_ids[t] - v0;
        if (id >= 0 && id < vn)
            memcpy(a->x + (size_t)t * H, be->w.embed + (size_t)id * (size_t)H, (size_t)H * sizeof(float));
        else
            memset(a->x + (size_t)t * H, 0, (size_t)H * sizeof(float));
    }
    vesta_status st = VESTA_OK;
    if (be->comm)
        st = vesta_tp_comm_all_reduce_sum(be->comm, a->x, (size_t)b->num_tokens * (size_t)H, err);
    rope_tables(be, b);
    for (int l = 0; st == VESTA_OK && l < c->num_layers; l++)
        st = layer_forward(be, b, l, err);
    return st;
}

void cpu_forward_final_rows(cpu_backend *be, const vesta_batch *b, int first, int n)
{
    const int H = be->base.config.hidden_size;
    const float eps = be->base.config.rms_norm_eps;
    for (int k = 0; k < n; k++)
        rmsnorm_row(be->a.x + (size_t)b->sample_token_index[first + k] * H, be->w.final_norm,
                    be->a.lm_x + (size_t)k * H, H, eps);
}
