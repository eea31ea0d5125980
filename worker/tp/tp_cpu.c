/* Opening the ranks of a CPU tensor-parallel replica: the communicator first (so that a rank that
 * cannot load its shard is noticed by the others as a dead peer), then the shard. */
#include "backend_cpu.h"
#include "tp.h"

static vesta_status check_opts(const vesta_model_file *mf, const vesta_backend_options *opts, vesta_error *err)
{
    if (!mf || !opts)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: model file or options is NULL");
    if (opts->tp_size < 1 || opts->tp_rank < 0 || opts->tp_rank >= opts->tp_size)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: rank %d of %d", opts->tp_rank, opts->tp_size);
    return vesta_backend_cpu_check_tp(vesta_model_file_config(mf), opts->tp_size, err);
}

vesta_backend *vesta_tp_cpu_leader_open(const vesta_model_file *mf, const vesta_backend_options *opts,
                                        const char *shm_name, int timeout_ms, vesta_error *err)
{
    if (check_opts(mf, opts, err) != VESTA_OK)
        return NULL;
    if (opts->tp_rank != 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: the leader is rank 0, not %d", opts->tp_rank);
        return NULL;
    }
    vesta_tp_comm *comm = vesta_tp_comm_shm_create(shm_name, 0, opts->tp_size, VESTA_TP_SLOT_BYTES, timeout_ms, err);
    if (!comm)
        return NULL;
    if (vesta_tp_check_same_model(comm, mf, err) != VESTA_OK) {
        vesta_tp_comm_release(comm);
        return NULL;
    }
    vesta_backend *local = vesta_backend_cpu_create_tp(mf, opts, comm, err);
    if (!local) {
        vesta_tp_comm_release(comm); /* followers see the leader leave */
        return NULL;
    }
    return vesta_tp_backend_create(local, vesta_model_file_config(mf), comm, err);
}

vesta_status vesta_tp_cpu_follower_main(const vesta_model_file *mf, const vesta_backend_options *opts,
                                        const char *shm_name, int timeout_ms, vesta_error *err)
{
    vesta_status st = check_opts(mf, opts, err);
    if (st != VESTA_OK)
        return st;
    if (opts->tp_rank == 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: rank 0 is the leader, not a follower");
    vesta_tp_comm *comm =
        vesta_tp_comm_shm_create(shm_name, opts->tp_rank, opts->tp_size, VESTA_TP_SLOT_BYTES, timeout_ms, err);
    if (!comm)
        return err ? err->code : VESTA_ERR_IO;
    if ((st = vesta_tp_check_same_model(comm, mf, err)) != VESTA_OK) {
        vesta_error_prefix(err, "tp rank %d", opts->tp_rank);
        vesta_tp_comm_release(comm);
        return st;
    }
    vesta_backend *local = vesta_backend_cpu_create_tp(mf, opts, comm, err);
    if (!local) {
        st = err ? err->code : VESTA_ERR_BACKEND;
        vesta_error_prefix(err, "tp rank %d", opts->tp_rank);
    } else {
        st = vesta_tp_follower_run(local, comm, err);
    }
    vesta_backend_destroy(local);
    vesta_tp_comm_release(comm);
    return st;
}
