/* Python str methods, byte-exact for valid UTF-8 (case mapping is utf8proc's simple mapping). */
#include <string.h>

#include <utf8proc.h>

#include "render.h"
#include "strops.h"

static bool in_chars(const jstr *chars, int32_t cp)
{
    if (!chars)
        return py_isspace(cp);
    for (size_t i = 0; i < chars->len;) {
        size_t adv;
        int32_t c = utf8_decode(chars->s + i, chars->len - i, &adv);
        if (c == cp)
            return true;
        i += adv;
    }
    return false;
}

static size_t prev_cp_start(const char *s, size_t end)
{
    size_t st = end - 1;
    while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80 && end - st < 4)
        st--;
    return st;
}

jstr *jstrop_strip(jrender *r, jstr *s, const jstr *chars, bool left, bool right)
{
    size_t b = 0, e = s->len;
    if (left)
        while (b < e) {
            size_t adv;
            int32_t cp = utf8_decode(s->s + b, e - b, &adv);
            if (!in_chars(chars, cp))
                break;
            b += adv;
        }
    if (right)
        while (e > b) {
            size_t st = prev_cp_start(s->s, e), adv;
            int32_t cp = utf8_decode(s->s + st, e - st, &adv);
            if (st + adv != e)
                st = e - 1, cp = (unsigned char)s->s[e - 1];
            if (!in_chars(chars, cp))
                break;
            e = st;
        }
    return jstr_slice_bytes(r->f, s, b, e);
}

static void push_piece(jrender *r, jlist *l, jstr *s, size_t b, size_t e)
{
    jrender_step(r);
    jlist_push(r->f, l, jv_str(jstr_slice_bytes(r->f, s, b, e)));
}

static jlist *reverse_list(jrender *r, jlist *l)
{
    for (size_t i = 0; i < l->n / 2; i++) {
        jv t = l->items[i];
        l->items[i] = l->items[l->n - 1 - i];
        l->items[l->n - 1 - i] = t;
    }
    return l;
}

jlist *jstrop_split(jrender *r, jstr *s, const jstr *sep, int64_t maxsplit, bool from_right)
{
    jlist *l = jlist_new(r->f, 0);
    if (sep && sep->len == 0)
        jrender_error(r, "empty separator");
    if (maxsplit < 0)
        maxsplit = INT64_MAX;
    if (!sep) {
        /* Runs of whitespace separate; leading/trailing whitespace yields no empty pieces. */
        if (!from_right) {
            size_t i = 0;
            int64_t splits = 0;
            while (i < s->len) {
                size_t adv;
                while (i < s->len && py_isspace(utf8_decode(s->s + i, s->len - i, &adv)))
                    i += adv;
                if (i >= s->len)
                    break;
                if (splits >= maxsplit) {
                    size_t e = s->len;
                    push_piece(r, l, s, i, e);
                    /* Python keeps trailing whitespace of the remainder? No: split() strips it only
                     * for the pieces it splits; the remainder is kept verbatim. */
                    break;
                }
                size_t b = i;
                while (i < s->len && !py_isspace(utf8_decode(s->s + i, s->len - i, &adv)))
                    i += adv;
                push_piece(r, l, s, b, i);
                splits++;
            }
            return l;
        }
        size_t e = s->len;
        int64_t splits = 0;
        while (e > 0) {
            size_t adv, st;
            while (e > 0 && (st = prev_cp_start(s->s, e), py_isspace(utf8_decode(s->s + st, e - st, &adv))))
                e = st;
            if (e == 0)
                break;
            if (splits >= maxsplit) {
                push_piece(r, l, s, 0, e);
                break;
            }
            size_t b = e;
            while (b > 0 && (st = prev_cp_start(s->s, b), !py_isspace(utf8_decode(s->s + st, b - st, &adv))))
                b = st;
            push_piece(r, l, s, b, e);
            e = b;
            splits++;
        }
        return reverse_list(r, l);
    }
    if (!from_right) {
        size_t b = 0;
        int64_t splits = 0;
        while (splits < maxsplit) {
            const char *hit = memmem(s->s + b, s->len - b, sep->s, sep->len);
            if (!hit)
                break;
            size_t h = (size_t)(hit - s->s);
            push_piece(r, l, s, b, h);
            b = h + sep->len;
            splits++;
        }
        push_piece(r, l, s, b, s->len);
        return l;
    }
    size_t e = s->len;
    int64_t splits = 0;
    while (splits < maxsplit && e >= sep->len) {
        size_t h = SIZE_MAX;
        for (size_t p = e - sep->len + 1; p-- > 0;)
            if (memcmp(s->s + p, sep->s, sep->len) == 0) {
                h = p;
                break;
            }
        if (h == SIZE_MAX)
            break;
        push_piece(r, l, s, h + sep->len, e);
        e = h;
        splits++;
    }
    push_piece(r, l, s, 0, e);
    return reverse_list(r, l);
}

jlist *jstrop_splitlines(jrender *r, jstr *s, bool keepends)
{
    jlist *l = jlist_new(r->f, 0);
    size_t b = 0, i = 0;
    while (i < s->len) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        if (py_linebreak(cp)) {
            size_t eol = i + adv;
            if (cp == '\r' && eol < s->len && s->s[eol] == '\n')
                eol++;
            push_piece(r, l, s, b, keepends ? eol : i);
            b = i = eol;
        } else {
            i += adv;
        }
    }
    if (b < s->len)
        push_piece(r, l, s, b, s->len);
    return l;
}

static bool is_cased(int32_t cp)
{
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT;
}

/* Python's full case mappings (SpecialCasing.txt) that differ from the simple ones utf8proc
 * gives; the common ones in text: German sharp s, Latin ligatures, dotted capital I. */
static const char *special_upper(int32_t cp, bool title)
{
    switch (cp) {
    case 0xDF: return title ? "Ss" : "SS";
    case 0xFB00: return title ? "Ff" : "FF";
    case 0xFB01: return title ? "Fi" : "FI";
    case 0xFB02: return title ? "Fl" : "FL";
    case 0xFB03: return title ? "Ffi" : "FFI";
    case 0xFB04: return title ? "Ffl" : "FFL";
    case 0xFB05: case 0xFB06: return title ? "St" : "ST";
    case 0x149: return "\xCA\xBCN";
    case 0x587: return title ? "\xD4\xB5\xD6\x82" : "\xD4\xB5\xD5\x92";
    default: return NULL;
    }
}

static void put_mapped(jbuf *b, int32_t cp, jcase mode, bool lower, bool t)
{
    const char *sp = NULL;
    int32_t o;
    if (lower) {
        if (cp == 0x130)
            sp = "i\xCC\x87";
        o = utf8proc_tolower(cp);
    } else {
        bool title = mode == JCASE_TITLE || mode == JCASE_CAPITALIZE;
        sp = special_upper(cp, title);
        o = title ? utf8proc_totitle(cp) : utf8proc_toupper(cp);
    }
    if (sp) {
        jbuf_put(b, sp, strlen(sp), t);
        return;
    }
    char u[4];
    jbuf_put(b, u, utf8_encode(o, u), t);
}

jstr *jstrop_case(jrender *r, const jstr *s, jcase mode)
{
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    bool prev_cased = false, first = true;
    bool t = jstr_tainted(s);
    for (size_t i = 0; i < s->len;) {
        size_t adv;
        int32_t cp = utf8_decode(s->s + i, s->len - i, &adv);
        bool lower = false;
        switch (mode) {
        case JCASE_UPPER: break;
        case JCASE_LOWER: lower = true; break;
        case JCASE_TITLE:
            lower = prev_cased;
            prev_cased = is_cased(cp);
            break;
        case JCASE_CAPITALIZE: lower = !first; break;
        }
        first = false;
        if (adv == 1 && (unsigned char)s->s[i] >= 0x80)
            jbuf_put(&b, s->s + i, 1, t); /* invalid byte: kept as is */
        else
            put_mapped(&b, cp, mode, lower, t);
        i += adv;
    }
    return jbuf_finish(&b);
}

jstr *jstrop_replace(jrender *r, const jstr *s, const jstr *old, const jstr *new_, int64_t count)
{
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    if (count < 0)
        count = INT64_MAX;
    if (old->len == 0) {
        /* Python inserts new_ before every code point and at the end. */
        int64_t done = 0;
        for (size_t i = 0; i <= s->len;) {
            if (done < count) {
                jbuf_put_str(&b, new_);
                done++;
            }
            if (i == s->len)
                break;
            size_t adv;
            utf8_decode(s->s + i, s->len - i, &adv);
            jbuf_put_str_range(&b, s, i, i + adv);
            i += adv;
            jrender_step(r);
        }
        return jbuf_finish(&b);
    }
    size_t p = 0;
    int64_t done = 0;
    while (done < count) {
        const char *hit = memmem(s->s + p, s->len - p, old->s, old->len);
        if (!hit)
            break;
        size_t h = (size_t)(hit - s->s);
        jbuf_put_str_range(&b, s, p, h);
        jbuf_put_str(&b, new_);
        p = h + old->len;
        done++;
        jrender_step(r);
    }
    jbuf_put_str_range(&b, s, p, s->len);
    return jbuf_finish(&b);
}

int64_t jstrop_find(const jstr *s, const jstr *sub, bool rev)
{
    if (sub->len > s->len)
        return -1;
    size_t h = SIZE_MAX;
    if (!rev) {
        const char *hit = sub->len ? memmem(s->s, s->len, sub->s, sub->len) : s->s;
        if (hit)
            h = (size_t)(hit - s->s);
    } else {
        for (size_t p = s->len - sub->len + 1; p-- > 0;)
            if (memcmp(s->s + p, sub->s, sub->len) == 0) {
                h = p;
                break;
            }
    }
    return h == SIZE_MAX ? -1 : (int64_t)utf8_count(s->s, h);
}

int64_t jstrop_count(const jstr *s, const jstr *sub)
{
    if (sub->len == 0)
        return (int64_t)utf8_count(s->s, s->len) + 1;
    int64_t n = 0;
    size_t p = 0;
    for (;;) {
        const char *hit = memmem(s->s + p, s->len - p, sub->s, sub->len);
        if (!hit)
            return n;
        n++;
        p = (size_t)(hit - s->s) + sub->len;
    }
}

/* str.format with "{}", "{0}", "{name}" fields and "{{"/"}}"; format specs and conversions are
 * refused rather than guessed. */
jstr *jstrop_format(jrender *r, const jstr *fmt, const jcall_args *a)
{
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    size_t auto_idx = 0;
    for (size_t i = 0; i < fmt->len;) {
        char c = fmt->s[i];
        if (c == '{' && i + 1 < fmt->len && fmt->s[i + 1] == '{') {
            jbuf_put_str_range(&b, fmt, i, i + 1);
            i += 2;
            continue;
        }
        if (c == '}' && i + 1 < fmt->len && fmt->s[i + 1] == '}') {
            jbuf_put_str_range(&b, fmt, i, i + 1);
            i += 2;
            continue;
        }
        if (c == '}')
            jrender_error(r, "Single '}' encountered in format string");
        if (c != '{') {
            jbuf_put_str_range(&b, fmt, i, i + 1);
            i++;
            continue;
        }
        const char *end = memchr(fmt->s + i, '}', fmt->len - i);
        if (!end)
            jrender_error(r, "Single '{' encountered in format string");
        size_t fb = i + 1, fe = (size_t)(end - fmt->s);
        for (size_t k = fb; k < fe; k++)
            if (fmt->s[k] == ':' || fmt->s[k] == '!' || fmt->s[k] == '[' || fmt->s[k] == '.' || fmt->s[k] == '{')
                jrender_error(r, "str.format: format specs, conversions and nested fields are not supported");
        jv v;
        if (fb == fe) {
            v = jcall_args_get(a, auto_idx++, NULL, jv_undef(NULL));
            if (v.t == JT_UNDEF && auto_idx > a->npos)
                jrender_error(r, "Replacement index %zu out of range for positional args tuple", auto_idx - 1);
        } else if (fmt->s[fb] >= '0' && fmt->s[fb] <= '9') {
            size_t idx = 0;
            for (size_t k = fb; k < fe; k++) {
                if (fmt->s[k] < '0' || fmt->s[k] > '9' || idx > 100000)
                    jrender_error(r, "str.format: bad field");
                idx = idx * 10 + (size_t)(fmt->s[k] - '0');
            }
            if (idx >= a->npos)
                jrender_error(r, "Replacement index %zu out of range for positional args tuple", idx);
            v = a->pos[idx];
        } else {
            char name[128];
            size_t nl = fe - fb < sizeof name - 1 ? fe - fb : sizeof name - 1;
            memcpy(name, fmt->s + fb, nl);
            name[nl] = 0;
            v = jcall_args_get(a, SIZE_MAX, name, jv_undef(NULL));
            if (v.t == JT_UNDEF)
                jrender_error(r, "KeyError: '%s'", name);
        }
        jv_write_str(r, &b, v);
        i = fe + 1;
    }
    return jbuf_finish(&b);
}

jv jstr_percent_format(jrender *r, const jstr *fmt, jv args)
{
    if (args.t == JT_DICT) {
        /* A mapping argument: only %(key)s fields (and %%) read it; other text passes through. */
        jbuf b;
        jbuf_init(&b, r->f, r->lim->max_output);
        for (size_t i = 0; i < fmt->len; i++) {
            if (fmt->s[i] != '%') {
                jbuf_put_str_range(&b, fmt, i, i + 1);
                continue;
            }
            if (i + 1 < fmt->len && fmt->s[i + 1] == '%') {
                jbuf_putc(&b, '%');
                i++;
                continue;
            }
            const char *close = i + 1 < fmt->len && fmt->s[i + 1] == '(' ? memchr(fmt->s + i, ')', fmt->len - i) : NULL;
            if (!close || (size_t)(close - fmt->s) + 1 >= fmt->len || (close[1] != 's' && close[1] != 'r'))
                jrender_error(r, "format requires a mapping with %%(name)s fields");
            size_t kb = i + 2, ke = (size_t)(close - fmt->s);
            jv *v = NULL;
            for (size_t k = 0; k < args.u.d->n && !v; k++) {
                jv key = args.u.d->e[k].key;
                if (key.t == JT_STR && key.u.s->len == ke - kb && !memcmp(key.u.s->s, fmt->s + kb, ke - kb))
                    v = &args.u.d->e[k].val;
            }
            if (!v)
                jrender_error(r, "KeyError in %% format");
            if (close[1] == 's')
                jv_write_str(r, &b, *v);
            else
                jv_write_repr(r, &b, *v);
            i = ke + 1;
        }
        return jv_str(jbuf_finish(&b));
    }
    jlist *items;
    if (args.t == JT_LIST && args.u.l->tuple)
        items = args.u.l;
    else {
        items = jlist_new(r->f, 1);
        jlist_push(r->f, items, args);
    }
    size_t k = 0;
    jbuf b;
    jbuf_init(&b, r->f, r->lim->max_output);
    for (size_t i = 0; i < fmt->len; i++) {
        if (fmt->s[i] != '%') {
            jbuf_put_str_range(&b, fmt, i, i + 1);
            continue;
        }
        if (i + 1 >= fmt->len)
            jrender_error(r, "incomplete format");
        char c = fmt->s[++i];
        if (c == '%') {
            jbuf_putc(&b, '%');
            continue;
        }
        if (k >= items->n)
            jrender_error(r, "not enough arguments for format string");
        jv v = items->items[k++];
        if (c == 's')
            jv_write_str(r, &b, v);
        else if (c == 'r')
            jv_write_repr(r, &b, v);
        else if (c == 'd' || c == 'i') {
            if (v.t == JT_INT) jbuf_printf(&b, "%lld", (long long)v.u.i);
            else if (v.t == JT_BOOL) jbuf_printf(&b, "%d", v.u.b);
            else if (v.t == JT_FLOAT) jbuf_printf(&b, "%lld", (long long)v.u.f);
            else jrender_error(r, "%%d format: a real number is required, not %s", jv_type_name(v));
        } else
            jrender_error(r, "unsupported format character '%c'", c);
    }
    /* Python skips this check for a single non-tuple argument that supports indexing (list). */
    bool mapping_like = args.t == JT_LIST && !args.u.l->tuple;
    if (k < items->n && !mapping_like)
        jrender_error(r, "not all arguments converted during string formatting");
    return jv_str(jbuf_finish(&b));
}
