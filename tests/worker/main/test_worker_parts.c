/* The worker's request table and the simulator's LRU block cache, checked against naive models
 * (a flat array of ids; an array kept in recency order) over random operation sequences. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request_table.h"
#include "sim_cache.h"

#include "vesta_test.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_request_table(void)
{
    enum { IDS = 300 };
    int model[IDS]; /* -1 = absent, else remaining */
    request_table t;
    CHECK(request_table_init(&t) == 0);
    for (int i = 0; i < IDS; i++)
        model[i] = -1;
    for (int step = 0; step < 20000; step++) {
        int k = (int)(next_rand() % IDS);
        char id[32];
        snprintf(id, sizeof id, "req-%d", k);
        switch (next_rand() % 3) {
        case 0:
            CHECK(request_table_put(&t, id, step) == 0);
            model[k] = step;
            break;
        case 1:
            request_table_remove(&t, id);
            model[k] = -1;
            break;
        default: {
            request_entry *e = request_table_find(&t, id);
            CHECK((e != NULL) == (model[k] >= 0));
            if (e)
                CHECK(e->remaining == model[k] && strcmp(e->id, id) == 0);
        }
        }
    }
    size_t live = 0;
    for (int i = 0; i < IDS; i++)
        live += model[i] >= 0;
    CHECK(t.count == live);
    request_table_free(&t);
}

static void test_sim_cache(void)
{
    enum { CAP = 16, KEYS = 40 };
    uint64_t order[CAP]; /* model: least recent first */
    int size = 0;
    int present[KEYS + 1] = {0};
    sim_cache *c = sim_cache_create(CAP);
    vesta_kv_event ev[4 * CAP];
    CHECK(c != NULL);
    for (int step = 0; step < 3000; step++) {
        uint64_t keys[4];
        int n = 1 + (int)(next_rand() % 4);
        for (int i = 0; i < n; i++)
            keys[i] = 1 + next_rand() % KEYS;
        int match = 0;
        while (match < n && present[keys[match]])
            match++;
        CHECK(sim_cache_match(c, keys, n) == match);
        sim_cache_touch(c, keys, n, 0);
        /* Model: each key moves to most recent; inserting into a full cache evicts the LRU. */
        int stored = 0, evicted = 0;
        for (int i = 0; i < n; i++) {
            int at = -1;
            for (int j = 0; j < size; j++)
                if (order[j] == keys[i])
                    at = j;
            if (at < 0 && size == CAP) {
                present[order[0]] = 0;
                memmove(order, order + 1, (CAP - 1) * sizeof *order);
                size--;
                evicted++;
            } else if (at >= 0) {
                memmove(order + at, order + at + 1, (size_t)(size - at - 1) * sizeof *order);
                size--;
            }
            if (at < 0)
                stored++;
            order[size++] = keys[i];
            present[keys[i]] = 1;
        }
        uint64_t dropped = 1;
        int got = sim_cache_drain(c, ev, 4 * CAP, &dropped);
        int gs = 0, ge = 0;
        for (int i = 0; i < got; i++) {
            if (ev[i].type == VESTA_KV_EVENT_STORED) {
                gs++;
                CHECK(present[ev[i].block_hash] || ev[i].block_hash == 0);
            } else {
                ge++;
            }
        }
        CHECK(gs == stored && ge == evicted && dropped == 0);
    }
    sim_cache_destroy(c);
    sim_cache_destroy(NULL);
}

int main(void)
{
    test_request_table();
    test_sim_cache();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("worker parts: all passed\n");
    return 0;
}
