#include "table.h"

#include <stdlib.h>
#include <string.h>

struct vctl_table {
    int ncols;
    int nrows, cap; /* rows[0] is the header */
    char **cells;   /* nrows * ncols */
};

static int add_row(vctl_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        int cap = t->cap ? t->cap * 2 : 8;
        char **grown = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof *grown);
        if (grown == NULL)
            return -1;
        t->cells = grown;
        t->cap = cap;
    }
    char **row = t->cells + (size_t)t->nrows * (size_t)t->ncols;
    for (int i = 0; i < t->ncols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (row[i] == NULL) {
            while (i-- > 0)
                free(row[i]);
            return -1;
        }
    }
    t->nrows++;
    return 0;
}

vctl_table *vctl_table_create(int ncols, const char *const *header)
{
    vctl_table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    if (add_row(t, header) != 0) {
        vctl_table_release(t);
        return NULL;
    }
    return t;
}

void vctl_table_release(vctl_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

int vctl_table_add(vctl_table *t, const char *const *cells)
{
    return add_row(t, cells);
}

void vctl_table_print(const vctl_table *t, FILE *f)
{
    size_t *w = calloc((size_t)t->ncols, sizeof *w);
    if (w == NULL)
        return;
    for (int r = 0; r < t->nrows; r++)
        for (int c = 0; c < t->ncols; c++) {
            size_t n = strlen(t->cells[(size_t)r * (size_t)t->ncols + (size_t)c]);
            if (n > w[c])
                w[c] = n;
        }
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            const char *s = t->cells[(size_t)r * (size_t)t->ncols + (size_t)c];
            if (c == t->ncols - 1)
                fprintf(f, "%s\n", s);
            else
                fprintf(f, "%-*s  ", (int)w[c], s);
        }
    }
    free(w);
}
