/* Bump allocator: a render or a compile allocates only here and drops everything at once. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

struct jarena_chunk {
    jarena_chunk *next;
    size_t size, used;
    max_align_t data[];
};

enum { JARENA_CHUNK = 64 * 1024 };

void jarena_init(jarena *a, size_t limit)
{
    a->head = NULL;
    a->used = 0;
    a->limit = limit;
}

void jarena_free(jarena *a)
{
    jarena_chunk *c = a->head;
    while (c) {
        jarena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

void *jarena_alloc(jarena *a, size_t n)
{
    size_t align = sizeof(max_align_t);
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + align - 1) & ~(align - 1);
    if (n == 0)
        n = align;
    if (a->limit && (a->used > a->limit || n > a->limit - a->used))
        return NULL;
    jarena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > JARENA_CHUNK / 2 ? n : JARENA_CHUNK;
        c = malloc(sizeof(*c) + size);
        if (!c)
            return NULL;
        c->size = size;
        c->used = 0;
        if (n > JARENA_CHUNK / 2 && a->head) {
            /* A big block gets its own chunk behind the current one, which keeps its free space. */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    a->used += n;
    return p;
}

_Noreturn void jfail_raise(jfail *f, vesta_status code, const char *fmt, ...)
{
    char msg[VESTA_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vesta_error_set(f->err, code, "%s", msg);
    longjmp(f->jmp, 1);
}

void *jalloc(jfail *f, size_t n)
{
    void *p = jarena_alloc(f->arena, n);
    if (!p) {
        if (f->arena->limit && f->arena->used + n > f->arena->limit)
            jfail_raise(f, VESTA_ERR_LIMIT, "template memory limit of %zu bytes reached", f->arena->limit);
        jfail_raise(f, VESTA_ERR_NOMEM, "out of memory");
    }
    memset(p, 0, n);
    return p;
}

char *jstrndup(jfail *f, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        jfail_raise(f, VESTA_ERR_LIMIT, "string too long");
    char *p = jarena_alloc(f->arena, n + 1);
    if (!p)
        jalloc(f, n + 1); /* raises with the right message */
    if (n)
        memcpy(p, s, n);
    p[n] = 0;
    return p;
}
