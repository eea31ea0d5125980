/* Activation buffers, sized once from the largest step (max_num_batched_tokens). */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

/* Rows of the LM-head buffers: more sampled rows are done in chunks of this many. */
#define CPU_LM_ROWS 64

typedef struct plan {
    size_t total; /* floats */
    bool overflow;
} plan;

/* Reserves rows * cols floats (64-byte aligned) at *off within the arena. */
static void reserve(plan *p, size_t rows, size_t cols, size_t *off)
{
    size_t n;
    *off = p->total;
    if (cpu_mul_size(rows, cols, &n) || __builtin_add_overflow(n, (size_t)15, &n) ||
        __builtin_add_overflow(p->total, n & ~(size_t)15, &p->total))
        p->overflow = true;
}

vesta_status cpu_activations_alloc(cpu_activations *a, const vesta_model_config *c,
                                   const vesta_backend_options *opts, int nthreads, int lm_cols, vesta_error *err)
{
    memset(a, 0, sizeof *a);
    a->max_tokens = opts->max_num_batched_tokens;
    a->max_ctx = opts->max_model_len > 0 ? opts->max_model_len : c->max_position_embeddings;
    if (a->max_tokens <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "max_num_batched_tokens %d must be positive",
                               a->max_tokens);
    if (a->max_ctx <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "max_model_len %d (max_position_embeddings %d) must be positive",
                               opts->max_model_len, c->max_position_embeddings);
    a->lm_rows = a->max_tokens < CPU_LM_ROWS ? a->max_tokens : CPU_LM_ROWS;
    a->nthreads = nthreads;
    size_t T = (size_t)a->max_tokens, H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t D = (size_t)c->head_dim, q = (size_t)c->num_heads * D, kv = (size_t)c->num_kv_heads * D;
    size_t o_x, o_xn, o_qkv, o_attn, o_gu, o_act, o_rope, o_seq, o_sc, o_lmx, o_lg, o_ws, o_tiles;
    size_t G = (size_t)(c->num_heads / c->num_kv_heads);
    a->attn_ws_floats = (2 * CPU_ATTN_KEYS * D + (size_t)CPU_ATTN_TILE * CPU_ATTN_KEYS + 2 * G * CPU_ATTN_TILE + 15) &
                        ~(size_t)15;
    plan p = {0};
    reserve(&p, T, H, &o_x);
    reserve(&p, T, H, &o_xn);
    reserve(&p, T, q + 2 * kv, &o_qkv);
    reserve(&p, T, q, &o_attn);
    reserve(&p, T, 2 * I, &o_gu);
    reserve(&p, T, I, &o_act);
    reserve(&p, T, D, &o_rope);
    reserve(&p, T, 1, &o_seq); /* int32 fits a float slot */
    reserve(&p, (size_t)nthreads, (size_t)a->max_ctx, &o_sc);
    reserve(&p, (size_t)nthreads, a->attn_ws_floats, &o_ws);
    reserve(&p, T, 2, &o_tiles); /* int32 pairs */
    a->invariant = opts->batch_invariant;
    reserve(&p, (size_t)a->lm_rows, H, &o_lmx);
    reserve(&p, (size_t)a->lm_rows, (size_t)lm_cols, &o_lg);
    size_t bytes;
    if (p.overflow || cpu_mul_size(p.total, sizeof(float), &bytes))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "activation buffers for %d tokens overflow",
                               a->max_tokens);
    float *base = aligned_alloc(64, bytes);
    if (!base)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "cannot allocate %zu MiB of activation buffers for %d tokens",
                               bytes >> 20, a->max_tokens);
    a->x = base + o_x;
    a->xn = base + o_xn;
    a->qkv = base + o_qkv;
    a->attn = base + o_attn;
    a->gu = base + o_gu;
    a->act = base + o_act;
    a->rope = base + o_rope;
    a->tok_seq = (int32_t *)(base + o_seq);
    a->scores = base + o_sc;
    a->attn_ws = base + o_ws;
    a->tiles = (int32_t *)(base + o_tiles);
    a->lm_x = base + o_lmx;
    a->logits = base + o_lg;
    return VESTA_OK;
}

void cpu_activations_free(cpu_activations *a)
{
    if (!a)
        return;
    free(a->x); /* the arena's base */
    memset(a, 0, sizeof *a);
}
