/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The adapters that implement pool/backend.h for each tier, for thawd's
 * main to register with pool_add_backend().  Which of them exist depends on
 * what the build found (sentry/, vmm/ + snapshot/); a tier that is not built
 * or cannot run here is registered as unavailable with the reason, so
 * server.info can say why instead of pretending.
 */
#ifndef THAW_POOL_BACKENDS_H
#define THAW_POOL_BACKENDS_H

#include <stdbool.h>

#include "pool/backend.h"

/* process: the agent as a plain child process, no isolation (tests, development). */
typedef struct pool_process_backend {
    const char *agent_path; /* the thaw-agent binary */
    bool enabled;           /* thawd --enable-process-tier */
} pool_process_backend_t;
extern const pool_backend_ops_t pool_process_ops;

/* A tier that cannot run: every op fails with `why`. */
typedef struct pool_unavailable_backend {
    pool_backend_ops_t ops;
    char why[256];
} pool_unavailable_backend_t;
void pool_unavailable_init(pool_unavailable_backend_t *b, const char *tier, const char *why);

/* sentry: sentry/'s supervisor and sandboxes (built when sentry/ is: THAW_HAVE_SENTRY). */
typedef struct pool_sentry_backend pool_sentry_backend_t;
/*
 * Start the supervisor.  Never fails outright: when the supervisor cannot
 * start (not root, no seccomp user notification ...) the backend reports
 * itself unavailable with that reason.  NULL only when out of memory.
 */
pool_sentry_backend_t *pool_sentry_backend_new(const char *agent_path);
void pool_sentry_backend_free(pool_sentry_backend_t *b);
extern const pool_backend_ops_t pool_sentry_ops;

/* vm: vmm/ microVMs restored from snapshot/ snapshots (built when both are: THAW_HAVE_VM). */
extern const pool_backend_ops_t pool_vm_ops;

#endif
