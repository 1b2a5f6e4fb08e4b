// SPDX-License-Identifier: Apache-2.0
/*
 * The policy installer: loads the BPF program compile.c produced into the
 * calling task with a user-notification listener.  It runs in the sandbox's
 * first process between clone3 and exec, a copy of a multithreaded parent,
 * so it uses raw syscalls only: no allocation, no locks, no libseccomp.
 */
#include <errno.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sentry/policy.h"

int sentry__filter_install(const sentry_bpf_t *b)
{
    struct sock_fprog prog = {.len = b->len, .filter = b->insns};
    /* The caller set no_new_privs already; seccomp refuses otherwise. */
    long fd =
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0)
        return -errno;
    return (int)fd;
}
