/* The worker's in-flight requests: request id -> sequences not yet finished (open addressing,
 * linear probing with backward-shift deletion). */
#ifndef VESTA_WORKER_REQUEST_TABLE_H
#define VESTA_WORKER_REQUEST_TABLE_H

#include <stddef.h>

typedef struct request_entry {
    char *id; /* NULL = empty slot */
    int remaining;
} request_entry;

typedef struct request_table {
    request_entry *slots;
    size_t cap, count; /* cap is a power of two, count <= cap / 2 */
} request_table;

int request_table_init(request_table *t);            /* -1 on out of memory */
void request_table_free(request_table *t);
request_entry *request_table_find(request_table *t, const char *id);
int request_table_put(request_table *t, const char *id, int remaining); /* -1 on out of memory */
void request_table_remove(request_table *t, const char *id);

#endif
