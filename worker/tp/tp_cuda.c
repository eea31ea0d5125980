/* The GPU tensor-parallel replica: rank 0 (in the engine's process) makes the NCCL id, spawns
 * ranks 1..N-1 as `vesta-tp-rank --backend cuda`, joins them on the shared-memory step channel,
 * then every rank loads its shard on its own GPU and joins the NCCL communicator. Rank r uses CUDA
 * device opts->device + r (device 0 + r unless told otherwise: `vesta serve` gives worker i the
 * GPUs from i * N). */
#include <cuda_runtime_api.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend_cuda.h"
#include "shard.h"
#include "tp.h"

/* NVLink multicast stays off in every process of a replica (the lent GPU machines need it); set
 * before NCCL reads its environment. */
static void nvls_off(void) { setenv("NCCL_NVLS_ENABLE", "0", 1); }

static vesta_status check(const vesta_model_file *mf, const vesta_backend_options *opts, vesta_error *err)
{
    if (!mf || !opts)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: model file or options is NULL");
    if (opts->tp_size < 1 || opts->tp_rank < 0 || opts->tp_rank >= opts->tp_size)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: rank %d of %d", opts->tp_rank, opts->tp_size);
    vesta_status st = vesta_tp_check_batch_invariant(opts, err);
    if (st == VESTA_OK)
        st = vesta_tp_shard_check(vesta_model_file_config(mf), opts->tp_size, err);
    if (st != VESTA_OK)
        return st;
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "tensor-parallel size %d: no CUDA device (%s)",
                               opts->tp_size, cudaGetErrorString(ce));
    if (opts->device < 0 || ndev < opts->device + opts->tp_size)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor-parallel size %d needs %d GPUs (one per rank, "
                               "devices %d..%d); %d visible", opts->tp_size, opts->tp_size, opts->device,
                               opts->device + opts->tp_size - 1, ndev);
    return VESTA_OK;
}

vesta_backend *vesta_tp_cuda_replica_start(const vesta_model_file *mf, const vesta_backend_options *given,
                                           int timeout_ms, vesta_error *err)
{
    if (given && given->tp_rank != 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: a replica is started by rank 0, not %d", given->tp_rank);
        return NULL;
    }
    nvls_off();
    if (check(mf, given, err) != VESTA_OK)
        return NULL;
    vesta_backend_options o = *given; /* o.device: rank 0's GPU, the replica's first */
    char exe[PATH_MAX + 32], shm[96], id[VESTA_TP_NCCL_ID_HEX];
    if (o.tp_size > 1 && vesta_tp_rank_exe(exe, sizeof exe, err) != VESTA_OK)
        return NULL;
    if (vesta_tp_comm_nccl_id(id, err) != VESTA_OK)
        return NULL;
    vesta_tp_comm_shm_name(shm, sizeof shm);
    int pids[VESTA_TP_MAX_RANKS] = {0};
    vesta_status st = VESTA_OK;
    for (int r = 1; st == VESTA_OK && r < o.tp_size; r++)
        st = vesta_tp_spawn_rank(exe, vesta_model_file_path(mf), &o, r, shm, id, timeout_ms, &pids[r], err);
    vesta_tp_comm *comm = NULL;
    vesta_backend *local = NULL, *be = NULL;
    if (st == VESTA_OK)
        comm = vesta_tp_comm_shm_create_watching(shm, 0, o.tp_size, VESTA_TP_SLOT_BYTES, timeout_ms, pids, err);
    if (comm && vesta_tp_check_same_model(comm, mf, err) != VESTA_OK) {
        vesta_tp_comm_release(comm);
        comm = NULL;
    }
    if (comm && !(local = vesta_backend_cuda_create_tp(mf, &o, id, timeout_ms, err)))
        vesta_tp_comm_release(comm); /* the ranks see the leader leave */
    if (local)
        be = vesta_tp_backend_create(local, vesta_model_file_config(mf), comm, err);
    if (!be) {
        for (int r = 1; r < o.tp_size; r++)
            if (pids[r] > 0)
                kill(pids[r], SIGTERM);
        vesta_tp_reap(pids, o.tp_size, 5000);
        vesta_error_prefix(err, "starting a GPU tensor-parallel replica of %d ranks", o.tp_size);
        return NULL;
    }
    vesta_tp_backend_own_ranks(be, pids, o.tp_size);
    fprintf(stderr, "tp: GPU replica of %d rank%s (NCCL, GPUs %d..%d), rank 0 is this process\n", o.tp_size,
            o.tp_size == 1 ? "" : "s", o.device, o.device + o.tp_size - 1);
    return be;
}

vesta_status vesta_tp_cuda_follower_main(const vesta_model_file *mf, const vesta_backend_options *given,
                                         const char *shm_name, const char *nccl_id, int timeout_ms,
                                         vesta_error *err)
{
    nvls_off();
    vesta_status st = check(mf, given, err);
    if (st != VESTA_OK)
        return st;
    if (given->tp_rank == 0 || !nccl_id)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: a GPU follower is a rank >= 1 with the NCCL id");
    vesta_backend_options o = *given;
    o.device = given->device + o.tp_rank; /* given->device: rank 0's GPU */
    vesta_tp_comm *comm =
        vesta_tp_comm_shm_create(shm_name, o.tp_rank, o.tp_size, VESTA_TP_SLOT_BYTES, timeout_ms, err);
    if (!comm)
        return err ? err->code : VESTA_ERR_IO;
    if ((st = vesta_tp_check_same_model(comm, mf, err)) != VESTA_OK) {
        vesta_error_prefix(err, "tp rank %d (GPU %d)", o.tp_rank, o.device);
        vesta_tp_comm_release(comm);
        return st;
    }
    vesta_backend *local = vesta_backend_cuda_create_tp(mf, &o, nccl_id, timeout_ms, err);
    if (!local) {
        st = err ? err->code : VESTA_ERR_BACKEND;
        vesta_error_prefix(err, "tp rank %d (GPU %d)", o.tp_rank, o.device);
    } else {
        st = vesta_tp_follower_run(local, comm, err);
    }
    vesta_backend_destroy(local);
    vesta_tp_comm_release(comm);
    return st;
}
