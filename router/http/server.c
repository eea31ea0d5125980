/* The HTTP side: h2o (evloop) set-up, request dispatch by method and path, authentication, body
 * limits, response helpers, and the event-loop glue (ZMQ frames in, periodic tick). */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 50

double vr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int64_t vr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- responses ---- */

static vr_router *router_of(h2o_req_t *req);

void vr_http_send(h2o_req_t *req, int status, const char *content_type, const char *body,
                  size_t len)
{
    vr_router *r = router_of(req);
    if (r != NULL && status >= 0 && status < 600)
        r->http_errors[status]++;
    req->res.status = status;
    req->res.reason = vr_http_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    h2o_send_inline(req, body, len);
}

void vr_http_send_json(h2o_req_t *req, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (s == NULL) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"internal_error\",\"param\":null,\"code\":null}}";
        vr_http_send(req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    vr_http_send(req, status, "application/json", s, strlen(s));
    free(s);
}

void vr_http_send_error(h2o_req_t *req, const vr_api_error *err)
{
    size_t len = 0;
    char *body = vr_api_error_body(err, &len);
    if (err->retry_after > 0) {
        char *v = h2o_mem_alloc_pool(&req->pool, 16);
        int n = snprintf(v, 16, "%d", err->retry_after);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, v, (size_t)n);
    }
    if (err->status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                       H2O_STRLIT("Bearer"));
    if (body == NULL) {
        vr_http_send(req, err->status, "text/plain", "error", 5);
        return;
    }
    vr_http_send(req, err->status, "application/json", body, len);
    free(body);
}

/* ---- dispatch ---- */

typedef struct vr_handler {
    h2o_handler_t super;
    vr_router *router;
} vr_handler;

static vr_router *router_of(h2o_req_t *req)
{
    h2o_context_t *ctx = req->conn->ctx;
    return H2O_STRUCT_FROM_MEMBER(vr_router, ctx, ctx);
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static bool path_is(h2o_iovec_t path, const char *p)
{
    return h2o_memis(path.base, path.len, p, strlen(p));
}

/* Constant-time comparison, so that a wrong key's timing tells nothing about the right one. */
static bool key_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned diff = (unsigned)(alen ^ blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (blen ? blen : 1)];
    return diff == 0 && alen == blen;
}

static bool authorized(vr_router *r, h2o_req_t *req)
{
    if (r->opt.n_api_keys == 0)
        return true;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0)
        return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer ")))
        return false;
    const char *tok = v.base + 7;
    size_t len = v.len - 7;
    while (len > 0 && *tok == ' ') {
        tok++;
        len--;
    }
    bool ok = false;
    for (int k = 0; k < r->opt.n_api_keys; k++)
        ok |= key_equal(tok, len, r->opt.api_keys[k]);
    return ok;
}

static void send_simple_error(h2o_req_t *req, int status, const char *type, const char *code,
                              const char *msg)
{
    vr_api_error err;
    vr_api_error_set(&err, status, type, code, NULL, "%s", msg);
    vr_http_send_error(req, &err);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    vr_router *r = ((vr_handler *)self)->router;
    h2o_iovec_t path = req->path_normalized;
    bool post = method_is(req, "POST"), get = method_is(req, "GET") || method_is(req, "HEAD");
    /* as in vLLM, the API key guards /v1/ (and the admin API); probes, scrapers and the
     * tokenizer endpoints stay open */
    bool guarded = (path.len >= 4 && memcmp(path.base, "/v1/", 4) == 0) ||
                   (path.len >= 6 && memcmp(path.base, "/admin", 6) == 0);
    if (guarded && !authorized(r, req)) {
        send_simple_error(req, 401, "invalid_request_error", "invalid_api_key",
                          "Incorrect or missing API key (send `Authorization: Bearer <key>`)");
        return 0;
    }
    if (post && req->entity.len > r->opt.max_body_bytes) {
        char msg[160];
        snprintf(msg, sizeof msg, "The request body has %zu bytes; the limit is %zu",
                 req->entity.len, r->opt.max_body_bytes);
        send_simple_error(req, 413, "invalid_request_error", "request_too_large", msg);
        return 0;
    }
    if (post && path_is(path, "/v1/completions"))
        vr_call_start(r, req, VR_API_COMPLETION);
    else if (post && path_is(path, "/v1/chat/completions"))
        vr_call_start(r, req, VR_API_CHAT);
    else if (get && path_is(path, "/v1/models"))
        vr_endpoint_models(r, req);
    else if (get && (path_is(path, "/health") || path_is(path, "/ping")))
        vr_endpoint_health(r, req);
    else if (get && path_is(path, "/metrics"))
        vr_endpoint_metrics(r, req);
    else if (get && path_is(path, "/version"))
        vr_endpoint_version(r, req);
    else if (post && path_is(path, "/tokenize"))
        vr_endpoint_tokenize(r, req);
    else if (post && path_is(path, "/detokenize"))
        vr_endpoint_detokenize(r, req);
    else if (get && path_is(path, "/admin/workers"))
        vr_endpoint_admin_workers(r, req);
    else if (post && path.len > 15 && memcmp(path.base, "/admin/workers/", 15) == 0 &&
             path.len > 21 && memcmp(path.base + path.len - 6, "/drain", 6) == 0) {
        /* path_normalized is already percent-decoded by h2o; an id longer than any worker's
         * cannot name one (truncating it could name another worker) */
        char id[VESTA_PROTO_MAX_ID + 1];
        size_t n = path.len - 21;
        if (n > VESTA_PROTO_MAX_ID) {
            send_simple_error(req, 404, "invalid_request_error", "not_found",
                              "no live worker with an id that long");
            return 0;
        }
        memcpy(id, path.base + 15, n);
        id[n] = '\0';
        vr_endpoint_admin_drain(r, req, id);
    } else {
        static const char *const known[] = {"/v1/completions", "/v1/chat/completions",
                                            "/v1/models", "/health", "/metrics", "/version",
                                            "/tokenize", "/detokenize", "/admin/workers"};
        bool exists = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            exists |= path_is(path, known[i]);
        if (exists)
            send_simple_error(req, 405, "invalid_request_error", "method_not_allowed",
                              "Method Not Allowed");
        else
            send_simple_error(req, 404, "invalid_request_error", "not_found", "Not Found");
    }
    return 0;
}

/* ---- loop glue ---- */

static void on_link_frames(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    vr_router *r = H2O_STRUCT_FROM_MEMBER(vr_router, link_receiver, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        vr_link_msg *m = H2O_STRUCT_FROM_MEMBER(vr_link_msg, super.link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        if (r->link != NULL) /* NULL: shutting down, frames are only freed */
            vr_workers_on_frame(r, m->identity, m->data, m->len);
        free(m);
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    vr_router *r = H2O_STRUCT_FROM_MEMBER(vr_router, tick_entry, entry);
    vr_workers_tick(r);
    vr_call_poll_disconnects(r);
    h2o_timeout_link(r->ctx.loop, &r->tick_timeout, &r->tick_entry);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    vr_router *r = listener->data;
    if (err != NULL)
        return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL)
        h2o_accept(&r->accept_ctx, sock);
}

static int listen_on(vr_router *r, vesta_error *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", r->opt.port);
    int rc = getaddrinfo(r->opt.host, port, &hints, &res);
    if (rc != 0) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "--host %s: %s", r->opt.host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
        vesta_error_set(err, VESTA_ERR_IO, "cannot listen on %s:%d: %s", r->opt.host, r->opt.port,
                        strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    r->listen_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    r->listener = h2o_evloop_socket_create(r->ctx.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    r->listener->data = r;
    h2o_socket_read_start(r->listener, on_accept);
    return 0;
}

vesta_status vr_server_start(vr_router *r, vesta_error *err)
{
    h2o_config_init(&r->config);
    /* h2o refuses bodies over its own limit with a plain-text 413; ours is checked in on_req
     * with an OpenAI error body, so h2o's is set a little higher */
    size_t limit = r->opt.max_body_bytes;
    r->config.max_request_entity_size = limit < SIZE_MAX / 2 ? limit * 2 + 1024 : limit;
    h2o_hostconf_t *host = h2o_config_register_host(&r->config, h2o_iovec_init(H2O_STRLIT("default")),
                                                    65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    vr_handler *h = (vr_handler *)h2o_create_handler(path, sizeof *h);
    h->super.on_req = on_req;
    h->router = r;
    h2o_context_init(&r->ctx, h2o_evloop_create(), &r->config);
    r->accept_ctx.ctx = &r->ctx;
    r->accept_ctx.hosts = r->config.hosts;
    h2o_multithread_register_receiver(r->ctx.queue, &r->link_receiver, on_link_frames);
    r->link = vr_link_create(r->opt.zmq_bind, &r->link_receiver, err);
    if (r->link == NULL)
        return err->code;
    if (listen_on(r, err) != 0)
        return err->code;
    h2o_timeout_init(r->ctx.loop, &r->tick_timeout, TICK_MS);
    r->tick_entry.cb = on_tick;
    h2o_timeout_link(r->ctx.loop, &r->tick_timeout, &r->tick_entry);
    return VESTA_OK;
}

void vr_server_stop(vr_router *r)
{
    vr_link_destroy(r->link);
    r->link = NULL;
    /* frames the link thread queued before it stopped: let the loop hand them over (and free
     * them) once more */
    h2o_evloop_run(r->ctx.loop, 0);
}
