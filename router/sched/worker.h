/* The worker registry: every worker that ever registered, by slot (a slot index is the worker's
 * number in the prefix indexes and never changes; a worker that re-registers gets its old slot).
 *
 * Owned by the event-loop thread. */
#ifndef VR_SCHED_WORKER_H
#define VR_SCHED_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "vesta/proto.h"
#include "metrics/metrics.h"

#define VR_MAX_WORKERS 1024

typedef enum vr_worker_state {
    VR_WORKER_LIVE = 0,
    VR_WORKER_DRAINING, /* alive, takes no new requests */
    VR_WORKER_DEAD,     /* timed out (or crashed: a new instance registered); may re-register */
    VR_WORKER_LEFT,     /* said goodbye (drained or shut down); may re-register */
} vr_worker_state;

typedef struct vr_worker {
    uint16_t slot;
    char id[VESTA_PROTO_MAX_ID + 1];   /* also its ZMQ identity */
    vr_worker_state state;
    vesta_msg_register reg;
    vesta_msg_heartbeat hb;
    int64_t registered_ms;
    int64_t last_seen_ms;
    int inflight_reqs;                 /* requests the router has in flight there */
    int inflight_seqs;                 /* their sequences (sum of n): the load used for routing */
    /* KV events: synced while every message since REGISTER arrived in order. */
    uint64_t kv_seq;
    bool kv_synced;
    uint64_t kv_gaps;
    uint64_t deaths;
    bool drain_requested;              /* DRAIN sent: stays DRAINING whatever heartbeats say */
    vr_req_metrics m;
} vr_worker;

typedef struct vr_registry {
    vr_worker *w[VR_MAX_WORKERS];
    int n;            /* slots used */
    int rr_cursor;    /* round-robin position */
} vr_registry;

void vr_registry_init(vr_registry *r);
void vr_registry_clear(vr_registry *r);

vr_worker *vr_registry_find(vr_registry *r, const char *id);
/* The worker with this id, created (state DEAD, zeroed) when new. NULL when every slot is used or
 * allocation failed. */
vr_worker *vr_registry_get_or_add(vr_registry *r, const char *id);

int vr_registry_count(const vr_registry *r, vr_worker_state state);
/* Routable: LIVE. */
static inline bool vr_worker_routable(const vr_worker *w) { return w->state == VR_WORKER_LIVE; }

const char *vr_worker_state_name(vr_worker_state s);

#endif
