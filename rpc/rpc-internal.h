/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rpc/'s own structures.  Threading rule: connections, the sandbox table and
 * every JSON value that outlives a request are touched only on the loop
 * thread.  A worker thread gets a request's parsed parameters (read-only)
 * and fills its result; the one cross-thread path is the notification queue
 * (streamed output, progress), guarded by its mutex and drained on the loop.
 *
 * Cancellation: work that uses a sandbox (sandbox.*) carries a pool cancel
 * token.  When its connection closes (the client is gone) the loop thread
 * cancels the token, which kills a running command through the agent, and
 * drops work still waiting for a worker thread (from its uid's queue, or
 * uv_cancel() from libuv's).  Either way the request ends through the usual
 * done/finish path, which releases what it holds; its reply is dropped since
 * the connection is closing.
 */
#ifndef THAW_RPC_INTERNAL_H
#define THAW_RPC_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "common/hist.h"
#include "rpc/rpc.h"

typedef struct rpc_conn rpc_conn_t;
typedef struct rpc_req rpc_req_t;
typedef struct rpc_sb rpc_sb_t;

struct rpc_conn {
    uv_pipe_t pipe;
    rpc_server_t *srv;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    char *buf; /* bytes of the line being received */
    size_t len, cap;
    bool discarding; /* inside an oversized line: drop bytes to the next newline */
    bool closing;
    bool read_eof; /* the client half-closed: answer what is in flight, then close */
    bool shutting; /* close-after-flush under way */
    unsigned inflight;
    rpc_req_t *reqs; /* those in flight, linked through rpc_req.cprev/cnext */
    unsigned refs;   /* the handle's own + one per request in flight */
    uint64_t id;     /* for logs */
    rpc_conn_t *prev, *next;
};

/* A sandbox handed to a client: the table's entry. */
struct rpc_sb {
    char id[40];          /* "sb-" + 32 hex digits from getrandom */
    uid_t uid;            /* only this uid sees it */
    rpc_conn_t *conn;     /* released when it closes, unless leased */
    uint64_t lease_until; /* ns, 0 = tied to the connection */
    pool_sandbox_t *sb;
    unsigned busy; /* requests using sb right now */
    bool released; /* release once busy drops to 0 */
    bool hit;
    uint64_t acquired_ns;
    rpc_sb_t *hnext;
};

#define RPC_SB_BUCKETS 1024

/*
 * One uid's blocking requests in flight (uidtable.c), across all its
 * connections: the count --max-inflight-per-uid caps.  An entry exists only
 * while its count is above zero.
 */
typedef struct rpc_uid {
    uid_t uid;
    unsigned inflight; /* queued ones included */
    bool warned;       /* a refusal was logged since uid last had nothing in flight */
    struct rpc_uid *next;
    /* Its requests waiting for a worker thread, oldest first, and its place
     * in the server's round of uids with waiting work (while qhead is set). */
    rpc_req_t *qhead, *qtail;
    struct rpc_uid *rnext;
} rpc_uid_t;

#define RPC_UID_BUCKETS 64

struct rpc_server {
    uv_loop_t loop;
    uv_pipe_t listener;
    uv_signal_t sigterm, sigint;
    uv_timer_t lease_timer;
    uv_async_t notify_async;
    rpc_config_t cfg;
    char socket_path[108];
    char store_dir[1024];
    char vm_note[256];
    pool_t *pool;
    bool stopping;
    uint64_t started_ns;
    uint64_t next_conn_id;
    rpc_conn_t *conns;
    unsigned nconns;
    unsigned inflight; /* all connections */

    rpc_sb_t *sbs[RPC_SB_BUCKETS];
    unsigned nsbs;

    rpc_uid_t *uids[RPC_UID_BUCKETS]; /* blocking requests in flight per uid */
    /* Deferred work: how much a worker thread holds (at most cfg.threads),
     * and the round of uids whose requests wait for one (uidtable.c). */
    unsigned running, queued;
    rpc_uid_t *round_head, *round_tail;

    pthread_mutex_t nq_mu; /* the notification queue, filled by worker threads */
    struct rpc_note *nq_head, *nq_tail;

    /* Server-level statistics (loop thread only). */
    thaw_hist_t run_rtt; /* sandbox.run: request parsed to reply queued, ns */
    uint64_t requests, errors, connections_total, bytes_in, bytes_out;
    uint64_t cancelled;    /* requests cancelled because their client went away */
    uint64_t uid_refusals; /* blocking requests refused by --max-inflight-per-uid */
    uint64_t queued_total; /* blocking requests that waited for a worker thread */
};

typedef void (*rpc_work_fn)(rpc_req_t *req);
typedef void (*rpc_done_fn)(rpc_req_t *req);

struct rpc_req {
    rpc_conn_t *conn;
    rpc_server_t *srv;
    json_t *id;     /* NULL for a notification (no reply) */
    json_t *params; /* an object, never NULL */
    const char *method;
    uint64_t t0;
    uv_work_t work;
    rpc_work_fn work_fn; /* on a worker thread */
    rpc_done_fn done_fn; /* on the loop thread, after work_fn; may be NULL */
    /* The outcome: a result, or an error code and message. */
    json_t *result;
    int ecode;
    char emsg[THAW_ERR_MSG_MAX];
    void *state;           /* per-method data */
    bool cancellable;      /* uses a sandbox: cancelled when the client goes */
    pool_cancel_t *cancel; /* its token, made when the work is queued */
    rpc_uid_t *uid_slot;   /* counted against its uid's cap while set (deferred work) */
    bool queued;           /* waiting in its uid's queue for a worker thread */
    rpc_req_t *qnext;      /* in that queue */
    rpc_req_t *cprev, *cnext;
};

/* server.c */
void rpc__conn_ref(rpc_conn_t *c);
void rpc__conn_unref(rpc_conn_t *c);
/* A request of c finished: a half-closed connection with nothing left in
 * flight is closed once its replies are flushed. */
void rpc__conn_request_done(rpc_conn_t *c);
/* Queue a line (a JSON value serialised + '\n') to a connection; steals v. */
void rpc__send(rpc_conn_t *c, json_t *v);
/* From any thread: queue a notification to the request's connection. */
void rpc__notify(rpc_req_t *req, const char *method, json_t *params);
/* Loop thread: deliver queued notifications now. */
void rpc__notify_drain(rpc_server_t *srv);
/* Loop thread: during shutdown, close what waited for the last request. */
void rpc__server_idle(rpc_server_t *srv);

/* dispatch.c */
void rpc__handle_line(rpc_conn_t *c, const char *line, size_t len);
/* Reply to a request (result or error) and free it. */
void rpc__req_finish(rpc_req_t *req);
/*
 * Run work on a worker thread, then done and the reply on the loop.  done
 * also runs when the work never did (cancelled while queued, or it could not
 * be queued): req->ecode is set then, and done must only release what the
 * request holds.
 */
void rpc__req_defer(rpc_req_t *req, rpc_work_fn work, rpc_done_fn done);
/* rpc__req_defer for work on a sandbox: it gets req->cancel (pool_exec_req_t.cancel)
 * and is cancelled when the connection closes. */
void rpc__req_defer_cancellable(rpc_req_t *req, rpc_work_fn work, rpc_done_fn done);
/* Loop thread: the connection is closing; cancel its cancellable requests. */
void rpc__conn_cancel(rpc_conn_t *c);
/* Loop thread, at shutdown: end every request still waiting for a worker
 * (admin work that never started; its client is gone too) without running it. */
void rpc__drop_queued(rpc_server_t *srv);
int rpc__req_error(rpc_req_t *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Map a pool error (errno + message) to an RPC error on req: EDQUOT is the
 * pool's capacity refusal (RPC_E_CAPACITY), ENOSPC a full disk
 * (RPC_E_NO_SPACE). */
int rpc__req_thaw_err(rpc_req_t *req, const thaw_err_t *err);
/* An error line with a null or given id (before a request exists). */
json_t *rpc__error_obj(json_t *id, int code, const char *msg);

/*
 * uidtable.c (loop thread only): blocking requests in flight per uid.
 * rpc__uid_take counts one more request for uid and returns 0 with its
 * entry in *out; -EBUSY (nothing counted, *out the entry, whose inflight is
 * at the cap) when uid already has `cap` in flight (cap 0 = no cap); -ENOMEM.
 * rpc__uid_put undoes one take.  O(1): a small hash of the uids that have
 * work in flight.
 */
int rpc__uid_take(rpc_server_t *srv, uid_t uid, unsigned cap, rpc_uid_t **out);
void rpc__uid_put(rpc_server_t *srv, rpc_uid_t *e);
/* What uid has in flight now (0 if nothing). */
unsigned rpc__uid_inflight(const rpc_server_t *srv, uid_t uid);
/*
 * The wait for a worker thread: rpc__uid_enqueue puts req (counted, so
 * req->uid_slot is set) at the end of its uid's queue; rpc__uid_dequeue
 * takes the oldest request of the uid whose turn it is and moves that uid to
 * the end of the round, so waiting uids are served one request each in turn
 * (NULL when nothing waits); rpc__uid_unqueue takes a queued req out (its
 * client left).  They keep srv->queued and srv->queued_total.
 */
void rpc__uid_enqueue(rpc_server_t *srv, rpc_req_t *req);
rpc_req_t *rpc__uid_dequeue(rpc_server_t *srv);
void rpc__uid_unqueue(rpc_server_t *srv, rpc_req_t *req);
/* At rpc_server_free: drop what is left (nothing once every request ended). */
void rpc__uid_free_all(rpc_server_t *srv);

/* params.c: typed access to req->params; each fails with -32602 and a message. */
int rpc__params_only(rpc_req_t *req, const char *const *allowed);
int rpc__param_str(rpc_req_t *req, const char *key, bool required, const char **out);
int rpc__param_uint(rpc_req_t *req, const char *key, bool required, uint64_t max, uint64_t *out);
int rpc__param_bool(rpc_req_t *req, const char *key, bool *out);
/* An array of strings as a NULL-terminated vector (pointers into params). */
int rpc__param_strv(rpc_req_t *req, const char *key, bool required, const char ***out);
/* "key" (UTF-8 text) or "key_base64": bytes, malloc'ed copy. */
int rpc__param_bytes(rpc_req_t *req, const char *key, size_t max, void **data, size_t *len,
                     bool *given);
/* Set "key" to the bytes as a string if valid UTF-8 (unless force_b64), else "key_base64". */
void rpc__set_bytes(json_t *obj, const char *key, const void *data, size_t len, bool force_b64);

/* sbtable.c (loop thread only) */
rpc_sb_t *rpc__sb_add(rpc_server_t *srv, rpc_conn_t *c, pool_sandbox_t *sb, uint64_t lease_s,
                      bool hit);
/* The caller's sandbox, or NULL for a missing id or another uid's. */
rpc_sb_t *rpc__sb_find(rpc_server_t *srv, const char *id, uid_t uid);
/* Mark released; the pool release happens once no request uses it. */
void rpc__sb_release(rpc_server_t *srv, rpc_sb_t *e);
/* A request stops using e (busy--); releases if marked. */
void rpc__sb_put(rpc_server_t *srv, rpc_sb_t *e);
/* The connection closed: release its unleased sandboxes, orphan the leased ones. */
void rpc__sb_conn_closed(rpc_server_t *srv, rpc_conn_t *c);
void rpc__sb_expire(rpc_server_t *srv);
void rpc__sb_release_all(rpc_server_t *srv);
/* Iterate: calls fn for each entry. */
void rpc__sb_foreach(rpc_server_t *srv, void (*fn)(rpc_sb_t *e, void *ud), void *ud);

/* Method handlers: m_*.c.  Each validates params and replies (or defers). */
typedef struct rpc_method {
    const char *name;
    void (*fn)(rpc_req_t *req);
    bool admin; /* changes templates or pools: admins only */
} rpc_method_t;
void rpc__m_server_info(rpc_req_t *req);
void rpc__m_server_stats(rpc_req_t *req);
void rpc__m_server_metrics(rpc_req_t *req);
void rpc__m_template_create(rpc_req_t *req);
void rpc__m_template_list(rpc_req_t *req);
void rpc__m_template_get(rpc_req_t *req);
void rpc__m_template_delete(rpc_req_t *req);
void rpc__m_template_tune(rpc_req_t *req);
void rpc__m_pool_configure(rpc_req_t *req);
void rpc__m_pool_prewarm(rpc_req_t *req);
void rpc__m_pool_status(rpc_req_t *req);
void rpc__m_sandbox_acquire(rpc_req_t *req);
void rpc__m_sandbox_exec(rpc_req_t *req);
void rpc__m_sandbox_put_file(rpc_req_t *req);
void rpc__m_sandbox_get_file(rpc_req_t *req);
void rpc__m_sandbox_release(rpc_req_t *req);
void rpc__m_sandbox_list(rpc_req_t *req);
void rpc__m_sandbox_run(rpc_req_t *req);

/* m_template.c: a template's definition and pool status as JSON. */
json_t *rpc__tpl_json(const pool_tpl_status_t *st, bool with_hist);
/* From any thread: a "template.progress" notification for template tpl
 * (pool_progress_fn's stage and detail, detail may be NULL). */
void rpc__tpl_progress(rpc_req_t *req, const char *tpl, const char *stage, const char *detail);
json_t *rpc__hist_json(const thaw_hist_t *h);

#endif
