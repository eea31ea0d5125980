#include "prom.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct family {
    char *name;
    const char *type;
} family;

typedef struct families {
    family *f;
    int n, cap;
} families;

static const char *type_static(const char *t, size_t n)
{
    static const char *const known[] = {"counter", "gauge", "histogram", "summary"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strlen(known[i]) == n && memcmp(known[i], t, n) == 0)
            return known[i];
    return "untyped";
}

static int families_add(families *fs, const char *name, size_t nlen, const char *type)
{
    if (fs->n == fs->cap) {
        int cap = fs->cap ? fs->cap * 2 : 32;
        family *g = realloc(fs->f, (size_t)cap * sizeof *g);
        if (g == NULL)
            return -1;
        fs->f = g;
        fs->cap = cap;
    }
    fs->f[fs->n].name = strndup(name, nlen);
    if (fs->f[fs->n].name == NULL)
        return -1;
    fs->f[fs->n++].type = type;
    return 0;
}

static const family *families_find(const families *fs, const char *name, size_t nlen)
{
    for (int i = fs->n - 1; i >= 0; i--)
        if (strlen(fs->f[i].name) == nlen && memcmp(fs->f[i].name, name, nlen) == 0)
            return &fs->f[i];
    return NULL;
}

/* "# TYPE name type" */
static int parse_type_line(families *fs, const char *line, size_t len)
{
    if (len < 7 || memcmp(line, "# TYPE ", 7) != 0)
        return 0; /* HELP and other comments carry nothing we show */
    const char *name = line + 7, *end = line + len;
    const char *sp = memchr(name, ' ', (size_t)(end - name));
    if (sp == NULL)
        return 0;
    return families_add(fs, name, (size_t)(sp - name), type_static(sp + 1, (size_t)(end - sp - 1)));
}

static void sample_free(vctl_prom_sample *s)
{
    free(s->name);
    free(s->family);
    free(s->value_text);
    for (int i = 0; i < s->nlabels; i++) {
        free(s->labels[i].key);
        free(s->labels[i].value);
    }
    free(s->labels);
}

/* Reads `"value"` at *pp (the quote included) with \\, \" and \n escapes. */
static char *parse_label_value(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p >= end || *p != '"')
        return NULL;
    p++;
    char *v = malloc((size_t)(end - p) + 1);
    if (v == NULL)
        return NULL;
    size_t n = 0;
    while (p < end && *p != '"') {
        if (*p == '\\' && p + 1 < end) {
            p++;
            v[n++] = *p == 'n' ? '\n' : *p;
        } else {
            v[n++] = *p;
        }
        p++;
    }
    if (p >= end) {
        free(v);
        return NULL;
    }
    v[n] = '\0';
    *pp = p + 1;
    return v;
}

static int parse_labels(vctl_prom_sample *s, const char **pp, const char *end)
{
    const char *p = *pp + 1; /* past '{' */
    while (p < end && *p != '}') {
        const char *k = p;
        while (p < end && *p != '=')
            p++;
        if (p >= end || p == k)
            return -1;
        vctl_prom_label *g = realloc(s->labels, (size_t)(s->nlabels + 1) * sizeof *g);
        if (g == NULL)
            return -1;
        s->labels = g;
        vctl_prom_label *l = &s->labels[s->nlabels];
        l->key = strndup(k, (size_t)(p - k));
        p++;
        l->value = parse_label_value(&p, end);
        if (l->key == NULL || l->value == NULL) {
            free(l->key);
            free(l->value);
            return -1;
        }
        s->nlabels++;
        if (p < end && *p == ',')
            p++;
    }
    if (p >= end)
        return -1;
    *pp = p + 1;
    return 0;
}

static char *family_of(const families *fs, const char *name, size_t nlen, const char **type)
{
    const family *f = families_find(fs, name, nlen);
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; f == NULL && i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t sl = strlen(suffixes[i]);
        if (nlen > sl && memcmp(name + nlen - sl, suffixes[i], sl) == 0) {
            const family *g = families_find(fs, name, nlen - sl);
            if (g != NULL && (strcmp(g->type, "histogram") == 0 || strcmp(g->type, "summary") == 0))
                f = g;
        }
    }
    *type = f ? f->type : "untyped";
    return f ? strdup(f->name) : strndup(name, nlen);
}

static int parse_sample(vctl_prom *p, const families *fs, const char *line, size_t len)
{
    const char *end = line + len, *q = line;
    while (q < end && *q != '{' && !isspace((unsigned char)*q))
        q++;
    if (q == line)
        return -1;
    vctl_prom_sample s = {0};
    s.name = strndup(line, (size_t)(q - line));
    s.family = family_of(fs, line, (size_t)(q - line), &s.type);
    if (s.name == NULL || s.family == NULL || (q < end && *q == '{' && parse_labels(&s, &q, end) != 0))
        goto fail;
    while (q < end && isspace((unsigned char)*q))
        q++;
    const char *v = q;
    while (q < end && !isspace((unsigned char)*q))
        q++; /* an optional timestamp may follow */
    if (q == v)
        goto fail;
    s.value_text = strndup(v, (size_t)(q - v));
    if (s.value_text == NULL)
        goto fail;
    char *vend;
    errno = 0;
    s.value = strtod(s.value_text, &vend);
    if (*vend != '\0')
        goto fail;
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        vctl_prom_sample *g = realloc(p->s, (size_t)cap * sizeof *g);
        if (g == NULL)
            goto fail;
        p->s = g;
        p->cap = cap;
    }
    p->s[p->n++] = s;
    return 0;
fail:
    sample_free(&s);
    return -1;
}

int vctl_prom_parse(const char *text, vctl_prom *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    families fs = {0};
    int lineno = 0, rc = 0;
    for (const char *line = text; *line != '\0' && rc == 0;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *next = nl ? nl + 1 : line + len; /* before trimming: always progresses */
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
            len--;
        lineno++;
        if (len > 0 && line[0] == '#')
            rc = parse_type_line(&fs, line, len);
        else if (len > 0)
            rc = parse_sample(p, &fs, line, len);
        if (rc != 0)
            snprintf(err, errlen, "malformed metrics text at line %d", lineno);
        line = next;
    }
    for (int i = 0; i < fs.n; i++)
        free(fs.f[i].name);
    free(fs.f);
    if (rc != 0)
        vctl_prom_release(p);
    return rc;
}

void vctl_prom_release(vctl_prom *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->n; i++)
        sample_free(&p->s[i]);
    free(p->s);
    memset(p, 0, sizeof *p);
}

void vctl_prom_labels_text(const vctl_prom_sample *s, const char *skip, char *buf, size_t bufsize)
{
    size_t n = 0;
    int first = 1;
    if (bufsize == 0)
        return;
    buf[0] = '\0';
    for (int i = 0; i < s->nlabels; i++) {
        if (skip != NULL && strcmp(s->labels[i].key, skip) == 0)
            continue;
        n += (size_t)snprintf(buf + (n < bufsize ? n : bufsize - 1), n < bufsize ? bufsize - n : 1,
                              "%s%s=\"", first ? "{" : ",", s->labels[i].key);
        for (const char *c = s->labels[i].value; *c; c++) {
            const char *esc = *c == '"' ? "\\\"" : *c == '\\' ? "\\\\" : *c == '\n' ? "\\n" : NULL;
            char one[2] = {*c, '\0'};
            n += (size_t)snprintf(buf + (n < bufsize ? n : bufsize - 1),
                                  n < bufsize ? bufsize - n : 1, "%s", esc ? esc : one);
        }
        n += (size_t)snprintf(buf + (n < bufsize ? n : bufsize - 1), n < bufsize ? bufsize - n : 1,
                              "\"");
        first = 0;
    }
    if (!first)
        snprintf(buf + (n < bufsize ? n : bufsize - 1), n < bufsize ? bufsize - n : 1, "}");
}

const char *vctl_prom_label_get(const vctl_prom_sample *s, const char *key)
{
    for (int i = 0; i < s->nlabels; i++)
        if (strcmp(s->labels[i].key, key) == 0)
            return s->labels[i].value;
    return NULL;
}
