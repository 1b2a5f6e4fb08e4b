// SPDX-License-Identifier: Apache-2.0
/*
 * pool.configure, pool.prewarm and pool.status.  configure writes the store
 * and prewarm may wait for sandboxes, so both run on worker threads.
 */
#include "rpc/rpc-internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct pool_state {
    char name[POOL_NAME_MAX];
    uint64_t min_ready, max_ready, max_total; /* configure */
    uint64_t count, window_ms, wait_ms;       /* prewarm */
    thaw_err_t err;
    int rc;
} pool_state_t;

static void pool_done(rpc_req_t *req)
{
    pool_state_t *ps = req->state;
    if (ps->rc < 0) {
        rpc__req_thaw_err(req, &ps->err);
    } else {
        pool_tpl_status_t *st = malloc(sizeof(*st));
        thaw_err_t err;
        if (st && pool_template_status(req->srv->pool, ps->name, st, &err) == 0) {
            json_t *t = rpc__tpl_json(st, false);
            json_t *pool = json_object_get(t, "pool");
            if (pool) {
                req->result = json_incref(pool);
                json_object_set_new(req->result, "name", json_string(ps->name));
            }
            json_decref(t);
        }
        free(st);
        if (!req->result)
            req->result = json_pack("{s:s}", "name", ps->name);
    }
    free(ps);
    req->state = NULL;
}

/* Parse "name" and look the template up; fills ps defaults from its status. */
static pool_state_t *pool_state_new(rpc_req_t *req, const char *const *allowed)
{
    const char *name = NULL;
    if (rpc__params_only(req, allowed) < 0 || rpc__param_str(req, "name", true, &name) < 0)
        return NULL;
    pool_state_t *ps = calloc(1, sizeof(*ps));
    pool_tpl_status_t *st = malloc(sizeof(*st));
    thaw_err_t err = {0};
    if (!ps || !st) {
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
    } else if (pool_template_status(req->srv->pool, name, st, &err) < 0) {
        rpc__req_thaw_err(req, &err);
    } else {
        snprintf(ps->name, sizeof(ps->name), "%s", name);
        ps->min_ready = st->def.min_ready;
        ps->max_ready = st->def.max_ready;
        ps->max_total = st->def.max_total;
        free(st);
        return ps;
    }
    free(ps);
    free(st);
    return NULL;
}

static void configure_work(rpc_req_t *req)
{
    pool_state_t *ps = req->state;
    ps->rc = pool_configure(req->srv->pool, ps->name, (unsigned)ps->min_ready,
                            (unsigned)ps->max_ready, (unsigned)ps->max_total, &ps->err);
}

void rpc__m_pool_configure(rpc_req_t *req)
{
    static const char *const allowed[] = {"name", "min_ready", "max_ready", "max_total", NULL};
    pool_state_t *ps = pool_state_new(req, allowed);
    if (!ps || rpc__param_uint(req, "min_ready", false, 4096, &ps->min_ready) < 0 ||
        rpc__param_uint(req, "max_ready", false, 4096, &ps->max_ready) < 0 ||
        rpc__param_uint(req, "max_total", false, 4096, &ps->max_total) < 0) {
        free(ps);
        rpc__req_finish(req);
        return;
    }
    req->state = ps;
    rpc__req_defer(req, configure_work, pool_done);
}

static void prewarm_work(rpc_req_t *req)
{
    pool_state_t *ps = req->state;
    ps->rc = pool_prewarm(req->srv->pool, ps->name, (unsigned)ps->count, ps->window_ms, ps->wait_ms,
                          &ps->err);
}

void rpc__m_pool_prewarm(rpc_req_t *req)
{
    static const char *const allowed[] = {"name", "count", "window_ms", "wait_ms", NULL};
    pool_state_t *ps = pool_state_new(req, allowed);
    if (ps) {
        ps->window_ms = 60000;
        if (rpc__param_uint(req, "count", true, 4096, &ps->count) < 0 ||
            rpc__param_uint(req, "window_ms", false, 24ull * 3600 * 1000, &ps->window_ms) < 0 ||
            rpc__param_uint(req, "wait_ms", false, 600000, &ps->wait_ms) < 0) {
            free(ps);
            ps = NULL;
        }
    }
    if (!ps) {
        rpc__req_finish(req);
        return;
    }
    req->state = ps;
    rpc__req_defer(req, prewarm_work, pool_done);
}

void rpc__m_pool_status(rpc_req_t *req)
{
    static const char *const allowed[] = {"name", NULL};
    const char *name = NULL;
    if (rpc__params_only(req, allowed) < 0 || rpc__param_str(req, "name", false, &name) < 0) {
        rpc__req_finish(req);
        return;
    }
    pool_tpl_status_t *st = malloc(sizeof(*st));
    json_t *pools = json_array();
    char **names = NULL;
    size_t n = 0;
    thaw_err_t err = {0};
    if (!st) {
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
    } else if (name) {
        if (pool_template_status(req->srv->pool, name, st, &err) < 0)
            rpc__req_thaw_err(req, &err);
        else
            json_array_append_new(pools, rpc__tpl_json(st, false));
    } else if (pool_template_names(req->srv->pool, &names, &n) >= 0) {
        for (size_t i = 0; i < n; i++)
            if (pool_template_status(req->srv->pool, names[i], st, &err) == 0)
                json_array_append_new(pools, rpc__tpl_json(st, false));
        pool_names_free(names, n);
    }
    free(st);
    if (!req->ecode) {
        /* A flat view per template: name plus its pool numbers. */
        json_t *out = json_array();
        size_t i;
        json_t *t;
        json_array_foreach (pools, i, t) {
            json_t *p = json_deep_copy(json_object_get(t, "pool"));
            json_object_set(p, "name", json_object_get(t, "name"));
            json_object_set(p, "tier", json_object_get(t, "tier"));
            json_object_set(p, "counters", json_object_get(t, "counters"));
            if (json_object_get(t, "last_error"))
                json_object_set(p, "last_error", json_object_get(t, "last_error"));
            json_array_append_new(out, p);
        }
        req->result = json_pack("{s:o}", "pools", out);
    }
    json_decref(pools);
    rpc__req_finish(req);
}
