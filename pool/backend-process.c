// SPDX-License-Identifier: Apache-2.0
/*
 * The `process` tier: the real thaw-agent run as a plain child process of
 * thawd on a socketpair.  It gives NO isolation (the workload runs as
 * thawd's user, on the host's filesystem), so thawd offers it only when
 * started with --enable-process-tier.  It exists so the pool and the RPC
 * service can be exercised end to end, with the real agent and protocol, on
 * machines (and in test suites) without root or KVM.
 */
#include "pool/backends.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/proctree.h"

extern char **environ;

typedef struct proc_sb {
    pid_t pid;
    int pidfd;
} proc_sb_t;

static int proc_available(void *ctx, char *why, size_t n)
{
    pool_process_backend_t *b = ctx;
    if (!b->enabled) {
        snprintf(why, n,
                 "the process tier has no isolation; start thawd with "
                 "--enable-process-tier to allow it (tests, development)");
        return -EPERM;
    }
    if (access(b->agent_path, X_OK) < 0) {
        snprintf(why, n, "agent '%s': %s", b->agent_path, strerror(errno));
        return -ENOENT;
    }
    return 0;
}

static int proc_tpl_prepare(void *ctx, const pool_tpl_def_t *def, const char *dir,
                            pool_progress_fn progress, void *pud, void **st, thaw_err_t *err)
{
    (void)dir, (void)progress, (void)pud;
    char why[256];
    if (proc_available(ctx, why, sizeof(why)) < 0)
        return thaw_err_set(err, ENOTSUP, "%s", why);
    if (def->image[0])
        return thaw_err_set(err, EINVAL, "the process tier takes no image");
    *st = ctx;
    return 0;
}

static int proc_tpl_open(void *ctx, const pool_tpl_def_t *def, const char *dir, void **st,
                         thaw_err_t *err)
{
    return proc_tpl_prepare(ctx, def, dir, NULL, NULL, st, err);
}

static void proc_tpl_close(void *ctx, void *st)
{
    (void)ctx, (void)st;
}

static int proc_create(void *ctx, void *tpl, void **out, int *agent_fd, thaw_err_t *err)
{
    pool_process_backend_t *b = ctx;
    (void)tpl;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return thaw_err_sys(err, errno, "socketpair");
    _cleanup_close_ int host = sv[0], guest = sv[1];

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    /* The agent reads its channel from fd 3 (dup2 clears close-on-exec). */
    posix_spawn_file_actions_adddup2(&fa, guest, 3);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    char *const argv[] = {(char *)"thaw-agent", NULL};
    char *const envp[] = {(char *)"THAW_AGENT_FD=3",
                          (char *)"THAW_AGENT_MODE=test",
                          (char *)"PATH=/usr/local/bin:/usr/bin:/bin",
                          (char *)"HOME=/tmp",
                          (char *)"LANG=C.UTF-8",
                          NULL};
    pid_t pid;
    int r = posix_spawn(&pid, b->agent_path, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (r != 0)
        return thaw_err_sys(err, r, "spawn agent '%s'", b->agent_path);
    proc_sb_t *s = calloc(1, sizeof(*s));
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (!s || pidfd < 0) {
        r = s ? errno : ENOMEM;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        free(s);
        if (pidfd >= 0)
            close(pidfd);
        return thaw_err_sys(err, r, "pidfd_open");
    }
    s->pid = pid;
    s->pidfd = pidfd;
    *out = s;
    *agent_fd = TAKE_FD(host);
    return 0;
}

static void proc_destroy(void *ctx, void *sb)
{
    (void)ctx;
    proc_sb_t *s = sb;
    /*
     * Everything the workload left running, then the agent.  The agent is a
     * child subreaper in this mode (guest/agent_main.c), so while it lives
     * everything the workload started is below it, a daemon that left its
     * session too.  It may be gone already: the channel closed first, and
     * on EOF the agent kills its own tree and exits (agent__procs_free).
     * Bounded passes: this tier has no pids limit to stop a fork bomb.
     */
    thaw_kill_descendants(s->pid, 64);
    kill(-s->pid, SIGKILL); /* the agent's own group, the agent first among them */
    kill(s->pid, SIGKILL);
    while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close(s->pidfd);
    free(s);
}

static int proc_alive(void *ctx, void *sb)
{
    (void)ctx;
    proc_sb_t *s = sb;
    struct pollfd pfd = {.fd = s->pidfd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0; /* readable once the process has exited */
}

static int proc_pid(void *ctx, void *sb)
{
    (void)ctx;
    return ((proc_sb_t *)sb)->pid;
}

const pool_backend_ops_t pool_process_ops = {
    .tier = "process",
    .available = proc_available,
    .tpl_prepare = proc_tpl_prepare,
    .tpl_open = proc_tpl_open,
    .tpl_close = proc_tpl_close,
    .create = proc_create,
    .destroy = proc_destroy,
    .alive = proc_alive,
    .pid = proc_pid,
};
