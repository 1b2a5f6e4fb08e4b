// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer target for the host client (guest/agent_client.c): the input is
 * what a hostile guest writes on the channel.  A fresh client starts an exec
 * (request id 1, the first id a client uses); a peer thread waits for that
 * EXEC frame, writes the input, and closes the channel.  Whatever the bytes
 * (frames for id 1, for other ids, broken framing, a second hello, an
 * endless output stream), the client must return from every call with a
 * result or an error, leak nothing and never crash.  Covers the reader's
 * framing, the demultiplexer and the output caps, which the decoder target
 * (fuzz_agentwire.c) cannot reach.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "guest/agent_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct peer {
    int fd;
    const uint8_t *data;
    size_t size;
} peer_t;

static void *peer_main(void *arg)
{
    peer_t *p = arg;
    /* wait until the client's EXEC has been written (or the client gave up) */
    uint8_t buf[4096];
    ssize_t n = read(p->fd, buf, sizeof(buf));
    (void)n;
    size_t off = 0;
    while (off < p->size) {
        ssize_t w = send(p->fd, p->data + off, p->size - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(p->fd, SHUT_RDWR);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        thaw_log_set_level(THAW_LOG_ERROR); /* "channel dead" on every input is noise */
        quiet = 1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    agent_client_t *c = NULL;
    thaw_err_t err;
    if (agent_client_new(sv[0], &c, &err) < 0)
        abort();
    peer_t p = {.fd = sv[1], .data = data, .size = size};
    pthread_t t;
    if (pthread_create(&t, NULL, peer_main, &p) != 0)
        abort();
    agent_exec_req_t req = {
        .argv = (const char *const[]){"x", NULL}, .output_cap = 4096, .deadline_ms = 2000};
    agent_exec_result_t r;
    if (agent_client_exec(c, &req, &r, &err) == 0) {
        /* a success must be self-consistent */
        if (r.out_len + r.err_len > 4096 || !r.out || !r.err)
            abort();
        if ((r.exit_code == -1) != (r.term_signal != 0))
            abort();
        agent_exec_result_free(&r);
    }
    agent_hello_t h;
    (void)agent_client_wait_hello(c, 1, &h, &err);
    pthread_join(t, NULL);
    agent_client_destroy(c);
    close(sv[1]);
    return 0;
}
