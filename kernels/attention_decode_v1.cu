/* Decode attention, versions 1 and 3 (the same kernel; version 3, PF = true, loads the next pass's
 * rows before this pass's arithmetic and is production for batches that fill the GPU with full
 * partitions: vk_attention_decode in attention_decode.cu picks it or version 2; version 1 is kept
 * for comparison in tests and bench/gpu/kernel_bench): two passes, scores to shared memory, then
 * softmax, then V.
 *
 * Paged-attention decode: one query row per sequence, keys read through the block table.
 *
 * Grid (KVH, num_seqs, splits): a block handles one KV head of one sequence over one partition
 * of keys (VK_DECODE_PARTITION, shorter for small batches), for all G = H / KVH query heads sharing that KV head (each K/V
 * row is loaded once for the whole group). Scores go to shared memory, then exp, then the
 * V-weighted sum with each thread owning 8 of the D dims. With more than one partition the
 * partial (unnormalized) sums, maxima and exp-sums go to scratch and a combine kernel merges
 * them (split-K along the sequence, for long contexts). Blocks past a sequence's context exit at
 * once, so the grid depends only on the max context bound: the launch can be graph-captured. */
#include "attention.cuh"

using namespace vk;

#define DEC_THREADS 128
#define DEC_MAX_G 8 /* the largest GQA group (register arrays are sized by a template bound) */

/* Rows base, base + NG, ... (U of them) of one KV head, raw; rows past end read as zeros. */
template <typename T, int D, int U, int NG>
__device__ __forceinline__ void fetch_rows(const T *cache, const int32_t *bt, const vk_attention_args &a, int kvh,
                                           int base, int end, int lane, uint4 *dst) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        int t = base + u * NG;
        if (t < end) {
            int blk = __ldg(bt + t / a.block_size), off = t % a.block_size;
            dst[u] = __ldg(reinterpret_cast<const uint4 *>(cache + (((size_t)blk * a.block_size + off) * a.KVH + kvh) * D + lane * 8));
        } else {
            dst[u] = make_uint4(0, 0, 0, 0);
        }
    }
}

/* PF (version 3): the next pass's K (or V) rows are loaded before this pass's arithmetic, so
 * twice the bytes are in flight per thread (registers, not the loop structure, bound them). */
template <typename T, int D, int MAX_G, bool PF>
__global__ void __launch_bounds__(DEC_THREADS)
decode_v1_kernel(const vk_attention_args a, int max_splits, int part) {
    constexpr int LANES = D / 8;              /* threads per key row */
    constexpr int NG = DEC_THREADS / LANES;   /* key rows in flight per pass */
    extern __shared__ float smem[];
    int kvh = blockIdx.x, seq = blockIdx.y, split = blockIdx.z;
    int q0 = a.query_start[seq];
    if (a.query_start[seq + 1] - q0 != 1) return;
    int ctx = a.context_lens[seq];
    int start = split * part;
    if (start >= ctx) return;
    int end = min(ctx, start + part);
    int n = end - start;
    int nsplit = (ctx + part - 1) / part;
    int G = a.H / a.KVH;

    float *sq = smem;                           /* [G][D] */
    float *sc = sq + G * D;                     /* [G][PARTITION] */
    float *red = sc + G * part;                 /* [NG][G][D] */
    float *stat = red + NG * G * D;             /* [G][2]: max, sum */

    const T *qp = (const T *)a.q + (size_t)q0 * a.q_stride + (size_t)kvh * G * D;
    for (int i = threadIdx.x; i < G * D; i += DEC_THREADS) sq[i] = to_f<T>(qp[i]) * a.scale;
    __syncthreads();

    const int32_t *bt = a.block_tables + (size_t)seq * a.max_blocks_per_seq;
    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
    int lane = threadIdx.x % LANES, grp = threadIdx.x / LANES;

    /* Scores. */
    float qreg[MAX_G][8];
#pragma unroll
    for (int g = 0; g < MAX_G; g++)
#pragma unroll
        for (int j = 0; j < 8; j++) qreg[g][j] = g < G ? sq[g * D + lane * 8 + j] : 0.f;
    constexpr int U = 4; /* key rows in flight per thread */
    uint4 nxt[U];
    if (PF) fetch_rows<T, D, U, NG>(kc, bt, a, kvh, start + grp, end, lane, nxt);
    for (int tb = start; tb < end; tb += NG * U) { /* uniform trip count: the shuffles need whole warps */
        float k[U][8];
        if (PF) {
#pragma unroll
            for (int u = 0; u < U; u++) cvt8<T>(nxt[u], k[u]);
            fetch_rows<T, D, U, NG>(kc, bt, a, kvh, tb + NG * U + grp, end, lane, nxt);
        } else
#pragma unroll
        for (int u = 0; u < U; u++) {
            int t = tb + u * NG + grp;
            if (t < end) {
                int blk = bt[t / a.block_size], off = t % a.block_size;
                load8(kc + (((size_t)blk * a.block_size + off) * a.KVH + kvh) * D + lane * 8, k[u]);
            } else {
#pragma unroll
                for (int j = 0; j < 8; j++) k[u][j] = 0.f;
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int t = tb + u * NG + grp;
#pragma unroll
            for (int g = 0; g < MAX_G; g++) {
                if (g < G) {
                    float d = 0.f;
#pragma unroll
                    for (int j = 0; j < 8; j++) d += qreg[g][j] * k[u][j];
#pragma unroll
                    for (int o = LANES / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o, LANES);
                    if (t < end && lane == 0) sc[g * part + (t - start)] = d;
                }
            }
        }
    }
    __syncthreads();

    /* Softmax statistics per query head: warp w handles heads w, w + 4, ... */
    int w = threadIdx.x >> 5, l32 = threadIdx.x & 31;
    for (int g = w; g < G; g += DEC_THREADS / 32) {
        float *s = sc + g * part;
        float m = -INFINITY;
        for (int i = l32; i < n; i += 32) m = fmaxf(m, s[i]);
        m = warp_max(m);
        float sum = 0.f;
        for (int i = l32; i < n; i += 32) {
            float e = __expf(s[i] - m);
            s[i] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        if (l32 == 0) {
            stat[g * 2] = m;
            stat[g * 2 + 1] = sum;
        }
    }
    __syncthreads();

    /* V-weighted sum. */
    float acc[MAX_G][8];
#pragma unroll
    for (int g = 0; g < MAX_G; g++)
#pragma unroll
        for (int j = 0; j < 8; j++) acc[g][j] = 0.f;
    if (PF) fetch_rows<T, D, U, NG>(vc, bt, a, kvh, start + grp, end, lane, nxt);
    for (int tb = start + grp; tb < end; tb += NG * U) {
        float v[U][8];
        if (PF) {
#pragma unroll
            for (int u = 0; u < U; u++) cvt8<T>(nxt[u], v[u]);
            fetch_rows<T, D, U, NG>(vc, bt, a, kvh, tb + NG * U, end, lane, nxt);
        } else
#pragma unroll
        for (int u = 0; u < U; u++) {
            int t = tb + u * NG;
            if (t < end) {
                int blk = bt[t / a.block_size], off = t % a.block_size;
                load8(vc + (((size_t)blk * a.block_size + off) * a.KVH + kvh) * D + lane * 8, v[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            int t = tb + u * NG;
            if (t < end) {
#pragma unroll
                for (int g = 0; g < MAX_G; g++) {
                    if (g < G) {
                        float p = sc[g * part + (t - start)];
#pragma unroll
                        for (int j = 0; j < 8; j++) acc[g][j] += p * v[u][j];
                    }
                }
            }
        }
    }
#pragma unroll
    for (int g = 0; g < MAX_G; g++)
        if (g < G)
#pragma unroll
            for (int j = 0; j < 8; j++) red[(grp * G + g) * D + lane * 8 + j] = acc[g][j];
    __syncthreads();
    for (int i = threadIdx.x; i < G * D; i += DEC_THREADS) {
        int g = i / D, d = i % D;
        float r = 0.f;
        for (int k = 0; k < NG; k++) r += red[(k * G + g) * D + d];
        int head = kvh * G + g;
        if (nsplit == 1) {
            ((T *)a.out)[((size_t)q0 * a.H + head) * D + d] = from_f<T>(r / stat[g * 2 + 1]);
        } else {
            float *pp = (float *)a.scratch + (((size_t)seq * a.H + head) * max_splits + split) * (D + 2);
            pp[d] = r;
            if (d == 0) {
                pp[D] = stat[g * 2];
                pp[D + 1] = stat[g * 2 + 1];
            }
        }
    }
}

template <typename T, int D, bool PF>
static cudaError_t launch_decode_v1(const vk_attention_args *a, cudaStream_t s) {
    constexpr int NG = DEC_THREADS / (D / 8);
    int part = vk_decode_bound_partition(a->num_seqs, a->KVH, a->max_context_len);
    int max_splits = (a->max_context_len + part - 1) / part;
    if (max_splits < 1) max_splits = 1;
    int G = a->H / a->KVH;
    size_t smem = sizeof(float) * (G * D + G * part + NG * G * D + G * 2);
    /* register arrays sized by the smallest bound >= G: fewer registers, more blocks per SM */
    void (*k)(const vk_attention_args, int, int) = G <= 1 ? decode_v1_kernel<T, D, 1, PF>
                                                 : G <= 2 ? decode_v1_kernel<T, D, 2, PF>
                                                 : G <= 4 ? decode_v1_kernel<T, D, 4, PF>
                                                          : decode_v1_kernel<T, D, 8, PF>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    dim3 grid(a->KVH, a->num_seqs, max_splits);
    k<<<grid, DEC_THREADS, smem, s>>>(*a, max_splits, part);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    return max_splits > 1 ? vk_decode_combine(a, max_splits, part, 0, s) : cudaSuccess;
}

cudaError_t vk_attention_decode_v1(const vk_attention_args *a, cudaStream_t s) {
    if (a->H % a->KVH || a->H / a->KVH > DEC_MAX_G) return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_decode_v1<T, 128, false>(a, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_decode_v1<T, 64, false>(a, s)));
    return cudaErrorInvalidValue;
}

cudaError_t vk_attention_decode_v3(const vk_attention_args *a, cudaStream_t s) {
    if (a->H % a->KVH || a->H / a->KVH > DEC_MAX_G) return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_decode_v1<T, 128, true>(a, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_decode_v1<T, 64, true>(a, s)));
    return cudaErrorInvalidValue;
}

