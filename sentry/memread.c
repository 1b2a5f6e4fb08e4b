// SPDX-License-Identifier: Apache-2.0
/*
 * Reading arguments out of a stopped caller's memory with process_vm_readv.
 * Strings are read page by page so a path ending just before an unmapped
 * page still reads.  The caller must check SECCOMP_IOCTL_NOTIF_ID_VALID after
 * reading: only then is it known that the pid still named the caller.
 */
#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "sentry/internal.h"

#define PAGE 4096u

int sentry__mem_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    if (addr == 0)
        return -EFAULT;
    struct iovec local = {.iov_base = buf, .iov_len = len};
    struct iovec remote = {.iov_base = (void *)(uintptr_t)addr, .iov_len = len};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n < 0)
        return errno == ESRCH ? -ESRCH : -EFAULT;
    if ((size_t)n != len)
        return -EFAULT;
    return 0;
}

int sentry__mem_read_str(pid_t pid, uint64_t addr, char *buf, size_t size)
{
    if (addr == 0)
        return -EFAULT;
    size_t got = 0;
    while (got < size) {
        uint64_t at = addr + got;
        size_t chunk = PAGE - (size_t)(at % PAGE);
        if (chunk > size - got)
            chunk = size - got;
        struct iovec local = {.iov_base = buf + got, .iov_len = chunk};
        struct iovec remote = {.iov_base = (void *)(uintptr_t)at, .iov_len = chunk};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n <= 0)
            return errno == ESRCH ? -ESRCH : -EFAULT;
        char *nul = memchr(buf + got, '\0', (size_t)n);
        if (nul)
            return (int)(nul - buf);
        got += (size_t)n;
    }
    buf[size - 1] = '\0';
    return -ENAMETOOLONG;
}
