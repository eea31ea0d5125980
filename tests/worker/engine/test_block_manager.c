/* Block manager: allocation, reference counts, sharing, prefix-cache lookup with content
 * verification, eviction order (uncached first, then least recently freed, a sequence's tail
 * before its head), KV events. */
#include <stdio.h>
#include <string.h>

#include "block_manager.h"
#include "vesta/prefix_hash.h"

#include "vesta_test.h"

enum { BS = 2 };

/* Allocates n blocks for tokens and registers them under their chain keys. */
static void fill_seq(vesta_block_manager *bm, const int32_t *tokens, int n, int32_t *blocks,
                     uint64_t *keys)
{
    vesta_block_hash_extra ex = {0, 0};
    uint64_t root = vesta_block_hash_root(&ex);
    CHECK(vesta_block_hash_chain(tokens, n * BS, BS, &ex, keys, n) == n);
    for (int i = 0; i < n; i++) {
        blocks[i] = vesta_block_manager_alloc(bm);
        CHECK(blocks[i] >= 0);
        vesta_block_manager_cache(bm, blocks[i], keys[i], i ? keys[i - 1] : root, tokens + i * BS, 0);
    }
}

static void test_eviction_order(void)
{
    vesta_block_manager *bm = vesta_block_manager_create(8, BS, true, 0, NULL);
    vesta_block_hash_extra ex = {0, 0};
    uint64_t root = vesta_block_hash_root(&ex);
    int32_t ta[6] = {1, 2, 3, 4, 5, 6}, tb[6] = {7, 8, 9, 10, 11, 12};
    int32_t a[3], b[3], hit[3];
    uint64_t ka[3], kb[3];
    fill_seq(bm, ta, 3, a, ka);
    fill_seq(bm, tb, 3, b, kb);
    CHECK(vesta_block_manager_num_free(bm) == 2);
    vesta_kv_event ev[32];
    uint64_t dropped = 99;
    CHECK(vesta_block_manager_drain_events(bm, ev, 32, &dropped) == 6 && dropped == 0);
    CHECK(ev[0].type == VESTA_KV_EVENT_STORED && ev[0].block_hash == ka[0] && ev[0].parent_hash == root);
    CHECK(ev[1].parent_hash == ka[0] && ev[5].block_hash == kb[2]);
    /* A frees first, then B: A is older. */
    vesta_block_manager_free_seq(bm, a, 3);
    vesta_block_manager_free_seq(bm, b, 3);
    CHECK(vesta_block_manager_num_free(bm) == 8);
    CHECK(vesta_block_manager_lookup(bm, root, ka, ta, 0, 3, hit) == 3);
    CHECK(memcmp(hit, a, sizeof(a)) == 0);
    /* The two never-cached blocks go first, then A tail to head, then B tail to head. */
    int32_t expect[8];
    int k = 0;
    for (int i = 0; i < 8; i++) {
        bool used = false;
        for (int j = 0; j < 3; j++)
            used |= i == a[j] || i == b[j];
        if (!used)
            expect[k++] = i;
    }
    CHECK(k == 2);
    expect[2] = a[2], expect[3] = a[1], expect[4] = a[0];
    expect[5] = b[2], expect[6] = b[1], expect[7] = b[0];
    for (int i = 0; i < 8; i++) {
        int32_t got = vesta_block_manager_alloc(bm);
        CHECK(got == expect[i]);
        CHECK(vesta_block_manager_ref_count(bm, got) == 1);
        CHECK(!vesta_block_manager_is_cached(bm, got));
        if (i == 2) /* A's tail is gone: a lookup now stops before it */
            CHECK(vesta_block_manager_lookup(bm, root, ka, ta, 0, 3, hit) == 2);
    }
    CHECK(vesta_block_manager_alloc(bm) == -1);
    CHECK(vesta_block_manager_drain_events(bm, ev, 32, NULL) == 6);
    CHECK(ev[0].type == VESTA_KV_EVENT_REMOVED && ev[0].block_hash == ka[2]);
    CHECK(ev[2].block_hash == ka[0] && ev[3].block_hash == kb[2]);
    vesta_block_manager_destroy(bm);
}

static void test_refs_and_hits(void)
{
    vesta_block_manager *bm = vesta_block_manager_create(6, BS, true, 4, NULL);
    vesta_block_hash_extra ex = {0, 0};
    uint64_t root = vesta_block_hash_root(&ex);
    int32_t t[4] = {5, 6, 7, 8}, blocks[2], hit[2];
    uint64_t keys[2];
    fill_seq(bm, t, 2, blocks, keys);
    /* A second sequence shares both blocks. */
    CHECK(vesta_block_manager_lookup(bm, root, keys, t, 0, 2, hit) == 2);
    vesta_block_manager_ref(bm, hit[0]);
    vesta_block_manager_ref(bm, hit[1]);
    CHECK(vesta_block_manager_ref_count(bm, blocks[0]) == 2);
    vesta_block_manager_free_seq(bm, blocks, 2);
    CHECK(vesta_block_manager_ref_count(bm, blocks[0]) == 1);
    CHECK(vesta_block_manager_num_free(bm) == 4);
    vesta_block_manager_free_seq(bm, hit, 2);
    CHECK(vesta_block_manager_num_free(bm) == 6);
    /* A hit on a free cached block takes it out of the free queue. */
    CHECK(vesta_block_manager_lookup(bm, root, keys, t, 0, 2, hit) == 2);
    vesta_block_manager_ref(bm, hit[0]);
    CHECK(vesta_block_manager_num_free(bm) == 5);
    vesta_block_manager_free_seq(bm, hit, 1);
    /* Same key, other contents (a forged collision), other parent, other adapter: misses. */
    int32_t other[4] = {5, 6, 7, 9};
    CHECK(vesta_block_manager_lookup(bm, root, keys, other, 0, 2, hit) == 1);
    CHECK(vesta_block_manager_lookup(bm, root + 1, keys, t, 0, 2, hit) == 0);
    CHECK(vesta_block_manager_lookup(bm, root, keys, t, 3, 2, hit) == 0);
    /* A second block under an existing key stays uncached. */
    int32_t dup = vesta_block_manager_alloc(bm);
    vesta_block_manager_cache(bm, dup, keys[0], root, t, 0);
    CHECK(!vesta_block_manager_is_cached(bm, dup));
    /* The event ring holds 4: older events are dropped and counted. */
    vesta_kv_event ev[8];
    uint64_t dropped = 0;
    int n = vesta_block_manager_drain_events(bm, ev, 8, &dropped);
    CHECK(n == 2 && dropped == 0); /* two STORED, nothing evicted: dup came off the uncached head */
    for (int i = 0; i < 3; i++) {
        int32_t x = vesta_block_manager_alloc(bm);
        CHECK(x >= 0);
    }
    vesta_block_manager_free_seq(bm, &dup, 1);
    vesta_block_manager_destroy(bm);

    /* Caching off: no hits, no events. */
    bm = vesta_block_manager_create(4, BS, false, 0, NULL);
    fill_seq(bm, t, 2, blocks, keys);
    CHECK(!vesta_block_manager_is_cached(bm, blocks[0]));
    CHECK(vesta_block_manager_lookup(bm, root, keys, t, 0, 2, hit) == 0);
    CHECK(vesta_block_manager_drain_events(bm, ev, 8, &dropped) == 0);
    vesta_block_manager_destroy(bm);
    CHECK(vesta_block_manager_create(0, BS, true, 0, NULL) == NULL);
    vesta_block_manager_destroy(NULL);
}

/* Many keys through the table: insert, evict in mixed order, look up what remains. */
static void test_table_churn(void)
{
    enum { N = 300 };
    vesta_block_manager *bm = vesta_block_manager_create(N, 1, true, 0, NULL);
    vesta_block_hash_extra ex = {0, 0};
    uint64_t root = vesta_block_hash_root(&ex);
    int32_t tok[N], blocks[N], hit[N];
    uint64_t keys[N];
    for (int i = 0; i < N; i++)
        tok[i] = i * 31 % 1000;
    vesta_block_hash_chain(tok, N, 1, &ex, keys, N);
    for (int i = 0; i < N; i++) {
        blocks[i] = vesta_block_manager_alloc(bm);
        vesta_block_manager_cache(bm, blocks[i], keys[i], i ? keys[i - 1] : root, tok + i, 0);
    }
    vesta_block_manager_free_seq(bm, blocks, N);
    for (int i = 0; i < N / 2; i++) /* evicts the tail half */
        vesta_block_manager_alloc(bm);
    CHECK(vesta_block_manager_lookup(bm, root, keys, tok, 0, N, hit) == N / 2);
    vesta_block_manager_destroy(bm);
}

static void test_event_overflow(void)
{
    vesta_block_manager *bm = vesta_block_manager_create(8, BS, true, 4, NULL);
    int32_t t[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, blocks[6];
    uint64_t keys[6];
    fill_seq(bm, t, 6, blocks, keys);
    vesta_kv_event ev[8];
    uint64_t dropped = 0;
    CHECK(vesta_block_manager_drain_events(bm, ev, 8, &dropped) == 4);
    CHECK(dropped == 2 && ev[0].block_hash == keys[2] && ev[3].block_hash == keys[5]);
    CHECK(vesta_block_manager_drain_events(bm, ev, 8, &dropped) == 0 && dropped == 0);
    vesta_block_manager_destroy(bm);
}

int main(void)
{
    test_event_overflow();
    test_eviction_order();
    test_refs_and_hits();
    test_table_churn();
    if (failures)
        fprintf(stderr, "%d checks failed\n", failures);
    else
        printf("block manager tests passed\n");
    return failures ? 1 : 0;
}
