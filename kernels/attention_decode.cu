/* Paged-attention decode, version 2 (production for small batches: vk_attention_decode below picks
 * it or version 3): one query row per sequence, keys read through
 * the block table in ONE pass with an online softmax.
 *
 * Grid (KVH, num_seqs, splits): a block handles one KV head of one sequence over one key range,
 * for all G = H / KVH query heads sharing that KV head (each K/V row is loaded once for the
 * group). Each warp walks its own rows with a running max / sum / output per head (flash-decoding
 * inside the block): D / 8 lanes own a row (16 bytes each), a warp covers 32 / (D / 8) rows per
 * load and U loads of K and of V are issued together before any arithmetic, so every thread has
 * 2U 16-byte loads in flight and no barrier separates scores from the V sum (version 1 read K,
 * synced, then read V: half the bytes in flight and two pipeline drains per block). The warps
 * merge through shared memory at the end.
 *
 * Split-K along the sequence: a sequence of ctx keys gets nsplit = ceil(ctx / part) ranges of
 * equal length ceil(ctx / nsplit) (not part, part, ..., remainder: a 640-key context is two
 * 320-key blocks, not 512 + 128), partials to scratch, merged by the combine kernel. Blocks past a
 * sequence's splits exit at once, so the grid depends only on the max context bound: the launch
 * can be graph-captured. */
#include "attention.cuh"

using namespace vk;

#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_MAX_G 8 /* the largest GQA group (register arrays are sized by a template bound) */
#define DEC_U 4     /* row loads of K (and of V) in flight per thread */

template <typename T, int D, int MAX_G>
__global__ void __launch_bounds__(DEC_THREADS)
decode_kernel(const vk_attention_args a, int max_splits, int part) {
    constexpr int LANES = D / 8;      /* threads per key row */
    constexpr int R = 32 / LANES;     /* rows per warp-wide load */
    constexpr int ROWS = R * DEC_U;   /* rows per warp iteration */
    __shared__ float wstat[DEC_WARPS][MAX_G][2];
    __shared__ float wacc[DEC_WARPS][MAX_G][D];
    int kvh = blockIdx.x, seq = blockIdx.y, split = blockIdx.z;
    int q0 = a.query_start[seq];
    if (a.query_start[seq + 1] - q0 != 1) return;
    int ctx = a.context_lens[seq];
    int nsplit = (ctx + part - 1) / part;
    if (split >= nsplit) return;
    int per = (ctx + nsplit - 1) / nsplit;
    int start = split * per, end = min(ctx, start + per); /* may be empty: the partial is then 0 */
    int G = a.H / a.KVH;
    int w = threadIdx.x >> 5, l32 = threadIdx.x & 31, lane = l32 % LANES, half = l32 / LANES;

    float qr[MAX_G][8];
    const T *qp = (const T *)a.q + (size_t)q0 * a.q_stride + (size_t)kvh * G * D + lane * 8;
#pragma unroll
    for (int g = 0; g < MAX_G; g++)
#pragma unroll
        for (int j = 0; j < 8; j++) qr[g][j] = g < G ? to_f<T>(qp[g * D + j]) * a.scale : 0.f;

    float m[MAX_G], l[MAX_G], acc[MAX_G][8];
#pragma unroll
    for (int g = 0; g < MAX_G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[g][j] = 0.f;
    }
    const int32_t *bt = a.block_tables + (size_t)seq * a.max_blocks_per_seq;
    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
    /* Block-table entries of the rows of the next iteration, loaded one iteration ahead so the
     * K/V loads do not wait for them. */
    int nb[DEC_U];
    int tb = start + w * ROWS;
#pragma unroll
    for (int u = 0; u < DEC_U; u++) {
        int t = tb + u * R + half;
        nb[u] = t < end ? __ldg(bt + t / a.block_size) : 0;
    }
    /* warp-uniform trip count (the shuffles need whole warps); row tb + half is always < end */
    for (; tb < end; tb += DEC_WARPS * ROWS) {
        uint4 kr[DEC_U], vr[DEC_U];
#pragma unroll
        for (int u = 0; u < DEC_U; u++) {
            int t = tb + u * R + half;
            if (t < end) {
                size_t idx = (((size_t)nb[u] * a.block_size + t % a.block_size) * a.KVH + kvh) * D + lane * 8;
                kr[u] = __ldg(reinterpret_cast<const uint4 *>(kc + idx));
                vr[u] = __ldg(reinterpret_cast<const uint4 *>(vc + idx));
            } else {
                kr[u] = make_uint4(0, 0, 0, 0);
                vr[u] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < DEC_U; u++) {
            int t = tb + DEC_WARPS * ROWS + u * R + half;
            nb[u] = t < end ? __ldg(bt + t / a.block_size) : 0;
        }
        float s[MAX_G][DEC_U];
#pragma unroll
        for (int u = 0; u < DEC_U; u++) {
            float k[8];
            cvt8<T>(kr[u], k);
            bool valid = tb + u * R + half < end;
#pragma unroll
            for (int g = 0; g < MAX_G; g++) {
                if (g < G) {
                    float d = 0.f;
#pragma unroll
                    for (int j = 0; j < 8; j++) d += qr[g][j] * k[j];
#pragma unroll
                    for (int o = LANES / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o, LANES);
                    s[g][u] = valid ? d : -INFINITY;
                }
            }
        }
#pragma unroll
        for (int g = 0; g < MAX_G; g++) {
            if (g < G) {
                float mx = s[g][0];
#pragma unroll
                for (int u = 1; u < DEC_U; u++) mx = fmaxf(mx, s[g][u]);
#pragma unroll
                for (int o = LANES; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                float mn = fmaxf(m[g], mx); /* finite: row tb (u = 0, half 0) is valid */
                float c = __expf(m[g] - mn);
                m[g] = mn;
                l[g] *= c;
#pragma unroll
                for (int j = 0; j < 8; j++) acc[g][j] *= c;
#pragma unroll
                for (int u = 0; u < DEC_U; u++) s[g][u] = __expf(s[g][u] - mn);
            }
        }
#pragma unroll
        for (int u = 0; u < DEC_U; u++) {
            float v[8];
            cvt8<T>(vr[u], v);
#pragma unroll
            for (int g = 0; g < MAX_G; g++) {
                if (g < G) {
                    l[g] += s[g][u];
#pragma unroll
                    for (int j = 0; j < 8; j++) acc[g][j] += s[g][u] * v[j];
                }
            }
        }
    }
    /* Sum the R row groups of the warp (same max), then merge the warps. */
#pragma unroll
    for (int g = 0; g < MAX_G; g++) {
        if (g < G) {
#pragma unroll
            for (int o = LANES; o < 32; o <<= 1) {
                l[g] += __shfl_xor_sync(0xffffffffu, l[g], o);
#pragma unroll
                for (int j = 0; j < 8; j++) acc[g][j] += __shfl_xor_sync(0xffffffffu, acc[g][j], o);
            }
            if (half == 0) {
#pragma unroll
                for (int j = 0; j < 8; j++) wacc[w][g][lane * 8 + j] = acc[g][j];
            }
            if (l32 == 0) {
                wstat[w][g][0] = m[g];
                wstat[w][g][1] = l[g];
            }
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * D; i += DEC_THREADS) {
        int g = i / D, d = i % D;
        float M = -INFINITY;
#pragma unroll
        for (int k = 0; k < DEC_WARPS; k++) M = fmaxf(M, wstat[k][g][0]);
        float r = 0.f, L = 0.f;
        if (M != -INFINITY) { /* a warp without rows has m = -inf, l = 0, acc = 0: weight 0 */
#pragma unroll
            for (int k = 0; k < DEC_WARPS; k++) {
                float c = __expf(wstat[k][g][0] - M);
                r += c * wacc[k][g][d];
                L += c * wstat[k][g][1];
            }
        }
        int head = kvh * G + g;
        if (nsplit == 1) {
            ((T *)a.out)[((size_t)q0 * a.H + head) * D + d] = from_f<T>(r / L);
        } else {
            float *pp = (float *)a.scratch + (((size_t)seq * a.H + head) * max_splits + split) * (D + 2);
            pp[d] = r;
            if (d == 0) {
                pp[D] = M;
                pp[D + 1] = L;
            }
        }
    }
}

/* Merges a sequence's nsplit partials (unnormalized sums, maxima, exp-sums) per head. An empty
 * partial (m = -inf, l = 0, sums 0) weighs 0. */
template <typename T, int D>
__global__ void decode_combine_kernel(const vk_attention_args a, int max_splits, int part, int sms) {
    pdl_allow_dependents(); /* a pdl-launched o_proj may start loading its weights */
    __shared__ float wt[32];
    __shared__ float stat[2];
    int seq = blockIdx.x, head = blockIdx.y;
    /* the contexts are the host's upload, never a kernel's: read before waiting */
    int q0 = a.query_start[seq];
    if (a.query_start[seq + 1] - q0 != 1) return; /* a prefill row; the decode rows' blocks wait */
    const int ctx = a.context_lens[seq];
    if (part == 0 && sms > 0) { /* version 5's pick, made again (its batches are small) */
        __shared__ int s_part;
        if (threadIdx.x < 32) {
            int mx = 0;
            for (int i = threadIdx.x; i < a.num_seqs; i += 32) mx = max(mx, a.context_lens[i]);
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) mx = max(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            if (threadIdx.x == 0) s_part = vk_decode_v5_device_part(a.num_seqs, a.KVH, mx, sms, max_splits);
        }
        __syncthreads();
        part = s_part;
    }
    pdl_wait_previous(); /* the partials (and the partition slot) are the attention kernel's */
    if (part == 0) part = *vk_decode_part_slot(a, max_splits); /* version 7's pick */
    int nsplit = (ctx + part - 1) / part;
    if (nsplit <= 1) return;
    const float *pp = (const float *)a.scratch + ((size_t)seq * a.H + head) * max_splits * (D + 2);
    if (threadIdx.x < 32) {
        float m = -INFINITY;
        for (int i = threadIdx.x; i < nsplit; i += 32) m = fmaxf(m, pp[i * (D + 2) + D]);
        m = warp_max(m);
        float t = 0.f;
        for (int i = threadIdx.x; i < nsplit; i += 32) t += pp[i * (D + 2) + D + 1] * __expf(pp[i * (D + 2) + D] - m);
        t = warp_sum(t);
        if (threadIdx.x == 0) {
            stat[0] = m;
            stat[1] = t;
        }
    }
    __syncthreads();
    float m = stat[0], total = stat[1];
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float r = 0.f;
        for (int i = 0; i < nsplit; i++) {
            if (i % 32 == 0) { /* the weights of the next 32 partials, shared by the block */
                __syncthreads();
                if (threadIdx.x < 32 && i + threadIdx.x < nsplit) wt[threadIdx.x] = __expf(pp[(i + threadIdx.x) * (D + 2) + D] - m);
                __syncthreads();
            }
            r += pp[i * (D + 2) + d] * wt[i % 32];
        }
        ((T *)a.out)[((size_t)q0 * a.H + head) * D + d] = from_f<T>(r / total);
    }
}

template <typename T, int D>
static cudaError_t launch_combine(const vk_attention_args *a, int max_splits, int part, int sms, cudaStream_t s) {
    /* D threads: see the loop */
    return launch_pdl(decode_combine_kernel<T, D>, dim3(a->num_seqs, a->H), dim3(D), 0, s, a->pdl != 0, *a, max_splits,
                      part, sms);
}

cudaError_t vk_decode_combine(const vk_attention_args *a, int max_splits, int part, int sms, cudaStream_t s) {
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_combine<T, 128>(a, max_splits, part, sms, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_combine<T, 64>(a, max_splits, part, sms, s)));
    return cudaErrorInvalidValue;
}

/* The current device's SM count (132, an H100's, when it cannot be read): what the decode
 * launchers size their grids and splits by. */
int vk_sm_count(void) {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        sms <= 0)
        return 132;
    return sms;
}

int vk_decode_partition(int num_seqs, int KVH, int max_ctx) {
    return vk_decode_partition_on(num_seqs, KVH, max_ctx, vk_sm_count());
}

/* vk_decode_partition_on's ranges: with fewer pairs than blocks, at most blocks / pairs and
 * ceil(ctx / 32) of them (ranges of at least 32 keys) or ceil(ctx / 1,024) (ranges of at most
 * 1,024); else at most ceil(ctx / 1,024) + EXTRA (vk_decode_balanced_part). */
int vk_decode_v5_splits_bound(int num_seqs, int KVH, int bound) {
    const long pairs = (long)num_seqs * KVH, slots = 2L * vk_sm_count();
    if (bound < 1) bound = 1;
    long n = (bound + VK_DECODE_PARTITION - 1) / VK_DECODE_PARTITION + VK_DECODE_EXTRA_SPLITS;
    if (pairs > 0 && pairs < slots) {
        long splits = slots / pairs, fine = (bound + 31) / 32;
        if (splits > fine) splits = fine;
        if (splits > n) n = splits;
    }
    const int cap = vk_decode_stride_cap(num_seqs);
    return (int)(n < cap ? n : cap);
}

int vk_decode_v7_splits_bound(int num_seqs, int bound) {
    if (bound < 1) bound = 1;
    const int n = (bound + VK_DECODE_PARTITION - 1) / VK_DECODE_PARTITION + VK_DECODE_EXTRA_SPLITS;
    const int cap = vk_decode_stride_cap(num_seqs);
    return n < cap ? n : cap;
}

int vk_decode_bound_partition(int num_seqs, int KVH, int bound) {
    const int p = vk_decode_partition(num_seqs, KVH, bound);
    const int f = vk_decode_part_floor(bound, vk_decode_stride_cap(num_seqs), 32);
    return p > f ? p : f;
}

int vk_decode_v7_bound_partition(int num_seqs, int KVH, int bound, int warps) {
    const int p = vk_decode_v7_partition_on(num_seqs * KVH, warps, bound);
    const int f = vk_decode_part_floor(bound, vk_decode_stride_cap(num_seqs), 16);
    return p > f ? p : f;
}

template <typename T, int D>
static cudaError_t launch_decode(const vk_attention_args *a, cudaStream_t s) {
    int part = vk_decode_bound_partition(a->num_seqs, a->KVH, a->max_context_len);
    int max_splits = (a->max_context_len + part - 1) / part;
    if (max_splits < 1) max_splits = 1;
    int G = a->H / a->KVH;
    /* register arrays sized by the smallest bound >= G: fewer registers, more blocks per SM */
    void (*k)(const vk_attention_args, int, int) = G <= 1 ? decode_kernel<T, D, 1>
                                                 : G <= 2 ? decode_kernel<T, D, 2>
                                                 : G <= 4 ? decode_kernel<T, D, 4>
                                                          : decode_kernel<T, D, 8>;
    dim3 grid(a->KVH, a->num_seqs, max_splits);
    k<<<grid, DEC_THREADS, 0, s>>>(*a, max_splits, part);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    return max_splits > 1 ? vk_decode_combine(a, max_splits, part, 0, s) : cudaSuccess;
}

cudaError_t vk_attention_decode_v2(const vk_attention_args *a, cudaStream_t s) {
    if (a->H % a->KVH || a->H / a->KVH > DEC_MAX_G) return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_decode<T, 128>(a, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_decode<T, 64>(a, s)));
    return cudaErrorInvalidValue;
}

/* Production: version 7 (attention_decode_v7.cu: version 5's tensor-core arithmetic in persistent
 * warps) for batches with a work item for 7/8 of its warps (vk_attention_decode_v7_fills), version
 * 5 (attention_decode_v5.cu: blocks of 4 warps over a shared cp.async pipeline, key ranges split
 * to reach 2 blocks per SM) below that. Until run 143 the test was version 5's partition reaching
 * its full 512 keys, which long context bounds reach with few sequences (a decode graph's bound is
 * the model's longest context): one sequence ran on version 7 with a few of its warps busy, 0.153
 * ms a layer over 32K keys against version 5's 0.075, 0.096 against 0.015 over 640 (run 142), and
 * 33-95 sequences over 640 keys took version 7 at up to twice version 5's time. Version 5 on the H100 (run 12), per layer: 256 x 640 keys 0.277 ms (2.44 TB/s) against
 * version 3's 0.394; one sequence of 4,096 keys 0.019 against 0.027 -- bench/gpu/results/run12-
 * decode-v5; version 7 against version 5: docs/benchmarks.md. A pure function of the arguments,
 * so a captured graph keeps its choice. */
cudaError_t vk_attention_decode(const vk_attention_args *a, cudaStream_t s) {
    const bool full = vk_attention_decode_v7_fills(a->num_seqs, a->KVH);
    cudaError_t e = full ? vk_attention_decode_v7(a, s) : vk_attention_decode_v5(a, s);
    if (e != cudaErrorInvalidValue) return e;
    /* shapes versions 5 and 7 do not take (head_dim other than 64 / 128): the CUDA-core kernels */
    if (!full) return vk_attention_decode_v2(a, s);
    return vk_attention_decode_v3(a, s);
}

/* Bounds num_seqs' x H x splits for every batch of at most num_seqs sequences (a smaller batch
 * gets more splits per sequence; non-decreasing in num_seqs, so an allocation for the largest
 * batch holds every smaller one's partials and the prefill partials placed after them), plus the
 * partition slot: every version splits a sequence at most vk_decode_stride_cap ways, and at most
 * ceil(ctx / 1,024) + EXTRA ways or (fewer pairs than 2 blocks per SM) 2 SMs / (n x KVH) ways,
 * so n x H x splits <= H x 2 SMs (vk_decode_v5_splits_bound). */
size_t vk_attention_decode_scratch_bytes(int num_seqs, int H, int D, int max_context_len) {
    const int sms = vk_sm_count();
    size_t ctx = max_context_len > 0 ? (size_t)max_context_len : 1, n = num_seqs > 0 ? (size_t)num_seqs : 1;
    size_t e = n * H * ((ctx + VK_DECODE_PARTITION - 1) / VK_DECODE_PARTITION + VK_DECODE_EXTRA_SPLITS) +
               (size_t)H * (2 * (size_t)sms + n);
    /* >= n x cap(n) per head, and non-decreasing in n where n x floor(8,192 / n) is not */
    const size_t capped = (size_t)H * (16 * n > 8192 ? 16 * n : 8192);
    if (capped < e) e = capped;
    return sizeof(float) * e * (D + 2) + 16; /* + the partition slot */
}
