/* Errors: every fallible Vesta call takes a vesta_error * and returns a status.
 * The message names the thing that failed (file and tensor, YAML node, JSON field). */
#ifndef VESTA_ERROR_H
#define VESTA_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vesta_status {
    VESTA_OK = 0,
    VESTA_ERR_INVALID_ARG = -1, /* caller passed something out of range */
    VESTA_ERR_IO = -2,          /* open/read/mmap failed */
    VESTA_ERR_FORMAT = -3,      /* a file or message is malformed, truncated or hostile */
    VESTA_ERR_UNSUPPORTED = -4, /* well-formed but not something Vesta handles */
    VESTA_ERR_NOMEM = -5,       /* allocation failed or a planned pool is exhausted */
    VESTA_ERR_NOT_FOUND = -6,   /* a named tensor, key, request, ... does not exist */
    VESTA_ERR_BACKEND = -7,     /* the compute backend (CUDA, BLAS, NCCL) failed */
    VESTA_ERR_LIMIT = -8,       /* a sandbox/size/queue limit was hit */
    VESTA_ERR_INTERNAL = -9,    /* an invariant broke: a bug */
} vesta_status;

#define VESTA_ERROR_MSG_MAX 512

typedef struct vesta_error {
    vesta_status code;
    char msg[VESTA_ERROR_MSG_MAX];
} vesta_error;

/* Records code and a printf-style message into err (err may be NULL). Returns code so that
 * callers can write `return vesta_error_set(err, VESTA_ERR_FORMAT, "...")`. */
vesta_status vesta_error_set(vesta_error *err, vesta_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to an existing message (for adding the file name at an outer layer). */
void vesta_error_prefix(vesta_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void vesta_error_clear(vesta_error *err);

/* A short constant name for a status ("format error", ...). */
const char *vesta_status_str(vesta_status code);

#ifdef __cplusplus
}
#endif
#endif
