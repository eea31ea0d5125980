/* Prometheus text exposition (format 0.0.4) of the router's metrics: vLLM's metric set under the
 * `vesta:` prefix. Histograms have fixed buckets (vLLM's). Not thread-safe: the event-loop thread
 * owns every value. */
#ifndef VR_METRICS_H
#define VR_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef enum vr_hist_kind {
    VR_HIST_TTFT = 0,    /* time_to_first_token_seconds */
    VR_HIST_ITL,         /* inter_token_latency_seconds */
    VR_HIST_E2E,         /* e2e_request_latency_seconds */
    VR_HIST_QUEUE,       /* request_queue_time_seconds */
    VR_HIST_COUNT
} vr_hist_kind;

#define VR_HIST_MAX_BUCKETS 24

typedef struct vr_hist {
    uint64_t counts[VR_HIST_MAX_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
    uint64_t count;
    double sum;
} vr_hist;

typedef enum vr_finish_kind {
    VR_FINISH_STOP = 0,
    VR_FINISH_LENGTH,
    VR_FINISH_ABORT,
    VR_FINISH_ERROR,
    VR_FINISH_COUNT
} vr_finish_kind;

/* Router-measured series, kept per worker and aggregated. */
typedef struct vr_req_metrics {
    vr_hist hist[VR_HIST_COUNT];
    uint64_t success[VR_FINISH_COUNT];   /* request_success_total{finished_reason} per sequence */
    uint64_t prompt_tokens;
    uint64_t generation_tokens;
    uint64_t routed;                     /* requests routed to it */
} vr_req_metrics;

void vr_hist_observe(vr_hist *h, vr_hist_kind kind, double seconds);
const char *vr_finish_kind_name(vr_finish_kind k);

/* A growing text buffer for the exposition. */
typedef struct vr_text {
    char *data;
    size_t len, cap;
    int failed; /* an allocation failed: the text is incomplete */
} vr_text;

void vr_text_printf(vr_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vr_text_free(vr_text *t);

/* Writes `# HELP`/`# TYPE` headers. */
void vr_metrics_header(vr_text *t, const char *name, const char *type, const char *help);
/* One histogram's series with the given label set (e.g. `model_name="m",worker="w0"`). */
void vr_metrics_hist(vr_text *t, const char *name, vr_hist_kind kind, const vr_hist *h,
                     const char *labels);

const char *vr_hist_name(vr_hist_kind kind);
const char *vr_hist_help(vr_hist_kind kind);

#endif
