/* Collective communication between the ranks of one tensor-parallel replica.
 *
 * Two implementations share this interface: a CPU one over POSIX shared memory between the rank
 * processes (comm_shm.c; host buffers), used by the CPU backend and for the per-step batch
 * broadcast, and an NCCL one (comm_nccl.c; device buffers, on a CUDA stream) for the GPU backend.
 *
 * Every collective must be called by all ranks in the same order with the same sizes. Failure:
 * a rank that dies or stops calling makes the others fail within the timeout with an error naming
 * the rank; after any failure the communicator is poisoned (every later call fails at once), never
 * a hang. */
#ifndef VESTA_TP_COMM_H
#define VESTA_TP_COMM_H

#include <stddef.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VESTA_TP_MAX_RANKS 64

typedef struct vesta_tp_comm vesta_tp_comm;

/* Element types of vesta_tp_comm_all_reduce_sum_dtype. */
typedef enum vesta_tp_dtype {
    VESTA_TP_F32 = 0,
    VESTA_TP_BF16 = 1,
} vesta_tp_dtype;

typedef struct vesta_tp_comm_ops {
    const char *name;
    vesta_status (*all_reduce_sum)(vesta_tp_comm *c, float *buf, size_t n, vesta_error *err);
    vesta_status (*all_gather)(vesta_tp_comm *c, const float *in, size_t n, float *out, vesta_error *err);
    vesta_status (*broadcast)(vesta_tp_comm *c, void *buf, size_t bytes, int root, int timeout_ms,
                              vesta_error *err);
    void (*release)(vesta_tp_comm *c);
    /* NULL: only VESTA_TP_F32, through all_reduce_sum */
    vesta_status (*all_reduce_sum_dtype)(vesta_tp_comm *c, void *buf, size_t n, vesta_tp_dtype dt,
                                         vesta_error *err);
} vesta_tp_comm_ops;

/* Every communicator struct starts with this header. */
struct vesta_tp_comm {
    const vesta_tp_comm_ops *ops;
    int rank, size;
    int timeout_ms; /* bound on every wait inside a collective */
};

/* buf[0..n) = the element-wise sum over ranks of every rank's buf. The sum is taken in rank
 * order, so every rank ends with bit-identical values. */
vesta_status vesta_tp_comm_all_reduce_sum(vesta_tp_comm *c, float *buf, size_t n, vesta_error *err);
/* The same for n elements of type dt (VESTA_TP_BF16: the NCCL communicator only; the shared-memory
 * one fails with VESTA_ERR_UNSUPPORTED for any type but VESTA_TP_F32). */
vesta_status vesta_tp_comm_all_reduce_sum_dtype(vesta_tp_comm *c, void *buf, size_t n, vesta_tp_dtype dt,
                                                vesta_error *err);
/* out[r * n + i] = rank r's in[i]; out holds size * n floats. */
vesta_status vesta_tp_comm_all_gather(vesta_tp_comm *c, const float *in, size_t n, float *out,
                                      vesta_error *err);
/* Copies root's buf[0..bytes) into every rank's buf. timeout_ms < 0: wait without a deadline
 * (followers waiting for the next step) -- a dead peer is still detected. */
vesta_status vesta_tp_comm_broadcast(vesta_tp_comm *c, void *buf, size_t bytes, int root, int timeout_ms,
                                     vesta_error *err);
void vesta_tp_comm_release(vesta_tp_comm *c); /* NULL is a no-op */

/* The shared-memory communicator. Rank 0 creates the segment `name` ("/vesta-tp-..."), the others
 * open it (waiting up to timeout_ms for it to appear); all ranks then meet, after which rank 0
 * unlinks the name so that nothing is left in /dev/shm. slot_bytes: the per-rank staging area;
 * larger collectives are done in pieces. A dead peer (its pid gone or a zombie) or a peer silent
 * for timeout_ms inside a collective fails the call. */
vesta_tp_comm *vesta_tp_comm_shm_create(const char *name, int rank, int size, size_t slot_bytes, int timeout_ms,
                                        vesta_error *err);
/* The same, for a rank 0 that started the other ranks itself: peer_pids[r] (r != 0; <= 0 = unknown)
 * are watched from the start, so a rank that dies before joining fails the join at once. */
vesta_tp_comm *vesta_tp_comm_shm_create_watching(const char *name, int rank, int size, size_t slot_bytes,
                                                 int timeout_ms, const int *peer_pids, vesta_error *err);
/* A fresh segment name for one replica, unique on this host: "/vesta-tp-<pid>-<nonce>". */
void vesta_tp_comm_shm_name(char *out, size_t cap);

#ifdef VESTA_HAVE_NCCL
/* The NCCL communicator (buffers are device pointers; collectives are enqueued on `stream`, a
 * cudaStream_t, so that CUDA graphs can capture them; they return once enqueued). The leader makes
 * the bootstrap id with vesta_tp_comm_nccl_id (hex text, 2 * 128 chars + NUL) and passes it to the
 * other ranks. broadcast moves device bytes as well. */
#define VESTA_TP_NCCL_ID_HEX 257
vesta_status vesta_tp_comm_nccl_id(char hex[VESTA_TP_NCCL_ID_HEX], vesta_error *err);
vesta_tp_comm *vesta_tp_comm_nccl_create(const char *id_hex, int rank, int size, int device, void *stream,
                                         vesta_error *err);
/* The same with a bound: joining (the communicator is non-blocking, so a rank that never comes
 * makes the others fail after timeout_ms instead of waiting forever) and every later
 * vesta_tp_comm_nccl_wait. */
vesta_tp_comm *vesta_tp_comm_nccl_create_timeout(const char *id_hex, int rank, int size, int device, void *stream,
                                                 int timeout_ms, vesta_error *err);
/* Waits for the CUDA event `event` (a cudaEvent_t recorded on the communicator's stream after its
 * collectives) while watching NCCL's asynchronous errors: a peer that died or hung makes this fail
 * (VESTA_ERR_BACKEND, naming the reason) after at most the communicator's timeout, aborting the
 * communicator (ncclCommAbort) so that the stream's collective kernels stop; the communicator is
 * poisoned then. A communicator of another kind: VESTA_ERR_INVALID_ARG. */
vesta_status vesta_tp_comm_nccl_wait(vesta_tp_comm *c, void *event, vesta_error *err);
/* Makes vesta_tp_comm_nccl_wait also fail (and abort the communicator) once *word is nonzero: a
 * host word that the replica's own collective kernels set when a peer does not arrive (the
 * peer-to-peer all-reduce, p2p.h), named `what` in the error. Both ways: an abort for any reason
 * sets *word, which tells those kernels to stop waiting for peers. NULL word: no watch. The word
 * must outlive the watch. */
void vesta_tp_comm_nccl_watch(vesta_tp_comm *c, volatile int *word, const char *what);
#endif

#ifdef __cplusplus
}
#endif
#endif
