/* GGUF v3 reader. The file is mmapped; metadata and tensor infos are parsed and bounds-checked
 * once at open (every length, count and offset against the real file size, overflow-checked), so
 * the accessors below cannot read outside the mapping. Strings point into the mapping and are
 * NOT NUL-terminated. */
#ifndef VESTA_GGUF_H
#define VESTA_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vesta_gguf_type {
    VESTA_GGUF_UINT8 = 0,
    VESTA_GGUF_INT8 = 1,
    VESTA_GGUF_UINT16 = 2,
    VESTA_GGUF_INT16 = 3,
    VESTA_GGUF_UINT32 = 4,
    VESTA_GGUF_INT32 = 5,
    VESTA_GGUF_FLOAT32 = 6,
    VESTA_GGUF_BOOL = 7,
    VESTA_GGUF_STRING = 8,
    VESTA_GGUF_ARRAY = 9,
    VESTA_GGUF_UINT64 = 10,
    VESTA_GGUF_INT64 = 11,
    VESTA_GGUF_FLOAT64 = 12,
} vesta_gguf_type;

typedef struct vesta_gguf_str {
    const char *ptr;
    uint64_t len;
} vesta_gguf_str;

typedef struct vesta_gguf_tensor {
    vesta_gguf_str name;
    uint32_t ggml_type;     /* GGML type id: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 30 BF16, ... */
    uint32_t n_dims;
    uint64_t ne[4];         /* GGML order: ne[0] is the fastest-varying (row length) */
    const void *data;       /* checked: data + nbytes lies inside the file */
    uint64_t nbytes;
} vesta_gguf_tensor;

typedef struct vesta_gguf vesta_gguf;

/* Opens and validates a file (magic "GGUF", version 3, bounds of every field). NULL + err
 * naming the file and the offending key/tensor on failure. */
vesta_gguf *vesta_gguf_open(const char *path, vesta_error *err);
/* Same over a caller-owned buffer (fuzzing, tests); `name` is used in error messages. */
vesta_gguf *vesta_gguf_open_memory(const void *data, size_t len, const char *name, vesta_error *err);
void vesta_gguf_close(vesta_gguf *g); /* NULL is a no-op */

const char *vesta_gguf_path(const vesta_gguf *g);

/* Metadata. Scalar getters convert between integer widths when the value fits and return false
 * when the key is absent or of an incompatible type. */
bool vesta_gguf_has_key(const vesta_gguf *g, const char *key);
bool vesta_gguf_get_u64(const vesta_gguf *g, const char *key, uint64_t *out);
bool vesta_gguf_get_i64(const vesta_gguf *g, const char *key, int64_t *out);
bool vesta_gguf_get_f64(const vesta_gguf *g, const char *key, double *out); /* any numeric type */
bool vesta_gguf_get_bool(const vesta_gguf *g, const char *key, bool *out);
bool vesta_gguf_get_str(const vesta_gguf *g, const char *key, vesta_gguf_str *out);

/* Arrays: element type and count; then element access (bounds-checked, false if out of range
 * or of another type). */
bool vesta_gguf_get_array(const vesta_gguf *g, const char *key, vesta_gguf_type *elem_type,
                          uint64_t *count);
bool vesta_gguf_array_str(const vesta_gguf *g, const char *key, uint64_t i, vesta_gguf_str *out);
bool vesta_gguf_array_i64(const vesta_gguf *g, const char *key, uint64_t i, int64_t *out);
bool vesta_gguf_array_f64(const vesta_gguf *g, const char *key, uint64_t i, double *out);

/* Tensors. */
uint64_t vesta_gguf_tensor_count(const vesta_gguf *g);
const vesta_gguf_tensor *vesta_gguf_tensor_at(const vesta_gguf *g, uint64_t i);
const vesta_gguf_tensor *vesta_gguf_find_tensor(const vesta_gguf *g, const char *name);

#ifdef __cplusplus
}
#endif
#endif
