// SPDX-License-Identifier: Apache-2.0
/*
 * The pool's background threads:
 *  - refill workers (cfg.refill_threads of them, which bounds how many
 *    sandboxes are made at once) pick the template furthest below its ready
 *    target and make one sandbox for it;
 *  - the reapers (POOL_REAPERS) destroy released and dead sandboxes, so a
 *    release costs the caller nothing and refill is never stuck behind a
 *    teardown;
 *  - the health thread checks ready sandboxes (cheaply every round, with an
 *    agent ping every POOL_PING_EVERY rounds), so one that died or hung
 *    while waiting is removed, counted and replaced before anyone gets it.
 */
#include "pool/pool-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

static struct timespec abs_after_ms(uint64_t ms)
{
    uint64_t t = thaw_now_ns() + ms * 1000000ull;
    return (struct timespec){.tv_sec = (time_t)(t / 1000000000ull),
                             .tv_nsec = (long)(t % 1000000000ull)};
}

/*
 * The template that most needs a sandbox now, or NULL; *wake_ms says when a
 * backoff or prewarm window next changes the answer.  Lock held.
 */
static pool__tpl_t *pick_deficit(pool_t *p, uint64_t *wake_ms)
{
    uint64_t now = thaw_now_ns();
    pool__tpl_t *best = NULL;
    unsigned best_gap = 0;
    *wake_ms = 1000;
    for (pool__tpl_t *t = p->tpls; t; t = t->next) {
        if (t->prewarm && now < t->prewarm_until_ns) {
            uint64_t left = (t->prewarm_until_ns - now) / 1000000 + 1;
            if (left < *wake_ms)
                *wake_ms = left;
        }
        unsigned target = pool__tpl_target(t, now);
        unsigned have = t->ready + t->creating + t->checking;
        if (have >= target)
            continue;
        if (now < t->retry_after_ns) {
            uint64_t left = (t->retry_after_ns - now) / 1000000 + 1;
            if (left < *wake_ms)
                *wake_ms = left;
            continue;
        }
        char why[256];
        if (pool__capacity_check(p, t, why, sizeof(why)))
            continue; /* a release or a reap broadcasts work_cv */
        if (target - have > best_gap) {
            best = t;
            best_gap = target - have;
        }
    }
    return best;
}

static void *refill_main(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        uint64_t wake_ms;
        pool__tpl_t *t = pick_deficit(p, &wake_ms);
        if (!t) {
            struct timespec dl = abs_after_ms(wake_ms);
            pthread_cond_timedwait(&p->work_cv, &p->mu, &dl);
            continue;
        }
        t->creating++;
        t->refs++;
        p->live++;
        p->memory_mb += t->def.memory_mb;
        pthread_mutex_unlock(&p->mu);

        thaw_err_t err = {0};
        pool_sandbox_t *sb = NULL;
        int r = pool__sandbox_make(p, t, &sb, &err);

        pthread_mutex_lock(&p->mu);
        t->creating--;
        if (r < 0) {
            t->create_failures++;
            t->fail_streak++;
            unsigned shift = t->fail_streak < 6 ? t->fail_streak : 6;
            t->retry_after_ns = thaw_now_ns() + (50ull << shift) * 1000000ull; /* to 3.2 s */
            snprintf(t->last_error, sizeof(t->last_error), "%s", thaw_err_msg(&err));
            thaw_warn("pool", "refill_failed", "template=%s streak=%u msg=\"%s\"", t->def.name,
                      t->fail_streak, thaw_err_msg(&err));
            p->live--;
            p->memory_mb -= t->def.memory_mb;
            pool__tpl_unref(p, t);
            pthread_cond_broadcast(&p->ready_cv); /* prewarm waiters report the error */
            continue;
        }
        /* The reference taken above now belongs to sb; the reaper drops it. */
        t->fail_streak = 0;
        t->created++;
        /* A sandbox made while pool.configure lowered max_ready is surplus. */
        if (t->state != POOL_TPL_READY || p->stopping ||
            t->ready + t->checking >= t->def.max_ready) {
            pool__reap_locked(p, sb);
            continue;
        }
        if (t->ready_tail)
            t->ready_tail->next = sb;
        else
            t->ready_head = sb;
        t->ready_tail = sb;
        t->ready++;
        pthread_cond_broadcast(&p->ready_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *reaper_main(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        pool_sandbox_t *sb = p->reap_head;
        if (!sb) {
            /* Drain everything before leaving: stop only once the queue is empty. */
            if (p->stopping && p->nworkers == 0)
                break;
            pthread_cond_wait(&p->reap_cv, &p->mu);
            continue;
        }
        p->reap_head = sb->next;
        if (!p->reap_head)
            p->reap_tail = NULL;
        pthread_mutex_unlock(&p->mu);
        pool__tpl_t *t = sb->tpl;
        pool__sandbox_destroy(sb);
        pthread_mutex_lock(&p->mu);
        p->reaping--;
        t->destroyed++;
        p->live--;
        p->memory_mb -= t->def.memory_mb;
        pool__tpl_unref(p, t);
        pthread_cond_broadcast(&p->work_cv); /* capacity came back */
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/*
 * A ready sandbox that has not answered for POOL_PING_EVERY health rounds is
 * taken out of the ready list (counted as `checking`, so neither refill nor
 * capacity miscount it), pinged without the lock, and put back, or removed
 * as dead when its agent no longer answers: a hung guest is caught before a
 * caller is handed it.  Lock held on entry and exit.
 */
#define POOL_PING_EVERY      10
#define POOL_PING_TIMEOUT_MS 2000

static void ping_stale(pool_t *p)
{
    uint64_t stale_ns = (uint64_t)p->health_interval_ms * POOL_PING_EVERY * 1000000ull;
    for (;;) {
        uint64_t now = thaw_now_ns();
        pool__tpl_t *t = NULL;
        pool_sandbox_t *sb = NULL, *prev = NULL;
        for (t = p->tpls; t && !sb; t = t->next) {
            prev = NULL;
            for (pool_sandbox_t *s = t->ready_head; s; prev = s, s = s->next)
                if (now - s->checked_ns >= stale_ns) {
                    sb = s;
                    break;
                }
            if (sb)
                break;
        }
        if (!sb || p->stopping)
            return;
        if (prev)
            prev->next = sb->next;
        else
            t->ready_head = sb->next;
        if (t->ready_tail == sb)
            t->ready_tail = prev;
        sb->next = NULL;
        t->ready--;
        t->checking++;
        pthread_mutex_unlock(&p->mu);
        thaw_err_t err = {0};
        int r = pool__agent_ping(sb->agent, POOL_PING_TIMEOUT_MS, &err);
        pthread_mutex_lock(&p->mu);
        t->checking--;
        if (r < 0 || t->state != POOL_TPL_READY) {
            if (r < 0) {
                t->died++;
                thaw_warn("pool", "sandbox_unresponsive", "template=%s pid=%d msg=\"%s\"",
                          t->def.name, sb->pid, thaw_err_msg(&err));
            }
            pool__reap_locked(p, sb);
            pthread_cond_broadcast(&p->work_cv);
            continue;
        }
        sb->checked_ns = thaw_now_ns();
        if (t->ready_tail)
            t->ready_tail->next = sb;
        else
            t->ready_head = sb;
        t->ready_tail = sb;
        t->ready++;
        pthread_cond_broadcast(&p->ready_cv);
    }
}

static void *health_main(void *arg)
{
    pool_t *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct timespec dl = abs_after_ms(p->health_interval_ms);
        pthread_cond_timedwait(&p->health_cv, &p->mu, &dl);
        if (p->stopping)
            break;
        ping_stale(p);
        for (pool__tpl_t *t = p->tpls; t; t = t->next) {
            pool_sandbox_t **pp = &t->ready_head, *prev = NULL;
            while (*pp) {
                pool_sandbox_t *sb = *pp;
                if (t->ops->alive(t->bctx, sb->bstate)) {
                    prev = sb;
                    pp = &sb->next;
                    continue;
                }
                *pp = sb->next;
                if (t->ready_tail == sb)
                    t->ready_tail = prev;
                t->ready--;
                t->died++;
                thaw_warn("pool", "sandbox_died", "template=%s pid=%d where=ready", t->def.name,
                          sb->pid);
                pool__reap_locked(p, sb);
                pthread_cond_broadcast(&p->work_cv);
            }
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pool__threads_start(pool_t *p, thaw_err_t *err)
{
    p->workers = calloc(p->refill_threads, sizeof(pthread_t));
    if (!p->workers)
        return thaw_err_set(err, ENOMEM, "pool: out of memory");
    int r;
    for (unsigned i = 0; i < POOL_REAPERS; i++) {
        r = pthread_create(&p->reapers[i], NULL, reaper_main, p);
        if (r)
            return thaw_err_sys(err, r, "pool: start reaper thread");
        p->nreapers++;
    }
    r = pthread_create(&p->health, NULL, health_main, p);
    if (r)
        return thaw_err_sys(err, r, "pool: start health thread");
    p->health_started = true;
    for (unsigned i = 0; i < p->refill_threads; i++) {
        r = pthread_create(&p->workers[i], NULL, refill_main, p);
        if (r)
            return thaw_err_sys(err, r, "pool: start refill thread");
        pthread_mutex_lock(&p->mu);
        p->nworkers++;
        pthread_mutex_unlock(&p->mu);
    }
    return 0;
}

void pool__threads_stop(pool_t *p)
{
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_cond_broadcast(&p->ready_cv);
    pthread_cond_broadcast(&p->health_cv);
    unsigned n = p->nworkers;
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(p->workers[i], NULL);
    pthread_mutex_lock(&p->mu);
    p->nworkers = 0; /* the reaper may leave once its queue is empty */
    pthread_cond_broadcast(&p->reap_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->health_started)
        pthread_join(p->health, NULL);
    for (unsigned i = 0; i < p->nreapers; i++)
        pthread_join(p->reapers[i], NULL);
    free(p->workers);
    p->workers = NULL;
}
