// SPDX-License-Identifier: Apache-2.0
/*
 * The x86_64 argument layout of every syscall the supervisor can broker: which
 * argument holds a directory fd, a path, open flags, a mode, AT_* flags.
 * These are facts about the kernel ABI, kept apart from the policy (which
 * only says which calls are brokered) and from the decisions (handlers.c).
 */
#include <stddef.h>
#include <sys/syscall.h>

#include "sentry/internal.h"

#define E(nr_, kind_, dfd, p, dfd2, p2, fl, md, at)                                                \
    [nr_] = {.kind = kind_,                                                                        \
             .dirfd = dfd,                                                                         \
             .path = p,                                                                            \
             .dirfd2 = dfd2,                                                                       \
             .path2 = p2,                                                                          \
             .flags = fl,                                                                          \
             .mode = md,                                                                           \
             .atflags = at}

static const sentry_sysinfo_t table[SENTRY_NR_MAX] = {
    /*                          dirfd path dirfd2 path2 flags mode atflags */
    E(SYS_open, SENTRY_K_OPEN, -1, 0, -1, -1, 1, 2, -1),
    E(SYS_openat, SENTRY_K_OPEN, 0, 1, -1, -1, 2, 3, -1),
    E(SYS_openat2, SENTRY_K_OPEN, 0, 1, -1, -1, 2, -1, -1), /* flags = struct open_how * */
    E(SYS_creat, SENTRY_K_OPEN, -1, 0, -1, -1, -1, 1, -1),
    E(SYS_execve, SENTRY_K_EXEC, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_execveat, SENTRY_K_EXEC, 0, 1, -1, -1, -1, -1, 4),
    E(SYS_stat, SENTRY_K_STAT, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_lstat, SENTRY_K_STAT, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_newfstatat, SENTRY_K_STAT, 0, 1, -1, -1, -1, -1, 3),
    E(SYS_statx, SENTRY_K_STAT, 0, 1, -1, -1, -1, -1, 2),
    E(SYS_access, SENTRY_K_STAT, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_faccessat, SENTRY_K_STAT, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_faccessat2, SENTRY_K_STAT, 0, 1, -1, -1, -1, -1, 3),
    E(SYS_readlink, SENTRY_K_STAT, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_readlinkat, SENTRY_K_STAT, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_mkdir, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_mkdirat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_rmdir, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_unlink, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_unlinkat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_rename, SENTRY_K_WRITE, -1, 0, -1, 1, -1, -1, -1),
    E(SYS_renameat, SENTRY_K_WRITE, 0, 1, 2, 3, -1, -1, -1),
    E(SYS_renameat2, SENTRY_K_WRITE, 0, 1, 2, 3, -1, -1, -1),
    E(SYS_link, SENTRY_K_WRITE, -1, 0, -1, 1, -1, -1, -1),
    E(SYS_linkat, SENTRY_K_WRITE, 0, 1, 2, 3, -1, -1, 4),
    E(SYS_symlink, SENTRY_K_WRITE, -1, 1, -1, -1, -1, -1, -1), /* arg 0 is the link's text */
    E(SYS_symlinkat, SENTRY_K_WRITE, 1, 2, -1, -1, -1, -1, -1),
    E(SYS_chmod, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_fchmodat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_chown, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_lchown, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_fchownat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, 4),
    E(SYS_truncate, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_utime, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_utimes, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_utimensat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, 3),
    E(SYS_futimesat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_mknod, SENTRY_K_WRITE, -1, 0, -1, -1, -1, -1, -1),
    E(SYS_mknodat, SENTRY_K_WRITE, 0, 1, -1, -1, -1, -1, -1),
    E(SYS_connect, SENTRY_K_NET, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_bind, SENTRY_K_NET, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_sendto, SENTRY_K_NET, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_sendmsg, SENTRY_K_NET, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_sendmmsg, SENTRY_K_NET, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setuid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setgid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setreuid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setregid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setresuid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setresgid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setgroups, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setfsuid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
    E(SYS_setfsgid, SENTRY_K_ID, -1, -1, -1, -1, -1, -1, -1),
};

const sentry_sysinfo_t *sentry__sysinfo(long nr)
{
    if (nr < 0 || nr >= SENTRY_NR_MAX || table[nr].kind == SENTRY_K_NONE)
        return NULL;
    return &table[nr];
}
