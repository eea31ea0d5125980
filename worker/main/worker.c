/* The worker loop: an engine thread and an I/O thread joined by an inproc PAIR socket (thread
 * ownership: worker.h).
 *
 * PAIR frames, I/O -> engine: a vesta_msg pointer (sizeof(vesta_msg *) bytes; the receiver
 * clears and frees it). Engine -> I/O: a tag byte, then
 *   'F' an encoded protocol frame, forwarded as is;
 *   'K' u8 lost, u32 num_evicted, u32 num_stored, then the evicted and stored hashes (u64, host
 *       order): one KV_EVENTS message, numbered by the I/O thread ('lost' skips a seq first);
 *   'Q' goodbye reason: the engine is done; send the last HEARTBEAT and GOODBYE and exit. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "request_table.h"

#define KV_BATCH 4096
#define PAIR_ENDPOINT_FMT "inproc://vesta-worker-%p"
#define IDLE_WAKE_MS 500 /* the engine thread's longest sleep: it re-checks *stop */

/* What the engine thread publishes for heartbeats. */
typedef struct load_snapshot {
    pthread_mutex_t mu;
    vesta_engine_stats st;
    bool draining;
    int64_t busy_since_us; /* engine had work and last made progress then; 0 = idle */
} load_snapshot;

typedef struct shared {
    const vesta_config *cfg;
    const runner *limits; /* max_model_len etc.: read-only after creation */
    char id[VESTA_PROTO_MAX_ID + 1];
    uint64_t instance;
    load_snapshot load;
} shared;

/* The I/O thread's state. */
typedef struct io_side {
    shared *sh;
    void *dealer, *pair;
    bool registered, quit;
    int heartbeat_ms;
    int64_t next_register_us, next_heartbeat_us;
    uint64_t kv_seq;
    uint64_t dropped_sends;
    char bye_reason[VESTA_PROTO_MAX_TEXT + 1];
    msgpack_sbuffer sb;
    uint64_t *kv_stored, *kv_evicted;
} io_side;

/* The engine thread's state. */
typedef struct worker {
    shared *sh;
    runner *r;
    void *pair;
    bool draining, shutting_down;
    int64_t busy_since_us;
    request_table reqs; /* accepted, not yet finished: id -> sequences left */
    msgpack_sbuffer sb;
    vesta_kv_event *kv;
    unsigned char *kv_frame;
} worker;

int64_t worker_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One fputs per line, so the two threads' lines do not interleave. */
static void wlog(const shared *sh, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wlog(const shared *sh, const char *fmt, ...)
{
    char line[VESTA_PROTO_MAX_TEXT + 256];
    int n = snprintf(line, sizeof line, "vesta-worker[%s]: ", sh->id);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof line - 1)
        vsnprintf(line + n, sizeof line - 1 - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
}

/* ------------------------------------------------------------------ I/O thread */

/* Sends bytes to the router without blocking: a router that is away or slow loses the frame
 * (the protocol recovers: REGISTER is repeated, KV gaps are visible through seq). */
static void io_send_raw(io_side *io, const void *data, size_t len, const char *what)
{
    if (zmq_send(io->dealer, data, len, ZMQ_DONTWAIT) >= 0)
        return;
    if (io->dropped_sends++ % 1000 == 0)
        wlog(io->sh, "send %s failed (%s); %llu frames dropped so far", what, zmq_strerror(errno),
             (unsigned long long)io->dropped_sends);
}

static void io_send_msg(io_side *io, const vesta_msg *m)
{
    vesta_error err;
    io->sb.size = 0;
    if (vesta_msg_encode(m, &io->sb, &err)) {
        wlog(io->sh, "cannot encode %s: %s", vesta_msg_type_name(m->type), err.msg);
        return;
    }
    if (m->type == VESTA_MSG_REGISTER) {
        /* not connected yet: REGISTER is repeated every heartbeat interval */
        zmq_send(io->dealer, io->sb.data, io->sb.size, ZMQ_DONTWAIT);
        return;
    }
    io_send_raw(io, io->sb.data, io->sb.size, vesta_msg_type_name(m->type));
}

static void load_read(shared *sh, vesta_engine_stats *st, bool *draining, int64_t *busy_since)
{
    pthread_mutex_lock(&sh->load.mu);
    *st = sh->load.st;
    *draining = sh->load.draining;
    *busy_since = sh->load.busy_since_us;
    pthread_mutex_unlock(&sh->load.mu);
}

static void send_register(io_side *io)
{
    const vesta_config *c = io->sh->cfg;
    const runner *lim = io->sh->limits;
    vesta_engine_stats st;
    bool draining;
    int64_t busy_since;
    vesta_msg m;
    load_read(io->sh, &st, &draining, &busy_since);
    vesta_msg_init(&m, VESTA_MSG_REGISTER);
    vesta_msg_register *g = &m.u.reg;
    snprintf(g->worker_id, sizeof g->worker_id, "%s", io->sh->id);
    snprintf(g->model, sizeof g->model, "%s", c->model);
    for (int i = 0; i < c->served_model_name.count && i < VESTA_PROTO_MAX_SERVED_NAMES; i++)
        snprintf(g->served_names[g->num_served_names++], sizeof g->served_names[0], "%s",
                 c->served_model_name.items[i]);
    if (g->num_served_names == 0)
        snprintf(g->served_names[g->num_served_names++], sizeof g->served_names[0], "%s",
                 c->model[0] ? c->model : "sim");
    snprintf(g->backend, sizeof g->backend, "%s", c->backend);
    g->max_model_len = lim->max_model_len;
    g->block_size = lim->block_size;
    g->num_kv_blocks = st.num_blocks_total;
    g->max_num_seqs = lim->max_num_seqs;
    g->vocab_size = lim->vocab_size;
    g->num_eos = lim->num_eos;
    memcpy(g->eos_ids, lim->eos_ids, sizeof g->eos_ids);
    g->enable_prefix_caching = c->enable_prefix_caching;
    g->prefix_cache_salt = (uint64_t)c->prefix_cache_salt;
    g->tp_rank = 0;
    g->tp_size = c->tensor_parallel_size > 0 ? c->tensor_parallel_size : 1; /* this worker is rank 0 */
    g->instance = io->sh->instance;
    io_send_msg(io, &m);
    io->kv_seq = 0; /* the router starts an empty index for us */
    io->next_register_us = worker_now_us() + (int64_t)io->heartbeat_ms * 1000;
}

static void send_heartbeat(io_side *io)
{
    vesta_engine_stats st;
    bool draining;
    int64_t busy_since;
    vesta_msg m;
    load_read(io->sh, &st, &draining, &busy_since);
    int64_t now = worker_now_us();
    vesta_msg_init(&m, VESTA_MSG_HEARTBEAT);
    vesta_msg_heartbeat *h = &m.u.heartbeat;
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
    h->kv_events_seq = io->kv_seq;
    h->draining = draining;
    h->busy_ms = busy_since > 0 && now > busy_since ? (now - busy_since) / 1000 : 0;
    io_send_msg(io, &m);
    io->next_heartbeat_us = now + (int64_t)io->heartbeat_ms * 1000;
}

/* One 'K' frame from the engine thread -> one numbered KV_EVENTS (if registered: the router
 * resets its index on REGISTER anyway). */
static void io_kv_events(io_side *io, const unsigned char *p, size_t len)
{
    uint32_t ne, ns;
    if (len < 9)
        return;
    memcpy(&ne, p + 1, 4);
    memcpy(&ns, p + 5, 4);
    if (ne > VESTA_PROTO_MAX_HASHES || ns > VESTA_PROTO_MAX_HASHES ||
        len != 9 + ((size_t)ne + ns) * sizeof(uint64_t))
        return;
    if (p[0])
        io->kv_seq++; /* the engine lost events: the gap tells the router */
    if (!io->registered || ne + ns == 0)
        return;
    memcpy(io->kv_evicted, p + 9, (size_t)ne * sizeof(uint64_t));
    memcpy(io->kv_stored, p + 9 + (size_t)ne * sizeof(uint64_t), (size_t)ns * sizeof(uint64_t));
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_KV_EVENTS);
    m.u.kv_events.seq = ++io->kv_seq;
    m.u.kv_events.stored = io->kv_stored;
    m.u.kv_events.num_stored = (int)ns;
    m.u.kv_events.evicted = io->kv_evicted;
    m.u.kv_events.num_evicted = (int)ne;
    io_send_msg(io, &m);
}

/* Hands a decoded message to the engine thread (ownership moves with the pointer). */
static void io_pass_to_engine(io_side *io, vesta_msg *m)
{
    vesta_msg *p = malloc(sizeof *p);
    if (p == NULL) {
        wlog(io->sh, "out of memory: dropped a %s message", vesta_msg_type_name(m->type));
        vesta_msg_clear(m);
        return;
    }
    *p = *m;
    if (zmq_send(io->pair, &p, sizeof p, 0) != (int)sizeof p) {
        wlog(io->sh, "inproc send failed: %s", zmq_strerror(errno));
        vesta_msg_clear(p);
        free(p);
    }
}

static void io_router_frame(io_side *io, const char *data, size_t len)
{
    vesta_msg m;
    vesta_error err;
    if (vesta_msg_decode(data, len, &m, &err)) {
        wlog(io->sh, "dropped a bad frame (%zu bytes): %s", len, err.msg);
        return;
    }
    switch (m.type) {
    case VESTA_MSG_REGISTERED:
        if (!io->registered)
            wlog(io->sh, "registered");
        io->registered = true;
        if (m.u.registered.heartbeat_ms >= 10)
            io->heartbeat_ms = m.u.registered.heartbeat_ms;
        break;
    case VESTA_MSG_REREGISTER:
        wlog(io->sh, "router does not know us: registering again");
        io->registered = false;
        send_register(io);
        break;
    case VESTA_MSG_GENERATE:
        if (!io->registered) {
            /* The router routed this to our id before it saw our REGISTER, so it still takes
             * us for an earlier process under the same id. Refused as "full" it is re-routed
             * whole; run here, its tokens would be thrown away when our REGISTER lands. */
            vesta_msg e;
            vesta_msg_init(&e, VESTA_MSG_ERROR);
            snprintf(e.u.error.request_id, sizeof e.u.error.request_id, "%s",
                     m.u.generate.request_id);
            e.u.error.code = VESTA_ERR_LIMIT;
            snprintf(e.u.error.message, sizeof e.u.error.message, "worker not registered yet");
            io_send_msg(io, &e);
            break;
        }
        io_pass_to_engine(io, &m);
        return;
    case VESTA_MSG_ABORT:
    case VESTA_MSG_DRAIN:
    case VESTA_MSG_SHUTDOWN:
    case VESTA_MSG_ERROR:
        io_pass_to_engine(io, &m);
        return;
    default:
        wlog(io->sh, "dropped a '%s' message: not for workers", vesta_msg_type_name(m.type));
        break;
    }
    vesta_msg_clear(&m);
}

/* Reads every frame waiting on the DEALER socket. */
static void io_drain_router(io_side *io)
{
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, io->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        if (zmq_msg_more(&msg)) {
            /* One message = one frame: drop the rest of a multipart message. */
            wlog(io->sh, "dropped a multipart message");
            while (zmq_msg_more(&msg)) {
                zmq_msg_close(&msg);
                zmq_msg_init(&msg);
                if (zmq_msg_recv(&msg, io->dealer, 0) < 0)
                    break;
            }
        } else {
            io_router_frame(io, zmq_msg_data(&msg), zmq_msg_size(&msg));
        }
        zmq_msg_close(&msg);
    }
}

/* Reads every frame the engine thread has queued. */
static void io_drain_engine(io_side *io)
{
    while (!io->quit) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, io->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        const unsigned char *p = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (len >= 1 && p[0] == 'F') {
            io_send_raw(io, p + 1, len - 1, "frame");
        } else if (len >= 1 && p[0] == 'K') {
            io_kv_events(io, p + 1, len - 1);
        } else if (len >= 1 && p[0] == 'Q') {
            size_t n = len - 1 < sizeof io->bye_reason - 1 ? len - 1 : sizeof io->bye_reason - 1;
            memcpy(io->bye_reason, p + 1, n);
            io->bye_reason[n] = '\0';
            io->quit = true;
        }
        zmq_msg_close(&msg);
    }
}

static void *io_main(void *arg)
{
    io_side *io = arg;
    send_register(io);
    io->next_heartbeat_us = worker_now_us() + (int64_t)io->heartbeat_ms * 1000;
    while (!io->quit) {
        int64_t now = worker_now_us();
        if (!io->registered && now >= io->next_register_us)
            send_register(io);
        if (io->registered && now >= io->next_heartbeat_us)
            send_heartbeat(io);
        int64_t due = io->registered ? io->next_heartbeat_us : io->next_register_us;
        int64_t wait_us = due - worker_now_us();
        if (wait_us < 0)
            wait_us = 0;
        zmq_pollitem_t items[2] = {{io->dealer, 0, ZMQ_POLLIN, 0}, {io->pair, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, (long)((wait_us + 999) / 1000)) < 0) {
            if (errno != EINTR) {
                wlog(io->sh, "zmq_poll: %s", zmq_strerror(errno));
                usleep(10000);
            }
            continue;
        }
        if (items[0].revents & ZMQ_POLLIN)
            io_drain_router(io);
        if (items[1].revents & ZMQ_POLLIN)
            io_drain_engine(io);
    }
    vesta_msg bye;
    vesta_msg_init(&bye, VESTA_MSG_GOODBYE);
    snprintf(bye.u.goodbye.reason, sizeof bye.u.goodbye.reason, "%s", io->bye_reason);
    if (io->registered)
        send_heartbeat(io);
    io_send_msg(io, &bye);
    wlog(io->sh, "exiting (%s)", bye.u.goodbye.reason);
    zmq_close(io->dealer); /* lingers up to 2 s (until zmq_ctx_term) so GOODBYE gets out */
    io->dealer = NULL;
    /* io->pair stays open: the engine thread takes it over after the join, once it has freed
     * the messages still in the pipe (closing it here could drop them unfreed). */
    return NULL;
}

/* ------------------------------------------------------------------ engine thread */

/* Queues an encoded frame for the router. Blocks only if the inproc pipe is full (it is not
 * bounded: SNDHWM 0). */
static void send_msg(worker *w, const vesta_msg *m)
{
    vesta_error err;
    w->sb.size = 0;
    msgpack_sbuffer_write(&w->sb, "F", 1);
    if (vesta_msg_encode(m, &w->sb, &err)) {
        wlog(w->sh, "cannot encode %s: %s", vesta_msg_type_name(m->type), err.msg);
        return;
    }
    if (zmq_send(w->pair, w->sb.data, w->sb.size, 0) < 0)
        wlog(w->sh, "inproc send failed: %s", zmq_strerror(errno));
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

static void send_kv_batch(worker *w, bool *lost, uint32_t ne, uint32_t ns, const uint64_t *evicted,
                          const uint64_t *stored)
{
    if (ne + ns == 0 && !*lost)
        return;
    unsigned char *f = w->kv_frame;
    f[0] = 'K';
    f[1] = *lost;
    memcpy(f + 2, &ne, 4);
    memcpy(f + 6, &ns, 4);
    memcpy(f + 10, evicted, ne * sizeof(uint64_t));
    memcpy(f + 10 + ne * sizeof(uint64_t), stored, ns * sizeof(uint64_t));
    if (zmq_send(w->pair, f, 10 + ((size_t)ne + ns) * sizeof(uint64_t), 0) < 0)
        wlog(w->sh, "inproc send failed: %s", zmq_strerror(errno));
    *lost = false;
}

/* Forwards the runner's prefix-cache events. One message applies evictions before stores, so a
 * removal that follows a store starts a new message (order is kept). Events the runner had to
 * drop are flagged: the I/O thread skips a seq number so the router sees the gap. */
static void flush_kv_events(worker *w)
{
    uint64_t dropped = 0;
    int n;
    uint64_t evicted[KV_BATCH], stored[KV_BATCH];
    while ((n = w->r->ops->drain_kv(w->r, w->kv, KV_BATCH, &dropped)) > 0 || dropped) {
        bool lost = dropped != 0;
        dropped = 0;
        uint32_t ns = 0, ne = 0;
        for (int i = 0; i < n; i++) {
            if (w->kv[i].type == VESTA_KV_EVENT_REMOVED) {
                if (ns > 0) {
                    send_kv_batch(w, &lost, ne, ns, evicted, stored);
                    ns = ne = 0;
                }
                evicted[ne++] = w->kv[i].block_hash;
            } else {
                stored[ns++] = w->kv[i].block_hash;
            }
        }
        send_kv_batch(w, &lost, ne, ns, evicted, stored);
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
    /* The router numbers adapters as --lora-modules lists them, and so does the engine: an id
     * that differs means the two were started with different lists (their block keys differ). */
    const int lora_id = w->r->ops->lora_find(w->r, g->lora_name);
    if (lora_id < 0 || (g->lora_id != 0 && g->lora_id != lora_id)) {
        send_error(w, g->request_id, VESTA_ERR_NOT_FOUND,
                   lora_id < 0 ? "this worker has no LoRA adapter by that name"
                               : "LoRA adapter id differs between router and worker (different --lora-modules)");
        return;
    }
    if (request_table_find(&w->reqs, g->request_id)) {
        send_error(w, g->request_id, VESTA_ERR_INVALID_ARG, "duplicate request_id");
        return;
    }
    vesta_status st = w->r->ops->add(w->r, g->request_id, g->prompt_ids, g->num_prompt, &g->sp, lora_id, &err);
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

static void handle_msg(worker *w, vesta_msg *m)
{
    switch (m->type) {
    case VESTA_MSG_GENERATE:
        handle_generate(w, &m->u.generate);
        break;
    case VESTA_MSG_ABORT:
        w->r->ops->abort(w->r, m->u.abort.request_id); /* unknown ids: ignored */
        break;
    case VESTA_MSG_DRAIN:
        wlog(w->sh, "draining");
        w->draining = true;
        break;
    case VESTA_MSG_SHUTDOWN:
        wlog(w->sh, "shutting down");
        w->shutting_down = w->draining = true;
        abort_all(w);
        break;
    case VESTA_MSG_ERROR:
        wlog(w->sh, "router error (request '%s'): %s", m->u.error.request_id, m->u.error.message);
        break;
    default:
        break;
    }
}

/* An idle engine thread that starts on a message (an add can take a while) counts as busy
 * from now, so a hang there shows in busy_ms too. */
static void mark_busy(worker *w)
{
    if (w->busy_since_us != 0)
        return;
    w->busy_since_us = worker_now_us();
    pthread_mutex_lock(&w->sh->load.mu);
    w->sh->load.busy_since_us = w->busy_since_us;
    pthread_mutex_unlock(&w->sh->load.mu);
}

/* Handles every message the I/O thread has passed on. */
static void drain_pair(worker *w)
{
    vesta_msg *m;
    while (zmq_recv(w->pair, &m, sizeof m, ZMQ_DONTWAIT) == (int)sizeof m) {
        mark_busy(w);
        handle_msg(w, m);
        vesta_msg_clear(m);
        free(m);
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
        wlog(w->sh, "step failed: %s", err.msg);
    /* A tensor-parallel replica does not survive a failed step (a rank died, a collective timed
     * out): the failed requests are reported, the rest fail fast, and the worker leaves. */
    if (st && w->sh->cfg->tensor_parallel_size > 1 && !w->draining) {
        wlog(w->sh, "tensor-parallel replica failed: draining and leaving");
        w->draining = true;
    }
    publish_step(w, &out, st, err.msg);
    flush_kv_events(w);
}

/* Publishes load for the I/O thread's heartbeats. busy_since moves on every loop turn while
 * there is work, so the heartbeat's busy_ms is how long the engine has been inside one step
 * (or one add/abort); a pacing simulator is not "busy" while it sleeps. */
static void publish_load(worker *w, bool busy)
{
    vesta_engine_stats st;
    w->r->ops->stats(w->r, &st);
    w->busy_since_us = busy ? worker_now_us() : 0;
    pthread_mutex_lock(&w->sh->load.mu);
    w->sh->load.st = st;
    w->sh->load.draining = w->draining;
    w->sh->load.busy_since_us = w->busy_since_us;
    pthread_mutex_unlock(&w->sh->load.mu);
}

static void engine_loop(worker *w, volatile sig_atomic_t *stop)
{
    runner *r = w->r;
    for (;;) {
        if (*stop && !w->draining) {
            wlog(w->sh, "signal: draining");
            w->draining = true;
        }
        drain_pair(w);
        bool busy = r->ops->has_unfinished(r);
        publish_load(w, busy);
        if (w->draining && !busy)
            return;
        int64_t ready_in = busy ? r->ops->ready_in_us(r) : INT64_MAX;
        if (ready_in == 0) {
            run_step(w);
            continue;
        }
        /* Idle (or pacing): sleep until a message or the next step is due. */
        int64_t wait_us = (int64_t)IDLE_WAKE_MS * 1000;
        if (ready_in < wait_us)
            wait_us = ready_in;
        zmq_pollitem_t item = {w->pair, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, (long)((wait_us + 999) / 1000)) < 0 && errno != EINTR) {
            wlog(w->sh, "zmq_poll: %s", zmq_strerror(errno));
            return;
        }
    }
}

/* ------------------------------------------------------------------ setup */

static int setup_dealer(io_side *io, void *zctx)
{
    int linger = 2000, immediate = 1, hwm = 1000000, ivl = 100, ivl_max = 2000;
    int64_t maxsize = VESTA_PROTO_MAX_MSG_BYTES;
    io->dealer = zmq_socket(zctx, ZMQ_DEALER);
    if (!io->dealer)
        return -1;
    const char *id = io->sh->id;
    if (zmq_setsockopt(io->dealer, ZMQ_ROUTING_ID, id, strlen(id)) ||
        zmq_setsockopt(io->dealer, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_setsockopt(io->dealer, ZMQ_IMMEDIATE, &immediate, sizeof immediate) ||
        zmq_setsockopt(io->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(io->dealer, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(io->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl) ||
        zmq_setsockopt(io->dealer, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max) ||
        zmq_setsockopt(io->dealer, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize))
        return -1;
    if (zmq_connect(io->dealer, io->sh->cfg->router)) {
        wlog(io->sh, "cannot connect to %s: %s", io->sh->cfg->router, zmq_strerror(errno));
        return -1;
    }
    return 0;
}

/* The two ends of the inproc pipe; unbounded both ways so neither thread ever blocks on it. */
static void *pair_socket(void *zctx, const char *endpoint, bool bind)
{
    int zero = 0, linger = 0;
    void *s = zmq_socket(zctx, ZMQ_PAIR);
    if (!s)
        return NULL;
    if (zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof zero) ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof zero) ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) ||
        (bind ? zmq_bind(s, endpoint) : zmq_connect(s, endpoint))) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

static void make_id(shared *sh)
{
    if (sh->cfg->worker_id[0]) {
        snprintf(sh->id, sizeof sh->id, "%s", sh->cfg->worker_id);
        return;
    }
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(sh->id, sizeof sh->id, "%s-%d", host, (int)getpid());
}

/* Starts the I/O thread with SIGTERM/SIGINT blocked, so signals reach the engine thread. */
static int start_io_thread(pthread_t *t, io_side *io)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(t, NULL, io_main, io);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int vesta_worker_run(const vesta_config *cfg, runner *r, volatile sig_atomic_t *stop)
{
    shared sh = {.cfg = cfg, .limits = r};
    worker w = {.sh = &sh, .r = r};
    io_side io = {.sh = &sh, .heartbeat_ms = cfg->heartbeat_ms};
    void *zctx = NULL;
    pthread_t io_thread;
    bool io_started = false;
    int rc = 1;
    char endpoint[64];

    pthread_mutex_init(&sh.load.mu, NULL);
    msgpack_sbuffer_init(&w.sb);
    msgpack_sbuffer_init(&io.sb);
    make_id(&sh);
    sh.instance = (uint64_t)worker_now_us() ^ ((uint64_t)getpid() << 40);
    snprintf(endpoint, sizeof endpoint, PAIR_ENDPOINT_FMT, (void *)&sh);
    w.kv = malloc(KV_BATCH * sizeof *w.kv);
    w.kv_frame = malloc(10 + 2 * (size_t)KV_BATCH * sizeof(uint64_t));
    io.kv_stored = malloc(VESTA_PROTO_MAX_HASHES * sizeof *io.kv_stored);
    io.kv_evicted = malloc(VESTA_PROTO_MAX_HASHES * sizeof *io.kv_evicted);
    if (w.kv && w.kv_frame && io.kv_stored && io.kv_evicted && request_table_init(&w.reqs) == 0 &&
        (zctx = zmq_ctx_new()) != NULL && (w.pair = pair_socket(zctx, endpoint, true)) != NULL &&
        (io.pair = pair_socket(zctx, endpoint, false)) != NULL && setup_dealer(&io, zctx) == 0) {
        publish_load(&w, false); /* REGISTER reads num_blocks_total from it */
        io_started = start_io_thread(&io_thread, &io) == 0;
    }
    if (io_started) {
        wlog(&sh, "connected to %s (backend %s, max_model_len %d, block_size %d)", cfg->router,
             cfg->backend, r->max_model_len, r->block_size);
        engine_loop(&w, stop);
        const char *reason = w.shutting_down ? "shutdown" : "drained";
        char q[16];
        q[0] = 'Q';
        memcpy(q + 1, reason, strlen(reason));
        if (zmq_send(w.pair, q, 1 + strlen(reason), 0) < 0)
            wlog(&sh, "inproc send failed: %s", zmq_strerror(errno));
        pthread_join(io_thread, NULL);
        rc = 0;
    } else {
        wlog(&sh, "setup failed");
        if (io.dealer)
            zmq_close(io.dealer);
    }
    if (w.pair) {
        vesta_msg *m;
        while (zmq_recv(w.pair, &m, sizeof m, ZMQ_DONTWAIT) == (int)sizeof m) {
            vesta_msg_clear(m); /* passed on after we stopped: never handled */
            free(m);
        }
        zmq_close(w.pair);
    }
    if (io.pair)
        zmq_close(io.pair); /* the I/O thread has ended (joined): ours now */
    if (zctx)
        zmq_ctx_term(zctx);
    runner_destroy(r);
    request_table_free(&w.reqs);
    msgpack_sbuffer_destroy(&w.sb);
    msgpack_sbuffer_destroy(&io.sb);
    free(w.kv);
    free(w.kv_frame);
    free(io.kv_stored);
    free(io.kv_evicted);
    pthread_mutex_destroy(&sh.load.mu);
    return rc;
}
