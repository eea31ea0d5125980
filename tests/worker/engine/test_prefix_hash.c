/* Block keys (common/base/prefix_hash.c) against hash_golden.json, which gen_hash_golden.py
 * computed from the formula in include/vesta/prefix_hash.h with the Python xxhash package.
 * Keys are a wire contract with the router: they must never change silently. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "vesta/prefix_hash.h"

static uint64_t u64(json_t *v) { return strtoull(json_string_value(v), NULL, 10); }

int main(int argc, char **argv)
{
    json_error_t jerr;
    json_t *root = argc == 2 ? json_load_file(argv[1], 0, &jerr) : NULL;
    if (root == NULL) {
        fprintf(stderr, "usage: test_prefix_hash hash_golden.json (%s)\n", argc == 2 ? jerr.text : "");
        return 1;
    }
    int failures = 0, checked = 0;
    json_t *cases = json_object_get(root, "cases");
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *k = json_array_get(cases, c);
        int bs = (int)json_integer_value(json_object_get(k, "block_size"));
        json_t *jt = json_object_get(k, "tokens"), *jk = json_object_get(k, "keys");
        int n = (int)json_array_size(jt), nk = (int)json_array_size(jk);
        int32_t *tok = malloc((size_t)n * sizeof(int32_t));
        uint64_t *keys = malloc((size_t)(n + 1) * sizeof(uint64_t));
        for (int i = 0; i < n; i++)
            tok[i] = (int32_t)json_integer_value(json_array_get(jt, (size_t)i));
        vesta_block_hash_extra ex = {u64(json_object_get(k, "salt")),
                                     (int32_t)json_integer_value(json_object_get(k, "lora_id"))};
        if (vesta_block_hash_root(&ex) != u64(json_object_get(k, "root"))) {
            fprintf(stderr, "case %zu: root differs\n", c);
            failures++;
        }
        int got = vesta_block_hash_chain(tok, n, bs, &ex, keys, n + 1);
        if (got != nk) {
            fprintf(stderr, "case %zu: %d keys, want %d\n", c, got, nk);
            failures++;
        }
        for (int i = 0; i < got && i < nk; i++, checked++)
            if (keys[i] != u64(json_array_get(jk, (size_t)i))) {
                fprintf(stderr, "case %zu: key %d differs\n", c, i);
                failures++;
            }
        free(tok);
        free(keys);
    }
    json_decref(root);
    printf("%d block keys checked\n", checked);
    return failures ? 1 : 0;
}
