/* Fuzzes the GGUF tokenizer reader (tokenizer.ggml.* keys) on top of the GGUF parser; a
 * tokenizer that loads is exercised with encode and decode. */
#include <stdint.h>
#include <stdlib.h>

#include "vesta/gguf.h"
#include "vesta/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vesta_error err = {0};
    vesta_gguf *g = vesta_gguf_open_memory(data, size, "fuzz.gguf", &err);
    if (!g) return 0;
    vesta_tokenizer *t = vesta_tokenizer_load_gguf(g, &err);
    vesta_gguf_close(g);
    if (!t) return 0;
    static const char text[] = "Hello world 12345 <|im_start|>user\n \xf0\x9f\x98\x80 don't";
    int32_t *ids = NULL;
    size_t n = 0;
    if (vesta_tokenizer_encode(t, text, sizeof text - 1, true, true, &ids, &n, &err) == VESTA_OK) {
        char *out = NULL;
        if (vesta_tokenizer_decode(t, ids, n, true, &out, NULL, &err) == VESTA_OK) free(out);
    }
    free(ids);
    vesta_tokenizer_release(t);
    return 0;
}
