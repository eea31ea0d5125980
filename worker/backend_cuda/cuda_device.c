/* Device facts the engine needs before it creates the backend (vLLM-style defaults depend on the
 * card). Kept apart from the backend object so that asking costs no weights or buffers. */
#include <cuda_runtime_api.h>
#include <stdio.h>

#include "backend_cuda.h"

vesta_status vesta_backend_cuda_device_query(int device, size_t *total_bytes, char *name, size_t cap, vesta_error *err)
{
    int n = 0;
    cudaError_t ce = cudaGetDeviceCount(&n);
    if (ce != cudaSuccess || device < 0 || device >= n)
        return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "cuda: no CUDA device %d (%d found%s%s)", device, n,
                               ce != cudaSuccess ? ": " : "", ce != cudaSuccess ? cudaGetErrorString(ce) : "");
    struct cudaDeviceProp p;
    if ((ce = cudaGetDeviceProperties(&p, device)) != cudaSuccess)
        return vesta_error_set(err, VESTA_ERR_BACKEND, "cuda: device %d properties: %s", device,
                               cudaGetErrorString(ce));
    *total_bytes = p.totalGlobalMem;
    if (name && cap) snprintf(name, cap, "%s", p.name);
    return VESTA_OK;
}
