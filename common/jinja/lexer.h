/* Jinja2 lexer with the HF environment's settings: trim_blocks and lstrip_blocks on, default
 * delimiters, no line statements, newlines normalised to "\n", one trailing newline dropped. */
#ifndef VESTA_JINJA_LEXER_H
#define VESTA_JINJA_LEXER_H

#include "jinja.h"

typedef enum jtok_kind {
    JTK_EOF = 0,
    JTK_DATA,
    JTK_VAR_BEGIN,
    JTK_VAR_END,
    JTK_BLOCK_BEGIN,
    JTK_BLOCK_END,
    JTK_NAME,
    JTK_STRING,
    JTK_INT,
    JTK_FLOAT,
    JTK_OP,
} jtok_kind;

typedef struct jtok {
    jtok_kind kind;
    int line;
    const char *s; /* DATA/NAME/STRING (unescaped)/OP text, NUL-terminated */
    size_t len;
    int64_t i;
    double f;
} jtok;

typedef struct jtokens {
    jtok *t;
    size_t n, cap;
} jtokens;

/* Raises VESTA_ERR_FORMAT on a lexical error (unterminated tag/string/comment, bad character). */
void jlex(jfail *f, const char *src, size_t len, jtokens *out);

#endif
