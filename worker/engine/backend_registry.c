/* The backend registry: backend names to constructors. Which backends exist is decided at build
 * time (the CPU backend always in a full build; CUDA where nvcc was found). */
#include <stdlib.h>
#include <string.h>

#include "vesta/backend.h"
#ifdef VESTA_HAVE_BACKEND_CPU
#include "backend_cpu/backend_cpu.h"
#endif
#ifdef VESTA_HAVE_TP
#include "tp.h"
#endif
#ifdef VESTA_HAVE_BACKEND_CUDA
#include "backend_cuda/backend_cuda.h"
#endif

vesta_backend *vesta_backend_create(const char *name, const vesta_model_file *mf,
                                    const vesta_backend_options *opts, vesta_error *err)
{
    if (name == NULL || strcmp(name, "cpu") == 0) {
#ifdef VESTA_HAVE_BACKEND_CPU
#ifdef VESTA_HAVE_TP
        /* --tensor-parallel-size N: this process becomes rank 0 and starts the other ranks. */
        if (opts && opts->tp_size > 1)
            return vesta_tp_cpu_replica_start(mf, opts, VESTA_TP_TIMEOUT_MS, err);
#endif
        return vesta_backend_cpu_create(mf, opts, err);
#else
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "backend \"cpu\" is not built into this binary");
        return NULL;
#endif
    }
    if (strcmp(name, "cuda") == 0) {
        /* --tensor-parallel-size N: this process becomes rank 0 (GPU 0) and starts ranks 1..N-1.
         * VESTA_TP_FORCE_REPLICA=1 (a testing aid, docs/tensor-parallel.md) takes the same path at
         * N = 1: one rank that runs every NCCL collective, to compare with the plain backend. */
        const char *force = getenv("VESTA_TP_FORCE_REPLICA");
        bool replica = opts && (opts->tp_size > 1 || (force && strcmp(force, "1") == 0));
        if (replica) {
#ifdef VESTA_HAVE_TP_CUDA
            return vesta_tp_cuda_replica_start(mf, opts, VESTA_TP_TIMEOUT_MS, err);
#else
            vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "--tensor-parallel-size %d with the cuda backend: this "
                            "build has no NCCL (tensor parallelism on GPUs)", opts->tp_size);
            return NULL;
#endif
        }
#ifdef VESTA_HAVE_BACKEND_CUDA
        return vesta_backend_cuda_create(mf, opts, err);
#else
        vesta_error_set(err, VESTA_ERR_UNSUPPORTED,
                        "backend \"cuda\" is not available: this build of Vesta has no CUDA "
                        "backend (nvcc was not found at build time)");
        return NULL;
#endif
    }
    vesta_error_set(err, VESTA_ERR_INVALID_ARG, "unknown backend \"%s\" (choices: cpu, cuda)", name);
    return NULL;
}
