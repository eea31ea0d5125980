/* Paged prefill attention (chunked prefill, prefix-cache hits): a tiled flash-attention kernel.
 *
 * Grid (tiles, H): a block takes VK_PREFILL_TILE_M = 64 query rows of one sequence and one head;
 * each of its 4 warps owns 16 rows. Keys/values stream through shared memory 64 at a time,
 * gathered through the block table; S = Q K^T and O += P V run on the tensor cores (WMMA, bf16 or
 * fp16 in, fp32 accumulate) with an online softmax in between (P is rounded to the storage type
 * for the P V product, as flash-attention does). O stays in accumulator fragments; to rescale it
 * by each row's correction factor the kernel reads the row of every fragment element from a
 * fragment loaded from a matrix of row indices, so it relies on no undocumented layout. Queries
 * are the last query_len positions of the sequence, causally masked. */
#include <mma.h>

#include "attention.cuh"

using namespace vk;
using namespace nvcuda;

#define PF_THREADS 128
#define PF_BM VK_PREFILL_TILE_M
#define PF_BN 64

template <int D> struct pf_layout {
    static constexpr int LD = D + 8, LDS = PF_BN + 4, LDP = PF_BN + 8;
    static constexpr size_t q_bytes = (size_t)PF_BM * LD * 2, kv_bytes = (size_t)PF_BN * LD * 2;
    static constexpr size_t s_bytes = (size_t)PF_BM * LDS * 4, p_bytes = (size_t)PF_BM * LDP * 2;
    static constexpr size_t total = q_bytes + 2 * kv_bytes + s_bytes + p_bytes + 16 * 16 * 4 + 3 * PF_BM * 4;
};

template <typename T, int D>
__global__ void __launch_bounds__(PF_THREADS)
prefill_kernel(const vk_attention_args a) {
    typedef pf_layout<D> L;
    extern __shared__ __align__(128) unsigned char smem[];
    T *sQ = (T *)smem;
    T *sK = (T *)(smem + L::q_bytes);
    T *sV = (T *)(smem + L::q_bytes + L::kv_bytes);
    float *sS = (float *)(smem + L::q_bytes + 2 * L::kv_bytes);
    T *sP = (T *)(smem + L::q_bytes + 2 * L::kv_bytes + L::s_bytes);
    float *sRow = (float *)(smem + L::q_bytes + 2 * L::kv_bytes + L::s_bytes + L::p_bytes);
    float *sM = sRow + 256, *sL = sM + PF_BM, *sA = sL + PF_BM;

    int seq = a.prefill_tiles[blockIdx.x * 2], m0 = a.prefill_tiles[blockIdx.x * 2 + 1];
    int head = blockIdx.y, kvh = head / (a.H / a.KVH);
    int q0 = a.query_start[seq], qlen = a.query_start[seq + 1] - q0;
    int ctx = a.context_lens[seq], pos0 = ctx - qlen;
    int rows = min(PF_BM, qlen - m0);
    int kv_end = min(ctx, pos0 + m0 + rows);
    int tid = threadIdx.x, w = tid >> 5, lane = tid & 31;
    constexpr int DV = D / 8;

    for (int i = tid; i < PF_BM * DV; i += PF_THREADS) {
        int r = i / DV, c = (i % DV) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (r < rows) v = *(const uint4 *)((const T *)a.q + (size_t)(q0 + m0 + r) * a.q_stride + head * D + c);
        *(uint4 *)(sQ + r * L::LD + c) = v;
    }
    for (int i = tid; i < 256; i += PF_THREADS) sRow[i] = (float)(i / 16);
    for (int i = tid; i < PF_BM; i += PF_THREADS) {
        sM[i] = -INFINITY;
        sL[i] = 0.f;
    }
    __syncthreads();

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> rowid;
    wmma::load_matrix_sync(rowid, sRow, 16, wmma::mem_row_major);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> o[D / 16];
#pragma unroll
    for (int f = 0; f < D / 16; f++) wmma::fill_fragment(o[f], 0.f);

    const int32_t *bt = a.block_tables + (size_t)seq * a.max_blocks_per_seq;
    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
    constexpr int VEC = PF_BN * DV / PF_THREADS;

    for (int n0 = 0; n0 < kv_end; n0 += PF_BN) {
        uint4 kr[VEC], vr[VEC];
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            int idx = tid + i * PF_THREADS, r = idx / DV, c = (idx % DV) * 8, t = n0 + r;
            kr[i] = vr[i] = make_uint4(0, 0, 0, 0);
            if (t < kv_end) {
                size_t off = (((size_t)bt[t / a.block_size] * a.block_size + t % a.block_size) * a.KVH + kvh) * D + c;
                kr[i] = *(const uint4 *)(kc + off);
                vr[i] = *(const uint4 *)(vc + off);
            }
        }
        __syncthreads(); /* every warp is done with the previous tile */
#pragma unroll
        for (int i = 0; i < VEC; i++) {
            int idx = tid + i * PF_THREADS, r = idx / DV, c = (idx % DV) * 8;
            *(uint4 *)(sK + r * L::LD + c) = kr[i];
            *(uint4 *)(sV + r * L::LD + c) = vr[i];
        }
        __syncthreads();

        /* S = Q K^T for this warp's 16 rows. */
#pragma unroll
        for (int j = 0; j < PF_BN / 16; j++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
            wmma::fill_fragment(s, 0.f);
#pragma unroll
            for (int k = 0; k < D / 16; k++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kb;
                wmma::load_matrix_sync(qa, sQ + (16 * w) * L::LD + 16 * k, L::LD);
                wmma::load_matrix_sync(kb, sK + (16 * j) * L::LD + 16 * k, L::LD);
                wmma::mma_sync(s, qa, kb, s);
            }
            wmma::store_matrix_sync(sS + (16 * w) * L::LDS + 16 * j, s, L::LDS, wmma::mem_row_major);
        }
        __syncwarp();

        /* Online softmax over the warp's rows; each lane takes columns lane and lane + 32. */
        for (int rr = 0; rr < 16; rr++) {
            int r = 16 * w + rr;
            int qpos = pos0 + m0 + r;
            int k0 = n0 + lane, k1 = n0 + lane + 32;
            bool ok0 = r < rows && k0 < kv_end && k0 <= qpos;
            bool ok1 = r < rows && k1 < kv_end && k1 <= qpos;
            float s0 = ok0 ? sS[r * L::LDS + lane] * a.scale : -INFINITY;
            float s1 = ok1 ? sS[r * L::LDS + lane + 32] * a.scale : -INFINITY;
            float mx = warp_max(fmaxf(s0, s1));
            float mold = sM[r];
            float mnew = fmaxf(mold, mx);
            float p0 = 0.f, p1 = 0.f, alpha = 1.f;
            if (mnew != -INFINITY) {
                p0 = ok0 ? __expf(s0 - mnew) : 0.f;
                p1 = ok1 ? __expf(s1 - mnew) : 0.f;
                alpha = mold == -INFINITY ? 0.f : __expf(mold - mnew);
            }
            float sum = warp_sum(p0 + p1);
            sP[r * L::LDP + lane] = from_f<T>(p0);
            sP[r * L::LDP + lane + 32] = from_f<T>(p1);
            if (lane == 0) {
                sM[r] = mnew;
                sL[r] = sL[r] * alpha + sum;
                sA[r] = alpha;
            }
        }
        __syncwarp();

        /* O = diag(alpha) O + P V. */
#pragma unroll
        for (int f = 0; f < D / 16; f++)
#pragma unroll
            for (int i = 0; i < o[f].num_elements; i++) o[f].x[i] *= sA[16 * w + (int)rowid.x[i]];
#pragma unroll
        for (int k = 0; k < PF_BN / 16; k++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
            wmma::load_matrix_sync(pa, sP + (16 * w) * L::LDP + 16 * k, L::LDP);
#pragma unroll
            for (int f = 0; f < D / 16; f++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vb;
                wmma::load_matrix_sync(vb, sV + (16 * k) * L::LD + 16 * f, L::LD);
                wmma::mma_sync(o[f], pa, vb, o[f]);
            }
        }
    }

    /* Normalize and write out through shared memory (the K/V area, now free). */
    __syncthreads();
    float *stage = (float *)sK + (16 * w) * D;
#pragma unroll
    for (int f = 0; f < D / 16; f++) {
#pragma unroll
        for (int i = 0; i < o[f].num_elements; i++) {
            float l = sL[16 * w + (int)rowid.x[i]];
            o[f].x[i] = l > 0.f ? o[f].x[i] / l : 0.f;
        }
        wmma::store_matrix_sync(stage + 16 * f, o[f], D, wmma::mem_row_major);
    }
    __syncwarp();
    for (int i = lane; i < 16 * D; i += 32) {
        int r = 16 * w + i / D, d = i % D;
        if (r < rows) ((T *)a.out)[((size_t)(q0 + m0 + r) * a.H + head) * D + d] = from_f<T>(stage[i]);
    }
}

template <typename T, int D>
static cudaError_t launch_prefill(const vk_attention_args *a, cudaStream_t s) {
    size_t smem = pf_layout<D>::total;
    static_assert(pf_layout<D>::kv_bytes * 2 >= (size_t)PF_BM * D * 4, "staging must fit in K/V");
    cudaError_t e = cudaFuncSetAttribute(prefill_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    prefill_kernel<T, D><<<dim3(a->num_prefill_tiles, a->H), PF_THREADS, smem, s>>>(*a);
    return cudaGetLastError();
}

cudaError_t vk_attention_prefill(const vk_attention_args *a, cudaStream_t s) {
    if (a->num_prefill_tiles <= 0) return cudaSuccess;
    if (a->H % a->KVH || a->group_heads) return cudaErrorInvalidValue; /* one head per tile only */
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_prefill<T, 128>(a, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_prefill<T, 64>(a, s)));
    return cudaErrorInvalidValue;
}

/* Query tokens per tile are at least VK_PREFILL_TILE_M / VK_PREFILL_MAX_GROUP (batch-invariant
 * tiles share their rows among a KV group's heads). */
extern "C" int vk_prefill_tiles_max(int num_tokens, int num_seqs) {
    return num_tokens / (PF_BM / VK_PREFILL_MAX_GROUP) + num_seqs + 1;
}

extern "C" int vk_prefill_tile_tokens(int mode, int H, int KVH) {
    const int wide = (mode & VK_TILES_WIDE) ? 2 : 1; /* grouped default-mode tiles only */
    mode &= ~VK_TILES_WIDE;
    if (mode == VK_TILES_HEAD) return wide == 1 ? PF_BM : -1;
    if (mode != VK_TILES_GROUP && (mode != VK_TILES_INVARIANT || wide == 2)) return -1;
    if (KVH <= 0 || H % KVH || H / KVH > VK_PREFILL_MAX_GROUP) return -1;
    return wide * PF_BM / (H / KVH);
}

/* Longest first: later query rows see more keys (causal), so their tiles take longer; blocks are
 * dispatched in tile order, and starting a sequence's long tiles first leaves its short ones for
 * the end. Only where they differ (the last tile sees at least twice the keys of the first: not a
 * few rows over a long cached prefix, where the order measured 1-2 % slower on B4's second
 * request), and sequence by sequence: consecutive blocks then read the same sequence's keys,
 * which stay in L2 (interleaving the sequences by row was 6 % slower on B1's 32 x 512 step, run
 * 85). */
static bool tiles_reverse(int len, int ctx, int tt) {
    const long first = (long)ctx - len + (len < tt ? len : tt); /* keys seen by the first tile's last row */
    return ctx >= 2 * first;
}

extern "C" int vk_prefill_tiles_build(const int32_t *query_start, const int32_t *context_lens, int num_seqs, int mode,
                                      int H, int KVH, int32_t *tiles, int cap) {
    const bool longest_first = (mode & VK_TILES_LONGEST_FIRST) != 0;
    mode &= ~VK_TILES_LONGEST_FIRST;
    const int tt = vk_prefill_tile_tokens(mode, H, KVH);
    const bool batch_invariant = (mode & ~VK_TILES_WIDE) == VK_TILES_INVARIANT;
    if (tt <= 0) return -1;
    int n = 0;
    for (int i = 0; i < num_seqs; i++) {
        int len = query_start[i + 1] - query_start[i];
        if (len < 1 || (len == 1 && !batch_invariant)) continue;
        const int last = (len - 1) / tt * tt;
        const bool rev = longest_first && (!context_lens || tiles_reverse(len, context_lens[i], tt));
        for (int j = 0; j <= last; j += tt) {
            if (n >= cap) return -1;
            tiles[2 * n] = i;
            tiles[2 * n + 1] = rev ? last - j : j;
            n++;
        }
    }
    return n;
}

extern "C" size_t vk_attention_scratch_bytes(int num_seqs, int H, int D, int max_context_len) {
    return vk_attention_decode_scratch_bytes(num_seqs, H, D, max_context_len) + vk_attention_prefill_scratch_bytes(H, D);
}

extern "C" cudaError_t vk_attention_v(const vk_attention_args *a, int decode_version, int prefill_version, cudaStream_t s) {
    if (a->KVH <= 0 || a->H <= 0 || a->block_size <= 0) return cudaErrorInvalidValue;
    cudaError_t e = cudaSuccess;
    if (a->batch_invariant) /* every row through the prefill kernel (vesta_kernels.h) */
        return prefill_version == 2 ? vk_attention_prefill_v2(a, s) : cudaErrorInvalidValue;
    if (a->has_decode && (e = decode_version == 1   ? vk_attention_decode_v1(a, s)
                              : decode_version == 2 ? vk_attention_decode_v2(a, s)
                              : decode_version == 3 ? vk_attention_decode_v3(a, s)
                              : decode_version == 4 ? cudaErrorInvalidValue /* v4: removed, see docs/benchmarks.md */
                              : decode_version == 5 ? vk_attention_decode_v5(a, s)
                              : decode_version == 7 ? vk_attention_decode_v7(a, s)
                              : decode_version >= VK_DECODE_V7_VARIANT_BASE
                                  ? vk_attention_decode_v7x(a, decode_version - VK_DECODE_V7_VARIANT_BASE, s)
                              : decode_version >= VK_DECODE_V5_VARIANT_BASE
                                  ? vk_attention_decode_v5x(a, decode_version - VK_DECODE_V5_VARIANT_BASE, s)
                                  : vk_attention_decode(a, s)) != cudaSuccess)
        return e;
    return prefill_version == 1 ? vk_attention_prefill(a, s) : vk_attention_prefill_v2(a, s);
}

extern "C" cudaError_t vk_attention_ex(const vk_attention_args *a, int prefill_version, cudaStream_t s) {
    return vk_attention_v(a, 0, prefill_version, s);
}

extern "C" cudaError_t vk_attention(const vk_attention_args *a, cudaStream_t s) { return vk_attention_v(a, 0, 2, s); }
