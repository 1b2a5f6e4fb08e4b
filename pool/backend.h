/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox backend ops table: what pool/ needs from an isolation tier, and
 * nothing more, so pool/ never includes KVM or seccomp headers.  Every tier
 * ends in the same place: a sandbox whose agent answers on a channel
 * descriptor.  exec, file put/get and thaw then go through the agent client
 * for every tier alike (pool/sandbox.c), so a backend only has to make,
 * check and unmake sandboxes, plus prepare and tear down a template.
 *
 * Adapters live beside this header: backend-sentry.c (sentry/),
 * backend-vm.c (vmm/ + snapshot/), backend-process.c (the agent as a plain
 * child process: no isolation, for tests and development only).
 *
 * Threading: every op may be called from any pool worker thread, several at
 * once for different sandboxes; a backend protects its own shared state.
 */
#ifndef THAW_POOL_BACKEND_H
#define THAW_POOL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define POOL_NAME_MAX   64
#define POOL_PATH_MAX   1024
#define POOL_WARMUP_MAX 8
#define POOL_WARMUP_LEN 1024
#define POOL_ENGINE_MAX 16

/* A template's definition: what the user asked for; persisted in the store. */
typedef struct pool_tpl_def {
    char name[POOL_NAME_MAX];
    char tier[16];              /* "vm", "sentry" or "process" */
    char image[POOL_PATH_MAX];  /* vm: kernel; sentry: root dir ("" = built-in) */
    char initrd[POOL_PATH_MAX]; /* vm only */
    unsigned vcpus;
    unsigned memory_mb; /* counted against the host memory budget */
    unsigned nwarmup;
    char warmup[POOL_WARMUP_MAX][POOL_WARMUP_LEN]; /* shell commands run once */
    unsigned min_ready, max_ready, max_total;
    char engine[POOL_ENGINE_MAX]; /* vm restore engine: eager|lazy|shared */
    int prefetch;                 /* vm: prefetch the recorded working set */
} pool_tpl_def_t;

/* Progress while a template is prepared (boot, warm-up, snapshot, ...). */
typedef void (*pool_progress_fn)(void *ud, const char *stage, const char *detail);

typedef struct pool_backend_ops {
    const char *tier;
    /*
     * Sandboxes are restored from a snapshot taken after the agent's hello:
     * a new channel gets no hello, so the pool's first word is THAW and its
     * answer proves the agent is there.
     */
    bool restores;
    /*
     * 0 when the tier can run here; otherwise a negative errno and `why`
     * holds a sentence a user can act on ("no /dev/kvm", ...).
     */
    int (*available)(void *ctx, char *why, size_t whylen);
    /*
     * Build the template's state under `dir` (a directory in the store that
     * pool/ created and owns): vm boots, warms, quiesces and snapshots;
     * sentry records the spec and builds the root.  *tpl_state is the
     * backend's handle, released with tpl_close.
     */
    int (*tpl_prepare)(void *ctx, const pool_tpl_def_t *def, const char *dir,
                       pool_progress_fn progress, void *pud, void **tpl_state, thaw_err_t *err);
    /* Reopen a template prepared by an earlier run (thawd restart). */
    int (*tpl_open)(void *ctx, const pool_tpl_def_t *def, const char *dir, void **tpl_state,
                    thaw_err_t *err);
    void (*tpl_close)(void *ctx, void *tpl_state);
    /*
     * Make one sandbox of the template: create (sentry) or restore (vm).
     * Returns 0 with *sb_state and *agent_fd (the channel to its agent,
     * owned by the caller from now on) or -errno with err filled.
     */
    int (*create)(void *ctx, void *tpl_state, void **sb_state, int *agent_fd, thaw_err_t *err);
    /* Tear a sandbox down and return everything it held.  Never fails. */
    void (*destroy)(void *ctx, void *sb_state);
    /* 1 while the sandbox runs, 0 once it died (cheap: no round trip). */
    int (*alive)(void *ctx, void *sb_state);
    /* Optional: the process id of the sandbox's init, for logs; -1 if none. */
    int (*pid)(void *ctx, void *sb_state);
    /*
     * Optional: why a sandbox that is no longer alive stopped, one line for
     * a user ("internal-error: guest memory: ...: checksum mismatch").
     * Returns 0 with buf filled, or -ENOENT when there is nothing to add.
     */
    int (*exit_detail)(void *ctx, void *sb_state, char *buf, size_t len);
} pool_backend_ops_t;

#endif
