/* One table per message: key, kind, bounds. Encode and decode both walk these. */
#include <string.h>

#include "proto_internal.h"

#define I32MAX INT32_MAX
#define I32MIN INT32_MIN
#define F(name, kind, flags, type, member, lo, hi) \
    { name, kind, flags, offsetof(type, member), 0, 0, lo, hi, NULL }
#define S(name, flags, type, member) \
    { name, PK_STR, flags, offsetof(type, member), 0, sizeof(((type *)0)->member), 0, 0, NULL }
#define A(name, kind, flags, type, member, count, lo, hi) \
    { name, kind, flags, offsetof(type, member), offsetof(type, count), 0, lo, hi, NULL }

#define REQ PF_REQUIRED

/* ---- sampling params (all optional: absent = vLLM default) ---- */
static const proto_field sampling_fields[] = {
    F("n", PK_INT, 0, vesta_sampling_params, n, 1, VESTA_PROTO_MAX_N),
    F("temperature", PK_FLOAT, 0, vesta_sampling_params, temperature, 0, 0),
    F("top_p", PK_FLOAT, 0, vesta_sampling_params, top_p, 0, 0),
    F("top_k", PK_INT, 0, vesta_sampling_params, top_k, I32MIN, I32MAX),
    F("min_p", PK_FLOAT, 0, vesta_sampling_params, min_p, 0, 0),
    F("presence_penalty", PK_FLOAT, 0, vesta_sampling_params, presence_penalty, 0, 0),
    F("frequency_penalty", PK_FLOAT, 0, vesta_sampling_params, frequency_penalty, 0, 0),
    F("repetition_penalty", PK_FLOAT, 0, vesta_sampling_params, repetition_penalty, 0, 0),
    F("seed", PK_I64, 0, vesta_sampling_params, seed, INT64_MIN, INT64_MAX),
    F("max_tokens", PK_INT, 0, vesta_sampling_params, max_tokens, I32MIN, I32MAX),
    F("min_tokens", PK_INT, 0, vesta_sampling_params, min_tokens, I32MIN, I32MAX),
    F("ignore_eos", PK_BOOL, 0, vesta_sampling_params, ignore_eos, 0, 0),
    F("logprobs", PK_INT, 0, vesta_sampling_params, logprobs, -1, VESTA_MAX_LOGPROBS),
    F("prompt_logprobs", PK_INT, 0, vesta_sampling_params, prompt_logprobs, -1, VESTA_MAX_LOGPROBS),
    A("stop_token_ids", PK_I32_FIXED, 0, vesta_sampling_params, stop_token_ids, num_stop_token_ids,
      0, VESTA_MAX_STOP_TOKEN_IDS),
    A("logit_bias", PK_LOGIT_BIAS, 0, vesta_sampling_params, logit_bias, num_logit_bias, 0,
      VESTA_MAX_LOGIT_BIAS),
};
static const proto_schema sampling_schema = {
    "sampling", sampling_fields, sizeof sampling_fields / sizeof *sampling_fields, NULL};

/* ---- register ---- */
static vesta_status check_register(const void *base, const char *path, vesta_error *err)
{
    const vesta_msg_register *r = base;
    if (r->tp_rank >= r->tp_size)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s.tp_rank: %d not below tp_size %d", path,
                               r->tp_rank, r->tp_size);
    return VESTA_OK;
}

static const proto_field register_fields[] = {
    S("worker_id", REQ | PF_NONEMPTY, vesta_msg_register, worker_id),
    S("model", REQ, vesta_msg_register, model),
    {"served_names", PK_STRS, REQ | PF_NONEMPTY, offsetof(vesta_msg_register, served_names),
     offsetof(vesta_msg_register, num_served_names), VESTA_PROTO_MAX_NAME + 1, 0,
     VESTA_PROTO_MAX_SERVED_NAMES, NULL},
    S("backend", REQ, vesta_msg_register, backend),
    F("max_model_len", PK_INT, REQ, vesta_msg_register, max_model_len, 1, I32MAX),
    F("block_size", PK_INT, REQ, vesta_msg_register, block_size, 1, 1 << 16),
    F("num_kv_blocks", PK_INT, REQ, vesta_msg_register, num_kv_blocks, 0, I32MAX),
    F("max_num_seqs", PK_INT, REQ, vesta_msg_register, max_num_seqs, 1, I32MAX),
    F("vocab_size", PK_INT, REQ, vesta_msg_register, vocab_size, 1, I32MAX),
    A("eos_ids", PK_I32_FIXED, REQ, vesta_msg_register, eos_ids, num_eos, 0, VESTA_PROTO_MAX_EOS),
    F("enable_prefix_caching", PK_BOOL, REQ, vesta_msg_register, enable_prefix_caching, 0, 0),
    F("prefix_cache_salt", PK_U64, REQ, vesta_msg_register, prefix_cache_salt, 0, 0),
    F("tp_rank", PK_INT, REQ, vesta_msg_register, tp_rank, 0, 1 << 16),
    F("tp_size", PK_INT, REQ, vesta_msg_register, tp_size, 1, 1 << 16),
    F("instance", PK_U64, REQ, vesta_msg_register, instance, 0, 0),
};

/* ---- registered ---- */
static const proto_field registered_fields[] = {
    F("router_instance", PK_U64, REQ, vesta_msg_registered, router_instance, 0, 0),
    F("heartbeat_ms", PK_INT, 0, vesta_msg_registered, heartbeat_ms, 0, 3600 * 1000),
};

/* ---- heartbeat ---- */
static vesta_status check_heartbeat(const void *base, const char *path, vesta_error *err)
{
    const vesta_msg_heartbeat *h = base;
    if (!(h->kv_usage >= 0.0 && h->kv_usage <= 1.0))
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s.kv_usage: %g not in [0, 1]", path,
                               h->kv_usage);
    return VESTA_OK;
}

static const proto_field heartbeat_fields[] = {
    F("num_running", PK_INT, REQ, vesta_msg_heartbeat, num_running, 0, I32MAX),
    F("num_waiting", PK_INT, REQ, vesta_msg_heartbeat, num_waiting, 0, I32MAX),
    F("num_blocks_total", PK_INT, REQ, vesta_msg_heartbeat, num_blocks_total, 0, I32MAX),
    F("num_blocks_free", PK_INT, REQ, vesta_msg_heartbeat, num_blocks_free, 0, I32MAX),
    F("kv_usage", PK_DOUBLE, REQ, vesta_msg_heartbeat, kv_usage, 0, 0),
    F("prefix_cache_queries", PK_U64, REQ, vesta_msg_heartbeat, prefix_cache_queries, 0, 0),
    F("prefix_cache_hits", PK_U64, REQ, vesta_msg_heartbeat, prefix_cache_hits, 0, 0),
    F("num_preemptions", PK_U64, REQ, vesta_msg_heartbeat, num_preemptions, 0, 0),
    F("prompt_tokens_total", PK_U64, REQ, vesta_msg_heartbeat, prompt_tokens_total, 0, 0),
    F("generation_tokens_total", PK_U64, REQ, vesta_msg_heartbeat, generation_tokens_total, 0, 0),
    F("steps", PK_U64, REQ, vesta_msg_heartbeat, steps, 0, 0),
    F("kv_events_seq", PK_U64, REQ, vesta_msg_heartbeat, kv_events_seq, 0, 0),
    F("draining", PK_BOOL, REQ, vesta_msg_heartbeat, draining, 0, 0),
    F("busy_ms", PK_I64, PF_NIL_EMPTY, vesta_msg_heartbeat, busy_ms, 0, INT64_MAX), /* optional */
};

/* ---- generate ---- */
static const proto_field generate_fields[] = {
    S("request_id", REQ | PF_NONEMPTY, vesta_msg_generate, request_id),
    A("prompt_ids", PK_I32_ALLOC, REQ | PF_NONEMPTY, vesta_msg_generate, prompt_ids, num_prompt, 0,
      VESTA_PROTO_MAX_PROMPT_TOKENS),
    {"sampling", PK_MAP, 0, offsetof(vesta_msg_generate, sp), 0, 0, 0, 0, &sampling_schema},
    F("lora_id", PK_I32, 0, vesta_msg_generate, lora_id, I32MIN, I32MAX),
    S("lora_name", PF_NIL_EMPTY, vesta_msg_generate, lora_name),
};

/* ---- abort ---- */
static const proto_field abort_fields[] = {
    S("request_id", REQ | PF_NONEMPTY, vesta_msg_abort, request_id),
};

/* ---- tokens ---- */
static vesta_status check_tokens(const void *base, const char *path, vesta_error *err)
{
    static const char *const finishes[] = {"", "stop", "length", "abort", "error"};
    const vesta_msg_tokens *t = base;
    for (size_t i = 0; i < sizeof finishes / sizeof *finishes; i++)
        if (strcmp(t->finish, finishes[i]) == 0)
            return VESTA_OK;
    return vesta_error_set(err, VESTA_ERR_FORMAT, "%s.finish: unknown finish reason", path);
}

static const proto_field tokens_fields[] = {
    S("request_id", REQ | PF_NONEMPTY, vesta_msg_tokens, request_id),
    F("seq_index", PK_INT, REQ, vesta_msg_tokens, seq_index, 0, VESTA_PROTO_MAX_N - 1),
    A("token_ids", PK_I32_ALLOC, REQ, vesta_msg_tokens, new_token_ids, num_new, 0,
      VESTA_PROTO_MAX_TOKENS_PER_MSG),
    A("logprobs", PK_LOGPROBS, PF_NIL_EMPTY, vesta_msg_tokens, logprobs, num_new, 0,
      VESTA_PROTO_MAX_TOKENS_PER_MSG),
    S("finish", PF_NIL_EMPTY, vesta_msg_tokens, finish),
    F("stop_token", PK_I32, REQ, vesta_msg_tokens, stop_token, -1, I32MAX),
    F("num_prompt_tokens", PK_INT, REQ, vesta_msg_tokens, num_prompt_tokens, 0, I32MAX),
    F("num_output_tokens", PK_INT, REQ, vesta_msg_tokens, num_output_tokens, 0, I32MAX),
    F("num_cached_tokens", PK_INT, REQ, vesta_msg_tokens, num_cached_tokens, 0, I32MAX),
};

/* ---- kv_events ---- */
static const proto_field kv_events_fields[] = {
    F("seq", PK_U64, REQ, vesta_msg_kv_events, seq, 0, 0),
    F("all_cleared", PK_BOOL, REQ, vesta_msg_kv_events, all_cleared, 0, 0),
    A("stored", PK_U64_ALLOC, REQ, vesta_msg_kv_events, stored, num_stored, 0,
      VESTA_PROTO_MAX_HASHES),
    A("evicted", PK_U64_ALLOC, REQ, vesta_msg_kv_events, evicted, num_evicted, 0,
      VESTA_PROTO_MAX_HASHES),
};

static vesta_status check_kv_events(const void *base, const char *path, vesta_error *err)
{
    const vesta_msg_kv_events *k = base;
    if (k->seq == 0)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%s.seq: must be >= 1", path);
    return VESTA_OK;
}

/* ---- error, goodbye ---- */
static const proto_field error_fields[] = {
    S("request_id", REQ, vesta_msg_error, request_id),
    F("code", PK_INT, REQ, vesta_msg_error, code, -1000, 1000),
    S("message", REQ, vesta_msg_error, message),
};

static const proto_field goodbye_fields[] = {
    S("reason", REQ, vesta_msg_goodbye, reason),
};

#define SCHEMA(name, fields, check) {name, fields, sizeof fields / sizeof *fields, check}
static const proto_schema schemas[VESTA_MSG_TYPE_COUNT] = {
    [VESTA_MSG_REGISTER] = SCHEMA("register", register_fields, check_register),
    [VESTA_MSG_HEARTBEAT] = SCHEMA("heartbeat", heartbeat_fields, check_heartbeat),
    [VESTA_MSG_TOKENS] = SCHEMA("tokens", tokens_fields, check_tokens),
    [VESTA_MSG_KV_EVENTS] = SCHEMA("kv_events", kv_events_fields, check_kv_events),
    [VESTA_MSG_GOODBYE] = SCHEMA("goodbye", goodbye_fields, NULL),
    [VESTA_MSG_REGISTERED] = SCHEMA("registered", registered_fields, NULL),
    [VESTA_MSG_REREGISTER] = {"reregister", NULL, 0, NULL},
    [VESTA_MSG_GENERATE] = SCHEMA("generate", generate_fields, NULL),
    [VESTA_MSG_ABORT] = SCHEMA("abort", abort_fields, NULL),
    [VESTA_MSG_DRAIN] = {"drain", NULL, 0, NULL},
    [VESTA_MSG_SHUTDOWN] = {"shutdown", NULL, 0, NULL},
    [VESTA_MSG_ERROR] = SCHEMA("error", error_fields, NULL),
};

const proto_schema *proto_schema_of(vesta_msg_type type)
{
    if (type <= VESTA_MSG_NONE || type >= VESTA_MSG_TYPE_COUNT)
        return NULL;
    return &schemas[type];
}

const char *vesta_msg_type_name(vesta_msg_type type)
{
    const proto_schema *s = proto_schema_of(type);
    return s ? s->name : NULL;
}

vesta_msg_type vesta_msg_type_from_name(const char *name, size_t len)
{
    for (int t = VESTA_MSG_NONE + 1; t < VESTA_MSG_TYPE_COUNT; t++)
        if (strlen(schemas[t].name) == len && memcmp(schemas[t].name, name, len) == 0)
            return (vesta_msg_type)t;
    return VESTA_MSG_NONE;
}
