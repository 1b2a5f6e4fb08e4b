// SPDX-License-Identifier: Apache-2.0
/*
 * PUT and GET: files in and out of the sandbox in chunks of at most
 * AGENTWIRE_CHUNK bytes, each chunk a stateless request (path, offset), so
 * the agent keeps no per-transfer state and a caller that gives up leaves
 * nothing behind but a partial file.  Paths must be absolute; the agent runs
 * as the sandbox's root, so the sandbox boundary (VM or sentry filter) is
 * what confines them, not this file.
 */
#include "guest/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int agent__put(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    char why[AGENTWIRE_MAX_MSG];
    agentwire_put_t put;
    int r = agentwire_parse_put(p, len, &put, why, sizeof(why));
    if (r < 0)
        return agent__send_error(a, id, -r, "%s", why);
    if (put.path[0] != '/') {
        r = agent__send_error(a, id, EINVAL, "put '%s': path must be absolute", put.path);
        free(put.path);
        return r;
    }
    /* O_NONBLOCK: opening an existing FIFO for writing would otherwise wait
     * for a reader with the whole agent stopped; only regular files pass */
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK;
    int fd = open(put.path, flags, (mode_t)put.mode);
    const char *step = "open";
    int e = 0;
    struct stat st;
    if (fd < 0) {
        e = errno;
        if (e == ENXIO) /* a FIFO with no reader */
            e = EINVAL;
    } else if (fstat(fd, &st) < 0) {
        e = errno;
        step = "stat";
        close(fd);
    } else if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
        step = "not a regular file";
        close(fd);
    } else if ((put.flags & AGENTWIRE_PUT_TRUNCATE) && ftruncate(fd, 0) < 0) {
        e = errno;
        step = "truncate";
        close(fd);
    } else {
        size_t off = 0;
        while (off < put.len) {
            ssize_t n = pwrite(fd, put.data + off, put.len - off, (off_t)(put.offset + off));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                e = n < 0 ? errno : EIO;
                step = "write";
                break;
            }
            off += (size_t)n;
        }
        /* the mode asked for, not the one umask left */
        if (!e && (put.flags & AGENTWIRE_PUT_TRUNCATE) && fchmod(fd, (mode_t)put.mode) < 0) {
            e = errno;
            step = "chmod";
        }
        if (close(fd) < 0 && !e) {
            e = errno;
            step = "close";
        }
    }
    if (e && !strcmp(step, "not a regular file"))
        r = agent__send_error(a, id, e, "put '%s': not a regular file", put.path);
    else if (e)
        r = agent__send_error(a, id, e, "put '%s': %s: %s", put.path, step, strerror(e));
    else
        r = agent__send_ok(a, id);
    free(put.path);
    return r;
}

int agent__get(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    char why[AGENTWIRE_MAX_MSG];
    agentwire_get_t get;
    int r = agentwire_parse_get(p, len, &get, why, sizeof(why));
    if (r < 0)
        return agent__send_error(a, id, -r, "%s", why);
    if (get.path[0] != '/') {
        r = agent__send_error(a, id, EINVAL, "get '%s': path must be absolute", get.path);
        free(get.path);
        return r;
    }
    uint8_t *buf = NULL;
    struct stat st;
    int fd = open(get.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        r = agent__send_error(a, id, errno, "get '%s': open: %s", get.path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0) {
        r = agent__send_error(a, id, errno, "get '%s': stat: %s", get.path, strerror(errno));
        goto out;
    }
    /* a FIFO or device would block the whole agent or never end */
    if (!S_ISREG(st.st_mode)) {
        r = agent__send_error(a, id, S_ISDIR(st.st_mode) ? EISDIR : EINVAL,
                              "get '%s': not a regular file", get.path);
        goto out;
    }
    buf = malloc(get.max);
    if (!buf) {
        r = agent__send_error(a, id, ENOMEM, "get '%s': out of memory", get.path);
        goto out;
    }
    size_t got = 0;
    while (got < get.max) {
        ssize_t n = pread(fd, buf + got, get.max - got, (off_t)(get.offset + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = agent__send_error(a, id, errno, "get '%s': read: %s", get.path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_DATA, id);
    agentwire_put_bytes(&m, AGENTWIRE_T_DATA, buf, got);
    agentwire_put_u64(&m, AGENTWIRE_T_SIZE, (uint64_t)st.st_size);
    agentwire_put_u32(&m, AGENTWIRE_T_EOF, got < get.max);
    r = agent__send(a, &m);
    agentwire_msg_free(&m);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(get.path);
    return r;
}
