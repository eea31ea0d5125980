/* The leader's "tp" backend: each operation is broadcast to the followers (a fixed header, then
 * the payload), then run on rank 0's own shard. The collectives inside the shard's forward pass
 * keep the ranks in step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp.h"

typedef struct tp_header {
    uint32_t magic;
    uint32_t op;
    uint64_t bytes;
} tp_header;

#define TP_MAGIC 0x56545042u /* "VTPB" */

typedef struct tp_backend {
    vesta_backend base; /* must be first */
    vesta_backend *local;
    vesta_tp_comm *comm;
    int32_t *msg;
    size_t msg_cap;
    bool dead;
    char why[VESTA_ERROR_MSG_MAX];
    int pids[VESTA_TP_MAX_RANKS]; /* rank processes to reap, 0 = none */
    int npids;
} tp_backend;

static tp_backend *tp_of(vesta_backend *be) { return (tp_backend *)be; }

/* A communication failure kills the replica: remembered so every later call fails at once. */
static vesta_status died(tp_backend *t, vesta_status st, vesta_error *err)
{
    if (st == VESTA_ERR_BACKEND && !t->dead) {
        t->dead = true;
        snprintf(t->why, sizeof t->why, "%s", err ? err->msg : "communication failed");
    }
    return st;
}

static vesta_status send_op(tp_backend *t, vesta_tp_op op, void *payload, size_t bytes, vesta_error *err)
{
    if (t->dead)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tensor-parallel replica is down: %s", t->why);
    tp_header h = {TP_MAGIC, (uint32_t)op, bytes};
    vesta_status st = vesta_tp_comm_broadcast(t->comm, &h, sizeof h, 0, t->comm->timeout_ms, err);
    if (st == VESTA_OK && bytes)
        st = vesta_tp_comm_broadcast(t->comm, payload, bytes, 0, t->comm->timeout_ms, err);
    return died(t, st, err);
}

static size_t tp_kv_block_bytes(vesta_backend *be, int block_size)
{
    vesta_backend *l = tp_of(be)->local;
    return l->ops->kv_block_bytes(l, block_size);
}

static size_t tp_kv_budget_bytes(vesta_backend *be)
{
    vesta_backend *l = tp_of(be)->local;
    return l->ops->kv_budget_bytes(l);
}

static vesta_status tp_kv_alloc(vesta_backend *be, int num_blocks, int block_size, vesta_error *err)
{
    tp_backend *t = tp_of(be);
    int32_t p[2] = {num_blocks, block_size};
    vesta_status st = send_op(t, VESTA_TP_OP_KV_ALLOC, p, sizeof p, err);
    return st != VESTA_OK ? st : t->local->ops->kv_alloc(t->local, num_blocks, block_size, err);
}

static vesta_status tp_execute(vesta_backend *be, const vesta_batch *b, vesta_sample_result *results,
                               float *logits_out, vesta_error *err)
{
    tp_backend *t = tp_of(be);
    if (!b)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute: batch is NULL");
    /* What only rank 0 checks (sampling) is checked before the broadcast: otherwise the followers
     * would run a step that rank 0 refuses and wait for it in their collectives. */
    if (b->num_samples > 0 && (!results || !b->sample_rows))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "execute: results or sample_rows is NULL for %d samples",
                               b->num_samples);
    for (int k = 0; k < b->num_samples; k++)
        if (!b->sample_rows[k].params)
            return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "batch: sample_rows[%d].params is NULL", k);
    size_t len;
    vesta_status st = vesta_tp_batch_encode(b, &t->msg, &t->msg_cap, &len, err);
    if (st == VESTA_OK)
        st = send_op(t, VESTA_TP_OP_EXECUTE, t->msg, len, err);
    if (st == VESTA_OK)
        st = died(t, t->local->ops->execute(t->local, b, results, logits_out, err), err);
    return st;
}

static vesta_status tp_copy_blocks(vesta_backend *be, const int32_t *src, const int32_t *dst, int n,
                                   vesta_error *err)
{
    tp_backend *t = tp_of(be);
    if (vesta_backend_check_copy_args(src, dst, n, err) != VESTA_OK) return VESTA_ERR_INVALID_ARG;
    size_t bytes = sizeof(int32_t) * (1 + 2 * (size_t)n);
    if (bytes > t->msg_cap) {
        int32_t *m = realloc(t->msg, bytes);
        if (!m)
            return vesta_error_set(err, VESTA_ERR_NOMEM, "copy_blocks: out of memory");
        t->msg = m;
        t->msg_cap = bytes;
    }
    t->msg[0] = n;
    memcpy(t->msg + 1, src, sizeof(int32_t) * (size_t)n);
    memcpy(t->msg + 1 + n, dst, sizeof(int32_t) * (size_t)n);
    vesta_status st = send_op(t, VESTA_TP_OP_COPY_BLOCKS, t->msg, bytes, err);
    return st != VESTA_OK ? st : t->local->ops->copy_blocks(t->local, src, dst, n, err);
}

static void tp_destroy(vesta_backend *be)
{
    tp_backend *t = tp_of(be);
    if (!t)
        return;
    if (t->comm && !t->dead) {
        vesta_error e = {0};
        send_op(t, VESTA_TP_OP_SHUTDOWN, NULL, 0, &e); /* best effort: followers also notice our exit */
    }
    vesta_backend_destroy(t->local);
    vesta_tp_comm_release(t->comm); /* poisons the segment: any rank still waiting leaves */
    vesta_tp_reap(t->pids, t->npids, 10000);
    free(t->msg);
    free(t);
}

void vesta_tp_backend_own_ranks(vesta_backend *be, const int *pids, int n)
{
    tp_backend *t = tp_of(be);
    t->npids = n < VESTA_TP_MAX_RANKS ? n : VESTA_TP_MAX_RANKS;
    memcpy(t->pids, pids, sizeof(int) * (size_t)t->npids);
}

/* Adapters would need their A and B sharded like the projections they follow, and the shrink's
 * partial sums of the row-split products reduced across ranks: not implemented. */
static vesta_status tp_lora_add(vesta_backend *be, int slot, const vesta_lora_adapter *ad, vesta_error *err)
{
    (void)be, (void)slot;
    return vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                           "LoRA adapters with tensor parallelism are not supported (adapter '%s')", ad->name);
}

static const vesta_backend_ops tp_ops = {
    .name = "tp",
    .kv_block_bytes = tp_kv_block_bytes,
    .kv_budget_bytes = tp_kv_budget_bytes,
    .kv_alloc = tp_kv_alloc,
    .execute = tp_execute,
    .copy_blocks = tp_copy_blocks,
    .lora_add = tp_lora_add,
    .destroy = tp_destroy,
};

vesta_backend *vesta_tp_backend_create(vesta_backend *local, const vesta_model_config *full, vesta_tp_comm *comm,
                                       vesta_error *err)
{
    tp_backend *t = NULL;
    if (!local || !full || !comm || comm->rank != 0)
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp backend: needs rank 0's shard, the model config and its "
                        "communicator");
    else if (!(t = calloc(1, sizeof *t)))
        vesta_error_set(err, VESTA_ERR_NOMEM, "tp backend: out of memory");
    if (!t) {
        vesta_backend_destroy(local);
        vesta_tp_comm_release(comm);
        return NULL;
    }
    t->base.ops = &tp_ops;
    t->base.config = *full;
    t->local = local;
    t->comm = comm;
    return &t->base;
}

static vesta_status follower_step(vesta_backend *local, vesta_tp_comm *comm, const tp_header *h, void *payload,
                                  vesta_error *err)
{
    const int32_t *p = payload;
    switch (h->op) {
    case VESTA_TP_OP_KV_ALLOC:
        if (h->bytes != 2 * sizeof(int32_t))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "tp follower: KV_ALLOC of %llu bytes",
                                   (unsigned long long)h->bytes);
        return local->ops->kv_alloc(local, p[0], p[1], err);
    case VESTA_TP_OP_EXECUTE: {
        vesta_batch b;
        vesta_status st = vesta_tp_batch_decode(p, h->bytes, &b, err);
        return st != VESTA_OK ? st : local->ops->execute(local, &b, NULL, NULL, err);
    }
    case VESTA_TP_OP_COPY_BLOCKS: {
        if (h->bytes < sizeof(int32_t) || p[0] < 0 || h->bytes != sizeof(int32_t) * (1 + 2 * (uint64_t)p[0]))
            return vesta_error_set(err, VESTA_ERR_FORMAT, "tp follower: COPY_BLOCKS of %llu bytes",
                                   (unsigned long long)h->bytes);
        return local->ops->copy_blocks(local, p + 1, p + 1 + p[0], p[0], err);
    }
    default:
        (void)comm;
        return vesta_error_set(err, VESTA_ERR_FORMAT, "tp follower: unknown operation %u", h->op);
    }
}

vesta_status vesta_tp_follower_run(vesta_backend *local, vesta_tp_comm *comm, vesta_error *err)
{
    void *payload = NULL;
    size_t cap = 0;
    vesta_status st = VESTA_OK;
    for (;;) {
        tp_header h;
        /* Idle followers wait without a deadline (the replica may have no work for hours); a dead
         * leader is still noticed by the communicator's liveness check. */
        if ((st = vesta_tp_comm_broadcast(comm, &h, sizeof h, 0, -1, err)) != VESTA_OK)
            break;
        if (h.magic != TP_MAGIC) {
            st = vesta_error_set(err, VESTA_ERR_FORMAT, "tp follower: bad message magic 0x%08x", h.magic);
            break;
        }
        if (h.op == VESTA_TP_OP_SHUTDOWN)
            break;
        if (h.bytes > cap) {
            void *np = h.bytes > ((size_t)1 << 34) ? NULL : realloc(payload, h.bytes);
            if (!np) {
                st = vesta_error_set(err, VESTA_ERR_NOMEM, "tp follower: %llu-byte message",
                                     (unsigned long long)h.bytes);
                break;
            }
            payload = np;
            cap = h.bytes;
        }
        if (h.bytes && (st = vesta_tp_comm_broadcast(comm, payload, h.bytes, 0, comm->timeout_ms, err)) != VESTA_OK)
            break;
        vesta_error e = {0};
        st = follower_step(local, comm, &h, payload, &e);
        if (st == VESTA_ERR_BACKEND || (st != VESTA_OK && h.op != VESTA_TP_OP_EXECUTE)) {
            if (err)
                *err = e;
            break;
        }
        st = VESTA_OK; /* a rejected batch: rank 0 rejected the same one */
    }
    free(payload);
    return st;
}
