/* Matrix products through OpenBLAS. OpenBLAS runs single-threaded (set at create) and the output
 * columns are split over OpenMP threads: one thread pool for the whole forward pass, instead of
 * OpenBLAS's own threads spinning against OpenMP's between calls. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "cpu_internal.h"

int cpu_matmul_parts(int N, int nthreads)
{
    /* Slices of at least 64 output columns: smaller ones cost more in packing than they gain. */
    int max_parts = (N + 63) / 64;
    int parts = nthreads < max_parts ? nthreads : max_parts;
    return parts < 1 ? 1 : parts;
}

int cpu_matmul_slice_cols(int N, int parts)
{
    return ((N + parts - 1) / parts + 15) & ~15;
}

void cpu_matmul(const float *A, int M, int K, const float *W, int N, float *C, int ldc, float beta,
                int nthreads)
{
#pragma omp parallel num_threads(cpu_matmul_parts(N, nthreads))
    {
        int p = omp_get_thread_num(), per = cpu_matmul_slice_cols(N, omp_get_num_threads());
        int n0 = p * per, n1 = n0 + per < N ? n0 + per : N;
        if (n0 < n1) {
            const float *Ws = W + (size_t)n0 * (size_t)K;
            if (M == 1) /* decode of one sequence: gemv reads the weights once, without packing */
                cblas_sgemv(CblasRowMajor, CblasNoTrans, n1 - n0, K, 1.0f, Ws, K, A, 1, beta, C + n0, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n1 - n0, K, 1.0f, A, K, Ws, K, beta,
                            C + n0, ldc);
        }
    }
}

/* One thread's column slice [n0, n0 + nc) in panels of exactly CPU_INVARIANT_PANEL rows. The
 * last, partial panel goes through the thread's workspace, padded with zero rows. */
static void panels_slice(const float *A, int M, int K, const float *Ws, int nc, float *C, int ldc, float beta,
                         float *ws)
{
    const int P = CPU_INVARIANT_PANEL, full = M / P * P, r = M - full;
    for (int m0 = 0; m0 < full; m0 += P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, nc, K, 1.0f, A + (size_t)m0 * (size_t)K, K, Ws, K,
                    beta, C + (size_t)m0 * (size_t)ldc, ldc);
    if (r == 0)
        return;
    float *pa = ws, *pc = ws + (size_t)P * (size_t)K;
    memcpy(pa, A + (size_t)full * (size_t)K, sizeof(float) * (size_t)r * (size_t)K);
    memset(pa + (size_t)r * (size_t)K, 0, sizeof(float) * (size_t)(P - r) * (size_t)K);
    if (beta != 0.0f) {
        for (int i = 0; i < r; i++)
            memcpy(pc + (size_t)i * (size_t)nc, C + (size_t)(full + i) * (size_t)ldc, sizeof(float) * (size_t)nc);
        memset(pc + (size_t)r * (size_t)nc, 0, sizeof(float) * (size_t)(P - r) * (size_t)nc);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, nc, K, 1.0f, pa, K, Ws, K, beta, pc, nc);
    for (int i = 0; i < r; i++)
        memcpy(C + (size_t)(full + i) * (size_t)ldc, pc + (size_t)i * (size_t)nc, sizeof(float) * (size_t)nc);
}

void cpu_matmul_invariant(const float *A, int M, int K, const float *W, int N, float *C, int ldc, float beta,
                          int nthreads, float *ws, size_t ws_floats)
{
    /* The slices follow from N and nthreads alone (not from the team OpenMP grants), so every
     * column is always computed by the same call shape. */
    const int parts = cpu_matmul_parts(N, nthreads), per = cpu_matmul_slice_cols(N, parts);
#pragma omp parallel num_threads(parts)
    {
        const int np = omp_get_num_threads();
        float *mine = ws + (size_t)omp_get_thread_num() * ws_floats;
        for (int s = omp_get_thread_num(); s < parts; s += np) {
            int n0 = s * per, n1 = n0 + per < N ? n0 + per : N;
            if (n0 < n1)
                panels_slice(A, M, K, W + (size_t)n0 * (size_t)K, n1 - n0, C + n0, ldc, beta, mine);
        }
    }
}

size_t cpu_matmul_invariant_ws_floats(int max_k, int max_n, int nthreads)
{
    /* A smaller N has slices of at most 64 columns or at most max_n's (cpu_matmul_parts). */
    size_t cols = (size_t)cpu_matmul_slice_cols(max_n, cpu_matmul_parts(max_n, nthreads));
    cols = cols > 64 ? cols : 64;
    return ((size_t)CPU_INVARIANT_PANEL * ((size_t)max_k + cols) + 15) & ~(size_t)15;
}
