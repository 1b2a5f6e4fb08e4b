/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pool/'s own structures, shared by its files and by nobody else.
 *
 * Locking: one mutex per pool guards the template list, every queue and
 * every counter.  It is never held across a backend create/destroy or an
 * agent round trip; those run with a reservation taken under the lock
 * (creating++, live++, memory), so capacity checks stay exact.
 */
#ifndef THAW_POOL_INTERNAL_H
#define THAW_POOL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "pool/pool.h"

#define POOL_MAX_BACKENDS 4
#define POOL_REAPERS      2 /* destroys run in parallel with creates */

typedef struct pool__agent pool__agent_t;

typedef enum pool__tpl_state {
    POOL_TPL_PREPARING, /* name reserved, backend preparing: not usable yet */
    POOL_TPL_READY,
    POOL_TPL_DELETED, /* out of the list; lives on while sandboxes hold it */
} pool__tpl_state_t;

typedef struct pool__tpl {
    pool_tpl_def_t def;
    const pool_backend_ops_t *ops;
    void *bctx;
    void *bstate; /* backend template handle (NULL until prepared) */
    char dir[POOL_PATH_MAX];
    pool__tpl_state_t state;
    unsigned refs; /* the list's reference + one per sandbox + transient users */

    pool_sandbox_t *ready_head, *ready_tail;
    unsigned ready, in_use, creating;
    unsigned checking; /* ready ones out of the list for a ping */
    unsigned prewarm;
    uint64_t prewarm_until_ns;
    uint64_t retry_after_ns; /* refill backs off after a failed create */
    unsigned fail_streak;

    uint64_t hits, misses, created, destroyed, died, create_failures;
    char last_error[THAW_ERR_MSG_MAX];
    thaw_hist_t acquire_hit, acquire_miss, restore, exec;
    struct pool__tpl *next;
} pool__tpl_t;

struct pool_sandbox {
    pool__tpl_t *tpl;
    void *bstate;
    pool__agent_t *agent;
    int pid;
    uint64_t created_ns;
    uint64_t checked_ns; /* last time the agent answered a ping (or was made) */
    pool_sandbox_t *next;
};

struct pool {
    char store_dir[POOL_PATH_MAX];
    uint64_t memory_budget_mb;
    unsigned max_sandboxes;
    unsigned refill_threads;
    unsigned health_interval_ms;
    bool store_new;

    struct {
        const pool_backend_ops_t *ops;
        void *ctx;
    } backends[POOL_MAX_BACKENDS];
    unsigned nbackends;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;   /* refill workers: a deficit may exist */
    pthread_cond_t ready_cv;  /* a sandbox became ready (prewarm waiters) */
    pthread_cond_t reap_cv;   /* the destroy queue has work */
    pthread_cond_t health_cv; /* wakes the health thread early at shutdown */
    bool stopping;

    pool__tpl_t *tpls;
    pool_sandbox_t *reap_head, *reap_tail; /* released or dead: destroyed by the reapers */
    unsigned reaping;                      /* queued + being destroyed */
    unsigned live;
    uint64_t memory_mb;
    uint64_t capacity_refusals;

    pthread_t *workers;
    unsigned nworkers;
    pthread_t reapers[POOL_REAPERS], health;
    unsigned nreapers;
    bool health_started;
};

/* A caller's cancellation token (cancel.c). */
struct pool_cancel {
    pthread_mutex_t mu; /* guards agent */
    atomic_bool cancelled;
    pool__agent_t *agent; /* the agent an exec carrying this token waits on, or NULL */
};

/* tpldef.c */
int pool__name_valid(const char *name);
int pool__tpl_def_write(FILE *f, const pool_tpl_def_t *def);
int pool__tpl_def_read(FILE *f, const char *fname, pool_tpl_def_t *def, thaw_err_t *err);

/* store.c */
int pool__store_init(pool_t *p, thaw_err_t *err);
int pool__store_tpl_dir(pool_t *p, const char *name, char *out, size_t n);
int pool__store_mkdir(pool_t *p, const char *name, thaw_err_t *err);
int pool__store_save(pool_t *p, const pool_tpl_def_t *def, thaw_err_t *err);
int pool__store_remove(pool_t *p, const char *name);
int pool__store_read_def(pool_t *p, const char *name, pool_tpl_def_t *def, thaw_err_t *err);
int pool__store_list(pool_t *p, char ***names, size_t *n, thaw_err_t *err);

/* pool.c */
pool__tpl_t *pool__tpl_find(pool_t *p, const char *name); /* READY ones; lock held */
void pool__tpl_unref(pool_t *p, pool__tpl_t *t);          /* lock held */
void pool__reap_locked(pool_t *p, pool_sandbox_t *sb);    /* queue for destroy */
unsigned pool__tpl_target(const pool__tpl_t *t, uint64_t now);
/* Why the pool cannot hold one more sandbox of t, or NULL if it can; lock held. */
const char *pool__capacity_check(pool_t *p, const pool__tpl_t *t, char *buf, size_t n);

/* refill.c */
int pool__threads_start(pool_t *p, thaw_err_t *err);
void pool__threads_stop(pool_t *p);
/* Make one sandbox of t (backend create + agent hello + thaw); no lock held. */
int pool__sandbox_make(pool_t *p, pool__tpl_t *t, pool_sandbox_t **out, thaw_err_t *err);
/* When the sandbox is no longer alive, wrap err with "the sandbox died" and
 * the backend's reason and return -errno; return 0 while it is alive. */
int pool__sandbox_wrap_death(pool__tpl_t *t, void *bstate, thaw_err_t *err);
/* Destroy one sandbox; no lock held. */
void pool__sandbox_destroy(pool_sandbox_t *sb);

/* cancel.c: an exec registers the agent it waits on (t may be NULL): enter
 * fails with -ECANCELED once the token is cancelled; leave before the
 * sandbox can be destroyed. */
int pool__cancel_enter(pool_cancel_t *t, pool__agent_t *a);
void pool__cancel_leave(pool_cancel_t *t);

/* agent.c: the pool's view of agent_client (guest/agent_client.h). */
/* hello: wait for the agent's HELLO first (false for restored sandboxes). */
int pool__agent_open(int fd, bool hello, uint32_t timeout_ms, pool__agent_t **out, thaw_err_t *err);
void pool__agent_close(pool__agent_t *a);
int pool__agent_exec(pool__agent_t *a, const pool_exec_req_t *req, pool_exec_result_t *res,
                     thaw_err_t *err);
int pool__agent_put(pool__agent_t *a, const char *path, uint32_t mode, const void *data, size_t len,
                    thaw_err_t *err);
/* Wake threads waiting on a's client so they see a cancel (never blocks on I/O). */
void pool__agent_wake(pool__agent_t *a);
int pool__agent_ping(pool__agent_t *a, uint32_t timeout_ms, thaw_err_t *err);
int pool__agent_get(pool__agent_t *a, const char *path, size_t max, void **data, size_t *len,
                    thaw_err_t *err);

#endif
