/* Internal state of the CUDA backend. */
#ifndef VESTA_CUDA_INTERNAL_H
#define VESTA_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend_cuda.h"
#include "comm.h"
#ifdef VESTA_HAVE_NCCL
#include "p2p.h"
#endif
#include "sampler.h"
#include "shard.h"
#include "vesta_kernels.h"

/* Checks a CUDA runtime call; on failure fills err and jumps to `fail` in the caller. */
#define CU(call)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) {                                                                                       \
            vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: %s: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__,   \
                            __LINE__);                                                                                 \
            goto fail;                                                                                                 \
        }                                                                                                              \
    } while (0)
#define CB(call)                                                                                                       \
    do {                                                                                                               \
        cublasStatus_t s_ = (call);                                                                                    \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                                             \
            vesta_error_set(err, VESTA_ERR_BACKEND, "cublas: %s: status %d (%s:%d)", #call, (int)s_, __FILE__,         \
                            __LINE__);                                                                                 \
            goto fail;                                                                                                 \
        }                                                                                                              \
    } while (0)

typedef struct cuda_layer {
    void *ln1, *wqkv, *bqkv, *wo, *ln2, *wgu, *wdown;
} cuda_layer;

/* Device buffers for one step's inputs (fixed addresses: decode graphs read them at replay). */
typedef struct cuda_meta {
    int32_t *tokens, *positions, *slots, *query_start, *context_lens, *block_tables, *tiles, *sample_idx;
    int32_t *lora_rows; /* each token's adapter slot, -1 = base model (only with adapters) */
    vk_sample_row *sample_params;
    int32_t *ids_pool;
    float *bias_pool;
    vk_sample_out *sample_out;
} cuda_meta;

#define CUDA_MAX_GRAPHS 40
#define CUDA_MAX_ALGOS 512
#define CUDA_INV_SHAPES 5 /* q|k|v, o, gate|up, down, LM head */
#define CUDA_INV_BANDS 6  /* n <= 1, 4, 16, 64, 256, any (cuda_gemm_invariant.c) */

/* Operation classes of the step profile (cuda_profile.c). */
typedef enum cuda_prof_class {
    CUDA_PROF_EMBED,
    CUDA_PROF_NORM,
    CUDA_PROF_QKV,
    CUDA_PROF_ROPE,
    CUDA_PROF_ATTN,
    CUDA_PROF_O,
    CUDA_PROF_GU,
    CUDA_PROF_SILU,
    CUDA_PROF_DOWN,
    CUDA_PROF_COMM,
    CUDA_PROF_HEAD,
    CUDA_PROF_SAMPLE,
    CUDA_PROF_UPLOAD,
    CUDA_PROF_COUNT
} cuda_prof_class;

/* Up to this many rows the default takes vk_gemm_stream's version 3 over cuBLAS. With the whole step
 * chained by programmatic dependent launch (VESTA_PDL=2), on an H100: decode at 24 / 32 / 48
 * sequences +2.0 / +1.5 / +1.5 %, B4's 32-row step 0.35 ms faster, level at 64 (run 106); before
 * that chaining it won only up to 16 rows (runs 67-73). cuBLAS keeps larger steps. */
#define CUDA_GEMM_STREAM_AUTO_MAX_N 48
/* The most rows the streaming kernels take (vk_gemm_stream's bound; vk_gemv's is lower): with
 * residual_add, tmp and stmp hold only this many (cuda_gemm_adds). */
#define CUDA_SMALL_ROWS VK_GEMM_STREAM_MAX_N

/* A product shape tuned at start-up (cuda_gemm.c): n rows of `in` against an [out][in] weight. */
typedef struct cuda_gemm_algo {
    int n, in, out;
    bool f32;    /* fp32 output (the LM head) */
    bool use_lt; /* the cuBLASLt pick below beat cuBLAS's default */
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} cuda_gemm_algo;

typedef struct cuda_backend {
    vesta_backend base;
    vesta_backend_options opts;
    /* Multi-LoRA (cuda_lora.c), set up at start-up: each adapter's bf16 matrices, the slot table
     * per (layer, projection) on the device and its host copy, which (layer, projection) any
     * adapter targets, and the shrink output t [max_tokens][lora_rank_max]. lora_step: this step
     * (or the graph being captured) runs the LoRA kernels. */
    int num_loras, lora_rank_max;
    void *lora_mem[VESTA_LORA_MAX_ADAPTERS];
    int lora_rank[VESTA_LORA_MAX_ADAPTERS];
    vk_lora_slot *lora_tab, *lora_tab_host;
    bool *lora_any;
    float *lora_t;
    bool lora_step;
    /* The products path (eager steps of at least CUDA_LORA_GEMM_MIN_N rows, cuda_lora.c): per
     * adapter, layer and projection group the group's A rows stacked [targets][rank][in] on the
     * device (lora_agrp[(slot * L + l) * CUDA_LORA_GROUPS + g], NULL where the adapter has none of
     * the group); t in bf16 [max_tokens][3 * lora_rank_max]; this step's adapters. */
    void **lora_agrp;
    void *lora_tg;
    bool lora_gemm;
    int lora_active[VESTA_LORA_MAX_ADAPTERS], num_lora_active;
    /* each active adapter's rows: [r0, r1) when contiguous (the engine groups a step by adapter),
     * else [0, n) with the other rows zeroed after the shrink */
    int lora_r0[VESTA_LORA_MAX_ADAPTERS], lora_r1[VESTA_LORA_MAX_ADAPTERS];
    bool lora_masked[VESTA_LORA_MAX_ADAPTERS];
    int dev;
    size_t total_mem;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    size_t blas_ws_bytes;

    /* products tuned at start-up (cuda_gemm.c); gemm_tune: 0 off, 1 on, 2 on and logged per n */
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t lt_desc, lt_desc_f32;
    cublasLtMatmulPreference_t lt_pref;
    cuda_gemm_algo algos[CUDA_MAX_ALGOS];
    int num_algos;
    int gemm_tune;
    /* VESTA_DECODE_ATTENTION: the decode-attention kernel version (vk_attention_v; 0 = production) */
    int decode_attention;
    /* VESTA_GEMM_STREAM (-1, the default: vk_gemm_stream's version 3, VK_GEMM_STREAM_TMA, for
     * VK_GEMV_MAX_N < n <= CUDA_GEMM_STREAM_AUTO_MAX_N where it runs, else 0; 0: off; 1:
     * vk_gemm_stream for VK_GEMV_MAX_N < n <= 64; 2: also for n <= VK_GEMV_MAX_N; 3: version 3 for
     * VK_GEMV_MAX_N < n <= 64); gs_ws: its workspace,
     * sized for the largest product (NULL when off). */
    int gemm_stream;
    /* VESTA_PDL: programmatic dependent launch (Hopper; vesta_kernels.h). gemm_pdl: vk_gemv /
     * vk_gemm_stream (VESTA_PDL >= 1); kernel_pdl: also the norms, RoPE, SiLU and the attention
     * kernels (VESTA_PDL = 2, and the kernels built with the wait: vk_pdl_supported) */
    int gemm_pdl, kernel_pdl;
    void *gs_ws;
    size_t gs_ws_bytes;
    /* VESTA_PREFILL_GROUP (1, the default, where a group has 2..8 heads): prefill attention tiles per
     * KV group (vk_attention_args.group_heads) */
    bool prefill_group;
    bool prefill_longest_first; /* VK_TILES_LONGEST_FIRST: a sequence's prefill tiles last row first */
    /* VESTA_PREFILL_WIDE (with prefill_group where the GPU has the shared memory:
     * vk_prefill_wide_supported): steps that vk_prefill_wide picks (few query rows over long
     * contexts) take wide tiles, on the kernel prefill_wide names (vk_attention_args.wide_tiles:
     * VK_WIDE_WGMMA by default where the GPU runs it, else VK_WIDE_MMA; 0: never); step_wide:
     * this step's tiles are wide */
    int prefill_wide;
    bool step_wide;
    /* batch-invariant mode (opts.batch_invariant, cuda_gemm_invariant.c): per weight shape, kernels
     * for bands of n checked at start-up to give a row the same bits at any n */
    bool batch_invariant;
    /* VESTA_RESIDUAL_ADD (backend_cuda.c): where cuBLAS computes them (cuda_gemm_adds), the O and
     * down products add into x instead of storing into tmp, which then holds only the rows of the
     * steps the streaming kernels take (CUDA_SMALL_ROWS, as stmp) */
    bool residual_add;
    cuda_gemm_algo inv[CUDA_INV_SHAPES][CUDA_INV_BANDS];
    int num_inv;

    /* VESTA_PROFILE (cuda_profile.c): events after each operation of an eager step */
    bool prof, prof_off, prof_each; /* prof_off: this step is not recorded (graph replay, capture) */
    int prof_n;
    cudaEvent_t *prof_ev;
    signed char *prof_cat;
    double *prof_host;                  /* host clock (s) when each mark was recorded: VESTA_PROFILE=2's issue times */
    double prof_ms[2][CUDA_PROF_COUNT]; /* [has prefill][class] */
    long prof_steps[2];

    /* shapes */
    int Hd, H, KVH, D, F, V, L, W;        /* W = (H + 2 KVH) D */
    int max_tokens, max_seqs, max_blocks; /* max_blocks per sequence (block table stride) */
    int tiles_cap;
    size_t ids_cap;
    float attn_scale;

    /* weights */
    void *warena;
    size_t wbytes;
    void *embed, *final_norm, *lm_head;
    cuda_layer *layers;
    float *inv_freq;

    /* activations */
    void *aarena;
    size_t abytes;
    void *x, *h, *qkv, *attn, *tmp, *gu, *act, *sx, *stmp, *sh, *attn_scratch;
    float *logits, *swork;
    int32_t *scounts;
    cuda_meta m;

    /* pinned host staging */
    void *hpin;
    size_t hpin_bytes;
    cuda_meta hm;   /* host mirrors of cuda_meta (in hpin) */
    float *hlogits; /* raw logits rows for host sampling / logits_out */

    /* KV cache */
    void *kv;
    size_t kv_bytes;
    int num_blocks, block_size;
    void **kv_ptrs;    /* device: 2 L cache pointers (K0, V0, K1, V1, ...) */
    size_t kv_reserve; /* bytes held back from the KV budget (graphs, allocator
                          slack) */

    /* decode graphs per batch-size bucket */
    int num_graphs;
    int graph_bs[CUDA_MAX_GRAPHS];
    cudaGraphExec_t graphs[CUDA_MAX_GRAPHS];

    /* Tensor parallelism (docs/tensor-parallel.md). comm == NULL: the whole model, no collective.
     * Otherwise H, KVH, F, W above are this rank's shard (shard.h), V stays the full vocabulary. */
    vesta_tp_comm *comm; /* NCCL, on `stream`; owned */
    struct vesta_tp_p2p *p2p; /* the peer-to-peer all-reduce for small ones (p2p.h); NULL: NCCL only */
    vesta_tp_shard shard;
    int Vr;                /* rows of the LM-head slice: V, or ceil(V / size) under TP */
    int Ve;                /* rows of the embedding table: V, or Vr + 1 (a zero row for other
                              ranks' ids) */
    float *lslice;         /* [S][Vr] this rank's slice of the logits (TP only) */
    float *gathered;       /* [size][S][Vr] every rank's slice (TP only) */
    cudaEvent_t step_done; /* recorded after a step: waited for with the NCCL watchdog */

    double load_seconds;
} cuda_backend;

vesta_status cuda_weights_load(cuda_backend *be, const vesta_model_file *mf, vesta_error *err);
/* Waits for everything enqueued on be->stream; under TP bounded by the communicator's timeout
 * (a dead peer fails the step, never hangs it). */
vesta_status cuda_stream_wait(cuda_backend *be, vesta_error *err);
/* Under TP: token ids (in place) to rows of this rank's embedding slice, ids of other ranks'
 * slices to the zero row Vr. */
void cuda_tp_local_ids(const cuda_backend *be, int32_t *ids, int n);
/* The products (cuda_gemm.c). init/dispose: the cuBLASLt handle and descriptors (dispose is safe on
 * a partly initialised backend). tune: times the candidates for each n of ns[] (after the weights
 * and activations exist; overwrites the activations). cuda_gemm: one product on the backend's
 * stream: vk_gemm_stream or vk_gemv for small n (cuda_gemm_streams), else the tuned pick or
 * cuBLAS's default. mode: y = the product in bf16 (STORE) or fp32 (F32), or y += it (ADD: cuBLAS's
 * beta = 1, the sum in fp32 rounded once), which only products of n rows where cuda_gemm_adds
 * says so may ask (VESTA_ERR_BACKEND otherwise). */
typedef enum cuda_gemm_out { CUDA_GEMM_STORE, CUDA_GEMM_F32, CUDA_GEMM_ADD } cuda_gemm_out;
vesta_status cuda_gemm_init(cuda_backend *be, vesta_error *err);
void cuda_gemm_dispose(cuda_backend *be);
vesta_status cuda_gemm_tune(cuda_backend *be, const int *ns, int count, vesta_error *err);
vesta_status cuda_gemm(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                       cuda_gemm_out mode, vesta_error *err);
/* Whether the O and down products of a step of n rows add into the residual stream: with
 * be->residual_add where cuBLAS computes them. The streaming kernels (vk_gemv, vk_gemm_stream)
 * store, because at their n the norm kernel's add costs nothing (latency-bound) and an add in
 * their epilogue put a read of y at the end of every product (session 17, run 174: decode at
 * 8-32 sequences 0.4-1.3 % slower, B4's second request +0.3 ms). */
bool cuda_gemm_adds(const cuda_backend *be, int n);
/* Whether products of n rows go through vk_gemm_stream (not cuBLAS or vk_gemv). */
bool cuda_gemm_streams(const cuda_backend *be, int n);
/* Shared by the tuned and the batch-invariant products: layouts for a's shape (n, in, out, f32;
 * false on a cuBLASLt failure, the layouts made so far left for dispose), a's product with its
 * algo (y = product + beta * y), and dispose (layouts destroyed, a zeroed). */
bool cuda_gemm_layouts_create(cuda_gemm_algo *a);
vesta_status cuda_gemm_lt(cuda_backend *be, const cuda_gemm_algo *a, const void *x, const void *w, void *y, float beta,
                          vesta_error *err);
void cuda_gemm_algo_dispose(cuda_gemm_algo *a);
/* Batch-invariant products (cuda_gemm_invariant.c). init: for each weight shape, the first
 * cuBLASLt candidate without a K split whose rows come out bit-identical at every n tried (and
 * at every row offset), and for bands of small n kernels giving the same bits; an error when no
 * candidate is invariant. Overwrites the activations. run: the product with the kernel of n's
 * band (VESTA_ERR_BACKEND if the shape has none). dispose: safe on a partly initialised backend. */
vesta_status cuda_gemm_invariant_init(cuda_backend *be, vesta_error *err);
vesta_status cuda_gemm_invariant_run(cuda_backend *be, const void *x, int n, int in, const void *w, int out, void *y,
                                     bool f32out, vesta_error *err);
void cuda_gemm_invariant_dispose(cuda_backend *be);
/* The step profile (VESTA_PROFILE=1). init: reads the variable, creates the events; mark: an
 * event after an operation of class cat (-1: the step's start); collect: after the step's
 * stream wait, adds its times; report: prints the totals (stderr); dispose: NULL-safe. */
/* The host's monotonic clock in seconds (tuning and profile timings). */
double cuda_now_s(void);
vesta_status cuda_profile_init(cuda_backend *be, vesta_error *err);
void cuda_profile_mark(cuda_backend *be, int cat);
void cuda_profile_collect(cuda_backend *be, bool has_prefill);
void cuda_profile_report(cuda_backend *be);
void cuda_profile_dispose(cuda_backend *be);
/* The decode batch sizes graphs are captured for (ascending; returns the count, at most
 * CUDA_MAX_GRAPHS). */
int cuda_decode_buckets(const cuda_backend *be, int *sizes);
vesta_status cuda_forward(cuda_backend *be, int ntok, int nseq, int nsamples, int max_ctx, bool has_decode, int ntiles,
                          vesta_error *err);
vesta_status cuda_graphs_capture(cuda_backend *be, vesta_error *err);
int cuda_graph_for(const cuda_backend *be, int nseq);
size_t cuda_gemm_workspace_bytes(void);

#define CUDA_LORA_GROUPS 4      /* q|k|v, o, gate|up, down */
#define CUDA_LORA_GEMM_MIN_N 64 /* rows from which an eager step takes the products path */

/* Multi-LoRA (cuda_lora.c). lora_add: the backend op. lora_rows: the step's per-token slots
 * into hm.lora_rows (rows >= num_tokens: padding, -1); true when some row has an adapter.
 * lora_apply: for the `count` projections from `first` (q, k, v or gate, up: one input x, their
 * columns one after the other in y, rows ldy apart), y += B (A x) for the rows of adapters that
 * target them in layer l; nothing unless lora_step. */
vesta_status cuda_lora_add(vesta_backend *base, int slot, const vesta_lora_adapter *ad, vesta_error *err);
bool cuda_lora_rows(cuda_backend *be, const vesta_batch *b, int rows);
/* This step's path: the products (cuBLAS) for an eager step of >= CUDA_LORA_GEMM_MIN_N rows outside
 * batch-invariant mode, with the step's distinct adapters; the kernels (vk_lora) otherwise. */
void cuda_lora_plan(cuda_backend *be, const vesta_batch *b, bool graph);
vesta_status cuda_lora_apply(cuda_backend *be, int l, vesta_lora_target first, int count, const void *x, void *y,
                             int ldy, int n, vesta_error *err);
void cuda_lora_free(cuda_backend *be);

#endif
