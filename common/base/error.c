#include "vesta/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

vesta_status vesta_error_set(vesta_error *err, vesta_status code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void vesta_error_prefix(vesta_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char prefix[VESTA_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    /* Shift the old message right and put "prefix: " in front; truncation keeps the prefix. */
    size_t cap = sizeof(err->msg) - 1, plen = strnlen(prefix, cap - 2);
    size_t olen = strnlen(err->msg, cap);
    if (olen > cap - plen - 2)
        olen = cap - plen - 2;
    memmove(err->msg + plen + 2, err->msg, olen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + olen] = '\0';
}

void vesta_error_clear(vesta_error *err)
{
    if (err == NULL)
        return;
    err->code = VESTA_OK;
    err->msg[0] = '\0';
}

const char *vesta_status_str(vesta_status code)
{
    switch (code) {
    case VESTA_OK: return "ok";
    case VESTA_ERR_INVALID_ARG: return "invalid argument";
    case VESTA_ERR_IO: return "I/O error";
    case VESTA_ERR_FORMAT: return "format error";
    case VESTA_ERR_UNSUPPORTED: return "unsupported";
    case VESTA_ERR_NOMEM: return "out of memory";
    case VESTA_ERR_NOT_FOUND: return "not found";
    case VESTA_ERR_BACKEND: return "backend error";
    case VESTA_ERR_LIMIT: return "limit exceeded";
    case VESTA_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}
