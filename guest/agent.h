/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of thaw-agent, the program that runs inside every sandbox (see
 * docs/agent-protocol.md).  Not a public header: only guest/agent_*.c
 * include it.  The agent is one single-threaded poll loop (agent_main.c)
 * over the channel, a signalfd for SIGCHLD and the pipes of running
 * commands; commands are in agent_exec.c, files in agent_files.c, the PID 1
 * and thaw duties in agent_sys.c, framing on the channel in agent_chan.c.
 */
#ifndef THAW_GUEST_AGENT_H
#define THAW_GUEST_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "guest/agentwire.h"

typedef enum agent_mode {
    AGENT_MODE_TEST = 0, /* ordinary process on a host (tests): a subreaper, touches nothing */
    AGENT_MODE_SENTRY,   /* PID 1 of a sentry pid namespace: reaps, mounts nothing */
    AGENT_MODE_VM,       /* PID 1 of a microVM: mounts, hostname, /dev/hvc0, reboot */
} agent_mode_t;

#define AGENT_PORT_NAME   "org.thaw.agent" /* virtio-serial port name */
#define AGENT_MAX_PROCS   256u             /* execs in flight */
#define AGENT_MAX_STDIN   (16u << 20)      /* buffered stdin per exec */
#define AGENT_MAX_CAP     (1ull << 32)     /* largest output cap honoured */
#define AGENT_DEFAULT_CAP (1u << 20)       /* output cap when EXEC sends none */
#define AGENT_LINGER_NS   1000000000ull    /* pipe drain after the main process exits */

typedef struct agent_proc {
    uint32_t id;
    pid_t pid;                 /* also the process group id (setsid) */
    int in_fd, out_fd, err_fd; /* -1 once closed */
    uint8_t *in_buf;
    size_t in_len, in_off;
    bool in_eof; /* close stdin once the buffer is written */
    uint64_t cap, sent;
    bool truncated;
    bool pty;                       /* in_fd and out_fd are the master of a pseudo-terminal */
    bool in_eof_sent;               /* pty: the EOF character was written */
    uint64_t start_ns, deadline_ns; /* deadline 0 = none */
    bool timed_out;
    bool exited;
    int status;
    struct rusage ru;
    uint64_t exit_ns;
    struct agent_proc *next;
} agent_proc_t;

typedef struct agent {
    agent_mode_t mode;
    int chan_fd;
    bool chan_reopenable; /* vm: reopen /dev/hvc0 after a broken session */
    uint8_t *rbuf;
    size_t rlen;
    agent_proc_t *procs;
    size_t nprocs;
    bool quiesced;
    int sig_fd;
} agent_t;

/* agent_chan.c: frames on the channel.  Sending blocks until written;
 * returns 0 or -errno (the session is then over). */
int agent__send(agent_t *a, agentwire_msg_t *m);
int agent__send_error(agent_t *a, uint32_t id, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int agent__send_ok(agent_t *a, uint32_t id);
int agent__send_hello(agent_t *a);
/* Read what is available and handle every complete frame: 0, or -errno when
 * the session is over (EOF, read error, broken framing). */
int agent__chan_readable(agent_t *a);

/* agent_exec.c */
int agent__exec_start(agent_t *a, uint32_t id, const uint8_t *p, size_t len);
int agent__exec_stdin(agent_t *a, uint32_t id, const uint8_t *p, size_t len);
int agent__exec_signal(agent_t *a, uint32_t id, const uint8_t *p, size_t len);
/* SIGCHLD: reap every child, matching execs. */
void agent__reap(agent_t *a);
/* Pipe I/O and deadlines for every exec; sends STDOUT/STDERR/EXIT. */
int agent__proc_io(agent_t *a, agent_proc_t *pr, short out_rev, short err_rev, short in_rev);
int agent__procs_tick(agent_t *a, uint64_t now);
/* Earliest deadline among execs (0 = none). */
uint64_t agent__next_deadline(agent_t *a);
void agent__kill_all(agent_t *a);
/* Kill every exec's process group and forget them (end of a session). */
void agent__procs_free(agent_t *a);

/* agent_files.c */
int agent__put(agent_t *a, uint32_t id, const uint8_t *p, size_t len);
int agent__get(agent_t *a, uint32_t id, const uint8_t *p, size_t len);

/* agent_sys.c */
int agent__pid1_setup(agent_t *a);
int agent__thaw(agent_t *a, uint32_t id, const uint8_t *p, size_t len);
int agent__quiesce(agent_t *a, uint32_t id);
_Noreturn void agent__shutdown(agent_t *a);

#endif
