// SPDX-License-Identifier: Apache-2.0
/*
 * Pool behaviour, observed through a real thawd on a real socket: min_ready
 * is kept, prewarm is reached, hits and misses are told apart, capacity is
 * refused with a clear error, a sandbox that dies while ready is replaced,
 * a released sandbox is never reused and takes everything its workload
 * started with it (a detached daemon too), and a restart reloads the templates
 * from the store.  The sandboxes are the `process` tier (the real agent as a
 * child process), so this runs without root; tests/pool/test_sentry_pool.c
 * repeats the essentials on the sentry tier in the priv suite.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

static const char *const proc_tier[] = {"--enable-process-tier", "--no-default-templates",
                                        "--health-interval", "50", NULL};

static int fx_start(th_fx_t *f, const char *const *extra)
{
    const char *args[32];
    int n = 0;
    for (int i = 0; proc_tier[i]; i++)
        args[n++] = proc_tier[i];
    for (int i = 0; extra && extra[i] && n < 30; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (th_start(&f->d, args) < 0)
        return -1;
    return th_connect(&f->c, f->d.sock);
}

/* Stop this test's thawd (it must exit cleanly) and start it again on the
 * same store with extra arguments. */
static void fx_restart(th_fx_t *f, const char *const *extra)
{
    th_close(&f->c);
    assert_int_equal(th_stop(&f->d), 0);
    assert_int_equal(fx_start(f, extra), 0);
}

static int setup(void **state)
{
    th_fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    if (!f)
        return -1;
    f->c.fd = -1;
    return fx_start(f, NULL);
}

static void create_tpl(th_conn_t *c, const char *name, int min_ready, int max_ready, int max_total)
{
    json_decref(
        th_ok(c, "template.create",
              json_pack("{s:s, s:s, s:i, s:i, s:i}", "name", name, "tier", "process", "min_ready",
                        min_ready, "max_ready", max_ready, "max_total", max_total)));
}

static json_t *run(th_conn_t *c, const char *tpl, const char *cmd)
{
    return th_ok(c, "sandbox.run",
                 json_pack("{s:s, s:[s,s,s]}", "template", tpl, "argv", "sh", "-c", cmd));
}

static void test_min_ready_kept(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 3, 4, 10);
    assert_true(th_wait_pool(&f->c, "t", "ready", 3, 10000));
    json_t *a = th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t"));
    json_t *b = th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t"));
    assert_true(json_is_true(json_object_get(a, "hit")));
    assert_true(json_is_true(json_object_get(b, "hit")));
    /* The refill brings ready back to min_ready while both are held. */
    assert_true(th_wait_pool(&f->c, "t", "ready", 3, 10000));
    assert_int_equal(th_pool_get(&f->c, "t", "in_use"), 2);
    json_decref(a);
    json_decref(b);
}

static void test_prewarm_reached(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 0, 6, 10);
    /* A long window: five builds on a loaded machine (or under ASan) can
     * take longer than a short one, and then the target would fall back
     * before it was reached. */
    json_t *r = th_ok(&f->c, "pool.prewarm",
                      json_pack("{s:s, s:i, s:i, s:i}", "name", "t", "count", 5, "window_ms", 60000,
                                "wait_ms", 30000));
    assert_true(json_integer_value(json_object_get(r, "ready")) >= 5);
    json_decref(r);
    assert_int_equal(th_pool_get(&f->c, "t", "ready"), 5);
    /* A new prewarm replaces the window; past it the target falls back to
     * min_ready. */
    json_decref(th_ok(&f->c, "pool.prewarm",
                      json_pack("{s:s, s:i, s:i}", "name", "t", "count", 1, "window_ms", 300)));
    assert_true(th_wait_pool(&f->c, "t", "target", 0, 10000));
    assert_int_equal(th_pool_get(&f->c, "t", "prewarm"), 0);
    /* Over max_ready is refused, naming the limit. */
    json_t *rep = th_call(&f->c, "pool.prewarm", json_pack("{s:s, s:i}", "name", "t", "count", 7));
    assert_int_equal(th_code(rep), -32602);
    assert_non_null(strstr(th_msg(rep), "max_ready"));
    json_decref(rep);
}

/* Regression: an active prewarm kept its target after pool.configure lowered
 * max_ready below it, so a pool configured to hold none still held some. */
static void test_prewarm_capped_by_lowered_max_ready(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 0, 6, 10);
    json_decref(th_ok(&f->c, "pool.prewarm",
                      json_pack("{s:s, s:i, s:i}", "name", "t", "count", 4, "window_ms", 60000)));
    json_decref(th_ok(&f->c, "pool.configure",
                      json_pack("{s:s, s:i, s:i, s:i}", "name", "t", "min_ready", 0, "max_ready", 1,
                                "max_total", 10)));
    assert_int_equal(th_pool_get(&f->c, "t", "target"), 1);
    assert_true(th_wait_pool(&f->c, "t", "ready", 1, 10000));
    usleep(300000); /* the refill would overshoot within a few create times */
    assert_true(th_pool_get(&f->c, "t", "ready") <= 1);
}

static void test_hit_vs_miss(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 0, 2, 10);
    json_t *r = run(&f->c, "t", "echo miss");
    assert_false(json_is_true(json_object_get(r, "hit")));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "miss\n");
    json_decref(r);
    assert_int_equal(th_counter(&f->c, "t", "misses"), 1);
    json_decref(
        th_ok(&f->c, "pool.configure", json_pack("{s:s, s:i}", "name", "t", "min_ready", 1)));
    assert_true(th_wait_pool(&f->c, "t", "ready", 1, 10000));
    r = run(&f->c, "t", "echo hit");
    assert_true(json_is_true(json_object_get(r, "hit")));
    json_decref(r);
    assert_int_equal(th_counter(&f->c, "t", "hits"), 1);
    json_t *st = th_ok(&f->c, "server.stats", NULL);
    json_t *lat = json_object_get(st, "latency");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(lat, "acquire_hit"), "count")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(lat, "acquire_miss"), "count")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(lat, "run"), "count")), 2);
    json_decref(st);
}

static void test_capacity_global_cap(void **state)
{
    th_fx_t *f = *state;
    const char *args[] = {"--max-sandboxes", "2", NULL};
    fx_restart(f, args);
    create_tpl(&f->c, "t", 0, 2, 10);
    json_decref(th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t")));
    json_decref(th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t")));
    json_t *rep = th_call(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t"));
    assert_int_equal(th_code(rep), -32002);
    assert_non_null(strstr(th_msg(rep), "cap of 2 sandboxes"));
    json_decref(rep);
    json_t *st = th_ok(&f->c, "server.stats", NULL);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(st, "server"), "capacity_refusals")), 1);
    json_decref(st);
}

static void test_capacity_max_total(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 0, 1, 1);
    json_decref(th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t")));
    json_t *rep = th_call(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "t"));
    assert_int_equal(th_code(rep), -32002);
    assert_non_null(strstr(th_msg(rep), "max_total"));
    json_decref(rep);
}

static void test_capacity_memory_budget(void **state)
{
    th_fx_t *f = *state;
    const char *args[] = {"--memory-budget", "300", NULL};
    fx_restart(f, args);
    json_decref(th_ok(&f->c, "template.create",
                      json_pack("{s:s, s:s, s:i, s:i}", "name", "big", "tier", "process",
                                "memory_mb", 256, "min_ready", 0)));
    json_decref(th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "big")));
    json_t *rep = th_call(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "big"));
    assert_int_equal(th_code(rep), -32002);
    assert_non_null(strstr(th_msg(rep), "memory budget"));
    json_decref(rep);
}

static bool is_agent_of(pid_t pid, const th_daemon_t *d)
{
    (void)d;
    char path[64], buf[64] = {0};
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    bool ok = fgets(buf, sizeof(buf), fp) && !strncmp(buf, "thaw-agent", 10);
    fclose(fp);
    return ok;
}

/* Within 10 s, template tpl counts exactly one sandbox as died. */
static void assert_one_died(th_fx_t *f, const char *tpl)
{
    for (int i = 0; i < 500 && th_counter(&f->c, tpl, "died") < 1; i++)
        usleep(20000);
    assert_int_equal(th_counter(&f->c, tpl, "died"), 1);
}

static void test_dying_sandbox_replaced(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 2, 2, 10);
    assert_true(th_wait_pool(&f->c, "t", "ready", 2, 10000));
    pid_t kids[64];
    int n = th_children(&f->d, kids, 64);
    int killed = 0;
    for (int i = 0; i < n && !killed; i++)
        if (is_agent_of(kids[i], &f->d) && kill(kids[i], SIGKILL) == 0)
            killed = 1;
    assert_int_equal(killed, 1);
    /* Detected (died counted), removed, and the pool refilled to min_ready. */
    assert_one_died(f, "t");
    assert_true(th_wait_pool(&f->c, "t", "ready", 2, 10000));
    /* Nobody is handed the dead one. */
    for (int i = 0; i < 3; i++) {
        json_t *r = run(&f->c, "t", "echo alive");
        assert_string_equal(json_string_value(json_object_get(r, "stdout")), "alive\n");
        json_decref(r);
    }
}

static void test_hung_sandbox_replaced(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 1, 1, 10);
    assert_true(th_wait_pool(&f->c, "t", "ready", 1, 10000));
    /* A stopped agent is alive but never answers: the periodic ping finds it. */
    pid_t kids[64];
    int n = th_children(&f->d, kids, 64), stopped = 0;
    for (int i = 0; i < n && !stopped; i++)
        if (is_agent_of(kids[i], &f->d) && kill(kids[i], SIGSTOP) == 0)
            stopped = 1;
    assert_int_equal(stopped, 1);
    assert_one_died(f, "t");
    assert_true(th_wait_pool(&f->c, "t", "ready", 1, 10000));
    json_t *r = run(&f->c, "t", "echo fresh");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "fresh\n");
    json_decref(r);
}

static void test_never_reused(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 1, 2, 10);
    /* $PPID inside the command is the sandbox's agent. */
    long pids[4];
    for (int i = 0; i < 4; i++) {
        json_t *r = run(&f->c, "t", "echo $PPID");
        pids[i] = atol(json_string_value(json_object_get(r, "stdout")));
        json_decref(r);
        assert_true(pids[i] > 1);
        for (int j = 0; j < i; j++)
            assert_int_not_equal(pids[i], pids[j]);
    }
    /* Released means destroyed: the first agent is gone. */
    int gone = 0;
    for (int i = 0; i < 250 && !gone; i++) {
        gone = kill((pid_t)pids[0], 0) < 0 && errno == ESRCH;
        if (!gone)
            usleep(20000);
    }
    assert_true(gone);
}

/* Clean up after a failure: SIGKILL pid if it still is a `sleep`. */
static void kill_if_sleep(pid_t pid)
{
    char path[64], comm[32] = "";
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "re");
    if (f && fgets(comm, sizeof(comm), f) && !strcmp(comm, "sleep\n"))
        kill(pid, SIGKILL);
    if (f)
        fclose(f);
}

/* A workload's leftovers, even a daemon in its own session, go with its sandbox. */
static void test_leftovers_killed(void **state)
{
    th_fx_t *f = *state;
    create_tpl(&f->c, "t", 0, 0, 10);
    /* One in the background, one detached (new session, parent gone). */
    json_t *r = run(&f->c, "t",
                    "sleep 300 >/dev/null 2>&1 & echo $!; "
                    "(setsid sleep 301 >/dev/null 2>&1 & echo $!)");
    long bg = 0, daemon = 0;
    assert_int_equal(
        sscanf(json_string_value(json_object_get(r, "stdout")), "%ld %ld", &bg, &daemon), 2);
    json_decref(r);
    assert_true(bg > 1 && daemon > 1);
    /* sandbox.run released the sandbox: destroyed, with all it started. */
    bool bg_gone = th_wait_gone((pid_t)bg, 10000), daemon_gone = th_wait_gone((pid_t)daemon, 10000);
    if (!bg_gone) /* only a leftover sleep: a pid may already be another process's */
        kill_if_sleep((pid_t)bg);
    if (!daemon_gone)
        kill_if_sleep((pid_t)daemon);
    if (!bg_gone || !daemon_gone)
        fail_msg("outlived their sandbox: background sleep %ld %s, detached sleep %ld %s", bg,
                 bg_gone ? "gone" : "RUNNING", daemon, daemon_gone ? "gone" : "RUNNING");
}

static void test_restart_reloads_templates(void **state)
{
    th_fx_t *f = *state;
    json_decref(th_ok(&f->c, "template.create",
                      json_pack("{s:s, s:s, s:i, s:i, s:i, s:[s]}", "name", "keep", "tier",
                                "process", "min_ready", 1, "max_total", 7, "memory_mb", 64,
                                "warmup", "echo warm\nline two")));
    json_decref(
        th_ok(&f->c, "pool.configure", json_pack("{s:s, s:i}", "name", "keep", "max_ready", 3)));
    th_close(&f->c);
    assert_int_equal(th_stop(&f->d), 0);
    /* A create that never finished leaves a directory without template.conf,
     * and a damaged definition must not stop thawd. */
    char path[512];
    snprintf(path, sizeof(path), "%s/templates/halfdone", f->d.store);
    assert_int_equal(mkdir(path, 0750), 0);
    snprintf(path, sizeof(path), "%s/templates/broken", f->d.store);
    assert_int_equal(mkdir(path, 0750), 0);
    snprintf(path, sizeof(path), "%s/templates/broken/template.conf", f->d.store);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("format=1\nname=broken\nnosuchkey=1\n", fp);
    fclose(fp);

    assert_int_equal(fx_start(f, NULL), 0);
    json_t *t = th_ok(&f->c, "template.get", json_pack("{s:s}", "name", "keep"));
    json_t *pool = json_object_get(t, "pool");
    assert_int_equal(json_integer_value(json_object_get(pool, "max_ready")), 3);
    assert_int_equal(json_integer_value(json_object_get(pool, "max_total")), 7);
    assert_int_equal(json_integer_value(json_object_get(t, "memory_mb")), 64);
    assert_string_equal(json_string_value(json_array_get(json_object_get(t, "warmup"), 0)),
                        "echo warm\nline two");
    json_decref(t);
    json_t *l = th_ok(&f->c, "template.list", NULL);
    assert_int_equal(json_array_size(json_object_get(l, "templates")), 1);
    json_decref(l);
    snprintf(path, sizeof(path), "%s/templates/halfdone", f->d.store);
    assert_int_equal(access(path, F_OK), -1);
    assert_true(th_wait_pool(&f->c, "keep", "ready", 1, 10000));
    json_t *r = run(&f->c, "keep", "echo back");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "back\n");
    json_decref(r);
    /* Deleting removes it from the store for good. */
    json_decref(th_ok(&f->c, "template.delete", json_pack("{s:s}", "name", "keep")));
    snprintf(path, sizeof(path), "%s/templates/keep", f->d.store);
    assert_int_equal(access(path, F_OK), -1);
}

int main(void)
{
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_min_ready_kept, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_prewarm_reached, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_prewarm_capped_by_lowered_max_ready, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_hit_vs_miss, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_capacity_global_cap, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_capacity_max_total, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_capacity_memory_budget, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_dying_sandbox_replaced, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_hung_sandbox_replaced, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_never_reused, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_leftovers_killed, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_reloads_templates, setup, th_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
