// SPDX-License-Identifier: Apache-2.0
/*
 * The parent side of a sandbox's life: clone3 into the namespaces, write the
 * id maps, put the child in its cgroup, take its seccomp listener, hand it
 * to the supervisor, and wait for the agent's exec; and the teardown.
 *
 * The child (child.c) and the parent speak over two pipes: the parent says
 * 'M' (maps and cgroup done) and 'G' (listener registered); the child sends
 * 'L' with its listener fd number, or 'E' with the step that failed.  The
 * child's end is close-on-exec, so EOF after 'G' means the agent's exec
 * succeeded.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"
#include "sentry/internal.h"

#define MIB (1024ull * 1024ull)

static int write_proc(pid_t pid, const char *file, const char *val)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/%s", (int)pid, file);
    _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = strlen(val);
    if (write(fd, val, n) != (ssize_t)n)
        return errno ? -errno : -EIO;
    return 0;
}

/* MS_* flags of the mount holding path that a remount in a user namespace
 * must keep (they are locked). */
static unsigned long locked_flags(const char *path)
{
    struct statvfs sv;
    if (statvfs(path, &sv) < 0)
        return 0;
    unsigned long f = 0;
    if (sv.f_flag & ST_NOSUID)
        f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV)
        f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC)
        f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME)
        f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* Read one child message, waiting at most timeout_ms.  Returns 1 with *m,
 * 0 on EOF, -ETIMEDOUT or -errno. */
static int read_msg(int fd, sentry_child_msg_t *m, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = read(fd, m, sizeof(*m));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        if ((size_t)n != sizeof(*m))
            return -EPROTO;
        return 1;
    }
}

static int plan_path(char *out, const char *root, const char *sub, thaw_err_t *err)
{
    int n = snprintf(out, SENTRY_PATH_MAX, "%s/%s", root, sub);
    if (n < 0 || n >= SENTRY_PATH_MAX)
        return thaw_err_set(err, ENAMETOOLONG, "root '%.200s': path too long", root);
    return 0;
}

static int fill_plan(sentry_plan_t *pl, const sentry_config_t *cfg, const sentry_t *sb,
                     thaw_err_t *err)
{
    int rc;
    if ((rc = plan_path(pl->usr, cfg->root, "usr", err)) < 0 ||
        (rc = plan_path(pl->tmp, cfg->root, "tmp", err)) < 0 ||
        (rc = plan_path(pl->work, cfg->root, "work", err)) < 0 ||
        (rc = plan_path(pl->dev, cfg->root, "dev", err)) < 0 ||
        (rc = plan_path(pl->proc, cfg->root, "proc", err)) < 0)
        return rc;
    static const char *const nodes[5] = {"dev/null", "dev/zero", "dev/full", "dev/random",
                                         "dev/urandom"};
    for (int i = 0; i < 5; i++)
        if ((rc = plan_path(pl->devnode[i], cfg->root, nodes[i], err)) < 0)
            return rc;
    for (int i = 0; i < 5; i++) {
        const char *need = i == 0   ? pl->usr
                           : i == 1 ? pl->tmp
                           : i == 2 ? pl->work
                           : i == 3 ? pl->dev
                                    : pl->proc;
        struct stat st;
        if (stat(need, &st) < 0 || !S_ISDIR(st.st_mode))
            return thaw_err_set(err, ENOENT,
                                "root '%.200s': mount point %s is missing (build the root with "
                                "sentry_template_build)",
                                cfg->root, need);
    }
    uint64_t tmpb = cfg->tmp_bytes ? cfg->tmp_bytes : 64 * MIB;
    uint64_t workb = cfg->work_bytes ? cfg->work_bytes : 256 * MIB;
    snprintf(pl->tmp_opts, sizeof(pl->tmp_opts), "size=%llu,mode=1777,nr_inodes=65536",
             (unsigned long long)tmpb);
    snprintf(pl->work_opts, sizeof(pl->work_opts), "size=%llu,mode=755,nr_inodes=65536",
             (unsigned long long)workb);
    pl->root = cfg->root;
    pl->root_lock = locked_flags(cfg->root);
    pl->usr_lock = locked_flags("/usr");
    pl->agent = cfg->agent_path ? cfg->agent_path : SENTRY_AGENT_PATH;
    unsigned a = 0;
    pl->argv[a++] = (char *)pl->agent;
    for (unsigned i = 0; cfg->agent_args && cfg->agent_args[i]; i++) {
        if (a >= THAW_ARRAY_SIZE(pl->argv) - 1)
            return thaw_err_set(err, E2BIG, "more than %zu agent arguments",
                                THAW_ARRAY_SIZE(pl->argv) - 2);
        pl->argv[a++] = (char *)cfg->agent_args[i];
    }
    pl->argv[a] = NULL;
    snprintf(pl->env_id, sizeof(pl->env_id), "THAW_SANDBOX_ID=%s", sb->id);
    static char env_fd[] = "THAW_AGENT_FD=3";
    static char env_path[] = "PATH=/bin:/usr/bin:/sbin:/usr/sbin";
    static char env_home[] = "HOME=/root";
    _Static_assert(SENTRY_AGENT_FD == 3, "THAW_AGENT_FD string");
    pl->envp[0] = env_fd;
    pl->envp[1] = env_path;
    pl->envp[2] = env_home;
    pl->envp[3] = pl->env_id;
    pl->envp[4] = NULL;
    pl->nofile = cfg->nofile ? cfg->nofile : 1024;
    pl->nproc = cfg->pids_max ? cfg->pids_max : 256;
    return 0;
}

static void reap(sentry_t *sb)
{
    if (sb->pidfd < 0)
        return;
    syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
    siginfo_t si;
    /* SIGKILL to PID 1 makes the kernel kill every process of the pid
     * namespace; waitid returns once PID 1 (and so the namespace) is gone. */
    while (waitid((idtype_t)P_PIDFD, (id_t)sb->pidfd, &si, WEXITED | __WALL) < 0 && errno == EINTR)
        ;
}

int sentry_create(sentry_supervisor_t *sup, const sentry_config_t *cfg, sentry_t **out,
                  thaw_err_t *err)
{
    if (!sup || !cfg || !cfg->root || cfg->root[0] != '/')
        return thaw_err_set(err, EINVAL, "sentry_create: an absolute root directory is required");
    sentry_t *sb = calloc(1, sizeof(*sb));
    if (!sb)
        return thaw_err_set(err, ENOMEM, "sentry_create: out of memory");
    sb->sup = sup;
    sb->pid = -1;
    sb->pidfd = sb->listener = sb->rootfd = sb->agent_fd = -1;
    int rc;
    int sv[2] = {-1, -1}, p2c[2] = {-1, -1}, c2p[2] = {-1, -1};
    sentry_plan_t *pl = NULL;
    bool reserved = false;

    if ((rc = sentry__sup_reserve(sup, sb)) < 0) {
        thaw_err_set(err, EAGAIN, "sentry_create: all %u sandbox slots are in use", sup->max);
        goto fail;
    }
    reserved = true;
    if ((rc = sentry__areas_init(&sb->areas, cfg, err)) < 0 ||
        (rc = sentry__net_parse(&sb->net, cfg->net_allow, cfg->n_net, err)) < 0)
        goto fail_wrap;
    pl = calloc(1, sizeof(*pl));
    if (!pl) {
        rc = thaw_err_set(err, ENOMEM, "out of memory");
        goto fail_wrap;
    }
    if ((rc = fill_plan(pl, cfg, sb, err)) < 0)
        goto fail_wrap;
    sentry_limits_t lim = {
        .memory_bytes = cfg->memory_bytes ? cfg->memory_bytes : 512 * MIB,
        .pids_max = cfg->pids_max ? cfg->pids_max : 256,
        .cpu_shares = cfg->cpu_shares ? cfg->cpu_shares : 1024,
    };
    if (lim.cpu_shares < 2)
        lim.cpu_shares = 2;
    uint64_t t_start = thaw_now_ns();
    if ((rc = sentry__cgroup_create(&sb->cg, sb->id, &lim, err)) < 0)
        goto fail_wrap;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(p2c, O_CLOEXEC) < 0 ||
        pipe2(c2p, O_CLOEXEC) < 0) {
        rc = thaw_err_sys(err, errno, "socketpair/pipe");
        goto fail_wrap;
    }
    pl->sync_rd = p2c[0];
    pl->sync_wr = c2p[1];
    pl->agent_sock = sv[1];
    pl->bpf = &sup->bpf;
    pl->keep_stderr = getenv("THAW_SENTRY_AGENT_STDERR") != NULL;

    int pidfd = -1;
    struct clone_args ca = {
        .flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS |
                 CLONE_NEWNET | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)&pidfd,
        .exit_signal = 0, /* no SIGCHLD into thawd's handlers; reaped by pidfd */
    };
    uint64_t t_cgroup = thaw_now_ns();
    long pid = syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0) {
        rc = thaw_err_sys(err, errno, "clone3 with new namespaces");
        goto fail_wrap;
    }
    if (pid == 0)
        sentry__child_run(pl); /* never returns */
    sb->pid = (pid_t)pid;
    sb->pidfd = pidfd;
    close(TAKE_FD(sv[1]));
    close(TAKE_FD(p2c[0]));
    close(TAKE_FD(c2p[1]));

    char map[64];
    snprintf(map, sizeof(map), "0 %u %u\n", sb->host_uid, SENTRY_IDS_PER_SANDBOX);
    if ((rc = write_proc(sb->pid, "uid_map", map)) < 0 ||
        (rc = write_proc(sb->pid, "gid_map", map)) < 0) {
        thaw_err_sys(err, -rc, "write the id maps of pid %d", (int)sb->pid);
        goto fail_wrap;
    }
    if ((rc = sentry__cgroup_attach(&sb->cg, sb->pid, err)) < 0)
        goto fail_wrap;
    if (write(p2c[1], "M", 1) != 1) {
        rc = thaw_err_sys(err, errno ? errno : EPIPE, "signal the child");
        goto fail_wrap;
    }

    uint64_t t_clone = thaw_now_ns();
    int timeout = cfg->start_timeout_ms ? (int)cfg->start_timeout_ms : 5000;
    sentry_child_msg_t m;
    rc = read_msg(c2p[0], &m, timeout);
    if (rc <= 0 || m.tag != 'L') {
        if (rc == 1 && m.tag == 'E')
            rc = thaw_err_sys(err, m.err, "sandbox set-up: %s", sentry__child_step(m.val));
        else
            rc = thaw_err_set(err, rc < 0 ? -rc : EPROTO,
                              "sandbox set-up: the child %s before installing its filter",
                              rc == -ETIMEDOUT ? "timed out" : "stopped");
        goto fail_wrap;
    }
    uint64_t t_setup = thaw_now_ns();
    sb->listener = (int)syscall(SYS_pidfd_getfd, sb->pidfd, m.val, 0);
    if (sb->listener < 0) {
        rc = thaw_err_sys(err, errno, "pidfd_getfd of the seccomp listener");
        goto fail_wrap;
    }
    (void)fcntl(sb->listener, F_SETFD, FD_CLOEXEC);
    char rootp[64];
    snprintf(rootp, sizeof(rootp), "/proc/%d/root", (int)sb->pid);
    sb->rootfd = open(rootp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sb->rootfd < 0) {
        rc = thaw_err_sys(err, errno, "open %s", rootp);
        goto fail_wrap;
    }
    struct stat pst;
    if (fstatat(sb->rootfd, "proc", &pst, 0) < 0) {
        rc = thaw_err_sys(err, errno, "stat the sandbox's /proc");
        goto fail_wrap;
    }
    sb->proc_dev = pst.st_dev;
    if ((rc = sentry__sup_register(sup, sb, err)) < 0)
        goto fail_wrap;
    if (write(p2c[1], "G", 1) != 1) {
        rc = thaw_err_sys(err, errno ? errno : EPIPE, "signal the child");
        goto fail_wrap;
    }
    rc = read_msg(c2p[0], &m, timeout);
    if (rc != 0) {
        if (rc == 1 && m.tag == 'E')
            rc = thaw_err_sys(err, m.err, "sandbox set-up: %s '%s'", sentry__child_step(m.val),
                              pl->agent);
        else
            rc = thaw_err_set(err, rc < 0 ? -rc : EPROTO, "sandbox set-up: no exec of the agent");
        goto fail_wrap;
    }
    sb->agent_fd = TAKE_FD(sv[0]);
    close(p2c[1]);
    close(c2p[0]);
    free(pl);
    uint64_t t_exec = thaw_now_ns();
    /* Where creation time goes, for tuning: cgroup, clone3 + maps,
     * the child's mounts and filter, exec of the agent. */
    thaw_debug("sentry", "create",
               "sandbox=%s pid=%d uid=%u cgroup_us=%llu clone_us=%llu setup_us=%llu exec_us=%llu",
               sb->id, (int)sb->pid, sb->host_uid, (unsigned long long)(t_cgroup - t_start) / 1000,
               (unsigned long long)(t_clone - t_cgroup) / 1000,
               (unsigned long long)(t_setup - t_clone) / 1000,
               (unsigned long long)(t_exec - t_setup) / 1000);
    *out = sb;
    return 0;

fail_wrap:
    thaw_err_wrap(err, "sentry %s", sb->id);
fail:
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (p2c[i] >= 0)
            close(p2c[i]);
        if (c2p[i] >= 0)
            close(c2p[i]);
    }
    free(pl);
    if (!reserved) {
        free(sb);
        return rc;
    }
    sentry_destroy(sb);
    return rc;
}

void sentry_destroy(sentry_t *sb)
{
    if (!sb)
        return;
    reap(sb);
    if (sb->registered)
        sentry__sup_unregister(sb->sup, sb);
    if (sb->listener >= 0)
        close(sb->listener);
    if (sb->rootfd >= 0)
        close(sb->rootfd);
    if (sb->agent_fd >= 0)
        close(sb->agent_fd);
    if (sb->pidfd >= 0)
        close(sb->pidfd);
    sentry__cgroup_destroy(&sb->cg);
    sentry__sup_release(sb->sup, sb);
    thaw_debug("sentry", "destroy", "sandbox=%s", sb->id);
    free(sb);
}

int sentry_agent_fd(const sentry_t *sb)
{
    return sb->agent_fd;
}

int sentry_take_agent_fd(sentry_t *sb)
{
    return TAKE_FD(sb->agent_fd);
}

bool sentry_alive(const sentry_t *sb)
{
    if (!sb || sb->pidfd < 0)
        return false;
    /* A pidfd polls readable once its process has exited. */
    struct pollfd pfd = {.fd = sb->pidfd, .events = POLLIN};
    int r = poll(&pfd, 1, 0);
    return r == 0;
}

int sentry_pid(const sentry_t *sb)
{
    return sb->pid;
}

const char *sentry_id(const sentry_t *sb)
{
    return sb->id;
}

uint32_t sentry_host_uid(const sentry_t *sb)
{
    return sb->host_uid;
}

const char *sentry_cgroup_path(const sentry_t *sb, const char *controller)
{
    for (unsigned i = 0; i < sb->cg.n; i++)
        if (sb->cg.version == 2 || !strcmp(sb->cg.ctrl[i], controller))
            return sb->cg.path[i];
    return NULL;
}
