// SPDX-License-Identifier: Apache-2.0
/*
 * The sandbox's first process between clone3 and exec of the agent.  It is a
 * copy of a multithreaded parent, so it only makes raw syscalls on strings
 * the parent prepared (sentry_plan_t): no malloc, no stdio, no locks.
 *
 * Order matters: ids first (files created later must belong to the mapped
 * root), then a cgroup namespace rooted at the sandbox's cgroup, the mounts
 * and pivot_root while capabilities exist, rlimits, then every capability
 * goes, no_new_privs, the seccomp filter, and exec.  Any failure is written
 * to the parent as (step, errno) and the child exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sentry/internal.h"

enum {
    STEP_SYNC = 1,
    STEP_FDS,
    STEP_IDS,
    STEP_CGROUPNS,
    STEP_LOOPBACK,
    STEP_PRIVATE,
    STEP_BIND_ROOT,
    STEP_RO_ROOT,
    STEP_USR,
    STEP_RO_USR,
    STEP_TMP,
    STEP_WORK,
    STEP_DEV,
    STEP_DEVNODE,
    STEP_RO_DEV,
    STEP_PROC,
    STEP_PIVOT,
    STEP_RLIMIT,
    STEP_CAPS,
    STEP_NNP,
    STEP_SECCOMP,
    STEP_EXEC,
};

const char *sentry__child_step(int step)
{
    static const char *const names[] = {
        [STEP_SYNC] = "wait for the parent",
        [STEP_FDS] = "arrange descriptors",
        [STEP_IDS] = "switch to the mapped root ids",
        [STEP_CGROUPNS] = "unshare the cgroup namespace",
        [STEP_LOOPBACK] = "bring up loopback",
        [STEP_PRIVATE] = "make mounts private",
        [STEP_BIND_ROOT] = "bind the template root",
        [STEP_RO_ROOT] = "remount the root read-only",
        [STEP_USR] = "bind the host /usr",
        [STEP_RO_USR] = "remount /usr read-only",
        [STEP_TMP] = "mount /tmp",
        [STEP_WORK] = "mount /work",
        [STEP_DEV] = "mount /dev",
        [STEP_DEVNODE] = "bind a /dev node",
        [STEP_RO_DEV] = "remount /dev read-only",
        [STEP_PROC] = "mount /proc",
        [STEP_PIVOT] = "pivot_root",
        [STEP_RLIMIT] = "set rlimits",
        [STEP_CAPS] = "drop capabilities",
        [STEP_NNP] = "set no_new_privs",
        [STEP_SECCOMP] = "install the seccomp filter",
        [STEP_EXEC] = "exec the agent",
    };
    if (step <= 0 || step >= (int)(sizeof(names) / sizeof(names[0])) || !names[step])
        return "unknown step";
    return names[step];
}

static int g_wr = -1;

__attribute__((noreturn)) static void fail(int step, int e)
{
    sentry_child_msg_t m = {.tag = 'E', .val = step, .err = e};
    if (g_wr >= 0) {
        ssize_t n = write(g_wr, &m, sizeof(m));
        (void)n;
    }
    _exit(127);
}

static void xmount(const char *src, const char *dst, const char *type, unsigned long fl,
                   const char *data, int step)
{
    if (mount(src, dst, type, fl, data) < 0)
        fail(step, errno);
}

static char wait_parent(int rd)
{
    char c = 0;
    for (;;) {
        ssize_t n = read(rd, &c, 1);
        if (n == 1)
            return c;
        if (n < 0 && errno == EINTR)
            continue;
        fail(STEP_SYNC, n == 0 ? EPIPE : errno);
    }
}

static void drop_caps(void)
{
    /* Root in the namespace gets no capabilities back from exec (NOROOT),
     * setuid cannot restore them, and the bounding set is empty, so no file
     * can grant any. */
    if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_NOROOT |
                                     SECBIT_NOROOT_LOCKED) < 0)
        fail(STEP_CAPS, errno);
    for (int c = 0; c < 64; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            fail(STEP_CAPS, errno);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        fail(STEP_CAPS, errno);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2] = {{0}};
    if (syscall(SYS_capset, &hdr, data) < 0)
        fail(STEP_CAPS, errno);
}

void sentry__child_run(const sentry_plan_t *pl)
{
    /* Move the sync pipes out of the way, then put the agent channel at
     * SENTRY_AGENT_FD (dup2 leaves the copy without CLOEXEC). */
    int rd = fcntl(pl->sync_rd, F_DUPFD_CLOEXEC, 10);
    int wr = fcntl(pl->sync_wr, F_DUPFD_CLOEXEC, 10);
    if (wr < 0)
        _exit(126);
    g_wr = wr;
    if (rd < 0)
        fail(STEP_FDS, errno);
    if (pl->agent_sock == SENTRY_AGENT_FD) {
        if (fcntl(SENTRY_AGENT_FD, F_SETFD, 0) < 0)
            fail(STEP_FDS, errno);
    } else if (dup2(pl->agent_sock, SENTRY_AGENT_FD) < 0) {
        fail(STEP_FDS, errno);
    }
    /* Everything else thawd had open must not reach the sandbox, and is
     * closed now rather than at exec: until then the child waits on the
     * parent, and if thawd dies meanwhile that wait must see EOF (the
     * parent's end of the sync pipe is among these) instead of hanging on
     * with thawd's listening socket open (tests/fault/test_fault_kill.c). */
    unsigned lo = (unsigned)(rd < wr ? rd : wr), hi = (unsigned)(rd < wr ? wr : rd);
    if ((lo > SENTRY_AGENT_FD + 1 &&
         syscall(SYS_close_range, SENTRY_AGENT_FD + 1, lo - 1, 0) < 0) ||
        (hi > lo + 1 && syscall(SYS_close_range, lo + 1, hi - 1, 0) < 0) ||
        syscall(SYS_close_range, hi + 1, ~0U, 0) < 0)
        fail(STEP_FDS, errno);

    /* thawd's signal state must not leak into the sandbox: exec keeps
     * ignored signals ignored (SIGPIPE would be, for every workload) and
     * keeps the calling thread's mask. */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        fail(STEP_FDS, errno);

    if (wait_parent(rd) != 'M') /* uid/gid maps written, cgroup joined */
        fail(STEP_SYNC, EPROTO);

    /* Raw syscalls: glibc's set*id would try to signal threads that exist
     * only in the parent. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 || syscall(SYS_setresgid, 0, 0, 0) < 0 ||
        syscall(SYS_setresuid, 0, 0, 0) < 0)
        fail(STEP_IDS, errno);
    if (unshare(CLONE_NEWCGROUP) < 0)
        fail(STEP_CGROUPNS, errno);

    /* The new network namespace has only lo, and it starts down. */
    int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    memcpy(ifr.ifr_name, "lo", 3);
    if (sk < 0 || ioctl(sk, SIOCGIFFLAGS, &ifr) < 0)
        fail(STEP_LOOPBACK, errno);
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(sk, SIOCSIFFLAGS, &ifr) < 0)
        fail(STEP_LOOPBACK, errno);
    close(sk);

    xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL, STEP_PRIVATE);
    xmount(pl->root, pl->root, NULL, MS_BIND | MS_REC, NULL, STEP_BIND_ROOT);
    xmount(NULL, pl->root, NULL,
           MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | pl->root_lock, NULL,
           STEP_RO_ROOT);
    xmount("/usr", pl->usr, NULL, MS_BIND | MS_REC, NULL, STEP_USR);
    xmount(NULL, pl->usr, NULL,
           MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | pl->usr_lock, NULL,
           STEP_RO_USR);
    xmount("tmpfs", pl->tmp, "tmpfs", MS_NOSUID | MS_NODEV, pl->tmp_opts, STEP_TMP);
    xmount("tmpfs", pl->work, "tmpfs", MS_NOSUID | MS_NODEV, pl->work_opts, STEP_WORK);
    xmount("tmpfs", pl->dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755", STEP_DEV);
    static const char *const host_nodes[5] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                              "/dev/urandom"};
    for (int i = 0; i < 5; i++) {
        int fd = open(pl->devnode[i], O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0)
            fail(STEP_DEVNODE, errno);
        close(fd);
        xmount(host_nodes[i], pl->devnode[i], NULL, MS_BIND, NULL, STEP_DEVNODE);
    }
    xmount(NULL, pl->dev, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, "size=64k,mode=755",
           STEP_RO_DEV);
    xmount("proc", pl->proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, STEP_PROC);

    if (chdir(pl->root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        fail(STEP_PIVOT, errno);
    (void)sethostname("sentry", 6);

    struct rlimit nofile = {pl->nofile, pl->nofile};
    struct rlimit core = {0, 0};
    struct rlimit nproc = {pl->nproc, pl->nproc};
    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 || setrlimit(RLIMIT_CORE, &core) < 0 ||
        setrlimit(RLIMIT_NPROC, &nproc) < 0)
        fail(STEP_RLIMIT, errno);

    /* stdin/stdout (and stderr unless kept for debugging) to /dev/null. */
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || (!pl->keep_stderr && dup2(nul, 2) < 0))
        fail(STEP_FDS, errno);
    close(nul);

    drop_caps();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(STEP_NNP, errno);
    int lfd = sentry__filter_install(pl->bpf);
    if (lfd < 0)
        fail(STEP_SECCOMP, -lfd);

    /* From here every brokered call waits for the supervisor: the parent
     * takes the listener (pidfd_getfd), registers it, and says go. */
    sentry_child_msg_t m = {.tag = 'L', .val = lfd, .err = 0};
    if (write(wr, &m, sizeof(m)) != (ssize_t)sizeof(m))
        _exit(126);
    if (wait_parent(rd) != 'G')
        fail(STEP_SYNC, EPROTO);
    close(lfd);

    /* ETXTBSY: some process still holds the agent binary open for writing.
     * thawd writes a template's copy of the agent while other threads
     * clone sandboxes and start processes, and each such child holds a copy
     * of the writer's descriptor until it closes its inherited ones (above,
     * or at its exec): the race of fork with an open-for-write executable.
     * The holders drop it within moments, so wait a little and try again
     * (found by the soak: one template's first sandbox failed with "Text
     * file busy" while other templates were being built). */
    int e = ETXTBSY;
    for (int tries = 0; tries < 50 && e == ETXTBSY; tries++) {
        if (tries) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        execve(pl->agent, pl->argv, pl->envp);
        e = errno;
    }
    fail(STEP_EXEC, e);
}
