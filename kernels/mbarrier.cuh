/* Shared-memory transaction barriers (mbarrier) and bulk / tensor (TMA) copies completing on them:
 * sm_90 and later. The PTX built for older GPUs (the portable compute_80 path) gets no-op stubs
 * in their place, so that module still loads there; a kernel using them must not run there
 * (VK_HAVE_BULK tells the device code which it got). */
#pragma once

#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
#define VK_HAVE_BULK 0
#else
#define VK_HAVE_BULK 1
#endif

namespace vk {

#if VK_HAVE_BULK
__device__ __forceinline__ unsigned bulk_smem(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
/* count: the arrivals that complete a phase (besides its transaction bytes) */
__device__ __forceinline__ void bulk_bar_init(uint64_t *b, unsigned count = 1) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bulk_smem(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void bulk_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void bulk_fence_proxy() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* the one arrival of a phase, announcing the bytes its copies will complete */
__device__ __forceinline__ void bulk_bar_expect(uint64_t *b, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bulk_smem(b)), "r"(bytes) : "memory");
}
/* a plain arrival (a consumer releasing a stage) */
__device__ __forceinline__ void bulk_bar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bulk_smem(b)) : "memory");
}
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(bulk_smem(dst)),
                 "l"(src), "r"(bytes), "r"(bulk_smem(b))
                 : "memory");
}
/* A 2-D tile of the tensor map *map (a __grid_constant__ kernel parameter) at element (c0, c1)
 * into shared memory at dst, completing on b; policy: an L2 cache policy (createpolicy). */
__device__ __forceinline__ void bulk_tensor_2d(void *dst, const void *map, int c0, int c1, uint64_t *b, uint64_t policy) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(bulk_smem(dst)),
                 "l"(map), "r"(c0), "r"(c1), "r"(bulk_smem(b)), "l"(policy)
                 : "memory");
}
/* The same for a 3-D tile at element (c0, c1, c2). */
__device__ __forceinline__ void bulk_tensor_3d(void *dst, const void *map, int c0, int c1, int c2, uint64_t *b,
                                               uint64_t policy) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
                 " [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(bulk_smem(dst)),
                 "l"(map), "r"(c0), "r"(c1), "r"(c2), "r"(bulk_smem(b)), "l"(policy)
                 : "memory");
}
__device__ __forceinline__ bool bulk_bar_test(uint64_t *b, uint32_t parity) {
    uint32_t done;
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n"
                 "}\n"
                 : "=r"(done)
                 : "r"(bulk_smem(b)), "r"(parity)
                 : "memory");
    return done != 0;
}
/* until the barrier's phase of this parity has completed (its arrivals and bytes are in) */
__device__ __forceinline__ void bulk_bar_wait(uint64_t *b, uint32_t parity) {
    while (!bulk_bar_test(b, parity)) {
    }
}

#else /* never called: the kernels using these compile them out below sm_90 */
__device__ __forceinline__ void bulk_bar_init(uint64_t *, unsigned = 1) {}
__device__ __forceinline__ void bulk_fence_init() {}
__device__ __forceinline__ void bulk_fence_proxy() {}
__device__ __forceinline__ void bulk_bar_expect(uint64_t *, uint32_t) {}
__device__ __forceinline__ void bulk_bar_arrive(uint64_t *) {}
__device__ __forceinline__ void bulk_copy(void *, const void *, uint32_t, uint64_t *) {}
__device__ __forceinline__ void bulk_tensor_2d(void *, const void *, int, int, uint64_t *, uint64_t) {}
__device__ __forceinline__ void bulk_tensor_3d(void *, const void *, int, int, int, uint64_t *, uint64_t) {}
__device__ __forceinline__ void bulk_bar_wait(uint64_t *, uint32_t) {}
#endif

} // namespace vk
