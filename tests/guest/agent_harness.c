// SPDX-License-Identifier: Apache-2.0
/*
 * Starts the real thaw-agent binary for the guest tests (agent_harness.h).
 */
#include "agent_harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"

static void die(const char *what)
{
    fprintf(stderr, "harness: %s: %s\n", what, strerror(errno));
    abort();
}

void agent_h_start(agent_h_t *h)
{
    const char *exe = getenv("THAW_AGENT_EXE");
    if (!exe) {
        fprintf(stderr, "harness: THAW_AGENT_EXE is not set (run through meson test)\n");
        abort();
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        if (dup2(sv[1], 3) < 0)
            _exit(120);
        setenv("THAW_AGENT_FD", "3", 1);
        setenv("THAW_AGENT_MODE", "test", 1);
        execl(exe, exe, (char *)NULL);
        _exit(121);
    }
    close(sv[1]);
    h->pid = pid;
    h->fd = sv[0];
}

int agent_h_wait(agent_h_t *h, int timeout_ms)
{
    uint64_t end = thaw_now_ns() + (uint64_t)timeout_ms * 1000000u;
    int status;
    while (thaw_now_ns() < end) {
        pid_t r = waitpid(h->pid, &status, WNOHANG);
        if (r == h->pid)
            return status;
        usleep(5000);
    }
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &status, 0);
    return -1;
}

agent_client_t *agent_h_client(agent_h_t *h)
{
    agent_h_start(h);
    agent_client_t *c = NULL;
    thaw_err_t err;
    if (agent_client_new(h->fd, &c, &err) < 0) {
        fprintf(stderr, "harness: %s\n", err.msg);
        abort();
    }
    h->fd = -1;
    if (agent_client_wait_hello(c, 10000, NULL, &err) < 0) {
        fprintf(stderr, "harness: %s\n", err.msg);
        abort();
    }
    return c;
}

void agent_h_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("write");
        p += n;
        len -= (size_t)n;
    }
}

static int read_exact(int fd, uint8_t *buf, size_t len, uint64_t end)
{
    while (len) {
        uint64_t now = thaw_now_ns();
        if (now >= end)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)((end - now) / 1000000u) + 1) <= 0)
            continue;
        ssize_t n = read(fd, buf, len);
        if (n <= 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int agent_h_read_frame(int fd, agentwire_hdr_t *h, uint8_t *payload, size_t cap, int timeout_ms)
{
    uint64_t end = thaw_now_ns() + (uint64_t)timeout_ms * 1000000u;
    uint8_t hb[AGENTWIRE_HDR_SIZE];
    if (read_exact(fd, hb, sizeof(hb), end) < 0)
        return -1;
    if (agentwire_hdr_decode(hb, sizeof(hb), h) < 0 || h->len > cap)
        return -1;
    if (read_exact(fd, payload, h->len, end) < 0)
        return -1;
    return (int)h->len;
}
