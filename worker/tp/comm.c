/* The communicator interface: dispatch and argument checks shared by the implementations. */
#include "comm.h"

static vesta_status check(vesta_tp_comm *c, const void *p, size_t n, vesta_error *err)
{
    if (!c)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: communicator is NULL");
    if (n > 0 && !p)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: NULL buffer of %zu elements", n);
    return VESTA_OK;
}

vesta_status vesta_tp_comm_all_reduce_sum(vesta_tp_comm *c, float *buf, size_t n, vesta_error *err)
{
    vesta_status st = check(c, buf, n, err);
    return st != VESTA_OK ? st : c->ops->all_reduce_sum(c, buf, n, err);
}

vesta_status vesta_tp_comm_all_reduce_sum_dtype(vesta_tp_comm *c, void *buf, size_t n, vesta_tp_dtype dt,
                                                vesta_error *err)
{
    vesta_status st = check(c, buf, n, err);
    if (st != VESTA_OK)
        return st;
    if (c->ops->all_reduce_sum_dtype)
        return c->ops->all_reduce_sum_dtype(c, buf, n, dt, err);
    if (dt == VESTA_TP_F32)
        return c->ops->all_reduce_sum(c, buf, n, err);
    return vesta_error_set(err, VESTA_ERR_UNSUPPORTED, "tp comm (%s): all-reduce of element type %d", c->ops->name,
                           (int)dt);
}

vesta_status vesta_tp_comm_all_gather(vesta_tp_comm *c, const float *in, size_t n, float *out, vesta_error *err)
{
    vesta_status st = check(c, in, n, err);
    if (st == VESTA_OK)
        st = check(c, out, n, err);
    return st != VESTA_OK ? st : c->ops->all_gather(c, in, n, out, err);
}

vesta_status vesta_tp_comm_broadcast(vesta_tp_comm *c, void *buf, size_t bytes, int root, int timeout_ms,
                                     vesta_error *err)
{
    vesta_status st = check(c, buf, bytes, err);
    if (st != VESTA_OK)
        return st;
    if (root < 0 || root >= c->size)
        return vesta_error_set(err, VESTA_ERR_INVALID_ARG, "tp comm: broadcast root %d outside [0, %d)", root,
                               c->size);
    return c->ops->broadcast(c, buf, bytes, root, timeout_ms, err);
}

void vesta_tp_comm_release(vesta_tp_comm *c)
{
    if (c)
        c->ops->release(c);
}
