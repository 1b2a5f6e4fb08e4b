// SPDX-License-Identifier: Apache-2.0
/*
 * The sentry tier through a real thawd with its embedded defaults: the
 * `default` sentry template is created on first start, `sandbox.run` of
 * echo (and python3 when the host has it) works through it, the pool is
 * kept at min_ready, a sentry sandbox killed while ready is replaced, and a
 * restart reloads the template without rebuilding it.  Needs root and a
 * working sentry tier; skips (77) with thawd's own reason otherwise.
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
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

static th_daemon_t d;
static th_conn_t c;

static json_t *run(const char *tpl, const char *cmd)
{
    return th_ok(&c, "sandbox.run",
                 json_pack("{s:s, s:[s,s,s]}", "template", tpl, "argv", "sh", "-c", cmd));
}

static void test_default_template_runs(void **state)
{
    (void)state;
    json_t *t = th_ok(&c, "template.get", json_pack("{s:s}", "name", "default"));
    assert_string_equal(json_string_value(json_object_get(t, "tier")), "sentry");
    json_decref(t);
    json_t *r = th_ok(&c, "sandbox.run",
                      json_pack("{s:[s,s]}", "argv", "echo", "hello")); /* template defaults */
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "hello\n");
    assert_int_equal(json_integer_value(json_object_get(r, "exit_code")), 0);
    json_decref(r);
    if (access("/usr/bin/python3", X_OK) == 0) {
        r = run("default", "python3 -c 'print(2**100)'");
        assert_string_equal(json_string_value(json_object_get(r, "stdout")),
                            "1267650600228229401496703205376\n");
        json_decref(r);
    }
}

static void test_sentry_pool_kept_and_replaced(void **state)
{
    (void)state;
    assert_true(th_wait_pool(&c, "default", "ready", 2, 20000));
    long died0 = th_counter(&c, "default", "died");
    /* Kill one ready sandbox's init from outside, once the pool is idle: then
     * thawd's only children are the two ready sandboxes (earlier runs' ones
     * may still be on their way out). */
    pid_t kids[64];
    int n = 0;
    for (int i = 0; i < 500; i++) {
        json_t *st = th_ok(&c, "server.stats", NULL);
        long live =
            (long)json_integer_value(json_object_get(json_object_get(st, "server"), "sandboxes"));
        json_decref(st);
        n = th_children(&d, kids, 64);
        if (live == 2 && n == 2)
            break;
        usleep(20000);
    }
    assert_int_equal(n, 2);
    assert_int_equal(kill(kids[0], SIGKILL), 0);
    for (int i = 0; i < 500 && th_counter(&c, "default", "died") == died0; i++)
        usleep(20000);
    assert_int_equal(th_counter(&c, "default", "died"), died0 + 1);
    assert_true(th_wait_pool(&c, "default", "ready", 2, 20000));
    json_t *r = run("default", "echo still");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "still\n");
    json_decref(r);
}

static void test_sandboxes_are_isolated_from_each_other(void **state)
{
    (void)state;
    /* A file written in one sandbox's /tmp is not in the next one's. */
    json_t *r = run("default", "echo secret > /tmp/mark && cat /tmp/mark");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "secret\n");
    json_decref(r);
    r = run("default", "cat /tmp/mark 2>/dev/null || echo absent");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "absent\n");
    json_decref(r);
}

static void test_restart_reloads(void **state)
{
    (void)state;
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    assert_int_equal(th_start(&d, NULL), 0);
    assert_int_equal(th_connect(&c, d.sock), 0);
    json_t *l = th_ok(&c, "template.list", NULL);
    assert_int_equal(json_array_size(json_object_get(l, "templates")), 1);
    json_decref(l);
    json_t *r = run("default", "echo again");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "again\n");
    json_decref(r);
}

int main(void)
{
    thaw_test_require_root();
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    if (th_start(&d, NULL) < 0 || th_connect(&c, d.sock) < 0) {
        th_cleanup(&d);
        fprintf(stderr, "thawd did not start\n");
        return 1;
    }
    /* Skip with thawd's reason when the sentry tier cannot run here. */
    th_skip_unless_tier(&d, &c, "sentry");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_template_runs),
        cmocka_unit_test(test_sentry_pool_kept_and_replaced),
        cmocka_unit_test(test_sandboxes_are_isolated_from_each_other),
        cmocka_unit_test(test_restart_reloads),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (th_finish(&d, &c) != 0)
        rc = 1;
    return rc;
}
