/* safetensors reader. The file is mmapped; the JSON header is parsed (jansson) and checked once
 * at open: known dtype, shape product and byte size overflow-checked, data_offsets inside the
 * data section and matching the byte size, tensors not overlapping. "__metadata__" is ignored.
 * Tensor data pointers point into the mapping and may be unaligned for their dtype. */
#ifndef VESTA_SAFETENSORS_H
#define VESTA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VESTA_SAFETENSORS_MAX_DIMS 8

typedef struct vesta_safetensors_tensor {
    const char *name;   /* NUL-terminated, owned by the reader */
    const char *dtype;  /* as spelled in the file: "F32", "F16", "BF16", "I32", "I64", ... */
    size_t itemsize;    /* bytes per element */
    int ndim;           /* 0 for a scalar */
    int64_t shape[VESTA_SAFETENSORS_MAX_DIMS];
    const void *data;   /* checked: data + nbytes lies inside the data section */
    uint64_t nbytes;    /* == prod(shape) * itemsize */
} vesta_safetensors_tensor;

typedef struct vesta_safetensors vesta_safetensors;

/* Opens and validates a file. NULL + err naming the file and the offending tensor on failure
 * (VESTA_ERR_IO: cannot open/map; VESTA_ERR_FORMAT: malformed; VESTA_ERR_UNSUPPORTED: unknown
 * dtype). */
vesta_safetensors *vesta_safetensors_open(const char *path, vesta_error *err);
/* Same over a caller-owned buffer that must outlive the reader (fuzzing, tests); `name` is used
 * in error messages. */
vesta_safetensors *vesta_safetensors_open_memory(const void *data, size_t len, const char *name,
                                                 vesta_error *err);
void vesta_safetensors_close(vesta_safetensors *st); /* NULL is a no-op */

const char *vesta_safetensors_path(const vesta_safetensors *st);
size_t vesta_safetensors_tensor_count(const vesta_safetensors *st);
/* Tensors in the order of their data offsets; NULL when i is out of range. */
const vesta_safetensors_tensor *vesta_safetensors_tensor_at(const vesta_safetensors *st, size_t i);
/* NULL if absent. */
const vesta_safetensors_tensor *vesta_safetensors_find(const vesta_safetensors *st, const char *name);

#ifdef __cplusplus
}
#endif
#endif
