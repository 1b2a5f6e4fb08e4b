// SPDX-License-Identifier: Apache-2.0
/*
 * Small file helpers for the writer and reader: write-and-fsync a whole
 * file, read a whole file with a size cap, remove a flat directory.
 */
#include "snapshot/snap-int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"

int snap__write_file_at(int dfd, const char *name, const void *buf, size_t len, thaw_err_t *err)
{
    _cleanup_close_ int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return thaw_err_sys(err, errno, "create %s", name);
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return thaw_err_sys(err, errno, "write %s", name);
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0)
        return thaw_err_sys(err, errno, "fsync %s", name);
    return 0;
}

void snap__remove_tree(const char *path)
{
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        unlinkat(dfd, de->d_name, 0);
    }
    closedir(d);
    rmdir(path);
}

int snap__read_file(int dfd, const char *name, size_t cap, void **out, size_t *len, int *fd_out,
                    thaw_err_t *err)
{
    /* O_NONBLOCK: a FIFO planted in a snapshot must not hang the open. */
    _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return thaw_err_sys(err, errno, "%s: open", name);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return thaw_err_sys(err, errno, "%s: stat", name);
    if (!S_ISREG(st.st_mode))
        return thaw_err_set(err, EINVAL, "%s: not a regular file", name);
    if ((uint64_t)st.st_size > cap)
        return thaw_err_set(err, EFBIG, "%s: %lld bytes is over the %zu byte cap", name,
                            (long long)st.st_size, cap);
    _cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return thaw_err_sys(err, ENOMEM, "%s: read", name);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return thaw_err_sys(err, errno, "%s: read", name);
        if (n == 0)
            return thaw_err_set(err, EIO, "%s: truncated while reading", name);
        got += (size_t)n;
    }
    buf[got] = '\0';
    *out = TAKE_PTR(buf);
    *len = got;
    if (fd_out)
        *fd_out = TAKE_FD(fd);
    return 0;
}
