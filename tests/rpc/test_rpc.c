// SPDX-License-Identifier: Apache-2.0
/*
 * The JSON-RPC service, against a real thawd on a real socket: framing
 * (several requests per write, one request over many writes, blank lines),
 * every method, every error code with the connection still usable after it,
 * oversized and truncated messages, clients that vanish mid-request, leases,
 * streaming, binary-safe output, per-connection limits and a clean SIGTERM.
 * Sandboxes are the process tier (the real agent, no isolation) so this runs
 * without root.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

typedef struct fx {
    th_daemon_t d;
    th_conn_t c;
} fx_t;

static int start(fx_t *f, const char *const *extra)
{
    const char *args[32] = {"--enable-process-tier", "--no-default-templates",
                            "--max-message",         "65536",
                            "--max-inflight",        "4",
                            "--max-exec-ms",         "20000",
                            "--max-output",          "100000"};
    int n = 10;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    if (th_start(&f->d, args) < 0 || th_connect(&f->c, f->d.sock) < 0)
        return -1;
    json_decref(
        th_ok(&f->c, "template.create",
              json_pack("{s:s, s:s, s:i}", "name", "p", "tier", "process", "min_ready", 1)));
    return 0;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    *state = f;
    return start(f, NULL);
}

static int teardown(void **state)
{
    fx_t *f = *state;
    int rc = th_finish(&f->d, &f->c);
    free(f);
    return rc;
}

/* Send raw bytes and read the next reply (notifications are set aside). */
static json_t *raw(th_conn_t *c, const char *s)
{
    assert_int_equal(th_send_raw(c, s, strlen(s)), 0);
    for (;;) {
        json_t *m = th_recv(c, 10000);
        if (!m || json_object_get(m, "id"))
            return m;
        json_array_append_new(c->notes, m);
    }
}

static void assert_usable(th_conn_t *c)
{
    json_t *r = th_ok(c, "server.info", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "name")), "thawd");
    json_decref(r);
}

static void test_framing(void **state)
{
    fx_t *f = *state;
    /* Two requests in one write, then one request a byte at a time. */
    json_t *a = raw(&f->c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.info\"}\n"
                           "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"template.list\"}\n");
    json_t *b = th_recv(&f->c, 10000);
    assert_int_equal(json_integer_value(json_object_get(a, "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(b, "id")), 2);
    json_decref(a);
    json_decref(b);
    const char *req = "{\"jsonrpc\":\"2.0\",\"id\":\"s\",\"method\":\"server.info\"}\r\n";
    for (const char *p = req; *p; p++) {
        assert_int_equal(th_send_raw(&f->c, p, 1), 0);
        usleep(200);
    }
    a = th_recv(&f->c, 10000);
    assert_string_equal(json_string_value(json_object_get(a, "id")), "s");
    assert_non_null(json_object_get(a, "result"));
    json_decref(a);
    /* Blank lines are not requests: the next reply is for id 3. */
    a = raw(&f->c, "\n\n  \n{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"server.info\"}\n");
    assert_int_equal(json_integer_value(json_object_get(a, "id")), 3);
    json_decref(a);
    /* A notification (no id) gets no reply. */
    a = raw(&f->c, "{\"jsonrpc\":\"2.0\",\"method\":\"server.info\"}\n"
                   "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"server.info\"}\n");
    assert_int_equal(json_integer_value(json_object_get(a, "id")), 4);
    json_decref(a);
}

static void expect_error(th_conn_t *c, const char *line, int code, const char *words)
{
    json_t *r = raw(c, line);
    assert_non_null(r);
    if (th_code(r) != code || !strstr(th_msg(r), words))
        fail_msg("sent %s: got code %d '%s', wanted %d with '%s'", line, th_code(r), th_msg(r),
                 code, words);
    json_decref(r);
    assert_usable(c);
}

static void test_error_codes(void **state)
{
    fx_t *f = *state;
    th_conn_t *c = &f->c;
    expect_error(c, "{not json\n", -32700, "Parse error");
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.info\"\n", -32700,
                 "Parse error");
    expect_error(c, "[1,2]\n", -32600, "batch");
    expect_error(c, "42\n", -32600, "object");
    expect_error(c, "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"server.info\"}\n", -32600, "2.0");
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1}\n", -32600, "method");
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"server.info\"}\n", -32600, "id");
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"nope.nothing\"}\n", -32601,
                 "nope.nothing");
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.info\",\"params\":[1]}\n",
                 -32602, "object");
    expect_error(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":{}}\n",
                 -32602, "'argv' is required");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":\"echo\"}}\n",
                 -32602, "argv");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":[\"true\"],\"tiemout_ms\":5}}\n",
                 -32602, "tiemout_ms");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"template.create\",\"params\":"
                 "{\"name\":\"bad name!\"}}\n",
                 -32602, "template name");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"template.create\",\"params\":"
                 "{\"name\":\"p\",\"tier\":\"process\"}}\n",
                 -32003, "already exists");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"template.create\",\"params\":"
                 "{\"name\":\"v\",\"tier\":\"vm\",\"image\":\"/nonexistent\"}}\n",
                 -32000, "/nonexistent");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"nosuch\",\"argv\":[\"true\"]}}\n",
                 -32001, "nosuch");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.exec\",\"params\":"
                 "{\"id\":\"sb-00000000000000000000000000000000\",\"argv\":[\"true\"]}}\n",
                 -32001, "not found");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":[\"true\"],\"timeout_ms\":999999}}\n",
                 -32008, "limit");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":[\"true\"],\"max_output\":999999999}}\n",
                 -32008, "limit");
    expect_error(c,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":[\"/nonexistent/cmd\"]}}\n",
                 -32000, "nonexistent");
    json_t *st = th_ok(c, "server.stats", NULL);
    assert_true(json_integer_value(json_object_get(json_object_get(st, "server"), "errors")) >= 20);
    json_decref(st);
    /* A tier this thawd will not run: one started without --enable-process-tier. */
    th_daemon_t d2 = {0};
    const char *args[] = {"--no-default-templates", NULL};
    assert_int_equal(th_start(&d2, args), 0);
    th_conn_t c2;
    assert_int_equal(th_connect(&c2, d2.sock), 0);
    expect_error(&c2,
                 "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"template.create\",\"params\":"
                 "{\"name\":\"x\",\"tier\":\"process\"}}\n",
                 -32006, "no isolation");
    th_close(&c2);
    assert_int_equal(th_stop(&d2), 0);
    th_cleanup(&d2);
}

/* Wait until the pool is idle at min_ready, so descriptor counts compare. */
static void settle(fx_t *f)
{
    assert_true(th_wait_pool(&f->c, "p", "ready", 1, 10000));
    assert_true(th_wait_pool(&f->c, "p", "creating", 0, 10000));
    assert_true(th_wait_pool(&f->c, "p", "in_use", 0, 10000));
    /* server.stats counts sandboxes until the reaper has destroyed them (and
     * closed their descriptors): the one ready sandbox is all there is. */
    assert_true(th_wait_server(&f->c, "sandboxes", 1, 10000));
}

static void test_oversized_and_truncated(void **state)
{
    fx_t *f = *state;
    settle(f);
    int fds0 = th_fd_count(&f->d);
    /* 200 KB on one line, over the 64 KiB limit: one error, then business as usual. */
    size_t n = 200000;
    char *big = malloc(n + 64);
    int k = snprintf(big, 64, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"x\",\"params\":\"");
    memset(big + k, 'a', n);
    strcpy(big + k + n, "\"}\n");
    json_t *r = raw(&f->c, big);
    free(big);
    assert_int_equal(th_code(r), -32600);
    assert_non_null(strstr(th_msg(r), "65536"));
    json_decref(r);
    assert_usable(&f->c);
    /* Truncated messages: the sender vanishes mid-line, several times. */
    for (int i = 0; i < 20; i++) {
        th_conn_t t;
        assert_int_equal(th_connect(&t, f->d.sock), 0);
        assert_int_equal(th_send_raw(&t, "{\"jsonrpc\":\"2.0\",\"id\":1,\"meth", 30), 0);
        th_close(&t);
    }
    assert_usable(&f->c);
    for (int i = 0; i < 100 && th_fd_count(&f->d) != fds0; i++)
        usleep(20000);
    assert_int_equal(th_fd_count(&f->d), fds0);
}

static void test_every_method(void **state)
{
    fx_t *f = *state;
    th_conn_t *c = &f->c;
    json_t *r = th_ok(c, "server.info", NULL);
    assert_string_equal(json_string_value(json_object_get(r, "version")), "0.1.0");
    bool saw_vm = false;
    size_t i;
    json_t *t;
    json_array_foreach (json_object_get(r, "tiers"), i, t) {
        if (!strcmp(json_string_value(json_object_get(t, "name")), "vm")) {
            saw_vm = true;
            /* Unavailable here, and server.info says why. */
            if (!json_is_true(json_object_get(t, "available")))
                assert_true(strlen(json_string_value(json_object_get(t, "reason"))) > 10);
        }
    }
    assert_true(saw_vm);
    json_decref(r);
    r = th_ok(c, "template.list", NULL);
    assert_int_equal(json_array_size(json_object_get(r, "templates")), 1);
    json_decref(r);
    r = th_ok(c, "template.get", json_pack("{s:s}", "name", "p"));
    assert_string_equal(json_string_value(json_object_get(r, "tier")), "process");
    assert_non_null(json_object_get(r, "latency"));
    json_decref(r);
    r = th_ok(c, "pool.configure", json_pack("{s:s, s:i}", "name", "p", "min_ready", 2));
    assert_int_equal(json_integer_value(json_object_get(r, "min_ready")), 2);
    json_decref(r);
    r = th_ok(c, "pool.prewarm",
              json_pack("{s:s, s:i, s:i}", "name", "p", "count", 3, "wait_ms", 10000));
    json_decref(r);
    r = th_ok(c, "pool.status", NULL);
    assert_int_equal(json_array_size(json_object_get(r, "pools")), 1);
    json_decref(r);

    /* One sandbox through its whole life. */
    r = th_ok(c, "sandbox.acquire", json_pack("{s:s}", "template", "p"));
    const char *sid = json_string_value(json_object_get(r, "id"));
    assert_int_equal(strlen(sid), 35);
    char id[64];
    snprintf(id, sizeof(id), "%s", sid);
    json_decref(r);
    char tmpf[64]; /* per process: another tree's copy of this test may run beside it */
    snprintf(tmpf, sizeof(tmpf), "/tmp/thaw-rpc-test-%d.bin", (int)getpid());
    r = th_ok(c, "sandbox.put_file",
              json_pack("{s:s, s:s, s:s, s:i}", "id", id, "path", tmpf, "data_base64",
                        "AP8BAgM=", "mode", 0600));
    assert_int_equal(json_integer_value(json_object_get(r, "bytes")), 5);
    json_decref(r);
    r = th_ok(c, "sandbox.get_file", json_pack("{s:s, s:s}", "id", id, "path", tmpf));
    /* Not UTF-8: returned as base64. */
    assert_string_equal(json_string_value(json_object_get(r, "data_base64")), "AP8BAgM=");
    json_decref(r);
    r = th_ok(c, "sandbox.exec",
              json_pack("{s:s, s:[s,s,s], s:s, s:[s], s:s}", "id", id, "argv", "sh", "-c",
                        "cat; echo \" $FOO $(pwd)\"", "stdin", "in", "env", "FOO=bar", "cwd",
                        "/tmp"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "in bar /tmp\n");
    json_decref(r);
    r = th_ok(c, "sandbox.list", NULL);
    assert_int_equal(json_array_size(json_object_get(r, "sandboxes")), 1);
    json_decref(r);
    r = th_ok(c, "sandbox.release", json_pack("{s:s}", "id", id));
    json_decref(r);
    r = th_call(c, "sandbox.release", json_pack("{s:s}", "id", id));
    assert_int_equal(th_code(r), -32001);
    json_decref(r);
    unlink(tmpf);

    r = th_ok(c, "server.stats", NULL);
    assert_non_null(json_object_get(json_object_get(r, "templates"), "p"));
    json_decref(r);
    r = th_ok(c, "server.metrics", NULL);
    const char *text = json_string_value(json_object_get(r, "text"));
    assert_non_null(strstr(text, "# TYPE thaw_pool_ready gauge"));
    assert_non_null(strstr(text, "thaw_pool_ready{template=\"p\"}"));
    assert_non_null(strstr(text, "thaw_acquire_hit_seconds_count{template=\"p\"}"));
    json_decref(r);
    r = th_ok(c, "template.delete", json_pack("{s:s}", "name", "p"));
    json_decref(r);
    r = th_call(c, "template.get", json_pack("{s:s}", "name", "p"));
    assert_int_equal(th_code(r), -32001);
    json_decref(r);
}

static void test_run_output(void **state)
{
    fx_t *f = *state;
    th_conn_t *c = &f->c;
    /* Exit status, signal, binary output, truncation, timeout. */
    json_t *r = th_ok(c, "sandbox.run",
                      json_pack("{s:s, s:[s,s,s]}", "template", "p", "argv", "sh", "-c",
                                "printf '\\000\\377'; echo oops >&2; exit 3"));
    assert_int_equal(json_integer_value(json_object_get(r, "exit_code")), 3);
    assert_string_equal(json_string_value(json_object_get(r, "stdout_base64")), "AP8=");
    assert_string_equal(json_string_value(json_object_get(r, "stderr")), "oops\n");
    json_decref(r);
    r = th_ok(c, "sandbox.run",
              json_pack("{s:s, s:[s,s,s]}", "template", "p", "argv", "sh", "-c", "kill -9 $$"));
    assert_int_equal(json_integer_value(json_object_get(r, "signal")), 9);
    json_decref(r);
    r = th_ok(c, "sandbox.run",
              json_pack("{s:s, s:[s,s,s], s:i}", "template", "p", "argv", "sh", "-c",
                        "head -c 50000 /dev/zero | tr '\\0' x", "max_output", 1000));
    assert_true(json_is_true(json_object_get(r, "truncated")));
    assert_true(json_string_length(json_object_get(r, "stdout")) <= 1000);
    json_decref(r);
    r = th_ok(c, "sandbox.run",
              json_pack("{s:s, s:[s,s], s:i}", "template", "p", "argv", "sleep", "10", "timeout_ms",
                        200));
    assert_true(json_is_true(json_object_get(r, "timed_out")));
    json_decref(r);
    r = th_ok(c, "sandbox.run",
              json_pack("{s:s, s:[s,s], s:s}", "template", "p", "argv", "echo", "hi", "encoding",
                        "base64"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout_base64")), "aGkK");
    json_decref(r);
}

static void test_streaming(void **state)
{
    fx_t *f = *state;
    json_t *r =
        th_ok(&f->c, "sandbox.run",
              json_pack("{s:s, s:[s,s,s], s:b}", "template", "p", "argv", "sh", "-c",
                        "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three", "stream", 1));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "one\nthree\n");
    json_decref(r);
    /* The chunks arrived before the reply, as notifications tagged with the id. */
    char out[64] = "", err[64] = "";
    size_t i;
    json_t *n;
    json_array_foreach (f->c.notes, i, n) {
        if (strcmp(json_string_value(json_object_get(n, "method")), "sandbox.output"))
            continue; /* template.progress from the setup */
        json_t *p = json_object_get(n, "params");
        assert_int_equal(json_integer_value(json_object_get(p, "request")), f->c.next_id - 1);
        const char *s = json_string_value(json_object_get(p, "data"));
        strncat(strcmp(json_string_value(json_object_get(p, "stream")), "stderr") ? out : err, s,
                30);
    }
    assert_string_equal(out, "one\nthree\n");
    assert_string_equal(err, "two\n");
}

static long handed_out(th_conn_t *c)
{
    json_t *st = th_ok(c, "server.stats", NULL);
    long v = (long)json_integer_value(json_object_get(json_object_get(st, "server"), "handed_out"));
    json_decref(st);
    return v;
}

static void test_disconnects_and_leases(void **state)
{
    fx_t *f = *state;
    settle(f);
    int fds0 = th_fd_count(&f->d);
    /* Acquire then vanish: the sandbox is released. */
    th_conn_t t;
    assert_int_equal(th_connect(&t, f->d.sock), 0);
    json_decref(th_ok(&t, "sandbox.acquire", json_pack("{s:s}", "template", "p")));
    assert_int_equal(handed_out(&f->c), 1);
    th_close(&t);
    for (int i = 0; i < 100 && handed_out(&f->c) != 0; i++)
        usleep(20000);
    assert_int_equal(handed_out(&f->c), 0);
    /* Vanish while a run is in flight: costs only that request. */
    assert_int_equal(th_connect(&t, f->d.sock), 0);
    const char *req = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                      "{\"template\":\"p\",\"argv\":[\"sleep\",\"0.3\"]}}\n";
    assert_int_equal(th_send_raw(&t, req, strlen(req)), 0);
    usleep(50000);
    th_close(&t);
    /* A leased sandbox survives its connection and is found again by the same uid. */
    assert_int_equal(th_connect(&t, f->d.sock), 0);
    json_t *r =
        th_ok(&t, "sandbox.acquire", json_pack("{s:s, s:i}", "template", "p", "lease_s", 2));
    char id[64];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(r, "id")));
    json_decref(r);
    th_close(&t);
    usleep(100000);
    r = th_ok(&f->c, "sandbox.exec", json_pack("{s:s, s:[s,s]}", "id", id, "argv", "echo", "kept"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "kept\n");
    json_decref(r);
    /* Leases over the cap are refused; the lease ends on time. */
    r = th_call(&f->c, "sandbox.acquire",
                json_pack("{s:s, s:i}", "template", "p", "lease_s", 1000000));
    assert_int_equal(th_code(r), -32602);
    json_decref(r);
    for (int i = 0; i < 500 && handed_out(&f->c) != 0; i++)
        usleep(20000);
    assert_int_equal(handed_out(&f->c), 0);
    r = th_call(&f->c, "sandbox.exec", json_pack("{s:s, s:[s]}", "id", id, "argv", "true"));
    assert_int_equal(th_code(r), -32001);
    json_decref(r);
    /* Nothing leaked: descriptors back where they were once the pool settles. */
    settle(f);
    for (int i = 0; i < 100 && th_fd_count(&f->d) != fds0; i++)
        usleep(20000);
    if (th_fd_count(&f->d) != fds0) {
        json_t *st = th_ok(&f->c, "server.stats", NULL);
        json_dumpf(json_object_get(st, "server"), stderr, 0);
        json_dumpf(json_object_get(json_object_get(st, "templates"), "p"), stderr, 0);
        json_decref(st);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)f->d.pid);
        if (system(cmd) != 0)
            fprintf(stderr, "ls failed\n");
    }
    assert_int_equal(th_fd_count(&f->d), fds0);
}

static void test_inflight_limit(void **state)
{
    fx_t *f = *state;
    /* The limit is 4 per connection: the fifth concurrent request is refused. */
    char buf[4096] = "";
    for (int i = 1; i <= 5; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":[\"sleep\",\"0.5\"]}}\n",
                 i);
        strcat(buf, line);
    }
    assert_int_equal(th_send_raw(&f->c, buf, strlen(buf)), 0);
    int busy = 0, ok = 0;
    for (int i = 0; i < 5; i++) {
        json_t *r = th_recv(&f->c, 20000);
        assert_non_null(r);
        if (th_code(r) == -32004) {
            busy++;
            assert_int_equal(json_integer_value(json_object_get(r, "id")), 5);
        } else if (th_code(r) == 0) {
            ok++;
        }
        json_decref(r);
    }
    assert_int_equal(busy, 1);
    assert_int_equal(ok, 4);
    assert_usable(&f->c);
}

static void test_sigterm_clean(void **state)
{
    fx_t *f = *state;
    json_decref(
        th_ok(&f->c, "pool.configure", json_pack("{s:s, s:i}", "name", "p", "min_ready", 3)));
    assert_true(th_wait_pool(&f->c, "p", "ready", 3, 10000));
    json_decref(th_ok(&f->c, "sandbox.acquire", json_pack("{s:s}", "template", "p")));
    pid_t kids[64];
    int n = th_children(&f->d, kids, 64);
    assert_true(n >= 3);
    struct stat st;
    assert_int_equal(stat(f->d.sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    th_close(&f->c);
    assert_int_equal(th_stop(&f->d), 0);
    /* Every sandbox gone, socket removed, store kept. */
    for (int i = 0; i < n; i++)
        assert_true(kill(kids[i], 0) < 0 && errno == ESRCH);
    assert_int_equal(access(f->d.sock, F_OK), -1);
    char path[512];
    snprintf(path, sizeof(path), "%s/templates/p/template.conf", f->d.store);
    assert_int_equal(access(path, F_OK), 0);
    /* A stale socket file left by a dead thawd does not stop the next one. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(f->d.sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->d.sock, strlen(f->d.sock) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(access(f->d.sock, F_OK), 0);
    const char *args[] = {"--enable-process-tier", "--no-default-templates", NULL};
    assert_int_equal(th_start(&f->d, args), 0);
    assert_int_equal(th_connect(&f->c, f->d.sock), 0);
    assert_true(th_wait_pool(&f->c, "p", "ready", 3, 10000)); /* reloaded, min_ready kept */
}

int main(void)
{
    if (!getenv("THAWD"))
        thaw_test_skip("$THAWD is not set: run through meson test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_and_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnects_and_leases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inflight_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_clean, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
