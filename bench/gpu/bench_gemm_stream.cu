/* Skinny products (a few tokens against a whole weight matrix) at Llama-3-8B shapes: vk_gemv
 * (n <= 4), cuBLAS (cublasGemmEx exactly as worker/backend_cuda/cuda_forward.c calls it) and
 * vk_gemm_stream side by side, at n in {1, 4, 8, 16, 32, 64}. Reports the median of 20 timed runs
 * (CUDA events, after 3 warm-ups) and the weight bytes per second; each run reads another copy of
 * the weights (copies cycled so that more than 256 MB is touched between reuses: the 50 MB L2
 * cannot serve them, as in a real forward pass). Ceiling: a measured 1 GiB device-to-device copy
 * (bytes read + written per second, the convention of docs/benchmarks.md).
 *
 * Before timing, a correctness check at every shape: vk_gemm_stream against cuBLAS (fp32 out,
 * both fp32-accumulated: relative difference norm < 1e-4), exit 1 on failure. The exact
 * reference test is tests/kernels/test_gemm_stream.
 *
 * Then vk_gemm_stream's variants per shape and n, the sum of the isolated products per step,
 * and a whole step as the
 * engine runs it: 32 layers of distinct weights (15 GB: nothing comes from L2) with the
 * add+RMSNorm and SiLU kernels between the products, launched back to back on one stream,
 * eager and as a CUDA graph, per method: cuBLAS, vk_gemv (n <= 4), vk_gemm_stream (version 2,
 * variant 0) and its version 3 (TMA + wgmma, variant VK_GEMM_STREAM_TMA, where the GPU runs it),
 * each with and without programmatic dependent launch. Usage: bench_gemm_stream */
#include <cublas_v2.h>

#include <algorithm>
#include <functional>
#include <string>

#include "../../tests/kernels/kernel_ref.h"

using namespace ref;

struct shape {
    const char *name;
    int out, in;
    bool f32out; /* the LM head writes fp32 logits */
};

static float time_ms(const std::function<void(int)> &f) { return median_ms(f); }

#define CBL(x)                                                                                     \
    do {                                                                                           \
        cublasStatus_t s_ = (x);                                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            fprintf(stderr, "%s:%d: %s: cublas status %d\n", __FILE__, __LINE__, #x, (int)s_);     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void cublas_gemm(cublasHandle_t cb, const void *x, int n, int in, const void *w, int out, void *y, bool f32out) {
    const float alpha = 1.0f, beta = 0.0f;
    CBL(cublasGemmEx(cb, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &alpha, w, CUDA_R_16BF, in, x, CUDA_R_16BF, in, &beta, y,
                     f32out ? CUDA_R_32F : CUDA_R_16BF, out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

struct bufs {
    std::vector<void *> w; /* copies of the weights */
    void *x, *y, *ws;      /* ws: vk_gemm_stream's workspace (ws_bytes) */
    size_t ws_bytes;
};

static bufs make_bufs(const shape &s, int maxn) {
    bufs b;
    size_t wbytes = (size_t)s.out * s.in * 2;
    size_t copies = std::max<size_t>(1, ((size_t)256 << 20) / wbytes + 1);
    if (wbytes >= ((size_t)512 << 20)) copies = 1; /* the LM head (1 GB) is far larger than L2 */
    for (size_t c = 0; c < copies; c++) {
        void *p;
        CK(cudaMalloc(&p, wbytes));
        CK(vk_fill_random(VK_BF16, p, (size_t)s.out * s.in, 0.05f, 100 + c, 0));
        b.w.push_back(p);
    }
    CK(cudaMalloc(&b.x, (size_t)maxn * s.in * 2));
    CK(vk_fill_random(VK_BF16, b.x, (size_t)maxn * s.in, 1.f, 7, 0));
    CK(cudaMalloc(&b.y, (size_t)maxn * s.out * 4));
    b.ws_bytes = vk_gemm_stream_ws_bytes(s.out);
    CK(cudaMalloc(&b.ws, b.ws_bytes));
    CK(cudaMemset(b.ws, 0, b.ws_bytes));
    return b;
}
static void free_bufs(bufs &b) {
    for (void *p : b.w) cudaFree(p);
    cudaFree(b.x);
    cudaFree(b.y);
    cudaFree(b.ws);
}

/* vk_gemm_stream (a variant) against cuBLAS at one n, fp32 out. */
static bool check_shape(cublasHandle_t cb, const shape &s, bufs &b, int n, int variant) {
    size_t m = (size_t)n * s.out;
    float *yc, *yk;
    CK(cudaMalloc(&yc, m * 4));
    CK(cudaMalloc(&yk, m * 4));
    CK(cudaMemset(yk, 0xff, m * 4));
    cublas_gemm(cb, b.x, n, s.in, b.w[0], s.out, yc, true);
    CK(vk_gemm_stream_ex(VK_BF16, 1, yk, b.x, b.w[0], n, s.in, s.out, b.ws, b.ws_bytes, variant, 0, 0));
    std::vector<float> hc(m), hk(m);
    CK(cudaMemcpy(hc.data(), yc, m * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hk.data(), yk, m * 4, cudaMemcpyDeviceToHost));
    cudaFree(yc);
    cudaFree(yk);
    double num = 0, den = 0;
    for (size_t i = 0; i < m; i++) {
        double d = (double)hk[i] - hc[i];
        num += d * d;
        den += (double)hc[i] * hc[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    bool ok = rel < 1e-4; /* NaN fails */
    printf("check %-8s n=%2d: vk_gemm_stream v%d vs cuBLAS rel diff %.2e (tol 1e-4) %s\n", s.name, n, variant, rel,
           ok ? "ok" : "FAIL");
    return ok;
}

/* ---- the whole step, back to back ---- */

/* One layer's weights (distinct per layer) and the step's activations. */
struct model_bufs {
    std::vector<void *> w[4]; /* [matrix][layer]: q|k|v, o_proj, gate|up, down */
    void *head, *norm_w, *h, *res, *xn, *big, *act, *logits, *ws;
    size_t ws_bytes;
};

static const int LAYERS = 32, HID = 4096, FFN = 14336, VOCAB = 128256;

static model_bufs make_model(const shape *shapes, int maxn) {
    model_bufs m;
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < LAYERS; l++) {
            void *p;
            size_t e = (size_t)shapes[k].out * shapes[k].in;
            CK(cudaMalloc(&p, e * 2));
            CK(vk_fill_random(VK_BF16, p, e, 0.02f, 1000 + k * 64 + l, 0));
            m.w[k].push_back(p);
        }
    CK(cudaMalloc(&m.head, (size_t)VOCAB * HID * 2));
    CK(vk_fill_random(VK_BF16, m.head, (size_t)VOCAB * HID, 0.02f, 999, 0));
    CK(cudaMalloc(&m.norm_w, HID * 2));
    CK(vk_fill_random(VK_BF16, m.norm_w, HID, 1.f, 998, 0));
    CK(cudaMalloc(&m.h, (size_t)maxn * HID * 2));
    CK(cudaMalloc(&m.res, (size_t)maxn * HID * 2));
    CK(vk_fill_random(VK_BF16, m.res, (size_t)maxn * HID, 1.f, 997, 0));
    CK(cudaMemset(m.h, 0, (size_t)maxn * HID * 2));
    CK(cudaMalloc(&m.xn, (size_t)maxn * HID * 2));
    CK(cudaMalloc(&m.big, (size_t)maxn * 2 * FFN * 2));
    CK(cudaMalloc(&m.act, (size_t)maxn * FFN * 2));
    CK(cudaMalloc(&m.logits, (size_t)maxn * VOCAB * 4));
    m.ws_bytes = vk_gemm_stream_ws_bytes(VOCAB);
    CK(cudaMalloc(&m.ws, m.ws_bytes));
    CK(cudaMemset(m.ws, 0, m.ws_bytes));
    return m;
}
static void free_model(model_bufs &m) {
    for (auto &v : m.w)
        for (void *p : v) cudaFree(p);
    for (void *p : {m.head, m.norm_w, m.h, m.res, m.xn, m.big, m.act, m.logits, m.ws}) cudaFree(p);
}

enum step_method { STEP_CUBLAS, STEP_GEMV, STEP_GEMV_PDL, STEP_STREAM, STEP_STREAM_PDL, STEP_TMA, STEP_TMA_PDL, STEP_METHODS };
static const char *step_names[STEP_METHODS] = {"cuBLAS", "vk_gemv", "vk_gemv+pdl", "stream", "stream+pdl", "tma", "tma+pdl"};

/* One decode step's products and the kernels between them (attention and RoPE left out: they
 * do not touch the weights), on stream st. */
static void run_step(cublasHandle_t cb, model_bufs &m, int n, step_method how, cudaStream_t st) {
    const int pdl_all = 0; /* the norms and SiLU launch plainly: the rows compare the products alone */
    auto gemm = [&](const void *x, int in, const void *w, int out, void *y, bool f32) {
        if (how == STEP_CUBLAS) cublas_gemm(cb, x, n, in, w, out, y, f32);
        else if (how == STEP_GEMV || how == STEP_GEMV_PDL)
            CK(vk_gemv(VK_BF16, f32, y, x, w, n, in, out, how == STEP_GEMV_PDL, st));
        else {
            const bool tma = how == STEP_TMA || how == STEP_TMA_PDL;
            CK(vk_gemm_stream_ex(VK_BF16, f32, y, x, w, n, in, out, m.ws, m.ws_bytes, tma ? VK_GEMM_STREAM_TMA : 0,
                                 how == STEP_STREAM_PDL || how == STEP_TMA_PDL, st));
        }
    };
    for (int l = 0; l < LAYERS; l++) {
        CK(vk_add_rmsnorm(VK_BF16, m.xn, m.res, m.h, m.norm_w, n, HID, 1e-5f, pdl_all, st));
        gemm(m.xn, HID, m.w[0][l], 6144, m.big, false);
        gemm(m.xn, HID, m.w[1][l], HID, m.h, false); /* o_proj (its input stands in for attention's) */
        CK(vk_add_rmsnorm(VK_BF16, m.xn, m.res, m.h, m.norm_w, n, HID, 1e-5f, pdl_all, st));
        gemm(m.xn, HID, m.w[2][l], 2 * FFN, m.big, false);
        CK(vk_silu_and_mul(VK_BF16, m.act, m.big, n, FFN, pdl_all, st));
        gemm(m.act, FFN, m.w[3][l], HID, m.h, false);
    }
    CK(vk_add_rmsnorm(VK_BF16, m.xn, m.res, m.h, m.norm_w, n, HID, 1e-5f, pdl_all, st));
    gemm(m.xn, HID, m.head, VOCAB, m.logits, true);
}

/* Median of 7 steps (after 2 warm-ups), eager or replayed from a captured graph. */
static float time_step(cublasHandle_t cb, model_bufs &m, int n, step_method how, bool graph, cudaStream_t st) {
    cudaGraphExec_t exec = nullptr;
    if (graph) {
        cudaGraph_t g;
        CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
        run_step(cb, m, n, how, st);
        CK(cudaStreamEndCapture(st, &g));
        CK(cudaGraphInstantiate(&exec, g, 0));
        CK(cudaGraphDestroy(g));
    }
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int i = 0; i < 9; i++) {
        CK(cudaEventRecord(a, st));
        if (graph) CK(cudaGraphLaunch(exec, st));
        else run_step(cb, m, n, how, st);
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (i >= 2) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (exec) cudaGraphExecDestroy(exec);
    return t[t.size() / 2];
}

int main() {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
    const bool tma = vk_gemm_stream_has_tma() != 0; /* variant VK_GEMM_STREAM_TMA (version 3) runs here */
    printf("vk_gemm_stream version 3 (TMA + wgmma, variant %d): %s\n", VK_GEMM_STREAM_TMA, tma ? "runs" : "not on this GPU");
    cublasHandle_t cb;
    CBL(cublasCreate(&cb));
    void *ws;
    CK(cudaMalloc(&ws, (size_t)64 << 20)); /* as the backend: a fixed cuBLAS workspace */
    CBL(cublasSetWorkspace(cb, ws, (size_t)64 << 20));

    /* Ceiling: 1 GiB device-to-device copy. */
    double copy_tbs;
    {
        size_t bytes = (size_t)1 << 30;
        void *a, *c;
        CK(cudaMalloc(&a, bytes));
        CK(cudaMalloc(&c, bytes));
        CK(cudaMemset(a, 1, bytes));
        float ms = time_ms([&](int) { CK(cudaMemcpyAsync(c, a, bytes, cudaMemcpyDeviceToDevice)); });
        copy_tbs = 2.0 * bytes / (ms * 1e-3) / 1e12;
        printf("ceiling: cudaMemcpy d2d 1 GiB %.3f ms = %.2f TB/s (read + write)\n", ms, copy_tbs);
        cudaFree(a);
        cudaFree(c);
    }

    const shape shapes[] = {{"qkv", 6144, 4096, false},
                            {"o_proj", 4096, 4096, false},
                            {"gate_up", 28672, 4096, false},
                            {"down", 4096, 14336, false},
                            {"lm_head", 128256, 4096, true}};
    const int ns[] = {1, 4, 8, 16, 32, 64};
    const int NS = 6, NSH = 5, NM = 3;
    /* ms[shape][n][method]: 0 vk_gemv, 1 cuBLAS, 2 vk_gemm_stream (< 0: not run) */
    float ms[NSH][NS][NM];
    bool ok = true;
    printf("\nisolated products (one launch per timing):\n%-8s %3s | %-17s | %-17s | %-17s\n", "shape", "n",
           "vk_gemv ms TB/s", "cuBLAS ms TB/s", "stream ms TB/s");
    for (int si = 0; si < NSH; si++) {
        const shape &s = shapes[si];
        bufs b = make_bufs(s, 64);
        for (int n : {1, 5, 32, 64})
            for (int v : {0, VK_GEMM_STREAM_TMA})
                if (v != VK_GEMM_STREAM_TMA || tma) ok = check_shape(cb, s, b, n, v) && ok;
        double wbytes = 2.0 * s.out * s.in;
        size_t nc = b.w.size();
        for (int ni = 0; ni < NS; ni++) {
            int n = ns[ni];
            float t[NM] = {-1, -1, -1};
            if (n <= VK_GEMV_MAX_N)
                t[0] = time_ms([&](int i) { CK(vk_gemv(VK_BF16, s.f32out, b.y, b.x, b.w[i % nc], n, s.in, s.out, 0, 0)); });
            t[1] = time_ms([&](int i) { cublas_gemm(cb, b.x, n, s.in, b.w[i % nc], s.out, b.y, s.f32out); });
            t[2] = time_ms([&](int i) {
                CK(vk_gemm_stream(VK_BF16, s.f32out, b.y, b.x, b.w[i % nc], n, s.in, s.out, b.ws, b.ws_bytes, 0, 0));
            });
            char col[NM][32];
            for (int m = 0; m < NM; m++) {
                ms[si][ni][m] = t[m];
                if (t[m] < 0) snprintf(col[m], sizeof col[m], "%17s", "-");
                else snprintf(col[m], sizeof col[m], "%8.4f %5.2f TB/s", t[m], wbytes / (t[m] * 1e-3) / 1e12);
            }
            printf("%-8s %3d | %s | %s | %s\n", s.name, n, col[0], col[1], col[2]);
        }
        printf("  stream variants %s (ms; variant 0 is production):", s.name);
        for (int ni = 0; ni < NS; ni++) {
            int n = ns[ni];
            printf("\n    n=%2d:", n);
            for (int v = 0; v < VK_GEMM_STREAM_VARIANTS; v++) {
                if (v >= VK_GEMM_STREAM_TMA && !tma) continue;
                float tt = time_ms([&](int i) {
                    CK(vk_gemm_stream_ex(VK_BF16, s.f32out, b.y, b.x, b.w[i % nc], n, s.in, s.out, b.ws, b.ws_bytes, v, 0, 0));
                });
                printf("  v%d %.4f", v, tt);
            }
        }
        printf("\n");
        free_bufs(b);
    }

    double total_bytes = 0;
    for (int si = 0; si < NSH; si++) total_bytes += 2.0 * shapes[si].out * shapes[si].in * (si < 4 ? 32 : 1);
    printf("\nsum of isolated products per step (32 layers + LM head), weights %.2f GB, floor at 3.0 TB/s %.2f ms, "
           "copy ceiling %.2f TB/s:\n",
           total_bytes / 1e9, total_bytes / 3e12 * 1e3, copy_tbs);
    for (int ni = 0; ni < NS; ni++) {
        printf("  n=%2d:", ns[ni]);
        const char *names[NM] = {"vk_gemv", "cuBLAS", "stream"};
        for (int m = 0; m < NM; m++) {
            double tot = 0;
            bool have = true;
            for (int si = 0; si < NSH; si++) {
                if (ms[si][ni][m] < 0) have = false;
                tot += ms[si][ni][m] * (si < 4 ? 32 : 1);
            }
            if (have) printf("  %s %.2f ms (%.2f TB/s)", names[m], tot, total_bytes / (tot * 1e-3) / 1e12);
        }
        printf("\n");
    }

    /* The step as the engine runs it. */
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    CBL(cublasSetStream(cb, st));
    model_bufs mb = make_model(shapes, 64);
    printf("\nwhole step back to back (32 layers of distinct weights + LM head, add+RMSNorm and SiLU between the "
           "products), ms (TB/s of weights), eager | graph:\n");
    for (int ni = 0; ni < NS; ni++) {
        int n = ns[ni];
        printf("  n=%2d:", n);
        for (int h = 0; h < STEP_METHODS; h++) {
            if ((h == STEP_GEMV || h == STEP_GEMV_PDL) && n > VK_GEMV_MAX_N) continue;
            if ((h == STEP_TMA || h == STEP_TMA_PDL) && !tma) continue;
            float te = time_step(cb, mb, n, (step_method)h, false, st);
            float tg = time_step(cb, mb, n, (step_method)h, true, st);
            printf("  %s %.3f (%.2f) | %.3f (%.2f)", step_names[h], te, total_bytes / (te * 1e-3) / 1e12, tg,
                   total_bytes / (tg * 1e-3) / 1e12);
        }
        printf("\n");
    }
    /* The stream step's logits against cuBLAS's (same inputs: the residual is restored). */
    for (int n : {8, 32}) for (step_method how : {STEP_STREAM_PDL, STEP_TMA_PDL}) {
        if (how == STEP_TMA_PDL && !tma) continue;
        std::vector<float> lg[2];
        for (int r = 0; r < 2; r++) {
            CK(vk_fill_random(VK_BF16, mb.res, (size_t)n * HID, 1.f, 997, st));
            CK(cudaMemsetAsync(mb.h, 0, (size_t)n * HID * 2, st));
            run_step(cb, mb, n, r ? how : STEP_CUBLAS, st);
            CK(cudaStreamSynchronize(st));
            lg[r].resize((size_t)n * VOCAB);
            CK(cudaMemcpy(lg[r].data(), mb.logits, lg[r].size() * 4, cudaMemcpyDeviceToHost));
        }
        double num = 0, den = 0;
        for (size_t i = 0; i < lg[0].size(); i++) {
            double d = (double)lg[1][i] - lg[0][i];
            num += d * d;
            den += (double)lg[0][i] * lg[0][i];
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        bool good = rel < 2e-2; /* 32 layers of bf16 rounding of different fp32 sums */
        printf("whole step n=%d: %s logits vs cuBLAS rel diff %.2e (tol 2e-2) %s\n", n, step_names[how], rel,
               good ? "ok" : "FAIL");
        ok = ok && good;
    }
    free_model(mb);
    cudaStreamDestroy(st);
    printf("\n%s\n", ok ? "correctness: ok" : "correctness: FAILED");
    cublasDestroy(cb);
    cudaFree(ws);
    return ok ? 0 : 1;
}
