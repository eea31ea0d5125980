/* Where a step's device time goes, by class of operation (VESTA_PROFILE=1; docs/cuda-backend.md).
 *
 * An event is recorded on the stream after every operation of an eager step; the time between
 * two consecutive events is the device time of the operation between them (the GPU runs the
 * stream's kernels one after another, so the gaps are the kernels plus their launch gaps). Decode
 * graphs replay without events: profile with --enforce-eager, whose kernels are the same. The
 * totals are kept apart for steps with and without prefill tokens and printed when the backend
 * is destroyed; VESTA_PROFILE=2 also prints every step with prefill tokens on its own line. Off
 * (the default), cuda_profile_mark is one branch. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cuda_internal.h"

double cuda_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define PROF_EVENTS 2048 /* marks per step; a step with more stops recording (its tail is lost) */

static const char *const prof_names[CUDA_PROF_COUNT] = {
    "embedding", "add+RMSNorm", "q|k|v GEMM", "RoPE+KV write", "attention", "o_proj GEMM",     "gate|up GEMM",
    "SiLU*up",   "down GEMM",   "all-reduce", "LM head",       "sampling",  "metadata upload",
};

vesta_status cuda_profile_init(cuda_backend *be, vesta_error *err)
{
    const char *v = getenv("VESTA_PROFILE");
    if (!v || !*v || *v == '0') return VESTA_OK;
    be->prof_ev = calloc(PROF_EVENTS, sizeof *be->prof_ev);
    be->prof_cat = calloc(PROF_EVENTS, sizeof *be->prof_cat);
    be->prof_host = calloc(PROF_EVENTS, sizeof *be->prof_host);
    if (!be->prof_ev || !be->prof_cat || !be->prof_host)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "cuda: profile: out of host memory");
    for (int i = 0; i < PROF_EVENTS; i++) CU(cudaEventCreate(&be->prof_ev[i]));
    be->prof = true;
    be->prof_each = *v == '2';
    fprintf(stderr, "cuda: VESTA_PROFILE: eager steps timed per operation (events)\n");
    return VESTA_OK;
fail:
    return VESTA_ERR_BACKEND;
}

void cuda_profile_mark(cuda_backend *be, int cat)
{
    if (!be->prof || be->prof_off || be->prof_n >= PROF_EVENTS) return;
    if (cudaEventRecord(be->prof_ev[be->prof_n], be->stream) != cudaSuccess) return;
    if (be->prof_each) be->prof_host[be->prof_n] = cuda_now_s();
    be->prof_cat[be->prof_n++] = (signed char)cat;
}

void cuda_profile_collect(cuda_backend *be, bool has_prefill)
{
    if (!be->prof || be->prof_n == 0) return;
    double *ms = be->prof_ms[has_prefill], step[CUDA_PROF_COUNT] = {0};
    for (int i = 1; i < be->prof_n; i++) {
        float t = 0;
        if (cudaEventElapsedTime(&t, be->prof_ev[i - 1], be->prof_ev[i]) == cudaSuccess && be->prof_cat[i] >= 0)
            step[be->prof_cat[i]] += t;
    }
    char line[1024];
    int len = 0;
    double tot = 0;
    for (int c = 0; c < CUDA_PROF_COUNT; c++) {
        ms[c] += step[c];
        tot += step[c];
        if (step[c] > 0 && len < (int)sizeof line - 64)
            len += snprintf(line + len, sizeof line - (size_t)len, " %s %.3f", prof_names[c], step[c]);
    }
    if (be->prof_each && has_prefill) /* VESTA_PROFILE=2: every prefill step on its own line, with the
                                         host's time to issue it (close to the device time: host-bound) */
        fprintf(stderr, "cuda: profile step: %.3f ms on the device, issued in %.3f ms:%s\n", tot,
                1e3 * (be->prof_host[be->prof_n - 1] - be->prof_host[0]), line);
    be->prof_steps[has_prefill]++;
    be->prof_n = 0;
}

void cuda_profile_report(cuda_backend *be)
{
    if (!be->prof) return;
    for (int k = 0; k < 2; k++) {
        double tot = 0;
        for (int c = 0; c < CUDA_PROF_COUNT; c++) tot += be->prof_ms[k][c];
        if (be->prof_steps[k] == 0 || tot <= 0) continue;
        fprintf(stderr, "cuda: profile: %ld %s steps, %.1f ms of device time (%.3f ms a step):\n", be->prof_steps[k],
                k ? "prefill (or mixed)" : "decode-only", tot, tot / (double)be->prof_steps[k]);
        for (int c = 0; c < CUDA_PROF_COUNT; c++)
            if (be->prof_ms[k][c] > 0)
                fprintf(stderr, "cuda: profile:   %-16s %10.1f ms %5.1f %% %8.3f ms a step\n", prof_names[c],
                        be->prof_ms[k][c], 100.0 * be->prof_ms[k][c] / tot, be->prof_ms[k][c] / be->prof_steps[k]);
    }
}

void cuda_profile_dispose(cuda_backend *be)
{
    if (be->prof_ev)
        for (int i = 0; i < PROF_EVENTS; i++)
            if (be->prof_ev[i]) cudaEventDestroy(be->prof_ev[i]);
    free(be->prof_ev);
    free(be->prof_cat);
    free(be->prof_host);
    be->prof_ev = NULL;
    be->prof_cat = NULL;
    be->prof_host = NULL;
    be->prof = false;
}
