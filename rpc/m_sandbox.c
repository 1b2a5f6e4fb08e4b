// SPDX-License-Identifier: Apache-2.0
/*
 * sandbox.*: acquire, exec, put_file, get_file, release, list, and run (the
 * hot path: acquire + exec + release in one round trip).  The blocking part
 * of each runs on a worker thread; the sandbox table is only touched on the
 * loop thread, before (lookup, busy++) and after (busy--, insert) the work.
 *
 * Output is binary-safe: "stdout" holds text when the bytes are valid UTF-8,
 * otherwise "stdout_base64" holds them encoded ("encoding": "base64" asks
 * for base64 always).  With "stream": true, chunks also arrive as
 * "sandbox.output" notifications carrying the request id while the command
 * runs.
 *
 * All of them are cancelled when their client disconnects (dispatch.c): a
 * running command is killed, queued work is dropped, and each done callback
 * then releases what its request held, as after any failure.
 */
#include "rpc/rpc-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct sb_state {
    rpc_sb_t *e; /* the table entry (busy held), NULL for run/acquire */
    pool_sandbox_t *sb;
    char tpl[POOL_NAME_MAX];
    uint64_t lease_s;
    bool hit, stream, b64, exec_failed;
    const char **argv, **env;
    const char *cwd, *path;
    void *data; /* stdin or file bytes */
    size_t len;
    uint64_t timeout_ms, max_output, mode, max_bytes;
    pool_exec_result_t res;
    thaw_err_t err;
    int rc;
    uint64_t acquire_ns;
} sb_state_t;

static void state_free(sb_state_t *s)
{
    if (!s)
        return;
    free(s->argv);
    free(s->env);
    free(s->data);
    pool_exec_result_free(&s->res);
    free(s);
}

static sb_state_t *state_new(rpc_req_t *req)
{
    sb_state_t *s = calloc(1, sizeof(*s));
    if (!s)
        rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
    return s;
}

/* Look up params.id for the caller; fails the request with "not found". */
static rpc_sb_t *lookup(rpc_req_t *req)
{
    const char *id = NULL;
    if (rpc__param_str(req, "id", true, &id) < 0)
        return NULL;
    rpc_sb_t *e = rpc__sb_find(req->srv, id, req->conn->uid);
    if (!e)
        rpc__req_error(req, RPC_E_NOT_FOUND, "sandbox '%.64s' not found", id);
    return e;
}

/* ---- acquire ---- */

static void acquire_work(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    s->rc = pool_acquire(req->srv->pool, s->tpl, &s->sb, &s->hit, &s->err);
}

static void acquire_done(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (s->rc < 0) {
        rpc__req_thaw_err(req, &s->err);
    } else if (!s->sb) {
        /* Cancelled before it ran: req->ecode says so. */
    } else if (req->conn->closing || req->srv->stopping) {
        /* Nobody to hand it to: it never existed for anyone. */
        pool_release(req->srv->pool, s->sb);
    } else {
        rpc_sb_t *e = rpc__sb_add(req->srv, req->conn, s->sb, s->lease_s, s->hit);
        if (!e) {
            pool_release(req->srv->pool, s->sb);
            rpc__req_error(req, RPC_E_INTERNAL, "cannot allocate a sandbox id");
        } else {
            req->result = json_pack("{s:s, s:s, s:b, s:I, s:I}", "id", e->id, "template", s->tpl,
                                    "hit", s->hit, "lease_s", (json_int_t)s->lease_s, "acquire_us",
                                    (json_int_t)((thaw_now_ns() - req->t0) / 1000));
        }
    }
    state_free(s);
    req->state = NULL;
}

void rpc__m_sandbox_acquire(rpc_req_t *req)
{
    static const char *const allowed[] = {"template", "lease_s", NULL};
    sb_state_t *s = NULL;
    const char *tpl = "default";
    if (rpc__params_only(req, allowed) == 0 && rpc__param_str(req, "template", false, &tpl) == 0 &&
        (s = state_new(req))) {
        if (rpc__param_uint(req, "lease_s", false, req->srv->cfg.max_lease_s, &s->lease_s) < 0) {
            state_free(s);
            s = NULL;
        } else {
            snprintf(s->tpl, sizeof(s->tpl), "%s", tpl);
        }
    }
    if (!s) {
        rpc__req_finish(req);
        return;
    }
    req->state = s;
    rpc__req_defer_cancellable(req, acquire_work, acquire_done);
}

/* ---- exec and run ---- */

static void on_output(void *ud, int stream, const void *data, size_t len)
{
    rpc_req_t *req = ud;
    sb_state_t *s = req->state;
    json_t *p = json_pack("{s:s}", "stream", stream == 2 ? "stderr" : "stdout");
    if (!p)
        return;
    if (req->id)
        json_object_set(p, "request", req->id);
    rpc__set_bytes(p, "data", data, len, s->b64);
    rpc__notify(req, "sandbox.output", p);
}

/* Parse the exec parameters shared by sandbox.exec and sandbox.run. */
static int parse_exec(rpc_req_t *req, sb_state_t *s)
{
    const rpc_config_t *cfg = &req->srv->cfg;
    const char *enc = NULL;
    bool given = false;
    s->timeout_ms = cfg->default_exec_ms;
    s->max_output = cfg->max_output < (1u << 20) ? cfg->max_output : (1u << 20);
    if (rpc__param_strv(req, "argv", true, &s->argv) < 0 ||
        rpc__param_strv(req, "env", false, &s->env) < 0 ||
        rpc__param_str(req, "cwd", false, &s->cwd) < 0 ||
        rpc__param_bytes(req, "stdin", cfg->max_file, &s->data, &s->len, &given) < 0 ||
        rpc__param_bool(req, "stream", &s->stream) < 0 ||
        rpc__param_str(req, "encoding", false, &enc) < 0)
        return -1;
    json_t *t = json_object_get(req->params, "timeout_ms");
    if (json_is_integer(t) &&
        (json_integer_value(t) < 1 || (uint64_t)json_integer_value(t) > cfg->max_exec_ms))
        return rpc__req_error(req, RPC_E_LIMIT,
                              "timeout_ms %lld is outside the server's limit of 1..%u ms",
                              (long long)json_integer_value(t), cfg->max_exec_ms);
    if (rpc__param_uint(req, "timeout_ms", false, cfg->max_exec_ms, &s->timeout_ms) < 0)
        return -1;
    json_t *m = json_object_get(req->params, "max_output");
    if (json_is_integer(m) &&
        (json_integer_value(m) < 0 || (uint64_t)json_integer_value(m) > cfg->max_output))
        return rpc__req_error(req, RPC_E_LIMIT,
                              "max_output %lld exceeds the server's limit of %u bytes",
                              (long long)json_integer_value(m), cfg->max_output);
    if (rpc__param_uint(req, "max_output", false, cfg->max_output, &s->max_output) < 0)
        return -1;
    if (enc && strcmp(enc, "base64") && strcmp(enc, "auto"))
        return rpc__req_error(req, RPC_E_PARAMS,
                              "Invalid params: 'encoding' must be \"auto\" or \"base64\"");
    s->b64 = enc && !strcmp(enc, "base64");
    return 0;
}

static void do_exec(rpc_req_t *req, sb_state_t *s)
{
    pool_exec_req_t er = {
        .argv = s->argv,
        .env = s->env,
        .cwd = s->cwd,
        .stdin_data = s->data,
        .stdin_len = s->len,
        .timeout_ms = (uint32_t)s->timeout_ms,
        .max_output = (uint32_t)s->max_output,
        .on_output = s->stream ? on_output : NULL,
        .ud = req,
        .cancel = req->cancel,
    };
    s->rc = pool_exec(req->srv->pool, s->sb, &er, &s->res, &s->err);
}

static json_t *exec_result(sb_state_t *s)
{
    json_t *o = json_pack("{s:i, s:i, s:b, s:b, s:I}", "exit_code", s->res.exit_code, "signal",
                          s->res.signal, "timed_out", s->res.timed_out, "truncated",
                          s->res.truncated, "duration_us", (json_int_t)(s->res.duration_ns / 1000));
    if (!o)
        return NULL;
    rpc__set_bytes(o, "stdout", s->res.out, s->res.out_len, s->b64);
    rpc__set_bytes(o, "stderr", s->res.err_out, s->res.err_len, s->b64);
    return o;
}

static void exec_work(rpc_req_t *req)
{
    do_exec(req, req->state);
}

/*
 * A failure inside the sandbox (command missing, file absent, agent gone) is
 * a server error with the agent's message: "not found" (-32001) is kept for
 * templates and sandboxes, so a client can tell "no such sandbox" apart.
 */
static void sandbox_error(rpc_req_t *req, const thaw_err_t *err)
{
    rpc__req_error(req, RPC_E_SERVER, "%s", err->msg);
}

static void exec_done(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (s->rc < 0)
        sandbox_error(req, &s->err);
    else if (!req->ecode)
        req->result = exec_result(s);
    rpc__sb_put(req->srv, s->e);
    state_free(s);
    req->state = NULL;
}

/*
 * Run work on the held sandbox e on a worker thread, or answer at once when
 * the params did not check out (s is NULL: the error is already set).  The
 * sandbox stays busy until the work is done, so a release that arrives
 * meanwhile is carried out afterwards (sbtable.c).
 */
static void run_on_sandbox(rpc_req_t *req, sb_state_t *s, rpc_sb_t *e, rpc_work_fn work,
                           rpc_done_fn done)
{
    if (!s) {
        rpc__req_finish(req);
        return;
    }
    s->e = e;
    s->sb = e->sb;
    e->busy++;
    req->state = s;
    rpc__req_defer_cancellable(req, work, done);
}

void rpc__m_sandbox_exec(rpc_req_t *req)
{
    static const char *const allowed[] = {"id",     "argv",         "env",        "cwd",
                                          "stdin",  "stdin_base64", "timeout_ms", "max_output",
                                          "stream", "encoding",     NULL};
    sb_state_t *s = NULL;
    rpc_sb_t *e = NULL;
    if (rpc__params_only(req, allowed) == 0 && (e = lookup(req)) && (s = state_new(req)) &&
        parse_exec(req, s) < 0) {
        state_free(s);
        s = NULL;
    }
    run_on_sandbox(req, s, e, exec_work, exec_done);
}

static void run_work(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    uint64_t t0 = thaw_now_ns();
    s->rc = pool_acquire(req->srv->pool, s->tpl, &s->sb, &s->hit, &s->err);
    s->acquire_ns = thaw_now_ns() - t0;
    if (s->rc < 0)
        return;
    if (pool_cancelled(req->cancel)) {
        /* The client left during a (miss) acquire: run nothing. */
        s->rc = thaw_err_set(&s->err, ECANCELED, "cancelled: the client disconnected");
        s->exec_failed = true;
        pool_release(req->srv->pool, s->sb);
        s->sb = NULL;
        return;
    }
    do_exec(req, s);
    s->exec_failed = s->rc < 0;
    pool_release(req->srv->pool, s->sb); /* never reused */
    s->sb = NULL;
}

static void run_done(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (s->rc < 0 && s->exec_failed) {
        sandbox_error(req, &s->err);
    } else if (s->rc < 0) {
        rpc__req_thaw_err(req, &s->err);
    } else if (!req->ecode) {
        req->result = exec_result(s);
        json_object_set_new(req->result, "hit", json_boolean(s->hit));
        json_object_set_new(req->result, "acquire_us",
                            json_integer((json_int_t)(s->acquire_ns / 1000)));
        json_object_set_new(req->result, "template", json_string(s->tpl));
        thaw_hist_add(&req->srv->run_rtt, thaw_now_ns() - req->t0);
    }
    state_free(s);
    req->state = NULL;
}

void rpc__m_sandbox_run(rpc_req_t *req)
{
    static const char *const allowed[] = {"template", "argv",         "env",        "cwd",
                                          "stdin",    "stdin_base64", "timeout_ms", "max_output",
                                          "stream",   "encoding",     NULL};
    sb_state_t *s = NULL;
    const char *tpl = "default";
    if (rpc__params_only(req, allowed) == 0 && rpc__param_str(req, "template", false, &tpl) == 0 &&
        (s = state_new(req)) && parse_exec(req, s) < 0) {
        state_free(s);
        s = NULL;
    }
    if (!s) {
        rpc__req_finish(req);
        return;
    }
    snprintf(s->tpl, sizeof(s->tpl), "%s", tpl);
    req->state = s;
    rpc__req_defer_cancellable(req, run_work, run_done);
}

/* ---- files ---- */

/*
 * A transfer is one agent round trip per 64 KiB chunk, bounded by the pool's
 * agent call timeout, so one already under way is let finish; a cancel only
 * stops one that has not started.
 */
static bool cancelled_before(rpc_req_t *req, sb_state_t *s)
{
    if (!pool_cancelled(req->cancel))
        return false;
    s->rc = thaw_err_set(&s->err, ECANCELED, "cancelled: the client disconnected");
    return true;
}

static void put_work(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (cancelled_before(req, s))
        return;
    s->rc =
        pool_put_file(req->srv->pool, s->sb, s->path, (uint32_t)s->mode, s->data, s->len, &s->err);
}

static void put_done(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (s->rc < 0)
        sandbox_error(req, &s->err);
    else if (!req->ecode)
        req->result = json_pack("{s:s, s:I}", "path", s->path, "bytes", (json_int_t)s->len);
    rpc__sb_put(req->srv, s->e);
    state_free(s);
    req->state = NULL;
}

void rpc__m_sandbox_put_file(rpc_req_t *req)
{
    static const char *const allowed[] = {"id", "path", "data", "data_base64", "mode", NULL};
    sb_state_t *s = NULL;
    rpc_sb_t *e = NULL;
    bool given = false;
    if (rpc__params_only(req, allowed) == 0 && (e = lookup(req)) && (s = state_new(req))) {
        s->mode = 0644;
        if (rpc__param_str(req, "path", true, &s->path) < 0 ||
            rpc__param_uint(req, "mode", false, 07777, &s->mode) < 0 ||
            rpc__param_bytes(req, "data", req->srv->cfg.max_file, &s->data, &s->len, &given) < 0) {
            state_free(s);
            s = NULL;
        } else if (!given) {
            rpc__req_error(req, RPC_E_PARAMS,
                           "Invalid params: 'data' or 'data_base64' is required");
            state_free(s);
            s = NULL;
        }
    }
    run_on_sandbox(req, s, e, put_work, put_done);
}

static void get_work(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (cancelled_before(req, s))
        return;
    s->rc = pool_get_file(req->srv->pool, s->sb, s->path, s->max_bytes, &s->data, &s->len, &s->err);
}

static void get_done(rpc_req_t *req)
{
    sb_state_t *s = req->state;
    if (s->rc < 0) {
        sandbox_error(req, &s->err);
    } else if (!req->ecode) {
        req->result = json_pack("{s:s, s:I}", "path", s->path, "bytes", (json_int_t)s->len);
        rpc__set_bytes(req->result, "data", s->data, s->len, s->b64);
    }
    rpc__sb_put(req->srv, s->e);
    state_free(s);
    req->state = NULL;
}

void rpc__m_sandbox_get_file(rpc_req_t *req)
{
    static const char *const allowed[] = {"id", "path", "max_bytes", "encoding", NULL};
    sb_state_t *s = NULL;
    rpc_sb_t *e = NULL;
    const char *enc = NULL;
    if (rpc__params_only(req, allowed) == 0 && (e = lookup(req)) && (s = state_new(req))) {
        s->max_bytes = req->srv->cfg.max_file;
        if (rpc__param_str(req, "path", true, &s->path) < 0 ||
            rpc__param_uint(req, "max_bytes", false, req->srv->cfg.max_file, &s->max_bytes) < 0 ||
            rpc__param_str(req, "encoding", false, &enc) < 0) {
            state_free(s);
            s = NULL;
        } else {
            s->b64 = enc && !strcmp(enc, "base64");
        }
    }
    run_on_sandbox(req, s, e, get_work, get_done);
}

/* ---- release and list (loop thread: cheap) ---- */

void rpc__m_sandbox_release(rpc_req_t *req)
{
    static const char *const allowed[] = {"id", NULL};
    rpc_sb_t *e = NULL;
    if (rpc__params_only(req, allowed) == 0 && (e = lookup(req))) {
        req->result = json_pack("{s:s, s:b}", "id", e->id, "released", 1);
        rpc__sb_release(req->srv, e);
    }
    rpc__req_finish(req);
}

typedef struct list_ctx {
    json_t *arr;
    uid_t uid;
    uint64_t now;
} list_ctx_t;

static void list_one(rpc_sb_t *e, void *ud)
{
    list_ctx_t *l = ud;
    if (e->uid != l->uid || e->released)
        return;
    json_t *o = json_pack("{s:s, s:s, s:b, s:I, s:b}", "id", e->id, "template",
                          pool_sandbox_template(e->sb), "hit", e->hit, "age_ms",
                          (json_int_t)((l->now - e->acquired_ns) / 1000000), "busy", e->busy > 0);
    if (e->lease_until)
        json_object_set_new(
            o, "lease_left_ms",
            json_integer(
                (json_int_t)(e->lease_until > l->now ? (e->lease_until - l->now) / 1000000 : 0)));
    json_array_append_new(l->arr, o);
}

void rpc__m_sandbox_list(rpc_req_t *req)
{
    static const char *const allowed[] = {NULL};
    if (rpc__params_only(req, allowed) == 0) {
        list_ctx_t l = {json_array(), req->conn->uid, thaw_now_ns()};
        rpc__sb_foreach(req->srv, list_one, &l);
        req->result = json_pack("{s:o}", "sandboxes", l.arr);
    }
    rpc__req_finish(req);
}
