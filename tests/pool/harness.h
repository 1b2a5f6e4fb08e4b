/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives a REAL thawd from a test: start the built binary (path in $THAWD)
 * on a temporary store and socket, talk JSON-RPC to it over the socket, stop
 * it with SIGTERM and check that it exited cleanly.  Shared by tests/pool
 * and tests/rpc; nothing here mocks thawd.
 */
#ifndef THAW_TESTS_HARNESS_H
#define THAW_TESTS_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct th_daemon {
    pid_t pid;
    char dir[256]; /* temporary directory holding everything below */
    char sock[320];
    char store[320];
    char log[320];
} th_daemon_t;

/*
 * Start thawd with --socket/--store in d->dir (created with mkdtemp when
 * empty, reused for a restart) plus extra args (NULL-terminated, may be
 * NULL).  Waits until the socket answers.  Returns 0 or -1 (message printed).
 */
int th_start(th_daemon_t *d, const char *const *extra);
/* SIGTERM, wait (up to 20 s, then SIGKILL): the exit status, -1 if killed. */
int th_stop(th_daemon_t *d);
/* Remove the temporary directory. */
void th_cleanup(th_daemon_t *d);
/* Open descriptors and resident memory (KiB) of the running thawd. */
int th_fd_count(const th_daemon_t *d);
long th_rss_kb(const th_daemon_t *d);
/* Direct children of thawd (the process tier's agents), at most max pids. */
int th_children(const th_daemon_t *d, pid_t *out, int max);
/* Print thawd's log (on a failure). */
void th_dump_log(const th_daemon_t *d);

typedef struct th_conn {
    int fd;
    char *buf;
    size_t len, cap;
    long next_id;
    json_t *notes; /* notifications seen while waiting for replies */
} th_conn_t;

int th_connect(th_conn_t *c, const char *sock);
void th_close(th_conn_t *c);
int th_send_raw(th_conn_t *c, const void *data, size_t len);
/* The next line as JSON (owned), NULL on EOF/timeout/garbage. */
json_t *th_recv(th_conn_t *c, int timeout_ms);
/* Send a request (params stolen, may be NULL) and return the whole reply
 * object (owned); notifications in between go to c->notes. */
json_t *th_call(th_conn_t *c, const char *method, json_t *params);
/* th_call that requires success: returns the result (owned); fails the test otherwise. */
json_t *th_ok(th_conn_t *c, const char *method, json_t *params);
/* The error code of a reply, 0 if it has none. */
int th_code(json_t *reply);
/* The error message of a reply, "" if none. */
const char *th_msg(json_t *reply);

/* Poll template `name`'s pool until pool[key] == want (or timeout): true if reached. */
bool th_wait_pool(th_conn_t *c, const char *name, const char *key, long want, int timeout_ms);
long th_pool_get(th_conn_t *c, const char *name, const char *key);
long th_counter(th_conn_t *c, const char *name, const char *key);

#endif
