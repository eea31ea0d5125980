/* Single-thread encode throughput of vesta_tokenizer. The corpus is a file of documents
 * separated by form feeds ('\f'); each document is one encode call (add_special_tokens=false,
 * special tokens parsed), as a server tokenizes one request at a time.
 *   bench_tokenizer --tokenizer PATH --corpus FILE [--repeat N]
 * Prints JSON: {"bytes", "docs", "tokens", "seconds" (best of N), "mb_per_s", "checksum"}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vesta/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *tpath = NULL, *cpath = NULL;
    int repeat = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokenizer")) tpath = argv[i + 1];
        else if (!strcmp(argv[i], "--corpus")) cpath = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat")) repeat = atoi(argv[i + 1]);
    }
    if (!tpath || !cpath || repeat < 1) {
        fprintf(stderr, "usage: bench_tokenizer --tokenizer PATH --corpus FILE [--repeat N]\n");
        return 2;
    }
    vesta_error err = {0};
    vesta_tokenizer *t = vesta_tokenizer_load(tpath, &err);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    FILE *f = fopen(cpath, "rb");
    if (!f) {
        perror(cpath);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);
    double best = 1e30;
    size_t tokens = 0, docs = 0;
    unsigned long long checksum = 0;
    for (int r = 0; r < repeat; r++) {
        tokens = docs = 0;
        checksum = 0;
        double t0 = now();
        for (long p = 0; p < n;) {
            char *e = memchr(buf + p, '\f', (size_t)(n - p));
            long end = e ? (long)(e - buf) : n;
            int32_t *ids = NULL;
            size_t k = 0;
            if (vesta_tokenizer_encode(t, buf + p, (size_t)(end - p), false, true, &ids, &k, &err) != VESTA_OK) {
                fprintf(stderr, "encode: %s\n", err.msg);
                return 1;
            }
            for (size_t i = 0; i < k; i++) checksum = checksum * 1000003u + (unsigned)ids[i];
            tokens += k;
            docs++;
            free(ids);
            p = end + 1;
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"bytes\": %ld, \"docs\": %zu, \"tokens\": %zu, \"seconds\": %.4f, \"mb_per_s\": %.2f, \"checksum\": %llu}\n",
           n, docs, tokens, best, n / best / 1e6, checksum);
    free(buf);
    vesta_tokenizer_release(t);
    return 0;
}
