#include "vesta/prefix_hash.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

/* Serializes explicitly in little-endian so keys agree across hosts. */
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

uint64_t vesta_block_hash_root(const vesta_block_hash_extra *extra)
{
    uint64_t salt = extra ? extra->salt : 0;
    return XXH3_64bits_withSeed("vesta-kv-v1", 11, salt);
}

uint64_t vesta_block_hash(uint64_t parent, const int32_t *tokens, int block_size,
                          const vesta_block_hash_extra *extra)
{
    /* Block sizes are small (<= 256 in practice); a stack buffer avoids allocation. */
    unsigned char buf[12 + 4 * 256];
    XXH3_state_t st;
    uint64_t salt = extra ? extra->salt : 0;
    XXH3_64bits_reset_withSeed(&st, salt);
    put_u64(buf, parent);
    put_u32(buf + 8, (uint32_t)(extra ? extra->lora_id : 0));
    XXH3_64bits_update(&st, buf, 12);
    for (int off = 0; off < block_size; off += 256) {
        int n = block_size - off < 256 ? block_size - off : 256;
        for (int i = 0; i < n; i++)
            put_u32(buf + 4 * i, (uint32_t)tokens[off + i]);
        XXH3_64bits_update(&st, buf, (size_t)n * 4);
    }
    return XXH3_64bits_digest(&st);
}

int vesta_block_hash_chain(const int32_t *tokens, int n_tokens, int block_size,
                           const vesta_block_hash_extra *extra, uint64_t *out, int max_out)
{
    if (block_size <= 0 || n_tokens <= 0)
        return 0;
    uint64_t h = vesta_block_hash_root(extra);
    int n = 0;
    for (int off = 0; off + block_size <= n_tokens && n < max_out; off += block_size) {
        h = vesta_block_hash(h, tokens + off, block_size, extra);
        out[n++] = h;
    }
    return n;
}
