/* Fuzzes encode / decode / streaming detokenization on arbitrary bytes with two small
 * tokenizers built at start-up: a byte-level BPE (Split regex + ByteLevel, added tokens with
 * lstrip/rstrip/single_word) and a SentencePiece-style BPE (NFKC + Replace normalizers,
 * Digits + Metaspace, byte fallback, TemplateProcessing, ByteFallback/Fuse/Strip decoders).
 * Input byte 0 selects tokenizer and flags; the rest is the text, and also read as ids. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tok_internal.h"
#include "vesta/detokenizer.h"
#include "vesta/tokenizer.h"

static json_t *added(const char *content, int id, bool special, bool lstrip, bool rstrip,
                     bool single, bool normalized) {
    return json_pack("{s:s,s:i,s:b,s:b,s:b,s:b,s:b}", "content", content, "id", id, "special", special,
                     "lstrip", lstrip, "rstrip", rstrip, "single_word", single, "normalized", normalized);
}

static vesta_tokenizer *build(bool bytelevel) {
    json_t *vocab = json_object(), *merges = json_array(), *add = json_array();
    int id = 0;
    char key[16];
    if (bytelevel) {
        for (int b = 0; b < 256; b++) {
            size_t l;
            const char *c = tok_bytelevel_char((uint8_t)b, &l);
            char s[4] = {0};
            memcpy(s, c, l);
            json_object_set_new(vocab, s, json_integer(id++));
        }
        const char *m[][3] = {{"\xc4\xa0", "t", "\xc4\xa0t"}, {"h", "e", "he"}, {"\xc4\xa0t", "he", "\xc4\xa0the"},
                              {"1", "2", "12"}, {"\xc4\xa0", "\xc4\xa0", "\xc4\xa0\xc4\xa0"}};
        for (size_t i = 0; i < 5; i++) {
            if (!json_object_get(vocab, m[i][2])) json_object_set_new(vocab, m[i][2], json_integer(id++));
            char buf[32];
            snprintf(buf, sizeof buf, "%s %s", m[i][0], m[i][1]);
            json_array_append_new(merges, json_string(buf));
        }
    } else {
        for (int b = 0; b < 256; b++) {
            snprintf(key, sizeof key, "<0x%02X>", b);
            json_object_set_new(vocab, key, json_integer(id++));
        }
        json_object_set_new(vocab, "\xe2\x96\x81", json_integer(id++));
        for (char c = 'a'; c <= 'z'; c++) {
            char s[2] = {c, 0};
            json_object_set_new(vocab, s, json_integer(id++));
        }
        json_object_set_new(vocab, "<unk>", json_integer(id++));
        const char *m[][3] = {{"\xe2\x96\x81", "t", "\xe2\x96\x81t"}, {"h", "e", "he"},
                              {"\xe2\x96\x81t", "he", "\xe2\x96\x81the"}};
        for (size_t i = 0; i < 3; i++) {
            json_object_set_new(vocab, m[i][2], json_integer(id++));
            char buf[32];
            snprintf(buf, sizeof buf, "%s %s", m[i][0], m[i][1]);
            json_array_append_new(merges, json_string(buf));
        }
    }
    json_array_append_new(add, added("<s>", 400, true, false, false, false, false));
    json_array_append_new(add, added("</s>", 401, true, true, true, false, false));
    json_array_append_new(add, added("[W]", 402, false, false, false, true, false));
    json_array_append_new(add, added("hello", 403, false, false, false, false, true));
    json_t *model = json_pack("{s:s,s:o,s:o,s:b,s:b}", "type", "BPE", "vocab", vocab, "merges", merges,
                              "byte_fallback", !bytelevel, "fuse_unk", true);
    if (!bytelevel) json_object_set_new(model, "unk_token", json_string("<unk>"));
    json_t *root = json_pack("{s:o,s:o}", "model", model, "added_tokens", add);
    if (bytelevel) {
        json_object_set_new(root, "pre_tokenizer", json_pack(
            "{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b}]}", "type", "Sequence", "pretokenizers",
            "type", "Split", "pattern", "Regex",
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+$|\\s+",
            "behavior", "Isolated", "invert", false, "type", "ByteLevel", "add_prefix_space", true,
            "use_regex", false));
        json_object_set_new(root, "decoder", json_pack("{s:s}", "type", "ByteLevel"));
    } else {
        json_object_set_new(root, "normalizer", json_pack(
            "{s:s,s:[{s:s},{s:s,s:{s:s},s:s},{s:s}]}", "type", "Sequence", "normalizers", "type", "NFKC",
            "type", "Replace", "pattern", "Regex", "\\s{2,}", "content", " ", "type", "Lowercase"));
        json_object_set_new(root, "pre_tokenizer", json_pack(
            "{s:s,s:[{s:s,s:b},{s:s,s:s,s:s,s:b}]}", "type", "Sequence", "pretokenizers", "type", "Digits",
            "individual_digits", true, "type", "Metaspace", "replacement", "\xe2\x96\x81", "prepend_scheme",
            "first", "split", false)); /* long words: the segmented BPE path */
        json_object_set_new(root, "post_processor", json_pack(
            "{s:s,s:[{s:{s:s}},{s:{s:s}}],s:{s:{s:[i]}}}", "type", "TemplateProcessing", "single",
            "SpecialToken", "id", "<s>", "Sequence", "id", "A", "special_tokens", "<s>", "ids", 400));
        json_object_set_new(root, "decoder", json_pack(
            "{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s},{s:s,s:s,s:i,s:i}]}", "type", "Sequence", "decoders",
            "type", "Replace", "pattern", "String", "\xe2\x96\x81", "content", " ", "type", "ByteFallback",
            "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0));
    }
    char *s = json_dumps(root, 0);
    json_decref(root);
    vesta_error err = {0};
    vesta_tokenizer *t = s ? vesta_tokenizer_load_json(s, strlen(s), NULL, 0, "fuzz-builtin", &err) : NULL;
    if (!t) {
        fprintf(stderr, "fuzz_tokenizer_encode: built-in tokenizer: %s\n", err.msg);
        abort();
    }
    free(s);
    return t;
}

static vesta_tokenizer *tokenizers[2];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tokenizers[0]) {
        tokenizers[0] = build(true);
        tokenizers[1] = build(false);
    }
    if (size < 1) return 0;
    uint8_t flags = data[0];
    const vesta_tokenizer *t = tokenizers[flags & 1];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    vesta_error err = {0};
    int32_t *ids = NULL;
    size_t nid = 0;
    if (vesta_tokenizer_encode(t, text, n, flags & 2, flags & 4, &ids, &nid, &err) == VESTA_OK) {
        char *out = NULL;
        size_t ol;
        if (vesta_tokenizer_decode(t, ids, nid, flags & 8, &out, &ol, &err) == VESTA_OK) free(out);
    }
    free(ids);
    vesta_text_span sp = {n / 3, n / 2};
    if (vesta_tokenizer_encode_spans(t, text, n, false, &sp, 1, &ids, &nid, &err) == VESTA_OK) free(ids);
    /* the bytes as 16-bit ids (out-of-range ones are errors) through decode and streaming */
    size_t k = n / 2;
    int32_t *raw = malloc((k + 1) * sizeof *raw);
    if (!raw) return 0;
    for (size_t i = 0; i < k; i++) raw[i] = (int32_t)(((uint8_t)text[2 * i] | ((uint8_t)text[2 * i + 1] << 8)) % 420);
    char *out = NULL;
    if (vesta_tokenizer_decode(t, raw, k, flags & 8, &out, NULL, &err) == VESTA_OK) free(out);
    const char *stops[] = {"the", "\xef\xbf\xbd", " "};
    vesta_detokenizer_opts o = {.skip_special_tokens = flags & 8, .stop = stops, .n_stop = (flags >> 4) & 3,
                                .include_stop_str_in_output = flags & 64, .prefix_ids = raw,
                                .n_prefix = (flags & 128) ? k / 4 : 0};
    vesta_detokenizer *d = vesta_detokenizer_create(t, &o, &err);
    bool stopped = false;
    for (size_t i = o.n_prefix; d && i < k && !stopped; i++) {
        const char *p;
        size_t l;
        vesta_detokenizer_feed(d, raw[i], &p, &l, &stopped, &err);
    }
    if (d) {
        const char *p;
        size_t l;
        vesta_detokenizer_finish(d, &p, &l, &err);
    }
    vesta_detokenizer_release(d);
    free(raw);
    return 0;
}
