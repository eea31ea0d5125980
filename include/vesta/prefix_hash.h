/* Prefix-cache block keys, shared by the workers (automatic prefix caching) and the router
 * (prefix-affinity routing), so both compute the same key for the same tokens.
 *
 * The key of a full block is a chain over the blocks before it:
 *   root           = XXH3_64bits_withSeed("vesta-kv-v1", 11, salt)
 *   key(block i)   = XXH3_64bits_withSeed(buf, len, salt), where buf is, little-endian:
 *                    u64 key(block i-1) (root for block 0) | i32 lora_id (0 = base model)
 *                    | i32 token_ids[block_size]
 * `salt` is the per-deployment salt (0 by default). Only full blocks have keys. */
#ifndef VESTA_PREFIX_HASH_H
#define VESTA_PREFIX_HASH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vesta_block_hash_extra {
    uint64_t salt;
    int32_t lora_id;
} vesta_block_hash_extra;

uint64_t vesta_block_hash_root(const vesta_block_hash_extra *extra);
uint64_t vesta_block_hash(uint64_t parent, const int32_t *tokens, int block_size,
                          const vesta_block_hash_extra *extra);

/* Keys of the first n_tokens / block_size full blocks of tokens into out[]. Returns the count. */
int vesta_block_hash_chain(const int32_t *tokens, int n_tokens, int block_size,
                           const vesta_block_hash_extra *extra, uint64_t *out, int max_out);

#ifdef __cplusplus
}
#endif
#endif
