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

/* Rank opts->tp_rank of a tensor-parallel replica of opts->tp_size ranks (docs/tensor-parallel.md)
 * on device opts->device: loads only this rank's shard (worker/tp/shard.h) and joins the NCCL
 * communicator of nccl_id (hex, made by the leader with vesta_tp_comm_nccl_id), waiting at most
 * timeout_ms for the others; each step's collectives are bounded by the same timeout (a dead peer
 * fails the step with VESTA_ERR_BACKEND, never hangs it). tp_size 1 is a replica of one rank (every
 * collective still runs). Only rank 0 samples: other ranks' execute takes results == NULL and
 * batches without sample_rows. Fails (VESTA_ERR_UNSUPPORTED) in a build without NCCL. */
vesta_backend *vesta_backend_cuda_create_tp(const vesta_model_file *mf, const vesta_backend_options *opts,
                                            const char *nccl_id, int timeout_ms, vesta_error *err);

/* The total memory and name of CUDA device `device`, without creating a backend. Fails
 * (VESTA_ERR_UNSUPPORTED) where there is no such device. */
vesta_status vesta_backend_cuda_device_query(int device, size_t *total_bytes, char *name, size_t cap,
                                             vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
