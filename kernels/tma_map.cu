/* Tensor-map encoding for the kernels that copy with the TMA (gemm_stream_tma.cu,
 * attention_prefill_wg.cu). */
#include "tma_map.h"

#include <cuda_runtime.h>

namespace
{
typedef CUresult (*tma_encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                  const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                  CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

tma_encode_fn tma_encoder()
{
    static const tma_encode_fn fn = [] {
        void *f = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            return (tma_encode_fn) nullptr;
        return (tma_encode_fn)f;
    }();
    return fn;
}
} // namespace

bool vk_tma_available() { return tma_encoder() != nullptr; }

bool vk_tma_map(CUtensorMap *m, vk_dtype dt, const void *base, int rank, const uint64_t *dims, const uint64_t *strides,
                const uint32_t *box)
{
    const tma_encode_fn enc = tma_encoder();
    if (!enc || rank < 1 || rank > 5 || (dt != VK_BF16 && dt != VK_F16)) return false;
    cuuint64_t d[5], st[4];
    cuuint32_t b[5], elem[5];
    for (int i = 0; i < rank; i++) {
        d[i] = dims[i];
        b[i] = box[i];
        elem[i] = 1;
        if (i < rank - 1) st[i] = strides[i];
    }
    return enc(m, dt == VK_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, (cuuint32_t)rank,
               const_cast<void *>(base), d, st, b, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}
