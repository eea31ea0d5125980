/* Paged-attention decode, version 7: version 5's tensor-core arithmetic (attention_mma.cuh), with
 * every WARP a persistent, independent worker that streams its own K/V chunks.
 *
 * Why: version 5 reads 2.43-2.61 TB/s where the same paged reads with no arithmetic reach
 * 2.94-3.04 (kernel_bench), and halving its instructions (version 6, run 32) changed nothing.
 * What version 5 still has that a plain read does not is block-level structure around a short
 * life: a block of 4 warps lives for one (sequence, KV head, split) of 5-10 tiles, and each block
 * starts with a dependent chain (block table, then query, then the first tiles, ~2 µs with no
 * bytes of its own in flight), ends with a cross-warp merge through shared memory, and every tile
 * waits at a block-wide barrier for the slowest warp. Here:
 * - a warp takes whole work items (one KV head of one sequence over one key range, all G query
 *   heads of the group as the 16 A rows) and needs no other warp: no block barrier, no merge;
 * - the warp's cp.async ring runs ACROSS items: while it computes the last chunks of one item,
 *   the first chunks of its next item are already in flight, and the next item's descriptor
 *   (query_start, context length) and each next chunk's block-table entries are loaded one step
 *   ahead into registers, so no load waits on another at an item boundary;
 * - the grid is persistent (at most MINB blocks per SM) and items are dealt round-robin: warp gw
 *   takes items gw, gw + warps, ... Items of a batch are of similar size; and each warp can pull
 *   several times its fair share of the bandwidth (S - 1 chunks in flight), so a warp that ends
 *   early leaves its bandwidth to the others rather than idle.
 *
 * Items are ordered KV head fastest, so the warps of one block read the 8 heads' 256-byte rows of
 * the same 16-token blocks at about the same time (the cache keeps a block's heads adjacent).
 * Key ranges: a sequence splits where its context exceeds VK_DECODE_PARTITION keys (1,024: one item
 * per (sequence, KV head) for contexts up to that, so B1's steps need no combine kernel), or
 * where the batch's pairs deal unevenly to the warps (vk_decode_v7_partition_on: 150-255
 * sequences at 8 KV heads); the ranges and the partials' format are version 5's
 * (vk_decode_combine merges them). The grid
 * depends only on num_seqs, KVH and the max context bound, so the launch can be graph-captured.
 *
 * Per warp and stage: TK keys of K and of V, plus 6 ints of chunk metadata (every lane writes the
 * same values and reads back its own write, so the metadata needs no synchronization). Rows are
 * dense, their 16-byte pieces swizzled (mma_tile_off) so that ldmatrix stays conflict-free without
 * version 5's padding to D + 8 elements: 17 KB less shared memory per SM, and 6 % more bandwidth
 * (runs 140-141: 512 sequences x 640 keys 0.461-0.468 ms against 0.494-0.520 with padded rows, the
 * same grid and arithmetic; why was not measured). Default configuration: 16-key
 * chunks, 3 stages, 4 warps, 2 blocks per SM: 8 warps x 3 x 8 KB = 192 KB of shared memory per SM,
 * 8 x 2 x 8 KB = 128 KB in flight per SM (version 5's figure). Fewer warps with deeper rings (4-6
 * warps a SM, 144-160 KB in flight) were 20-50 % slower (run 140): a warp's arithmetic between its
 * chunks needs the other warps to hide it. The variants
 * (VK_DECODE_V7_VARIANT_BASE + i) trade chunk size, stages and warps. */
#include <type_traits>

#include "attention_mma.cuh"
#include "mbarrier.cuh"

using namespace vk;

namespace {

template <int D, int TK, int S, bool SWZ> struct v7_layout {
    static constexpr int LD = SWZ ? D : D + 8;          /* row, elements: dense and swizzled, or padded */
    static constexpr size_t tile = (size_t)TK * LD * 2; /* bytes of one K (or V) chunk */
    static constexpr size_t ring = 2 * S * tile;        /* one warp's K and V stages */
};

enum { V7_FIRST = 1, V7_LAST = 2 };
struct v7_meta {
    int key, end, item, q0, nsplit, flags; /* the chunk's first key, its item's range end, ... */
};

/* The item a warp is issuing: its index (split, sequence, KV head; the split is recovered from it
 * for the partials), sequence, KV head and key range. */
struct v7_item {
    int idx, seq, kvh, start, end, q0, nsplit;
};

/* Where an item's partial result goes: the output row (one range) or the combine kernel's scratch
 * format (unnormalized O, max as a natural logarithm, sum). */
template <typename T, int D> struct v7_dest {
    T *out;    /* nsplit == 1: the head's output row, else NULL */
    float *pp; /* nsplit > 1: the head's partial */
    __device__ v7_dest(const vk_attention_args &a, const v7_meta &m, int head, int max_splits) : out(NULL), pp(NULL) {
        if (m.nsplit == 1) {
            out = (T *)a.out + ((size_t)m.q0 * a.H + head) * D;
        } else {
            const int seq = (m.item / a.KVH) % a.num_seqs, split = m.item / (a.KVH * a.num_seqs);
            pp = (float *)a.scratch + (((size_t)seq * a.H + head) * max_splits + split) * (D + 2);
        }
    }
    __device__ void stats(float m_log2, float l) {
        pp[D] = m_log2 == -INFINITY ? -INFINITY : m_log2 * MMA_LN2;
        pp[D + 1] = l;
    }
};

/* A warp's running state over one item, version 5's layout: the group's heads on the mma's rows. */
template <typename T, int D, int LD> struct v7_rows {
    float o[D / 8][4], mrow, lrow;
    __device__ void reset() {
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
        mrow = -INFINITY;
        lrow = 0.f;
    }
    __device__ void chunk(const uint32_t (&q)[D / 16][2], const T *kt, const T *vt, int key0, int end, float sl2, int lane) {
        mma_decode_chunk<T, D, LD>(q, kt, vt, key0, end, sl2, lane, o, mrow, lrow);
    }
    __device__ void finish(const vk_attention_args &a, const v7_meta &m, int kvh, int G, int max_splits, int lane) {
        const int gr = lane >> 2, t4 = lane & 3;
        lrow += __shfl_xor_sync(0xffffffffu, lrow, 1);
        lrow += __shfl_xor_sync(0xffffffffu, lrow, 2);
        if (gr >= G) return;
        v7_dest<T, D> dst(a, m, kvh * G + gr, max_splits);
        if (dst.out) { /* a non-empty range: lrow >= 1 */
#pragma unroll
            for (int d = 0; d < D / 8; d++)
                *reinterpret_cast<uint32_t *>(dst.out + d * 8 + 2 * t4) = mma_pack2<T>(o[d][0] / lrow, o[d][1] / lrow);
        } else {
#pragma unroll
            for (int d = 0; d < D / 8; d++) *reinterpret_cast<float2 *>(dst.pp + d * 8 + 2 * t4) = make_float2(o[d][0], o[d][1]);
            if (t4 == 0) dst.stats(mrow, lrow);
        }
    }
};

/* The same with both products transposed (mma_decode_chunk_t): dims and keys on the mma's rows,
 * half the mma and half the O registers. */
template <typename T, int D, int LD> struct v7_cols {
    float o[D / 16][4], mrow[2], lrow[2];
    __device__ void reset() {
#pragma unroll
        for (int i = 0; i < D / 16; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
        mrow[0] = mrow[1] = -INFINITY;
        lrow[0] = lrow[1] = 0.f;
    }
    __device__ void chunk(const uint32_t (&q)[D / 16][2], const T *kt, const T *vt, int key0, int end, float sl2, int lane) {
        mma_decode_chunk_t<T, D, LD>(q, kt, vt, key0, end, sl2, lane, o, mrow, lrow);
    }
    __device__ void finish(const vk_attention_args &a, const v7_meta &m, int kvh, int G, int max_splits, int lane) {
        const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
        for (int h = 0; h < 2; h++) { /* a head's sum over the 8 lanes that share t4 */
            lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 4);
            lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 8);
            lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 16);
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            if (2 * t4 + h >= G) continue;
            v7_dest<T, D> dst(a, m, kvh * G + 2 * t4 + h, max_splits);
#pragma unroll
            for (int dm = 0; dm < D / 16; dm++) {
                if (dst.out) {
                    dst.out[dm * 16 + g] = from_f<T>(o[dm][h] / lrow[h]);
                    dst.out[dm * 16 + g + 8] = from_f<T>(o[dm][h + 2] / lrow[h]);
                } else {
                    dst.pp[dm * 16 + g] = o[dm][h];
                    dst.pp[dm * 16 + g + 8] = o[dm][h + 2];
                }
            }
            if (dst.pp && g == 0) dst.stats(mrow[h], lrow[h]);
        }
    }
};

template <typename T, int D, int TK, int S, int WARPS, int MINB, bool BULK_ASKED, bool TRANS, bool SWZ>
__global__ void __launch_bounds__(WARPS * 32, MINB)
decode_v7_kernel(const vk_attention_args a, int max_splits, int part, int total) {
    pdl_allow_dependents(); /* a pdl-launched o_proj may start loading its weights */
    constexpr bool BULK = BULK_ASKED && VK_HAVE_BULK;
    typedef v7_layout<D, TK, S, SWZ> L;
    static_assert(!(BULK && SWZ), "a bulk copy writes a row as it is: no swizzle");
    constexpr int LANES = D / 8;         /* 16-byte pieces per row */
    constexpr int PER = TK * LANES / 32; /* pieces of K (and of V) per lane per chunk */
    static_assert(TK % 16 == 0 && TK <= 32, "chunks of 16 or 32 keys (a lane holds one row's table entry)");
    static_assert(PER * 32 == TK * LANES, "chunk pieces must split evenly over the lanes");
    static_assert(S >= 2, "at least double buffering");
    extern __shared__ __align__(128) unsigned char v7_smem[];
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    T *sk = reinterpret_cast<T *>(v7_smem + w * L::ring); /* [S][TK][LD] */
    T *sv = sk + S * TK * L::LD;                          /* [S][TK][LD] */
    v7_meta *meta = reinterpret_cast<v7_meta *>(v7_smem + WARPS * L::ring) + w * S;
    uint64_t *bar = reinterpret_cast<uint64_t *>(v7_smem + WARPS * (L::ring + S * sizeof(v7_meta))) + w * S;
    const int KVH = a.KVH, ns = a.num_seqs, G = a.H / a.KVH, bs = a.block_size;
    const int nw = gridDim.x * WARPS;
    const bool picked = part == 0;
    if (max_splits > 1) { /* items past the batch's longest real context are empty: stop there */
        /* the contexts are the host's upload for the step, never a kernel's: read (and the ranges
         * cut) before waiting on the RoPE kernel */
        int mx = 0;
        for (int i = lane; i < ns; i += 32) mx = max(mx, a.context_lens[i]);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        if (picked) part = vk_decode_v7_device_part(ns * KVH, nw, mx, max_splits); /* for the real contexts */
        total = (int)min((long)total, (long)ns * KVH * max(1, (mx + part - 1) / part));
    }
    if (BULK) { /* one transaction barrier per stage, completed by its chunk's bytes */
        if (lane < S) bulk_bar_init(bar + lane);
        bulk_fence_init();
        __syncwarp();
    }
    pdl_wait_previous(); /* q and the new keys are the RoPE kernel's; the scratch is free (the
                          * previous layer's combine kernel has read its slot) */
    if (picked && blockIdx.x == 0 && threadIdx.x == 0) *vk_decode_part_slot(a, max_splits) = part; /* for the combine */
    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;

    /* Issue side: the item being issued, the next chunk's first key and where its rows start in the
     * cache (lane r holds row r's element offset, from its block-table entry: one division by the
     * block size per lane and chunk instead of one per 16-byte piece), the raw loads of the next
     * candidate item. */
    v7_item it = {total, 0, 0, 0, 0, 0, 1};
    int key = 0, nq0 = 0, nq1 = 0, nctx = 0;
    long long roff = 0;
    auto load_raw = [&](int idx) {
        if (idx < total) {
            const int seq = (idx / KVH) % ns;
            nq0 = a.query_start[seq];
            nq1 = a.query_start[seq + 1];
            nctx = a.context_lens[seq];
        }
    };
    /* Makes `it` the first valid item at or after idx (stepping by nw), from the raw loads of idx;
     * it.idx = total when none is left. */
    auto enter = [&](int idx) {
        for (; idx < total; idx += nw) {
            const int seq = (idx / KVH) % ns, split = idx / (KVH * ns);
            const int nsplit = (nctx + part - 1) / part;
            if (nq1 - nq0 == 1 && split < nsplit) {
                const int per = (nctx + nsplit - 1) / nsplit;
                it.idx = idx;
                it.seq = seq;
                it.kvh = idx % KVH;
                it.start = split * per;
                it.end = min(nctx, it.start + per); /* may be empty: one masked chunk, partial 0 */
                it.q0 = nq0;
                it.nsplit = nsplit;
                key = it.start;
                load_raw(idx + nw); /* the candidate after it, in flight while this item issues */
                return;
            }
            load_raw(idx + nw);
        }
        it.idx = total;
    };
    auto load_ent = [&]() {
        const int k = key + lane;
        roff = 0;
        if (it.idx < total && lane < TK && k < it.end) {
            const int e = a.block_tables[(size_t)it.seq * a.max_blocks_per_seq + k / bs];
            roff = (long long)((((size_t)e * bs + k % bs) * KVH + it.kvh) * D);
        }
    };
    auto issue = [&](int st) {
        T *dk = sk + st * TK * L::LD, *dv = sv + st * TK * L::LD;
        if (BULK) {
            /* a row of K or V is D x 2 contiguous bytes: one bulk copy per row (lanes: rows of K, then
             * of V), all counted on the stage's barrier; rows past the range are zeroed instead */
            const int valid = min(TK, max(0, it.end - key));
            bulk_fence_proxy(); /* the generic reads of this stage's previous chunk come first */
            if (lane == 0) bulk_bar_expect(bar + st, (uint32_t)(2 * valid * D * 2));
            __syncwarp();
#pragma unroll
            for (int j = 0; j < (2 * TK + 31) / 32; j++) {
                const int row = lane + j * 32, r = row % TK;
                const long long ro = __shfl_sync(0xffffffffu, roff, r);
                if (row >= 2 * TK) continue;
                T *dst = (row < TK ? dk : dv) + r * L::LD;
                if (r < valid) {
                    bulk_copy(dst, (row < TK ? kc : vc) + ro, D * 2, bar + st);
                } else {
#pragma unroll
                    for (int c = 0; c < D / 8; c++) reinterpret_cast<uint4 *>(dst)[c] = make_uint4(0, 0, 0, 0);
                }
            }
        } else {
#pragma unroll
            for (int j = 0; j < PER; j++) {
                const int c = lane + j * 32, row = c / LANES, col = (c % LANES) * 8;
                const long long ro = __shfl_sync(0xffffffffu, roff, row);
                const T *pk = kc, *pv = vc; /* any valid address when zero-filling */
                int n = 0;
                if (key + row < it.end) {
                    pk = kc + ro + col;
                    pv = vc + ro + col;
                    n = 16;
                }
                mma_cp16(dk + mma_tile_off<D, L::LD>(row, col), pk, n);
                mma_cp16(dv + mma_tile_off<D, L::LD>(row, col), pv, n);
            }
        }
        meta[st] = v7_meta{key, it.end, it.idx, it.q0, it.nsplit, (key == it.start ? V7_FIRST : 0) | (key + TK >= it.end ? V7_LAST : 0)};
        key += TK;
        if (key >= it.end) enter(it.idx + nw);
        load_ent(); /* the next chunk's row offsets, used one iteration later */
    };

    load_raw(blockIdx.x * WARPS + w);
    enter(blockIdx.x * WARPS + w);
    load_ent();

    typename std::conditional<TRANS, v7_cols<T, D, L::LD>, v7_rows<T, D, L::LD>>::type acc;
    acc.reset();
    uint32_t qa[D / 16][2];
    const float sl2 = a.scale * MMA_LOG2E;

    int issued = 0;
#pragma unroll
    for (int i = 0; i < S - 1; i++) {
        if (it.idx < total) issue(issued++ % S);
        if (!BULK) mma_commit(); /* empty groups keep the count uniform: wait_group S - 2 always means chunk c */
    }
    for (int c = 0; c < issued; c++) {
        const int st = c % S;
        const v7_meta m = meta[st]; /* this lane's own write */
        const int kvh = m.item % KVH;
        if (m.flags & V7_FIRST) /* the loads fly while the chunk's copies land */
            mma_load_q<T, D>(qa, (const T *)a.q + (size_t)m.q0 * a.q_stride, kvh * G, G, lane);
        if (BULK)
            bulk_bar_wait(bar + st, (c / S) & 1); /* the stage's (c / S)-th use: that phase's bytes are in */
        else
            mma_wait<S - 2>(); /* this lane's copies of chunk c have landed */
        __syncwarp();          /* every lane's have (and the zeroed rows); every lane is done with chunk c - 1's stage */
        if (it.idx < total) issue(issued++ % S);
        if (!BULK) mma_commit();
        const T *tk = sk + st * TK * L::LD, *tv = sv + st * TK * L::LD;
#pragma unroll
        for (int sub = 0; sub < TK / 16; sub++)
            acc.chunk(qa, tk + sub * 16 * L::LD, tv + sub * 16 * L::LD, m.key + sub * 16, m.end, sl2, lane);
        if (m.flags & V7_LAST) {
            acc.finish(a, m, kvh, G, max_splits, lane);
            acc.reset();
        }
    }
    if (!BULK) mma_wait<0>();
}

/* DEV: key ranges cut on the device for the real contexts and the grid's warps
 * (vk_decode_v7_device_part; production since run 153) where the bound needs more than one
 * range (the combine kernel is launched anyway) or the pick cuts at the bound; else one range
 * up to the bound (B1: 512 sequences under 1,024 keys, no partials and no combine kernel).
 * Without DEV: 1,024-key ranges whatever the batch (longer where the stride cap needs). */
template <typename T, int D, int TK, int S, int WARPS, int MINB, bool BULK, bool TRANS = false, bool SWZ = false,
          bool DEV = false>
static cudaError_t launch_v7(const vk_attention_args *a, cudaStream_t s) {
    typedef v7_layout<D, TK, S, SWZ> L;
    const int bound = a->max_context_len > 0 ? a->max_context_len : 1;
    const int floor16 = vk_decode_part_floor(bound, vk_decode_stride_cap(a->num_seqs), 16);
    const int fixed = floor16 > VK_DECODE_PARTITION ? floor16 : VK_DECODE_PARTITION;
    const int sms = a->sms > 0 ? a->sms : vk_sm_count();
    const bool dev = DEV && vk_decode_v7_bound_partition(a->num_seqs, a->KVH, bound, MINB * sms * WARPS) < bound;
    const int part = dev ? 0 : fixed;
    int max_splits = dev ? vk_decode_v7_splits_bound(a->num_seqs, bound) : (bound + fixed - 1) / fixed;
    if (max_splits < 1) max_splits = 1;
    const long total = (long)a->num_seqs * a->KVH * max_splits;
    if (total <= 0) return cudaSuccess;
    if (total > INT32_MAX / 2) return cudaErrorInvalidValue;
    const long want = (total + WARPS - 1) / WARPS;
    const int blocks = (int)(want < (long)MINB * sms ? want : (long)MINB * sms);
    const size_t smem = WARPS * (L::ring + S * (sizeof(v7_meta) + sizeof(uint64_t)));
    void (*k)(const vk_attention_args, int, int, int) = decode_v7_kernel<T, D, TK, S, WARPS, MINB, BULK, TRANS, SWZ>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    if ((e = launch_pdl(k, dim3(blocks), dim3(WARPS * 32), smem, s, a->pdl != 0, *a, max_splits, part, (int)total)) !=
        cudaSuccess)
        return e;
    return max_splits > 1 ? vk_decode_combine(a, max_splits, part, 0, s) : cudaSuccess;
}

/* Configurations (chunk keys, stages, warps, blocks per SM; shared memory per SM at D 128: warps x
 * 2 x S x TK x 256 B swizzled, 272 B padded, of 228 KB). Variant 0 is version 7's own. */
template <typename T, int D> static cudaError_t launch_v7_variant(const vk_attention_args *a, int variant, cudaStream_t s) {
    switch (variant) {
    case 0: return launch_v7<T, D, 16, 3, 4, 2, false, false, true, true>(a, s); /* 8 warps/SM, 128 KB in flight/SM */
    case 1: return launch_v7<T, D, 16, 3, 4, 2, true>(a, s);  /* padded rows by bulk (TMA) row copies */
    case 2: return launch_v7<T, D, 16, 3, 4, 2, false, true>(a, s); /* products transposed (mma_decode_chunk_t) */
    case 3: return launch_v7<T, D, 16, 2, 4, 3, false, true>(a, s); /* transposed: 12 warps/SM, 96 KB in flight/SM */
    case 4: return launch_v7<T, D, 16, 3, 4, 2, false>(a, s); /* variant 0 with padded rows (production until run 141) */
    case 5: return launch_v7<T, D, 16, 3, 4, 2, false, false, true>(a, s); /* variant 0 with 1,024-key ranges (production until run 153) */
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

cudaError_t vk_attention_decode_v7x(const vk_attention_args *a, int variant, cudaStream_t s) {
    if (a->KVH <= 0 || a->block_size <= 0 || a->H % a->KVH || a->H / a->KVH > 8) return cudaErrorInvalidValue;
    if (variant < 0 || variant >= VK_DECODE_V7_VARIANTS) return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_v7_variant<T, 128>(a, variant, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_v7_variant<T, 64>(a, variant, s)));
    return cudaErrorInvalidValue;
}

cudaError_t vk_attention_decode_v7(const vk_attention_args *a, cudaStream_t s) { return vk_attention_decode_v7x(a, 0, s); }

int vk_attention_decode_v7_fills(int num_seqs, int KVH) {
    const long warps = 2L * 4 * vk_sm_count(); /* variant 0: 2 blocks of 4 warps per SM */
    /* 7/8 of the warps busy already beats version 5's block barriers and merges: 128 sequences x
     * 8 KV heads (1,024 items for 1,056 warps) over 640 keys 0.125 ms against 0.148 (run 142) */
    return 8L * num_seqs * KVH >= 7 * warps;
}
