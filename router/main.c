/* vesta-router: the OpenAI-compatible HTTP front of a Vesta cluster.
 *
 *   vesta-router --model PATH [--host 127.0.0.1] [--port 8000] [--zmq-bind tcp://127.0.0.1:5557]
 *                [--config FILE] [--served-model-name NAME ...] [--api-key KEY ...]
 *                [--routing-policy prefix-affinity|least-load|round-robin] ...
 *
 * Options come from vesta_config (YAML + flags, flags win); router-only extras: --tokenizer PATH
 * (tokenizer source when it differs from --model) and --worker-timeout-ms (alias of
 * --heartbeat-timeout-ms). On SIGINT/SIGTERM it stops accepting connections, lets in-flight
 * requests finish (at most 30 s) and exits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vesta/config.h"
#include "http/server.h"
#include "router.h"

/* The only mutable global: a signal handler has no other way to reach the loop. */
static volatile sig_atomic_t g_signalled;

static void on_signal(int sig) { g_signalled = sig; }

void vr_options_init(vr_options *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8000;
    o->zmq_bind = VESTA_PROTO_DEFAULT_ENDPOINT;
    o->max_body_bytes = 16u << 20;
    o->max_queued_requests = 1024;
    o->policy = VR_POLICY_PREFIX_AFFINITY;
    o->load_margin = 8;
    o->worker_timeout_ms = 3000;
    o->engine_stall_timeout_ms = 600000;
    o->prefix_index_bytes = 64u << 20;
    o->retry_after_s = 1;
}

static int usage(const char *msg)
{
    fprintf(stderr, "vesta-router: %s\n\nOptions:\n", msg);
    vesta_config_print_help(stderr, VESTA_OPT_ROUTER);
    fprintf(stderr, "  --tokenizer PATH          tokenizer source (default: --model)\n"
                    "  --worker-timeout-ms N     alias of --heartbeat-timeout-ms\n");
    return 2;
}

/* Flags vesta_config does not know, for the router only. */
static int parse_extras(vr_options *o, char **rest, int n, const char **tokenizer)
{
    for (int i = 0; i < n; i++) {
        const char *a = rest[i];
        const char *v = NULL;
        size_t klen = strcspn(a, "=");
        if (a[klen] == '=')
            v = a + klen + 1;
        else if (i + 1 < n)
            v = rest[i + 1];
        if (strncmp(a, "--tokenizer", klen) == 0 && klen == 11 && v) {
            *tokenizer = v;
        } else if (strncmp(a, "--worker-timeout-ms", klen) == 0 && klen == 19 && v) {
            char *end;
            long ms = strtol(v, &end, 10);
            if (*end != '\0' || ms < 10 || ms > 3600000) {
                fprintf(stderr, "vesta-router: --worker-timeout-ms: bad value '%s'\n", v);
                return -1;
            }
            o->worker_timeout_ms = (int)ms;
        } else {
            fprintf(stderr, "vesta-router: unknown argument '%s'\n", a);
            return -1;
        }
        if (a[klen] != '=')
            i++;
    }
    return 0;
}

static int options_from_config(vr_router *r, vesta_config *c, int argc, char **argv)
{
    vesta_error err = {0};
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    vesta_config_init(c);
    if (rest == NULL ||
        vesta_config_parse_args(c, argc, argv, VESTA_OPT_ROUTER, rest, &n_rest, &err) != VESTA_OK) {
        free(rest);
        return usage(err.msg);
    }
    vr_options *o = &r->opt;
    vr_options_init(o);
    const char *tokenizer = NULL;
    if (parse_extras(o, rest, n_rest, &tokenizer) != 0) {
        free(rest);
        return usage("bad arguments");
    }
    free(rest);
    o->host = c->host;
    o->port = c->port;
    o->zmq_bind = c->zmq_bind;
    o->model = c->model[0] ? c->model : NULL;
    o->tokenizer = tokenizer ? tokenizer : o->model;
    for (int i = 0; i < c->api_keys.count && i < VR_MAX_API_KEYS; i++)
        o->api_keys[o->n_api_keys++] = c->api_keys.items[i];
    for (int i = 0; i < c->served_model_name.count && i < VR_MAX_SERVED_NAMES; i++)
        o->served_names[o->n_served_names++] = c->served_model_name.items[i];
    if (o->n_served_names == 0 && o->model)
        o->served_names[o->n_served_names++] = o->model;
    if ((o->n_loras = vesta_config_lora_specs(c, o->loras, &err)) < 0) return usage(err.msg);
    for (int i = 0; i < o->n_loras; i++)
        for (int j = 0; j < o->n_served_names; j++)
            if (strcmp(o->served_names[j], o->loras[i].name) == 0)
                return usage("--lora-modules: an adapter has the name of a served model");
    o->max_body_bytes = (size_t)c->max_body_bytes;
    o->max_queued_requests = c->max_queued_requests;
    int p = vr_policy_parse(c->routing_policy);
    o->policy = p < 0 ? VR_POLICY_PREFIX_AFFINITY : (vr_policy)p;
    o->load_margin = c->load_margin;
    if (o->worker_timeout_ms == 3000 || c->heartbeat_timeout_ms != 3000)
        o->worker_timeout_ms = c->heartbeat_timeout_ms;
    o->engine_stall_timeout_ms = c->engine_stall_timeout_ms;
    o->max_model_len = c->max_model_len;
    /* two indexes; an entry costs about 48 bytes with its table slots */
    o->prefix_index_bytes = (size_t)c->prefix_index_max_blocks * 48u * 2u;
    if (o->tokenizer == NULL)
        return usage("--model (or --tokenizer) is required: the router tokenizes prompts");
    return 0;
}

static int load_tokenizer(vr_router *r)
{
    vesta_error err = {0};
    r->tok = vesta_tokenizer_load(r->opt.tokenizer, &err);
    if (r->tok == NULL) {
        fprintf(stderr, "vesta-router: cannot load the tokenizer: %s\n", err.msg);
        return -1;
    }
    const char *src = vesta_tokenizer_chat_template(r->tok, NULL);
    if (src != NULL) {
        r->tpl = vesta_chat_template_compile(src, strlen(src), &err);
        if (r->tpl == NULL)
            fprintf(stderr, "vesta-router: the model's chat template does not compile (%s); "
                            "/v1/chat/completions will answer 400\n", err.msg);
    }
    r->tpl_trusted = json_object();
    if (vesta_tokenizer_bos_token(r->tok))
        json_object_set_new(r->tpl_trusted, "bos_token", json_string(vesta_tokenizer_bos_token(r->tok)));
    if (vesta_tokenizer_eos_token(r->tok))
        json_object_set_new(r->tpl_trusted, "eos_token", json_string(vesta_tokenizer_eos_token(r->tok)));
    return 0;
}

int main(int argc, char **argv)
{
    vr_router *r = calloc(1, sizeof *r);
    vesta_config *cfg = calloc(1, sizeof *cfg);
    if (r == NULL || cfg == NULL)
        return 1;
    int rc = options_from_config(r, cfg, argc, argv);
    if (rc != 0)
        return rc;
    if (load_tokenizer(r) != 0)
        return 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->instance = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
    vesta_error err = {0};
    if (vr_sched_init(&r->sched, r->opt.policy, r->opt.load_margin, r->opt.prefix_index_bytes) !=
        VESTA_OK) {
        fprintf(stderr, "vesta-router: cannot allocate the prefix index\n");
        return 1;
    }
    vr_request_table_init(&r->table);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (vr_server_start(r, &err) != VESTA_OK) {
        fprintf(stderr, "vesta-router: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "vesta-router: listening on http://%s:%d (model %s, policy %s)\n",
            r->opt.host, r->listen_port, r->opt.served_names[0], vr_policy_name(r->opt.policy));
    fprintf(stderr, "vesta-router: workers connect to %s\n", vr_link_endpoint(r->link));
    double deadline = 0;
    for (;;) {
        /* A signal interrupts epoll_wait and h2o_evloop_run reports -1 with EINTR: that is the
         * cue to drain, not a reason to leave the loop with requests in flight. */
        if (h2o_evloop_run(r->ctx.loop, 100) != 0 && errno != EINTR) {
            fprintf(stderr, "vesta-router: event loop failed: %s\n", strerror(errno));
            break;
        }
        if (g_signalled && deadline == 0) {
            fprintf(stderr, "vesta-router: signal %d: finishing %d request(s)\n", (int)g_signalled,
                    r->n_live_calls);
            h2o_socket_read_stop(r->listener);
            h2o_socket_close(r->listener);
            deadline = vr_now() + 30;
        }
        if (deadline != 0 && (r->n_live_calls == 0 || vr_now() > deadline))
            break;
    }
    vr_server_stop(r);
    vr_sched_clear(&r->sched);
    vr_request_table_clear(&r->table);
    vesta_chat_template_release(r->tpl);
    json_decref(r->tpl_trusted);
    vesta_tokenizer_release(r->tok);
    free(cfg);
    free(r);
    return 0;
}
