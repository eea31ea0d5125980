/* Weight-streaming matrix products for steps of a few tokens (version 2 of the skinny GEMM;
 * version 1, a cp.async ring per CTA with a K split reduced in a thread-block cluster, measured
 * 1.4-1.9 TB/s and was removed: docs/benchmarks.md, runs 10 and 45):
 * y[n][out] = x[n][in] . W[out][in]^T with 1 <= n <= VK_GEMM_STREAM_MAX_N, bf16/fp16 in, fp32
 * accumulation, storage-type or fp32 out. At these n a product is a pass over the weights, so
 * the kernel is built to keep HBM busy from its first cycle to its last:
 *
 * - No shared memory and no block barrier. Each warp loads its weight fragments straight from
 *   global memory into registers (a ring of P k steps in flight, 256 bytes of each of its 16 rows
 *   per step, streamed with an evict-first hint), and x through L1, where the 8 warps of a CTA,
 *   walking the same k steps, share it.
 * - Operand layout: lane t of an mma.sync m16n8k16 loads the 16 contiguous bytes
 *   k0 + 8t .. k0 + 8t + 7 of its weight row (A) and of its x row (B) and feeds elements 0-3 to one
 *   mma and 4-7 to the next; the reduction does not care which physical k a k slot stands for as
 *   long as A and B agree. Every operand load is one 16-byte vector.
 * - Stream-K (stream_k.cuh): the (row block, k step) pairs are cut into one contiguous range per
 *   CTA, as many CTAs as fit on the GPU at once; a row block that ranges share is summed in a fixed
 *   order by the warp that finishes it last, so results are bit-reproducible and do not depend on n.
 * - Programmatic dependent launch (Hopper): with pdl the kernel may start while the previous
 *   kernel in the stream is still running; it issues its first weight loads (weights never
 *   depend on an earlier kernel) and waits for that kernel (griddepcontrol.wait) before it reads
 *   x or writes anything. It also lets the next kernel launch early, so two products in a row
 *   overlap one's tail with the other's first loads.
 *
 * Variants (MT m tiles of 16 rows per warp, P k steps in flight, MINB CTAs per SM) are kept for
 * the bench; variant 0 is the default.
 *
 * Measured on the H100 (runs 45-46, bench/gpu/bench_gemm_stream): as fast as cuBLAS at n <= 8 in
 * a whole step launched back to back, slower above (the B operand is re-read per 16 rows through
 * L1: at n = 64 that is 4x the weight bytes, and mma.sync cannot read it from shared memory as
 * wgmma would), so the backend uses it only when VESTA_GEMM_STREAM asks. Version 3
 * (gemm_stream_tma.cu, variant VK_GEMM_STREAM_TMA, Hopper) does read it from shared memory. */
#include <type_traits>

#include "attention_mma.cuh"
#include "gemm_stream_tma.h"
#include "stream_k.cuh"

using namespace vk;

namespace
{

constexpr int GS_WARPS = 8, GS_THREADS = GS_WARPS * 32;
constexpr int GS_KS = 128;       /* k per step: 256 bytes of every weight row */
constexpr int GS_J = GS_KS / 32; /* 16-byte vectors per lane per row per step */
constexpr int GS_MAX_MINB = 2, GS_MAX_MT = 2;

/* Floats of one warp's partial tile: MT x (NT / 8) fragments of 4 per lane. */
template <int NT, int MT> __host__ __device__ constexpr int gs_tile_floats() { return MT * (NT / 8) * 4 * 32; }
/* Workspace: partial tiles [G][2 (a range's first / last row block)][WARPS][tile], then counters. */
size_t gs_part_bytes(int sms) { return (size_t)sms * GS_MAX_MINB * 2 * GS_WARPS * gs_tile_floats<64, GS_MAX_MT>() * 4; }

__device__ __forceinline__ uint4 gs_ld_weights(const void *p)
{
    uint4 r; /* read once: evict first; ask L2 for the whole 256-byte step of the row */
    asm("ld.global.cs.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

template <typename T, typename O, int NT, int MT> struct gs_warp {
    static constexpr int BM = GS_WARPS * 16 * MT; /* rows per row block */
    O *y;
    const T *x, *w;
    int n, in, out;
    sk_plan p;
    float *part;
    int *cnt;
    int warp, lane, g, t;
    static constexpr int F = gs_tile_floats<NT, MT>() / 32; /* accumulator floats per lane */
    float acc[F];                                             /* [MT][NT / 8][4] */
    __device__ float *frag(int mt, int cg) { return acc + (mt * (NT / 8) + cg) * 4; }
    __device__ float frag_at(int mt, int cg, int i) const { return acc[(mt * (NT / 8) + cg) * 4 + i]; }

    __device__ int row(int rb, int mt, int h) const { return rb * BM + warp * 16 * MT + mt * 16 + h * 8 + g; }

    /* Weight fragments of step s: for each row (m tile, half), vectors j = 0..GS_J-1. */
    __device__ void load(uint4 (&b)[MT][2][GS_J], int s) const
    {
        const int rb = s / p.kst, k0 = (s - rb * p.kst) * GS_KS + 8 * t;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int r = row(rb, mt, h);
                const T *src = w + (size_t)(r < out ? r : 0) * in;
#pragma unroll
                for (int j = 0; j < GS_J; j++) {
                    const int k = k0 + 32 * j; /* in % 8 == 0: a vector is all in or all out */
                    b[mt][h][j] = r < out && k < in ? gs_ld_weights(src + k) : make_uint4(0, 0, 0, 0);
                }
            }
    }

    __device__ void consume(const uint4 (&b)[MT][2][GS_J], int s)
    {
        const int rb = s / p.kst, k0 = (s - rb * p.kst) * GS_KS + 8 * t;
#pragma unroll
        for (int j = 0; j < GS_J; j++) {
            const int k = k0 + 32 * j;
            uint4 xb[NT / 8];
#pragma unroll
            for (int cg = 0; cg < NT / 8; cg++) {
                const int c = cg * 8 + g; /* padded columns read as zeros */
                xb[cg] = c < n && k < in ? __ldg(reinterpret_cast<const uint4 *>(x + (size_t)c * in + k))
                                         : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int cg = 0; cg < NT / 8; cg++)
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    const uint4 &lo = b[mt][0][j], &hi = b[mt][1][j];
                    mma_16816<T>(frag(mt, cg), lo.x, hi.x, lo.y, hi.y, xb[cg].x, xb[cg].y);
                    mma_16816<T>(frag(mt, cg), lo.z, hi.z, lo.w, hi.w, xb[cg].z, xb[cg].w);
                }
        }
    }

    __device__ void clear()
    {
#pragma unroll
        for (int i = 0; i < F; i++) acc[i] = 0.f;
    }

    __device__ void store(int rb) const
    {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int cg = 0; cg < NT / 8; cg++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int r = row(rb, mt, i >> 1), c = cg * 8 + 2 * t + (i & 1);
                    if (r >= out || c >= n) continue;
                    if constexpr (sizeof(O) == 4)
                        y[(size_t)c * out + r] = frag_at(mt, cg, i);
                    else
                        y[(size_t)c * out + r] = from_f<T>(frag_at(mt, cg, i));
                }
    }

    /* The row block rb's sum over items [a, b) of this CTA's range is in acc: write it, or add it
     * to the shared sum (stream_k.cuh). Leaves acc zeroed. */
    __device__ void flush(int rb, int a, int b)
    {
        const sk_combiner<F, GS_WARPS> c{p, part, cnt, warp, lane};
        if (c.combine(acc, rb, a, b)) store(rb);
        clear();
    }
};

template <typename T, typename O, int NT, int MT, int P, int MINB>
__global__ void __launch_bounds__(GS_THREADS, MINB)
    gs_kernel(O *__restrict__ y, const T *__restrict__ x, const T *__restrict__ w, int n, int in, int out, sk_plan p,
              float *__restrict__ part, int *__restrict__ cnt)
{
    gs_warp<T, O, NT, MT> k;
    k.y = y;
    k.x = x;
    k.w = w;
    k.n = n;
    k.in = in;
    k.out = out;
    k.p = p;
    k.part = part;
    k.cnt = cnt;
    k.warp = threadIdx.x >> 5;
    k.lane = threadIdx.x & 31;
    k.g = k.lane >> 2;
    k.t = k.lane & 3;
    const int s0 = sk_start(p, blockIdx.x), s1 = sk_start(p, blockIdx.x + 1);

    uint4 buf[P][MT][2][GS_J];
#pragma unroll
    for (int q = 0; q < P; q++)
        if (s0 + q < s1) k.load(buf[q], s0 + q);
    pdl_allow_dependents();
    pdl_wait_previous(); /* x and the workspace belong to earlier kernels until here */
    k.clear();
    int seg = s0; /* first step of the current row block's segment */
    for (int sb = s0; sb < s1; sb += P) {
#pragma unroll
        for (int q = 0; q < P; q++) {
            const int s = sb + q;
            if (s >= s1) break;
            k.consume(buf[q], s);
            if (s + P < s1) k.load(buf[q], s + P);
            if (s + 1 == s1 || (s + 1) % p.kst == 0) {
                k.flush(s / p.kst, seg, s + 1);
                seg = s + 1;
            }
        }
    }
}

template <typename T, typename O, int NT, int MT, int P, int MINB>
cudaError_t gs_launch(void *y, const void *x, const void *w, int n, int in, int out, void *ws, int pdl, int sms,
                      cudaStream_t s)
{
    constexpr int BM = GS_WARPS * 16 * MT;
    const long long rbs = (out + BM - 1) / BM, kst = (in + GS_KS - 1) / GS_KS;
    if (rbs * kst >= (1LL << 30)) return cudaErrorInvalidValue;
    sk_plan p;
    p.kst = (int)kst;
    p.T = (int)(rbs * kst);
    p.G = p.T < sms * MINB ? p.T : sms * MINB;
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = pdl_launch_config(dim3((unsigned)p.G), dim3(GS_THREADS), s, pdl, &attr);
    float *part = (float *)ws;
    int *cnt = (int *)((char *)ws + gs_part_bytes(sms));
    cudaError_t e = cudaLaunchKernelEx(&cfg, gs_kernel<T, O, NT, MT, P, MINB>, (O *)y, (const T *)x, (const T *)w, n,
                                       in, out, p, part, cnt);
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}

template <typename T, typename O, int MT, int P, int MINB>
cudaError_t gs_dispatch_nt(void *y, const void *x, const void *w, int n, int in, int out, void *ws, int pdl, int sms,
                           cudaStream_t s)
{
    if (n <= 8) return gs_launch<T, O, 8, MT, P, MINB>(y, x, w, n, in, out, ws, pdl, sms, s);
    if (n <= 16) return gs_launch<T, O, 16, MT, P, MINB>(y, x, w, n, in, out, ws, pdl, sms, s);
    if (n <= 32) return gs_launch<T, O, 32, MT, P, MINB>(y, x, w, n, in, out, ws, pdl, sms, s);
    return gs_launch<T, O, 64, MT, P, MINB>(y, x, w, n, in, out, ws, pdl, sms, s);
}

/* Variant table: (MT, P, MINB). 0 is production; the others are bf16 only, for the bench. */
template <typename T, typename O>
cudaError_t gs_dispatch(int variant, void *y, const void *x, const void *w, int n, int in, int out, void *ws, int pdl,
                        int sms, cudaStream_t s)
{
    if (variant == 0) return gs_dispatch_nt<T, O, 1, 2, 2>(y, x, w, n, in, out, ws, pdl, sms, s);
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        switch (variant) {
        case 1:
            return gs_dispatch_nt<T, O, 1, 3, 1>(y, x, w, n, in, out, ws, pdl, sms, s);
        case 2:
            return gs_dispatch_nt<T, O, 2, 2, 1>(y, x, w, n, in, out, ws, pdl, sms, s);
        case 3:
            return gs_dispatch_nt<T, O, 1, 4, 1>(y, x, w, n, in, out, ws, pdl, sms, s);
        default:
            break;
        }
    }
    return cudaErrorInvalidValue;
}

cudaError_t gs_sms(int *sms)
{
    int dev;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    return cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
}

} // namespace

/* The workspace for products of out rows on a GPU of sms SMs: the partials, then the counters (one
 * per (row block, warp)). */
static size_t gs_ws_need(int sms, int out)
{
    const size_t counters = (size_t)(out + 127) / 128 * GS_WARPS;
    return gs_part_bytes(sms) + counters * sizeof(int);
}

extern "C" size_t vk_gemm_stream_ws_bytes(int max_out)
{
    int sms = 0;
    if (gs_sms(&sms) != cudaSuccess || max_out <= 0) return 0;
    return gs_ws_need(sms, max_out);
}

extern "C" cudaError_t vk_gemm_stream_ex(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                                         int out, void *ws, size_t ws_bytes, int variant, int pdl, cudaStream_t s)
{
    if (n <= 0) return cudaSuccess;
    if (n > VK_GEMM_STREAM_MAX_N || in <= 0 || in % 8 || out <= 0 || !ws || variant < 0 ||
        variant >= VK_GEMM_STREAM_VARIANTS)
        return cudaErrorInvalidValue;
    int sms = 0;
    cudaError_t e = gs_sms(&sms);
    if (e != cudaSuccess) return e;
    if (ws_bytes < gs_ws_need(sms, out)) return cudaErrorInvalidValue;
    pdl = pdl && pdl_supported((const void *)gs_kernel<__nv_bfloat16, float, 8, 1, 2, 2>);
    if (variant >= VK_GEMM_STREAM_TMA)
        return vk_gemm_stream_tma(dt, f32_out, y, x, w, n, in, out, (float *)ws,
                                  (int *)((char *)ws + gs_part_bytes(sms)), sms, variant, pdl, s);
    if (f32_out) VK_DISPATCH(dt, return (gs_dispatch<T, float>(variant, y, x, w, n, in, out, ws, pdl, sms, s)));
    VK_DISPATCH(dt, return (gs_dispatch<T, T>(variant, y, x, w, n, in, out, ws, pdl, sms, s)));
    return cudaErrorInvalidValue;
}

extern "C" int vk_gemm_stream_has_tma(void) { return vk_gemm_stream_tma_runnable() ? 1 : 0; }

extern "C" cudaError_t vk_gemm_stream(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                                      int out, void *ws, size_t ws_bytes, int pdl, cudaStream_t s)
{
    return vk_gemm_stream_ex(dt, f32_out, y, x, w, n, in, out, ws, ws_bytes, 0, pdl, s);
}
