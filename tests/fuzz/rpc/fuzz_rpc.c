// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for thawd's request path: the line framing, the JSON-RPC
 * envelope (rpc/dispatch.c) and every method's parameter checks (rpc/m_*.c,
 * rpc/params.c, base64).  The real server runs in this process on a thread,
 * over a real pool whose three tiers are registered as unavailable: each
 * input is written to a fresh connection as it is (several lines are several
 * requests; an overlong line hits the size limit, which is set low here),
 * followed by one sentinel request, and its replies are read until the
 * sentinel's.  Methods that pass their parameter checks then fail cleanly in
 * the pool (no such template, tier unavailable), so nothing accumulates
 * between inputs.  A crash, leak, hang or a missing sentinel reply is a bug.
 *
 * Built with -Dfuzzing=true (tests/fault/meson.build); fuzz_replay.c runs
 * the seed corpus through the same function as a unit test in every tree.
 */
#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pool/backends.h"
#include "pool/pool.h"
#include "rpc/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * How long a reply may take, in the harness's own running time (wait_fd),
 * before the connection counts as hung.  Far above any real reply (ms), so
 * only a connection that never answers trips it.
 */
#define REPLY_TIMEOUT_MS 60000

/*
 * Wait for events on fd for up to REPLY_TIMEOUT_MS of this thread's own
 * running time, in 100 ms polls.  A poll that returns seconds late means
 * this thread (and, on the 2-core CI machine, most likely the whole VM) was
 * not scheduled meanwhile: that stretch is counted as one slice, not held
 * against thawd, which was frozen too (docs/security.md, known gaps: every
 * stall seen so far ended the moment the harness itself ran again).  A
 * server that does not answer while this thread keeps running still fails.
 * Returns poll's revents, or 0 on timeout.
 */
static short wait_fd(int fd, short events)
{
    int64_t waited_ms = 0;
    while (waited_ms <= REPLY_TIMEOUT_MS) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, 100);
        if (r > 0)
            return p.revents;
        if (r < 0 && errno != EINTR)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int64_t ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > 200) /* counted as 200 below: say so, every time */
            fprintf(stderr, "fuzz-rpc: a 100 ms poll took %lld ms: not scheduled meanwhile\n",
                    (long long)ms);
        waited_ms += ms < 200 ? ms : 200;
    }
    return 0;
}

#define SENTINEL "{\"jsonrpc\":\"2.0\",\"id\":\"fuzz-end-7f3a\",\"method\":\"server.info\"}\n"

static char dir[64];
static char sock_path[96];
static pool_t *pool;
static rpc_server_t *srv;
static pool_unavailable_backend_t tiers[3];

static void *serve(void *arg)
{
    (void)arg;
    rpc_server_run(srv);
    return NULL;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* The store and socket go with the process (the server thread is not joined). */
static void cleanup(void)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    /* The server's loop thread owns the signals it watches; nothing here
     * should die of a peer closing early. */
    signal(SIGPIPE, SIG_IGN);
    /* One log line per connection would drown the fuzzer's own output. */
    setenv("THAW_LOG", "error", 0);
    snprintf(dir, sizeof(dir), "/tmp/thaw-fuzz-rpc-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    atexit(cleanup);
    char store[256];
    snprintf(store, sizeof(store), "%s/store", dir);
    snprintf(sock_path, sizeof(sock_path), "%s/s", dir);
    thaw_err_t err = {0};
    pool_config_t pc = {.store_dir = store, .refill_threads = 1};
    if (pool_new(&pc, &pool, &err) < 0) {
        fprintf(stderr, "fuzz-rpc: pool_new: %s\n", err.msg);
        abort();
    }
    static const char *const names[3] = {"sentry", "vm", "process"};
    for (int i = 0; i < 3; i++) {
        pool_unavailable_init(&tiers[i], names[i], "not in the fuzz harness");
        pool_add_backend(pool, &tiers[i].ops, &tiers[i]);
    }
    if (pool_load(pool, &err) < 0)
        abort();
    rpc_config_t cfg = {
        .socket_path = sock_path,
        .max_message = 4096, /* small, so inputs reach the oversized-line path */
        .max_inflight = 8,
        .store_dir = store,
    };
    if (rpc_server_new(&cfg, pool, &srv, &err) < 0) {
        fprintf(stderr, "fuzz-rpc: rpc_server_new: %s\n", err.msg);
        abort();
    }
    pthread_t t;
    if (pthread_create(&t, NULL, serve, NULL) != 0)
        abort();
    pthread_detach(t);
}

static int connect_sock(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "fuzz-rpc: connect: %s\n", strerror(errno));
        abort();
    }
    return fd;
}

/* Write everything while draining replies, so neither side blocks on a full buffer. */
static void pump(int fd, const uint8_t *data, size_t len, char **rbuf, size_t *rlen, size_t *rcap)
{
    size_t off = 0;
    while (off < len) {
        short revents = wait_fd(fd, POLLIN | POLLOUT);
        if (!revents)
            abort(); /* thawd stopped reading and answering: a hang */
        if (revents & POLLIN) {
            if (*rlen + 65536 > *rcap) {
                *rcap = *rcap * 2 + 65536;
                *rbuf = realloc(*rbuf, *rcap);
                if (!*rbuf)
                    abort();
            }
            ssize_t n = read(fd, *rbuf + *rlen, *rcap - *rlen - 1);
            if (n > 0)
                *rlen += (size_t)n;
            else if (n == 0)
                abort(); /* thawd closed a connection it had no reason to close */
        }
        if (revents & POLLOUT) {
            ssize_t w = send(fd, data + off, len - off, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                abort();
            if (w > 0)
                off += (size_t)w;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, setup);
    int fd = connect_sock();
    size_t rcap = 65536, rlen = 0;
    char *rbuf = malloc(rcap);
    if (!rbuf)
        abort();
    pump(fd, data, size, &rbuf, &rlen, &rcap);
    /* End any unterminated line, then the sentinel. */
    static const char tail[] = "\n" SENTINEL;
    pump(fd, (const uint8_t *)tail, sizeof(tail) - 1, &rbuf, &rlen, &rcap);
    for (;;) {
        rbuf[rlen] = '\0';
        if (strstr(rbuf, "fuzz-end-7f3a"))
            break;
        if (!wait_fd(fd, POLLIN))
            abort(); /* no reply to the sentinel: the connection hangs */
        if (rlen + 65536 > rcap) {
            rcap = rcap * 2 + 65536;
            rbuf = realloc(rbuf, rcap);
            if (!rbuf)
                abort();
        }
        ssize_t n = read(fd, rbuf + rlen, rcap - rlen - 1);
        if (n <= 0)
            abort(); /* closed before answering */
        rlen += (size_t)n;
    }
    free(rbuf);
    close(fd);
    return 0;
}
