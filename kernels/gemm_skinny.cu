/* Skinny matrix products for steps of a few tokens: y[n][out] = x[n][in] . W[out][in]^T with
 * 1 <= n <= 64, bf16/fp16 in, fp32 accumulation, storage-type or fp32 out.
 *
 * Pure weight streaming on tensor cores. The weights are the A operand of mma.sync m16n8k16
 * (16 output rows per instruction), x the B operand (n padded to NT = 8/16/32/64 columns).
 *
 * Operand layout trick: a lane of an m16n8k16 holds, for its row (A) or column (B), the k pairs
 * {2t, 2t+1} and {2t+8, 2t+9} (t = lane % 4). The reduction does not care which physical k a
 * "k slot" stands for as long as A and B agree, so lane t loads the 16 contiguous bytes
 * k0 + 8t .. k0 + 8t + 7 of its row (A) and of its x row (B) and feeds elements 0-3 to one mma
 * and 4-7 to the next: every operand load is one 16-byte vector, no ldmatrix, no shuffles.
 *
 * Streaming: each lane cp.asyncs exactly the weight vectors it later reads into a lane-private
 * slot of a shared-memory ring (conflict-free: 32 lanes x 16 contiguous bytes), so the bytes in
 * flight (~100 KB per SM) cost no registers. The x tile of each 64-wide k step (n x 64, padded rows:
 * conflict-free B reads) rides in the same ring stage, loaded once per CTA and shared by all its
 * rows. A CTA is 8 warps x MT m-tiles = 128 (MT 1) or 256 (MT 2) output rows; x is re-read from L2
 * once per CTA, so taller CTAs cut that traffic (n / rows of the weight bytes).
 *
 * Split over K without atomics: the K steps are cut into ks contiguous parts, one CTA each,
 * grouped in a thread-block cluster of ks CTAs (Hopper). Each CTA leaves its fp32 partial tile in
 * shared memory; after a cluster barrier CTA c sums rows [c*BM/ks, (c+1)*BM/ks) of all ks tiles
 * through distributed shared memory in rank order 0, 1, ..., ks-1, and writes them.
 *
 * Batch invariance: an output element's value depends only on its weight row, its x row, in and
 * ks: the k order inside a CTA (ring stages, then the two 32-wide halves, then the two mmas) and
 * the cross-CTA order are fixed, mma.sync computes each (row, column) independently of the other
 * columns, and the production ks is chosen from (out, in, SM count) only, never from n. MT and
 * NT do not change any sum. So a row of x gives bit-identical results at any n. */
#include <cooperative_groups.h>

#include "common.cuh"

namespace cg = cooperative_groups;
using namespace vk;

namespace {

constexpr int SK_WARPS = 8, SK_THREADS = SK_WARPS * 32;
constexpr int SK_BK = 64;          /* k per ring stage */
constexpr int SK_XLD = SK_BK + 8;  /* x tile row stride in elements: 144 bytes, B reads conflict-free */

template <int MT> struct sk_cfg {
    static constexpr int BM = SK_WARPS * 16 * MT;         /* output rows per CTA */
    static constexpr int W_STAGE = BM * SK_BK * 2;        /* weight bytes per stage */
    static constexpr int STAGES = MT == 1 ? 7 : 4;        /* ~96-112 KB of weights in flight */
    static constexpr int LANE_VECS = 4 * MT;              /* 16-byte vectors per lane per stage */
    static constexpr int PLD = BM + 4;                    /* partial tile [NT][PLD] fp32: conflict-free */
    template <int NT> static constexpr size_t smem() {
        size_t ring = (size_t)STAGES * (W_STAGE + NT * SK_XLD * 2);
        size_t part = (size_t)NT * PLD * 4;
        return ring > part ? ring : part;
    }
};

template <typename T> __device__ __forceinline__ void sk_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                             uint32_t a3, uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void sk_mma<__nv_bfloat16>(float c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                                                  uint32_t a3, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void sk_mma<__half>(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                                           uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void sk_cp16(void *smem, const void *gmem, bool valid) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int n = valid ? 16 : 0; /* 0: fill with zeros, read nothing */
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n) : "memory");
}
__device__ __forceinline__ void sk_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void sk_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

template <typename T, typename O, int NT, int MT>
__global__ void __launch_bounds__(SK_THREADS, 1)
    skinny_kernel(O *__restrict__ y, const T *__restrict__ x, const T *__restrict__ w, int n, int in, int out, int ks) {
    using C = sk_cfg<MT>;
    extern __shared__ __align__(16) unsigned char sk_smem[];
    unsigned char *wring = sk_smem; /* [STAGES][WARPS][LANE_VECS][32 lanes][16 B] */
    T *xring = reinterpret_cast<T *>(sk_smem + (size_t)C::STAGES * C::W_STAGE); /* [STAGES][NT][XLD] */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const int row0 = blockIdx.x * C::BM, part = blockIdx.y; /* cluster dims (1, ks, 1): rank == blockIdx.y */
    const int nst_all = (in + SK_BK - 1) / SK_BK;
    const int s_begin = (int)((long long)part * nst_all / ks);
    const int nst = (int)((long long)(part + 1) * nst_all / ks) - s_begin;

    /* This lane's weight rows: m-tile mt, half h -> row g (+8). */
    const T *wrow[MT][2];
    bool rok[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = row0 + warp * 16 * MT + mt * 16 + h * 8 + g;
            rok[mt][h] = r < out;
            wrow[mt][h] = w + (size_t)(r < out ? r : 0) * in + 8 * t;
        }
    unsigned char *wlane = wring + warp * (C::LANE_VECS * 512) + lane * 16;

    auto issue = [&](int st) {
        const int slot = st % C::STAGES, k0 = (s_begin + st) * SK_BK;
        unsigned char *wd = wlane + (size_t)slot * C::W_STAGE;
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++)
#pragma unroll
                for (int kk = 0; kk < 2; kk++) {
                    int k = k0 + kk * 32 + 8 * t;
                    bool ok = rok[mt][h] && k < in; /* in % 8 == 0: a vector is all in or all out */
                    sk_cp16(wd + ((mt * 2 + h) * 2 + kk) * 512, ok ? wrow[mt][h] + k0 + kk * 32 : w, ok);
                }
        T *xd = xring + (size_t)slot * NT * SK_XLD;
#pragma unroll
        for (int u = tid; u < NT * 8; u += SK_THREADS) {
            int r = u >> 3, c = u & 7, k = k0 + c * 8;
            bool ok = r < n && k < in; /* padded rows read as zeros */
            sk_cp16(xd + r * SK_XLD + c * 8, ok ? x + (size_t)r * in + k : x, ok);
        }
    };

    float acc[MT][NT / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NT / 8; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[mt][j][i] = 0.f;

#pragma unroll
    for (int st = 0; st < C::STAGES - 1; st++) {
        if (st < nst) issue(st);
        sk_commit(); /* empty groups keep the wait count uniform */
    }
    for (int st = 0; st < nst; st++) {
        sk_wait<C::STAGES - 2>(); /* this thread's copies of stage st have landed */
        __syncthreads();           /* everyone's (x tile), and stage st-1's slot is free again */
        if (st + C::STAGES - 1 < nst) issue(st + C::STAGES - 1);
        sk_commit();
        const int slot = st % C::STAGES;
        const unsigned char *ws = wlane + (size_t)slot * C::W_STAGE;
        const T *xs = xring + (size_t)slot * NT * SK_XLD + g * SK_XLD + 8 * t;
#pragma unroll
        for (int kk = 0; kk < 2; kk++) {
            uint4 a[MT][2];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++) a[mt][h] = *reinterpret_cast<const uint4 *>(ws + ((mt * 2 + h) * 2 + kk) * 512);
#pragma unroll
            for (int j = 0; j < NT / 8; j++) {
                uint4 b = *reinterpret_cast<const uint4 *>(xs + j * 8 * SK_XLD + kk * 32);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    /* a0 = (row g, slots 2t..), a1 = (row g+8, 2t..), a2 = (row g, 2t+8..), a3 = (row g+8, 2t+8..) */
                    sk_mma<T>(acc[mt][j], a[mt][0].x, a[mt][1].x, a[mt][0].y, a[mt][1].y, b.x, b.y);
                    sk_mma<T>(acc[mt][j], a[mt][0].z, a[mt][1].z, a[mt][0].w, a[mt][1].w, b.z, b.w);
                }
            }
        }
    }
    sk_wait<0>();
    __syncthreads(); /* the ring is free: reuse it for the partial tile */

    float *P = reinterpret_cast<float *>(sk_smem); /* [NT][PLD]: column (token) major */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < NT / 8; j++) {
            int rl = warp * 16 * MT + mt * 16 + g, c = j * 8 + 2 * t;
            P[c * C::PLD + rl] = acc[mt][j][0];
            P[(c + 1) * C::PLD + rl] = acc[mt][j][1];
            P[c * C::PLD + rl + 8] = acc[mt][j][2];
            P[(c + 1) * C::PLD + rl + 8] = acc[mt][j][3];
        }

    const int rs = C::BM / ks, rbase = part * rs; /* the rows this CTA finishes */
    constexpr int V = 4;                          /* elements per thread per pass: loads in flight */
    if (ks == 1) {
        __syncthreads();
        for (int e0 = tid; e0 < n * rs; e0 += SK_THREADS) {
            int c = e0 / rs, r = rbase + e0 % rs, grow = row0 + r;
            if (grow >= out) continue;
            float v = P[c * C::PLD + r];
            if constexpr (sizeof(O) == 4) y[(size_t)c * out + grow] = v;
            else y[(size_t)c * out + grow] = from_f<T>(v);
        }
        return;
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap(); /* clusters need sm_90: the host never picks ks > 1 below it (vk_gemm_skinny_ex refuses) */
#else
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync(); /* every CTA's partial tile is written and visible cluster-wide */
    for (int e0 = tid; e0 < n * rs; e0 += SK_THREADS * V) {
        int idx[V];
        float v[V];
#pragma unroll
        for (int q = 0; q < V; q++) {
            int e = e0 + q * SK_THREADS;
            e = e < n * rs ? e : e0; /* tail lanes recompute a valid element, stored once below */
            idx[q] = (e / rs) * C::PLD + rbase + e % rs;
            v[q] = *cluster.map_shared_rank(P + idx[q], 0);
        }
        for (int p = 1; p < ks; p++) /* fixed order: rank 0, 1, ..., ks-1 */
#pragma unroll
            for (int q = 0; q < V; q++) v[q] += *cluster.map_shared_rank(P + idx[q], p);
#pragma unroll
        for (int q = 0; q < V; q++) {
            int e = e0 + q * SK_THREADS;
            if (e >= n * rs) break;
            int c = e / rs, grow = row0 + rbase + e % rs;
            if (grow >= out) continue;
            if constexpr (sizeof(O) == 4) y[(size_t)c * out + grow] = v[q];
            else y[(size_t)c * out + grow] = from_f<T>(v[q]);
        }
    }
    cluster.sync(); /* no CTA leaves while another still reads its shared memory */
#endif
}

template <typename T, typename O, int NT, int MT>
cudaError_t launch_skinny(void *y, const void *x, const void *w, int n, int in, int out, int ks, cudaStream_t s) {
    using C = sk_cfg<MT>;
    auto k = skinny_kernel<T, O, NT, MT>;
    const size_t smem = C::template smem<NT>();
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((out + C::BM - 1) / C::BM), (unsigned)ks, 1);
    cfg.blockDim = dim3(SK_THREADS, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = (unsigned)ks;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = ks > 1 ? 1 : 0;
    e = cudaLaunchKernelEx(&cfg, k, (O *)y, (const T *)x, (const T *)w, n, in, out, ks);
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}

template <typename T, typename O, int MT>
cudaError_t dispatch_nt(void *y, const void *x, const void *w, int n, int in, int out, int ks, cudaStream_t s) {
    if (n <= 8) return launch_skinny<T, O, 8, MT>(y, x, w, n, in, out, ks, s);
    if (n <= 16) return launch_skinny<T, O, 16, MT>(y, x, w, n, in, out, ks, s);
    if (n <= 32) return launch_skinny<T, O, 32, MT>(y, x, w, n, in, out, ks, s);
    return launch_skinny<T, O, 64, MT>(y, x, w, n, in, out, ks, s);
}

template <typename T, typename O>
cudaError_t dispatch(void *y, const void *x, const void *w, int n, int in, int out, int mt, int ks, cudaStream_t s) {
    if (mt == 1) return dispatch_nt<T, O, 1>(y, x, w, n, in, out, ks, s);
    return dispatch_nt<T, O, 2>(y, x, w, n, in, out, ks, s);
}

struct sk_device {
    int sms, major;
    size_t smem_optin;
};

cudaError_t device_info(sk_device *d) {
    int dev, v;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&d->sms, cudaDevAttrMultiProcessorCount, dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&d->major, cudaDevAttrComputeCapabilityMajor, dev)) != cudaSuccess) return e;
    if ((e = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) != cudaSuccess) return e;
    d->smem_optin = (size_t)v;
    return cudaSuccess;
}

size_t smem_needed(int n, int mt) {
    int nt = n <= 8 ? 8 : n <= 16 ? 16 : n <= 32 ? 32 : 64;
    switch (nt) {
    case 8: return mt == 1 ? sk_cfg<1>::smem<8>() : sk_cfg<2>::smem<8>();
    case 16: return mt == 1 ? sk_cfg<1>::smem<16>() : sk_cfg<2>::smem<16>();
    case 32: return mt == 1 ? sk_cfg<1>::smem<32>() : sk_cfg<2>::smem<32>();
    default: return mt == 1 ? sk_cfg<1>::smem<64>() : sk_cfg<2>::smem<64>();
    }
}

} // namespace

/* The K split: enough 128-row CTAs to cover the SMs, at most 4 per cluster (clusters of 8
 * one-CTA-per-SM blocks may not pack into every GPC), and at least 4 ring stages per CTA. It
 * depends on the shape and the device only, never on n: that is what keeps results
 * batch-invariant. */
extern "C" int vk_gemm_skinny_splits(int in, int out) {
    sk_device d;
    if (device_info(&d) != cudaSuccess || d.major < 9) return 1; /* clusters: Hopper and later */
    int rows = (out + sk_cfg<1>::BM - 1) / sk_cfg<1>::BM, stages = (in + SK_BK - 1) / SK_BK;
    int ks = 1;
    while (ks < 4 && (long long)rows * ks < d.sms && stages / (ks * 2) >= 4) ks *= 2;
    return ks;
}

/* CTA height: 128 rows unless even 256-row CTAs make two waves (the LM head); taller CTAs read
 * x from L2 half as often, which only matters when n is large and the SMs stay busy anyway. */
static int pick_mt(int n, int out, int ks, int sms) {
    long long ctas256 = (long long)((out + sk_cfg<2>::BM - 1) / sk_cfg<2>::BM) * ks;
    return n > 16 && ctas256 >= 2LL * sms ? 2 : 1;
}

extern "C" cudaError_t vk_gemm_skinny_ex(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n,
                                         int in, int out, int mt, int ks, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    if (n > VK_GEMM_SKINNY_MAX_N || in <= 0 || in % 8 || out <= 0 || (mt != 1 && mt != 2) ||
        (ks != 1 && ks != 2 && ks != 4 && ks != 8))
        return cudaErrorInvalidValue;
    sk_device d;
    cudaError_t e = device_info(&d);
    if (e != cudaSuccess) return e;
    if ((ks > 1 && d.major < 9) || smem_needed(n, mt) > d.smem_optin) return cudaErrorNotSupported;
    if (f32_out) VK_DISPATCH(dt, return (dispatch<T, float>(y, x, w, n, in, out, mt, ks, s)));
    VK_DISPATCH(dt, return (dispatch<T, T>(y, x, w, n, in, out, mt, ks, s)));
    return cudaErrorInvalidValue;
}

extern "C" cudaError_t vk_gemm_skinny(vk_dtype dt, int f32_out, void *y, const void *x, const void *w, int n, int in,
                                      int out, cudaStream_t s) {
    if (n <= 0) return cudaSuccess;
    sk_device d;
    cudaError_t e = device_info(&d);
    if (e != cudaSuccess) return e;
    int ks = vk_gemm_skinny_splits(in, out);
    return vk_gemm_skinny_ex(dt, f32_out, y, x, w, n, in, out, pick_mt(n, out, ks, d.sms), ks, s);
}
