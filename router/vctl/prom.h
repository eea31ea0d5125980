/* A parsed Prometheus text exposition (format 0.0.4): samples with their labels and family type. */
#ifndef VCTL_PROM_H
#define VCTL_PROM_H

#include <stddef.h>

typedef struct vctl_prom_label {
    char *key, *value; /* value unescaped */
} vctl_prom_label;

typedef struct vctl_prom_sample {
    char *name;         /* as written: "vesta:ttft_seconds_bucket" */
    char *family;       /* the # TYPE name it belongs to ("vesta:ttft_seconds"), else the name */
    const char *type;   /* "counter", "gauge", "histogram", "summary" or "untyped" (static) */
    vctl_prom_label *labels;
    int nlabels;
    double value;
    char *value_text;   /* as written ("+Inf", "NaN", "12") */
} vctl_prom_sample;

typedef struct vctl_prom {
    vctl_prom_sample *s;
    int n, cap;
} vctl_prom;

/* Parses the exposition text. Returns 0 and fills *p (release with vctl_prom_release), or -1
 * with err naming the 1-based line of the first malformed sample (*p is then empty). */
int vctl_prom_parse(const char *text, vctl_prom *p, char *err, size_t errlen);
void vctl_prom_release(vctl_prom *p); /* NULL is a no-op */

/* Writes `{k="v",...}` (empty string when no label) leaving out the label `skip` (may be NULL)
 * into buf, escaping as the format does; truncates to bufsize. */
void vctl_prom_labels_text(const vctl_prom_sample *s, const char *skip, char *buf, size_t bufsize);

/* The value of label `key`, or NULL. */
const char *vctl_prom_label_get(const vctl_prom_sample *s, const char *key);

#endif
