// SPDX-License-Identifier: Apache-2.0
/*
 * Host side of the agent channel (agent_client.h).  One reader thread per
 * client reads frames, validates them and hands each to the pending request
 * with its id under the client lock; callers block on one condition variable
 * (CLOCK_MONOTONIC) until their request completes, the channel dies, or
 * their deadline passes.  Writes are serialised by a second lock and bounded
 * by the same deadline (the fd is non-blocking), so a guest that stops
 * reading cannot wedge a caller either.  Anything the guest sends is
 * untrusted: frames are decoded with the shared agentwire parsers and output
 * is capped here as well as in the agent.
 */
#include "guest/agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"

typedef struct pending {
    uint32_t id;
    uint16_t req_type;
    bool done;
    int rc; /* 0 or -errno once done */
    char msg[AGENTWIRE_MAX_MSG + 64];
    /* simple requests: the reply */
    uint16_t reply_type;
    uint8_t *payload;
    size_t payload_len;
    /* exec */
    bool started;
    uint32_t pid;
    uint64_t cap, kept;
    bool truncated;
    agent_output_fn on_output;
    void *opaque;
    bool no_buffer;
    uint8_t *out, *err;
    size_t out_len, out_cap, err_len, err_cap;
    agentwire_exit_t exit;
    struct pending *next;
} pending_t;

struct agent_client {
    int fd;
    int wake_fd;
    pthread_t reader;
    bool reader_started;
    pthread_mutex_t lock;  /* everything below */
    pthread_cond_t cond;   /* broadcast on every completion, hello, death */
    pthread_mutex_t wlock; /* one frame at a time on the wire */
    uint32_t next_id;
    bool stopping;
    bool dead;
    thaw_err_t dead_err;
    bool have_hello;
    bool hello_bad;
    char hello_msg[160];
    agentwire_hello_t hello;
    pending_t *pending;
};

struct agent_exec {
    agent_client_t *c;
    pending_t *p;
    uint64_t deadline_ns;
    const atomic_bool *cancel; /* the request's, or NULL */
    char name[64];             /* argv[0] for messages */
};

#define READ_BUF_MIN (64u << 10)

static uint64_t deadline_after(uint32_t ms)
{
    return thaw_now_ns() + (uint64_t)ms * 1000000ull;
}

/* ---- channel death and pending bookkeeping (lock held) ---- */

static void kill_channel_locked(agent_client_t *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void kill_channel_locked(agent_client_t *c, int code, const char *fmt, ...)
{
    if (!c->dead) {
        c->dead = true;
        va_list ap;
        va_start(ap, fmt);
        char buf[THAW_ERR_MSG_MAX];
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        thaw_err_set(&c->dead_err, code, "agent channel: %s", buf);
        thaw_warn("agent", "channel_dead", "reason=\"%s\"", buf);
    }
    pthread_cond_broadcast(&c->cond);
}

static pending_t *find_locked(agent_client_t *c, uint32_t id)
{
    for (pending_t *p = c->pending; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static void unlink_locked(agent_client_t *c, pending_t *p)
{
    for (pending_t **pp = &c->pending; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            return;
        }
    }
}

static void pending_free(pending_t *p)
{
    if (!p)
        return;
    free(p->payload);
    free(p->out);
    free(p->err);
    free(p);
}

static void complete(pending_t *p, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void complete(pending_t *p, int rc, const char *fmt, ...)
{
    if (p->done)
        return;
    p->done = true;
    p->rc = rc;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->msg, sizeof(p->msg), fmt, ap);
        va_end(ap);
    }
}

/* Append output within the cap; room for a trailing NUL is kept. */
static void append_output(pending_t *p, int stream, const uint8_t *data, size_t len)
{
    size_t room = p->kept < p->cap ? (size_t)(p->cap - p->kept) : 0;
    if (len > room) {
        p->truncated = true;
        len = room;
    }
    if (len == 0)
        return;
    p->kept += len;
    if (p->on_output)
        p->on_output(p->opaque, stream, data, len);
    if (p->no_buffer)
        return;
    uint8_t **buf = stream == 1 ? &p->out : &p->err;
    size_t *blen = stream == 1 ? &p->out_len : &p->err_len;
    size_t *bcap = stream == 1 ? &p->out_cap : &p->err_cap;
    if (*blen + len + 1 > *bcap) {
        size_t ncap = *bcap ? *bcap : 4096;
        while (ncap < *blen + len + 1)
            ncap *= 2;
        uint8_t *n = realloc(*buf, ncap);
        if (!n) {
            complete(p, -ENOMEM, "out of memory buffering output");
            return;
        }
        *buf = n;
        *bcap = ncap;
    }
    memcpy(*buf + *blen, data, len);
    *blen += len;
    (*buf)[*blen] = '\0';
}

/* ---- reader thread ---- */

static void dispatch_locked(agent_client_t *c, const agentwire_hdr_t *h, const uint8_t *pl)
{
    char why[AGENTWIRE_MAX_MSG + 64] = "";
    int r;

    if (h->type == AGENTWIRE_HELLO) {
        /* A second HELLO means the agent restarted its session (after a
         * framing error on its side): requests in flight are lost. */
        r = agentwire_parse_hello(pl, h->len, &c->hello, why, sizeof(why));
        if (r < 0) {
            c->hello_bad = true;
            snprintf(c->hello_msg, sizeof(c->hello_msg), "%s", why);
            kill_channel_locked(c, EPROTO, "bad hello: %s", why);
            return;
        }
        for (pending_t *p = c->pending; p; p = p->next)
            complete(p, -ECONNRESET, "agent restarted its session (second hello)");
        c->have_hello = true;
        pthread_cond_broadcast(&c->cond);
        return;
    }
    pending_t *p = find_locked(c, h->id);
    if (!p || p->done) {
        /* late frame for a request whose caller gave up: harmless */
        thaw_debug("agent", "frame_dropped", "type=%s id=%u", agentwire_type_name(h->type), h->id);
        return;
    }
    bool is_exec = p->req_type == AGENTWIRE_EXEC;
    switch (h->type) {
    case AGENTWIRE_ERROR: {
        agentwire_error_t e;
        r = agentwire_parse_error(pl, h->len, &e, why, sizeof(why));
        if (r < 0)
            complete(p, -EPROTO, "malformed error frame: %s", why);
        else
            complete(p, -(int)e.errnum, "%s", e.message[0] ? e.message : "agent error");
        break;
    }
    case AGENTWIRE_STARTED: {
        uint32_t pid = 0;
        bool found = false;
        r = agentwire_parse_u32_field(pl, h->len, AGENTWIRE_T_PID, &pid, &found, why, sizeof(why));
        if (!is_exec || r < 0 || !found || p->started)
            complete(p, -EPROTO, "unexpected or malformed started frame%s%s", why[0] ? ": " : "",
                     why);
        else {
            p->started = true;
            p->pid = pid;
        }
        break;
    }
    case AGENTWIRE_STDOUT:
    case AGENTWIRE_STDERR: {
        agentwire_data_t d;
        r = agentwire_parse_data(pl, h->len, &d, why, sizeof(why));
        if (!is_exec || r < 0 || !p->started)
            complete(p, -EPROTO, "unexpected or malformed output frame%s%s", why[0] ? ": " : "",
                     why);
        else
            append_output(p, h->type == AGENTWIRE_STDOUT ? 1 : 2, d.data, d.len);
        break;
    }
    case AGENTWIRE_EXIT:
        r = agentwire_parse_exit(pl, h->len, &p->exit, why, sizeof(why));
        if (!is_exec || r < 0 || !p->started)
            complete(p, -EPROTO, "unexpected or malformed exit frame%s%s", why[0] ? ": " : "", why);
        else
            complete(p, 0, NULL);
        break;
    case AGENTWIRE_OK:
    case AGENTWIRE_DATA:
    case AGENTWIRE_PONG:
        if (is_exec) {
            complete(p, -EPROTO, "unexpected %s frame for an exec", agentwire_type_name(h->type));
            break;
        }
        p->payload = h->len ? malloc(h->len) : NULL;
        if (h->len && !p->payload) {
            complete(p, -ENOMEM, "out of memory");
            break;
        }
        if (h->len)
            memcpy(p->payload, pl, h->len);
        p->payload_len = h->len;
        p->reply_type = h->type;
        complete(p, 0, NULL);
        break;
    default:
        complete(p, -EPROTO, "unexpected frame type 0x%x (%s)", h->type,
                 agentwire_type_name(h->type));
    }
    pthread_cond_broadcast(&c->cond);
}

static void *reader_main(void *arg)
{
    agent_client_t *c = arg;
    /* Start small and grow to the largest frame seen (at most the cap): a
     * pool holds one client per sandbox, most of which only ever see short
     * frames. */
    size_t cap = READ_BUF_MIN;
    _cleanup_free_ uint8_t *buf = malloc(cap);
    size_t have = 0;
    if (!buf) {
        pthread_mutex_lock(&c->lock);
        kill_channel_locked(c, ENOMEM, "out of memory for the read buffer");
        pthread_mutex_unlock(&c->lock);
        return NULL;
    }
    for (;;) {
        struct pollfd pfd[2] = {{.fd = c->fd, .events = POLLIN},
                                {.fd = c->wake_fd, .events = POLLIN}};
        int n = poll(pfd, 2, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            pthread_mutex_lock(&c->lock);
            kill_channel_locked(c, errno, "poll: %s", strerror(errno));
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        if (pfd[1].revents)
            return NULL; /* destroy */
        ssize_t got = read(c->fd, buf + have, cap - have);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        pthread_mutex_lock(&c->lock);
        if (got <= 0) {
            if (got == 0)
                kill_channel_locked(c, ECONNRESET, "closed by the agent%s",
                                    have ? " in the middle of a frame" : "");
            else
                kill_channel_locked(c, errno, "read: %s", strerror(errno));
            pthread_mutex_unlock(&c->lock);
            return NULL;
        }
        have += (size_t)got;
        size_t off = 0;
        for (;;) {
            agentwire_hdr_t h;
            int r = agentwire_hdr_decode(buf + off, have - off, &h);
            if (r == -EAGAIN)
                break;
            if (r < 0) {
                kill_channel_locked(c, EPROTO, "%s",
                                    r == -EBADMSG ? "bad frame magic (framing lost)"
                                                  : "frame length over the cap");
                pthread_mutex_unlock(&c->lock);
                return NULL;
            }
            if (have - off < AGENTWIRE_HDR_SIZE + h.len)
                break;
            if (h.flags != 0) {
                pending_t *p = find_locked(c, h.id);
                if (p)
                    complete(p, -EPROTO, "frame with unknown flags 0x%x", h.flags);
                pthread_cond_broadcast(&c->cond);
            } else {
                dispatch_locked(c, &h, buf + off + AGENTWIRE_HDR_SIZE);
            }
            off += AGENTWIRE_HDR_SIZE + h.len;
            if (c->dead) {
                pthread_mutex_unlock(&c->lock);
                return NULL;
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (off) {
            memmove(buf, buf + off, have - off);
            have -= off;
        }
        /* a frame larger than the buffer is in progress: make room for it */
        agentwire_hdr_t h;
        if (agentwire_hdr_decode(buf, have, &h) == 0 && AGENTWIRE_HDR_SIZE + h.len > cap) {
            uint8_t *nb = realloc(buf, AGENTWIRE_HDR_SIZE + h.len);
            if (!nb) {
                pthread_mutex_lock(&c->lock);
                kill_channel_locked(c, ENOMEM, "out of memory for a %u-byte frame", h.len);
                pthread_mutex_unlock(&c->lock);
                return NULL;
            }
            buf = nb;
            cap = AGENTWIRE_HDR_SIZE + h.len;
        }
    }
}

/* ---- public: lifetime ---- */

int agent_client_new(int fd, agent_client_t **out, thaw_err_t *err)
{
    _cleanup_close_ int owned = fd;
    if (fd < 0)
        return thaw_err_set(err, EBADF, "agent client: no channel descriptor");
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return thaw_err_sys(err, errno, "agent client: fd %d", fd);
    agent_client_t *c = calloc(1, sizeof(*c));
    if (!c)
        return thaw_err_set(err, ENOMEM, "agent client: out of memory");
    c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->wake_fd < 0) {
        int e = errno;
        free(c);
        return thaw_err_sys(err, e, "agent client: eventfd");
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->wlock, NULL);
    c->next_id = 1;
    c->fd = TAKE_FD(owned);
    int r = pthread_create(&c->reader, NULL, reader_main, c);
    if (r != 0) {
        agent_client_destroy(c);
        return thaw_err_sys(err, r, "agent client: reader thread");
    }
    c->reader_started = true;
    *out = c;
    return 0;
}

void agent_client_destroy(agent_client_t *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_mutex_unlock(&c->lock);
    if (c->reader_started) {
        uint64_t one = 1;
        if (write(c->wake_fd, &one, sizeof(one)) < 0)
            thaw_warn("agent", "wake_failed", "errno=%d", errno);
        pthread_join(c->reader, NULL);
    }
    pending_t *p = c->pending;
    while (p) {
        pending_t *next = p->next;
        pending_free(p);
        p = next;
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->wake_fd >= 0)
        close(c->wake_fd);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->wlock);
    free(c);
}

void agent_client_wake(agent_client_t *c)
{
    pthread_mutex_lock(&c->lock);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

bool agent_client_dead(agent_client_t *c, thaw_err_t *err)
{
    pthread_mutex_lock(&c->lock);
    bool dead = c->dead;
    if (dead && err)
        *err = c->dead_err;
    pthread_mutex_unlock(&c->lock);
    return dead;
}

/* A deadline (CLOCK_MONOTONIC ns, as thaw_now_ns) as an absolute timespec. */
static struct timespec abs_deadline(uint64_t deadline_ns)
{
    return (struct timespec){.tv_sec = (time_t)(deadline_ns / 1000000000ull),
                             .tv_nsec = (long)(deadline_ns % 1000000000ull)};
}

/* Wait on the condition until deadline; returns -ETIMEDOUT when it passed. */
static int wait_until_locked(agent_client_t *c, uint64_t deadline_ns)
{
    if (thaw_now_ns() >= deadline_ns)
        return -ETIMEDOUT;
    struct timespec ts = abs_deadline(deadline_ns);
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    return 0;
}

int agent_client_wait_hello(agent_client_t *c, uint32_t timeout_ms, agent_hello_t *hello,
                            thaw_err_t *err)
{
    uint64_t deadline = deadline_after(timeout_ms);
    pthread_mutex_lock(&c->lock);
    int r = 0;
    while (!c->have_hello && !c->dead) {
        if (wait_until_locked(c, deadline) < 0) {
            r = thaw_err_set(err, ETIMEDOUT, "agent: no hello within %u ms", timeout_ms);
            break;
        }
    }
    if (r == 0 && !c->have_hello) {
        if (err)
            *err = c->dead_err;
        r = -c->dead_err.code;
    }
    if (r == 0 && c->hello.version != AGENTWIRE_VERSION)
        r = thaw_err_set(err, EPROTONOSUPPORT, "agent speaks protocol %u, this host speaks %u",
                         c->hello.version, AGENTWIRE_VERSION);
    if (r == 0 && hello)
        *hello = c->hello;
    pthread_mutex_unlock(&c->lock);
    return r;
}

/* ---- sending ---- */

/* send() with MSG_NOSIGNAL so a vanished guest is EPIPE, not a SIGPIPE that
 * kills thawd; plain write() for a channel that is not a socket (a pipe). */
static ssize_t chan_write(int fd, const void *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == ENOTSOCK)
        n = write(fd, buf, len);
    return n;
}

/*
 * Write a whole frame before the deadline.  A frame cut short leaves the
 * stream unusable, so a timeout or error mid-frame kills the channel.
 */
static int send_frame(agent_client_t *c, const agentwire_msg_t *m, uint64_t deadline_ns,
                      thaw_err_t *err)
{
    /* another caller's large write must not hold this one past its deadline */
    struct timespec wts = abs_deadline(deadline_ns);
    int lr = pthread_mutex_clocklock(&c->wlock, CLOCK_MONOTONIC, &wts);
    if (lr != 0)
        return thaw_err_set(err, lr == ETIMEDOUT ? ETIMEDOUT : lr,
                            "agent channel: another request kept the channel busy past the "
                            "deadline");
    size_t off = 0;
    int r = 0;
    while (off < m->len) {
        pthread_mutex_lock(&c->lock);
        bool dead = c->dead;
        thaw_err_t de = c->dead_err;
        pthread_mutex_unlock(&c->lock);
        if (dead) {
            if (err)
                *err = de;
            r = -de.code;
            break;
        }
        ssize_t n = chan_write(c->fd, m->data + off, m->len - off);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN) {
            r = thaw_err_sys(err, errno, "agent channel: write");
            break;
        }
        uint64_t now = thaw_now_ns();
        if (now >= deadline_ns) {
            r = thaw_err_set(err, ETIMEDOUT, "agent channel: the agent stopped reading");
            break;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        int ms = (int)((deadline_ns - now) / 1000000ull) + 1;
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR) {
            r = thaw_err_sys(err, errno, "agent channel: poll");
            break;
        }
    }
    if (r < 0 && off > 0) {
        pthread_mutex_lock(&c->lock);
        kill_channel_locked(c, -r, "write failed in the middle of a frame: %s", thaw_err_msg(err));
        pthread_mutex_unlock(&c->lock);
    }
    pthread_mutex_unlock(&c->wlock);
    return r;
}

/* Register a pending request, send it, and return the pending record. */
static int submit(agent_client_t *c, agentwire_msg_t *m, uint16_t type, uint32_t id, pending_t *p,
                  uint64_t deadline, thaw_err_t *err)
{
    int r = agentwire_msg_finish(m);
    if (r < 0)
        return thaw_err_set(err, -r, "agent %s: request too large for one frame",
                            agentwire_type_name(type));
    p->id = id;
    p->req_type = type;
    pthread_mutex_lock(&c->lock);
    if (c->dead) {
        if (err)
            *err = c->dead_err;
        r = -c->dead_err.code;
        pthread_mutex_unlock(&c->lock);
        return r;
    }
    p->next = c->pending;
    c->pending = p;
    pthread_mutex_unlock(&c->lock);
    r = send_frame(c, m, deadline, err);
    if (r < 0) {
        pthread_mutex_lock(&c->lock);
        unlink_locked(c, p);
        pthread_mutex_unlock(&c->lock);
    }
    return r;
}

static uint32_t new_id(agent_client_t *c)
{
    pthread_mutex_lock(&c->lock);
    uint32_t id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = 1; /* 0 is the hello's id */
    pthread_mutex_unlock(&c->lock);
    return id;
}

/* Wait for p to complete (or the channel to die, or the deadline); lock held. */
static int await_locked(agent_client_t *c, pending_t *p, uint64_t deadline, const char *what,
                        uint32_t ms, thaw_err_t *err)
{
    while (!p->done && !c->dead) {
        if (wait_until_locked(c, deadline) < 0)
            return thaw_err_set(err, ETIMEDOUT, "agent %s: no reply within %u ms", what, ms);
    }
    if (!p->done) {
        if (err)
            *err = c->dead_err;
        return -c->dead_err.code;
    }
    if (p->rc < 0)
        return thaw_err_set(err, -p->rc, "agent %s: %s", what, p->msg);
    return 0;
}

/*
 * One request, one reply: send m and wait for OK/DATA/PONG (expect) or an
 * ERROR.  On success *reply holds the pending record (caller frees).
 */
static int call(agent_client_t *c, agentwire_msg_t *m, uint16_t type, uint32_t id, uint16_t expect,
                uint32_t timeout_ms, const char *what, pending_t **reply, thaw_err_t *err)
{
    uint64_t deadline = deadline_after(timeout_ms);
    pending_t *p = calloc(1, sizeof(*p));
    if (!p)
        return thaw_err_set(err, ENOMEM, "agent %s: out of memory", what);
    int r = submit(c, m, type, id, p, deadline, err);
    if (r < 0) {
        pending_free(p);
        return thaw_err_wrap(err, "agent %s", what);
    }
    pthread_mutex_lock(&c->lock);
    r = await_locked(c, p, deadline, what, timeout_ms, err);
    if (r == 0 && p->reply_type != expect)
        r = thaw_err_set(err, EPROTO, "agent %s: got %s, expected %s", what,
                         agentwire_type_name(p->reply_type), agentwire_type_name(expect));
    unlink_locked(c, p);
    pthread_mutex_unlock(&c->lock);
    if (r < 0 || !reply)
        pending_free(p);
    else
        *reply = p;
    return r;
}

/* ---- exec ---- */

void agent_exec_result_free(agent_exec_result_t *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
    r->out_len = r->err_len = 0;
}

static bool exec_cancelled(const agent_exec_t *x)
{
    return x->cancel && atomic_load_explicit(x->cancel, memory_order_acquire);
}

/* Best effort, bounded: ask the agent to SIGKILL exec `id`'s process group,
 * so a command whose caller gave up does not run on in the sandbox.  The
 * agent handles frames in order, so this also reaches an exec whose STARTED
 * has not arrived yet. */
static void kill_exec_group(agent_client_t *c, uint32_t id)
{
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_SIGNAL, id);
    agentwire_put_u32(&m, AGENTWIRE_T_SIGNO, SIGKILL);
    agentwire_put_u32(&m, AGENTWIRE_T_FLAGS, AGENTWIRE_SIGNAL_GROUP);
    if (agentwire_msg_finish(&m) == 0)
        send_frame(c, &m, deadline_after(1000), NULL);
    agentwire_msg_free(&m);
}

/*
 * A cancelled exec: kill its process group, then give the agent a moment
 * (bounded) to report it dead, so that the command is gone before the
 * caller goes on, for example to tear the sandbox down: a process-tier
 * teardown kills only the agent's own process group, and a kill frame the
 * agent had not read yet would be lost with it.  c->lock held on entry and
 * exit; p stays registered so its EXIT is delivered.
 */
static void cancel_locked(agent_client_t *c, pending_t *p, uint64_t deadline_ns)
{
    pthread_mutex_unlock(&c->lock);
    kill_exec_group(c, p->id);
    pthread_mutex_lock(&c->lock);
    uint64_t dl = deadline_after(AGENT_EXEC_CANCEL_WAIT_MS);
    if (dl > deadline_ns)
        dl = deadline_ns;
    while (!p->done && !c->dead && wait_until_locked(c, dl) == 0)
        ;
}

int agent_exec_start(agent_client_t *c, const agent_exec_req_t *req, agent_exec_t **out,
                     thaw_err_t *err)
{
    if (!req->argv || !req->argv[0])
        return thaw_err_set(err, EINVAL, "agent exec: empty argv");
    agent_exec_t *x = calloc(1, sizeof(*x));
    pending_t *p = calloc(1, sizeof(*p));
    if (!x || !p) {
        free(x);
        free(p);
        return thaw_err_set(err, ENOMEM, "agent exec: out of memory");
    }
    x->c = c;
    x->p = p;
    snprintf(x->name, sizeof(x->name), "%s", req->argv[0]);
    uint32_t dl = req->deadline_ms;
    if (dl == 0)
        dl = req->timeout_ms ? req->timeout_ms + AGENT_EXEC_GRACE_MS : AGENT_EXEC_DEFAULT_DEADLINE;
    x->deadline_ns = deadline_after(dl);
    x->cancel = req->cancel;
    p->cap = req->output_cap ? req->output_cap : AGENT_EXEC_DEFAULT_OUTPUT_CAP;
    p->on_output = req->on_output;
    p->opaque = req->opaque;
    p->no_buffer = req->no_buffer && req->on_output;

    uint32_t id = new_id(c);
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_EXEC, id);
    for (size_t i = 0; req->argv[i]; i++)
        agentwire_put_str(&m, AGENTWIRE_T_ARGV, req->argv[i]);
    for (size_t i = 0; req->env && req->env[i]; i++)
        agentwire_put_str(&m, AGENTWIRE_T_ENV, req->env[i]);
    if (req->cwd)
        agentwire_put_str(&m, AGENTWIRE_T_CWD, req->cwd);
    if (req->set_uid)
        agentwire_put_u32(&m, AGENTWIRE_T_UID, req->uid);
    if (req->set_gid)
        agentwire_put_u32(&m, AGENTWIRE_T_GID, req->gid);
    if (req->stdin_len)
        agentwire_put_bytes(&m, AGENTWIRE_T_STDIN, req->stdin_data, req->stdin_len);
    if (req->timeout_ms)
        agentwire_put_u32(&m, AGENTWIRE_T_TIMEOUT_MS, req->timeout_ms);
    agentwire_put_u64(&m, AGENTWIRE_T_OUTPUT_CAP, p->cap);
    uint32_t flags =
        (req->stdin_open ? AGENTWIRE_EXEC_STDIN_OPEN : 0) | (req->pty ? AGENTWIRE_EXEC_PTY : 0);
    if (flags)
        agentwire_put_u32(&m, AGENTWIRE_T_FLAGS, flags);
    if (req->pty && req->pty_rows)
        agentwire_put_u32(&m, AGENTWIRE_T_PTY_ROWS, req->pty_rows);
    if (req->pty && req->pty_cols)
        agentwire_put_u32(&m, AGENTWIRE_T_PTY_COLS, req->pty_cols);
    int r = submit(c, &m, AGENTWIRE_EXEC, id, p, x->deadline_ns, err);
    agentwire_msg_free(&m);
    if (r < 0) {
        pending_free(p);
        free(x);
        return thaw_err_wrap(err, "exec '%s'", req->argv[0]);
    }
    pthread_mutex_lock(&c->lock);
    while (!p->started && !p->done && !c->dead) {
        if (exec_cancelled(x)) {
            cancel_locked(c, p, x->deadline_ns);
            r = thaw_err_set(err, ECANCELED, "exec '%s': cancelled", x->name);
            break;
        }
        if (wait_until_locked(c, x->deadline_ns) < 0) {
            r = thaw_err_set(err, ETIMEDOUT,
                             "exec '%s': the agent did not start it before the "
                             "deadline",
                             x->name);
            break;
        }
    }
    if (r == 0 && !p->started) {
        if (p->done && p->rc < 0)
            r = thaw_err_set(err, -p->rc, "exec '%s': %s", x->name, p->msg);
        else if (p->done)
            r = thaw_err_set(err, EPROTO, "exec '%s': exit before started", x->name);
        else {
            if (err)
                *err = c->dead_err;
            r = thaw_err_wrap(err, "exec '%s'", x->name);
        }
    }
    if (r < 0) {
        unlink_locked(c, p);
        pthread_mutex_unlock(&c->lock);
        pending_free(p);
        free(x);
        return r;
    }
    pthread_mutex_unlock(&c->lock);
    *out = x;
    return 0;
}

uint32_t agent_exec_pid(const agent_exec_t *x)
{
    return x->p->pid;
}

/* Fire-and-forget frame for a running exec (no reply unless it fails). */
static int exec_notify(agent_exec_t *x, agentwire_msg_t *m, const char *what, thaw_err_t *err)
{
    int r = agentwire_msg_finish(m);
    if (r < 0)
        return thaw_err_set(err, -r, "exec '%s': %s: frame too large", x->name, what);
    uint64_t deadline = deadline_after(AGENT_EXEC_GRACE_MS);
    if (deadline > x->deadline_ns)
        deadline = x->deadline_ns;
    r = send_frame(x->c, m, deadline, err);
    if (r < 0)
        return thaw_err_wrap(err, "exec '%s': %s", x->name, what);
    return 0;
}

int agent_exec_stdin(agent_exec_t *x, const void *data, size_t len, bool eof, thaw_err_t *err)
{
    const uint8_t *d = data;
    do {
        size_t n = len > AGENTWIRE_CHUNK ? AGENTWIRE_CHUNK : len;
        agentwire_msg_t m;
        agentwire_msg_init(&m, AGENTWIRE_STDIN, x->p->id);
        if (n)
            agentwire_put_bytes(&m, AGENTWIRE_T_DATA, d, n);
        if (eof && n == len)
            agentwire_put_u32(&m, AGENTWIRE_T_EOF, 1);
        int r = exec_notify(x, &m, "stdin", err);
        agentwire_msg_free(&m);
        if (r < 0)
            return r;
        d += n;
        len -= n;
    } while (len);
    return 0;
}

int agent_exec_signal(agent_exec_t *x, int signo, bool group, thaw_err_t *err)
{
    if (signo <= 0 || signo > 64)
        return thaw_err_set(err, EINVAL, "exec '%s': %d is not a signal", x->name, signo);
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_SIGNAL, x->p->id);
    agentwire_put_u32(&m, AGENTWIRE_T_SIGNO, (uint32_t)signo);
    if (group)
        agentwire_put_u32(&m, AGENTWIRE_T_FLAGS, AGENTWIRE_SIGNAL_GROUP);
    int r = exec_notify(x, &m, "signal", err);
    agentwire_msg_free(&m);
    return r;
}

int agent_exec_wait(agent_exec_t *x, agent_exec_result_t *res, thaw_err_t *err)
{
    agent_client_t *c = x->c;
    pending_t *p = x->p;
    memset(res, 0, sizeof(*res));
    int r = 0;
    pthread_mutex_lock(&c->lock);
    while (!p->done && !c->dead) {
        if (exec_cancelled(x)) {
            cancel_locked(c, p, x->deadline_ns);
            r = -ECANCELED;
            break;
        }
        if (wait_until_locked(c, x->deadline_ns) < 0) {
            r = -ETIMEDOUT;
            break;
        }
    }
    if (r == 0 && !p->done) {
        if (err)
            *err = c->dead_err;
        r = thaw_err_wrap(err, "exec '%s'", x->name);
    } else if (r == 0 && p->rc < 0) {
        r = thaw_err_set(err, -p->rc, "exec '%s': %s", x->name, p->msg);
    }
    unlink_locked(c, p);
    pthread_mutex_unlock(&c->lock);
    if (r == -ETIMEDOUT) {
        kill_exec_group(c, p->id); /* do not leave the command running in the sandbox */
        thaw_err_set(err, ETIMEDOUT, "exec '%s': no exit reported before the deadline", x->name);
    } else if (r == -ECANCELED) {
        thaw_err_set(err, ECANCELED, "exec '%s': cancelled", x->name);
    }
    if (r == 0) {
        res->pid = p->pid;
        res->exit_code = p->exit.exit_code;
        res->term_signal = (int)p->exit.termsig;
        res->timed_out = p->exit.timed_out;
        res->truncated = p->exit.truncated || p->truncated;
        res->cpu_user_us = p->exit.cpu_user_us;
        res->cpu_sys_us = p->exit.cpu_sys_us;
        res->max_rss_kb = p->exit.max_rss_kb;
        res->wall_us = p->exit.wall_us;
        res->out = p->out ? p->out : calloc(1, 1);
        res->out_len = p->out_len;
        res->err = p->err ? p->err : calloc(1, 1);
        res->err_len = p->err_len;
        p->out = p->err = NULL;
        if (!res->out || !res->err) {
            agent_exec_result_free(res);
            r = thaw_err_set(err, ENOMEM, "exec '%s': out of memory", x->name);
        }
    }
    pending_free(p);
    free(x);
    return r;
}

int agent_client_exec(agent_client_t *c, const agent_exec_req_t *req, agent_exec_result_t *res,
                      thaw_err_t *err)
{
    memset(res, 0, sizeof(*res));
    agent_exec_t *x = NULL;
    int r = agent_exec_start(c, req, &x, err);
    if (r < 0)
        return r;
    return agent_exec_wait(x, res, err);
}

/* ---- files ---- */

int agent_client_put_file(agent_client_t *c, const char *path, const void *data, size_t len,
                          uint32_t mode, uint32_t timeout_ms, thaw_err_t *err)
{
    const uint8_t *d = data;
    size_t off = 0;
    uint64_t deadline = deadline_after(timeout_ms);
    do {
        size_t n = len - off > AGENTWIRE_CHUNK ? AGENTWIRE_CHUNK : len - off;
        uint64_t now = thaw_now_ns();
        uint32_t left = now >= deadline ? 0 : (uint32_t)((deadline - now) / 1000000ull);
        uint32_t id = new_id(c);
        agentwire_msg_t m;
        agentwire_msg_init(&m, AGENTWIRE_PUT, id);
        agentwire_put_str(&m, AGENTWIRE_T_PATH, path);
        agentwire_put_u32(&m, AGENTWIRE_T_MODE, mode);
        agentwire_put_u64(&m, AGENTWIRE_T_OFFSET, off);
        if (off == 0)
            agentwire_put_u32(&m, AGENTWIRE_T_FLAGS, AGENTWIRE_PUT_TRUNCATE);
        if (n)
            agentwire_put_bytes(&m, AGENTWIRE_T_DATA, d + off, n);
        int r = call(c, &m, AGENTWIRE_PUT, id, AGENTWIRE_OK, left, "put", NULL, err);
        agentwire_msg_free(&m);
        if (r < 0)
            return thaw_err_wrap(err, "put '%s' at offset %zu", path, off);
        off += n;
    } while (off < len);
    return 0;
}

int agent_client_get_file(agent_client_t *c, const char *path, size_t max_len, uint8_t **data,
                          size_t *len, uint32_t timeout_ms, thaw_err_t *err)
{
    uint64_t deadline = deadline_after(timeout_ms);
    _cleanup_free_ uint8_t *buf = NULL;
    size_t have = 0, cap = 0;
    for (;;) {
        uint64_t now = thaw_now_ns();
        uint32_t left = now >= deadline ? 0 : (uint32_t)((deadline - now) / 1000000ull);
        uint32_t id = new_id(c);
        agentwire_msg_t m;
        agentwire_msg_init(&m, AGENTWIRE_GET, id);
        agentwire_put_str(&m, AGENTWIRE_T_PATH, path);
        agentwire_put_u64(&m, AGENTWIRE_T_OFFSET, have);
        agentwire_put_u32(&m, AGENTWIRE_T_MAX, AGENTWIRE_CHUNK);
        pending_t *p = NULL;
        int r = call(c, &m, AGENTWIRE_GET, id, AGENTWIRE_DATA, left, "get", &p, err);
        agentwire_msg_free(&m);
        if (r < 0)
            return thaw_err_wrap(err, "get '%s'", path);
        agentwire_data_t d;
        char why[160];
        r = agentwire_parse_data(p->payload, p->payload_len, &d, why, sizeof(why));
        if (r < 0) {
            pending_free(p);
            return thaw_err_set(err, EPROTO, "get '%s': %s", path, why);
        }
        if (d.size > max_len || have + d.len > max_len) {
            pending_free(p);
            return thaw_err_set(err, EFBIG, "get '%s': file is %llu bytes, the cap is %zu", path,
                                (unsigned long long)d.size, max_len);
        }
        if (have + d.len + 1 > cap) {
            size_t ncap = have + d.len + 1;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                pending_free(p);
                return thaw_err_set(err, ENOMEM, "get '%s': out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        if (d.len)
            memcpy(buf + have, d.data, d.len);
        have += d.len;
        bool eof = d.eof;
        pending_free(p);
        if (eof)
            break;
        if (d.len == 0)
            return thaw_err_set(err, EPROTO, "get '%s': agent sent an empty chunk before eof",
                                path);
    }
    if (!buf) {
        buf = malloc(1);
        if (!buf)
            return thaw_err_set(err, ENOMEM, "get '%s': out of memory", path);
    }
    buf[have] = '\0';
    *data = TAKE_PTR(buf);
    *len = have;
    return 0;
}

/* ---- control ---- */

int agent_client_thaw(agent_client_t *c, const void *entropy, size_t entropy_len,
                      uint64_t wallclock_ns, uint32_t timeout_ms, bool *applied, thaw_err_t *err)
{
    if (entropy_len > AGENTWIRE_MAX_ENTROPY)
        return thaw_err_set(err, E2BIG, "agent thaw: %zu bytes of entropy, the cap is %u",
                            entropy_len, AGENTWIRE_MAX_ENTROPY);
    if (wallclock_ns == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        wallclock_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    }
    uint32_t id = new_id(c);
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_THAW, id);
    if (entropy_len)
        agentwire_put_bytes(&m, AGENTWIRE_T_ENTROPY, entropy, entropy_len);
    agentwire_put_u64(&m, AGENTWIRE_T_WALLCLOCK, wallclock_ns);
    pending_t *p = NULL;
    int r = call(c, &m, AGENTWIRE_THAW, id, AGENTWIRE_OK, timeout_ms, "thaw", &p, err);
    agentwire_msg_free(&m);
    if (r < 0)
        return r;
    uint32_t v = 0;
    bool found = false;
    char why[160];
    r = agentwire_parse_u32_field(p->payload, p->payload_len, AGENTWIRE_T_APPLIED, &v, &found, why,
                                  sizeof(why));
    pending_free(p);
    if (r < 0)
        return thaw_err_set(err, EPROTO, "agent thaw: %s", why);
    if (applied)
        *applied = found && v;
    return 0;
}

static int simple_call(agent_client_t *c, uint16_t type, uint16_t expect, uint32_t timeout_ms,
                       const char *what, thaw_err_t *err)
{
    uint32_t id = new_id(c);
    agentwire_msg_t m;
    agentwire_msg_init(&m, type, id);
    int r = call(c, &m, type, id, expect, timeout_ms, what, NULL, err);
    agentwire_msg_free(&m);
    return r;
}

int agent_client_quiesce(agent_client_t *c, uint32_t timeout_ms, thaw_err_t *err)
{
    return simple_call(c, AGENTWIRE_QUIESCE, AGENTWIRE_OK, timeout_ms, "quiesce", err);
}

int agent_client_shutdown(agent_client_t *c, uint32_t timeout_ms, thaw_err_t *err)
{
    return simple_call(c, AGENTWIRE_SHUTDOWN, AGENTWIRE_OK, timeout_ms, "shutdown", err);
}

int agent_client_ping(agent_client_t *c, uint32_t timeout_ms, uint64_t *rtt_ns, thaw_err_t *err)
{
    uint64_t t0 = thaw_now_ns();
    uint8_t token[8];
    for (int i = 0; i < 8; i++)
        token[i] = (uint8_t)(t0 >> (8 * i));
    uint32_t id = new_id(c);
    agentwire_msg_t m;
    agentwire_msg_init(&m, AGENTWIRE_PING, id);
    agentwire_put_bytes(&m, AGENTWIRE_T_DATA, token, sizeof(token));
    pending_t *p = NULL;
    int r = call(c, &m, AGENTWIRE_PING, id, AGENTWIRE_PONG, timeout_ms, "ping", &p, err);
    agentwire_msg_free(&m);
    if (r < 0)
        return r;
    agentwire_data_t d;
    char why[160];
    r = agentwire_parse_data(p->payload, p->payload_len, &d, why, sizeof(why));
    bool same = r == 0 && d.len == sizeof(token) && memcmp(d.data, token, sizeof(token)) == 0;
    pending_free(p);
    if (!same)
        return thaw_err_set(err, EPROTO, "agent ping: the pong does not echo the token");
    if (rtt_ns)
        *rtt_ns = thaw_now_ns() - t0;
    return 0;
}
