/* Tokeniser following jinja2/lexer.py rule by rule, because whitespace handling around tags
 * (`-`, `+`, trim_blocks, lstrip_blocks) decides every byte of a chat template's output. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lexer.h"

typedef struct lx {
    jfail *f;
    const char *s;
    size_t n, pos;
    int line;
    bool line_starting;
    jtokens *out;
} lx;

static void emit(lx *L, jtok_kind k, const char *s, size_t len)
{
    jtokens *o = L->out;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        jtok *t = jalloc(L->f, cap * sizeof *t);
        if (o->n)
            memcpy(t, o->t, o->n * sizeof *t);
        o->t = t;
        o->cap = cap;
    }
    jtok *t = &o->t[o->n++];
    memset(t, 0, sizeof *t);
    t->kind = k;
    t->line = L->line;
    t->s = s ? jstrndup(L->f, s, len) : "";
    t->len = s ? len : 0;
}

static void count_lines(lx *L, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (L->s[i] == '\n')
            L->line++;
}

/* Length of the Python-whitespace run starting at p. */
static size_t ws_run(const char *s, size_t n, size_t p)
{
    size_t q = p;
    while (q < n) {
        size_t adv;
        int32_t cp = utf8_decode(s + q, n - q, &adv);
        if (!py_isspace(cp))
            break;
        q += adv;
    }
    return q - p;
}

/* Byte length of text with Python's str.rstrip() applied. */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80 && end - st < 4)
            st--;
        size_t adv;
        int32_t cp = utf8_decode(s + st, end - st, &adv);
        if (st + adv != end || !py_isspace(cp))
            break;
        end = st;
    }
    return end;
}

static bool all_ws(const char *s, size_t n) { return n > 0 && ws_run(s, n, 0) == n; }

/* Emits text before a tag applying the OptionalLStrip rules. sign: '-', '+' or 0. */
static void emit_data(lx *L, size_t from, size_t to, char sign, bool is_variable)
{
    const char *text = L->s + from;
    size_t len = to - from;
    if (sign == '-') {
        len = rstrip_len(text, len);
    } else if (sign != '+' && !is_variable) {
        size_t l_pos = 0;
        for (size_t i = len; i > 0; i--)
            if (text[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        if ((l_pos > 0 || L->line_starting) && all_ws(text + l_pos, len - l_pos))
            len = l_pos;
    }
    if (len)
        emit(L, JTK_DATA, text, len);
    count_lines(L, from, to);
}

static bool at(lx *L, size_t p, const char *lit)
{
    size_t k = strlen(lit);
    return p + k <= L->n && memcmp(L->s + p, lit, k) == 0;
}

/* Matches a block end at p: "+%}", "-%}\s*" or "%}\n?". Returns the end position or 0. */
static size_t match_block_end(lx *L, size_t p)
{
    if (at(L, p, "+%}"))
        return p + 3;
    if (at(L, p, "-%}"))
        return p + 3 + ws_run(L->s, L->n, p + 3);
    if (at(L, p, "%}"))
        return p + 2 + (p + 2 < L->n && L->s[p + 2] == '\n');
    return 0;
}

/* "{%(-|+|)\s*raw\s*(-%}\s*|%})" at p: returns end or 0; *sign gets the control char. */
static size_t match_raw_begin(lx *L, size_t p, const char *word, char *sign)
{
    if (!at(L, p, "{%"))
        return 0;
    size_t q = p + 2;
    *sign = 0;
    if (q < L->n && (L->s[q] == '-' || L->s[q] == '+'))
        *sign = L->s[q++];
    q += ws_run(L->s, L->n, q);
    size_t k = strlen(word);
    if (!at(L, q, word))
        return 0;
    q += k;
    q += ws_run(L->s, L->n, q);
    return q;
}

static void lex_string(lx *L, size_t *pp)
{
    size_t p = *pp;
    char quote = L->s[p];
    size_t q = p + 1;
    jbuf b;
    jbuf_init(&b, L->f, 0);
    while (q < L->n && L->s[q] != quote) {
        char c = L->s[q];
        if (c != '\\') {
            jbuf_putc(&b, c);
            q++;
            continue;
        }
        if (q + 1 >= L->n)
            break;
        char e = L->s[q + 1];
        q += 2;
        /* Python "unicode-escape" decoding of the literal. */
        switch (e) {
        case '\n': break;
        case '\\': jbuf_putc(&b, '\\'); break;
        case '\'': jbuf_putc(&b, '\''); break;
        case '"': jbuf_putc(&b, '"'); break;
        case 'a': jbuf_putc(&b, '\a'); break;
        case 'b': jbuf_putc(&b, '\b'); break;
        case 'f': jbuf_putc(&b, '\f'); break;
        case 'n': jbuf_putc(&b, '\n'); break;
        case 'r': jbuf_putc(&b, '\r'); break;
        case 't': jbuf_putc(&b, '\t'); break;
        case 'v': jbuf_putc(&b, '\v'); break;
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            int32_t cp = 0;
            for (int i = 0; i < digits; i++) {
                char h = q + (size_t)i < L->n ? L->s[q + i] : 0;
                int v = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                      : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                if (v < 0)
                    jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: truncated \\%c escape in string", L->line, e);
                cp = cp * 16 + v;
            }
            q += (size_t)digits;
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: invalid code point in string escape", L->line);
            char u[4];
            jbuf_put(&b, u, utf8_encode(cp, u), false);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int32_t cp = e - '0';
                for (int i = 0; i < 2 && q < L->n && L->s[q] >= '0' && L->s[q] <= '7'; i++)
                    cp = cp * 8 + (L->s[q++] - '0');
                char u[4];
                jbuf_put(&b, u, utf8_encode(cp, u), false);
            } else if (e == 'N') {
                jfail_raise(L->f, VESTA_ERR_UNSUPPORTED, "line %d: \\N{...} escapes are not supported", L->line);
            } else {
                jbuf_putc(&b, '\\');
                jbuf_putc(&b, e);
            }
        }
    }
    if (q >= L->n)
        jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: unexpected end of string", L->line);
    emit(L, JTK_STRING, b.s ? b.s : "", b.len);
    count_lines(L, p, q + 1);
    *pp = q + 1;
}

static bool is_name_start(unsigned char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
static bool is_name_char(unsigned char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static void lex_number(lx *L, size_t *pp)
{
    size_t p = *pp, q = p;
    while (q < L->n && (is_digit(L->s[q]) || (L->s[q] == '_' && q + 1 < L->n && is_digit(L->s[q + 1]))))
        q++;
    bool isfloat = false;
    if (q + 1 < L->n && L->s[q] == '.' && is_digit(L->s[q + 1])) {
        isfloat = true;
        q++;
        while (q < L->n && (is_digit(L->s[q]) || (L->s[q] == '_' && q + 1 < L->n && is_digit(L->s[q + 1]))))
            q++;
    }
    if (q < L->n && (L->s[q] == 'e' || L->s[q] == 'E')) {
        size_t r = q + 1;
        if (r < L->n && (L->s[r] == '+' || L->s[r] == '-'))
            r++;
        if (r < L->n && is_digit(L->s[r])) {
            isfloat = true;
            q = r;
            while (q < L->n && is_digit(L->s[q]))
                q++;
        }
    }
    char tmp[128];
    size_t k = 0;
    for (size_t i = p; i < q && k < sizeof tmp - 1; i++)
        if (L->s[i] != '_')
            tmp[k++] = L->s[i];
    tmp[k] = 0;
    if (isfloat) {
        emit(L, JTK_FLOAT, L->s + p, q - p);
        L->out->t[L->out->n - 1].f = strtod(tmp, NULL);
    } else {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno)
            jfail_raise(L->f, VESTA_ERR_UNSUPPORTED, "line %d: integer literal out of range", L->line);
        emit(L, JTK_INT, L->s + p, q - p);
        L->out->t[L->out->n - 1].i = v;
    }
    *pp = q;
}

/* Tokens inside {{ }} or {% %}; returns the position after the end delimiter. */
static size_t lex_tag(lx *L, size_t p, bool block)
{
    char stack[256];
    size_t depth = 0;
    for (;;) {
        if (p >= L->n)
            jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: unexpected end of template inside a %s tag", L->line,
                        block ? "block" : "variable");
        if (depth == 0) {
            size_t end = 0;
            if (block) {
                end = match_block_end(L, p);
            } else if (at(L, p, "-}}")) {
                end = p + 3 + ws_run(L->s, L->n, p + 3);
            } else if (at(L, p, "}}")) {
                end = p + 2;
            }
            if (end) {
                emit(L, block ? JTK_BLOCK_END : JTK_VAR_END, NULL, 0);
                count_lines(L, p, end);
                L->line_starting = L->s[end - 1] == '\n';
                return end;
            }
        }
        unsigned char c = (unsigned char)L->s[p];
        size_t w = ws_run(L->s, L->n, p);
        if (w) {
            count_lines(L, p, p + w);
            p += w;
            continue;
        }
        if (is_digit((char)c)) {
            lex_number(L, &p);
            continue;
        }
        if (is_name_start(c)) {
            size_t q = p;
            while (q < L->n && is_name_char((unsigned char)L->s[q]))
                q++;
            emit(L, JTK_NAME, L->s + p, q - p);
            p = q;
            continue;
        }
        if (c == '\'' || c == '"') {
            lex_string(L, &p);
            continue;
        }
        static const char *ops2[] = {"//", "**", "==", "!=", ">=", "<="};
        size_t oplen = 0;
        for (size_t i = 0; i < sizeof ops2 / sizeof *ops2; i++)
            if (at(L, p, ops2[i]))
                oplen = 2;
        if (!oplen && strchr("+-*/%~[](){}<>=.:|,;", c) && c)
            oplen = 1;
        if (!oplen)
            jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: unexpected char '%c'", L->line, c >= 0x20 && c < 0x7f ? c : '?');
        if (oplen == 1 && (c == '(' || c == '[' || c == '{')) {
            if (depth == sizeof stack)
                jfail_raise(L->f, VESTA_ERR_LIMIT, "line %d: brackets nested too deeply", L->line);
            stack[depth++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (oplen == 1 && (c == ')' || c == ']' || c == '}')) {
            if (!depth)
                jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: unexpected '%c'", L->line, c);
            if (stack[--depth] != (char)c)
                jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: unexpected '%c', expected '%c'", L->line, c, stack[depth]);
        }
        emit(L, JTK_OP, L->s + p, oplen);
        p += oplen;
    }
}

/* {% raw %}...{% endraw %}: returns the end position of the endraw tag. */
static size_t lex_raw(lx *L, size_t p)
{
    for (size_t q = p; q < L->n; q++) {
        char sign;
        size_t e = match_raw_begin(L, q, "endraw", &sign);
        if (!e)
            continue;
        size_t end = match_block_end(L, e);
        if (!end)
            continue;
        emit_data(L, p, q, sign, false);
        count_lines(L, q, end);
        L->line_starting = L->s[end - 1] == '\n';
        return end;
    }
    jfail_raise(L->f, VESTA_ERR_FORMAT, "line %d: missing end of raw directive", L->line);
}

void jlex(jfail *f, const char *src, size_t len, jtokens *out)
{
    /* Newlines normalised and one trailing newline dropped, as Lexer.tokeniter does. */
    char *s = jalloc(f, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n')
        n--;
    s[n] = 0;
    lx L = {.f = f, .s = s, .n = n, .pos = 0, .line = 1, .line_starting = true, .out = out};
    size_t p = 0;
    while (p < n) {
        /* Find the next tag start. */
        size_t q = p;
        const char *hit = NULL;
        while (q + 1 < n) {
            hit = memchr(s + q, '{', n - q - 1);
            if (!hit)
                break;
            q = (size_t)(hit - s);
            char c2 = s[q + 1];
            if (c2 == '{' || c2 == '%' || c2 == '#')
                break;
            q++;
            hit = NULL;
        }
        if (!hit) {
            emit(&L, JTK_DATA, s + p, n - p);
            break;
        }
        char kind = s[q + 1];
        char sign = 0;
        if (q + 2 < n && (s[q + 2] == '-' || s[q + 2] == '+'))
            sign = s[q + 2];
        if (kind == '%') {
            char rsign;
            size_t e = match_raw_begin(&L, q, "raw", &rsign);
            size_t end = 0;
            if (e) {
                if (at(&L, e, "-%}"))
                    end = e + 3 + ws_run(s, n, e + 3);
                else if (at(&L, e, "%}"))
                    end = e + 2;
            }
            if (end) {
                emit_data(&L, p, q, rsign, false);
                count_lines(&L, q, end);
                L.line_starting = s[end - 1] == '\n';
                p = lex_raw(&L, end);
                continue;
            }
        }
        emit_data(&L, p, q, sign, kind == '{');
        L.line_starting = false;
        size_t body = q + 2 + (sign != 0);
        if (kind == '#') {
            size_t r = body;
            size_t end = 0;
            for (; r < n; r++) {
                if (at(&L, r, "+#}")) {
                    end = r + 3;
                    break;
                }
                if (at(&L, r, "-#}")) {
                    end = r + 3 + ws_run(s, n, r + 3);
                    break;
                }
                if (at(&L, r, "#}")) {
                    end = r + 2 + (r + 2 < n && s[r + 2] == '\n');
                    break;
                }
            }
            if (!end)
                jfail_raise(f, VESTA_ERR_FORMAT, "line %d: missing end of comment tag", L.line);
            count_lines(&L, q, end);
            L.line_starting = s[end - 1] == '\n';
            p = end;
            continue;
        }
        emit(&L, kind == '%' ? JTK_BLOCK_BEGIN : JTK_VAR_BEGIN, NULL, 0);
        p = lex_tag(&L, body, kind == '%');
    }
    emit(&L, JTK_EOF, NULL, 0);
}
