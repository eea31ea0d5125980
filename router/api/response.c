#include "api/response.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

json_t *vr_json_text(const char *s, size_t len)
{
    json_t *v = json_stringn(s ? s : "", s ? len : 0);
    if (v != NULL)
        return v;
    /* replace invalid UTF-8 bytes one by one */
    char *buf = malloc(len * 3 + 1);
    if (buf == NULL)
        return json_string("");
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = need > 0 && i + need <= len;
        for (size_t k = 1; ok && k < need; k++)
            ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok && need > 1) { /* overlong / surrogate: jansson's check decides */
            json_t *probe = json_stringn(s + i, need);
            ok = probe != NULL;
            json_decref(probe);
        }
        if (ok && c != 0) {
            memcpy(buf + o, s + i, need);
            o += need;
            i += need;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    v = json_stringn(buf, o);
    free(buf);
    return v ? v : json_string("");
}

json_t *vr_resp_envelope(vr_api_kind kind, bool chunk, const char *id, int64_t created,
                         const char *model)
{
    const char *object = kind == VR_API_COMPLETION ? "text_completion"
                         : chunk                   ? "chat.completion.chunk"
                                                   : "chat.completion";
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(created));
    json_object_set_new(o, "model", vr_json_text(model, strlen(model)));
    json_object_set_new(o, "choices", json_array());
    return o;
}

json_t *vr_resp_choice(vr_api_kind kind, bool chunk, int index, const char *text, size_t len,
                       bool with_role, json_t *logprobs, const char *finish, json_t *stop_reason)
{
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(index));
    if (kind == VR_API_COMPLETION) {
        json_object_set_new(c, "text", vr_json_text(text, len));
    } else {
        json_t *m = json_object();
        if (with_role || !chunk)
            json_object_set_new(m, "role", json_string("assistant"));
        if (text != NULL || !chunk)
            json_object_set_new(m, "content", vr_json_text(text, len));
        json_object_set_new(c, chunk ? "delta" : "message", m);
    }
    json_object_set_new(c, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(c, "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(c, "stop_reason", stop_reason ? stop_reason : json_null());
    return c;
}

json_t *vr_resp_usage(int prompt_tokens, int completion_tokens, int cached_tokens)
{
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(u, "total_tokens", json_integer(prompt_tokens + completion_tokens));
    json_object_set_new(u, "completion_tokens", json_integer(completion_tokens));
    json_t *details = json_object();
    json_object_set_new(details, "cached_tokens", json_integer(cached_tokens));
    json_object_set_new(u, "prompt_tokens_details", details);
    return u;
}

/* The token's text as decode([id]) gives it. */
static json_t *token_text(const vesta_tokenizer *tok, int32_t id, json_t **bytes)
{
    char *s = NULL;
    size_t n = 0;
    vesta_error e;
    if (vesta_tokenizer_decode(tok, &id, 1, false, &s, &n, &e) != VESTA_OK) {
        free(s);
        s = NULL;
        n = 0;
    }
    if (bytes != NULL) {
        *bytes = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(*bytes, json_integer((unsigned char)s[i]));
    }
    json_t *v = vr_json_text(s, n);
    free(s);
    return v;
}

/* -inf logprobs are not JSON: vLLM clamps to -9999.0 */
static double finite_lp(float lp) { return isfinite(lp) ? lp : -9999.0; }

json_t *vr_resp_logprobs_add(vr_api_kind kind, json_t *acc, const vesta_tokenizer *tok,
                             const vesta_sample_result *res, int num_top, size_t text_offset)
{
    int ntop = res->num_top < num_top ? res->num_top : num_top;
    if (kind == VR_API_COMPLETION) {
        if (acc == NULL) {
            acc = json_object();
            json_object_set_new(acc, "text_offset", json_array());
            json_object_set_new(acc, "token_logprobs", json_array());
            json_object_set_new(acc, "tokens", json_array());
            json_object_set_new(acc, "top_logprobs", json_array());
        }
        json_array_append_new(json_object_get(acc, "text_offset"), json_integer((json_int_t)text_offset));
        json_array_append_new(json_object_get(acc, "token_logprobs"), json_real(finite_lp(res->logprob)));
        json_t *t = token_text(tok, res->token, NULL);
        json_t *top = json_object();
        /* vLLM lists the sampled token with the top ones */
        json_object_set_new(top, json_string_value(t), json_real(finite_lp(res->logprob)));
        for (int i = 0; i < ntop; i++) {
            json_t *tt = token_text(tok, res->top_ids[i], NULL);
            json_object_set_new(top, json_string_value(tt), json_real(finite_lp(res->top_logprobs[i])));
            json_decref(tt);
        }
        json_array_append_new(json_object_get(acc, "tokens"), t);
        json_array_append_new(json_object_get(acc, "top_logprobs"), top);
        return acc;
    }
    if (acc == NULL) {
        acc = json_object();
        json_object_set_new(acc, "content", json_array());
    }
    json_t *bytes = NULL;
    json_t *e = json_object();
    json_object_set_new(e, "token", token_text(tok, res->token, &bytes));
    json_object_set_new(e, "logprob", json_real(finite_lp(res->logprob)));
    json_object_set_new(e, "bytes", bytes);
    json_t *top = json_array();
    for (int i = 0; i < ntop; i++) {
        json_t *tb = NULL;
        json_t *te = json_object();
        json_object_set_new(te, "token", token_text(tok, res->top_ids[i], &tb));
        json_object_set_new(te, "logprob", json_real(finite_lp(res->top_logprobs[i])));
        json_object_set_new(te, "bytes", tb);
        json_array_append_new(top, te);
    }
    json_object_set_new(e, "top_logprobs", top);
    json_array_append_new(json_object_get(acc, "content"), e);
    return acc;
}
