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
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "guest/agent_client.h"

/* Deadlines for the short agent calls (a healthy agent answers in µs). */
#define POOL_AGENT_CALL_MS 10000

struct pool__agent {
    agent_client_t *c;
};

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
    };
    agent_exec_result_t ar;
    memset(&ar, 0, sizeof(ar));
    int r = agent_client_exec(a->c, &er, &ar, err);
    if (r < 0) {
        agent_exec_result_free(&ar);
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

int pool__agent_put(pool__agent_t *a, const char *path, uint32_t mode, const void *data, size_t len,
                    thaw_err_t *err)
{
    return agent_client_put_file(a->c, path, data, len, mode, POOL_AGENT_CALL_MS, err);
}

int pool__agent_get(pool__agent_t *a, const char *path, size_t max, void **data, size_t *len,
                    thaw_err_t *err)
{
    uint8_t *d = NULL;
    int r = agent_client_get_file(a->c, path, max, &d, len, POOL_AGENT_CALL_MS, err);
    if (r == 0)
        *data = d;
    return r;
}

int pool__agent_ping(pool__agent_t *a, uint32_t timeout_ms, thaw_err_t *err)
{
    return agent_client_ping(a->c, timeout_ms, NULL, err);
}
