/* The router's end of the worker protocol transport: a ZeroMQ ROUTER socket served by a
 * dedicated I/O thread.
 *
 * Thread ownership: the link thread alone touches the ZMQ socket (ZMQ sockets are not
 * thread-safe). Incoming frames are handed to the event-loop thread through an h2o multithread
 * receiver (its callback runs on the loop thread, which owns the registry and request table).
 * Outgoing frames are queued by the loop thread under a mutex and the link thread is woken
 * through an eventfd. Nothing is decoded here: frames are moved as bytes. */
#ifndef VR_LINK_ZMQ_LINK_H
#define VR_LINK_ZMQ_LINK_H

#define H2O_USE_LIBUV 0
#include <h2o.h>
#include <h2o/multithread.h>

#include "vesta/error.h"
#include "vesta/proto.h"

typedef struct vr_link vr_link;

/* One received frame, delivered to the receiver's callback (free() it). */
typedef struct vr_link_msg {
    h2o_multithread_message_t super;
    char identity[VESTA_PROTO_MAX_ID + 1];
    size_t len;
    char data[];
} vr_link_msg;

/* Binds `endpoint` ("tcp://127.0.0.1:5557"; a "*" port picks a free one) and starts the thread.
 * Received frames go to `receiver` (already registered on a queue by the caller). NULL + err
 * when the bind fails. */
vr_link *vr_link_create(const char *endpoint, h2o_multithread_receiver_t *receiver,
                        vesta_error *err);
/* The bound endpoint (with the real port). */
const char *vr_link_endpoint(const vr_link *l);
/* Queues a frame for the worker with this identity; copies data. Callable from any thread.
 * VESTA_ERR_NOMEM on allocation failure (nothing queued). */
vesta_status vr_link_send(vr_link *l, const char *identity, const void *data, size_t len);
/* Encodes and queues a message. */
vesta_status vr_link_send_msg(vr_link *l, const char *identity, const vesta_msg *m,
                              vesta_error *err);
/* Stops the thread, closes the socket. NULL is a no-op. */
void vr_link_destroy(vr_link *l);

uint64_t vr_link_dropped(const vr_link *l); /* frames dropped: unknown peer, malformed framing */

#endif
