// SPDX-License-Identifier: Apache-2.0
/*
 * Hostile and careless clients against a real thawd (process tier, so no
 * root is needed).  Each test names what it proves; what must hold in every
 * one: while the bad client does its worst, a well-behaved client's
 * sandbox.run succeeds, and afterwards thawd's descriptors are back to their
 * baseline and no sandbox is left in use.
 *   - a client sending 100 MB of garbage (random bytes, and one endless
 *     line) is answered with parse/size errors or disconnected;
 *   - 1,000 connections open at once are each served;
 *   - clients vanishing mid-request (mid-line, during an exec, right after
 *     an acquire) leave no sandbox behind;
 *   - a client holding its requests open (long execs, never reading) is
 *     held to --max-inflight and the reply-queue cap; others are served.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "testlib.h"

static int setup(void **state)
{
    static const char *const inflight[] = {"--max-inflight", "4", NULL};
    const char *args[8];
    json_t *tpl = th_tpl_params("process", NULL, NULL, "{s:s, s:i, s:i, s:i}", "name", "p",
                                "min_ready", 2, "max_ready", 4, "max_total", 32);
    return th_fx_setup(state, th_tier_args("process", inflight, args, 8), tpl, 2, 20000);
}

static int raw_connect(const char *sock)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        fail_msg("connect %s: %s", sock, strerror(errno));
    return fd;
}

/* The well-behaved client: one sandbox.run that must succeed with "ok". */
static void good_run(th_conn_t *c)
{
    json_t *r =
        th_ok(c, "sandbox.run", json_pack("{s:s, s:[s,s]}", "template", "p", "argv", "echo", "ok"));
    assert_string_equal(json_string_value(json_object_get(r, "stdout")), "ok\n");
    json_decref(r);
}

/* Afterwards: descriptors back to the baseline, nothing in use, pool refilled. */
static void assert_back_to_baseline(th_fx_t *f)
{
    assert_true(th_wait_pool(&f->c, "p", "in_use", 0, 20000));
    assert_true(th_wait_pool(&f->c, "p", "ready", 2, 20000));
    int fds = -1;
    for (int i = 0; i < 200 && (fds = th_fd_count(&f->d)) != f->fds0; i++)
        th_sleep_ms(50);
    if (fds != f->fds0)
        fail_msg("thawd holds %d descriptors, %d before the fault", fds, f->fds0);
}

typedef struct garbage {
    const char *sock;
    size_t bytes;
    bool newlines;  /* random bytes (with their newlines) or one endless line */
    size_t sent;    /* how much thawd took before it stopped reading or closed */
    bool got_error; /* thawd answered with a parse or size error */
} garbage_t;

static void *garbage_thread(void *arg)
{
    garbage_t *g = arg;
    int fd = raw_connect(g->sock);
    char buf[65536];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    while (g->sent < g->bytes) {
        for (size_t i = 0; i < sizeof(buf); i += 8) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            memcpy(buf + i, &x, 8);
        }
        if (!g->newlines)
            for (size_t i = 0; i < sizeof(buf); i++)
                if (buf[i] == '\n')
                    buf[i] = 'x';
        /* A short poll: a thawd that stops reading us (the reply-queue cap)
         * closes the connection; a thawd that just stalls fails the test. */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 30000) <= 0)
            break;
        ssize_t w = send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
        if (w <= 0)
            break;
        g->sent += (size_t)w;
    }
    /* Read what thawd said (errors), without blocking for long. */
    shutdown(fd, SHUT_WR);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            break;
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            break;
        buf[n] = '\0';
        if (strstr(buf, "-32700") || strstr(buf, "-32600"))
            g->got_error = true;
    }
    close(fd);
    return NULL;
}

static void fault_garbage(th_fx_t *f, bool newlines)
{
    garbage_t g = {.sock = f->d.sock, .bytes = 100u << 20, .newlines = newlines};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, garbage_thread, &g), 0);
    /* Served while the garbage flows. */
    for (int i = 0; i < 10; i++)
        good_run(&f->c);
    pthread_join(t, NULL);
    fprintf(stderr, "garbage (%s): thawd took %zu MiB; error seen: %d\n",
            newlines ? "random lines" : "one endless line", g.sent >> 20, g.got_error);
    /* thawd either read all of it or cut the client off; either way it said why. */
    assert_true(g.got_error);
    good_run(&f->c);
    assert_back_to_baseline(f);
}

static void test_garbage_100mb_random_is_refused_and_others_served(void **state)
{
    fault_garbage(*state, true);
}

static void test_garbage_100mb_endless_line_is_refused_and_others_served(void **state)
{
    fault_garbage(*state, false);
}

static void test_1000_connections_are_each_served(void **state)
{
    th_fx_t *f = *state;
    enum { N = 1000 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < N + 64)
        thaw_test_skip("RLIMIT_NOFILE hard limit %llu is below %d", (unsigned long long)rl.rlim_max,
                       N + 64);
    if (rl.rlim_cur < N + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    static int fds[N];
    static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.info\"}\n";
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(f->d.sock);
        assert_int_equal(send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL),
                         (ssize_t)sizeof(req) - 1);
    }
    /* With all of them open, a newcomer is served. */
    th_conn_t c2;
    assert_int_equal(th_connect(&c2, f->d.sock), 0);
    good_run(&c2);
    th_close(&c2);
    int answered = 0;
    for (int i = 0; i < N; i++) {
        char buf[4096];
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (poll(&p, 1, 20000) == 1) {
            ssize_t n = recv(fds[i], buf, sizeof(buf) - 1, 0);
            if (n > 0) {
                buf[n] = '\0';
                answered += strstr(buf, "\"result\"") != NULL;
            }
        }
    }
    fprintf(stderr, "1000 connections: %d answered server.info\n", answered);
    assert_int_equal(answered, N);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    good_run(&f->c);
    assert_back_to_baseline(f);
}

static void send_line(int fd, const char *s)
{
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void test_clients_vanishing_mid_request_leave_nothing_behind(void **state)
{
    th_fx_t *f = *state;
    for (int round = 0; round < 5; round++) {
        /* Half a line, then gone. */
        int a = raw_connect(f->d.sock);
        send_line(a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.ru");
        close(a);
        /* An exec in flight, then gone. */
        int b = raw_connect(f->d.sock);
        send_line(b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                     "{\"template\":\"p\",\"argv\":[\"sleep\",\"30\"],"
                     "\"timeout_ms\":2000}}\n");
        /* An acquire (the sandbox is the connection's), then gone. */
        int c = raw_connect(f->d.sock);
        send_line(c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.acquire\",\"params\":"
                     "{\"template\":\"p\"}}\n");
        th_sleep_ms(100);
        close(b);
        close(c);
        /* A client that sends a request and closes its writing side only. */
        int d = raw_connect(f->d.sock);
        send_line(d, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sandbox.run\",\"params\":"
                     "{\"template\":\"p\",\"argv\":[\"echo\",\"x\"]}}\n");
        shutdown(d, SHUT_WR);
        close(d);
        good_run(&f->c);
    }
    /* The vanished clients' execs end at their timeout (a request is not
     * cancelled by its client's disconnect: see docs/security.md), then
     * their sandboxes go. */
    assert_back_to_baseline(f);
    json_t *l = th_ok(&f->c, "sandbox.list", NULL);
    assert_int_equal(json_array_size(json_object_get(l, "sandboxes")), 0);
    json_decref(l);
}

static void test_client_holding_requests_is_limited_and_others_served(void **state)
{
    th_fx_t *f = *state;
    /* Four long execs fill this connection's --max-inflight; the fifth is refused. */
    th_conn_t h;
    assert_int_equal(th_connect(&h, f->d.sock), 0);
    h.next_id = 100;
    for (int i = 0; i < 4; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"sandbox.run\",\"params\":"
                 "{\"template\":\"p\",\"argv\":[\"sleep\",\"60\"],\"timeout_ms\":8000}}\n",
                 i + 1);
        send_line(h.fd, line);
    }
    th_sleep_ms(200);
    json_t *r = th_call(&h, "server.info", NULL);
    assert_non_null(r);
    assert_int_equal(th_code(r), -32004);
    json_decref(r);
    /* Others are served meanwhile. */
    for (int i = 0; i < 5; i++)
        good_run(&f->c);

    /* A client that asks and never reads: cut off at the reply-queue cap. */
    int nr = raw_connect(f->d.sock);
    int flags = fcntl(nr, F_GETFL);
    fcntl(nr, F_SETFL, flags | O_NONBLOCK);
    static const char big[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server.metrics\"}\n"
                              "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"server.stats\"}\n";
    size_t sent = 0;
    bool cut = false;
    for (int i = 0; i < 2000000 && !cut; i++) {
        ssize_t w = send(nr, big, sizeof(big) - 1, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EAGAIN) {
            /* thawd stopped reading us; is the connection gone yet? */
            struct pollfd p = {.fd = nr, .events = POLLOUT};
            poll(&p, 1, 100);
            if (p.revents & (POLLHUP | POLLERR))
                cut = true;
            /* Every other client is still served while this one is stuck. */
            if (i % 64 == 0)
                good_run(&f->c);
            continue;
        }
        cut = true; /* EPIPE/ECONNRESET: thawd closed it */
    }
    fprintf(stderr, "non-reading client: sent %zu KiB of requests before thawd cut it off\n",
            sent >> 10);
    assert_true(cut);
    close(nr);
    good_run(&f->c);
    th_close(&h);
    assert_back_to_baseline(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_100mb_random_is_refused_and_others_served,
                                        setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(
            test_garbage_100mb_endless_line_is_refused_and_others_served, setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_1000_connections_are_each_served, setup,
                                        th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_clients_vanishing_mid_request_leave_nothing_behind,
                                        setup, th_fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_holding_requests_is_limited_and_others_served,
                                        setup, th_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
