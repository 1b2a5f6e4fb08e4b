// SPDX-License-Identifier: Apache-2.0
/*
 * template.tune: try restore configurations on a vm template's snapshot
 * (pool_tune) on a worker thread, reporting each step as a
 * "template.progress" notification (stage "tune"), and answer with the
 * results sorted by the goal, the best first.  Admin only: it writes into
 * the template's store directory and, with apply, changes the template.
 */
#include "rpc/rpc-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct tune_state {
    char name[POOL_NAME_MAX];
    pool_tune_opts_t o;
    const char **argv; /* pointers into req->params */
    pool_tune_result_t *res;
    size_t n;
    bool applied;
    thaw_err_t err;
    int rc;
} tune_state_t;

static void on_progress(void *ud, const char *stage, const char *detail)
{
    rpc_req_t *req = ud;
    tune_state_t *ts = req->state;
    rpc__tpl_progress(req, ts->name, stage, detail);
}

static void tune_work(rpc_req_t *req)
{
    tune_state_t *ts = req->state;
    ts->rc = pool_tune(req->srv->pool, ts->name, &ts->o, on_progress, req, &ts->res, &ts->n,
                       &ts->applied, &ts->err);
}

static json_t *result_json(const pool_tune_result_t *r, bool best)
{
    json_t *o = json_pack(
        "{s:s, s:I, s:i, s:b, s:i, s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:b}", "engine",
        r->engine, "chunk_kib", (json_int_t)(r->chunk_size >> 10), "lz4_level", r->lz4_level,
        "prefetch", r->prefetch, "runs", (int)r->runs, "snapshot_bytes",
        (json_int_t)r->snapshot_bytes, "restore_p50_us", r->restore_p50_ns / 1e3, "restore_p99_us",
        r->restore_p99_ns / 1e3, "answer_p50_us", r->answer_p50_ns / 1e3, "answer_p99_us",
        r->answer_p99_ns / 1e3, "command_p50_us", r->command_p50_ns / 1e3, "faults",
        (json_int_t)r->faults, "rss_kib", (json_int_t)r->rss_kib, "best", best);
    if (o && r->error[0])
        json_object_set_new(o, "error", json_string(r->error));
    return o;
}

static void tune_done(rpc_req_t *req)
{
    static const char *const goals[] = {"latency", "memory", "disk"};
    tune_state_t *ts = req->state;
    if (ts->rc < 0) {
        rpc__req_thaw_err(req, &ts->err);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < ts->n; i++)
            json_array_append_new(arr, result_json(&ts->res[i], i == 0 && !ts->res[0].error[0]));
        req->result = json_pack("{s:s, s:s, s:b, s:o}", "template", ts->name, "goal",
                                goals[ts->o.goal], "applied", ts->applied, "results", arr);
    }
    free(ts->res);
    free(ts->argv);
    free(ts);
    req->state = NULL;
}

/* An optional array of integers in [lo, hi], at most max of them. */
static int int_array(rpc_req_t *req, const char *key, long long lo, long long hi, unsigned max,
                     long long *out, unsigned *n)
{
    json_t *a = json_object_get(req->params, key);
    *n = 0;
    if (!a)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > max)
        return rpc__req_error(req, RPC_E_PARAMS,
                              "Invalid params: '%s' must be an array of at most %u integers", key,
                              max);
    size_t i;
    json_t *v;
    json_array_foreach (a, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
            return rpc__req_error(req, RPC_E_PARAMS,
                                  "Invalid params: '%s'[%zu] must be an integer from %lld to %lld",
                                  key, i, lo, hi);
        out[(*n)++] = json_integer_value(v);
    }
    return 0;
}

void rpc__m_template_tune(rpc_req_t *req)
{
    static const char *const allowed[] = {"name", "engines", "chunk_kib", "lz4",        "prefetch",
                                          "argv", "goal",    "apply",     "iterations", NULL};
    tune_state_t *ts = calloc(1, sizeof(*ts));
    if (!ts) {
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        rpc__req_finish(req);
        return;
    }
    ts->o.prefetch = -1;
    const char *name = NULL, *goal = NULL;
    const char **engines = NULL;
    long long vals[POOL_TUNE_MAX_CHUNKS];
    unsigned nv = 0;
    uint64_t iters = 0;
    bool apply = false, prefetch = false;
    int r = rpc__params_only(req, allowed);
    if (r == 0)
        r = rpc__param_str(req, "name", true, &name);
    if (r == 0)
        snprintf(ts->name, sizeof(ts->name), "%s", name);
    if (r == 0)
        r = rpc__param_strv(req, "engines", false, &engines);
    for (size_t i = 0; r == 0 && engines && engines[i]; i++) {
        if (i >= 3)
            r = rpc__req_error(req, RPC_E_PARAMS, "Invalid params: at most 3 engines");
        else
            ts->o.engines[i] = engines[i];
    }
    if (r == 0)
        r = int_array(req, "chunk_kib", 4, 2048, POOL_TUNE_MAX_CHUNKS, vals, &nv);
    for (unsigned i = 0; r == 0 && i < nv; i++)
        ts->o.chunk_sizes[ts->o.nchunks++] = (uint32_t)vals[i] << 10;
    if (r == 0)
        r = int_array(req, "lz4", -65536, 12, POOL_TUNE_MAX_LEVELS, vals, &nv);
    for (unsigned i = 0; r == 0 && i < nv; i++)
        ts->o.lz4_levels[ts->o.nlevels++] = (int)vals[i];
    if (r == 0 && json_object_get(req->params, "prefetch")) {
        r = rpc__param_bool(req, "prefetch", &prefetch);
        ts->o.prefetch = prefetch;
    }
    if (r == 0)
        r = rpc__param_strv(req, "argv", false, &ts->argv);
    if (r == 0 && ts->argv && !ts->argv[0])
        r = rpc__req_error(req, RPC_E_PARAMS, "Invalid params: 'argv' is empty");
    ts->o.argv = ts->argv;
    if (r == 0)
        r = rpc__param_str(req, "goal", false, &goal);
    if (r == 0 && goal && pool_tune_goal_parse(goal, &ts->o.goal) < 0)
        r = rpc__req_error(req, RPC_E_PARAMS,
                           "Invalid params: 'goal' must be latency, memory or disk");
    if (r == 0)
        r = rpc__param_uint(req, "iterations", false, 100, &iters);
    ts->o.iterations = (unsigned)iters;
    if (r == 0)
        r = rpc__param_bool(req, "apply", &apply);
    ts->o.apply = apply;
    /* engines' strings live in req->params, which outlives the work. */
    free(engines);
    if (r < 0) {
        free(ts->argv);
        free(ts);
        rpc__req_finish(req);
        return;
    }
    req->state = ts;
    rpc__req_defer(req, tune_work, tune_done);
}
