/* The NCCL communicator for the GPU backend: buffers are device pointers and every collective is
 * enqueued on the backend's compute stream (so a CUDA graph capturing a decode step captures the
 * all-reduces too). Bootstrap: the leader makes an ncclUniqueId, passes it as hex text to the
 * other ranks, and all call ncclCommInitRank. Failure: NCCL errors are returned as
 * VESTA_ERR_BACKEND and poison the communicator; release then aborts it (ncclCommAbort) rather
 * than waiting for peers. Bounding the stream's wait on a dead peer is the GPU backend's job. */
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

typedef struct nccl_comm {
    vesta_tp_comm base; /* must be first */
    ncclComm_t comm;
    cudaStream_t stream;
    int failed;
} nccl_comm;

static nccl_comm *nccl_of(vesta_tp_comm *c) { return (nccl_comm *)c; }

static vesta_status nccl_check(nccl_comm *n, ncclResult_t r, const char *what, vesta_error *err)
{
    if (r == ncclSuccess || r == ncclInProgress)
        return VESTA_OK;
    n->failed = 1;
    return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl rank %d): %s: %s", n->base.rank, what,
                           ncclGetErrorString(r));
}

static vesta_status nccl_all_reduce(vesta_tp_comm *c, float *buf, size_t n, vesta_error *err)
{
    nccl_comm *nc = nccl_of(c);
    if (nc->failed)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl): the replica already failed");
    return nccl_check(nc, ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, nc->comm, nc->stream), "ncclAllReduce",
                      err);
}

static vesta_status nccl_all_gather(vesta_tp_comm *c, const float *in, size_t n, float *out, vesta_error *err)
{
    nccl_comm *nc = nccl_of(c);
    if (nc->failed)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl): the replica already failed");
    return nccl_check(nc, ncclAllGather(in, out, n, ncclFloat32, nc->comm, nc->stream), "ncclAllGather", err);
}

static vesta_status nccl_broadcast(vesta_tp_comm *c, void *buf, size_t bytes, int root, int timeout_ms,
                                   vesta_error *err)
{
    (void)timeout_ms; /* enqueued, not waited for: the stream's consumer bounds the wait */
    nccl_comm *nc = nccl_of(c);
    if (nc->failed)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm (nccl): the replica already failed");
    return nccl_check(nc, ncclBroadcast(buf, buf, bytes, ncclUint8, root, nc->comm, nc->stream), "ncclBroadcast",
                      err);
}

static void nccl_release(vesta_tp_comm *c)
{
    nccl_comm *nc = nccl_of(c);
    if (nc->comm) {
        if (nc->failed)
            ncclCommAbort(nc->comm);
        else
            ncclCommDestroy(nc->comm);
    }
    free(nc);
}

static const vesta_tp_comm_ops nccl_ops = {
    .name = "nccl",
    .all_reduce_sum = nccl_all_reduce,
    .all_gather = nccl_all_gather,
    .broadcast = nccl_broadcast,
    .release = nccl_release,
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

vesta_tp_comm *vesta_tp_comm_nccl_create(const char *id_hex, int rank, int size, int device, void *stream,
                                         vesta_error *err)
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
    if (size < 1 || size > VESTA_TP_MAX_RANKS || rank < 0 || rank >= size) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: rank %d of %d", rank, size);
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
    nc->base.timeout_ms = 60000;
    nc->stream = (cudaStream_t)stream;
    ncclResult_t r = ncclCommInitRank(&nc->comm, size, id, rank);
    if (r != ncclSuccess) {
        vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm: ncclCommInitRank (rank %d of %d): %s", rank, size,
                        ncclGetErrorString(r));
        nc->comm = NULL;
        free(nc);
        return NULL;
    }
    return &nc->base;
}
