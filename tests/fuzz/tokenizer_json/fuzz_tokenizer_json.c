/* Fuzzes the tokenizer.json / tokenizer_config.json loader. Input: tokenizer.json bytes,
 * optionally followed by a NUL byte and tokenizer_config.json bytes. A tokenizer that loads is
 * exercised: encode (both special-token modes), decode of its whole id range, streaming. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vesta/detokenizer.h"
#include "vesta/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *json = (const char *)data, *cfg = NULL;
    size_t jl = size, cl = 0;
    const uint8_t *nul = memchr(data, 0, size);
    if (nul) {
        jl = (size_t)(nul - data);
        cfg = (const char *)nul + 1;
        cl = size - jl - 1;
    }
    vesta_error err = {0};
    vesta_tokenizer *t = vesta_tokenizer_load_json(json, jl, cfg, cl, "fuzz.json", &err);
    if (!t) return 0;
    static const char text[] = "Hello  world 123 <s>x</s> \xe6\x97\xa5\xe6\x9c\xac ab\tc\r\n";
    for (int mode = 0; mode < 4; mode++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (vesta_tokenizer_encode(t, text, sizeof text - 1, mode & 1, mode & 2, &ids, &n, &err) == VESTA_OK) {
            char *out = NULL;
            if (vesta_tokenizer_decode(t, ids, n, mode & 1, &out, NULL, &err) == VESTA_OK) free(out);
        }
        free(ids);
    }
    size_t v = vesta_tokenizer_vocab_size(t);
    if (v > 4096) v = 4096;
    int32_t *all = malloc((v + 1) * sizeof *all);
    size_t k = 0;
    for (size_t i = 0; all && i < v; i++)
        if (vesta_tokenizer_id_to_token(t, (int32_t)i, NULL)) all[k++] = (int32_t)i;
    char *out = NULL;
    if (all && vesta_tokenizer_decode(t, all, k, false, &out, NULL, &err) == VESTA_OK) free(out);
    const char *stops[] = {"a", "</s>"};
    vesta_detokenizer_opts o = {.stop = stops, .n_stop = 2, .skip_special_tokens = true};
    vesta_detokenizer *d = vesta_detokenizer_create(t, &o, &err);
    bool stopped = false;
    for (size_t i = 0; d && all && i < k && !stopped; i++) {
        const char *p;
        size_t l;
        vesta_detokenizer_feed(d, all[i], &p, &l, &stopped, &err);
    }
    if (d) {
        const char *p;
        size_t l;
        vesta_detokenizer_finish(d, &p, &l, &err);
    }
    vesta_detokenizer_release(d);
    free(all);
    vesta_tokenizer_chat_template(t, NULL);
    vesta_tokenizer_release(t);
    return 0;
}
