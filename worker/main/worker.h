/* The worker process. Two threads, each socket owned by exactly one of them (ZeroMQ sockets are
 * not thread-safe):
 *
 * - engine thread (the caller of vesta_worker_run): owns the runner (engine or simulator), the
 *   request table and the engine end of an inproc PAIR socket. It runs steps back to back while
 *   there is work, handles the requests the I/O thread hands it between steps (so an ABORT lands
 *   within one step), encodes TOKENS / ERROR frames and batches KV events, and blocks in zmq_poll
 *   on its PAIR socket when idle. After every loop turn it publishes a load snapshot (engine
 *   stats, draining, when it last made progress while it had work) under a mutex.
 * - I/O thread (io_main in worker.c): owns the DEALER socket to the router and the other end of
 *   the PAIR. It sends REGISTER / HEARTBEAT on its own timer, whatever the engine is doing (a
 *   CPU step can take many seconds), from the snapshot; handles REGISTERED / REREGISTER; passes
 *   GENERATE / ABORT / DRAIN / SHUTDOWN / ERROR to the engine thread (a heap vesta_msg whose
 *   ownership moves with it); forwards the engine's frames to the router; numbers KV_EVENTS
 *   (it owns kv_events seq, which restarts with every REGISTER it sends); sends the last
 *   HEARTBEAT and GOODBYE when the engine thread says it is done.
 *
 * The only shared state is the load snapshot (mutex) and the read-only config / runner limits. */
#ifndef VESTA_WORKER_H
#define VESTA_WORKER_H

#include <signal.h>

#include "runner.h"
#include "vesta/config.h"

/* Runs until DRAIN / SHUTDOWN from the router or *stop becomes nonzero (SIGTERM/SIGINT: drain).
 * Takes ownership of r. Returns 0 after a clean exit, 1 on a setup failure. Blocks SIGTERM and
 * SIGINT in the I/O thread so that they interrupt the engine thread's zmq_poll. */
int vesta_worker_run(const vesta_config *cfg, runner *r, volatile sig_atomic_t *stop);

#endif
