/* The simulator's prefix cache: a fixed number of block keys with LRU eviction, logging the same
 * STORED / REMOVED events the engine's block manager logs, so prefix-affinity routing can be
 * exercised without a model. */
#ifndef VESTA_WORKER_SIM_CACHE_H
#define VESTA_WORKER_SIM_CACHE_H

#include <stdint.h>

#include "vesta/engine.h"

typedef struct sim_cache sim_cache;

sim_cache *sim_cache_create(int capacity); /* NULL on out of memory */
void sim_cache_destroy(sim_cache *c);      /* NULL is a no-op */

/* Leading keys of keys[0..n) present in the cache (their blocks are a cache hit). */
int sim_cache_match(sim_cache *c, const uint64_t *keys, int n);

/* Marks keys[0..n) used (most recent), inserting the missing ones (STORED events; the chain
 * parent of keys[0] is root) and evicting the least recently used keys to make room (REMOVED). */
void sim_cache_touch(sim_cache *c, const uint64_t *keys, int n, uint64_t root);

int sim_cache_drain(sim_cache *c, vesta_kv_event *out, int max, uint64_t *num_dropped);

#endif
