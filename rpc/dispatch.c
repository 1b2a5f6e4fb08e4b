// SPDX-License-Identifier: Apache-2.0
/*
 * JSON-RPC 2.0 on one line: parse, validate the envelope, find the method,
 * and send the reply.  Every malformed request gets its error code and a
 * readable message and leaves the connection as usable as before.  Methods
 * either reply at once (cheap, loop thread) or defer their blocking part to
 * libuv's worker threads through rpc__req_defer.  Two limits hold a client
 * back: --max-inflight requests on one connection (checked here, for every
 * method) and --max-inflight-per-uid deferred requests across all of a uid's
 * connections (checked in rpc__req_defer, so cheap methods always answer).
 */
#include "rpc/rpc-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

static const rpc_method_t methods[] = {
    {"server.info", rpc__m_server_info, false},
    {"server.stats", rpc__m_server_stats, false},
    {"server.metrics", rpc__m_server_metrics, false},
    {"template.create", rpc__m_template_create, true},
    {"template.list", rpc__m_template_list, false},
    {"template.get", rpc__m_template_get, false},
    {"template.delete", rpc__m_template_delete, true},
    {"template.tune", rpc__m_template_tune, true},
    {"pool.configure", rpc__m_pool_configure, true},
    {"pool.prewarm", rpc__m_pool_prewarm, true},
    {"pool.status", rpc__m_pool_status, false},
    {"sandbox.acquire", rpc__m_sandbox_acquire, false},
    {"sandbox.exec", rpc__m_sandbox_exec, false},
    {"sandbox.put_file", rpc__m_sandbox_put_file, false},
    {"sandbox.get_file", rpc__m_sandbox_get_file, false},
    {"sandbox.release", rpc__m_sandbox_release, false},
    {"sandbox.list", rpc__m_sandbox_list, false},
    {"sandbox.run", rpc__m_sandbox_run, false},
};

json_t *rpc__error_obj(json_t *id, int code, const char *msg)
{
    return json_pack("{s:s, s:O?, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                     "error", "code", code, "message", msg);
}

int rpc__req_error(rpc_req_t *req, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(req->emsg, sizeof(req->emsg), fmt, ap);
    va_end(ap);
    req->ecode = code;
    json_decref(req->result);
    req->result = NULL;
    return -1;
}

int rpc__req_thaw_err(rpc_req_t *req, const thaw_err_t *err)
{
    int code;
    switch (err->code) {
    case ENOENT:
        code = RPC_E_NOT_FOUND;
        break;
    case EDQUOT: /* the pool's capacity refusal (pool.h): retry shortly */
        code = RPC_E_CAPACITY;
        break;
    case ENOSPC: /* a full store: waiting does not fix it */
        code = RPC_E_NO_SPACE;
        break;
    case EEXIST:
        code = RPC_E_EXISTS;
        break;
    case EAGAIN:
        code = RPC_E_BUSY;
        break;
    case ETIMEDOUT:
        code = RPC_E_TIMEOUT;
        break;
    case ENOTSUP:
        code = RPC_E_UNAVAILABLE;
        break;
    case EINVAL:
        code = RPC_E_PARAMS;
        break;
    default:
        code = RPC_E_SERVER;
    }
    return rpc__req_error(req, code, "%s", err->msg[0] ? err->msg : strerror(err->code));
}

static void req_free(rpc_req_t *req)
{
    pool_cancel_free(req->cancel);
    json_decref(req->id);
    json_decref(req->params);
    json_decref(req->result);
    free(req);
}

void rpc__req_finish(rpc_req_t *req)
{
    rpc_conn_t *c = req->conn;
    rpc_server_t *srv = req->srv;
    if (req->ecode)
        srv->errors++;
    if (req->id && !c->closing) {
        json_t *reply;
        if (req->ecode)
            reply = rpc__error_obj(req->id, req->ecode, req->emsg);
        else
            reply = json_pack("{s:s, s:O, s:O}", "jsonrpc", "2.0", "id", req->id, "result",
                              req->result ? req->result : json_null());
        if (reply)
            rpc__send(c, reply);
    }
    if (req->ecode)
        thaw_debug("rpc", "error", "conn=%llu method=%s code=%d msg=\"%s\"",
                   (unsigned long long)c->id, req->method, req->ecode, req->emsg);
    c->inflight--;
    srv->inflight--;
    if (req->uid_slot)
        rpc__uid_put(srv, req->uid_slot);
    if (req->cprev)
        req->cprev->cnext = req->cnext;
    else
        c->reqs = req->cnext;
    if (req->cnext)
        req->cnext->cprev = req->cprev;
    req_free(req);
    rpc__conn_request_done(c);
    rpc__conn_unref(c);
    rpc__server_idle(srv);
}

static void work_cb(uv_work_t *w)
{
    rpc_req_t *req = w->data;
    req->work_fn(req);
}

/* The end of deferred work, run or not (status UV_ECANCELED): done, reply. */
static void req_complete(rpc_req_t *req, int status)
{
    /* Notes this request queued must go out before its reply. */
    rpc__notify_drain(req->srv);
    if (status == UV_ECANCELED && !req->ecode && req->srv->stopping)
        rpc__req_error(req, RPC_E_SHUTDOWN, "thawd is shutting down");
    else if (status == UV_ECANCELED && !req->ecode)
        rpc__req_error(req, RPC_E_SERVER, "cancelled: the client disconnected");
    if (req->done_fn)
        req->done_fn(req);
    rpc__req_finish(req);
}

static void req_submit(rpc_req_t *req);

/* Hand waiting work to free worker threads, one uid at a time (uidtable.c). */
static void pump(rpc_server_t *srv)
{
    rpc_req_t *req;
    while (srv->running < srv->cfg.threads && (req = rpc__uid_dequeue(srv)))
        req_submit(req);
}

static void after_work_cb(uv_work_t *w, int status)
{
    rpc_req_t *req = w->data;
    rpc_server_t *srv = req->srv;
    srv->running--;
    req_complete(req, status);
    pump(srv);
}

/* Give req to libuv, which has a thread free for it (running < threads). */
static void req_submit(rpc_req_t *req)
{
    int r = uv_queue_work(&req->srv->loop, &req->work, work_cb, after_work_cb);
    if (r < 0) {
        rpc__req_error(req, RPC_E_INTERNAL, "cannot queue work: %s", uv_strerror(r));
        if (req->done_fn)
            req->done_fn(req);
        rpc__req_finish(req);
        return;
    }
    req->srv->running++;
}

/*
 * Count req against its uid's --max-inflight-per-uid; the count is released
 * in rpc__req_finish, which every request goes through however it ends
 * (done, failed to queue, cancelled by a disconnect or by shutdown).  Returns
 * -1 with the refusal set on req.
 */
static int uid_take(rpc_req_t *req)
{
    rpc_server_t *srv = req->srv;
    uid_t uid = req->conn->uid;
    unsigned cap = srv->cfg.max_inflight_per_uid;
    rpc_uid_t *e = NULL;
    int r = rpc__uid_take(srv, uid, cap, &e);
    if (r == -ENOMEM)
        return rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
    if (r == -EBUSY) {
        srv->uid_refusals++;
        if (!e->warned) {
            /* Once per stretch of that uid's work, not per refused request. */
            e->warned = true;
            thaw_info("rpc", "uid_at_limit", "uid=%d inflight=%u limit=%u conn=%llu method=%s",
                      (int)uid, e->inflight, cap, (unsigned long long)req->conn->id, req->method);
        }
        return rpc__req_error(req, RPC_E_BUSY,
                              "uid %d has %u requests in flight (limit %u, --max-inflight-per-uid)",
                              (int)uid, e->inflight, cap);
    }
    req->uid_slot = e;
    return 0;
}

void rpc__req_defer(rpc_req_t *req, rpc_work_fn work, rpc_done_fn done)
{
    req->work_fn = work;
    req->done_fn = done;
    req->work.data = req;
    /* Refused at once rather than queued: a uid at its cap waits for none
     * of its own work, and nothing queues without bound. */
    if (uid_take(req) < 0) {
        if (done)
            done(req);
        rpc__req_finish(req);
        return;
    }
    rpc_server_t *srv = req->srv;
    if (req->cancellable && pool_cancel_new(&req->cancel) < 0) {
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        if (done)
            done(req);
        rpc__req_finish(req);
        return;
    }
    if (srv->running < srv->cfg.threads && !srv->round_head) {
        req_submit(req);
        return;
    }
    /* Every worker is busy: wait in its uid's queue for a turn. */
    rpc__uid_enqueue(srv, req);
}

void rpc__drop_queued(rpc_server_t *srv)
{
    rpc_req_t *req;
    while ((req = rpc__uid_dequeue(srv)))
        req_complete(req, UV_ECANCELED); /* "thawd is shutting down" once stopping */
}

void rpc__req_defer_cancellable(rpc_req_t *req, rpc_work_fn work, rpc_done_fn done)
{
    req->cancellable = true;
    rpc__req_defer(req, work, done);
}

void rpc__conn_cancel(rpc_conn_t *c)
{
    rpc_server_t *srv = c->srv;
    unsigned n = 0;
    /* First drop work still waiting for a worker, so that no worker freed by
     * the second pass picks one up: from thawd's queues (ended here, which
     * unlinks it from c->reqs), then from libuv's (after_work_cb then sees
     * UV_ECANCELED; for work already running uv_cancel fails with UV_EBUSY).
     * libuv's should hold none, as it is never given more work than it has
     * threads, but an embedder's own use of libuv's pool would change that.
     * Work that is not cancellable (template.create, ...) runs to its end
     * even without a client, in its turn (at shutdown rpc__drop_queued
     * ends it if it has not started). */
    for (rpc_req_t *r = c->reqs, *nx; r; r = nx) {
        nx = r->cnext;
        if (r->cancel && r->queued) {
            rpc__uid_unqueue(srv, r);
            n++;
            req_complete(r, UV_ECANCELED);
        }
    }
    for (rpc_req_t *r = c->reqs; r; r = r->cnext)
        if (r->cancel)
            uv_cancel((uv_req_t *)&r->work);
    /* Then the running ones: the token kills the command and wakes the worker. */
    for (rpc_req_t *r = c->reqs; r; r = r->cnext) {
        if (r->cancel) {
            pool_cancel(r->cancel);
            n++;
        }
    }
    if (n == 0)
        return;
    srv->cancelled += n;
    thaw_info("rpc", "cancel_on_disconnect", "conn=%llu uid=%d requests=%u",
              (unsigned long long)c->id, (int)c->uid, n);
}

/* Root, thawd's own uid, and the configured admin uids/gids. */
static bool is_admin(const rpc_conn_t *c)
{
    const rpc_config_t *cfg = &c->srv->cfg;
    if (c->uid == 0 || c->uid == geteuid())
        return true;
    for (unsigned i = 0; i < cfg->n_admin_uids; i++)
        if (cfg->admin_uids[i] == c->uid)
            return true;
    for (unsigned i = 0; i < cfg->n_admin_gids; i++)
        if (cfg->admin_gids[i] == c->gid)
            return true;
    return false;
}

static const rpc_method_t *find_method(const char *name)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (!strcmp(methods[i].name, name))
            return &methods[i];
    return NULL;
}

/* Reply with an error before a request object exists. */
static void early_error(rpc_conn_t *c, json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void early_error(rpc_conn_t *c, json_t *id, int code, const char *fmt, ...)
{
    char msg[THAW_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->srv->errors++;
    rpc__send(c, rpc__error_obj(id, code, msg));
}

void rpc__handle_line(rpc_conn_t *c, const char *line, size_t len)
{
    rpc_server_t *srv = c->srv;
    /* Blank lines (a client's trailing "\r\n" or keep-alives) are not requests. */
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i == len)
        return;
    srv->requests++;
    json_error_t jerr;
    json_t *msg =
        json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
    if (!msg) {
        early_error(c, NULL, RPC_E_PARSE, "Parse error: %s (at byte %d)", jerr.text, jerr.position);
        return;
    }
    if (json_is_array(msg)) {
        early_error(c, NULL, RPC_E_INVALID_REQUEST,
                    "Invalid Request: batches are not supported; send one object per line");
        json_decref(msg);
        return;
    }
    if (!json_is_object(msg)) {
        early_error(c, NULL, RPC_E_INVALID_REQUEST, "Invalid Request: a request is a JSON object");
        json_decref(msg);
        return;
    }
    json_t *id = json_object_get(msg, "id");
    if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
        early_error(c, NULL, RPC_E_INVALID_REQUEST,
                    "Invalid Request: id must be a string, an integer or null");
        json_decref(msg);
        return;
    }
    json_t *ver = json_object_get(msg, "jsonrpc");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0")) {
        early_error(c, id, RPC_E_INVALID_REQUEST, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
        json_decref(msg);
        return;
    }
    json_t *m = json_object_get(msg, "method");
    if (!json_is_string(m)) {
        early_error(c, id, RPC_E_INVALID_REQUEST, "Invalid Request: \"method\" must be a string");
        json_decref(msg);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach (msg, key, v) {
        if (strcmp(key, "jsonrpc") && strcmp(key, "id") && strcmp(key, "method") &&
            strcmp(key, "params")) {
            early_error(c, id, RPC_E_INVALID_REQUEST, "Invalid Request: unknown member \"%.64s\"",
                        key);
            json_decref(msg);
            return;
        }
    }
    const rpc_method_t *meth = find_method(json_string_value(m));
    if (!meth) {
        early_error(c, id, RPC_E_METHOD, "Method not found: '%.100s'", json_string_value(m));
        json_decref(msg);
        return;
    }
    json_t *params = json_object_get(msg, "params");
    if (params && !json_is_object(params) && !json_is_null(params)) {
        early_error(c, id, RPC_E_PARAMS,
                    "Invalid params: params must be an object of named parameters");
        json_decref(msg);
        return;
    }
    if (meth->admin && !is_admin(c)) {
        early_error(c, id, RPC_E_DENIED,
                    "%s changes templates or pools: uid %d is not an admin (see --admin-uid)",
                    meth->name, (int)c->uid);
        json_decref(msg);
        return;
    }
    if (c->inflight >= srv->cfg.max_inflight) {
        early_error(c, id, RPC_E_BUSY, "too many requests in flight on this connection (limit %u)",
                    srv->cfg.max_inflight);
        json_decref(msg);
        return;
    }
    rpc_req_t *req = calloc(1, sizeof(*req));
    if (!req) {
        early_error(c, id, RPC_E_INTERNAL, "out of memory");
        json_decref(msg);
        return;
    }
    req->conn = c;
    req->srv = srv;
    req->id = id ? json_incref(id) : NULL;
    req->params = params && json_is_object(params) ? json_incref(params) : json_object();
    req->method = meth->name;
    req->t0 = thaw_now_ns();
    json_decref(msg);
    rpc__conn_ref(c);
    c->inflight++;
    srv->inflight++;
    req->cnext = c->reqs;
    if (c->reqs)
        c->reqs->cprev = req;
    c->reqs = req;
    meth->fn(req);
}
