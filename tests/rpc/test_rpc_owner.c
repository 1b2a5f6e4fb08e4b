// SPDX-License-Identifier: Apache-2.0
/*
 * Ownership across uids, against a real thawd: clients are forked and drop
 * to uid A or uid B with setresuid, so SO_PEERCRED reports what the kernel
 * knows.  uid B cannot see, exec into, read from or release uid A's sandbox
 * (it gets "not found", exactly as for an id that never existed), root does
 * not see it either, and with --allow-uid only the listed uid is served.
 * The socket is mode 0660; the clients reach it through its group.
 * Needs root (setresuid); priv suite.
 */
#include <errno.h>
#include <grp.h>
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

/* Run fn(arg) in a child as uid; returns its exit status. */
static int as_uid(uid_t uid, int (*fn)(const th_daemon_t *, char *), const th_daemon_t *d,
                  char *arg)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        if (th_become(uid, GID_C) < 0)
            _exit(2);
        char out[128] = "";
        int rc = fn(d, out);
        if (write(pfd[1], out, strlen(out)) < 0)
            _exit(3);
        _exit(rc);
    }
    close(pfd[1]);
    char buf[128] = "";
    ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
    close(pfd[0]);
    if (n > 0 && arg)
        memcpy(arg, buf, (size_t)n), arg[n] = '\0';
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int a_acquires(const th_daemon_t *d, char *out)
{
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    json_t *r =
        th_call(&c, "sandbox.acquire", json_pack("{s:s, s:i}", "template", "p", "lease_s", 60));
    TH_CHILD_CHECK(r && !th_code(r), "acquire: %s", th_msg(r));
    snprintf(out, 128, "%s",
             json_string_value(json_object_get(json_object_get(r, "result"), "id")));
    json_decref(r);
    r = th_call(&c, "server.info", NULL);
    TH_CHILD_CHECK(json_integer_value(json_object_get(json_object_get(r, "result"), "uid")) ==
                       UID_A,
                   "server.info reports another uid");
    json_decref(r);
    th_close(&c);
    return 0;
}

static char shared_id[128];

static int b_is_denied(const th_daemon_t *d, char *out)
{
    (void)out;
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    json_t *r = th_call(&c, "sandbox.list", NULL);
    TH_CHILD_CHECK(
        r && json_array_size(json_object_get(json_object_get(r, "result"), "sandboxes")) == 0,
        "B sees sandboxes");
    json_decref(r);
    r = th_call(&c, "sandbox.exec", json_pack("{s:s, s:[s]}", "id", shared_id, "argv", "true"));
    TH_CHILD_CHECK(th_code(r) == -32001, "exec into A's sandbox: %d %s", th_code(r), th_msg(r));
    json_decref(r);
    r = th_call(&c, "sandbox.get_file",
                json_pack("{s:s, s:s}", "id", shared_id, "path", "/etc/hostname"));
    TH_CHILD_CHECK(th_code(r) == -32001, "get_file from A's sandbox: %d", th_code(r));
    json_decref(r);
    r = th_call(&c, "sandbox.put_file",
                json_pack("{s:s, s:s, s:s}", "id", shared_id, "path", "/tmp/x", "data", "x"));
    TH_CHILD_CHECK(th_code(r) == -32001, "put_file into A's sandbox: %d", th_code(r));
    json_decref(r);
    r = th_call(&c, "sandbox.release", json_pack("{s:s}", "id", shared_id));
    TH_CHILD_CHECK(th_code(r) == -32001, "release of A's sandbox: %d", th_code(r));
    /* The message is the one any unknown id gets: nothing is revealed. */
    TH_CHILD_CHECK(strstr(th_msg(r), "not found"), "message: %s", th_msg(r));
    json_decref(r);
    th_close(&c);
    return 0;
}

static int b_is_not_admin(const th_daemon_t *d, char *out)
{
    (void)out;
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    json_t *r =
        th_call(&c, "template.create", json_pack("{s:s, s:s}", "name", "mine", "tier", "process"));
    TH_CHILD_CHECK(th_code(r) == -32007, "template.create by a non-admin: %d %s", th_code(r),
                   th_msg(r));
    json_decref(r);
    r = th_call(&c, "template.delete", json_pack("{s:s}", "name", "p"));
    TH_CHILD_CHECK(th_code(r) == -32007, "template.delete by a non-admin: %d", th_code(r));
    json_decref(r);
    r = th_call(&c, "pool.configure", json_pack("{s:s, s:i}", "name", "p", "min_ready", 3));
    TH_CHILD_CHECK(th_code(r) == -32007, "pool.configure by a non-admin: %d", th_code(r));
    json_decref(r);
    /* Reading is for everyone. */
    r = th_call(&c, "template.list", NULL);
    TH_CHILD_CHECK(r && !th_code(r), "template.list: %s", th_msg(r));
    json_decref(r);
    th_close(&c);
    return 0;
}

static int a_still_owns(const th_daemon_t *d, char *out)
{
    (void)out;
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    json_t *r = th_call(&c, "sandbox.list", NULL);
    json_t *arr = json_object_get(json_object_get(r, "result"), "sandboxes");
    TH_CHILD_CHECK(json_array_size(arr) == 1, "A has %zu sandboxes", json_array_size(arr));
    TH_CHILD_CHECK(
        !strcmp(json_string_value(json_object_get(json_array_get(arr, 0), "id")), shared_id),
        "A sees another id");
    json_decref(r);
    r = th_call(&c, "sandbox.exec",
                json_pack("{s:s, s:[s,s]}", "id", shared_id, "argv", "echo", "mine"));
    TH_CHILD_CHECK(!th_code(r), "A's exec: %s", th_msg(r));
    json_decref(r);
    r = th_call(&c, "sandbox.release", json_pack("{s:s}", "id", shared_id));
    TH_CHILD_CHECK(!th_code(r), "A's release: %s", th_msg(r));
    json_decref(r);
    th_close(&c);
    return 0;
}

static int is_refused(const th_daemon_t *d, char *out)
{
    (void)out;
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    json_t *first = th_recv(&c, 10000); /* thawd speaks first, then hangs up */
    TH_CHILD_CHECK(first && th_code(first) == -32007, "expected -32007, got %d", th_code(first));
    TH_CHILD_CHECK(strstr(th_msg(first), "not allowed"), "message: %s", th_msg(first));
    json_decref(first);
    TH_CHILD_CHECK(th_recv(&c, 10000) == NULL, "connection still open");
    th_close(&c);
    return 0;
}

static int is_served(const th_daemon_t *d, char *out)
{
    (void)out;
    th_conn_t c;
    TH_CHILD_CHECK(th_connect(&c, d->sock) == 0, "connect: %s", strerror(errno));
    json_t *r = th_call(&c, "server.info", NULL);
    TH_CHILD_CHECK(r && !th_code(r), "server.info: %s", th_msg(r));
    json_decref(r);
    th_close(&c);
    return 0;
}

static void open_socket_to_group(const th_daemon_t *d)
{
    struct stat st;
    assert_int_equal(stat(d->sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(chown(d->sock, 0, GID_C), 0);
}

static void test_uid_b_cannot_touch_uid_a(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    const char *args[] = {"--enable-process-tier", "--no-default-templates", NULL};
    assert_int_equal(th_start(&d, args), 0);
    open_socket_to_group(&d);
    th_conn_t root;
    assert_int_equal(th_connect(&root, d.sock), 0);
    json_decref(
        th_ok(&root, "template.create",
              json_pack("{s:s, s:s, s:i}", "name", "p", "tier", "process", "min_ready", 1)));
    assert_int_equal(as_uid(UID_A, a_acquires, &d, shared_id), 0);
    assert_int_equal(strncmp(shared_id, "sb-", 3), 0);
    assert_int_equal(as_uid(UID_B, b_is_denied, &d, NULL), 0);
    assert_int_equal(as_uid(UID_B, b_is_not_admin, &d, NULL), 0);
    /* Not even root sees another uid's sandbox through the API. */
    json_t *r =
        th_call(&root, "sandbox.exec", json_pack("{s:s, s:[s]}", "id", shared_id, "argv", "true"));
    assert_int_equal(th_code(r), -32001);
    json_decref(r);
    assert_int_equal(as_uid(UID_A, a_still_owns, &d, NULL), 0);
    th_close(&root);
    assert_int_equal(th_stop(&d), 0);
    th_cleanup(&d);
}

static void test_allowed_uids(void **state)
{
    (void)state;
    th_daemon_t d = {0};
    char uid_a[16];
    snprintf(uid_a, sizeof(uid_a), "%d", UID_A);
    const char *args[] = {"--enable-process-tier", "--no-default-templates", "--allow-uid", uid_a,
                          NULL};
    assert_int_equal(th_start(&d, args), 0);
    open_socket_to_group(&d);
    assert_int_equal(as_uid(UID_A, is_served, &d, NULL), 0);
    assert_int_equal(as_uid(UID_B, is_refused, &d, NULL), 0);
    assert_int_equal(th_stop(&d), 0);
    th_cleanup(&d);
}

int main(void)
{
    thaw_test_require_root();
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uid_b_cannot_touch_uid_a),
        cmocka_unit_test(test_allowed_uids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
