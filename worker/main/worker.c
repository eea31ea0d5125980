#include "worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "request_table.h"

#define KV_BATCH 4096

typedef struct worker {
    const vesta_config *cfg;
    runner *r;
    void *zctx, *sock;
    char id[VESTA_PROTO_MAX_ID + 1];
    uint64_t instance;
    bool registered;
    int heartbeat_ms;
    int64_t next_register_us, next_heartbeat_us;
    uint64_t kv_seq;
    bool draining, shutting_down;
    request_table reqs; /* accepted, not yet finished: id -> sequences left */
    msgpack_sbuffer sb;
    vesta_kv_event *kv;
    uint64_t *kv_stored, *kv_evicted;
    uint64_t dropped_sends;
} worker;

int64_t worker_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void wlog(const worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wlog(const worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "vesta-worker[%s]: ", w->id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Encodes and sends m without blocking: a router that is away or slow loses the frame (the
 * protocol recovers: REGISTER is repeated, KV gaps are visible through seq). */
static void send_msg(worker *w, const vesta_msg *m)
{
    vesta_error err;
    w->sb.size = 0;
    if (vesta_msg_encode(m, &w->sb, &err)) {
        wlog(w, "cannot encode %s: %s", vesta_msg_type_name(m->type), err.msg);
        return;
    }
    if (zmq_send(w->sock, w->sb.data, w->sb.size, ZMQ_DONTWAIT) < 0) {
        if (m->type == VESTA_MSG_REGISTER)
            return; /* not connected yet: REGISTER is repeated every heartbeat interval */
        if (w->dropped_sends++ % 1000 == 0)
            wlog(w, "send %s failed (%s); %llu frames dropped so far", vesta_msg_type_name(m->type),
                 zmq_strerror(errno), (unsigned long long)w->dropped_sends);
    }
}

static void send_error(worker *w, const char *request_id, vesta_status code, const char *text)
{
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_ERROR);
    snprintf(m.u.error.request_id, sizeof m.u.error.request_id, "%s", request_id);
    m.u.error.code = code;
    snprintf(m.u.error.message, sizeof m.u.error.message, "%s", text);
    send_msg(w, &m);
}

static void send_register(worker *w)
{
    const vesta_config *c = w->cfg;
    vesta_engine_stats st;
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_REGISTER);
    vesta_msg_register *g = &m.u.reg;
    w->r->ops->stats(w->r, &st);
    snprintf(g->worker_id, sizeof g->worker_id, "%s", w->id);
    snprintf(g->model, sizeof g->model, "%s", c->model);
    for (int i = 0; i < c->served_model_name.count && i < VESTA_PROTO_MAX_SERVED_NAMES; i++)
        snprintf(g->served_names[g->num_served_names++], sizeof g->served_names[0], "%s",
                 c->served_model_name.items[i]);
    if (g->num_served_names == 0)
        snprintf(g->served_names[g->num_served_names++], sizeof g->served_names[0], "%s",
                 c->model[0] ? c->model : "sim");
    snprintf(g->backend, sizeof g->backend, "%s", c->backend);
    g->max_model_len = w->r->max_model_len;
    g->block_size = w->r->block_size;
    g->num_kv_blocks = st.num_blocks_total;
    g->max_num_seqs = w->r->max_num_seqs;
    g->vocab_size = w->r->vocab_size;
    g->num_eos = w->r->num_eos;
    memcpy(g->eos_ids, w->r->eos_ids, sizeof g->eos_ids);
    g->enable_prefix_caching = c->enable_prefix_caching;
    g->prefix_cache_salt = (uint64_t)c->prefix_cache_salt;
    g->tp_rank = 0;
    g->tp_size = 1;
    g->instance = w->instance;
    send_msg(w, &m);
    w->kv_seq = 0; /* the router starts an empty index for us */
    w->next_register_us = worker_now_us() + (int64_t)w->heartbeat_ms * 1000;
}

static void send_heartbeat(worker *w)
{
    vesta_engine_stats st;
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_HEARTBEAT);
    vesta_msg_heartbeat *h = &m.u.heartbeat;
    w->r->ops->stats(w->r, &st);
    h->num_running = st.num_running;
    h->num_waiting = st.num_waiting;
    h->num_blocks_total = st.num_blocks_total;
    h->num_blocks_free = st.num_blocks_free;
    h->kv_usage = st.kv_usage < 0 ? 0 : st.kv_usage > 1 ? 1 : st.kv_usage;
    h->prefix_cache_queries = st.prefix_cache_queries;
    h->prefix_cache_hits = st.prefix_cache_hits;
    h->num_preemptions = st.num_preemptions;
    h->prompt_tokens_total = st.prompt_tokens_total;
    h->generation_tokens_total = st.generation_tokens_total;
    h->steps = st.steps;
    h->kv_events_seq = w->kv_seq;
    h->draining = w->draining;
    send_msg(w, &m);
    w->next_heartbeat_us = worker_now_us() + (int64_t)w->heartbeat_ms * 1000;
}

static void send_kv_batch(worker *w, bool *have, int ns, int ne)
{
    vesta_msg m;
    if (!*have)
        return;
    vesta_msg_init(&m, VESTA_MSG_KV_EVENTS);
    m.u.kv_events.seq = ++w->kv_seq;
    m.u.kv_events.stored = w->kv_stored;
    m.u.kv_events.num_stored = ns;
    m.u.kv_events.evicted = w->kv_evicted;
    m.u.kv_events.num_evicted = ne;
    send_msg(w, &m);
    *have = false;
}

/* Forwards the runner's prefix-cache events. One message applies evictions before stores, so a
 * removal that follows a store starts a new message (order is kept). Events the runner had to
 * drop make us skip a seq number: the router sees the gap and stops trusting its index. */
static void flush_kv_events(worker *w)
{
    uint64_t dropped = 0;
    int n;
    while ((n = w->r->ops->drain_kv(w->r, w->kv, KV_BATCH, &dropped)) > 0 || dropped) {
        if (dropped)
            w->kv_seq++;
        dropped = 0;
        if (!w->registered)
            continue; /* the router resets its index on REGISTER anyway */
        int ns = 0, ne = 0;
        bool have = false;
        for (int i = 0; i < n; i++) {
            if (w->kv[i].type == VESTA_KV_EVENT_REMOVED) {
                if (ns > 0 || ne == VESTA_PROTO_MAX_HASHES) {
                    send_kv_batch(w, &have, ns, ne);
                    ns = ne = 0;
                }
                w->kv_evicted[ne++] = w->kv[i].block_hash;
            } else {
                if (ns == VESTA_PROTO_MAX_HASHES) {
                    send_kv_batch(w, &have, ns, ne);
                    ns = ne = 0;
                }
                w->kv_stored[ns++] = w->kv[i].block_hash;
            }
            have = true;
        }
        send_kv_batch(w, &have, ns, ne);
        if (n < KV_BATCH)
            break;
    }
}

static void handle_generate(worker *w, vesta_msg_generate *g)
{
    vesta_error err;
    if (w->draining || w->shutting_down) {
        send_error(w, g->request_id, VESTA_ERR_LIMIT, "worker is draining");
        return;
    }
    if (g->lora_id != 0 || g->lora_name[0]) {
        send_error(w, g->request_id, VESTA_ERR_UNSUPPORTED, "LoRA adapters are not supported");
        return;
    }
    if (request_table_find(&w->reqs, g->request_id)) {
        send_error(w, g->request_id, VESTA_ERR_INVALID_ARG, "duplicate request_id");
        return;
    }
    vesta_status st = w->r->ops->add(w->r, g->request_id, g->prompt_ids, g->num_prompt, &g->sp, &err);
    if (st) {
        send_error(w, g->request_id, st, err.msg);
        return;
    }
    if (request_table_put(&w->reqs, g->request_id, g->sp.n)) {
        w->r->ops->abort(w->r, g->request_id);
        send_error(w, g->request_id, VESTA_ERR_NOMEM, "out of memory");
    }
}

static void abort_all(worker *w)
{
    for (size_t i = 0; i < w->reqs.cap; i++)
        if (w->reqs.slots[i].id)
            w->r->ops->abort(w->r, w->reqs.slots[i].id);
}

static void handle_frame(worker *w, const char *data, size_t len)
{
    vesta_msg m;
    vesta_error err;
    if (vesta_msg_decode(data, len, &m, &err)) {
        wlog(w, "dropped a bad frame (%zu bytes): %s", len, err.msg);
        return;
    }
    switch (m.type) {
    case VESTA_MSG_REGISTERED:
        if (!w->registered)
            wlog(w, "registered");
        w->registered = true;
        if (m.u.registered.heartbeat_ms >= 10)
            w->heartbeat_ms = m.u.registered.heartbeat_ms;
        break;
    case VESTA_MSG_REREGISTER:
        wlog(w, "router does not know us: registering again");
        w->registered = false;
        send_register(w);
        break;
    case VESTA_MSG_GENERATE:
        handle_generate(w, &m.u.generate);
        break;
    case VESTA_MSG_ABORT:
        w->r->ops->abort(w->r, m.u.abort.request_id); /* unknown ids: ignored */
        break;
    case VESTA_MSG_DRAIN:
        wlog(w, "draining");
        w->draining = true;
        break;
    case VESTA_MSG_SHUTDOWN:
        wlog(w, "shutting down");
        w->shutting_down = w->draining = true;
        abort_all(w);
        break;
    case VESTA_MSG_ERROR:
        wlog(w, "router error (request '%s'): %s", m.u.error.request_id, m.u.error.message);
        break;
    default:
        wlog(w, "dropped a '%s' message: not for workers", vesta_msg_type_name(m.type));
        break;
    }
    vesta_msg_clear(&m);
}

/* Reads every frame waiting on the socket. */
static void drain_socket(worker *w)
{
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, w->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        bool multipart = zmq_msg_more(&msg);
        if (multipart) {
            /* One message = one frame: drop the rest of a multipart message. */
            wlog(w, "dropped a multipart message");
            while (zmq_msg_more(&msg)) {
                zmq_msg_close(&msg);
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, w->sock, 0) < 0)
                    break;
            }
        } else {
            handle_frame(w, zmq_msg_data(&msg), zmq_msg_size(&msg));
        }
        zmq_msg_close(&msg);
    }
}

/* Sends TOKENS for every sequence output of a step; a failed step's requests get ERROR. */
static void publish_step(worker *w, const vesta_step_output *out, vesta_status st, const char *why)
{
    for (int i = 0; i < out->count; i++) {
        const vesta_seq_output *o = &out->items[i];
        request_entry *e = request_table_find(&w->reqs, o->request_id);
        if (!e)
            continue; /* already failed with an ERROR */
        if (o->finish == VESTA_FINISH_ERROR) {
            send_error(w, o->request_id, st ? st : VESTA_ERR_BACKEND, why[0] ? why : "step failed");
            request_table_remove(&w->reqs, o->request_id);
            continue;
        }
        vesta_msg m;
        vesta_msg_init(&m, VESTA_MSG_TOKENS);
        vesta_msg_tokens *t = &m.u.tokens;
        snprintf(t->request_id, sizeof t->request_id, "%s", o->request_id);
        t->seq_index = o->seq_index;
        t->num_new = o->num_new;
        t->new_token_ids = (int32_t *)o->new_token_ids;
        t->logprobs = (vesta_sample_result *)o->new_logprobs;
        if (o->finish != VESTA_FINISH_NONE)
            snprintf(t->finish, sizeof t->finish, "%s", vesta_finish_reason_str(o->finish));
        t->stop_token = o->stop_token;
        t->num_prompt_tokens = o->num_prompt_tokens;
        t->num_output_tokens = o->num_output_tokens;
        t->num_cached_tokens = o->num_cached_tokens;
        send_msg(w, &m);
        if (o->finish != VESTA_FINISH_NONE && --e->remaining <= 0)
            request_table_remove(&w->reqs, o->request_id);
    }
}

static void run_step(worker *w)
{
    vesta_step_output out = {0};
    vesta_error err = {0};
    vesta_status st = w->r->ops->step(w->r, &out, &err);
    if (st)
        wlog(w, "step failed: %s", err.msg);
    publish_step(w, &out, st, err.msg);
    flush_kv_events(w);
}

static int setup_socket(worker *w)
{
    int linger = 2000, immediate = 1, hwm = 1000000, ivl = 100, ivl_max = 2000;
    int64_t maxsize = VESTA_PROTO_MAX_MSG_BYTES;
    w->zctx = zmq_ctx_new();
    w->sock = w->zctx ? zmq_socket(w->zctx, ZMQ_DEALER) : NULL;
    if (!w->sock)
        return -1;
    if (zmq_setsockopt(w->sock, ZMQ_ROUTING_ID, w->id, strlen(w->id)) ||
        zmq_setsockopt(w->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(w->sock, ZMQ_IMMEDIATE, &immediate, sizeof immediate) ||
        zmq_setsockopt(w->sock, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(w->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) ||
        zmq_setsockopt(w->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) ||
        zmq_setsockopt(w->sock, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize))
        return -1;
    if (zmq_connect(w->sock, w->cfg->router)) {
        wlog(w, "cannot connect to %s: %s", w->cfg->router, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static void make_id(worker *w)
{
    if (w->cfg->worker_id[0]) {
        snprintf(w->id, sizeof w->id, "%s", w->cfg->worker_id);
        return;
    }
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(w->id, sizeof w->id, "%s-%d", host, (int)getpid());
}

static void worker_close(worker *w)
{
    if (w->sock)
        zmq_close(w->sock); /* lingers up to 2 s so GOODBYE gets out */
    if (w->zctx)
        zmq_ctx_term(w->zctx);
    runner_destroy(w->r);
    request_table_free(&w->reqs);
    msgpack_sbuffer_destroy(&w->sb);
    free(w->kv);
    free(w->kv_stored);
    free(w->kv_evicted);
}

int vesta_worker_run(const vesta_config *cfg, runner *r, volatile sig_atomic_t *stop)
{
    worker w = {.cfg = cfg, .r = r, .heartbeat_ms = cfg->heartbeat_ms};
    msgpack_sbuffer_init(&w.sb);
    make_id(&w);
    w.instance = (uint64_t)worker_now_us() ^ ((uint64_t)getpid() << 40);
    w.kv = malloc(KV_BATCH * sizeof *w.kv);
    w.kv_stored = malloc(VESTA_PROTO_MAX_HASHES * sizeof *w.kv_stored);
    w.kv_evicted = malloc(VESTA_PROTO_MAX_HASHES * sizeof *w.kv_evicted);
    if (!w.kv || !w.kv_stored || !w.kv_evicted || request_table_init(&w.reqs) || setup_socket(&w)) {
        wlog(&w, "setup failed");
        worker_close(&w);
        return 1;
    }
    wlog(&w, "connected to %s (backend %s, max_model_len %d, block_size %d)", cfg->router,
         cfg->backend, r->max_model_len, r->block_size);
    send_register(&w);
    w.next_heartbeat_us = worker_now_us() + (int64_t)w.heartbeat_ms * 1000;
    for (;;) {
        if (*stop && !w.draining) {
            wlog(&w, "signal: draining");
            w.draining = true;
        }
        drain_socket(&w);
        int64_t now = worker_now_us();
        if (!w.registered && now >= w.next_register_us)
            send_register(&w);
        if (w.registered && now >= w.next_heartbeat_us)
            send_heartbeat(&w);
        bool busy = r->ops->has_unfinished(r);
        if (w.draining && !busy)
            break;
        int64_t ready_in = busy ? r->ops->ready_in_us(r) : INT64_MAX;
        if (ready_in == 0) {
            run_step(&w);
            continue;
        }
        /* Idle (or pacing): sleep until a frame, a heartbeat or the next step is due. */
        int64_t due = w.registered ? w.next_heartbeat_us : w.next_register_us;
        int64_t wait_us = due - now;
        if (ready_in < wait_us)
            wait_us = ready_in;
        if (wait_us < 0)
            wait_us = 0;
        zmq_pollitem_t item = {w.sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)((wait_us + 999) / 1000)) < 0 && errno != EINTR) {
            wlog(&w, "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
    }
    vesta_msg bye;
    vesta_msg_init(&bye, VESTA_MSG_GOODBYE);
    snprintf(bye.u.goodbye.reason, sizeof bye.u.goodbye.reason, "%s",
             w.shutting_down ? "shutdown" : "drained");
    if (w.registered)
        send_heartbeat(&w);
    send_msg(&w, &bye);
    wlog(&w, "exiting (%s)", bye.u.goodbye.reason);
    worker_close(&w);
    return 0;
}
