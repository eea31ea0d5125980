/* Internal: tensor maps for the Tensor Memory Accelerator (sm_90), encoded on the host through the
 * driver's cuTensorMapEncodeTiled (looked up once: the runtime links no driver symbols). */
#pragma once

#include <cuda.h>
#include <stdint.h>

#include "vesta_kernels.h"

/* Whether the driver has the encoder. */
bool vk_tma_available();
/* A tiled map over a rank-dimensional tensor of 16-bit elements (dt: VK_BF16 or VK_F16) at base:
 * dims[rank] elements (innermost first), strides[rank - 1] bytes between consecutive indices of
 * dimensions 1.., box[rank] elements per copy, 128-byte swizzle, out-of-bounds elements read as
 * zeros. False where the driver lacks the encoder or refuses the shape (alignment, box sizes). */
bool vk_tma_map(CUtensorMap *m, vk_dtype dt, const void *base, int rank, const uint64_t *dims, const uint64_t *strides,
                const uint32_t *box);
