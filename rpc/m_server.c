// SPDX-License-Identifier: Apache-2.0
/*
 * server.info, server.stats and server.metrics: what thawd is, which tiers
 * run here (and why not), pool counts and latency histograms, as JSON and
 * as Prometheus text.  Cheap: answered on the loop thread.
 */
#include "rpc/rpc-internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "thaw-config.h"

static const char *const no_params[] = {NULL};

json_t *rpc__hist_json(const thaw_hist_t *h)
{
    /* Microseconds with ns resolution: a hit takes about one. */
    return json_pack(
        "{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "count", (json_int_t)h->count, "mean_us",
        thaw_hist_mean(h) / 1000.0, "min_us", h->count ? (double)h->min / 1000.0 : 0.0, "p50_us",
        (double)thaw_hist_percentile(h, 50) / 1000.0, "p90_us",
        (double)thaw_hist_percentile(h, 90) / 1000.0, "p99_us",
        (double)thaw_hist_percentile(h, 99) / 1000.0, "p999_us",
        (double)thaw_hist_percentile(h, 99.9) / 1000.0, "max_us", (double)h->max / 1000.0);
}

void rpc__m_server_info(rpc_req_t *req)
{
    if (rpc__params_only(req, no_params) < 0) {
        rpc__req_finish(req);
        return;
    }
    rpc_server_t *srv = req->srv;
    json_t *tiers = json_array();
    const char *name;
    for (unsigned i = 0; (name = pool_tier_name(srv->pool, i)); i++) {
        char why[512];
        int ok = pool_tier_available(srv->pool, name, why, sizeof(why));
        json_t *t = json_pack("{s:s, s:b}", "name", name, "available", ok == 1);
        if (ok != 1)
            json_object_set_new(t, "reason", json_string(why));
        if (!strcmp(name, "vm") && srv->vm_note[0])
            json_object_set_new(t, "note", json_string(srv->vm_note));
        json_array_append_new(tiers, t);
    }
    const rpc_config_t *c = &srv->cfg;
    req->result = json_pack(
        "{s:s, s:s, s:i, s:I, s:s, s:s, s:o, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:i}",
        "name", "thawd", "version", THAW_VERSION, "pid", (int)getpid(), "uptime_ms",
        (json_int_t)((thaw_now_ns() - srv->started_ns) / 1000000), "socket", srv->socket_path,
        "store", srv->store_dir, "tiers", tiers, "limits", "max_message", (int)c->max_message,
        "max_inflight", (int)c->max_inflight, "max_inflight_per_uid", (int)c->max_inflight_per_uid,
        "max_exec_ms", (int)c->max_exec_ms, "default_exec_ms", (int)c->default_exec_ms,
        "max_output", (int)c->max_output, "max_file", (int)c->max_file, "max_lease_s",
        (int)c->max_lease_s, "uid", (int)req->conn->uid);
    rpc__req_finish(req);
}

static json_t *stats_json(rpc_server_t *srv, uid_t uid)
{
    pool_totals_t *tt = malloc(sizeof(*tt));
    pool_tpl_status_t *st = malloc(sizeof(*st));
    json_t *tpls = json_object();
    char **names = NULL;
    size_t n = 0;
    if (tt && st && pool_template_names(srv->pool, &names, &n) >= 0) {
        for (size_t i = 0; i < n; i++) {
            thaw_err_t err;
            if (pool_template_status(srv->pool, names[i], st, &err) == 0)
                json_object_set_new(tpls, names[i], rpc__tpl_json(st, true));
        }
        pool_names_free(names, n);
    }
    json_t *out = NULL;
    if (tt) {
        pool_totals(srv->pool, tt);
        out = json_pack(
            "{s:{s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:I, s:I, s:I, s:I, s:I, s:I}, "
            "s:{s:o, s:o, s:o, s:o, s:o}, s:o}",
            "server", "sandboxes", (int)tt->live, "max_sandboxes", (int)tt->max_sandboxes,
            "memory_mb", (json_int_t)tt->memory_mb, "memory_budget_mb",
            (json_int_t)tt->memory_budget_mb, "hits", (json_int_t)tt->hits, "misses",
            (json_int_t)tt->misses, "died", (json_int_t)tt->died, "connections", (int)srv->nconns,
            "handed_out", (int)srv->nsbs, "capacity_refusals", (json_int_t)tt->capacity_refusals,
            "requests", (json_int_t)srv->requests, "errors", (json_int_t)srv->errors,
            "connections_total", (json_int_t)srv->connections_total, "bytes_in",
            (json_int_t)srv->bytes_in, "bytes_out", (json_int_t)srv->bytes_out, "latency",
            "acquire_hit", rpc__hist_json(&tt->acquire_hit), "acquire_miss",
            rpc__hist_json(&tt->acquire_miss), "restore", rpc__hist_json(&tt->restore), "exec",
            rpc__hist_json(&tt->exec), "run", rpc__hist_json(&srv->run_rtt), "templates", tpls);
        json_t *server = json_object_get(out, "server");
        /* Not counting the server.stats asking: 0 when nothing else runs. */
        json_object_set_new(server, "requests_in_flight",
                            json_integer((json_int_t)(srv->inflight - 1)));
        json_object_set_new(server, "cancelled", json_integer((json_int_t)srv->cancelled));
        /* Refusals by --max-inflight-per-uid, and what the caller's uid has
         * in flight now (blocking requests only: this one is not counted). */
        json_object_set_new(server, "uid_refusals", json_integer((json_int_t)srv->uid_refusals));
        json_object_set_new(server, "uid_in_flight",
                            json_integer((json_int_t)rpc__uid_inflight(srv, uid)));
        /* Blocking requests on a worker thread, and those waiting for one
         * (now, and how many ever did). */
        json_object_set_new(server, "workers_busy", json_integer((json_int_t)srv->running));
        json_object_set_new(server, "workers", json_integer((json_int_t)srv->cfg.threads));
        json_object_set_new(server, "queued", json_integer((json_int_t)srv->queued));
        json_object_set_new(server, "queued_total", json_integer((json_int_t)srv->queued_total));
    } else {
        json_decref(tpls);
    }
    free(tt);
    free(st);
    return out;
}

void rpc__m_server_stats(rpc_req_t *req)
{
    if (rpc__params_only(req, no_params) == 0) {
        req->result = stats_json(req->srv, req->conn->uid);
        if (!req->result)
            rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
    }
    rpc__req_finish(req);
}

/* Prometheus text exposition: one histogram family per latency, as summaries. */
static void prom_summary(FILE *f, const char *name, const char *help, const char *label,
                         const thaw_hist_t *h)
{
    static const double qs[] = {0.5, 0.9, 0.99};
    if (!label[0]) {
        fprintf(f, "# HELP %s %s\n# TYPE %s summary\n", name, help, name);
    }
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        fprintf(f, "%s{%s%squantile=\"%g\"} %.9f\n", name, label, label[0] ? "," : "", qs[i],
                (double)thaw_hist_percentile(h, qs[i] * 100) / 1e9);
    fprintf(f, "%s_sum{%s} %.9f\n", name, label, (double)h->sum / 1e9);
    fprintf(f, "%s_count{%s} %llu\n", name, label, (unsigned long long)h->count);
}

void rpc__m_server_metrics(rpc_req_t *req)
{
    if (rpc__params_only(req, no_params) < 0) {
        rpc__req_finish(req);
        return;
    }
    rpc_server_t *srv = req->srv;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    pool_totals_t *tt = malloc(sizeof(*tt));
    pool_tpl_status_t *st = malloc(sizeof(*st));
    if (!f || !tt || !st) {
        if (f)
            fclose(f);
        free(text);
        free(tt);
        free(st);
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        rpc__req_finish(req);
        return;
    }
    pool_totals(srv->pool, tt);
    fprintf(f,
            "# HELP thaw_sandboxes Sandboxes that exist (ready, in use, being made).\n"
            "# TYPE thaw_sandboxes gauge\nthaw_sandboxes %u\n",
            tt->live);
    fprintf(f,
            "# HELP thaw_memory_bytes Memory reserved by live sandboxes.\n"
            "# TYPE thaw_memory_bytes gauge\nthaw_memory_bytes %llu\n",
            (unsigned long long)tt->memory_mb << 20);
    fprintf(f,
            "# HELP thaw_capacity_refusals_total Acquires refused for capacity.\n"
            "# TYPE thaw_capacity_refusals_total counter\nthaw_capacity_refusals_total %llu\n",
            (unsigned long long)tt->capacity_refusals);
    fprintf(f,
            "# HELP thaw_uid_refusals_total Blocking requests refused: their uid was at "
            "--max-inflight-per-uid.\n"
            "# TYPE thaw_uid_refusals_total counter\nthaw_uid_refusals_total %llu\n",
            (unsigned long long)srv->uid_refusals);
    fprintf(f,
            "# HELP thaw_workers_busy Blocking requests on a worker thread.\n"
            "# TYPE thaw_workers_busy gauge\nthaw_workers_busy %u\n"
            "# HELP thaw_requests_queued Blocking requests waiting for a worker thread.\n"
            "# TYPE thaw_requests_queued gauge\nthaw_requests_queued %u\n"
            "# HELP thaw_requests_queued_total Blocking requests that waited for a worker "
            "thread.\n"
            "# TYPE thaw_requests_queued_total counter\nthaw_requests_queued_total %llu\n",
            srv->running, srv->queued, (unsigned long long)srv->queued_total);
    fprintf(f,
            "# HELP thaw_connections Open client connections.\n"
            "# TYPE thaw_connections gauge\nthaw_connections %u\n",
            srv->nconns);
    fprintf(f,
            "# HELP thaw_requests_total JSON-RPC requests received.\n"
            "# TYPE thaw_requests_total counter\nthaw_requests_total %llu\n",
            (unsigned long long)srv->requests);
    fprintf(f,
            "# HELP thaw_request_errors_total JSON-RPC requests answered with an error.\n"
            "# TYPE thaw_request_errors_total counter\nthaw_request_errors_total %llu\n",
            (unsigned long long)srv->errors);
    prom_summary(f, "thaw_run_seconds", "sandbox.run round trip inside thawd.", "", &srv->run_rtt);

    char **names = NULL;
    size_t n = 0;
    if (pool_template_names(srv->pool, &names, &n) < 0)
        n = 0;
    static const char *const gauges[] = {"ready", "in_use", "creating", "target"};
    static const char *const counters[] = {"hits",      "misses", "created",
                                           "destroyed", "died",   "create_failures"};
    static const char *const hists[] = {"acquire_hit", "acquire_miss", "restore", "exec"};
    for (size_t g = 0; g < 4; g++) {
        fprintf(f,
                "# HELP thaw_pool_%s Sandboxes of a template that are %s.\n"
                "# TYPE thaw_pool_%s gauge\n",
                gauges[g], gauges[g], gauges[g]);
        for (size_t i = 0; i < n; i++) {
            thaw_err_t err;
            if (pool_template_status(srv->pool, names[i], st, &err) < 0)
                continue;
            unsigned v = g == 0   ? st->ready
                         : g == 1 ? st->in_use
                         : g == 2 ? st->creating
                                  : st->target;
            fprintf(f, "thaw_pool_%s{template=\"%s\"} %u\n", gauges[g], names[i], v);
        }
    }
    for (size_t k = 0; k < 6; k++) {
        fprintf(f,
                "# HELP thaw_pool_%s_total Per template: %s.\n# TYPE thaw_pool_%s_total counter\n",
                counters[k], counters[k], counters[k]);
        for (size_t i = 0; i < n; i++) {
            thaw_err_t err;
            if (pool_template_status(srv->pool, names[i], st, &err) < 0)
                continue;
            uint64_t v = k == 0   ? st->hits
                         : k == 1 ? st->misses
                         : k == 2 ? st->created
                         : k == 3 ? st->destroyed
                         : k == 4 ? st->died
                                  : st->create_failures;
            fprintf(f, "thaw_pool_%s_total{template=\"%s\"} %llu\n", counters[k], names[i],
                    (unsigned long long)v);
        }
    }
    for (size_t k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof(name), "thaw_%s_seconds", hists[k]);
        fprintf(f, "# HELP %s Latency of %s per template.\n# TYPE %s summary\n", name, hists[k],
                name);
        for (size_t i = 0; i < n; i++) {
            thaw_err_t err;
            if (pool_template_status(srv->pool, names[i], st, &err) < 0)
                continue;
            const thaw_hist_t *h = k == 0   ? &st->acquire_hit
                                   : k == 1 ? &st->acquire_miss
                                   : k == 2 ? &st->restore
                                            : &st->exec;
            char label[POOL_NAME_MAX + 16];
            snprintf(label, sizeof(label), "template=\"%s\"", names[i]);
            prom_summary(f, name, "", label, h);
        }
    }
    pool_names_free(names, n);
    fclose(f);
    req->result = json_pack("{s:s%}", "text", text ? text : "", len);
    free(text);
    free(tt);
    free(st);
    rpc__req_finish(req);
}
