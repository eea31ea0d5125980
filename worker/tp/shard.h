/* The Megatron-style split of one model over the ranks of a tensor-parallel replica, shared by
 * the CPU and CUDA backends so that both slice the same way: query heads, KV heads and
 * intermediate (MLP) columns are contiguous ranges per rank; KV heads are replicated when there
 * are fewer of them than ranks; the vocabulary (embedding and LM head) is split into
 * ceil(vocab / size) rows per rank, the last rank's slice zero-padded. */
#ifndef VESTA_TP_SHARD_H
#define VESTA_TP_SHARD_H

#include <stdint.h>

#include "vesta/backend.h"
#include "vesta/error.h"
#include "vesta/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vesta_tp_shard {
    int rank, size;
    int head0;       /* first query head */
    int kv_head0;    /* first KV head (KV heads are replicated when there are fewer than ranks) */
    int inter0;      /* first intermediate (MLP) column */
    int vocab0;      /* first vocabulary row */
    int vocab_rows;  /* ceil(vocab / size): rows of the embedding / LM-head slice (zero-padded) */
    int vocab_valid; /* rows of the slice that are real vocabulary entries (may be 0) */
} vesta_tp_shard;

/* What part of a [rows][cols] (or [rows]) tensor a rank reads: all of it, rows [begin, end) or
 * columns [begin, end). The weight loaders of both backends take one per tensor. */
typedef enum vesta_tp_slice_kind { VESTA_TP_SLICE_ALL, VESTA_TP_SLICE_ROWS, VESTA_TP_SLICE_COLS } vesta_tp_slice_kind;
typedef struct vesta_tp_slice {
    vesta_tp_slice_kind kind;
    int64_t begin, end; /* unused for VESTA_TP_SLICE_ALL */
} vesta_tp_slice;

/* The whole tensor. */
static const vesta_tp_slice VESTA_TP_WHOLE = {VESTA_TP_SLICE_ALL, 0, 0};

/* Checks that a model of configuration c can be split over n ranks: n in [1, VESTA_TP_MAX_RANKS],
 * n divides the query heads and the intermediate size, and n and the KV heads divide one another.
 * The message names the dimension that does not split. */
vesta_status vesta_tp_shard_check(const vesta_model_config *c, int n, vesta_error *err);

/* Refuses batch-invariant mode with more than one rank: the all-reduce adds the ranks' partial
 * sums in an order that depends on the message size (the batch), so no sequence's results could
 * be independent of its batch. Fails naming --batch-invariant and --tensor-parallel-size. */
vesta_status vesta_tp_check_batch_invariant(const vesta_backend_options *opts, vesta_error *err);

/* Rank `rank`'s slice of a model of configuration full split over n ranks (checked with
 * vesta_tp_shard_check first; fails the same way), and the shard's own configuration in *local:
 * full's, with num_heads, num_kv_heads and intermediate_size of the slice (vocab_size stays the
 * full vocabulary). */
vesta_status vesta_tp_shard_plan(const vesta_model_config *full, int rank, int n, vesta_tp_shard *sh,
                                 vesta_model_config *local, vesta_error *err);

#ifdef __cplusplus
}
#endif
#endif
