// SPDX-License-Identifier: Apache-2.0
/*
 * Benchmark of the agent channel on a socketpair (the sentry tier's set-up,
 * and the floor under a VM's virtio-console): ping round trips, exec of
 * `true` start to exit, 1 MiB put and get, and execs from 8 threads at once.
 * Prints latency percentiles and rates; asserts nothing about timings.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_harness.h"
#include "common/clock.h"
#include "common/hist.h"
#include "guest/agent_client.h"
#include "testlib.h"

static void report(const char *what, const thaw_hist_t *h, unsigned n)
{
    printf("%-28s n=%-5u p50=%8.1f us  p99=%8.1f us  mean=%8.1f us\n", what, n,
           (double)thaw_hist_percentile(h, 50) / 1e3, (double)thaw_hist_percentile(h, 99) / 1e3,
           thaw_hist_mean(h) / 1e3);
}

static void die(const char *what, const thaw_err_t *err)
{
    fprintf(stderr, "%s: %s\n", what, err->msg);
    exit(1);
}

typedef struct worker {
    agent_client_t *c;
    unsigned n;
    thaw_hist_t h;
} worker_t;

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    agent_exec_req_t req = {.argv = (const char *const[]){"true", NULL}, .timeout_ms = 10000};
    for (unsigned i = 0; i < w->n; i++) {
        agent_exec_result_t r;
        thaw_err_t err;
        uint64_t t0 = thaw_now_ns();
        if (agent_client_exec(w->c, &req, &r, &err) < 0)
            die("exec", &err);
        thaw_hist_add(&w->h, thaw_now_ns() - t0);
        agent_exec_result_free(&r);
    }
    return NULL;
}

int main(void)
{
    if (!getenv("THAW_AGENT_EXE"))
        thaw_test_skip("THAW_AGENT_EXE is not set: run through meson");
    agent_h_t ah;
    agent_client_t *c = agent_h_client(&ah);
    thaw_err_t err;
    thaw_hist_t h;

    thaw_hist_init(&h);
    for (unsigned i = 0; i < 2000; i++) {
        uint64_t rtt;
        if (agent_client_ping(c, 5000, &rtt, &err) < 0)
            die("ping", &err);
        thaw_hist_add(&h, rtt);
    }
    report("ping round trip", &h, 2000);

    worker_t one = {.c = c, .n = 300};
    thaw_hist_init(&one.h);
    worker_main(&one);
    report("exec true (start to exit)", &one.h, one.n);

    size_t len = 1 << 20;
    uint8_t *data = malloc(len);
    memset(data, 0x5a, len);
    thaw_hist_t hp, hg;
    thaw_hist_init(&hp);
    thaw_hist_init(&hg);
    for (unsigned i = 0; i < 30; i++) {
        uint64_t t0 = thaw_now_ns();
        if (agent_client_put_file(c, "/tmp/thaw-bench-agent", data, len, 0600, 10000, &err) < 0)
            die("put", &err);
        uint64_t t1 = thaw_now_ns();
        uint8_t *back;
        size_t blen;
        if (agent_client_get_file(c, "/tmp/thaw-bench-agent", len, &back, &blen, 10000, &err) < 0)
            die("get", &err);
        thaw_hist_add(&hp, t1 - t0);
        thaw_hist_add(&hg, thaw_now_ns() - t1);
        free(back);
    }
    unlink("/tmp/thaw-bench-agent");
    report("put 1 MiB", &hp, 30);
    report("get 1 MiB", &hg, 30);
    printf("%-28s put %.0f MB/s, get %.0f MB/s (p50)\n", "file throughput",
           (double)len / ((double)thaw_hist_percentile(&hp, 50) / 1e9) / 1e6,
           (double)len / ((double)thaw_hist_percentile(&hg, 50) / 1e9) / 1e6);
    free(data);

    enum { T = 8 };
    pthread_t t[T];
    worker_t w[T];
    uint64_t t0 = thaw_now_ns();
    for (int i = 0; i < T; i++) {
        w[i] = (worker_t){.c = c, .n = 50};
        thaw_hist_init(&w[i].h);
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    thaw_hist_t all;
    thaw_hist_init(&all);
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        thaw_hist_merge(&all, &w[i].h);
    }
    double secs = (double)(thaw_now_ns() - t0) / 1e9;
    report("exec true, 8 threads", &all, T * 50);
    printf("%-28s %.0f execs/s\n", "concurrent exec rate", T * 50 / secs);

    agent_client_destroy(c);
    agent_h_wait(&ah, 5000);
    return 0;
}
