/* A kernel tracer for GPU machines without Nsight Systems. Loaded with LD_PRELOAD into a CUDA
 * program, it records every kernel's start and end through CUPTI's activity API, whose concurrent
 * kernel records keep kernels overlapping (programmatic dependent launches included), and writes
 * them as CSV to the file named by VESTA_CUPTI_TRACE ("Start (ns)","Duration (ns)","Name", mangled
 * names), the format bench/gpu/trace_summary.py reads. Without VESTA_CUPTI_TRACE it does nothing;
 * a CUPTI error is reported on stderr and the program runs on untraced. Records arrive as CUPTI
 * fills its buffers and at exit. */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

#define TRACE_BUFFER_BYTES (8u << 20)

static FILE *trace_out; /* set once before CUDA starts; CUPTI calls back on its own thread */

static void CUPTIAPI trace_buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *buffer = aligned_alloc(8, TRACE_BUFFER_BYTES);
    *size = *buffer ? TRACE_BUFFER_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI trace_buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                            size_t valid)
{
    CUpti_Activity *rec = NULL;
    (void)ctx;
    (void)stream;
    (void)size;
    while (trace_out && cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        fprintf(trace_out, "%llu,%llu,\"%s\"\n", (unsigned long long)k->start,
                (unsigned long long)(k->end - k->start), k->name ? k->name : "?");
    }
    free(buffer);
}

static void trace_fail(const char *what, CUptiResult r)
{
    const char *text = NULL;
    cuptiGetResultString(r, &text);
    fprintf(stderr, "cupti_trace: %s: %s; not tracing\n", what, text ? text : "unknown error");
}

__attribute__((constructor)) static void trace_start(void)
{
    const char *path = getenv("VESTA_CUPTI_TRACE");
    if (!path || !*path) return;
    if (!(trace_out = fopen(path, "w"))) {
        perror("cupti_trace: VESTA_CUPTI_TRACE");
        return;
    }
    fprintf(trace_out, "Start (ns),Duration (ns),Name\n");
    CUptiResult r = cuptiActivityRegisterCallbacks(trace_buffer_requested, trace_buffer_completed);
    if (r != CUPTI_SUCCESS) {
        trace_fail("cuptiActivityRegisterCallbacks", r);
    } else if ((r = cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)) != CUPTI_SUCCESS) {
        trace_fail("cuptiActivityEnable", r);
    } else {
        return;
    }
    fclose(trace_out);
    trace_out = NULL;
}

__attribute__((destructor)) static void trace_stop(void)
{
    if (!trace_out) return;
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    fclose(trace_out);
    trace_out = NULL;
}
