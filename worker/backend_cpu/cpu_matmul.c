/* Matrix products through OpenBLAS. OpenBLAS runs single-threaded (set at create) and the output
 * columns are split over OpenMP threads: one thread pool for the whole forward pass, instead of
 * OpenBLAS's own threads spinning against OpenMP's between calls. */
#include <cblas.h>
#include <omp.h>

#include "cpu_internal.h"

void cpu_matmul(const float *A, int M, int K, const float *W, int N, float *C, int ldc, float beta,
                int nthreads)
{
    /* Slices of at least 64 output columns: smaller ones cost more in packing than they gain. */
    int max_parts = (N + 63) / 64;
    int parts = nthreads < max_parts ? nthreads : max_parts;
    if (parts < 1)
        parts = 1;
#pragma omp parallel num_threads(parts)
    {
        int p = omp_get_thread_num(), np = omp_get_num_threads();
        int per = ((N + np - 1) / np + 15) & ~15;
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
