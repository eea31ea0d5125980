#include "sched/policy.h"

#include <string.h>

static const char *const POLICY_NAMES[] = {"round-robin", "least-load", "prefix-affinity"};

int vr_policy_parse(const char *name)
{
    for (int i = 0; i < VR_POLICY_COUNT; i++)
        if (strcmp(name, POLICY_NAMES[i]) == 0)
            return i;
    return -1;
}

const char *vr_policy_name(vr_policy p) { return p < VR_POLICY_COUNT ? POLICY_NAMES[p] : "?"; }

const char *vr_route_reason_name(vr_route_reason r)
{
    static const char *const names[] = {"round_robin", "least_load", "prefix_hit", "prefix_miss",
                                        "prefix_overload"};
    return r < VR_ROUTE_COUNT ? names[r] : "?";
}

vesta_status vr_sched_init(vr_sched *s, vr_policy policy, int load_margin, size_t index_bytes)
{
    memset(s, 0, sizeof *s);
    vr_registry_init(&s->reg);
    s->policy = policy;
    s->load_margin = load_margin;
    s->events = vr_prefix_index_create(index_bytes / 2);
    s->history = vr_prefix_index_create(index_bytes / 2);
    if (s->events == NULL || s->history == NULL) {
        vr_sched_clear(s);
        return VESTA_ERR_NOMEM;
    }
    return VESTA_OK;
}

void vr_sched_clear(vr_sched *s)
{
    vr_registry_clear(&s->reg);
    vr_prefix_index_release(s->events);
    vr_prefix_index_release(s->history);
    s->events = s->history = NULL;
}

bool vr_sched_hash_params(const vr_sched *s, int *block_size, uint64_t *salt)
{
    for (int i = 0; i < s->reg.n; i++) {
        const vr_worker *w = s->reg.w[i];
        if (vr_worker_routable(w) && w->reg.block_size > 0) {
            *block_size = w->reg.block_size;
            *salt = w->reg.prefix_cache_salt;
            return true;
        }
    }
    return false;
}

static double load_of(const vr_worker *w) { return w->inflight_seqs + w->hb.kv_usage * 0.5; }

static vr_worker *least_loaded(vr_sched *s)
{
    vr_worker *best = NULL;
    int n = s->reg.n;
    /* start after the round-robin cursor so that ties spread */
    for (int k = 0; k < n; k++) {
        vr_worker *w = s->reg.w[(s->reg.rr_cursor + k) % n];
        if (vr_worker_routable(w) && (best == NULL || load_of(w) < load_of(best)))
            best = w;
    }
    if (best != NULL)
        s->reg.rr_cursor = (best->slot + 1) % n;
    return best;
}

static vr_worker *round_robin(vr_sched *s)
{
    int n = s->reg.n;
    for (int k = 0; k < n; k++) {
        vr_worker *w = s->reg.w[(s->reg.rr_cursor + k) % n];
        if (vr_worker_routable(w)) {
            s->reg.rr_cursor = (w->slot + 1) % n;
            return w;
        }
    }
    return NULL;
}

static bool holds(vr_sched *s, const vr_worker *w, uint64_t h, const uint16_t *ev, int n_ev)
{
    for (int i = 0; i < n_ev; i++)
        if (ev[i] == w->slot)
            return true;
    if (w->kv_synced)
        return false;
    uint16_t hist[VR_PREFIX_MAX_HOLDERS];
    int n_hist = vr_prefix_index_lookup(s->history, h, hist);
    for (int i = 0; i < n_hist; i++)
        if (hist[i] == w->slot)
            return true;
    return false;
}

/* Longest cached prefix per routable worker with matching hash parameters. */
static vr_worker *longest_prefix(vr_sched *s, const uint64_t *hashes, int n, int *matched)
{
    int bs;
    uint64_t salt;
    *matched = 0;
    if (n == 0 || !vr_sched_hash_params(s, &bs, &salt))
        return NULL;
    vr_worker *best = NULL;
    int best_len = 0;
    for (int i = 0; i < s->reg.n; i++) {
        vr_worker *w = s->reg.w[i];
        if (!vr_worker_routable(w) || w->reg.block_size != bs || w->reg.prefix_cache_salt != salt)
            continue;
        int len = 0;
        /* a prefix match can only extend while every earlier block matched */
        while (len < n) {
            uint16_t ev[VR_PREFIX_MAX_HOLDERS];
            int n_ev = vr_prefix_index_lookup(s->events, hashes[len], ev);
            if (!holds(s, w, hashes[len], ev, n_ev))
                break;
            len++;
        }
        if (len > best_len || (len == best_len && len > 0 && load_of(w) < load_of(best))) {
            best = w;
            best_len = len;
        }
    }
    *matched = best_len;
    return best;
}

vr_worker *vr_sched_pick(vr_sched *s, const uint64_t *hashes, int n, vr_route_reason *reason,
                         int *matched)
{
    vr_worker *w = NULL;
    vr_route_reason why = VR_ROUTE_LEAST_LOAD;
    *matched = 0;
    switch (s->policy) {
    case VR_POLICY_ROUND_ROBIN:
        w = round_robin(s);
        why = VR_ROUTE_ROUND_ROBIN;
        break;
    case VR_POLICY_LEAST_LOAD:
        w = least_loaded(s);
        why = VR_ROUTE_LEAST_LOAD;
        break;
    default: {
        int len = 0;
        vr_worker *best = longest_prefix(s, hashes, n, &len);
        vr_worker *least = least_loaded(s);
        if (best == NULL) {
            w = least;
            why = VR_ROUTE_PREFIX_MISS;
        } else if (least != NULL && load_of(best) > load_of(least) + s->load_margin) {
            w = least;
            why = VR_ROUTE_PREFIX_OVERLOAD;
        } else {
            w = best;
            why = VR_ROUTE_PREFIX_HIT;
            *matched = len;
        }
        break;
    }
    }
    if (w != NULL) {
        s->decisions[s->policy][why]++;
        s->matched_blocks_total += (uint64_t)*matched;
    }
    *reason = why;
    return w;
}

void vr_sched_record(vr_sched *s, const vr_worker *w, const uint64_t *hashes, int n)
{
    for (int i = 0; i < n; i++)
        vr_prefix_index_add(s->history, hashes[i], w->slot);
}

void vr_sched_kv_events(vr_sched *s, vr_worker *w, const vesta_msg_kv_events *ev)
{
    if (ev->seq != w->kv_seq + 1) {
        /* A lost message: what we know may hold blocks since evicted and miss stored ones.
         * Start over from this message; history covers the worker until it re-registers. */
        vr_prefix_index_remove_worker(s->events, w->slot);
        w->kv_synced = false;
        w->kv_gaps++;
    } else if (w->kv_seq == 0) {
        w->kv_synced = true; /* first message after REGISTER */
    }
    w->kv_seq = ev->seq;
    if (ev->all_cleared)
        vr_prefix_index_remove_worker(s->events, w->slot);
    for (int i = 0; i < ev->num_evicted; i++)
        vr_prefix_index_remove(s->events, ev->evicted[i], w->slot);
    for (int i = 0; i < ev->num_stored; i++)
        vr_prefix_index_add(s->events, ev->stored[i], w->slot);
}

void vr_sched_forget(vr_sched *s, vr_worker *w)
{
    vr_prefix_index_remove_worker(s->events, w->slot);
    vr_prefix_index_remove_worker(s->history, w->slot);
    w->kv_seq = 0;
    w->kv_synced = false;
}
