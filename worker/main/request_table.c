#include "request_table.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t hash_id(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32));
}

int request_table_init(request_table *t)
{
    t->cap = 64;
    t->count = 0;
    t->slots = calloc(t->cap, sizeof *t->slots);
    return t->slots ? 0 : -1;
}

void request_table_free(request_table *t)
{
    if (!t->slots)
        return;
    for (size_t i = 0; i < t->cap; i++)
        free(t->slots[i].id);
    free(t->slots);
    t->slots = NULL;
}

static size_t probe(const request_table *t, const char *id)
{
    size_t i = hash_id(id) & (t->cap - 1);
    while (t->slots[i].id && strcmp(t->slots[i].id, id) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

request_entry *request_table_find(request_table *t, const char *id)
{
    size_t i = probe(t, id);
    return t->slots[i].id ? &t->slots[i] : NULL;
}

static int grow(request_table *t)
{
    request_table bigger = {calloc(t->cap * 2, sizeof *t->slots), t->cap * 2, t->count};
    if (!bigger.slots)
        return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].id)
            bigger.slots[probe(&bigger, t->slots[i].id)] = t->slots[i];
    free(t->slots);
    *t = bigger;
    return 0;
}

int request_table_put(request_table *t, const char *id, int remaining)
{
    if ((t->count + 1) * 2 > t->cap && grow(t))
        return -1;
    size_t i = probe(t, id);
    if (!t->slots[i].id) {
        if (!(t->slots[i].id = strdup(id)))
            return -1;
        t->count++;
    }
    t->slots[i].remaining = remaining;
    return 0;
}

void request_table_remove(request_table *t, const char *id)
{
    size_t mask = t->cap - 1, i = probe(t, id);
    if (!t->slots[i].id)
        return;
    free(t->slots[i].id);
    t->slots[i].id = NULL;
    t->count--;
    /* Backward shift: move later entries of the run into the hole when that keeps them
     * reachable from their home slot. */
    for (size_t j = (i + 1) & mask; t->slots[j].id; j = (j + 1) & mask) {
        size_t home = hash_id(t->slots[j].id) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            t->slots[j].id = NULL;
            i = j;
        }
    }
}
