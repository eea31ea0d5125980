/* Iteration-level scheduling in the manner of vLLM V1: each step spends a token budget
 * (max_num_batched_tokens) over at most max_num_seqs sequences; running sequences first, in
 * admission order (decodes and continuing chunked prefills), then waiting ones FCFS, each taking
 * as many prompt tokens as the budget leaves (chunked prefill). When blocks run out for a running
 * sequence, the newest running sequence is preempted (its blocks freed, back to the front of the
 * waiting queue; it is recomputed later, re-hitting its cached blocks) and no waiting sequence
 * is admitted in that step. */
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"

vesta_status vesta_scheduler_init(scheduler *s, const sched_config *cfg, vesta_block_manager *bm,
                                  bool caching, uint64_t salt, vesta_error *err)
{
    s->cfg = *cfg;
    s->bm = bm;
    s->caching = caching;
    s->extra.salt = salt;
    s->extra.lora_id = 0;
    s->root = vesta_block_hash_root(&s->extra);
    s->running = calloc((size_t)cfg->max_num_seqs, sizeof(seq *));
    s->scheduled = calloc((size_t)cfg->max_num_seqs, sizeof(seq *));
    s->sort_tmp = calloc((size_t)cfg->max_num_seqs, sizeof(seq *));
    s->hit_blocks = calloc((size_t)cfg->max_blocks_per_seq, sizeof(int32_t));
    if (!s->running || !s->scheduled || !s->sort_tmp || !s->hit_blocks)
        return vesta_error_set(err, VESTA_ERR_NOMEM, "scheduler: out of memory");
    return VESTA_OK;
}

void vesta_scheduler_release(scheduler *s)
{
    free(s->running);
    free(s->scheduled);
    free(s->sort_tmp);
    free(s->hit_blocks);
}

int vesta_scheduler_slots_of(const seq *q)
{
    return q->index == 0 && !q->req->forked ? q->req->sp.n : 1;
}

void vesta_scheduler_enqueue(scheduler *s, seq *q, bool front)
{
    q->state = SEQ_WAITING;
    q->wprev = q->wnext = NULL;
    if (s->whead == NULL) {
        s->whead = s->wtail = q;
    } else if (front) {
        q->wnext = s->whead;
        s->whead->wprev = q;
        s->whead = q;
    } else {
        q->wprev = s->wtail;
        s->wtail->wnext = q;
        s->wtail = q;
    }
    s->num_waiting++;
}

void vesta_scheduler_unlink_waiting(scheduler *s, seq *q)
{
    if (q->wprev)
        q->wprev->wnext = q->wnext;
    else
        s->whead = q->wnext;
    if (q->wnext)
        q->wnext->wprev = q->wprev;
    else
        s->wtail = q->wprev;
    q->wprev = q->wnext = NULL;
    s->num_waiting--;
}

void vesta_scheduler_remove_running(scheduler *s, seq *q)
{
    for (int i = 0; i < s->num_running; i++) {
        if (s->running[i] != q)
            continue;
        for (int j = i + 1; j < s->num_running; j++)
            s->running[j - 1] = s->running[j];
        s->num_running--;
        s->running_slots -= vesta_scheduler_slots_of(q);
        return;
    }
}

void vesta_scheduler_free_blocks(scheduler *s, seq *q)
{
    vesta_block_manager_free_seq(s->bm, q->block_table, q->num_blocks);
    q->num_blocks = 0;
    q->num_computed = 0;
    q->num_registered = 0;
    request *r = q->req;
    if (q->index == 0 && r->num_fork_blocks > 0) {
        vesta_block_manager_free_seq(s->bm, r->fork_blocks, r->num_fork_blocks);
        r->num_fork_blocks = 0;
    }
}

void vesta_scheduler_update_keys(scheduler *s, seq *q)
{
    int bs = s->cfg.block_size;
    int full = q->num_tokens / bs;
    /* The adapter is part of every key: the same tokens under two adapters have different KV. */
    const vesta_block_hash_extra extra = {s->extra.salt, q->req->lora_id};
    for (int i = q->num_keys; i < full; i++) {
        uint64_t parent = i == 0 ? s->root : q->keys[i - 1];
        q->keys[i] = vesta_block_hash(parent, q->tokens + (size_t)i * bs, bs, &extra);
    }
    if (full > q->num_keys)
        q->num_keys = full;
}

void vesta_scheduler_register_blocks(scheduler *s, seq *q)
{
    if (!s->caching)
        return;
    int bs = s->cfg.block_size;
    int full = q->num_computed / bs;
    if (full > q->num_blocks)
        full = q->num_blocks;
    vesta_scheduler_update_keys(s, q);
    for (int i = q->num_registered; i < full; i++)
        vesta_block_manager_cache(s->bm, q->block_table[i], q->keys[i], i == 0 ? s->root : q->keys[i - 1],
                                  q->tokens + (size_t)i * bs, q->req->lora_id);
    if (full > q->num_registered)
        q->num_registered = full;
}

/* Whether scheduling num_new tokens of q completes the prompt of an unforked n > 1 request,
 * and how many blocks its children then need for their own copy of the partial last block. */
static bool completes_fork(const seq *q, int num_new)
{
    const request *r = q->req;
    return q->index == 0 && !r->forked && r->sp.n > 1 && q->num_computed + num_new == q->num_tokens;
}

static int fork_blocks_needed(const scheduler *s, const seq *q, int num_new)
{
    if (!completes_fork(q, num_new) || q->num_tokens % s->cfg.block_size == 0)
        return 0;
    return q->req->sp.n - 1;
}

static int new_blocks_needed(const scheduler *s, const seq *q, int num_new)
{
    int bs = s->cfg.block_size;
    int total = (q->num_computed + num_new + bs - 1) / bs;
    return total > q->num_blocks ? total - q->num_blocks : 0;
}

/* All or nothing: the blocks for num_new more tokens (and the fork copies). */
static bool allocate(scheduler *s, seq *q, int num_new)
{
    int need = new_blocks_needed(s, q, num_new), fork = fork_blocks_needed(s, q, num_new);
    if (need + fork > vesta_block_manager_num_free(s->bm))
        return false;
    for (int i = 0; i < need; i++)
        q->block_table[q->num_blocks++] = vesta_block_manager_alloc(s->bm);
    for (int i = 0; i < fork; i++)
        q->req->fork_blocks[q->req->num_fork_blocks++] = vesta_block_manager_alloc(s->bm);
    return true;
}

static void preempt(scheduler *s, seq *q)
{
    vesta_scheduler_remove_running(s, q);
    vesta_scheduler_free_blocks(s, q);
    vesta_scheduler_enqueue(s, q, true);
    s->preemptions++;
}

static void add_scheduled(scheduler *s, seq *q, int num_new)
{
    q->step_new = num_new;
    q->step_fork = completes_fork(q, num_new);
    s->scheduled[s->num_scheduled++] = q;
}

/* Whether q's adapter may join this step: the base model always, an adapter already in the step,
 * or a new one while fewer than max_loras are (vLLM's rule). */
static bool lora_fits(const scheduler *s, const seq *q)
{
    const int32_t id = q->req->lora_id;
    if (id == 0) return true;
    for (int i = 0; i < s->num_step_loras; i++)
        if (s->step_loras[i] == id) return true;
    return s->num_step_loras < s->cfg.max_loras;
}

static void lora_note(scheduler *s, const seq *q)
{
    if (q->req->lora_id != 0 && lora_fits(s, q)) {
        for (int i = 0; i < s->num_step_loras; i++)
            if (s->step_loras[i] == q->req->lora_id) return;
        s->step_loras[s->num_step_loras++] = q->req->lora_id;
    }
}

/* Admits waiting sequence q if budget, slots and blocks allow. */
static bool admit(scheduler *s, seq *q, int *budget)
{
    int slots = vesta_scheduler_slots_of(q);
    if (s->running_slots + slots > s->cfg.max_num_seqs)
        return false;
    int bs = s->cfg.block_size, hits = 0;
    if (s->caching) {
        vesta_scheduler_update_keys(s, q);
        /* At least one token must be computed to produce logits. */
        int max_hits = (q->num_tokens - 1) / bs;
        if (max_hits > q->num_keys)
            max_hits = q->num_keys;
        hits = vesta_block_manager_lookup(s->bm, s->root, q->keys, q->tokens, q->req->lora_id, max_hits, s->hit_blocks);
    }
    int hits_free = 0;
    for (int i = 0; i < hits; i++)
        hits_free += vesta_block_manager_ref_count(s->bm, s->hit_blocks[i]) == 0;
    q->num_computed = hits * bs;
    int num_new = q->num_tokens - q->num_computed;
    if (num_new > *budget)
        num_new = *budget;
    int need = new_blocks_needed(s, q, num_new) - hits + fork_blocks_needed(s, q, num_new);
    if (need + hits_free > vesta_block_manager_num_free(s->bm)) {
        q->num_computed = 0;
        return false;
    }
    /* new_blocks_needed counted the hit blocks as missing; take them first. */
    for (int i = 0; i < hits; i++) {
        vesta_block_manager_ref(s->bm, s->hit_blocks[i]);
        q->block_table[i] = s->hit_blocks[i];
    }
    q->num_blocks = hits;
    q->num_registered = hits;
    allocate(s, q, num_new);
    if (s->caching) {
        s->prefix_queries += (uint64_t)q->num_tokens;
        s->prefix_hits += (uint64_t)q->num_computed;
    }
    if (!q->scheduled_before) {
        int cached = q->num_computed < q->req->num_prompt ? q->num_computed : q->req->num_prompt;
        q->num_cached_tokens = cached;
        q->scheduled_before = true;
    }
    vesta_scheduler_unlink_waiting(s, q);
    q->state = SEQ_RUNNING;
    s->running[s->num_running++] = q;
    s->running_slots += slots;
    add_scheduled(s, q, num_new);
    lora_note(s, q);
    *budget -= num_new;
    return true;
}

/* Orders the step's sequences by adapter, stably (a counting sort over the ids), so that each
 * adapter's rows are one contiguous range of the batch: a backend then runs an adapter's products
 * over its own rows only. The order of a batch changes no sequence's result. */
static void group_by_lora(scheduler *s)
{
    int count[VESTA_LORA_MAX_ADAPTERS + 2] = {0};
    for (int i = 0; i < s->num_scheduled; i++) count[s->scheduled[i]->req->lora_id + 1]++;
    for (int k = 1; k < VESTA_LORA_MAX_ADAPTERS + 2; k++) count[k] += count[k - 1];
    for (int i = 0; i < s->num_scheduled; i++) s->sort_tmp[count[s->scheduled[i]->req->lora_id]++] = s->scheduled[i];
    memcpy(s->scheduled, s->sort_tmp, (size_t)s->num_scheduled * sizeof(seq *));
}

static void schedule_step(scheduler *s);

void vesta_scheduler_schedule(scheduler *s)
{
    schedule_step(s);
    if (s->cfg.group_by_lora) group_by_lora(s);
}

static void schedule_step(scheduler *s)
{
    int budget = s->cfg.max_num_batched_tokens;
    bool preempted = false;
    s->num_scheduled = 0;
    for (int i = 0; i < s->num_running && budget > 0; i++) {
        seq *q = s->running[i];
        int num_new = q->num_tokens - q->num_computed;
        if (num_new > budget)
            num_new = budget;
        bool ok;
        while (!(ok = allocate(s, q, num_new))) {
            seq *victim = s->running[s->num_running - 1];
            preempt(s, victim);
            preempted = true;
            if (victim == q)
                break;
        }
        if (!ok)
            break;
        add_scheduled(s, q, num_new);
        budget -= num_new;
    }
    if (preempted)
        return;
    s->num_step_loras = 0;
    for (int i = 0; i < s->num_scheduled; i++) lora_note(s, s->scheduled[i]);
    /* FCFS, except that a request whose adapter would exceed max_loras waits for a later step
     * while those behind it may go (as vLLM's scheduler skips it). */
    for (seq *q = s->whead, *next; q != NULL && budget > 0; q = next) {
        next = q->wnext;
        if (!lora_fits(s, q)) continue;
        if (!admit(s, q, &budget)) break;
    }
}
