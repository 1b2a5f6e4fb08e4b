// SPDX-License-Identifier: Apache-2.0
/*
 * One sandbox's life as the pool sees it: the backend makes it and hands
 * over the agent's channel; the agent must say hello and apply a thaw
 * (fresh entropy, the wall clock) before the sandbox counts as ready.  exec
 * and file transfer go through the agent whatever the tier, and their
 * latencies feed the template's histograms.
 */
#include "pool/pool-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/cleanup.h"
#include "common/log.h"

/* How long a new sandbox's agent may take to say hello. */
#define POOL_HELLO_TIMEOUT_MS 10000

int pool__sandbox_wrap_death(pool__tpl_t *t, void *bstate, thaw_err_t *err)
{
    if (t->ops->alive(t->bctx, bstate))
        return 0;
    char why[256];
    if (t->ops->exit_detail && t->ops->exit_detail(t->bctx, bstate, why, sizeof(why)) == 0)
        return thaw_err_wrap(err, "the sandbox died (%s)", why);
    return thaw_err_wrap(err, "the sandbox died");
}

int pool__sandbox_make(pool_t *p, pool__tpl_t *t, pool_sandbox_t **out, thaw_err_t *err)
{
    (void)p;
    uint64_t t0 = thaw_now_ns();
    pool_sandbox_t *sb = calloc(1, sizeof(*sb));
    if (!sb)
        return thaw_err_set(err, ENOMEM, "out of memory");
    sb->tpl = t;
    sb->pid = -1;
    _cleanup_close_ int fd = -1;
    int r = t->ops->create(t->bctx, t->bstate, &sb->bstate, &fd, err);
    if (r < 0) {
        free(sb);
        return thaw_err_wrap(err, "create %s sandbox of '%s'", t->def.tier, t->def.name);
    }
    if (t->ops->pid)
        sb->pid = t->ops->pid(t->bctx, sb->bstate);
    r = pool__agent_open(TAKE_FD(fd), !t->ops->restores, POOL_HELLO_TIMEOUT_MS, &sb->agent, err);
    if (r < 0) {
        pool__sandbox_wrap_death(t, sb->bstate, err);
        t->ops->destroy(t->bctx, sb->bstate);
        free(sb);
        return thaw_err_wrap(err, "%s sandbox of '%s': agent", t->def.tier, t->def.name);
    }
    sb->created_ns = sb->checked_ns = thaw_now_ns();
    pthread_mutex_lock(&p->mu);
    thaw_hist_add(&t->restore, sb->created_ns - t0);
    pthread_mutex_unlock(&p->mu);
    thaw_debug("pool", "sandbox_ready", "template=%s pid=%d us=%llu", t->def.name, sb->pid,
               (unsigned long long)((sb->created_ns - t0) / 1000));
    *out = sb;
    return 0;
}

void pool__sandbox_destroy(pool_sandbox_t *sb)
{
    /* Close the channel first: the agent sees EOF while the backend tears down. */
    pool__agent_close(sb->agent);
    sb->tpl->ops->destroy(sb->tpl->bctx, sb->bstate);
    free(sb);
}

int pool_exec(pool_t *p, pool_sandbox_t *sb, const pool_exec_req_t *req, pool_exec_result_t *res,
              thaw_err_t *err)
{
    memset(res, 0, sizeof(*res));
    if (!req->argv || !req->argv[0])
        return thaw_err_set(err, EINVAL, "exec: empty argv");
    uint64_t t0 = thaw_now_ns();
    int r = pool__agent_exec(sb->agent, req, res, err);
    res->duration_ns = thaw_now_ns() - t0;
    if (r < 0) {
        pool_exec_result_free(res);
        int dead = pool__sandbox_wrap_death(sb->tpl, sb->bstate, err);
        if (dead < 0) {
            pthread_mutex_lock(&p->mu);
            sb->tpl->died++;
            pthread_mutex_unlock(&p->mu);
            return dead;
        }
        return r; /* the agent client's message already names the command */
    }
    pthread_mutex_lock(&p->mu);
    thaw_hist_add(&sb->tpl->exec, res->duration_ns);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void pool_exec_result_free(pool_exec_result_t *res)
{
    free(res->out);
    free(res->err_out);
    res->out = res->err_out = NULL;
    res->out_len = res->err_len = 0;
}

int pool_put_file(pool_t *p, pool_sandbox_t *sb, const char *path, uint32_t mode, const void *data,
                  size_t len, thaw_err_t *err)
{
    (void)p;
    int r = pool__agent_put(sb->agent, path, mode, data, len, err);
    return r < 0 ? thaw_err_wrap(err, "put '%s'", path) : 0;
}

int pool_get_file(pool_t *p, pool_sandbox_t *sb, const char *path, size_t max, void **data,
                  size_t *len, thaw_err_t *err)
{
    (void)p;
    int r = pool__agent_get(sb->agent, path, max, data, len, err);
    return r < 0 ? thaw_err_wrap(err, "get '%s'", path) : 0;
}
