#include "proto_internal.h"

#define SCAN_MAX_DEPTH 32

/* Reads a big-endian length of `width` bytes at data[*pos], advancing *pos. */
static int read_len(const unsigned char *d, size_t len, size_t *pos, int width, uint64_t *out)
{
    if (len - *pos < (size_t)width)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < width; i++)
        v = (v << 8) | d[*pos + (size_t)i];
    *pos += (size_t)width;
    *out = v;
    return 0;
}

/* The header of one object at d[*pos]: how many payload bytes follow (*skip) and how many child
 * objects (*children). Returns -1 on a truncated header, -2 on the never-used byte 0xc1. */
static int read_header(const unsigned char *d, size_t len, size_t *pos, uint64_t *skip,
                       uint64_t *children)
{
    unsigned b = d[(*pos)++];
    uint64_t n = 0;
    *skip = 0;
    *children = 0;
    if (b <= 0x7f || b >= 0xe0)
        return 0;                         /* fixint */
    if (b <= 0x8f) { *children = (uint64_t)(b & 0x0f) * 2; return 0; } /* fixmap */
    if (b <= 0x9f) { *children = b & 0x0f; return 0; }                  /* fixarray */
    if (b <= 0xbf) { *skip = b & 0x1f; return 0; }                      /* fixstr */
    switch (b) {
    case 0xc0: case 0xc2: case 0xc3: return 0;                          /* nil, bool */
    case 0xc1: return -2;
    case 0xc4: case 0xd9: if (read_len(d, len, pos, 1, &n)) return -1; *skip = n; return 0;
    case 0xc5: case 0xda: if (read_len(d, len, pos, 2, &n)) return -1; *skip = n; return 0;
    case 0xc6: case 0xdb: if (read_len(d, len, pos, 4, &n)) return -1; *skip = n; return 0;
    case 0xc7: if (read_len(d, len, pos, 1, &n)) return -1; *skip = n + 1; return 0; /* ext */
    case 0xc8: if (read_len(d, len, pos, 2, &n)) return -1; *skip = n + 1; return 0;
    case 0xc9: if (read_len(d, len, pos, 4, &n)) return -1; *skip = n + 1; return 0;
    case 0xca: case 0xce: case 0xd2: *skip = 4; return 0;
    case 0xcb: case 0xcf: case 0xd3: *skip = 8; return 0;
    case 0xcc: case 0xd0: *skip = 1; return 0;
    case 0xcd: case 0xd1: *skip = 2; return 0;
    case 0xd4: *skip = 2; return 0;                                     /* fixext */
    case 0xd5: *skip = 3; return 0;
    case 0xd6: *skip = 5; return 0;
    case 0xd7: *skip = 9; return 0;
    case 0xd8: *skip = 17; return 0;
    case 0xdc: if (read_len(d, len, pos, 2, &n)) return -1; *children = n; return 0;
    case 0xdd: if (read_len(d, len, pos, 4, &n)) return -1; *children = n; return 0;
    case 0xde: if (read_len(d, len, pos, 2, &n)) return -1; *children = 2 * n; return 0;
    case 0xdf: if (read_len(d, len, pos, 4, &n)) return -1; *children = 2 * n; return 0;
    default: return -2;
    }
}

vesta_status proto_scan(const char *data, size_t len, int max_depth, vesta_error *err)
{
    const unsigned char *d = (const unsigned char *)data;
    uint64_t pending[SCAN_MAX_DEPTH + 1];
    int depth = 0;
    size_t pos = 0;
    if (max_depth > SCAN_MAX_DEPTH)
        max_depth = SCAN_MAX_DEPTH;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (pos >= len)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "truncated msgpack at byte %zu", pos);
        size_t at = pos;
        uint64_t skip, children;
        int rc = read_header(d, len, &pos, &skip, &children);
        if (rc == -1)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "truncated msgpack header at byte %zu", at);
        if (rc == -2)
            return vesta_error_set(err, VESTA_ERR_FORMAT, "invalid msgpack byte 0x%02x at byte %zu",
                                   d[at], at);
        if (skip > len - pos)
            return vesta_error_set(err, VESTA_ERR_FORMAT,
                                   "msgpack value at byte %zu runs past the end", at);
        pos += (size_t)skip;
        if (children > len - pos)
            return vesta_error_set(err, VESTA_ERR_FORMAT,
                                   "msgpack container at byte %zu claims more elements than bytes remain",
                                   at);
        if (children > 0) {
            if (depth + 1 > max_depth)
                return vesta_error_set(err, VESTA_ERR_FORMAT, "msgpack nested deeper than %d",
                                       max_depth);
            pending[++depth] = children;
        }
    }
    if (pos != len)
        return vesta_error_set(err, VESTA_ERR_FORMAT, "%zu trailing bytes after the message",
                               len - pos);
    return VESTA_OK;
}
