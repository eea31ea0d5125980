/* Paged prefill attention, version 2 (production): flash-attention-2 style on mma.sync.
 *
 * Grid (tiles, H, splits), 128 threads: a block takes 64 query rows of one sequence and one head,
 * 16 rows per warp. K/V tiles of 64 keys are gathered through the block table into shared
 * memory with cp.async, double-buffered (the next tile loads while this one computes). S = Q K^T
 * (Q fragments in registers, read by ldmatrix from the block's query rows, which come into shared
 * memory with the first tile), the online softmax (exp2, row statistics in registers, reduced
 * across the 4 lanes of a quad) and O += P V (P reused straight from the S accumulators as the
 * A operand; V fragments by ldmatrix.trans) all stay in registers: m16n8k16 bf16/fp16 tensor-core
 * instructions with fp32 accumulation.
 * When the grid would not fill the GPU (a few query rows over a long cached context: prefix-cache
 * hits, chunked prefill of a long prompt) the key range is split across blocks; partial results go
 * to scratch and vk_attention merges them (split-K).
 * Wide tiles (vk_attention_args.wide_tiles, picked by vk_prefill_wide for such steps): a block of
 * 8 warps takes the 128 rows of a KV group's wide tile, so each K/V tile is read once for all of
 * them, with one block per SM and a ring of P2W_STAGES tiles, so that a split's keys are all in
 * flight at once instead of one tile at a time (the 64-row blocks were latency-bound there: 0.3
 * eligible warps per scheduler, run 57). Their blocks request the tiles of keys that earlier steps
 * wrote (positions before the sequence's first query) before the wait for the previous kernel.
 * Version 1 (attention_prefill.cu, WMMA with the S and P tiles in shared memory) is kept as the
 * reference alternative: the kernel tests run both. */
#include "attention_mma.cuh"

using namespace vk;

#define P2_BM VK_PREFILL_TILE_M
#define P2_BN 64
/* key splits at most (the partials' scratch: VK_PREFILL_SPLIT_ROWS rows of at least one tile) */
#define P2_MAX_SPLITS (VK_PREFILL_SPLIT_ROWS / VK_PREFILL_TILE_M)
/* wide tiles: warps per block and key tiles in flight (5: 209 KB of shared memory at D = 128) */
#define P2W_WARPS 8
#define P2W_STAGES 5

/* NW warps of 16 query rows each, S key tiles in the ring */
template <int D, int NW = 4, int S = 2> struct p2_layout {
    static constexpr int LD = D + 8; /* padded rows: conflict-free fragment loads */
    static constexpr int BM = 16 * NW, THREADS = 32 * NW;
    static constexpr size_t tile = (size_t)P2_BN * LD * 2;
    static constexpr size_t total = 2 * S * tile; /* K and V, S stages each */
    static constexpr size_t q = (size_t)BM * LD * 2; /* the block's query rows, after the K/V buffers */
    static constexpr size_t smem = total + q;        /* a default-mode block's dynamic shared memory */
    /* a default-mode partial (O, max, sum) every PART floats: 32-byte aligned rows, so a quad's
     * 8-byte stores fill whole sectors (with D + 2 half the sectors were written twice, run 57) */
    static constexpr int PART = D + 8;
};
/* the prefill partials follow the decode kernel's in the scratch, from a 256-byte boundary */
static size_t prefill_scratch_offset(const vk_attention_args *a, int D) {
    return (vk_attention_decode_scratch_bytes(a->num_seqs, a->H, D, a->max_context_len) + 255) & ~(size_t)255;
}

/* Batch-invariant mode sums each row's keys in fixed chunks of VK_INVARIANT_CHUNK keys (absolute
 * positions): a fresh online-softmax state per chunk, the chunk states folded into a total in
 * chunk order. The fold happens either inside the kernel (one block walks all chunks) or in
 * inv_combine_kernel (one block per chunk, for grids too small to fill the GPU); both run exactly
 * this code on exactly these values, so a row's bits do not depend on which one ran. The cases
 * of the fold: an empty chunk changes nothing, the first state is copied, later ones fold. */
enum { INV_FOLD_NONE, INV_FOLD_COPY, INV_FOLD_MIX };
__device__ __forceinline__ int inv_fold_factors(float mt, float mc, float *fa, float *fb, float *mn) {
    if (mc == -INFINITY) return INV_FOLD_NONE;
    if (mt == -INFINITY) {
        *mn = mc;
        return INV_FOLD_COPY;
    }
    *mn = fmaxf(mt, mc);
    *fa = exp2f(mt - *mn);
    *fb = exp2f(mc - *mn);
    return INV_FOLD_MIX;
}
__device__ __forceinline__ float inv_fold(int mode, float t, float c, float fa, float fb) {
    return mode == INV_FOLD_COPY ? c : mode == INV_FOLD_MIX ? __fadd_rn(__fmul_rn(t, fa), __fmul_rn(c, fb)) : t;
}
__device__ __forceinline__ float inv_normalize(float o, float l) { return l > 0.f ? __fdiv_rn(o, l) : 0.f; }

/* NW warps (BM = 16 NW rows a block), a ring of S key tiles: 4 and 2, or the wide tiles' 8 and 5 */
template <typename T, int D, bool INV, bool GRP, int NW = 4, int S = 2>
__global__ void __launch_bounds__(NW * 32)
prefill_mma_kernel(const vk_attention_args a, int nsplit, int chunk, int total_rows) {
    pdl_allow_dependents(); /* a pdl-launched o_proj may start loading its weights */
    /* the 64-row blocks wait here; the ring (wide tiles) after requesting the cached keys */
    if constexpr (S == 2) pdl_wait_previous(); /* q and the new keys are the RoPE kernel's */
    typedef p2_layout<D, NW, S> L;
    constexpr int BM = L::BM, THREADS = L::THREADS;
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, w = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    /* Row r of the block is query token m0 + r / G of the tile's sequence, head head0 + r % G.
     * One head per block (grid y): G = 1. Grouped (GRP: batch-invariant mode, or group_heads): the
     * G = H / KVH heads of one KV group share the block (grid x = tile * KVH + group), so the keys
     * are read once per group, not once per head, and a short query fills the tile's rows. */
    const int G = GRP ? a.H / a.KVH : 1;
    const int tile = GRP ? blockIdx.x / a.KVH : blockIdx.x;
    const int head0 = GRP ? (blockIdx.x % a.KVH) * G : blockIdx.y, split = blockIdx.z;
    const int kvh = head0 / (a.H / a.KVH);
    const int seq = a.prefill_tiles[tile * 2], m0 = a.prefill_tiles[tile * 2 + 1];
    const int q0 = a.query_start[seq], qlen = a.query_start[seq + 1] - q0;
    const int ctx = a.context_lens[seq], pos0 = ctx - qlen;
    const int ntq = min(BM / G, qlen - m0); /* query tokens of this tile */
    const int rows = ntq * G;
    const int kv_end = min(ctx, pos0 + m0 + ntq);
    /* this thread's two rows (16w + g and + 8): token offset in the tile and head */
    const int rt[2] = {(16 * w + g) / G, (16 * w + g + 8) / G};
    const int rh[2] = {head0 + (16 * w + g) % G, head0 + (16 * w + g + 8) % G};
    const int kv_lo = split * chunk, kv_hi = min(kv_end, kv_lo + chunk);
    const float sl2 = a.scale * 1.4426950408889634f;

    /* Q fragments (rows 16w + g and + 8 of the tile): read into registers by ldmatrix from the
     * query rows that the first tile's copies bring into shared memory (16-byte copies of whole
     * rows; the 4-byte fragment loads from global memory used half of each sector, run 57) */
    uint32_t qa[D / 16][4];
    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
    /* INV, one block over several chunks: the folded total (max, sum in registers, O in shared
     * memory past the K/V buffers: [total_rows][D], each lane its own elements; total_rows is 64,
     * or the group size G for decode-only launches) */
    if (INV && rows > total_rows) __trap(); /* a caller's decode_only was wrong: fail the step */
    float mt[2] = {-INFINITY, -INFINITY}, lt[2] = {0.f, 0.f};
    /* ot shares its bytes with the query rows (sq): those are read once, before the first tile's
     * barrier, and a fold comes only after a later tile's */
    float *ot = reinterpret_cast<float *>(smem + L::total);
    auto fold_chunk = [&]() {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 1);
            lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 2);
            float fa = 0.f, fb = 0.f, mn = mt[h];
            const int mode = inv_fold_factors(mt[h], mrow[h], &fa, &fb, &mn);
            const int r = 16 * w + g + h * 8;
            float *row = ot + r * D + 2 * t4;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                if (r < rows) {
                    row[i * 8] = inv_fold(mode, row[i * 8], o[i][2 * h], fa, fb);
                    row[i * 8 + 1] = inv_fold(mode, row[i * 8 + 1], o[i][2 * h + 1], fa, fb);
                }
                o[i][2 * h] = o[i][2 * h + 1] = 0.f;
            }
            lt[h] = inv_fold(mode, lt[h], lrow[h], fa, fb);
            mt[h] = mn;
            mrow[h] = -INFINITY;
            lrow[h] = 0.f;
        }
    };
    bool folded = false;

    const int32_t *bt = a.block_tables + (size_t)seq * a.max_blocks_per_seq;
    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
    constexpr int DV = D / 8, VEC = P2_BN * DV / THREADS;
    /* a power-of-two block size (the usual 16) divides by a shift: the gathers are a large share of
     * the instructions when a block's rows are few */
    const int bsz = a.block_size, bsh = (bsz & (bsz - 1)) == 0 ? __ffs(bsz) - 1 : -1;
    auto load_tile = [&](int buf, int n0) {
        T *sk = (T *)(smem + (size_t)buf * 2 * L::tile), *sv = (T *)(smem + (size_t)buf * 2 * L::tile + L::tile);
        if constexpr (S == 2) {
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                int idx = tid + i * THREADS, r = idx / DV, c = (idx % DV) * 8, tk = n0 + r;
                bool ok = tk < kv_hi;
                const int blk = bsh >= 0 ? tk >> bsh : tk / bsz, slot = tk - blk * bsz;
                size_t off = ok ? (((size_t)bt[blk] * bsz + slot) * a.KVH + kvh) * D + c : 0;
                mma_cp16(sk + r * L::LD + c, kc + off, ok ? 16 : 0);
                mma_cp16(sv + r * L::LD + c, vc + off, ok ? 16 : 0);
            }
        } else {
            /* the ring's tiles: the block numbers of a tile's rows all read first, in flight
             * together (each copy's "memory" clobber would otherwise hold the next read back until
             * the copy before it was issued); the 64-row blocks keep the code above: this form
             * made them 5-10 % slower on long prompts (runs 117-121) */
            constexpr int RS = THREADS / DV;
            static_assert(THREADS % DV == 0, "a thread's rows of a tile are RS apart");
            const int r0 = tid / DV, col = (tid % DV) * 8;
            int32_t pb[VEC], sl[VEC];
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                const int tk = n0 + r0 + i * RS;
                const int blk = bsh >= 0 ? tk >> bsh : tk / bsz;
                sl[i] = tk < kv_hi ? tk - blk * bsz : -1;
                pb[i] = tk < kv_hi ? bt[blk] : 0;
            }
#pragma unroll
            for (int i = 0; i < VEC; i++) {
                const bool ok = sl[i] >= 0;
                const size_t off = ok ? (((size_t)pb[i] * bsz + sl[i]) * a.KVH + kvh) * D + col : 0;
                mma_cp16(sk + (r0 + i * RS) * L::LD + col, kc + off, ok ? 16 : 0);
                mma_cp16(sv + (r0 + i * RS) * L::LD + col, vc + off, ok ? 16 : 0);
            }
        }
    };

    T *sq = (T *)(smem + L::total);
    const T *q = (const T *)a.q;
    if constexpr (S == 2) {
        /* the query rows by 16-byte copies of whole rows with the first tile (4-byte fragment loads
         * from global memory used half of each sector, run 57) */
#pragma unroll
        for (int i = 0; i < BM * DV / THREADS; i++) {
            const int idx = tid + i * THREADS, r = idx / DV, c = (idx % DV) * 8;
            const bool ok = r < rows;
            const T *src = ok ? q + (size_t)(q0 + m0 + r / G) * a.q_stride + (head0 + r % G) * D + c : q;
            mma_cp16(sq + r * L::LD + c, src, ok ? 16 : 0);
        }
        mma_commit();
        if (kv_lo < kv_hi) load_tile(0, kv_lo);
        mma_commit();
        mma_wait<1>(); /* the query rows (the first tile may still be on its way) */
    } else {
        /* The ring's first S - 1 tiles, a commit group each (empty past the range). Keys before
         * the first query (pos0) were written by earlier steps, which the host waited for, and
         * the block table, lengths and tiles by the step's uploads, which the step's first kernel
         * (an ordinary launch) followed: their tiles are requested before the wait. */
        int j = 0;
        for (; j < S - 1 && kv_lo + (j + 1) * P2_BN <= pos0; j++) {
            if (kv_lo + j * P2_BN < kv_hi) load_tile(j, kv_lo + j * P2_BN);
            mma_commit();
        }
        pdl_wait_previous(); /* q and the new keys are the RoPE kernel's */
        for (; j < S - 1; j++) {
            if (kv_lo + j * P2_BN < kv_hi) load_tile(j, kv_lo + j * P2_BN);
            mma_commit();
        }
        /* the query rows: 16-byte loads, all before any store (a store may alias a later load
         * for the compiler, which then waits out each load in turn) */
        constexpr int QV = BM * DV / THREADS;
        uint4 v[QV];
#pragma unroll
        for (int i = 0; i < QV; i++) {
            const int idx = tid + i * THREADS, r = idx / DV, c = (idx % DV) * 8;
            v[i] = r < rows ? *(const uint4 *)(q + (size_t)(q0 + m0 + r / G) * a.q_stride + (head0 + r % G) * D + c)
                            : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int i = 0; i < QV; i++) {
            const int idx = tid + i * THREADS;
            *(uint4 *)(sq + (idx / DV) * L::LD + (idx % DV) * 8) = v[i];
        }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) /* A fragments: matrices (rows +0..7 | +8..15) x (k +0..7 | +8..15) */
        mma_ldsm_x4(qa[kk], sq + (16 * w + ((lane >> 3) & 1) * 8 + (lane & 7)) * L::LD + kk * 16 + (lane >> 4) * 8);
    int buf = 0; /* the stage of key tile n0; the tile S - 1 ahead loads into the stage read last */
    for (int n0 = kv_lo; n0 < kv_hi; n0 += P2_BN) {
        if (n0 + (S - 1) * P2_BN < kv_hi) load_tile(S == 2 ? buf ^ 1 : (buf + S - 1) % S, n0 + (S - 1) * P2_BN);
        mma_commit();
        mma_wait<S - 1>();
        __syncthreads();
        const T *sk = (const T *)(smem + (size_t)buf * 2 * L::tile), *sv = (const T *)(smem + (size_t)buf * 2 * L::tile + L::tile);
        const int next = S == 2 ? buf ^ 1 : (buf + 1) % S;
        if (16 * w >= rows) { /* no query rows in this warp (a short last tile, a decode row): it only loads */
            __syncthreads();
            buf = next;
            continue;
        }
        if (INV && n0 > kv_lo && n0 % VK_INVARIANT_CHUNK == 0) { /* a chunk ends: into the total */
            fold_chunk();
            folded = true;
        }

        float s[P2_BN / 8][4];
#pragma unroll
        for (int nt = 0; nt < P2_BN / 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
            for (int nt = 0; nt < P2_BN / 8; nt += 2) {
                /* one ldmatrix.x4 gives the K fragments of two key groups: matrices (keys +0..7 | +8..15)
                 * x (dims +0..7 | +8..15); lane (g, t) gets K[key g][dim 2t, 2t+1] = b0 / b1 */
                uint32_t b[4];
                int mi = lane >> 3, r = lane & 7;
                mma_ldsm_x4(b, sk + (nt * 8 + (mi >> 1) * 8 + r) * L::LD + kk * 16 + (mi & 1) * 8);
                mma_16816<T>(s[nt], qa[kk], b[0], b[1]);
                mma_16816<T>(s[nt + 1], qa[kk], b[2], b[3]);
            }

        /* mask, scale (log2 domain), row maxima over the quad. A tile inside every row's range
         * (all keys before the warp's first query token, all rows real: most tiles of a long
         * context) skips the per-element mask; the test is uniform over the warp. __fmul_rn in
         * both: a product the compiler may not fuse into exp2f's subtraction, so that a row gets
         * the same bits on either path (batch-invariant mode depends on it). */
        float mx[2] = {-INFINITY, -INFINITY};
        if (16 * w + 16 <= rows && n0 + P2_BN <= kv_hi && n0 + P2_BN - 1 <= pos0 + m0 + (16 * w) / G) {
#pragma unroll
            for (int nt = 0; nt < P2_BN / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[nt][e] = __fmul_rn(s[nt][e], sl2);
                    mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
                }
        } else {
#pragma unroll
            for (int nt = 0; nt < P2_BN / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int r = 16 * w + g + (e >> 1) * 8, key = n0 + nt * 8 + 2 * t4 + (e & 1);
                    bool ok = r < rows && key < kv_hi && key <= pos0 + m0 + rt[e >> 1];
                    s[nt][e] = ok ? __fmul_rn(s[nt][e], sl2) : -INFINITY;
                    mx[e >> 1] = fmaxf(mx[e >> 1], s[nt][e]);
                }
        }
        float alpha[2], mu[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
            mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
            float mn = fmaxf(mrow[h], mx[h]);
            mu[h] = mn == -INFINITY ? 0.f : mn;
            alpha[h] = mrow[h] == -INFINITY ? (mn == -INFINITY ? 1.f : 0.f) : exp2f(mrow[h] - mn);
            mrow[h] = mn;
        }
        uint32_t pa[P2_BN / 16][4];
        mma_prefill_probs<T, P2_BN, D>(s, pa, lrow, o, alpha, [&](float x, int h) { return exp2f(x - mu[h]); });
        /* O += P V */
#pragma unroll
        for (int kc2 = 0; kc2 < P2_BN / 16; kc2++) {
            /* pa[kc2] holds columns 16 kc2 .. + 15 as the A operand: (row g | g + 8) x (2t, 2t+1 | +8) */
            uint32_t A[4] = {pa[kc2][0], pa[kc2][1], pa[kc2][2], pa[kc2][3]};
#pragma unroll
            for (int dn = 0; dn < D / 16; dn++) {
                uint32_t b[4];
                int mi = lane >> 3, r = lane & 7;
                mma_ldsm_x4_trans(b, sv + (kc2 * 16 + (mi & 1) * 8 + r) * L::LD + dn * 16 + (mi >> 1) * 8);
                mma_16816<T>(o[2 * dn], A, b[0], b[1]);
                mma_16816<T>(o[2 * dn + 1], A, b[2], b[3]);
            }
        }
        __syncthreads(); /* everyone is done with this buffer before it is refilled */
        buf = next;
    }

    if (INV) {
        if (16 * w < rows) {
            if (folded) fold_chunk(); /* the last chunk; the total is then in ot, mt, lt */
            else
                for (int h = 0; h < 2; h++) {
                    lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 1);
                    lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 2);
                }
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int r = 16 * w + g + h * 8;
            if (r >= rows) continue;
            const float *row = ot + r * D + 2 * t4;
            if (nsplit == 1) {
                const float l = folded ? lt[h] : lrow[h];
                T *out = (T *)a.out + ((size_t)(q0 + m0 + rt[h]) * a.H + rh[h]) * D;
#pragma unroll
                for (int i = 0; i < D / 8; i++) {
                    const float x0 = folded ? row[i * 8] : o[i][2 * h], x1 = folded ? row[i * 8 + 1] : o[i][2 * h + 1];
                    *(uint32_t *)(out + i * 8 + 2 * t4) = mma_pack2<T>(inv_normalize(x0, l), inv_normalize(x1, l));
                }
            } else { /* this chunk's state, raw (log2-domain max), for inv_combine_kernel */
                float *part = (float *)a.scratch + (((size_t)blockIdx.x * BM + r) * nsplit + split) * (D + 2);
#pragma unroll
                for (int i = 0; i < D / 8; i++) {
                    part[i * 8 + 2 * t4] = o[i][2 * h];
                    part[i * 8 + 2 * t4 + 1] = o[i][2 * h + 1];
                }
                if (t4 == 0) {
                    part[D] = mrow[h];
                    part[D + 1] = lrow[h];
                }
            }
        }
    } else {
        mma_prefill_store<T, D, L::PART>(a, o, mrow, lrow, rows, w, lane, (size_t)(q0 + m0), rt, rh, tile, BM, nsplit, split);
    }
}

/* Merges the key splits of one (query token, head): a block per pair that has a token (grid x:
 * tile x tile_tokens; a tile's partials every bm rows), a thread per element. The splits'
 * maxima, sums and weights go through shared memory once; then each thread reads its element of
 * every split, loads issued several at a time (no branch between them: an empty split has O = 0,
 * l = 0 and weight 0, which adds 0). */
template <typename T, int D>
__global__ void prefill_combine_kernel(const vk_attention_args a, int nsplit, int tile_tokens, int bm) {
    static_assert(P2_MAX_SPLITS <= D, "a thread per split (the block has D threads)");
    pdl_allow_dependents(); /* a pdl-launched o_proj may start loading its weights */
    pdl_wait_previous();    /* the partials are the attention kernel's */
    __shared__ float wgt[P2_MAX_SPLITS], mx[P2_MAX_SPLITS], ls[P2_MAX_SPLITS];
    __shared__ float total;
    const int tile = blockIdx.x / tile_tokens, r = blockIdx.x % tile_tokens, head = blockIdx.y;
    const int seq = a.prefill_tiles[tile * 2], m0 = a.prefill_tiles[tile * 2 + 1];
    const int q0 = a.query_start[seq], qlen = a.query_start[seq + 1] - q0;
    if (m0 + r >= qlen) return;
    constexpr int PART = p2_layout<D>::PART;
    const float *part = (const float *)a.scratch + (((size_t)tile * bm + r) * a.H + head) * (size_t)nsplit * PART;
    const int i = threadIdx.x;
    if (i < nsplit) {
        mx[i] = part[i * PART + D];
        ls[i] = part[i * PART + D + 1];
    }
    __syncthreads();
    if (i < nsplit) {
        float m = -INFINITY;
        for (int j = 0; j < nsplit; j++) m = fmaxf(m, mx[j]);
        wgt[i] = mx[i] == -INFINITY ? 0.f : __expf(mx[i] - m);
    }
    __syncthreads();
    if (i == 0) { /* the sum in split order, as the output's */
        float t = 0.f;
        for (int j = 0; j < nsplit; j++) t += ls[j] * wgt[j];
        total = t;
    }
    __syncthreads();
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.f;
#pragma unroll 8
        for (int j = 0; j < nsplit; j++) acc += part[j * PART + d] * wgt[j];
        ((T *)a.out)[((size_t)(q0 + m0 + r) * a.H + head) * D + d] = from_f<T>(total > 0.f ? acc / total : 0.f);
    }
}

/* Batch-invariant chunks computed by separate blocks, folded in chunk order: one block per
 * (attention block, row), a thread per element. */
template <typename T, int D>
__global__ void inv_combine_kernel(const vk_attention_args a, int nsplit) {
    const int blk = blockIdx.x / P2_BM, r = blockIdx.x % P2_BM;
    const int G = a.H / a.KVH, tile = blk / a.KVH, head = (blk % a.KVH) * G + r % G;
    const int seq = a.prefill_tiles[tile * 2], m0 = a.prefill_tiles[tile * 2 + 1];
    const int q0 = a.query_start[seq], qlen = a.query_start[seq + 1] - q0;
    if (m0 + r / G >= qlen || r / G >= P2_BM / G) return;
    const float *part = (const float *)a.scratch + ((size_t)blockIdx.x * nsplit) * (D + 2);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float mt = -INFINITY, lt = 0.f, ot = 0.f;
        for (int z = 0; z < nsplit; z++) {
            const float *p = part + (size_t)z * (D + 2);
            float fa = 0.f, fb = 0.f, mn = mt;
            const int mode = inv_fold_factors(mt, p[D], &fa, &fb, &mn);
            ot = inv_fold(mode, ot, p[d], fa, fb);
            lt = inv_fold(mode, lt, p[D + 1], fa, fb);
            mt = mn;
        }
        ((T *)a.out)[((size_t)(q0 + m0 + r / G) * a.H + head) * D + d] = from_f<T>(inv_normalize(ot, lt));
    }
}

/* Splits the key range when the blocks (tiles x heads, or x KV groups) would leave the GPU idle. */
static int choose_splits(const vk_attention_args *a, int *chunk) {
    /* want: two blocks per SM (128 threads at ~220 registers; held to 168 for three, the split
     * launches measured slower: run 106). Rounding the split down to stay in one wave measured
     * no faster on B4's 32 queries over 4,128 keys (run 50: 46 us against 42-44 rounding up), so
     * it rounds up. */
    int blocks = a->num_prefill_tiles * (a->group_heads ? a->KVH : a->H), slots = 2 * vk_sm_count();
    int max_ctx = a->max_context_len > 0 ? a->max_context_len : 1;
    int nsplit = 1;
    if (blocks < slots && max_ctx > 4 * P2_BN) { /* default mode only: launch_inv has its own chunks */
        nsplit = (slots + blocks - 1) / blocks;
        int cap = max_ctx / (2 * P2_BN); /* at least two key tiles per split */
        if (nsplit > cap) nsplit = cap;
        if (nsplit > P2_MAX_SPLITS) nsplit = P2_MAX_SPLITS;
        if ((size_t)a->num_prefill_tiles * P2_BM * nsplit > VK_PREFILL_SPLIT_ROWS) nsplit = 1;
        if (nsplit < 1) nsplit = 1;
    }
    int c = (max_ctx + nsplit - 1) / nsplit;
    *chunk = (c + P2_BN - 1) / P2_BN * P2_BN;
    return nsplit;
}

/* Wide tiles, one block per SM: the splits of every (tile, KV group) in one wave (a second wave
 * of whole blocks would cost a whole block's time), each split whole 64-key tiles. */
static int choose_splits_wide(const vk_attention_args *a, int bm, int *chunk) {
    const int blocks = a->num_prefill_tiles * a->KVH, sms = vk_sm_count();
    const int ktiles = ((a->max_context_len > 0 ? a->max_context_len : 1) + P2_BN - 1) / P2_BN;
    int nsplit = blocks < sms ? sms / blocks : 1;
    if (nsplit > ktiles) nsplit = ktiles;
    if (nsplit > P2_MAX_SPLITS) nsplit = P2_MAX_SPLITS;
    const int rows_cap = VK_PREFILL_SPLIT_ROWS / (a->num_prefill_tiles * bm); /* the partials' scratch */
    if (nsplit > rows_cap) nsplit = rows_cap > 1 ? rows_cap : 1;
    const int per = (ktiles + nsplit - 1) / nsplit;
    *chunk = per * P2_BN;
    return (ktiles + per - 1) / per;
}

extern "C" int vk_prefill_wide_supported(int D) {
    if (D != 64 && D != 128) return 0;
    int dev = 0, major = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
        return 0;
    const size_t need =
        D == 128 ? p2_layout<128, P2W_WARPS, P2W_STAGES>::smem : p2_layout<64, P2W_WARPS, P2W_STAGES>::smem;
    return major >= 8 && (size_t)optin >= need;
}

extern "C" int vk_prefill_wide(const int32_t *query_start, int num_seqs, int H, int KVH, int max_context_len) {
    const int tt = vk_prefill_tile_tokens(VK_TILES_GROUP | VK_TILES_WIDE, H, KVH);
    if (tt <= 0 || max_context_len < 8 * P2_BN) return 0;
    long tiles = 0;
    for (int i = 0; i < num_seqs; i++) {
        const int len = query_start[i + 1] - query_start[i];
        if (len > 1) tiles += (len + tt - 1) / tt;
    }
    return tiles > 0 && tiles * KVH * 2 <= vk_sm_count();
}

size_t vk_attention_prefill_scratch_bytes(int H, int D) {
    /* + 256: the partials start on a 256-byte boundary (prefill_scratch_offset) */
    return sizeof(float) * (size_t)VK_PREFILL_SPLIT_ROWS * H * (D + 8) + 256;
}

/* Batch-invariant launch: one block per (tile, KV group); the chunks of a row in separate blocks
 * (folded by inv_combine_kernel) when the grid is small and the partials fit the scratch, else
 * folded inside the block (O's total in shared memory when a row can span several chunks). */
template <typename T, int D>
static cudaError_t launch_inv(const vk_attention_args *a, void *scratch, cudaStream_t s) {
    typedef p2_layout<D> L;
    const int total_rows = a->decode_only ? a->H / a->KVH : P2_BM;
    const size_t total = (size_t)total_rows * D * sizeof(float), smem = L::total;
    const size_t most = (size_t)P2_BM * D * sizeof(float) > L::q ? (size_t)P2_BM * D * sizeof(float) : L::q;
    cudaError_t e = cudaFuncSetAttribute(prefill_mma_kernel<T, D, true, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)(smem + most));
    if (e != cudaSuccess) return e;
    const int max_ctx = a->max_context_len > 0 ? a->max_context_len : 1;
    const int chunks = (max_ctx + VK_INVARIANT_CHUNK - 1) / VK_INVARIANT_CHUNK, blocks = a->num_prefill_tiles * a->KVH;
    const bool par = chunks > 1 && blocks < 264 &&
                     (size_t)blocks * P2_BM * chunks <= (size_t)VK_PREFILL_SPLIT_ROWS * a->H; /* the scratch */
    vk_attention_args b = *a;
    b.scratch = scratch;
    const int nsplit = par ? chunks : 1;
    const size_t extra = chunks > 1 && !par && total > L::q ? total : L::q; /* the query rows, or O's folded total */
    prefill_mma_kernel<T, D, true, true><<<dim3(blocks, 1, nsplit), L::THREADS, smem + extra, s>>>(
        b, nsplit, par ? VK_INVARIANT_CHUNK : 1 << 30, total_rows);
    if ((e = cudaGetLastError()) != cudaSuccess || !par) return e;
    inv_combine_kernel<T, D><<<blocks * P2_BM, D, 0, s>>>(b, nsplit);
    return cudaGetLastError();
}

/* The merge of a split launch's partials (none for one split): tt query tokens a tile, its rows
 * bm apart in the scratch. */
template <typename T, int D>
static cudaError_t launch_combine(const vk_attention_args *b, int nsplit, int tt, int bm, cudaStream_t s) {
    if (nsplit == 1) return cudaSuccess;
    return launch_pdl(prefill_combine_kernel<T, D>, dim3(b->num_prefill_tiles * tt, b->H), dim3(D), 0, s, b->pdl != 0,
                      *b, nsplit, tt, bm);
}

/* The default mode's launch: NW warps, a ring of S tiles; the splits' partials merged by
 * prefill_combine_kernel. */
template <typename T, int D, bool GRP, int NW, int S>
static cudaError_t launch_split(const vk_attention_args *a, void *scratch, int nsplit, int chunk, cudaStream_t s) {
    typedef p2_layout<D, NW, S> L;
    auto kern = prefill_mma_kernel<T, D, false, GRP, NW, S>;
    const size_t smem = L::smem;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    vk_attention_args b = *a;
    b.scratch = scratch;
    const dim3 grid = GRP ? dim3(a->num_prefill_tiles * a->KVH, 1, nsplit) : dim3(a->num_prefill_tiles, a->H, nsplit);
    if ((e = launch_pdl(kern, grid, dim3(L::THREADS), smem, s, a->pdl != 0, b, nsplit, chunk, (int)L::BM)) !=
        cudaSuccess)
        return e;
    return launch_combine<T, D>(&b, nsplit, GRP ? L::BM / (a->H / a->KVH) : L::BM, L::BM, s);
}

/* Wide tiles on wgmma (attention_prefill_wg.cu), their partials merged as the mma.sync ones. */
template <typename T, int D>
static cudaError_t launch_wide_wg(const vk_attention_args *a, void *scratch, int nsplit, int chunk, cudaStream_t s) {
    constexpr int BM = 16 * P2W_WARPS;
    vk_attention_args b = *a;
    b.scratch = scratch;
    cudaError_t e = vk_attention_prefill_wide_wg(&b, nsplit, chunk, s);
    if (e != cudaSuccess) return e;
    return launch_combine<T, D>(&b, nsplit, BM / (a->H / a->KVH), BM, s);
}

template <typename T, int D>
static cudaError_t launch_p2(const vk_attention_args *a, cudaStream_t s) {
    /* the decode kernel's partials live at the start of scratch; prefill partials after them */
    void *scratch = (char *)a->scratch + prefill_scratch_offset(a, D);
    if (a->batch_invariant) return launch_inv<T, D>(a, scratch, s);
    int chunk, nsplit;
    if (a->wide_tiles) {
        nsplit = choose_splits_wide(a, 16 * P2W_WARPS, &chunk);
        /* the same tiles on mma.sync where the block size does not suit the tensor copies */
        if (a->wide_tiles == VK_WIDE_WGMMA && vk_attention_prefill_wide_wg_fits(a->block_size))
            return launch_wide_wg<T, D>(a, scratch, nsplit, chunk, s);
        return launch_split<T, D, true, P2W_WARPS, P2W_STAGES>(a, scratch, nsplit, chunk, s);
    }
    nsplit = choose_splits(a, &chunk);
    return a->group_heads ? launch_split<T, D, true, 4, 2>(a, scratch, nsplit, chunk, s)
                          : launch_split<T, D, false, 4, 2>(a, scratch, nsplit, chunk, s);
}

cudaError_t vk_attention_prefill_v2(const vk_attention_args *a, cudaStream_t s) {
    if (a->num_prefill_tiles <= 0) return cudaSuccess;
    if (a->H % a->KVH || ((a->batch_invariant || a->group_heads) && a->H / a->KVH > VK_PREFILL_MAX_GROUP))
        return cudaErrorInvalidValue;
    if (a->wide_tiles && (!a->group_heads || a->batch_invariant || a->wide_tiles > VK_WIDE_WGMMA || a->wide_tiles < 0))
        return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_p2<T, 128>(a, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_p2<T, 64>(a, s)));
    return cudaErrorInvalidValue;
}
