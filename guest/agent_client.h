/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of the agent channel: what the pool, the sentry tier and the
 * VMM use to talk to thaw-agent inside a sandbox.  The client owns a
 * connected stream descriptor (a socketpair end, a Unix socket, or the VMM's
 * bridge of the guest's virtio-console), runs one reader thread that
 * demultiplexes frames by request id, and offers blocking calls that each
 * take a deadline.
 *
 * Thread safety: every function may be called from several threads at once
 * on one client (for example 50 execs in flight); an agent_exec_t handle is
 * used by one thread at a time.  A silent peer makes a call fail with
 * -ETIMEDOUT after its deadline; a peer that breaks framing or lies (bad
 * magic, lengths over the caps, malformed fields) marks the channel dead and
 * every call fails with a message saying why; the client never crashes or
 * hangs on what the guest sends.
 */
#ifndef THAW_GUEST_AGENT_CLIENT_H
#define THAW_GUEST_AGENT_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "guest/agentwire.h"

typedef struct agent_client agent_client_t;
typedef struct agent_exec agent_exec_t;
typedef agentwire_hello_t agent_hello_t;

/*
 * Defaults used when a field of agent_exec_req_t is 0.
 *
 * The grace is how long past timeout_ms the client waits for the agent's
 * EXIT before it calls the agent unresponsive.  A healthy agent kills the
 * process group at timeout_ms and reports within milliseconds on a host
 * kernel, but in a microVM that path runs through the guest kernel, which
 * on a PVM host executes at about 1.6 M instructions/s, and a loaded host
 * adds scheduling delay.  Calling a slow agent dead is costly (the pool
 * then fails every later call on that sandbox), while a long grace costs
 * only hung or hostile guests, once; so it stays fixed at 10 s rather than
 * proportional to the timeout (docs/security.md, "Known gaps").
 */
#define AGENT_EXEC_DEFAULT_OUTPUT_CAP (1u << 20)
#define AGENT_EXEC_GRACE_MS           10000u  /* deadline = timeout + grace */
#define AGENT_EXEC_DEFAULT_DEADLINE   600000u /* exec without a timeout */
/* A cancelled exec waits this long at most for the agent to report the
 * killed command's exit (a healthy agent does so at once). */
#define AGENT_EXEC_CANCEL_WAIT_MS     2000u

/*
 * Take ownership of fd (also on failure: it is closed) and start the reader
 * thread.  Returns 0 and *out, or -errno with err filled.
 */
int agent_client_new(int fd, agent_client_t **out, thaw_err_t *err);

/* Stop the reader, close the fd, free.  No other call on c may be in
 * progress (join the threads using it first).  NULL is fine. */
void agent_client_destroy(agent_client_t *c);

/*
 * Wait up to timeout_ms for the agent's HELLO (it may already have arrived).
 * Returns 0 and *hello (may be NULL), -ETIMEDOUT, -EPROTONOSUPPORT for an
 * agent speaking another protocol version, or the channel's error.
 */
int agent_client_wait_hello(agent_client_t *c, uint32_t timeout_ms, agent_hello_t *hello,
                            thaw_err_t *err);

/* Streaming output: stream is 1 (stdout) or 2 (stderr).  Runs on the
 * client's reader thread with the client locked: copy what you need and
 * return; do not call agent_client functions from it. */
typedef void (*agent_output_fn)(void *opaque, int stream, const uint8_t *data, size_t len);

typedef struct agent_exec_req {
    const char *const *argv; /* NULL-terminated, at least argv[0] */
    const char *const *env;  /* NULL-terminated "KEY=VALUE"; NULL = agent's default env */
    const char *cwd;         /* NULL = "/" */
    bool set_uid, set_gid;   /* run as uid/gid (the agent must be root to switch) */
    uint32_t uid, gid;
    const void *stdin_data; /* sent with the request; stdin closes after it ... */
    size_t stdin_len;
    bool stdin_open;           /* ... unless set: then feed it with agent_exec_stdin() */
    uint32_t timeout_ms;       /* the agent kills the process group after this; 0 = none */
    uint64_t output_cap;       /* stdout+stderr bytes kept; more sets truncated; 0 = default */
    uint32_t deadline_ms;      /* how long the client waits for EXIT; 0 = timeout + grace */
    agent_output_fn on_output; /* optional: called for every chunk as it arrives */
    void *opaque;
    bool no_buffer; /* with on_output: do not keep output in the result */
    bool pty;       /* run on a pseudo-terminal: stdout carries everything, tty echo included */
    uint16_t pty_rows, pty_cols; /* its window size; 0 = the kernel's default */
    /*
     * Optional: once *cancel is true and agent_client_wake() has been called,
     * the exec stops waiting: the client asks the agent to SIGKILL the
     * process group, waits up to AGENT_EXEC_CANCEL_WAIT_MS for its exit and
     * returns -ECANCELED (the caller no longer wants the result, e.g. its
     * client disconnected).  Checked by agent_exec_start and
     * agent_exec_wait; must outlive the exec.
     */
    const atomic_bool *cancel;
} agent_exec_req_t;

typedef struct agent_exec_result {
    uint32_t pid;
    int exit_code;   /* 0..255, or -1 when killed by a signal */
    int term_signal; /* 0 when it exited */
    bool timed_out;  /* the agent killed it at timeout_ms */
    bool truncated;  /* output went past output_cap */
    uint8_t *out;    /* stdout bytes (NUL-terminated for convenience); owned */
    size_t out_len;
    uint8_t *err; /* stderr bytes (NUL-terminated); owned */
    size_t err_len;
    uint64_t cpu_user_us, cpu_sys_us, max_rss_kb, wall_us;
} agent_exec_result_t;

/* Release the buffers of a result (safe on a zeroed or already freed one). */
void agent_exec_result_free(agent_exec_result_t *r);

/*
 * Run a command and wait for it: start + wait.  Returns 0 once the command
 * ran to an exit (whatever its exit code or signal), -errno when it could
 * not be started (err says why, e.g. "exec 'nosuch': No such file or
 * directory") or the channel failed.  *res is owned by the caller.
 */
int agent_client_exec(agent_client_t *c, const agent_exec_req_t *req, agent_exec_result_t *res,
                      thaw_err_t *err);

/*
 * Start a command and return once the agent reports it running (STARTED) or
 * refuses it.  The handle must be given to agent_exec_wait(), which frees it.
 * The request's strings are copied; its buffers need not outlive the call.
 */
int agent_exec_start(agent_client_t *c, const agent_exec_req_t *req, agent_exec_t **out,
                     thaw_err_t *err);
uint32_t agent_exec_pid(const agent_exec_t *x);
/* Feed stdin of an exec started with stdin_open; eof closes it. */
int agent_exec_stdin(agent_exec_t *x, const void *data, size_t len, bool eof, thaw_err_t *err);
/* Send a signal to the exec's process (group = its whole process group). */
int agent_exec_signal(agent_exec_t *x, int signo, bool group, thaw_err_t *err);
/*
 * Wait for EXIT until the request's deadline; fills *res and frees x in all
 * cases.  On a missed deadline the client asks the agent to SIGKILL the
 * process group and returns -ETIMEDOUT.
 */
int agent_exec_wait(agent_exec_t *x, agent_exec_result_t *res, thaw_err_t *err);

/*
 * Write a file in the sandbox (created or truncated, then mode set), sent in
 * AGENTWIRE_CHUNK pieces.  Returns 0 or -errno with the agent's reason.
 */
int agent_client_put_file(agent_client_t *c, const char *path, const void *data, size_t len,
                          uint32_t mode, uint32_t timeout_ms, thaw_err_t *err);

/*
 * Read a file from the sandbox, at most max_len bytes: -EFBIG if it is
 * larger.  *data (owned, NUL-terminated) and *len on success.
 */
int agent_client_get_file(agent_client_t *c, const char *path, size_t max_len, uint8_t **data,
                          size_t *len, uint32_t timeout_ms, thaw_err_t *err);

/*
 * After a restore: hand the guest fresh entropy (RNDADDENTROPY, then
 * RNDRESEEDCRNG) and the host's wall clock (CLOCK_REALTIME ns; 0 = read it
 * now).  *applied (may be NULL) says whether the agent changed guest state:
 * only a microVM's agent does; a sentry or test agent shares the host kernel
 * and only validates the request.  Also ends a quiesce.
 */
int agent_client_thaw(agent_client_t *c, const void *entropy, size_t entropy_len,
                      uint64_t wallclock_ns, uint32_t timeout_ms, bool *applied, thaw_err_t *err);

/* Before a snapshot: the agent refuses new execs (until THAW), syncs, and
 * replies; -EBUSY while execs are still running. */
int agent_client_quiesce(agent_client_t *c, uint32_t timeout_ms, thaw_err_t *err);

/* Round trip; *rtt_ns (may be NULL) is the measured latency. */
int agent_client_ping(agent_client_t *c, uint32_t timeout_ms, uint64_t *rtt_ns, thaw_err_t *err);

/* Ask the agent to end the sandbox (VM: sync, kill all, reboot, which VMMs
 * treat as exit; sentry/test: the agent exits).  Returns once acknowledged. */
int agent_client_shutdown(agent_client_t *c, uint32_t timeout_ms, thaw_err_t *err);

/*
 * Wake every thread waiting on c so that it re-checks its exec's cancel flag
 * (agent_exec_req_t.cancel).  Only takes the client's lock, which no thread
 * holds across I/O, so an event loop may call it.
 */
void agent_client_wake(agent_client_t *c);

/* True once the channel failed; *err (may be NULL) gets the reason. */
bool agent_client_dead(agent_client_t *c, thaw_err_t *err);

#endif
