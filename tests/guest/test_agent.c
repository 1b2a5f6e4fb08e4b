// SPDX-License-Identifier: Apache-2.0
/*
 * Protocol tests of thaw-agent: each test starts the real agent binary as an
 * ordinary process on a socketpair (test mode) and drives it through the
 * host client or with hand-made frames.  Covers exec (echo, exit codes,
 * signals, output past the cap, binary stdin/stdout, streaming stdin, env
 * and cwd, resource use), 50 concurrent execs, the timeout kill of a process
 * tree, put/get, thaw, quiesce, ping, shutdown and malformed frames.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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

#include "agent_harness.h"
#include "common/clock.h"
#include "guest/agent_client.h"
#include "testlib.h"

typedef struct fixture {
    agent_h_t h;
    agent_client_t *c;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->c = agent_h_client(&f->h);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    agent_client_destroy(f->c);
    /* the agent sees EOF on the channel and exits by itself */
    int st = agent_h_wait(&f->h, 5000);
    assert_true(st != -1);
    free(f);
    return 0;
}

static int run(agent_client_t *c, const char *const *argv, agent_exec_result_t *res,
               thaw_err_t *err)
{
    agent_exec_req_t req = {.argv = argv, .timeout_ms = 20000};
    return agent_client_exec(c, &req, res, err);
}

static void test_hello(void **state)
{
    fixture_t *f = *state;
    agent_hello_t h;
    thaw_err_t err;
    assert_int_equal(agent_client_wait_hello(f->c, 1000, &h, &err), 0);
    assert_int_equal(h.version, AGENTWIRE_VERSION);
    assert_string_equal(h.mode, "test");
    assert_true(h.caps & AGENTWIRE_CAP_EXEC);
    assert_false(h.caps & AGENTWIRE_CAP_THAW); /* only a VM's agent applies thaw */
    assert_non_null(strstr(h.kernel, "Linux"));
}

static void test_exec_echo(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    const char *argv[] = {"echo", "hello", "world", NULL};
    assert_int_equal(run(f->c, argv, &r, &err), 0);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.term_signal, 0);
    assert_string_equal((char *)r.out, "hello world\n");
    assert_int_equal(r.err_len, 0);
    assert_true(r.pid > 0);
    assert_false(r.timed_out);
    assert_false(r.truncated);
    agent_exec_result_free(&r);
}

static void test_exec_exit_codes(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    const char *argv[] = {"sh", "-c", "echo oops >&2; exit 42", NULL};
    assert_int_equal(run(f->c, argv, &r, &err), 0);
    assert_int_equal(r.exit_code, 42);
    assert_string_equal((char *)r.err, "oops\n");
    assert_int_equal(r.out_len, 0);
    agent_exec_result_free(&r);

    const char *sig[] = {"sh", "-c", "kill -TERM $$", NULL};
    assert_int_equal(run(f->c, sig, &r, &err), 0);
    assert_int_equal(r.exit_code, -1);
    assert_int_equal(r.term_signal, SIGTERM);
    agent_exec_result_free(&r);
}

static void test_exec_not_found(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    const char *argv[] = {"/nonexistent/thaw-no-such-command", NULL};
    assert_int_equal(run(f->c, argv, &r, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "thaw-no-such-command"));
    assert_non_null(strstr(err.msg, "No such file"));

    agent_exec_req_t req = {.argv = (const char *const[]){"true", NULL}, .cwd = "/nonexistent-dir"};
    assert_int_equal(agent_client_exec(f->c, &req, &r, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "chdir"));
    /* the channel is fine afterwards */
    assert_int_equal(agent_client_ping(f->c, 5000, NULL, &err), 0);
}

static void test_exec_env_cwd(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    const char *env[] = {"FOO=bar baz", "PATH=/usr/bin:/bin", NULL};
    agent_exec_req_t req = {.argv = (const char *const[]){"sh", "-c", "echo \"$FOO\"; pwd", NULL},
                            .env = env,
                            .cwd = "/tmp",
                            .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(f->c, &req, &r, &err), 0);
    assert_string_equal((char *)r.out, "bar baz\n/tmp\n");
    agent_exec_result_free(&r);
    /* the default env has a PATH and no trace of the agent's channel */
    const char *argv[] = {"sh", "-c", "echo \"$PATH|${THAW_AGENT_FD:-none}\"; ls /proc/self/fd",
                          NULL};
    assert_int_equal(run(f->c, argv, &r, &err), 0);
    assert_non_null(strstr((char *)r.out, "/bin|none\n"));
    /* fds of the ls: 0 1 2 and the one it opened for the listing; never the channel */
    assert_string_equal(strchr((char *)r.out, '\n') + 1, "0\n1\n2\n3\n");
    agent_exec_result_free(&r);
}

static void test_exec_output_cap(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    /* 5 MB of output, 100 kB kept: head must not block on a full pipe */
    agent_exec_req_t req = {.argv =
                                (const char *const[]){"head", "-c", "5000000", "/dev/zero", NULL},
                            .output_cap = 100000,
                            .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(f->c, &req, &r, &err), 0);
    assert_int_equal(r.exit_code, 0);
    assert_true(r.truncated);
    assert_int_equal(r.out_len, 100000);
    agent_exec_result_free(&r);
}

static void test_exec_binary_stdin(void **state)
{
    fixture_t *f = *state;
    size_t n = 3 << 20; /* spans several frames each way */
    uint8_t *in = malloc(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)(i * 7 + (i >> 9));
    agent_exec_result_t r;
    thaw_err_t err;
    agent_exec_req_t req = {.argv = (const char *const[]){"cat", NULL},
                            .stdin_open = true,
                            .output_cap = 8 << 20,
                            .timeout_ms = 30000};
    agent_exec_t *x;
    assert_int_equal(agent_exec_start(f->c, &req, &x, &err), 0);
    assert_true(agent_exec_pid(x) > 0);
    assert_int_equal(agent_exec_stdin(x, in, n / 2, false, &err), 0);
    assert_int_equal(agent_exec_stdin(x, in + n / 2, n - n / 2, true, &err), 0);
    assert_int_equal(agent_exec_wait(x, &r, &err), 0);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.out_len, n);
    assert_memory_equal(r.out, in, n);
    agent_exec_result_free(&r);

    /* inline stdin with every byte value */
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    agent_exec_req_t req2 = {.argv = (const char *const[]){"cat", NULL},
                             .stdin_data = all,
                             .stdin_len = sizeof(all),
                             .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(f->c, &req2, &r, &err), 0);
    assert_int_equal(r.out_len, 256);
    assert_memory_equal(r.out, all, 256);
    agent_exec_result_free(&r);
    free(in);
}

typedef struct chunks {
    size_t calls, bytes;
} chunks_t;

static void on_output(void *opaque, int stream, const uint8_t *data, size_t len)
{
    chunks_t *c = opaque;
    c->calls++;
    c->bytes += len;
}

static void test_exec_stream_callback(void **state)
{
    fixture_t *f = *state;
    chunks_t ch = {0};
    agent_exec_result_t r;
    thaw_err_t err;
    agent_exec_req_t req = {
        .argv = (const char *const[]){"sh", "-c", "echo a; sleep 0.1; echo b; echo c >&2", NULL},
        .on_output = on_output,
        .opaque = &ch,
        .no_buffer = true,
        .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(f->c, &req, &r, &err), 0);
    assert_true(ch.calls >= 2);
    assert_int_equal(ch.bytes, 6);
    assert_int_equal(r.out_len, 0); /* no_buffer */
    agent_exec_result_free(&r);
}

static void test_exec_pty(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    agent_exec_req_t req = {
        .argv = (const char *const[]){"sh", "-c",
                                      "test -t 0 && test -t 1 && test -t 2 && stty size && "
                                      "echo to-stderr >&2",
                                      NULL},
        .pty = true,
        .pty_rows = 40,
        .pty_cols = 100,
        .timeout_ms = 20000};
    assert_int_equal(agent_client_exec(f->c, &req, &r, &err), 0);
    assert_int_equal(r.exit_code, 0);
    /* one stream, with the terminal's newline translation */
    assert_string_equal((char *)r.out, "40 100\r\nto-stderr\r\n");
    assert_int_equal(r.err_len, 0);
    agent_exec_result_free(&r);

    /* stdin through the terminal: echoed, then EOF (^D) ends cat */
    agent_exec_req_t req2 = {.argv = (const char *const[]){"cat", NULL},
                             .pty = true,
                             .stdin_open = true,
                             .timeout_ms = 20000};
    agent_exec_t *x;
    assert_int_equal(agent_exec_start(f->c, &req2, &x, &err), 0);
    assert_int_equal(agent_exec_stdin(x, "hello\n", 6, true, &err), 0);
    assert_int_equal(agent_exec_wait(x, &r, &err), 0);
    if (r.exit_code != 0)
        fail_msg("cat on a pty: exit %d signal %d output '%s'", r.exit_code, r.term_signal,
                 (char *)r.out);
    assert_false(r.timed_out);
    assert_string_equal((char *)r.out, "hello\r\nhello\r\n");
    agent_exec_result_free(&r);
}

static void test_exec_signal(void **state)
{
    fixture_t *f = *state;
    agent_exec_t *x;
    thaw_err_t err;
    agent_exec_req_t req = {.argv = (const char *const[]){"sleep", "30", NULL},
                            .timeout_ms = 20000};
    assert_int_equal(agent_exec_start(f->c, &req, &x, &err), 0);
    assert_int_equal(agent_exec_signal(x, SIGTERM, false, &err), 0);
    agent_exec_result_t r;
    assert_int_equal(agent_exec_wait(x, &r, &err), 0);
    assert_int_equal(r.term_signal, SIGTERM);
    assert_false(r.timed_out);
    agent_exec_result_free(&r);
}

static void test_exec_timeout_kills_tree(void **state)
{
    fixture_t *f = *state;
    char dir[] = "/tmp/thaw-agent-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "sleep 100 & echo $! > %s/a; sh -c 'sleep 100 & echo $! > %s/b; wait' & wait", dir,
             dir);
    agent_exec_result_t r;
    thaw_err_t err;
    /* Long enough for both shells to fork and write their pid files on a
     * loaded machine (at 500 ms the kill sometimes came first). */
    agent_exec_req_t req = {.argv = (const char *const[]){"sh", "-c", cmd, NULL},
                            .timeout_ms = 3000};
    uint64_t t0 = thaw_now_ns();
    assert_int_equal(agent_client_exec(f->c, &req, &r, &err), 0);
    assert_true(r.timed_out);
    assert_int_equal(r.term_signal, SIGKILL);
    assert_true(thaw_now_ns() - t0 < 15000000000ull); /* not the 100 s of the sleeps */
    agent_exec_result_free(&r);
    /* both grandchildren are gone (killed with the group, reaped by the agent) */
    for (int i = 0; i < 2; i++) {
        char path[600], buf[32] = "";
        snprintf(path, sizeof(path), "%s/%c", dir, "ab"[i]);
        FILE *fp = fopen(path, "r");
        assert_non_null(fp);
        assert_non_null(fgets(buf, sizeof(buf), fp));
        fclose(fp);
        pid_t pid = (pid_t)atoi(buf);
        assert_true(pid > 0);
        int gone = 0;
        for (int k = 0; k < 400 && !gone; k++) {
            gone = kill(pid, 0) < 0 && errno == ESRCH;
            if (!gone)
                usleep(10000);
        }
        assert_true(gone);
        unlink(path);
    }
    rmdir(dir);
}

static void test_exec_rusage(void **state)
{
    fixture_t *f = *state;
    agent_exec_result_t r;
    thaw_err_t err;
    const char *argv[] = {"sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done", NULL};
    assert_int_equal(run(f->c, argv, &r, &err), 0);
    assert_int_equal(r.exit_code, 0);
    assert_true(r.cpu_user_us + r.cpu_sys_us > 0);
    assert_true(r.max_rss_kb > 0);
    assert_true(r.wall_us > 0);
    agent_exec_result_free(&r);
}

typedef struct conc {
    agent_client_t *c;
    int n;
    int ok;
} conc_t;

static void *conc_main(void *arg)
{
    conc_t *k = arg;
    char n[16], want[32];
    snprintf(n, sizeof(n), "%d", k->n);
    snprintf(want, sizeof(want), "job %d\n", k->n);
    agent_exec_req_t req = {
        .argv = (const char *const[]){"sh", "-c", "sleep 0.3; echo job $0", n, NULL},
        .timeout_ms = 30000};
    agent_exec_result_t r;
    thaw_err_t err;
    if (agent_client_exec(k->c, &req, &r, &err) == 0 && r.exit_code == 0 &&
        strcmp((char *)r.out, want) == 0)
        k->ok = 1;
    else
        fprintf(stderr, "job %d: %s\n", k->n, err.msg);
    agent_exec_result_free(&r);
    return NULL;
}

static void test_exec_50_concurrent(void **state)
{
    fixture_t *f = *state;
    enum { N = 50 };
    pthread_t t[N];
    conc_t k[N];
    uint64_t t0 = thaw_now_ns();
    for (int i = 0; i < N; i++) {
        k[i] = (conc_t){.c = f->c, .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, conc_main, &k[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok += k[i].ok;
    }
    assert_int_equal(ok, N);
    printf("# 50 concurrent execs of 0.3 s sleeps took %.2f s\n",
           (double)(thaw_now_ns() - t0) / 1e9);
}

static void test_put_get(void **state)
{
    fixture_t *f = *state;
    thaw_err_t err;
    char dir[] = "/tmp/thaw-agent-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/blob", dir);
    size_t n = (1 << 20) + 12345; /* several chunks, last one partial */
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i ^ (i >> 8));
    assert_int_equal(agent_client_put_file(f->c, path, data, n, 0600, 10000, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, n);
    assert_int_equal(st.st_mode & 07777, 0600);
    uint8_t *back = NULL;
    size_t blen = 0;
    assert_int_equal(agent_client_get_file(f->c, path, 4 << 20, &back, &blen, 10000, &err), 0);
    assert_int_equal(blen, n);
    assert_memory_equal(back, data, n);
    free(back);
    /* overwrite with something shorter: truncated, not merged */
    assert_int_equal(agent_client_put_file(f->c, path, "short", 5, 0644, 10000, &err), 0);
    assert_int_equal(agent_client_get_file(f->c, path, 100, &back, &blen, 10000, &err), 0);
    assert_int_equal(blen, 5);
    assert_string_equal((char *)back, "short");
    free(back);
    /* an empty file */
    assert_int_equal(agent_client_put_file(f->c, path, NULL, 0, 0644, 10000, &err), 0);
    assert_int_equal(agent_client_get_file(f->c, path, 100, &back, &blen, 10000, &err), 0);
    assert_int_equal(blen, 0);
    free(back);

    /* the size cap */
    assert_int_equal(agent_client_put_file(f->c, path, data, n, 0644, 10000, &err), 0);
    assert_int_equal(agent_client_get_file(f->c, path, 1000, &back, &blen, 10000, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "cap"));
    /* errors name the file */
    assert_int_equal(agent_client_get_file(f->c, "/nonexistent/x", 10, &back, &blen, 10000, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/x"));
    assert_int_equal(agent_client_get_file(f->c, dir, 10, &back, &blen, 10000, &err), -EISDIR);
    assert_int_equal(agent_client_put_file(f->c, "relative/x", "a", 1, 0644, 10000, &err), -EINVAL);
    assert_int_equal(agent_client_put_file(f->c, "/nonexistent/x", "a", 1, 0644, 10000, &err),
                     -ENOENT);
    /* a FIFO must not stall the agent waiting for a reader, either way */
    char fifo[300];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(agent_client_put_file(f->c, fifo, "a", 1, 0644, 10000, &err), -EINVAL);
    assert_int_equal(agent_client_get_file(f->c, fifo, 10, &back, &blen, 10000, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    unlink(fifo);
    unlink(path);
    rmdir(dir);
    free(data);
}

static void test_thaw_quiesce_ping(void **state)
{
    fixture_t *f = *state;
    thaw_err_t err;
    uint8_t ent[64] = {1, 2, 3};
    bool applied = true;
    assert_int_equal(agent_client_thaw(f->c, ent, sizeof(ent), 0, 5000, &applied, &err), 0);
    assert_false(applied); /* test mode never touches the host's pool or clock */
    uint8_t big[AGENTWIRE_MAX_ENTROPY + 1] = {0};
    assert_int_equal(agent_client_thaw(f->c, big, sizeof(big), 0, 5000, NULL, &err), -E2BIG);

    /* quiesce refuses while a command runs */
    agent_exec_t *x;
    agent_exec_req_t req = {.argv = (const char *const[]){"sleep", "30", NULL},
                            .timeout_ms = 20000};
    assert_int_equal(agent_exec_start(f->c, &req, &x, &err), 0);
    assert_int_equal(agent_client_quiesce(f->c, 5000, &err), -EBUSY);
    agent_exec_signal(x, SIGKILL, true, &err);
    agent_exec_result_t r;
    assert_int_equal(agent_exec_wait(x, &r, &err), 0);
    agent_exec_result_free(&r);
    assert_int_equal(agent_client_quiesce(f->c, 5000, &err), 0);
    /* quiesced: no new work, but ping still answers */
    const char *argv[] = {"true", NULL};
    assert_int_equal(run(f->c, argv, &r, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "quiesced"));
    uint64_t rtt = 0;
    assert_int_equal(agent_client_ping(f->c, 5000, &rtt, &err), 0);
    assert_true(rtt > 0);
    /* thaw ends the quiesce */
    assert_int_equal(agent_client_thaw(f->c, ent, sizeof(ent), 0, 5000, NULL, &err), 0);
    assert_int_equal(run(f->c, argv, &r, &err), 0);
    agent_exec_result_free(&r);
}

static void test_shutdown(void **state)
{
    agent_h_t h;
    agent_client_t *c = agent_h_client(&h);
    thaw_err_t err;
    assert_int_equal(agent_client_shutdown(c, 5000, &err), 0);
    int st = agent_h_wait(&h, 5000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* the client notices the channel is gone */
    assert_true(agent_client_ping(c, 5000, NULL, &err) < 0);
    agent_client_destroy(c);
}

/* ---- hand-made frames ---- */

static void send_raw(int fd, uint16_t type, uint32_t id, const void *payload, uint32_t len)
{
    uint8_t h[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_encode(h, type, id, len);
    agent_h_write_all(fd, h, sizeof(h));
    if (len)
        agent_h_write_all(fd, payload, len);
}

static void expect_error(int fd, uint32_t id, int errnum, const char *needle)
{
    static uint8_t buf[AGENTWIRE_MAX_PAYLOAD];
    agentwire_hdr_t h;
    int n = agent_h_read_frame(fd, &h, buf, sizeof(buf), 5000);
    assert_true(n >= 0);
    assert_int_equal(h.type, AGENTWIRE_ERROR);
    assert_int_equal(h.id, id);
    agentwire_error_t e;
    assert_int_equal(agentwire_parse_error(buf, (size_t)n, &e, NULL, 0), 0);
    assert_int_equal(e.errnum, errnum);
    if (needle && !strstr(e.message, needle))
        fail_msg("error message '%s' lacks '%s'", e.message, needle);
}

static void expect_pong(int fd, uint32_t id)
{
    static uint8_t buf[AGENTWIRE_MAX_PAYLOAD];
    agentwire_hdr_t h;
    assert_true(agent_h_read_frame(fd, &h, buf, sizeof(buf), 5000) >= 0);
    assert_int_equal(h.type, AGENTWIRE_PONG);
    assert_int_equal(h.id, id);
}

static void test_malformed_frames(void **state)
{
    agent_h_t h;
    agent_h_start(&h);
    static uint8_t buf[AGENTWIRE_MAX_PAYLOAD];
    agentwire_hdr_t hdr;
    assert_true(agent_h_read_frame(h.fd, &hdr, buf, sizeof(buf), 5000) >= 0);
    assert_int_equal(hdr.type, AGENTWIRE_HELLO);

    /* unknown type, and an agent→host type sent to the agent */
    send_raw(h.fd, 0x55, 10, NULL, 0);
    expect_error(h.fd, 10, EOPNOTSUPP, "unknown message type");
    send_raw(h.fd, AGENTWIRE_EXIT, 11, NULL, 0);
    expect_error(h.fd, 11, EOPNOTSUPP, NULL);
    /* exec without argv; a field running past the frame; garbage payload */
    send_raw(h.fd, AGENTWIRE_EXEC, 12, NULL, 0);
    expect_error(h.fd, 12, EINVAL, "no argv");
    uint8_t bad[] = {1, 0, 100, 0, 0, 0, 'l', 's'};
    send_raw(h.fd, AGENTWIRE_EXEC, 13, bad, sizeof(bad));
    expect_error(h.fd, 13, EBADMSG, "past the end");
    send_raw(h.fd, AGENTWIRE_PUT, 14, "\xff\xff\xff", 3);
    expect_error(h.fd, 14, EBADMSG, NULL);
    /* nonzero header flags */
    uint8_t fh[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_encode(fh, AGENTWIRE_PING, 15, 0);
    fh[6] = 1;
    agent_h_write_all(h.fd, fh, sizeof(fh));
    expect_error(h.fd, 15, EINVAL, "flags");
    /* oversized entropy is refused by the agent itself */
    agentwire_msg_t m;
    static uint8_t ent[AGENTWIRE_MAX_ENTROPY + 1];
    agentwire_msg_init(&m, AGENTWIRE_THAW, 16);
    agentwire_put_bytes(&m, AGENTWIRE_T_ENTROPY, ent, sizeof(ent));
    assert_int_equal(agentwire_msg_finish(&m), 0);
    agent_h_write_all(h.fd, m.data, m.len);
    agentwire_msg_free(&m);
    expect_error(h.fd, 16, E2BIG, "entropy");
    /* a frame delivered one byte at a time is still one frame */
    agentwire_msg_init(&m, AGENTWIRE_PING, 17);
    agentwire_put_bytes(&m, AGENTWIRE_T_DATA, "x", 1);
    assert_int_equal(agentwire_msg_finish(&m), 0);
    for (size_t i = 0; i < m.len; i++)
        agent_h_write_all(h.fd, m.data + i, 1);
    agentwire_msg_free(&m);
    expect_pong(h.fd, 17);

    /* the channel survived all of that */
    send_raw(h.fd, AGENTWIRE_PING, 18, NULL, 0);
    expect_pong(h.fd, 18);

    /* a frame that breaks framing: the agent closes the channel and exits */
    uint8_t junk[AGENTWIRE_HDR_SIZE] = "garbage-garbage";
    agent_h_write_all(h.fd, junk, sizeof(junk));
    assert_int_equal(agent_h_read_frame(h.fd, &hdr, buf, sizeof(buf), 5000), -1);
    int st = agent_h_wait(&h, 5000);
    assert_true(st != -1 && WIFEXITED(st));
    close(h.fd);
}

static void test_oversized_length_closes(void **state)
{
    agent_h_t h;
    agent_h_start(&h);
    static uint8_t buf[AGENTWIRE_MAX_PAYLOAD];
    agentwire_hdr_t hdr;
    assert_true(agent_h_read_frame(h.fd, &hdr, buf, sizeof(buf), 5000) >= 0);
    uint8_t fh[AGENTWIRE_HDR_SIZE];
    agentwire_hdr_encode(fh, AGENTWIRE_PUT, 1, AGENTWIRE_MAX_PAYLOAD + 1);
    agent_h_write_all(h.fd, fh, sizeof(fh));
    assert_int_equal(agent_h_read_frame(h.fd, &hdr, buf, sizeof(buf), 5000), -1);
    int st = agent_h_wait(&h, 5000);
    assert_true(st != -1 && WIFEXITED(st));
    close(h.fd);
}

static void test_no_fd_leak(void **state)
{
    int before = thaw_test_count_fds();
    for (int i = 0; i < 3; i++) {
        agent_h_t h;
        agent_client_t *c = agent_h_client(&h);
        thaw_err_t err;
        agent_exec_result_t r;
        const char *argv[] = {"true", NULL};
        assert_int_equal(run(c, argv, &r, &err), 0);
        agent_exec_result_free(&r);
        agent_client_destroy(c);
        assert_true(agent_h_wait(&h, 5000) != -1);
    }
    assert_int_equal(thaw_test_count_fds(), before);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    if (!getenv("THAW_AGENT_EXE"))
        thaw_test_skip("THAW_AGENT_EXE is not set: run through meson test");
    const struct CMUnitTest tests[] = {
        T(test_hello),
        T(test_exec_echo),
        T(test_exec_exit_codes),
        T(test_exec_not_found),
        T(test_exec_env_cwd),
        T(test_exec_output_cap),
        T(test_exec_binary_stdin),
        T(test_exec_stream_callback),
        T(test_exec_pty),
        T(test_exec_signal),
        T(test_exec_timeout_kills_tree),
        T(test_exec_rusage),
        T(test_exec_50_concurrent),
        T(test_put_get),
        T(test_thaw_quiesce_ping),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_oversized_length_closes),
        cmocka_unit_test(test_no_fd_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
