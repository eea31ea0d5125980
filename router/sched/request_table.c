#include "sched/request_table.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void vr_request_table_init(vr_request_table *t) { memset(t, 0, sizeof *t); }

void vr_request_table_clear(vr_request_table *t)
{
    free(t->keys);
    free(t->vals);
    memset(t, 0, sizeof *t);
}

static size_t find(const vr_request_table *t, const char *key)
{
    size_t i = hash_str(key) & (t->cap - 1);
    while (t->keys[i] != NULL && strcmp(t->keys[i], key) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

static vesta_status grow(vr_request_table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    vr_request_table n = {calloc(cap, sizeof(char *)), calloc(cap, sizeof(void *)), cap, 0};
    if (n.keys == NULL || n.vals == NULL) {
        vr_request_table_clear(&n);
        return VESTA_ERR_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++) {
        if (t->keys[i] != NULL) {
            size_t j = find(&n, t->keys[i]);
            n.keys[j] = t->keys[i];
            n.vals[j] = t->vals[i];
            n.count++;
        }
    }
    vr_request_table_clear(t);
    *t = n;
    return VESTA_OK;
}

vesta_status vr_request_table_put(vr_request_table *t, const char *key, void *val)
{
    if ((t->count + 1) * 2 > t->cap && grow(t) != VESTA_OK)
        return VESTA_ERR_NOMEM;
    size_t i = find(t, key);
    if (t->keys[i] != NULL)
        return VESTA_ERR_INVALID_ARG;
    t->keys[i] = key;
    t->vals[i] = val;
    t->count++;
    return VESTA_OK;
}

void *vr_request_table_get(const vr_request_table *t, const char *key)
{
    if (t->cap == 0)
        return NULL;
    size_t i = find(t, key);
    return t->keys[i] ? t->vals[i] : NULL;
}

void *vr_request_table_remove(vr_request_table *t, const char *key)
{
    if (t->cap == 0)
        return NULL;
    size_t i = find(t, key);
    if (t->keys[i] == NULL)
        return NULL;
    void *val = t->vals[i];
    t->keys[i] = NULL;
    t->count--;
    /* re-insert the rest of the probe chain */
    for (size_t j = (i + 1) & (t->cap - 1); t->keys[j] != NULL; j = (j + 1) & (t->cap - 1)) {
        const char *k = t->keys[j];
        void *v = t->vals[j];
        t->keys[j] = NULL;
        size_t to = find(t, k);
        t->keys[to] = k;
        t->vals[to] = v;
    }
    return val;
}
