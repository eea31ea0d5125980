/* PCRE2 wrapper giving the match iteration of HF tokenizers' Pattern::find_matches. Patterns are
 * compiled with UTF + UCP so \s, \w, \d and \p{..} are Unicode-aware as in Oniguruma. */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"

vesta_status tok_regex_compile(tok_regex *r, const char *pat, size_t n, bool literal,
                               vesta_error *err) {
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    r->code = pcre2_compile((PCRE2_SPTR)pat, n, opts, &ec, &eo, NULL);
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
