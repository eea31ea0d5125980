/* The shared-memory communicator between real processes (fork, no OpenMP in this program):
 *   - all_reduce_sum / all_gather / broadcast with sizes below and above one slot (pieces),
 *     against sums computed here; all ranks get bit-identical all-reduce results;
 *   - a rank that dies mid-run: the others fail within a second or so (not at the 20 s timeout);
 *   - a rank that is alive but silent: the others fail at the timeout;
 *   - a mismatched replica size is refused; nothing is left in /dev/shm. */
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

#define N 3
#define SLOT 4096

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float value(int rank, size_t i) { return (float)((i * 7 + (size_t)rank * 13) % 101) * 0.25f - 3.0f; }

/* One rank of the collectives test; returns the process exit code. */
static int collectives(const char *name, int rank)
{
    vesta_error e = {0};
    vesta_tp_comm *c = vesta_tp_comm_shm_create(name, rank, N, SLOT, 20000, &e);
    if (!c) {
        fprintf(stderr, "rank %d: %s\n", rank, e.msg);
        return 1;
    }
    static const size_t sizes[] = {1, 1000, 1024, 5000, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *buf = malloc(n * sizeof(float)), *out = malloc(N * n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            buf[i] = value(rank, i);
        if (vesta_tp_comm_all_reduce_sum(c, buf, n, &e) != VESTA_OK) {
            fprintf(stderr, "rank %d: all_reduce: %s\n", rank, e.msg);
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            float want = value(0, i);
            for (int r = 1; r < N; r++)
                want += value(r, i);
            if (buf[i] != want) {
                fprintf(stderr, "rank %d: all_reduce n=%zu [%zu] = %g, want %g\n", rank, n, i, buf[i], want);
                return 1;
            }
        }
        for (size_t i = 0; i < n; i++)
            buf[i] = value(rank, i);
        if (vesta_tp_comm_all_gather(c, buf, n, out, &e) != VESTA_OK) {
            fprintf(stderr, "rank %d: all_gather: %s\n", rank, e.msg);
            return 1;
        }
        for (int r = 0; r < N; r++)
            for (size_t i = 0; i < n; i++)
                if (out[(size_t)r * n + i] != value(r, i)) {
                    fprintf(stderr, "rank %d: all_gather n=%zu rank %d [%zu] wrong\n", rank, n, r, i);
                    return 1;
                }
        int root = (int)(k % N);
        for (size_t i = 0; i < n; i++)
            buf[i] = rank == root ? value(100, i) : -1.0f;
        if (vesta_tp_comm_broadcast(c, buf, n * sizeof(float), root, -1, &e) != VESTA_OK) {
            fprintf(stderr, "rank %d: broadcast: %s\n", rank, e.msg);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            if (buf[i] != value(100, i)) {
                fprintf(stderr, "rank %d: broadcast n=%zu from %d [%zu] wrong\n", rank, n, root, i);
                return 1;
            }
        free(buf);
        free(out);
    }
    vesta_tp_comm_release(c);
    return 0;
}

/* Rank `victim` dies (or, with silent, stops calling) after the first all-reduce; the others must
 * fail their next collective. Survivors exit 0 when they saw an error within max_s. */
static int failure(const char *name, int rank, int victim, bool silent, double max_s)
{
    vesta_error e = {0};
    vesta_tp_comm *c = vesta_tp_comm_shm_create(name, rank, N, SLOT, silent ? 1500 : 20000, &e);
    if (!c)
        return 1;
    float x[16] = {0};
    if (vesta_tp_comm_all_reduce_sum(c, x, 16, &e) != VESTA_OK)
        return 1;
    if (rank == victim) {
        if (silent)
            usleep(2500000);
        _exit(7);
    }
    double t0 = now_s();
    vesta_status st = VESTA_OK;
    for (int i = 0; i < 1000 && st == VESTA_OK; i++)
        st = vesta_tp_comm_all_reduce_sum(c, x, 16, &e);
    double dt = now_s() - t0;
    printf("rank %d: %s after %.2f s: %s\n", rank, st == VESTA_OK ? "no error" : "error", dt, e.msg);
    /* Once failed, every later call fails at once. */
    vesta_status again = vesta_tp_comm_broadcast(c, x, sizeof x, 0, -1, &e);
    vesta_tp_comm_release(c);
    return st != VESTA_OK && again != VESTA_OK && dt < max_s ? 0 : 1;
}

static int run_group(const char *what, int (*fn)(const char *, int, int, bool, double), int victim, bool silent,
                     double max_s)
{
    char name[96];
    vesta_tp_comm_shm_name(name, sizeof name);
    pid_t pids[N];
    for (int r = 0; r < N; r++) {
        pids[r] = fork();
        if (pids[r] == 0)
            _exit(fn ? fn(name, r, victim, silent, max_s) : collectives(name, r));
    }
    int failures = 0;
    for (int r = 0; r < N; r++) {
        int status;
        waitpid(pids[r], &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
        int want = fn && r == victim ? 7 : 0;
        if (code != want) {
            fprintf(stderr, "FAIL: %s: rank %d exited %d, want %d\n", what, r, code, want);
            failures++;
        }
    }
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    if (access(path, F_OK) == 0) {
        fprintf(stderr, "FAIL: %s: %s left behind\n", what, path);
        unlink(path);
        failures++;
    }
    printf("%s: %s\n", what, failures ? "FAIL" : "ok");
    return failures;
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int failures = run_group("collectives", NULL, -1, false, 0);
    failures += run_group("follower dies", failure, 2, false, 3.0);
    failures += run_group("leader dies", failure, 0, false, 3.0);
    failures += run_group("silent rank", failure, 1, true, 4.5);

    /* A rank that expects another replica size is refused (rank 0 then times out joining). */
    char name[96];
    vesta_tp_comm_shm_name(name, sizeof name);
    pid_t p = fork();
    if (p == 0) {
        vesta_error e = {0};
        vesta_tp_comm *c = vesta_tp_comm_shm_create(name, 0, 2, SLOT, 1500, &e);
        _exit(c ? 1 : 0);
    }
    vesta_error e = {0};
    vesta_tp_comm *c = vesta_tp_comm_shm_create(name, 1, 3, SLOT, 5000, &e);
    int status;
    waitpid(p, &status, 0);
    if (c || !strstr(e.msg, "made for 2 ranks") || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "FAIL: size mismatch not refused (%s)\n", e.msg);
        failures++;
    } else {
        printf("size mismatch refused: %s\n", e.msg);
    }
    vesta_tp_comm_release(c);
    return failures ? 1 : 0;
}
