/* The peer-to-peer all-reduce of a GPU tensor-parallel replica: every rank's buffer region mapped
 * into every other rank's process (CUDA IPC), for the one-shot all-reduce kernels of
 * kernels/allreduce.cu (vk_allreduce, vk_allreduce_add_rmsnorm). Small all-reduces (a decode
 * step's few rows) go there; larger ones stay on NCCL. docs/tensor-parallel.md has the figures.
 *
 * Thread ownership: like the communicator, used from the thread that owns the backend's stream. */
#ifndef VESTA_TP_P2P_H
#define VESTA_TP_P2P_H

#include <stddef.h>

#include "comm.h"
#include "vesta/error.h"
#include "vesta_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vesta_tp_p2p vesta_tp_p2p;

/* Collective: every rank of the NCCL communicator `comm` calls it at the same point, with the same
 * max_bytes (the largest all-reduce it will take, per rank). It allocates this rank's region on the
 * current device, exchanges IPC handles over `comm` (on `stream`, a cudaStream_t) and maps the
 * peers' regions. The ranks then agree: if any rank could not map every peer (no peer access
 * between the GPUs, more than VK_AR_MAX_RANKS ranks, ...) every rank gets NULL with err naming the
 * reason, and NCCL keeps every all-reduce. A wait inside a kernel is bounded by the communicator's
 * timeout; a timeout fails vesta_tp_comm_nccl_wait (the replica is failed). A failure of `comm`
 * itself also gives NULL (and the communicator is then poisoned). */
vesta_tp_p2p *vesta_tp_p2p_create(vesta_tp_comm *comm, void *stream, size_t max_bytes, vesta_error *err);
/* The kernels' context when an all-reduce of `bytes` per rank fits, else NULL (use NCCL). */
const vk_allreduce_ctx *vesta_tp_p2p_ctx(const vesta_tp_p2p *p, size_t bytes);
/* Unmaps the peers and frees the region; call it before releasing the communicator, with the
 * stream idle. NULL is a no-op. */
void vesta_tp_p2p_release(vesta_tp_p2p *p);

#ifdef __cplusplus
}
#endif
#endif
