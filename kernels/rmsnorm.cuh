/* RMSNorm's second half, shared by vk_add_rmsnorm and the all-reduce that fuses it
 * (vk_allreduce_add_rmsnorm), so that the two give the same bits: the same threads per row, the
 * same per-thread order of the sum of squares, the same block reduction. */
#pragma once
#include "common.cuh"

namespace vk
{

/* Threads for one row of `hidden` elements (a multiple of 8): one 16-byte vector each, at most
 * 1024; a thread then holds rmsnorm_per(hidden) vectors (1, 2, 4 or 8, a template argument). */
inline int rmsnorm_threads(int hidden)
{
    int vecs = hidden / 8;
    return vecs < 1024 ? ((vecs + 31) / 32) * 32 : 1024;
}
inline int rmsnorm_per(int hidden)
{
    int threads = rmsnorm_threads(hidden), per = (hidden / 8 + threads - 1) / threads;
    return per <= 1 ? 1 : per <= 2 ? 2 : per <= 4 ? 4 : 8;
}
/* Rows wider than this do not fit a block's registers. */
#define VK_RMSNORM_MAX_HIDDEN (8 * 8 * 1024)

/* v: this thread's vectors of the row (element (threadIdx.x + k * blockDim.x) * 8 + j), residual
 * already added and rounded. Writes out[i] = round(w[i] * round(v[i] * rsqrt(mean(v^2) + eps))).
 * Every thread of the block calls it (block_sum synchronizes). */
template <typename T, int PER>
__device__ __forceinline__ void rmsnorm_store(T *out, const float (&v)[PER][8], const T *w, int hidden, float eps,
                                              float *sh)
{
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < PER; k++) {
        int i = (threadIdx.x + k * blockDim.x) * 8;
        if (i < hidden) {
#pragma unroll
            for (int j = 0; j < 8; j++) ss += v[k][j] * v[k][j];
        }
    }
    ss = block_sum(ss, sh);
    float inv = rsqrtf(ss / hidden + eps);
#pragma unroll
    for (int k = 0; k < PER; k++) {
        int i = (threadIdx.x + k * blockDim.x) * 8;
        if (i < hidden) {
            float wv[8], o[8];
            load8(w + i, wv);
#pragma unroll
            for (int j = 0; j < 8; j++) o[j] = wv[j] * rnd<T>(v[k][j] * inv);
            store8(out + i, o);
        }
    }
}

} // namespace vk

/* Calls LAUNCH(P) with the template argument P for a per-thread vector count `per`. */
#define VK_RMSNORM_PER(per, LAUNCH)                                                                                    \
    do {                                                                                                               \
        if ((per) <= 1)                                                                                                \
            LAUNCH(1);                                                                                                 \
        else if ((per) <= 2)                                                                                           \
            LAUNCH(2);                                                                                                 \
        else if ((per) <= 4)                                                                                           \
            LAUNCH(4);                                                                                                 \
        else                                                                                                           \
            LAUNCH(8);                                                                                                 \
    } while (0)
