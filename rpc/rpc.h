/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rpc/: thawd's JSON-RPC 2.0 server.  One JSON object per line over a Unix
 * stream socket, served by a libuv loop; blocking work (creating sandboxes,
 * exec waits, file transfer) runs on libuv's worker threads, never on the
 * loop thread.  Sandbox ids are unguessable tokens bound to the peer's uid
 * (SO_PEERCRED); every request is held to the limits below.
 *
 * Error codes: the JSON-RPC ones (-32700 parse error, -32600 invalid
 * request, -32601 method not found, -32602 invalid params, -32603 internal)
 * and thawd's own, listed in docs/service.md (RPC_E_*).
 */
#ifndef THAW_RPC_RPC_H
#define THAW_RPC_RPC_H

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "pool/pool.h"

/* thawd's own error codes (JSON-RPC reserves -32000..-32099 for servers). */
enum rpc_error_code {
    RPC_E_PARSE = -32700,
    RPC_E_INVALID_REQUEST = -32600,
    RPC_E_METHOD = -32601,
    RPC_E_PARAMS = -32602,
    RPC_E_INTERNAL = -32603,
    RPC_E_SERVER = -32000,      /* the operation failed; the message says why */
    RPC_E_NOT_FOUND = -32001,   /* no such template or sandbox (for this uid) */
    RPC_E_CAPACITY = -32002,    /* memory budget, global cap or max_total reached: retry later */
    RPC_E_EXISTS = -32003,      /* a template of that name exists */
    RPC_E_BUSY = -32004,        /* too many in flight (connection, uid); template not ready */
    RPC_E_TIMEOUT = -32005,     /* prewarm wait ran out */
    RPC_E_UNAVAILABLE = -32006, /* the tier cannot run here */
    RPC_E_DENIED = -32007,      /* this uid/gid may not use thawd */
    RPC_E_LIMIT = -32008,       /* a request exceeds a server limit */
    RPC_E_SHUTDOWN = -32009,    /* thawd is shutting down */
    RPC_E_NO_SPACE = -32010,    /* storage full: a disk thawd writes (the store) has no room */
};

#define RPC_MAX_ALLOWED 32

typedef struct rpc_config {
    const char *socket_path;
    uint32_t max_message;  /* bytes per request line; 0 = 8 MiB */
    unsigned max_inflight; /* requests per connection; 0 = 64 */
    /*
     * Blocking requests (those that hold or wait for a worker thread) one uid
     * may have in flight across all its connections; 0 = no cap.  thawd's
     * default is three quarters of its worker threads (at least 1): no uid
     * can take every thread, yet one uid alone still gets most of them.
     */
    unsigned max_inflight_per_uid;
    /*
     * libuv's worker threads (UV_THREADPOOL_SIZE, which the caller sets
     * before the loop runs); 0 = read UV_THREADPOOL_SIZE, else libuv's 4.
     * thawd hands a worker at most this many requests at once and keeps the
     * rest in per-uid queues, served one uid at a time (uidtable.c), so a
     * uid that queued a lot does not make every other uid wait behind it.
     */
    unsigned threads;
    uint32_t max_exec_ms;     /* cap on an exec's timeout_ms; 0 = 300000 */
    uint32_t default_exec_ms; /* exec timeout when none is given; 0 = 60000 */
    uint32_t max_output;      /* cap on an exec's output bytes; 0 = 16 MiB */
    uint32_t max_file;        /* cap on put/get file bytes; 0 = 4 MiB */
    uint32_t max_lease_s;     /* cap on acquire lease; 0 = 3600 */
    uid_t allowed_uids[RPC_MAX_ALLOWED];
    unsigned n_allowed_uids; /* 0 with 0 gids: everyone who can open the socket */
    gid_t allowed_gids[RPC_MAX_ALLOWED];
    unsigned n_allowed_gids;
    /*
     * Who may change templates and pools (template.create/delete,
     * pool.configure/prewarm): root, thawd's own uid, and these.
     */
    uid_t admin_uids[RPC_MAX_ALLOWED];
    unsigned n_admin_uids;
    gid_t admin_gids[RPC_MAX_ALLOWED];
    unsigned n_admin_gids;
    const char *store_dir; /* for server.info */
    const char *vm_note;   /* extra words on the vm tier for server.info, or NULL */
} rpc_config_t;

typedef struct rpc_server rpc_server_t;

/*
 * Bind the socket (mode 0660; a stale socket left by a dead thawd is
 * replaced, a live one is an error) and set up the loop.  pool is borrowed.
 */
int rpc_server_new(const rpc_config_t *cfg, pool_t *pool, rpc_server_t **out, thaw_err_t *err);

/*
 * Serve until SIGTERM or SIGINT: then stop accepting, close connections,
 * release every sandbox and return 0 once in-flight requests have finished.
 */
int rpc_server_run(rpc_server_t *srv);

/*
 * Base64 (RFC 4648, padded) as the protocol uses it for binary data
 * ("stdout_base64", "data_base64"); shared with clients such as the CLI.
 * encode returns a malloc'ed NUL-terminated string; decode returns 0 with a
 * malloc'ed buffer or -EINVAL for malformed input.
 */
char *rpc_base64_encode(const void *data, size_t len, size_t *outlen);
int rpc_base64_decode(const char *s, size_t slen, void **out, size_t *outlen);

/* Free the server (after run returned); removes the socket file. */
void rpc_server_free(rpc_server_t *srv);

#endif
