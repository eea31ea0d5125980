/* Internal entry points of the two attention kernels (vk_attention dispatches to them). */
#pragma once
#include "common.cuh"

cudaError_t vk_attention_decode(const vk_attention_args *a, cudaStream_t s);
size_t vk_attention_decode_scratch_bytes(int num_seqs, int H, int D, int max_context_len);
cudaError_t vk_attention_prefill(const vk_attention_args *a, cudaStream_t s);
