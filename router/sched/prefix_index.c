/* Open addressing (linear probing, backward-shift deletion) over a fixed entry pool, with an
 * intrusive doubly linked LRU list. Everything is sized once from the memory cap. */
#include "sched/prefix_index.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

typedef struct entry {
    uint64_t hash;
    uint32_t prev, next; /* LRU: head = most recent */
    uint8_t n;
    uint16_t holders[VR_PREFIX_MAX_HOLDERS];
} entry;

struct vr_prefix_index {
    entry *entries;
    uint32_t cap_entries;
    uint32_t used;
    uint32_t free_head; /* free list through .next */
    uint32_t lru_head, lru_tail;
    uint32_t *slots;    /* entry index or NIL */
    uint32_t mask;
    uint64_t evictions;
    size_t bytes;
};

static uint32_t slot_of(const vr_prefix_index *ix, uint64_t h)
{
    /* the block hashes are XXH3 outputs already; mix anyway so that crafted ones spread */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (uint32_t)h & ix->mask;
}

vr_prefix_index *vr_prefix_index_create(size_t max_bytes)
{
    /* the largest power-of-two table (load factor <= 1/2) whose table + entries fit the cap */
    size_t table = 32;
    while (table < ((size_t)1 << 31) &&
           sizeof(vr_prefix_index) + (table * 2) * sizeof(uint32_t) + table * sizeof(entry) <= max_bytes)
        table *= 2;
    size_t n = table / 2;
    if (sizeof(vr_prefix_index) + table * sizeof(uint32_t) + n * sizeof(entry) > max_bytes)
        return NULL;
    vr_prefix_index *ix = calloc(1, sizeof *ix);
    if (ix == NULL)
        return NULL;
    ix->entries = malloc(n * sizeof(entry));
    ix->slots = malloc(table * sizeof(uint32_t));
    if (ix->entries == NULL || ix->slots == NULL) {
        vr_prefix_index_release(ix);
        return NULL;
    }
    ix->cap_entries = (uint32_t)n;
    ix->mask = (uint32_t)(table - 1);
    memset(ix->slots, 0xff, table * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        ix->entries[i].next = i + 1 < n ? i + 1 : NIL;
    ix->free_head = 0;
    ix->lru_head = ix->lru_tail = NIL;
    ix->bytes = sizeof *ix + n * sizeof(entry) + table * sizeof(uint32_t);
    return ix;
}

void vr_prefix_index_release(vr_prefix_index *ix)
{
    if (ix == NULL)
        return;
    free(ix->entries);
    free(ix->slots);
    free(ix);
}

static void lru_unlink(vr_prefix_index *ix, uint32_t e)
{
    entry *x = &ix->entries[e];
    if (x->prev != NIL)
        ix->entries[x->prev].next = x->next;
    else
        ix->lru_head = x->next;
    if (x->next != NIL)
        ix->entries[x->next].prev = x->prev;
    else
        ix->lru_tail = x->prev;
}

static void lru_push_front(vr_prefix_index *ix, uint32_t e)
{
    entry *x = &ix->entries[e];
    x->prev = NIL;
    x->next = ix->lru_head;
    if (ix->lru_head != NIL)
        ix->entries[ix->lru_head].prev = e;
    ix->lru_head = e;
    if (ix->lru_tail == NIL)
        ix->lru_tail = e;
}

static uint32_t find_slot(const vr_prefix_index *ix, uint64_t h)
{
    for (uint32_t s = slot_of(ix, h);; s = (s + 1) & ix->mask) {
        uint32_t e = ix->slots[s];
        if (e == NIL || ix->entries[e].hash == h)
            return s;
    }
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void table_delete(vr_prefix_index *ix, uint32_t s)
{
    uint32_t hole = s;
    for (uint32_t j = (s + 1) & ix->mask; ix->slots[j] != NIL; j = (j + 1) & ix->mask) {
        uint32_t home = slot_of(ix, ix->entries[ix->slots[j]].hash);
        /* move j into the hole if its home is not in (hole, j] cyclically */
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            ix->slots[hole] = ix->slots[j];
            hole = j;
        }
    }
    ix->slots[hole] = NIL;
}

static void entry_drop(vr_prefix_index *ix, uint32_t e)
{
    table_delete(ix, find_slot(ix, ix->entries[e].hash));
    lru_unlink(ix, e);
    ix->entries[e].next = ix->free_head;
    ix->free_head = e;
    ix->used--;
}

void vr_prefix_index_add(vr_prefix_index *ix, uint64_t hash, uint16_t worker)
{
    uint32_t s = find_slot(ix, hash);
    uint32_t e = ix->slots[s];
    if (e == NIL) {
        if (ix->free_head == NIL) {
            entry_drop(ix, ix->lru_tail);
            ix->evictions++;
            s = find_slot(ix, hash); /* the deletion may have moved slots */
        }
        e = ix->free_head;
        ix->free_head = ix->entries[e].next;
        ix->entries[e].hash = hash;
        ix->entries[e].n = 0;
        ix->slots[s] = e;
        ix->used++;
        lru_push_front(ix, e);
    } else {
        lru_unlink(ix, e);
        lru_push_front(ix, e);
    }
    entry *x = &ix->entries[e];
    for (int i = 0; i < x->n; i++) {
        if (x->holders[i] == worker) {
            /* most recent holder last */
            memmove(&x->holders[i], &x->holders[i + 1], (x->n - i - 1) * sizeof(uint16_t));
            x->holders[x->n - 1] = worker;
            return;
        }
    }
    if (x->n == VR_PREFIX_MAX_HOLDERS) {
        memmove(&x->holders[0], &x->holders[1], (x->n - 1) * sizeof(uint16_t));
        x->n--;
    }
    x->holders[x->n++] = worker;
}

void vr_prefix_index_remove(vr_prefix_index *ix, uint64_t hash, uint16_t worker)
{
    uint32_t e = ix->slots[find_slot(ix, hash)];
    if (e == NIL)
        return;
    entry *x = &ix->entries[e];
    for (int i = 0; i < x->n; i++) {
        if (x->holders[i] == worker) {
            memmove(&x->holders[i], &x->holders[i + 1], (x->n - i - 1) * sizeof(uint16_t));
            x->n--;
            break;
        }
    }
    if (x->n == 0)
        entry_drop(ix, e);
}

void vr_prefix_index_remove_worker(vr_prefix_index *ix, uint16_t worker)
{
    uint32_t e = ix->lru_head;
    while (e != NIL) {
        uint32_t next = ix->entries[e].next;
        entry *x = &ix->entries[e];
        for (int i = 0; i < x->n; i++) {
            if (x->holders[i] == worker) {
                memmove(&x->holders[i], &x->holders[i + 1], (x->n - i - 1) * sizeof(uint16_t));
                x->n--;
                break;
            }
        }
        if (x->n == 0)
            entry_drop(ix, e);
        e = next;
    }
}

int vr_prefix_index_lookup(vr_prefix_index *ix, uint64_t hash, uint16_t *out)
{
    uint32_t e = ix->slots[find_slot(ix, hash)];
    if (e == NIL)
        return 0;
    lru_unlink(ix, e);
    lru_push_front(ix, e);
    memcpy(out, ix->entries[e].holders, ix->entries[e].n * sizeof(uint16_t));
    return ix->entries[e].n;
}

size_t vr_prefix_index_count(const vr_prefix_index *ix) { return ix->used; }
size_t vr_prefix_index_capacity(const vr_prefix_index *ix) { return ix->cap_entries; }
size_t vr_prefix_index_bytes(const vr_prefix_index *ix) { return ix->bytes; }
uint64_t vr_prefix_index_evictions(const vr_prefix_index *ix) { return ix->evictions; }
