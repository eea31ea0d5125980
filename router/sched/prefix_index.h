/* A bounded index of prefix-cache blocks: block hash -> the workers holding that block.
 *
 * Used twice by the router: once fed by the workers' KV_EVENTS (what they really cache) and once
 * by the router's own routing history (what they probably cache). Memory is capped at create:
 * the hash table and entries are allocated once, and when full the least recently used entry is
 * evicted. An entry remembers at most VR_PREFIX_MAX_HOLDERS workers (the most recent ones).
 *
 * Not thread-safe: owned by the router's event-loop thread. */
#ifndef VR_SCHED_PREFIX_INDEX_H
#define VR_SCHED_PREFIX_INDEX_H

#include <stddef.h>
#include <stdint.h>

#define VR_PREFIX_MAX_HOLDERS 6

typedef struct vr_prefix_index vr_prefix_index;

/* NULL when max_bytes is too small for even 16 entries or on allocation failure. */
vr_prefix_index *vr_prefix_index_create(size_t max_bytes);
void vr_prefix_index_release(vr_prefix_index *ix); /* NULL is a no-op */

/* Records that `worker` holds block `hash` (marks the entry most recently used). */
void vr_prefix_index_add(vr_prefix_index *ix, uint64_t hash, uint16_t worker);
/* Forgets that `worker` holds `hash`; drops the entry when no holder is left. */
void vr_prefix_index_remove(vr_prefix_index *ix, uint64_t hash, uint16_t worker);
/* Forgets `worker` everywhere (a full scan: for re-registration, resets and deaths). */
void vr_prefix_index_remove_worker(vr_prefix_index *ix, uint16_t worker);

/* Holders of `hash` into out[] (at most VR_PREFIX_MAX_HOLDERS); returns the count and marks the
 * entry used. */
int vr_prefix_index_lookup(vr_prefix_index *ix, uint64_t hash, uint16_t *out);

size_t vr_prefix_index_count(const vr_prefix_index *ix);
size_t vr_prefix_index_capacity(const vr_prefix_index *ix);
size_t vr_prefix_index_bytes(const vr_prefix_index *ix); /* memory held, <= max_bytes */
uint64_t vr_prefix_index_evictions(const vr_prefix_index *ix);

#endif
