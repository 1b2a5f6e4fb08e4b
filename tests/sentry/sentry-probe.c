// SPDX-License-Identifier: Apache-2.0
/*
 * Runs inside a sentry sandbox (started by thaw-agent) and attempts one
 * escape or abuse per subcommand.  It prints what happened, one
 * "name: result" line per attempt, and exits 0 when every attempt was
 * stopped, 1 when one got through (the test then fails and prints why),
 * 2 on a usage error.  It never decides the expected errno itself: the test
 * reads the lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sched.h>
#include <time.h>

static int escaped;

static void report(const char *what, long rc, int e)
{
    if (rc < 0)
        printf("%s: denied errno=%d (%s)\n", what, e,
               strerrorname_np(e) ? strerrorname_np(e) : "?");
    else {
        printf("%s: ALLOWED rc=%ld\n", what, rc);
        escaped = 1;
    }
}

/* An attempt that must fail. */
#define TRY(what, expr)                                                                            \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long _rc = (long)(expr);                                                                   \
        report(what, _rc, errno);                                                                  \
    } while (0)

static void try_open(const char *label, const char *path)
{
    errno = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        report(label, -1, errno);
        return;
    }
    char buf[128] = "";
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n > 0)
        buf[n] = '\0';
    close(fd);
    /* The host's marker has a known first word; anything else is the
     * sandbox's own file and no escape. */
    if (strstr(buf, "THAW-HOST-SECRET")) {
        printf("%s: ALLOWED read host secret\n", label);
        escaped = 1;
    } else {
        printf("%s: opened a sandbox file, not the host's\n", label);
    }
}

static int cmd_paths(const char *secret)
{
    char p[4096];
    try_open("absolute", secret);
    snprintf(p, sizeof(p), "../../../../../../..%s", secret);
    if (chdir("/tmp") == 0)
        try_open("dotdot", p);
    try_open("shadow", "/etc/shadow");
    snprintf(p, sizeof(p), "/proc/1/root%s", secret);
    try_open("proc1root", p);
    snprintf(p, sizeof(p), "/proc/self/root/../../..%s", secret);
    try_open("procselfroot", p);
    unlink("/tmp/evil");
    if (symlink(secret, "/tmp/evil") == 0)
        try_open("symlink", "/tmp/evil");
    else
        printf("symlink: could not create: %s\n", strerror(errno));
    /* Every descriptor we hold, used as a starting point to climb out. */
    for (int fd = 0; fd < 64; fd++) {
        if (fcntl(fd, F_GETFD) < 0)
            continue;
        snprintf(p, sizeof(p), "/proc/self/fd/%d/../../../..%s", fd, secret);
        char label[64];
        snprintf(label, sizeof(label), "procselffd%d", fd);
        try_open(label, p);
        snprintf(p, sizeof(p), "../../../../..%s", secret);
        errno = 0;
        int o = openat(fd, p, O_RDONLY);
        if (o >= 0) {
            char buf[64] = "";
            ssize_t n = read(o, buf, sizeof(buf) - 1);
            close(o);
            if (n > 0 && strstr(buf, "THAW-HOST-SECRET")) {
                printf("openat-fd%d: ALLOWED read host secret\n", fd);
                escaped = 1;
            }
        }
    }
    try_open("kcore", "/proc/kcore");
    return escaped;
}

static int cmd_rofs(void)
{
    TRY("create-usr", open("/usr/thaw-sentry-probe", O_CREAT | O_WRONLY, 0644));
    TRY("write-etc", open("/etc/passwd", O_WRONLY | O_APPEND));
    TRY("mkdir-usr", mkdir("/usr/thaw-sentry-probe-dir", 0755));
    TRY("rename-bin", rename("/bin/busybox", "/bin/bb"));
    TRY("unlink-agent", unlink("/.thaw/agent"));
    TRY("chmod-root", chmod("/", 0777));
    int fd = open("/tmp/ok", O_CREAT | O_WRONLY, 0644);
    printf("create-tmp: %s\n", fd >= 0 ? "ok" : strerror(errno));
    if (fd >= 0)
        close(fd);
    return escaped;
}

static int cmd_mount(void)
{
    TRY("mount", mount("tmpfs", "/mnt", "tmpfs", 0, NULL));
    TRY("umount", umount2("/usr", MNT_DETACH));
    TRY("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    TRY("chroot", chroot("/tmp"));
    return escaped;
}

static int cmd_unshare(void)
{
    TRY("unshare-user", unshare(CLONE_NEWUSER));
    TRY("unshare-ns", unshare(CLONE_NEWNS));
    TRY("setns", setns(0, 0));
    TRY("clone-newpid", syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0));
    return escaped;
}

static int cmd_ptrace(pid_t host_pid)
{
    TRY("ptrace-attach", ptrace(PTRACE_ATTACH, host_pid, 0, 0));
    TRY("ptrace-traceme", ptrace(PTRACE_TRACEME, 0, 0, 0));
    TRY("ptrace-init", ptrace(PTRACE_ATTACH, 1, 0, 0));
    TRY("process_vm_readv", syscall(SYS_process_vm_readv, 1, 0, 0, 0, 0, 0));
    return escaped;
}

static int cmd_kernel(void)
{
    TRY("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    TRY("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -1));
    TRY("bpf", syscall(SYS_bpf, 0, 0, 0));
    TRY("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
    TRY("userfaultfd", syscall(SYS_userfaultfd, 0));
    TRY("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
    TRY("init_module", syscall(SYS_init_module, 0, 0, ""));
    TRY("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
    TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, 0, 0, 0));
    return escaped;
}

static int cmd_sockets(void)
{
    TRY("raw-inet", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    TRY("raw-inet6", socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6));
    TRY("packet", socket(AF_PACKET, SOCK_RAW, htons(3)));
    TRY("netlink-raw", socket(AF_NETLINK, SOCK_RAW, 0));
    return escaped;
}

/* Listen on 127.0.0.1:port, then connect to it: the listener proves the
 * destination exists, so a refusal comes from the policy. */
static int cmd_connect(int port, int expect_allowed)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (l < 0 || bind(l, (void *)&a, sizeof(a)) < 0 || listen(l, 4) < 0) {
        printf("listen: %s\n", strerror(errno));
        return 2;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    errno = 0;
    int rc = connect(c, (void *)&a, sizeof(a));
    if (expect_allowed) {
        printf("connect-allowed: %s\n", rc == 0 ? "connected" : strerror(errno));
        return rc == 0 ? 0 : 1;
    }
    report("connect", rc, errno);
    struct sockaddr_in out = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "8.8.8.8", &out.sin_addr);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    TRY("sendto-outside", sendto(u, "x", 1, 0, (void *)&out, sizeof(out)));
    return escaped;
}

static int cmd_int80(void)
{
    /* getpid through the i386 entry: the filter kills the process. */
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    printf("int80: ALLOWED rc=%ld\n", r);
    return 1;
}

static int cmd_x32(void)
{
    long r = syscall(0x40000000L | SYS_getpid);
    printf("x32: ALLOWED rc=%ld\n", r);
    return 1;
}

static int cmd_forkbomb(void)
{
    int n = 0, e = 0;
    setpgid(0, 0);
    for (int i = 0; i < 100000; i++) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0) {
            e = errno;
            break;
        }
        n++;
    }
    printf("forkbomb: forks=%d stopped errno=%d (%s)\n", n, e, e ? strerrorname_np(e) : "none");
    signal(SIGTERM, SIG_IGN);
    kill(0, SIGTERM);
    while (wait(NULL) > 0)
        ;
    return e ? 0 : 1;
}

static int cmd_membomb(long mib)
{
    for (long i = 0; i < mib; i++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("membomb: mmap failed at %ld MiB\n", i);
            return 0;
        }
        memset(p, 0xa5, 1 << 20);
    }
    printf("membomb: ALLOWED %ld MiB\n", mib);
    return 1;
}

static int cmd_fill(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) {
        printf("fill: open: %s\n", strerror(errno));
        return 2;
    }
    static char buf[1 << 16];
    memset(buf, 'x', sizeof(buf));
    long long total = 0;
    int e = 0;
    for (;;) {
        ssize_t n = write(fd, buf, sizeof(buf));
        if (n < 0) {
            e = errno;
            break;
        }
        total += n;
        if (total > (8LL << 30))
            break;
    }
    printf("fill: bytes=%lld errno=%d (%s)\n", total, e, e ? strerrorname_np(e) : "none");
    close(fd);
    unlink(path);
    return e == ENOSPC ? 0 : 1;
}

/* Leave a process behind that ignores SIGTERM, in its own session. */
static int cmd_stubborn(void)
{
    pid_t p = fork();
    if (p == 0) {
        setsid();
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        for (;;)
            pause();
    }
    printf("stubborn: pid=%d\n", (int)p);
    return 0;
}

/* Leave a marker process (argv names it) and a marker file. */
static int cmd_marker(const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "/tmp/%s", name);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) {
        if (write(fd, name, strlen(name)) < 0)
            return 2;
        close(fd);
    }
    pid_t c = fork();
    if (c == 0) {
        setsid();
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        /* coreutils sleep ignores argv[0], which names the marker. */
        execl("/usr/bin/sleep", name, "3600", (char *)NULL);
        _exit(127);
    }
    printf("marker: pid=%d\n", (int)c);
    return 0;
}

/* Look for a marker file and process; the test knows whether they should
 * be visible (own sandbox) or not (another one). */
static int cmd_look(const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "/tmp/%s", name);
    int mfd = open(p, O_RDONLY);
    if (mfd >= 0) {
        printf("look-file: opened\n");
        close(mfd);
    } else {
        printf("look-file: denied errno=%d (%s)\n", errno, strerrorname_np(errno));
    }
    DIR *d = opendir("/proc");
    int procs = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        procs++;
        if (atoi(de->d_name) == (int)getpid())
            continue; /* our own argv names the marker */
        char cp[300], buf[512];
        snprintf(cp, sizeof(cp), "/proc/%s/cmdline", de->d_name);
        int fd = open(cp, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\0')
                buf[i] = ' ';
        if (n > 0) {
            buf[n] = '\0';
            if (strstr(buf, name))
                printf("look-process: seen pid %s\n", de->d_name);
        }
    }
    if (d)
        closedir(d);
    printf("procs-visible: %d\n", procs);
    TRY("kill-host-pid", kill(99999, 0));
    return 0;
}

static int sem_fail;

#define SEM(cond, ...)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s: ", #cond);                                                            \
            printf(__VA_ARGS__);                                                                   \
            printf(" (errno %d)\n", errno);                                                        \
            sem_fail = 1;                                                                          \
        }                                                                                          \
    } while (0)

/* open as the supervisor emulates it must behave as the kernel's own. */
static int cmd_opensem(void)
{
    umask(027);
    int fd = open("/work/a", O_CREAT | O_EXCL | O_WRONLY | O_APPEND, 0666);
    SEM(fd >= 0, "create /work/a");
    struct stat st;
    SEM(fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0640, "mode %o after umask 027",
        st.st_mode & 0777);
    SEM(st.st_uid == 0 && st.st_gid == 0, "owner %d:%d", (int)st.st_uid, (int)st.st_gid);
    SEM((fcntl(fd, F_GETFL) & (O_APPEND | O_NONBLOCK)) == O_APPEND, "flags %#x",
        fcntl(fd, F_GETFL));
    SEM(!(fcntl(fd, F_GETFD) & FD_CLOEXEC), "cloexec set without O_CLOEXEC");
    SEM(write(fd, "abc", 3) == 3, "write");
    close(fd);
    SEM(open("/work/a", O_CREAT | O_EXCL | O_WRONLY, 0600) < 0 && errno == EEXIST, "O_EXCL");
    fd = open("/work/a", O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    SEM(fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC), "O_CLOEXEC kept");
    SEM((fcntl(fd, F_GETFL) & O_NONBLOCK), "O_NONBLOCK kept when asked");
    close(fd);
    SEM(open("/work/a", O_RDONLY | O_DIRECTORY) < 0 && errno == ENOTDIR, "O_DIRECTORY on a file");
    SEM(mkdir("/work/sub", 0755) == 0 && chdir("/work/sub") == 0, "mkdir+chdir");
    fd = open("../a", O_RDONLY);
    char buf[8] = "";
    SEM(fd >= 0 && read(fd, buf, 3) == 3 && !memcmp(buf, "abc", 3), "cwd-relative ../a");
    close(fd);
    int dfd = open("/work/sub", O_RDONLY | O_DIRECTORY);
    SEM(dfd >= 0, "open dir");
    fd = openat(dfd, "../a", O_RDONLY);
    SEM(fd >= 0, "dirfd-relative ../a");
    close(fd);
    SEM(openat(dfd, "nothere", O_RDONLY) < 0 && errno == ENOENT, "ENOENT");
    /* Discretionary access control holds: mode 000 is closed even to root
     * without capabilities. */
    fd = open("/work/closed", O_CREAT | O_WRONLY, 0);
    SEM(fd >= 0, "create closed");
    close(fd);
    SEM(open("/work/closed", O_RDONLY) < 0 && errno == EACCES, "mode 000 readable");
    /* /proc/self means the caller. */
    fd = open("/proc/self/stat", O_RDONLY);
    char st2[64] = "";
    SEM(fd >= 0 && read(fd, st2, sizeof(st2) - 1) > 0, "/proc/self/stat");
    SEM(atoi(st2) == (int)getpid(), "/proc/self is pid %d, not %d", atoi(st2), (int)getpid());
    close(fd);
    SEM(access("/work/a", R_OK) == 0, "access");
    SEM(stat("/work/sub/../a", &st) == 0 && st.st_size == 3, "stat relative");
    SEM(rename("/work/a", "/tmp/a") < 0 && errno == EXDEV, "rename across mounts");
    SEM(rename("/work/a", "/work/b") == 0 && unlink("/work/b") == 0, "rename+unlink in /work");
    SEM(symlink("/etc/hosts", "/work/l") == 0, "symlink");
    fd = open("/work/l", O_RDONLY);
    SEM(fd >= 0 && read(fd, buf, 3) == 3 && !memcmp(buf, "127", 3), "follow an absolute symlink");
    close(fd);
    fd = open("/work/l", O_RDONLY | O_NOFOLLOW);
    SEM(fd < 0 && errno == ELOOP, "O_NOFOLLOW");
    printf("opensem: %s\n", sem_fail ? "FAILED" : "ok");
    return sem_fail;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Per-call cost of a plain syscall (getpid: allowed by the filter, never
 * brokered) and of open/read/close (open brokered by the supervisor). */
static int cmd_bench(long n, const char *path)
{
    long long t0 = now_ns();
    for (long i = 0; i < n; i++)
        syscall(SYS_getpid);
    long long t1 = now_ns();
    char buf[256];
    for (long i = 0; i < n / 10; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            printf("bench: open %s: %s\n", path, strerror(errno));
            return 2;
        }
        if (read(fd, buf, sizeof(buf)) < 0)
            return 2;
        close(fd);
    }
    long long t2 = now_ns();
    struct stat st;
    for (long i = 0; i < n / 10; i++)
        if (stat(path, &st) < 0)
            return 2;
    long long t3 = now_ns();
    printf("getpid_ns=%.1f open_read_close_ns=%.1f stat_ns=%.1f\n", (double)(t1 - t0) / (double)n,
           (double)(t2 - t1) / (double)(n / 10), (double)(t3 - t2) / (double)(n / 10));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return 2;
    const char *c = argv[1];
    if (!strcmp(c, "paths") && argc > 2)
        return cmd_paths(argv[2]);
    if (!strcmp(c, "rofs"))
        return cmd_rofs();
    if (!strcmp(c, "mount"))
        return cmd_mount();
    if (!strcmp(c, "unshare"))
        return cmd_unshare();
    if (!strcmp(c, "ptrace") && argc > 2)
        return cmd_ptrace(atoi(argv[2]));
    if (!strcmp(c, "kernel"))
        return cmd_kernel();
    if (!strcmp(c, "sockets"))
        return cmd_sockets();
    if (!strcmp(c, "connect") && argc > 3)
        return cmd_connect(atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(c, "int80"))
        return cmd_int80();
    if (!strcmp(c, "x32"))
        return cmd_x32();
    if (!strcmp(c, "forkbomb"))
        return cmd_forkbomb();
    if (!strcmp(c, "membomb") && argc > 2)
        return cmd_membomb(atol(argv[2]));
    if (!strcmp(c, "fill") && argc > 2)
        return cmd_fill(argv[2]);
    if (!strcmp(c, "stubborn"))
        return cmd_stubborn();
    if (!strcmp(c, "marker") && argc > 2)
        return cmd_marker(argv[2]);
    if (!strcmp(c, "opensem"))
        return cmd_opensem();
    if (!strcmp(c, "bench") && argc > 3)
        return cmd_bench(atol(argv[2]), argv[3]);
    if (!strcmp(c, "look") && argc > 2)
        return cmd_look(argv[2]);
    fprintf(stderr, "sentry-probe: unknown command '%s'\n", c);
    return 2;
}
