/* Internal structures of the CPU backend (not a public interface). */
#ifndef VESTA_CPU_INTERNAL_H
#define VESTA_CPU_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "backend_cpu.h"
#include "comm.h"
#include "shard.h"
#include "vesta/error.h"
#include "vesta/lora.h"
#include "vesta/model.h"

/* One decoder layer's weights, float32, row-major [out][in] like Hugging Face. The q/k/v
 * projections are stacked into one matrix (and gate/up into another) so that each is a single
 * matrix product over all tokens of a step. */
typedef struct cpu_layer {
    float *attn_norm; /* [hidden] */
    float *wqkv;      /* [q_dim + 2 * kv_dim][hidden]: q rows, then k rows, then v rows */
    float *bqkv;      /* [q_dim + 2 * kv_dim], NULL without attention bias */
    float *wo;        /* [hidden][q_dim] */
    float *mlp_norm;  /* [hidden] */
    float *wgu;       /* [2 * intermediate][hidden]: gate rows, then up rows */
    float *wdown;     /* [hidden][intermediate] */
} cpu_layer;

/* This rank's slice of the model under tensor parallelism (Megatron style, worker/tp/shard.h,
 * the same plan as the CUDA backend's); rank 0 of 1 is the whole model. */
typedef vesta_tp_shard cpu_shard;

/* All weights live in one arena; lm_head aliases embed when embeddings are tied. */
typedef struct cpu_weights {
    float *arena;
    size_t arena_floats;
    float *embed;      /* [vocab_rows][hidden]: this rank's vocabulary slice */
    float *final_norm; /* [hidden] */
    float *lm_head;    /* [vocab_rows][hidden] */
    cpu_layer *layers; /* [num_layers] */
} cpu_weights;

/* Reads (or, for load_dummy, generates) this rank's slice of every weight into w: full is the
 * model's configuration, c the shard's (its heads, KV heads and intermediate size). Fails naming
 * the tensor. */
vesta_status cpu_weights_load(cpu_weights *w, const vesta_model_file *mf, const vesta_model_config *full,
                              const vesta_model_config *c, const cpu_shard *sh,
                              const vesta_backend_options *opts, vesta_error *err);
void cpu_weights_free(cpu_weights *w);

/* The rotary inverse frequencies [head_dim / 2] exactly as Hugging Face computes them (float32
 * arithmetic, including llama3 and linear scaling). */
vesta_status cpu_rope_inv_freq(const vesta_model_config *c, float *inv_freq, vesta_error *err);

/* Activation buffers, planned once from the options; no allocation happens per step. */
typedef struct cpu_activations {
    int max_tokens;  /* rows of every per-token buffer */
    int max_ctx;     /* longest context attention may see */
    int lm_rows;     /* rows of the LM-head buffers; more samples are done in chunks */
    int nthreads;
    float *x;        /* [max_tokens][hidden] residual stream */
    float *xn;       /* [max_tokens][hidden] normalized */
    float *qkv;      /* [max_tokens][q_dim + 2 * kv_dim] */
    float *attn;     /* [max_tokens][q_dim] attention output */
    float *gu;       /* [max_tokens][2 * intermediate] */
    float *act;      /* [max_tokens][intermediate] */
    float *rope;     /* [max_tokens][head_dim]: cos (head_dim / 2) then sin (head_dim / 2) */
    int32_t *tok_seq;/* [max_tokens] sequence of each token */
    float *scores;   /* [nthreads][max_ctx] attention probabilities (token-at-a-time path) */
    float *attn_ws;  /* [nthreads][attn_ws_floats] tiled attention workspace */
    size_t attn_ws_floats;
    int32_t *tiles;  /* [max_tokens][2] (first token, count) of each attention tile */
    bool invariant;  /* opts->batch_invariant: cpu_matmul_invariant, attention one token at a time */
    float *lm_x;     /* [lm_rows][hidden] */
    float *logits;   /* [lm_rows][lm_cols]: vocab, or this rank's vocabulary slice */
} cpu_activations;

typedef struct cpu_kv_cache {
    float *data;          /* [num_blocks][num_layers][2][num_kv_heads][block_size][head_dim] */
    int num_blocks;
    int block_size;
    size_t block_floats;  /* one block, all layers, K and V */
    size_t layer_floats;  /* one layer's K and V within a block */
    size_t head_floats;   /* block_size * head_dim */
} cpu_kv_cache;

struct vesta_sampler_scratch;

typedef struct cpu_backend {
    vesta_backend base; /* must be first; under tensor parallelism config is the shard's
                           (local heads, KV heads, intermediate size; the full vocabulary) */
    vesta_model_config full; /* the whole model's configuration */
    cpu_shard shard;
    vesta_tp_comm *comm;     /* NULL without tensor parallelism; not owned */
    float *gathered;         /* [size][lm_rows][vocab_rows] gathered logit slices, tp only */
    float *full_logits;      /* [lm_rows][vocab] rank 0's assembled logits, tp only */
    vesta_backend_options opts;
    int q_dim, kv_dim, qkv_dim;
    float attn_scale;
    float *inv_freq;    /* [head_dim / 2] */
    cpu_weights w;
    cpu_activations a;
    cpu_kv_cache kv;
    struct vesta_sampler_scratch **scratch; /* [n_scratch] */
    int n_scratch;      /* threads that sample rows in parallel */
    const vesta_lora_adapter *loras[VESTA_LORA_MAX_ADAPTERS]; /* by slot; owned by the engine */
    int num_loras;
    float *lora_tmp; /* [max_tokens][lora_rank_cap]: A x of one sequence */
    int lora_rank_cap;
} cpu_backend;

/* The backend's lora_add (no tensor parallelism). */
vesta_status cpu_lora_add(vesta_backend *base, int slot, const vesta_lora_adapter *ad, vesta_error *err);

/* y[t][0 .. out) += B (A x[t]) for the tokens t of every sequence whose adapter targets (layer, t);
 * x rows are `in` wide (vesta_lora_target_dims), y rows ldy apart, y pointing at the target's
 * first output column. No-op without adapters. */
void cpu_lora_apply(cpu_backend *be, const vesta_batch *b, int layer, vesta_lora_target t, const float *x, float *y,
                    int ldy);

vesta_status cpu_activations_alloc(cpu_activations *a, const vesta_model_config *c,
                                   const vesta_backend_options *opts, int nthreads, int lm_cols,
                                   vesta_error *err);
void cpu_activations_free(cpu_activations *a);

/* Checks every index of the batch against the backend's limits and the KV cache, so that the
 * forward pass never reads or writes out of bounds. */
vesta_status cpu_batch_validate(const cpu_backend *be, const vesta_batch *b, vesta_error *err);

/* C[M][ldc] (first N columns) = A[M][K] * W[N][K]^T + beta * C, split over the threads by
 * output columns; each slice is one single-threaded BLAS call. */
void cpu_matmul(const float *A, int M, int K, const float *W, int N, float *C, int ldc, float beta,
                int nthreads);

/* The column slices of cpu_matmul: how many for N output columns on nthreads threads, and the
 * width of each (the last may be narrower). */
int cpu_matmul_parts(int N, int nthreads);
int cpu_matmul_slice_cols(int N, int parts);

/* cpu_matmul for batch-invariant mode (docs/cpu-backend.md): the same product, but each output
 * row's bits depend only on its own input row (not on M, on the other rows or on the threads),
 * on any CPU: loops of Vesta's own with one summation order (cpu_matmul.c), not OpenBLAS, whose
 * kernels sum in orders that depend on the call's shape and the CPU. */
void cpu_matmul_invariant(const float *A, int M, int K, const float *W, int N, float *C, int ldc, float beta,
                          int nthreads);

/* C = A * W^T + beta * C (cpu_matmul's contract) with the backend's threads, through
 * cpu_matmul_invariant in batch-invariant mode. */
static inline void cpu_product(const cpu_activations *a, const float *A, int M, int K, const float *W, int N,
                               float *C, int ldc, float beta)
{
    if (a->invariant)
        cpu_matmul_invariant(A, M, K, W, N, C, ldc, beta, a->nthreads);
    else
        cpu_matmul(A, M, K, W, N, C, ldc, beta, a->nthreads);
}

/* Writes the new tokens' K/V into the cache and computes causal paged attention for every
 * query token of the batch for one layer: a.qkv (roped) -> a.attn. */
void cpu_attention(cpu_backend *be, const vesta_batch *b, int layer);

/* The decoder layers over all tokens of the (validated) batch: residual stream in a.x. Fails only
 * when a tensor-parallel collective fails. */
vesta_status cpu_forward(cpu_backend *be, const vesta_batch *b, vesta_error *err);
/* Final norm of the sampled rows [first, first + n) (n <= a.lm_rows) into a.lm_x. */
void cpu_forward_final_rows(cpu_backend *be, const vesta_batch *b, int first, int n);

/* Below these sizes a loop runs on the calling thread: waking the pool costs more than the work
 * (and much more when the cores are shared with other processes). */
#define CPU_PAR_MIN_ROWS 4     /* per-token loops: tokens in the step */
#define CPU_PAR_MIN_ATTN 2048  /* attention: tokens x longest context */
#define CPU_MAX_SAMPLE_THREADS 16
/* Tiled attention (prefill chunks): sequences with at least TILE_MIN query tokens in the step are
 * done TILE queries x KEYS keys at a time with BLAS; others one token at a time. */
#define CPU_ATTN_TILE_MIN 8
#define CPU_ATTN_TILE 32
#define CPU_ATTN_KEYS 128

/* Overflow-checked size arithmetic. */
static inline int cpu_mul_size(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

#endif
