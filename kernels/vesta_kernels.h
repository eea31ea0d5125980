/* Vesta CUDA kernels: a C API over device pointers, one launch per call on the given stream.
 *
 * Storage is bf16 (or fp16, chosen per call by vk_dtype) with fp32 accumulation. Where Hugging Face
 * transformers rounds an intermediate to the storage type (residual add, RMSNorm output before
 * the weight, RoPE products, SiLU before the multiply) the kernels round at the same points, so
 * that greedy tokens match HF on the same weights.
 *
 * KV cache layout (one tensor per layer for K and one for V):
 *     [num_blocks][block_size][num_kv_heads][head_dim]
 * so a token's head vector is head_dim contiguous elements and slot = block * block_size + offset.
 *
 * Every function returns cudaSuccess or the launch error (cudaGetLastError after the launch);
 * cudaErrorInvalidValue for unsupported shapes (head_dim other than 64/128, GQA group > 8, ...).
 * No function allocates device memory: scratch buffers are passed in (sized by the *_bytes
 * helpers), so that every call can be captured in a CUDA graph. */
#ifndef VESTA_KERNELS_H
#define VESTA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vk_dtype { VK_BF16 = 0, VK_F16 = 1 } vk_dtype;

/* out[i, :] = table[ids[i], :]; ids outside [0, vocab) give a zero row. */
cudaError_t vk_embedding(vk_dtype dt, void *out, const void *table, const int32_t *ids, int n,
                         int hidden, int vocab, cudaStream_t s);

/* Programmatic dependent launch (Hopper): functions taking `int pdl` launch their kernels as
 * programmatic dependents when it is non-zero. Such a kernel is placed on the GPU while the
 * previous kernel of the stream still runs (once that one allows it: every Vesta kernel does so
 * first thing) and waits for it (griddepcontrol.wait) before touching anything an earlier kernel
 * wrote; only step metadata uploaded by copies (positions, slots, block tables, context lengths)
 * and weights are read before the wait. Results are the same bits either way. pdl must be 0
 * where vk_pdl_supported() is 0: before sm_90, and for the portable PTX build, whose kernels are
 * compiled without the wait. */
int vk_pdl_supported(void);

/* Fused residual add + RMSNorm (HF LlamaRMSNorm rounding):
 *   if x != NULL: residual[i] = round(residual[i] + x[i])  (in place)
 *   out[i] = round(w * round(residual[i] * rsqrt(mean(residual[i]^2) + eps)))
 * rows may alias nothing; out must not alias residual. */
cudaError_t vk_add_rmsnorm(vk_dtype dt, void *out, void *residual, const void *x, const void *w,
                           int n, int hidden, float eps, int pdl, cudaStream_t s);

/* One-shot all-reduce over peer-mapped memory (kernels/allreduce.cu), for the small all-reduces of
 * tensor-parallel decode steps, where NCCL's ring costs more in latency than the bytes do. Every
 * rank owns a region (VK_AR_REGION_BYTES) that every other rank has mapped (CUDA IPC; set up by
 * worker/tp/p2p.c): flags at its head, then two data buffers used on alternate calls. A call
 * copies this rank's part into its own buffer, tells every peer (a flag written into the peer's
 * region), waits for every peer's flag, and sums all ranks' parts in rank order in fp32, so
 * every rank ends with bit-identical values. Calls count themselves on the device (epoch), so
 * they can be captured into CUDA graphs. Every rank must make the same calls in the same order
 * with the same sizes. A peer that does not arrive within timeout_ns makes the call set *error
 * (host-mapped, for the host to see) and *failed (device, for later calls, which then return at
 * once) and return with its output unwritten: the replica is then failed. The host failing the
 * replica first (setting *error) ends a wait the same way. */
#define VK_AR_MAX_RANKS 8
#define VK_AR_MAX_BLOCKS 32
#define VK_AR_FLAG_BYTES 4096 /* [VK_AR_MAX_BLOCKS][VK_AR_MAX_RANKS] uint64 flags, padded */
#define VK_AR_REGION_BYTES(data_bytes) ((size_t)VK_AR_FLAG_BYTES + 2 * (size_t)(data_bytes))
typedef struct vk_allreduce_ctx {
    void *region[VK_AR_MAX_RANKS]; /* rank r's region as mapped in this process (own included) */
    unsigned long long *epoch;     /* this rank's [VK_AR_MAX_BLOCKS] call counters, zeroed */
    int *error;                    /* device view of a host-mapped word, set to 1 on a timeout */
    int *failed;                   /* device word (zeroed), set with *error: read by every call */
    size_t data_bytes;             /* capacity of one data buffer */
    unsigned long long timeout_ns; /* bound on the wait for peers */
    int rank, size;
} vk_allreduce_ctx;

/* buf[0..n) = the sum over ranks of every rank's buf[0..n), in place. n * element size must be a
 * multiple of 16 and at most c->data_bytes (else cudaErrorInvalidValue). */
cudaError_t vk_allreduce(vk_dtype dt, const vk_allreduce_ctx *c, void *buf, size_t n, cudaStream_t s);
/* vk_allreduce of part[n][hidden] fused with vk_add_rmsnorm(out, residual, sum, w): the same
 * values bit for bit as the two calls (part itself is left as it was). */
cudaError_t vk_allreduce_add_rmsnorm(vk_dtype dt, const vk_allreduce_ctx *c, void *out, void *residual,
                                     const void *part, const void *w, int n, int hidden, float eps,
                                     cudaStream_t s);

/* out[i, :] = in[idx[i], :] for row-major [*, cols] matrices of element size elem_bytes
 * (cols * elem_bytes must be a multiple of 16). */
cudaError_t vk_gather_rows(void *out, const void *in, const int32_t *idx, int n, int cols,
                           int elem_bytes, cudaStream_t s);

/* Rotary inverse frequencies as HF computes them (rope_theta, head_dim, optional llama3 or
 * linear scaling), into inv_freq[head_dim / 2]. Host function. */
typedef struct vk_rope_config {
    int head_dim;
    float theta;
    int scaling;           /* 0 none, 1 linear, 2 llama3 (vesta_rope_scaling values) */
    float factor, low_freq_factor, high_freq_factor;
    int original_max_position;
} vk_rope_config;
void vk_rope_inv_freq(const vk_rope_config *c, float *inv_freq);

/* qkv: [n][(H + 2*KVH) * D] (q | k | v per token, the fused projection's output), bias (may be
 * NULL) [(H + 2*KVH) * D] added first. Rotates q in place (HF rotate_half convention, cos/sin
 * rounded to the storage type as HF does), writes rotated k and v to the caches at slot_mapping
 * (slots < 0 are skipped: padding). */
cudaError_t vk_rope_kv_write(vk_dtype dt, void *qkv, const void *bias, const int32_t *positions,
                             const int32_t *slot_mapping, const float *inv_freq, void *k_cache,
                             void *v_cache, int n, int H, int KVH, int D, int pdl, cudaStream_t s);
/* The same with a chosen kernel (the same results): 0 = production (version 2 where D % 16 == 0
 * and qkv, caches and bias are 16-byte aligned, else version 1), 1 = an element per thread,
 * 2 = 16-byte vectors (cudaErrorInvalidValue where the shape or alignment does not allow, and for
 * any other version). */
cudaError_t vk_rope_kv_write_v(int version, vk_dtype dt, void *qkv, const void *bias, const int32_t *positions,
                               const int32_t *slot_mapping, const float *inv_freq, void *k_cache, void *v_cache,
                               int n, int H, int KVH, int D, int pdl, cudaStream_t s);

/* Paged attention over the caches for a flattened batch (vesta_batch's layout).
 *   q:   element (t, h, d) at q[t * q_stride + h * D + d] (the rotated q inside qkv)
 *   out: [num_tokens][H][D]
 * Sequence i owns query rows [query_start[i], query_start[i+1]); its keys are positions
 * [0, context_lens[i]) read through block_tables[i * max_blocks_per_seq + ...]; its queries are
 * the last (query_len) positions, causally masked.
 * Decode rows (query_len == 1) go through the split-K decode kernel; longer queries through the
 * tiled prefill kernel, whose tile list (prefill_tiles, num_prefill_tiles; device memory) comes
 * from vk_prefill_tiles_build. scratch: vk_attention_scratch_bytes(num_seqs, H, D, max_context).
 *
 * batch_invariant: every row, decode rows included, goes through the prefill kernel without the
 * default mode's key split (whose ranges follow the batch), a block taking the heads of one KV group for VK_PREFILL_TILE_M / group tokens (the
 * tile list must be built with batch_invariant too). A row's bits then depend only on its query,
 * its keys and values, and its position: the same token gives the same output as a decode row,
 * inside a prompt, in any chunk and in any batch (the kernel walks the keys in the same 64-key
 * tiles from position 0 and sums each row alone). Keys are summed in chunks of VK_INVARIANT_CHUNK
 * (a fresh softmax state per chunk, the chunk states folded in order), so that a few long rows
 * can still be split over blocks: the fold runs inside the block or in a combine kernel, on the
 * same values with the same code, whichever the grid size picks. */
typedef struct vk_attention_args {
    vk_dtype dt;
    void *out;
    const void *q;
    int q_stride;
    const void *k_cache, *v_cache;
    const int32_t *query_start, *context_lens, *block_tables;
    int num_seqs, max_blocks_per_seq;
    int H, KVH, D, block_size;
    float scale;
    int max_context_len;      /* upper bound of context_lens (sizes the split grid) */
    int has_decode;           /* any sequence with query_len == 1 */
    const int32_t *prefill_tiles; /* [num_prefill_tiles][2] = (seq, first query row of the tile) */
    int num_prefill_tiles;
    void *scratch;
    int batch_invariant;
    int decode_only; /* every sequence has query_len 1 (batch_invariant: less shared memory) */
    /* default mode: a prefill block takes the heads of one KV group for VK_PREFILL_TILE_M / group
     * tokens (K and V read once per group, no padded rows for short queries); the tile list must be
     * built with VK_TILES_GROUP. 0: a block takes one head for VK_PREFILL_TILE_M tokens. */
    int group_heads;
    /* the tile list was built with VK_TILES_GROUP | VK_TILES_WIDE (group_heads set, not
     * batch_invariant; else cudaErrorInvalidValue): a block of 8 warps takes a wide tile, one
     * block per SM, several key tiles in flight. vk_prefill_wide says when (few query rows over
     * long contexts: prefix-cache hits, a long prompt's later chunks) and vk_prefill_wide_supported
     * where (its shared memory). VK_WIDE_MMA (1): 8 warps on mma.sync; VK_WIDE_WGMMA (2): two
     * warpgroups on wgmma fed by tensor copies (H100 / H200 with sm_90a code:
     * vk_prefill_wide_wgmma_supported; elsewhere the tiles go to VK_WIDE_MMA's kernel). */
    int wide_tiles;
    /* launch the production kernels (decode versions 5 and 7, prefill version 2, their combines)
     * as programmatic dependents (see vk_pdl_supported); other versions launch plainly */
    int pdl;
    /* the SMs the launch may use, where it runs on a partition of the GPU (a green context's
     * stream); 0: the device's. Sizes decode version 7's persistent grid. */
    int sms;
} vk_attention_args;

#define VK_PREFILL_TILE_M 64
#define VK_PREFILL_MAX_GROUP 8
/* batch_invariant: keys are summed in chunks of this many (absolute positions), folded in order */
#define VK_INVARIANT_CHUNK 512
/* the longest key range of a decode work unit (shorter where a batch needs more units) */
#define VK_DECODE_PARTITION 1024

size_t vk_attention_scratch_bytes(int num_seqs, int H, int D, int max_context_len);
/* Prefill tilings (vk_prefill_tiles_build's mode): a tile per head (default), per KV group for
 * batch-invariant mode (decode rows included), per KV group for the default mode's group_heads. */
enum { VK_TILES_HEAD = 0, VK_TILES_INVARIANT = 1, VK_TILES_GROUP = 2 };
/* OR-ed into the mode: each sequence's tiles by first query row descending (the tiles that see
 * the most keys first) where its last tile sees at least twice the keys of its first (by
 * context_lens; every sequence when context_lens is NULL), sequences still in order; the results
 * do not change, only the order in which the GPU takes the blocks. */
#define VK_TILES_LONGEST_FIRST 0x100
/* vk_attention_args.wide_tiles: which kernel takes the wide tiles */
enum { VK_WIDE_MMA = 1, VK_WIDE_WGMMA = 2 };
/* OR-ed into VK_TILES_GROUP: wide tiles, twice the tokens (vk_attention_args.wide_tiles) */
#define VK_TILES_WIDE 0x200
/* Host: fills tiles (capacity cap pairs) of vk_prefill_tile_tokens query tokens each for the
 * sequences with query_len > 1 (VK_TILES_INVARIANT: >= 1); returns the count, or -1 if cap is too
 * small or the shape has no grouped tiling. vk_prefill_tiles_max: a cap that always suffices for
 * num_tokens tokens of num_seqs sequences. */
int vk_prefill_tiles_build(const int32_t *query_start, const int32_t *context_lens, int num_seqs, int mode, int H,
                           int KVH, int32_t *tiles, int cap);
int vk_prefill_tiles_max(int num_tokens, int num_seqs);
/* Query tokens per tile: VK_PREFILL_TILE_M; grouped modes: VK_PREFILL_TILE_M / (H / KVH), the
 * rows of a tile being (token, head) pairs of one KV group, twice that with VK_TILES_WIDE
 * (VK_TILES_GROUP only); -1 for groups above VK_PREFILL_MAX_GROUP and other modes. */
int vk_prefill_tile_tokens(int mode, int H, int KVH);
/* Host: whether the current GPU runs wide prefill tiles for head size D (64 or 128): their
 * blocks' shared memory (209 KB at D = 128) and mma.sync (sm_80 and later). */
int vk_prefill_wide_supported(int D);
/* Host: whether the current GPU runs the wgmma kernel for wide tiles (VK_WIDE_WGMMA) at head size
 * D (64 or 128) over caches of this block size: compute capability 9.0, this binary's sm_90a code,
 * 226 KB of shared memory per block at D = 128, and gcd(block_size, 64) >= 8 (its tensor copies
 * take 8 or more consecutive slots). Where it does, every step with prefill rows should take wide
 * tiles on it: it is faster than the 64-row tiles on whole prompts too (docs/benchmarks.md,
 * session 13). The device part is asked once per process. */
int vk_prefill_wide_wgmma_supported(int D, int block_size);
/* Host: whether a default-mode grouped step (query_start: host memory) should take wide tiles on
 * the mma.sync kernel (VK_WIDE_MMA):
 * its wide tiles x KV heads leave at least two key splits for every SM's one block, over a
 * context of at least 512 keys. A pure function of its arguments and the GPU. */
int vk_prefill_wide(const int32_t *query_start, int num_seqs, int H, int KVH, int max_context_len);
cudaError_t vk_attention(const vk_attention_args *a, cudaStream_t s);
/* The same with a chosen prefill kernel: 2 = mma.sync flash kernel with split-K (production,
 * what vk_attention runs), 1 = the first WMMA version (kept for comparison in tests/benches). */
cudaError_t vk_attention_ex(const vk_attention_args *a, int prefill_version, cudaStream_t s);
/* The same with chosen decode and prefill kernels: decode 0 = production (version 5; versions
 * 2 / 3 for head sizes version 5 does not take), 1 = two passes (scores, then V), 2 = one pass
 * with an online softmax, 3 = version 1 with the next pass's K/V rows prefetched, 4 = removed
 * (cudaErrorInvalidValue), 5 = K/V tiles streamed into shared memory by a cp.async pipeline with
 * both products on the tensor cores (mma.sync; no per-key shuffle reductions),
 * VK_DECODE_V5_VARIANT_BASE + i (i < VK_DECODE_V5_VARIANTS) = version 5's configuration variant i
 * (tile keys, stages, warps; 0 is version 5 itself; larger i: cudaErrorInvalidValue), 7 = version 5's
 * arithmetic in persistent warps, each streaming its own K/V chunks across work items,
 * VK_DECODE_V7_VARIANT_BASE + i = its configuration variant i, for the bench and the tests; every
 * decode version is tested against the reference. */
#define VK_DECODE_V5_VARIANT_BASE 50
#define VK_DECODE_V5_VARIANTS 8
#define VK_DECODE_V7_VARIANT_BASE 70
#define VK_DECODE_V7_VARIANTS 6
cudaError_t vk_attention_v(const vk_attention_args *a, int decode_version, int prefill_version, cudaStream_t s);

/* y[n][out] = x[n][in] . w[out][in]^T for n <= VK_GEMV_MAX_N (decode steps of a few sequences),
 * fp32 accumulation; y in the storage type, or float32 when f32_out. in % 8 == 0. pdl: launched
 * as a programmatic dependent (Hopper; ignored before), as vk_gemm_stream's pdl. */
#define VK_GEMV_MAX_N 4
cudaError_t vk_gemv(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in, int out,
                    int pdl, cudaStream_t s);

/* Weight-streaming GEMM for steps of a few tokens (n <= VK_GEMM_STREAM_MAX_N; kernels/gemm_stream.cu):
 * the same product as vk_gemv, y[n][out] = x[n][in] . w[out][in]^T,
 * fp32 accumulation, y in the storage type or float32 when f32_out; in % 8 == 0, x and w 16-byte
 * aligned. Results are bit-reproducible run to run and do not depend on n.
 * ws: ws_bytes >= vk_gemm_stream_ws_bytes(out) bytes of device memory (cudaErrorInvalidValue if
 * fewer), zeroed once before the first call (cudaMemset); every call leaves its counters at zero
 * again. One workspace per stream: two products on different streams must not share it.
 * pdl: launch as a programmatic dependent (Hopper; ignored before): the kernel starts reading
 * weights while the previous kernel in the stream finishes, and waits for that kernel's end
 * before it touches x, y or ws. The weights must not be written by a kernel still running. */
#define VK_GEMM_STREAM_MAX_N 64
#define VK_GEMM_STREAM_VARIANTS 8
/* Variant 4, version 3 (kernels/gemm_stream_tma.cu): TMA copies and wgmma, bf16 and fp16, sm_90a
 * only (cudaErrorNotSupported elsewhere; vk_gemm_stream_has_tma says whether it runs here);
 * variants 5-7: its other configurations, bf16 only, for the bench. */
#define VK_GEMM_STREAM_TMA 4
int vk_gemm_stream_has_tma(void);
size_t vk_gemm_stream_ws_bytes(int max_out);
cudaError_t vk_gemm_stream(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in, int out,
                           void *ws, size_t ws_bytes, int pdl, cudaStream_t s);
/* The same with a chosen variant (0 production; 1-3 bf16 only, for benches: rows per warp,
 * k steps in flight and CTAs per SM; VK_GEMM_STREAM_TMA and above: version 3). */
cudaError_t vk_gemm_stream_ex(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                              int out, void *ws, size_t ws_bytes, int variant, int pdl, cudaStream_t s);

/* Multi-LoRA (kernels/lora.cu). One entry per adapter slot for one (layer, projection): A
 * [rank][in] and B [out][rank] in the storage type (B with the scaling in), NULL where the adapter
 * leaves the projection alone. */
#define VK_LORA_MAX_RANK 512
#define VK_LORA_MAX_TARGETS 3
typedef struct vk_lora_slot {
    const void *a, *b;
    int rank, pad;
} vk_lora_slot;
/* Projections that read the same input: target t has the slot table tab[t] (device), its output
 * columns y[t] (device, rows ldy apart) and their count out[t]. */
typedef struct vk_lora_targets {
    const vk_lora_slot *tab[VK_LORA_MAX_TARGETS];
    void *y[VK_LORA_MAX_TARGETS];
    int out[VK_LORA_MAX_TARGETS];
    int num;
} vk_lora_targets;
/* Floats of vk_lora's workspace for steps of up to max_tokens rows, ranks up to max_rank. */
size_t vk_lora_ws_floats(int max_tokens, int max_rank, int invariant);
/* For every target t and row i < n whose slot s = row_slot[i] >= 0 has matrices there:
 * y_t[i][o] = round(y_t[i][o] + round(sum_j round(A_s x[i])_j B_s[o][j])) (ref::lora). x: [n][in]
 * (in % 8 == 0), ranks <= max_rank; two launches (shrink, expand), programmatic dependents when
 * pdl. ws: vk_lora_ws_floats(>= n, max_rank, invariant) floats. Deterministic; with invariant, a row's bits
 * do not depend on n either (A x is summed in slices of `in` that n chooses otherwise). */
cudaError_t vk_lora(vk_dtype dt, const vk_lora_targets *tg, int ldy, const void *x, int in, const int32_t *row_slot,
                    int n, float *ws, int max_rank, int invariant, int pdl, cudaStream_t s);

/* t[i][k] = 0 for the rows i < n (ld elements apart, k < cols) whose row_slot[i] != slot (the
 * products path of the CUDA backend: t = x A^T was computed for every row). */
cudaError_t vk_lora_mask(vk_dtype dt, void *t, int cols, int n, const int32_t *row_slot, int slot, cudaStream_t s);

/* out[i, j] = round(round(silu(gu[i, j])) * gu[i, F + j]) for gu [n][2F] (gate | up). */
cudaError_t vk_silu_and_mul(vk_dtype dt, void *out, const void *gu, int n, int F, int pdl, cudaStream_t s);

/* Copies whole KV blocks src[i] -> dst[i] in every one of num_caches caches (K and V of every
 * layer; caches[c] points at cache c), each block block_bytes long. caches, src, dst: device. */
cudaError_t vk_copy_blocks(void *const *caches, int num_caches, const int32_t *src,
                           const int32_t *dst, int n, size_t block_bytes, cudaStream_t s);

/* Fills n elements with uniform random values in [-scale, scale] (dummy weights). */
cudaError_t vk_fill_random(vk_dtype dt, void *p, size_t n, float scale, uint64_t seed,
                           cudaStream_t s);

/* ---- Sampling ----
 * One row per sampled sequence over float32 logits [rows][vocab], every row on the GPU, with the
 * CPU reference sampler's semantics (worker/sampler/sampler.c, vLLM V1's sampler):
 *   raw logprobs (log-softmax of the raw logits; top num_logprobs of them)
 *   -> logit bias -> suppress stop ids (min_tokens) -> repetition penalty (prompt and output
 *   tokens) -> frequency and presence penalties (output tokens)
 *   -> greedy: argmax   |   else: / temperature -> softmax -> min_p -> top_k (ties with the k-th
 *   value kept) -> top_p (ascending cumulative mass <= 1 - top_p removed, the largest kept) ->
 *   inverse-CDF draw with u = vk_rng_uniform(seed, offset), in token order, or, when top_k > 0 or
 *   top_p < 1, in the reference's sorted order (value descending, id ascending).
 * Same token as the reference on the same logits, except where u * z or (1 - top_p) * z lies
 * within ~1e-6 of the total mass z from a cumulative-mass boundary (the masses are expf in fp32:
 * summed in fixed point for rows with top-k / top-p, in fp64 for the others; the reference's are
 * fp64 exp throughout). Logprobs are within ~1e-6 of the reference's. Out-of-range token ids in the pools are
 * ignored. Token lists (penalty tokens, bias, stop ids) live in one int32 pool / one float pool. */
typedef struct vk_sample_row {
    float temperature, top_p, min_p;
    float presence_penalty, frequency_penalty, repetition_penalty;
    int top_k;                 /* <= 0: off */
    int num_logprobs;          /* < 0: none; else top-N (N <= 20) of raw logprobs */
    uint64_t seed, offset;
    int prompt_off, num_prompt;  /* into ids pool */
    int output_off, num_output;  /* into ids pool */
    int bias_off, num_bias;      /* ids pool (tokens) and bias pool (values), same offsets */
    int stop_off, num_stop;      /* ids pool: masked to -inf (suppress_stop) */
} vk_sample_row;

#define VK_MAX_LOGPROBS 20
/* No longer produced (every row is sampled on the GPU); kept so that older callers compile. */
#define VK_SAMPLE_ON_HOST (-2)

typedef struct vk_sample_out {
    int32_t token;
    float logprob;
    int32_t top_ids[VK_MAX_LOGPROBS];
    float top_logprobs[VK_MAX_LOGPROBS];
} vk_sample_out;

/* work: rows * vocab floats; counts: rows * vocab int32, all ZERO before the first call (the
 * kernel leaves them zero again). out[i].token is -1 when every token of row i is masked. */
size_t vk_sample_work_bytes(int rows, int vocab);
cudaError_t vk_sample(const float *logits, int rows, int vocab, const vk_sample_row *params,
                      const int32_t *ids_pool, const float *bias_pool, float *work,
                      int32_t *counts, vk_sample_out *out, cudaStream_t s);

/* Counter-based uniform in [0, 1) keyed by (seed, offset), identical on host and device. */
double vk_rng_uniform(uint64_t seed, uint64_t offset);

#ifdef __cplusplus
}
#endif
#endif
