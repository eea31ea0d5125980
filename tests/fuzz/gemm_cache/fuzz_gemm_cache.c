/* Fuzzing the GEMM tuning cache parser (worker/backend_cuda/gemm_cache.c). The input is a cache
 * file's bytes, read as the device "fuzz" with library version 1. Accepted files must hold only
 * valid, distinct entries and encode back to exactly the input; refused ones leave the cache
 * empty; a file of another device or version is accepted but empty. Any violation aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vesta_gemm_cache c; /* 330 KB: not on the stack */
    vesta_gemm_cache_init(&c, "fuzz", 1);
    bool other = false;
    vesta_error err = {0};
    vesta_status st = vesta_gemm_cache_parse(&c, data, size, &other, &err);
    if (st != VESTA_OK) {
        if (c.count != 0 || err.msg[0] == '\0') abort();
        return 0;
    }
    if (other) {
        if (c.count != 0) abort();
        return 0;
    }
    for (int i = 0; i < c.count; i++) {
        const vesta_gemm_cache_entry *e = &c.entries[i];
        if (e->n < 1 || e->in < 1 || e->out < 1 || vesta_gemm_cache_find(&c, e->n, e->in, e->out, e->f32) != e) abort();
    }
    size_t n = vesta_gemm_cache_encoded_size(&c);
    uint8_t *buf = malloc(n);
    if (!buf) return 0;
    vesta_gemm_cache_encode(&c, buf);
    if (n != size || memcmp(buf, data, n)) abort(); /* the format has one encoding per cache */
    free(buf);
    return 0;
}
