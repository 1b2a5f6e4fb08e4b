// SPDX-License-Identifier: Apache-2.0
/*
 * A client that disconnects cancels its requests, against a real thawd on a
 * real socket; argv[1] is the tier (`process` in the unit suite, `sentry` in
 * the priv suite).  In every case a client starts a command that would run
 * for 30 s (its timeout; the sleep itself is longer and carries a number no
 * other process uses, so the test can find it in /proc) and closes its
 * socket.  What must hold, each within 10 s of the close:
 *   - the command's process is gone (killed through the agent, or with its
 *     sandbox);
 *   - nothing is left busy: no request in flight (server.stats), no sandbox
 *     in use or handed out, unless it is leased;
 *   - another client is served.
 * Cases: sandbox.run; sandbox.exec on an acquired sandbox; exec on a leased
 * sandbox (the sandbox stays, only the command dies); several execs and file
 * transfers on one busy sandbox; work queued behind busy worker threads
 * (thawd --threads 2: the queued requests are dropped and never start); and
 * a client that half-closes first (it still gets its replies: no cancel)
 * and closes for good later.
 * On the vm tier (kvm suite; argv[2] is the freestanding test guest) the
 * command is the guest's `hang`, which never answers again: a disconnect
 * still frees everything within 10 s instead of the 40 s that the exec's
 * timeout and the agent client's grace would take.
 * The time from the close to the sandbox being free is printed for the
 * report; only the 10 s bound is asserted.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

#define GONE_MS 10000 /* the bound: far below the commands' 30 s */

static const char *tier = "process";
static const char *guest; /* the vm tier's image */
static unsigned marker_seq;

typedef struct fx {
    th_daemon_t d;
    th_conn_t c; /* the client that stays */
} fx_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void nap(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int start(fx_t *f, const char *threads)
{
    const char *args[12];
    int n = 0;
    args[n++] = "--no-default-templates";
    if (!strcmp(tier, "process"))
        args[n++] = "--enable-process-tier";
    if (threads) {
        args[n++] = "--threads";
        args[n++] = threads;
        /* Work must queue behind busy threads here, from one uid: the
         * per-uid cap (3/4 of the threads by default) would refuse it. */
        args[n++] = "--max-inflight-per-uid";
        args[n++] = "0";
    }
    args[n] = NULL;
    if (th_start(&f->d, args) < 0 || th_connect(&f->c, f->d.sock) < 0)
        return -1;
    json_t *p = json_pack("{s:s, s:s, s:i, s:i}", "name", "t", "tier", tier, "min_ready", 1,
                          "max_ready", 2);
    if (guest) {
        json_object_set_new(p, "image", json_string(guest));
        json_object_set_new(p, "memory_mb", json_integer(64));
    }
    json_t *r = th_call(&f->c, "template.create", p);
    if (th_code(r) == -32006) {
        fprintf(stderr, "tier %s unavailable: %s\n", tier, th_msg(r));
        json_decref(r);
        th_close(&f->c);
        th_stop(&f->d);
        th_cleanup(&f->d);
        thaw_test_skip("the %s tier is not available here", tier);
    }
    int ok = th_code(r) == 0;
    if (!ok)
        fprintf(stderr, "template.create: %s\n", th_msg(r));
    json_decref(r);
    return ok && th_wait_pool(&f->c, "t", "ready", 1, 30000) ? 0 : -1;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    return start(f, NULL);
}

/* Two worker threads, so that a third request waits in libuv's queue. */
static int setup_two_threads(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    return start(f, "2");
}

static int teardown(void **state)
{
    fx_t *f = *state;
    int rc = th_finish(&f->d, &f->c);
    free(f);
    return rc;
}

/* A sleep length no other process on the machine uses: it names the workload. */
static unsigned new_marker(void)
{
    return 40000 + ((unsigned)getpid() * 16 + marker_seq++) % 20000;
}

/* Pids of running (not zombie) `sleep MARKER` processes, at most max. */
static int find_marker(unsigned marker, pid_t *out, int max)
{
    char want[16];
    snprintf(want, sizeof(want), "%u", marker);
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < max) {
        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        char path[300], buf[256];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t len = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[len] = '\0';
        /* argv[0] ends in "sleep", argv[1] is the marker */
        size_t a0 = strlen(buf);
        if (a0 + 1 >= len || a0 < 5 || strcmp(buf + a0 - 5, "sleep") || strcmp(buf + a0 + 1, want))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        fp = fopen(path, "r");
        if (!fp)
            continue;
        char st = 0;
        if (fscanf(fp, "%*d (%*[^)]) %c", &st) != 1)
            st = 0;
        fclose(fp);
        if (st && st != 'Z')
            out[n++] = (pid_t)atoi(de->d_name);
    }
    closedir(d);
    return n;
}

static bool marker_running(unsigned marker)
{
    pid_t p;
    return find_marker(marker, &p, 1) > 0;
}

static bool wait_marker(unsigned marker, bool running, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        if (marker_running(marker) == running)
            return true;
        nap(10);
    }
    return false;
}

/* Send a request line without waiting for its reply. */
static void send_req(th_conn_t *c, long id, const char *method, json_t *params)
{
    json_t *m = json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", (json_int_t)id, "method",
                          method, "params", params);
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    assert_non_null(s);
    size_t n = strlen(s);
    char *line = malloc(n + 2);
    memcpy(line, s, n);
    line[n] = '\n';
    assert_int_equal(th_send_raw(c, line, n + 1), 0);
    free(line);
    free(s);
}

static json_t *sleep_params(const char *key, const char *val, unsigned marker)
{
    char arg[16];
    snprintf(arg, sizeof(arg), "%u", marker);
    return json_pack("{s:s, s:[s,s], s:i}", key, val, "argv", "sleep", arg, "timeout_ms", 30000);
}

static char *acquire(th_conn_t *c, int lease_s)
{
    json_t *p = json_pack("{s:s}", "template", "t");
    if (lease_s)
        json_object_set_new(p, "lease_s", json_integer(lease_s));
    json_t *r = th_ok(c, "sandbox.acquire", p);
    char *id = strdup(json_string_value(json_object_get(r, "id")));
    json_decref(r);
    return id;
}

/*
 * After the close at t0: wait for every marker process to go and for
 * nothing to be busy (no request in flight, no sandbox in use, `handed`
 * handed out); print how long each took; serve a request to show the
 * server is free.
 */
static void expect_freed(fx_t *f, const char *what, uint64_t t0, const unsigned *markers, int n,
                         long handed)
{
    for (int i = 0; i < n; i++)
        if (!wait_marker(markers[i], false, GONE_MS))
            fail_msg("the command 'sleep %u' still runs %d ms after its client left", markers[i],
                     GONE_MS);
    uint64_t t_gone = now_ms();
    bool idle = false;
    while (!idle && now_ms() - t0 < GONE_MS + 2000) {
        idle = th_server_stat(&f->c, "requests_in_flight") == 0 &&
               th_pool_get(&f->c, "t", "in_use") == handed &&
               th_server_stat(&f->c, "handed_out") == handed;
        if (!idle)
            nap(10);
    }
    uint64_t t_idle = now_ms();
    if (!idle)
        fail_msg("still busy %d ms after the client left: in flight %ld, in use %ld, handed out "
                 "%ld",
                 GONE_MS, th_server_stat(&f->c, "requests_in_flight"),
                 th_pool_get(&f->c, "t", "in_use"), th_server_stat(&f->c, "handed_out"));
    if (n)
        fprintf(stderr, "[%s] %s: after the disconnect, commands gone in %llu ms,", tier, what,
                (unsigned long long)(t_gone - t0));
    else
        fprintf(stderr, "[%s] %s: after the disconnect,", tier, what);
    fprintf(stderr, " nothing busy in %llu ms\n", (unsigned long long)(t_idle - t0));
    json_t *r = th_ok(&f->c, "sandbox.run",
                      json_pack("{s:s, s:[s,s]}", "template", "t", "argv", "echo", "served"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "served\n");
    json_decref(r);
}

/*
 * A client starts `sleep MARKER` through sandbox.run, or through
 * sandbox.exec on a sandbox it acquires first (leased for lease_s when not
 * 0), and closes its socket once the command runs; then expect_freed.
 * Returns the sandbox id for an exec (the caller frees it), NULL for a run.
 */
static char *sleep_and_leave(fx_t *f, const char *what, bool exec, int lease_s)
{
    th_conn_t a;
    assert_int_equal(th_connect(&a, f->d.sock), 0);
    char *id = exec ? acquire(&a, lease_s) : NULL;
    unsigned m = new_marker();
    if (exec)
        send_req(&a, 100, "sandbox.exec", sleep_params("id", id, m));
    else
        send_req(&a, 100, "sandbox.run", sleep_params("template", "t", m));
    assert_true(wait_marker(m, true, 20000));
    uint64_t t0 = now_ms();
    th_close(&a);
    expect_freed(f, what, t0, &m, 1, lease_s ? 1 : 0);
    return id;
}

static void test_run_cancelled_on_disconnect(void **state)
{
    fx_t *f = *state;
    long cancelled0 = th_server_stat(&f->c, "cancelled");
    sleep_and_leave(f, "run", false, 0);
    assert_int_equal(th_server_stat(&f->c, "cancelled"), cancelled0 + 1);
}

static void test_exec_cancelled_on_disconnect(void **state)
{
    free(sleep_and_leave(*state, "exec", true, 0));
}

/* A leased sandbox outlives its connection; the command it ran does not. */
static void test_leased_exec_killed_sandbox_kept(void **state)
{
    fx_t *f = *state;
    char *id = sleep_and_leave(f, "leased exec", true, 120);
    /* Same uid, new connection: the sandbox is there, idle, and works. */
    json_t *r = th_ok(&f->c, "sandbox.list", NULL);
    json_t *sb = json_array_get(json_object_get(r, "sandboxes"), 0);
    assert_string_equal(json_string_value(json_object_get(sb, "id")), id);
    assert_false(json_is_true(json_object_get(sb, "busy")));
    json_decref(r);
    r = th_ok(&f->c, "sandbox.exec", json_pack("{s:s, s:[s,s]}", "id", id, "argv", "echo", "kept"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "kept\n");
    json_decref(r);
    json_decref(th_ok(&f->c, "sandbox.release", json_pack("{s:s}", "id", id)));
    free(id);
}

/* Two execs and file transfers in flight on one sandbox, then the client goes. */
static void test_busy_sandbox_cancelled_on_disconnect(void **state)
{
    fx_t *f = *state;
    th_conn_t a;
    assert_int_equal(th_connect(&a, f->d.sock), 0);
    char *id = acquire(&a, 0);
    unsigned m[2] = {new_marker(), new_marker()};
    send_req(&a, 100, "sandbox.exec", sleep_params("id", id, m[0]));
    send_req(&a, 101, "sandbox.exec", sleep_params("id", id, m[1]));
    /* 3 MiB in, and read back (the transfers may finish or be cut short). */
    size_t n = 3u << 20;
    char *data = malloc(n + 1);
    memset(data, 'x', n);
    data[n] = '\0';
    char tmpf[64]; /* per process: the process and sentry runs may overlap */
    snprintf(tmpf, sizeof(tmpf), "/tmp/thaw-cancel-%d.bin", (int)getpid());
    send_req(&a, 102, "sandbox.put_file",
             json_pack("{s:s, s:s, s:s}", "id", id, "path", tmpf, "data", data));
    free(data);
    send_req(&a, 103, "sandbox.get_file", json_pack("{s:s, s:s}", "id", id, "path", tmpf));
    assert_true(wait_marker(m[0], true, 20000));
    assert_true(wait_marker(m[1], true, 20000));
    uint64_t t0 = now_ms();
    th_close(&a);
    expect_freed(f, "2 execs + put + get", t0, m, 2, 0);
    if (!strcmp(tier, "process"))
        unlink(tmpf);
    free(id);
}

/*
 * With two worker threads busy on the client's first two runs, its other
 * runs wait in the queue.  The disconnect drops them: they never start.
 */
static void test_queued_requests_dropped_on_disconnect(void **state)
{
    fx_t *f = *state;
    long cancelled0 = th_server_stat(&f->c, "cancelled");
    th_conn_t a;
    assert_int_equal(th_connect(&a, f->d.sock), 0);
    unsigned m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = new_marker();
        send_req(&a, 200 + i, "sandbox.run", sleep_params("template", "t", m[i]));
    }
    /* Which two run is up to libuv's queue order: wait for two. */
    int running = 0;
    bool is_running[4] = {false};
    for (int waited = 0; running < 2 && waited < 30000; waited += 10) {
        running = 0;
        for (int i = 0; i < 4; i++)
            running += (is_running[i] = marker_running(m[i]));
        if (running < 2)
            nap(10);
    }
    assert_int_equal(running, 2);
    nap(300);
    for (int i = 0; i < 4; i++)
        assert_int_equal(marker_running(m[i]), is_running[i]); /* still queued: not started */
    uint64_t t0 = now_ms();
    th_close(&a);
    /* Watch the queued ones while the running ones go, and a while after
     * (a worker freed by a cancel is what would pick one up): they must
     * never start. */
    uint64_t until = t0 + GONE_MS;
    while (now_ms() < until) {
        int left = 0;
        for (int i = 0; i < 4; i++) {
            bool r = marker_running(m[i]);
            if (r && !is_running[i])
                fail_msg("queued 'sleep %u' started after its client left", m[i]);
            left += r;
        }
        if (left == 0 && until == t0 + GONE_MS) {
            until = now_ms() + 500;
            fprintf(stderr, "[%s] queued: the 2 running commands gone in %llu ms\n", tier,
                    (unsigned long long)(now_ms() - t0));
        }
        nap(5);
    }
    expect_freed(f, "queued (after a 500 ms watch)", t0, m, 4, 0);
    assert_int_equal(th_server_stat(&f->c, "cancelled"), cancelled0 + 4);
}

/*
 * A half-close (shutdown(SHUT_WR), as `echo REQ | socat` does) is not a
 * disconnect: the command keeps running and the reply would come.  Closing
 * the socket for good afterwards cancels it.
 */
static void test_half_close_then_close(void **state)
{
    fx_t *f = *state;
    th_conn_t a;
    assert_int_equal(th_connect(&a, f->d.sock), 0);
    unsigned m = new_marker();
    send_req(&a, 1, "sandbox.run", sleep_params("template", "t", m));
    assert_true(wait_marker(m, true, 20000));
    assert_int_equal(shutdown(a.fd, SHUT_WR), 0);
    nap(2500); /* longer than thawd's 1 s check for half-closed clients */
    assert_true(marker_running(m));
    assert_int_equal(th_server_stat(&f->c, "requests_in_flight"), 1);
    uint64_t t0 = now_ms();
    th_close(&a);
    expect_freed(f, "half-closed, then closed", t0, &m, 1, 0);
}

/* Half-closed with a short command: its reply still arrives. */
static void test_half_close_still_answered(void **state)
{
    fx_t *f = *state;
    th_conn_t a;
    assert_int_equal(th_connect(&a, f->d.sock), 0);
    send_req(
        &a, 7, "sandbox.run",
        json_pack("{s:s, s:[s,s,s]}", "template", "t", "argv", "sh", "-c", "sleep 1.5; echo late"));
    assert_int_equal(shutdown(a.fd, SHUT_WR), 0);
    json_t *r = th_recv(&a, 20000);
    assert_non_null(r);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 7);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "result"), "stdout")),
                        "late\n");
    json_decref(r);
    th_close(&a);
}

/*
 * A guest that hangs mid-exec answers nothing, kill frames included: the
 * cancel gives it AGENT_EXEC_CANCEL_WAIT_MS, then the sandbox is destroyed.
 */
static void test_vm_hung_guest_freed_on_disconnect(void **state)
{
    fx_t *f = *state;
    for (int exec = 0; exec < 2; exec++) {
        th_conn_t a;
        assert_int_equal(th_connect(&a, f->d.sock), 0);
        char *id = exec ? acquire(&a, 0) : NULL;
        json_t *p = json_pack("{s:[s], s:i}", "argv", "hang", "timeout_ms", 30000);
        json_object_set_new(p, exec ? "id" : "template", json_string(exec ? id : "t"));
        send_req(&a, 300, exec ? "sandbox.exec" : "sandbox.run", p);
        /* Nothing to see from outside a hung guest: let it get going. */
        nap(1000);
        assert_int_equal(th_server_stat(&f->c, "requests_in_flight"), 1);
        uint64_t t0 = now_ms();
        th_close(&a);
        expect_freed(f, exec ? "hung guest, exec" : "hung guest, run", t0, NULL, 0, 0);
        /* And its VM destroyed: every live sandbox is a ready or new one. */
        bool destroyed = false;
        for (int waited = 0; !destroyed && waited < GONE_MS; waited += 20) {
            long live = th_server_stat(&f->c, "sandboxes");
            destroyed =
                live == th_pool_get(&f->c, "t", "ready") + th_pool_get(&f->c, "t", "creating");
            if (!destroyed)
                nap(20);
        }
        assert_true(destroyed);
        free(id);
    }
}

int main(int argc, char **argv)
{
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    if (argc > 1)
        tier = argv[1];
    if (strcmp(tier, "process") && geteuid() != 0)
        thaw_test_skip("the %s tier needs root", tier);
    if (!strcmp(tier, "vm")) {
        if (argc < 3)
            thaw_test_skip("usage: test-rpc-cancel vm GUEST_IMAGE");
        guest = argv[2];
        thaw_test_require_kvm();
        const struct CMUnitTest vm_tests[] = {
            cmocka_unit_test_setup_teardown(test_vm_hung_guest_freed_on_disconnect, setup,
                                            teardown),
        };
        return cmocka_run_group_tests(vm_tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_run_cancelled_on_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_cancelled_on_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leased_exec_killed_sandbox_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_sandbox_cancelled_on_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_requests_dropped_on_disconnect,
                                        setup_two_threads, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_then_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close_still_answered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
