// SPDX-License-Identifier: Apache-2.0
/*
 * The pool's use of the agent client (guest/agent_client.h): open a channel
 * (hello, then thaw: fresh entropy and the wall clock, so no two sandboxes
 * of one template share random state), and translate exec and file calls.
 * Kept in one file so the rest of pool/ does not depend on the client's
 * types.
 */
#include "pool/pool-internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "guest/agent_client.h"

/* Deadlines for the short agent calls (a healthy agent answers in µs). */
#define POOL_AGENT_CALL_MS 10000

struct pool__agent {
    agent_client_t *c;
    /* Set once the agent let an exec's deadline pass without an exit (a hung
     * or flooding guest): every later call fails at once with this error
     * instead of waiting out its own deadline on an agent that is gone. */
    atomic_int broken; /* 0, 1 while broken_err is written, 2 when set */
    thaw_err_t broken_err;
};

/* Fail fast on an agent known to be unresponsive. */
static int agent_usable(pool__agent_t *a, thaw_err_t *err)
{
    if (atomic_load_explicit(&a->broken, memory_order_acquire) != 2)
        return 0;
    if (err)
        *err = a->broken_err;
    return -ETIMEDOUT;
}

int pool__agent_open(int fd, bool hello, uint32_t timeout_ms, pool__agent_t **out, thaw_err_t *err)
{
    pool__agent_t *a = calloc(1, sizeof(*a));
    if (!a) {
        close(fd);
        return thaw_err_set(err, ENOMEM, "out of memory");
    }
    int r = agent_client_new(fd, &a->c, err); /* owns fd, also on failure */
    if (r == 0 && hello)
        r = agent_client_wait_hello(a->c, timeout_ms, NULL, err);
    if (r == 0) {
        unsigned char entropy[64];
        if (getrandom(entropy, sizeof(entropy), 0) != (ssize_t)sizeof(entropy))
            r = thaw_err_sys(err, errno, "getrandom");
        else
            r = agent_client_thaw(a->c, entropy, sizeof(entropy), 0, POOL_AGENT_CALL_MS, NULL, err);
        if (r < 0)
            thaw_err_wrap(err, "thaw");
    }
    if (r < 0) {
        agent_client_destroy(a->c);
        free(a);
        return r;
    }
    *out = a;
    return 0;
}

void pool__agent_close(pool__agent_t *a)
{
    if (!a)
        return;
    agent_client_destroy(a->c);
    free(a);
}

/* Runs on the client's reader thread: forward to the pool caller's callback. */
static void output_trampoline(void *opaque, int stream, const uint8_t *data, size_t len)
{
    const pool_exec_req_t *req = opaque;
    req->on_output(req->ud, stream, data, len);
}

int pool__agent_exec(pool__agent_t *a, const pool_exec_req_t *req, pool_exec_result_t *res,
                     thaw_err_t *err)
{
    agent_exec_req_t er = {
        .argv = req->argv,
        .env = req->env,
        .cwd = req->cwd,
        .stdin_data = req->stdin_data,
        .stdin_len = req->stdin_len,
        .timeout_ms = req->timeout_ms,
        .output_cap = req->max_output ? req->max_output : AGENT_EXEC_DEFAULT_OUTPUT_CAP,
        .on_output = req->on_output ? output_trampoline : NULL,
        .opaque = (void *)req,
        .cancel = req->cancel ? &req->cancel->cancelled : NULL,
    };
    agent_exec_result_t ar;
    memset(&ar, 0, sizeof(ar));
    if (agent_usable(a, err) < 0)
        return -ETIMEDOUT;
    if (pool__cancel_enter(req->cancel, a) < 0)
        return thaw_err_set(err, ECANCELED, "exec '%s': cancelled", req->argv[0]);
    int r = agent_client_exec(a->c, &er, &ar, err);
    pool__cancel_leave(req->cancel);
    if (r < 0) {
        agent_exec_result_free(&ar);
        /* A workload that overruns is reported by the agent (timed_out); a
         * deadline passing here means the agent itself stopped answering. */
        int clean = 0;
        if (r == -ETIMEDOUT && atomic_compare_exchange_strong(&a->broken, &clean, 1)) {
            thaw_err_set(&a->broken_err, ETIMEDOUT, "the sandbox's agent stopped answering (%s)",
                         err ? err->msg : "exec");
            atomic_store_explicit(&a->broken, 2, memory_order_release);
        }
        return r;
    }
    res->exit_code = ar.exit_code;
    res->signal = ar.term_signal;
    res->timed_out = ar.timed_out;
    res->truncated = ar.truncated;
    res->out = (char *)ar.out;
    res->out_len = ar.out_len;
    res->err_out = (char *)ar.err;
    res->err_len = ar.err_len;
    ar.out = ar.err = NULL; /* ownership moved to res */
    agent_exec_result_free(&ar);
    return 0;
}

void pool__agent_wake(pool__agent_t *a)
{
    agent_client_wake(a->c);
}

int pool__agent_put(pool__agent_t *a, const char *path, uint32_t mode, const void *data, size_t len,
                    thaw_err_t *err)
{
    if (agent_usable(a, err) < 0)
        return -ETIMEDOUT;
    return agent_client_put_file(a->c, path, data, len, mode, POOL_AGENT_CALL_MS, err);
}

int pool__agent_get(pool__agent_t *a, const char *path, size_t max, void **data, size_t *len,
                    thaw_err_t *err)
{
    uint8_t *d = NULL;
    if (agent_usable(a, err) < 0)
        return -ETIMEDOUT;
    int r = agent_client_get_file(a->c, path, max, &d, len, POOL_AGENT_CALL_MS, err);
    if (r == 0)
        *data = d;
    return r;
}

int pool__agent_ping(pool__agent_t *a, uint32_t timeout_ms, thaw_err_t *err)
{
    if (agent_usable(a, err) < 0)
        return -ETIMEDOUT;
    return agent_client_ping(a->c, timeout_ms, NULL, err);
}
