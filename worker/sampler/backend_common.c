/* The backend-agnostic parts of include/vesta/backend.h. They live in vesta_sampler because it
 * is the one library every backend and the engine link, so no backend depends on the engine
 * (the engine's registry, vesta_backend_create, depends on the backends). */
#include "vesta/backend.h"

#include <string.h>

void vesta_backend_options_init(vesta_backend_options *o)
{
    memset(o, 0, sizeof(*o));
    o->max_num_batched_tokens = 8192;
    o->max_num_seqs = 256;
    o->max_model_len = 0;
    o->block_size = 16;
    o->gpu_memory_utilization = 0.90;
    o->cpu_kv_cache_bytes = 0;
    o->num_threads = 0;
    o->tp_rank = 0;
    o->tp_size = 1;
    o->device = 0;
    o->enforce_eager = false;
    o->disable_custom_all_reduce = false;
    o->batch_invariant = false;
    o->load_dummy = false;
    o->dummy_seed = 0;
}

void vesta_backend_destroy(vesta_backend *be)
{
    if (be != NULL && be->ops != NULL && be->ops->destroy != NULL) be->ops->destroy(be);
}

vesta_status vesta_backend_check_copy_args(const int32_t *src, const int32_t *dst, int n, vesta_error *err)
{
    if (n < 0 || (n > 0 && (!src || !dst)))
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "copy_blocks: bad arguments (n = %d)", n);
    return VESTA_OK;
}
