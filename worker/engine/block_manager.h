/* Paged KV blocks: a fixed pool planned once, reference counts, a free queue that doubles as the
 * LRU order of cached blocks, and the prefix-cache table (block key -> block).
 *
 * Free queue order: uncached free blocks sit at the head and are reused first; cached blocks
 * whose last reference went away are appended at the tail, a sequence's blocks in reverse order,
 * so the least recently used are evicted first and, within a sequence, its tail before its head
 * (a tail is useless without its head, the head may serve other prompts). A cache hit on a free
 * block takes it out of the queue.
 *
 * Nothing here allocates after create. Thread ownership: the engine thread. */
#ifndef VESTA_BLOCK_MANAGER_H
#define VESTA_BLOCK_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#include "vesta/engine.h"
#include "vesta/error.h"

typedef struct vesta_block_manager vesta_block_manager;

/* event_capacity: size of the KV event ring (0 = 2 * num_blocks + 64). */
vesta_block_manager *vesta_block_manager_create(int num_blocks, int block_size, bool caching,
                                                int event_capacity, vesta_error *err);
void vesta_block_manager_destroy(vesta_block_manager *bm); /* NULL is a no-op */

int vesta_block_manager_num_blocks(const vesta_block_manager *bm);
/* Blocks a caller can get from alloc now (free, including cached-but-unreferenced ones). */
int vesta_block_manager_num_free(const vesta_block_manager *bm);
int vesta_block_manager_ref_count(const vesta_block_manager *bm, int32_t block);
bool vesta_block_manager_is_cached(const vesta_block_manager *bm, int32_t block);

/* Takes a free block (the head of the free queue; a cached one is evicted from the cache and a
 * REMOVED event logged). Returns its id with ref count 1, or -1 if none is free. */
int32_t vesta_block_manager_alloc(vesta_block_manager *bm);

/* One more reference to a block (a prefix-cache hit or a shared block of a forked sequence).
 * A block with no references leaves the free queue. */
void vesta_block_manager_ref(vesta_block_manager *bm, int32_t block);

/* Drops one reference to each of blocks[0..n) (one sequence's table, head first); blocks that
 * reach zero return to the free queue as described above. */
void vesta_block_manager_free_seq(vesta_block_manager *bm, const int32_t *blocks, int n);

/* How many leading blocks of a chain are cached: block i matches when the table maps keys[i]
 * to a block whose stored parent key (root for i = 0), lora id and token ids equal this
 * chain's. Writes their ids to out[]; takes no references. 0 when caching is off. */
int vesta_block_manager_lookup(const vesta_block_manager *bm, uint64_t root, const uint64_t *keys,
                               const int32_t *tokens, int32_t lora_id, int n_blocks,
                               int32_t *out);

/* Registers a full, computed block under key (parent = the previous block's key or root).
 * No-op when caching is off, when the block is already registered, or when another block
 * already holds that key (the duplicate stays uncached). Logs a STORED event. */
void vesta_block_manager_cache(vesta_block_manager *bm, int32_t block, uint64_t key,
                               uint64_t parent, const int32_t *tokens, int32_t lora_id);

/* Moves up to max events, oldest first, into out; returns the count. *dropped (if not NULL)
 * receives how many events were overwritten unread since the last drain. */
int vesta_block_manager_drain_events(vesta_block_manager *bm, vesta_kv_event *out, int max,
                                     uint64_t *dropped);

#endif
