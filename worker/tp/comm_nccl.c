/* The NCCL communicator for the GPU backend: buffers are device pointers and every collective is
 * enqueued on the backend's compute stream (so a CUDA graph capturing a decode step captures the
 * all-reduces too). Bootstrap: the leader makes an ncclUniqueId, passes it as hex text to the
 * other ranks, and all call ncclCommInitRankConfig.
 *
 * Failure: the communicator is non-blocking (config.blocking = 0) so that nothing in NCCL can
 * wait forever: joining polls ncclCommGetAsyncError against a deadline, and the backend waits for
 * a step through vesta_tp_comm_nccl_wait, which watches the same error state and the clock while
 * the stream runs. A dead or hung peer -> ncclCommAbort (which also stops the collective kernels
 * spinning on the stream), VESTA_ERR_BACKEND, the communicator poisoned. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

typedef struct nccl_comm {
    vesta_tp_comm base; /* must be first */
    ncclComm_t comm;
    cudaStream_t stream;
    int failed;
    int aborted;
    volatile int *watch; /* vesta_tp_comm_nccl_watch */
    const char *watch_what;
} nccl_comm;

static const vesta_tp_comm_ops nccl_ops;

static nccl_comm *nccl_of(vesta_tp_comm *c) { return (nccl_comm *)c; }

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static void nccl_abort(nccl_comm *n)
{
    n->failed = 1;
    if (n->watch)
        *n->watch = 1; /* the watched kernels stop waiting too (ncclCommAbort stops only NCCL's) */
    if (n->comm && !n->aborted) {
        ncclCommAbort(n->comm);
        n->aborted = 1;
    }
}

/* A non-blocking communicator may answer ncclInProgress: the call is then still being issued and
 * must finish (async error back to ncclSuccess) before the next NCCL call. Bounded by the
 * communicator's timeout. */
static vesta_status settle(nccl_comm *n, ncclResult_t r, const char *what, vesta_error *err)
{
    double t0 = now_ms();
    while (r == ncclInProgress) {
        if (ncclCommGetAsyncError(n->comm, &r) != ncclSuccess)
            r = ncclInternalError;
        if (r != ncclInProgress)
            break;
        if (now_ms() - t0 > n->base.timeout_ms) {
            nccl_abort(n);
            return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): %s did not complete in %d ms "
                                   "(a peer rank is gone or hung)", n->base.rank, what, n->base.timeout_ms);
        }
        sched_yield();
    }
    if (r == ncclSuccess)
        return VESTA_OK;
    nccl_abort(n);
    return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): %s: %s", n->base.rank, what,
                           ncclGetErrorString(r));
}

static vesta_status alive(nccl_comm *n, vesta_error *err)
{
    if (n->failed)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): the replica already failed",
                               n->base.rank);
    return VESTA_OK;
}

static vesta_status nccl_all_reduce_dtype(vesta_tp_comm *c, void *buf, size_t n, vesta_tp_dtype dt,
                                          vesta_error *err)
{
    nccl_comm *nc = nccl_of(c);
    if (alive(nc, err) != VESTA_OK)
        return VESTA_ERR_BACKEND;
    ncclDataType_t t;
    switch (dt) {
    case VESTA_TP_F32: t = ncclFloat32; break;
    case VESTA_TP_BF16: t = ncclBfloat16; break;
    default:
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "tp comm (nccl): element type %d", (int)dt);
    }
    return settle(nc, ncclAllReduce(buf, buf, n, t, ncclSum, nc->comm, nc->stream), "ncclAllReduce", err);
}

static vesta_status nccl_all_reduce(vesta_tp_comm *c, float *buf, size_t n, vesta_error *err)
{
    return nccl_all_reduce_dtype(c, buf, n, VESTA_TP_F32, err);
}

static vesta_status nccl_all_gather(vesta_tp_comm *c, const float *in, size_t n, float *out, vesta_error *err)
{
    nccl_comm *nc = nccl_of(c);
    if (alive(nc, err) != VESTA_OK)
        return VESTA_ERR_BACKEND;
    return settle(nc, ncclAllGather(in, out, n, ncclFloat32, nc->comm, nc->stream), "ncclAllGather", err);
}

static vesta_status nccl_broadcast(vesta_tp_comm *c, void *buf, size_t bytes, int root, int timeout_ms,
                                   vesta_error *err)
{
    (void)timeout_ms; /* enqueued, not waited for: vesta_tp_comm_nccl_wait bounds the wait */
    nccl_comm *nc = nccl_of(c);
    if (alive(nc, err) != VESTA_OK)
        return VESTA_ERR_BACKEND;
    return settle(nc, ncclBroadcast(buf, buf, bytes, ncclUint8, root, nc->comm, nc->stream), "ncclBroadcast", err);
}

static void nccl_release(vesta_tp_comm *c)
{
    nccl_comm *nc = nccl_of(c);
    if (nc->comm) {
        if (nc->failed) {
            nccl_abort(nc);
        } else {
            /* a non-blocking destroy: finalize, then wait (bounded: a replica going down must not
             * wait out the step timeout for a peer that already left) before destroying */
            ncclResult_t r = ncclCommFinalize(nc->comm);
            if (nc->base.timeout_ms > 10000)
                nc->base.timeout_ms = 10000;
            vesta_error e = {0};
            if (settle(nc, r, "ncclCommFinalize", &e) == VESTA_OK)
                ncclCommDestroy(nc->comm);
            /* else settle aborted it */
        }
    }
    free(nc);
}

static const vesta_tp_comm_ops nccl_ops = {
    .name = "nccl",
    .all_reduce_sum = nccl_all_reduce,
    .all_gather = nccl_all_gather,
    .broadcast = nccl_broadcast,
    .release = nccl_release,
    .all_reduce_sum_dtype = nccl_all_reduce_dtype,
};

vesta_status vesta_tp_comm_nccl_id(char hex[VESTA_TP_NCCL_ID_HEX], vesta_error *err)
{
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm: ncclGetUniqueId: %s", ncclGetErrorString(r));
    _Static_assert(sizeof id.internal * 2 + 1 <= VESTA_TP_NCCL_ID_HEX, "NCCL id size");
    for (size_t i = 0; i < sizeof id.internal; i++)
        snprintf(hex + 2 * i, 3, "%02x", (unsigned char)id.internal[i]);
    return VESTA_OK;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

vesta_tp_comm *vesta_tp_comm_nccl_create_timeout(const char *id_hex, int rank, int size, int device, void *stream,
                                                 int timeout_ms, vesta_error *err)
{
    ncclUniqueId id;
    if (!id_hex || strlen(id_hex) != 2 * sizeof id.internal) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: NCCL id must be %zu hex digits",
                        2 * sizeof id.internal);
        return NULL;
    }
    for (size_t i = 0; i < sizeof id.internal; i++) {
        int hi = hexval(id_hex[2 * i]), lo = hexval(id_hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: NCCL id is not lower-case hex");
            return NULL;
        }
        id.internal[i] = (char)(hi << 4 | lo);
    }
    if (size < 1 || size > VESTA_TP_MAX_RANKS || rank < 0 || rank >= size || timeout_ms <= 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: rank %d of %d (timeout %d ms)", rank, size, timeout_ms);
        return NULL;
    }
    if (cudaSetDevice(device) != cudaSuccess) {
        vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm: cudaSetDevice(%d) failed", device);
        return NULL;
    }
    nccl_comm *nc = calloc(1, sizeof *nc);
    if (!nc) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "tp comm: out of memory");
        return NULL;
    }
    nc->base.ops = &nccl_ops;
    nc->base.rank = rank;
    nc->base.size = size;
    nc->base.timeout_ms = timeout_ms;
    nc->stream = (cudaStream_t)stream;
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t r = ncclCommInitRankConfig(&nc->comm, size, id, rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm: ncclCommInitRankConfig (rank %d of %d): %s", rank, size,
                        ncclGetErrorString(r));
        if (nc->comm)
            ncclCommAbort(nc->comm);
        free(nc);
        return NULL;
    }
    if (settle(nc, r, "joining the NCCL communicator", err) != VESTA_OK) {
        free(nc); /* settle aborted it */
        return NULL;
    }
    return &nc->base;
}

vesta_tp_comm *vesta_tp_comm_nccl_create(const char *id_hex, int rank, int size, int device, void *stream,
                                         vesta_error *err)
{
    return vesta_tp_comm_nccl_create_timeout(id_hex, rank, size, device, stream, 60000, err);
}

vesta_status vesta_tp_comm_nccl_wait(vesta_tp_comm *c, void *event, vesta_error *err)
{
    if (!c || c->ops != &nccl_ops || !event)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: nccl_wait needs an NCCL communicator and an "
                               "event");
    nccl_comm *nc = nccl_of(c);
    if (alive(nc, err) != VESTA_OK)
        return VESTA_ERR_BACKEND;
    cudaEvent_t ev = (cudaEvent_t)event;
    double t0 = now_ms();
    /* Spin for the first milliseconds (a decode step is a few ms: sleeping would add latency),
     * then back off: a long wait is a long prefill or a peer in trouble. */
    for (unsigned spins = 0;; spins++) {
        cudaError_t ce = cudaEventQuery(ev);
        /* checked after the query: a step that completed with a kernel timed out is failed too */
        if (nc->watch && *nc->watch) {
            nccl_abort(nc);
            return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): %s: a peer rank did not arrive "
                                   "within %d ms (gone or hung); communicator aborted", c->rank, nc->watch_what,
                                   c->timeout_ms);
        }
        if (ce == cudaSuccess)
            break;
        if (ce != cudaErrorNotReady) {
            nccl_abort(nc);
            return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): waiting for the step: %s",
                                   c->rank, cudaGetErrorString(ce));
        }
        ncclResult_t ar = ncclSuccess;
        if (ncclCommGetAsyncError(nc->comm, &ar) != ncclSuccess || (ar != ncclSuccess && ar != ncclInProgress)) {
            nccl_abort(nc);
            return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): a collective failed: %s "
                                   "(a peer rank died?)", c->rank, ncclGetErrorString(ar));
        }
        double el = now_ms() - t0;
        if (el > c->timeout_ms) {
            nccl_abort(nc);
            return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): the step's collectives did not "
                                   "finish in %d ms (a peer rank is gone or hung); communicator aborted", c->rank,
                                   c->timeout_ms);
        }
        if (el > 20.0)
            usleep(100);
        else if (spins % 64 == 63)
            sched_yield();
    }
    return VESTA_OK;
}

void vesta_tp_comm_nccl_watch(vesta_tp_comm *c, volatile int *word, const char *what)
{
    if (!c || c->ops != &nccl_ops)
        return;
    nccl_comm *nc = nccl_of(c);
    nc->watch = word;
    nc->watch_what = what ? what : "a collective kernel";
}
