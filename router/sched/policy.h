/* Routing: which worker gets a request.
 *
 *   round-robin      live workers in turn;
 *   least-load       fewest sequences in flight (router's own count), ties by KV usage;
 *   prefix-affinity  the worker holding the longest cached prefix of the prompt (in full KV
 *                    blocks), unless its load exceeds the least-loaded worker's by more than
 *                    `load_margin` sequences; no match -> least-load.
 *
 * Prefix knowledge per worker: when its KV_EVENTS arrived in order since it registered
 * ("synced"), the events index alone; otherwise (no events, or after a gap) the events index
 * united with the router's own routing history. Owned by the event-loop thread. */
#ifndef VR_SCHED_POLICY_H
#define VR_SCHED_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "sched/prefix_index.h"
#include "sched/worker.h"

typedef enum vr_policy {
    VR_POLICY_ROUND_ROBIN = 0,
    VR_POLICY_LEAST_LOAD,
    VR_POLICY_PREFIX_AFFINITY,
    VR_POLICY_COUNT
} vr_policy;

typedef enum vr_route_reason {
    VR_ROUTE_ROUND_ROBIN = 0,
    VR_ROUTE_LEAST_LOAD,
    VR_ROUTE_PREFIX_HIT,      /* went to the longest cached prefix */
    VR_ROUTE_PREFIX_MISS,     /* no worker holds a prefix: least-load */
    VR_ROUTE_PREFIX_OVERLOAD, /* the best prefix holder was too loaded: least-load */
    VR_ROUTE_COUNT
} vr_route_reason;

typedef struct vr_sched {
    vr_registry reg;
    vr_policy policy;
    int load_margin;
    vr_prefix_index *events;   /* from KV_EVENTS */
    vr_prefix_index *history;  /* from routing decisions */
    uint64_t decisions[VR_POLICY_COUNT][VR_ROUTE_COUNT];
    uint64_t matched_blocks_total;
} vr_sched;

/* index_bytes caps both indexes together. VESTA_ERR_NOMEM when they cannot be allocated. */
vesta_status vr_sched_init(vr_sched *s, vr_policy policy, int load_margin, size_t index_bytes);
void vr_sched_clear(vr_sched *s);

/* Parses "round-robin" | "least-load" | "prefix-affinity"; -1 when unknown. */
int vr_policy_parse(const char *name);
const char *vr_policy_name(vr_policy p);
const char *vr_route_reason_name(vr_route_reason r);

/* The hashing parameters (block size, salt) routing uses now: those of the first routable
 * worker. False when no worker is routable. */
bool vr_sched_hash_params(const vr_sched *s, int *block_size, uint64_t *salt);

/* Picks a routable worker for a prompt whose full-block hashes are hashes[n] (computed with
 * vr_sched_hash_params). NULL when none is routable. *matched receives the cached blocks of the
 * chosen worker. Counts the decision. */
vr_worker *vr_sched_pick(vr_sched *s, const uint64_t *hashes, int n, vr_route_reason *reason,
                         int *matched);

/* Remembers that `w` got a request with these block hashes (the history index). */
void vr_sched_record(vr_sched *s, const vr_worker *w, const uint64_t *hashes, int n);

/* Applies one KV_EVENTS message from `w`. */
void vr_sched_kv_events(vr_sched *s, vr_worker *w, const vesta_msg_kv_events *ev);

/* Forgets what the indexes know about `w` (new registration or death). */
void vr_sched_forget(vr_sched *s, vr_worker *w);

#endif
