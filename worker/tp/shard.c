/* The tensor-parallel split of a model (shard.h). */
#include "shard.h"

#include "comm.h"

vesta_status vesta_tp_shard_check(const vesta_model_config *c, int n, vesta_error *err)
{
    if (!c)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor parallelism: model config is NULL");
    if (n < 1 || n > VESTA_TP_MAX_RANKS)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor-parallel size %d outside [1, %d]", n,
                               VESTA_TP_MAX_RANKS);
    if (c->num_heads <= 0 || c->num_kv_heads <= 0 || c->num_heads % n)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor-parallel size %d does not divide the model's "
                               "%d attention heads", n, c->num_heads);
    if (c->num_kv_heads >= n ? c->num_kv_heads % n : n % c->num_kv_heads)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor-parallel size %d and the model's %d KV heads: "
                               "one must divide the other", n, c->num_kv_heads);
    if (c->num_heads % c->num_kv_heads)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "model's %d attention heads are not a multiple of its "
                               "%d KV heads", c->num_heads, c->num_kv_heads);
    if (c->intermediate_size <= 0 || c->intermediate_size % n)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor-parallel size %d does not divide the model's "
                               "intermediate size %d", n, c->intermediate_size);
    return VESTA_OK;
}

vesta_status vesta_tp_shard_plan(const vesta_model_config *full, int rank, int n, vesta_tp_shard *sh,
                                 vesta_model_config *local, vesta_error *err)
{
    vesta_status st = vesta_tp_shard_check(full, n, err);
    if (st != VESTA_OK)
        return st;
    if (rank < 0 || rank >= n)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tensor parallelism: rank %d of %d", rank, n);
    *local = *full;
    const int nh = full->num_heads / n, group = full->num_heads / full->num_kv_heads;
    local->num_heads = nh;
    local->num_kv_heads = full->num_kv_heads >= n ? full->num_kv_heads / n : 1; /* replicated below n */
    local->intermediate_size = full->intermediate_size / n;
    sh->rank = rank;
    sh->size = n;
    sh->head0 = rank * nh;
    /* The KV head of this rank's first query head: with KV heads >= n each rank's query heads are
     * whole GQA groups; below n a rank's heads all share one KV head (nh divides group). */
    sh->kv_head0 = sh->head0 / group;
    sh->inter0 = rank * local->intermediate_size;
    sh->vocab_rows = (int)(((long long)full->vocab_size + n - 1) / n);
    sh->vocab0 = rank * sh->vocab_rows;
    int valid = full->vocab_size - sh->vocab0;
    sh->vocab_valid = valid < 0 ? 0 : (valid > sh->vocab_rows ? sh->vocab_rows : valid);
    return VESTA_OK;
}

vesta_status vesta_tp_check_batch_invariant(const vesta_backend_options *opts, vesta_error *err)
{
    if (opts && opts->batch_invariant && opts->tp_size > 1)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "--batch-invariant cannot be used with --tensor-parallel-size %d: the "
                               "all-reduce's summation order depends on the batch; use --tensor-parallel-size 1",
                               opts->tp_size);
    return VESTA_OK;
}
