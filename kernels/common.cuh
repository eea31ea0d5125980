/* Shared device helpers for the Vesta kernels: storage-type conversion and launch checks. */
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "vesta_kernels.h"

namespace vk {

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

/* Rounds through the storage type, as torch does when an op's result is stored in bf16/fp16. */
template <typename T> __device__ __forceinline__ float rnd(float x) { return to_f<T>(from_f<T>(x)); }

/* 8 storage elements = 16 bytes: one vector load. */
template <typename T> __device__ __forceinline__ void load8(const T *p, float *f) {
    uint4 u = *reinterpret_cast<const uint4 *>(p);
    const T *e = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = to_f<T>(e[i]);
}
/* The 8 storage elements of a 16-byte vector already loaded. */
template <typename T> __device__ __forceinline__ void cvt8(const uint4 &u, float *f) {
    const T *e = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = to_f<T>(e[i]);
}
template <typename T> __device__ __forceinline__ void store8(T *p, const float *f) {
    uint4 u;
    T *e = reinterpret_cast<T *>(&u);
#pragma unroll
    for (int i = 0; i < 8; i++) e[i] = from_f<T>(f[i]);
    *reinterpret_cast<uint4 *>(p) = u;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Block-wide sum / max for blockDim.x a multiple of 32 (<= 1024); sh: 32 floats. Ends synced. */
__device__ __forceinline__ float block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : 0.f;
    r = warp_sum(r);
    return r;
}
__device__ __forceinline__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float r = lane < nw ? sh[lane] : -INFINITY;
    r = warp_max(r);
    return r;
}

/* Programmatic dependent launch (Hopper): lets the next kernel in the stream, when it was
 * launched as a programmatic dependent (vk_gemv or vk_gemm_stream with pdl), start now on free SM slots; it
 * still waits for this whole grid (griddepcontrol.wait) before reading what this kernel writes.
 * A no-op for any other successor and before sm_90. */
__device__ __forceinline__ void pdl_allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
/* In a kernel launched as a programmatic dependent: waits until the previous kernel in the stream
 * has finished and its writes are visible. Everything before it may only read what no earlier
 * kernel writes (weights). A no-op for an ordinary launch. */
__device__ __forceinline__ void pdl_wait_previous() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
/* Host: a launch configuration (no dynamic shared memory) that launches as a programmatic
 * dependent when pdl; attr is the caller's storage for that one attribute. */
inline cudaLaunchConfig_t pdl_launch_config(dim3 grid, dim3 block, cudaStream_t s, bool pdl, cudaLaunchAttribute *attr) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.stream = s;
    attr->id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr->val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cfg;
}
/* Host: launches kern<<<grid, block, smem, s>>>(args...), as a programmatic dependent when pdl
 * (the kernel must then begin with pdl_wait_previous before it reads or writes anything an earlier
 * kernel touches: a dependent that never waited could finish before its predecessor, and the
 * kernel after it would no longer see the predecessor's writes). Returns the launch error. */
template <typename... KArgs, typename... Args>
inline cudaError_t launch_pdl(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl,
                              Args... args) {
    cudaLaunchAttribute attr;
    cudaLaunchConfig_t cfg = pdl_launch_config(grid, block, s, pdl, &attr);
    cfg.dynamicSmemBytes = smem;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kern, ((KArgs)args)...);
    return e != cudaSuccess ? e : cudaGetLastError();
}
/* Host: whether kernel fn may be launched as a programmatic dependent: the current device runs
 * programmatic dependent launch (Hopper and later) and fn was compiled for sm_90 or later. The
 * portable compute_80 PTX, JIT-compiled for a newer GPU, has its griddepcontrol instructions
 * compiled out: launched early, it would read its input before the previous kernel is done. */
inline bool pdl_supported(const void *fn) {
    int dev = 0, major = 0;
    cudaFuncAttributes fa;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9 &&
           cudaFuncGetAttributes(&fa, fn) == cudaSuccess && fa.ptxVersion >= 90;
}

} // namespace vk

#define VK_DISPATCH(dt, ...)                                                                       \
    do {                                                                                           \
        if ((dt) == VK_BF16) {                                                                     \
            typedef __nv_bfloat16 T;                                                               \
            __VA_ARGS__;                                                                           \
        } else if ((dt) == VK_F16) {                                                               \
            typedef __half T;                                                                      \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            return cudaErrorInvalidValue;                                                          \
        }                                                                                          \
    } while (0)
