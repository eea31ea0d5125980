/* Paged prefill attention over wide tiles on Hopper's warpgroup MMA and tensor-memory copies
 * (sm_90a): vk_attention_args.wide_tiles = VK_WIDE_WGMMA. The tiles, the key splits, the partials
 * and their combine are those of the mma.sync wide kernel (attention_prefill_mma.cu); the
 * arithmetic moves to wgmma and the copies to the TMA.
 *
 * Why: the mma.sync wide kernel's 8 warps each read every K and V tile from shared memory by
 * ldmatrix (256 KB a 64-key tile per block) and each issue ~1,200 instructions a tile, one block of
 * 8 warps per SM. Nsight Compute (run 128) found it latency-bound on B4's prefix hit: 0.26 warps
 * issued per scheduler, DRAM at 17 %, 24 us a layer. Here a block is two consumer warpgroups of
 * 64 query rows and one producer warp:
 * - S = Q K^T is D / 16 wgmma m64n64k16 per warpgroup with Q and K read by the tensor cores from
 *   shared memory; O += P V is 4 wgmma m64nDk16 with P from registers (S's accumulators, as in the
 *   mma.sync kernel) and V read MN-major (imm-trans-b), so no thread loads K or V fragments.
 * - The producer warp gathers the K and V tiles through the block table with 3-D tensor copies of
 *   R consecutive slots x 64 dims each (R = gcd(block size, 64), at least 8), completing on a
 *   ring of stage barriers; the consumers release a stage through a second barrier. A first cut
 *   gathered 16-byte pieces with cp.async from every thread: Nsight Compute (run 133) put 1.6 of
 *   its 7.9 cycles between a warp's instructions on the memory instruction queue (lg_throttle),
 *   2.1 on the block-table loads, and its two block barriers a tile held the warpgroups in step.
 *   The tiles of keys that earlier steps wrote (before the sequence's first query) are requested
 *   before the wait for the previous kernel, on the mma.sync wide kernel's argument.
 *
 * Shared memory: a ring of pwg_layout::S (K, V) tiles (6 at D = 128), the block's 128 query rows,
 * the stage barriers. K, V and Q are 128-byte swizzled (wgmma.cuh): a 64-key tile is D / 64 spans
 * of 64 rows x 128 bytes, the query rows D / 64 spans of 128 rows x 128 bytes. Rows past the key
 * range come as zeros (copies of slots outside the map) or, inside the sequence's last block, are
 * zeroed in V before P V (P is 0 there, but 0 x NaN would not be).
 *
 * The softmax, the masks, the fragment layouts (wgmma's accumulators are mma.sync's m16n8 tiles
 * side by side) and the partials are the mma.sync kernel's; only the summation order inside the
 * tensor-core products and the SFU's exp2 differ, so outputs agree within rounding, not bit for
 * bit. */
#include <numeric>

#include "attention_mma.cuh"
#include "mbarrier.cuh"
#include "tma_map.h"
#include "wgmma.cuh"

using namespace vk;

#if !defined(__CUDA_ARCH__) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define PWG_DEVICE 1
#else
#define PWG_DEVICE 0 /* the portable compute_80 pass: an empty kernel the host never launches */
#endif

namespace
{

constexpr int PWG_BN = 64;                                                          /* keys per tile */
constexpr int PWG_WARPS = 8, PWG_THREADS = 32 * PWG_WARPS, PWG_BM = 16 * PWG_WARPS; /* consumers */
constexpr int PWG_MIN_RUN = 8; /* slots per tensor copy at least: whole 1024-byte swizzle atoms */

/* D / 64 spans of 128 bytes per row; S stages of (K, V); the query rows after the ring. */
template <int D> struct pwg_layout {
    static constexpr int SPANS = D / 64;
    static constexpr uint32_t kspan = PWG_BN * 128, tile = SPANS * kspan, stage = 2 * tile;
    static constexpr uint32_t qspan = PWG_BM * 128, q = SPANS * qspan;
    /* as many stages as fit next to the query rows (6 at D = 128: 225 KB with the alignment slack) */
    static constexpr int S = (227 * 1024 - 2048 - q) / stage > 8 ? 8 : (227 * 1024 - 2048 - q) / stage;
    /* + slack (1024-byte aligned spans) + the stage barriers */
    static constexpr size_t smem = (size_t)S * stage + q + 1024 + 2 * S * 8;
    static constexpr int PART = D + 8; /* the partials' row, as the mma.sync kernel's */
    static_assert(D % 64 == 0 && S >= 3, "bad layout");
};

#if PWG_DEVICE && defined(__CUDA_ARCH__)
/* 2^x by the SFU alone (-inf gives 0): exp2f's range handling cost more instructions than the
 * product it feeds, and P is rounded to 16 bits right after */
__device__ __forceinline__ float pwg_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
#endif

/* The producer warp: the split's key tiles into the ring, tile j into stage j % S once the
 * consumers released its previous use; in each, run of R slots (lane-parallel) one 3-D copy of K
 * and one of V per 64-dim span. Runs past the range copy slots outside the map: zeros. */
template <int D>
__device__ void pwg_produce(const CUtensorMap *tk, const CUtensorMap *tv, const int32_t *bt, int bsz, int bsh, int kvh,
                            int run, int kv_lo, int kv_hi, int pos0, unsigned char *ring, uint64_t *full,
                            uint64_t *empty, int lane)
{
    typedef pwg_layout<D> L;
    constexpr int S = L::S;
    uint64_t evict_first;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(evict_first));
    const int ntiles = kv_hi > kv_lo ? (kv_hi - kv_lo + PWG_BN - 1) / PWG_BN : 0, runs = PWG_BN / run;
    bool waited = false;
    for (int j = 0; j < ntiles; j++) {
        const int n0 = kv_lo + j * PWG_BN, st = j % S;
        if (!waited && n0 + PWG_BN > pos0) { /* this tile holds keys the RoPE kernel writes */
            pdl_wait_previous();
            waited = true;
        }
        if (j >= S) bulk_bar_wait(empty + st, (j / S - 1) & 1);
        if (lane == 0) bulk_bar_expect(full + st, L::stage);
        __syncwarp();
        unsigned char *kt = ring + st * L::stage;
        for (int r = lane; r < runs; r += 32) {
            const int key = n0 + r * run, blk = bsh >= 0 ? key >> bsh : key / bsz;
            const int slot = key < kv_hi ? bt[blk] * bsz + (key - blk * bsz) : -run;
#pragma unroll
            for (int sp = 0; sp < L::SPANS; sp++) {
                bulk_tensor_3d(kt + sp * L::kspan + r * run * 128, tk, sp * 64, kvh, slot, full + st, evict_first);
                bulk_tensor_3d(kt + L::tile + sp * L::kspan + r * run * 128, tv, sp * 64, kvh, slot, full + st,
                               evict_first);
            }
        }
    }
    if (!waited) pdl_wait_previous(); /* (every kernel waits before it ends: the chain's order) */
}

template <typename T, int D>
__global__ void __launch_bounds__(PWG_THREADS + 32, 1)
    prefill_wg_kernel(const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv,
                      const vk_attention_args a, int nsplit, int chunk, int run)
{
#if PWG_DEVICE && defined(__CUDA_ARCH__)
    typedef pwg_layout<D> L;
    constexpr int S = L::S;
    pdl_allow_dependents(); /* a pdl-launched o_proj may start loading its weights */
    extern __shared__ unsigned char pwg_smem[];
    unsigned char *ring = pwg_smem + ((1024 - (bulk_smem(pwg_smem) & 1023)) & 1023);
    const uint32_t ring_s = bulk_smem(ring), q_s = ring_s + S * L::stage;
    uint64_t *full = reinterpret_cast<uint64_t *>(ring + S * L::stage + L::q), *empty = full + S;
    const int tid = threadIdx.x, w = tid >> 5, wg = w >> 2, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    /* rows of the block: (token, head) pairs of one KV group, as the mma.sync kernel's wide tiles */
    const int G = a.H / a.KVH, tile = blockIdx.x / a.KVH, head0 = (blockIdx.x % a.KVH) * G, split = blockIdx.z;
    const int kvh = head0 / G;
    const int seq = a.prefill_tiles[tile * 2], m0 = a.prefill_tiles[tile * 2 + 1];
    const int q0 = a.query_start[seq], qlen = a.query_start[seq + 1] - q0;
    const int ctx = a.context_lens[seq], pos0 = ctx - qlen;
    const int ntq = min(PWG_BM / G, qlen - m0), rows = ntq * G;
    const int kv_end = min(ctx, pos0 + m0 + ntq);
    const int kv_lo = split * chunk, kv_hi = min(kv_end, kv_lo + chunk);
    if (tid == 0) {
        for (int i = 0; i < S; i++) {
            bulk_bar_init(full + i, 1);
            bulk_bar_init(empty + i, PWG_WARPS);
        }
        bulk_fence_init();
    }
    __syncthreads();
    if (w == PWG_WARPS) {
        const int bsz = a.block_size, bsh = (bsz & (bsz - 1)) == 0 ? __ffs(bsz) - 1 : -1;
        pwg_produce<D>(&tk, &tv, a.block_tables + (size_t)seq * a.max_blocks_per_seq, bsz, bsh, kvh, run, kv_lo, kv_hi,
                       pos0, ring, full, empty, lane);
        return;
    }
    const int rt[2] = {(16 * w + g) / G, (16 * w + g + 8) / G};
    const int rh[2] = {head0 + (16 * w + g) % G, head0 + (16 * w + g + 8) % G};
    const float sl2 = a.scale * MMA_LOG2E;
    constexpr int DV = D / 8;
    const int wt = tid & 127; /* the thread's index in its warpgroup */
    pdl_wait_previous();      /* q is the RoPE kernel's */
    { /* the warpgroup's 64 query rows (zeros past `rows`): 16-byte loads, all before any store */
        constexpr int QV = 64 * DV / 128;
        const T *q = (const T *)a.q;
        uint4 v[QV];
#pragma unroll
        for (int i = 0; i < QV; i++) {
            const int idx = wt + i * 128, r = 64 * wg + idx / DV, c = idx % DV;
            v[i] = r < rows ? *(const uint4 *)(q + (size_t)(q0 + m0 + r / G) * a.q_stride + (head0 + r % G) * D + c * 8)
                            : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int i = 0; i < QV; i++) {
            const int idx = wt + i * 128, r = 64 * wg + idx / DV, c = idx % DV;
            *(uint4 *)(ring + S * L::stage + (c >> 3) * L::qspan + wg_swizzle(r, c & 7)) = v[i];
        }
        bulk_fence_proxy(); /* the stores, visible to the tensor cores' reads */
        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
    }

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float(&of)[D / 2] = reinterpret_cast<float(&)[D / 2]>(o);
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
    float s[PWG_BN / 8][4]; /* S = Q K^T of a tile: the first product of each tile overwrites it */
    float(&sf)[PWG_BN / 2] = reinterpret_cast<float(&)[PWG_BN / 2]>(s);
#pragma unroll
    for (int i = 0; i < PWG_BN / 2; i++) sf[i] = 0.f;
    const bool live = 64 * wg < rows; /* warpgroup-uniform: a warpgroup without rows only releases */
    const uint32_t qa = q_s + wg * 64 * 128;
    for (int n0 = kv_lo, j = 0; n0 < kv_hi; n0 += PWG_BN, j++) {
        const int st = j % S;
        bulk_bar_wait(full + st, (j / S) & 1);
        const uint32_t ks = ring_s + st * L::stage, vs = ks + L::tile;
        if (live && n0 + PWG_BN > kv_hi) { /* V rows past the range: zeros (stale slots of the last block) */
            const int r0 = kv_hi - n0, pieces = (PWG_BN - r0) * 8 * L::SPANS;
            for (int i = wt; i < pieces; i += 128) {
                const int r = r0 + i / (8 * L::SPANS), sp = (i / 8) % L::SPANS, c = i % 8;
                *(uint4 *)(ring + st * L::stage + L::tile + sp * L::kspan + wg_swizzle(r, c)) = make_uint4(0, 0, 0, 0);
            }
            bulk_fence_proxy();
            asm volatile("bar.sync %0, 128;\n" ::"r"(1 + wg) : "memory");
        }
        if (live) {
            wg_fence_acc(sf);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) /* the first product overwrites the last tile's S */
                wg_mma_ss<T, PWG_BN>(sf, wg_desc(qa + (kk >> 2) * L::qspan + (kk & 3) * 32, 16, 1024),
                                     wg_desc(ks + (kk >> 2) * L::kspan + (kk & 3) * 32, 16, 1024), kk > 0);
            wg_commit();
            wg_wait<0>();
            wg_fence_acc(sf);

            /* mask, row maxima of the raw scores over the quad (the scale is positive: checked at
             * launch), then p = 2^(s sl2 - max sl2) in one FMA and ex2 each; a tile inside every row's
             * range (all keys before the warp's first query token, all rows real) skips the mask */
            float mx[2] = {-INFINITY, -INFINITY};
            if (16 * w + 16 <= rows && n0 + PWG_BN <= kv_hi && n0 + PWG_BN - 1 <= pos0 + m0 + (16 * w) / G) {
#pragma unroll
                for (int nt = 0; nt < PWG_BN / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
            } else {
#pragma unroll
                for (int nt = 0; nt < PWG_BN / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int r = 16 * w + g + (e >> 1) * 8, key = n0 + nt * 8 + 2 * t4 + (e & 1);
                        if (!(r < rows && key < kv_hi && key <= pos0 + m0 + rt[e >> 1])) s[nt][e] = -INFINITY;
                        mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
                    }
            }
            float alpha[2], mu[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
                mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
                const float mn = fmaxf(mrow[h], mx[h] * sl2); /* log2 domain */
                mu[h] = mn == -INFINITY ? 0.f : mn;
                alpha[h] = mrow[h] == -INFINITY ? (mn == -INFINITY ? 1.f : 0.f) : pwg_exp2(mrow[h] - mn);
                mrow[h] = mn;
            }
            uint32_t pa[PWG_BN / 16][4]; /* P as wgmma's A fragments, key groups of 16 */
            mma_prefill_probs<T, PWG_BN, D>(s, pa, lrow, o, alpha,
                                            [&](float x, int h) { return pwg_exp2(fmaf(x, sl2, -mu[h])); });
            /* O += P V: 16 keys a step (two 8-key groups of V's rows, 1024 bytes apart), D / 64 spans */
            wg_fence_acc(of);
            wg_fence();
#pragma unroll
            for (int kc2 = 0; kc2 < PWG_BN / 16; kc2++)
                wg_mma_rs_t<T, D>(of, pa[kc2], wg_desc(vs + kc2 * 16 * 128, L::kspan, 1024));
            wg_commit();
            wg_wait<0>();
            wg_fence_acc(of);
        }
        __syncwarp();
        if (lane == 0) bulk_bar_arrive(empty + st); /* this warp is done with the stage */
    }

    mma_prefill_store<T, D, L::PART>(a, o, mrow, lrow, rows, w, lane, (size_t)(q0 + m0), rt, rh, tile, PWG_BM, nsplit,
                                     split);
#else
    static_assert(pwg_layout<D>::S >= 2, "the portable pass compiles no body");
#endif
}

/* Slots per tensor copy for a block size: the most that stay inside one block and one key tile. */
int pwg_run(int bsz) { return std::gcd(bsz, PWG_BN); }

template <typename T, int D> cudaError_t pwg_launch(const vk_attention_args *b, int nsplit, int chunk, cudaStream_t s)
{
    const int run = pwg_run(b->block_size);
    if (run < PWG_MIN_RUN) return cudaErrorNotSupported;
    /* the caches as [slot][KV head][D]; the slot count is not known here, so the map's bound is
     * the largest coordinate: the block table's slots are in range, and the runs past a split's
     * keys ask for negative slots (zeros) */
    CUtensorMap tk, tv;
    const uint64_t dims[3] = {(uint64_t)D, (uint64_t)b->KVH, (uint64_t)INT32_MAX};
    const uint64_t strides[2] = {(uint64_t)D * 2, (uint64_t)b->KVH * D * 2};
    const uint32_t box[3] = {64, 1, (uint32_t)run};
    if (!vk_tma_map(&tk, b->dt, b->k_cache, 3, dims, strides, box) ||
        !vk_tma_map(&tv, b->dt, b->v_cache, 3, dims, strides, box))
        return cudaErrorInvalidValue;
    auto kern = prefill_wg_kernel<T, D>;
    const size_t smem = pwg_layout<D>::smem;
    /* set on every call: the attribute belongs to the current device */
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    return launch_pdl(kern, dim3(b->num_prefill_tiles * b->KVH, 1, nsplit), dim3(PWG_THREADS + 32), smem, s,
                      b->pdl != 0, tk, tv, *b, nsplit, chunk, run);
}

/* Whether this binary carries the sm_90a kernel and the device runs it with its shared memory. */
int pwg_supported_query(int D)
{
    int dev = 0, major = 0, minor = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess || major != 9 ||
        minor)
        return 0;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, prefill_wg_kernel<__nv_bfloat16, 128>) != cudaSuccess || fa.ptxVersion < 90 ||
        !vk_tma_available())
        return 0;
    return (size_t)optin >= (D == 128 ? pwg_layout<128>::smem : pwg_layout<64>::smem);
}

} // namespace

int vk_attention_prefill_wide_wg_fits(int block_size) { return block_size > 0 && pwg_run(block_size) >= PWG_MIN_RUN; }

extern "C" int vk_prefill_wide_wgmma_supported(int D, int block_size)
{
    if ((D != 64 && D != 128) || !vk_attention_prefill_wide_wg_fits(block_size)) return 0;
    /* asked once per head size: a process drives GPUs of one kind (tensor-parallel ranks are alike) */
    static const int s64 = pwg_supported_query(64), s128 = pwg_supported_query(128);
    return D == 128 ? s128 : s64;
}

cudaError_t vk_attention_prefill_wide_wg(const vk_attention_args *b, int nsplit, int chunk, cudaStream_t s)
{
    if (!vk_prefill_wide_wgmma_supported(b->D, b->block_size)) return cudaErrorNotSupported;
    if (!(b->scale > 0.f)) return cudaErrorInvalidValue; /* the row maxima are taken before scaling */
    if (b->D == 128) VK_DISPATCH(b->dt, return (pwg_launch<T, 128>(b, nsplit, chunk, s)));
    if (b->D == 64) VK_DISPATCH(b->dt, return (pwg_launch<T, 64>(b, nsplit, chunk, s)));
    return cudaErrorInvalidValue;
}
