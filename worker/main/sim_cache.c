#include "sim_cache.h"

#include <stdlib.h>

typedef struct node {
    uint64_t key;
    int chain;      /* next node in the bucket, -1 = end */
    int prev, next; /* LRU list, -1 = end; head = least recent */
} node;

struct sim_cache {
    int capacity, size;
    node *nodes;
    int *buckets; /* -1 = empty */
    unsigned mask;
    int free_head; /* free nodes chained through .chain */
    int lru_head, lru_tail;
    vesta_kv_event *events; /* ring */
    int ev_cap, ev_start, ev_count;
    uint64_t dropped;
};

sim_cache *sim_cache_create(int capacity)
{
    sim_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    unsigned nb = 16;
    while (nb < 2u * (unsigned)capacity)
        nb <<= 1;
    c->capacity = capacity;
    c->mask = nb - 1;
    c->nodes = malloc((size_t)(capacity > 0 ? capacity : 1) * sizeof *c->nodes);
    c->buckets = malloc(nb * sizeof *c->buckets);
    c->ev_cap = 2 * capacity + 64;
    c->events = malloc((size_t)c->ev_cap * sizeof *c->events);
    if (!c->nodes || !c->buckets || !c->events) {
        sim_cache_destroy(c);
        return NULL;
    }
    for (unsigned i = 0; i < nb; i++)
        c->buckets[i] = -1;
    for (int i = 0; i < capacity; i++)
        c->nodes[i].chain = i + 1 < capacity ? i + 1 : -1;
    c->free_head = capacity > 0 ? 0 : -1;
    c->lru_head = c->lru_tail = -1;
    return c;
}

void sim_cache_destroy(sim_cache *c)
{
    if (!c)
        return;
    free(c->nodes);
    free(c->buckets);
    free(c->events);
    free(c);
}

static unsigned bucket_of(const sim_cache *c, uint64_t key)
{
    return (unsigned)(key ^ (key >> 29)) & c->mask;
}

static int find(const sim_cache *c, uint64_t key)
{
    for (int i = c->buckets[bucket_of(c, key)]; i >= 0; i = c->nodes[i].chain)
        if (c->nodes[i].key == key)
            return i;
    return -1;
}

static void lru_unlink(sim_cache *c, int i)
{
    node *n = &c->nodes[i];
    if (n->prev >= 0) c->nodes[n->prev].next = n->next; else c->lru_head = n->next;
    if (n->next >= 0) c->nodes[n->next].prev = n->prev; else c->lru_tail = n->prev;
}

static void lru_push(sim_cache *c, int i)
{
    node *n = &c->nodes[i];
    n->prev = c->lru_tail;
    n->next = -1;
    if (c->lru_tail >= 0) c->nodes[c->lru_tail].next = i; else c->lru_head = i;
    c->lru_tail = i;
}

static void log_event(sim_cache *c, vesta_kv_event_type type, uint64_t key, uint64_t parent)
{
    if (c->ev_count == c->ev_cap) { /* overwrite the oldest, as the engine does */
        c->ev_start = (c->ev_start + 1) % c->ev_cap;
        c->ev_count--;
        c->dropped++;
    }
    vesta_kv_event *e = &c->events[(c->ev_start + c->ev_count++) % c->ev_cap];
    e->type = type;
    e->lora_id = 0;
    e->block_hash = key;
    e->parent_hash = parent;
}

static void evict_lru(sim_cache *c)
{
    int i = c->lru_head;
    lru_unlink(c, i);
    int *link = &c->buckets[bucket_of(c, c->nodes[i].key)];
    while (*link != i)
        link = &c->nodes[*link].chain;
    *link = c->nodes[i].chain;
    log_event(c, VESTA_KV_EVENT_REMOVED, c->nodes[i].key, 0);
    c->nodes[i].chain = c->free_head;
    c->free_head = i;
    c->size--;
}

int sim_cache_match(sim_cache *c, const uint64_t *keys, int n)
{
    int k = 0;
    while (k < n && find(c, keys[k]) >= 0)
        k++;
    return k;
}

void sim_cache_touch(sim_cache *c, const uint64_t *keys, int n, uint64_t root)
{
    if (c->capacity == 0)
        return;
    for (int k = 0; k < n; k++) {
        int i = find(c, keys[k]);
        if (i >= 0) {
            lru_unlink(c, i);
            lru_push(c, i);
            continue;
        }
        if (c->size == c->capacity)
            evict_lru(c);
        i = c->free_head;
        c->free_head = c->nodes[i].chain;
        c->nodes[i].key = keys[k];
        unsigned b = bucket_of(c, keys[k]);
        c->nodes[i].chain = c->buckets[b];
        c->buckets[b] = i;
        lru_push(c, i);
        c->size++;
        log_event(c, VESTA_KV_EVENT_STORED, keys[k], k ? keys[k - 1] : root);
    }
}

int sim_cache_drain(sim_cache *c, vesta_kv_event *out, int max, uint64_t *num_dropped)
{
    int n = 0;
    while (n < max && c->ev_count > 0) {
        out[n++] = c->events[c->ev_start];
        c->ev_start = (c->ev_start + 1) % c->ev_cap;
        c->ev_count--;
    }
    if (num_dropped)
        *num_dropped = c->dropped;
    c->dropped = 0;
    return n;
}
