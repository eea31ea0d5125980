/* The peer-to-peer all-reduce (worker/tp/p2p.c, kernels/allreduce.cu) across N rank processes, one
 * GPU each, joined by NCCL as a replica's ranks are. Needs a machine with 2 or more GPUs
 * (scripts/gpu-run.sh stage tpar); elsewhere it reports itself skipped (exit 77).
 *
 *   test_tp_p2p [--time] [--lone-host] [N]   N ranks (default: every visible GPU); --time: then
 *                                            the timings; --lone-host: the last check's variant
 *
 * Every rank checks:
 *  - vk_allreduce against the host's sum (every rank's input regenerated from its seed, summed in
 *    rank order in fp32, rounded to bf16): bit-identical, 16 bytes to 8 MB;
 *  - vk_allreduce_add_rmsnorm against vk_allreduce + vk_add_rmsnorm: bit-identical; and against the
 *    host: the residual exact, the output within 2 % (two bf16 roundings);
 *  - 3,000 calls of changing sizes and kinds, each checked (call counting, the two buffers, blocks
 *    that sit calls out);
 *  - a CUDA graph of four calls replayed 50 times;
 *  - sizes it must refuse, and ranks given different sizes (or one an unusable size) all refusing
 *    the path alike;
 *  - a peer that never comes: rank 0 calls alone with a 200 ms bound; the call gives up, the
 *    error word is set and vesta_tp_comm_nccl_wait fails instead of hanging. --lone-host: the
 *    call may wait an hour and the wait's own bound (1.5 s) fails first; its abort must end the
 *    call within seconds.
 * --time: microseconds per all-reduce (20 calls in a CUDA graph, as decode steps replay them),
 * this path against NCCL, at 8 KB to 8 MB per rank; printed by rank 0. */
#include <cuda_runtime.h>
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"
#include "p2p.h"
#include "vesta_kernels.h"

extern char **environ;

#define MAX_BYTES (8 << 20) /* the set-up's buffer; checked up to it, timed from 8 KB to it */
#define SKIP 77

static int failures;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            fprintf(stderr, "FAIL (rank %d): ", g_rank);                                                               \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)
#define CUDA_OK(call)                                                                                                  \
    do {                                                                                                               \
        cudaError_t ce_ = (call);                                                                                      \
        CHECK(ce_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(ce_));                                           \
    } while (0)

static int g_rank, g_size;

/* ---- host bf16 ---- */
static float bf2f(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t f2bf(float f) /* round to nearest even, as __float2bfloat16 (no NaNs here) */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float rnd(float f) { return bf2f(f2bf(f)); }

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
/* Rank r's input of case `seed`: values in [-2, 2). */
static void fill(uint16_t *v, size_t n, uint64_t seed, int r)
{
    for (size_t i = 0; i < n; i++)
        v[i] = f2bf((float)((mix(seed * 1000003u + (uint64_t)r * 7919u + i) >> 11) * 0x1.0p-53 * 4.0 - 2.0));
}
/* The sum every rank must get: fp32 in rank order, rounded once. */
static void host_sum(uint16_t *out, size_t n, uint64_t seed, uint16_t *scratch)
{
    float *acc = calloc(n, sizeof *acc);
    for (int r = 0; r < g_size; r++) {
        fill(scratch, n, seed, r);
        for (size_t i = 0; i < n; i++) acc[i] += bf2f(scratch[i]);
    }
    for (size_t i = 0; i < n; i++) out[i] = f2bf(acc[i]);
    free(acc);
}

typedef struct rank_ctx {
    vesta_tp_comm *comm;
    vesta_tp_p2p *p2p;
    cudaStream_t s;
    cudaEvent_t ev;
    uint16_t *d_a, *d_b, *d_c, *d_d, *d_e; /* device scratch, MAX_BYTES each */
    uint16_t *h_in, *h_ref, *h_out, *h_scr;
} rank_ctx;

static int sync_ok(rank_ctx *c)
{
    vesta_error e = {0};
    if (cudaEventRecord(c->ev, c->s) != cudaSuccess || vesta_tp_comm_nccl_wait(c->comm, c->ev, &e) != VESTA_OK) {
        CHECK(0, "waiting for the stream: %s", e.msg);
        return 0;
    }
    return 1;
}

/* One plain all-reduce of n elements, checked bit for bit. */
static void check_plain(rank_ctx *c, size_t n, uint64_t seed)
{
    const vk_allreduce_ctx *ar = vesta_tp_p2p_ctx(c->p2p, n * 2);
    CHECK(ar != NULL, "no context for %zu bytes", n * 2);
    if (!ar) return;
    fill(c->h_in, n, seed, g_rank);
    CUDA_OK(cudaMemcpyAsync(c->d_a, c->h_in, n * 2, cudaMemcpyHostToDevice, c->s));
    CUDA_OK(vk_allreduce(VK_BF16, ar, c->d_a, n, c->s));
    CUDA_OK(cudaMemcpyAsync(c->h_out, c->d_a, n * 2, cudaMemcpyDeviceToHost, c->s));
    if (!sync_ok(c)) return;
    host_sum(c->h_ref, n, seed, c->h_scr);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (c->h_out[i] != c->h_ref[i] && !bad++) first = i;
    CHECK(!bad, "all-reduce of %zu elements: %zu differ, first at %zu: %g vs %g", n, bad, first, bf2f(c->h_out[first]),
          bf2f(c->h_ref[first]));
}

/* The fused all-reduce + residual add + RMSNorm of rows x hidden against the two calls, and both
 * against the host. */
static void check_fused(rank_ctx *c, int rows, int hidden, uint64_t seed)
{
    const size_t n = (size_t)rows * hidden, bytes = n * 2;
    const vk_allreduce_ctx *ar = vesta_tp_p2p_ctx(c->p2p, bytes);
    CHECK(ar != NULL, "no context for %zu bytes", bytes);
    if (!ar) return;
    const float eps = 1e-5f;
    uint16_t *res = malloc(bytes), *w = malloc((size_t)hidden * 2), *out2 = malloc(bytes), *res2 = malloc(bytes),
             *res3 = malloc(bytes);
    fill(res, n, seed + 1, 0); /* the residual and weights are alike on every rank, as in a replica */
    fill(w, (size_t)hidden, seed + 2, 0);
    fill(c->h_in, n, seed, g_rank);
    /* fused: d_a part, d_b residual, d_c out; separate: d_d part (summed in place), d_e residual, d_a out */
    CUDA_OK(cudaMemcpyAsync(c->d_a, c->h_in, bytes, cudaMemcpyHostToDevice, c->s));
    CUDA_OK(cudaMemcpyAsync(c->d_d, c->h_in, bytes, cudaMemcpyHostToDevice, c->s));
    CUDA_OK(cudaMemcpyAsync(c->d_b, res, bytes, cudaMemcpyHostToDevice, c->s));
    CUDA_OK(cudaMemcpyAsync(c->d_e, res, bytes, cudaMemcpyHostToDevice, c->s));
    uint16_t *d_w = c->d_c + n; /* after the fused output */
    CUDA_OK(cudaMemcpyAsync(d_w, w, (size_t)hidden * 2, cudaMemcpyHostToDevice, c->s));
    CUDA_OK(vk_allreduce_add_rmsnorm(VK_BF16, ar, c->d_c, c->d_b, c->d_a, d_w, rows, hidden, eps, c->s));
    CUDA_OK(vk_allreduce(VK_BF16, ar, c->d_d, n, c->s));
    CUDA_OK(vk_add_rmsnorm(VK_BF16, c->d_a, c->d_e, c->d_d, d_w, rows, hidden, eps, 0, c->s));
    CUDA_OK(cudaMemcpyAsync(c->h_out, c->d_c, bytes, cudaMemcpyDeviceToHost, c->s));
    CUDA_OK(cudaMemcpyAsync(res2, c->d_b, bytes, cudaMemcpyDeviceToHost, c->s));
    CUDA_OK(cudaMemcpyAsync(out2, c->d_a, bytes, cudaMemcpyDeviceToHost, c->s));
    CUDA_OK(cudaMemcpyAsync(res3, c->d_e, bytes, cudaMemcpyDeviceToHost, c->s));
    if (sync_ok(c)) {
        CHECK(!memcmp(c->h_out, out2, bytes) && !memcmp(res2, res3, bytes),
              "fused %d x %d: not the bits of the all-reduce and add_rmsnorm", rows, hidden);
        host_sum(c->h_ref, n, seed, c->h_scr);
        size_t bad_res = 0, bad_out = 0;
        for (int r = 0; r < rows; r++) {
            double ss = 0;
            float v[16384];
            for (int i = 0; i < hidden; i++) {
                size_t at = (size_t)r * hidden + i;
                v[i] = rnd(bf2f(res[at]) + bf2f(c->h_ref[at]));
                bad_res += f2bf(v[i]) != res2[at];
                ss += (double)v[i] * v[i];
            }
            float inv = (float)(1.0 / sqrt(ss / hidden + eps));
            for (int i = 0; i < hidden; i++) {
                float want = rnd(bf2f(w[i]) * rnd(v[i] * inv)), got = bf2f(c->h_out[(size_t)r * hidden + i]);
                /* rsqrt's input summed in another order may move the inner rounding by one
                 * bf16 step: with the outer rounding up to 1.2 % apart */
                bad_out += fabsf(got - want) > 0.02f * fabsf(want) + 1e-6f;
            }
        }
        CHECK(!bad_res && !bad_out, "fused %d x %d against the host: %zu residuals, %zu outputs off", rows, hidden,
              bad_res, bad_out);
    }
    free(res), free(w), free(out2), free(res2), free(res3);
}

static void check_refusals(rank_ctx *c)
{
    const vk_allreduce_ctx *ar = vesta_tp_p2p_ctx(c->p2p, 16);
    CHECK(vesta_tp_p2p_ctx(c->p2p, MAX_BYTES + 16) == NULL, "a context past the buffer");
    if (!ar) return;
    CHECK(vk_allreduce(VK_BF16, ar, c->d_a, MAX_BYTES / 2 + 8, c->s) == cudaErrorInvalidValue, "past the buffer");
    CHECK(vk_allreduce(VK_BF16, ar, c->d_a, 12, c->s) == cudaErrorInvalidValue, "not a multiple of 16 bytes");
    CHECK(vk_allreduce_add_rmsnorm(VK_BF16, ar, c->d_c, c->d_b, c->d_a, c->d_d, 3, 100, 1e-5f, c->s) ==
              cudaErrorInvalidValue,
          "hidden not a multiple of 8");
    CHECK(vk_allreduce_add_rmsnorm(VK_BF16, ar, c->d_c, c->d_b, c->d_a, c->d_d, MAX_BYTES / 8192 + 1, 4096, 1e-5f,
                                   c->s) == cudaErrorInvalidValue,
          "rows past the buffer");
    vk_allreduce_ctx bad = *ar;
    bad.size = VK_AR_MAX_RANKS + 1;
    CHECK(vk_allreduce(VK_BF16, &bad, c->d_a, 8, c->s) == cudaErrorInvalidValue, "a bad context");
    CHECK(vk_allreduce(VK_BF16, NULL, c->d_a, 8, c->s) == cudaErrorInvalidValue, "no context");
    cudaGetLastError();
}

/* Four calls captured once, replayed: the call counter lives on the device. */
static void check_graph(rank_ctx *c)
{
    static const size_t ns[4] = {8, 4096, 40000, 131072};
    const vk_allreduce_ctx *ar = vesta_tp_p2p_ctx(c->p2p, MAX_BYTES);
    uint16_t *in[4] = {c->d_a, c->d_b, c->d_c, c->d_d};
    uint16_t *in_host = malloc(MAX_BYTES);
    for (int k = 0; k < 4; k++) {
        fill(in_host, ns[k], 500 + k, g_rank);
        CUDA_OK(cudaMemcpyAsync(in[k] + ns[k], in_host, ns[k] * 2, cudaMemcpyHostToDevice, c->s)); /* the source */
        CUDA_OK(cudaStreamSynchronize(c->s));
    }
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    CUDA_OK(cudaStreamBeginCapture(c->s, cudaStreamCaptureModeThreadLocal));
    for (int k = 0; k < 4; k++) {
        cudaMemcpyAsync(in[k], in[k] + ns[k], ns[k] * 2, cudaMemcpyDeviceToDevice, c->s);
        vk_allreduce(VK_BF16, ar, in[k], ns[k], c->s);
    }
    CUDA_OK(cudaStreamEndCapture(c->s, &g));
    CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
    for (int it = 0; it < 50 && ge; it++) {
        CUDA_OK(cudaGraphLaunch(ge, c->s));
        if (it % 10 != 9) continue;
        for (int k = 0; k < 4; k++) {
            CUDA_OK(cudaMemcpyAsync(c->h_out, in[k], ns[k] * 2, cudaMemcpyDeviceToHost, c->s));
            if (!sync_ok(c)) break;
            host_sum(c->h_ref, ns[k], 500 + k, c->h_scr);
            CHECK(!memcmp(c->h_out, c->h_ref, ns[k] * 2), "graph replay %d, call %d (%zu elements) differs", it, k,
                  ns[k]);
        }
    }
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    free(in_host);
}

static void checks(rank_ctx *c)
{
    static const size_t sizes[] = {8, 64, 4096, 4104, 262144 / 2, 4096 * 17, 4096 * 32 + 8, MAX_BYTES / 2};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) check_plain(c, sizes[k], 10 + k);
    static const int shapes[][2] = {{1, 4096}, {3, 4096}, {32, 4096}, {33, 4096}, {64, 8192}, {5, 1000}, {2, 16384}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) check_fused(c, shapes[k][0], shapes[k][1], 100 + k);
    /* many calls: sizes and kinds change between calls, so blocks sit some out */
    for (int it = 0; it < 3000 && !failures; it++) {
        if (it % 3 == 2)
            check_fused(c, 1 + it % 40, 4096, 1000 + it);
        else
            check_plain(c, it % 2 ? 8 : (size_t)(4096 * (1 + it % 50)), 1000 + it);
    }
    check_graph(c);
    check_refusals(c);
}

/* ---- timing ---- */
static double graph_us(rank_ctx *c, int p2p, size_t n, int fused_rows)
{
    enum { CALLS = 20, REPS = 20 };
    const vk_allreduce_ctx *ar = vesta_tp_p2p_ctx(c->p2p, n * 2);
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    vesta_error e = {0};
    CUDA_OK(cudaMemsetAsync(c->d_a, 0, n * 2, c->s));
    CUDA_OK(cudaMemsetAsync(c->d_b, 0, n * 2, c->s));
    CUDA_OK(cudaStreamSynchronize(c->s));
    CUDA_OK(cudaStreamBeginCapture(c->s, cudaStreamCaptureModeThreadLocal));
    for (int k = 0; k < CALLS; k++) {
        if (!p2p)
            vesta_tp_comm_all_reduce_sum_dtype(c->comm, c->d_a, n, VESTA_TP_BF16, &e);
        else if (fused_rows)
            vk_allreduce_add_rmsnorm(VK_BF16, ar, c->d_c, c->d_b, c->d_a, c->d_d, fused_rows, (int)(n / fused_rows),
                                     1e-5f, c->s);
        else
            vk_allreduce(VK_BF16, ar, c->d_a, n, c->s);
    }
    CUDA_OK(cudaStreamEndCapture(c->s, &g));
    CUDA_OK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t t0, t1;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    CUDA_OK(cudaGraphLaunch(ge, c->s)); /* warm-up */
    cudaEventRecord(t0, c->s);
    for (int r = 0; r < REPS; r++) cudaGraphLaunch(ge, c->s);
    cudaEventRecord(t1, c->s);
    float ms = 0;
    if (sync_ok(c)) cudaEventElapsedTime(&ms, t0, t1);
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return ms * 1000.0 / (CALLS * REPS);
}

static void timings(rank_ctx *c)
{
    if (g_rank == 0)
        printf("ranks %d, microseconds per all-reduce of bf16 (20 in a CUDA graph, mean of 20 replays):\n"
               "  bytes/rank   p2p   nccl   p2p+add+rmsnorm (rows of 4096)\n",
               g_size);
    for (size_t bytes = 8192; bytes <= MAX_BYTES; bytes *= 2) {
        const size_t n = bytes / 2;
        double p = graph_us(c, 1, n, 0), nc = graph_us(c, 0, n, 0);
        double f = n % 4096 == 0 && n / 4096 <= 128 ? graph_us(c, 1, n, (int)(n / 4096)) : 0;
        if (g_rank == 0) printf("  %9zu  %6.2f  %6.2f  %6.2f\n", bytes, p, nc, f);
    }
}

/* ---- a peer that never comes ---- */

/* host_mode 0: the call's own bound (200 ms) ends it and fails the wait. 1: the call may wait an
 * hour, the wait's bound (the communicator's, cut to 1.5 s) ends first and aborts: the abort must
 * end the call's wait too, not leave it spinning on the stream. */
static void lone_call(rank_ctx *c, int host_mode)
{
    vk_allreduce_ctx solo = *vesta_tp_p2p_ctx(c->p2p, 16);
    solo.timeout_ns = host_mode ? 3600ull * 1000000000ull : 200ull * 1000000ull;
    if (host_mode) c->comm->timeout_ms = 1500;
    struct timespec a, b, d;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CUDA_OK(vk_allreduce(VK_BF16, &solo, c->d_a, 8, c->s));
    vesta_error e = {0};
    cudaEventRecord(c->ev, c->s);
    vesta_status st = vesta_tp_comm_nccl_wait(c->comm, c->ev, &e);
    clock_gettime(CLOCK_MONOTONIC, &b);
    CUDA_OK(cudaStreamSynchronize(c->s)); /* the call itself has ended */
    clock_gettime(CLOCK_MONOTONIC, &d);
    double sec = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    double after = (double)(d.tv_sec - b.tv_sec) + (d.tv_nsec - b.tv_nsec) * 1e-9;
    CHECK(st != VESTA_OK && strstr(e.msg, host_mode ? "did not finish" : "peer-to-peer"),
          "a lone call did not fail the wait (%s)", e.msg);
    CHECK(sec < 10.0 && after < 5.0, "the lone call took %.1f s to fail the wait and %.1f s more to end", sec, after);
    printf("rank 0 alone (%s bound): the wait failed after %.2f s, the call ended %.2f s later: %s\n",
           host_mode ? "the wait's" : "the call's", sec, after, e.msg);
}

static void check_timeout(rank_ctx *c, const char *dir, int host_mode)
{
    char done[512];
    snprintf(done, sizeof done, "%s/rank0-done", dir);
    if (g_rank != 0) { /* stay mapped, call nothing, until rank 0 is done */
        struct stat st;
        for (int i = 0; i < 600 && stat(done, &st) != 0; i++) usleep(50000);
        return;
    }
    lone_call(c, host_mode);
    FILE *f = fopen(done, "w");
    if (f) fclose(f);
}

/* Ranks given different sizes, or one an unusable size, must all refuse (NCCL for everything), never
 * some use the path and some not. With 4 ranks, {64, 128, 128, 192} KB: ranks 1 and 2 hold the mean,
 * so only the second round of the agreement tells them. */
static void check_agreement(rank_ctx *c)
{
    const size_t kb = g_rank == 0 ? 64 : g_rank == g_size - 1 ? 192 : 128;
    for (int round = 0; round < 2; round++) {
        const size_t bytes = round == 0 ? kb << 10 : g_rank == g_size - 1 ? 0 : (size_t)128 << 10;
        vesta_error e = {0};
        vesta_tp_p2p *p = vesta_tp_p2p_create(c->comm, c->s, bytes, &e);
        CHECK(p == NULL && e.code == VESTA_ERR_UNSUPPORTED, "sizes %s: this rank (%zu bytes) got %s (%s)",
              round == 0 ? "differ" : "one unusable", bytes, p ? "the path" : "an error", e.msg);
        if (g_rank == 0) printf("agreement, %s: %s\n", round == 0 ? "sizes differ" : "one size unusable", e.msg);
        vesta_tp_p2p_release(p);
    }
}

static int rank_main(int rank, int size, const char *id, const char *dir, int host_mode, int time_it)
{
    g_rank = rank;
    g_size = size;
    rank_ctx c = {0};
    vesta_error e = {0};
    if (cudaSetDevice(rank) != cudaSuccess || cudaStreamCreateWithFlags(&c.s, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreateWithFlags(&c.ev, cudaEventDisableTiming) != cudaSuccess) {
        fprintf(stderr, "FAIL (rank %d): CUDA set-up\n", rank);
        return 1;
    }
    if ((c.comm = vesta_tp_comm_nccl_create_timeout(id, rank, size, rank, c.s, 60000, &e))) check_agreement(&c);
    if (!c.comm || !(c.p2p = vesta_tp_p2p_create(c.comm, c.s, MAX_BYTES, &e))) {
        fprintf(stderr, "FAIL (rank %d): %s\n", rank, e.msg);
        return 1;
    }
    uint16_t **d[5] = {&c.d_a, &c.d_b, &c.d_c, &c.d_d, &c.d_e};
    for (int k = 0; k < 5; k++) CUDA_OK(cudaMalloc((void **)d[k], 2 * MAX_BYTES)); /* room for a source copy */
    c.h_in = malloc(MAX_BYTES), c.h_ref = malloc(MAX_BYTES), c.h_out = malloc(MAX_BYTES), c.h_scr = malloc(MAX_BYTES);
    if (!failures) checks(&c);
    if (!failures && time_it) timings(&c);
    /* every rank here before rank 0 calls alone */
    float *one = (float *)c.d_e;
    if (vesta_tp_comm_all_reduce_sum(c.comm, one, 1, &e) != VESTA_OK || !sync_ok(&c)) CHECK(0, "barrier: %s", e.msg);
    if (!failures) check_timeout(&c, dir, host_mode);
    printf("rank %d of %d: %s\n", rank, size, failures ? "FAIL" : "ok");
    fflush(stdout);
    /* rank 0's communicator is aborted now; the others leave without waiting on it */
    _exit(failures ? 1 : 0);
}

int main(int argc, char **argv)
{
    int time_it = 0, host_mode = 0, n = 0;
    if (argc >= 11 && !strcmp(argv[1], "--rank")) /* --rank R --size N --id HEX --dir D --lone call|host [--time] */
        return rank_main(atoi(argv[2]), atoi(argv[4]), argv[6], argv[8], !strcmp(argv[10], "host"), argc > 11);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--time"))
            time_it = 1;
        else if (!strcmp(argv[i], "--lone-host"))
            host_mode = 1;
        else
            n = atoi(argv[i]);
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 2) {
        printf("SKIP: %d GPU(s); the peer-to-peer all-reduce needs 2 or more\n", ndev);
        return SKIP;
    }
    if (n <= 0 || n > ndev) n = ndev > VK_AR_MAX_RANKS ? VK_AR_MAX_RANKS : ndev;
    char id[VESTA_TP_NCCL_ID_HEX], dir[] = "/tmp/vesta-p2p-XXXXXX", sz[16], rk[VK_AR_MAX_RANKS][16];
    vesta_error e = {0};
    if (vesta_tp_comm_nccl_id(id, &e) != VESTA_OK || !mkdtemp(dir)) {
        fprintf(stderr, "FAIL: %s\n", e.msg[0] ? e.msg : "mkdtemp");
        return 1;
    }
    snprintf(sz, sizeof sz, "%d", n);
    pid_t pids[VK_AR_MAX_RANKS];
    for (int r = 0; r < n; r++) {
        snprintf(rk[r], sizeof rk[r], "%d", r);
        char *args[] = {"/proc/self/exe",
                        "--rank",
                        rk[r],
                        "--size",
                        sz,
                        "--id",
                        id,
                        "--dir",
                        dir,
                        "--lone",
                        host_mode ? "host" : "call",
                        time_it ? "--time" : NULL,
                        NULL};
        if (posix_spawn(&pids[r], "/proc/self/exe", NULL, NULL, args, environ) != 0) {
            fprintf(stderr, "FAIL: spawning rank %d\n", r);
            return 1;
        }
    }
    int bad = 0;
    for (int r = 0; r < n; r++) {
        int status = 0;
        waitpid(pids[r], &status, 0);
        bad += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    char done[512];
    snprintf(done, sizeof done, "%s/rank0-done", dir);
    unlink(done);
    rmdir(dir);
    printf("%d ranks: %s\n", n, bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}
