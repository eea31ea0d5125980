/* The CUDA backend: the Llama-family forward pass on one NVIDIA GPU in bf16 (fp32 accumulation),
 * cuBLAS for the matrix products, the Vesta kernels (kernels/) for everything else, paged KV
 * cache in device memory, CUDA graphs for decode steps. See docs/cuda-backend.md. */
#ifndef VESTA_BACKEND_CUDA_H
#define VESTA_BACKEND_CUDA_H

#include "vesta/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads every weight of mf to the GPU (bf16; or random weights with opts->load_dummy), then
 * allocates every activation buffer for the largest step (opts->max_num_batched_tokens,
 * max_num_seqs, max_model_len). The KV cache comes later (ops->kv_alloc, sized by
 * ops->kv_budget_bytes = gpu_memory_utilization * total - used); decode graphs are captured right
 * after it unless opts->enforce_eager. Logs the memory plan to stderr. Returns NULL and fills err
 * on any failure (no GPU, unsupported model shape or option, missing tensor, out of memory). */
vesta_backend *vesta_backend_cuda_create(const vesta_model_file *mf, const vesta_backend_options *opts,
                                         vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
