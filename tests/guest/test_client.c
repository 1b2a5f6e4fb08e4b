// SPDX-License-Identifier: Apache-2.0
/*
 * The host client (guest/agent_client.c) against a peer that is silent,
 * lies or breaks framing: every case must end in a clear error before the
 * call's deadline, never a hang or a crash.  The peer is this test, writing
 * hand-made frames on the other end of a socketpair (the real agent's
 * behaviour is covered by test_agent.c).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_harness.h"
#include "common/clock.h"
#include "guest/agent_client.h"
#include "testlib.h"

typedef struct peer peer_t;
typedef void (*peer_fn)(peer_t *p, const agentwire_hdr_t *h, const uint8_t *payload);

struct peer {
    int fd; /* the fake agent's end */
    agent_client_t *c;
    pthread_t t;
    peer_fn fn;
    bool running;
};

static void send_frame(int fd, agentwire_msg_t *m)
{
    assert_int_equal(agentwire_msg_finish(m), 0);
    agent_h_write_all(fd, m->data, m->len);
    agentwire_msg_free(m);
}

static void send_hello(int fd, uint32_t version)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_HELLO, 0);
    agentwire_put_u32(&m, AGENTWIRE_T_VERSION, version);
    agentwire_put_str(&m, AGENTWIRE_T_AGENT_MODE, "test");
    send_frame(fd, &m);
}

static void *peer_main(void *arg)
{
    peer_t *p = arg;
    static __thread uint8_t buf[AGENTWIRE_MAX_PAYLOAD];
    for (;;) {
        agentwire_hdr_t h;
        if (agent_h_read_frame(p->fd, &h, buf, sizeof(buf), 20000) < 0)
            return NULL;
        p->fn(p, &h, buf);
    }
}

static void peer_open(peer_t *p, peer_fn fn)
{
    memset(p, 0, sizeof(*p));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    thaw_err_t err;
    assert_int_equal(agent_client_new(sv[0], &p->c, &err), 0);
    p->fd = sv[1];
    p->fn = fn;
    if (fn) {
        send_hello(p->fd, AGENTWIRE_VERSION);
        assert_int_equal(pthread_create(&p->t, NULL, peer_main, p), 0);
        p->running = true;
        assert_int_equal(agent_client_wait_hello(p->c, 5000, NULL, &err), 0);
    }
}

static void peer_close(peer_t *p)
{
    agent_client_destroy(p->c);
    shutdown(p->fd, SHUT_RDWR);
    if (p->running)
        pthread_join(p->t, NULL);
    close(p->fd);
}

static void test_silent_peer(void **state)
{
    peer_t p;
    peer_open(&p, NULL);
    thaw_err_t err;
    uint64_t t0 = thaw_now_ns();
    assert_int_equal(agent_client_wait_hello(p.c, 200, NULL, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.msg, "no hello"));
    assert_int_equal(agent_client_ping(p.c, 200, NULL, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.msg, "ping"));
    agent_exec_req_t req = {.argv = (const char *const[]){"true", NULL}, .deadline_ms = 200};
    agent_exec_result_t r;
    assert_int_equal(agent_client_exec(p.c, &req, &r, &err), -ETIMEDOUT);
    assert_true(thaw_now_ns() - t0 < 10000000000ull);
    peer_close(&p);
}

static void test_bad_magic_kills_channel(void **state)
{
    peer_t p;
    peer_open(&p, NULL);
    agent_h_write_all(p.fd, "this is not a frame at all", 26);
    thaw_err_t err;
    /* a dead channel fails fast, with the reason, not after the deadline */
    uint64_t t0 = thaw_now_ns();
    assert_true(agent_client_wait_hello(p.c, 5000, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "magic"));
    assert_true(agent_client_ping(p.c, 5000, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "magic"));
    assert_true(thaw_now_ns() - t0 < 4000000000ull);
    assert_true(agent_client_dead(p.c, &err));
    peer_close(&p);
}

static void test_oversized_frame_kills_channel(void **state)
{
    peer_t p;
    peer_open(&p, NULL);
    uint8_t h[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_encode(h, AGENTWIRE_STDOUT, 1, 0xfffffff0u);
    agent_h_write_all(p.fd, h, sizeof(h));
    thaw_err_t err;
    assert_true(agent_client_wait_hello(p.c, 5000, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "over the cap"));
    peer_close(&p);
}

static void test_hello_checks(void **state)
{
    peer_t p;
    thaw_err_t err;
    peer_open(&p, NULL);
    send_hello(p.fd, AGENTWIRE_VERSION + 1);
    assert_int_equal(agent_client_wait_hello(p.c, 5000, NULL, &err), -EPROTONOSUPPORT);
    peer_close(&p);

    peer_open(&p, NULL);
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_HELLO, 0);
    agentwire_put_str(&m, AGENTWIRE_T_AGENT_MODE, "vm"); /* no version */
    send_frame(p.fd, &m);
    assert_int_equal(agent_client_wait_hello(p.c, 5000, NULL, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "hello"));
    peer_close(&p);
}

static void test_closed_mid_frame(void **state)
{
    peer_t p;
    peer_open(&p, NULL);
    send_hello(p.fd, AGENTWIRE_VERSION);
    thaw_err_t err;
    assert_int_equal(agent_client_wait_hello(p.c, 5000, NULL, &err), 0);
    uint8_t h[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_encode(h, AGENTWIRE_PONG, 1, 100);
    agent_h_write_all(p.fd, h, sizeof(h));
    shutdown(p.fd, SHUT_WR);
    assert_true(agent_client_ping(p.c, 5000, NULL, &err) < 0);
    assert_non_null(strstr(err.msg, "middle of a frame"));
    peer_close(&p);
}

/* A fake agent that lies about execs in several ways, chosen by argv[0]. */
static void liar(peer_t *p, const agentwire_hdr_t *h, const uint8_t *pl)
{
    agentwire_msg_t m;
    if (h->type == AGENTWIRE_PING) {
        agentwire_msg_init(&m, AGENTWIRE_PONG, h->id);
        agentwire_put_bytes(&m, AGENTWIRE_T_DATA, "wrong token", 11);
        send_frame(p->fd, &m);
        return;
    }
    if (h->type == AGENTWIRE_GET) {
        /* claims a small file, then sends more than that, forever */
        agentwire_msg_init(&m, AGENTWIRE_DATA, h->id);
        static uint8_t junk[AGENTWIRE_CHUNK];
        agentwire_put_bytes(&m, AGENTWIRE_T_DATA, junk, sizeof(junk));
        agentwire_put_u64(&m, AGENTWIRE_T_SIZE, 10);
        agentwire_put_u32(&m, AGENTWIRE_T_EOF, 0);
        send_frame(p->fd, &m);
        return;
    }
    if (h->type != AGENTWIRE_EXEC)
        return;
    agentwire_exec_t e;
    assert_int_equal(agentwire_parse_exec(pl, h->len, &e, NULL, 0), 0);
    const char *what = e.argv[0];
    if (strcmp(what, "exit-before-start") != 0) {
        agentwire_msg_init(&m, AGENTWIRE_STARTED, h->id);
        agentwire_put_u32(&m, AGENTWIRE_T_PID, 42);
        send_frame(p->fd, &m);
    }
    if (!strcmp(what, "flood")) {
        /* 4 MB of stdout against the client's 1000-byte cap */
        static uint8_t chunk[AGENTWIRE_CHUNK];
        memset(chunk, 'x', sizeof(chunk));
        for (int i = 0; i < 16; i++) {
            agentwire_msg_init(&m, AGENTWIRE_STDOUT, h->id);
            agentwire_put_bytes(&m, AGENTWIRE_T_DATA, chunk, sizeof(chunk));
            send_frame(p->fd, &m);
        }
    }
    if (!strcmp(what, "other-id")) {
        /* output for a request nobody made is dropped */
        agentwire_msg_init(&m, AGENTWIRE_STDOUT, h->id + 1000);
        agentwire_put_bytes(&m, AGENTWIRE_T_DATA, "stray", 5);
        send_frame(p->fd, &m);
    }
    agentwire_msg_init(&m, AGENTWIRE_EXIT, h->id);
    agentwire_put_u32(&m, AGENTWIRE_T_EXIT_CODE, 0);
    if (!strcmp(what, "both"))
        agentwire_put_u32(&m, AGENTWIRE_T_TERMSIG, 9);
    if (!strcmp(what, "bad-field"))
        agentwire_put_bytes(&m, AGENTWIRE_T_CPU_USER, "abc", 3);
    send_frame(p->fd, &m);
    agentwire_exec_free(&e);
}

static int run_liar(peer_t *p, const char *what, agent_exec_result_t *r, thaw_err_t *err)
{
    agent_exec_req_t req = {
        .argv = (const char *const[]){what, NULL}, .output_cap = 1000, .deadline_ms = 5000};
    return agent_client_exec(p->c, &req, r, err);
}

static void test_lying_exec_peer(void **state)
{
    peer_t p;
    peer_open(&p, liar);
    agent_exec_result_t r;
    thaw_err_t err;
    assert_int_equal(run_liar(&p, "flood", &r, &err), 0);
    assert_true(r.truncated);
    assert_int_equal(r.out_len, 1000);
    agent_exec_result_free(&r);
    assert_int_equal(run_liar(&p, "other-id", &r, &err), 0);
    assert_int_equal(r.out_len, 0);
    agent_exec_result_free(&r);
    assert_int_equal(run_liar(&p, "both", &r, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "exit"));
    assert_int_equal(run_liar(&p, "bad-field", &r, &err), -EPROTO);
    assert_int_equal(run_liar(&p, "exit-before-start", &r, &err), -EPROTO);
    /* a wrong pong and an oversized get are errors too */
    assert_int_equal(agent_client_ping(p.c, 5000, NULL, &err), -EPROTO);
    uint8_t *data = NULL;
    size_t len = 0;
    assert_int_equal(agent_client_get_file(p.c, "/x", 1 << 20, &data, &len, 5000, &err), -EFBIG);
    assert_null(data);
    /* the channel itself is still alive: those were per-request lies */
    assert_false(agent_client_dead(p.c, NULL));
    peer_close(&p);
}

typedef struct put_job {
    agent_client_t *c;
    int rc;
} put_job_t;

static void *big_put(void *arg)
{
    put_job_t *j = arg;
    size_t n = 16 << 20;
    uint8_t *data = calloc(1, n);
    thaw_err_t err;
    j->rc = agent_client_put_file(j->c, "/x", data, n, 0644, 3000, &err);
    free(data);
    return NULL;
}

/* One caller stuck writing must not hold another past its own deadline. */
static void test_writer_does_not_block_others(void **state)
{
    peer_t p;
    peer_open(&p, NULL);
    send_hello(p.fd, AGENTWIRE_VERSION);
    thaw_err_t err;
    assert_int_equal(agent_client_wait_hello(p.c, 5000, NULL, &err), 0);
    put_job_t j = {.c = p.c};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, big_put, &j), 0);
    usleep(200000); /* let the put fill the socket and wait */
    uint64_t t0 = thaw_now_ns();
    assert_true(agent_client_ping(p.c, 300, NULL, &err) < 0);
    assert_true(thaw_now_ns() - t0 < 2000000000ull); /* its 300 ms, not the put's 3 s */
    pthread_join(t, NULL);
    assert_int_equal(j.rc, -ETIMEDOUT);
    peer_close(&p);
}

static void test_peer_not_reading(void **state)
{
    peer_t p;
    peer_open(&p, NULL);
    send_hello(p.fd, AGENTWIRE_VERSION);
    thaw_err_t err;
    assert_int_equal(agent_client_wait_hello(p.c, 5000, NULL, &err), 0);
    /* 16 MB into a socket nobody reads: the write times out, never hangs */
    size_t n = 16 << 20;
    uint8_t *data = calloc(1, n);
    uint64_t t0 = thaw_now_ns();
    assert_int_equal(agent_client_put_file(p.c, "/x", data, n, 0644, 500, &err), -ETIMEDOUT);
    assert_true(thaw_now_ns() - t0 < 10000000000ull);
    free(data);
    /* the frame was cut short, so the channel is dead and says why */
    assert_true(agent_client_dead(p.c, &err));
    assert_non_null(strstr(err.msg, "stopped reading"));
    peer_close(&p);
}

/* Errors from the agent keep its errno and message; nonsense errnos become EIO. */
static void error_peer(peer_t *p, const agentwire_hdr_t *h, const uint8_t *pl)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_ERROR, h->id);
    agentwire_put_u32(&m, AGENTWIRE_T_ERRNO, h->type == AGENTWIRE_PING ? 0 : EACCES);
    agentwire_put_str(&m, AGENTWIRE_T_MESSAGE, "put '/x': open: Permission denied");
    send_frame(p->fd, &m);
}

static void test_error_frames(void **state)
{
    peer_t p;
    peer_open(&p, error_peer);
    thaw_err_t err;
    assert_int_equal(agent_client_put_file(p.c, "/x", "a", 1, 0644, 5000, &err), -EACCES);
    assert_non_null(strstr(err.msg, "Permission denied"));
    assert_int_equal(agent_client_ping(p.c, 5000, NULL, &err), -EIO);
    peer_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_silent_peer),
        cmocka_unit_test(test_bad_magic_kills_channel),
        cmocka_unit_test(test_oversized_frame_kills_channel),
        cmocka_unit_test(test_hello_checks),
        cmocka_unit_test(test_closed_mid_frame),
        cmocka_unit_test(test_lying_exec_peer),
        cmocka_unit_test(test_peer_not_reading),
        cmocka_unit_test(test_writer_does_not_block_others),
        cmocka_unit_test(test_error_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
