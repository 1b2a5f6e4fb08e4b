// SPDX-License-Identifier: Apache-2.0
/*
 * --max-inflight-per-uid against a real thawd on a real socket: one uid
 * cannot hold more than N blocking requests (those that hold or wait for a
 * worker thread) across all its connections, so it cannot occupy every
 * worker thread and starve other uids.
 *
 * A blocking request here is a sandbox.run on the process tier whose command
 * waits for a gate file the test creates, so a request ends exactly when the
 * test says so and nothing depends on timing.  What must hold:
 *   - with --threads 4 and a cap of 2, the uid's third blocking request, on
 *     another connection, is refused at once with -32004 and a message naming
 *     the uid and the limit; sandbox.exec and sandbox.acquire are refused the
 *     same way (and the refused exec leaves its sandbox not busy); cheap
 *     methods (server.*, pool.status, template.list, sandbox.list) answer;
 *     server.stats and server.metrics count the refusals;
 *   - once one request finishes a new one is accepted;
 *   - a client that disconnects gives its count back (its work is cancelled);
 *   - the default is 3/4 of --threads (at least 1), 0 means no cap, and
 *     SIGTERM with a uid at its cap still exits cleanly;
 *   - with no cap, requests beyond the worker threads wait in thawd's queue
 *     (server.stats workers_busy, queued, queued_total; the metrics), a
 *     waiting request whose client leaves is dropped and counted cancelled,
 *     and a waiting template.create is dropped at SIGTERM, never started;
 *   - (argv[1] "two-uids", priv: setresuid) while uid A is at its cap, uid B
 *     and root are still served; and waiting uids take turns: on two
 *     threads, with root's r2 and r3 waiting before uid B's request, the
 *     second worker to come free serves B, not r3.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

#define UID_A 40001
#define UID_B 40002
#define GID_C 40000 /* both clients' group: the socket's group */

/* Start thawd on the process tier with extra args and a template "p". */
static int start(th_daemon_t *d, th_conn_t *c, const char *const *extra)
{
    const char *args[16] = {"--enable-process-tier", "--no-default-templates"};
    int n = 2;
    for (int i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (th_start(d, args) < 0 || th_connect(c, d->sock) < 0)
        return -1;
    json_t *r =
        th_call(c, "template.create",
                json_pack("{s:s, s:s, s:i}", "name", "p", "tier", "process", "min_ready", 1));
    int rc = r && !th_code(r) ? 0 : -1;
    if (rc < 0)
        fprintf(stderr, "template.create: %s\n", r ? th_msg(r) : "no reply");
    json_decref(r);
    return rc;
}

/* The path of gate `name` in thawd's temporary directory. */
static void gate_path(const th_daemon_t *d, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/gate-%s", d->dir, name);
}

static void open_gate(const th_daemon_t *d, const char *name)
{
    char p[512];
    gate_path(d, name, p, sizeof(p));
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
}

/* Send a sandbox.run (without waiting) whose command ends when the gate opens. */
static int send_gated_run(th_conn_t *c, const th_daemon_t *d, const char *gate)
{
    char p[512];
    gate_path(d, gate, p, sizeof(p));
    json_t *req =
        json_pack("{s:s, s:I, s:s, s:{s:s, s:[s, s, s, s]}}", "jsonrpc", "2.0", "id",
                  (json_int_t)c->next_id++, "method", "sandbox.run", "params", "template", "p",
                  "argv", "sh", "-c", "while [ ! -e \"$0\" ]; do sleep 0.02; done; echo done", p);
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!s)
        return -1;
    size_t n = strlen(s);
    s[n] = '\n'; /* json_dumps's NUL becomes the line's end */
    int r = th_send_raw(c, s, n + 1);
    free(s);
    return r;
}

/* The next reply (notifications are set aside): 0 if it is a run that printed "done". */
static int gated_reply_ok(th_conn_t *c)
{
    for (;;) {
        json_t *m = th_recv(c, 30000);
        if (!m) {
            fprintf(stderr, "no reply to the gated run\n");
            return -1;
        }
        if (!json_object_get(m, "id")) {
            json_decref(m);
            continue;
        }
        const char *out =
            json_string_value(json_object_get(json_object_get(m, "result"), "stdout"));
        int rc = out && !strcmp(out, "done\n") ? 0 : -1;
        if (rc < 0)
            fprintf(stderr, "gated run: code %d %s\n", th_code(m), th_msg(m));
        json_decref(m);
        return rc;
    }
}

/* Wait until the caller's uid has `want` blocking requests in flight. */
static bool wait_uid_inflight(th_conn_t *c, long want)
{
    return th_wait_server(c, "uid_in_flight", want, 10000);
}

static long info_limit(th_conn_t *c)
{
    json_t *r = th_call(c, "server.info", NULL);
    json_t *v = json_object_get(json_object_get(json_object_get(r, "result"), "limits"),
                                "max_inflight_per_uid");
    long out = json_is_integer(v) ? (long)json_integer_value(v) : -1;
    json_decref(r);
    return out;
}

/* sandbox.run of `echo hi`: the reply (owned). */
static json_t *run_echo(th_conn_t *c)
{
    return th_call(c, "sandbox.run",
                   json_pack("{s:s, s:[s, s]}", "template", "p", "argv", "echo", "hi"));
}

static bool is_uid_refusal(json_t *r, uid_t uid, unsigned limit)
{
    char want[160];
    snprintf(want, sizeof(want),
             "uid %d has %u requests in flight (limit %u, --max-inflight-per-uid)", (int)uid, limit,
             limit);
    if (th_code(r) != -32004 || strcmp(th_msg(r), want)) {
        fprintf(stderr, "expected -32004 \"%s\", got %d \"%s\"\n", want, th_code(r), th_msg(r));
        return false;
    }
    return true;
}

static void assert_cheap_methods_answer(th_conn_t *c)
{
    static const char *const cheap[] = {"server.info", "server.stats",  "server.metrics",
                                        "pool.status", "template.list", "sandbox.list"};
    for (size_t i = 0; i < sizeof(cheap) / sizeof(cheap[0]); i++) {
        json_t *r = th_call(c, cheap[i], NULL);
        assert_non_null(r);
        if (th_code(r))
            fail_msg("%s at the uid's cap: %d %s", cheap[i], th_code(r), th_msg(r));
        json_decref(r);
    }
    json_t *r = th_call(c, "template.get", json_pack("{s:s}", "name", "p"));
    assert_int_equal(th_code(r), 0);
    json_decref(r);
}

static void test_cap_refuses_then_releases(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    th_conn_t ctl, a, b, c, e;
    const char *extra[] = {"--threads", "4", "--max-inflight-per-uid", "2", NULL};
    assert_int_equal(start(&d, &ctl, extra), 0);
    assert_int_equal(info_limit(&ctl), 2);
    /* A sandbox held by ctl, for a sandbox.exec at the cap later. */
    json_t *acq = th_ok(&ctl, "sandbox.acquire", json_pack("{s:s}", "template", "p"));
    char sbid[64];
    snprintf(sbid, sizeof(sbid), "%s", json_string_value(json_object_get(acq, "id")));
    json_decref(acq);
    assert_true(wait_uid_inflight(&ctl, 0));

    /* Two blocking requests on two connections fill this uid's cap. */
    assert_int_equal(th_connect(&a, d.sock), 0);
    assert_int_equal(th_connect(&b, d.sock), 0);
    assert_int_equal(th_connect(&c, d.sock), 0);
    assert_int_equal(send_gated_run(&a, &d, "a"), 0);
    assert_int_equal(send_gated_run(&b, &d, "b"), 0);
    assert_true(wait_uid_inflight(&ctl, 2));

    /* The third, on a third connection, is refused at once: run, acquire, exec. */
    json_t *r = run_echo(&c);
    assert_true(is_uid_refusal(r, getuid(), 2));
    json_decref(r);
    r = th_call(&c, "sandbox.acquire", json_pack("{s:s}", "template", "p"));
    assert_true(is_uid_refusal(r, getuid(), 2));
    json_decref(r);
    r = th_call(&ctl, "sandbox.exec", json_pack("{s:s, s:[s]}", "id", sbid, "argv", "true"));
    assert_true(is_uid_refusal(r, getuid(), 2));
    json_decref(r);
    /* The refused exec did not leave its sandbox busy. */
    json_t *ls = th_ok(&ctl, "sandbox.list", NULL);
    json_t *sb0 = json_array_get(json_object_get(ls, "sandboxes"), 0);
    assert_non_null(sb0);
    assert_false(json_is_true(json_object_get(sb0, "busy")));
    json_decref(ls);

    /* Cheap methods still answer, on a fresh connection too; the refusals are counted. */
    assert_cheap_methods_answer(&c);
    assert_int_equal(th_connect(&e, d.sock), 0);
    assert_cheap_methods_answer(&e);
    assert_int_equal(th_server_stat(&c, "uid_refusals"), 3);
    json_t *m = th_ok(&c, "server.metrics", NULL);
    assert_non_null(
        strstr(json_string_value(json_object_get(m, "text")), "\nthaw_uid_refusals_total 3\n"));
    json_decref(m);
    assert_int_equal(th_server_stat(&c, "uid_in_flight"), 2); /* the refusals took nothing */

    /* One finishes: a new one is accepted. */
    open_gate(&d, "a");
    assert_int_equal(gated_reply_ok(&a), 0);
    r = run_echo(&c);
    assert_int_equal(th_code(r), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "result"), "stdout")),
                        "hi\n");
    json_decref(r);
    json_decref(th_ok(&ctl, "sandbox.exec", json_pack("{s:s, s:[s]}", "id", sbid, "argv", "true")));

    /* Disconnecting gives the count back: e fills the cap again, then leaves. */
    assert_int_equal(send_gated_run(&e, &d, "never"), 0);
    assert_true(wait_uid_inflight(&ctl, 2));
    r = run_echo(&c);
    assert_true(is_uid_refusal(r, getuid(), 2));
    json_decref(r);
    th_close(&e);
    assert_true(wait_uid_inflight(&ctl, 1));
    r = run_echo(&c);
    assert_int_equal(th_code(r), 0);
    json_decref(r);

    open_gate(&d, "b");
    assert_int_equal(gated_reply_ok(&b), 0);
    assert_true(wait_uid_inflight(&ctl, 0));
    assert_int_equal(th_server_stat(&ctl, "uid_refusals"), 4);
    th_close(&a);
    th_close(&b);
    th_close(&c);
    assert_int_equal(th_finish(&d, &ctl), 0);
}

static void test_default_and_no_cap(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    th_conn_t ctl, conns[5];
    /* The default: 3/4 of the threads, so the fourth of four is refused. */
    const char *four[] = {"--threads", "4", NULL};
    assert_int_equal(start(&d, &ctl, four), 0);
    assert_int_equal(info_limit(&ctl), 3);
    for (int i = 0; i < 3; i++) {
        char g[8];
        snprintf(g, sizeof(g), "d%d", i);
        assert_int_equal(th_connect(&conns[i], d.sock), 0);
        assert_int_equal(send_gated_run(&conns[i], &d, g), 0);
    }
    assert_true(wait_uid_inflight(&ctl, 3));
    json_t *r = run_echo(&ctl);
    assert_true(is_uid_refusal(r, getuid(), 3));
    json_decref(r);
    /* SIGTERM with the uid at its cap: the requests are cancelled, thawd exits 0. */
    for (int i = 0; i < 3; i++)
        th_close(&conns[i]);
    assert_int_equal(th_finish(&d, &ctl), 0);

    /* One thread: still a cap of one, never zero. */
    memset(&d, 0, sizeof(d));
    const char *one[] = {"--threads", "1", NULL};
    assert_int_equal(start(&d, &ctl, one), 0);
    assert_int_equal(info_limit(&ctl), 1);
    assert_int_equal(th_finish(&d, &ctl), 0);

    /* Work still waiting for a worker at SIGTERM is dropped, not started:
     * a template.create queued behind a run that holds the one thread. */
    memset(&d, 0, sizeof(d));
    const char *one_nocap[] = {"--threads", "1", "--max-inflight-per-uid", "0", NULL};
    assert_int_equal(start(&d, &ctl, one_nocap), 0);
    assert_int_equal(th_connect(&conns[0], d.sock), 0);
    assert_int_equal(th_connect(&conns[1], d.sock), 0);
    assert_int_equal(send_gated_run(&conns[0], &d, "never"), 0);
    assert_true(th_wait_server(&ctl, "workers_busy", 1, 10000));
    static const char create[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"template.create\","
                                 "\"params\":{\"name\":\"late\",\"tier\":\"process\"}}\n";
    assert_int_equal(th_send_raw(&conns[1], create, sizeof(create) - 1), 0);
    assert_true(th_wait_server(&ctl, "queued", 1, 10000));
    th_close(&ctl);
    assert_int_equal(th_stop(&d), 0);
    char late[600];
    snprintf(late, sizeof(late), "%s/templates/late", d.store);
    struct stat st;
    bool created = stat(late, &st) == 0;
    th_close(&conns[0]);
    th_close(&conns[1]);
    th_cleanup(&d);
    assert_false(created);

    /* 0: no cap; a fifth request on four threads waits for one in thawd's
     * queue, and a sixth that waits is dropped when its client leaves. */
    memset(&d, 0, sizeof(d));
    const char *nocap[] = {"--threads", "4", "--max-inflight-per-uid", "0", NULL};
    assert_int_equal(start(&d, &ctl, nocap), 0);
    assert_int_equal(info_limit(&ctl), 0);
    assert_int_equal(th_server_stat(&ctl, "workers"), 4);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(th_connect(&conns[i], d.sock), 0);
        assert_int_equal(send_gated_run(&conns[i], &d, "open"), 0);
    }
    assert_true(wait_uid_inflight(&ctl, 5));
    assert_true(th_wait_server(&ctl, "workers_busy", 4, 10000));
    assert_int_equal(th_server_stat(&ctl, "queued"), 1);
    th_conn_t leaver;
    assert_int_equal(th_connect(&leaver, d.sock), 0);
    assert_int_equal(send_gated_run(&leaver, &d, "open"), 0);
    assert_true(th_wait_server(&ctl, "queued", 2, 10000));
    th_close(&leaver);
    assert_true(th_wait_server(&ctl, "queued", 1, 10000));
    assert_int_equal(th_server_stat(&ctl, "cancelled"), 1);
    assert_int_equal(th_server_stat(&ctl, "workers_busy"), 4);
    open_gate(&d, "open");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gated_reply_ok(&conns[i]), 0);
        th_close(&conns[i]);
    }
    assert_int_equal(th_server_stat(&ctl, "uid_refusals"), 0);
    assert_true(th_wait_server(&ctl, "queued", 0, 10000));
    assert_int_equal(th_server_stat(&ctl, "queued_total"), 2);
    json_t *m = th_ok(&ctl, "server.metrics", NULL);
    assert_non_null(
        strstr(json_string_value(json_object_get(m, "text")), "\nthaw_requests_queued_total 2\n"));
    json_decref(m);
    assert_int_equal(th_finish(&d, &ctl), 0);
}

/* ---- two uids (priv) ---- */

/*
 * uid A: fill the cap of 2 on two connections, see the third refused, tell
 * the parent (a byte on ready_fd), then wait for both runs to finish once the
 * parent opens their gates.
 */
static int uid_a_fills_its_cap(const th_daemon_t *d, int ready_fd)
{
    th_conn_t a1, a2, a3;
    TH_CHILD_CHECK(th_connect(&a1, d->sock) == 0 && th_connect(&a2, d->sock) == 0 &&
                       th_connect(&a3, d->sock) == 0,
                   "connect: %s", strerror(errno));
    TH_CHILD_CHECK(send_gated_run(&a1, d, "a1") == 0 && send_gated_run(&a2, d, "a2") == 0, "send");
    TH_CHILD_CHECK(wait_uid_inflight(&a3, 2), "uid A never had 2 in flight");
    json_t *r = run_echo(&a3);
    TH_CHILD_CHECK(is_uid_refusal(r, UID_A, 2), "A's third request was not refused");
    json_decref(r);
    r = th_call(&a3, "server.info", NULL);
    TH_CHILD_CHECK(r && !th_code(r), "server.info at the cap: %s", th_msg(r));
    json_decref(r);
    TH_CHILD_CHECK(write(ready_fd, "R", 1) == 1, "write: %s", strerror(errno));
    TH_CHILD_CHECK(gated_reply_ok(&a1) == 0 && gated_reply_ok(&a2) == 0, "A's runs did not finish");
    TH_CHILD_CHECK(wait_uid_inflight(&a3, 0), "A's count did not return to 0");
    th_close(&a1);
    th_close(&a2);
    th_close(&a3);
    return 0;
}

/* uid B, while A is at its cap: served, and its own count is its own. */
static int uid_b_is_served(const th_daemon_t *d)
{
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    TH_CHILD_CHECK(th_server_stat(&c, "uid_in_flight") == 0, "B is charged for A's requests");
    for (int i = 0; i < 2; i++) {
        json_t *r = run_echo(&c);
        TH_CHILD_CHECK(r && !th_code(r), "B's run %d: %d %s", i, th_code(r), th_msg(r));
        json_decref(r);
    }
    th_close(&c);
    return 0;
}

static int wait_child(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_other_uid_served_while_one_at_cap(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    th_conn_t root;
    const char *extra[] = {"--threads", "4", "--max-inflight-per-uid", "2", NULL};
    assert_int_equal(start(&d, &root, extra), 0);
    /* The socket is 0660: the clients reach it through its group. */
    assert_int_equal(chown(d.sock, 0, GID_C), 0);

    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t a = fork();
    assert_true(a >= 0);
    if (a == 0) {
        close(pfd[0]);
        _exit(th_become(UID_A, GID_C) < 0 ? 2 : uid_a_fills_its_cap(&d, pfd[1]));
    }
    close(pfd[1]);
    struct pollfd p = {.fd = pfd[0], .events = POLLIN};
    char ch = 0;
    bool ready = poll(&p, 1, 30000) == 1 && read(pfd[0], &ch, 1) == 1 && ch == 'R';
    close(pfd[0]);
    if (!ready) {
        kill(a, SIGKILL);
        wait_child(a);
        th_finish(&d, &root);
        fail_msg("uid A did not reach its cap");
    }

    /* A is at its cap: B and root are served. */
    pid_t b = fork();
    assert_true(b >= 0);
    if (b == 0)
        _exit(th_become(UID_B, GID_C) < 0 ? 2 : uid_b_is_served(&d));
    assert_int_equal(wait_child(b), 0);
    json_t *r = run_echo(&root);
    assert_int_equal(th_code(r), 0);
    json_decref(r);
    assert_int_equal(th_server_stat(&root, "uid_refusals"), 1);

    open_gate(&d, "a1");
    open_gate(&d, "a2");
    assert_int_equal(wait_child(a), 0);
    assert_int_equal(th_finish(&d, &root), 0);
}

/* uid B: one gated run, sent while root's requests hold every worker and
 * more of root's wait; 0 once its reply says "done". */
static int uid_b_waits_its_turn(const th_daemon_t *d)
{
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    TH_CHILD_CHECK(send_gated_run(&c, d, "b") == 0, "send");
    TH_CHILD_CHECK(gated_reply_ok(&c) == 0, "B's run did not finish");
    th_close(&c);
    return 0;
}

/* Open gate `name` and check that connection c's gated run then finishes. */
static void finish_gated(th_daemon_t *d, th_conn_t *c, const char *name)
{
    open_gate(d, name);
    assert_int_equal(gated_reply_ok(c), 0);
}

static void test_waiting_uids_take_turns(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    th_conn_t root, r[4];
    const char *extra[] = {"--threads", "2", "--max-inflight-per-uid", "0", NULL};
    assert_int_equal(start(&d, &root, extra), 0);
    assert_int_equal(chown(d.sock, 0, GID_C), 0);

    /* Root: r0 and r1 on the two workers, then r2 and r3 waiting, in that order. */
    static const char *const gates[] = {"r0", "r1", "r2", "r3"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(th_connect(&r[i], d.sock), 0);
        assert_int_equal(send_gated_run(&r[i], &d, gates[i]), 0);
        assert_true(i < 2 ? th_wait_server(&root, "workers_busy", i + 1, 10000)
                          : th_wait_server(&root, "queued", i - 1, 10000));
    }
    /* uid B queues one request behind root's two. */
    pid_t b = fork();
    assert_true(b >= 0);
    if (b == 0)
        _exit(th_become(UID_B, GID_C) < 0 ? 2 : uid_b_waits_its_turn(&d));
    assert_true(th_wait_server(&root, "queued", 3, 10000));

    /* The first free worker goes to root's r2 (root waited first), the
     * second to B, not to root's r3: turns go by uid, not by arrival. */
    finish_gated(&d, &r[0], "r0");
    assert_true(th_wait_server(&root, "queued", 2, 10000));
    finish_gated(&d, &r[1], "r1");
    assert_true(th_wait_server(&root, "queued", 1, 10000));
    open_gate(&d, "b");
    if (!th_wait_gone(b, 15000)) {
        kill(b, SIGKILL);
        wait_child(b);
        fail_msg("uid B's request waited behind root's r3: no turn by uid");
    }
    assert_int_equal(wait_child(b), 0);
    /* B's worker went to r3: both of root's gated runs hold one now. */
    assert_true(th_wait_server(&root, "queued", 0, 10000));
    assert_true(th_wait_server(&root, "workers_busy", 2, 10000));
    finish_gated(&d, &r[2], "r2");
    finish_gated(&d, &r[3], "r3");
    for (int i = 0; i < 4; i++)
        th_close(&r[i]);
    assert_int_equal(th_server_stat(&root, "queued_total"), 3);
    assert_int_equal(th_finish(&d, &root), 0);
}

int main(int argc, char **argv)
{
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    if (argc > 1 && !strcmp(argv[1], "two-uids")) {
        thaw_test_require_root();
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_other_uid_served_while_one_at_cap),
            cmocka_unit_test(test_waiting_uids_take_turns),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_refuses_then_releases),
        cmocka_unit_test(test_default_and_no_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
