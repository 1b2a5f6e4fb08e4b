// SPDX-License-Identifier: Apache-2.0
/*
 * The pool's core: lifecycle, the template registry, acquire and release,
 * capacity, configuration and status.  Refill, reaping and health checks run
 * on the threads in refill.c; the agent conversation is in sandbox.c.
 */
#include "pool/pool-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

/* How long an acquire waits for pending destroys to free capacity. */
#define POOL_REAP_WAIT_MS 10000

static uint64_t default_budget_mb(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || psz <= 0)
        return 1024;
    return (uint64_t)pages * (uint64_t)psz / (1024 * 1024) / 2;
}

int pool_new(const pool_config_t *cfg, pool_t **out, thaw_err_t *err)
{
    if (!cfg->store_dir || !cfg->store_dir[0])
        return thaw_err_set(err, EINVAL, "pool: no store directory");
    pool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return thaw_err_set(err, ENOMEM, "pool: out of memory");
    if (snprintf(p->store_dir, sizeof(p->store_dir), "%s", cfg->store_dir) >=
        (int)sizeof(p->store_dir)) {
        free(p);
        return thaw_err_set(err, ENAMETOOLONG, "store directory name too long");
    }
    p->memory_budget_mb = cfg->memory_budget_mb ? cfg->memory_budget_mb : default_budget_mb();
    p->max_sandboxes = cfg->max_sandboxes ? cfg->max_sandboxes : 256;
    p->refill_threads = cfg->refill_threads ? cfg->refill_threads : 2;
    p->health_interval_ms = cfg->health_interval_ms ? cfg->health_interval_ms : 500;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work_cv, &ca);
    pthread_cond_init(&p->ready_cv, &ca);
    pthread_cond_init(&p->reap_cv, &ca);
    pthread_cond_init(&p->health_cv, &ca);
    pthread_condattr_destroy(&ca);
    int r = pool__store_init(p, err);
    if (r == 0)
        r = pool__threads_start(p, err);
    if (r < 0) {
        pool_free(p);
        return r;
    }
    *out = p;
    return 0;
}

void pool_free(pool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    /* Ready sandboxes go to the reaper; deleting templates drops the list's refs. */
    for (pool__tpl_t *t = p->tpls, *nx; t; t = nx) {
        nx = t->next;
        while (t->ready_head) {
            pool_sandbox_t *sb = t->ready_head;
            t->ready_head = sb->next;
            t->ready--;
            pool__reap_locked(p, sb);
        }
        t->ready_tail = NULL;
        t->state = POOL_TPL_DELETED;
        t->next = NULL;
        pool__tpl_unref(p, t);
    }
    p->tpls = NULL;
    pthread_mutex_unlock(&p->mu);
    /* Workers finish the creates under way; the reaper drains its queue last. */
    pool__threads_stop(p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->ready_cv);
    pthread_cond_destroy(&p->reap_cv);
    pthread_cond_destroy(&p->health_cv);
    free(p);
}

int pool_add_backend(pool_t *p, const pool_backend_ops_t *ops, void *ctx)
{
    if (p->nbackends >= POOL_MAX_BACKENDS)
        return -ENOSPC;
    p->backends[p->nbackends].ops = ops;
    p->backends[p->nbackends].ctx = ctx;
    p->nbackends++;
    return 0;
}

static int find_backend(pool_t *p, const char *tier)
{
    for (unsigned i = 0; i < p->nbackends; i++)
        if (!strcmp(p->backends[i].ops->tier, tier))
            return (int)i;
    return -1;
}

int pool_tier_available(pool_t *p, const char *tier, char *why, size_t whylen)
{
    int i = find_backend(p, tier);
    if (i < 0) {
        snprintf(why, whylen, "tier '%s' is not built into this thawd", tier);
        return -ENOENT;
    }
    why[0] = '\0';
    return p->backends[i].ops->available(p->backends[i].ctx, why, whylen) == 0;
}

const char *pool_tier_name(pool_t *p, unsigned idx)
{
    return idx < p->nbackends ? p->backends[idx].ops->tier : NULL;
}

bool pool_store_is_new(pool_t *p)
{
    return p->store_new;
}

/* Any state: used to reserve names. */
static pool__tpl_t *tpl_find_any(pool_t *p, const char *name)
{
    for (pool__tpl_t *t = p->tpls; t; t = t->next)
        if (!strcmp(t->def.name, name))
            return t;
    return NULL;
}

pool__tpl_t *pool__tpl_find(pool_t *p, const char *name)
{
    pool__tpl_t *t = tpl_find_any(p, name);
    return t && t->state == POOL_TPL_READY ? t : NULL;
}

void pool__tpl_unref(pool_t *p, pool__tpl_t *t)
{
    (void)p;
    if (--t->refs > 0)
        return;
    /* Last user: no sandbox of it exists any more. */
    if (t->bstate)
        t->ops->tpl_close(t->bctx, t->bstate);
    free(t);
}

static void tpl_unlink(pool_t *p, pool__tpl_t *t)
{
    for (pool__tpl_t **pp = &p->tpls; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            t->next = NULL;
            return;
        }
}

static pool__tpl_t *tpl_alloc(pool_t *p, const pool_tpl_def_t *def, int bi)
{
    pool__tpl_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->def = *def;
    t->ops = p->backends[bi].ops;
    t->bctx = p->backends[bi].ctx;
    t->refs = 1;
    t->state = POOL_TPL_PREPARING;
    thaw_hist_init(&t->acquire_hit);
    thaw_hist_init(&t->acquire_miss);
    thaw_hist_init(&t->restore);
    thaw_hist_init(&t->exec);
    pool__store_tpl_dir(p, def->name, t->dir, sizeof(t->dir));
    return t;
}

static int check_tier(pool_t *p, const char *tier, int *bi, thaw_err_t *err)
{
    char why[256];
    *bi = find_backend(p, tier);
    if (*bi < 0)
        return thaw_err_set(err, ENOTSUP, "tier '%s' is not built into this thawd", tier);
    if (p->backends[*bi].ops->available(p->backends[*bi].ctx, why, sizeof(why)) != 0)
        return thaw_err_set(err, ENOTSUP, "tier '%s' is unavailable here: %s", tier, why);
    return 0;
}

int pool_template_create(pool_t *p, const pool_tpl_def_t *def, pool_progress_fn progress, void *pud,
                         thaw_err_t *err)
{
    int r = pool_tpl_def_validate(def, err);
    if (r < 0)
        return r;
    int bi;
    r = check_tier(p, def->tier, &bi, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&p->mu);
    if (tpl_find_any(p, def->name)) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, EEXIST, "template '%s' already exists", def->name);
    }
    pool__tpl_t *t = tpl_alloc(p, def, bi);
    if (!t) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, ENOMEM, "out of memory");
    }
    t->next = p->tpls; /* reserves the name while the backend prepares */
    p->tpls = t;
    pthread_mutex_unlock(&p->mu);

    uint64_t t0 = thaw_now_ns();
    if (progress)
        progress(pud, "prepare", t->def.tier);
    pool__store_remove(p, def->name); /* a leftover of a crashed create */
    char dir[POOL_PATH_MAX];
    pool__store_tpl_dir(p, def->name, dir, sizeof(dir));
    r = pool__store_mkdir(p, def->name, err);
    if (r == 0) {
        r = t->ops->tpl_prepare(t->bctx, &t->def, dir, progress, pud, &t->bstate, err);
        if (r < 0)
            thaw_err_wrap(err, "template '%s': %s", def->name, t->def.tier);
    }
    if (r == 0)
        r = pool__store_save(p, def, err);

    pthread_mutex_lock(&p->mu);
    if (r < 0) {
        tpl_unlink(p, t);
        t->state = POOL_TPL_DELETED;
        pool__tpl_unref(p, t);
        pthread_mutex_unlock(&p->mu);
        pool__store_remove(p, def->name);
        thaw_warn("pool", "template_create_failed", "template=%s msg=\"%s\"", def->name,
                  thaw_err_msg(err));
        return r;
    }
    t->state = POOL_TPL_READY;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    if (progress)
        progress(pud, "ready", NULL);
    thaw_info("pool", "template_created", "template=%s tier=%s ms=%llu", def->name, def->tier,
              (unsigned long long)((thaw_now_ns() - t0) / 1000000));
    return 0;
}

int pool_load(pool_t *p, thaw_err_t *err)
{
    char **names = NULL;
    size_t n = 0;
    int r = pool__store_list(p, &names, &n, err);
    if (r < 0)
        return r;
    int loaded = 0;
    for (size_t i = 0; i < n; i++) {
        thaw_err_t e = {0};
        pool_tpl_def_t def;
        int bi = -1;
        r = pool__store_read_def(p, names[i], &def, &e);
        if (r == 0)
            r = check_tier(p, def.tier, &bi, &e);
        pool__tpl_t *t = NULL;
        if (r == 0) {
            pthread_mutex_lock(&p->mu);
            if (tpl_find_any(p, def.name))
                r = thaw_err_set(&e, EEXIST, "already loaded");
            else if (!(t = tpl_alloc(p, &def, bi)))
                r = thaw_err_set(&e, ENOMEM, "out of memory");
            pthread_mutex_unlock(&p->mu);
        }
        if (r == 0)
            r = t->ops->tpl_open(t->bctx, &t->def, t->dir, &t->bstate, &e);
        if (r < 0) {
            free(t);
            thaw_warn("pool", "template_load_failed", "template=%s msg=\"%s\"", names[i],
                      thaw_err_msg(&e));
            continue;
        }
        pthread_mutex_lock(&p->mu);
        t->state = POOL_TPL_READY;
        t->next = p->tpls;
        p->tpls = t;
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        thaw_info("pool", "template_loaded", "template=%s tier=%s", def.name, def.tier);
        loaded++;
    }
    pool_names_free(names, n);
    return loaded;
}

int pool_template_delete(pool_t *p, const char *name, thaw_err_t *err)
{
    pthread_mutex_lock(&p->mu);
    pool__tpl_t *t = pool__tpl_find(p, name);
    if (!t) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, ENOENT, "template '%s' not found", name);
    }
    tpl_unlink(p, t);
    t->state = POOL_TPL_DELETED;
    while (t->ready_head) {
        pool_sandbox_t *sb = t->ready_head;
        t->ready_head = sb->next;
        t->ready--;
        pool__reap_locked(p, sb);
    }
    t->ready_tail = NULL;
    pool__tpl_unref(p, t);
    pthread_mutex_unlock(&p->mu);
    int r = pool__store_remove(p, name);
    if (r < 0)
        return thaw_err_sys(err, -r, "template '%s': remove from store", name);
    thaw_info("pool", "template_deleted", "template=%s", name);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int pool_template_names(pool_t *p, char ***names, size_t *n)
{
    pthread_mutex_lock(&p->mu);
    size_t cnt = 0;
    for (pool__tpl_t *t = p->tpls; t; t = t->next)
        cnt += t->state == POOL_TPL_READY;
    char **out = calloc(cnt + 1, sizeof(char *));
    size_t k = 0;
    for (pool__tpl_t *t = p->tpls; out && t; t = t->next)
        if (t->state == POOL_TPL_READY && (out[k] = strdup(t->def.name)))
            k++;
    pthread_mutex_unlock(&p->mu);
    if (!out)
        return -ENOMEM;
    qsort(out, k, sizeof(char *), cmp_str);
    *names = out;
    *n = k;
    return (int)k;
}

void pool_names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

unsigned pool__tpl_target(const pool__tpl_t *t, uint64_t now)
{
    if (t->state != POOL_TPL_READY)
        return 0;
    unsigned target = t->def.min_ready;
    if (t->prewarm && now < t->prewarm_until_ns && t->prewarm > target)
        target = t->prewarm;
    /* A prewarm was checked against max_ready when it began; pool.configure
     * may have lowered max_ready since, and the policy wins. */
    if (target > t->def.max_ready)
        target = t->def.max_ready;
    return target;
}

int pool_template_status(pool_t *p, const char *name, pool_tpl_status_t *st, thaw_err_t *err)
{
    pthread_mutex_lock(&p->mu);
    pool__tpl_t *t = pool__tpl_find(p, name);
    if (!t) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, ENOENT, "template '%s' not found", name);
    }
    uint64_t now = thaw_now_ns();
    st->def = t->def;
    st->ready = t->ready + t->checking; /* being pinged is still ready */
    st->in_use = t->in_use;
    st->creating = t->creating;
    st->target = pool__tpl_target(t, now);
    bool pw = t->prewarm && now < t->prewarm_until_ns;
    st->prewarm = pw ? t->prewarm : 0;
    st->prewarm_left_ms = pw ? (t->prewarm_until_ns - now) / 1000000 : 0;
    st->hits = t->hits;
    st->misses = t->misses;
    st->created = t->created;
    st->destroyed = t->destroyed;
    st->died = t->died;
    st->create_failures = t->create_failures;
    memcpy(st->last_error, t->last_error, sizeof(st->last_error));
    st->acquire_hit = t->acquire_hit;
    st->acquire_miss = t->acquire_miss;
    st->restore = t->restore;
    st->exec = t->exec;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void pool_totals(pool_t *p, pool_totals_t *tt)
{
    memset(tt, 0, sizeof(*tt));
    thaw_hist_init(&tt->acquire_hit);
    thaw_hist_init(&tt->acquire_miss);
    thaw_hist_init(&tt->restore);
    thaw_hist_init(&tt->exec);
    pthread_mutex_lock(&p->mu);
    tt->live = p->live;
    tt->max_sandboxes = p->max_sandboxes;
    tt->memory_mb = p->memory_mb;
    tt->memory_budget_mb = p->memory_budget_mb;
    tt->capacity_refusals = p->capacity_refusals;
    for (pool__tpl_t *t = p->tpls; t; t = t->next) {
        thaw_hist_merge(&tt->acquire_hit, &t->acquire_hit);
        thaw_hist_merge(&tt->acquire_miss, &t->acquire_miss);
        thaw_hist_merge(&tt->restore, &t->restore);
        thaw_hist_merge(&tt->exec, &t->exec);
        tt->hits += t->hits;
        tt->misses += t->misses;
        tt->died += t->died;
    }
    pthread_mutex_unlock(&p->mu);
}

int pool_configure(pool_t *p, const char *name, unsigned min_ready, unsigned max_ready,
                   unsigned max_total, thaw_err_t *err)
{
    pthread_mutex_lock(&p->mu);
    pool__tpl_t *t = pool__tpl_find(p, name);
    if (!t) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, ENOENT, "template '%s' not found", name);
    }
    pool_tpl_def_t def = t->def;
    def.min_ready = min_ready;
    def.max_ready = max_ready;
    def.max_total = max_total;
    int r = pool_tpl_def_validate(&def, err);
    if (r == 0)
        r = pool__store_save(p, &def, err);
    if (r == 0) {
        t->def = def;
        /* Ready sandboxes past the new ceiling are surplus: destroy them. */
        while (t->ready > def.max_ready && t->ready_head) {
            pool_sandbox_t *sb = t->ready_head;
            t->ready_head = sb->next;
            if (!t->ready_head)
                t->ready_tail = NULL;
            t->ready--;
            pool__reap_locked(p, sb);
        }
        pthread_cond_broadcast(&p->work_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

int pool_prewarm(pool_t *p, const char *name, unsigned count, uint64_t window_ms, uint64_t wait_ms,
                 thaw_err_t *err)
{
    pthread_mutex_lock(&p->mu);
    pool__tpl_t *t = pool__tpl_find(p, name);
    int r = 0;
    if (!t)
        r = thaw_err_set(err, ENOENT, "template '%s' not found", name);
    else if (count > t->def.max_ready)
        r = thaw_err_set(err, EINVAL, "prewarm count %u exceeds the template's max_ready %u", count,
                         t->def.max_ready);
    if (r < 0) {
        pthread_mutex_unlock(&p->mu);
        return r;
    }
    uint64_t now = thaw_now_ns();
    t->prewarm = count;
    t->prewarm_until_ns = now + window_ms * 1000000ull;
    t->retry_after_ns = 0; /* a prewarm is a reason to try again now */
    pthread_cond_broadcast(&p->work_cv);
    thaw_info("pool", "prewarm", "template=%s count=%u window_ms=%llu", name, count,
              (unsigned long long)window_ms);
    if (wait_ms) {
        t->refs++;
        struct timespec dl;
        uint64_t end = now + wait_ms * 1000000ull;
        dl.tv_sec = (time_t)(end / 1000000000ull);
        dl.tv_nsec = (long)(end % 1000000000ull);
        while (t->ready + t->checking < count && t->state == POOL_TPL_READY && !p->stopping) {
            if (pthread_cond_timedwait(&p->ready_cv, &p->mu, &dl) == ETIMEDOUT)
                break;
        }
        if (t->state != POOL_TPL_READY)
            r = thaw_err_set(err, ENOENT, "template '%s' was deleted while prewarming", name);
        else if (t->ready + t->checking < count)
            r = thaw_err_set(err, ETIMEDOUT, "prewarm of '%s': %u of %u ready after %llu ms%s%s",
                             name, t->ready, count, (unsigned long long)wait_ms,
                             t->last_error[0] ? "; last error: " : "", t->last_error);
        pool__tpl_unref(p, t);
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

const char *pool__capacity_check(pool_t *p, const pool__tpl_t *t, char *buf, size_t n)
{
    unsigned total = t->ready + t->creating + t->in_use + t->checking;
    if (total >= t->def.max_total) {
        snprintf(buf, n, "template '%s' has reached its max_total of %u sandboxes", t->def.name,
                 t->def.max_total);
        return buf;
    }
    if (p->live >= p->max_sandboxes) {
        snprintf(buf, n, "the server's cap of %u sandboxes is reached", p->max_sandboxes);
        return buf;
    }
    if (p->memory_mb + t->def.memory_mb > p->memory_budget_mb) {
        snprintf(buf, n,
                 "memory budget exhausted: %llu of %llu MiB in use, template '%s' needs %u MiB",
                 (unsigned long long)p->memory_mb, (unsigned long long)p->memory_budget_mb,
                 t->def.name, t->def.memory_mb);
        return buf;
    }
    return NULL;
}

int pool_acquire(pool_t *p, const char *name, pool_sandbox_t **out, bool *hit, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    pthread_mutex_lock(&p->mu);
    pool__tpl_t *t = pool__tpl_find(p, name);
    if (!t) {
        bool preparing = tpl_find_any(p, name) != NULL;
        pthread_mutex_unlock(&p->mu);
        if (preparing)
            return thaw_err_set(err, EAGAIN, "template '%s' is still being created", name);
        return thaw_err_set(err, ENOENT, "template '%s' not found", name);
    }
    while (t->ready_head) {
        pool_sandbox_t *sb = t->ready_head;
        t->ready_head = sb->next;
        if (!t->ready_head)
            t->ready_tail = NULL;
        t->ready--;
        sb->next = NULL;
        if (!t->ops->alive(t->bctx, sb->bstate)) {
            /* Died while waiting in the pool: never hand it out. */
            t->died++;
            thaw_warn("pool", "sandbox_died", "template=%s pid=%d where=ready", t->def.name,
                      sb->pid);
            pool__reap_locked(p, sb);
            continue;
        }
        t->in_use++;
        t->hits++;
        thaw_hist_add(&t->acquire_hit, thaw_now_ns() - t0);
        pthread_cond_broadcast(&p->work_cv); /* the refill replaces it */
        pthread_mutex_unlock(&p->mu);
        *out = sb;
        *hit = true;
        return 0;
    }
    char why[256];
    /*
     * Sandboxes waiting to be destroyed still count against capacity, but
     * they are on their way out: wait for them (bounded) rather than refuse
     * a caller because of garbage that is about to be collected.
     */
    uint64_t give_up = thaw_now_ns() + POOL_REAP_WAIT_MS * 1000000ull;
    while (pool__capacity_check(p, t, why, sizeof(why)) && p->reaping > 0 &&
           t->state == POOL_TPL_READY && !p->stopping && thaw_now_ns() < give_up) {
        struct timespec dl = {.tv_sec = (time_t)(give_up / 1000000000ull),
                              .tv_nsec = (long)(give_up % 1000000000ull)};
        pthread_cond_timedwait(&p->work_cv, &p->mu, &dl);
    }
    if (t->state != POOL_TPL_READY) {
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, ENOENT, "template '%s' was deleted", name);
    }
    if (pool__capacity_check(p, t, why, sizeof(why))) {
        p->capacity_refusals++;
        pthread_mutex_unlock(&p->mu);
        return thaw_err_set(err, EDQUOT, "capacity: %s", why);
    }
    t->creating++;
    t->refs++;
    p->live++;
    p->memory_mb += t->def.memory_mb;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    pool_sandbox_t *sb = NULL;
    int r = pool__sandbox_make(p, t, &sb, err);

    pthread_mutex_lock(&p->mu);
    t->creating--;
    if (r < 0) {
        t->create_failures++;
        snprintf(t->last_error, sizeof(t->last_error), "%s", thaw_err_msg(err));
        p->live--;
        p->memory_mb -= t->def.memory_mb;
        pool__tpl_unref(p, t);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        return thaw_err_wrap(err, "acquire '%s'", name);
    }
    /* The reference taken above now belongs to the sandbox; the reaper drops it. */
    t->in_use++;
    t->misses++;
    t->created++;
    thaw_hist_add(&t->acquire_miss, thaw_now_ns() - t0);
    pthread_mutex_unlock(&p->mu);
    *out = sb;
    *hit = false;
    return 0;
}

void pool_release(pool_t *p, pool_sandbox_t *sb)
{
    if (!sb)
        return;
    pthread_mutex_lock(&p->mu);
    sb->tpl->in_use--;
    pool__reap_locked(p, sb);
    pthread_mutex_unlock(&p->mu);
}

void pool__reap_locked(pool_t *p, pool_sandbox_t *sb)
{
    p->reaping++;
    sb->next = NULL;
    if (p->reap_tail)
        p->reap_tail->next = sb;
    else
        p->reap_head = sb;
    p->reap_tail = sb;
    pthread_cond_signal(&p->reap_cv);
}

const char *pool_sandbox_template(const pool_sandbox_t *sb)
{
    return sb->tpl->def.name;
}

int pool_sandbox_pid(const pool_sandbox_t *sb)
{
    return sb->pid;
}

uint64_t pool_sandbox_age_ms(const pool_sandbox_t *sb)
{
    return (thaw_now_ns() - sb->created_ns) / 1000000;
}
