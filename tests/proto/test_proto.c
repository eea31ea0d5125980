/* vesta_proto: every message round-trips; truncated, garbled, hostile and out-of-bounds frames
 * are rejected with an error naming the field, never a crash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/proto.h"

#include "vesta_test.h"

static int32_t prompt[1000];
static int32_t toks[3] = {5, 7, 11};
static vesta_sample_result lps[3];
static uint64_t stored[4] = {1, UINT64_MAX, 0x123456789abcdefull, 42};
static uint64_t evicted[1] = {99};

/* One filled-in message of each type, with non-default values everywhere. */
static void make(vesta_msg *m, vesta_msg_type t)
{
    vesta_msg_init(m, t);
    switch (t) {
    case VESTA_MSG_REGISTER: {
        vesta_msg_register *r = &m->u.reg;
        strcpy(r->worker_id, "w7");
        strcpy(r->model, "/models/x.gguf");
        r->num_served_names = 2;
        strcpy(r->served_names[0], "smol");
        strcpy(r->served_names[1], "smol-alias");
        strcpy(r->backend, "sim");
        r->max_model_len = 8192;
        r->block_size = 16;
        r->num_kv_blocks = 1234;
        r->max_num_seqs = 64;
        r->vocab_size = 49152;
        r->num_eos = 2;
        r->eos_ids[0] = 0;
        r->eos_ids[1] = 2;
        r->enable_prefix_caching = true;
        r->prefix_cache_salt = 0xfeedfacecafebeefull;
        r->tp_rank = 1;
        r->tp_size = 2;
        r->instance = UINT64_MAX - 3;
        break;
    }
    case VESTA_MSG_REGISTERED:
        m->u.registered.router_instance = 77;
        m->u.registered.heartbeat_ms = 250;
        break;
    case VESTA_MSG_HEARTBEAT: {
        vesta_msg_heartbeat *h = &m->u.heartbeat;
        h->num_running = 3;
        h->num_waiting = 4;
        h->num_blocks_total = 1000;
        h->num_blocks_free = 900;
        h->kv_usage = 0.1;
        h->prefix_cache_queries = 1ull << 40;
        h->prefix_cache_hits = 12345;
        h->num_preemptions = 2;
        h->prompt_tokens_total = 777;
        h->generation_tokens_total = 888;
        h->steps = 999;
        h->kv_events_seq = 5;
        h->draining = true;
        h->busy_ms = 4000000000ll; /* over 32 bits */
        break;
    }
    case VESTA_MSG_GENERATE: {
        vesta_msg_generate *g = &m->u.generate;
        strcpy(g->request_id, "cmpl-abc-0");
        for (int i = 0; i < 1000; i++)
            prompt[i] = i * 37 % 49152;
        g->prompt_ids = prompt;
        g->num_prompt = 1000;
        g->sp.n = 3;
        g->sp.temperature = 0.7f;
        g->sp.top_p = 0.9f;
        g->sp.top_k = 40;
        g->sp.min_p = 0.05f;
        g->sp.presence_penalty = 0.5f;
        g->sp.frequency_penalty = -0.25f;
        g->sp.repetition_penalty = 1.1f;
        g->sp.seed = -12345678901ll;
        g->sp.max_tokens = 100;
        g->sp.min_tokens = 2;
        g->sp.ignore_eos = true;
        g->sp.logprobs = 5;
        g->sp.prompt_logprobs = -1;
        g->sp.num_stop_token_ids = 2;
        g->sp.stop_token_ids[0] = 13;
        g->sp.stop_token_ids[1] = 14;
        g->sp.num_logit_bias = 2;
        g->sp.logit_bias[0] = (vesta_logit_bias){17, -100.0f};
        g->sp.logit_bias[1] = (vesta_logit_bias){18, 2.5f};
        break;
    }
    case VESTA_MSG_ABORT:
        strcpy(m->u.abort.request_id, "cmpl-abc-0");
        break;
    case VESTA_MSG_TOKENS: {
        vesta_msg_tokens *t2 = &m->u.tokens;
        strcpy(t2->request_id, "cmpl-abc-0");
        t2->seq_index = 2;
        t2->num_new = 3;
        t2->new_token_ids = toks;
        for (int i = 0; i < 3; i++) {
            lps[i].token = toks[i];
            lps[i].logprob = -0.5f * (float)i;
            lps[i].num_top = i + 1;
            for (int j = 0; j <= i; j++) {
                lps[i].top_ids[j] = 100 + j;
                lps[i].top_logprobs[j] = j == 2 ? -INFINITY : -(float)j;
            }
        }
        t2->logprobs = lps;
        strcpy(t2->finish, "stop");
        t2->stop_token = 2;
        t2->num_prompt_tokens = 10;
        t2->num_output_tokens = 3;
        t2->num_cached_tokens = 8;
        break;
    }
    case VESTA_MSG_KV_EVENTS:
        m->u.kv_events.seq = 9;
        m->u.kv_events.all_cleared = true;
        m->u.kv_events.stored = stored;
        m->u.kv_events.num_stored = 4;
        m->u.kv_events.evicted = evicted;
        m->u.kv_events.num_evicted = 1;
        break;
    case VESTA_MSG_ERROR:
        strcpy(m->u.error.request_id, "r1");
        m->u.error.code = VESTA_ERR_LIMIT;
        strcpy(m->u.error.message, "draining");
        break;
    case VESTA_MSG_GOODBYE:
        strcpy(m->u.goodbye.reason, "sigterm");
        break;
    default:
        break;
    }
}

static vesta_status encode(const vesta_msg *m, msgpack_sbuffer *sb)
{
    vesta_error err;
    msgpack_sbuffer_init(sb);
    vesta_status st = vesta_msg_encode(m, sb, &err);
    if (st)
        fprintf(stderr, "encode: %s\n", err.msg);
    return st;
}

/* Field-by-field checks of the decoded copy against the original. */
static void compare(const vesta_msg *a, const vesta_msg *b)
{
    CHECK(a->type == b->type);
    switch (a->type) {
    case VESTA_MSG_REGISTER:
        CHECK(strcmp(a->u.reg.worker_id, b->u.reg.worker_id) == 0);
        CHECK(strcmp(a->u.reg.model, b->u.reg.model) == 0);
        CHECK(b->u.reg.num_served_names == 2);
        CHECK(strcmp(b->u.reg.served_names[1], "smol-alias") == 0);
        CHECK(strcmp(b->u.reg.backend, "sim") == 0);
        CHECK(b->u.reg.max_model_len == 8192 && b->u.reg.block_size == 16);
        CHECK(b->u.reg.num_kv_blocks == 1234 && b->u.reg.max_num_seqs == 64);
        CHECK(b->u.reg.vocab_size == 49152);
        CHECK(b->u.reg.num_eos == 2 && b->u.reg.eos_ids[1] == 2);
        CHECK(b->u.reg.enable_prefix_caching);
        CHECK(b->u.reg.prefix_cache_salt == 0xfeedfacecafebeefull);
        CHECK(b->u.reg.tp_rank == 1 && b->u.reg.tp_size == 2);
        CHECK(b->u.reg.instance == UINT64_MAX - 3);
        break;
    case VESTA_MSG_REGISTERED:
        CHECK(b->u.registered.router_instance == 77 && b->u.registered.heartbeat_ms == 250);
        break;
    case VESTA_MSG_HEARTBEAT:
        CHECK(memcmp(&a->u.heartbeat, &b->u.heartbeat, offsetof(vesta_msg_heartbeat, draining)) == 0);
        CHECK(b->u.heartbeat.draining);
        CHECK(b->u.heartbeat.busy_ms == 4000000000ll);
        break;
    case VESTA_MSG_GENERATE: {
        const vesta_msg_generate *x = &a->u.generate, *y = &b->u.generate;
        CHECK(strcmp(x->request_id, y->request_id) == 0);
        CHECK(y->num_prompt == 1000 && memcmp(x->prompt_ids, y->prompt_ids, 4000) == 0);
        CHECK(memcmp(&x->sp, &y->sp, sizeof x->sp) == 0); /* every sampling field, bit-exact */
        CHECK(y->lora_id == 0 && y->lora_name[0] == '\0');
        break;
    }
    case VESTA_MSG_ABORT:
        CHECK(strcmp(b->u.abort.request_id, "cmpl-abc-0") == 0);
        break;
    case VESTA_MSG_TOKENS: {
        const vesta_msg_tokens *y = &b->u.tokens;
        CHECK(y->seq_index == 2 && y->num_new == 3);
        CHECK(memcmp(y->new_token_ids, toks, sizeof toks) == 0);
        CHECK(y->logprobs != NULL);
        if (y->logprobs)
            for (int i = 0; i < 3; i++) {
                CHECK(y->logprobs[i].token == toks[i]);
                CHECK(y->logprobs[i].logprob == lps[i].logprob);
                CHECK(y->logprobs[i].num_top == i + 1);
                for (int j = 0; j <= i; j++) {
                    CHECK(y->logprobs[i].top_ids[j] == lps[i].top_ids[j]);
                    CHECK(y->logprobs[i].top_logprobs[j] == lps[i].top_logprobs[j]);
                }
            }
        CHECK(strcmp(y->finish, "stop") == 0 && y->stop_token == 2);
        CHECK(y->num_prompt_tokens == 10 && y->num_output_tokens == 3 && y->num_cached_tokens == 8);
        break;
    }
    case VESTA_MSG_KV_EVENTS:
        CHECK(b->u.kv_events.seq == 9 && b->u.kv_events.all_cleared);
        CHECK(b->u.kv_events.num_stored == 4 && memcmp(b->u.kv_events.stored, stored, 32) == 0);
        CHECK(b->u.kv_events.num_evicted == 1 && b->u.kv_events.evicted[0] == 99);
        break;
    case VESTA_MSG_ERROR:
        CHECK(strcmp(b->u.error.request_id, "r1") == 0 && b->u.error.code == VESTA_ERR_LIMIT);
        CHECK(strcmp(b->u.error.message, "draining") == 0);
        break;
    case VESTA_MSG_GOODBYE:
        CHECK(strcmp(b->u.goodbye.reason, "sigterm") == 0);
        break;
    default:
        break;
    }
}

static void test_round_trip_and_damage(vesta_msg_type t)
{
    vesta_msg m, d;
    vesta_error err;
    msgpack_sbuffer sb, sb2;
    make(&m, t);
    CHECK(encode(&m, &sb) == VESTA_OK);
    CHECK(vesta_msg_decode(sb.data, sb.size, &d, &err) == VESTA_OK);
    compare(&m, &d);
    /* Re-encoding the decoded message gives the same bytes. */
    CHECK(encode(&d, &sb2) == VESTA_OK);
    CHECK(sb2.size == sb.size && memcmp(sb.data, sb2.data, sb.size) == 0);
    msgpack_sbuffer_destroy(&sb2);
    vesta_msg_clear(&d);
    CHECK(d.type == VESTA_MSG_NONE);

    /* Every strict prefix is rejected as malformed. */
    for (size_t n = 0; n < sb.size; n++) {
        vesta_status st = vesta_msg_decode(sb.data, n, &d, &err);
        CHECK(st == VESTA_ERR_FORMAT);
        CHECK(d.type == VESTA_MSG_NONE);
    }
    /* Trailing garbage is rejected. */
    char *longer = malloc(sb.size + 1);
    memcpy(longer, sb.data, sb.size);
    longer[sb.size] = 0;
    CHECK(vesta_msg_decode(longer, sb.size + 1, &d, &err) == VESTA_ERR_FORMAT);
    /* Garbled bytes: decode either fails or yields a message that encodes again. */
    static const unsigned char subst[] = {0x00, 0xff, 0xc1, 0xdd, 0xdf, 0xcb, 0x80, 0x7f};
    for (size_t i = 0; i < sb.size; i++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(longer, sb.data, sb.size);
            longer[i] = (char)subst[k];
            if (vesta_msg_decode(longer, sb.size, &d, &err) == VESTA_OK) {
                CHECK(encode(&d, &sb2) == VESTA_OK);
                msgpack_sbuffer_destroy(&sb2);
                vesta_msg_clear(&d);
            } else {
                CHECK(err.msg[0] != '\0');
            }
        }
    }
    free(longer);
    msgpack_sbuffer_destroy(&sb);
}

/* Hand-built frames, written with msgpack-c directly (not with vesta_msg_encode). */
typedef struct frame {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} frame;

static void frame_begin(frame *f, size_t entries, int version, const char *type)
{
    msgpack_sbuffer_init(&f->sb);
    msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&f->pk, entries);
    msgpack_pack_str_with_body(&f->pk, "v", 1);
    msgpack_pack_int(&f->pk, version);
    msgpack_pack_str_with_body(&f->pk, "type", 4);
    msgpack_pack_str_with_body(&f->pk, type, strlen(type));
}

static void key(frame *f, const char *k) { msgpack_pack_str_with_body(&f->pk, k, strlen(k)); }

static vesta_status frame_decode(frame *f, vesta_msg *m, vesta_error *err)
{
    vesta_status st = vesta_msg_decode(f->sb.data, f->sb.size, m, err);
    msgpack_sbuffer_destroy(&f->sb);
    return st;
}

static void test_handmade(void)
{
    frame f;
    vesta_msg m;
    vesta_error err;

    /* A minimal generate as another implementation would write it: floats as float64, ints
     * for floats, unknown keys, absent optional fields. */
    frame_begin(&f, 6, 1, "generate");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "r", 1);
    key(&f, "prompt_ids"); msgpack_pack_array(&f.pk, 2); msgpack_pack_int(&f.pk, 1); msgpack_pack_int(&f.pk, 2);
    key(&f, "sampling"); msgpack_pack_map(&f.pk, 2);
    key(&f, "temperature"); msgpack_pack_double(&f.pk, 0.25);
    key(&f, "top_p"); msgpack_pack_int(&f.pk, 1);
    key(&f, "future_field"); msgpack_pack_nil(&f.pk);
    CHECK(frame_decode(&f, &m, &err) == VESTA_OK);
    CHECK(m.type == VESTA_MSG_GENERATE && m.u.generate.num_prompt == 2);
    CHECK(m.u.generate.sp.temperature == 0.25f && m.u.generate.sp.top_p == 1.0f);
    CHECK(m.u.generate.sp.max_tokens == 16 && m.u.generate.sp.n == 1); /* vLLM defaults */
    vesta_msg_clear(&m);

    /* A heartbeat from a worker that predates busy_ms (optional): decodes with busy_ms 0; a
     * negative busy_ms is out of range. */
    for (int c = 0; c < 3; c++) {
        static const char *const names[] = {"num_running", "num_waiting", "num_blocks_total",
            "num_blocks_free", "prefix_cache_queries", "prefix_cache_hits", "num_preemptions",
            "prompt_tokens_total", "generation_tokens_total", "steps", "kv_events_seq"};
        int n = (int)(sizeof names / sizeof *names);
        frame_begin(&f, 2 + n + 2 + (c > 0), 1, "heartbeat");
        for (int i = 0; i < n; i++) {
            key(&f, names[i]);
            msgpack_pack_int(&f.pk, 7);
        }
        key(&f, "kv_usage"); msgpack_pack_double(&f.pk, 0.5);
        key(&f, "draining"); msgpack_pack_false(&f.pk);
        if (c == 1) {
            key(&f, "busy_ms"); msgpack_pack_int64(&f.pk, -1);
        } else if (c == 2) {
            key(&f, "busy_ms"); msgpack_pack_nil(&f.pk);
        }
        vesta_msg_init(&m, VESTA_MSG_HEARTBEAT);
        vesta_status st = frame_decode(&f, &m, &err);
        if (c == 1) {
            CHECK(st == VESTA_ERR_FORMAT && strstr(err.msg, "busy_ms") != NULL);
        } else {
            if (st)
                fprintf(stderr, "heartbeat case %d: %s\n", c, err.msg);
            CHECK(st == VESTA_OK && m.u.heartbeat.busy_ms == 0 && m.u.heartbeat.steps == 7);
            vesta_msg_clear(&m);
        }
    }
    vesta_msg_init(&m, VESTA_MSG_HEARTBEAT);
    m.u.heartbeat.busy_ms = -5;
    msgpack_sbuffer sbh;
    msgpack_sbuffer_init(&sbh);
    CHECK(vesta_msg_encode(&m, &sbh, &err) == VESTA_ERR_INVALID_ARG && strstr(err.msg, "busy_ms"));
    msgpack_sbuffer_destroy(&sbh);

    /* Other protocol version. */
    frame_begin(&f, 3, 2, "abort");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "r", 1);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_UNSUPPORTED);

    /* Unknown type. */
    frame_begin(&f, 3, 1, "explode");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "r", 1);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(strstr(err.msg, "explode") != NULL);

    /* Missing required key names it. */
    frame_begin(&f, 3, 1, "abort");
    key(&f, "nope"); msgpack_pack_int(&f.pk, 1);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(strstr(err.msg, "abort.request_id") != NULL);

    /* Duplicate key. */
    frame_begin(&f, 4, 1, "abort");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "a", 1);
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "b", 1);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(strstr(err.msg, "duplicate") != NULL);

    /* Wrong type for a field. */
    frame_begin(&f, 3, 1, "abort");
    key(&f, "request_id"); msgpack_pack_int(&f.pk, 5);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(strstr(err.msg, "request_id") != NULL);

    /* Request id over the limit. */
    char big[VESTA_PROTO_MAX_ID + 2];
    memset(big, 'x', sizeof big);
    frame_begin(&f, 3, 1, "abort");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, big, sizeof big);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);

    /* NaN temperature, negative token id, too many stop ids, n over the cap. */
    const char *bad_sampling[] = {"nan", "neg", "stops", "n"};
    for (int c = 0; c < 4; c++) {
        frame_begin(&f, 5, 1, "generate");
        key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "r", 1);
        key(&f, "prompt_ids"); msgpack_pack_array(&f.pk, 1); msgpack_pack_int(&f.pk, c == 1 ? -1 : 1);
        key(&f, "sampling"); msgpack_pack_map(&f.pk, 1);
        if (c == 2) {
            key(&f, "stop_token_ids");
            msgpack_pack_array(&f.pk, VESTA_MAX_STOP_TOKEN_IDS + 1);
            for (int i = 0; i <= VESTA_MAX_STOP_TOKEN_IDS; i++)
                msgpack_pack_int(&f.pk, i);
        } else if (c == 3) {
            key(&f, "n"); msgpack_pack_int(&f.pk, VESTA_PROTO_MAX_N + 1);
        } else {
            key(&f, "temperature"); msgpack_pack_double(&f.pk, NAN);
        }
        CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);
        if (failures)
            fprintf(stderr, "case %s: %s\n", bad_sampling[c], err.msg);
    }

    /* Empty prompt. */
    frame_begin(&f, 4, 1, "generate");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "r", 1);
    key(&f, "prompt_ids"); msgpack_pack_array(&f.pk, 0);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT);

    /* logprobs count differing from token_ids. */
    frame_begin(&f, 10, 1, "tokens");
    key(&f, "request_id"); msgpack_pack_str_with_body(&f.pk, "r", 1);
    key(&f, "seq_index"); msgpack_pack_int(&f.pk, 0);
    key(&f, "token_ids"); msgpack_pack_array(&f.pk, 1); msgpack_pack_int(&f.pk, 3);
    key(&f, "logprobs"); msgpack_pack_array(&f.pk, 0);
    key(&f, "finish"); msgpack_pack_nil(&f.pk);
    key(&f, "stop_token"); msgpack_pack_int(&f.pk, -1);
    key(&f, "num_prompt_tokens"); msgpack_pack_int(&f.pk, 1);
    key(&f, "num_output_tokens"); msgpack_pack_int(&f.pk, 1);
    CHECK(frame_decode(&f, &m, &err) == VESTA_ERR_FORMAT); /* also num_cached_tokens missing */

    /* Not a map at all; an array header claiming 2^32-1 elements; a map claiming 2^32-1 pairs;
     * deep nesting. None may allocate in proportion to the claim. */
    const unsigned char arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    const unsigned char map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02};
    const unsigned char str32[] = {0xdb, 0xff, 0xff, 0xff, 0xf0, 'a'};
    const unsigned char nint[] = {0x05};
    CHECK(vesta_msg_decode((const char *)arr32, sizeof arr32, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(vesta_msg_decode((const char *)map32, sizeof map32, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(vesta_msg_decode((const char *)str32, sizeof str32, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(vesta_msg_decode((const char *)nint, sizeof nint, &m, &err) == VESTA_ERR_FORMAT);
    CHECK(vesta_msg_decode(NULL, 0, &m, &err) == VESTA_ERR_FORMAT);
    char deep[200];
    memset(deep, 0x91, sizeof deep); /* [[[[...]]]] */
    deep[sizeof deep - 1] = 0x01;
    CHECK(vesta_msg_decode(deep, sizeof deep, &m, &err) == VESTA_ERR_FORMAT);
}

static void test_encode_limits(void)
{
    vesta_msg m;
    vesta_error err;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);

    make(&m, VESTA_MSG_TOKENS);
    m.u.tokens.num_new = VESTA_PROTO_MAX_TOKENS_PER_MSG + 1;
    CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(sb.size == 0);

    make(&m, VESTA_MSG_TOKENS);
    strcpy(m.u.tokens.finish, "bogus");
    CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(sb.size == 0);

    make(&m, VESTA_MSG_REGISTER);
    m.u.reg.tp_rank = 2;
    CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_ERR_INVALID_ARG);

    make(&m, VESTA_MSG_REGISTER);
    memset(m.u.reg.worker_id, 'a', sizeof m.u.reg.worker_id); /* no NUL */
    CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "worker_id") != NULL);

    make(&m, VESTA_MSG_GENERATE);
    m.u.generate.sp.temperature = NAN;
    CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "temperature") != NULL);

    vesta_msg_init(&m, VESTA_MSG_NONE);
    CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_ERR_INVALID_ARG);
    CHECK(sb.size == 0);

    /* Field-less messages. */
    vesta_msg_type bare[] = {VESTA_MSG_DRAIN, VESTA_MSG_SHUTDOWN, VESTA_MSG_REREGISTER};
    for (int i = 0; i < 3; i++) {
        vesta_msg d;
        vesta_msg_init(&m, bare[i]);
        sb.size = 0;
        CHECK(vesta_msg_encode(&m, &sb, &err) == VESTA_OK);
        CHECK(vesta_msg_decode(sb.data, sb.size, &d, &err) == VESTA_OK && d.type == bare[i]);
    }
    vesta_msg_clear(NULL);
    msgpack_sbuffer_destroy(&sb);
}

static void test_names(void)
{
    for (int t = VESTA_MSG_NONE + 1; t < VESTA_MSG_TYPE_COUNT; t++) {
        const char *n = vesta_msg_type_name((vesta_msg_type)t);
        CHECK(n != NULL);
        if (n)
            CHECK(vesta_msg_type_from_name(n, strlen(n)) == (vesta_msg_type)t);
    }
    CHECK(vesta_msg_type_name(VESTA_MSG_NONE) == NULL);
    CHECK(vesta_msg_type_from_name("x", 1) == VESTA_MSG_NONE);
}

/* Writes one valid frame per message type into dir (the fuzz seed corpus). */
static int write_corpus(const char *dir)
{
    for (int t = VESTA_MSG_NONE + 1; t < VESTA_MSG_TYPE_COUNT; t++) {
        vesta_msg m;
        msgpack_sbuffer sb;
        char path[4096];
        make(&m, (vesta_msg_type)t);
        if (encode(&m, &sb))
            return 1;
        snprintf(path, sizeof path, "%s/%s.msgpack", dir, vesta_msg_type_name((vesta_msg_type)t));
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(sb.data, 1, sb.size, f) != sb.size || fclose(f)) {
            perror(path);
            return 1;
        }
        msgpack_sbuffer_destroy(&sb);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    for (int t = VESTA_MSG_NONE + 1; t < VESTA_MSG_TYPE_COUNT; t++)
        test_round_trip_and_damage((vesta_msg_type)t);
    test_handmade();
    test_encode_limits();
    test_names();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("proto: all passed\n");
    return 0;
}
