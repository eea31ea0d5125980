/* The shared-memory communicator: one POSIX shm segment per replica holding a header (barrier
 * state, each rank's pid, a poison flag) and one staging slot per rank. Every collective is
 * "write my slot, barrier, read the slots, barrier". The barrier is a generation counter that the
 * last arriving rank bumps; waiters sleep on it with futex (a shared mapping, so the non-private
 * futex) in short slices, checking between slices that every peer process is alive and that the
 * deadline has not passed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

#define SHM_MAGIC 0x56545053u /* "VTPS" */
#define SHM_VERSION 1u
#define SHM_HEADER_BYTES 4096
#define SLICE_NS 5000000L /* futex sleep slice: the liveness check period */

typedef struct shm_header {
    _Atomic uint32_t magic;     /* written last by rank 0: the segment is ready */
    uint32_t version;
    int32_t size;
    uint64_t slot_bytes;
    _Atomic uint32_t arrived;
    _Atomic uint32_t generation; /* futex word */
    _Atomic int32_t poisoned;    /* 1 + the rank that failed or left, 0 = healthy */
    _Atomic int32_t pids[VESTA_TP_MAX_RANKS];
} shm_header;

_Static_assert(sizeof(shm_header) <= SHM_HEADER_BYTES, "shm header too large");

typedef struct shm_comm {
    vesta_tp_comm base; /* must be first */
    shm_header *h;
    unsigned char *slots;
    size_t slot_bytes, map_bytes;
    char name[128];
    int failed;
} shm_comm;

static shm_comm *shm_of(vesta_tp_comm *c) { return (shm_comm *)c; }

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A process that exited but was not yet reaped (a zombie) still answers kill(pid, 0). */
static int pid_alive(pid_t pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return 0;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1; /* no procfs: kill() said it exists */
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the state follows "(comm) " */
    return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

/* Poisons the group, blaming rank `blame` (the dead one, or this one when it cannot tell). */
static vesta_status fail(shm_comm *s, int blame, vesta_error *err, vesta_status code, const char *fmt, int a, int b)
{
    s->failed = 1;
    int32_t expected = 0;
    atomic_compare_exchange_strong(&s->h->poisoned, &expected, blame + 1);
    return vesta_error_set(err, code, fmt, a, b);
}

/* Returns VESTA_OK once every peer is alive and the group is not poisoned. */
static vesta_status check_peers(shm_comm *s, vesta_error *err)
{
    int32_t p = atomic_load(&s->h->poisoned);
    if (p)
        return fail(s, p - 1, err, VESTA_ERR_BACKEND, "tp comm: rank %d of %d died, failed or left the replica",
                    p - 1, s->base.size);
    for (int r = 0; r < s->base.size; r++) {
        pid_t pid = atomic_load(&s->h->pids[r]);
        if (r != s->base.rank && pid > 0 && !pid_alive(pid))
            return fail(s, r, err, VESTA_ERR_BACKEND, "tp comm: rank %d (pid %d) died", r, (int)pid);
    }
    return VESTA_OK;
}

static vesta_status barrier(shm_comm *s, int timeout_ms, vesta_error *err)
{
    if (s->failed)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "tp comm: the replica already failed");
    shm_header *h = s->h;
    uint32_t gen = atomic_load(&h->generation);
    if (atomic_fetch_add(&h->arrived, 1) + 1 == (uint32_t)s->base.size) {
        atomic_store(&h->arrived, 0);
        atomic_fetch_add(&h->generation, 1);
        syscall(SYS_futex, &h->generation, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        return VESTA_OK;
    }
    const int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ns() + (int64_t)timeout_ms * 1000000;
    for (int spin = 0; atomic_load(&h->generation) == gen; spin++) {
        if (spin < 64)
            continue;
        struct timespec ts = {0, SLICE_NS};
        syscall(SYS_futex, &h->generation, FUTEX_WAIT, gen, &ts, NULL, 0);
        if (atomic_load(&h->generation) != gen)
            break;
        vesta_status st = check_peers(s, err);
        if (st != VESTA_OK)
            return st;
        if (now_ns() > deadline)
            return fail(s, s->base.rank, err, VESTA_ERR_BACKEND, "tp comm: rank %d waited %d ms for its peers",
                        s->base.rank, timeout_ms);
    }
    return VESTA_OK;
}

static unsigned char *slot(shm_comm *s, int r) { return s->slots + (size_t)r * s->slot_bytes; }

static vesta_status shm_all_reduce(vesta_tp_comm *c, float *buf, size_t n, vesta_error *err)
{
    shm_comm *s = shm_of(c);
    const size_t piece = s->slot_bytes / sizeof(float);
    for (size_t off = 0; off < n; off += piece) {
        size_t m = n - off < piece ? n - off : piece;
        memcpy(slot(s, c->rank), buf + off, m * sizeof(float));
        vesta_status st = barrier(s, c->timeout_ms, err);
        if (st != VESTA_OK)
            return st;
        float *dst = buf + off;
        memcpy(dst, slot(s, 0), m * sizeof(float));
        for (int r = 1; r < c->size; r++) {
            const float *src = (const float *)slot(s, r);
            for (size_t i = 0; i < m; i++)
                dst[i] += src[i];
        }
        if ((st = barrier(s, c->timeout_ms, err)) != VESTA_OK)
            return st;
    }
    return VESTA_OK;
}

static vesta_status shm_all_gather(vesta_tp_comm *c, const float *in, size_t n, float *out, vesta_error *err)
{
    shm_comm *s = shm_of(c);
    const size_t piece = s->slot_bytes / sizeof(float);
    for (size_t off = 0; off < n; off += piece) {
        size_t m = n - off < piece ? n - off : piece;
        memcpy(slot(s, c->rank), in + off, m * sizeof(float));
        vesta_status st = barrier(s, c->timeout_ms, err);
        if (st != VESTA_OK)
            return st;
        for (int r = 0; r < c->size; r++)
            memcpy(out + (size_t)r * n + off, slot(s, r), m * sizeof(float));
        if ((st = barrier(s, c->timeout_ms, err)) != VESTA_OK)
            return st;
    }
    return VESTA_OK;
}

static vesta_status shm_broadcast(vesta_tp_comm *c, void *buf, size_t bytes, int root, int timeout_ms,
                                  vesta_error *err)
{
    shm_comm *s = shm_of(c);
    unsigned char *p = buf;
    size_t off = 0;
    do { /* bytes == 0 still meets once: the call is a synchronization point */
        size_t m = bytes - off < s->slot_bytes ? bytes - off : s->slot_bytes;
        if (c->rank == root)
            memcpy(slot(s, root), p + off, m);
        /* Only the first piece may wait without a deadline: the others follow at once. */
        vesta_status st = barrier(s, off == 0 ? timeout_ms : c->timeout_ms, err);
        if (st != VESTA_OK)
            return st;
        if (c->rank != root)
            memcpy(p + off, slot(s, root), m);
        if ((st = barrier(s, c->timeout_ms, err)) != VESTA_OK)
            return st;
        off += m;
    } while (off < bytes);
    return VESTA_OK;
}

static void shm_release(vesta_tp_comm *c)
{
    shm_comm *s = shm_of(c);
    if (s->h) {
        /* Leaving ends the replica: peers still waiting fail at once instead of at their deadline. */
        int32_t expected = 0;
        atomic_compare_exchange_strong(&s->h->poisoned, &expected, c->rank + 1);
        syscall(SYS_futex, &s->h->generation, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        munmap(s->h, s->map_bytes);
    }
    free(s);
}

static const vesta_tp_comm_ops shm_ops = {
    .name = "shm",
    .all_reduce_sum = shm_all_reduce,
    .all_gather = shm_all_gather,
    .broadcast = shm_broadcast,
    .release = shm_release,
};

void vesta_tp_comm_shm_name(char *out, size_t cap)
{
    snprintf(out, cap, "/vesta-tp-%d-%llx", (int)getpid(), (unsigned long long)now_ns());
}

/* A follower waits for rank 0's segment to appear and be initialized, then checks that it was made
 * for this replica's size and slot size before mapping all of it. */
static vesta_status open_existing(shm_comm *s, int64_t deadline, int timeout_ms, int *fd_out, vesta_error *err)
{
    int fd;
    struct stat stt;
    while ((fd = shm_open(s->name, O_RDWR, 0600)) < 0 || fstat(fd, &stt) != 0 || stt.st_size < SHM_HEADER_BYTES) {
        if (fd >= 0)
            close(fd);
        if (now_ns() > deadline)
            return vesta_error_set(err, VESTA_ERR_IO, "tp comm: rank %d: segment %s did not appear in %d ms",
                                   s->base.rank, s->name, timeout_ms);
        usleep(2000);
    }
    shm_header *h = mmap(NULL, SHM_HEADER_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        close(fd);
        return vesta_error_set(err, VESTA_ERR_IO, "tp comm: mmap %s: %s", s->name, strerror(errno));
    }
    vesta_status st = VESTA_OK;
    while (atomic_load(&h->magic) != SHM_MAGIC && st == VESTA_OK) {
        if (now_ns() > deadline)
            st = vesta_error_set(err, VESTA_ERR_IO, "tp comm: segment %s never initialized", s->name);
        usleep(1000);
    }
    if (st == VESTA_OK && (h->version != SHM_VERSION || h->size != s->base.size || h->slot_bytes != s->slot_bytes ||
                           (size_t)stt.st_size != s->map_bytes))
        st = vesta_error_set(err, VESTA_ERR_INVALID_ARG,
                             "tp comm: rank %d: segment %s was made for %d ranks (this rank expects %d) or "
                             "another slot size", s->base.rank, s->name, (int)h->size, s->base.size);
    munmap(h, SHM_HEADER_BYTES);
    if (st != VESTA_OK)
        close(fd);
    else
        *fd_out = fd;
    return st;
}

/* Rank 0 creates and initializes the segment; magic is stored last so that the others never see
 * a half-initialized header. */
static vesta_status map_segment(shm_comm *s, int timeout_ms, vesta_error *err)
{
    const int rank = s->base.rank;
    int fd = -1;
    const int64_t deadline = now_ns() + (int64_t)(timeout_ms < 0 ? 60000 : timeout_ms) * 1000000;
    if (rank == 0) {
        fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            return vesta_error_set(err, VESTA_ERR_IO, "tp comm: shm_open(%s): %s", s->name, strerror(errno));
        if (ftruncate(fd, (off_t)s->map_bytes) != 0) {
            vesta_error_set(err, VESTA_ERR_IO, "tp comm: sizing %s to %zu bytes: %s", s->name, s->map_bytes,
                            strerror(errno));
            close(fd);
            shm_unlink(s->name);
            return err ? err->code : VESTA_ERR_IO;
        }
    } else {
        vesta_status st = open_existing(s, deadline, timeout_ms, &fd, err);
        if (st != VESTA_OK)
            return st;
    }
    void *m = mmap(NULL, s->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        if (rank == 0)
            shm_unlink(s->name);
        return vesta_error_set(err, VESTA_ERR_IO, "tp comm: mmap %s: %s", s->name, strerror(errno));
    }
    s->h = m;
    s->slots = (unsigned char *)m + SHM_HEADER_BYTES;
    if (rank == 0) {
        s->h->version = SHM_VERSION;
        s->h->size = s->base.size;
        s->h->slot_bytes = s->slot_bytes;
        atomic_store(&s->h->magic, SHM_MAGIC);
    }
    return VESTA_OK;
}

vesta_tp_comm *vesta_tp_comm_shm_create(const char *name, int rank, int size, size_t slot_bytes, int timeout_ms,
                                        vesta_error *err)
{
    return vesta_tp_comm_shm_create_watching(name, rank, size, slot_bytes, timeout_ms, NULL, err);
}

vesta_tp_comm *vesta_tp_comm_shm_create_watching(const char *name, int rank, int size, size_t slot_bytes,
                                                 int timeout_ms, const int *peer_pids, vesta_error *err)
{
    if (!name || name[0] != '/' || strlen(name) >= 128 || strchr(name + 1, '/')) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: segment name must be \"/name\" (< 128 bytes)");
        return NULL;
    }
    if (size < 1 || size > VESTA_TP_MAX_RANKS || rank < 0 || rank >= size) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: rank %d of %d (at most %d ranks)", rank, size,
                        VESTA_TP_MAX_RANKS);
        return NULL;
    }
    slot_bytes = (slot_bytes < 4096 ? 4096 : slot_bytes + 63) & ~(size_t)63;
    size_t total;
    if (__builtin_mul_overflow(slot_bytes, (size_t)size, &total) ||
        __builtin_add_overflow(total, (size_t)SHM_HEADER_BYTES, &total)) {
        vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: %d slots of %zu bytes overflow", size, slot_bytes);
        return NULL;
    }
    shm_comm *s = calloc(1, sizeof *s);
    if (!s) {
        vesta_error_set(err, VESTA_ERR_NOMEM, "tp comm: out of memory");
        return NULL;
    }
    s->base.ops = &shm_ops;
    s->base.rank = rank;
    s->base.size = size;
    s->base.timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
    s->slot_bytes = slot_bytes;
    s->map_bytes = total;
    snprintf(s->name, sizeof s->name, "%s", name);
    vesta_status st = map_segment(s, timeout_ms, err);
    if (st == VESTA_OK) {
        atomic_store(&s->h->pids[rank], (int32_t)getpid());
        for (int r = 0; rank == 0 && peer_pids && r < size; r++) /* a rank that dies before joining */
            if (r != rank && peer_pids[r] > 0)
                atomic_store(&s->h->pids[r], (int32_t)peer_pids[r]);
        /* Everyone has mapped the segment once this barrier passes: the name can go. */
        st = barrier(s, s->base.timeout_ms, err);
        if (rank == 0)
            shm_unlink(s->name);
        if (st != VESTA_OK)
            vesta_error_prefix(err, "tp comm: joining %s as rank %d of %d", s->name, rank, size);
    }
    if (st != VESTA_OK) {
        if (s->h && rank == 0)
            shm_unlink(s->name);
        shm_release(&s->base);
        return NULL;
    }
    return &s->base;
}
