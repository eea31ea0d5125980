/* One-shot all-reduce over peer-mapped memory (contract in vesta_kernels.h).
 *
 * Why: a decode step of one sequence under tensor parallelism makes 2 all-reduces a layer of
 * hidden * 2 bytes (8 KB on the 8B shape). NCCL moves them in a ring: size - 1 hops of latency
 * each way. Here every rank reads every peer's part straight over NVLink once both have said
 * they are there: one flag round trip, one read.
 *
 * Region of rank r (mapped by every rank): flags[b][s] (uint64) at the head -- block b of rank s
 * has written its data of the call numbered flags[b][s] -- then data buffers 0 and 1. Call e
 * (counted from 1, the same on every rank because every rank makes the same calls) uses buffer
 * e & 1. Why two buffers are enough: a rank starts call e + 2 only after call e + 1's flags came
 * from every peer, and a peer raises those only after its call e kernel, the last reader of the
 * buffer, has finished (calls are ordinary launches on one stream, never early starts).
 *
 * Block b of a call waits only for block b of the peers, and reads only what they wrote. All
 * blocks of a call carry the same epoch: block 0 also advances the counters of blocks the call
 * did not launch. Flags only grow (64 bits never wrap), and a peer may be one call ahead, so a
 * flag is "there" when it is >= the epoch. */
#include "common.cuh"
#include "rmsnorm.cuh"

using namespace vk;

/* The context is a __grid_constant__ parameter: indexed by rank at run time, it is read where it
 * lies instead of being copied to local memory first. */
namespace
{

constexpr int AR_THREADS = 512;
static_assert(VK_AR_MAX_BLOCKS * VK_AR_MAX_RANKS * 8 <= VK_AR_FLAG_BYTES, "flags fit their area");

__device__ __forceinline__ void st_release_sys(unsigned long long *p, unsigned long long v)
{
    asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ unsigned long long ld_acquire_sys(const unsigned long long *p)
{
    unsigned long long v;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ unsigned long long global_ns()
{
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ unsigned long long *flag_slot(void *region, int block, int from)
{
    return reinterpret_cast<unsigned long long *>(region) + block * VK_AR_MAX_RANKS + from;
}
template <typename T> __device__ __forceinline__ T *data_of(const vk_allreduce_ctx &c, int r, unsigned long long epoch)
{
    return reinterpret_cast<T *>(static_cast<char *>(c.region[r]) + VK_AR_FLAG_BYTES + (epoch & 1) * c.data_bytes);
}

/* This call's number, the same in every block. */
__device__ __forceinline__ unsigned long long ar_epoch(const vk_allreduce_ctx &c, unsigned long long *sh)
{
    if (threadIdx.x == 0) *sh = c.epoch[blockIdx.x] + 1;
    __syncthreads();
    return *sh;
}

/* After the block wrote its data into its own buffer: raise this block's flag at every peer,
 * wait for theirs. false: a peer did not come in time (*c.error is set). Ends synchronized. */
__device__ bool ar_barrier(const vk_allreduce_ctx &c, unsigned long long epoch, int *ok)
{
    /* once one call timed out the replica is failed: later calls return at once */
    if (threadIdx.x == 0) *ok = !*(volatile int *)c.failed;
    __syncthreads(); /* the block's data is written */
    const int t = threadIdx.x;
    if (*ok && t < c.size) {
        __threadfence_system();
        st_release_sys(flag_slot(c.region[t], blockIdx.x, c.rank), epoch);
        const unsigned long long *mine = flag_slot(c.region[c.rank], blockIdx.x, t);
        unsigned long long t0 = 0;
        for (unsigned spin = 1; ld_acquire_sys(mine) < epoch; spin++) {
            if (spin % 1024) continue;
            /* a long wait: also give up once the host has failed the replica (read only here:
             * a read of host memory on every call's path cost ~30 us, run 93) */
            const bool host_failed = *(volatile int *)c.error != 0;
            unsigned long long now = global_ns();
            if (!t0 && !host_failed) {
                t0 = now;
            } else if (host_failed || now - t0 > c.timeout_ns) {
                *ok = 0;
                *(volatile int *)c.failed = 1;
                *(volatile int *)c.error = 1;
                __threadfence_system();
                break;
            }
        }
    }
    __syncthreads();
    return *ok;
}

/* The call is over for this block. */
__device__ __forceinline__ void ar_finish(const vk_allreduce_ctx &c, unsigned long long epoch)
{
    if (threadIdx.x != 0) return;
    c.epoch[blockIdx.x] = epoch;
    if (blockIdx.x == 0)
        for (int b = gridDim.x; b < VK_AR_MAX_BLOCKS; b++) c.epoch[b] = epoch;
}

/* The sum over ranks, in rank order, of the 16-byte vector at index i of this call's buffers.
 * Loads bypass L1: the peers rewrite these buffers between calls. */
template <typename T>
__device__ __forceinline__ void sum_vec(const vk_allreduce_ctx &c, unsigned long long epoch, size_t i, float *acc)
{
    uint4 u[VK_AR_MAX_RANKS];
#pragma unroll
    for (int r = 0; r < VK_AR_MAX_RANKS; r++)
        if (r < c.size) u[r] = __ldcg(reinterpret_cast<const uint4 *>(data_of<T>(c, r, epoch)) + i);
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j] = 0.f;
#pragma unroll
    for (int r = 0; r < VK_AR_MAX_RANKS; r++) {
        if (r >= c.size) break;
        float f[8];
        cvt8<T>(u[r], f);
#pragma unroll
        for (int j = 0; j < 8; j++) acc[j] += f[j];
    }
}

template <typename T>
__global__ void __launch_bounds__(AR_THREADS)
    allreduce_kernel(const __grid_constant__ vk_allreduce_ctx c, T *buf, size_t vecs)
{
    __shared__ unsigned long long sh_epoch;
    __shared__ int ok;
    pdl_allow_dependents(); /* a following gemv may stream its weights meanwhile */
    const unsigned long long epoch = ar_epoch(c, &sh_epoch);
    uint4 *mine = reinterpret_cast<uint4 *>(data_of<T>(c, c.rank, epoch));
    const uint4 *in = reinterpret_cast<const uint4 *>(buf);
    const size_t first = (size_t)blockIdx.x * blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = first; i < vecs; i += stride) mine[i] = in[i];
    if (ar_barrier(c, epoch, &ok)) {
        for (size_t i = first; i < vecs; i += stride) {
            float acc[8];
            sum_vec<T>(c, epoch, i, acc);
            store8(buf + i * 8, acc);
        }
    }
    ar_finish(c, epoch);
}

/* One row per block at a time, the row's vectors spread over the threads as in add_rmsnorm (up to
 * 1024 threads: the bound keeps the registers within what such a block may have). */
template <typename T, int PER>
__global__ void __launch_bounds__(1024)
    allreduce_add_rmsnorm_kernel(const __grid_constant__ vk_allreduce_ctx c, T *out, T *residual, const T *part,
                                 const T *w, int n, int hidden, float eps)
{
    __shared__ float sh[32];
    __shared__ unsigned long long sh_epoch;
    __shared__ int ok;
    pdl_allow_dependents();
    const unsigned long long epoch = ar_epoch(c, &sh_epoch);
    T *mine = data_of<T>(c, c.rank, epoch);
    for (int row = blockIdx.x; row < n; row += gridDim.x)
        for (int i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8) {
            size_t at = (size_t)row * hidden + i;
            *reinterpret_cast<uint4 *>(mine + at) = *reinterpret_cast<const uint4 *>(part + at);
        }
    if (ar_barrier(c, epoch, &ok)) {
        for (int row = blockIdx.x; row < n; row += gridDim.x) {
            const size_t base = (size_t)row * hidden;
            float v[PER][8];
#pragma unroll
            for (int k = 0; k < PER; k++) {
                int i = (threadIdx.x + k * blockDim.x) * 8;
                if (i < hidden) {
                    float s[8];
                    sum_vec<T>(c, epoch, (base + i) / 8, s);
                    load8(residual + base + i, v[k]);
                    /* the sum is rounded to T first, as the separate all-reduce stores it */
#pragma unroll
                    for (int j = 0; j < 8; j++) v[k][j] = rnd<T>(v[k][j] + rnd<T>(s[j]));
                    store8(residual + base + i, v[k]);
                }
            }
            rmsnorm_store<T, PER>(out + base, v, w, hidden, eps, sh);
        }
    }
    ar_finish(c, epoch);
}

bool ctx_ok(const vk_allreduce_ctx *c)
{
    if (!c || c->size < 1 || c->size > VK_AR_MAX_RANKS || c->rank < 0 || c->rank >= c->size || !c->epoch || !c->error ||
        !c->failed)
        return false;
    for (int r = 0; r < c->size; r++)
        if (!c->region[r]) return false;
    return true;
}

int blocks_for(size_t units) { return units < VK_AR_MAX_BLOCKS ? (int)units : VK_AR_MAX_BLOCKS; }

} // namespace

extern "C" cudaError_t vk_allreduce(vk_dtype dt, const vk_allreduce_ctx *c, void *buf, size_t n, cudaStream_t s)
{
    if (!ctx_ok(c)) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const size_t bytes = n * 2;
    if (bytes % 16 || bytes > c->data_bytes) return cudaErrorInvalidValue;
    const size_t vecs = bytes / 16;
    const int blocks = blocks_for((vecs + AR_THREADS - 1) / AR_THREADS);
    VK_DISPATCH(dt, allreduce_kernel<T><<<blocks, AR_THREADS, 0, s>>>(*c, (T *)buf, vecs));
    return cudaGetLastError();
}

extern "C" cudaError_t vk_allreduce_add_rmsnorm(vk_dtype dt, const vk_allreduce_ctx *c, void *out, void *residual,
                                                const void *part, const void *w, int n, int hidden, float eps,
                                                cudaStream_t s)
{
    if (!ctx_ok(c)) return cudaErrorInvalidValue;
    if (n <= 0) return cudaSuccess;
    if (hidden <= 0 || hidden % 8 || hidden > VK_RMSNORM_MAX_HIDDEN || (size_t)n * hidden * 2 > c->data_bytes)
        return cudaErrorInvalidValue;
    const int threads = rmsnorm_threads(hidden), blocks = blocks_for((size_t)n);
#define LAUNCH_FUSED(P)                                                                                                \
    VK_DISPATCH(dt, allreduce_add_rmsnorm_kernel<T, P><<<blocks, threads, 0, s>>>(                                     \
                        *c, (T *)out, (T *)residual, (const T *)part, (const T *)w, n, hidden, eps))
    VK_RMSNORM_PER(rmsnorm_per(hidden), LAUNCH_FUSED);
#undef LAUNCH_FUSED
    return cudaGetLastError();
}
