/* Row-wise and element-wise kernels: embedding lookup, fused residual-add + RMSNorm, row gather,
 * SiLU-and-multiply, KV block copy, random fill. All are memory-bound: 16-byte accesses, one
 * pass over the data. */
#include "common.cuh"
#include "rmsnorm.cuh"

using namespace vk;

template <typename T>
__global__ void embedding_kernel(T *out, const T *table, const int32_t *ids, int hidden, int vocab) {
    int row = blockIdx.x;
    int id = ids[row];
    uint4 *o = reinterpret_cast<uint4 *>(out + (size_t)row * hidden);
    const uint4 *src = reinterpret_cast<const uint4 *>(table + (size_t)(id < 0 ? 0 : id) * hidden);
    bool ok = id >= 0 && id < vocab;
    for (int i = threadIdx.x; i < hidden / 8; i += blockDim.x) o[i] = ok ? src[i] : make_uint4(0, 0, 0, 0);
}

extern "C" cudaError_t vk_embedding(vk_dtype dt, void *out, const void *table, const int32_t *ids,
                                    int n, int hidden, int vocab, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (hidden % 8) return cudaErrorInvalidValue;
    VK_DISPATCH(dt, embedding_kernel<T><<<n, 256, 0, s>>>((T *)out, (const T *)table, ids, hidden, vocab));
    return cudaGetLastError();
}

/* One block per row; the row is kept in registers between the two passes (hidden <= 8 * 8 *
 * blockDim). */
template <typename T, int PER>
__global__ void add_rmsnorm_kernel(T *out, T *residual, const T *x, const T *w, int hidden, float eps) {
    __shared__ float sh[32];
    pdl_allow_dependents(); /* the next product may start loading its weights */
    pdl_wait_previous();    /* residual and x are earlier kernels' outputs */
    size_t base = (size_t)blockIdx.x * hidden;
    float v[PER][8];
#pragma unroll
    for (int k = 0; k < PER; k++) {
        int i = (threadIdx.x + k * blockDim.x) * 8;
        if (i < hidden) {
            load8(residual + base + i, v[k]);
            if (x) {
                float xv[8];
                load8(x + base + i, xv);
#pragma unroll
                for (int j = 0; j < 8; j++) v[k][j] = rnd<T>(v[k][j] + xv[j]);
                store8(residual + base + i, v[k]);
            }
        }
    }
    rmsnorm_store<T, PER>(out + base, v, w, hidden, eps, sh);
}

extern "C" cudaError_t vk_add_rmsnorm(vk_dtype dt, void *out, void *residual, const void *x,
                                      const void *w, int n, int hidden, float eps, int pdl, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (hidden % 8 || hidden > VK_RMSNORM_MAX_HIDDEN) return cudaErrorInvalidValue;
    int threads = rmsnorm_threads(hidden);
#define LAUNCH_NORM(P)                                                                             \
    VK_DISPATCH(dt, return launch_pdl(add_rmsnorm_kernel<T, P>, dim3(n), dim3(threads), 0, s, pdl != 0, \
                                      (T *)out, (T *)residual, (const T *)x, (const T *)w, hidden, eps))
    VK_RMSNORM_PER(rmsnorm_per(hidden), LAUNCH_NORM);
#undef LAUNCH_NORM
    return cudaGetLastError();
}

extern "C" int vk_pdl_supported(void) {
    return pdl_supported((const void *)add_rmsnorm_kernel<__nv_bfloat16, 1>);
}

__global__ void gather_rows_kernel(uint4 *out, const uint4 *in, const int32_t *idx, int vecs) {
    const uint4 *src = in + (size_t)idx[blockIdx.x] * vecs;
    uint4 *dst = out + (size_t)blockIdx.x * vecs;
    for (int i = threadIdx.x; i < vecs; i += blockDim.x) dst[i] = src[i];
}

extern "C" cudaError_t vk_gather_rows(void *out, const void *in, const int32_t *idx, int n, int cols,
                                      int elem_bytes, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    size_t bytes = (size_t)cols * elem_bytes;
    if (bytes % 16) return cudaErrorInvalidValue;
    gather_rows_kernel<<<n, 256, 0, s>>>((uint4 *)out, (const uint4 *)in, idx, (int)(bytes / 16));
    return cudaGetLastError();
}

template <typename T>
__global__ void silu_and_mul_kernel(T *out, const T *gu, int F) {
    pdl_allow_dependents();
    pdl_wait_previous(); /* gu is the previous product's output */
    size_t row = blockIdx.y;
    int i = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i >= F) return;
    float g[8], u[8], o[8];
    load8(gu + row * 2 * F + i, g);
    load8(gu + row * 2 * F + F + i, u);
#pragma unroll
    for (int j = 0; j < 8; j++) o[j] = rnd<T>(g[j] / (1.f + __expf(-g[j]))) * u[j];
    store8(out + row * F + i, o);
}

extern "C" cudaError_t vk_silu_and_mul(vk_dtype dt, void *out, const void *gu, int n, int F, int pdl, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (F % 8) return cudaErrorInvalidValue;
    dim3 grid((F / 8 + 127) / 128, n);
    VK_DISPATCH(dt, return launch_pdl(silu_and_mul_kernel<T>, grid, dim3(128), 0, s, pdl != 0, (T *)out, (const T *)gu, F));
    return cudaErrorInvalidValue;
}

__global__ void copy_blocks_kernel(void *const *caches, const int32_t *src, const int32_t *dst,
                                   size_t block_vecs) {
    uint4 *c = (uint4 *)caches[blockIdx.y];
    const uint4 *from = c + (size_t)src[blockIdx.x] * block_vecs;
    uint4 *to = c + (size_t)dst[blockIdx.x] * block_vecs;
    for (size_t i = threadIdx.x; i < block_vecs; i += blockDim.x) to[i] = from[i];
}

extern "C" cudaError_t vk_copy_blocks(void *const *caches, int num_caches, const int32_t *src,
                                      const int32_t *dst, int n, size_t block_bytes, cudaStream_t s) {
    if (n <= 0 || num_caches <= 0) return cudaSuccess;
    if (block_bytes % 16 || num_caches > 65535) return cudaErrorInvalidValue;
    copy_blocks_kernel<<<dim3(n, num_caches), 256, 0, s>>>(caches, src, dst, block_bytes / 16);
    return cudaGetLastError();
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

template <typename T>
__global__ void fill_random_kernel(T *p, size_t n, float scale, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t r = splitmix64(seed * 0x100000001b3ull ^ i);
        float u = (float)(r >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
        p[i] = from_f<T>((2.f * u - 1.f) * scale);
    }
}

extern "C" cudaError_t vk_fill_random(vk_dtype dt, void *p, size_t n, float scale, uint64_t seed,
                                      cudaStream_t s) {
    if (n == 0) return cudaSuccess;
    VK_DISPATCH(dt, fill_random_kernel<T><<<1024, 256, 0, s>>>((T *)p, n, scale, seed));
    return cudaGetLastError();
}
