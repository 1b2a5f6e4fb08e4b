/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sentry: the syscall-interception sandbox tier.  A sandbox is a process tree
 * in fresh user, pid, mount, ipc, uts, net and cgroup namespaces, rooted in a
 * read-only template directory with private tmpfs layers, limited by a cgroup,
 * stripped of every capability, and confined by a seccomp filter whose
 * sensitive calls (path-based file access, exec, connect, identity) are
 * brokered by a supervisor through seccomp user notification.  Its PID 1 is
 * thaw-agent, reached over a socketpair.
 *
 * One supervisor serves every sandbox's listener from a single epoll thread.
 * docs/sentry.md describes the isolation model and what it does not cover.
 */
#ifndef THAW_SENTRY_SENTRY_H
#define THAW_SENTRY_SENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct sentry_supervisor sentry_supervisor_t;
typedef struct sentry sentry_t;

#define SENTRY_MAX_AREAS 16 /* hidden path prefixes per sandbox */
#define SENTRY_MAX_NET   16 /* allowlist entries per sandbox */
#define SENTRY_PATH_MAX  1024

/* Where the agent sits inside a root built by sentry_template_build(). */
#define SENTRY_AGENT_PATH "/.thaw/agent"
/* The descriptor number the agent's channel has in the sandbox (THAW_AGENT_FD). */
#define SENTRY_AGENT_FD   3

typedef struct sentry_config {
    /* A template root directory (see sentry_template_build); mounted read-only. */
    const char *root;
    /* The agent inside the root; NULL = SENTRY_AGENT_PATH. */
    const char *agent_path;
    /* Extra arguments for the agent (NULL-terminated; NULL = none). */
    const char *const *agent_args;

    /* Limits; 0 = the default in brackets. */
    uint64_t memory_bytes; /* cgroup memory limit [512 MiB] */
    uint32_t pids_max;     /* cgroup pids limit [256] */
    uint32_t cpu_shares;   /* cgroup v1 cpu.shares (v2 weight derived) [1024] */
    uint64_t tmp_bytes;    /* tmpfs /tmp [64 MiB] */
    uint64_t work_bytes;   /* tmpfs /work [256 MiB] */
    uint32_t nofile;       /* RLIMIT_NOFILE [1024] */

    /*
     * Network allowlist for connect/sendto/sendmsg: "ADDR:PORT" entries,
     * ADDR an IPv4 or [IPv6] address with an optional /prefix, PORT a number
     * or "*".  Default (n_net == 0): every inet destination is denied.  The
     * network namespace holds only loopback, so this can open only
     * destinations inside the sandbox.
     */
    const char *net_allow[SENTRY_MAX_NET];
    unsigned n_net;

    /* Paths hidden from the sandbox (added to the built-in /proc list):
     * open, exec and stat answer ENOENT.  Absolute.  The writable areas are
     * fixed: /tmp and /work (tmpfs) and the /dev nodes; all else is a
     * read-only mount. */
    const char *hidden[SENTRY_MAX_AREAS];
    unsigned n_hidden;

    /* How long sentry_create waits for the child to reach exec [5000]. */
    uint32_t start_timeout_ms;
} sentry_config_t;

typedef struct sentry_supervisor_config {
    /* First host uid/gid of the ranges sandboxes map to; each sandbox gets
     * 65536 ids at base + slot * 65536 [0x40000000].  Never 0. */
    uint32_t id_base;
    /* How many sandboxes may exist at once [1024]. */
    uint32_t max_sandboxes;
    /* A policy file to use instead of the built-in one (NULL = built-in). */
    const char *policy_path;
} sentry_supervisor_config_t;

/* Counters of the supervisor (monotonic since create). */
typedef struct sentry_stats {
    uint64_t notifications; /* requests received */
    uint64_t continued;     /* let through to the kernel after a check */
    uint64_t emulated;      /* answered by the supervisor (ADDFD, ids) */
    uint64_t denied;        /* answered with an errno by policy */
    uint64_t stale;         /* the caller died or was interrupted meanwhile */
    uint64_t busy_ns;       /* time spent deciding (handlers), summed */
} sentry_stats_t;

/*
 * Compile the seccomp policy, start the supervisor thread.  cfg may be NULL.
 * Returns 0 and *out, or -errno with err filled (a policy error names the
 * file, the line and the problem).
 */
int sentry_supervisor_create(const sentry_supervisor_config_t *cfg, sentry_supervisor_t **out,
                             thaw_err_t *err);
/* Stop the thread and free.  Every sandbox must have been destroyed first.
 * NULL is fine. */
void sentry_supervisor_destroy(sentry_supervisor_t *sup);
void sentry_supervisor_stats(sentry_supervisor_t *sup, sentry_stats_t *out);

/* Syscall counts of the compiled filter (the allowed count is what the
 * sandbox reaches on the host kernel without the supervisor). */
typedef struct sentry_filter_info {
    unsigned allowed;      /* distinct syscalls with an allow rule */
    unsigned allowed_cond; /* ... of which only with argument conditions */
    unsigned notified;     /* brokered by the supervisor */
    unsigned denied;       /* denied by name (logged) */
    unsigned errno_direct; /* answered with an errno by the filter itself */
    size_t bpf_insns;      /* length of the BPF program */
} sentry_filter_info_t;
void sentry_supervisor_filter_info(sentry_supervisor_t *sup, sentry_filter_info_t *out);

/*
 * Create a sandbox and start its agent as PID 1.  Returns once the agent's
 * exec succeeded (the agent has not necessarily said HELLO yet: wait for it
 * on the channel).  Returns 0 and *out, or -errno with err filled.
 */
int sentry_create(sentry_supervisor_t *sup, const sentry_config_t *cfg, sentry_t **out,
                  thaw_err_t *err);

/*
 * Kill the whole tree (SIGKILL to PID 1 ends the pid namespace, so processes
 * ignoring SIGTERM go too), wait for it, unregister the listener, remove the
 * cgroups, release the id range.  The mounts lived only in the sandbox's
 * mount namespace and go with it.  NULL is fine; never fails.
 */
void sentry_destroy(sentry_t *sb);

/* The agent channel (borrowed: closed by sentry_destroy), or -1 once taken. */
int sentry_agent_fd(const sentry_t *sb);
/* Hand the agent channel over: the caller owns and closes it. */
int sentry_take_agent_fd(sentry_t *sb);

/* true while PID 1 runs (no round trip: polls its pidfd). */
bool sentry_alive(const sentry_t *sb);
/* Host pid of the sandbox's PID 1. */
int sentry_pid(const sentry_t *sb);
/* The sandbox id used in logs and cgroup names ("sb-<n>"). */
const char *sentry_id(const sentry_t *sb);
/* The first host uid (and gid) of the sandbox's id range. */
uint32_t sentry_host_uid(const sentry_t *sb);
/* The cgroup the sandbox runs in, for one controller ("memory", "pids",
 * "cpu"; v2: any), as a host path; NULL if none. */
const char *sentry_cgroup_path(const sentry_t *sb, const char *controller);

/*
 * Build the default template root in `dir` (created; must not exist or be
 * empty): the host's /usr is mounted over usr/ at create time (read-only),
 * bin/ holds busybox and its applet links, .thaw/agent a copy of agent_exe,
 * etc/ a minimal passwd/group/hosts, and the mount points tmp/, work/, dev/,
 * proc/.  busybox NULL = search /usr/bin/busybox, /bin/busybox.
 * Returns 0 or -errno with err naming the path.
 */
int sentry_template_build(const char *dir, const char *agent_exe, const char *busybox,
                          thaw_err_t *err);

#endif
