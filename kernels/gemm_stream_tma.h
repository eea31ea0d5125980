/* Internal: version 3 of the weight-streaming GEMM (gemm_stream_tma.cu), reached through
 * vk_gemm_stream_ex's variant VK_GEMM_STREAM_TMA. */
#pragma once

#include "vesta_kernels.h"

/* Whether the device and this binary run it (sm_90a SASS on a compute-capability 9.0 GPU). */
bool vk_gemm_stream_tma_runnable();
/* y = x . w^T as vk_gemm_stream, arguments and workspace already checked by the caller: part and
 * cnt are the workspace's partials and counters, sms the GPU's SM count, variant
 * VK_GEMM_STREAM_TMA (bf16, fp16) or a bench configuration above it (bf16).
 * cudaErrorNotSupported where it cannot run. */
cudaError_t vk_gemm_stream_tma(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                               int out, float *part, int *cnt, int sms, int variant, int pdl, cudaStream_t s);
