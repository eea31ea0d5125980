/* Times the production Vesta kernels (and cuBLAS bf16 GEMM, the ceiling the backend builds on) at
 * Llama-3-8B shapes, on random data, with CUDA events: median of 20 after 3 warm-ups, rotating
 * over several input sets where the data would fit in L2. Reports achieved GB/s (bytes that must
 * move: inputs read once, outputs written once) or TFLOP/s. Correctness is checked by
 * tests/kernels (scripts/gpu-run.sh runs it first). Usage: kernel_bench [csv-file] */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <string>

#include "../../tests/kernels/kernel_ref.h"

using namespace ref;

static FILE *g_csv;

static float time_ms(const std::function<void()> &f) { return median_ms([&](int) { f(); }); }

static void report(const char *name, float ms, double bytes, double flops) {
    double gbs = bytes / (ms * 1e-3) / 1e9, tfs = flops / (ms * 1e-3) / 1e12;
    printf("%-44s %9.3f ms  %8.1f GB/s  %7.1f TFLOP/s\n", name, ms, gbs, tfs);
    if (g_csv) fprintf(g_csv, "%s,%.4f,%.1f,%.2f\n", name, ms, gbs, tfs);
}

static void *dalloc_rand(size_t elems, uint64_t seed) {
    void *p;
    CK(cudaMalloc(&p, elems * 2));
    CK(vk_fill_random(VK_BF16, p, elems, 1.f, seed, 0));
    return p;
}


/* Calibration for the decode-attention rows: the same paged K/V reads with no arithmetic (what the
 * cache layout and block tables allow), and a contiguous read of as many bytes (the read-only
 * ceiling). Grid (KVH, seqs, splits), 128 threads, 16 lanes of 16 bytes per 128-dim bf16 row, U
 * rows of K and of V in flight per thread; an xor keeps the loads live. */
template <int U>
__global__ void paged_read_kernel(const uint4 *kc, const uint4 *vc, const int32_t *bt, int mbps, int ctx, int KVH,
                                  int splits, unsigned *sink) {
    int kvh = blockIdx.x, seq = blockIdx.y, sp = blockIdx.z;
    int per = (ctx + splits - 1) / splits, start = sp * per, end = min(ctx, start + per);
    int lane = threadIdx.x % 16, r8 = threadIdx.x / 16;
    unsigned acc = 0;
    for (int r0 = start + r8; r0 < end; r0 += 8 * U) {
        uint4 k[U], v[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            int r = r0 + u * 8;
            if (r < end) {
                size_t row = ((size_t)bt[(size_t)seq * mbps + r / 16] * 16 + r % 16) * KVH + kvh;
                k[u] = kc[row * 16 + lane];
                v[u] = vc[row * 16 + lane];
            } else {
                k[u] = v[u] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) acc ^= k[u].x ^ k[u].y ^ k[u].z ^ k[u].w ^ v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

__global__ void linear_read_kernel(const uint4 *p, size_t n, unsigned *sink) {
    unsigned acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 x = p[i];
        acc ^= x.x ^ x.y ^ x.z ^ x.w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;
}

/* Sampling over the Llama-3 vocabulary: B1's 512 rows at temperature 1, B2's single greedy row,
 * and the other paths (logprobs, min_p, the select path of top-k / top-p) at 256 rows. GB/s
 * counts one read of the logits, the floor of every path. */
static void bench_sampling(int V) {
    const int RMAX = 512;
    float *logits, *work;
    int32_t *counts, *ids;
    float *bias;
    vk_sample_row *prm;
    vk_sample_out *out;
    CK(cudaMalloc(&logits, (size_t)RMAX * V * 4));
    CK(cudaMalloc(&work, (size_t)RMAX * V * 4));
    CK(cudaMalloc(&counts, (size_t)RMAX * V * 4));
    CK(cudaMemset(counts, 0, (size_t)RMAX * V * 4));
    CK(cudaMalloc(&ids, 4));
    CK(cudaMalloc(&bias, 4));
    CK(cudaMalloc(&prm, RMAX * sizeof(vk_sample_row)));
    CK(cudaMalloc(&out, RMAX * sizeof(vk_sample_out)));
    std::vector<float> h((size_t)RMAX * V);
    rng r(3);
    for (auto &x : h) x = r.sym(5.f);
    CK(cudaMemcpy(logits, h.data(), h.size() * 4, cudaMemcpyHostToDevice));
    struct mode {
        int rows;
        float t, top_p, min_p;
        int top_k, logprobs;
        const char *what;
    };
    /* top-k / top-p on these uniform logits: top-p keeps ~90 % of the vocabulary, its worst case */
    const mode modes[] = {{512, 1.f, 1.f, 0.f, 0, -1, "T=1 (B1)"},      {256, 1.f, 1.f, 0.f, 0, -1, "T=1"},
                          {1, 1.f, 1.f, 0.f, 0, -1, "T=1"},             {512, 0.f, 1.f, 0.f, 0, -1, "greedy"},
                          {256, 0.f, 1.f, 0.f, 0, -1, "greedy"},        {1, 0.f, 1.f, 0.f, 0, -1, "greedy (B2)"},
                          {256, 1.f, 1.f, 0.1f, 0, -1, "T=1 min-p=0.1"}, {256, 1.f, 1.f, 0.f, 0, 5, "T=1 logprobs=5"},
                          {256, 1.f, 1.f, 0.f, 50, -1, "T=1 top-k=50"}, {256, 1.f, 0.9f, 0.f, 0, -1, "T=1 top-p=0.9"},
                          {256, 1.f, 0.9f, 0.f, 50, -1, "T=1 top-k=50 top-p=0.9"}};
    for (const mode &m : modes) {
        std::vector<vk_sample_row> p(m.rows);
        for (int i = 0; i < m.rows; i++) {
            memset(&p[i], 0, sizeof p[i]);
            p[i].temperature = m.t;
            p[i].top_p = m.top_p;
            p[i].min_p = m.min_p;
            p[i].top_k = m.top_k;
            p[i].repetition_penalty = 1.f;
            p[i].num_logprobs = m.logprobs;
            p[i].seed = i;
        }
        CK(cudaMemcpy(prm, p.data(), m.rows * sizeof(vk_sample_row), cudaMemcpyHostToDevice));
        float ms = time_ms([&] { CK(vk_sample(logits, m.rows, V, prm, ids, bias, work, counts, out, 0)); });
        char name[128];
        snprintf(name, sizeof name, "sample rows=%d V=%d %s", m.rows, V, m.what);
        report(name, ms, (double)m.rows * V * 4, 0);
    }
    for (void *q : {(void *)logits, (void *)work, (void *)counts, (void *)ids, (void *)bias, (void *)prm, (void *)out})
        cudaFree(q);
}

/* One attention launch at Llama-3-8B head size on random data (block size 16): the paged caches,
 * block tables (shuffled: fragmented, or in order), query rows and prefill tiles, freed with it.
 * Every sequence has ctx keys and its last qlen rows as queries; bound > ctx: the launch's
 * max_context_len, as a decode graph's (the model's longest context). */
struct attn_case {
    static const int D = 128, bs = 16;
    vk_attention_args a = {};
    int ntok, ctx;
    bool wide_picked = false;
    std::vector<void *> mem;

    attn_case(int ns, int qlen, int ctx, int KVH, bool shuffle, bool inv, bool grp, bool longest_first, int wide,
              int bound = 0) {
        const int H = 4 * KVH, W = (H + 2 * KVH) * D;
        const int mbps = (ctx + bs - 1) / bs, nblocks = ns * mbps;
        const size_t cache = (size_t)nblocks * bs * KVH * D;
        ntok = ns * qlen;
        this->ctx = ctx;
        void *kc = keep(dalloc_rand(cache, 9)), *vc = keep(dalloc_rand(cache, 10));
        void *q = keep(dalloc_rand((size_t)ntok * W, 11)), *out = keep(dalloc((size_t)ntok * H * D * 2));
        std::vector<int32_t> bt((size_t)ns * mbps), qs(ns + 1), cl(ns, ctx);
        rng r(42);
        for (size_t i = 0; i < bt.size(); i++) bt[i] = (int32_t)i;
        if (shuffle)
            for (size_t i = bt.size() - 1; i > 0; i--) std::swap(bt[i], bt[r.below((int)i + 1)]); /* fragmented */
        for (int i = 0; i <= ns; i++) qs[i] = i * qlen;
        std::vector<int32_t> tiles(2 * vk_prefill_tiles_max(ntok, ns));
        const int mode = (inv ? VK_TILES_INVARIANT : grp ? VK_TILES_GROUP : VK_TILES_HEAD) |
                         (longest_first ? VK_TILES_LONGEST_FIRST : 0) | (wide ? VK_TILES_WIDE : 0);
        int nt = vk_prefill_tiles_build(qs.data(), cl.data(), ns, mode, H, KVH, tiles.data(), (int)tiles.size() / 2);
        wide_picked = wide && vk_prefill_wide(qs.data(), ns, H, KVH, ctx);
        a.dt = VK_BF16;
        a.out = out;
        a.q = q;
        a.q_stride = W;
        a.k_cache = kc;
        a.v_cache = vc;
        a.query_start = (int32_t *)upload(qs);
        a.context_lens = (int32_t *)upload(cl);
        a.block_tables = (int32_t *)upload(bt);
        a.num_seqs = ns;
        a.max_blocks_per_seq = mbps;
        a.H = H;
        a.KVH = KVH;
        a.D = D;
        a.block_size = bs;
        a.scale = 0.0883883f;
        a.max_context_len = bound > ctx ? bound : ctx;
        a.has_decode = qlen == 1;
        a.prefill_tiles = (int32_t *)upload(tiles);
        a.num_prefill_tiles = nt;
        a.scratch = keep(dalloc(vk_attention_scratch_bytes(ns, H, D, a.max_context_len)));
        a.batch_invariant = inv;
        a.decode_only = qlen == 1;
        a.group_heads = grp;
        a.wide_tiles = wide;
    }
    ~attn_case() {
        for (void *p : mem) cudaFree(p);
    }
    attn_case(const attn_case &) = delete;
    attn_case &operator=(const attn_case &) = delete;

    void run(int dv, int pv, cudaStream_t s) const { CK(vk_attention_v(&a, a.batch_invariant ? 0 : dv, pv, s)); }
    /* bytes that must move: the keys and values once */
    double kv_bytes() const { return 2.0 * a.num_seqs * ctx * a.KVH * D * 2; }
    double flops() const {
        double qlen = (double)ntok / a.num_seqs;
        return qlen == 1 ? 4.0 * a.num_seqs * ctx * a.H * D : 4.0 * a.num_seqs * a.H * D * (qlen * (qlen + 1) / 2);
    }

  private:
    void *keep(void *p) {
        mem.push_back(p);
        return p;
    }
    static void *dalloc(size_t bytes) {
        void *p;
        CK(cudaMalloc(&p, bytes));
        return p;
    }
    void *upload(const std::vector<int32_t> &v) {
        void *p = keep(dalloc(v.size() * 4 + 4));
        CK(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
        return p;
    }
};

/* Can a compute-bound product and the memory-bound decode attention share the GPU? A prefill
 * chunk's gate|up product (cuBLAS, n tokens) on one stream and B1's decode attention (512
 * sequences over 640 keys, production kernel) on another: each alone, one after the other, and
 * both at once, with cuBLAS told to use all SMs or fewer (cublasSetSmCountTarget) so that the
 * attention's blocks find SMs free. Overlap = the time saved against one after the other, as a
 * share of the shorter of the two. */
static void bench_overlap(cublasHandle_t cb, int hidden, int F) {
    cudaStream_t sg, sa;
    CK(cudaStreamCreate(&sg));
    CK(cudaStreamCreate(&sa));
    int sms = 0;
    CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    attn_case att(512, 1, 640, 8, true, false, false, false, 0);
    for (int n : {1024, 2048, 4096}) {
        const int out = 2 * F, in = hidden;
        void *x = dalloc_rand((size_t)n * in, 1), *w = dalloc_rand((size_t)out * in, 2), *y;
        CK(cudaMalloc(&y, (size_t)n * out * 2));
        float alpha = 1, beta = 0;
        auto gemm = [&] {
            if (cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in,
                             &beta, y, CUDA_R_16BF, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
                fprintf(stderr, "cublasGemmEx failed\n");
                exit(1);
            }
        };
        const double flops = 2.0 * n * out * in;
        for (int target : {0, sms - 12, sms - 24, sms - 36, sms - 48}) {
            cublasSetStream(cb, sg);
            cublasSetSmCountTarget(cb, target);
            float tg = time_ms([&] { gemm(); });
            float ta = time_ms([&] { att.run(0, 2, sa); });
            float seq = time_ms([&] {
                gemm();
                att.run(0, 2, sg);
            });
            float both_gf = time_ms([&] {
                gemm();
                att.run(0, 2, sa);
            });
            float both_af = time_ms([&] {
                att.run(0, 2, sa);
                gemm();
            });
            char name[160];
            snprintf(name, sizeof name, "overlap gemm n=%d out=%d in=%d sm_target=%d alone", n, out, in, target);
            report(name, tg, 0, flops);
            report("  decode attention 512 x 640 alone", ta, att.kv_bytes(), att.flops());
            report("  one after the other", seq, att.kv_bytes(), flops);
            report("  both, gemm launched first", both_gf, att.kv_bytes(), flops);
            report("  both, attention launched first", both_af, att.kv_bytes(), flops);
            float best = std::min(both_gf, both_af);
            printf("  overlap: %.0f %% of the shorter saved (%.3f ms)\n", 100.0 * (seq - best) / std::min(tg, ta),
                   seq - best);
        }
        cudaFree(x);
        cudaFree(w);
        cudaFree(y);
    }
    cublasSetSmCountTarget(cb, 0);
    cublasSetStream(cb, 0);
    cudaStreamDestroy(sg);
    cudaStreamDestroy(sa);
}

/* Two disjoint SM partitions of the GPU (green contexts): the first of at least `want` SMs, the
 * second the rest, each with a stream whose kernels run only on its SMs. */
struct green_split {
    CUgreenCtx g[2] = {};
    cudaStream_t s[2] = {};
    int sms[2] = {};

    bool create(int want)
    {
        CUdevice dev;
        CUdevResource all, part[2];
        unsigned n = 1;
        if (cuInit(0) != CUDA_SUCCESS || cuDeviceGet(&dev, 0) != CUDA_SUCCESS ||
            cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM) != CUDA_SUCCESS)
            return false;
        if (cuDevSmResourceSplitByCount(&part[0], &n, &all, &part[1], 0, (unsigned)want) != CUDA_SUCCESS || n != 1)
            return false;
        for (int i = 0; i < 2; i++) {
            CUdevResourceDesc d;
            CUstream st;
            if (cuDevResourceGenerateDesc(&d, &part[i], 1) != CUDA_SUCCESS ||
                cuGreenCtxCreate(&g[i], d, dev, CU_GREEN_CTX_DEFAULT_STREAM) != CUDA_SUCCESS ||
                cuGreenCtxStreamCreate(&st, g[i], CU_STREAM_NON_BLOCKING, 0) != CUDA_SUCCESS)
                return false;
            s[i] = (cudaStream_t)st;
            sms[i] = (int)part[i].sm.smCount;
        }
        return true;
    }
    ~green_split()
    {
        for (int i = 0; i < 2; i++) {
            if (s[i]) cuStreamDestroy((CUstream)s[i]);
            if (g[i]) cuGreenCtxDestroy(g[i]);
        }
    }
};

/* Wall-clock median of 15 runs (after 3) of `reps` calls of f, which queues work on the streams
 * given, per call; timed from the first launch to the end of every stream's work, so concurrent
 * streams count once. */
static float wall_ms(const std::function<void()> &f, std::initializer_list<cudaStream_t> ss, int reps = 1)
{
    std::vector<float> t;
    for (int i = 0; i < 18; i++) {
        for (cudaStream_t s : ss) CK(cudaStreamSynchronize(s));
        auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; r++) f();
        for (cudaStream_t s : ss) CK(cudaStreamSynchronize(s));
        CK(cudaGetLastError());
        if (i >= 3)
            t.push_back(std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/* What one SM can read: B1's decode attention (production, version 7's bulk-copy variant 1 and
 * 12-warp variant 3) and a plain paged read of the same K/V (paged_read_kernel, U = 8) on
 * partitions of 16-64 SMs and on all of them. An overlap on partitioned SMs needs the attention near the full bandwidth on a
 * small share of the SMs (bench_overlap_green). */
static void bench_partition_reads()
{
    attn_case att(512, 1, 640, 8, true, false, false, false, 0);
    unsigned *sink;
    CK(cudaMalloc(&sink, 4));
    const int mbps = att.a.max_blocks_per_seq;
    const double bytes = att.kv_bytes();
    char name[160];
    auto rows = [&](cudaStream_t st, int sms) {
        const std::pair<const char *, int> vs[] = {{"production", 0},
                                                   {"v7 variant 1 (bulk row copies)", VK_DECODE_V7_VARIANT_BASE + 1},
                                                   {"v7 variant 3", VK_DECODE_V7_VARIANT_BASE + 3}};
        for (auto &v : vs) {
            vk_attention_args a = att.a;
            a.sms = sms;
            float ms = wall_ms([&] { CK(vk_attention_v(&a, v.second, 2, st)); }, {st}, 8);
            snprintf(name, sizeof name, "  %s on %d SMs", v.first, sms);
            report(name, ms, bytes, 0);
            printf("    %.1f GB/s per SM\n", bytes / (ms * 1e-3) / 1e9 / sms);
        }
        float ms = wall_ms(
            [&] {
                paged_read_kernel<8><<<dim3(8, 512, 1), 128, 0, st>>>((const uint4 *)att.a.k_cache,
                                                                      (const uint4 *)att.a.v_cache, att.a.block_tables,
                                                                      mbps, 640, 8, 1, sink);
            },
            {st}, 8);
        snprintf(name, sizeof name, "  paged read only on %d SMs", sms);
        report(name, ms, bytes, 0);
        printf("    %.1f GB/s per SM\n", bytes / (ms * 1e-3) / 1e9 / sms);
    };
    printf("partition reads: 512 sequences x 640 keys (%.0f MB a layer)\n", bytes / 1e6);
    cudaStream_t s0;
    CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
    int all = 0;
    CK(cudaDeviceGetAttribute(&all, cudaDevAttrMultiProcessorCount, 0));
    rows(s0, all);
    for (int want : {16, 32, 48, 64}) {
        green_split g;
        if (!g.create(want)) {
            printf("  green split of %d SMs: not available\n", want);
            continue;
        }
        rows(g.s[0], g.sms[0]);
    }
    cudaStreamDestroy(s0);
    cudaFree(sink);
}

/* One product y[n][out] = x[n][in] . w[out][in]^T through cuBLASLt with the fastest of its first 16
 * candidates for `sms` SMs (CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET), each also with its K range
 * split 2-4 ways, timed on stream `s`, so on a green partition the pick is made on the SMs it
 * will run on. */
struct lt_pick {
    cublasLtHandle_t lt = nullptr;
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulAlgo_t algo = {};
    const void *x, *w;
    void *y, *ws;
    size_t wsb;
    float ms = -1; /* the pick's time: median of wall_ms */

    lt_pick(cublasLtHandle_t h, int n, int in, int out, const void *x_, const void *w_, void *y_, void *ws_,
            size_t wsb_, int sms, cudaStream_t s)
        : lt(h), x(x_), w(w_), y(y_), ws(ws_), wsb(wsb_)
    {
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        const int32_t target = sms;
        cublasLtMatmulPreference_t pref = nullptr;
        cublasLtMatmulHeuristicResult_t cand[16];
        int found = 0;
        if (cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) ||
            cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta) ||
            cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb) ||
            cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET, &target, sizeof target) ||
            cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, in, out, in) ||
            cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, in, n, in) ||
            cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, out, n, out) || cublasLtMatmulPreferenceCreate(&pref) ||
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb) ||
            cublasLtMatmulAlgoGetHeuristic(lt, desc, la, lb, lc, lc, pref, 16, cand, &found)) {
            fprintf(stderr, "cublasLt setup failed\n");
            exit(1);
        }
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatmulAlgo_t best_algo = {};
        for (int i = 0; i < found; i++) {
            if (cand[i].state != CUBLAS_STATUS_SUCCESS) continue;
            /* each candidate as offered, then with its K range split 2-4 ways (an fp32 reduction
             * in the workspace): more tiles where n leaves a wave part-empty */
            for (int32_t split : {1, 2, 3, 4}) {
                algo = cand[i].algo;
                if (split > 1 && !with_split(split)) continue;
                const float t = wall_ms([&] { run(s); }, {s}, 3);
                if (ms < 0 || t < ms) ms = t, best = i, best_split = split, best_algo = algo;
            }
        }
        if (best < 0) {
            fprintf(stderr, "cublasLt: no candidate ran\n");
            exit(1);
        }
        algo = best_algo;
        offered = found;
    }
    ~lt_pick()
    {
        for (cublasLtMatrixLayout_t l : {la, lb, lc})
            if (l) cublasLtMatrixLayoutDestroy(l);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
    void run(cudaStream_t s) const
    {
        const float alpha = 1, beta = 0;
        if (cublasLtMatmul(lt, desc, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &algo, ws, wsb, s) !=
            CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "cublasLtMatmul failed\n");
            exit(1);
        }
    }

    int best = -1, best_split = 1, offered = 0; /* the pick: candidate, K split; candidates offered */

  private:
    /* algo with its K range split `split` ways, if cuBLASLt accepts that for this shape */
    bool with_split(int32_t split)
    {
        const uint32_t red = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
        cublasLtMatmulHeuristicResult_t r;
        return cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split, sizeof split) ==
                   CUBLAS_STATUS_SUCCESS &&
               cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red, sizeof red) ==
                   CUBLAS_STATUS_SUCCESS &&
               cublasLtMatmulAlgoCheck(lt, desc, la, lb, lc, lc, &algo, &r) == CUBLAS_STATUS_SUCCESS &&
               r.state == CUBLAS_STATUS_SUCCESS && r.workspaceSize <= wsb;
    }
};

/* Run 167: cuBLAS told 116 of 132 SMs (cublasSetSmCountTarget) ran a prefill chunk's MLP 30-43 %
 * slower than on all of them, where 12 % would be proportional. Is that its picks or the
 * partition? Eight layers of gate|up + down at n tokens through cuBLASLt, the candidates timed on
 * the partition itself (lt_pick), beside B1's decode attention (production and version 7's
 * 12-warp variant 3) on the other SMs. */
static void bench_partition_gemm(int hidden, int F)
{
    const int layers = 8, v3 = VK_DECODE_V7_VARIANT_BASE + 3;
    const size_t wsb = (size_t)64 << 20;
    cublasLtHandle_t lt;
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublasLtCreate failed\n");
        exit(1);
    }
    auto dmem = [](size_t bytes) {
        void *p;
        CK(cudaMalloc(&p, bytes));
        return p;
    };
    void *ws = dmem(wsb);
    cudaStream_t s0;
    CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
    attn_case att(512, 1, 640, 8, true, false, false, false, 0);
    const int nmax = 2048;
    void *x = dalloc_rand((size_t)nmax * hidden, 1), *wgu = dalloc_rand((size_t)2 * F * hidden, 2);
    void *wd = dalloc_rand((size_t)hidden * F, 3), *act = dalloc_rand((size_t)nmax * F, 4);
    void *y = dmem((size_t)nmax * 2 * F * 2), *y2 = dmem((size_t)nmax * hidden * 2);
    int all = 0;
    CK(cudaDeviceGetAttribute(&all, cudaDevAttrMultiProcessorCount, 0));
    auto attn = [&](cudaStream_t st, int sms, int v) {
        vk_attention_args a = att.a;
        a.sms = sms;
        CK(vk_attention_v(&a, v, 2, st));
    };
    auto mlp = [](const lt_pick &gu, const lt_pick &dn, cudaStream_t st) {
        gu.run(st);
        dn.run(st);
    };
    auto eight = [&](const std::function<void()> &f, std::initializer_list<cudaStream_t> ss) {
        return layers * wall_ms(f, ss, layers);
    };
    char name[200];
    for (int n : {1024, 2048}) {
        const double flops = 2.0 * n * 3.0 * F * hidden * layers, bytes = att.kv_bytes() * layers;
        lt_pick gu_all(lt, n, hidden, 2 * F, x, wgu, y, ws, wsb, all, s0);
        lt_pick dn_all(lt, n, F, hidden, act, wd, y2, ws, wsb, all, s0);
        const float m = eight([&] { mlp(gu_all, dn_all, s0); }, {s0});
        const float seq = eight(
            [&] {
                mlp(gu_all, dn_all, s0);
                attn(s0, 0, 0);
            },
            {s0});
        snprintf(name, sizeof name, "partition gemm n=%d: mlp x%d, cuBLASLt picked on all %d SMs", n, layers, all);
        report(name, m, 0, flops);
        printf("    picks: gate|up candidate %d of %d split %d, down candidate %d of %d split %d\n", gu_all.best,
               gu_all.offered, gu_all.best_split, dn_all.best, dn_all.offered, dn_all.best_split);
        report("  with the attention one after the other", seq, bytes, flops);
        for (int want : {16, 24, 32, 48}) {
            green_split g;
            if (!g.create(want)) {
                printf("  green split of %d SMs: not available\n", want);
                continue;
            }
            const int sa = g.sms[0], sm = g.sms[1];
            lt_pick gu(lt, n, hidden, 2 * F, x, wgu, y, ws, wsb, sm, g.s[1]);
            lt_pick dn(lt, n, F, hidden, act, wd, y2, ws, wsb, sm, g.s[1]);
            const float gm = eight([&] { mlp(gu, dn, g.s[1]); }, {g.s[1]});
            snprintf(name, sizeof name, "  mlp on %d SMs, picked there", sm);
            report(name, gm, 0, flops);
            printf("    %.2fx the all-SM time (%.2fx would be proportional); picks: gate|up %d of %d split %d, down %d "
                   "of %d split %d\n",
                   gm / m, (double)all / sm, gu.best, gu.offered, gu.best_split, dn.best, dn.offered, dn.best_split);
            for (int v : {0, v3}) {
                const float ga = eight([&] { attn(g.s[0], sa, v); }, {g.s[0]});
                const float both = eight(
                    [&] {
                        mlp(gu, dn, g.s[1]);
                        attn(g.s[0], sa, v);
                    },
                    {g.s[0], g.s[1]});
                snprintf(name, sizeof name, "  attention %s on %d SMs alone", v ? "v7 variant 3" : "production", sa);
                report(name, ga, bytes, 0);
                report("  both at once", both, bytes, flops);
                printf("  %d + %d SMs, %s: %.1f %% of one-after-the-other saved\n", sa, sm,
                       v ? "variant 3" : "production", 100.0 * (seq - both) / seq);
            }
        }
    }
    for (void *p : {ws, x, wgu, wd, act, y, y2}) cudaFree(p);
    cudaStreamDestroy(s0);
    cublasLtDestroy(lt);
}

/* Can the decode attention's memory traffic hide under a prefill chunk's products when each gets
 * its own SMs? (Run 139: on shared SMs the two serialise.) Eight "layers", each a prefill chunk's
 * MLP products (gate|up then down, cuBLAS, n tokens) and B1's decode attention (512 sequences over
 * 640 keys, production kernel): one after the other on all SMs (what a step does now), on two
 * streams over all SMs, and on two green-context partitions, the attention on `a` SMs with its
 * grid sized to them and cuBLAS told the rest (cublasSetSmCountTarget). */
static void bench_overlap_green(cublasHandle_t cb, int hidden, int F)
{
    const int layers = 8;
    cudaStream_t s0, s1;
    CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    attn_case att(512, 1, 640, 8, true, false, false, false, 0);
    const int nmax = 4096;
    void *x = dalloc_rand((size_t)nmax * hidden, 1), *wgu = dalloc_rand((size_t)2 * F * hidden, 2);
    void *wd = dalloc_rand((size_t)hidden * F, 3), *act = dalloc_rand((size_t)nmax * F, 4), *y, *y2;
    CK(cudaMalloc(&y, (size_t)nmax * 2 * F * 2));
    CK(cudaMalloc(&y2, (size_t)nmax * hidden * 2));
    float alpha = 1, beta = 0;
    auto mlp = [&](int n, cudaStream_t s, int sm_target) {
        cublasSetStream(cb, s);
        cublasSetSmCountTarget(cb, sm_target);
        if (cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, 2 * F, n, hidden, &alpha, wgu, CUDA_R_16BF, hidden, x,
                         CUDA_R_16BF, hidden, &beta, y, CUDA_R_16BF, 2 * F, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS ||
            cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, hidden, n, F, &alpha, wd, CUDA_R_16BF, F, act, CUDA_R_16BF, F,
                         &beta, y2, CUDA_R_16BF, hidden, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "cublasGemmEx failed\n");
            exit(1);
        }
    };
    auto attn = [&](cudaStream_t s, int sms) {
        vk_attention_args a = att.a;
        a.sms = sms;
        CK(vk_attention_v(&a, 0, 2, s));
    };
    char name[200];
    for (int n : {1024, 2048, 4096}) {
        const double flops = 2.0 * n * 3.0 * F * hidden * layers, bytes = att.kv_bytes() * layers;
        /* each figure: `layers` layers, the median of their mean */
        auto eight = [&](const std::function<void()> &f, std::initializer_list<cudaStream_t> ss) {
            return layers * wall_ms(f, ss, layers);
        };
        float m = eight([&] { mlp(n, s0, 0); }, {s0});
        float a = eight([&] { attn(s1, 0); }, {s1});
        /* a layer: the products on stream sm (cuBLAS told smt SMs), then the attention on sa (sas SMs) */
        auto layer = [&](cudaStream_t sm, int smt, cudaStream_t sa, int sas) {
            mlp(n, sm, smt);
            attn(sa, sas);
        };
        float seq = eight([&] { layer(s0, 0, s0, 0); }, {s0});
        float two = eight([&] { layer(s0, 0, s1, 0); }, {s0, s1});
        snprintf(name, sizeof name, "green n=%d all SMs: mlp alone x%d", n, layers);
        report(name, m, 0, flops);
        report("  attention 512 x 640 alone", a, bytes, 0);
        report("  one after the other (one stream)", seq, bytes, flops);
        report("  two streams, all SMs", two, bytes, flops);
        for (int want : {16, 24, 32, 40, 48, 64}) {
            green_split g;
            if (!g.create(want)) {
                printf("  green split of %d SMs: not available\n", want);
                continue;
            }
            const int sa = g.sms[0], sm = g.sms[1];
            float ga = eight([&] { attn(g.s[0], sa); }, {g.s[0]});
            float gm = eight([&] { mlp(n, g.s[1], sm); }, {g.s[1]});
            float both = eight([&] { layer(g.s[1], sm, g.s[0], sa); }, {g.s[0], g.s[1]});
            snprintf(name, sizeof name, "  green: attention on %d SMs alone", sa);
            report(name, ga, bytes, 0);
            snprintf(name, sizeof name, "  green: mlp on %d SMs alone", sm);
            report(name, gm, 0, flops);
            report("  green: both at once", both, bytes, flops);
            printf("  green %d + %d: %.1f %% of one-after-the-other saved\n", sa, sm, 100.0 * (seq - both) / seq);
        }
    }
    cublasSetSmCountTarget(cb, 0);
    cublasSetStream(cb, 0);
    for (void *p : {x, wgu, wd, act, y, y2}) cudaFree(p);
    cudaStreamDestroy(s0);
    cudaStreamDestroy(s1);
}

int main(int argc, char **argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device\n");
        return 77;
    }
    g_csv = argc > 1 ? fopen(argv[1], "w") : nullptr;
    /* VESTA_KB_PREFILL: only the prefill-attention rows (per head and per KV group);
     * VESTA_KB_ELEMENTWISE: only the elementwise kernels (norm, SiLU, RoPE, embedding);
     * VESTA_KB_SAMPLING: only the sampling rows; VESTA_KB_OVERLAP: only the overlap rows (VESTA_KB_GREEN:
     * on SM partitions);
     * VESTA_KB_DECODE: only decode rows, production beside versions 5 and 7 partitioned on the device and by the bound
     */
    const bool prefill_only = getenv("VESTA_KB_PREFILL") != nullptr;
    const bool elem_only = getenv("VESTA_KB_ELEMENTWISE") != nullptr;
    const bool all_rows = !prefill_only && !elem_only && !getenv("VESTA_KB_GREEN");
    if (g_csv) fprintf(g_csv, "kernel,ms,GB/s,TFLOP/s\n");
    if (getenv("VESTA_KB_SAMPLING")) { /* only the sampling rows */
        bench_sampling(128256);
        if (g_csv) fclose(g_csv);
        return 0;
    }
    const int hidden = 4096, H = 32, KVH = 8, D = 128, F = 14336, V = 128256;
    const int W = (H + 2 * KVH) * D;

    /* cuBLAS bf16 GEMM: the prefill-shaped MLP product and the decode-shaped one. */
    cublasHandle_t cb;
    if (cublasCreate(&cb) != CUBLAS_STATUS_SUCCESS) return 1;
    auto finish = [&] {
        cublasDestroy(cb);
        if (g_csv) fclose(g_csv);
        return 0;
    };
    if (all_rows) {
        int shapes[][3] = {{2048, 2 * F, hidden}, {8192, 8192, 8192}, {256, 2 * F, hidden}, {1, 2 * F, hidden}, {256, V, hidden}};
        for (auto &s : shapes) {
            int n = s[0], out = s[1], in = s[2];
            void *x = dalloc_rand((size_t)n * in, 1), *w = dalloc_rand((size_t)out * in, 2), *y;
            CK(cudaMalloc(&y, (size_t)n * out * 2));
            float alpha = 1, beta = 0;
            float ms = time_ms([&] {
                cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in,
                             &beta, y, CUDA_R_16BF, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            });
            char name[96];
            snprintf(name, sizeof name, "cublas bf16 gemm n=%d out=%d in=%d", n, out, in);
            report(name, ms, 2.0 * ((double)n * in + (double)out * in + (double)n * out), 2.0 * n * out * in);
            cudaFree(x);
            cudaFree(w);
            cudaFree(y);
        }
    }
    /* Decode at batch 1: the four layer products and the LM head, cuBLAS against vk_gemv. */
    if (all_rows) {
        int shapes[][2] = {{6144, hidden}, {hidden, hidden}, {2 * F, hidden}, {hidden, F}, {V, hidden}};
        for (auto &s : shapes) {
            int out = s[0], in = s[1];
            void *x = dalloc_rand(in, 12), *w = dalloc_rand((size_t)out * in, 13), *y;
            CK(cudaMalloc(&y, (size_t)out * 4));
            float alpha = 1, beta = 0;
            float ms = time_ms([&] {
                cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, out, 1, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in,
                             &beta, y, CUDA_R_16BF, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
            });
            char name[96];
            snprintf(name, sizeof name, "cublas n=1 out=%d in=%d", out, in);
            report(name, ms, 2.0 * out * in, 2.0 * out * in);
            ms = time_ms([&] { CK(vk_gemv(VK_BF16, 0, y, x, w, 1, in, out, 0, 0)); });
            snprintf(name, sizeof name, "vk_gemv n=1 out=%d in=%d", out, in);
            report(name, ms, 2.0 * out * in, 2.0 * out * in);
            cudaFree(x);
            cudaFree(w);
            cudaFree(y);
        }
    }
    /* Device-to-device copy: the bandwidth ceiling. */
    if (all_rows) {
        size_t bytes = (size_t)2 << 30;
        void *a, *b;
        CK(cudaMalloc(&a, bytes));
        CK(cudaMalloc(&b, bytes));
        CK(cudaMemset(a, 1, bytes));
        float ms = time_ms([&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
        report("cudaMemcpy d2d 2 GiB", ms, 2.0 * bytes, 0);
        cudaFree(a);
        cudaFree(b);
    }
    /* Elementwise kernels at a prefill-sized step (8192 tokens). */
    if (all_rows || elem_only) {
        int n = 8192;
        void *res = dalloc_rand((size_t)n * hidden, 3), *x = dalloc_rand((size_t)n * hidden, 4), *w = dalloc_rand(hidden, 5), *out;
        CK(cudaMalloc(&out, (size_t)n * hidden * 2));
        float ms = time_ms([&] { CK(vk_add_rmsnorm(VK_BF16, out, res, x, w, n, hidden, 1e-5f, 0, 0)); });
        report("add_rmsnorm n=8192 h=4096", ms, 2.0 * n * hidden * 4, 0);
        void *gu = dalloc_rand((size_t)n * 2 * F, 6), *act;
        CK(cudaMalloc(&act, (size_t)n * F * 2));
        ms = time_ms([&] { CK(vk_silu_and_mul(VK_BF16, act, gu, n, F, 0, 0)); });
        report("silu_and_mul n=8192 F=14336", ms, 2.0 * n * F * 3, 0);
        void *qkv = dalloc_rand((size_t)n * W, 7);
        int nblocks = n / 16 + 1;
        void *kc, *vc;
        CK(cudaMalloc(&kc, (size_t)nblocks * 16 * KVH * D * 2));
        CK(cudaMalloc(&vc, (size_t)nblocks * 16 * KVH * D * 2));
        std::vector<int32_t> pos(n), slot(n);
        for (int i = 0; i < n; i++) pos[i] = slot[i] = i;
        int32_t *dpos, *dslot;
        CK(cudaMalloc(&dpos, n * 4));
        CK(cudaMalloc(&dslot, n * 4));
        CK(cudaMemcpy(dpos, pos.data(), n * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dslot, slot.data(), n * 4, cudaMemcpyHostToDevice));
        vk_rope_config rc = {D, 500000.f, 2, 8.f, 1.f, 4.f, 8192};
        std::vector<float> inv(D / 2);
        vk_rope_inv_freq(&rc, inv.data());
        float *dinv;
        CK(cudaMalloc(&dinv, D / 2 * 4));
        CK(cudaMemcpy(dinv, inv.data(), D / 2 * 4, cudaMemcpyHostToDevice));
        /* version 1 (an element a thread) beside production (version 2, 16-byte vectors): a prefill
         * step, B3's prompt, B4's 32-token step */
        for (int rn : {8192, 2048, 32})
            for (int rv : {1, 0}) {
                ms = time_ms([&] {
                    CK(vk_rope_kv_write_v(rv, VK_BF16, qkv, nullptr, dpos, dslot, dinv, kc, vc, rn, H, KVH, D, 0, 0));
                });
                char name[96];
                snprintf(name, sizeof name, "rope_kv_write%s n=%d (q rw, k,v write)", rv == 1 ? " v1" : "", rn);
                report(name, ms, 2.0 * rn * ((H + 2 * KVH) * D + (H + 2 * KVH) * D), 0);
            }
        int32_t *ids;
        CK(cudaMalloc(&ids, n * 4));
        CK(cudaMemcpy(ids, pos.data(), n * 4, cudaMemcpyHostToDevice));
        void *table = dalloc_rand((size_t)V * hidden, 8);
        ms = time_ms([&] { CK(vk_embedding(VK_BF16, out, table, ids, n, hidden, V, 0)); });
        report("embedding n=8192 h=4096", ms, 2.0 * n * hidden * 2, 0);
        for (void *p : {res, x, w, out, gu, act, qkv, kc, vc, (void *)dpos, (void *)dslot, (void *)dinv, (void *)ids, table}) cudaFree(p);
    }
    if (elem_only) return finish();
    /* Attention: decode batches and one 2048-token prefill, Llama-3-8B heads, block size 16. */
    /* dv: decode kernel (0 production, 1-5, or VK_DECODE_V5_VARIANT_BASE + a version 5 variant;
     * -1: batch-invariant mode, every row through the prefill kernel);
     * kvh: KV heads (the query heads are 4 x kvh); shuffle: fragmented block tables (else in order) */
    auto attn = [&](int ns, int qlen, int ctx, const char *label, int dv, int KVH = 8, bool shuffle = true, int pv = 2,
                    bool grp = false, bool longest_first = false, int wide = 0, int bound = 0) {
        attn_case c(ns, qlen, ctx, KVH, shuffle, dv < 0, grp, longest_first, wide, bound);
        const int H = c.a.H;
        float ms = time_ms([&] { c.run(dv, pv, 0); });
        char name[160];
        if (c.a.batch_invariant)
            snprintf(name, sizeof name, "attention %s-invariant seqs=%d q=%d ctx=%d", label, ns, qlen, ctx);
        else if (qlen == 1)
            snprintf(name, sizeof name, "attention %s-v%d seqs=%d q=%d ctx=%d%s%s%s", label, dv, ns, qlen, ctx,
                     KVH == 8 ? "" : KVH == 1 ? " kvh=1 (4 KB contiguous per block)" : " kvh=?", shuffle ? "" : " in-order",
                     bound > ctx ? (" bound=" + std::to_string(bound)).c_str() : "");
        else
            snprintf(name, sizeof name, "attention %s-v%d seqs=%d q=%d ctx=%d%s%s%s", label, pv, ns, qlen, ctx,
                     grp ? " per KV group" : "", longest_first ? " longest-first" : "",
                     wide ? (c.wide_picked ? (wide == VK_WIDE_WGMMA ? " wide wgmma" : " wide")
                                           : (wide == VK_WIDE_WGMMA ? " wide wgmma (not picked)" : " wide (not picked)"))
                          : "");
        report(name, ms, c.kv_bytes() + 2.0 * c.ntok * H * D * 2, c.flops());
    };
    if (getenv("VESTA_KB_OVERLAP")) { /* only the overlap rows */
        bench_overlap(cb, hidden, F);
        return finish();
    }
    if (getenv("VESTA_KB_GREEN")) { /* only the SM-partitioned rows (=reads: only what an SM reads;
                                     * =gemm: only the products picked on a partition) */
        if (strcmp(getenv("VESTA_KB_GREEN"), "gemm") == 0) {
            bench_partition_gemm(hidden, F);
            return finish();
        }
        bench_partition_reads();
        if (strcmp(getenv("VESTA_KB_GREEN"), "reads") != 0) bench_overlap_green(cb, hidden, F);
        return finish();
    }
    if (prefill_only) {
        /* one head per block against a KV group per block: a prompt, B1's prefill step, and B4's
         * 32 queries over a 4,096-token cached prefix (the key range split) */
        for (bool grp : {false, true}) {
            attn(1, 2048, 2048, "prefill", 2, 8, true, 2, grp);
            attn(32, 512, 512, "prefill", 2, 8, true, 2, grp);
            attn(1, 32, 4128, "prefix-hit", 2, 8, true, 2, grp);
            attn(1, 32, 4128, "prefix-hit in-order", 2, 8, false, 2, grp);
        }
        /* the tile order (VK_TILES_LONGEST_FIRST, production) against sequence by sequence, per KV
         * group, interleaved: B3's prompt, B1's prefill step, B4's first request */
        for (int round = 0; round < 2; round++)
            for (bool lf : {false, true}) {
                attn(1, 2048, 2048, "prefill", 2, 8, true, 2, true, lf);
                attn(32, 512, 512, "prefill", 2, 8, true, 2, true, lf);
                attn(1, 4128, 4128, "prefill", 2, 8, true, 2, true, lf);
            }
        /* wide tiles (mma.sync, then wgmma) against the grouped ones, interleaved: B4's second
         * request, several prefix hits, a long context, a long prompt's chunks, and steps at the
         * edge of vk_prefill_wide's pick (two splits); then whole prompts, where vk_prefill_wide
         * does not pick them (one key split): B3's prompt, B1's prefill step, B4's first request */
        const struct { int ns, q, ctx; const char *label; } wide_shapes[] = {
            {1, 32, 4128, "prefix-hit"},  {4, 32, 4128, "prefix-hit"}, {1, 32, 32768, "prefix-hit"},
            {1, 128, 8192, "prefix-hit"}, {1, 256, 4352, "prefix-hit"}, {8, 32, 2048, "prefix-hit"},
            {2, 64, 1024, "prefix-hit"},  {1, 2048, 2048, "prefill"},   {32, 512, 512, "prefill"},
            {1, 4128, 4128, "prefill"}};
        if (vk_prefill_wide_supported(D))
            for (int round = 0; round < 2; round++)
                for (auto &w : wide_shapes)
                    for (int wide = 0; wide <= VK_WIDE_WGMMA; wide++)
                        if (wide < VK_WIDE_WGMMA || vk_prefill_wide_wgmma_supported(D, 16))
                            attn(w.ns, w.q, w.ctx, w.label, 2, 8, true, 2, true, true, wide);
        return finish();
    }
    if (getenv("VESTA_KB_DECODE")) {
        /* only decode rows: production (0) beside versions 5 and 7 with their partitions picked on
         * the device (5, 7) and by the bound (57; 75: production until run 153), over batch sizes
         * and contexts, then under a decode graph's bound (the model's longest context) */
        const int v5b = VK_DECODE_V5_VARIANT_BASE + 7, v7b = VK_DECODE_V7_VARIANT_BASE + 5;
        for (int ctx : {640, 2048, 8192, 32768})
            for (int ns : {1, 8, 16, 33, 64, 96, 116, 128, 150, 192, 224, 256}) {
                if ((double)ns * ctx > 256.0 * 8192) continue; /* the cache must fit */
                for (int v : {0, 5, 7, v5b, v7b}) attn(ns, 1, ctx, "decode", v);
            }
        for (int ns : {1, 8, 16, 64, 150, 192})
            for (int bound : {8192, 131072})
                for (int v : {0, 5, 7, v5b, v7b})
                    attn(ns, 1, 640, "decode", v, 8, true, 2, false, false, 0, bound);
        return finish();
    }
    for (int dv : {0, 1, 2, 3, 5, 7}) { /* production (0) and each decode kernel (4 and 6 were removed) */
        attn(256, 1, 640, "decode", dv);
        attn(512, 1, 640, "decode", dv);
        attn(256, 1, 1024, "decode", dv);
        attn(64, 1, 4096, "decode", dv);
        attn(1, 1, 640, "decode", dv);
        attn(1, 1, 4096, "decode", dv);
        attn(1, 1, 32768, "decode", dv);
        /* where the bandwidth goes: the same bytes with each (sequence, head)'s block contiguous
         * (one KV head: 4 KB per block instead of 16 rows of 256 bytes 2 KB apart), and tables in order */
        attn(2048, 1, 640, "decode", dv, 1);
        attn(256, 1, 640, "decode", dv, 8, false);
    }
    /* version 5's other configurations (tile keys, stages, warps: attention_decode_v5.cu), rows
     * named decode-v5N with N = VK_DECODE_V5_VARIANT_BASE + variant */
    for (int v = 1; v < VK_DECODE_V5_VARIANTS; v++) {
        attn(256, 1, 640, "decode", VK_DECODE_V5_VARIANT_BASE + v);
        attn(512, 1, 640, "decode", VK_DECODE_V5_VARIANT_BASE + v);
        attn(64, 1, 4096, "decode", VK_DECODE_V5_VARIANT_BASE + v);
        attn(1, 1, 32768, "decode", VK_DECODE_V5_VARIANT_BASE + v);
    }
    /* version 7's configurations (chunk keys, stages, warps: attention_decode_v7.cu), rows named
     * decode-v7N with N = VK_DECODE_V7_VARIANT_BASE + variant */
    for (int v = 1; v < VK_DECODE_V7_VARIANTS; v++) {
        attn(256, 1, 640, "decode", VK_DECODE_V7_VARIANT_BASE + v);
        attn(512, 1, 640, "decode", VK_DECODE_V7_VARIANT_BASE + v);
        attn(256, 1, 1024, "decode", VK_DECODE_V7_VARIANT_BASE + v);
        attn(64, 1, 4096, "decode", VK_DECODE_V7_VARIANT_BASE + v);
    }
    /* the calibration rows (no arithmetic): paged reads as the decode kernels do them, and a
     * contiguous read of the same bytes */
    auto paged_read = [&](int ns, int ctx, int splits, int u) {
        int KVH = 8, bs = 16, mbps = (ctx + bs - 1) / bs;
        size_t cache = (size_t)ns * mbps * bs * KVH * D;
        void *kc = dalloc_rand(cache, 9), *vc = dalloc_rand(cache, 10);
        std::vector<int32_t> bt((size_t)ns * mbps);
        rng r(42);
        for (size_t i = 0; i < bt.size(); i++) bt[i] = (int32_t)i;
        for (size_t i = bt.size() - 1; i > 0; i--) std::swap(bt[i], bt[r.below((int)i + 1)]);
        int32_t *dbt;
        unsigned *sink;
        CK(cudaMalloc(&dbt, bt.size() * 4));
        CK(cudaMalloc(&sink, 4));
        CK(cudaMemcpy(dbt, bt.data(), bt.size() * 4, cudaMemcpyHostToDevice));
        dim3 grid(KVH, ns, splits);
        float ms = time_ms([&] {
            if (u == 4) paged_read_kernel<4><<<grid, 128>>>((const uint4 *)kc, (const uint4 *)vc, dbt, mbps, ctx, KVH, splits, sink);
            else paged_read_kernel<8><<<grid, 128>>>((const uint4 *)kc, (const uint4 *)vc, dbt, mbps, ctx, KVH, splits, sink);
            CK(cudaGetLastError());
        });
        char name[160];
        snprintf(name, sizeof name, "paged read only seqs=%d ctx=%d splits=%d U=%d", ns, ctx, splits, u);
        double bytes = 2.0 * ns * ctx * KVH * D * 2;
        report(name, ms, bytes, 0);
        if (u == 4 && splits == 1) {
            size_t n16 = (size_t)(bytes / 16);
            float lm = time_ms([&] {
                linear_read_kernel<<<132 * 16, 256>>>((const uint4 *)kc, n16 / 2, sink);
                linear_read_kernel<<<132 * 16, 256>>>((const uint4 *)vc, n16 / 2, sink);
                CK(cudaGetLastError());
            });
            snprintf(name, sizeof name, "contiguous read only, same bytes (seqs=%d ctx=%d)", ns, ctx);
            report(name, lm, bytes, 0);
        }
        for (void *p : {kc, vc, (void *)dbt, (void *)sink}) cudaFree(p);
    };
    for (int splits : {1, 2})
        for (int u : {4, 8}) {
            paged_read(256, 640, splits, u);
            paged_read(512, 640, splits, u);
        }
    /* prefill (decode version unused: no decode rows): one 2048-token prompt, four, and a step
     * of B1's prefill (32 prompts of 512 tokens) */
    attn(1, 2048, 2048, "prefill", 2);
    attn(4, 2048, 2048, "prefill", 2);
    attn(32, 512, 512, "prefill", 2);
    /* batch-invariant mode (--batch-invariant): decode rows and prompts through the prefill
     * kernel, a KV group's heads per block, no key split -- beside the production rows above */
    for (auto c : std::vector<std::array<int, 3>>{{256, 1, 640}, {512, 1, 640}, {64, 1, 4096}, {1, 1, 640}, {1, 1, 32768}})
        attn(c[0], c[1], c[2], "decode", -1);
    attn(1, 2048, 2048, "prefill", -1);
    attn(32, 512, 512, "prefill", -1);
    bench_sampling(V);
    return finish();
}
