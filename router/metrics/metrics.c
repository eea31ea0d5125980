#include "metrics/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vLLM's bucket boundaries (vllm/v1/metrics/loggers.py). */
static const double TTFT_B[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
static const double ITL_B[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                               0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
static const double E2E_B[] = {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
                               30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

static const double *buckets(vr_hist_kind k, size_t *n)
{
    switch (k) {
    case VR_HIST_TTFT:
        *n = sizeof TTFT_B / sizeof TTFT_B[0];
        return TTFT_B;
    case VR_HIST_ITL:
        *n = sizeof ITL_B / sizeof ITL_B[0];
        return ITL_B;
    default:
        *n = sizeof E2E_B / sizeof E2E_B[0];
        return E2E_B;
    }
}

void vr_hist_observe(vr_hist *h, vr_hist_kind kind, double s)
{
    size_t n;
    const double *b = buckets(kind, &n);
    size_t i = 0;
    while (i < n && s > b[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += s;
}

const char *vr_finish_kind_name(vr_finish_kind k)
{
    static const char *const names[] = {"stop", "length", "abort", "error"};
    return k < VR_FINISH_COUNT ? names[k] : "error";
}

const char *vr_hist_name(vr_hist_kind kind)
{
    static const char *const names[] = {
        "vesta:time_to_first_token_seconds", "vesta:inter_token_latency_seconds",
        "vesta:e2e_request_latency_seconds", "vesta:request_queue_time_seconds"};
    return names[kind];
}

const char *vr_hist_help(vr_hist_kind kind)
{
    static const char *const help[] = {
        "Histogram of time to first token in seconds (router-measured).",
        "Histogram of inter-token latency in seconds (router-measured).",
        "Histogram of end-to-end request latency in seconds (router-measured).",
        "Histogram of time requests spent in the router before dispatch, in seconds."};
    return help[kind];
}

void vr_text_printf(vr_text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = vsnprintf(t->data ? t->data + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *d = realloc(t->data, cap);
        if (d == NULL) {
            t->failed = 1;
            return;
        }
        t->data = d;
        t->cap = cap;
    }
}

void vr_text_free(vr_text *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

void vr_metrics_header(vr_text *t, const char *name, const char *type, const char *help)
{
    vr_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void vr_metrics_hist(vr_text *t, const char *name, vr_hist_kind kind, const vr_hist *h,
                     const char *labels)
{
    size_t n;
    const double *b = buckets(kind, &n);
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < n; i++) {
        cum += h->counts[i];
        vr_text_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, b[i],
                       (unsigned long long)cum);
    }
    cum += h->counts[n];
    vr_text_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                   (unsigned long long)cum);
    vr_text_printf(t, "%s_sum{%s} %.9g\n", name, labels, h->sum);
    vr_text_printf(t, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
}
