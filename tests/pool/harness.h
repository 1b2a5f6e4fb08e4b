/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives a REAL thawd from a test: start the built binary (path in $THAWD)
 * on a temporary store and socket, talk JSON-RPC to it over the socket, stop
 * it with SIGTERM and check that it exited cleanly; see what it left
 * running.  Shared by tests/pool, tests/rpc, tests/fault and tests/soak;
 * nothing here mocks thawd.
 */
#ifndef THAW_TESTS_HARNESS_H
#define THAW_TESTS_HARNESS_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct th_daemon {
    pid_t pid;
    char dir[256]; /* temporary directory holding everything below */
    char sock[320];
    char store[320];
    char log[320];
} th_daemon_t;

typedef struct th_conn {
    int fd;
    char *buf;
    size_t len, cap;
    long next_id;
    json_t *notes; /* notifications seen while waiting for replies */
} th_conn_t;

/*
 * Start thawd with --socket/--store in d->dir (created with mkdtemp when
 * empty, reused for a restart) plus extra args (NULL-terminated, may be
 * NULL).  Waits until the socket answers.  Returns 0 or -1 (message printed).
 */
int th_start(th_daemon_t *d, const char *const *extra);
/*
 * Before th_start: make d->dir from the mkdtemp template (".../name-XXXXXX")
 * and mount a tmpfs of `size` (mount's syntax, "1m") on its store, so a test
 * can fill thawd's disk.  Skips the test (exit 77) without root or when the
 * mount is refused.  The store's path goes to store (cap bytes).
 * th_unmount_store undoes the mount; th_cleanup then removes the directory.
 */
void th_tmpfs_store(th_daemon_t *d, const char *tmpl, const char *size, char *store, size_t cap);
void th_unmount_store(const th_daemon_t *d);
/*
 * In a forked child (root only): become uid with gid as its only group,
 * for tests of what a second user may reach.  0, or -1 with the reason on
 * stderr.
 */
int th_become(uid_t uid, gid_t gid);
/* In such a child, where cmocka's asserts cannot report: on failure print
 * the uid and the message and _exit(1). */
#define TH_CHILD_CHECK(cond, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "child uid %d: ", (int)getuid());                                      \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)
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
/*
 * A fixture's teardown: close c (may be NULL), stop thawd, print its log if
 * it did not exit 0, remove the directory.  Returns 0 if thawd exited 0, else
 * -1.
 */
int th_finish(th_daemon_t *d, th_conn_t *c);

/* Every descendant of pid (children of all its threads, recursively),
 * appended to out[n..max); returns the new count. */
int th_descendants(pid_t pid, pid_t *out, int n, int max);
/* pid is alive and not a zombie (a zombie reparented to an init that does
 * not reap is gone for a test's purpose). */
bool th_running(pid_t pid);
/* Wait up to timeout_ms for pid to stop running: true if it did. */
bool th_wait_gone(pid_t pid, int timeout_ms);
void th_sleep_ms(int ms);

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
/* Bytes of output the notifications in c->notes carried (a streamed
 * sandbox.run's `data`, or `data_base64` by its decoded length). */
size_t th_streamed_bytes(const th_conn_t *c);
/* The error code of a reply, 0 if it has none. */
int th_code(json_t *reply);
/* The error message of a reply, "" if none. */
const char *th_msg(json_t *reply);

/* Poll template `name`'s pool until pool[key] == want (or timeout): true if reached. */
bool th_wait_pool(th_conn_t *c, const char *name, const char *key, long want, int timeout_ms);
long th_pool_get(th_conn_t *c, const char *name, const char *key);
long th_counter(th_conn_t *c, const char *name, const char *key);
/* server.stats' server[key], -1 if missing; and a poll until it is want. */
long th_server_stat(th_conn_t *c, const char *key);
bool th_wait_server(th_conn_t *c, const char *key, long want, int timeout_ms);

/* Per-tier set-up (harness_tier.c): the same test against `process`,
 * `sentry` or `vm` (the test guest as image). */

/*
 * thawd's arguments for a test on tier: --no-default-templates, and
 * --enable-process-tier for the process tier, then extra (NULL-terminated,
 * may be NULL).  Fills out (n slots, NULL-terminated; extras that do not fit
 * are dropped) and returns it.
 */
const char *const *th_tier_args(const char *tier, const char *const *extra, const char **out,
                                size_t n);
/*
 * template.create params: the object fmt and its arguments pack (json_pack),
 * plus "tier"; on the vm tier also "image", memory_mb 64 and, when not NULL,
 * "engine".  Returns a new reference (NULL if fmt does not pack).
 */
json_t *th_tpl_params(const char *tier, const char *image, const char *engine, const char *fmt,
                      ...);
/* Skip the test (exit 77 with thawd's reason) when server.info says tier is
 * unavailable here; c is closed and d stopped and removed first. */
void th_skip_unless_tier(th_daemon_t *d, th_conn_t *c, const char *tier);
/*
 * template.create with params (stolen).  Returns 0 on success; when thawd
 * answers that the tier is unavailable (-32006) closes c, removes d and skips
 * the test with thawd's reason; -1 with the reason printed otherwise.
 */
int th_create_or_skip(th_daemon_t *d, th_conn_t *c, json_t *params);
/*
 * A pool fixture's set-up: start thawd with args, connect c, create the
 * template params describe (stolen; skips as th_create_or_skip does) and
 * wait up to timeout_ms until `ready` of its sandboxes are ready.  Returns 0
 * or -1 (the reason printed).
 */
int th_start_pool(th_daemon_t *d, th_conn_t *c, const char *const *args, json_t *params, long ready,
                  int timeout_ms);

/*
 * The fixture of a test against one thawd and one pool: the daemon, a
 * connection, and thawd's resident memory (KiB) and descriptors once the
 * pool was ready, the baseline a fault test compares with afterwards.
 */
typedef struct th_fx {
    th_daemon_t d;
    th_conn_t c;
    long rss0;
    int fds0;
} th_fx_t;

/* A cmocka set-up: *state becomes a new th_fx_t brought up by
 * th_start_pool (params stolen), with its baseline.  Returns 0 or -1. */
int th_fx_setup(void **state, const char *const *args, json_t *params, long ready, int timeout_ms);
/* A cmocka teardown of a th_fx_t: th_finish, then free it.  Returns 0 if
 * thawd exited cleanly, else -1. */
int th_fx_teardown(void **state);

/*
 * A well-behaved client (harness_good.c): its own connection running
 * `echo ok` through sandbox.run on template tpl in a loop, counting runs and
 * failures (a reply other than stdout "ok\n"), while a test does harm
 * beside it.
 */
typedef struct th_good {
    const char *sock;
    const char *tpl;
    int timeout_ms; /* sandbox.run's timeout_ms; 0 leaves thawd's default */
    atomic_bool stop;
    atomic_int runs, failures;
    pthread_t thread;
} th_good_t;

/* Start the client's thread (sock and tpl set, the rest zero): 0 or -1. */
int th_good_start(th_good_t *g);
/* Wait until the client has finished one run (or failed one). */
void th_good_wait_first(th_good_t *g);
/* Stop the client and join its thread. */
void th_good_stop(th_good_t *g);

#endif
