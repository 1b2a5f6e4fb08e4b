// SPDX-License-Identifier: Apache-2.0
/*
 * bench-run: N sandbox.run round trips (default 10,000) against a real
 * thawd, then the latencies thawd itself recorded (server.stats: acquire
 * hit and miss, restore, exec, run) and the client-side round trip, as
 * p50/p99.  A benchmark: it prints numbers and asserts nothing about them.
 *   THAW_BENCH_RUNS     number of runs (10000)
 *   THAW_BENCH_CLIENTS  concurrent connections (1)
 *   THAW_BENCH_TIER     sentry | process | vm (sentry when root and available)
 *   THAW_BENCH_IMAGE    vm: the guest image (e.g. the agent test guest)
 * Each run is `echo x` (a built-in of the test guest, a process elsewhere).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/hist.h"
#include "harness.h"

typedef struct worker {
    const char *sock;
    const char *tpl;
    int runs, errors;
    thaw_hist_t rtt;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    th_conn_t c;
    thaw_hist_init(&w->rtt);
    if (th_connect(&c, w->sock) < 0) {
        w->errors = w->runs;
        return NULL;
    }
    for (int i = 0; i < w->runs; i++) {
        uint64_t t0 = thaw_now_ns();
        json_t *r = th_call(&c, "sandbox.run",
                            json_pack("{s:s, s:[s,s]}", "template", w->tpl, "argv", "echo", "x"));
        thaw_hist_add(&w->rtt, thaw_now_ns() - t0);
        if (!r || th_code(r)) {
            if (!w->errors)
                fprintf(stderr, "run failed: %s\n", r ? th_msg(r) : "no reply");
            w->errors++;
        }
        json_decref(r);
    }
    th_close(&c);
    return NULL;
}

static void row(const char *name, json_t *h)
{
    printf("%-14s %8lld %10.1f %10.1f %10.1f %10.1f\n", name,
           (long long)json_integer_value(json_object_get(h, "count")),
           json_number_value(json_object_get(h, "p50_us")),
           json_number_value(json_object_get(h, "p90_us")),
           json_number_value(json_object_get(h, "p99_us")),
           json_number_value(json_object_get(h, "max_us")));
}

int main(void)
{
    if (!getenv("THAWD")) {
        printf("SKIP: $THAWD is not set: run through meson test/benchmark\n");
        return 77;
    }
    int runs = getenv("THAW_BENCH_RUNS") ? atoi(getenv("THAW_BENCH_RUNS")) : 10000;
    int nclients = getenv("THAW_BENCH_CLIENTS") ? atoi(getenv("THAW_BENCH_CLIENTS")) : 1;
    const char *tier = getenv("THAW_BENCH_TIER");
    if (nclients < 1 || nclients > 256 || runs < nclients) {
        fprintf(stderr, "bad THAW_BENCH_RUNS/THAW_BENCH_CLIENTS\n");
        return 2;
    }
    th_daemon_t d = {0};
    const char *args[] = {"--enable-process-tier", "--max-inflight", "4", NULL};
    if (th_start(&d, args) < 0)
        return 1;
    th_conn_t c;
    if (th_connect(&c, d.sock) < 0)
        return 1;
    /* The sentry default template when it can run, else the process tier. */
    json_t *info = th_ok(&c, "server.info", NULL);
    bool sentry_ok = false;
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(info, "tiers"), i, t) {
        if (!strcmp(json_string_value(json_object_get(t, "name")), "sentry"))
            sentry_ok = json_is_true(json_object_get(t, "available"));
    }
    json_decref(info);
    if (!tier)
        tier = sentry_ok ? "sentry" : "process";
    if (!strcmp(tier, "sentry") && !sentry_ok) {
        printf("SKIP: sentry tier unavailable\n");
        th_cleanup(&d);
        return 77;
    }
    json_t *def = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "name", "bench", "tier", tier,
                            "min_ready", 4, "max_ready", 8, "max_total", 64, "memory_mb", 64);
    if (!strcmp(tier, "vm")) {
        const char *img = getenv("THAW_BENCH_IMAGE");
        if (!img) {
            printf("SKIP: the vm tier needs THAW_BENCH_IMAGE\n");
            th_cleanup(&d);
            return 77;
        }
        json_object_set_new(def, "image", json_string(img));
    }
    json_decref(th_ok(&c, "template.create", def));
    th_wait_pool(&c, "bench", "ready", 4, 20000);

    pthread_t th[256];
    worker_t *w = calloc((size_t)nclients, sizeof(*w));
    uint64_t t0 = thaw_now_ns();
    for (int k = 0; k < nclients; k++) {
        w[k].sock = d.sock;
        w[k].tpl = "bench";
        w[k].runs = runs / nclients;
        pthread_create(&th[k], NULL, worker_main, &w[k]);
    }
    thaw_hist_t rtt;
    thaw_hist_init(&rtt);
    int errors = 0, done = 0;
    for (int k = 0; k < nclients; k++) {
        pthread_join(th[k], NULL);
        thaw_hist_merge(&rtt, &w[k].rtt);
        errors += w[k].errors;
        done += w[k].runs;
    }
    double secs = (double)(thaw_now_ns() - t0) / 1e9;

    json_t *st = th_ok(&c, "server.stats", NULL);
    json_t *lat = json_object_get(st, "latency");
    json_t *tp = json_object_get(json_object_get(st, "templates"), "bench");
    json_t *cnt = json_object_get(tp, "counters");
    printf("bench-run: %d sandbox.run of `echo x` on the %s tier, %d client(s), %.1f s "
           "(%.0f runs/s), %d errors\n",
           done, tier, nclients, secs, done / secs, errors);
    printf("pool: %lld hits, %lld misses\n",
           (long long)json_integer_value(json_object_get(cnt, "hits")),
           (long long)json_integer_value(json_object_get(cnt, "misses")));
    printf("%-14s %8s %10s %10s %10s %10s   (microseconds, from server.stats)\n", "latency",
           "count", "p50", "p90", "p99", "max");
    row("acquire_hit", json_object_get(lat, "acquire_hit"));
    row("acquire_miss", json_object_get(lat, "acquire_miss"));
    row("restore", json_object_get(lat, "restore"));
    row("exec", json_object_get(lat, "exec"));
    row("run (thawd)", json_object_get(lat, "run"));
    printf("%-14s %8llu %10.1f %10.1f %10.1f %10.1f   (client-side round trip)\n", "run (client)",
           (unsigned long long)rtt.count, thaw_hist_percentile(&rtt, 50) / 1e3,
           thaw_hist_percentile(&rtt, 90) / 1e3, thaw_hist_percentile(&rtt, 99) / 1e3,
           (double)rtt.max / 1e3);
    json_decref(st);
    free(w);
    th_close(&c);
    int rc = th_stop(&d);
    th_cleanup(&d);
    return errors || rc ? 1 : 0;
}
