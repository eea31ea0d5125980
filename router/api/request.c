/* Request parsing: JSON shape, types and ranges with vLLM's parameter names and defaults. */
#include "api/request.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void vr_api_limits_init(vr_api_limits *l)
{
    l->vocab_size = 0;
    l->max_n = 128;
    l->max_logprobs = VESTA_MAX_LOGPROBS;
    l->max_stop = 64;
    l->max_stop_len = 1024;
    l->max_prompts = 256;
}

/* ---- typed field readers: absent or null leaves *out unchanged and returns 0; 1 = set ---- */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

/* An integer, or a real with an integral value (pydantic accepts 5.0 for an int field). */
static int as_int64(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (isfinite(d) && d == floor(d) && d >= -9.2e18 && d <= 9.2e18) {
            *out = (int64_t)d;
            return 1;
        }
    }
    return 0;
}

static vesta_status get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi,
                            int64_t *out, int *set, vr_api_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (set)
        *set = 0;
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    int64_t x;
    if (!as_int64(v, &x))
        return vr_api_error_bad(err, key, "'%s' must be an integer, got %s", key, type_name(v));
    if (x < lo || x > hi)
        return vr_api_error_bad(err, key, "'%s' must be between %lld and %lld, got %lld", key,
                                (long long)lo, (long long)hi, (long long)x);
    *out = x;
    if (set)
        *set = 1;
    return VESTA_OK;
}

/* A finite number in [lo, hi]; lo_open/hi_open exclude the bound. */
static vesta_status get_num(const json_t *obj, const char *key, double lo, bool lo_open, double hi,
                            bool hi_open, float *out, vr_api_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    if (!json_is_number(v))
        return vr_api_error_bad(err, key, "'%s' must be a number, got %s", key, type_name(v));
    double d = json_number_value(v);
    if (!isfinite(d) || (lo_open ? d <= lo : d < lo) || (hi_open ? d >= hi : d > hi))
        return vr_api_error_bad(err, key, "'%s' must be in %s%g, %g%s, got %g", key,
                                lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]", d);
    *out = (float)d;
    return VESTA_OK;
}

static vesta_status get_bool(const json_t *obj, const char *key, bool *out, vr_api_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    if (!json_is_boolean(v))
        return vr_api_error_bad(err, key, "'%s' must be a boolean, got %s", key, type_name(v));
    *out = json_is_true(v);
    return VESTA_OK;
}

static vesta_status get_str(const json_t *obj, const char *key, const char **out, vr_api_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    if (!json_is_string(v))
        return vr_api_error_bad(err, key, "'%s' must be a string, got %s", key, type_name(v));
    *out = json_string_value(v);
    return VESTA_OK;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        vesta_status st_ = (x);                                                                    \
        if (st_ != VESTA_OK)                                                                       \
            return st_;                                                                            \
    } while (0)

static vesta_status check_token(int64_t id, int vocab_size, const char *param, vr_api_error *err)
{
    int64_t hi = vocab_size > 0 ? vocab_size : INT32_MAX;
    if (id < 0 || id >= hi)
        return vr_api_error_bad(err, param, "token id %lld in '%s' is out of vocabulary (size %d)",
                                (long long)id, param, vocab_size);
    return VESTA_OK;
}

/* A JSON array of token ids into a malloc'd int32 array. */
static vesta_status parse_ids(const json_t *arr, int vocab_size, const char *param, int32_t **ids,
                              size_t *n, vr_api_error *err)
{
    size_t count = json_array_size(arr);
    *ids = NULL;
    *n = 0;
    if (count == 0)
        return vr_api_error_bad(err, param, "'%s' must not be empty", param);
    int32_t *out = malloc(count * sizeof *out);
    if (out == NULL)
        return vr_api_error_set(err, 500, "internal_error", NULL, param, "out of memory");
    for (size_t i = 0; i < count; i++) {
        int64_t x;
        const json_t *v = json_array_get(arr, i);
        if (!as_int64(v, &x)) {
            free(out);
            return vr_api_error_bad(err, param, "'%s' must hold token ids (integers), got %s",
                                    param, type_name(v));
        }
        if (check_token(x, vocab_size, param, err) != VESTA_OK) {
            free(out);
            return VESTA_ERR_INVALID_ARG;
        }
        out[i] = (int32_t)x;
    }
    *ids = out;
    *n = count;
    return VESTA_OK;
}

static json_t *load_object(const char *body, size_t len, vr_api_error *err)
{
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (root == NULL) {
        vr_api_error_bad(err, NULL, "Invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                         je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        vr_api_error_bad(err, NULL, "The request body must be a JSON object, got %s",
                         type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- prompts ---- */

static vesta_status parse_prompt(vr_api_request *r, const json_t *p, const vr_api_limits *lim,
                                 vr_api_error *err)
{
    if (p == NULL || json_is_null(p))
        return vr_api_error_bad(err, "prompt", "'prompt' is required");
    if (json_is_string(p)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (r->prompts == NULL)
            return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
        r->n_prompts = 1;
        r->prompts[0].text = json_string_value(p);
        r->prompts[0].text_len = json_string_length(p);
        return VESTA_OK;
    }
    if (!json_is_array(p))
        return vr_api_error_bad(err, "prompt",
                                "'prompt' must be a string, a list of strings, a list of token "
                                "ids or a list of token-id lists, got %s",
                                type_name(p));
    size_t count = json_array_size(p);
    if (count == 0)
        return vr_api_error_bad(err, "prompt", "'prompt' must not be empty");
    const json_t *first = json_array_get(p, 0);
    if (json_is_integer(first) || json_is_real(first)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (r->prompts == NULL)
            return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
        r->n_prompts = 1;
        return parse_ids(p, lim->vocab_size, "prompt", &r->prompts[0].ids, &r->prompts[0].n_ids,
                         err);
    }
    if (count > (size_t)lim->max_prompts)
        return vr_api_error_bad(err, "prompt", "'prompt' has %zu entries; at most %d are allowed",
                                count, lim->max_prompts);
    r->prompts = calloc(count, sizeof *r->prompts);
    if (r->prompts == NULL)
        return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
    r->n_prompts = count;
    bool strings = json_is_string(first);
    for (size_t i = 0; i < count; i++) {
        const json_t *e = json_array_get(p, i);
        if (strings && json_is_string(e)) {
            r->prompts[i].text = json_string_value(e);
            r->prompts[i].text_len = json_string_length(e);
        } else if (!strings && json_is_array(e)) {
            TRY(parse_ids(e, lim->vocab_size, "prompt", &r->prompts[i].ids, &r->prompts[i].n_ids,
                          err));
        } else {
            return vr_api_error_bad(err, "prompt",
                                    "'prompt' entries must all be strings or all be token-id "
                                    "lists; entry %zu is %s",
                                    i, type_name(e));
        }
    }
    return VESTA_OK;
}

/* ---- chat messages ---- */

static bool role_known(const char *role)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool", "developer"};
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(role, roles[i]) == 0)
            return true;
    return false;
}

/* Content parts [{"type":"text","text":...}] joined with "\n", as vLLM does for text parts. */
static json_t *join_parts(const json_t *parts, size_t msg_index, vr_api_error *err)
{
    size_t total = 0, count = json_array_size(parts);
    for (size_t i = 0; i < count; i++) {
        const json_t *part = json_array_get(parts, i);
        const json_t *type = json_object_get(part, "type");
        const json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type)) {
            vr_api_error_bad(err, "messages",
                             "messages[%zu].content[%zu] must be an object with a 'type'",
                             msg_index, i);
            return NULL;
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            vr_api_error_bad(err, "messages",
                             "messages[%zu].content[%zu]: content part type '%s' is not "
                             "supported (text only)",
                             msg_index, i, json_string_value(type));
            return NULL;
        }
        if (!json_is_string(text)) {
            vr_api_error_bad(err, "messages", "messages[%zu].content[%zu].text must be a string",
                             msg_index, i);
            return NULL;
        }
        total += json_string_length(text) + 1;
    }
    char *buf = malloc(total + 1);
    if (buf == NULL) {
        vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        const json_t *text = json_object_get(json_array_get(parts, i), "text");
        if (i > 0)
            buf[at++] = '\n';
        memcpy(buf + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    json_t *s = json_stringn(buf, at);
    free(buf);
    if (s == NULL)
        vr_api_error_bad(err, "messages", "messages[%zu].content is not valid UTF-8", msg_index);
    return s;
}

static vesta_status parse_messages(const json_t *msgs, json_t **out, vr_api_error *err)
{
    *out = NULL;
    if (msgs == NULL || json_is_null(msgs))
        return vr_api_error_bad(err, "messages", "'messages' is required");
    if (!json_is_array(msgs))
        return vr_api_error_bad(err, "messages", "'messages' must be a list, got %s",
                                type_name(msgs));
    if (json_array_size(msgs) == 0)
        return vr_api_error_bad(err, "messages", "'messages' must not be empty");
    json_t *norm = json_array();
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        const json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            json_decref(norm);
            return vr_api_error_bad(err, "messages", "messages[%zu] must be an object, got %s", i,
                                    type_name(m));
        }
        const json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            json_decref(norm);
            return vr_api_error_bad(err, "messages", "messages[%zu].role must be a string", i);
        }
        if (!role_known(json_string_value(role))) {
            json_decref(norm);
            return vr_api_error_bad(err, "messages",
                                    "messages[%zu].role '%s' is unknown (expected system, user, "
                                    "assistant, tool or developer)",
                                    i, json_string_value(role));
        }
        json_t *copy = json_copy((json_t *)m);
        const json_t *content = json_object_get(m, "content");
        json_t *text = NULL;
        if (content == NULL || json_is_null(content)) {
            if (strcmp(json_string_value(role), "assistant") != 0) {
                json_decref(copy);
                json_decref(norm);
                return vr_api_error_bad(err, "messages", "messages[%zu].content is required", i);
            }
        } else if (json_is_string(content)) {
            text = json_incref((json_t *)content);
        } else if (json_is_array(content)) {
            text = join_parts(content, i, err);
            if (text == NULL) {
                json_decref(copy);
                json_decref(norm);
                return VESTA_ERR_INVALID_ARG;
            }
        } else {
            json_decref(copy);
            json_decref(norm);
            return vr_api_error_bad(err, "messages",
                                    "messages[%zu].content must be a string or a list of "
                                    "content parts, got %s",
                                    i, type_name(content));
        }
        if (text != NULL)
            json_object_set_new(copy, "content", text);
        json_array_append_new(norm, copy);
    }
    *out = norm;
    return VESTA_OK;
}

/* ---- sampling ---- */

static vesta_status parse_stop(vr_api_request *r, const json_t *root, const vr_api_limits *lim,
                               vr_api_error *err)
{
    const json_t *stop = json_object_get(root, "stop");
    if (stop == NULL || json_is_null(stop))
        return VESTA_OK;
    size_t count = json_is_string(stop) ? 1 : json_array_size(stop);
    if (!json_is_string(stop) && !json_is_array(stop))
        return vr_api_error_bad(err, "stop", "'stop' must be a string or a list of strings, got %s",
                                type_name(stop));
    if (count > (size_t)lim->max_stop)
        return vr_api_error_bad(err, "stop", "'stop' has %zu strings; at most %d are allowed",
                                count, lim->max_stop);
    r->stop = calloc(count ? count : 1, sizeof *r->stop);
    if (r->stop == NULL)
        return vr_api_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < count; i++) {
        const json_t *s = json_is_string(stop) ? stop : json_array_get(stop, i);
        if (!json_is_string(s))
            return vr_api_error_bad(err, "stop", "'stop' entries must be strings, entry %zu is %s",
                                    i, type_name(s));
        if (json_string_length(s) > lim->max_stop_len)
            return vr_api_error_bad(err, "stop", "stop string %zu is longer than %zu bytes", i,
                                    lim->max_stop_len);
        if (json_string_length(s) == 0)
            continue; /* an empty stop string can never match: ignored */
        r->stop[r->n_stop++] = json_string_value(s);
    }
    return VESTA_OK;
}

static vesta_status parse_stop_token_ids(vesta_sampling_params *sp, const json_t *root,
                                         const vr_api_limits *lim, vr_api_error *err)
{
    const json_t *v = json_object_get(root, "stop_token_ids");
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    if (!json_is_array(v))
        return vr_api_error_bad(err, "stop_token_ids", "'stop_token_ids' must be a list of ints");
    if (json_array_size(v) > VESTA_MAX_STOP_TOKEN_IDS)
        return vr_api_error_bad(err, "stop_token_ids", "'stop_token_ids' holds at most %d ids",
                                VESTA_MAX_STOP_TOKEN_IDS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        int64_t x;
        if (!as_int64(json_array_get(v, i), &x))
            return vr_api_error_bad(err, "stop_token_ids", "'stop_token_ids' must be a list of ints");
        TRY(check_token(x, lim->vocab_size, "stop_token_ids", err));
        sp->stop_token_ids[sp->num_stop_token_ids++] = (int32_t)x;
    }
    return VESTA_OK;
}

static vesta_status parse_logit_bias(vesta_sampling_params *sp, const json_t *root,
                                     const vr_api_limits *lim, vr_api_error *err)
{
    const json_t *v = json_object_get(root, "logit_bias");
    if (v == NULL || json_is_null(v))
        return VESTA_OK;
    if (!json_is_object(v))
        return vr_api_error_bad(err, "logit_bias", "'logit_bias' must be an object mapping token "
                                                   "ids to biases");
    if (json_object_size(v) > VESTA_MAX_LOGIT_BIAS)
        return vr_api_error_bad(err, "logit_bias", "'logit_bias' holds at most %d entries",
                                VESTA_MAX_LOGIT_BIAS);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        char *end;
        errno = 0;
        long long id = strtoll(key, &end, 10);
        if (key[0] == '\0' || *end != '\0' || errno != 0)
            return vr_api_error_bad(err, "logit_bias", "'logit_bias' key '%s' is not a token id",
                                    key);
        TRY(check_token(id, lim->vocab_size, "logit_bias", err));
        if (!json_is_number(val))
            return vr_api_error_bad(err, "logit_bias", "'logit_bias' values must be numbers");
        double b = json_number_value(val);
        if (!(b >= -100.0 && b <= 100.0))
            return vr_api_error_bad(err, "logit_bias", "'logit_bias' values must be in [-100, 100]");
        sp->logit_bias[sp->num_logit_bias].token = (int32_t)id;
        sp->logit_bias[sp->num_logit_bias].bias = (float)b;
        sp->num_logit_bias++;
    }
    return VESTA_OK;
}

static vesta_status parse_logprobs(vr_api_request *r, const json_t *root, const vr_api_limits *lim,
                                   vr_api_error *err)
{
    int64_t x = 0;
    int set = 0;
    if (r->kind == VR_API_COMPLETION) {
        TRY(get_int(root, "logprobs", 0, lim->max_logprobs, &x, &set, err));
        r->want_logprobs = set;
        r->num_top_logprobs = (int)x;
    } else {
        bool lp = false;
        TRY(get_bool(root, "logprobs", &lp, err));
        TRY(get_int(root, "top_logprobs", 0, lim->max_logprobs, &x, &set, err));
        if (set && x > 0 && !lp)
            return vr_api_error_bad(err, "top_logprobs",
                                    "when using 'top_logprobs', 'logprobs' must be set to true");
        r->want_logprobs = lp;
        r->num_top_logprobs = (int)x;
    }
    r->sp.logprobs = r->want_logprobs ? r->num_top_logprobs : -1;
    return VESTA_OK;
}

static vesta_status parse_sampling(vr_api_request *r, const json_t *root, const vr_api_limits *lim,
                                   vr_api_error *err)
{
    vesta_sampling_params *sp = &r->sp;
    int64_t x;
    int set;
    x = 1;
    TRY(get_int(root, "n", 1, lim->max_n, &x, NULL, err));
    sp->n = (int)x;
    TRY(get_num(root, "temperature", 0, false, FLT_MAX, false, &sp->temperature, err));
    TRY(get_num(root, "top_p", 0, true, 1, false, &sp->top_p, err));
    x = sp->top_k;
    TRY(get_int(root, "top_k", -1, INT32_MAX, &x, NULL, err));
    sp->top_k = (int)x;
    TRY(get_num(root, "min_p", 0, false, 1, false, &sp->min_p, err));
    TRY(get_num(root, "presence_penalty", -2, false, 2, false, &sp->presence_penalty, err));
    TRY(get_num(root, "frequency_penalty", -2, false, 2, false, &sp->frequency_penalty, err));
    TRY(get_num(root, "repetition_penalty", 0, true, FLT_MAX, false, &sp->repetition_penalty, err));
    int64_t seed = 0;
    TRY(get_int(root, "seed", INT64_MIN, INT64_MAX, &seed, &set, err));
    /* The engine takes seeds >= 0 (-1 = none); vLLM accepts any int64. Negative seeds map to a
     * fixed non-negative one so that they stay reproducible. */
    if (set)
        sp->seed = seed & INT64_MAX;

    sp->max_tokens = -1;
    x = 0;
    TRY(get_int(root, "max_tokens", 1, INT32_MAX, &x, &set, err));
    if (set)
        sp->max_tokens = (int)x;
    if (r->kind == VR_API_CHAT) {
        TRY(get_int(root, "max_completion_tokens", 1, INT32_MAX, &x, &set, err));
        if (set)
            sp->max_tokens = (int)x;
    }
    x = 0;
    TRY(get_int(root, "min_tokens", 0, INT32_MAX, &x, NULL, err));
    sp->min_tokens = (int)x;
    if (sp->max_tokens > 0 && sp->min_tokens > sp->max_tokens)
        return vr_api_error_bad(err, "min_tokens",
                                "'min_tokens' (%d) must be less than or equal to 'max_tokens' (%d)",
                                sp->min_tokens, sp->max_tokens);
    TRY(get_bool(root, "ignore_eos", &sp->ignore_eos, err));
    TRY(parse_stop_token_ids(sp, root, lim, err));
    TRY(parse_logit_bias(sp, root, lim, err));
    TRY(parse_logprobs(r, root, lim, err));
    return VESTA_OK;
}

static vesta_status parse_common(vr_api_request *r, const json_t *root, const vr_api_limits *lim,
                                 vr_api_error *err)
{
    TRY(get_str(root, "model", &r->model, err));
    TRY(get_str(root, "user", &r->user, err));
    TRY(get_bool(root, "stream", &r->stream, err));
    const json_t *so = json_object_get(root, "stream_options");
    if (so != NULL && !json_is_null(so)) {
        if (!json_is_object(so))
            return vr_api_error_bad(err, "stream_options", "'stream_options' must be an object");
        if (!r->stream)
            return vr_api_error_bad(err, "stream_options",
                                    "Stream options can only be defined when `stream=True`.");
        TRY(get_bool(so, "include_usage", &r->include_usage, err));
    }
    TRY(parse_sampling(r, root, lim, err));
    TRY(parse_stop(r, root, lim, err));
    TRY(get_bool(root, "include_stop_str_in_output", &r->include_stop_str_in_output, err));
    TRY(get_bool(root, "skip_special_tokens", &r->skip_special_tokens, err));
    TRY(get_bool(root, "add_special_tokens", &r->add_special_tokens, err));
    return VESTA_OK;
}

static vesta_status parse_chat_extras(const json_t *root, json_t **tools, json_t **kwargs,
                                      bool *agp, bool *cont, vr_api_error *err)
{
    json_t *t = json_object_get(root, "tools");
    if (t != NULL && !json_is_null(t)) {
        if (!json_is_array(t))
            return vr_api_error_bad(err, "tools", "'tools' must be a list");
        for (size_t i = 0; i < json_array_size(t); i++)
            if (!json_is_object(json_array_get(t, i)))
                return vr_api_error_bad(err, "tools", "tools[%zu] must be an object", i);
        *tools = t;
    }
    json_t *k = json_object_get(root, "chat_template_kwargs");
    if (k != NULL && !json_is_null(k)) {
        if (!json_is_object(k))
            return vr_api_error_bad(err, "chat_template_kwargs",
                                    "'chat_template_kwargs' must be an object");
        *kwargs = k;
    }
    TRY(get_bool(root, "add_generation_prompt", agp, err));
    TRY(get_bool(root, "continue_final_message", cont, err));
    if (*agp && *cont)
        return vr_api_error_bad(err, "continue_final_message",
                                "Cannot set both `continue_final_message` and "
                                "`add_generation_prompt` to True.");
    return VESTA_OK;
}

static vesta_status parse_body(vr_api_request *r, const vr_api_limits *lim, vr_api_error *err)
{
    json_t *root = r->root;
    TRY(parse_common(r, root, lim, err));
    if (r->kind == VR_API_COMPLETION) {
        TRY(parse_prompt(r, json_object_get(root, "prompt"), lim, err));
        TRY(get_bool(root, "echo", &r->echo, err));
        if (r->echo && r->want_logprobs)
            return vr_api_error_bad(err, "echo",
                                    "'echo' together with 'logprobs' (prompt logprobs) is not "
                                    "supported");
        const json_t *suffix = json_object_get(root, "suffix");
        if (suffix != NULL && !json_is_null(suffix))
            return vr_api_error_bad(err, "suffix", "suffix is not currently supported");
    } else {
        TRY(parse_messages(json_object_get(root, "messages"), &r->messages, err));
        TRY(parse_chat_extras(root, &r->tools, &r->chat_template_kwargs,
                              &r->add_generation_prompt, &r->continue_final_message, err));
    }
    /* options that change what is generated must not be ignored silently */
    const json_t *rf = json_object_get(root, "response_format");
    if (rf != NULL && !json_is_null(rf)) {
        const json_t *t = json_object_get(rf, "type");
        if (!json_is_object(rf) || !json_is_string(t) || strcmp(json_string_value(t), "text") != 0)
            return vr_api_error_bad(err, "response_format",
                                    "'response_format' other than {\"type\": \"text\"} is not "
                                    "supported");
    }
    const json_t *best_of = json_object_get(root, "best_of");
    int64_t bo = 0;
    if (as_int64(best_of ? best_of : json_null(), &bo) && bo != r->sp.n && bo > 1)
        return vr_api_error_bad(err, "best_of", "'best_of' other than n is not supported");
    return VESTA_OK;
}

vesta_status vr_api_request_parse(vr_api_kind kind, const char *body, size_t len,
                                  const vr_api_limits *limits, vr_api_request *out,
                                  vr_api_error *err)
{
    vr_api_limits def;
    if (limits == NULL) {
        vr_api_limits_init(&def);
        limits = &def;
    }
    memset(out, 0, sizeof *out);
    out->kind = kind;
    vesta_sampling_params_init(&out->sp);
    out->skip_special_tokens = true;
    out->add_special_tokens = kind == VR_API_COMPLETION;
    out->add_generation_prompt = true;
    out->root = load_object(body, len, err);
    if (out->root == NULL)
        return VESTA_ERR_INVALID_ARG;
    vesta_status st = parse_body(out, limits, err);
    if (st != VESTA_OK)
        vr_api_request_clear(out);
    return st;
}

void vr_api_request_clear(vr_api_request *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_prompts; i++)
        free(r->prompts[i].ids);
    free(r->prompts);
    free(r->stop);
    json_decref(r->messages);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

int vr_api_default_max_tokens(const vr_api_request *r, int num_prompt, int max_model_len)
{
    if (r->sp.max_tokens > 0)
        return r->sp.max_tokens;
    if (r->kind == VR_API_COMPLETION)
        return 16;
    return max_model_len - num_prompt;
}

/* ---- /tokenize and /detokenize ---- */

vesta_status vr_api_tokenize_parse(const char *body, size_t len, vr_api_tokenize *out,
                                   vr_api_error *err)
{
    memset(out, 0, sizeof *out);
    out->add_generation_prompt = true;
    out->root = load_object(body, len, err);
    if (out->root == NULL)
        return VESTA_ERR_INVALID_ARG;
    json_t *root = out->root;
    vesta_status st = get_str(root, "model", &out->model, err);
    const json_t *prompt = json_object_get(root, "prompt");
    const json_t *msgs = json_object_get(root, "messages");
    if (st == VESTA_OK && prompt != NULL && !json_is_null(prompt)) {
        if (!json_is_string(prompt))
            st = vr_api_error_bad(err, "prompt", "'prompt' must be a string");
        else {
            out->prompt = json_string_value(prompt);
            out->prompt_len = json_string_length(prompt);
            out->add_special_tokens = true;
        }
    } else if (st == VESTA_OK && msgs != NULL && !json_is_null(msgs)) {
        st = parse_messages(msgs, &out->messages, err);
        if (st == VESTA_OK)
            st = parse_chat_extras(root, &out->tools, &out->chat_template_kwargs,
                                   &out->add_generation_prompt, &out->continue_final_message, err);
    } else if (st == VESTA_OK) {
        st = vr_api_error_bad(err, "prompt", "either 'prompt' or 'messages' is required");
    }
    if (st == VESTA_OK)
        st = get_bool(root, "add_special_tokens", &out->add_special_tokens, err);
    if (st != VESTA_OK)
        vr_api_tokenize_clear(out);
    return st;
}

void vr_api_tokenize_clear(vr_api_tokenize *t)
{
    if (t == NULL)
        return;
    json_decref(t->messages);
    json_decref(t->root);
    memset(t, 0, sizeof *t);
}

vesta_status vr_api_detokenize_parse(const char *body, size_t len, int vocab_size,
                                     vr_api_detokenize *out, vr_api_error *err)
{
    memset(out, 0, sizeof *out);
    out->root = load_object(body, len, err);
    if (out->root == NULL)
        return VESTA_ERR_INVALID_ARG;
    vesta_status st = get_str(out->root, "model", &out->model, err);
    const json_t *tokens = json_object_get(out->root, "tokens");
    if (st == VESTA_OK && !json_is_array(tokens))
        st = vr_api_error_bad(err, "tokens", "'tokens' must be a list of token ids");
    if (st == VESTA_OK && json_array_size(tokens) > 0)
        st = parse_ids(tokens, vocab_size, "tokens", &out->ids, &out->n_ids, err);
    if (st != VESTA_OK)
        vr_api_detokenize_clear(out);
    return st;
}

void vr_api_detokenize_clear(vr_api_detokenize *d)
{
    if (d == NULL)
        return;
    free(d->ids);
    json_decref(d->root);
    memset(d, 0, sizeof *d);
}
