// SPDX-License-Identifier: Apache-2.0
/*
 * The vm tier end to end through a real thawd (kvm suite): template.create
 * boots the freestanding test guest (whose ring-3 agent speaks the agent
 * protocol), waits for its hello, quiesces it and snapshots it; the pool
 * restores clones with each engine (eager, lazy, shared), THAW answers, and
 * sandbox.run of echo returns its output; hits and misses are told apart;
 * an unsupported command is a clean error; a restart reopens the snapshot.
 * The guest image comes as argv[1].  Skips without /dev/kvm.
 */
#include <setjmp.h>
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

static const char *guest;
static th_daemon_t d;
static th_conn_t c;
static const char *const args[] = {"--no-default-templates", NULL};

static void create(const char *name, const char *engine, int min_ready)
{
    json_t *r = th_ok(&c, "template.create",
                      json_pack("{s:s, s:s, s:s, s:i, s:s, s:i, s:i}", "name", name, "tier", "vm",
                                "image", guest, "memory_mb", 64, "engine", engine, "min_ready",
                                min_ready, "max_ready", 2));
    assert_string_equal(json_string_value(json_object_get(r, "tier")), "vm");
    json_decref(r);
    /* Progress went out as notifications: boot, hello, quiesce, snapshot. */
    const char *want[] = {"boot", "hello", "quiesce", "snapshot"};
    for (size_t k = 0; k < 4; k++) {
        bool seen = false;
        size_t i;
        json_t *n;
        json_array_foreach (c.notes, i, n) {
            json_t *p = json_object_get(n, "params");
            const char *st = json_string_value(json_object_get(p, "stage"));
            const char *tp = json_string_value(json_object_get(p, "template"));
            seen |= st && tp && !strcmp(st, want[k]) && !strcmp(tp, name);
        }
        if (!seen)
            fail_msg("no '%s' progress for %s", want[k], name);
    }
}

static json_t *run(const char *tpl, const char *word)
{
    return th_ok(&c, "sandbox.run",
                 json_pack("{s:s, s:[s,s]}", "template", tpl, "argv", "echo", word));
}

static void test_each_engine(void **state)
{
    (void)state;
    static const char *const engines[] = {"eager", "lazy", "shared"};
    for (int e = 0; e < 3; e++) {
        char name[32];
        snprintf(name, sizeof(name), "tg-%s", engines[e]);
        create(name, engines[e], 1);
        assert_true(th_wait_pool(&c, name, "ready", 1, 30000));
        for (int i = 0; i < 3; i++) {
            json_t *r = run(name, engines[e]);
            char want[32];
            snprintf(want, sizeof(want), "%s\n", engines[e]);
            assert_string_equal(json_string_value(json_object_get(r, "stdout")), want);
            assert_int_equal(json_integer_value(json_object_get(r, "exit_code")), 0);
            json_decref(r);
        }
        assert_true(th_counter(&c, name, "created") >= 3);
    }
}

static void test_hit_miss_and_errors(void **state)
{
    (void)state;
    create("tg-miss", "shared", 0);
    json_t *r = run("tg-miss", "cold");
    assert_false(json_is_true(json_object_get(r, "hit")));
    json_decref(r);
    json_decref(
        th_ok(&c, "pool.prewarm",
              json_pack("{s:s, s:i, s:i}", "name", "tg-miss", "count", 2, "wait_ms", 30000)));
    r = run("tg-miss", "warm");
    assert_true(json_is_true(json_object_get(r, "hit")));
    json_decref(r);
    r = th_ok(&c, "sandbox.run", json_pack("{s:s, s:[s]}", "template", "tg-miss", "argv", "false"));
    assert_int_equal(json_integer_value(json_object_get(r, "exit_code")), 1);
    json_decref(r);
    r = th_call(&c, "sandbox.run", json_pack("{s:s, s:[s]}", "template", "tg-miss", "argv", "ls"));
    assert_int_equal(th_code(r), -32000);
    assert_non_null(strstr(th_msg(r), "built-ins"));
    json_decref(r);
    /* A template whose image is not a kernel fails at boot, cleanly. */
    r = th_call(
        &c, "template.create",
        json_pack("{s:s, s:s, s:s}", "name", "bad", "tier", "vm", "image", "/etc/hostname"));
    /* vmm/ says what is wrong with the image; EINVAL reads as invalid params. */
    assert_int_equal(th_code(r), -32602);
    assert_non_null(strstr(th_msg(r), "/etc/hostname"));
    json_decref(r);
    r = th_call(&c, "template.get", json_pack("{s:s}", "name", "bad"));
    assert_int_equal(th_code(r), -32001);
    json_decref(r);
}

static void test_restart_reopens_snapshot(void **state)
{
    (void)state;
    th_close(&c);
    assert_int_equal(th_stop(&d), 0);
    assert_int_equal(th_start(&d, args), 0);
    assert_int_equal(th_connect(&c, d.sock), 0);
    json_t *r = run("tg-shared", "again");
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "again\n");
    json_decref(r);
}

int main(int argc, char **argv)
{
    thaw_test_require_kvm();
    if (argc < 2 || access(argv[1], R_OK) < 0)
        thaw_test_skip("usage: test-vm-pool GUEST.elf (the agent test guest)");
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    guest = argv[1];
    if (th_start(&d, args) < 0 || th_connect(&c, d.sock) < 0)
        return 1;
    th_skip_unless_tier(&d, &c, "vm");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_engine),
        cmocka_unit_test(test_hit_miss_and_errors),
        cmocka_unit_test(test_restart_reopens_snapshot),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (th_finish(&d, &c) != 0)
        rc = 1;
    return rc;
}
