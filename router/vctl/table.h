/* A text table: rows of string cells printed in aligned columns. */
#ifndef VCTL_TABLE_H
#define VCTL_TABLE_H

#include <stdio.h>

typedef struct vctl_table vctl_table;

/* A table with ncols columns named by header[0..ncols-1] (copied). NULL when out of memory. */
vctl_table *vctl_table_create(int ncols, const char *const *header);
void vctl_table_release(vctl_table *t); /* NULL is a no-op */

/* Appends a row; cells[0..ncols-1] are copied (NULL prints as "-"). Returns -1 when out of
 * memory (the row is then not added). */
int vctl_table_add(vctl_table *t, const char *const *cells);

/* Prints the header and rows, columns padded to their widest cell, two spaces apart. */
void vctl_table_print(const vctl_table *t, FILE *f);

#endif
