// SPDX-License-Identifier: Apache-2.0
/*
 * The well-behaved client of the fault tests: while a hostile workload,
 * guest or client does its worst, this thread's own connection keeps
 * running `echo ok`, so a test can assert that thawd served others
 * throughout.  See harness.h.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void *good_thread(void *arg)
{
    th_good_t *g = arg;
    th_conn_t c;
    if (th_connect(&c, g->sock) < 0) {
        atomic_fetch_add(&g->failures, 1);
        return NULL;
    }
    while (!atomic_load(&g->stop)) {
        json_t *params = json_pack("{s:s, s:[s,s]}", "template", g->tpl, "argv", "echo", "ok");
        if (g->timeout_ms > 0)
            json_object_set_new(params, "timeout_ms", json_integer(g->timeout_ms));
        json_t *r = th_call(&c, "sandbox.run", params);
        json_t *res = json_object_get(r, "result");
        const char *out = json_string_value(json_object_get(res, "stdout"));
        if (!out || strcmp(out, "ok\n")) {
            fprintf(stderr, "good client: %s\n", r ? th_msg(r) : "no reply");
            atomic_fetch_add(&g->failures, 1);
        }
        atomic_fetch_add(&g->runs, 1);
        json_decref(r);
    }
    th_close(&c);
    return NULL;
}

int th_good_start(th_good_t *g)
{
    atomic_store(&g->stop, false);
    atomic_store(&g->runs, 0);
    atomic_store(&g->failures, 0);
    return pthread_create(&g->thread, NULL, good_thread, g) == 0 ? 0 : -1;
}

void th_good_wait_first(th_good_t *g)
{
    while (atomic_load(&g->runs) == 0 && atomic_load(&g->failures) == 0)
        usleep(10000);
}

void th_good_stop(th_good_t *g)
{
    atomic_store(&g->stop, true);
    pthread_join(g->thread, NULL);
}
