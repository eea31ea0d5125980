/* libFuzzer entry point for the GGUF reader, and for the model configuration built from GGUF
 * metadata: whatever the bytes, open either fails with an error or yields a reader whose every
 * accessor stays inside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#include "vesta/gguf.h"

static void exercise(const vesta_gguf *g)
{
    static const char *keys[] = {"general.architecture", "general.alignment", "llama.block_count",
                                 "llama.rope.freq_base", "tokenizer.ggml.tokens",
                                 "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                                 "tokenizer.ggml.add_bos_token", "tokenizer.chat_template"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        uint64_t u;
        int64_t i;
        double d;
        bool b;
        vesta_gguf_str s;
        vesta_gguf_type et;
        uint64_t n;
        (void)vesta_gguf_get_u64(g, keys[k], &u);
        (void)vesta_gguf_get_i64(g, keys[k], &i);
        (void)vesta_gguf_get_f64(g, keys[k], &d);
        (void)vesta_gguf_get_bool(g, keys[k], &b);
        if (vesta_gguf_get_str(g, keys[k], &s) && s.len > 0)
            (void)((volatile const char *)s.ptr)[s.len - 1];
        if (vesta_gguf_get_array(g, keys[k], &et, &n)) {
            for (uint64_t j = 0; j < n && j < 4096; j++) {
                if (vesta_gguf_array_str(g, keys[k], j, &s) && s.len > 0)
                    (void)((volatile const char *)s.ptr)[s.len - 1];
                (void)vesta_gguf_array_i64(g, keys[k], j, &i);
                (void)vesta_gguf_array_f64(g, keys[k], j, &d);
            }
            (void)vesta_gguf_array_str(g, keys[k], n, &s);
        }
    }
    char name[256];
    for (uint64_t t = 0; t < vesta_gguf_tensor_count(g); t++) {
        const vesta_gguf_tensor *x = vesta_gguf_tensor_at(g, t);
        if (x->nbytes > 0) {
            (void)((volatile const uint8_t *)x->data)[0];
            (void)((volatile const uint8_t *)x->data)[x->nbytes - 1];
        }
        size_t len = x->name.len < sizeof(name) - 1 ? (size_t)x->name.len : sizeof(name) - 1;
        memcpy(name, x->name.ptr, len);
        name[len] = '\0';
        (void)vesta_gguf_find_tensor(g, name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so that the sanitizer sees reads past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    vesta_error err;
    err.msg[0] = '\0';
    vesta_gguf *g = vesta_gguf_open_memory(copy, size, "fuzz.gguf", &err);
    if (g != NULL) {
        exercise(g);
        vesta_model_config c;
        (void)vesta_model_config_from_gguf(g, &c, &err);
        vesta_gguf_close(g);
    } else if (err.msg[0] == '\0') {
        abort(); /* every failure must explain itself */
    }
    free(copy);
    return 0;
}
