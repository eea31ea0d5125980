/* Numeric option values (cli_num.h). */
#include "cli_num.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>

bool vesta_cli_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool vesta_cli_parse_double(const char *s, double *out)
{
    if (!s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

const char *vesta_cli_option_name(const struct option *opts, int val)
{
    for (; opts->name; opts++)
        if (opts->val == val) return opts->name;
    return "?";
}
