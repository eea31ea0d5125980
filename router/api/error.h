/* OpenAI-shaped error responses: {"error": {"message", "type", "param", "code"}}.
 *
 * type/code follow OpenAI where it has a name (invalid_request_error, model_not_found,
 * invalid_api_key, ...) and vLLM otherwise; `code` is the string OpenAI uses, never a number. */
#ifndef VR_API_ERROR_H
#define VR_API_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#include "vesta/error.h"

#define VR_API_ERROR_MSG_MAX 1024

typedef struct vr_api_error {
    int status;                        /* HTTP status */
    const char *type;                  /* static string */
    const char *code;                  /* static string or NULL (JSON null) */
    char param[64];                    /* "" -> JSON null */
    char message[VR_API_ERROR_MSG_MAX];
    int retry_after;                   /* seconds for a Retry-After header; 0 = none */
} vr_api_error;

/* A 400 invalid_request_error naming `param` (may be NULL). Returns VESTA_ERR_INVALID_ARG. */
vesta_status vr_api_error_bad(vr_api_error *err, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Any status/type/code. Returns VESTA_ERR_INVALID_ARG. */
vesta_status vr_api_error_set(vr_api_error *err, int status, const char *type, const char *code,
                              const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* The JSON body (malloc'd, NUL-terminated; NULL only on allocation failure). */
char *vr_api_error_body(const vr_api_error *err, size_t *len);

/* The reason phrase of an HTTP status ("Bad Request", ...). */
const char *vr_http_reason(int status);

#endif
