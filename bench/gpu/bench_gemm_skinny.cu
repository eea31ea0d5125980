/* Skinny products (a few tokens against a whole weight matrix) at Llama-3-8B shapes: vk_gemv
 * (n <= 4), cuBLAS (cublasGemmEx exactly as worker/backend_cuda/cuda_forward.c calls it) and
 * vk_gemm_skinny side by side, at n in {1, 4, 8, 16, 32, 64}. Reports the median of 20 timed runs
 * (CUDA events, after 3 warm-ups) and the weight bytes per second; each run reads another copy of
 * the weights (copies cycled so that more than 256 MB is touched between reuses: the 50 MB L2
 * cannot serve them, as in a real forward pass). Ceiling: a measured 1 GiB device-to-device copy
 * (bytes read + written per second, the convention of docs/benchmarks.md).
 *
 * Before timing, a correctness check at every shape: vk_gemm_skinny against cuBLAS (fp32 out,
 * both fp32-accumulated: relative difference norm < 1e-4), exit 1 on failure. The exact
 * reference test is tests/kernels/test_gemm_skinny.
 *
 * Then a tuning sweep: every tiling of vk_gemm_skinny_ex (mt 1/2 x ks 1/2/4/8) per shape and n,
 * the production choice marked, and a whole decode/prefill-chunk step (32 layers + LM head) per
 * method against the 16.06 GB / 3.0 TB/s floor. Usage: bench_gemm_skinny [--no-sweep] */
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
    void *x, *y;
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
    return b;
}
static void free_bufs(bufs &b) {
    for (void *p : b.w) cudaFree(p);
    cudaFree(b.x);
    cudaFree(b.y);
}

/* vk_gemm_skinny against cuBLAS at one n, fp32 out. */
static bool check_shape(cublasHandle_t cb, const shape &s, bufs &b, int n) {
    size_t m = (size_t)n * s.out;
    float *yc, *yk;
    CK(cudaMalloc(&yc, m * 4));
    CK(cudaMalloc(&yk, m * 4));
    CK(cudaMemset(yk, 0xff, m * 4));
    cublas_gemm(cb, b.x, n, s.in, b.w[0], s.out, yc, true);
    CK(vk_gemm_skinny(VK_BF16, 1, yk, b.x, b.w[0], n, s.in, s.out, 0));
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
    printf("check %-8s n=%2d: vk_gemm_skinny vs cuBLAS rel diff %.2e (tol 1e-4) %s\n", s.name, n, rel, ok ? "ok" : "FAIL");
    return ok;
}

int main(int argc, char **argv) {
    bool sweep = !(argc > 1 && std::string(argv[1]) == "--no-sweep");
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no CUDA device\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
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
    const int NS = 6, NSH = 5;
    /* ms[shape][n][method]: 0 vk_gemv, 1 cuBLAS, 2 vk_gemm_skinny (< 0: not run) */
    float ms[NSH][NS][3];
    bool ok = true;
    printf("\n%-8s %3s | %-17s | %-17s | %-17s | ks\n", "shape", "n", "vk_gemv ms TB/s", "cuBLAS ms TB/s",
           "skinny ms TB/s");
    for (int si = 0; si < NSH; si++) {
        const shape &s = shapes[si];
        bufs b = make_bufs(s, 64);
        for (int n : {5, 32, 64}) ok = check_shape(cb, s, b, n) && ok;
        double wbytes = 2.0 * s.out * s.in;
        size_t nc = b.w.size();
        for (int ni = 0; ni < NS; ni++) {
            int n = ns[ni];
            float t[3] = {-1, -1, -1};
            if (n <= VK_GEMV_MAX_N)
                t[0] = time_ms([&](int i) { CK(vk_gemv(VK_BF16, s.f32out, b.y, b.x, b.w[i % nc], n, s.in, s.out, 0)); });
            t[1] = time_ms([&](int i) { cublas_gemm(cb, b.x, n, s.in, b.w[i % nc], s.out, b.y, s.f32out); });
            t[2] = time_ms([&](int i) { CK(vk_gemm_skinny(VK_BF16, s.f32out, b.y, b.x, b.w[i % nc], n, s.in, s.out, 0)); });
            char col[3][32];
            for (int m = 0; m < 3; m++) {
                ms[si][ni][m] = t[m];
                if (t[m] < 0) snprintf(col[m], sizeof col[m], "%17s", "-");
                else snprintf(col[m], sizeof col[m], "%8.4f %5.2f TB/s", t[m], wbytes / (t[m] * 1e-3) / 1e12);
            }
            printf("%-8s %3d | %s | %s | %s | %d\n", s.name, n, col[0], col[1], col[2], vk_gemm_skinny_splits(s.in, s.out));
        }
        if (sweep) {
            printf("  sweep %s (ms per tiling; * = production):", s.name);
            for (int ni = 2; ni < NS; ni++) {
                int n = ns[ni];
                printf("\n    n=%2d:", n);
                int pks = vk_gemm_skinny_splits(s.in, s.out);
                for (int mt = 1; mt <= 2; mt++)
                    for (int ks : {1, 2, 4, 8}) {
                        cudaError_t e = vk_gemm_skinny_ex(VK_BF16, s.f32out, b.y, b.x, b.w[0], n, s.in, s.out, mt, ks, 0);
                        if (e != cudaSuccess) {
                            printf("  mt%d/ks%d %s", mt, ks, cudaGetErrorString(e));
                            cudaGetLastError();
                            continue;
                        }
                        float tt = time_ms([&](int i) {
                            CK(vk_gemm_skinny_ex(VK_BF16, s.f32out, b.y, b.x, b.w[i % nc], n, s.in, s.out, mt, ks, 0));
                        });
                        printf("  mt%d/ks%d %.4f%s", mt, ks, tt, ks == pks ? "*" : "");
                    }
            }
            printf("\n");
        }
        free_bufs(b);
    }

    /* One step of the whole model: 32 x (qkv + o_proj + gate_up + down) + LM head. For n <= 4
     * the backend uses vk_gemv, above that cuBLAS, or vk_gemm_skinny with this change. */
    printf("\nwhole step (32 layers + LM head), weights 16.06 GB, floor at 3.0 TB/s 5.35 ms, copy ceiling %.2f TB/s:\n",
           copy_tbs);
    double total_bytes = 0;
    for (int si = 0; si < NSH; si++) total_bytes += 2.0 * shapes[si].out * shapes[si].in * (si < 4 ? 32 : 1);
    for (int ni = 0; ni < NS; ni++) {
        printf("  n=%2d:", ns[ni]);
        const char *names[3] = {"vk_gemv", "cuBLAS", "skinny"};
        for (int m = 0; m < 3; m++) {
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
    printf("\n%s\n", ok ? "correctness: ok" : "correctness: FAILED");
    cublasDestroy(cb);
    cudaFree(ws);
    return ok ? 0 : 1;
}
