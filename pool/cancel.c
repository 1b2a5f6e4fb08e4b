// SPDX-License-Identifier: Apache-2.0
/*
 * Cancellation tokens: how a caller whose own client went away (rpc/: a
 * disconnect) makes the pool work it started end early.  The caller owns a
 * token, passes it with an exec (pool_exec_req_t.cancel) and may cancel it
 * from any thread, an event loop included: pool_cancel never waits on I/O.
 *
 * The one subtle part is lifetime: pool_cancel wakes the agent client an
 * exec is waiting on, and that client dies with its sandbox.  The exec
 * registers its agent under the token's mutex before it waits and
 * unregisters it under the same mutex before it returns, so a cancel either
 * sees no agent or one that cannot be destroyed until the mutex is free.
 */
#include "pool/pool-internal.h"

#include <errno.h>
#include <stdlib.h>

int pool_cancel_new(pool_cancel_t **out)
{
    pool_cancel_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    atomic_init(&t->cancelled, false);
    *out = t;
    return 0;
}

void pool_cancel_free(pool_cancel_t *t)
{
    if (!t)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void pool_cancel(pool_cancel_t *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    atomic_store_explicit(&t->cancelled, true, memory_order_release);
    if (t->agent)
        pool__agent_wake(t->agent);
    pthread_mutex_unlock(&t->mu);
}

bool pool_cancelled(pool_cancel_t *t)
{
    return t && atomic_load_explicit(&t->cancelled, memory_order_acquire);
}

int pool__cancel_enter(pool_cancel_t *t, pool__agent_t *a)
{
    if (!t)
        return 0;
    pthread_mutex_lock(&t->mu);
    bool cancelled = atomic_load_explicit(&t->cancelled, memory_order_acquire);
    if (!cancelled)
        t->agent = a;
    pthread_mutex_unlock(&t->mu);
    return cancelled ? -ECANCELED : 0;
}

void pool__cancel_leave(pool_cancel_t *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    t->agent = NULL;
    pthread_mutex_unlock(&t->mu);
}
