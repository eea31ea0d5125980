#include "link/zmq_link.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <zmq.h>

typedef struct out_frame {
    struct out_frame *next;
    char identity[VESTA_PROTO_MAX_ID + 1];
    size_t len;
    char data[];
} out_frame;

struct vr_link {
    void *zctx;
    void *sock;
    int efd;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    out_frame *out_head, *out_tail;
    h2o_multithread_receiver_t *receiver;
    char endpoint[256];
    atomic_uint_fast64_t dropped;
};

static void send_all(vr_link *l)
{
    pthread_mutex_lock(&l->mu);
    out_frame *f = l->out_head;
    l->out_head = l->out_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (f != NULL) {
        out_frame *next = f->next;
        /* ZMQ_ROUTER_MANDATORY: an unknown identity fails with EHOSTUNREACH instead of being
         * silently dropped by ZMQ; either way the frame is gone, the worker is dead. */
        if (zmq_send(l->sock, f->identity, strlen(f->identity), ZMQ_SNDMORE) < 0 ||
            zmq_send(l->sock, f->data, f->len, 0) < 0)
            atomic_fetch_add(&l->dropped, 1);
        free(f);
        f = next;
    }
}

/* Reads one multipart message: [identity, payload] (a REQ-style empty delimiter is skipped). */
static void recv_one(vr_link *l)
{
    zmq_msg_t parts[3];
    int n = 0, more = 1;
    bool bad = false;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, l->sock, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 3)
            parts[n++] = m;
        else {
            zmq_msg_close(&m);
            bad = true;
        }
    }
    if (n == 3 && zmq_msg_size(&parts[1]) != 0)
        bad = true;
    size_t idlen = n > 0 ? zmq_msg_size(&parts[0]) : 0;
    if (n < 2 || idlen == 0 || idlen > VESTA_PROTO_MAX_ID ||
        memchr(zmq_msg_data(&parts[0]), 0, idlen) != NULL)
        bad = true;
    if (!bad) {
        zmq_msg_t *payload = &parts[n - 1];
        size_t len = zmq_msg_size(payload);
        vr_link_msg *m = malloc(sizeof *m + len);
        if (m != NULL) {
            memset(&m->super, 0, sizeof m->super);
            memcpy(m->identity, zmq_msg_data(&parts[0]), idlen);
            m->identity[idlen] = '\0';
            m->len = len;
            memcpy(m->data, zmq_msg_data(payload), len);
            h2o_multithread_send_message(l->receiver, &m->super);
        } else {
            bad = true;
        }
    }
    if (bad)
        atomic_fetch_add(&l->dropped, 1);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

static void *link_main(void *arg)
{
    vr_link *l = arg;
    zmq_pollitem_t items[2] = {{l->sock, 0, ZMQ_POLLIN, 0}, {NULL, l->efd, ZMQ_POLLIN, 0}};
    while (!atomic_load(&l->stop)) {
        if (zmq_poll(items, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t v;
            if (read(l->efd, &v, sizeof v) < 0 && errno != EAGAIN)
                break;
            send_all(l);
        }
        /* drain everything readable: ZMQ's readiness is edge-like */
        for (int k = 0; k < 1024; k++) {
            int events = 0;
            size_t sz = sizeof events;
            if (zmq_getsockopt(l->sock, ZMQ_EVENTS, &events, &sz) != 0 || !(events & ZMQ_POLLIN))
                break;
            recv_one(l);
        }
    }
    send_all(l); /* last words (SHUTDOWN) */
    return NULL;
}

vr_link *vr_link_create(const char *endpoint, h2o_multithread_receiver_t *receiver,
                        vesta_error *err)
{
    vr_link *l = calloc(1, sizeof *l);
    if (l == NULL) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "zmq link: out of memory");
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    l->receiver = receiver;
    l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->zctx = zmq_ctx_new();
    l->sock = l->zctx ? zmq_socket(l->zctx, ZMQ_ROUTER) : NULL;
    if (l->efd < 0 || l->sock == NULL) {
        vesta_error_set(err, VESTA_ERR_IO, "zmq link: cannot create the socket: %s",
                        zmq_strerror(zmq_errno()));
        vr_link_destroy(l);
        return NULL;
    }
    int one = 1, zero = 0, hwm = 100000;
    zmq_setsockopt(l->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    /* a restarted worker reuses its id: its new connection takes the identity over */
    zmq_setsockopt(l->sock, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(l->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(l->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(l->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* a frame over the protocol's limit is refused by ZMQ before it is buffered */
    int64_t maxmsg = VESTA_PROTO_MAX_MSG_BYTES;
    zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_bind(l->sock, endpoint) != 0) {
        vesta_error_set(err, VESTA_ERR_IO, "zmq link: cannot bind %s: %s", endpoint,
                        zmq_strerror(zmq_errno()));
        vr_link_destroy(l);
        return NULL;
    }
    size_t sz = sizeof l->endpoint;
    if (zmq_getsockopt(l->sock, ZMQ_LAST_ENDPOINT, l->endpoint, &sz) != 0)
        snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
    if (pthread_create(&l->thread, NULL, link_main, l) != 0) {
        vesta_error_set(err, VESTA_ERR_INTERNAL, "zmq link: cannot start the thread");
        vr_link_destroy(l);
        return NULL;
    }
    l->started = true;
    return l;
}

const char *vr_link_endpoint(const vr_link *l) { return l->endpoint; }

uint64_t vr_link_dropped(const vr_link *l) { return atomic_load(&((vr_link *)l)->dropped); }

vesta_status vr_link_send(vr_link *l, const char *identity, const void *data, size_t len)
{
    out_frame *f = malloc(sizeof *f + len);
    if (f == NULL)
        return VESTA_ERR_NOMEM;
    f->next = NULL;
    snprintf(f->identity, sizeof f->identity, "%s", identity);
    f->len = len;
    memcpy(f->data, data, len);
    pthread_mutex_lock(&l->mu);
    bool was_empty = l->out_head == NULL;
    if (l->out_tail)
        l->out_tail->next = f;
    else
        l->out_head = f;
    l->out_tail = f;
    pthread_mutex_unlock(&l->mu);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(l->efd, &one, sizeof one);
        (void)w; /* EAGAIN means the counter is already non-zero: the thread will wake */
    }
    return VESTA_OK;
}

vesta_status vr_link_send_msg(vr_link *l, const char *identity, const vesta_msg *m,
                              vesta_error *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    vesta_status st = vesta_msg_encode(m, &sb, err);
    if (st == VESTA_OK)
        st = vr_link_send(l, identity, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

void vr_link_destroy(vr_link *l)
{
    if (l == NULL)
        return;
    if (l->started) {
        atomic_store(&l->stop, true);
        uint64_t one = 1;
        ssize_t w = write(l->efd, &one, sizeof one);
        (void)w;
        pthread_join(l->thread, NULL);
    }
    if (l->sock)
        zmq_close(l->sock);
    if (l->zctx)
        zmq_ctx_term(l->zctx);
    if (l->efd >= 0)
        close(l->efd);
    out_frame *f = l->out_head;
    while (f) {
        out_frame *n = f->next;
        free(f);
        f = n;
    }
    pthread_mutex_destroy(&l->mu);
    free(l);
}
