/* The small endpoints: models, health, version, metrics, tokenize/detokenize, admin. */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/prompt.h"
#include "api/response.h"

#ifndef VESTA_VERSION
#define VESTA_VERSION "0.1.0"
#endif

const char *vr_router_model_name(vr_router *r, const char *model, int *lora_id, vr_api_error *err)
{
    int ignored;
    lora_id = lora_id ? lora_id : &ignored;
    *lora_id = 0;
    if (model == NULL)
        return r->opt.served_names[0];
    for (int i = 0; i < r->opt.n_served_names; i++)
        if (strcmp(model, r->opt.served_names[i]) == 0)
            return r->opt.served_names[i];
    for (int i = 0; i < r->opt.n_loras; i++)
        if (strcmp(model, r->opt.loras[i].name) == 0) {
            *lora_id = i + 1;
            return r->opt.loras[i].name;
        }
    vr_api_error_set(err, 404, "NotFoundError", "model_not_found", "model",
                     "The model `%.200s` does not exist.", model);
    return NULL;
}

static json_t *model_card(const char *id, const char *root, const char *parent, int max_len)
{
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer((json_int_t)time(NULL)));
    json_object_set_new(m, "owned_by", json_string("vesta"));
    json_object_set_new(m, "root", json_string(root));
    json_object_set_new(m, "parent", parent ? json_string(parent) : json_null());
    json_object_set_new(m, "max_model_len", max_len > 0 ? json_integer(max_len) : json_null());
    return m;
}

/* As vLLM lists them: the served names, then each adapter with its path as root and the first
 * served name as parent. */
void vr_endpoint_models(vr_router *r, h2o_req_t *req)
{
    json_t *data = json_array();
    int max_len = vr_workers_max_model_len(r);
    for (int i = 0; i < r->opt.n_served_names; i++)
        json_array_append_new(data, model_card(r->opt.served_names[i],
                                               r->opt.model ? r->opt.model : r->opt.served_names[i], NULL, max_len));
    for (int i = 0; i < r->opt.n_loras; i++)
        json_array_append_new(data,
                              model_card(r->opt.loras[i].name, r->opt.loras[i].path, r->opt.served_names[0], max_len));
    json_t *o = json_object();
    json_object_set_new(o, "object", json_string("list"));
    json_object_set_new(o, "data", data);
    vr_http_send_json(req, 200, o);
}

void vr_endpoint_health(vr_router *r, h2o_req_t *req)
{
    int live = vr_registry_count(&r->sched.reg, VR_WORKER_LIVE);
    int draining = vr_registry_count(&r->sched.reg, VR_WORKER_DRAINING);
    int dead = vr_registry_count(&r->sched.reg, VR_WORKER_DEAD);
    int left = vr_registry_count(&r->sched.reg, VR_WORKER_LEFT); /* drained: not a fault */
    const char *status = live == 0 ? "unavailable" : (dead > 0 || draining > 0) ? "degraded" : "ok";
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string(status));
    json_t *w = json_object();
    json_object_set_new(w, "live", json_integer(live));
    json_object_set_new(w, "draining", json_integer(draining));
    json_object_set_new(w, "dead", json_integer(dead));
    json_object_set_new(w, "left", json_integer(left));
    json_object_set_new(o, "workers", w);
    if (live == 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    vr_http_send_json(req, live > 0 ? 200 : 503, o);
}

void vr_endpoint_version(vr_router *r, h2o_req_t *req)
{
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(VESTA_VERSION));
    vr_http_send_json(req, 200, o);
}

/* ---- /metrics ---- */

typedef struct gauge_def {
    const char *name, *type, *help;
} gauge_def;

static void worker_labels(char *buf, size_t cap, const char *model, const vr_worker *w)
{
    if (w)
        snprintf(buf, cap, "model_name=\"%s\",worker=\"%s\"", model, w->id);
    else
        snprintf(buf, cap, "model_name=\"%s\"", model);
}

/* A per-worker value getter for the gauges and counters that come from heartbeats. */
typedef double (*worker_value)(const vr_worker *w);
static double v_running(const vr_worker *w) { return w->hb.num_running; }
static double v_waiting(const vr_worker *w) { return w->hb.num_waiting; }
static double v_kv(const vr_worker *w) { return w->hb.kv_usage; }
static double v_pq(const vr_worker *w) { return (double)w->hb.prefix_cache_queries; }
static double v_ph(const vr_worker *w) { return (double)w->hb.prefix_cache_hits; }
static double v_pre(const vr_worker *w) { return (double)w->hb.num_preemptions; }
static double v_prompt(const vr_worker *w) { return (double)w->m.prompt_tokens; }
static double v_gen(const vr_worker *w) { return (double)w->m.generation_tokens; }
static double v_inflight(const vr_worker *w) { return w->inflight_reqs; }

static void series(vr_text *t, vr_router *r, const char *name, const char *type, const char *help,
                   worker_value get, bool average)
{
    const char *model = r->opt.served_names[0];
    char labels[512];
    vr_metrics_header(t, name, type, help);
    double total = 0;
    int n = 0;
    for (int i = 0; i < r->sched.reg.n; i++) {
        const vr_worker *w = r->sched.reg.w[i];
        if ((w->state == VR_WORKER_DEAD || w->state == VR_WORKER_LEFT) && strcmp(type, "gauge") == 0)
            continue;
        double v = get(w);
        worker_labels(labels, sizeof labels, model, w);
        vr_text_printf(t, "%s{%s} %.9g\n", name, labels, v);
        total += v;
        n++;
    }
    worker_labels(labels, sizeof labels, model, NULL);
    vr_text_printf(t, "%s{%s} %.9g\n", name, labels, average ? (n ? total / n : 0) : total);
}

void vr_endpoint_metrics(vr_router *r, h2o_req_t *req)
{
    vr_text t = {0};
    const char *model = r->opt.served_names[0];
    char labels[512];
    series(&t, r, "vesta:num_requests_running", "gauge",
           "Number of requests in model execution batches.", v_running, false);
    series(&t, r, "vesta:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
           v_waiting, false);
    series(&t, r, "vesta:kv_cache_usage_perc", "gauge",
           "KV-cache usage. 1 means 100 percent usage (aggregate: mean over live workers).", v_kv,
           true);
    series(&t, r, "vesta:prefix_cache_queries_total", "counter",
           "Prefix cache queries, in terms of number of queried tokens.", v_pq, false);
    series(&t, r, "vesta:prefix_cache_hits_total", "counter",
           "Prefix cache hits, in terms of number of cached tokens.", v_ph, false);
    series(&t, r, "vesta:num_preemptions_total", "counter", "Cumulative number of preemptions.",
           v_pre, false);
    series(&t, r, "vesta:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
           v_prompt, false);
    series(&t, r, "vesta:generation_tokens_total", "counter", "Number of generation tokens processed.",
           v_gen, false);
    series(&t, r, "vesta:router_inflight_requests", "gauge",
           "Requests the router has in flight on each worker.", v_inflight, false);

    vr_metrics_header(&t, "vesta:request_success_total", "counter",
                      "Count of successfully processed requests (sequences), by finish reason.");
    for (int i = -1; i < r->sched.reg.n; i++) {
        const vr_worker *w = i >= 0 ? r->sched.reg.w[i] : NULL;
        const vr_req_metrics *m = w ? &w->m : &r->m;
        worker_labels(labels, sizeof labels, model, w);
        for (int k = 0; k < VR_FINISH_COUNT; k++)
            vr_text_printf(&t, "vesta:request_success_total{%s,finished_reason=\"%s\"} %llu\n",
                           labels, vr_finish_kind_name((vr_finish_kind)k),
                           (unsigned long long)m->success[k]);
    }
    for (int h = 0; h < VR_HIST_COUNT; h++) {
        vr_metrics_header(&t, vr_hist_name((vr_hist_kind)h), "histogram",
                          vr_hist_help((vr_hist_kind)h));
        for (int i = -1; i < r->sched.reg.n; i++) {
            const vr_worker *w = i >= 0 ? r->sched.reg.w[i] : NULL;
            const vr_req_metrics *m = w ? &w->m : &r->m;
            worker_labels(labels, sizeof labels, model, w);
            vr_metrics_hist(&t, vr_hist_name((vr_hist_kind)h), (vr_hist_kind)h, &m->hist[h], labels);
        }
    }
    vr_metrics_header(&t, "vesta:routing_decisions_total", "counter",
                      "Routing decisions by policy and outcome.");
    for (int p = 0; p < VR_POLICY_COUNT; p++)
        for (int k = 0; k < VR_ROUTE_COUNT; k++)
            if (r->sched.decisions[p][k] > 0 || p == (int)r->sched.policy)
                vr_text_printf(&t, "vesta:routing_decisions_total{policy=\"%s\",outcome=\"%s\"} %llu\n",
                               vr_policy_name((vr_policy)p), vr_route_reason_name((vr_route_reason)k),
                               (unsigned long long)r->sched.decisions[p][k]);
    vr_metrics_header(&t, "vesta:routing_requests_total", "counter", "Requests routed to each worker.");
    for (int i = 0; i < r->sched.reg.n; i++) {
        worker_labels(labels, sizeof labels, model, r->sched.reg.w[i]);
        vr_text_printf(&t, "vesta:routing_requests_total{%s} %llu\n", labels,
                       (unsigned long long)r->sched.reg.w[i]->m.routed);
    }
    vr_metrics_header(&t, "vesta:routing_matched_blocks_total", "counter",
                      "Prompt blocks found cached on the chosen worker (router's estimate).");
    vr_text_printf(&t, "vesta:routing_matched_blocks_total %llu\n",
                   (unsigned long long)r->sched.matched_blocks_total);
    vr_metrics_header(&t, "vesta:prefix_index_entries", "gauge",
                      "Entries in the router's prefix indexes (source: events or history).");
    vr_text_printf(&t, "vesta:prefix_index_entries{source=\"events\"} %zu\n",
                   vr_prefix_index_count(r->sched.events));
    vr_text_printf(&t, "vesta:prefix_index_entries{source=\"history\"} %zu\n",
                   vr_prefix_index_count(r->sched.history));
    vr_metrics_header(&t, "vesta:workers", "gauge", "Workers by state.");
    for (int s = VR_WORKER_LIVE; s <= VR_WORKER_LEFT; s++)
        vr_text_printf(&t, "vesta:workers{state=\"%s\"} %d\n", vr_worker_state_name((vr_worker_state)s),
                       vr_registry_count(&r->sched.reg, (vr_worker_state)s));
    vr_metrics_header(&t, "vesta:router_rejected_total", "counter",
                      "Requests refused because the router's queue was full.");
    vr_text_printf(&t, "vesta:router_rejected_total %llu\n",
                   (unsigned long long)r->rejected_queue_full);
    vr_metrics_header(&t, "vesta:router_client_aborts_total", "counter",
                      "Requests aborted because the client went away.");
    vr_text_printf(&t, "vesta:router_client_aborts_total %llu\n",
                   (unsigned long long)r->aborted_by_client);
    vr_metrics_header(&t, "vesta:router_worker_failures_total", "counter",
                      "Requests failed because their worker died or reported an error.");
    vr_text_printf(&t, "vesta:router_worker_failures_total %llu\n",
                   (unsigned long long)r->worker_failures);
    vr_metrics_header(&t, "vesta:router_http_responses_total", "counter",
                      "Complete (non-streaming) HTTP responses by status code.");
    for (int code = 100; code < 600; code++)
        if (r->http_errors[code] > 0)
            vr_text_printf(&t, "vesta:router_http_responses_total{status=\"%d\"} %llu\n", code,
                           (unsigned long long)r->http_errors[code]);
    vr_metrics_header(&t, "vesta:router_bad_messages_total", "counter",
                      "Malformed or unexpected worker messages dropped.");
    vr_text_printf(&t, "vesta:router_bad_messages_total %llu\n",
                   (unsigned long long)(r->bad_messages + vr_link_dropped(r->link)));
    if (t.failed) {
        vr_text_free(&t);
        vr_http_send(req, 500, "text/plain", "out of memory\n", 14);
        return;
    }
    vr_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", t.data ? t.data : "", t.len);
    vr_text_free(&t);
}

/* ---- tokenize ---- */

void vr_endpoint_tokenize(vr_router *r, h2o_req_t *req)
{
    vr_api_error err;
    vr_api_tokenize t;
    if (vr_api_tokenize_parse(req->entity.base, req->entity.len, &t, &err) != VESTA_OK) {
        vr_http_send_error(req, &err);
        return;
    }
    if (vr_router_model_name(r, t.model, NULL, &err) == NULL) {
        vr_api_tokenize_clear(&t);
        vr_http_send_error(req, &err);
        return;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    vesta_status st;
    if (t.prompt != NULL) {
        vesta_error e;
        st = vesta_tokenizer_encode(r->tok, t.prompt, t.prompt_len, t.add_special_tokens, true,
                                    &ids, &n, &e);
        if (st != VESTA_OK)
            vr_api_error_bad(&err, "prompt", "cannot tokenize the prompt: %s", e.msg);
    } else {
        vr_chat_input in = {t.messages, t.tools, t.chat_template_kwargs, t.add_generation_prompt,
                            t.continue_final_message, t.add_special_tokens};
        st = vr_prompt_encode_chat(r->tpl, r->tpl_trusted, r->tok, &in, &ids, &n, &err);
    }
    vr_api_tokenize_clear(&t);
    if (st != VESTA_OK) {
        free(ids);
        vr_http_send_error(req, &err);
        return;
    }
    json_t *tokens = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(tokens, json_integer(ids[i]));
    free(ids);
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)n));
    json_object_set_new(o, "max_model_len", json_integer(vr_workers_max_model_len(r)));
    json_object_set_new(o, "tokens", tokens);
    vr_http_send_json(req, 200, o);
}

void vr_endpoint_detokenize(vr_router *r, h2o_req_t *req)
{
    vr_api_error err;
    vr_api_detokenize d;
    if (vr_api_detokenize_parse(req->entity.base, req->entity.len,
                                (int)vesta_tokenizer_vocab_size(r->tok), &d, &err) != VESTA_OK) {
        vr_http_send_error(req, &err);
        return;
    }
    if (vr_router_model_name(r, d.model, NULL, &err) == NULL) {
        vr_api_detokenize_clear(&d);
        vr_http_send_error(req, &err);
        return;
    }
    char *text = NULL;
    size_t len = 0;
    vesta_error e;
    vesta_status st = d.n_ids == 0 ? VESTA_OK
                                   : vesta_tokenizer_decode(r->tok, d.ids, d.n_ids, false, &text,
                                                            &len, &e);
    vr_api_detokenize_clear(&d);
    if (st != VESTA_OK) {
        free(text);
        vr_api_error_bad(&err, "tokens", "cannot decode: %s", e.msg);
        vr_http_send_error(req, &err);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "prompt", vr_json_text(text, len));
    free(text);
    vr_http_send_json(req, 200, o);
}

/* ---- admin ---- */

void vr_endpoint_admin_workers(vr_router *r, h2o_req_t *req)
{
    json_t *arr = json_array();
    int64_t now = vr_now_ms();
    for (int i = 0; i < r->sched.reg.n; i++) {
        const vr_worker *w = r->sched.reg.w[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(w->id));
        json_object_set_new(o, "state", json_string(vr_worker_state_name(w->state)));
        json_object_set_new(o, "backend", json_string(w->reg.backend));
        json_object_set_new(o, "model", vr_json_text(w->reg.model, strlen(w->reg.model)));
        json_object_set_new(o, "max_model_len", json_integer(w->reg.max_model_len));
        json_object_set_new(o, "block_size", json_integer(w->reg.block_size));
        json_object_set_new(o, "num_kv_blocks", json_integer(w->reg.num_kv_blocks));
        json_object_set_new(o, "inflight_requests", json_integer(w->inflight_reqs));
        json_object_set_new(o, "inflight_sequences", json_integer(w->inflight_seqs));
        json_object_set_new(o, "num_running", json_integer(w->hb.num_running));
        json_object_set_new(o, "num_waiting", json_integer(w->hb.num_waiting));
        json_object_set_new(o, "kv_usage", json_real(w->hb.kv_usage));
        json_object_set_new(o, "prefix_cache_hits", json_integer((json_int_t)w->hb.prefix_cache_hits));
        json_object_set_new(o, "prefix_cache_queries",
                            json_integer((json_int_t)w->hb.prefix_cache_queries));
        json_object_set_new(o, "routed", json_integer((json_int_t)w->m.routed));
        json_object_set_new(o, "kv_events_synced", json_boolean(w->kv_synced));
        json_object_set_new(o, "kv_events_seq", json_integer((json_int_t)w->kv_seq));
        json_object_set_new(o, "last_seen_ms_ago", json_integer((json_int_t)(now - w->last_seen_ms)));
        json_object_set_new(o, "deaths", json_integer((json_int_t)w->deaths));
        json_array_append_new(arr, o);
    }
    json_t *o = json_object();
    json_object_set_new(o, "policy", json_string(vr_policy_name(r->sched.policy)));
    json_object_set_new(o, "workers", arr);
    vr_http_send_json(req, 200, o);
}

void vr_endpoint_admin_drain(vr_router *r, h2o_req_t *req, const char *worker_id)
{
    vr_worker *w = vr_registry_find(&r->sched.reg, worker_id);
    vr_api_error err;
    if (w == NULL || w->state == VR_WORKER_DEAD || w->state == VR_WORKER_LEFT) {
        vr_api_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
                         "no live worker `%.200s`", worker_id);
        vr_http_send_error(req, &err);
        return;
    }
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_DRAIN);
    vr_link_send_msg(r->link, w->id, &m, NULL);
    w->state = VR_WORKER_DRAINING;
    w->drain_requested = true;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(w->id));
    json_object_set_new(o, "state", json_string("draining"));
    vr_http_send_json(req, 200, o);
}
