// SPDX-License-Identifier: Apache-2.0
/*
 * template.create|list|get|delete.  create runs on a worker thread (a vm
 * template boots, warms and snapshots) and reports each stage as a
 * "template.progress" notification carrying the request's id.
 */
#include "rpc/rpc-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

json_t *rpc__tpl_json(const pool_tpl_status_t *st, bool with_hist)
{
    const pool_tpl_def_t *d = &st->def;
    json_t *warm = json_array();
    for (unsigned i = 0; i < d->nwarmup; i++)
        json_array_append_new(warm, json_string(d->warmup[i]));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:i, s:i, s:o, s:s, s:b, "
        "s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:I}, "
        "s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
        "name", d->name, "tier", d->tier, "image", d->image, "vcpus", (int)d->vcpus, "memory_mb",
        (int)d->memory_mb, "warmup", warm, "engine", d->engine, "prefetch", d->prefetch != 0,
        "pool", "min_ready", (int)d->min_ready, "max_ready", (int)d->max_ready, "max_total",
        (int)d->max_total, "ready", (int)st->ready, "in_use", (int)st->in_use, "creating",
        (int)st->creating, "target", (int)st->target, "prewarm", (int)st->prewarm,
        "prewarm_left_ms", (json_int_t)st->prewarm_left_ms, "counters", "hits",
        (json_int_t)st->hits, "misses", (json_int_t)st->misses, "created", (json_int_t)st->created,
        "destroyed", (json_int_t)st->destroyed, "died", (json_int_t)st->died, "create_failures",
        (json_int_t)st->create_failures);
    if (!o)
        return NULL;
    if (d->initrd[0])
        json_object_set_new(o, "initrd", json_string(d->initrd));
    if (st->last_error[0])
        json_object_set_new(o, "last_error", json_string(st->last_error));
    if (with_hist)
        json_object_set_new(
            o, "latency",
            json_pack("{s:o, s:o, s:o, s:o}", "acquire_hit", rpc__hist_json(&st->acquire_hit),
                      "acquire_miss", rpc__hist_json(&st->acquire_miss), "restore",
                      rpc__hist_json(&st->restore), "exec", rpc__hist_json(&st->exec)));
    return o;
}

typedef struct create_state {
    pool_tpl_def_t def;
    thaw_err_t err;
    int rc;
} create_state_t;

void rpc__tpl_progress(rpc_req_t *req, const char *tpl, const char *stage, const char *detail)
{
    json_t *p = json_pack("{s:s, s:s}", "template", tpl, "stage", stage);
    if (!p)
        return;
    if (req->id)
        json_object_set(p, "request", req->id);
    if (detail)
        json_object_set_new(p, "detail", json_string(detail));
    rpc__notify(req, "template.progress", p);
}

static void on_progress(void *ud, const char *stage, const char *detail)
{
    rpc_req_t *req = ud;
    create_state_t *cs = req->state;
    rpc__tpl_progress(req, cs->def.name, stage, detail);
}

static void create_work(rpc_req_t *req)
{
    create_state_t *cs = req->state;
    cs->rc = pool_template_create(req->srv->pool, &cs->def, on_progress, req, &cs->err);
}

static void create_done(rpc_req_t *req)
{
    create_state_t *cs = req->state;
    if (cs->rc < 0 && cs->err.code == ENOENT) {
        /* A missing image is a failed create, not "no such template". */
        rpc__req_error(req, RPC_E_SERVER, "%s", cs->err.msg);
    } else if (cs->rc < 0) {
        rpc__req_thaw_err(req, &cs->err);
    } else {
        pool_tpl_status_t *st = malloc(sizeof(*st));
        thaw_err_t err;
        if (st && pool_template_status(req->srv->pool, cs->def.name, st, &err) == 0)
            req->result = rpc__tpl_json(st, false);
        else
            req->result = json_pack("{s:s}", "name", cs->def.name);
        free(st);
    }
    free(cs);
    req->state = NULL;
}

static int copy_str(rpc_req_t *req, const char *key, char *dst, size_t n)
{
    const char *s = NULL;
    if (rpc__param_str(req, key, false, &s) < 0)
        return -1;
    if (!s)
        return 0;
    if (strlen(s) >= n)
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' is longer than %zu bytes",
                              key, n - 1);
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int get_uint(rpc_req_t *req, const char *key, uint64_t max, unsigned *dst)
{
    uint64_t v = *dst;
    if (rpc__param_uint(req, key, false, max, &v) < 0)
        return -1;
    *dst = (unsigned)v;
    return 0;
}

void rpc__m_template_create(rpc_req_t *req)
{
    static const char *const allowed[] = {
        "name",      "tier",      "image",     "initrd", "vcpus",    "memory_mb", "warmup",
        "min_ready", "max_ready", "max_total", "engine", "prefetch", NULL};
    create_state_t *cs = calloc(1, sizeof(*cs));
    if (!cs) {
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        rpc__req_finish(req);
        return;
    }
    pool_tpl_def_init(&cs->def);
    const char **warm = NULL;
    bool prefetch = cs->def.prefetch;
    int r = rpc__params_only(req, allowed);
    if (r == 0 && !json_object_get(req->params, "name"))
        r = rpc__req_error(req, RPC_E_PARAMS, "Invalid params: 'name' is required");
    if (r == 0)
        r = copy_str(req, "name", cs->def.name, sizeof(cs->def.name));
    if (r == 0)
        r = copy_str(req, "tier", cs->def.tier, sizeof(cs->def.tier));
    if (r == 0)
        r = copy_str(req, "image", cs->def.image, sizeof(cs->def.image));
    if (r == 0)
        r = copy_str(req, "initrd", cs->def.initrd, sizeof(cs->def.initrd));
    if (r == 0)
        r = copy_str(req, "engine", cs->def.engine, sizeof(cs->def.engine));
    if (r == 0)
        r = get_uint(req, "vcpus", 64, &cs->def.vcpus);
    if (r == 0)
        r = get_uint(req, "memory_mb", 1024 * 1024, &cs->def.memory_mb);
    if (r == 0)
        r = get_uint(req, "min_ready", 4096, &cs->def.min_ready);
    if (r == 0)
        r = get_uint(req, "max_ready", 4096, &cs->def.max_ready);
    if (r == 0)
        r = get_uint(req, "max_total", 4096, &cs->def.max_total);
    if (r == 0)
        r = rpc__param_bool(req, "prefetch", &prefetch);
    cs->def.prefetch = prefetch;
    if (r == 0)
        r = rpc__param_strv(req, "warmup", false, &warm);
    for (size_t i = 0; r == 0 && warm && warm[i]; i++) {
        if (i >= POOL_WARMUP_MAX)
            r = rpc__req_error(req, RPC_E_PARAMS, "Invalid params: at most %d warmup commands",
                               POOL_WARMUP_MAX);
        else if (strlen(warm[i]) >= POOL_WARMUP_LEN)
            r = rpc__req_error(req, RPC_E_PARAMS,
                               "Invalid params: warmup[%zu] is longer than %d bytes", i,
                               POOL_WARMUP_LEN - 1);
        else
            snprintf(cs->def.warmup[cs->def.nwarmup++], POOL_WARMUP_LEN, "%s", warm[i]);
    }
    free(warm);
    /* Defaults give way to what was asked: max_total 4 alone means max_ready 4. */
    if (!json_object_get(req->params, "max_ready") && cs->def.max_ready > cs->def.max_total)
        cs->def.max_ready = cs->def.max_total;
    if (!json_object_get(req->params, "min_ready") && cs->def.min_ready > cs->def.max_ready)
        cs->def.min_ready = cs->def.max_ready;
    thaw_err_t err = {0};
    if (r == 0 && pool_tpl_def_validate(&cs->def, &err) < 0)
        r = rpc__req_error(req, RPC_E_PARAMS, "Invalid params: %s", err.msg);
    if (r < 0) {
        free(cs);
        rpc__req_finish(req);
        return;
    }
    req->state = cs;
    rpc__req_defer(req, create_work, create_done);
}

void rpc__m_template_list(rpc_req_t *req)
{
    static const char *const allowed[] = {NULL};
    if (rpc__params_only(req, allowed) < 0) {
        rpc__req_finish(req);
        return;
    }
    char **names = NULL;
    size_t n = 0;
    pool_tpl_status_t *st = malloc(sizeof(*st));
    json_t *arr = json_array();
    if (st && pool_template_names(req->srv->pool, &names, &n) >= 0) {
        for (size_t i = 0; i < n; i++) {
            thaw_err_t err;
            if (pool_template_status(req->srv->pool, names[i], st, &err) == 0)
                json_array_append_new(arr, rpc__tpl_json(st, false));
        }
        pool_names_free(names, n);
    }
    free(st);
    req->result = json_pack("{s:o}", "templates", arr);
    rpc__req_finish(req);
}

void rpc__m_template_get(rpc_req_t *req)
{
    static const char *const allowed[] = {"name", NULL};
    const char *name = NULL;
    if (rpc__params_only(req, allowed) == 0 && rpc__param_str(req, "name", true, &name) == 0) {
        pool_tpl_status_t *st = malloc(sizeof(*st));
        thaw_err_t err = {0};
        if (!st)
            rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        else if (pool_template_status(req->srv->pool, name, st, &err) < 0)
            rpc__req_thaw_err(req, &err);
        else
            req->result = rpc__tpl_json(st, true);
        free(st);
    }
    rpc__req_finish(req);
}

typedef struct delete_state {
    char name[POOL_NAME_MAX];
    thaw_err_t err;
    int rc;
} delete_state_t;

static void delete_work(rpc_req_t *req)
{
    delete_state_t *ds = req->state;
    ds->rc = pool_template_delete(req->srv->pool, ds->name, &ds->err);
}

static void delete_done(rpc_req_t *req)
{
    delete_state_t *ds = req->state;
    if (ds->rc < 0)
        rpc__req_thaw_err(req, &ds->err);
    else
        req->result = json_pack("{s:s, s:b}", "name", ds->name, "deleted", 1);
    free(ds);
    req->state = NULL;
}

void rpc__m_template_delete(rpc_req_t *req)
{
    static const char *const allowed[] = {"name", NULL};
    const char *name = NULL;
    if (rpc__params_only(req, allowed) < 0 || rpc__param_str(req, "name", true, &name) < 0) {
        rpc__req_finish(req);
        return;
    }
    delete_state_t *ds = calloc(1, sizeof(*ds));
    if (!ds) {
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        rpc__req_finish(req);
        return;
    }
    snprintf(ds->name, sizeof(ds->name), "%s", name);
    req->state = ds;
    rpc__req_defer(req, delete_work, delete_done);
}
