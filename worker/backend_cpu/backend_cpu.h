/* The CPU backend: the Llama-family forward pass (Llama 2/3/3.1, Mistral, Qwen2, SmolLM2) in
 * float32 with real paged attention, OpenBLAS for every matrix product and OpenMP for the rest.
 * It is the reference the other backends are checked against. See docs/cpu-backend.md. */
#ifndef VESTA_BACKEND_CPU_H
#define VESTA_BACKEND_CPU_H

#include "comm.h"
#include "vesta/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads every weight of mf once (dequantized to float32) and plans all activation buffers from
 * opts (max_num_batched_tokens, max_model_len, num_threads). The KV cache is allocated later by
 * ops->kv_alloc. mf may be closed after this returns. Returns NULL and fills err on any failure
 * (unsupported architecture or option, missing/mis-shaped tensor, out of memory). */
vesta_backend *vesta_backend_cpu_create(const vesta_model_file *mf, const vesta_backend_options *opts,
                                        vesta_error *err);

/* The same, for rank opts->tp_rank of a tensor-parallel replica of opts->tp_size ranks joined by
 * comm (which must outlive the backend): the rank loads only its shard (docs/tensor-parallel.md).
 * Refuses, naming the numbers, a model whose heads, KV heads or intermediate size do not divide
 * among the ranks. Every rank must call execute / copy_blocks with the same batches in the same
 * order; only rank 0 samples (results may be NULL on the others). */
vesta_backend *vesta_backend_cpu_create_tp(const vesta_model_file *mf, const vesta_backend_options *opts,
                                           vesta_tp_comm *comm, vesta_error *err);

/* Checks that the model's configuration can be split over tp_size ranks (message names the
 * numbers). */
vesta_status vesta_backend_cpu_check_tp(const vesta_model_config *c, int tp_size, vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
