// SPDX-License-Identifier: Apache-2.0
/*
 * The supervisor's decisions, one function per kind of brokered call.
 *
 *  open    read the path once, resolve it ourselves beneath the sandbox root
 *          (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) with the
 *          sandbox's fsuid/fsgid, check the object actually opened (hidden,
 *          read-only), and install the descriptor with ADDFD.  The caller's
 *          memory is never read again, so it cannot swap the path after
 *          the check: this is the TOCTOU-safe path.
 *  exec    resolve and check the same way, then let the kernel continue: it
 *          resolves the path again, in the sandbox's mount namespace, which
 *          holds nothing but the sandbox's tree.
 *  stat, write, net
 *          lexical checks (hidden paths, writable areas, the allowlist),
 *          then continue; the namespaces and the read-only mounts underneath
 *          are what a racing caller runs into.  docs/sentry.md says why
 *          that is enough and where it is not.
 *  id      set*id calls are emulated: a no-op change to root succeeds,
 *          anything else is EPERM.
 *
 * Every denial is logged with the sandbox id (sentry__log_deny).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/openat2.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "sentry/internal.h"

typedef struct hctx {
    sentry_supervisor_t *sup;
    sentry_t *sb;
    struct seccomp_notif *req;
    struct seccomp_notif_resp *resp;
    const sentry_sysinfo_t *info;
    pid_t pid;
    long nr;
} hctx_t;

static void answer(hctx_t *h, int err)
{
    h->resp->error = err ? -err : 0;
    h->resp->val = 0;
    h->resp->flags = 0;
}

static void cont(hctx_t *h)
{
    h->resp->error = 0;
    h->resp->val = 0;
    h->resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    h->sup->stats.continued++;
}

static void deny(hctx_t *h, int err, const char *why, const char *detail)
{
    sentry__log_deny(h->sup, h->sb, h->pid, h->nr, err, why, detail);
    answer(h, err);
}

/* Still the same request of a live caller?  Checked after every read of its
 * memory: before it, the pid might already name another process. */
static bool still_valid(hctx_t *h)
{
    if (seccomp_notify_id_valid(h->sb->listener, h->req->id) == 0)
        return true;
    h->sup->stats.stale++;
    h->resp->id = 0; /* nobody left to answer */
    return false;
}

static uint64_t arg(hctx_t *h, int i)
{
    return h->req->data.args[i];
}

/* readlink a /proc entry of ours into out (NUL-terminated). */
static int read_link(const char *p, char *out, size_t outlen)
{
    ssize_t n = readlink(p, out, outlen - 1);
    if (n < 0)
        return -errno;
    if ((size_t)n >= outlen - 1)
        return -ENAMETOOLONG;
    out[n] = '\0';
    return 0;
}

/*
 * The sandbox-side path of the caller's cwd or of one of its directory fds.
 * The sandbox's root is the root of its mount namespace, so the kernel
 * prints such paths from that root, which is what we want.
 */
static int dir_path(hctx_t *h, int dirfd, char *out, size_t outlen)
{
    char p[64];
    if (dirfd == AT_FDCWD)
        snprintf(p, sizeof(p), "/proc/%d/cwd", (int)h->pid);
    else if (dirfd >= 0)
        snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)h->pid, dirfd);
    else
        return -EBADF;
    int rc = read_link(p, out, outlen);
    if (rc == -ENOENT)
        return -EBADF;
    if (rc < 0)
        return rc;
    if (out[0] != '/')
        return -ENOTDIR; /* a socket, pipe or anonymous inode */
    return 0;
}

/* "NStgid:" / "NSpid:" / "Umask:" from /proc/<pid>/status; last value. */
static int status_field(pid_t pid, const char *key, unsigned long *out, int base)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    _cleanup_fclose_ FILE *f = fopen(p, "re");
    if (!f)
        return -errno;
    char line[256];
    size_t klen = strlen(key);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, key, klen) != 0)
            continue;
        char *last = NULL, *save = NULL;
        for (char *t = strtok_r(line + klen, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save))
            last = t;
        if (!last)
            return -EINVAL;
        *out = strtoul(last, NULL, base);
        return 0;
    }
    return -ENOENT;
}

typedef struct hpath {
    char raw[SENTRY_PATH_MAX * 2 + 8];  /* what the kernel resolves (symlinks intact) */
    char norm[SENTRY_PATH_MAX * 2 + 8]; /* lexical form for the area checks */
    bool empty;
} hpath_t;

/* Read and place a path argument.  Returns 0 or a positive errno for the
 * caller (EFAULT, ENAMETOOLONG, EBADF, ENOTDIR). */
static int get_path(hctx_t *h, int dirfd_idx, int path_idx, hpath_t *hp)
{
    char buf[SENTRY_PATH_MAX];
    hp->empty = false;
    uint64_t addr = arg(h, path_idx);
    if (addr == 0 && h->nr == SYS_utimensat) {
        hp->empty = true; /* utimensat(fd, NULL, ...) is futimens */
        return 0;
    }
    int n = sentry__mem_read_str(h->pid, addr, buf, sizeof(buf));
    if (n < 0)
        return n == -ENAMETOOLONG ? ENAMETOOLONG : EFAULT;
    if (n == 0) {
        hp->empty = true;
        return 0;
    }
    char base[SENTRY_PATH_MAX];
    if (buf[0] == '/') {
        snprintf(base, sizeof(base), "/");
    } else {
        int dfd = dirfd_idx < 0 ? AT_FDCWD : (int)(int32_t)arg(h, dirfd_idx);
        int rc = dir_path(h, dfd, base, sizeof(base));
        if (rc < 0)
            return -rc;
    }
    char joined[SENTRY_PATH_MAX * 2 + 8];
    int m = buf[0] == '/' ? snprintf(joined, sizeof(joined), "%s", buf)
                          : snprintf(joined, sizeof(joined), "%s/%s", base, buf);
    if (m < 0 || (size_t)m >= sizeof(joined))
        return ENAMETOOLONG;
    /* /proc/self means the caller, not the supervisor: name it by its pid
     * in the sandbox. */
    if (strncmp(joined, "/proc/self", 10) == 0 || strncmp(joined, "/proc/thread-self", 17) == 0) {
        unsigned long nspid = 0, nstid = 0;
        if (status_field(h->pid, "NStgid:", &nspid, 10) < 0 ||
            status_field(h->pid, "NSpid:", &nstid, 10) < 0)
            return ESRCH;
        char tmp[sizeof(joined)];
        if (sentry__path_proc_self(joined, (int)nspid, (int)nstid, tmp, sizeof(tmp)) < 0)
            return ENAMETOOLONG;
        memcpy(joined, tmp, sizeof(tmp));
    }
    snprintf(hp->raw, sizeof(hp->raw), "%s", joined);
    if (sentry__path_normalize(joined, hp->norm, sizeof(hp->norm)) < 0)
        return ENAMETOOLONG;
    return 0;
}

/* Where an fd of ours points inside the sandbox. */
static int fd_path(int fd, char *out, size_t outlen)
{
    char p[64];
    snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
    return read_link(p, out, outlen);
}

/*
 * Act with the sandbox's file credentials: setfsuid away from 0 also drops
 * the DAC-override capabilities from this thread's effective set, so an
 * open on the sandbox's behalf passes exactly the permission checks its own
 * would.  The thread keeps the ids until a request of another sandbox comes
 * (each switch is a commit_creds); what else it does needs no file
 * privilege: process_vm_readv uses the real ids, and /proc reads of the
 * caller pass as the same uid or through CAP_SYS_PTRACE, which stays.
 */
static void as_sandbox(hctx_t *h)
{
    if (h->sup->cur_fsid == h->sb->host_uid)
        return;
    syscall(SYS_setfsgid, h->sb->host_uid);
    syscall(SYS_setfsuid, h->sb->host_uid);
    h->sup->cur_fsid = h->sb->host_uid;
}

static long do_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
    struct open_how how = {
        .flags = flags, .mode = mode, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | resolve};
    return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static bool wants_write(uint64_t flags)
{
    return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC)) ||
           (flags & __O_TMPFILE) == __O_TMPFILE;
}

static void h_open(hctx_t *h)
{
    const sentry_sysinfo_t *in = h->info;
    uint64_t flags, mode = 0, resolve = 0;
    if (h->nr == SYS_creat) {
        flags = O_CREAT | O_WRONLY | O_TRUNC;
        mode = arg(h, in->mode);
    } else if (h->nr == SYS_openat2) {
        struct open_how how = {0};
        uint64_t size = arg(h, 3);
        if (size < sizeof(how))
            return answer(h, EINVAL);
        if (sentry__mem_read(h->pid, arg(h, 2), &how, sizeof(how)) < 0)
            return answer(h, EFAULT);
        if (how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT)) {
            /* Scoped to the caller's own dirfd: the kernel resolves it in
             * the sandbox's namespace; our root-relative view would differ. */
            if (!still_valid(h))
                return;
            return cont(h);
        }
        flags = how.flags;
        mode = how.mode;
        /* The caller's own restrictions only narrow ours. */
        resolve = how.resolve &
                  (RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_CACHED);
    } else {
        flags = arg(h, in->flags);
        mode = (flags & (O_CREAT | __O_TMPFILE)) ? arg(h, in->mode) : 0;
    }
    flags &= 0xffffffffu;
    hpath_t hp;
    int e = get_path(h, in->dirfd, in->path, &hp);
    if (!still_valid(h))
        return;
    if (e)
        return answer(h, e);
    if (hp.empty)
        return answer(h, ENOENT);
    if (sentry__areas_hidden(&h->sb->areas, hp.norm))
        return deny(h, ENOENT, "hidden path", hp.norm);
    bool wr = wants_write(flags);
    if (wr && !sentry__areas_writable(&h->sb->areas, hp.norm))
        return deny(h, EROFS, "write outside the writable areas", hp.norm);

    unsigned long um = 022;
    if (flags & (O_CREAT | __O_TMPFILE))
        (void)status_field(h->pid, "Umask:", &um, 8);
    umask((mode_t)um);
    as_sandbox(h);
    /* O_NONBLOCK so a FIFO cannot stall the supervisor; O_CLOEXEC on our
     * copy (the caller's flag goes to ADDFD). */
    long fd = do_openat2(h->sb->rootfd, hp.raw,
                         (flags & ~(uint64_t)O_CLOEXEC) | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, mode,
                         resolve);
    int oerr = errno;
    if (fd < 0) {
        if ((oerr == ELOOP && !(flags & O_NOFOLLOW)) || oerr == EXDEV)
            return deny(h, oerr, "magic link, symlink loop or escape from the root", hp.norm);
        if (oerr == EROFS)
            return deny(h, oerr, "read-only mount", hp.norm);
        return answer(h, oerr); /* ENOENT, EACCES (the file's own mode), ... */
    }
    _cleanup_close_ int ofd = (int)fd;
    struct stat st;
    if (fstat(ofd, &st) < 0)
        return answer(h, errno);
    if (S_ISFIFO(st.st_mode))
        return cont(h); /* opening a FIFO may block: let the caller do it */
    /* The check on the object itself (a symlink may have led here): where
     * hidden paths can be, i.e. on the sandbox's procfs or anywhere when the
     * template hides paths of its own.  Writes need no second check: the
     * kernel refused them on the read-only mounts already. */
    char real[SENTRY_PATH_MAX];
    if ((st.st_dev == h->sb->proc_dev || h->sb->areas.custom_hidden) &&
        fd_path(ofd, real, sizeof(real)) == 0 && sentry__areas_hidden(&h->sb->areas, real))
        return deny(h, ENOENT, "hidden path (after resolution)", real);
    if (!(flags & O_NONBLOCK)) {
        int fl = fcntl(ofd, F_GETFL);
        if (fl >= 0)
            (void)fcntl(ofd, F_SETFL, fl & ~O_NONBLOCK);
    }
    struct seccomp_notif_addfd add = {
        .id = h->req->id,
        .flags = SECCOMP_ADDFD_FLAG_SEND,
        .srcfd = (uint32_t)ofd,
        .newfd = 0,
        .newfd_flags = (flags & O_CLOEXEC) ? O_CLOEXEC : 0,
    };
    if (ioctl(h->sb->listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0) {
        if (errno == ENOENT) {
            h->sup->stats.stale++;
            h->resp->id = 0;
            return;
        }
        return answer(h, errno); /* EMFILE: over the caller's RLIMIT_NOFILE */
    }
    h->sup->stats.emulated++;
    h->resp->id = 0; /* SEND answered the call with the new fd number */
}

/* "/proc/<digits>/exe" */
static bool is_proc_exe(const char *p)
{
    if (strncmp(p, "/proc/", 6) != 0)
        return false;
    p += 6;
    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9')
        p++;
    return strcmp(p, "/exe") == 0;
}

static void h_exec(hctx_t *h)
{
    const sentry_sysinfo_t *in = h->info;
    hpath_t hp;
    int e = get_path(h, in->dirfd, in->path, &hp);
    uint64_t atflags = in->atflags >= 0 ? arg(h, in->atflags) : 0;
    if (!still_valid(h))
        return;
    if (e)
        return answer(h, e);
    if (hp.empty) {
        if (atflags & AT_EMPTY_PATH)
            return deny(h, EACCES, "exec of a descriptor (fexecve) is not allowed", NULL);
        return answer(h, ENOENT);
    }
    if (sentry__areas_hidden(&h->sb->areas, hp.norm))
        return deny(h, ENOENT, "hidden path", hp.norm);
    as_sandbox(h);
    long fd = do_openat2(h->sb->rootfd, hp.raw, O_PATH | O_CLOEXEC, 0, 0);
    int oerr = errno;
    if (fd < 0) {
        /* /proc/<pid>/exe (busybox re-executes itself through it) is the
         * image a process of this sandbox already runs, so it is inside
         * the sandbox whatever it points to: the kernel may follow it. */
        if (oerr == ELOOP && is_proc_exe(hp.norm))
            return cont(h);
        if (oerr == ELOOP || oerr == EXDEV)
            return deny(h, EACCES, "exec through a magic link or outside the root", hp.norm);
        return answer(h, oerr);
    }
    _cleanup_close_ int ofd = (int)fd;
    struct stat st;
    if (fstat(ofd, &st) < 0 || !S_ISREG(st.st_mode))
        return answer(h, EACCES);
    char real[SENTRY_PATH_MAX];
    if ((st.st_dev == h->sb->proc_dev || h->sb->areas.custom_hidden) &&
        fd_path(ofd, real, sizeof(real)) == 0 && sentry__areas_hidden(&h->sb->areas, real))
        return deny(h, ENOENT, "hidden path (after resolution)", real);
    cont(h);
}

static void h_stat(hctx_t *h)
{
    hpath_t hp;
    int e = get_path(h, h->info->dirfd, h->info->path, &hp);
    if (!still_valid(h))
        return;
    if (e)
        return answer(h, e);
    if (!hp.empty && sentry__areas_hidden(&h->sb->areas, hp.norm))
        return deny(h, ENOENT, "hidden path", hp.norm);
    cont(h);
}

static int check_write_path(hctx_t *h, int dirfd_idx, int path_idx, char *bad, size_t badlen,
                            const char **why)
{
    hpath_t hp;
    int e = get_path(h, dirfd_idx, path_idx, &hp);
    if (e)
        return e;
    if (hp.empty)
        return 0;
    if (sentry__areas_hidden(&h->sb->areas, hp.norm)) {
        snprintf(bad, badlen, "%.*s", (int)badlen - 1, hp.norm);
        *why = "hidden path";
        return -ENOENT;
    }
    if (!sentry__areas_writable(&h->sb->areas, hp.norm)) {
        snprintf(bad, badlen, "%.*s", (int)badlen - 1, hp.norm);
        *why = "write outside the writable areas";
        return -EROFS;
    }
    return 0;
}

static void h_write(hctx_t *h)
{
    char bad[SENTRY_PATH_MAX] = "";
    const char *why = NULL;
    int e = check_write_path(h, h->info->dirfd, h->info->path, bad, sizeof(bad), &why);
    if (e == 0 && h->info->path2 >= 0)
        e = check_write_path(h, h->info->dirfd2, h->info->path2, bad, sizeof(bad), &why);
    if (!still_valid(h))
        return;
    if (e < 0)
        return deny(h, -e, why, bad);
    if (e > 0)
        return answer(h, e);
    cont(h);
}

/* Check one destination; returns 0 to go on, or the errno to answer. */
static int check_dest(hctx_t *h, uint64_t addr, uint64_t len, char *detail, size_t dlen)
{
    if (addr == 0 || len == 0)
        return 0;
    struct sockaddr_storage ss = {0};
    if (len > sizeof(ss))
        len = sizeof(ss);
    if (sentry__mem_read(h->pid, addr, &ss, (size_t)len) < 0)
        return EFAULT;
    if (sentry__net_allowed(&h->sb->net, (struct sockaddr *)&ss, (socklen_t)len))
        return 0;
    sentry__net_format((struct sockaddr *)&ss, (socklen_t)len, detail, dlen);
    return EACCES;
}

static void h_net(hctx_t *h)
{
    char detail[128] = "";
    int e = 0;
    if (h->nr == SYS_connect || h->nr == SYS_sendto) {
        int ai = h->nr == SYS_connect ? 1 : 4;
        e = check_dest(h, arg(h, ai), arg(h, ai + 1), detail, sizeof(detail));
    } else if (h->nr == SYS_bind) {
        /* Binding inet addresses is harmless in a namespace holding only
         * loopback; a Unix socket path creates a file: area check. */
        struct sockaddr_un un = {0};
        uint64_t len = arg(h, 2);
        if (len > sizeof(un))
            len = sizeof(un);
        if (len > sizeof(sa_family_t) && sentry__mem_read(h->pid, arg(h, 1), &un, len) == 0 &&
            un.sun_family == AF_UNIX && un.sun_path[0] != '\0') {
            char base[SENTRY_PATH_MAX], norm[SENTRY_PATH_MAX * 2 + 8];
            un.sun_path[sizeof(un.sun_path) - 1] = '\0';
            int rc = un.sun_path[0] == '/' ? 0 : dir_path(h, AT_FDCWD, base, sizeof(base));
            if (rc == 0 &&
                sentry__path_join(un.sun_path[0] == '/' ? "/" : base, un.sun_path, norm,
                                  sizeof(norm)) == 0 &&
                !sentry__areas_writable(&h->sb->areas, norm)) {
                snprintf(detail, sizeof(detail), "%.*s", (int)sizeof(detail) - 1, norm);
                e = EROFS;
            }
        }
    } else if (h->nr == SYS_sendmsg) {
        struct msghdr mh;
        if (sentry__mem_read(h->pid, arg(h, 1), &mh, sizeof(mh)) < 0)
            e = EFAULT;
        else
            e = check_dest(h, (uint64_t)(uintptr_t)mh.msg_name, mh.msg_namelen, detail,
                           sizeof(detail));
    } else if (h->nr == SYS_sendmmsg) {
        unsigned vlen = (unsigned)arg(h, 2);
        if (vlen > 1024)
            vlen = 1024; /* the kernel's UIO_MAXIOV cap */
        for (unsigned i = 0; i < vlen && e == 0; i++) {
            struct mmsghdr mm;
            if (sentry__mem_read(h->pid, arg(h, 1) + i * sizeof(mm), &mm, sizeof(mm)) < 0) {
                e = EFAULT;
                break;
            }
            e = check_dest(h, (uint64_t)(uintptr_t)mm.msg_hdr.msg_name, mm.msg_hdr.msg_namelen,
                           detail, sizeof(detail));
        }
    }
    if (!still_valid(h))
        return;
    if (e == EFAULT)
        return answer(h, e);
    if (e == EROFS)
        return deny(h, e, "unix socket outside the writable areas", detail);
    if (e)
        return deny(h, e, "destination not in the network allowlist", detail);
    cont(h);
}

static bool is_root_or_keep(uint64_t v)
{
    uint32_t id = (uint32_t)v;
    return id == 0 || id == UINT32_MAX;
}

static void h_id(hctx_t *h)
{
    bool ok = true;
    long nr = h->nr;
    if (nr == SYS_setfsuid || nr == SYS_setfsgid) {
        /* Returns the previous fsuid (always 0 here) and never fails. */
        h->sup->stats.emulated++;
        return answer(h, 0);
    }
    int nargs = (nr == SYS_setuid || nr == SYS_setgid)         ? 1
                : (nr == SYS_setreuid || nr == SYS_setregid)   ? 2
                : (nr == SYS_setresuid || nr == SYS_setresgid) ? 3
                                                               : 0;
    for (int i = 0; i < nargs; i++)
        ok = ok && is_root_or_keep(arg(h, i));
    char detail[64] = "";
    if (nr == SYS_setgroups) {
        uint64_t n = arg(h, 0);
        uint32_t gids[64];
        if (n > 64) {
            ok = false;
        } else if (n && sentry__mem_read(h->pid, arg(h, 1), gids, n * sizeof(gids[0])) < 0) {
            if (!still_valid(h))
                return;
            return answer(h, EFAULT);
        } else {
            for (uint64_t i = 0; i < n; i++)
                ok = ok && gids[i] == 0;
        }
        snprintf(detail, sizeof(detail), "groups=%llu", (unsigned long long)n);
    } else {
        snprintf(detail, sizeof(detail), "ids=%lld,%lld,%lld", (long long)(int32_t)arg(h, 0),
                 nargs > 1 ? (long long)(int32_t)arg(h, 1) : -1LL,
                 nargs > 2 ? (long long)(int32_t)arg(h, 2) : -1LL);
    }
    if (!still_valid(h))
        return;
    if (!ok)
        return deny(h, EPERM, "identity change (the sandbox has only root)", detail);
    h->sup->stats.emulated++;
    answer(h, 0);
}

void sentry__handle(sentry_supervisor_t *sup, sentry_t *sb, struct seccomp_notif *req,
                    struct seccomp_notif_resp *resp)
{
    hctx_t h = {
        .sup = sup, .sb = sb, .req = req, .resp = resp, .pid = (pid_t)req->pid, .nr = req->data.nr};
    if (req->data.arch != AUDIT_ARCH_X86_64)
        return deny(&h, ENOSYS, "foreign architecture", NULL); /* the filter kills first */
    switch (sentry__policy_class(&sup->policy, h.nr)) {
    case SENTRY_ACT_NOTIFY:
        h.info = sentry__sysinfo(h.nr);
        if (!h.info)
            return deny(&h, ENOSYS, "no handler", NULL);
        switch (h.info->kind) {
        case SENTRY_K_OPEN:
            return h_open(&h);
        case SENTRY_K_EXEC:
            return h_exec(&h);
        case SENTRY_K_STAT:
            return h_stat(&h);
        case SENTRY_K_WRITE:
            return h_write(&h);
        case SENTRY_K_NET:
            return h_net(&h);
        case SENTRY_K_ID:
            return h_id(&h);
        case SENTRY_K_NONE:
            break;
        }
        return deny(&h, ENOSYS, "no handler", NULL);
    case SENTRY_ACT_DENY:
        return deny(&h, EPERM, "denied by policy", NULL);
    default:
        return deny(&h, ENOSYS, "not in the policy", NULL);
    }
}
