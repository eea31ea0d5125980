/* Generation calls: from a parsed request to worker requests and back to an HTTP response or an
 * SSE stream. Everything runs on the event-loop thread (router.h). */
#include "router.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "vesta/prefix_hash.h"
#include "api/prompt.h"
#include "api/response.h"

/* Lives in req->pool: h2o disposes it with the request (response done, or client gone). */
typedef struct vr_call_handle {
    vr_call *call;
} vr_call_handle;

static void call_maybe_free(vr_call *c);
static void call_finish(vr_call *c);
static vesta_status sub_dispatch(vr_router *r, vr_sub *s, vr_api_error *err);

#define VR_MAX_REDISPATCH 3 /* a request refused by draining/full workers tries this many others */

/* ---- small helpers ---- */

static void text_append(vr_seq *s, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *t = realloc(s->text, cap);
        if (t == NULL)
            return; /* keeps the old text; the response is then short, never corrupt */
        s->text = t;
        s->cap = cap;
    }
    memcpy(s->text + s->len, p, n);
    s->len += n;
    s->text[s->len] = '\0';
}

static vr_finish_kind finish_kind(const char *f)
{
    if (f == NULL)
        return VR_FINISH_ERROR;
    if (strcmp(f, "stop") == 0)
        return VR_FINISH_STOP;
    if (strcmp(f, "length") == 0)
        return VR_FINISH_LENGTH;
    if (strcmp(f, "abort") == 0)
        return VR_FINISH_ABORT;
    return VR_FINISH_ERROR;
}

static void live_link(vr_router *r, vr_call *c)
{
    c->next_live = r->live_calls;
    if (r->live_calls)
        r->live_calls->prev_live = c;
    r->live_calls = c;
    r->n_live_calls++;
}

static void live_unlink(vr_router *r, vr_call *c)
{
    if (c->prev_live)
        c->prev_live->next_live = c->next_live;
    else
        r->live_calls = c->next_live;
    if (c->next_live)
        c->next_live->prev_live = c->prev_live;
    r->n_live_calls--;
}

/* ---- worker side of a sub ---- */

/* The worker will send nothing more we care about: forget the sub in the table. */
static void sub_release_worker(vr_sub *s)
{
    vr_router *r = s->call->router;
    if (!s->in_table)
        return;
    vr_request_table_remove(&r->table, s->id);
    s->in_table = false;
    r->inflight_subs--;
    if (s->worker != NULL) {
        s->worker->inflight_reqs--;
        s->worker->inflight_seqs -= s->n;
    }
}

static void sub_abort(vr_sub *s)
{
    vr_router *r = s->call->router;
    if (!s->in_table)
        return;
    if (!s->abort_sent && s->worker != NULL && s->worker->state != VR_WORKER_DEAD &&
        s->worker->state != VR_WORKER_LEFT) {
        vesta_msg m;
        vesta_msg_init(&m, VESTA_MSG_ABORT);
        snprintf(m.u.abort.request_id, sizeof m.u.abort.request_id, "%s", s->id);
        vr_link_send_msg(r->link, s->worker->id, &m, NULL);
        s->abort_sent = true;
    }
    sub_release_worker(s);
}

/* ---- output ---- */

static void sse_append_json(vr_call *c, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (s == NULL)
        return;
    vr_text_printf(&c->pending, "data: %s\n\n", s);
    free(s);
}

static void stream_flush(vr_call *c);

static void stream_start(vr_call *c)
{
    if (c->streaming_started || c->req == NULL)
        return;
    h2o_req_t *req = c->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    h2o_start_response(req, &c->generator);
    c->streaming_started = true;
}

/* Hands pending bytes to h2o when it is not busy with earlier ones. */
static void stream_flush(vr_call *c)
{
    if (c->req == NULL || !c->streaming_started || c->sending || c->responded)
        return;
    if (c->pending.len == 0 && !c->final_queued)
        return;
    if (c->final_queued) {
        /* the last buffer lives in the request's pool so that the call can go now */
        h2o_iovec_t buf = h2o_strdup(&c->req->pool, c->pending.data ? c->pending.data : "",
                                     c->pending.len);
        c->pending.len = 0;
        c->responded = true;
        h2o_req_t *req = c->req;
        h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
        return;
    }
    vr_text t = c->inflight;
    c->inflight = c->pending;
    c->pending = t;
    c->pending.len = 0;
    c->sending = true;
    h2o_iovec_t buf = h2o_iovec_init(c->inflight.data, c->inflight.len);
    h2o_send(c->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
}

void vr_call_proceed(vr_call *c)
{
    c->sending = false;
    c->inflight.len = 0;
    stream_flush(c);
    call_maybe_free(c);
}

static int choice_index(const vr_sub *s, int seq) { return s->prompt_index * s->n + seq; }

/* Streaming: one chunk with what seq `i` of `s` produced since the last chunk. */
static void emit_chunk(vr_sub *s, int i)
{
    vr_call *c = s->call;
    vr_seq *q = &s->seqs[i];
    bool first = !q->role_sent;
    if (q->len == 0 && q->logprobs == NULL && !(q->finish && !q->finish_sent) && !first)
        return;
    stream_start(c);
    vr_api_kind kind = c->api.kind;
    json_t *chunk = vr_resp_envelope(kind, true, c->id, c->created, c->model_name);
    const char *text = q->text ? q->text : "";
    size_t len = q->len;
    char *joined = NULL;
    if (first && s->echo_len > 0 && kind == VR_API_COMPLETION) {
        joined = malloc(s->echo_len + len + 1);
        if (joined) {
            memcpy(joined, s->echo, s->echo_len);
            memcpy(joined + s->echo_len, text, len);
            text = joined;
            len += s->echo_len;
        }
    }
    json_t *stop_reason = NULL;
    if (q->finish && !q->finish_sent && q->stop_reason)
        stop_reason = json_incref(q->stop_reason);
    json_array_append_new(json_object_get(chunk, "choices"),
                          vr_resp_choice(kind, true, choice_index(s, i), text, len, first,
                                         q->logprobs, q->finish_sent ? NULL : q->finish,
                                         stop_reason));
    free(joined);
    q->logprobs = NULL;
    if (c->api.include_usage)
        json_object_set_new(chunk, "usage", json_null());
    q->role_sent = true;
    if (q->finish)
        q->finish_sent = true;
    q->len = 0;
    sse_append_json(c, chunk);
}

/* ---- results ---- */

static void count_usage(const vr_call *c, int *prompt, int *completion, int *cached)
{
    *prompt = *completion = *cached = 0;
    for (int k = 0; k < c->n_subs; k++) {
        const vr_sub *s = &c->subs[k];
        *prompt += s->n_prompt;
        *cached += s->num_cached_tokens;
        for (int i = 0; i < s->n; i++)
            *completion += s->seqs[i].num_tokens;
    }
}

static json_t *build_response(vr_call *c)
{
    vr_api_kind kind = c->api.kind;
    json_t *o = vr_resp_envelope(kind, false, c->id, c->created, c->model_name);
    json_t *choices = json_object_get(o, "choices");
    for (int k = 0; k < c->n_subs; k++) {
        vr_sub *s = &c->subs[k];
        for (int i = 0; i < s->n; i++) {
            vr_seq *q = &s->seqs[i];
            const char *text = q->text ? q->text : "";
            size_t len = q->len;
            char *joined = NULL;
            if (s->echo_len > 0) {
                joined = malloc(s->echo_len + len + 1);
                if (joined) {
                    memcpy(joined, s->echo, s->echo_len);
                    memcpy(joined + s->echo_len, text, len);
                    text = joined;
                    len += s->echo_len;
                }
            }
            json_array_append_new(choices,
                                  vr_resp_choice(kind, false, choice_index(s, i), text, len, true,
                                                 q->logprobs,
                                                 q->finish ? q->finish : "length",
                                                 q->stop_reason ? json_incref(q->stop_reason)
                                                                : NULL));
            q->logprobs = NULL;
            free(joined);
        }
    }
    int p, g, cached;
    count_usage(c, &p, &g, &cached);
    json_object_set_new(o, "usage", vr_resp_usage(p, g, cached));
    return o;
}

/* All subs finished: the final response or the end of the stream. */
static void call_finish(vr_call *c)
{
    if (c->responded || c->failed)
        return;
    if (c->req == NULL) {
        c->responded = true;
        return;
    }
    if (!c->api.stream) {
        c->responded = true;
        vr_http_send_json(c->req, 200, build_response(c));
        return;
    }
    stream_start(c);
    if (c->api.include_usage) {
        int p, g, cached;
        count_usage(c, &p, &g, &cached);
        json_t *u = vr_resp_envelope(c->api.kind, true, c->id, c->created, c->model_name);
        json_object_set_new(u, "usage", vr_resp_usage(p, g, cached));
        sse_append_json(c, u);
    }
    vr_text_printf(&c->pending, "data: [DONE]\n\n");
    c->final_queued = true;
    stream_flush(c);
}

/* Fails the whole call: aborts its other worker requests; a 5xx, or an SSE error event. */
static void call_fail(vr_call *c, const vr_api_error *err)
{
    if (c->failed)
        return;
    c->failed = true;
    for (int k = 0; k < c->n_subs; k++)
        sub_abort(&c->subs[k]);
    if (c->req == NULL || c->responded)
        return;
    if (!c->streaming_started) {
        c->responded = true;
        vr_http_send_error(c->req, err);
        return;
    }
    size_t len;
    char *body = vr_api_error_body(err, &len);
    if (body) {
        vr_text_printf(&c->pending, "data: %s\n\n", body);
        free(body);
    }
    vr_text_printf(&c->pending, "data: [DONE]\n\n");
    c->final_queued = true;
    stream_flush(c);
}

static void call_free(vr_call *c)
{
    vr_router *r = c->router;
    for (int k = 0; k < c->n_subs; k++) {
        vr_sub *s = &c->subs[k];
        sub_release_worker(s);
        for (int i = 0; s->seqs != NULL && i < s->n; i++) {
            vesta_detokenizer_release(s->seqs[i].detok);
            free(s->seqs[i].text);
            free(s->seqs[i].ids);
            json_decref(s->seqs[i].logprobs);
            json_decref(s->seqs[i].stop_reason);
        }
        free(s->prompt_ids);
        free(s->echo);
    }
    h2o_mem_clear_pool(&c->pool); /* subs, seqs, block hashes */
    if (c->handle)
        c->handle->call = NULL;
    vr_text_free(&c->pending);
    vr_text_free(&c->inflight);
    vr_api_request_clear(&c->api);
    live_unlink(r, c);
    free(c);
}

/* A call goes once nothing refers to it: response handed over (or client gone), no worker
 * request in the table, and h2o not holding one of its buffers. */
static void call_maybe_free(vr_call *c)
{
    if (c->sending && c->req != NULL)
        return;
    if (!(c->responded || c->req == NULL))
        return;
    for (int k = 0; k < c->n_subs; k++)
        if (c->subs[k].in_table)
            return;
    call_free(c);
}

static void handle_dispose(void *p)
{
    vr_call_handle *h = p;
    if (h->call != NULL) {
        vr_call *c = h->call;
        c->handle = NULL;
        vr_call_client_gone(c);
    }
}

void vr_call_client_gone(vr_call *c)
{
    bool was_done = c->responded && c->subs_done == c->n_subs;
    c->req = NULL;
    c->sending = false;
    if (!was_done)
        c->router->aborted_by_client++;
    for (int k = 0; k < c->n_subs; k++)
        sub_abort(&c->subs[k]);
    call_maybe_free(c);
}

static void generator_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    vr_call *c = H2O_STRUCT_FROM_MEMBER(vr_call, generator, g);
    vr_call_proceed(c);
}

static void generator_stop(h2o_generator_t *g, h2o_req_t *req)
{
    /* h2o disposes the request's pool right after this: handle_dispose does the work */
}

/* ---- seq results from a worker ---- */

static void seq_finish(vr_sub *s, int i, const char *finish, json_t *stop_reason)
{
    vr_seq *q = &s->seqs[i];
    vr_router *r = s->call->router;
    if (q->finish != NULL) {
        json_decref(stop_reason);
        return;
    }
    q->finish = finish;
    q->stop_reason = stop_reason;
    s->seqs_done++;
    vr_finish_kind k = finish_kind(finish);
    r->m.success[k]++;
    if (s->worker)
        s->worker->m.success[k]++;
}

/* Which stop string ended the text (vLLM's stop_reason): decode the prompt context + the
 * tokens and find the stop string that starts (or, when included, ends) where the emitted text
 * ends. NULL when it cannot be told. */
static json_t *find_stop_string(vr_sub *s, vr_seq *q)
{
    vr_router *r = s->call->router;
    const vr_api_request *a = &s->call->api;
    if (a->n_stop == 1)
        return json_string(a->stop[0]);
    size_t elen;
    const char *emitted = vesta_detokenizer_text(q->detok, &elen);
    if (a->include_stop_str_in_output) {
        for (size_t k = 0; k < a->n_stop; k++) {
            size_t sl = strlen(a->stop[k]);
            if (elen >= sl && memcmp(emitted + elen - sl, a->stop[k], sl) == 0)
                return json_string(a->stop[k]);
        }
        return NULL;
    }
    char *full = NULL;
    size_t flen = 0;
    vesta_error e;
    if (vesta_tokenizer_decode(r->tok, q->ids, (size_t)q->num_tokens, a->skip_special_tokens, &full,
                               &flen, &e) != VESTA_OK) {
        free(full);
        return NULL;
    }
    /* the emitted text may differ from a context-free decode by a leading space: search
     * from a little before its end */
    size_t from = elen > 4 ? elen - 4 : 0;
    json_t *best = NULL;
    size_t best_at = (size_t)-1;
    for (size_t k = 0; k < a->n_stop; k++) {
        const char *hit = from <= flen ? memmem(full + from, flen - from, a->stop[k], strlen(a->stop[k])) : NULL;
        if (hit != NULL && (size_t)(hit - full) < best_at) {
            best_at = (size_t)(hit - full);
            json_decref(best);
            best = json_string(a->stop[k]);
        }
    }
    free(full);
    return best;
}

static bool seq_push_id(vr_seq *q, int32_t id)
{
    if (q->num_tokens + 1 > q->cap_ids) {
        int cap = q->cap_ids ? q->cap_ids * 2 : 64;
        int32_t *ids = realloc(q->ids, (size_t)cap * sizeof *ids);
        if (ids == NULL)
            return false;
        q->ids = ids;
        q->cap_ids = cap;
    }
    q->ids[q->num_tokens++] = id;
    return true;
}

static void feed_tokens(vr_sub *s, vr_seq *q, int i, const vesta_msg_tokens *t)
{
    vr_router *r = s->call->router;
    vr_call *c = s->call;
    for (int k = 0; k < t->num_new && q->finish == NULL; k++) {
        const char *piece = NULL;
        size_t plen = 0;
        bool stopped = false;
        vesta_error e;
        size_t emitted_len = 0;
        vesta_detokenizer_text(q->detok, &emitted_len);
        if (!seq_push_id(q, t->new_token_ids[k]))
            q->num_tokens++; /* counted even when it cannot be remembered */
        if (vesta_detokenizer_feed(q->detok, t->new_token_ids[k], &piece, &plen, &stopped, &e) !=
            VESTA_OK) {
            /* a token outside the vocabulary: the worker and router disagree on the model */
            vr_api_error err;
            vr_api_error_set(&err, 502, "server_error", NULL, NULL,
                             "worker %s sent an invalid token: %s",
                             s->worker ? s->worker->id : "?", e.msg);
            call_fail(c, &err);
            return;
        }
        if (c->api.want_logprobs && t->logprobs != NULL)
            q->logprobs = vr_resp_logprobs_add(c->api.kind, q->logprobs, r->tok, &t->logprobs[k],
                                               c->api.num_top_logprobs,
                                               s->echo_len + emitted_len);
        text_append(q, piece, plen);
        if (stopped)
            seq_finish(s, i, "stop", find_stop_string(s, q));
    }
    if (q->finish == NULL && t->finish[0] != '\0') {
        vr_finish_kind k = finish_kind(t->finish);
        if (k == VR_FINISH_ABORT || k == VR_FINISH_ERROR) {
            vr_api_error err;
            vr_api_error_set(&err, 503, "server_error", NULL, NULL,
                             "the request was %s by worker %s",
                             k == VR_FINISH_ABORT ? "aborted" : "failed",
                             s->worker ? s->worker->id : "?");
            err.retry_after = r->opt.retry_after_s;
            call_fail(c, &err);
            return;
        }
        const char *piece = NULL;
        size_t plen = 0;
        vesta_error e;
        if (vesta_detokenizer_finish(q->detok, &piece, &plen, &e) == VESTA_OK)
            text_append(q, piece, plen);
        json_t *reason = NULL;
        if (k == VR_FINISH_STOP && t->stop_token >= 0) {
            for (int j = 0; j < c->api.sp.num_stop_token_ids; j++)
                if (c->api.sp.stop_token_ids[j] == t->stop_token)
                    reason = json_integer(t->stop_token);
        }
        seq_finish(s, i, k == VR_FINISH_STOP ? "stop" : "length", reason);
    }
}

void vr_call_on_tokens(vr_router *r, vr_worker *w, const vesta_msg_tokens *t)
{
    vr_sub *s = vr_request_table_get(&r->table, t->request_id);
    if (s == NULL || s->worker != w || t->seq_index < 0 || t->seq_index >= s->n)
        return; /* late (aborted) or foreign: ignored */
    vr_call *c = s->call;
    vr_seq *q = &s->seqs[t->seq_index];
    double now = vr_now();
    if (t->num_new > 0) {
        if (s->t_first == 0) {
            s->t_first = now;
            vr_hist_observe(&r->m.hist[VR_HIST_TTFT], VR_HIST_TTFT, now - s->t_dispatch);
            vr_hist_observe(&w->m.hist[VR_HIST_TTFT], VR_HIST_TTFT, now - s->t_dispatch);
        } else {
            double per = (now - s->t_last) / t->num_new;
            for (int k = 0; k < t->num_new; k++) {
                vr_hist_observe(&r->m.hist[VR_HIST_ITL], VR_HIST_ITL, per);
                vr_hist_observe(&w->m.hist[VR_HIST_ITL], VR_HIST_ITL, per);
            }
        }
        s->t_last = now;
    }
    if (t->num_cached_tokens > s->num_cached_tokens)
        s->num_cached_tokens = t->num_cached_tokens;
    if (t->finish[0] != '\0')
        s->worker_seqs_done++;
    bool was_finished = q->finish != NULL;
    int before = q->num_tokens;
    if (!was_finished)
        feed_tokens(s, q, t->seq_index, t);
    if (c->failed) {
        call_maybe_free(c);
        return;
    }
    int produced = q->num_tokens - before;
    r->m.generation_tokens += produced;
    w->m.generation_tokens += produced;
    if (c->api.stream && !was_finished)
        emit_chunk(s, t->seq_index);
    if (s->seqs_done == s->n && s->in_table) {
        /* every sequence is done for the client; stop the worker if it is still going */
        bool worker_done = s->worker_seqs_done >= s->n;
        if (worker_done)
            sub_release_worker(s);
        else
            sub_abort(s);
        c->subs_done++;
        double e2e = now - c->t_arrival;
        vr_hist_observe(&r->m.hist[VR_HIST_E2E], VR_HIST_E2E, e2e);
        vr_hist_observe(&w->m.hist[VR_HIST_E2E], VR_HIST_E2E, e2e);
        if (c->subs_done == c->n_subs)
            call_finish(c);
    }
    if (c->api.stream)
        stream_flush(c);
    call_maybe_free(c);
}

void vr_call_on_error(vr_router *r, vr_worker *w, const vesta_msg_error *e)
{
    vr_sub *s = vr_request_table_get(&r->table, e->request_id);
    if (s == NULL || s->worker != w)
        return;
    vr_call *c = s->call;
    vr_api_error err;
    bool untouched = true; /* nothing of it reached the client yet */
    for (int i = 0; i < s->n; i++)
        untouched &= s->seqs[i].num_tokens == 0;
    if (e->code == VESTA_ERR_LIMIT && untouched && s->redispatched < VR_MAX_REDISPATCH) {
        /* a draining or full worker refused it: try another one */
        sub_release_worker(s);
        if (w->state == VR_WORKER_LIVE)
            w->state = VR_WORKER_DRAINING;
        s->redispatched++;
        if (sub_dispatch(r, s, &err) == VESTA_OK)
            return;
        call_fail(c, &err);
        call_maybe_free(c);
        return;
    }
    /* the router validated the request, so a refusal means the worker disagrees with it
     * (e.g. a smaller max_model_len) or failed */
    if (e->code == VESTA_ERR_INVALID_ARG)
        vr_api_error_bad(&err, NULL, "%s", e->message);
    else if (e->code == VESTA_ERR_NOT_FOUND) /* a LoRA adapter the router lists but the worker lacks */
        vr_api_error_set(&err, 404, "NotFoundError", "model_not_found", "model", "worker %s: %s", w->id, e->message);
    else if (e->code == VESTA_ERR_LIMIT) {
        vr_api_error_set(&err, 503, "server_error", NULL, NULL, "worker %s is full: %s", w->id,
                         e->message);
        err.retry_after = r->opt.retry_after_s;
    } else
        vr_api_error_set(&err, 500, "server_error", NULL, NULL, "worker %s failed: %s", w->id,
                         e->message);
    sub_release_worker(s); /* the worker dropped it already */
    if (e->code != VESTA_ERR_NOT_FOUND) r->worker_failures++;
    call_fail(c, &err);
    call_maybe_free(c);
}

void vr_call_fail_worker(vr_router *r, vr_worker *w, const char *why)
{
    vr_api_error err;
    vr_api_error_set(&err, 503, "server_error", NULL, NULL,
                     "worker %s %s; the request was not completed", w->id, why);
    err.retry_after = r->opt.retry_after_s;
    vr_call *c = r->live_calls;
    while (c != NULL) {
        vr_call *next = c->next_live;
        bool hit = false;
        for (int k = 0; k < c->n_subs; k++) {
            vr_sub *s = &c->subs[k];
            if (!s->in_table || s->worker != w)
                continue;
            sub_release_worker(s);
            /* Nothing of it reached the client yet: it is not lost, it runs elsewhere. w is no
             * longer live, so the pick cannot land on it again. */
            bool untouched = true;
            for (int i = 0; i < s->n; i++)
                untouched &= s->seqs[i].num_tokens == 0;
            vr_api_error derr;
            if (!hit && untouched && s->redispatched < VR_MAX_REDISPATCH) {
                s->redispatched++;
                if (sub_dispatch(r, s, &derr) == VESTA_OK)
                    continue;
            }
            hit = true;
        }
        if (hit) {
            r->worker_failures++;
            call_fail(c, &err);
            call_maybe_free(c);
        }
        c = next;
    }
}

void vr_call_poll_disconnects(vr_router *r)
{
    vr_call *c = r->live_calls;
    while (c != NULL) {
        vr_call *next = c->next_live;
        if (c->req != NULL && !c->responded && c->req->conn->callbacks->get_socket != NULL) {
            h2o_socket_t *sock = c->req->conn->callbacks->get_socket(c->req->conn);
            int fd = sock ? h2o_socket_get_fd(sock) : -1;
            char b;
            ssize_t n = fd >= 0 ? recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) : 1;
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                /* the client hung up: stop the workers now, then let h2o find out by writing */
                r->aborted_by_client++;
                for (int k = 0; k < c->n_subs; k++)
                    sub_abort(&c->subs[k]);
                c->failed = true;
                if (c->streaming_started) {
                    c->final_queued = true;
                    stream_flush(c);
                } else {
                    vr_api_error err;
                    vr_api_error_bad(&err, NULL, "client closed the connection");
                    c->responded = true;
                    vr_http_send_error(c->req, &err);
                }
                call_maybe_free(c);
            }
        }
        c = next;
    }
}

/* ---- start ---- */

static vesta_status context_check(int n_prompt, int max_tokens, bool explicit_max, int max_len,
                                  vr_api_error *err)
{
    if (n_prompt >= max_len && !explicit_max)
        return vr_api_error_bad(err, "messages",
                                "This model's maximum context length is %d tokens. However, you "
                                "requested %d tokens in the messages, Please reduce the length "
                                "of the messages.",
                                max_len, n_prompt);
    if ((int64_t)n_prompt + max_tokens > max_len)
        return vr_api_error_bad(err, "max_tokens",
                                "This model's maximum context length is %d tokens. However, you "
                                "requested %lld tokens (%d in the messages, %d in the "
                                "completion). Please reduce the length of the messages or "
                                "completion.",
                                max_len, (long long)n_prompt + max_tokens, n_prompt, max_tokens);
    return VESTA_OK;
}

/* Tokenizes prompt k of the call into sub k. */
static vesta_status sub_prepare(vr_router *r, vr_call *c, int k, int max_len, vr_api_error *err)
{
    vr_sub *s = &c->subs[k];
    vr_api_request *a = &c->api;
    size_t n = 0;
    s->call = c;
    s->prompt_index = k;
    s->n = a->sp.n;
    snprintf(s->id, sizeof s->id, "%s-%d", c->id, k);
    if (a->kind == VR_API_CHAT) {
        vr_chat_input in = {a->messages, a->tools, a->chat_template_kwargs,
                            a->add_generation_prompt, a->continue_final_message,
                            a->add_special_tokens};
        if (vr_prompt_encode_chat(r->tpl, r->tpl_trusted, r->tok, &in, &s->prompt_ids, &n, err) !=
            VESTA_OK)
            return VESTA_ERR_INVALID_ARG;
    } else if (a->prompts[k].text != NULL) {
        if (vr_prompt_encode_text(r->tok, a->prompts[k].text, a->prompts[k].text_len,
                                  a->add_special_tokens, &s->prompt_ids, &n, err) != VESTA_OK)
            return VESTA_ERR_INVALID_ARG;
        if (a->echo) {
            s->echo = malloc(a->prompts[k].text_len + 1);
            if (s->echo) {
                memcpy(s->echo, a->prompts[k].text, a->prompts[k].text_len);
                s->echo_len = a->prompts[k].text_len;
            }
        }
    } else {
        n = a->prompts[k].n_ids;
        s->prompt_ids = malloc(n * sizeof(int32_t));
        if (s->prompt_ids == NULL)
            return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
        memcpy(s->prompt_ids, a->prompts[k].ids, n * sizeof(int32_t));
        if (a->echo) {
            vesta_error e;
            if (vesta_tokenizer_decode(r->tok, s->prompt_ids, n, a->skip_special_tokens, &s->echo,
                                       &s->echo_len, &e) != VESTA_OK)
                return vr_api_error_bad(err, "prompt", "cannot decode the prompt: %s", e.msg);
        }
    }
    if (n > VESTA_PROTO_MAX_PROMPT_TOKENS)
        return vr_api_error_bad(err, "prompt", "the prompt has %zu tokens; at most %d are allowed",
                                n, VESTA_PROTO_MAX_PROMPT_TOKENS);
    s->n_prompt = (int)n;
    s->max_tokens = vr_api_default_max_tokens(a, s->n_prompt, max_len);
    if (context_check(s->n_prompt, s->max_tokens, a->sp.max_tokens > 0, max_len, err) != VESTA_OK)
        return VESTA_ERR_INVALID_ARG;
    /* the worker runs the same check; doing it here gives the client a 400 before dispatch */
    vesta_sampling_params sp = a->sp;
    sp.max_tokens = s->max_tokens;
    vesta_error ve;
    if (vesta_sampling_params_validate(&sp, vr_workers_vocab_size(r), &ve) != VESTA_OK)
        return vr_api_error_bad(err, NULL, "%s", ve.msg);
    s->seqs = h2o_mem_alloc_pool(&c->pool, (size_t)s->n * sizeof *s->seqs);
    memset(s->seqs, 0, (size_t)s->n * sizeof *s->seqs);
    size_t n_ctx = n < 8 ? n : 8;
    vesta_detokenizer_opts dopts = {a->skip_special_tokens, a->stop, a->n_stop,
                                    a->include_stop_str_in_output,
                                    s->prompt_ids + (n - n_ctx), n_ctx};
    for (int i = 0; i < s->n; i++) {
        vesta_error e;
        s->seqs[i].detok = vesta_detokenizer_create(r->tok, &dopts, &e);
        if (s->seqs[i].detok == NULL)
            return vr_api_error_bad(err, "stop", "%s", e.msg);
    }
    return VESTA_OK;
}

static vesta_status sub_dispatch(vr_router *r, vr_sub *s, vr_api_error *err)
{
    vr_call *c = s->call;
    int bs;
    uint64_t salt;
    if (vr_sched_hash_params(&r->sched, &bs, &salt)) {
        int nb = s->n_prompt / bs;
        s->hashes = nb > 0 ? h2o_mem_alloc_pool(&c->pool, (size_t)nb * sizeof(uint64_t)) : NULL;
        if (s->hashes != NULL) {
            vesta_block_hash_extra extra = {salt, c->lora_id};
            s->n_hashes = vesta_block_hash_chain(s->prompt_ids, s->n_prompt, bs, &extra, s->hashes, nb);
        }
    }
    vr_route_reason why;
    int matched;
    vr_worker *w = vr_sched_pick(&r->sched, s->hashes, s->n_hashes, &why, &matched);
    if (w == NULL) {
        vr_api_error_set(err, 503, "server_error", NULL, NULL, "no worker is available");
        err->retry_after = r->opt.retry_after_s;
        return VESTA_ERR_LIMIT;
    }
    vesta_msg m;
    vesta_msg_init(&m, VESTA_MSG_GENERATE);
    snprintf(m.u.generate.request_id, sizeof m.u.generate.request_id, "%s", s->id);
    m.u.generate.num_prompt = s->n_prompt;
    m.u.generate.prompt_ids = s->prompt_ids;
    m.u.generate.sp = c->api.sp;
    m.u.generate.sp.max_tokens = s->max_tokens;
    if (c->lora_id > 0) {
        m.u.generate.lora_id = c->lora_id;
        snprintf(m.u.generate.lora_name, sizeof m.u.generate.lora_name, "%s", r->opt.loras[c->lora_id - 1].name);
    }
    vesta_error e;
    if (vr_link_send_msg(r->link, w->id, &m, &e) != VESTA_OK)
        return vr_api_error_set(err, 500, "internal_error", NULL, NULL,
                                "cannot encode the request: %s", e.msg);
    if (vr_request_table_put(&r->table, s->id, s) != VESTA_OK)
        return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "request table full");
    s->worker = w;
    s->in_table = true;
    s->t_dispatch = vr_now();
    r->inflight_subs++;
    w->inflight_reqs++;
    w->inflight_seqs += s->n;
    w->m.routed++;
    r->m.routed++;
    w->m.prompt_tokens += (uint64_t)s->n_prompt;
    r->m.prompt_tokens += (uint64_t)s->n_prompt;
    vr_hist_observe(&r->m.hist[VR_HIST_QUEUE], VR_HIST_QUEUE, s->t_dispatch - c->t_arrival);
    vr_hist_observe(&w->m.hist[VR_HIST_QUEUE], VR_HIST_QUEUE, s->t_dispatch - c->t_arrival);
    vr_sched_record(&r->sched, w, s->hashes, s->n_hashes);
    return VESTA_OK;
}

/* The bounded queue: at most max_queued_requests worker requests admitted and unfinished,
 * cluster-wide (--max-queued-requests). */
static bool admit(vr_router *r, int subs)
{
    return (int64_t)r->inflight_subs + subs <= r->opt.max_queued_requests;
}

void vr_call_start(vr_router *r, h2o_req_t *req, vr_api_kind kind)
{
    vr_api_error err;
    vr_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        vr_api_error_set(&err, 500, "internal_error", NULL, NULL, "out of memory");
        vr_http_send_error(req, &err);
        return;
    }
    c->router = r;
    h2o_mem_init_pool(&c->pool);
    c->t_arrival = vr_now();
    live_link(r, c);
    vr_api_limits lim;
    vr_api_limits_init(&lim);
    lim.vocab_size = vr_workers_vocab_size(r);
    if (vr_api_request_parse(kind, req->entity.base, req->entity.len, &lim, &c->api, &err) !=
        VESTA_OK)
        goto fail;
    c->model_name = vr_router_model_name(r, c->api.model, &c->lora_id, &err);
    if (c->model_name == NULL)
        goto fail;
    int max_len = vr_workers_max_model_len(r);
    if (max_len <= 0) {
        vr_api_error_set(&err, 503, "server_error", NULL, NULL, "no worker is available");
        err.retry_after = r->opt.retry_after_s;
        goto fail;
    }
    snprintf(c->id, sizeof c->id, "%s-%08" PRIx64 "%08" PRIx64,
             kind == VR_API_CHAT ? "chatcmpl" : "cmpl", r->instance & 0xffffffffu, ++r->next_id);
    c->created = (int64_t)time(NULL);
    c->n_subs = kind == VR_API_CHAT ? 1 : (int)c->api.n_prompts;
    c->subs = h2o_mem_alloc_pool(&c->pool, (size_t)c->n_subs * sizeof *c->subs);
    memset(c->subs, 0, (size_t)c->n_subs * sizeof *c->subs);
    for (int k = 0; k < c->n_subs; k++) {
        c->subs[k].call = c;
        if (sub_prepare(r, c, k, max_len, &err) != VESTA_OK)
            goto fail;
    }
    if (!admit(r, c->n_subs)) {
        r->rejected_queue_full++;
        vr_api_error_set(&err, 503, "server_error", "queue_full", NULL,
                         "The server is busy: %d requests are in flight and the queue is full; "
                         "retry later",
                         r->inflight_subs);
        err.retry_after = r->opt.retry_after_s;
        goto fail;
    }
    c->req = req;
    c->generator.proceed = generator_proceed;
    c->generator.stop = generator_stop;
    c->handle = h2o_mem_alloc_shared(&req->pool, sizeof *c->handle, handle_dispose);
    c->handle->call = c;
    for (int k = 0; k < c->n_subs; k++) {
        if (sub_dispatch(r, &c->subs[k], &err) != VESTA_OK) {
            call_fail(c, &err);
            call_maybe_free(c);
            return;
        }
    }
    return;
fail:
    vr_http_send_error(req, &err);
    c->responded = true;
    call_maybe_free(c);
}
