/* Option values of the `vesta` subcommands (generate, bench, bench serve). */
#ifndef VESTA_CLI_NUM_H
#define VESTA_CLI_NUM_H

#include <stdbool.h>

/* A whole base-10 string in [lo, hi] into *out; false (and *out untouched) otherwise. */
bool vesta_cli_parse_int(const char *s, long long lo, long long hi, long long *out);
/* A whole finite floating-point string into *out; false (and *out untouched) otherwise. */
bool vesta_cli_parse_double(const char *s, double *out);

struct option;
/* The long name of the getopt_long entry whose val is `val` ("?" when none), for messages: the
 * tables need not follow their enums' order. */
const char *vesta_cli_option_name(const struct option *opts, int val);

#endif
