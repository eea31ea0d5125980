/* Fuzzing vctl's Prometheus text parser (router/vctl/prom.c): the bytes of a /metrics answer,
 * parsed, then every sample's labels rendered into a small and a large buffer (truncation). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1); /* the HTTP client hands the parser a NUL-terminated body */
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    vctl_prom p;
    char err[64];
    if (vctl_prom_parse(text, &p, err, sizeof err) == 0) {
        for (int i = 0; i < p.n; i++) {
            char small[8], big[512];
            vctl_prom_labels_text(&p.s[i], NULL, small, sizeof small);
            vctl_prom_labels_text(&p.s[i], "le", big, sizeof big);
            (void)vctl_prom_label_get(&p.s[i], "worker");
        }
        vctl_prom_release(&p);
    }
    free(text);
    return 0;
}
