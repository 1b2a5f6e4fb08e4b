// SPDX-License-Identifier: Apache-2.0
/*
 * Commands run by thaw-agent: fork, a new session (so the command and
 * everything it starts share one process group that a timeout can kill),
 * pipes for stdin/stdout/stderr, then exec.  A close-on-exec pipe tells the
 * parent whether the exec happened or which step failed, so "no such
 * command" is an ERROR reply, not a mysterious exit 127.
 *
 * An exec ends when its main process has exited and its output pipes are at
 * end of file, or AGENT_LINGER_NS after the exit if something it left behind
 * still holds them (a daemon it started keeps running; its output is no
 * longer forwarded).  Output beyond the cap is read and dropped, never left
 * to block the command, and the EXIT frame says it was truncated.
 */
#include "guest/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/proctree.h"

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    NULL,
};

static agent_proc_t *find_proc(agent_t *a, uint32_t id)
{
    for (agent_proc_t *p = a->procs; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void proc_free(agent_t *a, agent_proc_t *pr)
{
    for (agent_proc_t **pp = &a->procs; *pp; pp = &(*pp)->next) {
        if (*pp == pr) {
            *pp = pr->next;
            a->nprocs--;
            break;
        }
    }
    close_fd(&pr->in_fd);
    close_fd(&pr->out_fd);
    close_fd(&pr->err_fd);
    free(pr->in_buf);
    free(pr);
}

/* Steps the child reports through the status pipe when one fails. */
enum { STEP_SETGROUPS = 1, STEP_SETGID, STEP_SETUID, STEP_CHDIR, STEP_EXEC };

static const char *step_name(int step)
{
    switch (step) {
    case STEP_SETGROUPS:
        return "setgroups";
    case STEP_SETGID:
        return "setgid";
    case STEP_SETUID:
        return "setuid";
    case STEP_CHDIR:
        return "chdir";
    }
    return "exec";
}

/* In the child: never returns.  Only async-signal-safe calls until exec. */
static _Noreturn void child(const agentwire_exec_t *e, int in, int out, int err, int status_fd)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL); /* the agent ignores it; a command must not */
    setsid();
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    /* a pty becomes the new session's controlling terminal, so ^C, job
     * control and isatty() behave as in a terminal */
    if (e->flags & AGENTWIRE_EXEC_PTY)
        ioctl(0, TIOCSCTTY, 0);
    /* everything else, the status pipe included, closes at exec */
    close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
    int step = 0;
    if (e->has_gid || e->has_uid) {
        step = STEP_SETGROUPS;
        if (setgroups(0, NULL) < 0 && errno != EPERM)
            goto fail;
    }
    if (e->has_gid) {
        step = STEP_SETGID;
        if (setgid(e->gid) < 0)
            goto fail;
    }
    if (e->has_uid) {
        step = STEP_SETUID;
        if (setuid(e->uid) < 0)
            goto fail;
    }
    step = STEP_CHDIR;
    if (chdir(e->cwd ? e->cwd : "/") < 0)
        goto fail;
    step = STEP_EXEC;
    /* execvp searches the PATH of environ, so install the command's env first */
    environ = e->env ? e->env : (char **)default_env;
    execvp(e->argv[0], e->argv);
fail:;
    int rep[2] = {step, errno};
    if (write(status_fd, rep, sizeof(rep)) < 0)
        _exit(126);
    _exit(127);
}

static int make_pipe(int fds[2])
{
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

/*
 * A pseudo-terminal in the shape of the three pipes: the child's ends are
 * the slave (three descriptors, so the pipe code closes them as it would),
 * the agent's are the master for output and a duplicate for input; stderr
 * has no agent end, the terminal merges it into stdout.
 */
static int make_pty(int in[2], int out[2], int err[2], uint32_t rows, uint32_t cols)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    char name[64];
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0) {
        int e = errno;
        close(m);
        return -e;
    }
    if (rows || cols) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(m, TIOCSWINSZ, &ws);
    }
    out[0] = m;
    in[1] = fcntl(m, F_DUPFD_CLOEXEC, 3);
    in[0] = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    out[1] = in[0] >= 0 ? fcntl(in[0], F_DUPFD_CLOEXEC, 3) : -1;
    err[1] = in[0] >= 0 ? fcntl(in[0], F_DUPFD_CLOEXEC, 3) : -1;
    if (in[1] < 0 || in[0] < 0 || out[1] < 0 || err[1] < 0)
        return -errno;
    return 0;
}

/*
 * No more stdin: close the pipe; on a pty, send the EOF character (^D)
 * instead, since closing our duplicate of the master would not end the
 * input.  The duplicate stays open until the command exits: closing it
 * right after the ^D was seen to hang up the terminal now and then (the
 * command died of SIGHUP before reading its input), so the pty is left
 * exactly as a terminal emulator would leave it.
 */
static void stdin_done(agent_proc_t *pr)
{
    if (pr->in_fd < 0)
        return;
    if (pr->pty) {
        if (!pr->in_eof_sent && write(pr->in_fd, "\x04", 1) < 0) {
            /* best effort: the command may be gone already */
        }
        pr->in_eof_sent = true;
        return;
    }
    close(pr->in_fd);
    pr->in_fd = -1;
}

int agent__exec_start(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    char why[AGENTWIRE_MAX_MSG];
    agentwire_exec_t e;
    int r = agentwire_parse_exec(p, len, &e, why, sizeof(why));
    if (r < 0)
        return agent__send_error(a, id, -r, "%s", why);
    if (a->quiesced) {
        agentwire_exec_free(&e);
        return agent__send_error(a, id, EBUSY, "exec: agent is quiesced (awaiting thaw)");
    }
    if (find_proc(a, id)) {
        agentwire_exec_free(&e);
        return agent__send_error(a, id, EEXIST, "exec: request id %u is already running", id);
    }
    if (a->nprocs >= AGENT_MAX_PROCS) {
        agentwire_exec_free(&e);
        return agent__send_error(a, id, EAGAIN, "exec: %u commands already running",
                                 AGENT_MAX_PROCS);
    }
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1};
    agent_proc_t *pr = calloc(1, sizeof(*pr));
    if (!pr) {
        r = -ENOMEM;
        goto fail;
    }
    if (e.flags & AGENTWIRE_EXEC_PTY) {
        if ((r = make_pty(in, out, err, e.pty_rows, e.pty_cols)) < 0 || (r = make_pipe(st)) < 0)
            goto fail;
        pr->pty = true;
    } else if ((r = make_pipe(in)) < 0 || (r = make_pipe(out)) < 0 || (r = make_pipe(err)) < 0 ||
               (r = make_pipe(st)) < 0) {
        goto fail;
    }
    if (e.stdin_len) {
        pr->in_buf = malloc(e.stdin_len);
        if (!pr->in_buf) {
            r = -ENOMEM;
            goto fail;
        }
        memcpy(pr->in_buf, e.stdin_data, e.stdin_len);
        pr->in_len = e.stdin_len;
    }
    pr->start_ns = thaw_now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        goto fail;
    }
    if (pid == 0)
        child(&e, in[0], out[1], err[1], st[1]);
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&st[1]);
    int rep[2];
    ssize_t n;
    do
        n = read(st[0], rep, sizeof(rep));
    while (n < 0 && errno == EINTR);
    close_fd(&st[0]);
    if (n == (ssize_t)sizeof(rep)) {
        /* the child failed before exec and exits 127: reap it here so the
         * SIGCHLD path never sees an unknown pid with a request attached */
        waitpid(pid, NULL, 0);
        close_fd(&in[1]);
        close_fd(&out[0]);
        close_fd(&err[0]);
        free(pr->in_buf);
        free(pr);
        r = agent__send_error(a, id, rep[1], "exec '%s': %s%s%s: %s", e.argv[0], step_name(rep[0]),
                              rep[0] == STEP_CHDIR ? " " : "",
                              rep[0] == STEP_CHDIR ? (e.cwd ? e.cwd : "/") : "", strerror(rep[1]));
        agentwire_exec_free(&e);
        return r;
    }
    pr->id = id;
    pr->pid = pid;
    pr->in_fd = in[1];
    pr->out_fd = out[0];
    pr->err_fd = err[0];
    fcntl(pr->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(pr->out_fd, F_SETFL, O_NONBLOCK);
    if (pr->err_fd >= 0)
        fcntl(pr->err_fd, F_SETFL, O_NONBLOCK);
    pr->in_eof = !(e.flags & AGENTWIRE_EXEC_STDIN_OPEN);
    pr->cap = e.output_cap ? e.output_cap : AGENT_DEFAULT_CAP;
    if (pr->cap > AGENT_MAX_CAP)
        pr->cap = AGENT_MAX_CAP;
    if (e.timeout_ms)
        pr->deadline_ns = pr->start_ns + (uint64_t)e.timeout_ms * 1000000ull;
    pr->next = a->procs;
    a->procs = pr;
    a->nprocs++;
    agentwire_exec_free(&e);
    if (pr->in_eof && pr->in_len == 0)
        stdin_done(pr);

    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_STARTED, id);
    agentwire_put_u32(&m, AGENTWIRE_T_PID, (uint32_t)pid);
    r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;

fail:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&out[i]);
        close_fd(&err[i]);
        close_fd(&st[i]);
    }
    if (pr)
        free(pr->in_buf);
    free(pr);
    r = agent__send_error(a, id, -r, "exec '%s': %s", e.argv[0], strerror(-r));
    agentwire_exec_free(&e);
    return r;
}

int agent__exec_stdin(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    char why[AGENTWIRE_MAX_MSG];
    agentwire_stdin_t s;
    int r = agentwire_parse_stdin(p, len, &s, why, sizeof(why));
    agent_proc_t *pr = find_proc(a, id);
    if (!pr)
        return 0; /* it may have ended while this frame was in flight */
    if (r < 0) {
        /* the client's EXIT wait would otherwise never learn of the problem */
        kill(-pr->pid, SIGKILL);
        return 0;
    }
    if (pr->in_fd < 0 || pr->in_eof)
        return 0; /* stdin already closed: the bytes have nowhere to go */
    if (s.len) {
        size_t pending = pr->in_len - pr->in_off;
        if (pending + s.len > AGENT_MAX_STDIN) {
            /* a client that outruns the command by this much is broken */
            fprintf(stderr, "thaw-agent: exec %u: stdin over %u bytes buffered; killing it\n", id,
                    AGENT_MAX_STDIN);
            kill(-pr->pid, SIGKILL);
            close_fd(&pr->in_fd);
            return 0;
        }
        if (pr->in_off) {
            memmove(pr->in_buf, pr->in_buf + pr->in_off, pending);
            pr->in_len = pending;
            pr->in_off = 0;
        }
        uint8_t *nb = realloc(pr->in_buf, pr->in_len + s.len);
        if (!nb) {
            kill(-pr->pid, SIGKILL);
            close_fd(&pr->in_fd);
            return 0;
        }
        pr->in_buf = nb;
        memcpy(pr->in_buf + pr->in_len, s.data, s.len);
        pr->in_len += s.len;
    }
    if (s.eof)
        pr->in_eof = true;
    if (pr->in_eof && pr->in_off == pr->in_len)
        stdin_done(pr);
    return 0;
}

int agent__exec_signal(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    char why[AGENTWIRE_MAX_MSG];
    agentwire_signal_t s;
    int r = agentwire_parse_signal(p, len, &s, why, sizeof(why));
    agent_proc_t *pr = find_proc(a, id);
    if (!pr || pr->exited)
        return 0; /* raced with its exit: nothing to signal */
    if (r < 0) {
        fprintf(stderr, "thaw-agent: exec %u: bad signal frame: %s\n", id, why);
        return 0;
    }
    kill((s.flags & AGENTWIRE_SIGNAL_GROUP) ? -pr->pid : pr->pid, (int)s.signo);
    return 0;
}

void agent__reap(agent_t *a)
{
    for (;;) {
        int status;
        struct rusage ru;
        pid_t pid = wait4(-1, &status, WNOHANG, &ru);
        if (pid <= 0)
            return;
        for (agent_proc_t *pr = a->procs; pr; pr = pr->next) {
            if (pr->pid == pid && !pr->exited) {
                pr->exited = true;
                pr->status = status;
                pr->ru = ru;
                pr->exit_ns = thaw_now_ns();
                /* stdin has no reader any more */
                close_fd(&pr->in_fd);
                break;
            }
        }
        /* anything else was an orphan re-parented to us: reaping is all it needs */
    }
}

static int send_output(agent_t *a, agent_proc_t *pr, uint16_t type, const uint8_t *buf, size_t n)
{
    size_t room = pr->sent < pr->cap ? (size_t)(pr->cap - pr->sent) : 0;
    if (n > room) {
        pr->truncated = true;
        n = room;
    }
    if (n == 0)
        return 0;
    pr->sent += n;
    agentwire_msg_t m;
    agentwire_msg_init(&m, type, pr->id);
    agentwire_put_bytes(&m, AGENTWIRE_T_DATA, buf, n);
    int r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

static int drain(agent_t *a, agent_proc_t *pr, int *fd, uint16_t type)
{
    static uint8_t buf[64 << 10];
    /* bounded per wake-up so one chatty command cannot starve the others */
    for (int i = 0; i < 4 && *fd >= 0; i++) {
        ssize_t n = read(*fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            close_fd(fd);
            return 0;
        }
        int r = send_output(a, pr, type, buf, (size_t)n);
        if (r < 0)
            return r;
    }
    return 0;
}

int agent__proc_io(agent_t *a, agent_proc_t *pr, short out_rev, short err_rev, short in_rev)
{
    int r = 0;
    if (out_rev && (r = drain(a, pr, &pr->out_fd, AGENTWIRE_STDOUT)) < 0)
        return r;
    if (err_rev && (r = drain(a, pr, &pr->err_fd, AGENTWIRE_STDERR)) < 0)
        return r;
    if (in_rev && pr->in_fd >= 0) {
        if (in_rev & (POLLERR | POLLHUP)) {
            close_fd(&pr->in_fd);
        } else if (pr->in_off < pr->in_len) {
            ssize_t n = write(pr->in_fd, pr->in_buf + pr->in_off, pr->in_len - pr->in_off);
            if (n > 0)
                pr->in_off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                close_fd(&pr->in_fd); /* EPIPE: the command stopped reading */
        }
        if (pr->in_fd >= 0 && pr->in_eof && pr->in_off == pr->in_len)
            stdin_done(pr);
    }
    return 0;
}

static int send_exit(agent_t *a, agent_proc_t *pr)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_EXIT, pr->id);
    if (WIFSIGNALED(pr->status))
        agentwire_put_u32(&m, AGENTWIRE_T_TERMSIG, (uint32_t)WTERMSIG(pr->status));
    else
        agentwire_put_u32(&m, AGENTWIRE_T_EXIT_CODE, (uint32_t)WEXITSTATUS(pr->status));
    agentwire_put_u32(&m, AGENTWIRE_T_TIMED_OUT, pr->timed_out);
    agentwire_put_u32(&m, AGENTWIRE_T_TRUNCATED, pr->truncated);
    uint64_t user = (uint64_t)pr->ru.ru_utime.tv_sec * 1000000u + (uint64_t)pr->ru.ru_utime.tv_usec;
    uint64_t sys = (uint64_t)pr->ru.ru_stime.tv_sec * 1000000u + (uint64_t)pr->ru.ru_stime.tv_usec;
    agentwire_put_u64(&m, AGENTWIRE_T_CPU_USER, user);
    agentwire_put_u64(&m, AGENTWIRE_T_CPU_SYS, sys);
    agentwire_put_u64(&m, AGENTWIRE_T_MAX_RSS, (uint64_t)pr->ru.ru_maxrss);
    agentwire_put_u64(&m, AGENTWIRE_T_WALL, (pr->exit_ns - pr->start_ns) / 1000u);
    int r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

int agent__procs_tick(agent_t *a, uint64_t now)
{
    agent_proc_t *pr = a->procs;
    while (pr) {
        agent_proc_t *next = pr->next;
        if (!pr->exited && pr->deadline_ns && now >= pr->deadline_ns && !pr->timed_out) {
            pr->timed_out = true;
            kill(-pr->pid, SIGKILL);
        }
        /* after a timeout, the group is dead: whatever still holds the pipes is gone too */
        if (pr->exited && (pr->out_fd >= 0 || pr->err_fd >= 0) &&
            now >= pr->exit_ns + AGENT_LINGER_NS) {
            close_fd(&pr->out_fd);
            close_fd(&pr->err_fd);
        }
        if (pr->exited && pr->out_fd < 0 && pr->err_fd < 0) {
            int r = send_exit(a, pr);
            proc_free(a, pr);
            if (r < 0)
                return r;
        }
        pr = next;
    }
    return 0;
}

uint64_t agent__next_deadline(agent_t *a)
{
    uint64_t best = 0;
    for (agent_proc_t *pr = a->procs; pr; pr = pr->next) {
        uint64_t d = 0;
        if (!pr->exited && pr->deadline_ns && !pr->timed_out)
            d = pr->deadline_ns;
        else if (pr->exited)
            d = pr->exit_ns + AGENT_LINGER_NS;
        if (d && (!best || d < best))
            best = d;
    }
    return best;
}

void agent__kill_all(agent_t *a)
{
    for (agent_proc_t *pr = a->procs; pr; pr = pr->next)
        if (!pr->exited)
            kill(-pr->pid, SIGKILL);
}

void agent__procs_free(agent_t *a)
{
    agent__kill_all(a);
    if (a->mode == AGENT_MODE_TEST) {
        /* Test mode has no pid namespace or VM to end with us, and what a
         * command left running (a background job outside its group's kill,
         * a daemon in its own session) is below us, since we are a
         * subreaper: take it all down before the session ends
         * (pool/backend-process.c does the same if we are gone first). */
        thaw_kill_descendants(getpid(), 64);
    }
    /* their request ids belong to a session that is over; the processes
     * are reaped as orphans by the SIGCHLD path */
    while (a->procs)
        proc_free(a, a->procs);
}
