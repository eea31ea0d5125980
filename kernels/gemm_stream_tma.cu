/* Weight-streaming GEMM, version 3 (vk_gemm_stream variant VK_GEMM_STREAM_TMA; Hopper, sm_90a):
 * y[n][out] = x[n][in] . W[out][in]^T for 1 <= n <= 64, the same product, the same stream-K
 * partition and the same fixed-order combine (stream_k.cuh) as version 2 (gemm_stream.cu), with
 * the operands moved by the Tensor Memory Accelerator and multiplied by wgmma.
 *
 * Why: version 2 feeds mma.sync, whose B operand (x) must sit in registers, so every warp re-reads
 * x through L1 for each 16 weight rows it multiplies -- at n = 32 twice the weight bytes -- and it
 * fell behind cuBLAS above n = 8 (runs 45-46). wgmma reads both operands from shared memory: one
 * copy of an x tile serves 128 weight rows, and the copies are the TMA's, not the threads'.
 *
 * - A CTA (one per SM) is BM / 64 consumer warpgroups and one producer warp. The producer's lane 0
 *   walks the CTA's range of (row block, k step) items; per item the TMA copies KB boxes of
 *   BM weight rows x 64 k (evict-first) and KB boxes of NT x 64 of x into the next stage of a
 *   ring, 128-byte swizzled, rows and columns past the edges filled with zeros, completing on the
 *   stage's full barrier.
 * - Each consumer warpgroup multiplies its 64 weight rows of the stage by x: 4 x KB wgmma
 *   m64nNTk16, both operands K-major from shared memory, fp32 accumulators in registers; then its
 *   warps release the stage (empty barrier) to the producer.
 * - At the end of a row block's part of the range the warps store it, or hand it to the combine.
 * - pdl: the producer issues the weight copies of the first stages before griddepcontrol.wait
 *   (weights never depend on an earlier kernel), and x's after it; the consumers wait for the
 *   previous kernel before they write anything.
 *
 * The accumulation order of an element does not depend on n (wgmma's per-element dot products, the
 * k steps in order, the fixed combine), so rows are bit-identical at every n, as in version 2;
 * the results differ from version 2's in the last bits (another k grouping inside a step).
 *
 * Configurations (BM, KB, S): production (64, 4, 4): 512 contiguous bytes of each weight row per
 * item; the bench variants (128, 1, 8), (128, 4, 2), (128, 2, 4).
 *
 * Measured on the H100 (runs 64-67, bench/gpu/bench_gemm_stream and gpu-run.sh's tma stage): a
 * whole decode step of 32 layers back to back (graph, pdl) at n = 8 / 16 / 32 / 64 takes 5.64 /
 * 5.69 / 5.89 / 6.17 ms against cuBLAS's 5.82 / 5.89 / 5.95 / 6.05, and end to end B4 8.05-8.07
 * against 8.10-8.19 ms and decode at 32 sequences 2,976 against 3,002 tok/s: cuBLAS's level, no
 * better, where version 2 lost up to 2x. Against vk_gemv's 2.85 TB/s at n = 1 it still loses ~3 us
 * a product (the split-K combine and the pipeline's start). End to end it is faster at 8 and 16
 * rows (decode +2.3 / +1.5 %, run 73); since every kernel of a layer is chained by programmatic
 * dependent launch (session 11) also at 24-48 rows (decode +1.5-2.0 %, B4's 32-row step 7.55
 * against 7.93 ms; level at 64, run 106), so the CUDA backend takes it for 5-48 rows by default
 * (VESTA_GEMM_STREAM, CUDA_GEMM_STREAM_AUTO_MAX_N). */
#include <cuda.h>

#include <type_traits>

#include "common.cuh"
#include "mbarrier.cuh"
#include "gemm_stream_tma.h"
#include "stream_k.cuh"
#include "tma_map.h"
#include "wgmma.cuh"

using namespace vk;

/* wgmma is an sm_90a feature: other targets (the portable compute_80 path) compile an empty kernel
 * that the host never launches (gst_runnable). */
#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GST_DEVICE 1
#else
#define GST_DEVICE 0
#endif

namespace
{

constexpr int GST_BOX_K = 64; /* k per TMA box: 128 bytes of a row, one swizzle span */
constexpr int GST_ROW_BYTES = GST_BOX_K * 2;
constexpr int GST_MAX_STAGES = 8;
constexpr int GST_SMEM_LIMIT = 227 * 1024;

/* A configuration: BM weight rows per row block (64 per consumer warpgroup), KB boxes along k per
 * item (KB x 128 contiguous bytes of each weight row), at most S stages; NT: x rows per tile. */
template <int BM_, int KB_, int S_, int NT_> struct gst_cfg {
    static constexpr int BM = BM_, KB = KB_, NT = NT_;
    static constexpr int BK = KB * GST_BOX_K; /* k per item */
    static constexpr int consumer_warps = BM / 16, threads = consumer_warps * 32 + 32;
    static constexpr int w_box = BM * GST_ROW_BYTES, x_box = NT * GST_ROW_BYTES;
    static constexpr int w_bytes = KB * w_box;
    static constexpr int stage = KB * (w_box + x_box); /* every box 1024-byte aligned: swizzle atoms */
    static constexpr int stages_fit = (GST_SMEM_LIMIT - 1024 - 2 * GST_MAX_STAGES * 8) / stage;
    static constexpr int stages = stages_fit < S_ ? stages_fit : S_;
    static constexpr int smem = stages * stage + 1024 /* alignment slack */ + 2 * stages * 8;
    static_assert(w_box % 1024 == 0 && x_box % 1024 == 0, "128-byte swizzle needs 1024-byte aligned boxes");
    static_assert(BM % 64 == 0 && BM <= 256 && stages >= 2 && S_ <= GST_MAX_STAGES, "bad configuration");
};

#if GST_DEVICE && defined(__CUDA_ARCH__)
/* The producer (one thread): the CTA's items [s0, s1) into the ring, in order. */
template <typename C>
__device__ void gst_produce(const CUtensorMap *tw, const CUtensorMap *tx, const sk_plan &p, int s0, int s1,
                            unsigned char *ring, uint64_t *full, uint64_t *empty)
{
    uint64_t evict_first, evict_last;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(evict_first));
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(evict_last));
    auto weights = [&](int i, int st) {
        const int s = s0 + i, rb = s / p.kst, k = (s - rb * p.kst) * C::BK;
#pragma unroll
        for (int b = 0; b < C::KB; b++)
            bulk_tensor_2d(ring + st * C::stage + b * C::w_box, tw, k + b * GST_BOX_K, rb * C::BM, full + st,
                           evict_first);
    };
    auto xs = [&](int i, int st) {
        const int s = s0 + i, k = (s - s / p.kst * p.kst) * C::BK;
#pragma unroll
        for (int b = 0; b < C::KB; b++)
            bulk_tensor_2d(ring + st * C::stage + C::w_bytes + b * C::x_box, tx, k + b * GST_BOX_K, 0, full + st,
                           evict_last);
    };
    const int count = s1 - s0, pre = count < C::stages ? count : C::stages;
    for (int i = 0; i < pre; i++) { /* weights first: they never depend on the previous kernel */
        bulk_bar_expect(full + i, C::stage);
        weights(i, i);
    }
    pdl_wait_previous(); /* x is the previous kernel's output */
    for (int i = 0; i < pre; i++) xs(i, i);
    for (int i = pre; i < count; i++) {
        const int st = i % C::stages;
        bulk_bar_wait(empty + st, (i / C::stages - 1) & 1); /* the consumers are done with use i - stages */
        bulk_bar_expect(full + st, C::stage);
        weights(i, st);
        xs(i, st);
    }
}

/* A consumer warp's row block rb (its warpgroup's 64 rows) from the accumulators to y. */
template <typename T, typename O, int NT, int BM>
__device__ void gst_store(O *y, const float (&acc)[NT / 2], int rb, int wg, int wq, int lane, int n, int out)
{
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < NT / 2; i++) {
        const int r = rb * BM + wg * 64 + wq * 16 + g + 8 * ((i >> 1) & 1), c = (i >> 2) * 8 + 2 * t + (i & 1);
        if (r >= out || c >= n) continue;
        if constexpr (sizeof(O) == 4)
            y[(size_t)c * out + r] = acc[i];
        else
            y[(size_t)c * out + r] = from_f<T>(acc[i]);
    }
}
#endif

template <typename T, typename O, typename C>
__global__ void __launch_bounds__(C::threads, 1)
    gst_kernel(const __grid_constant__ CUtensorMap tw, const __grid_constant__ CUtensorMap tx, O *__restrict__ y, int n,
               int out, sk_plan p, float *__restrict__ part, int *__restrict__ cnt)
{
#if GST_DEVICE && defined(__CUDA_ARCH__)
    constexpr int NT = C::NT;
    extern __shared__ unsigned char gst_smem[];
    unsigned char *ring = gst_smem + ((1024 - (bulk_smem(gst_smem) & 1023)) & 1023);
    uint64_t *full = reinterpret_cast<uint64_t *>(ring + C::stages * C::stage), *empty = full + C::stages;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int s0 = sk_start(p, blockIdx.x), s1 = sk_start(p, blockIdx.x + 1);
    if (threadIdx.x == 0) {
        for (int i = 0; i < C::stages; i++) {
            bulk_bar_init(full + i, 1);
            bulk_bar_init(empty + i, C::consumer_warps);
        }
        bulk_fence_init();
    }
    __syncthreads();
    if (warp == C::consumer_warps) { /* the producer warp */
        if (lane == 0) gst_produce<C>(&tw, &tx, p, s0, s1, ring, full, empty);
        pdl_allow_dependents();
        return;
    }
    pdl_allow_dependents();
    pdl_wait_previous(); /* y and the workspace belong to earlier kernels until here */
    const int wg = warp >> 2;
    const uint32_t ring_s = bulk_smem(ring);
    const sk_combiner<NT / 2, C::consumer_warps> comb{p, part, cnt, warp, lane};
    float acc[NT / 2];
#pragma unroll
    for (int i = 0; i < NT / 2; i++) acc[i] = 0.f;
    int seg = s0; /* first item of the current row block's segment */
    for (int s = s0; s < s1; s++) {
        const int i = s - s0, st = i % C::stages;
        bulk_bar_wait(full + st, (i / C::stages) & 1);
        const uint32_t a = ring_s + st * C::stage + wg * 64 * GST_ROW_BYTES, b = ring_s + st * C::stage + C::w_bytes;
        wg_fence_acc(acc);
        wg_fence();
#pragma unroll
        for (int kb = 0; kb < C::KB; kb++)
#pragma unroll
            for (int kk = 0; kk < GST_BOX_K / 16; kk++)
                wg_mma_ss<T, NT>(acc, wg_desc(a + kb * C::w_box + kk * 32, 0, 1024),
                                 wg_desc(b + kb * C::x_box + kk * 32, 0, 1024), 1);
        wg_commit();
        wg_wait<0>();
        wg_fence_acc(acc);
        __syncwarp();
        if (lane == 0) bulk_bar_arrive(empty + st);
        if (s + 1 == s1 || (s + 1) % p.kst == 0) {
            const int rb = s / p.kst;
            if (comb.combine(acc, rb, seg, s + 1)) gst_store<T, O, NT, C::BM>(y, acc, rb, wg, warp & 3, lane, n, out);
#pragma unroll
            for (int k = 0; k < NT / 2; k++) acc[k] = 0.f;
            seg = s + 1;
        }
    }
#else
    static_assert(C::w_bytes > 0, "the portable pass compiles no body"); /* (keeps the layout referenced) */
#endif
}

/* A tensor map over a row-major [rows][in] matrix of 16-bit elements, tiles of box_rows x 64. */
bool gst_map(CUtensorMap *m, vk_dtype dt, const void *base, int in, int rows, int box_rows)
{
    const uint64_t dims[2] = {(uint64_t)in, (uint64_t)rows}, strides[1] = {(uint64_t)in * 2};
    const uint32_t box[2] = {GST_BOX_K, (uint32_t)box_rows};
    return vk_tma_map(m, dt, base, 2, dims, strides, box);
}

/* One launch: grid and plan for configuration C (BM, KB, S) at x tile NT. */
template <typename T, typename O, int BM, int KB, int S, int NT>
cudaError_t gst_launch(vk_dtype dt, void *y, const void *x, const void *w, int n, int in, int out, float *part,
                       int *cnt, int sms, int pdl, cudaStream_t s)
{
    typedef gst_cfg<BM, KB, S, NT> C;
    const long long rbs = (out + BM - 1) / BM, kst = (in + C::BK - 1) / C::BK;
    if (rbs * kst >= (1LL << 30)) return cudaErrorInvalidValue;
    sk_plan p;
    p.kst = (int)kst;
    p.T = (int)(rbs * kst);
    p.G = p.T < sms ? p.T : sms;
    CUtensorMap tw, tx;
    if (!gst_map(&tw, dt, w, in, out, BM) || !gst_map(&tx, dt, x, in, n, NT)) return cudaErrorInvalidValue;
    auto kern = gst_kernel<T, O, C>;
    /* the ring's shared memory: set on every call, as the attribute belongs to the current device */
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, C::smem);
    if (e != cudaSuccess) return e;
    cudaLaunchAttribute attr;
    cudaLaunchConfig_t cfg = pdl_launch_config(dim3((unsigned)p.G), dim3(C::threads), s, pdl, &attr);
    cfg.dynamicSmemBytes = C::smem;
    if ((e = cudaLaunchKernelEx(&cfg, kern, tw, tx, (O *)y, n, out, p, part, cnt)) != cudaSuccess) return e;
    return cudaGetLastError();
}

template <typename T, typename O, int BM, int KB, int S>
cudaError_t gst_dispatch_nt(vk_dtype dt, void *y, const void *x, const void *w, int n, int in, int out, float *part,
                            int *cnt, int sms, int pdl, cudaStream_t s)
{
    if (n <= 8) return gst_launch<T, O, BM, KB, S, 8>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
    if (n <= 16) return gst_launch<T, O, BM, KB, S, 16>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
    if (n <= 32) return gst_launch<T, O, BM, KB, S, 32>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
    return gst_launch<T, O, BM, KB, S, 64>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
}

/* Configurations (BM, KB, S) by variant: VK_GEMM_STREAM_TMA is production, the others (bf16 only)
 * are for the bench. */
template <typename T, typename O>
cudaError_t gst_dispatch(int variant, vk_dtype dt, void *y, const void *x, const void *w, int n, int in, int out,
                         float *part, int *cnt, int sms, int pdl, cudaStream_t s)
{
    if (variant == VK_GEMM_STREAM_TMA)
        return gst_dispatch_nt<T, O, 64, 4, 4>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
        switch (variant - VK_GEMM_STREAM_TMA) {
        case 1:
            return gst_dispatch_nt<T, O, 128, 1, 8>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
        case 2:
            return gst_dispatch_nt<T, O, 128, 4, 2>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
        case 3:
            return gst_dispatch_nt<T, O, 128, 2, 4>(dt, y, x, w, n, in, out, part, cnt, sms, pdl, s);
        default:
            break;
        }
    }
    return cudaErrorInvalidValue;
}

} // namespace

/* Whether this binary carries the sm_90a kernel and the device runs it: an H100/H200 (compute
 * capability 9.0) and SASS built from sm_90a PTX, not the portable path's JIT. */
static bool gst_runnable_query()
{
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess || major != 9 || minor)
        return false;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, gst_kernel<__nv_bfloat16, __nv_bfloat16, gst_cfg<128, 1, 8, 8>>) != cudaSuccess)
        return false;
    return fa.ptxVersion >= 90 && vk_tma_available();
}

/* Asked once per process: a process drives GPUs of one kind (tensor-parallel ranks are alike). */
bool vk_gemm_stream_tma_runnable()
{
    static const bool runnable = gst_runnable_query();
    return runnable;
}

/* The variant's launch (gemm_stream.cu has checked the arguments and the workspace). */
cudaError_t vk_gemm_stream_tma(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                               int out, float *part, int *cnt, int sms, int variant, int pdl, cudaStream_t s)
{
    if (!vk_gemm_stream_tma_runnable()) return cudaErrorNotSupported;
    if (((uintptr_t)x | (uintptr_t)w) & 15) return cudaErrorInvalidValue; /* the TMA reads 16-byte aligned rows */
    if (f32_out) VK_DISPATCH(dt, return (gst_dispatch<T, float>(variant, dt, y, x, w, n, in, out, part, cnt, sms, pdl, s)));
    VK_DISPATCH(dt, return (gst_dispatch<T, T>(variant, dt, y, x, w, n, in, out, part, cnt, sms, pdl, s)));
    return cudaErrorInvalidValue;
}
