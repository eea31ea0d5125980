/* vesta-router: the state shared by its layers.
 *
 * Thread ownership: ONE event-loop thread (h2o evloop, main thread) owns everything here: the
 * HTTP connections, the worker registry, the request table, the prefix indexes, the metrics
 * and every call. The only other thread is the ZMQ link thread (router/link/zmq_link.h), which
 * owns the ROUTER socket and exchanges raw frames with the loop thread through a mutex-guarded
 * queue (outgoing) and an h2o multithread receiver (incoming). Tokenization and chat-template
 * rendering run on the loop thread.
 *
 * Object lifetimes:
 *   vr_call  one HTTP generation request (/v1/completions or /v1/chat/completions). Lives until
 *            both its response is done (or the client left) and every worker request of it has
 *            finished or been aborted.
 *   vr_sub   one worker request: one prompt of the call (a completions request may carry many
 *            prompts), with n sequences. Its id is the protocol request_id.
 *   vr_seq   one of the n sequences: detokenizer, text, logprobs, finish. */
#ifndef VR_ROUTER_H
#define VR_ROUTER_H

#define H2O_USE_LIBUV 0
#include <h2o.h>

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "vesta/chat_template.h"
#include "vesta/detokenizer.h"
#include "vesta/proto.h"
#include "vesta/tokenizer.h"

#include "api/error.h"
#include "api/request.h"
#include "link/zmq_link.h"
#include "metrics/metrics.h"
#include "sched/policy.h"
#include "sched/request_table.h"

#define VR_MAX_API_KEYS 16
#define VR_MAX_SERVED_NAMES 8

typedef struct vr_options {
    const char *host;              /* 127.0.0.1 */
    int port;                      /* 8000; 0 = any free port */
    const char *zmq_bind;          /* tcp://127.0.0.1:5557 */
    const char *model;             /* model path: the tokenizer and chat template come from it */
    const char *tokenizer;         /* overrides model for the tokenizer */
    const char *served_names[VR_MAX_SERVED_NAMES];
    int n_served_names;
    /* --lora-modules: clients name an adapter in "model"; it is sent to the workers by name with
     * id i + 1 (the workers number them the same way, and block keys include the id). */
    vesta_lora_spec loras[VESTA_LORA_MAX_ADAPTERS];
    int n_loras;
    const char *api_keys[VR_MAX_API_KEYS];
    int n_api_keys;
    size_t max_body_bytes;         /* 4 MiB */
    int max_queued_requests;       /* 1024: requests held beyond the workers' max_num_seqs */
    vr_policy policy;              /* prefix-affinity */
    int load_margin;               /* 8 sequences */
    int worker_timeout_ms;         /* 5000 */
    int engine_stall_timeout_ms;   /* 600000: heartbeats report an engine this long on one step */
    int max_model_len;             /* 0 = the smallest one the workers register */
    size_t prefix_index_bytes;     /* 64 MiB */
    int retry_after_s;             /* Retry-After on 429/503 (1) */
} vr_options;

void vr_options_init(vr_options *o);

typedef struct vr_call vr_call;
typedef struct vr_sub vr_sub;

typedef struct vr_seq {
    vesta_detokenizer *detok;
    char *text;                    /* non-streaming: the whole text; streaming: pending piece */
    size_t len, cap;
    int num_tokens;                /* counted tokens (up to and including a stop hit) */
    int32_t *ids;                  /* those tokens */
    int cap_ids;
    json_t *logprobs;              /* chat: content[] entries; completions: object of 4 arrays */
    size_t text_offset;            /* completions logprobs text_offset */
    const char *finish;            /* NULL while running: "stop" | "length" */
    json_t *stop_reason;           /* null, a stop string, or a stop token id */
    bool role_sent;                /* chat streaming: the first delta carried the role */
    bool finish_sent;
} vr_seq;

struct vr_sub {
    char id[VESTA_PROTO_MAX_ID + 1];
    vr_call *call;
    int prompt_index;
    int32_t *prompt_ids;
    int n_prompt;
    uint64_t *hashes;
    int n_hashes;
    int max_tokens;
    char *echo;                    /* completions echo: the prompt text */
    size_t echo_len;
    bool echo_sent;
    struct vr_worker *worker;      /* NULL until dispatched */
    vr_seq *seqs;                  /* [n] */
    int n;
    int seqs_done;                 /* finished from the client's view */
    int worker_seqs_done;          /* finished on the worker (a TOKENS with a finish) */
    bool in_table;                 /* registered: the worker may still send for it */
    bool abort_sent;
    int redispatched;              /* times a worker refused it (VESTA_ERR_LIMIT) */
    int num_cached_tokens;
    double t_dispatch, t_first, t_last;
};

struct vr_call {
    struct vr_router *router;
    h2o_mem_pool_t pool;           /* request-scoped allocations: subs, seqs, block hashes. The
                                      call outlives h2o's req->pool when the client leaves, so it
                                      has its own. */
    h2o_req_t *req;                /* NULL once the client is gone or the response is done */
    struct vr_call_handle *handle; /* lives in req->pool; tells us when h2o disposes req */
    vr_api_request api;
    char id[48];                   /* "cmpl-..." / "chatcmpl-..." */
    int64_t created;
    const char *model_name;
    int lora_id; /* 0 = base model, i + 1 = opt.loras[i] */
    vr_sub *subs;
    int n_subs;
    int subs_done;
    bool failed;
    bool responded;                /* final response (or error) handed to h2o */
    /* streaming */
    bool streaming_started;
    h2o_generator_t generator;
    bool sending;                  /* an h2o_send is in flight: wait for proceed */
    bool final_queued;
    vr_text pending;               /* SSE bytes not yet handed to h2o */
    vr_text inflight;              /* bytes h2o is sending */
    /* timing */
    double t_arrival;
    struct vr_call *next_live, *prev_live; /* the router's list of live calls */
};

typedef struct vr_router {
    vr_options opt;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    int listen_port;
    vr_link *link;
    h2o_multithread_receiver_t link_receiver;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick_entry;
    vesta_tokenizer *tok;
    vesta_chat_template *tpl;      /* NULL when the model has no chat template */
    json_t *tpl_trusted;           /* bos_token, eos_token */
    vr_sched sched;
    vr_request_table table;
    vr_call *live_calls;           /* every call not yet freed */
    int n_live_calls;
    int inflight_subs;
    uint64_t next_id;
    uint64_t instance;
    vr_req_metrics m;              /* aggregated over workers */
    uint64_t http_errors[600];     /* complete responses by status (SSE streams not counted) */
    uint64_t rejected_queue_full;
    uint64_t aborted_by_client;
    uint64_t worker_failures;      /* calls failed because their worker died or errored */
    uint64_t bad_messages;
} vr_router;

/* ---- sched/call.c: generation requests ---- */

/* Handles a /v1/completions or /v1/chat/completions body for `req`: parses, tokenizes,
 * dispatches. Responds (error or result) through http/ functions. */
void vr_call_start(vr_router *r, h2o_req_t *req, vr_api_kind kind);
/* A TOKENS / ERROR message for one of our requests. */
void vr_call_on_tokens(vr_router *r, struct vr_worker *w, const vesta_msg_tokens *t);
void vr_call_on_error(vr_router *r, struct vr_worker *w, const vesta_msg_error *e);
/* Worker `w` died or left: fail every call with a request in flight there. */
/* w went away (its state is no longer live): requests there that sent nothing to their client
 * yet are dispatched to another worker; the others fail with a 503 whose message `why`
 * completes ("worker X stopped responding", ...). */
void vr_call_fail_worker(vr_router *r, struct vr_worker *w, const char *why);
/* The client went away (h2o disposed the request): abort the call's worker requests. */
void vr_call_client_gone(vr_call *c);
/* Polls the sockets of live non-streaming calls for a client hang-up (h2o does not read a
 * connection while its request is being handled). */
void vr_call_poll_disconnects(vr_router *r);
/* Streaming: h2o finished sending; send what is pending. */
void vr_call_proceed(vr_call *c);

/* ---- sched/workers.c: worker protocol ---- */

void vr_workers_on_frame(vr_router *r, const char *identity, const char *data, size_t len);
/* Marks silent workers dead (called every tick). */
void vr_workers_tick(vr_router *r);
/* The model length used for validation: --max-model-len, else the smallest registered one. */
int vr_workers_max_model_len(vr_router *r);
int vr_workers_vocab_size(vr_router *r);

/* ---- http/server.c ---- */

double vr_now(void); /* monotonic seconds */
int64_t vr_now_ms(void);
/* Sends a complete response (copies body). */
void vr_http_send(h2o_req_t *req, int status, const char *content_type, const char *body,
                  size_t len);
void vr_http_send_json(h2o_req_t *req, int status, json_t *body); /* steals body */
void vr_http_send_error(h2o_req_t *req, const vr_api_error *err);

/* ---- http/endpoints.c ---- */
void vr_endpoint_models(vr_router *r, h2o_req_t *req);
void vr_endpoint_health(vr_router *r, h2o_req_t *req);
void vr_endpoint_metrics(vr_router *r, h2o_req_t *req);
void vr_endpoint_version(vr_router *r, h2o_req_t *req);
void vr_endpoint_tokenize(vr_router *r, h2o_req_t *req);
void vr_endpoint_detokenize(vr_router *r, h2o_req_t *req);
void vr_endpoint_admin_workers(vr_router *r, h2o_req_t *req);
void vr_endpoint_admin_drain(vr_router *r, h2o_req_t *req, const char *worker_id);

/* Checks `model` (NULL = default) against the served names; the canonical name or NULL with a
 * 404 in err. */
/* The served name or adapter that "model" names (NULL: the first served name), with its adapter
 * id in *lora_id (0 = the base model; lora_id may be NULL). NULL and a 404 in err if none. */
const char *vr_router_model_name(vr_router *r, const char *model, int *lora_id, vr_api_error *err);

#endif
