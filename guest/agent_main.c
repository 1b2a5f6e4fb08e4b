// SPDX-License-Identifier: Apache-2.0
/*
 * thaw-agent: the program inside every sandbox.  It finds its mode and its
 * channel, does its PID 1 duties, says hello, then serves requests in one
 * poll loop until told to shut down.
 *
 * Mode (THAW_AGENT_MODE=vm|sentry|test overrides the guess):
 *   vm      PID 1 without THAW_AGENT_FD: a microVM's init.  Mounts /proc,
 *           /sys, /dev, /tmp, /run, sets the hostname, talks over a
 *           virtio-console (find_vm_channel), reopens it after a broken
 *           session and never exits.
 *   sentry  PID 1 with THAW_AGENT_FD: a sentry sandbox's pid namespace.
 *           Reaps orphans, mounts nothing, exits when the channel closes
 *           (which tears the namespace down).
 *   test    not PID 1, THAW_AGENT_FD set: an ordinary process on the host
 *           (the tests).  A child subreaper so orphans are still reaped.
 */
#include "guest/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "common/clock.h"

static int parse_mode(const char *s, agent_mode_t *mode)
{
    if (!strcmp(s, "vm"))
        *mode = AGENT_MODE_VM;
    else if (!strcmp(s, "sentry"))
        *mode = AGENT_MODE_SENTRY;
    else if (!strcmp(s, "test"))
        *mode = AGENT_MODE_TEST;
    else
        return -EINVAL;
    return 0;
}

static int parse_fd(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 0 || v > 65535)
        return -EINVAL;
    if (fcntl((int)v, F_GETFD) < 0)
        return -EBADF;
    return (int)v;
}

/* /dev/hvc0 in raw mode: the line discipline must not echo, translate CR/LF
 * or treat bytes as signals, since the frames are binary. */
static int open_console(const char *dev)
{
    int fd = -1;
    for (int i = 0; i < 100 && fd < 0; i++) {
        fd = open(dev, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
            usleep(50000); /* the device node may appear a moment late */
    }
    if (fd < 0)
        return -errno;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    tcflush(fd, TCIOFLUSH);
    return fd;
}

/*
 * The VM's channel: THAW_AGENT_DEV if set; else a virtio-serial port named
 * org.thaw.agent (multiport virtio-console; its name is in sysfs, since an
 * initramfs has no udev for /dev/virtio-ports/); else /dev/hvc0, the first
 * port of a plain virtio-console.
 */
static const char *find_vm_channel(char *buf, size_t size)
{
    const char *dev = getenv("THAW_AGENT_DEV");
    if (dev)
        return dev;
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[64] = "";
        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        if (fgets(name, sizeof(name), f) && !strcmp(name, AGENT_PORT_NAME "\n")) {
            snprintf(buf, size, "/dev/%s", e->d_name);
            fclose(f);
            closedir(d);
            return buf;
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return "/dev/hvc0";
}

static int serve(agent_t *a)
{
    struct pollfd pfd[2 + 3 * AGENT_MAX_PROCS];
    agent_proc_t *who[2 + 3 * AGENT_MAX_PROCS];
    int r = agent__send_hello(a);
    while (r == 0) {
        size_t n = 0;
        pfd[n++] = (struct pollfd){.fd = a->chan_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = a->sig_fd, .events = POLLIN};
        for (agent_proc_t *pr = a->procs; pr; pr = pr->next) {
            if (pr->out_fd >= 0) {
                who[n] = pr;
                pfd[n++] = (struct pollfd){.fd = pr->out_fd, .events = POLLIN};
            }
            if (pr->err_fd >= 0) {
                who[n] = pr;
                pfd[n++] = (struct pollfd){.fd = pr->err_fd, .events = POLLIN};
            }
            if (pr->in_fd >= 0 && pr->in_off < pr->in_len) {
                who[n] = pr;
                pfd[n++] = (struct pollfd){.fd = pr->in_fd, .events = POLLOUT};
            }
        }
        int timeout = -1;
        uint64_t next = agent__next_deadline(a);
        if (next) {
            uint64_t now = thaw_now_ns();
            timeout = next <= now ? 0 : (int)((next - now) / 1000000ull) + 1;
        }
        int k = poll(pfd, n, timeout);
        if (k < 0 && errno != EINTR)
            return -errno;
        if (k > 0) {
            if (pfd[1].revents) {
                struct signalfd_siginfo si;
                while (read(a->sig_fd, &si, sizeof(si)) > 0)
                    ;
                agent__reap(a);
            }
            for (size_t i = 2; i < n && r == 0; i++) {
                if (!pfd[i].revents)
                    continue;
                agent_proc_t *pr = who[i];
                short o = pfd[i].fd == pr->out_fd ? pfd[i].revents : 0;
                short e = pfd[i].fd == pr->err_fd ? pfd[i].revents : 0;
                short in = pfd[i].fd == pr->in_fd ? pfd[i].revents : 0;
                r = agent__proc_io(a, pr, o, e, in);
            }
            /* the channel last: a request may free the procs indexed above */
            if (r == 0 && pfd[0].revents)
                r = agent__chan_readable(a);
        }
        if (r == 0)
            r = agent__procs_tick(a, thaw_now_ns());
    }
    return r;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--version")) {
        printf("thaw-agent protocol %u\n", AGENTWIRE_VERSION);
        return 0;
    }
    agent_t a = {.chan_fd = -1, .sig_fd = -1};
    const char *fd_env = getenv("THAW_AGENT_FD");
    const char *mode_env = getenv("THAW_AGENT_MODE");
    if (mode_env) {
        if (parse_mode(mode_env, &a.mode) < 0) {
            fprintf(stderr, "thaw-agent: THAW_AGENT_MODE=%s: expected vm, sentry or test\n",
                    mode_env);
            return 2;
        }
    } else if (getpid() == 1) {
        a.mode = fd_env ? AGENT_MODE_SENTRY : AGENT_MODE_VM;
    } else {
        a.mode = AGENT_MODE_TEST;
    }

    signal(SIGPIPE, SIG_IGN); /* a vanished host is EPIPE on write, handled */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    a.sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a.sig_fd < 0) {
        fprintf(stderr, "thaw-agent: signalfd: %s\n", strerror(errno));
        return 1;
    }
    if (a.mode == AGENT_MODE_TEST)
        prctl(PR_SET_CHILD_SUBREAPER, 1);
    agent__pid1_setup(&a);
    a.rbuf = malloc(AGENTWIRE_HDR_SIZE + AGENTWIRE_MAX_PAYLOAD);
    if (!a.rbuf) {
        fprintf(stderr, "thaw-agent: out of memory\n");
        return 1;
    }

    if (a.mode == AGENT_MODE_VM && !fd_env) {
        char devbuf[300];
        const char *dev = find_vm_channel(devbuf, sizeof(devbuf));
        a.chan_reopenable = true;
        for (;;) {
            a.chan_fd = open_console(dev);
            if (a.chan_fd < 0) {
                fprintf(stderr, "thaw-agent: %s: %s; retrying\n", dev, strerror(-a.chan_fd));
                sleep(1);
                continue;
            }
            fprintf(stderr, "thaw-agent: ready on %s\n", dev);
            int r = serve(&a);
            fprintf(stderr, "thaw-agent: session ended (%s); reopening %s\n", strerror(-r), dev);
            agent__procs_free(&a);
            close(a.chan_fd);
            a.rlen = 0;
            /* a port with no host behind it reads EOF at once: do not spin */
            usleep(200000);
            /* a PID 1 never exits; the next session starts with no execs */
        }
    }

    if (!fd_env) {
        fprintf(stderr, "thaw-agent: no channel: set THAW_AGENT_FD to an inherited descriptor "
                        "(or run as PID 1 of a microVM)\n");
        free(a.rbuf);
        return 2;
    }
    a.chan_fd = parse_fd(fd_env);
    if (a.chan_fd < 0) {
        fprintf(stderr, "thaw-agent: THAW_AGENT_FD=%s: %s\n", fd_env, strerror(-a.chan_fd));
        free(a.rbuf);
        return 2;
    }
    unsetenv("THAW_AGENT_FD"); /* commands must not see or inherit the channel */
    fcntl(a.chan_fd, F_SETFD, FD_CLOEXEC);
    int fl = fcntl(a.chan_fd, F_GETFL);
    if (fl >= 0)
        fcntl(a.chan_fd, F_SETFL, fl & ~O_NONBLOCK);
    int r = serve(&a);
    agent__procs_free(&a);
    free(a.rbuf);
    if (r != -ECONNRESET)
        fprintf(stderr, "thaw-agent: session ended: %s\n", strerror(-r));
    return r == -ECONNRESET ? 0 : 1;
}
