/* Internal structures of vesta_tokenizer. Everything reachable from a vesta_tokenizer is
 * read-only after load, except the word cache, which has its own locks. */
#ifndef VESTA_TOK_INTERNAL_H
#define VESTA_TOK_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "vesta/error.h"
#include "vesta/tokenizer.h"

/* ---- growable byte buffer ---- */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;
bool tok_buf_reserve(tok_buf *b, size_t extra);
bool tok_buf_append(tok_buf *b, const void *s, size_t n);
void tok_buf_free(tok_buf *b);

typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
bool tok_ids_push(tok_ids *a, int32_t id);

/* ---- UTF-8 ---- */
/* Length of the valid UTF-8 prefix of s (== n when all valid). */
size_t tok_utf8_valid_prefix(const char *s, size_t n);
/* Decodes one code point at s (valid UTF-8 assumed), returns its byte length. */
int tok_utf8_decode(const char *s, size_t n, int32_t *cp);
int tok_utf8_encode(int32_t cp, char out[4]);
bool tok_cp_is_whitespace(int32_t cp);   /* Rust char::is_whitespace */
bool tok_cp_is_numeric(int32_t cp);      /* Rust char::is_numeric (Nd, Nl, No) */
bool tok_cp_is_word(int32_t cp);         /* regex \w: alphanumeric, marks, Pc, ZWJ/ZWNJ */

/* ---- string → int32 map (open addressing; keys copied into an arena) ---- */
typedef struct tok_strmap {
    uint64_t *hashes;
    uint32_t *key_off;
    uint32_t *key_len;
    int32_t *vals;
    size_t cap, count; /* cap is a power of two */
    tok_buf keys;
} tok_strmap;
bool tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
/* Inserts; returns false on OOM. *existed set when the key was present (value unchanged). */
bool tok_strmap_put(tok_strmap *m, const char *k, size_t n, int32_t v, bool *existed);
/* -1 when absent. */
int32_t tok_strmap_get(const tok_strmap *m, const char *k, size_t n);

/* ---- merges: (left id, right id) → rank, merged id ---- */
typedef struct tok_merge_map {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 = empty */
    uint32_t *rank;
    int32_t *merged;
    size_t cap, count;
} tok_merge_map;
bool tok_merge_map_init(tok_merge_map *m, size_t expected);
void tok_merge_map_free(tok_merge_map *m);
bool tok_merge_map_put(tok_merge_map *m, int32_t a, int32_t b, uint32_t rank, int32_t merged,
                       bool *existed);
bool tok_merge_map_get(const tok_merge_map *m, int32_t a, int32_t b, uint32_t *rank,
                       int32_t *merged);

/* ---- word cache (sharded, locked) ---- */
#define TOK_CACHE_SHARDS 16
typedef struct tok_cache_shard {
    pthread_mutex_t mu;
    uint64_t *hashes; /* 0 = empty */
    uint32_t *off;    /* into arena: key bytes then ids */
    uint16_t *klen;
    uint16_t *nids;
    size_t cap, count;
    tok_buf arena;
} tok_cache_shard;
typedef struct tok_cache {
    tok_cache_shard shards[TOK_CACHE_SHARDS];
    bool ready;
} tok_cache;
bool tok_cache_init(tok_cache *c);
void tok_cache_free(tok_cache *c);
/* Appends the cached ids of word to out; false when absent. */
bool tok_cache_get(tok_cache *c, const char *w, size_t n, tok_ids *out);
void tok_cache_put(tok_cache *c, const char *w, size_t n, const int32_t *ids, size_t nids);
#define TOK_CACHE_MAX_WORD 128

/* ---- pieces: a text buffer and sub-ranges of it, passed between pipeline stages ---- */
typedef struct tok_piece {
    size_t off, len;
    bool origin; /* starts at offset 0 of the original input (Metaspace prepend_scheme first) */
} tok_piece;
typedef struct tok_pieces {
    tok_buf text;
    tok_piece *v;
    size_t n, cap;
} tok_pieces;
bool tok_pieces_push(tok_pieces *p, size_t off, size_t len, bool origin);
/* Appends text and a piece for it. */
bool tok_pieces_add_text(tok_pieces *p, const char *s, size_t n, bool origin);
void tok_pieces_reset(tok_pieces *p);
void tok_pieces_free(tok_pieces *p);

/* ---- regex (PCRE2, JIT) ---- */
typedef struct tok_regex {
    pcre2_code *code;
    bool jit;
} tok_regex;
vesta_status tok_regex_compile(tok_regex *r, const char *pat, size_t n, bool literal,
                               vesta_error *err);
void tok_regex_free(tok_regex *r);
/* Finds the next match at or after `start` (Rust/Oniguruma find_iter semantics are obtained by
 * the caller advancing past empty matches). Returns 1 match, 0 none, <0 error. */
int tok_regex_next(const tok_regex *r, pcre2_match_data *md, const char *s, size_t n,
                   size_t start, size_t *mb, size_t *me);
/* Splits s into (range, is_match) runs like HF Pattern::find_matches. Callback per run. */
typedef bool (*tok_match_cb)(void *ud, size_t b, size_t e, bool is_match);
vesta_status tok_regex_find_matches(const tok_regex *r, const char *s, size_t n, tok_match_cb cb,
                                    void *ud, vesta_error *err);

/* ---- normalizers ---- */
typedef enum tok_norm_kind {
    TOK_NORM_SEQUENCE,
    TOK_NORM_NFC,
    TOK_NORM_NFD,
    TOK_NORM_NFKC,
    TOK_NORM_NFKD,
    TOK_NORM_LOWERCASE,
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE,
    TOK_NORM_STRIP,
} tok_norm_kind;
typedef struct tok_norm {
    tok_norm_kind kind;
    struct tok_norm **children;
    size_t n_children;
    char *str;       /* Prepend: prefix; Replace: content */
    size_t str_len;
    tok_regex re;    /* Replace */
    bool strip_left, strip_right;
} tok_norm;
void tok_norm_free(tok_norm *n);
/* Normalizes in → out (out is reset first). */
vesta_status tok_norm_apply(const tok_norm *n, const char *in, size_t len, tok_buf *out,
                            vesta_error *err);

/* ---- pre-tokenizers ---- */
typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} tok_split_behavior;
typedef enum tok_pre_kind {
    TOK_PRE_SEQUENCE,
    TOK_PRE_BYTELEVEL,
    TOK_PRE_SPLIT,
    TOK_PRE_METASPACE,
    TOK_PRE_DIGITS,
} tok_pre_kind;
typedef enum tok_prepend_scheme {
    TOK_PREPEND_ALWAYS,
    TOK_PREPEND_FIRST,
    TOK_PREPEND_NEVER,
} tok_prepend_scheme;
typedef struct tok_pre {
    tok_pre_kind kind;
    struct tok_pre **children;
    size_t n_children;
    tok_regex re;                 /* Split; ByteLevel with use_regex (GPT-2 pattern) */
    bool use_regex, add_prefix_space, invert, individual_digits, split;
    tok_split_behavior behavior;
    char repl[8];                 /* Metaspace replacement (UTF-8) */
    size_t repl_len;
    int32_t repl_cp;
    tok_prepend_scheme prepend;
} tok_pre;
void tok_pre_free(tok_pre *p);
/* Applies to every piece of in, producing out (reset first). */
vesta_status tok_pre_apply(const tok_pre *p, const tok_pieces *in, tok_pieces *out,
                           vesta_error *err);
/* The ByteLevel byte → char mapping (GPT-2 bytes_to_unicode) as UTF-8 strings. */
const char *tok_bytelevel_char(uint8_t b, size_t *len);
/* Inverse: code point → byte, -1 if cp is not one of the 256 mapped chars. */
int tok_bytelevel_byte(int32_t cp);

/* ---- decoders ---- */
typedef enum tok_dec_kind {
    TOK_DEC_SEQUENCE,
    TOK_DEC_BYTELEVEL,
    TOK_DEC_REPLACE,
    TOK_DEC_BYTEFALLBACK,
    TOK_DEC_FUSE,
    TOK_DEC_STRIP,
    TOK_DEC_METASPACE,
} tok_dec_kind;
typedef struct tok_dec {
    tok_dec_kind kind;
    struct tok_dec **children;
    size_t n_children;
    char *pattern, *content; /* Replace (string pattern only) */
    size_t pattern_len, content_len;
    int32_t strip_cp;        /* Strip content char */
    size_t strip_start, strip_stop;
    char repl[8];            /* Metaspace */
    size_t repl_len;
    tok_prepend_scheme prepend;
} tok_dec;
void tok_dec_free(tok_dec *d);
/* A list of token strings, transformed in place by the decoder chain. */
typedef struct tok_strs {
    tok_buf *v;
    size_t n, cap;
} tok_strs;
void tok_strs_free(tok_strs *s);
bool tok_strs_push(tok_strs *s, const char *p, size_t n);
vesta_status tok_dec_apply(const tok_dec *d, tok_strs *toks, vesta_error *err);

/* ---- post-processor ---- */
typedef enum tok_post_kind {
    TOK_POST_NONE,
    TOK_POST_TEMPLATE,
    TOK_POST_SEQUENCE,
} tok_post_kind;
typedef struct tok_post_item {
    bool is_sequence;   /* $A; otherwise special-token ids */
    int32_t *ids;
    size_t n_ids;
} tok_post_item;
typedef struct tok_post {
    tok_post_kind kind;
    tok_post_item *items; /* TEMPLATE single */
    size_t n_items;
    struct tok_post **children;
    size_t n_children;
} tok_post;
void tok_post_free(tok_post *p);
bool tok_post_apply(const tok_post *p, const int32_t *ids, size_t n, tok_ids *out);

/* ---- added tokens ---- */
typedef struct tok_added {
    char *content;
    size_t len;
    char *norm_content; /* content after the normalizer (for normalized tokens) */
    size_t norm_len;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} tok_added;

/* Byte trie over added-token spellings (leftmost-longest search). */
typedef struct tok_trie_node {
    int32_t first_child, next_sibling;
    int32_t token; /* index into added[], -1 if none ends here */
    uint8_t byte;
} tok_trie_node;
typedef struct tok_trie {
    tok_trie_node *nodes;
    size_t n, cap;
    uint8_t first_byte[32]; /* bitmap */
    bool empty;
} tok_trie;

/* ---- the tokenizer ---- */
#define TOK_ID_SPECIAL 1u
#define TOK_ID_ADDED 2u

typedef struct vesta_tokenizer {
    /* vocabulary: id → string (in strings arena), flags */
    uint32_t *id_off, *id_len;
    uint8_t *id_flags;
    size_t n_ids, id_cap;
    tok_buf strings;
    tok_strmap vocab;   /* model vocabulary */
    tok_strmap all;     /* model + added */

    /* BPE model */
    tok_merge_map merges;
    /* Code-point bigrams occurring inside model-vocabulary tokens, keyed (a << 32 | b), in a
     * merge map (rank/merged unused). A word can be cut between two characters that are both
     * vocabulary tokens when their bigram occurs in no token: no merge can ever span the cut.
     * Built only for pipelines that produce long words (no pre-tokenizer, Metaspace without
     * split), where it turns one long BPE into many short, cacheable ones. */
    tok_merge_map bigrams;
    bool has_bigrams;
    bool ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;
    char *cont_prefix, *eow_suffix;
    size_t cont_prefix_len, eow_suffix_len;
    int32_t byte_ids[256]; /* "<0xNN>" ids for byte fallback, -1 if absent */

    tok_norm *norm;
    tok_pre *pre;
    tok_post *post;
    tok_dec *dec;

    tok_added *added;
    size_t n_added;
    tok_trie trie_raw, trie_norm;

    tok_cache cache;

    /* config */
    int32_t bos_id, eos_id, pad_id, unk_cfg_id;
    char *bos_tok, *eos_tok, *pad_tok, *unk_tok;
    bool add_bos, add_eos;
    char **tpl_names, **tpl_bodies;
    size_t n_tpl;
} vesta_tokenizer;

vesta_tokenizer *tok_alloc(void);
/* Registers id → string in the id table (grows it). */
bool tok_set_id(vesta_tokenizer *t, int32_t id, const char *s, size_t n, uint8_t flags);
/* Final step of every loader: tries, byte-fallback table, cache, normalized added tokens. */
vesta_status tok_finish_load(vesta_tokenizer *t, const char *name, vesta_error *err);
vesta_status tok_trie_build(tok_trie *tr, const tok_added *added, size_t n, bool normalized);
void tok_trie_free(tok_trie *tr);
/* Longest added token starting exactly at s[0..n); -1 if none. */
int32_t tok_trie_longest(const tok_trie *tr, const char *s, size_t n, size_t *mlen);

/* BPE of one pre-token word (already byte-level mapped etc.), ids appended to out. */
vesta_status tok_bpe_word(const vesta_tokenizer *t, const char *w, size_t n, tok_ids *out,
                          vesta_error *err);

/* Config (tokenizer_config.json) parsing, shared by the file and memory loaders. */
vesta_status tok_load_config(vesta_tokenizer *t, const char *json, size_t len, const char *name,
                             vesta_error *err);
/* Sets a special-token string + id from a config string (looked up in the vocabulary). */
bool tok_set_special_str(vesta_tokenizer *t, char **dst, int32_t *dst_id, const char *s);

#endif
