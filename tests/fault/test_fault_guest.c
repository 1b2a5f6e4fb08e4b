// SPDX-License-Identifier: Apache-2.0
/*
 * Hostile guests on the vm tier, through a real thawd (kvm suite): the
 * freestanding test guest (tests/pool/vmguest/agent_guest.c, its image is
 * argv[1]) has exec built-ins that make the whole guest hang in ring 3,
 * flood its agent channel with endless valid output frames or with bytes
 * that are not frames, flood its serial console, or panic (a triple fault).
 * What must hold for each: the request ends within its timeout plus a
 * bounded grace with a clear error or a timed-out/truncated result; that
 * sandbox is removed (counted as died or destroyed, never reused); the pool
 * refills to min_ready; a good client's `sandbox.run echo` succeeds
 * throughout; thawd's descriptors return to their baseline and its memory
 * does not grow with the flood.  Skips without /dev/kvm.
 */
#include <pthread.h>
#include <setjmp.h>
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

/* The hostile exec's timeout, and how much longer the request may take to
 * end (thawd stops the VM and answers; a loaded 2-core machine is slow). */
#define HOSTILE_TIMEOUT_MS 2000
#define GRACE_MS           20000

static const char *guest;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int setup(void **state)
{
    static const char *const args[] = {"--no-default-templates", "--health-interval", "100", NULL};
    json_t *tpl = th_tpl_params("vm", guest, NULL, "{s:s, s:i, s:i, s:i}", "name", "g", "min_ready",
                                2, "max_ready", 2, "max_total", 8);
    return th_fx_setup(state, args, tpl, 2, 60000);
}

/*
 * Run hostile built-in `cmd` through sandbox.run beside a good client and
 * check everything the header promises.  Returns nothing: the reply's shape
 * is checked here, since each mode may end as an error or as a result.
 */
static void run_hostile(th_fx_t *f, const char *cmd, bool stream)
{
    long gone0 = th_counter(&f->c, "g", "died") + th_counter(&f->c, "g", "destroyed");
    /* A good client beside the fault, with a timeout of its own. */
    th_good_t g = {.sock = f->d.sock, .tpl = "g", .timeout_ms = 30000};
    assert_int_equal(th_good_start(&g), 0);
    /* Let the good client get going first so it overlaps the fault. */
    th_good_wait_first(&g);

    json_t *params = json_pack("{s:s, s:[s], s:i, s:i}", "template", "g", "argv", cmd, "timeout_ms",
                               HOSTILE_TIMEOUT_MS, "max_output", 1 << 20);
    if (stream)
        json_object_set_new(params, "stream", json_true());
    int64_t t0 = now_ms();
    json_t *r = th_call(&f->c, "sandbox.run", params);
    int64_t took = now_ms() - t0;
    /* Keep the good client going while the pool replaces the sandbox. */
    bool refilled = th_wait_pool(&f->c, "g", "in_use", 0, GRACE_MS) &&
                    th_wait_pool(&f->c, "g", "ready", 2, 60000);
    th_good_stop(&g);

    assert_non_null(r);
    json_t *res = json_object_get(r, "result");
    if (res)
        fprintf(stderr, "  %s: result after %lld ms (timed_out %d, truncated %d, stdout %zu B)\n",
                cmd, (long long)took, json_is_true(json_object_get(res, "timed_out")),
                json_is_true(json_object_get(res, "truncated")),
                json_string_length(json_object_get(res, "stdout")));
    else
        fprintf(stderr, "  %s: error %d after %lld ms: %s\n", cmd, th_code(r), (long long)took,
                th_msg(r));
    fprintf(stderr, "  beside it, a good client: %d runs, %d failures\n", atomic_load(&g.runs),
            atomic_load(&g.failures));
    assert_true(took < HOSTILE_TIMEOUT_MS + GRACE_MS);
    if (res) {
        /* Ending as a result means the timeout or the output cap ended it. */
        assert_true(json_is_true(json_object_get(res, "timed_out")) ||
                    json_is_true(json_object_get(res, "truncated")));
        assert_true(json_string_length(json_object_get(res, "stdout")) <= (1u << 20));
    } else {
        assert_true(th_code(r) != 0);
        assert_true(strlen(th_msg(r)) > 0);
    }
    json_decref(r);
    /* What was streamed to the client is bounded by max_output too. */
    size_t streamed = th_streamed_bytes(&f->c);
    if (stream)
        fprintf(stderr, "  streamed %zu bytes in %zu notifications\n", streamed,
                json_array_size(f->c.notes));
    assert_true(streamed <= (1u << 20) + 4096);
    json_array_clear(f->c.notes);
    assert_int_equal(atomic_load(&g.failures), 0);
    assert_true(atomic_load(&g.runs) > 0);

    /* That sandbox is gone and counted; the pool is back to min_ready. */
    assert_true(refilled);
    long gone = th_counter(&f->c, "g", "died") + th_counter(&f->c, "g", "destroyed");
    fprintf(stderr, "  died+destroyed %ld -> %ld\n", gone0, gone);
    assert_true(gone > gone0);
    json_t *l = th_ok(&f->c, "sandbox.list", NULL);
    assert_int_equal(json_array_size(json_object_get(l, "sandboxes")), 0);
    json_decref(l);

    /* Descriptors back to the baseline (the pool holds the same number of
     * ready VMs as before), memory not grown by the flood. */
    int fds = th_fd_count(&f->d);
    for (int i = 0; i < 200 && fds != f->fds0; i++) {
        usleep(50000);
        fds = th_fd_count(&f->d);
    }
    long rss = th_rss_kb(&f->d);
    fprintf(stderr, "  thawd fds %d -> %d, RSS %ld -> %ld KiB\n", f->fds0, fds, f->rss0, rss);
    assert_int_equal(fds, f->fds0);
    assert_true(rss < f->rss0 + RSS_SLACK_KB);
}

/*
 * The same through sandbox.acquire + sandbox.exec: the failed exec is
 * bounded, a second exec on the broken sandbox fails at once instead of
 * waiting again, and sandbox.release removes it.
 */
static void exec_hostile(th_fx_t *f, const char *cmd)
{
    json_t *a = th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "g"));
    char id[128];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(a, "id")));
    json_decref(a);
    int64_t t0 = now_ms();
    json_t *r = th_call(
        &f->c, "sandbox.exec",
        json_pack("{s:s, s:[s], s:i}", "id", id, "argv", cmd, "timeout_ms", HOSTILE_TIMEOUT_MS));
    int64_t took = now_ms() - t0;
    assert_non_null(r);
    fprintf(stderr, "  exec %s: %s after %lld ms: %s\n", cmd,
            json_object_get(r, "result") ? "result" : "error", (long long)took, th_msg(r));
    assert_true(took < HOSTILE_TIMEOUT_MS + GRACE_MS);
    json_decref(r);
    t0 = now_ms();
    r = th_call(&f->c, "sandbox.exec",
                json_pack("{s:s, s:[s,s], s:i}", "id", id, "argv", "echo", "again", "timeout_ms",
                          HOSTILE_TIMEOUT_MS));
    took = now_ms() - t0;
    assert_non_null(r);
    fprintf(stderr, "  then echo on it: %s after %lld ms: %s\n",
            json_object_get(r, "result") ? "result" : "error", (long long)took, th_msg(r));
    assert_true(th_code(r) != 0);
    assert_true(took < HOSTILE_TIMEOUT_MS);
    json_decref(r);
    json_decref(th_ok(&f->c, "sandbox.release", json_pack("{s:s}", "id", id)));
    assert_true(th_wait_pool(&f->c, "g", "in_use", 0, GRACE_MS));
    assert_true(th_wait_pool(&f->c, "g", "ready", 2, 60000));
    json_t *l = th_ok(&f->c, "sandbox.list", NULL);
    assert_int_equal(json_array_size(json_object_get(l, "sandboxes")), 0);
    json_decref(l);
}

static void test_guest_hostile_exec_on_acquired_sandbox(void **state)
{
    exec_hostile(*state, "hang");
    exec_hostile(*state, "panic");
}

static void test_guest_hang_times_out_and_vm_removed(void **state)
{
    run_hostile(*state, "hang", false);
}

static void test_guest_agent_flood_is_bounded_and_vm_removed(void **state)
{
    run_hostile(*state, "flood-agent", false);
}

static void test_guest_agent_flood_streamed_is_bounded(void **state)
{
    th_fx_t *f = *state;
    run_hostile(f, "flood-agent", true);
}

static void test_guest_agent_garbage_is_an_error_and_vm_removed(void **state)
{
    run_hostile(*state, "flood-agent-garbage", false);
}

static void test_guest_console_flood_is_bounded_and_vm_removed(void **state)
{
    run_hostile(*state, "flood-console", false);
}

static void test_guest_panic_is_an_error_and_vm_removed(void **state)
{
    run_hostile(*state, "panic", false);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GUEST-IMAGE\n", argv[0]);
        return 2;
    }
    guest = argv[1];
    thaw_test_require_kvm();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_guest_hostile_exec_on_acquired_sandbox, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_hang_times_out_and_vm_removed, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_agent_flood_is_bounded_and_vm_removed, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_agent_flood_streamed_is_bounded, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_agent_garbage_is_an_error_and_vm_removed, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_console_flood_is_bounded_and_vm_removed, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_guest_panic_is_an_error_and_vm_removed, setup,
                                        th_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
