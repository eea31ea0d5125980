/* A tensor-parallel replica: rank 0 (the leader) owns the engine and drives the others through a
 * "tp" backend that broadcasts each step's batch (and KV-cache operations) before running its own
 * shard; every other rank (a follower) runs vesta_tp_follower_run, receiving and executing the
 * same operations on its shard. See docs/tensor-parallel.md. */
#ifndef VESTA_TP_H
#define VESTA_TP_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "vesta/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The operations the leader broadcasts. */
typedef enum vesta_tp_op {
    VESTA_TP_OP_KV_ALLOC = 1,
    VESTA_TP_OP_EXECUTE = 2,
    VESTA_TP_OP_COPY_BLOCKS = 3,
    VESTA_TP_OP_SHUTDOWN = 4,
} vesta_tp_op;

/* The step message: the batch's index arrays only (no requests, no sampling parameters: only rank
 * 0 samples). Encodes b into *buf (grown as needed, *cap its size); *len receives the bytes. */
vesta_status vesta_tp_batch_encode(const vesta_batch *b, int32_t **buf, size_t *cap, size_t *len,
                                   vesta_error *err);
/* Decodes a message into b, whose arrays point into msg (which must outlive b). Every count is
 * checked against len; sample_rows is NULL. */
vesta_status vesta_tp_batch_decode(const int32_t *msg, size_t len, vesta_batch *b, vesta_error *err);

/* The leader's backend: wraps rank 0's shard `local` (taking ownership) and comm (taking
 * ownership). Reports the full model's configuration `full` to the engine. Destroying it tells
 * the followers to shut down. After any communication failure the replica is dead: every later
 * call fails with VESTA_ERR_BACKEND. Returns NULL (and destroys local, releases comm) on failure. */
vesta_backend *vesta_tp_backend_create(vesta_backend *local, const vesta_model_config *full, vesta_tp_comm *comm,
                                       vesta_error *err);

/* A follower's loop: executes the leader's operations on local until SHUTDOWN (VESTA_OK) or a
 * communication failure (the leader or a peer died: VESTA_ERR_BACKEND). A batch the shard
 * rejects is rejected by the leader's shard too, so it is skipped, not fatal. */
vesta_status vesta_tp_follower_run(vesta_backend *local, vesta_tp_comm *comm, vesta_error *err);

/* The CPU replica's ranks. The shared-memory segment shm_name (vesta_tp_comm_shm_name) is made
 * by rank 0 and joined by the others; opts->tp_rank / tp_size say which rank this is, and every
 * rank must be given the same model and options. timeout_ms bounds joining and every collective.
 *
 * Rank 0: returns the "tp" backend for the engine (full model configuration), or NULL. */
vesta_backend *vesta_tp_cpu_leader_open(const vesta_model_file *mf, const vesta_backend_options *opts,
                                        const char *shm_name, int timeout_ms, vesta_error *err);
/* Ranks 1..n-1: joins, loads the shard and serves the leader until it shuts the replica down
 * (VESTA_OK) or a rank dies (an error). */
vesta_status vesta_tp_cpu_follower_main(const vesta_model_file *mf, const vesta_backend_options *opts,
                                        const char *shm_name, int timeout_ms, vesta_error *err);

/* Rank 0 of a CPU replica that starts the other ranks itself: spawns ranks 1..tp_size-1 as
 * `vesta-tp-rank` processes (found through VESTA_TP_RANK_EXE, else next to this executable) with
 * NCCL_NVLS_ENABLE=0 in their environment, joins them and returns the "tp" backend.
 * opts->num_threads is per rank; 0 (all cores) gives each rank cores / tp_size threads. The ranks
 * are reaped when the backend is destroyed. On failure (misconfiguration, a rank that cannot
 * start or load, timeout_ms passing) every started rank is killed and NULL returned. */
vesta_backend *vesta_tp_cpu_replica_start(const vesta_model_file *mf, const vesta_backend_options *opts,
                                          int timeout_ms, vesta_error *err);
/* The GPU replica (built with the CUDA backend and NCCL): rank r runs on CUDA device r (refused at
 * start when fewer devices are visible than ranks); the leader makes the NCCL id and passes it to
 * the ranks it spawns (`vesta-tp-rank --backend cuda --nccl-id HEX`); each step's batch goes over
 * the shared-memory channel as for the CPU replica, the activations' collectives over NCCL on each
 * rank's compute stream. NCCL_NVLS_ENABLE=0 is set in every rank. tp_size 1 is allowed: a replica
 * of one rank, which runs every collective (a testing aid: VESTA_TP_FORCE_REPLICA=1). Same failure
 * behaviour as vesta_tp_cpu_replica_start. */
vesta_backend *vesta_tp_cuda_replica_start(const vesta_model_file *mf, const vesta_backend_options *opts,
                                           int timeout_ms, vesta_error *err);
/* Ranks 1..n-1 of a GPU replica (vesta-tp-rank --backend cuda). */
vesta_status vesta_tp_cuda_follower_main(const vesta_model_file *mf, const vesta_backend_options *opts,
                                         const char *shm_name, const char *nccl_id, int timeout_ms,
                                         vesta_error *err);

/* The rank program: VESTA_TP_RANK_EXE, else vesta-tp-rank next to this executable. */
vesta_status vesta_tp_rank_exe(char *out, size_t cap, vesta_error *err);
/* Starts rank `rank` (>= 1) as a vesta-tp-rank process with o's options, the shared-memory name
 * and (GPU replicas) the NCCL id; *pid receives its process id. */
vesta_status vesta_tp_spawn_rank(const char *exe, const char *model, const vesta_backend_options *o, int rank,
                                 const char *shm, const char *nccl_id, int timeout_ms, int *pid, vesta_error *err);

/* Hands the tp backend the rank processes it must reap when destroyed (pids[r], r >= 1). */
void vesta_tp_backend_own_ranks(vesta_backend *be, const int *pids, int n);
/* Waits up to grace_ms for the processes pids[0..n) (<= 0 skipped) to exit, then kills the rest. */
void vesta_tp_reap(const int *pids, int n, int grace_ms);

/* Every rank publishes a hash of its model (configuration, final norm, start of the embedding) and
 * compares all ranks' with rank 0's; all ranks must call it, at the same point. Fails
 * (VESTA_ERR_INVALID_ARG, naming both ranks' model paths and shapes) on any difference, or with the
 * communicator's error. */
vesta_status vesta_tp_check_same_model(vesta_tp_comm *c, const vesta_model_file *mf, vesta_error *err);

/* The bound on joining and on every collective of a replica started by the engine. */
#define VESTA_TP_TIMEOUT_MS 60000

/* Per-rank staging bytes of the replica's shared-memory segment (larger collectives go in pieces). */
#define VESTA_TP_SLOT_BYTES ((size_t)4 << 20)

#ifdef __cplusplus
}
#endif
#endif
