/* The GEMM tuning cache: what the CUDA backend's start-up tuning (cuda_gemm.c) chose, kept on
 * disk so that a restart on the same GPU and cuBLAS makes the same choices (the same results, bit
 * for bit, instead of timings that differ from run to run) and skips the tuning's seconds.
 *
 * Plain C with no CUDA types (an algorithm is the 64 opaque bytes of a cublasLtMatmulAlgo_t), so
 * the format is tested and fuzzed on machines without a GPU.
 *
 * File format, little-endian, version 1:
 *   "VSTGEMM\0" (8)  u32 version  u32 count  u64 library version  char device[128] (the name, then
 *   zeros to the end)
 *   count x entry (80 bytes): i32 n, i32 in, i32 out, u8 f32, u8 use_lt, u8 pad[2], u64 algo[8]
 * count <= VESTA_GEMM_CACHE_MAX; n, in, out in 1..2^24; f32, use_lt 0 or 1; nothing after the
 * last entry. One file describes one device and library version; another's file is replaced. */
#ifndef VESTA_GEMM_CACHE_H
#define VESTA_GEMM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vesta/error.h"

#define VESTA_GEMM_CACHE_MAX 4096
#define VESTA_GEMM_CACHE_DEVICE 128
#define VESTA_GEMM_CACHE_ALGO_WORDS 8

typedef struct vesta_gemm_cache_entry {
    int32_t n, in, out; /* y[n][out] = x[n][in] . w[out][in]^T */
    bool f32;           /* fp32 output */
    bool use_lt;        /* algo beat cuBLAS's default; false: the default is kept */
    uint64_t algo[VESTA_GEMM_CACHE_ALGO_WORDS];
} vesta_gemm_cache_entry;

typedef struct vesta_gemm_cache {
    char device[VESTA_GEMM_CACHE_DEVICE]; /* e.g. "NVIDIA H100 80GB HBM3, 132 SMs, sm_90" */
    uint64_t lib_version;                 /* cublasLtGetVersion() */
    int count;
    vesta_gemm_cache_entry entries[VESTA_GEMM_CACHE_MAX];
} vesta_gemm_cache;

/* An empty cache for this device and library. */
void vesta_gemm_cache_init(vesta_gemm_cache *c, const char *device, uint64_t lib_version);

/* Parses a file's bytes into c, which vesta_gemm_cache_init has set up for this device and
 * library. VESTA_ERR_FORMAT with the offending field named when malformed
 * (c is then empty); a well-formed file of another device or library version is not an error:
 * *other is set and c is left empty for this device. */
vesta_status vesta_gemm_cache_parse(vesta_gemm_cache *c, const uint8_t *buf, size_t len, bool *other, vesta_error *err);

/* Reads path into c (initialised for device / lib_version first). A missing file is an empty
 * cache, not an error; errors name the file. */
vesta_status vesta_gemm_cache_load(vesta_gemm_cache *c, const char *path, const char *device, uint64_t lib_version,
                                   vesta_error *err);

/* The file's bytes for c: vesta_gemm_cache_encoded_size(c) of them into buf. */
size_t vesta_gemm_cache_encoded_size(const vesta_gemm_cache *c);
void vesta_gemm_cache_encode(const vesta_gemm_cache *c, uint8_t *buf);

/* Writes c to path through a temporary file renamed over it (a reader never sees half a file;
 * of two writers the last wins), creating the directory above it if missing. */
vesta_status vesta_gemm_cache_save(const vesta_gemm_cache *c, const char *path, vesta_error *err);

/* The entry for a shape, or NULL. */
const vesta_gemm_cache_entry *vesta_gemm_cache_find(const vesta_gemm_cache *c, int n, int in, int out, bool f32);

/* Adds or replaces the entry for e's shape; false when the cache is full. */
bool vesta_gemm_cache_put(vesta_gemm_cache *c, const vesta_gemm_cache_entry *e);

/* The default path: $VESTA_GEMM_CACHE if set ("" or "0": no cache, returns false), else
 * $XDG_CACHE_HOME/vesta/gemm-tuning.bin, else $HOME/.cache/vesta/gemm-tuning.bin. */
bool vesta_gemm_cache_default_path(char *out, size_t cap);

#endif
