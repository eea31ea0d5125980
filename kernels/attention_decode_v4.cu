/* Paged-attention decode, version 4: K/V tiles streamed into shared memory by a multi-stage
 * cp.async pipeline, so the bytes in flight no longer live in registers.
 *
 * Why: versions 1-3 hold every load in flight in registers, and the registers a thread can spare
 * (x blocks per SM) capped the bytes in flight per SM at 48-80 KB, below what the H100 needs to
 * keep HBM busy between the arithmetic bursts (docs/benchmarks.md, "Decode attention, what was
 * tried": 1.5-1.75 TB/s of 3.0). cp.async writes straight to shared memory; a thread's registers
 * are free again as soon as the copy is issued.
 *
 * Grid (KVH, num_seqs, splits) and split-K exactly as version 2 (balanced ranges of
 * ceil(ctx / nsplit) keys, nsplit = ceil(ctx / part), partials in the same scratch layout, merged
 * by vk_decode_combine; blocks past a sequence's splits exit, so the grid depends only on the max
 * context bound and the launch can be graph-captured). A block handles one KV head of one
 * sequence over one key range for all G = H / KVH query heads of the group.
 *
 * Per block: the range's block-table entries are copied to shared memory once; then tiles of TK
 * keys go through S stages: stage i % S holds tile i's K rows and V rows ([TK][D] each, a row is
 * D contiguous elements = 16-byte chunks). Tile i + S - 1 is issued (each thread copies TK * D / 8
 * / THREADS chunks of K and the same of V; rows past the range are zero-filled, never read from
 * the cache) right after the barrier that makes tile i visible, so S - 1 tiles are in flight
 * while one is computed. Compute as version 2, from shared memory: warp w takes TK / WARPS rows
 * of each tile, D / 8 lanes per row (16 bytes each, conflict-free: a half-warp reads one 256-byte
 * row), q for the G heads in registers, a running max / sum / output per head per warp (online
 * softmax), the warps merged through shared memory (aliasing the stages) at the end.
 *
 * Occupancy (ptxas -v, sm_90a, CUDA 13.0). Default: TK 16 keys, S 6 stages, 4 warps. Stages: 2 (K,
 * V) x 6 x 16 rows x 256 B = 48 KB per block at D 128 (+ ~0.2 KB of block table), so 4 blocks fit
 * an SM's 228 KB; registers: G <= 4 kernels are capped at 128 by __launch_bounds__(128, 4) (D 128:
 * G 1 56-70, G 2 91-103, G 4 128 with no spills; left alone ptxas takes ~175 for G 4 by hoisting
 * every row's loads and conversions, and a 32-key tile (4 row steps per warp) spills at the 128
 * cap, hence 16-key tiles: 2 steps per warp), so 4 x 128 threads x 128 = all 64K registers: 4
 * blocks, 16 warps per SM. Bytes in flight: 5 tiles x 8 KB = 40 KB per block, 160 KB per SM,
 * against 80 KB at best for version 3 (and only while its loads are outstanding). G 8 (218-224
 * registers: q and the output for 8 heads) asks for 2 blocks per SM. The math (~1,000 FMA per key
 * at G 4, plus 16 B of shared-memory reads per lane per row, conflict-free) is about a third of an
 * SM's issue rate at 3 TB/s, so CUDA-core FMAs from shared memory keep up.
 *
 * Variants (vk_attention_decode_v4x): other tile sizes, stage counts, warps per block and
 * partition lengths, only for bf16, D 128, G 4 (Llama-3-8B's shape), timed side by side by
 * bench/gpu/kernel_bench and checked by tests/kernels; variant 0 is what version 4 runs. */
#include "attention.cuh"

using namespace vk;

namespace {

__device__ __forceinline__ void v4_cp16(void *smem, const void *gmem, int src_bytes) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    /* src_bytes 0: the 16 bytes are zero-filled and nothing is read */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void v4_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void v4_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* Partition modes: how the keys per split are chosen from the shared vk_decode_partition. */
enum { V4_PART_SHARED = 0, V4_PART_LONG = 1, V4_PART_SHORT = 2 };

template <typename T, int D, int MAX_G, int TK, int S, int WARPS, int MINB>
__global__ void __launch_bounds__(WARPS * 32, MINB)
decode_v4_kernel(const vk_attention_args a, int max_splits, int part) {
    constexpr int THREADS = WARPS * 32;
    constexpr int LANES = D / 8;          /* 16-byte chunks per row = threads per row in compute */
    constexpr int R = 32 / LANES;         /* rows per warp-wide step */
    constexpr int RW = TK / WARPS;        /* rows of a tile per warp */
    constexpr int U = RW / R;             /* warp steps per tile */
    constexpr int PER = TK * LANES / THREADS; /* chunks of K (and of V) per thread per tile */
    static_assert(RW % R == 0 && U >= 1, "tile rows must split evenly over warps and lanes");
    static_assert(PER * THREADS == TK * LANES && PER >= 1, "tile chunks must split evenly over threads");
    static_assert(S >= 2, "at least double buffering");
    extern __shared__ __align__(16) unsigned char v4_smem[];
    T *sk = reinterpret_cast<T *>(v4_smem); /* [S][TK][D] */
    T *sv = sk + S * TK * D;                /* [S][TK][D] */
    int *sbt = reinterpret_cast<int *>(sv + S * TK * D);

    int kvh = blockIdx.x, seq = blockIdx.y, split = blockIdx.z;
    int q0 = a.query_start[seq];
    if (a.query_start[seq + 1] - q0 != 1) return;
    int ctx = a.context_lens[seq];
    int nsplit = (ctx + part - 1) / part;
    if (split >= nsplit) return;
    int per = (ctx + nsplit - 1) / nsplit;
    int start = split * per, end = min(ctx, start + per); /* may be empty: the partial is then 0 */
    int G = a.H / a.KVH, bs = a.block_size;
    int tid = threadIdx.x, w = tid >> 5, l32 = tid & 31, lane = l32 % LANES, half = l32 / LANES;

    /* The range's block-table entries (at most part / bs + 2: the launcher sized sbt so). */
    const int32_t *bt = a.block_tables + (size_t)seq * a.max_blocks_per_seq;
    int b0 = start / bs;
    int nb = end > start ? (end - 1) / bs - b0 + 1 : 0;
    for (int i = tid; i < nb; i += THREADS) sbt[i] = __ldg(bt + b0 + i);

    float qr[MAX_G][8];
    const T *qp = (const T *)a.q + (size_t)q0 * a.q_stride + (size_t)kvh * G * D + lane * 8;
#pragma unroll
    for (int g = 0; g < MAX_G; g++) {
        if (g < G) {
            cvt8<T>(*reinterpret_cast<const uint4 *>(qp + g * D), qr[g]);
#pragma unroll
            for (int j = 0; j < 8; j++) qr[g][j] *= a.scale;
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) qr[g][j] = 0.f;
        }
    }
    __syncthreads(); /* sbt */

    const T *kc = (const T *)a.k_cache, *vc = (const T *)a.v_cache;
    int KVH = a.KVH, base = b0 * bs;
    /* Tile i (keys start + i * TK ...) into stage i % S, one commit group per tile. */
    auto issue = [&](int i) {
        int tb = start + i * TK;
        T *dk = sk + (i % S) * TK * D, *dv = sv + (i % S) * TK * D;
#pragma unroll
        for (int j = 0; j < PER; j++) {
            int c = tid + j * THREADS, row = c / LANES, col = (c % LANES) * 8;
            int t = tb + row;
            const T *pk = kc, *pv = vc; /* any valid address when zero-filling */
            int n = 0;
            if (t < end) {
                int rel = t - base;
                size_t off = (((size_t)sbt[rel / bs] * bs + rel % bs) * KVH + kvh) * D + col;
                pk = kc + off;
                pv = vc + off;
                n = 16;
            }
            v4_cp16(dk + row * D + col, pk, n);
            v4_cp16(dv + row * D + col, pv, n);
        }
    };

    float m[MAX_G], l[MAX_G], acc[MAX_G][8];
#pragma unroll
    for (int g = 0; g < MAX_G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int j = 0; j < 8; j++) acc[g][j] = 0.f;
    }

    int ntiles = (end - start + TK - 1) / TK;
#pragma unroll
    for (int i = 0; i < S - 1; i++) {
        if (i < ntiles) issue(i);
        v4_commit(); /* empty groups keep the count uniform: wait_group S - 2 always means tile i */
    }
    for (int i = 0; i < ntiles; i++) {
        v4_wait<S - 2>(); /* this thread's copies of tile i have landed */
        __syncthreads();  /* everyone's have; and every warp is done with tile i - 1's stage */
        if (i + S - 1 < ntiles) issue(i + S - 1);
        v4_commit();
        const T *tk = sk + (i % S) * TK * D + lane * 8, *tv = sv + (i % S) * TK * D + lane * 8;
        int tb = start + i * TK, r0 = w * RW + half;
        float s[MAX_G][U];
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int row = r0 + u * R;
            ok[u] = tb + row < end;
            float k[8];
            cvt8<T>(*reinterpret_cast<const uint4 *>(tk + row * D), k);
#pragma unroll
            for (int g = 0; g < MAX_G; g++) {
                if (g < G) {
                    float d = 0.f;
#pragma unroll
                    for (int j = 0; j < 8; j++) d += qr[g][j] * k[j];
#pragma unroll
                    for (int o = LANES / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o, LANES);
                    s[g][u] = d;
                }
            }
        }
#pragma unroll
        for (int g = 0; g < MAX_G; g++) {
            if (g < G) {
                float mx = -INFINITY;
#pragma unroll
                for (int u = 0; u < U; u++) mx = ok[u] ? fmaxf(mx, s[g][u]) : mx;
#pragma unroll
                for (int o = LANES; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                float mn = fmaxf(m[g], mx);
                /* -inf only while this warp has seen no valid row: acc and l are 0 then */
                float c = mn == -INFINITY ? 1.f : __expf(m[g] - mn);
                m[g] = mn;
                l[g] *= c;
#pragma unroll
                for (int j = 0; j < 8; j++) acc[g][j] *= c;
#pragma unroll
                for (int u = 0; u < U; u++) s[g][u] = ok[u] ? __expf(s[g][u] - mn) : 0.f;
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float v[8];
            cvt8<T>(*reinterpret_cast<const uint4 *>(tv + (r0 + u * R) * D), v); /* zeros past end */
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

    /* Merge: the R row groups of a warp share its max; then the warps, through shared memory that
     * aliases the stages (all copies done, all warps past their last tile). */
    v4_wait<0>();
    __syncthreads();
    float *wacc = reinterpret_cast<float *>(v4_smem); /* [WARPS][G][D] */
    float *wstat = wacc + WARPS * G * D;              /* [WARPS][G][2] */
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
                float4 *p = reinterpret_cast<float4 *>(wacc + (w * G + g) * D + lane * 8);
                p[0] = make_float4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]);
                p[1] = make_float4(acc[g][4], acc[g][5], acc[g][6], acc[g][7]);
            }
            if (l32 == 0) {
                wstat[(w * G + g) * 2] = m[g];
                wstat[(w * G + g) * 2 + 1] = l[g];
            }
        }
    }
    __syncthreads();
    for (int i = tid; i < G * D; i += THREADS) {
        int g = i / D, d = i % D;
        float M = -INFINITY;
#pragma unroll
        for (int k = 0; k < WARPS; k++) M = fmaxf(M, wstat[(k * G + g) * 2]);
        float r = 0.f, L = 0.f;
        if (M != -INFINITY) { /* a warp without rows has m = -inf, l = 0, acc = 0: weight 0 */
#pragma unroll
            for (int k = 0; k < WARPS; k++) {
                float c = __expf(wstat[(k * G + g) * 2] - M);
                r += c * wacc[(k * G + g) * D + d];
                L += c * wstat[(k * G + g) * 2 + 1];
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

/* Keys per split. Shared: vk_decode_partition (what versions 1-3 use). Long: where that gives
 * full 512-key partitions (the batch fills the GPU), 1,024 instead: fewer splits (640 keys: one,
 * no combine pass) and fewer partials. Short: 256 where the scratch (sized by
 * vk_attention_decode_scratch_bytes for 512-key partitions) still holds the partials, more and
 * shorter blocks for the tail of the grid. Pure functions of the arguments (graph capture). */
static int v4_partition(const vk_attention_args *a, int mode) {
    int part = vk_decode_partition(a->num_seqs, a->KVH, a->max_context_len);
    if (part < VK_DECODE_PARTITION || mode == V4_PART_SHARED) return part;
    if (mode == V4_PART_LONG) return 2 * VK_DECODE_PARTITION;
    int shorter = VK_DECODE_PARTITION / 2;
    size_t ctx = a->max_context_len > 0 ? (size_t)a->max_context_len : 1;
    size_t need = sizeof(float) * (size_t)a->num_seqs * a->H * ((ctx + shorter - 1) / shorter) * (a->D + 2);
    return need <= vk_attention_decode_scratch_bytes(a->num_seqs, a->H, a->D, a->max_context_len) ? shorter : part;
}

template <typename T, int D, int MAX_G, int TK, int S, int WARPS, int MINB>
static cudaError_t launch_v4(const vk_attention_args *a, int part_mode, cudaStream_t s) {
    int part = v4_partition(a, part_mode);
    int max_splits = (a->max_context_len + part - 1) / part;
    if (max_splits < 1) max_splits = 1;
    int G = a->H / a->KVH;
    size_t stages = 2 * sizeof(T) * S * TK * D + sizeof(int) * (part / a->block_size + 2);
    size_t merge = sizeof(float) * WARPS * G * (D + 2);
    size_t smem = stages > merge ? stages : merge;
    void (*k)(const vk_attention_args, int, int) = decode_v4_kernel<T, D, MAX_G, TK, S, WARPS, MINB>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    k<<<dim3(a->KVH, a->num_seqs, max_splits), WARPS * 32, smem, s>>>(*a, max_splits, part);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    return max_splits > 1 ? vk_decode_combine(a, max_splits, part, s) : cudaSuccess;
}

/* Version 4's own configuration: TK 16, 6 stages, 4 warps; register arrays sized by the smallest
 * bound >= G (fewer registers, more blocks per SM). */
template <typename T, int D>
static cudaError_t launch_v4_default(const vk_attention_args *a, cudaStream_t s) {
    int G = a->H / a->KVH;
    if (G <= 1) return launch_v4<T, D, 1, 16, 6, 4, 4>(a, V4_PART_SHARED, s);
    if (G <= 2) return launch_v4<T, D, 2, 16, 6, 4, 4>(a, V4_PART_SHARED, s);
    if (G <= 4) return launch_v4<T, D, 4, 16, 6, 4, 4>(a, V4_PART_SHARED, s);
    return launch_v4<T, D, 8, 16, 6, 4, 2>(a, V4_PART_SHARED, s);
}

/* The variants timed by kernel_bench (bf16, D 128, G 4 only). Stage bytes per block = 2 (K, V)
 * x S x TK x 256 B; blocks per SM = min(228 KB / stages, 64K registers / (threads x regs)). */
typedef cudaError_t (*v4_launch_fn)(const vk_attention_args *, int, cudaStream_t);
struct v4_variant {
    const char *name;
    v4_launch_fn fn;
    int part_mode;
};
const v4_variant v4_variants[] = {
    {"v4 tk16 s6 w4 (default; 48 KB; 4 blocks/SM)", launch_v4<__nv_bfloat16, 128, 4, 16, 6, 4, 4>, V4_PART_SHARED},
    {"v4 tk16 s4 w4 (32 KB; 4 blocks/SM)", launch_v4<__nv_bfloat16, 128, 4, 16, 4, 4, 4>, V4_PART_SHARED},
    {"v4 tk16 s8 w4 (64 KB; 3 blocks/SM)", launch_v4<__nv_bfloat16, 128, 4, 16, 8, 4, 3>, V4_PART_SHARED},
    {"v4 tk32 s3 w4 (48 KB; 3 blocks/SM)", launch_v4<__nv_bfloat16, 128, 4, 32, 3, 4, 3>, V4_PART_SHARED},
    {"v4 tk32 s3 w8 (48 KB; 2 blocks/SM)", launch_v4<__nv_bfloat16, 128, 4, 32, 3, 8, 2>, V4_PART_SHARED},
    {"v4 tk32 s6 w8 (96 KB; 2 blocks/SM)", launch_v4<__nv_bfloat16, 128, 4, 32, 6, 8, 2>, V4_PART_SHARED},
    {"v4 default part 1024 (full batches)", launch_v4<__nv_bfloat16, 128, 4, 16, 6, 4, 4>, V4_PART_LONG},
    {"v4 default part 256 (full batches)", launch_v4<__nv_bfloat16, 128, 4, 16, 6, 4, 4>, V4_PART_SHORT},
};
const int v4_num_variants = (int)(sizeof v4_variants / sizeof v4_variants[0]);

} // namespace

cudaError_t vk_attention_decode_v4(const vk_attention_args *a, cudaStream_t s) {
    if (a->H % a->KVH || a->H / a->KVH > 8) return cudaErrorInvalidValue;
    if (a->D == 128) VK_DISPATCH(a->dt, return (launch_v4_default<T, 128>(a, s)));
    if (a->D == 64) VK_DISPATCH(a->dt, return (launch_v4_default<T, 64>(a, s)));
    return cudaErrorInvalidValue;
}

extern "C" int vk_attention_decode_v4_variants(void) { return v4_num_variants; }

extern "C" const char *vk_attention_decode_v4_variant_name(int variant) {
    return variant >= 0 && variant < v4_num_variants ? v4_variants[variant].name : nullptr;
}

extern "C" cudaError_t vk_attention_decode_v4x(const vk_attention_args *a, int variant, cudaStream_t s) {
    if (variant < 0 || variant >= v4_num_variants || a->KVH <= 0 || a->block_size <= 0) return cudaErrorInvalidValue;
    if (a->dt != VK_BF16 || a->D != 128 || a->H != 4 * a->KVH) return cudaErrorInvalidValue;
    if (!a->has_decode) return cudaSuccess;
    return v4_variants[variant].fn(a, v4_variants[variant].part_mode, s);
}
