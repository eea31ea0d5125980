/* The router <-> worker protocol: msgpack messages over ZeroMQ (schema: proto/README.md).
 *
 * Transport: the router binds a ROUTER socket (VESTA_PROTO_DEFAULT_ENDPOINT, loopback unless
 * configured); every worker connects a DEALER socket whose ZMQ identity is its worker id. One ZMQ
 * message = one frame = one msgpack map {"v": VESTA_PROTO_VERSION, "type": "<name>", ...fields}.
 *
 *   vesta_msg m; vesta_msg_init(&m, VESTA_MSG_ABORT);
 *   snprintf(m.u.abort.request_id, sizeof m.u.abort.request_id, "%s", id);
 *   msgpack_sbuffer sb; msgpack_sbuffer_init(&sb);
 *   if (vesta_msg_encode(&m, &sb, &err) == VESTA_OK) zmq_send(sock, sb.data, sb.size, 0);
 *   msgpack_sbuffer_destroy(&sb);
 *
 *   vesta_msg in;
 *   if (vesta_msg_decode(buf, len, &in, &err) != VESTA_OK) { log err.msg; drop; }
 *   ... vesta_msg_clear(&in);
 *
 * Decoding checks every type, length and range and bounds every array (the limits below), so a
 * malformed, truncated, oversized, unknown-type or other-version message is an error and never a
 * crash or an unbounded allocation. Encoding checks the same limits, so whatever encodes also
 * decodes on the other side. */
#ifndef VESTA_PROTO_H
#define VESTA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "vesta/backend.h"  /* vesta_sample_result */
#include "vesta/error.h"
#include "vesta/sampling.h" /* vesta_sampling_params */

#ifdef __cplusplus
extern "C" {
#endif

#define VESTA_PROTO_VERSION 1
#define VESTA_PROTO_DEFAULT_ENDPOINT "tcp://127.0.0.1:5557"

/* Bounds, enforced by encode and decode. String limits count bytes without the NUL. */
#define VESTA_PROTO_MAX_MSG_BYTES (64u << 20)   /* one frame */
#define VESTA_PROTO_MAX_ID 127                  /* worker ids, request ids */
#define VESTA_PROTO_MAX_NAME 1023               /* model path/name, served names */
#define VESTA_PROTO_MAX_SERVED_NAMES 8
#define VESTA_PROTO_MAX_EOS 16
#define VESTA_PROTO_MAX_TEXT 2047               /* error messages, reasons */
#define VESTA_PROTO_MAX_PROMPT_TOKENS (1 << 20) /* GENERATE prompt */
#define VESTA_PROTO_MAX_TOKENS_PER_MSG 4096     /* TOKENS new_token_ids */
#define VESTA_PROTO_MAX_HASHES (1 << 16)        /* KV_EVENTS stored / evicted, each */
#define VESTA_PROTO_MAX_N 256                   /* sampling n */

typedef enum vesta_msg_type {
    VESTA_MSG_NONE = 0,
    /* worker -> router */
    VESTA_MSG_REGISTER,    /* "register": hello / capacity; sent on start and on REREGISTER */
    VESTA_MSG_HEARTBEAT,   /* "heartbeat": load, every heartbeat interval */
    VESTA_MSG_TOKENS,      /* "tokens": new tokens / finish of one sequence of a request */
    VESTA_MSG_KV_EVENTS,   /* "kv_events": prefix-cache blocks stored / evicted */
    VESTA_MSG_GOODBYE,     /* "goodbye": the worker is leaving (drained or shutting down) */
    /* router -> worker */
    VESTA_MSG_REGISTERED,  /* "registered": REGISTER accepted */
    VESTA_MSG_REREGISTER,  /* "reregister": the router does not know this worker: send REGISTER */
    VESTA_MSG_GENERATE,    /* "generate": a new request */
    VESTA_MSG_ABORT,       /* "abort": cancel a request (unknown ids are ignored) */
    VESTA_MSG_DRAIN,       /* "drain": refuse new GENERATEs, finish in-flight, GOODBYE, exit 0 */
    VESTA_MSG_SHUTDOWN,    /* "shutdown": abort in-flight (each gets finish "abort"), GOODBYE, exit 0 */
    /* either direction */
    VESTA_MSG_ERROR,       /* "error": a request (or, with an empty id, the peer) failed */
    VESTA_MSG_TYPE_COUNT
} vesta_msg_type;

/* "register" */
typedef struct vesta_msg_register {
    char worker_id[VESTA_PROTO_MAX_ID + 1];    /* equals the DEALER identity */
    char model[VESTA_PROTO_MAX_NAME + 1];      /* model path (or name) the worker loaded */
    int num_served_names;                      /* >= 1 */
    char served_names[VESTA_PROTO_MAX_SERVED_NAMES][VESTA_PROTO_MAX_NAME + 1];
    char backend[32];                          /* "cpu", "cuda", "sim" */
    int max_model_len;
    int block_size;                            /* tokens per KV block (prefix hash granularity) */
    int num_kv_blocks;
    int max_num_seqs;
    int vocab_size;
    int num_eos;
    int32_t eos_ids[VESTA_PROTO_MAX_EOS];
    bool enable_prefix_caching;
    uint64_t prefix_cache_salt;                /* salt of vesta_block_hash (router must match) */
    int tp_rank, tp_size;                      /* tensor parallel: 0, 1 when not sharded */
    uint64_t instance;                         /* random per worker process start */
} vesta_msg_register;

/* "registered" */
typedef struct vesta_msg_registered {
    uint64_t router_instance;                  /* random per router start */
    int heartbeat_ms;                          /* interval the router expects (0 = keep own) */
} vesta_msg_registered;

/* "heartbeat": vesta_engine_stats plus the worker's protocol state. */
typedef struct vesta_msg_heartbeat {
    int num_running;
    int num_waiting;
    int num_blocks_total;
    int num_blocks_free;
    double kv_usage;                           /* 0..1 */
    uint64_t prefix_cache_queries;             /* tokens looked up (cumulative) */
    uint64_t prefix_cache_hits;                /* tokens found (cumulative) */
    uint64_t num_preemptions;
    uint64_t prompt_tokens_total;
    uint64_t generation_tokens_total;
    uint64_t steps;
    uint64_t kv_events_seq;                    /* seq of the last KV_EVENTS sent (0 = none) */
    bool draining;
    /* Optional (absent = 0): ms since the engine last finished a step while it has had work,
     * 0 when idle. Heartbeats come from an I/O thread, so this is what reveals a hung engine. */
    int64_t busy_ms;
} vesta_msg_heartbeat;

/* "generate" */
typedef struct vesta_msg_generate {
    char request_id[VESTA_PROTO_MAX_ID + 1];
    int num_prompt;                            /* 1 .. VESTA_PROTO_MAX_PROMPT_TOKENS */
    int32_t *prompt_ids;                       /* decode: owned by the message */
    vesta_sampling_params sp;                  /* every field; n <= VESTA_PROTO_MAX_N */
    int32_t lora_id;                           /* 0 = base model, else the adapter's id (--lora-modules
                                                  order, from 1), which block keys include */
    char lora_name[VESTA_PROTO_MAX_NAME + 1];  /* "" = base model, else the adapter's name */
} vesta_msg_generate;

/* "abort" */
typedef struct vesta_msg_abort {
    char request_id[VESTA_PROTO_MAX_ID + 1];
} vesta_msg_abort;

/* "tokens": what one sequence got since its last TOKENS message. The last message of a sequence
 * has finish != "" (then the counts are final). */
typedef struct vesta_msg_tokens {
    char request_id[VESTA_PROTO_MAX_ID + 1];
    int seq_index;                             /* 0 .. n-1 */
    int num_new;                               /* 0 .. VESTA_PROTO_MAX_TOKENS_PER_MSG */
    int32_t *new_token_ids;                    /* [num_new]; decode: owned */
    vesta_sample_result *logprobs;             /* [num_new] or NULL; decode: owned */
    char finish[16];                           /* "" (running), "stop", "length", "abort", "error" */
    int32_t stop_token;                        /* token that finished it with "stop", else -1 */
    int num_prompt_tokens;
    int num_output_tokens;
    int num_cached_tokens;
} vesta_msg_tokens;

/* "kv_events": seq starts at 1 after each REGISTER and grows by 1 per message, so a gap tells
 * the router its index for this worker is stale. Apply all_cleared first, then evicted, then
 * stored. */
typedef struct vesta_msg_kv_events {
    uint64_t seq;
    bool all_cleared;                          /* every block of this worker was dropped */
    int num_stored;
    uint64_t *stored;                          /* block hashes (vesta_block_hash); decode: owned */
    int num_evicted;
    uint64_t *evicted;                         /* decode: owned */
} vesta_msg_kv_events;

/* "error" */
typedef struct vesta_msg_error {
    char request_id[VESTA_PROTO_MAX_ID + 1];   /* "" = about the peer, not a request */
    int code;                                  /* a vesta_status */
    char message[VESTA_PROTO_MAX_TEXT + 1];
} vesta_msg_error;

/* "goodbye" */
typedef struct vesta_msg_goodbye {
    char reason[VESTA_PROTO_MAX_TEXT + 1];
} vesta_msg_goodbye;

typedef struct vesta_msg {
    vesta_msg_type type;
    union {
        vesta_msg_register reg;
        vesta_msg_registered registered;
        vesta_msg_heartbeat heartbeat;
        vesta_msg_generate generate;
        vesta_msg_abort abort;
        vesta_msg_tokens tokens;
        vesta_msg_kv_events kv_events;
        vesta_msg_error error;
        vesta_msg_goodbye goodbye;
    } u; /* REREGISTER, DRAIN and SHUTDOWN have no fields */
} vesta_msg;

/* Zeroes m and fills the defaults of `type` (sampling params per vesta_sampling_params_init,
 * stop_token -1, tp_size 1, num_served_names 0). */
void vesta_msg_init(vesta_msg *m, vesta_msg_type type);

/* Appends the frame for m to out (msgpack_sbuffer_init'ed by the caller). Fails with
 * VESTA_ERR_INVALID_ARG, leaving out unchanged, when a field is over a limit above or a string is
 * not NUL-terminated within its array. The message's arrays are only read. */
vesta_status vesta_msg_encode(const vesta_msg *m, msgpack_sbuffer *out, vesta_error *err);

/* Parses exactly one frame. On success *out holds the message and owns its arrays (release with
 * vesta_msg_clear). On failure (VESTA_ERR_FORMAT: malformed, trailing bytes, wrong type or
 * range, over a limit, unknown message type; VESTA_ERR_UNSUPPORTED: another protocol version;
 * VESTA_ERR_NOMEM) *out is type NONE and owns nothing; the message names the offending field.
 * Unknown keys are ignored (forward compatibility within a version); duplicate keys are errors. */
vesta_status vesta_msg_decode(const char *data, size_t len, vesta_msg *out, vesta_error *err);

/* Frees the arrays a decoded message owns and sets its type to NONE. Only for messages filled by
 * vesta_msg_decode (encode-side arrays belong to the caller). NULL is a no-op. */
void vesta_msg_clear(vesta_msg *m);

/* The wire name ("generate", ...) or NULL; and back (VESTA_MSG_NONE if unknown). */
const char *vesta_msg_type_name(vesta_msg_type type);
vesta_msg_type vesta_msg_type_from_name(const char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif
