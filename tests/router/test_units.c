/* Unit tests of the router's data structures and request parsing. The prefix index and the
 * request table are checked against plain reference models written here (linear arrays) under
 * random operation sequences. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "api/error.h"
#include "sched/policy.h"
#include "sched/prefix_index.h"
#include "sched/request_table.h"

static int failures, checks;

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(c)) {                                                                                \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                  \
        }                                                                                          \
    } while (0)

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- prefix index vs a reference set of (hash, worker) pairs, with a cap big enough that
 * nothing is evicted ---- */
static void test_prefix_index_model(void)
{
    vr_prefix_index *ix = vr_prefix_index_create(1 << 20);
    CHECK(ix != NULL);
    CHECK(vr_prefix_index_bytes(ix) <= (1 << 20));
    enum { NH = 300, NW = 4 };
    static unsigned char ref[NH][NW];
    memset(ref, 0, sizeof ref);
    for (int step = 0; step < 20000; step++) {
        int h = (int)(rnd() % NH), w = (int)(rnd() % NW);
        uint64_t key = 0x9e3779b97f4a7c15ULL * (uint64_t)(h + 1);
        int op = (int)(rnd() % 10);
        if (op < 6) {
            vr_prefix_index_add(ix, key, (uint16_t)w);
            ref[h][w] = 1;
        } else if (op < 9) {
            vr_prefix_index_remove(ix, key, (uint16_t)w);
            ref[h][w] = 0;
        } else if (rnd() % 50 == 0) {
            vr_prefix_index_remove_worker(ix, (uint16_t)w);
            for (int k = 0; k < NH; k++)
                ref[k][w] = 0;
        }
    }
    size_t entries = 0;
    int mismatches = 0;
    for (int h = 0; h < NH; h++) {
        uint16_t out[VR_PREFIX_MAX_HOLDERS];
        int n = vr_prefix_index_lookup(ix, 0x9e3779b97f4a7c15ULL * (uint64_t)(h + 1), out);
        unsigned char got[NW] = {0};
        for (int i = 0; i < n; i++)
            got[out[i]] = 1;
        int any = 0;
        for (int w = 0; w < NW; w++) {
            mismatches += got[w] != ref[h][w];
            any |= ref[h][w];
        }
        entries += any;
    }
    CHECK(mismatches == 0);
    CHECK(vr_prefix_index_count(ix) == entries);
    vr_prefix_index_release(ix);
}

/* The memory cap holds and the least recently used entries go first. */
static void test_prefix_index_lru(void)
{
    size_t cap = 64 * 1024;
    vr_prefix_index *ix = vr_prefix_index_create(cap);
    CHECK(ix != NULL && vr_prefix_index_bytes(ix) <= cap);
    size_t n = vr_prefix_index_capacity(ix);
    CHECK(n >= 16);
    for (uint64_t k = 1; k <= n; k++)
        vr_prefix_index_add(ix, k, 0);
    uint16_t out[VR_PREFIX_MAX_HOLDERS];
    CHECK(vr_prefix_index_lookup(ix, 1, out) == 1); /* key 1 becomes most recent */
    for (uint64_t k = n + 1; k <= n + 10; k++)
        vr_prefix_index_add(ix, k, 1);
    CHECK(vr_prefix_index_count(ix) == n);
    CHECK(vr_prefix_index_evictions(ix) == 10);
    CHECK(vr_prefix_index_lookup(ix, 1, out) == 1); /* kept: it was used */
    CHECK(vr_prefix_index_lookup(ix, 2, out) == 0); /* evicted: oldest */
    CHECK(vr_prefix_index_lookup(ix, 11, out) == 0);
    CHECK(vr_prefix_index_lookup(ix, 12, out) == 1);
    CHECK(vr_prefix_index_lookup(ix, n + 10, out) == 1 && out[0] == 1);
    /* many more holders than fit: the most recent ones stay */
    for (uint16_t w = 0; w < 20; w++)
        vr_prefix_index_add(ix, 777, w);
    int c = vr_prefix_index_lookup(ix, 777, out);
    CHECK(c == VR_PREFIX_MAX_HOLDERS && out[c - 1] == 19);
    vr_prefix_index_release(ix);
    CHECK(vr_prefix_index_create(100) == NULL);
}

static void test_request_table(void)
{
    vr_request_table t;
    vr_request_table_init(&t);
    enum { N = 500 };
    static char keys[N][16];
    static int present[N];
    for (int i = 0; i < N; i++)
        snprintf(keys[i], sizeof keys[i], "req-%d", i);
    for (int step = 0; step < 20000; step++) {
        int i = (int)(rnd() % N);
        if (rnd() % 2) {
            vesta_status st = vr_request_table_put(&t, keys[i], &present[i]);
            CHECK(present[i] ? st == VESTA_ERR_INVALID_ARG : st == VESTA_OK);
            present[i] = 1;
        } else {
            void *v = vr_request_table_remove(&t, keys[i]);
            CHECK(present[i] ? v == &present[i] : v == NULL);
            present[i] = 0;
        }
    }
    size_t count = 0;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        count += (size_t)present[i];
        bad += (vr_request_table_get(&t, keys[i]) != NULL) != present[i];
    }
    CHECK(bad == 0 && t.count == count);
    vr_request_table_clear(&t);
}

/* ---- routing policies ---- */

static vr_worker *add_worker(vr_sched *s, const char *id)
{
    vr_worker *w = vr_registry_get_or_add(&s->reg, id);
    w->state = VR_WORKER_LIVE;
    w->reg.block_size = 16;
    w->reg.max_num_seqs = 8;
    return w;
}

static void test_policies(void)
{
    vr_sched s;
    vr_route_reason why;
    int matched;
    CHECK(vr_sched_init(&s, VR_POLICY_ROUND_ROBIN, 2, 1 << 20) == VESTA_OK);
    vr_worker *a = add_worker(&s, "a"), *b = add_worker(&s, "b"), *c = add_worker(&s, "c");
    uint64_t h[4] = {11, 12, 13, 14};
    vr_worker *seen[6];
    for (int i = 0; i < 6; i++)
        seen[i] = vr_sched_pick(&s, h, 4, &why, &matched);
    CHECK(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
    CHECK(seen[3] == seen[0] && seen[4] == seen[1] && seen[5] == seen[2]);
    c->state = VR_WORKER_DEAD;
    for (int i = 0; i < 4; i++)
        CHECK(vr_sched_pick(&s, h, 4, &why, &matched) != c);

    s.policy = VR_POLICY_LEAST_LOAD;
    c->state = VR_WORKER_LIVE;
    a->inflight_seqs = 5;
    b->inflight_seqs = 1;
    c->inflight_seqs = 3;
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == b && why == VR_ROUTE_LEAST_LOAD);

    /* prefix affinity from the routing history (no KV events yet) */
    s.policy = VR_POLICY_PREFIX_AFFINITY;
    a->inflight_seqs = b->inflight_seqs = c->inflight_seqs = 0;
    vr_sched_record(&s, c, h, 3);  /* c holds 3 blocks */
    vr_sched_record(&s, a, h, 1);  /* a holds 1 */
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == c && why == VR_ROUTE_PREFIX_HIT && matched == 3);
    c->inflight_seqs = 3;          /* beyond the margin (2) of the least loaded (0) */
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) != c && why == VR_ROUTE_PREFIX_OVERLOAD);
    c->inflight_seqs = 2;          /* within the margin */
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == c);
    uint64_t other[2] = {99, 98};
    vr_worker *m = vr_sched_pick(&s, other, 2, &why, &matched);
    CHECK(m != c && why == VR_ROUTE_PREFIX_MISS && matched == 0);

    /* KV events make a worker "synced": then only its events count, not history */
    c->inflight_seqs = 0;
    uint64_t stored[2] = {11, 12};
    vesta_msg_kv_events ev = {1, false, 2, stored, 0, NULL};
    vr_sched_kv_events(&s, b, &ev);
    CHECK(b->kv_synced);
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == c && matched == 3);
    uint64_t more[2] = {13, 14};
    vesta_msg_kv_events ev2 = {2, false, 2, more, 0, NULL};
    vr_sched_kv_events(&s, b, &ev2);
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == b && matched == 4);
    /* eviction of block 12 cuts b's prefix at 1 block */
    uint64_t gone[1] = {12};
    vesta_msg_kv_events ev3 = {3, false, 0, NULL, 1, gone};
    vr_sched_kv_events(&s, b, &ev3);
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == c && matched == 3);
    /* a gap: b's event knowledge is dropped and it is no longer synced */
    vesta_msg_kv_events ev5 = {5, false, 2, stored, 0, NULL};
    vr_sched_kv_events(&s, b, &ev5);
    CHECK(!b->kv_synced && b->kv_gaps == 1);
    /* all_cleared */
    vesta_msg_kv_events ev6 = {6, true, 0, NULL, 0, NULL};
    vr_sched_kv_events(&s, b, &ev6);
    uint16_t out[VR_PREFIX_MAX_HOLDERS];
    CHECK(vr_prefix_index_lookup(s.events, 11, out) == 0);
    /* forgetting a worker removes it from both indexes */
    vr_sched_forget(&s, c);
    CHECK(vr_sched_pick(&s, h, 4, &why, &matched) == a || matched < 3);
    CHECK(vr_policy_parse("least-load") == VR_POLICY_LEAST_LOAD && vr_policy_parse("x") == -1);
    vr_sched_clear(&s);
}

/* ---- request parsing ---- */

static vesta_status parse(vr_api_kind k, const char *body, vr_api_request *r, vr_api_error *e)
{
    vr_api_limits lim;
    vr_api_limits_init(&lim);
    lim.vocab_size = 1000;
    return vr_api_request_parse(k, body, strlen(body), &lim, r, e);
}

static void test_parse(void)
{
    vr_api_request r;
    vr_api_error e;
    CHECK(parse(VR_API_COMPLETION,
                "{\"prompt\":[[1,2],[3]],\"n\":2,\"temperature\":0,\"top_k\":-1,\"seed\":-5,"
                "\"stop\":\"x\",\"logit_bias\":{\"7\":-100},\"stop_token_ids\":[4],"
                "\"logprobs\":3,\"max_tokens\":9.0,\"stream\":true,"
                "\"stream_options\":{\"include_usage\":true}}",
                &r, &e) == VESTA_OK);
    CHECK(r.n_prompts == 2 && r.prompts[0].n_ids == 2 && r.prompts[1].ids[0] == 3);
    CHECK(r.sp.n == 2 && r.sp.temperature == 0 && r.sp.top_k == -1 && r.sp.seed >= 0);
    CHECK(r.n_stop == 1 && strcmp(r.stop[0], "x") == 0);
    CHECK(r.sp.num_logit_bias == 1 && r.sp.logit_bias[0].token == 7);
    CHECK(r.sp.num_stop_token_ids == 1 && r.sp.logprobs == 3 && r.sp.max_tokens == 9);
    CHECK(r.stream && r.include_usage && r.add_special_tokens && r.skip_special_tokens);
    CHECK(vr_api_default_max_tokens(&r, 10, 100) == 9);
    vr_api_request_clear(&r);

    CHECK(parse(VR_API_CHAT,
                "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null}],"
                "\"logprobs\":true,\"top_logprobs\":2}",
                &r, &e) == VESTA_OK);
    CHECK(json_array_size(r.messages) == 2);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(r.messages, 0), "content")),
                 "a\nb") == 0);
    CHECK(r.want_logprobs && r.num_top_logprobs == 2 && r.sp.logprobs == 2 && !r.add_special_tokens);
    CHECK(vr_api_default_max_tokens(&r, 10, 100) == 90); /* chat: the rest of the context */
    vr_api_request_clear(&r);

    static const struct {
        vr_api_kind kind;
        const char *body, *param;
    } bad[] = {
        {VR_API_COMPLETION, "{\"prompt\":\"a\",\"n\":129}", "n"},
        {VR_API_COMPLETION, "{\"prompt\":[1000]}", "prompt"},
        {VR_API_COMPLETION, "{\"prompt\":\"a\",\"logit_bias\":{\"1000\":1}}", "logit_bias"},
        {VR_API_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":2147483648}", "max_tokens"},
        {VR_API_COMPLETION, "{\"prompt\":\"a\",\"temperature\":true}", "temperature"},
        {VR_API_COMPLETION, "{\"prompt\":\"a\",\"suffix\":\"b\"}", "suffix"},
        {VR_API_COMPLETION, "{\"prompt\":\"a\",\"best_of\":3}", "best_of"},
        {VR_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                      "\"add_generation_prompt\":true,\"continue_final_message\":true}",
         "continue_final_message"},
        {VR_API_CHAT, "{\"messages\":[1]}", "messages"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        CHECK(parse(bad[i].kind, bad[i].body, &r, &e) != VESTA_OK);
        CHECK(e.status == 400 && strcmp(e.param, bad[i].param) == 0);
        if (strcmp(e.param, bad[i].param) != 0)
            fprintf(stderr, "  %s -> param '%s' (%s)\n", bad[i].body, e.param, e.message);
        CHECK(r.root == NULL); /* nothing owned after a failure */
    }
    /* the error body is OpenAI's shape */
    vr_api_error_bad(&e, "n", "bad n");
    size_t len;
    char *body = vr_api_error_body(&e, &len);
    json_t *j = json_loads(body, 0, NULL);
    json_t *err = json_object_get(j, "error");
    CHECK(err && json_object_size(err) == 4 &&
          strcmp(json_string_value(json_object_get(err, "param")), "n") == 0 &&
          json_is_null(json_object_get(err, "code")));
    json_decref(j);
    free(body);
}

int main(void)
{
    test_prefix_index_model();
    test_prefix_index_lru();
    test_request_table();
    test_policies();
    test_parse();
    printf("router units: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
