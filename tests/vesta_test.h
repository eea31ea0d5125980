/* What the C unit tests share: CHECK records a failure (file, line, condition) and carries on,
 * so one run reports every broken expectation; main() returns non-zero when `failures` is. */
#ifndef VESTA_TEST_H
#define VESTA_TEST_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            failures++;                                                                \
        }                                                                              \
    } while (0)

#endif
