/* Internal to vesta_proto: the declarative message schemas that drive both encode and decode,
 * so the two sides cannot disagree about a field's name, type or bound. */
#ifndef VESTA_PROTO_INTERNAL_H
#define VESTA_PROTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "vesta/proto.h"

typedef enum proto_kind {
    PK_INT,        /* int, range [lo, hi] */
    PK_I32,        /* int32_t, range [lo, hi] */
    PK_I64,        /* int64_t, range [lo, hi] */
    PK_U64,        /* uint64_t */
    PK_FLOAT,      /* float, finite unless PF_NONFINITE_OK */
    PK_DOUBLE,     /* double, finite */
    PK_BOOL,
    PK_STR,        /* char[cap] */
    PK_STRS,       /* char[max][cap], count (int) at off_n, max = hi */
    PK_I32_FIXED,  /* int32_t[hi], count at off_n, elements in [lo, 2^31) */
    PK_I32_ALLOC,  /* int32_t *, count at off_n, at most hi, elements >= lo */
    PK_U64_ALLOC,  /* uint64_t *, count at off_n, at most hi */
    PK_MAP,        /* nested struct described by sub */
    PK_LOGIT_BIAS, /* vesta_logit_bias[VESTA_MAX_LOGIT_BIAS], count at off_n: [[token, bias], ...] */
    PK_LOGPROBS,   /* vesta_sample_result *, one per token of the int32 array named by off_n */
} proto_kind;

enum {
    PF_REQUIRED = 1,      /* decode: must be present */
    PF_NONEMPTY = 2,      /* strings: >= 1 byte; arrays: >= 1 element */
    PF_NIL_EMPTY = 4,     /* nil decodes as "" / NULL; "" / NULL encodes as nil */
    PF_NONFINITE_OK = 8,  /* floats may be +-inf / nan (logprobs) */
};

typedef struct proto_schema proto_schema;

typedef struct proto_field {
    const char *name;
    proto_kind kind;
    int flags;
    size_t off;    /* offset of the value in the struct */
    size_t off_n;  /* offset of the int count, for arrays */
    size_t cap;    /* bytes of a char[] including the NUL */
    int64_t lo, hi;
    const proto_schema *sub;
} proto_field;

struct proto_schema {
    const char *name;
    const proto_field *fields;
    int num_fields;
    /* Rules across fields, run after decode and before encode; NULL when none. */
    vesta_status (*check)(const void *base, const char *path, vesta_error *err);
};

/* The schema of a message type's body (u.*), or NULL for unknown types. */
const proto_schema *proto_schema_of(vesta_msg_type type);

/* Checks that data[0, len) is exactly one msgpack object whose headers are complete, whose
 * container counts each fit in the bytes that remain (every element takes >= 1 byte) and whose
 * nesting is at most max_depth. Allocates nothing. After it passes, msgpack_unpack_next's
 * allocations are bounded by a small multiple of len, which is what makes decoding hostile
 * frames safe. */
vesta_status proto_scan(const char *data, size_t len, int max_depth, vesta_error *err);

#endif
