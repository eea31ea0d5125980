/* The peer-to-peer all-reduce's set-up (p2p.h): this rank's region, the IPC handles exchanged
 * through the NCCL communicator, the peers' regions mapped, and the ranks' agreement that every
 * one of them can use it -- the kernels then rely on every rank taking the same path. */
#include <cuda_runtime.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p2p.h"

struct vesta_tp_p2p {
    vk_allreduce_ctx ctx;
    vesta_tp_comm *comm;
    void *own;     /* this rank's region (ctx.region[rank]) */
    int *err_host; /* host side of ctx.error */
    bool mapped[VK_AR_MAX_RANKS];
};

/* An IPC handle travels as floats through the communicator's all-gather (bytes are copied, not
 * computed on). */
#define HANDLE_FLOATS (sizeof(cudaIpcMemHandle_t) / sizeof(float))
_Static_assert(sizeof(cudaIpcMemHandle_t) % sizeof(float) == 0, "IPC handle size");

void vesta_tp_p2p_release(vesta_tp_p2p *p)
{
    if (!p) return;
    vesta_tp_comm_nccl_watch(p->comm, NULL, NULL);
    for (int r = 0; r < VK_AR_MAX_RANKS; r++)
        if (p->mapped[r]) cudaIpcCloseMemHandle(p->ctx.region[r]);
    cudaFree(p->own);
    cudaFree(p->ctx.epoch);
    cudaFreeHost(p->err_host);
    free(p);
}

const vk_allreduce_ctx *vesta_tp_p2p_ctx(const vesta_tp_p2p *p, size_t bytes)
{
    return p && bytes <= p->ctx.data_bytes ? &p->ctx : NULL;
}

/* This rank's region, counters and error word; *why says what failed. */
static void alloc_local(vesta_tp_p2p *p, cudaStream_t s, size_t max_bytes, cudaIpcMemHandle_t *h, char *why, size_t cap)
{
    const char *what = "cudaMalloc";
    cudaError_t ce = cudaMalloc(&p->own, VK_AR_REGION_BYTES(max_bytes));
    if (ce == cudaSuccess) ce = cudaMemsetAsync(p->own, 0, VK_AR_FLAG_BYTES, s);
    /* the call counters, then the device's failure word */
    const size_t counters = sizeof(unsigned long long) * VK_AR_MAX_BLOCKS;
    if (ce == cudaSuccess) ce = cudaMalloc((void **)&p->ctx.epoch, counters + sizeof(unsigned long long));
    if (ce == cudaSuccess) ce = cudaMemsetAsync(p->ctx.epoch, 0, counters + sizeof(unsigned long long), s);
    if (ce == cudaSuccess) p->ctx.failed = (int *)((char *)p->ctx.epoch + counters);
    if (ce == cudaSuccess && (what = "cudaHostAlloc") &&
        (ce = cudaHostAlloc((void **)&p->err_host, sizeof(int), cudaHostAllocMapped)) == cudaSuccess) {
        *p->err_host = 0;
        ce = cudaHostGetDevicePointer((void **)&p->ctx.error, p->err_host, 0);
    }
    if (ce == cudaSuccess && (what = "cudaIpcGetMemHandle")) ce = cudaIpcGetMemHandle(h, p->own);
    if (ce != cudaSuccess) {
        snprintf(why, cap, "%s: %s", what, cudaGetErrorString(ce));
        cudaGetLastError();
        memset(h, 0, sizeof *h);
    }
}

/* Maps every peer's region from the gathered handles. */
static void map_peers(vesta_tp_p2p *p, const cudaIpcMemHandle_t *hs, int rank, int size, char *why, size_t cap)
{
    static const cudaIpcMemHandle_t none;
    for (int r = 0; r < size && !*why; r++) {
        if (r == rank) {
            p->ctx.region[r] = p->own;
            continue;
        }
        if (!memcmp(&hs[r], &none, sizeof none)) {
            snprintf(why, cap, "rank %d has no region", r);
            break;
        }
        cudaError_t ce = cudaIpcOpenMemHandle(&p->ctx.region[r], hs[r], cudaIpcMemLazyEnablePeerAccess);
        if (ce != cudaSuccess) {
            snprintf(why, cap, "mapping rank %d's region: %s", r, cudaGetErrorString(ce));
            cudaGetLastError();
            break;
        }
        p->mapped[r] = true;
    }
}

/* Waits for the stream's collectives, bounded by the communicator. */
static vesta_status wait_stream(vesta_tp_comm *comm, cudaStream_t s, vesta_error *err)
{
    cudaEvent_t ev;
    if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp p2p: cudaEventCreate failed");
    vesta_status st = VESTA_OK;
    if (cudaEventRecord(ev, s) != cudaSuccess)
        st = vesta_error_set(err, VESTA_ERR_BACKEND, "tp p2p: cudaEventRecord failed");
    if (st == VESTA_OK) st = vesta_tp_comm_nccl_wait(comm, ev, err);
    cudaEventDestroy(ev);
    return st;
}

/* The collectives: every rank's handle to every rank, then how many ranks mapped every peer. */
static vesta_status exchange(vesta_tp_comm *comm, cudaStream_t s, const cudaIpcMemHandle_t *mine,
                             cudaIpcMemHandle_t *all, float *dev, vesta_error *err)
{
    const int size = comm->size;
    float *in = dev + (size_t)size * HANDLE_FLOATS;
    if (cudaMemcpyAsync(in, mine, sizeof *mine, cudaMemcpyHostToDevice, s) != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp p2p: copying the IPC handle failed");
    if (vesta_tp_comm_all_gather(comm, in, HANDLE_FLOATS, dev, err) != VESTA_OK) return VESTA_ERR_BACKEND;
    if (cudaMemcpyAsync(all, dev, sizeof *all * (size_t)size, cudaMemcpyDeviceToHost, s) != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp p2p: copying the IPC handles failed");
    return wait_stream(comm, s, err);
}

/* sums[k] = the sum over ranks of v[k] (small integers: exact in floats). */
static vesta_status agree(vesta_tp_comm *comm, cudaStream_t s, const float v[2], float *dev, float sums[2],
                          vesta_error *err)
{
    if (cudaMemcpyAsync(dev, v, 2 * sizeof *v, cudaMemcpyHostToDevice, s) != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp p2p: copying the agreement failed");
    if (vesta_tp_comm_all_reduce_sum(comm, dev, 2, err) != VESTA_OK) return VESTA_ERR_BACKEND;
    if (cudaMemcpyAsync(sums, dev, 2 * sizeof *sums, cudaMemcpyDeviceToHost, s) != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp p2p: copying the agreement failed");
    return wait_stream(comm, s, err);
}

/* Whether every rank may use the path, decided alike on every rank. Round 1: how many ranks mapped
 * every peer, and the sum of their sizes (each rank must cut between this path and NCCL at the
 * same size). A rank whose size is not the mean knows the sizes differ; one whose size happens to
 * be the mean may not, so round 2 counts the ranks that found nothing wrong. */
static vesta_status decide(vesta_tp_comm *comm, cudaStream_t s, size_t max_bytes, char *why, size_t cap, float *dev,
                           bool *all_ok, vesta_error *err)
{
    const int size = comm->size;
    float v[2] = {*why ? 0.0f : 1.0f, (float)(max_bytes / 16)}, sums[2] = {0, 0};
    if (agree(comm, s, v, dev, sums, err) != VESTA_OK) return VESTA_ERR_BACKEND;
    if (!*why && (double)sums[1] != (double)(max_bytes / 16) * size)
        snprintf(why, cap, "the ranks were given different sizes (this one %zu bytes)", max_bytes);
    v[0] = !*why && (int)sums[0] == size ? 1.0f : 0.0f;
    v[1] = 0.0f;
    if (agree(comm, s, v, dev, sums, err) != VESTA_OK) return VESTA_ERR_BACKEND;
    *all_ok = (int)sums[0] == size;
    return VESTA_OK;
}

vesta_tp_p2p *vesta_tp_p2p_create(vesta_tp_comm *comm, void *stream, size_t max_bytes, vesta_error *err)
{
    if (!comm || !stream || comm->size < 1) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp p2p: needs an NCCL communicator and a stream");
        return NULL;
    }
    cudaStream_t s = (cudaStream_t)stream;
    const int rank = comm->rank, size = comm->size;
    char why[192] = "";
    vesta_tp_p2p *p = calloc(1, sizeof *p);
    cudaIpcMemHandle_t mine;
    memset(&mine, 0, sizeof mine);
    cudaIpcMemHandle_t *all = calloc((size_t)size, sizeof *all);
    float *dev = NULL;
    /* the buffer the collectives need; every rank must still take part in them, so a failure
     * here only poisons the replica through a peer's timeout -- as any rank failing to start */
    if (!p || !all || cudaMalloc((void **)&dev, sizeof mine * (size_t)(size + 1)) != cudaSuccess) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "tp p2p: out of memory");
        goto fail;
    }
    p->comm = comm;
    if (size > VK_AR_MAX_RANKS)
        snprintf(why, sizeof why, "%d ranks (at most %d)", size, VK_AR_MAX_RANKS);
    else if (max_bytes == 0 || max_bytes % 16 || max_bytes > ((size_t)1 << 24))
        snprintf(why, sizeof why, "a buffer of %zu bytes (a positive multiple of 16, at most 16 MB)", max_bytes);
    else
        alloc_local(p, s, max_bytes, &mine, why, sizeof why);
    if (exchange(comm, s, &mine, all, dev, err) != VESTA_OK) goto fail;
    if (!*why) map_peers(p, all, rank, size, why, sizeof why);
    bool all_ok = false;
    if (decide(comm, s, max_bytes, why, sizeof why, dev, &all_ok, err) != VESTA_OK) goto fail;
    if (!all_ok) {
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "tp p2p (rank %d): peer-to-peer all-reduce unavailable: %s", rank,
                        *why ? why : "another rank cannot use it (that rank's message says why)");
        goto fail;
    }
    p->ctx.rank = rank;
    p->ctx.size = size;
    p->ctx.data_bytes = max_bytes;
    p->ctx.timeout_ns = (unsigned long long)comm->timeout_ms * 1000000ull;
    vesta_tp_comm_nccl_watch(comm, p->err_host, "the peer-to-peer all-reduce");
    cudaFree(dev);
    free(all);
    return p;
fail:
    cudaFree(dev);
    free(all);
    vesta_tp_p2p_release(p);
    return NULL;
}
