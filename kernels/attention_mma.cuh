/* Tensor-core building blocks of the attention kernels (decode versions 5 and 7, prefill version 2): cp.async, ldmatrix,
 * mma.sync m16n8k16 (bf16 / fp16 in, fp32 accumulation) and the online-softmax step over one
 * 16-key chunk held in shared memory. One copy, so the two kernels cannot drift apart. */
#pragma once
#include "attention.cuh"

namespace vk {

__device__ __forceinline__ void mma_cp16(void *smem, const void *gmem, int src_bytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    /* src_bytes 0: the 16 bytes are zero-filled and nothing is read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void mma_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void mma_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void mma_ldsm_x4(uint32_t r[4], const void *smem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}
__device__ __forceinline__ void mma_ldsm_x4_trans(uint32_t r[4], const void *smem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s)
                 : "memory");
}

/* c += a b for one m16n8k16 tile; a: 4 registers (rows g / g + 8, k 2t.. / 2t + 8..), b: 2. */
template <typename T> __device__ __forceinline__ void mma_16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma_16816<__nv_bfloat16>(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma_16816<__half>(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* The same with the A fragment as an array. */
template <typename T> __device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    mma_16816<T>(c, a[0], a[1], a[2], a[3], b0, b1);
}

/* Two floats rounded to the storage type, packed low | high (an A-fragment register). */
template <typename T> __device__ __forceinline__ uint32_t mma_pack2(float lo, float hi) {
    T a = from_f<T>(lo), b = from_f<T>(hi);
    uint16_t ua = *reinterpret_cast<uint16_t *>(&a), ub = *reinterpret_cast<uint16_t *>(&b);
    return (uint32_t)ua | ((uint32_t)ub << 16);
}

constexpr float MMA_LOG2E = 1.4426950408889634f, MMA_LN2 = 0.6931471805599453f;

/* The prefill kernels' tile step after the scores' row maxima (mu: this tile's subtrahend per
 * row half, alpha: the old state's factor): P = prob(score, row half) for the warp's 16 rows x BN
 * keys, packed as the A fragments of the P V product (key groups of 16), the rows' partial sums
 * into lrow (this lane's; the quad adds up at the end), O rescaled unless no row of the warp found
 * a new maximum. One copy for the mma.sync and the wgmma kernels: prob is each one's exp2. */
template <typename T, int BN, int D, typename P>
__device__ __forceinline__ void mma_prefill_probs(const float (&s)[BN / 8][4], uint32_t (&pa)[BN / 16][4], float (&lrow)[2],
                                                  float (&o)[D / 8][4], const float (&alpha)[2], P prob) {
    float ls[2] = {0.f, 0.f};
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) {
        const float p0 = prob(s[nt][0], 0), p1 = prob(s[nt][1], 0);
        const float p2 = prob(s[nt][2], 1), p3 = prob(s[nt][3], 1);
        ls[0] += p0 + p1;
        ls[1] += p2 + p3;
        pa[nt / 2][(nt & 1) * 2 + 0] = mma_pack2<T>(p0, p1);
        pa[nt / 2][(nt & 1) * 2 + 1] = mma_pack2<T>(p2, p3);
    }
    lrow[0] = lrow[0] * alpha[0] + ls[0];
    lrow[1] = lrow[1] * alpha[1] + ls[1];
    if (!__all_sync(0xffffffffu, alpha[0] == 1.f && alpha[1] == 1.f)) /* no new maximum: O stays */
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            o[i][0] *= alpha[0];
            o[i][1] *= alpha[0];
            o[i][2] *= alpha[1];
            o[i][3] *= alpha[1];
        }
}

/* The prefill kernels' rows after the last key tile (default mode): the warp's rows 16 w + g and
 * + 8 (those below `rows`), token tok0 + rt[h] and head rh[h], normalized into a.out when the keys
 * were not split, else as partials for prefill_combine_kernel -- unnormalized O, the max in
 * natural log (mrow is in the log2 domain), the sum -- at the scratch row ((tile * bm + rt[h]) * H
 * + rh[h]) * nsplit + split of PART floats. Reduces lrow over the quad first. */
template <typename T, int D, int PART>
__device__ __forceinline__ void mma_prefill_store(const vk_attention_args &a, const float (&o)[D / 8][4], const float (&mrow)[2],
                                                  float (&lrow)[2], int rows, int w, int lane, size_t tok0, const int (&rt)[2],
                                                  const int (&rh)[2], int tile, int bm, int nsplit, int split) {
    const int g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int h = 0; h < 2; h++) {
        lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 1);
        lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 2);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        if (16 * w + g + h * 8 >= rows) continue;
        const size_t tok = tok0 + rt[h];
        if (nsplit == 1) {
            const float inv = lrow[h] > 0.f ? 1.f / lrow[h] : 0.f;
            T *out = (T *)a.out + (tok * a.H + rh[h]) * D;
#pragma unroll
            for (int i = 0; i < D / 8; i++)
                *(uint32_t *)(out + i * 8 + 2 * t4) = mma_pack2<T>(o[i][2 * h] * inv, o[i][2 * h + 1] * inv);
        } else {
            float *part = (float *)a.scratch + (((size_t)tile * bm + rt[h]) * a.H + rh[h]) * (size_t)nsplit * PART +
                          (size_t)split * PART;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                part[i * 8 + 2 * t4] = o[i][2 * h];
                part[i * 8 + 2 * t4 + 1] = o[i][2 * h + 1];
            }
            if (t4 == 0) {
                part[D] = mrow[h] == -INFINITY ? -INFINITY : mrow[h] * MMA_LN2;
                part[D + 1] = lrow[h];
            }
        }
    }
}

/* The query fragments of one decode row: A operand rows gr = query heads head0 + gr (zero for
 * gr >= G); rows gr + 8 are always zero (G <= 8), so their registers are the constant 0. */
template <typename T, int D>
__device__ __forceinline__ void mma_load_q(uint32_t (&qa)[D / 16][2], const T *q_row, int head0, int G, int lane) {
    const int gr = lane >> 2, t4 = lane & 3;
    const T *qp = q_row + ((size_t)head0 + gr) * D + 2 * t4;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        qa[kk][0] = gr < G ? *reinterpret_cast<const uint32_t *>(qp + kk * 16) : 0u;
        qa[kk][1] = gr < G ? *reinterpret_cast<const uint32_t *>(qp + kk * 16 + 8) : 0u;
    }
}

/* Element offset of (row, col) in a tile of K or V rows in shared memory, col a multiple of 8.
 * LD > D: rows padded to LD elements, which spreads an ldmatrix's 8 rows over the banks. LD == D:
 * dense rows, the 16-byte pieces of each 128-byte half-row permuted by XOR with row % 8, which
 * does the same without the padding (so more stages fit in shared memory). Writers and readers
 * of a tile must use the same LD. */
template <int D, int LD> __device__ __forceinline__ int mma_tile_off(int row, int col) {
    static_assert(LD == D || LD >= D + 8, "dense (swizzled) or padded rows");
    if constexpr (LD == D)
        return row * D + ((((col >> 3) ^ row) & 7) | ((col >> 3) & ~7)) * 8;
    else
        return row * LD + col;
}

/* One 16-key chunk of flash-decoding for the 16 A rows (the GQA group's heads) held by a warp:
 * S = Q K^T on the tensor cores, an online-softmax step in the exp2 domain (scores scaled by
 * sl2 = scale x log2 e), O += P V. kt / vt: the chunk's first K / V row in shared memory, laid out
 * by mma_tile_off<D, LD>; key0: the absolute position of row 0 (rows at or past `end` are masked; their
 * V rows must be finite, e.g. zero-filled). mrow: row gr's running max (log2 domain), lrow: this
 * lane's partial sum of row gr (the quad's 4 lanes add up at the end). Fragment layouts: S's
 * element e is row gr (e < 2) or gr + 8, key 2 t4 + (e & 1) (+ 8 in s[1]); K's B fragments by
 * ldmatrix (K rows are D-contiguous: the non-transposed ldmatrix gives the col-major fragment),
 * V's by ldmatrix.trans; P is rounded to the storage type and reused from S's accumulators as the
 * A operand. */
template <typename T, int D, int LD>
__device__ __forceinline__ void mma_decode_chunk(const uint32_t (&qa)[D / 16][2], const T *kt, const T *vt, int key0, int end,
                                                 float sl2, int lane, float (&o)[D / 8][4], float &mrow, float &lrow) {
    const int t4 = lane & 3, mi = lane >> 3, r8 = lane & 7; /* ldmatrix: which 8x8 matrix this lane addresses, which row */
    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    /* one ldmatrix.x4 gives matrices (keys +0..7 | +8..15) x (dims +0..7 | +8..15): b[0], b[1] the
     * first key group's fragment, b[2], b[3] the second */
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t b[4];
        mma_ldsm_x4(b, kt + mma_tile_off<D, LD>((mi >> 1) * 8 + r8, kk * 16 + (mi & 1) * 8));
        mma_16816<T>(s[0], qa[kk][0], 0u, qa[kk][1], 0u, b[0], b[1]);
        mma_16816<T>(s[1], qa[kk][0], 0u, qa[kk][1], 0u, b[2], b[3]);
    }
    /* the row's 16 scores live in the quad's 4 lanes (4 each): reduced with 2 shuffles */
    const int k = key0 + 2 * t4;
    float x[4];
    x[0] = k < end ? s[0][0] * sl2 : -INFINITY;
    x[1] = k + 1 < end ? s[0][1] * sl2 : -INFINITY;
    x[2] = k + 8 < end ? s[1][0] * sl2 : -INFINITY;
    x[3] = k + 9 < end ? s[1][1] * sl2 : -INFINITY;
    float mx = fmaxf(fmaxf(x[0], x[1]), fmaxf(x[2], x[3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(mrow, mx);
    const float mu = mn == -INFINITY ? 0.f : mn; /* no valid key yet: every p is 0 */
    const float alpha = mrow == -INFINITY ? (mn == -INFINITY ? 1.f : 0.f) : exp2f(mrow - mn);
    mrow = mn;
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; e++) p[e] = exp2f(x[e] - mu);
    lrow = lrow * alpha + (p[0] + p[1]) + (p[2] + p[3]);
    /* P as the A operand (row gr: keys 2 t4.. and 2 t4 + 8..; rows gr + 8 zero) */
    const uint32_t pa0 = mma_pack2<T>(p[0], p[1]), pa2 = mma_pack2<T>(p[2], p[3]);
#pragma unroll
    for (int d = 0; d < D / 8; d++) {
        o[d][0] *= alpha;
        o[d][1] *= alpha;
    }
    /* O += P V: ldmatrix.trans matrices (keys +0..7 | +8..15) x (dims +0..7 | +8..15) in the order
     * that gives b[0], b[1] for dims dn * 16 + 0..7 and b[2], b[3] for + 8..15 */
#pragma unroll
    for (int dn = 0; dn < D / 16; dn++) {
        uint32_t b[4];
        mma_ldsm_x4_trans(b, vt + mma_tile_off<D, LD>((mi & 1) * 8 + r8, dn * 16 + (mi >> 1) * 8));
        mma_16816<T>(o[2 * dn], pa0, 0u, pa2, 0u, b[0], b[1]);
        mma_16816<T>(o[2 * dn + 1], pa0, 0u, pa2, 0u, b[2], b[3]);
    }
}

/* movmatrix: the transpose of an 8 x 8 b16 fragment (a lane's pair of row g, cols 2t.. becomes
 * row 2t.., col g). */
__device__ __forceinline__ uint32_t mma_trans8(uint32_t x) {
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

/* The max over the 8 lanes that share lane & 3. */
__device__ __forceinline__ float mma_max8(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 8));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 16));
}

/* mma_decode_chunk with both products transposed (first tried as decode version 6 in blocks of
 * 4 warps, run 32): keys (for S) and dims (for O) on the mma's M side, the G <= 8 query heads on
 * its N side, so no accumulator row is a structural zero:
 *   S^T[16 keys x 8 heads] = K[16 x D] . Q^T[D x 8]         (D / 16 mma)
 *   O^T[D x 8 heads]      += V^T[D x 16 keys] . P^T[16 x 8] (D / 16 mma)
 * half version 5's mma and half its O registers. qb: Q^T's B fragments, which are exactly
 * mma_load_q's registers (column g = head g, k = dims 2t.. and 2t + 8..). o[dm]: O^T dims
 * dm * 16 + g (elements 0, 1) and + 8 (2, 3) x heads 2t, 2t + 1; mrow / lrow[h]: head 2t + h (log2
 * domain; lrow this lane's partial sum, the 8 lanes sharing t add up at the end). The S^T
 * accumulators (keys g, g + 8 x heads 2t, 2t + 1) become P^T's B fragments (keys 2t.. x head g)
 * by one movmatrix per 8 keys. */
template <typename T, int D, int LD>
__device__ __forceinline__ void mma_decode_chunk_t(const uint32_t (&qb)[D / 16][2], const T *kt, const T *vt, int key0, int end,
                                                   float sl2, int lane, float (&o)[D / 16][4], float (&mrow)[2], float (&lrow)[2]) {
    const int g = lane >> 2, mi = lane >> 3, r8 = lane & 7;
    float st[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) { /* A = K rows (matrices: keys +0..7 | +8..15 x dims +0..7 | +8..15) */
        uint32_t ka[4];
        mma_ldsm_x4(ka, kt + mma_tile_off<D, LD>((mi & 1) * 8 + r8, kk * 16 + (mi >> 1) * 8));
        mma_16816<T>(st, ka[0], ka[1], ka[2], ka[3], qb[kk][0], qb[kk][1]);
    }
    const int k = key0 + g;
    const float x[4] = {k < end ? st[0] * sl2 : -INFINITY, k < end ? st[1] * sl2 : -INFINITY,
                        k + 8 < end ? st[2] * sl2 : -INFINITY, k + 8 < end ? st[3] * sl2 : -INFINITY};
    float alpha[2], p[4];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const float mn = fmaxf(mrow[h], mma_max8(fmaxf(x[h], x[h + 2])));
        const float mu = mn == -INFINITY ? 0.f : mn; /* no valid key yet: every p is 0 */
        alpha[h] = mrow[h] == -INFINITY ? (mn == -INFINITY ? 1.f : 0.f) : exp2f(mrow[h] - mn);
        mrow[h] = mn;
        p[h] = exp2f(x[h] - mu);
        p[h + 2] = exp2f(x[h + 2] - mu);
        lrow[h] = lrow[h] * alpha[h] + (p[h] + p[h + 2]);
    }
    const uint32_t pb0 = mma_trans8(mma_pack2<T>(p[0], p[1])), pb1 = mma_trans8(mma_pack2<T>(p[2], p[3]));
#pragma unroll
    for (int dm = 0; dm < D / 16; dm++) {
        o[dm][0] *= alpha[0];
        o[dm][1] *= alpha[1];
        o[dm][2] *= alpha[0];
        o[dm][3] *= alpha[1];
        /* A = V^T dims dm * 16.. x keys: ldmatrix.trans of V rows (dims +0..7 | +8..15 x keys +0..7 | +8..15) */
        uint32_t va[4];
        mma_ldsm_x4_trans(va, vt + mma_tile_off<D, LD>((mi >> 1) * 8 + r8, dm * 16 + (mi & 1) * 8));
        mma_16816<T>(o[dm], va[0], va[1], va[2], va[3], pb0, pb1);
    }
}

} // namespace vk
