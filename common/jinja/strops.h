/* Python str operations on tainted strings (strops.c). Operations that keep byte positions
 * (strip, split, replace pieces) keep taint spans; case changes taint their whole output when
 * any input byte was tainted. */
#ifndef VESTA_JINJA_STROPS_H
#define VESTA_JINJA_STROPS_H

#include "jinja.h"

typedef enum jcase { JCASE_UPPER, JCASE_LOWER, JCASE_TITLE, JCASE_CAPITALIZE } jcase;

jstr *jstrop_strip(jrender *r, jstr *s, const jstr *chars, bool left, bool right);
jlist *jstrop_split(jrender *r, jstr *s, const jstr *sep, int64_t maxsplit, bool from_right);
jlist *jstrop_splitlines(jrender *r, jstr *s, bool keepends);
jstr *jstrop_case(jrender *r, const jstr *s, jcase c);
jstr *jstrop_replace(jrender *r, const jstr *s, const jstr *old, const jstr *new_, int64_t count);
int64_t jstrop_find(const jstr *s, const jstr *sub, bool rev); /* code point index or -1 */
int64_t jstrop_count(const jstr *s, const jstr *sub);
jstr *jstrop_format(jrender *r, const jstr *fmt, const jcall_args *a);

#endif
