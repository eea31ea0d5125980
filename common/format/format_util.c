#include "format_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void *vesta_fmt_map_file(const char *path, size_t *size, vesta_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vesta_error_set(err, VESTA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        vesta_error_set(err, VESTA_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        vesta_error_set(err, VESTA_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX) {
        vesta_error_set(err, VESTA_ERR_FORMAT, "%s: file is empty", path);
        close(fd);
        return NULL;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int saved = errno;
    close(fd);
    if (p == MAP_FAILED) {
        vesta_error_set(err, VESTA_ERR_IO, "%s: cannot mmap: %s", path, strerror(saved));
        return NULL;
    }
    *size = (size_t)st.st_size;
    return p;
}

void vesta_fmt_unmap(void *base, size_t size)
{
    if (base != NULL)
        munmap(base, size);
}

/* FNV-1a: keys are short ASCII names; quality is ample for a table kept under half full. */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int vesta_fmt_index_init(vesta_fmt_index *ix, uint64_t n)
{
    ix->slots = NULL;
    ix->cap = 0;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / 4 / sizeof(vesta_fmt_index_slot))
        return -1;
    size_t cap = 8;
    while (cap < 2 * n + 1)
        cap <<= 1;
    ix->slots = calloc(cap, sizeof(vesta_fmt_index_slot));
    if (ix->slots == NULL)
        return -1;
    ix->cap = cap;
    return 0;
}

bool vesta_fmt_index_insert(vesta_fmt_index *ix, const char *key, size_t len, uint64_t value)
{
    if (ix->cap == 0)
        return false;
    size_t mask = ix->cap - 1;
    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        vesta_fmt_index_slot *s = &ix->slots[i];
        if (s->key == NULL) {
            s->key = key;
            s->len = len;
            s->value = value;
            return true;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0)
            return false;
    }
}

bool vesta_fmt_index_find(const vesta_fmt_index *ix, const char *key, size_t len, uint64_t *value)
{
    if (ix->cap == 0)
        return false;
    size_t mask = ix->cap - 1;
    for (size_t i = hash_bytes(key, len) & mask;; i = (i + 1) & mask) {
        const vesta_fmt_index_slot *s = &ix->slots[i];
        if (s->key == NULL)
            return false;
        if (s->len == len && memcmp(s->key, key, len) == 0) {
            *value = s->value;
            return true;
        }
    }
}

void vesta_fmt_index_free(vesta_fmt_index *ix)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->cap = 0;
}
