/* Hopper's warpgroup MMA (wgmma, sm_90a) for the kernels that use it: the weight-streaming GEMM
 * (gemm_stream_tma.cu) and the wide prefill attention (attention_prefill_wg.cu). One copy of the
 * instruction wrappers, so the two cannot drift apart.
 *
 * Operands in shared memory are described by 128-byte-swizzled descriptors: rows of 128 bytes (64
 * 16-bit elements), 8-row groups of 1024 bytes, a 16-byte chunk c of row r stored at chunk
 * c ^ (r & 7) (wg_swizzle), every group 1024-byte aligned.
 * - K-major (the contraction dimension along the row): moving along k inside a row is a plain
 *   start-address offset (32 bytes per k16 step); sbo: bytes from one 8-row group to the next.
 * - MN-major (imm-trans-b = 1, 16-bit types only): the rows run along k (one row per k) and hold 64
 *   elements of N; lbo: bytes from one 64-element span of N to the next, sbo: from one 8-row group
 *   of k to the next.
 * Accumulator fragments (m64nN, fp32): warp w of the warpgroup holds rows 16 w .. 16 w + 15; lane
 * (g = lane / 4, t = lane % 4) holds d[i] at row 16 w + g + 8 ((i >> 1) & 1), column
 * 8 (i >> 2) + 2 t + (i & 1) -- mma.sync m16n8's layout, repeated along N. A fragments in registers
 * (m64nNk16): 4 registers of two 16-bit values, (row g, k 2t..), (g + 8, 2t..), (g, 2t + 8..),
 * (g + 8, 2t + 8..) -- mma.sync m16n8k16's A layout. */
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace vk
{

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL) /* the sm_90a pass only */
/* A 128-byte-swizzle shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"). */
__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((saddr & 0x3FFFF) >> 4) | (uint64_t)((lbo & 0x3FFFF) >> 4) << 16 |
           (uint64_t)((sbo & 0x3FFFF) >> 4) << 32 | (uint64_t)1 << 62;
}

/* Byte offset of 16-byte chunk c (0..7) of row r in a 128-byte-swizzled region. */
__device__ __forceinline__ uint32_t wg_swizzle(int r, int c) { return (uint32_t)(r * 128 + ((c ^ (r & 7)) << 4)); }

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* Keeps the compiler from moving accumulator reads or writes across a wgmma fence or wait. */
template <int F> __device__ __forceinline__ void wg_fence_acc(float (&d)[F])
{
#pragma unroll
    for (int i = 0; i < F; i++) asm volatile("" : "+f"(d[i])::"memory");
}

#define WG_R4(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define WG_R16(i) WG_R4(i), WG_R4(i + 4), WG_R4(i + 8), WG_R4(i + 12)
#define WG_PRED(n) "{\n.reg .pred p;\nsetp.ne.b32 p, %" #n ", 0;\n"

/* d[N / 2] (+)= A (64 x 16, descriptor a) . B (16 x N, descriptor b), both K-major in shared
 * memory; scale_d 0: d = A B (the old d ignored). */
template <typename T, int N>
__device__ __forceinline__ void wg_mma_ss(float (&d)[N / 2], uint64_t a, uint64_t b, int scale_d);

#define WG_SS8(TY, PT)                                                                                                 \
    template <> __device__ __forceinline__ void wg_mma_ss<TY, 8>(float(&d)[4], uint64_t a, uint64_t b, int scale_d)    \
    {                                                                                                                  \
        asm volatile(WG_PRED(6) "wgmma.mma_async.sync.aligned.m64n8k16.f32." PT "." PT                                 \
                                " {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n"                                       \
                     : WG_R4(0)                                                                                        \
                     : "l"(a), "l"(b), "r"(scale_d));                                                                  \
    }
#define WG_SS16(TY, PT)                                                                                                \
    template <> __device__ __forceinline__ void wg_mma_ss<TY, 16>(float(&d)[8], uint64_t a, uint64_t b, int scale_d)   \
    {                                                                                                                  \
        asm volatile(WG_PRED(10) "wgmma.mma_async.sync.aligned.m64n16k16.f32." PT "." PT                               \
                                 " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, 0;\n}\n"                      \
                     : WG_R4(0), WG_R4(4)                                                                              \
                     : "l"(a), "l"(b), "r"(scale_d));                                                                  \
    }
#define WG_SS32(TY, PT)                                                                                                \
    template <> __device__ __forceinline__ void wg_mma_ss<TY, 32>(float(&d)[16], uint64_t a, uint64_t b, int scale_d)  \
    {                                                                                                                  \
        asm volatile(WG_PRED(18) "wgmma.mma_async.sync.aligned.m64n32k16.f32." PT "." PT                               \
                                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, %16, %17, " \
                                 "p, 1, 1, 0, 0;\n}\n"                                                                 \
                     : WG_R16(0)                                                                                       \
                     : "l"(a), "l"(b), "r"(scale_d));                                                                  \
    }
#define WG_SS64(TY, PT)                                                                                                \
    template <> __device__ __forceinline__ void wg_mma_ss<TY, 64>(float(&d)[32], uint64_t a, uint64_t b, int scale_d)  \
    {                                                                                                                  \
        asm volatile(WG_PRED(34) "wgmma.mma_async.sync.aligned.m64n64k16.f32." PT "." PT                               \
                                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "  \
                                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, "   \
                                 "p, 1, 1, 0, 0;\n}\n"                                                                 \
                     : WG_R16(0), WG_R16(16)                                                                           \
                     : "l"(a), "l"(b), "r"(scale_d));                                                                  \
    }
WG_SS8(__nv_bfloat16, "bf16")
WG_SS8(__half, "f16")
WG_SS16(__nv_bfloat16, "bf16")
WG_SS16(__half, "f16")
WG_SS32(__nv_bfloat16, "bf16")
WG_SS32(__half, "f16")
WG_SS64(__nv_bfloat16, "bf16")
WG_SS64(__half, "f16")
#undef WG_SS8
#undef WG_SS16
#undef WG_SS32
#undef WG_SS64

/* d[N / 2] += A (64 x 16, registers a[4]) . B (16 x N, descriptor b, MN-major: imm-trans-b 1). */
template <typename T, int N>
__device__ __forceinline__ void wg_mma_rs_t(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t b);
#define WG_RS64(TY, PT)                                                                                                \
    template <> __device__ __forceinline__ void wg_mma_rs_t<TY, 64>(float(&d)[32], const uint32_t(&a)[4], uint64_t b)  \
    {                                                                                                                  \
        asm volatile(WG_PRED(37) "wgmma.mma_async.sync.aligned.m64n64k16.f32." PT "." PT                               \
                                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "  \
                                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "             \
                                 "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                         \
                     : WG_R16(0), WG_R16(16)                                                                           \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                                    \
    }
#define WG_RS128(TY, PT)                                                                                               \
    template <> __device__ __forceinline__ void wg_mma_rs_t<TY, 128>(float(&d)[64], const uint32_t(&a)[4], uint64_t b) \
    {                                                                                                                  \
        asm volatile(WG_PRED(69) "wgmma.mma_async.sync.aligned.m64n128k16.f32." PT "." PT                              \
                                 " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "  \
                                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, "    \
                                 "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, "    \
                                 "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "             \
                                 "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                         \
                     : WG_R16(0), WG_R16(16), WG_R16(32), WG_R16(48)                                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                                    \
    }
WG_RS64(__nv_bfloat16, "bf16")
WG_RS64(__half, "f16")
WG_RS128(__nv_bfloat16, "bf16")
WG_RS128(__half, "f16")
#undef WG_RS64
#undef WG_RS128
#undef WG_PRED
#undef WG_R16
#undef WG_R4
#endif

} // namespace vk
