/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test harness for guest/: start the real thaw-agent (path in env
 * THAW_AGENT_EXE, set by meson) as an ordinary process on one end of a
 * socketpair and hand the other end to an agent_client, or keep it raw for
 * tests that write hand-made frames.
 */
#ifndef THAW_TESTS_GUEST_AGENT_HARNESS_H
#define THAW_TESTS_GUEST_AGENT_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

#include "guest/agent_client.h"

typedef struct agent_proc_h {
    pid_t pid;
    int fd; /* host end of the socketpair; -1 once given to a client */
} agent_h_t;

/* Start thaw-agent; aborts the test on failure. */
void agent_h_start(agent_h_t *h);
/* Wait for the agent to exit within timeout_ms; returns its wait status, or
 * -1 after killing it when it did not exit. */
int agent_h_wait(agent_h_t *h, int timeout_ms);
/* Start an agent and a client on it, with hello received. */
agent_client_t *agent_h_client(agent_h_t *h);

/* Raw frame I/O on a socket (tests of malformed input). */
void agent_h_write_all(int fd, const void *buf, size_t len);
/* Read one frame: returns payload length, -1 on EOF/timeout. */
int agent_h_read_frame(int fd, agentwire_hdr_t *h, uint8_t *payload, size_t cap, int timeout_ms);

#endif
