/* Multi-LoRA: y[row] += B (A x[row]) for every row whose adapter targets the projection, the
 * adapter chosen per row (punica's BGMV idea). The rows' slots come from the step's device
 * metadata, so one launch serves a batch that mixes adapters and the base model, and a decode
 * graph captured once serves any mix. Projections that share their input (q, k, v; gate, up) go in
 * one launch. The adapters are small (rank r <= 512 against hidden sizes in the thousands), so both
 * halves run on CUDA cores:
 *   shrink: blocks over (tiles of 16 rows, slices of `in`, targets); a tile's x comes into shared
 *           memory a chunk at a time and each of A's rows is read once per tile; the slices'
 *           partial sums go to a workspace (more slices where there are few tiles: decode steps);
 *   expand: blocks over (tiles, column blocks, targets); the partials are summed in a fixed order
 *           (the same bits whatever the batch) and each of B's rows is read once per tile.
 * A tile's rows of different adapters (a decode step) take one pass per adapter.
 *
 * Rounding follows PEFT on a bf16 / fp16 model: A x is rounded to the storage type, B (A x) (the
 * scaling is folded into B at load) too, and the sum with the base output once more. */
#include "common.cuh"

using namespace vk;

namespace
{

constexpr int ROWS = 16;    /* rows per tile */
constexpr int KCHUNK = 256; /* elements of x per row in shared memory at a time */
constexpr int WARPS = 8;
constexpr int JPW = 2;     /* rank outputs per warp per pass */
constexpr int RCHUNK = 64; /* rank entries of t per row in shared memory at a time */

/* Slices of `in` per tile: enough blocks to fill the GPU when the tiles are few; a fixed count
 * (at most 8) when the bits must not depend on n. */
int splits_for(int n, int in, bool invariant)
{
    const int tiles = (n + ROWS - 1) / ROWS, chunks = (in + KCHUNK - 1) / KCHUNK;
    if (invariant) return chunks < 8 ? chunks : 8;
    if (tiles >= 128) return 1;
    const int s = (256 + tiles - 1) / tiles; /* about two blocks per SM (run 181: capping it at 8 lost 5 %) */
    return s < chunks ? s : chunks;
}

/* Field t of the kernel parameter without indexing it at run time (which copies the struct to
 * local memory). */
template <typename F> __device__ __forceinline__ F pick(const F (&v)[VK_LORA_MAX_TARGETS], int t)
{
    return t == 0 ? v[0] : t == 1 ? v[1] : v[2];
}

__device__ __forceinline__ void tile_slots(int *sl, const int32_t *row_slot, int r0, int n)
{
    if (threadIdx.x < ROWS) sl[threadIdx.x] = r0 + (int)threadIdx.x < n ? row_slot[r0 + threadIdx.x] : -1;
    __syncthreads();
}
/* The bitmask of the tile's rows with slot s. */
__device__ __forceinline__ unsigned rows_of(const int *sl, int s)
{
    unsigned m = 0;
#pragma unroll
    for (int i = 0; i < ROWS; i++) m |= (unsigned)(sl[i] == s) << i;
    return m;
}

/* ws[((tgt * splits + sp) * n + row) * R + j] = sum over slice sp of A[j][k] x[row][k] */
template <typename T>
__global__ void __launch_bounds__(WARPS * 32) lora_shrink_kernel(vk_lora_targets tg, const T *x, int in, int n,
                                                                 const int32_t *row_slot, float *ws, int R, int splits)
{
    pdl_allow_dependents();
    pdl_wait_previous(); /* x is the previous kernel's output */
    __shared__ int sl[ROWS];
    __shared__ __align__(16) T xs[ROWS][KCHUNK];
    const int r0 = blockIdx.x * ROWS, sp = blockIdx.y, tgt = blockIdx.z;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nch = (in + KCHUNK - 1) / KCHUNK, c0 = sp * nch / splits, c1 = (sp + 1) * nch / splits;
    float *part = ws + ((size_t)(tgt * splits + sp) * n) * R;
    tile_slots(sl, row_slot, r0, n);
    unsigned todo = rows_of(sl, -1) ^ ((1u << ROWS) - 1);
    while (todo) { /* block-uniform loops: every barrier below is reached by all threads */
        const int s = sl[__ffs(todo) - 1];
        const unsigned m = rows_of(sl, s);
        todo &= ~m;
        const vk_lora_slot L = pick(tg.tab, tgt)[s];
        if (L.a == nullptr) continue;
        const T *A = (const T *)L.a;
        for (int jb = 0; jb < L.rank; jb += WARPS * JPW) {
            float acc[JPW][ROWS];
#pragma unroll
            for (int q = 0; q < JPW; q++)
#pragma unroll
                for (int i = 0; i < ROWS; i++) acc[q][i] = 0.f;
            for (int c = c0; c < c1; c++) {
                const int k = c * KCHUNK, kn = min(KCHUNK, in - k);
                __syncthreads();
                for (int e = threadIdx.x; e < ROWS * (KCHUNK / 8); e += blockDim.x) {
                    const int i = e / (KCHUNK / 8), v = (e % (KCHUNK / 8)) * 8;
                    if (m >> i & 1 && v < kn)
                        *reinterpret_cast<uint4 *>(&xs[i][v]) =
                            *reinterpret_cast<const uint4 *>(x + (size_t)(r0 + i) * in + k + v);
                }
                __syncthreads();
                if (lane * 8 >= kn) continue;
                float av[JPW][8]; /* each x vector from shared memory serves the warp's JPW rows of A */
#pragma unroll
                for (int q = 0; q < JPW; q++) {
                    const int j = min(jb + warp * JPW + q, L.rank - 1); /* past the rank: computed, not stored */
                    load8(A + (size_t)j * in + k + lane * 8, av[q]);
                }
#pragma unroll
                for (int i = 0; i < ROWS; i++) {
                    if (!(m >> i & 1)) continue;
                    float xv[8];
                    load8(&xs[i][lane * 8], xv);
#pragma unroll
                    for (int q = 0; q < JPW; q++)
#pragma unroll
                        for (int e = 0; e < 8; e++) acc[q][i] = fmaf(xv[e], av[q][e], acc[q][i]);
                }
            }
#pragma unroll
            for (int q = 0; q < JPW; q++) {
                const int j = jb + warp * JPW + q;
#pragma unroll
                for (int i = 0; i < ROWS; i++) {
                    if (!(m >> i & 1)) continue;
                    const float v = warp_sum(acc[q][i]);
                    if (lane == 0 && j < L.rank) part[(size_t)(r0 + i) * R + j] = v;
                }
            }
        }
    }
}

/* y[row][o] = round(y + round(sum_j t[row][j] B[o][j])), t = round(sum of the slices' partials) */
template <typename T>
__global__ void __launch_bounds__(256)
    lora_expand_kernel(vk_lora_targets tg, int ldy, int n, const int32_t *row_slot, const float *ws, int R, int splits)
{
    pdl_allow_dependents();
    pdl_wait_previous(); /* ws is the shrink's output */
    __shared__ int sl[ROWS];
    __shared__ __align__(16) float ts[ROWS][RCHUNK];
    const int r0 = blockIdx.x * ROWS, tgt = blockIdx.z, out = pick(tg.out, tgt);
    const float *part = ws + (size_t)tgt * splits * n * R;
    tile_slots(sl, row_slot, r0, n);
    unsigned todo = rows_of(sl, -1) ^ ((1u << ROWS) - 1);
    while (todo) {
        const int s = sl[__ffs(todo) - 1];
        const unsigned m = rows_of(sl, s);
        todo &= ~m;
        const vk_lora_slot L = pick(tg.tab, tgt)[s];
        if (L.b == nullptr) continue;
        const T *B = (const T *)L.b;
        for (int ob = blockIdx.y * blockDim.x; ob < out; ob += gridDim.y * blockDim.x) {
            const int o = ob + threadIdx.x;
            float acc[ROWS];
#pragma unroll
            for (int i = 0; i < ROWS; i++) acc[i] = 0.f;
            for (int c = 0; c < L.rank; c += RCHUNK) {
                const int cn = min(RCHUNK, L.rank - c);
                __syncthreads();
                for (int e = threadIdx.x; e < ROWS * cn; e += blockDim.x) {
                    const int i = e / cn, j = e % cn;
                    float v = 0.f;
                    if (m >> i & 1) {
#pragma unroll 4
                        for (int p = 0; p < splits; p++) v += part[((size_t)p * n + r0 + i) * R + c + j];
                        v = rnd<T>(v);
                    }
                    ts[i][j] = v;
                }
                __syncthreads();
                if (o >= out) continue;
                const T *b = B + (size_t)o * L.rank + c;
                int j = 0;
                if (L.rank % 8 == 0) /* B's rows 16-byte aligned: 8 at a time, t as float4 pairs */
                    for (; j < cn; j += 8) {
                        float bv[8];
                        load8(b + j, bv);
#pragma unroll
                        for (int i = 0; i < ROWS; i++) {
                            const float4 u = *reinterpret_cast<const float4 *>(&ts[i][j]);
                            const float4 w = *reinterpret_cast<const float4 *>(&ts[i][j + 4]);
                            acc[i] = fmaf(u.x, bv[0], acc[i]), acc[i] = fmaf(u.y, bv[1], acc[i]);
                            acc[i] = fmaf(u.z, bv[2], acc[i]), acc[i] = fmaf(u.w, bv[3], acc[i]);
                            acc[i] = fmaf(w.x, bv[4], acc[i]), acc[i] = fmaf(w.y, bv[5], acc[i]);
                            acc[i] = fmaf(w.z, bv[6], acc[i]), acc[i] = fmaf(w.w, bv[7], acc[i]);
                        }
                    }
                for (; j < cn; j++) {
                    const float bj = to_f<T>(b[j]);
#pragma unroll
                    for (int i = 0; i < ROWS; i++) acc[i] = fmaf(ts[i][j], bj, acc[i]);
                }
            }
            if (o >= out) continue;
            T *y = (T *)pick(tg.y, tgt);
#pragma unroll
            for (int i = 0; i < ROWS; i++) {
                if (!(m >> i & 1)) continue;
                T *yv = y + (size_t)(r0 + i) * ldy + o;
                *yv = from_f<T>(to_f<T>(*yv) + rnd<T>(acc[i]));
            }
        }
    }
}

} // namespace

extern "C" size_t vk_lora_ws_floats(int max_tokens, int max_rank, int invariant)
{
    /* splits x n: under 384 tiles' rows while splits > 1, else n; up to 8 n when invariant */
    const size_t n = (invariant ? 8 : 1) * (size_t)max_tokens;
    const size_t rows = n > 384 * ROWS ? n : (size_t)384 * ROWS;
    return (size_t)VK_LORA_MAX_TARGETS * rows * (size_t)max_rank;
}

extern "C" cudaError_t vk_lora(vk_dtype dt, const vk_lora_targets *tg, int ldy, const void *x, int in,
                               const int32_t *row_slot, int n, float *ws, int max_rank, int invariant, int pdl,
                               cudaStream_t s)
{
    if (n <= 0 || tg->num == 0) return cudaSuccess;
    if (in % 8 || in <= 0 || tg->num < 0 || tg->num > VK_LORA_MAX_TARGETS || max_rank <= 0 ||
        max_rank > VK_LORA_MAX_RANK)
        return cudaErrorInvalidValue;
    int max_out = 0;
    for (int t = 0; t < tg->num; t++) max_out = tg->out[t] > max_out ? tg->out[t] : max_out;
    const int tiles = (n + ROWS - 1) / ROWS, splits = splits_for(n, in, invariant != 0), cols = (max_out + 255) / 256;
    const bool p = pdl != 0;
    VK_DISPATCH(dt, {
        cudaError_t e = launch_pdl(lora_shrink_kernel<T>, dim3(tiles, splits, tg->num), dim3(WARPS * 32), 0, s, p, *tg,
                                   (const T *)x, in, n, row_slot, ws, max_rank, splits);
        if (e != cudaSuccess) return e;
        return launch_pdl(lora_expand_kernel<T>, dim3(tiles, cols < 64 ? cols : 64, tg->num), dim3(256), 0, s, p, *tg,
                          ldy, n, row_slot, (const float *)ws, max_rank, splits);
    });
    return cudaErrorInvalidValue;
}

namespace
{
template <typename T> __global__ void lora_mask_kernel(T *t, int cols, const int32_t *row_slot, int slot)
{
    if (row_slot[blockIdx.x] == slot) return;
    T *row = t + (size_t)blockIdx.x * cols;
    for (int k = threadIdx.x; k < cols; k += blockDim.x) row[k] = from_f<T>(0.f);
}
} // namespace

extern "C" cudaError_t vk_lora_mask(vk_dtype dt, void *t, int cols, int n, const int32_t *row_slot, int slot,
                                    cudaStream_t s)
{
    if (n <= 0 || cols <= 0) return cudaSuccess;
    VK_DISPATCH(dt, lora_mask_kernel<T><<<n, 128, 0, s>>>((T *)t, cols, row_slot, slot); return cudaGetLastError());
    return cudaErrorInvalidValue;
}
