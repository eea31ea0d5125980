/* h2o server set-up and the event loop (router.h describes thread ownership). */
#ifndef VR_HTTP_SERVER_H
#define VR_HTTP_SERVER_H

#include "router.h"

/* Binds the ZMQ endpoint and the HTTP listener, starts the link thread and the tick timer.
 * Errors name what failed (address, port). The caller runs h2o_evloop_run on r->ctx.loop. */
vesta_status vr_server_start(vr_router *r, vesta_error *err);
/* Stops the link thread and frees the frames it had queued. */
void vr_server_stop(vr_router *r);

#endif
