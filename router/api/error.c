#include "api/error.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

static vesta_status error_vset(vr_api_error *err, int status, const char *type, const char *code,
                               const char *param, const char *fmt, va_list ap)
{
    if (err == NULL)
        return VESTA_ERR_INVALID_ARG;
    err->status = status;
    err->type = type;
    err->code = code;
    err->retry_after = 0;
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    return VESTA_ERR_INVALID_ARG;
}

vesta_status vr_api_error_bad(vr_api_error *err, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vesta_status st = error_vset(err, 400, "invalid_request_error", NULL, param, fmt, ap);
    va_end(ap);
    return st;
}

vesta_status vr_api_error_set(vr_api_error *err, int status, const char *type, const char *code,
                              const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vesta_status st = error_vset(err, status, type, code, param, fmt, ap);
    va_end(ap);
    return st;
}

char *vr_api_error_body(const vr_api_error *err, size_t *len)
{
    json_t *e = json_object();
    /* json_stringn_nocheck would pass invalid UTF-8 from user input through; messages quote user
     * strings, so fall back to a generic text when the message is not valid UTF-8. */
    json_t *msg = json_string(err->message);
    if (msg == NULL)
        msg = json_string("invalid request (the error message was not valid UTF-8)");
    json_object_set_new(e, "message", msg);
    json_object_set_new(e, "type", json_string(err->type ? err->type : "invalid_request_error"));
    json_object_set_new(e, "param", err->param[0] ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code ? json_string(err->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", e);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s != NULL && len != NULL)
        *len = strlen(s);
    return s;
}

const char *vr_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}
