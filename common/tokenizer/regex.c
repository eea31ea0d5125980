/* PCRE2 wrapper giving the match iteration of HF tokenizers' Pattern::find_matches. Patterns are
 * compiled with UTF + UCP so \s, \w, \d and \p{..} are Unicode-aware as in Oniguruma. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

/* Length of a valid interval quantifier "{n}", "{n,}" or "{n,m}" at p, else 0. */
static size_t interval_len(const char *p, size_t n) {
    size_t i = 1, digits = 0;
    if (n < 3 || p[0] != '{') return 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++, digits++;
    if (!digits) return 0;
    if (i < n && p[i] == ',') {
        i++;
        while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    }
    return i < n && p[i] == '}' ? i + 1 : 0;
}

/* Hugging Face compiles patterns with Oniguruma's Ruby syntax, which differs from PCRE2 in two
 * ways that real tokenizers hit: "X{n,m}+" means "(?:X{n,m})+" (not possessive; cl100k's
 * \p{N}{1,3}+ relies on it), and ^/$ are line anchors (PCRE2_MULTILINE, set by the caller).
 * This rewrites the first; atoms are tracked in output coordinates. */
static bool ruby_to_pcre2(const char *p, size_t n, tok_buf *out) {
    size_t atom = 0, stack[64], depth = 0;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        size_t start = out->n;
        if (c == '\\' && i + 1 < n) {
            size_t k = 2;
            if ((p[i + 1] == 'p' || p[i + 1] == 'P' || p[i + 1] == 'x') && i + 2 < n && p[i + 2] == '{') {
                const char *e = memchr(p + i, '}', n - i);
                if (e) k = (size_t)(e - (p + i)) + 1;
            } else {
                while (i + k < n && ((unsigned char)p[i + k] & 0xC0) == 0x80) k++;
            }
            if (!tok_buf_append(out, p + i, k)) return false;
            i += k;
            atom = start;
        } else if (c == '[') {
            size_t k = i + 1;
            if (k < n && p[k] == '^') k++;
            if (k < n && p[k] == ']') k++;
            int nest = 1;
            while (k < n && nest > 0) {
                if (p[k] == '\\') k += 2;
                else if (p[k] == '[') nest++, k++;
                else if (p[k] == ']') nest--, k++;
                else k++;
            }
            if (k > n) k = n;
            if (!tok_buf_append(out, p + i, k - i)) return false;
            i = k;
            atom = start;
        } else if (c == '(') {
            if (depth < 64) stack[depth] = start;
            depth++;
            if (!tok_buf_append(out, p + i, 1)) return false;
            i++;
        } else if (c == ')') {
            if (!tok_buf_append(out, p + i, 1)) return false;
            i++;
            if (depth > 0) {
                depth--;
                if (depth < 64) atom = stack[depth];
            }
        } else if (c == '{' && interval_len(p + i, n - i) && i + interval_len(p + i, n - i) < n &&
                   p[i + interval_len(p + i, n - i)] == '+') {
            size_t k = interval_len(p + i, n - i);
            size_t alen = out->n - atom;
            char *a = malloc(alen + 1);
            if (!a) return false;
            memcpy(a, out->p + atom, alen);
            out->n = atom;
            bool ok = tok_buf_append(out, "(?:", 3) && tok_buf_append(out, a, alen) &&
                      tok_buf_append(out, p + i, k) && tok_buf_append(out, ")+", 2);
            free(a);
            if (!ok) return false;
            i += k + 1;
        } else {
            size_t k = 1;
            while (i + k < n && ((unsigned char)p[i + k] & 0xC0) == 0x80) k++;
            if (!tok_buf_append(out, p + i, k)) return false;
            if (c != '*' && c != '+' && c != '?' && c != '{' && c != '|') atom = start;
            i += k;
        }
    }
    return tok_buf_append(out, "", 0);
}

vesta_status tok_regex_compile(tok_regex *r, const char *pat, size_t n, bool literal,
                               vesta_error *err) {
    int ec;
    PCRE2_SIZE eo;
    tok_buf tr = {0};
    const char *src = pat;
    size_t sn = n;
    uint32_t opts = PCRE2_UTF | PCRE2_LITERAL;
    if (!literal) {
        if (!ruby_to_pcre2(pat, n, &tr)) {
            tok_buf_free(&tr);
            return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
        }
        src = tr.p;
        sn = tr.n;
        opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
    }
    r->code = pcre2_compile((PCRE2_SPTR)src, sn, opts, &ec, &eo, NULL);
    tok_buf_free(&tr);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return vesta_error_set(err, VESTA_ERR_FORMAT, "regex /%.*s/ at offset %zu: %s",
                               (int)(n > 200 ? 200 : n), pat, (size_t)eo, (char *)msg);
    }
    r->jit = pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE) == 0;
    return VESTA_OK;
}

void tok_regex_free(tok_regex *r) {
    if (r->code) pcre2_code_free(r->code);
    r->code = NULL;
}

int tok_regex_next(const tok_regex *r, pcre2_match_data *md, const char *s, size_t n,
                   size_t start, size_t *mb, size_t *me) {
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(r->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                         NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *mb = ov[0];
    *me = ov[1];
    return 1;
}

static size_t next_char(const char *s, size_t n, size_t i) {
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
    return i;
}

vesta_status tok_regex_find_matches(const tok_regex *r, const char *s, size_t n, tok_match_cb cb,
                                    void *ud, vesta_error *err) {
    if (n == 0) {
        return cb(ud, 0, 0, false) ? VESTA_OK
                                   : vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    }
    pcre2_match_data *md = pcre2_match_data_create(2, NULL);
    if (!md) return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
    size_t prev = 0, pos = 0;
    vesta_status st = VESTA_OK;
    while (pos <= n) {
        size_t mb, me;
        int rc = tok_regex_next(r, md, s, n, pos, &mb, &me);
        if (rc < 0) {
            st = vesta_error_set(err, VESTA_ERR_INTERNAL, "regex match failed (%d)", rc);
            break;
        }
        if (rc == 0) break;
        if (prev != mb && !cb(ud, prev, mb, false)) goto oom;
        if (!cb(ud, mb, me, true)) goto oom;
        prev = me;
        /* An empty match advances by one character, as Rust/Oniguruma iteration does. */
        pos = me > mb ? me : (me >= n ? n + 1 : next_char(s, n, me));
    }
    if (st == VESTA_OK && prev != n && !cb(ud, prev, n, false)) goto oom;
    pcre2_match_data_free(md);
    return st;
oom:
    pcre2_match_data_free(md);
    return vesta_error_set(err, VESTA_ERR_NOMEM, "out of memory");
}
