/* Internal entry points of the two attention kernels (vk_attention dispatches to them). */
#pragma once
#include "common.cuh"

cudaError_t vk_attention_decode(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v1(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v2(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v3(const vk_attention_args *a, cudaStream_t s); /* v1 + next-pass prefetch */
/* tensor cores (mma.sync) over the cp.async pipeline; _v5x: its configuration variant (0 = v5's own,
 * < VK_DECODE_V5_VARIANTS, else cudaErrorInvalidValue) */
cudaError_t vk_attention_decode_v5(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v5x(const vk_attention_args *a, int variant, cudaStream_t s);
/* version 5's arithmetic with persistent warps that each stream their own K/V chunks across work
 * items (no block barrier, no cross-warp merge); _v7x: configuration variant (< VK_DECODE_V7_VARIANTS) */
cudaError_t vk_attention_decode_v7(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_decode_v7x(const vk_attention_args *a, int variant, cudaStream_t s);
/* Whether a batch's (sequence, KV head) pairs give at least 7/8 of the warps of version 7's
 * default configuration a work item, whatever the contexts: a decode graph is captured for a batch
 * size with the longest context the model allows, so the real contexts are not known there. */
int vk_attention_decode_v7_fills(int num_seqs, int KVH);
/* The current device's SM count (132 when it cannot be read). */
int vk_sm_count(void);
/* Keys per decode split for a batch (both decode versions); the split-K merge of their partials. */
int vk_decode_partition(int num_seqs, int KVH, int max_ctx);
cudaError_t vk_decode_combine(const vk_attention_args *a, int max_splits, int part, cudaStream_t s);
size_t vk_attention_decode_scratch_bytes(int num_seqs, int H, int D, int max_context_len);
cudaError_t vk_attention_prefill(const vk_attention_args *a, cudaStream_t s);
cudaError_t vk_attention_prefill_v2(const vk_attention_args *a, cudaStream_t s);
size_t vk_attention_prefill_scratch_bytes(int H, int D);
/* Wide tiles on wgmma (attention_prefill_wg.cu): the main kernel only, its partials (nsplit > 1)
 * at b->scratch for the prefill combine; cudaErrorNotSupported where
 * vk_prefill_wide_wgmma_supported says no. */
cudaError_t vk_attention_prefill_wide_wg(const vk_attention_args *b, int nsplit, int chunk, cudaStream_t s);
/* Whether its tensor copies take this block size: 8 or more consecutive slots of a block inside
 * a 64-key tile (gcd(block_size, 64) >= 8; 16, the default, copies whole blocks). */
int vk_attention_prefill_wide_wg_fits(int block_size);
/* Query rows (tiles x 64) whose prefill partials fit in scratch when the key range is split. */
#define VK_PREFILL_SPLIT_ROWS 4096
