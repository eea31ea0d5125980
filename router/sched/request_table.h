/* In-flight worker requests by id (the request_id of GENERATE/TOKENS/ABORT): an open-addressing
 * hash map from a NUL-terminated id to an opaque pointer. Keys are borrowed: the value must keep
 * its id alive while it is in the table. Grows as needed. Owned by the event-loop thread. */
#ifndef VR_SCHED_REQUEST_TABLE_H
#define VR_SCHED_REQUEST_TABLE_H

#include <stddef.h>

#include "vesta/error.h"

typedef struct vr_request_table {
    const char **keys;
    void **vals;
    size_t cap;   /* power of two */
    size_t count;
} vr_request_table;

void vr_request_table_init(vr_request_table *t);
void vr_request_table_clear(vr_request_table *t);
/* VESTA_ERR_INVALID_ARG when the key exists; VESTA_ERR_NOMEM when growing failed. */
vesta_status vr_request_table_put(vr_request_table *t, const char *key, void *val);
void *vr_request_table_get(const vr_request_table *t, const char *key);
void *vr_request_table_remove(vr_request_table *t, const char *key);

#endif
