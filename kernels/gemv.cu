/* Skinny matrix products for decode steps of a few sequences: y[n][out] = x[n][in] . W[out][in]^T
 * with n <= 4, bf16/fp16 in, fp32 accumulation, bf16/fp16 or fp32 out. Pure weight streaming:
 * one warp per output row, 16-byte loads, several loads in flight per lane, x re-read through L1.
 * cuBLAS reaches ~2.4 TB/s at n = 1 on these shapes (bench/gpu/kernel_bench); the floor is the
 * weight bytes over ~3 TB/s. */
#include "common.cuh"

using namespace vk;

template <typename T, typename O, int N>
__global__ void __launch_bounds__(256) gemv_kernel(O *y, const T *x, const T *w, int in, int out) {
    int row = blockIdx.x * 8 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= out) return;
    const uint4 *wr = reinterpret_cast<const uint4 *>(w + (size_t)row * in);
    int vecs = in / 8;
    float acc[N];
#pragma unroll
    for (int n = 0; n < N; n++) acc[n] = 0.f;
    constexpr int U = 8; /* 8 x 16 bytes in flight per lane: short rows (in = 4096) are latency-bound */
    int i = lane;
    uint4 wv[U];
    auto load = [&](int at) {
#pragma unroll
        for (int u = 0; u < U; u++) wv[u] = __ldcs(wr + at + 32 * u); /* streamed once: do not keep */
    };
    if (i + 32 * (U - 1) < vecs) load(i); /* weights never depend on the previous kernel */
    pdl_allow_dependents();
    pdl_wait_previous(); /* x does (launched with pdl: the previous kernel may still be running) */
    for (; i + 32 * (U - 1) < vecs; i += 32 * U) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const T *we = reinterpret_cast<const T *>(&wv[u]);
#pragma unroll
            for (int n = 0; n < N; n++) {
                uint4 xv = __ldg(reinterpret_cast<const uint4 *>(x + (size_t)n * in) + i + 32 * u);
                const T *xe = reinterpret_cast<const T *>(&xv);
#pragma unroll
                for (int j = 0; j < 8; j++) acc[n] += to_f<T>(we[j]) * to_f<T>(xe[j]);
            }
        }
        if (i + 32 * U + 32 * (U - 1) < vecs) load(i + 32 * U);
    }
    for (; i < vecs; i += 32) {
        uint4 wv = __ldcs(wr + i);
        const T *we = reinterpret_cast<const T *>(&wv);
#pragma unroll
        for (int n = 0; n < N; n++) {
            uint4 xv = __ldg(reinterpret_cast<const uint4 *>(x + (size_t)n * in) + i);
            const T *xe = reinterpret_cast<const T *>(&xv);
#pragma unroll
            for (int j = 0; j < 8; j++) acc[n] += to_f<T>(we[j]) * to_f<T>(xe[j]);
        }
    }
#pragma unroll
    for (int n = 0; n < N; n++) {
        float v = warp_sum(acc[n]);
        if (lane == 0) {
            if constexpr (sizeof(O) == 4) y[(size_t)n * out + row] = v;
            else y[(size_t)n * out + row] = from_f<T>(v);
        }
    }
}

template <typename T, typename O, int N>
static cudaError_t launch_gemv_n(void *y, const void *x, const void *w, int in, int out, int pdl, cudaStream_t s) {
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = pdl_launch_config(dim3((unsigned)((out + 7) / 8)), dim3(256), s, pdl, &attr);
    cudaError_t e = cudaLaunchKernelEx(&cfg, gemv_kernel<T, O, N>, (O *)y, (const T *)x, (const T *)w, in, out);
    return e != cudaSuccess ? e : cudaGetLastError();
}

template <typename T, typename O>
static cudaError_t launch_gemv(void *y, const void *x, const void *w, int n, int in, int out, int pdl, cudaStream_t s) {
    switch (n) {
    case 1: return launch_gemv_n<T, O, 1>(y, x, w, in, out, pdl, s);
    case 2: return launch_gemv_n<T, O, 2>(y, x, w, in, out, pdl, s);
    case 3: return launch_gemv_n<T, O, 3>(y, x, w, in, out, pdl, s);
    case 4: return launch_gemv_n<T, O, 4>(y, x, w, in, out, pdl, s);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t vk_gemv(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                               int out, int pdl, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (n > VK_GEMV_MAX_N || in % 8 || out <= 0) return cudaErrorInvalidValue;
    pdl = pdl && pdl_supported((const void *)gemv_kernel<__nv_bfloat16, float, 1>);
    if (f32_out) VK_DISPATCH(dt, return (launch_gemv<T, float>(y, x, w, n, in, out, pdl, s)));
    VK_DISPATCH(dt, return (launch_gemv<T, T>(y, x, w, n, in, out, pdl, s)));
    return cudaErrorInvalidValue;
}
