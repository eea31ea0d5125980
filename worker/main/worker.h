/* The worker process: one thread owns the runner (engine or simulator) and the ZeroMQ DEALER
 * socket. Between engine steps it drains incoming messages without blocking; when there is
 * nothing to compute it blocks in zmq_poll until a message, a heartbeat or a simulator step is
 * due. So an ABORT lands within one step, and no locking is needed anywhere. */
#ifndef VESTA_WORKER_H
#define VESTA_WORKER_H

#include <signal.h>

#include "runner.h"
#include "vesta/config.h"

/* Runs until DRAIN / SHUTDOWN from the router or *stop becomes nonzero (SIGTERM/SIGINT: drain).
 * Takes ownership of r. Returns 0 after a clean exit, 1 on a setup failure. */
int vesta_worker_run(const vesta_config *cfg, runner *r, volatile sig_atomic_t *stop);

#endif
