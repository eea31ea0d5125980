/* vesta-tp-rank: one follower rank (1..N-1) of a tensor-parallel replica (CPU, or with
 * `--backend cuda --nccl-id HEX` GPU), started by rank 0 (vesta_tp_cpu_replica_start,
 * vesta_tp_cuda_replica_start) -- not meant to be run by hand. Exits 0 when rank 0 shuts the
 * replica down, 1 on a bad command line, 3 when the replica fails (a rank died, a load failed). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp.h"

static int number(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        {"model", required_argument, 0, 'm'}, {"shm", required_argument, 0, 's'},
        {"rank", required_argument, 0, 'r'}, {"size", required_argument, 0, 'n'},
        {"max-num-batched-tokens", required_argument, 0, 'T'}, {"max-num-seqs", required_argument, 0, 'S'},
        {"max-model-len", required_argument, 0, 'L'}, {"block-size", required_argument, 0, 'B'},
        {"kv-bytes", required_argument, 0, 'K'}, {"threads", required_argument, 0, 't'},
        {"load-dummy", required_argument, 0, 'd'}, {"dummy-seed", required_argument, 0, 'D'},
        {"timeout-ms", required_argument, 0, 'o'}, {"backend", required_argument, 0, 'b'},
        {"nccl-id", required_argument, 0, 'i'}, {"gpu-memory-utilization", required_argument, 0, 'g'},
        {"enforce-eager", required_argument, 0, 'e'}, {"device", required_argument, 0, 'v'},
        {"disable-custom-all-reduce", required_argument, 0, 'A'}, {0, 0, 0, 0}};
    const char *model = NULL, *shm = NULL, *backend = "cpu", *nccl_id = NULL;
    vesta_backend_options o;
    vesta_backend_options_init(&o);
    long long v, timeout = 60000;
    int c, bad = 0;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == 'm' || c == 's' || c == 'b' || c == 'i') {
            *(c == 'm' ? &model : c == 's' ? &shm : c == 'b' ? &backend : &nccl_id) = optarg;
            continue;
        }
        if (c == 'g') {
            char *end;
            o.gpu_memory_utilization = strtod(optarg, &end);
            if (*end || !(o.gpu_memory_utilization > 0.0 && o.gpu_memory_utilization <= 1.0)) {
                bad = 1;
                break;
            }
            continue;
        }
        if (c == '?' || number(optarg, 0, c == 'D' || c == 'K' ? (long long)(~0ull >> 1) : 0x7fffffff, &v)) {
            bad = 1;
            break;
        }
        switch (c) {
        case 'r': o.tp_rank = (int)v; break;
        case 'n': o.tp_size = (int)v; break;
        case 'T': o.max_num_batched_tokens = (int)v; break;
        case 'S': o.max_num_seqs = (int)v; break;
        case 'L': o.max_model_len = (int)v; break;
        case 'B': o.block_size = (int)v; break;
        case 'K': o.cpu_kv_cache_bytes = (size_t)v; break;
        case 't': o.num_threads = (int)v; break;
        case 'd': o.load_dummy = v != 0; break;
        case 'D': o.dummy_seed = (uint64_t)v; break;
        case 'o': timeout = v; break;
        case 'e': o.enforce_eager = v != 0; break;
        case 'A': o.disable_custom_all_reduce = v != 0; break;
        case 'v': o.device = (int)v; break; /* the replica's first GPU (rank 0's) */
        }
    }
    bool cuda = strcmp(backend, "cuda") == 0;
    if (bad || optind != argc || !model || !shm || o.tp_rank < 1 || o.tp_rank >= o.tp_size ||
        (!cuda && strcmp(backend, "cpu") != 0) || (cuda != (nccl_id != NULL))) {
        fprintf(stderr, "vesta-tp-rank: started by a tensor-parallel leader; bad command line\n");
        return 1;
    }
    vesta_error e = {0};
    vesta_model_file *mf = vesta_model_file_open(model, &e);
    vesta_status st = e.code;
    if (mf && cuda) {
#ifdef VESTA_HAVE_TP_CUDA
        st = vesta_tp_cuda_follower_main(mf, &o, shm, nccl_id, (int)timeout, &e);
#else
        st = vesta_error_set(&e, VESTA_ERR_UNSUPPORTED, "this build has no CUDA tensor parallelism");
#endif
    } else if (mf) {
        st = vesta_tp_cpu_follower_main(mf, &o, shm, (int)timeout, &e);
    }
    vesta_model_file_close(mf);
    if (st != VESTA_OK) {
        fprintf(stderr, "vesta-tp-rank %d: %s\n", o.tp_rank, e.msg);
        return 3;
    }
    return 0;
}
