/* Validation of one step's batch before any memory is touched: every index the forward pass
 * follows (token ids, positions, slots, block tables, sample rows) is checked, so that a wrong
 * batch is an error, never an out-of-bounds access. */
#include "cpu_internal.h"

static vesta_status check_seq(const cpu_backend *be, const vesta_batch *b, int s, vesta_error *err)
{
    const int bs = be->kv.block_size, ctx = b->context_lens[s];
    const int64_t cap = (int64_t)b->max_blocks_per_seq * bs;
    if (ctx <= 0 || ctx > cap || ctx > be->a.max_ctx)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                               "batch: context_lens[%d] = %d outside [1, min(%lld block-table slots, "
                               "max_model_len %d)]",
                               s, ctx, (long long)cap, be->a.max_ctx);
    const int32_t *bt = b->block_tables + (size_t)s * (size_t)b->max_blocks_per_seq;
    for (int i = 0; i < (ctx + bs - 1) / bs; i++)
        if (bt[i] < 0 || bt[i] >= be->kv.num_blocks)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: block_tables[%d][%d] = %d outside [0, %d)",
                                   s, i, bt[i], be->kv.num_blocks);
    const int V = be->base.config.vocab_size;
    for (int t = b->query_start[s]; t < b->query_start[s + 1]; t++) {
        const int pos = b->positions[t];
        if (b->token_ids[t] < 0 || b->token_ids[t] >= V)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: token_ids[%d] = %d outside [0, %d)", t,
                                   b->token_ids[t], V);
        if (pos < 0 || pos >= ctx)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "batch: positions[%d] = %d outside [0, context_lens[%d] = %d)", t, pos, s, ctx);
        /* The slot must be the one the block table gives, or attention would read other keys. */
        const int64_t slot = (int64_t)bt[pos / bs] * bs + pos % bs;
        if (b->slot_mapping[t] != slot)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                                   "batch: slot_mapping[%d] = %d, but sequence %d's block table puts "
                                   "position %d at slot %lld",
                                   t, b->slot_mapping[t], s, pos, (long long)slot);
    }
    if (b->lora_slots && (b->lora_slots[s] < -1 || b->lora_slots[s] >= be->num_loras))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: lora_slots[%d] = %d outside [-1, %d adapters)", s,
                               b->lora_slots[s], be->num_loras);
    return VESTA_OK;
}

vesta_status cpu_batch_validate(const cpu_backend *be, const vesta_batch *b, vesta_error *err)
{
    if (!be->kv.data)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute before kv_alloc");
    if (b->num_tokens < 0 || b->num_tokens > be->a.max_tokens)
        return vesta_error_set(err, VESTA_ERR_LIMIT, "batch: num_tokens %d outside [0, max_num_batched_tokens %d]",
                               b->num_tokens, be->a.max_tokens);
    if (b->num_seqs < 0 || (b->num_tokens > 0 && b->num_seqs == 0) || b->num_seqs > b->num_tokens)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: num_seqs %d for %d tokens", b->num_seqs,
                               b->num_tokens);
    if (b->num_tokens > 0 && (!b->token_ids || !b->positions || !b->slot_mapping || !b->query_start ||
                              !b->context_lens || !b->block_tables))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: a token or sequence array is NULL");
    if (b->num_seqs > 0 && b->max_blocks_per_seq <= 0)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: max_blocks_per_seq %d", b->max_blocks_per_seq);
    if (b->num_seqs > 0 && (b->query_start[0] != 0 || b->query_start[b->num_seqs] != b->num_tokens))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: query_start must run from 0 to num_tokens %d",
                               b->num_tokens);
    for (int s = 0; s < b->num_seqs; s++)
        if (b->query_start[s + 1] < b->query_start[s])
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: query_start[%d] decreases", s + 1);
    for (int s = 0; s < b->num_seqs; s++) {
        vesta_status st = check_seq(be, b, s, err);
        if (st != VESTA_OK)
            return st;
    }
    /* Several rows may sample the same token (n > 1 children of one prompt). */
    if (b->num_samples < 0 || (b->num_samples > 0 && b->num_tokens == 0))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: num_samples %d for %d tokens", b->num_samples,
                               b->num_tokens);
    if (b->num_samples > 0 && (!b->sample_token_index || (be->shard.rank == 0 && !b->sample_rows)))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sample arrays are NULL");
    for (int k = 0; k < b->num_samples; k++) {
        if (b->sample_token_index[k] < 0 || b->sample_token_index[k] >= b->num_tokens)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sample_token_index[%d] = %d outside [0, %d)",
                                   k, b->sample_token_index[k], b->num_tokens);
        if (be->shard.rank == 0 && !b->sample_rows[k].params) /* only rank 0 samples */
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sample_rows[%d].params is NULL", k);
    }
    return VESTA_OK;
}
