/* Paged-attention decode, version 5: both products on the tensor cores (mma.sync m16n8k16, bf16 or
 * fp16 in, fp32 accumulation) over K/V tiles streamed into shared memory by a multi-stage cp.async
 * pipeline (first tried in version 4 with CUDA-core arithmetic: slower than version 3, removed;
 * docs/benchmarks.md).
 *
 * Why: versions 1-4 split every key's dot product over D / 8 lanes and reduce it with warp
 * shuffles per head per key (and one exp per key per head); that serial chain, not the memory
 * pattern, held them at 1.5-1.7 TB/s on the H100 while the same paged reads with no arithmetic
 * (kernel_bench's paged-read calibration) run at 2.96 TB/s. Here a warp computes a whole
 * 16-key x 16-row score block with 16 mma instructions and reduces each row's max / sum across
 * the 4 lanes of a quad once per TILE, never per key.
 *
 * Split-K as version 2 (balanced ranges of ceil(ctx / nsplit) keys, partials in the same scratch
 * layout, merged by vk_decode_combine), the partition picked on the device from the batch's
 * longest real context, which each block reads from context_lens (vk_decode_v5_device_part; from
 * the bound, vk_decode_partition, where the bound needs one range). A work unit is one KV
 * head of one sequence over one key range, for all G = H / KVH query heads of the group. The grid
 * is persistent (MINB blocks per SM) and each block loops over units up to the splits of that
 * context; the grid depends only on the batch and the max context bound, so the launch can be
 * graph-captured. Until run 148 the grid
 * had one block per (KV head, sequence, split of the bound): under a decode graph's bound of
 * 131,072 keys that was 2,048 blocks a layer for one sequence, nearly all returning at once.
 *
 * Matrices: the G query heads are the rows of the A operand (Q[16 x D], rows >= G zero: G = 4
 * uses 4 of 16 rows, the tensor cores have throughput to spare, and G = 8 fits as well). The
 * query is NOT pre-scaled (it enters the mma exactly as stored); the fp32 scores are scaled by
 * scale x log2(e) and the softmax runs in the exp2 domain (maxima converted back to natural
 * logarithms for the scratch partials, which the combine kernel reads). S[16 x 16] = Q K^T per
 * warp per tile with K's B fragments by ldmatrix (K rows are D-contiguous: the non-transposed
 * ldmatrix gives the col-major B fragment, k = d, n = key); P is rounded to the storage type and
 * reused straight from the S accumulators as the A operand of O[16 x D] += P[16 x 16] V[16 x D],
 * V's fragments by ldmatrix.trans (the fragment layouts of attention_prefill_mma.cu).
 *
 * Warps split the KEYS of a tile (warp w takes 16-key chunks w, w + WARPS, ...), each with its own
 * running max / sum / O for the 16 rows, merged through shared memory at the end. Splitting D for
 * the P V product instead would make every warp compute the full S (4x the QK^T work and
 * ldmatrix traffic) or share P through shared memory with a barrier per tile; with keys split the
 * warps never synchronize inside a tile except at the pipeline's one barrier.
 *
 * Shared memory rows are dense with their 16-byte pieces swizzled (mma_tile_off): the 8 rows of
 * an ldmatrix 8x8 matrix then sit in 8 different bank groups, so fragment loads are
 * conflict-free (the first form padded rows to D + 8 elements, 272 bytes at D 128, for the same
 * end, and variant 6 keeps it). Rows past the range are zero-filled by cp.async (never read from the cache), so
 * masked keys meet zeros in V, not stale or NaN data.
 *
 * Default configuration: TK 64 keys per tile, S 3 stages, 4 warps (128 threads), each warp one
 * 16-key chunk per tile: 16 mma for S and 16 for P V per warp per tile. Shared memory at D 128:
 * 3 stages x 2 (K, V) x 64 x 256 B = 96 KB + the block table (<= 136 B): 2 blocks per SM,
 * 2 x 2 tiles x 32 KB = 128 KB of K/V in flight per SM. Registers (ptxas -v, sm_90a, CUDA 13.0):
 * D 128 166-178 per thread for every configuration (default 168; q fragments 16, O accumulators
 * 64), D 64 106-115; 0 bytes of spills, no stack frame. 2 x 128 threads x 168 = 43K of the SM's
 * 64K registers: occupancy is set by shared memory (2 blocks, 8 warps per SM at the default; the
 * tensor-core math needs no more warps, the cp.async stages keep the bytes in flight). The
 * variants (decode_version VK_DECODE_V5_VARIANT_BASE + i in vk_attention_v, for kernel_bench and
 * the tests) trade tile size, stages and warps: see launch_v5_variant. */
#include "attention_mma.cuh"

using namespace vk;

namespace {

template <int D, int TK, int S, bool SWZ> struct v5_layout {
    static constexpr int LD = SWZ ? D : D + 8;                 /* row, elements: swizzled or padded */
    static constexpr size_t tile = (size_t)TK * LD * 2;        /* bytes of one K (or V) tile */
    static constexpr size_t stages = 2 * S * tile;             /* K and V of every stage */
};

template <typename T, int D, int TK, int S, int WARPS, int MINB, bool SWZ>
__global__ void __launch_bounds__(WARPS * 32, MINB)
decode_v5_kernel(const vk_attention_args a, int max_splits, int part, int sms) {
    pdl_allow_dependents(); /* a pdl-launched o_proj may start loading its weights */
    typedef v5_layout<D, TK, S, SWZ> L;
    constexpr int THREADS = WARPS * 32;
    constexpr int LANES = D / 8;                  /* 16-byte chunks per row */
    constexpr int PER = TK * LANES / THREADS;     /* chunks of K (and of V) per thread per tile */
    constexpr int CH = TK / 16;                   /* 16-key chunks per tile */
    static_assert(CH % WARPS == 0, "every warp takes the same number of 16-key chunks");
    static_assert(PER * THREADS == TK * LANES && PER >= 1, "tile chunks must split evenly over threads");
    constexpr int STEP = THREADS / LANES; /* rows between a thread's chunks */
    static_assert(STEP * LANES == THREADS, "a thread's chunks keep one column");
    static_assert(S >= 2, "at least double buffering");
    static_assert(D % 16 == 0, "D must be a multiple of 16");
    extern __shared__ __align__(128) unsigned char v5_smem[];
    T *sk = reinterpret_cast<T *>(v5_smem);                 /* [S][TK][LD] */
    T *sv = reinterpret_cast<T *>(v5_smem + S * L::tile);   /* [S][TK][LD] */
    int *sbt = reinterpret_cast<int *>(v5_smem + L::stages);

    const int KVH = a.KVH, ns = a.num_seqs, G = a.H / a.KVH, bs = a.block_size;
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, gr = lane >> 2, t4 = lane & 3;
    /* The grid is persistent: block b takes work units b, b + gridDim.x, ... (split, sequence, KV
     * head; KV head fastest, so neighbouring blocks read the heads of the same cache blocks) up to
     * the splits of the batch's longest real context. A decode graph is captured with the model's
     * longest context as its bound: at 131,072 keys that is 256 splits, nearly all past the real
     * contexts, and one block per split of the bound meant 2,048 blocks a layer for one sequence
     * and 131,072 for 64, nearly all returning at once. The contexts are the host's upload for
     * the step, never a kernel's: they are read, and the ranges picked, before waiting on the
     * RoPE kernel (1-2 us of a one-sequence layer's 16). */
    __shared__ int s_max_ctx;
    if (tid == 0) s_max_ctx = 0;
    __syncthreads();
    int mx = 0;
    for (int i = tid; i < ns; i += THREADS) mx = max(mx, a.context_lens[i]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) atomicMax(&s_max_ctx, mx);
    __syncthreads();
    if (sms > 0) /* the partition of the real contexts, not the bound's (the launcher's part) */
        part = vk_decode_v5_device_part(ns, KVH, s_max_ctx, sms, max_splits);
    const int units = ns * KVH * min(max_splits, (s_max_ctx + part - 1) / part);
    pdl_wait_previous(); /* q and the new keys are the RoPE kernel's (the combine kernel makes the
                          * same pick from the same contexts) */
    uint32_t qa[D / 16][2];
    for (int u = blockIdx.x; u < units; u += gridDim.x) {
        const int kvh = u % KVH, seq = (u / KVH) % ns, split = u / (KVH * ns);
        const int q0 = a.query_start[seq];
        if (a.query_start[seq + 1] - q0 != 1) continue; /* a prefill row (block-uniform: no barrier skipped) */
        const int ctx = a.context_lens[seq];
        const int nsplit = (ctx + part - 1) / part;
        if (split >= nsplit) continue;
        const int per = (ctx + nsplit - 1) / nsplit;
        const int start = split * per, end = min(ctx, start + per); /* may be empty: the partial is then 0 */

        /* The range's block-table entries (at most part / bs + 2: the launcher sized sbt so). */
        const int32_t *bt = a.block_tables + (size_t)seq * a.max_blocks_per_seq;
        const int b0 = start / bs;
        const int nb = end > start ? (end - 1) / bs - b0 + 1 : 0;
        for (int i = tid; i < nb; i += THREADS) sbt[i] = __ldg(bt + b0 + i);
        mma_load_q<T, D>(qa, (const T *)a.q + (size_t)q0 * a.q_stride, kvh * G, G, lane); /* flies with sbt's */
        __syncthreads(); /* sbt */

        const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
        const int base = b0 * bs;
        /* Tile i (keys start + i * TK ...) into stage i % S, one commit group per tile. A thread's
         * chunks are rows tid / LANES + j * STEP, column (tid % LANES) * 8. Its rows' (block,
         * position in block) are stepped from the first's: one division by the block size per tile
         * and thread, not two per 16-byte chunk. */
        auto issue = [&](int i) {
            const int tb = start + i * TK, r0 = tb - base + tid / LANES, col = (tid % LANES) * 8;
            int blk = r0 / bs, in = r0 % bs;
            T *dk = sk + (i % S) * TK * L::LD, *dv = sv + (i % S) * TK * L::LD;
#pragma unroll
            for (int j = 0; j < PER; j++) {
                const int row = tid / LANES + j * STEP;
                const T *pk = kc, *pv = vc; /* any valid address when zero-filling */
                int n = 0;
                if (tb + row < end) {
                    const size_t off = (((size_t)sbt[blk] * bs + in) * KVH + kvh) * D + col;
                    pk = kc + off;
                    pv = vc + off;
                    n = 16;
                }
                mma_cp16(dk + mma_tile_off<D, L::LD>(row, col), pk, n);
                mma_cp16(dv + mma_tile_off<D, L::LD>(row, col), pv, n);
                for (in += STEP; in >= bs; in -= bs) blk++; /* once at most for blocks of >= STEP keys */
            }
        };

        float o[D / 8][4];
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
        float mrow = -INFINITY, lrow = 0.f; /* row gr, log2 domain; lrow: this lane's partial sum */
        const float sl2 = a.scale * MMA_LOG2E;

        const int ntiles = (end - start + TK - 1) / TK;
#pragma unroll
        for (int i = 0; i < S - 1; i++) {
            if (i < ntiles) issue(i);
            mma_commit(); /* empty groups keep the count uniform: wait_group S - 2 always means tile i */
        }
        for (int i = 0; i < ntiles; i++) {
            mma_wait<S - 2>(); /* this thread's copies of tile i have landed */
            __syncthreads();  /* everyone's have; and every warp is done with tile i - 1's stage */
            if (i + S - 1 < ntiles) issue(i + S - 1);
            mma_commit();
            const T *tk = sk + (i % S) * TK * L::LD, *tv = sv + (i % S) * TK * L::LD;
#pragma unroll
            for (int cc = 0; cc < CH / WARPS; cc++) {
                const int kb = (w + cc * WARPS) * 16; /* this chunk's first key within the tile */
                mma_decode_chunk<T, D, L::LD>(qa, tk + kb * L::LD, tv + kb * L::LD, start + i * TK + kb, end, sl2, lane,
                                              o, mrow, lrow);
            }
        }

        /* Merge the warps through shared memory that aliases the stages (all copies done, all warps
         * past their last tile). */
        mma_wait<0>();
        __syncthreads();
        lrow += __shfl_xor_sync(0xffffffffu, lrow, 1);
        lrow += __shfl_xor_sync(0xffffffffu, lrow, 2);
        float *wacc = reinterpret_cast<float *>(v5_smem); /* [WARPS][G][D] */
        float *wstat = wacc + WARPS * G * D;              /* [WARPS][G][2]: max (log2 domain), sum */
        if (gr < G) {
#pragma unroll
            for (int d = 0; d < D / 8; d++)
                *reinterpret_cast<float2 *>(wacc + (w * G + gr) * D + d * 8 + 2 * t4) = make_float2(o[d][0], o[d][1]);
            if (t4 == 0) {
                wstat[(w * G + gr) * 2] = mrow;
                wstat[(w * G + gr) * 2 + 1] = lrow;
            }
        }
        __syncthreads();
        for (int i = tid; i < G * D; i += THREADS) {
            const int g = i / D, d = i % D;
            float M = -INFINITY;
#pragma unroll
            for (int k = 0; k < WARPS; k++) M = fmaxf(M, wstat[(k * G + g) * 2]);
            float r = 0.f, Ls = 0.f;
            if (M != -INFINITY) { /* a warp without keys has m = -inf, l = 0, O = 0: weight 0 */
#pragma unroll
                for (int k = 0; k < WARPS; k++) {
                    const float c = exp2f(wstat[(k * G + g) * 2] - M);
                    r += c * wacc[(k * G + g) * D + d];
                    Ls += c * wstat[(k * G + g) * 2 + 1];
                }
            }
            const int head = kvh * G + g;
            if (nsplit == 1) {
                ((T *)a.out)[((size_t)q0 * a.H + head) * D + d] = from_f<T>(r / Ls);
            } else {
                /* the combine kernel's format: unnormalized O, max (natural logarithm), sum */
                float *pp = (float *)a.scratch + (((size_t)seq * a.H + head) * max_splits + split) * (D + 2);
                pp[d] = r;
                if (d == 0) {
                    pp[D] = M == -INFINITY ? -INFINITY : M * MMA_LN2;
                    pp[D + 1] = Ls;
                }
            }
        }
        __syncthreads(); /* the merge's reads of the stages come before the next split's copies */
    }
}

/* DEV: the partition picked on the device from the real contexts (vk_decode_v5_device_part;
 * production since run 153) where the bound's needs more than one range, else the bound's (a
 * decode graph under the model's 131,072-position bound split one sequence's 640 keys in two, 16
 * blocks for the GPU's 264 slots). part: the bound's, or the device pick's most (the block-table
 * copy in shared memory is sized by it). */
template <typename T, int D, int TK, int S, int WARPS, int MINB, bool SWZ = false, bool DEV = false>
static cudaError_t launch_v5(const vk_attention_args *a, cudaStream_t s) {
    typedef v5_layout<D, TK, S, SWZ> L;
    const int bound = a->max_context_len > 0 ? a->max_context_len : 1;
    int part = vk_decode_bound_partition(a->num_seqs, a->KVH, bound);
    const bool dev = DEV && part < bound;
    int max_splits = dev ? vk_decode_v5_splits_bound(a->num_seqs, a->KVH, bound) : (bound + part - 1) / part;
    if (max_splits < 1) max_splits = 1;
    if (dev) {
        const int f = vk_decode_part_floor(bound, max_splits, 32);
        part = f > VK_DECODE_PARTITION ? f : VK_DECODE_PARTITION;
    }
    const int G = a->H / a->KVH;
    const size_t stages = L::stages + sizeof(int) * (part / a->block_size + 2);
    const size_t merge = sizeof(float) * WARPS * G * (D + 2);
    const size_t smem = stages > merge ? stages : merge;
    void (*k)(const vk_attention_args, int, int, int) = decode_v5_kernel<T, D, TK, S, WARPS, MINB, SWZ>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    /* persistent: MINB blocks per SM, or one per work unit of the bound where that is fewer */
    const long units = (long)a->KVH * a->num_seqs * max_splits, slots = (long)MINB * vk_sm_count();
    if (units > INT32_MAX) return cudaErrorInvalidValue;
    const unsigned blocks = (unsigned)(units < slots ? units : slots);
    if ((e = launch_pdl(k, dim3(blocks), dim3(WARPS * 32), smem, s, a->pdl != 0, *a,
                        max_splits, part, dev ? vk_sm_count() : 0)) != cudaSuccess)
        return e;
    return max_splits > 1 ? vk_decode_combine(a, max_splits, dev ? 0 : part, dev ? vk_sm_count() : 0, s) : cudaSuccess;
}

/* Configurations (tile keys, stages, warps; blocks per SM from shared memory at D 128: stage
 * bytes = 2 (K, V) x S x TK x 272 B with padded rows, 256 B swizzled; an SM has 228 KB). Variant 0
 * is version 5's own, with swizzled rows since run 142 (mma_tile_off: 4-6 % faster than padded at
 * 8-32 sequences over 1-4K keys and one of 32K, run 141). */
template <typename T, int D> static cudaError_t launch_v5_variant(const vk_attention_args *a, int variant, cudaStream_t s) {
    switch (variant) {
    case 0: return launch_v5<T, D, 64, 3, 4, 2, true, true>(a, s); /* 96 KB: 2 blocks/SM, 128 KB in flight/SM */
    case 1: return launch_v5<T, D, 32, 4, 2, 3>(a, s);  /* 68 KB: 3 blocks/SM, 144 KB in flight/SM */
    case 2: return launch_v5<T, D, 32, 3, 2, 4>(a, s);  /* 51 KB: 4 blocks/SM, 128 KB in flight/SM */
    case 3: return launch_v5<T, D, 64, 2, 4, 3>(a, s);  /* 68 KB: 3 blocks/SM, 96 KB in flight/SM */
    case 4: return launch_v5<T, D, 64, 4, 4, 1>(a, s);  /* 136 KB: 1 block/SM, 96 KB in flight/SM */
    case 5: return launch_v5<T, D, 128, 2, 8, 1>(a, s); /* 136 KB: 1 block/SM, 64 KB in flight/SM */
    case 6: return launch_v5<T, D, 64, 3, 4, 2>(a, s); /* variant 0 with padded rows (production until run 142) */
    case 7: return launch_v5<T, D, 64, 3, 4, 2, true>(a, s); /* variant 0 with its ranges from the bound (the pick of vk_decode_partition) */
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

cudaError_t vk_attention_decode_v5x(const vk_attention_args *a, int variant, cudaStream_t s) {
    if (a->KVH <= 0 || a->block_size <= 0 || a->H % a->KVH || a->H / a->KVH > 8) return cudaErrorInvalidValue;
    if (variant < 0 || variant >= VK_DECODE_V5_VARIANTS) return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_v5_variant<T, 128>(a, variant, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_v5_variant<T, 64>(a, variant, s)));
    return cudaErrorInvalidValue;
}

cudaError_t vk_attention_decode_v5(const vk_attention_args *a, cudaStream_t s) { return vk_attention_decode_v5x(a, 0, s); }
