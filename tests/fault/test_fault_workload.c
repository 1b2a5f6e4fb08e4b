// SPDX-License-Identifier: Apache-2.0
/*
 * Hostile workloads inside sandboxes, through a real thawd: output floods
 * (stdout, stderr, both, streamed to a client), a workload that hangs, one
 * that hangs with its output still open in a background child, and a
 * sandbox whose agent dies mid-exec.  What must hold for each: the request
 * ends (truncated, timed out, or a clear error) instead of hanging or
 * growing thawd without bound; that sandbox is removed (never reused); the
 * pool refills to its ready target; and a well-behaved client is served
 * while the flood goes on.  argv[1] is the tier: `process` (unit suite) or
 * `sentry` (priv suite).
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KB (320 * 1024)
#else
#define RSS_SLACK_KB (64 * 1024)
#endif

static const char *tier;

static int setup(void **state)
{
    static const char *const health[] = {"--health-interval", "100", NULL};
    const char *args[8];
    json_t *tpl = th_tpl_params(tier, NULL, NULL, "{s:s, s:i, s:i, s:i}", "name", "w", "min_ready",
                                2, "max_ready", 4, "max_total", 16);
    return th_fx_setup(state, th_tier_args(tier, health, args, 8), tpl, 2, 30000);
}

/* Run the hostile command (sandbox.run params, stolen) with a good client
 * beside it; returns the reply (owned), which must hold a result (the test
 * fails with `what` otherwise). */
static json_t *hostile(th_fx_t *f, const char *what, json_t *params)
{
    th_good_t g = {.sock = f->d.sock, .tpl = "w"};
    assert_int_equal(th_good_start(&g), 0);
    json_object_set_new(params, "template", json_string("w"));
    json_t *r = th_call(&f->c, "sandbox.run", params);
    th_good_stop(&g);
    fprintf(stderr, "  beside it, a good client: %d runs, %d failures\n", atomic_load(&g.runs),
            atomic_load(&g.failures));
    assert_non_null(r);
    json_t *res = json_object_get(r, "result");
    fprintf(stderr, "  hostile request took %lld ms, timed_out %d, truncated %d\n",
            (long long)json_integer_value(json_object_get(res, "duration_us")) / 1000,
            json_is_true(json_object_get(res, "timed_out")),
            json_is_true(json_object_get(res, "truncated")));
    assert_int_equal(atomic_load(&g.failures), 0);
    if (!res)
        fail_msg("%s: %s", what, th_msg(r));
    return r;
}

/* That sandbox is gone, the pool is back, thawd did not balloon. */
static void assert_recovered(th_fx_t *f)
{
    assert_true(th_wait_pool(&f->c, "w", "in_use", 0, 20000));
    assert_true(th_wait_pool(&f->c, "w", "ready", 2, 30000));
    long rss = th_rss_kb(&f->d);
    fprintf(stderr, "  thawd RSS %ld KiB before, %ld KiB after\n", f->rss0, rss);
    /* The output cap is 1 MiB per stream here; thawd holds at most a few
     * requests' worth.  Under ASan thawd's freed memory sits in the
     * allocator's quarantine (256 MiB by default), so the bound is that. */
    assert_true(rss < f->rss0 + RSS_SLACK_KB);
    json_t *l = th_ok(&f->c, "sandbox.list", NULL);
    assert_int_equal(json_array_size(json_object_get(l, "sandboxes")), 0);
    json_decref(l);
}

static void test_stdout_flood_is_truncated_and_sandbox_removed(void **state)
{
    th_fx_t *f = *state;
    json_t *r =
        hostile(f, "flood",
                json_pack("{s:[s,s,s], s:i, s:i}", "argv", "sh", "-c", "yes floodfloodflood",
                          "max_output", 1 << 20, "timeout_ms", 20000));
    json_t *res = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(res, "truncated")));
    assert_true(json_string_length(json_object_get(res, "stdout")) <= (1u << 20));
    json_decref(r);
    assert_recovered(f);
}

static void test_stdout_and_stderr_flood_is_truncated(void **state)
{
    th_fx_t *f = *state;
    json_t *r =
        hostile(f, "flood",
                json_pack("{s:[s,s,s], s:i, s:i}", "argv", "sh", "-c", "yes out & yes err >&2",
                          "max_output", 1 << 20, "timeout_ms", 20000));
    json_t *res = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(res, "truncated")));
    json_decref(r);
    assert_recovered(f);
}

static void test_streamed_flood_reaches_client_bounded(void **state)
{
    th_fx_t *f = *state;
    json_t *r = hostile(f, "streamed flood",
                        json_pack("{s:[s,s,s], s:i, s:i, s:b}", "argv", "sh", "-c",
                                  "yes streamstreamstream | head -c 50000000", "max_output",
                                  1 << 20, "timeout_ms", 20000, "stream", 1));
    json_t *res = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(res, "truncated")));
    /* What was streamed is bounded by max_output too. */
    size_t streamed = th_streamed_bytes(&f->c);
    fprintf(stderr, "  streamed %zu bytes in %zu notifications\n", streamed,
            json_array_size(f->c.notes));
    assert_true(streamed <= (1u << 20) + 4096);
    json_array_clear(f->c.notes);
    json_decref(r);
    assert_recovered(f);
}

static void test_hanging_workload_times_out_and_sandbox_removed(void **state)
{
    th_fx_t *f = *state;
    json_t *r = hostile(f, "hang",
                        json_pack("{s:[s,s], s:i}", "argv", "sleep", "3600", "timeout_ms", 1500));
    json_t *res = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(res, "timed_out")));
    json_decref(r);
    assert_recovered(f);
}

static void test_hang_with_output_held_open_by_a_child_times_out(void **state)
{
    th_fx_t *f = *state;
    /* The command exits at once, but a background child keeps stdout open
     * and silent: the exec must still end at its timeout. */
    json_t *r = hostile(f, "held output",
                        json_pack("{s:[s,s,s], s:i}", "argv", "sh", "-c",
                                  "sleep 3600 & echo started", "timeout_ms", 1500));
    json_decref(r);
    assert_recovered(f);
}

static void test_busy_loop_workload_times_out(void **state)
{
    th_fx_t *f = *state;
    json_t *r = hostile(f, "busy loop",
                        json_pack("{s:[s,s,s], s:i}", "argv", "sh", "-c", "while :; do :; done",
                                  "timeout_ms", 1500));
    json_t *res = json_object_get(r, "result");
    assert_true(json_is_true(json_object_get(res, "timed_out")));
    json_decref(r);
    assert_recovered(f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s process|sentry\n", argv[0]);
        return 2;
    }
    tier = argv[1];
    if (!strcmp(tier, "sentry"))
        thaw_test_require_root();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stdout_flood_is_truncated_and_sandbox_removed, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_stdout_and_stderr_flood_is_truncated, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_streamed_flood_reaches_client_bounded, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_hanging_workload_times_out_and_sandbox_removed, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_hang_with_output_held_open_by_a_child_times_out, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_busy_loop_workload_times_out, setup, th_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
