/* Starting a CPU replica from rank 0: the other ranks are `vesta-tp-rank` processes (posix_spawn:
 * safe from a threaded process), given the model path, the options and the shared-memory name on
 * their command line. They are watched from the start and reaped when the replica ends. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend_cpu.h"
#include "shard.h"
#include "tp.h"

extern char **environ;

#define RANK_EXE "vesta-tp-rank"

/* VESTA_TP_RANK_EXE, else vesta-tp-rank next to this executable (all of Vesta's programs are built
 * into one bin/ folder). */
vesta_status vesta_tp_rank_exe(char *out, size_t cap, vesta_error *err)
{
    const char *env = getenv("VESTA_TP_RANK_EXE");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return vesta_error_set(err, VESTA_ERR_IO, "tp: cannot find this executable: %s", strerror(errno));
        self[n] = 0;
        char *slash = strrchr(self, '/');
        *slash = 0;
        snprintf(out, cap, "%s/" RANK_EXE, self);
    }
    if (access(out, X_OK) != 0)
        return vesta_error_set(err, VESTA_ERR_NOT_FOUND, "tp: rank program %s: %s (set VESTA_TP_RANK_EXE)", out,
                               strerror(errno));
    return VESTA_OK;
}

void vesta_tp_reap(const int *pids, int n, int grace_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int left = 0;
    for (int i = 0; i < n; i++)
        left += pids[i] > 0;
    int done[VESTA_TP_MAX_RANKS] = {0};
    while (left > 0) {
        for (int i = 0; i < n; i++)
            if (pids[i] > 0 && !done[i] && waitpid(pids[i], NULL, WNOHANG) != 0) {
                done[i] = 1;
                left--;
            }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (left > 0 && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > grace_ms) {
            for (int i = 0; i < n; i++)
                if (pids[i] > 0 && !done[i]) {
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], NULL, 0);
                }
            break;
        }
        if (left > 0)
            usleep(2000);
    }
}

vesta_status vesta_tp_spawn_rank(const char *exe, const char *model, const vesta_backend_options *o, int rank,
                                 const char *shm, const char *nccl_id, int timeout_ms, int *pid, vesta_error *err)
{
    char a[15][32];
    snprintf(a[0], 32, "%d", rank);
    snprintf(a[1], 32, "%d", o->tp_size);
    snprintf(a[2], 32, "%d", o->max_num_batched_tokens);
    snprintf(a[3], 32, "%d", o->max_num_seqs);
    snprintf(a[4], 32, "%d", o->max_model_len);
    snprintf(a[5], 32, "%d", o->block_size);
    snprintf(a[6], 32, "%zu", o->cpu_kv_cache_bytes);
    snprintf(a[7], 32, "%d", o->num_threads);
    snprintf(a[8], 32, "%d", o->load_dummy ? 1 : 0);
    snprintf(a[9], 32, "%llu", (unsigned long long)o->dummy_seed);
    snprintf(a[10], 32, "%d", timeout_ms);
    snprintf(a[11], 32, "%.17g", o->gpu_memory_utilization);
    snprintf(a[12], 32, "%d", o->enforce_eager ? 1 : 0);
    snprintf(a[13], 32, "%d", o->device);
    snprintf(a[14], 32, "%d", o->disable_custom_all_reduce ? 1 : 0);
    /* a GPU rank (an NCCL id given) runs the cuda backend: without --backend the rank would load a
     * CPU shard and never join NCCL (the leader's join then times out) */
    char *argv[] = {(char *)RANK_EXE, "--model", (char *)model, "--shm", (char *)shm, "--rank", a[0], "--size", a[1],
                    "--max-num-batched-tokens", a[2], "--max-num-seqs", a[3], "--max-model-len", a[4],
                    "--block-size", a[5], "--kv-bytes", a[6], "--threads", a[7], "--load-dummy", a[8],
                    "--dummy-seed", a[9], "--timeout-ms", a[10], "--gpu-memory-utilization", a[11],
                    "--enforce-eager", a[12], "--device", a[13], "--disable-custom-all-reduce", a[14], "--backend", nccl_id ? "cuda" : "cpu",
                    nccl_id ? "--nccl-id" : NULL, (char *)nccl_id, NULL};
    pid_t p;
    int rc = posix_spawn(&p, exe, NULL, NULL, argv, environ);
    if (rc != 0)
        return vesta_error_set(err, VESTA_ERR_IO, "tp: starting rank %d (%s): %s", rank, exe, strerror(rc));
    *pid = p;
    return VESTA_OK;
}

vesta_backend *vesta_tp_cpu_replica_start(const vesta_model_file *mf, const vesta_backend_options *given,
                                          int timeout_ms, vesta_error *err)
{
    if (!mf || !given || given->tp_size < 2 || given->tp_rank != 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp: a replica is started by rank 0 with tp_size >= 2");
        return NULL;
    }
    if (vesta_tp_check_batch_invariant(given, err) != VESTA_OK ||
        vesta_backend_cpu_check_tp(vesta_model_file_config(mf), given->tp_size, err) != VESTA_OK)
        return NULL;
    /* "All cores" means all cores for the replica: N ranks each with every core would fight. */
    vesta_backend_options o = *given, *opts = &o;
    if (o.num_threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o.num_threads = cores > o.tp_size ? (int)(cores / o.tp_size) : 1;
    }
    char exe[PATH_MAX + 32], shm[96];
    if (vesta_tp_rank_exe(exe, sizeof exe, err) != VESTA_OK)
        return NULL;
    vesta_tp_comm_shm_name(shm, sizeof shm);
    /* NVLink multicast stays off in every process Vesta starts (the lent GPU machines need it). */
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    int pids[VESTA_TP_MAX_RANKS] = {0};
    vesta_status st = VESTA_OK;
    for (int r = 1; st == VESTA_OK && r < opts->tp_size; r++) {
        int p;
        st = vesta_tp_spawn_rank(exe, vesta_model_file_path(mf), opts, r, shm, NULL, timeout_ms, &p, err);
        pids[r] = st == VESTA_OK ? p : 0;
    }
    vesta_tp_comm *comm = NULL;
    vesta_backend *local = NULL, *be = NULL;
    if (st == VESTA_OK)
        comm = vesta_tp_comm_shm_create_watching(shm, 0, opts->tp_size, VESTA_TP_SLOT_BYTES, timeout_ms, pids, err);
    if (comm && vesta_tp_check_same_model(comm, mf, err) != VESTA_OK) {
        vesta_tp_comm_release(comm);
        comm = NULL;
    }
    if (comm && !(local = vesta_backend_cpu_create_tp(mf, opts, comm, err)))
        vesta_tp_comm_release(comm);
    if (local)
        be = vesta_tp_backend_create(local, vesta_model_file_config(mf), comm, err);
    if (!be) {
        for (int r = 1; r < opts->tp_size; r++)
            if (pids[r] > 0)
                kill(pids[r], SIGTERM);
        vesta_tp_reap(pids, opts->tp_size, 2000);
        vesta_error_prefix(err, "starting a tensor-parallel replica of %d ranks", opts->tp_size);
        return NULL;
    }
    vesta_tp_backend_own_ranks(be, pids, opts->tp_size);
    return be;
}
