/* Batch-invariant products (cpu_matmul_invariant): at SmolLM2-135M's real shapes, every output
 * row of an M-row product must have the same bits as the same input row computed alone (M = 1),
 * whatever M and the rows around it, with beta 0 and 1 (the residual add) and 1 to 3 threads.
 * The values are also checked against a double-precision dot product. For information, it prints
 * how many rows of the plain cpu_matmul (gemv for one row, sgemm otherwise) differ from M = 1.
 *   test_matmul_invariant */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

static int failures;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) /* [-1, 1), a fixed sequence (xorshift64*) */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 2685821657736338717ull) >> 40) / (float)(1 << 23) - 1.0f;
}

typedef struct shape {
    const char *name;
    int K, N, max_m;
} shape;

/* C = A W^T + beta C0 for rows [0, M) with the invariant product. */
static void product(const float *A, int M, int K, const float *W, int N, float *C, const float *C0, float beta,
                    int nthreads)
{
    if (beta != 0.0f)
        memcpy(C, C0, sizeof(float) * (size_t)M * (size_t)N);
    cpu_matmul_invariant(A, M, K, W, N, C, N, beta, nthreads);
}

static void check_shape(const shape *s, int nthreads, float beta)
{
    static const int ms[] = {1, 2, 3, 7, 17, 33, 64};
    const int K = s->K, N = s->N, R = s->max_m;
    float *A = malloc(sizeof(float) * (size_t)R * K), *W = malloc(sizeof(float) * (size_t)N * K);
    float *C0 = malloc(sizeof(float) * (size_t)R * N), *ref = malloc(sizeof(float) * (size_t)R * N);
    float *C = malloc(sizeof(float) * (size_t)R * N);
    if (!A || !W || !C0 || !ref || !C) {
        fprintf(stderr, "FAIL: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)R * K; i++)
        A[i] = uniform();
    for (size_t i = 0; i < (size_t)N * K; i++)
        W[i] = 0.05f * uniform();
    for (size_t i = 0; i < (size_t)R * N; i++)
        C0[i] = uniform();
    /* The reference: each row alone. */
    for (int r = 0; r < R; r++)
        product(A + (size_t)r * K, 1, K, W, N, ref + (size_t)r * N, C0 + (size_t)r * N, beta, nthreads);
    /* ... which is the product (double-precision dot products, every 7th column). */
    double worst = 0.0;
    for (int r = 0; r < R; r++)
        for (int n = r % 7; n < N; n += 7) {
            double d = beta != 0.0f ? (double)C0[(size_t)r * N + n] : 0.0, mag = fabs(d);
            for (int k = 0; k < K; k++) {
                d += (double)A[(size_t)r * K + k] * (double)W[(size_t)n * K + k];
                mag += fabs((double)A[(size_t)r * K + k] * (double)W[(size_t)n * K + k]);
            }
            double e = fabs(d - (double)ref[(size_t)r * N + n]) / (mag + 1e-30);
            worst = e > worst ? e : worst;
        }
    if (!(worst < 1e-5)) {
        fprintf(stderr, "FAIL %s threads %d beta %g: relative error %g against double\n", s->name, nthreads, beta,
                worst);
        failures++;
    }
    for (size_t i = 0; i < sizeof ms / sizeof *ms && ms[i] <= R; i++) {
        const int M = ms[i];
        /* The rows at the end of A: each row lands at another position within its row tile. */
        const float *Am = A + (size_t)(R - M) * K, *C0m = C0 + (size_t)(R - M) * N;
        product(Am, M, K, W, N, C, C0m, beta, nthreads);
        int bad = 0;
        for (int r = 0; r < M; r++)
            bad += memcmp(C + (size_t)r * N, ref + (size_t)(R - M + r) * N, sizeof(float) * (size_t)N) != 0;
        if (bad) {
            fprintf(stderr, "FAIL %s threads %d beta %g M %d: %d of %d rows differ from M = 1\n", s->name, nthreads,
                    beta, M, bad, M);
            failures++;
        }
        /* For information: the plain product (beta 0). */
        if (beta != 0.0f) {
            printf("%-8s K=%-5d N=%-6d threads %d beta %g M=%-3d invariant: %d rows differ\n", s->name, K, N,
                   nthreads, beta, M, bad);
            continue;
        }
        cpu_matmul(Am, M, K, W, N, C, N, beta, nthreads);
        float *plain1 = malloc(sizeof(float) * (size_t)N);
        int plain_bad = 0;
        for (int r = 0; r < M && plain1; r++) {
            memcpy(plain1, C0m + (size_t)r * N, sizeof(float) * (size_t)N);
            cpu_matmul(Am + (size_t)r * K, 1, K, W, N, plain1, N, beta, nthreads);
            plain_bad += memcmp(C + (size_t)r * N, plain1, sizeof(float) * (size_t)N) != 0;
        }
        free(plain1);
        printf("%-8s K=%-5d N=%-6d threads %d beta %g M=%-3d invariant: %d rows differ; plain cpu_matmul: %d\n",
               s->name, K, N, nthreads, beta, M, bad, plain_bad);
    }
    free(A);
    free(W);
    free(C0);
    free(ref);
    free(C);
}

int main(void)
{
    openblas_set_num_threads(1); /* as the backend runs it: the threads are OpenMP's */
    /* SmolLM2-135M: hidden 576, q + 2 kv = 960, intermediate 1536, vocabulary 49152. The LM head
     * is the costliest: fewer rows there. */
    static const shape shapes[] = {
        {"qkv", 576, 960, 64}, {"o_proj", 576, 576, 64}, {"gate_up", 576, 3072, 64},
        {"down", 1536, 576, 64}, {"lm_head", 576, 49152, 17},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int b = 0; b < 2; b++)
            check_shape(&shapes[i], 2, b ? 1.0f : 0.0f);
    /* Other thread counts slice the columns differently. */
    check_shape(&shapes[0], 1, 1.0f);
    check_shape(&shapes[3], 3, 0.0f);
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
