/* Matrix products through OpenBLAS. OpenBLAS runs single-threaded (set at create) and the output
 * columns are split over OpenMP threads: one thread pool for the whole forward pass, instead of
 * OpenBLAS's own threads spinning against OpenMP's between calls. */
#include <cblas.h>
#include <omp.h>

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

/* Batch-invariant products sum in an order of their own, not OpenBLAS's: OpenBLAS picks its
 * kernel and its blocking from the call's shape and the CPU (on AVX2 Zen kernels even a fixed
 * 16-row shape gave rows 6-11 of a panel other bits than rows 0-5), so no way of calling it made a
 * row's bits independent of its neighbours on every machine. Here output (r, c) is always
 *   lanes j = 0..7: s_j = sum over k = j, j + 8, ... (k < K - K % 8) of A[r][k] * W[c][k], in k order
 *   ((s_0 + s_4) + (s_1 + s_5)) + ((s_2 + s_6) + (s_3 + s_7)) + the tail k >= K - K % 8, in k order
 * whatever the tile that computes it; the file is compiled with -ffp-contract=off, so a product and
 * its sum are never fused in one path and not in another. */
enum { INV_LANES = 8, INV_ROWS = 4, INV_COLS = 2, INV_COL_BLOCK = 16 };

/* Rows [0, R) x columns [0, NC) of C (R <= INV_ROWS, NC <= INV_COLS; constants where inlined). */
static inline void inv_tile(const float *A, int R, int K, const float *W, int NC, float *C, int ldc, float beta)
{
    float acc[INV_ROWS][INV_COLS][INV_LANES] = {{{0.0f}}};
    const int kv = K - K % INV_LANES;
    for (int k = 0; k < kv; k += INV_LANES)
        for (int r = 0; r < R; r++)
            for (int c = 0; c < NC; c++)
                for (int j = 0; j < INV_LANES; j++)
                    acc[r][c][j] +=
                        A[(size_t)r * (size_t)K + (size_t)(k + j)] * W[(size_t)c * (size_t)K + (size_t)(k + j)];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < NC; c++) {
            const float *a = acc[r][c];
            float sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
            for (int k = kv; k < K; k++)
                sum += A[(size_t)r * (size_t)K + (size_t)k] * W[(size_t)c * (size_t)K + (size_t)k];
            float *out = C + (size_t)r * (size_t)ldc + c;
            *out = beta != 0.0f ? sum + beta * *out : sum;
        }
}

/* Columns [n0, n1) for every row: row tiles of INV_ROWS (then single rows), column pairs (then a
 * single column). */
static void inv_columns(const float *A, int M, int K, const float *W, int n0, int n1, float *C, int ldc, float beta)
{
    for (int m0 = 0; m0 < M; m0 += INV_ROWS) {
        const float *Am = A + (size_t)m0 * (size_t)K;
        float *Cm = C + (size_t)m0 * (size_t)ldc;
        for (int n = n0; n < n1; n += INV_COLS) {
            const float *Wn = W + (size_t)n * (size_t)K;
            if (M - m0 >= INV_ROWS && n1 - n >= INV_COLS) {
                inv_tile(Am, INV_ROWS, K, Wn, INV_COLS, Cm + n, ldc, beta);
                continue;
            }
            for (int r = 0; r < INV_ROWS && m0 + r < M; r++)
                for (int c = n; c < n + INV_COLS && c < n1; c++)
                    inv_tile(Am + (size_t)r * (size_t)K, 1, K, W + (size_t)c * (size_t)K, 1,
                             Cm + (size_t)r * (size_t)ldc + c, ldc, beta);
        }
    }
}

void cpu_matmul_invariant(const float *A, int M, int K, const float *W, int N, float *C, int ldc, float beta,
                          int nthreads)
{
    /* Blocks of INV_COL_BLOCK columns (their weights stay in cache while the row tiles pass over
     * them) dealt to the threads; which thread takes a block changes no bit. */
    const int blocks = (N + INV_COL_BLOCK - 1) / INV_COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(nthreads > 0 ? nthreads : 1)
    for (int b = 0; b < blocks; b++) {
        const int n0 = b * INV_COL_BLOCK, n1 = n0 + INV_COL_BLOCK < N ? n0 + INV_COL_BLOCK : N;
        inv_columns(A, M, K, W, n0, n1, C, ldc, beta);
    }
}
