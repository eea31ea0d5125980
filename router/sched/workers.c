/* The router's side of the worker protocol (proto/README.md): registration, heartbeats, KV
 * events, token streams, errors and timeouts. Runs on the event-loop thread. */
#include "router.h"

#include <stdio.h>
#include <string.h>

static void send_simple(vr_router *r, const char *identity, vesta_msg_type type)
{
    vesta_msg m;
    vesta_msg_init(&m, type);
    vr_link_send_msg(r->link, identity, &m, NULL);
}

static void worker_down(vr_router *r, vr_worker *w, const char *why, vr_worker_state to)
{
    if (w->state == VR_WORKER_DEAD || w->state == VR_WORKER_LEFT)
        return;
    fprintf(stderr, "vesta-router: worker %s is down (%s); %d request(s) in flight there fail\n",
            w->id, why, w->inflight_reqs);
    w->state = to;
    w->deaths += to == VR_WORKER_DEAD;
    char msg[VESTA_PROTO_MAX_TEXT + 32];
    if (strcmp(why, "heartbeat timeout") == 0)
        snprintf(msg, sizeof msg, "stopped responding");
    else if (strcmp(why, "engine stalled") == 0)
        snprintf(msg, sizeof msg, "stopped making progress (engine stalled on one step)");
    else
        snprintf(msg, sizeof msg, "went away (%s)", why);
    vr_call_fail_worker(r, w, msg);
    vr_sched_forget(&r->sched, w);
    memset(&w->hb, 0, sizeof w->hb);
}

static bool engine_stalled(const vr_router *r, const vesta_msg_heartbeat *hb)
{
    return r->opt.engine_stall_timeout_ms > 0 && hb->busy_ms > r->opt.engine_stall_timeout_ms;
}

static void on_register(vr_router *r, const char *identity, const vesta_msg_register *reg)
{
    if (strcmp(reg->worker_id, identity) != 0) {
        fprintf(stderr, "vesta-router: REGISTER from %s names worker %s: dropped\n", identity,
                reg->worker_id);
        r->bad_messages++;
        return;
    }
    if (reg->block_size <= 0 || reg->max_model_len <= 0 || reg->vocab_size <= 0) {
        fprintf(stderr, "vesta-router: REGISTER from %s has a non-positive block_size, "
                        "max_model_len or vocab_size: dropped\n", identity);
        r->bad_messages++;
        return;
    }
    vr_worker *w = vr_registry_get_or_add(&r->sched.reg, identity);
    if (w == NULL) {
        fprintf(stderr, "vesta-router: too many workers; %s refused\n", identity);
        return;
    }
    bool up = w->state == VR_WORKER_LIVE || w->state == VR_WORKER_DRAINING;
    if (up && w->reg.instance != reg->instance)
        worker_down(r, w, "restarted", VR_WORKER_DEAD); /* a new process under an old name */
    else if (up)
        vr_sched_forget(&r->sched, w); /* same process re-registering: sequence restarts */
    if (r->tok != NULL && (size_t)reg->vocab_size < vesta_tokenizer_vocab_size(r->tok))
        fprintf(stderr, "vesta-router: worker %s has vocab_size %d < the tokenizer's %zu\n",
                identity, reg->vocab_size, vesta_tokenizer_vocab_size(r->tok));
    w->reg = *reg;
    w->state = VR_WORKER_LIVE;
    w->drain_requested = false;
    w->registered_ms = w->last_seen_ms = vr_now_ms();
    w->kv_seq = 0;
    w->kv_synced = false;
    memset(&w->hb, 0, sizeof w->hb);
    fprintf(stderr, "vesta-router: worker %s registered (%s, backend %s, max_model_len %d, "
                    "block_size %d)\n",
            w->id, reg->model, reg->backend, reg->max_model_len, reg->block_size);
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_REGISTERED);
    m.u.registered.router_instance = r->instance;
    m.u.registered.heartbeat_ms = 0;
    vr_link_send_msg(r->link, identity, &m, NULL);
}

void vr_workers_on_frame(vr_router *r, const char *identity, const char *data, size_t len)
{
    vesta_msg m;
    vesta_error err;
    if (vesta_msg_decode(data, len, &m, &err) != VESTA_OK) {
        r->bad_messages++;
        fprintf(stderr, "vesta-router: dropped a malformed message from %s: %s\n", identity,
                err.msg);
        return;
    }
    if (m.type == VESTA_MSG_REGISTER) {
        on_register(r, identity, &m.u.reg);
        vesta_msg_clear(&m);
        return;
    }
    vr_worker *w = vr_registry_find(&r->sched.reg, identity);
    if (w == NULL || w->state == VR_WORKER_DEAD || w->state == VR_WORKER_LEFT) {
        /* unknown to us (router restart, or declared dead): ask it to register again, unless
         * its engine is stalled (it would only be declared dead again): that waits until a
         * heartbeat says the engine moved */
        if (m.type != VESTA_MSG_GOODBYE &&
            !(m.type == VESTA_MSG_HEARTBEAT && engine_stalled(r, &m.u.heartbeat)))
            send_simple(r, identity, VESTA_MSG_REREGISTER);
        vesta_msg_clear(&m);
        return;
    }
    w->last_seen_ms = vr_now_ms();
    switch (m.type) {
    case VESTA_MSG_HEARTBEAT:
        w->hb = m.u.heartbeat;
        if (m.u.heartbeat.draining && w->state == VR_WORKER_LIVE)
            w->state = VR_WORKER_DRAINING;
        else if (!m.u.heartbeat.draining && w->state == VR_WORKER_DRAINING && !w->drain_requested)
            w->state = VR_WORKER_LIVE; /* it had only refused a request for being full */
        break;
    case VESTA_MSG_TOKENS:
        vr_call_on_tokens(r, w, &m.u.tokens);
        break;
    case VESTA_MSG_KV_EVENTS:
        vr_sched_kv_events(&r->sched, w, &m.u.kv_events);
        break;
    case VESTA_MSG_ERROR:
        if (m.u.error.request_id[0] != '\0')
            vr_call_on_error(r, w, &m.u.error);
        else
            fprintf(stderr, "vesta-router: worker %s reports: %s\n", w->id, m.u.error.message);
        break;
    case VESTA_MSG_GOODBYE:
        worker_down(r, w, m.u.goodbye.reason[0] ? m.u.goodbye.reason : "goodbye", VR_WORKER_LEFT);
        break;
    default:
        r->bad_messages++;
        fprintf(stderr, "vesta-router: unexpected %s message from %s: dropped\n",
                vesta_msg_type_name(m.type) ? vesta_msg_type_name(m.type) : "?", identity);
        break;
    }
    vesta_msg_clear(&m);
}

/* Two ways a worker is declared dead: silence (its process or host is gone: heartbeats come
 * from the worker's I/O thread whatever its engine does), or heartbeats saying its engine has
 * been on one step longer than engine_stall_timeout_ms (a hung engine behind a live I/O thread).
 * A stalled worker's heartbeats get no REREGISTER until its engine moves again. */
void vr_workers_tick(vr_router *r)
{
    int64_t now = vr_now_ms();
    for (int i = 0; i < r->sched.reg.n; i++) {
        vr_worker *w = r->sched.reg.w[i];
        if (w->state != VR_WORKER_LIVE && w->state != VR_WORKER_DRAINING)
            continue;
        if (now - w->last_seen_ms > r->opt.worker_timeout_ms)
            worker_down(r, w, "heartbeat timeout", VR_WORKER_DEAD);
        else if (engine_stalled(r, &w->hb))
            worker_down(r, w, "engine stalled", VR_WORKER_DEAD);
    }
}

int vr_workers_max_model_len(vr_router *r)
{
    int best = 0;
    for (int i = 0; i < r->sched.reg.n; i++) {
        vr_worker *w = r->sched.reg.w[i];
        if (vr_worker_routable(w) && (best == 0 || w->reg.max_model_len < best))
            best = w->reg.max_model_len;
    }
    if (best > 0 && r->opt.max_model_len > 0 && r->opt.max_model_len < best)
        best = r->opt.max_model_len;
    return best;
}

int vr_workers_vocab_size(vr_router *r)
{
    int v = r->tok ? (int)vesta_tokenizer_vocab_size(r->tok) : 0;
    for (int i = 0; i < r->sched.reg.n; i++) {
        vr_worker *w = r->sched.reg.w[i];
        if (vr_worker_routable(w) && w->reg.vocab_size > 0 && (v == 0 || w->reg.vocab_size < v))
            v = w->reg.vocab_size;
    }
    return v;
}
