/* Private helpers shared by the GGUF and safetensors readers: little-endian loads,
 * overflow-checked arithmetic, read-only file mapping and a string-keyed hash index. */
#ifndef VESTA_FORMAT_UTIL_H
#define VESTA_FORMAT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"

static inline uint16_t vesta_fmt_le16(const void *p)
{
    const uint8_t *b = p;
    return (uint16_t)(b[0] | (b[1] << 8));
}

static inline uint32_t vesta_fmt_le32(const void *p)
{
    const uint8_t *b = p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static inline uint64_t vesta_fmt_le64(const void *p)
{
    const uint8_t *b = p;
    return (uint64_t)vesta_fmt_le32(b) | ((uint64_t)vesta_fmt_le32(b + 4) << 32);
}

/* true on overflow */
static inline bool vesta_fmt_mul_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}

static inline bool vesta_fmt_add_overflow(uint64_t a, uint64_t b, uint64_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

/* Maps a whole regular file read-only. NULL + err (VESTA_ERR_IO, naming the file) on failure,
 * including an empty file (nothing to map). */
void *vesta_fmt_map_file(const char *path, size_t *size, vesta_error *err);
void vesta_fmt_unmap(void *base, size_t size);

/* Open-addressing hash index from (non NUL-terminated) strings to values; the strings are not
 * copied and must outlive the index. Capacity is fixed at init for n keys. */
typedef struct vesta_fmt_index_slot {
    const char *key;
    size_t len;
    uint64_t value;
} vesta_fmt_index_slot;

typedef struct vesta_fmt_index {
    vesta_fmt_index_slot *slots;
    size_t cap; /* power of two, > 2n; 0 when empty */
} vesta_fmt_index;

int vesta_fmt_index_init(vesta_fmt_index *ix, uint64_t n); /* 0, or -1 when out of memory */
/* false if the key is already present (nothing inserted) */
bool vesta_fmt_index_insert(vesta_fmt_index *ix, const char *key, size_t len, uint64_t value);
bool vesta_fmt_index_find(const vesta_fmt_index *ix, const char *key, size_t len, uint64_t *value);
void vesta_fmt_index_free(vesta_fmt_index *ix);

#endif
