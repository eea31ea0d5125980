#include "block_manager.h"

#include <stdlib.h>
#include <string.h>

typedef struct block {
    int32_t ref;
    int32_t prev, next; /* free queue links, -1 = none */
    bool in_queue;
    bool cached;
    int32_t lora_id;
    uint64_t key, parent;
} block;

struct vesta_block_manager {
    int num_blocks, block_size;
    bool caching;
    block *blocks;
    int32_t *tokens;    /* [num_blocks * block_size]: a cached block's token ids, for verifying hits */
    int32_t head, tail; /* free queue */
    int num_free;
    int32_t *table;     /* open addressing, linear probing: block id or -1 */
    uint64_t table_mask;
    vesta_kv_event *events;
    int ev_cap, ev_start, ev_count;
    uint64_t ev_dropped;
};

static uint64_t slot_of(const vesta_block_manager *bm, uint64_t key)
{
    /* Keys are XXH3 outputs: already uniformly mixed. */
    return key & bm->table_mask;
}

vesta_block_manager *vesta_block_manager_create(int num_blocks, int block_size, bool caching,
                                                int event_capacity, vesta_error *err)
{
    if (num_blocks <= 0 || block_size <= 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "block manager: %d blocks of %d tokens",
                        num_blocks, block_size);
        return NULL;
    }
    vesta_block_manager *bm = calloc(1, sizeof(*bm));
    if (bm == NULL)
        goto nomem;
    bm->num_blocks = num_blocks;
    bm->block_size = block_size;
    bm->caching = caching;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)num_blocks)
        cap <<= 1;
    bm->table_mask = cap - 1;
    bm->ev_cap = event_capacity > 0 ? event_capacity : 2 * num_blocks + 64;
    bm->blocks = calloc((size_t)num_blocks, sizeof(block));
    bm->tokens = malloc((size_t)num_blocks * (size_t)block_size * sizeof(int32_t));
    bm->table = malloc(cap * sizeof(int32_t));
    bm->events = malloc((size_t)bm->ev_cap * sizeof(vesta_kv_event));
    if (!bm->blocks || !bm->tokens || !bm->table || !bm->events)
        goto nomem;
    memset(bm->table, 0xff, cap * sizeof(int32_t));
    for (int i = 0; i < num_blocks; i++) {
        bm->blocks[i].prev = i - 1;
        bm->blocks[i].next = i + 1 < num_blocks ? i + 1 : -1;
        bm->blocks[i].in_queue = true;
    }
    bm->head = 0;
    bm->tail = num_blocks - 1;
    bm->num_free = num_blocks;
    return bm;
nomem:
    vesta_block_manager_destroy(bm);
    vesta_error_set(err, VESTA_ERR_NOMEM, "block manager: cannot allocate %d blocks", num_blocks);
    return NULL;
}

void vesta_block_manager_destroy(vesta_block_manager *bm)
{
    if (bm == NULL)
        return;
    free(bm->blocks);
    free(bm->tokens);
    free(bm->table);
    free(bm->events);
    free(bm);
}

int vesta_block_manager_num_blocks(const vesta_block_manager *bm) { return bm->num_blocks; }
int vesta_block_manager_num_free(const vesta_block_manager *bm) { return bm->num_free; }

int vesta_block_manager_ref_count(const vesta_block_manager *bm, int32_t b)
{
    return bm->blocks[b].ref;
}

bool vesta_block_manager_is_cached(const vesta_block_manager *bm, int32_t b)
{
    return bm->blocks[b].cached;
}

static void queue_remove(vesta_block_manager *bm, int32_t b)
{
    block *x = &bm->blocks[b];
    if (x->prev >= 0)
        bm->blocks[x->prev].next = x->next;
    else
        bm->head = x->next;
    if (x->next >= 0)
        bm->blocks[x->next].prev = x->prev;
    else
        bm->tail = x->prev;
    x->prev = x->next = -1;
    x->in_queue = false;
    bm->num_free--;
}

static void queue_push(vesta_block_manager *bm, int32_t b, bool at_head)
{
    block *x = &bm->blocks[b];
    if (at_head) {
        x->prev = -1;
        x->next = bm->head;
        if (bm->head >= 0)
            bm->blocks[bm->head].prev = b;
        else
            bm->tail = b;
        bm->head = b;
    } else {
        x->next = -1;
        x->prev = bm->tail;
        if (bm->tail >= 0)
            bm->blocks[bm->tail].next = b;
        else
            bm->head = b;
        bm->tail = b;
    }
    x->in_queue = true;
    bm->num_free++;
}

static void log_event(vesta_block_manager *bm, vesta_kv_event_type type, const block *x)
{
    vesta_kv_event ev = {.type = type, .lora_id = x->lora_id, .block_hash = x->key,
                         .parent_hash = type == VESTA_KV_EVENT_STORED ? x->parent : 0};
    if (bm->ev_count == bm->ev_cap) { /* overwrite the oldest */
        bm->ev_start = (bm->ev_start + 1) % bm->ev_cap;
        bm->ev_count--;
        bm->ev_dropped++;
    }
    bm->events[(bm->ev_start + bm->ev_count) % bm->ev_cap] = ev;
    bm->ev_count++;
}

static int64_t table_find(const vesta_block_manager *bm, uint64_t key)
{
    for (uint64_t i = slot_of(bm, key);; i = (i + 1) & bm->table_mask) {
        int32_t b = bm->table[i];
        if (b < 0)
            return -1;
        if (bm->blocks[b].key == key)
            return (int64_t)i;
    }
}

/* Linear-probing deletion by backward shift: no tombstones, so lookups stay short forever. */
static void table_delete_at(vesta_block_manager *bm, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & bm->table_mask;
        int32_t b = bm->table[j];
        if (b < 0)
            break;
        uint64_t home = slot_of(bm, bm->blocks[b].key);
        /* b may move to i if its home is not in the cyclic range (i, j]. */
        bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            bm->table[i] = b;
            i = j;
        }
    }
    bm->table[i] = -1;
}

static void uncache(vesta_block_manager *bm, int32_t b)
{
    block *x = &bm->blocks[b];
    int64_t at = table_find(bm, x->key);
    if (at >= 0 && bm->table[at] == b)
        table_delete_at(bm, (uint64_t)at);
    x->cached = false;
    log_event(bm, VESTA_KV_EVENT_REMOVED, x);
}

int32_t vesta_block_manager_alloc(vesta_block_manager *bm)
{
    int32_t b = bm->head;
    if (b < 0)
        return -1;
    queue_remove(bm, b);
    if (bm->blocks[b].cached)
        uncache(bm, b);
    bm->blocks[b].ref = 1;
    return b;
}

void vesta_block_manager_ref(vesta_block_manager *bm, int32_t b)
{
    block *x = &bm->blocks[b];
    if (x->ref == 0 && x->in_queue)
        queue_remove(bm, b);
    x->ref++;
}

void vesta_block_manager_free_seq(vesta_block_manager *bm, const int32_t *blocks, int n)
{
    for (int i = n - 1; i >= 0; i--) { /* the tail first: it is evicted before the head */
        int32_t b = blocks[i];
        block *x = &bm->blocks[b];
        if (x->ref <= 0)
            continue; /* never: a double free would corrupt the queue, so ignore it */
        if (--x->ref == 0)
            queue_push(bm, b, !x->cached);
    }
}

int vesta_block_manager_lookup(const vesta_block_manager *bm, uint64_t root, const uint64_t *keys,
                               const int32_t *tokens, int32_t lora_id, int n_blocks,
                               int32_t *out)
{
    if (!bm->caching)
        return 0;
    int bs = bm->block_size;
    for (int i = 0; i < n_blocks; i++) {
        int64_t at = table_find(bm, keys[i]);
        if (at < 0)
            return i;
        int32_t b = bm->table[at];
        const block *x = &bm->blocks[b];
        uint64_t parent = i == 0 ? root : keys[i - 1];
        /* A 64-bit key collision must not serve another prompt's KV: compare the contents. */
        if (x->parent != parent || x->lora_id != lora_id ||
            memcmp(bm->tokens + (size_t)b * bs, tokens + (size_t)i * bs,
                   (size_t)bs * sizeof(int32_t)) != 0)
            return i;
        out[i] = b;
    }
    return n_blocks;
}

void vesta_block_manager_cache(vesta_block_manager *bm, int32_t b, uint64_t key, uint64_t parent,
                               const int32_t *tokens, int32_t lora_id)
{
    block *x = &bm->blocks[b];
    if (!bm->caching || x->cached || table_find(bm, key) >= 0)
        return;
    x->cached = true;
    x->key = key;
    x->parent = parent;
    x->lora_id = lora_id;
    memcpy(bm->tokens + (size_t)b * bm->block_size, tokens, (size_t)bm->block_size * sizeof(int32_t));
    uint64_t i = slot_of(bm, key);
    while (bm->table[i] >= 0)
        i = (i + 1) & bm->table_mask;
    bm->table[i] = b;
    log_event(bm, VESTA_KV_EVENT_STORED, x);
}

int vesta_block_manager_drain_events(vesta_block_manager *bm, vesta_kv_event *out, int max,
                                     uint64_t *dropped)
{
    int n = bm->ev_count < max ? bm->ev_count : max;
    for (int i = 0; i < n; i++)
        out[i] = bm->events[(bm->ev_start + i) % bm->ev_cap];
    bm->ev_start = (bm->ev_start + n) % bm->ev_cap;
    bm->ev_count -= n;
    if (dropped != NULL) {
        *dropped = bm->ev_dropped;
        bm->ev_dropped = 0;
    }
    return n;
}
