// SPDX-License-Identifier: Apache-2.0
/*
 * The transport: a libuv loop with the listening Unix socket, one
 * connection per client, newline framing with a size cap, writes, the
 * notification queue that worker threads feed, signals and the lease timer.
 * What a line means is dispatch.c's business.
 */
#include "rpc/rpc-internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/clock.h"
#include "common/log.h"

struct rpc_note {
    rpc_conn_t *conn;
    char *line;
    size_t len;
    struct rpc_note *next;
};

/* A client that does not read its replies may queue at most this much. */
#define RPC_MAX_WRITE_QUEUE (64u << 20)

static void conn_close(rpc_conn_t *c);

void rpc__conn_ref(rpc_conn_t *c)
{
    c->refs++;
}

static void conn_free(rpc_conn_t *c)
{
    free(c->buf);
    free(c);
}

void rpc__conn_unref(rpc_conn_t *c)
{
    if (--c->refs == 0)
        conn_free(c);
}

static void on_closed(uv_handle_t *h)
{
    rpc__conn_unref(h->data);
}

typedef struct write_req {
    uv_write_t w;
    rpc_conn_t *conn;
    char *data;
} write_req_t;

static void on_written(uv_write_t *w, int status)
{
    write_req_t *wr = (write_req_t *)w;
    if (status < 0 && !wr->conn->closing)
        conn_close(wr->conn);
    rpc__conn_unref(wr->conn);
    free(wr->data);
    free(wr);
}

/* Queue bytes (ownership of data moves here). */
static void send_raw(rpc_conn_t *c, char *data, size_t len)
{
    if (c->closing) {
        free(data);
        return;
    }
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > RPC_MAX_WRITE_QUEUE) {
        thaw_warn("rpc", "client_not_reading", "conn=%llu action=close", (unsigned long long)c->id);
        free(data);
        conn_close(c);
        return;
    }
    write_req_t *wr = malloc(sizeof(*wr));
    if (!wr) {
        free(data);
        conn_close(c);
        return;
    }
    wr->conn = c;
    wr->data = data;
    rpc__conn_ref(c);
    c->srv->bytes_out += len;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int r = uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, on_written);
    if (r < 0) {
        rpc__conn_unref(c);
        free(data);
        free(wr);
        conn_close(c);
    }
}

static char *dump_line(json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

void rpc__send(rpc_conn_t *c, json_t *v)
{
    size_t len = 0;
    char *line = dump_line(v, &len);
    json_decref(v);
    if (line)
        send_raw(c, line, len);
}

void rpc__notify(rpc_req_t *req, const char *method, json_t *params)
{
    json_t *msg =
        json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params", params);
    if (!msg)
        return;
    struct rpc_note *n = calloc(1, sizeof(*n));
    if (n)
        n->line = dump_line(msg, &n->len);
    json_decref(msg);
    if (!n || !n->line) {
        free(n);
        return;
    }
    n->conn = req->conn;
    rpc_server_t *srv = req->srv;
    pthread_mutex_lock(&srv->nq_mu);
    if (srv->nq_tail)
        srv->nq_tail->next = n;
    else
        srv->nq_head = n;
    srv->nq_tail = n;
    pthread_mutex_unlock(&srv->nq_mu);
    uv_async_send(&srv->notify_async);
}

void rpc__notify_drain(rpc_server_t *srv)
{
    pthread_mutex_lock(&srv->nq_mu);
    struct rpc_note *n = srv->nq_head;
    srv->nq_head = srv->nq_tail = NULL;
    pthread_mutex_unlock(&srv->nq_mu);
    /* The request that queued a note holds its connection until it is done,
     * and its done callback drains first: the connection is alive here. */
    while (n) {
        struct rpc_note *nx = n->next;
        send_raw(n->conn, n->line, n->len);
        free(n);
        n = nx;
    }
}

static void on_notify(uv_async_t *a)
{
    rpc__notify_drain(a->data);
}

static void conn_close(rpc_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    rpc_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    rpc__conn_cancel(c); /* before the release below, so a busy sandbox is freed sooner */
    rpc__sb_conn_closed(srv, c);
    thaw_debug("rpc", "disconnect", "conn=%llu uid=%d", (unsigned long long)c->id, (int)c->uid);
    uv_close((uv_handle_t *)&c->pipe, on_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    rpc_conn_t *c = req->data;
    free(req);
    conn_close(c);
    rpc__conn_unref(c);
}

/* Close once queued writes are flushed (a last error line must arrive). */
static void conn_close_after_flush(rpc_conn_t *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = true;
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) < 0) {
        free(req);
        conn_close(c);
        return;
    }
    req->data = c;
    rpc__conn_ref(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static const size_t sz = 64 * 1024;
    buf->base = malloc(sz);
    buf->len = buf->base ? sz : 0;
}

/* Feed received bytes through the framing: whole lines go to dispatch. */
static void conn_feed(rpc_conn_t *c, const char *data, size_t n)
{
    size_t max = c->srv->cfg.max_message;
    while (n > 0 && !c->closing) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (c->discarding) {
            if (nl)
                c->discarding = false;
        } else if (c->len + take > max) {
            /* Oversized: answer once, then skip to the end of this line. */
            c->len = 0;
            c->discarding = !nl;
            char msg[128];
            snprintf(msg, sizeof(msg), "Invalid Request: message exceeds the limit of %u bytes",
                     (unsigned)max);
            c->srv->errors++;
            rpc__send(c, rpc__error_obj(NULL, RPC_E_INVALID_REQUEST, msg));
        } else {
            if (c->len + take + 1 > c->cap) {
                size_t cap = c->cap ? c->cap : 4096;
                while (cap < c->len + take + 1)
                    cap *= 2;
                char *nb = realloc(c->buf, cap);
                if (!nb) {
                    conn_close(c);
                    return;
                }
                c->buf = nb;
                c->cap = cap;
            }
            memcpy(c->buf + c->len, data, take);
            c->len += take;
            if (nl) {
                c->buf[c->len] = '\0';
                size_t len = c->len;
                c->len = 0;
                rpc__handle_line(c, c->buf, len);
            }
        }
        if (!nl)
            break;
        data += take + 1;
        n -= take + 1;
    }
    /* Keep the buffer from growing forever after one large request. */
    if (c->len == 0 && c->cap > (1u << 20)) {
        free(c->buf);
        c->buf = NULL;
        c->cap = 0;
    }
}

/*
 * Has the client closed its socket, rather than only its sending half?
 * Both read as EOF.  A Unix stream socket whose peer is closed reports
 * POLLHUP (the kernel marks both directions shut), or POLLERR when the peer
 * left unread replies behind; a half-close (shutdown(SHUT_WR): `socat`,
 * `nc -N`) reports neither.  poll with a zero timeout never blocks.
 */
static bool peer_gone(rpc_conn_t *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0)
        return true;
    struct pollfd pfd = {.fd = fd, .events = 0};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    rpc_conn_t *c = s->data;
    if (nread > 0) {
        c->srv->bytes_in += (uint64_t)nread;
        rpc__conn_ref(c); /* dispatch may close c */
        conn_feed(c, buf->base, (size_t)nread);
        rpc__conn_unref(c);
    } else if (nread == UV_EOF && c->inflight > 0 && !peer_gone(c)) {
        /* A half-close (`echo REQ | socat - UNIX-CONNECT:...`, nc -U -N):
         * the client is done sending, not gone.  Answer what is in flight,
         * then close (rpc__conn_request_done).  An unterminated last line is
         * dropped, as a truncated message costs only its sender.  If it
         * closes for good meanwhile, the housekeeping timer notices. */
        c->read_eof = true;
        uv_read_stop(s);
    } else if (nread == UV_EOF && c->inflight > 0) {
        /* Gone with requests in flight: nobody will read their replies, so
         * cancel them now rather than hold sandboxes until they end. */
        thaw_debug("rpc", "client_gone", "conn=%llu inflight=%u", (unsigned long long)c->id,
                   c->inflight);
        conn_close(c);
    } else if (nread == UV_EOF) {
        conn_close_after_flush(c);
    } else if (nread < 0) {
        conn_close(c); /* reset or error: the client is gone */
    }
    free(buf->base);
}

void rpc__conn_request_done(rpc_conn_t *c)
{
    if (c->read_eof && c->inflight == 0)
        conn_close_after_flush(c);
}

static bool peer_allowed(rpc_server_t *srv, uid_t uid, gid_t gid)
{
    const rpc_config_t *cfg = &srv->cfg;
    if (cfg->n_allowed_uids == 0 && cfg->n_allowed_gids == 0)
        return true;
    for (unsigned i = 0; i < cfg->n_allowed_uids; i++)
        if (cfg->allowed_uids[i] == uid)
            return true;
    for (unsigned i = 0; i < cfg->n_allowed_gids; i++)
        if (cfg->allowed_gids[i] == gid)
            return true;
    return false;
}

static void on_connection(uv_stream_t *l, int status)
{
    rpc_server_t *srv = l->data;
    if (status < 0) {
        thaw_warn("rpc", "accept_failed", "err=\"%s\"", uv_strerror(status));
        return;
    }
    rpc_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    c->refs = 1;
    c->id = ++srv->next_conn_id;
    uv_pipe_init(&srv->loop, &c->pipe, 0);
    c->pipe.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->pipe) < 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->pipe, on_closed);
        return;
    }
    /* Link first so conn_close can unlink on every path below. */
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->connections_total++;

    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0) {
        thaw_warn("rpc", "peercred_failed", "conn=%llu", (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->pid = cred.pid;
    if (!peer_allowed(srv, c->uid, c->gid)) {
        char msg[128];
        snprintf(msg, sizeof(msg), "uid %d (gid %d) is not allowed to use thawd", (int)c->uid,
                 (int)c->gid);
        thaw_warn("rpc", "peer_denied", "uid=%d gid=%d pid=%d", (int)c->uid, (int)c->gid,
                  (int)c->pid);
        rpc__send(c, rpc__error_obj(NULL, RPC_E_DENIED, msg));
        conn_close_after_flush(c);
        return;
    }
    if (srv->stopping) {
        rpc__send(c, rpc__error_obj(NULL, RPC_E_SHUTDOWN, "thawd is shutting down"));
        conn_close_after_flush(c);
        return;
    }
    thaw_debug("rpc", "connect", "conn=%llu uid=%d pid=%d", (unsigned long long)c->id, (int)c->uid,
               (int)c->pid);
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void begin_shutdown(rpc_server_t *srv, const char *why)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    thaw_info("rpc", "shutdown", "signal=%s inflight=%u sandboxes=%u", why, srv->inflight,
              srv->nsbs);
    uv_close((uv_handle_t *)&srv->listener, NULL);
    while (srv->conns)
        conn_close(srv->conns);
    rpc__drop_queued(srv); /* what closing left: admin work not yet started */
    rpc__sb_release_all(srv);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->lease_timer, NULL);
    /* Workers may still queue notes (and uv_async_send) until their requests
     * end: the async handle closes with the last one (rpc__server_idle). */
    rpc__server_idle(srv);
    /* The loop ends once in-flight work has come back and every handle is closed. */
}

void rpc__server_idle(rpc_server_t *srv)
{
    if (srv->stopping && srv->inflight == 0 && !uv_is_closing((uv_handle_t *)&srv->notify_async))
        uv_close((uv_handle_t *)&srv->notify_async, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    begin_shutdown(s->data, signum == SIGTERM ? "TERM" : "INT");
}

/* A half-closed client that has since closed for good: cancel its work. */
static void close_gone_half_closed(rpc_server_t *srv)
{
    for (rpc_conn_t *c = srv->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->read_eof && !c->closing && peer_gone(c)) {
            thaw_debug("rpc", "client_gone", "conn=%llu inflight=%u half_closed=1",
                       (unsigned long long)c->id, c->inflight);
            conn_close(c);
        }
    }
}

/* Every second: leases that ended, half-closed clients that left. */
static void on_lease_timer(uv_timer_t *t)
{
    rpc__sb_expire(t->data);
    close_gone_half_closed(t->data);
}

/* 0 if nothing listens at path (a stale socket may be replaced). */
static int socket_in_use(const char *path)
{
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

static int mkdir_parent(const char *path)
{
    char dir[108];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int rpc_server_new(const rpc_config_t *cfg, pool_t *pool, rpc_server_t **out, thaw_err_t *err)
{
    if (!cfg->socket_path ||
        strlen(cfg->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return thaw_err_set(err, ENAMETOOLONG, "socket path '%s' is too long for a Unix socket",
                            cfg->socket_path ? cfg->socket_path : "");
    rpc_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return thaw_err_set(err, ENOMEM, "out of memory");
    srv->cfg = *cfg;
    rpc_config_t *c = &srv->cfg;
    if (!c->max_message)
        c->max_message = 8u << 20;
    if (!c->max_inflight)
        c->max_inflight = 64;
    if (!c->max_exec_ms)
        c->max_exec_ms = 300000;
    if (!c->default_exec_ms)
        c->default_exec_ms = c->max_exec_ms < 60000 ? c->max_exec_ms : 60000;
    if (!c->max_output)
        c->max_output = 16u << 20;
    if (!c->max_file)
        c->max_file = 4u << 20;
    if (!c->max_lease_s)
        c->max_lease_s = 3600;
    if (!c->threads) {
        /* What libuv will start, read the way it reads it: atoi into an
         * unsigned, 0 meaning 1, capped at 1024 (so a negative is 1024). */
        const char *env = getenv("UV_THREADPOOL_SIZE");
        unsigned v = env ? (unsigned)atoi(env) : 4;
        c->threads = v == 0 ? 1 : v > 1024 ? 1024 : v;
    }
    snprintf(srv->socket_path, sizeof(srv->socket_path), "%s", cfg->socket_path);
    snprintf(srv->store_dir, sizeof(srv->store_dir), "%s", cfg->store_dir ? cfg->store_dir : "");
    snprintf(srv->vm_note, sizeof(srv->vm_note), "%s", cfg->vm_note ? cfg->vm_note : "");
    c->socket_path = srv->socket_path;
    c->store_dir = srv->store_dir;
    c->vm_note = srv->vm_note;
    srv->pool = pool;
    srv->started_ns = thaw_now_ns();
    thaw_hist_init(&srv->run_rtt);
    pthread_mutex_init(&srv->nq_mu, NULL);
    uv_loop_init(&srv->loop);

    int r = mkdir_parent(srv->socket_path);
    if (r < 0) {
        thaw_err_sys(err, -r, "socket %s: create its directory", srv->socket_path);
        goto fail;
    }
    r = socket_in_use(srv->socket_path);
    if (r > 0) {
        thaw_err_set(err, EADDRINUSE, "socket %s: another thawd is listening there",
                     srv->socket_path);
        goto fail;
    }
    unlink(srv->socket_path); /* stale, from a thawd that died */
    uv_pipe_init(&srv->loop, &srv->listener, 0);
    srv->listener.data = srv;
    /* Bind with a umask so the socket is never briefly wider than 0660. */
    mode_t old = umask(0117);
    r = uv_pipe_bind(&srv->listener, srv->socket_path);
    umask(old);
    if (r == 0 && chmod(srv->socket_path, 0660) < 0)
        r = -errno;
    if (r == 0)
        r = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (r < 0) {
        thaw_err_set(err, -r, "socket %s: %s", srv->socket_path, uv_strerror(r));
        uv_close((uv_handle_t *)&srv->listener, NULL);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        goto fail;
    }
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_timer_init(&srv->loop, &srv->lease_timer);
    srv->lease_timer.data = srv;
    uv_timer_start(&srv->lease_timer, on_lease_timer, 1000, 1000);
    uv_async_init(&srv->loop, &srv->notify_async, on_notify);
    srv->notify_async.data = srv;
    thaw_info("rpc", "listening", "socket=%s", srv->socket_path);
    *out = srv;
    return 0;
fail:
    uv_loop_close(&srv->loop);
    pthread_mutex_destroy(&srv->nq_mu);
    free(srv);
    return -err->code;
}

int rpc_server_run(rpc_server_t *srv)
{
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    rpc__notify_drain(srv); /* nothing to deliver to: frees queued notes */
    return 0;
}

void rpc_server_free(rpc_server_t *srv)
{
    if (!srv)
        return;
    if (!srv->stopping) {
        begin_shutdown(srv, "free");
        uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&srv->loop);
    unlink(srv->socket_path);
    pthread_mutex_destroy(&srv->nq_mu);
    rpc__uid_free_all(srv);
    free(srv);
}
