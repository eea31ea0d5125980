/* Evaluator internals shared by render.c, filters.c, methods.c and template.c. */
#ifndef VESTA_JINJA_RENDER_H
#define VESTA_JINJA_RENDER_H

#include "jinja.h"

jscope *jscope_new(jrender *r, jscope *parent);
void jscope_set(jrender *r, jscope *s, const char *name, jv v);
void jrender_run(jrender *r, jscope *root, const jnode *body);
_Noreturn void jundef_error(jrender *r, jv u);
bool jcontains(jrender *r, jv container, jv item);
jv jslice(jrender *r, jv obj, jv start, jv stop, jv step);
/* 'fmt' % args (printf-style formatting of Python strings). */
jv jstr_percent_format(jrender *r, const jstr *fmt, jv args);

#endif
