// SPDX-License-Identifier: Apache-2.0
/*
 * thaw-agent's side of the channel: writing frames, reading and dispatching
 * requests.  A frame whose header breaks framing (wrong magic, length over
 * the cap) ends the session, since nothing after it can be trusted; a
 * well-framed request that is unknown or malformed gets an ERROR frame with
 * its id and the session carries on.
 */
#include "guest/agent.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "thaw-config.h"

int agent__send(agent_t *a, agentwire_msg_t *m)
{
    int r = agentwire_msg_finish(m);
    if (r < 0)
        return r;
    size_t off = 0;
    while (off < m->len) {
        ssize_t n = write(a->chan_fd, m->data + off, m->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EPIPE;
        off += (size_t)n;
    }
    return 0;
}

int agent__send_error(agent_t *a, uint32_t id, int errnum, const char *fmt, ...)
{
    char msg[AGENTWIRE_MAX_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (errnum < 0)
        errnum = -errnum;
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_ERROR, id);
    agentwire_put_u32(&m, AGENTWIRE_T_ERRNO, (uint32_t)(errnum ? errnum : EIO));
    agentwire_put_str(&m, AGENTWIRE_T_MESSAGE, msg);
    int r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

int agent__send_ok(agent_t *a, uint32_t id)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_OK, id);
    int r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

static const char *mode_name(agent_mode_t mode)
{
    switch (mode) {
    case AGENT_MODE_VM:
        return "vm";
    case AGENT_MODE_SENTRY:
        return "sentry";
    case AGENT_MODE_TEST:
        break;
    }
    return "test";
}

int agent__send_hello(agent_t *a)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_HELLO, 0);
    agentwire_put_u32(&m, AGENTWIRE_T_VERSION, AGENTWIRE_VERSION);
    uint64_t caps = AGENTWIRE_CAP_EXEC | AGENTWIRE_CAP_FILES | AGENTWIRE_CAP_QUIESCE;
    if (a->mode == AGENT_MODE_VM)
        caps |= AGENTWIRE_CAP_THAW;
    agentwire_put_u64(&m, AGENTWIRE_T_CAPS, caps);
    agentwire_put_str(&m, AGENTWIRE_T_AGENT_MODE, mode_name(a->mode));
    struct utsname u;
    if (uname(&u) == 0) {
        char k[256];
        snprintf(k, sizeof(k), "%.40s %.80s %.120s", u.sysname, u.release, u.version);
        agentwire_put_str(&m, AGENTWIRE_T_KERNEL, k);
    }
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f) {
        char id[64] = "";
        if (fgets(id, sizeof(id), f)) {
            id[strcspn(id, "\n")] = '\0';
            agentwire_put_str(&m, AGENTWIRE_T_BOOT_ID, id);
        }
        fclose(f);
    }
    agentwire_put_str(&m, AGENTWIRE_T_AGENT_VER, THAW_VERSION);
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    agentwire_put_u64(&m, AGENTWIRE_T_UPTIME,
                      (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
    int r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

static int ping(agent_t *a, uint32_t id, const uint8_t *p, size_t len)
{
    agentwire_data_t d;
    char why[160];
    if (agentwire_parse_data(p, len, &d, why, sizeof(why)) < 0)
        return agent__send_error(a, id, EBADMSG, "ping: %s", why);
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_PONG, id);
    if (d.len)
        agentwire_put_bytes(&m, AGENTWIRE_T_DATA, d.data, d.len);
    int r = agent__send(a, &m);
    agentwire_msg_free(&m);
    return r;
}

static int dispatch(agent_t *a, const agentwire_hdr_t *h, const uint8_t *p)
{
    if (h->flags)
        return agent__send_error(a, h->id, EINVAL, "%s: frame flags 0x%x are not supported",
                                 agentwire_type_name(h->type), h->flags);
    switch (h->type) {
    case AGENTWIRE_EXEC:
        return agent__exec_start(a, h->id, p, h->len);
    case AGENTWIRE_STDIN:
        return agent__exec_stdin(a, h->id, p, h->len);
    case AGENTWIRE_SIGNAL:
        return agent__exec_signal(a, h->id, p, h->len);
    case AGENTWIRE_PUT:
        return agent__put(a, h->id, p, h->len);
    case AGENTWIRE_GET:
        return agent__get(a, h->id, p, h->len);
    case AGENTWIRE_THAW:
        return agent__thaw(a, h->id, p, h->len);
    case AGENTWIRE_QUIESCE:
        return agent__quiesce(a, h->id);
    case AGENTWIRE_PING:
        return ping(a, h->id, p, h->len);
    case AGENTWIRE_SHUTDOWN:
        agent__send_ok(a, h->id);
        agent__shutdown(a);
    }
    return agent__send_error(a, h->id, EOPNOTSUPP, "unknown message type 0x%x", h->type);
}

int agent__chan_readable(agent_t *a)
{
    const size_t cap = AGENTWIRE_HDR_SIZE + AGENTWIRE_MAX_PAYLOAD;
    ssize_t n = read(a->chan_fd, a->rbuf + a->rlen, cap - a->rlen);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n == 0)
        return -ECONNRESET;
    if (n < 0)
        return -errno;
    a->rlen += (size_t)n;
    size_t off = 0;
    int r = 0;
    while (r == 0) {
        agentwire_hdr_t h;
        int d = agentwire_hdr_decode(a->rbuf + off, a->rlen - off, &h);
        if (d == -EAGAIN)
            break;
        if (d < 0) {
            fprintf(stderr, "thaw-agent: %s; closing the channel\n",
                    d == -EBADMSG ? "bad frame magic" : "frame length over the cap");
            r = d;
            break;
        }
        if (a->rlen - off < AGENTWIRE_HDR_SIZE + h.len)
            break;
        r = dispatch(a, &h, a->rbuf + off + AGENTWIRE_HDR_SIZE);
        off += AGENTWIRE_HDR_SIZE + h.len;
    }
    if (off) {
        memmove(a->rbuf, a->rbuf + off, a->rlen - off);
        a->rlen -= off;
    }
    return r;
}
