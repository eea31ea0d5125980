/* UTF-8 and Python character classes used by str methods and the lexer. */
#include "jinja.h"

#include <utf8proc.h>

/* Decoding and encoding go through utf8proc. Bytes that are not valid UTF-8 pass through as
 * one unit each (the byte value as the code point), so string methods never stall on them. */
int32_t utf8_decode(const char *s, size_t len, size_t *adv)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &cp);
    if (n <= 0) {
        *adv = 1;
        return (unsigned char)s[0];
    }
    *adv = (size_t)n;
    return cp;
}

size_t utf8_encode(int32_t cp, char out[4])
{
    utf8proc_ssize_t n = utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
    if (n <= 0) { /* beyond U+10FFFF: the replacement character */
        n = utf8proc_encode_char(0xFFFD, (utf8proc_uint8_t *)out);
    }
    return (size_t)n;
}

size_t utf8_count(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* str.isspace(): bidirectional class WS, B or S, or category Zs. */
bool py_isspace(int32_t cp)
{
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F))
        return true;
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

bool py_linebreak(int32_t cp)
{
    switch (cp) {
    case '\n': case '\r': case 0x0B: case 0x0C: case 0x1C: case 0x1D: case 0x1E: case 0x85:
    case 0x2028: case 0x2029:
        return true;
    default:
        return false;
    }
}
